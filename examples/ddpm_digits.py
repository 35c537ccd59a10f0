"""A denoising diffusion model (DDPM) generating 8x8 handwritten digits, trained with picograd.

Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020): ``T`` = 100 diffusion steps with
their linear beta schedule scaled to ``T`` (beta from 1e-4 * 1000/T to 0.02 * 1000/T, as improved DDPM does),
``alpha_bar = cumprod(1 - beta)``; the model predicts the noise (their "simple" loss, the MSE between the drawn
and the predicted noise) and samples with their Algorithm 2 (sigma_t^2 = beta_t). The digits are scaled to
[-1, 1].

The network is a small U-Net (Ronneberger et al. 2015, in the shape of the DDPM paper's): a 3x3 input conv to
``WIDTH`` channels, a residual block at 8x8, a stride-2 conv down to 4x4 and ``2 * WIDTH`` channels, two residual
blocks there, nearest-neighbour upsampling and a conv back to 8x8, a residual block on the concatenation with the
8x8 skip, and GroupNorm, SiLU and a 3x3 conv to one channel. Each residual block is GroupNorm(8), SiLU, conv,
plus a projection of the time embedding (sinusoidal, Vaswani et al. 2017, then Linear, SiLU, Linear), GroupNorm,
SiLU, conv, plus the input (through a 1x1 conv when the width changes).

One ``@pg.compile`` train step draws the timesteps and the noise from picograd's generator, noises the batch,
predicts, takes an Adam step and returns (loss, timesteps, noise), so that the PyTorch twin can replay the draw;
one compiled sampler step does Algorithm 2's update for 1,000 samples at once. After training it writes a PNG grid
of 64 samples and judges 1,000 samples against the 360 held-out digits with the committed digit classifier
(``cnn_digits.py``): FID on its 64 penultimate features and its Inception Score over the 10 classes
(``digits_data.py``). The last line is ``fid=<value> is=<value>``.

    python examples/ddpm_digits.py
    python examples/ddpm_digits.py --steps 0 --load ddpm.pg      # sample and score a checkpoint
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs on shared cores (see gpt_shakespeare.py)

import numpy as np  # noqa: E402
import picograd.nn.functional as F  # noqa: E402

import picograd as pg  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cnn_digits  # noqa: E402
import digits_data as dd  # noqa: E402

T, BETA_1, BETA_T = 100, 1e-4, 0.02
WIDTH, GROUPS = 16, 8
BATCH, STEPS, LR, SEED = 128, 1500, 2e-3, 0
SAMPLES, GRID = 1000, 64


def betas(steps: int = T) -> np.ndarray:
    """Ho et al.'s linear schedule (1e-4 to 0.02 over 1,000 steps) scaled to ``steps``: (steps,) float32."""
    scale = 1000 / steps
    return np.linspace(BETA_1 * scale, BETA_T * scale, steps, dtype=np.float32)


def timestep_frequencies(dim: int) -> np.ndarray:
    """The sinusoidal embedding's frequencies 10000^(-i / (dim/2)), i < dim/2: (dim/2,) float32."""
    half = dim // 2
    return np.exp(-math.log(10000.0) * np.arange(half) / half).astype(np.float32)


class ResBlock(pg.nn.Module):
    """GroupNorm, SiLU, conv, + time projection, GroupNorm, SiLU, conv, + skip: (B, c_in, H, W) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.norm1 = pg.nn.GroupNorm(GROUPS, c_in)
        self.conv1 = pg.nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = pg.nn.Linear(emb, c_out)
        self.norm2 = pg.nn.GroupNorm(GROUPS, c_out)
        self.conv2 = pg.nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = pg.nn.Conv2d(c_in, c_out, 1) if c_in != c_out else pg.nn.Identity()
        self.act = pg.nn.SiLU()

    def forward(self, x: pg.Tensor, emb: pg.Tensor) -> pg.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time(emb).reshape(emb.shape[0], -1, 1, 1)
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class UNet(pg.nn.Module):
    """Noisy images x (B, 1, 8, 8) and timesteps t (B,) int64 -> predicted noise (B, 1, 8, 8)."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        c, emb = width, 4 * width
        self.width = width
        self.time_mlp = pg.nn.Sequential(pg.nn.Linear(c, emb), pg.nn.SiLU(), pg.nn.Linear(emb, emb))
        self.inc = pg.nn.Conv2d(1, c, 3, padding=1)
        self.down1 = ResBlock(c, c, emb)
        self.down = pg.nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down2 = ResBlock(2 * c, 2 * c, emb)
        self.mid = ResBlock(2 * c, 2 * c, emb)
        self.up = pg.nn.Sequential(pg.nn.Upsample(scale_factor=2, mode="nearest"), pg.nn.Conv2d(2 * c, c, 3, padding=1))
        self.up1 = ResBlock(2 * c, c, emb)
        self.out = pg.nn.Sequential(pg.nn.GroupNorm(GROUPS, c), pg.nn.SiLU(), pg.nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: pg.Tensor, t: pg.Tensor) -> pg.Tensor:
        freqs = pg.tensor(timestep_frequencies(self.width), device=x.device)
        angles = t.float().reshape(-1, 1) * freqs.reshape(1, -1)
        emb = self.time_mlp(pg.cat([angles.sin(), angles.cos()], 1))
        skip = self.down1(self.inc(x), emb)
        h = self.mid(self.down2(self.down(skip), emb), emb)
        h = self.up1(pg.cat([self.up(h), skip], 1), emb)
        return self.out(h)


class Schedule:
    """beta, alpha = 1 - beta and alpha_bar = cumprod(alpha) as (T,) float32 tensors on ``device``."""

    def __init__(self, device: str = "cpu"):
        self.beta = pg.tensor(betas(), device=device)
        self.alpha = 1.0 - self.beta
        self.alpha_bar = self.alpha.cumprod(0).realize()


def make(seed: int, device: str = "cpu") -> tuple[UNet, pg.optim.Adam, Schedule]:
    """The U-Net initialised from ``seed`` (PyTorch's default initialisation) on ``device``, Adam, the schedule."""
    pg.manual_seed(seed)
    net = UNet().to(device)
    return net, pg.optim.Adam(net.parameters(), lr=LR), Schedule(device)


model, opt, sched = make(SEED)


def noised(x0: pg.Tensor, t: pg.Tensor, noise: pg.Tensor, alpha_bar: pg.Tensor) -> pg.Tensor:
    """q(x_t | x_0): sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, for x0 (B, 1, 8, 8) and t (B,)."""
    a = alpha_bar[t].reshape(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


@pg.compile(example_inputs=(pg.Spec((BATCH, 1, 8, 8)),))
def train_step(x0: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
    """One Adam step of the noise-prediction loss on clean images x0 (B, 1, 8, 8) in [-1, 1], with timesteps and
    noise drawn here; returns (loss, t (B,) int64, noise (B, 1, 8, 8))."""
    b = x0.shape[0]
    t = pg.randint(0, T, (b,), device=x0.device)
    noise = pg.randn(*x0.shape, device=x0.device)
    loss = F.mse_loss(model(noised(x0, t, noise, sched.alpha_bar), t), noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss, t, noise


@pg.compile
def sample_step(x: pg.Tensor, t: pg.Tensor, coef: pg.Tensor) -> pg.Tensor:
    """Algorithm 2's update: x_{t-1} = coef[0] (x_t - coef[1] eps(x_t, t)) + coef[2] z, z ~ N(0, I) drawn here."""
    eps = model(x, t)
    return coef[0] * (x - coef[1] * eps) + coef[2] * pg.randn(*x.shape, device=x.device)


def sampler_coefficients(step: int) -> np.ndarray:
    """(1 / sqrt(alpha_t), beta_t / sqrt(1 - alpha_bar_t), sigma_t) for step t (0-based; sigma_0 = 0), float32."""
    beta = betas()
    alpha_bar = np.cumprod(1.0 - beta.astype(np.float64))
    sigma = math.sqrt(beta[step]) if step > 0 else 0.0
    return np.array([1 / math.sqrt(1 - beta[step]), beta[step] / math.sqrt(1 - alpha_bar[step]), sigma], np.float32)


@pg.no_grad()
def sample(n: int, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """``n`` samples (n, 1, 8, 8) in [-1, 1] (clipped) by Algorithm 2, from pure noise, in eval mode."""
    from tqdm import tqdm

    model.eval()
    x = pg.randn(n, 1, 8, 8, device=device)
    for step in tqdm(reversed(range(T)), total=T, desc="sample", mininterval=1.0, disable=not progress):
        t = pg.tensor(np.full(n, step, np.int64), device=device)
        x = sample_step(x, t, pg.tensor(sampler_coefficients(step), device=device))
    model.train()
    return np.clip(x.numpy(), -1, 1)


def main() -> None:
    global model, opt, sched
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--save", help="write a checkpoint (model, optimizer, step) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples scored by FID and IS")
    parser.add_argument("--classifier", default=cnn_digits.CHECKPOINT, help="the digit classifier's checkpoint")
    parser.add_argument("--plot", default=os.path.join(HERE, "ddpm_digits_loss.png"))
    parser.add_argument("--grid", default=os.path.join(HERE, "ddpm_digits_samples.png"))
    args = parser.parse_args()

    start_time = time.perf_counter()
    data = dd.load_digits()
    x_train = dd.to_signed(data.x_train)
    dev = args.device
    model, opt, sched = make(args.seed, dev)
    start = 0
    if args.load:
        state = pg.load(args.load)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    print(f"U-Net of {sum(p.numel() for p in model.parameters()):,} parameters, T={T}; {len(x_train):,} digits")
    rng = np.random.default_rng(args.seed)
    losses: list[tuple[int, float]] = []
    if args.steps:
        from tqdm import tqdm

        t0 = time.perf_counter()
        bar = tqdm(range(start, start + args.steps), mininterval=1.0, desc="train")
        for it in bar:
            loss, _, _ = train_step(pg.tensor(x_train[dd.batches(len(x_train), BATCH, rng)], device=dev))
            losses.append((it + 1, loss.item()))
            if it % 50 == 0:
                bar.set_postfix(loss=f"{losses[-1][1]:.4f}")
        print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s")
        if dd.plot_curves({"train loss": losses}, args.plot, f"DDPM on 8x8 digits, picograd on {dev}", "MSE"):
            print(f"loss curve written to {args.plot}")
    if args.save:
        pg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": start + args.steps}, args.save)
        print(f"checkpoint written to {args.save}")
    t0 = time.perf_counter()
    samples = dd.signed_to_unit(sample(args.samples, dev))
    print(f"{args.samples} samples in {time.perf_counter() - t0:.1f} s")
    if dd.save_grid(samples[:GRID], args.grid):
        print(f"{min(GRID, len(samples))} samples written to {args.grid}")
    fid, inception = dd.quality(cnn_digits.load_classifier(args.classifier, dev), samples, dd.to_unit(data.x_test))
    print(f"total {time.perf_counter() - start_time:.1f} s")
    print(f"fid={fid:.4f} is={inception:.4f}")


if __name__ == "__main__":
    main()
