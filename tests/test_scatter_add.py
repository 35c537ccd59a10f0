"""The scatter-add kind's schedules: the table (``kinds/scatter_add.py``: ``shared_rows`` for few-row tables with
many adds a row, ``atomic`` otherwise) and the ``shared_rows`` kernel, lowered to PTX (``ptxas -arch=sm_90``
without spills) and run on the PTX emulator against numpy in float64, on small shapes that the table sends to
``shared_rows``: repeated indices, every index on one row, rows never hit, a ragged last chunk and a ragged last
column slice, an embedding-shaped 2-D index, a scatter along an inner dim, f64 and i64. The loop stage (unchanged
by the schedule, which only ``pg-to-gpu`` reads) runs on the loop interpreter for the same modules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from _ptx_emulator import run_program
from test_loops import build, check, t
from xdsl.dialects.builtin import f32, f64, i64
from xdsl.ir import Attribute

from picograd.dialects import pg
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.passes.kinds import scatter_add
from picograd.passes.kinds.scatter_add import COLUMNS, UNROLL, Scatter, choose

BLOCK = 256


# --- the table -----------------------------------------------------------------------------------------------


def test_gpt_embedding_gradient_takes_shared_rows() -> None:
    """16384 tokens into a 65-row table of 384 columns (the GPT's token embedding): 12 column slices, chunks of a
    whole number of rounds (8 warps x UNROLL), about TARGET_BLOCKS blocks."""
    s = Scatter(rows=65, columns=384, adds=16384, element_bytes=4)
    attr = choose(s, BLOCK)
    assert attr.strategy.data == "shared_rows"
    chunk = attr.count("chunk")
    assert chunk == 192 and chunk % ((BLOCK // COLUMNS) * UNROLL) == 0
    blocks = -(-16384 // chunk) * (384 // COLUMNS)
    assert scatter_add.TARGET_BLOCKS <= blocks < scatter_add.TARGET_BLOCKS + 384 // COLUMNS


@pytest.mark.parametrize(
    "s",
    [
        Scatter(rows=50304, columns=768, adds=8192, element_bytes=4),  # a GPT-2 vocabulary: no table fits
        Scatter(rows=256, columns=384, adds=256, element_bytes=4),  # a position embedding: one add a row
        Scatter(rows=16384 * 65, columns=1, adds=16384, element_bytes=4),  # a one-hot scatter into a flat buffer
        Scatter(rows=10, columns=4, adds=1000, element_bytes=4),  # too few columns for a warp's lanes
    ],
)
def test_other_scatters_stay_atomic(s: Scatter) -> None:
    assert choose(s, BLOCK).strategy.data == "atomic"


# --- the kernel ----------------------------------------------------------------------------------------------


def _check(got: np.ndarray, u: np.ndarray, idx: np.ndarray, dim: int, shape, ishape, el) -> None:
    """``got`` is the scatter-add of ``u`` at ``idx``: exactly for integers, else within the rounding of a sum of
    ``prod(ishape)`` terms."""
    want = _reference(u, idx, dim, shape)
    if el == i64:
        np.testing.assert_array_equal(got, want)
    else:
        bound = np.finfo(got.dtype).eps * _reference(np.abs(u), idx, dim, shape) * 2 * np.prod(ishape)
        assert np.all(np.abs(got - want) <= bound + 1e-300)


def _reference(u: np.ndarray, idx: np.ndarray, dim: int, shape: tuple[int, ...]) -> np.ndarray:
    """``scatter_add`` in float64 (int64 for integers) with numpy's unbuffered ``add.at``."""
    out = np.zeros(shape, np.int64 if u.dtype.kind in "iu" else np.float64)
    lead = u.shape[:dim]
    for pre in np.ndindex(*lead):
        for j in np.ndindex(*idx.shape):
            out[(*pre, int(idx[j]))] += u[(*pre, *j)]
    return out


Draw = Callable[[np.random.Generator], np.ndarray]
CASES: dict[str, tuple[tuple[int, ...], int, tuple[int, ...], Attribute, Draw]] = {
    # name: (index shape, dim, output shape, element, indices)
    "repeats_ragged": ((70,), 0, (5, 40), f32, lambda rng: rng.integers(0, 4, 70)),  # row 4 never hit
    "one_row": ((64,), 0, (3, 33), f32, lambda rng: np.full(64, 2)),
    # 3 chunks of 96 (the last 8 long) adding into one table across blocks, most tokens on row 0
    "chunks_skewed": ((200,), 0, (3, 20), f32, lambda rng: np.where(rng.random(200) < 0.6, 0, rng.integers(1, 3, 200))),
    "embedding_2d": ((3, 30), 0, (7, 48), f32, lambda rng: rng.integers(0, 7, (3, 30))),
    "inner_dim": ((40,), 1, (2, 4, 9), f32, lambda rng: rng.integers(1, 4, 40)),  # row 0 never hit
    "f64": ((50,), 0, (6, 20), f64, lambda rng: rng.integers(0, 6, 50)),
    "i64": ((48,), 0, (4, 17), i64, lambda rng: rng.integers(0, 4, 48)),
}


def _module(ishape: tuple[int, ...], dim: int, shape: tuple[int, ...], el: Attribute):
    ushape = (*shape[:dim], *ishape, *shape[dim + 1 :])
    return build(
        [t(*ushape, el=el), t(*ishape, el=i64)], lambda e, u, i: [e(pg.ScatterAddOp(u, i, dim, shape))]
    ), ushape


def _updates(rng: np.random.Generator, ushape: tuple[int, ...], el: Attribute) -> np.ndarray:
    if el == i64:
        return rng.integers(-50, 50, ushape).astype(np.int64)
    return rng.standard_normal(ushape).astype(np.float32 if el == f32 else np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_shared_rows_on_the_emulator(name: str, rng: np.random.Generator) -> None:
    ishape, dim, shape, el, draw = CASES[name]
    module, ushape = _module(ishape, dim, shape, el)
    rows = shape[dim]
    s = Scatter(rows, int(np.prod(shape)) // rows, int(np.prod(ishape)), 8 if el != f32 else 4)
    attr = choose(s, BLOCK)
    assert attr.strategy.data == "shared_rows", "the case must exercise shared_rows"
    program = compile_for_cuda(module)
    if name == "chunks_skewed":
        assert -(-s.adds // attr.count("chunk")) == 3
    program.assemble(strict=True)  # ptxas -arch=sm_90, spills are errors
    assert "red.shared.add" in program.ptx
    u, idx = _updates(rng, ushape, el), draw(rng).astype(np.int64)
    (got,) = run_program(program, [u, idx])
    _check(got, u, idx, dim, shape, ishape, el)
    hit = np.zeros(rows, bool)
    hit[np.unique(idx)] = True
    assert not np.any(np.take(got, np.flatnonzero(~hit), axis=dim)), "rows never hit stay zero"


@pytest.mark.parametrize("name", ["repeats_ragged", "embedding_2d", "inner_dim"])
def test_loop_stage_of_the_same_scatters(name: str, rng: np.random.Generator) -> None:
    """The loop interpreter on the loop stage of the same modules, against the numpy executor."""
    ishape, dim, shape, el, draw = CASES[name]
    module, ushape = _module(ishape, dim, shape, el)
    check(module, [_updates(rng, ushape, el), draw(rng).astype(np.int64)])


# --- on a GPU (-m gpu) ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gpt", *CASES])
def test_shared_rows_on_gpu(name: str, rng: np.random.Generator) -> None:
    """The cases above, and the GPT's embedding gradient (16384 tokens, a third of them on one row, into 65 x 384),
    on the GPU against float64 (to the f32 rounding of sums in any order)."""
    from picograd.runtime import cuda

    if not cuda.available():
        pytest.skip("needs an NVIDIA GPU")
    if name == "gpt":
        ishape, dim, shape, el = (64, 256), 0, (65, 384), f32
        idx = np.where(rng.random(ishape) < 0.3, 1, rng.integers(0, 60, ishape)).astype(np.int64)
    else:
        ishape, dim, shape, el, draw = CASES[name]
        idx = draw(rng).astype(np.int64)
    module, ushape = _module(ishape, dim, shape, el)
    program = compile_for_cuda(module)
    assert "red.shared.add" in program.ptx
    u = _updates(rng, ushape, el)
    exe = program.executable()
    (got,) = [o.to_numpy() for o in exe(cuda.DeviceBuffer.from_numpy(u), cuda.DeviceBuffer.from_numpy(idx))]
    _check(got, u, idx, dim, shape, ishape, el)
