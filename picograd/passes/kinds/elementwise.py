"""The ``elementwise`` kind (and every kind without hooks of its own: ``movement``, ``random``, ``other``).

**Loops.** No nest of its own: ``pg-to-loops`` computes its ops at each index of the nest of their consumer, and
stores the kernel's outputs that no heavy op wrote in one ``scf.parallel`` per output shape.

**GPU** (``thread_per_point``, the strategy of every nest that no other strategy claims): the parallel dims are
linearized over a 1-D grid of 1-D blocks (``block`` threads at most, fewer for small nests, a multiple of 32);
thread ``blockIdx.x * blockDim.x + threadIdx.x`` computes one iteration point, guarded by a bounds check,
delinearized with divisions by the (constant) extents in ``i32`` when the nest has fewer than 2**31 points
(ptxas strength-reduces them).
"""

from __future__ import annotations

import math

from picograd.passes.ir_builder import affine, delinearize
from picograd.passes.kinds.base import GpuNest, KernelKind, inline_body


def thread_per_point(nest: GpuNest) -> tuple[int, int]:
    grid, threads, then, lin = nest.global_thread(math.prod(nest.extents))
    idx = delinearize(then, lin, nest.extents)
    ivs = [affine(then, j, lb, st) for j, (lb, st) in zip(idx, nest.dims, strict=True)]
    inline_body(nest.par, then, ivs)
    return grid, threads


KIND = KernelKind(
    name="elementwise",
    doc="pointwise ops, one nest per output shape, a thread per point",
    gpu={"thread_per_point": thread_per_point},
)
