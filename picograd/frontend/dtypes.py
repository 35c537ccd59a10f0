"""Tensor dtypes and PyTorch's type promotion.

``pg.float32`` etc. are ``DType`` objects; wherever a dtype is accepted, a string (``"int64"``), a numpy dtype
or a ``DType`` will do. Promotion follows ``torch.result_type``: categories bool < integer < float; within a
category the wider type wins among operands of the same priority, and priorities are dimensioned tensors > 0-d
tensors > Python scalars (a scalar never widens a tensor of its own category; a float scalar makes an int tensor
float32). ``bfloat16`` and ``float16`` are both 16 bits wide and neither holds the other: together they promote to
``float32``, as in PyTorch. Their numpy storage is ``ml_dtypes.bfloat16`` and ``numpy.float16``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import bf16, f16, f32, f64, i1, i32, i64
from xdsl.ir import Attribute

from picograd.errors import DTypeError


@dataclass(frozen=True, eq=False)
class DType:
    """A tensor element type: its name, IR element type, promotion category (0 bool, 1 int, 2 float) and numpy
    dtype (``np``)."""

    name: str
    ir: Attribute
    category: int

    @functools.cached_property
    def np(self) -> np.dtype:
        """The numpy dtype that stores this type's values. ``bfloat16``'s comes from ``ml_dtypes``, imported on
        first use (its import takes about half a CPU second, a twentieth of ``pgc --emit=ptx``)."""
        if self.name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.name)

    @property
    def is_floating_point(self) -> bool:
        return self.category == 2

    def __repr__(self) -> str:
        return f"pg.{self.name}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DType):
            return self is other
        try:
            return self is as_dtype(other)  # type: ignore[arg-type]
        except DTypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)


bfloat16 = DType("bfloat16", bf16, 2)
float16 = DType("float16", f16, 2)
float32 = DType("float32", f32, 2)
float64 = DType("float64", f64, 2)
int64 = DType("int64", i64, 1)
int32 = DType("int32", i32, 1)
bool_ = DType("bool", i1, 0)

ALL = (float32, float64, bfloat16, float16, int64, int32, bool_)
LOW_PRECISION = (bfloat16, float16)  # 16-bit floats: computed in float32 and rounded (CPU executor, autocast)
_BY_NAME = {d.name: d for d in ALL} | {
    "float": float32,
    "double": float64,
    "half": float16,
    "long": int64,
    "int": int32,
}
_BY_NP_NAME = {d.name: d for d in ALL}  # numpy's name of each dtype (ml_dtypes names bfloat16 "bfloat16")
_BY_NP: dict[np.dtype, DType] = {}  # numpy dtypes seen by as_dtype (filled on use: ml_dtypes loads lazily)


def as_dtype(x: Any) -> DType:
    """The ``DType`` named by a DType, a string, a numpy dtype or a Python type (float, int, bool).

    Raises ``DTypeError`` for anything else (complex and unsigned types are not supported)."""
    if isinstance(x, DType):
        return x
    if isinstance(x, np.dtype):  # the hot path (a buffer's dtype)
        d = _BY_NP.get(x)
        if d is not None:
            return d
    if x is float:
        return float32
    if x is int:
        return int64
    if x is bool:
        return bool_
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    try:
        d = _BY_NP_NAME[np.dtype(x).name]
    except (TypeError, KeyError):
        raise DTypeError(f"unsupported dtype {x!r}; picograd has {', '.join(d.name for d in ALL)}") from None
    if isinstance(x, np.dtype):
        _BY_NP[x] = d
    return d


def from_ir(element: Attribute) -> DType:
    """The ``DType`` of an IR element type."""
    for d in ALL:
        if d.ir == element:
            return d
    raise DTypeError(f"no picograd dtype for IR element type {element}")


def default_for(category: int) -> DType:
    """The dtype a Python scalar of a category gets: bool, int64 or float32."""
    return (bool_, int64, float32)[category]


def promote(operands: list[tuple[DType, int]]) -> DType:
    """Result dtype of an op on ``(dtype, priority)`` operands, priority 2 for dimensioned tensors, 1 for 0-d
    tensors, 0 for Python scalars (``torch.result_type``)."""
    category = max(d.category for d, _ in operands)
    best = max(p for d, p in operands if d.category == category)
    candidates = [d for d, p in operands if d.category == category and p == best]
    if best == 0:  # only scalars reach the top category: its default dtype
        return default_for(category)
    widest = max(candidates, key=lambda d: d.np.itemsize)
    if widest in LOW_PRECISION and bfloat16 in candidates and float16 in candidates:
        return float32  # neither 16-bit float holds the other (torch.promote_types(bfloat16, float16))
    return widest
