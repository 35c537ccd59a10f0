"""The PyTorch twin of examples/ddpm_digits.py: the same U-Net, DDPM and recipe in PyTorch, started from picograd's
initial ``state_dict``, fed the same batches *and the timesteps and noise that picograd's compiled step drew* (the
step returns them), in the same process, step by step.

Checks that the first ``--compare`` losses agree within 1e-4 relative (float32); times a training step of each
(wall clock including building the input tensors and reading the loss, median after ``--warmup``) and the sampling
of ``--samples`` digits by each; scores both sample sets with the same classifier and metric code (FID on its
penultimate features against the held-out digits, Inception Score), and the held-out digits themselves against the
training digits (the floor of the metric). Writes ``bench/results/ddpm_digits_cpu.json`` and both 64-sample grids
as ``bench/results/ddpm_digits_samples_{picograd,pytorch}.png``. ``--device cuda`` runs both on the GPU (PyTorch
without TF32; ``ddpm_digits_cuda.json`` and ``ddpm_digits_samples_cuda_*.png``), ``--compile`` the twin's U-Net under
``torch.compile``.

    python bench/ddpm_digits_twin.py                 # the example's 2,000 steps and 1,000 samples
    python bench/ddpm_digits_twin.py --steps 50 --samples 0    # the loss comparison only
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the example (set before numpy loads OpenBLAS)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
from cnn_digits_twin import from_picograd  # noqa: E402
from gpt_shakespeare_twin import versions  # noqa: E402

import picograd as pg  # noqa: E402

import cnn_digits  # noqa: E402  isort: skip
import ddpm_digits as ex  # noqa: E402  isort: skip
import digits_data as dd  # noqa: E402  isort: skip
from results_io import write_json  # noqa: E402


class TorchResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(ex.GROUPS, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(ex.GROUPS, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(TF.silu(self.norm1(x))) + self.time(emb)[:, :, None, None]
        return self.conv2(TF.silu(self.norm2(h))) + self.skip(x)


class TorchUNet(nn.Module):
    """``ddpm_digits.UNet`` in PyTorch, with its module names."""

    def __init__(self, width: int = ex.WIDTH):
        super().__init__()
        c, emb = width, 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inc = nn.Conv2d(1, c, 3, padding=1)
        self.down1 = TorchResBlock(c, c, emb)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down2 = TorchResBlock(2 * c, 2 * c, emb)
        self.mid = TorchResBlock(2 * c, 2 * c, emb)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1))
        self.up1 = TorchResBlock(2 * c, c, emb)
        self.out = nn.Sequential(nn.GroupNorm(ex.GROUPS, c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))
        self.register_buffer("freqs", torch.from_numpy(ex.timestep_frequencies(width)), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        emb = self.time_mlp(torch.cat([angles.sin(), angles.cos()], 1))
        skip = self.down1(self.inc(x), emb)
        h = self.mid(self.down2(self.down(skip), emb), emb)
        return self.out(self.up1(torch.cat([self.up(h), skip], 1), emb))


@torch.no_grad()
def torch_sample(model: nn.Module, n: int, seed: int, device: str = "cpu") -> np.ndarray:
    """``ddpm_digits.sample`` in PyTorch (its own generator, on the host): (n, 1, 8, 8) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    x = torch.randn(n, 1, 8, 8, generator=g).to(device)
    for step in reversed(range(ex.T)):
        c0, c1, c2 = (float(v) for v in ex.sampler_coefficients(step))
        t = torch.full((n,), step, device=device)
        x = c0 * (x - c1 * model(x, t)) + c2 * torch.randn(x.shape, generator=g).to(device)
    model.train()
    return np.clip(x.cpu().numpy(), -1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=ex.STEPS)
    parser.add_argument("--seed", type=int, default=ex.SEED)
    parser.add_argument("--samples", type=int, default=ex.SAMPLES)
    parser.add_argument("--compare", type=int, default=50, help="first losses that must agree within 1e-4")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch CPU threads (1: shared 2-core machine)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="the twin's U-Net under torch.compile")
    parser.add_argument("--out", help="default: bench/results/ddpm_digits_<device>.json")
    parser.add_argument("--resample", action="store_true", help="sample again on both sides and time that too: the "
                        "first picograd sample includes tracing and compiling its sampler step")  # fmt: skip
    parser.add_argument("--grids", help="the 64-sample grids go to <GRIDS>_picograd.png and <GRIDS>_pytorch.png "
                        "(default: bench/results/ddpm_digits_samples, with _cuda on the GPU)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    dev = args.device
    args.out = args.out or os.path.join(HERE, "results", f"ddpm_digits_{dev}.json")
    suffix = "_cuda" if dev == "cuda" else ""
    args.grids = args.grids or os.path.join(HERE, "results", f"ddpm_digits_samples{suffix}")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as picograd's

    data = dd.load_digits()
    x_train = dd.to_signed(data.x_train)
    ex.model, ex.opt, ex.sched = ex.make(args.seed, dev)
    twin = from_picograd(TorchUNet(), ex.model.state_dict()).to(dev)
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR, foreach=False)
    forward = torch.compile(twin) if args.compile else twin
    alpha_bar = torch.cumprod(1.0 - torch.from_numpy(ex.betas()), 0).to(dev)
    rng = np.random.default_rng(args.seed)

    from tqdm import tqdm

    ours, theirs, t_ours, t_theirs = [], [], [], []
    for _ in tqdm(range(args.steps), mininterval=2.0, desc="twin"):
        x0 = x_train[dd.batches(len(x_train), ex.BATCH, rng)]
        t0 = time.perf_counter()
        loss, t, noise = ex.train_step(pg.tensor(x0, device=dev))
        ours.append(loss.item())
        t1 = time.perf_counter()
        t_np, noise_np = t.numpy(), noise.numpy()  # picograd's draw (not timed)
        t2 = time.perf_counter()
        tt, nt = torch.from_numpy(t_np).to(dev), torch.from_numpy(noise_np).to(dev)
        a = alpha_bar[tt][:, None, None, None]
        tloss = TF.mse_loss(forward(a.sqrt() * torch.from_numpy(x0).to(dev) + (1 - a).sqrt() * nt, tt), nt)
        topt.zero_grad(set_to_none=True)
        tloss.backward()
        topt.step()
        theirs.append(tloss.item())
        t3 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t3 - t2)

    n = min(args.compare, args.steps)
    rel = [abs(a - b) / abs(b) for a, b in zip(ours[:n], theirs[:n], strict=True)]
    med = {k: 1e3 * statistics.median(v[args.warmup :] or v) for k, v in (("ours", t_ours), ("theirs", t_theirs))}
    result = {
        "benchmark": "examples/ddpm_digits.py, picograd vs its PyTorch twin fed picograd's timesteps and noise "
        "(same process, same batches)",
        "device": dev,
        "torch_compile": args.compile,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "versions": versions(),
        "torch_threads": args.torch_threads,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "steps": args.steps,
        "seed": args.seed,
        "diffusion_steps": ex.T,
        "first_losses_max_rel_diff": max(rel) if rel else None,
        "compared_losses": n,
        "final_loss_mean_last_100": {
            "picograd": statistics.fmean(ours[-100:] or [0.0]),
            "pytorch": statistics.fmean(theirs[-100:] or [0.0]),
        },  # fmt: skip
        "ms_per_step_median": {"picograd": med["ours"], "pytorch": med["theirs"]},
        "train_s": {"picograd": sum(t_ours), "pytorch": sum(t_theirs)},
        "losses_first": {"picograd": ours[:n], "pytorch": theirs[:n]},
    }
    print(f"first {n} losses: max relative difference {max(rel):.2e} (bound 1e-4)")
    print(f"ms/step (median): picograd {med['ours']:.1f}, pytorch {med['theirs']:.1f}")
    if args.samples:
        t0 = time.perf_counter()
        s_ours = dd.signed_to_unit(ex.sample(args.samples, dev, progress=False))
        t1 = time.perf_counter()
        s_theirs = dd.signed_to_unit(torch_sample(twin, args.samples, args.seed, dev))
        t2 = time.perf_counter()
        classify = cnn_digits.load_classifier()
        test, train = dd.to_unit(data.x_test), dd.to_unit(data.x_train)
        (fid_ours, is_ours), (fid_theirs, is_theirs) = (dd.quality(classify, s, test) for s in (s_ours, s_theirs))
        floor = dd.quality(classify, test, train)
        for name, s in (("picograd", s_ours), ("pytorch", s_theirs)):
            dd.save_grid(s[: ex.GRID], f"{args.grids}_{name}.png")
        result["samples"] = args.samples
        result["sample_s"] = {"picograd": t1 - t0, "pytorch": t2 - t1}
        result["total_s"] = {k: result["train_s"][k] + result["sample_s"][k] for k in ("picograd", "pytorch")}
        result["fid"] = {"picograd": fid_ours, "pytorch": fid_theirs, "ratio": fid_ours / fid_theirs}
        result["inception_score"] = {"picograd": is_ours, "pytorch": is_theirs, "ratio": is_ours / is_theirs}
        result["floor_test_vs_train"] = {"fid": floor[0], "inception_score": floor[1]}
        print(f"sampling {args.samples}: picograd {t1 - t0:.1f} s, pytorch {t2 - t1:.1f} s")
        if args.resample:  # the same draws again, each sampler now warm
            t0 = time.perf_counter()
            ex.sample(args.samples, dev, progress=False)
            t1 = time.perf_counter()
            torch_sample(twin, args.samples, args.seed, dev)
            t2 = time.perf_counter()
            result["sample_again_s"] = {"picograd": t1 - t0, "pytorch": t2 - t1}
            print(f"sampling again: picograd {t1 - t0:.2f} s, pytorch {t2 - t1:.2f} s")
        print(f"fid picograd {fid_ours:.3f}, pytorch {fid_theirs:.3f} (ratio {fid_ours / fid_theirs:.3f}); is "
              f"picograd {is_ours:.3f}, pytorch {is_theirs:.3f}; floor (held-out vs training) fid {floor[0]:.3f} "
              f"is {floor[1]:.3f}")  # fmt: skip
    result["machine"] += f" (load average {os.getloadavg()[0]:.1f} at the end)"
    write_json(args.out, result)
    print(f"written to {args.out}")
    print("twin check:", "ok" if rel and max(rel) <= 1e-4 else "FAILED")


if __name__ == "__main__":
    main()
