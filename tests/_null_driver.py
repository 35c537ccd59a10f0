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

import ctypes
import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from picograd.runtime import cuda

COUNTS: Counter[str] = Counter()  # d2h, h2d, d2d, memset, launch, graph_launch, capture, update, sync, alloc
_addresses = itertools.count(0x7000_0000_0000, 0x1_0000)


_free: dict[int, list[int]] = {}  # size -> addresses of freed allocations, handed out again as a memory pool does
# The state above is reached through builtin methods only: @pg.compile's guards record what code outside the library
# reads while a step is traced (this file counts as the user's), and a counter read there would retrace every call.
_count = COUNTS.update
_freed = _free.setdefault
_reuse = _free.get


class NullBuffer:
    """Host bytes behind cuda.core's ``Buffer`` interface (handle, size, copy_from/copy_to, fill, close). An
    allocation's address is reused once it is freed (garbage collected), as the device's memory pool reuses them."""

    __slots__ = ("handle", "size", "memory", "host", "pooled")

    def __init__(self, size: int, memory: Any = None, handle: int | None = None) -> None:
        self.size = size
        self.memory = np.zeros(size, np.uint8) if memory is None else memory
        self.pooled = memory is None and handle is None
        if self.pooled:
            free = _reuse(size)
            handle = free.pop() if free else next(_addresses)
        self.handle = handle
        self.host = memory is not None

    def __del__(self) -> None:
        if self.pooled:
            _freed(self.size, []).append(self.handle)

    @classmethod
    def from_handle(cls, ptr: int, size: int, owner: Any = None) -> NullBuffer:
        if isinstance(owner, NullBuffer):  # a view of device memory
            view = cls(size, owner.memory[ptr - owner.handle : ptr - owner.handle + size], ptr)
            view.host = False
            return view
        return cls(size, np.asarray(owner).reshape(-1).view(np.uint8), ptr)  # a host array's memory

    def copy_from(self, src: NullBuffer, stream: Any = None) -> None:
        _count(("h2d" if src.host else "d2d",))
        self.memory[: src.size] = src.memory[: src.size]

    def copy_to(self, dst: NullBuffer, stream: Any = None) -> None:
        _count(("d2h" if dst.host else "d2d",))
        dst.memory[: self.size] = self.memory[: dst.size]

    def fill(self, value: int, stream: Any = None) -> None:
        _count(("memset",))
        self.memory[:] = value

    def close(self) -> None:
        pass


class _Stream:
    handle = 0

    def sync(self) -> None:
        _count(("sync",))

    def create_graph_builder(self) -> _Builder:
        return _Builder()


class _Graph:
    def __init__(self, ops: int) -> None:
        self.ops = ops

    def launch(self, stream: Any) -> None:
        _count(("graph_launch",))

    def update(self, builder: _Builder) -> None:
        _count(("update",))


class _Builder:
    handle = 0

    def __init__(self) -> None:
        self.ops = 0

    def begin_building(self, mode: str) -> None:
        pass

    def end_building(self) -> None:
        pass

    def complete(self) -> _Graph:
        _count(("capture",))
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
        _count(("alloc",))
        return NullBuffer(size)

    def set_current(self) -> None:
        pass


class _Kernel:
    """A loaded kernel: a name and a made-up handle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handle = _Driver.CUfunction(next(_addresses))


class _ObjectCode:
    def get_kernel(self, name: str) -> _Kernel:
        return _Kernel(name)


class _Encoded:
    """A ``CUtensorMap``: 128 bytes at a real address."""

    def __init__(self) -> None:
        self.bytes = ctypes.create_string_buffer(128)

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's name
        return ctypes.addressof(self.bytes)


class _Driver:
    """The parts of ``cuda.bindings.driver`` that the runtime calls directly (dynamic shared memory opt-in, tensor
    maps, launches with tensor-map parameters)."""

    class CUresult:
        CUDA_SUCCESS = 0

    class CUfunction(int):
        pass

    class CUdevice(int):
        pass

    class cuuint64_t(int):  # noqa: N801 - the driver's names
        pass

    class cuuint32_t(int):  # noqa: N801
        pass

    class CUfunction_attribute:  # noqa: N801
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    class CUtensorMapDataType:
        CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = CU_TENSOR_MAP_DATA_TYPE_FLOAT32 = 0

    class CUtensorMapInterleave:
        CU_TENSOR_MAP_INTERLEAVE_NONE = 0

    class CUtensorMapSwizzle:
        CU_TENSOR_MAP_SWIZZLE_NONE = CU_TENSOR_MAP_SWIZZLE_32B = CU_TENSOR_MAP_SWIZZLE_64B = 0
        CU_TENSOR_MAP_SWIZZLE_128B = 0

    class CUtensorMapL2promotion:
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B = 0

    class CUtensorMapFloatOOBfill:
        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0

    @staticmethod
    def cuKernelSetAttribute(*args: Any) -> tuple[int]:  # noqa: N802
        return (0,)

    @staticmethod
    def cuFuncSetAttribute(*args: Any) -> tuple[int]:  # noqa: N802
        return (0,)

    @staticmethod
    def cuTensorMapEncodeTiled(*args: Any) -> tuple[int, _Encoded]:  # noqa: N802
        for index, kind in [(3, _Driver.cuuint64_t), (4, _Driver.cuuint64_t), (5, _Driver.cuuint32_t)]:
            assert all(type(x) is kind for x in args[index]), f"argument {index}: {args[index]}"
        return 0, _Encoded()

    @staticmethod
    def cuLaunchKernel(function: Any, *args: Any) -> tuple[int]:  # noqa: N802
        assert isinstance(function, _Driver.CUfunction)
        _count(("launch",))
        return (0,)


class _Pinned:
    """cuda.core's LegacyPinnedMemoryResource: host memory at a real address (the device would use the same one)."""

    def allocate(self, size: int, stream: Any = None) -> NullBuffer:
        _count(("pinned_alloc",))
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
        _count(("launch",))
        if isinstance(target, _Builder):
            target.ops += 1


def _assemble(ptx: str, arch: str, key: str, params: Any) -> cuda.Module:
    return cuda.Module(ptx, arch, key, _ObjectCode(), "", "null", params)


def install(assemble: bool = False) -> Callable[[], None]:
    """Stand the null driver in for CUDA (``cuda.available()`` is True, GPU 0 an sm_90a Hopper); returns the undo.
    With ``assemble`` the PTX is assembled for real (nvJitLink, which needs no GPU): ptxas checks every kernel."""
    saved = (cuda._runtime, cuda._init_error, cuda._assemble)
    cuda._runtime = cuda._Runtime(_CudaCore, _Driver, _Device())
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
