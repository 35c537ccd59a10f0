"""The ``reduction`` kind's schedule table, and its two-stage schedules ``split_rows`` and ``split_columns``.

**The table** (:data:`RULES`, read by ``pg-schedule``'s ``reduction`` row through :func:`choose`): what a
``pg.sum``/``pg.max``/``pg.min`` kernel runs, from its number of output points, the reduced elements a point and its
*layout*: *rows* when the input's innermost dim (of extent > 1) is reduced (a point's elements are contiguous runs),
*columns* when it is kept (adjacent output points are adjacent in memory: a column sum ``[N, C] -> [C]``). The
first row that holds wins::

    strategy          when                                                      parameters
    thread_per_point  fewer than MIN_BLOCK_REDUCTION elements a point           block
    split_columns     columns, at least MIN_SPLITS chunks of MIN_COLUMN_CHUNK   splits, block
                      rows before SPLIT_THREADS threads are busy
    thread_per_point  columns (adjacent threads read adjacent columns)          block
    warp_per_row      rows, at most WARP_ROW_MAX elements a point and at least  block, unroll (elements a
                      WARP_ROW_POINTS points                                    lane's iteration takes)
    split_rows        rows, at least MIN_SPLITS chunks of MIN_ROW_CHUNK         splits, block
                      elements before SPLIT_BLOCKS blocks are busy
    block_per_row     rows                                                      block

``splits`` is the number of chunks the reduced range is cut into (a divisor of the reduced extent near the wanted
count where there is one, so that all chunks are equal).

**The split schedules** (``pg-split-reductions``, a rewrite of the loop stage ahead of ``pg-to-gpu``, through the
kind's ``split`` hook). The marked nest ``parallel p { pre; acc = for r... { ...; combine(acc, x) }; post(acc) }``
over ``K`` reduced points a point (``reduction.read_reduction`` takes it apart) becomes two nests and a scratch
buffer of the accumulator's type (``f32`` for 16-bit floats)::

    partials = memref.alloc() : memref<S x P... x T>
    parallel (s, p) { pre; acc = for j in [0, C) { k = s * C + j; <the reduced point k>; ...; combine(acc, x) };
                      partials[s, p] = acc }                                   // the partial nest
    parallel p { acc = for s in [0, S) { combine(acc, partials[s, p]) }; post(acc) }    // the combining nest
    memref.dealloc partials

with ``C = ceil(K / S)``. Where ``C * S > K`` the last chunk is ragged: ``k`` is clamped to ``K - 1``, ``x``
replaced by the combining op's identity and the side outputs (riders) stored only for ``k < K``. Each input
element is still visited once, and its side outputs stored once. Each nest carries the strategy it runs as its own
``kernel.schedule``: under ``split_rows`` the partial nest is ``block_per_row`` (a block per (chunk, point),
reading a contiguous run; a thread per (chunk, point) for chunks below ``MIN_BLOCK_REDUCTION``); under
``split_columns`` it is ``thread_per_point`` (a thread per (chunk, column), adjacent threads on adjacent columns:
coalesced); the combining nest is ``block_per_row`` when ``S`` is at least
``MIN_BLOCK_REDUCTION``, else ``thread_per_point``. The two-stage form is deterministic (fixed chunks, a fixed
combining order, no atomics: the same bits every run); its summation order differs from a one-stage one, as that
of every parallel reduction does. The ``pg.nest`` mark stays on both nests; the kernel's other nests (outputs of
other shapes) take ``thread_per_point``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from picograd.dialects import pg
from picograd.dialects.attrs import SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr, ScheduleValue
from picograd.passes.ir_builder import Builder, ConstantPool, const_int, delinearize
from picograd.passes.kinds.base import WARP, MalformedNest
from picograd.passes.kinds.reduction import MIN_BLOCK_REDUCTION, ReductionNest, read_reduction

SPLIT_ROWS = "split_rows"
SPLIT_COLUMNS = "split_columns"
STRATEGIES = (SPLIT_ROWS, SPLIT_COLUMNS)

SPLIT_BLOCKS = 1024
"""Blocks a row split aims at: an H100's 132 SMs hold 8 blocks of 256 threads each, and the loads in flight of all
of them are what hides the memory latency."""
SPLIT_THREADS = 1 << 18
"""Threads a column split aims at (132 SMs x 2048 resident threads, rounded up to a power of two)."""
MIN_ROW_CHUNK = 512
"""Reduced elements a block of a row split takes at least (2 a thread at 256 threads)."""
MIN_COLUMN_CHUNK = 16
"""Rows a thread of a column split takes at least."""
MIN_SPLITS = 4
"""Fewer chunks than this are not worth a second kernel."""
WARP_ROW_MAX = 1024
"""Reduced elements a point up to which a warp reduces it (32 a lane) rather than a block."""
WARP_ROW_POINTS = 1024
"""Output points from which a warp each (8 a block at 256 threads) keeps the GPU busy: below it a block each puts
more loads in flight."""
"""Fewer chunks than this are not worth a second kernel."""


# --- the table -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reduction:
    """What the table sees of a reduction: its output points, the reduced elements a point, and its layout."""

    points: int
    extent: int
    columns: bool

    @staticmethod
    def of(shape: Sequence[int], dims: Sequence[int]) -> Reduction:
        """The reduction of an input of ``shape`` over ``dims``."""
        extent = math.prod(shape[d] for d in dims)
        points = math.prod(n for d, n in enumerate(shape) if d not in dims)
        inner = [d for d, n in enumerate(shape) if n > 1]
        return Reduction(points, extent, bool(inner) and inner[-1] not in dims)

    def row_splits(self) -> int:
        """Chunks a row split cuts each point's range into (before rounding to a divisor)."""
        return min(-(-SPLIT_BLOCKS // max(self.points, 1)), self.extent // MIN_ROW_CHUNK)

    def column_splits(self) -> int:
        """Chunks a column split cuts each column into (before rounding to a divisor)."""
        return min(-(-SPLIT_THREADS // max(self.points, 1)), self.extent // MIN_COLUMN_CHUNK)


@dataclass(frozen=True)
class Rule:
    """A row of the table: the strategy, when it applies, and the chunks it cuts the range into (split rows)."""

    strategy: str
    when: Callable[[Reduction], bool]
    splits: Callable[[Reduction], int] | None = None


RULES: tuple[Rule, ...] = (
    Rule("thread_per_point", lambda r: r.extent < MIN_BLOCK_REDUCTION),
    Rule(SPLIT_COLUMNS, lambda r: r.columns and r.column_splits() >= MIN_SPLITS, Reduction.column_splits),
    Rule("thread_per_point", lambda r: r.columns),
    Rule("warp_per_row", lambda r: r.extent <= WARP_ROW_MAX and r.points >= WARP_ROW_POINTS),
    Rule(SPLIT_ROWS, lambda r: r.row_splits() >= MIN_SPLITS, Reduction.row_splits),
    Rule("block_per_row", lambda r: True),
)
"""The reduction kind's schedule table (see the module docstring); the first row that holds wins."""


def balanced_splits(extent: int, wanted: int) -> int:
    """The number of chunks to cut ``extent`` elements into for about ``wanted``: a divisor of ``extent`` between
    ``wanted / 2`` and ``wanted`` when there is one (equal chunks), else the count of chunks of
    ``ceil(extent / wanted)`` (the last one ragged)."""
    for d in range(wanted, max(1, (wanted + 1) // 2) - 1, -1):
        if extent % d == 0:
            return d
    chunk = -(-extent // wanted)
    return -(-extent // chunk)


def choose(r: Reduction, block: int, unroll: int = 1) -> ScheduleAttr:
    """The schedule of a ``pg.sum``/``pg.max``/``pg.min`` kernel (the first row of :data:`RULES` that holds), with
    ``block`` threads a block at most; ``warp_per_row`` takes ``unroll = u``, the largest power of two up to
    ``unroll`` that divides a lane's share of a row (``reduction._unroll``: ``u`` elements' loads in flight a
    lane)."""
    rule = next(rule for rule in RULES if rule.when(r))
    if rule.strategy == "warp_per_row":
        u = unroll
        while u > 1 and r.extent % (WARP * u):
            u //= 2
        return ScheduleAttr(rule.strategy, {"block": block, "unroll": u} if u > 1 else {"block": block})
    if rule.splits is None:
        return ScheduleAttr(rule.strategy, {"block": block})
    return ScheduleAttr(rule.strategy, {"splits": balanced_splits(r.extent, rule.splits(r)), "block": block})


def reduction_of(op: pg.ReduceOp) -> Reduction:
    """The table's view of ``op``."""
    return Reduction.of(pg.shape_of(op.input), op.dim_list)


# --- the split -------------------------------------------------------------------------------------------------


def combining_strategy(splits: int) -> str:
    """The strategy of the combining nest over ``splits`` partial results."""
    return "block_per_row" if splits >= MIN_BLOCK_REDUCTION else "thread_per_point"


def _rewire(op: Operation, mapping: dict[SSAValue, SSAValue]) -> None:
    """Replace the operands of ``op`` and of the ops nested in it that ``mapping`` maps."""
    for o in op.walk():
        for i, v in enumerate(o.operands):
            if v in mapping:
                o.operands[i] = mapping[v]


def _slice(ops: Sequence[Operation], pre: Sequence[Operation]) -> list[Operation]:
    """The ops of ``pre`` that ``ops`` (and the ops nested in them) depend on, in ``pre``'s order."""
    inside = set(pre)
    needed: set[Operation] = set()
    todo = [v for op in ops for o in op.walk() for v in o.operands]
    while todo:
        owner = todo.pop().owner
        if isinstance(owner, Operation) and owner in inside and owner not in needed:
            needed.add(owner)
            todo.extend(owner.operands)
    return [op for op in pre if op in needed]


def split_nest(par: scf.ParallelOp, schedule: ScheduleAttr) -> None:
    """Replace the marked reduction nest ``par`` by the two nests of the split schedule ``schedule``
    (``split_rows``/``split_columns``, with ``splits`` and ``block``), as the module docstring says. Raises
    ``MalformedNest`` for a nest not of the reduction kind's form."""
    red = read_reduction(par)
    if red is None:
        raise MalformedNest("is not of the form the reduction kind emits (kinds/reduction.py)")
    if schedule.strategy.data not in STRATEGIES or schedule.count("splits", 0) < 1:
        raise MalformedNest(f"has a split schedule {schedule} without a count of splits")
    k_total = red.extent
    chunk = -(-k_total // schedule.count("splits"))
    splits = -(-k_total // chunk)
    block: dict[str, ScheduleValue] = {"block": schedule.count("block", 256)}
    extents = []
    for lb, ub, st in zip(par.lowerBound, par.upperBound, par.step, strict=True):
        lo, hi, step = const_int(lb), const_int(ub), const_int(st)
        if lo is None or hi is None or step is None:
            raise MalformedNest("has bounds that are not constants")
        extents.append(max(0, -(-(hi - lo) // step)))
    host = par.parent_block()
    assert host is not None
    hb = Builder(InsertPoint.before(par), par.location, ConstantPool(host))
    t = red.init.type
    partials = hb.v(memref.AllocOp.get(t, None, [splits, *extents]))
    rows = schedule.strategy.data == SPLIT_ROWS
    partial_strategy = "block_per_row" if rows and chunk >= MIN_BLOCK_REDUCTION else "thread_per_point"

    def nest(lbs: list[SSAValue], ubs: list[SSAValue], steps: list[SSAValue], strategy: str) -> Block:
        block_ = Block(arg_types=[IndexType()] * len(lbs))
        block_.add_op(scf.ReduceOp())
        op = scf.ParallelOp(lbs, ubs, steps, Region(block_))
        op.attributes.update(par.attributes)
        op.attributes[SCHEDULE_ATTR] = ScheduleAttr(strategy, block)
        hb.op(op)
        block_.last_op.location = par.location  # type: ignore[union-attr]
        return block_

    first = nest(
        [hb.index(0), *par.lowerBound], [hb.index(splits), *par.upperBound], [hb.index(1), *par.step], partial_strategy
    )
    second = nest(list(par.lowerBound), list(par.upperBound), list(par.step), combining_strategy(splits))
    hb.op(memref.DeallocOp.get(partials))
    _combining(red, par, second, partials, splits, hb)
    _partial(red, par, first, partials, chunk, k_total, hb)
    host.erase_op(par, safe_erase=False)


def _combining(
    red: ReductionNest, par: scf.ParallelOp, body: Block, partials: SSAValue, splits: int, hb: Builder
) -> None:
    """The combining nest: a loop over the partial results of the point, then the reduction's ``post`` ops."""
    b = Builder(InsertPoint.before(body.last_op), hb.loc, hb.consts)  # type: ignore[arg-type]
    ivs = list(body.args)
    mapping: dict[SSAValue, SSAValue] = dict(zip(par.body.block.args, ivs, strict=True))
    for op in _slice(red.post, red.pre):
        clone = op.clone(value_mapper=mapping)
        b.op(clone)
        mapping.update(zip(op.results, clone.results, strict=True))
    t = red.init.type
    loop_block = Block(arg_types=[IndexType(), t])
    loop = scf.ForOp(b.index(0), b.index(splits), b.index(1), [red.init], Region(loop_block))
    b.op(loop)
    lb = b.at(loop_block)
    x = lb.v(memref.LoadOp.get(partials, [loop_block.args[0], *ivs]))
    combine_type: Any = type(red.combine)
    lb.op(scf.YieldOp(lb.v(combine_type(loop_block.args[1], x))))
    mapping[red.loops[0].op.results[0]] = loop.results[0]
    for op in red.post:
        op.detach()
        Rewriter.insert_op(op, b.ip)
        _rewire(op, mapping)


def _partial(
    red: ReductionNest,
    par: scf.ParallelOp,
    body: Block,
    partials: SSAValue,
    chunk: int,
    k_total: int,
    hb: Builder,
) -> None:
    """The partial nest: ``pre``, one loop over the chunk's reduced points (the levels' ops moved into it), the
    store of the partial result."""
    b = Builder(InsertPoint.before(body.last_op), hb.loc, hb.consts)  # type: ignore[arg-type]
    s, *ivs = body.args
    for op in red.pre:
        op.detach()
        Rewriter.insert_op(op, b.ip)
    for old, new in zip(par.body.block.args, ivs, strict=True):
        old.replace_all_uses_with(new)
    for op in reversed(red.pre):  # what only the post ops (now in the combining nest) used
        if not any(r.uses for r in op.results):
            op.detach()
            op.erase()
    base = b.v(arith.MuliOp(s, b.index(chunk)))
    t = red.init.type
    loop_block = Block(arg_types=[IndexType(), t])
    loop = scf.ForOp(b.index(0), b.index(chunk), b.index(1), [red.init], Region(loop_block))
    b.op(loop)
    lb = b.at(loop_block)
    k = lb.v(arith.AddiOp(base, loop_block.args[0]))
    valid: SSAValue | None = None
    if chunk * (-(-k_total // chunk)) != k_total:  # a ragged last chunk: clamp, combine the identity, store nothing
        valid = lb.v(arith.CmpiOp(k, lb.index(k_total), "ult"))
        k = lb.v(arith.MinUIOp(k, lb.index(k_total - 1)))
    for level, j in zip(red.loops, delinearize(lb, k, [level.extent for level in red.loops]), strict=True):
        iv = j
        if level.step != 1:
            iv = lb.v(arith.MuliOp(iv, lb.index(level.step)))
        if level.lb:
            iv = lb.v(arith.AddiOp(iv, lb.index(level.lb)))
        level.op.body.block.args[0].replace_all_uses_with(iv)
    innermost = red.loops[-1].op.body.block
    acc = innermost.args[1]
    acc.replace_all_uses_with(loop_block.args[1])
    moved = [op for level in red.loops for op in level.pre]
    for op in moved:
        op.detach()
        Rewriter.insert_op(op, lb.ip)
    if valid is not None:
        combine = red.combine
        (i,) = [i for i, v in enumerate(combine.operands) if v is not loop_block.args[1]]
        pick = arith.SelectOp(valid, combine.operands[i], red.init)
        Rewriter.insert_op(pick, InsertPoint.before(combine))
        pick.location = combine.location
        combine.operands[i] = pick.result
        for op in moved:
            if isinstance(op, memref.StoreOp):  # a side output
                guard = Builder(InsertPoint.before(op), op.location, hb.consts).when(valid)
                assert guard is not None
                op.detach()
                Rewriter.insert_op(op, guard.ip)
    lb.op(scf.YieldOp(red.combine.results[0]))
    b.op(memref.StoreOp.get(loop.results[0], partials, [s, *ivs]))
