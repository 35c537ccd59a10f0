"""The loop stage on the CPU: ``pg-bufferize`` + ``pg-to-loops`` run through the loop interpreter
(``picograd.runtime.loop_interpreter``, xDSL's interpreter plus our extensions) and checked against the numpy
executor on random inputs: every ``pg`` op, the vjp of every differentiable op (``pg.grad`` expanded by
``pg-autodiff``), whole kernels holding several heavy ops, and one compiled MLP train step.

Shapes are tiny: the interpreter runs about 30k ops a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from _ir import only_func
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FunctionType,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    TensorType,
    f32,
    f64,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from picograd.dialects import kernel, make_context, pg, philox
from picograd.dialects.attrs import PEAK_ATTR, RESULT_ATTR
from picograd.passes.autodiff import PgAutodiff
from picograd.passes.bufferize import Interval, PgBufferize, plan_memory
from picograd.passes.fuse import PgFuse
from picograd.passes.to_loops import PgToLoops, reshape_groups
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func

CTX = make_context()

# ---------------------------------------------------------------------------------------------------------------
# Building functions


class Emit:
    """Appends ``pg`` ops to a block; calling it with an op returns the op's result."""

    def __init__(self, block: Block):
        self.block = block

    def __call__(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def const(self, value: float | int | bool, element: Attribute, shape: Sequence[int] = ()) -> SSAValue:
        t = TensorType(element, list(shape))
        return self(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, [value])))


Body = Callable[..., Sequence[SSAValue]]


def build(arg_types: Sequence[Attribute], body: Body, name: str = "f") -> ModuleOp:
    """A module with one function ``name(args) -> body(emit, *args)``."""
    block = Block(arg_types=list(arg_types))
    results = list(body(Emit(block), *block.args))
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp(name, FunctionType.from_lists(list(arg_types), [r.type for r in results]), Region(block))
    return ModuleOp([fn])


def t(*shape: int, el: Attribute = f32) -> TensorType:
    return TensorType(el, list(shape))


def random_input(rng: np.random.Generator, ty: Attribute, ints: tuple[int, int] = (-3, 4)) -> np.ndarray:
    assert isinstance(ty, TensorType)
    shape = tuple(ty.get_shape())
    el = ty.element_type
    if el == f32 or el == f64:
        return rng.standard_normal(shape).astype(np.float32 if el == f32 else np.float64)
    if el == i1:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(ints[0], ints[1], shape).astype(np.int64 if el == i64 else np.int32)


def to_loops(module: ModuleOp, fuse: Callable[[ModuleOp], None] | None = None) -> ModuleOp:
    """pg-fuse (or ``fuse``), pg-bufferize and pg-to-loops on ``module`` in place, verifying after each."""
    (fuse or (lambda m: PgFuse().apply(CTX, m)))(module)
    module.verify()
    PgBufferize().apply(CTX, module)
    module.verify()
    PgToLoops().apply(CTX, module)
    module.verify()
    return module


def check(
    module: ModuleOp,
    inputs: Sequence[np.ndarray],
    fuse: Callable[[ModuleOp], None] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    exact: bool = False,
) -> tuple[np.ndarray, ...]:
    """Lower ``module`` (one ``pg`` function) to loops, run it on ``inputs`` and compare with the numpy executor."""
    fn = only_func(module)
    want = compile_func(fn)(*inputs)
    to_loops(module, fuse)
    got = run_function(module, fn.sym_name.data, inputs)
    assert len(got) == len(want)
    for k, (w, g) in enumerate(zip(want, got, strict=True)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"result {k}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if exact or w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"result {k}")
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"result {k}")
    return got


def one_kernel(module: ModuleOp) -> None:
    """Put every op of the function in one ``kernel.fused`` (kind "other"): kernels holding several heavy ops,
    epilogues after reductions, and yields of arguments, beyond what pg-fuse forms."""
    fn = only_func(module)
    block = fn.body.block
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    ops = [op for op in block.ops if op is not ret]
    outputs = list(dict.fromkeys(v for v in ret.arguments if v not in block.args))
    inputs = list(block.args)
    body = Block(arg_types=[a.type for a in inputs])
    fused = kernel.FusedOp("k0_all", "other", inputs, [v.type for v in outputs], Region(body))
    block.insert_op_before(fused, ret)
    for op in ops:
        op.detach()
        body.add_op(op)
    for a, b in zip(inputs, body.args, strict=True):
        for use in list(a.uses):
            if use.operation.parent_op() is fused or use.operation.parent_block() is body:
                use.operation.operands[use.index] = b
    body.add_op(kernel.YieldOp(outputs))
    for v, r in zip(outputs, fused.results, strict=True):
        ret.operands = [r if x == v else x for x in ret.operands]


# ---------------------------------------------------------------------------------------------------------------
# Every op

UNARY_FLOAT = {
    "neg": pg.NegOp,
    "exp": pg.ExpOp,
    "sin": pg.SinOp,
    "cos": pg.CosOp,
    "tanh": pg.TanhOp,
    "sigmoid": pg.SigmoidOp,
    "relu": pg.ReluOp,
    "abs": pg.AbsOp,
    "reciprocal": pg.ReciprocalOp,
    "erf": pg.ErfOp,
    "stop_gradient": pg.StopGradientOp,
}
POSITIVE_UNARY = {"log": pg.LogOp, "sqrt": pg.SqrtOp, "rsqrt": pg.RsqrtOp}
BINARY = {
    "add": pg.AddOp,
    "sub": pg.SubOp,
    "mul": pg.MulOp,
    "div": pg.DivOp,
    "maximum": pg.MaximumOp,
    "minimum": pg.MinimumOp,
}


@pytest.mark.parametrize("el", [f32, f64], ids=["f32", "f64"])
def test_unary_float(el: Attribute, rng: np.random.Generator) -> None:
    """All float unary ops in one elementwise kernel (one loop nest), on values with NaN-free domains."""

    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        outs = [e(cls(x)) for cls in UNARY_FLOAT.values()]
        outs += [e(cls(y)) for cls in POSITIVE_UNARY.values()]
        outs.append(e(pg.PowOp(y, x)))
        return outs

    x = random_input(rng, t(2, 3, el=el)) * 3
    y = np.abs(random_input(rng, t(2, 3, el=el))) + 0.1
    check(build([t(2, 3, el=el), t(2, 3, el=el)], body), [x, y], rtol=2e-6 if el == f32 else 1e-12)


@pytest.mark.parametrize("el", [i64, i32], ids=["i64", "i32"])
def test_integer_elementwise(el: Attribute, rng: np.random.Generator) -> None:
    """Integer neg/abs/relu and add/sub/mul/floor-div/max/min; comparisons and casts to bool."""

    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        outs = [e(pg.NegOp(x)), e(pg.AbsOp(x)), e(pg.ReluOp(x))]
        outs += [e(cls(x, y)) for cls in BINARY.values()]
        outs += [e(pg.CmpOp(p, x, y)) for p in pg.COMPARISONS]
        outs.append(e(pg.CastOp(x, i1)))
        return outs

    x = random_input(rng, t(3, 4, el=el), (-9, 10))
    y = random_input(rng, t(3, 4, el=el), (1, 5)) * rng.choice([-1, 1], (3, 4))
    check(build([t(3, 4, el=el), t(3, 4, el=el)], body), [x, y.astype(x.dtype)])


def test_binary_compare_select_float(rng: np.random.Generator) -> None:
    def body(e: Emit, x: SSAValue, y: SSAValue, c: SSAValue) -> list[SSAValue]:
        outs = [e(cls(x, y)) for cls in BINARY.values()]
        outs += [e(pg.CmpOp(p, x, y)) for p in pg.COMPARISONS]
        outs.append(e(pg.SelectOp(c, x, y)))
        outs.append(e(pg.SelectOp(e(pg.CmpOp("lt", x, y)), y, x)))
        return outs

    x = random_input(rng, t(4, 3))
    y = x.copy()
    y[0] = random_input(rng, t(3))  # some equal, some not
    y[1, 0] = np.nan
    check(build([t(4, 3), t(4, 3), t(4, 3, el=i1)], body), [x, y, random_input(rng, t(4, 3, el=i1))])


def test_bool_compare() -> None:
    def body(e: Emit, a: SSAValue, b: SSAValue) -> list[SSAValue]:
        return [e(pg.CmpOp(p, a, b)) for p in pg.COMPARISONS]

    a = np.array([False, False, True, True])
    b = np.array([False, True, False, True])
    check(build([t(4, el=i1), t(4, el=i1)], body), [a, b])


CASTS = [(f32, i64), (i64, f32), (f32, i1), (i1, f32), (i64, i32), (i32, i64), (f32, f64), (f64, f32), (i1, i64),
         (i64, i1), (f64, i32)]  # fmt: skip


@pytest.mark.parametrize("src,dst", CASTS, ids=[f"{a}-{b}" for a, b in CASTS])
def test_cast(src: Attribute, dst: Attribute, rng: np.random.Generator) -> None:
    x = random_input(rng, t(2, 3, el=src), (-3, 4))
    if x.dtype.kind == "f":
        x = x * 4
        x.flat[0] = 0.0
    check(build([t(2, 3, el=src)], lambda e, a: [e(pg.CastOp(a, dst))]), [x])


def test_broadcast_reshape_permute(rng: np.random.Generator) -> None:
    """Movement ops are index maps, also chained inside one elementwise kernel."""

    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        b = e(pg.BroadcastToOp(x, (2, 3, 4)))  # (3, 1) -> (2, 3, 4)
        r1 = e(pg.ReshapeOp(b, (6, 4)))
        r2 = e(pg.ReshapeOp(r1, (4, 6)))
        r3 = e(pg.ReshapeOp(y, (3, 1, 2, 1)))  # (6,) -> (3, 1, 2, 1)
        r4 = e(pg.ReshapeOp(e(pg.ReshapeOp(y, (1, 6))), (2, 3)))
        p = e(pg.PermuteOp(b, (2, 0, 1)))
        s = e(pg.AddOp(e(pg.PermuteOp(r2, (1, 0))), e(pg.BroadcastToOp(e(pg.ReshapeOp(y, (6, 1))), (6, 4)))))
        return [b, r1, r2, r3, r4, p, s]

    check(build([t(3, 1), t(6)], body), [random_input(rng, t(3, 1)), random_input(rng, t(6))], exact=True)


def test_slice_pad_concat(rng: np.random.Generator) -> None:
    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        s = e(pg.SliceOp(x, (1, 0), (4, 5), (2, 2)))  # (5, 5) -> (2, 3)
        p1 = e(pg.PadOp(x, (1, 0), (2, 1), (0, 0), 0.5))
        p2 = e(pg.PadOp(s, (0, 2), (1, 0), (1, 2), -1.0))  # interior padding: the vjp of a strided slice
        c = e(pg.ConcatOp([y, x, y], 0))  # (2, 5) + (5, 5) + (2, 5)
        c1 = e(pg.ConcatOp([e(pg.ExpOp(s)), s], 1))
        return [s, p1, p2, c, c1]

    check(build([t(5, 5), t(2, 5)], body), [random_input(rng, t(5, 5)), random_input(rng, t(2, 5))], exact=True)


@pytest.mark.parametrize("el", [f32, i64], ids=["f32", "i64"])
def test_reductions(el: Attribute, rng: np.random.Generator) -> None:
    def body(e: Emit, x: SSAValue) -> list[SSAValue]:
        outs = []
        for cls in (pg.SumOp, pg.MaxOp, pg.MinOp):
            outs += [e(cls(x, [1])), e(cls(x, [0, 2], keepdim=True)), e(cls(x, [0, 1, 2]))]
        outs += [e(cls(x, 1, keepdim=k)) for cls in (pg.ArgmaxOp, pg.ArgminOp) for k in (False, True)]
        return outs

    x = random_input(rng, t(2, 3, 4, el=el), (-2, 3))  # ints: ties for argmax/argmin
    check(build([t(2, 3, 4, el=el)], body), [x])


def test_argmax_nan_and_ties() -> None:
    x = np.array([[1.0, 3.0, 3.0, 0.0], [1.0, np.nan, 5.0, np.nan], [-np.inf, -np.inf, -np.inf, -np.inf]], np.float32)

    def body(e: Emit, a: SSAValue) -> list[SSAValue]:
        return [e(pg.ArgmaxOp(a, 1)), e(pg.ArgminOp(a, 1)), e(pg.MaxOp(a, [1])), e(pg.MinOp(a, [1]))]

    check(build([t(3, 4)], body), [x])


def test_matmul(rng: np.random.Generator) -> None:
    def body(e: Emit, a: SSAValue, b: SSAValue, c: SSAValue, d: SSAValue) -> list[SSAValue]:
        return [e(pg.MatmulOp(a, b)), e(pg.MatmulOp(c, d))]

    types = [t(3, 4), t(4, 2), t(2, 2, 3, el=f64), t(2, 3, 2, el=f64)]
    check(build(types, body), [random_input(rng, ty) for ty in types], rtol=1e-5)


def test_gather_scatter_add(rng: np.random.Generator) -> None:
    def body(e: Emit, table: SSAValue, idx: SSAValue, upd: SSAValue, idx1: SSAValue) -> list[SSAValue]:
        g0 = e(pg.GatherOp(table, idx, 0))  # (5, 3)[(2, 4)] -> (2, 4, 3)
        g1 = e(pg.GatherOp(table, idx1, 1))  # (5, 3)[:, (4,)] -> (5, 4)
        s0 = e(pg.ScatterAddOp(upd, idx, 0, (5, 3)))  # repeated indices accumulate
        s1 = e(pg.ScatterAddOp(g1, idx1, 1, (5, 3)))
        return [g0, g1, s0, s1]

    types = [t(5, 3), t(2, 4, el=i64), t(2, 4, 3), t(4, el=i32)]
    idx = np.array([[0, 4, 4, 1], [2, 0, 4, 3]], np.int64)
    idx1 = np.array([2, 0, 2, 1], np.int32)
    check(build(types, body), [random_input(rng, types[0]), idx, random_input(rng, types[2]), idx1])


def test_iota_constants(rng: np.random.Generator) -> None:
    def body(e: Emit, x: SSAValue) -> list[SSAValue]:
        dense = e(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(t(2, 3), [1.0, -2.0, 3.5, 0.0, 7.0, -1.0])))
        ints = e(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(t(3, el=i64), [5, -6, 7])))
        return [
            e(pg.IotaOp(t(2, 3, el=i64), 1)),
            e(pg.IotaOp(t(4, 2), 0)),
            e(pg.IotaOp(t(el=i32), 0)),
            e(pg.AddOp(x, dense)),
            e(pg.MulOp(x, e(pg.BroadcastToOp(e.const(2.5, f32), (2, 3))))),
            e(pg.AddOp(ints, e(pg.BroadcastToOp(e.const(1, i64), (3,))))),
            e.const(True, i1, (2,)),
        ]

    check(build([t(2, 3)], body), [random_input(rng, t(2, 3))])


@pytest.mark.parametrize("dist", ["uniform", "normal"])
@pytest.mark.parametrize("el", [f32, f64], ids=["f32", "f64"])
def test_random_matches_philox(dist: str, el: Attribute) -> None:
    """Philox 4x32-10 on i32 arith draws the numpy executor's bits: uniform exactly, normal to rounding."""
    seed = np.array(0x1234_5678_9ABC_DEF0 - (1 << 64) // 2, np.int64)
    offset = np.array(7, np.int64)
    body: Body = lambda e, s, o: [e(pg.RandomOp(dist, s, o, t(2, 5, el=el)))]  # noqa: E731 - 10 elements, 3 counters
    got = check(build([t(el=i64), t(el=i64)], body), [seed, offset], exact=dist == "uniform", rtol=1e-12, atol=1e-12)
    dtype = np.float32 if el == f32 else np.float64
    draw = philox.uniform if dist == "uniform" else philox.normal
    np.testing.assert_allclose(got[0], draw((2, 5), int(seed), int(offset), np.dtype(dtype)), rtol=1e-12)


def test_empty_tensors() -> None:
    """Zero-size tensors: nests that never run, an empty concat, sum of nothing, an all-padding pad."""

    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        return [
            e(pg.ConcatOp([x, y], 0)),
            e(pg.SumOp(x, [0])),
            e(pg.ExpOp(x)),
            e(pg.ReshapeOp(x, (3, 0))),
            e(pg.PadOp(x, (1, 0), (1, 0), (0, 0), 2.0)),
        ]

    empty = np.zeros((0, 3), np.float32)
    check(build([t(0, 3), t(0, 3)], body), [empty, empty])


def test_reshape_groups() -> None:
    assert reshape_groups((2, 3, 4), (6, 4)) == [([0, 1], [0]), ([2], [1])]
    assert reshape_groups((6,), (3, 1, 2, 1)) == [([0], [0, 1, 2]), ([], [3])]
    assert reshape_groups((1, 3), (3,)) == [([0, 1], [0])]


# ---------------------------------------------------------------------------------------------------------------
# Kernels with several heavy ops, epilogues and odd yields (one kernel for the whole function)


def test_one_kernel_softmax_and_friends(rng: np.random.Generator) -> None:
    """Softmax in one kernel: max, then exp(x - max) (written out, riding along the sum's pass), then the sum and a
    division epilogue; an argument yielded as is, a value yielded twice, a matmul feeding a reduction."""

    def body(e: Emit, x: SSAValue, w: SSAValue) -> list[SSAValue]:
        m = e(pg.MaxOp(x, [1], keepdim=True))
        z = e(pg.ExpOp(e(pg.SubOp(x, e(pg.BroadcastToOp(m, (4, 5)))))))
        s = e(pg.SumOp(z, [1], keepdim=True))
        p = e(pg.DivOp(z, e(pg.BroadcastToOp(s, (4, 5)))))
        h = e(pg.MatmulOp(p, w))
        hs = e(pg.SumOp(e(pg.TanhOp(h)), [0, 1]))
        return [p, z, x, hs, p, h]

    types = [t(4, 5), t(5, 2)]
    check(build(types, body), [random_input(rng, ty) for ty in types], fuse=one_kernel)


def test_returned_arguments_and_repeats(rng: np.random.Generator) -> None:
    """A returned argument and a value returned twice are copied into their output buffers."""

    def body(e: Emit, x: SSAValue) -> list[SSAValue]:
        y = e(pg.ExpOp(x))
        return [x, y, y, x]

    check(build([t(3)], body), [random_input(rng, t(3))])


# ---------------------------------------------------------------------------------------------------------------
# The memory plan


def test_memory_plan_reuses_dead_buffers(rng: np.random.Generator) -> None:
    """A chain of kernels (a matmul and a reduction between elementwise ones) needs two live intermediates at a
    time, not one per kernel; the plan is correct under the poisoned allocations of the interpreter."""

    def body(e: Emit, x: SSAValue, w: SSAValue) -> list[SSAValue]:
        h = x
        for _ in range(3):
            h = e(pg.TanhOp(e(pg.MatmulOp(h, w))))
            h = e(pg.SubOp(h, e(pg.BroadcastToOp(e(pg.SumOp(h, [1], keepdim=True)), (4, 4)))))
        return [h]

    module = build([t(4, 4), t(4, 4)], body)
    check(module, [random_input(rng, t(4, 4)), random_input(rng, t(4, 4))])
    peak = only_func(module).attributes[PEAK_ATTR]
    assert isinstance(peak, IntegerAttr)
    assert peak.value.data <= 3 * 64


def test_reshape_kernels_become_views(rng: np.random.Generator) -> None:
    """A reshape between a gather and a matmul is a kernel of its own after pg-fuse; bufferization turns it into a
    second view of the gather's bytes, so no loop nest copies it."""

    def body(e: Emit, table: SSAValue, idx: SSAValue, w: SSAValue) -> list[SSAValue]:
        g = e(pg.GatherOp(table, idx, 0))  # (4, 3, 2)
        return [e(pg.MatmulOp(e(pg.ReshapeOp(g, (4, 6))), w))]

    types = [t(5, 2), t(4, 3, el=i64), t(6, 3)]
    module = build(types, body)
    check(module, [random_input(rng, types[0]), rng.integers(0, 5, (4, 3)), random_input(rng, types[2])])
    kernels = [op.attributes["pg.kernel"] for op in module.walk() if "pg.kernel" in op.attributes]
    assert len(kernels) == 2 and not any(str(k).endswith('_reshape"') for k in kernels), kernels


def test_plan_memory() -> None:
    plan = plan_memory([Interval(100, 0, 1), Interval(50, 1, 2), Interval(100, 2, 3), Interval(10, 0, 3)], 16)
    assert plan.size == 112 + 64 + 16
    off = plan.offsets
    assert off[0] == off[2]  # disjoint lifetimes share bytes
    assert plan.no_reuse == 112 + 64 + 112 + 16
    assert plan_memory([Interval(100, 0, 1), Interval(100, 2, 3)], 16, reuse=False).size == 224


def test_convention() -> None:
    """Inputs first, then one output buffer per result marked pg.result; no results."""
    module = build([t(2), t(2, el=i64)], lambda e, x, n: [e(pg.ExpOp(x)), e(pg.NegOp(n))])
    to_loops(module)
    fn = only_func(module)
    types = fn.function_type
    assert list(types.outputs.data) == []
    assert [str(a) for a in types.inputs.data] == ["memref<2xf32>", "memref<2xi64>", "memref<2xf32>", "memref<2xi64>"]
    assert fn.arg_attrs is not None
    marks = [d.data.get(RESULT_ATTR) for d in fn.arg_attrs.data]
    assert marks[:2] == [None, None] and [m.value.data for m in marks[2:]] == [0, 1]  # type: ignore[union-attr]
    assert all(isinstance(a, MemRefType) for a in types.inputs.data)


# ---------------------------------------------------------------------------------------------------------------
# vjps: pg.grad of sum(f(x) * w), expanded by pg-autodiff, then lowered


def grad_module(arg_types: Sequence[TensorType], forward: Body, wrt: Sequence[int]) -> ModuleOp:
    """``f(args..., w) -> grads of sum(forward(args) * w)`` with respect to ``args[i]`` for ``i`` in ``wrt``."""

    def body(e: Emit, *args: SSAValue) -> list[SSAValue]:
        *xs, w = args
        (y,) = forward(e, *xs)
        shape = tuple(TensorType.get_shape(y.type))  # type: ignore[arg-type]
        loss = e(pg.SumOp(e(pg.MulOp(y, w)), list(range(len(shape)))))
        grad = pg.GradOp(loss, [xs[i] for i in wrt])
        e.block.add_op(grad)
        return list(grad.results)

    out_type = _forward_type(arg_types, forward)
    module = build([*arg_types, out_type], body)
    PgAutodiff().apply(CTX, module)
    module.verify()
    return module


def _forward_type(arg_types: Sequence[TensorType], forward: Body) -> Attribute:
    block = Block(arg_types=list(arg_types))
    (y,) = forward(Emit(block), *block.args)
    return y.type


def _unary(cls: type[Operation]) -> Body:
    return lambda e, x: [e(cls(x))]


def _positive_unary(cls: type[Operation]) -> Body:  # on |x| + 0.5
    return lambda e, x: [e(cls(e(pg.AddOp(e(pg.AbsOp(x)), e(pg.BroadcastToOp(e.const(0.5, f32), (2, 3)))))))]


def _binary(cls: type[Operation]) -> Body:
    return lambda e, x, y: [e(cls(x, y))]


VJP_CASES: dict[str, tuple[list[TensorType], Body, list[int]]] = {
    **{name: ([t(2, 3)], _unary(cls), [0]) for name, cls in UNARY_FLOAT.items()},
    **{name: ([t(2, 3)], _positive_unary(cls), [0]) for name, cls in POSITIVE_UNARY.items()},
    **{name: ([t(2, 3), t(2, 3)], _binary(cls), [0, 1]) for name, cls in BINARY.items()},
    "pow": ([t(2, 3), t(2, 3)], lambda e, x, y: [e(pg.PowOp(e(pg.ExpOp(x)), y))], [0, 1]),
    "select": ([t(2, 3), t(2, 3)], lambda e, x, y: [e(pg.SelectOp(e(pg.CmpOp("gt", x, y)), x, y))], [0, 1]),
    "broadcast_to": ([t(3, 1)], lambda e, x: [e(pg.BroadcastToOp(x, (2, 3, 4)))], [0]),
    "reshape": ([t(2, 3)], lambda e, x: [e(pg.ReshapeOp(x, (3, 2)))], [0]),
    "permute": ([t(2, 3, 4)], lambda e, x: [e(pg.PermuteOp(x, (2, 0, 1)))], [0]),
    "slice": ([t(5, 4)], lambda e, x: [e(pg.SliceOp(x, (1, 0), (5, 3), (2, 2)))], [0]),
    "pad": ([t(2, 3)], lambda e, x: [e(pg.PadOp(x, (1, 0), (0, 2), (1, 1), 3.0))], [0]),
    "concat": ([t(2, 3), t(1, 3)], lambda e, x, y: [e(pg.ConcatOp([x, y, x], 0))], [0, 1]),
    "sum": ([t(2, 3, 4)], lambda e, x: [e(pg.SumOp(x, [0, 2], keepdim=True))], [0]),
    "max": ([t(3, 4)], lambda e, x: [e(pg.MaxOp(x, [1]))], [0]),
    "min": ([t(3, 4)], lambda e, x: [e(pg.MinOp(x, [0, 1]))], [0]),
    "matmul": ([t(2, 3, 4), t(2, 4, 2)], lambda e, a, b: [e(pg.MatmulOp(a, b))], [0, 1]),
    "gather": ([t(5, 3), t(2, 4, el=i64)], lambda e, x, i: [e(pg.GatherOp(x, i, 0))], [0]),
    "scatter_add": ([t(2, 4, 3), t(2, 4, el=i64)], lambda e, u, i: [e(pg.ScatterAddOp(u, i, 0, (5, 3)))], [0]),
    "cast": ([t(2, 3)], lambda e, x: [e(pg.CastOp(e(pg.CastOp(x, f64)), f32))], [0]),
}


@pytest.mark.parametrize("name", list(VJP_CASES))
def test_vjp(name: str, rng: np.random.Generator) -> None:
    arg_types, forward, wrt = VJP_CASES[name]
    module = grad_module(arg_types, forward, wrt)
    fn = only_func(module)
    inputs = [random_input(rng, ty, (0, 5)) for ty in fn.function_type.inputs.data]
    check(module, inputs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# A whole compiled train step


def tiny_mlp_module(optimizer: str, autocast: Any = None) -> ModuleOp:
    """A Bengio-style MLP (batch 4, vocab 5, embedding 2, hidden 6) with cross-entropy and SGD (or AdamW): its
    compiled train step at the 'step' stage; under ``pg.autocast("cpu", dtype=autocast)`` when given."""
    import contextlib

    import picograd.nn.functional as F

    import picograd as pgm

    pgm.manual_seed(0)

    class MLP(pgm.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = pgm.nn.Embedding(5, 2)
            self.hidden = pgm.nn.Linear(3 * 2, 6)
            self.out = pgm.nn.Linear(6, 5)

        def forward(self, x: Any) -> Any:
            return self.out(self.hidden(self.emb(x).reshape(x.shape[0], 6)).tanh())

    model = MLP()
    params = model.parameters()
    opt = pgm.optim.SGD(params, lr=0.1) if optimizer == "sgd" else pgm.optim.AdamW(params, lr=0.01)

    @pgm.compile
    def step(x: Any, y: Any) -> Any:
        with pgm.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(1)
    return step.ir("step", [pgm.tensor(rng.integers(0, 5, (4, 3))), pgm.tensor(rng.integers(0, 5, (4,)))])


def tiny_mlp_inputs(rng: np.random.Generator, module: ModuleOp, optimizer: str) -> list[np.ndarray]:
    """Random arguments for ``tiny_mlp_module``'s step function."""
    inputs = []
    for ty in only_func(module).function_type.inputs.data:
        assert isinstance(ty, TensorType)
        shape = tuple(ty.get_shape())
        if ty.element_type == i64:  # tokens, targets, cross_entropy's row numbers, the step count: in [0, batch)
            inputs.append(rng.integers(0, 4, shape).astype(np.int64))
        elif not shape:  # hyperparameters (lr, betas, eps, weight decay): in (0, 1)
            inputs.append(np.array(rng.uniform(0.05, 0.5)))
        else:  # parameters, optimizer state
            x = random_input(rng, ty)
            inputs.append(np.abs(x) * 0.5 if optimizer == "adamw" else x * 0.5)
    return inputs


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mlp_train_step(optimizer: str, rng: np.random.Generator) -> None:
    """The tiny MLP's compiled step, lowered through every stage to loops, matches the numpy executor of the 'step'
    stage."""
    from picograd.driver.pipeline import lower_to

    module = tiny_mlp_module(optimizer)
    fn = only_func(module)
    inputs = tiny_mlp_inputs(rng, module, optimizer)
    want = compile_func(fn)(*inputs)
    lower_to(module, "loops")
    got = run_function(module, fn.sym_name.data, inputs)
    for w, g in zip(want, got, strict=True):
        assert np.isfinite(w).all()
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    peak = fn.attributes[PEAK_ATTR]
    assert isinstance(peak, IntegerAttr) and peak.value.data > 0
