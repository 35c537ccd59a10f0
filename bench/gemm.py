"""The SGEMM ladder on the GPU: every ``pg-matmul-schedule`` rung against cuBLAS fp32 (``torch.matmul``, TF32 off).

For each shape M x N x K (C = A @ B, A (M, K) and B (K, N) row-major float32, C (M, N)) and each schedule, the
matmul is compiled by picograd's pipeline (``compile_for_cuda(..., matmul_schedule=NAME)``: ``pg`` -> loops ->
``pg-matmul-schedule`` -> ``gpu`` -> ``ptx``), its one kernel is launched on buffers shared with PyTorch, and the
result is checked against float64 (relative Frobenius error). cuBLAS runs in the same process on the same
buffers.

Floors: 2MNK FLOP; 4(MK + KN + MN) bytes at least. At 4096^3: 137.4 GFLOP and 201 MB; at the H200's FP32 peak
(132 SMs x 128 FMA lanes x 2 x 1.98 GHz = 66.9 TFLOP/s) 2.05 ms, and 0.05 ms at 4.1 TB/s: every shape here is
compute-bound (arithmetic intensity >= 170 FLOP/byte), so TFLOP/s against cuBLAS's is the figure of merit.
cuBLAS fp32 measured 50.7 TFLOP/s at 4096 and 50.9 at 8192 (2026-11-29).

Timing: CUDA events around ``reps`` back-to-back launches (so launch overhead is hidden behind the previous
kernel), median over ``iters`` such samples after warm-up; slow rungs get fewer samples so that each (schedule,
shape) takes about a second. Writes one JSON line per (schedule, shape) to --out (fields: date, gpu, versions,
schedule, m, n, k, dtype, ms, tflops, cublas_ms, cublas_tflops, ratio_to_cublas, rel_err) and prints a table.

    python bench/gemm.py                                   # every rung and auto (the default heuristic), every shape
    python bench/gemm.py --schedules warptile,cp-async --shapes 4096x4096x4096
    python bench/gemm.py --schedules wgmma,wgmma-ws --shapes 4096x4096x4096,8192x8192x8192

The tensor-core schedules ``wgmma`` and ``wgmma-ws`` (sm_90a) run C = A @ Bt.T on bf16 A (M, K) and Bt (N, K),
bf16 out (``tensor_core_module``) through ``CudaProgram.executable()``; their rows (``dtype`` ``bf16``) compare with
cuBLAS bf16 (``torch.matmul(a, bt.T)``, bf16 out) in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SHAPES = ("1024x1024x1024", "2048x2048x2048", "4096x4096x4096", "8192x8192x8192", "8192x4096x1024", "4096x11008x4096")


def matmul_module(m: int, n: int, k: int):
    """A module with one function ``f(a: (m, k), b: (k, n)) -> a @ b`` in float32, at the ``pg`` stage."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32
    from xdsl.ir import Block, Region

    from picograd.dialects import pg

    ta, tb = TensorType(f32, [m, k]), TensorType(f32, [k, n])
    block = Block(arg_types=[ta, tb])
    mm = pg.MatmulOp(block.args[0], block.args[1])
    block.add_op(mm)
    block.add_op(func.ReturnOp(mm.results[0]))
    fn = func.FuncOp("gemm", FunctionType.from_lists([ta, tb], [mm.results[0].type]), Region(block))
    return ModuleOp([fn])


def tensor_core_module(m: int, n: int, k: int):
    """The wgmma schedules' matmul at the ``pg`` stage: ``gemm(a: (m, k), bt: (n, k)) -> a @ bt.T`` in bfloat16
    (f32 accumulation, rounded once to bf16), both operands K-major as ``nn.Linear``'s ``x @ W.T``."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, bf16
    from xdsl.ir import Block, Region

    from picograd.dialects import pg

    ta, tb = TensorType(bf16, [m, k]), TensorType(bf16, [n, k])
    block = Block(arg_types=[ta, tb])
    b = pg.PermuteOp(block.args[1], [1, 0])
    mm = pg.MatmulOp(block.args[0], b.results[0])
    block.add_ops([b, mm, func.ReturnOp(mm.results[0])])
    fn = func.FuncOp("gemm", FunctionType.from_lists([ta, tb], [mm.results[0].type]), Region(block))
    return ModuleOp([fn])


def cuda_events_ms(torch, fn, reps: int, iters: int, warmup: int = 2) -> float:
    """Median over ``iters`` samples of (time of ``reps`` calls of ``fn`` between two CUDA events) / reps."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / reps)
    return float(statistics.median(samples))


def plan(ms_guess: float) -> tuple[int, int]:
    """(reps, iters) for about a second of timing."""
    reps = max(1, min(20, int(5.0 / max(ms_guess, 1e-3))))
    iters = max(3, min(25, int(1000.0 / (reps * max(ms_guess, 1e-3)))))
    return reps, iters


def run_schedule(torch, cuda, name: str, m: int, n: int, k: int, a, b, ref) -> dict:
    from picograd.driver.gpu_compile import compile_for_cuda

    t0 = time.perf_counter()
    prog = compile_for_cuda(matmul_module(m, n, k), matmul_schedule=name)
    (step,) = [s for s in prog.steps if isinstance(s, cuda.Launch)]
    module = cuda.compile_ptx(prog.ptx, prog.arch)
    kernel = module.kernel(step.kernel)
    compile_s = time.perf_counter() - t0
    c = torch.empty((m, n), device="cuda", dtype=torch.float32)
    bufs = {cuda.Input(0): a, cuda.Input(1): b, cuda.Output(0): c}
    args = [np.uint64(bufs[s].data_ptr()) for s in step.args]
    torch.cuda.synchronize()  # the operands are written on PyTorch's stream; picograd launches on its own

    def launch() -> None:
        cuda.launch(kernel, step.grid, step.block, args)

    launch()
    cuda.synchronize()
    rel = float(torch.linalg.norm(c.double() - ref) / torch.linalg.norm(ref))
    t0 = time.perf_counter()
    launch()
    cuda.synchronize()
    guess = (time.perf_counter() - t0) * 1e3
    reps, iters = plan(guess)

    def burst() -> None:
        for _ in range(reps):
            launch()

    ms = cuda.time_ms(burst, warmup=2, iters=iters) / reps
    return {
        "schedule": name,
        "ms": ms,
        "rel_err": rel,
        "compile_s": round(compile_s, 2),
        "kernel": step.kernel,
        "grid": list(step.grid) if isinstance(step.grid, tuple) else [step.grid],
        "block": list(step.block) if isinstance(step.block, tuple) else [step.block],
        "registers": kernel.num_regs,
        "spill_bytes": kernel.spill_store_bytes,
    }


def run_tensor_core(torch, cuda, name: str, m: int, n: int, k: int, a, bt, ref) -> dict:
    """A tensor-core schedule (``wgmma``, ``wgmma-ws``: sm_90a, tensor maps) on bf16 ``a`` (m, k) and ``bt`` (n, k),
    bf16 out, run through ``CudaProgram.executable()`` (the runtime encodes the tensor maps when it binds the
    buffers; each call replays one CUDA graph)."""
    import ml_dtypes

    from picograd.driver.gpu_compile import compile_for_cuda

    t0 = time.perf_counter()
    prog = compile_for_cuda(tensor_core_module(m, n, k), arch="sm_90a", matmul_schedule=name)
    exe = prog.executable()
    compile_s = time.perf_counter() - t0
    host = [x.view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16) for x in (a, bt)]
    da, db = (cuda.DeviceBuffer.from_numpy(x) for x in host)
    (dc,) = exe(da, db)
    c = torch.from_numpy(dc.to_numpy().astype(np.float32)).to("cuda")
    rel = float(torch.linalg.norm(c.double() - ref) / torch.linalg.norm(ref))
    t0 = time.perf_counter()
    exe(da, db, out=[dc])
    cuda.synchronize()
    reps, iters = plan((time.perf_counter() - t0) * 1e3)

    def burst() -> None:
        for _ in range(reps):
            exe(da, db, out=[dc])

    ms = cuda.time_ms(burst, warmup=2, iters=iters) / reps
    (step,) = prog.steps
    kernel = exe.module.kernel(step.kernel)
    return {"schedule": name, "ms": ms, "rel_err": rel, "compile_s": round(compile_s, 2), "kernel": step.kernel,
            "grid": list(step.grid), "block": list(step.block), "shmem": step.shmem, "registers": kernel.num_regs,
            "spill_bytes": kernel.spill_store_bytes}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schedules", default=None, help="comma-separated rungs (default: all in ladder order, then auto)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated MxNxK")
    ap.add_argument("--skip-slow", action="store_true", help="naive and coalesced only up to 4096")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gemm_h200.jsonl"))
    opts = ap.parse_args()

    import torch

    from picograd.passes.schedule import SCHEDULES, WGMMA
    from picograd.runtime import cuda

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    names = opts.schedules.split(",") if opts.schedules else [*SCHEDULES, "auto", *WGMMA]
    env = {
        "date": datetime.date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(0),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": np.__version__,
        },
    }
    rows = []
    for shape in opts.shapes.split(","):
        m, n, k = (int(x) for x in shape.split("x"))
        gen = torch.Generator(device="cuda").manual_seed(0)
        a = torch.randn((m, k), device="cuda", dtype=torch.float32, generator=gen)
        b = torch.randn((k, n), device="cuda", dtype=torch.float32, generator=gen)
        ref = a.double() @ b.double()
        flop = 2.0 * m * n * k
        c = torch.empty((m, n), device="cuda", dtype=torch.float32)
        guess = flop / 50e12 * 1e3
        reps, iters = plan(guess)
        cublas_ms = cuda_events_ms(torch, lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), reps, iters)
        cublas_rel = float(torch.linalg.norm(c.double() - ref) / torch.linalg.norm(ref))
        bf16 = None  # (a, bt, ref, cuBLAS ms, its error) of the bf16 rows, made on first use
        for name in names:
            if opts.skip_slow and name in ("naive", "coalesced") and m * n * k > 4096**3:
                continue
            if name in WGMMA and bf16 is None:
                a16, bt16 = a.to(torch.bfloat16), torch.randn((n, k), device="cuda", generator=gen).to(torch.bfloat16)
                ref16 = a16.double() @ bt16.double().T
                c16 = torch.empty((m, n), device="cuda", dtype=torch.bfloat16)
                ms16 = cuda_events_ms(torch, lambda x=a16, y=bt16, z=c16: torch.matmul(x, y.T, out=z), reps, iters)
                rel16 = float(torch.linalg.norm(c16.double() - ref16) / torch.linalg.norm(ref16))
                bf16 = (a16, bt16, ref16, ms16, rel16)
            try:
                if name in WGMMA:
                    assert bf16 is not None
                    r = run_tensor_core(torch, cuda, name, m, n, k, *bf16[:3])
                else:
                    r = run_schedule(torch, cuda, name, m, n, k, a, b, ref)
            except Exception as e:  # one failing rung must not lose the others
                r = {"schedule": name, "error": f"{type(e).__name__}: {e}"[:2000]}
            tensor_core = name in WGMMA and bf16 is not None
            base_ms, base_rel = (bf16[3], bf16[4]) if tensor_core else (cublas_ms, cublas_rel)
            row = {**env, "m": m, "n": n, "k": k, "dtype": "bf16" if name in WGMMA else "float32", **r,
                   "cublas_ms": base_ms, "cublas_tflops": flop / base_ms / 1e9, "cublas_rel_err": base_rel}  # fmt: skip
            if "ms" in r:
                row["tflops"] = flop / r["ms"] / 1e9
                row["ratio_to_cublas"] = base_ms / r["ms"]
            rows.append(row)
            print(
                f"{shape:>16} {name:>10} "
                + (
                    f"{row['ms']:9.3f} ms {row['tflops']:7.2f} TFLOP/s {row['ratio_to_cublas']:6.1%} of cuBLAS "
                    f"({row['cublas_tflops']:.1f})  err {row['rel_err']:.1e}  regs {row['registers']}"
                    if "ms" in row
                    else row["error"]
                ),
                flush=True,
            )
        torch.cuda.empty_cache()
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} lines to {opts.out}")


if __name__ == "__main__":
    main()
