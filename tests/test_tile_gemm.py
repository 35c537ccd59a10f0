"""The CPU runtime's tile GEMM kernels (``picograd.target.llvm_gemm``): the kernel alone on odd shapes, padded
leading dims and every transpose, against float64 numpy; ``cpu_blas.describe`` choosing it by ``TILE_RULES``; and
compiled convolution steps running on it at one and two threads against PyTorch."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

import picograd as pg
from picograd.runtime import cpu_blas, cpu_jit, cpu_windows
from picograd.target import llvm_gemm

_I = ctypes.c_int64
_GEMM = ctypes.CFUNCTYPE(
    None, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _I, _I, _I, ctypes.c_float, ctypes.c_void_p, _I,
    ctypes.c_void_p, _I, ctypes.c_float, ctypes.c_void_p, _I,
)  # fmt: skip
_KEEP: list[object] = []  # the engines of the kernels compiled here


def _kernel(kernel: llvm_gemm.GemmKernel):  # type: ignore[no-untyped-def]
    engine, (address,) = cpu_jit.host_llvm().compile(
        llvm_gemm.gemm_ir(kernel) + "\n" + llvm_gemm.declarations([kernel]), [kernel.name]
    )
    _KEEP.append(engine)
    return _GEMM(address)


@pytest.mark.parametrize("ta", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("tb", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("tile", [(8, 1), (16, 1), (8, 2), (4, 4), (1, 1)], ids=lambda t: f"{t[0]}x{t[1]}")
def test_the_kernel_on_odd_shapes_and_padded_leading_dims(ta: bool, tb: bool, tile, rng: np.random.Generator) -> None:
    """Rows and columns left over by the tile (one row at a time, a masked last vector), k of 1, leading dims
    larger than the matrices: float64 numpy's product in the output, and the output's padding untouched."""
    f = _kernel(llvm_gemm.GemmKernel("float", 16, ta, tb, *tile))
    for m, n, k in [(1, 1, 1), (7, 5, 3), (33, 17, 9), (8, 16, 1), (9, 47, 13), (64, 33, 20), (3, 100, 7), (17, 64, 5)]:
        pad_a, pad_b, pad_c = (int(x) for x in rng.integers(0, 4, 3))
        a = rng.standard_normal((k, m + pad_a) if ta else (m, k + pad_a)).astype(np.float32)
        b = rng.standard_normal((n, k + pad_b) if tb else (k, n + pad_b)).astype(np.float32)
        c = np.full((m, n + pad_c), np.nan, np.float32)
        f(101, 112 if ta else 111, 112 if tb else 111, m, n, k, 1.0, a.ctypes.data, a.shape[1], b.ctypes.data,
          b.shape[1], 0.0, c.ctypes.data, c.shape[1])  # fmt: skip
        av = a[:, :m].T if ta else a[:, :k]
        bv = b[:, :k].T if tb else b[:, :n]
        want = av.astype(np.float64) @ bv.astype(np.float64)
        np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-5, err_msg=f"{m}x{n}x{k}")
        assert np.isnan(c[:, n:]).all(), f"{m}x{n}x{k}: the kernel wrote past column n"


def test_the_rules_pick_tiles_for_narrow_products_only() -> None:
    """The convolutions' products (many rows, 16 or 32 columns; few rows, many columns) take a tile; a square
    product, a product of fewer than MIN_WORK multiply-adds, a single row or column, or a host without 16-lane
    vectors keep the BLAS."""
    assert llvm_gemm.tile_for(16, 8192, 16, 144) == (8, 1)
    assert llvm_gemm.tile_for(16, 2048, 32, 288) == (16, 1)
    assert llvm_gemm.tile_for(16, 32, 288, 2048) == (8, 2)
    for m, n, k in [(512, 512, 512), (128, 64, 16), (8192, 1, 144), (1, 144, 8192)]:
        assert llvm_gemm.tile_for(16, m, n, k) is None, (m, n, k)
    assert llvm_gemm.tile_for(8, 8192, 16, 144) is None
    # rows of A 32 KiB apart alias in the level-1 cache's sets: BLAS (which packs A); 64 bytes more, the tile
    assert llvm_gemm.tile_for(16, 16, 288, 8192, 8192 * 4) is None
    assert llvm_gemm.tile_for(16, 16, 288, 8192, 8208 * 4) == (8, 2)
    for rule in llvm_gemm.TILE_RULES:  # each rule's tile fits the 32 vector registers with its loaded vectors
        assert rule.mr * rule.nv + rule.nv <= 32


def test_describe_gives_the_tile_kernel_and_its_splits_are_exact(rng: np.random.Generator) -> None:
    """``cpu_blas.describe`` of an im2col product (rows x 144 @ the weight read transposed) and of a weight
    gradient calls the tile kernel; ``pg_gemm`` over any cut of rows or columns gives float64 numpy's product."""
    blas = cpu_jit.blas_library()
    if blas is None:
        pytest.skip("numpy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    if not blas.lanes:
        pytest.skip("the host has no 16-lane float vectors: the tile kernels are not used")
    nest = cpu_jit._NEST
    cases = [
        (rng.standard_normal((1000, 144)), rng.standard_normal((16, 144)).T),
        (rng.standard_normal((24, 700)), rng.standard_normal((700, 150))),
    ]
    for a64, b64 in cases:
        a, b = a64.astype(np.float32), np.asarray(b64, np.float32)
        if not b64.flags.c_contiguous:
            b = b64.T.astype(np.float32).T
        c = np.full((a.shape[0], b.shape[1]), np.nan, np.float32)
        gemm = cpu_blas.describe(blas, a, b, c, [(0, 0), (1, 0), (2, 0)])
        assert gemm is not None and gemm.tiled, (a.shape, b.shape)
        slots = (ctypes.c_void_p * 3)(a.ctypes.data, b.ctypes.data, c.ctypes.data)
        want = a.astype(np.float64) @ b.astype(np.float64)
        for split in (cpu_blas.SPLIT_ROWS, cpu_blas.SPLIT_COLS):
            c[...] = np.nan
            units = gemm.units[split]
            cut = int(rng.integers(1, units))
            for lo, hi in ((0, cut), (cut, units)):
                nest(gemm.entry)(ctypes.addressof(slots), gemm.params(split), lo, hi)
            np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4, err_msg=f"{a.shape} @ {b.shape}, {split=}")
    square = rng.standard_normal((256, 256)).astype(np.float32)
    c = np.empty((256, 256), np.float32)
    gemm = cpu_blas.describe(blas, square, square, c, [(0, 0), (1, 0), (2, 0)])
    assert gemm is not None and not gemm.tiled


@pytest.mark.parametrize("threads", [1, 2])
def test_a_compiled_convolution_step_on_tile_kernels_matches_pytorch(threads: int, monkeypatch, rng) -> None:
    """A conv, GroupNorm, SiLU, conv train step (the DDPM's block) compiled for the CPU: its convolutions' products
    run as implicit GEMMs (``cpu_windows``) and tile kernels, and its loss and gradients match PyTorch's at one and
    two threads, fresh inputs each call."""
    blas = cpu_jit.blas_library()
    if blas is None or not blas.lanes:
        pytest.skip("no OpenBLAS or no 16-lane float vectors: the tile kernels are not used")
    implicit, implicit_rhs = _spy_windows(monkeypatch)
    conv1, norm, conv2 = pg.nn.Conv2d(8, 16, 3, padding=1), pg.nn.GroupNorm(4, 16), pg.nn.Conv2d(16, 16, 3, padding=1)
    params = [conv1.weight, conv1.bias, norm.weight, norm.bias, conv2.weight, conv2.bias]
    tw = [torch.tensor(p.numpy(), requires_grad=True) for p in params]

    @pg.compile
    def step(x: pg.Tensor, y: pg.Tensor) -> tuple[pg.Tensor, ...]:
        loss = ((conv2(pg.nn.functional.silu(norm(conv1(x)))) - y) ** 2).mean()
        loss.backward()
        return (loss, *[p.grad for p in params])

    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        for _ in range(2):
            for p in params:
                p.grad = None
            x, y = rng.standard_normal((20, 8, 8, 8)).astype(np.float32), rng.standard_normal((20, 16, 8, 8))
            got = [t.numpy() for t in step(pg.tensor(x), pg.tensor(y.astype(np.float32)))]
            for t in tw:
                t.grad = None
            F = torch.nn.functional
            h = F.conv2d(F.silu(F.group_norm(F.conv2d(torch.tensor(x), tw[0], tw[1], padding=1), 4, tw[2], tw[3])),
                         tw[4], tw[5], padding=1)  # fmt: skip
            loss = ((h - torch.tensor(y, dtype=torch.float32)) ** 2).mean()
            loss.backward()
            want = [loss.detach().numpy(), *[t.grad.numpy() for t in tw]]
            for k, (g, w) in enumerate(zip(got, want, strict=True)):
                np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"output {k} at {threads} threads")
    finally:
        pg.set_num_threads(before)
    assert implicit == [True] * 3  # the two forwards and conv2's input gradient: implicit GEMMs
    assert implicit_rhs == [True, True]  # the weight gradients: conv1's 8 channels on 8-lane vectors


def _windows_case(
    rng: np.random.Generator, n: int, size: tuple[int, int], c: int, kernel: tuple[int, int], stride: int
):
    """A padded channels-last input x (N, P, C) and its window index (Q, K) for a 2-D convolution."""
    (h, w), (kh, kw) = size, kernel
    qh, qw = (h - kh) // stride + 1, (w - kw) // stride + 1
    q, k = np.arange(qh * qw), np.arange(kh * kw)
    rows = q[:, None] // qw * stride + k[None, :] // kw
    cols = q[:, None] % qw * stride + k[None, :] % kw
    index = (rows * w + cols).astype(np.int64)
    return rng.standard_normal((n, h * w, c)), index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lanes", [16, 8])
@pytest.mark.parametrize(
    "n,size,c,o,kernel,stride",
    [
        (2, (8, 8), 16, 16, (3, 3), 1),
        (3, (5, 7), 3, 5, (3, 3), 1),
        (2, (9, 9), 16, 32, (3, 3), 2),
        (1, (6, 6), 32, 17, (3, 3), 1),
        (2, (9, 9), 1, 16, (3, 3), 1),
        (2, (5, 5), 4, 70, (1, 1), 1),
        (3, (4, 6), 8, 40, (2, 3), 1),
    ],
)
@pytest.mark.parametrize("tb", [True, False], ids=["weight", "rowmajor"])
def test_the_window_kernel_against_float64(n, size, c, o, kernel, stride, tb, lanes, dtype, rng) -> None:  # type: ignore[no-untyped-def]
    """``llvm_gemm.WindowGemm``: the windows read through the index times a row-major or transposed rhs, the rows
    cut at a random point between two calls (as between two threads), odd channel and column counts (the masked
    last vector), float32 and float64, 16 and 8 lanes: float64 numpy's product, the output's padding untouched."""
    x, index = _windows_case(rng, n, size, c, kernel, stride)
    x = x.astype(dtype)
    q, k = index.shape
    weight = rng.standard_normal((o, k * c)).astype(dtype)
    b = weight if tb else np.ascontiguousarray(weight.T)
    ldc = o + int(rng.integers(0, 3))
    out = np.full((n * q, ldc), np.nan, dtype)
    t = "float" if dtype == np.float32 else "double"
    w = lanes if dtype == np.float32 else lanes // 2
    tile = llvm_gemm.window_tile(w, o)
    assert tile is not None
    spec = llvm_gemm.WindowGemm(t, w, n, x.shape[1], c, q, k, o, b.shape[1], tb, ldc, *tile)
    engine, found = cpu_jit.host_llvm().compile(
        cpu_windows.window_module(spec), [spec.name, f"{spec.name}_pack"] if tb else [spec.name]
    )
    scratch = np.empty(k * c * o, dtype)
    slots = (ctypes.c_void_p * 4)(x.ctypes.data, index.ctypes.data, b.ctypes.data, out.ctypes.data)
    params = (ctypes.c_int64 * llvm_gemm.WINDOW_PARAMS)(0, 0, 1, 0, 2, 0, 3, 0, scratch.ctypes.data)
    nest = cpu_jit._NEST
    if tb:
        nest(found[1])(ctypes.addressof(slots), ctypes.addressof(params), 0, k * c)
    cut = int(rng.integers(0, n * q + 1))
    for lo, hi in ((0, cut), (cut, n * q)):
        nest(found[0])(ctypes.addressof(slots), ctypes.addressof(params), lo, hi)
    want = x[:, index, :].reshape(n * q, k * c).astype(np.float64) @ weight.T.astype(np.float64)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * np.abs(want).max()
    np.testing.assert_allclose(out[:, :o], want, rtol=0, atol=tol)
    assert np.isnan(out[:, o:]).all()
    del engine


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lanes", [16, 8])
@pytest.mark.parametrize(
    "n,size,c,o,kernel,stride",
    [
        (2, (8, 8), 16, 16, (3, 3), 1),
        (3, (5, 7), 16, 5, (3, 3), 1),
        (2, (9, 9), 32, 32, (3, 3), 2),
        (1, (6, 6), 32, 17, (3, 3), 1),
        (2, (5, 5), 16, 3, (1, 1), 1),
    ],
)
@pytest.mark.parametrize("ta", [False, True], ids=["a", "aT"])
def test_the_window_rhs_kernel_against_float64(n, size, c, o, kernel, stride, ta, lanes, dtype, rng) -> None:  # type: ignore[no-untyped-def]
    """``llvm_gemm.WindowRhsGemm`` (a weight gradient): a row-major or transposed lhs times the windows read through
    the index, the column vectors cut at a random point between two calls, rows left over by the tile, float32
    and float64 at 16 and 8 lanes: float64 numpy's product, the output's padding untouched."""
    x, index = _windows_case(rng, n, size, c, kernel, stride)
    x = x.astype(dtype)
    q, k = index.shape
    grad = rng.standard_normal((o, n * q)).astype(dtype)
    a = np.ascontiguousarray(grad.T) if ta else grad
    ldc = k * c + int(rng.integers(0, 3))
    out = np.full((o, ldc), np.nan, dtype)
    t = "float" if dtype == np.float32 else "double"
    w = lanes if dtype == np.float32 else lanes // 2
    mr, nv = llvm_gemm.WINDOW_RHS_TILES[w]
    spec = llvm_gemm.WindowRhsGemm(t, w, n, x.shape[1], c, q, k, o, a.shape[1], ta, ldc, mr, nv)
    engine, (address,) = cpu_jit.host_llvm().compile(cpu_windows.window_module(spec), [spec.name])
    slots = (ctypes.c_void_p * 4)(x.ctypes.data, index.ctypes.data, a.ctypes.data, out.ctypes.data)
    params = (ctypes.c_int64 * llvm_gemm.WINDOW_PARAMS)(0, 0, 1, 0, 2, 0, 3, 0, 0)
    vectors = k * c // w
    cut = int(rng.integers(0, vectors + 1))
    for lo, hi in ((0, cut), (cut, vectors)):
        cpu_jit._NEST(address)(ctypes.addressof(slots), ctypes.addressof(params), lo, hi)
    want = grad.astype(np.float64) @ x[:, index, :].reshape(n * q, k * c).astype(np.float64)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * np.abs(want).max()
    np.testing.assert_allclose(out[:, : k * c], want, rtol=0, atol=tol)
    assert np.isnan(out[:, k * c :]).all()
    del engine


def test_windows_describe_takes_contiguous_operands_only(rng: np.random.Generator) -> None:
    """``Windows.describe`` gives a product for the contiguous input, index and row-major output that
    ``pg-decompose-conv`` makes, and None for a strided input, an int32 index, mixed dtypes, an rhs neither row-
    nor column-major, or shapes that do not agree."""
    lib = cpu_jit.window_library()
    x, index = _windows_case(rng, 2, (6, 6), 4, (3, 3), 1)
    x = x.astype(np.float32)
    q, k = index.shape
    b = rng.standard_normal((k * 4, 8)).astype(np.float32)
    c = np.empty((2 * q, 8), np.float32)
    at = [(0, 0)] * 4
    assert lib.describe(x, index, b, c, at) is not None
    assert lib.describe(x, index, b.T.copy().T, c, at) is not None  # column-major rhs: copied first
    wide = np.empty((2, 36, 8), np.float32)
    assert lib.describe(wide[:, :, :4], index, b, c, at) is None
    assert lib.describe(x, index.astype(np.int32), b, c, at) is None
    assert lib.describe(x.astype(np.float64), index, b, c, at) is None
    assert lib.describe(x, index, np.empty((72, 16), np.float32)[::2, ::2], c, at) is None
    assert lib.describe(x, index, b[:-1], c, at) is None
    assert lib.describe(x, index, b, c[:-1], at) is None
    # the weight gradient's form: a (O, N Q) @ windows; channels a multiple of the lanes
    x16, index16 = _windows_case(rng, 2, (6, 6), 16, (3, 3), 1)
    x16 = x16.astype(np.float32)
    a = rng.standard_normal((8, 2 * q)).astype(np.float32)
    dw = np.empty((8, k * 16), np.float32)
    assert lib.describe_rhs(x16, index16, a, dw, at) is not None
    assert lib.describe_rhs(x16, index16, a.T.copy().T, dw, at) is not None
    assert lib.describe_rhs(x, index, a, np.empty((8, k * 4), np.float32), at) is not None  # 4 lanes
    x3 = x[:, :, :3].copy()
    assert lib.describe_rhs(x3, index, a, np.empty((8, k * 3), np.float32), at) is None  # 3 channels: no width
    assert [cpu_windows.rhs_lanes(16, c) for c in (32, 16, 8, 4, 12, 3, 2)] == [16, 16, 8, 4, 4, 0, 0]
    assert llvm_gemm.window_tile(2, 8) is None  # no tile at 2 lanes: no window product (numpy instead)
    narrow = cpu_windows.Windows(cpu_jit.host_llvm().compile, 4)  # float64 at 2 lanes
    assert narrow.describe(x.astype(np.float64), index, b.astype(np.float64), c.astype(np.float64), at) is None
    assert lib.describe_rhs(x16, index16, a[:, ::2], dw, at) is None
    assert lib.describe_rhs(x16, index16, a, dw[:, :-1], at) is None


CONV_CASES = [  # (input N, C, *S), conv2d/conv1d keyword arguments, out channels
    ((3, 5, 7, 6), {"padding": 1}, 8),
    ((2, 4, 9, 9), {"stride": 2, "padding": 1}, 17),
    ((2, 3, 8, 7), {"dilation": 2, "padding": (2, 1)}, 6),
    ((2, 6, 6, 6), {"groups": 2, "padding": 1}, 4),
    ((4, 16, 4, 4), {"padding": 1}, 40),
    ((3, 2, 11), {"padding": 2, "stride": 1}, 5),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", range(len(CONV_CASES)), ids=lambda i: "x".join(map(str, CONV_CASES[i][0])))
def test_compiled_convolutions_match_pytorch(case: int, threads: int, monkeypatch, rng: np.random.Generator) -> None:
    """Convolutions of odd sizes, strides, dilations, asymmetric padding, groups, 1-D, compiled for the CPU (the
    implicit GEMMs where they apply, the gathers elsewhere) with their input, weight and bias gradients, at one
    and two threads: PyTorch's values, fresh inputs each call."""
    shape, kwargs, out = CONV_CASES[case]
    k = 3 if len(shape) == 4 else 5
    groups = kwargs.get("groups", 1)
    weight_shape = (out, shape[1] // groups) + (k,) * (len(shape) - 2)
    pg_conv = pg.nn.functional.conv2d if len(shape) == 4 else pg.nn.functional.conv1d
    torch_conv = torch.nn.functional.conv2d if len(shape) == 4 else torch.nn.functional.conv1d

    @pg.compile
    def step(x: pg.Tensor, w: pg.Tensor, b: pg.Tensor, g: pg.Tensor) -> tuple[pg.Tensor, ...]:
        loss = (pg_conv(x, w, b, **kwargs) * g).sum()
        loss.backward()
        return loss, x.grad, w.grad, b.grad

    implicit, implicit_rhs = _spy_windows(monkeypatch)
    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        for _ in range(2):
            x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (shape, weight_shape, (out,)))
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            y = torch_conv(tx, tw, tb, **kwargs)
            g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
            (y * torch.tensor(g)).sum().backward()
            args = [pg.tensor(a, requires_grad=True) for a in (x, w, b)]
            got = [t.numpy() for t in step(*args, pg.tensor(g))]
            want = [(y * torch.tensor(g)).sum().detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()]
            for i, (a, e) in enumerate(zip(got, want, strict=True)):
                np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4, err_msg=f"output {i}, {threads} threads")
    finally:
        pg.set_num_threads(before)
    # the forward and the input gradient as implicit GEMMs, the weight gradient too where the vector lanes divide
    # the channels (groups: batched products, gathered as before)
    assert implicit == ([] if groups > 1 else [True, True]), implicit
    assert implicit_rhs == ([] if groups > 1 else [shape[1] % 4 == 0]), implicit_rhs  # 4, 8 or 16 lanes


def _spy_windows(monkeypatch) -> tuple[list[bool], list[bool]]:  # type: ignore[no-untyped-def]
    """Lists that record, for each implicit-GEMM product described from now on (windows as the lhs, as the rhs),
    whether the window kernel took it."""
    lhs: list[bool] = []
    rhs: list[bool] = []
    describe, describe_rhs = cpu_windows.Windows.describe, cpu_windows.Windows.describe_rhs
    monkeypatch.setattr(cpu_windows.Windows, "describe", lambda *a: lhs.append((g := describe(*a)) is not None) or g)
    monkeypatch.setattr(
        cpu_windows.Windows, "describe_rhs", lambda *a: rhs.append((g := describe_rhs(*a)) is not None) or g
    )
    return lhs, rhs


@pytest.mark.parametrize("threads", [1, 2])
def test_a_product_of_two_window_gathers_runs_with_numpy(threads: int, rng: np.random.Generator) -> None:
    """Both operands of a compiled product gathers of rows (user indexing, ``pg-fuse{windows}`` joins each to the
    matmul's kernel): the implicit GEMM takes one window operand only, so the launch runs with numpy, float64
    numpy's product, fresh inputs each call (was an AttributeError from ``cpu_jit._gemms``: the other operand,
    a gather not run, has no view)."""
    i1, i2 = rng.integers(0, 10, (3, 5)), rng.integers(0, 10, (4, 5))

    @pg.compile
    def f(x: pg.Tensor, y: pg.Tensor, j1: pg.Tensor, j2: pg.Tensor) -> pg.Tensor:
        return x[:, j1].reshape(6, 20) @ y[:, j2].reshape(20, 3)

    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        for _ in range(2):
            x, y = rng.standard_normal((2, 10, 4)), rng.standard_normal((1, 10, 3))
            got = f(*(pg.tensor(a.astype(np.float32)) for a in (x, y)), pg.tensor(i1), pg.tensor(i2)).numpy()
            np.testing.assert_allclose(got, x[:, i1].reshape(6, 20) @ y[:, i2].reshape(20, 3), rtol=1e-5, atol=1e-5)
    finally:
        pg.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_user_indexed_windows_run_as_implicit_gemms(threads: int, monkeypatch, rng: np.random.Generator) -> None:
    """Rows of a 3-D tensor gathered by a user's 2-D index argument (``x[:, idx]``, not a convolution) and read as
    the lhs or the rhs of a product: the implicit GEMMs take them (the index read at run time, as given, negative
    entries wrapped), float64 numpy's products, fresh inputs each call; an index out of range raises IndexError
    (its check runs before the kernel that reads through it) and the next call is right again."""
    n, p, c, q, k, o = 2, 37, 16, 40, 9, 24
    implicit, implicit_rhs = _spy_windows(monkeypatch)

    @pg.compile
    def f(x: pg.Tensor, idx: pg.Tensor, w: pg.Tensor, a: pg.Tensor, jdx: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        return x[:, idx].reshape(n * q, k * c) @ w, a @ x[:, jdx].reshape(n * q, k * c)

    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        for bad in (False, True, False):
            x, w, a = rng.standard_normal((n, p, c)), rng.standard_normal((k * c, o)), rng.standard_normal((o, n * q))
            idx, jdx = rng.integers(-p, p, (q, k)), rng.integers(0, p, (q, k))
            if bad:
                idx[3, 4] = 10**12
            args = [pg.tensor(x.astype(np.float32)), pg.tensor(idx), *(pg.tensor(v.astype(np.float32)) for v in (w, a))]
            args.append(pg.tensor(jdx))
            if bad:
                with pytest.raises(IndexError, match="out of range"):
                    f(*args)
                continue
            got = [t.numpy() for t in f(*args)]
            np.testing.assert_allclose(got[0], x[:, idx].reshape(n * q, k * c) @ w, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got[1], a @ x[:, jdx].reshape(n * q, k * c), rtol=1e-4, atol=1e-4)
    finally:
        pg.set_num_threads(before)
    assert implicit == [True] and implicit_rhs == [True], (implicit, implicit_rhs)
