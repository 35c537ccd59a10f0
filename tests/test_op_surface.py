"""The operator surface of issue 20, one row per op (``OPS``), each checked four ways:

- forward in float64 against numpy (``ref``) and against PyTorch (``torch==2.13``);
- the gradient of ``sum(out * w)`` (random ``w``) against PyTorch autograd and against central finite differences
  of the float64 reference, on fresh random inputs kept away from kinks and ties;
- lowering: the traced forward and backward (``cut`` + the pipeline to the ``simplify`` stage, float32, tiny
  shapes) runs on the loop-stage interpreter and, as PTX that ``ptxas -arch=sm_90`` assembles, on the PTX emulator;
  both must match the numpy executor.

Plus the semantics that rows do not show: data-dependent shapes under ``@pg.compile``, named tuples, the accuracy of
the new GPU math against mpmath, and error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath as mp
import numpy as np
import picograd.nn.functional as F
import pytest
import torch
from _ptx_emulator import run_program
from test_loops import to_loops

import picograd as pg
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.frontend.graph import cut
from picograd.frontend.realize import lower_graph
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func
from picograd.target import gpu_math

TF = torch.nn.functional
Inputs = Callable[[np.random.Generator], list[np.ndarray]]


@dataclass
class Op:
    """One op: ``pg``/``torch`` compute it from tensors (a tensor, or a tuple whose float first element carries the
    gradient), ``ref`` from float64 numpy arrays (None: PyTorch in float64 is the reference), ``inputs`` draws the
    arrays (float64 and int64)."""

    pg: Callable[..., Any]
    torch: Callable[..., Any]
    inputs: Inputs
    ref: Callable[..., Any] | None = None
    grad: bool = True
    fd: bool = True
    lower: bool = True
    rtol: float = 1e-10
    grad_rtol: float = 1e-9
    const: tuple[int, ...] = ()  # float inputs that do not require grad (PyTorch refuses gradients for them)


def normal(*shape: int, scale: float = 1.0) -> Inputs:
    return lambda r: [scale * r.standard_normal(shape)]


def uniform(lo: float, hi: float, *shape: int) -> Inputs:
    return lambda r: [r.uniform(lo, hi, shape)]


def around(kinks: Sequence[float], lo: float, hi: float, *shape: int) -> Inputs:
    """Values in [lo, hi] on every side of the ``kinks`` in turn (each piece gets some: a gradient that is zero on
    one piece cannot make the check vacuous), at least 0.05 from a kink (finite differences never straddle one)."""
    edges = [lo, *kinks, hi]
    n = int(np.prod(shape))

    def draw(r: np.random.Generator) -> list[np.ndarray]:
        piece = np.arange(n) % (len(edges) - 1)
        x = r.uniform(np.take(edges, piece) + 0.05, np.take(edges, piece + 1) - 0.05)
        return [r.permutation(x).reshape(shape)]

    return draw


def distinct(*shape: int) -> Inputs:
    """Values far apart (no ties, finite differences never reorder them)."""
    n = int(np.prod(shape))
    return lambda r: [(r.permutation(n) * 0.5 + r.uniform(0, 0.1, n)).reshape(shape) - 0.25 * n]


def off_integers(*shape: int) -> Inputs:
    def draw(r: np.random.Generator) -> list[np.ndarray]:
        whole = r.choice([-3.0, -2.0, 1.0, 2.0], shape)
        return [whole + r.choice([0.15, 0.3, 0.7, 0.85], shape) * np.sign(whole)]

    return draw


def with_index(x_shape: tuple[int, ...], index_shape: tuple[int, ...], high: int, src: bool = False) -> Inputs:
    def draw(r: np.random.Generator) -> list[np.ndarray]:
        out = [r.standard_normal(x_shape), r.integers(0, high, index_shape)]
        return out + [r.standard_normal(index_shape)] if src else out

    return draw


def unique_index(x_shape: tuple[int, int], rows: int) -> Inputs:
    """x (n, m), a dim-0 index (rows, m) with distinct entries per column, src (rows, m)."""

    def draw(r: np.random.Generator) -> list[np.ndarray]:
        idx = np.stack([r.permutation(x_shape[0])[:rows] for _ in range(x_shape[1])], axis=1)
        return [r.standard_normal(x_shape), idx, r.standard_normal((rows, x_shape[1]))]

    return draw


def _np_scan(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, axis: int) -> np.ndarray:
    return fn.accumulate(x, axis=axis)  # type: ignore[attr-defined]


def _np_logcumsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    return np.logaddexp.accumulate(x, axis=axis)


def _np_cummax_indices(x: np.ndarray) -> np.ndarray:  # along the last axis, the last index among ties
    out = np.zeros(x.shape, np.int64)
    for idx in np.ndindex(x.shape[:-1]):
        best = 0
        for k in range(x.shape[-1]):
            if x[idx + (k,)] >= x[idx + (best,)]:
                best = k
            out[idx + (k,)] = best
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


OPS: dict[str, Op] = {
    # -- new elementwise math (pg ops with loop and PTX lowering); piecewise-constant ones as factors x * f(x)
    **{
        name: Op(
            lambda x, name=name: x * getattr(x, name)(),
            lambda x, name=name: x * getattr(torch, name)(x),
            off_integers(2, 3),
            lambda x, fn=fn: x * fn(x),
        )
        for name, fn in {
            "floor": np.floor,
            "ceil": np.ceil,
            "round": np.rint,
            "trunc": np.trunc,
            "sign": np.sign,
        }.items()
    },
    "round-ties": Op(
        lambda x: x.round(), torch.round, lambda r: [np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.49])], np.rint, grad=False
    ),
    "round-decimals": Op(
        lambda x: x.round(decimals=2),
        lambda x: torch.round(x, decimals=2),
        uniform(-5, 5, 2, 3),
        lambda x: np.round(x, 2),
        grad=False,
    ),
    "log2": Op(lambda x: x.log2(), torch.log2, uniform(0.2, 5, 2, 3), np.log2),
    "exp2": Op(lambda x: x.exp2(), torch.exp2, normal(2, 3, scale=3), np.exp2),
    "log1p": Op(lambda x: x.log1p(), torch.log1p, uniform(-0.9, 3, 2, 3), np.log1p),
    "expm1": Op(lambda x: x.expm1(), torch.expm1, normal(2, 3, scale=2), np.expm1),
    "asin": Op(lambda x: x.asin(), torch.asin, uniform(-0.95, 0.95, 2, 3), np.arcsin),
    "acos": Op(lambda x: x.acos(), torch.acos, uniform(-0.95, 0.95, 2, 3), np.arccos),
    "atan": Op(lambda x: x.atan(), torch.atan, normal(2, 3, scale=3), np.arctan),
    "asinh": Op(lambda x: x.asinh(), torch.asinh, normal(2, 3, scale=3), np.arcsinh),
    "acosh": Op(lambda x: x.acosh(), torch.acosh, uniform(1.1, 6, 2, 3), np.arccosh),
    "atanh": Op(lambda x: x.atanh(), torch.atanh, uniform(-0.95, 0.95, 2, 3), np.arctanh),
    "atan2": Op(
        lambda y, x: pg.atan2(y, x),
        torch.atan2,
        lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))],
        np.arctan2,
    ),
    "copysign": Op(
        lambda x, y: x.copysign(y) + y * y,
        lambda x, y: torch.copysign(x, y) + y * y,
        lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3))],
        lambda x, y: np.copysign(x, y) + y * y,
    ),
    "div-trunc": Op(
        lambda x, y: x * x.div(y, rounding_mode="trunc"),
        lambda x, y: x * torch.div(x, y, rounding_mode="trunc"),
        lambda r: [off_integers(2, 3)(r)[0] * 3, np.full((2, 3), 1.5) * r.choice([-1, 1], (2, 3))],
        lambda x, y: x * np.trunc(x / y),
        fd=False,
    ),
    "div-floor": Op(
        lambda x, y: x * x.div(y, rounding_mode="floor"),
        lambda x, y: x * torch.div(x, y, rounding_mode="floor"),
        lambda r: [off_integers(2, 3)(r)[0] * 3, np.full((2, 3), 1.5) * r.choice([-1, 1], (2, 3))],
        lambda x, y: x * np.floor(x / y),
        fd=False,
    ),
    "div-int": Op(
        lambda a, b: a.div(b, rounding_mode="trunc") * 100 + a.div(b, rounding_mode="floor") + a // b * 7,
        lambda a, b: torch.div(a, b, rounding_mode="trunc") * 100 + torch.div(a, b, rounding_mode="floor") + a // b * 7,
        lambda r: [r.integers(-20, 20, (3, 4)), r.integers(1, 6, (3, 4)) * r.choice([-1, 1], (3, 4))],
        lambda a, b: np.trunc(a / b).astype(np.int64) * 100 + a // b + a // b * 7,
        grad=False,
    ),
    "bitwise-int": Op(
        lambda a, b: (a & b) * 1000 + (a | b) * 100 + (a ^ b) * 10 + (~a),
        lambda a, b: (a & b) * 1000 + (a | b) * 100 + (a ^ b) * 10 + (~a),
        lambda r: [r.integers(-9, 9, (3, 4)), r.integers(-9, 9, (3, 4))],
        lambda a, b: (a & b) * 1000 + (a | b) * 100 + (a ^ b) * 10 + (~a),
        grad=False,
    ),
    "bitwise-bool": Op(
        lambda a, b: ((a > 0) & (b > 0)).long() * 100 + ((a > 0) | (b > 0)).long() * 10 + ((a > 0) ^ ~(b > 0)).long(),
        lambda a, b: ((a > 0) & (b > 0)).long() * 100 + ((a > 0) | (b > 0)).long() * 10 + ((a > 0) ^ ~(b > 0)).long(),
        lambda r: [r.integers(-3, 3, (3, 4)), r.integers(-3, 3, (3, 4))],
        lambda a, b: ((a > 0) & (b > 0)) * 100 + ((a > 0) | (b > 0)) * 10 + ((a > 0) ^ ~(b > 0)),
        grad=False,
    ),
    # -- reductions
    "max-dim": Op(lambda x: x.max(1), lambda x: torch.max(x, 1), distinct(3, 4), lambda x: (x.max(1), x.argmax(1))),
    "min-dim-keepdim": Op(
        lambda x: x.min(0, keepdim=True),
        lambda x: torch.min(x, 0, keepdim=True),
        distinct(3, 4),
        lambda x: (x.min(0, keepdims=True), x.argmin(0, keepdims=True)),
    ),
    "amax-ties": Op(
        lambda x: x.amax(1),
        lambda x: torch.amax(x, 1),
        lambda r: [np.round(r.standard_normal((3, 4)))],
        lambda x: x.max(1),
        fd=False,
    ),
    "prod": Op(lambda x: x.prod(1), lambda x: torch.prod(x, 1), uniform(0.5, 1.5, 3, 5), lambda x: x.prod(1)),
    "prod-all-zero": Op(
        lambda x: x.prod(),
        lambda x: torch.prod(x),
        lambda r: [np.where(np.arange(6).reshape(2, 3) == 4, 0.0, r.uniform(0.5, 1.5, (2, 3)))],
        lambda x: x.prod(),
    ),
    "prod-keepdim": Op(
        lambda x: x.prod(0, keepdim=True),
        lambda x: torch.prod(x, 0, keepdim=True),
        uniform(-1.5, 1.5, 3, 2),
        lambda x: x.prod(0, keepdims=True),
    ),
    "all-any": Op(
        lambda x: pg.all(x > 0, 1).long() * 2 + (x > 1).any(1).long() + (x > -9).all().long() * 10,
        lambda x: torch.all(x > 0, 1).long() * 2 + (x > 1).any(1).long() + (x > -9).all().long() * 10,
        normal(3, 4),
        lambda x: np.all(x > 0, 1) * 2 + np.any(x > 1, 1) + np.all(x > -9) * 10,
        grad=False,
    ),
    "var_mean": Op(
        lambda x: pg.var_mean(x, 1)[0] + pg.var_mean(x, 1)[1],
        lambda x: sum(torch.var_mean(x, 1)),
        normal(3, 4),
        lambda x: x.var(1, ddof=1) + x.mean(1),
    ),
    "std_mean": Op(
        lambda x: pg.std_mean(x, 0, correction=0)[0] * pg.std_mean(x, 0)[1],
        lambda x: torch.std_mean(x, 0, correction=0)[0] * torch.std_mean(x, 0)[1],
        normal(3, 4),
        lambda x: x.std(0) * x.mean(0),
    ),
    # -- scans
    "cumsum": Op(lambda x: x.cumsum(1), lambda x: torch.cumsum(x, 1), normal(2, 5), lambda x: np.cumsum(x, 1)),
    "cumsum-int": Op(
        lambda a: a.cumsum(0),
        lambda a: torch.cumsum(a, 0),
        lambda r: [r.integers(-5, 5, (6, 2))],
        lambda a: np.cumsum(a, 0),
        grad=False,
    ),
    "cumprod": Op(
        lambda x: x.cumprod(0), lambda x: torch.cumprod(x, 0), uniform(-1.5, 1.5, 5, 2), lambda x: np.cumprod(x, 0)
    ),
    "logcumsumexp": Op(
        lambda x: x.logcumsumexp(-1),
        lambda x: torch.logcumsumexp(x, -1),
        normal(2, 6, scale=3),
        lambda x: _np_logcumsumexp(x, -1),
    ),
    "cummax": Op(
        lambda x: x.cummax(1),
        lambda x: torch.cummax(x, 1),
        lambda r: [np.round(2 * r.standard_normal((2, 7))) + r.choice([0, 0.25], (2, 7))],
        lambda x: (np.maximum.accumulate(x, 1), _np_cummax_indices(x)),
        fd=False,
    ),
    "cummin": Op(
        lambda x: x.cummin(0),
        lambda x: torch.cummin(x, 0),
        distinct(5, 2),
        lambda x: (np.minimum.accumulate(x, 0), _np_cummax_indices(-x.T).T),
    ),
    # -- sorting
    "sort": Op(
        lambda x: x.sort(1), lambda x: torch.sort(x, 1), distinct(3, 5), lambda x: (np.sort(x, 1), np.argsort(x, 1))
    ),
    "sort-descending": Op(
        lambda x: pg.sort(x, 0, descending=True),
        lambda x: torch.sort(x, 0, descending=True),
        distinct(4, 3),
        lambda x: (-np.sort(-x, 0), np.argsort(-x, 0)),
    ),
    "argsort-stable": Op(
        lambda x: x.argsort(-1, stable=True),
        lambda x: torch.argsort(x, dim=-1, stable=True),
        lambda r: [r.integers(0, 3, (2, 6)).astype(np.float64)],
        lambda x: np.argsort(x, -1, kind="stable"),
        grad=False,
    ),
    # -- dim-wise gather and scatter
    "gather": Op(
        lambda x, i: x.gather(1, i),
        lambda x, i: torch.gather(x, 1, i),
        with_index((3, 4), (3, 6), 4),
        lambda x, i: np.take_along_axis(x, i, 1),
    ),
    "gather-smaller": Op(
        lambda x, i: pg.gather(x, 0, i), lambda x, i: torch.gather(x, 0, i), with_index((4, 3), (2, 2), 4)
    ),
    "scatter_add": Op(
        lambda x, i, s: x.scatter_add(0, i, s),
        lambda x, i, s: torch.scatter_add(x, 0, i, s),
        with_index((4, 3), (5, 3), 4, src=True),
    ),
    "scatter": Op(
        lambda x, i, s: x.scatter(0, i, s), lambda x, i, s: torch.scatter(x, 0, i, s), unique_index((4, 3), 2)
    ),
    "scatter-value": Op(
        lambda x, i, s: x.scatter(0, i, value=2.5) * s.sum(),
        lambda x, i, s: torch.scatter(x, 0, i, 2.5) * s.sum(),
        unique_index((4, 3), 2),
    ),
    **{
        f"scatter_reduce-{red}{'-self' if inc else ''}": Op(
            lambda x, i, s, red=red, inc=inc: x.scatter_reduce(0, i, s, red, include_self=inc),
            lambda x, i, s, red=red, inc=inc: torch.scatter_reduce(x, 0, i, s, red, include_self=inc),
            with_index((3, 2), (5, 2), 3, src=True),
            fd=red not in ("amax", "amin"),
        )
        for red in ("sum", "prod", "mean", "amax", "amin")
        for inc in (True, False)
    },
    # -- movement
    "repeat": Op(
        lambda x: x.repeat(2, 1, 3), lambda x: x.repeat(2, 1, 3), normal(2, 3), lambda x: np.tile(x, (2, 1, 3))
    ),
    "tile": Op(lambda x: x.tile((2,)), lambda x: torch.tile(x, (2,)), normal(2, 3), lambda x: np.tile(x, 2)),
    "flip": Op(
        lambda x: x.flip((0, 2)), lambda x: torch.flip(x, (0, 2)), normal(2, 3, 4), lambda x: np.flip(x, (0, 2))
    ),
    "roll": Op(
        lambda x: x.roll((1, -2), (0, 1)),
        lambda x: torch.roll(x, (1, -2), (0, 1)),
        normal(3, 4),
        lambda x: np.roll(x, (1, -2), (0, 1)),
    ),
    "roll-flat": Op(lambda x: pg.roll(x, 5), lambda x: torch.roll(x, 5), normal(3, 4), lambda x: np.roll(x, 5)),
    # -- comparison
    "isclose": Op(
        lambda x, y: pg.isclose(x, y, rtol=0.1, atol=0.05).long(),
        lambda x, y: torch.isclose(x, y, rtol=0.1, atol=0.05).long(),
        lambda r: [x := r.standard_normal((3, 4)), x + r.choice([0, 0.01, 0.5], (3, 4))],
        lambda x, y: np.isclose(x, y, rtol=0.1, atol=0.05),
        grad=False,
    ),
    # -- einsum
    **{
        f"einsum-{eq}": Op(
            lambda *xs, eq=eq: pg.einsum(eq, *xs),
            lambda *xs, eq=eq: torch.einsum(eq, *xs),
            lambda r, shapes=shapes: [r.standard_normal(s) for s in shapes],
            lambda *xs, eq=eq: np.einsum(eq, *xs),
        )
        for eq, shapes in {
            "ij,jk->ik": [(2, 3), (3, 4)],
            "bij,bkj->bki": [(2, 3, 4), (2, 5, 4)],
            "ii->i": [(3, 3)],
            "ij->": [(2, 3)],
            "i,j": [(3,), (2,)],
            "...ij,jk": [(2, 2, 3), (3, 2)],
            "ij,jk,kl->il": [(2, 3), (3, 4), (4, 2)],
            "bik,ik->bi": [(2, 3, 4), (3, 4)],
        }.items()
    },
    # -- losses
    "nll_loss": Op(
        lambda x, t: F.nll_loss(x.log_softmax(1), t),
        lambda x, t: TF.nll_loss(x.log_softmax(1), t),
        lambda r: [r.standard_normal((4, 5)), r.integers(0, 5, 4)],
    ),
    "nll_loss-weight-ignore": Op(
        lambda x, t, w: F.nll_loss(x.log_softmax(1), t, weight=w.abs() + 0.5, ignore_index=1),
        lambda x, t, w: TF.nll_loss(x.log_softmax(1), t, weight=w.abs() + 0.5, ignore_index=1),
        lambda r: [r.standard_normal((5, 3)), np.array([0, 1, 2, 2, 1]), r.standard_normal(3)],
        const=(2,),
    ),
    "nll_loss-2d-sum": Op(
        lambda x, t: F.nll_loss(x, t, reduction="sum"),
        lambda x, t: TF.nll_loss(x, t, reduction="sum"),
        lambda r: [r.standard_normal((2, 3, 4)), r.integers(0, 3, (2, 4))],
    ),
    "cross_entropy-probs": Op(
        lambda x, p: F.cross_entropy(x, p.softmax(1)),
        lambda x, p: TF.cross_entropy(x, p.softmax(1)),
        lambda r: [r.standard_normal((4, 5)), r.standard_normal((4, 5))],
    ),
    "cross_entropy-probs-smooth-weight": Op(
        lambda x, p, w: F.cross_entropy(x, p.softmax(1), weight=w.abs(), label_smoothing=0.2, reduction="none"),
        lambda x, p, w: TF.cross_entropy(x, p.softmax(1), weight=w.abs(), label_smoothing=0.2, reduction="none"),
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)), r.standard_normal(4)],
    ),
    "cross_entropy-smooth": Op(
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
        lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1),
        lambda r: [r.standard_normal((4, 5)), r.integers(0, 5, 4)],
    ),
    "cross_entropy-smooth-weight-ignore": Op(
        lambda x, t, w: F.cross_entropy(x, t, weight=w.abs() + 0.5, ignore_index=0, label_smoothing=0.3),
        lambda x, t, w: TF.cross_entropy(x, t, weight=w.abs() + 0.5, ignore_index=0, label_smoothing=0.3),
        lambda r: [r.standard_normal((5, 4)), np.array([0, 1, 2, 3, 1]), r.standard_normal(4)],
        const=(2,),
    ),
    "cross_entropy-2d-smooth-sum": Op(
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"),
        lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"),
        lambda r: [r.standard_normal((2, 3, 4)), r.integers(0, 3, (2, 4))],
    ),
    "binary_cross_entropy": Op(
        lambda x, t, w: F.binary_cross_entropy(x.sigmoid(), t.sigmoid(), weight=w),
        lambda x, t, w: TF.binary_cross_entropy(x.sigmoid(), t.sigmoid(), weight=w),
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)), r.standard_normal(4)],
        const=(2,),
    ),
    "binary_cross_entropy_with_logits": Op(
        lambda x, t, p: F.binary_cross_entropy_with_logits(x, t.sigmoid(), pos_weight=p.abs(), reduction="sum"),
        lambda x, t, p: TF.binary_cross_entropy_with_logits(x, t.sigmoid(), pos_weight=p.abs(), reduction="sum"),
        lambda r: [3 * r.standard_normal((3, 4)), r.standard_normal((3, 4)), r.standard_normal(4)],
        const=(2,),
    ),
    # -- activations
    **{
        # torch's double hardsigmoid and celu gradients use float32 constants (1/6, 1/alpha): 3e-8 relative
        name: Op(
            getattr(F, name),
            getattr(TF, name),
            lambda r: [3 * r.standard_normal((3, 4))],
            ref,
            grad_rtol=1e-7 if name == "hardsigmoid" else 1e-9,
        )
        for name, ref in {
            "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
            "celu": lambda x: np.where(x > 0, x, np.expm1(x)),
            "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
            "hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
            "hardswish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
            "softsign": lambda x: x / (1 + np.abs(x)),
            "softplus": _softplus,
            "logsigmoid": lambda x: -_softplus(-x),
            "mish": lambda x: x * np.tanh(_softplus(x)),
        }.items()
    },
    "elu-alpha": Op(lambda x: F.elu(x, 0.7), lambda x: TF.elu(x, 0.7), normal(3, 4, scale=2)),
    "celu-alpha": Op(lambda x: F.celu(x, 1.7), lambda x: TF.celu(x, 1.7), normal(3, 4, scale=2), grad_rtol=1e-7),
    "softplus-beta": Op(lambda x: F.softplus(x, 2.0, 4.0), lambda x: TF.softplus(x, 2.0, 4.0), normal(3, 4, scale=3)),
    "leaky_relu-slope": Op(lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), normal(3, 4)),
}


def _pair(scale: float = 1.0, shape: tuple[int, ...] = (3, 4)) -> Inputs:
    return lambda r: [scale * r.standard_normal(shape), scale * r.standard_normal(shape)]


def _loop(*shapes: tuple[int, ...]) -> Inputs:
    return lambda r: [r.standard_normal(s) for s in shapes]


def _same(name: str, *args: Any, **kwargs: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``pg.name(x, ...)`` and ``torch.name(x, ...)``."""
    return (lambda *xs: getattr(pg, name)(*xs, *args, **kwargs), lambda *xs: getattr(torch, name)(*xs, *args, **kwargs))


def _same_f(name: str, *args: Any, **kwargs: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``F.name(x, ...)`` and ``torch.nn.functional.name(x, ...)``."""
    return (lambda *xs: getattr(F, name)(*xs, *args, **kwargs), lambda *xs: getattr(TF, name)(*xs, *args, **kwargs))


# The second batch: compositions of ops already lowered above; they are checked forward and backward one by one,
# and lowered in bundles (BUNDLES below) so that the loop interpreter and the PTX emulator run them too.
MORE: dict[str, tuple[tuple[Callable[..., Any], Callable[..., Any]], Inputs, dict[str, Any]]] = {
    "add-alpha": (_same("add", alpha=2.5), _pair(), {}),
    "sub-alpha": (_same("sub", alpha=0.5), _pair(), {}),
    "mul": (_same("mul"), _pair(), {}),
    "true_divide": (_same("true_divide"), lambda r: [r.standard_normal((3, 4)), r.uniform(0.5, 2, (3, 4))], {}),
    "remainder": (
        _same("remainder"),
        lambda r: [3 * r.standard_normal((3, 4)), r.uniform(0.5, 2, (3, 4)) * r.choice([-1, 1], (3, 4))],
        {"fd": False},
    ),
    "fmod": (
        _same("fmod"),
        lambda r: [3 * r.standard_normal((3, 4)), r.uniform(0.5, 2, (3, 4)) * r.choice([-1, 1], (3, 4))],
        {"fd": False},
    ),
    "remainder-int": (
        _same("remainder"),
        lambda r: [r.integers(-9, 9, (3, 4)), r.integers(1, 4, (3, 4)) * r.choice([-1, 1], (3, 4))],
        {"grad": False},
    ),
    "square": (_same("square"), normal(3, 4), {}),
    "sinh": (_same("sinh"), normal(3, 4, scale=2), {}),
    "cosh": (_same("cosh"), normal(3, 4, scale=2), {}),
    "tan": (_same("tan"), uniform(-1.2, 1.2, 3, 4), {}),
    "log10": (_same("log10"), uniform(0.1, 9, 3, 4), {}),
    "logaddexp": (_same("logaddexp"), _pair(3.0), {}),
    "logaddexp2": (_same("logaddexp2"), _pair(3.0), {}),
    "hypot": (_same("hypot"), _pair(), {}),
    "deg2rad-rad2deg": (
        (lambda x: pg.deg2rad(x) + pg.rad2deg(x), lambda x: torch.deg2rad(x) + torch.rad2deg(x)),
        normal(3, 4),
        {},
    ),
    "frac": ((lambda x: x * pg.frac(x), lambda x: x * torch.frac(x)), off_integers(3, 4), {}),
    "signbit": (
        (lambda x: pg.signbit(x).long(), lambda x: torch.signbit(x).long()),
        lambda r: [np.array([-1.0, -0.0, 0.0, 2.0, -np.inf])],
        {"grad": False},
    ),
    "xlogy": (
        _same("xlogy"),
        lambda r: [
            np.where(np.arange(12).reshape(3, 4) % 4 == 0, 0.0, r.standard_normal((3, 4))),
            r.uniform(0.2, 3, (3, 4)),
        ],
        {},
    ),
    "lerp": (_same("lerp"), _loop((3, 4), (3, 4), (3, 4)), {}),
    "addcmul": (_same("addcmul", value=0.5), _loop((3, 4), (3, 4), (4,)), {}),
    "addcdiv": (
        _same("addcdiv", value=2.0),
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)), r.uniform(0.5, 2, (3, 4))],
        {},
    ),
    "nan_to_num": (
        (lambda x: pg.nan_to_num(x, posinf=9.0) * 2, lambda x: torch.nan_to_num(x, posinf=9.0) * 2),
        lambda r: [np.array([1.0, np.nan, np.inf, -np.inf, -2.0])],
        {"grad": False},
    ),
    "logit": (_same("logit", eps=0.1), uniform(0.15, 0.85, 3, 4), {}),
    "float_power": (_same("float_power"), lambda r: [r.uniform(0.5, 2, (3, 4)), r.standard_normal((3, 4))], {}),
    "logical": (
        (
            lambda a, b: pg.logical_and(a, b).long() * 4 + pg.logical_or(a, b).long() * 2 + pg.logical_xor(a, b).long(),
            lambda a, b: (
                torch.logical_and(a, b).long() * 4 + torch.logical_or(a, b).long() * 2 + torch.logical_xor(a, b).long()
            ),
        ),
        lambda r: [r.integers(-1, 2, (3, 4)), r.integers(-1, 2, (3, 4))],
        {"grad": False},
    ),
    "comparisons": (
        (
            lambda a, b: sum(
                getattr(pg, n)(a, b).long() * 2**k
                for k, n in enumerate(["eq", "ne", "lt", "le", "gt", "ge", "greater", "less_equal"])
            ),
            lambda a, b: sum(
                getattr(torch, n)(a, b).long() * 2**k
                for k, n in enumerate(["eq", "ne", "lt", "le", "gt", "ge", "greater", "less_equal"])
            ),
        ),
        lambda r: [r.integers(-1, 2, (3, 4)).astype(np.float64), r.integers(-1, 2, (3, 4)).astype(np.float64)],
        {"grad": False},
    ),
    "isnan-isinf": (
        (
            lambda x: (
                pg.isnan(x).long() * 8
                + pg.isinf(x).long() * 4
                + pg.isfinite(x).long() * 2
                + pg.isposinf(x).long()
                + pg.isneginf(x).long() * 16
            ),
            lambda x: (
                torch.isnan(x).long() * 8
                + torch.isinf(x).long() * 4
                + torch.isfinite(x).long() * 2
                + torch.isposinf(x).long()
                + torch.isneginf(x).long() * 16
            ),
        ),
        lambda r: [np.array([1.0, np.nan, np.inf, -np.inf, 0.0])],
        {"grad": False},
    ),
    "fmax-fmin": (
        (lambda a, b: pg.fmax(a, b) * 2 + pg.fmin(a, b), lambda a, b: torch.fmax(a, b) * 2 + torch.fmin(a, b)),
        lambda r: [
            r.standard_normal((3, 4)),
            np.where(np.arange(12).reshape(3, 4) % 5 == 0, np.nan, r.standard_normal((3, 4))),
        ],
        {"fd": False},
    ),
    "msort": (_same("msort"), distinct(4, 3), {}),
    "count_nonzero": (_same("count_nonzero", dim=1), lambda r: [r.integers(-1, 2, (3, 4))], {"grad": False}),
    "nansum-nanmean": (
        (lambda x: pg.nansum(x, 1) + pg.nanmean(x, 1), lambda x: torch.nansum(x, 1) + torch.nanmean(x, 1)),
        lambda r: [np.where(np.arange(12).reshape(3, 4) % 5 == 0, np.nan, r.standard_normal((3, 4)))],
        {"fd": False},
    ),
    "aminmax": (
        (
            lambda x: pg.aminmax(x, dim=1)[0] * 2 + pg.aminmax(x, dim=1)[1],
            lambda x: torch.aminmax(x, dim=1)[0] * 2 + torch.aminmax(x, dim=1)[1],
        ),
        distinct(3, 4),
        {},
    ),
    **{
        f"norm-{p}": ((lambda x, p=p: pg.norm(x, p, dim=1), lambda x, p=p: torch.norm(x, p, dim=1)), distinct(3, 4), {})
        for p in (1, 2, 3, float("inf"))
    },
    "norm-fro": (_same("norm"), normal(3, 4), {}),
    "dist": (_same("dist", p=3), _pair(), {}),
    "median": ((lambda x: pg.median(x), lambda x: torch.median(x)), distinct(3, 5), {}),
    "median-dim": ((lambda x: pg.median(x, 1), lambda x: torch.median(x, 1)), distinct(3, 5), {}),
    "mm": (_same("mm"), _loop((3, 4), (4, 2)), {}),
    "bmm": (_same("bmm"), _loop((2, 3, 4), (2, 4, 2)), {}),
    "mv": (_same("mv"), _loop((3, 4), (4,)), {}),
    "dot": (_same("dot"), _loop((4,), (4,)), {}),
    "inner": (_same("inner"), _loop((2, 4), (3, 4)), {}),
    "outer": (_same("outer"), _loop((3,), (4,)), {}),
    "addmm": (_same("addmm", beta=0.5, alpha=2.0), _loop((3, 2), (3, 4), (4, 2)), {}),
    "addmv": (_same("addmv"), _loop((3,), (3, 4), (4,)), {}),
    "addbmm": (_same("addbmm"), _loop((3, 2), (2, 3, 4), (2, 4, 2)), {}),
    "baddbmm": (_same("baddbmm", alpha=0.5), _loop((2, 3, 2), (2, 3, 4), (2, 4, 2)), {}),
    "addr": (_same("addr"), _loop((3, 4), (3,), (4,)), {}),
    "matrix_power": (
        (lambda x: pg.matrix_power(x, 5), lambda x: torch.linalg.matrix_power(x, 5)),
        normal(3, 3, scale=0.5),
        {},
    ),
    "chain_matmul": (
        (lambda a, b, c: pg.chain_matmul(a, b, c), lambda a, b, c: a @ b @ c),
        _loop((2, 3), (3, 4), (4, 2)),
        {},
    ),
    "tensordot": (_same("tensordot", dims=([1, 0], [2, 0])), _loop((3, 2, 4), (3, 5, 2)), {}),
    "kron": (_same("kron"), _loop((2, 3), (3, 2)), {}),
    "cross": (_same("cross", dim=1), _loop((2, 3), (2, 3)), {}),
    "trapezoid": (
        (
            lambda y, x: pg.trapezoid(y, x) + pg.trapezoid(y, dx=0.5),
            lambda y, x: torch.trapezoid(y, x) + torch.trapezoid(y, dx=0.5),
        ),
        _loop((3, 5), (3, 5)),
        {},
    ),
    "cdist": (_same("cdist"), _loop((3, 4), (2, 4)), {}),
    "cov-corrcoef": (
        (lambda x: pg.cov(x) + pg.corrcoef(x), lambda x: torch.cov(x) + torch.corrcoef(x)),
        normal(3, 6),
        {},
    ),
    "t-swapaxes-movedim": (
        (
            lambda x: pg.movedim(pg.swapaxes(x, 0, 2), 0, -1).reshape(-1)[:5] + pg.t(x[0]).reshape(-1)[:5],
            lambda x: torch.movedim(torch.swapaxes(x, 0, 2), 0, -1).reshape(-1)[:5] + torch.t(x[0]).reshape(-1)[:5],
        ),
        normal(2, 3, 4),
        {},
    ),
    "narrow-select": (
        (
            lambda x: pg.narrow(x, 1, 1, 2) * pg.select(x, 0, -1).reshape(1, 4)[:, :2],
            lambda x: torch.narrow(x, 1, 1, 2) * torch.select(x, 0, -1).reshape(1, 4)[:, :2],
        ),
        normal(3, 4),
        {},
    ),
    "index_select": (
        (lambda x, i: pg.index_select(x, 1, i), lambda x, i: torch.index_select(x, 1, i)),
        lambda r: [r.standard_normal((3, 4)), r.integers(0, 4, 5)],
        {},
    ),
    "take": (
        (lambda x, i: pg.take(x, i), lambda x, i: torch.take(x, i)),
        lambda r: [r.standard_normal((3, 4)), r.integers(0, 12, (2, 3))],
        {},
    ),
    "unbind-stack": (
        (
            lambda x: pg.hstack(pg.unbind(x, 1)) + pg.vstack(list(pg.unbind(x))).reshape(-1),
            lambda x: torch.hstack(torch.unbind(x, 1)) + torch.vstack(list(torch.unbind(x))).reshape(-1),
        ),
        normal(3, 4),
        {},
    ),
    "dstack-column_stack": (
        (
            lambda a, b: pg.dstack([a, b]).reshape(-1) + pg.column_stack([a.reshape(-1), b.reshape(-1)]).reshape(-1),
            lambda a, b: (
                torch.dstack([a, b]).reshape(-1) + torch.column_stack([a.reshape(-1), b.reshape(-1)]).reshape(-1)
            ),
        ),
        _pair(),
        {},
    ),
    "index_add": (
        (
            lambda x, s: x.index_add(0, pg.tensor([2, 0, 2]), s, alpha=2.0),
            lambda x, s: x.index_add(0, torch.tensor([2, 0, 2]), s, alpha=2.0),
        ),
        _loop((3, 4), (3, 4)),
        {},
    ),
    "fliplr-flipud-rot90": (
        (
            lambda x: pg.fliplr(x) + pg.flipud(x) + pg.rot90(x, 2) + pg.rot90(x, 1).T + pg.rot90(x, 3).T,
            lambda x: torch.fliplr(x) + torch.flipud(x) + torch.rot90(x, 2) + torch.rot90(x, 1).T + torch.rot90(x, 3).T,
        ),
        normal(3, 4),
        {},
    ),
    "diagonal-trace": (
        (
            lambda x: pg.diagonal(x, 1, 1, 2).sum(0) + pg.trace(x[0]),
            lambda x: torch.diagonal(x, 1, 1, 2).sum(0) + torch.trace(x[0]),
        ),
        normal(2, 3, 4),
        {},
    ),
    "diagonal-negative": ((lambda x: pg.diagonal(x, -1), lambda x: torch.diagonal(x, -1)), normal(4, 3), {}),
    "diag": (
        (
            lambda v: pg.diag(v, 1) + pg.diag(pg.diag(v, 1), 1).sum(),
            lambda v: torch.diag(v, 1) + torch.diag(torch.diag(v, 1), 1).sum(),
        ),
        normal(3),
        {},
    ),
    "diff": (_same("diff", n=2, dim=0), normal(5, 3), {}),
    "repeat_interleave": (
        (lambda x: pg.repeat_interleave(x, 2, 1) + 0, lambda x: torch.repeat_interleave(x, 2, 1)),
        normal(2, 3),
        {},
    ),
    "ravel-unflatten": (
        (lambda x: pg.unflatten(pg.ravel(x), 0, (4, 3)), lambda x: torch.unflatten(torch.ravel(x), 0, (4, 3))),
        normal(3, 4),
        {},
    ),
    "broadcast_tensors": (
        (
            lambda a, b: pg.broadcast_tensors(a, b)[0] * pg.broadcast_tensors(a, b)[1],
            lambda a, b: torch.broadcast_tensors(a, b)[0] * torch.broadcast_tensors(a, b)[1],
        ),
        _loop((3, 1), (4,)),
        {},
    ),
    "meshgrid-cartesian": (
        (
            lambda a, b: (
                pg.meshgrid(a, b, indexing="xy")[0] * pg.meshgrid(a, b, indexing="xy")[1]
                + pg.cartesian_prod(a, b).sum()
            ),
            lambda a, b: (
                torch.meshgrid(a, b, indexing="xy")[0] * torch.meshgrid(a, b, indexing="xy")[1]
                + torch.cartesian_prod(a, b).sum()
            ),
        ),
        _loop((3,), (4,)),
        {},
    ),
    "block_diag": (_same("block_diag"), _loop((2, 3), (1, 2)), {}),
    "bucketize-searchsorted": (
        (
            lambda x: (
                pg.bucketize(x, pg.tensor([-1.0, 0.0, 1.0])) * 10
                + pg.searchsorted(pg.tensor([-0.5, 0.5]), x.reshape(-1), right=True)
            ),
            lambda x: (
                torch.bucketize(x, torch.tensor([-1.0, 0.0, 1.0])) * 10
                + torch.searchsorted(torch.tensor([-0.5, 0.5]), x.reshape(-1), right=True)
            ),
        ),
        lambda r: [r.standard_normal(6)],
        {"grad": False},
    ),
    # functional
    "silu": (_same_f("silu"), normal(3, 4, scale=3), {}),
    "selu": (_same_f("selu"), normal(3, 4, scale=3), {}),
    "relu6": (_same_f("relu6"), around([0.0, 6.0], -3.0, 9.0, 3, 4), {}),
    "hardtanh": (_same_f("hardtanh", -0.5, 2.0), around([-0.5, 2.0], -4.0, 4.0, 3, 4), {}),
    "threshold": (_same_f("threshold", 0.3, -2.0), around([0.3], -2.5, 2.5, 3, 4), {}),
    "hardshrink": (_same_f("hardshrink", 0.4), normal(3, 4), {}),
    "softshrink": (_same_f("softshrink", 0.4), normal(3, 4), {}),
    "tanhshrink": (_same_f("tanhshrink"), normal(3, 4), {}),
    "softmin": (_same_f("softmin", dim=1), normal(3, 4), {}),
    "glu": (_same_f("glu", dim=0), normal(4, 3), {}),
    "normalize": (_same_f("normalize", p=3.0, dim=0), normal(3, 4), {}),
    "cosine_similarity": (_same_f("cosine_similarity"), _pair(), {}),
    "pairwise_distance": (_same_f("pairwise_distance"), _pair(), {}),
    "l1_loss": (_same_f("l1_loss"), _pair(), {}),
    "huber_loss": (_same_f("huber_loss", delta=0.7), _pair(), {}),
    "smooth_l1_loss": (_same_f("smooth_l1_loss", beta=0.7, reduction="sum"), _pair(), {}),
    "kl_div": (
        (
            lambda x, t: F.kl_div(x.log_softmax(1), t.softmax(1), reduction="batchmean"),
            lambda x, t: TF.kl_div(x.log_softmax(1), t.softmax(1), reduction="batchmean"),
        ),
        _pair(),
        {},
    ),
    "kl_div-log_target": (
        (
            lambda x, t: F.kl_div(x.log_softmax(1), t.log_softmax(1), log_target=True),
            lambda x, t: TF.kl_div(x.log_softmax(1), t.log_softmax(1), log_target=True),
        ),
        _pair(),
        {},
    ),
    "soft_margin_loss": (
        (lambda x, y: F.soft_margin_loss(x, y.sign()), lambda x, y: TF.soft_margin_loss(x, y.sign())),
        _pair(),
        {"const": (1,)},
    ),
    "margin_ranking_loss": (
        (
            lambda a, b, y: F.margin_ranking_loss(a, b, y.sign(), margin=1.0),
            lambda a, b, y: TF.margin_ranking_loss(a, b, y.sign(), margin=1.0),
        ),
        _loop((6,), (6,), (6,)),
        {"const": (2,)},
    ),
    "hinge_embedding_loss": (
        (lambda x, y: F.hinge_embedding_loss(x, y.sign()), lambda x, y: TF.hinge_embedding_loss(x, y.sign())),
        _pair(),
        {"const": (1,)},
    ),
    "poisson_nll_loss": (
        (
            lambda x, t: F.poisson_nll_loss(x, t.abs() * 3, full=True),
            lambda x, t: TF.poisson_nll_loss(x, t.abs() * 3, full=True),
        ),
        _pair(),
        {"const": (1,)},
    ),
    "gaussian_nll_loss": (
        (
            lambda x, t, v: F.gaussian_nll_loss(x, t, v.abs() + 0.1, full=True),
            lambda x, t, v: TF.gaussian_nll_loss(x, t, v.abs() + 0.1, full=True),
        ),
        _loop((3, 4), (3, 4), (3, 4)),
        {},
    ),
}
for _name, ((_pg, _torch), _inputs, _options) in MORE.items():
    OPS[_name] = Op(_pg, _torch, _inputs, lower=False, **_options)

# Lowering bundles: several second-batch ops in one traced step (forward and backward).
BUNDLE_NAMES = {
    "pointwise": [
        "add-alpha",
        "sub-alpha",
        "sinh",
        "cosh",
        "tan",
        "log10",
        "logaddexp",
        "hypot",
        "frac",
        "lerp",
        "float_power",
        "logit",
        "silu",
        "selu",
        "relu6",
        "hardtanh",
        "threshold",
        "hardshrink",
        "softshrink",
        "tanhshrink",
    ],
    "binary": ["remainder", "fmod", "xlogy", "addcdiv", "fmax-fmin", "logaddexp2", "true_divide"],
    "products": [
        "mm",
        "bmm",
        "mv",
        "dot",
        "inner",
        "outer",
        "addmm",
        "addbmm",
        "baddbmm",
        "addr",
        "matrix_power",
        "tensordot",
        "kron",
        "cross",
        "cdist",
        "cov-corrcoef",
        "trapezoid",
    ],
    "movement": [
        "t-swapaxes-movedim",
        "narrow-select",
        "index_select",
        "take",
        "unbind-stack",
        "dstack-column_stack",
        "index_add",
        "fliplr-flipud-rot90",
        "diagonal-trace",
        "diag",
        "diff",
        "repeat_interleave",
        "block_diag",
        "meshgrid-cartesian",
    ],
    "reductions": ["msort", "nansum-nanmean", "aminmax", "norm-3", "norm-inf", "dist", "median", "median-dim"],
    "losses": [
        "softmin",
        "glu",
        "normalize",
        "cosine_similarity",
        "pairwise_distance",
        "huber_loss",
        "kl_div",
        "soft_margin_loss",
        "poisson_nll_loss",
        "gaussian_nll_loss",
        "margin_ranking_loss",
    ],
    "integers": [
        "remainder-int",
        "logical",
        "comparisons",
        "count_nonzero",
        "bucketize-searchsorted",
        "isnan-isinf",
        "signbit",
    ],
}


def _bundle(names: list[str]) -> Op:
    """One op computing every op of ``names`` on its own inputs: the sum of all their (first) results (integer
    results as float64), so one traced step holds them all."""
    ops = [OPS[n] for n in names]
    counts = [len(op.inputs(np.random.default_rng(0))) for op in ops]
    starts = [sum(counts[:k]) for k in range(len(ops))]

    def run(pick: Callable[[Op], Callable[..., Any]], *xs: Any) -> Any:
        total = None
        for op, start, n in zip(ops, starts, counts, strict=True):
            first = _first(pick(op)(*xs[start : start + n])).reshape(-1)
            part = first.sum() if first.dtype.is_floating_point else first.double().sum()
            total = part if total is None else total + part
        return total

    return Op(
        lambda *xs: run(lambda op: op.pg, *xs),
        lambda *xs: run(lambda op: op.torch, *xs),
        lambda r: [a for op in ops for a in op.inputs(r)],
        grad=all(op.grad for op in ops),
        fd=False,
        rtol=1e-9,
        const=tuple(start + c for op, start in zip(ops, starts, strict=True) for c in op.const),
    )


for _bundle_name, _names in BUNDLE_NAMES.items():
    OPS[f"lower-{_bundle_name}"] = _bundle(_names)


# ---------------------------------------------------------------------------------------------------------------
# Running a row


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _parts(out: Any) -> list[Any]:
    return list(out) if isinstance(out, tuple) else [out]


def _pg_inputs(arrays: Sequence[np.ndarray], grad: bool, const: Sequence[int] = ()) -> list[pg.Tensor]:
    return [pg.tensor(a, requires_grad=grad and a.dtype.kind == "f" and k not in const) for k, a in enumerate(arrays)]


def _torch_inputs(arrays: Sequence[np.ndarray], grad: bool, const: Sequence[int] = ()) -> list[torch.Tensor]:
    return [
        torch.tensor(a, requires_grad=grad and a.dtype.kind == "f" and k not in const) for k, a in enumerate(arrays)
    ]


def _assert_close(got: np.ndarray, want: np.ndarray, rtol: float, what: str) -> None:
    want = np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=what)


@pytest.mark.parametrize("name", list(OPS))
def test_forward_against_numpy_and_torch(name: str, rng: np.random.Generator) -> None:
    op = OPS[name]
    arrays = op.inputs(rng)
    ours = [p.numpy() for p in _parts(op.pg(*_pg_inputs(arrays, False)))]
    theirs = [t.detach().numpy() for t in _parts(op.torch(*_torch_inputs(arrays, False)))]
    assert len(ours) == len(theirs)
    for k, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert o.dtype == t.dtype or (o.dtype == np.int64 and t.dtype == np.int64), (o.dtype, t.dtype)
        _assert_close(o, t, op.rtol, f"result {k} vs torch")
    if op.ref is not None:
        with np.errstate(all="ignore"):
            refs = _parts(op.ref(*arrays))
        for k, (o, r) in enumerate(zip(ours, refs, strict=True)):
            _assert_close(
                o,
                np.asarray(r).astype(o.dtype) if o.dtype.kind in "biu" else np.asarray(r),
                op.rtol,
                f"result {k} vs numpy",
            )


def _finite_differences(f: Callable[[list[np.ndarray]], float], xs: list[np.ndarray], i: int) -> np.ndarray:
    h = 1e-6
    out = np.zeros_like(xs[i])
    for idx in np.ndindex(xs[i].shape):
        plus = [x.copy() for x in xs]
        minus = [x.copy() for x in xs]
        plus[i][idx] += h
        minus[i][idx] -= h
        out[idx] = (f(plus) - f(minus)) / (2 * h)
    return out


GRAD_OPS = [name for name, op in OPS.items() if op.grad]


@pytest.mark.parametrize("name", GRAD_OPS)
def test_gradient_against_torch_and_finite_differences(name: str, rng: np.random.Generator) -> None:
    op = OPS[name]
    arrays = op.inputs(rng)
    ts = _pg_inputs(arrays, True, op.const)
    out = _first(op.pg(*ts))
    w = rng.uniform(0.5, 1.5, out.shape) * rng.choice([-1.0, 1.0], out.shape)
    (out * pg.tensor(w)).sum().backward()
    tts = _torch_inputs(arrays, True, op.const)
    tout = _first(op.torch(*tts))
    (tout * torch.tensor(w)).sum().backward()
    floats = [k for k, a in enumerate(arrays) if a.dtype.kind == "f" and k not in op.const]
    for k in floats:
        ours, theirs = ts[k].grad, tts[k].grad
        assert ours is not None and theirs is not None, k
        g = ours.numpy()
        _assert_close(g, theirs.numpy(), op.grad_rtol, f"gradient {k} vs torch")
        assert np.isfinite(g).all()
    assert any(np.abs(ts[k].grad.numpy()).max() > 1e-6 for k in floats), "all gradients zero: a vacuous check"
    if op.fd:

        def loss(xs: list[np.ndarray]) -> float:
            with torch.no_grad():
                return float((_first(op.torch(*[torch.tensor(x) for x in xs])) * torch.tensor(w)).sum())

        for k in floats:
            numeric = _finite_differences(loss, [a.copy() for a in arrays], k)
            _assert_close(ts[k].grad.numpy(), numeric, 1e-5, f"gradient {k} vs finite differences")


# ---------------------------------------------------------------------------------------------------------------
# Lowering: loops and PTX


def step_module(op: Op, arrays: Sequence[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
    """The forward (and, for ops with gradients, the backward of ``sum(out * w)``) as one ``simplify``-stage
    module, with the arrays of its arguments (float32 inputs)."""
    xs = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
    ts = _pg_inputs(xs, op.grad, op.const)
    out = op.pg(*ts)
    values = [p._value for p in _parts(out)]
    if op.grad:
        first = _first(out)
        w = pg.tensor(np.linspace(-1.0, 1.5, first.numel(), dtype=np.float32).reshape(first.shape))
        (first * w).sum().backward()
        values += [t.grad._value for t in ts if t.requires_grad]
    graph = cut(values)
    module = lower_graph(graph, "step")
    inputs = [np.asarray(leaf.data) for leaf in graph.leaves]
    return module, inputs


LOWER_OPS = [name for name, op in OPS.items() if op.lower]


@pytest.mark.parametrize("name", LOWER_OPS)
def test_lowers_to_loops_and_ptx(name: str, rng: np.random.Generator) -> None:
    """The traced step at float32 on the loop interpreter and (assembled by ptxas) on the PTX emulator, both
    against the numpy executor."""
    op = OPS[name]
    module, inputs = step_module(op, op.inputs(rng))
    fn = module.body.block.first_op
    with np.errstate(all="ignore"):
        want = compile_func(fn)(*inputs)  # type: ignore[arg-type]
    program = compile_for_cuda(module)
    program.assemble(strict=True)
    got_ptx = run_program(program, inputs)
    loops = to_loops(module.clone())
    got_loops = run_function(loops, "step", inputs)
    for what, got in (("loops", got_loops), ("ptx", got_ptx)):
        assert len(got) == len(want), what
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g.shape == w.shape and g.dtype == w.dtype, (what, k, g.shape, w.shape, g.dtype, w.dtype)
            if w.dtype.kind in "biu":
                np.testing.assert_array_equal(g, w, err_msg=f"{what} result {k}")
            else:
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5, err_msg=f"{what} result {k}")


# ---------------------------------------------------------------------------------------------------------------
# Semantics beyond the rows


def test_max_min_return_named_tuples() -> None:
    x = pg.tensor([[1.0, 5.0, 5.0], [7.0, -1.0, 7.0]])
    out = x.max(1)
    assert isinstance(out, pg.ValuesIndices) and out.values.tolist() == [5.0, 7.0] and out.indices.tolist() == [1, 0]
    values, indices = pg.min(x, 0)
    assert values.tolist() == [1.0, -1.0, 5.0] and indices.tolist() == [0, 1, 0]
    assert x.max().item() == 7.0 and pg.max(x, pg.zeros(2, 3)).shape == (2, 3)
    with pytest.raises(TypeError, match="amax"):
        x.max((0, 1))


def test_compiled_functions_return_named_tuples(rng: np.random.Generator) -> None:
    # a compiled function returning x.max(dim), sort or topk used to crash rebuilding the result
    # (TypeError: ValuesIndices.__new__() missing 1 required positional argument: 'indices')
    x = pg.tensor(rng.normal(size=(3, 5)))
    for fn in (lambda v: v.max(1), lambda v: pg.sort(v, 0), lambda v: v.topk(2), lambda v: pg.median(v, -1)):
        want, got = fn(x), pg.compile(fn)(x)
        assert type(got) is type(want)
        np.testing.assert_allclose(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    (values, indices), [total] = pg.compile(lambda v: (v.min(0), [v.sum()]))(x)
    assert indices.tolist() == x.numpy().argmin(0).tolist() and np.isclose(total.item(), x.numpy().sum())


def test_max_dim_gradient_goes_to_the_first_maximum_as_torch() -> None:
    x = pg.tensor([[1.0, 5.0, 5.0]], requires_grad=True)
    x.max(1).values.sum().backward()
    assert x.grad is not None and x.grad.tolist() == [[0.0, 1.0, 0.0]]
    y = pg.tensor([[1.0, 5.0, 5.0]], requires_grad=True)
    y.amax(1).sum().backward()  # amax splits ties
    assert y.grad is not None and y.grad.tolist() == [[0.0, 0.5, 0.5]]


def test_data_dependent_shapes_are_eager_only() -> None:
    x = pg.tensor([[0.0, 2.0], [3.0, 0.0]], requires_grad=True)
    assert x.nonzero().tolist() == [[0, 1], [1, 0]]
    rows, cols = pg.nonzero(x, as_tuple=True)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    picked = x.masked_select(x > 1)
    assert picked.tolist() == [2.0, 3.0]
    (picked * pg.tensor([1.0, 10.0])).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [[0.0, 1.0], [10.0, 0.0]]

    @pg.compile
    def step(t: pg.Tensor) -> pg.Tensor:
        return t.nonzero()

    with pytest.raises(pg.CompileError, match="shape depends on the data"):
        step(pg.tensor([1.0, 0.0]))

    @pg.compile
    def step2(t: pg.Tensor) -> pg.Tensor:
        return t.masked_select(t > 0)

    with pytest.raises(pg.CompileError, match="masked_select"):
        step2(pg.tensor([1.0, 0.0]))


def test_creation_functions() -> None:
    np.testing.assert_array_equal(pg.eye(3).numpy(), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(pg.eye(2, 4, dtype=pg.int64).numpy(), np.eye(2, 4, dtype=np.int64))
    e = pg.empty(2, 3, dtype=pg.float64)
    assert e.shape == (2, 3) and e.dtype == pg.float64
    x = pg.randn(2, 3)
    f = pg.full_like(x, 7, dtype=pg.int64)
    assert f.dtype == pg.int64 and f.tolist() == [[7] * 3] * 2
    assert pg.zeros_like(x, dtype=pg.bool).dtype == pg.bool and pg.ones_like(x, dtype=pg.int32).numpy().sum() == 6
    assert pg.full_like(x, 0.5).dtype == pg.float32 and pg.empty_like(x).shape == (2, 3)


def test_allclose_and_functions() -> None:
    a = pg.tensor([1.0, 2.0, float("nan")])
    assert pg.allclose(a, a, equal_nan=True) and not pg.allclose(a, a)
    assert pg.allclose(pg.tensor([1.0]), pg.tensor([1.0 + 1e-7]))
    assert pg.floor(pg.tensor([1.5])).tolist() == [1.0] and pg.sign(pg.tensor([-2, 0, 3])).tolist() == [-1, 0, 1]
    assert pg.sign(pg.tensor([float("nan"), -0.0])).tolist() == [0.0, 0.0]  # as torch.sign


def test_activation_modules() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    for ours, theirs in [
        (pg.nn.ELU(0.5), torch.nn.ELU(0.5)),
        (pg.nn.CELU(2.0), torch.nn.CELU(2.0)),
        (pg.nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
        (pg.nn.Hardsigmoid(), torch.nn.Hardsigmoid()),
        (pg.nn.Hardswish(), torch.nn.Hardswish()),
        (pg.nn.Softsign(), torch.nn.Softsign()),
        (pg.nn.Softplus(2.0, 10.0), torch.nn.Softplus(2.0, 10.0)),
        (pg.nn.LogSigmoid(), torch.nn.LogSigmoid()),
        (pg.nn.Mish(), torch.nn.Mish()),
    ]:
        np.testing.assert_allclose(ours(pg.tensor(x.numpy())).numpy(), theirs(x).numpy(), rtol=1e-12, atol=1e-15)


def test_errors_name_the_problem() -> None:
    x = pg.randn(2, 3)
    with pytest.raises(pg.ShapeError, match="index of shape"):
        x.gather(0, pg.tensor([0, 1]))
    with pytest.raises(pg.DTypeError, match="integer or bool"):
        _ = x & x
    with pytest.raises(ValueError, match="rounding_mode"):
        x.div(x, rounding_mode="round")
    with pytest.raises(pg.ShapeError, match="einsum"):
        pg.einsum("ij,jk->ik", x, x)
    with pytest.raises(pg.ShapeError, match="probability targets"):
        F.cross_entropy(x, pg.randn(3, 2))


NEW_MATH = {
    "log2": mp.log,
    "exp2": mp.exp,
    "expm1": mp.expm1,
    "atan": mp.atan,
    "asin": mp.asin,
    "acos": mp.acos,
    "asinh": mp.asinh,
    "acosh": mp.acosh,
    "atanh": mp.atanh,
}


def _domain(name: str, r: np.random.Generator, n: int) -> np.ndarray:
    return {
        "log2": lambda: np.exp(r.uniform(-40, 40, n)),
        "exp2": lambda: r.uniform(-120, 120, n),
        "expm1": lambda: np.concatenate([r.uniform(-30, 80, n), r.uniform(-1, 1, n) * 1e-4]),
        "atan": lambda: np.concatenate([r.uniform(-4, 4, n), np.exp(r.uniform(-20, 30, n))]),
        "asin": lambda: r.uniform(-1, 1, n),
        "acos": lambda: r.uniform(-1, 1, n),
        "asinh": lambda: np.concatenate([r.uniform(-5, 5, n), np.exp(r.uniform(-20, 40, n))]),
        "acosh": lambda: np.concatenate([1 + np.exp(r.uniform(-20, 2, n)), np.exp(r.uniform(0, 40, n))]),
        "atanh": lambda: r.uniform(-1, 1, n),
    }[name]()


@pytest.mark.parametrize("kind", ["f32", "f64"])
@pytest.mark.parametrize("name", list(NEW_MATH))
def test_gpu_math_accuracy(name: str, kind: str, rng: np.random.Generator) -> None:
    """The PTX schemes (evaluated with gpu_math's numpy twin) within ``MEASURED_ULP`` of mpmath at 40 digits."""
    mp.mp.dps = 40
    dt = np.float32 if kind == "f32" else np.float64
    x = _domain(name, rng, 150).astype(dt)
    got = gpu_math.evaluate(name, kind, x).astype(np.float64)
    fn = NEW_MATH[name]
    want = np.array(
        [
            float(fn(mp.mpf(float(v)) * mp.log(2)) if name == "exp2" else fn(mp.mpf(float(v))) / mp.log(2))
            if name in ("exp2", "log2")
            else float(fn(mp.mpf(float(v))))
            for v in x
        ]
    )
    ok = np.isfinite(want) & (np.abs(want) < np.finfo(dt).max)
    ulp = np.spacing(np.abs(want[ok]).astype(dt)).astype(np.float64)
    err = np.abs(got[ok] - want[ok]) / ulp
    assert err.max() <= gpu_math.MEASURED_ULP[kind][name] + 0.5, err.max()


def test_gpu_atan2_special_values() -> None:
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-30])
    y, x = (a.ravel() for a in np.meshgrid(special, special))
    for kind, dt in (("f32", np.float32), ("f64", np.float64)):
        got = gpu_math.evaluate("atan2", kind, y.astype(dt), x.astype(dt))
        want = np.arctan2(y.astype(dt), x.astype(dt))
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        assert np.array_equal(np.signbit(got[~np.isnan(want)]), np.signbit(want[~np.isnan(want)]))


def test_small_pytorch_api_a_newcomer_reaches_for(rng: np.random.Generator) -> None:
    """``linspace``, ``from_numpy``, ``randperm``, ``is_tensor``, ``numel``, ``var/std(unbiased=)``, ``view_as``,
    ``reshape_as``, ``type_as``, ``is_floating_point``, ``new_zeros/ones/full/tensor``, ``Module.apply`` and
    ``Module.requires_grad_`` (each was missing), as PyTorch's."""
    a = rng.standard_normal((2, 6))
    x, t = pg.tensor(a, dtype=pg.float32), torch.tensor(a, dtype=torch.float32)
    start, end = rng.standard_normal(2)
    np.testing.assert_allclose(pg.linspace(start, end, 7).numpy(), torch.linspace(start, end, 7).numpy(), atol=1e-6)
    assert pg.linspace(0, 1, 0).shape == (0,) and pg.linspace(2.0, 3.0, 1).tolist() == [2.0]
    ints = rng.integers(0, 9, 5).astype(np.int32)
    f = pg.from_numpy(ints)
    assert f.dtype == pg.int32 and f.tolist() == ints.tolist()
    perm = pg.randperm(17)
    assert perm.dtype == pg.int64 and sorted(perm.tolist()) == list(range(17))
    assert pg.is_tensor(x) and not pg.is_tensor(a) and pg.numel(x) == 12 and x.is_floating_point()
    for unbiased in (False, True):
        np.testing.assert_allclose(x.var(1, unbiased=unbiased).numpy(), t.var(1, unbiased=unbiased).numpy(), rtol=1e-5)
        np.testing.assert_allclose(x.std(unbiased=unbiased).numpy(), t.std(unbiased=unbiased).numpy(), rtol=1e-5)
    like = pg.zeros(3, 4)
    assert x.view_as(like).shape == (3, 4) and x.reshape_as(like).shape == (3, 4)
    assert pg.tensor([1, 2]).type_as(x).dtype == pg.float32
    h = x.half()
    assert h.new_zeros(2, 3).dtype == pg.float16 and h.new_zeros((2, 3)).shape == (2, 3)
    assert h.new_ones(4).tolist() == [1.0] * 4 and h.new_full((2,), 7.0).tolist() == [7.0, 7.0]
    assert h.new_tensor([1, 2]).dtype == pg.float16 and x.new_zeros(2, dtype=pg.int64).dtype == pg.int64
    model = pg.nn.Sequential(pg.nn.Linear(2, 3), pg.nn.Tanh(), pg.nn.Linear(3, 1))
    seen: list[str] = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "Tanh", "Linear", "Sequential"]  # children first, as PyTorch
    model.apply(lambda m: pg.nn.init.zeros_(m.weight) if isinstance(m, pg.nn.Linear) else None)
    assert not model[0].weight.numpy().any()
    assert model.requires_grad_(False) is model and not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_sort_and_median_treat_nan_as_largest_as_torch(rng: np.random.Generator) -> None:
    # descending sort put NaN last (PyTorch: first), and median skipped NaN (PyTorch: NaN, at the first NaN)
    a = rng.normal(size=(4, 7)).astype(np.float32)
    a[0, [1, 4]] = np.nan
    a[2, 6] = np.nan
    x, t = pg.tensor(a), torch.tensor(a)
    for descending in (False, True):
        got = pg.sort(x, 1, descending=descending)
        want = torch.sort(t, dim=1, descending=descending, stable=True)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
        np.testing.assert_array_equal(pg.argsort(x, 1, descending=descending).numpy(), want.indices.numpy())
    for dim in (1, -2):
        got_m, want_m = pg.median(x, dim), torch.median(t, dim)
        np.testing.assert_array_equal(got_m.values.numpy(), want_m.values.numpy())
        np.testing.assert_array_equal(got_m.indices.numpy(), want_m.indices.numpy())
    assert np.isnan(pg.median(x).item()) and np.isnan(pg.compile(pg.median)(x).item())
    assert pg.median(x[1]).item() == torch.median(t[1]).item()
    step = pg.compile(lambda v: pg.median(v, 1))
    np.testing.assert_array_equal(step(x).indices.numpy(), torch.median(t, 1).indices.numpy())


def test_cummax_cummin_index_moves_to_each_nan_as_torch(rng: np.random.Generator) -> None:
    # a NaN used to keep the first NaN's index; PyTorch moves it to every later NaN
    a = rng.normal(size=(3, 9)).astype(np.float32)
    a[0, [2, 5, 6]] = np.nan
    a[1, 0] = np.nan
    x, t = pg.tensor(a), torch.tensor(a)
    for name in ("cummax", "cummin"):
        want = getattr(torch, name)(t, 1)
        for got in (getattr(pg, name)(x, 1), pg.compile(lambda v, name=name: getattr(pg, name)(v, 1))(x)):
            np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
            np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


def test_aminmax_is_a_named_tuple_as_torch(rng: np.random.Generator) -> None:
    a = rng.normal(size=(3, 5))
    got, want = pg.aminmax(pg.tensor(a), dim=1), torch.aminmax(torch.tensor(a), dim=1)
    np.testing.assert_array_equal(got.min.numpy(), want.min.numpy())
    np.testing.assert_array_equal(got.max.numpy(), want.max.numpy())
    both = pg.compile(lambda v: pg.aminmax(v))(pg.tensor(a))
    assert (both.min.item(), both.max.item()) == (a.min(), a.max())


def test_dropout_probability_out_of_range_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\], got 1.5.*test_op_surface\.py:\d+"):
        pg.nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"got -0.1.*test_op_surface\.py:\d+"):
        pg.nn.functional.dropout(pg.ones(3), -0.1)


def test_cosine_similarity_broadcasts_before_the_norms(rng: np.random.Generator) -> None:
    # x2 with size 1 along dim: its norm was taken before broadcasting, giving 2x PyTorch's value for 4 channels
    a, b = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 1, 3))
    x1, x2 = pg.tensor(a, requires_grad=True), pg.tensor(b, requires_grad=True)
    t1, t2 = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    got, want = pg.nn.functional.cosine_similarity(x1, x2, dim=1), torch.nn.functional.cosine_similarity(t1, t2, dim=1)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        pg.compile(pg.nn.functional.cosine_similarity)(pg.tensor(a), pg.tensor(b)).numpy(), want.detach().numpy()
    )
    w = rng.normal(size=want.shape)
    (got * pg.tensor(w)).sum().backward()
    (want * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), t1.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(x2.grad.numpy(), t2.grad.numpy(), rtol=1e-9, atol=1e-12)
