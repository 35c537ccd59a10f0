"""Time per train step of the Bengio MLP (examples/mlp_names.py) on the CPU: picograd's compiled step against
PyTorch eager on the CPU, same model, batch and optimizer, in the same run.

Model: Embedding(27, 10) -> Linear(30, 200) -> tanh -> Linear(200, 27), cross-entropy, SGD (lr 0.1), batch 32.
Floors per step: FLOPs ~ 2.2 M (forward 2*32*(30*200 + 200*27) = 0.73 M, backward twice that); bytes ~ 0.2 MB
(11,897 float32 parameters read, gradients written and read, parameters written: 4 x 47.6 kB, plus activations
of ~60 kB). At tens of GFLOP/s and GB/s both floors are microseconds: a step of this size is bound by per-op
overhead, which is what this benchmark measures.

Method: wall clock per step (time.perf_counter), median over --steps steps after --warmup steps, each step
including the host-side batch construction both frameworks need. Writes bench/results/train_step_cpu.json.
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
sys.path.insert(0, os.path.join(HERE, "..", "examples"))


def bench_picograd(xtr, ytr, steps: int, warmup: int, batch: int) -> list[float]:
    import mlp_names as ex
    import picograd.nn.functional as F

    import picograd as pg

    ex.model, ex.opt = ex.make(0, "sgd", 0.1)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(ex.model(x), y)
        ex.opt.zero_grad()
        loss.backward()
        ex.opt.step()
        return loss

    rng = np.random.default_rng(0)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        ix = rng.integers(0, len(xtr), size=batch)
        step(pg.tensor(xtr[ix]), pg.tensor(ytr[ix])).item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def bench_torch(xtr, ytr, steps: int, warmup: int, batch: int) -> list[float]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(27, 10),
        torch.nn.Flatten(),
        torch.nn.Linear(30, 200),
        torch.nn.Tanh(),
        torch.nn.Linear(200, 27),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xt, yt = torch.tensor(xtr), torch.tensor(ytr)
    rng = np.random.default_rng(0)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        ix = torch.from_numpy(rng.integers(0, len(xtr), size=batch))
        loss = torch.nn.functional.cross_entropy(model(xt[ix]), yt[ix])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_step_cpu.json"))
    args = parser.parse_args()

    import mlp_names as ex
    import torch
    import xdsl

    words, _, _ = ex.split(ex.load_words(), 42)
    xtr, ytr = ex.build_dataset(words)
    rows = []
    for name, fn in (("picograd compiled (numpy executor)", bench_picograd), ("pytorch eager", bench_torch)):
        times = fn(xtr, ytr, args.steps, args.warmup, args.batch_size)
        rows.append(
            {
                "framework": name,
                "median_ms": 1e3 * statistics.median(times),
                "p10_ms": 1e3 * float(np.percentile(times, 10)),
                "p90_ms": 1e3 * float(np.percentile(times, 90)),
            }
        )
        print(f"{name:40s} median {rows[-1]['median_ms']:.3f} ms/step")
    result = {
        "benchmark": f"mlp_names train step (batch {args.batch_size}, SGD)",
        "date": datetime.date.today().isoformat(),
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "xdsl": str(xdsl.__version__),
        },
        "steps": args.steps,
        "warmup": args.warmup,
        "results": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
