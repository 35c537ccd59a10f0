"""A null CUDA driver: the real ``picograd.runtime.cuda`` host code (``DeviceBuffer``, ``Executable``, graph
capture and replay, ``ProgramExecutable``'s index checks) over host memory, with kernel launches that do nothing
(tests and bench/gpu_host_overhead.py only).

Unlike tests/_fake_cuda.py, which replaces ``DeviceBuffer`` and the executable with numpy stand-ins (so that compiled
steps compute), this stands in for cuda.core underneath the runtime: ``compile_for_cuda`` runs the whole pipeline to
PTX, the runtime checks its launch plan, binds buffers, captures and replays "graphs" and copies memory, and only the
kernels are skipped. Values computed by kernels are therefore garbage (the bytes a buffer held); what it is for is
the host path of a compiled GPU step: its Python cost per call, and which copies and synchronizations it makes
(``COUNTS``).

``install()`` puts it in place (and returns a function that takes it out again).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from picograd.runtime import cuda

COUNTS: Counter[str] = Counter()  # d2h, h2d, d2d, memset, launch, graph_launch, capture, update, sync, alloc
_addresses = itertools.count(0x7000_0000_0000, 0x1_0000)


class NullBuffer:
    """Host bytes behind cuda.core's ``Buffer`` interface (handle, size, copy_from/copy_to, fill, close)."""

    __slots__ = ("handle", "size", "memory", "host")

    def __init__(self, size: int, memory: Any = None, handle: int | None = None) -> None:
        self.size = size
        self.memory = np.zeros(size, np.uint8) if memory is None else memory
        self.handle = next(_addresses) if handle is None else handle
        self.host = memory is not None

    @classmethod
    def from_handle(cls, ptr: int, size: int, owner: Any = None) -> NullBuffer:
        if isinstance(owner, NullBuffer):  # a view of device memory
            view = cls(size, owner.memory[ptr - owner.handle : ptr - owner.handle + size], ptr)
            view.host = False
            return view
        return cls(size, np.asarray(owner).reshape(-1).view(np.uint8), ptr)  # a host array's memory

    def copy_from(self, src: NullBuffer, stream: Any = None) -> None:
        COUNTS["h2d" if src.host else "d2d"] += 1
        self.memory[: src.size] = src.memory[: src.size]

    def copy_to(self, dst: NullBuffer, stream: Any = None) -> None:
        COUNTS["d2h" if dst.host else "d2d"] += 1
        dst.memory[: self.size] = self.memory[: dst.size]

    def fill(self, value: int, stream: Any = None) -> None:
        COUNTS["memset"] += 1
        self.memory[:] = value

    def close(self) -> None:
        pass


class _Stream:
    def sync(self) -> None:
        COUNTS["sync"] += 1

    def create_graph_builder(self) -> _Builder:
        return _Builder()


class _Graph:
    def __init__(self, ops: int) -> None:
        self.ops = ops

    def launch(self, stream: Any) -> None:
        COUNTS["graph_launch"] += 1

    def update(self, builder: _Builder) -> None:
        COUNTS["update"] += 1


class _Builder:
    def __init__(self) -> None:
        self.ops = 0

    def begin_building(self, mode: str) -> None:
        pass

    def end_building(self) -> None:
        pass

    def complete(self) -> _Graph:
        COUNTS["capture"] += 1
        return _Graph(self.ops)

    def close(self) -> None:
        pass


class _Device:
    device_id = 0

    class compute_capability:  # noqa: N801 - cuda.core's attribute
        major, minor = 9, 0

    def create_stream(self) -> _Stream:
        return _Stream()

    def allocate(self, size: int, stream: Any = None) -> NullBuffer:
        COUNTS["alloc"] += 1
        return NullBuffer(size)

    def set_current(self) -> None:
        pass


class _ObjectCode:
    def get_kernel(self, name: str) -> str:
        return name


class _Pinned:
    """cuda.core's LegacyPinnedMemoryResource: host memory at a real address (the device would use the same one)."""

    def allocate(self, size: int, stream: Any = None) -> NullBuffer:
        COUNTS["pinned_alloc"] += 1
        memory = np.zeros(size, np.uint8)
        buf = NullBuffer(size, memory, memory.ctypes.data)
        buf.host = False  # copies to and from it are the device's own
        return buf


class _CudaCore:
    """The cuda.core names the runtime uses."""

    Buffer = NullBuffer
    LegacyPinnedMemoryResource = _Pinned

    class LaunchConfig:
        def __init__(self, grid: Any, block: Any, shmem_size: int = 0) -> None:
            self.grid, self.block, self.shmem_size = grid, block, shmem_size

    class EventOptions:
        def __init__(self, timing_enabled: bool = False) -> None:
            pass

    @staticmethod
    def launch(target: Any, config: Any, kernel: Any, *args: Any) -> None:
        COUNTS["launch"] += 1
        if isinstance(target, _Builder):
            target.ops += 1


def _assemble(ptx: str, arch: str, key: str, params: Any) -> cuda.Module:
    return cuda.Module(ptx, arch, key, _ObjectCode(), "", "null", params)


def install(assemble: bool = False) -> Callable[[], None]:
    """Stand the null driver in for CUDA (``cuda.available()`` is True, GPU 0 an sm_90a Hopper); returns the undo.
    With ``assemble`` the PTX is assembled for real (nvJitLink, which needs no GPU): ptxas checks every kernel."""
    saved = (cuda._runtime, cuda._init_error, cuda._assemble)
    cuda._runtime = cuda._Runtime(_CudaCore, None, _Device())
    cuda._init_error = None
    real = cuda._assemble

    def assemble_for_real(ptx: str, arch: str, key: str, params: Any) -> cuda.Module:
        module = real(ptx, arch, key, params)
        module.object_code = _ObjectCode()
        return module

    cuda._assemble = assemble_for_real if assemble else _assemble
    cuda.clear_module_cache()

    def uninstall() -> None:
        cuda._runtime, cuda._init_error, cuda._assemble = saved
        cuda.clear_module_cache()

    return uninstall
