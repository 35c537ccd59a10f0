"""What a kernel kind module provides (:class:`KernelKind`), and what the lowering passes hand to its hooks.

A kind is one record, ``KIND = KernelKind(...)`` in its module, registered by a row of
``picograd.passes.kinds.KERNEL_KINDS``. Every hook is optional; a kind without any lowers like ``elementwise``
(its values computed at each point of a ``thread_per_point`` nest per output shape).

- ``ops``: the ``pg`` ops whose result gets a loop nest (and a buffer) of its own inside a kernel (the *heavy* ops
  of ``pg-to-loops``); each op type belongs to one kind.
- ``to_loops(lowering, op, out, riders)``: emits the nests computing ``op`` into buffer ``out`` with the
  ``pg-to-loops`` emitter ``lowering`` (``picograd.passes.to_loops.KernelLowering``: ``parallel``, ``loops``,
  ``at``, ``store``, ``const``, ...). The nest that a schedule strategy applies to is opened with
  ``lowering.parallel(shape, nest=<kind name>)``, which records ``pg.nest`` (``attrs.NEST_ATTR``) on it: the
  decision that this nest has the form the kind documents, so no later pass has to recognise it. When the kind's
  GPU mapping reads the nest back (``reduction.read_reduction``, ``matmul.read_matmul``), ``to_loops`` calls
  ``keep_mark(lowering.last_nest, readable)`` after emitting it, so that a nest the emitter's hoisting made
  unreadable stays unmarked (a thread per point) instead of failing later.
- ``lower_kernel(lowering)``: ``pg-to-loops`` of a whole ``kernel.launch`` of this kind, for a kind whose ops
  share nests (``attention``: the fused FlashAttention kernels); it emits every nest of the kernel with
  ``lowering``, which then moves them to where the launch was. ``ops`` and ``to_loops`` are then unused.
- ``riders(op)``: the shape of the kernel's other outputs that may be computed in the innermost loop of ``op``'s
  nest (one pass over the data; ``riders`` of ``to_loops``), or None.
- ``at_index``: ``{op type: fn(lowering, op, idx) -> value}``, light ops of the kind computed at an index inside
  their consumer's loop body (``pg.gather``).
- ``gpu``: ``{strategy name: fn(nest: GpuNest) -> (grid blocks, threads) | None}``: ``pg-to-gpu``'s mapping of a
  nest marked with this kind under that strategy (``block_per_row``, ``atomic``); None when the nest does not
  allow it (it then takes ``thread_per_point``). ``unscheduled`` names the strategy a marked nest without a
  ``kernel.schedule`` (loop-stage IR written by hand) takes, when ``pg-to-gpu``'s options allow it.
- ``tile(par, schedule)``: ``pg-matmul-schedule``'s hook: replaces a marked nest by a ``gpu.launch`` (which
  ``pg-to-gpu`` outlines as it stands) under the ``#kernel.schedule`` it carries, or, without one, under the
  pass's ``schedule`` option; returns False to leave the nest to ``pg-to-gpu``.
- ``split``: ``{strategy name: fn(par, schedule)}``: ``pg-split-reductions``' hook for a strategy that the loop
  stage realises as several nests (the two stages of ``split_rows``/``split_columns``): replaces the marked nest
  ``par`` by nests that each carry the ``kernel.schedule`` of a strategy ``pg-to-gpu`` maps; raises
  ``MalformedNest`` for a nest not of the kind's form.
- ``strategies``: the schedule strategies the kind's hooks lower (documentation and checks).

How a kind's schedule is *chosen* stays in ``pg-schedule``'s table (``picograd.passes.schedule.KIND_SCHEDULES``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import Rewriter
from xdsl.traits import is_side_effect_free

from picograd.dialects import gpu_ext
from picograd.dialects.attrs import NEST_ATTR
from picograd.passes.ir_builder import Builder, const_int

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

WARP = gpu_ext.WARP_SIZE


@dataclass
class GpuNest:
    """A loop nest being mapped to a kernel by ``pg-to-gpu``: the ``scf.parallel``, a builder for the (empty)
    kernel body, the lower bound and step of each parallel dim, their extents, the most threads a block, and the
    schedule's ``unroll`` (elements a thread's loop iteration takes: ``warp_per_row``)."""

    par: scf.ParallelOp
    b: Builder
    dims: list[tuple[int, int]]
    extents: list[int]
    block_size: int
    unroll: int = 1

    def block_for(self, points: int) -> int:
        """Threads a block for ``points`` threads in all: a multiple of 32, at most ``block_size``."""
        return min(self.block_size, max(WARP, -(-points // WARP) * WARP))

    def thread_ids(self) -> tuple[SSAValue, SSAValue]:
        """``blockIdx.x`` and ``threadIdx.x``."""
        bid = self.b.v(gpu.BlockIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X)))
        tid = self.b.v(gpu.ThreadIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X)))
        return bid, tid

    def global_thread(self, total: int) -> tuple[int, int, Builder, SSAValue]:
        """A 1-D grid of ``total`` threads: (grid blocks, threads a block, a builder inside the bounds check, the
        thread's linear index)."""
        threads = self.block_for(total)
        grid = -(-total // threads)
        b = self.b
        bid, tid = self.thread_ids()
        lin = b.v(arith.AddiOp(b.v(arith.MuliOp(bid, b.index(threads))), tid))
        ok = b.v(arith.CmpiOp(lin, b.index(total), "ult"))
        _, then, _ = b.if_(ok)
        return grid, threads, then, lin


def keep_mark(par: scf.ParallelOp | None, readable: bool) -> None:
    """Drop the ``pg.nest`` mark of the nest a kind just emitted unless its reader takes it apart: the loop
    emitter hoists loop-invariant ops out of inner loops as it goes, and a nest whose hoisted ops (a branch, a
    store) the kind's GPU strategies cannot move is left to ``thread_per_point``, decided here, once."""
    if par is not None and not readable:
        del par.attributes[NEST_ATTR]


class MalformedNest(ValueError):
    """A nest marked ``pg.nest = <kind>`` that is not of the form the kind's loop lowering emits."""


Riders = Sequence[tuple[SSAValue, SSAValue]]
"""(value, output buffer) pairs stored in the innermost loop of a reduction's nest."""


@dataclass(frozen=True)
class KernelKind:
    """One kernel kind (see the module docstring for what each hook does)."""

    name: str
    doc: str
    ops: tuple[type[Operation], ...] = ()
    to_loops: Callable[[KernelLowering, Any, SSAValue, Riders], None] | None = None
    lower_kernel: Callable[[KernelLowering], None] | None = None
    riders: Callable[[Any], tuple[int, ...] | None] | None = None
    at_index: Mapping[type[Operation], Callable[[KernelLowering, Any, tuple[SSAValue, ...]], SSAValue]] = field(
        default_factory=dict
    )
    gpu: Mapping[str, Callable[[GpuNest], tuple[int, int] | None]] = field(default_factory=dict)
    unscheduled: str | None = None
    tile: Callable[[scf.ParallelOp, Any], bool] | None = None
    split: Mapping[str, Callable[[scf.ParallelOp, Any], None]] = field(default_factory=dict)
    strategies: tuple[str, ...] = ("thread_per_point",)


def inline_body(par: scf.ParallelOp, b: Builder, ivs: Sequence[SSAValue]) -> None:
    """Move the body of ``par`` to ``b``'s insertion point, its induction variables replaced by ``ivs``."""
    block = par.body.block
    terminator = block.last_op
    assert terminator is not None
    block.erase_op(terminator)
    Rewriter.inline_block(block, b.ip, ivs)


# --- reading the nests the kinds emit -----------------------------------------------------------------------------


@dataclass
class ForLevel:
    """One ``scf.for`` of a marked nest: its op, constant bounds, and the ops before its inner loop (or its whole
    body, for the innermost)."""

    op: scf.ForOp
    lb: int
    ub: int
    step: int
    pre: list[Operation]

    @property
    def extent(self) -> int:
        return max(0, -(-(self.ub - self.lb) // self.step))


def for_bounds(op: scf.ForOp) -> tuple[int, int, int] | None:
    lb, ub, step = const_int(op.lb), const_int(op.ub), const_int(op.step)
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return lb, ub, step


def reads_only(ops: Sequence[Operation]) -> bool:
    """No op writes memory or holds a region (loads are fine: they read buffers no thread of the nest writes;
    ``arith.remui`` too, which xDSL 0.74 declares without the ``Pure`` trait that its siblings have)."""
    for op in ops:
        if isinstance(op, memref.LoadOp | arith.RemUIOp):
            continue
        if not is_side_effect_free(op) or op.regions:
            return False
    return True


def for_levels(first: scf.ForOp, carried: int) -> list[ForLevel] | None:
    """The levels of the ``scf.for`` nest starting at ``first`` (``pg-to-loops``' ``loops``: one loop per level,
    each level's loop carrying ``carried`` values unchanged into the next and yielding its results), or None when
    an op hoisted between two levels writes memory or branches (a strategy that reorders the iterations of the
    levels cannot move it)."""
    levels: list[ForLevel] = []
    loop = first
    while True:
        bounds = for_bounds(loop)
        if bounds is None or len(loop.results) != carried:
            return None
        body = loop.body.block
        ops = list(body.ops)
        yld = ops[-1]
        inner = [op for op in ops[:-1] if isinstance(op, scf.ForOp)]
        if not inner:
            levels.append(ForLevel(loop, *bounds, ops[:-1]))
            return levels
        nested = inner[0]
        if len(inner) != 1 or ops[-2] is not nested or list(yld.operands) != list(nested.results):
            return None
        if list(nested.iter_args) != list(body.args[1:]) or not reads_only(ops[:-2]):
            return None
        levels.append(ForLevel(loop, *bounds, ops[:-2]))
        loop = nested


def n_uses(v: SSAValue) -> int:
    return sum(1 for _ in v.uses)
