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
- ``D`` keeps the ``thread_per_point`` nest of ``pg-to-gpu``.

Element types: f32 and f64 (SIMT; no tensor cores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import arith, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    MemRefType,
    StringAttr,
    TensorType,
    UnitAttr,
    f64,
    i1,
)
from xdsl.ir import Attribute, Operation, SSAValue

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

STRATEGY = "flash"
"""The schedule strategy of attention kernels."""

ATTENTION_ATTR = "pg.attention"
"""Attribute of an attention nest of the loop stage: ``{nest = "forward" | "dkdv" | "dq", scale, causal,
buffers = [roles in order of first use]}``."""

WARP = gpu_ext.WARP_SIZE
SHARED_BYTES = 32768
"""Shared memory an attention kernel may use (static shared memory is at most 48 KiB)."""


def attention_partner(op: Operation) -> Operation | None:
    """For a ``pg.scaled_dot_product_attention`` without dropout: a ``pg.attention_lse`` of the same query, key,
    mask, scale and causality (one kernel computes both), else None."""
    if not isinstance(op, pg.ScaledDotProductAttentionOp) or op.dropout is not None:
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


# ---------------------------------------------------------------------------------------------------------------
# The schedule


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (max(n, 1) - 1).bit_length())


def _ops(k: kernel.FusedOp | kernel.LaunchOp) -> list[Operation]:
    return [o for o in k.body.block.ops if not isinstance(o, kernel.YieldOp)]


def schedule(k: kernel.FusedOp | kernel.LaunchOp, options: object = None) -> ScheduleAttr:
    """The ``flash`` schedule of an attention kernel, from its shapes: ``lanes`` (8, 4, 2 or 1, at most head dim /
    16, dividing both head dims), ``block_m`` query rows a block (64, fewer for short sequences, at least a warp
    of threads), ``block_n`` keys a shared tile (32, fewer for short sequences or when K and V tiles would exceed
    :data:`SHARED_BYTES`), and the dk/dv kernel's ``bwd_block_n`` key rows a block and ``bwd_block_m`` queries a
    shared tile (16)."""
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
    lanes = next(r for r in (8, 4, 2, 1) if r <= max(1, d // 16) and d % r == 0 and ev % r == 0)
    block_m = max(WARP // lanes, min(64, _pow2_at_least(length)))
    block_n = min(32, _pow2_at_least(keys))
    while block_n > 1 and 2 * block_n * width * size > SHARED_BYTES:
        block_n //= 2
    bwd_block_n = max(WARP // lanes, min(64, _pow2_at_least(keys)))
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

    def __init__(self, lw: KernelLowering, op: Operation, causal: bool, scale: float, mask: SSAValue | None):
        self.lw = lw
        self.causal = causal
        self.scale = scale
        self.mask = mask

    def dot(self, a: SSAValue, ai: tuple[SSAValue, ...], b: SSAValue, bi: tuple[SSAValue, ...], n: int) -> SSAValue:
        """``sum_e a[*ai, e] * b[*bi, e]`` over ``e < n``."""
        lw = self.lw
        el = MemRefType.get_element_type(a.type)  # type: ignore[arg-type]

        def body(es: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            x = lw.load(a, (*ai, es[0]))
            y = lw.load(b, (*bi, es[0]))
            return [lw.pure(arith.AddfOp, acc[0], lw.pure(arith.MulfOp, x, y))]

        (total,) = lw.loops([(0, n)], [lw.const(0.0, el)], body)
        return total

    def score(self, q: SSAValue, k: SSAValue, batch: list[SSAValue], i: SSAValue, j: SSAValue, d: int) -> SSAValue:
        """The masked, scaled score (query ``i``, key ``j``): ``-inf`` where masked."""
        lw = self.lw
        el = MemRefType.get_element_type(q.type)  # type: ignore[arg-type]
        s = lw.pure(arith.MulfOp, self.dot(q, (*batch, i), k, (*batch, j), d), lw.const(self.scale, el))
        ninf = lw.const(-math.inf, el)
        if self.causal:
            s = lw.pure(arith.SelectOp, lw.cmpi("ule", j, i), s, ninf)
        if self.mask is not None:
            m = lw.load(self.mask, _mask_index(lw, self.mask, (*batch, i, j)))
            if MemRefType.get_element_type(self.mask.type) == i1:  # type: ignore[arg-type]
                s = lw.pure(arith.SelectOp, m, s, ninf)
            else:
                s = lw.pure(arith.AddfOp, s, m)
        return s

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
    order: list[str] = []
    seen: set[SSAValue] = set()
    for o in nest.walk():
        for v in o.operands:
            if v in roles and v not in seen:
                seen.add(v)
                order.append(roles[v])
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
    nests = _LoopNests(lw, main, main.is_causal, main.scale_value, mask)
    q, k = buffers[main.query], buffers[main.key]
    *batch_shape, length, d = shape_of(main.query)
    keys = shape_of(main.key)[-2]
    el = element_of(main.query)
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
            with lw.parallel((*batch_shape, length)) as ivs:
                *b, i = ivs
                row = (*b, i)
                if out is not None:
                    nests.zero_row(out, row, ev)

                def body(js: list[SSAValue], carried: list[SSAValue]) -> list[SSAValue]:
                    m, l_ = carried
                    s = nests.score(q, k, b, i, js[0], d)
                    m_new = lw.pure(arith.MaximumfOp, m, s)
                    mu = lw.pure(arith.SelectOp, lw.cmpf("oeq", m_new, ninf), zero, m_new)
                    alpha = lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, m, mu))
                    p = lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, s, mu))
                    if out is not None and v is not None:
                        vj = (*b, js[0])
                        nests.axpy_row(
                            out,
                            row,
                            ev,
                            lambda old, e: lw.pure(
                                arith.AddfOp,
                                lw.pure(arith.MulfOp, old, alpha),
                                lw.pure(arith.MulfOp, p, lw.load(v, (*vj, e))),
                            ),
                        )
                    return [m_new, lw.pure(arith.AddfOp, lw.pure(arith.MulfOp, l_, alpha), p)]

                m, l_ = lw.loops([(0, keys)], [ninf, zero], body)
                if out is not None:
                    den = lw.pure(arith.SelectOp, lw.cmpf("oeq", l_, zero), one, l_)
                    nests.axpy_row(out, row, ev, lambda old, e: lw.pure(arith.DivfOp, old, den))
                if lse is not None:
                    mu = lw.pure(arith.SelectOp, lw.cmpf("oeq", m, ninf), zero, m)
                    lw.store(lw.pure(arith.AddfOp, mu, lw.pure(mathd.LogOp, l_)), lse, row)
            _tag(lw, _last_nest(lw), "forward", main.scale_value, main.is_causal, roles)
    for buf in scratch:
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
    el = element_of(op.query)
    ninf, zero = lw.const(-math.inf, el), lw.const(0.0, el)
    scale = lw.const(op.scale_value, el)
    roles.update({v: "v", out: "out", dout: "dout", lse: "lse", dq: "dq", dk: "dk", dv: "dv"})
    dsum = lw.emit(memref.AllocOp.get(el, None, [*batch_shape, length])).results[0]
    roles[dsum] = "dsum"
    # D = rowsum(dout * out): a thread per row on the GPU
    with lw.parallel((*batch_shape, length)) as ivs:
        row = tuple(ivs)
        lw.store(nests.dot(dout, row, out, row, ev), dsum, row)
    nest = _last_nest(lw)
    nest.attributes["kernel.schedule"] = ScheduleAttr("thread_per_point", {"block": 256})

    def prob(b: list[SSAValue], i: SSAValue, j: SSAValue) -> SSAValue:
        s = nests.score(q, k, b, i, j, d)
        lse_i = lw.load(lse, (*b, i))
        lse0 = lw.pure(arith.SelectOp, lw.cmpf("oeq", lse_i, ninf), zero, lse_i)
        return lw.pure(mathd.ExpOp, lw.pure(arith.SubfOp, s, lse0))

    def dscore(b: list[SSAValue], i: SSAValue, j: SSAValue, p: SSAValue) -> SSAValue:
        dp = nests.dot(dout, (*b, i), v, (*b, j), ev)
        diff = lw.pure(arith.SubfOp, dp, lw.load(dsum, (*b, i)))
        return lw.pure(arith.MulfOp, lw.pure(arith.MulfOp, p, diff), scale)

    # dk, dv: a key row each, a loop over the queries
    with lw.parallel((*batch_shape, keys)) as ivs:
        *b, j = ivs
        nests.zero_row(dv, (*b, j), ev)
        nests.zero_row(dk, (*b, j), d)

        def kv_body(is_: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            i = is_[0]
            p = prob(b, i, j)
            nests.axpy_row(
                dv,
                (*b, j),
                ev,
                lambda old, e: lw.pure(arith.AddfOp, old, lw.pure(arith.MulfOp, p, lw.load(dout, (*b, i, e)))),
            )
            ds = dscore(b, i, j, p)
            nests.axpy_row(
                dk,
                (*b, j),
                d,
                lambda old, e: lw.pure(arith.AddfOp, old, lw.pure(arith.MulfOp, ds, lw.load(q, (*b, i, e)))),
            )
            return []

        lw.loops([(0, length)], [], kv_body)
    _tag(lw, _last_nest(lw), "dkdv", op.scale_value, op.is_causal, roles)
    # dq: a query row each, a loop over the keys
    with lw.parallel((*batch_shape, length)) as ivs:
        *b, i = ivs
        nests.zero_row(dq, (*b, i), d)

        def q_body(js: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
            j = js[0]
            ds = dscore(b, i, j, prob(b, i, j))
            nests.axpy_row(
                dq,
                (*b, i),
                d,
                lambda old, e: lw.pure(arith.AddfOp, old, lw.pure(arith.MulfOp, ds, lw.load(k, (*b, j, e)))),
            )
            return []

        lw.loops([(0, keys)], [], q_body)
    _tag(lw, _last_nest(lw), "dq", op.scale_value, op.is_causal, roles)
    lw.emit(memref.DeallocOp.get(dsum))
