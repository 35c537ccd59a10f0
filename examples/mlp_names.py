"""The Bengio et al. (2003) MLP language model on names, trained with picograd.

"A Neural Probabilistic Language Model" (JMLR 3, 2003), at the scale of Karpathy's makemore part 2: a context of
3 characters, a 10-dimensional character embedding, one tanh hidden layer of 200 units and a softmax over the 27
characters (a-z and '.', which marks the start and end of a name). The words of names.txt are shuffled with the
seed and split 80/10/10 (by words, not by examples). Weights use PyTorch's default initialisation (nn.Linear's
uniform, nn.Embedding's normal).

Training (the makemore recipe): SGD, batch 32, 200,000 steps, learning rate 0.1 then 0.01 from step 100,000, all
through one ``@pg.compile`` train step (forward, backward and update compiled once). It prints 20 sampled names,
writes a loss-curve PNG and ends with ``val_loss=<value>``.

With ``--device cuda`` the model and the optimizer live on the GPU: the parameters are initialised on the host from
the seed (exactly as on the CPU) and moved with ``model.to("cuda")``, the optimizer state is created there, and the
whole training set is uploaded once; each step uploads only the batch's indices (drawn on the host from the same
seed as on the CPU) and gathers the batch on the device. The same recipe on both devices gives the same losses up
to float rounding: ``--log-losses PATH`` writes them as JSON for comparison.

    python examples/mlp_names.py                # train on the CPU (default)
    python examples/mlp_names.py --device cuda  # train on the GPU
    python examples/mlp_names.py --steps 100 --log-losses cpu.json   # per-step losses as JSON
    python examples/mlp_names.py --steps 0      # evaluate the (untrained or --load-ed) model only
    pgc examples/mlp_names.py --emit=step        # print the compiled train step
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import picograd.nn.functional as F
from names_data import decode, encode, load_words, plot_losses, split

import picograd as pg

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK_SIZE = 3  # context length: characters used to predict the next one
EMBED, HIDDEN, VOCAB = 10, 200, 27
BATCH = 32


def build_dataset(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every (context of BLOCK_SIZE characters, next character) pair of the words: X (N, 3) and Y (N,), int64."""
    xs, ys = [], []
    for w in words:
        context = [0] * BLOCK_SIZE
        for ch in w + ".":
            xs.append(context)
            ys.append(encode(ch))
            context = context[1:] + [encode(ch)]
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


class MLP(pg.nn.Module):
    """Embedding (27, 10) -> flatten (N, 30) -> Linear(30, 200) -> tanh -> Linear(200, 27): logits (N, 27)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = pg.nn.Embedding(VOCAB, EMBED)
        self.hidden = pg.nn.Linear(BLOCK_SIZE * EMBED, HIDDEN)
        self.out = pg.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        e = self.emb(x).reshape(x.shape[0], BLOCK_SIZE * EMBED)
        return self.out(self.hidden(e).tanh())


def make(seed: int = 0, optimizer: str = "sgd", lr: float = 0.1, device: str = "cpu") -> tuple[MLP, pg.optim.Optimizer]:
    """The model initialised from ``seed`` (on the host, then moved to ``device``) and its optimizer."""
    pg.manual_seed(seed)
    model = MLP().to(device)
    if optimizer == "sgd":
        opt: pg.optim.Optimizer = pg.optim.SGD(model.parameters(), lr=lr)
    else:
        opt = pg.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    return model, opt


model, opt = make()


@pg.compile(example_inputs=(pg.Spec((BATCH, BLOCK_SIZE), "int64"), pg.Spec((BATCH,), "int64")))
def train_step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """One SGD step on a batch: x (B, 3) int64 contexts, y (B,) int64 next characters; returns the batch loss."""
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@pg.compile
def train_step_indexed(xs: pg.Tensor, ys: pg.Tensor, ix: pg.Tensor) -> pg.Tensor:
    """``train_step`` on the batch ``ix`` (B,) int64 of the whole training set ``xs`` (N, 3), ``ys`` (N,), gathered
    where the data lives: on the GPU a step then uploads only its B indices."""
    return train_step(xs[ix], ys[ix])


@pg.compile
def eval_loss(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """Mean cross-entropy of the model on (x, y)."""
    return F.cross_entropy(model(x), y)


@pg.compile
def next_char_probs(x: pg.Tensor) -> pg.Tensor:
    """Softmax over the next character for contexts x (N, 3): (N, 27)."""
    return F.softmax(model(x), 1)


def sample(n: int, rng: np.random.Generator, device: str = "cpu") -> list[str]:
    """Draw ``n`` names from the model, one character at a time."""
    names = []
    for _ in range(n):
        context, out = [0] * BLOCK_SIZE, []
        while len(out) < 30:
            x = pg.tensor(np.array([context], dtype=np.int64), device=device)
            p = next_char_probs(x).numpy()[0].astype(np.float64)
            ix = int(rng.choice(VOCAB, p=p / p.sum()))
            if ix == 0:
                break
            out.append(decode(ix))
            context = context[1:] + [ix]
        names.append("".join(out))
    return names


def plot(losses: list[float], path: str, device: str = "cpu") -> bool:
    """Write the loss curve to ``path``; False (and nothing written) without matplotlib."""
    return plot_losses(losses, path, f"Bengio MLP on names (picograd, {device})")


def main() -> None:
    global model, opt
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000, help="training steps (0: evaluate only)")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 0.1 for sgd, 1e-3 for adamw)")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--save", help="write a checkpoint (model and optimizer) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--plot", default=os.path.join(HERE, "mlp_names_loss.png"), help="loss-curve PNG")
    parser.add_argument("--samples", type=int, default=20, help="names to sample after training")
    parser.add_argument("--log-losses", metavar="PATH", help="write the per-step training losses here as JSON")
    args = parser.parse_args()

    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    model, opt = make(args.seed, args.optimizer, lr, args.device)
    if args.load:
        state = pg.load(args.load)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])

    train_words, val_words, _ = split(load_words(), args.seed)
    xtr, ytr = build_dataset(train_words)
    xva, yva = build_dataset(val_words)
    print(f"{len(train_words)} training words, {len(xtr)} examples;", end=" ")
    print(f"{len(val_words)} validation words, {len(xva)} examples")
    dev = args.device
    xtr_t, ytr_t = pg.tensor(xtr, device=dev), pg.tensor(ytr, device=dev)  # uploaded once

    rng = np.random.default_rng(args.seed)
    losses: list[float] = []
    if args.steps:
        try:
            from tqdm import tqdm
        except ImportError:  # progress lines instead of a bar
            tqdm = None

        start = time.perf_counter()
        bar = tqdm(range(args.steps), mininterval=1.0, desc="train") if tqdm is not None else range(args.steps)
        for step in bar:
            if args.optimizer == "sgd":
                opt.param_groups[0]["lr"] = lr if step < args.steps // 2 else lr / 10
            ix = rng.integers(0, len(xtr), size=args.batch_size)
            if dev == "cpu":
                loss = train_step(pg.tensor(xtr[ix]), pg.tensor(ytr[ix]))
            else:  # the batch is gathered on the device: only the indices travel
                loss = train_step_indexed(xtr_t, ytr_t, pg.tensor(ix, device=dev))
            losses.append(loss.item())
            if step == 0:
                first = time.perf_counter()  # the first call traces and compiles
            if step % 1000 == 0 and tqdm is not None:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")  # type: ignore[union-attr]
            elif step % 20_000 == 0 and tqdm is None:
                print(f"step {step}: loss {losses[-1]:.4f}", flush=True)
        end = time.perf_counter()
        timing = f"first step {first - start:.2f} s"
        if args.steps > 1:
            timing = f"{1e3 * (end - first) / (args.steps - 1):.3f} ms/step after the first; {timing}"
        print(f"{args.steps} steps in {end - start:.1f} s ({timing})")
        print(f"train_loss={eval_loss(xtr_t, ytr_t).item():.4f}")
        if plot(losses, args.plot, dev):
            print(f"loss curve written to {args.plot}")
        else:
            print("matplotlib is not installed: no loss curve")
    if args.log_losses:
        record = {"device": dev, "optimizer": args.optimizer, "seed": args.seed, "batch_size": args.batch_size,
                  "lr": lr, "steps": args.steps, "losses": losses}  # fmt: skip
        with open(args.log_losses, "w") as f:
            json.dump(record, f)
        print(f"losses written to {args.log_losses}")
    if args.save:
        pg.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, args.save)
        print(f"checkpoint written to {args.save}")
    if args.samples:
        print("samples:", " ".join(sample(args.samples, np.random.default_rng(args.seed + 1), dev)))
    print(f"val_loss={eval_loss(pg.tensor(xva, device=dev), pg.tensor(yva, device=dev)).item():.4f}")


if __name__ == "__main__":
    main()
