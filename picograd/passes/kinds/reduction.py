"""The ``reduction`` kind: ``pg.sum``/``pg.max``/``pg.min`` over some dims, and ``pg.argmax``/``pg.argmin``.

**Loops** (``pg-to-loops``). ``pg.sum``/``pg.max``/``pg.min``: an ``scf.parallel`` over the output, marked
``pg.nest = "reduction"``, whose body is (ops computing values of the output point), one ``scf.for`` nest over the
reduced dims carrying one accumulator (``lowering.loops``: a level per reduced dim, each passing the accumulator
on), then the store of the result. The accumulator starts at the combining op's identity (0, -inf or +inf; the
smallest / largest integer; false / true on bools) and the innermost loop yields ``combine(acc, x)`` with
``addf``/``maximumf``/``minimumf`` (NaN propagates, as ``numpy.max``) or their integer forms. Other outputs of
the kernel of the input's shape (*riders*) are computed and stored in the innermost loop, which visits each input
element once. ``pg.argmax``/``pg.argmin``: an unmarked nest (a thread per output) carrying value and index; the
first extremum wins and a NaN counts as the extremum (as numpy).

**GPU** (``pg-to-gpu``, strategy ``block_per_row`` on the marked nest; a reduced extent of at least
``MIN_BLOCK_REDUCTION``): one block per output point. The reduced loops are linearized into one loop that the
threads of the block stride over (thread ``t`` takes reduced points ``t, t + blockDim, ...``); each thread's
partial result is combined across its warp with butterfly shuffles (``gpu_ext.shuffle xor`` 16, 8, 4, 2, 1:
afterwards every lane holds the warp's result), lane 0 of each warp writes it to workgroup memory, and after a
``gpu.barrier`` warp 0 combines the per-warp results the same way; thread 0 then runs what followed the loop (the
store of the result). Riders stay in the strided loop: each element is still visited by exactly one thread. The
summation order changes (a tree instead of a left fold), as in every parallel reduction. A marked nest whose ops
between the loop levels write memory or branch (hoisted there by ``pg-to-loops``) keeps ``thread_per_point``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerType, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import Rewriter

from picograd.dialects import gpu_ext, pg
from picograd.passes.ir_builder import Builder, affine, const_value, delinearize
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

NAME = "reduction"
MIN_BLOCK_REDUCTION = 32
"""The smallest reduced extent that gets a block per output point (below it, a thread per output is cheaper)."""


def _is_float(t: Attribute) -> bool:
    return pg.is_float(t)


def _is_bool(t: Attribute) -> bool:
    return isinstance(t, IntegerType) and t.width.data == 1


# --- loops ------------------------------------------------------------------------------------------------------


def to_loops(lw: KernelLowering, op: pg.ReduceOp | pg.ArgReduceOp, out: SSAValue, riders: Riders) -> None:
    if isinstance(op, pg.ArgReduceOp):
        lower_argreduce(lw, op, out)
    else:
        lower_reduce(lw, op, out, riders)


def riders_shape(op: Operation) -> tuple[int, ...] | None:
    """Outputs of the input's shape ride along in a reduction's innermost loop (not in an argmax's)."""
    return pg.shape_of(op.input) if isinstance(op, pg.ReduceOp) else None


def lower_reduce(lw: KernelLowering, op: pg.ReduceOp, out: SSAValue, riders: Riders = ()) -> None:
    """The marked reduction nest; each ``(value, buffer)`` of ``riders`` (values of the input's shape) is computed
    and stored in the innermost loop, which visits every input index once: one pass over the data."""
    shape, dims, keep = pg.shape_of(op.input), op.dim_list, op.keepdim is not None
    el = pg.element_of(op.result)
    wide = lw.wide_type(el)  # 16-bit floats accumulate in f32
    init, combine = reduction_init(op, wide)
    with lw.parallel(pg.shape_of(op.result), nest=NAME) as ivs:
        base = kept_index(ivs, len(shape), dims, keep)

        def body(red: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            it = iter(red)
            full = tuple(base[d] if d in base else next(it) for d in range(len(shape)))
            x = lw.at_wide(op.input, full)
            for v, buf in riders:
                lw.store(lw.at(v, full), buf, full)
            return [lw.emit(combine(acc[0], x)).results[0]]

        (total,) = lw.loops([(0, shape[d]) for d in dims], [lw.const(init, wide)], body)
        lw.store(lw.narrow(total, el), out, tuple(ivs))
    keep_mark(lw.last_nest, lw.last_nest is not None and read_reduction(lw.last_nest) is not None)


def reduction_init(op: pg.ReduceOp, el: Attribute) -> tuple[int | float, Callable[..., Operation]]:
    """The start value and combining op of a reduction: 0 and add, -inf (the smallest integer) and max, +inf (the
    largest) and min; on bools, or for sum and max, and for min."""
    width = el.width.data if isinstance(el, IntegerType) else 64
    lowest, highest = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if _is_float(el):
        table: dict[type[Operation], tuple[int | float, Callable[..., Operation]]] = {
            pg.SumOp: (0.0, arith.AddfOp),
            pg.MaxOp: (-math.inf, arith.MaximumfOp),
            pg.MinOp: (math.inf, arith.MinimumfOp),
        }
    elif _is_bool(el):
        table = {pg.SumOp: (0, arith.OrIOp), pg.MaxOp: (0, arith.OrIOp), pg.MinOp: (-1, arith.AndIOp)}
    else:
        table = {pg.SumOp: (0, arith.AddiOp), pg.MaxOp: (lowest, arith.MaxSIOp), pg.MinOp: (highest, arith.MinSIOp)}
    return table[type(op)]


def kept_index(ivs: Sequence[SSAValue], rank: int, dims: Sequence[int], keep: bool) -> dict[int, SSAValue]:
    kept = [d for d in range(rank) if d not in dims]
    return {d: ivs[d] for d in kept} if keep else dict(zip(kept, ivs, strict=True))


def lower_argreduce(lw: KernelLowering, op: pg.ArgReduceOp, out: SSAValue) -> None:
    shape, d = pg.shape_of(op.input), op.dim_index
    el = lw.wide_type(pg.element_of(op.input))
    better = "gt" if isinstance(op, pg.ArgmaxOp) else "lt"
    with lw.parallel(pg.shape_of(op.result)) as ivs:
        base = kept_index(ivs, len(shape), [d], op.keepdim is not None)

        def at_k(k: SSAValue) -> SSAValue:
            return lw.at_wide(op.input, tuple(base.get(j, k) for j in range(len(shape))))

        def body(ks: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            x, (best, best_k) = at_k(ks[0]), acc
            if _is_float(el):  # strictly better, or the first NaN (numpy's argmax/argmin stop at a NaN)
                nan_x = lw.emit(arith.CmpfOp(x, x, "uno")).results[0]
                ok_best = lw.emit(arith.CmpfOp(best, best, "ord")).results[0]
                take = lw.emit(
                    arith.OrIOp(
                        lw.emit(arith.CmpfOp(x, best, "o" + better)).results[0],
                        lw.emit(arith.AndIOp(nan_x, ok_best)).results[0],
                    )
                ).results[0]
            else:
                pred = ("u" if _is_bool(el) else "s") + better
                take = lw.emit(arith.CmpiOp(x, best, pred)).results[0]
            return [
                lw.emit(arith.SelectOp(take, x, best)).results[0],
                lw.emit(arith.SelectOp(take, ks[0], best_k)).results[0],
            ]

        first = at_k(lw.idx(0))
        _, k = lw.loops([(1, shape[d])], [first, lw.idx(0)], body)
        lw.store(lw.convert(arith.IndexCastOp, k, i64), out, tuple(ivs))


# --- GPU: block_per_row ------------------------------------------------------------------------------------------


def _int_width(t: Attribute) -> int:
    if isinstance(t, IndexType):
        return 64
    assert isinstance(t, IntegerType)
    return t.width.data


COMBINERS: dict[type[Operation], Callable[[Attribute], int | float | None]] = {
    arith.AddfOp: lambda t: 0.0,
    arith.MaximumfOp: lambda t: -math.inf,
    arith.MinimumfOp: lambda t: math.inf,
    arith.AddiOp: lambda t: 0,
    arith.OrIOp: lambda t: 0,
    arith.AndIOp: lambda t: -1 if _int_width(t) == 1 else None,
    arith.MaxSIOp: lambda t: -(1 << (_int_width(t) - 1)),
    arith.MinSIOp: lambda t: (1 << (_int_width(t) - 1)) - 1,
}
"""Combining ops a block reduction takes (associative and commutative), with their identity on a type (what the
accumulator starts at, and what idle lanes contribute)."""


@dataclass
class ReductionNest:
    """The parts of a marked reduction nest (see the module docstring)."""

    pre: list[Operation]  # before the loop nest, in the parallel body
    loops: list[ForLevel]
    post: list[Operation]  # after it
    combine: Operation  # the innermost op folding an element into the accumulator
    init: SSAValue

    @property
    def extent(self) -> int:
        return math.prod(level.extent for level in self.loops)


def read_reduction(par: scf.ParallelOp) -> ReductionNest | None:
    """The parts of the marked nest ``par`` in the form ``lower_reduce`` emits; None where ``block_per_row``
    cannot reorder its iterations (ops hoisted between the levels that write memory or branch, or a loop-stage
    nest written by hand that differs)."""
    ops = list(par.body.block.ops)[:-1]
    fors = [op for op in ops if isinstance(op, scf.ForOp)]
    if len(fors) != 1 or len(fors[0].results) != 1:
        return None
    outer = fors[0]
    k = ops.index(outer)
    pre, post = ops[:k], ops[k + 1 :]
    if not reads_only(pre):
        return None
    loops = for_levels(outer, 1)
    if loops is None:
        return None
    innermost = loops[-1].op.body.block
    acc = innermost.args[1]
    yld = innermost.last_op
    assert yld is not None
    if n_uses(acc) != 1 or len(yld.operands) != 1:
        return None
    combine = yld.operands[0].owner
    if not isinstance(combine, Operation) or type(combine) not in COMBINERS or acc not in combine.operands:
        return None
    init = outer.iter_args[0]
    identity = COMBINERS[type(combine)](init.type)
    value = const_value(init)
    if identity is None or value is None or value != identity:
        return None
    for level in loops[:-1]:  # nothing but the combine may see the partial results of inner levels
        if n_uses(level.op.body.block.args[1]) != 1:
            return None
    return ReductionNest(pre, loops, post, combine, init)


def _bind_point(nest: GpuNest, b: Builder, red: ReductionNest, point: SSAValue) -> None:
    """Make the nest's parallel ivs those of the output point with linear index ``point`` and move the ops before
    the reduced loops (reads only) to ``b``."""
    idx = delinearize(b, point, nest.extents)
    ivs = [affine(b, j, lb, st) for j, (lb, st) in zip(idx, nest.dims, strict=True)]
    for arg, iv in zip(nest.par.body.block.args, ivs, strict=True):
        arg.replace_all_uses_with(iv)
    for op in red.pre:
        op.detach()
        Rewriter.insert_op(op, b.ip)


def _strided_partial(b: Builder, red: ReductionNest, first: SSAValue, threads: int, unroll: int = 1) -> SSAValue:
    """The reduced loops linearized into one loop from ``first`` in steps of ``threads`` (a thread's share of the
    point's elements, riders stored as they are visited); returns the thread's partial result. With ``unroll``
    dividing the thread's iterations, an iteration takes ``unroll`` of them (:func:`_unroll`)."""
    init = red.init
    loop_block = Block(arg_types=[IndexType(), init.type])
    loop = scf.ForOp(first, b.index(red.extent), b.index(threads), [init], Region(loop_block))
    b.op(loop)
    lb_ = Builder(loop_block, b.loc, b.consts)
    kidx = delinearize(lb_, loop_block.args[0], [level.extent for level in red.loops])
    for level, j in zip(red.loops, kidx, strict=True):
        level.op.body.block.args[0].replace_all_uses_with(affine(lb_, j, level.lb, level.step))
    innermost = red.loops[-1].op.body.block
    innermost.args[1].replace_all_uses_with(loop_block.args[1])
    for level in red.loops:
        for op in level.pre:
            op.detach()
            Rewriter.insert_op(op, lb_.ip)
    lb_.op(scf.YieldOp(red.combine.results[0]))
    if unroll > 1 and red.extent % (threads * unroll) == 0:
        _unroll(loop, unroll, threads, b)
    return loop.results[0]


def _unroll(loop: scf.ForOp, factor: int, stride: int, b: Builder) -> None:
    """Let each iteration of the strided ``loop`` (``iv``, one accumulator) compute ``factor`` consecutive ones, at
    ``iv + k * stride``, and step ``factor * stride``: the copies' loads first, then their stores (riders), the
    accumulator folded in the order the loop folded it (the same sum). A thread then has ``factor`` elements' loads
    in flight, where a store in the loop body kept ptxas from moving the next iteration's loads above it."""
    block = loop.body.block
    iv, acc = block.args
    yld = block.last_op
    assert isinstance(yld, scf.YieldOp)
    body = list(block.ops)[:-1]
    first = result = yld.operands[0]
    for k in range(1, factor):
        at = arith.AddiOp(iv, b.index(k * stride))
        block.insert_op_before(at, yld)
        mapping: dict[SSAValue, SSAValue] = {iv: at.result, acc: result}
        for op in body:
            block.insert_op_before(op.clone(mapping), yld)
        result = mapping[first]
    yld.operands[0] = result
    for op in [op for op in block.ops if isinstance(op, memref.StoreOp)]:
        op.detach()
        block.insert_op_before(op, yld)
    loop.operands[2] = b.index(factor * stride)


def _butterfly(red: ReductionNest, x: SSAValue, width: int, b: Builder) -> SSAValue:
    """``x`` combined across ``width`` lanes by xor shuffles (afterwards every lane holds the result)."""
    combine_type: Any = type(red.combine)
    offset = width // 2
    while offset >= 1:
        x = b.v(combine_type(x, b.v(gpu_ext.ShuffleOp(x, "xor", offset))))
        offset //= 2
    return x


def _finish(red: ReductionNest, total: SSAValue, tail: Builder) -> None:
    """The ops after the reduced loops (the store of the result), on ``total``, run by one thread (``tail``)."""
    red.loops[0].op.results[0].replace_all_uses_with(total)
    for op in red.post:
        op.detach()
        Rewriter.insert_op(op, tail.ip)


def block_per_row(nest: GpuNest) -> tuple[int, int] | None:
    red = read_reduction(nest.par)
    if red is None or red.extent < MIN_BLOCK_REDUCTION:
        return None
    b = nest.b
    rows = math.prod(nest.extents)
    cap = 1 << (nest.block_size.bit_length() - 1)  # butterflies need a power of two
    threads = min(cap, max(WARP, 1 << (red.extent - 1).bit_length()))
    warps = threads // WARP
    bid, tid = nest.thread_ids()
    _bind_point(nest, b, red, bid)
    init = red.init
    t = init.type
    warp_total = _butterfly(red, _strided_partial(b, red, tid, threads), WARP, b)
    tid32 = b.cast(tid, i32)
    if warps == 1:  # every lane holds the block's result: thread 0 finishes
        total = warp_total
        _, tail, _ = b.if_(b.v(arith.CmpiOp(tid32, b.const(0, i32), "eq")))
    else:  # lane 0 of each warp -> workgroup memory -> warp 0 combines them; its lane 0 finishes
        lane = b.v(arith.AndIOp(tid32, b.const(WARP - 1, i32)))
        warp = b.v(arith.ShRUIOp(tid32, b.const(5, i32)))
        smem = b.v(gpu_ext.WorkgroupAllocOp(t, [warps]))
        _, w0, _ = b.if_(b.v(arith.CmpiOp(lane, b.const(0, i32), "eq")))
        w0.op(memref.StoreOp.get(warp_total, smem, [w0.cast(warp, IndexType())]))
        b.op(gpu.BarrierOp())
        _, final, _ = b.if_(b.v(arith.CmpiOp(warp, b.const(0, i32), "eq")))
        sel, yes, no = final.if_(final.v(arith.CmpiOp(lane, final.const(warps, i32), "ult")), [t])
        yes.op(scf.YieldOp(yes.v(memref.LoadOp.get(smem, [yes.cast(lane, IndexType())]))))
        identity = const_value(init)
        assert identity is not None
        no.op(scf.YieldOp(no.const(identity, t)))
        total = _butterfly(red, sel.results[0], warps, final)
        _, tail, _ = final.if_(final.v(arith.CmpiOp(lane, final.const(0, i32), "eq")))
    _finish(red, total, tail)
    return rows, threads


def warp_per_row(nest: GpuNest) -> tuple[int, int] | None:
    """A warp per output point, ``block / 32`` points a block: no workgroup memory and no barrier (the short
    rows of many points, LayerNorm's statistics: a block per point would leave most of its threads idle and wait
    on a barrier for a handful of loads)."""
    red = read_reduction(nest.par)
    if red is None or red.extent < MIN_BLOCK_REDUCTION:
        return None
    b = nest.b
    rows = math.prod(nest.extents)
    per_block = max(1, min(nest.block_size // WARP, rows))
    bid, tid = nest.thread_ids()
    tid32 = b.cast(tid, i32)
    lane = b.cast(b.v(arith.AndIOp(tid32, b.const(WARP - 1, i32))), IndexType())
    warp = b.cast(b.v(arith.ShRUIOp(tid32, b.const(5, i32))), IndexType())
    point = b.v(arith.AddiOp(b.v(arith.MuliOp(bid, b.index(per_block))), warp))
    _, inside, _ = b.if_(b.v(arith.CmpiOp(point, b.index(rows), "ult")))  # whole warps: shuffles stay converged
    _bind_point(nest, inside, red, point)
    total = _butterfly(red, _strided_partial(inside, red, lane, WARP, nest.unroll), WARP, inside)
    _, tail, _ = inside.if_(inside.v(arith.CmpiOp(lane, inside.index(0), "eq")))
    _finish(red, total, tail)
    return -(-rows // per_block), per_block * WARP


def split(par: scf.ParallelOp, schedule: Any) -> None:
    """``pg-split-reductions``' hook: the two nests of ``split_rows``/``split_columns``
    (``kinds/reduction_split.py``, which builds on this module's reader)."""
    from picograd.passes.kinds.reduction_split import split_nest

    split_nest(par, schedule)


KIND = KernelKind(
    name=NAME,
    doc="sum/max/min over dims (block_per_row, warp_per_row, split_rows, split_columns on the GPU), argmax/argmin "
    "(a thread per output)",
    ops=(pg.SumOp, pg.MaxOp, pg.MinOp, pg.ArgmaxOp, pg.ArgminOp),
    to_loops=to_loops,
    riders=riders_shape,
    gpu={"thread_per_point": thread_per_point, "block_per_row": block_per_row, "warp_per_row": warp_per_row},
    unscheduled="block_per_row",
    split={"split_rows": split, "split_columns": split},
    strategies=("thread_per_point", "block_per_row", "warp_per_row", "split_rows", "split_columns"),
)
