"""Convolution, pooling, padding and resizing (issue 12), with PyTorch's names, signatures and semantics.

``conv1d``/``conv2d`` record one ``pg.conv`` op each (its vjp is a rule of its own: the input gradient a transposed
convolution, the weight gradient a correlation); ``conv_transpose2d`` is that same transposed convolution of the
input (a ``pg.pad`` with interior zeros, then a ``pg.conv`` with the flipped, channel-swapped weight). Pooling,
padding and nearest-neighbour resizing are compositions of existing ``pg`` ops: windows of the padded input
gathered with ``pg.iota`` indices (a reshape where windows tile the input), then a reduction; ``max_pool2d`` takes
the first maximum of each window by ``argmax`` and a gather, so its gradient goes to that one element, as
PyTorch's does. ``adaptive_avg_pool2d`` multiplies by PyTorch's averaging matrices (window ``[floor(i H / h),
ceil((i + 1) H / h))``). All inputs are channels first (N, C, *spatial).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from picograd.dialects.pg import conv_output_size
from picograd.errors import DTypeError, ShapeError
from picograd.frontend.amp import LOWER_PRECISION
from picograd.frontend.graph import Loc, at, user_location
from picograd.frontend.tensor import Tensor, iota, matmul, record, where


def _tuple(value: Any, n: int, what: str, name: str, loc: Loc | None) -> tuple[int, ...]:
    """An int or a sequence of ``n`` ints as a tuple of ``n`` ints."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, Sequence) and len(value) == n and all(isinstance(v, int | np.integer) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{what}: {name} must be an int or a tuple of {n} ints, got {value!r}{at(loc)}")


def _check_float(what: str, loc: Loc | None, **tensors: Tensor | None) -> None:
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            got = t.dtype.name if isinstance(t, Tensor) else type(t).__name__
            raise DTypeError(f"{what}: {name} must be a float tensor, got {got}{at(loc)}")


def _check_rank(what: str, x: Tensor, r: int, loc: Loc | None, layout: str) -> None:
    if x.ndim != r + 2:
        raise ShapeError(
            f"{what}: expected a {r + 2}-d input {layout}, got shape {x.shape} (unbatched inputs are not supported: "
            f"add a batch dim with x.unsqueeze(0)){at(loc)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Convolutions


def _conv(
    what: str,
    r: int,
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    loc: Loc | None,
) -> Tensor:
    layout = "(N, C, L)" if r == 1 else "(N, C, H, W)"
    _check_float(what, loc, input=input, weight=weight, bias=bias)
    _check_rank(what, input, r, loc, layout)
    if weight.ndim != r + 2:
        raise ShapeError(
            f"{what}: expected a {r + 2}-d weight (out_channels, in_channels / groups, *kernel), got shape "
            f"{weight.shape}{at(loc)}"
        )
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        dts = ", ".join(t.dtype.name for t in (input, weight, bias) if t is not None)
        raise DTypeError(f"{what}: input, weight and bias need one dtype, got {dts}{at(loc)}")
    s = _tuple(stride, r, what, "stride", loc)
    d = _tuple(dilation, r, what, "dilation", loc)
    if min(s + d) < 1:
        raise ValueError(f"{what}: stride {s} and dilation {d} must be >= 1{at(loc)}")
    kernel = weight.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            lo = hi = (0,) * r
        elif padding == "same":
            if any(v != 1 for v in s):
                raise ValueError(f"{what}: padding='same' needs stride 1, got stride {s}{at(loc)}")
            total = [di * (k - 1) for di, k in zip(d, kernel, strict=True)]
            lo = tuple(t // 2 for t in total)
            hi = tuple(t - t // 2 for t in total)
        else:
            raise ValueError(f"{what}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}{at(loc)}")
    else:
        lo = hi = _tuple(padding, r, what, "padding", loc)
        if min(lo) < 0:
            raise ValueError(f"{what}: padding must be >= 0, got {lo}{at(loc)}")
    shapes = f"input {input.shape}, weight {weight.shape}"
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{what}: groups must be a positive int, got {groups!r}{at(loc)}")
    c, o = input.shape[1], weight.shape[0]
    if c % groups or o % groups:
        raise ShapeError(
            f"{what}: groups = {groups} must divide both the input channels ({c}) and the output channels ({o}): "
            f"{shapes}{at(loc)}"
        )
    if weight.shape[1] * groups != c:
        raise ShapeError(
            f"{what}: input has {c} channels but the weight expects {weight.shape[1] * groups} (weight.shape[1] = "
            f"{weight.shape[1]} x groups = {groups}): {shapes}{at(loc)}"
        )
    if bias is not None and bias.shape != (o,):
        raise ShapeError(f"{what}: bias of shape {bias.shape} does not match {o} output channels{at(loc)}")
    sizes = zip(input.shape[2:], kernel, s, d, lo, hi, strict=True)
    out = [conv_output_size(n, k, st, di, a, b) for n, k, st, di, a, b in sizes]
    if min(out) < 1:
        padded = tuple(n + a + b for n, a, b in zip(input.shape[2:], lo, hi, strict=True))
        dilated = tuple(di * (k - 1) + 1 for di, k in zip(d, kernel, strict=True))
        raise ShapeError(
            f"{what}: kernel {tuple(kernel)} (dilated: {dilated}) is larger than the padded input {padded}: "
            f"{shapes}, padding {lo if lo == hi else (lo, hi)}{at(loc)}"
        )
    y = record("conv", [input, weight], (s, d, lo, hi, groups), (input.shape[0], o, *out), input.dtype)
    if bias is not None:
        y = y + bias.reshape(o, *([1] * r))
    return y


@LOWER_PRECISION
def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """1-d convolution (cross-correlation) as ``torch.nn.functional.conv1d``: input (N, C, L), weight (O, C / groups,
    K), bias (O,) -> (N, O, L'). ``padding`` is an int, ``'valid'`` (0) or ``'same'`` (stride 1; an odd total goes
    one more to the end, as PyTorch). One ``pg.conv``. Raises ``ShapeError``/``DTypeError``/``ValueError`` naming
    the shapes and the caller's ``file:line``."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, user_location())


@LOWER_PRECISION
def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-d convolution (cross-correlation) as ``torch.nn.functional.conv2d``: input (N, C, H, W), weight
    (O, C / groups, kH, kW), bias (O,) -> (N, O, H', W') with ``H' = (H + 2 pad - dil (kH - 1) - 1) // stride + 1``.
    ``stride``/``padding``/``dilation`` are ints or pairs; ``padding`` may be ``'valid'`` or ``'same'`` (stride 1).
    One ``pg.conv``. Raises ``ShapeError`` (channel mismatch, groups not dividing the channels, a kernel larger
    than the padded input, an input that is not 4-d), ``DTypeError`` and ``ValueError``, naming the shapes and the
    caller's ``file:line``."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, user_location())


def _dilate_pad(x: Tensor, low: Sequence[int], high: Sequence[int], interior: Sequence[int]) -> Tensor:
    """``x`` with ``interior`` zeros between neighbours and ``low``/``high`` zeros before/after each dim; negative
    amounts cut elements instead."""
    if any(low) or any(high) or any(interior):
        lo = tuple(max(v, 0) for v in low)
        hi = tuple(max(v, 0) for v in high)
        shape = tuple(a + b + n + max(n - 1, 0) * i for n, a, b, i in zip(x.shape, lo, hi, interior, strict=True))
        x = record("pad", [x], (lo, hi, tuple(interior), 0.0), shape, x.dtype)
    if min((*low, *high), default=0) < 0:
        x = x[tuple(slice(max(-a, 0), n - max(-b, 0)) for n, a, b in zip(x.shape, low, high, strict=True))]
    return x


def _conv_transpose(
    what: str,
    r: int,
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: int,
    dilation: Any,
    loc: Loc | None,
) -> Tensor:
    layout = "(N, C, L)" if r == 1 else "(N, C, H, W)"
    _check_float(what, loc, input=input, weight=weight, bias=bias)
    _check_rank(what, input, r, loc, layout)
    if weight.ndim != r + 2:
        raise ShapeError(
            f"{what}: expected a {r + 2}-d weight (in_channels, out_channels / groups, *kernel), got {weight.shape}"
            f"{at(loc)}"
        )
    s = _tuple(stride, r, what, "stride", loc)
    p = _tuple(padding, r, what, "padding", loc)
    op_ = _tuple(output_padding, r, what, "output_padding", loc)
    d = _tuple(dilation, r, what, "dilation", loc)
    c, og = input.shape[1], weight.shape[1]
    shapes = f"input {input.shape}, weight {weight.shape}"
    if not isinstance(groups, int) or groups < 1 or c % groups:
        raise ShapeError(f"{what}: groups = {groups} must divide the input channels ({c}): {shapes}{at(loc)}")
    if weight.shape[0] != c:
        raise ShapeError(
            f"{what}: input has {c} channels but the weight expects {weight.shape[0]} (weight.shape[0]): "
            f"{shapes}{at(loc)}"
        )
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        dts = ", ".join(t.dtype.name for t in (input, weight, bias) if t is not None)
        raise DTypeError(f"{what}: input, weight and bias need one dtype, got {dts}{at(loc)}")
    if any(a >= max(st, di) for a, st, di in zip(op_, s, d, strict=True)):
        raise ValueError(f"{what}: output_padding {op_} must be smaller than stride {s} or dilation {d}{at(loc)}")
    kernel = weight.shape[2:]
    out = [
        (n - 1) * st - 2 * pp + di * (k - 1) + a + 1
        for n, st, pp, di, k, a in zip(input.shape[2:], s, p, d, kernel, op_, strict=True)
    ]
    if min(out) < 1:
        raise ShapeError(f"{what}: the output size {tuple(out)} is not positive: {shapes}, padding {p}{at(loc)}")
    if bias is not None and bias.shape != (groups * og,):
        raise ShapeError(f"{what}: bias of shape {bias.shape} does not match {groups * og} output channels{at(loc)}")
    from picograd.frontend.ops import flip

    before = [di * (k - 1) - pp for di, k, pp in zip(d, kernel, p, strict=True)]
    after = [b + a for b, a in zip(before, op_, strict=True)]
    spread = _dilate_pad(input, [0, 0, *before], [0, 0, *after], [0, 0, *(st - 1 for st in s)])
    ci = c // groups
    w = flip(weight, tuple(range(2, 2 + r))).reshape(groups, ci, og, *kernel)
    w = w.permute(0, 2, 1, *range(3, 3 + r)).reshape(groups * og, ci, *kernel)
    ones, zeros = (1,) * r, (0,) * r
    y = record("conv", [spread, w], (ones, d, zeros, zeros, groups), (input.shape[0], groups * og, *out), input.dtype)
    if bias is not None:
        y = y + bias.reshape(groups * og, *([1] * r))
    return y


@LOWER_PRECISION
def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """1-d transposed convolution as ``torch.nn.functional.conv_transpose1d`` (see ``conv_transpose2d``)."""
    args = (stride, padding, output_padding, groups, dilation, user_location())
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, *args)


@LOWER_PRECISION
def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """2-d transposed convolution as ``torch.nn.functional.conv_transpose2d``: input (N, C, H, W), weight
    (C, O / groups, kH, kW) -> (N, O, H', W') with ``H' = (H - 1) stride - 2 pad + dil (kH - 1) + output_padding
    + 1``. Computed as the gradient of ``conv2d`` with respect to its input: the input spread by ``stride - 1``
    zeros and padded by ``dil (k - 1) - pad`` (plus ``output_padding`` at the end), convolved with the weight
    flipped in space and with in/out channels swapped per group. Raises as ``conv2d``."""
    args = (stride, padding, output_padding, groups, dilation, user_location())
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, *args)


# ---------------------------------------------------------------------------------------------------------------
# Windows, pooling


def _windows(
    x: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Sequence[int]
) -> Tensor:
    """The windows of ``x`` (N, C, *S) as (N, C, *out, prod(kernel)): reshapes where windows tile ``x``, else one
    ``pg.gather`` of ``q stride + k dilation`` (``pg.iota`` arithmetic) per spatial dim."""
    r = len(kernel)
    n, c = x.shape[:2]
    tiles = all(k == st and di == 1 for k, st, di in zip(kernel, stride, dilation, strict=True))
    if tiles:
        x = x[(slice(None), slice(None), *(slice(0, q * k) for q, k in zip(out, kernel, strict=True)))]
        split = [v for q, k in zip(out, kernel, strict=True) for v in (q, k)]
        x = x.reshape(n, c, *split)
    else:
        for i, (k, st, di, q) in enumerate(zip(kernel, stride, dilation, out, strict=True)):
            index = iota((q, k), 0, x.device) * st + iota((q, k), 1, x.device) * di
            d = 2 + 2 * i  # earlier dims became (q, k) pairs
            shape = (*x.shape[:d], q, k, *x.shape[d + 1 :])
            x = record("gather", [x, index], (d,), shape, x.dtype)
    x = x.permute(0, 1, *range(2, 2 + 2 * r, 2), *range(3, 3 + 2 * r, 2))  # (N, C, Q1, Q2, ..., K1, K2, ...)
    return x.reshape(n, c, *out, math.prod(kernel))


def _pool_args(
    what: str,
    input: Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    r: int,
    loc: Loc | None,
) -> tuple[tuple[int, ...], ...]:
    layout = "(N, C, L)" if r == 1 else "(N, C, H, W)"
    _check_float(what, loc, input=input)
    _check_rank(what, input, r, loc, layout)
    k = _tuple(kernel_size, r, what, "kernel_size", loc)
    s = (
        k
        if stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
        else _tuple(stride, r, what, "stride", loc)
    )
    p = _tuple(padding, r, what, "padding", loc)
    d = _tuple(dilation, r, what, "dilation", loc)
    if min(k + s + d) < 1:
        raise ValueError(f"{what}: kernel_size {k}, stride {s} and dilation {d} must be >= 1{at(loc)}")
    if any(pp < 0 or 2 * pp > kk for pp, kk in zip(p, k, strict=True)):
        raise ValueError(f"{what}: padding {p} must be >= 0 and at most half the kernel size {k}{at(loc)}")
    out = []
    extra = []
    for n, kk, st, pp, di in zip(input.shape[2:], k, s, p, d, strict=True):
        span = n + 2 * pp - di * (kk - 1) - 1
        if span < 0:
            raise ShapeError(
                f"{what}: kernel {k} (dilation {d}) is larger than the padded input "
                f"{tuple(m + 2 * q for m, q in zip(input.shape[2:], p, strict=True))}: input {input.shape}{at(loc)}"
            )
        q = -(-span // st) + 1 if ceil_mode else span // st + 1
        if ceil_mode and (q - 1) * st >= n + pp:  # the last window must start inside the input or the left padding
            q -= 1
        out.append(q)
        extra.append(max(0, (q - 1) * st + di * (kk - 1) + 1 - (n + 2 * pp)))
    return k, s, p, d, tuple(out), tuple(extra)


def _padded(x: Tensor, p: Sequence[int], extra: Sequence[int], value: float) -> Tensor:
    if not any(p) and not any(extra):
        return x
    r = len(p)
    lows = (0, 0, *p)
    highs = (0, 0, *(a + b for a, b in zip(p, extra, strict=True)))
    shape = tuple(n + a + b for n, a, b in zip(x.shape, lows, highs, strict=True))
    return record("pad", [x], (lows, highs, (0,) * (2 + r), float(value)), shape, x.dtype)


def _max_pool(
    what: str,
    r: int,
    input: Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
    loc: Loc | None,
) -> Any:
    k, s, p, d, out, extra = _pool_args(what, input, kernel_size, stride, padding, dilation, ceil_mode, r, loc)
    x = _padded(input, p, extra, -math.inf)
    if not return_indices and all(
        kk == st and di == 1 and n == q * kk for kk, st, di, n, q in zip(k, s, d, x.shape[2:], out, strict=True)
    ):
        return _max_tiles(x, k, out)
    win = _windows(x, k, s, d, out)
    first = win.argmax(-1, keepdim=True)
    chosen = first == iota((win.shape[-1],), 0, win.device)  # one-hot of the first maximum: its gradient alone
    y = where(chosen, win, 0.0).sum(-1)
    if not return_indices:
        return y
    # the flat index into the input's spatial dims of each chosen element (as PyTorch's return_indices)
    rest = first.squeeze(-1)
    flat = None
    for i in reversed(range(r)):
        kk = math.prod(k[i + 1 :])
        ki = rest // kk - (rest // (kk * k[i])) * k[i]
        pos = iota(y.shape, 2 + i, y.device) * s[i] + ki * d[i] - p[i]
        flat = pos if flat is None else flat + pos * math.prod(input.shape[3 + i :])
    return y, flat


def _max_tiles(x: Tensor, kernel: Sequence[int], out: Sequence[int]) -> Tensor:
    """Max pooling where the windows tile ``x`` exactly: ``x`` viewed as (N, C, Q1, K1, Q2, K2, ...) (a reshape,
    no copy), and the first maximum taken one kernel dim at a time, last first (a one-hot of the ``argmax`` along
    it, then a select and a sum): the lexicographically first maximum of each window, so the gradient goes to the
    element PyTorch's goes to."""
    r = len(kernel)
    n, c = x.shape[:2]
    x = x.reshape(n, c, *(v for q, kk in zip(out, kernel, strict=True) for v in (q, kk)))
    for i in reversed(range(r)):
        dim = 3 + 2 * i
        first = x.argmax(dim, keepdim=True)
        chosen = first == iota(tuple(kernel[i] if j == dim else 1 for j in range(x.ndim)), dim, x.device)
        x = where(chosen, x, 0.0).sum(dim)
    return x


def max_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """1-d max pooling as ``torch.nn.functional.max_pool1d`` (see ``max_pool2d``)."""
    return _max_pool(
        "max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, user_location()
    )


def max_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """2-d max pooling as ``torch.nn.functional.max_pool2d``: input (N, C, H, W) -> (N, C, H', W'); ``stride``
    defaults to ``kernel_size``; implicit padding is -inf; ``ceil_mode`` as PyTorch. The first maximum of each
    window (row-major) is taken, and the gradient goes to it alone, as PyTorch's. ``return_indices`` also gives
    the flat index ``h W + w`` of each maximum in its channel. Raises ``ShapeError``/``ValueError`` naming the
    shapes."""
    return _max_pool(
        "max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, user_location()
    )


def _avg_pool(
    what: str,
    r: int,
    input: Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
    loc: Loc | None,
) -> Tensor:
    k, s, p, d, out, extra = _pool_args(what, input, kernel_size, stride, padding, 1, ceil_mode, r, loc)
    total = _windows(_padded(input, p, extra, 0.0), k, s, d, out).sum(-1)
    if divisor_override is not None:
        return total / float(divisor_override)
    if not ceil_mode and (count_include_pad or not any(p)):
        return total / float(math.prod(k))
    # PyTorch's divisor per window: its size clipped to the padded input (count_include_pad) or to the input
    counts = np.ones((), np.float64)
    for n, kk, st, pp, q in zip(input.shape[2:], k, s, p, out, strict=True):
        start = np.arange(q) * st - pp
        end = np.minimum(start + kk, n + pp)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, n)
        counts = np.multiply.outer(counts, (end - start).astype(np.float64))
    return total / Tensor(counts.astype(input.dtype.np), device=input.device)


def avg_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """1-d average pooling as ``torch.nn.functional.avg_pool1d`` (see ``avg_pool2d``)."""
    return _avg_pool(
        "avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, user_location()
    )


def avg_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> Tensor:
    """2-d average pooling as ``torch.nn.functional.avg_pool2d``: window sums divided by the window size (zeros
    of the padding counted with ``count_include_pad``), or by ``divisor_override``. Raises as ``max_pool2d``."""
    return _avg_pool(
        "avg_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        user_location(),
    )


def _averaging_matrix(n: int, m: int, dtype: Any) -> np.ndarray:
    """(m, n): row i averages input ``[floor(i n / m), ceil((i + 1) n / m))`` (PyTorch's adaptive windows)."""
    a = np.zeros((m, n), np.float64)
    for i in range(m):
        lo, hi = (i * n) // m, -(-((i + 1) * n) // m)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a.astype(dtype)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool2d``: (N, C, H, W) -> (N, C, h, w), window i along H covering
    ``[floor(i H / h), ceil((i + 1) H / h))``; ``None`` in ``output_size`` keeps that dim. A mean for (1, 1), a
    reshape and mean where h divides H, else products with the averaging matrices."""
    loc = user_location()
    what = "adaptive_avg_pool2d"
    _check_float(what, loc, input=input)
    _check_rank(what, input, 2, loc, "(N, C, H, W)")
    sizes = (output_size, output_size) if not isinstance(output_size, Sequence) else tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"{what}: output_size must be an int or a pair, got {output_size!r}{at(loc)}")
    h, w = (n if v is None else int(v) for v, n in zip(sizes, input.shape[2:], strict=True))
    big_h, big_w = input.shape[2:]
    if min(h, w) < 1:
        raise ValueError(f"{what}: output_size must be positive, got {(h, w)}{at(loc)}")
    if (h, w) == (1, 1):
        return input.mean((2, 3), keepdim=True)
    if big_h % h == 0 and big_w % w == 0:
        n, c = input.shape[:2]
        return input.reshape(n, c, h, big_h // h, w, big_w // w).mean((3, 5))
    x = input
    if h != big_h:
        x = matmul(Tensor(_averaging_matrix(big_h, h, input.dtype.np), device=input.device), x)
    if w != big_w:
        x = matmul(x, Tensor(_averaging_matrix(big_w, w, input.dtype.np).T.copy(), device=input.device))
    return x


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool1d``: (N, C, L) -> (N, C, l) (windows as ``adaptive_avg_pool2d``)."""
    loc = user_location()
    _check_float("adaptive_avg_pool1d", loc, input=input)
    _check_rank("adaptive_avg_pool1d", input, 1, loc, "(N, C, L)")
    size = output_size[0] if isinstance(output_size, Sequence) else output_size
    return adaptive_avg_pool2d(input.unsqueeze(-1), (size, 1)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------------
# Padding and resizing


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """``torch.nn.functional.pad``: ``pad = (last_low, last_high, second_last_low, ...)``; ``mode`` is
    ``'constant'`` (``value``, default 0; negative amounts cut), ``'reflect'`` (mirror without the edge),
    ``'replicate'`` (repeat the edge) or ``'circular'`` (wrap around). The non-constant modes gather along each
    padded dim. Raises ``ValueError`` naming the pad and the shape."""
    loc = user_location()
    pads = tuple(pad) if isinstance(pad, Sequence) else (pad,)
    if len(pads) % 2 or len(pads) // 2 > input.ndim or not all(isinstance(v, int | np.integer) for v in pads):
        raise ValueError(
            f"pad: expects an even number of ints, at most 2 per dim of the {input.ndim}-d input, got {pad!r}{at(loc)}"
        )
    lows, highs = [0] * input.ndim, [0] * input.ndim
    for i in range(len(pads) // 2):
        lows[input.ndim - 1 - i], highs[input.ndim - 1 - i] = int(pads[2 * i]), int(pads[2 * i + 1])
    if mode == "constant":
        if any(n + a + b < 0 for n, a, b in zip(input.shape, lows, highs, strict=True)):
            raise ValueError(f"pad: {pad!r} cuts more than the input's shape {input.shape}{at(loc)}")
        if value not in (None, 0, 0.0):
            lo = tuple(max(v, 0) for v in lows)
            hi = tuple(max(v, 0) for v in highs)
            shape = tuple(n + a + b for n, a, b in zip(input.shape, lo, hi, strict=True))
            x = record("pad", [input], (lo, hi, (0,) * input.ndim, float(value)), shape, input.dtype)  # type: ignore[arg-type]
            return _dilate_pad(x, [min(v, 0) for v in lows], [min(v, 0) for v in highs], [0] * input.ndim)
        return _dilate_pad(input, lows, highs, [0] * input.ndim)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}{at(loc)}")
    x = input
    for dim, (a, b) in enumerate(zip(lows, highs, strict=True)):
        if not a and not b:
            continue
        n = x.shape[dim]
        if mode == "reflect" and (a >= n or b >= n):
            raise ValueError(
                f"pad: reflect padding {(a, b)} must be smaller than the dim's size {n}: input {input.shape}{at(loc)}"
            )
        if mode == "circular" and (a > n or b > n):
            raise ValueError(
                f"pad: circular padding {(a, b)} must be at most the dim's size {n}: input {input.shape}{at(loc)}"
            )
        j = iota((n + a + b,), 0, x.device) - a  # the source position of each output position, then folded in
        if mode == "reflect":
            j = j.abs()
            j = where(j >= n, 2 * (n - 1) - j, j)
        elif mode == "replicate":
            j = j.clamp(0, n - 1)
        else:
            j = where(j < 0, j + n, where(j >= n, j - n, j))
        shape = (*x.shape[:dim], n + a + b, *x.shape[dim + 1 :])
        x = record("gather", [x, j], (dim,), shape, x.dtype)
    return x


def interpolate(
    input: Tensor,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: Any = None,
    recompute_scale_factor: Any = None,
) -> Tensor:
    """``torch.nn.functional.interpolate`` with ``mode='nearest'``: output index ``i`` reads input
    ``min(floor(i scale), n - 1)`` with ``scale = n / size`` (or ``1 / scale_factor`` when given, as PyTorch),
    one gather per spatial dim of an (N, C, *spatial) input. Raises ``ValueError`` for other modes and for
    neither or both of ``size`` and ``scale_factor``."""
    loc = user_location()
    if mode != "nearest":
        raise ValueError(f"interpolate: only mode='nearest' is implemented, got {mode!r}{at(loc)}")
    if input.ndim < 3:
        raise ShapeError(f"interpolate: expects an (N, C, *spatial) input, got shape {input.shape}{at(loc)}")
    r = input.ndim - 2
    if (size is None) == (scale_factor is None):
        raise ValueError(f"interpolate: give exactly one of size and scale_factor{at(loc)}")
    for name, value in (("size", size), ("scale_factor", scale_factor)):
        if isinstance(value, Sequence) and len(value) != r:
            raise ValueError(
                f"interpolate: {name} {tuple(value)} must have {r} entries, one per spatial dim of the input of shape "
                f"{input.shape}{at(loc)}"
            )
    x = input
    for i in range(r):
        n = input.shape[2 + i]
        if size is not None:
            m = int(size[i] if isinstance(size, Sequence) else size)
            scale = n / m
        else:
            f = float(scale_factor[i] if isinstance(scale_factor, Sequence) else scale_factor)
            m = int(math.floor(n * f))
            scale = 1.0 / f if not recompute_scale_factor else n / m
        if m < 1:
            raise ValueError(f"interpolate: output size {m} along dim {2 + i} must be positive{at(loc)}")
        if m == n:
            continue
        src = np.minimum(np.floor(np.arange(m, dtype=np.float32) * np.float32(scale)), n - 1).astype(np.int64)
        if np.array_equal(src, np.arange(m) * n // m):  # integer ratios: the index as pg.iota arithmetic
            index = iota((m,), 0, x.device) * n // m
        else:
            index = Tensor(src, device=x.device)
        d = 2 + i
        x = record("gather", [x, index], (d,), (*x.shape[:d], m, *x.shape[d + 1 :]), x.dtype)
    return x
