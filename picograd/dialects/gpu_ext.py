"""``gpu_ext``: what picograd needs of MLIR's ``gpu`` dialect that xDSL 0.74's ``gpu`` dialect lacks.

Two ops used by ``pg-to-gpu`` inside ``gpu.func`` kernels and lowered by ``pg-to-ptx``:

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

Vector memory access and asynchronous copies (what MLIR spells with ``vector.load``/``vector.store`` and
``nvgpu.device_async_copy``/``device_async_create_group``/``device_async_wait``), used by the matmul schedules of
``pg-matmul-schedule``:

``gpu_ext.vector_load`` / ``gpu_ext.vector_store``: ``n`` (2 or 4) consecutive elements of the innermost dimension,
starting at the given indices, in one access of ``n * element`` bytes (``ld.global.v4.f32``, PTX ISA 8.0 section
9.7.8.8); the address must be a multiple of that size. The values are separate scalars, not a vector type::

    %a, %b, %c, %d = gpu_ext.vector_load %buf[%i, %j] : memref<64x64xf32> -> f32, f32, f32, f32
    gpu_ext.vector_store (%a, %b, %c, %d : f32, f32, f32, f32), %buf[%i, %j] : memref<64x64xf32>

``gpu_ext.async_copy``: copy ``elements`` consecutive elements (4, 8 or 16 bytes in all) from a global buffer into
a workgroup buffer without going through registers (``cp.async.ca.shared.global``, PTX ISA 8.0 section 9.7.8.25,
sm_80+). Only the first ``valid`` elements are read; the rest of the destination is filled with zeros, which is
how edge tiles read past the end of a matrix. Copies are grouped with ``gpu_ext.async_commit``;
``gpu_ext.async_wait pending N`` waits until at most ``N`` of the thread's committed groups are still in flight
(then a ``gpu.barrier`` makes the data visible to the other threads)::

    gpu_ext.async_copy %a[%i, %k], %tile[%s, %r, %c], 4, %valid : memref<256x256xf32>, memref<2x16x128xf32, 3 : i64>
    gpu_ext.async_commit
    gpu_ext.async_wait pending 1

These ops are allowed inside a ``gpu.func`` or a ``gpu.launch``.

``gpu_ext.round_tf32``: an f32's bits rounded to tf32 (``cvt.rn.tf32.f32``; ``cvt.rna`` before sm_90), for the
tf32 fragments of ``gpu_ext.mma_sync``.

``gpu_ext.pack_half``: two f32 rounded to bf16 (or f16), to nearest even, packed into an ``i32``, the first in the
low half (``cvt.rn.bf16x2.f32``, one instruction, sm_80+): the 16-bit A fragments of ``gpu_ext.mma_sync`` made from
f32 accumulators.

Kernel outlining (MLIR's ``gpu-kernel-outlining``) and the mapping of parallel loops to the grid
(``convert-parallel-loops-to-gpu``) are not ops: ``pg-to-gpu`` does both.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects import gpu
from xdsl.dialects.builtin import (
    I64,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    UnitAttr,
    f32,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    var_operand_def,
    var_result_def,
)
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
    while parent is not None and not isinstance(parent, gpu.FuncOp | gpu.LaunchOp):
        parent = parent.parent_op()
    if parent is None and op.parent_op() is not None:
        raise VerifyException(f"{op.name}: must be inside a gpu.func or gpu.launch")


def _check_access(op: Operation, base: SSAValue, indices: int, elements: int, element_types: list[Attribute]) -> None:
    t = base.type
    assert isinstance(t, MemRefType)
    shape = t.get_shape()
    if indices != len(shape):
        raise VerifyException(f"{op.name}: {indices} indices for a rank-{len(shape)} buffer")
    if any(d < 0 for d in shape):
        raise VerifyException(f"{op.name}: the buffer needs a static shape")
    if shape and shape[-1] % elements:
        raise VerifyException(
            f"{op.name}: {elements} elements do not divide the innermost dimension {shape[-1]} (accesses must not "
            "cross a row)"
        )
    for et in element_types:
        if et != t.get_element_type():
            raise VerifyException(f"{op.name}: value type {et} is not the element type {t.get_element_type()}")
    if elements * _element_bytes(t.get_element_type()) > 16:
        raise VerifyException(
            f"{op.name}: {elements} x {t.get_element_type()} is more than 16 bytes (the widest access on sm_90)"
        )


@irdl_op_definition
class VectorLoadOp(IRDLOperation):
    """``%a, %b, %c, %d = gpu_ext.vector_load %buf[%i, %j] : memref<..xf32> -> f32, f32, f32, f32`` (see the module
    docstring)."""

    name = "gpu_ext.vector_load"
    base = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    values = var_result_def()
    assembly_format = "$base `[` $indices `]` attr-dict `:` type($base) `->` type($values)"

    def __init__(self, base: SSAValue, indices: list[SSAValue], count: int):
        t = base.type
        assert isinstance(t, MemRefType)
        super().__init__(operands=[base, indices], result_types=[[t.get_element_type()] * count])

    def verify_(self) -> None:
        if len(self.values) not in (2, 4):
            raise VerifyException(f"gpu_ext.vector_load: loads 2 or 4 elements, not {len(self.values)}")
        _check_access(self, self.base, len(self.indices), len(self.values), [v.type for v in self.values])
        _check_in_kernel(self)


@irdl_op_definition
class VectorStoreOp(IRDLOperation):
    """``gpu_ext.vector_store (%a, %b : f32, f32), %buf[%i, %j] : memref<..xf32>`` (see the module docstring)."""

    name = "gpu_ext.vector_store"
    values = var_operand_def()
    base = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = "`(` $values `:` type($values) `)` `,` $base `[` $indices `]` attr-dict `:` type($base)"

    def __init__(self, values: list[SSAValue], base: SSAValue, indices: list[SSAValue]):
        super().__init__(operands=[values, base, indices])

    def verify_(self) -> None:
        if len(self.values) not in (2, 4):
            raise VerifyException(f"gpu_ext.vector_store: stores 2 or 4 elements, not {len(self.values)}")
        _check_access(self, self.base, len(self.indices), len(self.values), [v.type for v in self.values])
        _check_in_kernel(self)


@irdl_op_definition
class AsyncCopyOp(IRDLOperation):
    """``gpu_ext.async_copy %src[...], %dst[...], N, %valid : memref<..>, memref<.., 3 : i64>`` (see the module
    docstring)."""

    name = "gpu_ext.async_copy"
    src = operand_def(MemRefType)
    src_indices = var_operand_def(IndexType)
    dst = operand_def(MemRefType)
    dst_indices = var_operand_def(IndexType)
    valid = operand_def(IndexType)
    elements = prop_def(IntegerAttr[I64])
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$src `[` $src_indices `]` `,` $dst `[` $dst_indices `]` `,` $elements `,` $valid attr-dict "
        "`:` type($src) `,` type($dst)"
    )

    def __init__(
        self,
        src: SSAValue,
        src_indices: list[SSAValue],
        dst: SSAValue,
        dst_indices: list[SSAValue],
        elements: int,
        valid: SSAValue,
    ):
        super().__init__(
            operands=[src, src_indices, dst, dst_indices, valid], properties={"elements": IntegerAttr(elements, i64)}
        )

    def verify_(self) -> None:
        n = self.elements.value.data
        src, dst = self.src.type, self.dst.type
        assert isinstance(src, MemRefType) and isinstance(dst, MemRefType)
        nbytes = n * _element_bytes(src.get_element_type())
        if nbytes not in (4, 8, 16):
            raise VerifyException(f"gpu_ext.async_copy: copies 4, 8 or 16 bytes, not {nbytes}")
        if is_workgroup(src) or not is_workgroup(dst):
            raise VerifyException("gpu_ext.async_copy: copies from a global buffer into a workgroup buffer")
        _check_access(self, self.src, len(self.src_indices), n, [dst.get_element_type()])
        _check_access(self, self.dst, len(self.dst_indices), n, [src.get_element_type()])
        _check_in_kernel(self)


@irdl_op_definition
class AsyncCommitOp(IRDLOperation):
    """``gpu_ext.async_commit``: close the thread's group of ``gpu_ext.async_copy`` ops (``cp.async.commit_group``)."""

    name = "gpu_ext.async_commit"
    assembly_format = "attr-dict"

    def verify_(self) -> None:
        _check_in_kernel(self)


@irdl_op_definition
class AsyncWaitOp(IRDLOperation):
    """``gpu_ext.async_wait pending N``: wait until at most N committed groups are in flight
    (``cp.async.wait_group N``)."""

    name = "gpu_ext.async_wait"
    pending = prop_def(IntegerAttr[I64])
    assembly_format = "`pending` $pending attr-dict"

    def __init__(self, pending: int):
        super().__init__(properties={"pending": IntegerAttr(pending, i64)})

    def verify_(self) -> None:
        if not 0 <= self.pending.value.data <= 7:
            raise VerifyException(f"gpu_ext.async_wait: pending {self.pending.value.data} is out of range 0..7")
        _check_in_kernel(self)


@irdl_op_definition
class LdMatrixOp(IRDLOperation):
    """``gpu_ext.ldmatrix``: the warp loads ``num`` (1, 2, 4) 8x8 matrices of 16-bit elements from a workgroup
    buffer (MLIR's ``nvgpu.ldmatrix``; PTX ``ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16``, PTX ISA 8.0
    section 9.7.13.4.15, sm_75+). Each thread gives the indices of one 16-byte row (threads 8i..8i+7: matrix i);
    each result is an ``i32`` holding two 16-bit elements of one matrix (of its transpose with ``trans``) in the
    fragment layout of ``mma.sync``. All 32 lanes must execute it. 32-bit elements (tf32) load as pairs of halves::

        %r:4 = gpu_ext.ldmatrix %tile[%s, %row, %col], 4 trans : memref<3x32x128xbf16, 3 : i64> -> i32, i32, i32, i32
    """

    name = "gpu_ext.ldmatrix"
    base = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    num = prop_def(IntegerAttr[I64])
    trans = opt_prop_def(UnitAttr)
    fragments = var_result_def(IntegerType)
    assembly_format = (
        "$base `[` $indices `]` `,` $num (`trans` $trans^)? attr-dict `:` type($base) `->` type($fragments)"
    )

    def __init__(self, base: SSAValue, indices: list[SSAValue], num: int, trans: bool = False):
        props: dict[str, Attribute] = {"num": IntegerAttr(num, i64)}
        if trans:
            props["trans"] = UnitAttr()
        super().__init__(operands=[base, indices], properties=props, result_types=[[i32] * num])

    def verify_(self) -> None:
        num = self.num.value.data
        if num not in (1, 2, 4) or len(self.fragments) != num:
            raise VerifyException(f"gpu_ext.ldmatrix: loads 1, 2 or 4 matrices into as many i32 results, not {num}")
        if not is_workgroup(self.base.type):
            raise VerifyException("gpu_ext.ldmatrix: reads a workgroup buffer")
        t = self.base.type
        assert isinstance(t, MemRefType)
        if len(self.indices) != len(t.get_shape()):
            raise VerifyException(
                f"gpu_ext.ldmatrix: {len(self.indices)} indices for a rank-{len(t.get_shape())} buffer"
            )
        if any(r.type != i32 for r in self.fragments):
            raise VerifyException("gpu_ext.ldmatrix: results are i32 fragments")
        _check_in_kernel(self)


@irdl_op_definition
class MmaSyncOp(IRDLOperation):
    """``gpu_ext.mma_sync``: one warp computes D = A @ B + C on a ``shape`` tile (``m16n8k16`` for ``bf16``/``f16``,
    ``m16n8k8`` for ``tf32``) with ``f32`` accumulators (MLIR's ``nvgpu.mma.sync``; PTX
    ``mma.sync.aligned.<shape>.row.col.f32.<type>.<type>.f32``, PTX ISA 8.0 section 9.7.13.4, sm_80+). A and B are
    ``i32`` fragments (as ``gpu_ext.ldmatrix`` gives them), C and D ``f32``, as many as ``ptx.MMA_SHAPES`` says. All
    32 lanes must execute it. Printed in the generic form."""

    name = "gpu_ext.mma_sync"
    a = var_operand_def(IntegerType)
    b = var_operand_def(IntegerType)
    c = var_operand_def(Float32Type)
    d = var_result_def(Float32Type)
    shape = prop_def(StringAttr)
    type = prop_def(StringAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, shape: str, type: str, a: list[SSAValue], b: list[SSAValue], c: list[SSAValue]):
        super().__init__(
            operands=[a, b, c],
            properties={"shape": StringAttr(shape), "type": StringAttr(type)},
            result_types=[[f32] * len(c)],
        )

    def verify_(self) -> None:
        from picograd.dialects.ptx import MMA_SHAPES  # the one table of fragment sizes

        key = (self.shape.data, self.type.data)
        if key not in MMA_SHAPES:
            raise VerifyException(f"gpu_ext.mma_sync: no mma.sync of shape {key[0]} on {key[1]}; see ptx.MMA_SHAPES")
        row = MMA_SHAPES[key]
        counts = (len(self.a), len(self.b), len(self.c), len(self.d))
        if counts != (row.a_regs, row.b_regs, row.c_regs, row.c_regs):
            raise VerifyException(
                f"gpu_ext.mma_sync: {key[0]}.{key[1]} takes {row.a_regs} A, {row.b_regs} B and {row.c_regs} C/D "
                f"registers, got {counts[:3]} and {counts[3]}"
            )
        if any(v.type != i32 for v in (*self.a, *self.b)):
            raise VerifyException("gpu_ext.mma_sync: A and B fragments are i32")
        _check_in_kernel(self)


@irdl_op_definition
class RoundTf32Op(IRDLOperation):
    """``gpu_ext.round_tf32``: an f32 (given and returned as its ``i32`` bits, as ``mma.sync`` fragments hold it)
    rounded to the nearest tf32, the low 13 mantissa bits cleared (MLIR's ``nvvm.cvt.float.to.tf32``; PTX
    ``cvt.rn.tf32.f32``, ties to even, on sm_90+, one instruction; ``cvt.rna.tf32.f32``, ties away from zero, on
    sm_80; PTX ISA 8.0 section 9.7.8.21). The tensor cores read only the top 19 bits of a tf32 operand: without it
    they truncate, as cuBLAS and CUTLASS do not::

        %t = gpu_ext.round_tf32 %x
    """

    name = "gpu_ext.round_tf32"
    source = operand_def(i32)
    result = result_def(i32)
    assembly_format = "$source attr-dict"

    def __init__(self, source: SSAValue):
        super().__init__(operands=[source], result_types=[i32])

    def verify_(self) -> None:
        _check_in_kernel(self)


@irdl_op_definition
class PackHalfOp(IRDLOperation):
    """``%p = gpu_ext.pack_half "bf16" %lo, %hi``: ``lo`` and ``hi`` (f32) rounded to ``bf16``/``f16`` (to nearest
    even) and packed into one ``i32``, ``lo`` in the low 16 bits (PTX's ``cvt.rn.bf16x2.f32 d, hi, lo``, PTX ISA
    8.0 section 9.7.8.21)."""

    name = "gpu_ext.pack_half"
    TYPES: ClassVar[tuple[str, ...]] = ("bf16", "f16")
    lo = operand_def(Float32Type)
    hi = operand_def(Float32Type)
    type = prop_def(StringAttr)
    result = result_def(i32)
    assembly_format = "$type $lo `,` $hi attr-dict"

    def __init__(self, lo: SSAValue, hi: SSAValue, type: str = "bf16"):
        super().__init__(operands=[lo, hi], result_types=[i32], properties={"type": StringAttr(type)})

    def verify_(self) -> None:
        if self.type.data not in self.TYPES:
            raise VerifyException(f"gpu_ext.pack_half: type {self.type.data} is not bf16 or f16")
        _check_in_kernel(self)


def _element_bytes(t: Attribute) -> int:
    if isinstance(t, BFloat16Type | Float16Type):
        return 2
    if isinstance(t, Float32Type):
        return 4
    if isinstance(t, Float64Type | IndexType):
        return 8
    assert isinstance(t, IntegerType)
    return max(1, t.width.data // 8)


def is_workgroup(t: Attribute) -> bool:
    """Whether ``t`` is a memref in workgroup (shared) memory."""
    return (
        isinstance(t, MemRefType) and isinstance(t.memory_space, IntegerAttr) and t.memory_space.value.data == WORKGROUP
    )


GPU_EXT = Dialect(
    "gpu_ext",
    [
        ShuffleOp,
        WorkgroupAllocOp,
        VectorLoadOp,
        VectorStoreOp,
        AsyncCopyOp,
        AsyncCommitOp,
        AsyncWaitOp,
        LdMatrixOp,
        MmaSyncOp,
        RoundTf32Op,
        PackHalfOp,
    ],
    [],
)
