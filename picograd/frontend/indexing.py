"""``Tensor.__getitem__``: numpy's basic and integer-array indexing, recorded as slice/reshape/gather ops.

Basic indices (ints, slices with positive steps, None, Ellipsis) become one ``pg.slice`` and a reshape. Integer
arrays (tensors, lists, tuples inside an index tuple, numpy arrays) follow PyTorch's advanced-indexing rules: ints
select first (as basic indices, unlike numpy, which counts them as index arrays), then the index arrays broadcast
together; when they stand next to each other among the remaining dims the result dims replace theirs in place,
otherwise they go first (``zeros(2, 3, 4)[0, :, idx]`` has shape ``(3, len(idx))``, numpy gives the transpose); 0-d
index tensors select like ints. Several
index arrays are merged into one linear index over the merged dims, so every case is a single ``pg.gather``.
Negative indices count from the end; out-of-range ones raise ``IndexError`` (for index tensors computed lazily or
in a compiled step, when the ``pg.check_index`` op runs). Bool masks (data-dependent shapes) are refused.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from picograd.dialects.pg import broadcast_shape
from picograd.errors import ShapeError
from picograd.frontend import dtypes
from picograd.frontend.graph import STATE, at, user_location
from picograd.runtime.device import Device

if TYPE_CHECKING:
    from picograd.frontend.tensor import Tensor


def _is_array_index(x: Any) -> bool:
    """Tensors, numpy arrays, lists and (inside an index tuple) tuples of ints are integer-array indices."""
    from picograd.frontend.tensor import Tensor

    return isinstance(x, Tensor | list | tuple | np.ndarray)


def checked_index(
    t: Tensor, size: int, dim: int, what: str = "index", negative: bool = False, template: str | None = None
) -> Tensor:
    """The int64 indices ``t``, checked to lie in ``[0, size)`` (``[-size, size)`` with ``negative``): a realized
    host tensor now, anything else by a ``pg.check_index`` op when the value is computed. Raises ``IndexError``
    naming the first bad ``what`` (``index``, ``target``), ``dim``, ``size`` and the user's ``file:line``, or, for a
    data check with ``template`` (its ``{}`` the bad value) as the message, ``RuntimeError`` (``pg.check_error``:
    the same in both cases)."""
    from picograd.frontend.tensor import record

    t = t.long()
    low = -size if negative else 0
    buf = t._buffer
    if isinstance(buf, np.ndarray) and STATE.trace is None:  # a traced input is a placeholder: check at run time
        bad = (buf < low) | (buf >= size)
        if bad.any():
            value = int(buf[bad].flat[0])
            text = (
                template.replace("{}", str(value), 1)
                if template is not None
                else (f"{what} {value} is out of range for dim {dim} of size {size}")
            )
            raise (IndexError if template is None else RuntimeError)(f"{text}{at(user_location())}")
        return t
    return record("check_index", [t], (what, dim, size, negative, template), t.shape, t.dtype)


def _index_tensor(x: Any, size: int, dim: int, device: Device) -> Tensor:
    """An int64 index tensor for dim ``dim`` of size ``size``, checked (``IndexError``) and with negative entries
    wrapped by ``size``; lists and arrays go to ``device``."""
    from picograd.frontend.tensor import Tensor, where

    loc = user_location()
    if isinstance(x, Tensor):
        if x.dtype == dtypes.bool_:
            raise ShapeError(f"indexing with a bool mask gives a data-dependent shape; use where() instead{at(loc)}")
        if x.dtype.category != 1:
            raise ShapeError(f"tensors used as indices must be integer tensors, got {x.dtype.name}{at(loc)}")
        t = checked_index(x, size, dim, negative=True)
        # a realized host index needs no wrapping when it has no negative entry; a traced input always does, since
        # the compiled step will see other data
        buf = t._buffer
        known = isinstance(buf, np.ndarray) and STATE.trace is None
        return where(t < 0, t + size, t) if not known or (buf < 0).any() else t
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        raise ShapeError(f"indexing with a bool mask gives a data-dependent shape; use where() instead{at(loc)}")
    if arr.dtype.kind not in "iu":
        raise ShapeError(f"indices must be integers, got {arr.dtype}{at(loc)}")
    bad = (arr < -size) | (arr >= size)
    if bad.any():
        raise IndexError(f"index {int(arr[bad].flat[0])} is out of range for dim {dim} of size {size}{at(loc)}")
    return Tensor(np.where(arr < 0, arr + size, arr).astype(np.int64), device=device)


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` with numpy semantics (see the module docstring). Raises ``ShapeError`` for too many indices
    and negative steps, ``IndexError`` for out-of-range indices (index arrays: when their values are known)."""
    loc = user_location()
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise ShapeError(f"an index can only have a single ellipsis{at(loc)}")
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if used > x.ndim:
        raise ShapeError(f"too many indices ({used}) for a tensor of shape {x.shape}{at(loc)}")
    ellipsis = [k for k, i in enumerate(items) if i is Ellipsis]  # `in`/index() would compare tensors with ==
    if ellipsis:
        e = ellipsis[0]
        items[e : e + 1] = [slice(None)] * (x.ndim - used)
    else:  # the ellipsis already stands for the dims not indexed
        items += [slice(None)] * (x.ndim - used)

    start, stop, step = [], [], []
    out_shape: list[int] = []  # shape after basic indexing, before advanced
    advanced: list[tuple[int, int, Any]] = []  # (dim in out_shape, dim of x, index)
    dim = 0
    for item in items:
        if item is None:
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if isinstance(item, slice):
            a, b, s = item.indices(size)
            if s <= 0:
                raise ShapeError(f"slices need a positive step, got {item.step}{at(loc)}")
            b = max(a, b)
            start.append(a)
            stop.append(b)
            step.append(s)
            out_shape.append(len(range(a, b, s)))
        elif _is_array_index(item):
            start.append(0)
            stop.append(size)
            step.append(1)
            advanced.append((len(out_shape), dim, item))
            out_shape.append(size)
        elif isinstance(item, int | np.integer):
            i = int(item)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of range for dim {dim} of size {size} of shape {x.shape}{at(loc)}")
            i %= size
            start.append(i)
            stop.append(i + 1)
            step.append(1)
        else:
            raise ShapeError(f"unsupported index of type {type(item).__name__}{at(loc)}")
        dim += 1

    y = x
    if (tuple(start), tuple(stop), tuple(step)) != ((0,) * x.ndim, x.shape, (1,) * x.ndim):
        from picograd.frontend.tensor import record

        shape = tuple(len(range(a, b, s)) for a, b, s in zip(start, stop, step, strict=True))
        y = record("slice", [x], (tuple(start), tuple(stop), tuple(step)), shape, x.dtype)
    y = y.reshape(*out_shape)
    if not advanced:
        return y
    return _advanced(y, advanced)


def _advanced(y: Tensor, advanced: list[tuple[int, int, Any]]) -> Tensor:
    """Apply integer-array indices at dims ``advanced`` of ``y`` as one gather."""
    from picograd.frontend.tensor import record

    loc = user_location()
    dims = [d for d, _, _ in advanced]
    idx = [_index_tensor(i, y.shape[d], xd, y.device) for d, xd, i in advanced]
    bshape: tuple[int, ...] | None = ()
    for t in idx:
        bshape = broadcast_shape(bshape, t.shape) if bshape is not None else None
    if bshape is None:
        shapes = ", ".join(str(t.shape) for t in idx)
        raise ShapeError(f"index arrays of shapes {shapes} cannot be broadcast together{at(loc)}")
    # PyTorch's placement of the broadcast index dims: 0-d indices select (like ints); the others replace their
    # dims in place when no slice stands between them, else go first. Group every indexed dim at that place.
    arrays = [d for d, t in zip(dims, idx, strict=True) if t.ndim]
    rest = [d for d in range(y.ndim) if d not in dims]
    adjacent = bool(arrays) and all(d in dims for d in range(arrays[0], arrays[-1] + 1))
    first = sum(1 for d in rest if d < arrays[0]) if adjacent else 0
    order = [*rest[:first], *dims, *rest[first:]]
    if order != list(range(y.ndim)):
        y = y.permute(*order)
    dims = list(range(first, first + len(dims)))
    sizes = [y.shape[d] for d in dims]
    linear = idx[-1]._broadcast(bshape)
    stride = sizes[-1]
    for t, size in zip(reversed(idx[:-1]), reversed(sizes[:-1]), strict=True):
        linear = t._broadcast(bshape) * stride + linear
        stride *= size
    merged = y.reshape(*y.shape[:first], math.prod(sizes), *y.shape[first + len(dims) :])
    shape = (*merged.shape[:first], *bshape, *merged.shape[first + 1 :])
    return record("gather", [merged, linear], (first,), shape, y.dtype)
