"""The ``gather`` kind (``pg.gather``: ``out[..., i, ...] = input[..., indices[i], ...]`` along ``dim``).

**Loops.** No nest of its own: a gather is an index map computed inside its consumer's loop body, like a movement
op: the index tensor is read at the consumer's index (its ``rank`` dims starting at ``dim``), cast to ``index``,
and the input read there. Out-of-range indices are caught before, by ``pg.check_index``.

**GPU.** ``thread_per_point`` (the ``elementwise`` kind's mapping).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, TensorType
from xdsl.ir import SSAValue

from picograd.dialects import pg
from picograd.passes.kinds.base import KernelKind
from picograd.passes.kinds.elementwise import thread_per_point

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering


def gather_at(lowering: KernelLowering, op: pg.GatherOp, idx: tuple[SSAValue, ...]) -> SSAValue:
    """The gathered element at ``idx`` of the result."""
    t = op.indices.type
    assert isinstance(t, TensorType)
    d, ri = op.dim_index, len(t.get_shape())
    pos = lowering.convert(arith.IndexCastOp, lowering.at(op.indices, idx[d : d + ri]), IndexType())
    return lowering.at(op.input, (*idx[:d], pos, *idx[d + ri :]))


KIND = KernelKind(
    name="gather",
    doc="pg.gather as an index map inside its consumer's nest, a thread per point",
    at_index={pg.GatherOp: gather_at},
    gpu={"thread_per_point": thread_per_point},
)
