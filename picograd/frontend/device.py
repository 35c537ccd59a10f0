"""Devices as the frontend sees them: their names, whether they are there, where a buffer lives, and the copies
between host and GPU (design.md section 6).

A realized value is a numpy array on "cpu" and a ``picograd.runtime.cuda.DeviceBuffer`` on "cuda". Copies happen
only at the edges: creating a tensor on "cuda" uploads, ``.numpy()`` / ``.item()`` / ``.tolist()`` download,
``.to(device)`` copies, and a graph that reads a 0-d tensor of the other device (a scalar, as PyTorch lets a 0-d
CPU tensor join CUDA ops) copies that scalar when it runs (:func:`bind`, which caches the copy).

The CUDA runtime is reached through the module object (``cuda.DeviceBuffer``, ``cuda.available``) at call time,
never through names imported once, so that the CPU tests can stand a fake runtime in for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from picograd.errors import DeviceError
from picograd.frontend.graph import Loc, Node, at
from picograd.runtime import cuda

CPU = "cpu"
CUDA = "cuda"

# Host arrays up to this size that a GPU graph reads are uploaded once per leaf and re-checked byte for byte on
# every use (a numpy array handed to ``Tensor`` or returned by ``.numpy()`` can be changed by the user in place).
MIRROR_LIMIT_BYTES = 4096


def canonical(device: Any, loc: Loc | None = None) -> str:
    """``"cpu"`` or ``"cuda"`` for a device name (``None`` is "cpu"; ``"cuda:0"`` is "cuda"); DeviceError for an
    unknown name or a GPU index other than 0. Does not check that the device is there (see :func:`resolve`)."""
    if device is None:
        return CPU
    name = str(device)
    if name == CPU or name == CUDA:
        return name
    if name.startswith("cuda:"):
        if name == "cuda:0":
            return CUDA
        raise DeviceError(f"device '{name}': picograd uses one GPU, 'cuda' (or 'cuda:0'){at(loc)}")
    raise DeviceError(f"unknown device '{name}'; expected 'cpu' or 'cuda'{at(loc)}")


def require(device: str, loc: Loc | None = None) -> None:
    """Raise DeviceError when ``device`` cannot be used here: for "cuda", the runtime's reason (no cuda-python, no
    driver ``libcuda.so``, no GPU visible) with the user's ``file:line``."""
    if device != CUDA or cuda.available():
        return
    try:
        cuda.device()
    except DeviceError as e:
        reason = str(e)
    else:  # available() and device() disagree only if the GPU appeared in between
        return
    raise DeviceError(f"device 'cuda' cannot be used: {reason}{at(loc)}")


def resolve(device: Any, loc: Loc | None = None) -> str:
    """:func:`canonical`, then :func:`require`: the name of a device that can be used now."""
    name = canonical(device, loc)
    require(name, loc)
    return name


def is_host(data: Any) -> bool:
    """Whether a realized buffer lives on the host (a numpy array) rather than the GPU."""
    return isinstance(data, np.ndarray)


def device_of(data: Any) -> str:
    """Where a realized buffer lives."""
    return CPU if isinstance(data, np.ndarray) else CUDA


def upload(array: np.ndarray) -> Any:
    """A new device buffer holding a copy of ``array`` (host -> device)."""
    return cuda.DeviceBuffer.from_numpy(array)


def download(buffer: Any) -> np.ndarray:
    """A host copy of a device buffer; waits for the work queued before it."""
    return buffer.to_numpy()


def transfer(data: Any, device: str) -> Any:
    """``data`` on ``device``: itself when it is there already, else a copy."""
    if isinstance(data, np.ndarray):
        return data if device == CPU else upload(data)
    return data if device == CUDA else download(data)


def zeros(shape: tuple[int, ...], dtype: np.dtype, device: str) -> Any:
    """A buffer of zeros on ``device`` (filled on the GPU: no host copy)."""
    if device == CPU:
        return np.zeros(shape, dtype)
    buf = cuda.DeviceBuffer(shape, dtype)
    buf.fill_zero()
    return buf


def bind(node: Node, device: str) -> Any:
    """The buffer of the leaf ``node`` as a graph on ``device`` reads it.

    A leaf of the other device is copied, and the copy kept on the node (``node.mirror``): a device buffer's host
    copy always (device buffers are never written in place once they hold a tensor's value), a host array's upload
    when it is small, re-validated against the array's bytes on every use."""
    data = node.data
    if isinstance(data, np.ndarray):
        if device == CPU:
            return data
        if data.nbytes > MIRROR_LIMIT_BYTES:
            return upload(data)
        snapshot = data.tobytes()
        mirror = node.mirror
        if mirror is not None and mirror[0] == snapshot:
            return mirror[1]
        buf = upload(data)
        node.mirror = (snapshot, buf)
        return buf
    if device == CUDA:
        return data
    if node.mirror is None:
        node.mirror = download(data)
    return node.mirror


def graph_device(nodes: Any) -> str:
    """The device a graph of ``nodes`` runs on: that of its non-scalar values (recording ensures they agree), or
    for a graph of scalars only, "cuda" when any of them lives there."""
    scalar_device = CPU
    for node in nodes:
        if node.device == CPU:
            if any(shape for shape, _ in node.types):
                return CPU
        else:
            if any(shape for shape, _ in node.types):
                return node.device
            scalar_device = node.device
    return scalar_device
