"""``pg-split-reductions``: the nests scheduled with a two-stage strategy become their stages' nests.

Input: the loop stage (``pg-to-loops``), each nest carrying its kernel's ``kernel.schedule``. A top-level nest
whose schedule names a strategy of a kind's ``split`` hook (the registry, ``picograd.passes.kinds``:
``split_rows``/``split_columns`` of the reduction kind, ``picograd/passes/kinds/reduction_split.py``) and that the
kind marked (``pg.nest``) is handed to the hook, which replaces it by a scratch buffer of partial results and two
nests, each carrying the ``kernel.schedule`` of the strategy ``pg-to-gpu`` maps it with (``block_per_row`` or
``thread_per_point``). The kernel's other nests (outputs of other shapes) take ``thread_per_point``. Nests
in every function are rewritten (the kernels that ``pg-outline-kernels`` moved into functions of their own too).

Raises ``PassFailedException`` for a kernel scheduled with a split strategy none of whose nests is marked by a kind
with that hook (the loop emitter left its nest unmarked), and for a marked nest not of its kind's form.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects.attrs import KERNEL_ATTR, NEST_ATTR, SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where
from picograd.passes.kinds import SPLIT_STRATEGIES, kind_of_nest
from picograd.passes.kinds.base import MalformedNest


def _name(par: scf.ParallelOp, key: str) -> str | None:
    attr = par.attributes.get(key)
    return attr.data if isinstance(attr, StringAttr) else None


@dataclass(frozen=True)
class PgSplitReductions(ModulePass):
    """Rewrite the nests scheduled ``split_rows``/``split_columns`` into their two stages (see the module
    docstring)."""

    name = "pg-split-reductions"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp) and not f.is_declaration]:
            scheduled: set[str] = set()
            split: set[str] = set()
            for par in [p for p in fn.body.block.ops if isinstance(p, scf.ParallelOp)]:
                attr = par.attributes.get(SCHEDULE_ATTR)
                if not isinstance(attr, ScheduleAttr) or attr.strategy.data not in SPLIT_STRATEGIES:
                    continue
                kernel = _name(par, KERNEL_ATTR) or ""
                scheduled.add(kernel)
                try:
                    hook = kind_of_nest(_name(par, NEST_ATTR)).split.get(attr.strategy.data)
                except KeyError:
                    hook = None
                if hook is None:  # another nest of the kernel
                    block = attr.count("block", 256)
                    par.attributes[SCHEDULE_ATTR] = ScheduleAttr("thread_per_point", {"block": block})
                    continue
                try:
                    hook(par, attr)
                except MalformedNest as e:
                    raise PassFailedException(f"pg-split-reductions: a loop nest{where(par)} {e}") from None
                split.add(kernel)
            if broken := sorted(scheduled - split):
                raise PassFailedException(
                    f"pg-split-reductions: @{fn.sym_name.data}: kernel(s) {', '.join(broken)} are scheduled "
                    "split_rows or split_columns, but none of their loop nests is a marked reduction nest"
                )
