"""``pg-schedule``: every kernel gets its GPU schedule, a ``#kernel.schedule`` attribute chosen from a table.

Input: the ``kernels`` stage (``kernel.fused`` ops, or ``kernel.launch`` ops after ``pg-bufferize``). Output: the
same kernels, each with ``schedule = #kernel.schedule<...>`` (see ``picograd/dialects/kernel.py``): the strategy
that lowers it and every size it uses, so that the IR says what will run. The lowering passes read it
(``pg-to-loops`` copies it onto the kernel's loop nests; ``pg-matmul-schedule`` tiles the matmul nests it names;
``pg-to-gpu`` maps the other nests) and choose nothing themselves.

**The strategies** (rows of :data:`STRATEGIES`, by kernel kind through :data:`KIND_SCHEDULES`):

    strategy          kinds                        parameters
    thread_per_point  every kind                   block: the most threads a block (fewer for small nests)
    block_per_row     reduction (sum, max, min)    block: threads a block (one block per output point)
    atomic            scatter_add (index rank > 0) block: a thread per (point, index), the add is an atomic add
    naive ... cp-async  matmul                     tile = [BM, BN, BK], threads, warps, lanes, reps, vec, vector,
                                                   async_copy: the rung of the SGEMM ladder (:data:`SCHEDULES`)
    wgmma, wgmma-ws   matmul (bf16/fp16, sm_90a)   tile, threads, stages, specialised: the Hopper tensor-core
                                                   kernels (:data:`WGMMA`, ``passes/kinds/matmul_wgmma.py``),
                                                   forced by name only
    flash-wgmma       attention (bf16 forward,     block_m, block_n, stages, threads, specialised: the FA3-style
                      sm_90a)                      kernel (``passes/kinds/attention_wgmma.py``), under
                                                   ``attention=flash-wgmma`` only; other attention kernels, and
                                                   forwards it does not compute (``fallback_reason``), keep the
                                                   attention kind's own schedule

A reduction takes ``block_per_row`` when its main op is ``pg.sum``/``pg.max``/``pg.min`` over at least
:data:`MIN_BLOCK_REDUCTION` elements a point and it is the kernel's only output (``argmax``/``argmin``, and sums
with a side output, keep a thread per output). A matmul takes, under ``matmul=auto`` (the default), the rung
:func:`choose` picks from its shape and element type, else the one named
(``matmul=cp-async``); a rung is then adapted to the element type and grid limits (:func:`fit`), and a matmul that
no rung fits (too many tiles in y or z, K = 0) or that ``auto`` leaves alone keeps ``thread_per_point``.

**The matmul rungs** (Simon Boehm, "How to Optimize a CUDA Matmul Kernel for cuBLAS-like Performance", 2022; the
CUTLASS warp-level hierarchy, NVIDIA 2017): see ``pg-matmul-schedule`` for what each does. A rung is data
(:class:`Schedule`): warps of a block and lanes of a warp along (M, N), ``reps`` fragments of ``vec`` outputs per
thread, the K tile ``bk`` (0: no shared memory), 16-byte accesses (``vector``) and the two-stage ``cp.async``
pipeline (``async_copy``).

Options: ``matmul`` (``auto`` or a rung's name), ``block-size`` (threads a block for the other strategies, a
multiple of 32 up to 1024), ``block-reductions`` and ``atomics`` (false: those kernels take ``thread_per_point``),
``attention`` (``auto`` or ``flash-wgmma``).
Raises ``PassFailedException`` for an unknown rung or a bad block size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import Float32Type, ModuleOp
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext, kernel, pg
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes._buffers import where
from picograd.passes.kinds import attention, attention_wgmma, matmul_wgmma

WARP = gpu_ext.WARP_SIZE
VEC = 4
"""Elements of f32 per 16-byte access."""


@dataclass(frozen=True)
class Schedule:
    """One rung of the SGEMM ladder (see the module docstring). All sizes are counts of elements or threads:
    ``warps`` of a block and ``lanes`` of a warp along (M, N) (lanes multiply to 32); each thread owns ``reps``
    fragments of ``vec`` contiguous outputs along (M, N); ``bk`` is the K tile (0: no shared memory); ``vector``
    turns on 16-byte loads and stores, ``async_copy`` the two-stage ``cp.async`` pipeline. The block tile is
    ``bm x bn``."""

    name: str
    warps: tuple[int, int]
    lanes: tuple[int, int]
    reps: tuple[int, int] = (1, 1)
    vec: tuple[int, int] = (1, 1)
    bk: int = 0
    vector: bool = False
    async_copy: bool = False
    stages: int = 2
    tensor_core: bool = False
    tf32: bool = False

    @property
    def bm(self) -> int:
        return self.warps[0] * self.reps[0] * self.lanes[0] * self.vec[0]

    @property
    def bn(self) -> int:
        return self.warps[1] * self.reps[1] * self.lanes[1] * self.vec[1]

    @property
    def threads(self) -> int:
        return WARP * self.warps[0] * self.warps[1]

    def attr(self) -> ScheduleAttr:
        """The ``#kernel.schedule`` that names this rung with every size."""
        return ScheduleAttr(
            self.name,
            {
                "tile": (self.bm, self.bn, self.bk),
                "threads": self.threads,
                "warps": self.warps,
                "lanes": self.lanes,
                "reps": self.reps,
                "vec": self.vec,
                "vector": self.vector,
                "async_copy": self.async_copy,
                **({"stages": self.stages, "tf32": self.tf32} if self.tensor_core else {}),
            },
        )

    @staticmethod
    def from_attr(attr: ScheduleAttr) -> Schedule | None:
        """The rung ``attr`` names (None when it is not a matmul rung); raises ``ValueError`` when its recorded
        tile or thread count disagree with its warps, lanes, reps and vec."""
        if attr.strategy.data not in SCHEDULES:
            return None
        s = Schedule(
            attr.strategy.data,
            warps=_pair(attr.sizes("warps")),
            lanes=_pair(attr.sizes("lanes")),
            reps=_pair(attr.sizes("reps")),
            vec=_pair(attr.sizes("vec")),
            bk=attr.sizes("tile")[2],
            vector=attr.flag("vector"),
            async_copy=attr.flag("async_copy"),
            stages=attr.count("stages", 2),
            tensor_core=SCHEDULES[attr.strategy.data].tensor_core,
            tf32=attr.flag("tf32"),
        )
        if attr.sizes("tile") != (s.bm, s.bn, s.bk) or attr.count("threads") != s.threads:
            raise ValueError(f"{attr}: tile and threads do not follow from warps, lanes, reps and vec")
        return s


def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    if len(v) != 2:
        raise ValueError(f"expected two sizes (M, N), got {list(v)}")
    return v[0], v[1]


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("naive", warps=(1, 8), lanes=(32, 1)),
        Schedule("coalesced", warps=(8, 1), lanes=(1, 32)),
        Schedule("smem", warps=(32, 1), lanes=(1, 32), bk=32),
        Schedule("regtile", warps=(8, 1), lanes=(2, 16), vec=(8, 8), bk=8, vector=True),
        Schedule("warptile", warps=(2, 4), lanes=(8, 4), reps=(2, 2), vec=(4, 4), bk=16, vector=True),
        Schedule("cp-async", warps=(2, 4), lanes=(8, 4), reps=(2, 2), vec=(4, 4), bk=16, vector=True, async_copy=True),
        # tensor cores (picograd/passes/kinds/matmul_mma_sync.py): a warp's lanes are mma's 8 groups of 4, each
        # thread holds 2x2 outputs of each of reps m16n8 tiles; 3 stages of 128x32 + 32x128 bf16 tiles (48 KiB)
        Schedule(
            "mma-sync",
            warps=(2, 4),
            lanes=(8, 4),
            reps=(4, 4),
            vec=(2, 2),
            bk=32,
            vector=True,
            async_copy=True,
            stages=3,
            tensor_core=True,
        ),
    )  # fmt: skip
}
"""The matmul rungs, in ladder order."""

WGMMA = matmul_wgmma.SCHEDULES
"""The Hopper tensor-core kernels ``wgmma`` and ``wgmma-ws`` (``picograd/passes/kinds/matmul_wgmma.py``: built in
the ``ptx`` dialect, not ``Schedule`` rows), forced by name only."""
TENSOR_CORE = {
    "mma-sync": (("bf16", "fp16", "tf32"), "sm_80"),
    **{name: (("bf16", "fp16"), "sm_90a") for name in WGMMA},
}
"""Tensor-core rungs: the precisions they run (``pg.MatmulOp.precision``) and the oldest target they run on (the
wgmma ones check sm_90a in ``pg-to-ptx``, which knows the target)."""
AUTO_MIN_TENSOR_FMAS = 1 << 20
"""From this many multiply-adds up, ``auto`` runs bf16/fp16 (and tf32) matmuls on tensor cores."""
MIN_TENSOR_EXTENT = 16
"""``auto`` leaves matmuls with M, N or K below this to the SIMT rules (an mma tile would be mostly padding)."""
SMALL_MMA_TILE = dataclasses.replace(SCHEDULES["mma-sync"], warps=(2, 2), reps=(2, 4))
"""``mma-sync`` on 64x64 tiles (4 warps of 32x32): for grids of fewer 128x128 tiles than SMs."""

BEST = "cp-async"
"""The rung ``auto`` takes for large f32 matmuls (the fastest at 4096 and 8192 on the H200, bench/gemm.py)."""
AUTO_MIN_FMAS = 1 << 24
"""Below this many multiply-adds a matmul stays one thread per output (launch-bound; no tile pays off)."""
MIN_SMALL_TILES = 16
"""Fewer 64x64 output tiles than this stay one thread per output (see ``choose``)."""
SMS = 132
"""Streaming multiprocessors of the H200: below one 128x128 tile per SM, ``auto`` takes 64x64 tiles."""
SMALL_TILE = dataclasses.replace(SCHEDULES[BEST], warps=(2, 2), reps=(1, 2))
"""``cp-async`` on 64x64x16 tiles (128 threads, 4x8 outputs each): for grids of fewer 128x128 tiles than SMs."""
SHARED_BYTES = 48 * 1024
"""Static shared memory a block may declare (PTX ``.shared``; more needs dynamic shared memory)."""
MAX_GRID_YZ = 65535
"""CUDA's limit on the y and z extents of a grid (the x extent may reach 2**31 - 1)."""
BLOCK_SIZE = 256
"""Threads a block for the strategies other than the matmul rungs (``block-size``)."""
MIN_BLOCK_REDUCTION = 32
"""The smallest reduced extent that gets a block per output point (below it, a thread per output is cheaper)."""


def check_precision(name: str, precision: str, target: str = "sm_90") -> None:
    """Raise ``ValueError`` when the tensor-core rung ``name`` cannot run a matmul of ``precision``
    (``pg.MatmulOp.precision``: ``bf16``, ``fp16``, ``tf32``, ``fp32``, ``fp64``) on ``target``: one message
    naming the schedule, the dtype and the target."""
    if name not in TENSOR_CORE:
        return
    precisions, oldest = TENSOR_CORE[name]
    if precision in precisions and int(target[3:5]) >= int(oldest[3:5]):
        return
    hint = {
        "fp32": "; float32 matmuls run on tensor cores as tf32 only under pg.backends.cuda.matmul.allow_tf32 = True",
        "fp64": "; tensor cores have no float64 mma: use a SIMT rung (cp-async) or auto",
    }.get(precision, "")
    raise ValueError(
        f"matmul schedule '{name}' does not support {precision} on {target}: it runs {'/'.join(precisions)} "
        f"matmuls on the tensor cores of {oldest}+{hint}"
    )


def check_schedule(name: str) -> str:
    """``name`` if it is ``auto`` or a rung of :data:`SCHEDULES`; raises ``ValueError`` naming the choices. The one
    check of a matmul schedule's name (the frontend, ``pgc`` and this pass call it)."""
    if not isinstance(name, str) or (name != "auto" and name not in SCHEDULES and name not in WGMMA):
        choices = ", ".join([*SCHEDULES, *WGMMA])
        raise ValueError(f"unknown matmul schedule '{name}': expected auto or one of {choices}")
    return name


def choose(m: int, n: int, k: int, batch: int, element: Attribute, precision: str = "fp32") -> Schedule | None:
    """The rung ``auto`` takes for a (batch x) M x N x K matmul of ``element`` (None: a thread per output):
    ``mma-sync`` for bf16/fp16/tf32 from :data:`AUTO_MIN_TENSOR_FMAS` multiply-adds up when M, N and K are at least
    :data:`MIN_TENSOR_EXTENT` (128x128 tiles when they give every SM one, else 64x64); otherwise, for f32,
    ``cp-async`` on 128x128 tiles when they give every SM at least one, else on 64x64 tiles."""
    fmas = m * n * k * batch
    if precision in TENSOR_CORE["mma-sync"][0] and fmas >= AUTO_MIN_TENSOR_FMAS and min(m, n, k) >= MIN_TENSOR_EXTENT:
        return SCHEDULES["mma-sync"] if batch * -(-m // 128) * -(-n // 128) >= SMS else SMALL_MMA_TILE
    if not isinstance(element, Float32Type) or fmas < AUTO_MIN_FMAS:
        return None
    if batch * -(-m // 128) * -(-n // 128) >= SMS:
        return SCHEDULES[BEST]
    # A few output tiles with a deep K (a weight gradient, 200x30 over a batch of 4096) would leave most SMs idle
    # for a long loop; a thread per output at least spreads the work (split-K would be the real fix).
    return SMALL_TILE if batch * -(-m // 64) * -(-n // 64) >= MIN_SMALL_TILES else None


def fit_shared_memory(s: Schedule, element_bytes: int) -> Schedule:
    """``s`` with its K tile halved until its tiles fit in :data:`SHARED_BYTES` (f64 tiles take twice the bytes)."""
    stages = 2 if s.async_copy else 1
    while s.bk > 1 and stages * s.bk * (s.bm + s.bn + 2 * VEC) * element_bytes > SHARED_BYTES:
        s = dataclasses.replace(s, bk=s.bk // 2)
    return s


def fit_registers(s: Schedule, element_bytes: int) -> Schedule:
    """``s`` with fewer outputs per thread (its ``vec`` halved) until the accumulators take at most 64 32-bit
    registers: 8x8 f64 accumulators (128 registers) plus their fragments would spill."""
    while s.vec[0] * s.vec[1] * s.reps[0] * s.reps[1] * element_bytes > 256 and max(s.vec) > 1:
        vm, vn = s.vec
        s = dataclasses.replace(s, vec=(vm // 2, vn) if vm >= vn else (vm, vn // 2))
    return s


def fit(s: Schedule, m: int, k: int, batch: int, element: Attribute) -> Schedule | None:
    """``s`` adapted to a (batch x) M x N x K matmul of ``element`` (K tile for shared memory, outputs per thread
    for registers), or None when its grid would exceed CUDA's limits or K = 0 (a thread per output instead). A
    tensor-core rung on f32 (tf32) halves its K tile (4-byte elements in the same 48 KiB) and records ``tf32``."""
    if s.tensor_core:
        if isinstance(element, Float32Type):
            s = dataclasses.replace(s, bk=s.bk // 2, tf32=True)
        if -(-m // s.bm) > MAX_GRID_YZ or batch > MAX_GRID_YZ or k == 0:
            return None
        return s
    esize = 4 if isinstance(element, Float32Type) else 8
    s = fit_shared_memory(fit_registers(s, esize), esize)
    if -(-m // s.bm) > MAX_GRID_YZ or batch > MAX_GRID_YZ or k == 0:
        return None
    return s


def matmul_rung(
    m: int, n: int, k: int, batch: int, element: Attribute, name: str, precision: str = "fp32"
) -> Schedule | None:
    """The fitted rung a matmul runs with under the ``matmul`` option ``name`` (None: a thread per output).
    ``precision`` is ``pg.MatmulOp.precision``; raises ``ValueError`` (:func:`check_precision`) when ``name`` is a
    tensor-core rung that cannot run it."""
    check_precision(name, precision)
    if name in SCHEDULES and not SCHEDULES[name].tensor_core and precision in ("bf16", "fp16"):
        return None  # the SIMT rungs tile f32/f64 nests only: a 16-bit matmul keeps a thread per output
    chosen = choose(m, n, k, batch, element, precision) if name == "auto" else SCHEDULES[name]
    return None if chosen is None else fit(chosen, m, k, batch, element)


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
    try:
        if o.matmul in WGMMA:
            check_precision(o.matmul, mm.precision)
            return matmul_wgmma.schedule_attr(o.matmul)
        rung = matmul_rung(m, n, k, math.prod(batch), element_of(mm.lhs), o.matmul, mm.precision)
    except ValueError as e:
        raise PassFailedException(f"pg-schedule: {e}{where(mm)}") from None
    return o.per_point() if rung is None else rung.attr()


def _outputs(op: kernel.FusedOp | kernel.LaunchOp) -> int:
    return len(op.outputs) if isinstance(op, kernel.FusedOp) else len(op.outs)


def _reduction(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # A kernel that also stores an elementwise side output inside the reduction loop keeps a thread per output
    # point: block_per_row splits the loop over threads, and every thread would need the side output's stores.
    red = _main_op(op, (pg.SumOp, pg.MaxOp, pg.MinOp))
    if o.block_reductions and isinstance(red, pg.ReduceOp) and _outputs(op) == 1:
        shape = shape_of(red.input)
        if math.prod(shape[d] for d in red.dim_list) >= MIN_BLOCK_REDUCTION:
            return ScheduleAttr("block_per_row", {"block": o.block_size})
    return o.per_point()


def _scatter_add(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # A 0-d index adds each update to one place: no index loop to spread over threads, no race, no atomics.
    sc = _main_op(op, (pg.ScatterAddOp,))
    # bf16/f16 scatters accumulate through f32 with a rounding per add: no atomic add of that form (a thread each).
    low = isinstance(sc, pg.ScatterAddOp) and pg.is_low_precision(element_of(sc.result))
    if o.atomics and isinstance(sc, pg.ScatterAddOp) and shape_of(sc.indices) and not low:
        return ScheduleAttr("atomic", {"block": o.block_size})
    return o.per_point()


def _attention(op: kernel.FusedOp | kernel.LaunchOp, o: Options) -> ScheduleAttr:
    # attention=flash-wgmma: the bf16 forwards it computes (attention_wgmma.fallback_reason); the rest as auto
    forced = attention_wgmma.schedule(op) if o.attention == attention_wgmma.STRATEGY else None
    return forced if forced is not None else attention.schedule(op, o)


KIND_SCHEDULES: dict[str, Callable[[kernel.FusedOp | kernel.LaunchOp, Options], ScheduleAttr]] = {
    "matmul": _matmul,
    "reduction": _reduction,
    "scatter_add": _scatter_add,
    "attention": _attention,
}
"""How a kernel of each kind gets its schedule; kinds not listed take ``thread_per_point``."""

STRATEGIES = (
    "thread_per_point", "block_per_row", "atomic", *SCHEDULES, *WGMMA, attention.STRATEGY, attention_wgmma.STRATEGY
)  # fmt: skip
"""Every strategy a ``#kernel.schedule`` may name."""


def schedule_for(op: kernel.FusedOp | kernel.LaunchOp, options: Options) -> ScheduleAttr:
    """The schedule of one kernel under ``options``."""
    chooser = KIND_SCHEDULES.get(op.kind.data)
    return chooser(op, options) if chooser is not None else options.per_point()


@dataclass(frozen=True)
class PgSchedule(ModulePass):
    """Give every kernel its ``#kernel.schedule`` (see the module docstring). Options: ``matmul`` (``auto`` or a
    rung), ``block-size``, ``block-reductions``, ``atomics``, ``attention``."""

    name = "pg-schedule"
    matmul: str = "auto"
    block_size: int = BLOCK_SIZE
    block_reductions: bool = True
    atomics: bool = True
    attention: str = "auto"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            check_schedule(self.matmul)
            attention_wgmma.check_schedule(self.attention)
        except ValueError as e:
            raise PassFailedException(f"pg-schedule: {e}") from None
        if self.block_size % WARP or not WARP <= self.block_size <= 1024:
            raise PassFailedException(f"pg-schedule: block-size={self.block_size} is not a multiple of 32 in 32..1024")
        options = Options(self.matmul, self.block_size, self.block_reductions, self.atomics, self.attention)
        for k in op.walk():
            if isinstance(k, kernel.FusedOp | kernel.LaunchOp):
                k.schedule = schedule_for(k, options)
