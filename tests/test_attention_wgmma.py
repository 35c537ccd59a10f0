"""The ``flash-wgmma`` attention forward (``picograd/passes/kinds/attention_wgmma.py``): bf16 FlashAttention on
wgmma + TMA, sm_90a.

The kernel runs on the PTX emulator on small shapes against float64 (out and lse), with the schedule used on the
GPU (two consumer warpgroups, 128 x 128 tiles) and a test-only one (one consumer, 32-key tiles, so that the K/V
ring wraps and causal blocks skip and mask tiles); it is assembled with ``ptxas -arch=sm_90a --warn-on-spills
-Werror`` at head dims 64 and 128, and its SASS must hold ``HGMMA`` (from registers and from shared memory),
``UTMALDG`` and no local memory.

Tolerance: P is rounded to bf16 before P V (as FlashAttention does), so out may differ from the float64 reference
by about 2**-8 of sum_j P_ij |v_j| (bf16's half ulp on each product) plus bf16's rounding of the output; lse to
f32's accuracy of the exponentials (``ex2.approx``: a few ulp).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from _ptx_emulator import Emulator, TensorMap, bf16_to_f32, run_program
from test_tensor_core_ptx import random_bf16
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, bf16
from xdsl.ir import Block, Operation, Region

from picograd.dialects import kernel, pg, ptx
from picograd.driver.gpu_compile import CudaProgram, compile_for_cuda
from picograd.driver.pipeline import passes_until, run_passes
from picograd.errors import CompileError
from picograd.passes import decompose_attention
from picograd.passes.kinds import attention_wgmma as aw
from picograd.passes.kinds import matmul_wgmma as wg
from picograd.runtime import cuda
from picograd.target import ptxas
from picograd.target.ptx_printer import print_ptx

SMALL = aw.FlashWgmmaSchedule(consumers=1, block_n=32, stages=2)
"""Test-only: 64 query rows a block, 32-key tiles (T = 128 is 4 tiles over 2 stages)."""


def module_of(p: aw.Problem, s: aw.FlashWgmmaSchedule | None = None) -> tuple[ptx.ModuleOp, ptx.FuncOp]:
    module = ptx.ModuleOp(target="sm_90a")
    module.add_op(wg.dynamic_shared())
    func = aw.build_kernel(p, "attn", s)
    module.add_op(func)
    module.verify()
    return module, func


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal: bool):
    s = scale * np.einsum("bid,bjd->bij", q, k)
    if causal:
        i, j = np.indices(s.shape[1:])
        s = np.where(j <= i, s, -np.inf)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    l_ = e.sum(-1, keepdims=True)
    return (e / l_) @ v, (m + np.log(l_))[..., 0], e / l_


def run(p: aw.Problem, s: aw.FlashWgmmaSchedule, rng: np.random.Generator) -> None:
    module, func = module_of(p, s)
    q_bits, q = random_bf16(rng, (p.batch, p.length, p.d))
    k_bits, k = random_bf16(rng, (p.batch, p.keys, p.d))
    v_bits, v = random_bf16(rng, (p.batch, p.keys, p.d))
    emu = Emulator(module)
    maps, pointers = [], []
    for array, spec in zip((q_bits, k_bits, v_bits), wg.tensor_maps(func).values(), strict=True):
        addr = emu.heap.alloc(array.nbytes)
        emu.heap.put(addr, array)
        pointers.append(addr)
        maps.append(emu.tensor_map(TensorMap(addr, np.dtype(np.uint16), spec.shape, spec.strides, spec.box, 128)))
    out = emu.heap.alloc(p.batch * p.length * p.d * 2, 0xFF)
    lse = emu.heap.alloc(p.batch * p.length * 4, 0xFF)
    emu.launch("attn", aw.grid(s, p), (s.threads,), [*maps, *pointers, out, lse], shmem=s.shared_bytes(p.d))
    o = bf16_to_f32(emu.heap.get(out, (p.batch, p.length, p.d), np.dtype(np.uint16))).astype(np.float64)
    got_lse = emu.heap.get(lse, (p.batch, p.length), np.dtype(np.float32)).astype(np.float64)
    ref, ref_lse, probs = reference(q, k, v, p.scale, p.causal)
    bound = 2.0**-8 * (probs @ np.abs(v)) + 2.0**-8 * np.abs(ref) + 1e-6
    err = np.abs(o - ref)
    assert np.all(err <= bound), f"out: max error {err.max()}, at {np.unravel_index(np.argmax(err - bound), err.shape)}"
    np.testing.assert_allclose(got_lse, ref_lse, rtol=1e-5, atol=1e-5)


CASES = {
    # the GPU's schedule: one block of 128 rows, one 128-key tile
    "d64_T128": (aw.Problem(1, 128, 128, 64, 0.125), None),
    # the test schedule: 4 key tiles over 2 stages, causal (tiles skipped above the diagonal, the diagonal masked)
    "d64_T128_causal_small": (aw.Problem(1, 128, 128, 64, 0.125, causal=True), SMALL),
    # ragged: 72 queries (rows past L not stored), 80 keys (the last tile masked past S)
    "d64_ragged_small": (aw.Problem(1, 72, 80, 64, 0.2), SMALL),
    # head dim 128: Q and K tiles of two 64-wide boxes (the k16 steps cross into the second), V read as two atoms
    "d128_small": (aw.Problem(1, 64, 64, 128, 128**-0.5), SMALL),
}


@pytest.mark.parametrize("case", list(CASES))
def test_flash_wgmma_forward_on_the_emulator(case: str, rng: np.random.Generator) -> None:
    p, s = CASES[case]
    run(p, s or aw.schedule_for(p.d), rng)


@pytest.mark.parametrize("d", aw.HEAD_DIMS)
def test_flash_wgmma_assembles_with_hgmma_tma_and_no_local_memory(d: int) -> None:
    module, _ = module_of(aw.Problem(16, 4096, 4096, d, d**-0.5, causal=True))
    result = ptxas.assemble(print_ptx(module), "sm_90a", strict=True)
    info = result.kernels["attn"]
    assert info.spill_stores == 0 and info.spill_loads == 0 and info.stack_frame == 0
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    sass = ptxas.dump_sass(result.cubin)
    assert "HGMMA.64x128x16.F32.BF16" in sass  # S = Q K^T, both from shared memory
    assert f"HGMMA.64x{d}x16.F32.BF16 R" in sass  # O += P V, P from registers
    assert "UTMALDG" in sass and "USETMAXREG" in sass
    assert not any(op in sass for op in ("LDL", "STL")), "local-memory traffic in the flash-wgmma kernel"


def test_flash_wgmma_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="head dim 96"):
        aw.build_kernel(aw.Problem(1, 64, 64, 96, 0.1), "attn")
    with pytest.raises(ValueError, match="q, k, v of f32"):
        aw.build_kernel(aw.Problem(1, 64, 64, 64, 0.1, dtype="f32"), "attn")


# ---------------------------------------------------------------------------------------------------------------
# Through the pipeline: a bf16 attention op forced to flash-wgmma (compile_for_cuda(attention_schedule=...)),
# compiled for sm_90a, run by the launch plan on the emulator.


def pg_attention(batch: int, heads: int, length: int, d: int, causal: bool, lse: bool) -> ModuleOp:
    """``f(q, k, v) -> out[, lse]``: picograd's attention op on bf16 (batch, heads, T, d)."""
    t = TensorType(bf16, [batch, heads, length, d])
    block = Block(arg_types=[t] * 3)
    q, k, v = block.args
    ops: list[Operation] = [pg.ScaledDotProductAttentionOp(q, k, v, None, None, d**-0.5, causal)]
    if lse:
        ops.append(pg.AttentionLseOp(q, k, None, d**-0.5, causal))
    for op in ops:
        block.add_op(op)
    results = [op.results[0] for op in ops]
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("attention", FunctionType.from_lists([t] * 3, [r.type for r in results]), Region(block))
    return ModuleOp([fn])


@pytest.fixture
def fused_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep bf16 attention whole (as the fused kernels' hooks in pg-decompose-attention will)."""
    monkeypatch.setattr(decompose_attention, "fused_forward", lambda op: True)


def compile_flash_wgmma(module: ModuleOp, arch: str = "sm_90a") -> CudaProgram:
    return compile_for_cuda(module, arch=arch, attention_schedule=aw.STRATEGY)


@pytest.mark.parametrize("lse", [True, False], ids=["with_lse", "inference"])
def test_compiled_flash_wgmma_runs_on_the_emulator(fused_bf16: None, lse: bool, rng: np.random.Generator) -> None:
    """With lse (the training forward) on the emulator; without (inference: no lse buffer) assembled only."""
    b, h, length, d = 1, 1, 64, 64
    program = compile_flash_wgmma(pg_attention(b, h, length, d, True, lse))
    launches = [s for s in program.steps if isinstance(s, cuda.Launch)]
    (launch,) = [s for s in launches if isinstance(s.args[0], cuda.TensorMap)]
    assert launch.shmem == aw.schedule_for(d).shared_bytes(d) and launch.block == (384, 1, 1)
    program.assemble(strict=True)
    if not lse:
        return
    bits = [random_bf16(rng, (b, h, length, d)) for _ in range(3)]
    outs = run_program(program, [x.view(ml_dtypes.bfloat16) for x, _ in bits])
    q, k, v = (x.reshape(b * h, length, d) for _, x in bits)
    ref, ref_lse, probs = reference(q, k, v, d**-0.5, True)
    got = outs[0].astype(np.float64).reshape(b * h, length, d)
    assert np.all(np.abs(got - ref) <= 2.0**-8 * (probs @ np.abs(v)) + 2.0**-8 * np.abs(ref) + 1e-6)
    np.testing.assert_allclose(outs[1].astype(np.float64).reshape(b * h, length), ref_lse, rtol=2**-7)


def test_flash_wgmma_is_an_override_with_a_fallback(fused_bf16: None) -> None:
    """auto keeps the attention kind's schedule on sm_90 and takes flash-wgmma on sm_90a; the override (and auto)
    takes bf16 forwards only, and needs sm_90a."""

    def strategies(schedule: str, module: ModuleOp, arch: str = "sm_90") -> list[str]:
        work = module.clone()
        run_passes(work, passes_until("kernels", attention_schedule=schedule, arch=arch))
        return [
            k.schedule.strategy.data
            for k in work.walk()
            if isinstance(k, kernel.FusedOp) and k.kind.data == "attention"
        ]

    module = pg_attention(1, 2, 64, 64, False, True)
    assert aw.STRATEGY not in strategies("auto", module)
    assert strategies(aw.STRATEGY, module) == [aw.STRATEGY]
    assert strategies("auto", module, arch="sm_90a") == [aw.STRATEGY]  # auto on Hopper: measured faster
    assert aw.STRATEGY not in strategies("auto", pg_attention(1, 2, 64, 32, False, True), arch="sm_90a")
    assert aw.STRATEGY not in strategies(aw.STRATEGY, pg_attention(1, 2, 64, 32, False, True))  # head dim 32
    with pytest.raises(CompileError, match=r"attention schedule 'flash-wgmma'.* needs target sm_90a"):
        compile_flash_wgmma(module, arch="sm_90")
    with pytest.raises(ValueError, match="unknown attention schedule 'flash'"):
        passes_until("ptx", attention_schedule="flash")
