"""``pg-adam``: expands ``pg.adam`` into elementwise ``pg`` ops.

Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1 with its bias
correction) as ``torch.optim.Adam`` defines it, with L2 weight decay added to the gradient. With ``t = step + 1``
(the updates so far of the op's parameters: ``pg.optim`` gives one op per group, and a separate op with its own count
to parameters updated fewer times than their group, as PyTorch counts per parameter) and, for each parameter ``p``
with gradient ``g``::

    g = g + weight_decay * p                          (left out when weight_decay is a constant 0)
    m = m + (1 - beta1) * (g - m)                     (= beta1 * m + (1 - beta1) * g, as torch's lerp_)
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

The step size and bias corrections are computed on 0-d ``f64`` tensors, as PyTorch computes them in Python floats,
and rounded to the parameter's type once. ``pg-adamw`` reuses ``adam_update`` with decoupled weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from picograd.dialects import pg
from picograd.passes._optim_common import OpBuilder, Val, expand_optimizer, known_zero, per_param


def adam_update(
    b: OpBuilder, op: pg.AdamOp | pg.AdamWOp, new_step: Val, decoupled: bool = False
) -> list[tuple[Val, Sequence[Val]]]:
    """The Adam update of every parameter of ``op``; with ``decoupled``, AdamW's ``p = p * (1 - lr * weight_decay)``
    comes first and the gradient gets no L2 term."""
    lr, beta1, beta2, eps, weight_decay = (b.scalar(h) for h in op.hyper)
    t = new_step.cast(pg.f64)
    step_size = lr / (1 - beta1**t)
    bias_correction2_sqrt = (1 - beta2**t).sqrt()
    one_minus_beta1, one_minus_beta2 = 1 - beta1, 1 - beta2
    decay = not known_zero(weight_decay.value)
    if decay and decoupled:
        shrink = 1 - lr * weight_decay
    out: list[tuple[Val, Sequence[Val]]] = []
    for p, g, (m, v) in per_param(b, op):
        if decay and decoupled:
            p = p * shrink
        elif decay:
            g = g + weight_decay * p
        m = m + one_minus_beta1 * (g - m)
        v = v * beta2 + one_minus_beta2 * g * g
        p = p - step_size * m / (v.sqrt() / bias_correction2_sqrt + eps)
        out.append((p, [m, v]))
    return out


@dataclass(frozen=True)
class AdamPass(ModulePass):
    """Expands every ``pg.adam`` op (``torch.optim.Adam``'s step; see the module docstring)."""

    name = "pg-adam"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_optimizer(op, pg.AdamOp, adam_update)
