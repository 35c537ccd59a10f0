"""``pg.nn.functional``: losses and activations composed of ``Tensor`` ops, with PyTorch's semantics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from picograd.errors import DTypeError, ShapeError
from picograd.frontend import dtypes
from picograd.frontend.amp import FLOAT32, LOWER_PRECISION, opmath
from picograd.frontend.creation import rand
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.indexing import checked_index
from picograd.frontend.ops import take_along_unchecked
from picograd.frontend.tensor import Tensor, require_same_dtype, where


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


@opmath
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


def _class_last(input: Tensor, target: Tensor, probs: bool) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Logits (N, C, d1, ...) or (C,) as rows (M, C), targets as (M,) (or (M, C) probabilities), and the shape of
    the unreduced loss."""
    if input.ndim == 1:
        return input.unsqueeze(0), (target.unsqueeze(0) if probs else target.reshape(1)), ()
    c = input.shape[1]
    batch = (input.shape[0], *input.shape[2:])
    rows = input.permute(0, *range(2, input.ndim), 1).reshape(-1, c) if input.ndim > 2 else input
    if probs:
        t = target.permute(0, *range(2, target.ndim), 1).reshape(-1, c) if target.ndim > 2 else target
    else:
        t = target.reshape(-1)
    return rows, t, batch


@FLOAT32
def nll_loss(
    input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C), (C,) or (N, C, d1, ...) at class indices
    ``target`` (N,), () or (N, d1, ...), as ``torch.nn.functional.nll_loss``: ``-weight[t] input[n, t]``; targets
    equal to ``ignore_index`` contribute nothing; the mean divides by the summed weights of the others."""
    loc = user_location()
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if target.dtype.category != 1:
        raise DTypeError(f"nll_loss: target must hold class indices (int64), got {target.dtype.name}{at(loc)}")
    want = (input.shape[0], *input.shape[2:]) if input.ndim >= 2 else ()
    if input.ndim == 0 or target.shape != want:
        raise ShapeError(
            f"nll_loss: expected input (N, C, ...) and target (N, ...), got {input.shape} and {target.shape}{at(loc)}"
        )
    rows, t, batch = _class_last(input, target, False)
    keep = t != ignore_index
    buf = target._buffer
    if isinstance(buf, np.ndarray) and STATE.trace is None:  # known targets: checked now, at the user's line
        known = Tensor(np.where(buf != ignore_index, buf, 0).reshape(-1), device=input.device)
        safe = checked_index(known, rows.shape[1], 1, "target")
    else:
        safe = checked_index(where(keep, t, 0), rows.shape[1], 1, "target")
    picked = take_along_unchecked(rows, safe.unsqueeze(1), 1).squeeze(1)
    w = weight[safe] if weight is not None else None
    loss = where(keep, -(picked * w if w is not None else picked), 0.0)
    if reduction == "mean":
        count = where(keep, w, 0.0).sum() if w is not None else keep.sum().to(input.dtype)
        return loss.sum() / count
    return _reduce(loss.reshape(*batch), reduction)


@FLOAT32
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits ``input`` (N, C), (C,) or (N, C, d1, ...) as ``torch.nn.functional.cross_entropy``,
    against class indices ``target`` (int, (N, ...)) or class probabilities (float, ``input``'s shape), with
    class ``weight``s and ``label_smoothing`` (Szegedy et al., 2016: the target mixed with the uniform
    distribution). Index targets equal to ``ignore_index`` contribute nothing and the mean is over the others
    (weighted); probability targets are averaged over the batch. Raises ``ShapeError``/``DTypeError`` naming the
    shapes and dtypes."""
    loc = user_location()
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ShapeError(f"cross_entropy: input needs a class dim, got shape {input.shape}{at(loc)}")
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    logp = input.log_softmax(0 if input.ndim == 1 else 1)
    if target.dtype.is_floating_point:  # class probabilities
        if target.shape != input.shape:
            raise ShapeError(
                f"cross_entropy: probability targets must have the input's shape {input.shape}, got {target.shape}"
                f"{at(loc)}"
            )
        rows, t, batch = _class_last(logp, target.to(input.dtype), True)
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + label_smoothing / c
        per_class = rows * t if weight is None else rows * t * weight
        loss = -per_class.sum(1)
        if reduction == "mean":
            return loss.sum() / float(max(rows.shape[0], 1) if input.ndim > 1 else 1)
        return _reduce(loss.reshape(*batch), reduction)
    if target.dtype.category != 1:
        raise DTypeError(
            f"cross_entropy: target must hold class indices or probabilities, got {target.dtype.name}{at(loc)}"
        )
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    rows, t, batch = _class_last(logp, target, False)
    keep = t != ignore_index
    smooth = -(rows * weight if weight is not None else rows).sum(1)
    smooth = where(keep, smooth, 0.0)
    if reduction == "mean":
        if weight is not None:
            denom = where(keep, weight[where(keep, t, 0)], 0.0).sum()
        else:
            denom = keep.sum().to(input.dtype)
        smooth_red = smooth.sum() / denom
    else:
        smooth_red = _reduce(smooth.reshape(*batch), reduction)
    return nll * (1.0 - label_smoothing) + smooth_red * (label_smoothing / c)


@FLOAT32
def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """``-(t log(x) + (1 - t) log(1 - x))`` of probabilities ``input``, with each log clamped at -100 (as
    PyTorch), times ``weight``."""
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if target.shape != input.shape:
        raise ShapeError(
            f"binary_cross_entropy: target of shape {target.shape} differs from input {input.shape}"
            f"{at(user_location())}"
        )
    log_x = input.log().maximum(-100.0)
    log_1mx = (1.0 - input).log().maximum(-100.0)
    loss = -(target * log_x + (1.0 - target) * log_1mx)
    return _reduce(loss * weight if weight is not None else loss, reduction)


@FLOAT32
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """``binary_cross_entropy(sigmoid(input), target)`` computed stably from logits: ``(1 - t) x + (1 + (p - 1) t)
    softplus(-x)`` with ``p = pos_weight`` (as PyTorch)."""
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    if target.shape != input.shape:
        raise ShapeError(
            f"binary_cross_entropy_with_logits: target of shape {target.shape} differs from input {input.shape}"
            f"{at(user_location())}"
        )
    sp = softplus(-input)
    scale = 1.0 + (pos_weight - 1.0) * target if pos_weight is not None else None
    loss = (1.0 - target) * input + (sp * scale if scale is not None else sp)
    return _reduce(loss * weight if weight is not None else loss, reduction)


# -- activations (issue 20); the exp of the branch not taken reads a clamped input, so it stays finite and its
# zero gradient never meets an infinity (0 * inf would be NaN)


@opmath
def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` for ``x > 0``, else ``alpha (exp(x) - 1)`` (Clevert et al., 2016)."""
    return where(x > 0, x, alpha * x.minimum(0.0).expm1())


@opmath
def celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``max(0, x) + min(0, alpha (exp(x / alpha) - 1))`` (Barron, 2017)."""
    return where(x > 0, x, alpha * (x.minimum(0.0) / alpha).expm1())


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` for ``x > 0``, else ``negative_slope x``."""
    return where(x > 0, x, x * negative_slope)


def hardsigmoid(x: Tensor) -> Tensor:
    """``clamp(x / 6 + 1/2, 0, 1)``."""
    return where(x <= -3.0, 0.0, where(x >= 3.0, 1.0, x / 6.0 + 0.5))


def hardswish(x: Tensor) -> Tensor:
    """``x hardsigmoid(x)`` (Howard et al., 2019)."""
    return where(x <= -3.0, 0.0, where(x >= 3.0, x, x * (x + 3.0) / 6.0))


def softsign(x: Tensor) -> Tensor:
    """``x / (1 + |x|)``."""
    return x / (x.abs() + 1.0)


@opmath
def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta x)) / beta``, and ``x`` where ``beta x > threshold`` (as PyTorch)."""
    bx = x * beta if beta != 1.0 else x
    soft = bx.minimum(threshold).exp().log1p()
    return where(bx > threshold, x, soft / beta if beta != 1.0 else soft)


@opmath
def logsigmoid(x: Tensor) -> Tensor:
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``, stable for both signs."""
    return x.minimum(0.0) - (-x.abs()).exp().log1p()


@opmath
def mish(x: Tensor) -> Tensor:
    """``x tanh(softplus(x))`` (Misra, 2019)."""
    return x * softplus(x).tanh()


@FLOAT32
def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)^2`` reduced by ``reduction``."""
    diff = input - target
    return _reduce(diff * diff, reduction)


@FLOAT32
@opmath
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


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: Any = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization (Ioffe and Szegedy, 2015) as ``torch.nn.functional.batch_norm``: input (N, C, *) is
    normalized per channel C with the batch's mean and biased variance over N and * when ``training`` (and then
    ``running_mean``/``running_var``, if given, are replaced by ``(1 - momentum) running + momentum batch``, with
    the unbiased variance, as PyTorch; ``momentum`` may be a 0-d tensor), else with the running statistics. The
    update is an assignment: a compiled step writes it back as it does optimizer state; eagerly it is computed at
    once. Raises ``ShapeError`` naming the shapes and ``ValueError`` for one value per channel while training."""
    from picograd.frontend.tensor import realize

    loc = user_location()
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expects an (N, C, *) input, got shape {input.shape}{at(loc)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ShapeError(
                f"batch_norm: {name} of shape {t.shape} does not match {c} channels of input {input.shape}{at(loc)}"
            )
    view = (1, c, *([1] * (input.ndim - 2)))
    dtype = input.dtype
    if dtype in dtypes.LOW_PRECISION:  # computed in float32 and rounded once, as PyTorch (see amp.opmath)
        input = input._cast(dtypes.float32)
        weight, bias = (t._cast(dtypes.float32) if t is not None else None for t in (weight, bias))
    if training:
        dims = (0, *range(2, input.ndim))
        count = input.numel() // max(c, 1)
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape {input.shape}"
                f"{at(loc)}"
            )
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        scale = (var + eps).rsqrt()
        if weight is not None:  # folded into the per-channel scale: one full-size product fewer, both ways
            scale = scale * weight.reshape(*view)
        out = centered * scale
        updated = []
        for running, batch in ((running_mean, mean), (running_var, var * (count / (count - 1)))):
            if running is not None:
                stat = batch.detach().reshape(c)._cast(running.dtype)
                running._assign(running * (1 - momentum) + stat * momentum)
                updated.append(running)
        if updated and STATE.trace is None:
            realize(*updated)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"batch_norm: running_mean and running_var are needed when not training{at(loc)}")
        mean, var = running_mean, running_var
        if dtype in dtypes.LOW_PRECISION:
            mean, var = mean._cast(dtypes.float32), var._cast(dtypes.float32)
        scale = (var + eps).rsqrt()
        if weight is not None:
            scale = scale * weight
        out = (input - mean.reshape(*view)) * scale.reshape(*view)
    if bias is not None:
        out = out + bias.reshape(*view)
    return out._cast(dtype) if dtype in dtypes.LOW_PRECISION else out


@FLOAT32
@opmath
def group_norm(
    input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Group normalization (Wu and He, 2018) as ``torch.nn.functional.group_norm``: input (N, C, *) normalized over
    each group of ``C / num_groups`` channels and *, with the biased variance, then scaled and shifted per channel.
    Raises ``ShapeError`` when ``num_groups`` does not divide C or the affine shapes do not match."""
    loc = user_location()
    if input.ndim < 2:
        raise ShapeError(f"group_norm: expects an (N, C, *) input, got shape {input.shape}{at(loc)}")
    n, c = input.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ShapeError(
            f"group_norm: num_groups = {num_groups} does not divide the {c} channels of input {input.shape}{at(loc)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ShapeError(f"group_norm: {name} of shape {t.shape} does not match {c} channels{at(loc)}")
    x = input.reshape(n, num_groups, -1)
    mean = x.mean(2, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(2, keepdim=True)
    out = (centered * (var + eps).rsqrt()).reshape(*input.shape)
    view = (1, c, *([1] * (input.ndim - 2)))
    if weight is not None:
        out = out * weight.reshape(*view)
    if bias is not None:
        out = out + bias.reshape(*view)
    return out


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (inverted dropout; Srivastava
    et al., 2014). Identity when not ``training`` or ``p == 0``."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}{at(user_location())}")
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
    from picograd.frontend.tensor import record

    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.dtype.category != 1:
        raise DTypeError(f"embedding: indices must be an integer tensor, got {input.dtype.name}{at(user_location())}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (V, D), got shape {weight.shape}{at(user_location())}")
    index = checked_index(input, weight.shape[0], 0)
    return record("gather", [weight, index], (0,), (*input.shape, weight.shape[1]), weight.dtype)


@LOWER_PRECISION
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with x (..., in), weight (out, in) and bias (out,), all of one float dtype (no
    promotion, as in PyTorch): ``DTypeError`` naming the dtypes and the user's ``file:line`` otherwise."""
    require_same_dtype("linear", [("input", x), ("weight", weight), ("bias", bias)], user_location())
    out = x @ weight.T
    return out + bias if bias is not None else out


# -- more activations, distances and losses (issue 20, second batch)


@opmath
def silu(x: Tensor) -> Tensor:
    """``x sigmoid(x)`` (Elfwing et al., 2018; swish)."""
    return x * x.sigmoid()


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@opmath
def selu(x: Tensor) -> Tensor:
    """``scale (x if x > 0 else alpha (exp(x) - 1))`` with Klambauer et al.'s (2017) constants."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """``x`` limited to ``[min_val, max_val]`` (gradient 0 outside, as PyTorch)."""
    return where(x <= min_val, min_val, where(x >= max_val, max_val, x))


def relu6(x: Tensor) -> Tensor:
    return hardtanh(x, 0.0, 6.0)


def threshold(x: Tensor, threshold: float, value: float) -> Tensor:
    """``x`` where ``x > threshold``, else ``value``."""
    return where(x > threshold, x, value)


def hardshrink(x: Tensor, lambd: float = 0.5) -> Tensor:
    return where((x > lambd) | (x < -lambd), x, 0.0)


def softshrink(x: Tensor, lambd: float = 0.5) -> Tensor:
    return where(x > lambd, x - lambd, where(x < -lambd, x + lambd, 0.0))


def tanhshrink(x: Tensor) -> Tensor:
    return x - x.tanh()


@FLOAT32
@opmath
def softmin(x: Tensor, dim: int) -> Tensor:
    return (-x).softmax(dim)


def glu(x: Tensor, dim: int = -1) -> Tensor:
    """``a sigmoid(b)`` of the two halves ``a, b`` of ``x`` along ``dim`` (Dauphin et al., 2017)."""
    n = x.shape[dim]
    if n % 2:
        raise ShapeError(f"glu: dim {dim} of shape {x.shape} must have an even size{at(user_location())}")
    index: list[Any] = [slice(None)] * x.ndim
    index[dim] = slice(0, n // 2)
    a = x[tuple(index)]
    index[dim] = slice(n // 2, n)
    return a * x[tuple(index)].sigmoid()


@FLOAT32
def normalize(x: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """``x / max(||x||_p, eps)`` along ``dim``."""
    from picograd.frontend.ops_more import norm

    return x / norm(x, p, dim, keepdim=True).maximum(eps)


@FLOAT32
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``sum(x1 x2) / (max(||x1||, eps) max(||x2||, eps))`` along ``dim`` (PyTorch 2's formula; a zero vector has
    PyTorch's finite gradient, not NaN). ``x1`` and ``x2`` broadcast first, as in PyTorch (a size-1 ``dim`` of one
    is repeated before its norm is taken)."""
    from picograd.frontend.ops_more import broadcast_tensors, norm

    x1, x2 = broadcast_tensors(x1, x2)
    n1 = norm(x1, 2, dim).maximum(eps)
    n2 = norm(x2, 2, dim).maximum(eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dim."""
    from picograd.frontend.ops_more import norm

    return norm(x1 - x2 + eps, p, dim=-1, keepdim=keepdim)


@FLOAT32
def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    return _reduce((input - target).abs(), reduction)


@FLOAT32
def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)`` (Huber, 1964)."""
    d = input - target
    a = d.abs()
    return _reduce(where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)), reduction)


@FLOAT32
def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2``."""
    d = input - target
    a = d.abs()
    return _reduce(where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta), reduction)


@FLOAT32
def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """``target (log(target) - input)`` for log-probabilities ``input`` (0 where ``target == 0``);
    ``reduction="batchmean"`` divides the sum by the batch size."""
    from picograd.frontend.ops_more import xlogy

    loss = target.exp() * (target - input) if log_target else xlogy(target, target) - target * input
    if reduction == "batchmean":
        return loss.sum() / float(input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


@FLOAT32
def soft_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """``log(1 + exp(-y x))``."""
    return _reduce(softplus(-target * input), reduction)


@FLOAT32
def margin_ranking_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    return _reduce((-target * (input1 - input2) + margin).relu(), reduction)


@FLOAT32
def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """``x`` where ``y == 1``, ``max(0, margin - x)`` where ``y == -1``."""
    pos = where(target == 1, input, 0.0)
    neg = where(target == -1, (margin - input).relu(), 0.0)
    return _reduce(pos + neg, reduction)


@FLOAT32
def poisson_nll_loss(
    input: Tensor, target: Tensor, log_input: bool = True, full: bool = False, eps: float = 1e-8,
    reduction: str = "mean",
) -> Tensor:  # fmt: skip
    """``exp(x) - y x`` (``log_input``) or ``x - y log(x + eps)``, plus Stirling's term for ``y > 1`` when
    ``full``."""
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        stirling = target * target.log() - target + 0.5 * (2 * math.pi * target).log()
        loss = loss + where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction)


@FLOAT32
def gaussian_nll_loss(
    input: Tensor, target: Tensor, var: Tensor, full: bool = False, eps: float = 1e-6, reduction: str = "mean"
) -> Tensor:
    """``0.5 (log(max(var, eps)) + (x - y)^2 / max(var, eps))`` (+ ``0.5 log(2 pi)`` when ``full``)."""
    v = var.maximum(eps)
    d = input - target
    loss = 0.5 * (v.log() + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------------------------------------------
# transformers (issue 11): attention and one_hot


@LOWER_PRECISION
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
    pass 0 in eval). No keys (S = 0) gives zeros, as PyTorch. Raises ``ShapeError`` / ``DTypeError`` /
    ``ValueError`` naming the shapes and dtypes."""
    from picograd.dialects.pg import broadcast_shape
    from picograd.frontend.tensor import record

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
    if k.shape[-2] == 0:  # no keys: PyTorch's zeros (an empty softmax times empty values), zero gradients
        empty = q[..., :0].sum(-1, keepdim=True) + k.sum((-2, -1), keepdim=True)  # sums of nothing: exact zeros
        return empty.expand(*scores[:-1], v.shape[-1]) + v.sum(-2, keepdim=True)
    # head dim 0: the scores are 0 whatever the scale (PyTorch's default 1 / sqrt(0) is not a number)
    scale_value = (1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0) if scale is None else float(scale)
    attrs = (scale_value, bool(is_causal), attn_mask is not None, dropout_p > 0)
    return record("scaled_dot_product_attention", srcs, attrs, (*scores[:-1], v.shape[-1]), q.dtype)


def _repeat_heads(x: Tensor, n: int) -> Tensor:
    """(*B, H, S, E) -> (*B, H * n, S, E), each head repeated n times in place (``repeat_interleave`` on dim -3)."""
    if n == 1:
        return x
    *b, h, s, e = x.shape
    return x.unsqueeze(-3).expand(*b, h, n, s, e).reshape(*b, h * n, s, e)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: ``tensor.shape + (num_classes,)``, as ``torch.nn.functional.one_hot``.

    ``num_classes=-1`` takes ``max + 1`` (reads the values: not inside ``@pg.compile``). A negative class or one
    >= ``num_classes`` raises ``RuntimeError`` (as PyTorch) naming it and the user's ``file:line``, eager at once and
    in a compiled step when it runs (a ``pg.check_index``). Raises ``DTypeError`` for non-integer input."""
    from picograd.frontend.graph import STATE
    from picograd.frontend.indexing import checked_index
    from picograd.frontend.tensor import iota

    loc = user_location()
    if not isinstance(tensor, Tensor):
        tensor = Tensor(tensor)
    if tensor.dtype.category != 1:
        raise DTypeError(f"one_hot: needs an integer (int64) tensor of class indices, got {tensor.dtype.name}{at(loc)}")
    if num_classes == -1:
        if STATE.trace is not None:
            raise ValueError(f"one_hot: give num_classes inside @pg.compile (the values cannot be read){at(loc)}")
        values = tensor.numpy()
        num_classes = int(values.max()) + 1 if values.size else 0
    n = num_classes
    template = f"one_hot: class {{}} is out of range for num_classes = {n} (classes must be in [0, {n}))"
    tensor = checked_index(tensor, num_classes, tensor.ndim, template=template)
    classes = iota((*tensor.shape, num_classes), tensor.ndim, tensor.device)
    return (tensor.long().unsqueeze(-1) == classes).long()


# ---------------------------------------------------------------------------------------------------------------
# convolution, pooling, padding and resizing (issue 12)

from picograd.frontend.nn.conv import (  # noqa: E402, F401 - re-exported as F.conv2d, ...
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
    interpolate,
    max_pool1d,
    max_pool2d,
    pad,
)
