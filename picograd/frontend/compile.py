"""``@pg.compile``: trace a whole step (forward, backward, optimizer update) once per input signature, compile it
through the pipeline, and replay it with no Python-level graph work.

Tracing runs the function on tensors whose values are not read: ops record the graph only. Tensor arguments
become the compiled function's inputs; realized tensors the function reads (parameters, optimizer state, the
random generator's offset) become implicit inputs, read afresh from their owners at every call; tensors the
function assigns (``opt.step()``'s updates, ``.grad``) become outputs written back after every call. Runtime
scalars (learning rates) are refreshed by callbacks the optimizers register. The signature is the tensor
arguments' shapes, dtypes and devices plus the other arguments' values; guards on which ``.grad`` were None
catch the remaining cases that change the traced graph. (The approach of tinygrad's TinyJit and JAX's jit.)
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from picograd.backend.numpy_executor import NumpyFunction
from picograd.errors import CompileError
from picograd.frontend.dtypes import as_dtype
from picograd.frontend.graph import STATE, Graph, Node, TraceContext, cut, leaf, lower
from picograd.frontend.realize import compile_graph
from picograd.frontend.tensor import Tensor, realize


@dataclass(frozen=True)
class Spec:
    """The shape and dtype of an example input, for tracing without data: ``pg.Spec((32, 3), "int64")``."""

    shape: tuple[int, ...]
    dtype: Any = "float32"
    device: str = "cpu"

    def example(self) -> Tensor:
        return Tensor(np.zeros(self.shape, dtype=as_dtype(self.dtype).np))


@dataclass
class _Trace:
    """What one trace recorded: the graph, and how its leaves and outputs map to the user's objects."""

    graph: Graph
    ctx: TraceContext
    num_inputs: int
    structure: Any  # the returned value with tensors replaced by output indices
    num_returned: int
    written: list[Tensor]
    grad_owners: list[Tensor]


@dataclass
class _Compiled:
    """One traced signature: the executable and how to bind and write back its buffers."""

    exe: NumpyFunction
    trace: _Trace
    implicit: list[tuple[Node, weakref.ref | None]]
    guards: list[tuple[Tensor, bool]]

    def guards_hold(self) -> bool:
        return all((t._grad is None) == was_none for t, was_none in self.guards)

    def run(self, tensors: Sequence[Tensor]) -> Any:
        tr = self.trace
        for refresh in tr.ctx.refreshers:
            refresh()
        bufs = [_buffer_of(t) for t in tensors]
        for node, owner_ref in self.implicit:
            owner = owner_ref() if owner_ref is not None else None
            bufs.append(_buffer_of(owner) if owner is not None else node.data)
        outs = self.exe(*bufs)
        k = tr.num_returned
        for t, buf in zip(tr.written, outs[k : k + len(tr.written)], strict=True):
            t._set_buffer(buf)
        for p, buf in zip(tr.grad_owners, outs[k + len(tr.written) :], strict=True):
            if p._grad is None:
                p._grad = Tensor(buf)
            else:
                p._grad._set_buffer(buf)
        return _rebuild(tr.structure, outs)


def _buffer_of(t: Tensor) -> np.ndarray:
    if t._buffer is None:
        realize(t)
    buf = t._buffer
    assert buf is not None
    return buf


def _flatten(result: Any, out: list[Tensor]) -> Any:
    if isinstance(result, Tensor):
        out.append(result)
        return ("tensor", len(out) - 1)
    if isinstance(result, tuple | list):
        return (type(result), [_flatten(r, out) for r in result])
    if isinstance(result, dict):
        return (dict, {k: _flatten(v, out) for k, v in result.items()})
    return ("value", result)


def _rebuild(structure: Any, outs: Sequence[np.ndarray]) -> Any:
    kind, payload = structure
    if kind == "tensor":
        return Tensor(outs[payload])
    if kind == "value":
        return payload
    if kind is dict:
        return {k: _rebuild(v, outs) for k, v in payload.items()}
    return kind(_rebuild(v, outs) for v in payload)


def _signature(args: Sequence[Any]) -> tuple:
    sig: list[Any] = []
    for a in args:
        if isinstance(a, Tensor):
            sig.append(("T", a.shape, a.dtype.name, a.device, a.requires_grad))
        else:
            try:
                hash(a)
            except TypeError:
                raise CompileError(f"argument {a!r} of a compiled function is neither a tensor nor hashable") from None
            sig.append(("V", a))
    return tuple(sig)


class CompiledFunction:
    """A function compiled by ``@pg.compile``; call it like the original. ``ir(stage)`` gives its IR."""

    def __init__(self, fn: Callable[..., Any], example_inputs: Sequence[Spec] | None = None):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.example_inputs = tuple(example_inputs) if example_inputs is not None else None
        self._cache: dict[tuple, _Compiled] = {}

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "step")

    def __call__(self, *args: Any) -> Any:
        if STATE.trace is not None:
            return self.fn(*args)  # called from another traced function: trace through
        key = _signature(args)
        compiled = self._cache.get(key)
        if compiled is None or not compiled.guards_hold():
            trace = self._trace(args)
            trace.ctx.rollback()  # the first run below reads the state as it was and writes it back
            guards = list(trace.ctx.grad_reads.values())
            try:
                exe = compile_graph(trace.graph, name=self.name)
            except Exception:
                trace.ctx.rollback()
                raise
            implicit = [(n, n.owner) for n in trace.graph.leaves[trace.num_inputs :]]
            compiled = self._cache[key] = _Compiled(exe, trace, implicit, guards)
        return compiled.run([a for a in args if isinstance(a, Tensor)])

    def _trace(self, args: Sequence[Any]) -> _Trace:
        """Run ``fn`` on placeholder tensors, recording the graph (nothing is computed)."""
        ctx = TraceContext()
        inputs: list[Node] = []
        traced_args: list[Any] = []
        for a in args:
            if isinstance(a, Tensor):
                t = Tensor._wrap(leaf(np.zeros(a.shape, a.dtype.np), a.dtype), 0, a.requires_grad)
                inputs.append(t._node)
                traced_args.append(t)
            else:
                traced_args.append(a)
        STATE.trace = ctx
        try:
            result = self.fn(*traced_args)
        finally:
            STATE.trace = None
        returned: list[Tensor] = []
        structure = _flatten(result, returned)
        written = list(ctx.writes.values())
        grad_owners = [t for t in ctx.grad_writes.values() if t._grad is not None]
        targets = returned + written + [t._grad for t in grad_owners]
        graph = cut([t._value for t in targets], first_leaves=inputs)
        return _Trace(graph, ctx, len(inputs), structure, len(returned), written, grad_owners)

    def ir(self, stage: str = "pg", args: Sequence[Any] | None = None) -> ModuleOp:
        """The traced step as a module at ``stage`` (``picograd.pipeline.STAGES``), traced from ``args`` or the
        ``example_inputs`` specs. Parameters, gradients and optimizer state are left as they were.

        Raises ``CompileError`` without args or example inputs."""
        from picograd.pipeline import lower_to

        if args is None:
            if self.example_inputs is None:
                raise CompileError(f"{self.name}: ir() needs args or @pg.compile(example_inputs=...)")
            args = [s.example() if isinstance(s, Spec) else s for s in self.example_inputs]
        trace = self._trace(args)
        trace.ctx.rollback()
        return lower_to(ModuleOp([lower(trace.graph, self.name)]), stage)


def compile(fn: Callable[..., Any] | None = None, *, example_inputs: Sequence[Spec] | None = None) -> Any:
    """Compile a train (or inference) step: ``@pg.compile`` or ``@pg.compile(example_inputs=(pg.Spec(...),))``.

    The first call with a new signature traces ``fn`` and runs the compiled step exactly once; later calls bind
    buffers and run it. Raises ``CompileError`` when ``fn`` reads a value while tracing (``.item()``, ``print``)
    or when a pass rejects the traced graph."""
    if fn is None:
        return lambda f: CompiledFunction(f, example_inputs)
    return CompiledFunction(fn, example_inputs)
