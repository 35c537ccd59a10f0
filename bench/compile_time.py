"""Compile time of the GPT train step (examples/gpt_shakespeare.py, its ``gpu`` config: 384 wide, 6 heads, block
256, batch 64, dropout 0.2, AdamW with gradient clipping) at 1, 2, 4, 8 and 12 layers.

For each layer count a small model file (written to a temporary directory) builds the example's model with that
many layers and compiles the example's own ``train_step`` for it (``pg.compile(example_inputs=...)``: no model
code is copied). Then, each in a fresh process so that no cache is shared:

- ``trace-to-cpu``: trace the step and build what the CPU runs (``fn.ir("simplify")``, the numpy executor's
  ``compile_func``): the first compiled CPU call without the execution;
- ``trace-to-ptx``: trace the step, lower it through every stage to the ``ptx`` dialect and print the PTX text
  (what ``pgc --emit=ptx`` does after importing the model);
- ``pgc --emit=ptx``: the whole command (``pgc model.py --emit=ptx -o out.ptx``), wall clock, Python's start and
  imports included.

``--by-pass L`` instead prints the CPU seconds of each pass at L layers, and ``--profile L`` cProfile's top
functions of trace-to-ptx at L layers (to find where time goes).
Each is measured in CPU seconds (the process's user + system time: robust on a shared machine, where the wall clock
stretches with the load) and wall-clock seconds. Writes --out (default bench/results/compile_time_cpu.json: date,
machine, versions, seconds per stage and layer count, seconds per layer) and prints a table.

    python bench/compile_time.py
    python bench/compile_time.py --layers 4,12 --stages pgc
    python bench/compile_time.py --profile 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from results_io import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")

MODEL_FILE = """\
import sys
from dataclasses import replace

sys.path.insert(0, {examples!r})
import gpt_shakespeare as ex

import picograd as pg

cfg = replace(ex.CONFIGS["gpu"], n_layer={layers})
ex.model, ex.opt, ex.sched = ex.make(cfg, 1337)
train_step = pg.compile(ex.train_step.fn, example_inputs=(pg.Spec((cfg.batch_size, cfg.block_size), "int64"),) * 2)
"""

# Run in a child process: import the model file, then time one stage (the import is not timed).
CHILD = """\
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("gpt_model", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
stage = sys.argv[2]
t0, c0 = time.perf_counter(), time.process_time()
if stage == "trace-to-cpu":
    from picograd.runtime.numpy_executor import compile_func
    compile_func(m.train_step.ir("simplify").body.block.first_op)
else:
    from picograd.tools.pgc import write_ptx
    import os
    write_ptx(m.train_step.ir("ptx"), os.devnull)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""

STAGES = ("trace-to-cpu", "trace-to-ptx", "pgc")


def model_file(directory: str, layers: int) -> str:
    path = os.path.join(directory, f"gpt_{layers}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(MODEL_FILE.format(examples=EXAMPLES, layers=layers))
    return path


def pgc_command() -> list[str]:
    return [sys.executable, "-c", "import sys; from picograd.tools.pgc import cli; sys.exit(cli())"]


def time_stage(path: str, stage: str, timeout: float) -> dict[str, float]:
    """Wall-clock and CPU seconds of ``stage`` for the model file ``path``, in a fresh process."""
    if stage == "pgc":
        out = os.path.join(os.path.dirname(path), "out.ptx")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([*pgc_command(), path, "--emit=ptx", "-o", out], check=True, timeout=timeout)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"wall": wall, "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, path, stage], check=True, timeout=timeout, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile(layers: int, top: int) -> None:
    import cProfile
    import importlib.util
    import pstats

    from picograd.tools.pgc import write_ptx

    with tempfile.TemporaryDirectory() as d:
        spec = importlib.util.spec_from_file_location("gpt_model", model_file(d, layers))
        assert spec is not None and spec.loader is not None
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        prof = cProfile.Profile()
        prof.enable()
        write_ptx(m.train_step.ir("ptx"), os.devnull)
        prof.disable()
    stats = pstats.Stats(prof).sort_stats("cumulative")
    stats.print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def by_pass(layers: int) -> None:
    """CPU seconds of each step of trace-to-ptx at ``layers`` layers: the trace, each pass, one verification of
    the result and the PTX printing."""
    import importlib.util

    from picograd.dialects import ptx
    from picograd.driver.pipeline import no_cyclic_gc, passes_until, run_passes
    from picograd.target.ptx_printer import print_ptx

    with tempfile.TemporaryDirectory() as d:
        spec = importlib.util.spec_from_file_location("gpt_model", model_file(d, layers))
        assert spec is not None and spec.loader is not None
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
    total = 0.0

    def timed(what: str, fn) -> None:
        nonlocal total
        c0 = time.process_time()
        fn()
        c = time.process_time() - c0
        total += c
        print(f"{what:28s} {c:7.2f} s CPU", flush=True)

    module: list = []
    timed("trace", lambda: module.append(m.train_step.ir("pg")))
    for name in passes_until("ptx"):
        timed(name, lambda name=name: run_passes(module[0], [name], verify=False))

    def verify() -> None:
        with no_cyclic_gc():  # as run_passes verifies (a collection of the whole module would be timed otherwise)
            module[0].verify()

    timed("verify (once)", verify)
    mods = [op for op in module[0].ops if isinstance(op, ptx.ModuleOp)]

    def print_all() -> None:
        with no_cyclic_gc():  # as pgc's write_ptx prints
            for op in mods:
                print_ptx(op, verify=False)

    timed("print_ptx", print_all)
    print(f"{'total':28s} {total:7.2f} s CPU")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("picograd", "xdsl", "numpy")} | {"python": platform.python_version()}


def write(path: str, timed: dict[str, dict[int, dict[str, float]]], per_layer: dict[str, Any]) -> None:
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end): CPU seconds are the measure, wall clock is inflated by the load",
        "versions": versions(),
        "model": "examples/gpt_shakespeare.py CONFIGS['gpu'] (384 wide, 6 heads, block 256, batch 64) train_step",
        "seconds": {s: {str(n): v for n, v in t.items()} for s, t in timed.items()},
        "per_layer_cpu": per_layer,
    }
    write_json(path, result, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1,2,4,8,12", help="comma-separated layer counts")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement")
    parser.add_argument("--profile", type=int, metavar="L", help="cProfile trace-to-ptx at L layers and exit")
    parser.add_argument("--by-pass", type=int, metavar="L", help="CPU seconds of each pass at L layers and exit")
    parser.add_argument("--top", type=int, default=40, help="functions --profile prints")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "compile_time_cpu.json"))
    args = parser.parse_args()
    if args.by_pass is not None:
        by_pass(args.by_pass)
        return
    if args.profile is not None:
        profile(args.profile, args.top)
        return
    layers = [int(x) for x in args.layers.split(",")]
    stages = args.stages.split(",")
    for s in stages:
        if s not in STAGES:
            parser.error(f"unknown stage '{s}'; stages are {', '.join(STAGES)}")
    timed: dict[str, dict[int, dict[str, float]]] = {s: {} for s in stages}
    with tempfile.TemporaryDirectory() as d:
        for n in layers:
            path = model_file(d, n)
            for s in stages:
                timed[s][n] = t = time_stage(path, s, args.timeout)
                print(f"{n:3d} layers  {s:13s} {t['cpu']:8.2f} s CPU, {t['wall']:8.2f} s wall", flush=True)
                write(args.out, timed, {})  # so far (a long run cut short keeps what it measured)
    print(f"\nCPU seconds (wall)\n{'layers':>6} " + " ".join(f"{s:>20}" for s in stages))
    for n in layers:
        print(f"{n:6d} " + " ".join(f"{timed[s][n]['cpu']:11.2f} ({timed[s][n]['wall']:6.1f})" for s in stages))
    per_layer = {}
    if 4 in layers and 12 in layers:
        # The measure: CPU seconds per layer (whole time / layers) at 12 layers against at 4 (1.0: linear or
        # better; 1.2 at most), and the marginal cost of a layer from 4 to 12.
        for s in stages:
            t4, t12 = timed[s][4]["cpu"], timed[s][12]["cpu"]
            at4, at12, marginal = t4 / 4, t12 / 12, (t12 - t4) / 8
            per_layer[s] = {"at_4": at4, "at_12": at12, "ratio_12_to_4": at12 / at4, "marginal_4_to_12": marginal}
            print(
                f"{s}: {at4:.2f} CPU s/layer at 4 layers, {at12:.2f} at 12 (x{at12 / at4:.2f}); {marginal:.2f} s "
                "per added layer from 4 to 12"
            )
    write(args.out, timed, per_layer)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
