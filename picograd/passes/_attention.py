"""Attention in plain ``pg`` ops: what ``pg.scaled_dot_product_attention`` computes, written with the builder of
``pg-autodiff``. Shared by its vjp rule (which recomputes the probabilities from the op's operands instead of
storing them, as FlashAttention's backward does) and by ``pg-decompose-attention`` (its reference lowering)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xdsl.dialects.builtin import TensorType, i64
from xdsl.ir import SSAValue

from picograd.dialects import pg
from picograd.dialects.pg import element_of, is_float, shape_of

if TYPE_CHECKING:
    from picograd.passes.autodiff import Builder


def scores(b: Builder, op: pg.ScaledDotProductAttentionOp) -> SSAValue:
    """``q @ k^T * scale`` with the causal and user masks applied: (*B, L, S); masked entries are ``-inf`` (an
    ``i1`` mask keeps True), a float mask is added."""
    shape = op.scores_shape()
    s = b(pg.MatmulOp(op.query, b.transpose(op.key)))
    s = b.mul(s, b.full(op.scale_value, s))
    if op.is_causal:
        rows_cols = TensorType(i64, list(shape[-2:]))
        row, col = b(pg.IotaOp(rows_cols, 0)), b(pg.IotaOp(rows_cols, 1))
        keep = b.broadcast(b.cmp("le", col, row), shape)
        s = b.select(keep, s, b.full(-math.inf, s))
    if op.mask is not None:
        mask = b.broadcast(op.mask, shape)
        if element_of(mask) == pg.i1:
            s = b.select(mask, s, b.full(-math.inf, s))
        else:
            s = b.add(s, mask)
    return s


def probabilities(b: Builder, op: pg.ScaledDotProductAttentionOp) -> SSAValue:
    """``softmax(scores)`` over the keys, stably (the row max subtracted); a row whose keys are all masked gives
    zeros, as picograd's ``Tensor.softmax``."""
    s = scores(b, op)
    shape = shape_of(s)
    last = len(shape) - 1
    m = b(pg.MaxOp(s, [last], keepdim=True))
    m = b.select(b.cmp("eq", m, b.full(-math.inf, m)), b.zeros(m), m)
    e = b(pg.ExpOp(b.sub(s, b.broadcast(m, shape))))
    den = b(pg.SumOp(e, [last], keepdim=True))
    den = b.select(b.cmp("eq", den, b.zeros(den)), b.full(1.0, den), den)
    return b.div(e, b.broadcast(den, shape))


def attention(b: Builder, op: pg.ScaledDotProductAttentionOp) -> SSAValue:
    """The op's result: ``probabilities [* dropout] @ v``."""
    p = probabilities(b, op)
    if op.dropout is not None:
        p = b.mul(p, op.dropout)
    return b(pg.MatmulOp(p, op.value))


def fused_forward(op: pg.ScaledDotProductAttentionOp) -> bool:
    """Whether the fused attention kernel (kernel kind ``attention``) computes ``op``: every float type (f32 and f64
    on the SIMT ``flash`` kernels; bf16 and f16 computing in f32, on tensor cores under the ``flash-mma`` schedule
    where its shapes allow, else on ``flash``)."""
    return is_float(element_of(op.query))


def fused_backward(op: pg.ScaledDotProductAttentionOp) -> bool:
    """Whether ``op``'s vjp is ``pg.attention_backward``: a fused forward and no float mask (whose gradient, dS
    summed to the mask's shape, is a T x T tensor)."""
    return fused_forward(op) and (op.mask is None or not is_float(element_of(op.mask)))
