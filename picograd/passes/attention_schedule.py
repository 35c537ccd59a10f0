"""``pg-attention-schedule``: the attention nests of the loop stage (kernel kind ``attention``) become the
``gpu.launch`` kernels of FlashAttention-2 (forward; dk/dv; dq), as their ``flash`` schedule says; see
``picograd.passes.kinds.attention``. Runs before ``pg-to-gpu``, which outlines the launches. Raises
``PassFailedException`` for an attention nest that is not what ``pg-to-loops`` makes."""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where
from picograd.passes.kinds import attention, attention_mma, attention_wgmma
from picograd.passes.kinds.attention import ATTENTION_ATTR

BUILDERS = {
    attention.STRATEGY: attention.build_launch,
    attention_mma.STRATEGY: attention_mma.build_launch,
    attention_wgmma.STRATEGY: attention_wgmma.build_launch,
}
"""The kernel builder of each attention schedule (``flash``: SIMT; ``flash-mma``: mma.sync; ``flash-wgmma``: the
sm_90a forward)."""


@dataclass(frozen=True)
class PgAttentionSchedule(ModulePass):
    """Replace every top-level nest tagged ``pg.attention`` by its ``gpu.launch``."""

    name = "pg-attention-schedule"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            for par in [
                p for p in fn.body.block.ops if isinstance(p, scf.ParallelOp) and ATTENTION_ATTR in p.attributes
            ]:
                s = par.attributes.get("kernel.schedule")
                strategy = s.strategy.data if isinstance(s, ScheduleAttr) else attention.STRATEGY
                try:
                    BUILDERS.get(strategy, attention.build_launch)(par)
                except ValueError as e:
                    raise PassFailedException(f"pg-attention-schedule: {e}{where(par)}") from None
