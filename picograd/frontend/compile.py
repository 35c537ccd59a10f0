"""``@pg.compile``: trace a whole step (forward, backward, optimizer update) once per input signature, compile it
through the pipeline, and replay it with no Python-level graph work.

Tracing runs the function on tensors whose values are not read: ops record the graph only. Tensor arguments
become the compiled function's inputs; realized tensors the function reads (parameters, optimizer state, the
random generator's offset) become implicit inputs, read afresh from their owners at every call; tensors the
function assigns (``opt.step()``'s updates, ``.grad``) become outputs written back after every call. Runtime
scalars (learning rates) are refreshed by callbacks the optimizers register. A tensor argument that the user made
require grad gets its ``.grad`` written back like a parameter's. The signature is the tensor arguments' shapes,
dtypes, devices and autograd state plus the other arguments' types and values, and the autocast state and ``allow_tf32``
(``picograd.frontend.amp``) it is called under; guards catch the remaining cases that change
the traced graph or what it reads, as torch.compile's do, and make the next call trace again: which ``.grad``
were None, the global names and closure cells the function and the user functions and modules it reaches read
(objects by identity, Python scalars by type and value; see ``_Bindings``), attribute assignments on any
``nn.Module`` (a counter), what the user's code reached through those objects while traced (dict and list entries,
plain objects' attributes; ``picograd.frontend.guards``) and what library code declared it read (an optimizer's
parameters, flags and state tensors; ``TraceContext.checks``). A call checks them in a few microseconds. (The
approach of tinygrad's TinyJit and JAX's jit.)

On "cuda" a call binds device buffers and replays one CUDA graph (``picograd.runtime.cuda.Executable``), which is
cached under the addresses of the buffers it was captured with; ``_CudaBinding`` keeps those addresses stable, so
that a training loop replays the same few graphs:

- outputs are written into buffers from a small ring per output that the step owns. A buffer is reused once
  nothing but the ring refers to it (its reference count says so): the parameters' previous buffers, the loss of
  two calls ago. An updated parameter is thus never written in place (a kernel may still read its old value), a
  tensor the user kept is never overwritten, and a training loop alternates between two address sets;
- an output whose ring keeps running dry after the first calls (the user keeps every loss, or a snapshot of a
  parameter every step) is from then on written into the step's own buffers and copied into a fresh one for the
  caller; a parameter's own buffer then also stands in for the fresh copy as the next call's input;
- host values a GPU step reads (0-d hyperparameters, the step count and RNG offset before their first update) go
  into one device buffer per input, copied (8 bytes) only when the value changed;
- an explicit input passed again in the same buffer is bound as it is; a small one in a new buffer (a fresh batch
  every step) is copied into the step's own buffer for that input, a device-to-device copy that is much cheaper
  than capturing a graph for the new address.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import sys
import types
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from picograd.errors import CompileError
from picograd.frontend import amp
from picograd.frontend import device as devices
from picograd.frontend.dtypes import as_dtype
from picograd.frontend.graph import (
    DETACHED,
    STATE,
    Graph,
    Node,
    TraceContext,
    at,
    cut,
    leaf,
    lower,
    replay,
    user_location,
)
from picograd.frontend.guards import BY_VALUE, Reads, is_user_file, recording, same
from picograd.frontend.realize import compile_graph, current_matmul_schedule, matmul_schedule, release
from picograd.frontend.tensor import Tensor, realize
from picograd.passes.kinds.matmul_rungs import check_schedule
from picograd.runtime import cuda
from picograd.runtime.device import Device


@dataclass(frozen=True, init=False)
class Spec:
    """The shape, dtype and device of an example input, for tracing without data: ``pg.Spec((32, 3), "int64")``.

    Raises ``CompileError`` for a shape that is not a tuple (or list, or int) of non-negative ints, ``DTypeError``
    for an unknown dtype and ``DeviceError`` for an unknown device, naming the user's ``file:line``."""

    shape: tuple[int, ...]
    dtype: Any
    device: Device

    def __init__(self, shape: Any, dtype: Any = "float32", device: Any = "cpu") -> None:
        dims = (shape,) if isinstance(shape, int | np.integer) else shape
        if not isinstance(dims, tuple | list) or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            loc = user_location()
            raise CompileError(f"pg.Spec: shape must be a tuple of non-negative ints, got {shape!r}{at(loc)}")
        as_dtype(dtype)  # DTypeError naming the supported dtypes
        dev = devices.canonical(device, user_location())  # DeviceError for an unknown device
        object.__setattr__(self, "shape", tuple(int(d) for d in dims))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "device", dev)

    def example(self) -> Tensor:
        """A placeholder tensor of this spec (host zeros, counted as living on ``device``; no GPU needed)."""
        dtype = as_dtype(self.dtype)
        return Tensor._wrap(leaf(np.zeros(self.shape, dtype=dtype.np), dtype, device=self.device))


@dataclass
class _Trace:
    """What one trace recorded: the graph, and how its leaves and outputs map to the user's objects."""

    graph: Graph
    ctx: TraceContext
    num_inputs: int
    structure: Any  # the returned value with tensors replaced by output indices
    num_returned: int
    written: list[Tensor]
    grad_owners: list[Tensor | int]  # a tensor, or the position of the explicit argument whose .grad is written
    grad_inputs: list[int]  # explicit arguments whose .grad is an input (after the arguments themselves)
    differentiable: list[int]  # returned outputs that require grad, when the function ran no backward() itself
    detached: str | None  # why returned outputs that required grad when traced come back detached
    reads: Reads  # what the user's code reached through its objects while traced (guards)
    grad_cleared: list[Tensor | int] = field(default_factory=list)  # .grad set to None by the step (zero_grad)
    # returned outputs that are the user's tensors themselves (a parameter, an argument): eager code returns that
    # tensor, which follows later updates, so a call returns it too (the tensor, or its argument position)
    same: list[tuple[int, Tensor | int]] = field(default_factory=list)
    written_args: dict[int, int] = field(default_factory=dict)  # index in written -> the argument it stands for


class _Retrace(Exception):
    """An input's device no longer matches the trace (the model moved): trace again."""


def _calibrate_free_refcount() -> int:
    """``sys.getrefcount(ring[i])`` of an object that only the list ``ring`` refers to (interpreters differ)."""
    ring = [object()]
    return sys.getrefcount(ring[0])


_FREE_REFCOUNT = _calibrate_free_refcount()


def _calibrate_attribute_refcount() -> int:
    """``sys.getrefcount(owner.attr)`` of an object that only that attribute refers to."""

    class Owner:
        attr: object = None

    owner = Owner()
    owner.attr = object()
    return sys.getrefcount(owner.attr)


_ATTRIBUTE_REFCOUNT = _calibrate_attribute_refcount()
_RETRACE_WARNING = 8  # guard-driven retraces of one compiled function after which it warns (torch's recompile limit)
_RING_SIZE = 3  # buffers per output: the one being written, the one the user holds, one being released
_WARMUP_CALLS = 3  # calls in which the rings fill up
_ALLOCATIONS_BEFORE_COPY_OUT = 3  # ring allocations after the warm-up that switch an output to copy-out
_STAGE_LIMIT_BYTES = 1 << 16  # explicit inputs up to this size in a new buffer are copied into a stable one


def _take(ring: list[Any], spec: Any) -> tuple[Any, bool]:
    """A buffer of ``spec`` from ``ring`` that nothing else refers to, or a new one added to it (then True)."""
    for i in range(len(ring)):
        if sys.getrefcount(ring[i]) == _FREE_REFCOUNT:
            return ring[i], False
    buf = cuda.DeviceBuffer(spec.shape, spec.dtype)
    ring.append(buf)
    if len(ring) > _RING_SIZE:
        del ring[0]
    return buf, True


class _HostMirror:
    """A stable device buffer holding a host array that a GPU step reads, re-copied only when the bytes change
    (arrays over ``device.MIRROR_LIMIT_BYTES`` are copied on every call)."""

    __slots__ = ("buffer", "key")

    def __init__(self) -> None:
        self.buffer: Any = None
        self.key: bytes | None = None

    def get(self, array: np.ndarray) -> Any:
        key = array.tobytes() if array.nbytes <= devices.MIRROR_LIMIT_BYTES else None
        if key is not None and key == self.key:
            return self.buffer
        buf = self.buffer
        if buf is None or buf.shape != array.shape or buf.dtype != array.dtype:
            buf = self.buffer = cuda.DeviceBuffer(array.shape, array.dtype)
        buf.copy_from(array)  # stream-ordered after the previous replay that read it
        self.key = key
        return buf


class _CopyOut:
    """An output written into the step's own buffers and copied out to the caller (see the module docstring).

    ``own`` holds two buffers that alternate when the output is a tensor the step also reads (a parameter): the
    one holding the current value stands in for the caller's copy of it (``handed``) as the next call's input."""

    __slots__ = ("own", "handed", "current")

    def __init__(self, spec: Any, alternate: bool) -> None:
        self.own = [cuda.DeviceBuffer(spec.shape, spec.dtype) for _ in range(2 if alternate else 1)]
        self.handed: Any = None  # the last fresh copy given out
        self.current = 0  # the own buffer holding the value of ``handed``

    def target(self) -> Any:
        if len(self.own) == 2:
            self.current ^= 1
        return self.own[self.current]


@dataclass
class _CudaBinding:
    """How one compiled GPU step binds its buffers (see the module docstring)."""

    expected: list[Device]  # the device of each input's leaf at trace time
    scalar: list[bool]  # whether each input is 0-d
    num_explicit: int
    output_specs: Sequence[Any]
    reads: dict[int, int]  # output index -> the input index of the same tensor (a parameter the step updates)
    deferred_checks: bool = False  # the executable checks indices after the call (its calls take an undo)
    on_host: list[bool] = field(default_factory=list)  # per input: traced on the CPU (a host value is expected)
    mirrors: list[_HostMirror | None] = field(default_factory=list)
    staged: list[Any] = field(default_factory=list)
    last_explicit: list[int] = field(default_factory=list)  # the address each explicit input had last call
    rings: list[list[Any]] = field(default_factory=list)
    allocations: list[int] = field(default_factory=list)  # per output: ring allocations after the warm-up calls
    copy_out: list[_CopyOut | None] = field(default_factory=list)
    stand_in: dict[int, _CopyOut] = field(default_factory=dict)  # input index -> the copied-out output it reads
    calls: int = 0

    def __post_init__(self) -> None:
        self.on_host = [d == devices.CPU for d in self.expected]
        self.mirrors = [None] * len(self.expected)
        self.staged = [None] * self.num_explicit
        self.last_explicit = [0] * self.num_explicit
        self.rings = [[] for _ in self.output_specs]
        self.allocations = [0] * len(self.output_specs)
        self.copy_out = [None] * len(self.output_specs)

    def inputs(self, datas: Sequence[Any]) -> list[Any]:
        """Device buffers for the inputs' current values; ``_Retrace`` when one moved to another device."""
        bound = []
        for i, data in enumerate(datas):
            if isinstance(data, np.ndarray):
                if not self.on_host[i] and not self.scalar[i]:
                    raise _Retrace
                mirror = self.mirrors[i]
                if mirror is None:
                    mirror = self.mirrors[i] = _HostMirror()
                data = mirror.get(data)
            elif self.on_host[i] and not self.scalar[i]:
                raise _Retrace
            elif i < self.num_explicit:
                ptr = data.ptr
                if ptr != self.last_explicit[i] and data.nbytes <= _STAGE_LIMIT_BYTES:
                    stage = self.staged[i]
                    if stage is None:
                        stage = self.staged[i] = cuda.DeviceBuffer(data.shape, data.dtype)
                    stage.copy_from(data)
                    data = stage
                self.last_explicit[i] = ptr
            elif self.stand_in:
                out = self.stand_in.get(i)
                if out is not None and data is out.handed:
                    data = out.own[out.current]
            bound.append(data)
        return bound

    def outputs(self) -> list[Any]:
        """Output buffers: a free buffer from each output's ring (or the step's own, for a copied-out output)."""
        self.calls += 1
        out = []
        for j, spec in enumerate(self.output_specs):
            own = self.copy_out[j]
            if own is not None:
                out.append(own.target())
                continue
            buf, fresh = _take(self.rings[j], spec)
            if fresh and self.calls > _WARMUP_CALLS:
                self.allocations[j] += 1
                if self.allocations[j] >= _ALLOCATIONS_BEFORE_COPY_OUT:
                    own = self.copy_out[j] = _CopyOut(spec, j in self.reads)
                    if j in self.reads:
                        self.stand_in[self.reads[j]] = own
                    self.rings[j] = []
                    buf = own.target()
            out.append(buf)
        return out

    def finish(self, outs: Sequence[Any], exe: Any) -> Sequence[Any]:
        """After a call of ``exe``: copy the copied-out outputs into fresh buffers for the caller (which count as
        the call's outputs for its deferred index checks)."""
        if not any(own is not None for own in self.copy_out):
            return outs
        outs = list(outs)
        fresh_copies = []
        for j, own in enumerate(self.copy_out):
            if own is not None:
                outs[j] = own.handed = fresh = cuda.DeviceBuffer(self.output_specs[j].shape, self.output_specs[j].dtype)
                fresh.copy_from(own.own[own.current])
                fresh_copies.append(fresh)
        if self.deferred_checks:
            exe.note_outputs(fresh_copies)
        return outs


_MISSING = object()
_BACKWARD_KINDS = ("grad", "sgd", "adam", "adamw")  # a traced graph holding one ran backward() or a step itself


@dataclass
class _Bindings:
    """The global names and closure cells a traced function (and the functions, modules' methods it reaches through
    them) reads, with the values they held at trace time: a call whose bindings differ traces again, as
    torch.compile's guards. Tensors, modules and other objects are compared by identity, Python scalars by value
    (a scalar is baked into the trace as a constant)."""

    same: list[tuple[Mapping[str, Any], str, Any]] = field(default_factory=list)
    equal: list[tuple[Mapping[str, Any], str, Any]] = field(default_factory=list)
    cells: list[tuple[Any, Any]] = field(default_factory=list)

    def hold(self) -> bool:
        for scope, name, value in self.same:
            if scope.get(name, _MISSING) is not value:
                return False
        for scope, name, value in self.equal:
            if not same(scope.get(name, _MISSING), value):
                return False
        for cell, value in self.cells:
            try:
                if cell.cell_contents is not value:
                    return False
            except ValueError:  # the cell was emptied
                return False
        return True

    def record(self, fn: Any, seen: set[int], depth: int = 0) -> None:
        """Add the bindings ``fn`` reads (user functions it reads are followed ``depth`` < 4 deep; library code is
        not: its globals are not the user's to rebind)."""
        fn = getattr(fn, "__func__", fn)  # a bound method: its function
        code = getattr(fn, "__code__", None)
        if code is None or id(code) in seen or depth >= 4 or not is_user_file(code.co_filename):
            return
        seen.add(id(code))
        scope = fn.__globals__
        names, attrs = _global_reads(code)
        for name in names:
            if name in scope:
                self._add(scope, name, scope[name], seen, depth)
        for name, attr in attrs:  # `mymodule.model`, `config.lr`, `Config.lr`: attributes of the user's own modules,
            mod = scope.get(name)  # objects and classes (as torch.compile guards them)
            if isinstance(mod, types.ModuleType):
                user = is_user_file(getattr(mod, "__file__", None))
            else:
                cls = mod if isinstance(mod, type) else type(mod)
                user = hasattr(mod, "__dict__") and is_user_file(
                    getattr(sys.modules.get(cls.__module__), "__file__", None)
                )
            if user:
                space = vars(mod)
                if attr in space:
                    self._add(space, attr, space[attr], seen, depth)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.cells.append((cell, value))
            self._follow(value, seen, depth)

    def _add(self, scope: Mapping[str, Any], name: str, value: Any, seen: set[int], depth: int) -> None:
        if isinstance(value, types.ModuleType | type | types.BuiltinFunctionType):
            return  # imports and classes: their attributes are not bindings of the step
        if isinstance(value, BY_VALUE):
            self.equal.append((scope, name, value))
            return
        self.same.append((scope, name, value))
        self._follow(value, seen, depth)

    def _follow(self, value: Any, seen: set[int], depth: int) -> None:
        from picograd.frontend.nn.modules import Module

        if isinstance(value, types.FunctionType | types.MethodType | CompiledFunction):
            self.record(value.fn if isinstance(value, CompiledFunction) else value, seen, depth + 1)
        elif isinstance(value, Module):  # the methods of its modules may read globals of their own files
            for m in value.modules():
                for attr in vars(type(m)).values():
                    if isinstance(attr, types.FunctionType):
                        self.record(attr, seen, depth + 1)


@functools.lru_cache(maxsize=1024)
def _global_reads(code: types.CodeType) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """The global names ``code`` (and the code nested in it) loads, and the ``(global, attribute)`` pairs it reads
    as ``global.attribute``."""
    names: set[str] = set()
    attrs: set[tuple[str, str]] = set()
    previous = None
    for i in dis.get_instructions(code):
        if i.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(i.argval)
        elif i.opname in ("LOAD_ATTR", "LOAD_METHOD") and previous is not None:
            attrs.add((previous, i.argval))
        previous = i.argval if i.opname in ("LOAD_GLOBAL", "LOAD_NAME") else None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_names, inner_attrs = _global_reads(const)
            names |= inner_names
            attrs |= inner_attrs
    return frozenset(names), frozenset(attrs)


@dataclass
class _Compiled:
    """One traced signature: the executable and how to bind and write back its buffers."""

    exe: Any
    trace: _Trace
    implicit: list[tuple[Node, weakref.ref | None, weakref.ref | None]]  # leaf, its owner, the param of a .grad
    guards: list[tuple[Tensor, bool]]
    device: Device
    bindings: _Bindings
    version: int  # ``STATE.bindings`` when traced (module attributes)
    binding: _CudaBinding | None = None
    requires: list[tuple[weakref.ref, bool]] = field(default_factory=list)  # tensors read and their requires_grad
    owners: dict[int, weakref.ref] = field(default_factory=dict)  # id -> the tensors it reads itself (parameters)

    def aliased(self, args: Sequence[Any]) -> int | None:
        """The position of a tensor argument that is also a tensor the step reads itself (``step(x, model.weight)``
        for a step that calls ``model``), or None: the trace holds two inputs for what eager code sees as one."""
        owners = self.owners
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and id(a) in owners and owners[id(a)]() is a:
                return i
        return None

    def guards_hold(self) -> bool:
        """Whether every guard of this trace holds (the hot path of each call: plain loops, cheapest first)."""
        if STATE.bindings != self.version:
            return False
        for t, was_none in self.guards:
            if (t._grad is None) != was_none:
                return False
        for ref, flag in self.requires:
            held = ref()
            if held is not None and held._requires_grad != flag:
                return False
        ctx = self.trace.ctx
        for m, mode in ctx.mode_reads.values():
            if m._training != mode:
                return False
        for check, then in ctx.checks:
            if check() != then:
                return False
        return self.bindings.hold() and self.trace.reads.hold()

    def failed_guard(self) -> str:
        """What changed since the trace, in words (the first guard that fails)."""
        if STATE.bindings != self.version:
            return "an attribute of an nn.Module was assigned"
        if not all((t._grad is None) == was_none for t, was_none in self.guards):
            return "a .grad that was None is set, or the other way round"
        if not all(t is None or t._requires_grad == flag for t, flag in ((r(), f) for r, f in self.requires)):
            return "the requires_grad of a tensor it reads"
        for m, mode in self.trace.ctx.mode_reads.values():
            if m._training != mode:
                return f"{type(m).__name__}.training"
        if not all(check() == then for check, then in self.trace.ctx.checks):
            return "an optimizer's parameters, settings or state"
        if not self.bindings.hold():
            return "a global or closure variable it reads was rebound"
        return self.trace.reads.failed() or "nothing any more"

    def run(self, tensors: Sequence[Tensor]) -> Any:
        """Bind the current buffers, run, write the results back; ``_Retrace`` when an input changed device."""
        tr = self.trace
        for refresh in tr.ctx.refreshers:
            refresh()
        sources: list[Tensor | Node] = list(tensors)
        sources += [tensors[k]._grad for k in tr.grad_inputs]  # type: ignore[misc]  # the signature says it is set
        for node, owner_ref, grad_of in self.implicit:
            if grad_of is not None:  # a parameter's .grad: read through the parameter, whose .grad may be rebound
                param = grad_of()
                owner = param._grad if param is not None else None
            else:
                owner = owner_ref() if owner_ref is not None else None
            sources.append(owner if owner is not None else node)
        datas = [_buffer_of(s) if isinstance(s, Tensor) else s.data for s in sources]
        # the inputs' values as this call reads them (before the write-back), for outputs that require grad
        values = [s._value if isinstance(s, Tensor) else (s, 0) for s in sources] if tr.differentiable else None
        del sources
        binding = self.binding
        grad_owners = [_resolve(o, tensors) for o in tr.grad_owners]
        cleared = [_resolve(o, tensors) for o in tr.grad_cleared]
        written = tr.written
        if tr.written_args:  # ``x.data = ...`` on an argument: write the argument, not the trace's placeholder
            written = [tensors[tr.written_args[i]] if i in tr.written_args else t for i, t in enumerate(written)]
        if binding is None:
            outs = self.exe(*[d if isinstance(d, np.ndarray) else _host_scalar(d) for d in datas])
        else:
            bound = binding.inputs(datas)
            del datas  # the ring's reference counts must not see these
            undo = _undo_of(written, grad_owners + cleared) if binding.deferred_checks else None
            outs = self.exe(*bound, out=binding.outputs(), undo=undo)
            del bound, undo
            outs = binding.finish(outs, self.exe)
        k = tr.num_returned
        device = self.device
        for t, buf in zip(written, outs[k : k + len(written)], strict=True):
            t._set_buffer(buf, device)
        for p, buf in zip(grad_owners, outs[k + len(written) :], strict=True):
            # eager backward() makes a new .grad: one the user kept holds its value (a log of gradients); one that only
            # its parameter refers to takes the new buffer (cheaper: no tensor made a call)
            g = p._grad
            if g is not None and sys.getrefcount(p._grad) == _ATTRIBUTE_REFCOUNT + 1:  # + 1: the local g
                g._set_buffer(buf, device)
            else:
                p._grad = Tensor._of_buffer(buf, device)
            del g
        for p in cleared:  # a step that ends with opt.zero_grad() leaves no .grad, as in eager code
            p._grad = None
        returned: list[Tensor] = [Tensor._of_buffer(buf, device) for buf in outs[:k]]
        if values is not None:
            graph = tr.graph
            for i, (node, index) in zip(tr.differentiable, replay(graph, values, tr.differentiable), strict=True):
                if node.kind != "leaf" and len(node.types) == 1:
                    node.data = outs[i]  # computed: reading it runs nothing; backward() recomputes through it
                returned[i] = Tensor._wrap(node, index, requires_grad=True)
        elif tr.detached is not None:
            for t in returned:
                DETACHED[t._node] = tr.detached
        for i, o in tr.same:
            returned[i] = _resolve(o, tensors)
        return _rebuild(tr.structure, returned)


def _undo_of(written: Sequence[Tensor], grad_owners: Sequence[Tensor]) -> Callable[[], None] | None:
    """A function that puts back the values a compiled call's write-back is about to replace (the written tensors'
    buffers, the ``.grad`` of ``grad_owners``), for a call whose index checks fail later (``ProgramExecutable``);
    None when a written tensor holds no buffer now (a lazy value: nothing to put back)."""
    old = [(t, t._buffer) for t in written]
    # the buffers, not the .grad tensors: a .grad that only its parameter holds is reused by the write-back
    grads = [(p, p._grad is not None, p._grad._buffer if p._grad is not None else None) for p in grad_owners]
    if any(b is None for _, b in old) or any(had and b is None for _, had, b in grads):
        return None

    def undo() -> None:
        for t, buf in old:
            t._set_buffer(buf)
        for p, had, buf in grads:
            if not had:
                p._grad = None
            elif p._grad is None:
                p._grad = Tensor._of_buffer(buf)
            else:
                p._grad._set_buffer(buf)

    return undo


def _current_owner(node: Node) -> weakref.ref | None:
    """The owner of the leaf ``node`` when the leaf is its owner's value now: each call then reads the owner's value
    afresh (a parameter the optimizer updated). A leaf its owner has moved on from is a snapshot that a lazy value
    recorded before the trace reads (the random generator's offset when ``x = pg.randn(3)`` was drawn, for a
    compiled function reading ``x``): its value is the leaf's own, on every call."""
    ref = node.owner
    owner = ref() if ref is not None else None
    return ref if owner is not None and owner._node is node else None


def _host_scalar(data: Any) -> np.ndarray:
    """A device value read by a CPU step: only 0-d values may be (anything else means the model moved)."""
    if data.shape:
        raise _Retrace
    return devices.download(data)


def _buffer_of(t: Tensor) -> Any:
    """The realized buffer of ``t`` (realizing it first if it is lazy). Only leaves and single-result ops ever hold
    ``data``, so the node's ``data`` is the tensor's value when it is set."""
    data = t._node.data
    if data is None:
        realize(t)
        data = t._node.data
    return data


def _flatten(result: Any, out: list[Tensor]) -> Any:
    if isinstance(result, Tensor):
        out.append(result)
        return ("tensor", len(out) - 1)
    if isinstance(result, tuple | list):
        return (type(result), [_flatten(r, out) for r in result])
    if isinstance(result, dict):
        return (dict, {k: _flatten(v, out) for k, v in result.items()})
    return ("value", result)


def _rebuild(structure: Any, outs: Sequence[Tensor]) -> Any:
    kind, payload = structure
    if kind == "tensor":
        return outs[payload]
    if kind == "value":
        return payload
    if kind is dict:
        return {k: _rebuild(v, outs) for k, v in payload.items()}
    items = [_rebuild(v, outs) for v in payload]
    if kind is not tuple and issubclass(kind, tuple):  # a named tuple (``x.max(dim)``, ``sort``, ``topk``)
        return kind(*items)
    return kind(items)


def _signature(args: Sequence[Any], fn: Callable[..., Any]) -> tuple:
    sig: list[Any] = []
    seen: dict[int, int] = {}  # id(tensor argument) -> its first position
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            first = seen.setdefault(id(a), i)
            if first != i:  # the same tensor again (step(x, x)): one input, whose .grad gets both gradients
                sig.append(("A", first))
                continue
            sig.append(("T", a.shape, a.dtype.name, a.device, a.requires_grad, a.is_leaf, a._grad is None))
        else:
            try:
                hash(a)
            except TypeError:
                raise CompileError(_unhashable_argument(fn, i, a)) from None
            sig.append(("V", _typed(a)))
    return tuple(sig)


def _typed(value: Any) -> Any:
    """``value`` keyed with its type, inside tuples too: ``2``, ``2.0`` and ``True`` are equal and hash alike, but a
    trace made for one is wrong for another (``x * 2`` keeps an integer dtype, ``x * 2.0`` does not)."""
    if type(value) is tuple:
        return (tuple, tuple(_typed(v) for v in value))
    return (type(value), value)


def _resolve(o: Tensor | int, tensors: Sequence[Tensor]) -> Tensor:
    """A trace's reference to a tensor: the tensor itself, or (an int) the call's tensor argument at that position."""
    return tensors[o] if isinstance(o, int) else o


def _which(fn: Callable[..., Any], i: int, what: str = "argument") -> str:
    """``argument 2 (y)``: the ``i``-th positional argument of ``fn``, with its parameter's name where known."""
    pname = _parameter_name(fn, i)
    return f"{what} {i}" + (f" ({pname})" if pname else "")


def _parameter_name(fn: Callable[..., Any], i: int) -> str | None:
    """The name of ``fn``'s ``i``-th positional parameter, when its signature says it."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY, params[i].POSITIONAL_OR_KEYWORD):
        return params[i].name
    return None


def _unhashable_argument(fn: Callable[..., Any], i: int, a: Any) -> str:
    """The message for an argument that is neither a tensor nor hashable (so it cannot key the compile cache):
    its name, type and shape (never its value, which may be a large array), what to pass instead and where."""
    which = _which(fn, i)
    kind = type(a)
    what = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    shape = getattr(a, "shape", None)
    if isinstance(shape, tuple):
        what += f" of shape {shape} and dtype {getattr(a, 'dtype', '?')}"
        hint = f"pass a tensor instead: pg.tensor({_parameter_name(fn, i) or '...'})"
    elif isinstance(a, list | dict | set):
        what += f" of length {len(a)}"
        values = a.values() if isinstance(a, dict) else a
        if any(isinstance(v, Tensor) for v in values):  # a tuple of them would key the cache by the tensors' identity
            hint = "pass its tensors as separate arguments (step(*xs)): the tensor arguments are the inputs"
        else:
            hint = "pass a tensor (pg.tensor(...)) or a hashable value such as a tuple instead"
    else:
        hint = "pass a tensor (pg.tensor(...)) or a hashable value instead"
    return (
        f"{getattr(fn, '__name__', 'step')}: {which} is a {what}; a compiled function takes tensors and hashable "
        f"values (which key its cache): {hint}{at(user_location())}"
    )


_EXAMPLE_INPUTS_TAKE = (
    "example_inputs takes one entry per argument: pg.Spec(shape, dtype) for a tensor, the value itself otherwise, "
    "e.g. example_inputs=(pg.Spec((32, 3), 'int64'),)"
)


def _check_example_inputs(fn: Callable[..., Any], example_inputs: Any) -> tuple[Any, ...]:
    """``example_inputs`` as a tuple, once checked: a sequence holding a ``Spec`` (or a tensor) per tensor argument
    and a hashable value per other argument, as many as ``fn`` takes. Raises ``CompileError`` saying what
    ``example_inputs`` takes and where the decorator is, for a bare ``Spec``, a shape where a ``Spec`` belongs
    (``((4, 3),)``), an unhashable value or a wrong count."""
    loc = user_location()
    name = getattr(fn, "__name__", "step")
    if isinstance(example_inputs, Spec | Tensor) or not isinstance(example_inputs, tuple | list):
        raise CompileError(f"{name}: {_EXAMPLE_INPUTS_TAKE}; got {_short(example_inputs)}{at(loc)}")
    for i, e in enumerate(example_inputs):
        if isinstance(e, Spec | Tensor):
            continue
        which = _which(fn, i, "example input")
        if isinstance(e, tuple | list) and all(isinstance(d, int) and not isinstance(d, bool) for d in e):
            raise CompileError(
                f"{name}: {which} is the shape {_short(e)}, not a pg.Spec: write pg.Spec({tuple(e)!r}) (and a dtype "
                f"for non-float32 inputs, pg.Spec({tuple(e)!r}, 'int64')); {_EXAMPLE_INPUTS_TAKE}{at(loc)}"
            )
        try:
            hash(e)
        except TypeError:
            raise CompileError(f"{name}: {which} is a {type(e).__name__}; {_EXAMPLE_INPUTS_TAKE}{at(loc)}") from None
    try:
        inspect.signature(fn).bind(*example_inputs)
    except TypeError as e:
        dims = tuple(example_inputs)
        shape = all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        hint = f"; if {dims!r} is a shape, write (pg.Spec({dims!r}),)" if shape else ""
        raise CompileError(
            f"{name}: {len(example_inputs)} example inputs do not fit its arguments ({e}){hint}; "
            f"{_EXAMPLE_INPUTS_TAKE}{at(loc)}"
        ) from None
    except ValueError:  # no signature to check against (a builtin)
        pass
    return tuple(example_inputs)


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CompiledFunction:
    """A function compiled by ``@pg.compile``; call it like the original. ``ir(stage)`` gives its IR."""

    def __init__(
        self,
        fn: Callable[..., Any],
        example_inputs: Sequence[Spec] | None = None,
        matmul_schedule: str | None = None,
        cache_size: int = 16,
    ):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.example_inputs = _check_example_inputs(fn, example_inputs) if example_inputs is not None else None
        self.matmul_schedule = check_schedule(matmul_schedule) if matmul_schedule is not None else None
        if cache_size < 1:
            raise ValueError(f"pg.compile: cache_size must be at least 1, got {cache_size}")
        self.cache_size = cache_size
        # signature -> the traces made for it, each with its guards (a few states that alternate, such as .grad
        # None on the first micro-batch and set on the others, each keep theirs); least recently used first
        self._cache: OrderedDict[tuple, list[_Compiled]] = OrderedDict()
        self._keys: set[tuple] = set()  # the entries of realize's graph cache made for this function
        self._retraces = 0  # traces made because a guard failed (not for a new signature)
        weakref.finalize(self, release, self._keys)
        self._defaults = self._fn_defaults()  # what the traces saw: a call with a parameter left out bakes it in

    def _fn_defaults(self) -> tuple[Any, Any]:
        """The function's default values (``__defaults__``, ``__kwdefaults__``: new objects when replaced)."""
        return getattr(self.fn, "__defaults__", None), getattr(self.fn, "__kwdefaults__", None)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "step")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if STATE.trace is not None:
            return self.fn(*args, **kwargs)  # called from another traced function: trace through
        if kwargs:
            args = self._positional(args, kwargs)
        defaults = self._fn_defaults()
        if defaults[0] is not self._defaults[0] or defaults[1] is not self._defaults[1]:
            self._cache.clear()  # step.__defaults__ = (...): every trace may have baked an old default in
            self._defaults = defaults
        # autocast, allow_tf32 and grad mode change the traced graph
        key = (_signature(args, self.fn), amp.state_key(), STATE.grad_enabled)
        compiled = None
        variants = self._cache.get(key)
        if variants is not None:
            self._cache.move_to_end(key)
            for candidate in variants:
                if candidate.guards_hold():
                    compiled = candidate
                    break
        if compiled is None:
            if variants:
                self._note_retrace(variants[-1])
            compiled = self._compile(key, args)
        if (i := compiled.aliased(args)) is not None:
            raise CompileError(
                f"{self.name}: {_which(self.fn, i)} is a tensor that the function also reads "
                "itself (a parameter of a module it calls, a global or a captured tensor); a compiled function sees "
                "them as two tensors, so gradients and updates would be wrong: pass it only as an argument or only "
                f"read it{at(user_location())}"
            )
        tensors = list({id(a): a for a in args if isinstance(a, Tensor)}.values())  # one input per distinct tensor
        try:
            return compiled.run(tensors)
        except _Retrace:  # parameters or state moved to another device since the trace
            if compiled in self._cache.get(key, []):
                self._cache[key].remove(compiled)
            compiled = self._compile(key, args)
            try:
                return compiled.run(tensors)
            except _Retrace:
                raise CompileError(f"{self.name}: the devices of its inputs changed while it ran") from None

    def _note_retrace(self, previous: _Compiled) -> None:
        """Count a trace made because a guard of ``previous`` (the last trace for these arguments) failed; warn once,
        at ``_RETRACE_WARNING`` of them, naming what changed (each trace compiles the step again)."""
        self._retraces += 1
        if self._retraces == _RETRACE_WARNING:
            warnings.warn(
                f"{self.name} was traced {self._retraces} times for arguments of one signature because something it "
                f"read while tracing changed (last: {previous.failed_guard()}); each trace compiles it again. Pass a "
                f"value that changes between calls as a tensor argument{at(user_location())}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _positional(self, args: tuple, kwargs: dict[str, Any]) -> tuple:
        """``args`` with the keyword arguments bound to their parameters (``step(x, y=y)``), as torch.compile'd
        functions take them. Raises ``TypeError`` for arguments that do not fit the function and ``CompileError`` for
        keyword-only parameters."""
        loc = user_location()
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}: {e}{at(loc)}") from None
        if bound.kwargs:
            raise CompileError(
                f"{self.name}: @pg.compile passes arguments by position; make the keyword-only parameters "
                f"{', '.join(bound.kwargs)} positional-or-keyword{at(loc)}"
            )
        return bound.args

    def _store(self, key: tuple, compiled: _Compiled) -> None:
        """Keep ``compiled`` under ``key``, dropping traces whose module-attribute guard can never hold again and,
        past ``cache_size`` traces, the least recently used ones."""
        variants = [c for c in self._cache.pop(key, []) if c.version == STATE.bindings]
        self._cache[key] = [*variants, compiled]
        total = sum(len(v) for v in self._cache.values())
        while total > self.cache_size:
            oldest = next(iter(self._cache))
            self._cache[oldest].pop(0)
            if not self._cache[oldest]:
                del self._cache[oldest]
            total -= 1

    def _compile(self, key: tuple, args: Sequence[Any]) -> _Compiled:
        """Trace ``fn`` on ``args``, compile the graph for its device and cache the result under ``key``."""
        trace = self._trace(args)
        ctx = trace.ctx
        # a tensor the step updates, or a .grad it reads, held a lazy value (``p.data = p * 0.5`` before the first
        # call, the gradients of an eager backward()): the trace would read that value's sources as a snapshot on
        # every call; compute it, then trace again, reading it afresh
        lazy = [t for key, t in ctx.writes.items() if ctx.originals[key][0].kind != "leaf"]
        lazy += [t for key, t in ctx.lazy_reads.items() if key not in ctx.writes and (t.is_leaf or not t.requires_grad)]
        for t, was_none in ctx.grad_reads.values():
            g = None if was_none else ctx.old_grads.get(id(t), t._grad)
            if g is not None and g._node.kind != "leaf":
                lazy.append(g)
        if lazy:
            ctx.rollback()
            realize(*lazy)
            trace = self._trace(args)
        trace.ctx.rollback()  # the first run reads the state as it was and writes it back
        guards = list(trace.ctx.grad_reads.values())
        device = devices.graph_device(trace.graph.nodes)
        try:
            with matmul_schedule(self.matmul_schedule) if self.matmul_schedule else contextlib.nullcontext():
                exe = compile_graph(trace.graph, device, name=self.name, eager=False, owner_keys=self._keys)
        except Exception:
            trace.ctx.rollback()
            raise
        leaves = trace.graph.leaves
        ctx = trace.ctx
        grad_of: dict[int, weakref.ref] = {}  # id(leaf of a .grad read) -> its parameter
        for t, was_none in ctx.grad_reads.values():
            g = ctx.old_grads.get(id(t), t._grad) if not was_none else None
            if g is not None:
                grad_of[id(g._node)] = weakref.ref(t)
        implicit = [(n, _current_owner(n), grad_of.get(id(n))) for n in leaves[trace.num_inputs :]]
        binding = None
        if device != devices.CPU:
            owned = [(i, ref() if ref is not None else None) for i, (_, ref, _) in enumerate(implicit)]
            owners = {id(t): trace.num_inputs + i for i, t in owned if t is not None}
            written = trace.written
            reads = {trace.num_returned + k: owners[id(t)] for k, t in enumerate(written) if id(t) in owners}
            binding = _CudaBinding(
                [n.device for n in leaves], [not n.types[0][0] for n in leaves], trace.num_inputs, exe.outputs, reads,
                deferred_checks=bool(getattr(getattr(exe, "program", None), "checks", ())),
            )  # fmt: skip
        bindings = _Bindings()
        bindings.record(self.fn, set())
        # a parameter frozen (or unfrozen) since the trace changes what backward() differentiates: trace again
        read = [ref() for _, ref, _ in implicit if ref is not None]
        requires = [(weakref.ref(t), t._requires_grad) for t in read if isinstance(t, Tensor)]
        # a step that writes (backward(), an optimizer update) must not get one of them as an argument too
        writes = trace.written or trace.grad_owners or trace.grad_cleared
        read_owners: dict[int, weakref.ref] = (
            {id(t): weakref.ref(t) for t in read if isinstance(t, Tensor)} if writes else {}
        )
        compiled = _Compiled(
            exe, trace, implicit, guards, device, bindings, STATE.bindings, binding, requires, read_owners
        )
        self._store(key, compiled)
        return compiled

    def executables(self) -> list[Any]:
        """The compiled executables, one per traced signature: ``NumpyFunction`` on "cpu",
        ``picograd.runtime.cuda.Executable`` on "cuda" (its ``steps`` are the kernel launches of one call)."""
        return [c.exe for variants in self._cache.values() for c in variants]

    def _trace(self, args: Sequence[Any]) -> _Trace:
        """Run ``fn`` on placeholder tensors, recording the graph (nothing is computed)."""
        ctx = TraceContext()
        inputs: list[Node] = []
        traced_args: list[Any] = []
        placeholders: dict[int, int] = {}  # id(placeholder) -> position among the tensor arguments
        grad_inputs: list[int] = []
        grad_nodes: list[Node] = []
        traced: dict[int, Tensor] = {}  # id(argument) -> its placeholder: a tensor passed twice is one input
        for a in args:
            if isinstance(a, Tensor) and id(a) in traced:
                traced_args.append(traced[id(a)])
            elif isinstance(a, Tensor):  # host zeros that are never read, counted as living on the argument's device
                t = Tensor._wrap(leaf(np.zeros(a.shape, a.dtype.np), a.dtype, device=a.device), 0, a.requires_grad)
                if a.requires_grad and a.is_leaf:  # a leaf the user made require grad: .grad accumulates into it
                    t.requires_grad = True
                    if a._grad is not None:  # the current .grad is an input too
                        g = Tensor._wrap(leaf(np.zeros(a.shape, a.dtype.np), a.dtype, device=a._grad.device))
                        t._grad = g
                        grad_inputs.append(len(inputs))
                        grad_nodes.append(g._node)
                placeholders[id(t)] = len(inputs)
                traced[id(a)] = t
                inputs.append(t._node)
                traced_args.append(t)
            else:
                traced_args.append(a)
        STATE.trace = ctx
        try:
            with recording() as reads:
                result = self.fn(*traced_args)
        except BaseException:  # the user's exception: leave no traced value behind (placeholders' zeros)
            ctx.rollback()
            raise
        finally:
            STATE.trace = None
        returned: list[Tensor] = []
        structure = _flatten(result, returned)
        written = list(ctx.writes.values())
        owners = [t for t in ctx.grad_writes.values() if t._grad is not None]
        grad_owners: list[Tensor | int] = [placeholders.get(id(t), t) for t in owners]  # type: ignore[misc]
        cleared = [t for t in ctx.grad_writes.values() if t._grad is None]
        same: list[tuple[int, Tensor | int]] = []
        for i, t in enumerate(returned):
            node = t._node
            if id(t) in placeholders:
                same.append((i, placeholders[id(t)]))
            elif ctx.writes.get(id(t)) is t or (
                node.kind == "leaf" and node.owner is not None and node.owner() is t and id(node) not in ctx.created
            ):
                same.append((i, t))
        grad_cleared: list[Tensor | int] = [placeholders.get(id(t), t) for t in cleared]  # type: ignore[misc]
        for key in placeholders:  # the placeholders' .grad guards are the signature's business
            ctx.grad_reads.pop(key, None)
        targets = returned + written + [t._grad for t in owners]
        graph = cut([t._value for t in targets], first_leaves=inputs + grad_nodes)  # type: ignore[union-attr]
        num_inputs = len(inputs) + len(grad_nodes)
        needs_grad = [i for i, t in enumerate(returned) if t.requires_grad]
        inner = next((n for n in graph.nodes if n.kind in _BACKWARD_KINDS), None)
        if inner is not None and inner.kind == "grad":
            for i, a in enumerate(args):
                if isinstance(a, Tensor) and a.requires_grad and not a.is_leaf:
                    ctx.rollback()
                    raise CompileError(
                        f"{self.name}: {_which(self.fn, i)} requires grad and was computed "
                        f"outside the compiled function, whose backward(){at(inner.loc)} cannot reach what it was "
                        "computed from (eager code would): compute it inside the compiled function, or pass "
                        f"it .detach()ed{at(user_location())}"
                    )
        detached = None
        if inner is not None and needs_grad:
            what = "backward()" if inner.kind == "grad" else f"an optimizer step (pg.{inner.kind})"
            detached = (
                f"{self.name} is a compiled function that runs {what} itself{at(inner.loc)}, so the tensors it "
                "returns are detached results of the whole step: call backward() inside the compiled step only, or "
                "compile a function without backward() (its outputs then require grad) and call backward() outside it"
            )
        differentiable = needs_grad if inner is None else []
        n = len(returned)
        return _Trace(
            graph,
            ctx,
            num_inputs,
            structure,
            n,
            written,
            grad_owners,
            grad_inputs,
            differentiable,
            detached,
            reads,
            grad_cleared,
            same,
            {i: placeholders[id(t)] for i, t in enumerate(written) if id(t) in placeholders},
        )

    def ir(self, stage: str = "pg", args: Sequence[Any] | None = None) -> ModuleOp:
        """The traced step as a module at ``stage`` (``picograd.driver.pipeline.STAGES``), traced from ``args`` or the
        ``example_inputs`` specs. Parameters, gradients and optimizer state are left as they were.

        Raises ``CompileError`` without args or example inputs."""
        from picograd.driver.pipeline import lower_to

        if args is None:
            if self.example_inputs is None:
                raise CompileError(f"{self.name}: ir() needs args or @pg.compile(example_inputs=...)")
            args = [s.example() if isinstance(s, Spec) else s for s in self.example_inputs]
        trace = self._trace(args)
        trace.ctx.rollback()
        schedule = self.matmul_schedule or current_matmul_schedule()
        return lower_to(ModuleOp([lower(trace.graph, self.name)]), stage, matmul_schedule=schedule)


def compile(
    fn: Callable[..., Any] | None = None,
    *,
    example_inputs: Sequence[Spec] | None = None,
    matmul_schedule: str | None = None,
    cache_size: int = 16,
) -> Any:
    """Compile a train (or inference) step: ``@pg.compile`` or ``@pg.compile(example_inputs=(pg.Spec(...),))``.

    The first call with a new signature traces ``fn`` and runs the compiled step exactly once; later calls bind
    buffers and run it. ``matmul_schedule`` forces how its matmuls are tiled on the GPU (a ``pg-matmul-schedule``
    rung; by default the one ``pg.matmul_schedule(...)`` sets around the first call, else ``auto``). At most
    ``cache_size`` traces are kept (least recently used dropped first); they and their compiled graphs go with the
    function. Raises ``CompileError`` when ``fn`` reads a value while tracing (``.item()``, ``print``) or when a
    pass rejects the traced graph, ``ValueError`` for an unknown schedule or a ``cache_size`` below 1."""
    if fn is None:
        return lambda f: CompiledFunction(f, example_inputs, matmul_schedule, cache_size)
    return CompiledFunction(fn, example_inputs, matmul_schedule, cache_size)
