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


def tile_for(lanes: int, m: int, n: int, k: int) -> tuple[int, int] | None:
    """The (mr, nv) of the first rule of :data:`TILE_RULES` taking an (m, n) output of a reduction of k at
    ``lanes``, or None (BLAS)."""
    if m * n * k < MIN_WORK:
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
    item = 4 if t == "float" else 8
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
            col, p, x = ir.fresh("bc"), ir.fresh("bp"), ir.fresh("bv")
            ir(f"  {col} = add i64 {bo}, {n0}")
            ir(f"  {p} = getelementptr {t}, ptr {b}, i64 {col}")
            if v:
                ir(f"  {p}v = getelementptr {t}, ptr {p}, i64 {v * w}")
                p = f"{p}v"
            if mask is not None:
                ir(
                    f"  {x} = call {vt} @llvm.masked.load.v{w}{_suffix(t)}.p0(ptr {p}, i32 {item}, <{w} x i1> {mask}, "
                    f"{vt} zeroinitializer)"
                )
            else:
                ir(f"  {x} = load {vt}, ptr {p}, align {item}")
            bvec.append(x)
        for r in range(mr):
            off, p, x, ins, splat = (ir.fresh(s) for s in ("ao", "ap", "a", "ai", "as"))
            if kernel.ta:  # A (k, m) row-major
                ir(f"  {off} = mul i64 {kk}, %lda")
                ir(f"  {off}r = add i64 {off}, {rows[r]}")
            else:
                ir(f"  {off} = mul i64 {rows[r]}, %lda")
                ir(f"  {off}r = add i64 {off}, {kk}")
            ir(f"  {p} = getelementptr {t}, ptr %a, i64 {off}r")
            ir(f"  {x} = load {t}, ptr {p}")
            ir(f"  {ins} = insertelement {vt} poison, {t} {x}, i64 0")
            ir(f"  {splat} = shufflevector {vt} {ins}, {vt} poison, <{w} x i32> zeroinitializer")
            for v in range(nv):
                ir(
                    f"  {new[r][v]} = call {vt} @llvm.fma.v{w}{_suffix(t)}({vt} {splat}, {vt} {bvec[v]}, "
                    f"{vt} {acc[r][v]})"
                )
        ir(f"  {knext} = add i64 {kk}, 1")
        kmore = ir.fresh("kmore")
        ir(f"  {kmore} = icmp slt i64 {knext}, %k")
        ir(f"  br i1 {kmore}, label %{body}, label %{done}")
        ir(f"{done}:")
        for r in range(mr):
            co = ir.fresh("co")
            ir(f"  {co} = mul i64 {rows[r]}, %ldc")
            ir(f"  {co}n = add i64 {co}, {n0}")
            for v in range(nv):
                p = ir.fresh("cp")
                ir(f"  {p} = getelementptr {t}, ptr %c, i64 {co}n")
                if v:
                    ir(f"  {p}v = getelementptr {t}, ptr {p}, i64 {v * w}")
                    p = f"{p}v"
                if mask is not None:
                    ir(
                        f"  call void @llvm.masked.store.v{w}{_suffix(t)}.p0({vt} {new[r][v]}, ptr {p}, i32 {item}, "
                        f"<{w} x i1> {mask})"
                    )
                else:
                    ir(f"  store {vt} {new[r][v]}, ptr {p}, align {item}")

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
