"""The global random generator: a seed and a Philox counter offset, both held as 0-d int64 tensors.

``pg.random`` ops read both and the generator advances the offset by the counters a draw consumes
(``philox.counters_needed``). Eagerly the new offset is computed at once; while ``@pg.compile`` traces, the
advance is recorded as an op and written back after each replay, so every call of a compiled step draws fresh
numbers and the step stays a pure function of its inputs.

A draw runs on the device asked for; seed and offset are 0-d tensors, which join ops on any device. A compiled step
on the GPU writes the offset back as a device buffer, so it stays there between calls (no copy per step); an eager
draw afterwards reads it back to the host.
"""

from __future__ import annotations

import numpy as np

from picograd.dialects.philox import counters_needed
from picograd.frontend import dtypes
from picograd.frontend.dtypes import DType
from picograd.frontend.graph import STATE
from picograd.frontend.tensor import Tensor, record
from picograd.runtime.device import CPU, Device


class Generator:
    """Philox 4x32-10 generator state (seed, offset) as tensors; see ``picograd.dialects.philox``."""

    def __init__(self, seed: int = 0):
        self.seed = Tensor(np.array(seed, dtype=np.int64))
        self.offset = Tensor(np.array(0, dtype=np.int64))

    def manual_seed(self, seed: int) -> None:
        if STATE.trace is not None:  # inside a compiled step: every call reseeds, as eager code does
            self.seed._assign(Tensor(np.array(int(seed), dtype=np.int64)))
            self.offset._assign(Tensor(np.array(0, dtype=np.int64)))
            return
        self.seed._set_buffer(np.array(int(seed), dtype=np.int64))
        self.offset._set_buffer(np.array(0, dtype=np.int64))

    def draw(self, distribution: str, shape: tuple[int, ...], dtype: DType, device: Device = CPU) -> Tensor:
        """Record a ``pg.random`` op of ``shape`` on ``device`` and advance the offset."""
        out = record("random", [self.seed, self.offset], (distribution,), shape, dtype, device)
        step = counters_needed(int(np.prod(shape, dtype=np.int64)))
        if STATE.trace is not None:
            self.offset._assign(self.offset + step)
        else:
            offset = self.offset.numpy()
            self.offset._set_buffer(np.array(int(offset) + step, dtype=np.int64))
        return out


default_generator = Generator(0)


def manual_seed(seed: int) -> None:
    """Seed the global generator (as ``torch.manual_seed``); the stream restarts at offset 0."""
    default_generator.manual_seed(seed)


def draw(distribution: str, shape: tuple[int, ...], dtype: DType = dtypes.float32, device: Device = CPU) -> Tensor:
    """Draw from the global generator (see ``Generator.draw``)."""
    return default_generator.draw(distribution, shape, dtype, device)
