"""Shared machinery of the optimizer passes (``pg-sgd``, ``pg-adam``, ``pg-adamw``).

``expand_optimizer`` walks a module and, for each optimizer op of a given type, calls an update rule that writes
the algorithm with Python operators on ``Val`` handles. Each operator emits one ``pg`` op before the optimizer op,
stamped with its location (xDSL's rewriter does not copy locations by itself).

A ``Val`` is either a *scalar* (a hyperparameter, the step count, anything computed from them only: 0-d tensors,
``f64`` for the hyperparameters) or a *tensor* (a parameter, gradient or state buffer, or anything computed from
one). Where the two meet, the scalar is splat to the tensor's type (``pg.cast`` to its element type, then
``pg.broadcast_to`` its shape; memoized, so each scalar is converted once per type). Python numbers become scalar
constants. So ``1 - beta1``, bias corrections and step sizes are computed once in ``f64``, as PyTorch computes them
in Python floats, and rounded to the parameter's type only where they meet a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from picograd.dialects import pg

Number = int | float


@dataclass(frozen=True, eq=False)
class Val:
    """An SSA value whose arithmetic operators emit ``pg`` ops through its builder (see the module docstring)."""

    b: OpBuilder
    value: SSAValue
    scalar: bool = False

    @property
    def type(self) -> TensorType:
        """The value's tensor type."""
        t = self.value.type
        assert isinstance(t, TensorType)
        return t

    def __add__(self, other: Val | Number) -> Val:
        return self.b.binary(pg.AddOp, self, other)

    def __radd__(self, other: Number) -> Val:
        return self.b.binary(pg.AddOp, other, self)

    def __sub__(self, other: Val | Number) -> Val:
        return self.b.binary(pg.SubOp, self, other)

    def __rsub__(self, other: Number) -> Val:
        return self.b.binary(pg.SubOp, other, self)

    def __mul__(self, other: Val | Number) -> Val:
        return self.b.binary(pg.MulOp, self, other)

    def __rmul__(self, other: Number) -> Val:
        return self.b.binary(pg.MulOp, other, self)

    def __truediv__(self, other: Val | Number) -> Val:
        return self.b.binary(pg.DivOp, self, other)

    def __rtruediv__(self, other: Number) -> Val:
        return self.b.binary(pg.DivOp, other, self)

    def __pow__(self, other: Val | Number) -> Val:
        return self.b.binary(pg.PowOp, self, other)

    def __rpow__(self, other: Number) -> Val:
        return self.b.binary(pg.PowOp, other, self)

    def sqrt(self) -> Val:
        """Elementwise square root."""
        return self.b.emit(pg.SqrtOp(self.value), self.scalar)

    def cast(self, element: Attribute) -> Val:
        """Conversion to another element type, same shape."""
        return self if self.type.element_type == element else self.b.emit(pg.CastOp(self.value, element), self.scalar)

    def eq(self, other: Val | Number) -> Val:
        """Elementwise ``==``: an ``i1`` tensor."""
        lhs, rhs = self.b.unify(self, other)
        return self.b.emit(pg.CmpOp("eq", lhs.value, rhs.value), lhs.scalar and rhs.scalar)


class OpBuilder:
    """Emits ``pg`` ops before an anchor op (the optimizer op being expanded), each with the anchor's location."""

    def __init__(self, rewriter: PatternRewriter, anchor: Operation):
        self.rewriter = rewriter
        self.location = anchor.location
        self._splats: dict[tuple[SSAValue, Attribute], Val] = {}
        self._constants: dict[tuple[Number, Attribute], Val] = {}

    def scalar(self, value: SSAValue) -> Val:
        """Wraps a hyperparameter or the step count."""
        return Val(self, value, scalar=True)

    def tensor(self, value: SSAValue) -> Val:
        """Wraps a parameter, gradient or state buffer."""
        return Val(self, value)

    def emit(self, op: Operation, scalar: bool = False) -> Val:
        """Inserts ``op`` with the anchor's location and returns its (single) result."""
        op.location = self.location
        self.rewriter.insert(op)
        return Val(self, op.results[0], scalar)

    def constant(self, value: Number, element: Attribute) -> Val:
        """A scalar constant ``tensor<element>`` (one per value and type)."""
        key = (value, element)
        if key not in self._constants:
            attr: DenseIntOrFPElementsAttr
            if isinstance(element, IntegerType):
                attr = DenseIntOrFPElementsAttr.from_list(TensorType(element, []), [int(value)])
            else:
                floats = Float32Type | Float64Type | BFloat16Type | Float16Type
                assert isinstance(element, floats), f"no {element} constants"
                attr = DenseIntOrFPElementsAttr.from_list(TensorType(element, []), [float(value)])
            self._constants[key] = self.emit(pg.ConstantOp(attr), scalar=True)
        return self._constants[key]

    def splat(self, x: Val, like: TensorType) -> Val:
        """The 0-d ``x`` cast to ``like``'s element type and broadcast to its shape."""
        if x.type == like:
            return x
        assert x.type.get_shape() == (), f"cannot splat {x.type} to {like}"
        key = (x.value, like)
        if key not in self._splats:
            element = TensorType(like.element_type, [])
            if like == element:
                self._splats[key] = self.emit(pg.CastOp(x.value, like.element_type))
            else:  # broadcast the (memoized) cast
                self._splats[key] = self.emit(pg.BroadcastToOp(self.splat(x, element).value, like.get_shape()))
        return self._splats[key]

    def unify(self, x: Val | Number, y: Val | Number) -> tuple[Val, Val]:
        """Two operands of one type: numbers become scalar constants, a scalar meeting a tensor is splat to its type."""
        if not isinstance(x, Val):
            assert isinstance(y, Val)
            x = self.constant(x, y.type.element_type)
        if not isinstance(y, Val):
            y = self.constant(y, x.type.element_type)
        if x.scalar and not y.scalar:
            return self.splat(x, y.type), y
        if y.scalar and not x.scalar:
            return x, self.splat(y, x.type)
        return x, y

    def binary(self, op_type: Callable[[SSAValue, SSAValue], Operation], x: Val | Number, y: Val | Number) -> Val:
        """``op_type(x, y)`` after ``unify``."""
        lhs, rhs = self.unify(x, y)
        return self.emit(op_type(lhs.value, rhs.value), lhs.scalar and rhs.scalar)

    def where(self, cond: Val, x: Val, y: Val) -> Val:
        """``x`` where ``cond`` holds, else ``y``; a scalar ``cond`` is broadcast to their shape."""
        mask = self.splat(cond, TensorType(pg.i1, x.type.get_shape()))
        return self.emit(pg.SelectOp(mask.value, x.value, y.value), x.scalar and y.scalar)


def known_zero(value: SSAValue) -> bool:
    """Whether ``value`` is a ``pg.constant`` of zeros (so a term it scales can be left out, as PyTorch does)."""
    op = value.owner
    return isinstance(op, pg.ConstantOp) and not any(op.value.get_values())


def per_param(b: OpBuilder, op: pg.OptimizerOp) -> list[tuple[Val, Val, list[Val]]]:
    """``(param, grad, its state buffers)`` for each parameter of ``op``."""
    n, k = len(op.params), op.state_per_param()
    return [
        (b.tensor(p), b.tensor(g), [b.tensor(op.state[j * n + i]) for j in range(k)])
        for i, (p, g) in enumerate(zip(op.params, op.grads, strict=True))
    ]


OpT = TypeVar("OpT", bound=pg.OptimizerOp)

Update = Callable[[OpBuilder, OpT, Val], Sequence[tuple[Val, Sequence[Val]]]]
"""An update rule: ``(builder, op, new step count) -> [(new param, its new state buffers) for each param]``."""


@dataclass
class _ExpandOptimizer(RewritePattern, Generic[OpT]):
    op_type: type[OpT]
    update: Update[OpT]

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, self.op_type):
            return
        b = OpBuilder(rewriter, op)
        new_step = b.scalar(op.step) + 1
        updated = self.update(b, op, new_step)
        params = [p for p, _ in updated]
        state = [buffers[j] for j in range(op.state_per_param()) for _, buffers in updated]  # firsts, then seconds
        rewriter.replace(op, [], [v.value for v in (new_step, *params, *state)])


def expand_optimizer(module: ModuleOp, op_type: type[OpT], update: Update[OpT]) -> None:
    """Replaces every ``op_type`` op in ``module`` by the ops that ``update`` emits; the new step is ``step + 1``."""
    PatternRewriteWalker(_ExpandOptimizer(op_type, update), apply_recursively=False).rewrite_module(module)
