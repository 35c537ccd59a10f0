"""The ``wgmma``, ``wgmma-ws`` and ``wgmma-pp`` matmul kernels (``picograd/passes/kinds/matmul_wgmma.py``).

Each kernel is assembled with ``ptxas -arch=sm_90a --warn-on-spills -Werror`` at 4096^3 (its SASS must hold
``HGMMA`` and no local memory, and the warp-specialised ones ``USETMAXREG``), and run on the PTX emulator on small
shapes with a test-only tile (one consumer warpgroup, 64 columns, 2 stages, so that the stage ring wraps; the
ping-pong one two consumers of 64x64 tiles over 3 stages) against numpy float64; the emulator also checks every
mbarrier parity wait against the phase the thread means. Inputs are bf16; accumulation is f32. Tolerance
(``test_tensor_core_ptx.assert_close``): ``|C - C64| <= K * 2**-23 * (|A| @ |B|)``; a bf16 output adds half an
ulp of bf16, ``2**-8 |C64|``.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from _matmul import MM, loops_matmul, parse_loops
from _ptx_emulator import Emulator, TensorMap, bf16_to_f32, run_program
from test_loops import build, t
from test_mma_sync import import_bench
from test_tensor_core_ptx import assert_close, random_bf16
from xdsl.dialects.builtin import ModuleOp, bf16

from picograd.dialects import pg, ptx
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.errors import CompileError
from picograd.passes.kinds import matmul_wgmma as wg
from picograd.runtime import cuda
from picograd.target import ptxas
from picograd.target.ptx_printer import print_ptx

#: Test-only tiles: the smallest each schedule allows (a warpgroup is 128 threads; the emulator runs ~1e5
#: instructions a second).
TEST_SCHEDULES = {
    "wgmma": wg.WgmmaSchedule("wgmma", consumers=1, bn=64, stages=2),
    "wgmma-ws": wg.WgmmaSchedule("wgmma-ws", consumers=1, bn=64, stages=2, specialised=True),
    "wgmma-pp": wg.WgmmaSchedule("wgmma-pp", consumers=2, bn=64, stages=3, specialised=True, pingpong=True),
    "wgmma-pp-128": wg.WgmmaSchedule("wgmma-pp-128", consumers=2, bn=64, stages=3, specialised=True, pingpong=True,
                                     atoms=2),
}  # fmt: skip


def module_of(s: wg.WgmmaSchedule, p: wg.Problem) -> tuple[ptx.ModuleOp, ptx.FuncOp]:
    module = ptx.ModuleOp(target="sm_90a")
    module.add_op(wg.dynamic_shared())
    func = wg.build_kernel(s, p, "mm")
    module.add_op(func)
    module.verify()
    return module, func


def run(s: wg.WgmmaSchedule, p: wg.Problem, rng: np.random.Generator) -> None:
    module, func = module_of(s, p)
    ptxas.assemble(print_ptx(module), "sm_90a", strict=True)
    if p.dtype == "tf32":  # f32 in memory; the tensor cores read the top 19 bits (the emulator truncates)
        a_bits, a = random_tf32(rng, (p.batch, p.m, p.k))
        b_bits, bt = random_tf32(rng, (p.batch, p.n, p.k))
    else:
        a_bits, a = random_bf16(rng, (p.batch, p.m, p.k))
        b_bits, bt = random_bf16(rng, (p.batch, p.n, p.k))
    # an M/N-major operand is stored transposed: At (k, m), B (k, n)
    pairs = zip((a_bits, b_bits), p.majors, strict=True)
    stored = [x.swapaxes(1, 2).copy() if major == "mn" else x for x, major in pairs]
    emu = Emulator(module)
    maps, pointers = [], []
    for array, spec in zip(stored, wg.tensor_maps(func).values(), strict=True):
        addr = emu.heap.alloc(array.nbytes)
        emu.heap.put(addr, array)
        pointers.append(addr)
        tmap = TensorMap(addr, array.dtype, spec.shape, spec.strides, spec.box, spec.swizzle)
        maps.append(emu.tensor_map(tmap))
    esize = 4 if p.out_dtype == "f32" else 2
    pc = emu.heap.alloc(p.batch * p.m * p.n * esize, 0xFF)
    # a persistent grid of 3 blocks: each takes several tiles
    emu.launch("mm", wg.grid(s, p, sms=3), (s.threads,), [*maps, *pointers, pc], shmem=s.shared_bytes)
    shape = (p.batch, p.m, p.n)
    if p.out_dtype == "f32":
        c = emu.heap.get(pc, shape, np.dtype(np.float32)).astype(np.float64)
    else:
        c = bf16_to_f32(emu.heap.get(pc, shape, np.dtype(np.uint16))).astype(np.float64)
    for i in range(p.batch):
        if p.out_dtype == "f32":
            assert_close(c[i], a[i], bt[i].T)
        else:
            ref = a[i] @ bt[i].T
            bound = 2.0**-8 * np.abs(ref) + p.k * 2.0**-23 * (np.abs(a[i]) @ np.abs(bt[i]).T)
            err = np.abs(c[i] - ref)
            assert np.all(err <= bound), f"max error {err.max()}"


def random_tf32(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Random f32 numbers (bits as uint32) and, as float64, the tf32 values a wgmma reads of them (the low 13
    mantissa bits dropped): the kernel must compute exactly with those, to f32 accumulation."""
    bits = rng.standard_normal(shape).astype(np.float32).view(np.uint32)
    return bits, (bits & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)


#: 128x128x64 (2x2 tiles, one K tile), and an edge: ragged M, N and K (zero-filled by TMA), 3 K tiles over 2
#: stages, a batch of 2, bf16 output (odd N: scalar stores); then M/N-major operands (imm-trans 1): the backward
#: pass's dX = dY @ W (B stored [k, n]) on a ragged edge, and dW = dY.T @ X (both stored [k, .]).
CASES = {
    "128x128x64": wg.Problem(128, 128, 64),
    "edge": wg.Problem(70, 37, 136, batch=2, out_dtype="bf16"),
    "b_mn_edge": wg.Problem(72, 96, 80, majors=("k", "mn")),
    "ab_mn": wg.Problem(64, 64, 128, majors=("mn", "mn")),
    "tf32": wg.Problem(128, 128, 64, dtype="tf32"),
    "tf32_edge": wg.Problem(70, 37, 136, batch=2, dtype="tf32", out_dtype="bf16"),
}
"""... and tf32 (f32 operands, K-major, K tiles of 32): 2 K tiles; and the ragged edge (K = 136: 5 K tiles, the last
of 8) with a batch and a bf16 output."""


@pytest.mark.parametrize("problem", CASES.values(), ids=list(CASES))
@pytest.mark.parametrize("name", list(TEST_SCHEDULES))
def test_wgmma_kernel_on_the_emulator(name: str, problem: wg.Problem, rng: np.random.Generator) -> None:
    run(TEST_SCHEDULES[name], problem, rng)


@pytest.mark.parametrize("majors", [("k", "k"), ("mn", "mn")], ids=["k_major", "mn_major"])
@pytest.mark.parametrize("name", list(wg.SCHEDULES))
def test_wgmma_kernel_assembles_at_4096_with_hgmma_and_no_local_memory(name: str, majors: tuple[str, str]) -> None:
    s = wg.SCHEDULES[name]
    module, _ = module_of(s, wg.Problem(4096, 4096, 4096, out_dtype="bf16", majors=majors))
    result = ptxas.assemble(print_ptx(module), "sm_90a", strict=True)
    info = result.kernels["mm"]
    assert info.spill_stores == 0 and info.stack_frame == 0
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    sass = ptxas.dump_sass(result.cubin)
    assert f"HGMMA.64x{s.bn}x16.F32.BF16" in sass
    assert "UTMALDG" in sass and "SYNCS" in sass
    assert not any(op in sass for op in ("LDL", "STL")), "local-memory traffic in the wgmma kernel"
    assert ("USETMAXREG" in sass) == s.specialised  # setmaxnreg honoured (not dropped with warning C7508)
    gemm_sass = import_bench("gemm_sass")  # its main loop is the K loop (HGMMA), not the mbarrier spin inside it
    loop = gemm_sass.count_opcodes(gemm_sass.main_loop(sass))
    assert loop.get("HGMMA", 0) >= 4 and loop.get("SYNCS", 0) >= 1, loop


def test_wgmma_ws_192_tiles_at_their_real_size(rng: np.random.Generator) -> None:
    """``wgmma-ws-192`` itself (128x192 tiles, 5 stages, m64n192k16): 2 x 3 tiles over the 3 blocks of the
    emulated persistent grid, N = 392 ragged in the last tile (8 of its 192 columns), K = 136 (3 K tiles), bf16 out;
    then B stored [k, n] (the backward pass's dX = dY @ W), and tf32 (m64n192k8)."""
    run(wg.SCHEDULES["wgmma-ws-192"], wg.Problem(200, 392, 136, out_dtype="bf16"), rng)
    run(wg.SCHEDULES["wgmma-ws-192"], wg.Problem(128, 384, 64, majors=("k", "mn")), rng)
    run(wg.SCHEDULES["wgmma-ws-192"], wg.Problem(128, 200, 64, dtype="tf32"), rng)


def test_quad_stores_need_whole_runs_of_four_groups(rng: np.random.Generator) -> None:
    """A tile 40 columns wide (5 groups of 8: no whole run of 4) keeps the pair stores for its bf16 C, whatever
    ``quad_stores`` says; the values are right either way."""
    s = wg.WgmmaSchedule("wgmma-ws", consumers=1, bn=40, stages=2, specialised=True)
    p = wg.Problem(64, 80, 64, out_dtype="bf16")
    module, _ = module_of(s, p)
    assert "st.global.v4" not in print_ptx(module)
    run(s, p, rng)


#: The ping-pong kernels over many tiles: 12 tiles on 3 blocks, two for each consumer warpgroup of a block, with K
#: loops shorter (2 K tiles) and longer (4, 5) than the ring of 3 stages, and as long (3); a bf16 output, M/N-major
#: operands, and (``wgmma-pp-128``: two 64-row slabs a warpgroup) a ragged edge.
PINGPONG_CASES = {
    "short_k": ("wgmma-pp", wg.Problem(256, 192, 128)),
    "long_k": ("wgmma-pp", wg.Problem(256, 192, 320, out_dtype="bf16")),
    "k_is_stages": ("wgmma-pp", wg.Problem(256, 192, 192, majors=("k", "mn"))),
    "slabs_short_k": ("wgmma-pp-128", wg.Problem(512, 192, 128, majors=("mn", "k"))),
    "slabs_ragged": ("wgmma-pp-128", wg.Problem(500, 180, 200, out_dtype="bf16")),
}


@pytest.mark.parametrize(("name", "problem"), PINGPONG_CASES.values(), ids=list(PINGPONG_CASES))
def test_pingpong_warpgroups_take_turns_over_many_tiles(name: str, problem: wg.Problem, rng: np.random.Generator
                                                        ) -> None:  # fmt: skip
    """Each consumer warpgroup's (stage, phase) skips the other's K tiles; its main loop waits for its turn, so
    that every full-mbarrier wait means the current or the previous phase (the emulator checks each wait against
    what the thread has seen complete: without the turns, the second warpgroup's first wait names a phase two
    behind the mbarrier's, and raises)."""
    run(TEST_SCHEDULES[name], problem, rng)


@pytest.mark.parametrize("name", list(wg.SCHEDULES))
def test_tf32_wgmma_kernel_assembles_at_4096_with_tf32_hgmma(name: str) -> None:
    """The tf32 kernels: ``m64nNk8.f32.tf32.tf32`` (no imm-trans operands), eight a K tile of 32, no local memory."""
    s = wg.SCHEDULES[name]
    module, _ = module_of(s, wg.Problem(4096, 4096, 4096, dtype="tf32"))
    text = print_ptx(module)
    assert f"wgmma.mma_async.sync.aligned.m64n{s.bn}k8.f32.tf32.tf32" in text
    result = ptxas.assemble(text, "sm_90a", strict=True)
    info = result.kernels["mm"]
    assert info.spill_stores == 0 and info.stack_frame == 0
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    sass = ptxas.dump_sass(result.cubin)
    assert f"HGMMA.64x{s.bn}x8.F32.TF32" in sass and not any(op in sass for op in ("LDL", "STL"))


def test_wgmma_kernel_refuses_what_it_cannot_compute() -> None:
    s = wg.SCHEDULES["wgmma"]
    with pytest.raises(ValueError, match="wgmma schedule cannot compute a 64x64x60 matmul: K = 60"):
        wg.build_kernel(s, wg.Problem(64, 64, 60), "mm")
    with pytest.raises(ValueError, match="inputs of f32"):
        wg.build_kernel(s, wg.Problem(64, 64, 64, dtype="f32"), "mm")
    with pytest.raises(ValueError, match="a tf32 operand that is not K-major"):
        wg.build_kernel(s, wg.Problem(64, 64, 64, dtype="tf32", majors=("k", "mn")), "mm")
    with pytest.raises(ValueError, match="K = 30 .* a multiple of 4"):
        wg.build_kernel(s, wg.Problem(64, 64, 30, dtype="tf32"), "mm")
    with pytest.raises(ValueError, match="bn=12"):
        wg.build_kernel(wg.WgmmaSchedule("wgmma", 1, 12, 2), wg.Problem(64, 64, 64), "mm")
    with pytest.raises(ValueError, match="ping-pong takes a producer warpgroup"):
        wg.WgmmaSchedule("pp", 1, 64, 3, specialised=True, pingpong=True).check()
    with pytest.raises(ValueError, match="2 slabs of 64 rows a consumer"):
        wg.WgmmaSchedule("pp", 2, 256, 3, specialised=True, pingpong=True, atoms=2).check()


# ---------------------------------------------------------------------------------------------------------------
# Through the pipeline: a loop-stage bf16 matmul (as pg-to-loops will write it once bf16 flows through
# pg-bufferize) forced to each schedule, compiled for sm_90a, run by the launch plan on the emulator.


def loops_bf16(m: int, n: int, k: int, b_major: str = "k") -> str:
    """A loop-stage matmul C (m x n, f32) = A (m x k, bf16) @ B, B stored as Bt (n x k, ``b_major`` "k") or as B
    (k x n, "mn"), bf16 widened with arith.extf."""
    b_type = f"memref<{n}x{k}xbf16>" if b_major == "k" else f"memref<{k}x{n}xbf16>"
    b_index = "%j, %kk" if b_major == "k" else "%kk, %j"
    body = [
        f"%x0 = memref.load %a[%i, %kk] : memref<{m}x{k}xbf16>",
        f"%y0 = memref.load %b[{b_index}] : {b_type}",
        "%x = arith.extf %x0 : bf16 to f32",
        "%y = arith.extf %y0 : bf16 to f32",
        "%p = arith.mulf %x, %y : f32",
        "%s = arith.addf %acc, %p : f32",
    ]
    return loops_matmul(f"%a: memref<{m}x{k}xbf16>, %b: {b_type}", body, m, n, k)


def pg_matmul(m: int, n: int, k: int, b_major: str) -> ModuleOp:
    """The ``pg``-stage bf16 matmul (bf16 out) ``a @ bt.T`` (B stored as Bt[n, k], ``b_major`` "k": the form of
    ``nn.Linear``) or ``a @ b`` (B[k, n], "mn")."""

    def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
        return [e(pg.MatmulOp(a, e(pg.PermuteOp(b, [1, 0])) if b_major == "k" else b))]

    return build([t(m, k, el=bf16), t(*((n, k) if b_major == "k" else (k, n)), el=bf16)], body)


@pytest.mark.parametrize(("name", "b_major"), [("wgmma", "k"), ("wgmma-ws", "k"), ("wgmma", "mn"), ("wgmma-pp", "k")])
def test_compiled_program_runs_on_the_emulator(name: str, b_major: str, rng: np.random.Generator) -> None:
    """From the pg stage (bf16 through pg-bufferize and pg-to-loops) to the launch plan, run on the emulator."""
    program = compile_for_cuda(pg_matmul(50, 72, 64, b_major), arch="sm_90a", matmul_schedule=name)
    (launch,) = program.steps
    assert isinstance(launch, cuda.Launch) and launch.shmem == wg.SCHEDULES[name].shared_bytes
    assert [type(a) for a in launch.args] == [cuda.TensorMap] * 2 + [cuda.Input, cuda.Input, cuda.Output]
    program.assemble(strict=True)
    a_bits, a = random_bf16(rng, (50, 64))
    b_bits, bt = random_bf16(rng, (72, 64))
    b_in = b_bits if b_major == "k" else b_bits.T.copy()
    (c,) = run_program(program, [a_bits.view(ml_dtypes.bfloat16), b_in.view(ml_dtypes.bfloat16)])
    assert c.dtype == np.dtype(ml_dtypes.bfloat16)
    ref = a @ bt.T  # one rounding to bf16 of the f32 sum: half an ulp of bf16 beyond the f32 tolerance
    bound = 2.0**-8 * np.abs(ref) + 64 * 2.0**-23 * (np.abs(a) @ np.abs(bt).T)
    assert np.all(np.abs(c.astype(np.float64) - ref) <= bound)


def pg_matmul_tf32(m: int, n: int, k: int, b_major: str) -> ModuleOp:
    """The ``pg``-stage f32 matmul recorded under ``allow_tf32``: ``a @ bt.T`` (``b_major`` "k") or ``a @ b``."""

    def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
        return [e(pg.MatmulOp(a, e(pg.PermuteOp(b, [1, 0])) if b_major == "k" else b, tf32=True))]

    return build([t(m, k), t(*((n, k) if b_major == "k" else (k, n)))], body)


@pytest.mark.parametrize("option", ["wgmma-ws", "auto"])
def test_tf32_matmul_compiles_to_the_tf32_wgmma_kernel_and_runs(option: str, rng: np.random.Generator) -> None:
    """A tf32 ``x @ W.T`` (both operands K-major) on sm_90a, forced or ``auto``: one wgmma-ws launch (``auto``:
    wgmma-ws-192, whose tiles pad N = 136 less) with f32 tensor maps, exact on the tf32 values (to f32
    accumulation) on the emulator."""
    m, n, k = 128, 136, 72  # auto's tensor-core threshold (2**20 multiply-adds) and a ragged last K tile of 8
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, "k"), arch="sm_90a", matmul_schedule=option)
    (launch,) = program.steps
    kernel = wg.SCHEDULES["wgmma-ws-192" if option == "auto" else option]
    assert isinstance(launch, cuda.Launch) and launch.shmem == kernel.shared_bytes
    assert launch.args[1].box == (32, kernel.bn)  # type: ignore[union-attr]
    maps = launch.args[:2]
    assert all(isinstance(x, cuda.TensorMap) and x.dtype == "f32" and x.box[0] == 32 for x in maps), maps
    program.assemble(strict=True)
    a_bits, a = random_tf32(rng, (m, k))
    b_bits, bt = random_tf32(rng, (n, k))
    (c,) = run_program(program, [a_bits.view(np.float32), b_bits.view(np.float32)])
    assert_close(c, a, bt.T)
    exact = a_bits.view(np.float32).astype(np.float64) @ b_bits.view(np.float32).astype(np.float64).T
    assert np.abs(c - exact).max() > 0  # the tf32 values, not the f32 ones, were multiplied


@pytest.mark.parametrize("option", ["wgmma-ws", "auto"])
def test_tf32_matmul_with_b_stored_k_by_n_runs_on_wgmma_through_a_transposed_copy(option: str, rng: np.random.Generator
                                                                                  ) -> None:  # fmt: skip
    """``a @ b`` with B stored [k, n]: wgmma cannot read a 32-bit operand N-major, so ``pg-wgmma-layout`` has a
    movement kernel write Bt first; the wgmma-ws kernel then reads it K-major. Exact on the tf32 values."""
    m, n, k = 128, 136, 72
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, "mn"), arch="sm_90a", matmul_schedule=option)
    copy, gemm = program.steps
    assert isinstance(copy, cuda.Launch) and isinstance(gemm, cuda.Launch)
    assert not any(isinstance(x, cuda.TensorMap) for x in copy.args)
    assert [type(x) for x in gemm.args[:2]] == [cuda.TensorMap] * 2 and gemm.args[1].shape == (k, n)
    program.assemble(strict=True)
    a_bits, a = random_tf32(rng, (m, k))
    b_bits, bt = random_tf32(rng, (n, k))
    (c,) = run_program(program, [a_bits.view(np.float32), b_bits.T.copy().view(np.float32)])
    assert_close(c, a, bt.T)


def test_tf32_split_k_keeps_tf32_on_the_partial_matmuls(rng: np.random.Generator) -> None:
    """A deep tf32 ``a @ b`` (2 output tiles, K = 1024): ``auto`` splits K in two (``pg-split-k``), each partial
    matmul still a tf32 wgmma-ws-192 (N = 64 pads least to 192) reading the transposed copy of B, then the sum.
    Exact on the tf32 values."""
    m, n, k = 128, 64, 1024
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, "mn"), arch="sm_90a", matmul_schedule="auto")
    steps = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert len(steps) == 3 and steps[1].grid[0] == 2  # Bt's copy, the partial matmuls (2 chunks), the sum
    assert program.ptx.count("wgmma.mma_async.sync.aligned.m64n192k8.f32.tf32.tf32") == 4
    a_bits, a = random_tf32(rng, (m, k))
    b_bits, bt = random_tf32(rng, (n, k))
    (c,) = run_program(program, [a_bits.view(np.float32), b_bits.T.copy().view(np.float32)])
    assert_close(c, a, bt.T)


def test_tf32_matmul_with_a_stored_k_by_m_keeps_mma_sync_or_is_one_clear_error() -> None:
    """``a.T @ bt.T`` (A stored [k, m], as the weight gradient's ``dY.T @ X``): ``auto`` falls back to the tf32
    ``mma-sync`` rung at the loop stage (not to f32 SIMT); forcing ``wgmma-ws`` is an error naming why."""

    def module() -> ModuleOp:
        def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
            return [e(pg.MatmulOp(e(pg.PermuteOp(a, [1, 0])), e(pg.PermuteOp(b, [1, 0])), tf32=True))]

        return build([t(64, 128), t(128, 64)], body)

    program = compile_for_cuda(module(), arch="sm_90a", matmul_schedule="auto")
    (launch,) = program.steps
    assert not any(isinstance(x, cuda.TensorMap) for x in launch.args)
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in program.ptx
    with pytest.raises(CompileError, match=r"wgmma-ws cannot compute the matmul.*a tf32 operand that is not K-major"):
        compile_for_cuda(module(), arch="sm_90a", matmul_schedule="wgmma-ws")


def test_wgmma_off_sm_90a_or_on_f32_is_one_clear_error() -> None:
    with pytest.raises(CompileError, match=r"matmul schedule 'wgmma' \(bf16\).* needs target sm_90a.*sm_90"):
        compile_for_cuda(parse_loops(loops_bf16(64, 64, 64)), arch="sm_90", matmul_schedule="wgmma")
    f32 = MM(64, 64, 64).module()
    with pytest.raises(CompileError, match=r"schedule 'wgmma-ws' does not support fp32 .*bf16/fp16/tf32 .*sm_90a"):
        compile_for_cuda(f32, arch="sm_90a", matmul_schedule="wgmma-ws")
    f64 = MM(64, 64, 64, dtype="f64").module()
    with pytest.raises(CompileError, match=r"matmul schedule 'wgmma' does not support fp64 .*bf16/fp16/tf32 .*sm_90a"):
        compile_for_cuda(f64, arch="sm_90a", matmul_schedule="wgmma")


# ---------------------------------------------------------------------------------------------------------------
# The runtime's tensor maps without a GPU: what reaches cuTensorMapEncodeTiled, and the launch plan's checks


class FakeDriver:
    """The parts of ``cuda.bindings.driver`` that ``encode_tensor_map`` uses, recording the call."""

    class CUresult:
        CUDA_SUCCESS = 0

    class cuuint64_t(int):  # noqa: N801 - the driver's names; the real driver refuses plain ints in lists
        pass

    class cuuint32_t(int):  # noqa: N801
        pass

    class CUtensorMapDataType:
        CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = "BF16"
        CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = "F16"
        CU_TENSOR_MAP_DATA_TYPE_FLOAT32 = "F32"

    class CUtensorMapInterleave:
        CU_TENSOR_MAP_INTERLEAVE_NONE = "INTERLEAVE_NONE"

    class CUtensorMapSwizzle:
        CU_TENSOR_MAP_SWIZZLE_NONE = "SW0"
        CU_TENSOR_MAP_SWIZZLE_32B = "SW32"
        CU_TENSOR_MAP_SWIZZLE_64B = "SW64"
        CU_TENSOR_MAP_SWIZZLE_128B = "SW128"

    class CUtensorMapL2promotion:
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B = "L2_256B"

    class CUtensorMapFloatOOBfill:
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = "OOB_ZERO"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def cuTensorMapEncodeTiled(self, *args: object) -> tuple[int, str]:  # noqa: N802 - the driver's name
        for index, kind in [(3, self.cuuint64_t), (4, self.cuuint64_t), (5, self.cuuint32_t), (6, self.cuuint32_t)]:
            assert all(type(x) is kind for x in args[index]), f"argument {index}: {args[index]} not {kind.__name__}"
        self.calls.append(args)
        return 0, "tensor map"


def test_tensor_maps_are_encoded_as_the_launch_plan_says() -> None:
    program = compile_for_cuda(parse_loops(loops_bf16(50, 72, 64)), arch="sm_90a", matmul_schedule="wgmma-ws")
    (launch,) = program.steps
    driver = FakeDriver()
    tmap_a, tmap_b = launch.args[:2]
    assert cuda.encode_tensor_map(driver, 0x7000_0000, tmap_b) == "tensor map"
    (call,) = driver.calls
    # dtype, rank, address + offset, dims and box innermost first, byte strides of the outer dims, element strides
    assert call == ("BF16", 2, 0x7000_0000, [64, 72], [128], [64, 256], [1, 1], "INTERLEAVE_NONE", "SW128",
                    "L2_256B", "OOB_ZERO")  # fmt: skip
    shifted = cuda.TensorMap(cuda.Temp(0), "bf16", (64, 50), (128,), (64, 128), 128, offset=4096)
    cuda.encode_tensor_map(driver, 0x7000_0000, shifted)
    assert driver.calls[-1][2] == 0x7000_1000
    for bad, message in [
        (cuda.TensorMap(cuda.Input(0), "bf16", (60, 50), (120,), (64, 128)), "multiples of 16"),
        (cuda.TensorMap(cuda.Input(0), "bf16", (64, 50), (128,), (128, 128)), "box row of 256 bytes"),
        (cuda.TensorMap(cuda.Input(0), "f64", (64, 50), (128,), (64, 128)), "tensor map of f64"),
        (cuda.TensorMap(cuda.Input(0), "bf16", (64, 50), (128,), (64, 512)), "box dims 1..256"),
    ]:
        with pytest.raises(ValueError, match=message):
            bad.check()
    with pytest.raises(ValueError, match="reaches byte 8192 of a 6400-byte buffer"):
        cuda.TensorMap(cuda.Input(0), "bf16", (64, 64), (128,), (64, 64)).check(6400)


def test_executable_checks_tensor_map_arguments_without_a_gpu() -> None:
    program = compile_for_cuda(parse_loops(loops_bf16(50, 72, 64)), arch="sm_90a", matmul_schedule="wgmma")
    (launch,) = program.steps
    spec = program.inputs[0]
    bad_steps = [
        (cuda.Launch(launch.kernel, launch.grid, launch.block, (launch.args[2], *launch.args[1:]), launch.shmem),
         "not a pointer"),
        (cuda.Launch(launch.kernel, launch.grid, launch.block, (*launch.args[:2], launch.args[0], *launch.args[3:]),
                     launch.shmem), "a tensor map goes to parameter 'k0_matmul_param_2'"),
    ]  # fmt: skip
    cuda.Executable(program.ptx, [launch], program.inputs, program.outputs, params=program.params)
    for step, message in bad_steps:
        with pytest.raises((TypeError, ValueError), match=message):
            cuda.Executable(program.ptx, [step], program.inputs, program.outputs, params=program.params)
    assert spec.dtype == np.dtype(ml_dtypes.bfloat16)


# ---------------------------------------------------------------------------------------------------------------
# GPU (``-m gpu``; skipped without one). Written without a GPU at hand (2026-12-05): the first run on an H100/H200
# checks the tensor maps, the descriptors and the pipeline on the hardware.


@pytest.mark.parametrize("shape", [(128, 128, 64), (1000, 1000, 1000), (4096, 4096, 4096)], ids=str)
@pytest.mark.parametrize("name", list(wg.SCHEDULES))
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_wgmma_program_on_gpu(name: str, shape: tuple[int, int, int], rng: np.random.Generator) -> None:
    m, n, k = shape
    program = compile_for_cuda(parse_loops(loops_bf16(m, n, k)), arch="sm_90a", matmul_schedule=name)
    a_bits, a = random_bf16(rng, (m, k))
    b_bits, bt = random_bf16(rng, (n, k))
    inputs = [cuda.DeviceBuffer.from_numpy(x.view(ml_dtypes.bfloat16)) for x in (a_bits, b_bits)]
    (out,) = program.executable()(*inputs)
    assert_close(out.to_numpy(), a, bt.T)


def gpu_result(program: Any, a_bits: np.ndarray, b_bits: np.ndarray, b_major: str, dtype: Any) -> np.ndarray:
    """``program``'s one output on the GPU, as float64, for A and Bt given as bits (viewed as ``dtype``; B passed
    as stored, transposed, when ``b_major`` is "mn")."""
    b_in = b_bits if b_major == "k" else b_bits.T.copy()
    inputs = [cuda.DeviceBuffer.from_numpy(x.view(dtype)) for x in (a_bits, b_in)]
    (out,) = program.executable()(*inputs)
    return out.to_numpy().astype(np.float64)


@pytest.mark.parametrize(("shape", "b_major"), [((16384, 384, 1536), "k"), ((16384, 1536, 384), "mn"),
                                                ((1000, 392, 136), "k")], ids=str)  # fmt: skip
@pytest.mark.parametrize("name", ["auto", "wgmma-ws", "wgmma-ws-192", "wgmma-ws-pairs"])
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_bf16_out_at_the_gpt_shapes_on_gpu(name: str, shape: tuple[int, int, int], b_major: str,
                                           rng: np.random.Generator) -> None:  # fmt: skip
    """A bf16 C from the ``pg`` stage (the quad-transposed 16-byte stores; ``-pairs``: the 4-byte ones) at the GPT's
    fc2 and backward fc shapes and a ragged edge, within one bf16 rounding of the f32 sum of float64's."""
    m, n, k = shape
    program = compile_for_cuda(pg_matmul(m, n, k, b_major), arch="sm_90a", matmul_schedule=name)
    a_bits, a = random_bf16(rng, (m, k))
    b_bits, bt = random_bf16(rng, (n, k))
    c = gpu_result(program, a_bits, b_bits, b_major, ml_dtypes.bfloat16)
    ref = a @ bt.T
    bound = 2.0**-8 * np.abs(ref) + k * 2.0**-23 * (np.abs(a) @ np.abs(bt).T)
    assert np.all(np.abs(c - ref) <= bound), f"max error {np.abs(c - ref).max()}"


@pytest.mark.parametrize("b_major", ["k", "mn"])
@pytest.mark.parametrize("shape", [(128, 136, 72), (1000, 1000, 1000), (4096, 4096, 4096)], ids=str)
@pytest.mark.parametrize("name", ["wgmma", "wgmma-ws", "wgmma-pp"])
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_tf32_wgmma_program_on_gpu(name: str, shape: tuple[int, int, int], b_major: str, rng: np.random.Generator
                                   ) -> None:  # fmt: skip
    """tf32 ``x @ W.T`` (and ``x @ W``, through ``pg-wgmma-layout``'s transposed copy) on the GPU: within f32
    accumulation of the truncated tf32 values (the emulator's model), and within tf32's rounding of the f32 ones."""
    m, n, k = shape
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, b_major), arch="sm_90a", matmul_schedule=name)
    a_bits, a = random_tf32(rng, (m, k))
    b_bits, bt = random_tf32(rng, (n, k))
    c = gpu_result(program, a_bits, b_bits, b_major, np.float32)
    a32, b32 = (x.view(np.float32).astype(np.float64) for x in (a_bits, b_bits))
    ref = a32 @ b32.T
    assert np.linalg.norm(c - ref) / np.linalg.norm(ref) < 2e-3  # tf32: 10 mantissa bits
    assert_close(c, a, bt.T)
