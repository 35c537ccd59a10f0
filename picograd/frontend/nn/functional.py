"""``pg.nn.functional``: losses and activations composed of ``Tensor`` ops, with PyTorch's semantics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from picograd.errors import DTypeError, ShapeError
from picograd.frontend import dtypes
from picograd.frontend.creation import arange, rand
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.indexing import checked_index
from picograd.frontend.tensor import Tensor, where


def relu(x: Tensor) -> Tensor:
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def softmax(x: Tensor, dim: int) -> Tensor:
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    return x.log_softmax(dim)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU (Hendrycks and Gimpel, 2016): ``x * Phi(x)`` with the exact erf form by default, or the tanh
    approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` with ``approximate='tanh'`` (as PyTorch)."""
    if approximate == "none":
        return x * 0.5 * (1.0 + (x * (1.0 / math.sqrt(2.0))).erf())
    if approximate == "tanh":
        return 0.5 * x * (1.0 + (math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _reduce(loss: Tensor, reduction: str, count: Any = None) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / count if count is not None else loss.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input: Tensor, target: Tensor, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits ``input`` (N, C) or (C,) against class indices ``target`` (N,) or () (int64), as
    ``torch.nn.functional.cross_entropy``: targets equal to ``ignore_index`` contribute nothing and the mean is
    over the others; ``reduction='none'`` gives a loss of the target's shape. Raises ``ShapeError``/``DTypeError``
    naming the shapes and dtypes, and ``IndexError`` for a target outside ``[0, C)`` that is not ``ignore_index``
    (when the target is computed: by the ``pg.check_index`` op)."""
    from picograd.frontend.tensor import _record

    loc = user_location()
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if target.dtype.category != 1:
        raise DTypeError(f"cross_entropy: target must hold class indices (int64), got {target.dtype.name}{at(loc)}")
    unbatched = input.ndim == 1
    if unbatched:
        if target.shape != ():
            raise ShapeError(
                f"cross_entropy: expected a 0-d target for input of shape {input.shape}, got {target.shape}{at(loc)}"
            )
        input, target = input.unsqueeze(0), target.reshape(1)
    if input.ndim != 2 or target.shape != (input.shape[0],):
        raise ShapeError(
            f"cross_entropy: expected input (N, C) and target (N,), got {input.shape} and {target.shape}{at(loc)}"
        )
    n, c = input.shape
    logp = input.log_softmax(1)
    keep = target != ignore_index
    buf = target._buffer
    if isinstance(buf, np.ndarray) and STATE.trace is None:  # known targets: checked now, at the user's line
        safe = checked_index(Tensor(np.where(buf != ignore_index, buf, 0), device=input.device), c, 1, "target")
    else:
        safe = checked_index(where(keep, target, 0), c, 1, "target")
    rows = arange(n, device=input.device) * c
    picked = _record("gather", [logp.reshape(n * c), rows + safe], (0,), (n,), logp.dtype)
    loss = where(keep, -picked, 0.0)
    if unbatched and reduction == "none":
        loss = loss.reshape(())
    return _reduce(loss, reduction, keep.sum().to(input.dtype) if reduction == "mean" else None)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)^2`` reduced by ``reduction``."""
    diff = input - target
    return _reduce(diff * diff, reduction)


def layer_norm(
    x: Tensor,
    normalized_shape: tuple[int, ...],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalization (Ba, Kiros and Hinton, 2016) over the last ``len(normalized_shape)`` dims, with the
    biased variance (as PyTorch)."""
    dims = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    if tuple(x.shape[x.ndim - len(normalized_shape) :]) != tuple(normalized_shape):
        raise ShapeError(
            f"layer_norm: input of shape {x.shape} does not end in {tuple(normalized_shape)}{at(user_location())}"
        )
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (inverted dropout; Srivastava
    et al., 2014). Identity when not ``training`` or ``p == 0``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = rand(*x.shape, dtype=x.dtype if x.dtype.is_floating_point else dtypes.float32, device=x.device) >= p
    return where(keep, x * (1.0 / (1.0 - p)), 0.0)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, D) picked by the int indices ``input`` (any shape): result ``input.shape + (D,)``.

    As in PyTorch, indices must lie in ``[0, V)`` (no negative indices: use ``weight[input]`` for those), so the
    lookup is a single ``pg.gather``. Raises ``DTypeError`` for non-integer indices, ``ShapeError`` for a weight
    that is not 2-D and ``IndexError`` for an index outside ``[0, V)`` (for a computed index: when the
    ``pg.check_index`` op runs)."""
    from picograd.frontend.tensor import _record

    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.dtype.category != 1:
        raise DTypeError(f"embedding: indices must be an integer tensor, got {input.dtype.name}{at(user_location())}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (V, D), got shape {weight.shape}{at(user_location())}")
    index = checked_index(input, weight.shape[0], 0)
    return _record("gather", [weight, index], (0,), (*input.shape, weight.shape[1]), weight.dtype)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with weight (out, in)."""
    out = x @ weight.T
    return out + bias if bias is not None else out
