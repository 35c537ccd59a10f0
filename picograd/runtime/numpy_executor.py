"""The CPU runtime: runs a ``pg`` function with numpy.

``compile_func`` turns a ``func.func`` of ``pg`` ops into a flat schedule of numpy calls, one per op, resolved
once (each op's numpy function comes from ``picograd.dialects.pg_numpy``, the dialect's reference semantics); a call
walks no IR, only that list. Values live in a list of slots; a slot is dropped after its last use so that peak memory
follows the program, not its length. This executor is the default device and the reference the GPU runtime is
checked against.

It also runs the ``kernels`` stage: a ``kernel.fused`` op is inlined into the schedule (its body's ``pg`` ops run
one by one), so tests can check that kernel formation changes no result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.ir import Operation, SSAValue

from picograd.dialects import pg
from picograd.dialects.kernel import FusedOp, YieldOp
from picograd.dialects.pg_numpy import Kernel, constant_array, op_kernel


class NumpyFunction:
    """A ``pg`` function compiled to a flat schedule of numpy calls.

    Calling it with one numpy array per function argument (shapes and dtypes as the function's types) returns a
    tuple with one array per function result. Raises ``NotImplementedError`` at compile time for ops that have no
    numpy kernel (``pg.grad`` and optimizer ops must be expanded by their passes first).
    """

    def __init__(self, fn: func.FuncOp):
        self.name = fn.sym_name.data
        block = fn.body.block
        slot = _Slots()
        for arg in block.args:
            slot[arg] = slot.new()
        self.num_args = len(block.args)
        schedule: list[tuple[Kernel, tuple[int, ...], int]] = []
        constants: dict[int, np.ndarray] = {}
        returned: tuple[int, ...] = ()
        for op in block.ops:
            if isinstance(op, func.ReturnOp):
                returned = tuple(slot[v] for v in op.arguments)
                break
            _schedule_op(op, slot, schedule, constants)
        self.returned = returned
        self.num_slots = slot.count
        self._constants = constants
        self._schedule = _with_frees(schedule, returned, self.num_args)

    def __call__(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        if len(args) != self.num_args:
            raise TypeError(f"{self.name} takes {self.num_args} arrays, got {len(args)}")
        env: list[Any] = [None] * self.num_slots
        env[: self.num_args] = args
        for i, c in self._constants.items():
            env[i] = c
        with np.errstate(all="ignore"):  # overflow to inf, 0/0 to NaN: silently, as PyTorch's kernels
            for kernel, ins, out, dead in self._schedule:
                env[out] = kernel(*[env[i] for i in ins])
                for i in dead:
                    env[i] = None
        out = [_owned(env[i]) for i in self.returned]
        for k, i in enumerate(self.returned):  # a value returned twice: give each result its own buffer
            if i in self.returned[:k]:
                out[k] = out[k].copy()
        return tuple(out)


class _Slots(dict[SSAValue, int]):
    """The slot of each value; several values may share one (a kernel's block arguments and results, and an
    elided ``pg.broadcast_to`` and its input). ``actual`` holds the shape a slot's array really has where it
    differs from the value's type (the input of an elided broadcast)."""

    count = 0

    def __init__(self) -> None:
        super().__init__()
        self.actual: dict[SSAValue, tuple[int, ...]] = {}

    def shape(self, value: SSAValue) -> tuple[int, ...]:
        return self.actual[value] if value in self.actual else pg.shape_of(value)

    def new(self) -> int:
        """A fresh slot number."""
        self.count += 1
        return self.count - 1


def _schedule_op(
    op: Operation,
    slot: _Slots,
    schedule: list[tuple[Kernel, tuple[int, ...], int]],
    constants: dict[int, np.ndarray],
) -> None:
    """Append ``op`` to the schedule. A ``kernel.fused`` is inlined: its block arguments share the slots of its
    operands, its body's ops are scheduled in order, and its results share the slots of the yielded values."""
    if isinstance(op, FusedOp):
        body = op.body.block
        for arg, v in zip(body.args, op.inputs, strict=True):
            slot[arg] = slot[v]
        for inner in body.ops:
            if isinstance(inner, YieldOp):
                for r, v in zip(op.outputs, inner.values, strict=True):
                    slot[r] = slot[v]
            else:
                _schedule_op(inner, slot, schedule, constants)
        return
    if isinstance(op, pg.BroadcastToOp) and all(isinstance(u.operation, _IMPLICIT_BROADCAST) for u in op.result.uses):
        # numpy broadcasts elementwise operands itself: skip the copy-free but slow np.broadcast_to call
        slot[op.result] = slot[op.input]
        slot.actual[op.result] = slot.shape(op.input)
        return
    out = slot.new()
    if isinstance(op, pg.ConstantOp):
        slot[op.result] = out
        constants[out] = constant_array(op.value)
        return
    kernel_fn = op_kernel(op)
    if isinstance(op, _IMPLICIT_BROADCAST):
        got = np.broadcast_shapes(*(slot.shape(v) for v in op.operands))
        want = pg.shape_of(op.results[0])
        if got != want:  # every operand was an elided broadcast: broadcast the result instead
            kernel_fn = _broadcast_result(kernel_fn, want)
    ins = tuple(slot[v] for v in op.operands)
    schedule.append((kernel_fn, ins, out))
    if len(op.results) == 1:
        slot[op.results[0]] = out
        return
    for i, result in enumerate(op.results):  # an op of several results (pg.attention_backward): a tuple, split
        slot[result] = slot.new()
        schedule.append((lambda t, i=i: t[i], (out,), slot[result]))


_IMPLICIT_BROADCAST = (pg.UnaryOp, pg.BinaryOp, pg.CmpOp, pg.SelectOp)


def _broadcast_result(kernel_fn: Kernel, shape: tuple[int, ...]) -> Kernel:
    return lambda *xs: np.broadcast_to(kernel_fn(*xs), shape)


def _with_frees(schedule, returned: tuple[int, ...], num_args: int):
    """Attach to each step the slots whose last use it is (never arguments or returned values)."""
    last: dict[int, int] = {}
    for step, (_, ins, _) in enumerate(schedule):
        for i in ins:
            last[i] = step
    keep = set(returned) | set(range(num_args))
    dead: list[list[int]] = [[] for _ in schedule]
    for i, step in last.items():
        if i not in keep:
            dead[step].append(i)
    return [(k, ins, out, tuple(d)) for (k, ins, out), d in zip(schedule, dead, strict=True)]


def _owned(x: Any) -> np.ndarray:
    # results may be broadcast or transposed views; callers get arrays they can keep and write
    a = np.asarray(x)
    return a if a.flags.writeable and a.flags.c_contiguous else a.copy(order="C")


def compile_func(fn: func.FuncOp) -> NumpyFunction:
    """Compile a ``func.func`` of ``pg`` ops (after pg-autodiff and the optimizer passes) for the numpy executor."""
    return NumpyFunction(fn)
