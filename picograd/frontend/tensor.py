"""The lazy ``Tensor`` of picograd (design.md section 2; PyTorch's names and semantics).

A tensor is a handle to a value of the recorded graph (``graph.Node``, result index). Ops check shapes and dtypes
when they are recorded and raise ``ShapeError`` / ``DTypeError`` naming the shapes and the user's ``file:line``;
they compute nothing. ``.numpy()``, ``.item()``, ``.tolist()`` and ``print`` realize a value: the graph it needs is
compiled (once per structure) and run. Broadcasting follows numpy; the IR gets explicit ``pg.broadcast_to`` and
``pg.cast`` ops so that no later pass sees implicit broadcasting or mixed dtypes.

Devices: a tensor lives on "cpu" (numpy) or "cuda" (a device buffer); an op's result lives where its operands do.
Operands on different devices raise ``DeviceError`` naming both and the user's ``file:line``, except 0-d tensors,
which join ops on any device as scalars (PyTorch allows this for 0-d CPU tensors; here it also covers the
optimizer's step count and the random generator's offset once they live on the GPU). Python scalars, lists and
numpy arrays in an op go to the device of its tensor operands. ``picograd.frontend.device`` does the copies.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from picograd.dialects.pg import broadcast_shape, matmul_shape
from picograd.errors import DeviceError, DTypeError, ShapeError
from picograd.frontend import device as devices
from picograd.frontend import dtypes
from picograd.frontend.amp import FLOAT32, LOWER_PRECISION, matmul_tf32, opmath
from picograd.frontend.dtypes import DType, as_dtype, promote
from picograd.frontend.graph import DETACHED, STATE, Loc, Node, Shape, Value, at, leaf, user_location
from picograd.frontend.realize import run_graph
from picograd.runtime.device import Device

Scalar = int | float | bool

# Ops whose results never carry a gradient (their vjp is zero or undefined).
_NO_GRAD_KINDS = frozenset({"cmp", "argmax", "argmin", "stop_gradient", "iota", "random", "constant", "check_index"})


class _Holder:
    __slots__ = ("_node",)
    _node: Any


def _sole_holder_refcount() -> int:
    """``sys.getrefcount(node)`` in ``Tensor._set_buffer`` when the tensor's ``_node`` attribute is the only
    reference besides the local variable (the count differs between interpreters)."""
    holder = _Holder()
    holder._node = object()
    node = holder._node
    return sys.getrefcount(node)


_SOLE_HOLDER_REFCOUNT = _sole_holder_refcount()


def check_device(device: Any) -> Device:
    """The ``pg.device`` of a device argument (a ``pg.device`` or a string) that can be used now; ``DeviceError``
    (with the user's ``file:line``) for an unknown name, or for a device that is not there, naming what is missing
    (driver, GPU, a GPU of that index)."""
    if device is None or device is devices.CPU or device == "cpu":  # the common case, without a frame lookup
        return devices.CPU
    try:
        return devices.resolve(device)
    except DeviceError:
        return devices.resolve(device, user_location())  # raises again, naming the user's line


def _numpy_of(data: Any, dtype: DType | None) -> np.ndarray:
    """Data to a numpy array with picograd's dtype rules: Python floats -> float32, ints -> int64, bools -> bool;
    numpy arrays keep their dtype."""
    if isinstance(data, Tensor):
        arr = data.numpy()
    elif isinstance(data, np.ndarray | np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
    if dtype is not None:
        with np.errstate(over="ignore"):  # a value beyond a 16-bit float's range is inf, silently (as PyTorch)
            arr = arr.astype(dtype.np)
    else:
        arr = arr.astype(as_dtype(arr.dtype).np, copy=False)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


class Tensor:
    """A lazy n-dimensional array on "cpu" (numpy) or "cuda" (GPU memory) — PyTorch's ``torch.Tensor`` API.

    ``Tensor(data, dtype=None, device=None, requires_grad=False)``: data is a scalar, nested lists, a numpy array
    or a tensor; Python floats become float32, ints int64, bools bool, numpy arrays keep their dtype. ``device`` is
    "cpu" (the default; a tensor's own device when ``data`` is a tensor) or "cuda" (the data is uploaded). Raises
    ``DTypeError`` when ``requires_grad`` is set on a non-float tensor, ``DeviceError`` for an unknown device or
    "cuda" without a GPU (the message names the missing driver or GPU).
    """

    __array_priority__ = 1000  # numpy scalars on the left defer to our reflected operators

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False):
        dev = data.device if device is None and isinstance(data, Tensor) else check_device(device)
        arr = _numpy_of(data, as_dtype(dtype) if dtype is not None else None)
        buf = arr if dev == devices.CPU else devices.upload(arr, dev)
        self._init(leaf(buf, as_dtype(arr.dtype), owner=self), 0)
        if requires_grad:
            self.requires_grad = True

    def _init(self, node: Node, index: int, requires_grad: bool = False) -> None:
        self._node = node
        self._index = index
        self._requires_grad = requires_grad
        self._user_leaf = False  # requires_grad was set by the user: .grad accumulates here
        self._grad: Tensor | None = None

    @staticmethod
    def _wrap(node: Node, index: int = 0, requires_grad: bool = False) -> Tensor:
        t = Tensor.__new__(Tensor)
        t._init(node, index, requires_grad)
        return t

    @staticmethod
    def _of_buffer(data: Any, device: Device | None = None) -> Tensor:
        """A tensor holding a realized buffer (numpy array or device buffer; on ``device``, where the caller knows
        it), without copying it."""
        t = Tensor.__new__(Tensor)
        t._init(leaf(data, as_dtype(data.dtype), owner=t, device=device), 0)
        return t

    # -- metadata ------------------------------------------------------------------------------------------------

    @property
    def _value(self) -> Value:
        node = self._node
        trace = STATE.trace
        if trace is not None and node.kind != "leaf" and id(node) not in trace.created:
            trace.lazy_reads.setdefault(id(self), self)  # ``pg.compile`` computes it and reads it as an input
        return (node, self._index)

    @property
    def device(self) -> Device:
        """Where the value lives: a ``pg.device`` (``device(type='cpu')``, ``device(type='cuda', index=0)``); it
        also compares equal to its name ("cpu", "cuda", "cuda:0")."""
        return self._node.device

    @property
    def is_cuda(self) -> bool:
        return self._node.device.type == "cuda"

    @property
    def shape(self) -> Shape:
        """The shape as a tuple of ints."""
        return self._node.types[self._index][0]

    @property
    def dtype(self) -> DType:
        return self._node.types[self._index][1]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return math.prod(self.shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[norm_dim(dim, self.ndim, self.shape)]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        """True for tensors that do not require grad and for those the user made require grad."""
        return not self._requires_grad or self._user_leaf

    # -- autograd state ------------------------------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if flag and not self.dtype.is_floating_point:
            raise DTypeError(
                f"only float tensors can require gradients, got a {self.dtype.name} tensor{at(user_location())}"
            )
        self._requires_grad = bool(flag)
        self._user_leaf = bool(flag)
        if flag:
            self._mark_grad_leaf()

    def requires_grad_(self, flag: bool = True) -> Tensor:
        self.requires_grad = flag
        return self

    def _mark_grad_leaf(self) -> None:
        if self._node.grad_leaves is None:
            self._node.grad_leaves = {}
        self._node.grad_leaves[self._index] = weakref.ref(self)

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient (a tensor of this tensor's shape), or None."""
        trace = STATE.trace
        if trace is not None and id(self) not in trace.grad_writes:  # the trace depends on whether it is None
            trace.grad_reads.setdefault(id(self), (self, self._grad is None))
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        trace = STATE.trace
        if trace is not None and id(self) not in trace.grad_writes:
            trace.grad_writes[id(self)] = self
            trace.old_grads[id(self)] = self._grad
        self._grad = value

    def _assign(self, value: Tensor) -> None:
        """Make this tensor hold ``value`` (an optimizer update, ``.data = ...``); recorded when tracing."""
        if value.shape != self.shape or value.dtype != self.dtype:
            raise ShapeError(
                f"cannot assign a {value.dtype.name} tensor of shape {value.shape} to a {self.dtype.name} tensor of "
                f"shape {self.shape}{at(user_location())}"
            )
        trace = STATE.trace
        if trace is not None and id(self) not in trace.writes:
            trace.writes[id(self)] = self
            trace.originals[id(self)] = self._value
        node = value._node
        owned = node.kind == "leaf" and node.owner is not None and node.owner() is self
        if trace is None and value._buffer is not None and not owned:
            # a realized value: a leaf of our own on the same buffer, so that a compiled step that reads this tensor
            # finds it as the owner of its buffer (not the temporary that computed it, nor another tensor that may
            # have died or moved on), or it would keep reading the value it had when traced
            self._node, self._index = leaf(value._buffer, self.dtype, owner=self, device=node.device), 0
        else:
            self._node, self._index = node, value._index
        if self._user_leaf:
            self._mark_grad_leaf()

    def _set_buffer(self, data: Any, device: Device | None = None) -> None:
        """Hold the computed ``data`` (a numpy array or a device buffer; on ``device``, where the caller knows it).
        A value that gradients may still flow through (it requires grad and is not a leaf) keeps its graph and
        caches the buffer on its node; any other becomes a leaf, dropping its history."""
        node = self._node
        if self._requires_grad and not self._user_leaf and len(node.types) == 1:
            node.data = data
            return
        if node.kind == "leaf" and sys.getrefcount(node) == _SOLE_HOLDER_REFCOUNT and node.owner is not None:
            # a leaf that nothing but this tensor refers to (no lazy op reads it, no other tensor shares it): reuse
            # it instead of making a new one (a compiled step writes back a dozen tensors per call)
            node.data, node.mirror = data, None
            node.device = device if device is not None else devices.device_of(data)
            return
        self._node, self._index = leaf(data, self.dtype, owner=self, device=device), 0
        if self._user_leaf:
            self._mark_grad_leaf()

    @property
    def _buffer(self) -> Any:
        """The computed value (numpy array or device buffer), when there is one."""
        return self._node.data if self._node.kind == "leaf" or len(self._node.types) == 1 else None

    @property
    def data(self) -> Tensor:
        """This tensor's value without autograd history; assigning to it replaces the value (``p.data -= ...``)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        self._assign(value if isinstance(value, Tensor) else Tensor(value, dtype=self.dtype))

    def detach(self) -> Tensor:
        """The same value, cut off from autograd (records ``pg.stop_gradient`` for a lazy value)."""
        if self._buffer is not None and STATE.trace is None:  # traced: a buffer is a placeholder or goes stale
            return Tensor._wrap(leaf(self._buffer, self.dtype, owner=None))
        return record("stop_gradient", [self], (), self.shape, self.dtype)

    def backward(self, gradient: Tensor | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf tensor that requires grad and that ``self``
        depends on. Records a ``pg.grad`` op that the ``pg-autodiff`` pass expands; nothing runs until a value is
        realized. ``gradient`` (the seed) is required when ``self`` is not a scalar. As in PyTorch, the graph can be
        gone through once, unless ``retain_graph=True``.

        Raises ``ShapeError`` for a non-scalar without ``gradient``, ``DTypeError`` for a non-float root and
        ``RuntimeError`` when ``self`` does not require grad or when an earlier ``backward()`` went through its graph
        without ``retain_graph=True``."""
        loc = user_location()
        if not self._requires_grad:
            why = DETACHED.get(self._node)  # returned by a compiled step that ran backward() itself
            raise RuntimeError(f"backward() on a tensor that does not require grad{at(loc)}" + (f": {why}" * bool(why)))
        if not self.dtype.is_floating_point:
            raise DTypeError(f"backward() needs a float tensor, got {self.dtype.name}{at(loc)}")
        if gradient is None and self.shape != ():
            raise ShapeError(f"backward() on a tensor of shape {self.shape} needs a gradient argument{at(loc)}")
        srcs: list[Tensor] = [self]
        if gradient is not None:
            g = gradient if isinstance(gradient, Tensor) else Tensor(gradient, dtype=self.dtype, device=self.device)
            if g.shape != self.shape:
                raise ShapeError(f"gradient of shape {g.shape} does not match the tensor's shape {self.shape}{at(loc)}")
            srcs.append(g.to(self.dtype).detach())
        targets = _grad_leaves_of(self, loc, retain_graph)
        if not targets:
            return
        node = Node(
            "grad",
            [t._value for t in srcs] + [t._value for t in targets],
            (gradient is not None,),
            [(t.shape, t.dtype) for t in targets],
            loc,
            device=result_device("backward", srcs + targets, loc),
        )
        for i, t in enumerate(targets):
            # a constant for later differentiation, as PyTorch's gradients without create_graph (pg-autodiff would
            # otherwise differentiate through the expanded gradient when a later backward() reads it lazily)
            g_i = record("stop_gradient", [Tensor._wrap(node, i)], (), t.shape, t.dtype)
            t.grad = g_i if t.grad is None else t.grad + g_i

    # -- realization ---------------------------------------------------------------------------------------------

    def realize(self) -> Tensor:
        """Compute this tensor's value now (it becomes a leaf holding the buffer) and return self."""
        realize(self)
        return self

    def numpy(self) -> np.ndarray:
        """The value as a numpy array (realizes the tensor; for a "cuda" tensor, a host copy)."""
        self.realize()
        buf = self._buffer
        assert buf is not None
        return buf if isinstance(buf, np.ndarray) else devices.download(buf)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def item(self) -> Scalar:
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise ShapeError(f"item() needs a tensor with one element, got shape {self.shape}{at(user_location())}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.numel() != 1:  # PyTorch's RuntimeError, not item()'s message about a call the user did not make
            raise RuntimeError(
                f"the truth value of a tensor of shape {self.shape} is ambiguous (`if t:`, `and`, `or`, `not` need "
                f"one element): use t.any() or t.all(){at(user_location())}"
            )
        return bool(self.item())

    def __format__(self, spec: str) -> str:
        """``f"{loss:.4f}"``: a 0-d tensor formats as its Python number, any other as ``str`` (a format spec for
        it raises ``TypeError``), as PyTorch."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __index__(self) -> int:
        if self.dtype.category != 1:
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = "" if self.dtype in (dtypes.float32, dtypes.int64) else f", dtype={self.dtype!r}"
        if self.device != devices.CPU:
            extra += f", device='{self.device}'"
        if self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = object.__hash__

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    # -- conversion ----------------------------------------------------------------------------------------------

    def to(self, target: Any = None, dtype: Any = None, *, device: Any = None) -> Tensor:
        """This tensor on another device and/or dtype: ``t.to("cuda")``, ``t.to(pg.float64)``,
        ``t.to("cpu", dtype)``, ``t.to(device="cpu", dtype=pg.float16)``; ``self`` when nothing changes (as
        PyTorch).

        A device change realizes the value and copies it (host <-> GPU); the copy is a new leaf: gradients do not
        flow back across devices (it requires grad when ``self`` does). Move parameters with ``Module.to``, which
        keeps them the same objects. Raises ``DeviceError`` for an unusable device and ``CompileError`` inside
        ``@pg.compile`` (move inputs before calling the compiled function)."""
        if device is not None:
            if target is not None:
                loc = user_location()
                raise TypeError(f"Tensor.to: give the device once, positionally or as device=, not both{at(loc)}")
            device = check_device(device)
        if target is not None:
            if isinstance(target, Tensor):
                device, dtype = target.device, target.dtype if dtype is None else dtype
            else:
                try:
                    dtype_target = as_dtype(target)
                except DTypeError:
                    device = check_device(target)
                else:
                    dtype = dtype_target
        out = self
        if device is not None and device != self.device:
            out = self._copy_to(device)
        if dtype is not None and as_dtype(dtype) != out.dtype:
            out = out._cast(as_dtype(dtype))
        return out

    def _copy_to(self, device: Device) -> Tensor:
        """A new leaf on ``device`` holding this tensor's value."""
        if STATE.trace is not None:
            from picograd.errors import CompileError

            raise CompileError(
                f"cannot move a tensor from {self.device} to {device} while @pg.compile traces the function: move "
                f"the inputs, model and optimizer state before calling it{at(user_location())}"
            )
        self.realize()
        out = Tensor._of_buffer(devices.transfer(self._buffer, device))
        if self._requires_grad:
            out.requires_grad = True
        return out

    def _move_(self, device: Device) -> None:
        """Move this tensor's value (and its ``.grad``) to ``device`` in place, keeping the object, its
        ``requires_grad`` and its role as a parameter (``Module.to``)."""
        if device == self.device:
            if self._grad is not None and self._grad.device != device:
                self._grad._move_(device)
            return
        if STATE.trace is not None:
            from picograd.errors import CompileError

            raise CompileError(f"cannot move parameters while @pg.compile traces{at(user_location())}")
        self.realize()
        self._node, self._index = leaf(devices.transfer(self._buffer, device), self.dtype, owner=self), 0
        if self._user_leaf:
            self._mark_grad_leaf()
        if self._grad is not None:
            self._grad._move_(device)

    def _convert_(self, dtype: DType) -> None:
        """Convert this tensor's value (and its ``.grad``) to ``dtype`` in place, keeping the object, its
        ``requires_grad`` and its role as a parameter (``Module.to(dtype)``)."""
        if dtype == self.dtype:
            return
        if STATE.trace is not None:
            from picograd.errors import CompileError

            raise CompileError(f"cannot convert parameters while @pg.compile traces{at(user_location())}")
        with np.errstate(over="ignore"):  # beyond a 16-bit float's range: inf, silently (as PyTorch)
            converted = devices.transfer(self.numpy().astype(dtype.np), self.device)
        self._node, self._index = leaf(converted, dtype, owner=self), 0
        if self._user_leaf:
            self._mark_grad_leaf()
        if self._grad is not None:
            self._grad._convert_(dtype)

    def _cast(self, dtype: DType) -> Tensor:
        if dtype == self.dtype:
            return self
        return record("cast", [self], (), self.shape, dtype)

    def cpu(self) -> Tensor:
        """This tensor on the CPU (``self`` when it is there)."""
        return self.to(devices.CPU)

    def cuda(self) -> Tensor:
        """This tensor on the GPU (``self`` when it is there); DeviceError without one."""
        return self.to(devices.CUDA)

    def contiguous(self) -> Tensor:
        return self

    def clone(self) -> Tensor:
        out = Tensor._wrap(self._node, self._index, self._requires_grad)
        return out

    # -- elementwise ---------------------------------------------------------------------------------------------

    def _unary(self, kind: str) -> Tensor:
        x = self if self.dtype.is_floating_point else self._cast(dtypes.float32)
        return record(kind, [x], (), x.shape, x.dtype)

    def exp(self) -> Tensor:
        return self._unary("exp")

    def log(self) -> Tensor:
        return self._unary("log")

    def sqrt(self) -> Tensor:
        return self._unary("sqrt")

    def rsqrt(self) -> Tensor:
        return self._unary("rsqrt")

    def sin(self) -> Tensor:
        return self._unary("sin")

    def cos(self) -> Tensor:
        return self._unary("cos")

    def tanh(self) -> Tensor:
        return self._unary("tanh")

    def sigmoid(self) -> Tensor:
        return self._unary("sigmoid")

    def reciprocal(self) -> Tensor:
        return self._unary("reciprocal")

    def erf(self) -> Tensor:
        return self._unary("erf")

    def relu(self) -> Tensor:
        return record("relu", [self], (), self.shape, self.dtype)

    def abs(self) -> Tensor:
        return record("abs", [self], (), self.shape, self.dtype)

    def __neg__(self) -> Tensor:
        if self.dtype == dtypes.bool_:
            raise DTypeError(f"negation of a bool tensor is not supported; use ~ or logical_not{at(user_location())}")
        return record("neg", [self], (), self.shape, self.dtype)

    def __add__(self, other: Any) -> Tensor:
        return _binary("add", self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _binary("add", other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _binary("sub", self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _binary("sub", other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _binary("mul", self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _binary("mul", other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _binary("div", self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _binary("div", other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _binary("pow", self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _binary("pow", other, self)

    def pow(self, exponent: Any) -> Tensor:
        return _binary("pow", self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(other, self)

    def __lt__(self, other: Any) -> Tensor:
        return _compare("lt", self, other)

    def __le__(self, other: Any) -> Tensor:
        return _compare("le", self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _compare("gt", self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _compare("ge", self, other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare("eq", self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare("ne", self, other)

    # -- the operator surface (issue 20): bitwise ops, more elementwise math, division modes ------------------------

    def __invert__(self) -> Tensor:
        """``~x``: logical not of a bool tensor, bitwise not (``-x - 1``) of an integer tensor."""
        if self.dtype == dtypes.bool_:
            return self == False  # noqa: E712
        if self.dtype.is_floating_point:
            raise DTypeError(f"~ needs an integer or bool tensor, got {self.dtype.name}{at(user_location())}")
        return -self - 1

    def __and__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_and", self, other)

    def __rand__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_and", other, self)

    def __or__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_or", self, other)

    def __ror__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_or", other, self)

    def __xor__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_xor", self, other)

    def __rxor__(self, other: Any) -> Tensor:
        return _bitwise("bitwise_xor", other, self)

    bitwise_and = __and__
    bitwise_or = __or__
    bitwise_xor = __xor__
    bitwise_not = __invert__

    def logical_not(self) -> Tensor:
        return self == 0

    def _rounding(self, kind: str) -> Tensor:
        return self if not self.dtype.is_floating_point else record(kind, [self], (), self.shape, self.dtype)

    def floor(self) -> Tensor:
        """Largest integral value <= x (integer tensors are returned as they are); zero gradient."""
        return self._rounding("floor")

    def ceil(self) -> Tensor:
        return self._rounding("ceil")

    def round(self, decimals: int = 0) -> Tensor:
        """Nearest integral value, ties to even (as ``torch.round``); with ``decimals``, of ``x * 10**decimals``
        divided back."""
        if decimals == 0:
            return self._rounding("round")
        scale = 10.0**decimals
        return (self * scale)._rounding("round") / scale

    def trunc(self) -> Tensor:
        return self._rounding("trunc")

    fix = trunc

    def sign(self) -> Tensor:
        """-1, 0 or 1 (0 for NaN, as PyTorch); integer tensors stay integer; zero gradient."""
        if self.dtype == dtypes.bool_:
            return self
        if not self.dtype.is_floating_point:
            return where(self > 0, 1, where(self < 0, -1, 0))._cast(self.dtype)
        return record("sign", [self], (), self.shape, self.dtype)

    sgn = sign

    def log2(self) -> Tensor:
        return self._unary("log2")

    def exp2(self) -> Tensor:
        return self._unary("exp2")

    def log1p(self) -> Tensor:
        return self._unary("log1p")

    def expm1(self) -> Tensor:
        return self._unary("expm1")

    def asin(self) -> Tensor:
        return self._unary("asin")

    def acos(self) -> Tensor:
        return self._unary("acos")

    def atan(self) -> Tensor:
        return self._unary("atan")

    def asinh(self) -> Tensor:
        return self._unary("asinh")

    def acosh(self) -> Tensor:
        return self._unary("acosh")

    def atanh(self) -> Tensor:
        return self._unary("atanh")

    arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh

    def atan2(self, other: Any) -> Tensor:
        """The angle of the point (other, self), elementwise (``torch.atan2(self, other)``)."""
        return _float_binary("atan2", self, other)

    arctan2 = atan2

    def copysign(self, other: Any) -> Tensor:
        """``|self|`` with the sign bit of ``other``."""
        return _float_binary("copysign", self, other)

    def div(self, other: Any, rounding_mode: str | None = None) -> Tensor:
        """``self / other`` (true division) or, with ``rounding_mode`` "trunc" / "floor", the quotient rounded
        toward zero / down (as ``torch.div``; integer operands give an integer result, and an integer division by
        zero raises ``RuntimeError``, as PyTorch's, when the value is computed)."""
        if rounding_mode is None:
            return _binary("div", self, other)
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        (x, y), dtype = as_operands(self, other)
        if dtype.is_floating_point:
            q = _binary("div", x, y)
            return q.floor() if rounding_mode == "floor" else q.trunc()
        if dtype == dtypes.bool_:
            x, y = x._cast(dtypes.int64), y._cast(dtypes.int64)
        message = "ZeroDivisionError: integer division by zero"
        if y._node.kind == "constant" and y._node.attrs[0] == 0:  # `x // 0`: now (the folding of `q * 0` would drop it)
            raise RuntimeError(f"{message}{at(user_location())}")
        x, y = _broadcast_all([x, y], "div")
        from picograd.frontend.indexing import checked_index

        # a zero divisor is flagged 1 and checked to be 0 (pg.check_index; numpy would give 0 and the GPU garbage)
        zero = checked_index((y == 0).long(), 1, 0, template=message)
        y = y + zero._cast(y.dtype)  # + 0 once checked: keeps the check in the graph
        q = record("div", [x, y], (), x.shape, x.dtype)
        if rounding_mode == "floor":  # pg.div floors on integers
            return q
        inexact = (q * y) != x  # round toward zero: floor + 1 where the exact quotient is negative and not integral
        return where(inexact & ((x < 0) != (y < 0)), q + 1, q)

    divide = div

    def __floordiv__(self, other: Any) -> Tensor:
        return self.div(other, rounding_mode="floor")

    def __rfloordiv__(self, other: Any) -> Tensor:
        (x, y), _ = as_operands(other, self)
        return x.div(y, rounding_mode="floor")

    def maximum(self, other: Any) -> Tensor:
        return _binary("maximum", self, other)

    def minimum(self, other: Any) -> Tensor:
        return _binary("minimum", self, other)

    def masked_fill(self, mask: Tensor, value: Scalar) -> Tensor:
        """``where(mask, value, self)`` in ``self``'s dtype: ``value`` is converted to it, as PyTorch does."""
        return where(mask, value, self)._cast(self.dtype)

    # -- reductions ----------------------------------------------------------------------------------------------

    @FLOAT32
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Sum over ``dim`` (all dims when None); bool and int tensors sum to int64."""
        x = self if self.dtype.is_floating_point else self._cast(dtypes.int64)
        return _reduce("sum", x, dim, keepdim)

    @opmath
    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Arithmetic mean over ``dim``; float tensors only (as PyTorch)."""
        if not self.dtype.is_floating_point:
            raise DTypeError(f"mean() needs a float tensor, got {self.dtype.name}{at(user_location())}")
        dims = reduction_dims(dim, self.ndim, self.shape)
        count = math.prod(self.shape[d] for d in dims)
        return _reduce("sum", self, dims, keepdim) / float(count)  # not on autocast's float32 list, unlike sum

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """As ``torch.max``: without ``dim`` the largest value (a 0-d tensor; gradient split evenly among ties); with
        an int ``dim`` a named tuple ``(values, indices)`` of the first maximum along ``dim`` (the gradient goes to
        that element, as PyTorch's); with a tensor, the elementwise ``maximum``."""
        if isinstance(dim, Tensor):
            return maximum(self, dim)
        if dim is None:
            return _reduce("max", self, None, keepdim)
        return _values_indices("argmax", self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        """As ``torch.min`` (see ``max``): the smallest value, ``(values, indices)`` along an int ``dim``, or the
        elementwise ``minimum`` with a tensor."""
        if isinstance(dim, Tensor):
            return minimum(self, dim)
        if dim is None:
            return _reduce("min", self, None, keepdim)
        return _values_indices("argmin", self, dim, keepdim)

    def amax(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Largest value over ``dim`` (an int, a tuple, or all dims): values only, gradient split evenly among
        ties (as ``torch.amax``)."""
        return _reduce("max", self, dim, keepdim)

    def amin(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """Smallest value over ``dim``: values only, gradient split evenly among ties (as ``torch.amin``)."""
        return _reduce("min", self, dim, keepdim)

    @opmath
    def var(
        self,
        dim: int | Sequence[int] | None = None,
        correction: int = 1,
        keepdim: bool = False,
        *,
        unbiased: Any = None,
    ) -> Tensor:
        """Variance over ``dim`` with Bessel's ``correction`` (divides by N - correction, as PyTorch; PyTorch's older
        ``unbiased=False`` is ``correction=0``)."""
        if unbiased is not None:
            correction = int(bool(unbiased))
        dims = reduction_dims(dim, self.ndim, self.shape)
        n = math.prod(self.shape[d] for d in dims)
        centered = self - self.mean(dims, keepdim=True)
        return (centered * centered).sum(dims, keepdim) / float(max(n - correction, 0))

    @opmath
    def std(
        self,
        dim: int | Sequence[int] | None = None,
        correction: int = 1,
        keepdim: bool = False,
        *,
        unbiased: Any = None,
    ) -> Tensor:
        """``sqrt(var)`` (``unbiased`` as ``var``'s); where it is 0 the gradient is 0 (as PyTorch's ``std_backward``),
        not ``0 * inf = NaN``."""
        var = self.var(dim, correction, keepdim, unbiased=unbiased)
        zero = var == 0
        return where(zero, 0.0, where(zero, 1.0, var).sqrt())

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index (int64) of the first maximum along ``dim`` (of the flattened tensor when None)."""
        return _arg_reduce("argmax", self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return _arg_reduce("argmin", self, dim, keepdim)

    @FLOAT32
    @opmath
    def logsumexp(self, dim: int | Sequence[int], keepdim: bool = False) -> Tensor:
        """``log(sum(exp(x), dim))`` computed stably (max subtracted). A fully −inf slice gives −inf with a zero
        gradient (PyTorch gives NaN gradients there; design.md)."""
        dims = norm_dims(dim, self.ndim, self.shape)
        m, s = _stable_exp_sum(self, dims)
        s_safe = where(s == 0, 1.0, s)
        out = m + s_safe.log() + where(s == 0, -math.inf, 0.0)
        return out if keepdim else out.squeeze(dims)

    @FLOAT32
    @opmath
    def softmax(self, dim: int) -> Tensor:
        """``exp(x) / sum(exp(x), dim)``, stably; a fully −inf slice gives zeros (not NaN) and zero gradient."""
        dims = norm_dims(dim, self.ndim, self.shape)
        m, s = _stable_exp_sum(self, dims)
        return (self - m).exp() / where(s == 0, 1.0, s)

    @FLOAT32
    @opmath
    def log_softmax(self, dim: int) -> Tensor:
        """``x - logsumexp(x, dim)``, stably."""
        dims = norm_dims(dim, self.ndim, self.shape)
        m, s = _stable_exp_sum(self, dims)
        return (self - m) - where(s == 0, 1.0, s).log()

    # -- movement ------------------------------------------------------------------------------------------------

    def reshape(self, *shape: Any) -> Tensor:
        """Row-major reshape; one dim may be -1. Raises ``ShapeError`` when the sizes do not match."""
        target = _infer_shape(shape_args(shape), self.numel(), self.shape)
        if target == self.shape:
            return self
        return record("reshape", [self], (), target, self.dtype)

    view = reshape

    def permute(self, *dims: Any) -> Tensor:
        """Reorder dims: result dim i is input dim ``dims[i]``."""
        perm = tuple(norm_dim(d, self.ndim, self.shape) for d in shape_args(dims))
        if sorted(perm) != list(range(self.ndim)):
            raise ShapeError(
                f"permute: {perm} is not a permutation of the dims of shape {self.shape}{at(user_location())}"
            )
        if perm == tuple(range(self.ndim)):
            return self
        return record("permute", [self], (perm,), tuple(self.shape[p] for p in perm), self.dtype)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        perm = list(range(self.ndim))
        a, b = norm_dim(dim0, self.ndim, self.shape), norm_dim(dim1, self.ndim, self.shape)
        perm[a], perm[b] = perm[b], perm[a]
        return self.permute(*perm)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        s, e = norm_dim(start_dim, self.ndim, self.shape), norm_dim(end_dim, self.ndim, self.shape)
        return self.reshape(*self.shape[:s], math.prod(self.shape[s : e + 1]), *self.shape[e + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        d = norm_dim(dim, self.ndim + 1, self.shape)
        return self.reshape(*self.shape[:d], 1, *self.shape[d:])

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        dims = norm_dims(dim, self.ndim, self.shape)
        return self.reshape(*[s for i, s in enumerate(self.shape) if not (i in dims and s == 1)])

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to ``sizes`` (-1 keeps a dim), as ``torch.Tensor.expand``."""
        target = shape_args(sizes)
        lead = len(target) - self.ndim
        full = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(target))
        return self._broadcast(full)

    def expand_as(self, other: Tensor) -> Tensor:
        return self._broadcast(other.shape)

    def _broadcast(self, shape: Shape, device: Device | None = None) -> Tensor:
        """``self`` broadcast to ``shape``; a 0-d tensor may be broadcast onto another ``device`` (a scalar joining
        an op there)."""
        if self.shape == shape:
            return self
        if len(self.shape) > len(shape) or broadcast_shape(self.shape, shape) != tuple(shape):
            raise ShapeError(f"cannot broadcast shape {self.shape} to {tuple(shape)}{at(user_location())}")
        return record("broadcast_to", [self], (), tuple(shape), self.dtype, device if not self.shape else None)

    def __getitem__(self, index: Any) -> Tensor:
        from picograd.frontend.indexing import getitem

        return getitem(self, index)

    # -- transformers (issue 11): split, chunk, clamp, topk, tril, triu -------------------------------------------

    def split(self, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces along ``dim``: of ``split_size`` each (the last may be smaller) or of the given ``sections``
        (which must add up to the dim's size), as ``torch.split``. Raises ``ShapeError`` naming the sizes."""
        d = norm_dim(dim, self.ndim, self.shape)
        n = self.shape[d]
        if isinstance(split_size_or_sections, int):
            size = split_size_or_sections
            if size <= 0:
                raise ShapeError(f"split: split_size must be positive, got {size}{at(user_location())}")
            sizes = [min(size, n - i) for i in range(0, n, size)] or [0]
        else:
            sizes = [int(v) for v in split_size_or_sections]
            if sum(sizes) != n or any(v < 0 for v in sizes):
                raise ShapeError(
                    f"split: sections {tuple(sizes)} do not add up to {n}, the size of dim {d} of shape "
                    f"{self.shape}{at(user_location())}"
                )
        out, start = [], 0
        for size in sizes:
            out.append(self.narrow(d, start, size))
            start += size
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """``chunks`` pieces along ``dim`` of ``ceil(n / chunks)`` each (fewer when they run out), as
        ``torch.chunk``."""
        if chunks <= 0:
            raise ShapeError(f"chunk: chunks must be positive, got {chunks}{at(user_location())}")
        n = self.shape[norm_dim(dim, self.ndim, self.shape)]
        return self.split(max(-(-n // chunks), 1), dim)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """``length`` entries of ``dim`` from ``start`` (one ``pg.slice``)."""
        d = norm_dim(dim, self.ndim, self.shape)
        if start == 0 and length == self.shape[d]:
            return self
        index = tuple(slice(None) if i != d else slice(start, start + length) for i in range(self.ndim))
        return self[index]

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        """Elementwise ``min(max(x, min), max)`` (either bound may be None, a number or a tensor), as
        ``torch.clamp``; the gradient flows where the value is inside the bounds."""
        if min is None and max is None:
            raise ValueError(f"clamp: at least one of min and max must be given{at(user_location())}")
        out = self
        if min is not None:
            out = where(out < min, min, out) if not isinstance(min, Tensor) else maximum(out, min)
        if max is not None:
            out = where(out > max, max, out) if not isinstance(max, Tensor) else minimum(out, max)
        return out

    clip = clamp

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopK:
        """The ``k`` largest (or smallest) entries along ``dim`` and their int64 indices, in order (as
        ``torch.topk``; among equal values the lower index comes first). ``k`` rounds of arg-reduction, for the
        small ``k`` of sampling (top-k filtering). Raises ``ShapeError`` when ``k`` exceeds the dim's size."""
        d = norm_dim(dim, self.ndim, self.shape)
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise ShapeError(f"topk: k = {k} is out of range for dim {d} of shape {self.shape}{at(user_location())}")
        x = self if self.ndim else self.reshape(1)
        fill = -math.inf if largest else math.inf
        work = x if x.dtype.is_floating_point else x._cast(dtypes.float64)
        positions = iota(work.shape, d, work.device)
        values, indices = [], []
        for _ in range(k):
            i = (work.argmax(d, keepdim=True) if largest else work.argmin(d, keepdim=True)).detach()
            indices.append(i)
            values.append(_take_along(x, d, i))
            work = where(positions == i, fill, work)
        if not indices:
            empty = tuple(0 if j == d else s for j, s in enumerate(x.shape))
            return TopK(x.narrow(d, 0, 0), Tensor(np.zeros(empty, np.int64), device=x.device))
        from picograd.frontend.creation import cat

        return TopK(cat(values, d), cat(indices, d))

    def tril(self, diagonal: int = 0) -> Tensor:
        """Zero above the ``diagonal`` of the last two dims (``torch.tril``)."""
        return _triangle(self, diagonal, lower=True)

    def triu(self, diagonal: int = 0) -> Tensor:
        """Zero below the ``diagonal`` of the last two dims (``torch.triu``)."""
        return _triangle(self, diagonal, lower=False)

    # dtype shorthands last: their names (int, bool, float) would shadow the builtins in the annotations above

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def bfloat16(self) -> Tensor:
        return self.to(dtypes.bfloat16)

    def half(self) -> Tensor:
        return self.to(dtypes.float16)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self != 0


# ---------------------------------------------------------------------------------------------------------------
# Recording


def result_device(kind: str, srcs: Sequence[Tensor], loc: Loc | None, device: Device | None = None) -> Device:
    """The device of an op's result: ``device`` when given, else its operands' (they must agree, except that 0-d
    tensors join ops on any device; an op of scalars only lives off the CPU if one of them does). Raises
    ``DeviceError`` naming both devices, the shapes and ``loc``."""
    if device is None and srcs:
        first = srcs[0]._node.device
        for t in srcs:
            if t._node.device != first:
                break
        else:
            return first
    found: Tensor | None = None
    for t in srcs:
        if not t.shape:
            continue
        if device is not None and t.device != device:
            raise DeviceError(
                f"{kind}: expected tensors on {device}, got one on {t.device} of shape {t.shape}; move it with "
                f".to('{device}'){at(loc)}"
            )
        if found is not None and t.device != found.device:
            raise DeviceError(
                f"{kind}: tensors on different devices, {found.device} (shape {found.shape}) and {t.device} (shape "
                f"{t.shape}); move one with .to(device){at(loc)}"
            )
        if found is None:
            found = t
    if device is not None:
        return device
    if found is not None:
        return found.device
    return next((t.device for t in srcs if t.device != devices.CPU), devices.CPU)


def _common_device(xs: Sequence[Any], default: Device | None = None) -> Device | None:
    """Where an op of ``xs`` runs: the device of its first non-scalar tensor, else ``default``, else that of its
    0-d tensors (one off the CPU if there is one); None when there are no tensors and no default."""
    scalar = None
    for x in xs:
        if isinstance(x, Tensor):
            if x.shape:
                return x.device
            if scalar is None or x.device != devices.CPU:
                scalar = x.device
    return default or scalar


def record(
    kind: str, srcs: Sequence[Tensor], attrs: tuple, shape: Shape, dtype: DType, device: Device | None = None
) -> Tensor:
    """Record one single-result op and return its tensor; it requires grad when a float source does. It lives on
    ``device``, or on its sources' device (see ``result_device``)."""
    loc = user_location()
    node = Node(
        kind,
        [t._value for t in srcs],
        attrs,
        [(tuple(shape), dtype)],
        loc,
        device=result_device(kind, srcs, loc, device),
    )
    needs = (
        STATE.grad_enabled
        and dtype.is_floating_point
        and kind not in _NO_GRAD_KINDS
        and any(t._requires_grad for t in srcs)
    )
    return Tensor._wrap(node, 0, needs)


def constant(value: Any, dtype: DType, shape: Shape = (), device: Device = devices.CPU) -> Tensor:
    """A constant of ``dtype`` on ``device`` broadcast to ``shape`` (scalars stay in the IR as ``pg.constant``)."""
    if dtype.category == 1 and not np.iinfo(dtype.np).min <= value <= np.iinfo(dtype.np).max:
        raise DTypeError(f"{value} does not fit in a {dtype.name} tensor{at(user_location())}")  # not at realize
    t = record("constant", [], (value,), (), dtype, device)
    return t._broadcast(shape) if shape else t


def _priority(x: Any) -> int:
    return (2 if x.ndim else 1) if isinstance(x, Tensor) else 0


def _dtype_of(x: Any) -> DType:
    if isinstance(x, Tensor):
        return x.dtype
    if isinstance(x, bool | np.bool_):
        return dtypes.bool_
    if isinstance(x, int | np.integer):
        return dtypes.int64
    if isinstance(x, float | np.floating):
        return dtypes.float32
    raise DTypeError(f"unsupported operand of type {type(x).__name__}{at(user_location())}")


def _lift(x: Any, dtype: DType, device: Device) -> Tensor:
    if isinstance(x, Tensor):
        return x._cast(dtype)
    if isinstance(x, np.ndarray):
        return Tensor(x, device=device)._cast(dtype)
    return constant(x, dtype, device=device)


def as_operands(*xs: Any, device: Device | None = None) -> tuple[list[Tensor], DType]:
    """The operands as tensors of their promoted dtype; Python scalars, lists and arrays go to the device of the
    tensor operands (``device`` when there are none)."""
    device = _common_device(xs, device) or devices.CPU
    xs = tuple(Tensor(x, device=device) if isinstance(x, list | np.ndarray) else x for x in xs)
    dtype = promote([(_dtype_of(x), _priority(x)) for x in xs])
    return [_lift(x, dtype, device) for x in xs], dtype


_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "maximum": "maximum", "minimum": "minimum"}


def _broadcast_all(ts: list[Tensor], what: str) -> list[Tensor]:
    shape: Shape | None = ()
    for t in ts:
        shape = broadcast_shape(shape, t.shape) if shape is not None else None
    if shape is None:
        shapes = " and ".join(str(t.shape) for t in ts)
        raise ShapeError(f"{what}: shapes {shapes} cannot be broadcast together{at(user_location())}")
    device = _common_device(ts)
    return [t._broadcast(shape, device) for t in ts]


def _binary(kind: str, a: Any, b: Any) -> Tensor:
    (x, y), dtype = as_operands(a, b)
    if dtype in dtypes.LOW_PRECISION and not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        # a Python scalar meets a 16-bit tensor: PyTorch computes in float32 with the scalar unrounded, then
        # rounds once (its "opmath" type), so 0.1 is not first rounded to bf16
        wide = [v.float() if isinstance(v, Tensor) else v for v in (a, b)]
        return _binary(kind, *wide)._cast(dtype)
    result = dtype  # as torch: int ** int stays int, bool + bool is `or`, bool * bool `and`, int / int is float32
    if dtype == dtypes.bool_:  # pg binary ops take no i1: count in int64 (a cast back to bool is `!= 0`)
        x, y, dtype = x._cast(dtypes.int64), y._cast(dtypes.int64), dtypes.int64
        result = dtypes.bool_ if kind in ("add", "mul", "maximum", "minimum") else dtypes.int64
    if kind == "div" and not dtype.is_floating_point:
        x, y, dtype, result = x._cast(dtypes.float32), y._cast(dtypes.float32), dtypes.float32, dtypes.float32
    elif kind == "pow" and not dtype.is_floating_point:  # pg.pow is float-only; float64 holds ints below 2**53
        if isinstance(b, int | np.integer) and not isinstance(b, bool | np.bool_) and b < 0:
            raise DTypeError(f"integers to negative integer powers are not allowed{at(user_location())}")
        x, y, dtype = x._cast(dtypes.float64), y._cast(dtypes.float64), dtypes.float64
    x, y = _broadcast_all([x, y], f"'{_SYMBOLS[kind]}'")
    out = record(kind, [x, y], (), x.shape, dtype)
    if kind == "pow" and not result.is_floating_point:  # the GPU's f64 pow is within ulps, not exact: 4**3 may be
        out = out.round()  # 63.99999999999999, which a truncating cast would make 63
    return out._cast(result)


def _bitwise(kind: str, a: Any, b: Any) -> Tensor:
    """``&``, ``|``, ``^`` on integer or bool tensors (numpy's promotion); ``DTypeError`` for floats."""
    (x, y), dtype = as_operands(a, b)
    if dtype.is_floating_point:
        raise DTypeError(f"{kind} needs integer or bool tensors, got {dtype.name}{at(user_location())}")
    x, y = _broadcast_all([x, y], kind)
    return record(kind, [x, y], (), x.shape, dtype)


def _float_binary(kind: str, a: Any, b: Any) -> Tensor:
    """A float-only elementwise binary op (``atan2``, ``copysign``): integer operands become float32."""
    (x, y), dtype = as_operands(a, b)
    if not dtype.is_floating_point:
        x, y, dtype = x._cast(dtypes.float32), y._cast(dtypes.float32), dtypes.float32
    x, y = _broadcast_all([x, y], kind)
    return record(kind, [x, y], (), x.shape, dtype)


class ValuesIndices(NamedTuple):
    """What ``max``/``min``/``sort``/``cummax``/``cummin`` along a dim return (``torch.return_types``)."""

    values: Tensor
    indices: Tensor


def _values_indices(kind: str, x: Tensor, dim: int, keepdim: bool) -> ValuesIndices:
    """``(values, indices)`` of the first extremum (``kind`` argmax/argmin) along ``dim``; the values are gathered
    at the indices, so the gradient goes to that one element (as ``torch.max(x, dim)``)."""
    from picograd.frontend.ops import take_along_unchecked

    if not isinstance(dim, int | np.integer):
        raise TypeError(
            f"{kind[3:]}(dim) takes one int dim and returns (values, indices); use a{kind[3:]}(dims) for values over "
            f"several dims{at(user_location())}"
        )
    d = norm_dim(dim, x.ndim, x.shape)
    if x.ndim == 0:
        return ValuesIndices(x, constant(0, dtypes.int64, device=x.device))
    idx = _arg_reduce(kind, x, d, True)
    values = take_along_unchecked(x, idx, d)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return ValuesIndices(values, idx)


def _compare(predicate: str, a: Any, b: Any) -> Tensor:
    (x, y), _ = as_operands(a, b)
    x, y = _broadcast_all([x, y], "comparison")
    return record("cmp", [x, y], (predicate,), x.shape, dtypes.bool_)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` holds, else ``other`` (all three broadcast together; dtypes promoted)."""
    device = _common_device((condition, input, other))
    cond = condition if isinstance(condition, Tensor) else Tensor(condition, device=device)
    if cond.dtype != dtypes.bool_:
        cond = cond != 0
    (x, y), dtype = as_operands(input, other, device=cond.device)
    cond, x, y = _broadcast_all([cond, x, y], "where")
    return record("select", [cond, x, y], (), x.shape, dtype)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum (gradient split evenly where equal, as PyTorch)."""
    return _binary("maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum."""
    return _binary("minimum", a, b)


def require_same_dtype(op: str, operands: Sequence[tuple[str, Any]], loc: Loc | None) -> None:
    """Matmul-like ops do not promote their operands' dtypes (PyTorch's rule: "mat1 and mat2 must have the same
    dtype"): raise ``DTypeError`` naming each ``(name, tensor)`` operand's dtype and ``loc`` when they differ.
    Non-tensor operands are not checked."""
    named = [(name, t.dtype) for name, t in operands if isinstance(t, Tensor)]
    if len({d for _, d in named}) > 1:
        got = ", ".join(f"{name} {d.name}" for name, d in named)
        raise DTypeError(
            f"{op}: operands must have the same dtype, got {got}; convert one with .to(), e.g. "
            f".to(pg.{named[-1][1].name}) (matmul-like ops do not promote dtypes){at(loc)}"
        )


@LOWER_PRECISION
def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with numpy's rules: 1-D operands are promoted to matrices and the added dim removed; batch
    dims broadcast. Float tensors of one dtype only (no promotion, as in PyTorch). Raises ``ShapeError`` naming both
    shapes and ``DTypeError`` naming both dtypes."""
    loc = user_location()
    device = _common_device((a, b)) or devices.CPU
    a, b = (Tensor(v, device=device) if isinstance(v, list | np.ndarray) else v for v in (a, b))
    require_same_dtype("matmul", [("self", a), ("other", b)], loc)
    (x, y), dtype = as_operands(a, b)
    if not dtype.is_floating_point:
        raise DTypeError(f"matmul needs float tensors, got {dtype.name}{at(loc)}")
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dim, got shapes {x.shape} and {y.shape}{at(loc)}")
    xs, ys = x.shape, y.shape
    if x.ndim > 2 and y.ndim == 2 and xs[-1] == ys[0]:
        # (*B, M, K) @ (K, N) as one (B*M, K) @ (K, N) product (as PyTorch folds it): one GEMM forward and one for
        # the weight's gradient, instead of a batch of small products and a sum over the batch
        return matmul(x.reshape(math.prod(xs[:-1]), xs[-1]), y).reshape(*xs[:-1], ys[1])
    x2 = x.unsqueeze(0) if x.ndim == 1 else x
    y2 = y.unsqueeze(-1) if y.ndim == 1 else y
    if x2.shape[-1] != y2.shape[-2]:
        raise ShapeError(f"matmul: shapes {xs} and {ys} do not match ({x2.shape[-1]} != {y2.shape[-2]}){at(loc)}")
    batch = broadcast_shape(x2.shape[:-2], y2.shape[:-2])
    if batch is None:
        raise ShapeError(f"matmul: batch dims of shapes {xs} and {ys} cannot be broadcast together{at(loc)}")
    x2 = x2._broadcast((*batch, *x2.shape[-2:]))
    y2 = y2._broadcast((*batch, *y2.shape[-2:]))
    shape = matmul_shape(x2.shape, y2.shape)
    assert shape is not None
    out = record("matmul", [x2, y2], (matmul_tf32(dtype),), shape, dtype)
    if x.ndim == 1:
        out = out.squeeze(-2)
    if y.ndim == 1:
        out = out.squeeze(-1)
    return out


def norm_dim(dim: int, ndim: int, shape: Shape | None = None) -> int:
    """``dim`` in ``[0, ndim)`` (negative dims count from the end); ``shape`` names the tensor in the error."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        what = f"a tensor of shape {tuple(shape)}" if shape is not None else f"a tensor with {ndim} dims"
        raise ShapeError(f"dim {dim} is out of range [{-n}, {n - 1}] for {what}{at(user_location())}")
    return dim % n


def norm_dims(dim: int | Sequence[int] | None, ndim: int, shape: Shape | None = None) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = tuple(sorted({norm_dim(d, ndim, shape) for d in dims}))
    return out if ndim else ()


def reduction_dims(dim: int | Sequence[int] | None, ndim: int, shape: Shape | None = None) -> tuple[int, ...]:
    """``norm_dims`` for a reduction (sum, mean, max, min, amax, amin, var, std): an empty ``dim`` list reduces every
    dim, as PyTorch's (``x.sum(dim=())`` is ``x.sum()``), where it gave ``x`` unreduced."""
    if dim is not None and not isinstance(dim, int) and len(tuple(dim)) == 0:
        dim = None
    return norm_dims(dim, ndim, shape)


def _reduce(kind: str, x: Tensor, dim: Any, keepdim: bool) -> Tensor:
    dims = reduction_dims(dim, x.ndim, x.shape)
    if not dims:
        return x
    if kind != "sum" and any(x.shape[d] == 0 for d in dims):
        raise ShapeError(f"{kind}() of an empty dim of shape {x.shape}{at(user_location())}")
    shape = (
        tuple(1 if i in dims else s for i, s in enumerate(x.shape))
        if keepdim
        else tuple(s for i, s in enumerate(x.shape) if i not in dims)
    )
    return record(kind, [x], (dims, keepdim), shape, x.dtype)


def _arg_reduce(kind: str, x: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    if dim is None:
        out = _arg_reduce(kind, x.reshape(-1), 0, False)
        return out.reshape(*([1] * x.ndim)) if keepdim else out
    d = norm_dim(dim, x.ndim, x.shape)
    if x.ndim == 0:
        return constant(0, dtypes.int64, device=x.device)
    if x.shape[d] == 0:
        raise ShapeError(f"{kind}() of an empty dim of shape {x.shape}{at(user_location())}")
    shape = (
        tuple(1 if i == d else s for i, s in enumerate(x.shape))
        if keepdim
        else tuple(s for i, s in enumerate(x.shape) if i != d)
    )
    return record(kind, [x], (d, keepdim), shape, dtypes.int64)


def _stable_exp_sum(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(m, s)``: the max over ``dims`` (keepdim, detached, 0 where it is −inf) and ``sum(exp(x - m))``."""
    if not x.dtype.is_floating_point:
        x = x._cast(dtypes.float32)
    if any(x.shape[d] == 0 for d in dims):  # an empty slice has no max: sum(exp) is 0 (logsumexp -inf, as PyTorch)
        m = constant(0.0, x.dtype, tuple(1 if i in dims else n for i, n in enumerate(x.shape)), x.device)
    else:
        m = x.amax(dims, keepdim=True).detach()
        m = where(m == -math.inf, 0.0, m)
    s = (x - m).exp().sum(dims, keepdim=True)
    return m, s


def shape_args(args: Sequence[Any]) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], tuple | list):
        return tuple(int(s) for s in args[0])
    return tuple(int(s) for s in args)


def _infer_shape(shape: tuple[int, ...], numel: int, old: Shape) -> tuple[int, ...]:
    loc = user_location()
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dim can be -1, got {shape}{at(loc)}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or numel % known:
            raise ShapeError(f"reshape: cannot reshape a tensor of shape {old} to {shape}{at(loc)}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel:
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {old} ({numel} elements) to {shape}{at(loc)}")
    return shape


def _grad_leaves_of(root: Tensor, loc: Loc | None, retain_graph: bool) -> list[Tensor]:
    """Tensors that require grad and are leaves, that ``root`` depends on (not through ``detach``; the walk stops
    at them). The ops on a path from ``root`` to one of them form the graph that ``backward()`` goes through: as
    in PyTorch, going through it again raises ``RuntimeError`` unless the earlier ``backward()`` had
    ``retain_graph=True``; without it, this one marks them."""
    found: list[Tensor] = []
    on_path: dict[int, bool] = {}  # node -> whether a grad leaf lies behind it
    stack: list[tuple[Node, bool]] = [(root._node, False)]
    order: list[Node] = []
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in on_path:
            continue
        on_path[id(node)] = False
        leaf_here = False
        if node.grad_leaves:
            for index, ref in sorted(node.grad_leaves.items()):
                t = ref()
                if t is not None and t._node is node and t._index == index and t._requires_grad:
                    found.append(t)
                    leaf_here = True
        if leaf_here:
            on_path[id(node)] = True
            continue
        if node.kind in ("stop_gradient", "leaf", "grad"):  # gradients are constants here (no create_graph)
            continue
        stack.append((node, True))
        stack.extend((src, False) for src, _ in node.srcs if id(src) not in on_path)
    graph = []
    for node in order:  # sources before users
        if any(on_path.get(id(src), False) for src, _ in node.srcs):
            on_path[id(node)] = True
            graph.append(node)
    for node in graph:
        if node.backward_done is not None:
            raise RuntimeError(
                f"backward() through the same graph a second time{at(loc)}: the first went through it"
                f"{at(node.backward_done)} and freed it; pass retain_graph=True to the first backward() to go through "
                "it again"
            )
    if not retain_graph:
        for node in graph:
            node.backward_done = loc or Loc("<unknown>", 0)
    return found


# ---------------------------------------------------------------------------------------------------------------
# transformers (issue 11): helpers of split/topk/tril/triu


class TopK(tuple):
    """``(values, indices)`` of ``Tensor.topk``, also readable as ``.values`` and ``.indices`` (as PyTorch)."""

    def __new__(cls, values: Tensor, indices: Tensor) -> TopK:
        return super().__new__(cls, (values, indices))

    @property
    def values(self) -> Tensor:
        return self[0]

    @property
    def indices(self) -> Tensor:
        return self[1]


def iota(shape: Shape, dim: int, device: Device = devices.CPU) -> Tensor:
    """int64 ``0, 1, ...`` along ``dim`` of ``shape`` (one ``pg.iota``)."""
    return record("iota", [], (dim,), tuple(shape), dtypes.int64, device)


def _take_along(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[..., j, ...] = x[..., index[..., j, ...], ...]`` along ``dim`` (index of x's rank, int64): one gather
    on the flattened tensor."""
    flat: Tensor | None = None
    for j in range(x.ndim):
        grid = index if j == dim else iota(index.shape, j, x.device)
        flat = grid if flat is None else flat * x.shape[j] + grid
    assert flat is not None
    return x.reshape(-1)[flat]


def _triangle(x: Tensor, diagonal: int, lower: bool) -> Tensor:
    loc = user_location()
    if x.ndim < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'} needs a tensor of at least 2 dims, got {x.shape}{at(loc)}")
    rows, cols = iota(x.shape[-2:], 0, x.device), iota(x.shape[-2:], 1, x.device)
    keep = (cols - rows <= diagonal) if lower else (cols - rows >= diagonal)
    return where(keep, x, False if x.dtype == dtypes.bool_ else 0)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """``input`` with the entries above ``diagonal`` (of the last two dims) zeroed, as ``torch.tril``."""
    return input.tril(diagonal)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """``input`` with the entries below ``diagonal`` (of the last two dims) zeroed, as ``torch.triu``."""
    return input.triu(diagonal)


def realize(*tensors: Tensor) -> None:
    """Compute the values of ``tensors`` in one compiled function; each becomes a leaf holding its buffer.

    Raises ``CompileError`` when called while ``@pg.compile`` traces (values are not known then)."""
    from picograd.errors import CompileError

    if STATE.trace is not None:  # also for tensors with a buffer: a traced input's is a placeholder, a parameter's
        raise CompileError(  # would be baked into the trace and go stale
            "cannot read a tensor's value while @pg.compile traces the function (no .item()/.numpy()/print inside "
            f"a compiled function){at(user_location())}"
        )
    pending = [t for t in tensors if t._buffer is None]
    if not pending:
        return
    by_device: dict[Device, dict[tuple[int, int], Tensor]] = {}
    for t in pending:
        by_device.setdefault(t.device, {}).setdefault((id(t._node), t._index), t)
    by_value: dict[tuple[int, int], Any] = {}
    for device, unique in by_device.items():  # one graph per device (they share no non-scalar values)
        buffers = run_graph([t._value for t in unique.values()], device)
        by_value.update(zip(unique.keys(), buffers, strict=True))
    keys = [(id(t._node), t._index) for t in pending]  # before any is set: a tensor may be passed twice
    for t, key in zip(pending, keys, strict=True):
        if t._buffer is None:
            t._set_buffer(by_value[key])
