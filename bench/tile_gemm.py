"""The CPU tile GEMM kernels (``picograd.target.llvm_gemm``) against numpy's OpenBLAS and PyTorch's ``torch.mm`` on
the products of the DDPM's and CNN's convolutions, at one thread.

Shapes (m x n x k, output m x n): the im2col products (N * Q rows, O = 16 or 32 columns, k = 9 C) with the weight
read transposed, their input gradients (N * Q rows, C columns, k = 9 O) and the weight gradients (O rows, 9 C
columns, k = N * Q). Each is a call of the tile kernel that ``TILE_RULES`` gives it (or every tile of ``--tiles``)
through ``ctypes`` with CBLAS's arguments, of ``np.matmul`` and of ``torch.mm`` on the same float32 operands, taken
in turn ``--repeats`` times after warm-up; the median of each and GFLOP/s (``2 m n k`` FLOPs; the operands, at most
a few MB, are read from the caches: the floor is the core's FMA rate, 2 x 16 lanes x 2 FLOPs a cycle on Zen 4's two
256-bit FMA pipes, about 115 GFLOP/s at 3.6 GHz). Each result is checked against float64 numpy.

The implicit GEMMs of the same convolutions (``WindowGemm``: forward, windows read through the index from the
padded channels-last input; ``WindowRhsGemm``: weight gradient) are timed beside OpenBLAS on the written im2col
matrix (the product alone, not the gather that writes it) and PyTorch's ``conv2d`` forward (mkldnn, channels
first, bias-free) on the same sizes.

    python bench/tile_gemm.py --json bench/results/tile_gemm_cpu.json
    python bench/tile_gemm.py --tiles 8x1,16x1,8x2,4x4
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from results_io import write_json  # noqa: E402

from picograd.runtime import cpu_jit  # noqa: E402
from picograd.target import llvm_gemm  # noqa: E402

# (m, n, k, a transposed, b transposed): the DDPM's products (batch 128, 8x8 and 4x4 images, 16 and 32 channels)
SHAPES = [
    (8192, 16, 144, False, True),
    (8192, 16, 288, False, True),
    (8192, 32, 144, False, True),
    (2048, 32, 288, False, True),
    (16, 144, 8192, False, False),
    (16, 288, 8192, False, False),
    (32, 288, 2048, False, False),
    (16, 32, 8192, False, False),
]
_I = ctypes.c_int64
_GEMM = ctypes.CFUNCTYPE(
    None, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _I, _I, _I, ctypes.c_float, ctypes.c_void_p, _I,
    ctypes.c_void_p, _I, ctypes.c_float, ctypes.c_void_p, _I,
)  # fmt: skip


def median_seconds(call, repeats: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", help="comma-separated MRxNV tiles to time on every shape (default: the rules')")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    keep = []
    print(f"{'m x n x k':>18} {'tile':>5} {'tile GF/s':>9} {'numpy GF/s':>10} {'torch GF/s':>10} {'tile/numpy':>10}")
    for m, n, k, ta, tb in SHAPES:
        # A's rows 16 floats apart from a multiple of 4 KiB (``llvm_gemm.ALIASING_STRIDE``: at a multiple the
        # runtime keeps the BLAS)
        a = rng.standard_normal((k, m + 16) if ta else (m, k + 16)).astype(np.float32)[:, : (m if ta else k)]
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        av, bv = (a.T if ta else a), (b.T if tb else b)
        want = av.astype(np.float64) @ bv.astype(np.float64)
        out = np.empty((m, n), np.float32)
        ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
        tav, tbv = (ta_.T if ta else ta_), (tb_.T if tb else tb_)
        tout = torch.empty(m, n)
        numpy_s = median_seconds(lambda: np.matmul(av, bv, out=out), args.repeats)  # noqa: B023
        torch_s = median_seconds(lambda: torch.mm(tav, tbv, out=tout), args.repeats)  # noqa: B023
        tiles = [tuple(int(x) for x in t.split("x")) for t in args.tiles.split(",")] if args.tiles else []
        if not tiles:
            rule = llvm_gemm.tile_for(16, m, n, k)  # (the rules' tile even where A's row stride keeps BLAS)
            tiles = [rule] if rule else []
        flops = 2 * m * n * k
        for mr, nv in tiles:
            kernel = llvm_gemm.GemmKernel("float", 16, ta, tb, mr, nv)
            engine, (address,) = cpu_jit.host_llvm().compile(
                llvm_gemm.gemm_ir(kernel) + "\n" + llvm_gemm.declarations([kernel]), [kernel.name]
            )
            keep.append(engine)
            f = _GEMM(address)
            c = np.empty((m, n), np.float32)
            lda = a.strides[0] // 4
            gemm_args = (101, 111 + ta, 111 + tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, b.shape[1])
            tile_s = median_seconds(lambda: f(*gemm_args, 0.0, c.ctypes.data, n), args.repeats)  # noqa: B023
            err = float(np.abs(c - want).max() / np.abs(want).max())
            assert err < 1e-5, (m, n, k, mr, nv, err)
            row = {
                "m": m, "n": n, "k": k, "transa": ta, "transb": tb, "tile": f"{mr}x{nv}",
                "tile_ms": tile_s * 1e3, "numpy_ms": numpy_s * 1e3, "torch_ms": torch_s * 1e3,
                "tile_gflops": flops / tile_s / 1e9, "numpy_gflops": flops / numpy_s / 1e9,
                "torch_gflops": flops / torch_s / 1e9, "max_rel_err": err,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{m:>6} x{n:>4} x{k:>5} {mr}x{nv:<3} {row['tile_gflops']:>9.0f} {row['numpy_gflops']:>10.0f} "
                f"{row['torch_gflops']:>10.0f} {numpy_s / tile_s:>10.2f}"
            )
    windows = window_rows(args.repeats, rng, keep, torch)
    if args.json:
        write_json(
            args.json,
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {cpu_jit.host_llvm().llvm.get_host_cpu_name()}, 1 thread",
                "versions": {"numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version()},
                "rows": rows,
                "windows": windows,
            },
        )


# (batch, image side, C, O, stride): the DDPM's 3x3 convolutions, padding 1
CONVS = [(128, 8, 16, 16, 1), (128, 8, 32, 16, 1), (128, 4, 32, 32, 1), (128, 8, 16, 32, 2)]


def window_rows(repeats: int, rng: np.random.Generator, keep: list, torch) -> list[dict]:  # type: ignore[no-untyped-def]
    """Time the implicit GEMMs of ``CONVS`` (see the module docstring); print and return their rows."""
    from picograd.runtime import cpu_windows

    lib = cpu_windows.Windows(cpu_jit.host_llvm().compile, 16)
    nest = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
    rows = []
    head = f"{'conv (N, side, C -> O, stride)':>32} {'form':>8} {'GF/s':>6}"
    print(f"{head} {'OpenBLAS on im2col':>18} {'torch conv2d':>12}")
    for n, side, c, o, stride in CONVS:
        padded = side + 2
        q_side = (padded - 3) // stride + 1
        qi, ki = np.arange(q_side * q_side), np.arange(9)
        rows_i = qi[:, None] // q_side * stride + ki[None, :] // 3
        cols_i = qi[:, None] % q_side * stride + ki[None, :] % 3
        index = (rows_i * padded + cols_i).astype(np.int64)
        x = rng.standard_normal((n, padded * padded, c)).astype(np.float32)
        weight = rng.standard_normal((o, 9 * c)).astype(np.float32)
        q = index.shape[0]
        cols = x[:, index, :].reshape(n * q, 9 * c)
        flops = 2 * n * q * 9 * c * o
        grad = rng.standard_normal((o, n * q)).astype(np.float32)
        out = np.empty((n * q, o), np.float32)
        dw = np.empty((o, 9 * c), np.float32)
        tx = torch.from_numpy(rng.standard_normal((n, c, side, side)).astype(np.float32))
        tw = torch.from_numpy(weight.reshape(o, 3, 3, c).transpose(0, 3, 1, 2).copy())
        conv_s = median_seconds(lambda: torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1), repeats)  # noqa: B023
        forms = [
            ("forward", lib.describe(x, index, weight.T, out, [(0, 0), (1, 0), (2, 0), (3, 0)]), out,
             cols @ weight.T.astype(np.float64), lambda: np.matmul(cols, weight.T, out=out)),  # noqa: B023
            ("weight", lib.describe_rhs(x, index, grad, dw, [(0, 0), (1, 0), (2, 0), (3, 0)]), dw,
             grad.astype(np.float64) @ cols, lambda: np.matmul(grad, cols, out=dw)),  # noqa: B023
        ]  # fmt: skip
        for form, product, result, want, blas_call in forms:
            assert product is not None, (form, n, side, c, o)
            other = weight.T if form == "forward" else grad
            slots = (ctypes.c_void_p * 4)(x.ctypes.data, index.ctypes.data, other.ctypes.data, result.ctypes.data)
            keep.append((product, slots))
            entries = [(nest(fn), params, lo, hi) for fn, params, lo, hi, _, _ in product.entries(1, 0, 1)]

            def call() -> None:
                for fn, params, lo, hi in entries:  # noqa: B023
                    fn(ctypes.addressof(slots), params, lo, hi)  # noqa: B023

            kernel_s = median_seconds(call, repeats)
            err = float(np.abs(result - want).max() / np.abs(want).max())
            assert err < 1e-5, (form, err)
            blas_s = median_seconds(blas_call, repeats)
            row = {
                "batch": n, "side": side, "c": c, "o": o, "stride": stride, "form": form,
                "kernel_ms": kernel_s * 1e3, "kernel_gflops": flops / kernel_s / 1e9,
                "openblas_on_im2col_gflops": flops / blas_s / 1e9,
                "torch_conv2d_forward_gflops": flops / conv_s / 1e9, "max_rel_err": err,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{f'{n}, {side}x{side}, {c} -> {o}, s{stride}':>32} {form:>8} {row['kernel_gflops']:>6.0f} "
                f"{row['openblas_on_im2col_gflops']:>18.0f} {row['torch_conv2d_forward_gflops']:>12.0f}"
            )
    return rows


if __name__ == "__main__":
    main()
