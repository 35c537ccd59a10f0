"""The matmul kind's schedule table: the rungs of the SGEMM ladder and the tensor-core rungs as data
(:class:`Schedule` rows of :data:`SCHEDULES`; the Hopper kernels of ``matmul_wgmma`` by name in :data:`WGMMA`), the
rule ``auto`` follows (:func:`choose`), and how a rung is fitted to a matmul's shape and element type (:func:`fit`,
:func:`matmul_rung`). ``pg-schedule`` records the chosen rung as a ``#kernel.schedule``; ``pg-matmul-schedule`` and
the matmul kind read it back (:meth:`Schedule.from_attr`).

**The rungs** (Simon Boehm, "How to Optimize a CUDA Matmul Kernel for cuBLAS-like Performance", 2022; the CUTLASS
warp-level hierarchy, NVIDIA 2017): warps of a block and lanes of a warp along (M, N), ``reps`` fragments of ``vec``
outputs per thread, the K tile ``bk`` (0: no shared memory), 16-byte accesses (``vector``) and the ``cp.async``
pipeline (``async_copy``); ``mma-sync`` (``matmul_mma_sync.py``) runs the same warp hierarchy on tensor cores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from xdsl.dialects.builtin import Float32Type
from xdsl.ir import Attribute

from picograd.dialects import gpu_ext
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.kinds import matmul_wgmma
from picograd.passes.kinds.matmul_split import SPLIT_K, split_k

WARP = gpu_ext.WARP_SIZE
VEC = 4
"""Elements of f32 per 16-byte access."""


@dataclass(frozen=True)
class Schedule:
    """One rung of the SGEMM ladder (see the module docstring). All sizes are counts of elements or threads:
    ``warps`` of a block and ``lanes`` of a warp along (M, N) (lanes multiply to 32); each thread owns ``reps``
    fragments of ``vec`` contiguous outputs along (M, N); ``bk`` is the K tile (0: no shared memory); ``vector``
    turns on 16-byte loads and stores, ``async_copy`` the two-stage ``cp.async`` pipeline. The block tile is
    ``bm x bn``. ``split_k`` > 1 cuts K into that many chunks (``matmul_split.py``: partial matmuls, then a sum).

    Tensor-core options (``matmul_mma_sync.py``; off in the ``mma-sync`` row, on in :data:`MMA_SYNC_VARIANTS`):
    ``prefetch`` loads each K step's fragments while the previous step's mma run, across K tiles too (one barrier
    per K tile, before the last step: CUTLASS's multistage main loop); ``tf32_trunc`` feeds f32 bits to the tf32
    mma as they are (the tensor cores use the top 19: truncation) instead of rounding each fragment register with
    a ``cvt``; ``row8_scalar`` keeps the 8-row swizzle for the tiles read with scalar ``ld.shared`` (tf32 operands
    stored M- or N-major: two-way bank conflicts), for comparison with the default spread swizzle (a warp's 4 rows
    x 8 columns in 32 distinct banks)."""

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
    split_k: int = 1
    prefetch: bool = False
    tf32_trunc: bool = False
    row8_scalar: bool = False

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
                **({SPLIT_K: self.split_k} if self.split_k > 1 else {}),
                **{key: True for key in TENSOR_CORE_OPTIONS if getattr(self, key)},
            },
        )

    @staticmethod
    def from_attr(attr: ScheduleAttr) -> Schedule | None:
        """The rung ``attr`` names (None when it is not a matmul rung); raises ``ValueError`` when its recorded
        tile or thread count disagree with its warps, lanes, reps and vec."""
        if attr.strategy.data not in RUNGS:
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
            tensor_core=RUNGS[attr.strategy.data].tensor_core,
            tf32=attr.flag("tf32"),
            split_k=attr.count(SPLIT_K, 1),
            **{key: attr.flag(key) for key in TENSOR_CORE_OPTIONS},
        )
        if attr.sizes("tile") != (s.bm, s.bn, s.bk) or attr.count("threads") != s.threads:
            raise ValueError(f"{attr}: tile and threads do not follow from warps, lanes, reps and vec")
        return s


TENSOR_CORE_OPTIONS = ("prefetch", "tf32_trunc", "row8_scalar")
"""The boolean tensor-core options of :class:`Schedule`, recorded as flags of the ``#kernel.schedule``."""


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
        # thread holds 2x2 outputs of each of reps m16n8 tiles; 3 stages of 128x32 + 32x128 bf16 tiles (48 KiB).
        # 4 warps of 64x64 (not 8 of 64x32): 8 ldmatrix.x4 feed 32 mma per k16 step instead of 6 feeding 16, and
        # ~230 registers x 128 threads let two blocks share an SM, whose barriers then do not stall it
        Schedule(
            "mma-sync",
            warps=(2, 2),
            lanes=(8, 4),
            reps=(4, 8),
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


def _variant(name: str, **changes: Any) -> tuple[str, Schedule]:
    return name, dataclasses.replace(SCHEDULES["mma-sync"], name=name, **changes)


MMA_SYNC_VARIANTS: dict[str, Schedule] = dict(
    (
        _variant("mma-sync-pf", prefetch=True),
        _variant("mma-sync-tr", tf32_trunc=True),
        _variant("mma-sync-pf-tr", prefetch=True, tf32_trunc=True),
        _variant("mma-sync-row8", row8_scalar=True),
        # past 48 KiB of shared memory (dynamic, pg-to-ptx): 4 stages (64 KiB), a K tile of 64 (96 KiB), both two
        # blocks an SM; 8 warps of 64x64 on 128x256 (72 KiB, one block an SM)
        _variant("mma-sync-s4-pf", stages=4, prefetch=True),
        _variant("mma-sync-k64", bk=64),
        _variant("mma-sync-k64-pf", bk=64, prefetch=True),
        _variant("mma-sync-k64-pf-tr", bk=64, prefetch=True, tf32_trunc=True),
        _variant("mma-sync-256-pf", warps=(2, 4), prefetch=True),
        _variant("mma-sync-256-pf-tr", warps=(2, 4), prefetch=True, tf32_trunc=True),
    )
)
"""``mma-sync`` with its tensor-core options (:class:`Schedule`) and other tiles, by name, to be timed against the
row (``bench/gemm.py --schedules``); forced by name only (``auto`` takes the ``mma-sync`` row). For bf16/fp16
``tf32_trunc`` and ``row8_scalar`` change nothing (16-bit tiles are read by ``ldmatrix``)."""
RUNGS: dict[str, Schedule] = {**SCHEDULES, **MMA_SYNC_VARIANTS}
"""Every named ``Schedule``: the ladder and the ``mma-sync`` variants."""

WGMMA = matmul_wgmma.SCHEDULES
"""The Hopper tensor-core kernels ``wgmma``, ``wgmma-ws``, ``wgmma-ws-192``, the ping-pong ``wgmma-pp`` ones and
the ``-pairs`` rows (``picograd/passes/kinds/matmul_wgmma.py``: built in the ``ptx`` dialect, not ``Schedule``
rows), forced by name only (``auto`` takes ``wgmma-ws`` or ``wgmma-ws-192``, :data:`AUTO_WGMMA`)."""
TENSOR_CORE = {
    **{name: (("bf16", "fp16", "tf32"), "sm_80") for name in ("mma-sync", *MMA_SYNC_VARIANTS)},
    **{name: (("bf16", "fp16", "tf32"), "sm_90a") for name in WGMMA},
}
"""Tensor-core rungs: the precisions they run (``pg.MatmulOp.precision``) and the oldest target they run on (the
wgmma ones check sm_90a in ``pg-to-ptx``, which knows the target)."""
AUTO_WGMMA = ("wgmma-ws", "wgmma-ws-192")
"""The kernels ``auto`` takes on sm_90a for the bf16/fp16/tf32 matmuls it would run on ``mma-sync`` (``pg-schedule``;
a tf32 one whose operands are not both K-major falls back to ``mma-sync`` at the loop stage): the one whose tiles
pad N least, the first on a tie (:func:`auto_wgmma`). Measured on an H100, 2026-12-06
(``bench/results/gemm_gpt_compare_h100_20261206_1545.txt``): at N = 384, where 256-wide tiles compute 512 columns,
128x192 tiles ran 16384x384x1536 in 32 us against 40-43 (99-101% of cuBLAS against 75-81%) and 16384x384x1152 in
26 against 32; where both divide N (1536) or nearly (1152), they ran within 3-10% of each other."""


def auto_wgmma(n: int) -> str:
    """The kernel of :data:`AUTO_WGMMA` for a matmul with ``n`` columns: the fewest padded columns."""
    return min(AUTO_WGMMA, key=lambda name: -(-n // WGMMA[name].bn) * WGMMA[name].bn)


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
SIMT_BLOCKS_PER_SM = 6
"""Blocks of :data:`SMALL_TILE` an SM holds at once (4 warps, 80 registers a thread: 6 fit; ptxas, sm_90a): split-K
gives its matmuls up to this many a SM, where one block an SM would run 4 warps, too few to hide the FMA and
shared-memory latencies, and two or three leave the SMs that hold one block more than the others idle at the end
(the GPT's f32 weight gradients over 16384 tokens: 384 x 1536, 144 tiles, split 4; 384 x 384, 36 tiles, split 16)."""
SHARED_BYTES = 48 * 1024
"""Static shared memory a block may declare (PTX ``.shared``; more needs dynamic shared memory)."""
MAX_GRID_YZ = 65535
"""CUDA's limit on the y and z extents of a grid (the x extent may reach 2**31 - 1)."""


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
    if not isinstance(name, str) or (name != "auto" and name not in RUNGS and name not in WGMMA):
        choices = ", ".join([*RUNGS, *WGMMA])
        raise ValueError(f"unknown matmul schedule '{name}': expected auto or one of {choices}")
    return name


def choose(m: int, n: int, k: int, batch: int, element: Attribute, precision: str = "fp32") -> Schedule | None:
    """The rung ``auto`` takes for a (batch x) M x N x K matmul of ``element`` (None: a thread per output):
    ``mma-sync`` for bf16/fp16/tf32 from :data:`AUTO_MIN_TENSOR_FMAS` multiply-adds up when M, N and K are at least
    :data:`MIN_TENSOR_EXTENT` (128x128 tiles when they give every SM one, else 64x64); otherwise, for f32,
    ``cp-async`` on 128x128 tiles when they give every SM at least one, else on 64x64 tiles (fewer than
    :data:`MIN_SMALL_TILES` of those and K too shallow to split: a thread per output). ``mma-sync`` and the 64x64
    ``cp-async`` take ``split_k`` (:func:`~picograd.passes.kinds.matmul_split.split_k`) when their tiles fill fewer
    than half the SMs and K is deep."""
    fmas = m * n * k * batch
    if precision in TENSOR_CORE["mma-sync"][0] and fmas >= AUTO_MIN_TENSOR_FMAS and min(m, n, k) >= MIN_TENSOR_EXTENT:
        rung = SCHEDULES["mma-sync"] if batch * -(-m // 128) * -(-n // 128) >= SMS else SMALL_MMA_TILE
        return with_split(rung, m, n, k, batch)
    if not isinstance(element, Float32Type) or fmas < AUTO_MIN_FMAS:
        return None
    if batch * -(-m // 128) * -(-n // 128) >= SMS:
        return SCHEDULES[BEST]
    # A few output tiles with a deep K (a weight gradient: 384 x 384 over the GPT's 16384 tokens is 36 tiles of 64x64
    # on 132 SMs, each a 16384-long loop) would leave most SMs idle: split-K; where K does not split, a thread per
    # output at least spreads the work over fewer than MIN_SMALL_TILES tiles.
    small = with_split(SMALL_TILE, m, n, k, batch)
    return small if small.split_k > 1 or batch * -(-m // 64) * -(-n // 64) >= MIN_SMALL_TILES else None


def wgmma_choice(
    m: int, n: int, k: int, batch: int, element: Attribute, precision: str, option: str, arch: str
) -> str | None:
    """The Hopper kernel (a key of :data:`WGMMA`) a (batch x) M x N x K matmul of ``precision`` takes under the
    ``matmul`` option ``option`` on ``arch``, or None: the one ``option`` names; under ``auto`` on ``sm_90a``,
    :func:`auto_wgmma`'s kernel for the bf16/fp16/tf32 matmuls ``auto`` would run on ``mma-sync`` whose extents give TMA
    its 16-byte rows (multiples of 8; measured on an H100, 2026-12-05/06: 82-87% of cuBLAS in bf16, 78-99% in
    tf32, ``mma-sync`` 43-58%). ``pg-schedule`` records it; ``pg-wgmma-layout`` reads it to give a tf32 one K-major
    operands. Raises ``ValueError`` as :func:`matmul_rung` does."""
    if option in WGMMA:
        check_precision(option, precision)
        return option
    rung = matmul_rung(m, n, k, batch, element, option, precision)
    if option != "auto" or arch != "sm_90a" or rung is None or not rung.tensor_core:
        return None
    if precision in TENSOR_CORE[AUTO_WGMMA[0]][0] and all(x % 8 == 0 for x in (m, n, k)):
        return auto_wgmma(n)
    return None


def wgmma_split_k(name: str, m: int, n: int, k: int, batch: int) -> int:
    """``auto``'s chunks of K for a (batch x) M x N x K matmul on the wgmma kernel ``name``: its output tiles over
    the SMs (:func:`~picograd.passes.kinds.matmul_split.split_k`)."""
    s = WGMMA[name]
    return split_k(batch * -(-m // s.bm) * -(-n // s.bn), k, matmul_wgmma.SMS)


def with_split(s: Schedule, m: int, n: int, k: int, batch: int) -> Schedule:
    """``s`` with ``auto``'s ``split_k`` for the matmul's tiles of ``s`` and its K (a SIMT rung's 4-warp blocks
    count :data:`SIMT_BLOCKS_PER_SM` to an SM)."""
    per_sm = 1 if s.tensor_core else SIMT_BLOCKS_PER_SM
    return dataclasses.replace(s, split_k=split_k(batch * -(-m // s.bm) * -(-n // s.bn), k, SMS, per_sm))


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
    chosen = choose(m, n, k, batch, element, precision) if name == "auto" else RUNGS[name]
    return None if chosen is None else fit(chosen, m, k, batch, element)
