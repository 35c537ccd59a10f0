"""The names data set shared by the names examples (``mlp_names.py``, ``names.py``) and their PyTorch twins.

``data/names.txt`` is makemore's list of 32k names. Characters are 27 tokens: '.' is 0 (the start and end of a
name), 'a'-'z' are 1..26. The words are shuffled with a seed and split 80/10/10 by words.
"""

from __future__ import annotations

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 27


def load_words(path: str = os.path.join(HERE, "data", "names.txt")) -> list[str]:
    with open(path) as f:
        return [w.strip() for w in f if w.strip()]


def encode(ch: str) -> int:
    """'.' is 0, a-z are 1..26."""
    return 0 if ch == "." else ord(ch) - ord("a") + 1


def decode(i: int) -> str:
    return "." if i == 0 else chr(ord("a") + i - 1)


def split(words: list[str], seed: int) -> tuple[list[str], list[str], list[str]]:
    """Shuffle the words with ``seed`` and split them 80/10/10."""
    order = np.random.default_rng(seed).permutation(len(words))
    shuffled = [words[i] for i in order]
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return shuffled[:n1], shuffled[n1:n2], shuffled[n2:]


def build_sequences(words: list[str], block: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per word, as makemore: inputs X (N, block) start with token 0 followed by the word's tokens, then
    0s; targets Y (N, block) hold the word's tokens, then 0 (the end), then -1 (no target: ``ignore_index=-1``).
    Both int64. Raises ``ValueError`` for a word of ``block`` characters or more."""
    x = np.zeros((len(words), block), dtype=np.int64)
    y = np.full((len(words), block), -1, dtype=np.int64)
    for i, w in enumerate(words):
        if len(w) >= block:
            raise ValueError(f"the word {w!r} has {len(w)} characters: block {block} holds at most {block - 1}")
        tokens = [encode(c) for c in w]
        x[i, 1 : 1 + len(tokens)] = tokens
        y[i, : len(tokens)] = tokens
        y[i, len(tokens)] = 0
    return x, y


def plot_losses(losses: list[float], path: str, title: str) -> bool:
    """Write the training-loss curve (log10, moving average) to ``path``; False (nothing written) without
    matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(len(losses))
    window = max(1, len(losses) // 200)
    smooth = np.convolve(np.log10(losses), np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps[: len(smooth)], smooth)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 training loss (moving average)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
