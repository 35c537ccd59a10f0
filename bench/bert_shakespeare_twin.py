"""The PyTorch twin of examples/bert_shakespeare.py: the same masked character LM and recipe in PyTorch, started
from picograd's initial ``state_dict``, fed the same batches *and the masks picograd's compiled step drew* (the
step returns its corrupted input and targets), in the same process, step by step.

Checks that the first ``--compare`` losses agree within 1e-4 relative and reports both final masked-token
validation losses and accuracies (the example's fixed validation batches and masks) and the per-step CPU time of
both (median after ``--warmup``). Writes ``bench/results/bert_shakespeare_cpu.json``; ``--device cuda`` runs both
on the GPU (``bert_shakespeare_cuda.json``), ``--compile`` the twin's forward under ``torch.compile``.

    python bench/bert_shakespeare_twin.py --steps 2000
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the example (set before numpy loads OpenBLAS)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)

import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
from gpt_shakespeare_twin import (  # noqa: E402
    TorchBlock,
    load_from_picograd,
    torch_optimizer,
    twin_args,
    versions,
)

import picograd as pg  # noqa: E402

import bert_shakespeare as ex  # noqa: E402  isort: skip
from results_io import write_json  # noqa: E402


class TorchBERT(nn.Module):
    def __init__(self, cfg: ex.Config):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList([TorchBlock(cfg, causal=False) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def torch_eval(model: nn.Module, batches, vocab: int, device: str = "cpu") -> tuple[float, float]:
    model.eval()
    loss = correct = count = 0.0
    with torch.no_grad():
        for inp, target in batches:
            logits = model(torch.from_numpy(inp).to(device)).reshape(-1, vocab)
            t = torch.from_numpy(target).to(device).reshape(-1)
            loss += TF.cross_entropy(logits, t, ignore_index=ex.IGNORE, reduction="sum").item()
            correct += (logits.argmax(-1) == t).sum().item()
            count += (t != ex.IGNORE).sum().item()
    model.train()
    return loss / count, correct / count


def main() -> None:
    args = twin_args(__doc__, "bert_shakespeare_cpu.json", warmup=5)

    data = ex.CharData()
    cfg = replace(ex.CFG, vocab_size=len(data.chars) + 1, max_iters=args.steps,
                  lr_decay_iters=max(args.steps, ex.CFG.warmup_iters + 1))  # fmt: skip
    dev = args.device
    ex.model, ex.opt, ex.sched = ex.make(cfg, args.seed, dev)
    twin = TorchBERT(cfg)
    load_from_picograd(twin, ex.model.state_dict())
    twin.to(dev)
    topt, tsched = torch_optimizer(twin, cfg)
    forward = torch.compile(twin) if args.compile else twin
    val = ex.val_batches(data, cfg, args.seed + 1)
    rng = np.random.default_rng(args.seed)

    from tqdm import tqdm

    ours, theirs, t_ours, t_theirs = [], [], [], []
    masked_fraction = []
    for _ in tqdm(range(args.steps), mininterval=2.0, desc="twin"):
        x, _ = data.batch("train", rng, cfg.batch_size, cfg.block_size)
        t0 = time.perf_counter()
        loss, inp, target = ex.train_step(pg.tensor(x, device=dev))
        ex.sched.step()
        ours.append(loss.item())
        t1 = time.perf_counter()
        inp_np, target_np = inp.numpy(), target.numpy()  # the masks picograd drew (not timed)
        masked_fraction.append(float((target_np != ex.IGNORE).mean()))
        t2 = time.perf_counter()
        logits = forward(torch.from_numpy(inp_np).to(dev))
        tloss = TF.cross_entropy(
            logits.reshape(-1, cfg.vocab_size), torch.from_numpy(target_np).to(dev).reshape(-1), ignore_index=ex.IGNORE
        )
        topt.zero_grad(set_to_none=True)
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
        topt.step()
        tsched.step()
        theirs.append(tloss.item())
        t3 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t3 - t2)

    n = min(args.compare, args.steps)
    rel = [abs(a - b) / abs(b) for a, b in zip(ours[:n], theirs[:n], strict=True)]
    val_ours = ex.evaluate(val, dev)
    val_theirs = torch_eval(twin, val, cfg.vocab_size, dev)
    med = {k: 1e3 * statistics.median(v[args.warmup :] or v) for k, v in (("ours", t_ours), ("theirs", t_theirs))}
    result = {
        "benchmark": "examples/bert_shakespeare.py, picograd vs its PyTorch twin fed picograd's masks (same process)",
        "device": dev,
        "torch_compile": args.compile,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end)",
        "versions": versions(),
        "torch_threads": args.torch_threads,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "steps": args.steps,
        "seed": args.seed,
        "masked_fraction_mean": statistics.fmean(masked_fraction),
        "first_losses_max_rel_diff": max(rel),
        "compared_losses": n,
        "val": {
            "picograd": {"loss": val_ours[0], "acc": val_ours[1]},
            "pytorch": {"loss": val_theirs[0], "acc": val_theirs[1]},
        },
        "ms_per_step_median": {"picograd": med["ours"], "pytorch": med["theirs"]},
        "wall_s": {"picograd": sum(t_ours), "pytorch": sum(t_theirs)},
        "losses_first": {"picograd": ours[:n], "pytorch": theirs[:n]},
    }
    write_json(args.out, result)
    print(f"first {n} losses: max relative difference {max(rel):.2e} (bound 1e-4)")
    print(f"val picograd loss {val_ours[0]:.4f} acc {val_ours[1]:.4f}; pytorch loss {val_theirs[0]:.4f} acc "
          f"{val_theirs[1]:.4f}")  # fmt: skip
    print(f"ms/step (median): picograd {med['ours']:.1f}, pytorch {med['theirs']:.1f}; written to {args.out}")


if __name__ == "__main__":
    main()
