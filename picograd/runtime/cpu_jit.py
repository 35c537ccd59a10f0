"""The JIT CPU runtime: runs a loop-stage function with its loop nests compiled to machine code by LLVM.

``CpuFunction(buffered, looped)`` takes one function at two points of the pipeline: after ``pg-bufferize``
(``buffered``: ``kernel.launch`` ops over the buffers of the memory plan) and after ``pg-to-loops`` (``looped``: the
same function with each launch replaced by its ``scf.parallel`` nests, tagged ``pg.kernel``/``pg.kind``). It
reads the top-level ops of both once:

- **buffers**: the function's arguments (inputs, then the output buffers marked ``pg.result``), the byte arena of
  the memory plan and any scratch buffer (``memref.alloc``: allocated once, 64-byte aligned, kept for every call),
  views of them (``memref.view`` at constant byte offsets) and module globals (``memref.get_global``: constants, and
  the error flags of index checks). Each buffer has a *slot*: its address in one table that the compiled nests read
  (``picograd.target.llvm_ir``), and its numpy array;
- **steps**, in program order: a kernel whose ``pg.kind`` is ``matmul`` runs its launch's body with numpy, the
  product going straight into its output buffer (``np.matmul(..., out=)``: BLAS, with the operands' transposes as
  strides); every other kernel's nests are printed as LLVM IR, all in one module, compiled once at ``-O3`` for the
  host CPU (``llvmlite``: MCJIT, the host's vector extensions) and called through ``ctypes``; a kernel whose nests
  the emitter cannot print (16-bit floats, an op without LLVM form) runs its launch with numpy instead (per kernel,
  listed in ``fallbacks``; ``PICOGRAD_CPU_JIT_DEBUG=1`` prints them); ``memref.copy`` copies.

**Threads** (at ``get_num_threads() > 1``): the plan of parallel regions is made once, when the function is built.
A run of consecutive nests holding a nest with at least ``PARALLEL_WORK`` loop iterations becomes one *region*, a
job of the native thread pool (``cpu_pool``): such nests are cut along their first dimension into
``CHUNKS_PER_THREAD`` pieces per thread, the nests between them form one piece (a sequence), and each entry starts
when the one before it is done; a run without such a nest stays one sequence call on the calling thread. A region
costs one ``ctypes`` call and a few atomic operations (about a microsecond; a Python queue, event and GIL hand-off
per region cost 20 to 40). BLAS is single-threaded during a threaded call (``threadpoolctl``) and runs on the pool:
a product of views of its launch's operands is a native gemm entry (``cpu_blas``: ``cblas_?gemm`` called from LLVM
IR, cut between the threads from ``SPLIT_MATMUL_FLOPS``), others ``np.matmul`` blocks as Python callbacks; an
attention without mask or dropout runs as native slices (``native_attention``), others as ``cpu_attention``'s
chunks. Consecutive native steps (regions, runs of nests, gemm entries) are one job of the pool (``_joined``).

A call takes one array per input (shapes and dtypes as the function's) and returns fresh output arrays, as
``numpy_executor.NumpyFunction`` does; an index check that failed raises ``IndexError`` with its message.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, IntegerAttr, MemRefType, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from picograd.dialects import pg
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, RESULT_ATTR
from picograd.dialects.kernel import LaunchOp
from picograd.dialects.pg_numpy import constant_array, numpy_dtype, op_kernel
from picograd.runtime import cpu_blas, cpu_pool, cpu_windows
from picograd.runtime.cpu_attention import RowKernels, attention_step
from picograd.runtime.native_attention import NativeAttention
from picograd.runtime.threads import get_num_threads, single_threaded_blas
from picograd.target import llvm_ir

DEBUG_ENV = "PICOGRAD_CPU_JIT_DEBUG"
ENABLE_ENV = "PICOGRAD_CPU_JIT"
CACHE_ENV = "PICOGRAD_CACHE_DIR"
PARALLEL_WORK = 1 << 15  # loop iterations from which a nest is split between threads
CHUNKS_PER_THREAD = 4  # pieces of a split nest per thread (claimed dynamically)
SPLIT_MATMUL_FLOPS = 1 << 21  # a smaller product is one BLAS call on the calling thread
TILE_PIECE_ROWS = 64  # a piece of a tile kernel's or implicit GEMM's rows has at least this many
VIEW_OPS = (pg.PermuteOp, pg.ReshapeOp)  # ops whose numpy form is a view (no copy, reads no data)

Step = Callable[[list[np.ndarray]], None]
Maker = Callable[[int], list[tuple[int, int, int, int, int, int]]]  # n threads -> entries of a pool job
JOIN_STEPS = True  # at several threads, consecutive native steps are one job of the pool (``CpuFunction._joined``)


def jit_enabled() -> bool:
    """Whether compiled CPU steps use this runtime: yes unless ``PICOGRAD_CPU_JIT=0`` (then the numpy executor runs
    them, as it runs eager graphs) or ``llvmlite`` is not installed."""
    if os.environ.get(ENABLE_ENV, "1").strip() == "0":
        return False
    try:
        import llvmlite  # noqa: F401
    except ImportError:
        return False
    return True


class _Llvm:
    """LLVM for the host CPU (its vector extensions, -O3): ``compile`` makes the execution engine of a module."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.llvm = llvm
        self.lock = threading.Lock()

    def machine(self) -> Any:
        """A fresh target machine: an execution engine owns (and frees) the one it is made with."""
        llvm = self.llvm
        return llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
        )

    def compile(self, text: str, names: Sequence[str]) -> tuple[Any, list[int]]:
        """Compile the LLVM module ``text`` (or take its object code from the cache) and return its engine (keep it
        alive) and the addresses of ``names``."""
        llvm = self.llvm
        with self.lock:
            machine = self.machine()
            host = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()} {llvm.llvm_version_info}"
            key = hashlib.sha256(f"{host}\n{text}".encode()).hexdigest()
            obj = _read_cache(key)
            if obj is None:
                mod = llvm.parse_assembly(text)
                mod.triple = machine.triple
                mod.data_layout = str(machine.target_data)
                mod.verify()
                builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
                builder.getModulePassManager().run(mod, builder)
                obj = machine.emit_object(mod)
                _write_cache(key, obj)
            empty = llvm.parse_assembly("")
            empty.triple = machine.triple
            engine = llvm.create_mcjit_compiler(empty, machine)
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            return engine, [engine.get_function_address(n) for n in names]


def cache_dir() -> str | None:
    """Where compiled kernels are kept between processes: ``PICOGRAD_CACHE_DIR``, else ``~/.cache/picograd``;
    ``PICOGRAD_CACHE_DIR=`` (empty) keeps none."""
    where = os.environ.get(CACHE_ENV)
    if where is None:
        where = os.path.join(os.path.expanduser("~"), ".cache", "picograd")
    return os.path.join(where, "cpu_jit") if where else None


def _read_cache(key: str) -> bytes | None:
    where = cache_dir()
    if where is None:
        return None
    try:
        with open(os.path.join(where, key + ".o"), "rb") as f:
            return f.read()
    except OSError:
        return None


def _write_cache(key: str, obj: bytes) -> None:
    """Write atomically (a file renamed into place), so that a reader never sees half an object; best effort."""
    where = cache_dir()
    if where is None:
        return
    try:
        os.makedirs(where, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(obj)
        os.replace(tmp, os.path.join(where, key + ".o"))
    except OSError:
        pass


_LLVM: list[_Llvm] = []
_NEST = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_SEQUENCE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _splits(work: int, lower: int, upper: int) -> bool:
    """Whether a nest is split between threads (when there are several)."""
    return work >= PARALLEL_WORK and upper - lower > 1


def host_llvm() -> _Llvm:
    """The process's LLVM (initialized on first use)."""
    if not _LLVM:
        _LLVM.append(_Llvm())
    return _LLVM[0]


def pool() -> cpu_pool.Pool:
    """The process's thread pool (its native code compiled on first use)."""
    if not _POOL:
        llvm = host_llvm()
        _POOL.append(cpu_pool.Pool(llvm.compile, llvm.llvm.get_default_triple()))
    return _POOL[0]


_POOL: list[cpu_pool.Pool] = []


def row_kernels(dtype: np.dtype) -> RowKernels:
    """The process's native row kernels of the float type ``dtype`` (compiled on first use)."""
    key = np.dtype(dtype).str
    if key not in _ROWS:
        _ROWS[key] = RowKernels(host_llvm().compile, dtype)
    return _ROWS[key]


_ROWS: dict[str, RowKernels] = {}


def blas_library() -> cpu_blas.Blas | None:
    """The process's native calls of numpy's BLAS (``cpu_blas``; found and compiled on first use), or None."""
    if not _BLAS:
        llvm = host_llvm()
        features = llvm.llvm.get_host_cpu_features()
        lanes = 16 if features.get("avx512f") and features.get("fma") else 0
        _BLAS.append(cpu_blas.Blas.find(llvm.compile, lanes))
    return _BLAS[0]


_BLAS: list[cpu_blas.Blas | None] = []


def window_library() -> cpu_windows.Windows:
    """The process's implicit-GEMM window products (``cpu_windows``; kernels compiled on first use)."""
    if not _WINDOWS:
        llvm = host_llvm()
        lanes = 16 if llvm.llvm.get_host_cpu_features().get("avx512f") else 8
        _WINDOWS.append(cpu_windows.Windows(llvm.compile, lanes))
    return _WINDOWS[0]


_WINDOWS: list[cpu_windows.Windows] = []


def native_attention(dtype: np.dtype) -> NativeAttention | None:
    """The process's native attention slices of the float type ``dtype`` (``native_attention``; compiled on first
    use), or None without a BLAS to call (``blas_library``)."""
    key = np.dtype(dtype).str
    if key not in _ATTENTION:
        blas = blas_library()
        kind = {"<f4": "f32", "<f8": "f64"}.get(key)
        if blas is None or kind is None or key not in blas.gemm:
            _ATTENTION[key] = None
        else:
            _ATTENTION[key] = NativeAttention(host_llvm().compile, kind, blas.gemm[key], blas.int_type)
    return _ATTENTION[key]


_ATTENTION: dict[str, NativeAttention | None] = {}


def _aligned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A fresh array, 64-byte aligned (a cache line; what the loop nests' vector loads like)."""
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    shift = (-raw.ctypes.data) % 64
    return raw[shift : shift + nbytes].view(dtype).reshape(shape)


def _view(base: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The ``memref.view`` of ``base`` at byte ``offset``."""
    nbytes = math.prod(shape) * dtype.itemsize
    return base.view(np.uint8).reshape(-1)[offset : offset + nbytes].view(dtype).reshape(shape)


def _const_int(v: SSAValue) -> int:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return int(op.value.value.data)
    raise NotImplementedError(f"cpu_jit: a view offset that is not a constant ({v})")


class _Buffers:
    """The slots of one function's buffers (see the module docstring); two functions share one ``_Buffers`` so that
    a view of the arena at the same offset is the same slot in both."""

    def __init__(self, module: ModuleOp, num_args: int):
        self.num_args = num_args
        self.arrays: list[np.ndarray | None] = [None] * num_args  # None: an argument, bound at call time
        self.keys: dict[tuple, int] = {}
        self.globals = {op.sym_name.data: op for op in module.body.block.ops if isinstance(op, memref.GlobalOp)}
        self.flags: list[tuple[np.ndarray, str]] = []  # index checks' error flags and messages

    def slot_for(self, key: tuple, make: Callable[..., np.ndarray], *args: Any) -> int:
        """The slot under ``key``, holding ``make(*args)`` when it is new."""
        if key not in self.keys:
            self.keys[key] = len(self.arrays)
            self.arrays.append(make(*args))
        return self.keys[key]

    def read(self, fn: func.FuncOp) -> dict[SSAValue, int]:
        """The slot of every buffer defined at the top of ``fn``."""
        slots: dict[SSAValue, int] = {a: i for i, a in enumerate(fn.body.block.args)}
        allocs = 0
        for op in fn.body.block.ops:
            if isinstance(op, memref.AllocOp):
                t = op.memref.type
                assert isinstance(t, MemRefType)
                shape, dtype = tuple(t.get_shape()), numpy_dtype(t.element_type)
                slots[op.memref] = self.slot_for(("alloc", allocs, shape, dtype.str), _aligned, shape, dtype)
                allocs += 1
            elif isinstance(op, memref.ViewOp):
                src = slots[op.source]
                offset = _const_int(op.byte_shift)
                t = op.result.type
                assert isinstance(t, MemRefType)
                shape, dtype = tuple(t.get_shape()), numpy_dtype(t.element_type)
                base = self.arrays[src]
                assert base is not None
                slots[op.result] = self.slot_for(
                    ("view", src, offset, shape, dtype.str), _view, base, offset, shape, dtype
                )
            elif isinstance(op, memref.GetGlobalOp):
                name = op.name_.root_reference.data
                slots[op.memref] = self.slot_for(("global", name), self.global_array, name)
        return slots

    def global_array(self, name: str) -> np.ndarray:
        """The array of the module's ``memref.global`` ``name``: its constant contents, or zeros."""
        g = self.globals[name]
        t = g.type
        assert isinstance(t, MemRefType)
        value = g.initial_value
        check = g.attributes.get(pg.INDEX_CHECK_ATTR)
        if isinstance(value, DenseIntOrFPElementsAttr) and not isinstance(check, StringAttr):
            return np.ascontiguousarray(constant_array(value).reshape(t.get_shape()))
        array = np.zeros(t.get_shape(), numpy_dtype(t.element_type))
        if isinstance(check, StringAttr):  # an index check's error flag: zeroed before each call, read after
            self.flags.append((array, check.data))
        return array


class CpuFunction:
    """A loop-stage function compiled for the CPU (see the module docstring). ``fallbacks`` names the kernels run
    with numpy because their nests have no LLVM form; ``jitted`` those compiled."""

    def __init__(self, module: ModuleOp, buffered: func.FuncOp, looped: func.FuncOp):
        self.name = buffered.sym_name.data
        block = buffered.body.block
        attrs = buffered.arg_attrs.data if buffered.arg_attrs is not None else [None] * len(block.args)
        self.inputs: list[tuple[tuple[int, ...], np.dtype]] = []
        outputs: dict[int, tuple[int, tuple[int, ...], np.dtype]] = {}
        for i, (arg, attr) in enumerate(zip(block.args, attrs, strict=True)):
            t = arg.type
            assert isinstance(t, MemRefType)
            spec = (tuple(t.get_shape()), numpy_dtype(t.element_type))
            mark = attr.data.get(RESULT_ATTR) if attr is not None else None
            if isinstance(mark, IntegerAttr):
                outputs[mark.value.data] = (i, *spec)
            else:
                if outputs:
                    raise NotImplementedError("cpu_jit: an input argument after an output buffer")
                self.inputs.append(spec)
        self.outputs = [outputs[k] for k in sorted(outputs)]
        self.buffers = _Buffers(module, len(block.args))
        launches = {op.sym_name.data: op for op in block.ops if isinstance(op, LaunchOp)}
        launch_slots = self.buffers.read(buffered)
        loop_slots = self.buffers.read(looped)
        self.threads = 1  # get_num_threads() at the start of each call
        self._native_jobs: dict[tuple[int, int, int, int], cpu_pool.Job] = {}  # the native attention's, made once
        self.fallbacks: list[str] = []
        self.jitted: list[str] = []
        plan = self._plan(looped, launches, launch_slots, loop_slots)
        self._compile(plan)
        self.slots = (ctypes.c_void_p * len(self.buffers.arrays))()
        for i, a in enumerate(self.buffers.arrays):
            if a is not None:
                self.slots[i] = a.ctypes.data
        self.slots_address = ctypes.addressof(self.slots)
        if os.environ.get(DEBUG_ENV, "") not in ("", "0") and self.fallbacks:
            print(
                f"picograd cpu_jit: @{self.name}: kernels run with numpy: {', '.join(self.fallbacks)}", file=sys.stderr
            )

    # -- building
    def _plan(self, looped: func.FuncOp, launches: dict[str, LaunchOp], launch_slots, loop_slots) -> list[Any]:
        """The steps in order: (``pg.kind``, kernel name, its nests) for each kernel, ("copy", source slot,
        destination slot) for each ``memref.copy``."""
        groups: dict[str, list[scf.ParallelOp]] = {}
        plan: list[Any] = []
        for op in looped.body.block.ops:
            if isinstance(op, scf.ParallelOp):
                name = op.attributes.get(KERNEL_ATTR)
                kind = op.attributes.get(KIND_ATTR)
                assert isinstance(name, StringAttr) and isinstance(kind, StringAttr)
                if name.data not in groups:
                    groups[name.data] = []
                    plan.append((kind.data, name.data, groups[name.data]))
                groups[name.data].append(op)
            elif isinstance(op, memref.CopyOp):
                plan.append(("copy", loop_slots[op.source], loop_slots[op.destination]))
            elif not isinstance(op, memref.AllocOp | memref.ViewOp | memref.GetGlobalOp | memref.DeallocOp):
                if not isinstance(op, arith.ConstantOp | func.ReturnOp):
                    raise NotImplementedError(f"cpu_jit: top-level op {op.name}")
        self._launches, self._launch_slots, self._loop_slots = launches, launch_slots, loop_slots
        return plan

    def _compile(self, plan: list[Any]) -> None:
        functions: list[llvm_ir.NestFunction] = []
        by_text: dict[str, int] = {}  # nests that differ only in their buffers share one function
        # a step, or (function, buffer slots, work, bounds of the first dimension): the text of a nest holds neither
        steps: list[Step | tuple[int, tuple[int, ...], int, int, int]] = []
        kernel_names: list[str] = []  # the kernel (or "copy") of each step, for profiles
        for entry in plan:
            if entry[0] == "copy":
                _, src, dst = entry
                steps.append(self._copy(src, dst))
                kernel_names.append("copy")
                continue
            kind, name, nests = entry
            if kind not in ("matmul", "attention"):
                try:
                    made = [llvm_ir.emit_nest(n, "NEST") for n in nests]
                    maps = [tuple(self._loop_slots[b] for b in f.buffers) for f in made]
                except (llvm_ir.Unsupported, KeyError) as e:
                    made, why = None, str(e)
                if made is not None:
                    for n, f, m in zip(nests, made, maps, strict=True):
                        key = f.text
                        if key not in by_text:
                            by_text[key] = len(functions)
                            f.name = f"nest{len(functions)}"
                            f.text = f.text.replace("@NEST", f"@{f.name}")  # the nest and its body
                            functions.append(f)
                        # a nest that threads must not split (``NestFunction.splits``) counts as no work
                        steps.append((by_text[key], m, _work(n) if f.splits else 0, f.lower, f.upper))
                        kernel_names.append(name)
                    self.jitted.append(name)
                    continue
                self.fallbacks.append(f"{name} ({why})")
            launch = self._launches[name]
            blocked = None
            if kind == "attention":
                ins = [self._array(self._launch_slots[v]) for v in launch.ins]
                outs = [self._array(self._launch_slots[v]) for v in launch.outs]
                blocked = attention_step(
                    launch, ins, outs, self._run_chunks, row_kernels, native_attention, self._run_native
                )
            steps.append(blocked if blocked is not None else self._numpy_launch(launch))
            kernel_names.append(f"{name} ({'blas' if blocked is not None else 'numpy'})")
        # runs of consecutive nests become one call each at one thread; at more, a run holding a nest worth
        # splitting (``_splits``) becomes one parallel region (``cpu_pool``): its split nests cut into pieces, the
        # nests between them one piece (a sequence when several), each entry started when the one before is done
        sequences: dict[tuple, str] = {}  # the calls of a run -> its function's name (runs of the layers: one)

        def sequence(run: list[tuple[int, tuple[int, ...], int, int, int]]) -> tuple[str, list[tuple[int, ...]]]:
            calls = tuple((functions[i].name, lo, hi) for i, _, _, lo, hi in run)
            if calls not in sequences:
                sequences[calls] = f"run{len(sequences)}"
            return sequences[calls], [m for _, m, _, _, _ in run]

        plans: dict[bool, list[Any]] = {}
        for threaded in (False, True):
            plan_steps: list[Any] = []
            run: list[tuple[int, tuple[int, ...], int, int, int]] = []
            for step in [*steps, None]:
                if isinstance(step, tuple):
                    run.append(step)
                    continue
                if threaded and any(_splits(*nest[2:]) for nest in run):
                    region: list[Any] = []
                    serial: list[tuple[int, tuple[int, ...], int, int, int]] = []
                    for nest in [*run, None]:
                        if nest is not None and not _splits(*nest[2:]):
                            serial.append(nest)
                            continue
                        if len(serial) > 1:
                            region.append(sequence(serial))
                        elif serial:
                            region.append((*serial[0], False))
                        serial = []
                        if nest is not None:
                            region.append((*nest, True))
                    plan_steps.append(("region", region, len(run)))
                elif len(run) > 1:
                    plan_steps.append(sequence(run))
                else:
                    plan_steps.extend(run)
                run = []
                if step is not None:
                    plan_steps.append(step)
            plans[threaded] = plan_steps
        addresses: dict[str, int] = {}
        if functions:
            texts = [llvm_ir.sequence_text(name, calls) for calls, name in sequences.items()]
            names = [f.name for f in functions] + list(sequences.values())
            self._engine, found = host_llvm().compile(llvm_ir.module_text(functions, texts), names)
            addresses = dict(zip(names, found, strict=True))
        self._maps: list[Any] = []  # the nests' slot tables and the runs' tables of them, kept alive
        tables: dict[tuple[int, ...], int] = {}

        def table_of(slots: tuple[int, ...]) -> int:
            if slots not in tables:
                table = (ctypes.c_int64 * max(len(slots), 1))(*slots)
                self._maps.append(table)
                tables[slots] = ctypes.addressof(table)
            return tables[slots]

        def table_of_tables(maps: list[tuple[int, ...]]) -> int:
            table = (ctypes.c_void_p * len(maps))(*(table_of(m) for m in maps))
            self._maps.append(table)
            return ctypes.addressof(table)

        self._plans: dict[bool, list[Step]] = {}
        names_of: dict[bool, list[str]] = {False: [], True: []}
        self.step_names = names_of  # the kernels of each step, at one thread and at more (for profiles)
        for threaded, plan_steps in plans.items():
            made_steps: list[Step] = []
            makers: list[Maker | None] = []  # per step: its pool entries at n threads, when it is native code alone
            k = 0  # the index in steps (and step_names) of the next step of the plan
            for planned in plan_steps:
                if isinstance(planned, tuple) and planned[0] == "region":
                    items: list[Any] = planned[1]
                    count: int = planned[2]
                    entries: list[tuple[int, int, int, int, bool, int]] = []
                    for item in items:
                        if isinstance(item[0], str):  # a sequence of nests
                            tables_address = table_of_tables(item[1])
                            entries.append((addresses[item[0]], tables_address, 0, 0, False, cpu_pool.SEQUENCE))
                        else:
                            fn_address = addresses[functions[item[0]].name]
                            entries.append((fn_address, table_of(item[1]), item[3], item[4], item[5], cpu_pool.NEST))
                    maker = _region_entries(entries)
                    made_steps.append(self._job_step([maker]))
                    makers.append(maker)
                    names_of[threaded].append(f"region: {', '.join(kernel_names[k : k + count])}")
                    k += count
                    continue
                if isinstance(planned, tuple) and isinstance(planned[0], str):  # a run
                    name, maps = planned
                    tables_address = table_of_tables(maps)
                    made_steps.append(self._sequence_step(_SEQUENCE(addresses[name]), tables_address))
                    makers.append(_one_entry((addresses[name], tables_address, 0, 0, 1, cpu_pool.SEQUENCE)))
                    names_of[threaded].append(f"{name}: {', '.join(kernel_names[k : k + len(maps)])}")
                    k += len(maps)
                    continue
                if isinstance(planned, tuple):
                    index, slots, _, lower, upper = planned
                    address = addresses[functions[index].name]
                    made_steps.append(self._nest_step(_NEST(address), table_of(slots), lower, upper))
                    makers.append(_one_entry((address, table_of(slots), lower, upper, 1, cpu_pool.NEST)))
                else:
                    made_steps.append(planned)
                    makers.append(getattr(planned, "entries", None))
                names_of[threaded].append(kernel_names[k])
                k += 1
            if threaded:  # the steps one by one, for ``profile``
                self._separate = made_steps
            if threaded and JOIN_STEPS:
                made_steps, self.joined_names = self._joined(made_steps, makers, names_of[threaded])
            self._plans[threaded] = made_steps
        self.num_functions = len(functions)
        # every kernel its own step, at one thread (``profile``)
        self._kernel_steps: list[tuple[str, Step]] = []
        for name, step in zip(kernel_names, steps, strict=True):
            if isinstance(step, tuple):
                index, slots, _, lower, upper = step
                step = self._nest_step(_NEST(addresses[functions[index].name]), table_of(slots), lower, upper)
            self._kernel_steps.append((name, step))

    def _sequence_step(self, fn: Any, table: int) -> Step:
        return lambda bufs: fn(self.slots_address, table)

    def _nest_step(self, fn: Any, table: int, lower: int, upper: int) -> Step:
        return lambda bufs: fn(self.slots_address, table, lower, upper)

    def _job_step(self, makers: list[Maker]) -> Step:
        """One job of the pool: the entries of ``makers`` in order (each entry started when the one before it is
        done), the job made once per thread count."""
        jobs: dict[int, cpu_pool.Job] = {}

        def run(bufs: list[np.ndarray]) -> None:
            n = self.threads
            job = jobs.get(n)
            if job is None:
                job = jobs[n] = cpu_pool.Job([e for maker in makers for e in maker(n)])
            pool().run(job, self.slots_address, n - 1)

        return run

    def _joined(self, steps: list[Step], makers: list[Maker | None], names: list[str]) -> tuple[list[Step], list[str]]:
        """The threaded plan with each run of consecutive native steps (regions, runs of nests, BLAS products:
        those with a ``Maker``) one job of the pool: one ``ctypes`` call where each step was a Python call, and the
        pool's threads kept in the job between the steps."""
        joined: list[Step] = []
        joined_names: list[str] = []
        run: list[int] = []
        for i in [*range(len(steps)), None]:
            maker = makers[i] if i is not None else None
            if maker is not None:
                run.append(i)  # type: ignore[arg-type]
                continue
            if len(run) > 1:
                joined.append(self._job_step([makers[j] for j in run]))  # type: ignore[misc]
                joined_names.append(f"job: {' | '.join(names[j] for j in run)}")
            elif run:
                joined.append(steps[run[0]])
                joined_names.append(names[run[0]])
            run = []
            if i is not None:
                joined.append(steps[i])
                joined_names.append(names[i])
        return joined, joined_names

    def _run_chunks(self, fn: Callable[[int, int], None], chunks: Sequence[tuple[int, int]]) -> None:
        """``fn(lo, hi)`` for every chunk (attention's, each a few BLAS calls and ufuncs): at several threads, with
        BLAS single-threaded (``threadpoolctl``), spread over the pool's threads (Python callbacks); else on this
        thread. (Cutting the GPT's one attention chunk of 64 slices into 8 made its step slower at 2 threads, 41
        -> 54 ms: the chunks' numpy calls on 32x32 tiles hold the GIL more than BLAS releases it.)"""
        if self.threads > 1 and len(chunks) > 1:
            with single_threaded_blas() as single:
                if single:
                    errors: list[BaseException] = []
                    call = cpu_pool.callback(lambda k, _: fn(*chunks[k]), errors)
                    address = ctypes.cast(call, ctypes.c_void_p).value or 0
                    job = cpu_pool.Job([(address, 0, 0, len(chunks), len(chunks), cpu_pool.NEST)])
                    pool().run(job, 0, self.threads - 1)
                    if errors:
                        raise errors[0]
                    return
        for lo, hi in chunks:
            fn(lo, hi)

    def _run_native(self, fn: int, params: int, slices: int) -> bool:
        """Run the native attention ``fn`` over ``slices``: at several threads on the pool (``CHUNKS_PER_THREAD``
        pieces a thread), at one on this thread; True (``cpu_attention``'s chunks are not needed). No slices (an
        empty batch): nothing to run (the pool takes no entry of no pieces)."""
        n = self.threads
        if slices == 0:
            return True
        if n == 1:
            _NEST(fn)(0, params, 0, slices)
            return True
        key = (fn, params, slices, n)
        job = self._native_jobs.get(key)
        if job is None:
            if len(self._native_jobs) >= 256:
                self._native_jobs.clear()
            job = self._native_jobs[key] = cpu_pool.Job(
                [(fn, params, 0, slices, min(slices, CHUNKS_PER_THREAD * n), cpu_pool.NEST)]
            )
        pool().run(job, 0, n - 1)
        return True

    def _matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """``out = a @ b`` (numpy's matmul), at several threads as ``_matmul_plan`` cuts it."""
        self._matmul_plan(a, b, out)()

    def _matmul_plan(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Callable[[], None]:
        """A call computing ``out = a @ b`` (numpy's matmul) at this call's thread count: at several threads, a
        product of at least ``SPLIT_MATMUL_FLOPS`` is cut along the longer of its output's last two dims into one
        block per thread, each block one single-threaded BLAS call on a thread of the pool (a job of Python
        callbacks, made here once), so that the step's threads are the pool's alone: a threaded BLAS's workers spin
        after each call and took a core from the pool's nests that followed (the DDPM at 2 threads: 70 ms a step,
        against 39 at 1)."""
        n = self.threads
        rows, cols = out.shape[-2:]
        if n == 1 or 2 * math.prod(out.shape) * a.shape[-1] < SPLIT_MATMUL_FLOPS or max(rows, cols) < 2 * n:

            def whole() -> None:
                np.matmul(a, b, out=out)

            return whole
        size = max(rows, cols)
        bounds = [size * k // n for k in range(n + 1)]
        cuts = list(zip(bounds[:-1], bounds[1:], strict=True))
        if rows >= cols:
            blocks = [(a[..., lo:hi, :], b, out[..., lo:hi, :]) for lo, hi in cuts]
        else:
            blocks = [(a, b[..., lo:hi], out[..., lo:hi]) for lo, hi in cuts]
        errors: list[BaseException] = []

        def block(k: int, _: int) -> None:
            x, y, o = blocks[k]
            np.matmul(x, y, out=o)

        call = cpu_pool.callback(block, errors)
        job = cpu_pool.Job([(ctypes.cast(call, ctypes.c_void_p).value or 0, 0, 0, n, n, cpu_pool.NEST)])

        def run() -> None:
            pool().run(job, 0, n - 1)  # (``call``, referenced here, lives as long as the job that calls it)
            if errors:
                raise errors.pop()
            assert call is not None

        return run

    def _gemms(
        self,
        launch: LaunchOp,
        program: list[Any],
        views_of: list[bool],
        direct: dict[int, tuple[int, int]],
        windows: dict[int, tuple[int, int, int]],
    ) -> list[Any] | None:
        """The launch's products (``direct``, of views made by ``program`` of its operands) as native BLAS calls
        (``cpu_blas.Gemm``) or, for a product one of whose operands is a convolution's windows (``windows``: which
        operand, the env slots of the gathered input and index), implicit GEMMs (``cpu_windows.WindowProduct``);
        None when there is no such BLAS or one product is not one BLAS or the window kernel takes as it is. The
        views are made once on the buffers (an argument's a stand-in of its shape; the program's ops that are not
        views, the windows' gathers, are not run): each operand is a slot and a byte offset."""
        blas = blas_library()
        if blas is None and len(windows) < len(direct):
            return None
        values = [*launch.ins, *launch.outs]
        bases: dict[int, np.ndarray] = {}
        for v in values:
            slot = self._launch_slots[v]
            if slot not in bases:
                fixed = self.buffers.arrays[slot]
                t = v.type
                assert isinstance(t, MemRefType)
                bases[slot] = fixed if fixed is not None else np.empty(t.get_shape(), numpy_dtype(t.element_type))
        env: list[Any] = [bases[self._launch_slots[v]] for v in launch.ins]
        env += [None] * (max((out for _, _, out, _ in program), default=-1) + 1 - len(env))
        for (fn, args, out, _), view in zip(program, views_of, strict=True):
            operands = [env[a] for a in args]
            env[out] = fn(*operands) if view and all(o is not None for o in operands) else None

        def at(view: np.ndarray) -> tuple[int, int] | None:
            """(slot, byte offset) of a base holding ``view`` (every byte of it), or None (a copy)."""
            lo, hi = np.lib.array_utils.byte_bounds(view)
            for slot, base in bases.items():
                b0, b1 = np.lib.array_utils.byte_bounds(base)
                if b0 <= lo and hi <= b1:
                    return slot, view.ctypes.data - base.ctypes.data
            return None

        gemms: list[Any] = []
        for k in range(len(launch.outs)):
            c = bases[self._launch_slots[launch.outs[k]]]
            if k in windows:
                side, xs, ixs = windows[k]
                x, index, other = env[xs], env[ixs], env[direct[k][1 - side]]
                if any(v is None for v in (x, index, other)):  # e.g. the other operand is windows too
                    return None
                places = [at(x), at(index), at(other), (self._launch_slots[launch.outs[k]], 0)]
                if None in places:
                    return None
                describe = window_library().describe if side == 0 else window_library().describe_rhs
                product = describe(x, index, other, c, places)  # type: ignore[arg-type]
                if product is None:
                    return None
                gemms.append(product)
                continue
            a, b = (env[i] for i in direct[k])
            if blas is None or a is None or b is None:
                return None
            where = [at(a), at(b), (self._launch_slots[launch.outs[k]], 0)]
            if None in where or a.size == 0 or b.size == 0:
                return None
            gemm = cpu_blas.describe(blas, a, b, c, where)  # type: ignore[arg-type]
            if gemm is None:
                return None
            gemms.append(gemm)
        return gemms

    def _gemm_step(self, gemms: list[Any], numpy_step: Step) -> Step:
        """Native BLAS calls (``cpu_blas``) at several threads, ``numpy_step`` at one unless a product has a tile
        kernel (``llvm_gemm``; then the native calls at one thread too): a product of at least
        ``SPLIT_MATMUL_FLOPS`` cut between the threads (one piece a thread, along ``Gemm.split``), a smaller one a
        single piece; the entries (the step's ``entries``, for ``_joined``) and their job made once per thread
        count."""

        def entries(n: int) -> list[tuple[int, int, int, int, int, int]]:
            made = []
            for gemm in gemms:
                if isinstance(gemm, cpu_windows.WindowProduct):
                    made += gemm.entries(n, SPLIT_MATMUL_FLOPS, CHUNKS_PER_THREAD)
                    continue
                split = gemm.split(n)
                units = gemm.units[split]
                pieces = n if gemm.flops >= SPLIT_MATMUL_FLOPS and units >= 2 * n else 1
                if pieces > 1 and gemm.tiled and split == cpu_blas.SPLIT_ROWS:
                    # a tile kernel's rows: claimed in CHUNKS_PER_THREAD pieces a thread (a thread that the OS or a
                    # spinning neighbour delays leaves its pieces to the others); a BLAS call or a cut of columns
                    # (a masked vector at each cut) stays one piece a thread
                    pieces = max(n, min(CHUNKS_PER_THREAD * n, units // TILE_PIECE_ROWS))
                made.append((gemm.entry, gemm.params(split), 0, units, pieces, cpu_pool.NEST))
            return made

        job = self._job_step([entries])
        # a product given a tile kernel (``llvm_gemm``, faster than the BLAS) runs natively at one thread too
        tiled = any(g.tiled for g in gemms)
        calls = [(_NEST(fn), params, lo, hi) for fn, params, lo, hi, _, _ in entries(1)] if tiled else []

        def run(bufs: list[np.ndarray]) -> None:
            if self.threads > 1:
                job(bufs)
            elif calls:
                for fn, params, lo, hi in calls:
                    fn(self.slots_address, params, lo, hi)
            else:
                numpy_step(bufs)

        run.entries = entries  # type: ignore[attr-defined]
        return run

    def _array(self, slot: int) -> Callable[[list[np.ndarray]], np.ndarray]:
        fixed = self.buffers.arrays[slot]
        if fixed is None:
            return lambda bufs: bufs[slot]
        return lambda bufs: fixed

    def _copy(self, src: int, dst: int) -> Step:
        s, d = self._array(src), self._array(dst)
        return lambda bufs: np.copyto(d(bufs), s(bufs))

    def _numpy_launch(self, launch: LaunchOp) -> Step:
        """The launch's body run with numpy (``pg_numpy``), its yielded values written into its ``outs``; a
        yielded ``pg.matmul`` of floats is computed straight into its buffer."""
        ins = [self._array(self._launch_slots[v]) for v in launch.ins]
        outs = [self._array(self._launch_slots[v]) for v in launch.outs]
        block = launch.body.block
        env_of: dict[SSAValue, int] = {a: i for i, a in enumerate(block.args)}
        program: list[tuple[Any, tuple[int, ...], int, int]] = []
        views_of: list[bool] = []  # per program entry: whether its op is a view
        direct: dict[int, tuple[int, int]] = {}  # yielded index -> matmul operands' env slots
        windows: dict[int, tuple[int, int, int]] = {}  # yielded index -> (operand, env slots of its x and index)
        window_ops: set[Operation] = set()  # the gathers of those operands, and the reshapes after them
        yielded = list(launch.yield_op.values)
        for op in block.ops:
            if op is launch.yield_op:
                break
            if isinstance(op, pg.MatmulOp) and op.result in yielded and _float_matmul(op):
                k = list(yielded).index(op.result)
                if k not in direct and yielded.count(op.result) == 1:
                    direct[k] = (env_of[op.operands[0]], env_of[op.operands[1]])
                    for side in (0, 1):
                        gather, chain = _windows_of(op, side)
                        if gather is not None:
                            windows[k] = (side, env_of[gather.input], env_of[gather.indices])
                            window_ops.update(chain)
                    continue
            fn = (lambda c: lambda: c)(constant_array(op.value)) if isinstance(op, pg.ConstantOp) else op_kernel(op)
            program.append((fn, tuple(env_of[v] for v in op.operands), len(env_of), len(op.results)))
            views_of.append(isinstance(op, VIEW_OPS))
            for r in op.results:
                env_of[r] = len(env_of)
        size = len(env_of)
        results = [None if k in direct else env_of[v] for k, v in enumerate(yielded)]
        fixed = [self.buffers.arrays[self._launch_slots[v]] for v in (*launch.ins, *launch.outs)]
        ops = [op for op in block.ops if op is not launch.yield_op and not isinstance(op, pg.MatmulOp)]
        views = all(isinstance(op, VIEW_OPS) for op in ops)
        products_only = len(direct) == len(yielded) and views  # the launch is matmuls of views of its operands
        step = self._numpy_step(program, direct, size, ins, outs, fixed, results, products_only)
        # natively: products of views, some of whose operands are windows read through their index (implicit GEMMs)
        native = len(direct) == len(yielded) and all(isinstance(op, VIEW_OPS) or op in window_ops for op in ops)
        gemms = self._gemms(launch, program, views_of, direct, windows) if native else None
        if gemms is None:
            return step
        return self._gemm_step(gemms, step)

    def _numpy_step(self, program, direct, size, ins, outs, fixed, results, products_only: bool) -> Step:
        """The step running a launch's ``program`` (``_numpy_launch``) with numpy on the call's arrays."""
        if products_only and all(a is not None for a in fixed):
            # matmuls of views of the memory plan's buffers: the views made once, a call is the BLAS calls alone
            env = [a for a in fixed[: len(ins)]] + [None] * (size - len(ins))
            for fn, args, out, _ in program:
                env[out] = fn(*[env[a] for a in args])
            if all(any(np.may_share_memory(e, a) for a in env[: len(ins)]) for e in env[len(ins) :]):
                products = [(env[direct[k][0]], env[direct[k][1]], fixed[len(ins) + k]) for k in range(len(outs))]

                plans: dict[int, list[Callable[[], None]]] = {}  # per thread count: the products' calls, made once

                def matmuls(bufs: list[np.ndarray]) -> None:
                    calls = plans.get(self.threads)
                    if calls is None:
                        calls = plans[self.threads] = [self._matmul_plan(a, b, o) for a, b, o in products]
                    for call in calls:
                        call()

                return matmuls

        def run(bufs: list[np.ndarray]) -> None:
            env: list[Any] = [None] * size
            for i, get in enumerate(ins):
                env[i] = get(bufs)
            for fn, args, out, many in program:
                if many == 1:
                    env[out] = fn(*[env[a] for a in args])
                else:  # several results (pg.attention_backward): a tuple
                    env[out : out + many] = fn(*[env[a] for a in args])
            for k, get in enumerate(outs):
                if k in direct:
                    a, b = direct[k]
                    self._matmul(env[a], env[b], get(bufs))
                else:
                    np.copyto(get(bufs), env[results[k]])  # type: ignore[index]

        return run

    # -- running
    def __call__(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        self.threads = get_num_threads()
        bufs, outs = self._bind(args)
        # the numpy fallback kernels: overflow to inf silently, as PyTorch's; at several threads BLAS runs on the
        # pool's threads (``_matmul``)
        with np.errstate(all="ignore"), single_threaded_blas() if self.threads > 1 else contextlib.nullcontext():
            for step in self._plans[self.threads > 1]:
                step(bufs)
        self._check_flags()
        return tuple(outs)

    def profile(self, *args: np.ndarray, threads: int = 1) -> list[tuple[str, float]]:
        """One call, timing each step: (name, seconds) per step, in order. At one thread every kernel is its own
        step (the kernel's name, ``copy``, or the name with ``(numpy)``/``(blas)`` for the launches run by numpy);
        at more, the steps of a call at that many threads before ``_joined`` (``step_names[True]``: parallel regions and
        runs of nests). For ``bench/cpu_profile.py``; the results are those of a call."""
        self.threads = threads
        bufs, _ = self._bind(args)
        times: list[tuple[str, float]] = []
        plan = self._kernel_steps if threads == 1 else list(zip(self.step_names[True], self._separate, strict=True))
        with np.errstate(all="ignore"), single_threaded_blas() if threads > 1 else contextlib.nullcontext():
            for name, step in plan:
                t0 = time.perf_counter()
                step(bufs)
                times.append((name, time.perf_counter() - t0))
        self._check_flags()
        return times

    def _bind(self, args: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The call's buffers (inputs, then fresh outputs) written into the slot table, the index flags reset."""
        if len(args) != len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} arrays, got {len(args)}")
        bufs: list[np.ndarray] = []
        for a, (shape, dtype) in zip(args, self.inputs, strict=True):
            a = np.asarray(a, dtype=dtype)
            if not a.flags.c_contiguous:
                a = a.copy()
            if a.shape != shape:
                raise ValueError(f"{self.name}: an input of shape {a.shape}, expected {shape}")
            bufs.append(a)
        outs = []
        for index, shape, dtype in self.outputs:
            while len(bufs) < index:
                bufs.append(None)  # type: ignore[arg-type]
            out = np.empty(shape, dtype)
            bufs.append(out)
            outs.append(out)
        slots = self.slots
        for i, a in enumerate(bufs):
            slots[i] = a.ctypes.data
        for flag, _ in self.buffers.flags:
            flag[...] = 0
        return bufs, outs

    def _check_flags(self) -> None:
        for flag, message in self.buffers.flags:
            if flag[0]:
                raise pg.check_error(message.replace("{}", str(int(flag[1])), 1))


def _region_entries(entries: list[tuple[int, int, int, int, bool, int]]) -> Maker:
    """A region's entries (function, map, bounds, whether split, ``cpu_pool`` kind) at n threads: split nests in
    ``CHUNKS_PER_THREAD`` pieces a thread."""

    def make(n: int) -> list[tuple[int, int, int, int, int, int]]:
        return [
            (fn, map_, lower, upper, min(CHUNKS_PER_THREAD * n, upper - lower) if split else 1, kind)
            for fn, map_, lower, upper, split, kind in entries
        ]

    return make


def _one_entry(entry: tuple[int, int, int, int, int, int]) -> Maker:
    return lambda n: [entry]


def _windows_of(op: pg.MatmulOp, side: int) -> tuple[pg.GatherOp | None, list[Operation]]:
    """The gather of rows (``pg-fuse{windows}``: a convolution's windows, dim 1 of a 3-D input) that ``op``'s
    operand ``side`` is through reshapes, with those reshapes, or (None, [])."""
    chain: list[Operation] = []
    v = op.operands[side]
    while isinstance(v.owner, pg.ReshapeOp):
        chain.append(v.owner)
        v = v.owner.input
    g = v.owner
    if isinstance(g, pg.GatherOp) and g.dim_index == 1 and len(pg.shape_of(g.input)) == 3:
        return g, [g, *chain]
    return None, []


def _float_matmul(op: pg.MatmulOp) -> bool:
    dts = {numpy_dtype(pg.element_of(v)) for v in (*op.operands, op.result)}
    return len(dts) == 1 and dts <= {np.dtype(np.float32), np.dtype(np.float64)}


def _work(nest: scf.ParallelOp) -> int:
    """Loop iterations of a nest: the product of its parallel extents and of the trip counts of the ``scf.for``
    loops inside (constant bounds; others count 1)."""
    total = 1
    for lb, ub in zip(nest.lowerBound, nest.upperBound, strict=True):
        total *= max(_maybe_int(ub) - _maybe_int(lb), 1)
    inner = 1
    for op in nest.walk():
        if isinstance(op, scf.ForOp):
            inner = max(inner, max(_maybe_int(op.ub) - _maybe_int(op.lb), 1))
    return total * inner


def _maybe_int(v: SSAValue) -> int:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return int(op.value.value.data)
    return 1
