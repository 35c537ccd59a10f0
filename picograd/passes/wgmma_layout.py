"""``pg-wgmma-layout``: a tf32 matmul that will run on Hopper's ``wgmma`` reads a K-major B, through a transposed copy.

PTX's ``wgmma.mma_async`` reads 32-bit (tf32) operands from shared memory K-major only (imm-trans exists for
``.f16``/``.bf16`` alone: PTX ISA 8.0 section 9.7.14.5), and TMA copies boxes without transposing them. A tf32
``a @ b`` whose B is stored [K, N] (row-major, as ``x @ W`` or the backward pass's ``dY @ W`` have it) would
therefore leave ``wgmma-ws`` for the tf32 ``mma-sync`` rung at the loop stage (measured on an H100, 2026-12-06: 43-46%
of cuBLAS there, ``wgmma-ws`` on K-major operands 78-99%). This pass gives such a matmul the B it can read:

    %m = pg.matmul %a, %b tf32                     %bt = pg.permute %b perm = [1, 0]      (a movement kernel: Bt[n, k])
                                             ->    %b2 = pg.permute %bt perm = [1, 0]     (joins the matmul's kernel)
                                                   %m = pg.matmul %a, %b2 tf32

``pg-fuse`` makes the first permute a kernel of its own (its user is not a matmul), which writes Bt out, and puts
the second into the matmul's kernel, which then reads Bt[n, k]: K-major. Only matmuls that ``wgmma`` will run
(``matmul_rungs.wgmma_choice``: the ``matmul`` option, or ``auto`` on ``arch=sm_90a``, the same rule ``pg-schedule``
records) are changed, and only where the copy makes the matmul wgmma's: not when B is already the transpose of a
stored matrix read by this matmul alone, nor when A is itself a permute (``dY.T @ X``, or the heads' layout of
attention-shaped products: the loop stage's fallback, ``mma-sync``, runs those anyway), nor for a batched matmul
that ``auto`` splits along K (wgmma's split-K partial matmuls take unbatched operands). A B that is the transpose of
a stored matrix but has other users (returned, say) is written out by its own kernel as [K, N]: the matmul gets a
transpose of its own instead, which joins its kernel and reads the stored matrix K-major.

Runs on the ``simplify`` stage's output, before ``pg-fuse`` (nothing canonicalizes the two permutes away after it);
the CPU pipeline runs it with ``arch=sm_90`` (the default), where it changes nothing. Options: ``arch``, ``matmul``
(as ``pg-schedule``'s). Raises ``PassFailedException`` for a ``matmul`` option that names no schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import pg
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.buffers import where
from picograd.passes.kinds.matmul_rungs import check_schedule, wgmma_choice, wgmma_split_k


def swaps_last_two(v: SSAValue) -> bool:
    """Whether ``v`` is a ``pg.permute`` that swaps its last two dims (and keeps the others): the transpose of a
    matrix (or batch of matrices) that is stored, so that a matmul reading it as B reads it K-major."""
    op = v.owner
    if not isinstance(op, pg.PermuteOp):
        return False
    perm, rank = op.perm_list, len(op.perm_list)
    return rank >= 2 and perm == (*range(rank - 2), rank - 1, rank - 2)


def own_transpose(mm: pg.MatmulOp, rewriter: Rewriter) -> None:
    """Give ``mm`` a transpose of its own of the matrix its B transposes (the module docstring)."""
    shared = mm.rhs.owner
    assert isinstance(shared, pg.PermuteOp)
    own = pg.PermuteOp(shared.input, shared.perm_list)
    own.location = mm.location
    rewriter.insert_op(own, InsertPoint.before(mm))
    mm.operands[1] = own.result


def k_major_b(mm: pg.MatmulOp, rewriter: Rewriter) -> None:
    """Replace ``mm``'s B by the transpose of a transposed copy of it (the module docstring)."""
    b = mm.rhs
    rank = len(shape_of(b))
    swap = (*range(rank - 2), rank - 1, rank - 2)
    copy = pg.PermuteOp(b, swap)
    back = pg.PermuteOp(copy.result, swap)
    for op in (copy, back):
        op.location = mm.location
    rewriter.insert_op([copy, back], InsertPoint.before(mm))
    mm.operands[1] = back.result


@dataclass(frozen=True)
class PgWgmmaLayout(ModulePass):
    """Give tf32 matmuls that ``wgmma`` will run a K-major B (see the module docstring)."""

    name = "pg-wgmma-layout"
    arch: str = "sm_90"
    matmul: str = "auto"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            check_schedule(self.matmul)
        except ValueError as e:
            raise PassFailedException(f"pg-wgmma-layout: {e}") from None
        rewriter = Rewriter()
        for mm in [o for o in op.walk() if isinstance(o, pg.MatmulOp) and o.allows_tf32]:
            *batch, m, n = shape_of(mm.result)
            k = shape_of(mm.lhs)[-1]
            try:
                chosen = wgmma_choice(m, n, k, math.prod(batch), element_of(mm.lhs), "tf32", self.matmul, self.arch)
            except ValueError as e:
                raise PassFailedException(f"pg-wgmma-layout: {e}{where(mm)}") from None
            if chosen is None or isinstance(mm.lhs.owner, pg.PermuteOp) or len(shape_of(mm.rhs)) != len(batch) + 2:
                continue
            if batch and self.matmul == "auto" and wgmma_split_k(chosen, m, n, k, math.prod(batch)) > 1:
                continue
            if not swaps_last_two(mm.rhs):
                k_major_b(mm, rewriter)
            elif mm.rhs.has_more_than_one_use():
                own_transpose(mm, rewriter)
