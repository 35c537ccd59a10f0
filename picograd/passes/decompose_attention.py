"""``pg-decompose-attention``: the reference lowering of ``pg.scaled_dot_product_attention`` into ``pg`` ops
(matmul, masks, a stable softmax, matmul; see ``picograd.passes._attention``), run before kernel formation so that
the loop, GPU and PTX stages need nothing new. It is the fallback of the fused attention kernel (kernel kind
``attention``, ``picograd.passes.kinds.attention``): by default only the ops that kernel does not compute (it
computes every float type: f32/f64 on SIMT kernels, bf16/f16 in f32 and on tensor cores, ``attention_mma``) are
decomposed, and each op made for those carries ``pg.unfused_attention`` saying why, so the IR shows where attention
still makes T x T tensors; ``all=true`` decomposes every attention op.
Autodiff runs before it and keeps the op whole (its vjp is a rule of its own; with a float mask that rule is the
decomposition too, since the mask's gradient is T x T)."""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from picograd.dialects import pg
from picograd.dialects.pg import element_of
from picograd.passes._attention import attention, fused_forward
from picograd.passes.autodiff import Builder

UNFUSED_ATTR = "pg.unfused_attention"
"""Attribute of each op of a decomposed attention: why the fused kernel does not compute it."""


@dataclass(frozen=True)
class PgDecomposeAttention(ModulePass):
    """Replace every ``pg.scaled_dot_product_attention`` that the fused kernel does not compute (all of them with
    ``all``) by the ``pg`` ops computing it (each new op takes the attention op's location)."""

    name = "pg-decompose-attention"
    all: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for attn in [o for o in op.walk() if isinstance(o, pg.ScaledDotProductAttentionOp)]:
            if fused_forward(attn) and not self.all:
                continue
            created: list[Operation] = []
            out = attention(Builder(attn, attn.location, created), attn)
            if not fused_forward(attn):
                for new in created:
                    new.attributes[UNFUSED_ATTR] = StringAttr(f"no fused kernel for {element_of(attn.query)}")
            attn.result.replace_all_uses_with(out)
            Rewriter.erase_op(attn)
