"""Host time per call of a compiled GPU train step, measured on the CPU: the Bengio MLP step of
examples/mlp_names.py (batch 32, SGD) run through the real CUDA runtime's host code over a null driver
(tests/_null_driver.py: kernels do nothing, memory is host bytes, copies and syncs are counted).

At batch 32 the GPU step is ~30 short kernels in one CUDA graph (~0.1 ms of GPU time on an H100/H200), so a step's
wall time on the GPU is the host's Python work unless that is well below the GPU's. This measures the host's part
without a GPU: microseconds per step over ``--steps`` steps after warm-up (median of ``--repeats`` blocks;
wall clock and process CPU time, which a machine shared with other work disturbs less), and the copies per step,
for the two step loops of the benchmarks:

- ``item``: bench/gpu_models.py's loop: upload the batch (``pg.tensor(b, device="cuda")`` x 2), the compiled step,
  ``loss.item()`` (the user's synchronisation);
- ``sync``: bench/train_step.py's loop: upload, the step, ``cuda.synchronize()``.

``--profile`` prints cProfile's top functions of the ``item`` loop. Results are printed as one JSON line (and appended
to ``--out``); bench/results/gpu_host_overhead_cpu.jsonl has this checkout against main before it and the tree of
2026-11-29 (its H200 figure of 0.149 ms), run alternately.

    python bench/gpu_host_overhead.py --steps 1000
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "examples"), os.path.join(ROOT, "tests"), HERE, ROOT]

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--label", default="this checkout", help="what was measured (a commit), for --out")
    parser.add_argument("--out", help="append the result as a JSON line to this file")
    args = parser.parse_args()

    import _null_driver
    import mlp_names as ex
    import train_step as ts

    import picograd as pg
    from picograd.runtime import cuda

    _null_driver.install()
    xtr, ytr = ts.load_data()
    rng = np.random.default_rng(0)
    batches = [(xtr[ix], ytr[ix]) for ix in (rng.integers(0, len(xtr), ex.BATCH) for _ in range(64))]
    ex.model, ex.opt = ex.make(0, "sgd", ts.LR, "cuda")
    step = pg.compile(ex.train_step.fn)

    def item_loop(n: int) -> None:
        for i in range(n):
            x, y = batches[i % len(batches)]
            step(pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda")).item()

    def sync_loop(n: int) -> None:
        for i in range(n):
            x, y = batches[i % len(batches)]
            step(pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda"))
            cuda.synchronize()

    t0 = time.perf_counter()
    item_loop(1)
    first = time.perf_counter() - t0
    result: dict = {"first_call_s": first}
    for name, loop in (("item", item_loop), ("sync", sync_loop)):
        loop(50)  # warm-up: rings filled, graphs captured
        blocks, cpu_blocks = [], []
        for _ in range(args.repeats):
            _null_driver.COUNTS.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            loop(args.steps)
            blocks.append(1e6 * (time.perf_counter() - t0) / args.steps)
            cpu_blocks.append(1e6 * (time.process_time() - c0) / args.steps)
        counts = {k: v / args.steps for k, v in sorted(_null_driver.COUNTS.items())}
        result[name] = {
            "us_per_step": statistics.median(blocks),
            "cpu_us_per_step": statistics.median(cpu_blocks),  # process time: less sensitive to a loaded machine
            "blocks_us": blocks,
            "per_step": counts,
        }
    exe = step.executables()[0]
    result["executable_stats"] = {k: getattr(exe.stats, k) for k in ("calls", "captures", "updates", "eager")}
    result["launches_per_step"] = sum(type(s).__name__ == "Launch" for s in exe.steps)
    result["label"] = args.label
    result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["machine"] = f"{platform.machine()} CPU, {os.cpu_count()} cores (null driver)"
    result["python"] = platform.python_version()
    result["numpy"] = np.__version__
    result["load"] = os.getloadavg()
    print(json.dumps(result))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        item_loop(args.steps)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
