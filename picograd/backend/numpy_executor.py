"""The CPU backend: runs a ``pg`` function with numpy.

``compile_func`` turns a ``func.func`` of ``pg`` ops into a flat schedule of numpy calls, one per op, resolved
once; a call walks no IR, only that list. Values live in a list of slots; a slot is dropped after its last use so
that peak memory follows the program, not its length. This executor is the default device and the reference the
GPU backend is checked against.

``bf16`` and ``f16`` values are stored as ``ml_dtypes.bfloat16`` and ``numpy.float16`` arrays. Every op that computes
on them (everything but data movement) runs on ``float32`` copies of its 16-bit operands and rounds its result
once to the result type: elementwise ops as PyTorch's CPU kernels do, and matmuls, attention and reductions with
``float32`` accumulation as cuBLAS and PyTorch do.

It also runs the ``kernels`` stage: a ``kernel.fused`` op is inlined into the schedule (its body's ``pg`` ops run
one by one), so tests can check that kernel formation changes no result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue

from picograd.backend import philox
from picograd.dialects import pg
from picograd.dialects.kernel import FusedOp, YieldOp

Kernel = Callable[..., Any]


def numpy_dtype(element: Attribute) -> np.dtype:
    """numpy dtype of a builtin element type (f32, f64, bf16 as ``ml_dtypes.bfloat16``, f16, i64, i32, i1)."""
    if isinstance(element, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element, Float64Type):
        return np.dtype(np.float64)
    if isinstance(element, BFloat16Type):
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


LOW_PRECISION = (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16))

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
        isinstance(t, TensorType) and numpy_dtype(t.element_type) in LOW_PRECISION for t in types
    ):
        return _kernel_in(op, shape, dtype)
    inner = _kernel_in(op, shape, np.dtype(np.float32) if dtype in LOW_PRECISION else dtype)

    def rounded(*xs: np.ndarray) -> np.ndarray:
        wide = [x.astype(np.float32) if x.dtype in LOW_PRECISION else x for x in xs]
        return np.asarray(inner(*wide)).astype(dtype, copy=False)

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
        case pg.ConvOp():
            return _conv_kernel(op, shape, dtype)
        case pg.GradOp() | pg.OptimizerOp():
            raise NotImplementedError(
                f"{op.name} must be expanded by its pass before execution (pg-autodiff, pg-sgd, ...)"
            )
    raise NotImplementedError(f"the numpy executor has no kernel for {op.name}")


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


class NumpyFunction:
    """A ``pg`` function compiled to a flat schedule of numpy calls.

    Calling it with one numpy array per function argument (shapes and dtypes as the function's types) returns a
    tuple with one array per function result. Raises ``NotImplementedError`` at compile time for ops that have no
    numpy kernel (``pg.grad`` and optimizer ops must be expanded by their passes first).
    """

    def __init__(self, fn: func.FuncOp):
        self.name = fn.sym_name.data
        block = fn.body.block
        slot = _Slots()
        for arg in block.args:
            slot[arg] = slot.new()
        self.num_args = len(block.args)
        schedule: list[tuple[Kernel, tuple[int, ...], int]] = []
        constants: dict[int, np.ndarray] = {}
        returned: tuple[int, ...] = ()
        for op in block.ops:
            if isinstance(op, func.ReturnOp):
                returned = tuple(slot[v] for v in op.arguments)
                break
            _schedule_op(op, slot, schedule, constants)
        self.returned = returned
        self.num_slots = slot.count
        self._constants = constants
        self._schedule = _with_frees(schedule, returned, self.num_args)

    def __call__(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        if len(args) != self.num_args:
            raise TypeError(f"{self.name} takes {self.num_args} arrays, got {len(args)}")
        env: list[Any] = [None] * self.num_slots
        env[: self.num_args] = args
        for i, c in self._constants.items():
            env[i] = c
        for kernel, ins, out, dead in self._schedule:
            env[out] = kernel(*[env[i] for i in ins])
            for i in dead:
                env[i] = None
        out = [_owned(env[i]) for i in self.returned]
        for k, i in enumerate(self.returned):  # a value returned twice: give each result its own buffer
            if i in self.returned[:k]:
                out[k] = out[k].copy()
        return tuple(out)


class _Slots(dict[SSAValue, int]):
    """The slot of each value; several values may share one (a kernel's block arguments and results, and an
    elided ``pg.broadcast_to`` and its input). ``actual`` holds the shape a slot's array really has where it
    differs from the value's type (the input of an elided broadcast)."""

    count = 0

    def __init__(self) -> None:
        super().__init__()
        self.actual: dict[SSAValue, tuple[int, ...]] = {}

    def shape(self, value: SSAValue) -> tuple[int, ...]:
        return self.actual[value] if value in self.actual else pg.shape_of(value)

    def new(self) -> int:
        """A fresh slot number."""
        self.count += 1
        return self.count - 1


def _schedule_op(
    op: Operation,
    slot: _Slots,
    schedule: list[tuple[Kernel, tuple[int, ...], int]],
    constants: dict[int, np.ndarray],
) -> None:
    """Append ``op`` to the schedule. A ``kernel.fused`` is inlined: its block arguments share the slots of its
    operands, its body's ops are scheduled in order, and its results share the slots of the yielded values."""
    if isinstance(op, FusedOp):
        body = op.body.block
        for arg, v in zip(body.args, op.inputs, strict=True):
            slot[arg] = slot[v]
        for inner in body.ops:
            if isinstance(inner, YieldOp):
                for r, v in zip(op.outputs, inner.values, strict=True):
                    slot[r] = slot[v]
            else:
                _schedule_op(inner, slot, schedule, constants)
        return
    if isinstance(op, pg.BroadcastToOp) and all(isinstance(u.operation, _IMPLICIT_BROADCAST) for u in op.result.uses):
        # numpy broadcasts elementwise operands itself: skip the copy-free but slow np.broadcast_to call
        slot[op.result] = slot[op.input]
        slot.actual[op.result] = slot.shape(op.input)
        return
    out = slot.new()
    if isinstance(op, pg.ConstantOp):
        slot[op.result] = out
        constants[out] = constant_array(op.value)
        return
    kernel_fn = _kernel(op)
    if isinstance(op, _IMPLICIT_BROADCAST):
        got = np.broadcast_shapes(*(slot.shape(v) for v in op.operands))
        want = pg.shape_of(op.results[0])
        if got != want:  # every operand was an elided broadcast: broadcast the result instead
            kernel_fn = _broadcast_result(kernel_fn, want)
    ins = tuple(slot[v] for v in op.operands)
    slot[op.results[0]] = out
    schedule.append((kernel_fn, ins, out))


_IMPLICIT_BROADCAST = (pg.UnaryOp, pg.BinaryOp, pg.CmpOp, pg.SelectOp)


def _broadcast_result(kernel_fn: Kernel, shape: tuple[int, ...]) -> Kernel:
    return lambda *xs: np.broadcast_to(kernel_fn(*xs), shape)


def _with_frees(schedule, returned: tuple[int, ...], num_args: int):
    """Attach to each step the slots whose last use it is (never arguments or returned values)."""
    last: dict[int, int] = {}
    for step, (_, ins, _) in enumerate(schedule):
        for i in ins:
            last[i] = step
    keep = set(returned) | set(range(num_args))
    dead: list[list[int]] = [[] for _ in schedule]
    for i, step in last.items():
        if i not in keep:
            dead[step].append(i)
    return [(k, ins, out, tuple(d)) for (k, ins, out), d in zip(schedule, dead, strict=True)]


def _owned(x: Any) -> np.ndarray:
    # results may be broadcast or transposed views; callers get arrays they can keep and write
    a = np.asarray(x)
    return a if a.flags.writeable and a.flags.c_contiguous else a.copy(order="C")


def compile_func(fn: func.FuncOp) -> NumpyFunction:
    """Compile a ``func.func`` of ``pg`` ops (after pg-autodiff and the optimizer passes) for the numpy executor."""
    return NumpyFunction(fn)
