"""The CPU runtime's tile GEMM kernels (``picograd.target.llvm_gemm``): the kernel alone on odd shapes, padded
leading dims and every transpose, against float64 numpy; ``cpu_blas.describe`` choosing it by ``TILE_RULES``; and
compiled convolution steps running on it at one and two threads against PyTorch."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

import picograd as pg
from picograd.runtime import cpu_blas, cpu_jit
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
    run on tile kernels, and its loss and gradients match PyTorch's at one and two threads, fresh inputs each
    call."""
    blas = cpu_jit.blas_library()
    if blas is None or not blas.lanes:
        pytest.skip("no OpenBLAS or no 16-lane float vectors: the tile kernels are not used")
    tiled: list[bool] = []
    describe = cpu_blas.describe
    monkeypatch.setattr(cpu_blas, "describe", lambda *a: tiled.append(bool((g := describe(*a)) and g.tiled)) or g)
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
    assert sum(tiled) >= 3, tiled  # forward, input gradient and weight gradient products
