"""Differential fuzzer: random picograd graphs against PyTorch float64, forward values and every input's gradient.

Each graph is a few random steps over the public op set (the ``OPS`` table below: one row per op, with the
expression that builds it, the dtypes it takes and whether it is differentiable) on random inputs of rank 0-4
(sizes 0 to 4). It runs through

- ``torch``: PyTorch in the inputs' own dtypes (which fixes the expected dtypes and shapes; a step PyTorch rejects
  is not generated) and in float64 (the reference values and gradients);
- ``eager``: picograd's lazy tensors, realized by the CPU (numpy) executor;
- ``compiled``: the same steps in an ``@pg.compile`` function that calls ``backward()`` (the float inputs that need
  gradients are captured tensors, the others arguments), called twice: the second time on fresh data for the
  arguments and for the captured tensors (assigned through ``.data``, as an optimizer update);
- ``loops``: the eager graph at the ``loops`` stage on ``picograd.runtime.loop_interpreter`` (tiny graphs);
- ``ptx``: the eager graph through ``compile_for_cuda`` on the PTX emulator of ``tests/_ptx_emulator.py`` (tiny
  graphs, every ``--ptx-every``-th one).

Every stage must give PyTorch's shapes and dtypes, its values and gradients (float outputs within a tolerance that
depends on the dtype, scaled by the output's size; integer and bool outputs exactly, up to ties that float32
rounding can flip). A mismatch or an exception is shrunk (steps cut into inputs, outputs and gradients dropped)
to a minimal graph, printed as a few lines of picograd code. The last line is ``graphs=N mismatches=M crashes=C``.

    python tools/fuzz.py --n 10000 --seed 1 --time-limit 3600

``KNOWN_ISSUES`` lists open issue items fixed elsewhere: inputs the generator avoids, or failures it recognizes and
counts as ``known`` (not as mismatches or crashes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import picograd.nn.functional as PF
import torch

import picograd as pg
from picograd.frontend.realize import pending_module
from picograd.frontend.tensor import realize
from picograd.passes.kinds.matmul_rungs import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]

DTYPES = ("float32", "float64", "int64", "int32", "bool")
NP = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
TORCH = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32}
TORCH["bool"] = torch.bool
FROM_TORCH = {v: k for k, v in TORCH.items()}
MAX_NUMEL = 64  # elements of any value
MAX_MAGNITUDE = 1e4  # steps whose float values leave [-MAX_MAGNITUDE, MAX_MAGNITUDE] are not generated
TINY_NUMEL = 24  # the loop and PTX stages run graphs whose values all hold at most this many elements
WIDE_NUMEL = 96  # the limit for wide graphs (one dim of 32-40: the GPU's block reductions), which they also run

# Open items of issue 16 that other branches fix: the generator avoids these inputs (see the entry's name in the op
# table) or ``known_issue`` recognizes their failure.
KNOWN_ISSUES: dict[str, str] = {}


def known_issue(g: Graph, failure: Failure, values: dict[str, np.ndarray]) -> str | None:
    """The ``KNOWN_ISSUES`` entry a failure is, or None (none today: the issue 16 items that other branches fixed
    were merged; an entry here names the item and recognizes its failure, which is then counted as known)."""
    return None


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


@dataclass(frozen=True)
class Meta:
    """The shape and dtype of a value of the graph."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ---------------------------------------------------------------------------------------------------------------
# Graphs


@dataclass
class Input:
    """An input of the graph: its data, whether it requires grad, and how fresh data is drawn (``kind``)."""

    name: str
    data: np.ndarray
    requires_grad: bool
    kind: tuple = ("normal",)
    captured: bool = False  # in the compiled step: read from the enclosing scope, not passed (grad inputs always)


@dataclass
class Step:
    """``name = expr``; ``deps`` are the values the expression reads."""

    name: str
    op: str
    expr: str
    deps: tuple[str, ...]


@dataclass
class Graph:
    inputs: list[Input]
    steps: list[Step]
    outputs: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # output -> the loss weights (float32-exact)
    check_grads: bool = True
    wide: bool = False  # a graph with a dim of 32-40 (block reductions on the GPU), run on the loop and PTX stages
    matmul_schedule: str = "auto"  # the pg-matmul-schedule rung of the ptx stage

    def names(self) -> list[str]:
        return [i.name for i in self.inputs] + [s.name for s in self.steps]


def draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, kind: tuple) -> np.ndarray:
    """Fresh data for an input: normal floats (rounded to float32, so that both libraries see the same numbers),
    small ints, bools, or indices in ``[low, high)`` (``("index", low, high)``; ``("target", C)`` also draws
    cross_entropy's ignore_index -100)."""
    if kind[0] == "fixed":
        return kind[1]
    if kind[0] == "index":
        return rng.integers(kind[1], kind[2], shape).astype(NP[dtype])
    if kind[0] == "target":
        t = rng.integers(0, kind[1], shape)
        return np.where(rng.random(shape) < 0.15, -100, t).astype(np.int64)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if not is_float(dtype) or kind[0] == "ties":  # ("ties",): floats with small integer values (ties and zeros)
        return rng.integers(-2 if is_float(dtype) else -4, 3 if is_float(dtype) else 5, shape).astype(NP[dtype])
    return rng.standard_normal(shape).astype(np.float32).astype(NP[dtype])


# ---------------------------------------------------------------------------------------------------------------
# The op table


class Ctx:
    """What an op row's ``make`` sees: the first operand ``a`` (a name) and its ``Meta``, and helpers that pick or
    create more operands (new inputs are kept in ``pending`` until the step is accepted)."""

    a: str
    m: Meta

    def __init__(self, gen: Gen, a: str):
        self.gen = gen
        self.rng = gen.rng
        self.a = a
        self.m = gen.metas[a]
        self.pending: list[Input] = []

    def choice(self, xs: Sequence[Any]) -> Any:
        return xs[int(self.rng.integers(len(xs)))]

    def new(self, shape: tuple[int, ...], dtype: str, kind: tuple = ("normal",), grad: bool | None = None) -> str:
        name = f"x{self.gen.counter}"
        if kind == ("normal",) and is_float(dtype) and self.rng.random() < 0.15:
            kind = ("ties",)
        self.gen.counter += 1
        rg = is_float(dtype) and (self.rng.random() < 0.8 if grad is None else grad)
        captured = self.rng.random() < (0.5 if rg else 0.3)
        self.pending.append(Input(name, draw(self.rng, shape, dtype, kind), rg, kind, captured))
        self.gen.metas[name] = Meta(shape, dtype)
        return name

    def dtype(self, float_bias: float = 0.7) -> str:
        if self.rng.random() < float_bias:
            return self.gen.float_dtype
        return self.choice(DTYPES)

    def broadcastable(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with ``shape``: leading dims dropped, some dims 1, or a leading dim added."""
        s = list(shape)
        if s and self.rng.random() < 0.3:
            s = s[int(self.rng.integers(len(s) + 1)) :]
        s = [1 if self.rng.random() < 0.25 else d for d in s]
        if len(s) < 4 and self.rng.random() < 0.15:
            s.insert(0, self.choice([1, 2]))
        return tuple(s)

    def existing(self, ok: Callable[[Meta], bool]) -> str | None:
        names = [n for n, m in self.gen.metas.items() if n in self.gen.live and ok(m)]
        return self.choice(names) if names else None

    def other(self, dtype: str | None = None, scalar: bool = True, same_shape: bool = False) -> str:
        """A second operand for a broadcasting op on ``a``: an existing value, a new input or a Python scalar."""
        r = self.rng.random()
        if scalar and r < 0.25:
            return self.scalar(dtype)
        if r < 0.55:

            def fits(m: Meta) -> bool:
                if dtype is not None and m.dtype != dtype:
                    return False
                if same_shape:
                    return m.shape == self.m.shape
                try:
                    np.broadcast_shapes(m.shape, self.m.shape)
                except ValueError:
                    return False
                return True

            found = self.existing(fits)
            if found is not None:
                return found
        shape = self.m.shape if same_shape else self.broadcastable(self.m.shape)
        return self.new(shape, dtype or self.dtype())

    def scalar(self, dtype: str | None = None) -> str:
        kind = {"bool": "bool", "int64": "int", "int32": "int"}.get(dtype or "", "float") if dtype else None
        kind = kind or self.choice(["float", "float", "int", "bool"])
        if kind == "bool":
            return self.choice(["True", "False"])
        if kind == "int":
            return str(self.choice([-3, -1, 2, 3]))
        return str(self.choice([-1.5, -0.75, 0.5, 2.0, 2.5]))

    def dim(self, ndim: int | None = None) -> int:
        n = self.m.ndim if ndim is None else ndim
        if n == 0:
            return self.choice([0, -1])
        d = int(self.rng.integers(n))
        return d - n if self.rng.random() < 0.3 else d

    def dims(self) -> str:
        """A ``dim=`` argument for a reduction: None, an int or a tuple."""
        r = self.rng.random()
        if r < 0.25 or self.m.ndim == 0:
            return "None"
        if r < 0.7:
            return str(self.dim())
        k = int(self.rng.integers(1, self.m.ndim + 1))
        picked = sorted(self.rng.choice(self.m.ndim, k, replace=False).tolist())
        return str(tuple(picked))


@dataclass(frozen=True)
class Op:
    """One row of the op table: ``make`` returns the expression for a first operand (``ctx.a``) or None when the
    op does not apply to it. Expressions are written against picograd's API (``pg``, ``F`` =
    ``pg.nn.functional``) and evaluated with ``pg`` and ``F`` bound to picograd or to ``TorchAPI`` (PyTorch's
    spelling of the same names), so one expression is both the picograd and the PyTorch callable. ``dtypes`` are the
    first operand's dtypes that picograd supports; ``differentiable`` says whether gradients flow through the op:
    the result of one that is not never requires grad (checked against both libraries)."""

    name: str
    arity: int
    make: Callable[[Ctx], str | None]
    dtypes: tuple[str, ...] = DTYPES
    differentiable: bool = True
    weight: float = 1.0  # how often it is drawn, relative to the others


FLOATS = ("float32", "float64")
NUMERIC = ("float32", "float64", "int64", "int32")


def _unary(method: str) -> Callable[[Ctx], str]:
    return lambda c: f"{c.a}.{method}()"


def _positive(method: str) -> Callable[[Ctx], str]:
    return lambda c: f"({c.a}.abs() + 0.5).{method}()"


def _binary(sym: str) -> Callable[[Ctx], str]:
    def make(c: Ctx) -> str:
        b = c.other()
        return f"{b} {sym} {c.a}" if c.rng.random() < 0.3 else f"{c.a} {sym} {b}"

    return make


def _div(c: Ctx) -> str:
    r = c.rng.random()
    if r < 0.3:
        return f"{c.a} / {c.choice(['2.0', '-0.5', '3'])}"
    if r < 0.45:
        return f"{c.choice(['1.0', '-2', '3.5'])} / ({c.a}.abs() + 0.5)"
    b = c.other(scalar=False)
    return f"{c.a} / ({b}.abs() + 0.5)" if c.rng.random() < 0.5 else f"{b} / ({c.a}.abs() + 0.5)"


def _pow(c: Ctx) -> str:
    r = c.rng.random()
    if r < 0.35:
        return f"{c.a} ** {c.choice(['2', '3', '0.5' if is_float(c.m.dtype) else '2', '1'])}".replace(
            "** 0.5", "** 2.0"
        )
    if r < 0.5:
        return f"{c.choice(['2.0', '0.5'])} ** {c.a}"
    b = c.other(dtype=c.gen.float_dtype, scalar=True)
    return f"({c.a}.abs() + 0.5) ** {b}"


def _minmax(fn: str) -> Callable[[Ctx], str]:
    return lambda c: f"pg.{fn}({c.a}, {c.other(scalar=False)})"


def _compare(c: Ctx) -> str:
    sym = c.choice(["<", "<=", ">", ">=", "==", "!="])
    return f"({c.a} {sym} {c.other()})"


def _condition(c: Ctx) -> str:
    """A bool operand broadcastable with ``a``: a comparison of an existing value or a new bool input."""
    if c.rng.random() < 0.5:
        x = c.existing(lambda m: m.dtype != "bool" and _broadcasts(m.shape, c.m.shape))
        if x is not None:
            return f"({x} > {c.choice(['0', '0.5', '-0.5'])})"
    return c.new(c.broadcastable(c.m.shape), "bool")


def _broadcasts(s: tuple[int, ...], t: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(s, t)
    except ValueError:
        return False
    return True


def _where(c: Ctx) -> str:
    cond = _condition(c)
    b = c.other()
    return f"pg.where({cond}, {c.a}, {b})" if c.rng.random() < 0.5 else f"pg.where({cond}, {b}, {c.a})"


def _masked_fill(c: Ctx) -> str:
    shape = list(c.m.shape)
    shape = [1 if c.rng.random() < 0.3 else d for d in shape][int(c.rng.integers(len(shape) + 1)) :]
    mask = c.new(tuple(shape), "bool")
    return f"{c.a}.masked_fill({mask}, {c.scalar(c.m.dtype if c.m.dtype != 'bool' else None)})"


def _invert(c: Ctx) -> str:
    return f"~{c.a}" if c.m.dtype == "bool" else f"~({c.a} > 0)"


def _reduce(method: str) -> Callable[[Ctx], str]:
    def make(c: Ctx) -> str:
        return f"{c.a}.{method}(dim={c.dims()}, keepdim={c.choice([False, True])})"

    return make


def _var(method: str) -> Callable[[Ctx], str]:
    def make(c: Ctx) -> str:
        return f"{c.a}.{method}(dim={c.dims()}, correction={c.choice([0, 1])}, keepdim={c.choice([False, True])})"

    return make


def _arg(method: str) -> Callable[[Ctx], str]:
    def make(c: Ctx) -> str:
        dim = "None" if c.rng.random() < 0.3 else str(c.dim())
        return f"{c.a}.{method}(dim={dim}, keepdim={c.choice([False, True])})"

    return make


def _logsumexp(c: Ctx) -> str:
    dims = c.dims()
    dims = str(c.dim()) if dims == "None" else dims
    return f"{c.a}.logsumexp(dim={dims}, keepdim={c.choice([False, True])})"


def _softmax(fn: str) -> Callable[[Ctx], str]:
    def make(c: Ctx) -> str:
        return f"F.{fn}({c.a}, dim={c.dim()})" if c.rng.random() < 0.5 else f"{c.a}.{fn}({c.dim()})"

    return make


def _matmul(c: Ctx) -> str | None:
    m = c.m
    if m.ndim == 0:
        return None
    k = m.shape[-1]
    r = c.rng.random()
    n = c.choice([1, 2, 3])
    if r < 0.25:
        shape: tuple[int, ...] = (k,)
    elif r < 0.6 or m.ndim < 2:
        shape = (k, n)
    else:
        batch = c.broadcastable(m.shape[:-2])
        shape = (*batch, k, n)
    b = c.new(shape, m.dtype)
    if c.rng.random() < 0.2 and len(shape) >= 1 and m.ndim >= 2:  # b @ a with a as the right operand
        left = c.new((*c.broadcastable(m.shape[:-2]), c.choice([1, 3]), m.shape[-2]), m.dtype)
        return f"{left} @ {c.a}"
    return f"{c.a} @ {b}"


def _linear(c: Ctx) -> str | None:
    if c.m.ndim == 0:
        return None
    w = c.new((c.choice([1, 2, 3]), c.m.shape[-1]), c.m.dtype)
    if c.rng.random() < 0.5:
        return f"F.linear({c.a}, {w})"
    bias = c.new((c.gen.metas[w].shape[0],), c.m.dtype)
    return f"F.linear({c.a}, {w}, {bias})"


def _factor(c: Ctx, n: int) -> tuple[int, ...]:
    """A random shape of rank 0-4 holding ``n`` elements."""
    if n == 0:
        empty = [0] + [int(c.choice([1, 2, 3])) for _ in range(int(c.rng.integers(0, 3)))]
        c.rng.shuffle(empty)
        return tuple(empty)
    out: list[int] = []
    rest = n
    for p in (2, 3, 5, 7):
        while rest % p == 0:
            out.append(p)
            rest //= p
    if rest > 1:
        out.append(rest)
    c.rng.shuffle(out)
    dims: list[int] = []
    for f in out:
        if dims and c.rng.random() < 0.5:
            dims[-1] *= f
        else:
            dims.append(f)
    while len(dims) < 4 and c.rng.random() < 0.3:
        dims.insert(int(c.rng.integers(len(dims) + 1)), 1)
    return tuple(dims[:4]) if len(dims) <= 4 else (math.prod(dims[:-3]), *dims[-3:])


def _reshape(c: Ctx) -> str:
    shape = list(_factor(c, c.m.numel))
    if shape and c.m.numel and c.rng.random() < 0.3:
        shape[int(c.rng.integers(len(shape)))] = -1
    method = c.choice(["reshape", "view"])
    return f"{c.a}.{method}({', '.join(map(str, shape))})" if shape else f"{c.a}.{method}(())"


def _permute(c: Ctx) -> str | None:
    if c.m.ndim < 2:
        return None
    r = c.rng.random()
    if r < 0.4:
        return f"{c.a}.transpose({c.dim()}, {c.dim()})"
    if r < 0.55:
        return f"{c.a}.mT"
    if r < 0.65 and c.m.ndim == 2:
        return f"{c.a}.T"
    perm = c.rng.permutation(c.m.ndim).tolist()
    return f"{c.a}.permute({', '.join(map(str, perm))})"


def _flatten(c: Ctx) -> str:
    if c.m.ndim < 2 or c.rng.random() < 0.3:
        return f"{c.a}.flatten()"
    s = int(c.rng.integers(c.m.ndim))
    e = int(c.rng.integers(s, c.m.ndim))
    return f"{c.a}.flatten({s}, {e})"


def _unsqueeze(c: Ctx) -> str | None:
    if c.m.ndim >= 4:
        return None
    return f"{c.a}.unsqueeze({c.dim(c.m.ndim + 1)})"


def _squeeze(c: Ctx) -> str:
    r = c.rng.random()
    if r < 0.3 or c.m.ndim == 0:
        return f"{c.a}.squeeze()"
    return f"{c.a}.squeeze({c.dim()})"


def _expand(c: Ctx) -> str | None:
    shape = list(c.m.shape)
    shape = [
        c.choice([2, 3]) if d == 1 and c.rng.random() < 0.6 else (-1 if c.rng.random() < 0.3 else d) for d in shape
    ]
    if len(shape) < 4 and c.rng.random() < 0.4:
        shape.insert(0, c.choice([1, 2]))
    if not shape:
        return None
    return f"{c.a}.expand({', '.join(map(str, shape))})"


def _identity(c: Ctx) -> str:
    return f"{c.a}.{c.choice(['clone', 'contiguous', 'detach'])}()"


def _slice(c: Ctx) -> str | None:
    if c.m.ndim == 0:
        return f"{c.a}[None]" if c.rng.random() < 0.5 else f"{c.a}[...]"
    parts: list[str] = []
    for d in c.m.shape[: int(c.rng.integers(1, c.m.ndim + 1))]:
        r = c.rng.random()
        if r < 0.2 and d > 0:
            parts.append(str(int(c.rng.integers(-d, d))))
        elif r < 0.3:
            parts.append("None")
        elif r < 0.4:
            parts.append(":")
        else:
            lo = int(c.rng.integers(-d - 1, d + 1)) if c.rng.random() < 0.7 else None
            hi = int(c.rng.integers(-d - 1, d + 2)) if c.rng.random() < 0.6 else None
            st = c.choice([None, None, 2, 3])
            parts.append(f"{'' if lo is None else lo}:{'' if hi is None else hi}{'' if st is None else f':{st}'}")
    if c.rng.random() < 0.2:
        parts.insert(int(c.rng.integers(len(parts) + 1)), "...")
    return f"{c.a}[{', '.join(parts)}]"


def _index(c: Ctx) -> str | None:
    """Integer-array indexing: tensors, lists and numpy arrays (negative entries too), alone or with slices."""
    m = c.m
    if m.ndim == 0:
        return None
    dims = list(range(m.ndim))
    k = int(c.rng.integers(1, min(m.ndim, 2) + 1))
    picked = sorted(c.rng.choice(dims, k, replace=False).tolist())
    if any(m.shape[d] == 0 for d in picked):
        return None
    idx_shape = c.choice([(), (1,), (2,), (3,), (2, 2)])
    parts: list[str] = []
    for d in range(max(picked) + 1):
        if d not in picked:
            parts.append(":")
            continue
        size = m.shape[d]
        r = c.rng.random()
        if r < 0.6:
            parts.append(c.new(idx_shape, c.choice(["int64", "int64", "int32"]), ("index", -size, size)))
        else:
            values = c.rng.integers(-size, size, idx_shape if idx_shape else (1,)).tolist()
            # a nested list is an index array for numpy (and picograd) but a tuple of indices for PyTorch
            nested = len(idx_shape) > 1
            parts.append(str(values) if r < 0.85 and not nested else f"np.array({values})")
    return f"{c.a}[{', '.join(parts)}]"


def _cat(c: Ctx) -> str | None:
    m = c.m
    if m.ndim == 0:
        return None
    d = c.dim()
    nd = d % m.ndim
    others = []
    for _ in range(int(c.choice([1, 1, 2]))):
        shape = list(m.shape)
        shape[nd] = c.choice([0, 1, 2, 3]) if c.rng.random() < 0.7 else shape[nd]
        want = Meta(tuple(shape), m.dtype)
        found = c.existing(want.__eq__) if c.rng.random() < 0.3 else None
        others.append(found or c.new(tuple(shape), m.dtype if c.rng.random() < 0.8 else c.dtype()))
    return f"pg.cat([{c.a}, {', '.join(others)}], dim={d})"


def _stack(c: Ctx) -> str:
    b = c.existing(lambda x: x.shape == c.m.shape and x.dtype == c.m.dtype) if c.rng.random() < 0.4 else None
    b = b or c.new(c.m.shape, c.m.dtype)
    return f"pg.stack([{c.a}, {b}], dim={c.dim(c.m.ndim + 1)})"


def _cross_entropy(c: Ctx) -> str | None:
    m = c.m
    if m.ndim not in (1, 2) or m.shape[-1] == 0:
        return None
    reduction = c.choice(["mean", "sum", "none"])
    target = c.new(m.shape[:-1], "int64", ("target", m.shape[-1]))
    return f"F.cross_entropy({c.a}, {target}, reduction={reduction!r})"


def _embedding(c: Ctx) -> str | None:
    m = c.m
    if m.ndim != 2 or m.shape[0] == 0:
        return None
    idx = c.new(c.choice([(), (3,), (2, 2)]), c.choice(["int64", "int32"]), ("index", 0, m.shape[0]))
    return f"F.embedding({idx}, {c.a})"


def _mse(c: Ctx) -> str:
    b = c.other(dtype=c.m.dtype, scalar=False, same_shape=True)
    return f"F.mse_loss({c.a}, {b}, reduction={c.choice(['mean', 'sum', 'none'])!r})"


def _layer_norm(c: Ctx) -> str | None:
    m = c.m
    if m.ndim == 0:
        return None
    k = int(c.rng.integers(1, m.ndim + 1))
    shape = m.shape[m.ndim - k :]
    if c.rng.random() < 0.5:
        return f"F.layer_norm({c.a}, {shape})"
    w, b = c.new(shape, m.dtype), c.new(shape, m.dtype)
    return f"F.layer_norm({c.a}, {shape}, {w}, {b})"


def _gelu(c: Ctx) -> str:
    return f"F.gelu({c.a}, approximate={c.choice(['none', 'tanh'])!r})"


def _cast(c: Ctx) -> str:
    return f"{c.a}{c.choice(['.to(pg.float32)', '.double()', '.long()', '.int()', '.bool()', '.to(pg.float64)'])}"


def _like(c: Ctx) -> str:
    r = c.rng.random()
    if r < 0.3:
        return f"{c.a} + pg.ones_like({c.a})"
    if r < 0.5:
        return f"pg.zeros_like({c.a}) - {c.a}"
    if r < 0.7 and c.m.ndim:
        return f"{c.a} * pg.arange({c.m.shape[-1]})"
    return f"{c.a} * pg.full({c.m.shape[-1:]}, 1.5)"


OPS: tuple[Op, ...] = (
    *(Op(n, 1, _unary(n), NUMERIC + ("bool",)) for n in ("exp", "sin", "cos", "tanh", "sigmoid", "erf")),
    *(Op(n, 1, _positive(n), NUMERIC) for n in ("log", "sqrt", "rsqrt", "reciprocal")),
    Op("relu", 1, _unary("relu"), NUMERIC),
    Op("abs", 1, _unary("abs"), NUMERIC),
    Op("neg", 1, lambda c: f"-{c.a}", NUMERIC),
    Op("gelu", 1, _gelu, FLOATS),
    *(Op(n, 2, _binary(s), DTYPES) for n, s in (("add", "+"), ("sub", "-"), ("mul", "*"))),
    Op("div", 2, _div, NUMERIC),
    Op("pow", 2, _pow, NUMERIC),
    Op("maximum", 2, _minmax("maximum"), NUMERIC),
    Op("minimum", 2, _minmax("minimum"), NUMERIC),
    Op("compare", 2, _compare, DTYPES, differentiable=False),
    Op("where", 3, _where, DTYPES),
    Op("masked_fill", 2, _masked_fill, DTYPES),
    Op("invert", 1, _invert, DTYPES, differentiable=False),
    Op("sum", 1, _reduce("sum"), DTYPES),
    Op("mean", 1, _reduce("mean"), FLOATS),
    Op("amax", 1, _reduce("amax"), DTYPES),
    Op("amin", 1, _reduce("amin"), DTYPES),
    Op("var", 1, _var("var"), FLOATS),
    Op("std", 1, _var("std"), FLOATS),
    Op("argmax", 1, _arg("argmax"), NUMERIC, differentiable=False),
    Op("argmin", 1, _arg("argmin"), NUMERIC, differentiable=False),
    Op("logsumexp", 1, _logsumexp, FLOATS),
    Op("softmax", 1, _softmax("softmax"), FLOATS),
    Op("log_softmax", 1, _softmax("log_softmax"), FLOATS),
    Op("matmul", 2, _matmul, FLOATS, weight=3),
    Op("linear", 3, _linear, FLOATS),
    Op("reshape", 1, _reshape, DTYPES),
    Op("permute", 1, _permute, DTYPES, weight=2),
    Op("flatten", 1, _flatten, DTYPES),
    Op("unsqueeze", 1, _unsqueeze, DTYPES),
    Op("squeeze", 1, _squeeze, DTYPES),
    Op("expand", 1, _expand, DTYPES),
    Op("identity", 1, _identity, DTYPES),
    Op("slice", 1, _slice, DTYPES),
    Op("index", 2, _index, DTYPES, weight=3),
    Op("cat", 2, _cat, DTYPES, weight=2),
    Op("stack", 2, _stack, DTYPES),
    Op("cross_entropy", 2, _cross_entropy, FLOATS, weight=4),
    Op("embedding", 2, _embedding, FLOATS, weight=4),
    Op("mse_loss", 2, _mse, FLOATS),
    Op("layer_norm", 3, _layer_norm, FLOATS),
    Op("cast", 1, _cast, DTYPES),
    Op("creation", 1, _like, NUMERIC),
)
OP_BY_NAME = {op.name: op for op in OPS}
_OP_P = np.array([op.weight for op in OPS]) / sum(op.weight for op in OPS)


class TorchAPI:
    """``pg``'s names as PyTorch spells them, for evaluating the table's expressions with torch; with ``f64``
    float32 becomes float64 (the reference run)."""

    def __init__(self, f64: bool):
        self.float32 = torch.float64 if f64 else torch.float32
        self.float64, self.int64, self.int32, self.bool_ = torch.float64, torch.int64, torch.int32, torch.bool
        self.where, self.maximum, self.minimum = torch.where, torch.maximum, torch.minimum
        self.cat, self.stack = torch.cat, torch.stack
        self.zeros_like, self.ones_like, self.arange = torch.zeros_like, torch.ones_like, torch.arange
        self.full, self.tensor = torch.full, torch.tensor


def _deps(expr: str, names: Sequence[str]) -> tuple[str, ...]:
    import re

    used = set(re.findall(r"\b[xv]\d+\b", expr))
    return tuple(n for n in names if n in used)


# ---------------------------------------------------------------------------------------------------------------
# Generation


class Gen:
    """Builds one random graph, checking each step with PyTorch in the inputs' own dtypes as it goes."""

    def __init__(self, rng: np.random.Generator, max_steps: int):
        self.rng = rng
        self.max_steps = max_steps
        self.float_dtype = "float32" if rng.random() < 0.7 else "float64"
        self.wide = rng.random() < 0.1
        self.max_numel = WIDE_NUMEL if self.wide else MAX_NUMEL
        self.metas: dict[str, Meta] = {}
        self.live: set[str] = set()
        self.values: dict[str, torch.Tensor] = {}
        self.counter = 0
        self.graph = Graph([], [], [])

    def shape(self) -> tuple[int, ...]:
        if self.wide:
            return tuple(
                int(self.rng.integers(32, 41)) if d == 0 else int(self.rng.integers(1, 3))
                for d in range(int(self.rng.integers(1, 3)))
            )
        rank = int(self.rng.choice(5, p=[0.12, 0.25, 0.3, 0.2, 0.13]))
        for _ in range(20):
            s = tuple(int(self.rng.choice(5, p=[0.04, 0.26, 0.3, 0.25, 0.15])) for _ in range(rank))
            if math.prod(s) <= MAX_NUMEL:
                return s
        return (2,) * rank

    def add_inputs(self, inputs: Sequence[Input]) -> None:
        for inp in inputs:
            self.graph.inputs.append(inp)
            self.live.add(inp.name)
            self.values[inp.name] = torch.from_numpy(inp.data.copy())

    def first_input(self) -> None:
        c = Ctx.__new__(Ctx)
        c.gen, c.rng, c.pending = self, self.rng, []
        dtype = self.float_dtype if self.rng.random() < 0.75 else str(self.rng.choice(DTYPES))
        c.new(self.shape(), dtype)
        self.add_inputs(c.pending)

    def step(self) -> bool:
        op = OPS[int(self.rng.choice(len(OPS), p=_OP_P))]
        live = sorted(self.live, key=lambda n: int(n[1:]))
        for _ in range(3):  # a few first operands, recent values first
            recent = live[-3:] if self.rng.random() < 0.6 else live
            a = recent[int(self.rng.integers(len(recent)))]
            if self.metas[a].dtype not in op.dtypes:
                continue
            ctx = Ctx(self, a)
            expr = op.make(ctx)
            if expr is not None:
                break
            self.drop(ctx)
        else:
            return False
        for inp in ctx.pending:
            self.values[inp.name] = torch.from_numpy(inp.data.copy())
        name = f"v{self.counter}"
        env = {**self.values, "pg": TorchAPI(False), "F": torch.nn.functional, "np": np}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = eval(expr, env)  # noqa: S307 - expressions of the op table
        except Exception:
            self.drop(ctx)
            return False
        if not isinstance(out, torch.Tensor) or out.numel() > self.max_numel or out.dtype not in FROM_TORCH:
            self.drop(ctx)
            return False
        if out.is_floating_point() and out.numel() and not bool(out.detach().abs().max() <= MAX_MAGNITUDE):
            self.drop(ctx)
            return False
        self.counter += 1
        self.add_inputs(ctx.pending)
        self.metas[name] = Meta(tuple(out.shape), FROM_TORCH[out.dtype])
        self.values[name] = out
        self.live.add(name)
        self.graph.steps.append(Step(name, op.name, expr, _deps(expr, self.graph.names())))
        return True

    def drop(self, ctx: Ctx) -> None:
        for inp in ctx.pending:
            self.metas.pop(inp.name, None)
            self.values.pop(inp.name, None)

    def build(self) -> Graph:
        self.first_input()
        n = int(self.rng.integers(1, self.max_steps + 1))
        tries = 0
        while len(self.graph.steps) < n and tries < 60:
            tries += 1
            self.step()
        g = self.graph
        g.wide = self.wide
        simt = [name for name, row in SCHEDULES.items() if not row.tensor_core]  # fp32/fp64 graphs
        g.matmul_schedule = str(self.rng.choice(["auto", "auto", *simt]))
        used = {d for s in g.steps for d in s.deps}
        g.outputs = [s.name for s in g.steps if s.name not in used]
        if self.rng.random() < 0.3 and len(g.steps) > 1:  # an intermediate value too
            extra = g.steps[int(self.rng.integers(len(g.steps) - 1))].name
            if extra not in g.outputs:
                g.outputs.insert(0, extra)
        set_weights(g, self.rng, self.metas)
        return g


def set_weights(g: Graph, rng: np.random.Generator, metas: dict[str, Meta]) -> None:
    for o in g.outputs:
        if o not in g.weights and is_float(metas[o].dtype):
            g.weights[o] = rng.standard_normal(metas[o].shape).astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Result:
    """Outputs (name -> array) and gradients (input name -> array, None when no gradient reached it)."""

    outs: dict[str, np.ndarray]
    dtypes: dict[str, str]
    grads: dict[str, np.ndarray | None]
    requires_grad: dict[str, bool] = field(default_factory=dict)  # every value's flag (eager runs)


def _eval_steps(g: Graph, env: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in g.steps:
            env[s.name] = eval(s.expr, env)  # noqa: S307 - expressions of the op table


def run_torch(g: Graph, f64: bool) -> tuple[Result, dict[str, np.ndarray]]:
    """The graph in PyTorch: in the inputs' dtypes, or with every float in float64. Also returns every value."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if f64 else torch.float32)
    try:
        env: dict[str, Any] = {"pg": TorchAPI(f64), "F": torch.nn.functional, "np": np}
        leaves = {}
        for inp in g.inputs:
            data = inp.data.astype(np.float64) if f64 and is_float(str(inp.data.dtype)) else inp.data
            t = torch.tensor(data, requires_grad=inp.requires_grad and g.check_grads)
            env[inp.name] = leaves[inp.name] = t
        _eval_steps(g, env)
        outs = [env[o] for o in g.outputs]
        loss = _loss(g, outs, lambda w, o: torch.tensor(w, dtype=o.dtype))
        if loss is not None and loss.requires_grad:
            loss.backward()
        grads = {n: (t.grad.numpy() if t.grad is not None else None) for n, t in leaves.items() if t.requires_grad}
        values = {n: v.detach().numpy() for n, v in env.items() if isinstance(v, torch.Tensor)}
        result = Result(
            {o: t.detach().numpy() for o, t in zip(g.outputs, outs, strict=True)},
            {o: FROM_TORCH[t.dtype] for o, t in zip(g.outputs, outs, strict=True)},
            grads,
            {s.name: bool(env[s.name].requires_grad) for s in g.steps},
        )
        return result, values
    finally:
        torch.set_default_dtype(old)


def _loss(g: Graph, outs: Sequence[Any], weight: Callable[[np.ndarray, Any], Any]) -> Any:
    loss = None
    if not g.check_grads:
        return None
    for o, t in zip(g.outputs, outs, strict=True):
        if o in g.weights and t.requires_grad:
            term = (t * weight(g.weights[o], t)).sum()
            loss = term if loss is None else loss + term
    return loss


def _pg_weight(w: np.ndarray, t: pg.Tensor) -> pg.Tensor:
    return pg.tensor(w.astype(t.dtype.np))


def _pg_env() -> dict[str, Any]:
    return {"pg": pg, "F": PF, "np": np}


def run_eager(g: Graph, lowered: bool) -> tuple[Result, Any]:
    """picograd eager on the CPU executor; with ``lowered`` also the simplify-stage module of the whole graph
    (outputs, then gradients) and its argument buffers."""
    env = _pg_env()
    leaves = {}
    for inp in g.inputs:
        env[inp.name] = leaves[inp.name] = pg.tensor(inp.data, requires_grad=inp.requires_grad and g.check_grads)
    _eval_steps(g, env)
    outs = [env[o] for o in g.outputs]
    loss = _loss(g, outs, _pg_weight)
    if loss is not None:
        loss.backward()
    grad_names = [n for n, t in leaves.items() if t.requires_grad]
    grads = [leaves[n].grad for n in grad_names]
    present = [x for x in grads if x is not None]
    module = pending_module(outs + present) if lowered else None
    realize(*outs, *present)
    result = Result(
        {o: t.numpy() for o, t in zip(g.outputs, outs, strict=True)},
        {o: t.dtype.name for o, t in zip(g.outputs, outs, strict=True)},
        {n: (x.numpy() if x is not None else None) for n, x in zip(grad_names, grads, strict=True)},
        {s.name: env[s.name].requires_grad for s in g.steps},
    )
    return result, (module, [n for n, x in zip(grad_names, grads, strict=True) if x is not None])


def run_compiled(g: Graph, second: Graph | None) -> list[Result]:
    """The graph as an ``@pg.compile`` step that calls ``backward()``. Inputs marked ``captured`` are tensors of
    the enclosing scope, the others arguments (with or without gradients). Called on ``g``'s data, then (when
    given) on ``second``'s, assigning the captured tensors' new values through ``.data`` (an optimizer update)."""
    grads = {i.name for i in g.inputs if i.requires_grad and g.check_grads}
    params = {i.name: pg.tensor(i.data, requires_grad=i.name in grads) for i in g.inputs if i.captured}
    explicit = [i.name for i in g.inputs if i.name not in params]

    def step(*args: pg.Tensor) -> tuple[pg.Tensor, ...]:
        env = {**_pg_env(), **params, **dict(zip(explicit, args, strict=True))}
        _eval_steps(g, env)
        outs = [env[o] for o in g.outputs]
        loss = _loss(g, outs, _pg_weight)
        if loss is not None:
            loss.backward()
        return tuple(outs)

    fn = pg.compile(step)
    results = []
    for graph in (g, second) if second is not None else (g,):
        data = {i.name: i.data for i in graph.inputs}
        for name, p in params.items():
            p.grad = None
            if graph is not g:
                p.data = pg.tensor(data[name])
        args = [pg.tensor(data[n], requires_grad=n in grads) for n in explicit]
        outs = fn(*args)
        leaves = {**params, **dict(zip(explicit, args, strict=True))}
        results.append(
            Result(
                {o: t.numpy() for o, t in zip(g.outputs, outs, strict=True)},
                {o: t.dtype.name for o, t in zip(g.outputs, outs, strict=True)},
                {n: (t.grad.numpy() if t.grad is not None else None) for n, t in leaves.items() if n in grads},
            )
        )
    return results


def _from_arrays(g: Graph, arrays: Sequence[np.ndarray], grad_names: Sequence[str], eager: Result) -> Result:
    outs = dict(zip(g.outputs, arrays[: len(g.outputs)], strict=True))
    grads: dict[str, np.ndarray | None] = dict.fromkeys(eager.grads)
    grads.update(zip(grad_names, arrays[len(g.outputs) :], strict=True))
    dtypes = {o: pg_dtype_name(a.dtype) for o, a in outs.items()}
    return Result(outs, dtypes, grads)


def pg_dtype_name(d: np.dtype) -> str:
    return {np.dtype(v): k for k, v in NP.items()}[np.dtype(d)]


def run_loops(g: Graph, lowered: Any, eager: Result) -> Result:
    from picograd.driver.pipeline import passes_until, run_passes
    from picograd.runtime.loop_interpreter import run_function

    (module, buffers), grad_names = lowered
    work = module.clone()
    run_passes(work, passes_until("loops")[len(passes_until("simplify")) :])
    return _from_arrays(g, run_function(work, "main", buffers), grad_names, eager)


def run_ptx(g: Graph, lowered: Any, eager: Result) -> Result:
    sys.path.insert(0, str(ROOT / "tests"))
    from _ptx_emulator import run_program

    from picograd.driver.gpu_compile import compile_for_cuda

    (module, buffers), grad_names = lowered
    program = compile_for_cuda(module, matmul_schedule=g.matmul_schedule)
    with np.errstate(all="ignore"):
        arrays = run_program(program, buffers)
    return _from_arrays(g, arrays, grad_names, eager)


# ---------------------------------------------------------------------------------------------------------------
# Comparing


def _close(got: np.ndarray, want: np.ndarray, rtol: float) -> bool:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return False
    finite = np.isfinite(want)
    if not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        return False
    scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
    return bool(np.all(np.abs(got[finite] - want[finite]) <= rtol * (np.abs(want[finite]) + scale)))


def compare(g: Graph, got: Result, ref: Result, native: Result, rtol: float) -> str | None:
    """The first difference between ``got`` and the references, or None: dtypes and shapes as PyTorch's native
    run, float values close to the float64 run (or to the native one), others equal to one of them; in eager
    runs, which values require grad (none after an op of the table that is not ``differentiable``)."""
    ops = {s.name: OP_BY_NAME[s.op] for s in g.steps}
    for name, flag in got.requires_grad.items():
        want = ref.requires_grad[name] and ops[name].differentiable
        if flag != want:
            return f"{name}: requires_grad {flag}, PyTorch {ref.requires_grad[name]}"
    for o in g.outputs:
        want_dtype = native.dtypes[o]
        if got.dtypes[o] != want_dtype:
            return f"{o}: dtype {got.dtypes[o]}, PyTorch {want_dtype}"
        a, w, n = got.outs[o], ref.outs[o], native.outs[o]
        if a.shape != n.shape:
            return f"{o}: shape {a.shape}, PyTorch {n.shape}"
        if is_float(want_dtype):
            if not _close(a, w, rtol) and not _close(a, n, rtol):
                return f"{o}: values differ\n  got   {_fmt(a)}\n  torch {_fmt(w)}"
        elif not np.array_equal(a, w) and not np.array_equal(a, n):
            return f"{o}: values differ\n  got   {_fmt(a)}\n  torch {_fmt(n)}"
    for name in ref.grads:
        inp = next(i.data for i in g.inputs if i.name == name)
        shape = inp.shape
        got_grad = got.grads.get(name)
        if got_grad is not None and got_grad.dtype != inp.dtype:
            return f"grad of {name}: dtype {got_grad.dtype}, expected {inp.dtype}"
        a, w, n = (x if x is not None else np.zeros(shape) for x in (got_grad, ref.grads[name], native.grads.get(name)))
        if a.shape != shape:
            return f"grad of {name}: shape {a.shape}, expected {shape}"
        if not _close(a, w, rtol) and not _close(a, n, rtol):
            return f"grad of {name}: values differ\n  got   {_fmt(a)}\n  torch {_fmt(w)}"
    return None


def _fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=6, threshold=40).replace("\n", " ")


# ---------------------------------------------------------------------------------------------------------------
# Checking one graph, shrinking, printing


@dataclass
class Failure:
    stage: str
    kind: str  # "mismatch" or "crash"
    message: str
    known: str | None = None  # the KNOWN_ISSUES entry this failure is
    second: Graph | None = None  # the data of the second call, for a failure there

    def same(self, other: Failure | None) -> bool:
        """Whether ``other`` fails the same way: same stage and kind, for a crash the same exception and place."""
        if other is None or other.known is not None or (other.stage, other.kind) != (self.stage, self.kind):
            return False
        return self.kind != "crash" or other.message.split(":")[0] == self.message.split(":")[0]


@dataclass
class Options:
    loops: bool = True
    ptx: bool = False
    second_call: bool = True


def tiny(g: Graph, values: dict[str, np.ndarray]) -> bool:
    limit = WIDE_NUMEL if g.wide else TINY_NUMEL
    return all(np.asarray(v).size <= limit for v in values.values()) and len(g.steps) <= 6


def check(g: Graph, opts: Options, rng: np.random.Generator | None = None) -> Failure | None:
    """Run ``g`` through every stage; the first failure, or None. Raises ``Skip`` when PyTorch rejects it."""
    try:
        _, values = run_torch(g, f64=False)
    except Exception as e:
        raise Skip(f"PyTorch: {e}") from None
    failure = _check(g, opts, rng)
    if failure is not None:
        failure.known = known_issue(g, failure, values)
    return failure


def _check(g: Graph, opts: Options, rng: np.random.Generator | None) -> Failure | None:
    try:
        native, values = run_torch(g, f64=False)
        ref, _ = run_torch(g, f64=True)
    except Exception as e:
        raise Skip(f"PyTorch: {e}") from None
    all_f64 = all(not is_float(d) or d == "float64" for d in (str(v.dtype) for v in values.values()))
    rtol = 1e-7 if all_f64 else 2e-3
    small = tiny(g, values)
    stage = "eager"
    try:
        eager, lowered = run_eager(g, lowered=small and (opts.loops or opts.ptx))
        if (msg := compare(g, eager, ref, native, rtol)) is not None:
            return Failure(stage, "mismatch", msg)
        stage = "compiled"
        second = None
        if opts.second_call and rng is not None:
            second = redraw(g, rng)
        compiled = run_compiled(g, second)
        if (msg := compare(g, compiled[0], ref, native, rtol)) is not None:
            return Failure(stage, "mismatch", msg)
        if second is not None:
            stage = "compiled (second call)"
            try:
                native2, _ = run_torch(second, f64=False)
                ref2, _ = run_torch(second, f64=True)
            except Exception:
                native2 = None
            if native2 is not None and (msg := compare(second, compiled[1], ref2, native2, rtol)) is not None:
                return Failure(stage, "mismatch", msg, second=second)
        STAGE_RUNS["compiled"] += 1
        if small and opts.loops:
            stage = "loops"
            STAGE_RUNS["loops"] += 1
            if (msg := compare(g, run_loops(g, lowered, eager), ref, native, rtol)) is not None:
                return Failure(stage, "mismatch", msg)
        if small and opts.ptx:
            stage = "ptx"
            STAGE_RUNS["ptx"] += 1
            if (msg := compare(g, run_ptx(g, lowered, eager), ref, native, rtol)) is not None:
                return Failure(stage, "mismatch", msg)
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        first = str(e).splitlines()[0] if str(e) else ""
        return Failure(stage, "crash", f"{type(e).__name__} at {where}: {first[:300]}")
    return None


STAGE_RUNS = {"compiled": 0, "loops": 0, "ptx": 0}  # graphs that reached each stage (the summary line)


class Skip(Exception):
    pass


def redraw(g: Graph, rng: np.random.Generator) -> Graph:
    """``g`` with fresh data for every input (compiled-step arguments and the captured tensors)."""
    inputs = [replace(inp, data=draw(rng, inp.data.shape, pg_dtype_name(inp.data.dtype), inp.kind)) for inp in g.inputs]
    return replace(g, inputs=inputs)


def prune(g: Graph) -> Graph:
    """Drop the steps and inputs that no output needs."""
    needed = set(g.outputs)
    steps = []
    for s in reversed(g.steps):
        if s.name in needed:
            steps.append(s)
            needed.update(s.deps)
    inputs = [i for i in g.inputs if i.name in needed]
    return replace(g, inputs=inputs, steps=list(reversed(steps)))


def shrink(g: Graph, failure: Failure, opts: Options, budget_s: float = 60.0) -> tuple[Graph, Failure]:
    """Greedy shrinking: keep a smaller graph while it fails the same way (same stage, same kind): fewer outputs,
    no gradients, steps cut into inputs (holding PyTorch's value), inputs that need no gradient."""
    start = time.time()

    def attempt(candidate: Graph) -> Failure | None:
        try:
            second = failure.stage.endswith("(second call)")
            f = check(prune(candidate), replace(opts, second_call=second), np.random.default_rng(0) if second else None)
        except Skip:
            return None
        return f if failure.same(f) else None

    best, best_f = prune(g), failure
    changed = True
    while changed and time.time() - start < budget_s:
        changed = False
        candidates: list[Graph] = []
        if len(best.outputs) > 1:
            candidates += [replace(best, outputs=[o]) for o in best.outputs]
        if best.check_grads:
            candidates.append(replace(best, check_grads=False))
        try:
            _, values = run_torch(best, f64=False)
        except Exception:
            values = {}
        for s in best.steps:
            if s.name in values and s.name not in best.outputs:
                data = values[s.name].copy()
                inp = Input(s.name, data, best.check_grads and is_float(str(data.dtype)), ("fixed", data))
                steps = [t for t in best.steps if t is not s]
                candidates.append(replace(best, inputs=[*best.inputs, inp], steps=steps))
        for i, inp in enumerate(best.inputs):
            if inp.requires_grad:
                candidates.append(
                    replace(best, inputs=[*best.inputs[:i], replace(inp, requires_grad=False), *best.inputs[i + 1 :]])
                )
        for cand in candidates:
            f = attempt(cand)
            if f is not None:
                best, best_f, changed = prune(cand), f, True
                break
    return best, best_f


def _np_name(a: np.ndarray) -> str:
    return "np.bool_" if a.dtype == np.bool_ else f"np.{a.dtype.name}"


def repro(g: Graph, failure: Failure) -> str:
    """The failing graph as picograd code."""
    lines = ["import numpy as np", "import picograd as pg", "import picograd.nn.functional as F", ""]
    compiled = failure.stage.startswith("compiled")
    for inp in g.inputs:
        rg = ", requires_grad=True" if inp.requires_grad and g.check_grads else ""
        lines.append(f"{inp.name} = pg.tensor(np.array({inp.data.tolist()!r}, dtype={_np_name(inp.data)}){rg})")
    body = [f"{s.name} = {s.expr}" for s in g.steps]
    grad_inputs = [i.name for i in g.inputs if i.requires_grad and g.check_grads]
    loss_terms = [
        f"({o} * pg.tensor(np.array({g.weights[o].tolist()!r}), dtype={o}.dtype)).sum()"
        for o in g.outputs
        if o in g.weights
    ]
    if grad_inputs and loss_terms:
        body.append(f"({' + '.join(loss_terms)}).backward()")
    outs = ", ".join(g.outputs)
    if compiled:
        captured = [i.name for i in g.inputs if i.captured]
        args = [i.name for i in g.inputs if not i.captured]
        lines += ["", "@pg.compile", f"def step({', '.join(args)}):"]
        lines += ["    " + b for b in body] + [f"    return {outs},", "", f"outs = step({', '.join(args)})"]
        lines.append("print([o.numpy() for o in outs]" + "".join(f", {n}.grad" for n in grad_inputs) + ")")
        if failure.second is not None:
            lines.append("# the second call, on new data:")
            new = {i.name: i.data for i in failure.second.inputs}
            for n in captured:
                if n in grad_inputs:
                    lines.append(f"{n}.grad = None")
                lines.append(f"{n}.data = pg.tensor(np.array({new[n].tolist()!r}, dtype={_np_name(new[n])}))")
            for n in args:
                rg = ", requires_grad=True" if n in grad_inputs else ""
                lines.append(f"{n} = pg.tensor(np.array({new[n].tolist()!r}, dtype={_np_name(new[n])}){rg})")
            lines.append(f"outs = step({', '.join(args)})")
            lines.append("print([o.numpy() for o in outs]" + "".join(f", {n}.grad" for n in grad_inputs) + ")")
    else:
        lines += body
        lines.append(f"print({outs}" + "".join(f", {n}.grad" for n in grad_inputs) + ")")
    head = f"# {failure.kind} in stage '{failure.stage}': {failure.message}"
    if failure.stage in ("loops", "ptx"):
        head += f"\n# (the graph of the eager code below, run on the {failure.stage} stage)"
    if failure.stage == "ptx":
        head += f" with matmul_schedule={g.matmul_schedule!r}"
    return head + "\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Driver


def fuzz(
    n: int,
    seed: int,
    time_limit: float | None = None,
    max_steps: int = 6,
    loops_every: int = 1,
    ptx_every: int = 10,
    do_shrink: bool = True,
    out: Any = sys.stdout,
    verbose: bool = False,
) -> tuple[int, int, int]:
    """Run ``n`` graphs (or until ``time_limit`` seconds); print each failure shrunk; return (graphs, mismatches,
    crashes)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fuzz(n, seed, time_limit, max_steps, loops_every, ptx_every, do_shrink, out, verbose)


def _fuzz(
    n: int,
    seed: int,
    time_limit: float | None,
    max_steps: int,
    loops_every: int,
    ptx_every: int,
    do_shrink: bool,
    out: Any,
    verbose: bool,
) -> tuple[int, int, int]:
    start = time.time()
    for k in STAGE_RUNS:
        STAGE_RUNS[k] = 0
    graphs = mismatches = crashes = skipped = known = 0
    for i in range(n):
        if time_limit is not None and time.time() - start > time_limit:
            break
        rng = np.random.default_rng([seed, i])
        g = Gen(rng, max_steps).build()
        opts = Options(loops=i % loops_every == 0, ptx=i % ptx_every == 0)
        try:
            failure = check(g, opts, rng)
        except Skip:
            skipped += 1
            continue
        graphs += 1
        if verbose:
            print(f"graph {i}: {' '.join(s.op for s in g.steps)}", file=out, flush=True)
        if failure is None:
            continue
        if failure.known is not None:
            known += 1
            if verbose:
                print(f"graph {i}: known issue {failure.known}", file=out, flush=True)
            continue
        if failure.kind == "crash":
            crashes += 1
        else:
            mismatches += 1
        print(f"\n=== graph seed={seed} index={i}: {failure.kind} in {failure.stage}", file=out, flush=True)
        runs = dict(STAGE_RUNS)
        small, small_f = shrink(g, failure, opts) if do_shrink else (g, failure)
        STAGE_RUNS.update(runs)
        print(repro(small, small_f), file=out, flush=True)
    elapsed = time.time() - start
    counts = " ".join(f"{k}={v}" for k, v in STAGE_RUNS.items())
    print(f"seed={seed} time={elapsed:.1f}s skipped={skipped} known={known} stage runs: {counts}", file=out)
    print(f"graphs={graphs} mismatches={mismatches} crashes={crashes}", file=out, flush=True)
    return graphs, mismatches, crashes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="graphs to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--max-steps", type=int, default=6, help="ops per graph (at most)")
    parser.add_argument("--loops-every", type=int, default=1, help="run every k-th tiny graph on the loop stage")
    parser.add_argument("--ptx-every", type=int, default=10, help="run every k-th tiny graph on the PTX emulator")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    _, mismatches, crashes = fuzz(
        args.n,
        args.seed,
        args.time_limit,
        args.max_steps,
        args.loops_every,
        args.ptx_every,
        not args.no_shrink,
        verbose=args.verbose,
    )
    return 1 if mismatches or crashes else 0


if __name__ == "__main__":
    sys.exit(main())
