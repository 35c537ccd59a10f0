"""``pg-outline-kernels``: lower each kernel once, however many times a function launches it.

A transformer's layers, an MLP's hidden layers and the backward passes of both launch kernels that are the same
computation over different buffers (same kind, schedule, buffer types and body). ``pg-to-loops``,
``pg-matmul-schedule``, ``pg-to-gpu`` and ``pg-to-ptx`` would lower every copy, which makes compile time grow with
the model's depth at the cost of a whole layer's kernels, and the PTX module hold one function per copy. This pass
runs after ``pg-bufferize``: every group of two or more structurally identical ``kernel.launch`` ops of a function
becomes one private function holding one ``kernel.launch`` over its arguments::

    kernel.launch @k24_matmul "matmul" ... ins(%v3, %w1 : ...) outs(%v7 : ...) { ... }   // layer 1
    kernel.launch @k75_matmul "matmul" ... ins(%v9, %w2 : ...) outs(%v12 : ...) { ... }  // layer 2, same body
      ==>
    func.call @step__k24_matmul(%v3, %w1, %v7) : (...) -> ()
    func.call @step__k24_matmul(%v9, %w2, %v12) : (...) -> ()
    func.func private @step__k24_matmul(%a: ..., %b: ..., %c: ...) attributes {pg.outlined} {
      kernel.launch @k24_matmul "matmul" ... ins(%a, %b : ...) outs(%c : ...) { ... }
      func.return
    }

The later passes lower the private function like any other (its ``gpu.func`` takes the buffers as arguments), and
``pg-inline-kernels`` (after ``pg-to-gpu``) puts each call's launches back into the caller, passing the caller's
buffers, which are views of the arena at constant byte offsets: the launch plan passes the arena's address plus the
offset (``picograd.runtime.cuda.View``). The loop-stage interpreter runs the calls as they are.

**Identical** means equal structural keys (``kernel_key``): the kind, the schedule, the types of the buffers, which
operands are the same buffer, whether each starts 16 bytes aligned (the matmul schedules vectorize on it), and the
body op by op (names, properties, attributes, result types, operands by position, nested regions). Source locations
do not count: the outlined kernel keeps the first copy's. A kernel reading a ``memref.global`` constant (no
alignment promise) or a buffer the key cannot describe is left in place.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, UnitAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from picograd.dialects import kernel

OUTLINED_ATTR = "pg.outlined"
"""Unit attribute of a function that ``pg-outline-kernels`` made: one kernel, called from the function it came from
(``pg-inline-kernels`` inlines its calls)."""


def _alignment(v: SSAValue) -> int | None:
    """16 when the buffer ``v`` starts 16-byte aligned (a function argument, an allocation, or a view of one at an
    offset that is a multiple of 16), 0 for a view at another offset, None for what the key cannot promise
    anything about (a ``memref.global``, a view at a non-constant offset)."""
    owner = v.owner
    if isinstance(owner, Block):
        return 16
    if isinstance(owner, memref.AllocOp):
        return 16
    if isinstance(owner, memref.ViewOp):
        shift = owner.byte_shift.owner
        if owner.sizes or not isinstance(shift, arith.ConstantOp) or not isinstance(shift.value, IntegerAttr):
            return None
        return 16 if shift.value.value.data % 16 == 0 else 0
    return None


def _region_key(region: Region, numbers: dict[SSAValue, int], out: list[Hashable]) -> None:
    """Append the structure of ``region`` to ``out``, numbering the values it defines in ``numbers``."""
    out.append(len(region.blocks))
    for block in region.blocks:
        out.append("^")
        for arg in block.args:
            numbers[arg] = len(numbers)
            out.append(arg.type)
        for op in block.ops:
            out.append(op.name)
            out.append(tuple(numbers[v] for v in op.operands))
            if op.properties:
                out.append(tuple(sorted(op.properties.items())))
            if op.attributes:
                out.append(tuple(sorted(op.attributes.items())))
            for r in op.results:
                numbers[r] = len(numbers)
                out.append(r.type)
            if op.successors:
                out.append(tuple(id(s) for s in op.successors))  # no unstructured control flow in kernels
            for inner in op.regions:
                _region_key(inner, numbers, out)


def kernel_key(launch: kernel.LaunchOp) -> tuple[Hashable, ...] | None:
    """The structural key of ``launch`` (see the module docstring), or None when it is not to be outlined. Two
    launches with equal keys compute the same function of their buffers: only the buffers differ."""
    operands = list(launch.operands)
    first: dict[SSAValue, int] = {}
    pattern: list[int] = []
    aligned: list[int] = []
    for v in operands:
        a = _alignment(v)
        if a is None:
            return None
        aligned.append(a)
        pattern.append(first.setdefault(v, len(first)))
    out: list[Hashable] = [
        launch.kind.data,
        launch.schedule,
        len(launch.ins),
        tuple(v.type for v in operands),
        tuple(pattern),
        tuple(aligned),
    ]
    extra = {k: v for k, v in launch.attributes.items()}
    if extra:
        out.append(tuple(sorted(extra.items())))
    try:
        _region_key(launch.body, {}, out)
    except KeyError:  # an operand from outside the body: not isolated, leave it alone
        return None
    return tuple(out)


@dataclass(frozen=True)
class PgOutlineKernels(ModulePass):
    """Outline every group of identical ``kernel.launch`` ops of a function into one private function (see the
    module docstring)."""

    name = "pg-outline-kernels"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        taken = {o.sym_name.data for o in op.ops if isinstance(getattr(o, "sym_name", None), StringAttr)}  # type: ignore[attr-defined]
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp) and not f.is_declaration]:
            if OUTLINED_ATTR in fn.attributes:
                continue
            groups: dict[tuple[Hashable, ...], list[kernel.LaunchOp]] = {}
            for launch in fn.body.block.ops:
                if isinstance(launch, kernel.LaunchOp) and (key := kernel_key(launch)) is not None:
                    groups.setdefault(key, []).append(launch)
            after: Operation = fn
            for launches in groups.values():
                if len(launches) > 1:
                    after = _outline(op, fn, launches, taken, after)


def _outline(
    module: ModuleOp, fn: func.FuncOp, launches: list[kernel.LaunchOp], taken: set[str], after: Operation
) -> func.FuncOp:
    """Move ``launches[0]`` into a new private function placed after ``after`` and replace every launch of
    ``launches`` by a call of it; returns the function."""
    first = launches[0]
    name = base = f"{fn.sym_name.data}__{first.sym_name.data}"
    n = 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    distinct = list(dict.fromkeys(first.operands))
    callee = func.FuncOp(name, ([v.type for v in distinct], []), visibility="private")
    callee.attributes[OUTLINED_ATTR] = UnitAttr()
    callee.location = first.location
    block = callee.body.block
    mapping: dict[SSAValue, SSAValue] = dict(zip(distinct, block.args, strict=True))
    moved = first.clone(value_mapper=mapping)
    block.add_op(moved)
    ret = func.ReturnOp()
    ret.location = first.location
    block.add_op(ret)
    module.body.block.insert_op_after(callee, after)
    for launch in launches:
        args = list(dict.fromkeys(launch.operands))
        call = func.CallOp(name, args, [])
        call.location = launch.location
        Rewriter.replace_op(launch, call, [])
    return callee


__all__ = ["OUTLINED_ATTR", "PgOutlineKernels", "kernel_key"]
