"""LLVM IR text for the loop nests of the loop stage, for the CPU (``picograd.runtime.cpu_jit`` JIT-compiles it).

Input: one ``scf.parallel`` nest of the loop stage (``pg-bufferize`` then ``pg-to-loops``): ``scf.parallel`` /
``scf.for`` / ``scf.if`` over static ``memref`` buffers with ``memref.load``/``memref.store``, ``arith`` and
``math`` ops. Output (:func:`emit_nest`): the text of one LLVM function

    define void @NAME(ptr noalias %slots, ptr noalias %map, i64 %lo, i64 %hi)

that runs the iterations ``lo <= i < hi`` of the nest's outermost parallel dimension (all of its inner dimensions),
so that threads can split a nest by its first dimension. ``%slots`` is the runtime's table of buffer addresses and
``%map`` the nest's own table of slot numbers: its k-th buffer is ``slots[map[k]]``, read once at entry (so that
the nests of the layers of a model, which differ only in their buffers, are one function) and passed to the
nest's body, ``@NAME.body(ptr noalias %buf0, ..., i64 %lo, i64 %hi)`` (internal, always inlined): the distinct
buffers of a nest never overlap where one is written (the memory plan keeps a kernel's outputs apart from its
inputs), and saying so lets LLVM keep a loaded value in a register across stores and vectorize (a gather's row
index was reloaded after every element stored). Values the nest uses from outside are constants
(``arith.constant``) or buffers; anything else raises :class:`Unsupported`.

**Translation**, table-driven (the way xDSL's ``convert_arith_to_x86`` maps ops): ``BINARY`` (one LLVM
instruction), ``INTRINSICS`` (an ``llvm.*`` intrinsic), ``CASTS``, the comparison predicates (MLIR's ``cmpf``/
``cmpi`` predicate numbers are LLVM's ``fcmp``/``icmp`` predicates in the same order), and the transcendental
``math`` ops expanded inline from :mod:`picograd.target.gpu_math` through :class:`LlvmArith` (the accurate
schemes of the GPU lowering, in plain arithmetic, so that a loop calling ``exp`` still vectorizes; f32 results
within the ``gpu_math.MEASURED_ULP`` bounds). Buffers are row-major with the identity layout: an access is
one ``getelementptr`` of the linearized index. ``i1`` elements are stored as bytes (numpy's ``bool``).
``scf`` regions become basic blocks (loop headers with ``phi`` nodes for the induction variable and the
``iter_args``). The ``fadd``/``fmul`` that accumulate a reduction in an ``scf.for`` carry the ``reassoc`` flag,
so that LLVM may vectorize the reduction (a different summation order, as numpy's pairwise summation is one too);
no other float operation is reassociated or contracted. Short perfectly nested loops whose accesses all advance
with their flat index run as one flat loop (``_flattened``, ``_flat_dims``; addresses from the affine form of the
indices, ``_affine``), so that the 8 iterations of an image row do not stop LLVM's vectorizer; a transposing copy
runs in 8 x 8 blocks transposed with shuffles (``_block_transpose``).

``fptosi``/``fptoui`` follow x86 and numpy: NaN and out-of-range values give the smallest integer (LLVM leaves them
undefined); 16-bit floats raise :class:`Unsupported` (the runtime runs such kernels with numpy).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
)
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

from picograd.target import gpu_math


class Unsupported(Exception):
    """The nest holds an op or a type that has no LLVM form here (the runtime runs its kernel with numpy)."""


BINARY: dict[type[Operation], str] = {
    arith.AddfOp: "fadd",
    arith.SubfOp: "fsub",
    arith.MulfOp: "fmul",
    arith.DivfOp: "fdiv",
    arith.AddiOp: "add",
    arith.SubiOp: "sub",
    arith.MuliOp: "mul",
    arith.AndIOp: "and",
    arith.OrIOp: "or",
    arith.XOrIOp: "xor",
    arith.ShLIOp: "shl",
    arith.ShRSIOp: "ashr",
    arith.ShRUIOp: "lshr",
}
# integer division: a zero divisor gives 0 and INT_MIN / -1 wraps, as numpy (LLVM leaves both undefined; x86 traps)
DIVISIONS: dict[type[Operation], tuple[str, bool, str]] = {  # op: (instruction, signed, rounding)
    arith.DivSIOp: ("sdiv", True, "trunc"),
    arith.DivUIOp: ("udiv", False, "trunc"),
    arith.RemSIOp: ("srem", True, "rem"),
    arith.RemUIOp: ("urem", False, "rem"),
    arith.FloorDivSIOp: ("sdiv", True, "floor"),
    arith.CeilDivSIOp: ("sdiv", True, "ceil"),
    arith.CeilDivUIOp: ("udiv", False, "ceil"),
}
INTRINSICS: dict[type[Operation], str] = {
    arith.MaximumfOp: "maximum",  # NaN-propagating, as numpy.maximum
    arith.MinimumfOp: "minimum",
    arith.MaxnumfOp: "maxnum",
    arith.MinnumfOp: "minnum",
    arith.MaxSIOp: "smax",
    arith.MinSIOp: "smin",
    arith.MaxUIOp: "umax",
    arith.MinUIOp: "umin",
    mathd.SqrtOp: "sqrt",
    mathd.AbsFOp: "fabs",
    mathd.FloorOp: "floor",
    mathd.CeilOp: "ceil",
    mathd.TruncOp: "trunc",
    mathd.RoundEvenOp: "roundeven",
    mathd.CopySignOp: "copysign",
    mathd.FmaOp: "fma",
}
CASTS: dict[type[Operation], str] = {
    arith.ExtFOp: "fpext",
    arith.TruncFOp: "fptrunc",
    arith.ExtSIOp: "sext",
    arith.ExtUIOp: "zext",
    arith.TruncIOp: "trunc",
    arith.SIToFPOp: "sitofp",
    arith.UIToFPOp: "uitofp",
    arith.BitcastOp: "bitcast",
}
CMPF = (
    "false",
    "oeq",
    "ogt",
    "oge",
    "olt",
    "ole",
    "one",
    "ord",
    "ueq",
    "ugt",
    "uge",
    "ult",
    "ule",
    "une",
    "uno",
    "true",
)
CMPI = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")
# math ops expanded from gpu_math: the function of gpu_math.FUNCTIONS named by the op's name after "math."
MATH_FUNCTION_NAMES = {"powf": "pow"}
REASSOCIABLE = (arith.AddfOp, arith.MulfOp)


def llvm_type(t: Attribute) -> str:
    """The LLVM type of a scalar type (``index`` is ``i64``). Raises ``Unsupported`` for 16-bit floats."""
    if isinstance(t, Float32Type):
        return "float"
    if isinstance(t, Float64Type):
        return "double"
    if isinstance(t, IndexType):
        return "i64"
    if isinstance(t, IntegerType):
        return f"i{t.width.data}"
    raise Unsupported(f"type {t}")


def float_literal(value: float) -> str:
    """An LLVM float literal: the double's bits in hex (exact for f32 values too, as LLVM wants)."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return f"0x{bits:016X}"


@dataclass
class NestFunction:
    """One loop nest as an LLVM function (see the module docstring): its name and text, the intrinsics it
    declares, and the bounds of its outermost parallel dimension."""

    name: str
    text: str
    declares: set[str] = field(default_factory=set)
    lower: int = 0
    upper: int = 0
    buffers: tuple[SSAValue, ...] = ()
    splits: bool = True
    """Whether threads may split its first dimension: not when that dimension's index is the last (contiguous) index
    of a load or store that other indices of the nest stride across (a column sum, a per-channel sum of a
    channels-last tensor, a nest with its loops outside its parallel loop): each thread would stream the whole
    tensor for a few elements of each row (a column sum of (16384, 256) at 2 threads: 4x slower than at 1; the
    DDPM's per-channel sums at 2 threads slower than at 1)."""


class _Emitter:
    def __init__(self) -> None:
        self.buffers: list[SSAValue] = []  # in the order of the nest's map
        self.lines: list[str] = []
        self.names: dict[SSAValue, str] = {}
        self.bases: dict[SSAValue, str] = {}
        self.declares: set[str] = set()
        self.loops = 0  # loops emitted so far
        self.count = 0
        self.block = "entry"
        self.hoisted: set[Operation] = set()  # ops emitted before the loops
        # the flat loops (``flat_loops``) around the op being emitted: the flat index, and each merged loop's
        # induction variable with its weight in it
        self.flat: list[tuple[str, list[tuple[SSAValue, int]]]] = []

    # -- names, blocks, instructions
    def fresh(self, hint: str = "v") -> str:
        self.count += 1
        return f"%{hint}{self.count}"

    def label(self, hint: str) -> str:
        self.count += 1
        return f"{hint}{self.count}"

    def start(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label

    def emit(self, text: str, hint: str = "v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {text}")
        return name

    def line(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def call(self, intrinsic: str, ret: str, args: Sequence[tuple[str, str]], suffix: str | None = None) -> str:
        name = f"llvm.{intrinsic}.{suffix or _suffix(ret)}"
        self.declares.add(f"declare {ret} @{name}({', '.join(t for t, _ in args)})")
        return self.emit(f"call {ret} @{name}({', '.join(f'{t} {v}' for t, v in args)})")

    # -- values
    def value(self, v: SSAValue) -> str:
        if v in self.names:
            return self.names[v]
        op = v.owner
        if isinstance(op, arith.ConstantOp):
            return constant_literal(op)
        raise Unsupported(f"value {v} defined outside the nest by {getattr(op, 'name', op)}")

    def base(self, buf: SSAValue) -> str:
        if buf not in self.bases:
            if not isinstance(buf.type, MemRefType):
                raise Unsupported(f"buffer {buf}")
            self.bases[buf] = f"%buf{len(self.buffers)}"
            self.buffers.append(buf)
        return self.bases[buf]

    def address(
        self, buf: SSAValue, indices: Sequence[SSAValue], names: Sequence[str] | None = None
    ) -> tuple[str, str, bool]:
        """(element pointer, memory type, is i1) of ``buf[indices]`` (``names``: the indices' LLVM values, if not
        theirs)."""
        t = buf.type
        assert isinstance(t, MemRefType)
        if not isinstance(t.layout, NoneAttr):
            raise Unsupported(f"memref layout {t.layout}")
        shape = t.get_shape()
        if any(d < 0 for d in shape):
            raise Unsupported("dynamic memref")
        el = t.element_type
        is_bool = isinstance(el, IntegerType) and el.width.data == 1
        mem = "i8" if is_bool else llvm_type(el)
        base = self.base(buf)
        if not indices:
            return base, mem, is_bool
        if names is None and self.flat:
            flat = self.flat_address(indices, shape)
            if flat is not None:
                return self.emit(f"getelementptr {mem}, ptr {base}, i64 {flat}", "p"), mem, is_bool
        values = list(names) if names is not None else [self.value(idx) for idx in indices]
        lin = values[0]
        for idx, dim in zip(values[1:], shape[1:], strict=True):
            lin = self.emit(f"mul i64 {lin}, {dim}")
            lin = self.emit(f"add i64 {lin}, {idx}")
        ptr = self.emit(f"getelementptr {mem}, ptr {base}, i64 {lin}", "p")
        return ptr, mem, is_bool

    def flat_address(self, indices: Sequence[SSAValue], shape: Sequence[int]) -> str | None:
        """The linear index of ``indices`` into a buffer of ``shape`` as a sum of terms, where the induction
        variables of a flat loop (``flat_loops``) appear in it as that loop's own index does (``i * w_0 + j * w_1 +
        ...`` with ``w_k`` the iterations of the loops inside ``k``, times one stride): then as the flat index
        times the stride, an address LLVM sees advance by a constant step (contiguous or strided loads, not
        gathers at quotients and remainders); None when no flat loop's index appears in it."""
        lin = _linear(indices, shape)
        terms: list[tuple[str, int]] = []
        used = False
        for flat_iv, weights in self.flat:
            coeffs = [lin.pop(iv, 0) for iv, _ in weights]
            if not any(coeffs):
                continue
            used = True
            unit = coeffs[-1]
            if all(c == unit * w for c, (_, w) in zip(coeffs, weights, strict=True)):
                terms.append((flat_iv, unit))
            else:
                terms += [(self.names[iv], c) for c, (iv, _) in zip(coeffs, weights, strict=True) if c]
        if not used:
            return None
        const = lin.pop(None, 0)
        for term, coeff in lin.items():
            if coeff and term is not None:
                terms.append((self.term(term), coeff))
        total = str(const)
        for name, coeff in terms:
            scaled = name if coeff == 1 else self.emit(f"mul i64 {name}, {coeff}")
            total = self.emit(f"add i64 {total}, {scaled}")
        return total

    def term(self, term: Term) -> str:
        """The LLVM value of an ``_affine`` term."""
        if isinstance(term, tuple):
            kind, v, d = term
            return self.floordiv(v, d) if kind == "div" else self.modulo(v, d)
        assert term is not None
        return self.value(term)

    # -- regions
    def ops(self, block: Block) -> None:
        for op in block.ops:
            self.op(op)

    def op(self, op: Operation) -> None:  # noqa: C901 - one case per op family
        kind = type(op)
        if isinstance(op, arith.ConstantOp) or op in self.hoisted:
            return
        if kind in BINARY:
            t = llvm_type(op.results[0].type)
            flags = " reassoc" if isinstance(op, REASSOCIABLE) and _accumulates(op) else ""
            a, b = (self.value(x) for x in op.operands)
            self.names[op.results[0]] = self.emit(f"{BINARY[kind]}{flags} {t} {a}, {b}")
        elif isinstance(op, arith.DivUIOp | arith.RemUIOp) and (d := _constant_index(op.operands[1])):
            # an index split by a reshape (GroupNorm's groups): made affine where the ranges allow, so that what
            # depends only on the outer indices (a group's statistics) is loop-invariant for LLVM to hoist
            fold = self.floordiv if isinstance(op, arith.DivUIOp) else self.modulo
            self.names[op.results[0]] = fold(op.operands[0], d)
        elif kind in DIVISIONS:
            self.names[op.results[0]] = self.divide(op, *DIVISIONS[kind])
        elif kind in INTRINSICS:
            t = llvm_type(op.results[0].type)
            self.names[op.results[0]] = self.call(INTRINSICS[kind], t, [(t, self.value(x)) for x in op.operands])
        elif kind in CASTS:
            src, dst = llvm_type(op.operands[0].type), llvm_type(op.results[0].type)
            self.names[op.results[0]] = self.emit(f"{CASTS[kind]} {src} {self.value(op.operands[0])} to {dst}")
        elif isinstance(op, arith.IndexCastOp):
            src, dst = llvm_type(op.operands[0].type), llvm_type(op.results[0].type)
            x = self.value(op.operands[0])
            if src == dst:
                self.names[op.results[0]] = x
            else:
                wide = int(src[1:]) < int(dst[1:])
                ext = "sext" if isinstance(op, arith.IndexCastOp) else "zext"
                self.names[op.results[0]] = self.emit(f"{ext if wide else 'trunc'} {src} {x} to {dst}")
        elif isinstance(op, arith.FPToSIOp | arith.FPToUIOp):
            self.names[op.results[0]] = self.fp_to_int(op)
        elif isinstance(op, arith.NegfOp):
            t = llvm_type(op.results[0].type)
            self.names[op.results[0]] = self.emit(f"fneg {t} {self.value(op.operands[0])}")
        elif isinstance(op, arith.CmpfOp | arith.CmpiOp):
            table, instr = (CMPF, "fcmp") if isinstance(op, arith.CmpfOp) else (CMPI, "icmp")
            t = llvm_type(op.operands[0].type)
            a, b = (self.value(x) for x in op.operands)
            self.names[op.results[0]] = self.emit(f"{instr} {table[op.predicate.value.data]} {t} {a}, {b}")
        elif isinstance(op, arith.SelectOp):
            t = llvm_type(op.results[0].type)
            c, a, b = (self.value(x) for x in op.operands)
            self.names[op.results[0]] = self.emit(f"select i1 {c}, {t} {a}, {t} {b}")
        elif isinstance(op, arith.MulUIExtendedOp):
            t = llvm_type(op.operands[0].type)
            w = int(t[1:])
            a, b = (self.emit(f"zext {t} {self.value(x)} to i{2 * w}") for x in op.operands)
            p = self.emit(f"mul i{2 * w} {a}, {b}")
            self.names[op.results[0]] = self.emit(f"trunc i{2 * w} {p} to {t}")
            hi = self.emit(f"lshr i{2 * w} {p}, {w}")
            self.names[op.results[1]] = self.emit(f"trunc i{2 * w} {hi} to {t}")
        elif isinstance(op, mathd.RsqrtOp):
            t = llvm_type(op.results[0].type)
            s = self.call("sqrt", t, [(t, self.value(op.operands[0]))])
            self.names[op.results[0]] = self.emit(f"fdiv {t} {float_literal(1.0)}, {s}")
        elif isinstance(op, mathd.AbsIOp):
            t = llvm_type(op.results[0].type)
            self.names[op.results[0]] = self.call("abs", t, [(t, self.value(op.operands[0])), ("i1", "false")])
        elif op.name.startswith("math.") and _math_function(op) in gpu_math.FUNCTIONS:
            self.names[op.results[0]] = self.math(op)
        elif isinstance(op, memref.LoadOp):
            ptr, mem, is_bool = self.address(op.memref, op.indices)
            v = self.emit(f"load {mem}, ptr {ptr}")
            self.names[op.results[0]] = self.emit(f"icmp ne i8 {v}, 0") if is_bool else v
        elif isinstance(op, memref.StoreOp):
            ptr, mem, is_bool = self.address(op.memref, op.indices)
            v = self.value(op.value)
            if is_bool:
                v = self.emit(f"zext i1 {v} to i8")
            self.line(f"store {mem} {v}, ptr {ptr}")
        elif isinstance(op, scf.ForOp):
            self.for_loop(op)
        elif isinstance(op, scf.IfOp):
            self.if_else(op)
        elif isinstance(op, scf.ParallelOp):
            if op.initVals:
                raise Unsupported("scf.parallel with reductions")
            self.parallel(op, list(op.body.block.args), 0)
        elif isinstance(op, scf.ReduceOp | scf.YieldOp):
            return  # terminators: their parents read them
        else:
            raise Unsupported(f"op {op.name}")

    def divide(self, op: Operation, instr: str, signed: bool, rounding: str) -> str:
        t = llvm_type(op.results[0].type)
        a, b = (self.value(x) for x in op.operands)
        bad = self.emit(f"icmp eq {t} {b}, 0")
        if signed:
            bad = self.emit(f"or i1 {bad}, {self.emit(f'icmp eq {t} {b}, -1')}")
        safe = self.emit(f"select i1 {bad}, {t} 1, {t} {b}")
        q = self.emit(f"{instr} {t} {a}, {safe}")
        if rounding in ("floor", "ceil"):  # step the truncated quotient where the remainder is non-zero
            r = self.emit(f"{'srem' if signed else 'urem'} {t} {a}, {safe}")
            inexact = self.emit(f"icmp ne {t} {r}, 0")
            if signed:
                negative = self.emit(
                    f"xor i1 {self.emit(f'icmp slt {t} {a}, 0')}, {self.emit(f'icmp slt {t} {safe}, 0')}"
                )
                away = negative if rounding == "floor" else self.emit(f"xor i1 {negative}, true")
            else:
                away = "true"
            step = self.emit(f"and i1 {inexact}, {away}")
            delta = self.emit(f"select i1 {step}, {t} {-1 if rounding == 'floor' else 1}, {t} 0")
            q = self.emit(f"add {t} {q}, {delta}")
        if not signed:
            return self.emit(f"select i1 {bad}, {t} 0, {t} {q}")
        # b == -1: a / -1 = -a (wrapping), a % -1 = 0; b == 0: 0
        minus_one = self.emit(f"icmp eq {t} {b}, -1")
        neg = self.emit(f"sub {t} 0, {a}")
        special = self.emit(f"select i1 {minus_one}, {t} {'0' if rounding == 'rem' else neg}, {t} 0")
        return self.emit(f"select i1 {bad}, {t} {special}, {t} {q}")

    def floordiv(self, v: SSAValue, d: int) -> str:
        """``v // d`` for an index ``v >= 0`` and ``d > 0``: ``(m x + b) // d`` is ``x // (d / m)`` when ``m``
        divides ``d`` and ``0 <= b < m``, and ``x (m / d) + b // d`` when ``d`` divides ``m``; ``b // d`` is 0 when
        ``b < d``."""
        if d == 1:
            return self.value(v)
        bound = _index_bound(v)
        if bound is not None and bound <= d:
            return "0"
        split = _scaled(v)
        if split is not None and _index_bound(split[0]) is not None:  # x >= 0: no wrapping
            x, m, b = split
            bb = _index_bound(b) if b is not None else 1
            if d % m == 0 and bb is not None and bb <= m:
                return self.floordiv(x, d // m)
            if m % d == 0 and bb is not None:
                scaled = self.emit(f"mul i64 {self.value(x)}, {m // d}")
                return scaled if b is None else self.emit(f"add i64 {scaled}, {self.floordiv(b, d)}")
        return self.emit(f"udiv i64 {self.value(v)}, {d}")

    def modulo(self, v: SSAValue, d: int) -> str:
        """``v % d`` for an index ``v >= 0`` and ``d > 0``, by the rules of :meth:`floordiv`: ``(m x + b) % d`` is
        ``(x % (d / m)) m + b``, or ``b % d`` when ``d`` divides ``m``; ``b % d`` is ``b`` when ``b < d``."""
        if d == 1:
            return "0"
        bound = _index_bound(v)
        if bound is not None and bound <= d:
            return self.value(v)
        split = _scaled(v)
        if split is not None and _index_bound(split[0]) is not None:  # x >= 0: no wrapping
            x, m, b = split
            bb = _index_bound(b) if b is not None else 1
            if d % m == 0 and bb is not None and bb <= m:
                scaled = self.emit(f"mul i64 {self.modulo(x, d // m)}, {m}")
                return scaled if b is None else self.emit(f"add i64 {scaled}, {self.value(b)}")
            if m % d == 0 and bb is not None:
                return "0" if b is None else self.modulo(b, d)
        return self.emit(f"urem i64 {self.value(v)}, {d}")

    def fp_to_int(self, op: Operation) -> str:
        src, dst = llvm_type(op.operands[0].type), llvm_type(op.results[0].type)
        x = self.value(op.operands[0])
        w = int(dst[1:])
        signed = isinstance(op, arith.FPToSIOp)
        sat = self.call("fptosi.sat" if signed else "fptoui.sat", dst, [(src, x)], suffix=f"{dst}.{_suffix(src)}")
        lo, hi = (-(2.0 ** (w - 1)), 2.0 ** (w - 1)) if signed else (0.0, 2.0**w)
        ge = self.emit(f"fcmp oge {src} {x}, {float_literal(lo)}")
        lt = self.emit(f"fcmp olt {src} {x}, {float_literal(hi)}")
        ok = self.emit(f"and i1 {ge}, {lt}")
        smallest = -(1 << (w - 1)) if signed else 0
        return self.emit(f"select i1 {ok}, {dst} {sat}, {dst} {smallest}")

    def math(self, op: Operation) -> str:
        name = _math_function(op)
        t = llvm_type(op.results[0].type)
        kind = "f32" if t == "float" else "f64"
        fn = gpu_math.FUNCTIONS[name]
        args = [self.value(x) for x in op.operands]
        if kind == "f32" and name in gpu_math.F64_EVALUATED:
            m64 = LlvmArith(self, gpu_math.F64)
            wide = [m64.widen(a) for a in args]
            out = fn(m64, *wide, target=gpu_math.F32) if name in ("sin", "cos") else fn(m64, *wide)
            return m64.narrow(out)
        return fn(LlvmArith(self, gpu_math.FORMATS[kind]), *args)

    def loop(
        self,
        lb: str,
        ub: str,
        step: str,
        carried: Sequence[tuple[str, str]],
        body: Callable[[str, list[str]], list[str]],
        vectorize: bool = True,
        unroll: bool = True,
    ) -> list[str]:
        """``for (iv = lb; iv < ub; iv += step)`` carrying ``carried`` (type, initial value) values: ``body(iv,
        values)`` emits the body and returns the next values. Returns the values after the loop."""
        pre = self.block
        head, inner, done = self.label("head"), self.label("body"), self.label("done")
        self.line(f"br label %{head}")
        self.start(head)
        phi_at = len(self.lines)
        iv = self.fresh("i")
        phis = [self.fresh("c") for _ in carried]
        cond = self.emit(f"icmp slt i64 {iv}, {ub}")
        self.line(f"br i1 {cond}, label %{inner}, label %{done}")
        self.start(inner)
        loops_before = self.loops
        nxt = body(iv, phis)
        self.loops += 1
        stepped = self.emit(f"add i64 {iv}, {step}")
        latch = self.block
        # a reduction loop around other loops: LLVM would unroll short inner loops fully and vectorize this one
        # across its strided iterations with gathers (6x slower on GroupNorm's weight gradient than scalar code);
        # so with ``vectorize`` false (the outer loops of a transposing nest: ``_transposes``); ``unroll`` false
        # keeps an innermost loop whole for the loop vectorizer (``_copies_rows``, ``_transposes``)
        outer = (bool(carried) or not vectorize) and self.loops > loops_before + 1
        mark = NO_VECTORIZE if outer else NO_UNROLL if not unroll and self.loops == loops_before + 1 else None
        self.line(f"br label %{head}" + (f", !llvm.loop {mark}" if mark else ""))
        phi_lines = [f"  {iv} = phi i64 [ {lb}, %{pre} ], [ {stepped}, %{latch} ]"]
        for (t, init), phi, n in zip(carried, phis, nxt, strict=True):
            phi_lines.append(f"  {phi} = phi {t} [ {init}, %{pre} ], [ {n}, %{latch} ]")
        self.lines[phi_at:phi_at] = phi_lines
        self.start(done)
        return phis

    def for_loop(self, op: scf.ForOp) -> None:
        group = _flattened(op)
        if len(group) > 1:
            self.flat_loops(group)
            return
        block = op.body.block
        carried = [(llvm_type(v.type), self.value(v)) for v in op.iter_args]

        def body(iv: str, values: list[str]) -> list[str]:
            self.names[block.args[0]] = iv
            for arg, v in zip(block.args[1:], values, strict=True):
                self.names[arg] = v
            self.ops(block)
            yield_op = block.last_op
            assert isinstance(yield_op, scf.YieldOp)
            return [self.value(v) for v in yield_op.operands]

        out = self.loop(self.value(op.lb), self.value(op.ub), self.value(op.step), carried, body)
        for r, v in zip(op.results, out, strict=True):
            self.names[r] = v

    def flat_loops(self, group: list[scf.ForOp]) -> None:
        """The perfectly nested loops ``group`` (outermost first, see ``_flattened``) as one loop over the product
        of their trip counts, each induction variable a quotient and remainder of the flat one: the pure ops
        between the loops run in the flat body, in the same order (every loop's iterations are in the same order
        as nested, so a float reduction's sum is unchanged)."""
        trips = [_trip_count(loop) for loop in group]
        carried = [(llvm_type(v.type), self.value(v)) for v in group[0].iter_args]
        innermost = group[-1].body.block
        weights: list[tuple[SSAValue, int]] = [
            (loop.body.block.args[0], math.prod(trips[k + 1 :])) for k, loop in enumerate(group)
        ]

        def body(iv: str, values: list[str]) -> list[str]:
            self.flat.append((iv, weights))
            for k, loop in enumerate(group):
                below = math.prod(trips[k + 1 :])
                index = self.emit(f"udiv i64 {iv}, {below}") if below > 1 else iv
                if k > 0:
                    index = self.emit(f"urem i64 {index}, {trips[k]}")
                block = loop.body.block
                self.names[block.args[0]] = index
                for arg, v in zip(block.args[1:], values, strict=True):
                    self.names[arg] = v
            for loop in group[:-1]:
                for op in loop.body.block.ops:
                    if not isinstance(op, scf.ForOp | scf.YieldOp):
                        self.op(op)
            self.ops(innermost)
            self.flat.pop()
            yield_op = innermost.last_op
            assert isinstance(yield_op, scf.YieldOp)
            return [self.value(v) for v in yield_op.operands]

        out = self.loop("0", str(math.prod(trips)), "1", carried, body, unroll=False)
        for r, v in zip(group[0].results, out, strict=True):
            self.names[r] = v

    def parallel(
        self,
        op: scf.ParallelOp,
        ivs: Sequence[SSAValue],
        d: int,
        bounds: tuple[str, str] | None = None,
        inner: Callable[[], None] | None = None,
    ) -> None:
        """The loops over dims ``d..`` of ``op`` around ``inner`` (default: the nest's body)."""
        if d == len(ivs):
            if inner is None:
                self.ops(op.body.block)
            else:
                inner()
            return
        if bounds is None and _flat_dims(op, d) == d:
            self.flat_dims(op, ivs, d, inner)
            return
        lb, ub = bounds if bounds is not None else (self.value(op.lowerBound[d]), self.value(op.upperBound[d]))

        def body(iv: str, values: list[str]) -> list[str]:
            self.names[ivs[d]] = iv
            self.parallel(op, ivs, d + 1, inner=inner)
            return []

        last = d == len(ivs) - 1
        transposes = _transposes(op)
        vectorize = last or not transposes
        self.loop(
            lb, ub, self.value(op.step[d]), [], body, vectorize, unroll=not (last and (transposes or _copies_rows(op)))
        )

    def flat_dims(self, op: scf.ParallelOp, ivs: Sequence[SSAValue], d: int, inner: Callable[[], None] | None) -> None:
        """The dims ``d..`` of ``op`` as one flat loop (as ``flat_loops`` merges ``scf.for`` loops)."""
        trips = [_dim_trip_count(op, k) for k in range(d, len(ivs))]
        weights = [(ivs[d + k], math.prod(trips[k + 1 :])) for k in range(len(trips))]

        def body(iv: str, values: list[str]) -> list[str]:
            self.flat.append((iv, weights))
            for k, (v, below) in enumerate(weights):
                index = self.emit(f"udiv i64 {iv}, {below}") if below > 1 else iv
                self.names[v] = self.emit(f"urem i64 {index}, {trips[k]}") if k > 0 else index
            if inner is None:
                self.ops(op.body.block)
            else:
                inner()
            self.flat.pop()
            return []

        self.loop("0", str(math.prod(trips)), "1", [], body, unroll=False)

    def transposed(self, nest: scf.ParallelOp, load: memref.LoadOp, store: memref.StoreOp, p: int, q: int) -> None:
        """Emit a transposing copy (``_block_transpose``) in blocks of ``BLOCK`` x ``BLOCK`` elements: ``BLOCK``
        vector loads along dim ``q`` (contiguous in the source), the block transposed in registers
        (``shufflevector``), ``BLOCK`` vector stores along dim ``p`` (contiguous in the destination); the other dims
        are loops around the blocks, the first over ``lo..hi``."""
        ivs = list(nest.body.block.args)
        extents = [_dim_trip_count(nest, k) for k in range(len(ivs))]
        t = llvm_type(store.value.type)
        vec, align = f"<{BLOCK} x {t}>", {"float": 4, "double": 8}.get(t, 1)
        others = [k for k in range(len(ivs)) if k not in (p, q)]

        def block(q0: str, p0: str) -> list[str]:
            rows = []
            for i in range(BLOCK):
                self.names[ivs[q]], self.names[ivs[p]] = q0, self.emit(f"add i64 {p0}, {i}")
                ptr, _, _ = self.address(load.memref, load.indices)
                rows.append(self.emit(f"load {vec}, ptr {ptr}, align {align}"))
            for j, column in enumerate(self.transpose8(rows, vec)):
                self.names[ivs[q]], self.names[ivs[p]] = self.emit(f"add i64 {q0}, {j}"), p0
                ptr, _, _ = self.address(store.memref, store.indices)
                self.line(f"store {vec} {column}, ptr {ptr}, align {align}")
            return []

        def over(i: int) -> None:
            if i == len(others):
                self.loop(
                    "0",
                    str(extents[q]),
                    str(BLOCK),
                    [],
                    lambda q0, _: self.loop("0", str(extents[p]), str(BLOCK), [], lambda p0, _: block(q0, p0)),
                )
                return
            k = others[i]
            lb, ub = ("%lo", "%hi") if k == 0 else ("0", str(extents[k]))

            def body(iv: str, _: list[str]) -> list[str]:
                self.names[ivs[k]] = iv
                over(i + 1)
                return []

            self.loop(lb, ub, "1", [], body)

        over(0)

    def transpose8(self, rows: list[str], vec: str) -> list[str]:
        """The columns of the 8 x 8 block whose rows are the vectors ``rows``: three rounds of two-vector shuffles
        (pairs of elements, pairs of pairs, then halves), as the ``unpcklps``/``unpckhps``/``vperm2f128`` transpose."""
        lo1, hi1 = "0, 8, 1, 9, 4, 12, 5, 13", "2, 10, 3, 11, 6, 14, 7, 15"
        lo2, hi2 = "0, 1, 8, 9, 4, 5, 12, 13", "2, 3, 10, 11, 6, 7, 14, 15"
        lo3, hi3 = "0, 1, 2, 3, 8, 9, 10, 11", "4, 5, 6, 7, 12, 13, 14, 15"

        def shuffle(a: str, b: str, mask: str) -> str:
            lanes = ", ".join(f"i32 {m}" for m in mask.split(", "))
            return self.emit(f"shufflevector {vec} {a}, {vec} {b}, <8 x i32> <{lanes}>")

        t = [shuffle(rows[k & ~1], rows[k | 1], lo1 if k % 2 == 0 else hi1) for k in range(8)]
        # t0 = lo(r0, r1), t1 = hi(r0, r1), t2 = lo(r2, r3), ...
        u = [
            shuffle(t[0], t[2], lo2), shuffle(t[0], t[2], hi2), shuffle(t[1], t[3], lo2), shuffle(t[1], t[3], hi2),
            shuffle(t[4], t[6], lo2), shuffle(t[4], t[6], hi2), shuffle(t[5], t[7], lo2), shuffle(t[5], t[7], hi2),
        ]  # fmt: skip
        columns = [""] * 8
        for k in range(4):
            columns[k] = shuffle(u[k], u[k + 4], lo3)
            columns[k + 4] = shuffle(u[k], u[k + 4], hi3)
        return columns

    def interchanged(
        self, nest: scf.ParallelOp, pre: list[Operation], loops: list[scf.ForOp], store: memref.StoreOp
    ) -> None:
        """Emit a reduction nest with its reduction loops outside (see ``_interchange``)."""
        ivs = list(nest.body.block.args)
        el = store.value.type

        def initial() -> None:
            for op in pre:
                self.op(op)
            ptr, mem, _ = self.address(store.memref, store.indices)
            self.line(f"store {mem} {self.value(loops[0].iter_args[0])}, ptr {ptr}")

        self.parallel(nest, ivs, 0, bounds=("%lo", "%hi"), inner=initial)

        def step() -> None:
            for op in pre:
                self.op(op)
            for loop in loops[:-1]:
                for op in loop.body.block.ops:
                    if _pure(op):
                        self.op(op)
            innermost = loops[-1].body.block
            ptr, mem, _ = self.address(store.memref, store.indices)
            self.names[innermost.args[1]] = self.emit(f"load {llvm_type(el)}, ptr {ptr}")
            for op in innermost.ops:
                if not isinstance(op, scf.YieldOp):
                    self.op(op)
            last = innermost.last_op
            assert isinstance(last, scf.YieldOp)
            ptr, mem, _ = self.address(store.memref, store.indices)
            self.line(f"store {mem} {self.value(last.operands[0])}, ptr {ptr}")

        self.loops_outside(nest, ivs, loops, step)

    def interchanged_stores(self, nest: scf.ParallelOp, loops: list[scf.ForOp]) -> None:
        """Emit a scatter nest with its loops outside its parallel loop (see ``_interchange_stores``)."""
        ivs = list(nest.body.block.args)

        def step() -> None:
            for loop in loops:
                for op in loop.body.block.ops:
                    if not isinstance(op, scf.ForOp | scf.YieldOp):
                        self.op(op)

        self.loops_outside(nest, ivs, loops, step)

    def loops_outside(
        self, nest: scf.ParallelOp, ivs: Sequence[SSAValue], loops: list[scf.ForOp], step: Callable[[], None]
    ) -> None:
        """Emit ``loops`` (outermost first) around the parallel loop of ``nest``, whose body is ``step``: the
        interchanged order of the two emitters above."""

        def over(k: int) -> None:
            if k == len(loops):
                self.parallel(nest, ivs, 0, bounds=("%lo", "%hi"), inner=step)
                return
            loop = loops[k]

            def body(iv: str, values: list[str]) -> list[str]:
                self.names[loop.body.block.args[0]] = iv
                over(k + 1)
                return []

            self.loop(self.value(loop.lb), self.value(loop.ub), self.value(loop.step), [], body)

        over(0)

    def if_else(self, op: scf.IfOp) -> None:
        guarded = _guarded_load(op)
        if guarded is not None:
            self.guarded_load(op, *guarded)
            return
        then, other, join = self.label("then"), self.label("else"), self.label("join")
        self.line(f"br i1 {self.value(op.cond)}, label %{then}, label %{other}")
        ends: list[tuple[list[str], str]] = []
        for label, region in ((then, op.true_region), (other, op.false_region)):
            self.start(label)
            values: list[str] = []
            if region.blocks:
                block = region.block
                self.ops(block)
                last = block.last_op
                if isinstance(last, scf.YieldOp):
                    values = [self.value(v) for v in last.operands]
            ends.append((values, self.block))
            self.line(f"br label %{join}")
        self.start(join)
        for k, r in enumerate(op.results):
            t = llvm_type(r.type)
            incoming = ", ".join(f"[ {vals[k]}, %{blk} ]" for vals, blk in ends)
            self.names[r] = self.emit(f"phi {t} {incoming}")

    def guarded_load(self, op: scf.IfOp, load: memref.LoadOp, other: SSAValue) -> None:
        """``cond ? buf[indices] : other`` without a branch (a padded read: ``pg.pad`` read through by its reader),
        so that the loop around it vectorizes: the load reads at the indices where ``cond`` holds and at 0 where
        not (an index that is a loop's induction variable within the dim's bounds is kept: the address stays
        affine in it), and a ``select`` picks ``other`` where ``cond`` fails."""
        cond = self.value(op.cond)
        t = load.memref.type
        assert isinstance(t, MemRefType)
        names = []
        for idx, dim in zip(load.indices, t.get_shape(), strict=True):
            v = self.value(idx)
            names.append(v if _iv_below(idx, dim) else self.emit(f"select i1 {cond}, i64 {v}, i64 0"))
        ptr, mem, _ = self.address(load.memref, load.indices, names)
        v = self.emit(f"load {mem}, ptr {ptr}")
        self.names[op.results[0]] = self.emit(f"select i1 {cond}, {mem} {v}, {mem} {self.value(other)}")


def _guarded_load(op: scf.IfOp) -> tuple[memref.LoadOp, SSAValue] | None:
    """(the load, the other value) of ``scf.if %c { yield buf[idx] } else { yield %v }`` with ``idx`` and ``%v``
    defined outside it (a float or wider-integer element), else None."""
    if len(op.results) != 1 or not op.true_region.blocks or not op.false_region.blocks:
        return None
    then = list(op.true_region.block.ops)
    other = list(op.false_region.block.ops)
    if len(then) != 2 or len(other) != 1 or not isinstance(then[0], memref.LoadOp):
        return None
    load, yielded, other_yield = then[0], then[1], other[0]
    if not isinstance(yielded, scf.YieldOp) or not isinstance(other_yield, scf.YieldOp):
        return None
    if yielded.operands[0] is not load.results[0] or not load.indices:
        return None
    el = load.results[0].type
    t = load.memref.type
    if isinstance(el, IntegerType) and el.width.data == 1 or not isinstance(t, MemRefType) or 0 in t.get_shape():
        return None  # (an empty buffer has no element 0 to read instead)
    inside = set(op.walk())
    value = other_yield.operands[0]
    if any(v.owner in inside for v in (*load.indices, value)):
        return None
    return load, value


def _constant_index(v: SSAValue) -> int:
    """The value of a positive constant index ``v``, else 0."""
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        if isinstance(v.type, IndexType):
            return max(int(owner.value.value.data), 0)
    return 0


Term = SSAValue | tuple[str, SSAValue, int] | None
"""A term of ``_affine``: an index value, ``("div", v, d)`` / ``("mod", v, d)`` for ``v // d`` / ``v % d`` of an index
``v >= 0``, or None for the constant."""


def _affine(v: SSAValue) -> dict[Term, int]:
    """The index ``v`` as ``{term: coefficient}`` through ``arith.addi``, ``arith.muli`` by constants, and quotients
    and remainders by constants split as ``_Emitter.floordiv`` and ``modulo`` split them; any other value is a
    term of its own."""
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr) and isinstance(v.type, IndexType):
        return {None: int(owner.value.value.data)}
    if isinstance(owner, arith.AddiOp):
        return _plus(_affine(owner.operands[0]), _affine(owner.operands[1]))
    if isinstance(owner, arith.MuliOp):
        a, b = (_affine(x) for x in owner.operands)
        for x, y in ((a, b), (b, a)):
            if set(y) <= {None}:
                return _times(x, y.get(None, 0))
    if isinstance(owner, arith.DivUIOp | arith.RemUIOp) and (d := _constant_index(owner.operands[1])):
        split = _affine_div if isinstance(owner, arith.DivUIOp) else _affine_mod
        return split(owner.operands[0], d)
    return {v: 1}


def _plus(a: dict[Term, int], b: dict[Term, int]) -> dict[Term, int]:
    total = dict(a)
    for term, coeff in b.items():
        total[term] = total.get(term, 0) + coeff
    return total


def _times(a: dict[Term, int], k: int) -> dict[Term, int]:
    return {term: coeff * k for term, coeff in a.items()}


def _affine_div(v: SSAValue, d: int) -> dict[Term, int]:
    """``v // d`` as ``_affine`` terms (``_split``), else one opaque term."""
    split = _split(v, d)
    return split[0] if split is not None else {("div", v, d): 1}


def _affine_mod(v: SSAValue, d: int) -> dict[Term, int]:
    """``v % d`` as ``_affine`` terms (``_split``), else one opaque term."""
    split = _split(v, d)
    return split[1] if split is not None else {("mod", v, d): 1}


def _split(v: SSAValue, d: int) -> tuple[dict[Term, int], dict[Term, int]] | None:
    """``(v // d, v % d)`` as ``_affine`` terms for an index ``v >= 0`` whose affine form ``sum c_t t + k`` splits
    into a multiple of ``d`` and a rest in ``[0, d)``: a term whose coefficient ``d`` divides goes to the quotient;
    one whose coefficient divides ``d`` as ``c t = d (t // (d/c)) + c (t % (d/c))``; any other to the rest. None
    when the rest's range (from the terms' bounds, every term >= 0) is not within ``[0, d)``."""
    form = _affine(v)
    quotient: dict[Term, int] = {}
    rest: dict[Term, int] = {}
    const = form.get(None, 0)
    if const < 0:
        return None
    if const // d:
        quotient[None] = const // d
    if const % d:
        rest[None] = const % d
    top = const % d  # the largest value the rest can take
    for term, c in form.items():
        if term is None or c == 0:
            continue
        bound = _term_bound(term)
        if c < 0 or bound is None:
            return None
        if c % d == 0:
            quotient[term] = quotient.get(term, 0) + c // d
            continue
        k = d // c
        if d % c == 0 and bound > k and not isinstance(term, tuple):
            quotient[("div", term, k)] = quotient.get(("div", term, k), 0) + 1
            rest[("mod", term, k)] = rest.get(("mod", term, k), 0) + c
            top += c * (k - 1)
            continue
        rest[term] = rest.get(term, 0) + c
        top += c * (bound - 1)
    return (quotient, rest) if top < d else None


def _term_bound(term: Term) -> int | None:
    """An exclusive upper bound of an ``_affine`` term (each is >= 0 where this is not None)."""
    if isinstance(term, tuple):
        kind, v, k = term
        if kind == "mod":
            return k
        b = _index_bound(v)
        return None if b is None else (b - 1) // k + 1
    return None if term is None else _index_bound(term)


def _linear(indices: Sequence[SSAValue], shape: Sequence[int]) -> dict[Term, int]:
    """The row-major linear index of ``indices`` into ``shape`` as ``_affine`` terms."""
    lin: dict[Term, int] = {}
    stride = 1
    for idx, dim in zip(reversed(indices), reversed(shape), strict=True):
        for term, coeff in _affine(idx).items():
            lin[term] = lin.get(term, 0) + coeff * stride
        stride *= dim
    return lin


def _dim_trip_count(op: scf.ParallelOp, d: int) -> int:
    """The iterations of dim ``d`` of ``op`` when it runs from constant 0 by constant 1 to a constant bound, else 0."""
    bounds = _iv_bounds(op.body.block.args[d])
    if bounds is None or bounds[0] != 0 or _constant_index(op.step[d]) != 1:
        return 0
    return max(bounds[1], 0)


def _flat_dims(op: scf.ParallelOp, d: int) -> int:
    """The first of the trailing dims of ``op`` (from ``d``, never its first) that run as one flat loop, by the rule
    of ``_flattened``; ``len(dims)`` for none. Not for transposing copies and row gathers, whose loops are marked
    for the vectorizer (``_transposes``, ``_copies_rows``)."""
    ivs = list(op.body.block.args)
    n = len(ivs)
    if n - max(d, 1) < 2 or _transposes(op) or _copies_rows(op):
        return n
    trips = [_dim_trip_count(op, k) for k in range(n)]
    start = n - 1
    below = trips[-1]
    while start > max(d, 1) and 0 < below <= FLATTEN_BELOW and below & (below - 1) == 0 and trips[start - 1] > 0:
        if not _flat_affine(ivs[start - 1 :], trips[start - 1 :], op.body.block):
            break
        start -= 1
        below *= trips[start]
    return start if start < n - 1 else n


def _flat_affine(ivs: Sequence[SSAValue], trips: Sequence[int], block: Block) -> bool:
    """Whether every load and store in ``block`` that depends on the induction variables ``ivs`` of loops nested
    in this order (``trips`` iterations each) does so as on their flat index (see ``_Emitter.flat_address``):
    merged, its address advances by a constant step."""
    weights = [math.prod(trips[k + 1 :]) for k in range(len(ivs))]
    for op in block.walk():
        if isinstance(op, memref.LoadOp | memref.StoreOp) and op.indices:
            t = op.memref.type
            assert isinstance(t, MemRefType)
            lin = _linear(op.indices, t.get_shape())
            coeffs = [lin.get(iv, 0) for iv in ivs]
            if any(coeffs) and any(c != coeffs[-1] * w for c, w in zip(coeffs, weights, strict=True)):
                return False
    return True


def _index_bound(v: SSAValue) -> int | None:
    """An exclusive upper bound of the index ``v`` (loop induction variables from constant bounds >= 0, constants,
    and their sums, products, quotients and remainders by constants), or None."""
    owner = v.owner
    if isinstance(v, BlockArgument):
        bounds = _iv_bounds(v)
        return bounds[1] if bounds is not None and bounds[0] >= 0 and bounds[1] > 0 else None
    if not isinstance(v.type, IndexType):
        return None
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        value = int(owner.value.value.data)
        return value + 1 if value >= 0 else None
    if isinstance(owner, arith.AddiOp | arith.MuliOp):
        a, b = (_index_bound(x) for x in owner.operands)
        if a is None or b is None:
            return None
        return a + b - 1 if isinstance(owner, arith.AddiOp) else (a - 1) * (b - 1) + 1
    if isinstance(owner, arith.DivUIOp | arith.RemUIOp) and (d := _constant_index(owner.operands[1])):
        a = _index_bound(owner.operands[0])
        if isinstance(owner, arith.RemUIOp):
            return d if a is None else min(a, d)
        return None if a is None else (a - 1) // d + 1
    return None


def _scaled(v: SSAValue) -> tuple[SSAValue, int, SSAValue | None] | None:
    """``(x, m, b)`` with ``v = x * m + b`` (``b`` None for 0) for a constant ``m > 1``, read off ``arith.muli``
    and ``arith.addi`` ops, else None."""
    owner = v.owner
    if isinstance(owner, arith.MuliOp):
        for x, c in (owner.operands, owner.operands[::-1]):
            if (m := _constant_index(c)) > 1:
                return x, m, None
        return None
    if isinstance(owner, arith.AddiOp):
        for a, b in (owner.operands, owner.operands[::-1]):
            inner = _scaled(a) if isinstance(a.owner, arith.MuliOp) else None
            if inner is not None and inner[2] is None:
                return inner[0], inner[1], b
    return None


def _iv_bounds(v: SSAValue) -> tuple[int, int] | None:
    """The constant (lower, upper) bounds of the loop (``scf.for``, or a dim of ``scf.parallel``) whose induction
    variable ``v`` is, or None."""
    if not isinstance(v, BlockArgument):
        return None
    parent = v.block.parent_op()
    if isinstance(parent, scf.ForOp) and v.index == 0:
        lb, ub = parent.lb, parent.ub
    elif isinstance(parent, scf.ParallelOp) and v.index < len(parent.lowerBound):
        lb, ub = parent.lowerBound[v.index], parent.upperBound[v.index]
    else:
        return None
    bounds = []
    for b in (lb, ub):
        owner = b.owner
        if not (isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr)):
            return None
        bounds.append(int(owner.value.value.data))
    return bounds[0], bounds[1]


def _iv_below(v: SSAValue, dim: int) -> bool:
    """Whether ``v`` is the induction variable of a loop from a constant lower bound >= 0 to a constant upper bound
    <= ``dim``."""
    bounds = _iv_bounds(v)
    return bounds is not None and 0 <= bounds[0] and bounds[1] <= dim


def _suffix(t: str) -> str:
    return {"float": "f32", "double": "f64"}.get(t, t)


def _math_function(op: Operation) -> str:
    name = op.name.removeprefix("math.")
    return MATH_FUNCTION_NAMES.get(name, name)


def _accumulates(op: Operation) -> bool:
    """Whether ``op`` combines an ``scf.for`` iteration value into the value it yields (a reduction's step)."""
    for x in op.operands:
        parent = x.owner
        if isinstance(parent, Block) and isinstance(parent.parent_op(), scf.ForOp) and x in parent.args[1:]:
            return any(isinstance(u.operation, scf.YieldOp) for u in op.results[0].uses)
    return False


def constant_literal(op: arith.ConstantOp) -> str:
    """The LLVM literal of an ``arith.constant`` of a scalar type."""
    v = op.value
    if isinstance(v, FloatAttr):
        llvm_type(v.type)
        return float_literal(float(v.value.data))
    if isinstance(v, IntegerAttr):
        if isinstance(v.type, IntegerType) and v.type.width.data == 1:
            return "true" if v.value.data else "false"
        return str(int(v.value.data))
    raise Unsupported(f"constant {v}")


def emit_nest(nest: scf.ParallelOp, name: str) -> NestFunction:
    """The LLVM function ``@name(ptr %slots, ptr %map, i64 %lo, i64 %hi)`` running iterations ``lo <= i < hi`` of
    the first dimension of ``nest`` (a loop-stage ``scf.parallel`` at the top of a function). The nest's k-th buffer
    (``NestFunction.buffers[k]``) is at ``slots[map[k]]``, so that nests that differ only in their buffers have
    the same text. Ops of the nest's body that do not depend on its indices (hyperparameters loaded from 0-d
    buffers the nest does not write, and the arithmetic on them) are computed once, before the loops. Raises
    :class:`Unsupported` for what has no LLVM form here."""
    if nest.initVals:
        raise Unsupported("scf.parallel with reductions")
    nest = _split_at_divisors(nest)
    e = _Emitter()
    e.start("body0")
    for op in _invariant_ops(nest):
        e.op(op)
        e.hoisted.add(op)
    plan = _interchange(nest, e.hoisted)
    scatter = _interchange_stores(nest, e.hoisted) if plan is None else None
    transpose = _block_transpose(nest, e.hoisted) if plan is None and scatter is None else None
    if transpose is not None:
        e.transposed(nest, *transpose)
    elif plan is not None:
        e.interchanged(nest, *plan)
    elif scatter is not None:
        e.interchanged_stores(nest, scatter)
    else:
        e.parallel(nest, list(nest.body.block.args), 0, bounds=("%lo", "%hi"))
    e.line("ret void")
    lower, upper = (_constant_int(v) for v in (nest.lowerBound[0], nest.upperBound[0]))
    params = [f"ptr noalias %buf{k}" for k in range(len(e.buffers))]
    body = [f"define internal void @{name}.body({', '.join([*params, 'i64 %lo', 'i64 %hi'])}) alwaysinline {{"]
    wrapper = [f"define void @{name}(ptr noalias %slots, ptr noalias %map, i64 %lo, i64 %hi) {{", "entry:"]
    for k in range(len(e.buffers)):
        wrapper.append(f"  %m{k} = getelementptr i64, ptr %map, i64 {k}")
        wrapper.append(f"  %k{k} = load i64, ptr %m{k}")
        wrapper.append(f"  %s{k} = getelementptr ptr, ptr %slots, i64 %k{k}")
        wrapper.append(f"  %b{k} = load ptr, ptr %s{k}")
    args = ", ".join([*(f"ptr %b{k}" for k in range(len(e.buffers))), "i64 %lo", "i64 %hi"])
    wrapper += [f"  call void @{name}.body({args})", "  ret void", "}"]
    text = "\n".join([*body, "entry:", "  br label %body0", *e.lines, "}", "", *wrapper])
    return NestFunction(name, text, e.declares, lower, upper, tuple(e.buffers), not _strides_across(nest))


FLATTEN_BELOW = 16
"""Loops of at most this many iterations (a power of two) are merged with the loop around them (``_flattened``)."""


SPLIT_FROM = 4
"""The smallest divisor a loop is split at (``_split_at_divisors``): the rows of a 4 x 4 image (the DDPM's 4 x 4
GroupNorm kernels: sums 1.6 ms a step with it, 2.1 from 8); not the CNN's 2 x 2 pooling windows."""


def _divisors(iv: BlockArgument, trips: int) -> list[int]:
    """The chain ``d_1 > d_2 > ...`` (each dividing the one before) of the constants that the loop index ``iv`` (of
    ``trips`` iterations) is divided by (``(x + iv) // d`` or ``% d`` in its loop's body, ``x`` a multiple of
    ``d``), each a power of two (as ``_flattened`` merges) of at least ``SPLIT_FROM``, dividing ``trips`` and
    smaller; empty for none."""
    found: set[int] = set()
    for op in iv.block.walk():
        if isinstance(op, arith.DivUIOp | arith.RemUIOp) and (d := _constant_index(op.operands[1])) > 1:
            form = _affine(op.operands[0])
            if form.get(iv) == 1 and all(c % d == 0 for t, c in form.items() if t is not iv):
                if trips % d == 0 and SPLIT_FROM <= d < trips and d & (d - 1) == 0:
                    found.add(d)
    chain: list[int] = []
    for d in sorted(found, reverse=True):
        if not chain or chain[-1] % d == 0:
            chain.append(d)
    return chain


def _loop_divisors(loop: scf.ForOp) -> list[int]:
    return _divisors(loop.body.block.args[0], _trip_count(loop))


def _dim_divisors(nest: scf.ParallelOp) -> list[list[int]]:
    """``_divisors`` of each dim of ``nest`` but its first (which threads split by ``lo``/``hi``); none for the
    transposing copies and row gathers, whose loops are shaped for the vectorizer (``_transposes``,
    ``_copies_rows``)."""
    ivs = nest.body.block.args
    if _transposes(nest) or _copies_rows(nest):
        return [[] for _ in ivs]
    return [[]] + [_divisors(ivs[d], _dim_trip_count(nest, d)) for d in range(1, len(ivs))]


def _split_at_divisors(nest: scf.ParallelOp) -> scf.ParallelOp:
    """``nest``, or a copy of it in which every loop (an ``scf.for``, or a dim of the nest but its first) whose
    index ``i`` is divided by constants (``_divisors``: a reduction over a reshaped dim, GroupNorm's (channels of a
    group x pixels), whose channel is ``i // 64``) runs as loops over ``i``'s digits in those bases (``i = a d_1 +
    b d_2 + c``): the quotients are loop indices, so loads at them are not gathers (LLVM vectorized GroupNorm's
    reductions with a gather of the per-channel parameters at every element) and the inner digits merge into one
    flat loop (``_flattened``, ``_flat_dims``). The iterations keep their order."""
    loops = [op for op in nest.walk() if isinstance(op, scf.ForOp) and _loop_divisors(op)]
    dims = _dim_divisors(nest)
    if not loops and not any(dims):
        return nest
    nest = nest.clone()
    for loop in [op for op in nest.walk() if isinstance(op, scf.ForOp) and _loop_divisors(op)]:
        _split_loop(loop, _loop_divisors(loop))
    if any(dims):
        nest = _split_dims(nest, dims)
    return nest


def _digits(total: int, chain: list[int]) -> tuple[list[int], list[int]]:
    """The trip counts of the loops over the digits of an index below ``total`` in the bases ``chain``, and the
    weights of the digits."""
    trips = [total // chain[0], *(a // b for a, b in zip(chain, chain[1:], strict=False)), chain[-1]]
    return trips, [*chain, 1]


def _split_dims(nest: scf.ParallelOp, chains: list[list[int]]) -> scf.ParallelOp:
    """A new ``nest`` whose dim ``d`` is a run of dims over its index's digits in the bases ``chains[d]`` (none
    for an empty chain), the old index ``a d_1 + (b d_2 + c)`` computed at the top of the body."""
    old = nest.body.block
    consts: dict[int, SSAValue] = {}

    def const(n: int) -> SSAValue:
        if n not in consts:
            c = arith.ConstantOp(IntegerAttr(n, IndexType()))
            consts[n] = c.result
            made.append(c)
        return consts[n]

    made: list[Operation] = []
    lbs: list[SSAValue] = []
    ubs: list[SSAValue] = []
    steps: list[SSAValue] = []
    spans: list[tuple[int, list[int]]] = []  # per old dim: its first new dim and the digits' weights
    for d, chain in enumerate(chains):
        if not chain:
            spans.append((len(lbs), [1]))
            lbs.append(nest.lowerBound[d])
            ubs.append(nest.upperBound[d])
            steps.append(nest.step[d])
            continue
        trips, weights = _digits(_dim_trip_count(nest, d), chain)
        spans.append((len(lbs), weights))
        for t in trips:
            lbs.append(const(0))
            ubs.append(const(t))
            steps.append(const(1))
    block = Block(arg_types=[IndexType()] * len(lbs))
    top: list[Operation] = []
    for d, (first, weights) in enumerate(spans):
        index: SSAValue = block.args[first + len(weights) - 1]
        for k in range(len(weights) - 2, -1, -1):  # a d_k + (the rest): ``_scaled`` reads it
            scaled = arith.MuliOp(block.args[first + k], const(weights[k]))
            total = arith.AddiOp(scaled, index)
            top += [scaled, total]
            index = total.result
        old.args[d].replace_all_uses_with(index)
    block.add_ops(top)
    for op in list(old.ops):
        op.detach()
        block.add_op(op)
    new = scf.ParallelOp(lbs, ubs, steps, Region(block))
    new.attributes.update(nest.attributes)
    if made:  # the new bounds: constants before the nest (the nest is a detached copy: in a block of their own)
        Block(made + [new])
    return new


def _split_loop(loop: scf.ForOp, chain: list[int]) -> None:
    """Replace ``loop`` (from 0 by 1, ``_divisors`` ``chain``) by the perfect nest over its index's digits."""
    old, parent = loop.body.block, loop.parent_block()
    assert parent is not None
    trips, weights = _digits(_trip_count(loop), chain)
    consts: dict[int, SSAValue] = {}

    def const(n: int) -> SSAValue:
        if n not in consts:
            c = arith.ConstantOp(IntegerAttr(n, IndexType()))
            parent.insert_op_before(c, loop)  # outside the loops: their bounds (``_perfect_child``)
            consts[n] = c.result
        return consts[n]

    carried = [a.type for a in old.args[1:]]
    blocks = [Block(arg_types=[IndexType(), *carried]) for _ in trips]
    made: list[scf.ForOp] = []
    for k, t in enumerate(trips):
        inits = list(loop.iter_args) if k == 0 else list(blocks[k - 1].args[1:])
        made.append(scf.ForOp(const(0), const(t), const(1), inits, Region(blocks[k])))
    for k in range(1, len(trips)):
        blocks[k - 1].add_ops([made[k], scf.YieldOp(*made[k].results)])
    inner = blocks[-1]
    index: SSAValue = inner.args[0]
    for block, w in zip(blocks[-2::-1], weights[-2::-1], strict=True):  # a d_k + (the rest): ``_scaled`` reads it
        scaled = arith.MuliOp(block.args[0], const(w))
        total = arith.AddiOp(scaled, index)
        inner.add_ops([scaled, total])
        index = total.result
    for op in list(old.ops):
        op.detach()
        inner.add_op(op)
    old.args[0].replace_all_uses_with(index)
    for a, b in zip(old.args[1:], inner.args[1:], strict=True):
        a.replace_all_uses_with(b)
    parent.insert_op_before(made[0], loop)
    for r, n in zip(loop.results, made[0].results, strict=True):
        r.replace_all_uses_with(n)
    loop.detach()
    loop.erase()


def _trip_count(loop: scf.ForOp) -> int:
    """The iterations of ``loop`` when it runs from constant 0 by constant 1 to a constant bound, else 0."""
    bounds = _iv_bounds(loop.body.block.args[0])
    if bounds is None or bounds[0] != 0 or _constant_index(loop.step) != 1:
        return 0
    return max(bounds[1], 0)


def _perfect_child(loop: scf.ForOp) -> scf.ForOp | None:
    """The loop nested perfectly in ``loop``, or None: ``loop``'s body holds arithmetic (no loads, stores or
    regions), that loop and a yield of its results, the loop's ``iter_args`` are ``loop``'s carried values (used
    nowhere else), and its bounds are defined outside ``loop``."""
    block = loop.body.block
    inner = [op for op in block.ops if isinstance(op, scf.ForOp)]
    last = block.last_op
    if len(inner) != 1 or not isinstance(last, scf.YieldOp):
        return None
    child = inner[0]
    if list(last.operands) != list(child.results) or list(child.iter_args) != list(block.args[1:]):
        return None
    if any(len(list(a.uses)) != 1 for a in block.args[1:]):
        return None
    for op in block.ops:
        if op is not child and op is not last and not (op.name.startswith("arith.") and not op.regions):
            return None
    if any(v.owner is not None and v.owner in set(block.ops) for v in (child.lb, child.ub, child.step)):
        return None
    return child


def _flattened(loop: scf.ForOp) -> list[scf.ForOp]:
    """The loops that ``loop`` is merged with into one flat loop (``_Emitter.flat_loops``), outermost first: from the
    innermost loop of the perfect nest under ``loop`` outwards, while the loops already merged make at most
    ``FLATTEN_BELOW`` iterations (a power of two: the split is a shift and a mask), so that a short innermost loop
    over contiguous elements (the 8 of a row of an 8x8 image) becomes one long enough to vectorize. ``[loop]`` when
    ``loop`` is merged with nothing."""
    chain = [loop]
    while (child := _perfect_child(chain[-1])) is not None:
        chain.append(child)
    trips = [_trip_count(x) for x in chain]
    start = len(chain) - 1
    below = trips[-1]
    while start > 0 and 0 < below <= FLATTEN_BELOW and below & (below - 1) == 0 and trips[start - 1] > 0:
        group = chain[start - 1 :]
        if not _flat_affine([x.body.block.args[0] for x in group], trips[start - 1 :], chain[-1].body.block):
            break
        start -= 1
        below *= trips[start]
    return chain if start == 0 else [loop]


def _strides_across(nest: scf.ParallelOp) -> bool:
    """Whether the first dimension's index of ``nest`` is the last index of a load or store whose other indices
    depend on the nest's other indices (see ``NestFunction.splits``)."""
    first = nest.body.block.args[0]
    inner = _values_inside(nest) - {first}
    for op in nest.body.walk():
        if isinstance(op, memref.LoadOp | memref.StoreOp) and op.indices and op.indices[-1] is first:
            if any(_depends(v, inner) for v in op.indices[:-1]):
                return True
    return False


def _depends(v: SSAValue, values: set[SSAValue]) -> bool:
    """Whether ``v`` is one of ``values`` or computed from one."""
    if v in values:
        return True
    owner = v.owner
    return isinstance(owner, Operation) and any(_depends(x, values) for x in owner.operands)


BLOCK = 8
"""The side of the square blocks a transposing copy is done in (``_Emitter.transposed``)."""


Transpose = tuple[memref.LoadOp, memref.StoreOp, int, int]
"""A transposing copy's load and store and the dims along which they are contiguous (``_block_transpose``)."""


def _block_transpose(nest: scf.ParallelOp, hoisted: set[Operation]) -> Transpose | None:
    """``(load, store, p, q)`` when ``nest`` is a transposing copy done in blocks: its body stores, at its induction
    variables in order, what it loads at a permutation of them (no other op); the destination's last dim ``p`` is
    not the source's last dim ``q``, both run a multiple of ``BLOCK`` times from 0, neither is the first dim (the
    one threads split), and all dims have constant extents. Else None."""
    ivs = list(nest.body.block.args)
    ops = [op for op in nest.body.block.ops if op not in hoisted and not isinstance(op, scf.ReduceOp)]
    if len(ivs) < 3 or len(ops) != 2 or not isinstance(ops[0], memref.LoadOp) or not isinstance(ops[1], memref.StoreOp):
        return None
    load, store = ops
    if store.value is not load.results[0] or list(store.indices) != ivs:
        return None
    if sorted(map(id, load.indices)) != sorted(map(id, ivs)) or len(set(map(id, load.indices))) != len(ivs):
        return None
    if llvm_type(store.value.type) not in ("float", "double", "i32", "i64"):
        return None
    extents = [_dim_trip_count(nest, k) for k in range(len(ivs))]
    p, q = len(ivs) - 1, ivs.index(load.indices[-1])
    if p == q or q == 0 or 0 in extents or extents[p] % BLOCK or extents[q] % BLOCK:
        return None
    return load, store, p, q


def _transposes(nest: scf.ParallelOp) -> bool:
    """Whether ``nest`` (several parallel dims) stores along its innermost dim and loads across it (an address that
    the innermost index advances by more than 1): a transposing copy, whose outer loops LLVM
    vectorizes with scatters of the stores (16-wide ``vscatterqps``: 6x slower than the innermost loop's contiguous
    stores)."""
    ivs = list(nest.body.block.args)
    if len(ivs) < 2:
        return False
    stores = [o for o in nest.body.walk() if isinstance(o, memref.StoreOp) and o.indices]
    loads = [o for o in nest.body.walk() if isinstance(o, memref.LoadOp) and o.indices]
    if not any(o.indices[-1] is ivs[-1] for o in stores):
        return False
    for o in loads:  # strided along the innermost dim (a load the innermost dim leaves alone, as a row's, is not)
        t = o.memref.type
        assert isinstance(t, MemRefType)
        if _linear(o.indices, t.get_shape()).get(ivs[-1], 0) not in (0, 1):
            return True
    return False


def _copies_rows(nest: scf.ParallelOp) -> bool:
    """Whether ``nest`` is a gather of rows: it loads at an index read from memory, and its innermost index is the
    last index of every load and store using it (rows copied contiguously). LLVM unrolled the inner loop of such a
    copy fully (its 16 or 32 channels) before the loop vectorizer saw it, leaving scalar loads and stores (a
    convolution's im2col: 2x slower); its loop ID forbids that."""
    ivs = list(nest.body.block.args)
    accesses = [o for o in nest.body.walk() if isinstance(o, memref.LoadOp | memref.StoreOp) and o.indices]
    indirect = any(
        isinstance(o, arith.IndexCastOp) and isinstance(o.input.owner, memref.LoadOp) for o in nest.body.walk()
    )
    inner = ivs[-1]
    along = [o for o in accesses if inner in o.indices]
    return (
        indirect
        and any(isinstance(o, memref.StoreOp) for o in along)
        and all(o.indices[-1] is inner and inner not in o.indices[:-1] for o in along)
    )


def _pure(op: Operation) -> bool:
    return not op.regions and (op.name.startswith(("arith.", "math.")) or isinstance(op, memref.LoadOp))


def _interchange(
    nest: scf.ParallelOp, hoisted: set[Operation]
) -> tuple[list[Operation], list[scf.ForOp], memref.StoreOp] | None:
    """How to run a reduction nest with its reduction loops outside its parallel loops, or None.

    A reduction nest is ``parallel p { pre(p); acc = for r1 { for r2 { ... yield f(acc, p, r) } }; out[p] = acc }``
    (``pg-to-loops``): the pure ops ``pre`` (loads of values indexed by ``p``), a chain of ``scf.for`` loops carrying
    one accumulator, each outer loop's body holding pure ops, the next loop and the yield of its result, and the
    store of the result at indices made of ``p`` and constants. When its loads read along a parallel index (their
    last index is one: a sum over the leading dims, as a bias gradient), the loops over ``p`` innermost read memory
    contiguously and vectorize: ``out[p] = init`` for every ``p``, then ``for r { for p { out[p] = f(out[p], p, r)
    } }``, the same operations in the same order for each output. Returns (``pre``, the loops, the store)."""
    ops = [op for op in nest.body.block.ops if op not in hoisted and not isinstance(op, scf.ReduceOp)]
    if len(ops) < 2 or not isinstance(ops[-2], scf.ForOp) or not isinstance(ops[-1], memref.StoreOp):
        return None
    *pre, first, store = ops
    assert isinstance(first, scf.ForOp) and isinstance(store, memref.StoreOp)
    ivs = set(nest.body.block.args)
    if not all(_pure(op) for op in pre) or store.value is not first.results[0] or len(first.results) != 1:
        return None
    if isinstance(store.value.type, IntegerType) and store.value.type.width.data == 1:
        return None  # bytes in memory, i1 in registers: not worth a case
    if any(v not in ivs and not isinstance(v.owner, arith.ConstantOp) for v in store.indices):
        return None
    loops = [first]
    while True:
        body = loops[-1].body.block
        inner = [op for op in body.ops if isinstance(op, scf.ForOp)]
        if not inner:
            break
        nested = inner[0]
        last = body.last_op
        if (
            len(inner) != 1
            or len(nested.results) != 1
            or nested.iter_args[0] is not body.args[1]
            or not isinstance(last, scf.YieldOp)
            or last.operands[0] is not nested.results[0]
            or any(not _pure(op) for op in body.ops if op not in (nested, last))
            or len(list(body.args[1].uses)) != 1
        ):
            return None
        loops.append(nested)
    innermost = loops[-1].body.block
    if any(len(loop.body.block.args) != 2 for loop in loops):
        return None
    inside = _values_inside(nest)
    for loop in loops:  # the bounds are computed once, outside the parallel loops
        if any(v in inside for v in (loop.lb, loop.ub, loop.step)):
            return None
    if any(isinstance(op, memref.StoreOp) and op.memref is store.memref for op in innermost.walk()):
        return None
    loads = [op for op in innermost.walk() if isinstance(op, memref.LoadOp) and op.indices]
    along = [op for op in loads if op.indices[-1] in ivs]
    if not along or any(op.indices[-1] is innermost.args[0] for op in loads):
        return None
    return pre, loops, store


def _interchange_stores(nest: scf.ParallelOp, hoisted: set[Operation]) -> list[scf.ForOp] | None:
    """How to run a nest ``parallel p { for r1 { for r2 { ... out[f(r), p] = g(out[f(r), p], r, p) } } }`` (a
    scatter-add over rows: the embedding's gradient) with its loops outside the parallel loop, or None: ``for r1 {
    for r2 { for p { ... } } }``, which reads and writes rows contiguously and vectorizes. Every index ``p`` does
    the same operations in the same order, and touches memory the others do not: the nest has one parallel
    dimension, its stores are in the innermost loop at last index ``p``, and so are its loads of the buffers it
    stores to. The loops carry no values; their other ops are pure. Returns the loops, outermost first."""
    ops = [op for op in nest.body.block.ops if op not in hoisted and not isinstance(op, scf.ReduceOp)]
    (p,) = nest.body.block.args if len(nest.body.block.args) == 1 else (None,)
    if p is None or len(ops) != 1 or not isinstance(ops[0], scf.ForOp):
        return None
    loops = [ops[0]]
    while True:
        body = loops[-1].body.block
        if loops[-1].results or len(body.args) != 1:
            return None
        inner = [op for op in body.ops if isinstance(op, scf.ForOp)]
        if not inner:
            break
        if len(inner) != 1 or any(not _pure(op) for op in body.ops if op is not inner[0] and op is not body.last_op):
            return None
        loops.append(inner[0])
    innermost = loops[-1].body.block
    inside = _values_inside(nest)
    if any(v in inside for loop in loops for v in (loop.lb, loop.ub, loop.step)):
        return None
    stores = [op for op in innermost.ops if isinstance(op, memref.StoreOp)]
    stored = {op.memref for op in stores}
    body_ops = [op for op in innermost.ops if op is not innermost.last_op]
    if not stores or any(op.regions or not (_pure(op) or op in stores) for op in body_ops):
        return None
    for op in nest.walk():
        if isinstance(op, memref.StoreOp | memref.LoadOp) and op.memref in stored:
            if op.parent_block() is not innermost or not op.indices or op.indices[-1] is not p:
                return None
    if any(isinstance(v.type, IntegerType) and v.type.width.data == 1 for v in (op.value for op in stores)):
        return None  # bytes in memory, i1 in registers: not worth a case
    return loops


def _values_inside(nest: scf.ParallelOp) -> set[SSAValue]:
    """The values defined in the nest: its ops' results and its blocks' arguments."""
    inside: set[SSAValue] = set()
    for op in nest.walk():
        if op is not nest:
            inside.update(op.results)
        for region in op.regions:
            for block in region.blocks:
                inside.update(block.args)
    return inside


def _invariant_ops(nest: scf.ParallelOp) -> list[Operation]:
    """The ops of the nest's body block whose values are the same at every index: side-effect-free ops without
    regions whose operands are defined outside the nest or by such ops, and loads of buffers the nest never
    stores to at such indices."""
    stored = {op.memref for op in nest.walk() if isinstance(op, memref.StoreOp)}
    inside = _values_inside(nest)
    invariant: list[Operation] = []
    known: set[SSAValue] = set()
    for op in nest.body.block.ops:
        if op.regions or isinstance(op, memref.StoreOp | scf.ReduceOp | scf.YieldOp):
            continue
        if isinstance(op, memref.LoadOp) and op.memref in stored:
            continue
        if not (op.name.startswith(("arith.", "math.")) or isinstance(op, memref.LoadOp)):
            continue
        if all(v in known or v not in inside for v in op.operands):
            invariant.append(op)
            known.update(op.results)
    return invariant


def _constant_int(v: SSAValue) -> int:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return int(op.value.value.data)
    raise Unsupported("a parallel bound that is not a constant")


def sequence_text(name: str, calls: Sequence[tuple[str, int, int]]) -> str:
    """The LLVM function ``@name(ptr %slots, ptr %maps)`` calling nest functions one after another: the k-th call is
    ``calls[k] = (function, lo, hi)`` on ``%slots`` and the map ``maps[k]`` (so that a run of nests costs the runtime
    one call, and runs that differ only in their buffers have the same text). The calls are not inlined (the nests
    are compiled once, however many runs call them)."""
    lines = [f"define void @{name}(ptr noalias %slots, ptr noalias %maps) {{", "entry:"]
    for k, (fn, lo, hi) in enumerate(calls):
        lines.append(f"  %p{k} = getelementptr ptr, ptr %maps, i64 {k}")
        lines.append(f"  %m{k} = load ptr, ptr %p{k}")
        lines.append(f"  call void @{fn}(ptr %slots, ptr %m{k}, i64 {lo}, i64 {hi}) #0")
    return "\n".join([*lines, "  ret void", "}"])


ROW_KERNELS = ("softmax_rows", "exp_rows", "dsoftmax_rows")
"""The row kernels of :func:`row_kernels_text` (their names: ``pg_<kernel>_<f32|f64>``)."""


def row_kernels_text(kind: str) -> str:
    """LLVM functions over ``rows`` contiguous rows of ``n`` floats of ``kind`` (``"f32"``/``"f64"``), one pass or two
    per row instead of numpy's one pass per ufunc (the CPU attention's softmax, ``picograd.runtime.cpu_attention``):

    - ``pg_softmax_rows_<kind>(ptr s, ptr m, ptr l, i64 rows, i64 n)``: per row, ``m`` its maximum (NaN-propagating,
      as ``numpy.max``; 0 where it is ``-inf``), ``s = exp(s - m)`` in place and ``l`` the sum of the new row;
    - ``pg_exp_rows_<kind>(ptr s, ptr c, i64 rows, i64 n)``: ``s = exp(s - c)`` per row (``c`` 0 where ``-inf``);
    - ``pg_dsoftmax_rows_<kind>(ptr ds, ptr p, ptr d, <float> scale, i64 rows, i64 n)``: ``ds = (ds - d) * p *
      scale`` per row.

    ``exp`` is ``gpu_math``'s (as a nest's); the maximum and the sum are reductions LLVM may vectorize (the sum in
    another order than numpy's pairwise one)."""
    fmt = gpu_math.FORMATS[kind]
    t = "float" if fmt.bits == 32 else "double"
    zero, ninf = float_literal(0.0), float_literal(-float("inf"))
    texts = []

    def function(name: str, params: list[str], row: Callable[[_Emitter, str], None]) -> None:
        e = _Emitter()
        e.start("body0")

        def body(r: str, _: list[str]) -> list[str]:
            row(e, r)
            return []

        e.loop("0", "%rows", "1", [], body)
        e.line("ret void")
        head = f"define void @pg_{name}_{kind}({', '.join([*params, 'i64 %rows', 'i64 %n'])}) {{"
        texts.append("\n".join([head, "entry:", "  br label %body0", *e.lines, "}", *sorted(e.declares)]))

    def element(e: _Emitter, base: str, r: str, j: str) -> str:
        row = e.emit(f"mul i64 {r}, %n")
        at = e.emit(f"add i64 {row}, {j}")
        return e.emit(f"getelementptr {t}, ptr {base}, i64 {at}", "p")

    def scalar(e: _Emitter, base: str, r: str) -> str:
        return e.emit(f"getelementptr {t}, ptr {base}, i64 {r}", "p")

    def shift(e: _Emitter, c: str) -> str:  # -inf (a row without keys) -> 0
        inf = e.emit(f"fcmp oeq {t} {c}, {ninf}")
        return e.emit(f"select i1 {inf}, {t} {zero}, {t} {c}")

    def exp_store(e: _Emitter, p: str, c: str) -> str:
        x = e.emit(f"load {t}, ptr {p}")
        y = gpu_math.exp(LlvmArith(e, fmt), e.emit(f"fsub {t} {x}, {c}"))
        e.line(f"store {t} {y}, ptr {p}")
        return y

    def softmax(e: _Emitter, r: str) -> None:
        def most(j: str, acc: list[str]) -> list[str]:
            x = e.emit(f"load {t}, ptr {element(e, '%s', r, j)}")
            return [e.call("maximum", t, [(t, acc[0]), (t, x)])]

        (m,) = e.loop("0", "%n", "1", [(t, ninf)], most)
        m = shift(e, m)

        def total(j: str, acc: list[str]) -> list[str]:
            y = exp_store(e, element(e, "%s", r, j), m)
            return [e.emit(f"fadd reassoc {t} {acc[0]}, {y}")]

        (s,) = e.loop("0", "%n", "1", [(t, zero)], total)
        e.line(f"store {t} {m}, ptr {scalar(e, '%m', r)}")
        e.line(f"store {t} {s}, ptr {scalar(e, '%l', r)}")

    def exps(e: _Emitter, r: str) -> None:
        c = shift(e, e.emit(f"load {t}, ptr {scalar(e, '%c', r)}"))

        def each(j: str, _: list[str]) -> list[str]:
            exp_store(e, element(e, "%s", r, j), c)
            return []

        e.loop("0", "%n", "1", [], each)

    def dsoftmax(e: _Emitter, r: str) -> None:
        d = e.emit(f"load {t}, ptr {scalar(e, '%d', r)}")

        def each(j: str, _: list[str]) -> list[str]:
            q = element(e, "%ds", r, j)
            x = e.emit(f"load {t}, ptr {q}")
            p = e.emit(f"load {t}, ptr {element(e, '%p', r, j)}")
            y = e.emit(f"fsub {t} {x}, {d}")
            y = e.emit(f"fmul {t} {y}, {p}")
            y = e.emit(f"fmul {t} {y}, %scale")
            e.line(f"store {t} {y}, ptr {q}")
            return []

        e.loop("0", "%n", "1", [], each)

    function("softmax_rows", ["ptr noalias %s", "ptr noalias %m", "ptr noalias %l"], softmax)
    function("exp_rows", ["ptr noalias %s", "ptr noalias %c"], exps)
    function("dsoftmax_rows", ["ptr noalias %ds", "ptr noalias %p", "ptr noalias %d", f"{t} %scale"], dsoftmax)
    declares = sorted({line for text in texts for line in text.splitlines() if line.startswith("declare")})
    bodies = ["\n".join(x for x in text.splitlines() if not x.startswith("declare")) for text in texts]
    return "\n\n".join([*bodies, *declares]) + "\n"


NO_UNROLL = "!NO_UNROLL"
"""Placeholder for the loop ID of a loop LLVM must not unroll before vectorizing it (see ``_Emitter.loop``)."""
NO_VECTORIZE = "!NO_VECTORIZE"
"""Placeholder for the loop ID (``!llvm.loop``) of a loop LLVM must not vectorize: :func:`module_text` gives each
its own distinct node (so that function texts stay equal across the layers of a model)."""


def module_text(functions: Sequence[NestFunction], sequences: Sequence[str] = ()) -> str:
    """One LLVM module holding ``functions``, the intrinsics they declare and the ``sequences``
    (:func:`sequence_text`)."""
    declares = sorted(set().union(*(f.declares for f in functions))) if functions else []
    tail = ["attributes #0 = { noinline }"] if sequences else []
    text = "\n\n".join([*(f.text for f in functions), *sequences, *declares, *tail]) + "\n"
    pieces = re.split(f"({NO_VECTORIZE}|{NO_UNROLL})", text)
    if len(pieces) == 1:
        return text
    out, nodes = [pieces[0]], list[str]()
    for k in range(1, len(pieces), 2):
        i = f"!{len(nodes) + 2}"
        nodes.append(f"{i} = distinct !{{{i}, {'!0' if pieces[k] == NO_VECTORIZE else '!1'}}}")
        out += [i, pieces[k + 1]]
    return "".join(out) + "\n".join(
        ['!0 = !{!"llvm.loop.vectorize.enable", i1 false}', '!1 = !{!"llvm.loop.unroll.disable"}', *nodes, ""]
    )


class LlvmArith(gpu_math.Arith[str, str, str]):
    """:class:`picograd.target.gpu_math.Arith` emitting LLVM instructions (values are operand strings)."""

    def __init__(self, emitter: _Emitter, fmt: gpu_math.Format):
        self.e = emitter
        self.fmt = fmt
        self.t = "float" if fmt.bits == 32 else "double"
        self.it = f"i{fmt.bits}"

    def c(self, value: float) -> str:
        return float_literal(self.fmt.round(value))

    def _bin(self, instr: str, a: str, b: str, t: str | None = None) -> str:
        return self.e.emit(f"{instr} {t or self.t} {a}, {b}")

    def add(self, a: str, b: str) -> str:
        return self._bin("fadd", a, b)

    def sub(self, a: str, b: str) -> str:
        return self._bin("fsub", a, b)

    def mul(self, a: str, b: str) -> str:
        return self._bin("fmul", a, b)

    def fma(self, a: str, b: str, c: str) -> str:
        return self.e.call("fma", self.t, [(self.t, a), (self.t, b), (self.t, c)])

    def div(self, a: str, b: str) -> str:
        return self._bin("fdiv", a, b)

    def neg(self, a: str) -> str:
        return self.e.emit(f"fneg {self.t} {a}")

    def abs(self, a: str) -> str:
        return self.e.call("fabs", self.t, [(self.t, a)])

    def sqrt(self, a: str) -> str:
        return self.e.call("sqrt", self.t, [(self.t, a)])

    def rint(self, a: str) -> str:
        return self.e.call("roundeven", self.t, [(self.t, a)])

    def cmp(self, pred: str, a: str, b: str) -> str:
        p = "uno" if pred == "nan" else {"ne": "one"}.get(pred, "o" + pred)
        return self._bin(f"fcmp {p}", a, b)

    def p_and(self, a: str, b: str) -> str:
        return self._bin("and", a, b, "i1")

    def p_or(self, a: str, b: str) -> str:
        return self._bin("or", a, b, "i1")

    def sel(self, p: str, a: str, b: str) -> str:
        return self.e.emit(f"select i1 {p}, {self.t} {a}, {self.t} {b}")

    def ci(self, value: int) -> str:
        return str(value)

    def to_int(self, a: str) -> str:
        """``cvt.rzi``'s saturating truncation (NaN gives 0), as selects around a plain ``fptosi`` of a value in
        range: LLVM's loop vectorizer leaves a loop calling ``llvm.fptosi.sat`` scalar (every ``exp``, ``erf``,
        ``sin`` made one)."""
        w, p = self.fmt.bits, 24 if self.fmt.bits == 32 else 53
        top = 2.0 ** (w - 1)  # the first value out of range; the largest one in range: top - 2 ** (w - 1 - p)
        x = self.sel(self.cmp("lt", a, self.c(-top)), self.c(-top), a)
        x = self.sel(self.cmp("ge", x, self.c(top)), self.c(top - 2.0 ** (w - 1 - p)), x)
        x = self.sel(self.cmp("nan", a, a), self.c(0.0), x)
        n = self.e.emit(f"fptosi {self.t} {x} to {self.it}")
        high = self.cmp("ge", a, self.c(top))
        return self.e.emit(f"select i1 {high}, {self.it} {2 ** (w - 1) - 1}, {self.it} {n}")

    def to_float(self, i: str) -> str:
        return self.e.emit(f"sitofp {self.it} {i} to {self.t}")

    def bits(self, a: str) -> str:
        return self.e.emit(f"bitcast {self.t} {a} to {self.it}")

    def from_bits(self, i: str) -> str:
        return self.e.emit(f"bitcast {self.it} {i} to {self.t}")

    def iadd(self, a: str, b: str) -> str:
        return self._bin("add", a, b, self.it)

    def isub(self, a: str, b: str) -> str:
        return self._bin("sub", a, b, self.it)

    def iand(self, a: str, b: str) -> str:
        return self._bin("and", a, b, self.it)

    def ior(self, a: str, b: str) -> str:
        return self._bin("or", a, b, self.it)

    def shl(self, a: str, n: int) -> str:
        return self._bin("shl", a, str(n), self.it)

    def sar(self, a: str, n: int) -> str:
        return self._bin("ashr", a, str(n), self.it)

    def widen(self, a: Any) -> str:
        return self.e.emit(f"fpext float {a} to double")

    def narrow(self, a: str) -> str:
        return self.e.emit(f"fptrunc double {a} to float")
