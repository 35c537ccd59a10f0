"""Realizing lazy values: cut out the graph, compile it once per structure, bind buffers, run.

The compile cache is keyed by the graph's structural key (``graph.cut``) and the device, so an eager training
loop that records the same graph every step compiles it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from picograd.backend.numpy_executor import NumpyFunction, compile_func
from picograd.errors import CompileError
from picograd.frontend.graph import Graph, Value, cut, lower
from picograd.pipeline import lower_to

_CACHE: dict[tuple, NumpyFunction] = {}


def compile_graph(graph: Graph, device: str = "cpu", name: str = "main") -> NumpyFunction:
    """The executable of ``graph`` for ``device``, from the cache or built by the pipeline.

    Raises ``CompileError`` naming the pass's complaint when a pass rejects the graph."""
    key = (graph.key, device)
    exe = _CACHE.get(key)
    if exe is None:
        module = ModuleOp([lower(graph, name)])
        try:
            lower_to(module, "simplify")
        except (VerifyException, DiagnosticException) as e:
            raise CompileError(f"compiling {name} failed: {e}") from None
        exe = compile_func(module.body.block.first_op)  # type: ignore[arg-type]
        _CACHE[key] = exe
    return exe


def run_graph(outputs: Sequence[Value], device: str = "cpu") -> list[Any]:
    """Compute ``outputs`` (values of the recorded graph) and return their buffers."""
    graph = cut(outputs)
    exe = compile_graph(graph, device)
    return list(exe(*[leaf.data for leaf in graph.leaves]))


def cache_size() -> int:
    """Number of compiled graphs held (for tests of the structural cache)."""
    return len(_CACHE)
