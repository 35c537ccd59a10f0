"""``pg-to-gpu``: every loop nest of the loop stage becomes a kernel launch on a grid of thread blocks.

Input: the loop stage (``pg-bufferize`` + ``pg-to-loops``): functions in destination-passing style whose top level
holds buffer set-up (``memref.alloc`` of the arena and of scratch buffers, ``memref.view`` at constant byte offsets,
``memref.get_global``, constants), one top-level ``scf.parallel`` per loop nest (tagged ``pg.kernel`` and
``pg.kind``), ``memref.copy``/``memref.dealloc`` and ``func.return``. Output (MLIR's ``gpu`` dialect, the shape of
``gpu-kernel-outlining``'s result)::

    builtin.module attributes {gpu.container_module} {
      func.func @step(...) {                         // the host side: buffers, launches in nest order
        %arena = memref.alloc() ...
        gpu.launch_func @step_kernels::@k3_matmul blocks in (%c25, %c1, %c1) threads in (%c256, %c1, %c1)
            args(%x : memref<32x30xf32>, %arena : memref<105728xi8>)
        ...
      }
      gpu.module @step_kernels {
        gpu.func @k3_matmul(%x: memref<32x30xf32>, %arena: memref<105728xi8>) kernel attributes {...} { ... }
      }
    }

**Outlining.** Each nest becomes one ``gpu.func`` (``kernel``) named after its ``pg.kernel`` attribute
(``k17_scatter_add``, then ``k17_scatter_add_1`` for a kernel's second nest). Its arguments are the *root*
buffers the nest touches: function arguments, the arena, scratch allocations and globals, each once. Constants and
``memref.view`` ops the nest uses are cloned into the kernel, so a view of the arena is the arena pointer plus a
constant byte offset that the PTX lowering folds into its addresses; the launch passes only whole buffers (what the
runtime binds). The host keeps everything else and calls ``gpu.launch_func`` with the grid and block sizes as
constants, in nest order (launches on one stream run in order, which is the only synchronisation the nests need:
each nest only depends on the ones before it). A nest of zero iterations launches nothing.

**Kernels already scheduled.** A top-level ``gpu.launch`` (what ``pg-matmul-schedule`` makes of a matmul nest) is
outlined as it stands: its body becomes the kernel's, its block arguments become ``gpu.block_id`` /
``gpu.thread_id`` ops and the launch's constant sizes, and the host launches it on its own (up to 3-D) grid; its
attributes (``pg.schedule``, ``pg.tile``, ``pg.kind``, ``gpu.known_block_size``) move to the ``gpu.func``.

**Schedules** of the other nests: the strategy the nest's ``kernel.schedule`` names (``pg-schedule`` chose it for
the kernel; ``pg-to-loops`` copied it onto the kernel's nests), with its ``block`` as the block size; a nest
without one (loop-stage IR written by hand) takes the pass options (``block-size``, ``block-reductions``,
``atomics``). ``block_per_row`` and ``atomic`` apply to the kernel's reduction or scatter nest, and the pass fails
when a kernel scheduled so has no such nest. The strategy is recorded as ``pg.schedule`` on the ``gpu.func``, with
``gpu.known_block_size``:

- ``thread_per_point`` (every nest by default): the parallel dims are linearized over a 1-D grid of 1-D blocks
  (``block_size`` threads, fewer for small nests, a multiple of 32); thread ``blockIdx.x * blockDim.x +
  threadIdx.x`` computes one iteration point, guarded by a bounds check, delinearized with divisions by the
  (constant) extents in ``i32`` when the nest has fewer than 2**31 points (ptxas strength-reduces them).
- ``block_per_row`` (``pg.kind = "reduction"`` nests whose reduced extent is at least 32 and whose accumulator is
  one value combined by an associative, commutative op: ``addf``, ``maximumf``, ``minimumf``, ``addi``,
  ``maxsi``, ``minsi``, ``ori``, ``andi``): one block per output point. The ``scf.for`` nest over the reduced dims
  is linearized into one loop that the threads of the block stride over (thread ``t`` takes reduced points ``t,
  t + blockDim, ...``); each thread's partial result is combined across its warp with butterfly shuffles
  (``gpu_ext.shuffle xor`` 16, 8, 4, 2, 1: afterwards every lane holds the warp's result), lane 0 of each warp
  writes it to workgroup memory (``gpu_ext.workgroup_alloc``), and after a ``gpu.barrier`` warp 0 combines the
  per-warp results the same way; thread 0 then runs what followed the loop (the store of the result). Ops the nest
  computes per reduced element (the "riders" of ``pg-to-loops``) stay in the strided loop: each element is still
  visited by exactly one thread. The summation order changes (a tree instead of a left fold), as in every parallel
  reduction. Other reductions (``argmax``/``argmin``, which carry a value and an index and keep the first
  extremum) use ``thread_per_point``: one thread per output with the sequential loop.
- ``atomic`` (``pg.kind = "scatter_add"`` nests): the index loops of the scatter (an ``scf.for`` nest inside the
  parallel dims, which ``pg-to-loops`` runs sequentially so that repeated indices accumulate) join the parallel
  dims, one thread per (outer point, index tuple), and the read-modify-write of the output becomes
  ``memref.atomic_rmw addf``/``addi`` (``red.global.add``): many threads may hit one row. The order of the
  additions into one element is then unspecified. The zero-fill nest before it is a plain ``thread_per_point``
  kernel.

Every op created carries the location of the nest it comes from (the user's file:line of the kernel's op).

Raises ``PassFailedException`` for a function that still holds ``kernel.launch`` or ``pg`` ops (run ``pg-to-loops``
first), for top-level ops other than the ones above, and for nests that use a value defined outside them that is
neither a buffer nor a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.context import Context
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    LocationAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    UnitAttr,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import IsTerminator, is_side_effect_free
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext, kernel
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes._buffers import where
from picograd.passes.schedule import MIN_BLOCK_REDUCTION, STRATEGIES
from picograd.passes.to_loops import KERNEL_ATTR, KIND_ATTR
from picograd.passes.to_loops import SCHEDULE_ATTR as NEST_SCHEDULE_ATTR

SCHEDULE_ATTR = "pg.schedule"
"""Attribute of each ``gpu.func``: ``thread_per_point``, ``block_per_row`` or ``atomic``, or the matmul schedule
(``pg-matmul-schedule``) that made its ``gpu.launch``."""

WARP = gpu_ext.WARP_SIZE

_ATOMIC_KIND: dict[type[Operation], int] = {arith.AddfOp: 0, arith.AddiOp: 1}
"""``memref.atomic_rmw`` kinds (MLIR's ``AtomicRMWKind``: addf = 0, addi = 1) of the scatter-add combine ops."""
_COMBINERS: dict[type[Operation], Callable[[Attribute], int | float | None]] = {
    arith.AddfOp: lambda t: 0.0,
    arith.MaximumfOp: lambda t: -math.inf,
    arith.MinimumfOp: lambda t: math.inf,
    arith.AddiOp: lambda t: 0,
    arith.OrIOp: lambda t: 0,
    arith.AndIOp: lambda t: -1 if _int_width(t) == 1 else None,
    arith.MaxSIOp: lambda t: -(1 << (_int_width(t) - 1)),
    arith.MinSIOp: lambda t: (1 << (_int_width(t) - 1)) - 1,
}
"""Combining ops a block reduction accepts, with their identity on a type (what the accumulator must start at)."""


def _int_width(t: Attribute) -> int:
    if isinstance(t, IndexType):
        return 64
    assert isinstance(t, IntegerType)
    return t.width.data


def _const_value(v: SSAValue) -> int | float | None:
    op = v.owner
    if isinstance(op, arith.ConstantOp):
        attr = op.value
        if isinstance(attr, IntegerAttr):
            return attr.value.data
        if isinstance(attr, FloatAttr):
            return attr.value.data
    return None


def _const_int(v: SSAValue) -> int | None:
    c = _const_value(v)
    return c if isinstance(c, int) else None


def _n_uses(v: SSAValue) -> int:
    return sum(1 for _ in v.uses)


def _inside(op: Operation, ancestor: Operation) -> bool:
    while op is not None:
        if op is ancestor:
            return True
        parent = op.parent_op()
        if parent is None:
            return False
        op = parent
    return False


# ---------------------------------------------------------------------------------------------------------------
# Building ops


class _Constants:
    """The constants of one function body, each made once, at its start."""

    def __init__(self, block: Block):
        self.block = block
        self.last: Operation | None = None
        self.made: dict[tuple[object, Attribute], SSAValue] = {}

    def add(self, op: arith.ConstantOp) -> None:
        attr = op.value
        if isinstance(attr, IntegerAttr | FloatAttr):
            self.made.setdefault((attr.value.data, attr.type), op.result)


class _Builder:
    """Appends ops before an insertion point, all with one location; constants go to the body's pool."""

    def __init__(self, ip: InsertPoint, loc: LocationAttr, consts: _Constants):
        self.ip = ip
        self.loc = loc
        self.consts = consts

    def op(self, op: Operation) -> Operation:
        op.location = self.loc
        Rewriter.insert_op(op, self.ip)
        return op

    def v(self, op: Operation) -> SSAValue:
        return self.op(op).results[0]

    def index(self, n: int) -> SSAValue:
        return self.const(n, IndexType())

    def const(self, value: int | float, t: Attribute) -> SSAValue:
        key = (int(value) if isinstance(t, IntegerType | IndexType) else float(value), t)
        if key not in self.consts.made:
            if isinstance(t, IntegerType | IndexType):
                op = arith.ConstantOp(IntegerAttr(int(value), t))
            else:
                assert isinstance(t, Float32Type | Float64Type)
                op = arith.ConstantOp(FloatAttr(float(value), t))
            op.location = self.loc
            last = self.consts.last
            Rewriter.insert_op(op, InsertPoint.after(last) if last else InsertPoint.at_start(self.consts.block))
            self.consts.last = op
            self.consts.made[key] = op.result
        return self.consts.made[key]

    def cast(self, x: SSAValue, t: Attribute) -> SSAValue:
        return self.v(arith.IndexCastOp(x, t))

    def inside(self, block: Block) -> _Builder:
        """A builder for the end of ``block`` (before its terminator, if it has one)."""
        last = block.last_op
        ip = (
            InsertPoint.before(last) if last is not None and last.has_trait(IsTerminator) else InsertPoint.at_end(block)
        )
        return _Builder(ip, self.loc, self.consts)

    def if_(self, cond: SSAValue, results: Sequence[Attribute] = ()) -> tuple[scf.IfOp, _Builder, _Builder]:
        """``scf.if`` (with an else branch when it has results); returns the op and builders for its branches,
        whose yields the caller emits when there are results."""
        then, other = Block(), Block()
        if not results:
            then.add_op(scf.YieldOp())
        op = scf.IfOp(cond, list(results), Region(then), Region(other) if results else None)
        self.op(op)
        for block in (then, other):
            if block.last_op is not None:
                block.last_op.location = self.loc
        return op, self.inside(then), self.inside(other)


def delinearize(b: _Builder, lin: SSAValue, extents: Sequence[int]) -> list[SSAValue]:
    """Row-major indices (``index`` values) of the linear index ``lin`` over ``extents``; the divisions are done in
    ``i32`` when the product fits (PTX strength-reduces 32-bit division by a constant)."""
    total = math.prod(extents)
    narrow = total < 2**31 and len(extents) > 1
    x = b.cast(lin, i32) if narrow else lin
    t = i32 if narrow else IndexType()
    out: list[SSAValue] = []
    rest = x
    for d in range(len(extents) - 1, -1, -1):
        n = extents[d]
        if d == 0:
            out.append(rest)
        elif n == 1:
            out.append(b.const(0, t))
        else:
            c = b.const(n, t)
            out.append(b.v(arith.RemUIOp(rest, c)))
            rest = b.v(arith.DivUIOp(rest, c))
    out.reverse()
    return [b.cast(i, IndexType()) if narrow else i for i in out]


def _affine(b: _Builder, j: SSAValue, lb: int, step: int) -> SSAValue:
    """``lb + j * step`` (folded when trivial)."""
    if step != 1:
        j = b.v(arith.MuliOp(j, b.index(step)))
    if lb:
        j = b.v(arith.AddiOp(j, b.index(lb)))
    return j


# ---------------------------------------------------------------------------------------------------------------
# Matching the schedules


@dataclass
class _Loop:
    """One ``scf.for`` of a nest: its op, constant bounds, and the ops before its inner loop (or its whole body)."""

    op: scf.ForOp
    lb: int
    ub: int
    step: int
    pre: list[Operation]

    @property
    def extent(self) -> int:
        return max(0, -(-(self.ub - self.lb) // self.step))


def _bounds(op: scf.ForOp) -> tuple[int, int, int] | None:
    lb, ub, step = _const_int(op.lb), _const_int(op.ub), _const_int(op.step)
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return lb, ub, step


def _pure(ops: Sequence[Operation]) -> bool:
    """No op writes memory (loads are fine: they read buffers no thread of this nest writes)."""
    for op in ops:
        if isinstance(op, memref.LoadOp):
            continue
        if not is_side_effect_free(op) or op.regions:
            return False
    return True


def _for_nest(first: scf.ForOp, carried: int) -> list[_Loop] | None:
    """The perfect ``scf.for`` nest starting at ``first``: every level but the last holds side-effect-free ops, then
    one ``scf.for`` (carrying the level's iteration values unchanged) and a yield of that loop's results."""
    levels: list[_Loop] = []
    loop = first
    while True:
        bounds = _bounds(loop)
        if bounds is None or len(loop.results) != carried:
            return None
        body = loop.body.block
        ops = list(body.ops)
        yld = ops[-1]
        inner = [op for op in ops[:-1] if isinstance(op, scf.ForOp)]
        if not inner:
            levels.append(_Loop(loop, *bounds, ops[:-1]))
            return levels
        nested = inner[0]
        if len(inner) != 1 or ops[-2] is not nested or list(yld.operands) != list(nested.results):
            return None
        if list(nested.iter_args) != list(body.args[1:]) or not _pure(ops[:-2]):
            return None
        levels.append(_Loop(loop, *bounds, ops[:-2]))
        loop = nested


@dataclass
class _Reduction:
    """A nest ``block_per_row`` applies to."""

    pre: list[Operation]  # before the loop nest, in the parallel body
    loops: list[_Loop]
    post: list[Operation]  # after it
    combine: Operation  # the innermost op folding an element into the accumulator
    init: SSAValue

    @property
    def extent(self) -> int:
        return math.prod(level.extent for level in self.loops)


def match_reduction(par: scf.ParallelOp) -> _Reduction | None:
    ops = list(par.body.block.ops)[:-1]
    fors = [op for op in ops if isinstance(op, scf.ForOp)]
    if len(fors) != 1 or len(fors[0].results) != 1:
        return None
    outer = fors[0]
    k = ops.index(outer)
    pre, post = ops[:k], ops[k + 1 :]
    if not _pure(pre):
        return None
    loops = _for_nest(outer, 1)
    if loops is None:
        return None
    innermost = loops[-1].op.body.block
    acc = innermost.args[1]
    yld = innermost.last_op
    assert yld is not None
    if _n_uses(acc) != 1 or len(yld.operands) != 1:
        return None
    combine = yld.operands[0].owner
    if not isinstance(combine, Operation) or type(combine) not in _COMBINERS or acc not in combine.operands:
        return None
    init = outer.iter_args[0]
    identity = _COMBINERS[type(combine)](init.type)
    value = _const_value(init)
    if identity is None or value is None or value != identity:
        return None
    # Nothing but the combine may see the partial results of inner levels.
    for level in loops[:-1]:
        if _n_uses(level.op.body.block.args[1]) != 1:
            return None
    return _Reduction(pre, loops, post, combine, init)


@dataclass
class _Scatter:
    """A nest ``atomic`` applies to: index loops with a load / add / store of one element of ``out``."""

    loops: list[_Loop]
    load: memref.LoadOp
    add: Operation
    store: memref.StoreOp


def match_scatter(par: scf.ParallelOp) -> _Scatter | None:
    ops = list(par.body.block.ops)[:-1]
    if len(ops) != 1 or not isinstance(ops[0], scf.ForOp):
        return None
    loops = _for_nest(ops[0], 0)
    if loops is None:
        return None
    body = loops[-1].pre
    stores = [op for op in body if isinstance(op, memref.StoreOp)]
    if len(stores) != 1 or not _pure([op for op in body if op is not stores[0]]):
        return None
    store = stores[0]
    others = [op for level in loops for op in level.pre if isinstance(op, memref.LoadOp) and op.memref == store.memref]
    if len(others) != 1:  # the nest reads the output only for the read-modify-write
        return None
    add = store.value.owner
    if not isinstance(add, arith.AddfOp | arith.AddiOp) or _n_uses(store.value) != 1:
        return None
    for old in (add.lhs, add.rhs):
        load = old.owner
        if (
            isinstance(load, memref.LoadOp)
            and load.memref == store.memref
            and list(load.indices) == list(store.indices)
            and _n_uses(old) == 1
        ):
            if isinstance(add, arith.AddiOp) and _int_width(add.result.type) not in (32, 64):
                return None
            return _Scatter(loops, load, add, store)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Outlining


class _Outliner:
    """Outlines the nests of one function into one ``gpu.module``."""

    def __init__(self, fn: func.FuncOp, module: ModuleOp, block_size: int, reductions: bool, atomics: bool):
        self.fn = fn
        self.module = module
        self.block_size = block_size  # the current nest's (its schedule's ``block``, else the option)
        self.default_block_size = block_size
        self.reductions = reductions
        self.atomics = atomics
        self.promised: set[str] = set()  # kernels scheduled block_per_row or atomic
        self.kept: set[str] = set()  # kernels with a nest lowered that way
        name = f"{fn.sym_name.data}_kernels"
        taken = {getattr(op, "sym_name", None) for op in module.ops}
        n = 0
        while StringAttr(name) in taken:
            n += 1
            name = f"{fn.sym_name.data}_kernels_{n}"
        self.gpu_module = gpu.ModuleOp(StringAttr(name), Region(Block()))  # type: ignore[arg-type]  # xDSL types it as a SymbolRefAttr
        self.gpu_module.location = fn.location
        self.names: set[str] = set()
        self.host_consts = _Constants(fn.body.block)
        # The host's ops in order, made once (the clones a kernel takes are ops that were there from the start).
        self.host_order = {op: i for i, op in enumerate(fn.body.block.ops)}

    def run(self) -> None:
        block = self.fn.body.block
        nests: list[scf.ParallelOp | gpu.LaunchOp] = []
        for op in list(block.ops):
            if isinstance(op, scf.ParallelOp | gpu.LaunchOp):
                nests.append(op)
            elif isinstance(op, kernel.LaunchOp | kernel.FusedOp) or op.dialect_name() == "pg":
                raise PassFailedException(
                    f"pg-to-gpu: @{self.fn.sym_name.data}: '{op.name}'{where(op)} is not lowered to loops (run "
                    "pg-bufferize and pg-to-loops first)"
                )
            elif not isinstance(
                op,
                arith.ConstantOp
                | memref.AllocOp
                | memref.ViewOp
                | memref.GetGlobalOp
                | memref.DeallocOp
                | memref.CopyOp
                | func.CallOp  # of a kernel pg-outline-kernels lowers once (pg-inline-kernels inlines it)
                | func.ReturnOp,
            ):
                raise PassFailedException(
                    f"pg-to-gpu: @{self.fn.sym_name.data}: '{op.name}'{where(op)} at the top level is neither buffer "
                    "set-up nor a loop nest"
                )
        for par in nests:
            if isinstance(par, gpu.LaunchOp):
                self.outline_launch(par)
            else:
                self.outline(par)
        if broken := sorted(self.promised - self.kept):
            raise PassFailedException(
                f"pg-to-gpu: @{self.fn.sym_name.data}: kernel(s) {', '.join(broken)} are scheduled block_per_row or "
                "atomic, but none of their loop nests has that form"
            )
        # Constants and views the nests used may be dead on the host now.
        for op in reversed(list(block.ops)):
            if isinstance(op, arith.ConstantOp | memref.ViewOp | memref.GetGlobalOp) and not any(
                r.uses for r in op.results
            ):
                block.erase_op(op)
        if self.gpu_module.body.block.first_op is not None:
            self.module.body.block.add_op(self.gpu_module)

    def kernel_name(self, par: Operation) -> str:
        attr = par.attributes.get(KERNEL_ATTR)
        base = attr.data if isinstance(attr, StringAttr) else "kernel"
        name, n = base, 0
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def outline(self, par: scf.ParallelOp) -> None:
        bounds = [
            (_const_int(lb), _const_int(ub), _const_int(st))
            for lb, ub, st in zip(par.lowerBound, par.upperBound, par.step, strict=True)
        ]
        if any(x is None for b in bounds for x in b):
            raise PassFailedException(f"pg-to-gpu: a loop nest{where(par)} has bounds that are not constants")
        dims = [(int(lb), int(st)) for lb, _, st in bounds]  # type: ignore[arg-type]
        extents = [max(0, -(-(int(ub) - int(lb)) // int(st))) for lb, ub, st in bounds]  # type: ignore[arg-type, operator]
        host = par.parent_block()
        assert host is not None
        if math.prod(extents) == 0:  # the nest never runs
            host.erase_op(par)
            return

        name = self.kernel_name(par)
        kfunc, roots, b = self.new_kernel(par, name)
        kind = par.attributes.get(KIND_ATTR)
        kind_name = kind.data if isinstance(kind, StringAttr) else ""
        grid, threads, schedule = self.schedule(par, b, dims, extents, kind_name)
        kfunc.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [threads, 1, 1])
        kfunc.attributes[SCHEDULE_ATTR] = StringAttr(schedule)
        if kind is not None:
            kfunc.attributes[KIND_ATTR] = kind
        self.gpu_module.body.block.add_op(kfunc)
        self.launch(par, name, roots, [grid, 1, 1], [threads, 1, 1])

    def outline_launch(self, launch: gpu.LaunchOp) -> None:
        """A ``gpu.launch`` that a schedule pass made (``pg-matmul-schedule``): its body becomes the kernel, its
        block arguments the ids and sizes of the grid (MLIR's order: block ids, thread ids, grid size, block
        size), and its constant sizes those of the launch."""
        sizes = [
            _const_int(v)
            for v in (
                launch.gridSizeX,
                launch.gridSizeY,
                launch.gridSizeZ,
                launch.blockSizeX,
                launch.blockSizeY,
                launch.blockSizeZ,
            )
        ]
        if any(v is None for v in sizes):
            raise PassFailedException(f"pg-to-gpu: a gpu.launch{where(launch)} has sizes that are not constants")
        grid, block = [int(v) for v in sizes[:3]], [int(v) for v in sizes[3:]]  # type: ignore[arg-type]
        host = launch.parent_block()
        assert host is not None
        if math.prod(grid) == 0:
            host.erase_op(launch)
            return
        name = self.kernel_name(launch)
        kfunc, roots, b = self.new_kernel(launch, name)
        body = launch.body.block
        dims = [gpu.DimensionAttr(d) for d in (gpu.DimensionEnum.X, gpu.DimensionEnum.Y, gpu.DimensionEnum.Z)]
        ids: list[SSAValue] = [b.v(gpu.BlockIdOp(d)) for d in dims] + [b.v(gpu.ThreadIdOp(d)) for d in dims]
        ids += [b.index(n) for n in (*grid, *block)]
        terminator = body.last_op
        assert isinstance(terminator, gpu.TerminatorOp)
        body.erase_op(terminator)
        Rewriter.inline_block(body, b.ip, ids)
        for key, value in launch.attributes.items():
            if key not in (KERNEL_ATTR,):
                kfunc.attributes[key] = value
        kfunc.attributes.setdefault("gpu.known_block_size", DenseArrayBase.from_list(i32, block))
        self.gpu_module.body.block.add_op(kfunc)
        self.launch(launch, name, roots, grid, block)

    def launch(self, nest: Operation, name: str, roots: list[SSAValue], grid: list[int], block: list[int]) -> None:
        """Replace ``nest`` on the host by the launch of kernel ``name``."""
        host = nest.parent_block()
        assert host is not None
        hb = _Builder(InsertPoint.before(nest), nest.location, self.host_consts)
        hb.index(1)  # the constants in the order launches have always made them: 1, grid, block
        launch = gpu.LaunchFuncOp(
            SymbolRefAttr(self.gpu_module.sym_name.data, [StringAttr(name)]),
            [hb.index(n) for n in grid],
            [hb.index(n) for n in block],
            kernelOperands=roots,
        )
        hb.op(launch)
        host.erase_op(nest, safe_erase=False)

    def new_kernel(self, par: Operation, name: str) -> tuple[gpu.FuncOp, list[SSAValue], _Builder]:
        """An empty ``gpu.func`` for the nest ``par`` whose arguments are the buffers it uses, with the constants and
        views it uses cloned in, and the uses inside ``par`` rewired to them; a builder for its body."""
        loc = par.location
        host = par.parent_block()
        assert host is not None
        # The values from outside: roots (kernel arguments), and constants/views cloned into the kernel.
        roots: list[SSAValue] = []
        clones: list[Operation] = []
        seen: set[SSAValue] = set()

        def visit(v: SSAValue) -> None:
            if v in seen:
                return
            seen.add(v)
            op = v.owner
            defining = op if isinstance(op, Operation) else op.parent_op()
            if defining is not None and _inside(defining, par):
                return
            if isinstance(op, arith.ConstantOp):
                clones.append(op)
            elif isinstance(op, memref.ViewOp) and _const_int(op.byte_shift) is not None and not op.sizes:
                visit(op.source)
                visit(op.byte_shift)
                clones.append(op)
            elif isinstance(v.type, MemRefType):
                roots.append(v)
            else:
                raise PassFailedException(
                    f"pg-to-gpu: the loop nest{where(par)} uses {v.type} value {v.name_hint or ''} defined outside it "
                    "that is neither a buffer nor a constant"
                )

        for op in par.walk():
            if op is par:
                continue
            for v in op.operands:
                visit(v)

        kfunc = gpu.FuncOp(name, ([r.type for r in roots], []), kernel=True)
        kfunc.location = loc
        kblock = kfunc.body.block
        kblock.add_op(gpu.ReturnOp([]))
        kblock.last_op.location = loc  # type: ignore[union-attr]
        mapping: dict[SSAValue, SSAValue] = dict(zip(roots, kblock.args, strict=True))
        for r, a in zip(roots, kblock.args, strict=True):
            a.name_hint = r.name_hint
        ret = kblock.last_op
        assert ret is not None
        for op in sorted(clones, key=lambda o: self.host_order.get(o, -1)):
            clone = op.clone(value_mapper=mapping)
            Rewriter.insert_op(clone, InsertPoint.before(ret))
            clone.location = op.location
            for old, new in zip(op.results, clone.results, strict=True):
                mapping[old] = new
        consts = _Constants(kblock)
        for op in kblock.ops:
            if isinstance(op, arith.ConstantOp):
                consts.add(op)
        b = _Builder(InsertPoint.before(ret), loc, consts)
        for op in par.walk():
            if op is par:
                continue
            for i, v in enumerate(op.operands):
                if v in mapping:
                    op.operands[i] = mapping[v]
        return kfunc, roots, b

    # --- schedules ----------------------------------------------------------------------------------------------

    def block_for(self, points: int) -> int:
        return min(self.block_size, max(WARP, -(-points // WARP) * WARP))

    def schedule(
        self, par: scf.ParallelOp, b: _Builder, dims: list[tuple[int, int]], extents: list[int], kind: str
    ) -> tuple[int, int, str]:
        """Emit the kernel body; returns (grid blocks, threads per block, schedule name). A nest with a
        ``kernel.schedule`` follows it (``block_per_row`` and ``atomic`` apply to the kernel's reduction or scatter
        nest; its other nests, a scatter's zero fill, take a thread per point); one without it (loop-stage IR
        written by hand) takes the pass options."""
        attr = par.attributes.get(NEST_SCHEDULE_ATTR)
        if isinstance(attr, ScheduleAttr):
            strategy = attr.strategy.data
            self.block_size = attr.count("block", self.block_size)
            reductions, atomics = strategy == "block_per_row", strategy == "atomic"
            if strategy not in STRATEGIES:
                raise PassFailedException(f"pg-to-gpu: a loop nest{where(par)} has an unknown schedule {attr}")
            if strategy not in ("thread_per_point", "block_per_row", "atomic"):
                raise PassFailedException(
                    f"pg-to-gpu: a loop nest{where(par)} is scheduled {attr}, which pg-to-gpu does not lower (run "
                    "pg-matmul-schedule first)"
                )
            if strategy != "thread_per_point":
                self.promised.add(self.kernel_of(par))
        else:
            self.block_size = self.default_block_size
            reductions, atomics = self.reductions and kind == "reduction", self.atomics and kind == "scatter_add"
        if reductions:
            red = match_reduction(par)
            if red is not None and red.extent >= MIN_BLOCK_REDUCTION:
                self.kept.add(self.kernel_of(par))
                return self.block_per_row(par, b, dims, extents, red)
        if atomics:
            sc = match_scatter(par)
            if sc is not None:
                self.kept.add(self.kernel_of(par))
                return self.atomic(par, b, dims, extents, sc)
        return self.thread_per_point(par, b, dims, extents)

    @staticmethod
    def kernel_of(par: Operation) -> str:
        attr = par.attributes.get(KERNEL_ATTR)
        return attr.data if isinstance(attr, StringAttr) else ""

    def thread_ids(self, b: _Builder, threads: int) -> tuple[SSAValue, SSAValue]:
        bid = b.v(gpu.BlockIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X)))
        tid = b.v(gpu.ThreadIdOp(gpu.DimensionAttr(gpu.DimensionEnum.X)))
        return bid, tid

    def thread_per_point(
        self, par: scf.ParallelOp, b: _Builder, dims: list[tuple[int, int]], extents: list[int]
    ) -> tuple[int, int, str]:
        total = math.prod(extents)
        threads = self.block_for(total)
        grid = -(-total // threads)
        bid, tid = self.thread_ids(b, threads)
        lin = b.v(arith.AddiOp(b.v(arith.MuliOp(bid, b.index(threads))), tid))
        ok = b.v(arith.CmpiOp(lin, b.index(total), "ult"))
        _, then, _ = b.if_(ok)
        idx = delinearize(then, lin, extents)
        ivs = [_affine(then, j, lb, st) for j, (lb, st) in zip(idx, dims, strict=True)]
        self.inline_body(par, then, ivs)
        return grid, threads, "thread_per_point"

    @staticmethod
    def inline_body(par: scf.ParallelOp, b: _Builder, ivs: Sequence[SSAValue]) -> None:
        block = par.body.block
        terminator = block.last_op
        assert terminator is not None
        block.erase_op(terminator)
        Rewriter.inline_block(block, b.ip, ivs)

    def atomic(
        self, par: scf.ParallelOp, b: _Builder, dims: list[tuple[int, int]], extents: list[int], sc: _Scatter
    ) -> tuple[int, int, str]:
        loops = sc.loops
        all_extents = [*extents, *(level.extent for level in loops)]
        total = math.prod(all_extents)
        threads = self.block_for(total)
        grid = -(-total // threads)
        bid, tid = self.thread_ids(b, threads)
        lin = b.v(arith.AddiOp(b.v(arith.MuliOp(bid, b.index(threads))), tid))
        ok = b.v(arith.CmpiOp(lin, b.index(total), "ult"))
        _, then, _ = b.if_(ok)
        idx = delinearize(then, lin, all_extents)
        ivs = [_affine(then, j, lb, st) for j, (lb, st) in zip(idx[: len(dims)], dims, strict=True)]
        loop_ivs = [_affine(then, j, level.lb, level.step) for j, level in zip(idx[len(dims) :], loops, strict=True)]
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
            properties={"kind": IntegerAttr(_ATOMIC_KIND[type(add)], i64)},
        )
        rmw.location = store.location
        Rewriter.insert_op(rmw, InsertPoint.before(store))
        for op in (store, add, load):
            op.detach()
            op.erase()
        return grid, threads, "atomic"

    def block_per_row(
        self, par: scf.ParallelOp, b: _Builder, dims: list[tuple[int, int]], extents: list[int], red: _Reduction
    ) -> tuple[int, int, str]:
        rows = math.prod(extents)
        k_total = red.extent
        cap = 1 << (self.block_size.bit_length() - 1)  # butterflies need a power of two
        threads = min(cap, max(WARP, 1 << (k_total - 1).bit_length()))
        warps = threads // WARP
        bid, tid = self.thread_ids(b, threads)
        idx = delinearize(b, bid, extents)
        ivs = [_affine(b, j, lb, st) for j, (lb, st) in zip(idx, dims, strict=True)]
        for arg, iv in zip(par.body.block.args, ivs, strict=True):
            arg.replace_all_uses_with(iv)
        for op in red.pre:
            op.detach()
            Rewriter.insert_op(op, b.ip)
        init = red.init
        t = init.type
        combine_type: Any = type(red.combine)

        # The strided loop over the linearized reduced points.
        loop_block = Block(arg_types=[IndexType(), t])
        loop = scf.ForOp(tid, b.index(k_total), b.index(threads), [init], Region(loop_block))
        b.op(loop)
        lb_ = _Builder(InsertPoint.at_end(loop_block), b.loc, b.consts)
        kidx = delinearize(lb_, loop_block.args[0], [level.extent for level in red.loops])
        for level, j in zip(red.loops, kidx, strict=True):
            level.op.body.block.args[0].replace_all_uses_with(_affine(lb_, j, level.lb, level.step))
        innermost = red.loops[-1].op.body.block
        innermost.args[1].replace_all_uses_with(loop_block.args[1])
        for level in red.loops:
            for op in level.pre:
                op.detach()
                Rewriter.insert_op(op, lb_.ip)
        lb_.op(scf.YieldOp(red.combine.results[0]))
        partial = loop.results[0]

        def combine(x: SSAValue, y: SSAValue, bb: _Builder) -> SSAValue:
            return bb.v(combine_type(x, y))

        def butterfly(x: SSAValue, width: int, bb: _Builder) -> SSAValue:
            offset = width // 2
            while offset >= 1:
                x = combine(x, bb.v(gpu_ext.ShuffleOp(x, "xor", offset)), bb)
                offset //= 2
            return x

        warp_total = butterfly(partial, WARP, b)
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
            identity = _const_value(init)
            assert identity is not None
            no.op(scf.YieldOp(no.const(identity, t)))
            total = butterfly(sel.results[0], warps, final)
            _, tail, _ = final.if_(final.v(arith.CmpiOp(lane, final.const(0, i32), "eq")))
        red.loops[0].op.results[0].replace_all_uses_with(total)
        for op in red.post:
            op.detach()
            Rewriter.insert_op(op, tail.ip)
        return rows, threads, "block_per_row"


# ---------------------------------------------------------------------------------------------------------------
# The pass


@dataclass(frozen=True)
class PgToGpu(ModulePass):
    """Outline every loop nest into a ``gpu.func`` and launch it from the host (see the module docstring). Options:
    ``block-size`` (threads per block, a multiple of 32 up to 1024), ``block-reductions`` (a block per output point
    for reductions) and ``atomics`` (scatter-adds with atomic adds)."""

    name = "pg-to-gpu"
    block_size: int = 256
    block_reductions: bool = True
    atomics: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.block_size % WARP or not WARP <= self.block_size <= 1024:
            raise PassFailedException(f"pg-to-gpu: block-size={self.block_size} is not a multiple of 32 in 32..1024")
        fns = [f for f in op.ops if isinstance(f, func.FuncOp) and not f.is_declaration]
        for fn in fns:
            _Outliner(fn, op, self.block_size, self.block_reductions, self.atomics).run()
        if any(isinstance(o, gpu.ModuleOp) for o in op.ops):
            op.attributes["gpu.container_module"] = UnitAttr()
