"""The IR builder shared by the lowering passes and the kernel kinds (``picograd.passes.kinds``): constants made
once per body, at its start, and index arithmetic folded as it is built (after xDSL's
``transforms/loop_nest_lowering_utils.py``, which builds loop nests and their index arithmetic for several passes).

- :class:`ConstantPool`: the ``arith.constant`` ops of one body, each value made once, in the order first asked
  for, at the start of the body (or of a block of its own that the caller moves into place).
- :class:`Builder`: appends ops at one place (before an op, or at the end of a block, before its terminator when it
  has one), all with one location; its constants go to its pool. Index arithmetic on :data:`Index` values (an SSA
  value or a Python ``int``, folded while both sides are ints) is done in ``i32`` (:meth:`Builder.add`,
  :meth:`Builder.mul`, ...: powers of two become shifts and masks, which PTX needs since it has no 64-bit
  division instruction); :func:`delinearize` and :func:`affine` work on ``index`` values.

- :func:`philox4x32`: the ten rounds of Philox 4x32-10 (``pg.random``'s generator) as ``arith`` ops, for the loop
  stage and the attention kernels that regenerate dropout bits; :data:`PHILOX_ATTR` names the roles of the loop
  stage's ops drawing a uniform number (counter, key words, the word drawn).

Not a pass: ``all_passes`` finds no ``ModulePass`` here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    LocationAttr,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import IsTerminator

Index = SSAValue | int
_NO_FASTMATH = {"fastmath": arith.FastMathFlagsAttr("none")}
"""An index: an SSA value or a constant (folded until it is needed)."""


def const_value(v: SSAValue) -> int | float | None:
    """The value of an ``arith.constant`` integer or float, else None."""
    op = v.owner
    if isinstance(op, arith.ConstantOp):
        attr = op.value
        if isinstance(attr, IntegerAttr):
            return attr.value.data
        if isinstance(attr, FloatAttr):
            return attr.value.data
    return None


def const_int(v: SSAValue) -> int | None:
    """The value of an integer (or index) ``arith.constant``, else None."""
    c = const_value(v)
    return c if isinstance(c, int) else None


def _key(value: int | float | bool, t: Attribute) -> tuple[object, Attribute]:
    """A constant's key in a pool: floats by ``repr``, so that ``-0.0`` and ``0.0`` stay two constants."""
    return (int(value) if isinstance(t, IntegerType | IndexType) else repr(float(value)), t)


class ConstantPool:
    """The constants of one body, each made once, at its start in the order first asked for."""

    def __init__(self, block: Block):
        self.block = block
        self.last: Operation | None = None
        self.made: dict[tuple[object, Attribute], SSAValue] = {}
        self.values: dict[SSAValue, int | float] = {}

    def add(self, op: arith.ConstantOp) -> None:
        """Reuse an existing constant of the body (one cloned into it) for its value."""
        attr = op.value
        if isinstance(attr, IntegerAttr | FloatAttr):
            key = _key(attr.value.data, attr.type)
            if key not in self.made:
                self.made[key] = op.result
                self.values[op.result] = attr.value.data

    def place(self, op: Operation) -> None:
        """Put ``op`` (a constant, or another op that belongs with them: ``memref.get_global``) after the pool's
        last op, at the start of the block for the first."""
        Rewriter.insert_op(op, InsertPoint.after(self.last) if self.last else InsertPoint.at_start(self.block))
        self.last = op

    def get(self, value: int | float | bool, t: Attribute, loc: LocationAttr) -> SSAValue:
        """The ``arith.constant`` of ``value`` with type ``t`` (index, integer or float), made on first use."""
        key = _key(value, t)
        if key not in self.made:
            if isinstance(t, IntegerType | IndexType):
                op = arith.ConstantOp(IntegerAttr(int(value), t))
            else:
                assert isinstance(t, Float32Type | Float64Type), f"no constant of type {t}"
                op = arith.ConstantOp(FloatAttr(float(value), t))
            op.location = loc
            self.place(op)
            self.made[key] = op.result
            self.values[op.result] = value
        return self.made[key]

    def value_of(self, v: SSAValue) -> int | float | None:
        """The value of a constant of this pool, else None."""
        return self.values.get(v)


class Builder:
    """Appends ops before ``where`` (an insertion point) or at the end of ``where`` (a block; before its terminator
    once it has one), all with location ``loc``; constants go to ``consts``. Pure index arithmetic is memoized per
    builder (a builder made by :meth:`at` for a nested block starts from a copy of its parent's)."""

    def __init__(self, where: InsertPoint | Block, loc: LocationAttr, consts: ConstantPool):
        self.where = where
        self.loc = loc
        self.consts = consts
        self.memo: dict[tuple, SSAValue] = {}

    @property
    def ip(self) -> InsertPoint:
        """Where the next op goes."""
        if isinstance(self.where, InsertPoint):
            return self.where
        last = self.where.last_op
        if last is not None and last.has_trait(IsTerminator):
            return InsertPoint.before(last)
        return InsertPoint.at_end(self.where)

    def at(self, block: Block) -> Builder:
        """A builder for the end of ``block`` (nested in this one's: it may reuse the values made so far)."""
        b = Builder(block, self.loc, self.consts)
        b.memo = self.memo if block is self.where else dict(self.memo)
        return b

    @property
    def block(self) -> Block:
        """The block ops go to."""
        return self.where.block if isinstance(self.where, InsertPoint) else self.where

    def op(self, op: Operation) -> Operation:
        op.location = self.loc
        Rewriter.insert_op(op, self.ip)
        return op

    def v(self, op: Operation) -> SSAValue:
        return self.op(op).results[0]

    def float_op(self, cls: type[arith.FloatingPointLikeBinaryOperation], a: SSAValue, b: SSAValue) -> SSAValue:
        """``cls(a, b)`` (``arith.addf``, ``arith.mulf``, ...: two floats of one type, no fast-math flags), the op
        xDSL's constructor makes, built by ``Operation.__init__``: IRDL's generic builder, which sorts operands
        into groups, took two thirds of making the tens of thousands of these that the matmul kind's register tiles
        unroll into (``bench/compile_time.py``)."""
        op = cls.__new__(cls)
        Operation.__init__(op, operands=(a, b), result_types=(a.type,), properties=_NO_FASTMATH)
        return self.v(op)

    # --- constants -------------------------------------------------------------------------------------------

    def const(self, value: int | float, t: Attribute) -> SSAValue:
        return self.consts.get(value, t, self.loc)

    def index(self, n: int) -> SSAValue:
        return self.const(n, IndexType())

    def c32(self, n: int) -> SSAValue:
        return self.const(n, i32)

    # --- conversions -----------------------------------------------------------------------------------------

    def cast(self, x: SSAValue, t: Attribute) -> SSAValue:
        """``arith.index_cast`` of ``x`` to ``t`` (a new op every time)."""
        return self.v(arith.IndexCastOp(x, t))

    def idx(self, x: Index) -> SSAValue:
        """``x`` as an ``index`` (what memref accesses take; made once per value)."""
        if isinstance(x, int):
            return self.index(x)
        if isinstance(x.type, IndexType):
            return x
        return self.memoized(("idx", x), lambda: arith.IndexCastOp(x, IndexType()))

    def i32(self, x: SSAValue) -> SSAValue:
        """``x`` (an ``index``) as an ``i32`` (made once per value)."""
        return self.memoized(("i32", x), lambda: arith.IndexCastOp(x, i32))

    def memoized(self, key: tuple, make: Callable[[], Operation]) -> SSAValue:
        """The result of ``make()``, built once per ``key``."""
        if key not in self.memo:
            self.memo[key] = self.v(make())
        return self.memo[key]

    # --- i32 index arithmetic, folded ------------------------------------------------------------------------

    def add(self, a: Index, b: Index) -> Index:
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(a, int):
            a, b = b, a
        if b == 0:
            return a
        assert not isinstance(a, int)
        return self.memoized(("add", a, b), lambda: arith.AddiOp(a, self.c32(b) if isinstance(b, int) else b))

    def mul(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a * n
        if n == 1:
            return a
        return self.memoized(("mul", a, n), lambda: arith.MuliOp(a, self.c32(n)))

    def div(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a // n
        if n == 1:
            return a
        if n & (n - 1) == 0:  # a shift: PTX has no 64-bit division instruction (ptxas calls a routine)
            return self.memoized(("shr", a, n), lambda: arith.ShRUIOp(a, self.c32(n.bit_length() - 1)))
        return self.memoized(("div", a, n), lambda: arith.DivUIOp(a, self.c32(n)))

    def rem(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a % n
        if n == 1:
            return 0
        if n & (n - 1) == 0:
            return self.memoized(("and", a, n), lambda: arith.AndIOp(a, self.c32(n - 1)))
        return self.memoized(("rem", a, n), lambda: arith.RemUIOp(a, self.c32(n)))

    def min(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return min(a, n)
        return self.memoized(("min", a, n), lambda: arith.MinUIOp(a, self.c32(n)))

    def lt(self, a: Index, n: int) -> SSAValue | bool:
        if isinstance(a, int):
            return a < n
        return self.memoized(("lt", a, n), lambda: arith.CmpiOp(a, self.c32(n), "ult"))

    def cmp(self, pred: str, a: Index, b: Index) -> SSAValue | bool:
        """``arith.cmpi pred`` (``ult``, ``ule``) of two ``i32`` indices, folded when both are constants."""
        if isinstance(a, int) and isinstance(b, int):
            return {"ult": a < b, "ule": a <= b}[pred]
        x = self.c32(a) if isinstance(a, int) else a
        y = self.c32(b) if isinstance(b, int) else b
        return self.memoized(("cmp", pred, x, y), lambda: arith.CmpiOp(x, y, pred))

    def both(self, p: SSAValue | bool, q: SSAValue | bool) -> SSAValue | bool:
        if isinstance(p, bool):
            return q if p else False
        if isinstance(q, bool):
            return p if q else False
        return self.memoized(("and", p, q), lambda: arith.AndIOp(p, q))

    def select(self, p: SSAValue | bool, x: SSAValue, zero: SSAValue) -> SSAValue:
        if isinstance(p, bool):
            return x if p else zero
        return self.v(arith.SelectOp(p, x, zero))

    # --- memory ------------------------------------------------------------------------------------------------

    def load(self, buf: SSAValue, idx: Sequence[Index]) -> SSAValue:
        """``memref.load`` of ``buf`` at ``idx`` (``i32`` indices or constants)."""
        return self.v(memref.LoadOp.get(buf, [self.idx(x) for x in idx]))

    def store(self, value: SSAValue, buf: SSAValue, idx: Sequence[Index]) -> None:
        """``memref.store`` of ``value`` into ``buf`` at ``idx``."""
        self.op(memref.StoreOp.get(value, buf, [self.idx(x) for x in idx]))

    # --- control flow ----------------------------------------------------------------------------------------

    def when(self, p: SSAValue | bool) -> Builder | None:
        """A builder inside ``scf.if p`` (no results); None when ``p`` is false; this builder when it is true."""
        if isinstance(p, bool):
            return self if p else None
        then = Block()
        then.add_op(scf.YieldOp())
        then.last_op.location = self.loc  # type: ignore[union-attr]
        self.op(scf.IfOp(p, [], Region(then)))
        return self.at(then)

    def if_(self, cond: SSAValue, results: Sequence[Attribute] = ()) -> tuple[scf.IfOp, Builder, Builder]:
        """``scf.if`` (with an else branch when it has results); returns the op and builders for its branches,
        whose yields the caller emits when there are results."""
        then, other = Block(), Block()
        if not results:
            then.add_op(scf.YieldOp())
        op = scf.IfOp(cond, list(results), Region(then), Region(other) if results else None)
        self.op(op)
        for block in (then, other):
            if block.last_op is not None:
                block.last_op.location = self.loc
        return op, self.at(then), self.at(other)


PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
PHILOX_ATTR = "pg.philox"
"""Marks the loop stage's ops of a uniform ``pg.random`` draw by role (``counter``: the 64-bit counter, its first
operand the draw's offset; ``key0``/``key1``: the seed's low and high words; ``word``: the 32-bit word the element
takes), so that a kernel regenerating the draw can share one Philox call among the 4 elements of a counter."""


def signed32(v: int) -> int:
    """The ``i32`` constant with the bits of the unsigned 32-bit ``v``."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def philox4x32(
    pure: Callable[..., SSAValue],
    mul_wide: Callable[[SSAValue, SSAValue], tuple[SSAValue, SSAValue]],
    const32: Callable[[int], SSAValue],
    counter: Sequence[SSAValue],
    key: Sequence[SSAValue],
) -> list[SSAValue]:
    """The four ``i32`` words of Philox 4x32-10 (Salmon et al. 2011; ``picograd.dialects.philox.philox4x32``) of
    the counter words ``counter`` (low first) under the key words ``key``, built by ``pure(op_class, *operands)``
    and ``mul_wide(a, b)`` (the low and high words of the 64-bit product of two ``i32``)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    m0, m1 = (const32(signed32(m)) for m in PHILOX_M)
    w0, w1 = (const32(signed32(w)) for w in PHILOX_W)
    for r in range(10):
        if r:
            k0, k1 = pure(arith.AddiOp, k0, w0), pure(arith.AddiOp, k1, w1)
        lo0, hi0 = mul_wide(m0, c0)
        lo1, hi1 = mul_wide(m1, c2)
        x0 = pure(arith.XOrIOp, pure(arith.XOrIOp, hi1, c1), k0)
        x2 = pure(arith.XOrIOp, pure(arith.XOrIOp, hi0, c3), k1)
        c0, c1, c2, c3 = x0, lo1, x2, lo0
    return [c0, c1, c2, c3]


def delinearize(b: Builder, lin: SSAValue, extents: Sequence[int]) -> list[SSAValue]:
    """Row-major indices (``index`` values) of the linear index ``lin`` over ``extents``; the divisions are done in
    ``i32`` when the product fits (PTX strength-reduces 32-bit division by a constant)."""
    total = math.prod(extents)
    narrow = total < 2**31 and len(extents) > 1
    x = b.cast(lin, i32) if narrow else lin
    t = i32 if narrow else IndexType()
    out: list[SSAValue] = []
    rest = x
    for d in range(len(extents) - 1, -1, -1):
        n = extents[d]
        if d == 0:
            out.append(rest)
        elif n == 1:
            out.append(b.const(0, t))
        else:
            c = b.const(n, t)
            out.append(b.v(arith.RemUIOp(rest, c)))
            rest = b.v(arith.DivUIOp(rest, c))
    out.reverse()
    return [b.cast(i, IndexType()) if narrow else i for i in out]


def affine(b: Builder, j: SSAValue, lb: int, step: int) -> SSAValue:
    """``lb + j * step`` on ``index`` values (folded when trivial)."""
    if step != 1:
        j = b.v(arith.MuliOp(j, b.index(step)))
    if lb:
        j = b.v(arith.AddiOp(j, b.index(lb)))
    return j
