"""Shared by ``pg-bufferize`` and ``pg-to-loops``: buffer types and sizes, and how errors
name an op's location. (The calling-convention attribute names are in ``picograd.dialects.attrs``.)"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import (
    BFloat16Type,
    FileLineColLoc,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    MemRefType,
    TensorType,
)
from xdsl.ir import Attribute, Operation


def where(op: Operation) -> str:
    """`` at file:line:col`` of ``op``'s location, or an empty string when it has none."""
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return f" at {loc.filename.data}:{loc.line.data}:{loc.column.data}"
    return ""


def memref_type(t: Attribute) -> MemRefType:
    """The ``memref`` type with the shape and element type of the tensor type ``t``."""
    assert isinstance(t, TensorType), f"expected a tensor type, got {t}"
    return MemRefType(t.element_type, list(t.get_shape()))


def element_bytes(element: Attribute) -> int:
    """Bytes of one element in a buffer (an ``i1`` takes a byte)."""
    if isinstance(element, Float32Type):
        return 4
    if isinstance(element, Float64Type):
        return 8
    if isinstance(element, BFloat16Type | Float16Type):
        return 2
    if isinstance(element, IntegerType):
        return max(1, (element.width.data + 7) // 8)
    raise NotImplementedError(f"no buffer layout for element type {element}")


def byte_size(t: Attribute) -> int:
    """Bytes of a buffer of the tensor or memref type ``t``."""
    assert isinstance(t, TensorType | MemRefType)
    return math.prod(t.get_shape()) * element_bytes(t.get_element_type())
