"""The CPU tile GEMM kernels (``picograd.target.llvm_gemm``) against numpy's OpenBLAS and PyTorch's ``torch.mm`` on
the products of the DDPM's and CNN's convolutions, at one thread.

Shapes (m x n x k, output m x n): the im2col products (N * Q rows, O = 16 or 32 columns, k = 9 C) with the weight
read transposed, their input gradients (N * Q rows, C columns, k = 9 O) and the weight gradients (O rows, 9 C
columns, k = N * Q). Each is a call of the tile kernel that ``TILE_RULES`` gives it (or every tile of ``--tiles``)
through ``ctypes`` with CBLAS's arguments, of ``np.matmul`` and of ``torch.mm`` on the same float32 operands, taken
in turn ``--repeats`` times after warm-up; the median of each and GFLOP/s (``2 m n k`` FLOPs; the operands, at most
a few MB, are read from the caches: the floor is the core's FMA rate, 2 x 16 lanes x 2 FLOPs a cycle on Zen 4's two
256-bit FMA pipes, about 115 GFLOP/s at 3.6 GHz). Each result is checked against float64 numpy.

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
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
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
            rule = llvm_gemm.tile_for(16, m, n, k)
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
            gemm_args = (101, 111 + ta, 111 + tb, m, n, k, 1.0, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1])
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
    if args.json:
        write_json(
            args.json,
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {cpu_jit.host_llvm().llvm.get_host_cpu_name()}, 1 thread",
                "versions": {"numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version()},
                "rows": rows,
            },
        )


if __name__ == "__main__":
    main()
