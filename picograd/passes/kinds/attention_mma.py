"""The ``flash-mma`` schedule of the ``attention`` kind: FlashAttention-2 (Dao 2023) for bf16/f16 on tensor cores
(``mma.sync.m16n8k16``, f32 accumulation, sm_80+), as FlashAttention-2's CUDA kernels do it.

``pg-schedule`` gives a 16-bit attention kernel this schedule (:func:`schedule`) when its head dims are multiples
of 16 up to 128; the others keep the SIMT ``flash`` schedule (computing in f32), whose sizes this schedule also
carries: ``pg-attention-schedule`` builds a nest whose operands are not 16-byte aligned as ``flash``
(:func:`build_launch`).

**Forward** (Algorithm 1; the loop stage's ``forward`` nest, ``pg.attention``): a block of :data:`WARPS` warps
computes :data:`BLOCK_M` query rows (16 a warp), grid: query blocks x batch.

- **Shared memory.** The Q tile (``BLOCK_M x d``), one K tile and one V tile (``BLOCK_N x d``, ``BLOCK_N x ev``)
  in rows of 16-byte chunks whose index is XORed with the row's low bits (``matmul_mma_sync.swizzle``): the 8 rows
  of every ``ldmatrix`` matrix and the chunks of one ``cp.async`` round fall in distinct banks. At d = 128:
  16 + 16 + 16 KiB.
- **Pipeline.** ``cp.async`` (16-byte chunks, zero-filled past the sequence; without bounds where the tile divides
  the sequence, the K prefetch past the end then copying the last tile again) of the Q tile and K tile 0, then per
  key tile ``kt``: V tile ``kt`` is copied while the warps compute ``S = Q K^T`` and its softmax, K tile ``kt + 1``
  while they compute ``O += P V`` (one K and one V buffer, three barriers a tile; FlashAttention-2's order).
- **Fragments.** Each warp loads its 16 query rows of Q once (``ldmatrix.x4``, d / 16 A fragments kept in
  registers); K fragments by ``ldmatrix.x4`` (B of two n8 tiles), V fragments by ``ldmatrix.x4.trans``.
- **Online softmax in registers.** ``S`` (16 x ``BLOCK_N`` a warp: lane ``4g + t`` holds rows ``g`` and ``g + 8``,
  columns ``2t, 2t + 1`` of each n8 tile) is masked (keys past the end, causal ``j > i``, the user's mask), the
  row maximum combined over the 4 lanes of a quad (``shfl.xor`` 1, 2), the output rows rescaled and
  ``P = 2**(S scale log2(e) - m)`` (``m`` in log2 units; one ``fma`` and one ``ex2.approx`` an element) summed
  per thread (the quad's sums are combined once, at the end). ``P`` is rounded to 16 bits
  and packed in registers into the A fragments of ``O += P V`` (the accumulator layout of two n8 tiles is the A
  layout of one k16 step), without shared memory.
- **Causal.** Key tiles after the block's last row are not visited; the masks are applied in a second key loop,
  over the tiles on the diagonal or past the last full tile (every tile under a user mask).
- **Results.** ``O / l`` rounded once to the output type, stored two columns at a time; ``lse = m + log l`` (f32)
  by the first lane of each quad. A row whose keys are all masked gives zeros and ``lse = -inf``.

**Backward** (Algorithm 2; the ``dkdv`` and ``dq`` nests; ``D = rowsum(dO * O)`` is ``attention.build_dsum``): dk/dv
(:data:`BLOCK_M` keys a block, 16 a warp; K and V tiles in shared memory; per 16-query tile of Q and dO:
``S^T = K Q^T``, ``P^T = 2**(S^T scale log2(e) - lse)``, ``dV += P^T dO``, ``dP^T = V dO^T``,
``dS^T = P^T (dP^T - D)``, ``dK += dS^T Q``, P^T and dS^T packed in registers as A fragments; causal: query tiles
before the block's first key skipped) and dq (the paper's separate pass: Q and dO fragments in registers, 32-key
K/V tiles, ``dQ += dS K``); dk and dq are scaled once at the end.

**Dropout**: the multiplier at each (query, key) a thread holds is regenerated from the loop stage's Philox ops
(``attention.regenerate``), as the ``flash`` kernels do: in the forward after the row sums (``l`` excludes it),
in dq on ``dP``, in dk/dv on ``P^T`` (for dv) and ``dP^T``. A draw at the scores' index over keys a multiple of 4
(``attention.SharedDraw``) makes one Philox call per counter (4 adjacent keys of a query): in the forward and dq,
lanes ``t`` and ``t ^ 1`` hold them (:meth:`_MmaKernel.row_multipliers`: each draws one of a pair of n8 tiles'
counters and they swap two words); in dk/dv, whose rows are keys, lanes ``l ^ 4k`` do
(:meth:`_MmaKernel.column_multipliers`: a 4 x 4 transpose of words by 3 shuffles).

Element types: bf16 and f16 (the mma's type).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith, gpu, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    BFloat16Type,
    DictionaryAttr,
    Float16Type,
    IndexType,
    MemRefType,
    f32,
    i1,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.ir_builder import Builder, ConstantPool, Index
from picograd.passes.kinds import attention

# matmul's modules import picograd.passes.schedule, which imports this one: their helpers are imported where used


def swizzle(b: Builder, row: Index, chunk: Index, chunks_per_row: int) -> Index:
    """``matmul_mma_sync.swizzle``: the physical 16-byte chunk of logical ``chunk`` in tile row ``row``."""
    from picograd.passes.kinds.matmul_mma_sync import swizzle as matmul_swizzle

    return matmul_swizzle(b, row, chunk, chunks_per_row)


STRATEGY = attention.MMA_STRATEGY
"""The schedule strategy of 16-bit attention kernels on tensor cores."""

WARPS = 4
"""Warps a block; each computes 16 query rows."""
BLOCK_M = 16 * WARPS
"""Query rows a block of the forward."""
BLOCK_N = 64
"""Keys a shared K/V tile of the forward."""
MAX_HEAD_DIM = 128
"""The largest head dim (of q/k and of v) the schedule takes: its output rows stay in registers."""
WARP = gpu_ext.WARP_SIZE
LOG2E = 1.0 / math.log(2.0)
DQ_BLOCK_N = 32
"""Keys a shared K/V tile of the dq kernel (at most ``mma_block_n``; S, dP and dq in registers)."""
DKDV_BLOCK_M = 16
"""Queries a shared Q/dO tile of the dk/dv kernel (dk and dv in registers; K and V tiles in shared memory)."""
CHUNK = 8
"""16-bit elements of one 16-byte ``cp.async`` chunk and ``ldmatrix`` row."""


def runs(query: Sequence[int], value: Sequence[int], element: Attribute) -> bool:
    """Whether the ``flash-mma`` schedule computes attention of ``query`` (*B, L, d) and ``value`` (*B, S, ev)
    shapes on ``element``: bf16/f16, d and ev multiples of 16 up to :data:`MAX_HEAD_DIM`."""
    d, ev = query[-1], value[-1]
    return pg.is_low_precision(element) and all(n % 16 == 0 and 0 < n <= MAX_HEAD_DIM for n in (d, ev))


def schedule(k: kernel.FusedOp | kernel.LaunchOp, options: object = None) -> ScheduleAttr:
    """The schedule of an attention kernel: ``flash-mma`` (the ``flash`` sizes, which nests it does not build
    use, plus ``block_m``/``block_n`` of the tensor-core forward as ``mma_block_m``/``mma_block_n``) where
    :func:`runs`, else :func:`attention.schedule`."""
    flash = attention.schedule(k, options)
    ops = [o for o in k.body.block.ops if isinstance(o, attention.ATTENTION_OPS)]
    main = ops[0]
    assert isinstance(main, pg.ScaledDotProductAttentionOp | pg.AttentionLseOp | pg.AttentionBackwardOp)
    value = main.query
    for o in ops:
        if isinstance(o, pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp):
            value = o.value
    if not runs(shape_of(main.query), shape_of(value), element_of(main.query)):
        return flash
    sizes = {name: flash.count(name) for name in ("lanes", "block_m", "block_n", "bwd_block_m", "bwd_block_n")}
    return ScheduleAttr(STRATEGY, {**sizes, "mma_block_m": BLOCK_M, "mma_block_n": BLOCK_N})


def build_launch(par: scf.ParallelOp) -> None:
    """Replace the attention nest ``par`` under ``flash-mma`` by its ``gpu.launch`` (the forward on tensor cores;
    the other nests, and operands not 16-byte aligned, by the ``flash`` kernels). Raises ``ValueError`` for a nest
    this kind did not make."""
    info = par.attributes[attention.ATTENTION_ATTR]
    s = par.attributes.get("kernel.schedule")
    if not isinstance(info, DictionaryAttr) or not isinstance(s, ScheduleAttr) or s.strategy.data != STRATEGY:
        raise ValueError(f"an attention nest needs pg.attention and a {STRATEGY} schedule")
    from picograd.passes.kinds.matmul import aligned16

    buffers = attention.nest_buffers(par)
    nest = info.data["nest"].data  # type: ignore[attr-defined]
    tiled = {
        "forward": ("q", "k", "v", "out"),
        "dq": ("q", "k", "v", "dout", "dq"),
        "dkdv": ("q", "k", "v", "dout", "dk", "dv"),
    }
    if nest not in tiled or not all(r in buffers and aligned16(buffers[r]) for r in tiled[nest]):
        attention.build_launch(par, simt=True)
        return
    k = _MmaKernel(par, info, buffers, s)
    attention.replace_nest(par, k.build(), k.host_consts)


def _shape(buf: SSAValue) -> tuple[int, ...]:
    t = buf.type
    assert isinstance(t, MemRefType)
    return tuple(t.get_shape())


class _Tile:
    """A ``rows x cols`` 16-bit tile in shared memory, rows of swizzled 16-byte chunks, flat (one index)."""

    def __init__(self, b: Builder, element: Attribute, rows: int, cols: int):
        self.rows, self.cols, self.cpr = rows, cols, cols // CHUNK
        self.smem = b.v(gpu_ext.WorkgroupAllocOp(element, [rows * cols]))

    def place(self, b: Builder, row: Index, col: Index, row_step: int = 0) -> SSAValue:
        """The flat index of element (``row + row_step``, ``col``), ``col`` a multiple of 8 and ``row_step`` of 8
        (a constant added last, which leaves the swizzle alone)."""
        chunk = swizzle(b, row, b.div(col, CHUNK), self.cpr)
        return b.idx(b.add(b.add(b.mul(row, self.cols), b.mul(chunk, CHUNK)), row_step * self.cols))


class _MmaKernel:
    """Builds the ``gpu.launch`` of an attention nest under ``flash-mma`` (see the module docstring)."""

    def __init__(self, par: scf.ParallelOp, info: DictionaryAttr, buffers: dict[str, SSAValue], s: ScheduleAttr):
        self.par, self.buf = par, buffers
        self.nest = info.data["nest"].data  # type: ignore[attr-defined]
        self.dropout = attention.dropout_slice(par)
        self.loc = par.location
        self.scale = float(info.data["scale"].value.data)  # type: ignore[attr-defined]
        self.causal = "causal" in info.data
        *self.batch, self.length, self.d = _shape(buffers["q"])
        self.keys, self.ev = _shape(buffers["v"])[-2:]
        self.element = MemRefType.get_element_type(buffers["q"].type)  # type: ignore[arg-type]
        assert isinstance(self.element, BFloat16Type | Float16Type)
        self.mma = "bf16" if isinstance(self.element, BFloat16Type) else "f16"
        self.bm, self.bn = s.count("mma_block_m"), s.count("mma_block_n")
        self.threads = WARPS * WARP
        self.body = Block(arg_types=[IndexType()] * 12)
        self.body.add_op(gpu.TerminatorOp())
        self.b = Builder(self.body, self.loc, ConstantPool(self.body))
        self.host_consts: list[Operation] = []

    # --- helpers ------------------------------------------------------------------------------------------------

    def f(self, x: float) -> SSAValue:
        return self.b.const(x, f32)

    def copy(self, b: Builder, t: _Tile, src: SSAValue, batch: Sequence[Index], row0: Index, extent: int) -> None:
        """``cp.async`` of rows ``row0 ..`` of ``src[*batch]`` into ``t`` (rows past ``extent``: zero-filled, read
        from a clamped address), 16 bytes a copy, the block's threads taking consecutive chunks. ``row0`` is a
        multiple of the tile's rows below ``extent`` (so when ``t.rows`` divides ``extent`` no row is past it)."""
        o = self.b  # the thread's chunk coordinates are loop-invariant
        chunks = t.rows * t.cpr
        for r in range(-(-chunks // self.threads)):
            c = o.add(self.tid, r * self.threads)
            row, ch = o.div(c, t.cpr), o.rem(c, t.cpr)
            col = o.idx(o.mul(ch, CHUNK))
            dst = o.idx(o.add(o.mul(row, t.cols), o.mul(swizzle(o, row, ch, t.cpr), CHUNK)))
            # (everything of the top level is made before the scf.if, which may be at the top level too)
            cb = b.when(o.lt(c, chunks)) if (r + 1) * self.threads > chunks else b
            if cb is None:
                continue
            g = cb.add(row0, row)
            if extent % t.rows == 0:  # row0 is a multiple of the tile's rows below extent: the tile is inside
                src_idx = [cb.idx(x) for x in (*batch, g)] + [col]
                cb.op(gpu_ext.AsyncCopyOp(src, src_idx, t.smem, [dst], CHUNK, cb.idx(CHUNK)))
                continue
            ok = cb.lt(g, extent)
            src_idx = [cb.idx(x) for x in (*batch, cb.min(g, extent - 1))] + [col]
            valid = cb.v(arith.SelectOp(ok, cb.idx(CHUNK), cb.idx(0))) if not isinstance(ok, bool) else cb.idx(CHUNK)
            cb.op(gpu_ext.AsyncCopyOp(src, src_idx, t.smem, [dst], CHUNK, valid))

    def ldmatrix(self, b: Builder, t: _Tile, place: SSAValue, trans: bool) -> list[SSAValue]:
        return list(b.op(gpu_ext.LdMatrixOp(t.smem, [place], 4, trans)).results)

    def rows_k(self, t: _Tile, row0: int, kk: int) -> SSAValue:
        """Where this lane's ``ldmatrix.x4`` row is for the A fragment of rows ``row0 ..`` (+ the warp's rows) and
        K step ``kk`` of a tile stored K-contiguous (Q): matrices (m, k), (m + 8, k), (m, k + 8), (m + 8, k + 8)."""
        o, lane = self.b, self.lane
        j = o.div(lane, 8)
        row = o.add(o.add(self.wrow, o.rem(lane, 8)), o.mul(o.rem(j, 2), 8))
        return t.place(o, row, o.add(kk, o.mul(o.div(j, 2), 8)), row0)

    def cols_k(self, t: _Tile, n0: int, kk: int) -> SSAValue:
        """Where this lane's row is for the B fragments of n8 tiles ``n0``, ``n0 + 8`` at K step ``kk`` of a tile
        whose rows are N and columns K (K for S = Q K^T): matrices (n, k), (n, k + 8), (n + 8, k), (n + 8, k + 8)."""
        o, lane = self.b, self.lane
        j = o.div(lane, 8)
        row = o.add(o.rem(lane, 8), o.mul(o.div(j, 2), 8))
        return t.place(o, row, o.add(kk, o.mul(o.rem(j, 2), 8)), n0)

    def rows_n(self, t: _Tile, n0: int, kk: int) -> SSAValue:
        """Where this lane's row is for the B fragments (``.trans``) of n8 tiles ``n0``, ``n0 + 8`` at K step ``kk``
        of a tile whose rows are K and columns N (V for O = P V)."""
        o, lane = self.b, self.lane
        j = o.div(lane, 8)
        row = o.add(o.rem(lane, 8), o.mul(o.rem(j, 2), 8))
        return t.place(o, row, o.add(n0, o.mul(o.div(j, 2), 8)), kk)

    def mma_at(self, b: Builder, a: Sequence[SSAValue], frag: Sequence[SSAValue], acc: list[SSAValue], nt: int):
        """``acc``'s n8 tile ``nt`` += A B (``frag``: the tile's two B registers)."""
        base = nt * 4
        mma = b.op(gpu_ext.MmaSyncOp("m16n8k16", self.mma, list(a), list(frag), acc[base : base + 4]))
        acc[base : base + 4] = list(mma.results)

    def times_bt(self, b: Builder, a: Sequence[Sequence[SSAValue]], t: _Tile, n: int, k: int, acc: list[SSAValue]):
        """``acc`` (16 x ``n``) += A (16 x ``k``, fragments ``a`` by K step) B^T, B the ``n x k`` tile ``t``."""
        for kk in range(0, k, 16):
            for n0 in range(0, n, 16):
                frag = self.ldmatrix(b, t, self.cols_k(t, n0, kk), False)
                self.mma_at(b, a[kk // 16], frag[0:2], acc, n0 // 8)
                self.mma_at(b, a[kk // 16], frag[2:4], acc, n0 // 8 + 1)

    def times_b(self, b: Builder, a: Sequence[Sequence[SSAValue]], t: _Tile, n: int, k: int, acc: list[SSAValue]):
        """``acc`` (16 x ``n``) += A (16 x ``k``) B, B the ``k x n`` tile ``t`` (``ldmatrix.trans``)."""
        for ks in range(k // 16):
            for e0 in range(0, n, 16):
                frag = self.ldmatrix(b, t, self.rows_n(t, e0, ks * 16), True)
                self.mma_at(b, a[ks], frag[0:2], acc, e0 // 8)
                self.mma_at(b, a[ks], frag[2:4], acc, e0 // 8 + 1)

    def a_frags(self, b: Builder, c: Sequence[SSAValue]) -> list[list[SSAValue]]:
        """Accumulators ``c`` (16 x n, n8 tiles) rounded and packed as the A fragments of the K steps of 16: those
        of n8 tiles 2ks and 2ks + 1 are the A layout of K step ks."""
        out = []
        for ks in range(len(c) // 8):
            c0, c1 = c[8 * ks : 8 * ks + 4], c[8 * ks + 4 : 8 * ks + 8]
            out.append([self.pack(b, c0[0], c0[1]), self.pack(b, c0[2], c0[3]),
                        self.pack(b, c1[0], c1[1]), self.pack(b, c1[2], c1[3])])  # fmt: skip
        return out

    def a_tile(self, b: Builder, t: _Tile, k: int) -> list[list[SSAValue]]:
        """The warp's A fragments (its 16 rows) of the ``rows x k`` tile ``t``, by K step."""
        return [self.ldmatrix(b, t, self.rows_k(t, 0, kk), False) for kk in range(0, k, 16)]

    def store_rows(self, b: Builder, acc: Sequence[SSAValue], buf: SSAValue, rows: list[Index], extent: int,
                   factor: float = 1.0) -> None:  # fmt: skip
        """``acc`` (16 x n a warp; this thread: rows ``rows``) times ``factor`` rounded to ``buf``'s type, two
        columns a store, rows below ``extent``."""
        el = MemRefType.get_element_type(buf.type)  # type: ignore[arg-type]
        for h in range(2):
            sb = b.when(b.lt(rows[h], extent))
            if sb is None:
                continue
            for nt in range(len(acc) // 4):
                vals = []
                for c in range(2):
                    x = acc[nt * 4 + 2 * h + c]
                    if factor != 1.0:
                        x = sb.v(arith.MulfOp(x, self.f(factor)))
                    vals.append(sb.v(arith.TruncFOp(x, el)))
                e = sb.add(sb.mul(self.t, 2), nt * 8)
                sb.op(gpu_ext.VectorStoreOp(vals, buf, [sb.idx(x) for x in (*self.batch_idx, rows[h], e)]))

    def row_stat(self, b: Builder, buf: SSAValue, i: Index, lse: bool) -> SSAValue:
        """``buf[*batch, i]`` (f32; ``i`` clamped into the queries): ``lse`` in log2 units with ``-inf`` (a row with
        every key masked) as 0, or ``D``."""
        x = b.load(buf, [*self.batch_idx, b.min(i, self.length - 1)])
        if not lse:
            return x
        x = b.select(b.v(arith.CmpfOp(x, self.f(-math.inf), "oeq")), self.f(0.0), x)
        return b.v(arith.MulfOp(x, self.f(LOG2E)))

    def dropped(self, b: Builder, x: SSAValue, row: Index, loop: Index, rows: int, loops: int) -> SSAValue:
        """``x`` times the dropout multiplier at the nest's parallel index ``row`` and loop index ``loop`` (clamped
        into ``rows`` and ``loops``), regenerated by Philox (``attention.regenerate``); ``x`` without dropout."""
        if self.dropout is None:
            return x
        z = attention.regenerate(b, self.dropout, self.batch_idx, b.min(row, rows - 1), b.min(loop, loops - 1))
        return b.v(arith.MulfOp(x, z))

    def row_multipliers(self, b: Builder, row: Index, j0: Index, tiles: int) -> list[SSAValue]:
        """The dropout multipliers (:class:`attention.SharedDraw`) of query ``row`` (clamped) at keys
        ``j0 + 8 nt + 2t + cc`` (this thread's columns of n8 tiles ``nt < tiles``), at ``2 nt + cc``. Keys
        ``4c .. 4c + 3`` share a Philox counter and lanes ``t`` and ``t ^ 1`` hold them: of each pair of n8 tiles the
        even lane draws the first tile's counter and the odd lane the second's, and each hands the other the two
        words it needs (one ``shfl.xor`` a word): one Philox call per 4 elements."""
        assert self.shared is not None and tiles % 2 == 0
        t = self.t
        odd_i = b.rem(t, 2)
        odd = b.cmp("ne", odd_i, 0)
        lin_row = b.mul(b.add(b.mul(self.by, self.length), b.min(row, self.length - 1)), self.keys)
        out: list[SSAValue] = []
        for nt in range(0, tiles, 2):
            # this lane's counter: tile nt + (t & 1), keys from 8 (nt + (t & 1)) + 2 (t & ~1), a multiple of 4
            col = b.add(b.add(j0, 8 * nt), b.add(b.mul(odd_i, 8), b.mul(b.div(t, 2), 4)))
            w = self.shared.words(b, b.add(lin_row, col))
            send = [b.select(odd, w[0], w[2]), b.select(odd, w[1], w[3])]
            got = [b.v(gpu_ext.ShuffleOp(x, "xor", 1)) for x in send]
            mine = [b.select(odd, w[2], w[0]), b.select(odd, w[3], w[1])]
            first = [b.select(odd, g, m) for g, m in zip(got, mine, strict=True)]
            second = [b.select(odd, m, g) for g, m in zip(got, mine, strict=True)]
            out += [self.shared.multiplier(b, x) for x in (*first, *second)]
        return out

    def column_multipliers(self, b: Builder, keys: list[Index], i0: Index, tiles: int) -> dict[tuple, SSAValue]:
        """The dk/dv kernel's dropout multipliers (:class:`attention.SharedDraw`) at key ``keys[h]`` and query
        ``i0 + 8 nt + 2t + cc``, by ``(nt, cc, h)``. Keys ``4c .. 4c + 3`` of one query share a counter and lanes
        ``l, l ^ 4, l ^ 8, l ^ 12`` (rows ``g`` with one ``g // 4``) hold them: of the 4 counters of this lane's
        (h, cc) the lane with ``g % 4 = r`` draws the ``r``-th and the 4 lanes swap words (3 ``shfl.xor``)."""
        assert self.shared is not None
        r = b.rem(b.div(self.lane, 4), 4)
        is_r = [b.cmp("eq", r, n) for n in range(1, 4)]

        def pick(ws: Sequence[SSAValue], sel: Sequence[SSAValue | bool]) -> SSAValue:
            """``ws[n]`` where ``sel[n - 1]`` holds (``ws[0]`` where none does)."""
            x = ws[0]
            for n in range(1, 4):
                x = b.select(sel[n - 1], ws[n], x)
            return x

        out: dict[tuple, SSAValue] = {}
        lane_h, lane_cc = b.div(r, 2), b.rem(r, 2)
        own_key = b.add(b.mul(b.div(keys[0], 4), 4), b.mul(lane_h, 8))  # the first key of counter r's group
        for nt in range(tiles):
            i = b.min(b.add(i0, b.add(b.mul(self.t, 2), b.add(8 * nt, lane_cc))), self.length - 1)
            w = self.shared.words(b, b.add(b.mul(b.add(b.mul(self.by, self.length), i), self.keys), own_key))
            # got[k]: word r of counter r ^ k (its lane is this one ^ 4k, which sends word r of its own counter)
            got = [pick(w, is_r)]
            for k in range(1, 4):
                got.append(b.v(gpu_ext.ShuffleOp(pick([w[n ^ k] for n in range(4)], is_r), "xor", 4 * k)))
            for q in range(4):  # this lane's element (h, cc) = (q // 2, q % 2) draws word r of counter q
                out[nt, q % 2, q // 2] = self.shared.multiplier(b, pick([got[n ^ q] for n in range(4)], is_r))
        return out

    def pack(self, b: Builder, lo: SSAValue, hi: SSAValue) -> SSAValue:
        """Two f32 rounded to the mma's 16-bit type, packed into one ``i32`` fragment register (``lo`` in the low
        half: the lower column; ``cvt.rn.bf16x2.f32``)."""
        return b.v(gpu_ext.PackHalfOp(lo, hi, self.mma))

    def quad(self, b: Builder, x: SSAValue, op: type[arith.MaximumfOp] | type[arith.AddfOp]) -> SSAValue:
        """``op`` of ``x`` over the 4 lanes of this lane's quad (they hold one row's columns)."""
        for off in (1, 2):
            x = b.v(op(x, b.v(gpu_ext.ShuffleOp(x, "xor", off))))
        return x

    def masked(self, b: Builder, s: SSAValue, batch: Sequence[Index], i: Index, j: Index) -> SSAValue:
        """Score ``s`` (scaled, in log2 units) of query ``i`` and key ``j`` (unclamped) with the masks: ``-inf`` past
        the keys, above the diagonal (causal) and where the user's mask says so (a float mask is added, times
        log2(e))."""
        ninf = self.f(-math.inf)
        valid: SSAValue | bool = b.lt(j, self.keys) if self.keys % self.bn else True
        if self.nest == "dkdv":  # the query tile's rows past the queries
            valid = b.lt(i, self.length)
        if self.causal:
            valid = b.both(valid, b.cmp("ule", j, i))
        mask = self.buf.get("mask")
        if mask is not None:
            shape = _shape(mask)
            ic, jc = b.min(i, self.length - 1), b.min(j, self.keys - 1)
            full = [*batch, ic, jc][len(batch) + 2 - len(shape) :]
            m = b.load(mask, [0 if n == 1 else x for x, n in zip(full, shape, strict=True)])
            if MemRefType.get_element_type(mask.type) == i1:  # type: ignore[arg-type]
                s = b.select(m, s, ninf)
            else:
                m32 = b.v(arith.ExtFOp(m, f32)) if m.type != f32 else m
                s = b.v(arith.AddfOp(s, b.v(arith.MulfOp(m32, self.f(LOG2E)))))
        return b.select(valid, s, ninf)

    def exp2(self, b: Builder, x: SSAValue) -> SSAValue:
        """``2**x`` by ``ex2.approx`` (the softmax's exponentials, as FlashAttention computes them)."""
        return b.v(mathd.Exp2Op(x, arith.FastMathFlagsAttr([arith.FastMathFlag.APPROX_FUNC])))

    # --- the kernel ---------------------------------------------------------------------------------------------

    def build(self) -> gpu.LaunchOp:
        b = self.b
        bx, by, _, tid = (b.v(arith.IndexCastOp(a, i32)) for a in self.body.args[:4])
        self.tid = tid
        batch: list[Index] = []
        rest: Index = by
        for n in reversed(self.batch):
            batch.insert(0, b.rem(rest, n) if n > 1 else 0)
            rest = b.div(rest, n)
        self.lane = b.rem(tid, WARP)
        self.wrow = b.mul(b.div(tid, WARP), 16)
        self.batch_idx = batch
        self.t = b.rem(self.lane, 4)
        self.by = by
        elements = math.prod(self.batch) * self.length * self.keys
        self.shared = None
        if self.dropout is not None and self.keys % 4 == 0:
            self.shared = attention.SharedDraw.make(b, self.dropout, elements)
        {"forward": self.forward, "dq": self.dq, "dkdv": self.dkdv}[self.nest](bx, batch)
        extent = self.keys if self.nest == "dkdv" else self.length
        grid = [-(-extent // self.bm), math.prod(self.batch), 1]
        self.host_consts, launch = attention.wrap_launch(
            self.par, self.body, grid, self.threads, f"{STRATEGY}-{self.nest}"
        )
        return launch

    def forward(self, bx: SSAValue, batch: list[Index]) -> None:
        b, d, ev, bm, bn = self.b, self.d, self.ev, self.bm, self.bn
        q, k = self.buf["q"], self.buf["k"]
        row0 = b.mul(bx, bm)
        self.qt, self.kt, self.vt = (_Tile(b, self.element, r, c) for r, c in ((bm, d), (bn, d), (bn, ev)))
        n = -(-self.keys // bn)
        n_tiles: Index = n
        n_full: Index = self.keys // bn  # tiles needing no mask: within the keys, below the diagonal, no user mask
        if self.causal:  # keys j <= the block's last row; unmasked: j <= its first row
            n_tiles = b.min(b.add(b.div(b.add(row0, bm - 1), bn), 1), n)
            n_full = b.min(b.div(b.add(row0, 1), bn), self.keys // bn)
        if "mask" in self.buf:
            n_full = 0
        # Prologue: the Q tile and K tile 0; each warp's Q fragments into registers.
        self.copy(b, self.qt, q, batch, row0, self.length)
        self.copy(b, self.kt, k, batch, 0, self.keys)
        b.op(gpu_ext.AsyncCommitOp())
        b.op(gpu_ext.AsyncWaitOp(0))
        b.op(gpu.BarrierOp())
        self.qa = [self.ldmatrix(b, self.qt, self.rows_k(self.qt, 0, kk), False) for kk in range(0, d, 16)]
        g, t = b.div(self.lane, 4), b.rem(self.lane, 4)
        self.t = t
        rows = [b.add(row0, b.add(self.wrow, b.add(g, 8 * h))) for h in range(2)]
        ninf, zero = self.f(-math.inf), self.f(0.0)
        state = [ninf, ninf, zero, zero, *([zero] * (ev // 8 * 4))]
        state = self.key_loop(b, 0, n_full, state, batch, rows, masked=False)
        if not (isinstance(n_full, int) and isinstance(n_tiles, int) and n_full == n_tiles):
            state = self.key_loop(b, n_full, n_tiles, state, batch, rows, masked=True)
        b.op(gpu_ext.AsyncWaitOp(0))  # no copy may land after the block exits
        self.store(b, batch, rows, t, state[0:2], state[2:4], state[4:])

    def key_loop(
        self, b: Builder, lo: Index, hi: Index, state: Sequence[SSAValue], batch: list[Index], rows: list[Index],
        masked: bool,
    ) -> list[SSAValue]:  # fmt: skip
        """The ``scf.for`` over key tiles ``lo .. hi`` carrying the row maxima ``m`` (log2 units), this thread's
        partial row sums ``l`` and the output accumulators; ``masked``: apply the masks (the tiles on the causal
        diagonal, past the keys, or under a user mask)."""
        d, ev, bn, t = self.d, self.ev, self.bn, self.t
        v, k = self.buf["v"], self.buf["k"]
        ninf, zero = self.f(-math.inf), self.f(0.0)
        c = self.f(self.scale * LOG2E)
        body = Block(arg_types=[IndexType(), *(x.type for x in state)])
        lb = b.at(body)
        body.add_op(scf.YieldOp(*body.args[1:]))
        kt = lb.v(arith.IndexCastOp(body.args[0], i32))
        m_old: list[SSAValue] = list(body.args[1:3])
        l_old: list[SSAValue] = list(body.args[3:5])
        acc: list[SSAValue] = list(body.args[5:])
        j0 = lb.mul(kt, bn)
        lb.op(gpu.BarrierOp())  # every warp is done with the previous V tile
        self.copy(lb, self.vt, v, self.batch_idx, j0, self.keys)
        lb.op(gpu_ext.AsyncCommitOp())
        lb.op(gpu_ext.AsyncWaitOp(1))  # this K tile has landed (the V tile may be in flight)
        lb.op(gpu.BarrierOp())
        # S = Q K^T: n8 tiles of keys, 4 accumulators each
        s_acc = [zero] * (bn // 8 * 4)
        for kk in range(0, d, 16):
            for n0 in range(0, bn, 16):
                frag = self.ldmatrix(lb, self.kt, self.cols_k(self.kt, n0, kk), False)
                for half in range(2):
                    base = (n0 // 8 + half) * 4
                    mma = lb.op(gpu_ext.MmaSyncOp("m16n8k16", self.mma, self.qa[kk // 16],
                                                  frag[2 * half : 2 * half + 2], s_acc[base : base + 4]))  # fmt: skip
                    s_acc[base : base + 4] = list(mma.results)
        # online softmax in log2 units (rows g and g + 8 of the warp's 16): x = S scale log2(e); with a positive
        # scale and no float mask the maximum is taken on S and p = 2**fma(S, scale log2(e), -m)
        mask = self.buf.get("mask")
        raw = self.scale > 0 and (mask is None or MemRefType.get_element_type(mask.type) == i1)  # type: ignore[arg-type]
        p = [zero] * len(s_acc)
        m_new, l_new, alpha = [], [], []
        for h in range(2):
            vals = []
            for nt in range(bn // 8):
                for cc in range(2):
                    x = s_acc[nt * 4 + 2 * h + cc]
                    if not raw:
                        x = lb.v(arith.MulfOp(x, c))
                    if masked:
                        j = lb.add(j0, lb.add(lb.mul(t, 2), nt * 8 + cc))
                        x = self.masked(lb, x, batch, rows[h], j)
                    vals.append((nt * 4 + 2 * h + cc, x))
            mx = vals[0][1]
            for _, x in vals[1:]:
                mx = lb.v(arith.MaximumfOp(mx, x))
            mx = self.quad(lb, mx, arith.MaximumfOp)
            if raw:
                mx = lb.v(arith.MulfOp(mx, c))
            mn = lb.v(arith.MaximumfOp(m_old[h], mx))
            mu = lb.v(arith.SelectOp(lb.v(arith.CmpfOp(mn, ninf, "oeq")), zero, mn)) if masked else mn
            a = self.exp2(lb, lb.v(arith.SubfOp(m_old[h], mu)))
            total = lb.v(arith.MulfOp(l_old[h], a))
            neg = lb.v(arith.NegfOp(mu))
            for idx, x in vals:
                e = lb.v(mathd.FmaOp(x, c, neg)) if raw else lb.v(arith.SubfOp(x, mu))
                p[idx] = self.exp2(lb, e)
                total = lb.v(arith.AddfOp(total, p[idx]))
            m_new.append(mn)
            l_new.append(total)
            alpha.append(a)
        acc = [lb.v(arith.MulfOp(x, alpha[(i % 4) // 2])) for i, x in enumerate(acc)]
        if self.shared is not None:  # the normalizer l excludes the dropout, P V includes it
            for h in range(2):
                z = self.row_multipliers(lb, rows[h], j0, bn // 8)
                for nt in range(bn // 8):
                    for cc in range(2):
                        p[nt * 4 + 2 * h + cc] = lb.v(arith.MulfOp(p[nt * 4 + 2 * h + cc], z[2 * nt + cc]))
        elif self.dropout is not None:
            for idx in range(len(p)):
                j = lb.add(j0, lb.add(lb.mul(t, 2), (idx // 4) * 8 + idx % 2))
                p[idx] = self.dropped(lb, p[idx], rows[(idx % 4) // 2], j, self.length, self.keys)
        # P as A fragments: the accumulators of n8 tiles 2ks, 2ks + 1 are the A layout of K step ks
        pa = []
        for ks in range(bn // 16):
            c0, c1 = p[8 * ks : 8 * ks + 4], p[8 * ks + 4 : 8 * ks + 8]
            pa.append([self.pack(lb, c0[0], c0[1]), self.pack(lb, c0[2], c0[3]),
                       self.pack(lb, c1[0], c1[1]), self.pack(lb, c1[2], c1[3])])  # fmt: skip
        lb.op(gpu_ext.AsyncWaitOp(0))  # the V tile has landed
        lb.op(gpu.BarrierOp())  # and every warp is done with the K tile
        nxt = lb.add(j0, bn)  # past the last tile: zeros nobody reads, or the last tile again
        self.copy(
            lb, self.kt, k, self.batch_idx, lb.min(nxt, self.keys - bn) if self.keys % bn == 0 else nxt, self.keys
        )
        lb.op(gpu_ext.AsyncCommitOp())
        # O += P V
        for ks in range(bn // 16):
            for e0 in range(0, ev, 16):
                frag = self.ldmatrix(lb, self.vt, self.rows_n(self.vt, e0, ks * 16), True)
                for half in range(2):
                    base = (e0 // 8 + half) * 4
                    mma = lb.op(gpu_ext.MmaSyncOp("m16n8k16", self.mma, pa[ks], frag[2 * half : 2 * half + 2],
                                                  acc[base : base + 4]))  # fmt: skip
                    acc[base : base + 4] = list(mma.results)
        body.last_op.operands = [*m_new, *l_new, *acc]  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(lo), b.idx(hi), b.idx(1), list(state), Region(body))
        b.op(loop)
        return list(loop.results)

    def dq(self, bx: SSAValue, batch: list[Index]) -> None:
        """dq (Algorithm 2's dq, as a separate kernel): per key tile S = Q K^T, P = exp(S - lse), dP = dO V^T,
        dS = P (dP - D), dq += dS K (K and V tiles through shared memory; Q and dO fragments in registers)."""
        b, d, ev, bm = self.b, self.d, self.ev, self.bm
        bn = self.bn = min(self.bn, DQ_BLOCK_N)
        q, k, v, dout = self.buf["q"], self.buf["k"], self.buf["v"], self.buf["dout"]
        row0 = b.mul(bx, bm)
        qt, dot, kt_, vt = (_Tile(b, self.element, r, c) for r, c in ((bm, d), (bm, ev), (bn, d), (bn, ev)))
        self.copy(b, qt, q, batch, row0, self.length)
        self.copy(b, dot, dout, batch, row0, self.length)
        b.op(gpu_ext.AsyncCommitOp())
        b.op(gpu_ext.AsyncWaitOp(0))
        b.op(gpu.BarrierOp())
        qa, doa = self.a_tile(b, qt, d), self.a_tile(b, dot, ev)
        g, t = b.div(self.lane, 4), self.t
        rows = [b.add(row0, b.add(self.wrow, b.add(g, 8 * h))) for h in range(2)]
        lse2 = [self.row_stat(b, self.buf["lse"], r, True) for r in rows]
        dsum = [self.row_stat(b, self.buf["dsum"], r, False) for r in rows]
        n = -(-self.keys // bn)
        n_tiles: Index = b.min(b.add(b.div(b.add(row0, bm - 1), bn), 1), n) if self.causal else n
        masked = self.causal or "mask" in self.buf or self.keys % bn != 0
        zero, c = self.f(0.0), self.f(self.scale * LOG2E)
        body = Block(arg_types=[IndexType(), *([f32] * (d // 8 * 4))])
        lb = b.at(body)
        body.add_op(scf.YieldOp(*body.args[1:]))
        kt = lb.v(arith.IndexCastOp(body.args[0], i32))
        acc: list[SSAValue] = list(body.args[1:])
        j0 = lb.mul(kt, bn)
        lb.op(gpu.BarrierOp())  # every warp is done with the previous tiles
        self.copy(lb, kt_, k, batch, j0, self.keys)
        self.copy(lb, vt, v, batch, j0, self.keys)
        lb.op(gpu_ext.AsyncCommitOp())
        lb.op(gpu_ext.AsyncWaitOp(0))
        lb.op(gpu.BarrierOp())
        s_acc, dp = [zero] * (bn // 8 * 4), [zero] * (bn // 8 * 4)
        self.times_bt(lb, qa, kt_, bn, d, s_acc)
        self.times_bt(lb, doa, vt, bn, ev, dp)
        ds = [zero] * len(s_acc)
        if self.shared is not None:
            for h in range(2):
                z = self.row_multipliers(lb, rows[h], j0, bn // 8)
                for nt in range(bn // 8):
                    for cc in range(2):
                        dp[nt * 4 + 2 * h + cc] = lb.v(arith.MulfOp(dp[nt * 4 + 2 * h + cc], z[2 * nt + cc]))
        for idx in range(len(s_acc)):
            nt, h, cc = idx // 4, (idx % 4) // 2, idx % 2
            x = lb.v(arith.MulfOp(s_acc[idx], c))
            if masked:
                x = self.masked(lb, x, batch, rows[h], lb.add(j0, lb.add(lb.mul(t, 2), nt * 8 + cc)))
            p = self.exp2(lb, lb.v(arith.SubfOp(x, lse2[h])))
            j = lb.add(j0, lb.add(lb.mul(t, 2), nt * 8 + cc))
            dpz = dp[idx] if self.shared is not None else self.dropped(lb, dp[idx], rows[h], j, self.length, self.keys)
            ds[idx] = lb.v(arith.MulfOp(p, lb.v(arith.SubfOp(dpz, dsum[h]))))
        self.times_b(lb, self.a_frags(lb, ds), kt_, d, bn, acc)
        body.last_op.operands = acc  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(0), b.idx(n_tiles), b.idx(1), [zero] * len(acc), Region(body))
        b.op(loop)
        self.store_rows(b, list(loop.results), self.buf["dq"], rows, self.length, self.scale)

    def dkdv(self, bx: SSAValue, batch: list[Index]) -> None:
        """dk and dv (Algorithm 2's outer loop): ``BLOCK_M`` keys a block (16 a warp), K and V tiles in shared
        memory; per query tile of ``DKDV_BLOCK_M``: S^T = K Q^T, P^T = exp(S^T - lse), dv += P^T dO,
        dP^T = V dO^T, dS^T = P^T (dP^T - D), dk += dS^T Q (causal: query tiles before the block's first key
        skipped)."""
        b, d, ev, bm, bq = self.b, self.d, self.ev, self.bm, DKDV_BLOCK_M
        q, k, v, dout = self.buf["q"], self.buf["k"], self.buf["v"], self.buf["dout"]
        key0 = b.mul(bx, bm)
        kt_, vt, qt, dot = (_Tile(b, self.element, r, c) for r, c in ((bm, d), (bm, ev), (bq, d), (bq, ev)))
        self.copy(b, kt_, k, batch, key0, self.keys)
        self.copy(b, vt, v, batch, key0, self.keys)
        b.op(gpu_ext.AsyncCommitOp())
        g, t = b.div(self.lane, 4), self.t
        keys = [b.add(key0, b.add(self.wrow, b.add(g, 8 * h))) for h in range(2)]
        n_tiles = -(-self.length // bq)
        first: Index = b.div(key0, bq) if self.causal else 0
        masked = self.causal or "mask" in self.buf or self.length % bq != 0
        zero, c = self.f(0.0), self.f(self.scale * LOG2E)
        n_acc = (d + ev) // 8 * 4
        body = Block(arg_types=[IndexType(), *([f32] * n_acc)])
        lb = b.at(body)
        body.add_op(scf.YieldOp(*body.args[1:]))
        it = lb.v(arith.IndexCastOp(body.args[0], i32))
        dk: list[SSAValue] = list(body.args[1 : 1 + d // 8 * 4])
        dv: list[SSAValue] = list(body.args[1 + d // 8 * 4 :])
        i0 = lb.mul(it, bq)
        lb.op(gpu.BarrierOp())  # every warp is done with the previous query tile
        self.copy(lb, qt, q, batch, i0, self.length)
        self.copy(lb, dot, dout, batch, i0, self.length)
        lb.op(gpu_ext.AsyncCommitOp())
        lb.op(gpu_ext.AsyncWaitOp(0))
        lb.op(gpu.BarrierOp())
        s_acc, dp = [zero] * (bq // 8 * 4), [zero] * (bq // 8 * 4)
        self.times_bt(lb, self.a_tile(lb, kt_, d), qt, bq, d, s_acc)
        self.times_bt(lb, self.a_tile(lb, vt, ev), dot, bq, ev, dp)
        p, ds = [zero] * len(s_acc), [zero] * len(s_acc)
        zs = self.column_multipliers(lb, keys, i0, bq // 8) if self.shared is not None else {}
        for nt in range(bq // 8):
            for cc in range(2):
                i = lb.add(i0, lb.add(lb.mul(t, 2), nt * 8 + cc))
                lse2 = self.row_stat(lb, self.buf["lse"], i, True)
                dsum = self.row_stat(lb, self.buf["dsum"], i, False)
                for h in range(2):
                    idx = nt * 4 + 2 * h + cc
                    x = lb.v(arith.MulfOp(s_acc[idx], c))
                    if masked:
                        x = self.masked(lb, x, batch, i, keys[h])
                    pr = self.exp2(lb, lb.v(arith.SubfOp(x, lse2)))
                    z = zs[nt, cc, h] if zs else self.dropped(lb, self.f(1.0), keys[h], i, self.keys, self.length)
                    dpz = lb.v(arith.MulfOp(dp[idx], z)) if self.dropout is not None else dp[idx]
                    ds[idx] = lb.v(arith.MulfOp(pr, lb.v(arith.SubfOp(dpz, dsum))))
                    p[idx] = lb.v(arith.MulfOp(pr, z)) if self.dropout is not None else pr
        self.times_b(lb, self.a_frags(lb, p), dot, ev, bq, dv)
        self.times_b(lb, self.a_frags(lb, ds), qt, d, bq, dk)
        body.last_op.operands = [*dk, *dv]  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(first), b.idx(n_tiles), b.idx(1), [zero] * n_acc, Region(body))
        b.op(loop)
        b.op(gpu_ext.AsyncWaitOp(0))  # the K and V tiles when no query tile was visited
        res = list(loop.results)
        self.store_rows(b, res[: d // 8 * 4], self.buf["dk"], keys, self.keys, self.scale)
        self.store_rows(b, res[d // 8 * 4 :], self.buf["dv"], keys, self.keys)

    def store(
        self, b: Builder, batch: list[Index], rows: list[Index], t: Index, m: Sequence[SSAValue],
        l_: Sequence[SSAValue], acc: Sequence[SSAValue],
    ) -> None:  # fmt: skip
        """``O / l`` rounded to the output type, two columns a store; ``lse`` by the quad's first lane."""
        out, lse = self.buf["out"], self.buf.get("lse")
        ninf, zero, one = self.f(-math.inf), self.f(0.0), self.f(1.0)
        for h in range(2):
            total = self.quad(b, l_[h], arith.AddfOp)
            sb = b.when(b.lt(rows[h], self.length))
            if sb is None:
                continue
            den = sb.v(arith.SelectOp(sb.v(arith.CmpfOp(total, zero, "oeq")), one, total))
            inv = sb.v(arith.DivfOp(one, den))
            for nt in range(self.ev // 8):
                vals = [sb.v(arith.TruncFOp(sb.v(arith.MulfOp(acc[nt * 4 + 2 * h + c], inv)), self.element))
                        for c in range(2)]  # fmt: skip
                e = sb.add(sb.mul(t, 2), nt * 8)
                sb.op(gpu_ext.VectorStoreOp(vals, out, [sb.idx(x) for x in (*batch, rows[h], e)]))
            if lse is not None:
                first = sb.when(sb.cmp("ult", t, 1))
                assert first is not None
                mu = first.v(arith.SelectOp(first.v(arith.CmpfOp(m[h], ninf, "oeq")), zero, m[h]))
                mu = first.v(arith.MulfOp(mu, self.f(math.log(2.0))))  # m is in log2 units
                first.store(first.v(arith.AddfOp(mu, first.v(mathd.LogOp(total)))), lse, [*batch, rows[h]])
