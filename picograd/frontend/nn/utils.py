"""``pg.nn.utils``: ``clip_grad_norm_`` and ``clip_grad_value_`` (PyTorch's names and semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.tensor import Tensor, maximum, minimum


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type``-norm is at most
    ``max_norm``; return the norm before clipping (a 0-d tensor), as ``torch.nn.utils.clip_grad_norm_``: the
    gradients are multiplied by ``min(max_norm / (norm + 1e-6), 1)``. ``norm_type`` is any p, ``inf`` (the largest
    magnitude), ``-inf`` (the smallest) or 0 (as PyTorch: the number of gradients with a nonzero entry, the 0-norm
    of their 0-norms). Recorded like any op, so inside ``@pg.compile`` the clip is part of the compiled
    step. With no gradients it returns 0. ``error_if_nonfinite`` reads the norm (not inside ``@pg.compile``) and
    raises ``RuntimeError`` when it is NaN or infinite. ``foreach`` is accepted and ignored (a CUDA kernel choice
    in PyTorch)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return Tensor(np.array(0.0, dtype=np.float32))
    norm_type = float(norm_type)
    if error_if_nonfinite and STATE.trace is not None:
        raise RuntimeError(
            "clip_grad_norm_: error_if_nonfinite=True reads the norm, which a function under @pg.compile cannot "
            f"do while it traces: check the returned norm after the call{at(user_location())}"
        )
    if abs(norm_type) == math.inf:
        pick = maximum if norm_type > 0 else minimum
        norms = [p.grad.abs().max() if norm_type > 0 else p.grad.abs().min() for p in grads]  # type: ignore[union-attr]
        total = norms[0]
        for n in norms[1:]:
            total = pick(total, n)
    else:
        acc = None
        for p in grads:
            g: Tensor = p.grad if norm_type == 2.0 else p.grad.abs()  # type: ignore[assignment, union-attr]
            if norm_type == 0:  # torch's: the 0-norm of the per-tensor 0-norms (how many grads have a nonzero)
                part = ((g != 0).sum() > 0).to(g.dtype)
            else:
                part = (g * g).sum() if norm_type == 2.0 else (g**norm_type).sum()
            acc = part if acc is None else acc + part
        assert acc is not None
        total = acc if norm_type == 0 else acc.sqrt() if norm_type == 2.0 else acc ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(float(total.item())):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total.item()}, so they "
            f"cannot be clipped (error_if_nonfinite=False scales them by it anyway){at(user_location())}"
        )
    coef = minimum(max_norm / (total + 1e-6), 1.0)
    for p in grads:
        p.grad = p.grad * coef  # type: ignore[operator]
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp the gradients of ``parameters`` in place to ``[-clip_value, clip_value]`` (NaN stays NaN), as
    ``torch.nn.utils.clip_grad_value_``. ``foreach`` is accepted and ignored."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    clip_value = float(clip_value)
    for p in params:
        if p.grad is not None:
            p.grad = p.grad.clamp(-clip_value, clip_value)
