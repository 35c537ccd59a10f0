"""Control-flow flattening in ``pg-to-ptx`` (PTX ISA 8.0 section 9.7.11): structured ``scf`` regions become
labels and branches.

``scf.for`` is a guarded, bottom-tested loop whose induction variable and iteration values are registers written
back with ``ptx.assign`` (``mov``) at the end of each trip (through temporaries when one iteration value feeds
another); ``scf.if`` branches around its regions, and its results are registers written in both branches.

Not a pass: ``all_passes`` finds no ``ModulePass`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects import scf
from xdsl.ir import Block, SSAValue

from picograd.dialects import ptx
from picograd.passes.ptx_emitter import PtxEmitter


class PtxControlFlow(PtxEmitter):
    """The ``scf`` handlers of the kernel lowering (see the module docstring)."""

    # --- control flow -----------------------------------------------------------------------------------------

    def scf_for(self, op: scf.ForOp) -> None:
        lb, ub, step = (self.const_of(v) for v in (op.lb, op.ub, op.step))
        if lb is not None and ub is not None and int(lb) >= int(ub):  # never runs: the results are the inits
            for res, init in zip(op.results, op.iter_args, strict=True):
                self.values[res] = self.values[init]
            return
        body = op.body.block
        iv = self.r(ptx.MovOp(self.reg(op.lb), "s64"))
        carried = [self.r(ptx.MovOp(self.reg(v))) for v in op.iter_args]
        self.values[body.args[0]] = iv
        for arg, c in zip(body.args[1:], carried, strict=True):
            self.values[arg] = c
        top, end = self.label(), self.label()
        if lb is None or ub is None:
            skip = self.r(ptx.SetpOp("ge", iv, self.reg(op.ub), "s64"))
            self.emit(ptx.BraOp(end, guard=skip))
        loc = self.loc
        self.emit(ptx.LabelOp(top))
        self.lower_block_until_yield(body)
        self.loc = loc
        yld = body.last_op
        assert isinstance(yld, scf.YieldOp)
        self.assign(carried, [self.reg(v) for v in yld.operands], extra=[iv])
        self.emit(ptx.AssignOp(iv, self.r(ptx.AddOp(iv, self.reg(op.step), "s64"))))
        again = self.r(ptx.SetpOp("lt", iv, self.reg(op.ub), "s64"))
        self.emit(ptx.BraOp(top, guard=again))
        self.emit(ptx.LabelOp(end))
        for res, c in zip(op.results, carried, strict=True):
            self.values[res] = c

    def lower_block_until_yield(self, block: Block) -> None:
        for inner in block.ops:
            if isinstance(inner, scf.YieldOp):
                break
            self.loc = inner.location
            self.lower(inner)

    def assign(self, dests: Sequence[SSAValue], sources: Sequence[SSAValue], extra: Sequence[SSAValue] = ()) -> None:
        """Write ``sources`` into the registers ``dests`` as one parallel assignment."""
        pending = set(dests) | set(extra)
        if any(s in pending and s is not d for d, s in zip(dests, sources, strict=True)):
            sources = [self.r(ptx.MovOp(s)) for s in sources]
        for d, s in zip(dests, sources, strict=True):
            if d is not s:
                self.emit(ptx.AssignOp(d, s))

    def scf_if(self, op: scf.IfOp) -> None:
        cond = self.reg(op.cond)
        known = self.const_of(op.cond)
        regions = [op.true_region, op.false_region]
        if known is not None:  # a constant condition: only one branch
            region = regions[0 if known else 1]
            outs = self.inline_region(region)
            for res, v in zip(op.results, outs, strict=True):
                self.values[res] = v
            return
        other, end = self.label(), self.label()
        has_else = bool(op.false_region.blocks) and (
            op.results or any(not isinstance(o, scf.YieldOp) for o in op.false_region.block.ops)
        )
        loc = self.loc
        self.emit(ptx.BraOp(other if has_else else end, guard=cond, negate=True))
        then_vals = self.inline_region(op.true_region)
        self.loc = loc
        results = [self.r(ptx.MovOp(v)) for v in then_vals]
        if has_else:
            self.emit(ptx.BraOp(end))
            self.emit(ptx.LabelOp(other))
            else_vals = self.inline_region(op.false_region)
            self.loc = loc
            for d, s in zip(results, else_vals, strict=True):
                self.emit(ptx.AssignOp(d, s))
        self.emit(ptx.LabelOp(end))
        for res, r in zip(op.results, results, strict=True):
            self.values[res] = r

    def inline_region(self, region: Any) -> list[SSAValue]:
        """Lower the ops of a one-block region; the registers of what its ``scf.yield`` yields."""
        if not region.blocks:
            return []
        block = region.block
        self.lower_block_until_yield(block)
        yld = block.last_op
        return [self.reg(v) for v in yld.operands] if isinstance(yld, scf.YieldOp) else []
