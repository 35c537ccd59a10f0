"""``gpu_ext``: what picograd needs of MLIR's ``gpu`` dialect that xDSL 0.74's ``gpu`` dialect lacks.

Two ops, used by ``pg-to-gpu`` inside ``gpu.func`` kernels and lowered by ``pg-to-ptx``:

``gpu_ext.shuffle`` (MLIR's ``gpu.shuffle``): exchange a value between the lanes of a warp. ``xor`` (a butterfly:
lane ``l`` reads lane ``l ^ offset``), ``down`` (lane ``l`` reads ``l + offset``), ``up`` (``l - offset``) and
``idx`` (lane ``offset``), over the whole warp of 32 lanes, which must all execute it (it is PTX's
``shfl.sync ... 0xffffffff``, PTX ISA 8.0 section 9.7.8.6). Any 1-, 32- or 64-bit scalar (64-bit values move as two
32-bit halves)::

    %y = gpu_ext.shuffle xor %x, 16 : f32

``gpu_ext.workgroup_alloc`` (MLIR's workgroup attributions of ``gpu.func``): a statically sized buffer in the shared
memory of the thread block, visible to all its threads, in memory space 3 (``#gpu.address_space<workgroup>``, the
NVVM address space of ``.shared``). Each op is its own buffer, live for the whole kernel; it lowers to a
``.shared`` declaration of the kernel (PTX ISA 8.0 section 5.1.5)::

    %s = gpu_ext.workgroup_alloc : memref<8xf32, 3 : i64>

Kernel outlining (MLIR's ``gpu-kernel-outlining``) and the mapping of parallel loops to the grid
(``convert-parallel-loops-to-gpu``) are not ops: ``pg-to-gpu`` does both.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects import gpu
from xdsl.dialects.builtin import (
    I64,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, prop_def, result_def
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

WORKGROUP = 3
"""The memory space of workgroup (shared) memory: NVVM's address space 3."""

WARP_SIZE = 32


def shuffle_width(t: Attribute) -> int | None:
    """Bits of a value that ``gpu_ext.shuffle`` can move (1, 32 or 64), or None."""
    if isinstance(t, Float32Type):
        return 32
    if isinstance(t, Float64Type | IndexType):
        return 64
    if isinstance(t, IntegerType) and t.width.data in (1, 32, 64):
        return t.width.data
    return None


@irdl_op_definition
class ShuffleOp(IRDLOperation):
    """``%y = gpu_ext.shuffle <mode> %x, <offset> : <type>`` (see the module docstring)."""

    name = "gpu_ext.shuffle"
    MODES: ClassVar[tuple[str, ...]] = ("xor", "down", "up", "idx")

    value = operand_def()
    mode = prop_def(StringAttr)
    offset = prop_def(IntegerAttr[I64])
    result = result_def()

    def __init__(self, value: SSAValue | Operation, mode: str, offset: int):
        value = SSAValue.get(value)
        super().__init__(
            operands=[value],
            result_types=[value.type],
            properties={"mode": StringAttr(mode), "offset": IntegerAttr(offset, i64)},
        )

    def print(self, printer: Printer) -> None:
        printer.print_string(f" {self.mode.data} ")
        printer.print_operand(self.value)
        printer.print_string(f", {self.offset.value.data}")
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.value.type)

    @classmethod
    def parse(cls, parser: Parser) -> ShuffleOp:
        pos = parser.pos
        mode = parser.parse_identifier(" (the shuffle mode: xor, down, up or idx)")
        if mode not in cls.MODES:
            parser.raise_error(f"gpu_ext.shuffle: unknown mode '{mode}', expected one of {cls.MODES}", pos)
        operand = parser.parse_unresolved_operand()
        parser.parse_punctuation(",")
        offset = parser.parse_integer(allow_boolean=False, allow_negative=False)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        t = parser.parse_type()
        op = cls(parser.resolve_operand(operand, t), mode, offset)
        op.attributes.update(attrs)
        return op

    def verify_(self) -> None:
        if self.mode.data not in self.MODES:
            raise VerifyException(f"gpu_ext.shuffle: unknown mode '{self.mode.data}', expected one of {self.MODES}")
        if not 0 <= self.offset.value.data < WARP_SIZE:
            raise VerifyException(f"gpu_ext.shuffle: offset {self.offset.value.data} is out of range 0..31")
        if shuffle_width(self.value.type) is None:
            raise VerifyException(
                f"gpu_ext.shuffle: cannot shuffle a value of type {self.value.type} (f32, f64, index, i1, i32, i64)"
            )
        if self.result.type != self.value.type:
            raise VerifyException("gpu_ext.shuffle: the result type must be the operand type")
        _check_in_kernel(self)


@irdl_op_definition
class WorkgroupAllocOp(IRDLOperation):
    """``%s = gpu_ext.workgroup_alloc : memref<Nxf32, 3 : i64>`` (see the module docstring)."""

    name = "gpu_ext.workgroup_alloc"
    result = result_def(MemRefType)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, element: Attribute, shape: list[int]):
        super().__init__(result_types=[MemRefType(element, shape, memory_space=IntegerAttr(WORKGROUP, i64))])

    @property
    def memref_type(self) -> MemRefType:
        t = self.result.type
        assert isinstance(t, MemRefType)
        return t

    def verify_(self) -> None:
        t = self.memref_type
        if any(d < 0 for d in t.get_shape()):
            raise VerifyException("gpu_ext.workgroup_alloc: the buffer needs a static shape")
        space = t.memory_space
        if not (isinstance(space, IntegerAttr) and space.value.data == WORKGROUP):
            raise VerifyException(
                f"gpu_ext.workgroup_alloc: the buffer must be in memory space {WORKGROUP} (workgroup), got {space}"
            )
        _check_in_kernel(self)


def _check_in_kernel(op: Operation) -> None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, gpu.FuncOp):
        parent = parent.parent_op()
    if parent is None and op.parent_op() is not None:
        raise VerifyException(f"{op.name}: must be inside a gpu.func")


def is_workgroup(t: Attribute) -> bool:
    """Whether ``t`` is a memref in workgroup (shared) memory."""
    return (
        isinstance(t, MemRefType) and isinstance(t.memory_space, IntegerAttr) and t.memory_space.value.data == WORKGROUP
    )


GPU_EXT = Dialect("gpu_ext", [ShuffleOp, WorkgroupAllocOp], [])
