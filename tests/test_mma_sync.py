"""The ``mma-sync`` matmul schedule (issue 14): tensor cores with ldmatrix, mma.sync and a cp.async pipeline.

Offline (CI), on the PTX emulator (``tests/_ptx_emulator.py``) against numpy in float64: bf16 (and f16, tf32)
matmuls of small shapes, square, with odd edges (33x47x40: B's rows are not 16-byte aligned, so B takes the
synchronous path), batched with a broadcast B, and with transposed operands (``ldmatrix.trans`` / K-major tiles),
through ``compile_for_cuda`` on the 64x64 tile ``auto`` uses for small grids (the 128x128 one is checked by ptxas and
on one shape). PTX assembles with ``ptxas -arch=sm_90 --warn-on-spills -Werror``. Also ``auto``'s rule and the
errors of a tensor-core schedule forced on a precision it cannot run, and the ``mma-sync`` variants of
``MMA_SYNC_VARIANTS`` (prefetched fragments, truncated tf32, the 8-row swizzle, 4 stages, K tiles of 64, 8 warps;
those past 48 KiB in dynamic shared memory).

**Tolerance.** Inputs are bf16 (exact in f32), products are exact and the sums are f32 (the emulator rounds once per
mma instruction, the GPU at most once per addition), then the result is rounded to bf16 once:
``|C - C64| <= 2**-8 |C64| + K * 2**-23 (|A| @ |B|)`` elementwise (f16: ``2**-11``). tf32: f32 inputs are rounded to
tf32 in the kernel (``cvt.rn.tf32.f32`` on sm_90, ties to even; ``cvt.rna`` on sm_80, ties away), so C64 is the
float64 product of the inputs rounded that way, and the bound is that of f32 accumulation alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from _matmul import MM, emulate
from _ptx_emulator import run_program, tf32_rn, tf32_rna
from test_loops import build, t
from xdsl.dialects.builtin import BFloat16Type, ModuleOp, f32, f64

import picograd as pgm
from picograd.dialects import kernel, pg
from picograd.driver.gpu_compile import CompileError, CudaProgram, compile_for_cuda
from picograd.driver.pipeline import lower_to
from picograd.passes.kinds.matmul_mma_sync import swizzle
from picograd.passes.kinds.matmul_rungs import (
    AUTO_MIN_TENSOR_FMAS,
    MMA_SYNC_VARIANTS,
    SCHEDULES,
    SMALL_MMA_TILE,
    Schedule,
    choose,
)
from picograd.runtime import cuda

#: the output's half ulp (bf16, f16; tf32 results are f32)
OUT_ULP = {"bf16": 2.0**-8, "f16": 2.0**-11, "tf32": 2.0**-24}


def tf32(x: np.ndarray, rounding=tf32_rn) -> np.ndarray:
    """f32 values rounded to tf32 as ``cvt.rn.tf32.f32`` (sm_90) or, with ``tf32_rna``, ``cvt.rna`` (sm_80) rounds
    them (the emulator's functions)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return np.vectorize(rounding, otypes=[np.uint32])(bits).view(np.float32)


def tf32_truncated(bits: int) -> int:
    """What the tensor cores take of an f32 fed to a tf32 mma as it is: the top 19 bits (``tf32_trunc``)."""
    return bits & 0xFFFFE000


def check(shape: MM, got: np.ndarray, a: np.ndarray, b: np.ndarray, rounding=tf32_rn) -> np.ndarray:
    """``got`` is ``a @ b`` within the module docstring's tolerance (tf32: of the inputs rounded with
    ``rounding``); the tolerance."""
    if shape.dtype == "tf32":
        a, b = tf32(a, rounding), tf32(b, rounding)
    a64, b64 = shape.operands64(a, b)
    want = a64 @ b64
    tol = OUT_ULP[shape.dtype] * np.abs(want) + shape.k * 2.0**-23 * (np.abs(a64) @ np.abs(b64))
    bad = ~(np.abs(got.astype(np.float64) - want) <= tol)  # a NaN is bad too
    assert not bad.any(), f"{bad.sum()} of {bad.size} outside the tolerance; first at {np.argwhere(bad)[0]}"
    return tol


def with_schedule(module: ModuleOp, attr: kernel.ScheduleAttr) -> ModuleOp:
    """``module`` at the kernels stage with every matmul kernel's schedule replaced by ``attr``."""
    lower_to(module, "kernels")
    for op in module.walk():
        if isinstance(op, kernel.FusedOp) and op.kind.data == "matmul":
            op.schedule = attr
    return module


@functools.cache
def small_tile_program(shape: MM, arch: str = "sm_90", variant: str = "mma-sync") -> CudaProgram:
    """``shape`` on ``mma-sync``'s 64x64 tile (4 warps): a quarter of the emulated threads of the 128x128 one;
    ``variant``: with the options of that row of ``MMA_SYNC_VARIANTS``."""
    rung = SMALL_MMA_TILE
    if variant != "mma-sync":  # the variant's options, stages and K tile on 64x64 warp tiles (32x32 a warp)
        rung = dataclasses.replace(MMA_SYNC_VARIANTS[variant], reps=rung.reps)
    if shape.dtype == "tf32":  # as pg-schedule's fit: half the K tile for 4-byte elements
        rung = dataclasses.replace(rung, bk=rung.bk // 2, tf32=True)
    return compile_for_cuda(with_schedule(shape.module(), rung.attr()), arch=arch)


EMULATED = [
    MM(64, 64, 32, dtype="bf16"),
    MM(33, 47, 40, dtype="bf16"),
    MM(40, 48, 72, ta=True, tb=True, dtype="bf16"),
    MM(24, 16, 48, batch=(2,), b_batched=False, dtype="bf16"),
    MM(32, 40, 24, tb=True, dtype="f16"),
    MM(64, 64, 32, batch=(2,), tb=True, dtype="f16"),  # whole tiles, batched, K-major B
    MM(20, 24, 16, dtype="tf32"),
    MM(24, 16, 24, ta=True, tb=True, dtype="tf32"),
]


@pytest.mark.parametrize("shape", EMULATED, ids=str)
def test_mma_sync_on_the_emulator_matches_float64(shape: MM, rng: np.random.Generator) -> None:
    program = small_tile_program(shape)
    assert "mma.sync.aligned" in program.ptx and "cp.async" in program.ptx
    check(shape, *emulate(program, shape, rng))


VARIANT_SHAPES = [
    ("mma-sync-pf", MM(64, 64, 96, dtype="bf16")),  # 3 K tiles over 3 stages: every stage wraps
    ("mma-sync-pf", MM(33, 47, 40, dtype="bf16")),  # edges, B on the synchronous path
    ("mma-sync-pf", MM(40, 48, 72, ta=True, tb=True, dtype="bf16")),
    ("mma-sync-pf", MM(20, 24, 16, dtype="tf32")),  # one K tile, fewer than the stages
    ("mma-sync-row8", MM(24, 16, 24, ta=True, dtype="tf32")),  # A and B read by scalar loads, 8-row swizzle
    ("mma-sync-pf", MM(64, 64, 48, dtype="tf32")),
    ("mma-sync-pf-tr", MM(40, 24, 40, ta=True, dtype="tf32")),
    ("mma-sync-pf-tr", MM(32, 40, 24, tb=True, dtype="f16")),
    ("mma-sync-s4-pf", MM(64, 64, 160, dtype="bf16")),  # 5 K tiles over 4 stages
    ("mma-sync-k64", MM(64, 64, 128, dtype="bf16")),
    ("mma-sync-k64-pf", MM(64, 64, 192, tb=True, dtype="bf16")),  # 4 K steps a tile
    ("mma-sync-k64-pf-tr", MM(40, 64, 72, dtype="tf32")),
    ("mma-sync-256-pf", MM(64, 128, 96, dtype="bf16")),  # 8 warps
]


@pytest.mark.parametrize(("variant", "shape"), VARIANT_SHAPES, ids=lambda x: str(x))
def test_mma_sync_variants_on_the_emulator_match_float64(variant: str, shape: MM, rng) -> None:
    """The ``mma-sync`` variants (fragments prefetched across K steps and tiles, the 8-row swizzle for scalar
    loads, tf32 fed truncated, 4 stages, K tiles of 64, 8 warps; the last three past 48 KiB of shared memory on the
    128x128 tile, here on 64x64): the same results within the same bounds (truncated tf32 inputs for
    ``tf32_trunc``)."""
    program = small_tile_program(shape, variant=variant)
    trunc = MMA_SYNC_VARIANTS[variant].tf32_trunc
    assert ("cvt.rn.tf32.f32" in program.ptx) == (shape.dtype == "tf32" and not trunc)
    check(shape, *emulate(program, shape, rng), rounding=tf32_truncated if trunc else tf32_rn)


def test_variant_attrs_round_trip() -> None:
    for s in [SCHEDULES["mma-sync"], *MMA_SYNC_VARIANTS.values()]:
        assert Schedule.from_attr(s.attr()) == s


def test_spread_swizzle_makes_scalar_fragment_loads_conflict_free() -> None:
    """The banks of a tf32 fragment's scalar loads from an N-major tile of 128 f32 a row (lanes ``4g + q``: row
    ``q``, column ``n + g`` for each n8 tile): two-way conflicts under the 8-row swizzle, none under ``spread``."""
    from picograd.passes.ir_builder import Builder

    b = Builder.__new__(Builder)  # ints only: swizzle's arithmetic folds
    for spread, ways in ((False, 2), (True, 1)):
        for n in range(0, 128, 8):
            banks = []
            for lane in range(32):
                g, q = lane // 4, lane % 4
                col = n + g
                chunk = swizzle(b, q, col // 4, 32, spread)
                assert isinstance(chunk, int)
                banks.append((q * 128 + chunk * 4 + col % 4) % 32)
            assert max(banks.count(x) for x in banks) == ways


def test_emulated_cvt_rna_tf32_f32() -> None:
    """The emulator's ``cvt.rna.tf32.f32`` (PTX ISA 8.0 section 9.7.8.21): nearest, ties away from zero, the low 13
    bits cleared; infinities stay, NaNs stay NaNs, the largest finite f32 rounds to infinity."""
    assert tf32_rna(0x3F801000) == 0x3F802000 and tf32_rna(0xBF801000) == 0xBF802000  # ties: away from zero
    assert tf32_rna(0x3F800FFF) == 0x3F800000 and tf32_rna(0x3F803000) == 0x3F804000  # below, and an odd tie
    assert tf32_rna(0x7F800000) == 0x7F800000 and tf32_rna(0xFF800000) == 0xFF800000
    assert tf32_rna(0x7F7FFFFF) == 0x7F800000
    nan = tf32_rna(0x7F800001)
    assert nan & 0x1FFF == 0 and np.isnan(np.uint32(nan).view(np.float32))


def test_emulated_cvt_rn_tf32_f32() -> None:
    """The emulator's ``cvt.rn.tf32.f32`` (sm_90): nearest, ties to the even tf32, the low 13 bits cleared."""
    assert tf32_rn(0x3F801000) == 0x3F800000 and tf32_rn(0xBF803000) == 0xBF804000  # ties: to even
    assert tf32_rn(0x3F801001) == 0x3F802000 and tf32_rn(0x3F800FFF) == 0x3F800000
    assert tf32_rn(0x7F800000) == 0x7F800000 and tf32_rn(0x7F7FF000) == 0x7F800000
    assert np.isnan(np.uint32(tf32_rn(0x7FFFFFFF)).view(np.float32))


@pytest.mark.parametrize(("arch", "rounding"), [("sm_90", tf32_rn), ("sm_80", tf32_rna)])
def test_tf32_operands_are_rounded_to_nearest(arch: str, rounding, rng: np.random.Generator) -> None:
    """A's elements are ties between two tf32 values, 1 + 2**-11 (even below) and 1 + 3 * 2**-11 (even above),
    scaled: ``cvt.rn`` (sm_90) rounds them to even, ``cvt.rna`` (sm_80) away from zero; the tensor cores alone
    would truncate both."""
    shape = MM(16, 16, 16, dtype="tf32")
    signs = rng.choice([-1.0, 1.0], (16, 16))
    ties = rng.choice([1 + 2.0**-11, 1 + 3 * 2.0**-11], (16, 16))
    a = (signs * ties * 2.0 ** rng.integers(-3, 4, (16, 16))).astype(np.float32)
    b = tf32(rng.standard_normal((16, 16)).astype(np.float32))  # exact in tf32: only A's rounding matters
    program = small_tile_program(shape, arch)
    assert f"cvt.{'rn' if arch == 'sm_90' else 'rna'}.tf32.f32" in program.ptx
    (got,) = run_program(program, [a, b])
    tol = check(shape, got, a, b, rounding)
    other = tf32(a, tf32_rna if rounding is tf32_rn else tf32_rn).astype(np.float64) @ b
    truncated = (a.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64) @ b
    assert (np.abs(got - truncated) > tol).any() and (np.abs(got - other) > tol).any()


@pytest.mark.parametrize(
    "shape",
    [
        MM(64, 64, 32, dtype="bf16"),
        MM(33, 47, 40, ta=True, dtype="bf16"),
        MM(24, 40, 56, tb=True, batch=(3,), dtype="bf16"),
    ],
    ids=str,
)
def test_forced_mma_sync_assembles_without_spills(shape: MM) -> None:
    """The 128x128x32 rung (4 warps, 3 stages, 48 KiB) as ``pg-schedule{matmul=mma-sync}`` makes it."""
    program = compile_for_cuda(shape.module(), matmul_schedule="mma-sync")
    text = program.ptx
    assert "ldmatrix.sync.aligned.m8n8.x4" in text and "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in text
    assert "cp.async.wait_group \t1;" in text  # 3 stages: two tiles in flight while one is computed on
    result = program.assemble(strict=True)
    assert not result.spills
    (res,) = [r for name, r in result.kernels.items() if "matmul" in name]
    assert res.shared_bytes == SCHEDULES["mma-sync"].stages * 32 * 256 * 2 and res.stack_frame == 0


@pytest.mark.parametrize(
    "shape",
    [
        MM(40, 72, 48, tb=True, dtype="bf16"),
        # whole tiles: the copies without tests, in rounds of 8 rows (A), and of 4 rows for tf32's N-major B
        # (128 f32 = 32 chunks a row), whose rounds alternate between two swizzles
        MM(128, 128, 64, ta=True, dtype="bf16"),
        MM(128, 128, 32, dtype="tf32"),
    ],
    ids=str,
)
def test_mma_sync_128_tile_on_the_emulator(shape: MM, rng: np.random.Generator) -> None:
    program = compile_for_cuda(shape.module(), matmul_schedule="mma-sync")
    check(shape, *emulate(program, shape, rng))


@pytest.mark.parametrize(
    ("variant", "shape"),
    [("mma-sync-k64-pf", MM(128, 128, 256, dtype="bf16")), ("mma-sync-k64-pf-tr", MM(128, 128, 128, dtype="tf32"))],
    ids=lambda x: str(x),
)
def test_mma_sync_past_48k_of_shared_memory_on_the_emulator(variant: str, shape: MM, rng) -> None:
    """The 128x128 tile with K tiles of 64 (bf16; 32 for tf32): 96 KiB of stages, in the module's dynamic shared
    buffer (``.extern .shared``), launched with its bytes; assembles without spills."""
    program = compile_for_cuda(shape.module(), matmul_schedule=variant)
    (step,) = [s for s in program.steps if isinstance(s, cuda.Launch)]
    assert step.shmem == 3 * 64 * 256 * 2 and ".extern .shared" in program.ptx
    assert not program.assemble(strict=True).spills
    trunc = MMA_SYNC_VARIANTS[variant].tf32_trunc
    check(shape, *emulate(program, shape, rng), rounding=tf32_truncated if trunc else tf32_rn)


# ---------------------------------------------------------------------------------------------------------------
# auto and errors


def test_auto_takes_tensor_cores_from_2_to_the_20_multiply_adds() -> None:
    big = choose(128, 128, 64, 1, BFloat16Type(), "bf16")
    assert 128 * 128 * 64 == AUTO_MIN_TENSOR_FMAS and big is not None and big.name == "mma-sync"
    assert choose(128, 128, 63, 1, BFloat16Type(), "bf16") is None  # below 2**20: a thread per output
    assert choose(8, 4096, 4096, 1, BFloat16Type(), "bf16") is None  # M < 16: SIMT
    assert choose(1024, 1024, 1024, 1, f32, "tf32").name == "mma-sync"  # type: ignore[union-attr]
    assert choose(1024, 1024, 1024, 1, f32, "fp32").name == "cp-async"  # type: ignore[union-attr]
    assert choose(1024, 1024, 1024, 1, f64, "fp64") is None
    assert choose(4096, 4096, 4096, 1, BFloat16Type(), "bf16") == SCHEDULES["mma-sync"]
    assert choose(256, 256, 256, 1, BFloat16Type(), "bf16") == SMALL_MMA_TILE  # 4 big tiles < 132 SMs


@pytest.mark.parametrize(
    ("el", "tf32", "message"),
    [
        (f32, False, r"'mma-sync' does not support fp32 on sm_90.*allow_tf32"),
        (f64, False, r"'mma-sync' does not support fp64 on sm_90.*no float64 mma"),
    ],
)
def test_mma_sync_on_an_unsupported_precision_is_one_clear_error(el, tf32, message) -> None:
    module = build([t(64, 64, el=el), t(64, 64, el=el)], lambda e, a, b: [e(pg.MatmulOp(a, b, tf32=tf32))])
    with pytest.raises(CompileError, match=message):
        compile_for_cuda(module, matmul_schedule="mma-sync")


def test_bf16_linear_1024_uses_mma_sync_under_auto() -> None:
    """The done-when: a bf16 ``nn.Linear(1024, 1024)`` on a (1024, 1024) batch gets mma.sync kernels (PTX only)."""
    pgm.manual_seed(0)
    layer = pgm.nn.Linear(1024, 1024).to(pgm.bfloat16)

    @pgm.compile
    def forward(x):
        return layer(x)

    x = pgm.zeros((1024, 1024), dtype=pgm.bfloat16)
    program = compile_for_cuda(forward.ir("simplify", (x,)))
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in program.ptx
    assert math.prod((1024, 1024, 1024)) >= AUTO_MIN_TENSOR_FMAS


def import_bench(name: str):
    """A script of ``bench/`` as a module (the repository root on ``sys.path``, as the scripts put it)."""
    import importlib
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"bench.{name}")


def test_mma_sync_sass_has_hmma_in_the_main_loop_and_no_local_memory() -> None:
    """The SASS of the forced 128x128 rung (bench/gemm_sass.py records its counts at 4096^3)."""
    from picograd.target import ptxas

    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    bench = import_bench("gemm_sass")
    count_opcodes, main_loop = bench.count_opcodes, bench.main_loop

    program = compile_for_cuda(MM(256, 256, 256, dtype="bf16").module(), matmul_schedule="mma-sync")
    sass = ptxas.dump_sass(program.assemble(strict=True).cubin)
    loop = count_opcodes(main_loop(sass))
    # a warp's 4x8 m16n8 tiles over two k16 steps; A of 4 m16 and B of 8 n8 tiles by ldmatrix.x4; 8 chunks
    assert loop.get("HMMA") == 4 * 8 * 2 and loop.get("LDSM") == 2 * (4 + 4) and loop.get("LDGSTS") == 8
    # whole tiles (256 = 2 x 128, K = 8 x 32): the copies' addresses are one per operand plus constants
    assert sum(loop.values()) <= 160
    assert not any(op in sass for op in ("LDL", "STL")), "local-memory traffic in the mma-sync kernel"


def test_bench_gemm_compiles_every_tensor_core_row(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/gemm.py's CPU side (what runs before a GPU is touched) on a tiny shape."""
    import_bench("gemm").compile_only(["48x40x56"], ["bf16", "tf32"], ["mma-sync"])
    out = capsys.readouterr().out
    assert out.count("mma-sync") == 2


@pytest.mark.parametrize("dtype", ["bf16", "tf32"])
def test_bench_mma_peak_kernel_assembles(dtype: str) -> None:
    """bench/mma_peak.py's kernel (the mma.sync ceiling the rung is compared with): valid PTX, no spills."""
    from picograd.target import ptxas

    result = ptxas.assemble(import_bench("mma_peak").kernel_ptx(dtype, 8, 100), "sm_90", strict=True)
    assert not result.spills and "mma_peak" in result.kernels
