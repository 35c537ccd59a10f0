"""``pg-bufferize``: tensors become buffers, in destination-passing style, with a memory plan.

Input: functions whose bodies are ``kernel.fused`` ops (what ``pg-fuse`` makes) and a ``func.return``. Output:

- **The calling convention.** A function ``(tensor A, tensor B) -> (tensor R0, tensor R1)`` becomes
  ``(memref A, memref B, memref R0 {pg.result = 0}, memref R1 {pg.result = 1}) -> ()``: it takes its inputs and
  then one *output buffer* per result, which it writes, and returns nothing. The caller owns every one of these
  buffers (they stay where it put them); inputs are only read; output buffers must not alias each other or an
  input. The ``pg.result = k : i64`` argument attribute marks the buffer of result ``k``.
- **Kernels.** Each ``kernel.fused`` becomes a ``kernel.launch`` reading its input buffers and writing its output
  buffers; its region (tensor-level ``pg`` ops) moves over unchanged.
- **The memory plan.** A kernel output that is a function result is written straight into its output buffer.
  The other outputs (intermediates) live in one byte arena: ``memref.alloc`` of ``memref<Nxi8>`` at the top of
  the function, ``memref.view`` at a byte offset per intermediate (right before the kernel that writes it) and
  ``memref.dealloc`` at the end. Offsets come from liveness over the kernel order: an intermediate is live from
  the kernel that writes it to the last kernel that reads it (both included, so a kernel never writes over its
  own inputs), and two intermediates share bytes only when their live ranges are disjoint. Offsets are chosen by
  the greedy-by-size heuristic of TFLite's arena planner (Pisarchyk and Lee, "Efficient Memory Management for
  Deep Neural Net Inference", 2020): largest first, each at the best-fitting gap among the intermediates live at
  the same time; every offset is a multiple of ``alignment`` bytes. With ``reuse=false`` nothing is shared (for
  debugging the plan).
- **Reshapes are views.** A kernel that only reshapes an intermediate (``pg-fuse`` leaves a reshape between a
  gather and a matmul as a ``movement`` kernel of its own) launches nothing: a row-major buffer read with another
  shape is the same bytes, so its output is a second ``memref.view`` at the input's offset, and the two values
  share one live range.
- **Copies.** A function argument that is returned, and every repeat of a value returned more than once, is
  copied into its output buffer with ``memref.copy`` at the end of the function.
- **The report.** ``pg.peak_bytes = N : i64`` on the function: the arena's size, i.e. the bytes the function
  needs besides its arguments. ``report=true`` also prints one line per function to stderr, with the bytes
  intermediates would need without reuse and the lower bound (the most bytes live at one kernel).

Every op the pass creates carries the location of the op it stands for: a launch, its views and their offsets the
kernel's; a copy the ``func.return``'s (else the kernel's that made the value); the arena the first kernel's and its
dealloc the last kernel's (the user's file:line of the ops whose values they hold), unless the function has one.

Raises ``PassFailedException`` for a function that holds an op other than ``kernel.fused`` and ``func.return`` at
its top level (run ``pg-fuse`` first) or whose arguments are not all tensors (already bufferized).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    FunctionType,
    IndexType,
    IntegerAttr,
    LocationAttr,
    ModuleOp,
    TensorType,
    UnknownLoc,
    i8,
    i64,
)
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import kernel, pg
from picograd.dialects.attrs import PEAK_ATTR, RESULT_ATTR
from picograd.passes.buffers import byte_size, memref_type, where

# ---------------------------------------------------------------------------------------------------------------
# The memory plan


@dataclass(frozen=True)
class Interval:
    """A buffer request: ``size`` bytes live from step ``start`` to step ``end`` (both included)."""

    size: int
    start: int
    end: int

    def overlaps(self, other: Interval) -> bool:
        return not (self.end < other.start or other.end < self.start)


@dataclass(frozen=True)
class MemoryPlan:
    """Byte offsets into one arena, one per request, and the arena's size; ``no_reuse`` is what the requests
    would take without sharing and ``lower_bound`` the most bytes live at one step (both aligned)."""

    offsets: tuple[int, ...]
    size: int
    no_reuse: int
    lower_bound: int


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def plan_memory(requests: Sequence[Interval], alignment: int = 64, reuse: bool = True) -> MemoryPlan:
    """Greedy-by-size offset assignment (see the module docstring): requests sorted by size (largest first, then
    by start), each placed at the smallest gap between already placed requests whose live ranges overlap it that
    fits, or after the last of them. Empty requests get offset 0 and take no space."""
    sizes = [_align(r.size, alignment) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (-sizes[i], requests[i].start, i))
    offsets = [0] * len(requests)
    placed: list[int] = []
    starts = [r.start for r in requests]
    ends = [r.end for r in requests]
    for i in order:
        if sizes[i] == 0:
            continue
        start, stop = starts[i], ends[i]  # Interval.overlaps, inlined: this loop is quadratic in the requests
        conflicts = sorted(
            (offsets[j], sizes[j]) for j in placed if not reuse or not (stop < starts[j] or ends[j] < start)
        )
        best: int | None = None
        best_gap = 0
        end = 0
        for off, size in conflicts:
            gap = off - end
            if gap >= sizes[i] and (best is None or gap < best_gap):
                best, best_gap = end, gap
            end = max(end, off + size)
        offsets[i] = end if best is None else best
        placed.append(i)
    total = max((offsets[i] + sizes[i] for i in placed), default=0)
    # The most bytes live at one step: a sweep over the steps where a request starts or stops being live.
    events = sorted(
        [(r.start, sz) for r, sz in zip(requests, sizes, strict=True)]
        + [(r.end + 1, -sz) for r, sz in zip(requests, sizes, strict=True)]
    )
    lower = live = 0
    for _, delta in events:
        live += delta
        lower = max(lower, live)
    return MemoryPlan(tuple(offsets), total, sum(sizes), lower)


# ---------------------------------------------------------------------------------------------------------------
# The rewrite


def _check_bufferizable(fn: func.FuncOp) -> list[kernel.FusedOp]:
    """The kernels of ``fn`` in order; raises ``PassFailedException`` for anything else at the top level."""
    name = fn.sym_name.data
    for i, t in enumerate(fn.function_type.inputs.data):
        if not isinstance(t, TensorType):
            raise PassFailedException(
                f"pg-bufferize: @{name}: argument {i} has type {t}, not a tensor; the function is already bufferized"
            )
    kernels = []
    for op in fn.body.block.ops:
        if isinstance(op, kernel.FusedOp):
            kernels.append(op)
        elif not isinstance(op, func.ReturnOp):
            raise PassFailedException(
                f"pg-bufferize: @{name}: '{op.name}'{where(op)} is outside a kernel; only kernel.fused ops can be "
                "bufferized (run pg-fuse first)"
            )
    return kernels


def reshape_alias_source(op: kernel.FusedOp) -> SSAValue | None:
    """The input of a kernel that only reshapes its one input (a row-major buffer reinterpreted in place), else
    None."""
    block = op.body.block
    body = list(block.ops)
    if len(op.inputs) != 1 or len(op.outputs) != 1 or len(body) != 2:
        return None
    reshape, yld = body
    if isinstance(reshape, pg.ReshapeOp) and reshape.input == block.args[0] and list(yld.operands) == [reshape.result]:
        return op.inputs[0]
    return None


def _located(*ops: Operation | Block) -> LocationAttr:
    """The location of the first op among ``ops`` that has a file:line one (else the first op's)."""
    for op in ops:
        if isinstance(op, Operation) and isinstance(op.location, FileLineColLoc):
            return op.location
    first = ops[0]
    return first.location if isinstance(first, Operation) else UnknownLoc()


def bufferize_function(fn: func.FuncOp, alignment: int = 64, reuse: bool = True, report: bool = False) -> MemoryPlan:
    """Rewrite ``fn`` in place (see the module docstring) and return its memory plan."""
    kernels = _check_bufferizable(fn)
    block = fn.body.block
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    name = fn.sym_name.data
    old_args = list(block.args)
    n_in = len(old_args)
    returned = list(ret.arguments)

    # New arguments: a buffer per input, then an output buffer per result.
    buffer: dict[SSAValue, SSAValue] = {}
    for i, a in enumerate(old_args):
        buffer[a] = block.insert_arg(memref_type(a.type), n_in + i, a.location)
        buffer[a].name_hint = a.name_hint
    outs = [block.insert_arg(memref_type(v.type), 2 * n_in + k, ret.location) for k, v in enumerate(returned)]
    for k, out in enumerate(outs):
        out.name_hint = f"result{k}"
    copies: list[tuple[SSAValue, SSAValue]] = []  # (source value, output buffer), done at the end
    for k, v in enumerate(returned):
        if v not in buffer and not isinstance(v.owner, kernel.FusedOp):
            raise PassFailedException(f"pg-bufferize: @{name}: result {k} is neither an argument nor a kernel output")
        if v in buffer:  # a function argument, or a value returned before
            copies.append((v, outs[k]))
        else:
            buffer[v] = outs[k]

    # Reshape-only kernels of intermediates become aliases: a second view of the same bytes, no launch.
    aliases = {op for op in kernels if reshape_alias_source(op) is not None}
    root: dict[SSAValue, SSAValue] = {}
    for op in kernels:
        src = reshape_alias_source(op)
        if src is not None and src not in buffer and op.outputs[0] not in buffer:
            root[op.outputs[0]] = root.get(src, src)
        else:
            aliases.discard(op)

    # Liveness of intermediates (one slot per alias class) over the kernel order.
    step = {op: i for i, op in enumerate(kernels)}
    intermediates: list[SSAValue] = [r for op in kernels for r in op.results if r not in buffer]
    slots = [r for r in intermediates if r not in root]
    first_use: dict[SSAValue, int] = {r: step[r.owner] for r in slots}  # type: ignore[index]
    last = dict(first_use)
    for op in kernels:
        for v in op.operands:
            r = root.get(v, v)
            if r in last and op not in aliases:
                last[r] = max(last[r], step[op])
    requests = [Interval(byte_size(r.type), first_use[r], last[r]) for r in slots]
    plan = plan_memory(requests, alignment, reuse)

    # The arena and a view per intermediate, right before the kernel that writes it.
    arena: SSAValue | None = None
    anchor = block.first_op
    assert anchor is not None
    if intermediates:
        alloc = memref.AllocOp.get(i8, alignment, [plan.size])
        alloc.location = _located(fn, *kernels)
        block.insert_op_before(alloc, anchor)
        arena, anchor = alloc.memref, alloc
    offset_of = dict(zip(slots, plan.offsets, strict=True))
    shift: dict[int, SSAValue] = {}
    for op in kernels:
        for r in op.results:
            if r in buffer:
                continue
            assert arena is not None
            off = offset_of[root.get(r, r)]
            if off not in shift:
                c = arith.ConstantOp(IntegerAttr(off, IndexType()))
                c.location = op.location
                block.insert_op_after(c, anchor)
                shift[off], anchor = c.result, c
            view = memref.ViewOp(arena, shift[off], [], memref_type(r.type))
            view.location = op.location
            block.insert_op_before(view, op)
            buffer[r] = view.result
        if op in aliases:
            continue
        launch = kernel.LaunchOp(
            op.sym_name.data,
            op.kind.data,
            [buffer[v] for v in op.inputs],
            [buffer[r] for r in op.outputs],
            op.detach_region(op.body),
            op.schedule,
        )
        launch.location = op.location
        block.insert_op_before(launch, op)

    # Copies, dealloc, return; then drop the tensor-level ops and arguments.
    for src, dst in copies:
        cp = memref.CopyOp(buffer[src], dst)
        cp.location = _located(ret, src.owner, fn)
        block.insert_op_before(cp, ret)
    if arena is not None:
        dealloc = memref.DeallocOp.get(arena)
        dealloc.location = _located(fn, *reversed(kernels))
        block.insert_op_before(dealloc, ret)
    new_ret = func.ReturnOp()
    new_ret.location = _located(ret, fn, *reversed(kernels))
    block.insert_op_before(new_ret, ret)
    block.erase_op(ret)
    for op in reversed(kernels):
        block.erase_op(op, safe_erase=False)
    for a in old_args:
        block.erase_arg(a, safe_erase=False)

    fn.properties["function_type"] = FunctionType.from_lists([a.type for a in block.args], [])
    attrs: list[DictionaryAttr] = []
    old_attrs = fn.arg_attrs.data if fn.arg_attrs is not None else [DictionaryAttr({})] * n_in
    attrs.extend(old_attrs)  # type: ignore[arg-type]
    attrs.extend(DictionaryAttr({RESULT_ATTR: IntegerAttr(k, i64)}) for k in range(len(outs)))
    fn.properties["arg_attrs"] = ArrayAttr(attrs)
    fn.properties.pop("res_attrs", None)
    fn.attributes[PEAK_ATTR] = IntegerAttr(plan.size, i64)
    if report:
        print(
            f"pg-bufferize: @{name}: peak {plan.size} bytes for {len(intermediates)} intermediates of "
            f"{len(kernels)} kernels, {len(aliases)} of them reshapes turned into views (without reuse "
            f"{plan.no_reuse}, most live at once {plan.lower_bound})",
            file=sys.stderr,
        )
    return plan


@dataclass(frozen=True)
class PgBufferize(ModulePass):
    """Bufferize every function of the module (see the module docstring). Options: ``alignment`` (bytes, a power
    of two), ``reuse`` (share arena bytes between intermediates with disjoint live ranges) and ``report`` (print
    each function's peak bytes to stderr)."""

    name = "pg-bufferize"
    alignment: int = 64
    reuse: bool = True
    report: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise PassFailedException(f"pg-bufferize: alignment={self.alignment} is not a power of two")
        for fn in list(op.walk()):
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                bufferize_function(fn, self.alignment, self.reuse, self.report)
