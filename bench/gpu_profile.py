"""Where a course model's compiled GPU step spends its time: every kernel of one step, timed by Nsight Compute.

Builds the model as ``bench/gpu_models.py`` does (the example's own code at its GPU config), runs ``--warmup`` steps,
then one step between ``cuProfilerStart``/``cuProfilerStop``, so that ``ncu --profile-from-start off`` times exactly
that step's kernels (each kernel node of its CUDA graphs), and writes the launch list (kernel names, grids, blocks)
beside it. Run on the GPU machine:

    ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \\
        python3 bench/gpu_profile.py --model gpt:bfloat16 --launches OUT/launches.json > OUT/ncu_gpt.csv

then here: ``python bench/gpu_profile.py --report OUT/ncu_gpt.csv --launches OUT/launches.json`` prints the kernels
by total time, with their grid, block and share of the step. ``--host-steps N`` (without ncu) profiles N steps'
host code with cProfile instead: for steps whose kernels are short (the names MLP), the Python around them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "s": 1e9}  # ncu's, to ns


def run(model: str, warmup: int, launches_path: str | None, host_steps: int) -> None:
    sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]
    import gpu_models
    from cuda.bindings import driver

    name, _, dtype = model.partition(":")
    case = gpu_models.make_case(name, "cuda", dtype or "float32", warmup + 2, "gpu")
    step = case.picograd()
    for batch in case.batches[: warmup + 1]:
        step(batch)
    if host_steps:  # where the host's time goes in a step (Python: guards, binding, launch, the loss read back)
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        for _ in range(host_steps):
            step(case.batches[warmup])
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    (err,) = driver.cuProfilerStart()
    step(case.batches[warmup + 1])
    (err2,) = driver.cuProfilerStop()
    print(f"profiled one step of {case.example} (cuProfilerStart {err}, stop {err2})", file=sys.stderr)
    if launches_path:
        exe = next(e for e in step.compiled.executables() if hasattr(e, "steps"))  # type: ignore[attr-defined]
        rows = [
            {"kernel": s.kernel, "grid": s.grid, "block": s.block, "shmem": s.shmem}
            for s in exe.steps
            if type(s).__name__ == "Launch"
        ]
        with open(launches_path, "w") as f:
            json.dump(rows, f)


def report(csv_path: str, launches_path: str | None, top: int) -> None:
    text = open(csv_path).read()
    start = text.find('"ID"')
    rows = list(csv.DictReader(io.StringIO(text[start:])))
    total_ns: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(r["Metric Value"].replace(",", ""))
        scale = UNITS[r["Metric Unit"]]
        total_ns[r["Kernel Name"]] += value * scale
        count[r["Kernel Name"]] += 1
    shapes: dict[str, str] = {}
    if launches_path:
        for launch in json.load(open(launches_path)):
            shapes.setdefault(launch["kernel"], f"grid {launch['grid']} block {launch['block']}")
    step = sum(total_ns.values())
    print(f"{len(rows)} kernel launches, {step / 1e6:.3f} ms of kernel time in the step")
    for k, ns in sorted(total_ns.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{ns / 1e3:10.1f} us {100 * ns / step:5.1f}%  x{count[k]:<3d} {k}  {shapes.get(k, '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt:bfloat16", help="as gpu_models.py's --models: model[:bfloat16]")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--launches", help="write (or, with --report, read) the step's launch list here")
    parser.add_argument("--report", help="an ncu CSV to summarize (no GPU needed)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--host-steps", type=int, default=0, help="also profile this many steps' host code (cProfile)")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.launches, args.top)
    else:
        run(args.model, args.warmup, args.launches, args.host_steps)


if __name__ == "__main__":
    main()
