"""Split-K for the matmul kind: ``auto``'s rule (:func:`split_k`) and the loop-stage rewrite (:func:`split_nest`).

**Why.** A matmul with few output tiles and a deep K (a weight gradient ``dY.T @ X``: 384 x 1152 over the 16384
tokens of a GPT batch) gives a grid of a handful of blocks on 132 SMs, each running a long K loop: most of the GPU
idles. Cutting K into ``S`` chunks gives ``S`` times the blocks, each with ``1/S`` of the loop.

**The rule** (:func:`split_k`, read by ``matmul_rungs.choose`` and ``pg-schedule``'s wgmma choice, recorded as the
``split_k`` parameter of the matmul's ``#kernel.schedule``): a matmul of ``tiles`` output tiles (its rung's tile,
times the batch) fewer than half the block slots (the SMs, times the blocks of the rung an SM needs to run at its
rate: 1 for the tensor-core rungs, 6 for the 64x64 SIMT tile of f32) is split into the largest ``S`` that divides K
into chunks of a multiple of :data:`GRANULE` elements, at least :data:`MIN_CHUNK` long, with ``S * tiles`` at most
the slots. None such: 1 (no split). Forced schedules may name any ``split_k`` (a ragged last chunk included).

**The rewrite** (``pg-split-k``, ahead of ``pg-matmul-schedule``). The marked nest (``matmul.to_loops``'s form)::

    parallel (b..., m, n) { s = for k in [0, K) { acc + a(k) * b(k) }; [r = truncf s]; out[b..., m, n] = r }

becomes a scratch buffer of f32 (the accumulator's type) partial sums, a *partial* nest that is again a marked
matmul nest, batched by the chunk, and a *sum* nest::

    partials = memref.alloc() : memref<S x B... x M x N x f32>
    parallel (s, b..., m, n) { p = for j in [0, C) { k = s * C + j; acc + a(k) * b(k) }; partials[s, b..., m, n] = p }
    parallel (b..., m, n) { t = for s in [0, S) { t + partials[s, b..., m, n] }; [truncf]; out[b..., m, n] = t }
    memref.dealloc partials

with ``C = ceil(K / S)``. The partial nest carries the matmul's schedule without ``split_k`` (its rung tiles it like
any batched matmul: an operand load at ``s * C + j`` is still a plain load, ``matmul.read_operand``'s *split
index*), the sum nest ``thread_per_point``. Where ``S * C > K`` the last chunk is ragged: ``k`` is clamped to
``K - 1`` and both factors replaced by zero past K (the operands are then expressions, read element by element).
No atomics: fixed chunks summed in a fixed order, the same bits every run; the summation order differs from the
unsplit loop's (as a tiled one's does), and a bf16/f16 result is still rounded once, from the f32 total.
"""

from __future__ import annotations

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType
from xdsl.ir import Block, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from picograd.dialects.attrs import NEST_ATTR, SCHEDULE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.ir_builder import Builder, ConstantPool

SPLIT_K = "split_k"
"""The schedule parameter: chunks K is cut into (absent or 1: no split)."""
MIN_CHUNK = 512
"""K elements a chunk takes at least: below, the partial sums' traffic and the second kernel outweigh the gain."""
GRANULE = 64
"""Chunks are a multiple of this (the wgmma K tile; the mma-sync and SIMT rungs' K tiles divide it), so that no K
tile of a partial matmul straddles two chunks."""


def split_k(tiles: int, k: int, sms: int, per_sm: int = 1) -> int:
    """``auto``'s chunks of K for a matmul of ``tiles`` output tiles and depth ``k`` on ``sms`` SMs (see the module
    docstring), where a tile's block fills an SM's ``per_sm``-th part (1: the tensor-core rungs' 128-thread and
    384-thread blocks; 6: the SIMT ``cp-async`` rung's 64x64 tiles, 4 warps a block, which need several blocks an SM
    to hide their latency): 1 when the tiles fill half of the ``sms * per_sm`` block slots or no chunking fits."""
    slots = sms * per_sm
    if 2 * tiles > slots:
        return 1
    for s in range(slots // max(tiles, 1), 1, -1):
        if k % s == 0 and (k // s) % GRANULE == 0 and k // s >= MIN_CHUNK:
            return s
    return 1


def without_split(attr: ScheduleAttr) -> ScheduleAttr:
    """``attr`` without its ``split_k`` parameter (the partial nest's schedule)."""
    return ScheduleAttr(attr.strategy.data, {k: v for k, v in attr.values.items() if k != SPLIT_K})


def split_nest(par: scf.ParallelOp, splits: int) -> None:
    """Replace the marked matmul nest ``par`` by the partial and sum nests of ``splits`` chunks of K (see the module
    docstring). Raises ``MalformedNest`` for a nest not of the matmul kind's form."""
    from picograd.passes.kinds.matmul import read_matmul  # matmul imports this module's rule

    nest = read_matmul(par)
    k_total = nest.k
    chunk = -(-k_total // splits)
    splits = -(-k_total // chunk)
    ops = list(par.body.block.ops)
    loop = ops[0]
    assert isinstance(loop, scf.ForOp)
    acc_type = loop.results[0].type
    attr = par.attributes.get(SCHEDULE_ATTR)
    host = par.parent_block()
    assert host is not None and isinstance(attr, ScheduleAttr)
    hb = Builder(InsertPoint.before(par), par.location, ConstantPool(host))
    extents = [*nest.batch, nest.m, nest.n]
    partials = hb.v(memref.AllocOp.get(acc_type, None, [splits, *extents]))
    zero = loop.iter_args[0]

    # The partial nest: a new parallel op around the old body, with the chunk's index as its first dim.
    block = Block(arg_types=[IndexType()] * (1 + len(extents)))
    s, *ivs = block.args
    part = scf.ParallelOp(
        [hb.index(0)] * len(block.args),
        [hb.index(splits), *(hb.index(e) for e in extents)],
        [hb.index(1)] * len(block.args),
        Region(block),
    )
    part.attributes.update(par.attributes)
    part.attributes[SCHEDULE_ATTR] = without_split(attr)
    hb.op(part)
    old = par.body.block
    for op in ops[:-1]:
        op.detach()
        block.add_op(op)
    block.add_op(scf.ReduceOp())
    for a, b in zip(old.args, ivs, strict=True):
        a.replace_all_uses_with(b)
    store = ops[-2]
    assert isinstance(store, memref.StoreOp)
    block.erase_op(store)
    if len(ops) == 4:  # bf16/f16: the partial sums stay f32, the sum nest rounds
        block.erase_op(ops[1])
    pb = Builder(InsertPoint.before(block.last_op), par.location, hb.consts)  # type: ignore[arg-type]
    pb.op(memref.StoreOp.get(loop.results[0], partials, [s, *ivs]))
    # The K loop now runs over the chunk: k = s * C + j (clamped, and the factors zeroed, past a ragged end).
    loop.operands[1] = hb.index(chunk)
    body = loop.body.block
    j = body.args[0]
    uses = list(j.uses)
    first = body.first_op
    assert first is not None
    kb = Builder(InsertPoint.before(first), par.location, hb.consts)
    k = kb.v(arith.AddiOp(kb.v(arith.MuliOp(s, hb.index(chunk))), j))
    valid: SSAValue | None = None
    if splits * chunk != k_total:
        valid = kb.v(arith.CmpiOp(k, hb.index(k_total), "ult"))
        k = kb.v(arith.MinUIOp(k, hb.index(k_total - 1)))
    for use in uses:
        use.operation.operands[use.index] = k
    if valid is not None:
        total = body.last_op.operands[0].owner  # type: ignore[union-attr]
        assert isinstance(total, arith.AddfOp)
        mul = total.rhs.owner
        assert isinstance(mul, arith.MulfOp)
        for i in (0, 1):
            pick = arith.SelectOp(valid, mul.operands[i], zero)
            Rewriter.insert_op(pick, InsertPoint.before(mul))
            pick.location = mul.location
            mul.operands[i] = pick.result

    # The sum nest: over the output's points, the chunks' partial sums in order, rounded once.
    block2 = Block(arg_types=[IndexType()] * len(extents))
    total_par = scf.ParallelOp(
        [hb.index(0)] * len(extents),
        [hb.index(e) for e in extents],
        [hb.index(1)] * len(extents),
        Region(block2),
    )
    total_par.attributes.update(par.attributes)
    del total_par.attributes[NEST_ATTR]
    total_par.attributes[SCHEDULE_ATTR] = ScheduleAttr("thread_per_point", {"block": 256})
    hb.op(total_par)
    block2.add_op(scf.ReduceOp())
    sb = Builder(block2, par.location, hb.consts)
    lb_block = Block(arg_types=[IndexType(), acc_type])
    sum_loop = scf.ForOp(hb.index(0), hb.index(splits), hb.index(1), [zero], Region(lb_block))
    sb.op(sum_loop)
    lb = sb.at(lb_block)
    x = lb.v(memref.LoadOp.get(partials, [lb_block.args[0], *block2.args]))
    lb.op(scf.YieldOp(lb.v(arith.AddfOp(lb_block.args[1], x))))
    result: SSAValue = sum_loop.results[0]
    if nest.element != nest.out.type.element_type:  # type: ignore[attr-defined]
        result = sb.v(arith.TruncFOp(result, nest.out.type.element_type))  # type: ignore[attr-defined]
    sb.op(memref.StoreOp.get(result, nest.out, list(block2.args)))
    hb.op(memref.DeallocOp.get(partials))
    host.erase_op(par, safe_erase=False)
