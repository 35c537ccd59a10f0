"""Split-K (``picograd/passes/kinds/matmul_split.py``, ``pg-split-k``): the rule, the loop-stage rewrite on the
loop interpreter, and the compiled partial matmuls and sum on the PTX emulator, all against float64."""

from __future__ import annotations

import numpy as np
import pytest
from _matmul import MM
from _ptx_emulator import run_program
from test_mma_sync import with_schedule

from picograd.dialects import kernel
from picograd.dialects.kernel import ScheduleAttr
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import passes_until, run_passes
from picograd.passes.kinds import matmul_wgmma as wg
from picograd.passes.kinds.matmul_rungs import SMALL_MMA_TILE, SMALL_TILE
from picograd.passes.kinds.matmul_split import split_k
from picograd.runtime import cuda
from picograd.runtime.loop_interpreter import run_function


def _with_split(rung_attr: ScheduleAttr, splits: int) -> ScheduleAttr:
    return ScheduleAttr(rung_attr.strategy.data, {**rung_attr.values, "split_k": splits})


def _check(shape: MM, got: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    want = shape.reference(a, b)
    a64, b64 = shape.operands64(a, b)
    scale = np.abs(a64) @ np.abs(b64)
    eps = {"f32": 2.0**-23, "bf16": 2.0**-8, "f16": 2.0**-11}[shape.dtype]
    tol = scale * (2.0**-23 * shape.k + eps) + 1e-30  # f32 sums over K, one rounding of the result
    bad = ~(np.abs(got.astype(np.float64) - want) <= tol)
    assert not bad.any(), f"{bad.sum()} of {bad.size} outside the tolerance; first at {np.argwhere(bad)[0]}"


LOOPS = [
    (MM(4, 6, 256, dtype="f32"), 4),
    (MM(6, 4, 256, dtype="bf16"), 8),
    (MM(5, 3, 100, ta=True, dtype="bf16"), 3),  # ragged: chunks of 34, the last 32
    (MM(3, 4, 30, tb=True, batch=(2,), dtype="f32"), 7),  # ragged and batched
]


@pytest.mark.parametrize(("shape", "splits"), LOOPS, ids=lambda x: str(x))
def test_split_on_the_loop_interpreter(shape: MM, splits: int, rng: np.random.Generator) -> None:
    module = with_schedule(shape.module(), _with_split(SMALL_TILE.attr(), splits))
    run_passes(module, ["pg-bufferize", "pg-outline-kernels", "pg-to-loops", "pg-split-k"])
    text = str(module)
    assert "memref.alloc" in text and text.count("scf.parallel") == 2
    a, b = shape.inputs(rng)
    (got,) = run_function(module, "f", [a, b])
    _check(shape, got, a, b)


EMULATED = [
    # (shape, rung, splits): whole chunks read as plain tiles (cp.async), a ragged K read element by element
    (MM(64, 64, 256, dtype="bf16"), SMALL_MMA_TILE, 4),
    (MM(40, 24, 200, ta=True, dtype="bf16"), SMALL_MMA_TILE, 3),  # ragged: chunks of 67, the last 66
    (MM(64, 64, 64, tb=True, dtype="f32"), SMALL_TILE, 2),  # chunks of two 16-deep K tiles
    (MM(64, 64, 128, ta=True, dtype="f32"), SMALL_TILE, 4),  # a weight gradient's layout (dY.T @ X)
    (MM(24, 20, 90, dtype="f32"), SMALL_TILE, 4),  # ragged
]


@pytest.mark.parametrize(("shape", "rung", "splits"), EMULATED, ids=lambda x: str(x) if isinstance(x, MM) else "")
def test_split_on_the_emulator(shape: MM, rung, splits: int, rng: np.random.Generator) -> None:
    """ptxas strict, the partial matmuls' grid (a z block per chunk) then the sum's, results against float64."""
    program = compile_for_cuda(with_schedule(shape.module(), _with_split(rung.attr(), splits)))
    program.assemble(strict=True)
    launches = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert len(launches) == 2 and launches[0].grid[2] == splits  # type: ignore[index]
    if shape.k % splits == 0:  # whole chunks: the operands are still plain tiles (cp.async, 16-byte loads)
        # (an f32 B tile read N-major takes 16-byte loads through registers; with ta both tiles keep their order)
        assert "cp.async" in program.ptx and (rung.tensor_core or shape.ta or "ld.global.v4.f32" in program.ptx)
    a, b = shape.inputs(rng)
    (got,) = run_program(program, [a, b])
    _check(shape, got, a, b)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("wgmma-ws", MM(50, 72, 256, tb=True, dtype="bf16")), ("wgmma", MM(48, 64, 192, ta=True, dtype="bf16"))],
    ids=str,
)
def test_split_wgmma_on_the_emulator(name: str, shape: MM, rng: np.random.Generator) -> None:
    """The partial matmuls on the Hopper kernel (a batch z reading K from z * chunk on, through unbatched tensor
    maps), then the sum, rounded to bf16 once."""
    splits = shape.k // wg.BK
    attr = wg.schedule_attr(name, split_k=splits)
    program = compile_for_cuda(with_schedule(shape.module(), attr), arch="sm_90a")
    program.assemble(strict=True)
    launches = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert len(launches) == 2 and isinstance(launches[0].args[0], cuda.TensorMap)
    a, b = shape.inputs(rng)
    (got,) = run_program(program, [a, b])
    _check(shape, got, a, b)


def test_the_rule_on_the_gpt_weight_gradients() -> None:
    """``auto``'s split on sm_90a (128x256 or, for N = 384, 128x192 tiles: 2 across either way; 132 SMs) for the
    GPT step's weight gradients over 16384 tokens: the most chunks (dividing K into multiples of 64, >= 512) that
    keep the grid within the SMs."""
    assert split_k(3 * 2, 16384, 132) == 16  # 384 x 384: 96 blocks
    assert split_k(9 * 2, 16384, 132) == 4  # 1152 x 384: 72 blocks
    assert split_k(12 * 2, 16384, 132) == 4  # 1536 x 384: 96 blocks
    assert split_k(66, 16384, 132) == 2 and split_k(67, 16384, 132) == 1  # from half the SMs busy: no split
    assert split_k(6, 1000, 132) == 1  # no chunking of a multiple of 64
    assert split_k(6, 640, 132) == 1  # chunks would be shorter than 512
    module = MM(384, 384, 16384, ta=True, dtype="bf16").module()
    run_passes(module, passes_until("kernels", arch="sm_90a"))
    (fused,) = [op for op in module.walk() if isinstance(op, kernel.FusedOp) and op.kind.data == "matmul"]
    assert fused.schedule == wg.schedule_attr("wgmma-ws-192", fallback=True, split_k=16)


def _run_on_gpu(program, inputs: list[np.ndarray]) -> np.ndarray:
    (out,) = program.executable()(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])
    return out.to_numpy()


def test_auto_splits_an_f32_weight_gradient() -> None:
    """f32 ``auto``: one 64x64 tile over K = 4096 (dY.T @ X) takes cp-async split 8 (up to 6 blocks an SM,
    ``SIMT_BLOCKS_PER_SM``): the partial matmuls' 8 z blocks, then the sum; ptxas strict. (Its values: the f32 rows
    of ``EMULATED``, K too long for the emulator here.)"""
    program = compile_for_cuda(MM(64, 64, 4096, ta=True).module())
    program.assemble(strict=True)
    launches = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert len(launches) == 2 and list(launches[0].grid) == [1, 1, 8]  # type: ignore[attr-defined]
    assert "cp.async.cg.shared.global" in program.ptx  # both tiles in their memory order: 16-byte copies


GPU_SHAPES = [
    # auto's choice on sm_90a at the GPT step's weight gradients (dY.T @ X over 16384 tokens: wgmma-ws split 16
    # and 4) and the lm head's (65 wide: mma-sync split 8); in f32 cp-async on 64x64 tiles (split 16, 4 and 32)
    MM(384, 384, 16384, ta=True, dtype="bf16"),
    MM(1152, 384, 16384, ta=True, dtype="bf16"),
    MM(65, 384, 16384, ta=True, dtype="bf16"),
    MM(384, 384, 16384, ta=True, dtype="f32"),
    MM(1152, 384, 16384, ta=True, dtype="f32"),
    MM(65, 384, 16384, ta=True, dtype="f32"),
    MM(256, 32, 2048, ta=True, dtype="f32"),  # the DDPM's (split 4)
]


@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_auto_split_on_gpu(shape: MM, rng: np.random.Generator) -> None:
    """auto (sm_90a) splits K at these shapes; the result against float64, and the same bits twice (no atomics)."""
    program = compile_for_cuda(shape.module(), arch="sm_90a")
    launches = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert len(launches) == 2, "auto did not split K"
    a, b = shape.inputs(rng)
    got = _run_on_gpu(program, [a, b])
    _check(shape, got, a, b)
    np.testing.assert_array_equal(got, _run_on_gpu(program, [a, b]))
