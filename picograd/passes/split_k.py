"""``pg-split-k``: the matmul nests whose schedule has ``split_k`` > 1 become partial matmuls and a sum.

Input: the loop stage (``pg-to-loops``), each nest carrying its kernel's ``kernel.schedule``. A top-level nest
marked ``pg.nest = "matmul"`` whose schedule records ``split_k = S`` (``pg-schedule``'s choice,
``picograd/passes/kinds/matmul_split.py``) is replaced by a scratch buffer of f32 partial sums, a marked matmul
nest batched by the ``S`` chunks of K (the same schedule without ``split_k``, for ``pg-matmul-schedule`` to tile)
and a ``thread_per_point`` nest summing the chunks in order. Runs ahead of ``pg-matmul-schedule``; nests in every
function are rewritten (the kernels ``pg-outline-kernels`` moved into functions of their own too).

The kernel's other nests (and a matmul nest the loop emitter left unmarked) lose ``split_k`` and run as they
would have. Raises ``PassFailedException`` for a marked nest not of the matmul kind's form.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects.attrs import NEST_ATTR, SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where
from picograd.passes.kinds import matmul
from picograd.passes.kinds.base import MalformedNest
from picograd.passes.kinds.matmul_split import SPLIT_K, split_nest, without_split


@dataclass(frozen=True)
class PgSplitK(ModulePass):
    """Split the K loop of the matmul nests scheduled with ``split_k`` (see the module docstring)."""

    name = "pg-split-k"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp) and not f.is_declaration]:
            for par in [p for p in fn.body.block.ops if isinstance(p, scf.ParallelOp)]:
                attr = par.attributes.get(SCHEDULE_ATTR)
                if not isinstance(attr, ScheduleAttr) or attr.count(SPLIT_K, 1) <= 1:
                    continue
                mark = par.attributes.get(NEST_ATTR)
                if not isinstance(mark, StringAttr) or mark.data != matmul.NAME:
                    # the kernel's other nests, or a matmul nest the loop emitter left unmarked: unsplit
                    par.attributes[SCHEDULE_ATTR] = without_split(attr)
                    continue
                try:
                    split_nest(par, attr.count(SPLIT_K))
                except MalformedNest as e:
                    raise PassFailedException(f"pg-split-k: a loop nest{where(par)} {e}") from None
