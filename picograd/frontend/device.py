"""Devices as the frontend sees them: their names, whether they are there, where a buffer lives, and the copies
between host and GPU (design.md section 6).

Devices are ``pg.device`` objects (``picograd.runtime.device.Device``); every function here also takes a string.
A realized value is a buffer of the runtime of its device (the registry of ``picograd.runtime.device``): a numpy
array on "cpu" and a ``picograd.runtime.cuda.DeviceBuffer`` on "cuda". Copies happen only at the edges: creating a
tensor on "cuda" uploads, ``.numpy()`` / ``.item()`` / ``.tolist()`` download, ``.to(device)`` copies, and a graph
that reads a 0-d tensor of the other device (a scalar, as PyTorch lets a 0-d CPU tensor join CUDA ops) copies that
scalar when it runs (:func:`bind`, which caches the copy).

The runtimes are reached through the registry at call time, never through names imported once, so that the CPU
tests can stand a fake runtime in for the real one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from picograd.errors import DeviceError
from picograd.frontend.graph import Loc, Node, at
from picograd.runtime import device as registry
from picograd.runtime.device import CPU, Device, device_of

CUDA = Device("cuda", 0)

# Host arrays up to this size that a GPU graph reads are uploaded once per leaf and re-checked byte for byte on
# every use (a numpy array handed to ``Tensor`` or returned by ``.numpy()`` can be changed by the user in place).
MIRROR_LIMIT_BYTES = 4096


def canonical(device: Any, loc: Loc | None = None) -> Device:
    """The ``Device`` a device argument names (``None`` is "cpu"; "cuda" is ``cuda:0``, PyTorch's current device);
    DeviceError with the user's ``file:line`` for a malformed name or an unknown type. Does not check that the
    device is there (see :func:`resolve`)."""
    if device is None:
        return CPU
    try:
        d = registry.parse(device)
    except DeviceError as e:
        raise DeviceError(f"{e}{at(loc)}") from None
    return d if d.type == "cpu" or d.index is not None else registry.interned(d.type, 0)


def require(device: Device, loc: Loc | None = None) -> None:
    """Raise DeviceError when ``device`` cannot be used here: the runtime's reason (for "cuda": no cuda-python, no
    driver ``libcuda.so``, no GPU visible, no GPU of that index) with the user's ``file:line``."""
    try:
        registry.check_available(device)
    except DeviceError as e:
        raise DeviceError(f"{e}{at(loc)}") from None


def resolve(device: Any, loc: Loc | None = None) -> Device:
    """:func:`canonical`, then :func:`require`: a device that can be used now."""
    d = canonical(device, loc)
    require(d, loc)
    return d


def is_host(data: Any) -> bool:
    """Whether a realized buffer lives on the host (a numpy array) rather than a device."""
    return isinstance(data, np.ndarray)


def upload(array: np.ndarray, device: Device) -> Any:
    """A new buffer on ``device`` holding a copy of ``array`` (host -> device)."""
    return registry.runtime_for(device).upload(array, device.index or 0)


def download(buffer: Any) -> np.ndarray:
    """A host copy of a device buffer; waits for the work queued before it."""
    if isinstance(buffer, np.ndarray):
        return buffer
    return registry.runtime_for(device_of(buffer)).download(buffer)


def transfer(data: Any, device: Device) -> Any:
    """``data`` on ``device``: itself when it is there already, else a copy (through the host)."""
    if device_of(data) == device:
        return data
    host = download(data)
    return host if device == CPU else upload(host, device)


def zeros(shape: tuple[int, ...], dtype: np.dtype, device: Device) -> Any:
    """A buffer of zeros on ``device`` (filled on the device: no host copy)."""
    return registry.runtime_for(device).zeros(shape, dtype, device.index or 0)


def bind(node: Node, device: Device) -> Any:
    """The buffer of the leaf ``node`` as a graph on ``device`` reads it.

    A leaf of another device is copied, and the copy kept on the node (``node.mirror``): a device buffer's host
    copy always (device buffers are never written in place once they hold a tensor's value), a host array's upload
    when it is small, re-validated against the array's bytes on every use."""
    data = node.data
    if device_of(data) == device:  # where the buffer is, not where the node counts as living (placeholders)
        return data
    if isinstance(data, np.ndarray):
        if data.nbytes > MIRROR_LIMIT_BYTES:
            return upload(data, device)
        snapshot = data.tobytes()
        mirror = node.mirror
        if mirror is not None and mirror[0] == snapshot:
            return mirror[1]
        buf = upload(data, device)
        node.mirror = (snapshot, buf)
        return buf
    if device != CPU:
        return transfer(data, device)
    if node.mirror is None:
        node.mirror = download(data)
    return node.mirror


def graph_device(nodes: Any) -> Device:
    """The device a graph of ``nodes`` runs on: that of its non-scalar values (recording ensures they agree), or
    for a graph of scalars only, the device of any of them not on the CPU."""
    scalar_device = CPU
    for node in nodes:
        if any(shape for shape, _ in node.types):
            return node.device
        if node.device != CPU:
            scalar_device = node.device
    return scalar_device
