"""Character-level language models on names, makemore-style, trained with picograd: ``--type mlp|rnn|gru|lstm|...``.

Every model reads a name as a sequence of 16 tokens and predicts the next character at every position: an
embedding of 64, a body, and a linear head to the 27 characters (a-z and '.', which marks the start and the end).
The bodies:

- ``rnn``, ``gru``, ``lstm``: ``pg.nn.RNN`` (tanh) / ``GRU`` / ``LSTM`` with 64 hidden units, batch first, from a
  zero state (unrolled over the 16 steps while tracing);
- ``mlp``: the Bengio et al. (2003) model applied at every position: the embeddings of the last 3 tokens,
  concatenated, then Linear(192, 64), tanh;
- ``transformer``: makemore's default transformer: learned position embeddings, 4 pre-LayerNorm blocks of 4-head
  causal self-attention (``F.scaled_dot_product_attention``) and a tanh-GELU MLP (64 wide), a final LayerNorm
  (makemore's output head has no bias; here the shared head keeps one). Trained with AdamW lr 5e-4 for 10,000
  steps by default (makemore's learning rate).

Recipe (makemore's): the words shuffled with seed 42 and split 80/10/10; each name as inputs starting with token 0
and targets ending with 0 then -1 (ignored by the loss); batch 32 names drawn at random (with replacement) from the
training split; AdamW, lr 2e-3, betas (0.9, 0.99), weight decay 0.01; 20,000 steps, all through one
``@pg.compile`` train step. It prints 20 sampled names, writes a loss-curve PNG and ends with ``val_loss=<value>``,
the mean loss over every target of the validation split. ``bench/names_twin.py`` trains the PyTorch twin. With
``--device cuda`` the model and each batch go to the GPU (not yet run on one: the CPU is the tested path).

    python examples/names.py --type lstm                  # train on the CPU (default)
    python examples/names.py --type gru --steps 0 --load gru.pgt   # evaluate a checkpoint
    PG_NAMES_TYPE=gru pgc examples/names.py --emit=ptx    # the compiled train step of one type, as PTX
"""

from __future__ import annotations

import os

# One BLAS thread: the step's matmuls are small (at most 512 x 64 x 256), and on a busy 2-core machine OpenBLAS's
# threads wait on each other (the LSTM step measured 8x slower with two). Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import picograd.nn.functional as F  # noqa: E402
from names_data import HERE, VOCAB, build_sequences, decode, load_words, plot_losses, split  # noqa: E402

import picograd as pg  # noqa: E402

BLOCK = 16  # tokens per name: the start token and up to 15 characters (the longest name has 15)
EMBED, HIDDEN, BATCH = 64, 64, 32
MLP_CONTEXT = 3  # tokens the MLP sees
EVAL_CHUNK = 512  # names per evaluation call (the last chunk is padded with ignored targets)
TYPES = ("mlp", "rnn", "gru", "lstm", "transformer")
RECURRENT = {"rnn": pg.nn.RNN, "gru": pg.nn.GRU, "lstm": pg.nn.LSTM}


class RecurrentBody(pg.nn.Module):
    """``pg.nn.RNN``/``GRU``/``LSTM`` (EMBED -> HIDDEN, batch first) from a zero state: (B, T, E) -> (B, T, H)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.rnn = RECURRENT[kind](EMBED, HIDDEN, batch_first=True)

    def forward(self, e: pg.Tensor) -> pg.Tensor:
        out, _ = self.rnn(e)
        return out


class MLPBody(pg.nn.Module):
    """The embeddings of the last MLP_CONTEXT tokens (earlier positions see the start token's), concatenated,
    then Linear(3 E, H) and tanh: (B, T, E) -> (B, T, H)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.hidden = pg.nn.Linear(MLP_CONTEXT * EMBED, HIDDEN)

    def forward(self, e: pg.Tensor) -> pg.Tensor:
        b, t, _ = e.shape
        first = e[:, :1].expand(b, MLP_CONTEXT - 1, EMBED)  # every name starts with token 0
        padded = pg.cat([first, e], 1)  # (B, T + C - 1, E)
        ctx = pg.cat([padded[:, k : k + t] for k in range(MLP_CONTEXT)], 2)  # oldest first
        return self.hidden(ctx).tanh()


TRANSFORMER_LAYERS, TRANSFORMER_HEADS = 4, 4


class TransformerBlock(pg.nn.Module):
    """makemore's Block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``; causal self-attention with one (E, 3E)
    projection, an (E, 4E) MLP with the tanh GELU. Linear and LayerNorm layers have biases."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = pg.nn.LayerNorm(EMBED), pg.nn.LayerNorm(EMBED)
        self.c_attn, self.c_proj = pg.nn.Linear(EMBED, 3 * EMBED), pg.nn.Linear(EMBED, EMBED)
        self.c_fc, self.mlp_proj = pg.nn.Linear(EMBED, 4 * EMBED), pg.nn.Linear(4 * EMBED, EMBED)
        self.gelu = pg.nn.GELU("tanh")

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, TRANSFORMER_HEADS, c // TRANSFORMER_HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class TransformerBody(pg.nn.Module):
    """Position embeddings, TRANSFORMER_LAYERS blocks and a final LayerNorm: (B, T, E) -> (B, T, E)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.wpe = pg.nn.Embedding(BLOCK, EMBED)
        self.h = pg.nn.ModuleList([TransformerBlock() for _ in range(TRANSFORMER_LAYERS)])
        self.ln_f = pg.nn.LayerNorm(EMBED)

    def forward(self, e: pg.Tensor) -> pg.Tensor:
        x = e + self.wpe(pg.arange(e.shape[1], device=e.device))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


# --type -> the body's constructor (called with the type)
BODIES: dict[str, Callable[[str], pg.nn.Module]] = {
    "mlp": MLPBody,
    **dict.fromkeys(RECURRENT, RecurrentBody),
    "transformer": TransformerBody,
}
LR = {"transformer": 5e-4}  # makemore's learning rate for its transformer; 2e-3 for the others
DEFAULT_STEPS = {"transformer": 10_000}  # 20,000 for the others


class NamesModel(pg.nn.Module):
    """Embedding(27, E) -> body -> Linear(H, 27): token ids (B, T) int64 -> logits (B, T, 27)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in BODIES:
            raise SystemExit(
                f"names.py: --type {kind} is not implemented yet (available: {', '.join(BODIES)}); the transformer "
                "comes with the transformers issue"
            )
        self.kind = kind
        self.emb = pg.nn.Embedding(VOCAB, EMBED)
        self.body = BODIES[kind](kind)
        self.head = pg.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return self.head(self.body(self.emb(x)))


def make(kind: str, seed: int = 42) -> tuple[NamesModel, pg.optim.Optimizer]:
    """The model of type ``kind`` initialised from ``seed`` and its AdamW optimizer (the recipe's)."""
    pg.manual_seed(seed)
    model = NamesModel(kind)
    opt = pg.optim.AdamW(model.parameters(), lr=LR.get(kind, 2e-3), betas=(0.9, 0.99), weight_decay=0.01)
    return model, opt


def sequence_loss(logits: pg.Tensor, y: pg.Tensor, reduction: str = "mean") -> pg.Tensor:
    """Cross-entropy of logits (B, T, 27) against targets (B, T), ignoring targets of -1."""
    return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1), ignore_index=-1, reduction=reduction)


# the model lives in a global so the compiled functions below can be found by pgc (which imports this file):
# PG_NAMES_TYPE picks the type they are traced with there; main() rebinds it to --type before the first call
model, opt = make(os.environ.get("PG_NAMES_TYPE", "lstm"))


@pg.compile(example_inputs=(pg.Spec((BATCH, BLOCK), "int64"), pg.Spec((BATCH, BLOCK), "int64")))
def train_step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """One AdamW step on a batch of names: x, y (B, 16) int64 (see ``build_sequences``); returns the batch loss."""
    loss = sequence_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@pg.compile
def loss_sum(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """The summed loss over the targets of (x, y) that are not -1."""
    return sequence_loss(model(x), y, "sum")


@pg.compile
def next_char_probs(x: pg.Tensor) -> pg.Tensor:
    """Softmax over the next character at every position: x (B, T) -> (B, T, 27)."""
    return F.softmax(model(x), 2)


def evaluate(x: np.ndarray, y: np.ndarray, device: str = "cpu") -> float:
    """Mean loss over every target of (x, y), in chunks of EVAL_CHUNK names (one compiled shape)."""
    total, count = 0.0, int((y != -1).sum())
    for i in range(0, len(x), EVAL_CHUNK):
        xc, yc = x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]
        pad = EVAL_CHUNK - len(xc)
        if pad:
            xc = np.concatenate([xc, np.zeros((pad, BLOCK), np.int64)])
            yc = np.concatenate([yc, np.full((pad, BLOCK), -1, np.int64)])
        total += float(loss_sum(pg.tensor(xc, device=device), pg.tensor(yc, device=device)).item())
    return total / count


def sample(n: int, rng: np.random.Generator, device: str = "cpu") -> list[str]:
    """Draw ``n`` names at once, one position at a time: the model sees the whole (zero-padded) block each time,
    and position t's prediction depends only on positions up to t."""
    x = np.zeros((n, BLOCK), dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for t in range(BLOCK - 1):
        p = next_char_probs(pg.tensor(x, device=device)).numpy()[:, t].astype(np.float64)
        for i in range(n):
            if not done[i]:
                ix = int(rng.choice(VOCAB, p=p[i] / p[i].sum()))
                done[i] = ix == 0
                x[i, t + 1] = ix
    return ["".join(decode(int(c)) for c in row[1:]).split(".")[0] for row in x]


def batches(n_train: int, steps: int, seed: int, batch: int = BATCH):
    """The training batches' word indices, (batch,) each, drawn from ``seed`` (shared with the PyTorch twin)."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield rng.integers(0, n_train, size=batch)


def main() -> None:
    global model, opt
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", default="lstm", choices=TYPES, help="the model")
    parser.add_argument("--steps", type=int, default=None, help="training steps (0: evaluate only; default 20,000, "
                        "10,000 for the transformer)")  # fmt: skip
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=42, help="initialisation, split and batches")
    parser.add_argument("--save", help="write a checkpoint (model and optimizer) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--plot", help="loss-curve PNG (default examples/names_<type>_loss.png)")
    parser.add_argument("--samples", type=int, default=20, help="names to sample after training")
    parser.add_argument("--log-losses", metavar="PATH", help="write the per-step training losses here as JSON")
    args = parser.parse_args()
    dev = args.device
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.type, 20_000)
    model, opt = make(args.type, args.seed)
    model.to(dev)
    if args.load:
        state = pg.load(args.load)
        if state.get("type") != args.type:
            raise SystemExit(f"names.py: {args.load} holds a {state.get('type')} model, not --type {args.type}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])

    train_words, val_words, _ = split(load_words(), 42)
    xtr, ytr = build_sequences(train_words, BLOCK)
    xva, yva = build_sequences(val_words, BLOCK)
    print(f"--type {args.type}: {sum(p.numel() for p in model.parameters())} parameters;", end=" ")
    print(f"{len(train_words)} training words, {len(val_words)} validation words")

    losses: list[float] = []
    if args.steps:
        from tqdm import tqdm

        start = first = time.perf_counter()
        bar = tqdm(batches(len(xtr), args.steps, args.seed), total=args.steps, mininterval=1.0, desc="train")
        for step, ix in enumerate(bar):
            losses.append(train_step(pg.tensor(xtr[ix], device=dev), pg.tensor(ytr[ix], device=dev)).item())
            if step == 0:
                first = time.perf_counter()  # the first call traces and compiles
            if step % 500 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        end = time.perf_counter()
        timing = f"first step {first - start:.2f} s"
        if args.steps > 1:
            timing = f"{1e3 * (end - first) / (args.steps - 1):.3f} ms/step after the first; {timing}"
        print(f"{args.steps} steps in {end - start:.1f} s ({timing})")
        path = args.plot or os.path.join(HERE, f"names_{args.type}_loss.png")
        if plot_losses(losses, path, f"{args.type} on names (picograd, {dev})"):
            print(f"loss curve written to {path}")
        else:
            print("matplotlib is not installed: no loss curve")
    if args.log_losses:
        with open(args.log_losses, "w") as f:
            json.dump({"type": args.type, "seed": args.seed, "steps": args.steps, "losses": losses}, f)
        print(f"losses written to {args.log_losses}")
    if args.save:
        pg.save({"type": args.type, "model": model.state_dict(), "optimizer": opt.state_dict()}, args.save)
        print(f"checkpoint written to {args.save}")
    if args.samples:
        print("samples:", " ".join(sample(args.samples, np.random.default_rng(args.seed + 1), dev)))
    print(f"val_loss={evaluate(xva, yva, dev):.4f}")


if __name__ == "__main__":
    main()
