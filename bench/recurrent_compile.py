"""Compile time of the recurrent train step of examples/names.py against the sequence length T.

For each type (rnn, gru, lstm) and T in --lengths, a fresh model of the names recipe (embedding 64, hidden 64,
batch 32, AdamW) is built and its ``@pg.compile`` train step called once on a (32, T) batch: that call traces the
step, runs every pass to the CPU executor's stage and compiles it (the time reported), and runs it. Also reported:
the number of ops of the traced step after autodiff and the optimizer ('step' stage) and of the executed one
('simplify' stage). Both should grow linearly in T. Writes bench/results/recurrent_compile.json.

    python bench/recurrent_compile.py                   # T = 16, 32, 64
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))


def train_step(model, opt):
    """A fresh ``@pg.compile`` train step of ``model`` (the one of examples/names.py)."""
    import names as ex

    import picograd as pg

    @pg.compile
    def step(x, y):
        loss = ex.sequence_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--types", nargs="+", default=["rnn", "gru", "lstm"])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "recurrent_compile.json"))
    args = parser.parse_args()

    import names as ex
    import xdsl

    import picograd as pg

    rows = []
    for kind in args.types:
        for steps in args.lengths:
            step = train_step(*ex.make(kind))
            rng = np.random.default_rng(0)
            x = pg.tensor(rng.integers(0, ex.VOCAB, (ex.BATCH, steps)))
            y = pg.tensor(rng.integers(0, ex.VOCAB, (ex.BATCH, steps)))
            t0 = time.perf_counter()
            step(x, y).item()
            first = time.perf_counter() - t0
            counts = {stage: sum(1 for _ in step.ir(stage, [x, y]).walk()) for stage in ("step", "simplify")}
            rows.append({"type": kind, "T": steps, "first_call_s": first, "ops": counts})
            print(f"{kind:5s} T={steps:3d}: first call {first:6.2f} s, ops step {counts['step']}, "
                  f"simplify {counts['simplify']}")  # fmt: skip
    result = {
        "benchmark": "trace + compile + first run of the names train step against the sequence length",
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "xdsl": str(xdsl.__version__)},
        "results": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
