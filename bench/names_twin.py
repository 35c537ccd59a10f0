"""PyTorch twin of examples/names.py: the same model and recipe in torch (``torch.nn.RNN``/``GRU``/``LSTM``, or the
per-position MLP), started from picograd's initial ``state_dict`` and fed the same batches in the same process.

Both train step by step, interleaved: each step runs picograd's compiled train step (``names.train_step``) and then
PyTorch eager's on the same batch, each timed with ``time.perf_counter`` around the step, including building its
input tensors from numpy and reading the loss back (``.item()``). Reported: the largest relative difference of the
first 50 losses (float32), both final validation losses (mean over every target of the validation split) and the
median per-step CPU time of each after the first 100 steps. PyTorch runs on ``--threads`` threads (1 by default).
Writes ``bench/results/names_twin_<type>.json``. ``--device cuda`` runs both on the GPU (PyTorch without TF32; the
results file gets ``_cuda``), ``--compile`` the twin's forward under ``torch.compile`` (``bench/gpu_models.py``
times all three side by side).

    python bench/names_twin.py --type lstm             # the default 20,000 steps
    python bench/names_twin.py --type gru --steps 200  # a quick agreement check
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as examples/names.py (set before numpy loads OpenBLAS)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from results_io import host_fields, twin_timings, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))


def torch_twin(kind: str, state: dict[str, np.ndarray]):
    """The torch model with picograd's parameter names, loaded from ``state``."""
    import names as ex
    import torch

    class Recurrent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind]
            self.rnn = cls(ex.EMBED, ex.HIDDEN, batch_first=True)

        def forward(self, e):
            return self.rnn(e)[0]

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(ex.MLP_CONTEXT * ex.EMBED, ex.HIDDEN)

        def forward(self, e):
            b, t, _ = e.shape
            padded = torch.cat([e[:, :1].expand(b, ex.MLP_CONTEXT - 1, ex.EMBED), e], 1)
            return torch.tanh(self.hidden(torch.cat([padded[:, k : k + t] for k in range(ex.MLP_CONTEXT)], 2)))

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            e = ex.EMBED
            self.ln_1, self.ln_2 = torch.nn.LayerNorm(e), torch.nn.LayerNorm(e)
            self.c_attn, self.c_proj = torch.nn.Linear(e, 3 * e), torch.nn.Linear(e, e)
            self.c_fc, self.mlp_proj = torch.nn.Linear(e, 4 * e), torch.nn.Linear(4 * e, e)

        def forward(self, x):
            b, t, c = x.shape
            h = ex.TRANSFORMER_HEADS
            q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in (q, k, v))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.mlp_proj(torch.nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class Transformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wpe = torch.nn.Embedding(ex.BLOCK, ex.EMBED)
            self.h = torch.nn.ModuleList([Block() for _ in range(ex.TRANSFORMER_LAYERS)])
            self.ln_f = torch.nn.LayerNorm(ex.EMBED)

        def forward(self, e):
            x = e + self.wpe(torch.arange(e.shape[1], device=e.device))
            for block in self.h:
                x = block(x)
            return self.ln_f(x)

    class Names(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(ex.VOCAB, ex.EMBED)
            self.body = MLP() if kind == "mlp" else Transformer() if kind == "transformer" else Recurrent()
            self.head = torch.nn.Linear(ex.HIDDEN, ex.VOCAB)

        def forward(self, x):
            return self.head(self.body(self.emb(x)))

    model = Names()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model


def torch_optimizer(kind: str, model):
    """The recipe's AdamW for the twin of ``--type kind`` (examples/names.py's ``make``)."""
    import names as ex
    import torch

    return torch.optim.AdamW(model.parameters(), lr=ex.LR.get(kind, 2e-3), betas=(0.9, 0.99), weight_decay=0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", default="lstm", choices=["mlp", "rnn", "gru", "lstm", "transformer"])
    parser.add_argument("--steps", type=int, default=None, help="default: names.py's for the type")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch's CPU threads (default 1: on a busy 2-core machine two threads wait on each other; numpy's "
        "BLAS made no difference either way)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="the twin's forward under torch.compile")
    parser.add_argument("--out", help="JSON results (default bench/results/names_twin_<type>[_cuda].json)")
    args = parser.parse_args()
    dev = args.device

    import names as ex
    import torch
    from tqdm import tqdm

    import picograd as pg

    torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = ex.DEFAULT_STEPS.get(args.type, 20_000)
    ex.model, ex.opt = ex.make(args.type, args.seed)
    tmodel = torch_twin(args.type, ex.model.state_dict()).to(dev)
    ex.model.to(dev)
    topt = torch_optimizer(args.type, tmodel)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as picograd's
    forward = torch.compile(tmodel) if args.compile else tmodel

    train_words, val_words, _ = ex.split(ex.load_words(), 42)
    xtr, ytr = ex.build_sequences(train_words, ex.BLOCK)
    xva, yva = ex.build_sequences(val_words, ex.BLOCK)

    def torch_loss(x, y, reduction="mean"):
        logits = forward(x.to(dev))
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, ex.VOCAB), y.to(dev).reshape(-1), ignore_index=-1, reduction=reduction
        )

    pg_losses, torch_losses, pg_ms, torch_ms = [], [], [], []
    start = time.perf_counter()
    for ix in tqdm(ex.batches(len(xtr), args.steps, args.seed), total=args.steps, mininterval=2.0, desc=args.type):
        t0 = time.perf_counter()
        pg_losses.append(ex.train_step(pg.tensor(xtr[ix], device=dev), pg.tensor(ytr[ix], device=dev)).item())
        t1 = time.perf_counter()
        loss = torch_loss(torch.from_numpy(xtr[ix]), torch.from_numpy(ytr[ix]))
        topt.zero_grad()
        loss.backward()
        topt.step()
        torch_losses.append(loss.item())
        t2 = time.perf_counter()
        pg_ms.append(1e3 * (t1 - t0))
        torch_ms.append(1e3 * (t2 - t1))
    wall = time.perf_counter() - start

    pg_val = ex.evaluate(xva, yva, dev)
    with torch.no_grad():
        count = int((yva != -1).sum())
        torch_val = float(torch_loss(torch.from_numpy(xva), torch.from_numpy(yva), "sum")) / count
    warm = 100 if args.steps > 200 else 0
    result = {
        "benchmark": f"examples/names.py --type {args.type} against its PyTorch twin (batch {ex.BATCH}, AdamW)",
        "device": dev,
        "torch_compile": args.compile,
        **host_fields(torch),
        "type": args.type,
        "steps": args.steps,
        "seed": args.seed,
        "val_loss": {"picograd": pg_val, "pytorch": torch_val, "difference": pg_val - torch_val},
        **twin_timings(pg_losses, torch_losses, pg_ms, torch_ms, warm),
        "wall_s": wall,  # both sides, interleaved
        "losses_every_1000": {"picograd": pg_losses[::1000], "pytorch": torch_losses[::1000]},
    }
    suffix = "_cuda" if dev == "cuda" else ""
    out = args.out or os.path.join(HERE, "results", f"names_twin_{args.type}{suffix}.json")
    write_json(out, result)
    med = result["median_ms_per_step"]
    print(f"first {min(50, args.steps)} losses: max relative difference {result['max_rel_diff_first_50_losses']:.2e}")
    print(f"ms/step (median): picograd {med['picograd']:.3f}, pytorch {med['pytorch']:.3f}")
    print(f"written to {out}")
    print(f"val_loss picograd={pg_val:.4f} pytorch={torch_val:.4f}")


if __name__ == "__main__":
    main()
