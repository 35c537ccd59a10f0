"""The operator surface of issue 20: PyTorch ops built as compositions of existing ``pg`` ops.

Every op here records only ops the ``pg`` dialect already has, so it lowers on every stage (numpy executor, loops,
GPU/PTX) and gets its gradient from the existing vjp rules. The designs:

- **Dim-wise gather / scatter** (``gather``/``take_along_dim``, ``scatter_add``): one ``pg.gather`` /
  ``pg.scatter_add`` on the flattened input with a linear index ``sum_k idx_k * stride_k`` (the index tensor
  along ``dim``, ``pg.iota`` along the other dims).
- **Scans** (``cumsum``, ``cumprod``, ``logcumsumexp``, ``cummax``, ``cummin``): the Hillis-Steele parallel prefix
  (W. D. Hillis and G. L. Steele, "Data parallel algorithms", CACM 29(12), 1986): ``ceil(log2 n)`` steps, each
  combining every element with the one ``2**k`` before it (a ``pg.pad`` of a ``pg.slice``), masked where there is
  none. ``O(n log n)`` work, exact for integer sums and within rounding of the sequential sum for floats.
  ``cummax``/``cummin`` scan (value, index) pairs (the later index wins ties, as PyTorch) and gather the values at
  the indices, so the gradient goes to the chosen element as PyTorch's does.
- **prod**: a pairwise tree of multiplications (pad to even with 1, reshape to pairs, multiply), so the gradient
  is exact also where elements are zero.
- **sort / argsort**: ranks by comparison counting (``rank_i = #{j : x_j before x_i}``, ties broken by position:
  stable; NaN sorts last as in PyTorch), then the permutation ``perm[r] = sum_i i [rank_i == r]`` and the values
  gathered at it. ``O(n^2)`` comparisons along the sorted dim: meant for the short dims of a model (top-k of
  logits, medians), not for sorting millions of elements.
- **scatter / scatter_reduce**: a one-hot table ``index == j`` over (output position, source position) along
  ``dim``, reduced over the source positions with the matching reduction (sum, tree product, amax/amin with
  ``self`` as one more candidate so ties split the gradient evenly, mean = sum / count). ``O(n m)`` along ``dim``
  (n output, m source positions). ``scatter`` keeps the last source position for repeated indices.
- **einsum**: parsed into diagonals (a gather), sums of letters used once, and one batched ``pg.matmul`` per
  pair of operands (left to right), then a permute to the output order.
- **Data-dependent shapes** (``nonzero``, ``masked_select``): eager only; the mask is realized on the host and
  the result gathered (``masked_select`` is differentiable in its input). Under ``@pg.compile`` they raise
  ``CompileError``.
"""

from __future__ import annotations

import builtins
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from picograd.errors import CompileError, DTypeError, ShapeError
from picograd.frontend import dtypes
from picograd.frontend.amp import FLOAT32, LOWER_PRECISION
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.indexing import checked_index
from picograd.frontend.tensor import (
    Tensor,
    ValuesIndices,
    as_operands,
    constant,
    iota,
    matmul,
    maximum,
    minimum,
    norm_dim,
    norm_dims,
    record,
    shape_args,
    where,
)

# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _pad_dim(x: Tensor, dim: int, low: int, high: int, value: float = 0.0) -> Tensor:
    """``x`` with ``low``/``high`` elements of ``value`` added before/after along ``dim`` (a ``pg.pad``)."""
    if low == 0 and high == 0:
        return x
    lows, highs = [0] * x.ndim, [0] * x.ndim
    lows[dim], highs[dim] = low, high
    shape = tuple(s + (low + high if k == dim else 0) for k, s in enumerate(x.shape))
    return record("pad", [x], (tuple(lows), tuple(highs), (0,) * x.ndim, float(value)), shape, x.dtype)


def _pad_to(x: Tensor, shape: Sequence[int], value: float = 0.0) -> Tensor:
    """``x`` padded at the end of each dim up to ``shape``."""
    if tuple(x.shape) == tuple(shape):
        return x
    highs = tuple(s - n for s, n in zip(shape, x.shape, strict=True))
    return record("pad", [x], ((0,) * x.ndim, highs, (0,) * x.ndim, float(value)), tuple(shape), x.dtype)


def slice_dim(x: Tensor, dim: int, start: int, stop: int) -> Tensor:
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, stop)
    return x[tuple(index)]


def _as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return Tensor(x, device=like.device if like is not None else None)


def _lowest(dtype: dtypes.DType) -> float:
    return -math.inf if dtype.is_floating_point else float(np.iinfo(dtype.np).min)


def _highest(dtype: dtypes.DType) -> float:
    return math.inf if dtype.is_floating_point else float(np.iinfo(dtype.np).max)


def _fill(value: float, like: Tensor) -> Tensor:
    """``value`` in ``like``'s dtype and shape (a broadcast 0-d constant)."""
    return constant(value if like.dtype.is_floating_point else int(value), like.dtype, like.shape, like.device)


# ---------------------------------------------------------------------------------------------------------------
# Dim-wise gather and scatter


def _check_index(what: str, x_shape: Sequence[int], dim: int, index: Tensor) -> None:
    loc = user_location()
    if index.dtype.category != 1:
        raise DTypeError(f"{what}: index must be an integer tensor, got {index.dtype.name}{at(loc)}")
    if index.ndim != len(x_shape):
        raise ShapeError(
            f"{what}: index of shape {index.shape} needs {len(x_shape)} dims like {tuple(x_shape)}{at(loc)}"
        )
    for k, (n, m) in enumerate(zip(index.shape, x_shape, strict=True)):
        if k != dim and n > m:
            raise ShapeError(
                f"{what}: index of shape {index.shape} is larger than {tuple(x_shape)} in dim {k} != {dim}{at(loc)}"
            )


def _linear_index(shape: Sequence[int], dim: int, index: Tensor) -> Tensor:
    """The row-major position in a tensor of ``shape`` of element ``i`` of ``index`` taken along ``dim``:
    ``index[i]`` in ``dim`` and ``i`` in the other dims."""
    lin: Tensor | None = None
    stride = 1
    for k in reversed(range(len(shape))):
        comp = index if k == dim else iota(index.shape, k, index.device)
        term = comp * stride if stride != 1 else comp
        lin = term if lin is None else term + lin
        stride *= shape[k]
    return lin if lin is not None else index


def _in_range(index: Tensor, input: Tensor, d: int) -> Tensor:
    """``index`` checked to lie in ``[0, input.shape[d])`` (``checked_index``); a 0-d ``input`` has no dim to check."""
    return checked_index(index, input.shape[d], d) if input.ndim else index


def take_along_dim(input: Tensor, indices: Tensor, dim: int) -> Tensor:
    """``out[i] = input[i with i[dim] = indices[i]]`` (same as ``gather(input, dim, indices)``); indices lie in
    ``[0, size)`` (int64), with ``indices.shape[k] <= input.shape[k]`` for ``k != dim``. One ``pg.gather``.
    Out-of-range indices raise ``IndexError`` naming the index, the dim's size and the user's line (at once when
    they are known, else when the ``pg.check_index`` op runs), as PyTorch raises for them."""
    d = norm_dim(dim, input.ndim, input.shape)
    indices = indices.long()
    _check_index("gather", input.shape, d, indices)
    indices = _in_range(indices, input, d)
    return take_along_unchecked(input, indices, d)


def take_along_unchecked(input: Tensor, indices: Tensor, dim: int) -> Tensor:
    """``take_along_dim`` for indices the library computed itself (known to lie in ``[0, size)``): no
    ``pg.check_index``."""
    d = norm_dim(dim, input.ndim, input.shape)
    indices = indices.long()
    _check_index("gather", input.shape, d, indices)
    if input.ndim == 0:
        return input
    if indices.numel() == 0:  # nothing to gather: an empty slice of the input, so autograd still sees it
        return input.reshape(-1)[:0].reshape(*indices.shape)
    lin = _linear_index(input.shape, d, indices)
    return record("gather", [input.reshape(-1), lin], (0,), indices.shape, input.dtype)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """``torch.gather``: ``out[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim == 0`` (and so on); ``out`` has
    ``index``'s shape. Raises ``ShapeError``/``DTypeError`` naming the shapes."""
    return take_along_dim(input, index, dim)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``torch.scatter_add``: ``input`` with ``src[i]`` added at ``i`` with ``i[dim] = index[i]`` (repeated indices
    accumulate); only the first ``index.shape`` elements of ``src`` are used."""
    d = norm_dim(dim, input.ndim, input.shape)
    index = index.long()
    _check_index("scatter_add", input.shape, d, index)
    index = _in_range(index, input, d)
    src = _as_tensor(src, input)._cast(input.dtype)
    src = src[tuple(slice(0, n) for n in index.shape)] if src.shape != index.shape else src
    lin = _linear_index(input.shape, d, index)
    flat = record("scatter_add", [src, lin], (0,), (input.numel(),), input.dtype)
    return input + flat.reshape(*input.shape)


def _one_hot_table(input: Tensor, d: int, index: Tensor, src: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """For scatter along ``d``: ``hit`` (bool) of shape ``I[:d] + (n,) + I[d:]`` that is ``index == j`` for output
    position ``j`` (``n = input.shape[d]``, ``I = index.shape``), the source broadcast to it, and the shape
    ``I[:d] + (n,) + I[d+1:]`` of the region of ``input`` the scatter can touch."""
    n = input.shape[d]
    ishape = index.shape
    table = (*ishape[:d], n, *ishape[d:])
    hit = index.unsqueeze(d) == iota(table, d, index.device)
    src_b = src.unsqueeze(d)._broadcast(table)
    region = (*ishape[:d], n, *ishape[d + 1 :])
    return hit, src_b, region


def _scatter_operands(what: str, input: Tensor, dim: int, index: Tensor, src: Any) -> tuple[int, Tensor, Tensor]:
    d = norm_dim(dim, input.ndim, input.shape)
    index = index.long()
    _check_index(what, input.shape, d, index)
    index = _in_range(index, input, d)
    if isinstance(src, Tensor):
        src_t = src._cast(input.dtype)
        if src_t.ndim != index.ndim or builtins.any(a < b for a, b in zip(src_t.shape, index.shape, strict=True)):
            raise ShapeError(
                f"{what}: src of shape {src_t.shape} is smaller than index {index.shape}{at(user_location())}"
            )
        src_t = src_t[tuple(slice(0, n) for n in index.shape)] if src_t.shape != index.shape else src_t
    else:
        src_t = constant(src, input.dtype, index.shape, input.device)
    return d, index, src_t


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, value: Any = None) -> Tensor:
    """``torch.scatter``: ``input`` with ``src[i]`` (or the scalar ``value``) written at ``i`` with ``i[dim] =
    index[i]``. Where several source elements land on one position, the last (largest source position) wins
    (PyTorch leaves that order unspecified)."""
    d, index, src_t = _scatter_operands("scatter", input, dim, index, value if src is None else src)
    hit, _, region = _one_hot_table(input, d, index, src_t)
    m_iota = iota(hit.shape, d + 1, input.device)
    last = where(hit, m_iota, -1).amax(d + 1)  # the last source position landing on each output position
    touched = _pad_to(last >= 0, input.shape)
    picked = take_along_unchecked(src_t, where(last >= 0, last, 0), d)
    return where(touched, _pad_to(picked, input.shape), input)


_SCATTER_REDUCE = ("sum", "prod", "mean", "amax", "amin")


def scatter_reduce(
    input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, include_self: bool = True
) -> Tensor:
    """``torch.scatter_reduce``: reduce (``sum``, ``prod``, ``mean``, ``amax``, ``amin``) the ``src`` elements
    landing on each position of ``input`` along ``dim``, together with ``input``'s own value when
    ``include_self``; positions no index names keep ``input``'s value. amax/amin split the gradient evenly
    among ties (including ``input``'s value), as PyTorch."""
    if reduce not in _SCATTER_REDUCE:
        raise ValueError(f"scatter_reduce: reduce must be one of {_SCATTER_REDUCE}, got {reduce!r}")
    d, index, src_t = _scatter_operands("scatter_reduce", input, dim, index, src)
    hit, src_b, region = _one_hot_table(input, d, index, src_t)
    count = hit.sum(d + 1)
    touched = _pad_to(count > 0, input.shape)
    own = input[tuple(slice(0, n) for n in region)]
    if reduce in ("sum", "mean"):
        total = where(hit, src_b, _fill(0, src_b)).sum(d + 1)._cast(input.dtype)
        if reduce == "sum":
            out = own + total if include_self else total
        else:
            n = count._cast(input.dtype) + (1 if include_self else 0)
            num = own + total if include_self else total
            safe = where(n == 0, 1, n)
            out = num / safe if input.dtype.is_floating_point else num.div(safe, rounding_mode="floor")
    elif reduce == "prod":
        product = prod(where(hit, src_b, _fill(1, src_b)), d + 1)._cast(input.dtype)
        out = own * product if include_self else product
    else:
        ext = _lowest(input.dtype) if reduce == "amax" else _highest(input.dtype)
        cand = where(hit, src_b, _fill(ext, src_b))
        if include_self:
            from picograd.frontend.creation import cat

            cand = cat([cand, own.unsqueeze(d + 1)], d + 1)
        out = cand.amax(d + 1) if reduce == "amax" else cand.amin(d + 1)
    return where(touched, _pad_to(out, input.shape), input)


# ---------------------------------------------------------------------------------------------------------------
# Reductions


@FLOAT32
def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    """Product over ``dim`` (all elements when None) as a tree of multiplications; integer and bool tensors give
    int64 (as PyTorch). The gradient is exact also where elements are zero."""
    x = input
    if dtype is not None:
        x = x._cast(dtypes.as_dtype(dtype))
    elif not x.dtype.is_floating_point:
        x = x._cast(dtypes.int64)
    if dim is None:
        out = _prod_last(x.reshape(-1)) if x.ndim else x
        return out.reshape(*([1] * x.ndim)) if keepdim else out
    d = norm_dim(dim, x.ndim, x.shape)
    if x.ndim == 0:
        return x
    moved = x.transpose(d, -1) if d != x.ndim - 1 else x
    out = _prod_last(moved)
    out = out.unsqueeze(-1).transpose(d, -1) if d != x.ndim - 1 else out.unsqueeze(-1)
    return out if keepdim else out.squeeze(d)


def _prod_last(x: Tensor) -> Tensor:
    """The product over the last dim (removed), pairwise."""
    if x.shape[-1] == 0:
        return _fill(1, x[..., 0:1]).squeeze(-1) if x.ndim else x
    while x.shape[-1] > 1:
        n = x.shape[-1]
        if n % 2:
            x = _pad_dim(x, x.ndim - 1, 0, 1, 1.0)
        pairs = x.reshape(*x.shape[:-1], (n + 1) // 2, 2)
        x = pairs[..., 0] * pairs[..., 1]
    return x.squeeze(-1)


def all(input: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether every element over ``dim`` is nonzero (bool)."""
    return (input == 0).sum(dim, keepdim) == 0


def any(input: Tensor, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether some element over ``dim`` is nonzero (bool)."""
    return (input != 0).sum(dim, keepdim) > 0


def var_mean(input: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """``(var, mean)`` over ``dim`` (as ``torch.var_mean``)."""
    return input.var(dim, correction=correction, keepdim=keepdim), input.mean(dim, keepdim)


def std_mean(input: Tensor, dim: Any = None, correction: int = 1, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """``(std, mean)`` over ``dim`` (as ``torch.std_mean``)."""
    return input.std(dim, correction=correction, keepdim=keepdim), input.mean(dim, keepdim)


# ---------------------------------------------------------------------------------------------------------------
# Scans


def _scan(xs: list[Tensor], d: int, combine: Callable[[list[Tensor], list[Tensor]], list[Tensor]]) -> list[Tensor]:
    """Hillis-Steele inclusive scan of the tuple of same-shaped tensors ``xs`` along ``d``: ``combine(earlier,
    later)`` is an associative operator on tuples."""
    n = xs[0].shape[d]
    k = 1
    while k < n:
        earlier = [_pad_dim(slice_dim(x, d, 0, n - k), d, k, 0) for x in xs]
        has = iota(xs[0].shape, d, xs[0].device) >= k
        combined = combine(earlier, xs)
        xs = [where(has, c, x) for c, x in zip(combined, xs, strict=True)]
        k *= 2
    return xs


def _scan_input(input: Tensor, dim: int, dtype: Any) -> tuple[Tensor, int]:
    x = input
    if dtype is not None:
        x = x._cast(dtypes.as_dtype(dtype))
    elif not x.dtype.is_floating_point:
        x = x._cast(dtypes.int64)
    if x.ndim == 0:
        x = x.reshape(1)
        return x, 0
    return x, norm_dim(dim, x.ndim, x.shape)


@FLOAT32
def cumsum(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative sum along ``dim`` (integer and bool tensors give int64)."""
    x, d = _scan_input(input, dim, dtype)
    (out,) = _scan([x], d, lambda a, b: [a[0] + b[0]])
    return out.reshape(*input.shape)


@FLOAT32
def cumprod(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative product along ``dim`` (exact gradient also at zeros)."""
    x, d = _scan_input(input, dim, dtype)
    (out,) = _scan([x], d, lambda a, b: [a[0] * b[0]])
    return out.reshape(*input.shape)


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    """``log(cumsum(exp(x)))`` along ``dim``, computed stably (``max + log1p(exp(min - max))`` per step)."""
    x, d = _scan_input(input if input.dtype.is_floating_point else input._cast(dtypes.float32), dim, None)

    def logaddexp(a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
        hi, lo = maximum(a[0], b[0]), minimum(a[0], b[0])
        empty = hi == -math.inf
        gap = where(empty, 0.0, lo - hi)
        return [where(empty, -math.inf, hi + gap.exp().log1p())]

    (out,) = _scan([x], d, logaddexp)
    return out.reshape(*input.shape)


def _cum_extreme(input: Tensor, dim: int, better: str) -> ValuesIndices:
    x = input if input.ndim else input.reshape(1)
    d = norm_dim(dim, x.ndim, x.shape)

    def pick(a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
        # the later element wins ties, and a NaN wins over everything before it, an earlier NaN too (as PyTorch:
        # the index moves to each new NaN)
        wins = (b[0] >= a[0]) if better == "max" else (b[0] <= a[0])
        if x.dtype.is_floating_point:
            wins = (b[0] != b[0]) | (wins & (a[0] == a[0]))
        return [where(wins, b[0], a[0]), where(wins, b[1], a[1])]

    _, idx = _scan([x.detach(), iota(x.shape, d, x.device)], d, pick)
    values = take_along_unchecked(x, idx, d)
    return ValuesIndices(values.reshape(*input.shape), idx.reshape(*input.shape))


def cummax(input: Tensor, dim: int) -> ValuesIndices:
    """Running maximum along ``dim`` and its index (the last one among ties; from a NaN on the value is NaN and the
    index that of the latest NaN), as ``torch.cummax``; the gradient goes to the element at the index."""
    return _cum_extreme(input, dim, "max")


def cummin(input: Tensor, dim: int) -> ValuesIndices:
    """Running minimum along ``dim`` and its index (see ``cummax``)."""
    return _cum_extreme(input, dim, "min")


# ---------------------------------------------------------------------------------------------------------------
# Sorting


def _before(a: Tensor, b: Tensor, descending: bool) -> Tensor:
    """Whether ``a`` sorts strictly before ``b``; NaN counts as larger than every number, as in PyTorch (last
    ascending, first descending)."""
    if not a.dtype.is_floating_point:
        return a > b if descending else a < b
    a_nan, b_nan = a != a, b != b
    plain = a > b if descending else a < b
    if descending:
        return plain | (a_nan & (b_nan == False))  # noqa: E712
    return plain | (b_nan & (a_nan == False))  # noqa: E712


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """Indices (int64) that sort ``input`` along ``dim`` (ascending unless ``descending``); ties keep their order
    (always stable); NaN sorts last. ``O(n^2)`` comparisons along ``dim``."""
    return sort(input, dim, descending, stable).indices


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> ValuesIndices:
    """``(values, indices)`` of ``input`` sorted along ``dim`` (see ``argsort``); the gradient flows back to the
    sorted elements."""
    if input.ndim == 0:
        return ValuesIndices(input, constant(0, dtypes.int64, device=input.device))
    d = norm_dim(dim, input.ndim, input.shape)
    x = input.transpose(d, -1) if d != input.ndim - 1 else input
    n = x.shape[-1]
    xd = x.detach()
    xi, xj = xd.unsqueeze(-1), xd.unsqueeze(-2)  # (..., i, 1), (..., 1, j)
    table = (*x.shape, n)
    pos_i, pos_j = iota(table, x.ndim - 1, x.device), iota(table, x.ndim, x.device)
    same = (xi == xj) | ((xi != xi) & (xj != xj)) if x.dtype.is_floating_point else xi == xj
    ahead = _before(xj._broadcast(table), xi._broadcast(table), descending) | (same & (pos_j < pos_i))
    rank = ahead.sum(-1)  # (..., i): how many elements go before element i
    slots = rank.unsqueeze(-2) == iota(table, x.ndim - 1, x.device)  # (..., r, i): element i goes to slot r
    perm = where(slots, pos_j, 0).sum(-1)
    values = take_along_unchecked(x, perm, x.ndim - 1)
    if d != input.ndim - 1:
        values, perm = values.transpose(d, -1), perm.transpose(d, -1)
    return ValuesIndices(values, perm)


# ---------------------------------------------------------------------------------------------------------------
# Movement


def repeat(input: Tensor, *sizes: Any) -> Tensor:
    """``torch.Tensor.repeat``: the tensor tiled ``sizes[k]`` times along dim k (leading dims added when ``sizes``
    is longer than the shape): a broadcast of an interleaved reshape, then a reshape."""
    reps = shape_args(sizes)
    if len(reps) < input.ndim:
        raise ShapeError(
            f"repeat: {len(reps)} repeat counts for a tensor with {input.ndim} dims (need at least as many)"
            f"{at(user_location())}"
        )
    shape = (1,) * (len(reps) - input.ndim) + tuple(input.shape)
    x = input.reshape(*[v for s in shape for v in (1, s)])
    big = tuple(v for r, s in zip(reps, shape, strict=True) for v in (r, s))
    return x._broadcast(big).reshape(*[r * s for r, s in zip(reps, shape, strict=True)])


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:
    """``torch.tile``: as ``repeat``, with ``dims`` padded with leading 1s to the tensor's rank."""
    reps = tuple(dims)
    reps = (1,) * (input.ndim - len(reps)) + reps
    return repeat(input, reps)


def flip(input: Tensor, dims: Any) -> Tensor:
    """Reverse the order of elements along ``dims`` (one ``pg.gather`` of ``n - 1 - iota`` per dim)."""
    out = input
    for d in norm_dims(dims, input.ndim, input.shape):
        n = out.shape[d]
        if n <= 1:
            continue
        rev = (n - 1) - iota((n,), 0, out.device)
        out = record("gather", [out, rev], (d,), out.shape, out.dtype)
    return out


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """``torch.roll``: elements shifted by ``shifts`` along ``dims`` (wrapping around); the flattened tensor when
    ``dims`` is None. Two slices and a concat per dim."""
    from picograd.frontend.creation import cat

    if dims is None:
        s = shifts if isinstance(shifts, int) else shape_args(shifts)[0]
        return roll(input.reshape(-1), s, 0).reshape(*input.shape)
    shift_list = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dim_list = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shift_list) != len(dim_list):
        raise ShapeError(f"roll: {len(shift_list)} shifts for {len(dim_list)} dims{at(user_location())}")
    out = input
    for s, dim in zip(shift_list, dim_list, strict=True):
        d = norm_dim(dim, input.ndim, input.shape)
        n = out.shape[d]
        k = s % n if n else 0
        if k:
            out = cat([slice_dim(out, d, n - k, n), slice_dim(out, d, 0, n - k)], d)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Comparison


def isclose(input: Any, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    """``|input - other| <= atol + rtol |other|`` elementwise (equal infinities are close; NaN only with
    ``equal_nan``), as ``torch.isclose``."""
    (x, y), dtype = as_operands(input, other)
    if not dtype.is_floating_point:
        x, y = x._cast(dtypes.float64), y._cast(dtypes.float64)
    close = ((x - y).abs() <= atol + rtol * y.abs()) | (x == y)
    if equal_nan:
        close = close | ((x != x) & (y != y))
    return close


def allclose(input: Any, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """Whether ``isclose`` holds everywhere (a Python bool: realizes the tensors)."""
    return bool(all(isclose(input, other, rtol, atol, equal_nan)).item())


# ---------------------------------------------------------------------------------------------------------------
# Data-dependent shapes (eager only)


def _eager_only(what: str) -> None:
    if STATE.trace is not None:
        raise CompileError(
            f"{what} gives a tensor whose shape depends on the data, which @pg.compile cannot trace; use a mask "
            f"with where() (or compute it outside the compiled function){at(user_location())}"
        )


def nonzero(input: Tensor, as_tuple: bool = False) -> Any:
    """Indices of the nonzero elements: an int64 tensor ``(count, ndim)``, or a tuple of ``ndim`` index tensors
    with ``as_tuple``. Eager only (``CompileError`` inside ``@pg.compile``)."""
    _eager_only("nonzero()")
    found = np.nonzero(np.asarray(input.numpy()).reshape(input.shape or (1,)) != 0)
    if as_tuple:
        return tuple(Tensor(i.astype(np.int64), device=input.device) for i in found)
    stacked = np.stack(found, axis=1) if found else np.zeros((0, 0), np.int64)
    return Tensor(stacked.astype(np.int64).reshape(-1, input.ndim), device=input.device)


def masked_select(input: Tensor, mask: Any) -> Tensor:
    """The elements of ``input`` where ``mask`` (broadcast together) is true, as a 1-D tensor; differentiable in
    ``input`` (a gather at the mask's positions). Eager only (``CompileError`` inside ``@pg.compile``)."""
    from picograd.dialects.pg import broadcast_shape

    _eager_only("masked_select()")
    m = _as_tensor(mask, input)
    shape = broadcast_shape(input.shape, m.shape)
    if shape is None:
        raise ShapeError(f"masked_select: shapes {input.shape} and {m.shape} cannot be broadcast{at(user_location())}")
    where_true = np.flatnonzero(np.broadcast_to(m.numpy() != 0, shape))
    flat = input._broadcast(shape).reshape(-1)
    index = Tensor(where_true.astype(np.int64), device=input.device)
    return record("gather", [flat, index], (0,), (len(where_true),), input.dtype)


# ---------------------------------------------------------------------------------------------------------------
# einsum


def _parse_einsum(equation: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    loc = user_location()
    if len(terms) != len(ranks):
        raise ShapeError(f"einsum: '{equation}' names {len(terms)} operands, got {len(ranks)}{at(loc)}")
    used = set(c for t in terms for c in t if c != ".")
    spare = [c for c in string.ascii_letters if c not in used]
    ell_rank = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks, strict=True) if "..." in t), default=0)
    ell = "".join(spare[:ell_rank])
    out_terms = []
    for t, r in zip(terms, ranks, strict=True):
        if "..." in t:
            k = r - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_rank - k :])
        if len(t) != r or not t.isalpha():
            raise ShapeError(f"einsum: subscripts '{t}' do not fit an operand with {r} dims{at(loc)}")
        out_terms.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit output: the ellipsis dims, then letters used once, in alphabetical order
        counts: dict[str, int] = {}
        for t in out_terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    if not out.isalpha() and out:
        raise ShapeError(f"einsum: bad output subscripts '{rhs}'{at(loc)}")
    return out_terms, out


def _diagonal(x: Tensor, letters: str) -> tuple[Tensor, str]:
    """Take the diagonal of every letter repeated within one operand (``ii -> i``)."""
    while True:
        dup = next((c for c in letters if letters.count(c) > 1), None)
        if dup is None:
            return x, letters
        p = letters.index(dup)
        q = letters.index(dup, p + 1)
        rest = [k for k in range(x.ndim) if k not in (p, q)]
        n = x.shape[p]
        moved = x.permute(*rest, p, q).reshape(*[x.shape[k] for k in rest], n * n)
        diag_index = iota((n,), 0, x.device) * (n + 1)
        x = record("gather", [moved, diag_index], (len(rest),), (*moved.shape[:-1], n), x.dtype)
        letters = "".join(letters[k] for k in rest) + dup


@LOWER_PRECISION
def einsum(equation: str, *operands: Any) -> Tensor:
    """``torch.einsum`` (explicit ``->`` or implicit output, ``...``, repeated letters for diagonals): each operand
    first sums the letters nobody else uses; operands are then contracted left to right, each pair as one batched
    ``pg.matmul`` (shared letters kept as batch dims, shared letters used nowhere else summed by the matmul),
    and the result permuted to the output order. Size-1 dims broadcast."""
    ops = list(operands[0]) if len(operands) == 1 and isinstance(operands[0], list | tuple) else list(operands)
    ts, _ = as_operands(*ops)
    if ts and not ts[0].dtype.is_floating_point:
        ts = [t._cast(dtypes.float32) for t in ts]
    terms, out = _parse_einsum(equation, [t.ndim for t in ts])
    items = [_diagonal(t, term) for t, term in zip(ts, terms, strict=True)]
    sizes: dict[str, int] = {}
    for t, letters in items:
        for c, n in zip(letters, t.shape, strict=True):
            if sizes.get(c, 1) != 1 and n not in (1, sizes[c]):
                raise ShapeError(f"einsum: letter '{c}' has sizes {sizes[c]} and {n}{at(user_location())}")
            sizes[c] = max(sizes.get(c, 1), n)

    def keep_after(k: int) -> set[str]:
        return set(out) | {c for _, letters in items[k + 1 :] for c in letters}

    def drop_unused(t: Tensor, letters: str, needed: set[str]) -> tuple[Tensor, str]:
        gone = [k for k, c in enumerate(letters) if c not in needed]
        if gone:
            t = t.sum(gone)
            letters = "".join(c for k, c in enumerate(letters) if k not in gone)
        return t, letters

    acc, acc_letters = items[0]
    acc, acc_letters = drop_unused(acc, acc_letters, keep_after(0))
    for k in range(1, len(items)):
        t, letters = items[k]
        needed = keep_after(k)
        t, letters = drop_unused(t, letters, needed | set(acc_letters))
        batch = [c for c in acc_letters if c in letters and c in needed]
        contract = [c for c in acc_letters if c in letters and c not in needed]
        left = [c for c in acc_letters if c not in letters]
        right = [c for c in letters if c not in acc_letters]
        a = _arrange(acc, acc_letters, batch + left + contract, sizes)
        b = _arrange(t, letters, batch + contract + right, sizes)
        nb, nl, nc, nr = (math.prod(sizes[c] for c in g) for g in (batch, left, contract, right))
        prod_ab = matmul(a.reshape(nb, nl, nc), b.reshape(nb, nc, nr))
        acc = prod_ab.reshape(*[sizes[c] for c in batch + left + right])
        acc_letters = "".join(batch + left + right)
    acc, acc_letters = drop_unused(acc, acc_letters, set(out))
    if sorted(acc_letters) != sorted(out):
        raise ShapeError(f"einsum: output subscripts '{out}' name letters no operand has{at(user_location())}")
    return acc.permute(*[acc_letters.index(c) for c in out]) if acc_letters != out else acc


def _arrange(t: Tensor, letters: str, order: Sequence[str], sizes: dict[str, int]) -> Tensor:
    """``t`` (dims named by ``letters``) permuted to ``order`` and broadcast to the full letter sizes."""
    t = t.permute(*[letters.index(c) for c in order]) if list(letters) != list(order) else t
    return t._broadcast(tuple(sizes[c] for c in order))


# ---------------------------------------------------------------------------------------------------------------
# Tensor methods


def _method(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda self, *args, **kwargs: fn(self, *args, **kwargs)


METHODS: dict[str, Callable[..., Any]] = {
    "gather": gather,
    "take_along_dim": take_along_dim,
    "scatter": scatter,
    "scatter_add": scatter_add,
    "scatter_reduce": scatter_reduce,
    "prod": prod,
    "all": all,
    "any": any,
    "cumsum": cumsum,
    "cumprod": cumprod,
    "logcumsumexp": logcumsumexp,
    "cummax": cummax,
    "cummin": cummin,
    "sort": sort,
    "argsort": argsort,
    "repeat": repeat,
    "tile": tile,
    "flip": flip,
    "roll": roll,
    "isclose": isclose,
    "allclose": allclose,
    "nonzero": nonzero,
    "masked_select": masked_select,
}
for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _method(_fn))
