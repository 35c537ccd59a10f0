"""Elementwise and movement kernels under ``unroll`` (``pg-schedule{unroll=4}``, what the GPU pipeline runs): the
nest's outermost dim divisible by 4 is cut into 4 chunks and each iteration computes the same point of every chunk,
all its loads before its stores (``picograd/passes/kinds/elementwise.py``).

The rule (which kernels take it), the loop stage (the split nest, the order of loads and stores; the loop
interpreter against numpy in float64), PTX (ptxas, then the emulator, against float64; a split dim that is not the
outermost, a permute that reads across chunks, a kernel whose output aliases nothing), and the SASS of a bf16 kernel
(every load issued before the first store).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import ml_dtypes
import numpy as np
import pytest
from _ir import only_func
from _ptx_emulator import run_program
from test_loops import CTX, build, t
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import ModuleOp, bf16, f32

from picograd.dialects import kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import POINTWISE_UNROLL, lower_to, passes_until, run_passes
from picograd.passes.kinds.elementwise import UNROLL_MIN_POINTS, unroll_dim, worth_unrolling
from picograd.passes.schedule import PgSchedule
from picograd.runtime.loop_interpreter import run_function
from picograd.target import ptxas

UNROLLED = ScheduleAttr("thread_per_point", {"block": 64, "unroll": 4})


def test_the_rule() -> None:
    assert POINTWISE_UNROLL == 4 and "unroll=4" in passes_until("kernels")[-1]
    assert unroll_dim((64, 256, 1536), 4) == 0
    assert unroll_dim((1, 6, 1024), 4) == 2  # the outermost dim 4 divides
    assert unroll_dim((1023, 1025), 4) is None
    assert unroll_dim((0, 8), 4) == 1  # an empty dim is never split
    assert unroll_dim((64, 64), 1) is None
    assert worth_unrolling((64, 256, 384), 4) and not worth_unrolling((64, 256, 63), 4)
    assert not worth_unrolling((1023, 1024), 4)  # 4 below UNROLL_MIN_POINTS
    assert worth_unrolling((1024, 1024), 4) and UNROLL_MIN_POINTS == 1024 * 1024


def _schedules(module: ModuleOp) -> dict[str, ScheduleAttr]:
    return {k.sym_name.data: k.schedule for k in module.walk() if isinstance(k, kernel.FusedOp)}


def test_pg_schedule_unrolls_big_elementwise_and_movement_kernels() -> None:
    """A big cast and a big permute take ``unroll = 4``; a small one, one whose dims 4 divides none, a reduction
    whose rows a warp reduces and every kernel under the CPU pipeline's default (1) do not."""

    def body(e, x, y, z):
        big = e(pg.CastOp(e(pg.ExpOp(x)), bf16))
        return [big, e(pg.PermuteOp(x, [1, 0])), e(pg.TanhOp(y)), e(pg.NegOp(z)), e(pg.SumOp(x, [1]))]

    def module() -> ModuleOp:
        m = build([t(1024, 1024), t(64, 64), t(1025, 1023)], body)
        lower_to(m, "simplify")
        run_passes(m, ["pg-fuse{recompute=true movement=true}"])
        return m

    m = module()
    PgSchedule(unroll=4).apply(CTX, m)
    got = {name.split("_", 1)[1]: s.values for name, s in _schedules(m).items()}
    assert got["cast"] == {"block": 256, "unroll": 4}
    assert got["permute"] == {"block": 256, "unroll": 4}
    assert got["tanh"] == {"block": 256} and got["neg"] == {"block": 256}
    assert got["sum"] == {"block": 256, "unroll": 4}  # warp_per_row: a lane's 32 elements of a row, 4 an iteration
    m = module()
    PgSchedule().apply(CTX, m)
    assert all("unroll" not in s.values for s in _schedules(m).values())
    with pytest.raises(Exception, match="unroll=3 is not 1, 2, 4 or 8"):
        PgSchedule(unroll=3).apply(CTX, module())


def _forced(module: ModuleOp) -> ModuleOp:
    """``module`` at the kernels stage, every elementwise and movement kernel scheduled :data:`UNROLLED`."""
    lower_to(module, "kernels")
    for k in module.walk():
        if isinstance(k, kernel.FusedOp) and k.kind.data in ("elementwise", "movement"):
            k.schedule = UNROLLED
    return module


def _gelu_grad(e, x, g):
    """bf16 in and out, f32 inside: the GPT's GELU gradient's form (two bf16 reads, one bf16 write)."""
    xf, gf = e(pg.CastOp(x, f32)), e(pg.CastOp(g, f32))
    return [e(pg.CastOp(e(pg.MulOp(gf, e(pg.TanhOp(xf)))), bf16))]


def _gelu_grad_want(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g.astype(np.float64) * np.tanh(x.astype(np.float64))


def _bf16(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    return rng.standard_normal(shape).astype(ml_dtypes.bfloat16)


def test_loop_stage_splits_the_outermost_dim_and_loads_before_it_stores(rng: np.random.Generator) -> None:
    shape = (8, 3, 5)
    module = _forced(build([t(*shape, el=bf16), t(*shape, el=bf16)], _gelu_grad))
    run_passes(module, ["pg-bufferize", "pg-outline-kernels", "pg-to-loops"])
    fn = only_func(module)
    (nest,) = [op for op in fn.walk() if isinstance(op, scf.ParallelOp)]
    assert [int(b.owner.value.value.data) for b in nest.upperBound] == [2, 3, 5]  # type: ignore[union-attr]
    ops = list(nest.body.block.ops)
    loads = [i for i, op in enumerate(ops) if isinstance(op, memref.LoadOp)]
    stores = [i for i, op in enumerate(ops) if isinstance(op, memref.StoreOp)]
    assert len(loads) == 8 and len(stores) == 4 and max(loads) < min(stores)
    x, g = _bf16(rng, shape), _bf16(rng, shape)
    (got,) = run_function(module, fn.sym_name.data, [x, g])
    # the bf16 result's rounding (2^-8 relative) on top of the f32 math
    np.testing.assert_allclose(got.astype(np.float64), _gelu_grad_want(x, g), rtol=2**-8, atol=1e-6)


CASES = {
    # name: (input shapes, body, numpy float64 of the inputs, the PTX's st.global count a thread)
    "bf16_gelu_grad_3d": ([(8, 3, 5), (8, 3, 5)], _gelu_grad, _gelu_grad_want, 4),
    # the split dim is the second: 3 does not divide by 4
    "split_inner_dim": ([(3, 8, 7), (3, 8, 7)], _gelu_grad, _gelu_grad_want, 4),
    # a copy reading across the chunks it writes: the heads' layout (B, T, H, D) -> (B, H, T, D)
    "heads_permute": (
        [(4, 6, 3, 8)],
        lambda e, x: [e(pg.PermuteOp(x, [0, 2, 1, 3]))],
        lambda x: np.transpose(x.astype(np.float64), (0, 2, 1, 3)),
        4,
    ),
    # a concat along the innermost dim: each point picks its source by a branch
    "concat_last_dim": (
        [(4, 5, 3), (4, 5, 2)],
        lambda e, a, b: [e(pg.ConcatOp([a, b], 2))],
        lambda a, b: np.concatenate([a.astype(np.float64), b.astype(np.float64)], axis=2),
        4,
    ),
    # two outputs of one shape: both in the one nest, 8 stores a thread
    "two_outputs_f32": (
        [(12, 10)],
        lambda e, x: [e(pg.ExpOp(e(pg.CastOp(x, f32)))), e(pg.NegOp(x))],
        lambda x: (np.exp(x.astype(np.float64)), -x.astype(np.float64)),
        8,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ptx_on_the_emulator(name: str, rng: np.random.Generator) -> None:
    shapes, body, want_of, stores = CASES[name]
    module = _forced(build([t(*s, el=bf16) for s in shapes], body))
    program = compile_for_cuda(module, stage="kernels")
    program.assemble(strict=True)  # ptxas -arch=sm_90 --warn-on-spills -Werror
    assert program.ptx.count("st.global") == stores
    inputs = [_bf16(rng, s) for s in shapes]
    want = want_of(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    got = run_program(program, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        rtol = 2**-8 if g.dtype == ml_dtypes.bfloat16 else 2e-6  # the output's rounding (f32: exp's error)
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=rtol, atol=1e-6)


def test_sass_issues_every_load_before_the_first_store() -> None:
    """ptxas keeps a load after a store it cannot tell apart from it: the unrolled bf16 kernel's SASS issues its
    8 ``LDG``s before its first ``STG`` (4 of them; one point's kernel issues 2, then 1)."""
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    module = _forced(build([t(64, 256, 96, el=bf16), t(64, 256, 96, el=bf16)], _gelu_grad))
    program = compile_for_cuda(module, stage="kernels", arch="sm_90a")
    sass = ptxas.dump_sass(program.assemble(strict=True).cubin)
    memory = re.findall(r"\b(LDG|STG)\b", sass)
    assert memory.count("LDG") == 8 and memory.count("STG") == 4
    assert memory.index("STG") == 8


# ---------------------------------------------------------------------------------------------------------------
# On a GPU (``pytest -m gpu tests/test_pointwise_unroll.py``; skipped without one)

GPT_CASES = {
    # the GPT step's shapes, as the GPU pipeline schedules them (unroll = 4: 6.3M and 25M points)
    "gelu_grad_64x256x1536": ([(64, 256, 1536), (64, 256, 1536)], _gelu_grad, _gelu_grad_want),
    "heads_permute_64x256x6x64": (
        [(64, 256, 6, 64)],
        lambda e, x: [e(pg.PermuteOp(x, [0, 2, 1, 3]))],
        lambda x: np.transpose(x.astype(np.float64), (0, 2, 1, 3)),
    ),
}


@pytest.mark.parametrize("name", list(GPT_CASES))
@pytest.mark.gpu
def test_gpt_shapes_on_gpu(name: str, rng: np.random.Generator) -> None:
    from picograd.runtime import cuda

    if not cuda.available():
        pytest.skip("needs an NVIDIA GPU")
    shapes, body, want_of = GPT_CASES[name]
    module = build([t(*s, el=bf16) for s in shapes], body)
    program = compile_for_cuda(module, arch=cuda.device_target())
    assert program.ptx.count("st.global") == 4  # unroll = 4: a thread stores 4 points
    inputs = [_bf16(rng, s) for s in shapes]
    (got,) = [o.to_numpy() for o in program.executable()(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])]
    np.testing.assert_allclose(got.astype(np.float64), want_of(*inputs), rtol=2**-8, atol=1e-6)
