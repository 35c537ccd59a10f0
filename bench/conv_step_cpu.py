"""Time per train step of a small CNN on the CPU: picograd's compiled step (the JIT CPU backend) against PyTorch eager
on the CPU, same model, batch, optimizer and data, in the same process.

Model (the shape of the digits classifier of issue 12): input (B, 1, 8, 8) -> Conv2d(1, C, 3, padding=1) ->
BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d(C, 2C, 3, padding=1) -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Flatten
-> Linear(8C, 10); cross-entropy; Adam (lr 1e-3). picograd's model starts from the same state_dict as PyTorch's.

Method: wall clock per step (time.perf_counter), median, 25th percentile and minimum over --steps steps after
--warmup steps, each step
including making the batch tensors from numpy and reading the loss. Torch runs with torch.set_num_threads(1) and
with its default threads (both reported). Writes bench/results/conv_step_cpu.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the examples: small GEMMs on shared cores (before numpy)

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_model(channels: int):
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * channels, 10),
    )  # fmt: skip


def pg_model(channels: int):
    import picograd as pg

    nn = pg.nn
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * channels, 10),
    )  # fmt: skip


def batches(n: int, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (rng.standard_normal((batch, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, batch).astype(np.int64))
        for _ in range(n)
    ]


def bench_picograd(state: dict, data, warmup: int, channels: int) -> tuple[list[float], list[float]]:
    import picograd.nn.functional as F

    import picograd as pg

    model = pg_model(channels)
    model.load_state_dict(state)
    opt = pg.optim.Adam(model.parameters(), lr=1e-3)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    times, losses = [], []
    for i, (x, y) in enumerate(data):
        t0 = time.perf_counter()
        losses.append(step(pg.tensor(x), pg.tensor(y)).item())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times, losses


def bench_torch(model, data, warmup: int) -> tuple[list[float], list[float]]:
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, losses = [], []
    for i, (x, y) in enumerate(data):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times, losses


def summary(times: list[float]) -> dict[str, float]:
    """Median, 25th percentile and minimum in ms (the machine is shared: the low percentiles show the undisturbed
    step, the median what a user sees)."""
    ordered = sorted(times)
    return {
        "median": 1e3 * statistics.median(ordered),
        "p25": 1e3 * ordered[len(ordered) // 4],
        "min": 1e3 * ordered[0],
    }


def main() -> None:
    import torch

    import picograd as pg

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "conv_step_cpu.json"))
    args = ap.parse_args()
    data = batches(args.warmup + args.steps, args.batch)
    state = pg_model(args.channels).state_dict()
    results = {}
    pg_times, pg_losses = bench_picograd(state, data, args.warmup, args.channels)
    results["picograd_compiled_ms"] = summary(pg_times)
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        model = torch_model(args.channels)
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        t_times, t_losses = bench_torch(model, data, args.warmup)
        results[f"torch_eager_{threads}_threads_ms"] = summary(t_times)
    rel = max(abs(a - b) / abs(b) for a, b in zip(pg_losses[:50], t_losses[:50], strict=True))
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}",
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "versions": {"numpy": np.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": vars(args) | {"model": "conv-bn-relu-pool x2, linear", "optimizer": "Adam(1e-3)"},
        "ms_per_step": results,
        "first_50_losses_max_rel_diff": rel,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record["ms_per_step"], indent=2), f"\nfirst 50 losses, max relative difference: {rel:.2e}")
    del pg


if __name__ == "__main__":
    main()
