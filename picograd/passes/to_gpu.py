"""``pg-to-gpu``: every loop nest of the loop stage becomes a kernel launch on a grid of thread blocks.

Input: the loop stage (``pg-bufferize`` + ``pg-to-loops``): functions in destination-passing style whose top level
holds buffer set-up (``memref.alloc`` of the arena and of scratch buffers, ``memref.view`` at constant byte offsets,
``memref.get_global``, constants), one top-level ``scf.parallel`` per loop nest (tagged ``pg.kernel`` and
``pg.kind``, and ``pg.nest`` on the nest a kernel kind's schedule applies to), ``memref.copy``/``memref.dealloc``
and ``func.return``. Output (MLIR's ``gpu`` dialect, the shape of ``gpu-kernel-outlining``'s result)::

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

**Schedules** of the other nests: the nest's kind (its ``pg.nest`` mark, a row of the kind registry
``picograd.passes.kinds``; unmarked nests are the elementwise kind's) maps it under the strategy its
``kernel.schedule`` names (``pg-schedule`` chose it for the kernel; ``pg-to-loops`` copied it onto the kernel's
nests), with the schedule's ``block`` as the most threads a block; a nest without one (loop-stage IR written by
hand) takes its kind's ``unscheduled`` strategy where the pass options allow it (``block-size``,
``block-reductions``, ``atomics``). The strategy is recorded as ``pg.schedule`` on the ``gpu.func``, with
``gpu.known_block_size``:

- ``thread_per_point`` (every nest by default; ``kinds/elementwise.py``): a thread per iteration point on a 1-D
  grid.
- ``block_per_row`` (the nest a reduction marked; ``kinds/reduction.py``): one block per output point, the
  threads striding over the reduced points and combining with warp shuffles and workgroup memory.
- ``warp_per_row`` (the same nest): one warp per output point, ``block / 32`` points a block, warp shuffles only.
- ``atomic`` (the nest a scatter-add marked; ``kinds/scatter_add.py``): a thread per (outer point, index tuple),
  the read-modify-write an atomic add.

A kind's mapping may refuse a marked nest whose form does not allow the strategy (ops hoisted between its loop
levels that write memory or branch): the nest then takes ``thread_per_point``, and the pass fails when no nest of
a kernel scheduled ``block_per_row``/``warp_per_row``/``atomic`` was mapped so.

Every op created carries the location of the nest it comes from (the user's file:line of the kernel's op).

Raises ``PassFailedException`` for a function that still holds ``kernel.launch`` or ``pg`` ops (run ``pg-to-loops``
first), for top-level ops other than the ones above, and for nests that use a value defined outside them that is
neither a buffer nor a constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import (
    DenseArrayBase,
    MemRefType,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    UnitAttr,
    i32,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext, kernel
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, NEST_ATTR, SCHEDULE_ATTR, STRATEGY_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where
from picograd.passes.ir_builder import Builder, ConstantPool, const_int
from picograd.passes.kinds import GPU_STRATEGIES, GpuNest, kind_of_nest
from picograd.passes.kinds.elementwise import thread_per_point
from picograd.passes.schedule import STRATEGIES

WARP = gpu_ext.WARP_SIZE


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
# Outlining


class _Outliner:
    """Outlines the nests of one function into one ``gpu.module``."""

    def __init__(self, fn: func.FuncOp, module: ModuleOp, block_size: int, reductions: bool, atomics: bool):
        self.fn = fn
        self.module = module
        self.block_size = block_size  # the option: nests whose schedule names no ``block``
        self.reductions = reductions
        self.atomics = atomics
        self.promised: set[str] = set()  # kernels scheduled block_per_row, warp_per_row or atomic
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
        self.host_consts = ConstantPool(fn.body.block)
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
                f"pg-to-gpu: @{self.fn.sym_name.data}: kernel(s) {', '.join(broken)} are scheduled block_per_row, "
                "warp_per_row or atomic, but none of their loop nests has that form"
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
            (const_int(lb), const_int(ub), const_int(st))
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
        grid, threads, schedule = self.schedule(par, b, dims, extents)
        kfunc.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [threads, 1, 1])
        kfunc.attributes[STRATEGY_ATTR] = StringAttr(schedule)
        if kind is not None:
            kfunc.attributes[KIND_ATTR] = kind
        self.gpu_module.body.block.add_op(kfunc)
        self.launch(par, name, roots, [grid, 1, 1], [threads, 1, 1])

    def outline_launch(self, launch: gpu.LaunchOp) -> None:
        """A ``gpu.launch`` that a schedule pass made (``pg-matmul-schedule``): its body becomes the kernel, its
        block arguments the ids and sizes of the grid (MLIR's order: block ids, thread ids, grid size, block
        size), and its constant sizes those of the launch."""
        sizes = [
            const_int(v)
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
        hb = Builder(InsertPoint.before(nest), nest.location, self.host_consts)
        hb.index(1)  # the constants in the order launches have always made them: 1, grid, block
        launch = gpu.LaunchFuncOp(
            SymbolRefAttr(self.gpu_module.sym_name.data, [StringAttr(name)]),
            [hb.index(n) for n in grid],
            [hb.index(n) for n in block],
            kernelOperands=roots,
        )
        hb.op(launch)
        host.erase_op(nest, safe_erase=False)

    def new_kernel(self, par: Operation, name: str) -> tuple[gpu.FuncOp, list[SSAValue], Builder]:
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
            elif isinstance(op, memref.ViewOp) and const_int(op.byte_shift) is not None and not op.sizes:
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
        consts = ConstantPool(kblock)
        for op in kblock.ops:
            if isinstance(op, arith.ConstantOp):
                consts.add(op)
        b = Builder(InsertPoint.before(ret), loc, consts)
        for op in par.walk():
            if op is par:
                continue
            for i, v in enumerate(op.operands):
                if v in mapping:
                    op.operands[i] = mapping[v]
        return kfunc, roots, b

    # --- schedules ----------------------------------------------------------------------------------------------

    def schedule(
        self, par: scf.ParallelOp, b: Builder, dims: list[tuple[int, int]], extents: list[int]
    ) -> tuple[int, int, str]:
        """Emit the kernel body; returns (grid blocks, threads per block, strategy). The nest's kind (its
        ``pg.nest`` mark, else the elementwise kind) maps it under the strategy of its ``kernel.schedule``
        (``block_per_row`` and ``atomic`` apply to the nest a reduction or scatter marked; the kernel's other nests,
        a scatter's zero fill, take a thread per point); a nest without a schedule (loop-stage IR written by hand)
        takes its kind's ``unscheduled`` strategy where the pass options allow it."""
        mark = par.attributes.get(NEST_ATTR)
        try:
            kind = kind_of_nest(mark.data if isinstance(mark, StringAttr) else None)
        except KeyError:
            raise PassFailedException(
                f"pg-to-gpu: a loop nest{where(par)} is marked with an unknown kind {mark}"
            ) from None
        attr = par.attributes.get(SCHEDULE_ATTR)
        block_size, unroll = self.block_size, 1
        if isinstance(attr, ScheduleAttr):
            strategy: str | None = attr.strategy.data
            block_size = attr.count("block", self.block_size)
            unroll = attr.count("unroll", 1)
            if strategy not in STRATEGIES:
                raise PassFailedException(f"pg-to-gpu: a loop nest{where(par)} has an unknown schedule {attr}")
            if strategy not in GPU_STRATEGIES:
                raise PassFailedException(
                    f"pg-to-gpu: a loop nest{where(par)} is scheduled {attr}, which pg-to-gpu does not lower (run "
                    "pg-matmul-schedule and pg-split-reductions first)"
                )
            if strategy != "thread_per_point":
                self.promised.add(self.kernel_of(par))
        else:
            strategy = kind.unscheduled
            if (strategy == "block_per_row" and not self.reductions) or (strategy == "atomic" and not self.atomics):
                strategy = None
        nest = GpuNest(par, b, dims, extents, block_size, unroll)
        lower = kind.gpu.get(strategy) if strategy is not None else None
        if lower is not None and strategy != "thread_per_point":
            done = lower(nest)
            if done is not None:
                self.kept.add(self.kernel_of(par))
                return (*done, strategy)  # type: ignore[return-value]
        return (*thread_per_point(nest), "thread_per_point")

    @staticmethod
    def kernel_of(par: Operation) -> str:
        attr = par.attributes.get(KERNEL_ATTR)
        return attr.data if isinstance(attr, StringAttr) else ""


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
