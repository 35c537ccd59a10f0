"""The PyTorch twin of examples/gpt_shakespeare.py: the same nanoGPT model and recipe in PyTorch, started from
picograd's initial ``state_dict`` and fed the same batches, in the same process, step by step.

Checks that the first ``--compare`` training losses agree within 1e-4 relative (float32) and reports both final
validation losses (over the example's fixed validation batches) and the per-step CPU time of both (wall clock of
one step including the host batch upload and reading the loss, median after ``--warmup`` steps). Writes
``bench/results/gpt_shakespeare_cpu.json``. ``--dtype bfloat16`` runs both in bf16 mixed precision (the example's
``--dtype``; the twin under ``torch.autocast(device, dtype=torch.bfloat16)``) and compares the losses within 1e-2
relative; ``--device cuda`` runs both on the GPU (``bench/gpu_models.py`` times the GPU configs).

    python bench/gpt_shakespeare_twin.py                 # the baby GPT, 2,000 iterations each
    python bench/gpt_shakespeare_twin.py --steps 60      # the loss comparison only
    python bench/gpt_shakespeare_twin.py --steps 20 --dtype bfloat16   # bf16 autocast on the CPU
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the example (set before numpy loads OpenBLAS)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import picograd as pg  # noqa: E402

import gpt_shakespeare as ex  # noqa: E402  isort: skip
from results_io import write_json  # noqa: E402


class TorchBlock(nn.Module):
    """nanoGPT's Block (bias=False), with the example's module names so that state_dicts line up."""

    def __init__(self, cfg: ex.Config, causal: bool = True):
        super().__init__()
        c = cfg.n_embd
        self.ln_1 = nn.LayerNorm(c, bias=False)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(c, 3 * c, bias=False)
        self.attn.c_proj = nn.Linear(c, c, bias=False)
        self.ln_2 = nn.LayerNorm(c, bias=False)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(c, 4 * c, bias=False)
        self.mlp.c_proj = nn.Linear(4 * c, c, bias=False)
        self.n_head, self.dropout, self.causal = cfg.n_head, cfg.dropout, causal
        self.manual = cfg.attention == "manual"
        if self.manual:  # nanoGPT's non-flash path and its registered tril buffer
            n = cfg.block_size
            self.register_buffer("bias", torch.tril(torch.ones(n, n)).view(1, 1, n, n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        if self.manual:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            y = TF.dropout(TF.softmax(att, dim=-1), p, self.training) @ v
        else:
            y = TF.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        y = TF.dropout(self.attn.c_proj(y.transpose(1, 2).reshape(b, t, c)), p, self.training)
        x = x + y
        h = self.mlp.c_proj(TF.gelu(self.mlp.c_fc(self.ln_2(x))))
        return x + TF.dropout(h, p, self.training)


class TorchGPT(nn.Module):
    def __init__(self, cfg: ex.Config):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                h=nn.ModuleList([TorchBlock(cfg) for _ in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd, bias=False),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.dropout = cfg.dropout

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = TF.dropout(self.transformer.wte(idx) + self.transformer.wpe(pos), self.dropout, self.training)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def load_from_picograd(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Load picograd's state_dict (a tied weight saved once) into a twin whose tied weights share one tensor."""
    missing, unexpected = model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    tied = {n for n, p in model.named_parameters(remove_duplicate=False)} - {n for n, p in model.named_parameters()}
    assert not unexpected and set(missing) <= tied, (missing, unexpected)


def torch_optimizer(model: nn.Module, cfg: ex.Config, fused: bool = False):
    """nanoGPT's AdamW (decay on the matrices only) and the example's schedule. ``fused``: PyTorch's fused CUDA
    AdamW (nanoGPT's choice on the GPU); else the single-tensor loop (``foreach=False``, the CPU anchor)."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    kind = {"fused": True} if fused else {"foreach": False}
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas, **kind)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, ex.lr_factor(cfg))


def torch_amp(device: str, dtype: str) -> torch.autocast:
    """The twin's side of the example's ``amp``: ``torch.autocast(device, bfloat16)``, enabled for ``"bfloat16"``."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")


@torch.no_grad()
def torch_evaluate(model: nn.Module, batches: list[tuple[np.ndarray, ...]], device: str, dtype: str) -> float:
    """``gpt_shakespeare.evaluate`` for the twin: mean loss over ``batches`` in eval mode (under ``torch_amp``)."""
    model.eval()
    total = 0.0
    for x, y in batches:
        with torch_amp(device, dtype):
            logits = model(torch.from_numpy(x).to(device))
            target = torch.from_numpy(y).to(device).reshape(-1)
            total += TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), target).item()
    model.train()
    return total / len(batches)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "xdsl": version("xdsl")}  # fmt: skip


def twin_args(doc: str | None, out: str, warmup: int, attention: bool = False) -> argparse.Namespace:
    """The command line the Shakespeare twins share (``out`` under ``bench/results/``; ``--device``, ``--compile``;
    ``attention`` adds the GPT's ``--attention``, ``--block-size`` and ``--dtype``); sets PyTorch's threads and, on
    the GPU, turns TF32 off (float32 as picograd's)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--compare", type=int, default=50, help="first losses that must agree within 1e-4")
    parser.add_argument("--warmup", type=int, default=warmup, help="steps left out of the timing")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch CPU threads (two threads wait on each other on the busy 2-core machine: 5 s a step measured)",
    )
    if attention:
        parser.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa", help="as the example's flag")
        parser.add_argument("--block-size", type=int, help="context length (default: the config's)")
        parser.add_argument(
            "--dtype",
            choices=["float32", "bfloat16"],
            default="float32",
            help="bfloat16: both under autocast (the example's --dtype; losses compared within 1e-2)",
        )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="the twin's forward under torch.compile")
    parser.add_argument("--out", help=f"default: bench/results/{out} (with _manual before _cpu for manual attention, "
                        "_bf16 for bfloat16, _cuda for the GPU)")  # fmt: skip
    args = parser.parse_args()
    if attention and args.attention == "manual":
        out = out.replace("_cpu", "_manual_cpu")
    if attention and args.dtype == "bfloat16":
        out = out.replace("_cpu", "_bf16_cpu")
    if args.device == "cuda":
        out = out.replace("_cpu", "_cuda")
    args.out = args.out or os.path.join(HERE, "results", out)
    torch.set_num_threads(args.torch_threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    return args


def main() -> None:
    args = twin_args(__doc__, "gpt_shakespeare_cpu.json", warmup=10, attention=True)

    data = ex.CharData()
    cfg = replace(ex.CONFIGS["cpu"], vocab_size=len(data.chars), max_iters=args.steps,
                  lr_decay_iters=max(args.steps, ex.CONFIGS["cpu"].warmup_iters + 1))  # fmt: skip
    cfg = replace(cfg, attention=args.attention, dtype=args.dtype)
    if args.block_size is not None:
        cfg = replace(cfg, block_size=args.block_size)
    dev = args.device
    ex.model, ex.opt, ex.sched = ex.make(cfg, args.seed, dev)
    twin = TorchGPT(cfg)
    load_from_picograd(twin, ex.model.state_dict())
    twin.to(dev)
    topt, tsched = torch_optimizer(twin, cfg)
    amp = torch_amp(dev, args.dtype)
    forward = torch.compile(twin) if args.compile else twin
    val = data.fixed_batches("val", cfg.eval_batches, cfg.batch_size, cfg.block_size, args.seed + 1)
    rng = np.random.default_rng(args.seed)

    from tqdm import tqdm

    ours, theirs, t_ours, t_theirs = [], [], [], []
    for _ in tqdm(range(args.steps), mininterval=2.0, desc="twin"):
        x, y = data.batch("train", rng, cfg.batch_size, cfg.block_size)
        t0 = time.perf_counter()
        ours.append(ex.train_step(pg.tensor(x, device=dev), pg.tensor(y, device=dev)).item())
        ex.sched.step()
        t1 = time.perf_counter()
        xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        with amp:
            logits = forward(xt)
            loss = TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
        topt.step()
        tsched.step()
        theirs.append(loss.item())
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t2 - t1)

    rel = [abs(a - b) / abs(b) for a, b in zip(ours[: args.compare], theirs[: args.compare], strict=True)]
    val_ours = ex.evaluate(val, dev)
    val_theirs = torch_evaluate(twin, val, dev, args.dtype)
    med = {k: 1e3 * statistics.median(v[args.warmup :] or v) for k, v in (("ours", t_ours), ("theirs", t_theirs))}
    bound = 1e-4 if args.dtype == "float32" else 1e-2
    result = {
        "benchmark": f"examples/gpt_shakespeare.py --config cpu --attention {args.attention} --block-size "
        f"{cfg.block_size} --dtype {args.dtype} --device {dev}, picograd vs its PyTorch twin (same process"
        f"{', torch.compile' if args.compile else ''})",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end)",
        "versions": versions(),
        "torch_threads": args.torch_threads,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "steps": args.steps,
        "seed": args.seed,
        "first_losses_max_rel_diff": max(rel),
        "first_losses_bound": bound,
        "compared_losses": args.compare,
        "val_loss": {"picograd": val_ours, "pytorch": val_theirs, "abs_diff": abs(val_ours - val_theirs)},
        "ms_per_step_median": {"picograd": med["ours"], "pytorch": med["theirs"]},
        "wall_s": {"picograd": sum(t_ours), "pytorch": sum(t_theirs)},
        "losses_first": {"picograd": ours[: args.compare], "pytorch": theirs[: args.compare]},
    }
    write_json(args.out, result)
    print(f"first {args.compare} losses: max relative difference {max(rel):.2e} (bound {bound:g})")
    print(f"val_loss picograd {val_ours:.4f}, pytorch {val_theirs:.4f} (difference {abs(val_ours - val_theirs):.4f})")
    print(f"ms/step (median): picograd {med['ours']:.1f}, pytorch {med['theirs']:.1f}; written to {args.out}")
    ok = max(rel) <= bound and (args.steps < 1000 or abs(val_ours - val_theirs) <= 0.02) and math.isfinite(val_ours)
    print("twin check:", "ok" if ok else "FAILED")


if __name__ == "__main__":
    main()
