"""``pg.nn.utils``: ``clip_grad_norm_`` (PyTorch's name and semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from picograd.frontend.tensor import Tensor, maximum, minimum


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type``-norm is at most
    ``max_norm``; return the norm before clipping (a 0-d tensor), as ``torch.nn.utils.clip_grad_norm_``: the
    gradients are multiplied by ``min(max_norm / (norm + 1e-6), 1)``. Recorded like any op, so inside
    ``@pg.compile`` the clip is part of the compiled step. With no gradients it returns 0. ``error_if_nonfinite``
    reads the norm (not inside ``@pg.compile``) and raises ``RuntimeError`` when it is NaN or infinite."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return Tensor(np.array(0.0, dtype=np.float32))
    norm_type = float(norm_type)
    if norm_type == math.inf:
        norms = [p.grad.abs().max() for p in grads]  # type: ignore[union-attr]
        total = norms[0]
        for n in norms[1:]:
            total = maximum(total, n)
    else:
        acc = None
        for p in grads:
            g: Tensor = p.grad if norm_type == 2.0 else p.grad.abs()  # type: ignore[assignment, union-attr]
            part = (g * g).sum() if norm_type == 2.0 else (g**norm_type).sum()
            acc = part if acc is None else acc + part
        assert acc is not None
        total = acc.sqrt() if norm_type == 2.0 else acc ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(float(total.item())):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total.item()}")
    coef = minimum(max_norm / (total + 1e-6), 1.0)
    for p in grads:
        p.grad = p.grad * coef  # type: ignore[operator]
    return total
