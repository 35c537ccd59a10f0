"""The ``scatter_add`` kind (``pg.scatter_add``: ``out[..., indices[j...], ...] += updates[..., j..., ...]`` along
``dim``, into zeros).

**Loops** (``pg-to-loops``). A nest storing zeros into the output (unmarked: a thread per point), then an
``scf.parallel`` over the dims outside ``dim`` (the *columns*), marked ``pg.nest = "scatter_add"``, whose body is
one ``scf.for`` nest over the index tuples (``lowering.loops``, carrying nothing) and, innermost, the
read-modify-write ``load``, ``addf``/``addi``, ``store`` of one output element (repeated indices accumulate in
order, no races).

**The table** (:data:`RULES`, read by ``pg-schedule`` through :func:`choose`), from the output's *rows* (its
extent along ``dim``), its columns and the index tuples (*adds*); the first row that holds wins::

    strategy     when                                                         parameters
    shared_rows  a table of rows x COLUMNS accumulators fits MAX_TABLE_BYTES,  chunk: index tuples a block
                 at least MIN_ADDS_PER_ROW adds a row, at least MIN_COLUMNS     takes, block
                 columns (an embedding's gradient: 16384 tokens into 65 rows)
    atomic       otherwise (a 50K-row vocabulary, a one-hot scatter)          block

**GPU** (``pg-to-gpu``), on the marked nest:

- ``atomic``: the index loops join the parallel dims, one thread per (index tuple, column), the columns innermost
  (a warp reads 32 adjacent updates and adds into 32 adjacent elements of one row), and the read-modify-write
  becomes ``memref.atomic_rmw addf``/``addi`` (``red.global.add``): many threads may hit one row, and the order of
  the additions into one element is then unspecified.
- ``shared_rows`` (privatized rows, for few-row tables): a block per (slice of COLUMNS columns, chunk of ``chunk``
  index tuples); lane ``l`` of each warp owns column ``slice * COLUMNS + l`` and warp ``g`` of ``G`` takes the
  chunk's tuples ``g, g + G, ...``, UNROLL at a time (their loads first, then their adds). The block's rows live in
  workgroup memory (``rows x COLUMNS``, zeroed first): each add is a ``red.shared.add`` of the tuple's update into
  its row (warps of the block may hit one row together; lanes never collide). After a barrier each thread adds its
  column of the block's table into the output with one ``red.global.add`` per row the chunk hit (non-zero). Global
  atomics drop from one per update to one per (chunk, row, column), and no two lanes of a warp contend. The order of
  the additions is unspecified, as under ``atomic``. A tuple past the end (a ragged last chunk) reads the last
  tuple's row and adds zero; a column past the end (a ragged last slice) reads the last column and adds zero.

The zero fill stays a ``thread_per_point`` kernel launched before either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, IntegerType, MemRefType, i64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from picograd.dialects import gpu_ext, pg
from picograd.dialects.attrs import SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import element_bytes
from picograd.passes.ir_builder import Builder, affine, delinearize
from picograd.passes.kinds.base import (
    WARP,
    ForLevel,
    GpuNest,
    KernelKind,
    Riders,
    for_levels,
    keep_mark,
    n_uses,
    reads_only,
)
from picograd.passes.kinds.elementwise import thread_per_point

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

NAME = "scatter_add"
ATOMIC = "atomic"
SHARED_ROWS = "shared_rows"
STRATEGIES = (ATOMIC, SHARED_ROWS)

COLUMNS = WARP
"""Columns a ``shared_rows`` block covers: a warp's lanes on adjacent columns (coalesced reads of the updates)."""
MAX_TABLE_BYTES = 16 * 1024
"""The most workgroup memory a ``shared_rows`` block's table takes (rows x COLUMNS accumulators): 16 KiB leaves room
for 8 blocks of 256 threads an SM (2048 threads, the most an H100 SM holds) in its 228 KiB."""
MIN_ADDS_PER_ROW = 8
"""Index tuples a row below which privatizing the rows does not pay (each block flushes its whole table)."""
MIN_COLUMNS = 16
"""Columns below which most lanes of a ``shared_rows`` warp would idle."""
UNROLL = 4
"""Index tuples a thread of ``shared_rows`` loads before it adds them (loads in flight a thread)."""
TARGET_BLOCKS = 1024
"""Blocks a ``shared_rows`` grid aims at: one wave of 8 blocks on each of an H100's 132 SMs (fewer chunks mean fewer
global atomics; more blocks, more loads in flight)."""

ATOMIC_KIND: dict[type[Operation], int] = {arith.AddfOp: 0, arith.AddiOp: 1}
"""``memref.atomic_rmw`` kinds (MLIR's ``AtomicRMWKind``: addf = 0, addi = 1) of the scatter-add combine ops."""


@dataclass(frozen=True)
class Scatter:
    """What the table sees of a scatter-add: the output's rows (its extent along ``dim``), its columns (the product of
    its other dims), the index tuples, and the bytes of an accumulator."""

    rows: int
    columns: int
    adds: int
    element_bytes: int

    @staticmethod
    def of(op: pg.ScatterAddOp) -> Scatter:
        shape = pg.shape_of(op.result)
        rows = shape[op.dim_index]
        nbytes = max(4, element_bytes(pg.element_of(op.result)))  # 16-bit floats accumulate in f32
        return Scatter(rows, math.prod(shape) // max(rows, 1), math.prod(pg.shape_of(op.indices)), nbytes)

    def chunk(self, block: int) -> int:
        """Index tuples a ``shared_rows`` block takes: enough chunks for about TARGET_BLOCKS blocks, each thread
        taking at least two rounds of UNROLL tuples, a whole number of rounds (G warps x UNROLL tuples)."""
        rounds = (block // COLUMNS) * UNROLL
        slices = -(-self.columns // COLUMNS)
        wanted = max(1, min(-(-TARGET_BLOCKS // slices), self.adds // (2 * rounds)))
        per_block = -(-self.adds // wanted)
        return -(-per_block // rounds) * rounds


@dataclass(frozen=True)
class Rule:
    """A row of the table: the strategy and when it applies."""

    strategy: str
    when: Callable[[Scatter], bool]


RULES: tuple[Rule, ...] = (
    Rule(
        SHARED_ROWS,
        lambda s: (
            s.rows * COLUMNS * s.element_bytes <= MAX_TABLE_BYTES
            and s.adds >= MIN_ADDS_PER_ROW * s.rows
            and s.columns >= MIN_COLUMNS
            and s.adds * s.columns < 2**31
        ),
    ),
    Rule(ATOMIC, lambda s: True),
)
"""The scatter-add kind's schedule table (see the module docstring); the first row that holds wins."""


def choose(s: Scatter, block: int) -> ScheduleAttr:
    """The schedule of a scatter-add kernel with an index loop (the first row of :data:`RULES` that holds), with
    ``block`` threads a block."""
    rule = next(rule for rule in RULES if rule.when(s))
    if rule.strategy == SHARED_ROWS:
        return ScheduleAttr(SHARED_ROWS, {"chunk": s.chunk(block), "block": block})
    return ScheduleAttr(rule.strategy, {"block": block})


def to_loops(lw: KernelLowering, op: pg.ScatterAddOp, out: SSAValue, riders: Riders) -> None:
    shape, d = pg.shape_of(op.result), op.dim_index
    ishape = pg.shape_of(op.indices)
    el = pg.element_of(op.result)
    floating = pg.is_float(el)
    with lw.parallel(shape) as ivs:
        lw.store(lw.const(0.0 if floating else 0, el), out, tuple(ivs))
    outer = [*shape[:d], *shape[d + 1 :]]
    with lw.parallel(outer, nest=NAME) as ivs:
        pre, post = ivs[:d], ivs[d:]

        def body(js: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            i = lw.at(op.indices, tuple(js))
            pos = lw.convert(arith.IndexCastOp, i, IndexType())
            where_ = (*pre, pos, *post)
            u = lw.at_wide(op.updates, (*pre, *js, *post))  # bf16/f16: added in f32, the sum rounded once
            old = lw.wide(lw.emit(memref.LoadOp.get(out, where_)).results[0])
            new = lw.emit((arith.AddfOp if floating else arith.AddiOp)(old, u)).results[0]
            lw.store(lw.narrow(new, el), out, where_)
            return []

        lw.loops([(0, n) for n in ishape], [], body)
    keep_mark(lw.last_nest, lw.last_nest is not None and read_scatter(lw.last_nest) is not None)


@dataclass
class ScatterNest:
    """The parts of a marked scatter nest: its index loops and the load / add / store of one output element."""

    loops: list[ForLevel]
    load: memref.LoadOp
    add: Operation
    store: memref.StoreOp


def read_scatter(par: scf.ParallelOp) -> ScatterNest | None:
    """The parts of the marked nest ``par`` in the form ``to_loops`` emits; None where ``atomic`` cannot run its
    iterations in any order (ops hoisted between the index loops that write memory or branch, a nest written by
    hand that differs, or an integer add that PTX has no atomic for)."""
    ops = list(par.body.block.ops)[:-1]
    if len(ops) != 1 or not isinstance(ops[0], scf.ForOp):
        return None
    loops = for_levels(ops[0], 0)
    if loops is None:
        return None
    body = loops[-1].pre
    stores = [op for op in body if isinstance(op, memref.StoreOp)]
    if len(stores) != 1 or not reads_only([op for op in body if op is not stores[0]]):
        return None
    store = stores[0]
    others = [op for level in loops for op in level.pre if isinstance(op, memref.LoadOp) and op.memref == store.memref]
    if len(others) != 1:  # the nest reads the output only for the read-modify-write
        return None
    add = store.value.owner
    if not isinstance(add, arith.AddfOp | arith.AddiOp) or n_uses(store.value) != 1:
        return None
    for old in (add.lhs, add.rhs):
        load = old.owner
        if (
            isinstance(load, memref.LoadOp)
            and load.memref == store.memref
            and list(load.indices) == list(store.indices)
            and n_uses(old) == 1
        ):
            t = add.result.type  # type: ignore[attr-defined]
            if isinstance(add, arith.AddiOp) and not (isinstance(t, IntegerType) and t.width.data in (32, 64)):
                return None
            return ScatterNest(loops, load, add, store)
    return None


def atomic(nest: GpuNest) -> tuple[int, int] | None:
    sc = read_scatter(nest.par)
    if sc is None:
        return None
    par, dims, extents = nest.par, nest.dims, nest.extents
    loops = sc.loops
    all_extents = [*(level.extent for level in loops), *extents]  # the columns innermost: adjacent threads, elements
    grid, threads, then, lin = nest.global_thread(math.prod(all_extents))
    idx = delinearize(then, lin, all_extents)
    loop_ivs = [affine(then, j, level.lb, level.step) for j, level in zip(idx[: len(loops)], loops, strict=True)]
    ivs = [affine(then, j, lb, st) for j, (lb, st) in zip(idx[len(loops) :], dims, strict=True)]
    for level, iv in zip(loops, loop_ivs, strict=True):
        level.op.body.block.args[0].replace_all_uses_with(iv)
    for i, arg in enumerate(par.body.block.args):
        arg.replace_all_uses_with(ivs[i])
    for level in loops:
        for op in level.pre:
            op.detach()
            Rewriter.insert_op(op, then.ip)
    # The read-modify-write becomes one atomic add.
    store, add, load = sc.store, sc.add, sc.load
    other = _added(sc)
    _atomic_add(Builder(InsertPoint.before(store), store.location, then.consts), other, store.memref, store.indices)
    for op in (store, add, load):
        op.detach()
        op.erase()
    return grid, threads


def _added(sc: ScatterNest) -> SSAValue:
    """The value the read-modify-write adds (the add's operand that is not the old value)."""
    add, load = sc.add, sc.load
    return add.rhs if add.lhs == load.res else add.lhs  # type: ignore[attr-defined]


def _atomic_add(b: Builder, value: SSAValue, buf: SSAValue, indices: Sequence[SSAValue]) -> None:
    """``memref.atomic_rmw addf``/``addi`` of ``value`` into ``buf`` at ``indices`` (its result unused: a ``red``)."""
    kind = ATOMIC_KIND[arith.AddfOp if pg.is_float(value.type) else arith.AddiOp]
    b.op(
        memref.AtomicRMWOp.build(
            operands=[value, buf, list(indices)],
            result_types=[value.type],
            properties={"kind": IntegerAttr(kind, i64)},
        )
    )


def _row_position(sc: ScatterNest, par: scf.ParallelOp) -> int | None:
    """Where the row index is among the output's indices: the one index that is not an induction variable of the
    parallel dims, the others being those, in order; None otherwise."""
    args = list(par.body.block.args)
    indices = list(sc.store.indices)
    rows = [i for i, v in enumerate(indices) if v not in args]
    if len(rows) != 1 or [v for i, v in enumerate(indices) if i != rows[0]] != args:
        return None
    return rows[0]


def shared_rows(nest: GpuNest) -> tuple[int, int] | None:
    """The ``shared_rows`` mapping (see the module docstring); ``atomic``'s for a scatter nest it does not fit (its
    row index not among the output's indices as ``to_loops`` puts it, a chunk that is not whole rounds), None for a
    nest that is not a scatter's."""
    sc = read_scatter(nest.par)
    if sc is None:
        return None
    schedule = nest.par.attributes.get(SCHEDULE_ATTR)
    chunk = schedule.count("chunk", 0) if isinstance(schedule, ScheduleAttr) else 0
    groups = nest.block_size // COLUMNS
    d = _row_position(sc, nest.par)
    adds = math.prod(level.extent for level in sc.loops)
    fits = nest.block_size % COLUMNS == 0 and chunk > 0 and chunk % (groups * UNROLL) == 0
    if d is None or not fits or adds * math.prod(nest.extents) >= 2**31:
        return atomic(nest)
    par, b, dims, extents = nest.par, nest.b, nest.dims, nest.extents
    out = sc.store.memref
    out_type = out.type
    assert isinstance(out_type, MemRefType)
    rows = out_type.get_shape()[d]
    points = math.prod(extents)
    loops = sc.loops
    other = _added(sc)
    t = other.type
    zero = b.const(0.0 if pg.is_float(t) else 0, t)
    slices = -(-points // COLUMNS)
    chunks = -(-adds // chunk)

    bid, tid = nest.thread_ids()
    bid32, tid32 = b.i32(bid), b.i32(tid)
    lane, group = b.rem(tid32, COLUMNS), b.div(tid32, COLUMNS)
    column = b.add(b.mul(b.rem(bid32, slices), COLUMNS), lane)
    start = b.mul(b.div(bid32, slices), chunk)
    column_ok = b.lt(column, points)
    ivs = [
        affine(b, j, lb, st)
        for j, (lb, st) in zip(delinearize(b, b.idx(b.min(column, points - 1)), extents), dims, strict=True)
    ]
    table = b.v(gpu_ext.WorkgroupAllocOp(t, [rows * COLUMNS]))

    def over_rows(body: Callable[[Builder, SSAValue, SSAValue], object]) -> None:
        """``body(builder, row, table index)`` for the rows ``group, group + G, ...`` of the thread's column."""
        loop_block = Block(arg_types=[IndexType()])
        b.op(scf.ForOp(b.idx(group), b.index(rows), b.index(groups), [], Region(loop_block)))
        lb = b.at(loop_block)
        lb.op(scf.YieldOp())
        r32 = lb.i32(loop_block.args[0])
        body(lb, loop_block.args[0], lb.idx(lb.add(lb.mul(r32, COLUMNS), lane)))

    over_rows(lambda lb, r, at: lb.op(memref.StoreOp.get(zero, table, [at])))
    b.op(gpu.BarrierOp())

    # Rounds of UNROLL index tuples a thread: the updates and rows of all of them loaded, then their adds.
    rounds = chunk // (groups * UNROLL)
    loop_block = Block(arg_types=[IndexType()])
    b.op(scf.ForOp(b.index(0), b.index(rounds), b.index(1), [], Region(loop_block)))
    lb = b.at(loop_block)
    lb.op(scf.YieldOp())
    first = lb.add(lb.add(start, lb.mul(lb.i32(loop_block.args[0]), groups * UNROLL)), group)
    body_ops = [op for level in loops for op in level.pre if op not in (sc.load, sc.add, sc.store)]
    pending: list[tuple[SSAValue, SSAValue]] = []
    for u in range(UNROLL):
        j = lb.add(first, u * groups)
        valid = lb.both(lb.lt(j, adds), column_ok)
        tuple_idx = delinearize(lb, lb.idx(lb.min(j, adds - 1)), [level.extent for level in loops])
        mapping: dict[SSAValue, SSAValue] = dict(zip(par.body.block.args, ivs, strict=True))
        for level, jj in zip(loops, tuple_idx, strict=True):
            mapping[level.op.body.block.args[0]] = affine(lb, jj, level.lb, level.step)
        for op in body_ops:
            clone = op.clone(value_mapper=mapping)
            lb.op(clone)
            clone.location = op.location
        value = lb.select(valid, mapping.get(other, other), zero)
        row = lb.i32(mapping.get(sc.store.indices[d], sc.store.indices[d]))
        pending.append((value, lb.idx(lb.add(lb.mul(row, COLUMNS), lane))))
    for value, at in pending:
        _atomic_add(lb, value, table, [at])
    b.op(gpu.BarrierOp())

    # Each thread adds its column of the block's table into the output, a row the chunk hit at a time.
    def flush(fb: Builder, r: SSAValue, at: SSAValue) -> None:
        inside = fb.when(column_ok)
        assert inside is not None
        v = inside.v(memref.LoadOp.get(table, [at]))
        hit = inside.v(arith.CmpfOp(v, zero, "une") if pg.is_float(t) else arith.CmpiOp(v, zero, "ne"))
        add = inside.when(hit)
        assert add is not None
        _atomic_add(add, v, out, [*ivs[:d], r, *ivs[d:]])

    over_rows(flush)
    return chunks * slices, nest.block_size


KIND = KernelKind(
    name=NAME,
    doc="pg.scatter_add: a zero fill, then the scatter (atomic adds on the GPU, into rows privatized in workgroup "
    "memory for few-row tables)",
    ops=(pg.ScatterAddOp,),
    to_loops=to_loops,
    gpu={"thread_per_point": thread_per_point, ATOMIC: atomic, SHARED_ROWS: shared_rows},
    unscheduled=ATOMIC,
    strategies=("thread_per_point", ATOMIC, SHARED_ROWS),
)
