"""The core of ``pg-to-ptx``'s lowering of one kernel: registers, immediates, labels, and the walk over its ops.

:class:`PtxEmitter` holds what the parts of the lowering share: each SSA value's register (or constant, or buffer),
the ``mov`` of each immediate at the top of the kernel, fresh labels, the kernel's parameters (``ld.param`` and
``cvta.to.global``), and the dispatch of each op to its handler (``handlers``, a table the lowering class sets).
The parts build on it: addressing (``ptx_addressing.py``), control-flow flattening (``ptx_control.py``) and
instruction selection (``to_ptx.py``, which assembles them into ``KernelLowering``).

Not a pass: ``all_passes`` finds no ``ModulePass`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from xdsl.dialects import gpu, scf
from xdsl.dialects.builtin import Float32Type, Float64Type, IndexType, IntegerType, LocationAttr, MemRefType
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import pg, ptx
from picograd.passes.buffers import where


def value_kind(t: Attribute) -> str | None:
    """The register kind of a scalar type: f32, f64, b16 (bf16, f16), pred (i1), s16 (i16), s32 (i32), s64 (i64,
    index); None otherwise."""
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, Float64Type):
        return "f64"
    if pg.is_low_precision(t):  # bf16/f16: a .b16 register, computed on only after a cvt to f32
        return "b16"
    if isinstance(t, IndexType):
        return "s64"
    if isinstance(t, IntegerType):
        return {1: "pred", 16: "s16", 32: "s32", 64: "s64"}.get(t.width.data)
    return None


def register_bits(kind: str) -> int:
    return ptx.TYPE_WIDTH[kind]


@dataclass(frozen=True)
class Buf:
    """A buffer in a kernel: a base address register, a constant byte offset, its type and state space."""

    base: SSAValue
    offset: int
    type: MemRefType
    space: str  # "global" or "shared"


@dataclass(frozen=True)
class Const:
    """A scalar constant, materialized into a register only where one is needed."""

    value: int | float
    kind: str


class PtxEmitter:
    """Lowers one ``gpu.func`` to one ``ptx.func``: the shared state and helpers (see the module docstring)."""

    handlers: ClassVar[dict[type[Operation], Callable[[Any, Any], None]]] = {}
    """The handler of each op type (set by the lowering class)."""

    def __init__(self, kfunc: gpu.FuncOp, contract: bool, target: tuple[str, str] = ("sm_90", "8.0")):
        self.kfunc = kfunc
        self.contract = contract
        self.target = target  # the module's .target and PTX version: some instructions have faster forms on newer ones
        self.name = kfunc.sym_name.data
        block = kfunc.body.block
        for i, t in enumerate(block.arg_types):
            if not isinstance(t, MemRefType):
                raise self.fail(kfunc, f"argument {i} of kernel @{self.name} is a {t}, not a buffer")
        known = kfunc.known_block_size
        maxntid = [int(v) for v in known.get_values()] if known is not None else None
        self.pfunc = ptx.FuncOp(self.name, ["u64"] * len(block.args), maxntid=maxntid)
        self.pfunc.location = kfunc.location
        self.prologue: list[Operation] = []
        self.code: list[Operation] = []
        self.loc: LocationAttr = kfunc.location
        self.values: dict[SSAValue, Any] = {}
        self.imms: dict[tuple[Any, str], SSAValue] = {}
        self.labels = 0
        self.shared = 0
        self.dynamic_offset = 0  # bytes of the dynamic shared buffer placed so far (ptx_addressing.workgroup_alloc)

    # --- emission ---------------------------------------------------------------------------------------------

    def fail(self, op: Operation, message: str) -> PassFailedException:
        return PassFailedException(f"pg-to-ptx: {message}{where(op)}")

    def emit(self, op: Operation) -> Operation:
        op.location = self.loc
        self.code.append(op)
        return op

    def r(self, op: Operation) -> SSAValue:
        """Emit ``op`` and return its (first) result."""
        return self.emit(op).results[0]

    def imm(self, value: int | float, kind: str) -> SSAValue:
        """A register holding the immediate ``value`` (one ``mov`` per value and kind, at the top of the kernel;
        never written again)."""
        key = (repr(float(value)) if kind in ("f32", "f64") else int(value), kind)
        if key not in self.imms:
            mov = ptx.MovOp(float(value) if kind in ("f32", "f64") else int(value), kind)
            mov.location = self.kfunc.location
            self.prologue.append(mov)
            self.imms[key] = mov.result
        return self.imms[key]

    def label(self) -> str:
        self.labels += 1
        return f"$L_{self.name}_{self.labels}"

    def reg(self, v: SSAValue) -> SSAValue:
        """The register of the scalar value ``v``."""
        x = self.values.get(v)
        if isinstance(x, Const):
            if x.kind == "pred":
                return self.imm(int(bool(x.value)), "pred")
            return self.imm(x.value, x.kind)
        if isinstance(x, SSAValue):
            return x
        owner = v.owner
        raise self.fail(
            owner if isinstance(owner, Operation) else self.kfunc, f"value of type {v.type} has no register"
        )

    def buf(self, v: SSAValue, op: Operation) -> Buf:
        x = self.values.get(v)
        if not isinstance(x, Buf):
            raise self.fail(op, f"'{op.name}' on a buffer that is not a kernel argument, view or workgroup buffer")
        return x

    def kind(self, t: Attribute, op: Operation) -> str:
        k = value_kind(t)
        if k is None:
            raise self.fail(op, f"'{op.name}': no PTX register for type {t}")
        return k

    # --- the kernel -------------------------------------------------------------------------------------------

    def run(self) -> ptx.FuncOp:
        block = self.kfunc.body.block
        self.loc = self.kfunc.location
        for i, arg in enumerate(block.args):
            p = ptx.LdParamOp(self.pfunc.args[i])
            g = ptx.CvtaOp(p.result)
            for op in (p, g):
                op.location = self.kfunc.location
                self.prologue.append(op)
            assert isinstance(arg.type, MemRefType)
            self.values[arg] = Buf(g.result, 0, arg.type, "global")
        self.lower_block(block)
        body = self.pfunc.body.block
        for inst in [*self.prologue, *self.code]:
            body.add_op(inst)
        last = body.last_op
        if not (isinstance(last, ptx.RetOp) and last.guard is None):
            ret = ptx.RetOp()
            ret.location = self.kfunc.location
            body.add_op(ret)
        return self.pfunc

    def lower_block(self, block: Block) -> None:
        for op in block.ops:
            self.loc = op.location
            self.lower(op)

    def lower(self, op: Operation) -> None:
        handler = self.handlers.get(type(op))
        if handler is None:
            if isinstance(op, scf.YieldOp):
                raise self.fail(op, "scf.yield outside scf.for/scf.if")
            raise self.fail(op, f"no PTX lowering for '{op.name}'")
        handler(self, op)

    def const_of(self, v: SSAValue) -> int | float | None:
        x = self.values.get(v)
        return x.value if isinstance(x, Const) else None

    def pred_to_int(self, p: SSAValue, kind: str, true: int = 1) -> SSAValue:
        """A predicate as an integer register of ``kind``: ``true`` or 0."""
        return self.r(ptx.SelpOp(self.imm(true, kind), self.imm(0, kind), p, kind))

    def int_to_pred(self, x: SSAValue, kind: str) -> SSAValue:
        """``x & 1 != 0``: the low bit, as ``arith.trunci`` to i1 keeps it."""
        b = "b" + kind[1:]
        low = self.r(ptx.AndOp(x, self.imm(1, kind), b))
        return self.r(ptx.SetpOp("ne", low, self.imm(0, kind), b))
