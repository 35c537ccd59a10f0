"""Implicit-GEMM products of a convolution's windows, for ``cpu_jit``: the kernels ``pg-fuse{windows}`` forms (a
gather of rows, the im2col windows, read only as one operand of a matmul) run as ``llvm_gemm.WindowGemm`` (windows
as the lhs: a forward or input gradient) or ``llvm_gemm.WindowRhsGemm`` (as the rhs: a weight gradient) entries
that read the windows through the index instead of a written im2col matrix.

:func:`Windows.describe` takes the product's operands as numpy views of the runtime's buffers (the padded
channels-last input ``x`` (N, P, C), the index (Q, K), the rhs (K * C, O) and the output (N * Q, O), unit batch
dims allowed) with each one's (slot, byte offset), and gives a :class:`WindowProduct` (its pool entries), or None
when the views are not of that form (non-contiguous ``x`` or index, a dtype other than float32/float64, an output
not row-major): ``cpu_jit`` then runs the launch's ``pg`` ops with numpy. The index must hold positions in ``[0,
P)``, which ``pg-decompose-conv`` builds (``_window_index``); the kernel does not check them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from picograd.runtime import cpu_blas, cpu_pool
from picograd.target import llvm_gemm

Compile = Callable[[str, Sequence[str]], tuple[Any, list[int]]]
_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


class WindowProduct:
    """One implicit-GEMM product: ``entries(...)`` are its pool entries (the copy of a transposed rhs, then the
    ``units`` of the output, rows or column vectors), ``flops`` its count. Holds its parameters and the rhs copy:
    keep it alive while its entries may run."""

    tiled = True

    def __init__(
        self,
        kernel: llvm_gemm.WindowGemm | llvm_gemm.WindowRhsGemm,
        main: int,
        pack: int | None,
        words: list[int],
        units: int,
        flops: int,
    ):
        self.kernel, self.main, self.pack, self.units, self.flops = kernel, main, pack, units, flops
        self.scratch = np.empty(kernel.k * kernel.c * kernel.o if pack else 0, _dtype(kernel.t))
        self.words = (ctypes.c_int64 * llvm_gemm.WINDOW_PARAMS)(*words, self.scratch.ctypes.data)

    def entries(self, threads: int, split_flops: int, per_thread: int) -> list[tuple[int, int, int, int, int, int]]:
        """The pool entries at ``threads``: a product of at least ``split_flops`` in up to ``per_thread`` pieces a
        thread (claimed dynamically), each of at least 64 rows or 4 column vectors."""
        params = ctypes.addressof(self.words)
        least = 64 if isinstance(self.kernel, llvm_gemm.WindowGemm) else 4
        pieces = 1
        if self.flops >= split_flops and self.units >= 2 * least:
            pieces = max(min(threads * per_thread, self.units // least), min(threads, self.units))
        made = []
        if self.pack is not None:
            made.append((self.pack, params, 0, self.kernel.k * self.kernel.c, 1, cpu_pool.NEST))
        made.append((self.main, params, 0, self.units, pieces, cpu_pool.NEST))
        return made


def _dtype(t: str) -> np.dtype:
    return np.dtype(np.float32 if t == "float" else np.float64)


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` without its leading unit dims, as a matrix."""
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a


class Windows:
    """The window products' kernels, compiled with ``compile`` on first use (one per shape) for vectors of
    ``lanes`` float32 lanes (16 with AVX-512, else 8)."""

    def __init__(self, compile: Compile, lanes: int):
        self.compile, self.lanes = compile, lanes
        self.kernels: dict[llvm_gemm.WindowGemm | llvm_gemm.WindowRhsGemm, tuple[Any, int, int | None]] = {}

    def describe(
        self, x: np.ndarray, index: np.ndarray, b: np.ndarray, c: np.ndarray, at: Sequence[tuple[int, int]]
    ) -> WindowProduct | None:
        """The product ``c = windows(x, index) @ b`` (see the module docstring); ``at`` gives (slot, byte offset)
        of ``x``, ``index``, ``b`` and ``c``. None when the views are not of the kernel's form."""
        found = _operands(x, index, b, c)
        if found is None:
            return None
        t, b, c, ldc = found
        (n, p, ch), (q, k), o = x.shape, index.shape, c.shape[1]
        layout = cpu_blas.matrix_layout(b.shape, b.strides, c.itemsize)
        lanes = self.lanes if t == "float" else self.lanes // 2
        tile = llvm_gemm.window_tile(lanes, o)
        if c.shape[0] != n * q or b.shape != (k * ch, o) or layout is None or tile is None:
            return None
        tb = layout[0] == cpu_blas.TRANS
        kernel = llvm_gemm.WindowGemm(t, lanes, n, p, ch, q, k, o, layout[1], tb, ldc, *tile)
        main, pack = self._compiled(kernel, [kernel.name, f"{kernel.name}_pack"] if tb else [kernel.name])
        return WindowProduct(kernel, main, pack, [w for place in at for w in place], n * q, 2 * n * q * k * ch * o)

    def describe_rhs(
        self, x: np.ndarray, index: np.ndarray, a: np.ndarray, c: np.ndarray, at: Sequence[tuple[int, int]]
    ) -> WindowProduct | None:
        """The product ``c = a @ windows(x, index)`` (a weight gradient, ``llvm_gemm.WindowRhsGemm``); ``at`` gives
        (slot, byte offset) of ``x``, ``index``, ``a`` and ``c``. None when the views are not of the kernel's form,
        or no vector width divides the channels (``rhs_lanes``)."""
        found = _operands(x, index, a, c)
        if found is None:
            return None
        t, a, c, ldc = found
        (n, p, ch), (q, k), o = x.shape, index.shape, c.shape[0]
        layout = cpu_blas.matrix_layout(a.shape, a.strides, c.itemsize)
        lanes = rhs_lanes(self.lanes if t == "float" else self.lanes // 2, ch)
        if a.shape != (o, n * q) or c.shape[1] != k * ch or layout is None or lanes not in llvm_gemm.WINDOW_RHS_TILES:
            return None
        ta = layout[0] == cpu_blas.TRANS
        tile = llvm_gemm.WINDOW_RHS_TILES[lanes]
        kernel = llvm_gemm.WindowRhsGemm(t, lanes, n, p, ch, q, k, o, layout[1], ta, ldc, *tile)
        main, _ = self._compiled(kernel, [kernel.name])
        words = [w for place in at for w in place]
        return WindowProduct(kernel, main, None, words, k * ch // lanes, 2 * n * q * k * ch * o)

    def _compiled(
        self, kernel: llvm_gemm.WindowGemm | llvm_gemm.WindowRhsGemm, names: list[str]
    ) -> tuple[int, int | None]:
        """The addresses of ``kernel``'s product function and its rhs copy (``names``: one or both), compiled once."""
        if kernel not in self.kernels:
            engine, found = self.compile(window_module(kernel), names)
            self.kernels[kernel] = (engine, found[0], found[1] if len(found) > 1 else None)
        _, main, pack = self.kernels[kernel]
        return main, pack


def _operands(
    x: np.ndarray, index: np.ndarray, other: np.ndarray, c: np.ndarray
) -> tuple[str, np.ndarray, np.ndarray, int] | None:
    """The element type, ``other`` and ``c`` as matrices, and ``c``'s leading dim, where ``x`` (N, P, C) and the
    index (Q, K) int64 are contiguous and nonempty, ``c`` row-major and every float operand of one type; else None."""
    t = _TYPES.get(c.dtype)
    other, c = _rows(other), _rows(c)
    if t is None or x.dtype != c.dtype or other.dtype != c.dtype or index.dtype != np.int64:
        return None
    if x.ndim != 3 or index.ndim != 2 or other.ndim != 2 or c.ndim != 2 or 0 in (*x.shape, *index.shape, *c.shape):
        return None
    item = c.itemsize
    (_, p, ch), (_, k) = x.shape, index.shape
    if x.strides != (p * ch * item, ch * item, item) or index.strides != (k * 8, 8):
        return None
    layout = cpu_blas.matrix_layout(c.shape, c.strides, item)
    if layout is None or layout[0] != cpu_blas.NO_TRANS:
        return None
    return t, other, c, layout[1]


def rhs_lanes(lanes: int, channels: int) -> int:
    """The widest vector of ``lanes``, half or a quarter of them (at least 4) whose lanes divide ``channels`` (a
    vector of a weight gradient's columns must lie in one tap), or 0."""
    for w in (lanes, lanes // 2, lanes // 4):
        if w >= 4 and channels % w == 0:
            return w
    return 0


def window_module(kernel: llvm_gemm.WindowGemm | llvm_gemm.WindowRhsGemm) -> str:
    """The LLVM module of one window product's functions (with the intrinsics they call)."""
    if isinstance(kernel, llvm_gemm.WindowRhsGemm):
        text = llvm_gemm.window_rhs_gemm_ir(kernel)
    else:
        text = llvm_gemm.window_gemm_ir(kernel)
    return text + "\n" + llvm_gemm.declarations([llvm_gemm.GemmKernel(kernel.t, kernel.lanes, False, False, 1, 1)])
