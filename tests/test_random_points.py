"""Random kernels under ``points = 4`` (``pg-schedule{random-points=4}``, what the GPU pipeline runs): each iteration
of the kernel's nest computes 4 consecutive innermost elements from one Philox 4x32-10 call, drawing the same stream
as one call per element (``picograd.dialects.philox``: counter ``offset + i // 4``, word ``i % 4``). Checked on the
loop interpreter and on the PTX emulator against the numpy executor, bit for bit for uniform draws (f32, f64, bf16)
and to rounding for normal ones; shapes whose innermost extent is not a multiple of 4 keep a call per element.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from _ir import only_func
from _ptx_emulator import run_program
from test_loops import CTX, build, t
from xdsl.dialects import arith
from xdsl.dialects.builtin import bf16, f32, f64, i64
from xdsl.ir import Attribute

from picograd.dialects import pg, philox
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.passes.bufferize import PgBufferize
from picograd.passes.fuse import PgFuse
from picograd.passes.schedule import PgSchedule
from picograd.passes.to_loops import PgToLoops
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func

SEED = np.array(0x1234_5678_9ABC_DEF0 - (1 << 64) // 2, np.int64)
OFFSET = np.array(7, np.int64)
NP = {f32: np.float32, f64: np.float64, bf16: ml_dtypes.bfloat16}


def _module(dist: str, shape: tuple[int, ...], el: Attribute):
    return build([t(el=i64), t(el=i64)], lambda e, s, o: [e(pg.RandomOp(dist, s, o, t(*shape, el=el)))])


def _compare(dist: str, got: np.ndarray, want: np.ndarray) -> None:
    if dist == "uniform":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("dist", "el"), [("uniform", f32), ("uniform", f64), ("uniform", bf16), ("normal", f32)])
def test_loop_stage_one_philox_call_per_4_elements(dist: str, el: Attribute) -> None:
    shape = (3, 8)
    module = _module(dist, shape, el)
    want = compile_func(only_func(module))(SEED, OFFSET)[0]
    if el != bf16:
        draw = philox.uniform if dist == "uniform" else philox.normal
        np.testing.assert_allclose(want, draw(shape, int(SEED), int(OFFSET), np.dtype(NP[el])), rtol=1e-12)
    PgFuse().apply(CTX, module)
    PgSchedule(random_points=4).apply(CTX, module)
    PgBufferize().apply(CTX, module)
    PgToLoops().apply(CTX, module)
    module.verify()
    fn = only_func(module)
    # one nest over (3, 2), 4 stores an iteration, and one Philox call (2 x 10 32x32->64-bit products)
    (nest,) = [op for op in fn.body.block.ops if op.name == "scf.parallel"]
    assert [int(str(b.owner.value.value.data)) for b in nest.upperBound] == [3, 2]  # type: ignore[union-attr]
    assert sum(op.name == "memref.store" for op in nest.walk()) == 4
    assert sum(isinstance(op, arith.MulUIExtendedOp) for op in nest.walk()) == 20
    got = run_function(module, fn.sym_name.data, [SEED, OFFSET])[0]
    _compare(dist, got, want)


@pytest.mark.parametrize(
    ("dist", "shape", "el"),
    [("uniform", (3, 8), f32), ("uniform", (2, 12), bf16), ("normal", (2, 8), f32), ("uniform", (3, 7), f32)],
)
def test_ptx_same_stream(dist: str, shape: tuple[int, ...], el: Attribute) -> None:
    """compile_for_cuda (random-points=4) on the emulator: the numpy executor's values; (3, 7) keeps a call each."""
    module = _module(dist, shape, el)
    want = compile_func(only_func(module))(SEED, OFFSET)[0]
    program = compile_for_cuda(module)
    program.assemble(strict=True)
    points = 4 if shape[-1] % 4 == 0 else 1
    assert program.ptx.count("st.global") == points  # a thread's stores, after one Philox call
    assert 20 <= program.ptx.count("mul.hi.u32") < 40  # one call: 10 rounds of 2 high products
    got = run_program(program, [SEED, OFFSET])[0]
    _compare(dist, got, want)


@pytest.mark.gpu
@pytest.mark.parametrize(("dist", "el"), [("uniform", bf16), ("uniform", f32), ("normal", f32)])
def test_gpu_same_stream(dist: str, el: Attribute) -> None:
    """At the GPT's dropout shape (64, 256, 384) on the GPU: the numpy executor's stream."""
    from picograd.runtime import cuda

    if not cuda.available():
        pytest.skip("needs an NVIDIA GPU")
    module = _module(dist, (64, 256, 384), el)
    want = compile_func(only_func(module))(SEED, OFFSET)[0]
    exe = compile_for_cuda(module).executable()
    (got,) = [o.to_numpy() for o in exe(cuda.DeviceBuffer.from_numpy(SEED), cuda.DeviceBuffer.from_numpy(OFFSET))]
    _compare(dist, got, want)
