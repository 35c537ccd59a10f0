"""Every kernel of the GPT's compiled GPU train step with its kind, schedule, FLOPs and bytes, and an estimate of
its time on an H100, computed without a GPU; float32 against bfloat16.

Traces ``examples/gpt_shakespeare.py``'s ``train_step`` at its ``gpu`` config (6 layers, 384 wide, 6 heads, block
256, batch 64, dropout 0.2) as ``bench/gpu_launches.py`` does, for each ``--dtypes`` (``float32``; ``bfloat16``:
bf16 mixed precision), and reads each launch of the ``gpu`` stage's host function (its grid and the bytes of the
buffers it is passed, ``gpu_launches.launch_bytes``: an upper bound of its DRAM traffic) together with the kernel it
comes from at the ``kernels`` stage (``kernel.fused``: its kind and ``#kernel.schedule``; a matmul's M, N, K; an
attention's shapes, causality and dropout). A launch whose name carries a suffix is the second or third nest of its
kernel: ``_1`` a split-K matmul's or a split reduction's combining nest, an attention backward's dk/dv kernel;
``_2`` its dq kernel (the unsuffixed one computes ``D = rowsum(dout * out)``).

**The estimate** (H100 SXM, 132 SMs; a model to rank the kernels and to compare the two precisions, not a
measurement; ``bench/gpu_profile.py`` measures them):

- matmuls: an exact shape measured on the GPU under the same schedule (``bench/results/gemm_*_h100.jsonl``,
  ``gemm_splitk_h200.jsonl``: bf16 ``auto-sm90a`` rows) is taken as it is. Otherwise FLOPs over the rung's rate at
  4096^3 (:data:`RATES`: fp32 ``cp-async`` 128x128 44.6 TFLOP/s on the H100, its 64x64 tile 35.4 on the H200 at
  1024^3, where 256 blocks run two an SM), times the waves: a SIMT block runs at the SM's rate over the blocks it
  shares the SM with once an SM holds :data:`FULL_WARPS` warps, else proportionally slower (fewer warps than that do
  not hide the FMA and shared-memory latencies); blocks beyond one round run in further rounds.
- attention: bf16 ``flash-mma`` at the GPT's shape as measured (``attention_gpt_h100.jsonl``: forward with dropout
  0.0475 ms, forward + backward 0.215 ms a layer; the backward shared among its three kernels by FLOPs). The SIMT
  ``flash`` kernels of float32 were never timed: their time is the SASS instructions of their inner loop (ptxas
  ``-arch=sm_90a``, ``cuobjdump``) per (query, key) a lane visits, times the lanes and the pairs the causal tiles
  visit, at the issue rate of 132 SMs x 4 schedulers x 32 lanes at 1.755 GHz (a lower bound: no stall counted).
- the rest (elementwise, reductions, copies, random, scatter): bytes at :data:`DRAM_BYTES_PER_S`, at least
  :data:`MIN_LAUNCH_S` a launch.

    python bench/gpu_kernel_analysis.py --json bench/results/gpu_launches_gpt_fp32_analysis.json
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]

SMS = 132
DRAM_BYTES_PER_S = 3.0e12
"""HBM3 of the H100 SXM (3.35 TB/s peak), what a streaming kernel reaches."""
MIN_LAUNCH_S = 2.5e-6
"""The shortest kernel of the bf16 profile (``gpu_profile_gpt_bf16_h100.txt``: a one-block sum, 2.9 us)."""
ISSUE_PER_S = SMS * 4 * 32 * 1.755e9
"""Lane-instructions an H100 issues a second (4 schedulers an SM, one warp instruction each a cycle)."""
FULL_WARPS = 8
"""Warps an SM needs to run a SIMT matmul tile at its rate (the 64x64 tile's 35.4 TFLOP/s is two 4-warp blocks an
SM; the 128x128 tile's 44.6, one or two 8-warp blocks)."""
RATES = {
    ("cp-async", 128, "fp32"): 44.6e12,  # gemm_h100.jsonl, 4096^3
    ("cp-async", 64, "fp32"): 35.4e12,  # gemm_h200.jsonl, 1024^3 auto (64x64 tiles, 256 blocks)
    ("mma-sync", 128, "bf16"): 389.8e12,  # gemm_mma_variants_h100.jsonl, 4096^3
    ("mma-sync", 64, "bf16"): 300.0e12,  # not measured: the 128x128 rate less a quarter (smaller tiles)
    ("wgmma-ws", 128, "bf16"): 631.5e12,  # gemm_h100.jsonl, 4096^3
}
"""FLOP rate of each matmul rung (strategy, tile rows, precision) on a full GPU."""
ATTENTION_BF16_S = {"forward": 0.0475e-3, "backward": 0.215e-3 - 0.0475e-3}
"""bf16 ``flash-mma`` at the GPT's shape with dropout 0.2, a layer (``attention_gpt_h100.jsonl``, H100)."""
CHUNK_KEYS = {"forward": 8, "dkdv": 1, "dq": 1}
"""(query, key) pairs an iteration of a SIMT ``flash`` kernel's inner loop computes (``kinds/attention.py``: the
forward's chunk of 8 keys; the dk/dv kernel's one query; the dq kernel's one key)."""


def measured_matmuls() -> dict[tuple[str, int, int, int], float]:
    """(precision, M, N, K) -> seconds of the ``auto`` kernel as measured on an H100/H200 (bench/results)."""
    out: dict[tuple[str, int, int, int], float] = {}
    for path in sorted(glob.glob(os.path.join(HERE, "results", "gemm_*.jsonl"))):
        for line in open(path):
            r = json.loads(line)
            if r.get("schedule") == "auto-sm90a" and r["dtype"] == "bf16":
                out[("bf16", r["m"], r["n"], r["k"])] = r["ms"] * 1e-3
    return out


def kernel_info(module: Any) -> dict[str, dict[str, Any]]:
    """Per kernel (``k<n>``) of the ``kernels``-stage ``module``: kind, schedule, and what the estimate needs."""
    from picograd.dialects import kernel, pg
    from picograd.dialects.pg import element_of, shape_of

    info: dict[str, dict[str, Any]] = {}
    for op in module.walk():
        if not isinstance(op, kernel.FusedOp):
            continue
        name = op.sym_name.data
        key = name.split("_")[0]
        sched = op.schedule
        assert sched is not None, f"{name}: pg-schedule gives every kernel a schedule"
        row: dict[str, Any] = {
            "kernel": name,
            "kind": op.kind.data,
            "strategy": sched.strategy.data,
            "schedule": str(sched).replace("#kernel.schedule", ""),
        }
        ops = list(op.body.block.ops)
        mm = [o for o in ops if isinstance(o, pg.MatmulOp)]
        att = [o for o in ops if isinstance(o, pg.ScaledDotProductAttentionOp | pg.AttentionBackwardOp)]
        if op.kind.data == "matmul" and len(mm) == 1:
            *batch, m, n = shape_of(mm[0].result)
            k = shape_of(mm[0].lhs)[-1]
            row.update(m=m, n=n, k=k, batch=math.prod(batch), precision=mm[0].precision)
            row["flops"] = 2 * math.prod(batch) * m * n * k
            row["tile"] = sched.sizes("tile")[:2] if "tile" in sched.values else None
            row["split_k"] = sched.count("split_k", 1)
        elif op.kind.data == "attention" and att:
            a = att[0]
            *bh, t, d = shape_of(a.query)
            s = shape_of(a.key)[-2]
            row.update(bh=math.prod(bh), t=t, s=s, d=d, causal=a.causal is not None)
            row["dropout"] = a.dropout is not None or any(isinstance(o, pg.RandomOp) for o in ops)
            row["backward"] = isinstance(a, pg.AttentionBackwardOp)
            row["element"] = str(element_of(a.query))
            row["sched_values"] = {k: sched.count(k) for k in ("lanes", "block_m", "block_n", "bwd_block_n")}
        info[key] = row
    return info


def sass_inner_loops(ptx_text: str) -> dict[str, int]:
    """Per kernel of ``ptx_text``: the SASS instructions of its innermost loop (the shortest backward branch's
    body), from ptxas -arch=sm_90a and cuobjdump; empty when either tool is missing."""
    from picograd.target import ptxas

    try:
        cubin = ptxas.assemble(ptx_text, "sm_90a").cubin
    except Exception as e:  # no assembler here: no SASS counts
        print(f"no SASS ({e}): the SIMT attention is not estimated", file=sys.stderr)
        return {}
    tool = os.environ.get("CUOBJDUMP") or next(
        iter(glob.glob("/root/.pyenv/versions/*/lib/python3*/site-packages/nvidia/cu13/bin/cuobjdump")), "cuobjdump"
    )
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "--dump-sass", f.name], capture_output=True, text=True, check=True).stdout
    loops: dict[str, int] = {}
    for part in re.split(r"\n\s+Function : ", text)[1:]:
        name = part.split("\n", 1)[0].strip()
        code = [(int(m.group(1), 16), m.group(2)) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", part)]
        back = []  # (start, end) of each loop: a branch to an earlier address
        for pc, ins in code:
            target = re.search(r"\bBRA\b.*?0x([0-9a-f]+)", ins)
            if target and int(target.group(1), 16) < pc:
                back.append((int(target.group(1), 16), pc))
        innermost = [(a, e) for a, e in back if not any(a <= a2 and e2 <= e and (a2, e2) != (a, e) for a2, e2 in back)]
        if innermost:  # the largest innermost loop: the compute loop, not a tile copy
            loops[name] = max(sum(1 for p, _ in code if a <= p <= e) for a, e in innermost)
    return loops


def attention_pairs(row: dict[str, Any], nest: str) -> int:
    """(query, key) pairs a SIMT ``flash`` kernel visits (causal: whole tiles up to the block's last row)."""
    bh, t, s = row["bh"], row["t"], row["s"]
    if not row["causal"]:
        return bh * t * s
    rows = row["sched_values"]["bwd_block_n" if nest == "dkdv" else "block_m"]
    bn = row["sched_values"]["block_n"] if nest != "dkdv" else 16
    total = 0
    for blk in range(-(-t // rows)):
        last = min(t, (blk + 1) * rows) - 1
        if nest == "dkdv":  # key rows blk*rows.., the queries from the block's first key on
            total += rows * (t - blk * rows)
        else:
            total += rows * min(s, (last // bn + 1) * bn)
    return bh * total


def estimate(
    name: str, grid: list[int], nbytes: int, row: dict[str, Any] | None, measured: dict, loops: dict[str, int]
) -> tuple[str, float, float, str]:
    """(role, FLOPs, seconds, how) of one launch (see the module docstring)."""
    mem_s = max(MIN_LAUNCH_S, nbytes / DRAM_BYTES_PER_S)
    suffix = re.match(r"k\d+_.*?(?:_(\d))?$", name)
    part = int(suffix.group(1)) if suffix and suffix.group(1) else 0
    if row is None:
        return "other", 0.0, mem_s, "bytes"
    if row["kind"] == "matmul" and "flops" in row:
        if part:
            return "split-K sum", 0.0, mem_s, "bytes"
        flops = row["flops"]
        prec = row["precision"]
        key = (prec, row["m"], row["n"], row["k"])
        if key in measured and row["batch"] == 1:
            return "matmul", flops, measured[key], "measured (gemm_*.jsonl)"
        tile = row["tile"][0] if row.get("tile") else 0
        rate = RATES.get((row["strategy"], tile, prec))
        if rate is None:
            rate = RATES.get((row["strategy"], 128, prec))
        if rate is None:  # thread_per_point: a thread per output, its K loop in turn
            return "matmul", flops, flops / 1.0e12, "thread per output, ~1 TFLOP/s"
        blocks = math.prod(g for g in grid if g > 0)
        if prec == "fp32":
            threads = 256 if tile == 128 else 128
            per_sm = -(-blocks // SMS)  # blocks the busiest SM runs
            resident = max(1, 65536 // (threads * 128))  # up to 128 registers a thread
            warps = min(per_sm, resident) * threads // 32
            sm_rate = rate / SMS * min(1.0, warps / FULL_WARPS)
            seconds = per_sm * (flops / blocks) / sm_rate
            return "matmul", flops, seconds, f"{rate / 1e12:.1f} TF/s rung, {blocks} blocks, {warps} warps/SM"
        return "matmul", flops, flops / rate, f"{rate / 1e12:.0f} TF/s rung"
    if row["kind"] == "attention" and "bh" in row:
        nest = "forward" if not row["backward"] else {0: "dsum", 1: "dkdv", 2: "dq"}[part]
        unit = 2 * row["bh"] * row["t"] * row["s"] * row["d"] * (0.5 if row["causal"] else 1.0)
        flops = unit * {"forward": 2, "dsum": 0, "dkdv": 4, "dq": 3}[nest]
        if nest == "dsum":
            return "attention D", 0.0, mem_s, "bytes"
        if row["strategy"] != "flash":
            total = ATTENTION_BF16_S["forward" if nest == "forward" else "backward"]
            share = 1.0 if nest == "forward" else {"dkdv": 4 / 7, "dq": 3 / 7}[nest]
            return f"attention {nest}", flops, total * share, "measured (attention_gpt_h100.jsonl)"
        instrs = loops.get(f"attention {nest}")
        if instrs is None:
            return f"attention {nest}", flops, flops / 20e12, "no SASS: 20 TF/s assumed"
        lanes = row["sched_values"]["lanes"]
        pairs = attention_pairs(row, nest)
        seconds = pairs * lanes * instrs / CHUNK_KEYS[nest] / ISSUE_PER_S
        return f"attention {nest}", flops, seconds, f"{instrs} SASS / {CHUNK_KEYS[nest]} pairs / lane, {pairs} pairs"
    return row["kind"], 0.0, mem_s, "bytes"


def attention_loops(dtype: str) -> dict[str, int]:
    """SASS instructions of the inner loop of each SIMT attention kernel of the 1-layer step (they are the same in
    every layer): ``attention forward``, ``attention dkdv``, ``attention dq``."""
    import gpu_launches

    from picograd.driver.gpu_compile import compile_for_cuda

    program = compile_for_cuda(gpu_launches.trace(1, dtype), arch="sm_90a")
    loops = sass_inner_loops(program.ptx)
    out: dict[str, int] = {}
    for name, n in loops.items():
        if "scaled_dot_product_attention" in name:
            out.setdefault("attention forward", n)
        elif "attention_backward_1" in name:
            out.setdefault("attention dkdv", n)
        elif "attention_backward_2" in name:
            out.setdefault("attention dq", n)
    return out


def analyse(layers: int, dtype: str, arch: str) -> dict[str, Any]:
    import gpu_launches

    from picograd.driver.pipeline import passes_until, run_passes

    module = gpu_launches.trace(layers, dtype)
    done = len(passes_until("simplify"))
    kernels_stage = passes_until("kernels", arch=arch)
    run_passes(module, kernels_stage[done:], verify=False)
    info = kernel_info(module)
    run_passes(module, passes_until("gpu", arch=arch)[len(kernels_stage) :], verify=False)
    launches = gpu_launches.launch_bytes(module)
    measured = measured_matmuls()
    loops = attention_loops(dtype) if any(r["strategy"] == "flash" for r in info.values()) else {}
    rows = []
    for name, grid, nbytes in launches:
        row = info.get(name.split("_")[0])
        role, flops, seconds, how = estimate(name, grid, nbytes, row, measured, loops)
        rows.append(
            {
                "launch": name,
                "kind": row["kind"] if row else "?",
                "role": role,
                "schedule": row["schedule"] if row else "",
                "shape": shape_text(row) if row else "",
                "grid": grid,
                "flops": flops,
                "bytes": nbytes,
                "est_us": seconds * 1e6,
                "how": how,
            }
        )
    return {"dtype": dtype, "launches": rows, "attention_sass_loop": loops}


def shape_text(row: dict[str, Any]) -> str:
    if "flops" in row and row["kind"] == "matmul":
        b = f"{row['batch']}x" if row["batch"] > 1 else ""
        return f"{b}{row['m']}x{row['n']}x{row['k']} {row['precision']}"
    if "bh" in row:
        drop = ", dropout" if row["dropout"] else ""
        causal = ", causal" if row["causal"] else ""
        return f"BH {row['bh']}, T {row['t']}, d {row['d']}{causal}{drop}, {row['element']}"
    return ""


def group(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Launches summed by (role, schedule, shape): a layer's kernels of one kind together."""
    out: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"launches": 0, "flops": 0.0, "bytes": 0, "est_us": 0.0}
    )
    for r in rows:
        role = r["role"] if r["role"] not in ("elementwise", "movement", "random", "other", "gather") else "memory"
        g = out[(role, r["schedule"] if role != "memory" else r["kind"], r["shape"])]
        g["launches"] += 1
        g["flops"] += r["flops"]
        g["bytes"] += r["bytes"]
        g["est_us"] += r["est_us"]
        g["how"] = r["how"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["est_us"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--arch", default="sm_90a")
    parser.add_argument("--json", help="write every launch and the summary here")
    parser.add_argument("--markdown", help="write the summary tables here")
    args = parser.parse_args()
    results = {d: analyse(args.layers, d, args.arch) for d in args.dtypes.split(",")}
    lines: list[str] = []
    for dtype, res in results.items():
        rows = res["launches"]
        total = sum(r["est_us"] for r in rows)
        lines.append(f"\n### {dtype}: {len(rows)} launches, {sum(r['bytes'] for r in rows) / 1e9:.2f} GB, "
                     f"{sum(r['flops'] for r in rows) / 1e12:.3f} TFLOP, estimated {total / 1e3:.2f} ms\n")  # fmt: skip
        if res["attention_sass_loop"]:
            lines.append(f"SIMT attention inner loops (SASS instructions): {res['attention_sass_loop']}\n")
        lines.append("| role | schedule | shape | launches | GFLOP | MB | est. ms | how |")
        lines.append("|---|---|---|---:|---:|---:|---:|---|")
        by_role: dict[str, float] = defaultdict(float)
        for (role, sched, shape), g in group(rows).items():
            by_role[role.split(" ")[0]] += g["est_us"]
            if g["est_us"] < 0.004 * total:
                continue
            lines.append(f"| {role} | `{sched}` | {shape} | {g['launches']} | {g['flops'] / 1e9:.1f} | "
                         f"{g['bytes'] / 1e6:.0f} | {g['est_us'] / 1e3:.3f} | {g['how']} |")  # fmt: skip
        ranked = sorted(by_role.items(), key=lambda kv: -kv[1])
        lines.append("\nby role (ms): " + ", ".join(f"{k} {v / 1e3:.2f}" for k, v in ranked))
    commit = os.popen(f"git -C {HERE} rev-parse --short HEAD").read().strip()
    today = datetime.date.today().isoformat()
    head = (f"GPT train step, examples/gpt_shakespeare.py --config gpu, {args.layers} layers, {args.arch}: estimated "
            f"H100 times (bench/gpu_kernel_analysis.py, no GPU), {today}, commit {commit}")  # fmt: skip
    text = head + "\n" + "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        from results_io import compiled_only_header, write_json

        write_json(
            args.json,
            {
                **compiled_only_header(
                    "no GPU (compiled only; times are estimates for an H100)",
                    f"examples/gpt_shakespeare.py CONFIGS['gpu'], {args.layers} layers, {args.arch}",
                ),
                "results": results,
            },
            indent=1,
        )


if __name__ == "__main__":
    main()
