"""The ``mma-sync`` matmul schedule: tensor-core tiles with ``ldmatrix``, ``mma.sync`` and a ``cp.async`` pipeline.

``pg-matmul-schedule`` calls :func:`build_mma_sync` for a matmul nest whose ``#kernel.schedule`` names a
tensor-core rung (``Schedule.tensor_core``; the row ``mma-sync`` of ``picograd/passes/schedule.py``). The kernel
(after CUTLASS's Ampere GEMM, NVIDIA 2020, and MLIR's ``nvgpu`` lowering of ``vector.contract``):

- **Tiles.** A block computes a ``BM x BN`` output tile (128x128 with 4 warps of 64x64, or 64x64 with 4 warps of
  32x32), each warp a
  ``(reps[0] * 16) x (reps[1] * 8)`` tile of ``m16n8`` mma tiles whose f32 accumulators (4 per tile and thread:
  rows ``g`` and ``g + 8``, columns ``2t, 2t + 1`` for lane ``4g + t``) are ``scf.for`` iteration values.
- **Shared memory.** Each operand tile is kept in its global memory order (A: ``BM x BK`` when K is contiguous,
  ``BK x BM`` when M is; B likewise), in rows of 16-byte chunks whose chunk index is XORed with bits of the row
  (:func:`swizzle`), so that the 8 row addresses of every ``ldmatrix`` matrix, and the chunks one ``cp.async``
  round writes, fall into distinct banks: no bank conflicts.
- **Pipeline.** ``stages`` (3) buffers of both tiles; tile ``kt + stages - 1`` is in flight (``cp.async`` of
  16-byte chunks, zero-filled outside the matrix) while the warps compute on tile ``kt``: per K step one
  ``cp.async.wait_group stages - 2``, one barrier, the next copies (none past the last tile), then the mma steps.
  When K is a multiple of the K tile, the copies test only their rows (loop-invariant), not K.
- **Fragments.** ``ldmatrix.x4`` (``.trans`` for an operand stored M- or N-major) loads A for one ``m16`` tile and B
  for two ``n8`` tiles; ``mma.sync.m16n8k16`` on bf16/f16, ``m16n8k8`` on tf32 (f32 operands of a matmul recorded
  under ``allow_tf32``, each fragment register rounded to the nearest tf32 as it is loaded, as cuBLAS and CUTLASS
  do: the tensor cores would truncate to the top 19 bits; ``cvt.rn.tf32.f32``, one instruction, on sm_90, and
  ``cvt.rna`` on sm_80). An f32 operand stored M- or N-major is read with
  scalar ``ld.shared`` (``ldmatrix.trans`` moves 16-bit elements), conflict-free under the same swizzle.
- **Edges.** M, N and K need not divide the tiles: chunks outside the matrix are zero-filled (``cp.async`` with a
  source size of 0, from a clamped address) and outputs outside are not stored. An operand whose contiguous extent
  is not a multiple of 16 bytes (rows not 16-byte aligned), whose buffer is not aligned, or that is an expression
  (not a plain load) takes a synchronous path: each element read (zero outside), rounded to the tile's type and
  stored to its swizzled place; the pipeline is the same.
- **Results.** f32 accumulators rounded once to the output type (bf16/f16 with ``cvt.rn``) and stored two at a time
  (``st.global.v2``) where the output rows allow it.

Batched nests take the batch from the grid's z, as the SIMT rungs do; transposed operands are the M-/N-major
layouts above.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import BFloat16Type, Float16Type, IndexType, MemRefType, f32, i32
from xdsl.ir import Attribute, Block, Region, SSAValue

from picograd.dialects import gpu_ext
from picograd.passes.ir_builder import Builder, Index
from picograd.passes.kinds.matmul import (
    WARP,
    MatmulNest,
    Operand,
    TiledKernel,
    aligned16,
    read_operand,
    rows_match,
)
from picograd.passes.kinds.matmul_rungs import Schedule

CHUNK = 16
"""Bytes of one ``cp.async`` copy and of one ``ldmatrix`` row."""


def mma_type(nest: MatmulNest) -> str:
    """The tensor-core input type of a nest: ``bf16``/``f16`` (16-bit operands and result) or ``tf32`` (f32)."""
    return {"bf16": "bf16", "fp16": "f16"}.get(nest.precision, "tf32")


def narrow_load(x: Operand) -> memref.LoadOp | None:
    """The 16-bit load of an operand that is ``arith.extf(memref.load)``, else None."""
    if len(x.ops) == 2:
        load, ext = x.ops
        if (
            isinstance(load, memref.LoadOp)
            and isinstance(ext, arith.ExtFOp)
            and ext.input is load.res
            and isinstance(load.res.type, BFloat16Type | Float16Type)
        ):
            return load
    return None


def swizzle(b: Builder, row: Index, chunk: Index, chunks_per_row: int, spread: bool = False) -> Index:
    """The physical 16-byte chunk of logical ``chunk`` in tile row ``row``: the chunk index XORed with the row bits
    that make the chunks of 8 consecutive rows fall in 8 distinct 128-byte bank groups. ``spread`` (rows of at least
    8 chunks): XORed with ``2 * (row % 4)`` instead, so that the two chunks (8 f32 columns) of 4 consecutive rows
    that an mma fragment's scalar loads read (lanes ``4g + q``: row ``q``, column ``g``) fall in 32 distinct banks
    (under the 8-row swizzle, rows ``q`` and ``q ^ 1`` meet: two-way conflicts)."""
    if chunks_per_row >= 8 and spread:
        bits = b.mul(b.rem(row, 4), 2)
    elif chunks_per_row >= 8:
        bits = b.rem(row, 8)
    elif chunks_per_row in (4, 2):
        shift = 8 // chunks_per_row  # rows that share one 128-byte line
        bits = b.rem(b.div(row, shift), chunks_per_row)
    else:
        return chunk
    if isinstance(bits, int) and isinstance(chunk, int):
        return bits ^ chunk
    if isinstance(bits, int) and bits == 0:
        return chunk
    lhs = b.c32(chunk) if isinstance(chunk, int) else chunk
    rhs = b.c32(bits) if isinstance(bits, int) else bits
    return b.v(arith.XOrIOp(lhs, rhs))


def regroup(values: list[SSAValue], sizes: Sequence[int]) -> list[list[SSAValue]]:
    """``values`` cut into consecutive lists of ``sizes``."""
    out, at = [], 0
    for n in sizes:
        out.append(values[at : at + n])
        at += n
    return out


class _Tile:
    """One operand's shared-memory tile: layout, element, copy path, and its workgroup buffer of ``stages`` tiles
    indexed ``[stage, row * cols + column]`` (a thread's offsets within a stage are loop-invariant)."""

    def __init__(self, kernel: MmaSyncKernel, x: Operand, bi: int):
        self.x = x
        s = kernel.s
        plain = kernel.plain(x)
        # K contiguous in memory (or neither: an expression): rows along M/N; else rows along K
        self.k_major = plain is None or plain.contiguous != "i"
        self.element: Attribute = f32 if kernel.mma == "tf32" else kernel.narrow_element
        self.esize = 4 if kernel.mma == "tf32" else 2
        self.per_chunk = CHUNK // self.esize
        self.bi = bi
        self.rows, self.cols = (bi, s.bk) if self.k_major else (s.bk, bi)
        self.cpr = self.cols // self.per_chunk
        # read with scalar ld.shared (an f32 tile stored M-/N-major): the spread swizzle, unless the schedule asks
        self.spread = not s.row8_scalar and kernel.mma == "tf32" and not self.k_major
        self.source = kernel.source(x, plain)
        self.ext = kernel.extents(x)
        self.smem = kernel.b.v(gpu_ext.WorkgroupAllocOp(self.element, [s.stages, self.rows * self.cols]))


class MmaSyncKernel(TiledKernel):
    """Builds the ``gpu.launch`` of one matmul nest under a tensor-core rung (see the module docstring)."""

    def __init__(self, nest: MatmulNest, s: Schedule):
        super().__init__(nest, s)
        self.mma = mma_type(nest)
        self.narrow_element: Attribute = {"bf16": BFloat16Type(), "f16": Float16Type(), "tf32": f32}[self.mma]
        self.kstep = 8 if self.mma == "tf32" else 16

    # --- operands ---------------------------------------------------------------------------------------------

    def plain(self, x: Operand) -> Operand | None:
        """The plain load an operand reads (the 16-bit load under an ``extf``, or the f32 load of a tf32 nest),
        else None (an expression)."""
        load = narrow_load(x)
        if load is not None:
            body = load.parent_block()
            assert body is not None
            other = self.nest.ivs[-1] if x is self.nest.a else self.nest.ivs[-2]
            src = read_operand(load.res, body, self.dims(x), other)
            return src if src is not None and src.plain else None
        return x if self.mma == "tf32" and x.plain else None

    def source(self, x: Operand, src: Operand | None) -> Operand | None:
        """``src`` (the operand's plain load) when ``cp.async`` can copy its chunks: rows 16-byte aligned, the
        contiguous dim the matrix's; None for the synchronous path."""
        if src is None or src.contiguous is None:
            return None
        buf = src.buffer
        assert buf is not None
        t = buf.type
        assert isinstance(t, MemRefType)
        per_chunk = CHUNK // (4 if self.mma == "tf32" else 2)
        ext = self.extents(x)
        inner = ext[-2 if src.contiguous == "i" else -1]
        if (
            t.get_shape()[-1] % per_chunk
            or not rows_match(src, t.get_shape()[-1], inner, per_chunk)
            or not aligned16(buf)
        ):
            return None
        return src

    # --- the kernel -------------------------------------------------------------------------------------------

    def emit_body(self) -> None:
        nest, s, b = self.nest, self.s, self.b
        tid = self.tid
        warp, lane = b.div(tid, WARP), b.rem(tid, WARP)
        self.lane = lane
        wm, wn = b.div(warp, s.warps[1]), b.rem(warp, s.warps[1])
        self.wrow = b.mul(wm, s.reps[0] * 16)
        self.wcol = b.mul(wn, s.reps[1] * 8)
        self.ta = _Tile(self, nest.a, s.bm)
        self.tb = _Tile(self, nest.b, s.bn)
        k_tiles = -(-nest.k // s.bk)
        n_acc = s.reps[0] * s.reps[1] * 4
        # Prologue: tiles 0 .. stages - 2 into their stages, a group each (past the last tile: an empty group).
        for st in range(s.stages - 1):
            for t in (self.ta, self.tb) if st < k_tiles else ():
                self.copy_tile(b, t, st * s.bk, st, (st + 1) * s.bk <= nest.k)
            b.op(gpu_ext.AsyncCommitOp())
        steps = s.bk // self.kstep
        if s.prefetch and steps >= 2:
            self.emit_prefetch_loop(k_tiles, n_acc)
            return
        loop_body = Block(arg_types=[IndexType(), *([f32] * n_acc)])
        kt_index, *acc = loop_body.args
        lb = b.at(loop_body)
        lb.op(scf.YieldOp(*acc))
        kt = lb.i32(kt_index)
        lb.op(gpu_ext.AsyncWaitOp(s.stages - 2))
        lb.op(gpu.BarrierOp())
        self.copy_ahead(lb, kt, k_tiles)
        new = self.compute(lb, lb.rem(kt, s.stages), list(acc))
        loop_body.last_op.operands = new  # type: ignore[union-attr]
        zero = b.const(0.0, f32)
        loop = scf.ForOp(b.idx(0), b.idx(k_tiles), b.idx(1), [zero] * n_acc, Region(loop_body))
        b.op(loop)
        b.op(gpu_ext.AsyncWaitOp(0))  # no copy may land after the block exits
        self.store_acc(list(loop.results))

    def copy_ahead(self, lb: Builder, kt: Index, k_tiles: int) -> None:
        """In K tile ``kt``'s iteration: the copies of tile ``kt + stages - 1`` into its stage, then a commit (an
        empty group past the last tile)."""
        s, nest = self.s, self.nest
        ahead = lb.add(kt, s.stages - 1)
        stage_next = lb.rem(ahead, s.stages)
        # tiles past the last one are not copied (a uniform branch); when K is a multiple of the K tile, every
        # copied tile lies inside K and its copies test the rows alone (loop-invariant) and clamp nothing along K
        cb = lb.when(lb.lt(ahead, k_tiles))
        assert cb is not None
        for t in (self.ta, self.tb):
            self.copy_tile(cb, t, cb.mul(ahead, s.bk), stage_next, nest.k % s.bk == 0)
        lb.op(gpu_ext.AsyncCommitOp())

    def emit_prefetch_loop(self, k_tiles: int, n_acc: int) -> None:
        """The main loop under ``prefetch`` (CUTLASS's multistage main loop): the fragments of K step ``j + 1`` are
        loaded before the mma of step ``j``, and those of the next K tile's first step before the mma of the last
        step, after the one barrier per K tile (which also tells that the tile landed: ``wait_group stages - 2``
        just before it). The first step's fragments are loop-carried values (the prologue loads tile 0's). The
        copies of tile ``kt + stages - 1`` follow the first mma step: they overwrite the stage of tile ``kt - 1``,
        whose last fragments every warp loaded before the previous iteration's barrier. The last iteration loads
        the fragments of a tile past the end from a stage that nothing writes any more, and drops them."""
        s, b = self.s, self.b
        steps = s.bk // self.kstep
        b.op(gpu_ext.AsyncWaitOp(s.stages - 2))
        b.op(gpu.BarrierOp())
        first = self.fragments(b, 0, 0)
        flat = [v for fragment in first for v in fragment]
        sizes = [len(fragment) for fragment in first]
        loop_body = Block(arg_types=[IndexType(), *([f32] * n_acc), *(v.type for v in flat)])
        kt_index, *carried = loop_body.args
        acc: list[SSAValue] = list(carried[:n_acc])
        cur = regroup(list(carried[n_acc:]), sizes)
        lb = b.at(loop_body)
        lb.op(scf.YieldOp(*carried))
        kt = lb.i32(kt_index)
        stage = lb.rem(kt, s.stages)
        for j in range(steps):
            if j + 1 < steps:
                nxt = self.fragments(lb, stage, (j + 1) * self.kstep)
            else:
                lb.op(gpu_ext.AsyncWaitOp(s.stages - 2))
                lb.op(gpu.BarrierOp())
                nxt = self.fragments(lb, lb.rem(lb.add(kt, 1), s.stages), 0)
            acc = self.mma_step(lb, cur, acc)
            if j == 0:
                self.copy_ahead(lb, kt, k_tiles)
            cur = nxt
        loop_body.last_op.operands = [*acc, *(v for fragment in cur for v in fragment)]  # type: ignore[union-attr]
        zero = b.const(0.0, f32)
        loop = scf.ForOp(b.idx(0), b.idx(k_tiles), b.idx(1), [*([zero] * n_acc), *flat], Region(loop_body))
        b.op(loop)
        b.op(gpu_ext.AsyncWaitOp(0))  # no copy may land after the block exits
        self.store_acc(list(loop.results)[:n_acc])

    def copy_tile(self, b: Builder, t: _Tile, k0: Index, stage: Index, inside_k: bool) -> None:
        """This thread's chunks of the tile at K offset ``k0`` into ``stage``: ``cp.async`` (zero-filled outside
        the matrix) or, on the synchronous path, element by element. ``inside_k``: the tile ends at or before K
        (no test or clamp along K)."""
        s, o = self.s, self.b  # o: the kernel's top-level builder, for what does not change from tile to tile
        chunks = t.rows * t.cpr
        i0 = self.m0 if t.x is self.nest.a else self.n0
        i_ext, k_ext = t.ext[-2], t.ext[-1]
        step = s.threads // t.cpr  # tile rows one round of copies covers
        if (
            t.source is not None
            and inside_k
            and i_ext % t.bi == 0
            and s.threads % t.cpr == 0
            and chunks % s.threads == 0
        ):
            self.copy_full_tile(b, t, i0, k0, stage, step)
            return
        for r in range(-(-chunks // s.threads)):
            c = o.add(self.tid, r * s.threads)
            cb = b.when(o.lt(c, chunks)) if (r + 1) * s.threads > chunks else b
            if cb is None:
                continue
            row, ch = o.div(c, t.cpr), o.rem(c, t.cpr)
            along = o.mul(ch, t.per_chunk)
            ii, kk = (row, along) if t.k_major else (along, row)
            gi, gk = o.add(i0, ii), cb.add(k0, kk)
            flat = o.add(o.mul(row, t.cols), o.mul(swizzle(o, row, ch, t.cpr, t.spread), t.per_chunk))
            dst = [cb.idx(stage), o.idx(flat)]
            if t.source is not None:
                ok = o.lt(gi, i_ext) if inside_k else cb.both(o.lt(gi, i_ext), cb.lt(gk, k_ext))
                # clamped into the matrix, 16-byte aligned: read nothing when ok is false
                ci = o.min(gi, i_ext - (1 if t.k_major else t.per_chunk))
                ck = gk if inside_k else cb.min(gk, k_ext - (t.per_chunk if t.k_major else 1))
                src = [cb.idx(v) for v in self.indices(cb, t.source, self.coords(ci, ck))]
                valid = (
                    cb.idx(t.per_chunk if ok else 0)
                    if isinstance(ok, bool)
                    else cb.v(arith.SelectOp(ok, cb.idx(t.per_chunk), cb.idx(0)))
                )
                assert t.source.buffer is not None
                cb.op(gpu_ext.AsyncCopyOp(t.source.buffer, src, t.smem, dst, t.per_chunk, valid))
                continue
            for j in range(t.per_chunk):
                gij, gkj = (gi, cb.add(gk, j)) if t.k_major else (cb.add(gi, j), gk)
                v = self.element(cb, t.x, self.coords(gij, gkj), t.ext)
                if t.element != v.type:
                    v = cb.v(arith.TruncFOp(v, t.element))
                place = [cb.idx(stage), o.idx(o.add(flat, j))]
                cb.op(memref.StoreOp.get(v, t.smem, place))

    def copy_full_tile(self, b: Builder, t: _Tile, i0: Index, k0: Index, stage: Index, step: int) -> None:
        """``copy_tile`` of a tile wholly inside the matrix, in rounds of ``step`` rows: round ``r`` is round 0
        moved by ``r * step`` rows, a constant that ``pg-to-ptx`` folds into the source address (``[%rd + 65536]``)
        and, past the rows' swizzle (which repeats every 8 rows), into the destination's: one source address and
        one or two destination addresses per operand serve all of a thread's copies, with nothing tested or
        clamped."""
        s, o = self.s, self.b
        assert t.source is not None and t.source.buffer is not None
        row0, ch = o.div(self.tid, t.cpr), o.rem(self.tid, t.cpr)
        along = o.mul(ch, t.per_chunk)

        def flat(r: int) -> Index:  # the swizzled place of round r's chunk
            row = o.add(row0, r * step % 8)
            base = o.add(o.mul(row, t.cols), o.mul(swizzle(o, row, ch, t.cpr, t.spread), t.per_chunk))
            return o.add(base, (r * step - r * step % 8) * t.cols)

        if t.k_major:
            gi0, gk0 = o.add(i0, row0), b.add(k0, along)
        else:
            gi0, gk0 = o.add(i0, along), b.add(k0, row0)
        for r in range(t.rows * t.cpr // s.threads):
            gi, gk = (o.add(gi0, r * step), gk0) if t.k_major else (gi0, b.add(gk0, r * step))
            src = [b.idx(v) for v in self.indices(b, t.source, self.coords(gi, gk))]
            dst = [b.idx(stage), o.idx(flat(r))]
            b.op(gpu_ext.AsyncCopyOp(t.source.buffer, src, t.smem, dst, t.per_chunk, b.idx(t.per_chunk)))

    # --- the mma steps ----------------------------------------------------------------------------------------

    def offset(self, t: _Tile, row: Index, row_step: int, col: Index, col_step: int = 0) -> SSAValue:
        """The place of element (``row + row_step``, ``col + col_step``) within a stage of ``t``, swizzled, computed
        at the top level (loop-invariant). ``row_step`` is a multiple of the swizzle's period in rows and
        ``col_step`` of the chunks it permutes (:meth:`steps`), so they leave the swizzle alone: constants added
        last, which ``pg-to-ptx`` folds into the instruction's address (``[%r + 2048]``)."""
        o = self.b
        chunk = swizzle(o, row, o.div(col, t.per_chunk), t.cpr, t.spread)
        base = o.add(o.mul(row, t.cols), o.add(o.mul(chunk, t.per_chunk), o.rem(col, t.per_chunk)))
        return o.idx(o.add(base, row_step * t.cols + col_step))

    @staticmethod
    def steps(t: _Tile, row: int, col: int) -> tuple[int, int, int, int]:
        """Constant offsets (``row``, ``col``) split into the parts inside the swizzle and the parts it leaves alone
        (``offset``'s ``row_step``/``col_step``): rows repeat the swizzle every 8 (4 under ``spread``), and with 8
        or more chunks a row it permutes chunks within aligned groups of 8."""
        period = 4 if t.spread else 8
        span = 8 * t.per_chunk if t.cpr >= 8 else t.cols
        return row % period, row - row % period, col % span, col - col % span

    def fragment_rows(
        self, b: Builder, t: _Tile, stage: Index, row: Index, row_step: int, col: Index, trans: bool
    ) -> list[SSAValue]:
        """``ldmatrix.x4`` of the 16-byte tile rows this lane names (``row + row_step``, element column ``col``)."""
        idx = [b.idx(stage), self.offset(t, row, row_step, col)]
        return list(b.op(gpu_ext.LdMatrixOp(t.smem, idx, 4, trans)).results)

    def scalar(
        self, b: Builder, t: _Tile, stage: Index, row: Index, row_const: int, col: Index, col_const: int
    ) -> SSAValue:
        """One f32 of an M-/N-major tf32 tile at (``row + row_const``, ``col + col_const``), as the i32 bits an mma
        fragment holds; the constants outside the swizzle go to the address's immediate (:meth:`steps`)."""
        o = self.b
        r_in, r_out, c_in, c_out = self.steps(t, row_const, col_const)
        place = self.offset(t, o.add(row, r_in), r_out, o.add(col, c_in), c_out)
        v = b.v(memref.LoadOp.get(t.smem, [b.idx(stage), place]))
        return b.v(arith.BitcastOp(v, i32))

    # The lane's rows are split into a lane part and a multiple of 8 (the mma tile's row, or the K step), so that
    # tiles of one K step share one address register and differ by constants.

    def a_fragment(self, b: Builder, stage: Index, kk: int, mi: int) -> list[SSAValue]:
        t, lane, o = self.ta, self.lane, self.b  # o: lane arithmetic at the top level (loop-invariant)
        j = o.div(lane, 8)
        half = self.kstep // 2
        if t.k_major:  # matrices (m, k), (m + 8, k), (m, k + half), (m + 8, k + half)
            row = o.add(o.add(self.wrow, o.rem(lane, 8)), o.mul(o.rem(j, 2), 8))
            return self.fragment_rows(b, t, stage, row, mi * 16, o.add(kk, o.mul(o.div(j, 2), half)), False)
        m = o.add(self.wrow, mi * 16)
        g, q = o.div(lane, 4), o.rem(lane, 4)
        if self.mma == "tf32":  # a0 (g, q), a1 (g + 8, q), a2 (g, q + 4), a3 (g + 8, q + 4)
            return [
                self.scalar(b, t, stage, q, kk + dk, o.add(self.wrow, g), mi * 16 + dm)
                for dk, dm in ((0, 0), (0, 8), (4, 0), (4, 8))
            ]
        row = o.add(o.rem(lane, 8), o.mul(o.div(j, 2), 8))
        return self.fragment_rows(b, t, stage, row, kk, o.add(m, o.mul(o.rem(j, 2), 8)), True)

    def b_fragments(self, b: Builder, stage: Index, kk: int, ni: int) -> list[SSAValue]:
        """B fragments of the n8 tiles ``ni`` and ``ni + 1``: (b0, b1) of each."""
        t, lane, o = self.tb, self.lane, self.b
        j = o.div(lane, 8)
        half = self.kstep // 2
        if t.k_major:  # matrices (n, k), (n, k + half), (n + 8, k), (n + 8, k + half)
            row = o.add(o.add(self.wcol, o.rem(lane, 8)), o.mul(o.div(j, 2), 8))
            return self.fragment_rows(b, t, stage, row, ni * 8, o.add(kk, o.mul(o.rem(j, 2), half)), False)
        n = o.add(self.wcol, ni * 8)
        g, q = o.div(lane, 4), o.rem(lane, 4)
        if self.mma == "tf32":  # b0 (k = q, n = g), b1 (k = q + 4, n = g), for n and n + 8
            return [
                self.scalar(b, t, stage, q, kk + dk, o.add(self.wcol, g), ni * 8 + dn)
                for dn, dk in ((0, 0), (0, 4), (8, 0), (8, 4))
            ]
        row = o.add(o.rem(lane, 8), o.mul(o.rem(j, 2), 8))
        return self.fragment_rows(b, t, stage, row, kk, o.add(n, o.mul(o.div(j, 2), 8)), True)

    def rounded(self, b: Builder, fragment: list[SSAValue]) -> list[SSAValue]:
        """A tf32 fragment's f32 values rounded to the nearest tf32 (``gpu_ext.round_tf32``, as cuBLAS and CUTLASS
        round them; the tensor cores would truncate); 16-bit fragments as they are."""
        if self.mma != "tf32" or self.s.tf32_trunc:
            return fragment
        return [b.v(gpu_ext.RoundTf32Op(v)) for v in fragment]

    def fragments(self, b: Builder, stage: Index, kk: int) -> list[list[SSAValue]]:
        """The fragments of K step ``kk`` of ``stage``: A of each m16 tile, then B of each n8 tile."""
        mt, nt = self.s.reps
        frags = [self.rounded(b, self.a_fragment(b, stage, kk, mi)) for mi in range(mt)]
        for ni in range(0, nt, 2):
            r = self.rounded(b, self.b_fragments(b, stage, kk, ni))
            frags.extend([r[0:2], r[2:4]])
        return frags

    def mma_step(self, b: Builder, frags: list[list[SSAValue]], acc_in: Sequence[SSAValue]) -> list[SSAValue]:
        """The mma of one K step on ``fragments``' values, into the accumulators."""
        mt, nt = self.s.reps
        shape = "m16n8k8" if self.mma == "tf32" else "m16n8k16"
        acc = list(acc_in)
        for mi in range(mt):
            for ni in range(nt):
                base = (mi * nt + ni) * 4
                mma = b.op(gpu_ext.MmaSyncOp(shape, self.mma, frags[mi], frags[mt + ni], acc[base : base + 4]))
                acc[base : base + 4] = list(mma.results)
        return acc

    def compute(self, b: Builder, stage: Index, acc_in: Sequence[SSAValue]) -> list[SSAValue]:
        acc = list(acc_in)
        for kk in range(0, self.s.bk, self.kstep):
            acc = self.mma_step(b, self.fragments(b, stage, kk), acc)
        return acc

    # --- the results ------------------------------------------------------------------------------------------

    def store_acc(self, acc: Sequence[SSAValue]) -> None:
        nest, s, b = self.nest, self.s, self.b
        out_t = nest.out.type
        assert isinstance(out_t, MemRefType)
        out_el = out_t.get_element_type()
        pairs = nest.n % 2 == 0 and out_t.get_shape()[-1] % 2 == 0 and aligned16(nest.out)
        g, q = b.div(self.lane, 4), b.rem(self.lane, 4)
        mt, nt = s.reps
        for mi in range(mt):
            for ni in range(nt):
                for half in range(2):
                    m = b.add(self.m0, b.add(self.wrow, b.add(g, mi * 16 + 8 * half)))
                    n = b.add(self.n0, b.add(self.wcol, b.add(b.mul(q, 2), ni * 8)))
                    base = (mi * nt + ni) * 4 + 2 * half
                    values = list(acc[base : base + 2])
                    if out_el != f32:
                        values = [b.v(arith.TruncFOp(v, out_el)) for v in values]
                    if pairs:  # n even: both columns in or both out
                        sb = b.when(b.both(b.lt(m, nest.m), b.lt(n, nest.n)))
                        if sb is not None:
                            idx = [sb.idx(v) for v in [*self.batch_iv, m, n]]
                            sb.op(gpu_ext.VectorStoreOp(values, nest.out, idx))
                        continue
                    for j, v in enumerate(values):
                        nj = b.add(n, j)
                        sb = b.when(b.both(b.lt(m, nest.m), b.lt(nj, nest.n)))
                        if sb is not None:
                            sb.op(memref.StoreOp.get(v, nest.out, [sb.idx(x) for x in [*self.batch_iv, m, nj]]))
