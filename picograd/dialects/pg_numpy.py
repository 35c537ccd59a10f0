"""What each ``pg`` op computes, in numpy: the reference semantics of the ``pg`` dialect, as data (tables of numpy
functions per op class) plus the few ops that need their attributes.

``op_kernel(op)`` is the numpy function computing an op from its operand arrays. The CPU runtime
(``picograd.runtime.numpy_executor``) runs ``pg`` functions with it and ``pg-canonicalize`` folds constants with it, so
folding and execution agree bit for bit. ``numpy_dtype`` and ``constant_array`` map builtin element types and dense
constants to numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, Float32Type, Float64Type, IntegerType, TensorType
from xdsl.ir import Attribute, Operation

from picograd.dialects import pg, philox

Kernel = Callable[..., Any]


def numpy_dtype(element: Attribute) -> np.dtype:
    """numpy dtype of a builtin element type (f32, f64, i64, i32, i1)."""
    if isinstance(element, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element, Float64Type):
        return np.dtype(np.float64)
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
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


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
            raise IndexError(op.message(int(values[(values < low) | (values >= high)].flat[0])))
        return i

    return check


def _kernel(op: Operation) -> Kernel:  # noqa: C901 - one case per op, flat on purpose
    """The numpy function computing ``op`` from its operand arrays."""
    if type(op) in _UNARY:
        return _UNARY[type(op)]
    if type(op) in _BINARY:
        return _BINARY[type(op)]
    shape, dtype = _result_info(op) if op.results else ((), np.dtype(np.float32))
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
        case pg.GradOp() | pg.OptimizerOp():
            raise NotImplementedError(
                f"{op.name} must be expanded by its pass before execution (pg-autodiff, pg-sgd, ...)"
            )
    raise NotImplementedError(f"no numpy semantics for {op.name}")


# -- attention (issue 11)


def _attention_kernel(op: pg.ScaledDotProductAttentionOp, dtype: np.dtype) -> Kernel:
    """``pg.scaled_dot_product_attention`` in numpy: masked scaled scores, a stable softmax (rows with every key
    masked give zeros), the dropout multiplier, then the product with the values."""
    scale = dtype.type(op.scale_value)
    causal = op.is_causal
    has_mask, has_dropout = op.mask is not None, op.dropout is not None

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
        if causal:
            s = np.where(np.tri(s.shape[-2], s.shape[-1], dtype=bool), s, dtype.type(-np.inf))
        if has_mask:
            mask = extra[0]
            s = np.where(mask, s, dtype.type(-np.inf)) if mask.dtype == np.bool_ else s + mask
        m = s.max(axis=-1, keepdims=True)
        m = np.where(m == -np.inf, dtype.type(0), m)
        e = np.exp(s - m)
        den = e.sum(axis=-1, keepdims=True)
        p = e / np.where(den == 0, dtype.type(1), den)
        if has_dropout:
            p = p * extra[-1]
        return np.matmul(p, v).astype(dtype, copy=False)

    return run


def op_kernel(op: Operation) -> Kernel:
    """The numpy function computing the ``pg`` op ``op`` from its operand arrays (the executor's reference
    semantics; ``pg-canonicalize`` folds constants with it, so folding and execution agree bit for bit)."""
    return _kernel(op)
