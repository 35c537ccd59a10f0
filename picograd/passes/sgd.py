"""``pg-sgd``: expands ``pg.sgd`` into elementwise ``pg`` ops.

Stochastic gradient descent with momentum as ``torch.optim.SGD`` defines it (the algorithm box of its docs; the
momentum form of Sutskever et al., "On the importance of initialization and momentum in deep learning", ICML 2013),
for each parameter ``p`` with gradient ``g``::

    g = g + weight_decay * p                                         (left out when weight_decay is a constant 0)
    if momentum:                                                     (the op's ``momentum`` flag)
        buf = g if step == 0 else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p = p - lr * g

``step`` counts the updates before this one, so ``step == 0`` is PyTorch's "no momentum buffer yet".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from picograd.dialects import pg
from picograd.passes._optim_common import OpBuilder, Val, expand_optimizer, known_zero, per_param


def sgd_update(b: OpBuilder, op: pg.SGDOp, new_step: Val) -> list[tuple[Val, Sequence[Val]]]:
    """The SGD update of every parameter of ``op`` (see the module docstring)."""
    lr, momentum, dampening, weight_decay = (b.scalar(h) for h in op.hyper)
    decay = not known_zero(weight_decay.value)
    if op.flag("momentum"):
        first = b.scalar(op.step).eq(0)
        keep = 1 - dampening
    out: list[tuple[Val, Sequence[Val]]] = []
    for p, g, state in per_param(b, op):
        if decay:
            g = g + weight_decay * p
        if state:  # the momentum buffer
            (buf,) = state
            buf = b.where(first, g, momentum * buf + keep * g)
            g = g + momentum * buf if op.flag("nesterov") else buf
            state = [buf]
        out.append((p - lr * g, state))
    return out


@dataclass(frozen=True)
class SGDPass(ModulePass):
    """Expands every ``pg.sgd`` op (``torch.optim.SGD``'s step; see the module docstring)."""

    name = "pg-sgd"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_optimizer(op, pg.SGDOp, sgd_update)
