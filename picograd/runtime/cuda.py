"""The CUDA runtime of picograd, on cuda.core (cuda-python 1.2.x).

What is here, bottom up:

- :func:`available` / :func:`device` / :func:`stream`: the GPU (device 0), made current on first use. Importing this
  module touches no CUDA library, so CPU machines import it freely; every entry point that needs a GPU raises
  :class:`picograd.errors.DeviceError` naming what is missing (no ``cuda-python``, no driver ``libcuda.so``, no
  visible GPU), never an ``ImportError`` or a raw CUDA error.
- :func:`compile_ptx`: PTX text to a cubin :class:`Module`, assembled by ``picograd.target.ptxas`` through cuda.core's
  ``Linker`` (nvJitLink when it is installed, so this works without a GPU, else the driver's ``cuLink*``), for the
  arch named by the PTX's ``.target``. Bad PTX raises :class:`picograd.errors.CompileError` with the full ptxas log.
  Modules are cached under the sha256 of (arch, PTX text). :meth:`Module.kernel` gives a :class:`Kernel` with the
  ptxas figures (``num_regs``, ``local_size_bytes``, ...; ``picograd.target.ptxas.parse_resources``) and the
  parameter list (from the compiler's launch plan for a compiled program, else parsed from hand-written PTX), so
  launch arguments are checked and converted before anything reaches the driver.
- :class:`DeviceBuffer`: device memory for one tensor (shape, numpy dtype), stream-ordered
  (``cuMemAllocFromPoolAsync`` through ``Device.allocate``), freed when garbage collected.
- :func:`launch`: one kernel launch on the default stream (``cuLaunchKernelEx`` through ``cuda.core.launch``).
- :class:`Graph`: a fixed list of launches, memsets and copies captured once into a CUDA graph (stream capture,
  ``cuStreamBeginCapture`` / ``cuGraphInstantiate`` through cuda.core's ``GraphBuilder``) and replayed with
  ``cuGraphLaunch``.
- :class:`Executable`: the GPU analogue of ``numpy_executor.NumpyFunction``: a compiled module plus a launch list
  over argument slots (:class:`Input`, :class:`Output`, :class:`Temp`, constants); a call binds the buffers and
  replays one CUDA graph.
- :func:`time_ms`: the median of event-timed runs (``cuEventElapsedTime``).
- :func:`defer_check` / :func:`mark_failed`: errors that only the device's work reveals (the flags of device-side
  index checks) are checked at the next synchronization (:meth:`DeviceBuffer.to_numpy`, :func:`synchronize`), as
  CUDA reports kernel errors asynchronously, so that a step never waits for the device unless the user reads a
  value; a buffer computed by work that failed raises the error when it is read or passed to an executable.

Everything runs on one stream per process (:func:`stream`), so the order of copies, launches, graph replays and the
stream-ordered frees of garbage-collected buffers is the program order. References: the CUDA driver API
(https://docs.nvidia.com/cuda/cuda-driver-api/) and cuda.core (https://nvidia.github.io/cuda-python/cuda-core/).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import math
import os
import re
import statistics
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from picograd.errors import DeviceError, DTypeError, ShapeError
from picograd.target import ptxas

__all__ = [
    "BufferSpec",
    "Copy",
    "DeviceBuffer",
    "Executable",
    "Graph",
    "Input",
    "Kernel",
    "Launch",
    "Memset",
    "Module",
    "Output",
    "Param",
    "Temp",
    "TensorMap",
    "available",
    "clear_module_cache",
    "compile_ptx",
    "defer_check",
    "device",
    "device_count",
    "launch",
    "mark_failed",
    "module_cache_size",
    "stream",
    "synchronize",
    "time_ms",
]

# Hopper limits (CUDA C++ Programming Guide, "Compute capabilities", 9.0). Launches are checked against them before
# the driver sees them, so a bad launch list fails with a message rather than CUDA_ERROR_INVALID_VALUE.
MAX_THREADS_PER_BLOCK = 1024
MAX_SHARED_BYTES_OPTIN = 232448  # 227 KiB of dynamic + static shared memory per block, after the opt-in below
DEFAULT_SHARED_BYTES = 48 * 1024  # above this a kernel needs CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
_MAX_GRID = (2**31 - 1, 65535, 65535)


# --------------------------------------------------------------------------------------------------------------------
# The device: lazy initialisation with clear errors
# --------------------------------------------------------------------------------------------------------------------


class _Runtime:
    """The process-wide CUDA state: cuda.core modules, device 0, its streams. Built once by :func:`device`."""

    def __init__(self, cc: Any, driver: Any, dev: Any, count: int = 1) -> None:
        self.cc = cc
        self.count = count  # GPUs visible (cuDeviceGetCount)
        self.driver = driver
        self.device = dev
        # One stream carries all work (copies, launches, graph replays, frees). Graphs are captured on a second
        # stream, so that a buffer freed by the garbage collector during a capture (a stream-ordered free on the main
        # stream) never lands inside the graph being built.
        self.stream = dev.create_stream()
        self.capture_stream = dev.create_stream()
        self.timing = cc.EventOptions(timing_enabled=True)
        self.configs: dict[tuple, Any] = {}  # (grid, block, shmem) -> cuda.core.LaunchConfig
        self.thread_ids = {threading.get_ident()}
        self.pinned: Any = None  # cuda.core.LegacyPinnedMemoryResource, made on first use (DeviceBuffer.mapped)


_lock = threading.Lock()
_runtime: _Runtime | None = None
_init_error: str | None = None


def _import_cuda() -> tuple[Any, Any]:
    """cuda.core and cuda.bindings.driver, or DeviceError when cuda-python is not installed."""
    try:
        cc = importlib.import_module("cuda.core")
        driver = importlib.import_module("cuda.bindings.driver")
    except ImportError as e:
        raise DeviceError(
            f"CUDA is unavailable: cuda-python is not installed ({e}); `pip install cuda-python` (cuda.core >= 1.2)"
        ) from None
    return cc, driver


def _no_device_hint() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""


def _initialise() -> _Runtime:
    """cuInit, count the devices, make device 0 current (primary context), create the streams.

    Follows the driver API's start-up order (``cuInit`` then ``cuDeviceGetCount``; cuda.core's ``Device(0)`` and
    ``Device.set_current`` retain and push the primary context). Each failure becomes one DeviceError message.
    """
    cc, driver = _import_cuda()
    try:
        (err,) = driver.cuInit(0)
    except Exception as e:  # cuda.pathfinder's DynamicLibNotFoundError (a RuntimeError) when libcuda.so is missing
        raise DeviceError(
            f"CUDA is unavailable: no CUDA driver found (libcuda.so): {str(e).rstrip('.')}. Use device='cpu', or "
            "run on a machine with an NVIDIA GPU and its driver"
        ) from None
    if err == driver.CUresult.CUDA_ERROR_NO_DEVICE:
        raise DeviceError(
            f"CUDA is unavailable: no NVIDIA GPU visible (cuInit: CUDA_ERROR_NO_DEVICE{_no_device_hint()})"
        )
    if err != driver.CUresult.CUDA_SUCCESS:
        raise DeviceError(f"CUDA is unavailable: the CUDA driver failed to initialise (cuInit: {err.name})")
    err, count = driver.cuDeviceGetCount()
    if err != driver.CUresult.CUDA_SUCCESS or count == 0:
        raise DeviceError(f"CUDA is unavailable: no NVIDIA GPU visible (cuDeviceGetCount: {count}{_no_device_hint()})")
    try:
        dev = cc.Device(0)
        dev.set_current()
        return _Runtime(cc, driver, dev, count)
    except Exception as e:
        raise DeviceError(f"CUDA is unavailable: device 0 could not be made current: {e}") from None


def device() -> Any:
    """The ``cuda.core.Device`` for GPU 0, made current on this thread; DeviceError when there is none.

    The first call initialises CUDA; a failure is remembered, so later calls raise the same message at once.
    """
    return _get_runtime().device


def _get_runtime() -> _Runtime:
    global _runtime, _init_error
    rt = _runtime
    if rt is not None:
        if threading.get_ident() not in rt.thread_ids:  # a context is current per thread (cuCtxSetCurrent)
            rt.device.set_current()
            rt.thread_ids.add(threading.get_ident())
        return rt
    if _init_error is not None:
        raise DeviceError(_init_error)
    with _lock:
        if _runtime is None:
            try:
                _runtime = _initialise()
            except DeviceError as e:
                _init_error = str(e)
                raise
    return _runtime


def available() -> bool:
    """True when a CUDA GPU can be used (cuda-python installed, driver loaded, a GPU visible)."""
    try:
        _get_runtime()
    except DeviceError:
        return False
    return True


def device_target() -> str:
    """The PTX target for GPU 0: ``sm_90a`` on compute capability 9.0 (Hopper, whose wgmma/TMA/setmaxnreg kernels
    need the arch-specific target), else ``sm_90`` (the oldest target the compiler emits, which newer GPUs run
    through the driver's JIT). DeviceError when CUDA cannot be used."""
    cap = _get_runtime().device.compute_capability
    return "sm_90a" if (cap.major, cap.minor) == (9, 0) else "sm_90"


def device_count() -> int:
    """The number of GPUs visible (``cuDeviceGetCount``); 0 when CUDA cannot be used."""
    try:
        return _get_runtime().count
    except DeviceError:
        return 0


def stream() -> Any:
    """The process's CUDA stream (a ``cuda.core.Stream``): all runtime work is ordered on it."""
    return _get_runtime().stream


def synchronize() -> None:
    """Wait until all work queued on :func:`stream` is done (``cuStreamSynchronize``)."""
    with _cuda_errors("synchronize"):
        _get_runtime().stream.sync()
    if _deferred:
        run_deferred_checks()


# Errors the device's work reveals only once it has run (see the module docstring). ``_deferred`` holds the checks to
# run at the next synchronization, ``_failed`` the buffers computed by work that failed, with the error: reading one
# raises it (a key is dropped when the buffer dies or is written again by an executable).
_deferred: list[Callable[[], None]] = []
_failed: weakref.WeakKeyDictionary[Any, BaseException] = weakref.WeakKeyDictionary()


def defer_check(check: Callable[[], None]) -> None:
    """Run ``check`` (which raises the error it finds) at the next synchronization, after the device has caught up
    with the work queued so far."""
    _deferred.append(check)


def run_deferred_checks() -> None:
    """Run the deferred checks now (the caller has synchronized the stream); the first error is raised, the checks
    after it stay queued."""
    while _deferred:
        check = _deferred.pop(0)
        check()


def mark_failed(buffer: Any, error: BaseException) -> None:
    """Record that ``buffer`` holds a value computed by work that failed with ``error``: reading it
    (:meth:`DeviceBuffer.to_numpy`) or running an executable on it raises ``error``, until it is written again."""
    _failed[buffer] = error


def check_not_failed(buffers: Iterable[Any]) -> None:
    """Raise the error of the first of ``buffers`` that holds a failed computation's value (see :func:`mark_failed`)."""
    for b in buffers:
        error = _failed.get(b)
        if error is not None:
            raise error


class _cuda_errors:  # noqa: N801 - used as a lower-case context manager, like contextlib's
    """Turn an exception raised inside cuda-python (``CUDAError``, ``nvJitLinkError``, ...) into DeviceError.

    Exceptions of Python's own types (TypeError, ValueError from argument checks) pass through unchanged.
    """

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and type(exc).__module__.startswith("cuda.") and not isinstance(exc, DeviceError):
            raise DeviceError(f"CUDA error in {self.what}: {exc}") from exc


# --------------------------------------------------------------------------------------------------------------------
# PTX -> cubin
# --------------------------------------------------------------------------------------------------------------------

# Byte sizes of the PTX scalar types a kernel parameter can have (PTX ISA, "Kernel Function Parameters").
_PTX_TYPE_BYTES = {
    "b8": 1, "u8": 1, "s8": 1,
    "b16": 2, "u16": 2, "s16": 2, "f16": 2, "bf16": 2,
    "b32": 4, "u32": 4, "s32": 4, "f32": 4,
    "b64": 8, "u64": 8, "s64": 8, "f64": 8,
}  # fmt: skip
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_ENTRY = re.compile(r"\.entry\s+([A-Za-z_$%][\w$]*)\s*(\(([^)]*)\))?")


@dataclass(frozen=True)
class Param:
    """One kernel parameter as declared in the PTX: ``.param .u32 n`` is ``Param("n", "u32", 4)``.

    ``ptx_type`` is None for an aggregate parameter (``.param .align 8 .b8 s[16]``); ``nbytes`` is its size.
    """

    name: str
    ptx_type: str | None
    nbytes: int

    @classmethod
    def scalar(cls, name: str, ptx_type: str) -> Param:
        """The scalar parameter ``.param .<ptx_type> name`` (``"u64"`` for a pointer)."""
        if ptx_type not in _PTX_TYPE_BYTES:
            raise ValueError(f"kernel parameter {name!r}: unknown PTX parameter type {ptx_type!r}")
        return cls(name, ptx_type, _PTX_TYPE_BYTES[ptx_type])

    @property
    def is_pointer_sized(self) -> bool:
        """A 64-bit integer or bit parameter: where a buffer's device address goes."""
        return self.ptx_type in ("u64", "s64", "b64")

    def convert(self, value: object) -> Any:
        """``value`` as the numpy scalar cuda.core passes for this parameter (cuda.core packs a numpy scalar with its
        own width, a Python int as 8 bytes and a float as an f64, so every scalar is converted here first).

        Python ints and bools take this parameter's integer type, range-checked (or its float type for ``.f*``);
        Python floats go to ``.f*``, ``.b32`` and ``.b64`` only. A numpy scalar must already have the parameter's
        width (and be a float for ``.f*``, an integer for ``.u*``/``.s*``); it is not converted, because a width or
        kind mismatch is a bug in the caller.
        """
        t = self.ptx_type
        if t is None:
            raise TypeError(f"kernel parameter {self.name!r} is an aggregate ({self.nbytes} bytes): not supported")
        if isinstance(value, np.generic):
            accepted = "f" if t in _FLOAT_ONLY else "iu" if t not in _FLOAT_NUMPY else "iuf"
            if value.dtype.itemsize != self.nbytes or value.dtype.kind not in accepted:
                wanted = _FLOAT_NUMPY[t] if value.dtype.kind == "f" and t in _FLOAT_NUMPY else _INT_NUMPY.get(t)
                hint = f"; pass np.{wanted.__name__}" if wanted is not None else ""
                raise TypeError(f"kernel parameter {self.name!r} is .{t}: got a numpy {value.dtype} scalar{hint}")
            return value
        if isinstance(value, float) or (isinstance(value, bool | int) and t in _FLOAT_ONLY):
            if t not in _FLOAT_NUMPY:
                raise TypeError(f"kernel parameter {self.name!r} is .{t} (an integer): got the float {value!r}")
            return _FLOAT_NUMPY[t](value)
        if isinstance(value, bool | int):
            numpy_type = _INT_NUMPY[t]
            info = np.iinfo(np.dtype(numpy_type))
            if not info.min <= value <= info.max:
                raise OverflowError(f"kernel parameter {self.name!r} is .{t}: {value} is out of range")
            return numpy_type(value)
        raise TypeError(f"kernel parameter {self.name!r} is .{t}: cannot pass a {type(value).__name__}")


# The numpy scalar type a Python int or float becomes for each PTX parameter type.
_INT_NUMPY: dict[str, type[np.generic]] = {
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
    "s8": np.int8, "s16": np.int16, "s32": np.int32, "s64": np.int64,
    "b8": np.uint8, "b16": np.uint16, "b32": np.uint32, "b64": np.uint64, "bf16": np.uint16,
}  # fmt: skip
_FLOAT_NUMPY: dict[str, type[np.generic]] = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "b32": np.float32, "b64": np.float64,
}  # fmt: skip
_FLOAT_ONLY = ("f16", "f32", "f64")


def _parse_params(decls: str) -> tuple[Param, ...]:
    params = []
    for decl in decls.split(","):
        tokens = decl.split()
        if not tokens:
            continue
        name = tokens[-1]
        count = 1
        if (m := re.search(r"\[(\d*)\]$", name)) is not None:
            name, count = name[: m.start()], int(m.group(1) or 0)
        types = [tok[1:] for tok in tokens[1:-1] if tok[1:] in _PTX_TYPE_BYTES]
        if len(types) != 1:
            raise ValueError(f"cannot read the parameter declaration {decl.strip()!r}")
        scalar = m is None
        params.append(Param(name, types[0] if scalar else None, _PTX_TYPE_BYTES[types[0]] * count))
    return tuple(params)


def _parse_entries(ptx: str) -> dict[str, tuple[Param, ...] | None]:
    """Kernel name -> parameters, for every ``.entry`` in the PTX (None where a declaration cannot be read)."""
    entries: dict[str, tuple[Param, ...] | None] = {}
    for m in _ENTRY.finditer(_COMMENTS.sub("", ptx)):
        try:
            entries[m.group(1)] = _parse_params(m.group(3) or "")
        except ValueError:
            entries[m.group(1)] = None
    return entries


class Kernel:
    """One ``.entry`` of a compiled :class:`Module`.

    The ptxas figures (``num_regs``, ``local_size_bytes``, ``spill_store_bytes``, ``spill_load_bytes``,
    ``shared_size_bytes``, ``barriers``) come from the assembler's log, so they are there without a GPU; where the log
    lacks one, it is read from the loaded kernel (``cuKernelGetAttribute``), which needs the GPU. ``params`` is the
    parameter list of the PTX declaration (None if it could not be read). ``handle`` is the loaded
    ``cuda.core.Kernel`` (the module is loaded on first use, ``cuLibraryLoadData``).
    """

    def __init__(
        self, module: Module, name: str, params: tuple[Param, ...] | None, info: ptxas.KernelResources
    ) -> None:
        self.module = module
        self.name = name
        self.params = params
        self.info = info
        self._handle: Any = None
        self._dynamic_shared_limit = DEFAULT_SHARED_BYTES

    def __repr__(self) -> str:
        return f"<Kernel {self.name} of module {self.module.key[:12]} ({self.module.arch}): {self.info}>"

    def _figure(self, name: str, attribute: str) -> int:
        value = getattr(self.info, name)
        if value is not None:
            return value
        return int(getattr(self.handle.attributes, attribute))

    @property
    def num_regs(self) -> int:
        """Registers per thread (``ptxas -v``: "Used N registers"; CU_FUNC_ATTRIBUTE_NUM_REGS)."""
        return self._figure("registers", "num_regs")

    @property
    def local_size_bytes(self) -> int:
        """Local memory per thread in bytes (ptxas's stack frame; CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)."""
        return self._figure("stack_frame", "local_size_bytes")

    @property
    def shared_size_bytes(self) -> int:
        """Static shared memory per block in bytes (CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)."""
        return self._figure("shared_bytes", "shared_size_bytes")

    @property
    def spill_store_bytes(self) -> int | None:
        """Bytes of register spill stores (ptxas log only; None if it does not say)."""
        return self.info.spill_stores

    @property
    def spill_load_bytes(self) -> int | None:
        """Bytes of register spill loads (ptxas log only; None if it does not say)."""
        return self.info.spill_loads

    @property
    def barriers(self) -> int | None:
        """Named barriers used (ptxas log only)."""
        return self.info.barriers

    @property
    def handle(self) -> Any:
        """The loaded ``cuda.core.Kernel`` (needs the GPU; DeviceError without one)."""
        if self._handle is None:
            _get_runtime()
            with _cuda_errors(f"loading kernel {self.name!r} ({self.module.arch} cubin)"):
                self._handle = self.module.object_code.get_kernel(self.name)
        return self._handle

    def convert_args(self, args: Sequence[object]) -> tuple[Any, ...]:
        """The launch arguments as cuda.core takes them, checked against the PTX parameters.

        A :class:`DeviceBuffer` passes its device address (and needs a 64-bit integer parameter); scalars are
        converted by :meth:`Param.convert`. Without a readable parameter list only DeviceBuffers and numpy scalars
        are accepted (a Python int would be packed as 8 bytes, a float as an f64).
        """
        if self.params is None:
            out = []
            for i, a in enumerate(args):
                if isinstance(a, DeviceBuffer):
                    out.append(a.buffer)
                elif isinstance(a, np.generic):
                    out.append(a)
                else:
                    raise TypeError(
                        f"argument {i} of kernel {self.name!r}: pass a DeviceBuffer or a numpy scalar "
                        f"(np.int32/np.uint32/np.float32/np.int64), not a {type(a).__name__}"
                    )
            return tuple(out)
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name!r} takes {len(self.params)} arguments, got {len(args)}")
        out = []
        for a, p in zip(args, self.params, strict=True):
            if isinstance(a, DeviceBuffer):
                if not p.is_pointer_sized:
                    raise TypeError(f"kernel {self.name!r}: parameter {p.name!r} is .{p.ptx_type}, not a pointer")
                out.append(a.buffer)
            else:
                out.append(p.convert(a))
        return tuple(out)

    def _allow_dynamic_shared(self, nbytes: int) -> None:
        """Opt in to more than 48 KiB of dynamic shared memory (cuda.core's kernel attributes are read-only, so
        ``cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)`` is called directly)."""
        if nbytes <= self._dynamic_shared_limit:
            return
        rt = _get_runtime()
        drv = rt.driver
        attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        handle = self.handle.handle
        if isinstance(handle, drv.CUfunction):
            (err,) = drv.cuFuncSetAttribute(handle, attr, nbytes)
        else:
            (err,) = drv.cuKernelSetAttribute(attr, nbytes, handle, drv.CUdevice(rt.device.device_id))
        if err != drv.CUresult.CUDA_SUCCESS:
            raise DeviceError(
                f"kernel {self.name!r}: cannot allow {nbytes} bytes of dynamic shared memory "
                f"(static {self.shared_size_bytes} bytes; cuKernelSetAttribute: {err.name})"
            )
        self._dynamic_shared_limit = nbytes


class Module:
    """A PTX module assembled to a cubin for one arch. Made by :func:`compile_ptx`, which caches it.

    Attributes: ``ptx`` (the text), ``arch`` (``"sm_90"``/``"sm_90a"``), ``key`` (sha256 of arch and text),
    ``cubin`` (bytes), ``log`` (the ptxas info log), ``backend`` (``"nvJitLink"`` or ``"driver"``),
    ``kernel_names``.
    """

    def __init__(
        self,
        ptx: str,
        arch: str,
        key: str,
        object_code: Any,
        log: str,
        backend: str,
        params: Mapping[str, tuple[Param, ...]] | None = None,
    ) -> None:
        self.ptx = ptx
        self.arch = arch
        self.key = key
        self.object_code = object_code
        self.log = log
        self.backend = backend
        infos = ptxas.parse_resources(log)
        self._kernels = {
            name: Kernel(self, name, params, infos.get(name, ptxas.KernelResources(name)))
            for name, params in (dict(params) if params is not None else _parse_entries(ptx)).items()
        }

    @property
    def cubin(self) -> bytes:
        """The assembled cubin (an ELF image)."""
        return bytes(self.object_code.code)

    @property
    def kernel_names(self) -> tuple[str, ...]:
        """The names of the module's ``.entry`` functions, in PTX order."""
        return tuple(self._kernels)

    def kernel(self, name: str) -> Kernel:
        """The kernel called ``name``; KeyError naming the module's kernels when there is none."""
        try:
            return self._kernels[name]
        except KeyError:
            raise KeyError(f"no kernel {name!r} in module {self.key[:12]}; it has {list(self._kernels)}") from None

    def __repr__(self) -> str:
        return f"<Module {self.key[:12]} {self.arch} kernels={list(self._kernels)}>"


_module_cache: dict[str, Module] = {}
_module_cache_lock = threading.Lock()


def target_arch(ptx: str) -> str:
    """The arch named by the PTX's ``.target`` directive (``sm_90``, ``sm_90a``); ``sm_90a`` when there is none and
    the text uses wgmma or setmaxnreg (sm_90a-only instructions), else ``sm_90``."""
    target = ptxas.target_of(ptx)
    if target is not None:
        return target
    return "sm_90a" if re.search(r"\b(wgmma|setmaxnreg)\.", ptx) else "sm_90"


def compile_ptx(ptx: str, arch: str | None = None, params: Mapping[str, tuple[Param, ...]] | None = None) -> Module:
    """Assemble PTX text to a cubin :class:`Module` for ``arch`` (default: the PTX's ``.target``). ``params`` are
    the kernels' parameter lists when the caller knows them (a compiled program's launch plan carries them from the
    ``ptx`` dialect); without them they are read off the PTX text (hand-written PTX).

    Goes through ``picograd.target.ptxas.assemble(backend="linker")``: cuda.core's ``Linker``, which uses nvJitLink
    when installed (no GPU needed) and the driver's ``cuLinkCreate``/``cuLinkAddData`` otherwise. ptxas runs with
    ``-v`` so the log carries each kernel's registers, stack frame, spills and shared memory. Bad
    PTX raises CompileError with the full ptxas error log; no assembler at all raises DeviceError. Results are
    cached per (arch, PTX text).
    """
    arch = arch or target_arch(ptx)
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise ValueError(f"arch must look like 'sm_90' or 'sm_90a', got {arch!r}")
    key = hashlib.sha256(f"{arch}\0{ptx}".encode()).hexdigest()
    cached = _module_cache.get(key)
    if cached is not None:
        return cached
    module = _assemble(ptx, arch, key, params)
    with _module_cache_lock:
        return _module_cache.setdefault(key, module)


def module_cache_size() -> int:
    """The number of modules in the :func:`compile_ptx` cache."""
    return len(_module_cache)


def clear_module_cache() -> None:
    """Empty the :func:`compile_ptx` cache (loaded modules stay alive while kernels refer to them)."""
    with _module_cache_lock:
        _module_cache.clear()


def _assemble(ptx: str, arch: str, key: str, params: Mapping[str, tuple[Param, ...]] | None) -> Module:
    """Assemble through ``picograd.target.ptxas`` with cuda.core's Linker (nvJitLink, else the driver's ``cuLink*``,
    which needs the context) and wrap the cubin for loading."""
    which = ptxas.linker_backend()
    if which is None:
        raise DeviceError("cannot assemble PTX: neither nvJitLink nor a CUDA driver was found (cuda.core's Linker)")
    if which == "driver":
        _get_runtime()
    try:
        result = ptxas.assemble(ptx, arch, backend="linker")
    except ptxas.NoAssembler as e:
        raise DeviceError(f"cannot assemble PTX: {e}") from None
    cc, _ = _import_cuda()
    object_code = cc.ObjectCode.from_cubin(result.cubin, name=f"picograd_{key[:12]}")
    backend = "nvJitLink" if which == "nvjitlink" else "driver"
    return Module(ptx, arch, key, object_code, result.info_log, backend, params)


# --------------------------------------------------------------------------------------------------------------------
# Device memory
# --------------------------------------------------------------------------------------------------------------------


def _shape(shape: Iterable[int] | int) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    if not all(isinstance(d, int | np.integer) and d >= 0 for d in dims):
        raise ShapeError(f"a buffer shape needs non-negative integer dimensions, got {dims}")
    return tuple(int(d) for d in dims)


class DeviceBuffer:
    """Device memory holding one tensor: ``shape`` (a tuple), ``dtype`` (a numpy dtype), ``nbytes``.

    Allocated on the runtime's stream (``Device.allocate`` -> ``cuMemAllocFromPoolAsync`` from the device's
    default memory pool) and released back to the pool, stream-ordered, when the object is garbage collected (or by
    :meth:`close`). The contents of a new buffer are undefined. Host copies happen only at the edges
    (:meth:`from_numpy`, :meth:`to_numpy`). An empty tensor still holds a 1-byte allocation, so that it has an
    address to pass to a kernel.
    """

    __slots__ = ("shape", "dtype", "nbytes", "buffer", "ptr", "__weakref__")

    def __init__(self, shape: Iterable[int] | int, dtype: Any) -> None:
        self.shape = _shape(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        rt = _get_runtime()
        with _cuda_errors(f"allocating {self.nbytes} bytes"):
            #: the ``cuda.core.Buffer`` (launch passes it as the device address)
            self.buffer = rt.device.allocate(max(self.nbytes, 1), stream=rt.stream)
        #: the device address, as an int
        self.ptr = int(self.buffer.handle)

    @classmethod
    def from_numpy(cls, array: np.ndarray | object, stream: Any = None) -> DeviceBuffer:
        """A new buffer holding a copy of ``array`` (host -> device, ``cuMemcpyAsync``).

        From pageable host memory the copy returns once the data is staged, so the array may change right after.
        """
        arr = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        buf = cls(arr.shape, arr.dtype)
        buf.copy_from(arr, stream)
        return buf

    @classmethod
    def mapped(cls, shape: Iterable[int] | int, dtype: Any) -> tuple[DeviceBuffer, np.ndarray]:
        """A buffer in page-locked host memory that kernels read and write through its address, and the numpy array
        over the same bytes (``cuMemAllocHost`` through cuda.core's ``LegacyPinnedMemoryResource``: with unified
        addressing, the host pointer is the device pointer). The host sees the device's writes without a copy once the
        stream is synchronized; meant for a few bytes that kernels rarely write (error flags). The buffer must
        outlive the array."""
        buf = cls.__new__(cls)
        buf.shape, buf.dtype = _shape(shape), np.dtype(dtype)
        buf.nbytes = math.prod(buf.shape) * buf.dtype.itemsize
        rt = _get_runtime()
        with _cuda_errors(f"allocating {buf.nbytes} bytes of page-locked host memory"):
            if rt.pinned is None:
                rt.pinned = rt.cc.LegacyPinnedMemoryResource()
            buf.buffer = rt.pinned.allocate(max(buf.nbytes, 1))
        buf.ptr = int(buf.buffer.handle)
        raw = (ctypes.c_char * max(buf.nbytes, 1)).from_address(buf.ptr)
        array = np.frombuffer(raw, np.uint8, buf.nbytes).view(buf.dtype).reshape(buf.shape)
        return buf, array

    def view(self, offset: int, shape: Iterable[int] | int, dtype: Any) -> DeviceBuffer:
        """A buffer of ``shape`` and ``dtype`` over this one's memory from byte ``offset`` (it keeps this one alive).
        Raises ``ValueError`` when it does not fit inside."""
        view = DeviceBuffer.__new__(DeviceBuffer)
        view.shape, view.dtype = _shape(shape), np.dtype(dtype)
        view.nbytes = math.prod(view.shape) * view.dtype.itemsize
        if offset < 0 or offset + view.nbytes > self.nbytes:
            raise ValueError(f"a view of {view.nbytes} bytes at byte {offset} does not fit in {self!r}")
        view.ptr = self.ptr + offset
        view.buffer = _get_runtime().cc.Buffer.from_handle(view.ptr, max(view.nbytes, 1), owner=self.buffer)
        return view

    def to_numpy(self, stream: Any = None) -> np.ndarray:
        """A host copy of the contents (device -> host); waits for the work queued before it on the stream. Raises
        the error of a deferred check that failed (:func:`defer_check`), and that of a failed computation for a
        buffer it wrote (:func:`mark_failed`)."""
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            rt = _get_runtime()
            s = stream or rt.stream
            with _cuda_errors("copying device -> host"):
                self.buffer.copy_to(rt.cc.Buffer.from_handle(out.ctypes.data, self.nbytes, owner=out), stream=s)
                s.sync()
        if _deferred:
            run_deferred_checks()
        if _failed:
            check_not_failed((self,))
        return out

    def copy_from(self, other: DeviceBuffer | np.ndarray, stream: Any = None) -> None:
        """Copy ``other`` (a DeviceBuffer, or a numpy array of the same shape and dtype) into this buffer, on the
        stream (device -> device, or host -> device)."""
        rt = _get_runtime()
        s = stream or rt.stream
        if isinstance(other, DeviceBuffer):
            self._check_like(other.shape, other.dtype)
            if self.nbytes:
                with _cuda_errors("copying device -> device"):
                    self.buffer.copy_from(other.buffer, stream=s)
            if _failed:  # a copy of a failed computation's value is one too
                error = _failed.get(other)
                if error is not None:
                    _failed[self] = error
                else:
                    _failed.pop(self, None)
            return
        arr = np.asarray(other, order="C")
        self._check_like(arr.shape, arr.dtype)
        if self.nbytes:
            with _cuda_errors("copying host -> device"):
                host = rt.cc.Buffer.from_handle(arr.ctypes.data, self.nbytes, owner=arr)
                # A buffer's size is its allocation's; a 1-byte allocation of an empty tensor never gets here.
                self.buffer.copy_from(host, stream=s)

    def fill_zero(self, stream: Any = None) -> None:
        """Set every byte to 0 (``cuMemsetD8Async``)."""
        if self.nbytes:
            rt = _get_runtime()
            with _cuda_errors("memset"):
                self.buffer.fill(0, stream=stream or rt.stream)

    def close(self) -> None:
        """Release the memory now (stream-ordered) rather than at garbage collection."""
        self.buffer.close()

    def _check_like(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if tuple(shape) != self.shape:
            raise ShapeError(f"cannot copy a {tuple(shape)} array into a {self.shape} device buffer")
        if np.dtype(dtype) != self.dtype:
            raise DTypeError(f"cannot copy {np.dtype(dtype)} data into a {self.dtype} device buffer")

    @property
    def size(self) -> int:
        """The number of elements."""
        return self.nbytes // self.dtype.itemsize if self.dtype.itemsize else 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"DeviceBuffer(shape={self.shape}, dtype={self.dtype}, ptr={self.ptr:#x})"


# --------------------------------------------------------------------------------------------------------------------
# Launches and graphs
# --------------------------------------------------------------------------------------------------------------------


def _dim3(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int | np.integer) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, int | np.integer) and d >= 1 for d in dims):
        raise ValueError(f"{what} must be 1 to 3 positive integers, got {value!r}")
    x, y, z = (tuple(int(d) for d in dims) + (1, 1))[:3]
    return x, y, z


def _check_config(kernel: Kernel, grid: tuple[int, int, int], block: tuple[int, int, int], shmem: int) -> None:
    if block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"kernel {kernel.name!r}: block {block} has more than {MAX_THREADS_PER_BLOCK} threads")
    if any(g > m for g, m in zip(grid, _MAX_GRID, strict=True)):
        raise ValueError(f"kernel {kernel.name!r}: grid {grid} exceeds the limits {_MAX_GRID}")
    if not 0 <= shmem <= MAX_SHARED_BYTES_OPTIN:
        raise ValueError(
            f"kernel {kernel.name!r}: {shmem} bytes of dynamic shared memory (at most {MAX_SHARED_BYTES_OPTIN})"
        )


class _Op:
    """One step ready to issue on a stream or a graph builder: a launch, a memset to zero or a copy."""

    __slots__ = ("kind", "kernel", "config", "args", "dst", "src", "label")

    def __init__(self, kind: str, label: str, kernel: Any = None, config: Any = None, args: tuple[Any, ...] = (),
                 dst: Any = None, src: Any = None) -> None:  # fmt: skip
        self.kind = kind
        self.label = label
        self.kernel = kernel
        self.config = config
        self.args = args
        self.dst = dst
        self.src = src

    def issue(self, cc: Any, target: Any) -> None:
        if self.kind == "launch":
            cc.launch(target, self.config, self.kernel, *self.args)
        elif self.kind == "driver":  # a launch with tensor maps (_DriverLaunch)
            self.kernel.issue(_get_runtime().driver, target)
        elif self.kind == "memset":
            self.dst.fill(0, stream=target)
        else:
            self.dst.copy_from(self.src, stream=target)


def _launch_op(kernel: Kernel, grid: Any, block: Any, args: Sequence[object], shmem: int) -> tuple[_Op, tuple]:
    """Check and convert one launch (before any CUDA call); returns the op and the DeviceBuffers it uses."""
    g, b = _dim3(grid, "grid"), _dim3(block, "block")
    shmem = int(shmem)
    _check_config(kernel, g, b, shmem)
    converted = kernel.convert_args(args)
    rt = _get_runtime()
    handle = kernel.handle
    kernel._allow_dynamic_shared(shmem)
    config = rt.configs.get((g, b, shmem))
    if config is None:
        config = rt.configs[g, b, shmem] = rt.cc.LaunchConfig(grid=g, block=b, shmem_size=shmem)
    keep = tuple(a for a in args if isinstance(a, DeviceBuffer))
    return _Op("launch", f"kernel {kernel.name!r}", kernel=handle, config=config, args=converted), keep


def launch(kernel: Kernel, grid: int | Sequence[int], block: int | Sequence[int], args: Sequence[object],
           shmem: int = 0, stream: Any = None) -> None:  # fmt: skip
    """Launch ``kernel`` on the stream: ``grid`` and ``block`` are 1 to 3 ints, ``shmem`` the dynamic shared memory
    in bytes (above 48 KiB the kernel is opted in first), ``args`` DeviceBuffers and scalars (see
    :meth:`Kernel.convert_args`). Asynchronous: it returns once the launch is queued (``cuLaunchKernelEx``)."""
    op, _ = _launch_op(kernel, grid, block, args, shmem)
    rt = _get_runtime()
    with _cuda_errors(f"launching {op.label}"):
        op.issue(rt.cc, stream or rt.stream)


def _capture(ops: Sequence[_Op], update: Any = None) -> Any:
    """Record ``ops`` into a CUDA graph by stream capture and return the executable graph (``cuda.core.Graph``).

    Capture uses the runtime's capture stream in relaxed mode (``cuStreamBeginCapture``, CU_STREAM_CAPTURE_MODE_RELAXED)
    and records nothing that runs. With ``update`` (an executable graph of the same topology) the new parameters are
    written into it with ``cuGraphExecUpdate`` (cheaper than a new ``cuGraphInstantiate``) and it is returned; if the
    driver refuses the update, a new graph is instantiated.
    """
    rt = _get_runtime()
    with _cuda_errors("capturing a CUDA graph"):
        builder = rt.capture_stream.create_graph_builder()
        builder.begin_building("relaxed")
        try:
            for op in ops:
                op.issue(rt.cc, builder)
        except BaseException:
            try:  # end the capture; a capture the error invalidated refuses to end, which is no news
                builder.end_building()
            except Exception:
                pass
            builder.close()
            raise
        builder.end_building()
        try:
            if update is not None:
                try:
                    update.update(builder)
                    return update
                except Exception as e:
                    if not type(e).__module__.startswith("cuda."):
                        raise
            return builder.complete()
        finally:
            builder.close()


class Graph:
    """A fixed sequence of launches, zero-fills and copies over fixed buffers, captured once into a CUDA graph and
    replayed with one ``cuGraphLaunch`` each time.

    Record with :meth:`launch`, :meth:`memset_zero` and :meth:`copy` (arguments are checked at once), then
    :meth:`replay` (the first replay captures and instantiates the graph). The graph keeps the buffers it uses
    alive: a captured graph holds raw device addresses, and cuda.core does not retain captured operands.
    """

    def __init__(self) -> None:
        self._ops: list[_Op] = []
        self._keep: list[DeviceBuffer] = []
        self._graph: Any = None

    def _add(self, op: _Op, keep: Iterable[DeviceBuffer]) -> None:
        if self._graph is not None:
            raise RuntimeError("this Graph is already captured; record a new Graph")
        self._ops.append(op)
        self._keep.extend(keep)

    def launch(self, kernel: Kernel, grid: int | Sequence[int], block: int | Sequence[int], args: Sequence[object],
               shmem: int = 0) -> None:  # fmt: skip
        """Record a kernel launch (as :func:`launch`)."""
        self._add(*_launch_op(kernel, grid, block, args, shmem))

    def memset_zero(self, buf: DeviceBuffer) -> None:
        """Record zeroing ``buf`` (a memset node)."""
        if buf.nbytes:
            self._add(_Op("memset", "memset", dst=buf.buffer), (buf,))

    def copy(self, dst: DeviceBuffer, src: DeviceBuffer) -> None:
        """Record a device-to-device copy (a memcpy node); shapes and dtypes must match."""
        dst._check_like(src.shape, src.dtype)
        if dst.nbytes:
            self._add(_Op("copy", "copy", dst=dst.buffer, src=src.buffer), (dst, src))

    def replay(self, stream: Any = None) -> None:
        """Launch the graph on the stream (capturing it first if this is the first replay)."""
        rt = _get_runtime()
        if self._graph is None:
            self._graph = _capture(self._ops)
        with _cuda_errors("launching a CUDA graph"):
            self._graph.launch(stream or rt.stream)

    @staticmethod
    def synchronize() -> None:
        """Wait for the stream (as :func:`synchronize`)."""
        synchronize()

    def __len__(self) -> int:
        return len(self._ops)


# --------------------------------------------------------------------------------------------------------------------
# Executable: a launch list over argument slots, replayed as a CUDA graph
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferSpec:
    """The shape and numpy dtype of one input, output or intermediate buffer."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __init__(self, shape: Iterable[int] | int, dtype: Any) -> None:
        object.__setattr__(self, "shape", _shape(shape))
        object.__setattr__(self, "dtype", np.dtype(dtype))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class Input:
    """Argument slot: the executable's ``index``-th input buffer."""

    index: int


@dataclass(frozen=True)
class Output:
    """Argument slot: the ``index``-th output buffer."""

    index: int


@dataclass(frozen=True)
class Temp:
    """Argument slot: the ``index``-th intermediate buffer (owned by the executable, allocated once)."""

    index: int


Slot = Input | Output | Temp


#: ``CUtensorMapDataType`` member and element bytes of each tensor-map element type.
TENSOR_MAP_TYPES: dict[str, tuple[str, int]] = {
    "bf16": ("CU_TENSOR_MAP_DATA_TYPE_BFLOAT16", 2),
    "f16": ("CU_TENSOR_MAP_DATA_TYPE_FLOAT16", 2),
    "f32": ("CU_TENSOR_MAP_DATA_TYPE_FLOAT32", 4),
}
TENSOR_MAP_BYTES = 128  # sizeof(CUtensorMap): a kernel parameter ``.param .align 64 .b8 name[128]``


@dataclass(frozen=True)
class TensorMap:
    """Launch argument: a TMA tensor map of the buffer in ``slot``, encoded when the buffers are bound
    (``cuTensorMapEncodeTiled``, CUDA driver API, "Tensor Map Object Management") and passed by value to a
    ``.param .align 64 .b8 name[128]`` parameter. The tensor starts ``offset`` bytes into the buffer; ``dtype`` is
    ``bf16``/``f16``/``f32``; ``shape`` and ``box`` are in elements, innermost dim first; ``strides`` the byte
    strides of the outer dims (one fewer than ``shape``); ``swizzle`` 0, 32, 64 or 128 bytes. Elements outside the
    tensor read as zero. :meth:`check` raises ``ValueError`` for what the driver would reject."""

    slot: Slot
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    box: tuple[int, ...]
    swizzle: int = 128
    offset: int = 0

    def check(self, buffer_bytes: int | None = None) -> None:
        """The rules of ``cuTensorMapEncodeTiled`` (rank 1..5, 16-byte aligned address and strides, boxes of
        1..256 elements, a box row no wider than the swizzle), and that the tensor lies inside its buffer."""
        if self.dtype not in TENSOR_MAP_TYPES:
            raise ValueError(f"tensor map of {self.dtype}: expected one of {', '.join(TENSOR_MAP_TYPES)}")
        esize = TENSOR_MAP_TYPES[self.dtype][1]
        rank = len(self.shape)
        if not 1 <= rank <= 5 or len(self.box) != rank or len(self.strides) != rank - 1:
            raise ValueError(f"tensor map: shape {self.shape}, box {self.box}, strides {self.strides} do not agree")
        if self.offset % 16 or any(st % 16 or not 0 < st < 2**40 for st in self.strides):
            raise ValueError(f"tensor map: offset {self.offset} and strides {self.strides} must be multiples of 16")
        if any(not 1 <= d <= 2**32 for d in self.shape) or any(not 1 <= b <= 256 for b in self.box):
            raise ValueError(f"tensor map: shape {self.shape} or box {self.box} out of range (box dims 1..256)")
        if self.swizzle not in (0, 32, 64, 128) or (self.swizzle and self.box[0] * esize > self.swizzle):
            raise ValueError(f"tensor map: a box row of {self.box[0] * esize} bytes with swizzle {self.swizzle}")
        if buffer_bytes is not None:
            outer = zip(self.shape[1:], self.strides, strict=True)
            extent = self.shape[0] * esize + sum((d - 1) * st for d, st in outer)
            if self.offset + extent > buffer_bytes:
                raise ValueError(f"tensor map reaches byte {self.offset + extent} of a {buffer_bytes}-byte buffer")


def encode_tensor_map(driver: Any, address: int, tmap: TensorMap) -> Any:
    """``cuTensorMapEncodeTiled`` of ``tmap`` over the device address ``address`` (the buffer's start; the
    offset is added here): the ``CUtensorMap``, 128 bytes. L2 promotion of 256 bytes, zeros outside the tensor
    (``CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE``), element strides 1. ``driver`` is ``cuda.bindings.driver``, whose
    list arguments must hold its ``cuuint64_t``/``cuuint32_t`` wrappers (plain ints raise ``TypeError``)."""
    tmap.check()
    swizzle = {0: "NONE", 32: "32B", 64: "64B", 128: "128B"}[tmap.swizzle]
    err, encoded = driver.cuTensorMapEncodeTiled(
        getattr(driver.CUtensorMapDataType, TENSOR_MAP_TYPES[tmap.dtype][0]),
        len(tmap.shape),
        address + tmap.offset,
        [driver.cuuint64_t(d) for d in tmap.shape],  # cuda-python takes its integer wrappers in these lists
        [driver.cuuint64_t(st) for st in tmap.strides],
        [driver.cuuint32_t(b) for b in tmap.box],
        [driver.cuuint32_t(1)] * len(tmap.shape),
        driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        getattr(driver.CUtensorMapSwizzle, f"CU_TENSOR_MAP_SWIZZLE_{swizzle}"),
        driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
    )
    if err != driver.CUresult.CUDA_SUCCESS:
        raise DeviceError(f"cuTensorMapEncodeTiled failed ({getattr(err, 'name', err)}) for {tmap}")
    return encoded


class _DriverLaunch:
    """A launch whose arguments cuda.core cannot pack (a tensor map passed by value): ``cuLaunchKernel`` with the
    parameter array built here, each parameter's bytes in a ctypes buffer (the driver copies them at the call)."""

    def __init__(self, handle: Any, config: tuple[tuple[int, int, int], tuple[int, int, int], int],
                 values: Sequence[Any]) -> None:  # fmt: skip
        import ctypes

        self.handle, self.config = handle, config
        self.storage: list[Any] = []
        for v in values:
            if isinstance(v, bytes):
                self.storage.append(ctypes.create_string_buffer(v, len(v)))
            elif isinstance(v, np.generic):
                self.storage.append(ctypes.create_string_buffer(v.tobytes(), v.nbytes))
            else:  # a device buffer (cuda.core Buffer): its address
                self.storage.append(ctypes.c_uint64(int(v.handle)))
        self.params = (ctypes.c_void_p * max(1, len(self.storage)))(*[ctypes.addressof(x) for x in self.storage])

    def issue(self, driver: Any, stream: Any) -> None:
        (gx, gy, gz), (bx, by, bz), shmem = self.config
        handle = self.handle.handle
        function = handle if isinstance(handle, driver.CUfunction) else driver.CUfunction(int(handle))
        stream_handle = getattr(stream, "stream", stream).handle  # a cuda.core Stream, or a GraphBuilder's
        (err,) = driver.cuLaunchKernel(function, gx, gy, gz, bx, by, bz, shmem, stream_handle, self._address(), 0)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"cuLaunchKernel failed: {getattr(err, 'name', err)}")

    def _address(self) -> int:
        import ctypes

        return ctypes.addressof(self.params)


@dataclass(frozen=True)
class View:
    """Launch argument: the address ``offset`` bytes into the buffer of slot ``base`` (a view of the arena of
    intermediates, passed to a kernel that several launches share; see ``pg-outline-kernels``)."""

    base: Slot
    offset: int


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a launch list.

    ``args`` matches the kernel's PTX parameters one for one: a :data:`Slot` for a pointer parameter, a
    :class:`TensorMap` for a tensor-map parameter (``.param .align 64 .b8 [128]``), a scalar (Python or numpy,
    converted to the parameter's type once, at construction) for a value parameter. Scalars are
    baked into the graph: a value that changes between calls (a learning rate) must be a 0-d :class:`Input`.
    """

    kernel: str
    grid: int | tuple[int, ...]
    block: int | tuple[int, ...]
    args: tuple[Slot | View | TensorMap | int | float | np.generic, ...]
    shmem: int = 0


@dataclass(frozen=True)
class Memset:
    """Zero the bytes of a buffer (for kernels that accumulate into their output, e.g. with atomics)."""

    dst: Slot


@dataclass(frozen=True)
class Copy:
    """Copy one buffer into another of the same shape and dtype (e.g. a function that returns an input)."""

    dst: Slot
    src: Slot


Step = Launch | Memset | Copy


@dataclass
class _Stats:
    calls: int = 0
    captures: int = 0  # new graphs instantiated (cuGraphInstantiate)
    updates: int = 0  # graphs re-pointed at new buffers (cuGraphExecUpdate)
    eager: int = 0  # calls run as plain launches (use_graph=False, or a buffer set seen fewer than capture_after times)
    graphs: int = 0  # graphs held now


@dataclass
class _Prepared:
    """What the first call sets up: the loaded kernels and configs, the intermediates."""

    temps: tuple[DeviceBuffer, ...]
    templates: list[tuple[str, Any, Any, tuple[Any, ...], Slot | None, Slot | None]] = field(default_factory=list)


class Executable:
    """A compiled function on the GPU: a module, a launch list, and the shapes of its buffers.

    ``steps`` is a sequence of :class:`Launch`, :class:`Memset` and :class:`Copy`, run in order on one stream; they
    refer to buffers through slots: ``Input(i)`` (the i-th call argument), ``Output(i)`` (the i-th result) and
    ``Temp(i)`` (an intermediate, allocated once on the first call and owned by the executable). ``inputs``,
    ``outputs`` and ``temps`` give each slot's :class:`BufferSpec`. The list is checked against the PTX (kernel
    names, argument counts, pointer vs value parameters, launch limits) when the executable is built, which needs no
    GPU. For example, ``out = (a + b) * c`` over ``n`` float32 elements with kernels ``add`` and ``mul`` of
    signature ``(.u64 x, .u64 y, .u64 out, .u32 n)``::

        spec = BufferSpec((n,), np.float32)
        exe = Executable(ptx_text, [
            Launch("add", grid=(n + 255) // 256, block=256, args=(Input(0), Input(1), Temp(0), n)),
            Launch("mul", grid=(n + 255) // 256, block=256, args=(Temp(0), Input(2), Output(0), n)),
        ], inputs=[spec, spec, spec], outputs=[spec], temps=[spec])
        (out,) = exe(a, b, c)          # DeviceBuffers in, DeviceBuffers out

    A call ``exe(*inputs, out=None)`` checks the inputs' shapes and dtypes, allocates fresh output buffers (or writes
    into ``out``, which may be the inputs themselves for an in-place update) and replays a CUDA graph; it returns the
    outputs without waiting for the GPU.

    Rebinding buffers: a captured graph holds raw device addresses. Graphs are cached under the tuple of the call's
    input and output addresses (an LRU of ``max_graphs``): an address set seen before replays its graph as is. A new
    set is captured again (host work of the order of a plain launch per step) and, when the cache is full, written
    into the least recently used graph by ``cuGraphExecUpdate`` (same topology, new kernel parameters) rather than
    instantiating another. This keeps the common cases to one ``cuGraphLaunch`` per call: the same buffers every call,
    and the ping-pong of a training step whose updated parameters (fresh outputs) become the next call's inputs while
    the old ones return to the memory pool and are handed out again. For a step called in a loop the surest way is
    stable buffers: ``out=`` the inputs being replaced (parameters, optimizer state), so that every call hits.

    ``capture_after=k`` captures a buffer set only at its k-th call (default 1: at once) and runs the earlier calls
    as plain launches, which is cheaper for buffer sets that never come back (eager mode: a capture costs about as
    much host time as the plain launches, plus the update). ``use_graph=False`` always issues plain launches (for
    debugging and benchmarks). A cheaper miss would patch only the kernel nodes whose buffers moved
    (cuda.core 1.2's ``graph[node].update(...)``, ``cuGraphExecKernelNodeSetParams``); that is left for when misses
    show up in profiles. ``stats`` counts calls, captures, updates and plain-launch calls.

    ``params`` (kernel name -> parameters) is what a compiler knows of its kernels' signatures (``compile_ptx``);
    without it they are read off the PTX text.
    """

    def __init__(self, module: Module | str, steps: Sequence[Step], inputs: Sequence[BufferSpec],
                 outputs: Sequence[BufferSpec], temps: Sequence[BufferSpec] = (), *, use_graph: bool = True,
                 max_graphs: int = 4, capture_after: int = 1, name: str = "executable",
                 params: Mapping[str, tuple[Param, ...]] | None = None) -> None:  # fmt: skip
        self.module = module if isinstance(module, Module) else compile_ptx(module, params=params)
        self.steps = tuple(steps)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.temps = tuple(temps)
        self.use_graph = use_graph
        self.max_graphs = max(1, int(max_graphs))
        self.name = name
        self.stats = _Stats()
        self._graphs: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._seen: OrderedDict[tuple[int, ...], int] = OrderedDict()  # uncaptured buffer sets -> calls so far
        self.capture_after = max(1, int(capture_after))
        self._prepared: _Prepared | None = None
        self._checked = [self._check_step(i, step) for i, step in enumerate(self.steps)]

    def _spec(self, slot: object) -> BufferSpec:
        specs = {Input: self.inputs, Output: self.outputs, Temp: self.temps}.get(type(slot))
        if specs is None:
            raise TypeError(f"{self.name}: {slot!r} is not a slot (Input/Output/Temp)")
        index = slot.index  # type: ignore[attr-defined]
        if not 0 <= index < len(specs):
            raise IndexError(f"{self.name}: {slot!r} is out of range ({len(specs)} {type(slot).__name__} buffers)")
        return specs[index]

    def _check_step(self, i: int, step: Step) -> Any:
        """Validate one step; for a launch, return (kernel, grid, block, args with scalars converted)."""
        where = f"{self.name}, step {i}"
        if isinstance(step, Memset):
            self._spec(step.dst)
            return None
        if isinstance(step, Copy):
            dst, src = self._spec(step.dst), self._spec(step.src)
            if dst != src:
                raise ShapeError(f"{where}: copy from {src} to {dst}: shapes or dtypes differ")
            return None
        if not isinstance(step, Launch):
            raise TypeError(f"{where}: expected Launch, Memset or Copy, got {step!r}")
        try:
            kernel = self.module.kernel(step.kernel)
        except KeyError as e:
            raise ValueError(f"{where}: {e.args[0]}") from None
        grid, block = _dim3(step.grid, "grid"), _dim3(step.block, "block")
        _check_config(kernel, grid, block, step.shmem)
        params = kernel.params
        if params is not None and len(step.args) != len(params):
            raise TypeError(f"{where}: kernel {kernel.name!r} takes {len(params)} arguments, got {len(step.args)}")
        args: list[Any] = []
        for j, a in enumerate(step.args):
            p = params[j] if params is not None else None
            if isinstance(a, TensorMap):
                try:
                    a.check(self._spec(a.slot).nbytes)
                except ValueError as e:
                    raise ValueError(f"{where}: argument {j}: {e}") from None
                if p is not None and (p.ptx_type is not None or p.nbytes != TENSOR_MAP_BYTES):
                    raise TypeError(f"{where}: a tensor map goes to parameter {p.name!r}, not a .b8[128] parameter")
                args.append(a)
            elif isinstance(a, Input | Output | Temp | View):
                spec = self._spec(a.base if isinstance(a, View) else a)
                if isinstance(a, View) and not 0 <= a.offset < max(spec.nbytes, 1):
                    raise ValueError(f"{where}: {a!r} is outside its buffer of {spec.nbytes} bytes")
                if p is not None and not p.is_pointer_sized:
                    raise TypeError(f"{where}: {a!r} goes to parameter {p.name!r} of type .{p.ptx_type}, not a pointer")
                args.append(a)
            elif p is not None:
                try:
                    args.append(p.convert(a))
                except (TypeError, OverflowError) as e:
                    raise type(e)(f"{where}: {e}") from None
            elif isinstance(a, np.generic):
                args.append(a)
            else:
                raise TypeError(f"{where}: argument {j} must be a slot or a numpy scalar, not {type(a).__name__}")
        return kernel, grid, block, tuple(args)

    def _prepare(self) -> _Prepared:
        """First call: load the kernels, opt in to large shared memory, allocate the intermediates."""
        rt = _get_runtime()
        prepared = _Prepared(temps=tuple(DeviceBuffer(s.shape, s.dtype) for s in self.temps))
        for step, checked in zip(self.steps, self._checked, strict=True):
            if isinstance(step, Launch):
                kernel, grid, block, args = checked
                handle = kernel.handle
                kernel._allow_dynamic_shared(step.shmem)
                if any(isinstance(a, TensorMap) for a in args):  # launched by _DriverLaunch: sizes as they are
                    config = (grid, block, step.shmem)
                else:
                    config = rt.cc.LaunchConfig(grid=grid, block=block, shmem_size=step.shmem)
                prepared.templates.append(("launch", handle, config, args, None, None))
            elif isinstance(step, Memset):
                prepared.templates.append(("memset", None, None, (), step.dst, None))
            else:
                prepared.templates.append(("copy", None, None, (), step.dst, step.src))
        return prepared

    def _ops(self, prepared: _Prepared, inputs: Sequence[DeviceBuffer], outputs: Sequence[DeviceBuffer]) -> list[_Op]:
        """The steps with every slot replaced by its buffer's address."""
        buffers = {Input: inputs, Output: outputs, Temp: prepared.temps}

        def resolve(slot: Any) -> DeviceBuffer:
            return buffers[type(slot)][slot.index]

        ops = []
        for i, (kind, handle, config, args, dst, src) in enumerate(prepared.templates):
            label = f"{self.name}, step {i}"
            if kind == "launch" and any(isinstance(a, TensorMap) for a in args):
                values = tuple(self._argument(a, resolve) for a in args)
                ops.append(_Op("driver", label, kernel=_DriverLaunch(handle, config, values)))
            elif kind == "launch":
                values = tuple(
                    resolve(a).buffer
                    if isinstance(a, Input | Output | Temp)
                    else np.uint64(resolve(a.base).ptr + a.offset)
                    if isinstance(a, View)
                    else a
                    for a in args
                )
                ops.append(_Op("launch", label, kernel=handle, config=config, args=values))
            elif resolve(dst).nbytes:
                ops.append(_Op(kind, label, dst=resolve(dst).buffer, src=resolve(src).buffer if src else None))
        return ops

    @staticmethod
    def _argument(a: Any, resolve: Callable[[Any], DeviceBuffer]) -> Any:
        """A launch argument with its buffer bound: a tensor map's 128 encoded bytes, a buffer, or the scalar."""
        if isinstance(a, TensorMap):
            import ctypes

            encoded = encode_tensor_map(_get_runtime().driver, resolve(a.slot).ptr, a)
            return ctypes.string_at(encoded.getPtr(), TENSOR_MAP_BYTES)
        if isinstance(a, View):
            return np.uint64(resolve(a.base).ptr + a.offset)
        return resolve(a).buffer if isinstance(a, Input | Output | Temp) else a

    def _bind(self, what: str, buffers: Sequence[object], specs: tuple[BufferSpec, ...], key: list[int]) -> None:
        """Check the buffers against their specs and append their addresses to ``key`` (the hot path: one pass,
        identity tests first; the detailed message is built only on a mismatch)."""
        if len(buffers) != len(specs):
            raise TypeError(f"{self.name} takes {len(specs)} {what} buffers, got {len(buffers)}")
        for buf, spec in zip(buffers, specs):  # noqa: B905 - lengths checked above
            if (
                type(buf) is not DeviceBuffer
                or buf.shape != spec.shape
                or (buf.dtype is not spec.dtype and buf.dtype != spec.dtype)
            ):
                self._mismatch(what, buffers, specs)
            key.append(buf.ptr)  # type: ignore[attr-defined]

    def _mismatch(self, what: str, buffers: Sequence[object], specs: tuple[BufferSpec, ...]) -> None:
        for i, (buf, spec) in enumerate(zip(buffers, specs, strict=True)):
            if not isinstance(buf, DeviceBuffer):
                raise TypeError(f"{self.name}: {what} {i} must be a DeviceBuffer, not {type(buf).__name__}")
            if buf.shape != spec.shape:
                raise ShapeError(f"{self.name}: {what} {i} has shape {buf.shape}, expected {spec.shape}")
            if buf.dtype != spec.dtype:
                raise DTypeError(f"{self.name}: {what} {i} has dtype {buf.dtype}, expected {spec.dtype}")

    def __call__(self, *inputs: DeviceBuffer, out: Sequence[DeviceBuffer] | None = None) -> tuple[DeviceBuffer, ...]:
        """Run the launch list on ``inputs``; return the outputs (fresh buffers, or ``out``)."""
        rt = _get_runtime()
        key: list[int] = []
        self._bind("input", inputs, self.inputs, key)
        if out is None:
            outputs = tuple([DeviceBuffer(s.shape, s.dtype) for s in self.outputs])
            key.extend([b.ptr for b in outputs])
        else:
            outputs = tuple(out)
            self._bind("output", outputs, self.outputs, key)
        if _failed:  # a value computed by failed work must not flow on; a buffer written anew holds a good one
            check_not_failed(inputs)
            for b in outputs:
                _failed.pop(b, None)
        prepared = self._prepared
        if prepared is None:
            prepared = self._prepared = self._prepare()
        self.stats.calls += 1
        graph_key = tuple(key)
        graph = self._graphs.get(graph_key) if self.use_graph else None
        if graph is not None:
            self._graphs.move_to_end(graph_key)
        else:
            ops = self._ops(prepared, inputs, outputs)
            seen = self._seen.pop(graph_key, 0) + 1
            if not self.use_graph or seen < self.capture_after:
                if self.use_graph:
                    self._seen[graph_key] = seen
                    while len(self._seen) > 64:
                        self._seen.popitem(last=False)
                self.stats.eager += 1
                with _cuda_errors(f"running {self.name}"):
                    for op in ops:
                        op.issue(rt.cc, rt.stream)
                return outputs
            graph = self._rebind(graph_key, ops)
        try:
            graph.launch(rt.stream)
        except Exception as e:
            with _cuda_errors(f"launching the graph of {self.name}"):
                raise e
        return outputs

    def _rebind(self, key: tuple[int, ...], ops: list[_Op]) -> Any:
        """A graph for a new set of buffer addresses: a new one while the cache has room, else the least recently
        used one, updated in place."""
        if len(self._graphs) < self.max_graphs:
            graph = _capture(ops)
            self.stats.captures += 1
        else:
            _, old = self._graphs.popitem(last=False)
            graph = _capture(ops, update=old)
            if graph is old:
                self.stats.updates += 1
            else:
                self.stats.captures += 1
        self._graphs[key] = graph
        self.stats.graphs = len(self._graphs)
        return graph


# --------------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------------


def time_ms(fn: Callable[[], object], warmup: int = 3, iters: int = 20, stream: Any = None) -> float:
    """The median time of ``fn()`` in milliseconds, measured between CUDA events recorded on the stream around each
    call (``cuEventRecord`` / ``cuEventElapsedTime``; cuda.core: ``Stream.record(options=EventOptions(
    timing_enabled=True))``, and ``end - start`` of two events is milliseconds).

    The span of one call covers what the GPU did between the two events, including any time it sat idle waiting for
    the host to queue the work, so host launch overhead shows when the kernels are short.
    """
    rt = _get_runtime()
    s = stream or rt.stream
    for _ in range(warmup):
        fn()
    pairs = []
    with _cuda_errors("timing"):
        s.sync()
        for _ in range(max(1, iters)):
            start = s.record(options=rt.timing)
            fn()
            pairs.append((start, s.record(options=rt.timing)))
        s.sync()
        return float(statistics.median(end - start for start, end in pairs))


# --------------------------------------------------------------------------------------------------------------------
# The "cuda" entry of the device registry (picograd.runtime.device)
# --------------------------------------------------------------------------------------------------------------------


class CudaRuntime:
    """The runtime of ``pg.device("cuda:i")``: buffers are :class:`DeviceBuffer` objects. It reaches this module's
    functions at call time (``available``, ``DeviceBuffer``), so tests can stand fakes in for them.

    Only GPU 0 runs work so far (one context, one stream): ``cuda:1`` is refused with the number of GPUs there are,
    or, where that GPU exists, with the statement that the runtime uses GPU 0 only."""

    type = "cuda"

    def unavailable(self, index: int) -> str | None:
        if index != 0:
            count = device_count()
            if index >= count:
                return f"no such GPU: this machine has {count} CUDA GPU{'s' if count != 1 else ''}"
            return f"picograd's CUDA runtime runs on GPU 0 only so far (this machine has {count} GPUs)"
        if available():
            return None
        try:
            device()
        except DeviceError as e:
            return str(e)
        return None  # available() and device() disagree only if the GPU appeared in between

    def holds(self, buffer: Any) -> bool:
        return isinstance(buffer, DeviceBuffer)

    def index_of(self, buffer: Any) -> int:
        return 0

    def upload(self, array: np.ndarray, index: int) -> Any:
        return DeviceBuffer.from_numpy(array)

    def download(self, buffer: Any) -> np.ndarray:
        return buffer.to_numpy()

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype, index: int) -> Any:
        buf = DeviceBuffer(shape, dtype)
        buf.fill_zero()
        return buf
