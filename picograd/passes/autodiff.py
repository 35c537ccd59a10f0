"""``pg-autodiff``: reverse-mode automatic differentiation as a rewrite of ``pg.grad``.

``%ga, %gb = pg.grad %root [seed %s] wrt %a, %b`` is expanded in place: the ops of the enclosing block that lie on
a path from a ``wrt`` value to ``root`` (the *tape*) are walked in reverse, and each op's vector-Jacobian product
(vjp) is emitted as new ``pg`` ops right before the ``pg.grad``, which is then erased. Adjoints of a value used more
than once are summed (fan-out), slices that split it joined into one concat and products with it into one matmul
(``accumulate``). Only float tensors carry adjoints: integer and bool values, ``pg.stop_gradient``
and the other ops marked non-differentiable cut the paths. This is the textbook reverse sweep of Griewank & Walther,
"Evaluating Derivatives" (2nd ed., 2008), ch. 3, with the per-op rules of ch. 2 / JAX's ``defvjp`` table.

Because ``pg.grad`` ops are expanded in program order, a ``pg.grad`` whose root depends on the results of an earlier
one differentiates through that expansion: higher-order gradients come for free, since every op a rule emits has a
rule itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.context import Context
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseIntOrFPElementsAttr,
    FileLineColLoc,
    Float16Type,
    Float32Type,
    Float64Type,
    LocationAttr,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import DiagnosticException

from picograd.dialects import pg
from picograd.dialects.pg import element_of, is_float, reduced_shape, shape_of
from picograd.passes import _attention

# ---------------------------------------------------------------------------------------------------------------
# The builder the rules emit ops with


class Builder:
    """Creates ``pg`` ops right before ``anchor`` and stamps ``location`` on each one (xDSL does not copy locations
    by itself). Every op it makes is recorded in ``created``, so that the ones no gradient ends up using can be
    erased afterwards. Calling the builder with an op inserts it and returns its (single) result."""

    def __init__(self, anchor: Operation, location: LocationAttr, created: list[Operation]):
        self.anchor, self.location, self.created = anchor, location, created

    def __call__(self, op: Operation) -> SSAValue:
        op.location = self.location
        Rewriter.insert_op(op, InsertPoint.before(self.anchor))
        self.created.append(op)
        return op.results[0]

    def add(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.AddOp(x, y))

    def sub(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.SubOp(x, y))

    def mul(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.MulOp(x, y))

    def div(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.DivOp(x, y))

    def neg(self, x: SSAValue) -> SSAValue:
        return self(pg.NegOp(x))

    def cmp(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.CmpOp(predicate, x, y))

    def select(self, cond: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        return self(pg.SelectOp(cond, x, y))

    def full(self, value: float, like: SSAValue) -> SSAValue:
        """``value`` in every element of ``like``'s type: a 0-d ``pg.constant`` broadcast to ``like``'s shape (a
        splat constant would store every element in the attribute)."""
        element = element_of(like)
        assert isinstance(element, Float32Type | Float64Type | BFloat16Type | Float16Type), "adjoints are float tensors"
        scalar = DenseIntOrFPElementsAttr.from_list(TensorType(element, []), [value])
        return self.broadcast(self(pg.ConstantOp(scalar)), shape_of(like))

    def zeros(self, like: SSAValue) -> SSAValue:
        return self.full(0.0, like)

    def reshape(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        return x if shape_of(x) == tuple(shape) else self(pg.ReshapeOp(x, shape))

    def broadcast(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        return x if shape_of(x) == tuple(shape) else self(pg.BroadcastToOp(x, shape))

    def sum_to(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        """Unbroadcast: sum ``x`` over the dims that broadcasting ``shape`` to ``x``'s shape added or stretched,
        then reshape to ``shape``."""
        big = shape_of(x)
        lead = len(big) - len(shape)
        dims = [i for i, n in enumerate(big) if i < lead or (shape[i - lead] == 1 and n != 1)]
        return self.reshape(self(pg.SumOp(x, dims)) if dims else x, shape)

    def unreduce(self, x: SSAValue, dims: Sequence[int], shape: Sequence[int]) -> SSAValue:
        """Broadcast ``x``, a reduction over ``dims`` of a tensor of ``shape``, back to ``shape`` (reshaping to
        the keepdim shape first unless the reduced dims lead, where broadcasting adds them by itself)."""
        if list(dims) != list(range(len(dims))):
            x = self.reshape(x, reduced_shape(shape, dims, True))
        return self.broadcast(x, shape)

    def transpose(self, x: SSAValue) -> SSAValue:
        """Swap the last two dims (the matrix transpose of a batch of matrices)."""
        rank = len(shape_of(x))
        return self(pg.PermuteOp(x, [*range(rank - 2), rank - 1, rank - 2]))


# ---------------------------------------------------------------------------------------------------------------
# The vjp rules. ``rule(b, op, g)``: ``g`` is the adjoint of the op's (single) result; the rule returns one adjoint
# per operand, None where an operand gets no gradient. Rules may compute adjoints nobody needs (both sides of a
# product, say): the pass erases what ends up unused, so the rules stay symmetric and simple.

Grad = SSAValue | None
Rule = Callable[[Builder, Any, SSAValue], Sequence[Grad]]


def unary(vjp: Callable[[Builder, SSAValue, SSAValue, SSAValue], SSAValue]) -> Rule:
    """Rule of an elementwise ``y = f(x)`` from ``vjp(b, x, y, g) = g * f'(x)``."""
    return lambda b, op, g: [vjp(b, op.input, op.result, g)]


def binary(vjp: Callable[[Builder, SSAValue, SSAValue, SSAValue, SSAValue], tuple[Grad, Grad]]) -> Rule:
    """Rule of an elementwise ``z = f(x, y)`` from ``vjp(b, x, y, z, g) = (g * df/dx, g * df/dy)``."""
    return lambda b, op, g: vjp(b, op.lhs, op.rhs, op.result, g)


def _relu(b: Builder, x: SSAValue, y: SSAValue, g: SSAValue) -> SSAValue:
    """d relu(x) = [x > 0] dx (0 at x = 0, as PyTorch)."""
    zero = b.zeros(x)
    return b.select(b.cmp("gt", x, zero), g, zero)


def _abs(b: Builder, x: SSAValue, y: SSAValue, g: SSAValue) -> SSAValue:
    """d|x| = sign(x) dx, with sign(0) = 0 (as PyTorch)."""
    zero = b.zeros(x)
    return b.select(b.cmp("gt", x, zero), g, b.select(b.cmp("lt", x, zero), b.neg(g), zero))


def _erf(b: Builder, x: SSAValue, y: SSAValue, g: SSAValue) -> SSAValue:
    """d erf(x) = 2/sqrt(pi) exp(-x^2) dx."""
    return b.mul(g, b.mul(b.full(2 / math.sqrt(math.pi), x), b(pg.ExpOp(b.neg(b.mul(x, x))))))


def _div(b: Builder, x: SSAValue, y: SSAValue, z: SSAValue, g: SSAValue) -> tuple[Grad, Grad]:
    """z = x / y: dx = g / y, dy = -g x / y^2 = -(g / y) z."""
    gx = b.div(g, y)
    return gx, b.neg(b.mul(gx, z))


def _pow(b: Builder, x: SSAValue, y: SSAValue, z: SSAValue, g: SSAValue) -> tuple[Grad, Grad]:
    """z = x^y: dx = g y x^(y-1), dy = g z log(x), both as PyTorch (``pow_backward_self``/``_exponent``).

    dx is 0 where y == 0 (x^0 = 1 is flat in x, and y x^(y-1) would be 0 * inf at x = 0); the guarded branch reads
    y = 1 there so that no NaN is computed. dy is 0 where x == 0 and y >= 0, and ``z log(x)`` elsewhere: NaN for
    x < 0 and -inf for x == 0, y < 0, as PyTorch gives them. A constant exponent has no adjoint: the pass erases
    the unused dy, so those NaNs only appear where a gradient with respect to y was asked for.
    """
    one, zero = b.full(1.0, x), b.zeros(x)
    flat = b.cmp("eq", y, zero)
    y_safe = b.select(flat, one, y)
    gx = b.select(flat, zero, b.mul(g, b.mul(y_safe, b(pg.PowOp(x, b.sub(y_safe, one))))))
    x_zero = b.cmp("eq", x, zero)
    y_nonneg = b.cmp("ge", y, zero)
    still = b.select(x_zero, y_nonneg, x_zero)  # x == 0 and y >= 0 (a select: pg has no logical and)
    return gx, b.mul(g, b.select(still, zero, b.mul(z, b(pg.LogOp(x)))))


def extremum(wins: str) -> Callable[[Builder, SSAValue, SSAValue, SSAValue, SSAValue], tuple[Grad, Grad]]:
    """vjp of ``maximum`` (``wins="gt"``) / ``minimum`` (``"lt"``), PyTorch's formula: a side gets g unless it
    loses (then 0), g / 2 on a tie; so where either side is NaN (no comparison holds) both get g."""
    loses = {"gt": "lt", "lt": "gt"}[wins]

    def vjp(b: Builder, x: SSAValue, y: SSAValue, z: SSAValue, g: SSAValue) -> tuple[Grad, Grad]:
        zero = b.zeros(x)
        shared = b.select(b.cmp("eq", x, y), b.mul(g, b.full(0.5, g)), g)
        return b.select(b.cmp(loses, x, y), zero, shared), b.select(b.cmp(wins, x, y), zero, shared)

    return vjp


def _select(b: Builder, op: pg.SelectOp, g: SSAValue) -> Sequence[Grad]:
    """r = where(c, x, y): dx = where(c, g, 0), dy = where(c, 0, g); none for c. A select, never g * mask: an
    infinite g in the branch not taken must give 0, not 0 * inf = NaN (fully -inf rows, design note)."""
    zero = b.zeros(g)
    return [None, b.select(op.cond, g, zero), b.select(op.cond, zero, g)]


def _sum(b: Builder, op: pg.SumOp, g: SSAValue) -> Sequence[Grad]:
    """y = sum_D x: dx = g broadcast back over D (each element of x feeds its sum once)."""
    return [b.unreduce(g, op.dim_list, shape_of(op.input))]


def _extreme(b: Builder, op: pg.MaxOp | pg.MinOp, g: SSAValue) -> Sequence[Grad]:
    """y = max_D x (or min; values only, as torch.amax): dx = g [x == y] / #{x == y}, ties split evenly among the
    extreme elements. Written as a select of g / count where x == y, so a fully -inf row (all elements tie) stays
    finite."""
    x, dims, shape = op.input, op.dim_list, shape_of(op.input)
    hit = b.cmp("eq", x, b.unreduce(op.result, dims, shape))
    count = b(pg.SumOp(b(pg.CastOp(hit, element_of(x))), dims, keepdim=True))
    share = b.div(b.reshape(g, reduced_shape(shape, dims, True)), count)
    return [b.select(hit, b.broadcast(share, shape), b.zeros(x))]


def _permute(b: Builder, op: pg.PermuteOp, g: SSAValue) -> Sequence[Grad]:
    """y = permute(x, p): dx = permute(g, p^-1). A transposed matrix product ``g = A @ B`` that nothing else reads
    (a linear layer's weight gradient, ``(x^T dy)^T``) is computed transposed instead, ``B^T @ A^T``: the product
    reads its operands transposed in place, where a permute of its result would be a copy."""
    perm = op.perm_list
    product = g.owner
    if tuple(perm) == (1, 0) and isinstance(product, pg.MatmulOp) and not g.uses and len(shape_of(g)) == 2:
        return [b(pg.MatmulOp(b.transpose(product.rhs), b.transpose(product.lhs), product.allows_tf32))]
    return [b(pg.PermuteOp(g, sorted(range(len(perm)), key=perm.__getitem__)))]


def _slice(b: Builder, op: pg.SliceOp, g: SSAValue) -> Sequence[Grad]:
    """y = x[a:e:s]: dx puts g back in place with zeros elsewhere: pad low = a, interior = s - 1, high = the rest."""
    start, step = op.start.get_values(), op.step.get_values()
    high = [
        size - a - ((n - 1) * s + 1 if n else 0)
        for size, a, s, n in zip(shape_of(op.input), start, step, shape_of(op.result), strict=True)
    ]
    return [b(pg.PadOp(g, start, high, [s - 1 for s in step]))]


def _pad(b: Builder, op: pg.PadOp, g: SSAValue) -> Sequence[Grad]:
    """y = pad(x, low, high, interior): dx = g[low : low + (n-1)(interior+1) + 1 : interior + 1] (the padding
    value is an attribute: no gradient)."""
    low, interior = op.low.get_values(), op.interior.get_values()
    stop = [
        lo + ((n - 1) * (i + 1) + 1 if n else 0) for lo, i, n in zip(low, interior, shape_of(op.input), strict=True)
    ]
    return [b(pg.SliceOp(g, low, stop, [i + 1 for i in interior]))]


def _concat(b: Builder, op: pg.ConcatOp, g: SSAValue) -> Sequence[Grad]:
    """y = concat(x_1, ..., x_k): dx_i = the slice of g that x_i filled."""
    dim, shape, offset, grads = op.dim_index, shape_of(g), 0, []
    for x in op.inputs:
        start, stop = [0] * len(shape), list(shape)
        start[dim], stop[dim] = offset, offset + shape_of(x)[dim]
        grads.append(b(pg.SliceOp(g, start, stop, [1] * len(shape))))
        offset = stop[dim]
    return grads


def _matmul(b: Builder, op: pg.MatmulOp, g: SSAValue) -> Sequence[Grad]:
    """C = A @ B (batched): dA = dC @ B^T, dB = A^T @ dC (transposing the last two dims)."""
    tf32 = op.allows_tf32  # the backward products run at the forward's precision
    return [b(pg.MatmulOp(g, b.transpose(op.rhs), tf32)), b(pg.MatmulOp(b.transpose(op.lhs), g, tf32))]


def _gather(b: Builder, op: pg.GatherOp, g: SSAValue) -> Sequence[Grad]:
    """y = take(x, i, dim): dx = scatter_add(g, i, dim) (repeated indices accumulate); none for the indices."""
    return [b(pg.ScatterAddOp(g, op.indices, op.dim_index, shape_of(op.input))), None]


def _scatter_add(b: Builder, op: pg.ScatterAddOp, g: SSAValue) -> Sequence[Grad]:
    """y = scatter_add(u, i, dim) is linear in u with gather as its transpose: du = take(g, i, dim)."""
    return [b(pg.GatherOp(g, op.indices, op.dim_index)), None]


def _cast(b: Builder, op: pg.CastOp, g: SSAValue) -> Sequence[Grad]:
    """Float to float: dx = g cast back to x's type. To or from an integer type: no gradient (the pass never
    gives an integer result an adjoint, so only the float input case is left)."""
    return [b(pg.CastOp(g, element_of(op.input))) if is_float(element_of(op.input)) else None]


# -- the operator surface (issue 20)


def _flat(b: Builder, x: SSAValue, y: SSAValue, g: SSAValue) -> SSAValue:
    """Piecewise-constant functions (floor, ceil, round, trunc, sign): zero gradient (as PyTorch)."""
    return b.zeros(x)


def _one_minus_x2(b: Builder, x: SSAValue) -> SSAValue:
    """``(1 - x)(1 + x)``: ``1 - x*x`` without the cancellation near ``|x| = 1``."""
    one = b.full(1.0, x)
    return b.mul(b.sub(one, x), b.add(one, x))


def _atan2(b: Builder, y: SSAValue, x: SSAValue, z: SSAValue, g: SSAValue) -> tuple[Grad, Grad]:
    """z = atan2(y, x): dy = g x / (x^2 + y^2), dx = -g y / (x^2 + y^2) (as PyTorch: NaN at the origin)."""
    r2 = b.add(b.mul(x, x), b.mul(y, y))
    return b.div(b.mul(g, x), r2), b.neg(b.div(b.mul(g, y), r2))


def _copysign(b: Builder, x: SSAValue, y: SSAValue, z: SSAValue, g: SSAValue) -> tuple[Grad, Grad]:
    """z = copysign(x, y): dx = g z / x (the sign flip, +-1), 0 where x == 0 (as PyTorch); none for y."""
    zero = b.zeros(x)
    is_zero = b.cmp("eq", x, zero)
    return b.select(is_zero, zero, b.mul(g, b.div(z, b.select(is_zero, b.full(1.0, x), x)))), None


_LN2 = math.log(2.0)
SURFACE_VJP_RULES: dict[type[Operation], Rule | None] = {
    pg.FloorOp: unary(_flat),
    pg.CeilOp: unary(_flat),
    pg.RoundOp: unary(_flat),
    pg.TruncOp: unary(_flat),
    pg.SignOp: unary(_flat),
    pg.Log2Op: unary(lambda b, x, y, g: b.div(g, b.mul(x, b.full(_LN2, x)))),  # dx / (x ln 2)
    pg.Exp2Op: unary(lambda b, x, y, g: b.mul(g, b.mul(y, b.full(_LN2, y)))),  # 2^x ln 2 dx
    pg.Log1pOp: unary(lambda b, x, y, g: b.div(g, b.add(x, b.full(1.0, x)))),  # dx / (1 + x)
    pg.Expm1Op: unary(lambda b, x, y, g: b.mul(g, b.add(y, b.full(1.0, y)))),  # e^x dx = (y + 1) dx
    pg.AsinOp: unary(lambda b, x, y, g: b.div(g, b(pg.SqrtOp(_one_minus_x2(b, x))))),  # dx / sqrt(1 - x^2)
    pg.AcosOp: unary(lambda b, x, y, g: b.neg(b.div(g, b(pg.SqrtOp(_one_minus_x2(b, x)))))),  # -dx / sqrt(1 - x^2)
    pg.AtanOp: unary(lambda b, x, y, g: b.div(g, b.add(b.full(1.0, x), b.mul(x, x)))),  # dx / (1 + x^2)
    pg.AsinhOp: unary(lambda b, x, y, g: b.div(g, b(pg.SqrtOp(b.add(b.mul(x, x), b.full(1.0, x)))))),
    # d acosh x = dx / sqrt((x - 1)(x + 1)); d atanh x = dx / ((1 - x)(1 + x))
    pg.AcoshOp: unary(lambda b, x, y, g: b.div(g, b(pg.SqrtOp(b.neg(_one_minus_x2(b, x)))))),
    pg.AtanhOp: unary(lambda b, x, y, g: b.div(g, _one_minus_x2(b, x))),
    pg.Atan2Op: binary(_atan2),
    pg.CopysignOp: binary(_copysign),
    pg.BitwiseAndOp: None,  # integer results: no gradient
    pg.BitwiseOrOp: None,
    pg.BitwiseXorOp: None,
}


VJP_RULES: dict[type[Operation], Rule | None] = {
    # -- elementwise unary, y = f(x), dx = g f'(x)
    pg.NegOp: unary(lambda b, x, y, g: b.neg(g)),  # d(-x) = -dx
    pg.ExpOp: unary(lambda b, x, y, g: b.mul(g, y)),  # d e^x = e^x dx
    pg.LogOp: unary(lambda b, x, y, g: b.div(g, x)),  # d log x = dx / x
    pg.SqrtOp: unary(lambda b, x, y, g: b.div(g, b.add(y, y))),  # d sqrt(x) = dx / (2 sqrt(x))
    # d x^(-1/2) = -1/2 x^(-3/2) dx = -1/2 y^3 dx
    pg.RsqrtOp: unary(lambda b, x, y, g: b.mul(g, b.mul(b.full(-0.5, y), b.mul(y, b.mul(y, y))))),
    pg.SinOp: unary(lambda b, x, y, g: b.mul(g, b(pg.CosOp(x)))),  # d sin x = cos x dx
    pg.CosOp: unary(lambda b, x, y, g: b.neg(b.mul(g, b(pg.SinOp(x))))),  # d cos x = -sin x dx
    pg.TanhOp: unary(lambda b, x, y, g: b.mul(g, b.sub(b.full(1.0, y), b.mul(y, y)))),  # d tanh x = (1 - y^2) dx
    pg.SigmoidOp: unary(lambda b, x, y, g: b.mul(g, b.mul(y, b.sub(b.full(1.0, y), y)))),  # d s(x) = y (1 - y) dx
    pg.ReluOp: unary(_relu),  # [x > 0] dx
    pg.AbsOp: unary(_abs),  # sign(x) dx, sign(0) = 0
    pg.ReciprocalOp: unary(lambda b, x, y, g: b.neg(b.mul(g, b.mul(y, y)))),  # d (1/x) = -dx / x^2 = -y^2 dx
    pg.ErfOp: unary(_erf),  # 2/sqrt(pi) exp(-x^2) dx
    # -- elementwise binary, z = f(x, y)
    pg.AddOp: binary(lambda b, x, y, z, g: (g, g)),  # d(x + y) = dx + dy
    pg.SubOp: binary(lambda b, x, y, z, g: (g, b.neg(g))),  # d(x - y) = dx - dy
    pg.MulOp: binary(lambda b, x, y, z, g: (b.mul(g, y), b.mul(g, x))),  # d(x y) = y dx + x dy
    pg.DivOp: binary(_div),  # d(x / y) = dx / y - x / y^2 dy
    pg.PowOp: binary(_pow),  # d x^y = y x^(y-1) dx + x^y log(x) dy, guarded
    pg.MaximumOp: binary(extremum("gt")),  # to the larger; ties split evenly
    pg.MinimumOp: binary(extremum("lt")),  # to the smaller; ties split evenly
    pg.SelectOp: _select,  # to the chosen branch only
    # -- shapes, reductions, movement
    pg.BroadcastToOp: lambda b, op, g: [b.sum_to(g, shape_of(op.input))],  # unbroadcast
    pg.SumOp: _sum,  # broadcast back
    pg.MaxOp: _extreme,  # to the maxima, ties split evenly
    pg.MinOp: _extreme,  # to the minima, ties split evenly
    pg.ReshapeOp: lambda b, op, g: [b.reshape(g, shape_of(op.input))],  # reshape back
    pg.PermuteOp: _permute,  # inverse permutation
    pg.SliceOp: _slice,  # pad with zeros
    pg.PadOp: _pad,  # slice back
    pg.ConcatOp: _concat,  # slices
    pg.MatmulOp: _matmul,  # dA = dC B^T, dB = A^T dC
    pg.GatherOp: _gather,  # scatter_add
    pg.ScatterAddOp: _scatter_add,  # gather
    pg.CastOp: _cast,  # cast back (floats only)
    # -- no gradient flows through these (None): detach, sources, and ops with integer/bool results
    pg.StopGradientOp: None,
    pg.ConstantOp: None,
    pg.IotaOp: None,
    pg.RandomOp: None,
    pg.CmpOp: None,
    pg.ArgmaxOp: None,
    pg.ArgminOp: None,
    **SURFACE_VJP_RULES,
    pg.CheckIndexOp: None,
}


# -- attention (issue 11)


def _scaled_dot_product_attention(b: Builder, op: pg.ScaledDotProductAttentionOp, g: SSAValue) -> Sequence[Grad]:
    """O = D(P) V with P = softmax(S), S = scale q k^T (+ mask), D the dropout multiplier: dV = D(P)^T g,
    dP = D(g V^T), dS = P (dP - rowsum(dP P)), dq = scale dS k, dk = scale dS^T q; a float mask gets dS summed to
    its shape, a bool mask and the dropout multiplier get nothing. P is recomputed from the operands (the
    FlashAttention backward of Dao et al., 2022, without the tiling). Without a float mask the rule is
    one ``pg.attention_backward`` op (with the row log-sum-exp, ``pg.attention_lse``), which the fused attention
    kernel computes without the T x T matrices; otherwise the backward is the decomposition above."""
    if _attention.fused_backward(op):
        lse = b(pg.AttentionLseOp(op.query, op.key, op.mask, op.scale_value, op.is_causal))
        bwd = pg.AttentionBackwardOp(
            op.query, op.key, op.value, op.result, g, lse, op.mask, op.dropout, op.scale_value, op.is_causal
        )
        b(bwd)
        return [*bwd.results, *([None] if op.mask is not None else []), *([None] if op.dropout is not None else [])]
    p = _attention.probabilities(b, op)
    shape = shape_of(p)
    pd = b.mul(p, op.dropout) if op.dropout is not None else p
    dv = b(pg.MatmulOp(b.transpose(pd), g))
    dp = b(pg.MatmulOp(g, b.transpose(op.value)))
    if op.dropout is not None:
        dp = b.mul(dp, op.dropout)
    row = b(pg.SumOp(b.mul(dp, p), [len(shape) - 1], keepdim=True))
    ds = b.mul(p, b.sub(dp, b.broadcast(row, shape)))
    scaled = b.mul(ds, b.full(op.scale_value, ds))
    grads: list[Grad] = [
        b(pg.MatmulOp(scaled, op.key)),
        b(pg.MatmulOp(b.transpose(scaled), op.query)),
        dv,
    ]
    if op.mask is not None:
        grads.append(b.sum_to(ds, shape_of(op.mask)) if is_float(element_of(op.mask)) else None)
    if op.dropout is not None:
        grads.append(None)
    return grads


VJP_RULES[pg.ScaledDotProductAttentionOp] = _scaled_dot_product_attention


# -- convolution (issue 12)


def _pad_or_slice(
    b: Builder, x: SSAValue, low: Sequence[int], high: Sequence[int], interior: Sequence[int]
) -> SSAValue:
    """``x`` with ``interior`` zeros between neighbours and ``low``/``high`` zeros added before/after each dim;
    a negative amount removes elements instead (a ``pg.pad`` then a ``pg.slice``)."""
    if any(low) or any(high) or any(interior):
        x = b(pg.PadOp(x, [max(v, 0) for v in low], [max(v, 0) for v in high], interior))
    if min((*low, *high), default=0) < 0:
        shape = shape_of(x)
        start = [max(-v, 0) for v in low]
        stop = [n - max(-v, 0) for n, v in zip(shape, high, strict=True)]
        x = b(pg.SliceOp(x, start, stop, [1] * len(shape)))
    return x


def _flip_spatial(b: Builder, w: SSAValue) -> SSAValue:
    """``w`` reversed along every dim after the first two (a ``pg.gather`` of constant indices per dim)."""
    for d, n in enumerate(shape_of(w)):
        if d >= 2 and n > 1:
            rev = DenseIntOrFPElementsAttr.from_list(TensorType(pg.i64, [n]), list(range(n - 1, -1, -1)))
            w = b(pg.GatherOp(w, b(pg.ConstantOp(rev)), d))
    return w


def _conv(b: Builder, op: pg.ConvOp, g: SSAValue) -> Sequence[Grad]:
    """vjp of ``y = conv(x, w)`` (stride s, dilation d, padding lo/hi, G groups), both as convolutions:

    - dx is the transposed convolution: ``g`` dilated by ``s - 1`` zeros, padded by ``d (K - 1) - lo`` before (and
      up to the input's length after), convolved (stride 1, dilation d) with ``w`` flipped in space and with in and
      out channels swapped within each group;
    - dw is a correlation of the input with ``g``: with the batch as the contracted channel dim, ``x`` as
      (C/G, G N, *S) and ``g`` as (O, N, *Q) convolve with stride d, dilation s and the forward padding, giving
      (C/G, O, *K') with K' >= K, sliced to K and transposed to (O, C/G, *K).

    (The two identities of Dumoulin and Visin, "A guide to convolution arithmetic for deep learning", 2016.)"""
    x, w = op.input, op.weight
    n, c, *size = shape_of(x)
    o, cg, *kernel = shape_of(w)
    q = shape_of(g)[2:]
    groups, og = op.group_count, o // op.group_count
    s, d, lo, hi = op.strides, op.dilations, op.lows, op.highs
    r = len(size)
    # input gradient
    before = [di * (k - 1) - low for di, k, low in zip(d, kernel, lo, strict=True)]
    after = [
        sz + di * (k - 1) - bf - ((qq - 1) * st + 1)
        for sz, di, k, bf, qq, st in zip(size, d, kernel, before, q, s, strict=True)
    ]
    spread = _pad_or_slice(b, g, [0, 0, *before], [0, 0, *after], [0, 0, *(st - 1 for st in s)])
    swapped = b.reshape(_flip_spatial(b, w), (groups, og, cg, *kernel))
    swapped = b.reshape(b(pg.PermuteOp(swapped, [0, 2, 1, *range(3, 3 + r)])), (c, og, *kernel))
    dx = b(pg.ConvOp(spread, swapped, [1] * r, d, [0] * r, [0] * r, groups))
    # weight gradient
    xt = b.reshape(
        b(pg.PermuteOp(b.reshape(x, (n, groups, cg, *size)), [2, 1, 0, *range(3, 3 + r)])), (cg, groups * n, *size)
    )
    gt = b(pg.PermuteOp(g, [1, 0, *range(2, 2 + r)]))
    dw = b(pg.ConvOp(xt, gt, d, s, lo, hi, groups))
    if shape_of(dw)[2:] != tuple(kernel):
        dw = b(pg.SliceOp(dw, [0] * (2 + r), [cg, o, *kernel], [1] * (2 + r)))
    return [dx, b(pg.PermuteOp(dw, [1, 0, *range(2, 2 + r)]))]


VJP_RULES[pg.ConvOp] = _conv


# ---------------------------------------------------------------------------------------------------------------
# The reverse sweep


def _where(op: Operation) -> str:
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return f" at {loc.filename.data}:{loc.line.data}:{loc.column.data}"
    return ""


def _carries_gradient(value: SSAValue) -> bool:
    return is_float(element_of(value))


def _inputs(op: Operation) -> list[SSAValue]:
    """The values ``op`` reads: its operands and, for an op with regions, what its nested ops read (so that a
    region op between wrt and root is seen, and refused, rather than silently cutting the path)."""
    if not op.regions:
        return list(op.operands)
    return [v for nested in op.walk() for v in nested.operands]


def _zero_pad_dim(v: SSAValue) -> int | None:
    """The dim along which ``v`` is a zero ``pg.pad`` (no interior padding, no padding along other dims) of a
    tensor, or None: what the vjp of a ``pg.slice`` of one dim gives."""
    op = v.owner
    if not isinstance(op, pg.PadOp) or str(op.value.value.data) != "0.0" or any(op.interior.get_values()):
        return None
    dims = [d for d, (lo, hi) in enumerate(zip(op.low.get_values(), op.high.get_values(), strict=True)) if lo or hi]
    return dims[0] if len(dims) == 1 else None


def accumulate(b: Builder, parts: Sequence[SSAValue]) -> SSAValue:
    """The sum of the adjoint contributions ``parts`` (same type), with two kinds of parts joined first
    (:func:`join_slices`, :func:`join_products`); the others are added in order."""
    result: SSAValue | None = None
    for v in join_products(b, join_slices(b, parts)):
        result = v if result is None else b.add(result, v)
    assert result is not None
    return result


def join_slices(b: Builder, parts: Sequence[SSAValue]) -> list[SSAValue]:
    """``parts`` with the zero pads along one dim whose non-zero slabs are disjoint (the vjps of slices that split a
    tensor: an LSTM's gates, the steps of an unrolled sequence, q/k/v) joined into one ``pg.concat`` of the padded
    tensors (zeros in the gaps, a pad for the zeros at the ends): one copy of the data in place of a sum of tensors
    of the full size each. Each element is the same as the sum's, except that a ``-0.0`` stays ``-0.0`` (the sum
    gives ``+0.0``)."""
    by_dim: dict[int, list[SSAValue]] = {}
    for v in parts:
        d = _zero_pad_dim(v)
        if d is not None:
            by_dim.setdefault(d, []).append(v)
    joined: dict[SSAValue, SSAValue | None] = {}  # first pad of a joined group -> the concat; the others -> None
    for d, pads in by_dim.items():
        pads.sort(key=lambda v: v.owner.low.get_values()[d])  # type: ignore[union-attr]
        slabs = [(v.owner.low.get_values()[d], shape_of(v.owner.input)[d]) for v in pads]  # type: ignore[union-attr]
        if len(pads) < 2 or any(lo + n > nxt for (lo, n), (nxt, _) in zip(slabs, slabs[1:], strict=False)):
            continue
        shape = list(shape_of(pads[0]))
        inputs: list[SSAValue] = []
        end = slabs[0][0]
        for v, (lo, n) in zip(pads, slabs, strict=True):
            if lo > end:  # a gap between two slabs: zeros
                gap = [*shape[:d], lo - end, *shape[d + 1 :]]
                inputs.append(b.broadcast(b(pg.ConstantOp(_scalar(element_of(v), 0.0))), gap))
            inputs.append(v.owner.input)  # type: ignore[union-attr]
            end = lo + n
        low, high = [0] * len(shape), [0] * len(shape)
        low[d], high[d] = slabs[0][0], shape[d] - end
        total = b(pg.ConcatOp(inputs, d))
        if low[d] or high[d]:
            total = b(pg.PadOp(total, low, high, [0] * len(shape)))
        joined[pads[0]] = total
        joined.update((v, None) for v in pads[1:])
    return [w for v in parts if (w := joined.get(v, v)) is not None]


def _product(v: SSAValue) -> tuple[tuple[int, ...], pg.MatmulOp] | None:
    """(the permutation, the matmul) when ``v`` is a matrix product of 2-D operands or a ``pg.permute`` of one (no
    permutation: ``()``), or None."""
    op = v.owner
    perm: tuple[int, ...] = ()
    if isinstance(op, pg.PermuteOp):
        perm = tuple(op.perm_list)
        op = op.input.owner
    if not isinstance(op, pg.MatmulOp) or len(shape_of(op.lhs)) != 2 or len(shape_of(op.rhs)) != 2:
        return None
    return perm, op


def join_products(b: Builder, parts: Sequence[SSAValue]) -> list[SSAValue]:
    """``parts`` with the matrix products ``A_k @ B_k`` (each maybe permuted alike) joined into one product
    ``[A_1 ... A_n] @ [B_1; ...; B_n]`` of the operands concatenated along the contracted dim: the gradient of a
    weight that every step of an unrolled sequence multiplies (an LSTM's ``W_hh``) is one matmul over all steps,
    not one per step and a sum. ``A_k = a_k^T`` (the vjp's transposed activations) concatenate as ``(concat_k
    a_k)^T``, which the matmul reads transposed in place. The sum is the same up to rounding (another order)."""
    groups: dict[tuple, list[tuple[SSAValue, pg.MatmulOp]]] = {}
    for v in parts:
        found = _product(v)
        if found is not None:
            perm, op = found
            groups.setdefault((perm, op.allows_tf32), []).append((v, op))
    joined: dict[SSAValue, SSAValue | None] = {}
    for (perm, tf32), members in groups.items():
        if len(members) < 2:
            continue
        lhs = [op.lhs for _, op in members]
        if all(isinstance(x.owner, pg.PermuteOp) and tuple(x.owner.perm_list) == (1, 0) for x in lhs):  # type: ignore[union-attr]
            a = b(pg.PermuteOp(b(pg.ConcatOp([x.owner.input for x in lhs], 0)), [1, 0]))  # type: ignore[union-attr]
        else:
            a = b(pg.ConcatOp(lhs, 1))
        total = b(pg.MatmulOp(a, b(pg.ConcatOp([op.rhs for _, op in members], 0)), tf32))
        joined[members[0][0]] = b(pg.PermuteOp(total, perm)) if perm else total
        joined.update((v, None) for v, _ in members[1:])
    return [w for v in parts if (w := joined.get(v, v)) is not None]


def _scalar(element: Any, value: float) -> DenseIntOrFPElementsAttr:
    return DenseIntOrFPElementsAttr.from_list(TensorType(element, []), [value])


def expand_grad(grad: pg.GradOp) -> None:
    """Replace ``grad`` by the ops computing its gradients, inserted right before it, and erase it.

    Root and wrt values are float tensors (``tensor<...xf32|f64>``); each gradient has its wrt value's type. A wrt
    value that ``root`` does not depend on (through float values and differentiable ops) gets zeros. Raises
    ``DiagnosticException`` when ``root`` or a wrt value is not a float tensor, and when an op on a path from a
    wrt value to ``root`` has no rule in ``VJP_RULES`` (the message names the op and its location).
    """
    for role, value in [("root", grad.root), *(("wrt value", v) for v in grad.wrt)]:
        if not _carries_gradient(value):
            raise DiagnosticException(
                f"pg-autodiff: pg.grad{_where(grad)}: the {role} is a {value.type}, but only float tensors have "
                "gradients"
            )
    block = grad.parent_block()
    assert block is not None, "pg.grad must sit in a block"
    forward = []
    for op in block.ops:
        if op is grad:
            break
        forward.append(op)

    # Activity analysis: the float values that depend on a wrt value through ops that pass gradients ...
    active = set(grad.wrt)
    for op in forward:
        if VJP_RULES.get(type(op), ...) is not None and any(v in active for v in _inputs(op)):
            active.update(r for r in op.results if _carries_gradient(r))
    # ... and, of their ops, those root depends on: the tape, in reverse order.
    needed, tape = {grad.root}, []
    for op in reversed(forward):
        if any(r in needed and r in active for r in op.results) and any(v in active for v in _inputs(op)):
            if VJP_RULES.get(type(op), ...) is None:
                continue  # a non-differentiable op producing a wrt value itself
            if type(op) not in VJP_RULES:
                raise DiagnosticException(
                    f"pg-autodiff: cannot differentiate through '{op.name}'{_where(op)}: it lies on a path from a "
                    f"wrt value to the root of pg.grad{_where(grad)} and has no vjp rule"
                )
            tape.append(op)
            needed.update(v for v in _inputs(op) if v in active)

    created: list[Operation] = []
    here = Builder(grad, grad.location, created)
    # the contributions to each value's adjoint (fan-out), summed when the adjoint is first read
    pending = {grad.root: [grad.seed if grad.seed is not None else here.full(1.0, grad.root)]}

    def adjoint(value: SSAValue, b: Builder) -> SSAValue | None:
        if value not in pending:
            return None
        parts = pending[value]
        if len(parts) > 1:
            pending[value] = parts = [accumulate(b, parts)]
        return parts[0]

    for op in tape:
        rule = VJP_RULES[type(op)]
        b = Builder(grad, op.location, created)
        g = adjoint(op.results[0], b)  # every differentiable pg op has one result
        if g is None or rule is None:
            continue
        for value, contribution in zip(op.operands, rule(b, op, g), strict=True):
            if contribution is None or value not in active:
                continue
            assert contribution.type == value.type, f"vjp of {op.name}: {contribution.type} for {value.type}"
            pending.setdefault(value, []).append(contribution)
    for result, value in zip(grad.grads, grad.wrt, strict=True):
        result.replace_all_uses_with(adjoint(value, here) or here.zeros(value))
    Rewriter.erase_op(grad)
    for op in reversed(created):  # what no gradient uses: the adjoints of inactive operands and their inputs
        if all(not r.uses for r in op.results):
            Rewriter.erase_op(op)


@dataclass(frozen=True)
class PgAutodiff(ModulePass):
    """Expand every ``pg.grad`` of the module into vector-Jacobian products (see ``expand_grad``), in program
    order, so that a later ``pg.grad`` can differentiate an earlier one's expansion."""

    name = "pg-autodiff"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for grad in [o for o in op.walk() if isinstance(o, pg.GradOp)]:
            expand_grad(grad)
