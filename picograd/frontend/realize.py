"""Realizing lazy values: cut out the graph, compile it once per structure and device, bind buffers, run.

The compile cache is keyed by the graph's structural key (``graph.cut``) and the device, so an eager training
loop that records the same graph every step compiles it once.

On "cpu" the graph is lowered to ``pg``, taken through the pipeline to the ``simplify`` stage and run by the numpy
executor. On "cuda" the same ``simplify``-stage module goes to ``picograd.backend.gpu_compile.compile_for_cuda``,
which takes it the rest of the way to PTX; its ``Executable`` takes the function's arguments (the graph's leaves,
in order) as device buffers and returns its results as device buffers. Leaves that live on the other device (0-d
scalars, see ``picograd.frontend.tensor``) are copied by ``device.bind``, which caches the copies.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from picograd.backend.numpy_executor import compile_func
from picograd.errors import CompileError
from picograd.frontend import device as devices
from picograd.frontend.graph import Graph, Value, cut, lower
from picograd.pipeline import lower_to

_CACHE: dict[tuple, Any] = {}
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
    from picograd.passes.matmul_schedule import check_schedule

    token = _MATMUL_SCHEDULE.set(check_schedule(name))
    try:
        yield
    finally:
        _MATMUL_SCHEDULE.reset(token)


# The stage the frontend hands to a backend: after autodiff, the optimizer rewrites and simplification.
BACKEND_STAGE = "simplify"


def cuda_compiler() -> Callable[..., Any]:
    """``compile_for_cuda(module, matmul_schedule=...) -> CudaProgram`` of ``picograd.backend.gpu_compile``
    (imported on first use, so that CPU-only use never loads it; tests stand a fake in for this function)."""
    from picograd.backend.gpu_compile import compile_for_cuda

    return compile_for_cuda


def lower_graph(graph: Graph, name: str = "main") -> ModuleOp:
    """The module holding ``graph`` as a ``func.func`` at the backend stage (``simplify``).

    Raises ``CompileError`` naming the pass's complaint when a pass rejects the graph."""
    module = ModuleOp([lower(graph, name)])
    try:
        lower_to(module, BACKEND_STAGE)
    except (VerifyException, DiagnosticException) as e:
        raise CompileError(f"compiling {name} failed: {e}") from None
    return module


def compile_graph(graph: Graph, device: str = "cpu", name: str = "main", eager: bool = True) -> Any:
    """The executable of ``graph`` for ``device``, from the cache or built by the pipeline: a
    ``NumpyFunction`` on "cpu", a ``picograd.backend.cuda.Executable`` on "cuda" (both called with one buffer per
    leaf and returning one buffer per output).

    ``eager`` says how a GPU executable will be called: a graph realized eagerly rarely sees the same buffers
    twice, so it captures a CUDA graph only for a buffer set seen twice (plain launches before that); a compiled
    step (``eager=False``) binds stable buffers and captures at once. Raises ``CompileError`` when a pass rejects
    the graph."""
    schedule = _MATMUL_SCHEDULE.get()
    key = (graph.key, device) if device == devices.CPU else (graph.key, device, eager, schedule)
    exe = _CACHE.get(key)
    if exe is None:
        module = lower_graph(graph, name)
        if device == devices.CPU:
            exe = compile_func(module.body.block.first_op)  # type: ignore[arg-type]
        else:
            program = cuda_compiler()(module, matmul_schedule=schedule)
            # eager: capture a buffer set's graph at its second call only; a compiled step: keep a graph for each of
            # the few address sets its rotating output buffers and inputs give (see compile._CudaBinding)
            exe = program.executable(capture_after=2) if eager else program.executable(max_graphs=8)
        _CACHE[key] = exe
    return exe


def run_graph(outputs: Sequence[Value], device: str = "cpu") -> list[Any]:
    """Compute ``outputs`` (values of the recorded graph) on ``device`` and return their buffers (numpy arrays on
    "cpu", device buffers on "cuda")."""
    graph = cut(outputs)
    exe = compile_graph(graph, device)
    return list(exe(*[devices.bind(leaf, device) for leaf in graph.leaves]))


def cache_size() -> int:
    """Number of compiled graphs held (for tests of the structural cache)."""
    return len(_CACHE)


def pending_module(tensors: Sequence[Any], name: str = "main") -> tuple[ModuleOp, list[Any]]:
    """The ``simplify``-stage module that would compute the unrealized CPU ``tensors`` (its results, in order) and
    the host buffers of its arguments (the graph's leaves, in order), without running anything: for tools that run
    a recorded graph on another executor (``tools/fuzz.py`` runs it on the loop interpreter and the PTX emulator).

    Raises ``CompileError`` when a pass rejects the graph."""
    graph = cut([t._value for t in tensors])
    return lower_graph(graph, name), [devices.bind(leaf, devices.CPU) for leaf in graph.leaves]
