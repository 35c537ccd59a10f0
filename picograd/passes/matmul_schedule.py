"""``pg-matmul-schedule``: the matmul loop nests of the loop stage become tiled GPU kernels (``gpu.launch``).

Input: the loop stage (``pg-to-loops``), where a ``pg.matmul`` is one ``scf.parallel`` over (batch..., M, N) marked
``pg.nest = "matmul"`` by the matmul kind (``picograd/passes/kinds/matmul.py``, which documents the form it emits
and reads: an ``scf.for`` over K accumulating ``acc + a * b`` and a store of the sum; ``a`` and ``b`` any
side-effect-free expression of (batch, m, k) and (batch, k, n)). Output: each nest marked by a kind with a
``tile`` hook (the registry, ``picograd.passes.kinds``) becomes a ``gpu.launch`` (MLIR's form of a kernel before
outlining; ``pg-to-gpu`` outlines it) that runs the schedule below on a grid of ``(ceil(N / BN), ceil(M / BM),
batch)`` thread blocks. Other nests are left to ``pg-to-gpu``; no nest is recognised by its shape.

**The schedules** (the rungs of the SGEMM ladder in Simon Boehm, "How to Optimize a CUDA Matmul Kernel for
cuBLAS-like Performance", 2022; the CUTLASS warp-level hierarchy in NVIDIA, "CUTLASS: Fast Linear Algebra in
CUDA C++", 2017). A schedule is data (``picograd.passes.schedule.Schedule``): the warps of a block, the lanes of
a warp and the outputs of a thread along (M, N), the K tile, and three switches::

    name       block tile (MxNxK)  threads  outputs/thread  operands
    naive      32x8                256      1               global, consecutive threads along M (uncoalesced)
    coalesced  8x32                256      1               global, consecutive threads along N
    smem       32x32x32            1024     1               shared-memory tiles
    regtile    128x128x8           256      8x8             shared-memory tiles, 16-byte loads, 2-D register tile
    warptile   128x128x16          256      8x8 = 2x2 4x4   as regtile, each warp owns a 64x32 tile
    cp-async   128x128x16          256      8x8 = 2x2 4x4   as warptile, tiles copied with cp.async, 2 stages

- *Threads* are numbered along the block's warps (row-major over ``warps``), then lanes (row-major over
  ``lanes``); a thread owns ``reps`` fragments of ``vec`` contiguous outputs in each direction, the fragments
  ``lanes * vec`` apart, so the accumulators (``TM x TN`` of them) are ``scf.for`` iteration values, i.e. registers.
- *Shared-memory tiles* (``bk > 0``): each K step, the block copies an ``BM x BK`` tile of A and a ``BK x BN`` tile
  of B into workgroup memory, stored K-major (``tile[k][m]``) so that a thread reads its fragment of a row with
  16-byte loads; then every thread runs the unrolled ``BK`` steps of its outer products. A tile whose memory order
  is the other way round (A row-major, or a transposed B) is transposed on its way through registers; its rows are
  padded by 4 elements so that the transposing stores do not collide in one bank.
- *16-byte loads* (``vector``): f32 operands that are plain loads, whose contiguous dimension is a multiple of 4,
  are read from global memory as ``gpu_ext.vector_load`` of 4 elements (``ld.global.v4.f32``); fragments are read
  from shared memory the same way, and outputs are written 4 at a time.
- *cp.async* (``async_copy``): two stages of shared memory. Each K step issues the copies of the next tile into
  the other stage (``gpu_ext.async_copy``: 16 bytes at a time where the tile keeps its memory order; a transposed
  f32 tile goes through registers with 16-byte loads, read before the step's outer products and stored after
  them), computes on the current stage, then waits for its copies (``async_wait pending 0``) and meets the other
  threads at one barrier. Operands that are not plain loads take the register path too. A K tile is halved
  where the stages would not fit in 48 KiB of static shared memory (f64).

**Limits.** A schedule is adapted to f64 (half the K tile, to fit 48 KiB of static shared memory; half the
outputs per thread, so the accumulators fit in registers). A nest whose grid would exceed CUDA's 65535 blocks in
y (M tiles) or z (batch), or with K = 0, is left to ``pg-to-gpu``'s one thread per output on a 1-D grid, even when
a rung is forced (``pg-schedule`` records ``thread_per_point`` for it).

**Edge tiles.** Sizes need not divide the tiles: operand elements outside the matrix are read as zero (indices are
clamped into range and the value selected, so no load leaves the buffer; ``cp.async`` copies zero bytes of them),
and outputs outside it are not stored. A 16-byte access is used only where the contiguous extent is a multiple of
4, so a vector is either wholly inside or wholly outside the matrix.

**Choosing** is ``pg-schedule``'s (``picograd/passes/schedule.py``, where the table of rungs lives): each nest
carries its kernel's ``#kernel.schedule`` (``kernel.schedule``, copied by ``pg-to-loops``), and this pass builds the
rung it names, with the sizes it records (``auto``'s 64x64 tile, an f64 rung's halved K tile and outputs); a nest
scheduled ``thread_per_point`` is left to ``pg-to-gpu``. A nest without the attribute (loop-stage IR written by
hand, as in the tests) takes the rung of option ``schedule`` (``auto`` or a rung's name, chosen and fitted by the
same table). The ``gpu.launch`` records the rung (``pg.schedule``) and the tile (``pg.tile``).

Raises ``PassFailedException`` for an unknown schedule name, a malformed schedule attribute, a nest scheduled with a
rung that is not marked as a matmul nest, and a marked nest that is not of the matmul kind's form.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects.attrs import NEST_ATTR, SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where
from picograd.passes.kinds import KERNEL_KINDS, TILE_STRATEGIES
from picograd.passes.kinds.base import MalformedNest
from picograd.passes.kinds.matmul_rungs import check_schedule


@dataclass(frozen=True)
class PgMatmulSchedule(ModulePass):
    """Tile the marked matmul nests of the loop stage into ``gpu.launch`` kernels (see the module docstring): each
    nest the rung its ``kernel.schedule`` attribute names (``pg-schedule`` chose it), none where it names
    ``thread_per_point``. Nests without the attribute (loop-stage IR written by hand) take the rung of option
    ``schedule``: ``auto`` (the default) or one of ``naive``, ``coalesced``, ``smem``, ``regtile``, ``warptile``,
    ``cp-async``."""

    name = "pg-matmul-schedule"
    schedule: str = "auto"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            check_schedule(self.schedule)
        except ValueError as e:
            raise PassFailedException(f"pg-matmul-schedule: {e}") from None
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            for par in [p for p in fn.body.block.ops if isinstance(p, scf.ParallelOp)]:
                attr = par.attributes.get(SCHEDULE_ATTR)
                mark = par.attributes.get(NEST_ATTR)
                kind = KERNEL_KINDS.get(mark.data) if isinstance(mark, StringAttr) else None
                tiled = isinstance(attr, ScheduleAttr) and attr.strategy.data in TILE_STRATEGIES
                if kind is None or kind.tile is None:
                    if tiled:
                        raise PassFailedException(
                            f"pg-matmul-schedule: a loop nest{where(par)} is scheduled {attr} but is not a matmul nest"
                        )
                    continue
                try:
                    kind.tile(par, self.schedule)
                except MalformedNest as e:
                    scheduled = f" is scheduled {attr} but" if tiled else ""
                    raise PassFailedException(f"pg-matmul-schedule: a loop nest{where(par)}{scheduled} {e}") from None
                except (ValueError, KeyError) as e:
                    raise PassFailedException(f"pg-matmul-schedule: {e}{where(par)}") from None
