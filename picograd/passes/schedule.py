"""``pg-schedule``: every kernel gets its GPU schedule, a ``#kernel.schedule`` attribute chosen from a table.

Input: the ``kernels`` stage (``kernel.fused`` ops, or ``kernel.launch`` ops after ``pg-bufferize``). Output: the
same kernels, each with ``schedule = #kernel.schedule<...>`` (see ``picograd/dialects/kernel.py``): the strategy
that lowers it and every size it uses, so that the IR says what will run. The lowering passes read it
(``pg-to-loops`` copies it onto the kernel's loop nests; ``pg-matmul-schedule`` tiles the matmul nests it names;
``pg-to-gpu`` maps the other nests) and choose nothing themselves.

**The strategies** (rows of :data:`STRATEGIES`, by kernel kind through :data:`KIND_SCHEDULES`):

    strategy          kinds                        parameters
    thread_per_point  every kind                   block: the most threads a block (fewer for small nests);
                                                   points (random kernels): consecutive innermost points an
                                                   iteration of the kernel's nests computes (``pg-to-loops``);
                                                   unroll (big elementwise and movement kernels): points an
                                                   iteration computes, one in each of that many chunks of a dim
                                                   (``kinds/elementwise.py``: loads in flight)
    block_per_row     reduction (sum, max, min)    block: threads a block (one block per output point)
    warp_per_row      reduction (sum, max, min)    block: threads a block (a warp per output point)
    split_rows,       reduction (sum, max, min)    splits: chunks the reduced range is cut into, block: a
    split_columns                                  two-stage reduction (``passes/kinds/reduction_split.py``,
                                                   realised by ``pg-split-reductions``): partial results per
                                                   chunk (a block per (chunk, row), or a thread per (chunk,
                                                   column)), then a nest combining them
    atomic            scatter_add (index rank > 0) block: a thread per (index, point), the add is an atomic add
    shared_rows       scatter_add (few rows, many  chunk: index tuples a block takes, block: the rows of a
                      indices a row)               slice of columns privatized in workgroup memory
                                                   (``passes/kinds/scatter_add.py``, whose table chooses)
    naive ... cp-async  matmul                     tile = [BM, BN, BK], threads, warps, lanes, reps, vec, vector,
                                                   async_copy: the rung of the SGEMM ladder (:data:`SCHEDULES`)
    wgmma, wgmma-ws   matmul (bf16/fp16/tf32,      tile, threads, stages, specialised (pingpong), tf32: the
    wgmma-pp(-192)    sm_90a)                      Hopper tensor-core kernels (:data:`WGMMA`,
                                                   ``passes/kinds/matmul_wgmma.py``),
                                                   forced by name, or ``auto``'s on ``arch=sm_90a`` (wgmma-ws,
                                                   with ``fallback``: auto's rung where TMA cannot read an operand)
    flash-wgmma       attention (bf16 forward,     block_m, block_n, stages, threads, specialised: the FA3-style
                      sm_90a)                      kernel (``passes/kinds/attention_wgmma.py``), under
                                                   ``attention=flash-wgmma`` or ``auto`` on ``arch=sm_90a``; other
                                                   attention kernels, and
                                                   forwards it does not compute (``fallback_reason``), keep the
                                                   attention kind's own schedule

A reduction whose main op is ``pg.sum``/``pg.max``/``pg.min`` takes the strategy of the reduction kind's table
(``reduction_split.RULES``: by its output points, reduced elements a point, and whether the reduced elements of a
point are contiguous (rows) or adjacent points are (columns)), with or without side outputs of its input's shape
(``argmax``/``argmin`` keep a thread per output). A matmul takes, under ``matmul=auto`` (the default), the rung
:func:`choose` picks from its shape and element type, else the one named
(``matmul=cp-async``); a rung is then adapted to the element type and grid limits (:func:`fit`), and a matmul that
no rung fits (too many tiles in y or z, K = 0) or that ``auto`` leaves alone keeps ``thread_per_point``.
A matmul rung's or wgmma's schedule may carry ``split_k`` (``auto``'s rule,
``picograd/passes/kinds/matmul_split.py``: a few output tiles over a deep K), which ``pg-split-k`` realises as
partial matmuls over chunks of K and a sum.

**The matmul rungs** are the matmul kind's table (``picograd/passes/kinds/matmul_rungs.py``: the rows, ``auto``'s
rule :func:`~picograd.passes.kinds.matmul_rungs.choose` and the fitting to a shape); see ``pg-matmul-schedule`` for
what each rung does.

Options: ``matmul`` (``auto`` or a rung's name), ``block-size`` (threads a block for the other strategies, a
multiple of 32 up to 1024), ``block-reductions`` and ``atomics`` (false: those kernels take ``thread_per_point``),
``attention`` (``auto`` or ``flash-wgmma``), ``random-points`` (4: a random kernel's nests take 4 consecutive
innermost points an iteration, ``points = 4`` on its ``thread_per_point``, so that one Philox call serves 4
elements; the GPU pipeline sets it, the CPU's keeps 1), ``unroll`` (4: an elementwise or movement kernel whose every
output has at least ``elementwise.UNROLL_MIN_POINTS`` points and a dim divisible by 4 takes ``unroll = 4``; the GPU
pipeline sets it, the CPU's keeps 1; a ``warp_per_row`` reduction takes it too, as the elements a lane's loop
iteration takes).
Raises ``PassFailedException`` for an unknown rung, a bad block size or a bad ``random-points`` or ``unroll``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.buffers import where
from picograd.passes.kinds import (
    attention,
    attention_mma,
    attention_wgmma,
    elementwise,
    matmul_wgmma,
    reduction_split,
    scatter_add,
)
from picograd.passes.kinds.matmul_rungs import (
    RUNGS,
    WGMMA,
    check_schedule,
    matmul_rung,
    wgmma_choice,
    wgmma_split_k,
)

BLOCK_SIZE = 256
"""Threads a block for the strategies other than the matmul rungs (``block-size``)."""

# ---------------------------------------------------------------------------------------------------------------
# The table: kernel kind -> how its schedule is chosen


@dataclass(frozen=True)
class Options:
    """``pg-schedule``'s options, as the choosers see them."""

    matmul: str = "auto"
    block_size: int = BLOCK_SIZE
    block_reductions: bool = True
    atomics: bool = True
    attention: str = "auto"
    arch: str = "sm_90"
    random_points: int = 1
    unroll: int = 1

    def per_point(self) -> ScheduleAttr:
        return ScheduleAttr("thread_per_point", {"block": self.block_size})


def _main_op(op: kernel.FusedOp | kernel.LaunchOp, kinds: tuple[type[Operation], ...]) -> Operation | None:
    found = [o for o in op.body.block.ops if isinstance(o, kinds)]
    return found[0] if len(found) == 1 else None


def _matmul(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    mm = _main_op(op, (pg.MatmulOp,))
    if not isinstance(mm, pg.MatmulOp):
        return o.per_point()
    *batch, m, n = shape_of(mm.result)
    k = shape_of(mm.lhs)[-1]
    tf32, count = mm.precision == "tf32", math.prod(batch)
    try:
        chosen = wgmma_choice(m, n, k, count, element_of(mm.lhs), mm.precision, o.matmul, o.arch)
        rung = None if chosen is not None else matmul_rung(m, n, k, count, element_of(mm.lhs), o.matmul, mm.precision)
    except ValueError as e:
        raise PassFailedException(f"pg-schedule: {e}{where(mm)}") from None
    if chosen is not None and o.matmul in WGMMA:  # named by the user
        return matmul_wgmma.schedule_attr(chosen, tf32=tf32)
    if chosen is not None:
        # auto's choice on Hopper (matmul_rungs.wgmma_choice); an operand that turns out to be a misaligned view at
        # the loop stage, or a tf32 operand that is not K-major, takes the mma-sync rung there (``fallback``)
        chunks = wgmma_split_k(chosen, m, n, k, count)
        return matmul_wgmma.schedule_attr(chosen, fallback=True, split_k=chunks, tf32=tf32)
    return o.per_point() if rung is None else rung.attr()


def _reduction(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # The reduction kind's table (kinds/reduction_split.py). Side outputs (riders, stored in the innermost loop)
    # go with every strategy: each thread stores those of the elements it visits.
    red = _main_op(op, (pg.SumOp, pg.MaxOp, pg.MinOp))
    if o.block_reductions and isinstance(red, pg.ReduceOp):
        return reduction_split.choose(reduction_split.reduction_of(red), o.block_size, o.unroll)
    return o.per_point()


def _scatter_add(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # A 0-d index adds each update to one place: no index loop to spread over threads, no race, no atomics.
    sc = _main_op(op, (pg.ScatterAddOp,))
    # bf16/f16 scatters accumulate through f32 with a rounding per add: no atomic add of that form (a thread each).
    low = isinstance(sc, pg.ScatterAddOp) and pg.is_low_precision(element_of(sc.result))
    if o.atomics and isinstance(sc, pg.ScatterAddOp) and shape_of(sc.indices) and not low:
        return scatter_add.choose(scatter_add.Scatter.of(sc), o.block_size)  # the kind's table: atomic, shared_rows
    return o.per_point()


def _attention(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # attention=flash-wgmma, or auto on sm_90a (measured on an H100, 2026-12-05: 1.2-1.7x PyTorch's flash backend
    # forward, flash-mma 0.85-1.1x): the bf16 forwards it computes (attention_wgmma.fallback_reason); the rest as auto
    wgmma = o.attention == attention_wgmma.STRATEGY or (o.attention == "auto" and o.arch == "sm_90a")
    forced = attention_wgmma.schedule(op) if wgmma else None
    return forced if forced is not None else attention_mma.schedule(op, o)  # flash-mma for 16-bit, else flash


def _random(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # One Philox 4x32-10 call gives the 4 numbers of 4 consecutive elements (counter = offset + i // 4): an
    # iteration computes ``points`` consecutive innermost points, so that it calls Philox once, not 4 times.
    if o.random_points > 1:
        return ScheduleAttr("thread_per_point", {"block": o.block_size, "points": o.random_points})
    return o.per_point()


def _pointwise(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # A thread per point, or ``unroll`` points a thread (kinds/elementwise.py) where every output's nest splits.
    yielded = op.body.block.last_op
    shapes = [shape_of(v) for v in yielded.operands] if yielded is not None else []
    if o.unroll > 1 and shapes and all(elementwise.worth_unrolling(s, o.unroll) for s in shapes):
        return ScheduleAttr("thread_per_point", {"block": o.block_size, "unroll": o.unroll})
    return o.per_point()


KIND_SCHEDULES: dict[str, Callable[[kernel.FusedOp | kernel.LaunchOp, Options], ScheduleAttr]] = {
    "matmul": _matmul,
    "random": _random,
    "reduction": _reduction,
    "scatter_add": _scatter_add,
    "attention": _attention,
    "elementwise": _pointwise,
    "movement": _pointwise,
}
"""How a kernel of each kind gets its schedule; kinds not listed take ``thread_per_point``."""

STRATEGIES = (
    "thread_per_point",
    "block_per_row",
    "warp_per_row",
    *reduction_split.STRATEGIES,
    *scatter_add.STRATEGIES,
    *RUNGS,
    *WGMMA,
    attention.STRATEGY,
    attention_mma.STRATEGY,
    attention_wgmma.STRATEGY,
)
"""Every strategy a ``#kernel.schedule`` may name."""


def schedule_for(op: kernel.FusedOp | kernel.LaunchOp, options: Options) -> ScheduleAttr:
    """The schedule of one kernel under ``options``."""
    chooser = KIND_SCHEDULES.get(op.kind.data)
    return chooser(op, options) if chooser is not None else options.per_point()


@dataclass(frozen=True)
class PgSchedule(ModulePass):
    """Give every kernel its ``#kernel.schedule`` (see the module docstring). Options: ``matmul`` (``auto`` or a
    rung), ``block-size``, ``block-reductions``, ``atomics``, ``attention``, ``arch`` (``sm_90a``: ``auto`` may take
    the Hopper-only kernels), ``random-points`` (1 or 4), ``unroll`` (1, 2, 4 or 8)."""

    name = "pg-schedule"
    matmul: str = "auto"
    block_size: int = BLOCK_SIZE
    block_reductions: bool = True
    atomics: bool = True
    attention: str = "auto"
    arch: str = "sm_90"
    random_points: int = 1
    unroll: int = 1

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            check_schedule(self.matmul)
            attention_wgmma.check_schedule(self.attention)
        except ValueError as e:
            raise PassFailedException(f"pg-schedule: {e}") from None
        if self.arch not in ("sm_90", "sm_90a"):
            raise PassFailedException(f"pg-schedule: arch={self.arch} is not sm_90 or sm_90a")
        if self.block_size % gpu_ext.WARP_SIZE or not gpu_ext.WARP_SIZE <= self.block_size <= 1024:
            raise PassFailedException(f"pg-schedule: block-size={self.block_size} is not a multiple of 32 in 32..1024")
        if self.random_points not in (1, 4):
            raise PassFailedException(f"pg-schedule: random-points={self.random_points} is not 1 or 4")
        if self.unroll not in (1, 2, 4, 8):
            raise PassFailedException(f"pg-schedule: unroll={self.unroll} is not 1, 2, 4 or 8")
        options = Options(
            self.matmul,
            self.block_size,
            self.block_reductions,
            self.atomics,
            self.attention,
            self.arch,
            self.random_points,
            self.unroll,
        )
        for k in op.walk():
            if isinstance(k, kernel.FusedOp | kernel.LaunchOp):
                k.schedule = schedule_for(k, options)
