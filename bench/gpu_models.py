"""The course models' train steps on the GPU: picograd against its PyTorch twins, eager and under torch.compile.

picograd's compiled train step of each example against its PyTorch twin in eager mode and under ``torch.compile``,
same model, initial state, recipe and batches (issue 18, item 4).

Models (``--models``, comma-separated, ``model:dtype`` for bf16; the default order puts the most wanted first, so
that a time budget cuts the least wanted):

- ``gpt``: examples/gpt_shakespeare.py at ``--config gpu`` (nanoGPT's train_shakespeare_char: 6 layers, 6 heads,
  384 wide, block 256, batch 64, dropout 0.2); ``gpt:bfloat16`` is its ``--dtype bfloat16`` (autocast, float32
  master weights). Twin: bench/gpt_shakespeare_twin.py, with PyTorch's fused AdamW (nanoGPT's choice on the GPU).
- ``mlp-names``: examples/mlp_names.py (batch 32, SGD); twin: bench/train_step.py's ``torch_mlp``.
- ``names-<type>``: examples/names.py ``--type mlp|rnn|gru|lstm|transformer`` (batch 32, AdamW); twin:
  bench/names_twin.py.
- ``bert``: examples/bert_shakespeare.py (its one config); twin: bench/bert_shakespeare_twin.py (fused AdamW), fed
  masks drawn with numpy (picograd's step draws its own: the same work).
- ``cnn``: examples/cnn_digits.py (batch 64, Adam); twin: bench/cnn_digits_twin.py.
- ``ddpm``: examples/ddpm_digits.py (batch 128, Adam); twin: bench/ddpm_digits_twin.py, its step drawing the
  timesteps and the noise with torch on the device (picograd's step draws them inside).

Only the GPT has a bf16 path. Frameworks: ``picograd`` (the example's ``@pg.compile`` train step), ``torch-eager``
(the twin) and ``torch-compile`` (the twin's forward and loss under ``torch.compile``, default mode, as nanoGPT
compiles its model whose forward returns the loss; backward through AOTAutograd, the optimizer step eager). PyTorch's
optimizers run as a GPU user gets them (foreach), fused AdamW for the GPT and BERT; TF32 is off (float32 products and
convolutions in full float32, as picograd's float32).

Method: for each (model, dtype) picograd runs in one child process and both PyTorch variants in another (a crash, a
hang or a broken CUDA context loses only that child), each with a timeout, all within ``--budget`` seconds (children
are not started once it is spent: they are reported as skipped). A step is: upload the batch from numpy, forward,
backward, clip where the recipe clips, update, step the LR schedule, read the loss back (``.item()``, which
synchronises the device). The first call is timed alone (tracing and compiling), then ``--warmup`` steps, then
``--steps`` timed steps (wall clock): median, p10 and p90 ms per step. ``first_loss`` is the loss of the first batch
from the shared initial state: it agrees across frameworks where the model draws no randomness (no dropout, masks or
noise). For picograd on cuda a row also gives the kernel launches per step and the CUDA-graph counters.

``--full-gpt`` instead trains the GPT at ``--config gpu`` for ``--full-iters`` iterations (nanoGPT's 5,000) in each
of ``--frameworks`` (one child each), evaluating the example's 200 fixed validation batches every
``--eval-interval`` (250) iterations, and reports the best and final val_loss, the median ms per step and the wall
time to the end (evaluations included). A child writes a row after every evaluation, so that one cut by its timeout
still reports how far it got (``"partial": true``).

Output: JSON lines appended to ``--out`` (default bench/results/gpu_models_h200.jsonl), one per (model, dtype,
framework): date, gpu, driver, versions, example, model, device, framework, dtype, ms_per_step, p10_ms, p90_ms,
first_call_s, steps, warmup, first_loss, best_val_loss (full runs), error (and a log tail) where it failed.
``python bench/gpu_tables.py FILE`` renders them as the README's Markdown tables.

    python bench/gpu_models.py                                   # every model, on cuda, within --budget
    python bench/gpu_models.py --models gpt:bfloat16,gpt --steps 50
    python bench/gpu_models.py --full-gpt --frameworks picograd,torch-compile --dtypes bfloat16
    python bench/gpu_models.py --device cpu --models names-mlp --steps 2 --warmup 1 --out /tmp/x.jsonl  # smoke
    python bench/gpu_models.py --null-driver --frameworks picograd --steps 2 --warmup 1 --out /tmp/y.jsonl
      # without a GPU: every model's GPU compile (kernels assembled by nvJitLink) and host path, on a null driver
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the examples (set before numpy loads OpenBLAS)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "examples"), HERE, ROOT]

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

NAMES_TYPES = ("mlp", "rnn", "gru", "lstm", "transformer")
MODELS = ("gpt", "mlp-names", *(f"names-{k}" for k in NAMES_TYPES), "bert", "cnn", "ddpm")
BF16_MODELS = ("gpt",)  # the examples with a --dtype bfloat16 path
FRAMEWORKS = ("picograd", "torch-eager", "torch-compile")
DEFAULT_ORDER = "gpt:bfloat16,mlp-names,names-lstm,names-transformer,bert,cnn,ddpm,gpt,names-gru,names-rnn,names-mlp"
GPT_SEED = 1337  # gpt_shakespeare.py's and bert_shakespeare.py's default --seed

Batch = tuple[np.ndarray, ...]
Step = Callable[[Batch], float]  # one train step on a batch; returns the loss


@dataclass
class Case:
    """One model: its batches, and builders of picograd's step and of the twin's (``compile``: torch.compile)."""

    example: str
    config: dict[str, Any]
    batches: list[Batch]
    picograd: Callable[[], Step]
    torch: Callable[[bool], Step]


# ---------------------------------------------------------------------------------------------------------------
# Steps


def picograd_step(compiled: Any, device: str, sched: Any = None, inputs: slice = slice(None)) -> Step:
    """A step of the compiled function ``compiled`` on ``batch[inputs]`` uploaded to ``device`` (its first result is
    the loss), then the LR schedule's step."""
    import picograd as pg

    def step(batch: Batch) -> float:
        out = compiled(*(pg.tensor(b, device=device) for b in batch[inputs]))
        if sched is not None:
            sched.step()
        return (out[0] if isinstance(out, tuple) else out).item()

    step.compiled = compiled  # type: ignore[attr-defined]  # for executable_facts
    return step


def executable_facts(step: Step) -> dict[str, Any]:
    """Kernel launches per call and the CUDA-graph counters of picograd's compiled step (on cuda)."""
    exes = [e for e in step.compiled.executables() if hasattr(e, "steps")]  # type: ignore[attr-defined]
    if not exes:
        return {}
    launches = [s for s in exes[0].steps if type(s).__name__ == "Launch"]
    stats = {k: getattr(exes[0].stats, k, None) for k in ("calls", "captures", "updates", "eager", "graphs")}
    return {"executables": len(exes), "kernels_per_step": len(launches), "executable_stats": stats}


def torch_step(
    model: Any,
    opt: Any,
    loss_fn: Callable[..., Any],
    device: str,
    compile: bool,
    dtype: str = "float32",
    clip: float | None = None,
    sched: Any = None,
    inputs: slice = slice(None),
) -> Step:
    """The twin's step: ``loss_fn(*batch[inputs] on device)`` (under ``torch.compile`` if ``compile``; under bf16
    autocast for ``dtype == "bfloat16"``), backward, clipping to ``clip``, ``opt.step()``, the schedule's step."""
    import torch

    # float32 as picograd computes it: no TF32 in cuBLAS (PyTorch's default) nor in cuDNN's convolutions (on by
    # default there)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    fn = torch.compile(loss_fn) if compile else loss_fn

    def step(batch: Batch) -> float:
        args = [torch.from_numpy(b).to(device) for b in batch[inputs]]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = fn(*args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()
        return loss.item()

    return step


# ---------------------------------------------------------------------------------------------------------------
# The models


def names_case(kind: str, device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import names as ex

    import picograd as pg

    seed = 42  # names.py's default --seed
    train_words, _, _ = ex.split(ex.load_words(), 42)
    xtr, ytr = ex.build_sequences(train_words, ex.BLOCK)
    batches = [(xtr[ix], ytr[ix]) for ix in ex.batches(len(xtr), n, seed)]

    def ours() -> Step:
        ex.model, ex.opt = ex.make(kind, seed)
        ex.model.to(device)  # as names.py's main: made on the host, then moved
        return picograd_step(pg.compile(ex.train_step.fn), device)

    def theirs(compile: bool) -> Step:
        import names_twin as tw
        import torch

        twin = tw.torch_twin(kind, ex.make(kind, seed)[0].state_dict()).to(device)

        def loss(x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(twin(x).reshape(-1, ex.VOCAB), y.reshape(-1), ignore_index=-1)

        return torch_step(twin, tw.torch_optimizer(kind, twin), loss, device, compile)

    return Case(f"examples/names.py --type {kind}", {"batch": ex.BATCH, "block": ex.BLOCK}, batches, ours, theirs)


def mlp_names_case(device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import mlp_names as ex
    import train_step as ts

    import picograd as pg

    xtr, ytr = ts.load_data()
    rng = np.random.default_rng(0)
    batches = [(xtr[ix], ytr[ix]) for ix in (rng.integers(0, len(xtr), ex.BATCH) for _ in range(n))]

    def ours() -> Step:
        ex.model, ex.opt = ex.make(0, "sgd", ts.LR, device)
        return picograd_step(pg.compile(ex.train_step.fn), device)

    def theirs(compile: bool) -> Step:
        import torch

        twin = ts.torch_mlp(torch, device)
        state = ex.make(0, "sgd", ts.LR)[0].state_dict()  # emb, hidden, out: the Sequential's 0, 2, 4, in order
        names = list(twin.state_dict())
        assert [v.shape for v in state.values()] == [twin.state_dict()[k].shape for k in names], names
        twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in zip(names, state.values(), strict=True)})
        opt = torch.optim.SGD(twin.parameters(), lr=ts.LR)

        def loss(x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(twin(x), y)

        return torch_step(twin, opt, loss, device, compile)

    return Case("examples/mlp_names.py", {"batch": ex.BATCH, "optimizer": "sgd"}, batches, ours, theirs)


def gpt_case(device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import gpt_shakespeare as ex

    import picograd as pg

    data = ex.CharData()
    cfg = replace(ex.CONFIGS[gpt_config], vocab_size=len(data.chars), dtype=dtype)
    rng = np.random.default_rng(GPT_SEED)
    batches = [data.batch("train", rng, cfg.batch_size, cfg.block_size) for _ in range(n)]

    def ours() -> Step:
        ex.model, ex.opt, ex.sched = ex.make(cfg, GPT_SEED, device)
        return picograd_step(pg.compile(ex.train_step.fn), device, ex.sched)

    def theirs(compile: bool) -> Step:
        import gpt_shakespeare_twin as tw
        import torch

        twin = tw.TorchGPT(cfg)
        tw.load_from_picograd(twin, ex.make(cfg, GPT_SEED)[0].state_dict())
        twin.to(device)
        opt, sched = tw.torch_optimizer(twin, cfg, fused=device == "cuda")

        def loss(x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(twin(x).reshape(-1, cfg.vocab_size), y.reshape(-1))

        return torch_step(twin, opt, loss, device, compile, dtype, cfg.grad_clip, sched)

    config = {"config": gpt_config, "n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "block": cfg.block_size,
              "batch": cfg.batch_size, "dropout": cfg.dropout}  # fmt: skip
    return Case(f"examples/gpt_shakespeare.py --config {gpt_config} --dtype {dtype}", config, batches, ours, theirs)


def bert_case(device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import bert_shakespeare as ex

    import picograd as pg

    data = ex.CharData()
    cfg = replace(ex.CFG, vocab_size=len(data.chars) + 1)
    rng = np.random.default_rng(GPT_SEED)
    xs = [data.batch("train", rng, cfg.batch_size, cfg.block_size)[0] for _ in range(n)]
    batches = [(x, *ex.numpy_corrupt(x, cfg.vocab_size, rng)) for x in xs]  # (x, corrupted input, target)

    def ours() -> Step:
        ex.model, ex.opt, ex.sched = ex.make(cfg, GPT_SEED, device)
        return picograd_step(pg.compile(ex.train_step.fn), device, ex.sched, slice(0, 1))

    def theirs(compile: bool) -> Step:
        import bert_shakespeare_twin as tw
        import gpt_shakespeare_twin as gtw
        import torch

        twin = tw.TorchBERT(cfg)
        gtw.load_from_picograd(twin, ex.make(cfg, GPT_SEED)[0].state_dict())
        twin.to(device)
        opt, sched = gtw.torch_optimizer(twin, cfg, fused=device == "cuda")

        def loss(inp: Any, target: Any) -> Any:
            logits = twin(inp).reshape(-1, cfg.vocab_size)
            return torch.nn.functional.cross_entropy(logits, target.reshape(-1), ignore_index=ex.IGNORE)

        return torch_step(twin, opt, loss, device, compile, clip=cfg.grad_clip, sched=sched, inputs=slice(1, 3))

    config = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "block": cfg.block_size, "batch": cfg.batch_size}
    return Case("examples/bert_shakespeare.py", config, batches, ours, theirs)


def cnn_case(device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import cnn_digits as ex
    import digits_data as dd

    import picograd as pg

    data = dd.load_digits()
    x_train = dd.to_unit(data.x_train)
    rng = np.random.default_rng(ex.SEED)
    batches = [(x_train[i], data.y_train[i]) for i in (dd.batches(len(x_train), ex.BATCH, rng) for _ in range(n))]

    def ours() -> Step:
        ex.model, ex.opt = ex.make(ex.SEED, device)
        return picograd_step(pg.compile(ex.train_step.fn), device)

    def theirs(compile: bool) -> Step:
        import cnn_digits_twin as tw
        import torch

        twin = tw.from_picograd(tw.TorchCNN(), ex.make(ex.SEED)[0].state_dict()).to(device)
        opt = torch.optim.Adam(twin.parameters(), lr=ex.LR)

        def loss(x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(twin(x), y)

        return torch_step(twin, opt, loss, device, compile)

    return Case("examples/cnn_digits.py", {"batch": ex.BATCH}, batches, ours, theirs)


def ddpm_case(device: str, dtype: str, n: int, gpt_config: str) -> Case:
    import ddpm_digits as ex
    import digits_data as dd

    import picograd as pg

    data = dd.load_digits()
    x_train = dd.to_signed(data.x_train)
    rng = np.random.default_rng(ex.SEED)
    batches = [(x_train[dd.batches(len(x_train), ex.BATCH, rng)],) for _ in range(n)]

    def ours() -> Step:
        ex.model, ex.opt, ex.sched = ex.make(ex.SEED, device)
        return picograd_step(pg.compile(ex.train_step.fn), device)

    def theirs(compile: bool) -> Step:
        import cnn_digits_twin
        import ddpm_digits_twin as tw
        import torch

        twin = cnn_digits_twin.from_picograd(tw.TorchUNet(), ex.make(ex.SEED)[0].state_dict()).to(device)
        opt = torch.optim.Adam(twin.parameters(), lr=ex.LR)
        alpha_bar = torch.cumprod(1.0 - torch.from_numpy(ex.betas()), 0).to(device)

        def loss(x0: Any) -> Any:  # timesteps and noise drawn here, as picograd's step draws them
            t = torch.randint(0, ex.T, (x0.shape[0],), device=x0.device)
            noise = torch.randn_like(x0)
            a = alpha_bar[t][:, None, None, None]
            return torch.nn.functional.mse_loss(twin(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)

        return torch_step(twin, opt, loss, device, compile)

    return Case("examples/ddpm_digits.py", {"batch": ex.BATCH, "diffusion_steps": ex.T}, batches, ours, theirs)


def make_case(model: str, device: str, dtype: str, n: int, gpt_config: str) -> Case:
    if model.startswith("names-"):
        return names_case(model.removeprefix("names-"), device, dtype, n, gpt_config)
    builders = {"mlp-names": mlp_names_case, "gpt": gpt_case, "bert": bert_case, "cnn": cnn_case, "ddpm": ddpm_case}
    return builders[model](device, dtype, n, gpt_config)


# ---------------------------------------------------------------------------------------------------------------
# Measuring (in the child processes)


def time_steps(step: Step, batches: list[Batch], warmup: int) -> dict[str, Any]:
    """The first call alone, ``warmup`` calls, then one timed call per remaining batch."""
    t0 = time.perf_counter()
    first_loss = step(batches[0])
    first = time.perf_counter() - t0
    for b in batches[1 : 1 + warmup]:
        step(b)
    times, losses = [], []
    for b in batches[1 + warmup :]:
        t0 = time.perf_counter()
        losses.append(step(b))
        times.append(time.perf_counter() - t0)
    return {
        "ms_per_step": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * float(np.percentile(times, 10)),
        "p90_ms": 1e3 * float(np.percentile(times, 90)),
        "first_call_s": first,
        "steps": len(times),
        "warmup": warmup,
        "first_loss": first_loss,
        "last_loss": losses[-1],
        "losses_finite": all(math.isfinite(v) for v in [first_loss, *losses]),
    }


def full_gpt(framework: str, device: str, dtype: str, args: argparse.Namespace, emit: Callable[[dict], None]) -> None:
    """Train the GPT for ``args.full_iters`` iterations, evaluating every ``args.eval_interval``; ``emit`` a row
    after every evaluation (``partial`` until the end)."""
    import gpt_shakespeare as ex

    data = ex.CharData()
    iters = args.full_iters
    cfg = replace(ex.CONFIGS[args.gpt_config], vocab_size=len(data.chars), dtype=dtype, max_iters=iters,
                  lr_decay_iters=max(iters, ex.CONFIGS[args.gpt_config].warmup_iters + 1))  # fmt: skip
    val = data.fixed_batches("val", cfg.eval_batches, cfg.batch_size, cfg.block_size, GPT_SEED + 1)
    rng = np.random.default_rng(GPT_SEED)
    if framework == "picograd":
        import picograd as pg

        ex.model, ex.opt, ex.sched = ex.make(cfg, GPT_SEED, device)
        step = picograd_step(pg.compile(ex.train_step.fn), device, ex.sched)

        def evaluate() -> float:
            return ex.evaluate(val, device)

    else:
        import gpt_shakespeare_twin as tw
        import torch

        twin = tw.TorchGPT(cfg)
        tw.load_from_picograd(twin, ex.make(cfg, GPT_SEED)[0].state_dict())
        twin.to(device)
        opt, sched = tw.torch_optimizer(twin, cfg, fused=device == "cuda")
        compiled = framework == "torch-compile"

        def loss(x: Any, y: Any) -> Any:
            return torch.nn.functional.cross_entropy(twin(x).reshape(-1, cfg.vocab_size), y.reshape(-1))

        step = torch_step(twin, opt, loss, device, compiled, dtype, cfg.grad_clip, sched)
        eval_model = torch.compile(twin) if compiled else twin

        def evaluate() -> float:
            return tw.torch_evaluate(eval_model, val, device, dtype)

    times: list[float] = []
    losses: list[float] = []
    vals: list[tuple[int, float]] = []
    start = time.perf_counter()
    for it in range(iters):
        batch = data.batch("train", rng, cfg.batch_size, cfg.block_size)
        t0 = time.perf_counter()
        losses.append(step(batch))
        times.append(time.perf_counter() - t0)
        if (it + 1) % args.eval_interval == 0 or it + 1 == iters:
            vals.append((it + 1, evaluate()))
            wall = time.perf_counter() - start
            emit({
                "ms_per_step": 1e3 * statistics.median(times[10:] or times),
                "p10_ms": 1e3 * float(np.percentile(times[10:] or times, 10)),
                "p90_ms": 1e3 * float(np.percentile(times[10:] or times, 90)),
                "first_call_s": times[0],
                "iters": it + 1,
                "wall_s": wall,
                "train_s": sum(times),
                "eval_s": wall - sum(times),
                "best_val_loss": min(v for _, v in vals),
                "final_val_loss": vals[-1][1],
                "vals": vals,
                "losses_every_100": losses[::100],
                "losses_finite": all(math.isfinite(v) for v in losses),
                "eval_interval": args.eval_interval,
                "eval_batches": cfg.eval_batches,
                "partial": it + 1 < iters,
            })  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    """Run ``args.worker_frameworks`` of ``args.worker`` (``model:dtype``) and append one JSON line per framework
    (or per evaluation of a full run) to ``args.worker_out``."""
    model, dtype = args.worker.split(":")
    if args.null_driver:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        import _null_driver

        _null_driver.install(assemble=True)

    def emit(row: dict[str, Any]) -> None:
        with open(args.worker_out, "a") as f:
            f.write(json.dumps(row) + "\n")

    for framework in args.worker_frameworks.split(","):
        base = {"framework": framework}
        try:
            if model == "gpt-full":
                full_gpt(framework, args.device, dtype, args, lambda r, b=base: emit({**b, **r}))
                continue
            case = make_case(model, args.device, dtype, 1 + args.warmup + args.steps, args.gpt_config)
            step = case.picograd() if framework == "picograd" else case.torch(framework == "torch-compile")
            timed = time_steps(step, case.batches, args.warmup)
            if framework == "picograd":
                try:
                    timed.update(executable_facts(step))
                except Exception as e:  # a fact missing must not lose the timing
                    timed["executable_facts_error"] = repr(e)
            emit({**base, "example": case.example, "config": case.config, **timed})
        except Exception as e:  # one framework failing does not lose the next
            import traceback

            emit({**base, "error": f"{type(e).__name__}: {str(e)[:2000]}", "log": traceback.format_exc()[-3000:]})


# ---------------------------------------------------------------------------------------------------------------
# The driver


def environment(device: str) -> dict[str, Any]:
    """GPU, driver and versions, read without creating a CUDA context here."""
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"gpu": None, "driver": None}
    if device == "cuda":
        try:
            query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
            env["gpu"], env["driver"] = (
                subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.split("\n")[0].split(", ")
            )
        except Exception as e:
            env["gpu"] = f"unknown ({e})"
    else:
        env["gpu"] = f"none ({platform.machine()} CPU, {os.cpu_count()} cores)"
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("torch", "xdsl", "cuda-core", "cuda-bindings", "triton"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    env["versions"] = versions
    return env


def run_child(cmd: list[str], timeout: float) -> tuple[list[dict[str, Any]], str, str]:
    """Run a worker command with ``--worker-out`` appended; (its rows, its exit status, its output's tail)."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        out = tmp.name
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(cmd + ["--worker-out", out], env=env, capture_output=True, text=True, timeout=timeout)
        status, log = f"exit {proc.returncode}", (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        status = f"timed out after {timeout:.0f} s"
        log = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (e.stdout, e.stderr))
        log = log[-3000:]
    with open(out) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    os.unlink(out)
    return rows, status, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=DEFAULT_ORDER, help=f"comma-separated (model or model:bfloat16), of {MODELS}"
    )
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated, of {FRAMEWORKS}")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke test of the script")
    parser.add_argument(
        "--null-driver",
        action="store_true",
        help="picograd on cuda over tests/_null_driver.py (no GPU needed): compiles every kernel (nvJitLink) and runs "
        "the host path; kernels do nothing, so losses are garbage and times are the host's",
    )
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model and framework")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--budget", type=float, default=540, help="seconds for everything: no child starts after")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per child process at most")
    parser.add_argument("--gpt-config", choices=["gpu", "cpu"], help="default: gpu on cuda, cpu on the CPU")
    parser.add_argument("--full-gpt", action="store_true", help="the full-length GPT runs instead of step timings")
    parser.add_argument("--dtypes", default="bfloat16", help="--full-gpt: comma-separated, of float32, bfloat16")
    parser.add_argument("--full-iters", type=int, default=5000, help="--full-gpt: iterations (nanoGPT's 5,000)")
    parser.add_argument("--eval-interval", type=int, default=250, help="--full-gpt: iterations between evaluations")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "gpu_models_h200.jsonl"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-frameworks", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.gpt_config = args.gpt_config or ("gpu" if args.device == "cuda" else "cpu")
    if args.worker:
        worker(args)
        return

    frameworks = args.frameworks.split(",")  # --full-gpt runs them in this order
    if unknown := set(frameworks) - set(FRAMEWORKS):
        parser.error(f"unknown frameworks {sorted(unknown)}; frameworks are {', '.join(FRAMEWORKS)}")
    if args.full_gpt:
        work = [("gpt-full", d, [f]) for d in args.dtypes.split(",") for f in frameworks]
    else:
        work = []
        for item in args.models.split(","):
            model, _, dtype = item.partition(":")
            dtype = dtype or "float32"
            if model not in MODELS or dtype not in ("float32", "bfloat16"):
                parser.error(f"unknown model '{item}': models are {', '.join(MODELS)}, with :bfloat16 for the GPT")
            if dtype == "bfloat16" and model not in BF16_MODELS:
                parser.error(f"{model} has no bf16 path (only {', '.join(BF16_MODELS)})")
            groups = [["picograd"], ["torch-eager", "torch-compile"]]  # picograd alone: its crash loses no peer
            work += [(model, dtype, g) for g in ([f for f in g if f in frameworks] for g in groups) if g]

    env = environment("cpu" if args.null_driver else args.device)
    if args.null_driver:
        env["gpu"] = f"null driver on {env['gpu']}"
    deadline = time.perf_counter() + args.budget
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    print(f"gpu_models: {len(work)} children on {env['gpu']}, budget {args.budget:.0f} s -> {args.out}", flush=True)
    for model, dtype, group in work:
        left = deadline - time.perf_counter()
        cmd = [sys.executable, __file__, "--worker", f"{model}:{dtype}", "--worker-frameworks", ",".join(group),
               "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--gpt-config", args.gpt_config, "--full-iters", str(args.full_iters),
               "--eval-interval", str(args.eval_interval)] + ["--null-driver"] * args.null_driver  # fmt: skip
        t0 = time.perf_counter()
        if left < 15:
            rows, status, log = [], f"skipped: {args.budget:.0f} s budget spent", ""
        else:
            rows, status, log = run_child(cmd, min(args.timeout, left))
        last: dict[str, dict[str, Any]] = {}
        for row in rows:  # a full run's last row per framework is its furthest
            last[row["framework"]] = row
        for framework in group:
            row = last.get(framework) or {"framework": framework, "error": status, "log": log}
            if status != "exit 0" and "error" not in row:
                row["note"] = f"child {status}"
            row = {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "gpu": env["gpu"],
                "driver": env["driver"],
                "model": model,
                "device": args.device,
                "dtype": dtype,
                "best_val_loss": None,
                **row,
                "versions": env["versions"],
            }
            if model == "gpt-full":
                row.setdefault("example", f"examples/gpt_shakespeare.py --config {args.gpt_config} --dtype {dtype}")
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            what = row.get("error") or (
                f"{row['ms_per_step']:.3f} ms/step (first call {row['first_call_s']:.1f} s)"
                + (f", best val_loss {row['best_val_loss']:.4f} after {row['iters']}" if row["best_val_loss"] else "")
            )
            print(f"{model:18s} {dtype:9s} {framework:14s} {what}", flush=True)
        print(f"  ({','.join(group)}: {status}, {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
