"""The reduction kind's schedules: the table (``kinds/reduction_split.py``), side outputs inside ``block_per_row``,
and the two-stage ``split_rows``/``split_columns`` (``pg-split-reductions``).

Each forced schedule runs on small ragged shapes (sizes that are no multiple of the block or of the chunk) through
the loop stage (the loop interpreter) and through PTX (ptxas ``-arch=sm_90 --warn-on-spills -Werror``, then the PTX
emulator), against numpy in float64: full sums to a scalar, row sums, column sums, with and without a side output
(the cast of the input, as the gradient-norm kernels of ``clip_grad_norm_`` yield it), bf16 inputs accumulated in
f32, f32, a max and an i64 sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_dtypes
import numpy as np
import pytest
from _ptx_emulator import run_program
from test_loops import build, t
from xdsl.dialects.builtin import ModuleOp, bf16, f32, i64

from picograd.dialects import kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import lower_to, run_passes
from picograd.passes.kinds.reduction_split import RULES, Reduction, balanced_splits, choose
from picograd.runtime import cuda
from picograd.runtime.loop_interpreter import run_function


def _strategy(shape: Sequence[int], dims: Sequence[int]) -> tuple[str, dict]:
    attr = choose(Reduction.of(shape, dims), 256)
    return attr.strategy.data, attr.values


def test_the_table_on_the_gpt_step() -> None:
    """The reductions of the GPT train step (6 layers, 384 wide, block 256, batch 64): grad-norm full sums split
    over many blocks, bias/LayerNorm-weight column sums split over row chunks, LayerNorm rows a warp each, a sum over
    the batch dim (98304 columns) a coalesced thread each, short sums a thread each."""
    assert _strategy((1536, 384), [0, 1]) == ("split_rows", {"splits": 1024, "block": 256})
    assert _strategy((384, 384), [0, 1]) == ("split_rows", {"splits": 288, "block": 256})
    assert _strategy((1152, 384), [0, 1]) == ("split_rows", {"splits": 864, "block": 256})
    assert _strategy((16384,), [0]) == ("split_rows", {"splits": 32, "block": 256})
    assert _strategy((64, 256, 384), [0, 1]) == ("split_columns", {"splits": 512, "block": 256})
    assert _strategy((16384, 384), [0]) == ("split_columns", {"splits": 512, "block": 256})
    assert _strategy((64, 256, 384), [2])[0] == "warp_per_row"
    assert _strategy((16384, 65), [1])[0] == "warp_per_row"
    assert _strategy((512, 384), [1])[0] == "block_per_row"  # too few points for a warp each
    assert _strategy((64, 256, 384), [0])[0] == "thread_per_point"
    assert _strategy((384,), [0])[0] == "block_per_row"
    assert _strategy((32, 8), [1])[0] == "thread_per_point"
    assert RULES[-1].strategy == "block_per_row"  # the last row always holds


def test_warp_per_row_takes_the_largest_unroll_dividing_a_lanes_share() -> None:
    """Under ``unroll`` (the GPU pipeline's 4) a warp's row of 384 (12 a lane) takes 4, of 65 (ragged) none, of 64
    (2 a lane) 2; the other strategies take none."""

    def chosen(shape: Sequence[int], dims: Sequence[int]) -> ScheduleAttr:
        return choose(Reduction.of(shape, dims), 256, unroll=4)

    assert chosen((64, 256, 384), [2]) == ScheduleAttr("warp_per_row", {"block": 256, "unroll": 4})
    assert chosen((16384, 65), [1]) == ScheduleAttr("warp_per_row", {"block": 256})
    assert chosen((4096, 64), [1]) == ScheduleAttr("warp_per_row", {"block": 256, "unroll": 2})
    assert chosen((64, 256, 384), [0, 1]).strategy.data == "split_columns"
    assert "unroll" not in chosen((64, 256, 384), [0, 1]).values
    assert "unroll" not in chosen((512, 384), [1]).values  # block_per_row


def test_balanced_splits_prefer_equal_chunks() -> None:
    assert balanced_splits(589824, 1024) == 1024
    assert balanced_splits(16384, 683) == 512  # a power of two below: equal chunks of 32 rows
    assert balanced_splits(10007, 40) == 40  # a prime: 39 chunks of 251 and a ragged one
    assert balanced_splits(10007, 40) * -(-10007 // 40) >= 10007


def _module(shape: Sequence[int], dims: list[int], el, op: str, rider: bool) -> ModuleOp:
    def body(e, x):
        y = e(pg.CastOp(x, f32)) if el == bf16 else (e(pg.ExpOp(x)) if el == f32 else x)
        if op == "sum":
            r = e(pg.SumOp(e(pg.MulOp(y, y)) if el != i64 else y, dims))
        else:
            r = e(pg.MaxOp(y, dims))
        return [y, r] if rider else [r]

    return build([t(*shape, el=el)], body)


def _want(x: np.ndarray, dims: list[int], el, op: str, rider: bool) -> list[np.ndarray]:
    y = x.astype(np.float64) if el == bf16 else (np.exp(x.astype(np.float64)) if el == f32 else x)
    r = (np.sum(y * y if el != i64 else y, axis=tuple(dims))) if op == "sum" else np.max(y, axis=tuple(dims))
    return [y, r] if rider else [r]


def _forced(module: ModuleOp, schedule: ScheduleAttr) -> ModuleOp:
    lower_to(module, "kernels")
    kernels = [k for k in module.walk() if isinstance(k, kernel.FusedOp) and k.kind.data == "reduction"]
    assert len(kernels) == 1
    kernels[0].schedule = schedule
    return module


CASES = {
    # name: (shape, dims, element type, op, schedule, launches as (grid, block))
    "full_rows_ragged": ((37, 29), [0, 1], bf16, "sum", ("split_rows", 5, 64), [(5, 64), (1, 32)]),
    "full_rows_equal": ((16, 24), [0, 1], f32, "sum", ("split_rows", 4, 64), [(4, 64), (1, 32)]),
    "full_rows_block_combine": ((40, 33), [0, 1], bf16, "sum", ("split_rows", 40, 64), [(40, 64), (1, 64)]),
    "row_sums_ragged": ((3, 200), [1], f32, "sum", ("split_rows", 3, 64), [(9, 64), (1, 32)]),
    "columns_3d_ragged": ((45, 7, 33), [0, 1], bf16, "sum", ("split_columns", 4, 64), [(3, 64), (1, 64)]),
    "columns_2d_ragged": ((50, 40), [0], f32, "sum", ("split_columns", 8, 64), [(5, 64), (1, 64)]),
    "max_rows": ((30, 70), [0, 1], f32, "max", ("split_rows", 3, 64), [(3, 64), (1, 32)]),
    "i64_sum_rows": ((20, 50), [0, 1], i64, "sum", ("split_rows", 7, 64), [(7, 64), (1, 32)]),
    "block_per_row_rows": ((6, 100), [1], bf16, "sum", ("block_per_row", 0, 64), [(6, 64)]),
    "warp_per_row_ragged": ((11, 70), [1], bf16, "sum", ("warp_per_row", 0, 128), [(3, 128)]),
    "warp_per_row_3d_max": ((3, 5, 40), [2], f32, "max", ("warp_per_row", 0, 64), [(8, 64)]),
    "warp_per_row_two_dims": ((5, 33, 4), [0, 1], f32, "sum", ("warp_per_row", 0, 256), [(1, 128)]),
    # unroll: a lane's loop takes 4 (2) elements an iteration, their loads before the side output's stores
    "warp_per_row_unroll_4": ((11, 256), [1], bf16, "sum", ("warp_per_row", 0, 64, 4), [(6, 64)]),
    "warp_per_row_unroll_2_max": ((3, 5, 64), [2], f32, "max", ("warp_per_row", 0, 128, 2), [(4, 128)]),
    "warp_per_row_unroll_two_dims": ((5, 2, 64), [1, 2], i64, "sum", ("warp_per_row", 0, 64, 4), [(3, 64)]),
}


def _inputs(rng: np.random.Generator, shape: Sequence[int], el) -> list[np.ndarray]:
    if el == i64:
        return [rng.integers(-50, 50, shape).astype(np.int64)]
    x = rng.standard_normal(shape) * 0.5
    return [x.astype(ml_dtypes.bfloat16 if el == bf16 else np.float32)]


def _check(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape, (g.shape, w.shape)
        if g.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
        else:
            # positive terms (squares, exps): an f32 sum of n <= 1500 is within n * 2^-24 (9e-5) relative, typically
            # far closer; one term of the sum is about 1/n of it (7e-4 and up), so 1e-5 still catches a lost element
            np.testing.assert_allclose(g.astype(np.float64), w, rtol=1e-5, atol=1e-6)


def _schedule(spec: tuple[int | str, ...]) -> ScheduleAttr:
    strategy, splits, block, *unroll = spec
    params = {"splits": splits, "block": block} if splits else {"block": block}
    return ScheduleAttr(str(strategy), {**params, "unroll": unroll[0]} if unroll else params)


@pytest.mark.parametrize("rider", [False, True], ids=["plain", "side_output"])
@pytest.mark.parametrize("name", list(CASES))
def test_forced_schedule_on_the_loop_interpreter(name: str, rider: bool, rng: np.random.Generator) -> None:
    shape, dims, el, op, spec, _ = CASES[name]
    module = _forced(_module(shape, dims, el, op, rider), _schedule(spec))
    run_passes(module, ["pg-bufferize", "pg-outline-kernels", "pg-to-loops", "pg-split-reductions"])
    inputs = _inputs(rng, shape, el)
    _check(run_function(module, "f", inputs), _want(inputs[0], dims, el, op, rider))


@pytest.mark.parametrize("rider", [False, True], ids=["plain", "side_output"])
@pytest.mark.parametrize("name", list(CASES))
def test_forced_schedule_assembles_and_runs_on_the_emulator(name: str, rider: bool, rng: np.random.Generator) -> None:
    """ptxas without spills, the launches the schedule says (the partial nest, then the combining one), and the
    emulated results against float64."""
    shape, dims, el, op, spec, launches = CASES[name]
    module = _forced(_module(shape, dims, el, op, rider), _schedule(spec))
    program = compile_for_cuda(module, stage="kernels")
    program.assemble(strict=True)
    got = [(s.grid[0], s.block[0]) for s in program.steps if isinstance(s, cuda.Launch)]  # type: ignore[index]
    assert got == launches
    inputs = _inputs(rng, shape, el)
    _check(run_program(program, inputs), _want(inputs[0], dims, el, op, rider))


def test_other_nests_of_a_split_kernel_take_a_thread_per_point(rng: np.random.Generator) -> None:
    """A kernel whose outputs include one of another shape than the input's (a nest of its own): that nest runs a
    thread per point beside the two split nests."""

    def body(e, x):
        s = e(pg.SumOp(x, [0, 1]))
        return [s, e(pg.ExpOp(s))]

    module = build([t(40, 30)], body)
    lower_to(module, "kernels")
    for k in module.walk():
        if isinstance(k, kernel.FusedOp):
            k.schedule = _schedule(("split_rows", 4, 64)) if k.kind.data == "reduction" else k.schedule
    program = compile_for_cuda(module, stage="kernels")
    program.assemble(strict=True)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    s = np.sum(x.astype(np.float64))
    got_sum, got_exp = run_program(program, [x])
    # the f32 sum of 1200 terms: within 2^-20 of the sum of their magnitudes; exp of it: relative error |s| times
    # the sum's own relative rounding, plus exp's
    np.testing.assert_allclose(got_sum, s, rtol=0, atol=2.0**-20 * np.sum(np.abs(x)))
    np.testing.assert_allclose(got_exp, np.exp(got_sum.astype(np.float64)), rtol=2e-6)
    assert got_sum.shape == () and got_exp.shape == ()


# ---------------------------------------------------------------------------------------------------------------
# On a GPU (``pytest -m gpu tests/test_reduction_schedules.py``; skipped without one)


def _run_on_gpu(program, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    exe = program.executable()
    return [o.to_numpy() for o in exe(*[cuda.DeviceBuffer.from_numpy(x) for x in inputs])]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("rider", [False, True], ids=["plain", "side_output"])
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_forced_schedule_on_gpu(name: str, rider: bool, rng: np.random.Generator) -> None:
    shape, dims, el, op, spec, _ = CASES[name]
    program = compile_for_cuda(_forced(_module(shape, dims, el, op, rider), _schedule(spec)), stage="kernels")
    inputs = _inputs(rng, shape, el)
    _check(_run_on_gpu(program, inputs), _want(inputs[0], dims, el, op, rider))


GPT_SHAPES = {
    # the GPT step's reductions, as pg-schedule chooses: (shape, dims, element type)
    "grad_norm_1536x384": ((1536, 384), [0, 1], bf16),  # split_rows, 1024 chunks
    "grad_norm_384x384": ((384, 384), [0, 1], bf16),  # split_rows, 288 chunks
    "bias_grad_64x256x384": ((64, 256, 384), [0, 1], bf16),  # split_columns, 512 chunks of 32 rows
    "layernorm_rows": ((64, 256, 384), [2], f32),  # warp_per_row with a side output
    "batch_sum_columns": ((64, 256, 384), [0], f32),  # thread_per_point, 98304 columns
}


@pytest.mark.parametrize("name", list(GPT_SHAPES))
@pytest.mark.gpu
@pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")
def test_table_schedules_at_gpt_shapes_on_gpu(name: str, rng: np.random.Generator) -> None:
    """The schedules the table picks at the GPT step's shapes, with a side output, against float64; two runs give
    the same bits (no atomics)."""
    shape, dims, el = GPT_SHAPES[name]
    module = _module(shape, dims, el, "sum", True)
    program = compile_for_cuda(module)
    inputs = _inputs(rng, shape, el)
    first = _run_on_gpu(program, inputs)
    want = _want(inputs[0], dims, el, "sum", True)
    for g, w in zip(first, want, strict=True):
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=1e-5, atol=1e-5)
    for a, b in zip(first, _run_on_gpu(program, inputs), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------------------
# Index division by constants in PTX (the index arithmetic of every thread_per_point kernel and of reshapes)


@pytest.mark.parametrize("width", [32, 64])
def test_division_magic_is_exact(width: int, rng: np.random.Generator) -> None:
    """``(t + ((n - t) >> 1)) >> (l - 1)`` with ``t = mulhi(m, n)`` is ``n // d`` at the edges of the range and at
    random points, for small divisors, the GPT step's extents and random large ones."""
    from picograd.passes.to_ptx import division_magic

    top = (1 << width) - 1
    divisors = [3, 5, 6, 7, 9, 10, 12, 25, 65, 384, 1152, 1536, 16383, 98304 + 1]
    divisors += [int(v) for v in rng.integers(3, 1 << 31, 20)]
    for d in (d for d in divisors if d & (d - 1)):
        m, shift = division_magic(d, width)
        assert 0 < m <= top
        ns = [0, 1, d - 1, d, d + 1, 2 * d - 1, top, top - 1, top - d, *(int(v) for v in rng.integers(0, 1 << 62, 50))]
        for n in (n & top for n in ns):
            t = (m * n) >> width
            assert (t + ((n - t) >> 1)) >> (shift - 1) == n // d, (d, n)


def test_thread_index_division_is_a_multiply_high() -> None:
    """An elementwise kernel over (64, 256, 1536) delinearizes its thread index by 1536 with ``mul.hi``, not with
    ``div``/``rem`` (which ptxas expands into a reciprocal iteration or a call), and its reshape's divisions by 256
    are a shift and a mask."""

    def body(e, a):
        return [e(pg.ReshapeOp(e(pg.CastOp(e(pg.ExpOp(a)), bf16)), (16384, 1536)))]

    program = compile_for_cuda(build([t(64, 256, 1536)], body))
    assert "mul.hi.u32" in program.ptx
    assert "div." not in program.ptx and "rem." not in program.ptx
    assert not program.assemble(strict=True).spills
