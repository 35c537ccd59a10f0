"""``pg-canonicalize``: local simplifications of ``pg`` ops (the ``simplify`` stage runs it, then ``cse``, ``dce``).

Rewrites, each exact for every input, infinities, NaNs and signed zeros included (IEEE 754 arithmetic as numpy
and the GPU do it):

- *Identities*: ``x * 1``, ``1 * x``, ``x / 1``, ``x ** 1``, ``x + (-0.0)``, ``x - (+0.0)`` (for integers any
  zero), ``maximum(x, x)``, ``minimum(x, x)``, ``select(c, x, x)`` give ``x``; ``neg(neg(x))`` gives ``x``.
  ``x + 0.0`` and ``x - (-0.0)`` are *not* ``x`` when ``x`` is ``-0.0`` (they give ``+0.0``), so they are folded
  only with the ``no-signed-zeros`` option (as LLVM needs ``nsz``). ``x * 0`` is never folded for floats
  (``inf * 0`` and ``nan * 0`` are NaN); for integers it is ``0``.
- *Shape ops*: ``broadcast_to``, ``reshape`` to the same shape, ``permute`` by the identity, a ``slice`` that takes
  everything, ``pad`` by nothing, ``concat`` of one tensor, and ``sum``/``max``/``min`` over no dims are removed;
  ``broadcast_to(broadcast_to(x))``, ``reshape(reshape(x))`` and ``permute(permute(x))`` become one op.
- *Casts*: a cast to the same type is removed; ``cast(cast(x))`` becomes one cast when the inner cast is exact
  (it keeps every value: ``i1`` to anything, ``i32`` to ``i64``/``f64``, ``f32`` to ``f64``, ``bf16``/``f16`` to
  ``f32``/``f64``), which also removes a round trip such as ``f32 -> f64 -> f32``.
- *Selects* on a constant condition pick their branch.
- *Constant folding* on splat values (a constant whose elements are all equal, or a ``broadcast_to`` of one):
  elementwise ops whose operands are all splats, ``broadcast_to`` and ``reshape`` of a splat. Values are computed
  with the numpy executor's own kernels in the element type, so folding changes no bit of any result. A folded
  splat of at most ``max-splat-elements`` elements is one ``pg.constant``; a bigger one is a 0-d constant broadcast
  to the shape (xDSL stores every element of a dense attribute, so big splats are kept small in the IR).
- ``pg.stop_gradient`` is the identity once no ``pg.grad`` is left in the module (after ``pg-autodiff``); it is
  kept while one is.

Ops created by a rewrite take the location of the op they replace. Function arguments are never touched: two
parameters with equal initial values stay two arguments (``cse`` merges equal *ops* only, and arguments are no
ops), and equal ``pg.constant`` values may be merged by ``cse`` (that never changes a value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    Float32Type,
    Float64Type,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from picograd.dialects import pg
from picograd.dialects.pg import broadcast_shape, element_of, is_float, is_low_precision, shape_of
from picograd.dialects.pg_numpy import numpy_dtype, op_kernel

# ---------------------------------------------------------------------------------------------------------------
# Splat values


def is_splat(attr: DenseIntOrFPElementsAttr) -> bool:
    """Whether every element of ``attr`` has the same bits (NaN splats included, unlike xDSL's ``is_splat``)."""
    data = attr.data.data
    width = attr.get_element_type().compile_time_size
    return len(data) <= width or data == data[:width] * (len(data) // width)


def splat_value(value: SSAValue) -> np.ndarray | None:
    """The element of a splat-valued ``value`` (a splat ``pg.constant``, or a ``pg.broadcast_to`` of one) as a 0-d
    numpy array of its element type, or None."""
    op = value.owner
    if isinstance(op, pg.BroadcastToOp):
        op = op.input.owner
    if not isinstance(op, pg.ConstantOp) or not is_splat(op.value):
        return None
    first = next(iter(op.value.iter_values()), None)
    if first is None:  # a constant with no elements (a size-0 tensor)
        return None
    return np.asarray(first, dtype=numpy_dtype(element_of(op.result)))


def _numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def splat_ops(value: np.ndarray, t: TensorType, max_elements: int, like: Operation) -> list[Operation]:
    """Ops computing the tensor of type ``t`` filled with ``value``: one ``pg.constant`` when ``t`` has at most
    ``max_elements`` elements, else a 0-d constant and a ``pg.broadcast_to``. Each takes ``like``'s location."""
    element = t.element_type
    scalar = value.item()
    number: int | float = int(scalar) if isinstance(element, IntegerType) else float(scalar)
    shape = tuple(t.get_shape())
    ops: list[Operation]
    if not shape or _numel(shape) <= max_elements:
        ops = [pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, [number]))]  # type: ignore[arg-type, type-var]
    else:
        scalar_type = TensorType(element, [])
        c = pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(scalar_type, [number]))  # type: ignore[arg-type, type-var]
        ops = [c, pg.BroadcastToOp(c.result, shape)]
    for op in ops:
        op.location = like.location
    return ops


def _is_zero(value: SSAValue, negative: bool | None) -> bool:
    """Whether ``value`` is a splat zero; for floats, of the sign ``negative`` asks for (either when None)."""
    v = splat_value(value)
    if v is None or v != 0:
        return False
    if v.dtype.kind != "f" or negative is None:
        return True
    return bool(np.signbit(v)) == negative


def _is_one(value: SSAValue) -> bool:
    v = splat_value(value)
    return v is not None and v == 1


# ---------------------------------------------------------------------------------------------------------------
# Patterns


@dataclass
class FoldElementwise(RewritePattern):
    """An elementwise op whose operands are all splats becomes a splat of its result."""

    max_elements: int

    ELEMENTWISE = (pg.UnaryOp, pg.BinaryOp, pg.CmpOp, pg.SelectOp, pg.CastOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, self.ELEMENTWISE):
            return
        values = [splat_value(v) for v in op.operands]
        if any(v is None for v in values):
            return
        if isinstance(op, pg.DivOp) and values[1] is not None and values[1].dtype.kind != "f" and values[1] == 0:
            return  # integer division by zero: undefined on the GPU, leave it to run
        with np.errstate(all="ignore"):
            result = np.asarray(op_kernel(op)(*values), dtype=numpy_dtype(element_of(op.results[0])))
        t = op.results[0].type
        assert isinstance(t, TensorType)
        rewriter.replace(op, splat_ops(result, t, self.max_elements, op))


@dataclass
class ShrinkSplatConstant(RewritePattern):
    """A splat ``pg.constant`` of more than ``max_elements`` elements becomes a 0-d constant broadcast."""

    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.ConstantOp):
            return
        shape = shape_of(op.result)
        if not shape or _numel(shape) <= self.max_elements or not is_splat(op.value):
            return
        value = splat_value(op.result)
        assert value is not None
        rewriter.replace(op, splat_ops(value, op.result.type, self.max_elements, op))  # type: ignore[arg-type]


@dataclass
class BinaryIdentities(RewritePattern):
    """``x * 1``, ``x / 1``, ``x ** 1``, ``x + -0``, ``x - +0``, ``max(x, x)``, ``min(x, x)`` (see the module doc);
    integer ``x * 0``."""

    no_signed_zeros: bool
    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.BinaryOp):
            return
        x, y = op.lhs, op.rhs
        add_zero = None if self.no_signed_zeros else True  # the sign of zero that x + 0 and 0 + x leave x with
        sub_zero = None if self.no_signed_zeros else False  # ... and x - 0
        keep: SSAValue | None = None
        if isinstance(op, pg.AddOp):
            if _is_zero(y, add_zero):
                keep = x
            elif _is_zero(x, add_zero):
                keep = y
        elif isinstance(op, pg.SubOp):
            if _is_zero(y, sub_zero):
                keep = x
        elif isinstance(op, pg.MulOp):
            if _is_one(y):
                keep = x
            elif _is_one(x):
                keep = y
            elif not is_float(element_of(op.result)) and (_is_zero(x, None) or _is_zero(y, None)):
                zero = np.zeros((), dtype=numpy_dtype(element_of(op.result)))
                rewriter.replace(op, splat_ops(zero, op.result.type, self.max_elements, op))  # type: ignore[arg-type]
                return
        elif isinstance(op, pg.DivOp | pg.PowOp):
            if _is_one(y):
                keep = x
        elif isinstance(op, pg.MaximumOp | pg.MinimumOp):
            if x == y:
                keep = x
        if keep is not None:
            rewriter.replace(op, [], [keep])


class DoubleNegation(RewritePattern):
    """``neg(neg(x))`` is ``x`` (also for integers: two's complement negation is an involution)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, pg.NegOp) and isinstance(inner := op.input.owner, pg.NegOp):
            rewriter.replace(op, [], [inner.input])


def exact_cast(src: Attribute, dst: Attribute) -> bool:
    """Whether casting ``src`` elements to ``dst`` keeps every value (so a second cast sees the same number)."""
    if src == dst:
        return True
    if isinstance(src, IntegerType) and src.width.data == 1:
        return True
    if isinstance(src, IntegerType) and isinstance(dst, IntegerType):
        return dst.width.data > src.width.data
    if isinstance(src, IntegerType) and isinstance(dst, Float64Type):
        return src.width.data <= 32
    if is_low_precision(src) and isinstance(dst, Float32Type | Float64Type):
        return True  # bf16 and f16 are subsets of f32
    return isinstance(src, Float32Type) and isinstance(dst, Float64Type)


class CastChains(RewritePattern):
    """A cast to the same type is the identity; ``cast(cast(x))`` with an exact inner cast is one cast."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.CastOp):
            return
        if op.input.type == op.result.type:
            rewriter.replace(op, [], [op.input])
            return
        inner = op.input.owner
        if isinstance(inner, pg.CastOp) and exact_cast(element_of(inner.input), element_of(inner.result)):
            if inner.input.type == op.result.type:
                rewriter.replace(op, [], [inner.input])
            else:
                new = pg.CastOp(inner.input, element_of(op.result))
                new.location = op.location
                rewriter.replace(op, new)


@dataclass
class BroadcastChains(RewritePattern):
    """``broadcast_to`` to the same shape is the identity; of a ``broadcast_to`` it is one broadcast; of a splat
    constant it is a splat constant (or a 0-d one broadcast, when big)."""

    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.BroadcastToOp):
            return
        src, dst = shape_of(op.input), shape_of(op.result)
        if src == dst:
            rewriter.replace(op, [], [op.input])
            return
        inner = op.input.owner
        if isinstance(inner, pg.BroadcastToOp) and broadcast_shape(shape_of(inner.input), dst) == dst:
            new = pg.BroadcastToOp(inner.input, dst)
            new.location = op.location
            rewriter.replace(op, new)
            return
        if isinstance(inner, pg.ConstantOp) and (value := splat_value(op.input)) is not None:
            if _numel(dst) <= self.max_elements or src != ():
                rewriter.replace(op, splat_ops(value, op.result.type, self.max_elements, op))  # type: ignore[arg-type]


@dataclass
class ReshapeChains(RewritePattern):
    """``reshape`` to the same shape is the identity; of a ``reshape`` it is one reshape; of a splat it is a
    splat."""

    max_elements: int

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.ReshapeOp):
            return
        if op.input.type == op.result.type:
            rewriter.replace(op, [], [op.input])
            return
        inner = op.input.owner
        if isinstance(inner, pg.ReshapeOp):
            if inner.input.type == op.result.type:
                rewriter.replace(op, [], [inner.input])
            else:
                new = pg.ReshapeOp(inner.input, shape_of(op.result))
                new.location = op.location
                rewriter.replace(op, new)
            return
        if (value := splat_value(op.input)) is not None:
            rewriter.replace(op, splat_ops(value, op.result.type, self.max_elements, op))  # type: ignore[arg-type]


class PermuteChains(RewritePattern):
    """``permute`` by the identity is removed; ``permute(permute(x, p), q)`` is ``permute(x, [p[i] for i in q])``."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.PermuteOp):
            return
        perm = op.perm_list
        source = op.input
        if isinstance(inner := op.input.owner, pg.PermuteOp):
            perm = tuple(inner.perm_list[i] for i in perm)
            source = inner.input
        if perm == tuple(range(len(perm))):
            rewriter.replace(op, [], [source])
        elif source is not op.input:
            new = pg.PermuteOp(source, perm)
            new.location = op.location
            rewriter.replace(op, new)


class TrivialShapeOps(RewritePattern):
    """A ``slice`` that takes everything, a ``pad`` by nothing, a ``concat`` of one tensor and a ``sum``/``max``/
    ``min`` over no dims are the identity."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        identity = False
        if isinstance(op, pg.SliceOp):
            # same shape from start 0 means stop == size with step 1 (or a dim of size <= 1)
            identity = op.input.type == op.result.type and not any(op.start.get_values())
        elif isinstance(op, pg.PadOp):
            identity = not any((*op.low.get_values(), *op.high.get_values(), *op.interior.get_values()))
        elif isinstance(op, pg.ConcatOp):
            identity = len(op.inputs) == 1
        elif isinstance(op, pg.ReduceOp):
            identity = not op.dim_list
        if identity:
            assert op.operands[0].type == op.results[0].type
            rewriter.replace(op, [], [op.operands[0]])


class SelectSimplify(RewritePattern):
    """``select`` on a splat condition is the branch it picks; ``select(c, x, x)`` is ``x``."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, pg.SelectOp):
            return
        if op.lhs == op.rhs:
            rewriter.replace(op, [], [op.lhs])
        elif (cond := splat_value(op.cond)) is not None:
            rewriter.replace(op, [], [op.lhs if bool(cond) else op.rhs])


class DropStopGradient(RewritePattern):
    """``pg.stop_gradient`` is the identity once no ``pg.grad`` is left (the pass adds this pattern only then)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, pg.StopGradientOp):
            rewriter.replace(op, [], [op.input])


def patterns(max_elements: int = 65536, no_signed_zeros: bool = False, drop_stop_gradient: bool = True):
    """The rewrite patterns of ``pg-canonicalize``."""
    found: list[RewritePattern] = [
        BinaryIdentities(no_signed_zeros, max_elements),
        DoubleNegation(),
        CastChains(),
        BroadcastChains(max_elements),
        ReshapeChains(max_elements),
        PermuteChains(),
        TrivialShapeOps(),
        SelectSimplify(),
        FoldElementwise(max_elements),
        ShrinkSplatConstant(max_elements),
    ]
    if drop_stop_gradient:
        found.append(DropStopGradient())
    return found


@dataclass(frozen=True)
class PgCanonicalize(ModulePass):
    """Simplify ``pg`` ops in place (see the module docstring), to a fixed point; dead pure ops are erased.

    Options: ``max-splat-elements`` (default 65536), the largest splat that constant folding writes as one
    ``pg.constant``; ``no-signed-zeros`` (default false) also folds ``x + 0.0`` and ``x - (-0.0)`` to ``x``."""

    name = "pg-canonicalize"

    max_splat_elements: int = 65536
    no_signed_zeros: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        has_grad = any(isinstance(o, pg.GradOp) for o in op.walk())
        applier = GreedyRewritePatternApplier(
            patterns(self.max_splat_elements, self.no_signed_zeros, drop_stop_gradient=not has_grad)
        )
        PatternRewriteWalker(applier).rewrite_module(op)
