"""The ``flash-mma`` schedule of the ``attention`` kind: FlashAttention-2 (Dao 2023) for bf16/f16 on tensor cores
(``mma.sync.m16n8k16``, f32 accumulation, sm_80+), as FlashAttention-2's CUDA kernels do it.

``pg-schedule`` gives a 16-bit attention kernel this schedule (:func:`schedule`) when its head dims are multiples
of 16 up to 128 and it has no dropout; the others keep the SIMT ``flash`` schedule (computing in f32), whose sizes
this schedule also carries: ``pg-attention-schedule`` builds a nest this module does not (the backward nests, or
operands that are not 16-byte aligned) as ``flash`` (:func:`build_launch`).

**Forward** (Algorithm 1; the loop stage's ``forward`` nest, ``pg.attention``): a block of :data:`WARPS` warps
computes :data:`BLOCK_M` query rows (16 a warp), grid: query blocks x batch.

- **Shared memory.** The Q tile (``BLOCK_M x d``), one K tile and one V tile (``BLOCK_N x d``, ``BLOCK_N x ev``)
  in rows of 16-byte chunks whose index is XORed with the row's low bits (``matmul_mma_sync.swizzle``): the 8 rows
  of every ``ldmatrix`` matrix and the chunks of one ``cp.async`` round fall in distinct banks. At d = 128:
  16 + 16 + 16 KiB.
- **Pipeline.** ``cp.async`` (16-byte chunks, zero-filled past the sequence) of the Q tile and K tile 0, then per
  key tile ``kt``: V tile ``kt`` is copied while the warps compute ``S = Q K^T`` and its softmax, K tile ``kt + 1``
  while they compute ``O += P V`` (one K and one V buffer, three barriers a tile; FlashAttention-2's order).
- **Fragments.** Each warp loads its 16 query rows of Q once (``ldmatrix.x4``, d / 16 A fragments kept in
  registers); K fragments by ``ldmatrix.x4`` (B of two n8 tiles), V fragments by ``ldmatrix.x4.trans``.
- **Online softmax in registers.** ``S`` (16 x ``BLOCK_N`` a warp: lane ``4g + t`` holds rows ``g`` and ``g + 8``,
  columns ``2t, 2t + 1`` of each n8 tile) is scaled and masked (keys past the end, causal ``j > i``, the user's
  mask), the row maximum combined over the 4 lanes of a quad (``shfl.xor`` 1, 2), the output rows rescaled and
  ``P = exp(S - m)`` summed per thread (the quad's sums are combined once, at the end). ``P`` is rounded to 16 bits
  and packed in registers into the A fragments of ``O += P V`` (the accumulator layout of two n8 tiles is the A
  layout of one k16 step), without shared memory.
- **Causal.** Key tiles after the block's last row are not visited; the mask is applied on every tile.
- **Results.** ``O / l`` rounded once to the output type, stored two columns at a time; ``lse = m + log l`` (f32)
  by the first lane of each quad. A row whose keys are all masked gives zeros and ``lse = -inf``.

Element types: bf16 and f16 (the mma's type). Dropout is not drawn here: such kernels keep ``flash``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith, gpu, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseArrayBase,
    DictionaryAttr,
    Float16Type,
    IndexType,
    IntegerAttr,
    MemRefType,
    StringAttr,
    f32,
    i1,
    i16,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, STRATEGY_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.ir_builder import Builder, ConstantPool, Index
from picograd.passes.kinds import attention

# matmul's modules import picograd.passes.schedule, which imports this one: their helpers are imported where used


def swizzle(b: Builder, row: Index, chunk: Index, chunks_per_row: int) -> Index:
    """``matmul_mma_sync.swizzle``: the physical 16-byte chunk of logical ``chunk`` in tile row ``row``."""
    from picograd.passes.kinds.matmul_mma_sync import swizzle as matmul_swizzle

    return matmul_swizzle(b, row, chunk, chunks_per_row)


STRATEGY = "flash-mma"
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
CHUNK = 8
"""16-bit elements of one 16-byte ``cp.async`` chunk and ``ldmatrix`` row."""


def runs(query: Sequence[int], value: Sequence[int], element: Attribute, dropout: bool) -> bool:
    """Whether the ``flash-mma`` schedule computes attention of ``query`` (*B, L, d) and ``value`` (*B, S, ev)
    shapes on ``element``: bf16/f16, d and ev multiples of 16 up to :data:`MAX_HEAD_DIM`, no dropout."""
    d, ev = query[-1], value[-1]
    return pg.is_low_precision(element) and not dropout and all(n % 16 == 0 and 0 < n <= MAX_HEAD_DIM for n in (d, ev))


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
    dropout = any(
        isinstance(o, pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp) and o.dropout is not None for o in ops
    )
    if not runs(shape_of(main.query), shape_of(value), element_of(main.query), dropout):
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
    if nest != "forward" or "v" not in buffers or not all(aligned16(buffers[r]) for r in ("q", "k", "v", "out")):
        attention.build_launch(par, simt=True)
        return
    k = _Forward(par, info, buffers, s)
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


class _Forward:
    """Builds the ``gpu.launch`` of a forward attention nest under ``flash-mma`` (see the module docstring)."""

    def __init__(self, par: scf.ParallelOp, info: DictionaryAttr, buffers: dict[str, SSAValue], s: ScheduleAttr):
        self.par, self.buf = par, buffers
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
        from a clamped address), 16 bytes a copy, the block's threads taking consecutive chunks."""
        o = self.b  # the thread's chunk coordinates are loop-invariant
        chunks = t.rows * t.cpr
        for r in range(-(-chunks // self.threads)):
            c = o.add(self.tid, r * self.threads)
            cb = b.when(o.lt(c, chunks)) if (r + 1) * self.threads > chunks else b
            if cb is None:
                continue
            row, ch = o.div(c, t.cpr), o.rem(c, t.cpr)
            g = cb.add(row0, row)
            ok = cb.lt(g, extent)
            src_idx = [cb.idx(x) for x in (*batch, cb.min(g, extent - 1), o.mul(ch, CHUNK))]
            dst = o.idx(o.add(o.mul(row, t.cols), o.mul(swizzle(o, row, ch, t.cpr), CHUNK)))
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

    def pack(self, b: Builder, lo: SSAValue, hi: SSAValue) -> SSAValue:
        """Two f32 rounded to the mma's 16-bit type, packed into one ``i32`` fragment register (``lo`` in the low
        half: the lower column)."""
        halves = []
        for x in (lo, hi):
            h = b.v(arith.BitcastOp(b.v(arith.TruncFOp(x, self.element)), i16))
            halves.append(b.v(arith.ExtUIOp(h, i32)))
        return b.v(arith.OrIOp(halves[0], b.v(arith.ShLIOp(halves[1], b.c32(16)))))

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
        self.forward(bx, batch)
        grid = [-(-self.length // self.bm), math.prod(self.batch), 1]
        self.host_consts = [arith.ConstantOp(IntegerAttr(v, IndexType())) for v in (*grid, self.threads, 1)]
        for c in self.host_consts:
            c.location = self.loc
        hc = [c.results[0] for c in self.host_consts]
        launch = gpu.LaunchOp(Region(self.body), [hc[0], hc[1], hc[2]], [hc[3], hc[4], hc[4]])
        launch.location = self.loc
        for key in (KERNEL_ATTR, KIND_ATTR):
            if key in self.par.attributes:
                launch.attributes[key] = self.par.attributes[key]
        launch.attributes[STRATEGY_ATTR] = StringAttr(f"{STRATEGY}-forward")
        launch.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [self.threads, 1, 1])
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
        # online softmax in log2 units (rows g and g + 8 of the warp's 16): x = S scale log2(e)
        p = [zero] * len(s_acc)
        m_new, l_new, alpha = [], [], []
        for h in range(2):
            vals = []
            for nt in range(bn // 8):
                for cc in range(2):
                    x = lb.v(arith.MulfOp(s_acc[nt * 4 + 2 * h + cc], c))
                    if masked:
                        j = lb.add(j0, lb.add(lb.mul(t, 2), nt * 8 + cc))
                        x = self.masked(lb, x, batch, rows[h], j)
                    vals.append((nt * 4 + 2 * h + cc, x))
            mx = vals[0][1]
            for _, x in vals[1:]:
                mx = lb.v(arith.MaximumfOp(mx, x))
            mx = self.quad(lb, mx, arith.MaximumfOp)
            mn = lb.v(arith.MaximumfOp(m_old[h], mx))
            mu = lb.v(arith.SelectOp(lb.v(arith.CmpfOp(mn, ninf, "oeq")), zero, mn)) if masked else mn
            a = self.exp2(lb, lb.v(arith.SubfOp(m_old[h], mu)))
            total = lb.v(arith.MulfOp(l_old[h], a))
            for idx, x in vals:
                p[idx] = self.exp2(lb, lb.v(arith.SubfOp(x, mu)))
                total = lb.v(arith.AddfOp(total, p[idx]))
            m_new.append(mn)
            l_new.append(total)
            alpha.append(a)
        acc = [lb.v(arith.MulfOp(x, alpha[(i % 4) // 2])) for i, x in enumerate(acc)]
        # P as A fragments: the accumulators of n8 tiles 2ks, 2ks + 1 are the A layout of K step ks
        pa = []
        for ks in range(bn // 16):
            c0, c1 = p[8 * ks : 8 * ks + 4], p[8 * ks + 4 : 8 * ks + 8]
            pa.append([self.pack(lb, c0[0], c0[1]), self.pack(lb, c0[2], c0[3]),
                       self.pack(lb, c1[0], c1[1]), self.pack(lb, c1[2], c1[3])])  # fmt: skip
        lb.op(gpu_ext.AsyncWaitOp(0))  # the V tile has landed
        lb.op(gpu.BarrierOp())  # and every warp is done with the K tile
        self.copy(lb, self.kt, k, self.batch_idx, lb.add(j0, bn), self.keys)
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
