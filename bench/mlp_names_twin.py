"""PyTorch twin of examples/mlp_names.py: the same Bengio MLP and recipe in torch, started from picograd's initial
``state_dict`` and fed the same batches in the same process.

Model: Embedding(27, 10) -> flatten (B, 30) -> Linear(30, 200) -> tanh -> Linear(200, 27), cross-entropy; 11,897
float32 parameters with picograd's names (``emb``, ``hidden``, ``out``). Recipe (makemore part 2): SGD, batch 32,
learning rate 0.1 then 0.01 from step ``steps // 2``, 200,000 steps by default, seed 42 (the split, the initial
weights and the batch indices, drawn with ``numpy.random.default_rng(seed)`` as the example does).

Floors per step at batch B (see bench/train_step.py): ~68.4 k x B FLOPs (forward 22.8 k x B, backward twice that),
2.2 MFLOP at B = 32, and ~0.24 MB + 3.1 kB x B of memory traffic: microseconds on either device, so a step is bound
by host work and kernel launches, which is what the per-step times measure.

Both train step by step, interleaved: each step runs picograd's compiled train step and then PyTorch eager's on the
same batch, each timed with ``time.perf_counter`` around the step, including setting the learning rate, building its
input tensors and reading the loss back (``.item()``). On the CPU both build the batch from numpy (picograd through
``mlp_names.train_step``); with ``--device cuda`` both keep the training set on the GPU, uploaded once, and upload
only the batch's indices, gathering there (picograd through ``mlp_names.train_step_indexed``, the example's GPU
path; PyTorch without TF32). Reported: the largest relative difference of the first 50 losses (float32), both final
validation losses (mean cross-entropy over the validation split), the median per-step time of each after the first
100 steps, the first step of each, the wall time and the losses every 10,000 steps. PyTorch runs on ``--threads``
threads (1 by default). ``--compile`` runs the twin's forward under ``torch.compile``. Writes
``bench/results/mlp_names_twin.json`` (``mlp_names_twin_cuda.json`` with ``--device cuda``).

    python bench/mlp_names_twin.py                # the default 200,000 steps
    python bench/mlp_names_twin.py --steps 2000   # a quick agreement check
    python bench/mlp_names_twin.py --device cuda --compile
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench/names_twin.py (set before numpy loads OpenBLAS)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from results_io import host_fields, twin_timings, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

LR = 0.1


def torch_twin(state: dict[str, np.ndarray]):
    """The torch model with picograd's parameter names, loaded from ``state``."""
    import mlp_names as ex
    import torch

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(ex.VOCAB, ex.EMBED)
            self.hidden = torch.nn.Linear(ex.BLOCK_SIZE * ex.EMBED, ex.HIDDEN)
            self.out = torch.nn.Linear(ex.HIDDEN, ex.VOCAB)

        def forward(self, x):
            e = self.emb(x).reshape(x.shape[0], ex.BLOCK_SIZE * ex.EMBED)
            return self.out(torch.tanh(self.hidden(e)))

    model = MLP()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="PyTorch's CPU threads (default 1: on a busy 2-core machine two threads wait on each other)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="the twin's forward under torch.compile")
    parser.add_argument("--out", help="JSON results (default bench/results/mlp_names_twin[_cuda].json)")
    args = parser.parse_args()
    dev = args.device

    import mlp_names as ex
    import torch
    from tqdm import tqdm

    import picograd as pg

    torch.set_num_threads(args.threads)
    ex.model, ex.opt = ex.make(args.seed, "sgd", LR, dev)  # as the example's main(): its steps read these globals
    tmodel = torch_twin(ex.model.state_dict()).to(dev)
    topt = torch.optim.SGD(tmodel.parameters(), lr=LR)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as picograd's
    forward = torch.compile(tmodel) if args.compile else tmodel

    train_words, val_words, _ = ex.split(ex.load_words(), args.seed)
    xtr, ytr = ex.build_dataset(train_words)
    xva, yva = ex.build_dataset(val_words)
    if dev == "cuda":  # the training set uploaded once, for both: a step uploads only its indices
        xtr_t, ytr_t = pg.tensor(xtr, device=dev), pg.tensor(ytr, device=dev)
        xtr_torch, ytr_torch = torch.from_numpy(xtr).to(dev), torch.from_numpy(ytr).to(dev)

    rng = np.random.default_rng(args.seed)
    pg_losses, torch_losses, pg_ms, torch_ms = [], [], [], []
    start = time.perf_counter()
    for step in tqdm(range(args.steps), mininterval=2.0, desc="mlp"):
        lr = LR if step < args.steps // 2 else LR / 10
        ix = rng.integers(0, len(xtr), size=ex.BATCH)
        t0 = time.perf_counter()
        ex.opt.param_groups[0]["lr"] = lr
        if dev == "cpu":
            loss = ex.train_step(pg.tensor(xtr[ix]), pg.tensor(ytr[ix]))
        else:
            loss = ex.train_step_indexed(xtr_t, ytr_t, pg.tensor(ix, device=dev))
        pg_losses.append(loss.item())
        t1 = time.perf_counter()
        topt.param_groups[0]["lr"] = lr
        if dev == "cpu":
            x, y = torch.from_numpy(xtr[ix]), torch.from_numpy(ytr[ix])
        else:
            ix_t = torch.from_numpy(ix).to(dev)
            x, y = xtr_torch[ix_t], ytr_torch[ix_t]
        tloss = torch.nn.functional.cross_entropy(forward(x), y)
        topt.zero_grad()
        tloss.backward()
        topt.step()
        torch_losses.append(tloss.item())
        t2 = time.perf_counter()
        pg_ms.append(1e3 * (t1 - t0))
        torch_ms.append(1e3 * (t2 - t1))
    wall = time.perf_counter() - start

    pg_val = ex.eval_loss(pg.tensor(xva, device=dev), pg.tensor(yva, device=dev)).item()
    with torch.no_grad():  # eager: the same weights, without a recompile for the validation set's shape
        xva_t, yva_t = torch.from_numpy(xva).to(dev), torch.from_numpy(yva).to(dev)
        torch_val = torch.nn.functional.cross_entropy(tmodel(xva_t), yva_t).item()
    warm = 100 if args.steps > 200 else 0
    result = {
        "benchmark": f"examples/mlp_names.py against its PyTorch twin (batch {ex.BATCH}, SGD lr {LR} then {LR / 10})",
        "device": dev,
        "torch_compile": args.compile,
        **host_fields(torch),
        "steps": args.steps,
        "seed": args.seed,
        "val_loss": {"picograd": pg_val, "pytorch": torch_val, "difference": pg_val - torch_val},
        **twin_timings(pg_losses, torch_losses, pg_ms, torch_ms, warm),
        "wall_s": wall,  # both sides, interleaved
        "losses_every_10000": {"picograd": pg_losses[::10_000], "pytorch": torch_losses[::10_000]},
    }
    suffix = "_cuda" if dev == "cuda" else ""
    out = args.out or os.path.join(HERE, "results", f"mlp_names_twin{suffix}.json")
    write_json(out, result)
    med = result["median_ms_per_step"]
    if pg_ms:
        diff = result["max_rel_diff_first_50_losses"]
        print(f"first {min(50, args.steps)} losses: max relative difference {diff:.2e}")
        print(f"ms/step (median): picograd {med['picograd']:.3f}, pytorch {med['pytorch']:.3f}")
    print(f"written to {out}")
    print(f"val_loss picograd={pg_val:.4f} pytorch={torch_val:.4f}")


if __name__ == "__main__":
    main()
