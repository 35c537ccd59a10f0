"""Tensor creation functions with PyTorch's names: ``tensor``, ``zeros``, ``ones``, ``full``, ``arange``,
``randn``, ``rand``, ``randint``, ``*_like``, and joining (``cat``, ``stack``).

Each takes ``device=`` ("cpu" by default, or "cuda"): values made on the host are uploaded once; random numbers are
drawn by a ``pg.random`` op on the device itself (the Philox stream is the same on both devices)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from picograd.errors import DTypeError, ShapeError
from picograd.frontend import dtypes, random
from picograd.frontend.dtypes import as_dtype
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.tensor import Tensor, as_operands, check_device, constant, norm_dim, record, shape_args


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Same as ``Tensor(data, dtype, device, requires_grad)``."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _make(arr: np.ndarray, device: Any, requires_grad: bool) -> Tensor:
    return Tensor(arr, device=device, requires_grad=requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value`` (dtype from the value when not given). Inside ``@pg.compile``
    (without ``requires_grad``) it is a ``pg.constant`` of the step, not an input buffer. Raises ``RuntimeError``
    (as PyTorch) for a finite float value that overflows ``dtype`` (``1e6`` in float16)."""
    if dtype is None:
        dtype = (
            dtypes.bool_
            if isinstance(fill_value, bool)
            else dtypes.int64
            if isinstance(fill_value, int)
            else dtypes.float32
        )
    shape = shape_args(size if isinstance(size, tuple | list) else (size,))
    dt = as_dtype(dtype)
    if dt.is_floating_point and isinstance(fill_value, float | int) and math.isfinite(fill_value):
        with np.errstate(over="ignore"):
            if not np.isfinite(np.asarray(fill_value, dtype=dt.np)):
                raise RuntimeError(
                    f"full: value {fill_value} cannot be converted to {dt.name} without overflow{at(user_location())}"
                )
    if STATE.trace is not None and not requires_grad:  # a constant of the step, visible to the passes
        return constant(fill_value, as_dtype(dtype), shape, check_device(device))
    return _make(np.full(shape, fill_value, dtype=as_dtype(dtype).np), device, requires_grad)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``size`` (float32 unless ``dtype``)."""
    return full(shape_args(size), 0, as_dtype(dtype or dtypes.float32), device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``size`` (float32 unless ``dtype``)."""
    return full(shape_args(size), 1, as_dtype(dtype or dtypes.float32), device, requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``t``'s shape (and its dtype and device unless given)."""
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``t``'s shape (and its dtype and device unless given)."""
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def arange(
    start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``start, start + step, ...`` below ``end`` (int64 when all arguments are ints, else float32). Inside
    ``@pg.compile`` an int64 range is recorded as a ``pg.iota`` (so passes see its values; ``pg-fuse-attention``
    proves causal masks with them). Raises ``DTypeError`` for ``requires_grad=True`` with an integer dtype (as
    PyTorch)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, int) for v in (start, end, step)) else dtypes.float32
    ints = all(isinstance(v, int) for v in (start, end, step)) and as_dtype(dtype) == dtypes.int64
    if STATE.trace is not None and ints and not requires_grad:  # inside @pg.compile: iota * step + start, no buffer
        n = len(range(start, end, step))
        values = record("iota", [], (0,), (n,), dtypes.int64, check_device(device))
        return values * step + start if (start, step) != (0, 1) else values
    return _make(np.arange(start, end, step).astype(as_dtype(dtype).np), device, requires_grad)


def linspace(
    start: float, end: float, steps: int, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (float32 by default), as
    ``torch.linspace``. Raises ``ValueError`` for a negative ``steps``."""
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}{at(user_location())}")
    values = np.linspace(float(start), float(end), steps, dtype=np.float64)
    return _make(values.astype(as_dtype(dtype or dtypes.float32).np), device, requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor of ``array``'s dtype and values (``torch.from_numpy``; picograd copies: later writes to the
    array do not show in the tensor). Raises ``TypeError`` for anything but a numpy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}{at(user_location())}")
    return Tensor(array, dtype=array.dtype)


def randperm(n: int, dtype: Any = None, device: Any = None) -> Tensor:
    """A uniformly random permutation of ``0 .. n-1`` (int64), as ``torch.randperm``: the order that sorts ``n``
    uniform draws of picograd's generator (float64: ties have probability ~n^2 / 2^53)."""
    from picograd.frontend.ops import argsort

    u = _random("uniform", (n,), dtypes.float64, device, False)
    return argsort(u).to(dtype or dtypes.int64)


def _random(distribution: str, size: Sequence[Any], dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    dev = check_device(device)
    d = as_dtype(dtype or dtypes.float32)
    if not d.is_floating_point:
        raise DTypeError(f"{distribution} random numbers need a float dtype, got {d.name}{at(user_location())}")
    out = random.draw(distribution, shape_args(size), d, dev)
    if requires_grad:
        out = out.detach()
        out.requires_grad = True
    return out


def randn(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples of ``size`` from the Philox generator (``pg.manual_seed`` seeds it)."""
    return _random("normal", size, dtype, device, requires_grad)


def rand(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) of ``size`` from the Philox generator."""
    return _random("uniform", size, dtype, device, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, dtype: Any = None, device: Any = None) -> Tensor:
    """Uniform integers in ``[low, high)`` of ``size`` (``randint(high, size)`` also works), int64 by default."""
    if size is None:
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint(low, high, size) or randint(high, size)")
    u = _random("uniform", size if isinstance(size, tuple | list) else (size,), dtypes.float64, device, False)
    out = (u * float(high - low)).to(dtypes.int64) + low
    return out.to(dtype or dtypes.int64)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along ``dim``; other dims must match (``ShapeError`` names the shapes)."""
    if not tensors:
        raise ShapeError(f"cat() needs at least one tensor{at(user_location())}")
    ts, dtype = as_operands(*tensors)
    first = ts[0].shape
    d = norm_dim(dim, len(first), first)
    for t in ts[1:]:
        if len(t.shape) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first, strict=True)) if i != d
        ):
            raise ShapeError(
                f"cat: shapes {first} and {t.shape} must match in every dim but dim {d}{at(user_location())}"
            )
    if len(ts) == 1:
        return ts[0]
    shape = list(first)
    shape[d] = sum(t.shape[d] for t in ts)
    return record("concat", ts, (d,), tuple(shape), dtype)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new dim ``dim``."""
    if not tensors:
        raise ShapeError(f"stack() needs at least one tensor{at(user_location())}")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors need one shape, got {sorted(shapes)}{at(user_location())}")
    d = norm_dim(dim, tensors[0].ndim + 1, tensors[0].shape)
    return cat([t.unsqueeze(d) for t in tensors], d)


# -- the operator surface (issue 20)


def eye(n: int, m: int | None = None, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """The ``n x m`` identity matrix (``m = n`` by default; float32 unless ``dtype``)."""
    return _make(np.eye(n, n if m is None else m, dtype=as_dtype(dtype or dtypes.float32).np), device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` (float32 unless ``dtype``). Its values are unspecified in PyTorch; here they are 0."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` in ``t``'s shape (and its dtype and device unless given)."""
    return full(t.shape, fill_value, dtype or t.dtype, device or t.device, requires_grad)


def empty_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``zeros_like`` (see ``empty``)."""
    return zeros_like(t, dtype=dtype, device=device, requires_grad=requires_grad)


# ---------------------------------------------------------------------------------------------------------------
# transformers (issue 11): sampling


_MULTINOMIAL_WEIGHTS = (
    "multinomial: weights of shape {} must be finite and non-negative, with a positive sum in every row"
)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False) -> Tensor:
    """``num_samples`` int64 category indices per row of the non-negative weights ``input`` (C,) or (N, C), as
    ``torch.multinomial`` (rows need not sum to 1).

    Drawn with the Gumbel-max trick (argmax of ``log w + Gumbel noise``; with ``replacement=False`` the top
    ``num_samples`` of one draw, Kool et al., 2019), from picograd's Philox generator: the same distribution as
    PyTorch, not the same numbers. A negative, infinite or NaN weight, or a row of zeros, raises ``RuntimeError``
    (as PyTorch) naming the problem and the user's ``file:line``: outside ``@pg.compile`` the weights are read at
    once (and the message names the first bad weight or row), inside a compiled step a ``pg.check_index`` on each
    row raises it when the step runs. ``num_samples`` larger than the number of categories without replacement
    raises ``RuntimeError`` too."""
    from picograd.frontend.graph import STATE

    loc = user_location()
    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.ndim not in (1, 2) or not input.dtype.is_floating_point:
        raise ShapeError(
            f"multinomial: expects a 1-D or 2-D float tensor of weights, got {input.dtype.name} of shape "
            f"{input.shape}{at(loc)}"
        )
    categories = input.shape[-1]
    if num_samples <= 0 or (not replacement and num_samples > categories):
        raise RuntimeError(
            f"multinomial: cannot draw {num_samples} samples from {categories} categories "
            f"{'with' if replacement else 'without'} replacement{at(loc)}"
        )
    if STATE.trace is None:
        w = input.numpy().reshape(-1, categories)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise RuntimeError(
                f"{_MULTINOMIAL_WEIGHTS.format(input.shape)}: got {w[row, col]} at index "
                f"{(int(row), int(col)) if input.ndim == 2 else int(col)}{at(loc)}"
            )
        zero = np.flatnonzero(w.sum(axis=1) <= 0)
        if zero.size:
            where_ = f"row {int(zero[0])}" if input.ndim == 2 else "the tensor"
            raise RuntimeError(f"{_MULTINOMIAL_WEIGHTS.format(input.shape)}: {where_} sums to 0{at(loc)}")
    from picograd.frontend.indexing import checked_index
    from picograd.frontend.ops import any as any_
    from picograd.frontend.tensor import where

    input = input.detach()
    positive = input > 0
    logw = where(positive, where(positive, input, 1.0).log(), -math.inf)
    draws = num_samples if replacement else 1
    u = rand(*input.shape[:-1], draws, categories, dtype=input.dtype, device=input.device)
    scores = logw.unsqueeze(-2) - (-(u.log())).log()  # + Gumbel(0, 1); u = 0 gives -inf: never picked
    if STATE.trace is not None:  # the weights are read when the step runs: a bad row is 1, checked to be 0
        bad = any_((input < 0) | ~(input.abs() < math.inf), -1) | (input.sum(-1) <= 0)
        template = _MULTINOMIAL_WEIGHTS.format(input.shape)  # no {}: the bad row's flag value says nothing
        ok = checked_index(bad.long(), 1, input.ndim - 1, template=template)
        scores = scores + ok.to(scores.dtype).unsqueeze(-1).unsqueeze(-1)  # + 0: keeps the check in the graph
    if replacement:
        return scores.argmax(-1)
    return scores.squeeze(-2).topk(num_samples, -1).indices
