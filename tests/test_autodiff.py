"""pg-autodiff: every vjp rule against central finite differences and against PyTorch autograd (float64).

Each case is one function written once against an op namespace: ``PgOps`` emits ``pg`` ops into a ``func.func``,
``TorchOps`` computes the same thing with torch. The pg side gets ``pg.grad`` of ``sum(out * w)`` (random ``w``),
is expanded by the pass, verified and run by the numpy executor. Inputs are fresh random numbers (no fixed seed),
kept away from the points where an op is not differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func, scf
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FileLineColLoc,
    IntAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import DiagnosticException

from picograd.dialects import make_context, pg, philox
from picograd.passes.autodiff import VJP_RULES, PgAutodiff
from picograd.runtime.numpy_executor import compile_func

UNARY = {
    "neg": pg.NegOp,
    "exp": pg.ExpOp,
    "log": pg.LogOp,
    "sqrt": pg.SqrtOp,
    "rsqrt": pg.RsqrtOp,
    "sin": pg.SinOp,
    "cos": pg.CosOp,
    "tanh": pg.TanhOp,
    "sigmoid": pg.SigmoidOp,
    "relu": pg.ReluOp,
    "abs": pg.AbsOp,
    "reciprocal": pg.ReciprocalOp,
    "erf": pg.ErfOp,
    "stop_gradient": pg.StopGradientOp,
    # the operator surface (issue 20)
    "floor": pg.FloorOp,
    "ceil": pg.CeilOp,
    "round": pg.RoundOp,
    "trunc": pg.TruncOp,
    "sign": pg.SignOp,
    "log2": pg.Log2Op,
    "exp2": pg.Exp2Op,
    "log1p": pg.Log1pOp,
    "expm1": pg.Expm1Op,
    "asin": pg.AsinOp,
    "acos": pg.AcosOp,
    "atan": pg.AtanOp,
    "asinh": pg.AsinhOp,
    "acosh": pg.AcoshOp,
    "atanh": pg.AtanhOp,
}
BINARY = {
    "add": pg.AddOp,
    "sub": pg.SubOp,
    "mul": pg.MulOp,
    "div": pg.DivOp,
    "pow": pg.PowOp,
    "maximum": pg.MaximumOp,
    "minimum": pg.MinimumOp,
    "atan2": pg.Atan2Op,
    "copysign": pg.CopysignOp,
}
ELEMENTS: dict[str, Attribute] = {"f32": f32, "f64": f64, "i64": i64}
TORCH_DTYPES = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64}


def element_of(array: np.ndarray) -> Attribute:
    return {np.float64: f64, np.float32: f32, np.int64: i64, np.bool_: i1}[array.dtype.type]


class PgOps:
    """Emits ``pg`` ops at the end of ``block``; each method returns the op's result."""

    def __init__(self, block: Block):
        self.block = block

    def emit(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0]

    def __getattr__(self, name: str) -> Callable[..., SSAValue]:
        if name in UNARY:
            return lambda x: self.emit(UNARY[name](x))
        if name in BINARY:
            return lambda x, y: self.emit(BINARY[name](x, y))
        raise AttributeError(name)

    def full(self, value: float, shape: Sequence[int], element: str = "f64") -> SSAValue:
        scalar = TensorType(ELEMENTS[element], [])
        c = self.emit(pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(scalar, [value])))
        return self.emit(pg.BroadcastToOp(c, shape)) if shape else c

    def cmp(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(pg.CmpOp(predicate, x, y))

    def select(self, c: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(pg.SelectOp(c, x, y))

    def broadcast_to(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        return self.emit(pg.BroadcastToOp(x, shape))

    def sum(self, x: SSAValue, dims: Sequence[int], keepdim: bool = False) -> SSAValue:
        return self.emit(pg.SumOp(x, dims, keepdim))

    def amax(self, x: SSAValue, dims: Sequence[int], keepdim: bool = False) -> SSAValue:
        return self.emit(pg.MaxOp(x, dims, keepdim))

    def amin(self, x: SSAValue, dims: Sequence[int], keepdim: bool = False) -> SSAValue:
        return self.emit(pg.MinOp(x, dims, keepdim))

    def argmax(self, x: SSAValue, dim: int, keepdim: bool = False) -> SSAValue:
        return self.emit(pg.ArgmaxOp(x, dim, keepdim))

    def argmin(self, x: SSAValue, dim: int, keepdim: bool = False) -> SSAValue:
        return self.emit(pg.ArgminOp(x, dim, keepdim))

    def reshape(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        return self.emit(pg.ReshapeOp(x, shape))

    def permute(self, x: SSAValue, perm: Sequence[int]) -> SSAValue:
        return self.emit(pg.PermuteOp(x, perm))

    def slice(self, x: SSAValue, start: Sequence[int], stop: Sequence[int], step: Sequence[int]) -> SSAValue:
        return self.emit(pg.SliceOp(x, start, stop, step))

    def pad(self, x: SSAValue, low: Sequence[int], high: Sequence[int], interior: Sequence[int], value: float):
        return self.emit(pg.PadOp(x, low, high, interior, value))

    def concat(self, xs: Sequence[SSAValue], dim: int) -> SSAValue:
        return self.emit(pg.ConcatOp(xs, dim))

    def matmul(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(pg.MatmulOp(x, y))

    def gather(self, x: SSAValue, indices: SSAValue, dim: int) -> SSAValue:
        return self.emit(pg.GatherOp(x, indices, dim))

    def scatter_add(self, u: SSAValue, indices: SSAValue, dim: int, shape: Sequence[int]) -> SSAValue:
        return self.emit(pg.ScatterAddOp(u, indices, dim, shape))

    def cast(self, x: SSAValue, element: str) -> SSAValue:
        return self.emit(pg.CastOp(x, ELEMENTS[element]))

    def iota(self, shape: Sequence[int], dim: int, element: str = "f64") -> SSAValue:
        return self.emit(pg.IotaOp(pg.tensor_type(shape, ELEMENTS[element]), dim))

    def random(self, seed: SSAValue, offset: SSAValue, shape: Sequence[int]) -> SSAValue:
        return self.emit(pg.RandomOp("normal", seed, offset, pg.tensor_type(shape, f64)))

    def attention(self, q: SSAValue, k: SSAValue, v: SSAValue, mask=None, dropout=None, scale=0.5, causal=False):
        return self.emit(pg.ScaledDotProductAttentionOp(q, k, v, mask, dropout, scale, causal))

    def conv(self, x: SSAValue, w: SSAValue, stride, dilation, padding, groups: int = 1) -> SSAValue:
        return self.emit(pg.ConvOp(x, w, stride, dilation, padding, padding, groups))


class TorchOps:
    """The same namespace computed with torch (autograd on)."""

    def __getattr__(self, name: str) -> Callable[..., torch.Tensor]:
        if name == "stop_gradient":
            return torch.Tensor.detach
        if name in UNARY or name in BINARY:
            return getattr(torch, name)
        raise AttributeError(name)

    def full(self, value: float, shape: Sequence[int], element: str = "f64") -> torch.Tensor:
        return torch.full(tuple(shape), value, dtype=TORCH_DTYPES[element])

    def cmp(self, predicate: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return getattr(torch, predicate)(x, y)

    def select(self, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(c, x, y)

    def broadcast_to(self, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return torch.broadcast_to(x, tuple(shape))

    def sum(self, x: torch.Tensor, dims: Sequence[int], keepdim: bool = False) -> torch.Tensor:
        return torch.sum(x, tuple(dims), keepdim=keepdim)

    def amax(self, x: torch.Tensor, dims: Sequence[int], keepdim: bool = False) -> torch.Tensor:
        return torch.amax(x, tuple(dims), keepdim=keepdim)

    def amin(self, x: torch.Tensor, dims: Sequence[int], keepdim: bool = False) -> torch.Tensor:
        return torch.amin(x, tuple(dims), keepdim=keepdim)

    def argmax(self, x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return torch.argmax(x, dim, keepdim=keepdim)

    def argmin(self, x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return torch.argmin(x, dim, keepdim=keepdim)

    def reshape(self, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return x.reshape(tuple(shape))

    def permute(self, x: torch.Tensor, perm: Sequence[int]) -> torch.Tensor:
        return x.permute(*perm)

    def slice(self, x: torch.Tensor, start: Sequence[int], stop: Sequence[int], step: Sequence[int]) -> torch.Tensor:
        return x[tuple(slice(a, b, s) for a, b, s in zip(start, stop, step, strict=True))]

    def pad(self, x: torch.Tensor, low: Sequence[int], high: Sequence[int], interior: Sequence[int], value: float):
        shape = pg.padded_shape(x.shape, low, high, interior)
        out = torch.full(shape, value, dtype=x.dtype)
        out[
            tuple(slice(lo, lo + (n - 1) * (i + 1) + 1, i + 1) for n, lo, i in zip(x.shape, low, interior, strict=True))
        ] = x
        return out

    def concat(self, xs: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
        return torch.cat(list(xs), dim)

    def matmul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y

    def gather(self, x: torch.Tensor, indices: torch.Tensor, dim: int) -> torch.Tensor:
        picked = torch.index_select(x, dim, indices.reshape(-1))
        return picked.reshape(*x.shape[:dim], *indices.shape, *x.shape[dim + 1 :])

    def scatter_add(self, u: torch.Tensor, indices: torch.Tensor, dim: int, shape: Sequence[int]) -> torch.Tensor:
        flat = u.reshape(*shape[:dim], indices.numel(), *shape[dim + 1 :])
        return torch.zeros(tuple(shape), dtype=u.dtype).index_add(dim, indices.reshape(-1), flat)

    def cast(self, x: torch.Tensor, element: str) -> torch.Tensor:
        return x.to(TORCH_DTYPES[element])

    def iota(self, shape: Sequence[int], dim: int, element: str = "f64") -> torch.Tensor:
        view = [1] * len(shape)
        view[dim] = shape[dim]
        return torch.arange(shape[dim], dtype=TORCH_DTYPES[element]).reshape(view).expand(*shape)

    def random(self, seed: torch.Tensor, offset: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(philox.normal(tuple(shape), int(seed), int(offset), np.dtype(np.float64)))

    def attention(self, q, k, v, mask=None, dropout=None, scale=0.5, causal=False) -> torch.Tensor:
        """Written out (not torch's SDPA): the dropout multiplier is an input here."""
        s = q @ k.transpose(-1, -2) * scale
        if causal:
            s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), -math.inf)
        if mask is not None:
            s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask
        p = torch.softmax(s, -1)
        return (p * dropout if dropout is not None else p) @ v

    def conv(self, x, w, stride, dilation, padding, groups: int = 1) -> torch.Tensor:
        f = torch.nn.functional.conv1d if x.ndim == 3 else torch.nn.functional.conv2d
        return f(x, w, None, tuple(stride), tuple(padding), tuple(dilation), groups)


def differentiate(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray], out_shape: Sequence[int], wrt: Sequence[int]
) -> tuple[ModuleOp, Callable[..., tuple[np.ndarray, ...]]]:
    """``f(*inputs, w) -> (loss, *grads)``: ``fn`` as pg ops, ``loss = sum(fn(*inputs) * w)`` and ``pg.grad`` of
    it wrt ``inputs[i]`` for ``i`` in ``wrt``, after pg-autodiff."""
    types = [pg.tensor_type(a.shape, element_of(a)) for a in inputs]
    block = Block(arg_types=[*types, pg.tensor_type(out_shape, f64)])
    ops = PgOps(block)
    out = fn(ops, *block.args[:-1])
    weighted = ops.mul(out, block.args[-1])
    loss = ops.sum(weighted, list(range(len(out_shape)))) if out_shape else weighted
    grad = pg.GradOp(loss, [block.args[i] for i in wrt])
    block.add_ops([grad, func.ReturnOp(loss, *grad.grads)])
    fn_op = func.FuncOp("f", (block.arg_types, [loss.type, *(r.type for r in grad.grads)]), Region(block))
    module = ModuleOp([fn_op])
    module.verify()
    PgAutodiff().apply(make_context(), module)
    module.verify()
    assert not any(isinstance(op, pg.GradOp) for op in module.walk())
    for op in block.ops:  # no dead ops: every value the pass left behind is used
        assert isinstance(op, func.ReturnOp) or all(r.uses for r in op.results), f"unused {op}"
    return module, compile_func(fn_op)


def finite_differences(f: Callable[[list[np.ndarray]], float], inputs: list[np.ndarray], i: int, h: float):
    """Central differences of the scalar ``f`` with respect to every element of ``inputs[i]``."""
    grad = np.zeros_like(inputs[i])
    for k in np.ndindex(inputs[i].shape):
        values = []
        for step in (h, -h):
            moved = [a.copy() for a in inputs]
            moved[i][k] += step
            values.append(f(moved))
        grad[k] = (values[0] - values[1]) / (2 * h)
    return grad


def grad_check(
    fn: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    *,
    fd: bool = True,
    h: float = 1e-6,
    fd_rtol: float = 1e-6,
    torch_rtol: float = 1e-10,
) -> list[np.ndarray]:
    """Gradients of ``sum(fn(*inputs) * w)`` wrt every float input: pg-autodiff vs torch autograd and (unless
    ``fd`` is off) central finite differences. Each gradient must be nonzero (else the comparison would prove
    little). Returns the pg gradients."""
    inputs = list(inputs)
    wrt = [i for i, a in enumerate(inputs) if a.dtype.kind == "f"]
    theirs = [torch.tensor(a, requires_grad=i in wrt) for i, a in enumerate(inputs)]
    out = fn(TorchOps(), *theirs)
    rng = np.random.default_rng()
    w = np.asarray(rng.uniform(0.5, 1.5, tuple(out.shape)) * rng.choice([-1.0, 1.0], tuple(out.shape)))
    their_loss = (out * torch.as_tensor(w)).sum()
    scale = (
        (out.detach().abs() * torch.as_tensor(np.abs(w))).sum().item()
    )  # cancellation in the sum: an absolute tolerance
    their_grads = torch.autograd.grad(their_loss, [theirs[i] for i in wrt])

    _, f = differentiate(fn, inputs, tuple(out.shape), wrt)
    loss, *grads = f(*inputs, w)
    np.testing.assert_allclose(loss, their_loss.item(), rtol=torch_rtol, atol=torch_rtol * scale)
    for i, ours, expected in zip(wrt, grads, their_grads, strict=True):
        assert ours.shape == inputs[i].shape and ours.dtype == inputs[i].dtype
        assert np.all(np.isfinite(ours))
        assert np.abs(ours).max() > 1e-5, f"gradient {i} is (nearly) zero: the check would be vacuous"
        np.testing.assert_allclose(ours, expected.numpy(), rtol=torch_rtol, atol=torch_rtol * 1e-2)
        if fd:
            numeric = finite_differences(lambda xs: float(f(*xs, w)[0]), inputs, i, h)
            np.testing.assert_allclose(ours, numeric, rtol=fd_rtol, atol=fd_rtol * 1e-1)
    return grads


# ---------------------------------------------------------------------------------------------------------------
# One case per differentiable op: (function of the op namespace, inputs from a fresh generator)

Inputs = Callable[[np.random.Generator], list[np.ndarray]]


def normal(*shape: int) -> Inputs:
    return lambda r: [r.standard_normal(shape)]


def positive(*shape: int) -> Inputs:
    return lambda r: [r.uniform(0.5, 2.0, shape)]


def nonzero(r: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Magnitudes in [0.2, 1.5), half of them negative: away from the kinks of abs/relu and the pole of 1/x, with
    both branches taken."""
    signs = r.permutation(np.resize([1.0, -1.0], math.prod(shape))).reshape(shape)
    return r.uniform(0.2, 1.5, shape) * signs


def spaced(r: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Distinct values at least 0.2 apart (no ties within the finite-difference step)."""
    n = math.prod(shape)
    return (r.permutation(n) * 0.3 + r.uniform(0, 0.1, n)).reshape(shape) - 0.15 * n


def off_integers(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 away from every integer and from the ties of round (x.5), none in (-1, 1)."""
    whole = r.choice([-3.0, -2.0, 1.0, 2.0], shape)
    return whole + r.choice([0.15, 0.3, 0.7, 0.85], shape) * np.sign(whole)


def indices(r: np.random.Generator, high: int, *shape: int) -> np.ndarray:
    return r.integers(0, high, shape, dtype=np.int64)


CASES: dict[str, tuple[Callable[..., Any], Inputs]] = {
    # elementwise unary
    "neg": (lambda o, x: o.neg(x), normal(2, 3)),
    "exp": (lambda o, x: o.exp(x), normal(2, 3)),
    "log": (lambda o, x: o.log(x), positive(2, 3)),
    "sqrt": (lambda o, x: o.sqrt(x), positive(2, 3)),
    "rsqrt": (lambda o, x: o.rsqrt(x), positive(2, 3)),
    "sin": (lambda o, x: o.sin(x), normal(2, 3)),
    "cos": (lambda o, x: o.cos(x), normal(2, 3)),
    "tanh": (lambda o, x: o.tanh(x), normal(2, 3)),
    "sigmoid": (lambda o, x: o.sigmoid(x), normal(2, 3)),
    "relu": (lambda o, x: o.relu(x), lambda r: [nonzero(r, (3, 4))]),
    "abs": (lambda o, x: o.abs(x), lambda r: [nonzero(r, (3, 4))]),
    "reciprocal": (lambda o, x: o.reciprocal(x), lambda r: [nonzero(r, (2, 3))]),
    "erf": (lambda o, x: o.erf(x), normal(2, 3)),
    # the operator surface (issue 20): piecewise-constant ops as factors x * f(x) (their own gradient is zero)
    **{
        name: (lambda o, x, name=name: o.mul(x, getattr(o, name)(x)), lambda r: [off_integers(r, (2, 3))])
        for name in ("floor", "ceil", "round", "trunc", "sign")
    },
    "log2": (lambda o, x: o.log2(x), positive(2, 3)),
    "exp2": (lambda o, x: o.exp2(x), normal(2, 3)),
    "log1p": (lambda o, x: o.log1p(x), lambda r: [r.uniform(-0.9, 3.0, (2, 3))]),
    "expm1": (lambda o, x: o.expm1(x), normal(2, 3)),
    "asin": (lambda o, x: o.asin(x), lambda r: [r.uniform(-0.9, 0.9, (2, 3))]),
    "acos": (lambda o, x: o.acos(x), lambda r: [r.uniform(-0.9, 0.9, (2, 3))]),
    "atan": (lambda o, x: o.atan(x), lambda r: [3 * r.standard_normal((2, 3))]),
    "asinh": (lambda o, x: o.asinh(x), lambda r: [3 * r.standard_normal((2, 3))]),
    "acosh": (lambda o, x: o.acosh(x), lambda r: [r.uniform(1.2, 5.0, (2, 3))]),
    "atanh": (lambda o, x: o.atanh(x), lambda r: [r.uniform(-0.9, 0.9, (2, 3))]),
    "atan2": (lambda o, y, x: o.atan2(y, x), lambda r: [nonzero(r, (2, 3)), nonzero(r, (2, 3))]),
    "copysign": (  # no gradient for the sign source: y also enters as y * y
        lambda o, x, y: o.add(o.copysign(x, y), o.mul(y, y)),
        lambda r: [nonzero(r, (2, 3)), nonzero(r, (2, 3))],
    ),
    # elementwise binary
    "add": (lambda o, x, y: o.add(x, y), lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))]),
    "sub": (lambda o, x, y: o.sub(x, y), lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))]),
    "mul": (lambda o, x, y: o.mul(x, y), lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))]),
    "div": (lambda o, x, y: o.div(x, y), lambda r: [r.standard_normal((2, 3)), nonzero(r, (2, 3))]),
    "pow": (lambda o, x, y: o.pow(x, y), lambda r: [r.uniform(0.5, 2.0, (2, 3)), r.standard_normal((2, 3))]),
    # a constant exponent and negative bases: the exponent's (unneeded) gradient must not leak a NaN
    "pow-const": (lambda o, x: o.pow(x, o.full(3.0, (2, 3))), lambda r: [nonzero(r, (2, 3))]),
    "maximum": (lambda o, x, y: o.maximum(x, y), lambda r: [x := r.standard_normal((3, 4)), x + nonzero(r, (3, 4))]),
    "minimum": (lambda o, x, y: o.minimum(x, y), lambda r: [x := r.standard_normal((3, 4)), x + nonzero(r, (3, 4))]),
    "select": (
        lambda o, x, y, c: o.select(c, x, y),
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)), np.arange(12).reshape(3, 4) % 3 == 0],
    ),
    # shapes and reductions
    "broadcast_to": (lambda o, x: o.broadcast_to(x, (2, 3, 4)), normal(3, 1)),
    "broadcast_to-scalar": (lambda o, x: o.broadcast_to(x, (2, 3)), normal()),
    "sum": (lambda o, x: o.sum(x, [0, 2]), normal(2, 3, 4)),
    "sum-keepdim": (lambda o, x: o.sum(x, [1], keepdim=True), normal(2, 3, 4)),
    "sum-all": (lambda o, x: o.sum(x, [0, 1]), normal(2, 3)),
    "max": (lambda o, x: o.amax(x, [1]), lambda r: [spaced(r, (2, 3, 4))]),
    "max-keepdim": (lambda o, x: o.amax(x, [0, 2], keepdim=True), lambda r: [spaced(r, (2, 3, 4))]),
    "min": (lambda o, x: o.amin(x, [0, 2]), lambda r: [spaced(r, (2, 3, 4))]),
    "reshape": (lambda o, x: o.reshape(x, (4, 6)), normal(2, 3, 4)),
    "permute": (lambda o, x: o.permute(x, [2, 0, 1]), normal(2, 3, 4)),
    "slice": (lambda o, x: o.slice(x, [1, 0], [5, 7], [2, 3]), normal(5, 7)),
    "slice-unaligned": (lambda o, x: o.slice(x, [0, 2], [4, 6], [3, 1]), normal(5, 7)),
    "pad": (lambda o, x: o.pad(x, [1, 0], [0, 2], [1, 2], 0.5), normal(2, 3)),
    "concat": (
        lambda o, x, y, z: o.concat([x, y, z], 0),
        lambda r: [r.standard_normal((2, 3)), r.standard_normal((1, 3)), r.standard_normal((4, 3))],
    ),
    "concat-dim1": (
        lambda o, x, y: o.concat([x, y], 1),
        lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 2))],
    ),
    # slices that split a tensor: their adjoints join into one concat (zeros in the gap at rows 2-3, a pad for
    # row 6), next to another use of the tensor; overlapping slices (rows 0-1 and 1-2) stay a sum
    "slices-split": (
        lambda o, x: o.concat(
            [o.slice(x, [0, 0], [2, 3], [1, 1]), o.exp(o.slice(x, [4, 0], [6, 3], [1, 1])), o.sin(x)], 0
        ),
        normal(7, 3),
    ),
    "slices-split-dim1": (
        lambda o, x: o.concat(
            [
                o.slice(x, [0, 2], [2, 4], [1, 1]),
                o.mul(o.slice(x, [0, 0], [2, 2], [1, 1]), o.slice(x, [0, 4], [2, 6], [1, 1])),
            ],
            0,
        ),
        normal(2, 6),
    ),
    "slices-overlap": (
        lambda o, x: o.concat([o.slice(x, [0, 0], [2, 3], [1, 1]), o.exp(o.slice(x, [1, 0], [3, 3], [1, 1]))], 0),
        normal(4, 3),
    ),
    # a weight that several products use (the steps of an RNN): its gradient is one product over all of them
    "matmul-shared-weight": (
        lambda o, w, x, y, z: o.add(
            o.add(o.matmul(x, o.permute(w, [1, 0])), o.matmul(y, o.permute(w, [1, 0]))), o.tanh(o.matmul(z, w))
        ),
        lambda r: [
            r.standard_normal((4, 4)),
            r.standard_normal((2, 4)),
            r.standard_normal((2, 4)),
            r.standard_normal((2, 4)),
        ],
    ),
    "matmul": (lambda o, x, y: o.matmul(x, y), lambda r: [r.standard_normal((3, 4)), r.standard_normal((4, 5))]),
    "matmul-batched": (
        lambda o, x, y: o.matmul(x, y),
        lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((2, 4, 5))],
    ),
    "gather": (lambda o, x, i: o.gather(x, i, 0), lambda r: [r.standard_normal((5, 3)), indices(r, 5, 2, 4)]),
    "gather-dim1": (lambda o, x, i: o.gather(x, i, 1), lambda r: [r.standard_normal((2, 5, 3)), indices(r, 5, 6)]),
    "scatter_add": (
        lambda o, u, i: o.scatter_add(u, i, 0, (5, 3)),
        lambda r: [r.standard_normal((2, 4, 3)), indices(r, 5, 2, 4)],
    ),
    # integer values carry no gradient: x * float(int(x)) differentiates the first factor only
    "cast-int": (
        lambda o, x: o.mul(x, o.cast(o.cast(x, "i64"), "f64")),
        lambda r: [r.choice([-3.0, -2.0, 2.0, 3.0], (2, 3)) + r.uniform(0.2, 0.8, (2, 3))],  # int(x) != 0
    ),
    # attention (issue 11): causal (L != S), a float mask broadcast over the batch with a dropout multiplier (from
    # an integer input, so it carries no gradient on either side), a bool mask with a key always kept
    "attention-causal": (
        lambda o, q, k, v: o.attention(q, k, v, scale=0.4, causal=True),
        lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((2, 5, 4)), r.standard_normal((2, 5, 3))],
    ),
    "attention-mask-dropout": (
        lambda o, q, k, v, m, keep: o.attention(
            q, k, v, m, o.mul(o.cast(keep, "f64"), o.full(2.0, (2, 3, 5))), scale=0.7
        ),
        lambda r: [
            r.standard_normal((2, 3, 4)),
            r.standard_normal((2, 5, 4)),
            r.standard_normal((2, 5, 3)),
            r.standard_normal((3, 5)),
            np.where(r.random((2, 3, 5)) < 0.7, 1, 0).astype(np.int64),
        ],
    ),
    "attention-bool-mask": (
        lambda o, q, k, v, m: o.attention(q, k, v, m),
        lambda r: [
            r.standard_normal((2, 2, 3, 4)),
            r.standard_normal((2, 2, 5, 4)),
            r.standard_normal((2, 2, 5, 3)),
            np.concatenate([np.ones((3, 1), bool), r.random((3, 4)) < 0.5], axis=1),
        ],
    ),
    # convolution (issue 12): strided, dilated, padded and grouped, 2-d and 1-d
    "conv2d": (
        lambda o, x, w: o.conv(x, w, (2, 1), (1, 2), (1, 0), 2),
        lambda r: [r.standard_normal((2, 4, 5, 6)), r.standard_normal((4, 2, 3, 2))],
    ),
    "conv1d": (
        lambda o, x, w: o.conv(x, w, (3,), (1,), (2,)),
        lambda r: [r.standard_normal((1, 3, 7)), r.standard_normal((2, 3, 2))],
    ),
    # ops that pass no gradient, as factors of a differentiable product
    "no-grad-sources": (
        lambda o, x, seed, offset: o.add(
            o.mul(x, o.add(o.random(seed, offset, (3, 4)), o.iota((3, 4), 1))),
            o.mul(
                x,
                o.cast(
                    o.add(
                        o.broadcast_to(o.argmax(x, 1, keepdim=True), (3, 4)),
                        o.broadcast_to(o.argmin(x, 0, keepdim=True), (3, 4)),
                    ),
                    "f64",
                ),
            ),
        ),
        lambda r: [spaced(r, (3, 4)), np.array(r.integers(0, 2**31), np.int64), np.array(4, np.int64)],
    ),
}


def test_every_rule_has_a_case() -> None:
    """The table and the cases agree: each op with a rule is exercised by some case."""
    covered: set[type[Operation]] = set()
    for fn, make in CASES.values():
        values = make(np.random.default_rng())
        block = Block(arg_types=[pg.tensor_type(a.shape, element_of(a)) for a in values])
        fn(PgOps(block), *block.args)
        covered.update(type(op) for op in block.ops)
    assert {op for op, rule in VJP_RULES.items() if rule is not None} <= covered


@pytest.mark.parametrize("case", CASES)
def test_vjp_rule(case: str) -> None:
    fn, make = CASES[case]
    grad_check(fn, make(np.random.default_rng()))


def test_cast_between_floats() -> None:
    """f64 -> f32 -> f64: the adjoint is cast back. float32 arithmetic inside: looser tolerances."""
    x = np.random.default_rng().standard_normal((2, 3))
    fn = lambda o, x: o.cast(o.exp(o.cast(x, "f32")), "f64")  # noqa: E731
    grad_check(fn, [x], h=1e-3, fd_rtol=1e-3, torch_rtol=1e-6)


def test_pow_guards() -> None:
    """Bases 0 and < 0 (integer exponents, where x**y is real): dx matches torch everywhere (0 where y == 0) and is
    finite; dy is what torch gives (issue 20): z log(x), NaN for x < 0, -inf for x == 0 and y < 0, 0 for x == 0
    and y >= 0."""
    x = np.array([-2.0, -1.5, 0.0, 0.0, 0.5, 3.0, 1.7, 0.0])
    y = np.array([2.0, 3.0, 3.0, 0.0, 0.0, -1.5, 0.8, -1.0])
    w = np.random.default_rng().uniform(0.5, 1.5, x.shape)
    with np.errstate(all="ignore"):
        gx, gy = scalar_program(lambda o, x, y, w: (o.sum(o.mul(o.pow(x, y), w), [0]), [x, y]), x, y, w)
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    ex, ey = torch.autograd.grad((tx**ty * torch.tensor(w)).sum(), [tx, ty])
    finite = x != 0
    np.testing.assert_allclose(gx[finite], ex.numpy()[finite], rtol=1e-12)
    np.testing.assert_allclose(gy, ey.numpy(), rtol=1e-12)  # NaN and -inf where torch has them
    assert np.isnan(gy[x < 0]).all() and np.isneginf(gy[-1]) and not gx[y == 0].any()


def test_stop_gradient_is_detach() -> None:
    """x * detach(x): the gradient is detach(x) * w as in torch, not the 2 x w that finite differences see."""
    x = np.random.default_rng().standard_normal((2, 3))
    grad_check(lambda o, x: o.mul(x, o.stop_gradient(x)), [x], fd=False)


# ---------------------------------------------------------------------------------------------------------------
# Semantics that single rules do not show


def scalar_program(build: Callable[[PgOps, SSAValue], tuple[SSAValue, list[SSAValue]]], *inputs: np.ndarray):
    """Run ``build(ops, *args) -> (root, wrt)`` with ``pg.grad root wrt ...`` through the pass and the executor."""
    block = Block(arg_types=[pg.tensor_type(a.shape, element_of(a)) for a in inputs])
    root, wrt = build(PgOps(block), *block.args)
    grad = pg.GradOp(root, wrt)
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    fn = func.FuncOp("f", (block.arg_types, [r.type for r in grad.grads]), Region(block))
    module = ModuleOp([fn])
    PgAutodiff().apply(make_context(), module)
    module.verify()
    return compile_func(fn)(*inputs)


def test_fan_out_accumulates() -> None:
    """a = 3, b = a * a, c = b + b: dc/da = 2 * 2a = 12 (each use of a value adds its adjoint)."""
    (g,) = scalar_program(lambda o, a: (o.add(b := o.mul(a, a), b), [a]), np.array(3.0))
    assert g == 12.0


def test_centering_has_zero_gradient() -> None:
    """sum(x - mean(x)) is identically 0: the gradients through both paths cancel."""
    x = np.random.default_rng().standard_normal(5)
    fn = lambda o, x: o.sub(x, o.broadcast_to(o.div(o.sum(x, [0]), o.full(5.0, ())), (5,)))  # noqa: E731
    (g,) = scalar_program(lambda o, x: (o.sum(fn(o, x), [0]), [x]), x)
    np.testing.assert_allclose(g, 0.0, atol=1e-14)
    # the same function weighted by a non-constant w has a nonzero gradient (the check above is not vacuous)
    grad_check(fn, [x])


def test_max_ties_split_evenly() -> None:
    """Ties share the gradient evenly, as torch.amax: a row [1, 3, 3] sends w/2 to each 3."""
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 5.0, 5.0]])
    (g,) = grad_check(lambda o, x: o.amax(x, [1]), [x], fd=False)
    assert g[0, 0] == 0 and g[0, 1] == g[0, 2] != 0 and g[1, 0] == g[1, 3] != 0
    (g,) = grad_check(lambda o, x: o.amin(x, [0, 1], keepdim=True), [x], fd=False)
    assert g[0, 3] == 0 and g[2, 1] != 0  # the single minimum gets everything
    grad_check(lambda o, x, y: o.maximum(x, y), [x, np.where(x > 2, x, 0.0)], fd=False)
    grad_check(lambda o, x, y: o.minimum(x, y), [x, np.where(x > 2, x, 0.0)], fd=False)


def test_gather_repeated_indices_accumulate() -> None:
    """Indices [0, 2, 0, 0]: row 0 of the table receives the sum of three adjoint rows."""
    table = np.random.default_rng().standard_normal((4, 3))
    idx = np.array([0, 2, 0, 0], np.int64)
    w = np.random.default_rng().standard_normal((4, 3))
    grad_check(lambda o, t, i: o.gather(t, i, 0), [table, idx])
    (g,) = scalar_program(lambda o, t, i, w: (o.sum(o.mul(o.gather(t, i, 0), w), [0, 1]), [t]), table, idx, w)
    np.testing.assert_allclose(g[0], w[0] + w[2] + w[3], rtol=1e-14)
    np.testing.assert_allclose(g[2], w[1], rtol=1e-14)
    assert not g[1].any() and not g[3].any()


def test_unreachable_wrt_gets_zeros() -> None:
    x, y = np.random.default_rng().standard_normal((2, 3, 2))
    gx, gy = scalar_program(lambda o, x, y: (o.sum(o.exp(x), [0, 1]), [x, y]), x, y)
    np.testing.assert_allclose(gx, np.exp(x), rtol=1e-14)
    assert gy.shape == (3, 2) and not gy.any()


def test_seed_gives_a_vector_jacobian_product() -> None:
    """``pg.grad %y seed %s`` on a non-scalar root is ``s^T J``."""
    x, s = np.random.default_rng().standard_normal((2, 4))
    block = Block(arg_types=[pg.tensor_type((4,), f64)] * 2)
    y = PgOps(block).sin(block.args[0])
    grad = pg.GradOp(y, [block.args[0]], seed=block.args[1])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    fn = func.FuncOp("f", (block.arg_types, [grad.grads[0].type]), Region(block))
    PgAutodiff().apply(make_context(), ModuleOp([fn]))
    np.testing.assert_allclose(compile_func(fn)(x, s)[0], s * np.cos(x), rtol=1e-14)


def test_second_order() -> None:
    """A pg.grad of an earlier pg.grad's result: d/dx sum(v * d/dx sum(w x^3)) = 6 x w v (torch double backward)."""
    r = np.random.default_rng()
    x, w, v = r.standard_normal((3, 5))

    def build(o: PgOps, x: SSAValue, w: SSAValue, v: SSAValue):
        first = pg.GradOp(o.sum(o.mul(w, o.mul(x, o.mul(x, x))), [0]), [x])
        o.block.add_op(first)
        return o.sum(o.mul(v, first.grads[0]), [0]), [x]

    (g,) = scalar_program(build, x, w, v)
    tx = torch.tensor(x, requires_grad=True)
    (d,) = torch.autograd.grad((torch.tensor(w) * tx**3).sum(), tx, create_graph=True)
    (dd,) = torch.autograd.grad((torch.tensor(v) * d).sum(), tx)
    np.testing.assert_allclose(g, dd.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g, 6 * x * w * v, rtol=1e-12)


def log_softmax_rows(o: Any, z: Any, shape: tuple[int, int]) -> tuple[Any, Any]:
    """logsumexp over dim 1 composed as the frontend does it (a fully -inf row gives -inf and a zero gradient):
    m = max (0 in dead rows), lse = select(dead, -inf, log(sum(exp(z - m))) + m). Returns (lse, dead)."""
    rows = (shape[0], 1)
    m = o.amax(z, [1], keepdim=True)
    dead = o.cmp("eq", m, o.full(-math.inf, rows))
    m = o.select(dead, o.full(0.0, rows), m)
    s = o.sum(o.exp(o.sub(z, o.broadcast_to(m, shape))), [1], keepdim=True)
    live = o.add(o.log(o.select(dead, o.full(1.0, rows), s)), m)
    return o.select(dead, o.full(-math.inf, rows), live), dead


def test_mlp_softmax_cross_entropy_matches_torch() -> None:
    """A 2-layer tanh MLP with a mean softmax cross-entropy built from pg ops, against torch.nn.functional."""
    r = np.random.default_rng()
    batch, d_in, hidden, classes = 6, 5, 7, 4
    params = [r.standard_normal(s) * 0.5 for s in [(d_in, hidden), (hidden,), (hidden, classes), (classes,)]]
    x, target = r.standard_normal((batch, d_in)), r.integers(0, classes, batch)

    def loss(o: Any, x: Any, w1: Any, b1: Any, w2: Any, b2: Any, t: Any) -> Any:
        h = o.tanh(o.add(o.matmul(x, w1), o.broadcast_to(b1, (batch, hidden))))
        z = o.add(o.matmul(h, w2), o.broadcast_to(b2, (batch, classes)))
        lse, _ = log_softmax_rows(o, z, (batch, classes))
        hit = o.cmp(
            "eq", o.iota((batch, classes), 1, "i64"), o.broadcast_to(o.reshape(t, (batch, 1)), (batch, classes))
        )
        picked = o.sum(o.select(hit, z, o.full(0.0, (batch, classes))), [1], keepdim=True)
        return o.div(o.sum(o.sub(lse, picked), [0, 1]), o.full(float(batch), ()))

    def build(o: PgOps, *args: SSAValue):
        return loss(o, *args), list(args[1:5])

    ours = scalar_program(build, x, *params, target)
    theirs = [torch.tensor(p, requires_grad=True) for p in params]
    h = torch.tanh(torch.tensor(x) @ theirs[0] + theirs[1])
    expected = torch.nn.functional.cross_entropy(h @ theirs[2] + theirs[3], torch.tensor(target))
    for g, e in zip(ours, torch.autograd.grad(expected, theirs), strict=True):
        assert np.abs(g).max() > 1e-4
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-10, atol=1e-13)
    # and the composed loss itself is torch's (the value, through the same grad-check harness)
    grad_check(lambda o, *a: loss(o, *a), [x, *params, target])


def test_fully_masked_row_has_zero_gradient() -> None:
    """logsumexp of a row that is all -inf is -inf with a zero gradient, never NaN (design note); other rows,
    partly -inf included, match torch.logsumexp."""
    r = np.random.default_rng()
    z = r.standard_normal((3, 4))
    z[1] = -math.inf
    z[2, [0, 3]] = -math.inf
    w = r.standard_normal((3, 1))
    (g,) = scalar_program(lambda o, z, w: (o.sum(o.mul(log_softmax_rows(o, z, (3, 4))[0], w), [0, 1]), [z]), z, w)
    assert np.all(np.isfinite(g)) and not g[1].any()
    tz = torch.tensor(z[[0, 2]], requires_grad=True)
    (expected,) = torch.autograd.grad((torch.logsumexp(tz, 1, keepdim=True) * torch.tensor(w[[0, 2]])).sum(), tz)
    np.testing.assert_allclose(g[[0, 2]], expected.numpy(), rtol=1e-12, atol=1e-15)
    assert g[0].any() and g[2, 1] != 0 and g[2, 0] == 0


# ---------------------------------------------------------------------------------------------------------------
# Locations and errors


def test_vjp_ops_carry_the_forward_location() -> None:
    """Every op the pass creates carries the location of the forward op it differentiates (the seed: pg.grad's)."""
    block = Block(arg_types=[pg.tensor_type((2, 3), f64)] * 2)
    o = PgOps(block)
    s = o.sum(o.amax(o.matmul(o.tanh(block.args[0]), o.permute(block.args[1], [1, 0])), [1]), [0])
    for line, op in enumerate(block.ops, start=1):  # tanh 1, permute 2, matmul 3, max 4, sum 5
        op.location = FileLineColLoc(StringAttr("model.py"), IntAttr(line), IntAttr(4))
    grad = pg.GradOp(s, list(block.args))
    grad.location = FileLineColLoc(StringAttr("model.py"), IntAttr(99), IntAttr(0))
    forward = set(block.ops)
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    fn = func.FuncOp("f", (block.arg_types, [r.type for r in grad.grads]), Region(block))
    PgAutodiff().apply(make_context(), ModuleOp([fn]))
    lines: dict[str, set[int]] = {}
    for op in block.ops:
        if op not in forward and not isinstance(op, func.ReturnOp):
            assert isinstance(op.location, FileLineColLoc), op
            lines.setdefault(op.name, set()).add(op.location.line.data)
    assert "pg.tanh" not in lines  # the vjp of tanh reuses the forward result
    assert lines["pg.cmp"] == {4}  # max: x == max
    # the matmul's vjp (3), and the weight's product computed transposed at the permute (2), with its transposes
    assert lines["pg.matmul"] == {2, 3} and lines["pg.permute"] == {2, 3}
    assert lines["pg.mul"] == {1} and lines["pg.sub"] == {1}  # tanh: g (1 - y^2)
    assert 99 in lines["pg.constant"] and {1, 4, 5, 99} >= lines["pg.broadcast_to"] >= {5}


def test_rejects_non_float_targets() -> None:
    """pg.grad's verifier refuses an integer wrt value; the pass refuses it too when it meets one unverified."""
    block = Block(arg_types=[pg.tensor_type((3,), i64), pg.tensor_type((), f64)])
    grad = pg.GradOp(block.args[1], [block.args[0]])  # building an op does not verify it
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([func.FuncOp("f", (block.arg_types, [grad.grads[0].type]), Region(block))])
    with pytest.raises(
        DiagnosticException, match=r"the wrt value is a tensor<3xi64>, but only float tensors have gradients"
    ):
        PgAutodiff().apply(make_context(), module)


def test_rejects_op_without_rule_on_the_path() -> None:
    """A func.call between wrt and root cannot be differentiated (calls are not inlined): a clear error."""
    t = pg.tensor_type((3,), f64)
    callee = func.FuncOp("g", ([t], [t]), Region(Block(arg_types=[t])))
    callee.body.block.add_op(func.ReturnOp(callee.body.block.args[0]))
    block = Block(arg_types=[t])
    o = PgOps(block)
    call = func.CallOp("g", [o.exp(block.args[0])], [t])
    block.add_op(call)
    grad = pg.GradOp(o.sum(call.res[0], [0]), [block.args[0]])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([callee, func.FuncOp("f", ([t], [t]), Region(block))])
    with pytest.raises(DiagnosticException, match="cannot differentiate through 'func.call'.* has no vjp rule"):
        PgAutodiff().apply(make_context(), module)


def test_op_without_rule_off_the_path_is_fine() -> None:
    """The same call on a value that does not depend on wrt is no obstacle."""
    t = pg.tensor_type((3,), f64)
    callee = func.FuncOp("g", ([t], [t]), Region(Block(arg_types=[t])))
    callee.body.block.add_op(func.ReturnOp(callee.body.block.args[0]))
    block = Block(arg_types=[t, t])
    o = PgOps(block)
    call = func.CallOp("g", [block.args[1]], [t])
    block.add_op(call)
    grad = pg.GradOp(o.sum(o.mul(call.res[0], block.args[0]), [0]), [block.args[0]])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([callee, func.FuncOp("f", ([t, t], [t]), Region(block))])
    PgAutodiff().apply(make_context(), module)
    module.verify()


def test_rejects_region_op_reading_wrt_inside() -> None:
    """An op whose region reads x (not as an operand) is on the path too: refused, not silently cut to zero."""
    t = pg.tensor_type((3,), f64)
    block = Block(arg_types=[t])
    inner = Block()
    e = pg.ExpOp(block.args[0])
    inner.add_ops([e, scf.YieldOp(e.result)])
    region_op = scf.ExecuteRegionOp([t], Region(inner))
    block.add_op(region_op)
    grad = pg.GradOp(PgOps(block).sum(region_op.results[0], [0]), [block.args[0]])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([func.FuncOp("f", ([t], [t]), Region(block))])
    with pytest.raises(DiagnosticException, match="cannot differentiate through 'scf.execute_region'"):
        PgAutodiff().apply(make_context(), module)


def test_split_slices_join_into_a_concat() -> None:
    """The adjoints of the slices that split x (rows 0-1 and 4-5 of 7, and rows 2-3 untouched) are one concat (with
    zeros for rows 2-3) padded with a row: no pad of a slice's adjoint is left, and no sum of full-size tensors."""
    block = Block(arg_types=[pg.tensor_type((7, 3), f64)])
    o = PgOps(block)
    (x,) = block.args
    root = o.sum(o.concat([o.slice(x, [0, 0], [2, 3], [1, 1]), o.exp(o.slice(x, [4, 0], [6, 3], [1, 1]))], 0), [0, 1])
    grad = pg.GradOp(root, [x])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([func.FuncOp("f", (block.arg_types, [r.type for r in grad.grads]), Region(block))])
    PgAutodiff().apply(make_context(), module)
    module.verify()
    ops = [op for op in block.ops if op.result_types and pg.shape_of(op.results[0]) == (7, 3)]
    assert [type(op) for op in ops] == [pg.PadOp], [op.name for op in ops]
    (pad,) = ops
    assert isinstance(pad.input.owner, pg.ConcatOp) and len(pad.input.owner.inputs) == 3
    assert pad.low.get_values() == (0, 0) and pad.high.get_values() == (1, 0)


def test_products_of_a_shared_weight_join_into_one_matmul() -> None:
    """y = sum_k x_k @ w: dw is one matmul of the concatenated x_k (transposed) and the concatenated adjoints."""
    block = Block(arg_types=[pg.tensor_type((3, 5), f64)] + [pg.tensor_type((2, 3), f64)] * 3)
    o = PgOps(block)
    w, *xs = block.args
    y = o.add(o.add(o.matmul(xs[0], w), o.matmul(xs[1], w)), o.matmul(xs[2], w))
    grad = pg.GradOp(o.sum(o.tanh(y), [0, 1]), [w])
    block.add_ops([grad, func.ReturnOp(*grad.grads)])
    module = ModuleOp([func.FuncOp("f", (block.arg_types, [r.type for r in grad.grads]), Region(block))])
    PgAutodiff().apply(make_context(), module)
    module.verify()
    products = [op for op in block.ops if isinstance(op, pg.MatmulOp) and pg.shape_of(op.result) == (3, 5)]
    assert len(products) == 1 and pg.shape_of(products[0].lhs) == (3, 6)
    assert not any(isinstance(op, pg.AddOp) and pg.shape_of(op.result) == (3, 5) for op in block.ops)
