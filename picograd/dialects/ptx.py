"""The ``ptx`` dialect: NVIDIA PTX as IR, one op per PTX instruction, on typed virtual registers.

References are to the PTX ISA manual, version 8.0 ("PTX ISA 8.0"); section names are given with the numbers since
NVIDIA renumbers sections between versions.

Model (the shape of xDSL's own ``riscv`` and ``x86`` assembly dialects, without register allocation: ptxas allocates
registers, so PTX is emitted with as many virtual registers as the program needs):

- **Registers are SSA values.** Each register kind of PTX ISA 8.0 section 5.2 ("Types") is its own type:
  ``!ptx.pred``, ``!ptx.b16``, ``!ptx.u16``, ``!ptx.s16``, ``!ptx.b32``, ``!ptx.u32``, ``!ptx.s32``, ``!ptx.b64``,
  ``!ptx.u64``, ``!ptx.s64``, ``!ptx.f32``, ``!ptx.f64``. The printer (``picograd.target.ptx_printer``) gives every
  value a name such as ``%f12`` and declares them with ``.reg .f32 %f<N>;``.
- **Registers can be written again.** PTX is not SSA: a loop-carried value is a register that the loop body
  overwrites. ``ptx.assign`` (printed as ``mov``) writes a value into an existing register, which is how
  out-of-SSA lowering turns block arguments / ``scf.for`` iteration values into registers. So every op reads its
  operands *at the point where it executes*: no op here is ``Pure`` and passes must not CSE, hoist or reorder these
  ops as if they were SSA values.
- **Control flow is flat**, as in PTX text: a ``ptx.func`` body is one block of instructions with ``ptx.label``
  pseudo-ops, and ``ptx.bra`` names its target label. ``@%p`` guards (PTX ISA 8.0 section 9.3, "Predicated
  Execution") are the optional ``if %p`` / ``if not %p`` clause of ``ptx.bra``, ``ptx.st``, ``ptx.red`` and
  ``ptx.ret``.
- **Kernel parameters** are the block arguments of ``ptx.func``, of type ``!ptx.param<u64>`` (and so on); they are
  not registers and are read with ``ptx.ld_param`` (``ld.param.u64 %rd1, [name_param_0];``).
- **Modifiers** (PTX's dotted instruction suffixes, such as ``.rn.f32.s64`` of ``cvt``) are string properties, one
  per modifier slot of the instruction, printed in MLIR exactly as in PTX:
  ``%y = ptx.cvt rn.f32.s64 %x : (!ptx.s64) -> !ptx.f32`` prints as ``cvt.rn.f32.s64 %f1, %rd1;``.
- **Type checking** follows PTX ISA 8.0 section 9.4 ("Type Information for Instructions and Operands"): an
  instruction of type ``.bN`` takes any register of N bits, ``.uN``/``.sN`` take ``.bN``/``.uN``/``.sN`` registers,
  ``.fN`` takes ``.fN``/``.bN`` registers; ``ld``/``st``/``cvt`` of 8/16-bit integer types take wider integer
  registers (the relaxed rules of section 9.4.1).
- **Debug lines**: ``ptx.file`` ops in the module form the ``.file`` table (PTX ISA 8.0 section 11.5, "Debugging
  Directives"); the printer emits ``.loc <file> <line> <col>`` before an instruction whenever its
  ``FileLineColLoc`` changes, adding ``.file`` entries for files that are not in the table.

Math (PTX ISA 8.0 section 9.7.3, "Floating-Point Instructions"): ``ex2``, ``lg2``, ``sin``, ``cos`` and ``tanh``
exist only as ``.approx.f32`` (``ex2``/``lg2``/``sin``/``cos`` within 2 ulp, ``sin``/``cos`` on ``[-pi, pi]``;
``tanh.approx.f32`` needs sm_75). **PTX has no f64 transcendentals**: the lowering must build f64 ``exp``, ``log``,
``sin``, ``cos`` and ``tanh`` from f64 arithmetic (range reduction plus a polynomial, as CUDA's libdevice does) or
compute them in f32. The f64 forms that do exist are ``rcp.rn.f64`` (and the other roundings),
``rcp.approx.ftz.f64``, ``sqrt.rn.f64``, ``rsqrt.approx.f64``, ``div.rn.f64`` and ``fma.rn.f64``.

Tensor cores (PTX ISA 8.0 sections 9.7.13-9.7.14): ``ldmatrix``, ``stmatrix``, ``mma.sync``, ``wgmma.*``, with the
bulk tensor copy (``cp.async.bulk.tensor``), ``mbarrier.*``, ``fence.proxy.async`` and ``setmaxnreg``. Matrix
fragments are brace groups of registers (``{%r1, %r2, %r3, %r4}``) in MLIR and in PTX; ``MMA_SHAPES`` (fragment sizes
per shape and type) and ``REQUIREMENTS`` (target and PTX version per instruction; ``wgmma`` and ``setmaxnreg`` need
``sm_90a``) are the tables the verifiers read. ``wgmma.mma_async`` reads and writes its accumulator registers in
place, as PTX does (see ``tests/test_tensor_core_ptx.py`` for whole kernels: mma.sync fed by ldmatrix, TMA +
mbarrier + wgmma).

Python API (see ``tests/test_ptx.py`` for whole kernels)::

    from xdsl.builder import ImplicitBuilder
    from picograd.dialects import ptx

    module = ptx.ModuleOp(target="sm_90")                 # .version 8.0 / .target sm_90 / .address_size 64
    func = ptx.FuncOp("scale", ["u64", "u32"], maxntid=(256, 1, 1))
    module.add_op(func)
    with ImplicitBuilder(func.body):                      # ops built here are appended to the kernel
        p = ptx.LdParamOp(func.args[0]).result
        n = ptx.LdParamOp(func.args[1]).result
        tid = ptx.SregOp("tid.x").result
        done = ptx.SetpOp("ge", tid, n).result            # setp.ge.u32 %p1, %r2, %r1
        ptx.BraOp("DONE", guard=done)                      # @%p1 bra DONE;
        g = ptx.CvtaOp(p).result                           # cvta.to.global.u64
        off = ptx.MulOp(tid, ptx.MovOp(4, "u32").result, mode="wide").result
        addr = ptx.AddOp(g, off, "s64").result
        x = ptx.LdOp(addr, "f32").result                   # ld.global.f32 %f1, [%rd3];
        y = ptx.MulOp(x, ptx.MovOp(2.0, "f32").result, mode="rn").result
        ptx.StOp(addr, y)                                  # st.global.f32 [%rd3], %f3;
        ptx.LabelOp("DONE")
        ptx.RetOp()
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    FileLineColLoc,
    FloatAttr,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    UnitAttr,
    i64,
)
from xdsl.dialects.builtin import f64 as builtin_f64
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    ErasedSSAValue,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    VarResultDef,
    base,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser, Parser, UnresolvedOperand
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, NoTerminator, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException

# ---------------------------------------------------------------------------------------------------------------
# Types: register kinds (PTX ISA 8.0 section 5.2, "Types"; section 5.1.1, "Register State Space")

#: Bit width of every PTX fundamental type this dialect names (registers and instruction type suffixes).
TYPE_WIDTH: dict[str, int] = {
    "pred": 1,
    "b8": 8,
    "u8": 8,
    "s8": 8,
    "b16": 16,
    "u16": 16,
    "s16": 16,
    "b32": 32,
    "u32": 32,
    "s32": 32,
    "f16": 16,
    "bf16": 16,
    "f32": 32,
    "tf32": 32,
    "b64": 64,
    "u64": 64,
    "s64": 64,
    "f64": 64,
}

REGISTER_KINDS = ("pred", "b16", "u16", "s16", "b32", "u32", "s32", "b64", "u64", "s64", "f32", "f64")
UNSIGNED = ("u16", "u32", "u64")
SIGNED = ("s16", "s32", "s64")
INTEGER = UNSIGNED + SIGNED
BITS = ("b16", "b32", "b64")
FLOATS = ("f32", "f64")
ALL_VALUE_TYPES = BITS + INTEGER + FLOATS
MEMORY_TYPES = ("b8", "u8", "s8") + ALL_VALUE_TYPES  # ld / st / ld.param element types
HALF_FLOATS = ("f16", "bf16")
"""16-bit float instruction types (held in ``.b16`` registers): ``cvt`` sources and results, ``mma`` inputs."""
CVT_TYPES = ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", *HALF_FLOATS, "f32", "f64")
TF32 = "tf32"
"""The tensor cores' 19-bit float (held in ``.b32`` registers, the low 13 mantissa bits zero): only a ``cvt`` result,
``cvt.rna.tf32.f32`` (round to nearest, ties away from zero; PTX ISA 8.0 section 9.7.8.21, sm_80+) or
``cvt.rn.tf32.f32`` (ties to even; PTX 7.8, sm_90+: one ``F2FP.TF32`` instruction where ``.rna`` takes three)."""
TF32_ROUNDING = {"rna": "cvt.rna.tf32", "rn": "cvt.rn.tf32"}
"""The roundings of ``cvt.*.tf32.f32``, each with its ``REQUIREMENTS`` key."""
FLOAT_ROUNDING = ("rn", "rz", "rm", "rp")
INTEGER_ROUNDING = ("rni", "rzi", "rmi", "rpi")


def type_width(type_name: str) -> int:
    """Bit width of a PTX type name such as ``"f32"``."""
    return TYPE_WIDTH[type_name]


@functools.cache  # pure, on a few dozen kinds; the verifier asks it for every operand
def compatible(reg_kind: str, instr_type: str, relaxed: bool = False) -> bool:
    """Whether a register of ``reg_kind`` may be an operand of an instruction of type ``instr_type``.

    PTX ISA 8.0 section 9.4.1 ("Operand Size Exceeding Instruction-Type Size") and its type-checking table: ``.bN``
    takes any N-bit register, ``.uN``/``.sN`` take N-bit bit-size and integer registers, ``.fN`` takes N-bit float
    and bit-size registers; predicates only match predicates. With ``relaxed`` (``ld``, ``st``, ``cvt``), an
    integer/bit-size instruction type also takes wider integer/bit-size registers (``ld.global.u8 %r1, [%rd1]``).
    """
    if "pred" in (reg_kind, instr_type):
        return reg_kind == instr_type
    rw, iw = TYPE_WIDTH[reg_kind], TYPE_WIDTH[instr_type]
    rc, ic = reg_kind[0], instr_type[0]
    if relaxed and ic in "bus" and rc in "bus" and rw > iw:
        return True
    if rw != iw:
        return False
    if ic == "b":
        return True
    if ic in "us":
        return rc in "bus"
    return rc in "fb"  # ic == "f"


class RegisterType(ParametrizedAttribute, TypeAttribute):
    """A virtual register of one PTX kind; the concrete types below are ``!ptx.f32`` and so on."""

    KIND: ClassVar[str] = ""

    @property
    def kind(self) -> str:
        """The PTX type name: ``"pred"``, ``"u32"``, ``"f32"``, ..."""
        return self.KIND

    @property
    def width(self) -> int:
        return TYPE_WIDTH[self.KIND]


@irdl_attr_definition
class PredType(RegisterType):
    """A predicate register (``.reg .pred``)."""

    name = "ptx.pred"
    KIND: ClassVar[str] = "pred"


@irdl_attr_definition
class B16Type(RegisterType):
    """A 16-bit untyped register."""

    name = "ptx.b16"
    KIND: ClassVar[str] = "b16"


@irdl_attr_definition
class U16Type(RegisterType):
    """A 16-bit unsigned integer register."""

    name = "ptx.u16"
    KIND: ClassVar[str] = "u16"


@irdl_attr_definition
class S16Type(RegisterType):
    """A 16-bit signed integer register."""

    name = "ptx.s16"
    KIND: ClassVar[str] = "s16"


@irdl_attr_definition
class B32Type(RegisterType):
    """A 32-bit untyped register."""

    name = "ptx.b32"
    KIND: ClassVar[str] = "b32"


@irdl_attr_definition
class U32Type(RegisterType):
    """A 32-bit unsigned integer register."""

    name = "ptx.u32"
    KIND: ClassVar[str] = "u32"


@irdl_attr_definition
class S32Type(RegisterType):
    """A 32-bit signed integer register."""

    name = "ptx.s32"
    KIND: ClassVar[str] = "s32"


@irdl_attr_definition
class B64Type(RegisterType):
    """A 64-bit untyped register."""

    name = "ptx.b64"
    KIND: ClassVar[str] = "b64"


@irdl_attr_definition
class U64Type(RegisterType):
    """A 64-bit unsigned integer register (addresses)."""

    name = "ptx.u64"
    KIND: ClassVar[str] = "u64"


@irdl_attr_definition
class S64Type(RegisterType):
    """A 64-bit signed integer register."""

    name = "ptx.s64"
    KIND: ClassVar[str] = "s64"


@irdl_attr_definition
class F32Type(RegisterType):
    """A single-precision float register."""

    name = "ptx.f32"
    KIND: ClassVar[str] = "f32"


@irdl_attr_definition
class F64Type(RegisterType):
    """A double-precision float register."""

    name = "ptx.f64"
    KIND: ClassVar[str] = "f64"


_REGISTER_TYPES: dict[str, RegisterType] = {
    t.KIND: t()
    for t in (
        PredType,
        B16Type,
        U16Type,
        S16Type,
        B32Type,
        U32Type,
        S32Type,
        B64Type,
        U64Type,
        S64Type,
        F32Type,
        F64Type,
    )
}

pred = _REGISTER_TYPES["pred"]
b16 = _REGISTER_TYPES["b16"]
u16 = _REGISTER_TYPES["u16"]
s16 = _REGISTER_TYPES["s16"]
b32 = _REGISTER_TYPES["b32"]
u32 = _REGISTER_TYPES["u32"]
s32 = _REGISTER_TYPES["s32"]
b64 = _REGISTER_TYPES["b64"]
u64 = _REGISTER_TYPES["u64"]
s64 = _REGISTER_TYPES["s64"]
f32 = _REGISTER_TYPES["f32"]
f64 = _REGISTER_TYPES["f64"]


def reg(kind: str) -> RegisterType:
    """The register type of a PTX kind; 8-bit integer kinds give the 16-bit register that holds them."""
    kind = {"b8": "b16", "u8": "u16", "s8": "s16", "f16": "b16", "bf16": "b16", TF32: "b32"}.get(kind, kind)
    if kind not in _REGISTER_TYPES:
        raise ValueError(f"no PTX register kind '{kind}', expected one of {REGISTER_KINDS}")
    return _REGISTER_TYPES[kind]


_OPERAND_NAMES: dict[type, tuple[str, ...]] = {}
"""``Instruction.operand_names`` of each instruction class."""


def kind_of(value: SSAValue) -> str:
    """The register kind of a value (``"f32"``, ...); raises ``VerifyException`` for a value that is no register."""
    if not isinstance(value.type, RegisterType):
        raise VerifyException(f"expected a PTX register, got a value of type {value.type}")
    return value.type.kind


PARAM_KINDS = MEMORY_TYPES
TENSOR_MAP = "tensormap"
"""The parameter kind of a TMA tensor map passed by value: ``.param .align 64 .b8 name[128]`` (a ``CUtensorMap``
made by ``cuTensorMapEncodeTiled``, CUDA driver API; PTX ISA 8.0 section 5.5.8, "Tensor-map"). Read its address
with ``ptx.param_addr`` then ``cvta.param`` (``cp.async.bulk.tensor`` takes a generic address)."""
TENSOR_MAP_BYTES = 128


@irdl_attr_definition
class ParamType(ParametrizedAttribute, TypeAttribute):
    """A kernel parameter (``.param .u64 name``, PTX ISA 8.0 section 5.1, "State Spaces": kernel function parameters):
    ``!ptx.param<u64>``. The block arguments of ``ptx.func`` have this type; read them with ``ptx.ld_param``."""

    name = "ptx.param"
    kind_attr: StringAttr

    def __init__(self, kind: str | StringAttr):
        super().__init__(StringAttr(kind) if isinstance(kind, str) else kind)

    @property
    def kind(self) -> str:
        return self.kind_attr.data

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.kind}>")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[StringAttr]:
        parser.parse_punctuation("<")
        start = parser.pos
        kind = parser.parse_identifier(" (a PTX parameter type such as u64)")
        if kind not in (*PARAM_KINDS, TENSOR_MAP):
            parser.raise_error(f"!ptx.param: unknown parameter type '{kind}', expected one of {PARAM_KINDS}", start)
        parser.parse_punctuation(">")
        return (StringAttr(kind),)

    def ptx_declaration(self, name: str) -> str:
        """The declaration in a kernel's parameter list."""
        if self.kind == TENSOR_MAP:
            return f".param .align 64 .b8 {name}[{TENSOR_MAP_BYTES}]"
        return f".param .{self.kind} {name}"

    def verify(self) -> None:
        if self.kind not in (*PARAM_KINDS, TENSOR_MAP):
            raise VerifyException(f"!ptx.param: unknown parameter type '{self.kind}', expected one of {PARAM_KINDS}")


# ---------------------------------------------------------------------------------------------------------------
# Instruction base: modifier slots, the shared textual format, type checking

_IDENT = re.compile(r"[a-zA-Z][a-zA-Z0-9_$]*|[_$][a-zA-Z0-9_$]+")


def check_identifier(op: str, what: str, name: str) -> None:
    """PTX identifiers (PTX ISA 8.0 section 4.4, "Identifiers"), with ``%`` left to registers."""
    if not _IDENT.fullmatch(name):
        raise VerifyException(f"{op}: '{name}' is not a valid PTX {what} name")


@dataclass(frozen=True)
class Slot:
    """One modifier position of a PTX instruction (``.rn`` or ``.f32`` of ``add.rn.f32``), in the order PTX writes
    them. ``name`` is the property that stores the chosen value; a slot with one value is a flag (``ftz``)."""

    name: str
    values: tuple[str, ...]
    optional: bool = False


def instruction(*slots: Slot):
    """Class decorator for instruction ops: adds one string property per slot, then ``irdl_op_definition``."""

    def wrap(cls: type[Instruction]) -> type[Instruction]:
        for slot in slots:
            setattr(cls, slot.name, opt_prop_def(StringAttr) if slot.optional else prop_def(StringAttr))
        cls.SLOTS = slots
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        annotations["SLOTS"] = "ClassVar[tuple[Slot, ...]]"
        cls.__annotations__ = annotations
        return irdl_op_definition(cls)

    return wrap


# The signatures of the instructions verified so far in the ``ptx.module`` (or lone ``ptx.func``) being verified;
# None outside one (``Instruction.verify``).
_VERIFIED_SIGNATURES: contextvars.ContextVar[set[tuple[object, ...]] | None] = contextvars.ContextVar(
    "ptx_verified_signatures", default=None
)


@contextlib.contextmanager
def _signature_scope() -> Iterator[None]:
    """Within the block, an instruction whose signature verified once is not verified again (unless a scope is
    open already: a module's functions share their module's)."""
    if _VERIFIED_SIGNATURES.get() is not None:
        yield
        return
    token = _VERIFIED_SIGNATURES.set(set())
    try:
        yield
    finally:
        _VERIFIED_SIGNATURES.reset(token)


@functools.cache
def string_attr(value: str) -> StringAttr:
    """``StringAttr(value)``, made once per value (attributes are immutable; making one verifies it, and the
    modifiers of every instruction are string attributes)."""
    return StringAttr(value)


@functools.cache
def _slot_names(cls: type[Instruction]) -> dict[str, Slot]:
    return {slot.name: slot for slot in cls.SLOTS}


@functools.cache
def _segmented(cls: type[Instruction]) -> bool:
    """Whether the instruction class records operand or result segment sizes (its guarded forms)."""
    return bool(cls.get_irdl_definition().options)


Group = UnresolvedOperand | list[UnresolvedOperand] | None
Modifier = str | bool | None


class Instruction(IRDLOperation):
    """Base of the PTX instructions.

    MLIR syntax, shared by all of them (operand syntax as in PTX, with ``[...]`` for addresses)::

        %results = ptx.<op> <suffix> <operands> (if [not] %guard)? attr-dict (: (<operand types>) -> <result types>)?

    where ``<suffix>`` is the PTX modifier list without the mnemonic (``rn.f32``). Subclasses set ``MNEMONIC`` and,
    through ``@instruction(...)``, their modifier slots; they override ``print_body``/``parse_body`` for operand
    syntax other than a comma-separated register list, ``ptx_args`` for PTX operand syntax other than "results, then
    operands", and ``type_rules``/``verify_modifiers`` for their checks.
    """

    MNEMONIC: ClassVar[str] = ""
    SLOTS: ClassVar[tuple[Slot, ...]] = ()

    def __init__(
        self,
        *,
        operands: Sequence[SSAValue | Operation | Sequence[SSAValue | Operation] | None] = (),
        result_types: Sequence[Attribute | Sequence[Attribute] | None] = (),
        properties: Mapping[str, Attribute | None] | None = None,
        attributes: Mapping[str, Attribute | None] | None = None,
    ):
        """IRDL's builder (operands and result types by definition: a value, a list for a variadic one, None or
        ``[]`` for an absent optional one). An instruction without segment sizes (no guard) is built by
        ``Operation.__init__`` from the flattened groups instead: the generic builder, which matches groups to
        definitions, took a third of the time of building one, and building them is most of ``pg-to-ptx``. The
        verifier checks the counts and types either way."""
        props = {k: v for k, v in (properties or {}).items() if v is not None}
        attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
        if _segmented(type(self)):
            super().__init__(operands=operands, result_types=result_types, properties=props, attributes=attrs)
            return
        values: list[SSAValue] = []
        for group in operands:
            if isinstance(group, SSAValue):
                values.append(group)
            elif isinstance(group, Operation):
                values.append(SSAValue.get(group))
            elif group is not None:
                values.extend(SSAValue.get(v) for v in group)
        types: list[Attribute] = []
        for t in result_types:
            if isinstance(t, Attribute):
                types.append(t)
            elif t is not None:
                types.extend(t)
        Operation.__init__(self, operands=values, result_types=types, properties=props, attributes=attrs)

    # -- verification, once per signature in a kernel -------------------------------------------------------------

    def signature(self) -> tuple[object, ...]:
        """What an instruction's verification reads of the op itself: its class, modifiers and other properties,
        attributes, and the types of its operands and results (operand *types*, not which values they are)."""
        return (
            type(self),
            tuple(self.properties.items()),
            tuple(self.attributes.items()),
            tuple(v.type for v in self.operands),
            tuple(r.type for r in self.results),
        )

    def verify(self, verify_nested_ops: bool = True) -> None:
        """xDSL's verification, skipped for an op whose ``signature`` an earlier op of the same module had (inside
        ``ModuleOp.verify`` or ``FuncOp.verify``): the GPT train step's kernels repeat about 1,400 signatures over
        45,000 instructions, and verifying each was a fifth of ``pgc --emit=ptx`` (``bench/compile_time.py``).

        This relies on the rule every instruction's verifier keeps: it reads the op's ``signature`` and, beyond it,
        only what all ops of one ``ptx.module`` share (its target and version, ``_check_target``); never which
        values its operands are. An instruction that reads more adds it to its ``signature`` (``SharedAddrOp``: its
        kernel, whose ``ptx.shared`` buffers it looks up). The block's last op (the terminator checks) and ops with
        regions or successors are always verified in full."""
        seen = _VERIFIED_SIGNATURES.get()
        if seen is None or self.next_op is None or self.regions or self.successors:
            super().verify(verify_nested_ops)
            return
        key = self.signature()
        if key in seen:
            for operand in self.operands:
                if isinstance(operand, ErasedSSAValue):
                    raise ValueError("Erased SSA value is used by the operation")
            return
        super().verify(verify_nested_ops)
        seen.add(key)

    # -- modifiers ---------------------------------------------------------------------------------------------

    def mod(self, slot: str) -> str | None:
        """The value of modifier slot ``slot`` (``None`` when absent)."""
        attr = self.properties.get(slot)
        return attr.data if isinstance(attr, StringAttr) else None

    @property
    def instr_type(self) -> str:
        """The instruction type suffix (the ``type`` slot)."""
        value = self.mod("type")
        assert value is not None, f"{self.name} has no type slot"
        return value

    @property
    def suffix(self) -> str:
        return ".".join(v for s in self.SLOTS if (v := self.mod(s.name)) is not None)

    @property
    def opcode(self) -> str:
        """The full PTX opcode, e.g. ``cvt.rn.f32.s64``."""
        suffix = self.suffix
        return self.MNEMONIC + ("." + suffix if suffix else "")

    @classmethod
    def modifier_properties(cls, mods: Mapping[str, Modifier]) -> dict[str, Attribute]:
        """Properties of the slots given as keyword arguments (``rnd="rn"``, ``ftz=True``)."""
        names = _slot_names(cls)
        for key in mods:
            if key not in names:
                raise TypeError(f"{cls.name}: unknown modifier '{key}', expected one of {tuple(names)}")
        props: dict[str, Attribute] = {}
        for slot in cls.SLOTS:
            value = mods.get(slot.name)
            if value is None or value is False:
                continue
            if value is True:
                value = slot.values[0]
            props[slot.name] = string_attr(value)
        return props

    @classmethod
    def parse_suffix(cls, parser: Parser) -> dict[str, Attribute]:
        if not cls.SLOTS:
            return {}
        start = parser.pos
        quoted = any(":" in v for s in cls.SLOTS for v in s.values)  # modifiers such as shared::cta are quoted
        text = parser.parse_optional_str_literal() if quoted else None
        if text is None and all(s.optional for s in cls.SLOTS):
            text = parser.parse_optional_identifier()
            if text is None:
                return {}
        elif text is None:
            text = parser.parse_identifier(f" (the modifiers of {cls.MNEMONIC}, e.g. {cls._example_suffix()})")
        props: dict[str, Attribute] = {}
        segments = text.split(".")
        i = 0
        for slot in cls.SLOTS:
            if i < len(segments) and segments[i] in slot.values:
                props[slot.name] = StringAttr(segments[i])
                i += 1
            elif not slot.optional:
                known = {v for s in cls.SLOTS for v in s.values}
                if i < len(segments) and segments[i] not in known:
                    parser.raise_error(f"{cls.name}: unknown modifier '{segments[i]}' in '{text}'", start)
                parser.raise_error(
                    f"{cls.name}: expected one of {slot.values} for the '{slot.name}' modifier in '{text}'", start
                )
        if i != len(segments):
            parser.raise_error(f"{cls.name}: unexpected modifier '{segments[i]}' in '{text}'", start)
        return props

    @classmethod
    def _example_suffix(cls) -> str:
        return ".".join(s.values[0] for s in cls.SLOTS if not s.optional)

    # -- guard -------------------------------------------------------------------------------------------------

    @classmethod
    def has_guard(cls) -> bool:
        return "guard" in cls.operand_names()

    @classmethod
    def operand_names(cls) -> tuple[str, ...]:
        """The names of the operand definitions, in order (once per class: every verification asks)."""
        names = _OPERAND_NAMES.get(cls)
        if names is None:
            names = _OPERAND_NAMES[cls] = tuple(name for name, _ in cls.get_irdl_definition().operands)
        return names

    @property
    def guard_value(self) -> SSAValue | None:
        """The ``@%p`` predicate of a guarded instruction, if any."""
        if not self.has_guard():
            return None
        return cast(SSAValue | None, getattr(self, "guard"))  # noqa: B009 (only guarded subclasses define it)

    @property
    def guard_negated(self) -> bool:
        return "negate" in self.properties

    @staticmethod
    def guard_properties(guard: SSAValue | None, negate: bool) -> dict[str, Attribute]:
        return {"negate": UnitAttr()} if guard is not None and negate else {}

    # -- MLIR text ---------------------------------------------------------------------------------------------

    def body_operands(self) -> list[SSAValue]:
        guard = self.guard_value
        return [v for v in self.operands if v is not guard] if guard is not None else list(self.operands)

    def print_body(self, printer: Printer) -> None:
        """Print the operands after the suffix (default: `` %a, %b``)."""
        values = self.body_operands()
        if values:
            printer.print_string(" ")
            printer.print_list(values, printer.print_operand)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        """Parse what ``print_body`` prints: operand groups (one per operand definition, guard excluded) and
        extra properties."""
        count = sum(1 for name, _ in cls.get_irdl_definition().operands if name != "guard")
        groups: list[Group] = []
        for i in range(count):
            if i:
                parser.parse_punctuation(",")
            groups.append(parser.parse_unresolved_operand())
        return groups, {}

    def print(self, printer: Printer) -> None:
        if ":" in self.suffix:
            printer.print_string(" ")
            printer.print_string_literal(self.suffix)
        elif self.suffix:
            printer.print_string(" " + self.suffix)
        self.print_body(printer)
        guard = self.guard_value
        if guard is not None:
            printer.print_string(" if not " if self.guard_negated else " if ")
            printer.print_operand(guard)
        printer.print_op_attributes(self.attributes)
        if self.operands or self.results:
            printer.print_string(" : (")
            printer.print_list([v.type for v in self.operands], printer.print_attribute)
            printer.print_string(") -> ")
            if len(self.results) == 1:
                printer.print_attribute(self.results[0].type)
            else:
                printer.print_string("(")
                printer.print_list([r.type for r in self.results], printer.print_attribute)
                printer.print_string(")")

    @classmethod
    def parse(cls, parser: Parser) -> Instruction:
        props = cls.parse_suffix(parser)
        groups, extra = cls.parse_body(parser)
        props.update(extra)
        if cls.has_guard():
            guard: Group = None
            if parser.parse_optional_keyword("if") is not None:
                if parser.parse_optional_keyword("not") is not None:
                    props["negate"] = UnitAttr()
                guard = parser.parse_unresolved_operand()
            groups.append(guard)
        attrs = parser.parse_optional_attr_dict()
        flat = [u for g in groups for u in (g if isinstance(g, list) else [g] if g is not None else [])]
        operand_types: list[Attribute] = []
        result_types: list[Attribute] = []
        pos = parser.pos
        if parser.parse_optional_punctuation(":") is not None:
            operand_types = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
            parser.parse_punctuation("->")
            results = parser.parse_optional_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
            result_types = list(results) if results is not None else [parser.parse_type()]
        if len(operand_types) != len(flat):
            parser.raise_error(f"{cls.name}: {len(flat)} operands but {len(operand_types)} operand types", pos)
        resolved = iter([parser.resolve_operand(u, t) for u, t in zip(flat, operand_types, strict=True)])
        operands: list[SSAValue | list[SSAValue] | None] = []
        for g in groups:
            if isinstance(g, list):
                operands.append([next(resolved) for _ in g])
            elif g is None:
                operands.append([])
            else:
                operands.append(next(resolved))
        result_defs = cls.get_irdl_definition().results
        grouped_results: list[Attribute | Sequence[Attribute]]
        if any(isinstance(d, VarResultDef) for _, d in result_defs):
            grouped_results = [result_types]
        else:
            if len(result_types) != len(result_defs):
                parser.raise_error(f"{cls.name}: expects {len(result_defs)} results, got {len(result_types)}", pos)
            grouped_results = list(result_types)
        op = cls.build(operands=operands, result_types=grouped_results, properties=props, attributes=attrs)
        return op

    # -- PTX text ----------------------------------------------------------------------------------------------

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        """The PTX operand list (without the guard): results, then operands, comma-separated."""
        return ", ".join(name(v) for v in [*self.results, *self.body_operands()])

    # -- verification ------------------------------------------------------------------------------------------

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        """``(role, register, PTX type it must be compatible with, relaxed)`` for each register to check."""
        return iter(())

    def verify_modifiers(self) -> None:
        """Instruction-specific checks of the modifier combination (PTX ISA restrictions)."""

    def fail(self, message: str) -> VerifyException:
        return VerifyException(f"{self.name}: {message}")

    def verify_(self) -> None:
        props = self.properties
        for slot in self.SLOTS:
            attr = props.get(slot.name)
            value = attr.data if isinstance(attr, StringAttr) else None
            if value is None:
                if not slot.optional:
                    raise self.fail(f"missing the '{slot.name}' modifier")
            elif value not in slot.values:
                raise self.fail(f"'{value}' is not a valid '{slot.name}' modifier, expected one of {slot.values}")
        for value in [*self.operands, *self.results]:
            if not isinstance(value.type, RegisterType | ParamType):
                raise self.fail(f"expects PTX registers, got a value of type {value.type}")
        guard = self.guard_value
        if guard is not None and kind_of(guard) != "pred":
            raise self.fail(f"the guard must be a !ptx.pred register, got {guard.type}")
        if self.guard_negated and guard is None:
            raise self.fail("'negate' needs a guard predicate")
        self.verify_modifiers()
        for role, register, instr_type, relaxed in self.type_rules():
            kind = kind_of(register)
            if not compatible(kind, instr_type, relaxed):
                raise self.fail(
                    f"{role} is a .{kind} register, which {self.opcode} does not accept "
                    f"(it needs a register compatible with .{instr_type})"
                )


# ---------------------------------------------------------------------------------------------------------------
# Integer and floating-point arithmetic (PTX ISA 8.0 sections 9.7.1 "Integer Arithmetic Instructions" and 9.7.3
# "Floating-Point Instructions")


def _wide(type_name: str) -> str:
    return type_name[0] + str(2 * TYPE_WIDTH[type_name])


class ArithmeticOp(Instruction):
    """Base of the arithmetic ops: operands and result of the instruction type (``%d = add.f32 %a, %b``).

    ``traits`` is empty on purpose: registers can be overwritten by ``ptx.assign``, so these ops are not ``Pure``.
    """

    ALLOWED: ClassVar[tuple[str, ...]] = ALL_VALUE_TYPES

    def result_kind(self) -> str:
        return self.instr_type

    def operand_type(self, index: int) -> str:
        return self.instr_type

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        for i, (role, value) in enumerate(zip(self.operand_names(), self.operands, strict=True)):
            yield f"operand '{role}'", value, self.operand_type(i), False
        for r in self.results:
            yield "the result", r, self.result_kind(), False

    def verify_modifiers(self) -> None:
        t = self.instr_type
        if t not in self.ALLOWED:
            raise self.fail(f"type .{t} is not supported, expected one of {self.ALLOWED}")
        is_float = t in FLOATS
        rnd = self.mod("rnd")
        if rnd is not None and not is_float:
            raise self.fail(f"rounding .{rnd} applies to float types only")
        if self.mod("ftz") is not None and t != "f32":
            raise self.fail(".ftz applies to .f32 only")
        if self.mod("sat") is not None and t not in ("s32", "f32"):
            raise self.fail(".sat applies to .s32 and .f32 only")


def _init_arith(
    op: Instruction,
    operands: Sequence[SSAValue | Operation],
    type: str | None,
    mods: Mapping[str, Modifier],
    result_kind: Callable[[str, Mapping[str, Modifier]], str] | None = None,
) -> None:
    values = [v if isinstance(v, SSAValue) else SSAValue.get(v) for v in operands]
    t = type if type is not None else kind_of(values[0])
    props = op.modifier_properties({**mods, "type": t})
    kind = result_kind(t, mods) if result_kind is not None else t
    # single operands and one result: Operation.__init__ as Instruction.__init__ does, without its flattening
    Operation.__init__(op, operands=values, result_types=[reg(kind)], properties=props)


class BinaryOp(ArithmeticOp):
    """``%d = <op>.<type> %a, %b``: two operands, one result."""

    lhs = operand_def(RegisterType)
    rhs = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation, type: str | None = None, **mods: Modifier):
        """``type`` defaults to the kind of ``lhs``; ``mods`` are the optional modifiers by slot name."""
        _init_arith(self, [lhs, rhs], type, mods)


_RND = Slot("rnd", FLOAT_ROUNDING, optional=True)
_FTZ = Slot("ftz", ("ftz",), optional=True)
_SAT = Slot("sat", ("sat",), optional=True)


def _type(values: tuple[str, ...]) -> Slot:
    return Slot("type", values)


@instruction(_RND, _FTZ, _SAT, _type(ALL_VALUE_TYPES))
class AddOp(BinaryOp):
    """``add`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3): ``%d = ptx.add f32 %a, %b``; ``.rn`` etc. for floats,
    ``.sat`` for ``.s32``/``.f32``. Address arithmetic is ``add.s64``/``add.u64`` on 64-bit registers."""

    name = "ptx.add"
    MNEMONIC: ClassVar[str] = "add"


@instruction(_RND, _FTZ, _SAT, _type(ALL_VALUE_TYPES))
class SubOp(BinaryOp):
    """``sub`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3)."""

    name = "ptx.sub"
    MNEMONIC: ClassVar[str] = "sub"


_MUL_MODE = Slot("mode", ("lo", "hi", "wide", *FLOAT_ROUNDING), optional=True)


def _mul_result(t: str, mods: Mapping[str, Modifier]) -> str:
    return _wide(t) if mods.get("mode") == "wide" else t


class _MulLike(ArithmeticOp):
    """Shared checks of ``mul``/``mad``: integers need ``.lo``/``.hi``/``.wide``, floats take a rounding mode."""

    FLOAT_NEEDS_ROUNDING: ClassVar[bool] = False

    def result_kind(self) -> str:
        return _wide(self.instr_type) if self.mod("mode") == "wide" else self.instr_type

    def verify_modifiers(self) -> None:
        t, mode = self.instr_type, self.mod("mode")
        if t not in self.ALLOWED:
            raise self.fail(f"type .{t} is not supported, expected one of {self.ALLOWED}")
        if t in FLOATS:
            if mode is not None and mode not in FLOAT_ROUNDING:
                raise self.fail(f".{mode} applies to integer types only")
            if mode is None and self.FLOAT_NEEDS_ROUNDING:
                raise self.fail(f"{self.MNEMONIC}.{t} needs a rounding modifier (.rn, .rz, .rm or .rp)")
        else:
            if mode is None or mode in FLOAT_ROUNDING:
                raise self.fail(f"integer {self.MNEMONIC} needs .lo, .hi or .wide")
            if mode == "wide" and TYPE_WIDTH[t] == 64:
                raise self.fail(".wide applies to 16- and 32-bit types only")
        if self.mod("ftz") is not None and t != "f32":
            raise self.fail(".ftz applies to .f32 only")
        if self.mod("sat") is not None and t not in ("s32", "f32"):
            raise self.fail(".sat applies to .s32 and .f32 only")


@instruction(_MUL_MODE, _FTZ, _SAT, _type(INTEGER + FLOATS))
class MulOp(_MulLike, BinaryOp):
    """``mul`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3): ``mul.lo.s32``, ``mul.hi.u32``, ``mul.wide.u32`` (result
    twice as wide: the usual index-to-byte-offset step), ``mul.rn.f32``. The mode is the ``mode`` modifier."""

    name = "ptx.mul"
    MNEMONIC: ClassVar[str] = "mul"
    ALLOWED: ClassVar[tuple[str, ...]] = INTEGER + FLOATS

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation, type: str | None = None, **mods: Modifier):
        _init_arith(self, [lhs, rhs], type, mods, _mul_result)


class TernaryOp(ArithmeticOp):
    """``%d = <op>.<type> %a, %b, %c``."""

    a = operand_def(RegisterType)
    b = operand_def(RegisterType)
    c = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(
        self,
        a: SSAValue | Operation,
        b: SSAValue | Operation,
        c: SSAValue | Operation,
        type: str | None = None,
        **mods: Modifier,
    ):
        _init_arith(self, [a, b, c], type, mods)


@instruction(_MUL_MODE, _FTZ, _SAT, _type(INTEGER + FLOATS))
class MadOp(_MulLike, TernaryOp):
    """``mad`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3): ``mad.lo.s32 d, a, b, c`` = ``a * b + c``;
    ``mad.wide.u32`` adds a 64-bit ``c``; float ``mad`` needs a rounding mode (it is ``fma`` then)."""

    name = "ptx.mad"
    MNEMONIC: ClassVar[str] = "mad"
    ALLOWED: ClassVar[tuple[str, ...]] = INTEGER + FLOATS
    FLOAT_NEEDS_ROUNDING: ClassVar[bool] = True

    def __init__(
        self,
        a: SSAValue | Operation,
        b: SSAValue | Operation,
        c: SSAValue | Operation,
        type: str | None = None,
        **mods: Modifier,
    ):
        _init_arith(self, [a, b, c], type, mods, _mul_result)

    def operand_type(self, index: int) -> str:
        return self.result_kind() if index == 2 else self.instr_type


@instruction(Slot("rnd", FLOAT_ROUNDING), _FTZ, _SAT, _type(FLOATS))
class FmaOp(TernaryOp):
    """``fma.rn.f32 d, a, b, c`` = ``a * b + c`` with one rounding (PTX ISA 8.0 section 9.7.3); the rounding
    modifier is required."""

    name = "ptx.fma"
    MNEMONIC: ClassVar[str] = "fma"
    ALLOWED: ClassVar[tuple[str, ...]] = FLOATS


@instruction(Slot("mode", ("approx", "full", *FLOAT_ROUNDING), optional=True), _FTZ, _type(INTEGER + FLOATS))
class DivOp(BinaryOp):
    """``div`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3): ``div.s32``/``div.u32``; ``div.rn.f32`` (IEEE),
    ``div.full.f32`` (2 ulp), ``div.approx.f32`` (fast); ``div.rn.f64`` (f64 needs a rounding mode)."""

    name = "ptx.div"
    MNEMONIC: ClassVar[str] = "div"
    ALLOWED: ClassVar[tuple[str, ...]] = INTEGER + FLOATS

    def verify_modifiers(self) -> None:
        t, mode = self.instr_type, self.mod("mode")
        if t in INTEGER:
            if mode is not None or self.mod("ftz") is not None:
                raise self.fail("integer div takes no modifiers")
        elif t == "f32":
            if mode is None:
                raise self.fail("div.f32 needs .approx, .full or a rounding mode (.rn, .rz, .rm, .rp)")
        else:
            if mode not in FLOAT_ROUNDING:
                raise self.fail("div.f64 needs a rounding mode (.rn, .rz, .rm or .rp)")
            if self.mod("ftz") is not None:
                raise self.fail(".ftz applies to .f32 only")


@instruction(_type(INTEGER))
class RemOp(BinaryOp):
    """``rem.s32`` / ``rem.u32``: remainder with the sign of the dividend (PTX ISA 8.0 section 9.7.1)."""

    name = "ptx.rem"
    MNEMONIC: ClassVar[str] = "rem"
    ALLOWED: ClassVar[tuple[str, ...]] = INTEGER


_NAN = Slot("nan", ("NaN",), optional=True)


class _MinMax(BinaryOp):
    ALLOWED: ClassVar[tuple[str, ...]] = INTEGER + FLOATS

    def verify_modifiers(self) -> None:
        super().verify_modifiers()
        if self.mod("nan") is not None and self.instr_type not in FLOATS:
            raise self.fail(".NaN applies to float types only")


@instruction(_FTZ, _NAN, _type(INTEGER + FLOATS))
class MinOp(_MinMax):
    """``min`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3): a NaN operand gives the other operand unless
    ``.NaN``."""

    name = "ptx.min"
    MNEMONIC: ClassVar[str] = "min"


@instruction(_FTZ, _NAN, _type(INTEGER + FLOATS))
class MaxOp(_MinMax):
    """``max`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3)."""

    name = "ptx.max"
    MNEMONIC: ClassVar[str] = "max"


class UnaryOp(ArithmeticOp):
    """``%d = <op>.<type> %a``."""

    source = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(self, source: SSAValue | Operation, type: str | None = None, **mods: Modifier):
        _init_arith(self, [source], type, mods)


@instruction(_FTZ, _type(SIGNED + FLOATS))
class NegOp(UnaryOp):
    """``neg`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3)."""

    name = "ptx.neg"
    MNEMONIC: ClassVar[str] = "neg"
    ALLOWED: ClassVar[tuple[str, ...]] = SIGNED + FLOATS


@instruction(_FTZ, _type(SIGNED + FLOATS))
class AbsOp(UnaryOp):
    """``abs`` (PTX ISA 8.0 sections 9.7.1 and 9.7.3)."""

    name = "ptx.abs"
    MNEMONIC: ClassVar[str] = "abs"
    ALLOWED: ClassVar[tuple[str, ...]] = SIGNED + FLOATS


# ---------------------------------------------------------------------------------------------------------------
# Floating-point math (PTX ISA 8.0 section 9.7.3, "Floating-Point Instructions")


class MathOp(UnaryOp):
    """Base of the float math instructions; see the module docstring for the f64 forms PTX lacks."""

    ALLOWED: ClassVar[tuple[str, ...]] = ("f32",)

    def verify_modifiers(self) -> None:
        t = self.instr_type
        if t not in self.ALLOWED:
            raise self.fail(
                f"type .{t} is not supported, expected one of {self.ALLOWED} (PTX has no f64 transcendentals)"
            )
        if self.mod("ftz") is not None and t == "f64" and self.mod("mode") != "approx":
            raise self.fail(".ftz with .f64 exists only in the .approx form")


_APPROX = Slot("approx", ("approx",))


@instruction(_APPROX, _FTZ, _type(FLOATS))
class Ex2Op(MathOp):
    """``ex2.approx.f32``: 2**x, max 2 ulp error (PTX ISA 8.0 section 9.7.3); ``exp(x) = ex2(x * log2(e))``."""

    name = "ptx.ex2"
    MNEMONIC: ClassVar[str] = "ex2"


@instruction(_APPROX, _FTZ, _type(FLOATS))
class Lg2Op(MathOp):
    """``lg2.approx.f32``: log2(x) (PTX ISA 8.0 section 9.7.3); ``log(x) = lg2(x) * ln(2)``."""

    name = "ptx.lg2"
    MNEMONIC: ClassVar[str] = "lg2"


@instruction(_APPROX, _FTZ, _type(FLOATS))
class SinOp(MathOp):
    """``sin.approx.f32`` (PTX ISA 8.0 section 9.7.3): accurate on [-pi, pi]; reduce the argument first."""

    name = "ptx.sin"
    MNEMONIC: ClassVar[str] = "sin"


@instruction(_APPROX, _FTZ, _type(FLOATS))
class CosOp(MathOp):
    """``cos.approx.f32`` (PTX ISA 8.0 section 9.7.3)."""

    name = "ptx.cos"
    MNEMONIC: ClassVar[str] = "cos"


@instruction(_APPROX, _type(FLOATS))
class TanhOp(MathOp):
    """``tanh.approx.f32`` (PTX ISA 8.0 section 9.7.3; sm_75 and later): max relative error 2**-11."""

    name = "ptx.tanh"
    MNEMONIC: ClassVar[str] = "tanh"


_MATH_MODE = Slot("mode", ("approx", *FLOAT_ROUNDING))


@instruction(_MATH_MODE, _FTZ, _type(FLOATS))
class RcpOp(MathOp):
    """``rcp``: 1/x (PTX ISA 8.0 section 9.7.3, ``rcp`` and ``rcp.approx.ftz.f64``): ``rcp.rn.f32`` (IEEE),
    ``rcp.approx.f32``, ``rcp.rn.f64``, ``rcp.approx.ftz.f64``."""

    name = "ptx.rcp"
    MNEMONIC: ClassVar[str] = "rcp"
    ALLOWED: ClassVar[tuple[str, ...]] = FLOATS

    def verify_modifiers(self) -> None:
        super().verify_modifiers()
        if self.instr_type == "f64" and self.mod("mode") == "approx" and self.mod("ftz") is None:
            raise self.fail("rcp.approx.f64 exists only as rcp.approx.ftz.f64")


@instruction(_MATH_MODE, _FTZ, _type(FLOATS))
class SqrtOp(MathOp):
    """``sqrt`` (PTX ISA 8.0 section 9.7.3): ``sqrt.rn.f32`` (IEEE), ``sqrt.approx.f32``, ``sqrt.rn.f64``."""

    name = "ptx.sqrt"
    MNEMONIC: ClassVar[str] = "sqrt"
    ALLOWED: ClassVar[tuple[str, ...]] = FLOATS

    def verify_modifiers(self) -> None:
        super().verify_modifiers()
        if self.instr_type == "f64" and self.mod("mode") == "approx":
            raise self.fail("sqrt.approx has no .f64 form; use sqrt.rn.f64")


@instruction(_APPROX, _FTZ, _type(FLOATS))
class RsqrtOp(MathOp):
    """``rsqrt.approx.f32`` / ``rsqrt.approx.f64``: 1/sqrt(x) (PTX ISA 8.0 section 9.7.3, ``rsqrt`` and
    ``rsqrt.approx.ftz.f64``)."""

    name = "ptx.rsqrt"
    MNEMONIC: ClassVar[str] = "rsqrt"
    ALLOWED: ClassVar[tuple[str, ...]] = FLOATS

    def verify_modifiers(self) -> None:
        t = self.instr_type
        if t not in self.ALLOWED:
            raise self.fail(f"type .{t} is not supported, expected one of {self.ALLOWED}")


# ---------------------------------------------------------------------------------------------------------------
# Logic and shift (PTX ISA 8.0 section 9.7.7, "Logic and Shift Instructions")

LOGIC_TYPES = ("pred", *BITS)


@instruction(_type(LOGIC_TYPES))
class AndOp(BinaryOp):
    """``and.b32`` (also ``.pred``, ``.b16``, ``.b64``), PTX ISA 8.0 section 9.7.7."""

    name = "ptx.and"
    MNEMONIC: ClassVar[str] = "and"
    ALLOWED: ClassVar[tuple[str, ...]] = LOGIC_TYPES


@instruction(_type(LOGIC_TYPES))
class OrOp(BinaryOp):
    """``or.b32``, PTX ISA 8.0 section 9.7.7."""

    name = "ptx.or"
    MNEMONIC: ClassVar[str] = "or"
    ALLOWED: ClassVar[tuple[str, ...]] = LOGIC_TYPES


@instruction(_type(LOGIC_TYPES))
class XorOp(BinaryOp):
    """``xor.b32``, PTX ISA 8.0 section 9.7.7."""

    name = "ptx.xor"
    MNEMONIC: ClassVar[str] = "xor"
    ALLOWED: ClassVar[tuple[str, ...]] = LOGIC_TYPES


@instruction(_type(LOGIC_TYPES))
class NotOp(UnaryOp):
    """``not.b32`` (bitwise; ``not.pred`` negates a predicate), PTX ISA 8.0 section 9.7.7."""

    name = "ptx.not"
    MNEMONIC: ClassVar[str] = "not"
    ALLOWED: ClassVar[tuple[str, ...]] = LOGIC_TYPES


class _ShiftOp(BinaryOp):
    def operand_type(self, index: int) -> str:
        return "u32" if index == 1 else self.instr_type  # the shift amount is always a .u32


@instruction(_type(BITS))
class ShlOp(_ShiftOp):
    """``shl.b32 d, a, b``: ``a << b`` with ``b`` a 32-bit register (PTX ISA 8.0 section 9.7.7)."""

    name = "ptx.shl"
    MNEMONIC: ClassVar[str] = "shl"
    ALLOWED: ClassVar[tuple[str, ...]] = BITS


@instruction(_type(BITS + INTEGER))
class ShrOp(_ShiftOp):
    """``shr``: logical for ``.b``/``.u`` types, arithmetic for ``.s`` types (PTX ISA 8.0 section 9.7.7)."""

    name = "ptx.shr"
    MNEMONIC: ClassVar[str] = "shr"
    ALLOWED: ClassVar[tuple[str, ...]] = BITS + INTEGER


# ---------------------------------------------------------------------------------------------------------------
# Comparison and selection (PTX ISA 8.0 section 9.7.5, "Comparison and Selection Instructions")

SIGNED_CMP = ("eq", "ne", "lt", "le", "gt", "ge")
UNSIGNED_CMP = SIGNED_CMP + ("lo", "ls", "hi", "hs")
FLOAT_CMP = SIGNED_CMP + ("equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan")
ALL_CMP = tuple(dict.fromkeys(UNSIGNED_CMP + FLOAT_CMP))


@instruction(Slot("cmp", ALL_CMP), _FTZ, _type(ALL_VALUE_TYPES))
class SetpOp(Instruction):
    """``setp.lt.s32 %p, %a, %b`` (PTX ISA 8.0 section 9.7.5): compare into a predicate register. Unsigned types
    also take ``lo ls hi hs``; floats take the unordered ``equ neu ltu leu gtu geu`` and ``num``/``nan``;
    bit-size types only ``eq``/``ne``."""

    name = "ptx.setp"
    MNEMONIC: ClassVar[str] = "setp"
    lhs = operand_def(RegisterType)
    rhs = operand_def(RegisterType)
    result = result_def(PredType)

    def __init__(
        self,
        cmp: str,
        lhs: SSAValue | Operation,
        rhs: SSAValue | Operation,
        type: str | None = None,
        *,
        ftz: bool = False,
    ):
        lhs, rhs = SSAValue.get(lhs), SSAValue.get(rhs)
        t = type if type is not None else kind_of(lhs)
        props = self.modifier_properties({"cmp": cmp, "ftz": ftz, "type": t})
        super().__init__(operands=[lhs, rhs], result_types=[pred], properties=props)

    def verify_modifiers(self) -> None:
        t, cmp = self.instr_type, self.mod("cmp")
        allowed: tuple[str, ...] = FLOAT_CMP if t in FLOATS else UNSIGNED_CMP if t in UNSIGNED else SIGNED_CMP
        if t in BITS:
            allowed = ("eq", "ne")
        if cmp not in allowed:
            raise self.fail(f"comparison .{cmp} is not defined for .{t}, expected one of {allowed}")
        if self.mod("ftz") is not None and t != "f32":
            raise self.fail(".ftz applies to .f32 only")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "operand 'lhs'", self.lhs, self.instr_type, False
        yield "operand 'rhs'", self.rhs, self.instr_type, False


@instruction(_type(ALL_VALUE_TYPES))
class SelpOp(Instruction):
    """``selp.f32 d, a, b, c``: ``d = c ? a : b`` with ``c`` a predicate (PTX ISA 8.0 section 9.7.5)."""

    name = "ptx.selp"
    MNEMONIC: ClassVar[str] = "selp"
    a = operand_def(RegisterType)
    b = operand_def(RegisterType)
    cond = operand_def(PredType)
    result = result_def(RegisterType)

    def __init__(
        self, a: SSAValue | Operation, b: SSAValue | Operation, cond: SSAValue | Operation, type: str | None = None
    ):
        a = SSAValue.get(a)
        t = type if type is not None else kind_of(a)
        super().__init__(operands=[a, b, cond], result_types=[reg(t)], properties={"type": string_attr(t)})

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "operand 'a'", self.a, self.instr_type, False
        yield "operand 'b'", self.b, self.instr_type, False
        yield "operand 'cond'", self.cond, "pred", False
        yield "the result", self.result, self.instr_type, False


# ---------------------------------------------------------------------------------------------------------------
# Data movement and conversion (PTX ISA 8.0 section 9.7.8, "Data Movement and Conversion Instructions")

MOV_TYPES = ("pred", *ALL_VALUE_TYPES)


def float_literal(value: float) -> str:
    """A float as an MLIR float literal (always with a ``.``), or ``inf``/``-inf``/``nan``."""
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    if "." not in text:
        mantissa, _, exponent = text.partition("e")
        text = mantissa + ".0" + ("e" + exponent if exponent else "")
    return text


def ptx_float(value: float, type_name: str) -> str:
    """A float immediate in PTX's exact hex form: ``0f3F800000`` (f32, rounded to nearest) or
    ``0d3FF0000000000000`` (f64), PTX ISA 8.0 section 4.5 ("Constants")."""
    import struct

    if type_name == "f32":
        return "0f" + struct.pack(">f", value).hex().upper()
    return "0d" + struct.pack(">d", value).hex().upper()


@instruction(_type(MOV_TYPES))
class MovOp(Instruction):
    """``mov`` of a register or an immediate into a new register (PTX ISA 8.0 section 9.7.8):
    ``%c = ptx.mov f32 1.5 : () -> !ptx.f32`` prints ``mov.f32 %f1, 0f3FC00000;``;
    ``%b = ptx.mov b32 %f : (!ptx.f32) -> !ptx.b32`` is a bit cast. Float immediates are printed in hex, exactly.
    """

    name = "ptx.mov"
    MNEMONIC: ClassVar[str] = "mov"
    source = opt_operand_def(RegisterType)
    imm = opt_prop_def(base(IntAttr) | base(FloatAttr))
    result = result_def(RegisterType)

    def __init__(self, source: SSAValue | Operation | int | float, type: str | None = None):
        """``MovOp(%x)`` copies a register (``type`` defaults to its kind); ``MovOp(1.0, "f32")`` loads an
        immediate (``type`` is then required)."""
        if isinstance(source, int | float):
            if type is None:
                raise TypeError("ptx.mov of an immediate needs its type, e.g. MovOp(1.0, 'f32')")
            imm: Attribute = FloatAttr(float(source), builtin_f64) if type in FLOATS else IntAttr(int(source))
            props = {"type": string_attr(type), "imm": imm}
            super().__init__(operands=[[]], result_types=[reg(type)], properties=props)
        else:
            value = SSAValue.get(source)
            t = type if type is not None else kind_of(value)
            super().__init__(operands=[[value]], result_types=[reg(t)], properties={"type": string_attr(t)})

    @property
    def immediate(self) -> int | float | None:
        if isinstance(self.imm, IntAttr):
            return self.imm.data
        if isinstance(self.imm, FloatAttr):
            return float(self.imm.value.data)
        return None

    def print_body(self, printer: Printer) -> None:
        if self.source is not None:
            printer.print_string(" ")
            printer.print_operand(self.source)
        elif isinstance(self.imm, FloatAttr):
            printer.print_string(" " + float_literal(float(self.imm.value.data)))
        elif isinstance(self.imm, IntAttr):
            printer.print_string(f" {self.imm.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        operand = parser.parse_optional_unresolved_operand()
        if operand is not None:
            return [operand], {}
        negative = parser.parse_optional_punctuation("-") is not None
        special = parser.parse_optional_keyword_in(("inf", "nan"))
        if special is not None:
            value: int | float = float(special)
            value = -value if negative else value
        else:
            value = parser.parse_number(context_msg=" (a register or an immediate)")
            value = -value if negative else value
        imm: Attribute = FloatAttr(float(value), builtin_f64) if isinstance(value, float) else IntAttr(value)
        return [None], {"imm": imm}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        if self.source is not None:
            return f"{name(self.result)}, {name(self.source)}"
        return f"{name(self.result)}, {self.ptx_immediate()}"

    def ptx_immediate(self) -> str:
        value = self.immediate
        assert value is not None
        t = self.instr_type
        if t in FLOATS:
            return ptx_float(float(value), t)
        return str(int(value))

    def verify_modifiers(self) -> None:
        t = self.instr_type
        if (self.source is None) == (self.imm is None):
            raise self.fail("needs exactly one of a source register and an immediate")
        if isinstance(self.imm, FloatAttr) and t not in FLOATS:
            raise self.fail(f"a float immediate needs a float type, got .{t}")
        if isinstance(self.imm, IntAttr):
            if t in FLOATS:
                raise self.fail(f"the immediate of mov.{t} must be a float")
            width = TYPE_WIDTH[t]
            if not -(2 ** max(width - 1, 0)) <= self.imm.data < 2**width:
                raise self.fail(f"immediate {self.imm.data} does not fit in .{t}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        if self.source is not None:
            yield "the source", self.source, self.instr_type, False
        yield "the result", self.result, self.instr_type, False


@instruction(_type(MOV_TYPES))
class AssignOp(Instruction):
    """Write ``source`` into the existing register ``dest``: ``ptx.assign f32 %acc, %new`` prints
    ``mov.f32 %f1, %f7;``. This is how loop-carried values (phis) are expressed; see the module docstring."""

    name = "ptx.assign"
    MNEMONIC: ClassVar[str] = "mov"
    dest = operand_def(RegisterType)
    source = operand_def(RegisterType)

    def __init__(self, dest: SSAValue | Operation, source: SSAValue | Operation, type: str | None = None):
        dest = SSAValue.get(dest)
        t = type if type is not None else kind_of(dest)
        super().__init__(operands=[dest, source], properties={"type": string_attr(t)})

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the destination", self.dest, self.instr_type, False
        yield "the source", self.source, self.instr_type, False


SPECIAL_REGISTERS = (
    *(f"{r}.{d}" for r in ("tid", "ntid", "ctaid", "nctaid") for d in "xyz"),
    "laneid",
    "warpid",
    "nwarpid",
    "smid",
    "nsmid",
)


@irdl_op_definition
class SregOp(Instruction):
    """Read a special register (PTX ISA 8.0 chapter 10, "Special Registers"): ``%t = ptx.sreg tid.x`` prints
    ``mov.u32 %r1, %tid.x;``. All of ``%tid``, ``%ntid``, ``%ctaid``, ``%nctaid`` (``.x/.y/.z``), ``%laneid``,
    ``%warpid``, ``%nwarpid``, ``%smid``, ``%nsmid`` are 32-bit."""

    name = "ptx.sreg"
    MNEMONIC: ClassVar[str] = "mov.u32"
    register = prop_def(StringAttr)
    result = result_def(RegisterType)

    def __init__(self, register: str, kind: str = "u32"):
        super().__init__(result_types=[reg(kind)], properties={"register": string_attr(register)})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" " + self.register.data)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"register": StringAttr(parser.parse_identifier(" (a special register such as tid.x)"))}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{name(self.result)}, %{self.register.data}"

    def verify_modifiers(self) -> None:
        if self.register.data not in SPECIAL_REGISTERS:
            raise self.fail(f"unknown special register '{self.register.data}', expected one of {SPECIAL_REGISTERS}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the result", self.result, "u32", False


@instruction(_type(("u32", "u64")))
class SharedAddrOp(Instruction):
    """The address of a ``ptx.shared`` buffer: ``%s = ptx.shared_addr u32 @tile`` prints ``mov.u32 %r1, tile;``
    (a 32-bit shared-window address, usable as ``[%r1]`` with ``ld.shared``/``st.shared``; PTX ISA 8.0 section
    9.7.8, ``mov`` of a variable's address)."""

    name = "ptx.shared_addr"
    MNEMONIC: ClassVar[str] = "mov"
    symbol = prop_def(SymbolRefAttr)
    result = result_def(RegisterType)

    def __init__(self, symbol: str | SymbolRefAttr, type: str = "u32"):
        sym = SymbolRefAttr(symbol) if isinstance(symbol, str) else symbol
        super().__init__(result_types=[reg(type)], properties={"type": string_attr(type), "symbol": sym})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_attribute(self.symbol)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"symbol": SymbolRefAttr(parser.parse_symbol_name())}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{name(self.result)}, {self.symbol.root_reference.data}"

    def signature(self) -> tuple[object, ...]:
        return (*super().signature(), self.parent_op())  # the buffer is looked up in the kernel (find_shared)

    def verify_modifiers(self) -> None:
        if find_shared(self, self.symbol.root_reference.data) is None:
            raise self.fail(f"no ptx.shared buffer named @{self.symbol.root_reference.data}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the result", self.result, self.instr_type, False


@instruction(_type(PARAM_KINDS))
class LdParamOp(Instruction):
    """``ld.param.u64 %rd1, [k_param_0];``: read a kernel parameter (PTX ISA 8.0 section 9.7.8, ``ld``);
    ``%p = ptx.ld_param u64 %arg0 : (!ptx.param<u64>) -> !ptx.u64``."""

    name = "ptx.ld_param"
    MNEMONIC: ClassVar[str] = "ld.param"
    param = operand_def(ParamType)
    result = result_def(RegisterType)

    def __init__(self, param: SSAValue, kind: str | None = None):
        assert isinstance(param.type, ParamType), "ptx.ld_param reads a !ptx.param block argument"
        t = param.type.kind
        super().__init__(operands=[param], result_types=[reg(kind or t)], properties={"type": string_attr(t)})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.param)

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{name(self.result)}, [{name(self.param)}]"

    def verify_modifiers(self) -> None:
        param_type = self.param.type
        assert isinstance(param_type, ParamType)
        if param_type.kind != self.instr_type:
            raise self.fail(f"reads a .{param_type.kind} parameter with ld.param.{self.instr_type}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the result", self.result, self.instr_type, True


@instruction(_type(("u64",)))
class ParamAddrOp(Instruction):
    """``mov.u64 %rd1, k_param_0;``: the address of a kernel parameter in the ``.param`` state space (PTX ISA 8.0
    section 9.7.8, ``mov`` of a variable's address); ``cvta.param.u64`` turns it into a generic address, as
    ``cp.async.bulk.tensor`` takes for a tensor map passed by value (``%a = ptx.param_addr u64 %arg0``)."""

    name = "ptx.param_addr"
    MNEMONIC: ClassVar[str] = "mov"
    param = operand_def(ParamType)
    result = result_def(RegisterType)

    def __init__(self, param: SSAValue):
        super().__init__(operands=[param], result_types=[reg("u64")], properties={"type": string_attr("u64")})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.param)

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{name(self.result)}, {name(self.param)}"

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the result", self.result, self.instr_type, False


@instruction(
    Slot("to", ("to",), optional=True),
    Slot("space", ("global", "shared", "local", "const", "param")),
    _type(("u32", "u64")),
)
class CvtaOp(Instruction):
    """``cvta.to.global.u64 %rd2, %rd1;``: generic address to a state-space address (``to``), or back (PTX ISA
    8.0 section 9.7.8). Kernel pointer parameters are generic addresses."""

    name = "ptx.cvta"
    MNEMONIC: ClassVar[str] = "cvta"
    source = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(self, source: SSAValue | Operation, space: str = "global", type: str = "u64", to: bool = True):
        props = self.modifier_properties({"to": to, "space": space, "type": type})
        super().__init__(operands=[source], result_types=[reg(type)], properties=props)

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the source", self.source, self.instr_type, False
        yield "the result", self.result, self.instr_type, False


@instruction(Slot("rnd", FLOAT_ROUNDING + INTEGER_ROUNDING + ("rna",), optional=True), _FTZ, _SAT,
             Slot("dtype", (*CVT_TYPES, TF32)), Slot("atype", CVT_TYPES))  # fmt: skip
class CvtOp(Instruction):
    """``cvt{.rnd}{.ftz}{.sat}.dtype.atype d, a`` (PTX ISA 8.0 section 9.7.8): ``cvt.rn.f32.s64``,
    ``cvt.rzi.s64.f32``, ``cvt.f64.f32``, ``cvt.rn.f32.f64``, ``cvt.u32.u64``, ``cvt.rna.tf32.f32`` and
    ``cvt.rn.tf32.f32`` (the only forms of tf32: f32 rounded to nearest, ties away (sm_80+) or to even (sm_90+),
    into a ``.b32`` register). Rounding rules: float to integer
    needs an integer rounding (``.rni .rzi .rmi .rpi``); integer to float and narrowing float to float need a
    float rounding (``.rn .rz .rm .rp``); float to float of one width takes only an integer rounding (round to
    integral); widening float and integer to integer take none."""

    name = "ptx.cvt"
    MNEMONIC: ClassVar[str] = "cvt"
    source = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(self, source: SSAValue | Operation, dtype: str, atype: str | None = None, **mods: Modifier):
        source = SSAValue.get(source)
        a = atype if atype is not None else kind_of(source)
        props = self.modifier_properties({**mods, "dtype": dtype, "atype": a})
        super().__init__(operands=[source], result_types=[reg(dtype)], properties=props)

    @property
    def dest_type(self) -> str:
        value = self.mod("dtype")
        assert value is not None
        return value

    @property
    def source_type(self) -> str:
        value = self.mod("atype")
        assert value is not None
        return value

    def verify_modifiers(self) -> None:
        d, a, rnd = self.dest_type, self.source_type, self.mod("rnd")
        if TF32 in (d, a) or rnd == "rna":
            if (d, a) != (TF32, "f32") or rnd not in TF32_ROUNDING or self.mod("ftz") or self.mod("sat"):
                raise self.fail(
                    f"cvt.{rnd}.{d}.{a}: the only tf32 conversions are cvt.rna.tf32.f32 and cvt.rn.tf32.f32"
                )
            _check_target(self, TF32_ROUNDING[rnd])
            return
        d_float, a_float = d in FLOATS + HALF_FLOATS, a in FLOATS + HALF_FLOATS
        if a_float and not d_float:
            if rnd not in INTEGER_ROUNDING:
                raise self.fail(f"float-to-integer cvt.{d}.{a} needs an integer rounding (.rni .rzi .rmi .rpi)")
        elif d_float and not a_float:
            if rnd not in FLOAT_ROUNDING:
                raise self.fail(f"integer-to-float cvt.{d}.{a} needs a float rounding (.rn .rz .rm .rp)")
        elif d_float and a_float:
            if TYPE_WIDTH[d] < TYPE_WIDTH[a] and rnd not in FLOAT_ROUNDING:
                raise self.fail(f"narrowing cvt.{d}.{a} needs a float rounding (.rn .rz .rm .rp)")
            if TYPE_WIDTH[d] == TYPE_WIDTH[a] and rnd is not None and rnd not in INTEGER_ROUNDING:
                raise self.fail(f"cvt.{d}.{a} takes only an integer rounding (round to integral)")
            if TYPE_WIDTH[d] > TYPE_WIDTH[a] and rnd is not None:
                raise self.fail(f"widening cvt.{d}.{a} is exact and takes no rounding")
        elif rnd is not None:
            raise self.fail(f"integer cvt.{d}.{a} takes no rounding")
        if self.mod("ftz") is not None and "f32" not in (d, a):
            raise self.fail(".ftz applies to conversions from or to .f32 only")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the source", self.source, self.source_type, True
        yield "the result", self.result, self.dest_type, True


@instruction(Slot("rnd", ("rn", "rz")), Slot("dtype", ("bf16x2", "f16x2")), Slot("atype", ("f32",)))
class CvtPairOp(Instruction):
    """``cvt.rn.bf16x2.f32 d, a, b`` (PTX ISA 8.0 section 9.7.8.21, sm_80+): two f32 rounded to bf16 (or f16) and
    packed into one ``.b32``, ``a`` in the upper half and ``b`` in the lower (the operand layout of the tensor cores'
    16-bit fragments: the element of the lower index in the low half)."""

    name = "ptx.cvt_pair"
    MNEMONIC: ClassVar[str] = "cvt"
    a = operand_def(RegisterType)
    b = operand_def(RegisterType)
    result = result_def(RegisterType)

    def __init__(self, a: SSAValue | Operation, b: SSAValue | Operation, dtype: str = "bf16x2", rnd: str = "rn"):
        props = self.modifier_properties({"rnd": rnd, "dtype": dtype, "atype": "f32"})
        super().__init__(operands=[a, b], result_types=[reg("b32")], properties=props)

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "operand 'a'", self.a, "f32", False
        yield "operand 'b'", self.b, "f32", False
        yield "the result", self.result, "b32", False


_SPACE_LD = Slot("space", ("global", "shared", "local", "const"))
_VEC = Slot("vec", ("v2", "v4"), optional=True)


def _vec_count(vec: str | None) -> int:
    return {None: 1, "v2": 2, "v4": 4}[vec]


def _print_address(printer: Printer, addr: SSAValue, offset: IntegerAttr | None) -> None:
    printer.print_string(" [")
    printer.print_operand(addr)
    off = offset.value.data if offset is not None else 0
    if off > 0:
        printer.print_string(f" + {off}")
    elif off < 0:
        printer.print_string(f" - {-off}")
    printer.print_string("]")


def _parse_address(parser: Parser) -> tuple[UnresolvedOperand, dict[str, Attribute]]:
    parser.parse_punctuation("[")
    addr = parser.parse_unresolved_operand()
    props: dict[str, Attribute] = {}
    if parser.parse_optional_punctuation("+") is not None:
        props["offset"] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
    elif parser.parse_optional_punctuation("-") is not None:
        props["offset"] = IntegerAttr(-parser.parse_integer(allow_boolean=False, allow_negative=False), i64)
    parser.parse_punctuation("]")
    return addr, props


def _ptx_address(name: str, offset: IntegerAttr | None) -> str:
    off = offset.value.data if offset is not None else 0
    return f"[{name}+{off}]" if off else f"[{name}]"


def _offset_props(offset: int) -> dict[str, Attribute]:
    return {"offset": _offset_attr(offset)} if offset else {}


@functools.lru_cache(maxsize=4096)
def _offset_attr(offset: int) -> IntegerAttr:
    return IntegerAttr(offset, i64)


def _check_vector_width(op: Instruction) -> None:
    """A vector access moves at most 128 bits on sm_90 (256-bit ``ld``/``st`` need sm_100 and PTX ISA 8.8)."""
    bits = _vec_count(op.mod("vec")) * TYPE_WIDTH[op.instr_type]
    if bits > 128:
        raise op.fail(f"{op.opcode} moves {bits} bits; sm_90 allows at most 128 per access")


class MemoryOp(Instruction):
    """Shared checks of instructions with an address operand ``[%a + offset]``."""

    def address_value(self) -> SSAValue:
        return cast(SSAValue, getattr(self, "addr"))  # noqa: B009 (defined by the subclasses)

    def verify_address(self, space: str | None) -> None:
        kind = kind_of(self.address_value())
        if kind not in ("b32", "u32", "s32", "b64", "u64", "s64"):
            raise self.fail(f"the address must be a 32- or 64-bit integer register, got .{kind}")
        if space in ("global", "const") and TYPE_WIDTH[kind] != 64:
            raise self.fail(f"a .{space} address must be a 64-bit register, got .{kind}")


@instruction(
    _SPACE_LD,
    Slot("nc", ("nc",), optional=True),
    Slot("cop", ("ca", "cg", "cs", "lu", "cv"), optional=True),
    _VEC,
    _type(MEMORY_TYPES),
)
class LdOp(MemoryOp):
    """``ld.global.f32 %f1, [%rd1+16];`` (PTX ISA 8.0 section 9.7.8, ``ld`` and ``ld.global.nc``); vector
    forms ``ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd1];`` give one result per element:
    ``%a, %b = ptx.ld global.v2.f32 [%p + 8] : (!ptx.u64) -> (!ptx.f32, !ptx.f32)``."""

    name = "ptx.ld"
    MNEMONIC: ClassVar[str] = "ld"
    addr = operand_def(RegisterType)
    offset = opt_prop_def(IntegerAttr[I64])
    values = var_result_def(RegisterType)

    def __init__(
        self,
        addr: SSAValue | Operation,
        type: str,
        space: str = "global",
        *,
        offset: int = 0,
        vec: int = 1,
        kind: str | None = None,
        **mods: Modifier,
    ):
        """``vec`` is 1, 2 or 4; ``kind`` is the register kind of the results (default: that of ``type``)."""
        vec_mod = {1: None, 2: "v2", 4: "v4"}[vec]
        props = self.modifier_properties({**mods, "space": space, "vec": vec_mod, "type": type})
        props.update(_offset_props(offset))
        super().__init__(operands=[addr], result_types=[[reg(kind or type)] * vec], properties=props)

    @property
    def result(self) -> SSAValue:
        """The loaded value of a scalar load."""
        assert len(self.values) == 1, "a vector ld has one result per element: use .values"
        return self.values[0]

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, self.offset)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, props = _parse_address(parser)
        return [addr], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        values = [name(v) for v in self.values]
        dest = values[0] if len(values) == 1 else "{" + ", ".join(values) + "}"
        return f"{dest}, {_ptx_address(name(self.addr), self.offset)}"

    def verify_modifiers(self) -> None:
        space = self.mod("space")
        self.verify_address(space)
        if len(self.values) != _vec_count(self.mod("vec")):
            raise self.fail(f"{self.opcode} gives {_vec_count(self.mod('vec'))} values, not {len(self.values)}")
        if self.mod("nc") is not None and space != "global":
            raise self.fail(".nc applies to ld.global only")
        _check_vector_width(self)

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        for i, v in enumerate(self.values):
            yield f"result {i}", v, self.instr_type, True


@instruction(_SPACE_LD, Slot("cop", ("wb", "cg", "cs", "wt"), optional=True), _VEC, _type(MEMORY_TYPES))
class StOp(MemoryOp):
    """``st.global.f32 [%rd1], %f1;`` (PTX ISA 8.0 section 9.7.8); vector form
    ``ptx.st global.v2.f32 [%p], {%a, %b}``; optional guard ``if %p`` (``@%p st...``)."""

    name = "ptx.st"
    MNEMONIC: ClassVar[str] = "st"
    addr = operand_def(RegisterType)
    values = var_operand_def(RegisterType)
    guard = opt_operand_def(PredType)
    offset = opt_prop_def(IntegerAttr[I64])
    negate = opt_prop_def(UnitAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        addr: SSAValue | Operation,
        values: SSAValue | Operation | Sequence[SSAValue | Operation],
        type: str | None = None,
        space: str = "global",
        *,
        offset: int = 0,
        guard: SSAValue | Operation | None = None,
        negate: bool = False,
        **mods: Modifier,
    ):
        vals = [SSAValue.get(v) for v in values] if isinstance(values, Sequence) else [SSAValue.get(values)]
        t = type if type is not None else kind_of(vals[0])
        vec_mod = {1: None, 2: "v2", 4: "v4"}.get(len(vals), f"v{len(vals)}")
        props = self.modifier_properties({**mods, "space": space, "vec": vec_mod, "type": t})
        props.update(_offset_props(offset))
        g = SSAValue.get(guard) if guard is not None else None
        props.update(self.guard_properties(g, negate))
        super().__init__(operands=[addr, vals, [g] if g is not None else []], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, self.offset)
        printer.print_string(", ")
        if self.mod("vec") is None and len(self.values) == 1:
            printer.print_operand(self.values[0])
        else:
            printer.print_string("{")
            printer.print_list(self.values, printer.print_operand)
            printer.print_string("}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, props = _parse_address(parser)
        parser.parse_punctuation(",")
        values = parser.parse_optional_comma_separated_list(parser.Delimiter.BRACES, parser.parse_unresolved_operand)
        return [addr, values if values is not None else [parser.parse_unresolved_operand()]], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        values = [name(v) for v in self.values]
        src = values[0] if self.mod("vec") is None and len(values) == 1 else "{" + ", ".join(values) + "}"
        return f"{_ptx_address(name(self.addr), self.offset)}, {src}"

    def verify_modifiers(self) -> None:
        self.verify_address(self.mod("space"))
        if len(self.values) != _vec_count(self.mod("vec")):
            raise self.fail(f"{self.opcode} stores {_vec_count(self.mod('vec'))} values, not {len(self.values)}")
        _check_vector_width(self)

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        for i, v in enumerate(self.values):
            yield f"value {i}", v, self.instr_type, True


# ---------------------------------------------------------------------------------------------------------------
# Warp shuffles, barriers, atomics (PTX ISA 8.0 sections 9.7.8 (``shfl.sync``) and 9.7.12 "Parallel Synchronization
# and Communication Instructions")


@instruction(Slot("mode", ("up", "down", "bfly", "idx")), _type(("b32",)))
class ShflOp(Instruction):
    """``shfl.sync.bfly.b32 d, a, b, c, membermask`` (PTX ISA 8.0 section 9.7.8): ``b`` (lane or lane offset),
    ``c`` (clamp / segment mask) and ``membermask`` are immediates here:
    ``%y = ptx.shfl_sync bfly.b32 %x, 16, 31, 0xffffffff : (!ptx.f32) -> !ptx.f32``. For a full-warp butterfly or
    down-shuffle reduction use ``c = 31`` and ``membermask = 0xffffffff``. Any 32-bit register (``.f32`` too)."""

    name = "ptx.shfl_sync"
    MNEMONIC: ClassVar[str] = "shfl.sync"
    source = operand_def(RegisterType)
    lane = prop_def(IntegerAttr[I64])
    clamp = prop_def(IntegerAttr[I64])
    membermask = prop_def(IntegerAttr[I64])
    result = result_def(RegisterType)

    def __init__(
        self,
        mode: str,
        source: SSAValue | Operation,
        lane: int,
        clamp: int | None = None,
        membermask: int = 0xFFFFFFFF,
    ):
        """``clamp`` defaults to 31 for ``bfly``/``down``/``idx`` and 0 for ``up`` (whole-warp shuffles)."""
        source = SSAValue.get(source)
        if clamp is None:
            clamp = 0 if mode == "up" else 31
        props: dict[str, Attribute] = {
            "mode": string_attr(mode),
            "type": string_attr("b32"),
            "lane": IntegerAttr(lane, i64),
            "clamp": IntegerAttr(clamp, i64),
            "membermask": IntegerAttr(membermask, i64),
        }
        super().__init__(operands=[source], result_types=[source.type], properties=props)

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.source)
        printer.print_string(f", {self.lane.value.data}, {self.clamp.value.data}, {self.membermask.value.data:#x}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        source = parser.parse_unresolved_operand()
        props: dict[str, Attribute] = {}
        for key in ("lane", "clamp", "membermask"):
            parser.parse_punctuation(",")
            props[key] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
        return [source], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return (
            f"{name(self.result)}, {name(self.source)}, {self.lane.value.data}, {self.clamp.value.data}, "
            f"{self.membermask.value.data:#x}"
        )

    def verify_modifiers(self) -> None:
        if not 0 <= self.lane.value.data <= 31:
            raise self.fail(f"lane {self.lane.value.data} is out of range 0..31")
        if not 0 <= self.clamp.value.data <= 0x1FFF:
            raise self.fail(f"clamp value {self.clamp.value.data:#x} is out of range")
        if not 0 <= self.membermask.value.data <= 0xFFFFFFFF:
            raise self.fail("membermask must be a 32-bit mask")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the source", self.source, "b32", False
        yield "the result", self.result, "b32", False


@irdl_op_definition
class BarSyncOp(Instruction):
    """``bar.sync 0;``: CTA-wide barrier (PTX ISA 8.0 section 9.7.12); every thread of the block must reach it."""

    name = "ptx.bar_sync"
    MNEMONIC: ClassVar[str] = "bar.sync"
    barrier = prop_def(IntegerAttr[I64])

    def __init__(self, barrier: int = 0):
        super().__init__(properties={"barrier": IntegerAttr(barrier, i64)})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(f" {self.barrier.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"barrier": IntegerAttr(parser.parse_integer(allow_boolean=False), i64)}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return str(self.barrier.value.data)

    def verify_modifiers(self) -> None:
        if not 0 <= self.barrier.value.data <= 15:
            raise self.fail(f"barrier {self.barrier.value.data} is out of range 0..15")


ATOM_OPS = ("and", "or", "xor", "cas", "exch", "add", "inc", "dec", "min", "max")
ATOM_TYPES = ("b32", "b64", "u32", "u64", "s32", "s64", "f32", "f64")


def _check_atomic(op: Instruction, atom_op: str, t: str) -> None:
    allowed = {
        "and": ("b32", "b64"),
        "or": ("b32", "b64"),
        "xor": ("b32", "b64"),
        "cas": ("b32", "b64"),
        "exch": ("b32", "b64"),
        "add": ("u32", "u64", "s32", "s64", "f32", "f64"),
        "inc": ("u32",),
        "dec": ("u32",),
        "min": ("u32", "u64", "s32", "s64"),
        "max": ("u32", "u64", "s32", "s64"),
    }[atom_op]
    if t not in allowed:
        raise op.fail(f"{atom_op} is not defined for .{t}, expected one of {allowed}")


def _print_atomic_body(op: MemoryOp, printer: Printer, values: Sequence[SSAValue], offset: IntegerAttr | None) -> None:
    _print_address(printer, op.address_value(), offset)
    for v in values:
        printer.print_string(", ")
        printer.print_operand(v)


def _parse_atomic_body(parser: Parser) -> tuple[UnresolvedOperand, list[UnresolvedOperand], dict[str, Attribute]]:
    addr, props = _parse_address(parser)
    values = []
    while parser.parse_optional_punctuation(",") is not None:
        values.append(parser.parse_unresolved_operand())
    return addr, values, props


_SPACE_ATOM = Slot("space", ("global", "shared"))


@instruction(_SPACE_ATOM, Slot("op", ATOM_OPS), _type(ATOM_TYPES))
class AtomOp(MemoryOp):
    """``atom.global.add.f32 %f2, [%rd1], %f1;``: atomic read-modify-write returning the old value (PTX ISA 8.0
    section 9.7.12); ``cas`` takes two values (compare, new)."""

    name = "ptx.atom"
    MNEMONIC: ClassVar[str] = "atom"
    addr = operand_def(RegisterType)
    values = var_operand_def(RegisterType)
    offset = opt_prop_def(IntegerAttr[I64])
    result = result_def(RegisterType)

    def __init__(
        self,
        op: str,
        addr: SSAValue | Operation,
        values: SSAValue | Operation | Sequence[SSAValue | Operation],
        type: str | None = None,
        space: str = "global",
        *,
        offset: int = 0,
    ):
        vals = [SSAValue.get(v) for v in values] if isinstance(values, Sequence) else [SSAValue.get(values)]
        t = type if type is not None else kind_of(vals[-1])
        props = self.modifier_properties({"space": space, "op": op, "type": t})
        props.update(_offset_props(offset))
        super().__init__(operands=[addr, vals], result_types=[reg(t)], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_atomic_body(self, printer, self.values, self.offset)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, values, props = _parse_atomic_body(parser)
        return [addr, values], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        rest = "".join(", " + name(v) for v in self.values)
        return f"{name(self.result)}, {_ptx_address(name(self.addr), self.offset)}{rest}"

    def verify_modifiers(self) -> None:
        self.verify_address(self.mod("space"))
        atom_op = self.mod("op")
        assert atom_op is not None
        _check_atomic(self, atom_op, self.instr_type)
        want = 2 if atom_op == "cas" else 1
        if len(self.values) != want:
            raise self.fail(f"atom.{atom_op} takes {want} value operand(s), got {len(self.values)}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        for i, v in enumerate(self.values):
            yield f"value {i}", v, self.instr_type, False
        yield "the result", self.result, self.instr_type, False


@instruction(_SPACE_ATOM, Slot("op", tuple(o for o in ATOM_OPS if o not in ("cas", "exch"))), _type(ATOM_TYPES))
class RedOp(MemoryOp):
    """``red.global.add.f32 [%rd1], %f1;``: atomic reduction without a result (PTX ISA 8.0 section 9.7.12);
    optional guard ``if %p``."""

    name = "ptx.red"
    MNEMONIC: ClassVar[str] = "red"
    addr = operand_def(RegisterType)
    value = operand_def(RegisterType)
    guard = opt_operand_def(PredType)
    offset = opt_prop_def(IntegerAttr[I64])
    negate = opt_prop_def(UnitAttr)

    def __init__(
        self,
        op: str,
        addr: SSAValue | Operation,
        value: SSAValue | Operation,
        type: str | None = None,
        space: str = "global",
        *,
        offset: int = 0,
        guard: SSAValue | Operation | None = None,
        negate: bool = False,
    ):
        value = SSAValue.get(value)
        t = type if type is not None else kind_of(value)
        props = self.modifier_properties({"space": space, "op": op, "type": t})
        props.update(_offset_props(offset))
        g = SSAValue.get(guard) if guard is not None else None
        props.update(self.guard_properties(g, negate))
        super().__init__(operands=[addr, value, [g] if g is not None else []], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_atomic_body(self, printer, [self.value], self.offset)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, values, props = _parse_atomic_body(parser)
        if len(values) != 1:
            parser.raise_error("ptx.red takes one value operand")
        return [addr, values[0]], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{_ptx_address(name(self.addr), self.offset)}, {name(self.value)}"

    def verify_modifiers(self) -> None:
        self.verify_address(self.mod("space"))
        red_op = self.mod("op")
        assert red_op is not None
        _check_atomic(self, red_op, self.instr_type)

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the value", self.value, self.instr_type, False


# ---------------------------------------------------------------------------------------------------------------
# Asynchronous copies (PTX ISA 8.0 section 9.7.8.25, "Data Movement and Conversion Instructions: cp.async"; sm_80+)


@instruction(Slot("cache", ("ca", "cg")), Slot("dst_space", ("shared",)), Slot("src_space", ("global",)))
class CpAsyncOp(Instruction):
    """``cp.async.cg.shared.global [%r1], [%rd2], 16, %r3;``: copy ``size`` (4, 8 or 16) bytes from global to
    shared memory without going through registers; only the first ``src_size`` bytes (a ``.u32`` register) are read
    and the rest is zero-filled. ``.cg`` (bypass L1) allows 16 bytes only. MLIR form:
    ``ptx.cp_async cg.shared.global [%dst], [%src + 16], 16, %n : (!ptx.u32, !ptx.u64, !ptx.u32) -> ()``."""

    name = "ptx.cp_async"
    MNEMONIC: ClassVar[str] = "cp.async"
    dst = operand_def(RegisterType)
    src = operand_def(RegisterType)
    src_size = operand_def(RegisterType)
    size = prop_def(IntegerAttr[I64])
    dst_offset = opt_prop_def(IntegerAttr[I64])
    src_offset = opt_prop_def(IntegerAttr[I64])

    def __init__(
        self,
        dst: SSAValue | Operation,
        src: SSAValue | Operation,
        size: int,
        src_size: SSAValue | Operation,
        *,
        dst_offset: int = 0,
        src_offset: int = 0,
        cache: str | None = None,
    ):
        cache = cache or ("cg" if size == 16 else "ca")
        props = self.modifier_properties({"cache": cache, "dst_space": "shared", "src_space": "global"})
        props["size"] = IntegerAttr(size, i64)
        if dst_offset:
            props["dst_offset"] = IntegerAttr(dst_offset, i64)
        if src_offset:
            props["src_offset"] = IntegerAttr(src_offset, i64)
        super().__init__(operands=[dst, src, src_size], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.dst, self.dst_offset)
        printer.print_string(",")
        _print_address(printer, self.src, self.src_offset)
        printer.print_string(f", {self.size.value.data}, ")
        printer.print_operand(self.src_size)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        dst, dprops = _parse_address(parser)
        parser.parse_punctuation(",")
        src, sprops = _parse_address(parser)
        parser.parse_punctuation(",")
        size = parser.parse_integer(allow_boolean=False, allow_negative=False)
        parser.parse_punctuation(",")
        n = parser.parse_unresolved_operand()
        props: dict[str, Attribute] = {"size": IntegerAttr(size, i64)}
        if "offset" in dprops:
            props["dst_offset"] = dprops["offset"]
        if "offset" in sprops:
            props["src_offset"] = sprops["offset"]
        return [dst, src, n], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        dst = _ptx_address(name(self.dst), self.dst_offset)
        src = _ptx_address(name(self.src), self.src_offset)
        return f"{dst}, {src}, {self.size.value.data}, {name(self.src_size)}"

    def verify_modifiers(self) -> None:
        size = self.size.value.data
        if size not in (4, 8, 16):
            raise self.fail(f"copies 4, 8 or 16 bytes, not {size}")
        if self.mod("cache") == "cg" and size != 16:
            raise self.fail("cp.async.cg copies 16 bytes only")
        if kind_of(self.src) not in ("b64", "u64", "s64"):
            raise self.fail(f"the global source address must be a 64-bit register, got .{kind_of(self.src)}")
        if kind_of(self.dst) not in ("b32", "u32", "s32", "b64", "u64", "s64"):
            raise self.fail(f"the shared destination address must be an integer register, got .{kind_of(self.dst)}")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "src_size", self.src_size, "u32", False


@instruction()
class CpAsyncCommitGroupOp(Instruction):
    """``cp.async.commit_group;``: close the thread's group of pending ``cp.async`` copies."""

    name = "ptx.cp_async_commit_group"
    MNEMONIC: ClassVar[str] = "cp.async.commit_group"


@instruction()
class CpAsyncWaitGroupOp(Instruction):
    """``cp.async.wait_group 1;``: wait until at most N of the thread's committed groups are pending."""

    name = "ptx.cp_async_wait_group"
    MNEMONIC: ClassVar[str] = "cp.async.wait_group"
    pending = prop_def(IntegerAttr[I64])

    def __init__(self, pending: int):
        super().__init__(properties={"pending": IntegerAttr(pending, i64)})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(f" {self.pending.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"pending": IntegerAttr(parser.parse_integer(allow_boolean=False, allow_negative=False), i64)}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return str(self.pending.value.data)


# ---------------------------------------------------------------------------------------------------------------
# Tensor cores, bulk tensor copies and mbarriers (PTX ISA 8.0 sections 9.7.13 "Warp Level Matrix Multiply-Accumulate
# Instructions" (ldmatrix, stmatrix, mma), 9.7.14 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (wgmma),
# 9.7.8.24 "Data Movement: cp.async.bulk.tensor", 9.7.12.15 "mbarrier", 9.7.12.4 "membar/fence" and 9.7.17.1
# "setmaxnreg").
#
# Fragments (the registers a warp or warpgroup holds a matrix tile in) are written as a brace group, in PTX and in
# MLIR alike: ``{%r1, %r2, %r3, %r4}``; their register counts come from the tables below. Each op checks the module's
# target and PTX version against its row of ``REQUIREMENTS`` (``sm_90a`` features run only on ``sm_90a``; the others
# on that target and newer).

#: Minimum target and PTX version of each instruction family (PTX ISA 8.0, each instruction's "Target ISA notes"
#: and "PTX ISA notes").
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "cvt.rna.tf32": ("sm_80", "7.0"),
    "cvt.rn.tf32": ("sm_90", "7.8"),
    "ldmatrix": ("sm_75", "6.5"),
    "stmatrix": ("sm_90", "7.8"),
    "mbarrier.init": ("sm_80", "7.8"),
    "mbarrier.arrive": ("sm_80", "7.8"),
    "mbarrier.arrive.expect_tx": ("sm_90", "8.0"),
    "mbarrier.try_wait": ("sm_90", "7.8"),
    "cp.async.bulk.tensor": ("sm_90", "8.0"),
    "fence.proxy.async": ("sm_90", "8.0"),
    "wgmma": ("sm_90a", "8.0"),
    "setmaxnreg": ("sm_90a", "8.0"),
}


@dataclass(frozen=True)
class MmaShape:
    """One row of ``MMA_SHAPES``: fragment sizes (``.b32``/``.f32`` registers per thread) of ``mma.sync`` for a
    shape and input type, with f32 accumulators, and the target and PTX version it needs (PTX ISA 8.0 section
    9.7.13.4.1, "Matrix Fragments for mma.m16n8k*")."""

    a_regs: int
    b_regs: int
    c_regs: int
    target: str
    version: str


#: ``mma.sync.aligned.<shape>.row.col.f32.<type>.<type>.f32``: (shape, input type) -> fragment sizes.
MMA_SHAPES: dict[tuple[str, str], MmaShape] = {
    ("m16n8k16", "bf16"): MmaShape(4, 2, 4, "sm_80", "7.0"),
    ("m16n8k16", "f16"): MmaShape(4, 2, 4, "sm_80", "7.0"),
    ("m16n8k8", "bf16"): MmaShape(2, 1, 4, "sm_80", "7.0"),
    ("m16n8k8", "f16"): MmaShape(2, 1, 4, "sm_75", "6.5"),
    ("m16n8k8", "tf32"): MmaShape(4, 2, 4, "sm_80", "7.0"),
}

#: ``wgmma.mma_async`` with shared-memory descriptors: input types (f32 accumulators) and the N of ``m64nNk16``.
WGMMA_TYPES = ("bf16", "f16")
WGMMA_N = tuple(range(8, 257, 8))
#: The K of one ``wgmma.mma_async`` per input type: 32 bytes of K, ``m64nNk16`` for 16-bit types, ``m64nNk8`` for
#: ``.tf32`` (PTX ISA 8.0 section 9.7.14.2). ``.tf32`` operands are 32-bit (an f32's bits; the tensor cores read
#: its top 19) and K-major only: imm-trans is for ``.f16``/``.bf16`` alone (section 9.7.14.5).
WGMMA_K: dict[str, int] = {"bf16": 16, "f16": 16, "tf32": 8}

#: Swizzle modes of a wgmma shared-memory matrix descriptor, bits 62-63 (PTX ISA 8.0 section 9.7.14.5.1,
#: "Matrix Descriptor Format"), with the swizzle width in bytes (0: no swizzle, "interleave").
WGMMA_SWIZZLE: dict[int, int] = {0: 0, 1: 128, 2: 64, 3: 32}


def wgmma_shape_n(shape: str | None) -> int:
    """The N of a wgmma shape modifier ``m64nNkK`` (0 when there is none)."""
    return int((shape or "m64n0k16")[4:].split("k")[0])


def wgmma_descriptor(address: int, leading_byte_offset: int, stride_byte_offset: int, swizzle: int = 128) -> int:
    """The 64-bit shared-memory matrix descriptor of ``wgmma.mma_async`` (PTX ISA 8.0 section 9.7.14.5.1): bits 0-13
    the start address >> 4 (18-bit shared address), 16-29 the leading-dimension byte offset >> 4, 32-45 the
    stride-dimension byte offset >> 4, 49-51 the base offset (0 here: tiles aligned to the swizzle pattern), 62-63
    the swizzle mode (``swizzle`` is 128, 64, 32 bytes or 0 for none). Raises ``ValueError`` for an unaligned
    address/offset or an unknown swizzle."""
    modes = {width: mode for mode, width in WGMMA_SWIZZLE.items()}
    if swizzle not in modes:
        raise ValueError(f"wgmma swizzle must be one of {sorted(modes)} bytes, got {swizzle}")
    for what, v in (("address", address), ("leading byte offset", leading_byte_offset), ("stride", stride_byte_offset)):
        if v % 16 or not 0 <= v < 1 << 18:
            raise ValueError(f"wgmma descriptor {what} {v} must be a multiple of 16 below 2**18")
    return (
        ((address & 0x3FFFF) >> 4)
        | ((leading_byte_offset >> 4) << 16)
        | ((stride_byte_offset >> 4) << 32)
        | (modes[swizzle] << 62)
    )


def target_supports(target: str, version: str, need_target: str, need_version: str) -> bool:
    """Whether a module of ``target``/``version`` may use a feature that needs ``need_target``/``need_version``:
    arch-specific features (``sm_90a``) need exactly that target, the others that target or a newer one."""
    m, n = re.fullmatch(r"sm_(\d+)(a?)", target), re.fullmatch(r"sm_(\d+)(a?)", need_target)
    assert m is not None and n is not None, (target, need_target)
    if n.group(2):
        ok = target == need_target
    else:
        ok = int(m.group(1)) >= int(n.group(1))
    have = tuple(int(x) for x in version.split("."))
    need = tuple(int(x) for x in need_version.split("."))
    return ok and have >= need


def _check_target(op: Instruction, feature: str, requirement: tuple[str, str] | None = None) -> None:
    """Raise when the enclosing ``ptx.module``'s target or version lacks ``feature`` (a ``REQUIREMENTS`` key)."""
    need_target, need_version = requirement or REQUIREMENTS[feature]
    module = op.parent_op()
    while module is not None and not isinstance(module, ModuleOp):
        module = module.parent_op()
    if module is None:
        return
    if not target_supports(module.target.data, module.version.data, need_target, need_version):
        raise op.fail(
            f"{op.opcode} needs target {need_target} and PTX {need_version} or later; the module is "
            f"{module.target.data}, PTX {module.version.data}"
        )


def _braced(name: Callable[[SSAValue], str], values: Sequence[SSAValue]) -> str:
    return "{" + ", ".join(name(v) for v in values) + "}"


def _print_group(printer: Printer, values: Sequence[SSAValue]) -> None:
    printer.print_string("{")
    printer.print_list(values, printer.print_operand)
    printer.print_string("}")


def _parse_group(parser: Parser) -> list[UnresolvedOperand]:
    return parser.parse_comma_separated_list(parser.Delimiter.BRACES, parser.parse_unresolved_operand)


def _check_regs(op: Instruction, role: str, values: Sequence[SSAValue], count: int, instr_type: str) -> None:
    if len(values) != count:
        raise op.fail(f"{role} needs {count} registers, got {len(values)}")
    for i, v in enumerate(values):
        if not compatible(kind_of(v), instr_type):
            raise op.fail(f"{role} register {i} is .{kind_of(v)}; {op.opcode} needs .{instr_type} registers")


def _check_shared_address(op: Instruction, value: SSAValue, role: str = "the shared address") -> None:
    if kind_of(value) not in ("b32", "u32", "s32", "b64", "u64", "s64"):
        raise op.fail(f"{role} must be a 32- or 64-bit integer register, got .{kind_of(value)}")


_SYNC = Slot("sync", ("sync",))
_ALIGNED = Slot("aligned", ("aligned",))
_MATRIX_COUNT = {"x1": 1, "x2": 2, "x4": 4}


@instruction(_SYNC, _ALIGNED, Slot("shape", ("m8n8",)), Slot("num", tuple(_MATRIX_COUNT)),
             Slot("trans", ("trans",), optional=True), Slot("space", ("shared",)), _type(("b16",)))  # fmt: skip
class LdmatrixOp(MemoryOp):
    """``ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%r1, %r2, %r3, %r4}, [%r5];`` (PTX ISA 8.0 section
    9.7.13.4.15): the warp loads 1, 2 or 4 8x8 matrices of 16-bit elements from shared memory; threads 8i..8i+7 give
    the row addresses of matrix i, and lane l receives, in register i, row l/4, elements 2(l%4) and 2(l%4)+1 of
    matrix i (of its transpose with ``.trans``): the A/B fragment layout of ``mma.m16n8k16``. MLIR:
    ``%r:4 = ptx.ldmatrix sync.aligned.m8n8.x4.shared.b16 [%a] : (!ptx.u32) -> (!ptx.b32, ...)``."""

    name = "ptx.ldmatrix"
    MNEMONIC: ClassVar[str] = "ldmatrix"
    addr = operand_def(RegisterType)
    offset = opt_prop_def(IntegerAttr[I64])
    values = var_result_def(RegisterType)

    def __init__(self, addr: SSAValue | Operation, num: int = 4, *, trans: bool = False, offset: int = 0):
        props = self.modifier_properties({"sync": True, "aligned": True, "shape": "m8n8", "num": f"x{num}",
                                          "trans": trans, "space": "shared", "type": "b16"})  # fmt: skip
        props.update(_offset_props(offset))
        super().__init__(operands=[addr], result_types=[[b32] * num], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, self.offset)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, props = _parse_address(parser)
        return [addr], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{_braced(name, self.values)}, {_ptx_address(name(self.addr), self.offset)}"

    def verify_modifiers(self) -> None:
        _check_target(self, "ldmatrix")
        self.verify_address("shared")
        _check_regs(self, "the destination", self.values, _MATRIX_COUNT[self.mod("num") or "x1"], "b32")


@instruction(_SYNC, _ALIGNED, Slot("shape", ("m8n8",)), Slot("num", tuple(_MATRIX_COUNT)),
             Slot("trans", ("trans",), optional=True), Slot("space", ("shared",)), _type(("b16",)))  # fmt: skip
class StmatrixOp(MemoryOp):
    """``stmatrix.sync.aligned.m8n8.x4.shared.b16 [%r5], {%r1, %r2, %r3, %r4};`` (PTX ISA 8.0 section 9.7.13.4.16,
    sm_90): the inverse of ``ldmatrix``: lane l's register i holds row l/4, elements 2(l%4), 2(l%4)+1 of matrix i
    (of its transpose with ``.trans``), stored at the row addresses that threads 8i..8i+7 give."""

    name = "ptx.stmatrix"
    MNEMONIC: ClassVar[str] = "stmatrix"
    addr = operand_def(RegisterType)
    values = var_operand_def(RegisterType)
    offset = opt_prop_def(IntegerAttr[I64])

    def __init__(
        self,
        addr: SSAValue | Operation,
        values: Sequence[SSAValue | Operation],
        *,
        trans: bool = False,
        offset: int = 0,
    ):
        props = self.modifier_properties({"sync": True, "aligned": True, "shape": "m8n8", "num": f"x{len(values)}",
                                          "trans": trans, "space": "shared", "type": "b16"})  # fmt: skip
        props.update(_offset_props(offset))
        super().__init__(operands=[addr, [SSAValue.get(v) for v in values]], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, self.offset)
        printer.print_string(", ")
        _print_group(printer, self.values)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, props = _parse_address(parser)
        parser.parse_punctuation(",")
        return [addr, _parse_group(parser)], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{_ptx_address(name(self.addr), self.offset)}, {_braced(name, self.values)}"

    def verify_modifiers(self) -> None:
        _check_target(self, "stmatrix")
        self.verify_address("shared")
        _check_regs(self, "the source", self.values, _MATRIX_COUNT[self.mod("num") or "x1"], "b32")


_MMA_INPUT_TYPES = tuple(dict.fromkeys(t for _, t in MMA_SHAPES))


@instruction(_SYNC, _ALIGNED, Slot("shape", tuple(dict.fromkeys(s for s, _ in MMA_SHAPES))), Slot("alayout", ("row",)),
             Slot("blayout", ("col",)), Slot("dtype", ("f32",)), Slot("atype", _MMA_INPUT_TYPES),
             Slot("btype", _MMA_INPUT_TYPES), Slot("ctype", ("f32",)))  # fmt: skip
class MmaOp(Instruction):
    """``mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d0..d3}, {a0..a3}, {b0, b1}, {c0..c3};`` (PTX ISA 8.0
    section 9.7.13.4): one warp computes D (16x8, f32) = A (16xK) @ B (Kx8) + C. A and B fragments are ``.b32``
    registers (two bf16/f16 packed, or one tf32), C and D ``.f32``; the counts are ``MMA_SHAPES``' row. MLIR:
    ``%d:4 = ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%a0, ...}, {%b0, %b1}, {%c0, ...}
    : (...) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)``."""

    name = "ptx.mma_sync"
    MNEMONIC: ClassVar[str] = "mma"
    a = var_operand_def(RegisterType)
    b = var_operand_def(RegisterType)
    c = var_operand_def(RegisterType)
    d = var_result_def(RegisterType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        shape: str,
        type: str,
        a: Sequence[SSAValue | Operation],
        b: Sequence[SSAValue | Operation],
        c: Sequence[SSAValue | Operation],
    ):
        props = self.modifier_properties({"sync": True, "aligned": True, "shape": shape, "alayout": "row",
                                          "blayout": "col", "dtype": "f32", "atype": type, "btype": type,
                                          "ctype": "f32"})  # fmt: skip
        operands = [[SSAValue.get(v) for v in group] for group in (a, b, c)]
        super().__init__(operands=operands, result_types=[[f32] * len(c)], properties=props)

    @property
    def table_row(self) -> MmaShape:
        key = (self.mod("shape") or "", self.mod("atype") or "")
        if key not in MMA_SHAPES:
            raise self.fail(f"no mma.sync of shape .{key[0]} on .{key[1]}; the supported ones are {list(MMA_SHAPES)}")
        return MMA_SHAPES[key]

    def print_body(self, printer: Printer) -> None:
        for i, group in enumerate((self.a, self.b, self.c)):
            printer.print_string(", " if i else " ")
            _print_group(printer, group)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        groups: list[Group] = [_parse_group(parser)]
        for _ in range(2):
            parser.parse_punctuation(",")
            groups.append(_parse_group(parser))
        return groups, {}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return ", ".join(_braced(name, g) for g in (self.d, self.a, self.b, self.c))

    def verify_modifiers(self) -> None:
        if self.mod("atype") != self.mod("btype"):
            raise self.fail(f"A and B must have one type, got .{self.mod('atype')} and .{self.mod('btype')}")
        row = self.table_row
        _check_target(self, "mma", (row.target, row.version))
        _check_regs(self, "A", self.a, row.a_regs, "b32")
        _check_regs(self, "B", self.b, row.b_regs, "b32")
        _check_regs(self, "C", self.c, row.c_regs, "f32")
        _check_regs(self, "D", self.d, row.c_regs, "f32")


_MBAR_SPACE = Slot("space", ("shared::cta",))


@instruction(_MBAR_SPACE, _type(("b64",)))
class MbarrierInitOp(MemoryOp):
    """``mbarrier.init.shared::cta.b64 [%r1], 128;`` (PTX ISA 8.0 section 9.7.12.15.9): set up the 8-byte mbarrier
    object at a shared address for ``count`` arrivals per phase, in phase 0 with no pending transaction bytes."""

    name = "ptx.mbarrier_init"
    MNEMONIC: ClassVar[str] = "mbarrier.init"
    addr = operand_def(RegisterType)
    count = prop_def(IntegerAttr[I64])

    def __init__(self, addr: SSAValue | Operation, count: int):
        props = self.modifier_properties({"space": "shared::cta", "type": "b64"})
        props["count"] = IntegerAttr(count, i64)
        super().__init__(operands=[addr], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, None)
        printer.print_string(f", {self.count.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, _ = _parse_address(parser)
        parser.parse_punctuation(",")
        return [addr], {"count": IntegerAttr(parser.parse_integer(allow_boolean=False), i64)}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"[{name(self.addr)}], {self.count.value.data}"

    def verify_modifiers(self) -> None:
        _check_target(self, "mbarrier.init")
        self.verify_address("shared")
        if not 1 <= self.count.value.data < 1 << 20:
            raise self.fail(f"the arrival count must be in 1..2**20-1, got {self.count.value.data}")


@instruction(Slot("expect_tx", ("expect_tx",), optional=True), _MBAR_SPACE, _type(("b64",)))
class MbarrierArriveOp(MemoryOp):
    """``mbarrier.arrive.expect_tx.shared::cta.b64 %rd1, [%r1], 16384;`` (PTX ISA 8.0 sections 9.7.12.15.11-13):
    one arrival on the mbarrier, with ``.expect_tx`` after raising the phase's expected transaction bytes by
    ``tx_count`` (the bytes that ``cp.async.bulk.tensor`` copies will complete); the result is the opaque state
    (``.b64``) of the phase arrived at."""

    name = "ptx.mbarrier_arrive"
    MNEMONIC: ClassVar[str] = "mbarrier.arrive"
    addr = operand_def(RegisterType)
    tx_count = opt_prop_def(IntegerAttr[I64])
    state = result_def(RegisterType)

    def __init__(self, addr: SSAValue | Operation, tx_count: int | None = None):
        props = self.modifier_properties({"expect_tx": tx_count is not None, "space": "shared::cta", "type": "b64"})
        if tx_count is not None:
            props["tx_count"] = IntegerAttr(tx_count, i64)
        super().__init__(operands=[addr], result_types=[b64], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, None)
        if self.tx_count is not None:
            printer.print_string(f", {self.tx_count.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, _ = _parse_address(parser)
        props: dict[str, Attribute] = {}
        if parser.parse_optional_punctuation(",") is not None:
            props["tx_count"] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
        return [addr], props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        tx = f", {self.tx_count.value.data}" if self.tx_count is not None else ""
        return f"{name(self.state)}, [{name(self.addr)}]{tx}"

    def verify_modifiers(self) -> None:
        expect = self.mod("expect_tx") is not None
        _check_target(self, "mbarrier.arrive.expect_tx" if expect else "mbarrier.arrive")
        self.verify_address("shared")
        if expect != (self.tx_count is not None):
            raise self.fail(".expect_tx and a transaction count go together")
        if self.tx_count is not None and not 0 <= self.tx_count.value.data < 1 << 20:
            raise self.fail(f"the transaction count must be in 0..2**20-1, got {self.tx_count.value.data}")
        if not compatible(kind_of(self.state), "b64"):
            raise self.fail("the state is a .b64 register")


@instruction(Slot("parity", ("parity",)), _MBAR_SPACE, _type(("b64",)))
class MbarrierTryWaitOp(MemoryOp):
    """``mbarrier.try_wait.parity.shared::cta.b64 %p1, [%r1], %r2;`` (PTX ISA 8.0 section 9.7.12.15.16): whether the
    phase of parity ``%r2`` (0 or 1) has completed, waiting a while for it; loop on it: ``@!%p1 bra WAIT;``. After
    it reads true, the data of the phase's transactions (bulk copies into shared memory) are visible."""

    name = "ptx.mbarrier_try_wait"
    MNEMONIC: ClassVar[str] = "mbarrier.try_wait"
    addr = operand_def(RegisterType)
    phase_parity = operand_def(RegisterType)
    result = result_def(PredType)

    def __init__(self, addr: SSAValue | Operation, phase_parity: SSAValue | Operation):
        props = self.modifier_properties({"parity": True, "space": "shared::cta", "type": "b64"})
        super().__init__(operands=[addr, phase_parity], result_types=[pred], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.addr, None)
        printer.print_string(", ")
        printer.print_operand(self.phase_parity)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        addr, _ = _parse_address(parser)
        parser.parse_punctuation(",")
        return [addr, parser.parse_unresolved_operand()], {}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"{name(self.result)}, [{name(self.addr)}], {name(self.phase_parity)}"

    def verify_modifiers(self) -> None:
        _check_target(self, "mbarrier.try_wait")
        self.verify_address("shared")

    def type_rules(self) -> Iterator[tuple[str, SSAValue, str, bool]]:
        yield "the phase parity", self.phase_parity, "u32", False


@instruction(Slot("dim", ("1d", "2d", "3d", "4d", "5d")), Slot("dst_space", ("shared::cluster",)),
             Slot("src_space", ("global",)), Slot("load_mode", ("tile",)),
             Slot("completion", ("mbarrier::complete_tx::bytes",)))  # fmt: skip
class CpAsyncBulkTensorOp(Instruction):
    """``cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%r1], [%rd1, {%r2, %r3}],
    [%r4];`` (PTX ISA 8.0 section 9.7.8.24.9; TMA): copy the box of a tensor map (at the generic address ``tmap``,
    64-byte aligned, made by ``cuTensorMapEncodeTiled``) whose first element has coordinates ``coords`` (innermost
    first, ``.s32``) into shared memory at ``dst``, swizzled as the map says; on completion the copied bytes count
    against the mbarrier's expected transaction bytes (``mbarrier.arrive.expect_tx``). Out-of-range elements read
    as zero."""

    name = "ptx.cp_async_bulk_tensor"
    MNEMONIC: ClassVar[str] = "cp.async.bulk.tensor"
    dst = operand_def(RegisterType)
    tmap = operand_def(RegisterType)
    coords = var_operand_def(RegisterType)
    mbar = operand_def(RegisterType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        dst: SSAValue | Operation,
        tmap: SSAValue | Operation,
        coords: Sequence[SSAValue | Operation],
        mbar: SSAValue | Operation,
    ):
        props = self.modifier_properties({"dim": f"{len(coords)}d", "dst_space": "shared::cluster",
                                          "src_space": "global", "load_mode": "tile",
                                          "completion": "mbarrier::complete_tx::bytes"})  # fmt: skip
        super().__init__(operands=[dst, tmap, [SSAValue.get(c) for c in coords], mbar], properties=props)

    def print_body(self, printer: Printer) -> None:
        _print_address(printer, self.dst, None)
        printer.print_string(", [")
        printer.print_operand(self.tmap)
        printer.print_string(", ")
        _print_group(printer, self.coords)
        printer.print_string("],")
        _print_address(printer, self.mbar, None)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        dst, _ = _parse_address(parser)
        parser.parse_punctuation(",")
        parser.parse_punctuation("[")
        tmap = parser.parse_unresolved_operand()
        parser.parse_punctuation(",")
        coords = _parse_group(parser)
        parser.parse_punctuation("]")
        parser.parse_punctuation(",")
        mbar, _ = _parse_address(parser)
        return [dst, tmap, coords, mbar], {}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return f"[{name(self.dst)}], [{name(self.tmap)}, {_braced(name, self.coords)}], [{name(self.mbar)}]"

    def verify_modifiers(self) -> None:
        _check_target(self, "cp.async.bulk.tensor")
        dims = int((self.mod("dim") or "0d")[0])
        _check_regs(self, "the coordinates", self.coords, dims, "s32")
        _check_shared_address(self, self.dst, "the shared destination")
        _check_shared_address(self, self.mbar, "the mbarrier address")
        if not compatible(kind_of(self.tmap), "b64"):
            raise self.fail(f"the tensor map address must be a 64-bit register, got .{kind_of(self.tmap)}")


@instruction(Slot("space", ("shared::cta", "shared::cluster", "global"), optional=True))
class FenceProxyAsyncOp(Instruction):
    """``fence.proxy.async.shared::cta;`` (PTX ISA 8.0 section 9.7.12.4): orders this thread's ordinary (generic
    proxy) memory accesses before later accesses by the async proxy (wgmma operand reads, bulk copies), and the
    reverse. Needed after ``st.shared``/``stmatrix`` of data that wgmma or TMA reads next, and after
    ``mbarrier.init`` before bulk copies complete on the barrier."""

    name = "ptx.fence_proxy_async"
    MNEMONIC: ClassVar[str] = "fence.proxy.async"

    def __init__(self, space: str | None = "shared::cta"):
        super().__init__(properties=self.modifier_properties({"space": space}))

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return ""

    def verify_modifiers(self) -> None:
        _check_target(self, "fence.proxy.async")


@instruction()
class WgmmaFenceOp(Instruction):
    """``wgmma.fence.sync.aligned;`` (PTX ISA 8.0 section 9.7.14.7.1): orders the warpgroup's register writes of
    accumulators (and A fragments) before the ``wgmma.mma_async`` that read them; issue it before the first one."""

    name = "ptx.wgmma_fence"
    MNEMONIC: ClassVar[str] = "wgmma.fence.sync.aligned"

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return ""

    def verify_modifiers(self) -> None:
        _check_target(self, "wgmma")


@instruction()
class WgmmaCommitGroupOp(Instruction):
    """``wgmma.commit_group.sync.aligned;`` (PTX ISA 8.0 section 9.7.14.7.2): close the group of the warpgroup's
    pending ``wgmma.mma_async`` operations."""

    name = "ptx.wgmma_commit_group"
    MNEMONIC: ClassVar[str] = "wgmma.commit_group.sync.aligned"

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return ""

    def verify_modifiers(self) -> None:
        _check_target(self, "wgmma")


@instruction()
class WgmmaWaitGroupOp(Instruction):
    """``wgmma.wait_group.sync.aligned 0;`` (PTX ISA 8.0 section 9.7.14.7.3): wait until at most ``pending`` of the
    warpgroup's committed wgmma groups are in flight; only then may their accumulators be read, and their
    shared-memory operands overwritten."""

    name = "ptx.wgmma_wait_group"
    MNEMONIC: ClassVar[str] = "wgmma.wait_group.sync.aligned"
    pending = prop_def(IntegerAttr[I64])

    def __init__(self, pending: int):
        super().__init__(properties={"pending": IntegerAttr(pending, i64)})

    def print_body(self, printer: Printer) -> None:
        printer.print_string(f" {self.pending.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"pending": IntegerAttr(parser.parse_integer(allow_boolean=False, allow_negative=False), i64)}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return str(self.pending.value.data)

    def verify_modifiers(self) -> None:
        _check_target(self, "wgmma")
        if not 0 <= self.pending.value.data <= 7:
            raise self.fail(f"the pending-group count must be in 0..7, got {self.pending.value.data}")


@instruction(_SYNC, _ALIGNED, Slot("shape", tuple(f"m64n{n}k{k}" for k in (16, 8) for n in WGMMA_N)),
             Slot("dtype", ("f32",)), Slot("atype", tuple(WGMMA_K)), Slot("btype", tuple(WGMMA_K)))  # fmt: skip
class WgmmaMmaAsyncOp(Instruction):
    """``wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%f1, ..., %f32}, %rd1, %rd2, %p1, 1, 1, 0, 0;`` (PTX
    ISA 8.0 section 9.7.14.5): the warpgroup (4 consecutive warps, the first a multiple of 4) computes
    D (64xN, f32) = A (64xK) @ B (KxN) + (scale_d ? D : 0), A and B read from shared memory through the matrix
    descriptors ``desc_a``/``desc_b`` (``.b64``, see ``wgmma_descriptor``), ``trans_a``/``trans_b`` 0 for K-major
    tiles, 1 for M/N-major (16-bit types only); ``scale_a``/``scale_b`` are 1 or -1. K is :data:`WGMMA_K` of the
    type: 16 for bf16/f16, 8 for ``.tf32`` (``m64nNk8.f32.tf32.tf32``: f32 bits in shared memory, read as tf32;
    its PTX takes no imm-trans operands). The N/2 accumulator registers ``acc`` of each thread are read and
    **written in place** (as PTX does), asynchronously: they hold D only after ``wgmma.commit_group`` and
    ``wgmma.wait_group``. sm_90a."""

    name = "ptx.wgmma_mma_async"
    MNEMONIC: ClassVar[str] = "wgmma.mma_async"
    acc = var_operand_def(RegisterType)
    desc_a = operand_def(RegisterType)
    desc_b = operand_def(RegisterType)
    scale_d = operand_def(PredType)
    scale_a = prop_def(IntegerAttr[I64])
    scale_b = prop_def(IntegerAttr[I64])
    trans_a = prop_def(IntegerAttr[I64])
    trans_b = prop_def(IntegerAttr[I64])

    IMMEDIATES: ClassVar[tuple[str, ...]] = ("scale_a", "scale_b", "trans_a", "trans_b")

    def __init__(
        self,
        n: int,
        type: str,
        acc: Sequence[SSAValue | Operation],
        desc_a: SSAValue | Operation,
        desc_b: SSAValue | Operation,
        scale_d: SSAValue | Operation,
        *,
        scale_a: int = 1,
        scale_b: int = 1,
        trans_a: int = 0,
        trans_b: int = 0,
    ):
        if type not in WGMMA_K:
            raise ValueError(f"wgmma.mma_async: inputs of {type} (expected one of {', '.join(WGMMA_K)})")
        props = self.modifier_properties({"sync": True, "aligned": True, "shape": f"m64n{n}k{WGMMA_K[type]}",
                                          "dtype": "f32", "atype": type, "btype": type})  # fmt: skip
        for key, value in zip(self.IMMEDIATES, (scale_a, scale_b, trans_a, trans_b), strict=True):
            props[key] = IntegerAttr(value, i64)
        super().__init__(operands=[[SSAValue.get(v) for v in acc], desc_a, desc_b, scale_d], properties=props)

    @property
    def n(self) -> int:
        return wgmma_shape_n(self.mod("shape"))

    def immediates(self) -> list[int]:
        return [cast(IntegerAttr, self.properties[k]).value.data for k in self.IMMEDIATES]

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        _print_group(printer, self.acc)
        for v in (self.desc_a, self.desc_b, self.scale_d):
            printer.print_string(", ")
            printer.print_operand(v)
        printer.print_string("".join(f", {x}" for x in self.immediates()))

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        groups: list[Group] = [_parse_group(parser)]
        for _ in range(3):
            parser.parse_punctuation(",")
            groups.append(parser.parse_unresolved_operand())
        props: dict[str, Attribute] = {}
        for key in cls.IMMEDIATES:
            parser.parse_punctuation(",")
            props[key] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
        return groups, props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        regs = ", ".join(name(v) for v in (self.desc_a, self.desc_b, self.scale_d))
        # .tf32 (and the 8-bit types) take no imm-trans-a/b operands: only imm-scale-a/b
        immediates = self.immediates() if self.mod("atype") in WGMMA_TYPES else self.immediates()[:2]
        return f"{_braced(name, self.acc)}, {regs}, " + ", ".join(str(x) for x in immediates)

    def verify_modifiers(self) -> None:
        _check_target(self, "wgmma")
        if self.mod("atype") != self.mod("btype"):
            raise self.fail(f"A and B must have one type, got .{self.mod('atype')} and .{self.mod('btype')}")
        _check_regs(self, "the accumulator", self.acc, self.n // 2, "f32")
        for role, v in (("descriptor A", self.desc_a), ("descriptor B", self.desc_b)):
            if not compatible(kind_of(v), "b64"):
                raise self.fail(f"{role} must be a 64-bit register, got .{kind_of(v)}")
        scale_a, scale_b, trans_a, trans_b = self.immediates()
        if scale_a not in (1, -1) or scale_b not in (1, -1):
            raise self.fail(f"imm-scale-a/b must be 1 or -1, got {scale_a}, {scale_b}")
        if trans_a not in (0, 1) or trans_b not in (0, 1):
            raise self.fail(f"imm-trans-a/b must be 0 or 1, got {trans_a}, {trans_b}")
        atype = self.mod("atype") or ""
        if not (self.mod("shape") or "").endswith(f"k{WGMMA_K.get(atype, 0)}"):
            raise self.fail(f".{atype} takes the shape m64nNk{WGMMA_K.get(atype)}, got .{self.mod('shape')}")
        if atype == "tf32" and (trans_a or trans_b):
            raise self.fail(".tf32 operands are K-major only: imm-trans-a/b must be 0")


@instruction(_SYNC, _ALIGNED, Slot("shape", tuple(f"m64n{n}k16" for n in WGMMA_N)), Slot("dtype", ("f32",)),
             Slot("atype", WGMMA_TYPES), Slot("btype", WGMMA_TYPES))  # fmt: skip
class WgmmaMmaAsyncRsOp(Instruction):
    """``wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%f1, ..., %f32}, {%r1, %r2, %r3, %r4}, %rd2, %p1, 1,
    1, 1;`` (PTX ISA 8.0 section 9.7.14.5, the form with A in registers; CUTLASS's "RS" wgmma): as
    :class:`WgmmaMmaAsyncOp`, but A (64x16) comes from the four ``.b32`` registers ``a`` of each thread, two 16-bit
    elements each (low half first), in the layout of section 9.7.14.4.1: warp w of the warpgroup holds rows
    16w..16w+15 as ``mma.m16n8k16``'s A fragment (lane 4g + t: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..2t+1],
    a2 = A[g][2t+8..2t+9], a3 = A[g+8][2t+8..2t+9]). There is no imm-trans-a; ``trans_b`` as for the descriptor
    form. The A registers must not change until the wgmma completes (``wgmma.wait_group``). sm_90a."""

    name = "ptx.wgmma_mma_async_rs"
    MNEMONIC: ClassVar[str] = "wgmma.mma_async"
    acc = var_operand_def(RegisterType)
    a0 = operand_def(RegisterType)
    a1 = operand_def(RegisterType)
    a2 = operand_def(RegisterType)
    a3 = operand_def(RegisterType)
    desc_b = operand_def(RegisterType)
    scale_d = operand_def(PredType)
    scale_a = prop_def(IntegerAttr[I64])
    scale_b = prop_def(IntegerAttr[I64])
    trans_b = prop_def(IntegerAttr[I64])

    IMMEDIATES: ClassVar[tuple[str, ...]] = ("scale_a", "scale_b", "trans_b")

    def __init__(
        self,
        n: int,
        type: str,
        acc: Sequence[SSAValue | Operation],
        a: Sequence[SSAValue | Operation],
        desc_b: SSAValue | Operation,
        scale_d: SSAValue | Operation,
        *,
        scale_a: int = 1,
        scale_b: int = 1,
        trans_b: int = 0,
    ):
        props = self.modifier_properties({"sync": True, "aligned": True, "shape": f"m64n{n}k16", "dtype": "f32",
                                          "atype": type, "btype": type})  # fmt: skip
        for key, value in zip(self.IMMEDIATES, (scale_a, scale_b, trans_b), strict=True):
            props[key] = IntegerAttr(value, i64)
        if len(a) != 4:
            raise ValueError(f"wgmma's A fragment is 4 registers, got {len(a)}")
        operands = [[SSAValue.get(v) for v in acc], *(SSAValue.get(v) for v in a), desc_b, scale_d]
        super().__init__(operands=operands, properties=props)

    @property
    def n(self) -> int:
        return wgmma_shape_n(self.mod("shape"))

    @property
    def a(self) -> tuple[SSAValue, ...]:
        return (self.a0, self.a1, self.a2, self.a3)

    def immediates(self) -> list[int]:
        return [cast(IntegerAttr, self.properties[k]).value.data for k in self.IMMEDIATES]

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        _print_group(printer, self.acc)
        printer.print_string(", ")
        _print_group(printer, self.a)
        for v in (self.desc_b, self.scale_d):
            printer.print_string(", ")
            printer.print_operand(v)
        printer.print_string("".join(f", {x}" for x in self.immediates()))

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        groups: list[Group] = [_parse_group(parser)]
        parser.parse_punctuation(",")
        a = _parse_group(parser)
        if len(a) != 4:
            parser.raise_error(f"{cls.name}: the A fragment is 4 registers, got {len(a)}")
        groups.extend(a)
        for _ in range(2):
            parser.parse_punctuation(",")
            groups.append(parser.parse_unresolved_operand())
        props: dict[str, Attribute] = {}
        for key in cls.IMMEDIATES:
            parser.parse_punctuation(",")
            props[key] = IntegerAttr(parser.parse_integer(allow_boolean=False), i64)
        return groups, props

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        regs = ", ".join(name(v) for v in (self.desc_b, self.scale_d))
        return f"{_braced(name, self.acc)}, {_braced(name, self.a)}, {regs}, " + ", ".join(
            str(x) for x in self.immediates()
        )

    def verify_modifiers(self) -> None:
        _check_target(self, "wgmma")
        if self.mod("atype") != self.mod("btype"):
            raise self.fail(f"A and B must have one type, got .{self.mod('atype')} and .{self.mod('btype')}")
        _check_regs(self, "the accumulator", self.acc, self.n // 2, "f32")
        _check_regs(self, "the A fragment", self.a, 4, "b32")
        if not compatible(kind_of(self.desc_b), "b64"):
            raise self.fail(f"descriptor B must be a 64-bit register, got .{kind_of(self.desc_b)}")
        scale_a, scale_b, trans_b = self.immediates()
        if scale_a not in (1, -1) or scale_b not in (1, -1):
            raise self.fail(f"imm-scale-a/b must be 1 or -1, got {scale_a}, {scale_b}")
        if trans_b not in (0, 1):
            raise self.fail(f"imm-trans-b must be 0 or 1, got {trans_b}")


@instruction(Slot("action", ("inc", "dec")), _SYNC, _ALIGNED, _type(("u32",)))
class SetmaxnregOp(Instruction):
    """``setmaxnreg.inc.sync.aligned.u32 240;`` (PTX ISA 8.0 section 9.7.17.1, sm_90a): the warpgroup raises
    (``inc``) or lowers (``dec``) its per-thread register limit to ``count`` (24..256, a multiple of 8), as
    warp-specialised kernels do (producers give registers to consumers). ptxas honours it only in a kernel with a
    register cap at entry (``.maxnreg`` / ``.maxntid`` with one block per SM)."""

    name = "ptx.setmaxnreg"
    MNEMONIC: ClassVar[str] = "setmaxnreg"
    count = prop_def(IntegerAttr[I64])

    def __init__(self, action: str, count: int):
        props = self.modifier_properties({"action": action, "sync": True, "aligned": True, "type": "u32"})
        props["count"] = IntegerAttr(count, i64)
        super().__init__(properties=props)

    def print_body(self, printer: Printer) -> None:
        printer.print_string(f" {self.count.value.data}")

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"count": IntegerAttr(parser.parse_integer(allow_boolean=False), i64)}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return str(self.count.value.data)

    def verify_modifiers(self) -> None:
        _check_target(self, "setmaxnreg")
        count = self.count.value.data
        if not 24 <= count <= 256 or count % 8:
            raise self.fail(f"the register count must be a multiple of 8 in 24..256, got {count}")


# ---------------------------------------------------------------------------------------------------------------
# Control flow (PTX ISA 8.0 section 9.7.11, "Control Flow Instructions")


@irdl_op_definition
class LabelOp(IRDLOperation):
    """A label pseudo-op (PTX ISA 8.0 section 4.4, "Identifiers"; labels are branch targets):
    ``ptx.label "LOOP"`` prints ``LOOP:``."""

    name = "ptx.label"
    label = prop_def(StringAttr)
    assembly_format = "$label attr-dict"

    def __init__(self, label: str):
        super().__init__(properties={"label": StringAttr(label)})

    def verify_(self) -> None:
        check_identifier(self.name, "label", self.label.data)


@instruction(Slot("uni", ("uni",), optional=True))
class BraOp(Instruction):
    """``bra LABEL;`` / ``@%p bra LABEL;`` / ``@!%p bra LABEL;`` (PTX ISA 8.0 section 9.7.11):
    ``ptx.bra "LOOP" if %p : (!ptx.pred) -> ()``. The target must be a ``ptx.label`` of the same function."""

    name = "ptx.bra"
    MNEMONIC: ClassVar[str] = "bra"
    target = prop_def(StringAttr)
    guard = opt_operand_def(PredType)
    negate = opt_prop_def(UnitAttr)

    def __init__(
        self, target: str, guard: SSAValue | Operation | None = None, *, negate: bool = False, uni: bool = False
    ):
        g = SSAValue.get(guard) if guard is not None else None
        props = self.modifier_properties({"uni": uni})
        props["target"] = StringAttr(target)
        props.update(self.guard_properties(g, negate))
        super().__init__(operands=[[g] if g is not None else []], properties=props)

    def print_body(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_string_literal(self.target.data)

    @classmethod
    def parse_body(cls, parser: Parser) -> tuple[list[Group], dict[str, Attribute]]:
        return [], {"target": StringAttr(parser.parse_str_literal(" (the target label)"))}

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return self.target.data

    # Its target must be a label of its function: ``FuncOp.verify_`` checks every branch at once (a check here would
    # collect the function's labels once per branch).


@irdl_op_definition
class RetOp(Instruction):
    """``ret;`` (PTX ISA 8.0 section 9.7.11); optional guard ``if %p``."""

    name = "ptx.ret"
    MNEMONIC: ClassVar[str] = "ret"
    guard = opt_operand_def(PredType)
    negate = opt_prop_def(UnitAttr)

    def __init__(self, guard: SSAValue | Operation | None = None, *, negate: bool = False):
        g = SSAValue.get(guard) if guard is not None else None
        super().__init__(operands=[[g] if g is not None else []], properties=self.guard_properties(g, negate))

    def ptx_args(self, name: Callable[[SSAValue], str]) -> str:
        return ""


# ---------------------------------------------------------------------------------------------------------------
# Module structure: module, .file table, functions, shared memory (PTX ISA 8.0 chapter 11, "Directives")


@irdl_op_definition
class SharedOp(IRDLOperation):
    """A shared-memory buffer (PTX ISA 8.0 section 5.1, "State Spaces": ``.shared``): ``ptx.shared @tile[4096] align
    16`` prints ``.shared .align 16 .b8 tile[4096];``; without a size (``ptx.shared @smem[] align 16``) it is the
    dynamic buffer ``.extern .shared .align 16 .b8 smem[];`` sized at launch (module level only; ptxas rejects
    ``.extern`` in a function). Sized buffers may be at module level or in a function."""

    name = "ptx.shared"
    sym_name = prop_def(SymbolNameConstraint())
    size = opt_prop_def(IntegerAttr[I64])
    alignment = prop_def(IntegerAttr[I64])
    traits = traits_def(SymbolOpInterface())

    def __init__(self, name: str, size: int | None, align: int = 16):
        props: dict[str, Attribute] = {"sym_name": StringAttr(name), "alignment": IntegerAttr(align, i64)}
        if size is not None:
            props["size"] = IntegerAttr(size, i64)
        super().__init__(properties=props)

    @property
    def symbol(self) -> str:
        return self.sym_name.data

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string(f"[{self.size.value.data}]" if self.size is not None else "[]")
        printer.print_string(f" align {self.alignment.value.data}")
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> SharedOp:
        name = parser.parse_symbol_name().data
        parser.parse_punctuation("[")
        size = None if parser.parse_optional_punctuation("]") is not None else parser.parse_integer()
        if size is not None:
            parser.parse_punctuation("]")
        parser.parse_keyword("align")
        op = cls(name, size, parser.parse_integer())
        op.attributes.update(parser.parse_optional_attr_dict())
        return op

    def ptx_declaration(self) -> str:
        align = self.alignment.value.data
        if self.size is None:
            return f".extern .shared .align {align} .b8 {self.symbol}[];"
        return f".shared .align {align} .b8 {self.symbol}[{self.size.value.data}];"

    def verify_(self) -> None:
        check_identifier(self.name, "variable", self.symbol)
        align = self.alignment.value.data
        if align <= 0 or align & (align - 1):
            raise VerifyException(f"ptx.shared: alignment {align} is not a power of two")
        if self.size is not None and self.size.value.data <= 0:
            raise VerifyException(f"ptx.shared: size {self.size.value.data} must be positive")
        if self.size is None and isinstance(self.parent_op(), FuncOp):
            raise VerifyException(
                f"ptx.shared: the dynamic buffer @{self.symbol} (no size) must be declared at module level"
            )


def find_shared(op: Operation, name: str) -> SharedOp | None:
    """The ``ptx.shared`` named ``name`` visible from ``op``: in its function, else at module level."""
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, FuncOp | ModuleOp):
        parent = parent.parent_op()
    scopes: list[Operation] = []
    if isinstance(parent, FuncOp):
        scopes.append(parent)
        parent = parent.parent_op()
    if isinstance(parent, ModuleOp):
        scopes.append(parent)
    for scope in scopes:
        for candidate in scope.regions[0].block.ops:
            if isinstance(candidate, SharedOp) and candidate.symbol == name:
                return candidate
    return None


@irdl_op_definition
class ModuleOp(IRDLOperation):
    """A PTX module: ``.version`` / ``.target`` / ``.address_size`` (PTX ISA 8.0 section 11.1) holding
    ``ptx.file`` entries, module-level ``ptx.shared`` buffers and ``ptx.func`` kernels:
    ``ptx.module version "8.0" target "sm_90" address_size 64 { ... }``. ``sm_90a`` needs version 8.0 or later."""

    name = "ptx.module"
    version = prop_def(StringAttr)
    target = prop_def(StringAttr)
    address_size = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(IsolatedFromAbove(), NoTerminator(), SymbolTable())

    def __init__(
        self,
        target: str = "sm_90",
        version: str = "8.0",
        address_size: int = 64,
        ops: Iterable[Operation] = (),
    ):
        super().__init__(
            properties={
                "version": StringAttr(version),
                "target": StringAttr(target),
                "address_size": IntegerAttr(address_size, i64),
            },
            regions=[Region(Block(list(ops)))],
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(" version ")
        printer.print_string_literal(self.version.data)
        printer.print_string(" target ")
        printer.print_string_literal(self.target.data)
        printer.print_string(f" address_size {self.address_size.value.data}")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_empty_block=False)

    @classmethod
    def parse(cls, parser: Parser) -> ModuleOp:
        parser.parse_keyword("version")
        version = parser.parse_str_literal()
        parser.parse_keyword("target")
        target = parser.parse_str_literal()
        parser.parse_keyword("address_size")
        address_size = parser.parse_integer(allow_boolean=False)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region()
        if not region.blocks:
            region.add_block(Block())
        props: dict[str, Attribute] = {
            "version": StringAttr(version),
            "target": StringAttr(target),
            "address_size": IntegerAttr(address_size, i64),
        }
        op = cls.build(properties=props, regions=[region])
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op

    def add_op(self, op: Operation) -> None:
        """Append a ``ptx.func``, ``ptx.file`` or ``ptx.shared`` to the module."""
        self.body.block.add_op(op)

    def files(self) -> dict[str, int]:
        """The ``.file`` table: path -> index."""
        return {op.path.data: op.index.value.data for op in self.body.block.ops if isinstance(op, FileOp)}

    def funcs(self) -> list[FuncOp]:
        return [op for op in self.body.block.ops if isinstance(op, FuncOp)]

    def verify(self, verify_nested_ops: bool = True) -> None:
        """xDSL's verification, with the instructions of all kernels verified once per signature
        (``Instruction.verify``)."""
        with _signature_scope():
            super().verify(verify_nested_ops)

    def verify_(self) -> None:
        if not re.fullmatch(r"\d+\.\d+", self.version.data):
            raise VerifyException(f"ptx.module: version '{self.version.data}' is not of the form 8.0")
        match = re.fullmatch(r"sm_(\d+)(a?)", self.target.data)
        if match is None:
            raise VerifyException(f"ptx.module: target '{self.target.data}' is not of the form sm_90 or sm_90a")
        major, minor = (int(x) for x in self.version.data.split("."))
        if match.group(2) and (major, minor) < (8, 0):
            raise VerifyException(f"ptx.module: target {self.target.data} needs PTX version 8.0 or later")
        if self.address_size.value.data not in (32, 64):
            raise VerifyException(f"ptx.module: address_size must be 32 or 64, got {self.address_size.value.data}")
        indices: set[int] = set()
        for op in self.body.block.ops:
            if not isinstance(op, FuncOp | FileOp | SharedOp):
                raise VerifyException(f"ptx.module: '{op.name}' cannot appear at module level")
            if isinstance(op, FileOp):
                if op.index.value.data in indices:
                    raise VerifyException(f"ptx.module: .file index {op.index.value.data} is used twice")
                indices.add(op.index.value.data)


@irdl_op_definition
class FileOp(IRDLOperation):
    """An entry of the module's ``.file`` table (PTX ISA 8.0 section 11.5, "Debugging Directives"):
    ``ptx.file 1 "model.py"``."""

    name = "ptx.file"
    index = prop_def(IntegerAttr[I64])
    path = prop_def(StringAttr)
    assembly_format = "$index $path attr-dict"
    traits = traits_def(HasParent(ModuleOp))

    def __init__(self, index: int, path: str):
        super().__init__(properties={"index": IntegerAttr(index, i64), "path": StringAttr(path)})

    def verify_(self) -> None:
        if self.index.value.data < 1:
            raise VerifyException(f"ptx.file: index {self.index.value.data} must be positive")


@irdl_op_definition
class FuncOp(IRDLOperation):
    """A kernel: ``.visible .entry name(.param .u64 name_param_0, ...)`` (PTX ISA 8.0 section 11.3), with an
    optional ``.maxntid`` (section 11.4, performance-tuning directives).

    ``ptx.func @k(%a: !ptx.param<u64>, %n: !ptx.param<u32>) maxntid = [256, 1, 1] { ... }``. The body is one block
    of instructions, labels and ``ptx.shared`` declarations, ending in ``ptx.ret`` or an unconditional ``ptx.bra``.
    """

    name = "ptx.func"
    sym_name = prop_def(SymbolNameConstraint())
    maxntid = opt_prop_def(DenseArrayBase.constr(i64))
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), IsolatedFromAbove(), NoTerminator(), HasParent(ModuleOp))

    def __init__(self, name: str, params: Sequence[str], maxntid: Sequence[int] | None = None):
        """``params`` are the PTX types of the kernel parameters (``"u64"`` for pointers, ``"u32"``, ``"f32"``)."""
        block = Block(arg_types=[ParamType(p) for p in params])
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if maxntid is not None:
            props["maxntid"] = DenseArrayBase.from_list(i64, list(maxntid))
        super().__init__(properties=props, regions=[Region(block)])

    @property
    def args(self) -> tuple[SSAValue, ...]:
        """The kernel parameters (read them with ``ptx.LdParamOp``)."""
        return tuple(self.body.block.args)

    def param_name(self, index: int) -> str:
        """The PTX name of parameter ``index``: ``<kernel>_param_<index>`` (nvcc's convention)."""
        return f"{self.sym_name.data}_param_{index}"

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string("(")
        printer.print_list(self.body.block.args, printer.print_block_argument)
        printer.print_string(")")
        if self.maxntid is not None:
            printer.print_string(" maxntid = [" + ", ".join(str(int(v)) for v in self.maxntid.get_values()) + "]")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False, print_empty_block=False)

    @classmethod
    def parse(cls, parser: Parser) -> FuncOp:
        name = parser.parse_symbol_name().data

        def parse_param() -> Parser.Argument:
            arg = parser.parse_argument()
            arg.location = parser.parse_optional_location()  # with --print-debuginfo
            return arg

        args = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parse_param)
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if parser.parse_optional_keyword("maxntid") is not None:
            parser.parse_punctuation("=")
            values = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
            props["maxntid"] = DenseArrayBase.from_list(i64, values)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region(args)
        op = cls.build(properties=props, regions=[region])
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op

    def verify(self, verify_nested_ops: bool = True) -> None:
        """xDSL's verification, with the instructions of the body verified once per signature
        (``Instruction.verify``)."""
        with _signature_scope():
            super().verify(verify_nested_ops)

    def verify_(self) -> None:
        check_identifier(self.name, "function", self.sym_name.data)
        for i, arg in enumerate(self.body.block.args):
            if not isinstance(arg.type, ParamType):
                raise VerifyException(f"ptx.func: parameter {i} must have a !ptx.param<...> type, got {arg.type}")
        if self.maxntid is not None:
            dims = [int(v) for v in self.maxntid.get_values()]
            if not 1 <= len(dims) <= 3 or min(dims) < 1:
                raise VerifyException(f"ptx.func: maxntid needs 1 to 3 positive sizes, got {dims}")
        seen: set[str] = set()
        last: Operation | None = None
        for op in self.body.block.ops:
            if not isinstance(op, Instruction | LabelOp | SharedOp):
                raise VerifyException(f"ptx.func: '{op.name}' is not a PTX instruction")
            if isinstance(op, LabelOp):
                if op.label.data in seen:
                    raise VerifyException(f"ptx.func: label '{op.label.data}' is defined twice")
                seen.add(op.label.data)
            last = op
        for op in self.body.block.ops:
            if isinstance(op, BraOp) and op.target.data not in seen:
                raise op.fail(f"branch target '{op.target.data}' is not a label of @{self.sym_name.data}")
        if not (isinstance(last, RetOp) and last.guard is None) and not (
            isinstance(last, BraOp) and last.guard is None
        ):
            raise VerifyException(f"ptx.func: @{self.sym_name.data} must end with an unconditional ptx.ret or ptx.bra")


def loc(file: str, line: int, column: int = 0) -> FileLineColLoc:
    """A ``FileLineColLoc`` to put on an op (``op.location = ptx.loc("model.py", 12)``); the printer turns it into
    ``.loc``."""
    return FileLineColLoc(StringAttr(file), IntAttr(line), IntAttr(column))


PTX = Dialect(
    "ptx",
    [
        ModuleOp,
        FileOp,
        FuncOp,
        SharedOp,
        LabelOp,
        CpAsyncOp,
        CpAsyncCommitGroupOp,
        CpAsyncWaitGroupOp,
        CpAsyncBulkTensorOp,
        LdmatrixOp,
        StmatrixOp,
        MmaOp,
        MbarrierInitOp,
        MbarrierArriveOp,
        MbarrierTryWaitOp,
        FenceProxyAsyncOp,
        WgmmaFenceOp,
        WgmmaCommitGroupOp,
        WgmmaWaitGroupOp,
        WgmmaMmaAsyncOp,
        WgmmaMmaAsyncRsOp,
        SetmaxnregOp,
        AddOp,
        SubOp,
        MulOp,
        MadOp,
        FmaOp,
        DivOp,
        RemOp,
        MinOp,
        MaxOp,
        NegOp,
        AbsOp,
        Ex2Op,
        Lg2Op,
        SinOp,
        CosOp,
        TanhOp,
        RcpOp,
        SqrtOp,
        RsqrtOp,
        AndOp,
        OrOp,
        XorOp,
        NotOp,
        ShlOp,
        ShrOp,
        SetpOp,
        SelpOp,
        MovOp,
        AssignOp,
        SregOp,
        SharedAddrOp,
        LdParamOp,
        ParamAddrOp,
        CvtaOp,
        CvtOp,
        CvtPairOp,
        LdOp,
        StOp,
        ShflOp,
        BarSyncOp,
        AtomOp,
        RedOp,
        BraOp,
        RetOp,
    ],
    [
        PredType,
        B16Type,
        U16Type,
        S16Type,
        B32Type,
        U32Type,
        S32Type,
        B64Type,
        U64Type,
        S64Type,
        F32Type,
        F64Type,
        ParamType,
    ],
)
