"""``pg-to-ptx``: the kernels of the ``gpu`` stage become a ``ptx.module`` (``picograd.dialects.ptx``).

Input: what ``pg-to-gpu`` makes: a ``gpu.module`` of ``gpu.func`` kernels whose bodies hold ``arith``, ``math``,
``memref``, ``scf``, ``gpu`` and ``gpu_ext`` ops on static shapes, next to the host function that launches them.
Output: the ``gpu.module`` is replaced by one ``ptx.module`` (``.target sm_90``, attribute ``pg.gpu_module`` naming
the module it replaces) with one ``ptx.func`` (``.visible .entry``) per kernel; the host function is unchanged (its
``gpu.launch_func`` ops name the kernels, whose parameters are the ``gpu.func`` arguments in order, each a ``.u64``
pointer). ``picograd.target.ptx_printer.print_ptx`` prints the PTX text, which ``ptxas -arch=sm_90`` assembles.

**Registers and types** (PTX ISA 8.0 section 5.2): ``f32``/``f64`` values live in ``.f32``/``.f64`` registers,
``i32`` in ``.s32``, ``i64`` and ``index`` in ``.s64``, ``i1`` in ``.pred`` predicates. Each SSA value is one
virtual register (ptxas allocates the physical ones); constants are ``mov``-ed once into registers at the top of
the kernel, and a constant index is folded into the address offset instead.

**Memory**: each kernel argument (a ``memref`` root buffer) is a ``.param .u64``, loaded with ``ld.param`` and
turned into a global address by ``cvta.to.global``. A ``memref.view`` is that address plus its constant byte offset.
``memref.load``/``store`` compute ``base + (sum_i idx_i stride_i) * element_bytes`` (row-major strides of the static
shape: ``mad.lo.s64``), put the constant part into the instruction's ``[%rd + offset]``, and use ``ld.global`` /
``st.global`` of the element type; ``i1`` buffers hold one byte per element (``ld.global.u8`` then ``setp.ne``;
``selp`` then ``st.global.u8``). ``memref.atomic_rmw`` ``addf``/``addi`` is ``red.global.add`` (``atom`` when its
result is used). Workgroup buffers (``gpu_ext.workgroup_alloc``) are ``.shared`` arrays of the kernel, addressed
with ``ld.shared``/``st.shared``.

**Control flow** is flat, with labels (PTX ISA 8.0 section 9.7.11): ``scf.for`` is a guarded, bottom-tested loop
whose induction variable and iteration values are registers written back with ``ptx.assign`` (``mov``) at the end
of each trip (through temporaries when one iteration value feeds another); ``scf.if`` branches around its regions,
its results are registers written in both branches.

**Arithmetic**: ``add``/``sub``/``mul`` carry ``.rn`` (so ptxas does not contract them on its own), ``div.rn``,
``sqrt.rn``, ``rcp.rn`` for ``rsqrt`` (``1/sqrt`` rounded twice, as numpy computes it), ``max.NaN``/``min.NaN`` for
``maximumf``/``minimumf`` (NaN-propagating, f32; f64 checks NaN with ``setp.nan`` since ``.NaN`` is f32 only),
``setp`` with ordered/unordered comparisons (``oeq`` is ``eq``, ``une`` is ``neu``, ...), ``selp``, ``cvt`` with
``.rn`` for int to float and narrowing, ``.rzi`` (truncation toward zero) for float to int. With ``contract=true``
(the default, as ``nvcc --fmad=true``) an ``addf``/``subf`` of a single-use ``mulf`` in the same block becomes one
``fma.rn``. ``math`` functions (``exp``, ``log``, ``log1p``, ``tanh``, ``erf``, ``sin``, ``cos``, ``powf``) are
expanded inline from :mod:`picograd.target.gpu_math` (accurate schemes, no ``.approx`` instruction); ``sin``,
``cos``, ``log1p`` and ``powf`` on f32 are evaluated in f64 and rounded once.

**Parts**: the lowering of one kernel (``KernelLowering``) is instruction selection for ``arith``, ``math`` and
``gpu`` ops (this module), addressing and memory access (``ptx_addressing.py``), control-flow flattening
(``ptx_control.py``), and the registers, immediates and op dispatch they share (``ptx_emitter.py``).

**Debug lines**: every PTX op carries the location of the op it lowers, so the printer emits ``.loc`` lines that
point at the user's ``file:line``.

Raises ``PassFailedException`` naming the op and its location for ops without a PTX lowering (``scf.parallel``
left over, dynamic shapes, element types other than f32/f64/i1/i32/i64, ``memref.alloc`` inside a kernel) and
for a module without ``gpu.func`` kernels when ``pg-to-gpu`` has not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xdsl.context import Context
from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext, pg, ptx
from picograd.dialects.attrs import GPU_MODULE_ATTR, SHARED_BYTES_ATTR
from picograd.passes.buffers import where
from picograd.passes.kinds import attention_wgmma, matmul_wgmma
from picograd.passes.ptx_addressing import PtxAddressing
from picograd.passes.ptx_control import PtxControlFlow
from picograd.passes.ptx_emitter import Const, register_bits
from picograd.target import gpu_math

_CMPF = {
    "oeq": "eq", "one": "ne", "olt": "lt", "ole": "le", "ogt": "gt", "oge": "ge",
    "ueq": "equ", "une": "neu", "ult": "ltu", "ule": "leu", "ugt": "gtu", "uge": "geu",
    "ord": "num", "uno": "nan",
}  # fmt: skip
_CMPI = {
    "eq": ("eq", "s"), "ne": ("ne", "s"), "slt": ("lt", "s"), "sle": ("le", "s"), "sgt": ("gt", "s"),
    "sge": ("ge", "s"), "ult": ("lt", "u"), "ule": ("le", "u"), "ugt": ("gt", "u"), "uge": ("ge", "u"),
}  # fmt: skip
_SHUFFLE_MODE = {"xor": "bfly", "down": "down", "up": "up", "idx": "idx"}


class KernelLowering(PtxAddressing, PtxControlFlow):
    """Lowers one ``gpu.func`` to one ``ptx.func`` (see the module docstring): instruction selection for
    ``arith``, ``math`` and ``gpu`` ops here, addressing in :class:`PtxAddressing`, control-flow flattening in
    :class:`PtxControlFlow`, the registers and the kernel in :class:`PtxEmitter`."""

    # --- constants and casts ----------------------------------------------------------------------------------

    def constant(self, op: arith.ConstantOp) -> None:
        attr = op.value
        kind = self.kind(op.result.type, op)
        if isinstance(attr, IntegerAttr):
            value: int | float = attr.value.data
            if kind == "pred":
                value = int(value != 0)
        elif isinstance(attr, FloatAttr):
            value = float(attr.value.data)
        else:
            raise self.fail(op, f"constant {attr} is not a scalar")
        self.values[op.result] = Const(value, kind)

    def convert(self, op: Operation, x: SSAValue, src: Attribute, dst: Attribute, unsigned: bool = False) -> SSAValue:
        """``x`` of type ``src`` converted to ``dst`` (arith's casts; ``unsigned`` for the ``ui``/``extui`` forms)."""
        if pg.is_low_precision(src) or pg.is_low_precision(dst):
            return self.convert_half(op, x, src, dst)
        sk, dk = self.kind(src, op), self.kind(dst, op)
        sf, df = sk in ("f32", "f64"), dk in ("f32", "f64")
        if sk == "pred":
            if df:
                x = self.pred_to_int(x, "s32", 1 if unsigned else -1)
                return self.r(ptx.CvtOp(x, dk, "s32", rnd="rn"))
            if dk == "pred":
                return x
            return self.pred_to_int(x, dk, 1 if unsigned else -1)
        if dk == "pred":
            if sf:
                return self.r(ptx.SetpOp("neu", x, self.imm(0.0, sk)))
            return self.int_to_pred(x, sk)
        if sf and df:
            if sk == dk:
                return x
            return self.r(ptx.CvtOp(x, dk, sk, rnd="rn" if register_bits(dk) < register_bits(sk) else None))
        if sf:  # float -> int: truncation toward zero
            return self.r(ptx.CvtOp(x, ("u" if unsigned else "s") + dk[1:], sk, rnd="rzi"))
        if df:
            return self.r(ptx.CvtOp(x, dk, ("u" if unsigned else "s") + sk[1:], rnd="rn"))
        if sk == dk:
            return x
        a = ("u" if unsigned else "s") + sk[1:]
        return self.r(ptx.CvtOp(x, dk, a))

    def convert_half(self, op: Operation, x: SSAValue, src: Attribute, dst: Attribute) -> SSAValue:
        """``arith.extf``/``truncf`` between a 16-bit float and ``f32`` (``f64`` through ``f32``): ``cvt.f32.bf16``
        (exact) and ``cvt.rn.bf16.f32`` (round to nearest even), sm_90 for the bf16 forms (PTX ISA 8.0 section
        9.7.8.21). The loop stage makes no other conversion of them."""
        if not (pg.is_float(src) and pg.is_float(dst)):
            raise self.fail(op, f"'{op.name}' from {src} to {dst}: 16-bit floats convert only from and to floats")
        names = {"bf16": "bf16", "f16": "f16", "f32": "f32", "f64": "f64"}
        sn, dn = names[str(src.name)], names[str(dst.name)]  # type: ignore[attr-defined]
        if sn == dn:
            return x
        if sn == "f64":
            x, sn = self.r(ptx.CvtOp(x, "f32", "f64", rnd="rn")), "f32"  # rounds twice (as the loop stage does)
        if dn == "f64":
            return self.r(ptx.CvtOp(self.r(ptx.CvtOp(x, "f32", sn)), "f64", "f32"))
        return self.r(ptx.CvtOp(x, dn, sn, rnd="rn" if dn in ptx.HALF_FLOATS else None))

    def mma_sync(self, op: gpu_ext.MmaSyncOp) -> None:
        regs = [[self.reg(v) for v in group] for group in (op.a, op.b, op.c)]
        mma = self.emit(ptx.MmaOp(op.shape.data, op.type.data, *regs))
        for v, r in zip(op.d, mma.results, strict=True):
            self.values[v] = r

    def round_tf32(self, op: gpu_ext.RoundTf32Op) -> None:
        x = self.reg(op.source)
        if ptx.kind_of(x) != "b32":  # an i32 register is .s32, which a .f32 source does not take
            x = self.r(ptx.MovOp(x, "b32"))
        # sm_90+: to nearest even in one instruction (F2FP.TF32); before: ties away (FSETP, IADD, LOP3)
        rnd = "rn" if ptx.target_supports(*self.target, *ptx.REQUIREMENTS["cvt.rn.tf32"]) else "rna"
        self.values[op.result] = self.r(ptx.CvtOp(x, ptx.TF32, "f32", rnd=rnd))

    def pack_half(self, op: gpu_ext.PackHalfOp) -> None:
        lo, hi = self.reg(op.lo), self.reg(op.hi)
        self.values[op.result] = self.r(ptx.CvtPairOp(hi, lo, f"{op.type.data}x2"))

    def cast_op(self, op: Operation) -> None:
        unsigned = isinstance(op, arith.ExtUIOp | arith.UIToFPOp | arith.FPToUIOp)
        src, dst = op.operands[0], op.results[0]
        self.values[dst] = self.convert(op, self.reg(src), src.type, dst.type, unsigned)

    def bitcast(self, op: arith.BitcastOp) -> None:
        sk, dk = self.kind(op.input.type, op), self.kind(op.result.type, op)
        x = self.reg(op.input)
        b = self.r(ptx.MovOp(x, "b" + str(register_bits(sk))))
        self.values[op.result] = self.r(ptx.MovOp(b, dk))

    # --- arithmetic -------------------------------------------------------------------------------------------

    def float_binary(self, op: Operation, fuse: bool = True) -> None:
        a, b = op.operands
        k = self.kind(op.results[0].type, op)
        if fuse and self.contract and isinstance(op, arith.AddfOp | arith.SubfOp):
            fused = self.try_fma(op, a, b, k)
            if fused is not None:
                self.values[op.results[0]] = fused
                return
        x, y = self.reg(a), self.reg(b)
        r: Operation
        match op:
            case arith.AddfOp():
                r = ptx.AddOp(x, y, k, rnd="rn")
            case arith.SubfOp():
                r = ptx.SubOp(x, y, k, rnd="rn")
            case arith.MulfOp():
                r = ptx.MulOp(x, y, k, mode="rn")
            case _:
                r = ptx.DivOp(x, y, k, mode="rn")
        self.values[op.results[0]] = self.r(r)

    def single_use_mul(self, v: SSAValue, user: Operation) -> arith.MulfOp | None:
        m = v.owner
        if isinstance(m, arith.MulfOp) and m.parent_block() is user.parent_block() and sum(1 for _ in v.uses) == 1:
            return m
        return None

    def try_fma(self, op: Operation, a: SSAValue, b: SSAValue, k: str) -> SSAValue | None:
        """``a*b + c``, ``c + a*b``, ``a*b - c``, ``c - a*b`` as one ``fma.rn`` (the mul is not emitted)."""
        for prod, other in ((a, b), (b, a)):
            m = self.single_use_mul(prod, op)
            if m is None:
                continue
            self.materialize(other)
            c = self.reg(other)
            x = self.reg(m.lhs)
            if isinstance(op, arith.SubfOp):
                if prod is a:  # a*b - c
                    c = self.r(ptx.NegOp(c, k))
                else:  # c - a*b
                    x = self.r(ptx.NegOp(x, k))
            return self.r(ptx.FmaOp(x, self.reg(m.rhs), c, k, rnd="rn"))
        for v in (a, b):
            self.materialize(v)
        return None

    def materialize(self, v: SSAValue) -> None:
        """Emit a product that was left for an fma its user did not make."""
        m = v.owner
        if isinstance(m, arith.MulfOp) and v not in self.values:
            self.float_binary(m, fuse=False)

    def mulf(self, op: arith.MulfOp) -> None:
        """A product whose one user is an add/sub in the same block is left to that user's fma: its operands are
        read there, later in the same block, where no register they use has been written again (registers are
        written again only at the ends of loop bodies)."""
        if self.contract:
            uses = list(op.result.uses)
            if len(uses) == 1:
                user = uses[0].operation
                if isinstance(user, arith.AddfOp | arith.SubfOp) and user.parent_block() is op.parent_block():
                    return
        self.float_binary(op)

    def negf(self, op: arith.NegfOp) -> None:
        k = self.kind(op.result.type, op)
        self.values[op.result] = self.r(ptx.NegOp(self.reg(op.operand), k))

    def minmax_f(self, op: Operation) -> None:
        a, b = (self.reg(v) for v in op.operands)
        k = self.kind(op.results[0].type, op)
        is_max = isinstance(op, arith.MaximumfOp | arith.MaxnumfOp)
        cls = ptx.MaxOp if is_max else ptx.MinOp
        propagate = isinstance(op, arith.MaximumfOp | arith.MinimumfOp)
        if propagate and k == "f32":
            self.values[op.results[0]] = self.r(cls(a, b, k, nan="NaN"))
            return
        m = self.r(cls(a, b, k))
        if propagate:  # f64 max/min return the other operand for a NaN: put the NaN back
            nan = self.r(ptx.SetpOp("nan", a, b, k))
            m = self.r(ptx.SelpOp(self.r(ptx.AddOp(a, b, k, rnd="rn")), m, nan, k))
        self.values[op.results[0]] = m

    def int_binary(self, op: Operation) -> None:
        a, b = (self.reg(v) for v in op.operands)
        k = self.kind(op.results[0].type, op)
        u = "u" + k[1:]
        bits = "b" + k[1:]
        if k == "pred":
            table_p: dict[type[Operation], Callable[[], Operation]] = {
                arith.AndIOp: lambda: ptx.AndOp(a, b, "pred"),
                arith.OrIOp: lambda: ptx.OrOp(a, b, "pred"),
                arith.XOrIOp: lambda: ptx.XorOp(a, b, "pred"),
                arith.AddiOp: lambda: ptx.XorOp(a, b, "pred"),
                arith.SubiOp: lambda: ptx.XorOp(a, b, "pred"),
                arith.MuliOp: lambda: ptx.AndOp(a, b, "pred"),
            }
            maker = table_p.get(type(op))
            if maker is None:
                raise self.fail(op, f"'{op.name}' on i1 has no PTX lowering")
            self.values[op.results[0]] = self.r(maker())
            return
        table: dict[type[Operation], Callable[[], Operation]] = {
            arith.AddiOp: lambda: ptx.AddOp(a, b, k),
            arith.SubiOp: lambda: ptx.SubOp(a, b, k),
            arith.MuliOp: lambda: ptx.MulOp(a, b, k, mode="lo"),
            arith.DivSIOp: lambda: ptx.DivOp(a, b, k),
            arith.DivUIOp: lambda: ptx.DivOp(a, b, u),
            arith.RemSIOp: lambda: ptx.RemOp(a, b, k),
            arith.RemUIOp: lambda: ptx.RemOp(a, b, u),
            arith.AndIOp: lambda: ptx.AndOp(a, b, bits),
            arith.OrIOp: lambda: ptx.OrOp(a, b, bits),
            arith.XOrIOp: lambda: ptx.XorOp(a, b, bits),
            arith.MaxSIOp: lambda: ptx.MaxOp(a, b, k),
            arith.MinSIOp: lambda: ptx.MinOp(a, b, k),
            arith.MaxUIOp: lambda: ptx.MaxOp(a, b, u),
            arith.MinUIOp: lambda: ptx.MinOp(a, b, u),
        }
        if isinstance(op, arith.ShLIOp | arith.ShRUIOp | arith.ShRSIOp):
            amount = b if k == "s32" else self.r(ptx.CvtOp(b, "u32", "u64"))
            shift = {
                arith.ShLIOp: lambda: ptx.ShlOp(a, amount, bits),
                arith.ShRUIOp: lambda: ptx.ShrOp(a, amount, u),
                arith.ShRSIOp: lambda: ptx.ShrOp(a, amount, k),
            }[type(op)]()
            self.values[op.results[0]] = self.r(shift)
            return
        if isinstance(op, arith.FloorDivSIOp):
            self.values[op.results[0]] = self.floordiv(a, b, k)
            return
        divisor = self.values.get(op.operands[1])
        if isinstance(op, arith.DivUIOp | arith.RemUIOp) and isinstance(divisor, Const) and int(divisor.value) > 0:
            self.values[op.results[0]] = self.udiv_const(a, int(divisor.value), u, isinstance(op, arith.RemUIOp))
            return
        maker = table.get(type(op))
        if maker is None:
            raise self.fail(op, f"no PTX lowering for '{op.name}'")
        self.values[op.results[0]] = self.r(maker())

    def udiv_const(self, n: SSAValue, d: int, u: str, rem: bool) -> SSAValue:
        """``n / d`` (``n % d`` when ``rem``) of the unsigned ``u`` register ``n`` by the constant ``d > 0``, without
        a division: ptxas expands ``div``/``rem`` of a register holding a constant into a reciprocal iteration
        (32 bits) or a call (64 bits), tens of instructions each, which the index arithmetic of every elementwise
        kernel (delinearizing a thread's index, reshapes) paid per element. A power of two is a shift or a mask;
        another ``d`` is Granlund and Montgomery's multiply-high ("Division by Invariant Integers using
        Multiplication", PLDI 1994, figure 4.1): with ``l = ceil(log2 d)`` and ``m = floor(2^N (2^l - d) / d) + 1``,
        ``t = mulhi(m, n)`` and ``q = (t + ((n - t) >> 1)) >> (l - 1)``, exact for every ``n < 2^N``."""
        width = register_bits(u)
        if d & (d - 1) == 0:
            if rem:
                return self.r(ptx.AndOp(n, self.imm(d - 1, u), "b" + u[1:]))
            return n if d == 1 else self.r(ptx.ShrOp(n, self.imm(d.bit_length() - 1, "u32"), u))
        magic, shift = division_magic(d, width)
        t = self.r(ptx.MulOp(n, self.imm(magic, u), u, mode="hi"))
        half = self.r(ptx.ShrOp(self.r(ptx.SubOp(n, t, u)), self.imm(1, "u32"), u))
        q = self.r(ptx.ShrOp(self.r(ptx.AddOp(t, half, u)), self.imm(shift - 1, "u32"), u))
        if not rem:
            return q
        return self.r(ptx.SubOp(n, self.r(ptx.MulOp(q, self.imm(d, u), u, mode="lo")), u))

    def floordiv(self, a: SSAValue, b: SSAValue, k: str) -> SSAValue:
        """Floor division: the truncated quotient, minus one when the remainder is nonzero and its sign differs
        from the divisor's."""
        q = self.r(ptx.DivOp(a, b, k))
        rem = self.r(ptx.RemOp(a, b, k))
        nonzero = self.r(ptx.SetpOp("ne", rem, self.imm(0, k)))
        signs = self.r(ptx.XorOp(rem, b, "b" + k[1:]))
        differ = self.r(ptx.SetpOp("lt", signs, self.imm(0, k), k))
        fix = self.r(ptx.AndOp(nonzero, differ, "pred"))
        return self.r(ptx.SelpOp(self.r(ptx.SubOp(q, self.imm(1, k), k)), q, fix, k))

    def mului_extended(self, op: arith.MulUIExtendedOp) -> None:
        a, b = self.reg(op.lhs), self.reg(op.rhs)
        k = self.kind(op.lhs.type, op)
        u = "u" + k[1:]
        self.values[op.results[0]] = self.r(ptx.MulOp(a, b, u, mode="lo"))
        self.values[op.results[1]] = self.r(ptx.MulOp(a, b, u, mode="hi"))

    def cmpf(self, op: arith.CmpfOp) -> None:
        name = _cmpf_name(op)
        k = self.kind(op.lhs.type, op)
        if name in ("false", "true"):
            self.values[op.result] = Const(int(name == "true"), "pred")
            return
        self.values[op.result] = self.r(ptx.SetpOp(_CMPF[name], self.reg(op.lhs), self.reg(op.rhs), k))

    def cmpi(self, op: arith.CmpiOp) -> None:
        name = _cmpi_name(op)
        k = self.kind(op.lhs.type, op)
        a, b = self.reg(op.lhs), self.reg(op.rhs)
        cmp, sign = _CMPI[name]
        if k == "pred":  # compare i1 values as integers: 1 (unsigned) or -1 (signed) for true
            true = -1 if sign == "s" else 1
            a, b = self.pred_to_int(a, "s32", true), self.pred_to_int(b, "s32", true)
            k = "s32"
        t = k if cmp in ("eq", "ne") else sign + k[1:]
        if cmp in ("eq", "ne"):
            t = "b" + k[1:]
        self.values[op.result] = self.r(ptx.SetpOp(cmp, a, b, t))

    def select(self, op: arith.SelectOp) -> None:
        c, a, b = self.reg(op.cond), self.reg(op.lhs), self.reg(op.rhs)
        k = self.kind(op.result.type, op)
        if k == "pred":
            keep = self.r(ptx.AndOp(c, a, "pred"))
            other = self.r(ptx.AndOp(self.r(ptx.NotOp(c, "pred")), b, "pred"))
            self.values[op.result] = self.r(ptx.OrOp(keep, other, "pred"))
        else:
            self.values[op.result] = self.r(ptx.SelpOp(a, b, c, k))

    # --- math -------------------------------------------------------------------------------------------------

    def math_op(self, op: Operation) -> None:
        k = self.kind(op.results[0].type, op)
        if k not in ("f32", "f64") and not isinstance(op, mathd.AbsIOp):
            raise self.fail(op, f"'{op.name}' on {op.results[0].type} has no PTX lowering")
        args = [self.reg(v) for v in op.operands]
        x = args[0]
        result: SSAValue
        match op:
            case mathd.SqrtOp():
                result = self.r(ptx.SqrtOp(x, k, mode="rn"))
            case mathd.Exp2Op() if k == "f32" and op.fastmath is not None and "afn" in op.fastmath.data:
                # approximate functions allowed (the attention kernels' softmax): ex2.approx, 2 ulp
                result = self.r(ptx.Ex2Op(x, k, approx="approx", ftz="ftz"))
            case mathd.RsqrtOp():
                result = self.r(ptx.RcpOp(self.r(ptx.SqrtOp(x, k, mode="rn")), k, mode="rn"))
            case mathd.AbsFOp() | mathd.AbsIOp():
                result = self.r(ptx.AbsOp(x, k))
            case mathd.FmaOp():
                result = self.r(ptx.FmaOp(args[0], args[1], args[2], k, rnd="rn"))
            case mathd.FloorOp() | mathd.CeilOp() | mathd.TruncOp() | mathd.RoundEvenOp():
                rnd = {mathd.FloorOp: "rmi", mathd.CeilOp: "rpi", mathd.TruncOp: "rzi", mathd.RoundEvenOp: "rni"}
                result = self.r(ptx.CvtOp(x, k, k, rnd=rnd[type(op)]))
            case mathd.CopySignOp():
                m = PtxArith(self, gpu_math.FORMATS[k])
                result = gpu_math.copysign(m, m.abs(x), args[1])
            case _:
                result = self.transcendental(op, k, args)
        self.values[op.results[0]] = result

    def transcendental(self, op: Operation, k: str, args: list[SSAValue]) -> SSAValue:
        names: dict[type[Operation], str] = {
            mathd.ExpOp: "exp",
            mathd.LogOp: "log",
            mathd.Log1pOp: "log1p",
            mathd.TanhOp: "tanh",
            mathd.ErfOp: "erf",
            mathd.SinOp: "sin",
            mathd.CosOp: "cos",
            mathd.PowFOp: "pow",
            # the operator surface (issue 20)
            mathd.Log2Op: "log2",
            mathd.Exp2Op: "exp2",
            mathd.ExpM1Op: "expm1",
            mathd.AtanOp: "atan",
            mathd.Atan2Op: "atan2",
            mathd.AsinOp: "asin",
            mathd.AcosOp: "acos",
            mathd.AsinhOp: "asinh",
            mathd.AcoshOp: "acosh",
            mathd.AtanhOp: "atanh",
        }
        name = names.get(type(op))
        if name is None:
            raise self.fail(op, f"no PTX lowering for '{op.name}'")
        fn = gpu_math.FUNCTIONS[name]
        if k == "f32" and name in gpu_math.F64_EVALUATED:
            m64 = PtxArith(self, gpu_math.F64)
            wide = [m64.widen(a) for a in args]
            if name in ("sin", "cos"):
                return m64.narrow(fn(m64, *wide, target=gpu_math.F32))
            return m64.narrow(fn(m64, *wide))
        return fn(PtxArith(self, gpu_math.FORMATS[k]), *args)

    # --- gpu ops ----------------------------------------------------------------------------------------------

    def special(self, op: Operation) -> None:
        dim = op.properties["dimension"]
        assert isinstance(dim, gpu.DimensionAttr)
        d = dim.data.value
        reg_name: dict[type[Operation], str] = {
            gpu.ThreadIdOp: "tid",
            gpu.BlockIdOp: "ctaid",
            gpu.BlockDimOp: "ntid",
            gpu.GridDimOp: "nctaid",
        }
        r = self.r(ptx.SregOp(f"{reg_name[type(op)]}.{d}"))
        self.values[op.results[0]] = self.r(ptx.CvtOp(r, "s64", "u32"))

    def lane_id(self, op: gpu.LaneIdOp) -> None:
        self.values[op.result] = self.r(ptx.CvtOp(self.r(ptx.SregOp("laneid")), "s64", "u32"))

    def barrier(self, op: gpu.BarrierOp) -> None:
        self.emit(ptx.BarSyncOp(0))

    def gpu_return(self, op: gpu.ReturnOp) -> None:
        if op.parent_block() is not self.kfunc.body.block or op.next_op is not None:
            raise self.fail(op, "gpu.return must be the last op of the kernel")
        self.emit(ptx.RetOp())

    def shuffle(self, op: gpu_ext.ShuffleOp) -> None:
        k = self.kind(op.value.type, op)
        x = self.reg(op.value)
        mode, lane = _SHUFFLE_MODE[op.mode.data], op.offset.value.data
        if k == "pred":
            y = self.r(ptx.ShflOp(mode, self.pred_to_int(x, "u32"), lane))
            self.values[op.result] = self.r(ptx.SetpOp("ne", y, self.imm(0, "u32"), "u32"))
        elif register_bits(k) == 32:
            self.values[op.result] = self.r(ptx.ShflOp(mode, x, lane))
        else:  # two 32-bit halves
            bits = self.r(ptx.MovOp(x, "b64"))
            lo = self.r(ptx.CvtOp(bits, "u32", "u64"))
            hi = self.r(ptx.CvtOp(self.r(ptx.ShrOp(bits, self.imm(32, "u32"), "u64")), "u32", "u64"))
            lo2 = self.r(ptx.CvtOp(self.r(ptx.ShflOp(mode, lo, lane)), "u64", "u32"))
            hi2 = self.r(ptx.CvtOp(self.r(ptx.ShflOp(mode, hi, lane)), "u64", "u32"))
            joined = self.r(ptx.OrOp(self.r(ptx.ShlOp(hi2, self.imm(32, "u32"), "b64")), lo2, "b64"))
            self.values[op.result] = self.r(ptx.MovOp(joined, k))


def _cmpf_name(op: arith.CmpfOp) -> str:
    names = ("false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une",
             "uno", "true")  # fmt: skip
    return names[op.predicate.value.data]


def _cmpi_name(op: arith.CmpiOp) -> str:
    names = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")
    return names[op.predicate.value.data]


_HANDLERS: dict[type[Operation], Callable[[KernelLowering, Any], None]] = {
    arith.ConstantOp: KernelLowering.constant,
    arith.AddfOp: KernelLowering.float_binary,
    arith.SubfOp: KernelLowering.float_binary,
    arith.MulfOp: KernelLowering.mulf,
    arith.DivfOp: KernelLowering.float_binary,
    arith.NegfOp: KernelLowering.negf,
    arith.MaximumfOp: KernelLowering.minmax_f,
    arith.MinimumfOp: KernelLowering.minmax_f,
    arith.MaxnumfOp: KernelLowering.minmax_f,
    arith.MinnumfOp: KernelLowering.minmax_f,
    arith.CmpfOp: KernelLowering.cmpf,
    arith.CmpiOp: KernelLowering.cmpi,
    arith.SelectOp: KernelLowering.select,
    arith.MulUIExtendedOp: KernelLowering.mului_extended,
    arith.BitcastOp: KernelLowering.bitcast,
    **{
        cls: KernelLowering.int_binary
        for cls in (
            arith.AddiOp,
            arith.SubiOp,
            arith.MuliOp,
            arith.DivSIOp,
            arith.DivUIOp,
            arith.RemSIOp,
            arith.RemUIOp,
            arith.FloorDivSIOp,
            arith.AndIOp,
            arith.OrIOp,
            arith.XOrIOp,
            arith.ShLIOp,
            arith.ShRUIOp,
            arith.ShRSIOp,
            arith.MaxSIOp,
            arith.MinSIOp,
            arith.MaxUIOp,
            arith.MinUIOp,
        )
    },
    **{
        cls: KernelLowering.cast_op
        for cls in (
            arith.IndexCastOp,
            arith.ExtSIOp,
            arith.ExtUIOp,
            arith.TruncIOp,
            arith.SIToFPOp,
            arith.UIToFPOp,
            arith.FPToSIOp,
            arith.FPToUIOp,
            arith.ExtFOp,
            arith.TruncFOp,
        )
    },
    **{
        cls: KernelLowering.math_op
        for cls in (
            mathd.ExpOp,
            mathd.LogOp,
            mathd.Log1pOp,
            mathd.TanhOp,
            mathd.ErfOp,
            mathd.SinOp,
            mathd.CosOp,
            mathd.PowFOp,
            mathd.SqrtOp,
            mathd.RsqrtOp,
            mathd.AbsFOp,
            mathd.AbsIOp,
            mathd.FmaOp,
            mathd.FloorOp,
            mathd.CeilOp,
            mathd.TruncOp,
            mathd.RoundEvenOp,
            mathd.CopySignOp,
            # the operator surface (issue 20)
            mathd.Log2Op,
            mathd.Exp2Op,
            mathd.ExpM1Op,
            mathd.AtanOp,
            mathd.Atan2Op,
            mathd.AsinOp,
            mathd.AcosOp,
            mathd.AsinhOp,
            mathd.AcoshOp,
            mathd.AtanhOp,
        )
    },
    memref.LoadOp: KernelLowering.load,
    memref.StoreOp: KernelLowering.store,
    memref.AtomicRMWOp: KernelLowering.atomic_rmw,
    memref.ViewOp: KernelLowering.view,
    memref.CollapseShapeOp: KernelLowering.collapse_shape,
    gpu_ext.WorkgroupAllocOp: KernelLowering.workgroup_alloc,
    gpu_ext.ShuffleOp: KernelLowering.shuffle,
    gpu_ext.VectorLoadOp: KernelLowering.vector_load,
    gpu_ext.VectorStoreOp: KernelLowering.vector_store,
    gpu_ext.AsyncCopyOp: KernelLowering.async_copy,
    gpu_ext.AsyncCommitOp: KernelLowering.async_commit,
    gpu_ext.AsyncWaitOp: KernelLowering.async_wait,
    gpu_ext.LdMatrixOp: KernelLowering.ldmatrix,
    gpu_ext.MmaSyncOp: KernelLowering.mma_sync,
    gpu_ext.RoundTf32Op: KernelLowering.round_tf32,
    gpu_ext.PackHalfOp: KernelLowering.pack_half,
    gpu.ThreadIdOp: KernelLowering.special,
    gpu.BlockIdOp: KernelLowering.special,
    gpu.BlockDimOp: KernelLowering.special,
    gpu.GridDimOp: KernelLowering.special,
    gpu.LaneIdOp: KernelLowering.lane_id,
    gpu.BarrierOp: KernelLowering.barrier,
    gpu.ReturnOp: KernelLowering.gpu_return,
    scf.ForOp: KernelLowering.scf_for,
    scf.IfOp: KernelLowering.scf_if,
}
KernelLowering.handlers = _HANDLERS


# ---------------------------------------------------------------------------------------------------------------
# gpu_math's arithmetic on PTX registers


class PtxArith(gpu_math.Arith[SSAValue, SSAValue, SSAValue]):
    """:class:`picograd.target.gpu_math.Arith` emitting PTX instructions through a :class:`KernelLowering`."""

    def __init__(self, lowering: KernelLowering, fmt: gpu_math.Format):
        self.lw = lowering
        self.fmt = fmt
        self.k = fmt.kind
        self.i = "s32" if fmt.bits == 32 else "s64"
        self.b = "b32" if fmt.bits == 32 else "b64"

    def _r(self, op: Operation) -> SSAValue:
        return self.lw.r(op)

    def c(self, value: float) -> SSAValue:
        return self.lw.imm(float(value), self.k)

    def add(self, a, b):
        return self._r(ptx.AddOp(a, b, self.k, rnd="rn"))

    def sub(self, a, b):
        return self._r(ptx.SubOp(a, b, self.k, rnd="rn"))

    def mul(self, a, b):
        return self._r(ptx.MulOp(a, b, self.k, mode="rn"))

    def fma(self, a, b, c):
        return self._r(ptx.FmaOp(a, b, c, self.k, rnd="rn"))

    def div(self, a, b):
        return self._r(ptx.DivOp(a, b, self.k, mode="rn"))

    def neg(self, a):
        return self._r(ptx.NegOp(a, self.k))

    def abs(self, a):
        return self._r(ptx.AbsOp(a, self.k))

    def sqrt(self, a):
        return self._r(ptx.SqrtOp(a, self.k, mode="rn"))

    def rint(self, a):
        return self._r(ptx.CvtOp(a, self.k, self.k, rnd="rni"))

    def cmp(self, pred, a, b):
        return self._r(ptx.SetpOp(pred, a, b, self.k))

    def p_and(self, a, b):
        return self._r(ptx.AndOp(a, b, "pred"))

    def p_or(self, a, b):
        return self._r(ptx.OrOp(a, b, "pred"))

    def sel(self, p, a, b):
        return self._r(ptx.SelpOp(a, b, p, self.k))

    def ci(self, value):
        return self.lw.imm(int(value), self.i)

    def to_int(self, a):
        return self._r(ptx.CvtOp(a, self.i, self.k, rnd="rzi"))

    def to_float(self, i):
        return self._r(ptx.CvtOp(i, self.k, self.i, rnd="rn"))

    def bits(self, a):
        return self._r(ptx.MovOp(a, self.b))

    def from_bits(self, i):
        return self._r(ptx.MovOp(self._r(ptx.MovOp(i, self.b)), self.k))

    def iadd(self, a, b):
        return self._r(ptx.AddOp(a, b, self.i))

    def isub(self, a, b):
        return self._r(ptx.SubOp(a, b, self.i))

    def iand(self, a, b):
        return self._r(ptx.AndOp(a, b, self.b))

    def ior(self, a, b):
        return self._r(ptx.OrOp(a, b, self.b))

    def shl(self, a, n):
        return self._r(ptx.ShlOp(a, self.lw.imm(n, "u32"), self.b))

    def sar(self, a, n):
        return self._r(ptx.ShrOp(a, self.lw.imm(n, "u32"), self.i))

    def widen(self, a):
        return self._r(ptx.CvtOp(a, "f64", "f32"))

    def narrow(self, a):
        return self._r(ptx.CvtOp(a, "f32", "f64", rnd="rn"))


# ---------------------------------------------------------------------------------------------------------------
# The pass


def lower_gpu_module(module: gpu.ModuleOp, target: str, version: str, contract: bool) -> ptx.ModuleOp:
    """The ``ptx.module`` of the kernels of ``module``."""
    pmod = ptx.ModuleOp(target=target, version=version)
    pmod.location = module.location
    pmod.attributes[GPU_MODULE_ATTR] = StringAttr(module.sym_name.data)
    for op in module.body.block.ops:
        built = None
        if isinstance(op, gpu.FuncOp):  # kernels built in the ptx dialect (wgmma matmuls, flash-wgmma attention)
            built = matmul_wgmma.lower_kernel(op, target) or attention_wgmma.lower_kernel(op, target)
        if built is not None:
            if not any(isinstance(o, ptx.SharedOp) for o in pmod.body.block.ops):
                pmod.add_op(matmul_wgmma.dynamic_shared())
            pmod.add_op(built)
        elif isinstance(op, gpu.FuncOp):
            if op.kernel is None:
                raise PassFailedException(
                    f"pg-to-ptx: @{op.sym_name.data} is not a kernel (device functions are not supported)"
                )
            kernel = KernelLowering(op, contract, (target, version)).run()
            if SHARED_BYTES_ATTR in kernel.attributes and not any(
                isinstance(o, ptx.SharedOp) for o in pmod.body.block.ops
            ):  # workgroup buffers past the static limit (ptx_addressing.workgroup_alloc)
                pmod.add_op(matmul_wgmma.dynamic_shared())
            pmod.add_op(kernel)
        else:
            raise PassFailedException(f"pg-to-ptx: '{op.name}'{where(op)} in a gpu.module has no PTX lowering")
    return pmod


def division_magic(d: int, width: int) -> tuple[int, int]:
    """Granlund and Montgomery's constants for unsigned division by ``d`` (not a power of two) of ``width``-bit
    integers: ``(m, l)`` with ``l = ceil(log2 d)`` and ``m = floor(2^width (2^l - d) / d) + 1`` (less than
    ``2^width``), so that ``n / d == (t + ((n - t) >> 1)) >> (l - 1)`` with ``t = mulhi(m, n)`` for every
    ``n < 2^width`` (``KernelLowering.udiv_const``)."""
    shift = (d - 1).bit_length()
    return ((1 << width) * ((1 << shift) - d)) // d + 1, shift


@dataclass(frozen=True)
class PgToPtx(ModulePass):
    """Replace every ``gpu.module`` by a ``ptx.module`` (see the module docstring). Options: ``arch`` (the
    ``.target``: ``sm_90`` or ``sm_90a``), ``version`` (the PTX ISA version, default 8.0) and ``contract``
    (fuse a multiply feeding one add into an ``fma``)."""

    name = "pg-to-ptx"
    arch: str = "sm_90"
    version: str = "8.0"
    contract: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        modules = [m for m in op.ops if isinstance(m, gpu.ModuleOp)]
        if not modules:
            funcs = [f for f in op.walk() if isinstance(f, scf.ParallelOp)]
            if funcs:
                raise PassFailedException(
                    f"pg-to-ptx: the module has loop nests{where(funcs[0])} but no gpu.module (run pg-to-gpu first)"
                )
        for m in modules:
            pmod = lower_gpu_module(m, self.arch, self.version, self.contract)
            block = m.parent_block()
            assert block is not None
            block.insert_op_before(pmod, m)
            block.erase_op(m)
