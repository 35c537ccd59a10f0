"""``pg-decompose-attention``: the reference lowering of ``pg.scaled_dot_product_attention`` into ``pg`` ops
(matmul, masks, a stable softmax, matmul; see ``picograd.passes._attention``), run before kernel formation so that
the loop, GPU and PTX stages need nothing new. Autodiff runs before it and keeps the op whole (its vjp is a rule
of its own); a fused FlashAttention kernel would replace this pass for the GPU."""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from picograd.dialects import pg
from picograd.passes._attention import attention
from picograd.passes.autodiff import Builder


@dataclass(frozen=True)
class PgDecomposeAttention(ModulePass):
    """Replace every ``pg.scaled_dot_product_attention`` by the ``pg`` ops computing it (each new op takes the
    attention op's location)."""

    name = "pg-decompose-attention"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for attn in [o for o in op.walk() if isinstance(o, pg.ScaledDotProductAttentionOp)]:
            created: list[Operation] = []
            out = attention(Builder(attn, attn.location, created), attn)
            attn.result.replace_all_uses_with(out)
            Rewriter.erase_op(attn)
