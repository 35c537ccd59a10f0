"""The ``scatter_add`` kind (``pg.scatter_add``: ``out[..., indices[j...], ...] += updates[..., j..., ...]`` along
``dim``, into zeros).

**Loops** (``pg-to-loops``). A nest storing zeros into the output (unmarked: a thread per point), then an
``scf.parallel`` over the dims outside ``dim``, marked ``pg.nest = "scatter_add"``, whose body is one ``scf.for``
nest over the index tuples (``lowering.loops``, carrying nothing) and, innermost, the read-modify-write ``load``,
``addf``/``addi``, ``store`` of one output element (repeated indices accumulate in order, no races).

**GPU** (``pg-to-gpu``, strategy ``atomic`` on the marked nest): the index loops join the parallel dims, one thread
per (outer point, index tuple), and the read-modify-write becomes ``memref.atomic_rmw addf``/``addi``
(``red.global.add``): many threads may hit one row, and the order of the additions into one element is then
unspecified. The zero fill stays a ``thread_per_point`` kernel launched before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, IntegerType, i64
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from picograd.dialects import pg
from picograd.passes.ir_builder import affine, delinearize
from picograd.passes.kinds.base import ForLevel, GpuNest, KernelKind, Riders, for_levels, keep_mark, n_uses, reads_only
from picograd.passes.kinds.elementwise import thread_per_point

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

NAME = "scatter_add"

ATOMIC_KIND: dict[type[Operation], int] = {arith.AddfOp: 0, arith.AddiOp: 1}
"""``memref.atomic_rmw`` kinds (MLIR's ``AtomicRMWKind``: addf = 0, addi = 1) of the scatter-add combine ops."""


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
    all_extents = [*extents, *(level.extent for level in loops)]
    grid, threads, then, lin = nest.global_thread(math.prod(all_extents))
    idx = delinearize(then, lin, all_extents)
    ivs = [affine(then, j, lb, st) for j, (lb, st) in zip(idx[: len(dims)], dims, strict=True)]
    loop_ivs = [affine(then, j, level.lb, level.step) for j, level in zip(idx[len(dims) :], loops, strict=True)]
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
    other = add.rhs if add.lhs == load.res else add.lhs  # type: ignore[attr-defined]
    rmw = memref.AtomicRMWOp.build(
        operands=[other, store.memref, list(store.indices)],
        result_types=[other.type],
        properties={"kind": IntegerAttr(ATOMIC_KIND[type(add)], i64)},
    )
    rmw.location = store.location
    Rewriter.insert_op(rmw, InsertPoint.before(store))
    for op in (store, add, load):
        op.detach()
        op.erase()
    return grid, threads


KIND = KernelKind(
    name=NAME,
    doc="pg.scatter_add: a zero fill, then the scatter (atomic adds on the GPU)",
    ops=(pg.ScatterAddOp,),
    to_loops=to_loops,
    gpu={"thread_per_point": thread_per_point, "atomic": atomic},
    unscheduled="atomic",
    strategies=("thread_per_point", "atomic"),
)
