"""``pg-decompose-conv``: the reference lowering of ``pg.conv`` into ``pg`` ops, run before kernel formation so that
the loop, GPU and PTX stages need nothing new. The convolution becomes im2col and one (batched over groups)
matmul (Chellapilla et al., "High performance convolutional neural networks for document processing", 2006), with
the channels last so that the im2col matrix is made by one gather whose rows are runs of contiguous channels:

- ``pg.permute`` of the input (N, C, *S) to (N, *S, C), and ``pg.pad`` of its spatial dims by ``pad_low``/
  ``pad_high``;
- the spatial dims flattened to one, (N, P, C), and one ``pg.gather`` of the windows along it with the (Q, K) index
  ``sum_i (q_i stride_i + k_i dilation_i) * prod(padded dims after i)`` (``pg.iota`` arithmetic over
  (*Q, *K)), giving (N, Q, K, C): as (N * Q, K * C), the im2col matrix itself (a view: no copy beyond the gather;
  with groups, a permute to (G, N * Q, K * C/G));
- the weight (O, C/G, *K) as (G, O/G, K * C/G), read transposed by ``pg.matmul``, then a reshape/permute of the
  product (G, N * Q, O/G) to (N, O, *Q).

Moving the channels last costs two copies of the input's size; gathering the windows of each spatial dim in turn
(channels first) copied K_1 times and then prod(K) times the input, and the permute to the im2col layout another
prod(K) times.

A weight gradient (``pg-autodiff``'s correlation of the input, batch and channels swapped, with the output
gradient, groups 1) is recognized and lowered in the forward's layout instead: ``dW (O, K * C) = g (O, N * Q) @
cols (N * Q, K * C)``, with ``cols`` the forward's channels-last im2col of the input and ``g`` the gradient as
(O, N, *Q); the correlation taken literally gathers a batch-innermost im2col from the input permuted to (C, *S, N),
whose permutes (stride-128 reads) and gather cost about twice the product.

Autodiff runs before it and keeps the op whole (its vjp is convolutions again); an implicit-GEMM schedule would
replace this pass for the GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, TensorType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from picograd.dialects import pg
from picograd.dialects.pg import shape_of
from picograd.passes.autodiff import Builder


def _window_index(
    b: Builder, q: list[int], kernel: list[int], strides: list[int], dilations: list[int], padded: list[int]
) -> SSAValue:
    """The (prod(q), prod(kernel)) int64 tensor of flat positions ``sum_i (q_i stride_i + k_i dilation_i) *
    prod(padded[i+1:])`` in the row-major flattening of the padded spatial dims."""
    r = len(q)
    t = TensorType(pg.i64, [*q, *kernel])
    total: SSAValue | None = None
    for i in range(r):
        row = math.prod(padded[i + 1 :])
        for dim, factor in ((i, strides[i] * row), (r + i, dilations[i] * row)):
            if (q + kernel)[dim] == 1:
                continue
            term = b(pg.IotaOp(t, dim))
            if factor != 1:
                c = b(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(pg.i64, []), [factor])))
                term = b(pg.MulOp(term, b.broadcast(c, (*q, *kernel))))
            total = term if total is None else b(pg.AddOp(total, term))
    if total is None:  # one window of one tap
        total = b(pg.IotaOp(t, 0))
    return b.reshape(total, (math.prod(q), math.prod(kernel)))


Permutes = dict[tuple[SSAValue, tuple[int | str, ...]], SSAValue]
"""The permutes made so far in a function, by (input, perm), and the pads, by (input, ("pad", *lows, *highs))."""


def _permute(b: Builder, x: SSAValue, perm: list[int], made: Permutes | None = None) -> SSAValue:
    """``x`` permuted by ``perm``, composed with the permute that makes ``x`` if one does (one copy instead of two:
    autodiff's permutes of the input and the output gradient for the weight gradient); a reshape where the dims
    longer than 1 keep their order (no copy). With ``made``, an input permuted so before is not permuted again: a
    weight gradient's im2col reads the forward's channels-last input (the convolutions are lowered in program
    order, so the earlier permute dominates)."""
    producer = x.owner
    if isinstance(producer, pg.PermuteOp):
        inner = producer.perm_list
        x, perm = producer.input, [inner[p] for p in perm]
    shape = shape_of(x)
    if [d for d in perm if shape[d] > 1] == [d for d in range(len(shape)) if shape[d] > 1]:
        return b.reshape(x, [shape[d] for d in perm])
    if made is None:
        return b(pg.PermuteOp(x, perm))
    key = (x, tuple(perm))
    if key not in made:
        made[key] = b(pg.PermuteOp(x, perm))
    return made[key]


def _pad(b: Builder, x: SSAValue, lows: list[int], highs: list[int], made: Permutes | None) -> SSAValue:
    """``x`` (N, *S, C) zero-padded by ``lows``/``highs`` in its spatial dims (itself without padding); with
    ``made``, one pad per input and padding in a function: a convolution's forward and weight-gradient windows read
    one padded input (with ``pg-fuse{windows}`` it is written once anyway, for the forward's implicit GEMM)."""
    if not any(lows) and not any(highs):
        return x
    if made is None:
        return b(pg.PadOp(x, [0, *lows, 0], [0, *highs, 0]))
    key: tuple[SSAValue, tuple[int | str, ...]] = (x, ("pad", *lows, *highs))
    if key not in made:
        made[key] = b(pg.PadOp(x, [0, *lows, 0], [0, *highs, 0]))
    return made[key]


def _unpermuted(v: SSAValue, perm: list[int]) -> SSAValue | None:
    """The nearest tensor ``x`` that ``v`` is ``permute(x, perm)`` of through a chain of ``pg.reshape``/
    ``pg.permute`` ops (checked on the element positions, so unit dims inserted and dropped on the way do not
    matter), or None."""
    chain: list[pg.ReshapeOp | pg.PermuteOp] = []
    base = v
    while isinstance(base.owner, pg.ReshapeOp | pg.PermuteOp):
        chain.append(base.owner)
        base = base.owner.input
        shape = shape_of(base)
        if len(shape) != len(perm) or [shape[p] for p in perm] != list(shape_of(v)):
            continue
        pos = np.arange(math.prod(shape)).reshape(shape)
        got = pos
        for op in reversed(chain):
            shape_after = list(shape_of(op.results[0]))
            got = got.transpose(op.perm_list) if isinstance(op, pg.PermuteOp) else got.reshape(shape_after)
        if np.array_equal(got, pos.transpose(perm)):
            return base
    return None


def _weight_gradient(b: Builder, op: pg.ConvOp, made: Permutes | None = None) -> SSAValue | None:
    """``op`` lowered in the forward's layout when it is a weight gradient (see the module docstring): input
    ``x`` (N, C, *S) as (C, N, *S), weight ``g`` (N, O, *Q) as (O, N, *Q), groups 1; else None."""
    r = len(shape_of(op.input)) - 2
    swap = [1, 0, *range(2, 2 + r)]
    x = _unpermuted(op.input, swap)
    if op.group_count != 1 or x is None or _unpermuted(op.weight, swap) is None:
        return None
    n, c, *_ = shape_of(x)
    o, _, *q = shape_of(op.weight)
    taps = list(shape_of(op.result)[2:])  # the forward's kernel (or more, sliced by autodiff)
    # the forward's stride is this correlation's dilation and the other way round
    strides, dilations = list(op.dilations), list(op.strides)
    x = _pad(b, _permute(b, x, [0, *range(2, 2 + r), 1], made), list(op.lows), list(op.highs), made)  # (N, *S, C)
    padded = list(shape_of(x)[1:-1])
    flat = b.reshape(x, (n, math.prod(padded), c))
    index = _window_index(b, q, taps, strides, dilations, padded)
    cols = b.reshape(b(pg.GatherOp(flat, index, 1)), (1, n * math.prod(q), math.prod(taps) * c))
    grad = b.reshape(op.weight, (1, o, n * math.prod(q)))
    dw = b.reshape(b(pg.MatmulOp(grad, cols)), (o, math.prod(taps), c))
    return b.reshape(b(pg.PermuteOp(dw, [2, 0, 1])), (c, o, *taps))


def conv_as_matmul(b: Builder, op: pg.ConvOp, made: Permutes | None = None) -> SSAValue:
    """The ``pg`` ops computing ``op`` (im2col and a matmul, see the module docstring); returns the result.
    ``made``: the channels-last inputs made so far, reused (see ``_permute``)."""
    dw = _weight_gradient(b, op, made)
    if dw is not None:
        return dw
    x, w = op.input, op.weight
    n, c, *_ = shape_of(x)
    o, cg, *kernel = shape_of(w)
    q = list(shape_of(op.result)[2:])
    r, groups = len(kernel), op.group_count
    og, qs, ks = o // groups, math.prod(q), math.prod(kernel)
    x = _pad(b, _permute(b, x, [0, *range(2, 2 + r), 1], made), list(op.lows), list(op.highs), made)  # (N, *S, C)
    padded = list(shape_of(x)[1:-1])
    flat = b.reshape(x, (n, math.prod(padded), c))
    if ks == 1 and padded == q and all(s == 1 for s in op.strides):
        windows = b.reshape(flat, (n, qs, 1, c))  # a 1x1 convolution: the input is the im2col matrix
    else:
        index = _window_index(b, q, kernel, list(op.strides), list(op.dilations), padded)
        windows = b(pg.GatherOp(flat, index, 1))  # (N, Q, K, C)
    if groups == 1:
        cols = b.reshape(windows, (1, n * qs, ks * c))
    else:
        cols = _permute(b, b.reshape(windows, (n, qs, ks, groups, cg)), [3, 0, 1, 2, 4])
        cols = b.reshape(cols, (groups, n * qs, ks * cg))
    wk = b.reshape(_permute(b, w, [0, *range(2, 2 + r), 1]), (groups, og, ks * cg))  # (O, *K, C/G)
    out = b(pg.MatmulOp(cols, b(pg.PermuteOp(wk, [0, 2, 1]))))  # (G, N * Q, O/G)
    out = _permute(b, b.reshape(out, (groups, n, qs, og)), [1, 0, 3, 2])
    return b.reshape(out, (n, o, *q))


@dataclass(frozen=True)
class PgDecomposeConv(ModulePass):
    """Replace every ``pg.conv`` by the ``pg`` ops computing it (each new op takes the convolution's location)."""

    name = "pg-decompose-conv"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        made: dict[Block | None, Permutes] = {}  # per block: an earlier permute dominates the later convs
        for conv in [o for o in op.walk() if isinstance(o, pg.ConvOp)]:
            created: list[Operation] = []
            scope = made.setdefault(conv.parent_block(), {})
            out = conv_as_matmul(Builder(conv, conv.location, created), conv, scope)
            conv.result.replace_all_uses_with(out)
            producers = list(dict.fromkeys(v.owner for v in conv.operands))
            Rewriter.erase_op(conv)
            for p in producers:  # a permute now composed into the lowering's own
                if isinstance(p, pg.PermuteOp) and not p.result.uses:
                    Rewriter.erase_op(p)
