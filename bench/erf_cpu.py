"""Thread CPU time of the CPU JIT's GELU kernels with each f32 ``erf`` of ``gpu_math``: is the short one faster?

Compiles ``f(x, g) = (gelu(x), g * gelu'(x))`` (the exact GELU, ``x Phi(x)``, forward and its derivative as
autodiff writes it: ``0.5 (1 + erf(x/sqrt2)) + x exp(-x*x/2) / sqrt(2 pi)``) on an f32 ``(--rows, 1536)`` tensor
(the GPT's MLP width) with ``picograd.driver.cpu_compile.compile_for_cpu`` twice: with ``gpu_math.erf_f32`` (the
short scheme, the default) and with ``gpu_math.erf_accurate`` (the f64 scheme, which f32 used before; swapped in
by ``gelu_sass.accurate_erf``). One thread (``pg.set_num_threads(1)``); the two are called alternately, ``--repeats``
times, and the thread CPU time of each call (``time.thread_time``: what a shared machine's other load does not
add) is kept; prints the medians and their ratio.

    nice -n 19 python bench/erf_cpu.py --json bench/results/erf_cpu.json
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from gelu_sass import accurate_erf  # noqa: E402

import picograd as pg  # noqa: E402
from picograd.driver.cpu_compile import compile_for_cpu  # noqa: E402


def gelu_step(rows: int, fast: bool):
    def f(x: pg.Tensor, g: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        cdf = 0.5 * (1.0 + (x * (1.0 / math.sqrt(2.0))).erf())
        pdf = (x * x * -0.5).exp() * (1.0 / math.sqrt(2.0 * math.pi))
        return x * cdf, g * (cdf + x * pdf)

    spec = pg.Spec((rows, 1536), "float32")
    module = pg.compile(f, example_inputs=(spec, spec)).ir("simplify")
    if fast:
        return compile_for_cpu(module)
    with accurate_erf():
        return compile_for_cpu(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", help="write the medians here (bench/results/erf_cpu.json)")
    args = parser.parse_args()
    pg.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, 1536)).astype(np.float32)
    g = rng.standard_normal((args.rows, 1536)).astype(np.float32)
    steps = {"short": gelu_step(args.rows, True), "accurate": gelu_step(args.rows, False)}
    outs = {k: s(x, g) for k, s in steps.items()}
    for a, b in zip(outs["short"], outs["accurate"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # 1 + erf cancels for x < 0
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, s in steps.items():
            t0 = time.thread_time()
            s(x, g)
            times[k].append(time.thread_time() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    n = args.rows * 1536
    for k, v in med.items():
        print(f"{k:9s} erf: {v:7.2f} ms thread CPU per call ({v * 1e6 / n:.2f} ns per element, forward + backward)")
    print(f"short / accurate: {med['short'] / med['accurate']:.3f}")
    if args.json:
        import datetime
        import platform

        import llvmlite.binding as llvm
        from results_io import write_json

        write_json(
            args.json,
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {llvm.get_host_cpu_name()}, {os.cpu_count()} cores (shared)",
                "versions": {"numpy": np.__version__, "python": platform.python_version()},
                "kernel": f"GELU forward + derivative, f32 ({args.rows}, 1536), 1 thread",
                "repeats": args.repeats,
                "ms_thread_cpu_median": med,
                "short_over_accurate": med["short"] / med["accurate"],
            },
            indent=1,
        )


if __name__ == "__main__":
    main()
