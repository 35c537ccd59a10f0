"""What each ``pg`` op computes, in numpy: the reference semantics of the ``pg`` dialect, as data (tables of numpy
functions per op class) plus the few ops that need their attributes.

``op_kernel(op)`` is the numpy function computing an op from its operand arrays. The CPU runtime
(``picograd.runtime.numpy_executor``) runs ``pg`` functions with it and ``pg-canonicalize`` folds constants with it, so
folding and execution agree bit for bit. ``numpy_dtype`` and ``constant_array`` map builtin element types and dense
constants to numpy.

``bf16`` and ``f16`` values are stored as ``ml_dtypes.bfloat16`` and ``numpy.float16`` arrays. Every op that computes
on them (everything but data movement) runs on ``float32`` copies of its 16-bit operands and rounds its result
once to the result type: elementwise ops as PyTorch's CPU kernels do, and matmuls, attention and reductions with
``float32`` accumulation as cuBLAS and PyTorch do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
)
from xdsl.ir import Attribute, Operation

from picograd.dialects import pg, philox

Kernel = Callable[..., Any]


def numpy_dtype(element: Attribute) -> np.dtype:
    """numpy dtype of a builtin element type (f32, f64, bf16 as ``ml_dtypes.bfloat16``, f16, i64, i32, i1)."""
    if isinstance(element, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element, Float64Type):
        return np.dtype(np.float64)
    if isinstance(element, BFloat16Type):
        import ml_dtypes  # on first use: its import takes about half a CPU second

        return np.dtype(ml_dtypes.bfloat16)
    if isinstance(element, Float16Type):
        return np.dtype(np.float16)
    if isinstance(element, IntegerType):
        width = element.width.data
        return np.dtype(np.bool_) if width == 1 else np.dtype(f"int{width}")
    raise NotImplementedError(f"no numpy dtype for element type {element}")


def _result_info(op: Operation) -> tuple[tuple[int, ...], np.dtype]:
    t = op.results[0].type
    assert isinstance(t, TensorType)
    return tuple(t.get_shape()), numpy_dtype(t.element_type)


def constant_array(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    """The numpy array of a dense constant (splats expanded)."""
    t = attr.type
    assert isinstance(t, TensorType)
    shape, dtype = tuple(t.get_shape()), numpy_dtype(t.element_type)
    values = np.asarray(attr.get_values(), dtype=dtype)
    if values.size == 1:
        return np.full(shape, values.reshape(()), dtype=dtype)
    return values.reshape(shape)


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy import special  # imported on first use: scipy costs a quarter second at startup

    return special.erf(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in three in-place passes, as PyTorch's CPU kernel computes it: accurate to the last
    bits wherever ``exp(-x)`` is finite; below that (x < -88 in f32) the true value is under the smallest normal
    float and the result is 0."""
    with np.errstate(over="ignore"):
        e = np.asarray(np.exp(np.negative(x)))  # a 0-d array, not a numpy scalar, for the in-place passes
    e += 1
    return np.reciprocal(e, out=e)


_UNARY: dict[type[Operation], Kernel] = {
    pg.NegOp: np.negative,
    pg.ExpOp: np.exp,
    pg.LogOp: np.log,
    pg.SqrtOp: np.sqrt,
    pg.RsqrtOp: lambda x: 1 / np.sqrt(x),
    pg.SinOp: np.sin,
    pg.CosOp: np.cos,
    pg.TanhOp: np.tanh,
    pg.SigmoidOp: _sigmoid,
    pg.ReluOp: lambda x: np.maximum(x, 0).astype(x.dtype),
    pg.AbsOp: np.abs,
    pg.ReciprocalOp: np.reciprocal,
    pg.ErfOp: lambda x: _erf(x),
    pg.StopGradientOp: lambda x: x,
    # the operator surface (issue 20)
    pg.FloorOp: np.floor,
    pg.CeilOp: np.ceil,
    pg.RoundOp: np.rint,
    pg.TruncOp: np.trunc,
    pg.SignOp: lambda x: (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype),  # 0 for NaN (PyTorch)
    pg.Log2Op: np.log2,
    pg.Exp2Op: np.exp2,
    pg.Log1pOp: np.log1p,
    pg.Expm1Op: np.expm1,
    pg.AsinOp: np.arcsin,
    pg.AcosOp: np.arccos,
    pg.AtanOp: np.arctan,
    pg.AsinhOp: np.arcsinh,
    pg.AcoshOp: np.arccosh,
    pg.AtanhOp: np.arctanh,
}

_BINARY: dict[type[Operation], Kernel] = {
    pg.AddOp: np.add,
    pg.SubOp: np.subtract,
    pg.MulOp: np.multiply,
    pg.PowOp: np.power,
    pg.MaximumOp: np.maximum,
    pg.MinimumOp: np.minimum,
    # the operator surface (issue 20)
    pg.Atan2Op: np.arctan2,
    pg.CopysignOp: np.copysign,
    pg.BitwiseAndOp: np.bitwise_and,
    pg.BitwiseOrOp: np.bitwise_or,
    pg.BitwiseXorOp: np.bitwise_xor,
}

_COMPARE: dict[str, Kernel] = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


def _pad(x: np.ndarray, low: Sequence[int], high: Sequence[int], interior: Sequence[int], value: float, shape):
    out = np.full(shape, value, dtype=x.dtype)
    index = tuple(
        slice(lo, lo + (n - 1) * (it + 1) + 1 if n else lo, it + 1)
        for n, lo, it in zip(x.shape, low, interior, strict=True)
    )
    out[index] = x
    return out


def _scatter_add(updates: np.ndarray, indices: np.ndarray, dim: int, shape, dtype) -> np.ndarray:
    out = np.zeros(shape, dtype=dtype)
    flat = updates.reshape(*shape[:dim], indices.size, *shape[dim + 1 :])
    np.add.at(out, (slice(None),) * dim + (indices.reshape(-1),), flat)  # type: ignore[arg-type]
    return out


def _check_index(op: pg.CheckIndexOp) -> Kernel:
    low, high = op.bounds

    def check(i: np.ndarray) -> np.ndarray:
        # one unsigned comparison: i - low lies in [0, high - low) exactly when i is in range
        shifted = i - low if low else i
        if (shifted.view(np.dtype(f"u{i.dtype.itemsize}")) >= high - low).any():
            values = np.asarray(i)
            raise pg.check_error(op.message(int(values[(values < low) | (values >= high)].flat[0])))
        return i

    return check


LOW_PRECISION = ("bfloat16", "float16")  # numpy names of the 16-bit float dtypes (ml_dtypes.bfloat16, float16)

# ops exact on 16-bit values (they move, select or negate elements): they run on 16-bit arrays as they are
_MOVES = (
    pg.BroadcastToOp,
    pg.ReshapeOp,
    pg.PermuteOp,
    pg.SliceOp,
    pg.PadOp,
    pg.ConcatOp,
    pg.GatherOp,
    pg.SelectOp,
    pg.CastOp,
    pg.CheckIndexOp,
    pg.StopGradientOp,
    pg.NegOp,
    pg.AbsOp,
)


def _kernel(op: Operation) -> Kernel:
    """The numpy function computing ``op`` from its operand arrays. An op on or giving 16-bit floats computes in
    ``float32`` and rounds its result to its type (see the module docstring)."""
    shape, dtype = _result_info(op) if op.results else ((), np.dtype(np.float32))
    types = [*(v.type for v in op.operands), *(r.type for r in op.results)]
    if isinstance(op, _MOVES) or not any(
        isinstance(t, TensorType) and numpy_dtype(t.element_type).name in LOW_PRECISION for t in types
    ):
        return _kernel_in(op, shape, dtype)
    inner = _kernel_in(op, shape, np.dtype(np.float32) if dtype.name in LOW_PRECISION else dtype)

    def rounded(*xs: np.ndarray) -> Any:
        wide = [x.astype(np.float32) if x.dtype.name in LOW_PRECISION else x for x in xs]
        out = inner(*wide)
        if isinstance(out, tuple):  # several results (pg.attention_backward)
            return tuple(np.asarray(o).astype(dtype, copy=False) for o in out)
        return np.asarray(out).astype(dtype, copy=False)

    return rounded


def _kernel_in(op: Operation, shape: tuple[int, ...], dtype: np.dtype) -> Kernel:  # noqa: C901 - one case per op
    """The numpy function computing ``op`` with the result shape ``shape`` in the numpy dtype ``dtype``."""
    if type(op) in _UNARY:
        return _UNARY[type(op)]
    if type(op) in _BINARY:
        return _BINARY[type(op)]
    match op:
        case pg.DivOp():
            return np.true_divide if dtype.kind == "f" else np.floor_divide
        case pg.CmpOp():
            return _COMPARE[op.predicate.data]
        case pg.SelectOp():
            return np.where
        case pg.BroadcastToOp():
            return lambda x: np.broadcast_to(x, shape)
        case pg.SumOp() | pg.MaxOp() | pg.MinOp():
            reduce: Kernel = {pg.SumOp: np.sum, pg.MaxOp: np.max, pg.MinOp: np.min}[type(op)]  # type: ignore[assignment]
            axes, keep = op.dim_list, op.keepdim is not None
            return lambda x: np.asarray(reduce(x, axis=axes, keepdims=keep), dtype=dtype)
        case pg.ArgmaxOp() | pg.ArgminOp():
            arg = np.argmax if isinstance(op, pg.ArgmaxOp) else np.argmin
            axis, keep = op.dim_index, op.keepdim is not None
            return lambda x: np.asarray(arg(x, axis=axis, keepdims=keep), dtype=np.int64)
        case pg.ReshapeOp():
            return lambda x: np.reshape(x, shape)
        case pg.PermuteOp():
            perm = op.perm_list
            return lambda x: np.transpose(x, perm)
        case pg.SliceOp():
            index = tuple(
                slice(a, b, s)
                for a, b, s in zip(op.start.get_values(), op.stop.get_values(), op.step.get_values(), strict=True)
            )
            return lambda x: x[index]
        case pg.PadOp():
            low, high, interior = op.low.get_values(), op.high.get_values(), op.interior.get_values()
            value = op.value.value.data
            return lambda x: _pad(x, low, high, interior, value, shape)
        case pg.ConcatOp():
            axis = op.dim_index
            return lambda *xs: np.concatenate(xs, axis=axis)
        case pg.MatmulOp():
            return np.matmul
        case pg.GatherOp():
            axis = op.dim_index
            return lambda x, i: np.take(x, i, axis=axis)
        case pg.ScatterAddOp():
            axis = op.dim_index
            return lambda u, i: _scatter_add(u, i, axis, shape, dtype)
        case pg.CheckIndexOp():
            return _check_index(op)
        case pg.CastOp():
            return lambda x: x.astype(dtype)
        case pg.IotaOp():
            along = op.dim_index
            view = [1] * len(shape)
            if shape:
                view[along] = shape[along]
            iota = np.broadcast_to(np.arange(shape[along] if shape else 1, dtype=dtype).reshape(view), shape)
            return lambda: iota
        case pg.RandomOp():
            draw = philox.uniform if op.distribution.data == "uniform" else philox.normal
            return lambda seed, offset: draw(shape, int(seed), int(offset), dtype)
        case pg.ScaledDotProductAttentionOp():
            return _attention_kernel(op, dtype)
        case pg.AttentionLseOp():
            return _attention_lse_kernel(op, dtype)
        case pg.AttentionBackwardOp():
            return _attention_backward_kernel(op, dtype)
        case pg.ConvOp():
            return _conv_kernel(op, shape, dtype)
        case pg.GradOp() | pg.OptimizerOp():
            raise NotImplementedError(
                f"{op.name} must be expanded by its pass before execution (pg-autodiff, pg-sgd, ...)"
            )
    raise NotImplementedError(f"no numpy semantics for {op.name}")


# -- attention (issue 11)


def _attention_scores(
    q: np.ndarray, k: np.ndarray, mask: np.ndarray | None, scale: Any, causal: bool, dtype: np.dtype
) -> np.ndarray:
    """``q @ k^T * scale`` with the causal and user masks applied (masked: ``-inf``; a float mask is added). The
    (..., L, S) array is fresh and written in place (a new L x S temporary per step would cost page faults)."""
    s = np.matmul(q, np.swapaxes(k, -1, -2))
    s *= scale
    if causal:
        s[..., ~np.tri(s.shape[-2], s.shape[-1], dtype=bool)] = dtype.type(-np.inf)
    if mask is not None:
        if mask.dtype == np.bool_:
            np.copyto(s, dtype.type(-np.inf), where=~mask)
        else:
            s += mask
    return s


def _softmax_rows(s: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The row maximum of the scores ``s`` (0 for a row with every key masked), with ``s`` overwritten by
    ``exp(s - max)``."""
    m = s.max(axis=-1, keepdims=True)
    m[m == -np.inf] = 0
    s -= m
    np.exp(s, out=s)
    return m


def _attention_kernel(op: pg.ScaledDotProductAttentionOp, dtype: np.dtype) -> Kernel:
    """``pg.scaled_dot_product_attention`` in numpy: masked scaled scores, a stable softmax (rows with every key
    masked give zeros), the dropout multiplier, then the product with the values."""
    scale = dtype.type(op.scale_value)
    causal = op.is_causal
    has_mask, has_dropout = op.mask is not None, op.dropout is not None

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        e = _attention_scores(q, k, extra[0] if has_mask else None, scale, causal, dtype)
        _softmax_rows(e, dtype)
        den = e.sum(axis=-1, keepdims=True)
        den[den == 0] = 1
        e /= den
        if has_dropout:
            e *= extra[-1]
        return np.matmul(e, v).astype(dtype, copy=False)

    return run


def _attention_lse_kernel(op: pg.AttentionLseOp, dtype: np.dtype) -> Kernel:
    """``pg.attention_lse`` in numpy: the row maximum plus the log of the shifted exponentials' sum (``-inf`` for
    a row with every key masked)."""
    scale, causal = dtype.type(op.scale_value), op.is_causal

    def run(q: np.ndarray, k: np.ndarray, *mask: np.ndarray) -> np.ndarray:
        e = _attention_scores(q, k, mask[0] if mask else None, scale, causal, dtype)
        m = _softmax_rows(e, dtype)[..., 0]
        with np.errstate(divide="ignore"):
            return (m + np.log(e.sum(axis=-1))).astype(dtype, copy=False)

    return run


def _attention_backward_kernel(op: pg.AttentionBackwardOp, dtype: np.dtype) -> Kernel:
    """``pg.attention_backward`` in numpy: P recomputed from the scores and ``lse``, then dv = (P Z)^T dout,
    dS = P (Z (dout v^T) - rowsum(dout * out)), dq = scale dS k, dk = scale dS^T q (Z: the dropout multiplier);
    returns (dq, dk, dv)."""
    scale, causal = dtype.type(op.scale_value), op.is_causal

    has_mask, has_dropout = op.mask is not None, op.dropout is not None

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray, dout: np.ndarray, lse: np.ndarray,
            *extra: np.ndarray) -> tuple[np.ndarray, ...]:  # fmt: skip
        p = _attention_scores(q, k, extra[0] if has_mask else None, scale, causal, dtype)
        p -= np.where(lse == -np.inf, dtype.type(0), lse)[..., None]
        np.exp(p, out=p)
        dp = np.matmul(dout, np.swapaxes(v, -1, -2))
        if has_dropout:
            z = extra[-1]
            dv = np.matmul(np.swapaxes(p * z, -1, -2), dout)
            dp *= z
        else:
            dv = np.matmul(np.swapaxes(p, -1, -2), dout)
        dp -= (dout * out).sum(axis=-1, keepdims=True)
        p *= dp
        p *= scale
        dq, dk = np.matmul(p, k), np.matmul(np.swapaxes(p, -1, -2), q)
        return tuple(x.astype(dtype, copy=False) for x in (dq, dk, dv))

    return run


# -- convolution (issue 12)


def _conv_kernel(op: pg.ConvOp, shape: tuple[int, ...], dtype: np.dtype) -> Kernel:
    """``pg.conv`` in numpy, channels last: the input is copied once into a zero-bordered (N, *S_padded, C) array,
    its windows viewed as (N, *Q, *K, C) and gathered into an im2col matrix (N*Q, K*C) whose rows are runs of
    contiguous channels (a fast copy, unlike the (N, C, *Q, *K) view's runs of one kernel row), then one GEMM per
    group against the weight as (O, K*C). Measured on the DDPM's 8x8 shapes: 2-8x faster than contracting the
    channels-first view with ``tensordot``."""
    stride, dilation, lows, highs, groups = op.strides, op.dilations, op.lows, op.highs, op.group_count
    spatial = shape[2:]

    def run(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        n, c, *size = x.shape
        o, cg, *kernel = w.shape
        padded = [s + lo + hi for s, lo, hi in zip(size, lows, highs, strict=True)]
        xl = np.zeros((n, *padded, c), x.dtype)
        xl[(slice(None), *(slice(lo, lo + s) for lo, s in zip(lows, size, strict=True)))] = np.moveaxis(x, 1, -1)
        sn, *ss, sc = xl.strides
        windows = np.lib.stride_tricks.as_strided(
            xl,
            (n, *spatial, *kernel, c),
            (
                sn,
                *(s * st for s, st in zip(ss, stride, strict=True)),
                *(s * d for s, d in zip(ss, dilation, strict=True)),
                sc,
            ),
            writeable=False,
        )
        rows, taps, og = n * math.prod(spatial), math.prod(kernel), o // groups
        wl = np.moveaxis(w, 1, -1)  # (O, *K, C / groups)
        if groups == 1:
            out = windows.reshape(rows, taps * c) @ wl.reshape(o, taps * c).T
        else:
            out = np.empty((rows, o), np.result_type(x, w))
            for g in range(groups):
                cols = windows[..., g * cg : (g + 1) * cg].reshape(rows, taps * cg)
                out[:, g * og : (g + 1) * og] = cols @ wl[g * og : (g + 1) * og].reshape(og, taps * cg).T
        return np.ascontiguousarray(np.moveaxis(out.reshape(n, *spatial, o), -1, 1), dtype=dtype)

    return run


def op_kernel(op: Operation) -> Kernel:
    """The numpy function computing the ``pg`` op ``op`` from its operand arrays (the executor's reference
    semantics; ``pg-canonicalize`` folds constants with it, so folding and execution agree bit for bit)."""
    return _kernel(op)
