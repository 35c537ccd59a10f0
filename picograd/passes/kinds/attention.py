"""The ``attention`` kernel kind: fused attention forward and backward (FlashAttention-2, Dao 2023), without any
T x T buffer.

**Kernels.** ``pg-fuse`` makes a kernel of kind ``attention`` of a ``pg.scaled_dot_product_attention`` without
dropout together with the ``pg.attention_lse`` of the same operands (the forward: output and row log-sum-exp in
one pass), and one of each ``pg.attention_backward`` (dq, dk, dv). ``pg-schedule`` gives them the ``flash``
schedule (:func:`schedule`): ``lanes`` threads share a query (or key) row, each holding every ``lanes``-th element
of its head dim; ``block_m`` query rows a thread block in the forward and dq kernels; ``block_n`` keys a shared
tile; ``bwd_block_n`` key rows a block and ``bwd_block_m`` queries a shared tile in the dk/dv kernel.

**Loop stage** (:func:`lower_loops`, called by ``pg-to-loops``): each row is computed with the online softmax of
the paper (running maximum ``m`` and sum ``l`` carried by an ``scf.for`` over the keys, the output row rescaled in
its buffer), and the row's ``lse = m + log(l)`` stored. The backward is three nests: ``D = rowsum(dout * out)``
(a scratch buffer of (*B, L)), then per key row dk and dv (a loop over the queries recomputing P from q, k and lse),
then per query row dq (the separate dq pass of the paper's section 3.2 instead of atomics). A row whose keys are
all masked gives zeros and ``lse = -inf``. The nests carry ``pg.attention`` (which nest, the scale, causality and
the buffers' roles in the order the nest first uses them) so the GPU stage can rebuild them.

**GPU stage** (:func:`build_launch`, called by ``pg-attention-schedule``): each nest becomes a ``gpu.launch``:

- forward (Algorithm 1): a block of ``block_m`` query rows per thread block (grid: query blocks x batch); the K
  and V tiles of ``block_n`` keys go through shared memory (``gpu_ext.workgroup_alloc``), the scores of a row
  against the tile are partial dot products combined across the row's lanes by butterfly shuffles, and the online
  softmax keeps ``m``, ``l`` and the output slice in registers (carried by the ``scf.for`` over key tiles);
  causal: the key tiles after the block's last row are not visited; ``lse`` is stored at the end;
- dk/dv (Algorithm 2's outer loop): ``bwd_block_n`` key rows per thread block, k, v, dk, dv slices in registers,
  the query tiles (q, dout, lse, D) through shared memory, P recomputed from q, k and lse; causal: query tiles
  before the block's first key are skipped;
- dq: like the forward (query rows per block, K and V tiles in shared memory), accumulating
  ``dq += scale * P (dP - D) k``;
- ``D`` (nest ``dsum``, :func:`build_dsum`): a group of lanes a row, vector loads of dout and out (a warp reads
  whole rows), the row's sum by butterfly shuffles.

**Dropout** (the attention op's multiplier, drawn by ``pg.random`` from the seed and offset of picograd's Philox
generator): ``pg-fuse`` copies the ops drawing it into the kernels (:func:`dropout_ops`), the loop stage computes it
at each (query, key) it visits (``KernelLowering.at``: Philox 4x32-10 on the score's linear index) and marks the
value :data:`DROPOUT_ATTR`, and the GPU kernels clone those ops: forward, dq and dk/dv regenerate the same bits,
and no (B, H, L, S) tensor is stored (FlashAttention's dropout). The normalizer ``l`` and ``lse`` exclude it.
When the multiplier is drawn at the scores' own index (:func:`drawn_at_scores`: what
``F.scaled_dot_product_attention(dropout_p=...)`` traces), the ``flash-mma`` kernels make one Philox call per 4
keys and hand its words between lanes (:class:`SharedDraw`; Philox 4x32-10 draws 4 words a counter; the SIMT
``flash`` forward and dq kernels, whose key loops take 4 keys at a time, make one call per 4 keys too), decide
keep/drop by one unsigned compare of the word with a threshold found at compile time, and load seed and offset
once: the draw costs about a quarter of a per-element Philox call an element.

Element types: f32 and f64 (SIMT); bf16 and f16 computing in f32 (16-bit inputs extended, outputs rounded once
from f32 accumulators, lse in f32), on these SIMT kernels or, under the ``flash-mma`` schedule, on tensor cores
(``picograd.passes.kinds.attention_mma``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    DenseArrayBase,
    DictionaryAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, STRATEGY_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.ir_builder import PHILOX_ATTR, Builder, ConstantPool, Index, const_value, philox4x32, signed32
from picograd.passes.kinds.base import KernelKind

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

STRATEGY = "flash"
"""The schedule strategy of attention kernels."""

MMA_STRATEGY = "flash-mma"
"""The schedule strategy of 16-bit attention kernels on tensor cores (``picograd.passes.kinds.attention_mma``)."""

DROPOUT_ATTR = "pg.attention_dropout"
"""Marks the op of an attention nest that yields the dropout multiplier at (query, key): the GPU stage clones the
ops computing it (Philox) into its kernels."""

SCORES_LAYOUT = "scores"
""":data:`DROPOUT_ATTR`'s value when the multiplier is an elementwise function of one uniform ``pg.random`` of the
scores' shape (:func:`drawn_at_scores`): element (*batch, i, j) draws word ``lin % 4`` of Philox counter
``offset + lin // 4``, ``lin`` its row-major index, so that the kernels can share one Philox call among 4 keys
(:class:`SharedDraw`)."""

ATTENTION_ATTR = "pg.attention"
"""Attribute of an attention nest of the loop stage: ``{nest = "forward" | "dkdv" | "dq", scale, causal,
buffers = [roles of the buffers it uses, in order of first use]}`` (``other``: read by the dropout's ops)."""

WARP = gpu_ext.WARP_SIZE
CHUNK = 8
"""Keys whose scores the forward keeps in registers at a time (one online-softmax rescale per chunk)."""
MAX_THREADS = 256
"""Threads a block at most (the register file then allows 255 registers a thread: no spills at head dim 128)."""
SHARED_BYTES = 32768
"""Shared memory an attention kernel may use (static shared memory is at most 48 KiB)."""


ATTENTION_OPS = (pg.ScaledDotProductAttentionOp, pg.AttentionLseOp, pg.AttentionBackwardOp)
"""The ops of attention kernels (``pg-decompose-attention`` has lowered the attention ops no kernel computes)."""

DROPOUT_OPS = (pg.RandomOp, pg.CmpOp, pg.SelectOp, pg.ConstantOp, pg.CastOp, pg.BroadcastToOp, pg.ReshapeOp)
"""Ops an attention kernel recomputes to draw its dropout multiplier."""


def attention_partner(op: Operation) -> Operation | None:
    """For a ``pg.scaled_dot_product_attention``: a ``pg.attention_lse`` of the same query, key, mask, scale and
    causality (one kernel computes both), else None."""
    if not isinstance(op, pg.ScaledDotProductAttentionOp):
        return None
    for use in op.query.uses:
        other = use.operation
        if (
            isinstance(other, pg.AttentionLseOp)
            and other.key == op.key
            and other.mask == op.mask
            and other.scale_value == op.scale_value
            and other.is_causal == op.is_causal
        ):
            return other
    return None


def dropout_ops(op: Operation) -> list[Operation]:
    """The ops computing an attention op's dropout multiplier from 0-d values (the generator's seed and offset) and
    constants (``pg.random``, ``pg.cmp``, ``pg.select`` ...), which its kernel recomputes at each (query, key):
    the multiplier is regenerated, never stored (FlashAttention's dropout). Empty when there is no dropout or it
    is computed otherwise (then the kernel reads it)."""
    if not isinstance(op, pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp) or op.dropout is None:
        return []
    found: list[Operation] = []
    stack = [op.dropout]
    while stack:
        v = stack.pop()
        owner = v.owner
        if not isinstance(owner, Operation):
            if shape_of(v):
                return []  # a non-scalar argument: read, not recomputed
            continue
        if owner in found:
            continue
        if isinstance(owner, DROPOUT_OPS):
            found.append(owner)
            stack.extend(owner.operands)
        elif shape_of(v):
            return []
    return found


def drawn_at_scores(op: pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp) -> bool:
    """Whether ``op``'s dropout multiplier is an elementwise function (``pg.cmp``, ``pg.select``, ``pg.cast``) of
    one uniform ``pg.random`` of the scores' shape (*B, L, S), its other operands drawing nothing: the multiplier
    at (*batch, i, j) is then a function of the draw's element at that same index (what
    ``F.scaled_dot_product_attention`` draws)."""
    assert op.dropout is not None
    scores = (*shape_of(op.query)[:-1], shape_of(op.key)[-2])
    draws: list[pg.RandomOp] = []

    def draws_above(v: SSAValue) -> bool:
        seen, stack = set(), [v]
        while stack:
            o = stack.pop().owner
            if isinstance(o, Operation) and o not in seen:
                seen.add(o)
                if isinstance(o, pg.RandomOp):
                    return True
                stack.extend(o.operands)
        return False

    stack = [op.dropout]
    while stack:
        v = stack.pop()
        o = v.owner
        if isinstance(o, pg.RandomOp):
            draws.append(o)
        elif isinstance(o, pg.CmpOp | pg.SelectOp | pg.CastOp) and tuple(shape_of(v)) == scores:
            stack.extend(o.operands)
        elif draws_above(v):
            return False
    return (
        len(set(draws)) == 1 and draws[0].distribution.data == "uniform" and tuple(shape_of(draws[0].result)) == scores
    )


# ---------------------------------------------------------------------------------------------------------------
# The schedule


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (max(n, 1) - 1).bit_length())


def _ops(k: kernel.FusedOp | kernel.LaunchOp) -> list[Operation]:
    """The attention ops of kernel ``k`` (not the ops drawing its dropout)."""
    return [o for o in k.body.block.ops if isinstance(o, ATTENTION_OPS)]


def schedule(k: kernel.FusedOp | kernel.LaunchOp, options: object = None) -> ScheduleAttr:
    """The ``flash`` schedule of an attention kernel, from its shapes: ``lanes`` (16, 8, 4, 2 or 1, at most the
    head dim's bytes / 64, dividing both head dims: each thread holds up to 16 elements of a row), ``block_m``
    query rows a block (64, fewer for short sequences or to stay within :data:`MAX_THREADS`, at least a warp of
    threads), ``block_n`` keys a shared tile (32, fewer for short sequences or when the K and V tiles would exceed
    :data:`SHARED_BYTES`), and the dk/dv kernel's ``bwd_block_n`` key rows a block (as ``block_m``) and
    ``bwd_block_m`` queries a shared tile (16)."""
    main = _ops(k)[0]
    assert isinstance(main, pg.ScaledDotProductAttentionOp | pg.AttentionLseOp | pg.AttentionBackwardOp)
    q, kk = shape_of(main.query), shape_of(main.key)
    ev = shape_of(main.value)[-1] if not isinstance(main, pg.AttentionLseOp) else q[-1]
    for o in _ops(k):
        if isinstance(o, pg.ScaledDotProductAttentionOp):
            ev = shape_of(o.value)[-1]
    d, length, keys = q[-1], q[-2], kk[-2]
    width = max(d, ev)
    size = 8 if element_of(main.query) == f64 else 4
    lanes = next(r for r in (16, 8, 4, 2, 1) if r <= max(1, d * size // 64) and d % r == 0 and ev % r == 0)
    block_m = max(WARP // lanes, min(64, MAX_THREADS // lanes, _pow2_at_least(length)))
    block_n = min(32, _pow2_at_least(keys))
    while block_n > 1 and 2 * block_n * width * size > SHARED_BYTES:
        block_n //= 2
    bwd_block_n = max(WARP // lanes, min(64, MAX_THREADS // lanes, _pow2_at_least(keys)))
    bwd_block_m = min(16, _pow2_at_least(length))
    while bwd_block_m > 1 and bwd_block_m * (d + ev + 2) * size > SHARED_BYTES:
        bwd_block_m //= 2
    return ScheduleAttr(
        STRATEGY,
        {
            "lanes": lanes,
            "block_m": block_m,
            "block_n": block_n,
            "bwd_block_m": bwd_block_m,
            "bwd_block_n": bwd_block_n,
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# The loop stage


def _mask_index(lw: KernelLowering, mask: SSAValue, idx: Sequence[SSAValue]) -> tuple[SSAValue, ...]:
    """The index into a mask buffer (broadcast to the scores) of scores index ``idx``: leading dims dropped, dims
    of size 1 at 0."""
    shape = MemRefType.get_shape(mask.type)  # type: ignore[arg-type]
    idx = list(idx)[len(idx) - len(shape) :]
    return tuple(lw.idx(0) if n == 1 else i for i, n in zip(idx, shape, strict=True))


class _LoopNests:
    """The loop-stage nests of one attention kernel (see the module docstring)."""

    def __init__(self, lw: KernelLowering, causal: bool, scale: float, mask: SSAValue | None):
        self.lw = lw
        self.causal = causal
        self.scale = scale
        self.mask = mask
        self.scratch: list[SSAValue] = []

    def dot(self, a: SSAValue, ai: tuple[SSAValue, ...], b: SSAValue, bi: tuple[SSAValue, ...], n: int) -> SSAValue:
        """``sum_e a[*ai, e] * b[*bi, e]`` over ``e < n``."""
        lw = self.lw
        el = lw.wide_type(MemRefType.get_element_type(a.type))  # type: ignore[arg-type]

        def body(es: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            x = lw.wide(lw.load(a, (*ai, es[0])))
            y = lw.wide(lw.load(b, (*bi, es[0])))
            return [lw.pure(arith.AddfOp, acc[0], lw.pure(arith.MulfOp, x, y))]

        (total,) = lw.loops([(0, n)], [lw.const(0.0, el)], body)
        return total

    def score(self, q: SSAValue, k: SSAValue, batch: list[SSAValue], i: SSAValue, j: SSAValue, d: int) -> SSAValue:
        """The masked, scaled score (query ``i``, key ``j``): ``-inf`` where masked."""
        lw = self.lw
        el = lw.wide_type(MemRefType.get_element_type(q.type))  # type: ignore[arg-type]
        s = lw.pure(arith.MulfOp, self.dot(q, (*batch, i), k, (*batch, j), d), lw.const(self.scale, el))
        ninf = lw.const(-math.inf, el)
        if self.causal:
            s = lw.pure(arith.SelectOp, lw.cmpi("ule", j, i), s, ninf)
        if self.mask is not None:
            m = lw.load(self.mask, _mask_index(lw, self.mask, (*batch, i, j)))
            if MemRefType.get_element_type(self.mask.type) == i1:  # type: ignore[arg-type]
                s = lw.pure(arith.SelectOp, m, s, ninf)
            else:
                s = lw.pure(arith.AddfOp, s, lw.wide(m))
        return s

    def dropped(self, p: SSAValue, op: Operation | None, idx: tuple[SSAValue, ...]) -> SSAValue:
        """``p`` times ``op``'s dropout multiplier at scores index ``idx`` (computed there: Philox regenerates it),
        tagged :data:`DROPOUT_ATTR` for the GPU stage; ``p`` without dropout."""
        if not isinstance(op, pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp) or op.dropout is None:
            return p
        z = self.lw.at(op.dropout, idx)
        owner = z.owner
        assert isinstance(owner, Operation)
        owner.attributes[DROPOUT_ATTR] = StringAttr(SCORES_LAYOUT) if drawn_at_scores(op) else UnitAttr()
        return self.lw.pure(arith.MulfOp, p, self.lw.wide(z))

    def accumulator(self, buf: SSAValue, roles: dict[SSAValue, str]) -> SSAValue:
        """The buffer rows of ``buf`` accumulate in: ``buf``, or for a 16-bit ``buf`` an f32 scratch buffer of its
        shape (role ``acc``: the GPU kernels keep the rows in registers) whose rows :meth:`finish_row` rounds into
        ``buf`` once."""
        t = buf.type
        assert isinstance(t, MemRefType)
        if not pg.is_low_precision(t.get_element_type()):
            return buf
        acc = self.lw.emit(memref.AllocOp.get(f32, None, list(t.get_shape()))).results[0]
        roles[acc] = "acc"
        self.scratch.append(acc)
        return acc

    def finish_row(self, acc: SSAValue, buf: SSAValue, row: tuple[SSAValue, ...], n: int, den: SSAValue | None = None):
        """``buf[*row, e] = acc[*row, e] (/ den)`` for ``e < n``, rounded to ``buf``'s type (nothing when ``acc`` is
        ``buf`` and there is no ``den``)."""
        lw = self.lw
        if acc is buf and den is None:
            return
        el = MemRefType.get_element_type(buf.type)  # type: ignore[arg-type]

        def body(es: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            x: SSAValue = lw.emit(memref.LoadOp.get(acc, (*row, es[0]))).results[0]
            if den is not None:
                x = lw.pure(arith.DivfOp, x, den)
            lw.store(lw.narrow(x, el), buf, (*row, es[0]))
            return []

        lw.loops([(0, n)], [], body)

    def zero_row(self, buf: SSAValue, row: tuple[SSAValue, ...], n: int) -> None:
        lw = self.lw
        el = MemRefType.get_element_type(buf.type)  # type: ignore[arg-type]

        def body(es: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            lw.store(lw.const(0.0, el), buf, (*row, es[0]))
            return []

        lw.loops([(0, n)], [], body)

    def axpy_row(self, buf: SSAValue, row: tuple[SSAValue, ...], n: int, f: Callable[[SSAValue, SSAValue], SSAValue]):
        """``buf[*row, e] = f(buf[*row, e], e)`` for ``e < n`` (a read-modify-write of a row)."""
        lw = self.lw

        def body(es: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            old = lw.emit(memref.LoadOp.get(buf, (*row, es[0]))).results[0]
            lw.store(f(old, es[0]), buf, (*row, es[0]))
            return []

        lw.loops([(0, n)], [], body)


def _tag(lw: KernelLowering, nest: Operation, name: str, scale: float, causal: bool, roles: dict[SSAValue, str]):
    """Put ``pg.attention`` on ``nest``: its buffers' roles in the order the nest first uses them."""
    order = [roles.get(v, "other") for v in _outside_buffers(nest)]
    attrs: dict[str, Attribute] = {
        "nest": StringAttr(name),
        "scale": FloatAttr(scale, f64),
        "buffers": ArrayAttr([StringAttr(r) for r in order]),
    }
    if causal:
        attrs["causal"] = UnitAttr()
    nest.attributes[ATTENTION_ATTR] = DictionaryAttr(attrs)


def _last_nest(lw: KernelLowering) -> Operation:
    op = lw.code_block.last_op
    while op is not None and not isinstance(op, scf.ParallelOp):
        op = op.prev_op
    assert op is not None
    return op


def lower_loops(lw: KernelLowering) -> None:
    """``pg-to-loops`` of a ``kernel.launch`` of kind ``attention`` (see the module docstring): the nests go to
    ``lw``'s code block; buffers not yielded are scratch buffers."""
    launch = lw.launch
    block = launch.body.block
    buffers: dict[SSAValue, SSAValue] = dict(zip(block.args, launch.ins, strict=True))
    lw.buffers.update(buffers)  # lw.at reads them (the dropout multiplier, when not recomputed)
    yielded = dict(zip(launch.yield_op.values, launch.outs, strict=True))
    scratch: list[SSAValue] = []

    def out_buffer(v: SSAValue) -> SSAValue:
        if v in yielded:
            return yielded[v]
        t = v.type
        assert isinstance(t, TensorType)
        buf = lw.emit(memref.AllocOp.get(t.element_type, None, list(t.get_shape()))).results[0]
        scratch.append(buf)
        return buf

    ops = _ops(launch)
    main = ops[0]
    assert isinstance(main, pg.ScaledDotProductAttentionOp | pg.AttentionLseOp | pg.AttentionBackwardOp)
    mask = buffers[main.mask] if main.mask is not None else None
    nests = _LoopNests(lw, main.is_causal, main.scale_value, mask)
    q, k = buffers[main.query], buffers[main.key]
    *batch_shape, length, d = shape_of(main.query)
    keys = shape_of(main.key)[-2]
    el = lw.wide_type(element_of(main.query))  # 16-bit attention computes in f32
    ninf, zero, one = lw.const(-math.inf, el), lw.const(0.0, el), lw.const(1.0, el)
    roles: dict[SSAValue, str] = {q: "q", k: "k"}
    if mask is not None:
        roles[mask] = "mask"
    with lw.located(main):
        if isinstance(main, pg.AttentionBackwardOp):
            _lower_backward(lw, nests, main, buffers, out_buffer, roles)
        else:
            fwd = next((o for o in ops if isinstance(o, pg.ScaledDotProductAttentionOp)), None)
            lse_op = next((o for o in ops if isinstance(o, pg.AttentionLseOp)), None)
            v = buffers[fwd.value] if fwd is not None else None
            ev = shape_of(fwd.value)[-1] if fwd is not None else 0
            out = out_buffer(fwd.result) if fwd is not None else None
            lse = out_buffer(lse_op.result) if lse_op is not None else None
            if v is not None:
                roles[v] = "v"
            if out is not None:
                roles[out] = "out"
            if lse is not None:
                roles[lse] = "lse"
            acc = nests.accumulator(out, roles) if out is not None else None
            with lw.parallel((*batch_shape, length)) as ivs:
                *b, i = ivs
                row = (*b, i)
                if acc is not None:
                    nests.zero_row(acc, row, ev)

                def body(js: list[SSAValue], carried: list[SSAValue]) -> list[SSAValue]:
                    m, l_ = carried
                    s = nests.score(q, k, b, i, js[0], d)
                    m_new = lw.pure(arith.MaximumfOp, m, s)
                    mu = lw.pure(arith.SelectOp, lw.cmpf("oeq", m_new, ninf), zero, m_new)
                    alpha = lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, m, mu))
                    p = lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, s, mu))
                    if acc is not None and v is not None:
                        vj = (*b, js[0])
                        pz = nests.dropped(p, fwd, (*b, i, js[0]))
                        nests.axpy_row(
                            acc,
                            row,
                            ev,
                            lambda old, e: lw.pure(
                                arith.AddfOp,
                                lw.pure(arith.MulfOp, old, alpha),
                                lw.pure(arith.MulfOp, pz, lw.wide(lw.load(v, (*vj, e)))),
                            ),
                        )
                    return [m_new, lw.pure(arith.AddfOp, lw.pure(arith.MulfOp, l_, alpha), p)]

                m, l_ = lw.loops([(0, keys)], [ninf, zero], body)
                if out is not None and acc is not None:
                    den = lw.pure(arith.SelectOp, lw.cmpf("oeq", l_, zero), one, l_)
                    if acc is out:
                        nests.axpy_row(out, row, ev, lambda old, e: lw.pure(arith.DivfOp, old, den))
                    else:
                        nests.finish_row(acc, out, row, ev, den)
                if lse is not None:
                    mu = lw.pure(arith.SelectOp, lw.cmpf("oeq", m, ninf), zero, m)
                    lw.store(lw.pure(arith.AddfOp, mu, lw.pure(mathd.LogOp, l_)), lse, row)
            _tag(lw, _last_nest(lw), "forward", main.scale_value, main.is_causal, roles)
    for buf in [*scratch, *nests.scratch]:
        lw.emit(memref.DeallocOp.get(buf))


def _lower_backward(
    lw: KernelLowering,
    nests: _LoopNests,
    op: pg.AttentionBackwardOp,
    buffers: dict[SSAValue, SSAValue],
    out_buffer: Callable[[SSAValue], SSAValue],
    roles: dict[SSAValue, str],
) -> None:
    q, k, v = buffers[op.query], buffers[op.key], buffers[op.value]
    out, dout, lse = buffers[op.out], buffers[op.dout], buffers[op.lse]
    dq, dk, dv = (out_buffer(r) for r in op.results)
    *batch_shape, length, d = shape_of(op.query)
    keys, ev = shape_of(op.value)[-2:]
    el = lw.wide_type(element_of(op.query))  # 16-bit attention computes in f32
    ninf, zero = lw.const(-math.inf, el), lw.const(0.0, el)
    scale = lw.const(op.scale_value, el)
    roles.update({v: "v", out: "out", dout: "dout", lse: "lse", dq: "dq", dk: "dk", dv: "dv"})
    dsum = lw.emit(memref.AllocOp.get(el, None, [*batch_shape, length])).results[0]
    roles[dsum] = "dsum"
    # D = rowsum(dout * out): a row per group of lanes on the GPU (build_dsum)
    with lw.parallel((*batch_shape, length)) as ivs:
        row = tuple(ivs)
        lw.store(nests.dot(dout, row, out, row, ev), dsum, row)
    _tag(lw, _last_nest(lw), "dsum", op.scale_value, op.is_causal, roles)

    def prob(b: list[SSAValue], i: SSAValue, j: SSAValue) -> SSAValue:
        s = nests.score(q, k, b, i, j, d)
        lse_i = lw.wide(lw.load(lse, (*b, i)))
        lse0 = lw.pure(arith.SelectOp, lw.cmpf("oeq", lse_i, ninf), zero, lse_i)
        return lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, s, lse0))

    def dscore(b: list[SSAValue], i: SSAValue, j: SSAValue, p: SSAValue) -> SSAValue:
        dp = nests.dropped(nests.dot(dout, (*b, i), v, (*b, j), ev), op, (*b, i, j))
        diff = lw.pure(arith.SubfOp, dp, lw.load(dsum, (*b, i)))
        return lw.pure(arith.MulfOp, lw.pure(arith.MulfOp, p, diff), scale)

    dq_acc, dk_acc, dv_acc = (nests.accumulator(x, roles) for x in (dq, dk, dv))
    # dk, dv: a key row each, a loop over the queries
    with lw.parallel((*batch_shape, keys)) as ivs:
        *b, j = ivs
        nests.zero_row(dv_acc, (*b, j), ev)
        nests.zero_row(dk_acc, (*b, j), d)

        def kv_body(is_: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            i = is_[0]
            p = prob(b, i, j)
            pz = nests.dropped(p, op, (*b, i, j))
            nests.axpy_row(
                dv_acc,
                (*b, j),
                ev,
                lambda old, e: lw.pure(
                    arith.AddfOp, old, lw.pure(arith.MulfOp, pz, lw.wide(lw.load(dout, (*b, i, e))))
                ),
            )
            ds = dscore(b, i, j, p)
            nests.axpy_row(
                dk_acc,
                (*b, j),
                d,
                lambda old, e: lw.pure(arith.AddfOp, old, lw.pure(arith.MulfOp, ds, lw.wide(lw.load(q, (*b, i, e))))),
            )
            return []

        lw.loops([(0, length)], [], kv_body)
        nests.finish_row(dv_acc, dv, (*b, j), ev)
        nests.finish_row(dk_acc, dk, (*b, j), d)
    _tag(lw, _last_nest(lw), "dkdv", op.scale_value, op.is_causal, roles)
    # dq: a query row each, a loop over the keys
    with lw.parallel((*batch_shape, length)) as ivs:
        *b, i = ivs
        nests.zero_row(dq_acc, (*b, i), d)

        def q_body(js: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            j = js[0]
            ds = dscore(b, i, j, prob(b, i, j))
            nests.axpy_row(
                dq_acc,
                (*b, i),
                d,
                lambda old, e: lw.pure(arith.AddfOp, old, lw.pure(arith.MulfOp, ds, lw.wide(lw.load(k, (*b, j, e))))),
            )
            return []

        lw.loops([(0, keys)], [], q_body)
        nests.finish_row(dq_acc, dq, (*b, i), d)
    _tag(lw, _last_nest(lw), "dq", op.scale_value, op.is_causal, roles)
    lw.emit(memref.DeallocOp.get(dsum))


# ---------------------------------------------------------------------------------------------------------------
# The GPU stage


def _shape(buf: SSAValue) -> tuple[int, ...]:
    t = buf.type
    assert isinstance(t, MemRefType)
    return tuple(t.get_shape())


class _Kernel:
    """Builds the ``gpu.launch`` of one attention nest (see the module docstring)."""

    def __init__(self, par: scf.ParallelOp, info: DictionaryAttr, buffers: dict[str, SSAValue], s: ScheduleAttr):
        self.par, self.buf, self.s = par, buffers, s
        self.loc = par.location
        self.nest = info.data["nest"].data  # type: ignore[attr-defined]
        self.scale = float(info.data["scale"].value.data)  # type: ignore[attr-defined]
        self.causal = "causal" in info.data
        q = _shape(buffers["q"])
        *self.batch, self.length, self.d = q
        self.keys = _shape(buffers["k"])[-2]
        self.ev = _shape(buffers["v"])[-1] if "v" in buffers else self.d
        el = MemRefType.get_element_type(buffers["q"].type)  # type: ignore[arg-type]
        self.el = f32 if pg.is_low_precision(el) else el  # 16-bit attention computes in f32 (shared tiles too)
        self.lanes = s.count("lanes")
        self.dropout_slice = dropout_slice(par)
        self.body = Block(arg_types=[IndexType()] * 12)
        self.body.add_op(gpu.TerminatorOp())
        self.b = Builder(self.body, self.loc, ConstantPool(self.body))
        self.host_consts: list[Operation] = []

    # --- helpers ------------------------------------------------------------------------------------------------

    def fconst(self, x: float) -> SSAValue:
        return self.b.const(x, self.el)

    def dropped(self, b: Builder, p: SSAValue, batch: Sequence[Index], row: Index, loop: Index) -> SSAValue:
        """``p`` times the dropout multiplier where the nest's parallel index is (*batch, row) and its loop's
        ``loop``: the loop stage's ops computing it (Philox) cloned; ``p`` without dropout."""
        if self.dropout_slice is None:
            return p
        return b.v(arith.MulfOp(p, regenerate(b, self.dropout_slice, batch, row, loop)))

    def group_multipliers(self, b: Builder, row: Index, j4: Index) -> list[SSAValue]:
        """The dropout multipliers of query ``row`` (clamped) at keys ``j4 .. j4 + 3`` (``j4`` a multiple of 4),
        from one Philox call (:class:`SharedDraw`: the 4 words of their counter, keys a multiple of 4 a row). Keys
        past the last get the next row's words: their probabilities are 0."""
        assert self.shared is not None
        lin = b.add(b.mul(b.add(b.mul(self.by, self.length), row), self.keys), j4)
        return [self.shared.multiplier(b, w) for w in self.shared.words(b, lin)]

    @staticmethod
    def wide(b: Builder, x: SSAValue) -> SSAValue:
        """``x`` extended to f32 when it is a 16-bit float."""
        return b.v(arith.ExtFOp(x, f32)) if pg.is_low_precision(x.type) else x

    def butterfly(self, b: Builder, x: SSAValue) -> SSAValue:
        """The sum of ``x`` over the ``lanes`` threads of a row (xor shuffles: every lane gets it)."""
        off = self.lanes // 2
        while off:
            x = b.v(arith.AddfOp(x, b.v(gpu_ext.ShuffleOp(x, "xor", off))))
            off //= 2
        return x

    def dot(self, b: Builder, regs: Sequence[SSAValue], tile: SSAValue, row: Index, t: Index) -> SSAValue:
        """This thread's part of ``regs . tile[row, :]`` (its elements ``t + lanes * e``), summed over the row's
        lanes."""
        acc: SSAValue | None = None
        for e, x in enumerate(regs):
            y = b.load(tile, [row, b.add(t, self.lanes * e)])
            prod = b.v(arith.MulfOp(x, y))
            acc = prod if acc is None else b.v(arith.AddfOp(acc, prod))
        assert acc is not None
        return self.butterfly(b, acc)

    def row_slice(self, b: Builder, buf: SSAValue, prefix: Sequence[Index], n: int, t: Index) -> list[SSAValue]:
        return [self.wide(b, b.load(buf, [*prefix, b.add(t, self.lanes * e)])) for e in range(n // self.lanes)]

    def store_slice(self, b: Builder, regs: Sequence[SSAValue], buf: SSAValue, prefix: Sequence[Index], t: Index):
        el = MemRefType.get_element_type(buf.type)  # type: ignore[arg-type]
        for e, x in enumerate(regs):
            b.store(b.v(arith.TruncFOp(x, el)) if el != x.type else x, buf, [*prefix, b.add(t, self.lanes * e)])

    def load_tile(
        self, b: Builder, tile: SSAValue, src: SSAValue, batch: Sequence[Index], row0: Index, extent: int,
        tid: Index, threads: int, fix: Callable[[Builder, SSAValue], SSAValue] | None = None,
    ) -> None:  # fmt: skip
        """Copy rows ``row0 ..`` of ``src[*batch]`` (``extent`` rows) into ``tile`` (rows past the end: zero),
        each thread taking every ``threads``-th element; ``fix`` maps each loaded value."""
        shape = _shape(tile)
        rows, width = shape[0], (shape[1] if len(shape) > 1 else 1)
        total = rows * width
        for c in range(-(-total // threads)):
            flat = b.add(tid, c * threads)
            bb = b.when(b.cmp("ult", flat, total)) if (c + 1) * threads > total else b
            if bb is None:
                continue
            rr, cc = bb.div(flat, width), bb.rem(flat, width)
            g = bb.add(row0, rr)
            ok = bb.cmp("ult", g, extent)
            gc = bb.min(g, extent - 1)
            value = self.wide(bb, bb.load(src, [*batch, gc, cc] if len(shape) > 1 else [*batch, gc]))
            if fix is not None:
                value = fix(bb, value)
            value = bb.select(ok, value, self.fconst(0.0))
            bb.store(value, tile, [rr, cc] if len(shape) > 1 else [rr])

    def masked(self, b: Builder, s: SSAValue, batch: Sequence[Index], i: Index, j: Index, valid: SSAValue | bool):
        """``s`` with the user mask at (query ``i``, key ``j``, both in range) applied and ``-inf`` where not
        ``valid``."""
        ninf = self.fconst(-math.inf)
        mask = self.buf.get("mask")
        if mask is not None:
            shape = _shape(mask)
            full = [*batch, i, j][len(batch) + 2 - len(shape) :]
            m = b.load(mask, [0 if n == 1 else x for x, n in zip(full, shape, strict=True)])
            if MemRefType.get_element_type(mask.type) == i1:  # type: ignore[arg-type]
                s = b.select(m, s, ninf)
            else:
                s = b.v(arith.AddfOp(s, self.wide(b, m)))
        return b.select(valid, s, ninf)

    def for_(
        self, b: Builder, lo: Index, hi: Index, inits: Sequence[SSAValue],
        body: Callable[[Builder, SSAValue], Sequence[SSAValue]],
    ) -> list[SSAValue]:  # fmt: skip
        """``scf.for`` over [lo, hi) (i32 bounds cast to index) carrying ``inits``; ``body(builder, iv_i32)``."""
        block = Block(arg_types=[IndexType(), *(v.type for v in inits)])
        block.add_op(scf.YieldOp(*block.args[1:]))
        lb = b.at(block)
        iv = lb.v(arith.IndexCastOp(block.args[0], i32))
        new = body(lb, iv)
        block.last_op.operands = list(new)  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(lo), b.idx(hi), b.idx(1), list(inits), Region(block))
        b.op(loop)
        return list(loop.results)

    # --- the kernels --------------------------------------------------------------------------------------------

    def build(self) -> gpu.LaunchOp:
        b = self.b
        bx, by, _, tid = (b.v(arith.IndexCastOp(a, i32)) for a in self.body.args[:4])
        batch: list[Index] = []
        rest: Index = by
        for n in reversed(self.batch):
            batch.insert(0, b.rem(rest, n) if n > 1 else 0)
            rest = b.div(rest, n)
        t, r = b.rem(tid, self.lanes), b.div(tid, self.lanes)
        self.by = by
        # forward and dq: one Philox call per 4 keys of a row (their key loops take 4 keys at a time), when the
        # multiplier is drawn at the scores' index and 4 divides the keys; dk/dv walk the queries of a key
        self.shared = None
        bn = self.s.count("block_n")
        if self.dropout_slice is not None and self.nest != "dkdv" and self.keys % 4 == 0 and bn % 4 == 0:
            elements = math.prod(self.batch) * self.length * self.keys
            self.shared = SharedDraw.make(b, self.dropout_slice, elements)
        if self.nest == "dkdv":
            rows, extent = self.s.count("bwd_block_n"), self.keys
        else:
            rows, extent = self.s.count("block_m"), self.length
        {"forward": self.forward, "dq": self.dq, "dkdv": self.dkdv}[self.nest](bx, batch, tid, t, r, rows)
        grid = [-(-extent // rows), math.prod(self.batch), 1]
        threads = rows * self.lanes
        self.host_consts, launch = wrap_launch(self.par, self.body, grid, threads, f"{STRATEGY}-{self.nest}")
        return launch

    def key_tiles(self, b: Builder, bx: SSAValue, rows: int) -> tuple[Index, int]:
        """The key tiles a block of ``rows`` query rows visits: all, or (causal) up to its last row's."""
        bn = self.s.count("block_n")
        n = -(-self.keys // bn)
        if not self.causal:
            return n, bn
        last = b.add(b.mul(bx, rows), rows - 1)  # keys j <= last
        return b.min(b.add(b.div(last, bn), 1), n), bn

    def forward(self, bx: SSAValue, batch: list[Index], tid: Index, t: Index, r: Index, rows: int) -> None:
        b, el, lanes = self.b, self.el, self.lanes
        q, k, v = self.buf["q"], self.buf["k"], self.buf.get("v")
        out, lse = self.buf.get("out"), self.buf.get("lse")
        row = b.add(b.mul(bx, rows), r)
        rowc = b.min(row, self.length - 1)
        scale = self.fconst(self.scale)
        qs = [b.v(arith.MulfOp(x, scale)) for x in self.row_slice(b, q, [*batch, rowc], self.d, t)]
        n_tiles, bn = self.key_tiles(b, bx, rows)
        ksh = b.v(gpu_ext.WorkgroupAllocOp(el, [bn, self.d]))
        vsh = b.v(gpu_ext.WorkgroupAllocOp(el, [bn, self.ev])) if v is not None else None
        ninf, zero, one = self.fconst(-math.inf), self.fconst(0.0), self.fconst(1.0)
        n_acc = self.ev // lanes if v is not None else 0
        threads = rows * lanes

        chunk = min(CHUNK, bn)

        def keys(cb: Builder, c: SSAValue, j0: Index) -> list[SSAValue]:
            """Online softmax over keys ``c * chunk ..`` of the tile: scores in registers, one rescale."""
            m, l_, *acc = cb.block.args[1:]
            base = cb.mul(c, chunk)
            scores = []
            for u in range(chunk):
                jj = cb.add(base, u)
                j = cb.add(j0, jj)
                valid = cb.cmp("ult", j, self.keys)
                if self.causal:
                    valid = cb.both(valid, cb.cmp("ule", j, row))
                s = self.dot(cb, qs, ksh, jj, t)
                scores.append((jj, self.masked(cb, s, batch, rowc, cb.min(j, self.keys - 1), valid)))
            m_new: SSAValue = m
            for _, s in scores:
                m_new = cb.v(arith.MaximumfOp(m_new, s))
            mu = cb.select(cb.v(arith.CmpfOp(m_new, ninf, "oeq")), zero, m_new)
            alpha = cb.v(mathd.ExpOp(cb.v(arith.SubfOp(m, mu))))
            ps = [(jj, cb.v(mathd.ExpOp(cb.v(arith.SubfOp(s, mu))))) for jj, s in scores]
            total = cb.v(arith.MulfOp(l_, alpha))
            for _, p in ps:
                total = cb.v(arith.AddfOp(total, p))
            if self.shared is not None:  # chunk keys, a multiple of 4 from j0 + base: chunk / 4 Philox calls
                mults = []
                for g in range(chunk // 4):
                    mults += self.group_multipliers(cb, rowc, cb.add(j0, cb.add(base, 4 * g)))
                ps = [(jj, cb.v(arith.MulfOp(p, x))) for (jj, p), x in zip(ps, mults, strict=True)]
            elif self.dropout_slice is not None:
                ps = [(jj, self.dropped(cb, p, batch, rowc, cb.min(cb.add(j0, jj), self.keys - 1))) for jj, p in ps]
            new_acc = []
            for e, a in enumerate(acc):
                x = cb.v(arith.MulfOp(a, alpha))
                assert vsh is not None
                for jj, p in ps:
                    x = cb.v(arith.AddfOp(x, cb.v(arith.MulfOp(p, cb.load(vsh, [jj, cb.add(t, lanes * e)])))))
                new_acc.append(x)
            return [m_new, total, *new_acc]

        def tile(lb: Builder, kt: SSAValue) -> list[SSAValue]:
            j0 = lb.mul(kt, bn)
            self.load_tile(lb, ksh, k, batch, j0, self.keys, tid, threads)
            if v is not None and vsh is not None:
                self.load_tile(lb, vsh, v, batch, j0, self.keys, tid, threads)
            lb.op(gpu.BarrierOp())
            new = self.for_(lb, 0, bn // chunk, list(lb.block.args[1:]), lambda cb, c: keys(cb, c, j0))
            lb.op(gpu.BarrierOp())
            return new

        m, l_, *acc = self.for_(b, 0, n_tiles, [ninf, zero, *([zero] * n_acc)], tile)
        ok = b.cmp("ult", row, self.length)
        bb = b.when(ok)
        assert bb is not None
        if out is not None:
            den = bb.select(bb.v(arith.CmpfOp(l_, zero, "oeq")), one, l_)
            self.store_slice(bb, [bb.v(arith.DivfOp(a, den)) for a in acc], out, [*batch, row], t)
        if lse is not None:
            first = bb.when(bb.cmp("ult", t, 1)) if lanes > 1 else bb
            assert first is not None
            mu = first.select(first.v(arith.CmpfOp(m, ninf, "oeq")), zero, m)
            first.store(first.v(arith.AddfOp(mu, first.v(mathd.LogOp(l_)))), lse, [*batch, row])

    def lse0(self, b: Builder, x: SSAValue) -> SSAValue:
        """``lse`` with ``-inf`` (a row with every key masked) as 0, so that ``exp(-inf - lse0)`` is 0."""
        return b.select(b.v(arith.CmpfOp(x, self.fconst(-math.inf), "oeq")), self.fconst(0.0), x)

    def dq(self, bx: SSAValue, batch: list[Index], tid: Index, t: Index, r: Index, rows: int) -> None:
        b, el, lanes = self.b, self.el, self.lanes
        q, k, v, dout = self.buf["q"], self.buf["k"], self.buf["v"], self.buf["dout"]
        row = b.add(b.mul(bx, rows), r)
        rowc = b.min(row, self.length - 1)
        scale = self.fconst(self.scale)
        qs = [b.v(arith.MulfOp(x, scale)) for x in self.row_slice(b, q, [*batch, rowc], self.d, t)]
        dos = self.row_slice(b, dout, [*batch, rowc], self.ev, t)
        lse = self.lse0(b, b.load(self.buf["lse"], [*batch, rowc]))
        dsum = b.load(self.buf["dsum"], [*batch, rowc])
        n_tiles, bn = self.key_tiles(b, bx, rows)
        ksh = b.v(gpu_ext.WorkgroupAllocOp(el, [bn, self.d]))
        vsh = b.v(gpu_ext.WorkgroupAllocOp(el, [bn, self.ev]))
        threads = rows * lanes

        def key(cb: Builder, jj: Index, j0: Index, acc: Sequence[SSAValue], mult: SSAValue | None) -> list[SSAValue]:
            j = cb.add(j0, jj)
            valid = cb.cmp("ult", j, self.keys)
            if self.causal:
                valid = cb.both(valid, cb.cmp("ule", j, row))
            s = self.masked(cb, self.dot(cb, qs, ksh, jj, t), batch, rowc, cb.min(j, self.keys - 1), valid)
            p = cb.v(mathd.ExpOp(cb.v(arith.SubfOp(s, lse))))
            dp = self.dot(cb, dos, vsh, jj, t)
            if mult is not None:
                dp = cb.v(arith.MulfOp(dp, mult))
            else:
                dp = self.dropped(cb, dp, batch, rowc, cb.min(j, self.keys - 1))
            ds = cb.v(arith.MulfOp(cb.v(arith.MulfOp(p, cb.v(arith.SubfOp(dp, dsum)))), scale))
            return [
                cb.v(arith.AddfOp(a, cb.v(arith.MulfOp(ds, cb.load(ksh, [jj, cb.add(t, lanes * e)])))))
                for e, a in enumerate(acc)
            ]

        def four_keys(cb: Builder, g: SSAValue, j0: Index) -> list[SSAValue]:
            """Keys 4g .. 4g + 3 of the tile, their dropout multipliers from one Philox call."""
            acc: list[SSAValue] = list(cb.block.args[1:])
            base = cb.mul(g, 4)
            mults = self.group_multipliers(cb, rowc, cb.add(j0, base))
            for u in range(4):
                acc = key(cb, cb.add(base, u), j0, acc, mults[u])
            return acc

        def tile(lb: Builder, kt: SSAValue) -> list[SSAValue]:
            j0 = lb.mul(kt, bn)
            self.load_tile(lb, ksh, k, batch, j0, self.keys, tid, threads)
            self.load_tile(lb, vsh, v, batch, j0, self.keys, tid, threads)
            lb.op(gpu.BarrierOp())
            args = list(lb.block.args[1:])
            if self.shared is not None:
                new = self.for_(lb, 0, bn // 4, args, lambda cb, g: four_keys(cb, g, j0))
            else:
                new = self.for_(lb, 0, bn, args, lambda cb, jj: key(cb, jj, j0, list(cb.block.args[1:]), None))
            lb.op(gpu.BarrierOp())
            return new

        acc = self.for_(b, 0, n_tiles, [self.fconst(0.0)] * (self.d // lanes), tile)
        bb = b.when(b.cmp("ult", row, self.length))
        assert bb is not None
        self.store_slice(bb, acc, self.buf["dq"], [*batch, row], t)

    def dkdv(self, bx: SSAValue, batch: list[Index], tid: Index, t: Index, r: Index, rows: int) -> None:
        b, el, lanes = self.b, self.el, self.lanes
        q, k, v, dout = self.buf["q"], self.buf["k"], self.buf["v"], self.buf["dout"]
        key = b.add(b.mul(bx, rows), r)
        keyc = b.min(key, self.keys - 1)
        scale = self.fconst(self.scale)
        ks = [b.v(arith.MulfOp(x, scale)) for x in self.row_slice(b, k, [*batch, keyc], self.d, t)]
        vs = self.row_slice(b, v, [*batch, keyc], self.ev, t)
        bm = self.s.count("bwd_block_m")
        n_tiles = -(-self.length // bm)
        first: Index = b.div(b.mul(bx, rows), bm) if self.causal else 0  # queries i >= the block's first key
        qsh = b.v(gpu_ext.WorkgroupAllocOp(el, [bm, self.d]))
        dosh = b.v(gpu_ext.WorkgroupAllocOp(el, [bm, self.ev]))
        lsh = b.v(gpu_ext.WorkgroupAllocOp(el, [bm]))
        dsh = b.v(gpu_ext.WorkgroupAllocOp(el, [bm]))
        threads = rows * lanes
        nd, nv = self.d // lanes, self.ev // lanes

        def query(cb: Builder, ii: SSAValue, i0: Index) -> list[SSAValue]:
            dk, dv = cb.block.args[1 : 1 + nd], cb.block.args[1 + nd :]
            i = cb.add(i0, ii)
            valid = cb.cmp("ult", i, self.length)
            if self.causal:
                valid = cb.both(valid, cb.cmp("ule", key, i))
            s = self.masked(cb, self.dot(cb, ks, qsh, ii, t), batch, cb.min(i, self.length - 1), keyc, valid)
            p = cb.v(mathd.ExpOp(cb.v(arith.SubfOp(s, cb.load(lsh, [ii])))))
            ic = cb.min(i, self.length - 1)
            pz = self.dropped(cb, p, batch, keyc, ic)
            new_dv = [
                cb.v(arith.AddfOp(a, cb.v(arith.MulfOp(pz, cb.load(dosh, [ii, cb.add(t, lanes * e)])))))
                for e, a in enumerate(dv)
            ]
            dp = self.dropped(cb, self.dot(cb, vs, dosh, ii, t), batch, keyc, ic)
            ds = cb.v(arith.MulfOp(cb.v(arith.MulfOp(p, cb.v(arith.SubfOp(dp, cb.load(dsh, [ii]))))), scale))
            new_dk = [
                cb.v(arith.AddfOp(a, cb.v(arith.MulfOp(ds, cb.load(qsh, [ii, cb.add(t, lanes * e)])))))
                for e, a in enumerate(dk)
            ]
            return [*new_dk, *new_dv]

        def tile(lb: Builder, it: SSAValue) -> list[SSAValue]:
            i0 = lb.mul(it, bm)
            self.load_tile(lb, qsh, q, batch, i0, self.length, tid, threads)
            self.load_tile(lb, dosh, dout, batch, i0, self.length, tid, threads)
            self.load_tile(lb, lsh, self.buf["lse"], batch, i0, self.length, tid, threads, self.lse0)
            self.load_tile(lb, dsh, self.buf["dsum"], batch, i0, self.length, tid, threads)
            lb.op(gpu.BarrierOp())
            new = self.for_(lb, 0, bm, list(lb.block.args[1:]), lambda cb, ii: query(cb, ii, i0))
            lb.op(gpu.BarrierOp())
            return new

        zero = self.fconst(0.0)
        res = self.for_(b, first, n_tiles, [zero] * (nd + nv), tile)
        bb = b.when(b.cmp("ult", key, self.keys))
        assert bb is not None
        self.store_slice(bb, res[:nd], self.buf["dk"], [*batch, key], t)
        self.store_slice(bb, res[nd:], self.buf["dv"], [*batch, key], t)


DropoutSlice = tuple[list[Operation], SSAValue, list[SSAValue], list[SSAValue]]
"""The ops of a nest computing its dropout multiplier, the multiplier, the nest's parallel indices and the loop
indices the ops use (:func:`dropout_slice`)."""


def regenerate(b: Builder, found: DropoutSlice, batch: Sequence[Index], row: Index, loop: Index) -> SSAValue:
    """The dropout multiplier (f32 for 16-bit attention) where the nest's parallel index is (*batch, ``row``) and
    its loop's ``loop``: the loop stage's ops computing it (Philox) cloned at ``b``."""
    ops, value, par_args, loop_args = found
    mapping: dict[SSAValue, SSAValue] = {a: b.idx(x) for a, x in zip(par_args, [*batch, row], strict=True)}
    for a in loop_args:
        mapping[a] = b.idx(loop)
    for o in ops:
        clone = o.clone(value_mapper=mapping)
        clone.attributes.pop(DROPOUT_ATTR, None)
        b.op(clone)
        mapping.update(zip(o.results, clone.results, strict=True))
    z = mapping.get(value, value)
    return b.v(arith.ExtFOp(z, f32)) if pg.is_low_precision(z.type) else z


class SharedDraw:
    """A nest's dropout multiplier drawn at the scores' index (:data:`SCORES_LAYOUT`) and rebuilt so that a kernel
    makes one Philox call per counter (4 keys) and hands its words to the lanes holding those keys: the draw's
    offset and seed (cloned once, where :meth:`make` is called), Philox 4x32-10 of a counter
    (:meth:`words`), and the loop stage's ops from the drawn word to the multiplier (:meth:`multiplier`), cloned
    per element."""

    def __init__(self, offset: SSAValue, key: list[SSAValue], word: SSAValue, tail: list[Operation], value: SSAValue,
                 mapping: dict[SSAValue, SSAValue]):  # fmt: skip
        self.offset, self.key, self.word, self.tail, self.value, self.mapping = offset, key, word, tail, value, mapping
        self.threshold: tuple[Operation, str, int] | None = None
        self.values: tuple[float, float] | None = None

    @staticmethod
    def make(b: Builder, found: DropoutSlice, elements: int) -> SharedDraw | None:
        """The shared draw of ``found`` with its loop-invariant ops cloned at ``b``; None when the multiplier is not
        drawn at the scores' index or the slice is not a uniform draw's (roles :data:`PHILOX_ATTR`), or the scores
        have ``elements >= 2**31``."""
        ops, value, par_args, loop_args = found
        tagged = value.owner
        if elements >= 2**31 or not isinstance(tagged, Operation):
            return None
        layout = tagged.attributes.get(DROPOUT_ATTR)
        if not (isinstance(layout, StringAttr) and layout.data == SCORES_LAYOUT):
            return None
        roles: dict[str, Operation] = {}
        for o in ops:
            r = o.attributes.get(PHILOX_ATTR)
            if isinstance(r, StringAttr):
                if r.data in roles:
                    return None
                roles[r.data] = o
        if set(roles) != {"counter", "key0", "key1", "word"}:
            return None
        varying: set[SSAValue] = set(par_args) | set(loop_args)
        for o in ops:
            if any(v in varying for v in o.operands):
                varying.update(o.results)
        word = roles["word"].results[0]
        after: set[SSAValue] = {word}
        tail = []
        for o in ops:
            if any(v in after for v in o.operands):
                after.update(o.results)
                tail.append(o)
        offset = roles["counter"].operands[0]
        need = [offset, roles["key0"].results[0], roles["key1"].results[0]]
        need += [v for o in tail for v in o.operands if v not in after]
        if any(v in varying for v in need) or (value not in after and value is not word):
            return None
        # the loop-invariant ops those values need, cloned here
        in_slice = {r for o in ops for r in o.results}
        wanted: set[SSAValue] = set()
        stack = [v for v in need if v in in_slice]
        while stack:
            v = stack.pop()
            if v in wanted:
                continue
            wanted.add(v)
            owner = v.owner
            assert isinstance(owner, Operation)
            stack.extend(x for x in owner.operands if x in in_slice)
        mapping: dict[SSAValue, SSAValue] = {}
        for o in ops:
            if any(r in wanted for r in o.results):
                clone = o.clone(value_mapper=mapping)
                for attr in (DROPOUT_ATTR, PHILOX_ATTR):
                    clone.attributes.pop(attr, None)
                b.op(clone)
                mapping.update(zip(o.results, clone.results, strict=True))
        key = [mapping.get(v, v) for v in need[1:3]]
        draw = SharedDraw(mapping.get(offset, offset), key, word, tail, value, mapping)
        draw.threshold = _word_threshold(word, tail)
        if draw.threshold is not None:  # the conversions up to the comparison are not cloned
            cmp = draw.threshold[0]
            draw.tail = [o for o in tail if o is cmp or not _before(o, cmp, tail)]
            draw.tail.remove(cmp)
            try:  # the multiplier as a function of the comparison alone (constants otherwise): two values
                draw.values = (float(_evaluate(value, word, 0, {cmp.results[0]: True})),
                               float(_evaluate(value, word, 0, {cmp.results[0]: False})))  # fmt: skip
            except ValueError:
                draw.values = None
        return draw

    def words(self, b: Builder, lin: Index) -> list[SSAValue]:
        """The 4 ``i32`` words of the counter of scores element ``lin`` (an ``i32`` row-major index): Philox of
        ``offset + lin // 4``; element ``lin`` takes word ``lin % 4``."""
        quarter = b.v(arith.ExtUIOp(b.v(arith.ShRUIOp(b.c32(lin) if isinstance(lin, int) else lin, b.c32(2))), i64))
        counter = b.v(arith.AddiOp(self.offset, quarter))
        c0 = b.v(arith.TruncIOp(counter, i32))
        c1 = b.v(arith.TruncIOp(b.v(arith.ShRUIOp(counter, b.const(32, i64))), i32))

        def pure(cls: Callable[..., Operation], *xs: SSAValue) -> SSAValue:
            return b.v(cls(*xs))

        def mul_wide(x: SSAValue, y: SSAValue) -> tuple[SSAValue, SSAValue]:
            lo, hi = b.op(arith.MulUIExtendedOp(x, y)).results
            return lo, hi

        zero = b.c32(0)
        return philox4x32(pure, mul_wide, b.c32, [c0, c1, zero, zero], self.key)

    def multiplier(self, b: Builder, word: SSAValue) -> SSAValue:
        """The multiplier (f32 for 16-bit attention) of an element that drew ``word``."""
        mapping = dict(self.mapping)
        mapping[self.word] = word
        if self.threshold is not None:
            cmp, pred, n = self.threshold
            if 0 < n < 2**32:
                mapping[cmp.results[0]] = b.v(arith.CmpiOp(word, b.c32(signed32(n)), pred))
            else:  # always or never (uge 0: true; uge 2**32: false; ult: the opposite)
                mapping[cmp.results[0]] = b.const(int((n == 0) == (pred == "uge")), i1)
            if self.values is not None:  # the multiplier of a kept and of a dropped element, as constants
                keep = mapping[cmp.results[0]]
                el = f32 if pg.is_low_precision(self.value.type) else self.value.type  # f32 for 16-bit attention
                return b.select(keep, b.const(self.values[0], el), b.const(self.values[1], el))
        for o in self.tail:
            clone = o.clone(value_mapper=mapping)
            for attr in (DROPOUT_ATTR, PHILOX_ATTR):
                clone.attributes.pop(attr, None)
            b.op(clone)
            mapping.update(zip(o.results, clone.results, strict=True))
        z = mapping[self.value]
        return b.v(arith.ExtFOp(z, f32)) if pg.is_low_precision(z.type) else z


_MONOTONE = (arith.ShRUIOp, arith.UIToFPOp, arith.MulfOp, arith.TruncFOp, arith.ExtFOp)
"""Conversions from a drawn word to its uniform number that never decrease (a positive scale)."""
_CMPF_NAMES = ("false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une")


def _before(o: Operation, cmp: Operation, tail: list[Operation]) -> bool:
    """Whether tail op ``o`` is one of the conversions feeding ``cmp`` (found by :func:`_word_threshold`)."""
    stack, seen = list(cmp.operands), set()
    while stack:
        v = stack.pop()
        owner = v.owner
        if owner is o:
            return True
        if isinstance(owner, Operation) and owner in tail and owner not in seen:
            seen.add(owner)
            stack.extend(owner.operands)
    return False


def _evaluate(v: SSAValue, word: SSAValue, w: int, known: dict[SSAValue, bool] | None = None) -> Any:
    """The value of ``v`` (a chain of :data:`_MONOTONE` conversions of ``word``, or constants) when ``word`` is ``w``:
    numpy scalars of the ops' types (``ml_dtypes`` for 16-bit floats), rounding as the GPU does (to nearest even)."""
    if v is word:
        return np.uint32(w)
    if known and v in known:
        return known[v]
    owner = v.owner
    if isinstance(owner, arith.ConstantOp):
        c = const_value(v)
        if c is None:
            raise ValueError("not a scalar constant")
        return _numpy_type(v.type)(c)
    if isinstance(owner, arith.SelectOp):
        cond = _evaluate(owner.cond, word, w, known)
        return _evaluate(owner.lhs if cond else owner.rhs, word, w, known)
    if not isinstance(owner, _MONOTONE):
        raise ValueError(f"{owner} is not a monotone conversion")
    xs = [_evaluate(x, word, w, known) for x in owner.operands]
    t = _numpy_type(v.type)
    if isinstance(owner, arith.ShRUIOp):
        return np.uint32(int(xs[0]) >> int(xs[1]))
    if isinstance(owner, arith.MulfOp):
        if float(xs[1]) <= 0:
            raise ValueError("a scale that is not positive")
        return t(np.float64(xs[0]) * np.float64(xs[1]))  # exact in f64 for a 24-bit integer times a power of 2
    return t(xs[0])


def _numpy_type(t: Attribute) -> Any:
    """The numpy scalar type of ``t`` (``uint32`` for ``i32``: the words are unsigned)."""
    import ml_dtypes  # half a CPU second: loaded where a 16-bit constant is folded, not with the compiler

    for cls, np_type in ((BFloat16Type, ml_dtypes.bfloat16), (Float16Type, np.float16), (Float32Type, np.float32),
                         (Float64Type, np.float64)):  # fmt: skip
        if isinstance(t, cls):
            return np_type
    if isinstance(t, IntegerType) and t.width.data == 32:
        return np.uint32
    raise ValueError(f"type {t}")


def _word_threshold(word: SSAValue, tail: list[Operation]) -> tuple[Operation, str, int] | None:
    """When the multiplier depends on the drawn word only through one ``arith.cmpf`` of a monotone conversion of it
    (:data:`_MONOTONE`: ``(word >> 8) * 2**-24`` rounded to the draw's type) against a constant: that comparison,
    and the unsigned ``i32`` comparison of the word with a threshold ``N`` found by bisection that gives the same
    truth at every word (``uge N`` or ``ult N``), else None."""
    cmps = [o for o in tail if isinstance(o, arith.CmpfOp)]
    if len(cmps) != 1:
        return None
    cmp = cmps[0]
    chain = [o for o in tail if _before(o, cmp, tail)]
    name = _CMPF_NAMES[cmp.predicate.value.data] if cmp.predicate.value.data < len(_CMPF_NAMES) else ""
    if name[1:] not in ("ge", "gt", "lt", "le") or any(not isinstance(o, _MONOTONE) for o in chain):
        return None
    if any(u.operation not in chain and u.operation is not cmp for o in chain for r in o.results for u in r.uses):
        return None  # a conversion used elsewhere: clone them all
    lhs, rhs = cmp.operands
    u_left = lhs is word or lhs.owner in chain
    op = {"ge": operator.ge, "gt": operator.gt, "lt": operator.lt, "le": operator.le}[name[1:]]
    try:
        c = float(_evaluate(rhs if u_left else lhs, word, 0))

        def truth(w: int) -> bool:  # monotone in w: a monotone u against a constant
            u = float(_evaluate(lhs if u_left else rhs, word, w))
            return op(u, c) if u_left else op(c, u)

        end = truth(2**32 - 1)
        if truth(0) == end:
            return cmp, "uge" if end else "ult", 0
        lo, hi = 0, 2**32 - 1  # the first word whose truth is the last word's
        while lo < hi:
            mid = (lo + hi) // 2
            if truth(mid) == end:
                hi = mid
            else:
                lo = mid + 1
        return cmp, "uge" if end else "ult", lo
    except ValueError:
        return None


def dropout_slice(par: scf.ParallelOp) -> DropoutSlice | None:
    """The ops of nest ``par`` computing its dropout multiplier (the op tagged :data:`DROPOUT_ATTR` and what it
    depends on inside the nest, in order), the multiplier, the nest's parallel indices and the loop indices the ops
    use; None without dropout."""
    tagged = next((o for o in par.walk() if DROPOUT_ATTR in o.attributes), None)
    if tagged is None:
        return None
    body = par.body.block
    needed: set[Operation] = set()
    loop_args: list[SSAValue] = []
    stack = [tagged]
    while stack:
        o = stack.pop()
        if o in needed:
            continue
        needed.add(o)
        for v in o.operands:
            owner = v.owner
            if isinstance(owner, Operation):
                if owner is not par and par.is_ancestor(owner):
                    stack.append(owner)
            elif owner is not body and v not in loop_args:
                loop = owner.parent_op()
                if isinstance(loop, scf.ForOp) and par.is_ancestor(loop):  # the nest's loop's induction variable
                    loop_args.append(v)
    ops = [o for o in par.walk() if o in needed]
    return ops, tagged.results[0], list(body.args), loop_args


def nest_buffers(par: scf.ParallelOp) -> dict[str, SSAValue]:
    """The buffers of an attention nest by role (``pg.attention``'s ``buffers``: the order of first use).

    Raises ``ValueError`` when the nest uses another number of buffers."""
    info = par.attributes[ATTENTION_ATTR]
    assert isinstance(info, DictionaryAttr)
    roles = [r.data for r in info.data["buffers"].data]  # type: ignore[attr-defined]
    found = _outside_buffers(par)
    if len(found) != len(roles):
        raise ValueError(f"an attention nest uses {len(found)} buffers, its pg.attention names {len(roles)}")
    return {r: v for r, v in zip(roles, found, strict=True) if r != "other"}


def _outside_buffers(nest: Operation) -> list[SSAValue]:
    """The buffers defined outside ``nest`` that it uses, in order of first use."""
    found: list[SSAValue] = []
    for o in nest.walk():
        for v in o.operands:
            if isinstance(v.type, MemRefType) and v not in found:
                owner = v.owner
                if not (isinstance(owner, Operation) and owner is not nest and nest.is_ancestor(owner)):
                    found.append(v)
    return found


def build_launch(par: scf.ParallelOp, simt: bool = False) -> None:
    """Replace the attention nest ``par`` (loop stage, ``pg.attention``) by its ``gpu.launch`` (see the module
    docstring); ``simt``: under another schedule carrying the ``flash`` sizes (``flash-mma``, for the nests it does
    not build). Raises ``ValueError`` for a nest this module did not make."""
    info = par.attributes[ATTENTION_ATTR]
    s = par.attributes.get("kernel.schedule")
    if (
        not isinstance(info, DictionaryAttr)
        or not isinstance(s, ScheduleAttr)
        or (s.strategy.data != STRATEGY and not simt)
    ):
        raise ValueError(f"an attention nest needs pg.attention and a {STRATEGY} schedule")
    if info.data["nest"].data == "dsum":  # type: ignore[attr-defined]
        build_dsum(par, nest_buffers(par), s.strategy.data)
        return
    k = _Kernel(par, info, nest_buffers(par), s)
    replace_nest(par, k.build(), k.host_consts)


DSUM_THREADS = 256
"""Threads a block of the ``D = rowsum(dout * out)`` kernel."""


def build_dsum(par: scf.ParallelOp, buffers: dict[str, SSAValue], strategy: str) -> None:
    """Replace the ``D = rowsum(dout * out)`` nest ``par`` (``pg.attention`` nest ``dsum``) by its ``gpu.launch``:
    ``lanes`` threads a row (up to 32, the most that divide its chunks), each reading chunks of 4 adjacent elements
    (2 for f64: one vector load; single elements where the rows are not aligned to them) of dout and out, so
    that a warp reads whole rows; the f32 (f64) products summed per thread, then over the row's lanes by butterfly
    shuffles; the row's first lane stores ``D``. Grid: rows / (:data:`DSUM_THREADS` / lanes)."""
    from picograd.passes.kinds.matmul import aligned16

    dout, out, dsum = buffers["dout"], buffers["out"], buffers["dsum"]
    *batch, length, ev = _shape(out)
    total = math.prod(batch) * length
    size = 8 if MemRefType.get_element_type(out.type) == f64 else 4  # type: ignore[arg-type]  # 16-bit: 4 too
    chunk = 16 // size  # the widest vector load: 16 bytes, at most 4 elements
    if ev % chunk or not (aligned16(dout) and aligned16(out)):
        chunk = 1
    lanes = 1
    while lanes < WARP and (ev // chunk) % (2 * lanes) == 0:
        lanes *= 2
    rows = DSUM_THREADS // lanes
    body = Block(arg_types=[IndexType()] * 12)
    body.add_op(gpu.TerminatorOp())
    b = Builder(body, par.location, ConstantPool(body))
    bx, tid = (b.v(arith.IndexCastOp(body.args[i], i32)) for i in (0, 3))
    t = b.rem(tid, lanes)
    row = b.add(b.mul(bx, rows), b.div(tid, lanes))
    rest: Index = b.min(row, total - 1)
    idx: list[Index] = []
    for n in reversed((*batch, length)):
        idx.insert(0, b.rem(rest, n) if n > 1 else 0)
        rest = b.div(rest, n)
    acc: SSAValue | None = None
    for c in range(ev // (chunk * lanes)):
        col = b.add(b.mul(t, chunk), c * chunk * lanes)
        where = [b.idx(x) for x in (*idx, col)]
        xs: list[SSAValue]
        ys: list[SSAValue]
        if chunk > 1:
            xs = list(b.op(gpu_ext.VectorLoadOp(dout, where, chunk)).results)
            ys = list(b.op(gpu_ext.VectorLoadOp(out, where, chunk)).results)
        else:
            xs, ys = [b.load(dout, where)], [b.load(out, where)]
        for x, y in zip(xs, ys, strict=True):
            wx, wy = (b.v(arith.ExtFOp(z, f32)) if pg.is_low_precision(z.type) else z for z in (x, y))
            prod = b.v(arith.MulfOp(wx, wy))
            acc = prod if acc is None else b.v(arith.AddfOp(acc, prod))
    assert acc is not None
    off = lanes // 2
    while off:
        acc = b.v(arith.AddfOp(acc, b.v(gpu_ext.ShuffleOp(acc, "xor", off))))
        off //= 2
    first = b.when(b.both(b.lt(row, total), b.lt(t, 1)))
    if first is not None:
        first.store(acc, dsum, idx)
    consts, launch = wrap_launch(par, body, [-(-total // rows), 1, 1], DSUM_THREADS, f"{strategy}-dsum")
    replace_nest(par, launch, consts)


def wrap_launch(
    par: scf.ParallelOp, body: Block, grid: Sequence[int], threads: int, strategy: str
) -> tuple[list[Operation], gpu.LaunchOp]:
    """The ``gpu.launch`` of an attention kernel's ``body`` (its 12 index arguments) over ``grid`` blocks of
    ``threads`` threads, standing for the nest ``par`` (its location, kernel name and kind) under ``strategy``;
    returns the host-side size constants (to insert before it) and the launch."""
    consts: list[Operation] = [arith.ConstantOp(IntegerAttr(v, IndexType())) for v in (*grid, threads, 1)]
    for c in consts:
        c.location = par.location
    hc = [c.results[0] for c in consts]
    launch = gpu.LaunchOp(Region(body), [hc[0], hc[1], hc[2]], [hc[3], hc[4], hc[4]])
    launch.location = par.location
    for key in (KERNEL_ATTR, KIND_ATTR):
        if key in par.attributes:
            launch.attributes[key] = par.attributes[key]
    launch.attributes[STRATEGY_ATTR] = StringAttr(strategy)
    launch.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [threads, 1, 1])
    return consts, launch


def replace_nest(par: scf.ParallelOp, launch: gpu.LaunchOp, host_consts: Sequence[Operation]) -> None:
    """Put ``launch`` (after ``host_consts``, its grid and block sizes) in place of the attention nest ``par``, and
    drop the f32 accumulators of 16-bit rows (role ``acc``: the kernels keep them in registers) that no other nest
    uses."""
    roles = [r.data for r in par.attributes[ATTENTION_ATTR].data["buffers"].data]  # type: ignore[attr-defined]
    accs = [v for r, v in zip(roles, _outside_buffers(par), strict=True) if r == "acc"]
    host = par.parent_block()
    assert host is not None
    for c in host_consts:
        host.insert_op_before(c, par)
    host.insert_op_before(launch, par)
    host.erase_op(par, safe_erase=False)
    for acc in accs:
        uses = [u.operation for u in acc.uses]
        if isinstance(acc.owner, memref.AllocOp) and all(isinstance(u, memref.DeallocOp) for u in uses):
            for u in uses:
                u.detach()
                u.erase()
            acc.owner.detach()
            acc.owner.erase()


KIND = KernelKind(
    name="attention",
    doc="fused attention forward/backward (FlashAttention-2): its own nests (pg.attention), flash kernels",
    lower_kernel=lower_loops,
    strategies=("thread_per_point", STRATEGY, MMA_STRATEGY, "flash-wgmma"),
)
"""The registry row (``picograd.passes.kinds.KERNEL_KINDS``): the loop stage lowers the whole kernel
(:func:`lower_loops`); its nests are marked ``pg.attention`` (:data:`ATTENTION_ATTR`), not ``pg.nest``, and
``pg-attention-schedule`` builds their ``flash`` kernels (:func:`build_launch`), ahead of ``pg-to-gpu`` (which maps
the ``D`` nest a thread per point)."""
