"""Time per train step of the Bengio MLP (examples/mlp_names.py) on the GPU: picograd's compiled step against
PyTorch eager, ``torch.compile`` (default mode and ``mode="reduce-overhead"``, which replays CUDA graphs) and
tinygrad 0.14's ``TinyJit`` (CUDA backend, ``DEV=CUDA``), same model, optimizer and batches, in one run.

Model: Embedding(27, 10) -> Linear(30, 200) -> tanh -> Linear(200, 27), cross-entropy, SGD (lr 0.1), at batch 32
(the makemore recipe) and 4096. 11,897 float32 parameters (47.6 kB).

Floors per step at batch B:
- FLOPs ~ 68.4 k x B: forward 2B(30*200 + 200*27) = 22.8 k x B, backward twice that (gradients of weights and of
  inputs, down to the embedding). B = 32: 2.2 MFLOP; B = 4096: 280 MFLOP. At the H200's fp32 50.9 TFLOP/s (cuBLAS
  at 8192^3): 0.04 us and 5.5 us.
- Bytes ~ 0.24 MB + 3.1 kB x B: the parameters are read by the forward pass and again by the backward pass, the
  gradients written and read, the parameters written (5 x 47.6 kB); activations of 257 floats per example written
  once and read about twice. B = 32: 0.34 MB; B = 4096: 12.9 MB. At 4.1 TB/s (device copy): 0.08 us and 3.1 us.
Both floors are microseconds: at batch 32 a step is bound by kernel launches and host work per step, which is what
this measures (and why picograd replays a whole step as one CUDA graph); at 4096 the kernels start to count.

Method, the same for every framework: the training set stays on the host; each step draws B indices with numpy,
gathers the batch on the host, uploads it (x (B, 3), y (B,)), runs forward, backward and the update, and
synchronizes the device. Wall clock (time.perf_counter) per step, median (and p10/p90) over --steps steps after
--warmup steps; the first call (tracing and compiling) is timed on its own. ``--data device`` instead uploads the
training set once and uploads only the indices, gathering on the device. Each framework runs in its own process
(one failure or a CUDA context left broken cannot lose the others), with a timeout. For picograd it also reports
the kernels per step (the launch list of the step's Executable) and its CUDA-graph cache counters.

Writes --out (default bench/results/train_step_h200.json: date, GPU, versions, results) and prints a table.

    python bench/train_step.py                       # everything, batch 32 and 4096
    python bench/train_step.py --frameworks picograd,torch-eager --batch-sizes 32
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

FRAMEWORKS = ("picograd", "torch-eager", "tinygrad-tinyjit", "torch-compile", "torch-compile-reduce-overhead")
LR = 0.1


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """The training examples of mlp_names (seed 42 split): X (N, 3) and Y (N,), int64."""
    import mlp_names as ex

    words, _, _ = ex.split(ex.load_words(), 42)
    return ex.build_dataset(words)


def time_steps(step: Callable[[np.ndarray], None], n: int, batch: int, steps: int, warmup: int, seed: int = 0):
    """Call ``step(ix)`` with fresh indices: the first call alone, then ``warmup``, then ``steps`` timed calls.
    ``step`` must synchronize the device before returning."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    step(rng.integers(0, n, size=batch))
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step(rng.integers(0, n, size=batch))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(rng.integers(0, n, size=batch))
        times.append(time.perf_counter() - t0)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "first_call_s": first,
        "steps": steps,
        "warmup": warmup,
    }


# ---------------------------------------------------------------------------------------------------------------
# One worker per framework (each in its own process)


def run_picograd(xtr, ytr, batch: int, steps: int, warmup: int, data: str) -> dict[str, Any]:
    import mlp_names as ex
    import picograd.nn.functional as F

    import picograd as pg
    from picograd.runtime import cuda

    model, opt = ex.make(0, "sgd", LR, "cuda")

    @pg.compile
    def train(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    @pg.compile
    def train_indexed(xs: pg.Tensor, ys: pg.Tensor, ix: pg.Tensor) -> pg.Tensor:
        return train(xs[ix], ys[ix])

    if data == "device":
        xs, ys = pg.tensor(xtr, device="cuda"), pg.tensor(ytr, device="cuda")
        compiled = train_indexed

        def step(ix: np.ndarray) -> None:
            train_indexed(xs, ys, pg.tensor(ix, device="cuda"))
            cuda.synchronize()

    else:
        compiled = train

        def step(ix: np.ndarray) -> None:
            train(pg.tensor(xtr[ix], device="cuda"), pg.tensor(ytr[ix], device="cuda"))
            cuda.synchronize()

    result = time_steps(step, len(xtr), batch, steps, warmup)
    (exe,) = compiled.executables()
    launches = [s for s in exe.steps if type(s).__name__ == "Launch"]
    result["kernels_per_step"] = len(launches)
    result["steps_per_call"] = len(exe.steps)
    result["kernel_names"] = sorted({s.kernel for s in launches})
    stats = exe.stats
    result["executable_stats"] = {k: getattr(stats, k) for k in ("calls", "captures", "updates", "eager", "graphs")}
    return result


def torch_mlp(torch: Any, device: str = "cuda"):
    """The Bengio MLP in PyTorch (a Sequential: Embedding, Flatten, Linear, Tanh, Linear) on ``device``."""
    return torch.nn.Sequential(
        torch.nn.Embedding(27, 10),
        torch.nn.Flatten(),
        torch.nn.Linear(30, 200),
        torch.nn.Tanh(),
        torch.nn.Linear(200, 27),
    ).to(device)


def run_torch(xtr, ytr, batch: int, steps: int, warmup: int, data: str, mode: str | None) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    model = torch_mlp(torch)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def train(x: Any, y: Any) -> Any:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if mode is not None:
        train = torch.compile(train, mode=None if mode == "default" else mode)
    if data == "device":
        xs, ys = torch.from_numpy(xtr).cuda(), torch.from_numpy(ytr).cuda()

        def step(ix: np.ndarray) -> None:
            i = torch.from_numpy(ix).cuda()
            train(xs[i], ys[i])
            torch.cuda.synchronize()

    else:

        def step(ix: np.ndarray) -> None:
            train(torch.from_numpy(xtr[ix]).cuda(), torch.from_numpy(ytr[ix]).cuda())
            torch.cuda.synchronize()

    return time_steps(step, len(xtr), batch, steps, warmup)


def run_tinygrad(xtr, ytr, batch: int, steps: int, warmup: int, data: str) -> dict[str, Any]:
    from tinygrad import Context, Device, Tensor, TinyJit, nn

    Tensor.manual_seed(0)

    class MLP:
        def __init__(self) -> None:
            self.emb = nn.Embedding(27, 10)
            self.hidden = nn.Linear(30, 200)
            self.out = nn.Linear(200, 27)

        def __call__(self, x: Tensor) -> Tensor:
            return self.out(self.hidden(self.emb(x).reshape(x.shape[0], 30)).tanh())

    model = MLP()
    opt = nn.optim.SGD(nn.state.get_parameters(model), lr=LR)
    device = Device[Device.DEFAULT]

    @TinyJit
    def train(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model(x).sparse_categorical_crossentropy(y).backward()
        return loss.realize(*opt.schedule_step())

    x32, y32 = xtr.astype(np.int32), ytr.astype(np.int32)
    if data == "device":
        xs, ys = Tensor(x32).realize(), Tensor(y32).realize()

        @TinyJit
        def train_indexed(ix: Tensor) -> Tensor:
            opt.zero_grad()
            loss = model(xs[ix]).sparse_categorical_crossentropy(ys[ix]).backward()
            return loss.realize(*opt.schedule_step())

        def step(ix: np.ndarray) -> None:
            train_indexed(Tensor(ix.astype(np.int32)))
            device.synchronize()

    else:

        def step(ix: np.ndarray) -> None:
            train(Tensor(x32[ix]), Tensor(y32[ix]))
            device.synchronize()

    with Context(TRAINING=1):
        result = time_steps(step, len(xtr), batch, steps, warmup)
    result["device"] = Device.DEFAULT
    return result


def worker(name: str, batch_sizes: list[int], steps: int, warmup: int, data: str, out: str) -> None:
    """Run one framework at every batch size and write its results (or the error) as JSON to ``out``."""
    xtr, ytr = load_data()
    results = []
    for batch in batch_sizes:
        n_steps = steps if batch <= 1024 else max(steps // 4, 20)
        try:
            if name == "picograd":
                r = run_picograd(xtr, ytr, batch, n_steps, warmup, data)
            elif name == "tinygrad-tinyjit":
                r = run_tinygrad(xtr, ytr, batch, n_steps, warmup, data)
            else:
                mode = {"torch-eager": None, "torch-compile": "default"}.get(name, "reduce-overhead")
                r = run_torch(xtr, ytr, batch, n_steps, warmup, data, mode)
            r.update(framework=name, batch=batch, data=data)
        except Exception as e:  # one failing batch size does not lose the other
            import traceback

            r = {"framework": name, "batch": batch, "data": data, "error": f"{type(e).__name__}: {e}"}
            r["traceback"] = traceback.format_exc()[-4000:]
        results.append(r)
        with open(out, "w") as f:  # written after each batch size: a later crash keeps what was measured
            json.dump({"results": results, "versions": worker_versions(name)}, f)


def worker_versions(name: str) -> dict[str, str]:
    versions: dict[str, str] = {}
    try:
        if name.startswith("torch"):
            import torch

            versions["torch"] = torch.__version__
            versions["torch CUDA"] = str(torch.version.cuda)
        elif name.startswith("tinygrad"):
            from importlib.metadata import version

            versions["tinygrad"] = version("tinygrad")
    except Exception as e:
        versions["error"] = str(e)
    return versions


# ---------------------------------------------------------------------------------------------------------------
# The driver


def environment() -> dict[str, Any]:
    """GPU, driver and library versions (what can be read without failing)."""
    import xdsl

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xdsl": str(xdsl.__version__),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        from importlib.metadata import version

        env["cuda.core"] = version("cuda-core")
        env["cuda.bindings"] = version("cuda-bindings")
    except Exception:
        pass
    try:
        from picograd.runtime import cuda

        dev = cuda.device()
        env["gpu"] = f"{dev.name} (sm_{dev.arch})"
        err, driver = cuda._get_runtime().driver.cuDriverGetVersion()
        env["driver CUDA version"] = f"{driver // 1000}.{driver % 1000 // 10}"
    except Exception as e:
        env["gpu"] = f"unavailable: {e}"
    return env


def run_worker(name: str, args: argparse.Namespace, batch_sizes: list[int], versions: dict[str, str]) -> list[dict]:
    """Run one framework in its own process (with a timeout) and return its result rows."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if name.startswith("tinygrad"):
        env["DEV"] = "CUDA"
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [sys.executable, __file__, "--worker", name, "--worker-out", out, "--batch-sizes", args.batch_sizes,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--data", args.data,
           "--tinygrad-path", args.tinygrad_path]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        status = f"exit {proc.returncode}"
        log = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        status = f"timed out after {args.timeout} s"
        log = (_text(e.stdout) + _text(e.stderr))[-3000:]
    try:
        with open(out) as f:
            got = json.load(f)
    except (OSError, ValueError):
        got = {"results": [], "versions": {}}
    finally:
        if os.path.exists(out):
            os.unlink(out)
    versions.update(got.get("versions", {}))
    rows = list(got["results"])
    measured = {r["batch"] for r in rows}
    for batch in batch_sizes:
        if batch not in measured:
            rows.append({"framework": name, "batch": batch, "data": args.data, "error": status, "log": log})
    print(f"{name}: {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    if status != "exit 0":
        print(log, file=sys.stderr)
    return rows


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated, from {FRAMEWORKS}")
    parser.add_argument("--batch-sizes", default="32,4096")
    parser.add_argument("--steps", type=int, default=400, help="timed steps (a quarter above batch 1024)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--data", choices=["host", "device"], default="host", help="where batches are gathered")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per framework")
    parser.add_argument("--tinygrad-path", default="/tmp/site", help="where the tinygrad wheel was installed")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_step_h200.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    if args.worker:
        if args.worker.startswith("tinygrad") and os.path.isdir(args.tinygrad_path):
            sys.path.insert(0, args.tinygrad_path)
        worker(args.worker, batch_sizes, args.steps, args.warmup, args.data, args.worker_out)
        return

    rows: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    result = {
        "benchmark": f"mlp_names train step (SGD lr {LR}), batches gathered on the {args.data}",
        "date": datetime.date.today().isoformat(),
        "method": "wall clock per step including batch upload and a device synchronize; median after warm-up",
        "environment": environment(),
        "versions": versions,
        "peers_2026_11_29_batch32_ms": {"torch eager": 1.23, "torch.compile": 1.57, "tinygrad TinyJit": 0.13},
        "results": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    for name in args.frameworks.split(","):
        rows.extend(run_worker(name, args, batch_sizes, versions))
        with open(args.out, "w") as f:  # after every framework: a run cut short keeps what it measured
            json.dump(result, f, indent=2)

    print(
        f"\n{'framework':32s} {'batch':>6s} {'median ms':>10s} {'p10':>8s} {'p90':>8s} {'first s':>8s} {'kernels':>8s}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['framework']:32s} {r['batch']:6d}  failed: {r['error'].splitlines()[0][:80]}")
            continue
        kernels = str(r.get("kernels_per_step", ""))
        print(
            f"{r['framework']:32s} {r['batch']:6d} {r['median_ms']:10.3f} {r['p10_ms']:8.3f} {r['p90_ms']:8.3f} "
            f"{r['first_call_s']:8.2f} {kernels:>8s}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
