"""The GPT's bf16 GPU train step under each ``unroll`` of the elementwise and movement kernels (issue 18).

``pg-schedule{unroll=u}`` gives the big elementwise and movement kernels ``u`` points a thread, their loads before
their stores (``picograd/passes/kinds/elementwise.py``); the GPU pipeline takes ``pipeline.POINTWISE_UNROLL``. This
script compiles ``examples/gpt_shakespeare.py --config gpu --dtype bfloat16``'s train step once per ``--unrolls``
value (each a fresh model from the same seed, on the same batches, in one process; the compile cache's key holds
the unroll) and times ``--steps`` steps
after ``--warmup`` (wall clock, the loss read back each step: median, p10, p90), the values interleaved round by
round (``--rounds``), so that a drift of the shared machine falls on all of them alike.

The floor it moves: those kernels are memory-bound; their bytes (``bench/gpu_launches.py``) over the H100's 3.35 TB/s
bound their time. A bf16 thread with one point has 2-6 bytes of loads in flight: 2,048 threads an SM then cover
too little of DRAM's latency (about 14 KB an SM at 3 TB/s and 600 ns).

    python bench/unroll_sweep.py --unrolls 1,2,4,8 --out bench/results/unroll_sweep_h100.json   # on the GPU
    python bench/unroll_sweep.py --null-driver --unrolls 1,4 --steps 1 --warmup 0 --rounds 1      # smoke, no GPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples"), os.path.join(HERE, "..")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unrolls", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=30, help="timed steps a round and unroll")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--null-driver", action="store_true", help="over tests/_null_driver.py (no GPU: a smoke run)")
    args = parser.parse_args()
    if args.null_driver:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        import _null_driver

        _null_driver.install(assemble=False)
    import gpt_shakespeare as ex
    import gpu_models
    from results_io import gpu_rows_env, write_json

    import picograd.driver.pipeline as pipeline

    unrolls = [int(u) for u in args.unrolls.split(",")]
    n = args.warmup + args.steps * args.rounds + 1
    case = gpu_models.make_case("gpt", args.device, "bfloat16", n, "gpu")
    steps: dict[int, Any] = {}
    state: dict[int, tuple[Any, Any, Any]] = {}  # each unroll's model, optimizer, LR schedule (the example's globals)
    compile_s: dict[int, float] = {}

    def use(u: int) -> None:  # the globals the step of ``u`` was traced with (else it would retrace: a new model)
        pipeline.POINTWISE_UNROLL = u
        ex.model, ex.opt, ex.sched = state[u]

    for u in unrolls:
        pipeline.POINTWISE_UNROLL = u
        step = case.picograd()
        state[u] = (ex.model, ex.opt, ex.sched)
        t0 = time.perf_counter()
        step(case.batches[0])  # traced and compiled under this unroll
        compile_s[u] = time.perf_counter() - t0
        for b in case.batches[1 : 1 + args.warmup]:
            step(b)
        steps[u] = step
        print(f"unroll={u}: first call {compile_s[u]:.1f} s", flush=True)
    times: dict[int, list[float]] = {u: [] for u in unrolls}
    losses: dict[int, float] = {}
    for r in range(args.rounds):
        for u in unrolls:
            use(u)
            start = 1 + args.warmup + r * args.steps
            for b in case.batches[start : start + args.steps]:
                t0 = time.perf_counter()
                losses[u] = steps[u](b)
                times[u].append(time.perf_counter() - t0)
    rows = []
    for u in unrolls:
        ms = [1e3 * t for t in times[u]]
        q = statistics.quantiles(ms, n=10)
        row = {"unroll": u, "ms_per_step": statistics.median(ms), "p10_ms": q[0], "p90_ms": q[-1], "steps": len(ms),
               "first_call_s": compile_s[u], "last_loss": losses[u],
               "executables": len(steps[u].compiled.executables())}  # fmt: skip
        rows.append(row)
        print(f"unroll={u}: {row['ms_per_step']:.3f} ms a step (p10 {q[0]:.3f}, p90 {q[-1]:.3f}), "
              f"last loss {losses[u]:.4f}")  # fmt: skip
    if args.out:
        import torch

        env = gpu_rows_env(torch)[1] if torch.cuda.is_available() else {"date": datetime.date.today().isoformat()}
        result = {
            "benchmark": f"{case.example}: train step by pg-schedule unroll",
            **env,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "rows": rows,
        }
        write_json(args.out, result)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
