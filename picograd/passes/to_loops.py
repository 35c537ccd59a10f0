"""``pg-to-loops``: each ``kernel.launch`` becomes loop nests over its buffers.

Input: bufferized functions (``pg-bufferize``), whose ``kernel.launch`` ops hold tensor-level ``pg`` ops. Output:
``scf.parallel`` / ``scf.for`` nests over ``memref`` buffers with ``memref.load``/``memref.store``, ``arith`` and
``math`` ops, in place of each launch. No ``pg`` or ``kernel`` op is left.

**How a kernel is lowered.** Values of the kernel are either *materialized* (held in a buffer) or *computed at
an index* on demand, the way Halide inlines producers into consumers:

- Materialized: the kernel's inputs (its input buffers), the results of the ops that need a loop of their own
  (reductions ``pg.sum``/``pg.max``/``pg.min``, ``pg.argmax``/``pg.argmin``, ``pg.matmul``, ``pg.scatter_add``:
  the *heavy* ops) and the yielded values. A heavy op writes its output buffer when it is yielded, or else a
  scratch buffer (``memref.alloc`` before the kernel's nests, ``memref.dealloc`` after them).
- Everything else (elementwise ops, ``pg.cmp``/``pg.select``, casts, ``pg.broadcast_to``, ``pg.reshape``,
  ``pg.permute``, ``pg.slice``, ``pg.pad``, ``pg.concat``, ``pg.gather``, ``pg.iota``, ``pg.random``,
  ``pg.constant``, ``pg.check_index``) is computed inside the loop body of its consumer, at the consumer's index:
  movement ops are index maps (a broadcast drops or zeroes indices, a permute permutes them, a reshape linearizes and
  delinearizes only the groups of dims it changes, a pad or concat branches with ``scf.if``), never copies.

Within one loop body a value is computed once per index (memoized), so an elementwise kernel becomes ONE
``scf.parallel`` nest over its output that computes all its ops and stores all its same-shaped outputs. An op
whose operands do not change in an ``scf.for`` loop is emitted before that loop (loop-invariant code motion as
the code is generated: the row maximum of a softmax is loaded once per row, not once per element), but never out
of an ``scf.parallel`` body or an ``scf.if`` branch.

**Nests**, in order: one per heavy op (in program order), then one per shape of the yielded values that no heavy
op wrote (one nest stores all outputs of that shape). A heavy op's nest is its kernel kind's (the kind registry,
``picograd.passes.kinds``: ``KIND_OF_OP`` maps each heavy op to the kind module whose ``to_loops`` emits it, and
whose docstring describes the form: reductions and ``argmax``/``argmin`` in ``kinds/reduction.py``, ``pg.matmul``
in ``kinds/matmul.py``, ``pg.scatter_add`` in ``kinds/scatter_add.py``). A yielded value of the shape of a
reduction's input rides along in the reduction's nest instead (the kind's ``riders``), stored in its innermost
loop, which visits each input element once: one pass over the data computes both (the multi-output kernels of
``pg-fuse``). Every nest is an ``scf.parallel`` over the dims its iterations may run in any order (a 0-d output
gets one dim of size 1; xDSL 0.74 prints ``scf.parallel`` in the generic form), with the ``pg.kernel`` (the
kernel's ``sym_name``) and ``pg.kind`` attributes, so later stages can tell which nests form a kernel, and the
kernel's ``kernel.schedule`` (a ``#kernel.schedule`` that ``pg-schedule`` chose), which the GPU lowering passes
follow. The nest that a kind's schedule applies to also carries ``pg.nest = <kind>`` (``attrs.NEST_ATTR``): the
kind declares its form there, so that the GPU passes read it instead of recognising it.

``pg.random``: Philox 4x32-10 on ``i32`` (``arith.mului_extended`` gives the 32x32->64-bit products) per element,
exactly as ``picograd.dialects.philox``: uniform is ``(bits >> 8) * 2**-24``, normal is Box-Muller with
``math.log1p``, ``math.sqrt``, ``math.cos`` and ``math.sin`` in ``f64`` (what numpy computes), then rounded.
``pg.gather`` is the gather kind's index map (``AT_INDEX``).

A ``pg.check_index`` becomes an ``scf.if`` that stores 1 and the bad index into an error flag of its own, a
zero-initialized mutable ``memref<2xi64>`` global with the error message as its ``pg.index_check`` attribute;
the GPU runtime reads the flags at the next synchronization and raises ``IndexError`` there (a device-side check:
meanwhile the kernel goes on with index 0, reading nothing out of bounds, and the step's results are discarded:
``driver.gpu_compile.ProgramExecutable``).

Constants (index bounds, float literals) are created once per kernel, before its nests. Non-splat ``pg.constant``
values become private ``memref.global`` constants of the module. Every op created carries the location of the
``pg`` op it computes (loops: the op they materialize; scratch buffers: the launch).

Raises ``PassFailedException`` for a function that is not bufferized (a ``kernel.fused`` op, or ``pg`` ops
outside a ``kernel.launch``; run ``pg-bufferize`` first) and for ops that have no loop form (``pg.grad`` and
the optimizer ops, which their passes expand).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    Float64Type,
    IndexType,
    IntegerType,
    LocationAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import IsTerminator
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import kernel, pg
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, NEST_ATTR, SCHEDULE_ATTR
from picograd.passes.buffers import where
from picograd.passes.ir_builder import PHILOX_ATTR, ConstantPool, philox4x32
from picograd.passes.kinds import AT_INDEX, HEAVY, KERNEL_KINDS, KIND_OF_OP
from picograd.passes.kinds.elementwise import unroll_dim

Index = tuple[SSAValue, ...]

SURFACE_MATH: dict[type[Operation], Callable[[SSAValue], Operation]] = {
    # the operator surface (issue 20): pg elementwise math -> one math op each
    pg.FloorOp: mathd.FloorOp,
    pg.CeilOp: mathd.CeilOp,
    pg.RoundOp: mathd.RoundEvenOp,
    pg.TruncOp: mathd.TruncOp,
    pg.Log2Op: mathd.Log2Op,
    pg.Exp2Op: mathd.Exp2Op,
    pg.Log1pOp: mathd.Log1pOp,
    pg.Expm1Op: mathd.ExpM1Op,
    pg.AsinOp: mathd.AsinOp,
    pg.AcosOp: mathd.AcosOp,
    pg.AtanOp: mathd.AtanOp,
    pg.AsinhOp: mathd.AsinhOp,
    pg.AcoshOp: mathd.AcoshOp,
    pg.AtanhOp: mathd.AtanhOp,
}


def _is_float(t: Attribute) -> bool:
    return pg.is_float(t)


def _is_bool(t: Attribute) -> bool:
    return isinstance(t, IntegerType) and t.width.data == 1


def _shape(v: SSAValue) -> tuple[int, ...]:
    t = v.type
    assert isinstance(t, TensorType | MemRefType)
    return tuple(t.get_shape())


def _element(v: SSAValue) -> Attribute:
    t = v.type
    assert isinstance(t, TensorType | MemRefType)
    return t.get_element_type()


def _mark(v: SSAValue, role: str) -> None:
    """Mark the op defining ``v`` with its role in a uniform draw (:data:`PHILOX_ATTR`)."""
    if isinstance(v.owner, Operation):
        v.owner.attributes[PHILOX_ATTR] = StringAttr(role)


def reshape_groups(src: Sequence[int], dst: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Split the dims of two shapes with equal element counts into consecutive groups of equal products, as small
    as possible: ``(2, 3, 4) -> (6, 4)`` gives ``[([0, 1], [0]), ([2], [1])]``. A reshape maps each group on its
    own; size-1 dims may form groups with an empty other side."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        ga: list[int] = []
        gb: list[int] = []
        pa = pb = 1
        if i < len(src):
            ga.append(i)
            pa *= src[i]
            i += 1
        if j < len(dst):
            gb.append(j)
            pb *= dst[j]
            j += 1
        while pa != pb:
            if pa < pb and i < len(src):
                ga.append(i)
                pa *= src[i]
                i += 1
            elif j < len(dst):
                gb.append(j)
                pb *= dst[j]
                j += 1
            else:  # pragma: no cover - equal element counts make this unreachable
                raise AssertionError(f"shapes {tuple(src)} and {tuple(dst)} differ in size")
        groups.append((ga, gb))
    return groups


# ---------------------------------------------------------------------------------------------------------------
# Lowering one kernel


@dataclass
class _Scope:
    """A block being emitted into: where ops go, what was computed there (memo), and whether ops may be hoisted
    out of it."""

    ip: InsertPoint
    barrier: bool
    memo: dict[Any, SSAValue] = field(default_factory=dict)


class KernelLowering:
    """Lowers one ``kernel.launch`` (see the module docstring): ``run()`` puts the loop nests right before the
    launch and erases it."""

    def __init__(self, launch: kernel.LaunchOp, module: ModuleOp, globals_made: dict[DenseIntOrFPElementsAttr, str]):
        self.launch = launch
        self.module = module
        self.globals_made = globals_made
        self.loc: LocationAttr = launch.location
        self.pool_block = Block()
        self.code_block = Block()
        self.scopes: list[_Scope] = [_Scope(InsertPoint.at_end(self.code_block), barrier=True)]
        self.level: dict[SSAValue, int] = {}  # the scope a value is defined in (0 when outside the nests)
        self.consts = ConstantPool(self.pool_block)  # constants, globals and error flags of the kernel
        self.globals_got: dict[str, SSAValue] = {}
        self.last_nest: scf.ParallelOp | None = None  # the nest ``parallel`` made last
        self.buffers: dict[SSAValue, SSAValue] = {}
        self.nest_attrs: dict[str, Attribute] = {KERNEL_ATTR: launch.sym_name, KIND_ATTR: launch.kind}
        # An innermost index q * n + k of a ``points`` nest -> (q, n, k) (``points_nest``, read by ``random``).
        self.split_index: dict[SSAValue, tuple[SSAValue, int, int]] = {}
        if launch.schedule is not None:
            self.nest_attrs[SCHEDULE_ATTR] = launch.schedule

    # --- emission helpers -------------------------------------------------------------------------------------

    def emit(self, op: Operation, level: int | None = None) -> Operation:
        """Insert ``op`` with the current location in scope ``level`` (the innermost by default)."""
        level = len(self.scopes) - 1 if level is None else level
        op.location = self.loc
        Rewriter.insert_op(op, self.scopes[level].ip)
        for r in op.results:
            self.level[r] = level
        return op

    @contextmanager
    def located(self, op: Operation) -> Iterator[None]:
        """Ops emitted inside carry ``op``'s location."""
        saved = self.loc
        self.loc = op.location
        try:
            yield
        finally:
            self.loc = saved

    @contextmanager
    def inside(self, op: Operation, block: Block, barrier: bool) -> Iterator[None]:
        """Emit into ``block`` of ``op`` (just emitted): before its terminator or at its end, in a new scope. Ops
        that the enclosing scope may hold instead go right before ``op``, unless ``barrier`` forbids hoisting out
        of ``block``."""
        outer = self.scopes[-1]
        saved = outer.ip
        outer.ip = InsertPoint.before(op)
        last = block.last_op
        ip = (
            InsertPoint.before(last) if last is not None and last.has_trait(IsTerminator) else InsertPoint.at_end(block)
        )
        self.scopes.append(_Scope(ip, barrier))
        for arg in block.args:
            self.level[arg] = len(self.scopes) - 1
        try:
            yield
        finally:
            self.scopes.pop()
            outer.ip = saved

    def lookup(self, key: Any) -> SSAValue | None:
        for scope in reversed(self.scopes):
            if key in scope.memo:
                return scope.memo[key]
        return None

    def remember(self, key: Any, value: SSAValue) -> None:
        """Memoize ``value`` in the scope it is defined in (constants: the outermost)."""
        self.scopes[min(self.level.get(value, 0), len(self.scopes) - 1)].memo[key] = value

    def const(self, value: int | float | bool, t: Attribute) -> SSAValue:
        """An ``arith.constant`` of type ``t`` (index, integer or float), one per kernel, before its nests."""
        if pg.is_low_precision(t):  # a 16-bit float: the f32 constant (exact for the values used), rounded
            return self.narrow(self.const(value, f32), t)
        return self.consts.get(value, t, self.loc)

    def idx(self, n: int) -> SSAValue:
        return self.const(n, IndexType())

    def pure(self, factory: Callable[..., Operation], *operands: SSAValue, key: Any = None) -> SSAValue:
        """Emit ``factory(*operands)`` unless the same pure op on the same operands was emitted in scope; ``key``
        names the op when ``factory`` is not an op class (a lambda is a new object at every call)."""
        k = (factory if key is None else key, operands)
        hit = self.lookup(k)
        if hit is not None:
            return hit
        # Loop-invariant code motion as we go: the op goes to the innermost scope defining one of its operands,
        # but never out of a barrier (a parallel nest's body or an scf.if branch, whose loads it guards).
        floor = max(i for i, scope in enumerate(self.scopes) if scope.barrier)
        level = max([floor, *(self.level.get(v, 0) for v in operands)])
        result = self.emit(factory(*operands), level).results[0]
        self.scopes[level].memo[k] = result
        return result

    # --- index arithmetic (folded) ------------------------------------------------------------------------------

    def iadd(self, a: SSAValue, b: SSAValue) -> SSAValue:
        ca, cb = self.consts.value_of(a), self.consts.value_of(b)
        if ca is not None and cb is not None:
            return self.idx(int(ca) + int(cb))
        if ca == 0:
            return b
        if cb == 0:
            return a
        return self.pure(arith.AddiOp, a, b)

    def isub(self, a: SSAValue, n: int) -> SSAValue:
        return self.iadd(a, self.idx(-n)) if n else a

    def imul(self, a: SSAValue, n: int) -> SSAValue:
        ca = self.consts.value_of(a)
        if ca is not None:
            return self.idx(int(ca) * n)
        if n == 1:
            return a
        if n == 0:
            return self.idx(0)
        return self.pure(arith.MuliOp, a, self.idx(n))

    def idiv(self, a: SSAValue, n: int) -> SSAValue:
        ca = self.consts.value_of(a)
        if ca is not None:
            return self.idx(int(ca) // n)
        return a if n == 1 else self.pure(arith.DivUIOp, a, self.idx(n))

    def irem(self, a: SSAValue, n: int) -> SSAValue:
        ca = self.consts.value_of(a)
        if ca is not None:
            return self.idx(int(ca) % n)
        return self.idx(0) if n == 1 else self.pure(arith.RemUIOp, a, self.idx(n))

    def linearize(self, idx: Sequence[SSAValue], shape: Sequence[int]) -> SSAValue:
        """Row-major linear index of ``idx`` in ``shape``."""
        lin = self.idx(0)
        for i, n in zip(idx, shape, strict=True):
            lin = self.iadd(self.imul(lin, n), i) if n != 1 else lin
        return lin

    def delinearize(self, lin: SSAValue, shape: Sequence[int]) -> list[SSAValue]:
        """The index of row-major position ``lin`` in ``shape`` (``lin`` lies in range)."""
        out = []
        for d, n in enumerate(shape):
            stride = math.prod(shape[d + 1 :])
            if n == 1:
                out.append(self.idx(0))
                continue
            q = self.idiv(lin, stride)
            out.append(q if d == 0 or all(m == 1 for m in shape[:d]) else self.irem(q, n))
        return out

    def cmpi(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.pure(lambda x, y: arith.CmpiOp(x, y, pred), a, b, key=("cmpi", pred))

    def cmpf(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.pure(lambda x, y: arith.CmpfOp(x, y, pred), a, b, key=("cmpf", pred))

    def convert(self, cls: Callable[..., Operation], x: SSAValue, t: Attribute) -> SSAValue:
        """A conversion op ``cls`` (``arith.index_cast``, ``arith.extf``, ...) of ``x`` to type ``t``."""
        return self.pure(lambda v: cls(v, t), x, key=(cls, t))

    @staticmethod
    def wide_type(el: Attribute) -> Attribute:
        """The type the loop stage computes ``el`` values in: ``f32`` for ``bf16``/``f16`` (as the GPU and the CPU
        executor do), else ``el`` itself."""
        return f32 if pg.is_low_precision(el) else el

    def wide(self, x: SSAValue) -> SSAValue:
        """``x`` extended to ``f32`` when it is a ``bf16``/``f16`` value (16-bit floats are computed in ``f32``)."""
        return self.convert(arith.ExtFOp, x, f32) if pg.is_low_precision(x.type) else x

    def narrow(self, x: SSAValue, el: Attribute) -> SSAValue:
        """``x`` (computed in ``f32``) rounded to nearest even into ``el`` when ``el`` is ``bf16``/``f16``."""
        return self.convert(arith.TruncFOp, x, el) if pg.is_low_precision(el) else x

    def at_wide(self, v: SSAValue, idx: Index) -> SSAValue:
        """``at(v, idx)`` in the type it is computed in (``f32`` for 16-bit floats)."""
        return self.wide(self.at(v, idx))

    def andi(self, conds: Sequence[SSAValue]) -> SSAValue:
        result = conds[0]
        for c in conds[1:]:
            result = self.pure(arith.AndIOp, result, c)
        return result

    # --- control flow ---------------------------------------------------------------------------------------------

    @contextmanager
    def parallel(self, shape: Sequence[int], nest: str | None = None) -> Iterator[list[SSAValue]]:
        """An ``scf.parallel`` nest over ``shape`` with the kernel's attributes, and ``pg.nest = nest`` when given
        (a kind marking the nest its schedule applies to); yields its induction variables (none for a 0-d shape,
        which gets one dim of size 1)."""
        dims = list(shape) or [1]
        block = Block(arg_types=[IndexType()] * len(dims))
        block.add_op(scf.ReduceOp())
        op = scf.ParallelOp(
            [self.idx(0)] * len(dims), [self.idx(n) for n in dims], [self.idx(1)] * len(dims), Region(block)
        )
        op.attributes.update(self.nest_attrs)
        if nest is not None:
            op.attributes[NEST_ATTR] = StringAttr(nest)
        self.last_nest = op
        self.emit(op)
        block.last_op.location = self.loc  # type: ignore[union-attr]
        with self.inside(op, block, barrier=True):
            yield list(block.args) if shape else []

    def loops(
        self,
        bounds: Sequence[tuple[int, int]],
        inits: Sequence[SSAValue],
        body: Callable[[list[SSAValue], list[SSAValue]], Sequence[SSAValue]],
    ) -> list[SSAValue]:
        """Nested ``scf.for`` loops over ``[lo, hi)`` per bound carrying ``inits``; ``body(ivs, carried)`` returns
        the new carried values. Returns the final carried values (``body`` runs inline without bounds)."""
        if not bounds:
            return list(body([], list(inits)))
        (lo, hi), rest = bounds[0], bounds[1:]
        block = Block(arg_types=[IndexType(), *(v.type for v in inits)])
        op = scf.ForOp(self.idx(lo), self.idx(hi), self.idx(1), list(inits), Region(block))
        self.emit(op)
        with self.inside(op, block, barrier=False):
            iv, carried = block.args[0], list(block.args[1:])
            new = self.loops(rest, carried, lambda ivs, c: body([iv, *ivs], c))
            self.emit(scf.YieldOp(*new))
        return list(op.results)

    def if_else(
        self, cond: SSAValue, t: Attribute, then: Callable[[], SSAValue], other: Callable[[], SSAValue]
    ) -> SSAValue:
        """``scf.if`` yielding one value of type ``t``."""
        blocks = [Block(), Block()]
        op = scf.IfOp(cond, [t], Region(blocks[0]), Region(blocks[1]))
        self.emit(op)
        for block, fn in zip(blocks, (then, other), strict=True):
            with self.inside(op, block, barrier=True):
                self.emit(scf.YieldOp(fn()))
        return op.results[0]

    # --- buffers -------------------------------------------------------------------------------------------------

    def load(self, buf: SSAValue, idx: Index) -> SSAValue:
        """``buf[idx]``; for an empty ``buf`` a zero, never read: a load of it would only run when hoisted out of a
        loop of no trips (the index of a reshape to a size-0 shape is constant), reading out of bounds."""
        t = buf.type
        if isinstance(t, MemRefType) and 0 in t.get_shape():
            return self.const(0, t.element_type)
        return self.pure(lambda b, *i: memref.LoadOp.get(b, i), buf, *idx, key="load")

    def store(self, value: SSAValue, buf: SSAValue, idx: Index) -> None:
        self.emit(memref.StoreOp.get(value, buf, idx))

    def global_constant(self, attr: DenseIntOrFPElementsAttr) -> SSAValue:
        """A ``memref.get_global`` of a private constant global holding ``attr`` (one global per value)."""
        if attr not in self.globals_made:
            taken = {getattr(op, "sym_name", None) for op in self.module.ops}
            n = len(self.globals_made)
            while StringAttr(f"__pg_constant_{n}") in taken:
                n += 1
            name = f"__pg_constant_{n}"
            t = attr.type
            assert isinstance(t, TensorType)
            g = memref.GlobalOp.get(
                StringAttr(name), MemRefType(t.element_type, list(t.get_shape())), attr, constant=UnitAttr()
            )
            g.location = self.loc
            self.module.body.block.insert_op_before(g, self.module.body.block.first_op)  # type: ignore[arg-type]
            self.globals_made[attr] = name
        key = self.globals_made[attr]
        if key not in self.globals_got:
            t = attr.type
            assert isinstance(t, TensorType)
            op = memref.GetGlobalOp(
                SymbolRefAttr(self.globals_made[attr]), MemRefType(t.element_type, list(t.get_shape()))
            )
            op.location = self.loc
            self.consts.place(op)
            self.globals_got[key] = op.results[0]
        return self.globals_got[key]

    # --- values at an index -------------------------------------------------------------------------------------

    def at(self, v: SSAValue, idx: Index) -> SSAValue:
        """The scalar value of the kernel value ``v`` at index ``idx`` (loaded, or computed in place)."""
        key = ("at", v, idx)
        hit = self.lookup(key)
        if hit is not None:
            return hit
        if v in self.buffers:
            result = self.load(self.buffers[v], idx)
        else:
            op = v.owner
            assert isinstance(op, Operation), f"kernel value {v} has no buffer"
            with self.located(op):
                result = self.compute(op, idx)
        self.remember(key, result)
        return result

    def compute(self, op: Operation, idx: Index) -> SSAValue:  # noqa: C901 - one case per op
        """The scalar result of the light op ``op`` at ``idx``."""
        el = _element(op.results[0])
        if type(op) in AT_INDEX:  # a kind's index map (pg.gather)
            return AT_INDEX[type(op)](self, op, idx)
        match op:
            # bf16/f16 math: operands extended to f32, computed in f32, the result rounded once (pg_numpy's rule)
            case pg.UnaryOp():
                return self.narrow(self.unary(op, self.at_wide(op.input, idx), self.wide_type(el)), el)
            case pg.BinaryOp():
                wide = self.wide_type(el)
                return self.narrow(self.binary(op, self.at_wide(op.lhs, idx), self.at_wide(op.rhs, idx), wide), el)
            case pg.CmpOp():
                a, b = self.at_wide(op.lhs, idx), self.at_wide(op.rhs, idx)
                return self.compare(op.predicate.data, a, b, self.wide_type(_element(op.lhs)))
            case pg.SelectOp():
                c, a, b = self.at(op.cond, idx), self.at(op.lhs, idx), self.at(op.rhs, idx)
                return self.pure(arith.SelectOp, c, a, b)
            case pg.CastOp():
                return self.cast(self.at(op.input, idx), _element(op.input), el)
            case pg.BroadcastToOp():
                src, dst = _shape(op.input), _shape(op.result)
                lead = len(dst) - len(src)
                return self.at(op.input, tuple(self.idx(0) if n == 1 else idx[lead + j] for j, n in enumerate(src)))
            case pg.ReshapeOp():
                return self.at(op.input, self.reshape_index(idx, _shape(op.result), _shape(op.input)))
            case pg.PermuteOp():
                perm = op.perm_list
                src_idx: list[SSAValue | None] = [None] * len(perm)
                for i, p in enumerate(perm):
                    src_idx[p] = idx[i]
                return self.at(op.input, tuple(s for s in src_idx if s is not None))
            case pg.SliceOp():
                start, step = op.start.get_values(), op.step.get_values()
                return self.at(
                    op.input,
                    tuple(
                        self.iadd(self.imul(i, int(s)), self.idx(int(a)))
                        for i, a, s in zip(idx, start, step, strict=True)
                    ),
                )
            case pg.PadOp():
                return self.pad(op, idx, el)
            case pg.ConcatOp():
                return self.concat(op, idx, el)
            case pg.CheckIndexOp():
                return self.check_index(op, idx)
            case pg.IotaOp():
                return self.narrow(self.index_to(idx[op.dim_index] if idx else self.idx(0), self.wide_type(el)), el)
            case pg.ConstantOp():
                values = op.value.get_values()
                if len(values) == 1 or all(x == values[0] for x in values):
                    return self.const(values[0] if values else 0, el)
                return self.load(self.global_constant(op.value), idx)
            case pg.RandomOp():
                return self.narrow(self.random(op, idx, self.wide_type(el)), el)
        raise PassFailedException(f"pg-to-loops: cannot lower '{op.name}'{where(op)} inside a kernel")

    def check_index(self, op: pg.CheckIndexOp, idx: Index) -> SSAValue:
        """The index at ``idx`` (0 when it is out of bounds), after an ``scf.if`` that, when it is, stores 1 and the
        index into the op's error flag (``error_flag``), which the runtime reads at the next synchronization."""
        value = self.at(op.input, idx)
        el = _element(op.input)
        low, high = op.bounds
        bad = self.pure(
            arith.OrIOp, self.cmpi("slt", value, self.const(low, el)), self.cmpi("sge", value, self.const(high, el))
        )
        flag = self.error_flag(op)
        block = Block()
        branch = scf.IfOp(bad, [], Region(block))
        self.emit(branch)
        with self.inside(branch, block, barrier=True):
            wide = value if el == i64 else self.convert(arith.ExtSIOp, value, i64)
            self.store(self.const(1, i64), flag, (self.idx(0),))
            self.store(wide, flag, (self.idx(1),))
            self.emit(scf.YieldOp())
        return self.pure(arith.SelectOp, bad, self.const(0, el), value)  # no read out of bounds meanwhile

    def error_flag(self, op: pg.CheckIndexOp) -> SSAValue:
        """A ``memref.get_global`` of a new mutable ``memref<2xi64>`` global, zero-initialized: (1, the bad index)
        once a bad index was seen. Its ``pg.index_check`` attribute is the error message, ``{}`` standing for the
        index."""
        taken = {getattr(o, "sym_name", None) for o in self.module.ops}
        n = 0
        while StringAttr(f"__pg_index_error_{n}") in taken:
            n += 1
        name = f"__pg_index_error_{n}"
        t = MemRefType(i64, [2])
        g = memref.GlobalOp.get(StringAttr(name), t, DenseIntOrFPElementsAttr.from_list(TensorType(i64, [2]), [0, 0]))
        g.attributes[pg.INDEX_CHECK_ATTR] = StringAttr(op.message("{}"))
        g.location = self.loc
        self.module.body.block.insert_op_before(g, self.module.body.block.first_op)  # type: ignore[arg-type]
        get = memref.GetGlobalOp(SymbolRefAttr(name), t)
        get.location = self.loc
        self.consts.place(get)
        return get.results[0]

    def index_to(self, i: SSAValue, el: Attribute) -> SSAValue:
        """An index converted to the element type ``el`` (as numpy's ``arange(...).astype``)."""
        if _is_bool(el):
            return self.cmpi("ne", i, self.idx(0))
        if isinstance(el, IntegerType):
            return self.convert(arith.IndexCastOp, i, el)
        return self.convert(arith.SIToFPOp, self.convert(arith.IndexCastOp, i, i64), el)

    def reshape_index(self, idx: Index, dst: Sequence[int], src: Sequence[int]) -> Index:
        """The index into ``src`` of the element at ``idx`` of its row-major reshape ``dst``."""
        if 0 in dst:
            return tuple(self.idx(0) for _ in src)
        out: list[SSAValue] = [self.idx(0)] * len(src)
        for gd, gs in reshape_groups(dst, src):
            if len(gd) == 1 and len(gs) == 1:
                out[gs[0]] = idx[gd[0]]
                continue
            lin = self.linearize([idx[d] for d in gd], [dst[d] for d in gd])
            for d, value in zip(gs, self.delinearize(lin, [src[d] for d in gs]), strict=True):
                out[d] = value
        return tuple(out)

    def pad(self, op: pg.PadOp, idx: Index, el: Attribute) -> SSAValue:
        src = _shape(op.input)
        low, interior = op.low.get_values(), op.interior.get_values()
        value = op.value.value.data
        fill = self.const(value if _is_float(el) else int(value), el)
        conds: list[SSAValue] = []
        src_idx: list[SSAValue] = []
        for i, n, lo, it in zip(idx, src, low, interior, strict=True):
            lo, it = int(lo), int(it)
            if n == 0:
                return fill
            j = self.isub(i, lo)
            span = (n - 1) * (it + 1) + 1
            if lo or span != _shape(op.result)[len(src_idx)]:
                conds.append(self.cmpi("sge", j, self.idx(0)))
                conds.append(self.cmpi("slt", j, self.idx(span)))
            if it:
                conds.append(self.cmpi("eq", self.pure(arith.RemSIOp, j, self.idx(it + 1)), self.idx(0)))
                j = self.pure(arith.DivSIOp, j, self.idx(it + 1))
            src_idx.append(j)
        if not conds:
            return self.at(op.input, tuple(src_idx))
        return self.if_else(self.andi(conds), el, lambda: self.at(op.input, tuple(src_idx)), lambda: fill)

    def concat(self, op: pg.ConcatOp, idx: Index, el: Attribute) -> SSAValue:
        d = op.dim_index
        parts: list[tuple[int, SSAValue]] = []
        offset = 0
        for v in op.inputs:
            if _shape(v)[d]:
                parts.append((offset, v))
            offset += _shape(v)[d]

        if not parts:  # an empty result: the nest never runs
            return self.const(0, el)

        def pick(k: int) -> SSAValue:
            off, v = parts[k]
            here = (*idx[:d], self.isub(idx[d], off), *idx[d + 1 :])
            if k == len(parts) - 1:
                return self.at(v, here)
            end = parts[k + 1][0]
            return self.if_else(
                self.cmpi("ult", idx[d], self.idx(end)), el, lambda: self.at(v, here), lambda: pick(k + 1)
            )

        return pick(0)

    # --- scalar ops ------------------------------------------------------------------------------------------------

    def unary(self, op: Operation, x: SSAValue, el: Attribute) -> SSAValue:
        floats: dict[type[Operation], Callable[[SSAValue], Operation]] = {
            pg.ExpOp: mathd.ExpOp,
            pg.LogOp: mathd.LogOp,
            pg.SqrtOp: mathd.SqrtOp,
            pg.RsqrtOp: mathd.RsqrtOp,
            pg.SinOp: mathd.SinOp,
            pg.CosOp: mathd.CosOp,
            pg.TanhOp: mathd.TanhOp,
            pg.ErfOp: mathd.ErfOp,
            **SURFACE_MATH,
        }
        if type(op) in floats:
            return self.pure(floats[type(op)], x)
        f = _is_float(el)
        match op:
            case pg.StopGradientOp():
                return x
            case pg.NegOp():
                return self.pure(arith.NegfOp, x) if f else self.pure(arith.SubiOp, self.const(0, el), x)
            case pg.AbsOp():
                return self.pure(mathd.AbsFOp if f else mathd.AbsIOp, x)
            case pg.ReluOp():
                return self.pure(arith.MaximumfOp if f else arith.MaxSIOp, x, self.const(0, el))
            case pg.ReciprocalOp():
                return self.pure(arith.DivfOp, self.const(1.0, el), x)
            case pg.SignOp():  # x > 0 ? 1 : x < 0 ? -1 : 0 (also for NaN, as PyTorch)
                zero = self.const(0.0, el)
                negative = self.pure(arith.SelectOp, self.cmpf("olt", x, zero), self.const(-1.0, el), zero)
                return self.pure(arith.SelectOp, self.cmpf("ogt", x, zero), self.const(1.0, el), negative)
            case pg.SigmoidOp():
                # as the numpy executor: e = exp(-|x|); x >= 0 ? 1 / (1 + e) : e / (1 + e)
                e = self.pure(mathd.ExpOp, self.pure(arith.NegfOp, self.pure(mathd.AbsFOp, x)))
                one = self.const(1.0, el)
                d = self.pure(arith.AddfOp, one, e)
                pos, neg = self.pure(arith.DivfOp, one, d), self.pure(arith.DivfOp, e, d)
                return self.pure(arith.SelectOp, self.cmpf("oge", x, self.const(0.0, el)), pos, neg)
        raise PassFailedException(f"pg-to-loops: no loop form for '{op.name}'{where(op)}")

    def binary(self, op: Operation, a: SSAValue, b: SSAValue, el: Attribute) -> SSAValue:
        f = _is_float(el)
        table: dict[type[Operation], tuple[Callable[..., Operation], Callable[..., Operation] | None]] = {
            pg.AddOp: (arith.AddfOp, arith.AddiOp),
            pg.SubOp: (arith.SubfOp, arith.SubiOp),
            pg.MulOp: (arith.MulfOp, arith.MuliOp),
            pg.DivOp: (arith.DivfOp, arith.FloorDivSIOp),
            pg.PowOp: (mathd.PowFOp, None),
            pg.MaximumOp: (arith.MaximumfOp, arith.MaxSIOp),
            pg.MinimumOp: (arith.MinimumfOp, arith.MinSIOp),
            # the operator surface (issue 20)
            pg.Atan2Op: (mathd.Atan2Op, None),
            pg.CopysignOp: (mathd.CopySignOp, None),
            pg.BitwiseAndOp: (arith.AndIOp, arith.AndIOp),
            pg.BitwiseOrOp: (arith.OrIOp, arith.OrIOp),
            pg.BitwiseXorOp: (arith.XOrIOp, arith.XOrIOp),
        }
        fop, iop = table[type(op)]
        chosen = fop if f else iop
        if chosen is None:
            raise PassFailedException(f"pg-to-loops: '{op.name}'{where(op)} on {el} has no loop form")
        return self.pure(chosen, a, b)

    def compare(self, pred: str, a: SSAValue, b: SSAValue, el: Attribute) -> SSAValue:
        if _is_float(el):
            return self.cmpf({"lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge", "eq": "oeq", "ne": "une"}[pred], a, b)
        sign = "u" if _is_bool(el) else "s"
        return self.cmpi(pred if pred in ("eq", "ne") else sign + pred, a, b)

    def cast(self, x: SSAValue, src: Attribute, dst: Attribute) -> SSAValue:
        """numpy's ``astype`` on one element: floats to ints truncate toward zero, anything to bool is ``!= 0``."""
        if src == dst:
            return x
        if pg.is_low_precision(src) or pg.is_low_precision(dst):  # through f32, rounded once into a 16-bit dst
            return self.narrow(self.cast(self.wide(x), self.wide_type(src), self.wide_type(dst)), dst)
        if _is_bool(dst):
            return (
                self.cmpf("une", x, self.const(0.0, src)) if _is_float(src) else self.cmpi("ne", x, self.const(0, src))
            )
        if _is_float(src) and _is_float(dst):
            return self.convert(arith.ExtFOp if isinstance(dst, Float64Type) else arith.TruncFOp, x, dst)
        if _is_float(dst):
            return self.convert(arith.UIToFPOp if _is_bool(src) else arith.SIToFPOp, x, dst)
        if _is_float(src):
            return self.convert(arith.FPToSIOp, x, dst)
        assert isinstance(src, IntegerType) and isinstance(dst, IntegerType)
        if _is_bool(src):
            return self.convert(arith.ExtUIOp, x, dst)
        return self.convert(arith.ExtSIOp if dst.width.data > src.width.data else arith.TruncIOp, x, dst)

    # --- random numbers -------------------------------------------------------------------------------------------

    def philox(self, counter: SSAValue, seed: SSAValue) -> list[SSAValue]:
        """The four ``i32`` words of Philox 4x32-10 at the 64-bit ``counter`` (words ``(lo, hi, 0, 0)``) under the
        64-bit key ``seed``, as ``picograd.dialects.philox.philox4x32``; computed once per (counter, seed) in scope;
        the key words are marked :data:`PHILOX_ATTR` ``key0``/``key1``."""
        keys = [("philox", w, counter, seed) for w in range(4)]
        hits = [self.lookup(k) for k in keys]
        if all(h is not None for h in hits):
            return hits  # type: ignore[return-value]
        sh32 = self.const(32, i64)

        def lo_hi(v: SSAValue) -> tuple[SSAValue, SSAValue]:
            lo = self.convert(arith.TruncIOp, v, i32)
            hi = self.convert(arith.TruncIOp, self.pure(arith.ShRUIOp, v, sh32), i32)
            return lo, hi

        def mul_wide(a: SSAValue, b: SSAValue) -> tuple[SSAValue, SSAValue]:
            lo, hi = self.emit(arith.MulUIExtendedOp(a, b)).results
            return lo, hi

        c0, c1 = lo_hi(counter)
        zero = self.const(0, i32)
        k0, k1 = lo_hi(seed)
        for role, k in (("key0", k0), ("key1", k1)):
            _mark(k, role)
        words = philox4x32(self.pure, mul_wide, lambda n: self.const(n, i32), [c0, c1, zero, zero], [k0, k1])
        for key, word in zip(keys, words, strict=True):
            self.remember(key, word)
        return words

    def random(self, op: pg.RandomOp, idx: Index, el: Attribute) -> SSAValue:
        shape = _shape(op.result)
        offset, seed = self.at(op.offset, ()), self.at(op.seed, ())
        split = self.split_index.get(idx[-1]) if shape and shape[-1] % 4 == 0 else None
        lane: int | SSAValue
        if split is not None and split[1] == 4:
            # idx[-1] = 4 q + k of a ``points`` nest: counter offset + lin // 4 = offset + (the index with q for the
            # innermost, in shape[:-1] x shape[-1] / 4), lane k; shared by the 4 points (one Philox call)
            q, _, lane = split
            quads = self.linearize((*idx[:-1], q), (*shape[:-1], shape[-1] // 4))
            counter = self.pure(arith.AddiOp, offset, self.convert(arith.IndexCastOp, quads, i64))
            _mark(counter, "counter")
        else:
            lin = self.linearize(idx, shape) if shape else self.idx(0)
            lin64 = self.convert(arith.IndexCastOp, lin, i64)
            counter = self.pure(arith.AddiOp, offset, self.pure(arith.ShRUIOp, lin64, self.const(2, i64)))
            _mark(counter, "counter")
            lane = self.pure(arith.AndIOp, lin64, self.const(3, i64))
        words = self.philox(counter, seed)

        def unit(word: SSAValue, t: Attribute) -> SSAValue:  # (word >> 8) * 2**-24, exact in f32 and f64
            top = self.pure(arith.ShRUIOp, word, self.const(8, i32))
            return self.pure(arith.MulfOp, self.convert(arith.UIToFPOp, top, t), self.const(2.0**-24, t))

        def pick(choices: Sequence[SSAValue]) -> SSAValue:
            """``choices[lane]`` (``choices[lane // (4 // len(choices))]`` for 2 choices)."""
            per = 4 // len(choices)
            if isinstance(lane, int):
                return choices[lane // per]
            picked = choices[-1]
            for n in range(len(choices) - 2, -1, -1):
                cond = self.cmpi("ult", lane, self.const((n + 1) * per, i64))
                picked = self.pure(arith.SelectOp, cond, choices[n], picked)
            return picked

        if op.distribution.data == "uniform":
            # el is f32 or f64 (wide_type): the 24-bit value times 2**-24 is exact in either, so f32 math gives
            # the bits the f64 computation rounded to f32 gives
            word = pick(words)
            _mark(word, "word")
            return unit(word, el)
        # Box-Muller on lanes (0, 1) and (2, 3): r = sqrt(-2 log1p(-u0)), theta = 2 pi u1
        u0 = unit(pick([words[0], words[2]]), f64)
        u1 = unit(pick([words[1], words[3]]), f64)
        log = self.pure(mathd.Log1pOp, self.pure(arith.NegfOp, u0))
        r = self.pure(mathd.SqrtOp, self.pure(arith.MulfOp, self.const(-2.0, f64), log))
        theta = self.pure(arith.MulfOp, self.const(2.0 * math.pi, f64), u1)
        if isinstance(lane, int):
            z = self.pure(arith.MulfOp, r, self.pure(mathd.CosOp if lane % 2 == 0 else mathd.SinOp, theta))
        else:
            even = self.cmpi("eq", self.pure(arith.AndIOp, lane, self.const(1, i64)), self.const(0, i64))
            cos = self.pure(arith.MulfOp, r, self.pure(mathd.CosOp, theta))
            sin = self.pure(arith.MulfOp, r, self.pure(mathd.SinOp, theta))
            z = self.pure(arith.SelectOp, even, cos, sin)
        return z if el == f64 else self.convert(arith.TruncFOp, z, el)

    # --- the kernel ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        launch = self.launch
        block = launch.body.block
        terminator = launch.yield_op
        for arg, buf in zip(block.args, launch.ins, strict=True):
            self.buffers[arg] = buf
        yielded = list(zip(terminator.values, launch.outs, strict=True))

        heavy = [op for op in block.ops if isinstance(op, HEAVY)]
        for op in block.ops:
            if op is not terminator and op.dialect_name() != "pg":
                raise PassFailedException(f"pg-to-loops: '{op.name}'{where(op)} inside a kernel is not a pg op")
            if isinstance(op, pg.GradOp | pg.OptimizerOp):
                raise PassFailedException(
                    f"pg-to-loops: '{op.name}'{where(op)} has no loop form; its pass (pg-autodiff, pg-sgd, pg-adam, "
                    "pg-adamw) expands it"
                )
        kernel_kind = KERNEL_KINDS.get(launch.kind.data)
        if kernel_kind is not None and kernel_kind.lower_kernel is not None:  # a kind with loop nests of its own
            kernel_kind.lower_kernel(self)
            self.finish()
            return
        # Where heavy results go: their (first) output buffer, else a scratch buffer.
        pending: list[tuple[SSAValue, SSAValue]] = []
        scratch: list[SSAValue] = []
        for v, buf in yielded:
            if isinstance(v.owner, HEAVY) and v not in self.buffers:
                self.buffers[v] = buf
            else:
                pending.append((v, buf))
        for op in heavy:
            r = op.results[0]
            if r not in self.buffers:
                t = r.type
                assert isinstance(t, TensorType)
                alloc = self.emit(memref.AllocOp.get(t.element_type, None, list(t.get_shape())))
                self.buffers[r] = alloc.results[0]
                scratch.append(alloc.results[0])
        # Outputs of a reduction's input shape that need no later heavy result ride along in its nest.
        riders: dict[Operation, list[tuple[SSAValue, SSAValue]]] = {}
        done: set[SSAValue] = set(block.args)
        for op in heavy:
            kind = KIND_OF_OP[type(op)]
            shape = kind.riders(op) if kind.riders is not None else None
            if shape is not None:
                fits = [(v, b) for v, b in pending if _shape(v) == shape and self.ready(v, done)]
                riders[op] = fits
                pending = [p for p in pending if p not in fits]
            done.add(op.results[0])
        for op in heavy:
            to_loops = KIND_OF_OP[type(op)].to_loops
            assert to_loops is not None, f"kind of {op.name} has no loop lowering"
            with self.located(op):
                to_loops(self, op, self.buffers[op.results[0]], riders.get(op, []))
        # The other outputs: one nest per shape.
        by_shape: dict[tuple[int, ...], list[tuple[SSAValue, SSAValue]]] = {}
        for v, buf in pending:
            by_shape.setdefault(_shape(v), []).append((v, buf))
        points = launch.schedule.count("points", 1) if launch.schedule is not None else 1
        schedule = launch.schedule
        per_point = schedule is not None and schedule.strategy.data == "thread_per_point"
        unroll = schedule.count("unroll", 1) if schedule is not None and per_point else 1  # (a reduction's: its loop's)
        for shape, group in by_shape.items():
            first = group[0][0].owner
            with self.located(first if isinstance(first, Operation) else launch):
                if points > 1 and shape and shape[-1] % points == 0:
                    self.points_nest(shape, points, group)
                    continue
                split = unroll_dim(shape, unroll)
                if split is not None:
                    self.unrolled_nest(shape, unroll, split, group)
                    continue
                with self.parallel(shape) as ivs:
                    for v, buf in group:
                        self.store(self.at(v, tuple(ivs)), buf, tuple(ivs))
        for buf in scratch:
            self.emit(memref.DeallocOp.get(buf))
        self.finish()

    def points_nest(self, shape: Sequence[int], points: int, group: Sequence[tuple[SSAValue, SSAValue]]) -> None:
        """The nest over ``shape`` whose iterations each compute ``points`` consecutive innermost points ``(..., q *
        points + k)`` (a ``points`` schedule: ``shape[-1]`` a multiple of ``points``); each such index is recorded
        in ``self.split_index`` as ``(q, k)``, so that ``random`` shares one Philox call among them."""
        with self.parallel([*shape[:-1], shape[-1] // points]) as ivs:
            *outer, q = ivs
            base = self.imul(q, points)
            for k in range(points):
                last = self.iadd(base, self.idx(k))
                self.split_index[last] = (q, points, k)
                idx = (*outer, last)
                for v, buf in group:
                    self.store(self.at(v, idx), buf, idx)

    def unrolled_nest(
        self, shape: Sequence[int], unroll: int, d: int, group: Sequence[tuple[SSAValue, SSAValue]]
    ) -> None:
        """The nest over ``shape`` with dim ``d`` cut into ``unroll`` chunks (an ``unroll`` schedule,
        ``kinds/elementwise.py``): an iteration computes the values of its point in every chunk, ``(..., q + k *
        shape[d] / unroll, ...)``, then stores them, so that the loads of all of them come before any store."""
        chunk = shape[d] // unroll
        with self.parallel([*shape[:d], chunk, *shape[d + 1 :]]) as ivs:
            values: list[tuple[SSAValue, SSAValue, Index]] = []
            for k in range(unroll):
                idx = (*ivs[:d], self.iadd(ivs[d], self.idx(k * chunk)), *ivs[d + 1 :])
                values.extend((self.at(v, idx), buf, idx) for v, buf in group)
            for value, buf, idx in values:
                self.store(value, buf, idx)

    def finish(self) -> None:
        """Move the kernel's constants, then its code, to where the launch was, and erase the launch."""
        launch = self.launch
        parent = launch.parent_block()
        assert parent is not None
        for staging in (self.pool_block, self.code_block):
            for op in list(staging.ops):
                op.detach()
                parent.insert_op_before(op, launch)
        parent.erase_op(launch, safe_erase=False)

    def ready(self, v: SSAValue, done: set[SSAValue]) -> bool:
        """Whether ``v`` can be computed from ``done`` values (buffers written so far) and light ops only."""
        if v in done:
            return True
        op = v.owner
        if not isinstance(op, Operation) or isinstance(op, HEAVY):
            return False
        return all(self.ready(u, done) for u in op.operands)


# ---------------------------------------------------------------------------------------------------------------
# The pass


def _check_bufferized(fn: func.FuncOp) -> list[kernel.LaunchOp]:
    """The ``kernel.launch`` ops of ``fn``; raises ``PassFailedException`` when ``fn`` is not bufferized."""
    name = fn.sym_name.data
    for op in fn.walk():
        if isinstance(op, kernel.FusedOp):
            raise PassFailedException(
                f"pg-to-loops: @{name} is not bufferized: 'kernel.fused'{where(op)} works on tensors (run "
                "pg-bufferize first)"
            )
    for i, t in enumerate(fn.function_type.inputs.data):
        if isinstance(t, TensorType):
            raise PassFailedException(
                f"pg-to-loops: @{name} is not bufferized: argument {i} is a {t} (run pg-bufferize first)"
            )
    launches = []
    for op in fn.body.block.ops:
        if isinstance(op, kernel.LaunchOp):
            launches.append(op)
        elif op.dialect_name() == "pg":
            raise PassFailedException(
                f"pg-to-loops: @{name}: '{op.name}'{where(op)} is outside a kernel.launch (run pg-fuse and "
                "pg-bufferize first)"
            )
    return launches


@dataclass(frozen=True)
class PgToLoops(ModulePass):
    """Lower every ``kernel.launch`` of every function to loop nests over buffers (see the module docstring)."""

    name = "pg-to-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        globals_made: dict[DenseIntOrFPElementsAttr, str] = {}
        for fn in [f for f in op.walk() if isinstance(f, func.FuncOp) and not f.is_declaration]:
            for launch in _check_bufferized(fn):
                KernelLowering(launch, op, globals_made).run()
