"""Addressing and memory access in ``pg-to-ptx``: buffers, their element addresses, loads, stores and copies.

A kernel argument is a ``.param .u64`` turned into a global address (``PtxEmitter.run``); a ``memref.view`` is that
address plus its constant byte offset, a ``memref.collapse_shape`` the same address under its new shape; a
workgroup buffer is a ``.shared`` array (or, when a kernel's workgroup buffers exceed the 48 KiB a kernel may
declare statically, a place in the module's dynamic ``.extern .shared`` buffer, whose bytes the kernel records as
``pg.dynamic_shared`` for its launch). ``memref.load``/``store`` compute
``base + (sum_i idx_i stride_i) * element_bytes`` (row-major strides of the static shape; in 32 bits when the
buffer and every index fit), fold the constant part of the indices into the instruction's ``[%rd + offset]``, and
use ``ld``/``st`` of the element type (an ``i1`` is a byte). Also the 16-byte vector accesses, ``cp.async`` copies
and ``red``/``atom`` adds of ``gpu_ext`` and ``memref``.

Not a pass: ``all_passes`` finds no ``ModulePass`` here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import IntegerAttr, IntegerType, MemRefType, i64
from xdsl.ir import Operation, SSAValue

from picograd.dialects import gpu_ext, ptx
from picograd.dialects.attrs import SHARED_BYTES_ATTR
from picograd.passes.buffers import element_bytes
from picograd.passes.kinds.matmul_wgmma import DYNAMIC_SHARED
from picograd.passes.ptx_emitter import Buf, PtxEmitter

STATIC_SHARED_BYTES = 48 * 1024
"""Shared memory a kernel may declare statically (``.shared`` arrays); beyond it, dynamic shared memory."""


def workgroup_bytes(op: gpu_ext.WorkgroupAllocOp) -> int:
    """The bytes of a workgroup buffer (at least 1)."""
    t = op.memref_type
    return max(1, math.prod(t.get_shape()) * element_bytes(t.get_element_type()))


class PtxAddressing(PtxEmitter):
    """The memory handlers of the kernel lowering (see the module docstring)."""

    # --- memory -----------------------------------------------------------------------------------------------

    def address(self, b: Buf, indices: Sequence[SSAValue], op: Operation) -> tuple[SSAValue, int]:
        """(address register, constant byte offset) of element ``indices`` of ``b``.

        The element offset is computed in 64 bits, or in 32 bits (then one ``mad.wide.s32`` onto the base) when
        every variable index is an ``index_cast`` of an ``i32`` and the buffer has fewer than 2**31 bytes: an
        in-bounds offset then fits, and 32-bit integer arithmetic is half the instructions and registers."""
        t = b.type
        shape = t.get_shape()
        if any(d < 0 for d in shape):
            raise self.fail(op, f"'{op.name}' on {t}: dynamic shapes have no PTX lowering")
        self.kind(t.get_element_type(), op)
        esize = element_bytes(t.get_element_type())
        strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
        offset = b.offset
        terms: list[tuple[tuple[str, SSAValue], int]] = []
        for idx, stride in zip(indices, strides, strict=True):
            var, c = self.split_constant(idx)
            offset += c * stride * esize
            if var is not None:
                terms.append((var, stride))
        narrow = math.prod(shape) * esize < 2**31 and all(kind == "i32" for (kind, _), _ in terms)
        k = "s32" if narrow else "s64"
        lin: SSAValue | None = None
        for (kind, value), stride in terms:
            x = self.reg(value)
            if kind == "i32" and not narrow:
                x = self.r(ptx.CvtOp(x, "s64", "s32"))
            if lin is None:
                lin = x if stride == 1 else self.r(ptx.MulOp(x, self.imm(stride, k), k, mode="lo"))
            elif stride == 1:
                lin = self.r(ptx.AddOp(lin, x, k))
            else:
                lin = self.r(ptx.MadOp(x, self.imm(stride, k), lin, k, mode="lo"))
        base = b.base
        if lin is not None:
            if narrow:
                base = self.r(ptx.MadOp(lin, self.imm(esize, "s32"), base, "s32", mode="wide"))
            elif esize == 1:
                base = self.r(ptx.AddOp(base, lin, "s64"))
            else:
                base = self.r(ptx.MadOp(lin, self.imm(esize, "s64"), base, "s64", mode="lo"))
        if not -(2**31) <= offset < 2**31:
            base = self.r(ptx.AddOp(base, self.imm(offset, "s64"), "s64"))
            offset = 0
        return base, offset

    def split_constant(self, v: SSAValue, kind: str = "index") -> tuple[tuple[str, SSAValue] | None, int]:
        """``v`` as (variable part, constant part), looking through ``arith.addi`` of a constant and through
        ``arith.index_cast`` of an ``i32`` (nonnegative, as indices are), so that ``tile[%row + 3]`` is
        ``[%addr + 12]``: the constant goes into the instruction's address offset. The variable part is
        ``("index", v)`` or ``("i32", v)`` (``kind`` is that of ``v``), or None."""
        c = self.const_of(v)
        if c is not None:
            return None, int(c)
        op = v.owner
        if kind == "index" and isinstance(op, arith.IndexCastOp) and op.input.type == IntegerType(32):
            return self.split_constant(op.input, "i32")
        if isinstance(op, arith.AddiOp):
            for x, y in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
                cy = self.const_of(y)
                if cy is not None:
                    rest, cx = self.split_constant(x, kind)
                    return rest, cx + int(cy)
        return (kind, v), 0

    def vector_load(self, op: gpu_ext.VectorLoadOp) -> None:
        b = self.buf(op.base, op)
        addr, off = self.address(b, op.indices, op)
        k = self.kind(op.values[0].type, op)
        ld = self.emit(ptx.LdOp(addr, k, b.space, offset=off, vec=len(op.values)))
        for v, r in zip(op.values, ld.results, strict=True):
            self.values[v] = r

    def vector_store(self, op: gpu_ext.VectorStoreOp) -> None:
        b = self.buf(op.base, op)
        addr, off = self.address(b, op.indices, op)
        k = self.kind(op.values[0].type, op)
        self.emit(ptx.StOp(addr, [self.reg(v) for v in op.values], k, b.space, offset=off))

    def async_copy(self, op: gpu_ext.AsyncCopyOp) -> None:
        src, dst = self.buf(op.src, op), self.buf(op.dst, op)
        src_addr, src_off = self.address(src, op.src_indices, op)
        dst_addr, dst_off = self.address(dst, op.dst_indices, op)
        esize = element_bytes(src.type.get_element_type())
        size = op.elements.value.data * esize
        n = self.const_of(op.valid)
        if n is not None:
            nbytes = self.imm(int(n) * esize, "u32")
        else:
            count = self.r(ptx.CvtOp(self.reg(op.valid), "u32", "s64"))
            nbytes = self.r(ptx.MulOp(count, self.imm(esize, "u32"), "u32", mode="lo"))
        self.emit(ptx.CpAsyncOp(dst_addr, src_addr, size, nbytes, dst_offset=dst_off, src_offset=src_off))

    def async_commit(self, op: gpu_ext.AsyncCommitOp) -> None:
        self.emit(ptx.CpAsyncCommitGroupOp())

    def async_wait(self, op: gpu_ext.AsyncWaitOp) -> None:
        self.emit(ptx.CpAsyncWaitGroupOp(op.pending.value.data))

    def ldmatrix(self, op: gpu_ext.LdMatrixOp) -> None:
        b = self.buf(op.base, op)
        addr, off = self.address(b, op.indices, op)
        ld = self.emit(ptx.LdmatrixOp(addr, op.num.value.data, trans=op.trans is not None, offset=off))
        for v, r in zip(op.fragments, ld.results, strict=True):
            self.values[v] = r

    def load(self, op: memref.LoadOp) -> None:
        b = self.buf(op.memref, op)
        addr, off = self.address(b, op.indices, op)
        k = self.kind(op.res.type, op)
        if k == "pred":
            byte = self.r(ptx.LdOp(addr, "u8", b.space, offset=off))
            self.values[op.res] = self.r(ptx.SetpOp("ne", byte, self.imm(0, "u16"), "u16"))
            return
        self.values[op.res] = self.r(ptx.LdOp(addr, k, b.space, offset=off))

    def store(self, op: memref.StoreOp) -> None:
        b = self.buf(op.memref, op)
        addr, off = self.address(b, op.indices, op)
        k = self.kind(op.value.type, op)
        v = self.reg(op.value)
        if k == "pred":
            self.emit(ptx.StOp(addr, self.pred_to_int(v, "u16"), "u8", b.space, offset=off))
            return
        self.emit(ptx.StOp(addr, v, k, b.space, offset=off))

    def atomic_rmw(self, op: memref.AtomicRMWOp) -> None:
        b = self.buf(op.memref, op)
        kind = op.kind.value.data
        k = self.kind(op.value.type, op)
        if kind not in (0, 1) or k == "pred":
            raise self.fail(op, f"memref.atomic_rmw kind {kind} on {op.value.type} has no PTX lowering (addf, addi)")
        t = {"f32": "f32", "f64": "f64", "s32": "s32", "s64": "u64"}[k]
        addr, off = self.address(b, op.indices, op)
        v = self.reg(op.value)
        if any(True for _ in op.result.uses):
            self.values[op.result] = self.r(ptx.AtomOp("add", addr, v, t, b.space, offset=off))
        else:
            self.emit(ptx.RedOp("add", addr, v, t, b.space, offset=off))

    def view(self, op: memref.ViewOp) -> None:
        src = self.buf(op.source, op)
        shift = self.const_of(op.byte_shift)
        if shift is None or op.sizes:
            raise self.fail(op, "memref.view needs a constant byte offset and a static shape")
        t = op.result.type
        assert isinstance(t, MemRefType)
        self.values[op.result] = Buf(src.base, src.offset + int(shift), t, src.space)

    def collapse_shape(self, op: memref.CollapseShapeOp) -> None:
        """The same bytes under fewer dims (row-major buffers only: a collapse keeps every element's offset)."""
        src = self.buf(op.src, op)
        t = op.result.type
        assert isinstance(t, MemRefType)
        self.values[op.result] = Buf(src.base, src.offset, t, src.space)

    def workgroup_alloc(self, op: gpu_ext.WorkgroupAllocOp) -> None:
        t = op.memref_type
        self.kind(t.get_element_type(), op)
        size = workgroup_bytes(op)
        total = sum(
            -(-workgroup_bytes(a) // 16) * 16 for a in self.kfunc.walk() if isinstance(a, gpu_ext.WorkgroupAllocOp)
        )
        if total > STATIC_SHARED_BYTES:  # past the static limit: places in the dynamic buffer, 16-byte aligned
            self.pfunc.attributes[SHARED_BYTES_ATTR] = IntegerAttr(total, i64)
            addr = ptx.SharedAddrOp(DYNAMIC_SHARED, "u64")
            addr.location = op.location
            self.prologue.append(addr)
            self.values[op.result] = Buf(addr.result, self.dynamic_offset, t, "shared")
            self.dynamic_offset += -(-size // 16) * 16
            return
        self.shared += 1
        name = f"{self.name}_smem{self.shared}"
        decl = ptx.SharedOp(name, size, 16)
        decl.location = op.location
        self.prologue.insert(0, decl)
        addr = ptx.SharedAddrOp(name, "u64")
        addr.location = op.location
        self.prologue.append(addr)
        self.values[op.result] = Buf(addr.result, 0, t, "shared")
