"""The ceiling of ``mma.sync`` on this GPU: how many TFLOP/s a kernel of nothing but ``mma.sync`` reaches.

The ``mma-sync`` GEMM rung (``picograd/passes/kinds/matmul_mma_sync.py``) is measured against cuBLAS, which on Hopper
runs ``wgmma``; this script measures what ``mma.sync`` itself can give, so that the rung's shortfall splits into the
instruction's ceiling and the kernel's losses. Each warp runs ``--iters`` rounds of ``--chains`` independent
``mma.sync`` on register operands (no memory traffic in the loop; the accumulators are summed and stored at the end
so that nothing is dead), ``--warps`` warps per block and ``--blocks-per-sm`` blocks per SM. FLOP = 2 M N K per mma
(``m16n8k16`` bf16/f16: 4096; ``m16n8k8`` tf32: 2048). Timing: CUDA events around one launch, median of 10 after
warm-up (``picograd.runtime.cuda.time_ms``). Writes JSON lines (date, gpu, dtype, shape, warps, blocks_per_sm,
chains, tflops) to ``--out`` and prints them; ``--ptx`` prints the kernel and exits (no GPU: ``ptxas`` checks it).

    python bench/mma_peak.py                         # bf16, f16, tf32; 4 and 8 warps a block
    python bench/mma_peak.py --ptx --dtype tf32 | ptxas -arch=sm_90 -o /dev/null -
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SHAPES = {"bf16": ("m16n8k16", 4, 2, 4096), "f16": ("m16n8k16", 4, 2, 4096), "tf32": ("m16n8k8", 4, 2, 2048)}
"""Per input type: the mma shape, the A and B fragment registers of a thread, and the FLOP of one mma."""


def kernel_ptx(dtype: str, chains: int, iters: int) -> str:
    """PTX of ``mma_peak(out)``: ``iters`` rounds of ``chains`` independent mma.sync per warp, then each thread's
    accumulator sum stored to ``out[global thread]`` (f32)."""
    shape, na, nb, _ = SHAPES[dtype]
    acc = [f"%f{4 * c + i}" for c in range(chains) for i in range(4)]
    a = [f"%a{i}" for i in range(na)]
    b = [f"%b{i}" for i in range(nb)]
    lines = [
        ".version 8.0",
        ".target sm_80",
        ".address_size 64",
        ".visible .entry mma_peak(.param .u64 out)",
        "{",
        f"    .reg .b32 %a<{na}>, %b<{nb}>, %r<4>;",
        f"    .reg .f32 %f<{4 * chains}>, %s;",
        "    .reg .b64 %rd<4>;",
        "    .reg .pred %p;",
        "    mov.u32 %r0, %tid.x;",
        "    mov.u32 %r1, %ctaid.x;",
        "    mov.u32 %r2, %ntid.x;",
        "    mad.lo.u32 %r1, %r1, %r2, %r0;",
        *(f"    xor.b32 {r}, %r0, {0x3C003C00 + 17 * i};" for i, r in enumerate(a + b)),
        *(f"    mov.f32 {f}, 0f00000000;" for f in acc),
        f"    mov.u32 %r3, {iters};",
        "LOOP:",
    ]
    for c in range(chains):
        d = "{" + ", ".join(acc[4 * c : 4 * c + 4]) + "}"
        lines.append(
            f"    mma.sync.aligned.{shape}.row.col.f32.{dtype}.{dtype}.f32 {d}, {{{', '.join(a)}}}, "
            f"{{{', '.join(b)}}}, {d};"
        )
    lines += [
        "    sub.u32 %r3, %r3, 1;",
        "    setp.ne.u32 %p, %r3, 0;",
        "    @%p bra LOOP;",
        "    mov.f32 %s, 0f00000000;",
        *(f"    add.f32 %s, %s, {f};" for f in acc),
        "    ld.param.u64 %rd0, [out];",
        "    cvta.to.global.u64 %rd1, %rd0;",
        "    mul.wide.u32 %rd2, %r1, 4;",
        "    add.u64 %rd3, %rd1, %rd2;",
        "    st.global.f32 [%rd3], %s;",
        "    ret;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def measure(cuda, torch, dtype: str, warps: int, blocks_per_sm: int, chains: int, iters: int) -> dict:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    blocks, threads = sms * blocks_per_sm, 32 * warps
    kernel = cuda.compile_ptx(kernel_ptx(dtype, chains, iters), "sm_90").kernel("mma_peak")
    out = torch.empty(blocks * threads, device="cuda", dtype=torch.float32)
    torch.cuda.synchronize()
    args = [np.uint64(out.data_ptr())]
    ms = cuda.time_ms(lambda: cuda.launch(kernel, blocks, threads, args), warmup=2, iters=10)
    mmas = blocks * warps * iters * chains
    return {
        "dtype": dtype,
        "shape": SHAPES[dtype][0],
        "warps": warps,
        "blocks_per_sm": blocks_per_sm,
        "chains": chains,
        "registers": kernel.num_regs,
        "ms": round(ms, 4),
        "tflops": round(mmas * SHAPES[dtype][3] / ms / 1e9, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bf16,f16,tf32", help="comma-separated: bf16, f16, tf32")
    parser.add_argument("--chains", type=int, default=8, help="independent mma per round and warp")
    parser.add_argument("--iters", type=int, default=20000, help="rounds per warp")
    parser.add_argument("--ptx", action="store_true", help="print the kernel's PTX (first dtype) and exit")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "mma_peak.jsonl"))
    args = parser.parse_args()
    dtypes = args.dtype.split(",")
    if args.ptx:
        sys.stdout.write(kernel_ptx(dtypes[0], args.chains, args.iters))
        return
    import torch

    from picograd.runtime import cuda

    env = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }
    with open(args.out, "a") as f:
        for dtype in dtypes:
            for warps, per_sm in ((4, 2), (8, 1), (8, 2), (4, 4)):
                row = {**env, **measure(cuda, torch, dtype, warps, per_sm, args.chains, args.iters)}
                print(json.dumps(row), flush=True)
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
