"""``pg-inline-kernels``: put the launches of the kernels ``pg-outline-kernels`` lowered once back into their callers.

Input: the ``gpu`` stage (after ``pg-to-gpu``) of a module where some functions call private functions marked
``pg.outlined``, each of which ``pg-to-gpu`` turned into host code (``gpu.launch_func`` of kernels in its own
``gpu.module``, with constants, scratch allocations and ``memref.get_global`` ops around them). Output: the form
``pg-to-gpu`` gives without outlining: each call is replaced by a copy of its callee's host ops, with the callee's
arguments replaced by the call's buffers (views of the caller's arena, function arguments), and each callee's
kernels move, once, into the gpu module of the function that calls it (renamed ``name_1``, ... on a clash). The
callees and their gpu modules are erased. A launch whose buffer is a view passes the view: its address is the
arena's plus the view's constant byte offset (``picograd.driver.gpu_compile``).

Constants and ``memref.get_global`` ops are shared: one op per value or global in the caller (the launch plan makes
one hidden input per ``memref.get_global`` op).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, gpu, memref
from xdsl.dialects.builtin import ModuleOp, StringAttr, SymbolRefAttr, UnitAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.passes.outline_kernels import OUTLINED_ATTR


def _kernels_module(module: ModuleOp, fn: func.FuncOp, modules: dict[str, gpu.ModuleOp]) -> gpu.ModuleOp:
    """The gpu module of ``fn``'s own launches, or a new empty one (``<fn>_kernels``) when it has none."""
    for op in fn.body.block.ops:
        if isinstance(op, gpu.LaunchFuncOp):
            return modules[op.kernel.root_reference.data]
    name, n = f"{fn.sym_name.data}_kernels", 0
    taken = {getattr(o, "sym_name", None) for o in module.ops}
    while StringAttr(name) in taken:
        n += 1
        name = f"{fn.sym_name.data}_kernels_{n}"
    target = gpu.ModuleOp(StringAttr(name), Region(Block()))  # type: ignore[arg-type]  # xDSL types it as a SymbolRefAttr
    target.location = fn.location
    module.body.block.add_op(target)
    modules[name] = target
    return target


class _Inliner:
    """Inlines the calls of outlined functions in one caller."""

    def __init__(self, module: ModuleOp, fn: func.FuncOp, target: gpu.ModuleOp, modules: dict[str, gpu.ModuleOp]):
        self.fn = fn
        self.target = target
        self.modules = modules
        self.names = {k.sym_name.data for k in target.body.block.ops if isinstance(k, gpu.FuncOp)}
        self.renamed: dict[tuple[str, str], str] = {}  # (callee's gpu module, kernel) -> name in target
        self.shared: dict[tuple[str, Attribute, Attribute], SSAValue] = {}  # constants and globals made so far

    def move_kernel(self, ref: SymbolRefAttr) -> SymbolRefAttr:
        """The reference, in the caller's gpu module, to the kernel ``ref`` names (moved there on first use)."""
        key = (ref.root_reference.data, ref.nested_references.data[-1].data)
        if key not in self.renamed:
            source = self.modules.get(key[0])
            kfunc = None
            if source is not None:
                kfunc = next(
                    (k for k in source.body.block.ops if isinstance(k, gpu.FuncOp) and k.sym_name.data == key[1]), None
                )
            if kfunc is None:
                raise PassFailedException(f"pg-inline-kernels: no kernel @{key[0]}::@{key[1]}")
            name, n = key[1], 0
            while name in self.names:
                n += 1
                name = f"{key[1]}_{n}"
            self.names.add(name)
            kfunc.detach()
            kfunc.attributes["sym_name"] = StringAttr(name)
            self.target.body.block.add_op(kfunc)
            self.renamed[key] = name
        return SymbolRefAttr(self.target.sym_name.data, [StringAttr(self.renamed[key])])

    def share(self, op: Operation) -> SSAValue | None:
        """The value an earlier constant or ``memref.get_global`` op of the caller equal to ``op`` made, if any."""
        if isinstance(op, arith.ConstantOp):
            return self.shared.get(("c", op.value, op.result.type))
        if isinstance(op, memref.GetGlobalOp):
            return self.shared.get(("g", op.name_.root_reference, op.memref.type))
        return None

    def remember(self, op: Operation) -> None:
        if isinstance(op, arith.ConstantOp):
            self.shared.setdefault(("c", op.value, op.result.type), op.result)
        elif isinstance(op, memref.GetGlobalOp):
            self.shared.setdefault(("g", op.name_.root_reference, op.memref.type), op.memref)

    def run(self, outlined: dict[str, func.FuncOp]) -> None:
        block = self.fn.body.block
        for op in list(block.ops):
            if not (isinstance(op, func.CallOp) and op.callee.root_reference.data in outlined):
                self.remember(op)
                continue
            callee = outlined[op.callee.root_reference.data]
            mapping: dict[SSAValue, SSAValue] = dict(zip(callee.body.block.args, op.arguments, strict=True))
            for inner in callee.body.block.ops:
                if isinstance(inner, func.ReturnOp):
                    continue
                same = self.share(inner)
                if same is not None:
                    mapping[inner.results[0]] = same
                    continue
                copy = inner.clone(value_mapper=mapping)
                if isinstance(copy, gpu.LaunchFuncOp):
                    copy.properties["kernel"] = self.move_kernel(copy.kernel)
                block.insert_op_before(copy, op)
                self.remember(copy)
            block.erase_op(op)


@dataclass(frozen=True)
class PgInlineKernels(ModulePass):
    """Inline the host side of every function ``pg-outline-kernels`` made into its callers (see the module
    docstring)."""

    name = "pg-inline-kernels"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fns = [f for f in op.ops if isinstance(f, func.FuncOp)]
        outlined = {f.sym_name.data: f for f in fns if OUTLINED_ATTR in f.attributes}
        if not outlined:
            return
        for f in outlined.values():
            for inner in f.body.block.ops:
                if not isinstance(
                    inner,
                    gpu.LaunchFuncOp | arith.ConstantOp | memref.AllocOp | memref.DeallocOp | memref.GetGlobalOp,
                ) and not isinstance(inner, func.ReturnOp):
                    raise PassFailedException(
                        f"pg-inline-kernels: @{f.sym_name.data}: '{inner.name}' is not host code of pg-to-gpu (run "
                        "pg-to-gpu first)"
                    )
        modules = {m.sym_name.data: m for m in op.ops if isinstance(m, gpu.ModuleOp)}
        callee_modules = {
            l.kernel.root_reference.data
            for f in outlined.values()
            for l in f.body.block.ops
            if isinstance(l, gpu.LaunchFuncOp)
        }
        for fn in fns:
            if fn.sym_name.data in outlined or fn.is_declaration:
                continue
            if not any(
                isinstance(c, func.CallOp) and c.callee.root_reference.data in outlined for c in fn.body.block.ops
            ):
                continue
            _Inliner(op, fn, _kernels_module(op, fn, modules), modules).run(outlined)
        for f in outlined.values():
            op.body.block.erase_op(f)
        for name in callee_modules:
            m = modules[name]
            if m.body.block.first_op is not None:
                raise PassFailedException(f"pg-inline-kernels: @{name} has kernels that no caller launches")
            op.body.block.erase_op(m)
        if any(isinstance(o, gpu.ModuleOp) for o in op.ops):
            op.attributes["gpu.container_module"] = UnitAttr()


__all__ = ["PgInlineKernels"]
