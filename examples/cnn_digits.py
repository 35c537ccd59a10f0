"""A small convolutional network classifying the 8x8 handwritten digits, trained with picograd.

LeCun-style: two conv blocks (3x3 convolution with padding 1 and no bias -- BatchNorm shifts --, BatchNorm, ReLU,
2x2 max-pool: 8x8 -> 4x4 -> 2x2,
16 then 32 channels), then the head: flatten, Linear(128, 64), ReLU -- the 64 *penultimate features* that
``ddpm_digits.py`` computes its FID on -- and Linear(64, 10). Adam (lr 1e-3), batch 64 drawn at random from the
1,437 training digits (pixels scaled to 0..1), 500 steps, all in one ``@pg.compile`` train step (forward,
BatchNorm's running statistics, backward, update). Test accuracy on the 360 held-out digits every 100 steps (eval
mode: BatchNorm's running statistics). Writes a loss/accuracy plot and a grid of the misclassified test digits;
the last line is ``test_acc=<value>``.

The classifier that judges the diffusion samples is this script's default run, committed as
``examples/data/digits_cnn.pg``:

    python examples/cnn_digits.py --save examples/data/digits_cnn.pg
    python examples/cnn_digits.py --steps 0 --load examples/data/digits_cnn.pg   # evaluate the checkpoint
    pgc examples/cnn_digits.py --emit=ptx -o cnn.ptx                              # the train step as PTX
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs on shared cores (see gpt_shakespeare.py)

import numpy as np  # noqa: E402
import picograd.nn.functional as F  # noqa: E402

import picograd as pg  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import digits_data as dd  # noqa: E402

CHECKPOINT = os.path.join(HERE, "data", "digits_cnn.pg")
BATCH, STEPS, LR, SEED = 64, 500, 1e-3, 0
CHANNELS, HIDDEN, CLASSES = (16, 32), 64, 10


class CNN(pg.nn.Module):
    """x (B, 1, 8, 8) float32 in 0..1 -> logits (B, 10); ``features`` gives the 64 penultimate features."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2 = CHANNELS
        self.features = pg.nn.Sequential(
            pg.nn.Conv2d(1, c1, 3, padding=1, bias=False), pg.nn.BatchNorm2d(c1), pg.nn.ReLU(), pg.nn.MaxPool2d(2),
            pg.nn.Conv2d(c1, c2, 3, padding=1, bias=False), pg.nn.BatchNorm2d(c2), pg.nn.ReLU(), pg.nn.MaxPool2d(2),
            pg.nn.Flatten(), pg.nn.Linear(c2 * 2 * 2, HIDDEN), pg.nn.ReLU(),
        )  # fmt: skip
        self.head = pg.nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return self.head(self.features(x))


def make(seed: int, device: str = "cpu") -> tuple[CNN, pg.optim.Adam]:
    """The model initialised from ``seed`` (PyTorch's default initialisation) on ``device``, and its optimizer."""
    pg.manual_seed(seed)
    net = CNN().to(device)
    return net, pg.optim.Adam(net.parameters(), lr=LR)


model, opt = make(SEED)


@pg.compile(example_inputs=(pg.Spec((BATCH, 1, 8, 8)), pg.Spec((BATCH,), "int64")))
def train_step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
    """One Adam step on images x (B, 1, 8, 8) and labels y (B,) int64; returns the cross-entropy."""
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@pg.compile
def classify_step(x: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
    """(penultimate features (B, 64), class probabilities (B, 10)) of images x (B, 1, 8, 8) in 0..1."""
    features = model.features(x)
    return features, F.softmax(model.head(features), -1)


@pg.no_grad()
def classify(images: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``classify_step`` in eval mode on numpy images (N, 1, 8, 8) in 0..1: numpy (features, probabilities)."""
    was_training = model.training
    model.eval()
    features, probs = classify_step(pg.tensor(np.ascontiguousarray(images, np.float32), device=device))
    model.train(was_training)
    return features.numpy(), probs.numpy()


def load_classifier(path: str = CHECKPOINT, device: str = "cpu") -> dd.Classify:
    """The committed classifier (``path``, written by this script's ``--save``) as a ``digits_data.Classify``."""
    model.load_state_dict(pg.load(path)["model"])
    model.to(device)
    return lambda images: classify(images, device)


def accuracy(images: np.ndarray, labels: np.ndarray, device: str = "cpu") -> tuple[float, np.ndarray]:
    """(accuracy, predicted labels) of the model on ``images`` (0..1)."""
    predicted = classify(images, device)[1].argmax(1)
    return float((predicted == labels).mean()), predicted


def main() -> None:
    global model, opt
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--save", help="write a checkpoint (model, optimizer, step) here after training")
    parser.add_argument("--load", help="start from this checkpoint")
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--plot", default=os.path.join(HERE, "cnn_digits_loss.png"))
    parser.add_argument("--errors", default=os.path.join(HERE, "cnn_digits_errors.png"))
    args = parser.parse_args()

    data = dd.load_digits()
    x_train, x_test = dd.to_unit(data.x_train), dd.to_unit(data.x_test)
    dev = args.device
    model, opt = make(args.seed, dev)
    start = 0
    if args.load:
        state = pg.load(args.load)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(x_train):,} training and "
          f"{len(x_test):,} test digits")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    losses: list[tuple[int, float]] = []
    accs: list[tuple[int, float]] = []
    if args.steps:
        from tqdm import tqdm

        t0 = time.perf_counter()
        bar = tqdm(range(start, start + args.steps), mininterval=1.0, desc="train")
        for it in bar:
            idx = dd.batches(len(x_train), BATCH, rng)
            loss = train_step(pg.tensor(x_train[idx], device=dev), pg.tensor(data.y_train[idx], device=dev))
            losses.append((it + 1, loss.item()))
            if (it + 1 - start) % args.eval_interval == 0 or it + 1 == start + args.steps:
                accs.append((it + 1, accuracy(x_test, data.y_test, dev)[0]))
                bar.set_postfix(loss=f"{losses[-1][1]:.4f}", test_acc=f"{accs[-1][1]:.4f}")
        print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s")
        curves = {"train loss": losses, "test accuracy": accs}
        if dd.plot_curves(curves, args.plot, f"CNN on 8x8 digits, picograd on {dev}", "cross-entropy"):
            print(f"loss/accuracy plot written to {args.plot}")
    if args.save:
        pg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": start + args.steps}, args.save)
        print(f"checkpoint written to {args.save}")
    acc, predicted = accuracy(x_test, data.y_test, dev)
    wrong = np.flatnonzero(predicted != data.y_test)
    titles = [f"{data.y_test[i]} as {predicted[i]}" for i in wrong]
    if len(wrong) and dd.save_grid(x_test[wrong], args.errors, titles):
        print(f"{len(wrong)} misclassified test digits (label as prediction) written to {args.errors}")
    print(f"test_acc={acc:.4f}")


if __name__ == "__main__":
    main()
