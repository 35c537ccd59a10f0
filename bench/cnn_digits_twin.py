"""The PyTorch twin of examples/cnn_digits.py: the same CNN and recipe in PyTorch, started from picograd's initial
``state_dict`` (BatchNorm's buffers included) and fed the same batches, in the same process, step by step.

Checks that the first ``--compare`` training losses agree within 1e-4 relative (float32) and reports both final
test accuracies (eval mode, BatchNorm's running statistics) and the per-step CPU time of both (wall clock of one
step including building its input tensors and reading the loss, median after ``--warmup`` steps). Writes
``bench/results/cnn_digits_cpu.json``. ``--device cuda`` runs both on the GPU (PyTorch without TF32; writes
``cnn_digits_cuda.json``), ``--compile`` the twin's forward under ``torch.compile``.

    python bench/cnn_digits_twin.py            # the example's 500 steps
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
from gpt_shakespeare_twin import versions  # noqa: E402

import picograd as pg  # noqa: E402

import cnn_digits as ex  # noqa: E402  isort: skip
import digits_data as dd  # noqa: E402  isort: skip
from results_io import write_json  # noqa: E402


class TorchCNN(nn.Module):
    """``cnn_digits.CNN`` in PyTorch, with its module names (so that the state_dicts line up)."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2 = ex.CHANNELS
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 2 * 2, ex.HIDDEN), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(ex.HIDDEN, ex.CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def from_picograd(model: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    """Load picograd's state_dict (parameters and buffers, PyTorch's names) into ``model``, strictly."""
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=ex.STEPS)
    parser.add_argument("--seed", type=int, default=ex.SEED)
    parser.add_argument("--compare", type=int, default=50, help="first losses that must agree within 1e-4")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch CPU threads (1: shared 2-core machine)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="the twin's forward under torch.compile")
    parser.add_argument("--out", help="default: bench/results/cnn_digits_<device>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    dev = args.device
    args.out = args.out or os.path.join(HERE, "results", f"cnn_digits_{dev}.json")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as picograd's

    data = dd.load_digits()
    x_train, x_test = dd.to_unit(data.x_train), dd.to_unit(data.x_test)
    ex.model, ex.opt = ex.make(args.seed, dev)
    twin = from_picograd(TorchCNN(), ex.model.state_dict()).to(dev)
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR, foreach=False)
    forward = torch.compile(twin) if args.compile else twin
    rng = np.random.default_rng(args.seed)

    from tqdm import tqdm

    ours, theirs, t_ours, t_theirs = [], [], [], []
    for _ in tqdm(range(args.steps), mininterval=2.0, desc="twin"):
        idx = dd.batches(len(x_train), ex.BATCH, rng)
        x, y = x_train[idx], data.y_train[idx]
        t0 = time.perf_counter()
        ours.append(ex.train_step(pg.tensor(x, device=dev), pg.tensor(y, device=dev)).item())
        t1 = time.perf_counter()
        loss = TF.cross_entropy(forward(torch.from_numpy(x).to(dev)), torch.from_numpy(y).to(dev))
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        theirs.append(loss.item())
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_theirs.append(t2 - t1)

    n = min(args.compare, args.steps)
    rel = [abs(a - b) / abs(b) for a, b in zip(ours[:n], theirs[:n], strict=True)]
    acc_ours = ex.accuracy(x_test, data.y_test, dev)[0]
    twin.eval()
    with torch.no_grad():
        acc_theirs = float((twin(torch.from_numpy(x_test).to(dev)).argmax(1).cpu().numpy() == data.y_test).mean())
    state = ex.model.state_dict()
    buffers = {k: float(np.abs(np.array(state[k]) - v.cpu().numpy()).max()) for k, v in twin.state_dict().items()
               if "running" in k}  # fmt: skip
    med = {k: 1e3 * statistics.median(v[args.warmup :] or v) for k, v in (("ours", t_ours), ("theirs", t_theirs))}
    result = {
        "benchmark": "examples/cnn_digits.py, picograd vs its PyTorch twin (same process, same batches)",
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
        "first_losses_max_rel_diff": max(rel),
        "compared_losses": n,
        "test_acc": {"picograd": acc_ours, "pytorch": acc_theirs},
        "running_stats_max_abs_diff": buffers,
        "ms_per_step_median": {"picograd": med["ours"], "pytorch": med["theirs"]},
        "wall_s": {"picograd": sum(t_ours), "pytorch": sum(t_theirs)},
        "losses_first": {"picograd": ours[:n], "pytorch": theirs[:n]},
    }
    write_json(args.out, result)
    print(f"first {n} losses: max relative difference {max(rel):.2e} (bound 1e-4)")
    print(f"test_acc picograd {acc_ours:.4f}, pytorch {acc_theirs:.4f}; running stats max |diff| "
          f"{max(buffers.values(), default=float('nan')):.2e}")  # fmt: skip
    print(f"ms/step (median): picograd {med['ours']:.2f}, pytorch {med['theirs']:.2f}; written to {args.out}")
    print("twin check:", "ok" if max(rel) <= 1e-4 else "FAILED")


if __name__ == "__main__":
    main()
