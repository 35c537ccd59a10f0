"""nanoGPT's character-level GPT on tiny Shakespeare, trained with picograd.

The model, data and recipe of Karpathy's nanoGPT (``model.py``, ``config/train_shakespeare_char.py``): a decoder-only
transformer (Radford et al., 2019: pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP, learned
position embeddings, the token embedding tied to the output head, no biases), trained on the first 90% of the
1.1M characters of tiny Shakespeare and validated on the rest. Initialisation: normal(0, 0.02) for every weight,
residual projections (``c_proj``) scaled by 1/sqrt(2 n_layer). AdamW with betas (0.9, 0.99) and weight decay 0.1 on
the matrices only (embeddings included; not on LayerNorm weights), linear warmup then cosine decay to ``min_lr``,
gradient clipping at norm 1.0 -- all inside one ``@pg.compile`` train step (forward, backward, clip, update).

Configs: ``--config cpu`` (default; nanoGPT's CPU "baby GPT": 4 layers, 4 heads, 128 wide, block 64, batch 12,
2,000 iterations, dropout 0) and ``--config gpu`` (``train_shakespeare_char``: 6 layers, 6 heads, 384 wide, block
256, batch 64, 5,000 iterations, dropout 0.2). Batches are random windows drawn with numpy from ``--seed``; the
validation loss is the mean over a fixed set of validation batches. After training it samples 500 characters,
writes a loss-curve PNG and ends with ``val_loss=<value>``.

``--dtype bfloat16`` trains in bf16 mixed precision as nanoGPT's ``dtype='bfloat16'`` (its ``ctx``, a
``torch.autocast``): the forward pass and the loss run under ``pg.autocast(device, dtype=pg.bfloat16)`` (matrix
products and attention in bf16 with float32 accumulation; norms, softmax and the loss in float32), the parameters,
gradients and AdamW state stay float32 (master weights). The default is ``bfloat16`` on ``cuda`` (nanoGPT's where
bf16 is supported) and ``float32`` on the CPU.

    python examples/gpt_shakespeare.py                     # the baby GPT on the CPU
    python examples/gpt_shakespeare.py --config gpu --device cuda            # bf16 mixed precision by default
    python examples/gpt_shakespeare.py --config gpu --device cuda --dtype float32
    python examples/gpt_shakespeare.py --steps 0 --load ckpt.pg   # evaluate and sample a checkpoint
    python examples/gpt_shakespeare.py --attention manual --block-size 128   # nanoGPT's hand-written attention
    pgc examples/gpt_shakespeare.py --emit=ptx -o gpt.ptx  # the train step as PTX
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, replace

# The CPU executor runs many small GEMMs (768 x 128 x 512 here): OpenBLAS's thread pool costs more than it gains
# at these sizes and stalls badly when the cores are shared. Set the variable yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import picograd.nn.functional as F  # noqa: E402

import picograd as pg  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "tinyshakespeare.txt")


@dataclass(frozen=True)
class Config:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    max_iters: int = 2000
    dropout: float = 0.0
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    eval_batches: int = 100
    vocab_size: int = 65
    attention: str = "sdpa"  # "sdpa" (F.scaled_dot_product_attention) or "manual" (nanoGPT's non-flash path)
    dtype: str = "float32"  # "bfloat16": forward and loss under pg.autocast (bf16 mixed precision, see amp())


CONFIGS = {
    "cpu": Config(),
    "gpu": Config(
        n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=5000, dropout=0.2,
        lr_decay_iters=5000, eval_batches=200,
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Data


class CharData:
    """The text as int64 character ids (sorted unique characters), split 90/10 into train and validation."""

    def __init__(self, path: str = DATA):
        with open(path) as f:
            text = f.read()
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        data = np.array([self.stoi[c] for c in text], dtype=np.int64)
        n = int(0.9 * len(data))
        self.train, self.val = data[:n], data[n:]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def batch(self, split: str, rng: np.random.Generator, batch_size: int, block: int) -> tuple[np.ndarray, ...]:
        """Random windows: x (B, T) and the next characters y (B, T), int64."""
        data = self.train if split == "train" else self.val
        ix = rng.integers(0, len(data) - block, batch_size)
        rows = ix[:, None] + np.arange(block)
        return data[rows], data[rows + 1]

    def fixed_batches(self, split: str, n: int, batch_size: int, block: int, seed: int) -> list[tuple[np.ndarray, ...]]:
        """``n`` batches drawn once from ``seed`` (the same every evaluation)."""
        rng = np.random.default_rng(seed)
        return [self.batch(split, rng, batch_size, block) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# Model (nanoGPT's model.py, with bias=False)


class LayerNorm(pg.nn.Module):
    """LayerNorm with a weight and an optional bias (nanoGPT's; PyTorch's nn.LayerNorm has no bias=False)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = pg.nn.Parameter(np.ones(ndim, np.float32))
        self.bias = pg.nn.Parameter(np.zeros(ndim, np.float32)) if bias else None

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class SelfAttention(pg.nn.Module):
    """Multi-head self-attention: one (C, 3C) projection, ``F.scaled_dot_product_attention``, one (C, C) output
    projection. ``causal`` for the GPT; the BERT example uses it bidirectionally. With ``cfg.attention ==
    "manual"`` it is written as nanoGPT's non-flash path (scores, ``masked_fill`` by the ``bias`` tril buffer,
    softmax, dropout, ``@ v``), which ``pg-fuse-attention`` turns into the same attention op (with ``bias != 0``
    as its mask: a buffer's values are not known when compiling)."""

    def __init__(self, cfg: Config, causal: bool = True):
        super().__init__()
        self.c_attn = pg.nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = pg.nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.attn_dropout, self.resid_dropout = pg.nn.Dropout(cfg.dropout), pg.nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout, self.causal = cfg.n_head, cfg.n_embd, cfg.dropout, causal
        self.manual = cfg.attention == "manual"
        if self.manual:  # nanoGPT's registered buffer (a plain tensor attribute: picograd has no register_buffer)
            n = cfg.block_size
            mask = np.tril(np.ones((n, n), np.float32)) if causal else np.ones((n, n), np.float32)
            self.bias = pg.tensor(mask.reshape(1, 1, n, n))

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        if self.manual:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = F.dropout(att, p) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class MLP(pg.nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.c_fc = pg.nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.gelu = pg.nn.GELU()
        self.c_proj = pg.nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = pg.nn.Dropout(cfg.dropout)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(pg.nn.Module):
    def __init__(self, cfg: Config, causal: bool = True):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, bias=False)
        self.attn = SelfAttention(cfg, causal)
        self.ln_2 = LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def init_weights(model: pg.nn.Module, n_layer: int) -> None:
    """nanoGPT's initialisation: every Linear/Embedding weight normal(0, 0.02) and biases zero, then the residual
    projections (``*.c_proj.weight``) normal(0, 0.02 / sqrt(2 n_layer)). Tied weights are drawn once."""
    done: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in done or p.ndim < 2:
            continue
        done.add(id(p))
        std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
        p.data = (pg.randn(*p.shape) * std).realize()
    for m in model.modules():
        if isinstance(m, pg.nn.Linear) and m.bias is not None:
            m.bias.data = pg.zeros(*m.bias.shape)


class GPT(pg.nn.Module):
    """Token and position embeddings, ``n_layer`` causal blocks, a final LayerNorm and the tied output head:
    idx (B, T) int64 -> logits (B, T, vocab)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.transformer = pg.nn.ModuleDict(
            dict(
                wte=pg.nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=pg.nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=pg.nn.Dropout(cfg.dropout),
                h=pg.nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, bias=False),
            )
        )
        self.lm_head = pg.nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying: one parameter, gradients summed
        init_weights(self, cfg.n_layer)

    def forward(self, idx: pg.Tensor) -> pg.Tensor:
        t = idx.shape[1]
        pos = pg.arange(t, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def lr_factor(cfg: Config):
    """nanoGPT's ``get_lr`` as a factor of ``learning_rate`` (for ``LambdaLR``): linear warmup over
    ``warmup_iters``, cosine decay to ``min_lr`` at ``lr_decay_iters``, then ``min_lr``."""

    def factor(it: int) -> float:
        if it < cfg.warmup_iters:
            return (it + 1) / (cfg.warmup_iters + 1)
        if it > cfg.lr_decay_iters:
            return cfg.min_lr / cfg.learning_rate
        ratio = (it - cfg.warmup_iters) / (cfg.lr_decay_iters - cfg.warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
        return (cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)) / cfg.learning_rate

    return factor


def make(cfg: Config, seed: int, device: str = "cpu"):
    """The model (initialised from ``seed`` on the host, then moved to ``device``), AdamW with nanoGPT's two
    parameter groups, and the warmup + cosine schedule."""
    pg.manual_seed(seed)
    model = GPT(cfg).to(device)
    for m in model.modules():  # Module.to moves parameters only: the manual attention's mask buffer follows
        if isinstance(m, SelfAttention) and m.manual:
            m.bias = m.bias.to(device)
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = pg.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas)
    sched = pg.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))
    return model, opt, sched


CFG = CONFIGS["cpu"]
model, opt, sched = make(CFG, 1337)


def amp(x: pg.Tensor) -> pg.autocast:
    """nanoGPT's ``ctx``: bf16 autocast on ``x``'s device type when the model's ``cfg.dtype`` is ``"bfloat16"``,
    else a context that changes nothing (``enabled=False``)."""
    return pg.autocast(x.device.type, dtype=pg.bfloat16, enabled=model.cfg.dtype == "bfloat16")


@pg.compile(example_inputs=(pg.Spec((CFG.batch_size, CFG.block_size), "int64"),) * 2)
def train_step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """One AdamW step on x, y (B, T) int64 with the gradients clipped to norm ``grad_clip``; returns the loss
    (float32). The forward pass and the loss run under ``amp``."""
    with amp(x):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    pg.nn.utils.clip_grad_norm_(model.parameters(), model.cfg.grad_clip)
    opt.step()
    return loss


@pg.compile
def eval_loss(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """Mean cross-entropy of the model on x, y (B, T) (under ``amp``, as nanoGPT's ``estimate_loss``)."""
    with amp(x):
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@pg.compile
def next_char(window: pg.Tensor, pos: pg.Tensor, temperature: float) -> pg.Tensor:
    """Sample the character after position ``pos`` (0-d int64) of ``window`` (1, block): causal attention makes the
    logits there depend on ``window[:, :pos + 1]`` only, so one window shape serves every context length."""
    with amp(window):
        logits = model(window)[0][pos].float() / temperature
    return pg.multinomial(F.softmax(logits, -1), 1)


@pg.no_grad()
def generate(data: CharData, n: int, block: int, device: str = "cpu", temperature: float = 1.0) -> str:
    """``n`` characters sampled from the model (eval mode), starting from a newline (nanoGPT's default start)."""
    model.eval()
    ids = [data.stoi["\n"]]
    for _ in range(n):
        context = ids[-block:]
        window = np.zeros((1, block), np.int64)
        window[0, : len(context)] = context
        pos = pg.tensor(np.array(len(context) - 1, np.int64), device=device)
        ids.append(int(next_char(pg.tensor(window, device=device), pos, temperature).item()))
    model.train()
    return data.decode(ids[1:])


def evaluate(batches: list[tuple[np.ndarray, ...]], device: str = "cpu") -> float:
    """Mean loss over ``batches`` in eval mode."""
    model.eval()
    total = sum(eval_loss(pg.tensor(x, device=device), pg.tensor(y, device=device)).item() for x, y in batches)
    model.train()
    return total / len(batches)


def plot(losses: list[float], vals: list[tuple[int, float]], path: str, title: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(len(losses)), losses, lw=0.6, label="train (batch)")
    if vals:
        ax.plot(*zip(*vals, strict=True), "o-", label="validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def resume(path: str, model: pg.nn.Module, opt: pg.optim.Optimizer, sched) -> int:
    """Load a checkpoint written by ``--save`` into the model, optimizer and schedule; return its iteration."""
    state = pg.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    start = int(state["iter"])
    sched.last_epoch = start - 1
    sched.step()
    return start


def main() -> None:
    global model, opt, sched
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="iterations (default: the config's max_iters)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(
        "--attention",
        choices=["sdpa", "manual"],
        default="sdpa",
        help="F.scaled_dot_product_attention, or nanoGPT's hand-written form (both compile to one attention op)",
    )
    parser.add_argument("--block-size", type=int, help="context length (default: the config's)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        help="bfloat16: bf16 mixed precision (autocast, float32 master weights); default bfloat16 on cuda, float32 "
        "on the CPU",
    )
    parser.add_argument("--save", help="write a checkpoint (model, optimizer, iteration) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--samples", type=int, default=500, help="characters to sample after training")
    parser.add_argument("--plot", default=os.path.join(HERE, "gpt_shakespeare_loss.png"))
    parser.add_argument("--log-losses", metavar="PATH", help="write the per-step training losses here as JSON")
    args = parser.parse_args()

    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    cfg = replace(CONFIGS[args.config], attention=args.attention, dtype=dtype)
    if args.block_size is not None:
        cfg = replace(cfg, block_size=args.block_size)
    if args.steps is not None:
        cfg = replace(cfg, max_iters=args.steps, lr_decay_iters=max(args.steps, cfg.warmup_iters + 1))
    data = CharData()
    cfg = replace(cfg, vocab_size=len(data.chars))
    model, opt, sched = make(cfg, args.seed, args.device)
    start_iter = resume(args.load, model, opt, sched) if args.load else 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config {args.config}: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, block {cfg.block_size}, "
          f"{cfg.dtype} on {args.device}")  # fmt: skip
    print(f"{n_params / 1e6:.2f}M parameters; {len(data.train):,} training and {len(data.val):,} validation chars")
    val_batches = data.fixed_batches("val", cfg.eval_batches, cfg.batch_size, cfg.block_size, args.seed + 1)
    rng = np.random.default_rng(args.seed)
    dev = args.device
    losses: list[float] = []
    vals: list[tuple[int, float]] = []
    steps = max(cfg.max_iters - start_iter, 0)
    if steps:
        from tqdm import tqdm

        start = time.perf_counter()
        bar = tqdm(range(start_iter, start_iter + steps), mininterval=1.0, desc="train")
        for it in bar:
            x, y = data.batch("train", rng, cfg.batch_size, cfg.block_size)
            loss = train_step(pg.tensor(x, device=dev), pg.tensor(y, device=dev))
            sched.step()
            losses.append(loss.item())
            if it == start_iter:
                first = time.perf_counter()
            if (it + 1) % args.eval_interval == 0 or it + 1 == start_iter + steps:
                vals.append((it + 1 - start_iter, evaluate(val_batches, dev)))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", val=f"{vals[-1][1]:.4f}")
        end = time.perf_counter()
        per_step = 1e3 * (end - first) / max(steps - 1, 1)
        timing = f"{per_step:.1f} ms/iteration incl. evals; first {first - start:.1f} s"
        print(f"{steps} iterations in {end - start:.1f} s ({timing})")
        if plot(losses, vals, args.plot, f"nanoGPT char-level ({args.config} config), picograd on {dev}"):
            print(f"loss curve written to {args.plot}")
    if args.log_losses:
        with open(args.log_losses, "w") as f:
            json.dump({"config": args.config, "seed": args.seed, "losses": losses, "vals": vals}, f)
    if args.save:
        pg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter": start_iter + steps}, args.save)
        print(f"checkpoint written to {args.save}")
    if args.samples:
        print("sample:\n" + generate(data, args.samples, cfg.block_size, dev))
    print(f"val_loss={vals[-1][1] if vals and steps else evaluate(val_batches, dev):.4f}")


if __name__ == "__main__":
    main()
