"""A stand-in for the CUDA runtime and ``compile_for_cuda``, for testing the frontend's device plumbing on machines
without a GPU (tests only).

``FakeDeviceBuffer`` keeps a tensor in host memory behind the ``picograd.runtime.cuda.DeviceBuffer`` interface and
counts the copies and allocations; new buffers hold garbage (NaN or 0x5A bytes), as device memory would.
``fake_compile_for_cuda`` compiles the ``simplify``-stage function with the numpy executor behind the
``Executable`` interface: it checks its buffers as the real one does, refuses outputs that alias an input or each
other, and counts graph-cache misses under the tuple of buffer addresses, as the real one captures graphs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType

from picograd.dialects import pg
from picograd.dialects.pg_numpy import numpy_dtype
from picograd.runtime.cuda import BufferSpec
from picograd.runtime.numpy_executor import compile_func


@dataclass
class Counters:
    """What the fake runtime did."""

    allocations: int = 0
    h2d: int = 0  # host -> device copies
    d2h: int = 0  # device -> host copies
    d2d: int = 0  # device -> device copies
    compiles: int = 0
    calls: int = 0
    modules: list[ModuleOp] = field(default_factory=list)

    def snapshot(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("allocations", "h2d", "d2h", "d2d", "compiles", "calls")}


COUNTERS = Counters()


class FakeDeviceBuffer:
    """Host memory behind the ``DeviceBuffer`` interface (shape, dtype, nbytes, ptr, copies)."""

    __slots__ = ("shape", "dtype", "nbytes", "array", "ptr", "__weakref__")

    def __init__(self, shape: Iterable[int] | int, dtype: Any) -> None:
        dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        self.shape = tuple(int(d) for d in dims)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind == "f":
            self.array = np.full(self.shape, np.nan, self.dtype)
        else:
            self.array = np.frombuffer(b"\x5a" * (int(np.prod(self.shape)) * self.dtype.itemsize), self.dtype)
            self.array = self.array.reshape(self.shape).copy()
        self.nbytes = self.array.nbytes
        self.ptr = id(self)  # CPython reuses the ids of freed objects, much as a memory pool reuses addresses
        COUNTERS.allocations += 1

    @classmethod
    def from_numpy(cls, array: Any, stream: Any = None) -> FakeDeviceBuffer:
        arr = np.asarray(array, order="C")
        buf = cls(arr.shape, arr.dtype)
        buf.array[...] = arr
        COUNTERS.h2d += 1
        return buf

    def to_numpy(self, stream: Any = None) -> np.ndarray:
        COUNTERS.d2h += 1
        return self.array.copy()

    def copy_from(self, other: Any, stream: Any = None) -> None:
        if isinstance(other, FakeDeviceBuffer):
            assert other.shape == self.shape and other.dtype == self.dtype, (other, self)
            self.array[...] = other.array
            COUNTERS.d2d += 1
        else:
            arr = np.asarray(other)
            assert arr.shape == self.shape and arr.dtype == self.dtype, (arr.shape, arr.dtype, self)
            self.array[...] = arr
            COUNTERS.h2d += 1

    def fill_zero(self, stream: Any = None) -> None:
        self.array[...] = 0

    def __repr__(self) -> str:
        return f"FakeDeviceBuffer(shape={self.shape}, dtype={self.dtype}, ptr={self.ptr:#x})"


@dataclass
class FakeStats:
    calls: int = 0
    captures: int = 0
    updates: int = 0
    eager: int = 0
    graphs: int = 0


class FakeExecutable:
    """The numpy executor behind the ``Executable`` call interface."""

    def __init__(self, fn: func.FuncOp) -> None:
        self.function = compile_func(fn)
        self.inputs = tuple(_spec(t) for t in fn.function_type.inputs.data)
        self.outputs = tuple(_spec(t) for t in fn.function_type.outputs.data)
        self.steps: tuple[Any, ...] = ()
        self.stats = FakeStats()
        self.max_graphs = 4
        self.capture_after = 1
        self._graphs: dict[tuple[int, ...], None] = {}

    def __call__(self, *inputs: Any, out: Sequence[Any] | None = None, undo: Any = None) -> tuple[Any, ...]:
        assert len(inputs) == len(self.inputs), (len(inputs), len(self.inputs))
        for i, (buf, spec) in enumerate(zip(inputs, self.inputs, strict=True)):
            assert type(buf) is FakeDeviceBuffer, f"input {i} is a {type(buf).__name__}"
            assert buf.shape == spec.shape and buf.dtype == spec.dtype, (i, buf, spec)
        if out is None:
            out = [FakeDeviceBuffer(s.shape, s.dtype) for s in self.outputs]
        outs = tuple(out)
        assert len(outs) == len(self.outputs)
        for j, (buf, spec) in enumerate(zip(outs, self.outputs, strict=True)):
            assert type(buf) is FakeDeviceBuffer, f"output {j} is a {type(buf).__name__}"
            assert buf.shape == spec.shape and buf.dtype == spec.dtype, (j, buf, spec)
        ids = [id(b) for b in outs]
        assert len(set(ids)) == len(ids), "two outputs share a buffer"
        assert not set(ids) & {id(b) for b in inputs}, "an output buffer is also an input"
        results = self.function(*[b.array.copy() for b in inputs])
        for buf, value in zip(outs, results, strict=True):
            buf.array[...] = value
        key = tuple(b.ptr for b in (*inputs, *outs))
        self.stats.calls += 1
        COUNTERS.calls += 1
        if key not in self._graphs:
            self.stats.captures += 1
            self._graphs[key] = None
            while len(self._graphs) > self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            self.stats.graphs = len(self._graphs)
        return outs


def _spec(t: Any) -> BufferSpec:
    assert isinstance(t, TensorType)
    return BufferSpec(tuple(t.get_shape()), numpy_dtype(t.element_type))


class FakeProgram:
    def __init__(self, fn: func.FuncOp) -> None:
        self.fn = fn

    def executable(self, **options: Any) -> FakeExecutable:
        exe = FakeExecutable(self.fn)
        for name, value in options.items():
            assert name in ("max_graphs", "capture_after", "use_graph", "name"), name
            setattr(exe, name, value)
        return exe


def fake_compile_for_cuda(module: ModuleOp, matmul_schedule: str = "auto", arch: str = "sm_90") -> FakeProgram:
    """Check that ``module`` is what ``compile_for_cuda`` takes (one ``func.func`` at the simplify stage: no
    ``pg.grad``, no optimizer op; ``arch`` one of its targets) and compile it with the numpy executor."""
    assert arch in ("sm_90", "sm_90a"), arch
    ops = list(module.body.block.ops)
    assert len(ops) == 1 and isinstance(ops[0], func.FuncOp), ops
    for op in ops[0].walk():
        assert not isinstance(op, pg.GradOp | pg.OptimizerOp), op.name
    COUNTERS.compiles += 1
    COUNTERS.modules.append(module)
    return FakeProgram(ops[0])
