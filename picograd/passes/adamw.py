"""``pg-adamw``: expands ``pg.adamw`` into elementwise ``pg`` ops.

AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) as ``torch.optim.AdamW`` defines
it: the parameter first decays, ``p = p * (1 - lr * weight_decay)``, then takes Adam's step (``pg-adam``'s module
docstring) on the raw gradient, without an L2 term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from picograd.dialects import pg
from picograd.passes._optim_common import OpBuilder, Val, expand_optimizer
from picograd.passes.adam import adam_update


def adamw_update(b: OpBuilder, op: pg.AdamWOp, new_step: Val) -> list[tuple[Val, Sequence[Val]]]:
    """The AdamW update of every parameter of ``op``."""
    return adam_update(b, op, new_step, decoupled=True)


@dataclass(frozen=True)
class AdamWPass(ModulePass):
    """Expands every ``pg.adamw`` op (``torch.optim.AdamW``'s step; see the module docstring)."""

    name = "pg-adamw"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_optimizer(op, pg.AdamWOp, adamw_update)
