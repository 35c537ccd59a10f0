"""The ``elementwise`` kind (and every kind without hooks of its own: ``movement``, ``random``, ``other``).

**Loops.** No nest of its own: ``pg-to-loops`` computes its ops at each index of the nest of their consumer, and
stores the kernel's outputs that no heavy op wrote in one ``scf.parallel`` per output shape.

**GPU** (``thread_per_point``, the strategy of every nest that no other strategy claims): the parallel dims are
linearized over a 1-D grid of 1-D blocks (``block`` threads at most, fewer for small nests, a multiple of 32);
thread ``blockIdx.x * blockDim.x + threadIdx.x`` computes one iteration point, guarded by a bounds check,
delinearized with divisions by the (constant) extents in ``i32`` when the nest has fewer than 2**31 points
(ptxas strength-reduces them). A load or store whose row-major offset is the thread's linear index itself (plus a
constant: the buffer is read in the nest's own order, as most pointwise ops and casts read theirs) indexes a 1-D view
of its buffer with that linear index instead, so a nest whose accesses are all of that kind divides nothing: the
GPT's GELU kernel spent a third of its instructions taking the index apart and putting it back together.

**Unrolled** (``thread_per_point`` with ``unroll = u``, the GPU pipeline's ``u = 4`` for big elementwise and movement
kernels, :func:`unroll_dim`): ``pg-to-loops`` splits the nest's outermost dim divisible by ``u`` into ``u`` chunks,
and each iteration computes the same point of every chunk, all its loads before its stores. A thread then has ``u``
points' loads in flight at once (ptxas cannot move a load above a store to memory it does not know apart): a
one-point thread of a bf16 kernel has too few bytes in flight to cover DRAM's latency. Measured on an H100
(2026-12-06, the GPT's bf16 step, Nsight Compute): a point a thread, the bf16 GELU, its gradient and the heads' copies
moved 1.2-1.5 TB/s, where the f32 kernels of more bytes a point moved 2.4-2.5; 4 points a thread, 2.1-2.7 TB/s, the
step's kernels 10.20 -> 9.34 ms. Adjacent threads still take adjacent points: every load and store of a chunk is as
coalesced as before, and a flat access stays flat (its offset is ``lin + k * chunk``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import ArrayAttr, IndexType, IntegerAttr, MemRefType, NoneAttr, i32, i64
from xdsl.ir import Block, SSAValue
from xdsl.transforms.dead_code_elimination import is_trivially_dead

from picograd.passes.ir_builder import Builder, affine, delinearize
from picograd.passes.kinds.base import GpuNest, KernelKind, inline_body

UNROLL_MIN_POINTS = 1 << 20
"""The fewest points of a nest that ``unroll`` applies to: at ``u = 4`` a thread each for at least 262,144 of them,
about what the H100's 132 SMs hold at once (2,048 threads each: 270,336)."""


def unroll_dim(shape: Sequence[int], unroll: int) -> int | None:
    """The dim of a nest over ``shape`` that an ``unroll`` schedule splits into ``unroll`` chunks: the outermost
    dim divisible by ``unroll`` (the chunks far apart, each thread's accesses as coalesced as one point's), or None
    when ``unroll`` is 1 or no dim divides (the nest then computes a point an iteration)."""
    if unroll <= 1:
        return None
    return next((d for d, n in enumerate(shape) if n and n % unroll == 0), None)


def worth_unrolling(shape: Sequence[int], unroll: int) -> bool:
    """``pg-schedule``'s rule: a nest over ``shape`` takes ``unroll`` when it has at least
    :data:`UNROLL_MIN_POINTS` points and a dim to split (:func:`unroll_dim`)."""
    return math.prod(shape) >= UNROLL_MIN_POINTS and unroll_dim(shape, unroll) is not None


def thread_per_point(nest: GpuNest) -> tuple[int, int]:
    total = math.prod(nest.extents)
    grid, threads, then, lin = nest.global_thread(total)
    if len(nest.extents) > 1:
        flatten_accesses(nest, then, lin, total)
    if any(iv.uses for iv in nest.par.body.block.args):
        idx = delinearize(then, lin, nest.extents)
        ivs = [affine(then, j, lb, st) for j, (lb, st) in zip(idx, nest.dims, strict=True)]
        inline_body(nest.par, then, ivs)
    else:  # every access flat: no point needs its indices
        hint = lin.name_hint
        inline_body(nest.par, then, [lin] * len(nest.extents))
        lin.name_hint = hint  # not the name of an induction variable it stood in for
    return grid, threads


def flatten_accesses(nest: GpuNest, b: Builder, lin: SSAValue, total: int) -> None:
    """Rewrite each ``memref.load``/``store`` of ``nest``'s body (its own block, not nested loops) on a static
    row-major buffer whose offset is ``lin + c`` (:func:`flat_offset`) to ``flat[lin + c]``, ``flat`` its buffer's
    ``memref.collapse_shape`` to 1-D, built by ``b`` before the body with the index (``lin`` through an ``i32`` cast
    when the nest has fewer than 2**31 points: 32-bit address arithmetic); then erase the index arithmetic left
    unused."""
    block = nest.par.body.block
    flat_index: SSAValue | None = None
    flat: dict[SSAValue, SSAValue] = {}
    for op in list(block.ops):
        if not isinstance(op, memref.LoadOp | memref.StoreOp):
            continue
        t = op.memref.type
        if not (isinstance(t, MemRefType) and isinstance(t.layout, NoneAttr)):
            continue
        c = flat_offset(op.indices, t.get_shape(), block, nest.dims, nest.extents)
        if c is None:
            continue
        if flat_index is None:
            flat_index = b.cast(b.cast(lin, i32), IndexType()) if total < 2**31 else lin
        if op.memref not in flat:
            flat[op.memref] = op.memref if len(t.get_shape()) == 1 else b.v(collapse_to_1d(op.memref, t))
        at = flat_index if c == 0 else b.v(arith.AddiOp(flat_index, b.index(c)))
        if isinstance(op, memref.LoadOp):
            load = memref.LoadOp.get(flat[op.memref], [at])
            op.res.replace_all_uses_with(load.res)
            new_op: memref.LoadOp | memref.StoreOp = load
        else:
            new_op = memref.StoreOp.get(op.value, flat[op.memref], [at])
        new_op.location = op.location
        block.insert_op_before(new_op, op)
        block.erase_op(op)
    if flat:
        for op in reversed(list(block.ops)):
            if is_trivially_dead(op):
                block.erase_op(op)


def collapse_to_1d(buf: SSAValue, t: MemRefType) -> memref.CollapseShapeOp:
    """``memref.collapse_shape`` of the static row-major ``buf`` (of type ``t``) into one dim."""
    dims = ArrayAttr([ArrayAttr([IntegerAttr(d, i64) for d in range(len(t.get_shape()))])])
    flat_type = MemRefType(t.get_element_type(), [math.prod(t.get_shape())])
    return memref.CollapseShapeOp(operands=[buf], result_types=[flat_type], properties={"reassociation": dims})


def flat_offset(
    indices: Sequence[SSAValue], shape: Sequence[int], block: Block, dims: Sequence[tuple[int, int]],
    extents: Sequence[int],
) -> int | None:  # fmt: skip
    """The constant ``c`` when the row-major offset of ``indices`` into ``shape`` is ``lin + c`` for the nest's
    linear index ``lin`` (its points ``lb + step * j`` over ``extents``, row-major), else None: each index an affine
    form (``arith.addi``, ``arith.muli`` by a constant, constants) of ``block``'s induction variables."""
    if any(d < 0 for d in shape):
        return None
    ivs = list(block.args)
    coeffs = [0] * len(ivs)
    const = 0
    stride = 1
    for idx, size in zip(reversed(indices), reversed(shape), strict=True):
        form = _iv_form(idx, ivs)
        if form is None:
            return None
        for k, c in form.items():
            if k is None:
                const += c * stride
            else:
                coeffs[k] += c * stride
        stride *= size
    want = 1
    for k in range(len(ivs) - 1, -1, -1):
        lb, step = dims[k]
        if extents[k] > 1 and coeffs[k] * step != want:
            return None
        const += coeffs[k] * lb
        want *= extents[k]
    return const


def _iv_form(v: SSAValue, ivs: Sequence[SSAValue]) -> dict[int | None, int] | None:
    """``v`` as ``{iv position or None (the constant): coefficient}``, or None if it is not such a form."""
    if v in ivs:
        return {ivs.index(v): 1}
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return {None: int(owner.value.value.data)}
    if isinstance(owner, arith.AddiOp):
        a, b = _iv_form(owner.lhs, ivs), _iv_form(owner.rhs, ivs)
        if a is None or b is None:
            return None
        return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}
    if isinstance(owner, arith.MuliOp):
        a, b = _iv_form(owner.lhs, ivs), _iv_form(owner.rhs, ivs)
        if a is None or b is None:
            return None
        for x, y in ((a, b), (b, a)):
            if set(y) <= {None}:
                return {k: c * y.get(None, 0) for k, c in x.items()}
    return None


KIND = KernelKind(
    name="elementwise",
    doc="pointwise ops, one nest per output shape, a thread per point",
    gpu={"thread_per_point": thread_per_point},
)
