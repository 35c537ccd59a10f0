"""Register-tiled GEMM kernels in LLVM IR, for the CPU runtime's products whose output has few columns or few rows.

A convolution lowered to im2col (``pg-decompose-conv``) is a product with a narrow output: (N * Q, K * C) @ (K * C,
O) with O the output channels (16 or 32 in the course's CNN and DDPM), and its weight gradient (O, N * Q) @ (N *
Q, K * C). OpenBLAS runs these at 65-90 GFLOP/s on one core of an AVX-512 Zen 4; the kernel here, one
register tile of ``mr`` rows by ``nv`` vectors of the output held in vector registers across the whole reduction,
at about 110 (the core's FMA peak is about 115).

The kernel (Goto and van de Geijn, "Anatomy of high-performance matrix multiplication", 2008, without the packing
of A: the operands here fit the caches) takes the arguments of CBLAS ``cblas_sgemm``/``cblas_dgemm`` so that
``cpu_blas``'s gemm entries call it where they would call the BLAS:
``(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)``. It is compiled for one ``transa``,
``transb``, element type and tile (:class:`GemmKernel`) and reads neither ``order`` (row-major), ``alpha`` (1) nor
``beta`` (0), which is all ``cpu_blas`` passes. For each block of ``nv`` vectors of output columns and each ``mr``
rows, the reduction loop loads ``nv`` vectors of B's row ``k`` and broadcasts A's ``mr`` elements of column ``k``,
``mr * nv`` fused multiply-adds; the rows left over run one at a time, the columns left over one vector at a time
with the last vector masked (``llvm.masked.load/store``). A transposed B (``transb``: the weight of a convolution,
(O, K * C)) is first copied into a K x N row-major block on the stack, at most ``PACK_LIMIT`` bytes."""

from __future__ import annotations

from dataclasses import dataclass

PACK_LIMIT = 64 * 1024  # bytes of a transposed B copied to the stack (larger: the kernel is not used)


@dataclass(frozen=True)
class GemmKernel:
    """One compiled form of the kernel: element type (``float``/``double``), vector lanes, whether A and B are
    transposed (CBLAS's ``transa``/``transb``), the register tile (``mr`` rows by ``nv`` vectors of ``lanes``), and
    the BLAS's int type (``i32``/``i64``) of its arguments."""

    t: str
    lanes: int
    ta: bool
    tb: bool
    mr: int
    nv: int
    it: str = "i64"

    @property
    def name(self) -> str:
        return (
            f"pg_tile_gemm_{self.t[0]}{self.lanes}_{'t' if self.ta else 'n'}{'t' if self.tb else 'n'}"
            f"_{self.mr}x{self.nv}_{self.it}"
        )


@dataclass(frozen=True)
class TileRule:
    """A row of :data:`TILE_RULES`: products at ``lanes`` whose output has ``min_rows..max_rows`` rows and
    ``min_cols..max_cols`` columns take the tile of ``mr`` rows by ``nv`` vectors."""

    lanes: int
    min_rows: int
    max_rows: int
    min_cols: int
    max_cols: int
    mr: int
    nv: int


# The tiles, as data (first matching row wins), measured on the products of the DDPM's and CNN's convolutions (one
# core of an AVX-512 Zen 4, 2026-12-06): 32 zmm registers hold the mr * nv accumulators and the nv vectors of B. A
# product of fewer than MIN_WORK multiply-adds, or one no row takes (many rows and columns: BLAS's blocking for the
# caches wins there), stays with the BLAS.
TILE_RULES = (
    TileRule(lanes=16, min_rows=64, max_rows=1 << 62, min_cols=8, max_cols=16, mr=8, nv=1),
    TileRule(lanes=16, min_rows=64, max_rows=1 << 62, min_cols=17, max_cols=32, mr=16, nv=1),
    TileRule(lanes=16, min_rows=64, max_rows=1 << 62, min_cols=33, max_cols=64, mr=8, nv=2),
    TileRule(lanes=16, min_rows=8, max_rows=63, min_cols=8, max_cols=16, mr=8, nv=1),
    TileRule(lanes=16, min_rows=8, max_rows=63, min_cols=17, max_cols=1 << 62, mr=8, nv=2),
)
MIN_WORK = 1 << 20
ALIASING_STRIDE = 4096
"""An A (not transposed) whose row stride is a multiple of this many bytes keeps the BLAS: the tile's ``mr`` rows
of A then fall in one set of the 8-way level-1 cache, and B's lines evict them (16 x 288 x 8192 at a 32 KiB row
stride: 99 GFLOP/s or 23 by B's alignment; OpenBLAS packs A and runs at 50-70)."""


def tile_for(lanes: int, m: int, n: int, k: int, a_row_bytes: int = 0) -> tuple[int, int] | None:
    """The (mr, nv) of the first rule of :data:`TILE_RULES` taking an (m, n) output of a reduction of k at
    ``lanes``, or None (BLAS); ``a_row_bytes``: the stride of A's rows when A is not transposed (see
    :data:`ALIASING_STRIDE`)."""
    if m * n * k < MIN_WORK or (m > 1 and a_row_bytes and a_row_bytes % ALIASING_STRIDE == 0):
        return None
    for r in TILE_RULES:
        if r.lanes == lanes and r.min_rows <= m <= r.max_rows and r.min_cols <= n <= r.max_cols:
            return r.mr, r.nv
    return None


class _Ir:
    """Lines of LLVM IR and fresh value names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"%{stem}{self.count}"

    def label(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def operands(self, names: tuple[str, ...]) -> None:
        """``%<name>``: the pointer of each operand, from its (slot, byte offset) words ``2 i, 2 i + 1`` of
        ``%params`` and the slot table ``%slots``."""
        for i, name in enumerate(names):
            self(f"  %{name}sp = getelementptr i64, ptr %params, i64 {2 * i}")
            self(f"  %{name}s = load i64, ptr %{name}sp")
            self(f"  %{name}op = getelementptr i64, ptr %params, i64 {2 * i + 1}")
            self(f"  %{name}o = load i64, ptr %{name}op")
            self(f"  %{name}bp = getelementptr ptr, ptr %slots, i64 %{name}s")
            self(f"  %{name}base = load ptr, ptr %{name}bp")
            self(f"  %{name} = getelementptr i8, ptr %{name}base, i64 %{name}o")

    def load_vector(self, t: str, w: int, ptr: str, mask: str | None) -> str:
        """A vector of ``w`` ``t`` at ``ptr`` (the lanes of ``mask`` only, the others 0)."""
        x, vt, item = self.fresh("vl"), f"<{w} x {t}>", _item(t)
        if mask is None:
            self(f"  {x} = load {vt}, ptr {ptr}, align {item}")
        else:
            self(f"  {x} = call {vt} @llvm.masked.load.v{w}{_suffix(t)}.p0(ptr {ptr}, i32 {item}, <{w} x i1> {mask}, "
                 f"{vt} zeroinitializer)")  # fmt: skip
        return x

    def store_vector(self, t: str, w: int, value: str, ptr: str, mask: str | None) -> None:
        """Store the vector ``value`` at ``ptr`` (the lanes of ``mask`` only)."""
        vt, item = f"<{w} x {t}>", _item(t)
        if mask is None:
            self(f"  store {vt} {value}, ptr {ptr}, align {item}")
        else:
            self(f"  call void @llvm.masked.store.v{w}{_suffix(t)}.p0({vt} {value}, ptr {ptr}, i32 {item}, "
                 f"<{w} x i1> {mask})")  # fmt: skip

    def backedge(self, i: str, nxt: str, bound: str | int, loop: str, done: str) -> None:
        """End a do-while loop's body: ``nxt = i + 1``, back to ``loop`` while below ``bound``, else on at ``done``
        (its label opened here)."""
        more = self.fresh("more")
        self(f"  {nxt} = add i64 {i}, 1")
        self(f"  {more} = icmp slt i64 {nxt}, {bound}")
        self(f"  br i1 {more}, label %{loop}, label %{done}")
        self(f"{done}:")

    def store_tile(
        self, t: str, w: int, rows: list[str], cols: list[str], values: list[list[str]], masks: list[str | None]
    ) -> None:
        """Store ``values[r][v]`` at ``%c + rows[r] + cols[v]`` (element offsets), masked by ``masks[v]``."""
        for r, row in enumerate(rows):
            for v, col in enumerate(cols):
                p = self.fresh("cp")
                self(f"  {p}o = add i64 {row}, {col}")
                self(f"  {p} = getelementptr {t}, ptr %c, i64 {p}o")
                self.store_vector(t, w, values[r][v], p, masks[v])

    def broadcast(self, t: str, w: int, ptr: str) -> str:
        """The scalar ``t`` at ``ptr`` in every lane of a vector of ``w``."""
        x, ins, splat, vt = self.fresh("s"), self.fresh("si"), self.fresh("sv"), f"<{w} x {t}>"
        self(f"  {x} = load {t}, ptr {ptr}")
        self(f"  {ins} = insertelement {vt} poison, {t} {x}, i64 0")
        self(f"  {splat} = shufflevector {vt} {ins}, {vt} poison, <{w} x i32> zeroinitializer")
        return splat

    def fma(self, t: str, w: int, out: str, a: str, b: str, acc: str) -> None:
        """``out = a * b + acc`` on vectors of ``w`` ``t``, one rounding."""
        vt = f"<{w} x {t}>"
        self(f"  {out} = call {vt} @llvm.fma.v{w}{_suffix(t)}({vt} {a}, {vt} {b}, {vt} {acc})")


def _loop(ir: _Ir, lo: str, hi: str, step: int, body, stem: str) -> None:  # type: ignore[no-untyped-def]
    """``for (i = lo; i < hi; i += step) body(i)``: ``body`` emits into the loop and returns the label it ends in."""
    pre, head, inner, done = ir.label(f"{stem}pre"), ir.label(f"{stem}head"), ir.label(f"{stem}body"), ""
    done = ir.label(f"{stem}done")
    ir(f"  br label %{pre}")
    ir(f"{pre}:")
    ir(f"  br label %{head}")
    i, nxt = ir.fresh(f"{stem}i"), ir.fresh(f"{stem}next")
    latch = ir.label(f"{stem}latch")
    ir(f"{head}:")
    ir(f"  {i} = phi i64 [{lo}, %{pre}], [{nxt}, %{latch}]")
    more = ir.fresh("more")
    ir(f"  {more} = icmp slt i64 {i}, {hi}")
    ir(f"  br i1 {more}, label %{inner}, label %{done}")
    ir(f"{inner}:")
    body(i)
    ir(f"  br label %{latch}")
    ir(f"{latch}:")
    ir(f"  {nxt} = add i64 {i}, {step}")
    ir(f"  br label %{head}")
    ir(f"{done}:")


def gemm_ir(kernel: GemmKernel) -> str:
    """The LLVM IR of ``kernel`` (see the module docstring), one function named ``kernel.name``."""
    t, w, it = kernel.t, kernel.lanes, kernel.it
    vt = f"<{w} x {t}>"
    item = _item(t)
    ir = _Ir()
    args = (
        f"i32 %order, i32 %transa, i32 %transb, {it} %m0, {it} %n0, {it} %k0, {t} %alpha, ptr noalias %a, "
        f"{it} %lda0, ptr noalias %b, {it} %ldb0, {t} %beta, ptr noalias %c, {it} %ldc0"
    )
    ir(f"define void @{kernel.name}({args}) {{")
    ir("entry:")
    for x in ("m", "n", "k", "lda", "ldb", "ldc"):
        ir(f"  %{x} = {'sext i32' if it == 'i32' else 'add i64'} %{x}0{' to i64' if it == 'i32' else ', 0'}")
    b, ldb = "%b", "%ldb"
    if kernel.tb:  # B (n, k) row-major, read as (k, n): copied to a (k, n) row-major block first
        ir(f"  %pack = alloca {t}, i64 {PACK_LIMIT // item}, align 64")

        def pack_row(kk: str) -> None:
            def pack_col(nn: str) -> None:
                src, dst, x, o1, o2 = (ir.fresh(s) for s in ("src", "dst", "x", "o", "o"))
                ir(f"  {o1} = mul i64 {nn}, %ldb")
                ir(f"  {o1}s = add i64 {o1}, {kk}")
                ir(f"  {src} = getelementptr {t}, ptr %b, i64 {o1}s")
                ir(f"  {x} = load {t}, ptr {src}")
                ir(f"  {o2} = mul i64 {kk}, %n")
                ir(f"  {o2}s = add i64 {o2}, {nn}")
                ir(f"  {dst} = getelementptr {t}, ptr %pack, i64 {o2}s")
                ir(f"  store {t} {x}, ptr {dst}")

            _loop(ir, "0", "%n", 1, pack_col, "pn")

        _loop(ir, "0", "%k", 1, pack_row, "pk")
        b, ldb = "%pack", "%n"
    wide = w * kernel.nv
    ir(f"  %nfull0 = sdiv i64 %n, {wide}")
    ir(f"  %nfull = mul i64 %nfull0, {wide}")
    ir(f"  %mfull0 = sdiv i64 %m, {kernel.mr}")
    ir(f"  %mfull = mul i64 %mfull0, {kernel.mr}")
    lanes = "<" + ", ".join(f"i64 {i}" for i in range(w)) + ">"

    def tile(m0: str, n0: str, mr: int, nv: int, mask: str | None) -> None:
        """Rows m0..m0+mr, vectors n0.. of C: the reduction over k with the accumulators in registers."""
        rows = []
        for r in range(mr):
            row = ir.fresh("row")
            ir(f"  {row} = add i64 {m0}, {r}")
            rows.append(row)
        pre, body, done = ir.label("kpre"), ir.label("kbody"), ir.label("kdone")
        ir(f"  br label %{pre}")
        ir(f"{pre}:")
        ir(f"  br label %{body}")
        ir(f"{body}:")
        kk, knext = ir.fresh("k"), ir.fresh("knext")
        ir(f"  {kk} = phi i64 [0, %{pre}], [{knext}, %{body}]")
        acc = [[ir.fresh(f"acc{r}_{v}_") for v in range(nv)] for r in range(mr)]
        new = [[ir.fresh(f"new{r}_{v}_") for v in range(nv)] for r in range(mr)]
        for r in range(mr):
            for v in range(nv):
                ir(f"  {acc[r][v]} = phi {vt} [zeroinitializer, %{pre}], [{new[r][v]}, %{body}]")
        bo = ir.fresh("bo")
        ir(f"  {bo} = mul i64 {kk}, {ldb}")
        bvec = []
        for v in range(nv):
            col, p = ir.fresh("bc"), ir.fresh("bp")
            ir(f"  {col} = add i64 {bo}, {n0}")
            ir(f"  {col}v = add i64 {col}, {v * w}")
            ir(f"  {p} = getelementptr {t}, ptr {b}, i64 {col}v")
            bvec.append(ir.load_vector(t, w, p, mask))
        for r in range(mr):
            off, p = ir.fresh("ao"), ir.fresh("ap")
            if kernel.ta:  # A (k, m) row-major
                ir(f"  {off} = mul i64 {kk}, %lda")
                ir(f"  {off}r = add i64 {off}, {rows[r]}")
            else:
                ir(f"  {off} = mul i64 {rows[r]}, %lda")
                ir(f"  {off}r = add i64 {off}, {kk}")
            ir(f"  {p} = getelementptr {t}, ptr %a, i64 {off}r")
            splat = ir.broadcast(t, w, p)
            for v in range(nv):
                ir.fma(t, w, new[r][v], splat, bvec[v], acc[r][v])
        ir.backedge(kk, knext, "%k", body, done)
        starts = []
        for r in range(mr):
            co = ir.fresh("co")
            ir(f"  {co} = mul i64 {rows[r]}, %ldc")
            ir(f"  {co}n = add i64 {co}, {n0}")
            starts.append(f"{co}n")
        ir.store_tile(t, w, starts, [str(v * w) for v in range(nv)], new, [mask] * nv)

    def columns(n0: str, nv: int, mask: str | None) -> None:
        _loop(ir, "0", "%mfull", kernel.mr, lambda m0: tile(m0, n0, kernel.mr, nv, mask), "mt")
        _loop(ir, "%mfull", "%m", 1, lambda m0: tile(m0, n0, 1, nv, mask), "mr")

    def tail(n0: str) -> None:  # one vector of columns n0.., masked to those below n
        left, splat, ins, mask = ir.fresh("left"), ir.fresh("ls"), ir.fresh("li"), ir.fresh("mask")
        ir(f"  {left} = sub i64 %n, {n0}")
        ir(f"  {ins} = insertelement <{w} x i64> poison, i64 {left}, i64 0")
        ir(f"  {splat} = shufflevector <{w} x i64> {ins}, <{w} x i64> poison, <{w} x i32> zeroinitializer")
        ir(f"  {mask} = icmp slt <{w} x i64> {lanes}, {splat}")
        columns(n0, 1, mask)

    _loop(ir, "0", "%nfull", wide, lambda n0: columns(n0, kernel.nv, None), "nt")
    _loop(ir, "%nfull", "%n", w, tail, "nr")
    ir("  ret void")
    ir("}")
    return "\n".join(ir.lines)


def declarations(kernels: list[GemmKernel]) -> str:
    """The intrinsics the IR of ``kernels`` calls, declared once each (put them in the kernels' module)."""
    lines = []
    for t, w in sorted({(k.t, k.lanes) for k in kernels}):
        vt, s = f"<{w} x {t}>", _suffix(t)
        lines.append(f"declare {vt} @llvm.fma.v{w}{s}({vt}, {vt}, {vt})")
        lines.append(f"declare {vt} @llvm.masked.load.v{w}{s}.p0(ptr, i32, <{w} x i1>, {vt})")
        lines.append(f"declare void @llvm.masked.store.v{w}{s}.p0({vt}, ptr, i32, <{w} x i1>)")
    return "\n".join(lines)


def _suffix(t: str) -> str:
    return "f32" if t == "float" else "f64"


def _item(t: str) -> int:
    return 4 if t == "float" else 8


# -- implicit GEMM: the lhs read through a convolution's window index ------------------------------------------------


@dataclass(frozen=True)
class WindowGemm:
    """``c (N * Q, O) = windows (N * Q, K * C) @ b (K * C, O)`` with ``windows[n * Q + q, k * C + j] = x[n,
    index[q, k], j]``: a convolution's im2col product read straight from its zero-padded channels-last input ``x``
    (N, P, C), contiguous, and its window index (Q, K) int64, contiguous (``pg-fuse{windows}``'s kernels). ``b`` is
    row-major with leading dim ``ldb`` or, with ``tb``, (O, K * C) row-major (the weight) with leading dim ``ldb``,
    read from its (K * C, O) copy made by ``<name>_pack`` first; ``c`` row-major with leading dim ``ldc``. Every
    size is compiled in; the register tile is ``mr`` rows by ``nv`` vectors of ``lanes`` (``window_tile``)."""

    t: str
    lanes: int
    n: int
    p: int
    c: int
    q: int
    k: int
    o: int
    ldb: int
    tb: bool
    ldc: int
    mr: int
    nv: int

    @property
    def name(self) -> str:
        return (
            f"pg_window_gemm_{self.t[0]}{self.lanes}_{self.n}_{self.p}_{self.c}_{self.q}_{self.k}_{self.o}_{self.ldb}"
            f"{'t' if self.tb else 'n'}_{self.ldc}_{self.mr}x{self.nv}"
        )


WINDOW_PARAMS = 9  # i64 words: (slot, byte offset) of x, the index, b and c; the address of b's copy (``tb``)
WINDOW_TILES = (
    (16, 16, 8, 1),
    (16, 32, 8, 2),
    (16, 1 << 62, 4, 4),
    (8, 8, 4, 1),
    (8, 1 << 62, 4, 2),
    (4, 1 << 62, 4, 2),
)
"""(lanes, at most this many output columns, mr, nv): the implicit GEMM's register tiles, first match wins (32
vector registers at 16 lanes of float32 or 8 of float64, AVX-512; 16 at 8 and 4, AVX2). Measured on the DDPM's
convolutions (``bench/tile_gemm.py``): 110-117 GFLOP/s on a Zen 4 core, as fast as the tile kernels on the
materialized windows, without writing them."""


WINDOW_RHS_TILES = {16: (8, 2), 8: (4, 2), 4: (4, 2)}
"""lanes -> (mr, nv) of the weight gradients' implicit GEMM (``WindowRhsGemm``): 100-114 GFLOP/s on the DDPM's at
16 lanes, where 16 x 1 (16 rows of a, 16 streams) reached 50."""


def window_tile(lanes: int, o: int) -> tuple[int, int] | None:
    """The (mr, nv) of :data:`WINDOW_TILES` for ``o`` output columns at ``lanes``, or None (no row at ``lanes``)."""
    for w, cols, mr, nv in WINDOW_TILES:
        if w == lanes and o <= cols:
            return mr, nv
    return None


def window_gemm_ir(g: WindowGemm) -> str:
    """``@<g.name>(ptr slots, ptr params, i64 lo, i64 hi)``: rows ``lo..hi`` of ``g``'s output (a nest-shaped entry
    of the CPU runtime's pool). For each tile of rows, each row's window origin ``x + n P C`` and index row ``q K``
    are computed once; the reduction runs over the taps (a pointer per row: ``+ index[q, k] C``) and, inside, the
    ``C`` channels, each a load of ``nv`` vectors of b and ``mr`` broadcasts."""
    t, w = g.t, g.lanes
    vt = f"<{w} x {t}>"
    ir = _Ir()
    ir(f"define void @{g.name}(ptr %slots, ptr %params, i64 %lo, i64 %hi) {{")
    ir("entry:")
    ir.operands(("x", "ix", "b0", "c"))
    kc = g.k * g.c
    b, ldb = "%b0", g.ldb
    if g.tb:  # b (O, K * C) read as (K * C, O): from the row-major copy that ``<name>_pack`` made
        ir(f"  %packp = getelementptr i64, ptr %params, i64 {WINDOW_PARAMS - 1}")
        ir("  %packa = load i64, ptr %packp")
        ir("  %pack = inttoptr i64 %packa to ptr")
        b, ldb = "%pack", g.o
    wide = w * g.nv
    full_cols = g.o // wide * wide
    lanes = "<" + ", ".join(f"i64 {i}" for i in range(w)) + ">"
    tail_mask = None
    if full_cols < g.o and (g.o - full_cols) % w:
        left = (g.o - full_cols) % w
        tail_mask = "<" + ", ".join(f"i1 {'true' if i < left else 'false'}" for i in range(w)) + ">"
    del lanes

    def tile(m0: str, n0: int, mr: int, vectors: list[str | None]) -> None:
        """Rows m0..m0+mr of c, vectors at columns n0 + lanes * v (each unmasked, or with its mask)."""
        nv = len(vectors)
        origins, irows = [], []
        for r in range(mr):
            m, n, q, xo, io = (ir.fresh(s) for s in ("m", "n", "q", "xo", "io"))
            ir(f"  {m} = add i64 {m0}, {r}")
            ir(f"  {n} = udiv i64 {m}, {g.q}")
            ir(f"  {q} = urem i64 {m}, {g.q}")
            ir(f"  {xo} = mul i64 {n}, {g.p * g.c}")
            ir(f"  {io} = mul i64 {q}, {g.k}")
            origins.append(xo)
            irows.append(io)
        acc0 = [["zeroinitializer" for _ in range(nv)] for _ in range(mr)]
        # taps: a loop carrying the accumulators; channels: a loop inside it
        tpre, tbody, tlatch, tdone = ir.label("tpre"), ir.label("tbody"), ir.label("tlatch"), ir.label("tdone")
        ir(f"  br label %{tpre}")
        ir(f"{tpre}:")
        ir(f"  br label %{tbody}")
        ir(f"{tbody}:")
        tap, tnext = ir.fresh("tap"), ir.fresh("tnext")
        tacc = [[ir.fresh(f"ta{r}_{v}_") for v in range(nv)] for r in range(mr)]
        tout = [[ir.fresh(f"to{r}_{v}_") for v in range(nv)] for r in range(mr)]
        ir(f"  {tap} = phi i64 [0, %{tpre}], [{tnext}, %{tlatch}]")
        for r in range(mr):
            for v in range(nv):
                ir(f"  {tacc[r][v]} = phi {vt} [{acc0[r][v]}, %{tpre}], [{tout[r][v]}, %{tlatch}]")
        rows = []
        for r in range(mr):
            ii, ip, iv, off, p = (ir.fresh(s) for s in ("ii", "ip", "iv", "off", "rp"))
            ir(f"  {ii} = add i64 {irows[r]}, {tap}")
            ir(f"  {ip} = getelementptr i64, ptr %ix, i64 {ii}")
            ir(f"  {iv} = load i64, ptr {ip}")
            ir(f"  {off} = mul i64 {iv}, {g.c}")
            ir(f"  {off}o = add i64 {off}, {origins[r]}")
            ir(f"  {p} = getelementptr {t}, ptr %x, i64 {off}o")
            rows.append(p)
        kbase = ir.fresh("kb")
        ir(f"  {kbase} = mul i64 {tap}, {g.c}")
        cpre, cbody, cdone = ir.label("cpre"), ir.label("cbody"), ir.label("cdone")
        ir(f"  br label %{cpre}")
        ir(f"{cpre}:")
        ir(f"  br label %{cbody}")
        ir(f"{cbody}:")
        ch, cnext = ir.fresh("ch"), ir.fresh("cnext")
        cacc = [[ir.fresh(f"ca{r}_{v}_") for v in range(nv)] for r in range(mr)]
        ir(f"  {ch} = phi i64 [0, %{cpre}], [{cnext}, %{cbody}]")
        for r in range(mr):
            for v in range(nv):
                ir(f"  {cacc[r][v]} = phi {vt} [{tacc[r][v]}, %{cpre}], [{tout[r][v]}, %{cbody}]")
        kk, bo = ir.fresh("kk"), ir.fresh("bo")
        ir(f"  {kk} = add i64 {kbase}, {ch}")
        ir(f"  {bo} = mul i64 {kk}, {ldb}")
        bvec = []
        for v, mask in enumerate(vectors):
            p = ir.fresh("bp")
            ir(f"  {p}o = add i64 {bo}, {n0 + v * w}")
            ir(f"  {p} = getelementptr {t}, ptr {b}, i64 {p}o")
            bvec.append(ir.load_vector(t, w, p, mask))
        for r in range(mr):
            p = ir.fresh("ap")
            ir(f"  {p} = getelementptr {t}, ptr {rows[r]}, i64 {ch}")
            splat = ir.broadcast(t, w, p)
            for v in range(nv):
                ir.fma(t, w, tout[r][v], splat, bvec[v], cacc[r][v])
        ir.backedge(ch, cnext, g.c, cbody, cdone)
        ir(f"  br label %{tlatch}")
        ir(f"{tlatch}:")
        ir.backedge(tap, tnext, g.k, tbody, tdone)
        starts = []
        for r in range(mr):
            co = ir.fresh("co")
            ir(f"  {co} = add i64 {m0}, {r}")
            ir(f"  {co}r = mul i64 {co}, {g.ldc}")
            starts.append(f"{co}r")
        ir.store_tile(t, w, starts, [str(n0 + v * w) for v in range(len(vectors))], tout, vectors)

    blocks: list[tuple[int, list[str | None]]] = [(n0, [None] * g.nv) for n0 in range(0, full_cols, wide)]
    for n0 in range(full_cols, g.o, w):  # the columns left: one vector at a time, the last one masked
        blocks.append((n0, [tail_mask if n0 + w > g.o else None]))

    def rows_of(mr: int):  # type: ignore[no-untyped-def]
        def body(m0: str) -> None:
            for n0, vectors in blocks:
                tile(m0, n0, mr, vectors)

        return body

    ir("  %span = sub i64 %hi, %lo")
    ir(f"  %fullr0 = udiv i64 %span, {g.mr}")
    ir(f"  %fullr1 = mul i64 %fullr0, {g.mr}")
    ir("  %fullr = add i64 %lo, %fullr1")
    _loop(ir, "%lo", "%fullr", g.mr, rows_of(g.mr), "wt")
    _loop(ir, "%fullr", "%hi", 1, rows_of(1), "wr")
    ir("  ret void")
    ir("}")
    if g.tb:
        _pack_ir(ir, g, kc)
    return "\n".join(ir.lines)


def _pack_ir(ir: _Ir, g: WindowGemm, kc: int) -> None:
    """``@<g.name>_pack(ptr slots, ptr params, i64 lo, i64 hi)``: rows ``lo..hi`` of the (K * C, O) row-major copy
    of a transposed b, at the address in the last parameter word."""
    t = g.t
    ir(f"define void @{g.name}_pack(ptr %slots, ptr %params, i64 %lo, i64 %hi) {{")
    ir("entry:")
    ir("  %bsp = getelementptr i64, ptr %params, i64 4")
    ir("  %bs = load i64, ptr %bsp")
    ir("  %bop = getelementptr i64, ptr %params, i64 5")
    ir("  %bo = load i64, ptr %bop")
    ir("  %bbp = getelementptr ptr, ptr %slots, i64 %bs")
    ir("  %bbase = load ptr, ptr %bbp")
    ir("  %b = getelementptr i8, ptr %bbase, i64 %bo")
    ir(f"  %packp = getelementptr i64, ptr %params, i64 {WINDOW_PARAMS - 1}")
    ir("  %packa = load i64, ptr %packp")
    ir("  %pack = inttoptr i64 %packa to ptr")

    def pack_row(kk: str) -> None:
        def pack_col(oo: str) -> None:
            o1, o2 = ir.fresh("o"), ir.fresh("o")
            ir(f"  {o1} = mul i64 {oo}, {g.ldb}")
            ir(f"  {o1}s = add i64 {o1}, {kk}")
            ir(f"  {o1}p = getelementptr {t}, ptr %b, i64 {o1}s")
            ir(f"  {o1}v = load {t}, ptr {o1}p")
            ir(f"  {o2} = mul i64 {kk}, {g.o}")
            ir(f"  {o2}s = add i64 {o2}, {oo}")
            ir(f"  {o2}p = getelementptr {t}, ptr %pack, i64 {o2}s")
            ir(f"  store {t} {o1}v, ptr {o2}p")

        _loop(ir, "0", str(g.o), 1, pack_col, "po")

    _loop(ir, "%lo", "%hi", 1, pack_row, "pk")
    ir("  ret void")
    ir("}")


@dataclass(frozen=True)
class WindowRhsGemm:
    """``c (O, K * C) = a (O, N * Q) @ windows (N * Q, K * C)``, the windows of :class:`WindowGemm` as the rhs (a
    convolution's weight gradient): ``a`` row-major with leading dim ``lda`` or, with ``ta``, (N * Q, O) row-major;
    ``c`` row-major with leading dim ``ldc``. ``C`` is a multiple of ``lanes`` (a vector of columns lies in one
    tap). The entry's units are vectors of columns; the register tile is ``mr`` rows by ``nv`` vectors."""

    t: str
    lanes: int
    n: int
    p: int
    c: int
    q: int
    k: int
    o: int
    lda: int
    ta: bool
    ldc: int
    mr: int
    nv: int

    @property
    def name(self) -> str:
        return (
            f"pg_window_rhs_gemm_{self.t[0]}{self.lanes}_{self.n}_{self.p}_{self.c}_{self.q}_{self.k}_{self.o}_"
            f"{self.lda}{'t' if self.ta else 'n'}_{self.ldc}_{self.mr}x{self.nv}"
        )


def window_rhs_gemm_ir(g: WindowRhsGemm) -> str:
    """``@<g.name>(ptr slots, ptr params, i64 lo, i64 hi)``: column vectors ``lo..hi`` of ``g``'s output (params:
    (slot, byte offset) of x, the index, a and c). Each vector's tap and channel offset are computed once; the
    reduction over the N * Q window positions carries the position's input row and index row (a step, and a wrap
    at Q), loads ``nv`` vectors of channels of its taps and broadcasts ``mr`` elements of a's column."""
    t, w = g.t, g.lanes
    vt = f"<{w} x {t}>"
    assert g.c % w == 0, "a vector of columns must lie in one tap"
    ir = _Ir()
    ir(f"define void @{g.name}(ptr %slots, ptr %params, i64 %lo, i64 %hi) {{")
    ir("entry:")
    ir.operands(("x", "ix", "a", "c"))
    positions = g.n * g.q

    def tile(v0: str, o0: str, mr: int, nv: int) -> None:
        taps, chans, cols = [], [], []
        for v in range(nv):
            col, tap, ch = ir.fresh("col"), ir.fresh("tap"), ir.fresh("ch")
            ir(f"  {col}v = add i64 {v0}, {v}")
            ir(f"  {col} = mul i64 {col}v, {w}")
            ir(f"  {tap} = udiv i64 {col}, {g.c}")
            ir(f"  {ch} = urem i64 {col}, {g.c}")
            taps.append(tap)
            chans.append(ch)
            cols.append(col)
        pre, body, done = ir.label("mpre"), ir.label("mbody"), ir.label("mdone")
        ir(f"  br label %{pre}")
        ir(f"{pre}:")
        ir(f"  br label %{body}")
        ir(f"{body}:")
        m, mnext, q, xrow, irow = (ir.fresh(s) for s in ("m", "mnext", "q", "xrow", "irow"))
        qn, xn, irn = ir.fresh("qn"), ir.fresh("xn"), ir.fresh("irn")
        acc = [[ir.fresh(f"acc{r}_{v}_") for v in range(nv)] for r in range(mr)]
        new = [[ir.fresh(f"new{r}_{v}_") for v in range(nv)] for r in range(mr)]
        ir(f"  {m} = phi i64 [0, %{pre}], [{mnext}, %{body}]")
        ir(f"  {q} = phi i64 [0, %{pre}], [{qn}, %{body}]")
        ir(f"  {xrow} = phi i64 [0, %{pre}], [{xn}, %{body}]")
        ir(f"  {irow} = phi i64 [0, %{pre}], [{irn}, %{body}]")
        for r in range(mr):
            for v in range(nv):
                ir(f"  {acc[r][v]} = phi {vt} [zeroinitializer, %{pre}], [{new[r][v]}, %{body}]")
        bvec = []
        for v in range(nv):
            ii, iv, off, p = (ir.fresh(s) for s in ("ii", "iv", "off", "bp"))
            ir(f"  {ii} = add i64 {irow}, {taps[v]}")
            ir(f"  {ii}p = getelementptr i64, ptr %ix, i64 {ii}")
            ir(f"  {iv} = load i64, ptr {ii}p")
            ir(f"  {off} = mul i64 {iv}, {g.c}")
            ir(f"  {off}x = add i64 {off}, {xrow}")
            ir(f"  {off}c = add i64 {off}x, {chans[v]}")
            ir(f"  {p} = getelementptr {t}, ptr %x, i64 {off}c")
            bvec.append(ir.load_vector(t, w, p, None))
        for r in range(mr):
            row, off, p = (ir.fresh(s) for s in ("row", "ao", "ap"))
            ir(f"  {row} = add i64 {o0}, {r}")
            if g.ta:  # a (N * Q, O) row-major
                ir(f"  {off}m = mul i64 {m}, {g.lda}")
                ir(f"  {off} = add i64 {off}m, {row}")
            else:
                ir(f"  {off}m = mul i64 {row}, {g.lda}")
                ir(f"  {off} = add i64 {off}m, {m}")
            ir(f"  {p} = getelementptr {t}, ptr %a, i64 {off}")
            splat = ir.broadcast(t, w, p)
            for v in range(nv):
                ir.fma(t, w, new[r][v], splat, bvec[v], acc[r][v])
        # the next window position: q + 1, or the next image's first (x's row by P C, the index from its start)
        wrap = ir.fresh("wrap")
        ir(f"  {q}1 = add i64 {q}, 1")
        ir(f"  {wrap} = icmp eq i64 {q}1, {g.q}")
        ir(f"  {qn} = select i1 {wrap}, i64 0, i64 {q}1")
        ir(f"  {xrow}1 = add i64 {xrow}, {g.p * g.c}")
        ir(f"  {xn} = select i1 {wrap}, i64 {xrow}1, i64 {xrow}")
        ir(f"  {irow}1 = add i64 {irow}, {g.k}")
        ir(f"  {irn} = select i1 {wrap}, i64 0, i64 {irow}1")
        ir.backedge(m, mnext, positions, body, done)
        starts = []
        for r in range(mr):
            row = ir.fresh("crow")
            ir(f"  {row} = add i64 {o0}, {r}")
            ir(f"  {row}o = mul i64 {row}, {g.ldc}")
            starts.append(f"{row}o")
        ir.store_tile(t, w, starts, cols, new, [None] * nv)

    full_rows = g.o // g.mr * g.mr

    def vectors(nv: int):  # type: ignore[no-untyped-def]
        def body(v0: str) -> None:
            _loop(ir, "0", str(full_rows), g.mr, lambda o0: tile(v0, o0, g.mr, nv), "ot")
            _loop(ir, str(full_rows), str(g.o), 1, lambda o0: tile(v0, o0, 1, nv), "or")

        return body

    ir("  %span = sub i64 %hi, %lo")
    ir(f"  %fullv0 = udiv i64 %span, {g.nv}")
    ir(f"  %fullv1 = mul i64 %fullv0, {g.nv}")
    ir("  %fullv = add i64 %lo, %fullv1")
    _loop(ir, "%lo", "%fullv", g.nv, vectors(g.nv), "vt")
    _loop(ir, "%fullv", "%hi", 1, vectors(1), "vr")
    ir("  ret void")
    ir("}")
    return "\n".join(ir.lines)
