"""Every op, every vjp and whole train steps on the GPU, against the numpy executor (``-m gpu``; skipped without one).

The cases are those of ``test_ptx_lowering.py`` (which checks them offline with ptxas and the PTX emulator): each is
compiled by ``compile_for_cuda`` and run through ``CudaProgram.executable()`` on fresh random inputs. Also: the
compiled train step of ``examples/mlp_names.py`` (batch 32, hidden 200), the GPU's elementary functions against the
numpy evaluation of the same schemes (``picograd.target.gpu_math``: the same numbers, to the rare double rounding of
its emulated fma) and against numpy/scipy (their worst ulp error is printed), and repeated calls of one executable
(graph replay, stable results).

Run on a GPU machine: ``pytest -m gpu tests/test_gpu_ops.py -v``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_loops import Emit, build, only_func, t
from test_ptx_lowering import CASES, check_outputs, compile_case
from xdsl.dialects.builtin import f32, f64
from xdsl.ir import SSAValue

from picograd.dialects import pg
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.runtime import cuda
from picograd.runtime.numpy_executor import compile_func
from picograd.target import gpu_math

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")]


def run_on_gpu(program: Any, inputs: list[np.ndarray], **options: Any) -> list[np.ndarray]:
    exe = program.executable(**options)
    outs = exe(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])
    return [o.to_numpy() for o in outs]


@pytest.mark.parametrize("name", list(CASES))
def test_case_on_gpu(name: str, rng: np.random.Generator) -> None:
    case = CASES[name]
    program, reference = compile_case(case)
    inputs = case.inputs(rng, case.make())
    check_outputs(case, reference(*inputs), run_on_gpu(program, inputs))


def test_case_without_graphs_and_replayed(rng: np.random.Generator) -> None:
    """Plain launches and graph replays give the same results; a replay with new inputs gives new results."""
    case = CASES["softmax_one_kernel"]
    program, reference = compile_case(case)
    exe = program.executable()
    for _ in range(3):
        inputs = case.inputs(rng, case.make())
        outs = exe(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])
        check_outputs(case, reference(*inputs), [o.to_numpy() for o in outs])
    plain = run_on_gpu(program, inputs, use_graph=False)
    check_outputs(case, reference(*inputs), plain)


def test_mlp_names_train_step(rng: np.random.Generator) -> None:
    """The compiled SGD step of examples/mlp_names.py: loss, step count and updated parameters as numpy's."""
    from picograd.tools.pgc import compiled_functions, import_model

    model = import_model("examples/mlp_names.py")
    (step,) = compiled_functions(model)
    module = step.ir("simplify")
    fn = only_func(module)
    inputs = []
    for ty in fn.function_type.inputs.data:
        shape = tuple(ty.get_shape())  # type: ignore[attr-defined]
        el = ty.get_element_type()  # type: ignore[attr-defined]
        if el == f32:
            inputs.append((rng.standard_normal(shape) * 0.3).astype(np.float32))
        elif el == f64:
            inputs.append(np.array(rng.uniform(0.01, 0.2)))
        elif shape == (32, 3) or shape == (32,):
            inputs.append(rng.integers(0, 27, shape).astype(np.int64))
        else:
            inputs.append(np.zeros(shape, np.int64))
    want = compile_func(fn)(*inputs)
    got = run_on_gpu(compile_for_cuda(module), inputs)
    for k, (w, g) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, err_msg=f"result {k}")


MATH_OPS = {"exp": pg.ExpOp, "log": pg.LogOp, "tanh": pg.TanhOp, "erf": pg.ErfOp, "sin": pg.SinOp, "cos": pg.CosOp}


def _math_inputs(rng: np.random.Generator, dtype: type, n: int) -> dict[str, np.ndarray]:
    big = 88.0 if dtype == np.float32 else 700.0
    return {
        "exp": rng.uniform(-big, big, n),
        "log": np.exp(rng.uniform(-80, 80, n)),
        "tanh": rng.uniform(-10, 10, n),
        "erf": rng.uniform(-6, 6, n),
        "sin": rng.uniform(-1e4, 1e4, n),
        "cos": rng.uniform(-1e4, 1e4, n),
    }


@pytest.mark.parametrize("kind", ["f32", "f64"])
def test_math_matches_its_emulation_and_numpy(kind: str, rng: np.random.Generator) -> None:
    """The PTX math gives the numbers of gpu_math's numpy evaluation (bit for bit but for fma double roundings, at
    most 1 ulp), and stays within MEASURED_ULP (plus numpy's own error) of numpy/scipy."""
    from scipy import special

    el = f32 if kind == "f32" else f64
    dtype = np.float32 if kind == "f32" else np.float64
    n = 4096
    names = list(MATH_OPS)

    def body(e: Emit, *xs: SSAValue) -> list[SSAValue]:
        outs = [e(MATH_OPS[name](x)) for name, x in zip(names, xs, strict=True)]
        return [*outs, e(pg.PowOp(xs[1], e(pg.SubOp(xs[2], xs[2]))))]  # log's positive input to the power 0

    module = build([t(n, el=el)] * len(names), body)
    xs = _math_inputs(rng, dtype, n)
    inputs = [xs[name].astype(dtype) for name in names]
    got = run_on_gpu(compile_for_cuda(module), inputs)
    numpy_ref = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "erf": special.erf, "sin": np.sin, "cos": np.cos}
    report = []
    for name, x, g in zip(names, inputs, got, strict=False):
        emulated = gpu_math.evaluate(name, kind, x)
        spacing = np.abs(np.spacing(emulated.astype(dtype)))
        with np.errstate(invalid="ignore"):
            diff = np.abs(g.astype(np.float64) - emulated) / spacing
        same = (g == emulated) | (np.isnan(g) & np.isnan(emulated))
        assert ((diff <= 1) | same).all(), (name, x[~((diff <= 1) | same)][:5])
        assert same.mean() > 0.99, (name, same.mean())
        with np.errstate(all="ignore"):
            ref = numpy_ref[name](x)
            err = np.nanmax(np.abs(g.astype(np.float64) - ref) / np.abs(np.spacing(ref.astype(dtype))))
        report.append(f"{name} {err:.2f} ulp")
        assert err <= gpu_math.MEASURED_ULP[kind][name] + 1.5, (name, err)
    np.testing.assert_array_equal(got[-1], np.ones(n, dtype))
    print(f"\n{kind} GPU vs numpy/scipy, max: " + ", ".join(report))
