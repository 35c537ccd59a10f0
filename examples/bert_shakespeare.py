"""A BERT-style masked character language model on tiny Shakespeare, trained with picograd.

Devlin et al., "BERT" (NAACL 2019), at character level: a bidirectional transformer encoder (the blocks of
``gpt_shakespeare.py`` without the causal mask: pre-LayerNorm, multi-head self-attention through
``F.scaled_dot_product_attention``, GELU MLP, learned positions, output head tied to the token embedding) predicts
masked characters. Each training step chooses 15% of the positions of its batch; of those 80% become ``[MASK]``
(an extra token id), 10% a random character and 10% stay; the loss is the cross-entropy on the chosen positions
only. The masking is drawn *inside* the compiled step from picograd's random generator, and the step returns what
it drew (the corrupted input and the targets, -100 where nothing was chosen) so that a twin can replay it.

Defaults: 4 layers, 4 heads, 128 wide, block 128, batch 32, 2,000 steps, AdamW (lr 1e-3, betas 0.9/0.99, weight
decay 0.1 on matrices), warmup 100 then cosine to 1e-4, gradient clipping at 1.0. Validation: masked-token loss
and accuracy over a fixed set of validation batches whose masks are drawn once (numpy, from the seed). The last
line is ``val_loss=<value> val_acc=<value>``.

    python examples/bert_shakespeare.py
    python examples/bert_shakespeare.py --steps 200 --save bert.pg
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as gpt_shakespeare.py: small GEMMs, shared cores

import numpy as np  # noqa: E402
import picograd.nn.functional as F  # noqa: E402

import picograd as pg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_shakespeare import (  # noqa: E402
    Block,
    CharData,
    Config,
    LayerNorm,
    init_weights,
    lr_factor,
    plot,
    resume,
)

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = Config(block_size=128, batch_size=32, max_iters=2000, lr_decay_iters=2000, eval_batches=50, vocab_size=66)
MASK_PROB, MASK_TOKEN_PROB, RANDOM_TOKEN_PROB = 0.15, 0.8, 0.1
IGNORE = -100


class BERT(pg.nn.Module):
    """Token and position embeddings, ``n_layer`` bidirectional blocks, a final LayerNorm and the tied output head:
    idx (B, T) int64 (ids < vocab_size; the last id is [MASK]) -> logits (B, T, vocab_size)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.wte = pg.nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = pg.nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = pg.nn.ModuleList([Block(cfg, causal=False) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = pg.nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        init_weights(self, cfg.n_layer)

    def forward(self, idx: pg.Tensor) -> pg.Tensor:
        x = self.wte(idx) + self.wpe(pg.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def make(cfg: Config, seed: int, device: str = "cpu"):
    pg.manual_seed(seed)
    model = BERT(cfg).to(device)
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = pg.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas)
    return model, opt, pg.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))


model, opt, sched = make(CFG, 1337)


def corrupt(x: pg.Tensor, vocab: int) -> tuple[pg.Tensor, pg.Tensor]:
    """BERT's masking of x (B, T) int64 character ids, drawn from picograd's generator: (input, target), target
    -100 where no position was chosen. ``vocab - 1`` is [MASK]; random replacements are characters (< vocab - 1)."""
    chosen = pg.rand(*x.shape, device=x.device) < MASK_PROB
    kind = pg.rand(*x.shape, device=x.device)
    random_ids = pg.randint(0, vocab - 1, x.shape, device=x.device)
    replaced = pg.where(
        kind < MASK_TOKEN_PROB, vocab - 1, pg.where(kind < MASK_TOKEN_PROB + RANDOM_TOKEN_PROB, random_ids, x)
    )
    return pg.where(chosen, replaced, x), pg.where(chosen, x, IGNORE)


def masked_loss(logits: pg.Tensor, target: pg.Tensor) -> pg.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)


@pg.compile(example_inputs=(pg.Spec((CFG.batch_size, CFG.block_size), "int64"),))
def train_step(x: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
    """Mask x (B, T), take one AdamW step on the masked-token loss (gradients clipped); returns (loss, the corrupted
    input, the targets)."""
    inp, target = corrupt(x, model.cfg.vocab_size)
    loss = masked_loss(model(inp), target)
    opt.zero_grad()
    loss.backward()
    pg.nn.utils.clip_grad_norm_(model.parameters(), model.cfg.grad_clip)
    opt.step()
    return loss, inp, target


@pg.compile
def eval_step(inp: pg.Tensor, target: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
    """(summed masked-token loss, correct predictions, masked positions) on one batch."""
    logits = model(inp)
    flat, t = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
    loss_sum = F.cross_entropy(flat, t, ignore_index=IGNORE, reduction="sum")
    return loss_sum, (flat.argmax(-1) == t).sum(), (t != IGNORE).sum()  # t is -100 where nothing was chosen


def numpy_corrupt(x: np.ndarray, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same masking with numpy (for the fixed validation batches)."""
    chosen = rng.random(x.shape) < MASK_PROB
    kind = rng.random(x.shape)
    random_ids = rng.integers(0, vocab - 1, x.shape)
    replaced = np.where(
        kind < MASK_TOKEN_PROB, vocab - 1, np.where(kind < MASK_TOKEN_PROB + RANDOM_TOKEN_PROB, random_ids, x)
    )
    return np.where(chosen, replaced, x), np.where(chosen, x, IGNORE)


def val_batches(data: CharData, cfg: Config, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    batches = data.fixed_batches("val", cfg.eval_batches, cfg.batch_size, cfg.block_size, seed)
    return [numpy_corrupt(x, cfg.vocab_size, rng) for x, _ in batches]


def evaluate(batches: list[tuple[np.ndarray, np.ndarray]], device: str = "cpu") -> tuple[float, float]:
    """Masked-token loss and accuracy over ``batches`` (eval mode)."""
    model.eval()
    loss = correct = count = 0.0
    for inp, target in batches:
        s, c, n = eval_step(pg.tensor(inp, device=device), pg.tensor(target, device=device))
        loss, correct, count = loss + s.item(), correct + c.item(), count + n.item()
    model.train()
    return loss / count, correct / count


def main() -> None:
    global model, opt, sched
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=CFG.max_iters)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--save", help="write a checkpoint (model, optimizer, step) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--eval-interval", type=int, default=250)
    parser.add_argument("--plot", default=os.path.join(HERE, "bert_shakespeare_loss.png"))
    parser.add_argument("--log-losses", metavar="PATH", help="write the per-step training losses here as JSON")
    args = parser.parse_args()

    data = CharData()
    cfg = replace(CFG, vocab_size=len(data.chars) + 1, max_iters=args.steps,
                  lr_decay_iters=max(args.steps, CFG.warmup_iters + 1))  # fmt: skip
    model, opt, sched = make(cfg, args.seed, args.device)
    start = resume(args.load, model, opt, sched) if args.load else 0
    val = val_batches(data, cfg, args.seed + 1)
    rng = np.random.default_rng(args.seed)
    dev = args.device
    losses: list[float] = []
    vals: list[tuple[int, float]] = []
    steps = max(args.steps - start, 0)
    metrics = None
    if steps:
        from tqdm import tqdm

        t0 = time.perf_counter()
        bar = tqdm(range(start, start + steps), mininterval=1.0, desc="train")
        for it in bar:
            x, _ = data.batch("train", rng, cfg.batch_size, cfg.block_size)
            loss, _, _ = train_step(pg.tensor(x, device=dev))
            sched.step()
            losses.append(loss.item())
            if it == start:
                t1 = time.perf_counter()
            if (it + 1) % args.eval_interval == 0 or it + 1 == start + steps:
                metrics = evaluate(val, dev)
                vals.append((it + 1 - start, metrics[0]))
                bar.set_postfix(loss=f"{losses[-1]:.3f}", val=f"{metrics[0]:.3f}", acc=f"{metrics[1]:.3f}")
        t2 = time.perf_counter()
        print(f"{steps} steps in {t2 - t0:.1f} s ({1e3 * (t2 - t1) / max(steps - 1, 1):.1f} ms/step incl. evals)")
        if plot(losses, vals, args.plot, f"BERT-style masked char LM, picograd on {dev}"):
            print(f"loss curve written to {args.plot}")
    if args.log_losses:
        with open(args.log_losses, "w") as f:
            json.dump({"seed": args.seed, "losses": losses, "vals": vals}, f)
    if args.save:
        pg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iter": start + steps}, args.save)
        print(f"checkpoint written to {args.save}")
    val_loss, val_acc = metrics if metrics is not None else evaluate(val, dev)
    print(f"val_loss={val_loss:.4f} val_acc={val_acc:.4f}")


if __name__ == "__main__":
    main()
