"""``pg-matmul-schedule``: every rung of the SGEMM ladder (``SCHEDULES``), offline and on the GPU.

Offline (CI): each rung, forced on matmuls of many shapes (square, edge sizes, 1x1x1, vector-friendly, transposed
operands, batched with a batched or a broadcast B, f64), goes through ``compile_for_cuda`` to PTX that ``ptxas``
must accept without spills (``strict``: these tests FAIL, never skip, without an assembler), with the rung's marks
in it (thread count, shared memory, 16-byte accesses, ``cp.async``); the nest matcher and ``auto``'s choice are
checked directly, and a loop-stage matmul whose A is an expression (not a plain load) assembles under every rung.
Then every rung runs on the PTX emulator (``tests/_ptx_emulator.py``) on three small shapes (an edge shape, a
transposed vector-friendly one, a batched one with a broadcast B) against numpy in float64, and the expression
operand under naive and cp-async (two K tiles: the register path into the second stage). The emulator runs a
128x128-tile block's 256 threads one after another (fma in exact arithmetic), so these take seconds each: about
3 minutes in all on 2 cores, the slowest (warptile and cp-async on the batched shape, cp-async on the expression
operand and on 20x12x24 with A transposed) 15 to 20 seconds.

On the GPU (``-m gpu``; skipped without one): every rung (and ``auto``) on random float32 matmuls up to 1000^3 and
K = 4097, through ``CudaProgram.executable()``, the expression operand too; and ``nn.Linear`` forward and backward
on "cuda" at a batch where ``auto`` tiles all three matmuls, against torch in float64 on the CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from _matmul import MM, emulate, loops_matmul, parse_loops
from _ptx_emulator import run_program
from test_loops import build, t
from xdsl.dialects import scf
from xdsl.dialects.builtin import ModuleOp, StringAttr, f32, f64

from picograd.dialects import make_context, pg
from picograd.driver.gpu_compile import CudaProgram, compile_for_cuda
from picograd.driver.pipeline import lower_to
from picograd.passes.kinds.base import MalformedNest
from picograd.passes.kinds.matmul import read_matmul
from picograd.passes.kinds.matmul_rungs import (
    AUTO_MIN_FMAS,
    MIN_SMALL_TILES,
    SCHEDULES,
    SIMT_BLOCKS_PER_SM,
    SMS,
    choose,
)
from picograd.runtime import cuda
from picograd.target import ptxas

NAMES = [name for name, row in SCHEDULES.items() if not row.tensor_core]
"""The SIMT rungs (float32 and float64); the tensor-core ones are tests/test_mma_sync.py's."""
TOLERANCE = 1e-5
"""Largest relative error (Frobenius norm) against the float64 product of the float32 inputs."""


def vector_operand(shape: MM) -> bool:
    """Whether a 16-byte path applies to an operand: f32, and its contiguous extent a multiple of 4."""
    ta, tb = shape.ta, shape.tb
    return not shape.f64 and ((shape.m if ta else shape.k) % 4 == 0 or (shape.k if tb else shape.n) % 4 == 0)


def vector_result(shape: MM) -> bool:
    return not shape.f64 and shape.n % 4 == 0


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))


@functools.cache
def compiled(schedule: str, shape: MM) -> CudaProgram:
    """The program of ``shape`` with ``schedule`` forced (compiled once per session; the passes verify the IR after
    each pass)."""
    return compile_for_cuda(shape.module(), matmul_schedule=schedule)


def check_ptx(schedule: str, shape: MM, text: str) -> None:
    """The rung's marks in the PTX: its block size, shared-memory tiles, 16-byte accesses and cp.async exactly where
    the module docstring of ``pg-matmul-schedule`` puts them."""
    s = SCHEDULES[schedule]
    assert f".maxntid {s.threads}, 1, 1" in text
    assert (".shared" in text) == (s.bk > 0)
    assert ("cp.async" in text) == s.async_copy
    vector = s.vector and not shape.f64
    sixteen_bytes = "ld.global.v4.f32" in text or "cp.async.cg" in text
    assert sixteen_bytes == (vector and vector_operand(shape))
    assert ("st.global.v4.f32" in text) == (vector and vector_result(shape))
    if shape.f64:
        assert ".v2." not in text and ".v4." not in text


# ---------------------------------------------------------------------------------------------------------------
# Offline: PTX that ptxas accepts, for every rung and shape

ASSEMBLY_SHAPES = [
    MM(64, 64, 64),
    MM(17, 9, 13),
    MM(1, 1, 1),
    MM(20, 12, 24),
    MM(20, 12, 24, ta=True),
    MM(20, 12, 24, tb=True),
    MM(20, 12, 24, ta=True, tb=True),
    MM(17, 9, 13, ta=True, tb=True),
    MM(20, 12, 24, batch=(2,)),
    MM(20, 12, 24, batch=(2,), b_batched=False),
    MM(20, 12, 24, dtype="f64"),
    MM(4, 4, 4, dtype="f64"),  # f64 accumulators: fewer outputs per thread, or ptxas spills
    MM(9, 10, 11, ta=True, tb=True, dtype="f64"),
]


@pytest.mark.parametrize("shape", ASSEMBLY_SHAPES, ids=str)
@pytest.mark.parametrize("schedule", NAMES)
def test_ptx_assembles_without_spills(schedule: str, shape: MM) -> None:
    program = compiled(schedule, shape)
    check_ptx(schedule, shape, program.ptx)
    result = ptxas.assemble(program.ptx, "sm_90", strict=True)
    assert not result.spills
    matmul = [k for name, k in result.kernels.items() if "matmul" in name]
    assert len(matmul) == 1
    if SCHEDULES[schedule].bk:
        assert matmul[0].shared_bytes > 0


@pytest.mark.parametrize(
    "shape, threads",
    [(MM(1536, 1536, 8), 256), (MM(512, 512, 64), 128), (MM(128, 128, 8, batch=(132,)), 256)],
    ids=str,
)
def test_auto_tiles_big_f32_matmuls_with_cp_async(shape: MM, threads: int) -> None:
    """At 2**24 multiply-adds and more, ``auto`` takes cp-async: 128x128 tiles when there are at least as many as
    SMs, else 64x64 tiles (128 threads; here 64 of them)."""
    program = compile_for_cuda(shape.module())
    assert "cp.async" in program.ptx and f".maxntid {threads}, 1, 1" in program.ptx
    assert not ptxas.assemble(program.ptx, "sm_90", strict=True).spills


@pytest.mark.parametrize("shape", [MM(200, 300, 24), MM(1024, 1024, 15), MM(1536, 1536, 8, dtype="f64")], ids=str)
def test_auto_leaves_small_and_f64_matmuls_to_pg_to_gpu(shape: MM) -> None:
    program = compile_for_cuda(shape.module())
    assert ".shared" not in program.ptx and "cp.async" not in program.ptx
    assert "v4" not in program.ptx


def test_choose() -> None:
    """``auto``'s choice: None below 2**24 multiply-adds or for f64; cp-async, on 128x128 tiles from one tile per SM
    up, on 64x64 tiles below (None again below 16 of those)."""
    assert choose(128, 128, 8, 1, f32) is None
    assert choose(4096, 4096, 4096, 1, f64) is None
    big = choose(128, 128, 8, SMS, f32)
    assert big is not None and big.name == "cp-async" and (big.bm, big.bn) == (128, 128)
    small = choose(128, 128, 8, SMS - 1, f32)
    assert small is not None and small.name == "cp-async" and (small.bm, small.bn) == (64, 64)
    assert small.threads == 128
    # The threshold: exactly 2**24 multiply-adds is tiled, one fewer is not.
    assert choose(1 << 12, 1 << 12, 1, 1, f32) is not None and 1 << 24 == AUTO_MIN_FMAS
    assert choose((1 << 12) - 1, 1 << 12, 1, 1, f32) is None
    assert choose(4096, 4096, 4096, 1, f32).bm == 128  # type: ignore[union-attr]
    # A few 64x64 tiles over a deep K (a weight gradient) split K (kinds/matmul_split.py) into chunks of a multiple
    # of 64, up to 6 blocks an SM (SIMT_BLOCKS_PER_SM); where K does not split so, too few tiles stay a thread per
    # output. bf16 takes mma-sync with split_k, up to a block an SM.
    assert choose(64, 64 * (MIN_SMALL_TILES - 1), 4096, 1, f32) == dataclasses.replace(small, split_k=8)
    assert choose(64, 64 * (MIN_SMALL_TILES - 1), 1000, 1, f32) is None
    assert choose(64, 64 * MIN_SMALL_TILES, 1000, 1, f32) == small
    assert choose(64, 64, 4096, 1, f32, "bf16").split_k == 8  # type: ignore[union-attr]
    assert SMS * SIMT_BLOCKS_PER_SM == 792
    # the f32 GPT's weight gradients over 16384 tokens (auto, 64x64 tiles): 36, 108 and 144 tiles, and the lm head's 12
    for (m, n), splits in {(384, 384): 16, (1152, 384): 4, (384, 1536): 4, (1536, 384): 4, (65, 384): 32}.items():
        assert choose(m, n, 16384, 1, f32) == dataclasses.replace(small, split_k=splits), (m, n)
    assert choose(256, 32, 2048, 1, f32).split_k == 4  # type: ignore[union-attr]  # the DDPM's (no spills, sm_90)
    assert choose(384, 384, 16384, 1, f32, "bf16").split_k == 2  # type: ignore[union-attr]  # bf16: as before


def test_unknown_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown matmul schedule 'fast'"):
        compile_for_cuda(MM(4, 4, 4).module(), matmul_schedule="fast")


def _nests(module: ModuleOp) -> list[scf.ParallelOp]:
    return [op for op in module.walk() if isinstance(op, scf.ParallelOp)]


@pytest.mark.parametrize(
    "shape, a_contiguous, b_contiguous",
    [
        (MM(20, 12, 24), "k", "i"),
        (MM(20, 12, 24, ta=True, tb=True), "i", "k"),
        (MM(20, 12, 24, batch=(3,), b_batched=False), "k", "i"),
    ],
    ids=str,
)
def test_the_matmul_kind_marks_and_reads_its_nest(shape: MM, a_contiguous: str, b_contiguous: str) -> None:
    """pg-to-loops' matmul kind marks its nest (``pg.nest = "matmul"``) and the reader takes it apart: sizes, and
    which of the operands' dims is contiguous (transposed operands fused into the kernel read the other way)."""
    module = lower_to(shape.module(), "loops")
    marked = [n for n in _nests(module) if n.attributes.get("pg.nest") == StringAttr("matmul")]
    assert len(marked) == 1
    nest = read_matmul(marked[0])
    assert (nest.batch, nest.m, nest.n, nest.k) == (list(shape.batch), shape.m, shape.n, shape.k)
    assert nest.a.plain and nest.b.plain
    assert (nest.a.contiguous, nest.b.contiguous) == (a_contiguous, b_contiguous)


@pytest.mark.parametrize(
    "body",
    [
        lambda e, x: [e(pg.TanhOp(x))],
        lambda e, x: [e(pg.SumOp(e(pg.MulOp(x, x)), [1]))],
        lambda e, x: [e(pg.MaxOp(x, [0]))],
    ],
    ids=["elementwise", "sum_of_products", "max"],
)
def test_only_the_matmul_kind_marks_a_nest_matmul(body) -> None:
    """Reductions mark their own nests; nothing but a pg.matmul gets ``pg.nest = "matmul"``."""
    module = lower_to(build([t(20, 24)], body), "loops")
    nests = _nests(module)
    assert nests and all(n.attributes.get("pg.nest") != StringAttr("matmul") for n in nests)


NOT_MATMUL_BODIES = {
    "max": ["%s = arith.maximumf %acc, %p : f32"],  # the K loop takes a maximum, not a sum
    "init": ["%s = arith.addf %acc, %p : f32"],  # the sum starts at 1
    "sub": ["%q = arith.subf %x, %y : f32", "%s = arith.addf %acc, %q : f32"],  # a sum of differences
    "extra": [
        "%s = arith.addf %acc, %p : f32",
        "memref.store %p, %result0[%i, %j] : memref<8x8xf32>",
    ],  # a store in the loop
    "k_dep": ["%r = arith.mulf %p, %acc : f32", "%s = arith.addf %acc, %r : f32"],  # the product reads the sum
}


@pytest.mark.parametrize("variant", list(NOT_MATMUL_BODIES))
def test_a_marked_nest_of_another_form_is_an_error(variant: str) -> None:
    """A nest marked ``pg.nest = "matmul"`` whose K loop is not ``acc + a * b`` from 0 is refused, naming why
    (the mark is a contract between the kind's loop lowering and its reader, not a guess to fall back from)."""
    args = "%a: memref<8x4xf32>, %b: memref<4x8xf32>"
    loads = ["%x = memref.load %a[%i, %kk] : memref<8x4xf32>", "%y = memref.load %b[%kk, %j] : memref<4x8xf32>"]
    init = "1.0" if variant == "init" else "0.0"
    text = loops_matmul(args, [*loads, "%p = arith.mulf %x, %y : f32", *NOT_MATMUL_BODIES[variant]], 8, 8, 4, init=init)
    (nest,) = _nests(parse_loops(text))
    with pytest.raises(MalformedNest, match="is not a matmul nest"):
        read_matmul(nest)
    # The same nest as a matmul is read: the variants are the reason for the refusal.
    plain = loops_matmul(args, [*loads, "%p = arith.mulf %x, %y : f32", "%s = arith.addf %acc, %p : f32"], 8, 8, 4)
    (nest,) = _nests(parse_loops(plain))
    assert read_matmul(nest).k == 4


def operand_expressions(m: int, n: int, k: int) -> ModuleOp:
    """A loop-stage matmul whose operands are not both plain loads: A is ``x * x + 0.5`` of a load (the constant
    defined outside the nest), B a load at a constant index of a leading dim (``b[1, k, n]``, plain, contiguous
    along N). Non-plain operands take the register path in every rung (into the other stage for cp-async)."""
    body = [
        f"%x = memref.load %a[%i, %kk] : memref<{m}x{k}xf32>",
        "%sq = arith.mulf %x, %x : f32",
        "%xa = arith.addf %sq, %half : f32",
        f"%y = memref.load %b[%c1, %kk, %j] : memref<2x{k}x{n}xf32>",
        "%p = arith.mulf %xa, %y : f32",
        "%s = arith.addf %acc, %p : f32",
    ]
    args = f"%a: memref<{m}x{k}xf32>, %b: memref<2x{k}x{n}xf32>"
    return parse_loops(loops_matmul(args, body, m, n, k, consts=("%half = arith.constant 0.5 : f32",)))


def operand_expressions_inputs(m: int, n: int, k: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((2, k, n)).astype(np.float32)
    return [a, b], (a.astype(np.float64) ** 2 + 0.5) @ b[1].astype(np.float64)


@functools.cache
def compiled_operand_expressions(schedule: str, m: int, n: int, k: int) -> CudaProgram:
    return compile_for_cuda(operand_expressions(m, n, k), matmul_schedule=schedule)


@pytest.mark.parametrize("schedule", NAMES)
def test_operand_expressions_assemble(schedule: str) -> None:
    (nest,) = _nests(operand_expressions(8, 8, 20))
    matched = read_matmul(nest)
    assert not matched.a.plain and matched.b.plain and matched.b.contiguous == "i"
    program = compiled_operand_expressions(schedule, 8, 8, 20)
    s = SCHEDULES[schedule]
    # B's rows of 8 are read 16 bytes at a time by the vector rungs; A, an expression, never is.
    assert ("ld.global.v4.f32" in program.ptx or "cp.async.cg" in program.ptx) == s.vector
    assert not ptxas.assemble(program.ptx, "sm_90", strict=True).spills


# ---------------------------------------------------------------------------------------------------------------
# Offline: the emulated kernels against numpy

EMULATED_SHAPES = [
    MM(17, 9, 13),
    MM(20, 12, 24, ta=True),
    MM(6, 8, 4, batch=(2,), b_batched=False),
]


@pytest.mark.parametrize("shape", EMULATED_SHAPES, ids=str)
@pytest.mark.parametrize("schedule", NAMES)
def test_emulated_kernel_matches_numpy(schedule: str, shape: MM, rng: np.random.Generator) -> None:
    got, a, b = emulate(compiled(schedule, shape), shape, rng)
    want = shape.reference(a, b)
    assert got.shape == want.shape and got.dtype == np.float32
    assert relative_error(got, want) <= TOLERANCE


@pytest.mark.parametrize("schedule", ["naive", "cp-async"])
def test_emulated_operand_expressions_match_numpy(schedule: str, rng: np.random.Generator) -> None:
    """K = 20 is two K tiles of cp-async: A's register path fills stage 1 while stage 0 is computed on."""
    inputs, want = operand_expressions_inputs(8, 8, 20, rng)
    (got,) = run_program(compiled_operand_expressions(schedule, 8, 8, 20), inputs)
    assert relative_error(got, want) <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# On the GPU

GPU_SHAPES = [
    MM(1, 1, 1),
    MM(17, 17, 17),
    MM(4097, 33, 65),
    MM(65, 4097, 17),
    MM(1000, 1000, 1000),
    MM(128, 128, 4097),
    MM(513, 257, 129, ta=True),
    MM(512, 256, 128, ta=True),
    MM(257, 513, 127, tb=True),
    MM(256, 512, 128, tb=True),
    MM(300, 200, 100, ta=True, tb=True),
    MM(300, 200, 100, batch=(3,)),
    MM(256, 256, 256, batch=(4,), b_batched=False),
]


@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("schedule", [*NAMES, "auto"])
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_gpu_kernel_matches_numpy(schedule: str, shape: MM, rng: np.random.Generator) -> None:
    program = compile_for_cuda(shape.module(), matmul_schedule=schedule)
    a, b = shape.inputs(rng)
    (out,) = program.executable()(cuda.DeviceBuffer.from_numpy(a), cuda.DeviceBuffer.from_numpy(b))
    got = out.to_numpy()
    want = shape.reference(a, b)
    assert got.shape == want.shape
    assert relative_error(got, want) <= TOLERANCE, f"{schedule} on {shape}"


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("schedule", ["auto", "warptile"])
def test_linear_forward_backward_on_cuda_matches_torch(schedule: str, rng: np.random.Generator) -> None:
    """``nn.Linear`` on "cuda" at batch 512, 256 -> 384: the forward matmul and both backward ones are 2**25 and
    more multiply-adds, which ``auto`` tiles (with cp-async); the results match torch's float64 CPU ones."""
    import torch

    import picograd as pgr
    from picograd.frontend import realize

    batch, d_in, d_out = 512, 256, 384
    assert batch * d_in * d_out >= AUTO_MIN_FMAS
    x = rng.standard_normal((batch, d_in)).astype(np.float32)
    w = (rng.standard_normal((d_out, d_in)) / math.sqrt(d_in)).astype(np.float32)
    bias = rng.standard_normal(d_out).astype(np.float32)
    seed = rng.standard_normal((batch, d_out)).astype(np.float32)

    before = set(realize._CACHE)
    with pgr.matmul_schedule(schedule):
        layer = pgr.nn.Linear(d_in, d_out).to("cuda")
        layer.weight.data = pgr.tensor(w, device="cuda")  # type: ignore[misc]
        layer.bias.data = pgr.tensor(bias, device="cuda")  # type: ignore[misc]
        xt = pgr.tensor(x, device="cuda", requires_grad=True)
        y = layer(xt)
        (y * pgr.tensor(seed, device="cuda")).sum().backward()
        got = [y.numpy(), xt.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy()]
    new = [exe for key, exe in realize._CACHE.items() if key not in before]
    ptx = "\n".join(exe.program.ptx for exe in new if hasattr(exe, "program"))
    assert "cp.async" in ptx if schedule == "auto" else ".maxntid 256, 1, 1" in ptx and ".shared" in ptx

    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw, tb)
    (ty * torch.tensor(seed, dtype=torch.float64)).sum().backward()
    want = [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()]
    for name, g, e in zip(["y", "dx", "dw", "db"], got, want, strict=True):
        assert g.shape == e.shape, name
        assert relative_error(g, e) <= 1e-4, name


@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("size", [(257, 130, 67), (256, 128, 64)], ids=str)
@pytest.mark.parametrize("schedule", NAMES)
def test_gpu_operand_expressions_match_numpy(schedule: str, size: tuple[int, int, int], rng) -> None:
    inputs, want = operand_expressions_inputs(*size, rng)
    program = compile_for_cuda(operand_expressions(*size), matmul_schedule=schedule)
    (out,) = program.executable()(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])
    assert relative_error(out.to_numpy(), want) <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# Limits found by trying to break the pass (each once a failure)


def launch_grids(program: CudaProgram) -> list[tuple[int, ...]]:
    return [tuple(s.grid) if isinstance(s.grid, tuple) else (s.grid,) for s in program.steps if hasattr(s, "grid")]


@pytest.mark.parametrize("schedule", ["auto", "coalesced", "naive"])
@pytest.mark.parametrize("shape", [MM(1_000_000, 2, 2), MM(16, 16, 16, batch=(70_000,))], ids=str)
def test_grids_past_cuda_limits_fall_back_to_a_1d_grid(schedule: str, shape: MM) -> None:
    """65535 blocks at most in y (M tiles) and z (batch): such nests stay one thread per output on a 1-D grid."""
    (grid,) = launch_grids(compile_for_cuda(shape.module(), matmul_schedule=schedule))
    assert len(grid) == 1 or (grid[1] <= 65535 and grid[2] <= 65535), grid


def loops_4x8(a_load: str, a_type: str, out_type: str = "memref<4x8xf32>", k: int = 8) -> str:
    """A hand-written loop-stage matmul (4 x 8 over K = ``k``) whose A element is ``a_load`` (an op producing %x)."""
    b_type = f"memref<{max(k, 1)}x8xf32>"
    body = [a_load, f"%y = memref.load %b[%kk, %j] : {b_type}", "%p = arith.mulf %x, %y : f32"]
    body.append("%s = arith.addf %acc, %p : f32")
    two = ("%two = arith.constant 2.0 : f32",)
    return loops_matmul(f"%a: {a_type}, %b: {b_type}", body, 4, 8, k, out_type=out_type, consts=two)


def test_a_loop_variable_in_two_indices_is_not_vectorized(rng: np.random.Generator) -> None:
    """A diagonal operand (a[k, k]) is not a tile of its buffer: 16-byte loads along k would read a[k, k:k+4]."""
    text = loops_4x8("%x = memref.load %a[%kk, %kk] : memref<8x8xf32>", "memref<8x8xf32>")
    d, b = (rng.standard_normal((8, 8)).astype(np.float32) for _ in range(2))
    (got,) = run_program(compile_for_cuda(parse_loops(text), matmul_schedule="regtile"), [d, b])
    want = np.tile(np.diag(d).astype(np.float64) @ b, (4, 1))
    assert relative_error(got, want) <= TOLERANCE


def test_an_operand_defined_outside_the_loop_is_loop_invariant(rng: np.random.Generator) -> None:
    text = loops_4x8("%x = arith.addf %two, %two : f32", "memref<8x8xf32>")
    a, b = (rng.standard_normal((8, 8)).astype(np.float32) for _ in range(2))
    for schedule in ("smem", "cp-async"):
        program = compile_for_cuda(parse_loops(text), matmul_schedule=schedule)
        ptxas.assemble(program.ptx, "sm_90", strict=True)
    (got,) = run_program(program, [a, b])
    assert relative_error(got, np.tile(4.0 * b.astype(np.float64).sum(0), (4, 1))) <= TOLERANCE


def test_an_output_row_wider_than_n_gets_scalar_stores(rng: np.random.Generator) -> None:
    text = loops_4x8("%x = memref.load %a[%i, %kk] : memref<4x8xf32>", "memref<4x8xf32>", "memref<4x6xf32>")
    program = compile_for_cuda(parse_loops(text), matmul_schedule="regtile")
    assert "st.global.v4" not in program.ptx


def test_k_zero_is_not_tiled() -> None:
    """An empty K loop leaves the nest to pg-to-gpu: no tile of a 0-element operand is ever loaded."""
    text = loops_4x8("%x = memref.load %a[%i, %kk] : memref<4x0xf32>", "memref<4x0xf32>", k=0)
    program = compile_for_cuda(parse_loops(text), matmul_schedule="cp-async")
    assert "cp.async" not in program.ptx and "ld.global" not in program.ptx


def test_ir_follows_the_enclosing_matmul_schedule() -> None:
    import picograd as pg

    w = pg.randn(64, 64)

    @pg.compile(example_inputs=(pg.Spec((64, 64)),))
    def f(x: pg.Tensor) -> pg.Tensor:
        return x @ w

    with pg.matmul_schedule("smem"):
        assert ".shared" in str(f.ir("ptx"))
    assert ".shared" not in str(f.ir("ptx"))
    with pytest.raises(ValueError, match="unknown matmul schedule"):
        pg.matmul_schedule(["naive"]).__enter__()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "shape"),
    [("auto", MM(512, 512, 512)), ("auto", MM(64, 48, 20)), ("warptile", MM(40, 24, 12, dtype="f64"))],
    ids=str,
)
def test_the_kernel_schedule_names_what_runs(schedule: str, shape: MM) -> None:
    """The ``#kernel.schedule`` that pg-schedule records at the kernels stage is the rung, tile and block size of the
    GPU kernel that comes out (auto's 64x64 tile included; an f64 rung fitted)."""
    from xdsl.dialects import gpu

    from picograd.dialects import kernel
    from picograd.passes.kinds.matmul_rungs import Schedule

    module = lower_to(shape.module(), "kernels", matmul_schedule=schedule)
    (k,) = [op for op in module.walk() if isinstance(op, kernel.FusedOp)]
    assert k.schedule is not None
    lowered = lower_to(shape.module(), "gpu", matmul_schedule=schedule)
    (fn,) = [op for op in lowered.walk() if isinstance(op, gpu.FuncOp)]
    rung = Schedule.from_attr(k.schedule)
    block = fn.attributes["gpu.known_block_size"]
    if rung is None:
        assert k.schedule.strategy.data == "thread_per_point"
        assert fn.attributes["pg.schedule"].data == "thread_per_point"  # type: ignore[attr-defined]
        assert block.get_values()[0] <= k.schedule.count("block")  # type: ignore[attr-defined]
        return
    assert fn.attributes["pg.schedule"].data == rung.name  # type: ignore[attr-defined]
    assert tuple(fn.attributes["pg.tile"].get_values()) == (rung.bm, rung.bn, rung.bk)  # type: ignore[attr-defined]
    assert block.get_values()[0] == rung.threads  # type: ignore[attr-defined]
    if schedule == "auto":
        assert (rung.bm, rung.bn) == (64, 64)


def test_a_schedule_that_does_not_fit_its_nest_is_an_error() -> None:
    """pg-matmul-schedule lowers what the attribute says or refuses: a rung on a nest that is not a matmul."""
    from xdsl.utils.exceptions import PassFailedException

    from picograd.dialects.kernel import ScheduleAttr
    from picograd.passes.kinds.matmul_rungs import SCHEDULES
    from picograd.passes.matmul_schedule import PgMatmulSchedule

    module = lower_to(MM(8, 8, 8).module(), "loops")
    (par,) = [op for op in module.walk() if op.name == "scf.parallel"]
    par.attributes["kernel.schedule"] = SCHEDULES["smem"].attr()
    par.body.block.first_op.detach()  # type: ignore[union-attr]  # no K loop: not a matmul nest any more
    with pytest.raises(PassFailedException, match="is scheduled .*smem.* but is not a matmul nest"):
        PgMatmulSchedule().apply(make_context(), module)
    par.attributes["kernel.schedule"] = ScheduleAttr("smem", {"tile": (1, 2, 3)})
    with pytest.raises(PassFailedException, match="pg-matmul-schedule"):
        PgMatmulSchedule().apply(make_context(), module)
