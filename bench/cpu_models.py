"""The course models' train steps on the CPU: picograd's compiled step against its PyTorch twin (eager), side by
side in one process, at 1 and 2 threads.

Models, each at its example's default CPU config, built by the example's own code and its twin in bench/ (nothing
copied): ``examples/names.py`` --type mlp, rnn, gru, lstm and transformer (twin ``bench/names_twin.py``), the GPT of
``examples/gpt_shakespeare.py`` (``--config cpu``; twin ``bench/gpt_shakespeare_twin.py``) and the masked LM of
``examples/bert_shakespeare.py`` (twin ``bench/bert_shakespeare_twin.py``; the twin gets numpy-drawn masks, the
picograd step draws its own, which changes nothing in the work of a step), the CNN of ``examples/cnn_digits.py``
(twin ``bench/cnn_digits_twin.py``) and the U-Net DDPM of ``examples/ddpm_digits.py`` (twin
``bench/ddpm_digits_twin.py``; each side draws its own timesteps and noise inside its step, as the example does).
Both start from picograd's initial ``state_dict`` and take the same batches.

Method: one child process per thread count n, started with ``OMP_NUM_THREADS=n`` and ``OPENBLAS_NUM_THREADS=n`` (so
numpy's BLAS, which reads them when it loads, has n threads) and calling ``torch.set_num_threads(n)`` and
``pg.set_num_threads(n)`` (which also sets numpy's BLAS threads, through ``threadpoolctl``). In it each model runs
``--warmup`` steps of both (the first compiles), then ``--steps`` steps alternating picograd and PyTorch on the same
batch, each timed with ``time.perf_counter`` around the whole step: building its input tensors from numpy, forward,
backward, the optimizer update and reading the loss back. Each framework's threads may still spin when the other's
step starts: PyTorch's OpenMP workers for milliseconds after its regions, picograd's pool for microseconds (until
2026-12-05 21:00 numpy's threaded OpenBLAS also spun after each of picograd's matmuls and slowed PyTorch's steps:
the 2-thread ratios measured before then were too low). Reported: median ms per step of each and their ratio
(picograd / PyTorch; below 1: picograd faster). ``--runs`` repeats everything and the table takes the median ratio
over the runs. The machine may be shared with other jobs: compare within one run.

Writes --out (default bench/results/cpu_models.json: date, machine, versions, every run) and prints a Markdown table.

    python bench/cpu_models.py                          # every model, 1 and 2 threads, 3 runs
    python bench/cpu_models.py --models gpt --threads 1 --runs 1 --steps 10
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
import time
from collections.abc import Callable
from typing import Any

from results_io import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, HERE)

NAMES_TYPES = ("mlp", "rnn", "gru", "lstm", "transformer")
MODELS = (*(f"names-{k}" for k in NAMES_TYPES), "gpt", "bert", "cnn", "ddpm")
SEED = 1337

# A case: (picograd step, PyTorch step, batches); each step takes one batch and returns the loss as a float.
Case = tuple[Callable[[Any], float], Callable[[Any], float], list[Any]]


def names_case(kind: str, n: int) -> Case:
    import names as ex
    import names_twin as tw
    import torch

    import picograd as pg

    ex.model, ex.opt = ex.make(kind, SEED)
    step = pg.compile(ex.train_step.fn)
    twin = tw.torch_twin(kind, ex.model.state_dict())
    topt = tw.torch_optimizer(kind, twin)
    train_words, _, _ = ex.split(ex.load_words(), 42)
    xtr, ytr = ex.build_sequences(train_words, ex.BLOCK)
    batches = [(xtr[ix], ytr[ix]) for ix in ex.batches(len(xtr), n, SEED)]

    def ours(b) -> float:
        return step(pg.tensor(b[0]), pg.tensor(b[1])).item()

    def theirs(b) -> float:
        logits = twin(torch.from_numpy(b[0]))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, ex.VOCAB), torch.from_numpy(b[1]).reshape(-1), ignore_index=-1
        )
        topt.zero_grad()
        loss.backward()
        topt.step()
        return loss.item()

    return ours, theirs, batches


def torch_lm_step(twin: Any, topt: Any, vocab: int, clip: float, ignore: int) -> Callable[[Any], float]:
    """The twins' step of the two shakespeare models: cross-entropy on (input, target), clipped AdamW."""
    import torch

    def theirs(b) -> float:
        logits = twin(torch.from_numpy(b[0]))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), torch.from_numpy(b[1]).reshape(-1), ignore_index=ignore
        )
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), clip)
        topt.step()
        return loss.item()

    return theirs


def gpt_case(n: int) -> Case:
    from dataclasses import replace

    import gpt_shakespeare as ex
    import gpt_shakespeare_twin as tw
    import numpy as np

    import picograd as pg

    data = ex.CharData()
    cfg = replace(ex.CONFIGS["cpu"], vocab_size=len(data.chars))
    ex.model, ex.opt, ex.sched = ex.make(cfg, SEED)
    step = pg.compile(ex.train_step.fn)
    twin = tw.TorchGPT(cfg)
    tw.load_from_picograd(twin, ex.model.state_dict())
    topt, _ = tw.torch_optimizer(twin, cfg)
    rng = np.random.default_rng(SEED)
    batches = [data.batch("train", rng, cfg.batch_size, cfg.block_size) for _ in range(n)]

    def ours(b) -> float:
        return step(pg.tensor(b[0]), pg.tensor(b[1])).item()

    return ours, torch_lm_step(twin, topt, cfg.vocab_size, cfg.grad_clip, -100), batches


def bert_case(n: int) -> Case:
    from dataclasses import replace

    import bert_shakespeare as ex
    import bert_shakespeare_twin as tw
    import numpy as np

    import picograd as pg

    data = ex.CharData()
    cfg = replace(ex.CFG, vocab_size=len(data.chars) + 1)
    ex.model, ex.opt, ex.sched = ex.make(cfg, SEED)
    step = pg.compile(ex.train_step.fn)
    twin = tw.TorchBERT(cfg)
    tw.load_from_picograd(twin, ex.model.state_dict())
    topt, _ = tw.torch_optimizer(twin, cfg)
    rng = np.random.default_rng(SEED)
    xs = [data.batch("train", rng, cfg.batch_size, cfg.block_size)[0] for _ in range(n)]
    batches = [(x, *ex.numpy_corrupt(x, cfg.vocab_size, rng)) for x in xs]

    def ours(b) -> float:
        return step(pg.tensor(b[0]))[0].item()

    theirs = torch_lm_step(twin, topt, cfg.vocab_size, cfg.grad_clip, ex.IGNORE)
    return ours, lambda b: theirs(b[1:]), batches


def cnn_case(n: int) -> Case:
    import cnn_digits as ex
    import cnn_digits_twin as tw
    import digits_data as dd
    import numpy as np
    import torch

    import picograd as pg

    ex.model, ex.opt = ex.make(SEED)
    step = pg.compile(ex.train_step.fn)
    twin = tw.from_picograd(tw.TorchCNN(), ex.model.state_dict())
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR, foreach=False)
    data = dd.load_digits()
    x_train = dd.to_unit(data.x_train)
    rng = np.random.default_rng(SEED)
    batches = [(x_train[i], data.y_train[i]) for i in (dd.batches(len(x_train), ex.BATCH, rng) for _ in range(n))]

    def ours(b) -> float:
        return step(pg.tensor(b[0]), pg.tensor(b[1])).item()

    def theirs(b) -> float:
        loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(b[0])), torch.from_numpy(b[1]))
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        return loss.item()

    return ours, theirs, batches


def ddpm_case(n: int) -> Case:
    import cnn_digits_twin
    import ddpm_digits as ex
    import ddpm_digits_twin as tw
    import digits_data as dd
    import numpy as np
    import torch

    import picograd as pg

    ex.model, ex.opt, ex.sched = ex.make(SEED)
    step = pg.compile(ex.train_step.fn)
    twin = cnn_digits_twin.from_picograd(tw.TorchUNet(), ex.model.state_dict())
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR, foreach=False)
    alpha_bar = torch.cumprod(1.0 - torch.from_numpy(ex.betas()), 0)
    x_train = dd.to_signed(dd.load_digits().x_train)
    rng = np.random.default_rng(SEED)
    batches = [x_train[dd.batches(len(x_train), ex.BATCH, rng)] for _ in range(n)]

    def ours(b) -> float:
        return step(pg.tensor(b))[0].item()

    def theirs(b) -> float:  # timesteps and noise drawn here, as picograd's step draws them
        x0 = torch.from_numpy(b)
        t = torch.randint(0, ex.T, (x0.shape[0],))
        noise = torch.randn_like(x0)
        a = alpha_bar[t][:, None, None, None]
        loss = torch.nn.functional.mse_loss(twin(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        return loss.item()

    return ours, theirs, batches


def make_case(model: str, n: int) -> Case:
    if model.startswith("names-"):
        return names_case(model.removeprefix("names-"), n)
    return {"gpt": gpt_case, "bert": bert_case, "cnn": cnn_case, "ddpm": ddpm_case}[model](n)


def measure(model: str, steps: int, warmup: int) -> dict[str, Any]:
    """Median ms per step of both sides of ``model`` (in this process, at its thread count)."""
    ours, theirs, batches = make_case(model, warmup + steps)
    t0 = time.perf_counter()
    ours(batches[0])
    first = time.perf_counter() - t0
    theirs(batches[0])
    for b in batches[1:warmup]:
        ours(b)
        theirs(b)
    t_ours, t_theirs = [], []
    for b in batches[warmup:]:
        t0 = time.perf_counter()
        ours(b)
        t1 = time.perf_counter()
        theirs(b)
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t2 - t1)
    ms_ours, ms_theirs = 1e3 * statistics.median(t_ours), 1e3 * statistics.median(t_theirs)
    return {"picograd_ms": ms_ours, "pytorch_ms": ms_theirs, "ratio": ms_ours / ms_theirs, "first_call_s": first}


def child(args: argparse.Namespace) -> None:
    import torch

    import picograd as pg

    torch.set_num_threads(args.threads)
    pg.set_num_threads(args.threads)
    for model in args.models.split(","):
        result = measure(model, args.steps_for(model), args.warmup)
        print(json.dumps({"model": model, "threads": args.threads, **result}), flush=True)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("picograd", "xdsl", "numpy", "torch")} | {"python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--runs", type=int, default=3, help="repeats of everything (the table: median ratio)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 100 names, 40 cnn/ddpm, 15 gpt/bert)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cpu_models.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps_for = lambda m: args.steps or (100 if m.startswith("names-") else 40 if m in ("cnn", "ddpm") else 15)
    for m in args.models.split(","):
        if m not in MODELS:
            parser.error(f"unknown model '{m}'; models are {', '.join(MODELS)}")
    if args.child:
        args.threads = int(args.threads)
        child(args)
        return

    rows: list[dict[str, Any]] = []
    for run in range(args.runs):
        for n in [int(t) for t in args.threads.split(",")]:
            env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
            cmd = [sys.executable, __file__, "--child", "--threads", str(n), "--models", args.models]
            cmd += ["--warmup", str(args.warmup)] + (["--steps", str(args.steps)] if args.steps else [])
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"cpu_models: the {n}-thread run failed:\n{done.stderr}")
            for line in done.stdout.splitlines():
                if line.startswith("{"):
                    row = {"run": run, **json.loads(line)}
                    rows.append(row)
                    print(
                        f"run {run} {row['model']:18s} {n} thread(s): picograd {row['picograd_ms']:8.2f} ms, "
                        f"pytorch {row['pytorch_ms']:8.2f} ms, ratio {row['ratio']:.2f}",
                        flush=True,
                    )
            models = args.models.split(",")
            report(rows, models, args.out, args.warmup, {m: args.steps_for(m) for m in models})


def report(rows: list[dict[str, Any]], models: list[str], out: str, warmup: int, steps: dict[str, int]) -> None:
    """Print the Markdown table of ``rows`` (median ratio over the runs) and write the JSON ``out`` (after each child
    process, so that a run cut short keeps what it measured)."""
    table: dict[str, dict[str, Any]] = {}
    threads = sorted({r["threads"] for r in rows})
    for m in models:
        table[m] = {}
        for n in threads:
            mine = [r for r in rows if r["model"] == m and r["threads"] == n]
            if mine:
                table[m][str(n)] = {
                    "ratio_median": statistics.median(r["ratio"] for r in mine),
                    "picograd_ms_median": statistics.median(r["picograd_ms"] for r in mine),
                    "pytorch_ms_median": statistics.median(r["pytorch_ms"] for r in mine),
                    "runs": len(mine),
                }
    print("\n| model | " + " | ".join(f"picograd / PyTorch, {n} thread{'s' * (n > 1)}" for n in threads) + " |")
    print("|---|" + "---|" * len(threads))
    for m, cells in table.items():
        text = [
            f"{c['ratio_median']:.2f} ({c['picograd_ms_median']:.1f} / {c['pytorch_ms_median']:.1f} ms)"
            for c in cells.values()
        ]
        print(f"| {m} | " + " | ".join(text) + " |")
    result = {
        "benchmark": "bench/cpu_models.py: compiled picograd train step vs PyTorch eager twin, same process",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end)",
        "versions": versions(),
        "steps": steps,
        "warmup": warmup,
        "runs": rows,
        "median_over_runs": table,
    }
    write_json(out, result, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
