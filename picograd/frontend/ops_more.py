"""More of PyTorch's everyday surface (issue 20, second batch), each a short composition of existing ops: pointwise
aliases and functions, comparisons, reductions, BLAS-style products, movement and joining, and ``torch``'s
grad-mode switches. Like ``picograd.frontend.ops``, nothing here adds a ``pg`` op, so every op lowers on every stage
and differentiates through existing rules. Where a composition rounds differently from PyTorch's kernel (float
``remainder``/``fmod`` as ``a - b * floor(a / b)``, ``log10`` as ``log(x) / ln 10``), results agree within a few
ulp, not bit for bit.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from picograd.errors import ShapeError
from picograd.frontend import dtypes
from picograd.frontend.amp import FLOAT32, LOWER_PRECISION
from picograd.frontend.creation import cat, rand, randint, randn, stack
from picograd.frontend.graph import STATE, at, no_grad, user_location
from picograd.frontend.indexing import checked_index
from picograd.frontend.ops import (
    einsum,
    flip,
    nonzero,
    roll,
    scatter_add,
    slice_dim,
    sort,
    take_along_unchecked,
)
from picograd.frontend.tensor import (
    Tensor,
    ValuesIndices,
    as_operands,
    iota,
    matmul,
    maximum,
    minimum,
    norm_dim,
    record,
    shape_args,
    where,
)

# ---------------------------------------------------------------------------------------------------------------
# Pointwise


def add(input: Any, other: Any, alpha: Any = 1) -> Tensor:
    """``input + alpha * other``."""
    return as_operands(input)[0][0] + (other * alpha if alpha != 1 else other)


def sub(input: Any, other: Any, alpha: Any = 1) -> Tensor:
    """``input - alpha * other``."""
    return as_operands(input)[0][0] - (other * alpha if alpha != 1 else other)


def mul(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] * other


def true_divide(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] / other


def floor_divide(input: Any, other: Any) -> Tensor:
    """``input // other`` (rounded down, as PyTorch)."""
    return as_operands(input)[0][0].div(other, rounding_mode="floor")


def remainder(input: Any, other: Any) -> Tensor:
    """``input - other * floor(input / other)``: the sign of ``other`` (Python's ``%``)."""
    (x, y), _ = as_operands(input, other)
    return x - x.div(y, rounding_mode="floor") * y


def fmod(input: Any, other: Any) -> Tensor:
    """``input - other * trunc(input / other)``: the sign of ``input`` (C's ``fmod``)."""
    (x, y), _ = as_operands(input, other)
    return x - x.div(y, rounding_mode="trunc") * y


def square(input: Tensor) -> Tensor:
    return input * input


def positive(input: Tensor) -> Tensor:
    return input


def sinh(input: Tensor) -> Tensor:
    """``(expm1(x) - expm1(-x)) / 2`` (no cancellation near 0)."""
    return (input.expm1() - (-input).expm1()) * 0.5


def cosh(input: Tensor) -> Tensor:
    return (input.exp() + (-input).exp()) * 0.5


def tan(input: Tensor) -> Tensor:
    return input.sin() / input.cos()


def log10(input: Tensor) -> Tensor:
    return input.log() * (1.0 / math.log(10.0))


def logaddexp(input: Tensor, other: Any) -> Tensor:
    """``log(exp(a) + exp(b))`` as ``max + log1p(exp(min - max))`` (``-inf`` when both are)."""
    (a, b), dtype = as_operands(input, other)
    if not dtype.is_floating_point:
        a, b = a._cast(dtypes.float32), b._cast(dtypes.float32)
    hi, lo = maximum(a, b), minimum(a, b)
    empty = hi == -math.inf
    return where(empty, -math.inf, hi + where(empty, 0.0, lo - hi).exp().log1p())


def logaddexp2(input: Tensor, other: Any) -> Tensor:
    """``log2(2**a + 2**b)``."""
    ln2 = math.log(2.0)
    return logaddexp(input * ln2, as_operands(other)[0][0] * ln2) * (1.0 / ln2)


def hypot(input: Tensor, other: Any) -> Tensor:
    return (input * input + other * other).sqrt()


def deg2rad(input: Tensor) -> Tensor:
    return input * (math.pi / 180.0)


def rad2deg(input: Tensor) -> Tensor:
    return input * (180.0 / math.pi)


def frac(input: Tensor) -> Tensor:
    """``x - trunc(x)`` (the sign of ``x``)."""
    return input - input.trunc()


def signbit(input: Tensor) -> Tensor:
    """Whether the sign bit is set (``-0.0`` included; the sign of a NaN cannot be told by comparisons: False)."""
    if not input.dtype.is_floating_point:
        return input < 0
    return (input < 0) | ((input == 0) & ((1.0 / input) < 0))


def xlogy(input: Any, other: Any) -> Tensor:
    """``x log(y)``, 0 where ``x == 0`` (unless ``y`` is NaN), as PyTorch; its gradient in ``x`` is ``log(y)``
    there too."""
    (x, y), dtype = as_operands(input, other)
    if not dtype.is_floating_point:
        x, y = x._cast(dtypes.float32), y._cast(dtypes.float32)
    bad = (x == 0) & ((y == 0) | (y == math.inf))  # where 0 * log(y) would be NaN
    return where(bad, 0.0, x * where(bad, 1.0, y).log())


def lerp(input: Tensor, end: Any, weight: Any) -> Tensor:
    """``input + weight (end - input)``."""
    return input + weight * (end - input)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, value: Any = 1) -> Tensor:
    return input + value * tensor1 * tensor2


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, value: Any = 1) -> Tensor:
    return input + value * tensor1 / tensor2


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None) -> Tensor:
    """NaN, +inf and -inf replaced (by 0 and the dtype's largest and lowest finite values unless given)."""
    if not input.dtype.is_floating_point:
        return input
    info = np.finfo(input.dtype.np)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    return where(input != input, nan, where(input == math.inf, hi, where(input == -math.inf, lo, input)))


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """``log(x / (1 - x))``, with ``x`` limited to ``[eps, 1 - eps]`` when ``eps`` is given."""
    x = input if eps is None else minimum(maximum(input, eps), 1.0 - eps)
    return (x / (1.0 - x)).log()


def float_power(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent`` in float64."""
    (x, y), _ = as_operands(input, exponent)
    return x._cast(dtypes.float64) ** y._cast(dtypes.float64)


def logical_and(input: Any, other: Any) -> Tensor:
    (x, y), _ = as_operands(input, other)
    return (x != 0) & (y != 0)


def logical_or(input: Any, other: Any) -> Tensor:
    (x, y), _ = as_operands(input, other)
    return (x != 0) | (y != 0)


def logical_xor(input: Any, other: Any) -> Tensor:
    (x, y), _ = as_operands(input, other)
    return (x != 0) ^ (y != 0)


# ---------------------------------------------------------------------------------------------------------------
# Comparison


def eq(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] == other


def ne(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] != other


def lt(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] < other


def le(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] <= other


def gt(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] > other


def ge(input: Any, other: Any) -> Tensor:
    return as_operands(input)[0][0] >= other


greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
subtract, multiply = sub, mul


def negative(input: Tensor) -> Tensor:
    return -input


def absolute(input: Tensor) -> Tensor:
    return input.abs()


def isnan(input: Tensor) -> Tensor:
    return input != input


def isinf(input: Tensor) -> Tensor:
    if not input.dtype.is_floating_point:
        return input != input
    return input.abs() == math.inf


def isposinf(input: Tensor) -> Tensor:
    return input == math.inf if input.dtype.is_floating_point else input != input


def isneginf(input: Tensor) -> Tensor:
    return input == -math.inf if input.dtype.is_floating_point else input != input


def isfinite(input: Tensor) -> Tensor:
    if not input.dtype.is_floating_point:
        return input == input
    return (input == input) & (input.abs() != math.inf)


def equal(input: Tensor, other: Tensor) -> bool:
    """Whether both have one shape and equal elements (a Python bool: realizes them)."""
    return tuple(input.shape) == tuple(other.shape) and bool(((input == other) == False).sum().item() == 0)  # noqa: E712


def fmax(input: Tensor, other: Any) -> Tensor:
    """Elementwise maximum that ignores NaN (NaN only where both are)."""
    (a, b), _ = as_operands(input, other)
    return where(a != a, b, where(b != b, a, maximum(a, b)))


def fmin(input: Tensor, other: Any) -> Tensor:
    """Elementwise minimum that ignores NaN."""
    (a, b), _ = as_operands(input, other)
    return where(a != a, b, where(b != b, a, minimum(a, b)))


def msort(input: Tensor) -> Tensor:
    """``sort(input, dim=0).values``."""
    return sort(input, 0).values


# ---------------------------------------------------------------------------------------------------------------
# Reductions


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:
    return (input != 0).sum(dim)


def nansum(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Sum treating NaN as 0."""
    return where(input != input, 0.0, input).sum(dim, keepdim)


def nanmean(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Mean of the non-NaN elements."""
    count = (input == input).sum(dim, keepdim)._cast(input.dtype)
    return nansum(input, dim, keepdim) / count


class MinMax(NamedTuple):
    """What ``aminmax`` returns (``torch.return_types.aminmax``)."""

    min: Tensor
    max: Tensor


def aminmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> MinMax:
    """``(min, max)`` over ``dim`` (all elements when None), a named tuple as PyTorch's."""
    return MinMax(input.amin(dim, keepdim), input.amax(dim, keepdim))


@FLOAT32
def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:
    """The vector ``p``-norm over ``dim`` (all elements when None): ``"fro"``/2 (square root of the sum of
    squares), 1, ``inf``, ``-inf``, 0 (count of nonzeros) or any other ``p``. Where the 2-norm is 0 its gradient
    is 0 (as PyTorch's ``norm_backward``), not ``0 * inf = NaN``."""
    x = input if input.dtype.is_floating_point else input._cast(dtypes.float32)
    if p in ("fro", 2, 2.0):
        squares = (x * x).sum(dim, keepdim)
        zero = squares == 0
        return where(zero, 0.0, where(zero, 1.0, squares).sqrt())
    if p in (1, 1.0):
        return x.abs().sum(dim, keepdim)
    if p == math.inf:
        return x.abs().amax(dim, keepdim)
    if p == -math.inf:
        return x.abs().amin(dim, keepdim)
    if p == 0:
        return (x != 0).sum(dim, keepdim)._cast(x.dtype)
    return (x.abs() ** float(p)).sum(dim, keepdim) ** (1.0 / float(p))


def dist(input: Tensor, other: Tensor, p: float = 2) -> Tensor:
    """``norm(input - other, p)``."""
    return norm(input - other, p)


def median(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """The lower median (element ``(n - 1) // 2`` in sorted order): of all elements when ``dim`` is None, else a
    named tuple ``(values, indices)`` along ``dim``; the gradient goes to that element. As in PyTorch, a slice
    with NaN has the median NaN (its first NaN's index)."""
    if dim is None:
        flat = input.reshape(-1)
        return median(flat, 0).values.reshape(())
    d = norm_dim(dim, input.ndim, input.shape)
    order = sort(input, d).indices
    n = input.shape[d] if input.ndim else 1
    k = (n - 1) // 2
    idx = slice_dim(order, d, k, k + 1)
    if input.dtype.is_floating_point and input.ndim:
        # NaN sorts last (stably): where a slice holds NaN, PyTorch's median is its first NaN, at n - count
        count = (input != input).sum(d, keepdim=True)
        idx = take_along_unchecked(order, where(count > 0, n - count, k), d)
    values = take_along_unchecked(input, idx, d)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return ValuesIndices(values, idx)


# ---------------------------------------------------------------------------------------------------------------
# Products


def _check_ndim(what: str, t: Tensor, ndim: int) -> None:
    if t.ndim != ndim:
        raise ShapeError(f"{what}: expected a {ndim}-D tensor, got shape {t.shape}{at(user_location())}")


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """``(n, m) @ (m, p)``."""
    _check_ndim("mm", input, 2)
    _check_ndim("mm", mat2, 2)
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """``(b, n, m) @ (b, m, p)``."""
    _check_ndim("bmm", input, 3)
    _check_ndim("bmm", mat2, 3)
    return matmul(input, mat2)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    _check_ndim("mv", input, 2)
    _check_ndim("mv", vec, 1)
    return matmul(input, vec)


def dot(input: Tensor, other: Tensor) -> Tensor:
    _check_ndim("dot", input, 1)
    _check_ndim("dot", other, 1)
    return matmul(input, other)


vdot = dot


def inner(input: Tensor, other: Tensor) -> Tensor:
    """Contraction of the last dims (a product for 0-d operands)."""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    return matmul(input.reshape(-1, input.shape[-1]), other.reshape(-1, other.shape[-1]).T).reshape(
        *input.shape[:-1], *other.shape[:-1]
    )


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    _check_ndim("outer", input, 1)
    _check_ndim("outer", vec2, 1)
    return input.unsqueeze(1) * vec2.unsqueeze(0)


ger = outer


@LOWER_PRECISION
def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """``beta input + alpha (mat1 @ mat2)``."""
    return _scaled(input, beta) + _scaled(mm(mat1, mat2), alpha)


@LOWER_PRECISION
def addmv(input: Tensor, mat: Tensor, vec: Tensor, beta: Any = 1, alpha: Any = 1) -> Tensor:
    return _scaled(input, beta) + _scaled(mv(mat, vec), alpha)


@LOWER_PRECISION
def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """``beta input + alpha sum_b batch1[b] @ batch2[b]``."""
    return _scaled(input, beta) + _scaled(bmm(batch1, batch2).sum(0), alpha)


@LOWER_PRECISION
def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, beta: Any = 1, alpha: Any = 1) -> Tensor:
    return _scaled(input, beta) + _scaled(bmm(batch1, batch2), alpha)


def addr(input: Tensor, vec1: Tensor, vec2: Tensor, beta: Any = 1, alpha: Any = 1) -> Tensor:
    return _scaled(input, beta) + _scaled(outer(vec1, vec2), alpha)


def _scaled(t: Tensor, factor: Any) -> Tensor:
    return t if factor == 1 else t * factor


def matrix_power(input: Tensor, n: int) -> Tensor:
    """``input`` multiplied by itself ``n >= 0`` times (by repeated squaring; the identity for 0)."""
    if n < 0:
        raise ValueError(f"matrix_power: negative powers need an inverse, which picograd lacks; got {n}")
    eye = (iota(input.shape[-2:], 0, input.device) == iota(input.shape[-2:], 1, input.device))._cast(input.dtype)
    result: Tensor | None = None
    base = input
    while n:
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return result if result is not None else eye._broadcast(input.shape)


def chain_matmul(*matrices: Tensor) -> Tensor:
    out = matrices[0]
    for m in matrices[1:]:
        out = matmul(out, m)
    return out


def tensordot(a: Tensor, b: Tensor, dims: Any = 2) -> Tensor:
    """Contract the last ``dims`` dims of ``a`` with the first of ``b`` (or the listed pairs), by ``einsum``."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da = [d % a.ndim for d in (dims[0] if isinstance(dims[0], list | tuple) else [dims[0]])]
        db = [d % b.ndim for d in (dims[1] if isinstance(dims[1], list | tuple) else [dims[1]])]
    sa = list(letters[: a.ndim])
    sb = list(letters[a.ndim : a.ndim + b.ndim])
    for i, j in zip(da, db, strict=True):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in da] + [c for k, c in enumerate(sb) if k not in db]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


def kron(input: Tensor, other: Tensor) -> Tensor:
    """The Kronecker product (operands of equal rank, leading 1s added to the shorter)."""
    n = builtins.max(input.ndim, other.ndim)
    a = input.reshape(*([1] * (n - input.ndim)), *input.shape)
    b = other.reshape(*([1] * (n - other.ndim)), *other.shape)
    a2 = a.reshape(*[v for s in a.shape for v in (s, 1)])
    b2 = b.reshape(*[v for s in b.shape for v in (1, s)])
    return (a2 * b2).reshape(*[x * y for x, y in zip(a.shape, b.shape, strict=True)])


def cross(input: Tensor, other: Tensor, dim: int = -1) -> Tensor:
    """The cross product of 3-vectors along ``dim``."""
    d = norm_dim(dim, input.ndim, input.shape)
    if input.shape[d] != 3:
        raise ShapeError(f"cross: dim {dim} of shape {input.shape} must have size 3{at(user_location())}")
    a1, a2 = roll(input, -1, d), roll(input, -2, d)
    b1, b2 = roll(other, -1, d), roll(other, -2, d)
    return a1 * b2 - a2 * b1


def trapezoid(y: Tensor, x: Tensor | None = None, dx: float = 1.0, dim: int = -1) -> Tensor:
    """The trapezoidal rule along ``dim`` (spacing ``dx`` or sample points ``x``)."""
    d = norm_dim(dim, y.ndim, y.shape)
    n = y.shape[d]
    mid = (slice_dim(y, d, 1, n) + slice_dim(y, d, 0, n - 1)) * 0.5
    if x is None:
        return mid.sum(d) * dx
    xd = norm_dim(dim, x.ndim, x.shape)
    return (mid * (slice_dim(x, xd, 1, n) - slice_dim(x, xd, 0, n - 1))).sum(d)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0) -> Tensor:
    """Pairwise ``p``-norm distances between the rows of ``x1`` (..., P, M) and ``x2`` (..., R, M)."""
    return norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)


def cov(input: Tensor, correction: int = 1) -> Tensor:
    """Covariance of the variables in the rows of ``input`` (observations in columns)."""
    x = input if input.ndim == 2 else input.reshape(1, -1)
    centered = x - x.mean(1, keepdim=True)
    out = matmul(centered, centered.T) / float(builtins.max(x.shape[1] - correction, 0))
    return out if input.ndim == 2 else out.reshape(())


def corrcoef(input: Tensor) -> Tensor:
    """Pearson correlation coefficients of the rows of ``input``."""
    c = cov(input)
    if c.ndim == 0:
        return c / c
    d = diagonal(c).sqrt()
    return c / d.unsqueeze(1) / d.unsqueeze(0)


# ---------------------------------------------------------------------------------------------------------------
# Movement, joining, diagonals


def t(input: Tensor) -> Tensor:
    """The transpose of a tensor with at most 2 dims."""
    if input.ndim > 2:
        raise ShapeError(f"t: expects at most 2 dims, got shape {input.shape}{at(user_location())}")
    return input.T


def swapaxes(input: Tensor, axis0: int, axis1: int) -> Tensor:
    return input.transpose(axis0, axis1)


swapdims = swapaxes


def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:
    """Move dims ``source`` to positions ``destination``; the others keep their order."""
    src = [norm_dim(d, input.ndim, input.shape) for d in ((source,) if isinstance(source, int) else source)]
    dests = (destination,) if isinstance(destination, int) else destination
    dst = [norm_dim(d, input.ndim, input.shape) for d in dests]
    rest = iter([d for d in range(input.ndim) if d not in src])
    placed = dict(zip(dst, src, strict=True))
    return input.permute(*[placed[k] if k in placed else next(rest) for k in range(input.ndim)])


moveaxis = movedim


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = norm_dim(dim, input.ndim, input.shape)
    s = start % input.shape[d] if start < 0 else start
    return slice_dim(input, d, s, s + length)


def select(input: Tensor, dim: int, index: int) -> Tensor:
    d = norm_dim(dim, input.ndim, input.shape)
    return input[(slice(None),) * d + (index,)]


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries of ``input`` at the 1-D int ``index`` along ``dim`` (one ``pg.gather``)."""
    d = norm_dim(dim, input.ndim, input.shape)
    idx = index.long().reshape(-1) if isinstance(index, Tensor) else Tensor(np.asarray(index, np.int64).reshape(-1))
    idx = checked_index(idx, input.shape[d] if input.ndim else 1, d)  # PyTorch raises for negative ones too
    shape = (*input.shape[:d], idx.shape[0], *input.shape[d + 1 :])
    return record("gather", [input, idx], (d,), shape, input.dtype)


def take(input: Tensor, index: Tensor) -> Tensor:
    """Elements of the flattened ``input`` at ``index`` (any shape); negative indices count from the end, as
    PyTorch's, and out-of-range ones raise ``IndexError``."""
    flat = input.reshape(-1)
    n = flat.shape[0]
    idx = checked_index(index.long(), n, 0, negative=True)
    idx = where(idx < 0, idx + n, idx)
    return record("gather", [flat, idx], (0,), index.shape, input.dtype)


def unbind(input: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    d = norm_dim(dim, input.ndim, input.shape)
    return tuple(select(input, d, i) for i in range(input.shape[d]))


concat = cat
concatenate = cat


def atleast_1d(input: Tensor) -> Tensor:
    return input.reshape(1) if input.ndim == 0 else input


def atleast_2d(input: Tensor) -> Tensor:
    return input.reshape(1, -1) if input.ndim < 2 else input


def atleast_3d(input: Tensor) -> Tensor:
    if input.ndim == 0:
        return input.reshape(1, 1, 1)
    if input.ndim == 1:
        return input.reshape(1, -1, 1)
    return input.unsqueeze(-1) if input.ndim == 2 else input


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    ts = [atleast_1d(x) for x in tensors]
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([atleast_2d(x) for x in tensors], 0)


row_stack = vstack


def dstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([atleast_3d(x) for x in tensors], 2)


def column_stack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([x.reshape(-1, 1) if x.ndim <= 1 else x for x in tensors], 1)


def argwhere(input: Tensor) -> Tensor:
    """``nonzero(input)`` (eager only)."""
    return nonzero(input)


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, alpha: Any = 1) -> Tensor:
    """``input`` with ``alpha * source`` slices added at the 1-D ``index`` along ``dim``."""
    d = norm_dim(dim, input.ndim, input.shape)
    idx = index.long().reshape(*([1] * d), -1, *([1] * (input.ndim - d - 1)))._broadcast(source.shape)
    return scatter_add(input, d, idx, source * alpha if alpha != 1 else source)


def ravel(input: Tensor) -> Tensor:
    return input.reshape(-1)


def fliplr(input: Tensor) -> Tensor:
    return flip(input, 1)


def flipud(input: Tensor) -> Tensor:
    return flip(input, 0)


def rot90(input: Tensor, k: int = 1, dims: Sequence[int] = (0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane of ``dims`` (from the first towards the second)."""
    a, b = (norm_dim(d, input.ndim, input.shape) for d in dims)
    k %= 4
    if k == 1:
        return flip(input, b).transpose(a, b)
    if k == 2:
        return flip(input, (a, b))
    if k == 3:
        return flip(input.transpose(a, b), b)
    return input


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal ``input[..., i, i + offset]`` of the planes of ``dim1``/``dim2``, as the last dim (one
    ``pg.gather`` on the flattened plane)."""
    a, b = norm_dim(dim1, input.ndim, input.shape), norm_dim(dim2, input.ndim, input.shape)
    rest = [k for k in range(input.ndim) if k not in (a, b)]
    n, m = input.shape[a], input.shape[b]
    length = builtins.max(0, builtins.min(n, m - offset) if offset >= 0 else builtins.min(n + offset, m))
    plane = input.permute(*rest, a, b).reshape(*[input.shape[k] for k in rest], n * m)
    if length == 0:
        return Tensor(np.zeros((*[input.shape[k] for k in rest], 0), input.dtype.np), device=input.device)
    first = offset if offset >= 0 else -offset * m
    positions = iota((length,), 0, input.device) * (m + 1) + first
    return record("gather", [plane, positions], (len(rest),), (*plane.shape[:-1], length), input.dtype)


def trace(input: Tensor) -> Tensor:
    return diagonal(input).sum()


def diag(input: Tensor, diagonal_: int = 0) -> Tensor:
    """A 1-D ``input`` as the ``diagonal_``-th diagonal of a square matrix, or the diagonal of a 2-D one."""
    if input.ndim == 2:
        return diagonal(input, diagonal_)
    if input.ndim != 1:
        raise ShapeError(f"diag: expects 1 or 2 dims, got shape {input.shape}{at(user_location())}")
    n = input.shape[0] + abs(diagonal_)
    rows, cols = iota((n, n), 0, input.device), iota((n, n), 1, input.device)
    on = (cols - rows) == diagonal_
    pos = where(on, where(rows < cols, rows, cols), 0)
    return where(on, take(input, pos), 0)


def diff(input: Tensor, n: int = 1, dim: int = -1) -> Tensor:
    """The ``n``-th forward difference along ``dim``."""
    d = norm_dim(dim, input.ndim, input.shape)
    out = input
    for _ in range(n):
        size = out.shape[d]
        out = slice_dim(out, d, 1, size) - slice_dim(out, d, 0, size - 1)
    return out


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    d = norm_dim(dim, input.ndim, input.shape)
    return input.reshape(*input.shape[:d], *sizes, *input.shape[d + 1 :])


def repeat_interleave(input: Tensor, repeats: int, dim: int | None = None) -> Tensor:
    """Each element repeated ``repeats`` times along ``dim`` (of the flattened tensor when None)."""
    x = input.reshape(-1) if dim is None else input
    d = 0 if dim is None else norm_dim(dim, x.ndim, x.shape)
    big = (*x.shape[: d + 1], repeats, *x.shape[d + 1 :])
    return x.unsqueeze(d + 1)._broadcast(big).reshape(*x.shape[:d], x.shape[d] * repeats, *x.shape[d + 1 :])


def broadcast_to(input: Tensor, size: Sequence[int]) -> Tensor:
    return input.expand(*size)


def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    from picograd.dialects.pg import broadcast_shape

    out: tuple[int, ...] | None = ()
    for s in shapes:
        s = (s,) if isinstance(s, int) else tuple(s)
        out = broadcast_shape(out, s) if out is not None else None
    if out is None:
        raise ShapeError(f"shapes {shapes} cannot be broadcast together{at(user_location())}")
    return out


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    shape = broadcast_shapes(*[x.shape for x in tensors])
    return tuple(x._broadcast(shape) for x in tensors)


def meshgrid(*tensors: Tensor, indexing: str = "ij") -> tuple[Tensor, ...]:
    """Coordinate grids from 1-D tensors (``indexing="xy"`` swaps the first two dims, as numpy)."""
    ts = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], list | tuple) else list(tensors)
    sizes = [x.shape[0] for x in ts]
    if indexing == "xy" and len(ts) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for k, x in enumerate(ts):
        pos = k if indexing == "ij" or len(ts) < 2 else {0: 1, 1: 0}.get(k, k)
        view = [1] * len(ts)
        view[pos] = x.shape[0]
        out.append(x.reshape(*view)._broadcast(tuple(sizes)))
    return tuple(out)


def cartesian_prod(*tensors: Tensor) -> Tensor:
    grids = meshgrid(*tensors, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1) if len(grids) > 1 else grids[0]


def block_diag(*tensors: Tensor) -> Tensor:
    """The matrices on the diagonal of one larger matrix (zeros elsewhere)."""
    mats = [x.reshape(1, -1) if x.ndim < 2 else x for x in tensors]
    cols = builtins.sum(m.shape[1] for m in mats)
    rows, left = [], 0
    for m in mats:
        lows, highs = (0, left), (0, cols - left - m.shape[1])
        rows.append(record("pad", [m], (lows, highs, (0, 0), 0.0), (m.shape[0], cols), m.dtype))
        left += m.shape[1]
    return cat(rows, 0)


def bucketize(input: Tensor, boundaries: Tensor, right: bool = False) -> Tensor:
    """The index of the bucket of each element among the sorted 1-D ``boundaries`` (``boundaries[i-1] < x <=
    boundaries[i]``, or ``<=``/``<`` with ``right``): a count of the boundaries below. ``O(len(boundaries))`` per
    element."""
    x = input.unsqueeze(-1)
    below = boundaries < x if not right else boundaries <= x
    return below.sum(-1)


def searchsorted(sorted_sequence: Tensor, values: Tensor, right: bool = False) -> Tensor:
    """Insertion points of ``values`` into the sorted last dim of ``sorted_sequence`` (1-D, or with matching
    leading dims)."""
    seq = sorted_sequence.unsqueeze(-2)  # (..., 1, n)
    v = values.unsqueeze(-1)  # (..., m, 1)
    below = seq < v if not right else seq <= v
    return below.sum(-1)


# ---------------------------------------------------------------------------------------------------------------
# Random and grad modes


def rand_like(input: Tensor, dtype: Any = None, device: Any = None) -> Tensor:
    return rand(*input.shape, dtype=dtype or input.dtype, device=device or input.device)


def randn_like(input: Tensor, dtype: Any = None, device: Any = None) -> Tensor:
    return randn(*input.shape, dtype=dtype or input.dtype, device=device or input.device)


def randint_like(input: Tensor, low: int, high: int | None = None, dtype: Any = None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, dtype=dtype or input.dtype, device=input.device)


def bernoulli(input: Tensor, p: float | None = None) -> Tensor:
    """1 with probability ``p`` (or ``input``'s elements), else 0, in ``input``'s dtype."""
    prob = input if p is None else p
    return (rand(*input.shape, dtype=input.dtype, device=input.device) < prob)._cast(input.dtype)


def normal(mean: Any, std: Any = 1.0, size: Any = None) -> Tensor:
    """Normal samples with elementwise ``mean`` and ``std`` (tensors or numbers; ``size`` when both are numbers)."""
    if size is not None:
        return randn(*shape_args(size if isinstance(size, tuple | list) else (size,))) * std + mean
    shape = broadcast_shapes(*[x.shape for x in (mean, std) if isinstance(x, Tensor)])
    like = mean if isinstance(mean, Tensor) else std
    return randn(*shape, dtype=like.dtype, device=like.device) * std + mean


class set_grad_enabled:
    """Context manager (and function) turning gradient recording on or off (``torch.set_grad_enabled``)."""

    def __init__(self, mode: bool) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = bool(mode)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev


class enable_grad:
    """Context manager under which recorded ops require grad again (inside ``no_grad``)."""

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = True

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


inference_mode = no_grad


def view_as(input: Tensor, other: Tensor) -> Tensor:
    """``input.reshape(other.shape)``."""
    return input.reshape(other.shape)


def type_as(input: Tensor, other: Tensor) -> Tensor:
    """``input`` cast to ``other``'s dtype."""
    return input.to(other.dtype)


def is_floating_point(input: Tensor) -> bool:
    return input.dtype.is_floating_point


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a picograd tensor (``torch.is_tensor``)."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    return input.numel()


def _new(input: Tensor, size: Any, fill: Any, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    from picograd.frontend.creation import full

    shape = size[0] if len(size) == 1 and isinstance(size[0], tuple | list) else size
    dt = input.dtype if dtype is None else dtype
    dev = input.device if device is None else device
    return full(tuple(shape), fill, dtype=dt, device=dev, requires_grad=requires_grad)


def new_zeros(input: Tensor, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``size`` with ``input``'s dtype and device (unless given), as ``Tensor.new_zeros``."""
    return _new(input, size, 0, dtype, device, requires_grad)


def new_ones(input: Tensor, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``size`` with ``input``'s dtype and device (unless given), as ``Tensor.new_ones``."""
    return _new(input, size, 1, dtype, device, requires_grad)


def new_full(
    input: Tensor, size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``fill_value`` of ``size`` with ``input``'s dtype and device (unless given), as ``Tensor.new_full``."""
    return _new(input, (size,), fill_value, dtype, device, requires_grad)


def new_tensor(input: Tensor, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``data`` as a tensor with ``input``'s dtype and device (unless given), as ``Tensor.new_tensor``."""
    dt = input.dtype if dtype is None else dtype
    return Tensor(data, dtype=dt, device=input.device if device is None else device, requires_grad=requires_grad)


METHODS: dict[str, Any] = {
    "add": add, "sub": sub, "subtract": sub, "mul": mul, "multiply": mul, "true_divide": true_divide,
    "floor_divide": floor_divide, "remainder": remainder, "fmod": fmod, "square": square, "positive": positive,
    "negative": lambda x: -x, "absolute": lambda x: x.abs(), "sinh": sinh, "cosh": cosh, "tan": tan,
    "log10": log10, "logaddexp": logaddexp, "logaddexp2": logaddexp2, "hypot": hypot, "deg2rad": deg2rad,
    "rad2deg": rad2deg, "frac": frac, "signbit": signbit, "xlogy": xlogy, "lerp": lerp, "addcmul": addcmul,
    "addcdiv": addcdiv, "nan_to_num": nan_to_num, "logit": logit, "float_power": float_power,
    "logical_and": logical_and, "logical_or": logical_or, "logical_xor": logical_xor, "eq": eq, "ne": ne, "lt": lt,
    "le": le, "gt": gt, "ge": ge, "greater": gt, "greater_equal": ge, "less": lt, "less_equal": le,
    "not_equal": ne, "isnan": isnan, "isinf": isinf, "isposinf": isposinf, "isneginf": isneginf,
    "isfinite": isfinite, "equal": equal, "fmax": fmax, "fmin": fmin, "msort": msort,
    "count_nonzero": count_nonzero, "nansum": nansum, "nanmean": nanmean, "aminmax": aminmax, "norm": norm,
    "dist": dist, "median": median, "mm": mm, "bmm": bmm, "mv": mv, "dot": dot, "vdot": vdot, "inner": inner,
    "outer": outer, "ger": ger, "addmm": addmm, "addmv": addmv, "addbmm": addbmm, "baddbmm": baddbmm, "addr": addr,
    "matrix_power": matrix_power, "kron": kron, "cross": cross, "t": t, "swapaxes": swapaxes, "swapdims": swapdims,
    "movedim": movedim, "moveaxis": moveaxis, "narrow": narrow, "select": select, "index_select": index_select,
    "take": take, "unbind": unbind, "index_add": index_add, "ravel": ravel, "fliplr": fliplr, "flipud": flipud,
    "rot90": rot90, "diagonal": diagonal, "trace": trace, "diag": diag, "diff": diff, "unflatten": unflatten,
    "repeat_interleave": repeat_interleave, "broadcast_to": broadcast_to, "argwhere": argwhere,
    "__mod__": remainder, "__rmod__": lambda x, other: remainder(other, x),  # x % y (Python's sign rule, as torch)
    "view_as": view_as, "reshape_as": view_as, "type_as": type_as, "is_floating_point": is_floating_point,
    "new_zeros": new_zeros, "new_ones": new_ones, "new_full": new_full, "new_tensor": new_tensor,
}  # fmt: skip
for _name, _fn in METHODS.items():
    if not hasattr(Tensor, _name):
        setattr(Tensor, _name, (lambda f: lambda self, *args, **kwargs: f(self, *args, **kwargs))(_fn))
