"""BLAS products called from native code: ``cblas_?gemm`` of the OpenBLAS that numpy loaded, for ``cpu_jit``.

At several threads a product of the CPU runtime was one ``np.matmul`` per block, each block a Python callback on
a thread of the pool (``cpu_pool.callback``): every block took the GIL to start, the calling thread held it between
steps, and a waiting thread got it late (the names transformer's 0.2 ms products were no faster at two threads
than at one). Here a product is a *gemm entry*: a nest-shaped LLVM function ``pg_gemm_<f32|f64>(slots, params, lo,
hi)`` that calls the BLAS's ``cblas_sgemm``/``cblas_dgemm`` (its address, found through ``threadpoolctl``, is in the
parameters) for units ``lo..hi`` of one dimension of the product: rows of the output, its columns, or its batch. As
a nest, it is one entry of a pool job (``cpu_pool.NEST``, no Python and no GIL on any thread) or one ``ctypes``
call on the calling thread.

:func:`describe` reads a product's operands as numpy views (shape, strides, byte offset from the start of a buffer
of the runtime's slot table) and gives its parameters, or None when BLAS cannot take them as they are (an output
not row-major, an operand neither row- nor column-major in its last two dims, batch dims without one stride each, a
non-float dtype, or overlapping operands): such a product stays with ``np.matmul``. The BLAS must run each call on
its calling thread (``threads.single_threaded_blas``), as it does within a threaded call of ``cpu_jit``.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from picograd.target import llvm_gemm

Compile = Callable[[str, Sequence[str]], tuple[Any, list[int]]]

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values
SPLIT_ROWS, SPLIT_COLS, SPLIT_BATCH = 0, 1, 2  # the dimension a gemm entry's units run over
WORDS = 23  # i64 words of a product's parameters (``Gemm.params``)
_FLOATS: dict[np.dtype, tuple[str, str, str]] = {
    np.dtype(np.float32): ("f32", "float", "s"),
    np.dtype(np.float64): ("f64", "double", "d"),
}

# the symbols of the cblas functions, tried in order: (prefix, suffix, int type): numpy's wheels carry
# scipy-openblas (64-bit ints, ``scipy_`` and ``64_`` on every name), a system OpenBLAS has the plain names
_SYMBOLS = (("scipy_cblas_", "64_", "i64"), ("cblas_", "64_", "i64"), ("scipy_cblas_", "", "i32"), ("cblas_", "", "?"))


def _ir(kind: str, t: str, it: str) -> str:
    """``pg_gemm_<kind>(ptr slots, ptr params, i64 lo, i64 hi)``: units ``lo..hi`` of the product (see ``Gemm``);
    ``t`` is the float type, ``it`` the BLAS's int type (``i64`` or ``i32``)."""
    loads = "\n".join(
        f"  %p{i} = getelementptr i64, ptr %params, i64 {i}\n  %w{i} = load i64, ptr %p{i}" for i in range(WORDS)
    )
    ints = {"m": "%m", "n": "%n", "k": "%w5", "lda": "%w6", "ldb": "%w7", "ldc": "%w8"}
    casts = ["  %ta = trunc i64 %w1 to i32", "  %tb = trunc i64 %w2 to i32"]
    if it == "i32":
        casts += [f"  %{x}_ = trunc i64 {v} to i32" for x, v in ints.items()]
        ints = {x: f"%{x}_" for x in ints}
    m, n, k, lda, ldb, ldc = (f"{it} {ints[x]}" for x in ("m", "n", "k", "lda", "ldb", "ldc"))
    cast_lines = "\n".join(casts)
    return f"""
define void @pg_gemm_{kind}(ptr %slots, ptr %params, i64 %lo, i64 %hi) {{
entry:
{loads}
  %fn = inttoptr i64 %w0 to ptr
  %units = sub i64 %hi, %lo
  %rows = icmp eq i64 %w19, {SPLIT_ROWS}
  %cols = icmp eq i64 %w19, {SPLIT_COLS}
  %batches = icmp eq i64 %w19, {SPLIT_BATCH}
  %m = select i1 %rows, i64 %units, i64 %w3
  %n = select i1 %cols, i64 %units, i64 %w4
  %nb = select i1 %batches, i64 %units, i64 %w9
{cast_lines}
  %sa = getelementptr i64, ptr %slots, i64 %w10
  %a0 = load i64, ptr %sa
  %sb = getelementptr i64, ptr %slots, i64 %w13
  %b0 = load i64, ptr %sb
  %sc = getelementptr i64, ptr %slots, i64 %w16
  %c0 = load i64, ptr %sc
  %ua = mul i64 %lo, %w20
  %ub = mul i64 %lo, %w21
  %uc = mul i64 %lo, %w22
  %a1 = add i64 %a0, %w11
  %a2 = add i64 %a1, %ua
  %b1 = add i64 %b0, %w14
  %b2 = add i64 %b1, %ub
  %c1 = add i64 %c0, %w17
  %c2 = add i64 %c1, %uc
  %none = icmp sle i64 %nb, 0
  br i1 %none, label %out, label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %oa = mul i64 %i, %w12
  %ob = mul i64 %i, %w15
  %oc = mul i64 %i, %w18
  %xa = add i64 %a2, %oa
  %xb = add i64 %b2, %ob
  %xc = add i64 %c2, %oc
  %pa = inttoptr i64 %xa to ptr
  %pb = inttoptr i64 %xb to ptr
  %pc = inttoptr i64 %xc to ptr
  call void %fn(i32 {ROW_MAJOR}, i32 %ta, i32 %tb, {m}, {n}, {k}, {t} 1.0, ptr %pa, {lda}, ptr %pb, {ldb}, \
{t} 0.0, ptr %pc, {ldc})
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %nb
  br i1 %more, label %loop, label %out
out:
  ret void
}}
"""


class Blas:
    """The ``cblas_?gemm`` functions of numpy's BLAS (OpenBLAS, found through ``threadpoolctl``) and the native
    ``pg_gemm`` entries calling them, compiled with ``compile``. ``Blas.find(compile)`` is None when there is no such
    library (no ``threadpoolctl``, another BLAS)."""

    def __init__(self, compile: Compile, gemm: dict[str, int], int_type: str, lanes: int = 0):
        self.gemm = gemm  # numpy dtype str -> address of cblas_sgemm / cblas_dgemm
        self.int_type = int_type  # the BLAS's ints: "i64" or "i32"
        self.lanes = lanes  # float32 lanes of the host's vectors for the tile kernels (``llvm_gemm``); 0: none
        self.compile = compile
        self.tiles: dict[llvm_gemm.GemmKernel, tuple[Any, int]] = {}  # compiled tile kernels: (engine, address)
        texts, names = [], []
        for dtype in gemm:
            kind, t, _ = _FLOATS[np.dtype(dtype)]
            texts.append(_ir(kind, t, int_type))
            names.append(f"pg_gemm_{kind}")
        self.engine, found = compile("\n".join(texts), names)  # the engine is kept alive
        self.entry = dict(zip(gemm, found, strict=True))  # numpy dtype str -> address of pg_gemm_<kind>

    def tile_gemm(self, dtype: np.dtype, ta: bool, tb: bool, m: int, n: int, k: int, lda: int) -> int | None:
        """The address of the tile kernel (``llvm_gemm``, compiled on first use) taking a float32 product of an (m,
        n) output that ``llvm_gemm.tile_for`` gives a tile (A's leading dim ``lda``), called as ``cblas_sgemm``;
        None: the BLAS's."""
        if dtype != np.float32 or not self.lanes or 0 in (m, n, k):
            return None
        tile = llvm_gemm.tile_for(self.lanes, m, n, k, 0 if ta else lda * dtype.itemsize)
        if tile is None or (tb and k * n * dtype.itemsize > llvm_gemm.PACK_LIMIT):
            return None
        kernel = llvm_gemm.GemmKernel("float", self.lanes, ta, tb, *tile, it=self.int_type)
        if kernel not in self.tiles:
            engine, (address,) = self.compile(
                llvm_gemm.gemm_ir(kernel) + "\n" + llvm_gemm.declarations([kernel]), [kernel.name]
            )
            self.tiles[kernel] = (engine, address)
        return self.tiles[kernel][1]

    @staticmethod
    def find(compile: Compile, lanes: int = 0) -> Blas | None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return None
        for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
            try:
                handle = ctypes.CDLL(lib.filepath)
            except OSError:
                continue
            for prefix, suffix, int_type in _SYMBOLS:
                try:
                    fns = {d.str: getattr(handle, f"{prefix}{c}gemm{suffix}") for d, (_, _, c) in _FLOATS.items()}
                except AttributeError:
                    continue
                if int_type == "?":  # plain names: 64-bit ints where the build says so
                    config = getattr(handle, "openblas_get_config", None)
                    if config is None:
                        continue
                    config.restype = ctypes.c_char_p
                    int_type = "i64" if b"USE64BITINT" in (config() or b"") else "i32"
                gemm = {k: ctypes.cast(f, ctypes.c_void_p).value or 0 for k, f in fns.items()}
                return Blas(compile, gemm, int_type, lanes)
        return None


class Gemm:
    """One product ``c = a @ b`` as BLAS calls, for :func:`describe`: ``params(split)`` are the ``WORDS`` i64 words
    that ``pg_gemm_<kind>`` (at ``entry``) reads: the cblas function, the transposes, M, N, K, the leading dims, the
    batch count, each operand's slot, byte offset and batch stride in bytes, the split dimension and each operand's
    bytes per unit of it. ``flops`` counts the product's. Keep the object alive while its params may be read."""

    def __init__(
        self,
        head: list[int],
        per_unit: dict[int, tuple[int, int, int]],
        units: dict[int, int],
        entry: int,
        tiled: bool = False,
    ):
        self.head, self.per_unit, self.units, self.entry = head, per_unit, units, entry
        self.tiled = tiled  # the call is a tile kernel's (``llvm_gemm``), not the BLAS's
        _, _, _, m, n, k, _, _, _, nb = head[:10]
        self.flops = 2 * nb * m * n * k
        self._params: dict[int, Any] = {}

    def split(self, threads: int) -> int:
        """The dimension to cut between ``threads``: the batch when it has at least two matrices a thread, else the
        longer of the output's rows and columns."""
        if self.units[SPLIT_BATCH] >= 2 * threads:
            return SPLIT_BATCH
        return SPLIT_ROWS if self.units[SPLIT_ROWS] >= self.units[SPLIT_COLS] else SPLIT_COLS

    def params(self, split: int) -> int:
        """The address of the parameters for units along ``split`` (made once)."""
        if split not in self._params:
            self._params[split] = (ctypes.c_int64 * WORDS)(*self.head, split, *self.per_unit[split])
        return ctypes.addressof(self._params[split])


def matrix_layout(shape: tuple[int, ...], strides: tuple[int, ...], item: int) -> tuple[int, int] | None:
    """(CBLAS transpose, leading dim) of a matrix of ``shape`` (rows, cols) and byte ``strides``, or None."""
    (r, c), (sr, sc) = shape, strides
    if sr % item or sc % item or sr < 0 or sc < 0:
        return None
    if (sc == item or c == 1) and (r == 1 or sr >= c * item):  # row-major (rows may be padded)
        return NO_TRANS, max(c, 1) if r == 1 else sr // item
    if (sr == item or r == 1) and (c == 1 or sc >= r * item):  # column-major
        return TRANS, max(r, 1) if c == 1 else sc // item
    return None


def _batch_stride(a: np.ndarray, batch: tuple[int, ...]) -> int | None:
    """The one byte stride between consecutive matrices of ``a`` broadcast to ``batch`` (C order), or None."""
    nb = math.prod(batch)
    if nb <= 1:
        return 0
    strides = np.broadcast_to(a, batch + a.shape[-2:]).strides[: len(batch)]
    offsets = sum(
        np.arange(n, dtype=np.int64).reshape([-1] + [1] * (len(batch) - d - 1)) * s
        for d, (n, s) in enumerate(zip(batch, strides, strict=True))
    )
    flat = np.broadcast_to(offsets, batch).reshape(-1)
    step = int(flat[1] - flat[0])
    return step if np.array_equal(flat, np.arange(nb, dtype=np.int64) * step) else None


def describe(blas: Blas, a: np.ndarray, b: np.ndarray, c: np.ndarray, at: Sequence[tuple[int, int]]) -> Gemm | None:
    """A :class:`Gemm` computing ``c = a @ b`` (numpy's matmul of 2-D or batched operands, ``c`` of the broadcast
    shape), or None (see the module docstring). ``at`` gives each of ``a``, ``b``, ``c`` as (slot, byte offset of
    the view from the start of the slot's buffer)."""
    dtype = c.dtype
    if dtype not in _FLOATS or a.dtype != dtype or b.dtype != dtype or a.ndim < 2 or b.ndim < 2:
        return None
    if dtype.str not in blas.gemm:
        return None
    item = dtype.itemsize
    (m, k), n = a.shape[-2:], b.shape[-1]
    if b.shape[-2] != k or c.shape[-2:] != (m, n) or 0 in c.shape:
        return None
    if any(np.shares_memory(c, x) for x in (a, b)):
        return None
    batch = c.shape[:-2]
    if np.broadcast_shapes(a.shape[:-2], b.shape[:-2], batch) != batch:
        return None
    ma, mb, mc = matrix_layout((m, k), a.strides[-2:], item), matrix_layout((k, n), b.strides[-2:], item), None
    if c.strides[-1] == item and (m == 1 or c.strides[-2] >= n * item) and c.strides[-2] % item == 0:
        mc = max(n, 1) if m == 1 else c.strides[-2] // item
    strides = [_batch_stride(x, batch) for x in (a, b, c)]
    if ma is None or mb is None or mc is None or None in strides or k == 0:
        return None
    sa, sb, sc = (int(s) for s in strides)  # type: ignore[arg-type]
    nb = math.prod(batch)
    (ta, lda), (tb, ldb) = ma, mb
    tile = blas.tile_gemm(dtype, ta == TRANS, tb == TRANS, m, n, k, lda)
    head = [tile if tile is not None else blas.gemm[dtype.str], ta, tb, m, n, k, lda, ldb, mc, nb]
    for (slot, offset), s in zip(at, (sa, sb, sc), strict=True):
        head += [slot, offset, s]
    per_unit = {
        SPLIT_ROWS: (a.strides[-2], 0, c.strides[-2]),
        SPLIT_COLS: (0, b.strides[-1], item),
        SPLIT_BATCH: (sa, sb, sc),
    }
    units = {SPLIT_ROWS: m, SPLIT_COLS: n, SPLIT_BATCH: nb}
    return Gemm(head, per_unit, units, blas.entry[dtype.str], tile is not None)
