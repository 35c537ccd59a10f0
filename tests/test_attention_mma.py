"""bf16/f16 attention (issue 15): fused, never decomposed into T x T ops; the loop stage computes it in f32; the
``flash-mma`` kernels (``picograd/passes/kinds/attention_mma.py``: FlashAttention-2 forward, dk/dv and dq on
``mma.sync``) through the PTX emulator against the float64 decomposition of the same bf16-rounded inputs, within
bf16 tolerance; ptxas without spills at head dims 64 and 128; the GPT example under bf16 autocast.

The emulator runs about 10**5 instructions a second: tiny shapes, one block per kernel, and the tile sizes made
small (``mma_block_n = 16``) so that T = 33 crosses several key tiles, the cp.async pipeline and both key loops."""

from __future__ import annotations

import re
from dataclasses import replace

import ml_dtypes
import numpy as np
import pytest
from _ir import only_func
from _ptx_emulator import run_program
from test_attention_kernels import fuse, inputs, module
from test_loops import to_loops
from xdsl.dialects.builtin import BFloat16Type, Float16Type, ModuleOp, bf16, f16, f64
from xdsl.ir import Attribute

from picograd.dialects import kernel
from picograd.dialects.kernel import ScheduleAttr
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import STAGES, run_passes
from picograd.passes.kinds import attention_mma
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def narrow(xs: list[np.ndarray], el: Attribute) -> list[np.ndarray]:
    dtype = ml_dtypes.bfloat16 if isinstance(el, BFloat16Type) else np.float16
    return [x.astype(dtype) if x.dtype == np.float64 else x for x in xs]


def reference(length: int, d: int, causal: bool, mask: str, heads: int, xs: list[np.ndarray]) -> list[np.ndarray]:
    """out, dq, dk, dv of the float64 decomposition on the 16-bit inputs."""
    wide = [x.astype(np.float64) if x.dtype != np.bool_ else x for x in xs]
    return compile_func(only_func(module(length, d, causal, mask, heads, decomposed=True)))(*wide)


def close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """Within 16-bit tolerance: inputs are exact in both, so the errors are the kernels' roundings (P to 16 bits,
    the outputs once) and f32 sums."""
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert g.dtype in (ml_dtypes.bfloat16, np.float16), name
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=2e-2, atol=1e-2 * scale, err_msg=name)


def schedules(mod: ModuleOp) -> list[str]:
    return [op.schedule.strategy.data for op in only_func(mod).walk() if isinstance(op, kernel.FusedOp)
            and op.kind.data == "attention" and op.schedule is not None]  # fmt: skip


@pytest.mark.parametrize(
    "el,d,mask,strategy",
    [(bf16, 16, "pad", "flash-mma"), (f16, 64, "none", "flash-mma"), (bf16, 8, "none", "flash"),
     (bf16, 16, "dropout", "flash"), (f64, 16, "none", "flash")],
)  # fmt: skip
def test_16bit_attention_is_fused_and_scheduled(el: Attribute, d: int, mask: str, strategy: str) -> None:
    """16-bit attention becomes the fused kernels (no T x T op left); flash-mma where the head dims are multiples
    of 16 up to 128 and there is no dropout, else the SIMT flash kernels (computing in f32)."""
    mod = module(7, d, True, mask, el=el)
    fuse(mod)
    assert schedules(mod) == [strategy, strategy]
    kinds = {op.kind.data for op in only_func(mod).walk() if isinstance(op, kernel.FusedOp)}
    assert "matmul" not in kinds


def test_loop_stage_computes_bf16_in_f32(rng: np.random.Generator) -> None:
    xs = narrow(inputs(rng, 7, 16, "pad", 1), bf16)
    mod = to_loops(module(7, 16, True, "pad", 1, el=bf16), fuse)
    close(run_function(mod, "f", xs), reference(7, 16, True, "pad", 1, xs))


def small_tiles(mod: ModuleOp) -> None:
    """``fuse`` with 16-key tiles in the forward and dq kernels (more key tiles on tiny shapes)."""
    fuse(mod)
    for op in only_func(mod).walk():
        if isinstance(op, kernel.FusedOp) and op.schedule is not None and op.schedule.strategy.data == "flash-mma":
            sizes: dict[str, int | bool] = {k: op.schedule.count(k) for k in op.schedule.params.data}
            op.schedule = ScheduleAttr("flash-mma", {**sizes, "mma_block_n": 16})


PTX_CASES = [
    (33, 16, True, "pad", bf16),  # 3 key tiles: the unmasked and the diagonal loop, padding, 3 dk/dv query tiles
    (7, 64, False, "none", f16),
    (1, 16, True, "none", bf16),
]


@pytest.mark.parametrize("length,d,causal,mask,el", PTX_CASES)
def test_flash_mma_kernels(length: int, d: int, causal: bool, mask: str, el: Attribute, rng: np.random.Generator):
    xs = narrow(inputs(rng, length, d, mask, 1), el)
    mod = module(length, d, causal, mask, 1, el=el)
    run_passes(mod, list(STAGES["simplify"]))
    small_tiles(mod) if length > 16 else fuse(mod)
    run_passes(mod, [p for p in STAGES["kernels"] if p not in ("pg-decompose-attention", "pg-fuse", "pg-schedule")])
    program = compile_for_cuda(mod, stage="kernels")
    assert program.ptx.count("mma.sync") >= 3 and "ldmatrix" in program.ptx
    close(run_program(program, xs), reference(length, d, causal, mask, 1, xs))


@pytest.mark.parametrize("d", [64, 128])
def test_head_dims_assemble_without_spills(d: int) -> None:
    """ptxas -arch=sm_90 --warn-on-spills -Werror on the forward, dk/dv and dq kernels, causal, T not a tile
    multiple."""
    mod = module(300, d, True, "none", 2, el=bf16)
    program = compile_for_cuda(mod)
    result = program.assemble(strict=True)
    assert not result.spills
    kernels = [k for k in program.kernels if "attention" in k]
    assert len(kernels) == 4 and program.ptx.count("mma.sync") >= 3 * (d // 16)
    assert all((result.kernels[k].shared_bytes or 0) <= 48 * 1024 for k in kernels)


def test_gpt_example_bf16_ptx_has_fused_mma_attention() -> None:
    """The GPT example's train step under bf16 autocast (``--dtype bfloat16``, the cuda default): the attention
    kernels are the flash-mma ones and no buffer is T x T."""
    import picograd as pg
    from picograd.tools.pgc import _import_model

    gpt = _import_model("examples/gpt_shakespeare.py")
    cfg = replace(gpt.Config(), n_layer=1, n_head=2, n_embd=64, block_size=48, batch_size=2, dtype="bfloat16")
    gpt.model, gpt.opt, gpt.sched = gpt.make(cfg, 0)
    x = pg.tensor(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 48)))
    loops = str(gpt.train_step.ir("loops", (x, x)))
    assert "unfused_attention" not in loops and not re.search(r"memref<[^>]*x48x48x", loops)
    assert loops.count('"flash-mma"') >= 2
    program = compile_for_cuda(gpt.train_step.ir("simplify", (x, x)))
    names = [k for k in program.kernels if "attention" in k]
    assert len(names) == 4 and "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in program.ptx


def test_runs_predicate() -> None:
    assert attention_mma.runs((2, 7, 64), (2, 7, 128), bf16, False)
    assert attention_mma.runs((2, 7, 16), (2, 7, 16), Float16Type(), False)
    assert not attention_mma.runs((2, 7, 144), (2, 7, 64), bf16, False)
    assert not attention_mma.runs((2, 7, 64), (2, 7, 24), bf16, False)
    assert not attention_mma.runs((2, 7, 64), (2, 7, 64), bf16, True)
    assert not attention_mma.runs((2, 7, 64), (2, 7, 64), f64, False)
