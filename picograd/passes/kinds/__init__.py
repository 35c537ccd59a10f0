"""The kernel-kind registry: how each kind of kernel lowers to loops and to GPU code under its schedule.

A kernel's kind (``kernel.fused``/``kernel.launch``'s ``kind``, one of ``kernel.KINDS``, chosen once by
``pg-fuse``) names a row of :data:`KERNEL_KINDS`; each row is the ``KIND`` record
(:class:`~picograd.passes.kinds.base.KernelKind`) of one module of this package, which holds everything that kind
needs: its loop nests (``pg-to-loops``), the ``pg.nest`` mark on the nest its schedule applies to, and its GPU
mappings under each strategy (``pg-to-gpu``, ``pg-matmul-schedule``). The passes dispatch on the IR's attributes
(the kernel's ``kind``, a nest's ``pg.nest``, its ``kernel.schedule``) through this table and match no loop nest.

    kind          module          loops                                 GPU strategies
    elementwise   elementwise     one nest per output shape             thread_per_point
    gather        gather          an index map in its consumer's nest   thread_per_point
    reduction     reduction       a nest of scf.for over reduced dims   thread_per_point, block_per_row,
                                                                        warp_per_row,
                                                                        split_rows, split_columns
                                                                        (reduction_split: two nests, by
                                                                        pg-split-reductions)
    matmul        matmul          (batch, M, N) x scf.for over K        thread_per_point, the SGEMM rungs,
                                                                        mma-sync (matmul_mma_sync: its tile hook),
                                                                        wgmma, wgmma-ws (matmul_wgmma: built in the
                                                                        ptx dialect by pg-to-ptx); any of them
                                                                        with split_k (matmul_split: partial
                                                                        matmuls and a sum, by pg-split-k)
    scatter_add   scatter_add     zero fill, then the scatter           thread_per_point, atomic, shared_rows
                                                                        (few rows: privatized in workgroup memory)
    attention     attention       the whole kernel (lower_kernel):      flash (pg-attention-schedule, from the
                                  online-softmax nests, pg.attention    nests' pg.attention), flash-mma (bf16/f16
                                                                        on mma.sync: attention_mma),
                                                                        flash-wgmma (attention_wgmma: the bf16
                                                                        forward on sm_90a, built in the ptx
                                                                        dialect), thread_per_point
    movement, random, other: the elementwise row

Adding a kind: a module ``kinds/<kind>.py`` with a ``KIND = KernelKind(...)`` record and a row here (see
``docs/design.md``, "How to add a kernel kind").
"""

from __future__ import annotations

from xdsl.ir import Operation

from picograd.passes.kinds import attention, elementwise, gather, matmul, reduction, scatter_add
from picograd.passes.kinds.base import GpuNest, KernelKind

KERNEL_KINDS: dict[str, KernelKind] = {
    "elementwise": elementwise.KIND,
    "gather": gather.KIND,
    "reduction": reduction.KIND,
    "matmul": matmul.KIND,
    "scatter_add": scatter_add.KIND,
    "attention": attention.KIND,
    "movement": elementwise.KIND,
    "random": elementwise.KIND,
    "other": elementwise.KIND,
}
"""Kind name (``kernel.KINDS``, and the value of a nest's ``pg.nest``) -> its record."""

DEFAULT = elementwise.KIND
"""The record of nests without a ``pg.nest`` mark."""

KIND_OF_OP: dict[type[Operation], KernelKind] = {op: kind for kind in KERNEL_KINDS.values() for op in kind.ops}
"""The kind whose ``to_loops`` gives a heavy ``pg`` op its nest."""

HEAVY: tuple[type[Operation], ...] = tuple(KIND_OF_OP)
"""Ops that get a loop nest (and a buffer) of their own inside a kernel."""

AT_INDEX = {op: fn for kind in KERNEL_KINDS.values() for op, fn in kind.at_index.items()}
"""Light ops that a kind computes at an index, inside their consumer's nest."""

GPU_STRATEGIES: frozenset[str] = frozenset(s for kind in KERNEL_KINDS.values() for s in kind.gpu)
"""The strategies ``pg-to-gpu`` maps (the others are tiled by ``pg-matmul-schedule`` first)."""

SPLIT_STRATEGIES: frozenset[str] = frozenset(s for kind in KERNEL_KINDS.values() for s in kind.split)
"""The strategies ``pg-split-reductions`` realises as several loop nests (each then mapped by ``pg-to-gpu``)."""

TILE_STRATEGIES: frozenset[str] = (
    frozenset(s for kind in KERNEL_KINDS.values() if kind.tile is not None for s in kind.strategies) - GPU_STRATEGIES
)
"""The strategies ``pg-matmul-schedule`` builds through a kind's ``tile`` hook (the matmul rungs, mma-sync, wgmma;
not attention's ``flash``, which ``pg-attention-schedule`` builds)."""


def kind_of_nest(name: str | None) -> KernelKind:
    """The record of a nest marked ``pg.nest = name`` (the default for None); raises ``KeyError`` for a name that is
    not registered."""
    return DEFAULT if name is None else KERNEL_KINDS[name]


__all__ = [
    "AT_INDEX",
    "DEFAULT",
    "GPU_STRATEGIES",
    "HEAVY",
    "KERNEL_KINDS",
    "KIND_OF_OP",
    "SPLIT_STRATEGIES",
    "TILE_STRATEGIES",
    "GpuNest",
    "KernelKind",
    "kind_of_nest",
]
