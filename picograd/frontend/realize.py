"""Realizing lazy values: cut out the graph, compile it once per structure and device, bind buffers, run.

The compile cache is keyed by the graph's structural key (``graph.cut``) and the device, so an eager training
loop that records the same graph every step compiles it once. Python scalars in the graph are baked into the
program until one of them takes another value for the same structure; from then on those scalars are runtime
arguments (``_lifted``), so a schedule written as a float compiles twice, not once per step. The cache is an LRU
of ``set_cache_size`` entries; a compiled step's entries go when its function is deleted (``release``).

On "cpu" the graph is lowered to ``pg``, taken through the pipeline to the ``simplify`` stage and run by the numpy
executor; a compiled step (``@pg.compile``) goes on to the JIT CPU backend (``picograd.driver.cpu_compile``: fused
loop nests compiled by LLVM, matmuls through BLAS) unless ``PICOGRAD_CPU_JIT=0``. On "cuda" the same
``simplify``-stage module goes to ``picograd.driver.gpu_compile.compile_for_cuda``, which takes it the rest of the
way to PTX; its ``Executable`` takes the function's arguments (the graph's leaves, in order) as device buffers and
returns its results as device buffers. Leaves that live on the other device (0-d scalars, see
``picograd.frontend.tensor``) are copied by ``device.bind``, which caches the copies.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from picograd.driver import pipeline
from picograd.driver.pipeline import lower_to
from picograd.errors import CompileError
from picograd.frontend import device as devices
from picograd.frontend.graph import Graph, Value, cut, lower
from picograd.runtime.cpu_jit import jit_enabled
from picograd.runtime.device import Device
from picograd.runtime.numpy_executor import compile_func

_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # LRU: key -> executable
_SEEN: OrderedDict[tuple, tuple[tuple, tuple[int, ...]]] = OrderedDict()  # eager structure -> (first consts, lifted)
_LIMIT = [512]
_MATMUL_SCHEDULE: contextvars.ContextVar[str] = contextvars.ContextVar("matmul_schedule", default="auto")


def current_matmul_schedule() -> str:
    """The schedule ``pg.matmul_schedule`` set around this call (``auto`` outside any)."""
    return _MATMUL_SCHEDULE.get()


@contextlib.contextmanager
def matmul_schedule(name: str) -> Iterator[None]:
    """Within the ``with`` block, GPU matmuls compiled from here use the ``pg-matmul-schedule`` rung ``name``
    (``auto``, the default, picks one by shape; or ``naive``, ``coalesced``, ``smem``, ``regtile``, ``warptile``,
    ``cp-async``): ``with pg.matmul_schedule("warptile"): y = model(x)``. Compiled steps take it as
    ``@pg.compile(matmul_schedule=...)``. Raises ``ValueError`` for an unknown name."""
    from picograd.passes.kinds.matmul_rungs import check_schedule

    token = _MATMUL_SCHEDULE.set(check_schedule(name))
    try:
        yield
    finally:
        _MATMUL_SCHEDULE.reset(token)


# The stage the frontend hands to a backend: after autodiff, the optimizer rewrites and simplification.
BACKEND_STAGE = "simplify"


def cuda_compiler() -> Callable[..., Any]:
    """``compile_for_cuda(module, matmul_schedule=..., arch=...) -> CudaProgram`` of ``picograd.driver.gpu_compile``
    (imported on first use, so that CPU-only use never loads it; tests stand a fake in for this function)."""
    from picograd.driver.gpu_compile import compile_for_cuda

    return compile_for_cuda


def lower_graph(graph: Graph, name: str = "main", lifted: tuple[int, ...] = ()) -> ModuleOp:
    """The module holding ``graph`` as a ``func.func`` at the backend stage (``simplify``), with the constants at
    positions ``lifted`` as arguments (see ``graph.lower``).

    Raises ``CompileError`` naming the pass's complaint when a pass rejects the graph."""
    module = ModuleOp([lower(graph, name, lifted)])
    try:
        lower_to(module, BACKEND_STAGE)
    except (VerifyException, DiagnosticException) as e:
        raise CompileError(f"compiling {name} failed: {e}") from None
    return module


def compile_graph(
    graph: Graph,
    device: Device = devices.CPU,
    name: str = "main",
    eager: bool = True,
    lifted: tuple[int, ...] = (),
    owner_keys: set[tuple] | None = None,
) -> Any:
    """The executable of ``graph`` for ``device``, from the cache or built by the pipeline: a
    ``NumpyFunction`` on "cpu", a ``picograd.runtime.cuda.Executable`` on "cuda" (both called with one buffer per
    leaf, then one 0-d buffer per constant at the positions ``lifted``, and returning one buffer per output). The
    other constants are baked into the program.

    ``eager`` says how a GPU executable will be called: a graph realized eagerly rarely sees the same buffers
    twice, so it captures a CUDA graph only for a buffer set seen twice (plain launches before that); a compiled
    step (``eager=False``) binds stable buffers and captures at once. ``owner_keys`` (a compiled function's) gets
    the cache key, for ``release``. Raises ``CompileError`` when a pass rejects the graph."""
    schedule = _MATMUL_SCHEDULE.get()
    baked = tuple(c for i, c in enumerate(graph.consts) if i not in lifted)
    # on the GPU the key holds every pipeline choice the program depends on (bench/unroll_sweep.py varies one)
    gpu_choices = (eager, schedule, pipeline.POINTWISE_UNROLL)
    key = (graph.key, baked, lifted, device) + (() if device == devices.CPU else gpu_choices)
    if owner_keys is not None:
        owner_keys.add(key)
    exe = _CACHE.get(key)
    if exe is not None:
        _CACHE.move_to_end(key)
        return exe
    module = lower_graph(graph, name, lifted)
    if device == devices.CPU:
        if not eager and jit_enabled():  # a compiled step: worth the LLVM compile
            from picograd.driver.cpu_compile import compile_for_cpu

            exe = compile_for_cpu(module)
        else:
            exe = compile_func(module.body.block.first_op)  # type: ignore[arg-type]
    elif device.type != "cuda":
        raise CompileError(f"no compiler for device '{device}'")
    else:
        from picograd.runtime.cuda import device_target

        program = cuda_compiler()(module, matmul_schedule=schedule, arch=device_target())
        # eager: capture a buffer set's graph at its second call only; a compiled step: keep a graph for each of
        # the few address sets its rotating output buffers and inputs give (see compile._CudaBinding)
        exe = program.executable(capture_after=2) if eager else program.executable(max_graphs=8)
    _CACHE[key] = exe
    while len(_CACHE) > _LIMIT[0]:
        _CACHE.popitem(last=False)
    return exe


def _lifted(graph: Graph, device: Device) -> tuple[int, ...]:
    """The constants of an eagerly realized ``graph`` to pass at run time: those whose value has differed between
    realizations of this structure (a Python scalar that changes every step: ``loss * (1 + 1e-4 * i)``), so that
    such a loop compiles twice (baked, then with the scalar lifted) instead of once per value."""
    seen = _SEEN.get((graph.key, device))
    if seen is None:
        _SEEN[(graph.key, device)] = (graph.consts, ())
        while len(_SEEN) > _LIMIT[0]:
            _SEEN.popitem(last=False)
        return ()
    first, lifted = seen
    changed = tuple(i for i, (a, b) in enumerate(zip(first, graph.consts, strict=True)) if i in lifted or a != b)
    if changed != lifted:
        _SEEN[(graph.key, device)] = (first, changed)
    return changed


def run_graph(outputs: Sequence[Value], device: Device = devices.CPU) -> list[Any]:
    """Compute ``outputs`` (values of the recorded graph) on ``device`` and return their buffers (numpy arrays on
    "cpu", device buffers on "cuda").

    The graph also returns the value of every ``pg.grad`` root it computes (the loss of ``loss.backward()``), which
    is cached on the root's node: ``loss.item()`` after an eager ``opt.step()`` then reads it instead of running the
    forward pass a second time."""
    graph = cut(outputs)
    roots = backward_roots(graph, outputs)
    if roots:
        graph = cut([*outputs, *roots])
    lifted = _lifted(graph, device)
    exe = compile_graph(graph, device, lifted=lifted)
    args = [devices.bind(leaf, device) for leaf in graph.leaves]
    for i in lifted:
        node = graph.constants[i]
        with np.errstate(over="ignore"):  # beyond the dtype's range: inf, silently (as PyTorch)
            scalar = np.asarray(node.attrs[0], dtype=node.types[0][1].np)
        args.append(scalar if device == devices.CPU else devices.upload(scalar, device))
    buffers = list(exe(*args))
    for (node, _), buf in zip(roots, buffers[len(outputs) :], strict=True):
        node.data = buf
    return buffers[: len(outputs)]


def backward_roots(graph: Graph, outputs: Sequence[Value]) -> list[Value]:
    """The roots of the ``pg.grad`` ops of ``graph`` (the losses that ``backward()`` was called on) that the graph
    computes on the way to its gradients and that hold no value yet: single-result ops, not among ``outputs``."""
    wanted = {(id(n), i) for n, i in outputs}
    roots: dict[tuple[int, int], Value] = {}
    for node in graph.nodes:
        if node.kind != "grad":
            continue
        root, index = node.srcs[0]
        if root.kind != "leaf" and root.data is None and len(root.types) == 1 and (id(root), index) not in wanted:
            roots.setdefault((id(root), index), (root, index))
    return list(roots.values())


def cache_size() -> int:
    """Number of compiled graphs held (for tests of the structural cache)."""
    return len(_CACHE)


def set_cache_size(n: int) -> int:
    """Keep at most ``n`` compiled graphs (least recently used ones are dropped first; default 512) and return the
    previous bound. Compiled steps also drop theirs when the ``@pg.compile`` function is deleted. Raises
    ``ValueError`` for ``n < 1``."""
    if n < 1:
        raise ValueError(f"set_cache_size: the cache needs room for at least 1 graph, got {n}")
    previous, _LIMIT[0] = _LIMIT[0], n
    while len(_CACHE) > n:
        _CACHE.popitem(last=False)
    return previous


def release(keys: set[tuple]) -> None:
    """Drop the compiled graphs under ``keys`` (those of a deleted compiled function)."""
    for key in keys:
        _CACHE.pop(key, None)


def pending_module(tensors: Sequence[Any], name: str = "main") -> tuple[ModuleOp, list[Any]]:
    """The ``simplify``-stage module that would compute the unrealized CPU ``tensors`` (its results, in order) and
    the host buffers of its arguments (the graph's leaves, in order), without running anything: for tools that run
    a recorded graph on another executor (``tools/fuzz.py`` runs it on the loop interpreter and the PTX emulator).

    Raises ``CompileError`` when a pass rejects the graph."""
    graph = cut([t._value for t in tensors])
    return lower_graph(graph, name), [devices.bind(leaf, devices.CPU) for leaf in graph.leaves]
