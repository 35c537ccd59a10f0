"""``pg-decompose-conv``: the reference lowering of ``pg.conv`` into ``pg`` ops, run before kernel formation so that
the loop, GPU and PTX stages need nothing new. The convolution becomes im2col and one (batched over groups)
matmul (Chellapilla et al., "High performance convolutional neural networks for document processing", 2006):

- ``pg.pad`` of the input by ``pad_low``/``pad_high``;
- per spatial dim, one ``pg.gather`` of the windows with index ``q stride + k dilation`` (``pg.iota`` arithmetic
  of shape (Q, K)), turning (N, C, *S) into (N, C, Q1, K1, Q2, K2, ...);
- a permute/reshape to (G, N * prod(Q), C/G * prod(K)) and the weight to (G, C/G * prod(K), O/G);
- ``pg.matmul``, then a reshape/permute to (N, O, *Q).

Autodiff runs before it and keeps the op whole (its vjp is convolutions again); an implicit-GEMM schedule would
replace this pass for the GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from picograd.dialects import pg
from picograd.dialects.pg import shape_of
from picograd.passes.autodiff import Builder


def _index(b: Builder, q: int, k: int, stride: int, dilation: int) -> SSAValue:
    """The (q, k) int64 tensor ``q stride + k dilation``."""
    t = TensorType(pg.i64, [q, k])

    def scaled(dim: int, factor: int) -> SSAValue:
        iota = b(pg.IotaOp(t, dim))
        if factor == 1:
            return iota
        c = b(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(pg.i64, []), [factor])))
        return b(pg.MulOp(iota, b.broadcast(c, (q, k))))

    return b(pg.AddOp(scaled(0, stride), scaled(1, dilation)))


def conv_as_matmul(b: Builder, op: pg.ConvOp) -> SSAValue:
    """The ``pg`` ops computing ``op`` (im2col and a matmul, see the module docstring); returns the result."""
    x, w = op.input, op.weight
    n, c, *_ = shape_of(x)
    o, cg, *kernel = shape_of(w)
    q = shape_of(op.result)[2:]
    r, groups = len(kernel), op.group_count
    og = o // groups
    if any(op.lows) or any(op.highs):
        x = b(pg.PadOp(x, [0, 0, *op.lows], [0, 0, *op.highs]))
    for i, (qi, ki, st, di) in enumerate(zip(q, kernel, op.strides, op.dilations, strict=True)):
        x = b(pg.GatherOp(x, _index(b, qi, ki, st, di), 2 + 2 * i))  # dim i became (Q, K) pairs before it
    qs, ks = math.prod(q), math.prod(kernel)
    windows = b.reshape(x, (n, groups, cg, *(v for qi, ki in zip(q, kernel, strict=True) for v in (qi, ki))))
    q_dims = [3 + 2 * i for i in range(r)]
    k_dims = [4 + 2 * i for i in range(r)]
    cols = b(pg.PermuteOp(windows, [1, 0, *q_dims, 2, *k_dims]))
    cols = b.reshape(cols, (groups, n * qs, cg * ks))
    wmat = b(pg.PermuteOp(b.reshape(w, (groups, og, cg * ks)), [0, 2, 1]))
    out = b(pg.MatmulOp(cols, wmat))  # (G, N * Q, O/G)
    out = b(pg.PermuteOp(b.reshape(out, (groups, n, qs, og)), [1, 0, 3, 2]))
    return b.reshape(out, (n, o, *q))


@dataclass(frozen=True)
class PgDecomposeConv(ModulePass):
    """Replace every ``pg.conv`` by the ``pg`` ops computing it (each new op takes the convolution's location)."""

    name = "pg-decompose-conv"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for conv in [o for o in op.walk() if isinstance(o, pg.ConvOp)]:
            created: list[Operation] = []
            out = conv_as_matmul(Builder(conv, conv.location, created), conv)
            conv.result.replace_all_uses_with(out)
            Rewriter.erase_op(conv)
