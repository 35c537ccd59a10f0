"""The GEMM ladder on the GPU: every ``pg-matmul-schedule`` rung against cuBLAS (``torch.matmul``, same dtype).

Rows per precision (``--dtypes``): ``fp32`` (the SIMT rungs and ``auto``, TF32 off on both sides), and ``bf16``,
``fp16`` and ``tf32`` (each tensor-core rung and ``auto``; cuBLAS in the same dtype, with
``torch.backends.cuda.matmul.allow_tf32`` on for the tf32 rows only). bf16/fp16 rows have bf16/fp16 A, B and C
(f32 accumulation on both sides).

For each shape M x N x K (C = A @ B, A (M, K) and B (K, N) row-major float32, C (M, N); ``--layout nt``:
C = A @ Bt.T with Bt (N, K) row-major, the layout of ``nn.Linear``'s ``x @ W.T``, where both operands are K-major:
the only layout wgmma reads 32-bit operands in, so that in the ``nn`` layout the tf32 wgmma rows first copy B
transposed, ``pg-wgmma-layout``, a second launch timed with the matmul) and each schedule, the
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
shape) takes about a second. Writes one JSON line per (schedule, dtype, shape) to --out (fields: date, gpu,
versions, schedule, dtype, m, n, k, ms, tflops, cublas_ms, cublas_tflops, ratio_to_cublas, rel_err) and prints a
table. ``--compile-only`` compiles every row's kernel to PTX and assembles it (no GPU, no torch.cuda): a check of
the script's CPU side.

    python bench/gemm.py                                   # every rung and auto (the default heuristic), every shape
    python bench/gemm.py --schedules warptile,cp-async --shapes 4096x4096x4096 --dtypes fp32
    python bench/gemm.py --dtypes bf16,fp16,tf32           # the tensor-core rows
    python bench/gemm.py --dtypes tf32 --layout nt --schedules wgmma-ws,mma-sync,auto-sm90a   # tf32 on wgmma
    python bench/gemm.py --compile-only --shapes 256x256x256
    python bench/gemm.py --dtypes bf16 --schedules wgmma-ws,auto-sm90a --shapes 384x384x16384   # split-K
    python bench/gemm.py --dtypes bf16 --schedules wgmma-ws,wgmma-pp,wgmma-pp-128 --shapes 16384x1152x384  # ping-pong
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


DTYPES = ("bf16", "fp16", "tf32", "fp32")
"""The precisions of the rows: bf16/fp16 operands and result (f32 accumulation), tf32 (float32 under allow_tf32)."""


LAYOUTS = ("nn", "nt")
"""``nn``: C = A @ B, B (K, N) row-major; ``nt``: C = A @ Bt.T, Bt (N, K) row-major."""


def matmul_module(m: int, n: int, k: int, dtype: str = "fp32", layout: str = "nn"):
    """A module with one function ``f(a: (m, k), b: (k, n)) -> a @ b`` (``layout`` ``nt``: ``f(a: (m, k),
    bt: (n, k)) -> a @ bt.T``) at the ``pg`` stage: float32 (``fp32``, ``tf32``: the matmul marked as allowed to use
    TF32) or bf16/fp16 (``bf16``, ``fp16``)."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import BFloat16Type, Float16Type, FunctionType, ModuleOp, TensorType, f32
    from xdsl.ir import Block, Region

    from picograd.dialects import pg

    el = {"bf16": BFloat16Type(), "fp16": Float16Type()}.get(dtype, f32)
    ta, tb = TensorType(el, [m, k]), TensorType(el, [k, n] if layout == "nn" else [n, k])
    block = Block(arg_types=[ta, tb])
    rhs = block.args[1]
    if layout == "nt":
        transposed = pg.PermuteOp(rhs, [1, 0])
        block.add_op(transposed)
        rhs = transposed.results[0]
    mm = pg.MatmulOp(block.args[0], rhs, tf32=dtype == "tf32")
    block.add_op(mm)
    block.add_op(func.ReturnOp(mm.results[0]))
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


def schedules_for(dtype: str) -> list[str]:
    """The rows of one precision: the SIMT rungs for fp32, the tensor-core rungs for bf16/fp16/tf32; then auto."""
    from picograd.passes.kinds.matmul_rungs import SCHEDULES, WGMMA

    rungs = [s for s, row in SCHEDULES.items() if row.tensor_core == (dtype != "fp32")]
    return rungs + (list(WGMMA) if dtype != "fp32" else []) + ["auto"]


AUTO_SM90A = "auto-sm90a"
"""The row of ``auto`` compiled for sm_90a (as the models run on Hopper: wgmma-ws, split-K where few output tiles
meet a deep K, then several launches), timed through ``CudaProgram.executable()``."""


def schedule_and_arch(name: str) -> tuple[str, str]:
    """The ``matmul_schedule`` and target of a row."""
    from picograd.passes.kinds.matmul_rungs import WGMMA

    if name == AUTO_SM90A:
        return "auto", "sm_90a"
    return name, "sm_90a" if name in WGMMA else "sm_90"


def compile_program(name: str, m: int, n: int, k: int, dtype: str, layout: str = "nn"):
    """The ``CudaProgram`` of one row and its first launch (the only one, but for ``auto-sm90a`` and the tf32 wgmma
    rows of the ``nn`` layout, whose B ``pg-wgmma-layout`` copies transposed first)."""
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.passes.kinds.matmul_rungs import WGMMA
    from picograd.runtime import cuda

    schedule, arch = schedule_and_arch(name)
    prog = compile_for_cuda(matmul_module(m, n, k, dtype, layout), arch=arch, matmul_schedule=schedule)
    launches = [s for s in prog.steps if isinstance(s, cuda.Launch)]
    if name == AUTO_SM90A or name in WGMMA:
        return prog, launches[0]
    if len(launches) != 1:
        raise RuntimeError(f"{name} {dtype} {m}x{n}x{k}: {len(launches)} launches, expected 1")
    return prog, launches[0]


def run_executable(torch, cuda, name: str, m: int, n: int, k: int, a, b, ref, dtype: str, layout: str) -> dict:
    """A row whose launch needs the runtime's binding (``wgmma``, ``wgmma-ws``: sm_90a, tensor maps encoded when the
    buffers are bound, dynamic shared memory), run through ``CudaProgram.executable()`` (one CUDA graph a call)."""
    import ml_dtypes

    from picograd.driver.gpu_compile import compile_for_cuda

    t0 = time.perf_counter()
    schedule, _ = schedule_and_arch(name)
    prog = compile_for_cuda(matmul_module(m, n, k, dtype, layout), arch="sm_90a", matmul_schedule=schedule)
    exe = prog.executable()
    compile_s = time.perf_counter() - t0
    np_dtype = {"bf16": ml_dtypes.bfloat16, "fp16": np.float16, "fp32": np.float32, "tf32": np.float32}[dtype]
    view = {"bf16": torch.int16, "fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}[dtype]
    host = [x.contiguous().view(view).cpu().numpy().view(np_dtype) for x in (a, b)]
    da, db = (cuda.DeviceBuffer.from_numpy(x) for x in host)
    (dc,) = exe(da, db)
    cuda.synchronize()
    c = torch.from_numpy(dc.to_numpy().astype(np.float64)).to("cuda")
    rel = float(torch.linalg.norm(c - ref) / torch.linalg.norm(ref))
    t0 = time.perf_counter()
    exe(da, db, out=[dc])
    cuda.synchronize()
    reps, iters = plan((time.perf_counter() - t0) * 1e3)

    def burst() -> None:
        for _ in range(reps):
            exe(da, db, out=[dc])

    ms = cuda.time_ms(burst, warmup=2, iters=iters) / reps
    # split-K: the partial matmuls, then the sum; tf32 A @ B on wgmma: Bt's copy, then the matmul (the row's kernel)
    steps = [s for s in prog.steps if isinstance(s, cuda.Launch)]
    main = next((s for s in steps if any(isinstance(a, cuda.TensorMap) for a in s.args)), steps[0])
    row = result(name, ms, rel, compile_s, main, exe.module.kernel(main.kernel))
    return {**row, "launches": len(steps)}


def result(name: str, ms: float, rel: float, compile_s: float, step, kernel) -> dict:
    """One row's measured fields: time, error, and the launch's shape and resources."""
    return {
        "schedule": name,
        "ms": ms,
        "rel_err": rel,
        "compile_s": round(compile_s, 2),
        "kernel": step.kernel,
        "grid": list(step.grid) if isinstance(step.grid, tuple) else [step.grid],
        "block": list(step.block) if isinstance(step.block, tuple) else [step.block],
        "shmem": step.shmem,
        "registers": kernel.num_regs,
        "spill_bytes": kernel.spill_store_bytes,
    }


def run_schedule(torch, cuda, name: str, m: int, n: int, k: int, a, b, ref, dtype: str, layout: str = "nn") -> dict:
    """One row: ``b`` is B (K, N), or Bt (N, K) for ``layout`` ``nt``."""
    from picograd.passes.kinds.matmul_rungs import WGMMA

    if name in WGMMA or name == AUTO_SM90A:
        return run_executable(torch, cuda, name, m, n, k, a, b, ref, dtype, layout)
    t0 = time.perf_counter()
    prog, step = compile_program(name, m, n, k, dtype, layout)
    module = cuda.compile_ptx(prog.ptx, prog.arch)
    kernel = module.kernel(step.kernel)
    compile_s = time.perf_counter() - t0
    c = torch.empty((m, n), device="cuda", dtype=a.dtype)
    bufs = {cuda.Input(0): a, cuda.Input(1): b, cuda.Output(0): c}
    args = [np.uint64(bufs[s].data_ptr()) for s in step.args]
    torch.cuda.synchronize()  # the operands are written on PyTorch's stream; picograd launches on its own

    def launch() -> None:
        cuda.launch(kernel, step.grid, step.block, args, step.shmem)

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
    return result(name, ms, rel, compile_s, step, kernel)


def compile_only(shapes: list[str], dtypes: list[str], names: list[str] | None, layout: str = "nn") -> None:
    """Compile and assemble (ptxas, sm_90, no spills) every row's kernel: the script's CPU side. A row that fails
    prints its error and the others go on; raises ``SystemExit`` naming the failed rows at the end."""
    failed = []
    for shape in shapes:
        m, n, k = (int(x) for x in shape.split("x"))
        for dtype in dtypes:
            for name in names or schedules_for(dtype):
                try:
                    prog, step = compile_program(name, m, n, k, dtype, layout)
                    res = prog.assemble(strict=True)
                except Exception as e:  # one failing rung must not hide the others
                    failed.append(f"{shape} {dtype} {name}")
                    print(f"{shape:>16} {dtype:>5} {name:>10} FAILED: {str(e).splitlines()[0:2]}")
                    continue
                regs = {kname: r.registers for kname, r in res.kernels.items()}
                print(
                    f"{shape:>16} {dtype:>5} {name:>10} {step.kernel}: grid {step.grid} block {step.block} "
                    f"shmem {step.shmem} {regs}"
                )
    if failed:
        raise SystemExit(f"{len(failed)} rows failed: {', '.join(failed)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schedules", default=None, help="comma-separated rungs (default: those of each dtype, then auto)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help=f"comma-separated precisions among {DTYPES}")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated MxNxK")
    ap.add_argument("--layout", default="nn", choices=LAYOUTS, help="nn: A @ B (default); nt: A @ Bt.T")
    ap.add_argument("--skip-slow", action="store_true", help="naive and coalesced only up to 4096")
    ap.add_argument("--compile-only", action="store_true", help="compile and assemble each row's kernel; no GPU")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gemm_h200.jsonl"))
    opts = ap.parse_args()
    dtypes = opts.dtypes.split(",")
    if any(d not in DTYPES for d in dtypes):
        ap.error(f"--dtypes: expected some of {DTYPES}, got {opts.dtypes}")
    names = opts.schedules.split(",") if opts.schedules else None
    if opts.compile_only:
        compile_only(opts.shapes.split(","), dtypes, names, opts.layout)
        return

    import torch

    from picograd.runtime import cuda

    torch.backends.cudnn.allow_tf32 = False
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}
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
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    open(opts.out, "w").close()
    rows = []
    for shape in opts.shapes.split(","):
        m, n, k = (int(x) for x in shape.split("x"))
        flop = 2.0 * m * n * k
        for dtype in dtypes:
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
            gen = torch.Generator(device="cuda").manual_seed(0)
            a = torch.randn((m, k), device="cuda", dtype=torch.float32, generator=gen).to(torch_dtype[dtype])
            b_shape = (k, n) if opts.layout == "nn" else (n, k)
            b = torch.randn(b_shape, device="cuda", dtype=torch.float32, generator=gen).to(torch_dtype[dtype])
            rhs = b if opts.layout == "nn" else b.t()  # cuBLAS on the same layout (a transposed operand, no copy)
            ref = a.double() @ rhs.double()
            c = torch.empty((m, n), device="cuda", dtype=a.dtype)
            guess = flop / (50e12 if dtype == "fp32" else 400e12) * 1e3
            reps, iters = plan(guess)
            cublas_ms = cuda_events_ms(torch, lambda a=a, b=rhs, c=c: torch.matmul(a, b, out=c), reps, iters)
            cublas_rel = float(torch.linalg.norm(c.double() - ref) / torch.linalg.norm(ref))
            for name in names or schedules_for(dtype):
                if opts.skip_slow and name in ("naive", "coalesced") and m * n * k > 4096**3:
                    continue
                try:
                    r = run_schedule(torch, cuda, name, m, n, k, a, b, ref, dtype, opts.layout)
                except Exception as e:  # one failing rung must not lose the others
                    r = {"schedule": name, "error": f"{type(e).__name__}: {e}"[:2000]}
                row = {**env, "m": m, "n": n, "k": k, "dtype": dtype, "layout": opts.layout, **r,
                       "cublas_ms": cublas_ms, "cublas_tflops": flop / cublas_ms / 1e9,
                       "cublas_rel_err": cublas_rel}  # fmt: skip
                if "ms" in r:
                    row["tflops"] = flop / r["ms"] / 1e9
                    row["ratio_to_cublas"] = cublas_ms / r["ms"]
                rows.append(row)
                with open(opts.out, "a") as f:  # a line at a time: a run cut by its time limit keeps its rows
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{shape:>16} {dtype:>5} {name:>10} "
                    + (
                        f"{row['ms']:9.3f} ms {row['tflops']:7.2f} TFLOP/s {row['ratio_to_cublas']:6.1%} of cuBLAS "
                        f"({row['cublas_tflops']:.1f})  err {row['rel_err']:.1e}  regs {row['registers']}"
                        if "ms" in row
                        else row["error"]
                    ),
                    flush=True,
                )
            del a, b, c, ref
            torch.cuda.empty_cache()
    print(f"wrote {len(rows)} lines to {opts.out}")


if __name__ == "__main__":
    main()
