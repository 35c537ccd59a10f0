"""``pg.nn.functional``: losses and activations composed of ``Tensor`` ops, with PyTorch's semantics."""

from __future__ import annotations

import math
from typing import Any

from picograd.errors import DTypeError, ShapeError
from picograd.frontend import dtypes
from picograd.frontend.creation import arange, rand
from picograd.frontend.graph import at, user_location
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
    over the others. Raises ``ShapeError``/``DTypeError`` naming the shapes and dtypes."""
    loc = user_location()
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if target.dtype.category != 1:
        raise DTypeError(f"cross_entropy: target must hold class indices (int64), got {target.dtype.name}{at(loc)}")
    if input.ndim == 1:
        input, target = input.unsqueeze(0), target.reshape(1)
    if input.ndim != 2 or target.shape != (input.shape[0],):
        raise ShapeError(
            f"cross_entropy: expected input (N, C) and target (N,), got {input.shape} and {target.shape}{at(loc)}"
        )
    logp = input.log_softmax(1)
    keep = target != ignore_index
    safe = where(keep, target, 0)
    picked = logp[arange(input.shape[0], device=input.device), safe]
    loss = where(keep, -picked, 0.0)
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
    lookup is a single ``pg.gather``. Raises ``DTypeError`` for non-integer indices and ``ShapeError`` for a
    weight that is not 2-D."""
    from picograd.frontend.tensor import _record

    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.dtype.category != 1:
        raise DTypeError(f"embedding: indices must be an integer tensor, got {input.dtype.name}{at(user_location())}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (V, D), got shape {weight.shape}{at(user_location())}")
    return _record("gather", [weight, input.long()], (0,), (*input.shape, weight.shape[1]), weight.dtype)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with weight (out, in)."""
    out = x @ weight.T
    return out + bias if bias is not None else out


# ---------------------------------------------------------------------------------------------------------------
# transformers (issue 11): attention and one_hot


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` as ``torch.nn.functional.scaled_dot_product_attention``,
    recorded as one ``pg.scaled_dot_product_attention`` op (with its own vjp).

    Shapes: query (*B, Hq, L, E), key (*B, H, S, E), value (*B, H, S, Ev) -> (*B, Hq, L, Ev); rank >= 2 (no head
    dim needed). Batch dims broadcast; ``Hq != H`` needs ``enable_gqa`` and ``Hq % H == 0`` (each key/value head
    serves ``Hq / H`` query heads). ``attn_mask`` broadcasts to (*B, Hq, L, S): bool means True = attend, a float
    mask (query's dtype) is added to the scores. ``is_causal`` keeps key j <= query i and cannot be combined with
    ``attn_mask``. ``scale`` defaults to ``1 / sqrt(E)``. ``dropout_p`` drops probabilities (always, as PyTorch:
    pass 0 in eval). Raises ``ShapeError`` / ``DTypeError`` / ``ValueError`` naming the shapes and dtypes."""
    from picograd.dialects.pg import broadcast_shape
    from picograd.frontend.tensor import _record

    loc = user_location()
    q, k, v = query, key, value
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            got = t.dtype.name if isinstance(t, Tensor) else type(t).__name__
            raise DTypeError(f"scaled_dot_product_attention: {name} must be a float tensor, got {got}{at(loc)}")
    shapes = f"query {q.shape}, key {k.shape}, value {v.shape}"
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise DTypeError(
            f"scaled_dot_product_attention: query, key and value need one dtype, got {q.dtype.name}, "
            f"{k.dtype.name}, {v.dtype.name}{at(loc)}"
        )
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ShapeError(
            f"scaled_dot_product_attention: query, key and value need one rank >= 2, got {shapes}{at(loc)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(
            f"scaled_dot_product_attention: query and key head dims differ ({q.shape[-1]} != {k.shape[-1]}): "
            f"{shapes}{at(loc)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ShapeError(
            f"scaled_dot_product_attention: key and value sequence lengths differ ({k.shape[-2]} != {v.shape[-2]}): "
            f"{shapes}{at(loc)}"
        )
    if q.ndim >= 3 and (q.shape[-3] != k.shape[-3] or k.shape[-3] != v.shape[-3]):
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        if not enable_gqa or hk != hv or hq % hk:
            raise ShapeError(
                f"scaled_dot_product_attention: head counts differ (query {hq}, key {hk}, value {hv}); grouped-query "
                f"attention needs enable_gqa=True and query heads a multiple of key/value heads: {shapes}{at(loc)}"
            )
        k, v = _repeat_heads(k, hq // hk), _repeat_heads(v, hq // hk)
    batch = broadcast_shape(broadcast_shape(q.shape[:-2], k.shape[:-2]) or (), v.shape[:-2])
    if batch is None or broadcast_shape(q.shape[:-2], k.shape[:-2]) is None:
        raise ShapeError(f"scaled_dot_product_attention: batch dims do not broadcast: {shapes}{at(loc)}")
    q = q._broadcast((*batch, *q.shape[-2:]))
    k = k._broadcast((*batch, *k.shape[-2:]))
    v = v._broadcast((*batch, *v.shape[-2:]))
    scores = (*batch, q.shape[-2], k.shape[-2])
    srcs = [q, k, v]
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                f"scaled_dot_product_attention: give either attn_mask or is_causal=True, not both (mask of shape "
                f"{attn_mask.shape}){at(loc)}"
            )
        if not isinstance(attn_mask, Tensor):
            attn_mask = Tensor(attn_mask, device=q.device)
        if attn_mask.dtype not in (dtypes.bool_, q.dtype):
            raise DTypeError(
                f"scaled_dot_product_attention: attn_mask must be bool (True = attend) or {q.dtype.name} (added to the "
                f"scores), got {attn_mask.dtype.name}{at(loc)}"
            )
        if attn_mask.ndim > len(scores) or broadcast_shape(attn_mask.shape, scores) != scores:
            raise ShapeError(
                f"scaled_dot_product_attention: attn_mask of shape {attn_mask.shape} does not broadcast to the scores' "
                f"shape {scores} (batch, L, S) for {shapes}{at(loc)}"
            )
        srcs.append(attn_mask)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1), got {dropout_p}{at(loc)}")
    if dropout_p > 0:
        keep = rand(*scores, dtype=q.dtype, device=q.device) >= dropout_p
        srcs.append(where(keep, 1.0 / (1.0 - dropout_p), 0.0).to(q.dtype))
    scale_value = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    attrs = (scale_value, bool(is_causal), attn_mask is not None, dropout_p > 0)
    return _record("scaled_dot_product_attention", srcs, attrs, (*scores[:-1], v.shape[-1]), q.dtype)


def _repeat_heads(x: Tensor, n: int) -> Tensor:
    """(*B, H, S, E) -> (*B, H * n, S, E), each head repeated n times in place (``repeat_interleave`` on dim -3)."""
    if n == 1:
        return x
    *b, h, s, e = x.shape
    return x.unsqueeze(-3).expand(*b, h, n, s, e).reshape(*b, h * n, s, e)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: ``tensor.shape + (num_classes,)``, as ``torch.nn.functional.one_hot``.

    ``num_classes=-1`` takes ``max + 1`` (reads the values: not inside ``@pg.compile``). Values are checked when
    they can be read (outside ``@pg.compile``): a negative class or one >= ``num_classes`` raises ``ValueError``
    naming it; inside a compiled step such a row is all zeros. Raises ``DTypeError`` for non-integer input."""
    from picograd.frontend.graph import STATE
    from picograd.frontend.tensor import _iota

    loc = user_location()
    if not isinstance(tensor, Tensor):
        tensor = Tensor(tensor)
    if tensor.dtype.category != 1:
        raise DTypeError(f"one_hot: needs an integer (int64) tensor of class indices, got {tensor.dtype.name}{at(loc)}")
    if STATE.trace is None:
        values = tensor.numpy()
        if num_classes == -1:
            num_classes = int(values.max()) + 1 if values.size else 0
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(
                f"one_hot: class {int(bad.flat[0])} is out of range for num_classes = {num_classes} (classes must "
                f"be in [0, {num_classes})){at(loc)}"
            )
    elif num_classes == -1:
        raise ValueError(f"one_hot: give num_classes inside @pg.compile (the values cannot be read){at(loc)}")
    classes = _iota((*tensor.shape, num_classes), tensor.ndim, tensor.device)
    return (tensor.long().unsqueeze(-1) == classes).long()
