"""The handwritten digits shared by ``cnn_digits.py``, ``ddpm_digits.py`` and their PyTorch twins: the data, its
fixed 80/20 split, the two sample-quality figures (FID and Inception Score on the digit classifier) and the plots.

``data/digits.csv.gz`` holds the 1,797 8x8 digits of the UCI "Optical Recognition of Handwritten Digits" set (the
copy scikit-learn ships as ``load_digits()``): one image a line, 64 pixels in 0..16 row by row, then the label.

Quality figures (numpy only; the classifier is passed in as a function, so picograd's and PyTorch's samples are
judged by the same network and the same code):

- FID (Heusel et al., "GANs trained by a two time-scale update rule", NeurIPS 2017): the Frechet distance between
  Gaussians fitted to two sets of features, ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, here on the
  penultimate features of the digit classifier instead of Inception-v3's pool features. ``Tr (S1 S2)^(1/2)`` is
  computed as ``Tr (S1^(1/2) S2 S1^(1/2))^(1/2)``, a symmetric positive semi-definite matrix, with ``eigh`` twice.
- Inception Score (Salimans et al., "Improved techniques for training GANs", NeurIPS 2016):
  ``exp(E_x KL(p(y|x) || p(y)))`` over the classifier's 10 classes: 1 for one class or uniform predictions, 10 at
  best.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "digits.csv.gz")
RESULTS = os.path.join(HERE, "..", "bench", "results")
SPLIT_SEED = 0
PIXEL_MAX = 16.0


@dataclass(frozen=True)
class Digits:
    """Images (N, 1, 8, 8) float32 in 0..16 and labels (N,) int64, split into train (80%) and test (20%)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(path: str = DATA, seed: int = SPLIT_SEED) -> Digits:
    """The 1,797 digits shuffled with ``seed`` and split 80/20 (1,437 train, 360 test). Raises ``ValueError``
    naming ``path`` when a line is not 65 integers with pixels in 0..16 and labels in 0..9."""
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    pixels_ok = rows.shape[1] == 65 and rows[:, :64].min() >= 0 and rows[:, :64].max() <= 16
    if not pixels_ok or not np.isin(rows[:, 64], range(10)).all():
        raise ValueError(f"{path}: expected lines of 64 pixels in 0..16 and a label 0-9, got shape {rows.shape}")
    images = rows[:, :64].reshape(-1, 1, 8, 8).astype(np.float32)
    labels = rows[:, 64].copy()
    order = np.random.default_rng(seed).permutation(len(rows))
    n = int(0.8 * len(rows))
    train, test = order[:n], order[n:]
    return Digits(images[train], labels[train], images[test], labels[test])


def to_unit(images: np.ndarray) -> np.ndarray:
    """Pixels 0..16 -> 0..1 (the classifier's input)."""
    return (images / PIXEL_MAX).astype(np.float32)


def to_signed(images: np.ndarray) -> np.ndarray:
    """Pixels 0..16 -> -1..1 (the diffusion model's data)."""
    return (images / (PIXEL_MAX / 2) - 1).astype(np.float32)


def signed_to_unit(images: np.ndarray) -> np.ndarray:
    """Samples in -1..1 (clipped) -> 0..1."""
    return ((np.clip(images, -1, 1) + 1) / 2).astype(np.float32)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """``batch_size`` random indices into ``n`` examples (drawn with replacement, one call per step)."""
    return rng.integers(0, n, batch_size)


# ---------------------------------------------------------------------------------------------------------------
# Sample quality


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between feature sets a (N, D) and b (M, D), in float64 (Heusel et al. 2017, their eq. 6)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


def inception_score(probs: np.ndarray) -> float:
    """exp(mean KL(p(y|x) || p(y))) of class probabilities (N, classes) (Salimans et al. 2016)."""
    p = np.asarray(probs, np.float64)
    marginal = p.mean(0, keepdims=True)
    kl = (p * (np.log(np.clip(p, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None)))).sum(1)
    return float(np.exp(kl.mean()))


Classify = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""images (N, 1, 8, 8) in 0..1 -> (penultimate features (N, D), class probabilities (N, 10)), numpy."""


def quality(classify: Classify, samples: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(FID of ``samples`` against ``reference``, IS of ``samples``), both image sets (N, 1, 8, 8) in 0..1."""
    f_s, p_s = classify(samples)
    f_r, _ = classify(reference)
    return frechet_distance(f_s, f_r), inception_score(p_s)


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(images: np.ndarray, path: str, titles: list[str] | None = None, columns: int = 8) -> bool:
    """Write images (N, 1, 8, 8) in 0..1 as a grid PNG (white background, dark ink), with optional titles; False
    (nothing written) without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * (1.1 if titles else 0.9)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str, title: str, ylabel: str) -> bool:
    """Write one line per named curve of (step, value) points; False (nothing written) without matplotlib. A
    curve named ``"train loss"`` is drawn thin, on a log scale when it is the only one on its axis."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    right = None
    for name, points in curves.items():
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        if name.startswith("train"):
            ax.plot(steps, values, lw=0.6, label=name)
        else:
            right = right or ax.twinx()
            right.plot(steps, values, "o-", color="C1", label=name)
            right.set_ylabel(name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    handles = ax.get_legend_handles_labels()
    if right is not None:
        extra = right.get_legend_handles_labels()
        handles = (handles[0] + extra[0], handles[1] + extra[1])
    ax.legend(*handles, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
