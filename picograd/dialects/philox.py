"""Philox 4x32-10, the counter-based random number generator of ``pg.random``, in numpy.

Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), section 3: ten rounds of
two 32x32->64-bit multiplies with a Weyl-sequence key schedule. Element ``i`` of a draw at ``offset`` uses the
128-bit counter ``(offset + i // 4, 0)`` (low word first) and lane ``i % 4`` of the output; the 64-bit seed is the
key. A draw of ``n`` elements therefore consumes ``ceil(n / 4)`` counters: the caller advances its offset by that.
The GPU backend implements the same function, so both draw the same bits.
"""

from __future__ import annotations

import numpy as np

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox4x32(counters: np.ndarray, seed: int) -> np.ndarray:
    """Philox 4x32-10 of each 64-bit counter (as the counter words ``(lo, hi, 0, 0)``) under ``seed``.

    counters: uint64 array of shape (n,). Returns uint32 array of shape (n, 4).
    """
    # Each word in a uint64 holding a value below 2**32, so that a round is six passes over the data into buffers
    # made once (a 32x32-bit product fits; no conversions): this draws a model's initial weights.
    c0 = counters.astype(np.uint64)
    c1 = c0 >> _SHIFT
    c0 &= _LO
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    p0 = np.empty_like(c0)
    p1 = np.empty_like(c0)
    k0 = seed & 0xFFFFFFFF
    k1 = (seed >> 32) & 0xFFFFFFFF
    for r in range(10):
        if r:
            k0 = (k0 + int(_W0)) & 0xFFFFFFFF
            k1 = (k1 + int(_W1)) & 0xFFFFFFFF
        np.multiply(c0, _M0, out=p0)
        np.multiply(c2, _M1, out=p1)
        np.right_shift(p1, _SHIFT, out=c0)  # c0 = hi(M1 * c2) ^ c1 ^ k0
        c0 ^= c1
        c0 ^= np.uint64(k0)
        np.right_shift(p0, _SHIFT, out=c2)  # c2 = hi(M0 * c0) ^ c3 ^ k1
        c2 ^= c3
        c2 ^= np.uint64(k1)
        np.bitwise_and(p1, _LO, out=c1)  # c1 = lo(M1 * c2)
        np.bitwise_and(p0, _LO, out=c3)  # c3 = lo(M0 * c0)
    out = np.empty((c0.shape[0], 4), np.uint32)
    for lane, word in enumerate((c0, c1, c2, c3)):
        out[:, lane] = word
    return out


def counters_needed(n: int) -> int:
    """Counters (offset advance) consumed by a draw of ``n`` elements."""
    return (n + 3) // 4


def random_bits(n: int, seed: int, offset: int) -> np.ndarray:
    """The first ``n`` uint32 words of the stream at ``offset`` (element ``i``: counter ``offset + i // 4``, lane
    ``i % 4``)."""
    counters = np.arange(counters_needed(n), dtype=np.uint64) + np.uint64(offset)
    return philox4x32(counters, seed).reshape(-1)[:n]


def uniform(shape: tuple[int, ...], seed: int, offset: int, dtype: np.dtype) -> np.ndarray:
    """Uniform floats in [0, 1): the top 24 bits of each word times 2**-24 (exact in float32)."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = random_bits(n, seed, offset)
    return ((bits >> np.uint32(8)).astype(np.float64) * 2.0**-24).astype(dtype).reshape(shape)


def normal(shape: tuple[int, ...], seed: int, offset: int, dtype: np.dtype) -> np.ndarray:
    """Standard normal floats by Box-Muller (Box and Muller, 1958) on lanes (0, 1) and (2, 3) of each counter:
    ``r = sqrt(-2 ln(1 - u0))``, ``z0 = r cos(2 pi u1)``, ``z1 = r sin(2 pi u1)``; ``1 - u0`` lies in (0, 1]."""
    n = int(np.prod(shape, dtype=np.int64))
    words = random_bits(counters_needed(n) * 4, seed, offset).reshape(-1, 2, 2)
    u = (words >> np.uint32(8)).astype(np.float64) * 2.0**-24
    r = np.sqrt(-2.0 * np.log1p(-u[:, :, 0]))
    theta = 2.0 * np.pi * u[:, :, 1]
    z = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1).reshape(-1)[:n]
    return z.astype(dtype).reshape(shape)
