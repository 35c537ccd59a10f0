"""The recorded graph behind lazy tensors, and how it is cut out, compiled and run.

A ``Node`` is one recorded op: its kind (``"add"``, ``"sum"``, ...), its source values, hashable attributes,
result types, its device and the user's ``file:line``. Leaves (``kind == "leaf"``) hold a realized buffer: a numpy
array on "cpu", a ``picograd.runtime.cuda.DeviceBuffer`` on "cuda". Nodes point only at their sources, so a graph
dies with the last tensor that uses it.

``realize`` cuts out the graph that some values need, builds a structural key (kinds, attributes, types and the
wiring, not buffer contents), and on a miss lowers it to a ``func.func`` of ``pg`` ops (leaves become function
arguments), runs the pass pipeline and compiles it for the device; it then binds the leaves' buffers and runs it.
An eager loop that repeats one graph therefore compiles once (tinygrad's lazy buffers and JAX's jit cache work the
same way).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, FileLineColLoc, IntAttr, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from picograd.dialects import pg
from picograd.frontend.dtypes import DType
from picograd.runtime.device import CPU, Device, device_of

# picograd's directory, symlinks resolved, with a trailing separator (``picograd_extra/`` is not in it)
PACKAGE_DIR = os.path.join(os.path.realpath(os.path.dirname(os.path.dirname(__file__))), "")


@functools.lru_cache(maxsize=4096)
def in_package(filename: str) -> bool:
    """Whether code from ``filename`` is picograd's own (or frozen bootstrap code), however its path is spelt: a
    package imported as ``bench/../picograd`` or through a symlink has such ``co_filename``s."""
    return filename.startswith("<frozen") or os.path.realpath(filename).startswith(PACKAGE_DIR)


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Loc:
    """A user source location."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def user_location() -> Loc | None:
    """The innermost stack frame outside the picograd package: where the user's code called us."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not in_package(filename):
            return Loc(filename, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def at(loc: Loc | None) -> str:
    """`` (at file:line)`` for error messages, or nothing."""
    return f" (at {loc})" if loc else ""


class Node:
    """One recorded op (or a leaf holding a buffer). ``types`` has one ``(shape, dtype)`` per result."""

    __slots__ = (
        "kind", "srcs", "attrs", "types", "loc", "data", "device", "mirror", "owner", "grad_leaves", "backward_done",
        "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        kind: str,
        srcs: Sequence[Value],
        attrs: tuple,
        types: Sequence[tuple[Shape, DType]],
        loc: Loc | None,
        data: Any = None,
        device: Device = CPU,
    ):
        self.kind = kind
        self.srcs = tuple(srcs)
        self.attrs = attrs
        self.types = tuple(types)
        self.loc = loc
        self.data = data  # the buffer of a leaf, or the cached value of a computed single-result op
        self.device = device  # where the value lives (for a leaf: where ``data`` is)
        self.mirror: Any = None  # a leaf's copy on the other device, kept by ``picograd.frontend.device.bind``
        self.owner: weakref.ref | None = None  # the tensor a leaf was realized for
        self.grad_leaves: dict[int, weakref.ref] | None = None  # tensors that accumulate .grad for a result
        self.backward_done: Loc | None = None  # where backward() went through this op (without retain_graph)
        trace = STATE.trace
        if trace is not None:
            trace.created.add(id(self))


Value = tuple[Node, int]


def leaf(data: Any, dtype: DType, owner: Any = None, device: Device | None = None) -> Node:
    """A leaf node holding a realized buffer: a numpy array ("cpu") or a device buffer ("cuda"). ``device``
    overrides where the leaf counts as living (the placeholders of ``@pg.compile``'s trace hold host zeros that are
    never read, for inputs on any device)."""
    if device is None:
        device = CPU if isinstance(data, np.ndarray) else device_of(data)
    node = Node("leaf", (), (), [(tuple(data.shape), dtype)], None, data, device)
    if owner is not None:
        node.owner = weakref.ref(owner)
    return node


# ---------------------------------------------------------------------------------------------------------------
# Cutting out a graph


def is_boundary(node: Node, through: set[int]) -> bool:
    """Whether a graph cut stops at ``node``: a leaf, or an op whose value is already computed (cached in
    ``data``) unless some ``pg.grad`` must differentiate through it."""
    return node.kind == "leaf" or (node.data is not None and id(node) not in through)


def toposort(roots: Sequence[Value], through: set[int] | None = None) -> list[Node]:
    """Nodes that ``roots`` depend on, sources before users, stopping at boundaries (iterative DFS). With
    ``through=None`` nothing but leaves stops the walk."""
    order: list[Node] = []
    seen: set[int] = set()
    for root, _ in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack[-1]
            srcs = () if through is not None and is_boundary(node, through) else node.srcs
            if i < len(srcs):
                stack[-1] = (node, i + 1)
                src = srcs[i][0]
                if id(src) not in seen:
                    seen.add(id(src))
                    stack.append((src, 0))
            else:
                stack.pop()
                order.append(node)
    return order


@dataclass
class Graph:
    """A cut-out graph: nodes in order, leaves (the function's arguments) and outputs, with its structural key.
    The key leaves out the values of scalar constants (Python scalars in the user's code): ``consts`` holds them,
    in order of the ``constants`` nodes."""

    nodes: list[Node]
    leaves: list[Node]
    outputs: list[Value]
    key: tuple
    constants: list[Node] = field(default_factory=list)
    consts: tuple = ()


def cut(outputs: Sequence[Value], first_leaves: Sequence[Node] = ()) -> Graph:
    """The graph ``outputs`` need. Already-computed values are arguments, except where a ``pg.grad`` in the graph
    differentiates through them. Leaves are numbered in ``first_leaves`` order first (the inputs of a compiled
    function), then in order of appearance."""
    nodes = toposort(list(outputs), set())
    grads = [n for n in nodes if n.kind == "grad"]
    if grads:
        through = {id(n) for n in toposort([s for g in grads for s in g.srcs])}
        nodes = toposort(list(outputs), through)
    else:
        through = set()
    position: dict[int, int] = {}
    leaves = list(first_leaves)
    leaf_index = {id(n): i for i, n in enumerate(leaves)}
    key: list[tuple] = []
    constants: list[Node] = []
    for node in nodes:
        if is_boundary(node, through):
            if id(node) not in leaf_index:
                leaf_index[id(node)] = len(leaves)
                leaves.append(node)
            entry: tuple = ("leaf", leaf_index[id(node)], node.types)
        elif node.kind == "constant":
            entry = ("constant", node.types)
            constants.append(node)
        else:
            entry = (node.kind, node.attrs, node.types, tuple((position[id(s)], i) for s, i in node.srcs))
        position[id(node)] = len(key)
        key.append(entry)
    out_key = tuple((position[id(n)], i) for n, i in outputs)
    # a value's type keeps 1 and 1.0 apart, and the sign of -0.0 and NaNs keep their bits apart
    consts = tuple((type(n.attrs[0]), n.attrs[0], math.copysign(1.0, n.attrs[0])) for n in constants)
    return Graph(nodes, leaves, list(outputs), (tuple(key), len(leaves), out_key), constants, consts)


def replay(graph: Graph, values: Sequence[Value], wanted: Sequence[int]) -> list[Value]:
    """``graph.outputs[i]`` for each ``i`` in ``wanted``, recorded again as fresh nodes over ``values`` (one value
    per leaf of ``graph``, in order): a compiled function's traced graph spliced into the recorded graph of its
    caller, so that ``backward()`` differentiates through it (``pg-autodiff`` on the traced ops, as for any
    recorded op). Only the ops the wanted outputs depend on are copied; an output that is a leaf is its value."""
    new: dict[int, Value] = {id(n): v for n, v in zip(graph.leaves, values, strict=True)}
    needed = {id(n) for n, _ in (graph.outputs[i] for i in wanted)}
    for node in reversed(graph.nodes):  # users before sources
        if id(node) in needed and id(node) not in new:
            needed.update(id(s) for s, _ in node.srcs)
    copies: dict[int, Node] = {}
    for node in graph.nodes:
        if id(node) in needed and id(node) not in new:
            srcs = [new[id(s)] if id(s) in new else (copies[id(s)], i) for s, i in node.srcs]
            copies[id(node)] = Node(node.kind, srcs, node.attrs, node.types, node.loc, device=node.device)
    out: list[Value] = []
    for i in wanted:
        node, index = graph.outputs[i]
        out.append(new[id(node)] if id(node) in new else (copies[id(node)], index))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Lowering a graph to a pg function


def _ir_type(shape: Shape, dtype: DType) -> TensorType:
    return pg.tensor_type(shape, dtype.ir)


def _ir_loc(loc: Loc | None):
    if loc is None:
        return None
    return FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line), IntAttr(0))


def _constant(attrs: tuple, types) -> Operation:
    (value,) = attrs
    shape, dtype = types[0]
    t = _ir_type(shape, dtype)
    with np.errstate(over="ignore"):  # a Python float beyond the dtype's range is inf, silently (as PyTorch)
        array = np.asarray(value, dtype=dtype.np).reshape(-1)
    values = (array.astype(np.float64) if dtype.is_floating_point else array).tolist()  # bf16 as plain floats
    if dtype.category == 0:
        values = [int(v) for v in values]
    return pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, values))  # type: ignore[type-var, arg-type]


def _elementwise_builder(cls: type[Operation]) -> Callable[[list[SSAValue], tuple, tuple], Operation]:
    return lambda xs, a, t: cls(*xs)


# kind -> builder(operands, attrs, result types) -> pg op. Unary and binary kinds are added below.
BUILDERS: dict[str, Callable[[list[SSAValue], tuple, tuple], Operation]] = {
    "constant": lambda xs, a, t: _constant(a, t),
    "cmp": lambda xs, a, t: pg.CmpOp(a[0], xs[0], xs[1]),
    "select": lambda xs, a, t: pg.SelectOp(*xs),
    "broadcast_to": lambda xs, a, t: pg.BroadcastToOp(xs[0], t[0][0]),
    "sum": lambda xs, a, t: pg.SumOp(xs[0], a[0], a[1]),
    "max": lambda xs, a, t: pg.MaxOp(xs[0], a[0], a[1]),
    "min": lambda xs, a, t: pg.MinOp(xs[0], a[0], a[1]),
    "argmax": lambda xs, a, t: pg.ArgmaxOp(xs[0], a[0], a[1]),
    "argmin": lambda xs, a, t: pg.ArgminOp(xs[0], a[0], a[1]),
    "reshape": lambda xs, a, t: pg.ReshapeOp(xs[0], t[0][0]),
    "permute": lambda xs, a, t: pg.PermuteOp(xs[0], a[0]),
    "slice": lambda xs, a, t: pg.SliceOp(xs[0], *a),
    "pad": lambda xs, a, t: pg.PadOp(xs[0], *a),
    "concat": lambda xs, a, t: pg.ConcatOp(xs, a[0]),
    "matmul": lambda xs, a, t: pg.MatmulOp(xs[0], xs[1], a[0]),
    "gather": lambda xs, a, t: pg.GatherOp(xs[0], xs[1], a[0]),
    "scatter_add": lambda xs, a, t: pg.ScatterAddOp(xs[0], xs[1], a[0], t[0][0]),
    "check_index": lambda xs, a, t: pg.CheckIndexOp(xs[0], *a),
    "cast": lambda xs, a, t: pg.CastOp(xs[0], t[0][1].ir),
    "iota": lambda xs, a, t: pg.IotaOp(_ir_type(*t[0]), a[0]),
    "random": lambda xs, a, t: pg.RandomOp(a[0], xs[0], xs[1], _ir_type(*t[0])),
    "grad": lambda xs, a, t: pg.GradOp(xs[0], xs[2:] if a[0] else xs[1:], xs[1] if a[0] else None),
    "sgd": lambda xs, a, t: _optimizer(pg.SGDOp, xs, a),
    "adam": lambda xs, a, t: _optimizer(pg.AdamOp, xs, a),
    "adamw": lambda xs, a, t: _optimizer(pg.AdamWOp, xs, a),
    # attention (issue 11): attrs (scale, causal, has_mask, has_dropout)
    "scaled_dot_product_attention": lambda xs, a, t: pg.ScaledDotProductAttentionOp(
        xs[0], xs[1], xs[2], xs[3] if a[2] else None, xs[3 + a[2]] if a[3] else None, a[0], a[1]
    ),
    # convolution (issue 12): attrs (stride, dilation, pad_low, pad_high, groups)
    "conv": lambda xs, a, t: pg.ConvOp(xs[0], xs[1], *a),
}
for _cls in (
    pg.NegOp, pg.ExpOp, pg.LogOp, pg.SqrtOp, pg.RsqrtOp, pg.SinOp, pg.CosOp, pg.TanhOp, pg.SigmoidOp,
    pg.ReluOp, pg.AbsOp, pg.ReciprocalOp, pg.ErfOp, pg.StopGradientOp,
    pg.AddOp, pg.SubOp, pg.MulOp, pg.DivOp, pg.PowOp, pg.MaximumOp, pg.MinimumOp,
):  # fmt: skip
    BUILDERS[_cls.name.removeprefix("pg.")] = _elementwise_builder(_cls)
for _surface in pg.SURFACE_OPS:  # the operator surface (issue 20)
    BUILDERS[_surface.name.removeprefix("pg.")] = _elementwise_builder(_surface)


def _optimizer(cls: type[pg.OptimizerOp], xs: list[SSAValue], attrs: tuple) -> Operation:
    """Operands of an optimizer node: hyperparameters, step, params, grads, state; attrs: (n_params, flags)."""
    n, flags = attrs
    h = len(cls.HYPER)
    hyper, step = xs[:h], xs[h]
    params, grads, state = xs[h + 1 : h + 1 + n], xs[h + 1 + n : h + 1 + 2 * n], xs[h + 1 + 2 * n :]
    return cls(hyper, step, params, grads, state, flags)


def lower(graph: Graph, name: str = "main", lifted: Sequence[int] = ()) -> func.FuncOp:
    """A ``func.func`` of ``pg`` ops computing ``graph``: leaves become arguments, outputs results; every op
    carries the user's ``file:line`` as its location. The constants at positions ``lifted`` of ``graph.constants``
    become arguments too (0-d, after the leaves): runtime scalars instead of values baked into the program."""
    inputs = list(graph.leaves) + [graph.constants[i] for i in lifted]
    arg_types = [_ir_type(*leaf.types[0]) for leaf in inputs]
    out_types = [_ir_type(*node.types[i]) for node, i in graph.outputs]
    fn = func.FuncOp(name, (arg_types, out_types))
    block = fn.body.block
    values: dict[int, Sequence[SSAValue]] = {}
    for leaf_node, arg in zip(inputs, block.args, strict=True):
        values[id(leaf_node)] = (arg,)
    for node in graph.nodes:
        if id(node) in values:
            continue
        operands = [values[id(s)][i] for s, i in node.srcs]
        op = BUILDERS[node.kind](operands, node.attrs, node.types)
        loc = _ir_loc(node.loc)
        if loc is not None:
            op.location = loc
        block.add_op(op)
        values[id(node)] = op.results
    block.add_op(func.ReturnOp(*[values[id(n)][i] for n, i in graph.outputs]))
    return fn


# ---------------------------------------------------------------------------------------------------------------
# Tracing state


@dataclass
class TraceContext:
    """What ``@pg.compile`` learns while tracing: tensors whose value was replaced, ``.grad`` assignments, and
    callbacks that refresh runtime scalars (learning rates) before each replay."""

    writes: dict[int, Any] = field(default_factory=dict)  # id(tensor) -> tensor whose value the trace replaced
    originals: dict[int, Value] = field(default_factory=dict)  # id(tensor) -> its value before the trace
    grad_writes: dict[int, Any] = field(default_factory=dict)  # id(tensor) -> tensor whose .grad was assigned
    old_grads: dict[int, Any] = field(default_factory=dict)  # id(tensor) -> its .grad before the trace
    grad_reads: dict[int, tuple[Any, bool]] = field(default_factory=dict)  # .grad read before any write: was None?
    refreshers: list[Callable[[], None]] = field(default_factory=list)
    mode_reads: dict[int, tuple[Any, bool]] = field(default_factory=dict)  # id(module) -> (module, training read)
    # what library code read of the user's objects that shaped the graph: a function reading it again and the value
    # it had (the optimizers' settings); a compiled step whose check gives another value traces again
    checks: list[tuple[Callable[[], Any], Any]] = field(default_factory=list)
    created: set[int] = field(default_factory=set)  # ids of the nodes recorded while tracing
    # id(tensor) -> a tensor read while tracing that held a lazy value recorded before the trace
    lazy_reads: dict[int, Any] = field(default_factory=dict)

    def rollback(self) -> None:
        """Undo the trace's assignments (for printing IR without changing the user's objects)."""
        for key, t in self.writes.items():
            t._node, t._index = self.originals[key]
        for key, t in self.grad_writes.items():
            t._grad = self.old_grads[key]


class _State:
    trace: TraceContext | None = None
    grad_enabled: bool = True
    # bumped by every attribute assignment on a ``Module`` (and ``train()``/``eval()``) outside a trace: a compiled
    # step traced at another value retraces (a guard, as torch.compile's on module attributes)
    bindings: int = 0


STATE = _State()

# the results of compiled functions that ran backward() themselves (detached) -> why, for backward()'s error
DETACHED: weakref.WeakKeyDictionary[Node, str] = weakref.WeakKeyDictionary()


class no_grad:
    """Context manager (and decorator) under which recorded ops do not require grad (``torch.no_grad``)."""

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper
