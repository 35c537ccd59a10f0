"""``pg-to-gpu`` + ``pg-to-ptx``: every ``pg`` op, whole kernels and train steps, lowered to PTX.

Each case (the op sweep of ``test_loops.py``: every op, every vjp, kernels holding several heavy ops, a tiny MLP
train step) goes through ``compile_for_cuda`` to PTX, which must assemble with ``ptxas -arch=sm_90`` (through
``picograd.target.ptxas``: these tests FAIL, never skip, without an assembler), and then runs on the PTX emulator
of ``tests/_ptx_emulator.py`` (thread by thread, with PTX's rounding, shuffles and barriers), checked against the
numpy executor. ``tests/test_gpu_ops.py`` runs the same cases on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from _ptx_emulator import run_program
from test_loops import (
    BINARY,
    CASTS,
    POSITIVE_UNARY,
    UNARY_FLOAT,
    VJP_CASES,
    Body,
    Emit,
    build,
    grad_module,
    one_kernel,
    only_func,
    random_input,
    t,
    tiny_mlp_inputs,
    tiny_mlp_module,
)
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, IntegerAttr, ModuleOp, f32, f64, i1, i32, i64
from xdsl.ir import Attribute, SSAValue

import picograd
from picograd.dialects import pg
from picograd.driver.gpu_compile import CudaProgram, compile_for_cuda
from picograd.errors import CompileError
from picograd.runtime.numpy_executor import compile_func
from picograd.target import ptxas

Inputs = Callable[[np.random.Generator, ModuleOp], list[np.ndarray]]


def default_inputs(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
    return [random_input(rng, ty) for ty in only_func(module).function_type.inputs.data]


@dataclass
class Case:
    """A module to lower (built fresh each time) and how to draw its inputs and compare its results."""

    make: Callable[[], ModuleOp]
    inputs: Inputs = default_inputs
    rtol: float = 1e-5
    atol: float = 1e-6
    exact: bool = False
    fuse: Callable[[ModuleOp], None] | None = None
    tags: set[str] = field(default_factory=set)


def _case(types: Sequence[Attribute], body: Body, **kw: Any) -> Case:
    return Case(lambda: build(list(types), body), **kw)


def _scaled(*factors: float, shift: float = 0.0, absolute: bool = False) -> Inputs:
    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        xs = default_inputs(rng, module)
        out = []
        for x, f in zip(xs, factors, strict=False):
            y = np.abs(x) if absolute else x
            out.append((y * f + shift).astype(x.dtype))
        return out + xs[len(out) :]

    return draw


def _unary_float(el: Attribute) -> Case:
    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        outs = [e(cls(x)) for cls in UNARY_FLOAT.values()]
        outs += [e(cls(y)) for cls in POSITIVE_UNARY.values()]
        outs.append(e(pg.PowOp(y, x)))
        return outs

    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        x = random_input(rng, t(4, 8, el=el)) * 3
        y = np.abs(random_input(rng, t(4, 8, el=el))) + 0.1
        return [x, y]

    return _case([t(4, 8, el=el), t(4, 8, el=el)], body, inputs=draw, rtol=2e-6 if el == f32 else 1e-12, atol=0)


def _integer(el: Attribute) -> Case:
    def body(e: Emit, x: SSAValue, y: SSAValue) -> list[SSAValue]:
        outs = [e(pg.NegOp(x)), e(pg.AbsOp(x)), e(pg.ReluOp(x))]
        outs += [e(cls(x, y)) for cls in BINARY.values()]
        outs += [e(pg.CmpOp(p, x, y)) for p in pg.COMPARISONS]
        outs.append(e(pg.CastOp(x, i1)))
        return outs

    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        x = random_input(rng, t(3, 4, el=el), (-9, 10))
        y = random_input(rng, t(3, 4, el=el), (1, 5)) * rng.choice([-1, 1], (3, 4))
        return [x, y.astype(x.dtype)]

    return _case([t(3, 4, el=el), t(3, 4, el=el)], body, inputs=draw, exact=True)


def _compare_select(rng_y: bool = True) -> Case:
    def body(e: Emit, x: SSAValue, y: SSAValue, c: SSAValue) -> list[SSAValue]:
        outs = [e(cls(x, y)) for cls in BINARY.values()]
        outs += [e(pg.CmpOp(p, x, y)) for p in pg.COMPARISONS]
        outs.append(e(pg.SelectOp(c, x, y)))
        outs.append(e(pg.SelectOp(e(pg.CmpOp("lt", x, y)), y, x)))
        return outs

    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        x = random_input(rng, t(4, 3))
        y = x.copy()
        y[0] = random_input(rng, t(3))
        y[1, 0] = np.nan
        return [x, y, random_input(rng, t(4, 3, el=i1))]

    return _case([t(4, 3), t(4, 3), t(4, 3, el=i1)], body, inputs=draw)


def _cast(src: Attribute, dst: Attribute) -> Case:
    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        x = random_input(rng, t(2, 3, el=src), (-3, 4))
        if x.dtype.kind == "f":
            x = x * 4
            x.flat[0] = 0.0
        return [x]

    return _case([t(2, 3, el=src)], lambda e, a: [e(pg.CastOp(a, dst))], inputs=draw, exact=True)


def _reductions(el: Attribute, shape: tuple[int, ...]) -> Case:
    def body(e: Emit, x: SSAValue) -> list[SSAValue]:
        outs = []
        for cls in (pg.SumOp, pg.MaxOp, pg.MinOp):
            outs += [e(cls(x, [1])), e(cls(x, [0, 2], keepdim=True)), e(cls(x, [0, 1, 2]))]
        outs += [e(cls(x, 1, keepdim=k)) for cls in (pg.ArgmaxOp, pg.ArgminOp) for k in (False, True)]
        return outs

    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        return [random_input(rng, t(*shape, el=el), (-2, 3))]

    return _case([t(*shape, el=el)], body, inputs=draw, rtol=1e-5, atol=1e-5)


def _iota_constants() -> ModuleOp:
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

    return build([t(2, 3)], body)


def _random(dist: str, el: Attribute) -> Case:
    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        seed = np.array(rng.integers(-(2**62), 2**62), np.int64)
        return [seed, np.array(rng.integers(0, 1000), np.int64)]

    body: Body = lambda e, s, o: [e(pg.RandomOp(dist, s, o, t(3, 7, el=el)))]  # noqa: E731
    return _case([t(el=i64), t(el=i64)], body, inputs=draw, exact=dist == "uniform", rtol=1e-12, atol=1e-12)


def _softmax_one_kernel() -> ModuleOp:
    def body(e: Emit, x: SSAValue, w: SSAValue) -> list[SSAValue]:
        m = e(pg.MaxOp(x, [1], keepdim=True))
        z = e(pg.ExpOp(e(pg.SubOp(x, e(pg.BroadcastToOp(m, (4, 40)))))))
        s = e(pg.SumOp(z, [1], keepdim=True))
        p = e(pg.DivOp(z, e(pg.BroadcastToOp(s, (4, 40)))))
        h = e(pg.MatmulOp(p, w))
        hs = e(pg.SumOp(e(pg.TanhOp(h)), [0, 1]))
        return [p, z, x, hs, p, h]

    return build([t(4, 40), t(40, 2)], body)


def _big_reductions() -> ModuleOp:
    """Reductions over 40 to 1000 elements: a block per output row (shuffles, workgroup memory, barriers), on f32,
    f64, i64 and bool, with riders and over several reduced dims."""

    def body(e: Emit, x: SSAValue, y: SSAValue, n: SSAValue, b: SSAValue) -> list[SSAValue]:
        return [
            e(pg.SumOp(x, [1])),
            e(pg.MaxOp(x, [1], keepdim=True)),
            e(pg.MinOp(x, [0, 1])),
            e(pg.SumOp(e(pg.ExpOp(x)), [0])),
            e(pg.SumOp(y, [0, 2])),
            e(pg.MaxOp(n, [1])),
            e(pg.SumOp(n, [0, 1])),
            e(pg.MaxOp(b, [1])),
            e(pg.MinOp(b, [1])),
        ]

    return build([t(5, 300), t(20, 3, 33, el=f64), t(4, 70, el=i64), t(3, 64, el=i1)], body)


def mlp_inputs(optimizer: str) -> Inputs:
    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        return tiny_mlp_inputs(rng, module, optimizer)

    return draw


def _vjp_case(name: str) -> Case:
    arg_types, forward, wrt = VJP_CASES[name]

    def draw(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
        return [random_input(rng, ty, (0, 5)) for ty in only_func(module).function_type.inputs.data]

    return Case(lambda: grad_module(arg_types, forward, wrt), inputs=draw, rtol=1e-5, atol=1e-5, tags={"vjp"})


CASES: dict[str, Case] = {
    "unary_f32": _unary_float(f32),
    "unary_f64": _unary_float(f64),
    "integer_i64": _integer(i64),
    "integer_i32": _integer(i32),
    "compare_select": _compare_select(),
    "bool_compare": _case(
        [t(4, el=i1), t(4, el=i1)],
        lambda e, a, b: [e(pg.CmpOp(p, a, b)) for p in pg.COMPARISONS],
        inputs=lambda rng, m: [np.array([False, False, True, True]), np.array([False, True, False, True])],
        exact=True,
    ),
    **{f"cast_{a}_{b}": _cast(a, b) for a, b in CASTS},
    "movement": _case(
        [t(3, 1), t(6)],
        lambda e, x, y: [
            (b := e(pg.BroadcastToOp(x, (2, 3, 4)))),
            (r1 := e(pg.ReshapeOp(b, (6, 4)))),
            (r2 := e(pg.ReshapeOp(r1, (4, 6)))),
            e(pg.ReshapeOp(y, (3, 1, 2, 1))),
            e(pg.PermuteOp(b, (2, 0, 1))),
            e(pg.AddOp(e(pg.PermuteOp(r2, (1, 0))), e(pg.BroadcastToOp(e(pg.ReshapeOp(y, (6, 1))), (6, 4))))),
        ],
        exact=True,
    ),
    "slice_pad_concat": _case(
        [t(5, 5), t(2, 5)],
        lambda e, x, y: [
            (s := e(pg.SliceOp(x, (1, 0), (4, 5), (2, 2)))),
            e(pg.PadOp(x, (1, 0), (2, 1), (0, 0), 0.5)),
            e(pg.PadOp(s, (0, 2), (1, 0), (1, 2), -1.0)),
            e(pg.ConcatOp([y, x, y], 0)),
            e(pg.ConcatOp([e(pg.ExpOp(s)), s], 1)),
        ],
        rtol=2e-7,  # exp within 1 ulp of numpy's
        atol=0,
    ),
    "reductions_f32": _reductions(f32, (2, 3, 4)),
    "reductions_i64": _reductions(i64, (2, 3, 4)),
    "reductions_block_f32": _reductions(f32, (3, 40, 5)),
    "reductions_big": Case(_big_reductions, inputs=default_inputs, rtol=1e-5, atol=1e-4),
    "argmax_nan_ties": _case(
        [t(3, 4)],
        lambda e, a: [e(pg.ArgmaxOp(a, 1)), e(pg.ArgminOp(a, 1)), e(pg.MaxOp(a, [1])), e(pg.MinOp(a, [1]))],
        inputs=lambda rng, m: [np.array([[1.0, 3.0, 3.0, 0.0], [1.0, np.nan, 5.0, np.nan], [-np.inf] * 4], np.float32)],
    ),
    "matmul": _case(
        [t(3, 4), t(4, 2), t(2, 2, 3, el=f64), t(2, 3, 2, el=f64)],
        lambda e, a, b, c, d: [e(pg.MatmulOp(a, b)), e(pg.MatmulOp(c, d))],
    ),
    "gather_scatter_add": _case(
        [t(5, 3), t(2, 4, el=i64), t(2, 4, 3), t(4, el=i32)],
        lambda e, table, idx, upd, idx1: [
            e(pg.GatherOp(table, idx, 0)),
            (g1 := e(pg.GatherOp(table, idx1, 1))),
            e(pg.ScatterAddOp(upd, idx, 0, (5, 3))),
            e(pg.ScatterAddOp(g1, idx1, 1, (5, 3))),
        ],
        inputs=lambda rng, m: [
            random_input(rng, t(5, 3)),
            np.array([[0, 4, 4, 1], [2, 0, 4, 3]], np.int64),
            random_input(rng, t(2, 4, 3)),
            np.array([2, 0, 2, 1], np.int32),
        ],
    ),
    "scatter_add_i64": _case(
        [t(6, 2, el=i64), t(6, el=i64)],
        lambda e, upd, idx: [e(pg.ScatterAddOp(upd, idx, 0, (3, 2)))],
        inputs=lambda rng, m: [rng.integers(-5, 5, (6, 2)).astype(np.int64), rng.integers(0, 3, (6,))],
        exact=True,
    ),
    "iota_constants": Case(_iota_constants),
    **{f"random_{d}_{el}": _random(d, el) for d in ("uniform", "normal") for el in (f32, f64)},
    "empty": _case(
        [t(0, 3), t(0, 3)],
        lambda e, x, y: [
            e(pg.ConcatOp([x, y], 0)),
            e(pg.SumOp(x, [0])),
            e(pg.ExpOp(x)),
            e(pg.ReshapeOp(x, (3, 0))),
            e(pg.PadOp(x, (1, 0), (1, 0), (0, 0), 2.0)),
        ],
    ),
    "returned_arguments": _case([t(3)], lambda e, x: [x, (y := e(pg.ExpOp(x))), y, x]),
    "softmax_one_kernel": Case(_softmax_one_kernel, fuse=one_kernel),
    "memory_plan": _case(
        [t(4, 4), t(4, 4)],
        lambda e, x, w: [
            e(pg.SubOp(h := e(pg.TanhOp(e(pg.MatmulOp(x, w)))), e(pg.BroadcastToOp(e(pg.SumOp(h, [1], True)), (4, 4)))))
        ],
    ),
    "reshape_view": _case(
        [t(5, 2), t(4, 3, el=i64), t(6, 3)],
        lambda e, table, idx, w: [e(pg.MatmulOp(e(pg.ReshapeOp(e(pg.GatherOp(table, idx, 0)), (4, 6))), w))],
        inputs=lambda rng, m: [random_input(rng, t(5, 2)), rng.integers(0, 5, (4, 3)), random_input(rng, t(6, 3))],
    ),
    **{f"vjp_{name}": _vjp_case(name) for name in VJP_CASES},
    "mlp_sgd": Case(lambda: tiny_mlp_module("sgd"), inputs=mlp_inputs("sgd"), tags={"mlp"}),
    "mlp_adamw": Case(lambda: tiny_mlp_module("adamw"), inputs=mlp_inputs("adamw"), tags={"mlp"}),
}


def prepare(case: Case) -> tuple[ModuleOp, ModuleOp]:
    """(the module for the numpy executor, the module handed to ``compile_for_cuda``)."""
    reference = case.make()
    lowered = case.make()
    if case.fuse is not None:
        from picograd.passes.canonicalize import PgCanonicalize  # noqa: F401 - registers nothing; kernels stage

        case.fuse(lowered)
    return reference, lowered


def check_outputs(case: Case, want: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> None:
    assert len(got) == len(want)
    for k, (w, g) in enumerate(zip(want, got, strict=True)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"result {k}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        if case.exact or w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"result {k}")
        else:
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol, err_msg=f"result {k}")


def compile_case(case: Case) -> tuple[CudaProgram, Callable[..., Any]]:
    reference, lowered = prepare(case)
    program = compile_for_cuda(lowered)
    return program, compile_func(only_func(reference))


@pytest.mark.parametrize("name", list(CASES))
def test_lowers_assembles_and_runs(name: str, rng: np.random.Generator) -> None:
    """PTX for sm_90 that ptxas accepts without register spills, whose emulated run matches the numpy executor."""
    case = CASES[name]
    program, reference = compile_case(case)
    result = program.assemble(strict=True)
    launched = set(program.kernels)
    assert launched <= set(result.kernels), (launched, set(result.kernels))
    inputs = case.inputs(rng, case.make())
    check_outputs(case, reference(*inputs), run_program(program, inputs))


# ---------------------------------------------------------------------------------------------------------------
# Whole programs


def test_mlp_names_step_assembles() -> None:
    """The compiled train step of examples/mlp_names.py (batch 32, hidden 200) lowers to PTX that ptxas accepts,
    one kernel per loop nest, with .loc lines into the example."""
    from picograd.tools.pgc import compiled_functions, import_model

    model = import_model("examples/mlp_names.py")
    (step,) = compiled_functions(model)
    program = compile_for_cuda(step.ir("simplify"))
    result = program.assemble()
    assert set(program.kernels) == set(result.kernels)
    assert ".target sm_90" in program.ptx and "mlp_names.py" in program.ptx and "\t.loc\t" in program.ptx
    assert "approx" not in program.ptx  # accurate math only
    assert not result.spills
    assert [s.shape for s in program.temps] == [(int(only_func_attr(program.module, "pg.peak_bytes")),)]


def only_func_attr(module: ModuleOp | None, name: str) -> int:
    assert module is not None
    from xdsl.dialects import func

    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    attr = fn.attributes[name]
    assert isinstance(attr, IntegerAttr)
    return attr.value.data


def test_launch_plan_of_an_elementwise_step() -> None:
    """Inputs, outputs and the arena become slots; launches pass whole buffers; a returned argument is a copy."""
    from picograd.runtime import cuda

    module = build([t(2, 3), t(3)], lambda e, x, b: [e(pg.TanhOp(e(pg.AddOp(x, e(pg.BroadcastToOp(b, (2, 3))))))), x])
    program = compile_for_cuda(module)
    assert program.inputs == (cuda.BufferSpec((2, 3), np.float32), cuda.BufferSpec((3,), np.float32))
    assert program.outputs == (cuda.BufferSpec((2, 3), np.float32), cuda.BufferSpec((2, 3), np.float32))
    launch, copy = program.steps
    assert isinstance(launch, cuda.Launch) and launch.grid == (1, 1, 1) and launch.block == (32, 1, 1)
    assert set(launch.args) == {cuda.Input(0), cuda.Input(1), cuda.Output(0)}
    assert copy == cuda.Copy(cuda.Output(1), cuda.Input(0))


def test_dense_constants_are_hidden_inputs(rng: np.random.Generator) -> None:
    program = compile_for_cuda(_iota_constants())
    assert len(program.inputs) == 1 and len(program.constants) == 2
    assert {c.dtype for c in program.constants} == {np.dtype(np.float32), np.dtype(np.int64)}
    launched = {a for s in program.steps for a in getattr(s, "args", ())}
    assert {type(a).__name__ for a in launched} >= {"Input", "Output"}


def test_assembler_missing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ptxas and nvJitLink, assembling is an error (these tests must not pass silently)."""
    monkeypatch.setattr(ptxas, "find_ptxas", lambda: None)
    monkeypatch.setattr(ptxas, "nvjitlink_available", lambda: False)
    program = compile_for_cuda(build([t(3)], lambda e, x: [e(pg.ExpOp(x))]))
    with pytest.raises(CompileError, match="no PTX assembler"):
        program.assemble()


def test_compile_for_cuda_leaves_its_argument_alone() -> None:
    module = build([t(3)], lambda e, x: [e(pg.ExpOp(x))])
    before = str(module)
    compile_for_cuda(module)
    assert str(module) == before


def erf_f32_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fresh random f32 inputs of ``erf`` over both branches, plus its edge cases: signed zeros, subnormals, the
    branch boundary and the point where ``erf`` rounds to 1 (and a few ulps either side), infinities, NaN."""
    from picograd.target import gpu_math

    fit = gpu_math.ERF_F32
    edges = [0.0, -0.0, 1e-45, -1e-45, 1e-38, 1e-30, np.inf, -np.inf, np.nan, 100.0, -3e38]
    for point in (fit.boundary, fit.one_from):
        base = np.float32(point).view(np.int32)
        edges += list((base + np.arange(-3, 4, dtype=np.int32)).view(np.float32))
    x = np.concatenate([np.array(edges, np.float32), rng.uniform(-4.5, 4.5, n - len(edges)).astype(np.float32)])
    return np.concatenate([x, -x[len(edges) :]])


def test_erf_f32_ptx_computes_the_modeled_scheme(rng: np.random.Generator) -> None:
    """The PTX of an f32 ``erf`` (``gpu_math.erf_f32``), run by the emulator, gives bit for bit what ``gpu_math``'s
    numpy model of it gives (which tests/test_gpu_math.py holds to ``MEASURED_ULP`` against float64), edge cases
    included; ``erf(-0) = -0``, ``erf(+-inf) = +-1``, ``erf(nan)`` is NaN."""
    from picograd.target import gpu_math

    x = erf_f32_inputs(rng, 64)
    module = build([t(x.size)], lambda e, a: [e(pg.ErfOp(a))])
    (got,) = run_program(compile_for_cuda(module), [x])
    want = gpu_math.evaluate("erf", "f32", x)
    same = (got.view(np.int32) == want.view(np.int32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), list(zip(x[~same], got[~same], want[~same], strict=True))
    assert np.signbit(got[1]) and got[1] == 0 and list(got[6:8]) == [1.0, -1.0] and np.isnan(got[8])


FLAT_CASES: dict[str, tuple[Callable[..., Any], Callable[..., Any], list[tuple[int, ...]], bool]] = {
    # name: (picograd function, numpy function, input shapes, whether some access is flat at a nonzero offset)
    "rows_from_one": (lambda x, y: x[1:] * y, lambda x, y: x[1:] * y, [(3, 2, 4), (2, 2, 4)], True),
    "unit_dims": (lambda x, y: x[1:2, 3:4] + y, lambda x, y: x[1:2, 3:4] + y, [(3, 5), (1, 1)], True),
    "two_outputs": (lambda x: (x[1:] * 2.0, x[:-1] + 1.0), lambda x: (x[1:] * 2.0, x[:-1] + 1.0), [(5, 3)], True),
    "concat_rows": (
        lambda x, y, z: picograd.cat([x, y], 0)[1:4] + z,
        lambda x, y, z: np.concatenate([x, y], 0)[1:4] + z,
        [(2, 3), (3, 3), (3, 3)],
        True,
    ),
    "step_transpose_broadcast": (
        lambda x, b: x[::2, 1:].T * b,
        lambda x, b: x[::2, 1:].T * b,
        [(6, 4), (3,)],
        False,
    ),
}


@pytest.mark.parametrize("name", list(FLAT_CASES))
def test_flat_accesses_at_offsets_match_numpy(name: str, monkeypatch, rng: np.random.Generator) -> None:
    """thread_per_point nests of traced steps reading slices in their own order at an offset (``flat_offset``'s
    constant: rows from 1, unit dims, rows of a concatenation) next to reads that stay indexed (step slices,
    transposes, broadcasts): the emulated kernels give float64 numpy's results."""
    from picograd.passes.kinds import elementwise

    f, reference, shapes, offset = FLAT_CASES[name]
    offsets: list[int | None] = []
    flat_offset = elementwise.flat_offset
    monkeypatch.setattr(elementwise, "flat_offset", lambda *a: offsets.append(c := flat_offset(*a)) or c)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    module = picograd.compile(f).ir("simplify", [picograd.tensor(x) for x in xs])
    got = run_program(compile_for_cuda(module), xs)
    want = reference(*[x.astype(np.float64) for x in xs])
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (k, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=f"result {k}")
    assert any(c not in (None, 0) for c in offsets) == offset, offsets
    assert 0 in offsets  # the outputs: stored flat


def test_flat_offset_of_nests_with_lower_bounds_and_steps() -> None:
    """``flat_offset`` counts a nest's lower bounds into the constant (dims of one point included) and takes no
    dim whose step or stride breaks the nest's own row-major order."""
    from xdsl.dialects import arith
    from xdsl.dialects.builtin import IndexType
    from xdsl.ir import Block

    from picograd.passes.kinds.elementwise import flat_offset

    block = Block(arg_types=[IndexType(), IndexType()])
    i, j = block.args

    def const(v: int) -> SSAValue:
        return arith.ConstantOp(IntegerAttr(v, IndexType())).result

    row = arith.AddiOp(i, const(3)).result
    assert flat_offset([row, j], (10, 4), block, [(2, 1), (0, 1)], [5, 4]) == 20  # (2 + a + 3) * 4 + b
    assert flat_offset([i, j], (5, 4), block, [(1, 1), (0, 1)], [1, 4]) == 4  # a dim of one point at 1
    assert flat_offset([i, j], (5, 8), block, [(0, 1), (1, 2)], [5, 4]) is None  # columns 1, 3, 5, 7
    assert flat_offset([i, arith.MuliOp(j, const(2)).result], (5, 8), block, [(0, 1), (0, 1)], [5, 4]) is None
    assert flat_offset([i, j], (5, 4), block, [(0, 1), (1, 1)], [5, 3]) is None  # 3 of 4 columns
    assert flat_offset([j, i], (4, 5), block, [(0, 1), (0, 1)], [5, 4]) is None  # transposed
