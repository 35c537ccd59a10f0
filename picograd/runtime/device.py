"""Devices as objects (``pg.device``, PyTorch's ``torch.device``) and the registry of the runtimes behind them.

A device is a type (``"cpu"``, ``"cuda"``) and an optional index: ``pg.device("cuda:0")``, ``pg.device("cuda", 0)``,
``pg.device(type="cpu")``. ``str(d)`` is ``"cuda:0"``; ``d.type`` and ``d.index`` are PyTorch's. Every API that takes
a device takes a ``pg.device`` or a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

Equality: two devices are equal when their types are and their indices are, an unset index meaning the type's
current device (index 0), and a device equals a string that names it (``t.device == "cuda"`` for a tensor on
``cuda:0``). This departs from PyTorch 2.13, where ``torch.device("cuda") != torch.device("cuda:0")`` and a device
never equals a string: code written for picograd's string devices keeps working, and a comparison never quietly
turns False because one side left out the index.

The registry maps a device type to its :class:`Runtime` (``register_runtime``, ``runtime_for``): where a buffer of
that type is made, copied and read. This module registers "cpu" (:class:`HostRuntime`) and "cuda"
(``picograd.runtime.cuda.CudaRuntime``); tests can register stand-ins. ``check_available(device)`` raises
``DeviceError`` naming what is missing: no such device index (``cuda:1`` on a machine with one GPU) or the runtime's
own reason (no driver, no GPU).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np

from picograd.errors import DeviceError

__all__ = [
    "Device",
    "Runtime",
    "check_available",
    "device_of",
    "interned",
    "parse",
    "register_runtime",
    "runtime_for",
    "runtimes",
]

_NAME = re.compile(r"([a-z_]+)(?::(\d+))?")


class Device:
    """A device: ``type`` (``"cpu"``/``"cuda"``) and ``index`` (None or a non-negative int), as ``torch.device``.

    ``Device("cuda:1")``, ``Device("cuda", 1)``, ``Device(type="cuda", index=1)`` and ``Device(other_device)`` name
    the same device. Raises ``DeviceError`` for a malformed name or an unknown device type (the types of the
    runtime registry); whether the device is there is checked where it is used (:func:`check_available`)."""

    __slots__ = ("type", "index")
    type: str
    index: int | None

    def __init__(self, type: Any, index: int | None = None) -> None:  # noqa: A002 - PyTorch's argument name
        if isinstance(type, Device):
            if index is not None:
                raise DeviceError(f"device {type}: give the index in the device or as index=, not both")
            kind, idx = type.type, type.index
        elif isinstance(type, str):
            m = _NAME.fullmatch(type.strip())
            if m is None:
                raise DeviceError(f"invalid device string '{type}'; expected e.g. 'cpu', 'cuda' or 'cuda:0'")
            kind, idx = m.group(1), int(m.group(2)) if m.group(2) is not None else None
            if idx is not None and index is not None:
                raise DeviceError(f"device '{type}': give the index in the string or as index=, not both")
            idx = index if idx is None else idx
        else:
            raise DeviceError(f"a device is a string such as 'cuda:0' or a pg.device, not {_type_name(type)}")
        if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int | np.integer) or idx < 0):
            raise DeviceError(f"device index must be a non-negative int, got {idx!r}")
        if kind not in _RUNTIMES:
            raise DeviceError(f"unknown device type '{kind}'; expected one of {', '.join(sorted(_RUNTIMES))}")
        if kind == "cpu" and idx not in (None, 0):
            raise DeviceError(f"device 'cpu:{idx}': the CPU has one device ('cpu')")
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "index", None if idx is None or kind == "cpu" else int(idx))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("pg.device is immutable")

    def _key(self) -> tuple[str, int]:
        return (self.type, self.index or 0)

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, str):
            try:
                other = _named(other)
            except DeviceError:
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Device, (self.type, self.index))


_INTERNED: dict[Any, Device] = {}  # (type, index) or a name -> its Device, for the hot paths


def interned(type: str, index: int | None) -> Device:  # noqa: A002 - PyTorch's argument name
    """``Device(type, index)``, made once (for the hot paths that name a device per call)."""
    key = (type, index)
    d = _INTERNED.get(key)
    if d is None:
        d = _INTERNED[key] = Device(type, index)
    return d


def _named(name: str) -> Device:
    """``Device(name)``, parsed once per name."""
    d = _INTERNED.get(name)
    if d is None:
        d = Device(name)
        if len(_INTERNED) < 256:
            _INTERNED[name] = d
    return d


def _type_name(x: Any) -> str:
    return f"the {type(x).__name__} {x!r}" if isinstance(x, int | float) else f"a {type(x).__name__}"


def parse(device: Any) -> Device:
    """``device`` (a ``Device``, a string, or None for the CPU) as a ``Device``; DeviceError for a bad name."""
    if device is None:
        return CPU
    if isinstance(device, Device):
        return device
    return _named(device) if isinstance(device, str) else Device(device)


class Runtime(Protocol):
    """What the frontend needs of the runtime of one device type (the registry's entries).

    Buffers are the runtime's own objects (numpy arrays for "cpu", ``cuda.DeviceBuffer`` for "cuda"), each with
    ``shape``, ``dtype`` and ``nbytes``."""

    type: str

    def unavailable(self, index: int) -> str | None:
        """Why device ``index`` of this type cannot be used now (e.g. "no CUDA driver", "this machine has 1 GPU"),
        or None when it can."""
        ...

    def holds(self, buffer: Any) -> bool:
        """Whether ``buffer`` is one of this runtime's buffers."""
        ...

    def index_of(self, buffer: Any) -> int:
        """The index of the device ``buffer`` lives on."""
        ...

    def upload(self, array: np.ndarray, index: int) -> Any:
        """A new buffer on device ``index`` holding a copy of the host array ``array``."""
        ...

    def download(self, buffer: Any) -> np.ndarray:
        """A host copy of ``buffer`` (waits for the work queued before it)."""
        ...

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, index: int) -> Any:
        """A new buffer of zeros on device ``index``."""
        ...


_RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime | None:
    """Put ``runtime`` in the registry under ``runtime.type``; returns the one it replaces (None if none)."""
    old = _RUNTIMES.get(runtime.type)
    _RUNTIMES[runtime.type] = runtime
    return old


def runtimes() -> dict[str, Runtime]:
    """The registry: device type -> runtime (a copy)."""
    return dict(_RUNTIMES)


def runtime_for(device: Device) -> Runtime:
    """The runtime of ``device``'s type."""
    return _RUNTIMES[device.type]


def device_of(buffer: Any) -> Device:
    """Where a realized buffer lives: the device of the registered runtime that holds it (a numpy array: "cpu")."""
    if isinstance(buffer, np.ndarray):
        return CPU
    for kind, runtime in _RUNTIMES.items():
        if kind != "cpu" and runtime.holds(buffer):
            return interned(kind, runtime.index_of(buffer))
    raise DeviceError(f"no runtime holds a buffer of type {type(buffer).__name__}")


def check_available(device: Device) -> None:
    """Raise ``DeviceError`` when ``device`` cannot be used now, with the runtime's reason."""
    reason = _RUNTIMES[device.type].unavailable(device.index or 0)
    if reason is not None:
        raise DeviceError(f"device '{device}' cannot be used: {reason}")


class HostRuntime:
    """The "cpu" runtime: buffers are numpy arrays in host memory (the numpy executor runs on them)."""

    type = "cpu"

    def unavailable(self, index: int) -> str | None:
        return None if index == 0 else "the CPU has one device ('cpu')"

    def holds(self, buffer: Any) -> bool:
        return isinstance(buffer, np.ndarray)

    def index_of(self, buffer: Any) -> int:
        return 0

    def upload(self, array: np.ndarray, index: int) -> Any:
        return array

    def download(self, buffer: Any) -> np.ndarray:
        return buffer

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, index: int) -> Any:
        return np.zeros(shape, dtype)


register_runtime(HostRuntime())
CPU = Device("cpu")


def _register_cuda() -> None:
    from picograd.runtime import cuda  # importing it touches no CUDA library

    register_runtime(cuda.CudaRuntime())


_register_cuda()
