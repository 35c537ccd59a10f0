"""The Hopper tensor-core matmul schedules ``wgmma``, ``wgmma-ws`` and ``wgmma-pp``: a ``ptx.func`` kernel built
directly.

C (M x N, f32 or bf16) = A (M x K) @ B (K x N), A and B bf16 or f16, each stored K-major (A[m, k], B as Bt[n, k],
as ``x @ W.T`` of ``nn.Linear`` has them) or M/N-major (A as At[k, m], B[k, n], as the backward pass's
``dY @ W`` and ``dY.T @ X`` have them), or f32 read as tf32 (a matmul recorded under ``allow_tf32``; both operands
K-major, the only layout wgmma takes for 32-bit inputs: ``m64nNk8.f32.tf32.tf32``, the f32 bits as TMA copied them,
of which the tensor cores use the top 19), accumulated in f32, optionally batched (a leading batch dim on A, B and
C). A K tile is 128 bytes of K whatever the type (64 bf16/f16 or 32 f32), so the shared-memory layout, the
descriptors and their 32-byte steps are those of the 16-bit kernels; only the TMA element type, the tile's K and
the instruction's K (``ptx.WGMMA_K``) change.
The kernel follows the public H100 GEMM worklogs (Pranjal Shankhdhar, "Outperforming cuBLAS on H100: a Worklog",
2024, the fast.cu kernels; ThunderKittens' H100 GEMM levels; MLIR's ``nvgpu`` lowering of ``tma.async.load`` and
``warpgroup.mma``), written from the PTX ISA 8.0 (sections 9.7.8.24.9 ``cp.async.bulk.tensor``, 9.7.12.15
``mbarrier``, 9.7.14 ``wgmma``, 9.7.17.1 ``setmaxnreg``):

- **TMA tiles**: A and B are passed as tensor maps (``.param .align 64 .b8 [128]``, made by the runtime with
  ``cuTensorMapEncodeTiled``; :class:`TensorMapSpec` says what each describes). A K-major box is 64 elements of K
  (128 bytes, one 128-byte swizzle width; 32 of f32) by the tile's rows; an M/N-major tile is boxes of 64 elements
  of M/N by the 64 of K, one per 64 rows. Boxes land in shared memory swizzled (CUTLASS's ``Swizzle<3,4,3>``); elements
  outside the matrix arrive as zeros, so ragged M, N and K need no code.
- **A pipeline of ``stages``** shared-memory buffers, each with a *full* mbarrier: the copies of a stage complete on
  it (``mbarrier.arrive.expect_tx`` announces the bytes), consumers wait on its phase parity
  (``mbarrier.try_wait.parity``).
- **wgmma**: each consumer warpgroup (128 threads) owns 64 rows of the tile and issues, per K tile, four
  ``wgmma.mma_async.m64nBNk16`` reading A and B from 128-byte-swizzled shared-memory descriptors (K-major: the
  start address advancing 32 bytes per k16; M/N-major, ``imm-trans`` 1: 2048 bytes, atoms ``BK * 128`` bytes apart),
  then ``commit_group`` and ``wait_group``. The BN/2 f32 accumulators a
  thread holds stay in registers for the whole K loop.
- ``wgmma``: every warpgroup consumes; thread 0 also issues the copies, ``stages`` K tiles ahead, refilling a stage
  once all warpgroups have passed a ``bar.sync`` after reading it. One tile per block, grid (N tiles, M tiles,
  batch).
- ``wgmma-ws`` (warp specialisation): warpgroup 0 is the producer; it lowers its registers
  (``setmaxnreg.dec``) and one of its threads issues the copies, waiting on each stage's *empty* mbarrier (one
  arrival per consumer warpgroup once its wgmma have read the stage); the consumer warpgroups raise theirs
  (``setmaxnreg.inc``) for the accumulators, and keep one K tile's wgmma in flight (``wait_group 1``) while they
  issue the next, releasing a stage one K tile late (so at least 2 stages). The grid is persistent: one block per
  SM, tiles strided over the blocks, the producer running ahead into the next tile while the consumers store the
  last one.
- ``wgmma-pp`` (ping-pong, after CUTLASS's ``KernelTmaWarpSpecializedPingpong`` and its ordered sequence
  barrier; our own code): ``wgmma-ws`` with tiles of 64 rows, each consumer warpgroup taking every other tile of
  the block, so that one warpgroup stores its tile while the other runs its main loop (for short K loops, where
  the epilogue takes about as long as the main loop). The producer fills the ring with the block's tiles' K tiles
  in order; a consumer's (stage, phase) skips the other's K tiles. The main loops take turns through a *turn*
  mbarrier per consumer (128 arrivals: every thread of the other warpgroup, once it has waited for the last stage
  of its tile): a warpgroup's stage waits start only after the other's have returned, so each means the current or
  the previous phase of the stage's full mbarrier, as ``mbarrier.try_wait.parity`` requires (PTX ISA 8.0 section
  9.7.12.15.16; without the turns, the second warpgroup waited on phases two ahead of the producer, which the
  one-bit parity aliased, and the kernel faulted on an H100). The epilogues need no turn: they touch no shared
  state. A stage's empty mbarrier takes one arrival (its one reader). ``wgmma-pp-128``: tiles of 128 rows, each
  consumer issuing two m64 wgmma a k16 (two sets of accumulators), for fewer bytes loaded an output.
- **Epilogue**: each thread stores its accumulators where they fall inside C, skipping the column groups past N:
  pairs of adjacent columns (``st.global.v2.f32``; ``st.global.v2.b16`` of two bf16/f16 rounded to nearest even by
  ``cvt.rn`` where N is odd); a 16-bit C whose N is a multiple of 8 (``quad_stores``) 16 bytes a thread, after the
  lanes of each quad transpose their column pairs of 4 groups with ``shfl.sync.bfly``: a warp's store covers 64
  bytes of each of 8 rows instead of 16, with a quarter of the instructions.

Limits (:func:`unsupported`): bf16/fp16 inputs, or tf32 with both operands K-major; each operand a whole
(batched) matrix whose contiguous dim is a multiple of 16 bytes (the row pitch TMA needs), at a 16-byte-aligned
offset; a broadcast operand (no batch dim) is not built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xdsl.builder import ImplicitBuilder
from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    DenseArrayBase,
    DictionaryAttr,
    Float16Type,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerAttr,
    MemRefType,
    StringAttr,
    UnitAttr,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import ptx
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, SHARED_BYTES_ATTR, STRATEGY_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.buffers import where

if TYPE_CHECKING:
    from picograd.passes.kinds.matmul import MatmulNest

BK = 64
"""K elements of a 16-bit tile: 128 bytes of bf16/f16, one 128-byte swizzle row (:func:`tile_k` for any type)."""
ATOM = 64
"""Elements of a 128-byte swizzle row: an M/N-major tile is stored as 64-wide atoms of BK rows of K."""
SWIZZLE = 128
WGMMA_K = ptx.WGMMA_K["bf16"]
"""K of one 16-bit wgmma (the attention kernels' inputs are bf16)."""
WARPGROUP = 128
SMS = 132
"""Streaming multiprocessors of the H100/H200: the blocks of a persistent grid."""
ALIGN = 1024
"""Alignment of a 128-byte-swizzled tile in shared memory (the swizzle pattern repeats every 8 rows of 128 B)."""
MAX_SHARED = 227 * 1024
"""Shared memory a block may have on Hopper (after the dynamic opt-in)."""
TENSOR_MAPS_ATTR = "pg.tensor_maps"
"""Attribute of a ``ptx.func`` with tensor-map parameters: for each, what the runtime encodes (see
:class:`TensorMapSpec`)."""
INPUT_TYPES = ("bf16", "f16", "tf32")
"""A's and B's types: ``tf32`` is f32 in memory, read by the tensor cores as tf32."""
ELEMENT_BYTES = {t: ptx.TYPE_WIDTH[t] // 8 for t in INPUT_TYPES}
TMA_TYPES = {"bf16": "bf16", "f16": "f16", "tf32": "f32"}
"""The tensor-map element type of each input type."""
OUTPUT_TYPES = ("f32", "bf16", "f16")
"""C's element types (16-bit ones rounded to nearest even with ``cvt.rn``)."""


def tile_k(dtype: str) -> int:
    """K elements of a K tile of inputs of ``dtype``: one 128-byte swizzle row (64 of bf16/f16, 32 of tf32)."""
    return SWIZZLE // ELEMENT_BYTES[dtype]


@dataclass(frozen=True)
class WgmmaSchedule:
    """One configuration of the wgmma kernel: ``consumers`` warpgroups of 64 rows each (BM = 64 * consumers),
    ``bn`` columns (the wgmma N), ``stages`` shared-memory buffers; ``specialised`` adds the producer warpgroup
    and makes the grid ``persistent``; ``pingpong`` (with ``specialised`` and two consumers) gives each consumer
    warpgroup whole tiles of its own (BM = 64), their main loops taken in turn, so that one's epilogue runs under
    the other's main loop; ``atoms`` (ping-pong only) is the 64-row slabs of a consumer's tile (one m64 wgmma and
    BN/2 accumulators each: BM = 64 * atoms). ``producer_regs``/``consumer_regs`` are the ``setmaxnreg`` counts.
    ``quad_stores``: a bf16/f16 C (N a multiple of 8, 16-byte aligned; BN a multiple of 32) is stored 16 bytes
    (8 columns) a thread after a 4x4 transpose of column pairs within each quad of lanes
    (:meth:`_Kernel.store_quads`), not 4 bytes (one pair) at a time."""

    name: str
    consumers: int
    bn: int
    stages: int
    specialised: bool = False
    producer_regs: int = 40
    consumer_regs: int = 232
    pingpong: bool = False
    atoms: int = 1
    quad_stores: bool = True

    @property
    def bm(self) -> int:
        return 64 * self.atoms if self.pingpong else 64 * self.consumers

    @property
    def threads(self) -> int:
        return WARPGROUP * (self.consumers + int(self.specialised))

    @property
    def stage_bytes(self) -> int:
        return (self.bm + self.bn) * SWIZZLE  # a K tile is 128 bytes of each row of A and Bt

    @property
    def shared_bytes(self) -> int:
        """Dynamic shared memory of a block: the stages, plus slack to align them to :data:`ALIGN`."""
        return self.stages * self.stage_bytes + ALIGN

    def check(self) -> None:
        """Raise ``ValueError`` when the configuration cannot be built."""
        if self.bn not in ptx.WGMMA_N or self.bn > 256:
            raise ValueError(f"{self.name}: bn={self.bn} is not a wgmma N (a multiple of 8 up to 256)")
        if self.consumers < 1 or self.bm > 256 or self.stages < 1 + int(self.specialised):
            raise ValueError(f"{self.name}: {self.consumers} consumer warpgroups, {self.stages} stages")
        if self.pingpong and not (self.specialised and self.consumers == 2):
            raise ValueError(f"{self.name}: ping-pong takes a producer warpgroup (specialised) and two consumers")
        if self.atoms < 1 or (self.atoms > 1 and not self.pingpong) or self.atoms * self.bn > 256:
            raise ValueError(f"{self.name}: {self.atoms} slabs of 64 rows a consumer (ping-pong only; at most "
                             "128 accumulators a thread)")  # fmt: skip
        if self.shared_bytes > MAX_SHARED:
            raise ValueError(f"{self.name}: {self.shared_bytes} bytes of shared memory (at most {MAX_SHARED})")


SCHEDULES: dict[str, WgmmaSchedule] = {
    "wgmma": WgmmaSchedule("wgmma", consumers=2, bn=128, stages=4),
    "wgmma-ws": WgmmaSchedule("wgmma-ws", consumers=2, bn=256, stages=4, specialised=True),
    "wgmma-ws-192": WgmmaSchedule("wgmma-ws-192", consumers=2, bn=192, stages=5, specialised=True),
    # the epilogue before quad_stores (a column pair a store), to time against the rows above (bench/gemm.py)
    "wgmma-ws-pairs": WgmmaSchedule("wgmma-ws-pairs", consumers=2, bn=256, stages=4, specialised=True,
                                    quad_stores=False),
    "wgmma-ws-192-pairs": WgmmaSchedule("wgmma-ws-192-pairs", consumers=2, bn=192, stages=5, specialised=True,
                                        quad_stores=False),
    "wgmma-pp": WgmmaSchedule("wgmma-pp", consumers=2, bn=256, stages=5, specialised=True, pingpong=True),
    "wgmma-pp-192": WgmmaSchedule("wgmma-pp-192", consumers=2, bn=192, stages=6, specialised=True, pingpong=True),
    "wgmma-pp-128": WgmmaSchedule("wgmma-pp-128", consumers=2, bn=128, stages=6, specialised=True, pingpong=True,
                                  atoms=2),
}  # fmt: skip
"""The tensor-core rungs that run on wgmma (sizes for large matmuls: fast.cu's 128x128 and 128x256 tiles;
``wgmma-ws-192``: ``wgmma-ws`` on 128x192 tiles, which divide the GPT's N = 384, 1152 and 1536 exactly (256-wide
ones compute 512 columns for 384); ``wgmma-pp``: the ping-pong schedule on 64x256 tiles, for short K loops, where
storing a tile takes about as long as computing it; ``wgmma-pp-192`` on 64x192 tiles;
``wgmma-pp-128`` on 128x128 tiles, two m64n128k16 a k16, which read 20% fewer bytes an output than 64x256 ones)."""


@dataclass(frozen=True)
class TensorMapSpec:
    """What ``cuTensorMapEncodeTiled`` encodes for one tensor-map parameter: the buffer of kernel operand
    ``operand`` at byte ``offset``, elements of ``dtype`` (``bf16``/``f16``), ``shape`` and ``box`` innermost first,
    the byte ``strides`` of the outer dims, ``swizzle`` bytes (128). Out-of-range elements read as zero."""

    operand: int
    offset: int
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    box: tuple[int, ...]
    swizzle: int = SWIZZLE

    def attr(self) -> DictionaryAttr:
        def ints(v: Sequence[int]) -> ArrayAttr:
            return ArrayAttr([IntegerAttr(x, i64) for x in v])

        return DictionaryAttr(
            {
                "operand": IntegerAttr(self.operand, i64),
                "offset": IntegerAttr(self.offset, i64),
                "dtype": StringAttr(self.dtype),
                "shape": ints(self.shape),
                "strides": ints(self.strides),
                "box": ints(self.box),
                "swizzle": IntegerAttr(self.swizzle, i64),
            }
        )

    @staticmethod
    def from_attr(attr: Attribute) -> TensorMapSpec:
        assert isinstance(attr, DictionaryAttr), attr
        d = attr.data

        def ints(key: str) -> tuple[int, ...]:
            v = d[key]
            assert isinstance(v, ArrayAttr)
            return tuple(x.value.data for x in v.data)  # type: ignore[attr-defined]

        def one(key: str) -> int:
            v = d[key]
            assert isinstance(v, IntegerAttr)
            return v.value.data

        dtype = d["dtype"]
        assert isinstance(dtype, StringAttr)
        return TensorMapSpec(
            one("operand"), one("offset"), dtype.data, ints("shape"), ints("strides"), ints("box"), one("swizzle")
        )


def tensor_maps(func: ptx.FuncOp) -> dict[int, TensorMapSpec]:
    """The tensor-map parameters of a kernel (parameter index -> spec), from its :data:`TENSOR_MAPS_ATTR`."""
    attr = func.attributes.get(TENSOR_MAPS_ATTR)
    if not isinstance(attr, DictionaryAttr):
        return {}
    return {int(k): TensorMapSpec.from_attr(v) for k, v in attr.data.items()}


@dataclass(frozen=True)
class Problem:
    """A (batch x) M x N x K matmul: inputs ``dtype``, output ``out_dtype``. The kernel takes the tensor maps of A
    and Bt, then ``args`` pointer parameters (the buffers its launch passes); A, Bt and C are the buffers of
    parameters ``operands`` (indices into those ``args``) at byte ``offsets`` (views of the memory plan's arena)."""

    m: int
    n: int
    k: int
    batch: int = 1
    dtype: str = "bf16"
    out_dtype: str = "f32"
    offsets: tuple[int, int, int] = (0, 0, 0)
    operands: tuple[int, int, int] = (0, 1, 2)
    args: int = 3
    majors: tuple[str, str] = ("k", "k")
    """How A and B are stored: ``"k"`` K-major (A[m, k], Bt[n, k]) or ``"mn"`` M/N-major (A stored as At[k, m],
    B as B[k, n])."""
    split: bool = False
    """A partial matmul of split-K (``matmul_split.py``): A and B are single matrices of depth ``k * batch``, and
    batch ``z`` (C's, the f32 partial sums) multiplies their chunk ``[z * k, (z + 1) * k)`` of K."""


def unsupported(p: Problem) -> str | None:
    """Why the wgmma kernel cannot compute ``p`` (None when it can)."""
    if p.dtype not in INPUT_TYPES:
        return f"inputs of {p.dtype} (wgmma reads {'/'.join(INPUT_TYPES)})"
    if p.out_dtype not in OUTPUT_TYPES:
        return f"an output of {p.out_dtype}"
    if min(p.m, p.n, p.k) < 1:
        return "an empty matmul"
    if p.dtype == "tf32" and p.majors != ("k", "k"):
        return "a tf32 operand that is not K-major (wgmma reads 32-bit operands K-major only: A[m, k] and Bt[n, k])"
    per_row = 16 // ELEMENT_BYTES[p.dtype]
    for role, major, rows in (("A", p.majors[0], p.m), ("B", p.majors[1], p.n)):
        inner, name = (p.k, "K") if major == "k" else (rows, "M" if role == "A" else "N")
        if inner % per_row:
            return (f"{name} = {inner} (TMA needs rows of a multiple of 16 bytes: {name} of {role} a multiple of "
                    f"{per_row})")  # fmt: skip
    if p.split and p.k % tile_k(p.dtype):
        return f"chunks of K = {p.k} (a partial matmul of split-K takes whole K tiles of {tile_k(p.dtype)})"
    if p.offsets[0] % 16 or p.offsets[1] % 16:
        return "operands that are not 16-byte aligned"
    if p.m * p.n >= 2**32 or p.batch > 65535:
        return "a C of 2**32 elements or more (32-bit epilogue indices)"
    return None


def grid(s: WgmmaSchedule, p: Problem, sms: int = SMS) -> tuple[int, int, int]:
    """The launch grid: (N tiles, M tiles, batch), or for a persistent schedule min(tiles, ``sms``) blocks."""
    tn, tm = -(-p.n // s.bn), -(-p.m // s.bm)
    if s.specialised:
        return (min(tn * tm * p.batch, sms), 1, 1)
    return (tn, tm, p.batch)


def tensor_map_specs(s: WgmmaSchedule, p: Problem) -> tuple[TensorMapSpec, TensorMapSpec]:
    """The tensor maps of A (operand 0) and Bt (operand 1)."""
    specs = []
    es, bk = ELEMENT_BYTES[p.dtype], tile_k(p.dtype)
    for operand, rows, box_rows in ((0, p.m, s.bm), (1, p.n, s.bn)):
        # K-major: boxes of a K tile (128 bytes) by the tile's rows; M/N-major (16-bit only): 64 of M/N (one
        # 128-byte swizzle row) by the K tile, one box per 64 rows of the tile
        depth = p.k * p.batch if p.split else p.k
        shape, box = ((depth, rows), (bk, box_rows)) if p.majors[operand] == "k" else ((rows, depth), (ATOM, BK))
        batch = ((p.batch,), (p.k * es * rows,), (1,)) if p.batch > 1 and not p.split else ((), (), ())
        spec = TensorMapSpec(p.operands[operand], p.offsets[operand], TMA_TYPES[p.dtype], shape + batch[0],
                             (shape[0] * es,) + batch[1], box + batch[2])  # fmt: skip
        specs.append(spec)
    return specs[0], specs[1]


# ---------------------------------------------------------------------------------------------------------------
# Building the kernel


def imm(value: int, kind: str = "u32") -> SSAValue:
    return ptx.MovOp(value, kind).result


def binop(cls: type[ptx.BinaryOp], a: SSAValue, b: int | SSAValue, kind: str = "u32", **mods: str) -> SSAValue:
    """``cls`` (a binary instruction) of ``a`` and ``b`` (an immediate is moved into a register first)."""
    rhs = imm(b, kind) if isinstance(b, int) else b
    make: Callable[..., ptx.BinaryOp] = cls
    return make(a, rhs, kind, **mods).results[0]


class PipelineBuilder:
    """What the kernels built in the ``ptx`` dialect on an mbarrier ring share (this module's, and
    ``attention_wgmma``'s): fresh labels, the spin-wait on a phase, the ring's (stage, phase) step."""

    stages: int
    labels: int = 0

    def label(self, what: str) -> str:
        self.labels += 1
        return f"{what}_{self.labels}"

    def wait(self, bar: SSAValue, parity: SSAValue) -> None:
        """Spin on ``mbarrier.try_wait.parity`` until the phase of that parity completes."""
        top = self.label("WAIT")
        ptx.LabelOp(top)
        done = ptx.MbarrierTryWaitOp(bar, parity).result
        ptx.BraOp(top, guard=done, negate=True)

    def advance(self, stage: SSAValue, phase: SSAValue) -> None:
        """stage += 1, wrapping to 0 (and flipping the phase parity) after the last of ``stages``."""
        nxt = binop(ptx.AddOp, stage, 1)
        wrap = ptx.SetpOp("eq", nxt, imm(self.stages)).result
        ptx.AssignOp(stage, ptx.SelpOp(imm(0), nxt, wrap, "u32").result)
        ptx.AssignOp(phase, binop(ptx.XorOp, phase, ptx.SelpOp(imm(1), imm(0), wrap, "u32").result, "b32"))


def smem_descriptor(addr: SSAValue, leading: int) -> SSAValue:
    """The shared-memory matrix descriptor of a 128-byte-swizzled tile at ``addr`` (PTX ISA 8.0 section
    9.7.14.5.1; CUTLASS's canonical GMMA layouts): 8-row groups 1024 bytes apart (the stride byte offset);
    ``leading`` is the leading byte offset: unused (16) for a K-major tile, the distance of the 64-wide atoms of an
    M/N-major one."""
    wide = ptx.CvtOp(addr, "u64", "u32").result
    field = ptx.AndOp(ptx.ShrOp(wide, imm(4), "u64").result, imm(0x3FFF, "b64"), "b64").result
    return ptx.OrOp(field, imm(ptx.wgmma_descriptor(0, leading, 8 * SWIZZLE, SWIZZLE), "b64"), "b64").result


class _Kernel(PipelineBuilder):
    """The ops of one wgmma kernel, built into ``func`` (see the module docstring)."""

    def __init__(self, s: WgmmaSchedule, p: Problem, name: str):
        self.s, self.p, self.name = s, p, name
        self.stages = s.stages
        self.bk = tile_k(p.dtype)
        self.nk = -(-p.k // self.bk)
        self.tiles_n, self.tiles_m = -(-p.n // s.bn), -(-p.m // s.bm)
        self.labels = 0

    def stage_addr(self, stage: SSAValue) -> tuple[SSAValue, SSAValue, SSAValue]:
        """(A tile, Bt tile, full mbarrier) of ``stage``."""
        a = ptx.MadOp(stage, imm(self.s.stage_bytes), self.tiles, "u32", mode="lo").result
        b = binop(ptx.AddOp, a, self.s.bm * SWIZZLE)
        return a, b, ptx.MadOp(stage, imm(8), self.full, "u32", mode="lo").result

    def issue(self, stage: SSAValue, kt: SSAValue, row_a: SSAValue, row_b: SSAValue, batch: SSAValue | None) -> None:
        """Arm the stage's full mbarrier with its bytes and copy the K tile ``kt`` of A and Bt into it."""
        a, b, bar = self.stage_addr(stage)
        ptx.MbarrierArriveOp(bar, self.s.stage_bytes)
        col = ptx.MulOp(kt, imm(self.bk, "s32"), "s32", mode="lo").result
        extra = [batch] if batch is not None else []
        if self.p.split and batch is not None:  # split-K: batch z reads K from z * k on, of unbatched A and Bt
            col = ptx.MadOp(batch, imm(self.p.k, "s32"), col, "s32", mode="lo").result
            extra = []
        for tile, tmap, row, rows, major in ((a, self.map_a, row_a, self.s.bm, self.p.majors[0]),
                                             (b, self.map_b, row_b, self.s.bn, self.p.majors[1])):  # fmt: skip
            if major == "k":
                ptx.CpAsyncBulkTensorOp(tile, tmap, [col, row, *extra], bar)
                continue
            for j in range(rows // ATOM):  # one box per 64 rows, BK * 128 bytes apart
                dst = binop(ptx.AddOp, tile, j * BK * 2 * ATOM) if j else tile
                at = binop(ptx.AddOp, row, ATOM * j, "s32") if j else row
                ptx.CpAsyncBulkTensorOp(dst, tmap, [at, col, *extra], bar)

    @staticmethod
    def descriptor(addr: SSAValue, major: str) -> SSAValue:
        """K-major: :func:`smem_descriptor`; M/N-major: 64-wide atoms of M/N ``BK * 128`` bytes apart."""
        return smem_descriptor(addr, 16 if major == "k" else BK * 2 * ATOM)

    def mma(self, stage: SSAValue, first: SSAValue, consumer: SSAValue, pending: int = 0) -> None:
        """The warpgroup's four m64nBNk16 (m64nBNk8 for tf32) on its 64 rows of the stage, one commit group;
        ``first`` (a predicate) is false for the first K tile of an output tile (D = A @ B, not + D). Then wait
        until at most ``pending`` groups are in flight."""
        a, b, _ = self.stage_addr(stage)
        slab = 64 * SWIZZLE  # 64 rows of A: 64 K-major rows of 128 bytes, or one M/N-major box of 64 x BK
        a = ptx.MadOp(consumer, imm(self.s.atoms * slab), a, "u32", mode="lo").result
        majors = self.p.majors
        das = [self.descriptor(binop(ptx.AddOp, a, i * slab) if i else a, majors[0]) for i in range(self.s.atoms)]
        db = self.descriptor(b, majors[1])
        trans = [int(m == "mn") for m in majors]
        ptx.WgmmaFenceOp()
        for kk in range(self.bk // ptx.WGMMA_K[self.p.dtype]):
            # the next 16 (tf32: 8) of K: 32 bytes along a K-major row, 16 rows (2048 bytes) of an M/N-major tile
            steps = [(2 if m == "k" else 128) * kk for m in majors]
            desc_b = ptx.AddOp(db, imm(steps[1], "b64"), "s64").result if kk else db
            for acc, da in zip(self.acc, das, strict=True):
                desc_a = ptx.AddOp(da, imm(steps[0], "b64"), "s64").result if kk else da
                ptx.WgmmaMmaAsyncOp(self.s.bn, self.p.dtype, acc, desc_a, desc_b, first if kk == 0 else self.true,
                                    trans_a=trans[0], trans_b=trans[1])  # fmt: skip
        ptx.WgmmaCommitGroupOp()
        ptx.WgmmaWaitGroupOp(pending)

    def tile_coords(self, tile: SSAValue) -> tuple[SSAValue, SSAValue, SSAValue]:
        """(N tile, M tile, batch) of a linear tile index (N fastest: neighbouring blocks share A's rows)."""
        per_batch = self.tiles_n * self.tiles_m
        bz = binop(ptx.DivOp, tile, per_batch)
        rest = binop(ptx.RemOp, tile, per_batch)
        return binop(ptx.RemOp, rest, self.tiles_n), binop(ptx.DivOp, rest, self.tiles_n), bz

    def epilogue(self, bx: SSAValue, by: SSAValue, bz: SSAValue, consumer: SSAValue, local: SSAValue) -> None:
        """Store the accumulators inside C: thread (warp w, lane 4g + t) of the warpgroup holds rows 16w + g and
        16w + g + 8, columns 8j + 2t and 8j + 2t + 1 in registers 4j..4j+3 (PTX ISA 8.0 section 9.7.14.4.2), of
        each of its 64-row slabs."""
        p, s = self.p, self.s
        warp, lane = binop(ptx.ShrOp, local, 5), binop(ptx.AndOp, local, 31, "b32")
        g, t2 = binop(ptx.ShrOp, lane, 2), binop(ptx.ShlOp, binop(ptx.AndOp, lane, 3, "b32"), 1, "b32")
        row = ptx.MadOp(by, imm(s.bm), ptx.MadOp(consumer, imm(64 * s.atoms), ptx.MadOp(warp, imm(16), g, "u32",
                        mode="lo").result, "u32", mode="lo").result, "u32", mode="lo").result  # fmt: skip
        col = ptx.MadOp(bx, imm(s.bn), t2, "u32", mode="lo").result
        cols_left = binop(ptx.SubOp, imm(p.n, "s32"), col, "s32")
        base = ptx.MulOp(bz, imm(p.m * p.n), "u32", mode="wide").result
        for i, acc in enumerate(self.acc):
            self.store_slab(binop(ptx.AddOp, row, 64 * i) if i else row, col, cols_left, base, acc)

    def store_slab(self, row: SSAValue, col: SSAValue, cols_left: SSAValue, base: SSAValue, acc: Sequence[SSAValue]
                   ) -> None:  # fmt: skip
        """The stores of :meth:`epilogue` for the slab whose thread holds ``row`` (and ``row + 8``): ``acc`` at
        C's element ``base`` + ``row`` * N + ``col``, where inside C."""
        p, s = self.p, self.s
        out = p.out_dtype
        es = 4 if out == "f32" else 2
        rows_left = binop(ptx.SubOp, imm(p.m, "s32"), row, "s32")
        in_row = [ptx.SetpOp("gt", rows_left, imm(8 * h, "s32")).result for h in (0, 1)]
        if s.quad_stores and out != "f32" and p.n % 8 == 0 and s.bn % 32 == 0 and p.offsets[2] % 16 == 0:
            self.store_quads(row, col, cols_left, base, acc, in_row)
            return
        index = ptx.MadOp(row, imm(p.n), col, "u32", mode="lo").result
        base = ptx.AddOp(base, ptx.CvtOp(index, "u64", "u32").result, "s64").result
        addr = ptx.MadOp(base, imm(es, "s64"), self.c_ptr, "s64", mode="lo").result
        pairs = p.n % 2 == 0  # an even N keeps each (even) column pair inside a row and aligned
        kind = "f32" if out == "f32" else "b16"
        for j in range(s.bn // 8):
            in_col = ptx.SetpOp("gt", cols_left, imm(8 * j, "s32")).result
            skip = self.label("STORED")  # columns 8j.. outside C (a ragged last tile): nothing to store or round
            ptx.BraOp(skip, guard=in_col, negate=True)
            second = None if pairs else ptx.SetpOp("gt", cols_left, imm(8 * j + 1, "s32")).result
            for h in (0, 1):
                pair = acc[4 * j + 2 * h : 4 * j + 2 * h + 2]
                if out != "f32":  # rounded once to bf16/f16, as the CPU executor rounds the f32 sum
                    pair = [ptx.CvtOp(x, out, "f32", rnd="rn").result for x in pair]
                offset = (8 * h * p.n + 8 * j) * es
                if pairs:
                    ptx.StOp(addr, pair, kind, offset=offset, guard=in_row[h])
                else:
                    assert second is not None
                    ptx.StOp(addr, pair[0], kind, offset=offset, guard=in_row[h])
                    ptx.StOp(addr, pair[1], kind, offset=offset + es,
                             guard=ptx.AndOp(in_row[h], second, "pred").result)  # fmt: skip
            ptx.LabelOp(skip)

    def store_quads(self, row: SSAValue, col: SSAValue, cols_left: SSAValue, base: SSAValue,
                    acc: Sequence[SSAValue], in_row: Sequence[SSAValue]) -> None:  # fmt: skip
        """:meth:`store_slab` for a 16-bit C whose N is a multiple of 8, 16 bytes a store. Lane ``t`` of a quad
        holds columns 2t, 2t + 1 of each 8-column group (one ``cvt.rn.bf16x2`` pair); for each run of 4 groups the
        quad transposes its 4x4 pairs (two butterfly stages, ``shfl.sync.bfly`` 1 then 2, each moving the pairs
        whose group bit differs from the lane's, chosen with ``selp``), after which lane ``t`` holds group
        4i + t whole: one ``st.global.v4.b32``. A warp's store then writes 64 whole bytes of each of 8 rows, where
        one of a pair wrote 16 bytes of each (half of each 32-byte sector): a quarter of the store instructions."""
        p, s = self.p, self.s
        t = binop(ptx.AndOp, binop(ptx.ShrOp, col, 1), 3, "b32")  # the lane's place in its quad (col = .. + 2t)
        bits = [ptx.SetpOp("ne", binop(ptx.AndOp, t, m, "b32"), imm(0, "u32")).result for m in (1, 2)]
        first = binop(ptx.SubOp, col, binop(ptx.ShlOp, t, 1, "b32"))  # the tile's first column (bx * bn)
        group = binop(ptx.ShlOp, t, 3, "b32")  # the lane's group of a run, as a column offset
        index = ptx.MadOp(row, imm(p.n), binop(ptx.AddOp, first, group), "u32", mode="lo").result
        base = ptx.AddOp(base, ptx.CvtOp(index, "u64", "u32").result, "s64").result
        addr = ptx.MadOp(base, imm(2, "s64"), self.c_ptr, "s64", mode="lo").result
        run_left = binop(ptx.AddOp, cols_left, binop(ptx.ShlOp, t, 1, "b32"), "s32")  # columns from ``first`` on
        lane_left = binop(ptx.SubOp, run_left, group, "s32")  # no branch around a run: shfl.sync stays convergent
        dtype = "bf16x2" if p.out_dtype == "bf16" else "f16x2"
        for i in range(s.bn // 32):
            mine = ptx.SetpOp("gt", lane_left, imm(32 * i, "s32")).result  # this lane's group inside C
            for h in (0, 1):
                # v[k]: columns 2t, 2t + 1 of group 4i + k, row + 8h (the low column in the low half)
                v = [ptx.CvtPairOp(acc[4 * (4 * i + k) + 2 * h + 1], acc[4 * (4 * i + k) + 2 * h], dtype).result
                     for k in range(4)]  # fmt: skip
                for m, bit in zip((1, 2), bits, strict=True):
                    for q in range(2):  # the pair of slots k whose other bit is q
                        lo, hi = (q * (3 - m), q * (3 - m) + m)  # slots with bit m clear and set
                        send = ptx.SelpOp(v[lo], v[hi], bit, "b32").result  # the slot whose bit m differs
                        got = ptx.ShflOp("bfly", send, m).result
                        v[lo] = ptx.SelpOp(got, v[lo], bit, "b32").result
                        v[hi] = ptx.SelpOp(v[hi], got, bit, "b32").result
                guard = ptx.AndOp(in_row[h], mine, "pred").result
                ptx.StOp(addr, v, "b32", offset=2 * (8 * h * p.n + 32 * i), guard=guard)

    # --- the kernel ------------------------------------------------------------------------------------------

    def build(self) -> ptx.FuncOp:
        s, p = self.s, self.p
        func = ptx.FuncOp(self.name, [ptx.TENSOR_MAP, ptx.TENSOR_MAP] + ["u64"] * p.args, maxntid=(s.threads, 1, 1))
        specs = tensor_map_specs(s, p)
        func.attributes[TENSOR_MAPS_ATTR] = DictionaryAttr({str(i): spec.attr() for i, spec in enumerate(specs)})
        with ImplicitBuilder(func.body):
            ptx.SharedOp(f"{self.name}_full", 8 * s.stages, 8)
            if s.specialised:
                ptx.SharedOp(f"{self.name}_empty", 8 * s.stages, 8)
            if s.pingpong:
                ptx.SharedOp(f"{self.name}_turn", 8 * s.consumers, 8)
            map_a, map_b = func.args[:2]
            c_param = func.args[2 + p.operands[2]]
            self.map_a = ptx.CvtaOp(ptx.ParamAddrOp(map_a).result, "param", to=False).result
            self.map_b = ptx.CvtaOp(ptx.ParamAddrOp(map_b).result, "param", to=False).result
            self.c_ptr = ptx.CvtaOp(ptx.LdParamOp(c_param).result).result
            if p.offsets[2]:
                self.c_ptr = ptx.AddOp(self.c_ptr, imm(p.offsets[2], "s64"), "s64").result
            tid = ptx.SregOp("tid.x").result
            self.full = ptx.SharedAddrOp(f"{self.name}_full").result
            self.empty = ptx.SharedAddrOp(f"{self.name}_empty").result if s.specialised else None
            self.turn = ptx.SharedAddrOp(f"{self.name}_turn").result if s.pingpong else None
            dyn = ptx.SharedAddrOp(DYNAMIC_SHARED).result
            self.tiles = binop(ptx.AndOp, binop(ptx.AddOp, dyn, ALIGN - 1), -ALIGN & 0xFFFFFFFF, "b32")
            self.true = ptx.SetpOp("eq", tid, tid).result
            leader = ptx.SetpOp("eq", tid, imm(0)).result
            done_init = self.label("INIT_DONE")
            ptx.BraOp(done_init, guard=leader, negate=True)
            for i in range(s.stages):
                ptx.MbarrierInitOp(binop(ptx.AddOp, self.full, 8 * i), 1)
                if self.empty is not None:  # ping-pong: a stage is read by the one warpgroup whose tile it holds
                    ptx.MbarrierInitOp(binop(ptx.AddOp, self.empty, 8 * i), 1 if s.pingpong else s.consumers)
            if self.turn is not None:  # a consumer's turn: every thread of the other warpgroup arrives
                for c in range(s.consumers):
                    ptx.MbarrierInitOp(binop(ptx.AddOp, self.turn, 8 * c), WARPGROUP)
            ptx.FenceProxyAsyncOp()  # the initialised mbarriers, before the copies complete on them
            ptx.LabelOp(done_init)
            ptx.BarSyncOp(0)
            if s.specialised:
                self.specialised(tid)
            else:
                self.plain(tid, leader)
            ptx.RetOp()
        return func

    def accumulators(self) -> None:
        """BN/2 f32 accumulators a thread for each 64-row slab of its warpgroup."""
        self.acc = [[ptx.MovOp(0.0, "f32").result for _ in range(self.s.bn // 2)] for _ in range(self.s.atoms)]

    def plain(self, tid: SSAValue, leader: SSAValue) -> None:
        """``wgmma``: one tile per block; thread 0 issues the copies ``stages`` K tiles ahead."""
        s = self.s
        bx, by = ptx.SregOp("ctaid.x").result, ptx.SregOp("ctaid.y").result
        bz = ptx.SregOp("ctaid.z").result
        batch = bz if self.p.batch > 1 else None
        row_a, row_b = binop(ptx.MulOp, by, s.bm, "s32", mode="lo"), binop(ptx.MulOp, bx, s.bn, "s32", mode="lo")
        consumer, local = binop(ptx.ShrOp, tid, 7), binop(ptx.AndOp, tid, WARPGROUP - 1, "b32")
        self.accumulators()
        prologue = self.label("PROLOGUE_DONE")
        ptx.BraOp(prologue, guard=leader, negate=True)
        for i in range(min(s.stages, self.nk)):
            self.issue(imm(i), imm(i, "s32"), row_a, row_b, batch)
        ptx.LabelOp(prologue)
        kt, stage, phase = imm(0), imm(0), imm(0)
        top = self.label("K_LOOP")
        ptx.LabelOp(top)
        _, _, bar = self.stage_addr(stage)
        self.wait(bar, phase)
        self.mma(stage, ptx.SetpOp("ne", kt, imm(0)).result, consumer)
        ptx.BarSyncOp(0)  # every warpgroup has read the stage: it may be refilled
        refill = binop(ptx.AddOp, kt, s.stages)
        no_refill = ptx.OrOp(ptx.SetpOp("ge", refill, imm(self.nk)).result,
                             ptx.NotOp(leader, "pred").result, "pred").result  # fmt: skip
        issued = self.label("REFILLED")
        ptx.BraOp(issued, guard=no_refill)
        self.issue(stage, refill, row_a, row_b, batch)
        ptx.LabelOp(issued)
        ptx.AssignOp(kt, binop(ptx.AddOp, kt, 1))
        self.advance(stage, phase)
        more = ptx.SetpOp("lt", kt, imm(self.nk)).result
        ptx.BraOp(top, guard=more)
        self.epilogue(bx, by, bz, consumer, local)

    def specialised(self, tid: SSAValue) -> None:
        """``wgmma-ws``: warpgroup 0 produces, the others consume, over a persistent grid of tiles; ``wgmma-pp``:
        each consumer its own tiles, the main loops in turn (module docstring)."""
        s = self.s
        tiles = self.tiles_n * self.tiles_m * self.p.batch
        first, step = ptx.SregOp("ctaid.x").result, ptx.SregOp("nctaid.x").result
        wg = binop(ptx.ShrOp, tid, 7)
        is_producer = ptx.SetpOp("eq", wg, imm(0)).result
        consumers = self.label("CONSUMERS")
        ptx.BraOp(consumers, guard=is_producer, negate=True)
        # --- producer warpgroup
        ptx.SetmaxnregOp("dec", s.producer_regs)
        exit_label = self.label("EXIT")
        ptx.BraOp(exit_label, guard=ptx.SetpOp("ne", tid, imm(0)).result)
        stage, phase = imm(0), imm(0)
        tile = ptx.MovOp(first, "u32").result
        self.tile_loop(tile, first, step, tiles, lambda bx, by, bz: self.produce(stage, phase, bx, by, bz))
        ptx.BraOp(exit_label)
        # --- consumer warpgroups
        ptx.LabelOp(consumers)
        ptx.SetmaxnregOp("inc", s.consumer_regs)
        consumer, local = binop(ptx.SubOp, wg, 1), binop(ptx.AndOp, tid, WARPGROUP - 1, "b32")
        arrive = ptx.SetpOp("eq", local, imm(0)).result
        self.accumulators()
        cstage, cphase = imm(0), imm(0)
        ctile = ptx.MovOp(first, "u32").result
        cstep: SSAValue = step
        rows: SSAValue = consumer  # the warpgroup's 64 rows of a stage and of the tile
        if s.pingpong:
            # Consumer c takes the block's tiles c, c + 2, ...: its K tiles follow the other's in the ring, so its
            # (stage, phase) starts c tiles of K tiles on. Its main loop waits for its turn (mbarrier turn[c]),
            # which the other warpgroup gives once its own main loop has waited for all of its stages: then the
            # phases a stage's full mbarrier completes before this warpgroup's wait are those the other warpgroup
            # has waited for, and each wait means the current or the previous phase (PTX ISA 8.0 section
            # 9.7.12.15.16), never one two ahead of the producer. Consumer 0's first turn is free (parity 1: the
            # phase before phase 0), consumer 1's is consumer 0's first main loop (phase 0).
            assert self.turn is not None
            rows = imm(0)
            ptx.AssignOp(ctile, ptx.MadOp(consumer, step, first, "u32", mode="lo").result)
            cstep = binop(ptx.ShlOp, step, 1, "b32")
            self.skip(cstage, cphase, binop(ptx.MulOp, consumer, self.nk, "u32", mode="lo"))
            my_turn = ptx.MadOp(consumer, imm(8), self.turn, "u32", mode="lo").result
            other_turn = ptx.MadOp(binop(ptx.XorOp, consumer, 1, "b32"), imm(8), self.turn, "u32", mode="lo").result
            tphase = binop(ptx.XorOp, consumer, 1, "b32")

        def release(stage: SSAValue, guard: SSAValue) -> None:
            """One arrival per consumer warpgroup on the stage's empty mbarrier: the producer may refill it."""
            assert self.empty is not None
            released = self.label("RELEASED")
            ptx.BraOp(released, guard=guard, negate=True)
            ptx.MbarrierArriveOp(ptx.MadOp(stage, imm(8), self.empty, "u32", mode="lo").result)
            ptx.LabelOp(released)

        def consume(bx: SSAValue, by: SSAValue, bz: SSAValue) -> None:
            # The K tile's wgmma stay in flight while the next tile's are issued (wait_group 1): the stage of the
            # previous K tile is released once its group is done.
            if s.pingpong:
                self.wait(my_turn, tphase)
                ptx.AssignOp(tphase, binop(ptx.XorOp, tphase, 1, "b32"))
            kt, previous = imm(0), imm(0)
            top = self.label("C_K_LOOP")
            ptx.LabelOp(top)
            _, _, bar = self.stage_addr(cstage)
            self.wait(bar, cphase)
            not_first = ptx.SetpOp("ne", kt, imm(0)).result
            self.mma(cstage, not_first, rows, pending=1)
            release(previous, ptx.AndOp(arrive, not_first, "pred").result)
            ptx.AssignOp(previous, cstage)
            ptx.AssignOp(kt, binop(ptx.AddOp, kt, 1))
            self.advance(cstage, cphase)
            ptx.BraOp(top, guard=ptx.SetpOp("lt", kt, imm(self.nk)).result)
            if s.pingpong:  # every stage of the tile waited for: the other warpgroup's turn; past its K tiles
                ptx.MbarrierArriveOp(other_turn)
                self.skip(cstage, cphase, imm(self.nk))
            ptx.WgmmaWaitGroupOp(0)
            release(previous, arrive)
            self.epilogue(bx, by, bz, rows, local)

        self.tile_loop(ctile, first, cstep, tiles, consume)
        ptx.LabelOp(exit_label)

    def skip(self, stage: SSAValue, phase: SSAValue, count: SSAValue) -> None:
        """``count`` steps of :meth:`advance` at once: stage = (stage + count) % stages, the parity flipped once per
        wrap."""
        total = binop(ptx.AddOp, stage, count)
        ptx.AssignOp(stage, binop(ptx.RemOp, total, self.stages))
        wraps = binop(ptx.DivOp, total, self.stages)
        ptx.AssignOp(phase, binop(ptx.XorOp, phase, binop(ptx.AndOp, wraps, 1, "b32"), "b32"))

    def produce(self, stage: SSAValue, phase: SSAValue, bx: SSAValue, by: SSAValue, bz: SSAValue) -> None:
        s = self.s
        batch = bz if self.p.batch > 1 else None
        row_a, row_b = binop(ptx.MulOp, by, s.bm, "s32", mode="lo"), binop(ptx.MulOp, bx, s.bn, "s32", mode="lo")
        kt = imm(0, "s32")
        top = self.label("P_K_LOOP")
        ptx.LabelOp(top)
        assert self.empty is not None
        empty = ptx.MadOp(stage, imm(8), self.empty, "u32", mode="lo").result
        self.wait(empty, binop(ptx.XorOp, phase, 1, "b32"))  # a fresh mbarrier: the phase before 0 counts as done
        self.issue(stage, kt, row_a, row_b, batch)
        ptx.AssignOp(kt, binop(ptx.AddOp, kt, 1, "s32"))
        self.advance(stage, phase)
        ptx.BraOp(top, guard=ptx.SetpOp("lt", kt, imm(self.nk, "s32")).result)

    def tile_loop(self, tile: SSAValue, first: SSAValue, step: SSAValue, tiles: int, body: Callable[..., None]) -> None:
        """for tile in range(first, tiles, step): body(N tile, M tile, batch)."""
        done = self.label("TILES_DONE")
        top = self.label("TILE_LOOP")
        ptx.BraOp(done, guard=ptx.SetpOp("ge", tile, imm(tiles)).result)
        ptx.LabelOp(top)
        body(*self.tile_coords(tile))
        ptx.AssignOp(tile, binop(ptx.AddOp, tile, step))
        ptx.BraOp(top, guard=ptx.SetpOp("lt", tile, imm(tiles)).result)
        ptx.LabelOp(done)


DYNAMIC_SHARED = "wgmma_smem"
"""The module's dynamic shared-memory buffer (``.extern .shared``), where the stages live."""


def build_kernel(s: WgmmaSchedule, p: Problem, name: str) -> ptx.FuncOp:
    """The ``ptx.func`` computing ``p`` with schedule ``s`` (parameters: the tensor maps of A and Bt, then
    ``p.args`` pointers, C's among them).
    Its module needs :func:`dynamic_shared` and target ``sm_90a``; launch it on :func:`grid` with ``s.threads``
    threads and ``s.shared_bytes`` of dynamic shared memory. Raises ``ValueError`` for a problem it cannot do."""
    s.check()
    why = unsupported(p)
    if why is None and "mn" in p.majors and (s.bm % ATOM or s.bn % ATOM):
        why = f"M/N-major operands need tiles of whole {ATOM}-wide atoms"
    if why is not None:
        raise ValueError(f"the {s.name} schedule cannot compute a {p.m}x{p.n}x{p.k} matmul: {why}")
    return _Kernel(s, p, name).build()


def dynamic_shared() -> ptx.SharedOp:
    """The module-level dynamic shared-memory buffer the wgmma kernels share."""
    return ptx.SharedOp(DYNAMIC_SHARED, None, ALIGN)


# ---------------------------------------------------------------------------------------------------------------
# Hooks: pg-schedule (the schedule attribute), pg-matmul-schedule (the nest becomes a gpu.launch), pg-to-ptx (the
# gpu.func becomes the kernel built above)

PROBLEM_ATTR = "pg.wgmma"
"""Attribute of the ``gpu.launch``/``gpu.func`` of a wgmma kernel: the schedule and the problem's sizes and types.
Its body only names the buffers A, Bt and C (``memref.extract_aligned_pointer_as_index``, in that order), for
``pg-to-gpu`` to pass them; ``pg-to-ptx`` builds the kernel from this attribute instead of lowering the body."""

_TYPE_NAMES = {BFloat16Type: "bf16", Float16Type: "f16", Float32Type: "f32", Float64Type: "f64"}


def type_name(t: Attribute) -> str:
    return _TYPE_NAMES.get(type(t), str(t))  # type: ignore[arg-type]


def schedule_attr(name: str, fallback: bool = False, split_k: int = 1, tf32: bool = False) -> ScheduleAttr:
    """``pg-schedule``'s ``#kernel.schedule`` for a matmul run by ``name`` (a key of :data:`SCHEDULES`; its
    precision is checked by ``matmul_rungs.check_precision``). ``fallback`` (``auto``'s choice, not the user's):
    ``pg-matmul-schedule`` takes ``auto``'s SIMT/mma-sync rung instead where :func:`problem` refuses the nest;
    ``tf32``: the f32 operands are read as tf32 (a matmul recorded under ``allow_tf32``)."""
    s = SCHEDULES[name]
    return ScheduleAttr(
        name,
        {
            "tile": (s.bm, s.bn, tile_k("tf32" if tf32 else "bf16")),
            **({"tf32": True} if tf32 else {}),
            "threads": s.threads,
            "stages": s.stages,
            "specialised": s.specialised,
            **({"pingpong": True} if s.pingpong else {}),
            "fallback": fallback,
            **({"split_k": split_k} if split_k > 1 else {}),
        },
    )


def _plain_load(ops: Sequence[Operation]) -> memref.LoadOp | None:
    """The load of an operand read as it is (a load, or a load widened with ``arith.extf``)."""
    if len(ops) == 1 and isinstance(ops[0], memref.LoadOp):
        return ops[0]
    if len(ops) == 2 and isinstance(ops[0], memref.LoadOp) and isinstance(ops[1], arith.ExtFOp):
        return ops[0]
    return None


def input_type(load: memref.LoadOp, tf32: bool) -> str:
    """The wgmma input type of an operand's load: its element type, f32 read as ``tf32`` under the flag."""
    dtype = type_name(load.res.type)
    return "tf32" if dtype == "f32" and tf32 else dtype


def problem(nest: MatmulNest, name: str, tf32: bool = False) -> tuple[Problem, list[memref.LoadOp]] | str:
    """The wgmma problem of a matmul nest of the loop stage and its operands' loads, or why the kernel ``name``
    cannot compute it (the whole message of a ``PassFailedException``). ``tf32``: f32 operands may be read as tf32
    (the schedule's ``tf32`` flag: the loop stage does not record ``allow_tf32`` otherwise)."""
    par = nest.par
    *batch_ivs, m_iv, n_iv = nest.ivs
    loads, majors = [], []
    for role, operand, i_iv in (("A", nest.a, m_iv), ("B", nest.b, n_iv)):
        load = _plain_load(operand.ops)
        if load is None:
            return f"pg-matmul-schedule: {name}: operand {role}{where(par)} is not a plain load"
        dtype = input_type(load, tf32)
        if dtype not in INPUT_TYPES:
            return (
                f"pg-matmul-schedule: matmul schedule '{name}' does not support {dtype}{where(par)}: it runs "
                "bf16/f16 matmuls, and f32 ones as tf32 under pg.backends.cuda.matmul.allow_tf32, on the tensor "
                "cores of sm_90a"
            )
        indices = list(load.indices)
        # a partial matmul of split-K reads unbatched A and B at s * chunk + k (s its only batch dim)
        split = operand.split is not None and (operand.split.s, operand.split.chunk, len(batch_ivs)) == (0, nest.k, 1)
        k_index = operand.split.value if split and operand.split is not None else nest.k_iv
        outer = [] if split else batch_ivs
        if indices == [*outer, i_iv, k_index]:
            majors.append("k")
        elif indices == [*outer, k_index, i_iv]:
            majors.append("mn")
        else:
            return (
                f"pg-matmul-schedule: {name} reads each operand as a (batched) matrix, K-major ([m, k], [n, k]) or "
                f"M/N-major ([k, m], [k, n]); operand {role}{where(par)} is read otherwise (a broadcast or a view)"
            )
        loads.append(load)
    out_type = nest.out.type
    assert isinstance(out_type, MemRefType)
    out_dtype = type_name(out_type.get_element_type())
    dtype = input_type(loads[0], tf32)
    split = nest.a.split is not None and nest.b.split is not None
    p = Problem(
        nest.m, nest.n, nest.k, math.prod(nest.batch), dtype, out_dtype, majors=(majors[0], majors[1]), split=split
    )
    why = unsupported(p)
    if why is not None or type_name(loads[1].res.type) != type_name(loads[0].res.type):
        why = why or "A and B of different types"
        return f"pg-matmul-schedule: {name} cannot compute the matmul{where(par)}: {why}"
    return p, loads


def schedule_nest(nest: MatmulNest, name: str, tf32: bool = False) -> None:
    """Replace a matmul nest of the loop stage by the ``gpu.launch`` of the wgmma kernel ``name`` (see
    :data:`PROBLEM_ATTR`; ``tf32`` as for :func:`problem`). Raises ``PassFailedException`` when :func:`problem`
    refuses it."""
    found = problem(nest, name, tf32)
    if isinstance(found, str):
        raise PassFailedException(found)
    p, loads = found
    s = SCHEDULES[name]
    par = nest.par
    sizes, launch = ptx_kernel_launch(
        par,
        (loads[0].memref, loads[1].memref, nest.out),
        (*grid(s, p), s.threads),
        name,
        PROBLEM_ATTR,
        {
            "schedule": StringAttr(name),
            "sizes": ArrayAttr([IntegerAttr(v, i64) for v in (p.m, p.n, p.k, p.batch)]),
            "dtype": StringAttr(p.dtype),
            "out_dtype": StringAttr(p.out_dtype),
            "majors": ArrayAttr([StringAttr(x) for x in p.majors]),
            **({"split": UnitAttr()} if p.split else {}),
        },
    )
    host = par.parent_block()
    assert host is not None
    for op in (*sizes, launch):
        host.insert_op_before(op, par)
    host.erase_op(par, safe_erase=False)


def ptx_kernel_launch(
    par: scf.ParallelOp,
    buffers: Sequence[SSAValue],
    sizes: tuple[int, int, int, int],
    strategy: str,
    problem_attr: str,
    problem: dict[str, Attribute],
) -> tuple[list[arith.ConstantOp], gpu.LaunchOp]:
    """The ``gpu.launch`` that stands for a kernel ``pg-to-ptx`` builds in the ``ptx`` dialect (wgmma GEMMs,
    flash-wgmma attention), in place of the nest ``par``: its body passes the aligned pointers of ``buffers`` (so
    that ``pg-to-gpu`` makes them kernel arguments, in this order), ``sizes`` is (grid x, y, z, threads), the
    launch carries ``par``'s kernel name and kind, ``strategy`` and ``problem`` (under ``problem_attr``: all that
    the ptx builder reads) and its block size. Returns the size constants and the launch, not yet inserted."""
    body = Block(arg_types=[IndexType()] * 12)
    for buf in buffers:
        op = memref.ExtractAlignedPointerAsIndexOp.get(buf)
        op.location = par.location
        body.add_op(op)
    body.add_op(gpu.TerminatorOp())
    consts = [arith.ConstantOp(IntegerAttr(v, IndexType())) for v in (*sizes, 1, 1)]
    launch = gpu.LaunchOp(Region(body), consts[:3], consts[3:])
    for op in (*consts, launch):
        op.location = par.location
    for key in (KERNEL_ATTR, KIND_ATTR):
        if key in par.attributes:
            launch.attributes[key] = par.attributes[key]
    launch.attributes[STRATEGY_ATTR] = StringAttr(strategy)
    launch.attributes[problem_attr] = DictionaryAttr(problem)
    launch.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [sizes[3], 1, 1])
    return consts, launch


def buffer_place(v: SSAValue, func: gpu.FuncOp) -> tuple[int, int]:
    """(argument index, byte offset) of a buffer of a kernel: an argument, or a view of one at a constant offset."""
    offset = 0
    owner = v.owner
    if isinstance(owner, memref.ViewOp):
        shift = owner.byte_shift.owner
        assert isinstance(shift, arith.ConstantOp) and isinstance(shift.value, IntegerAttr), shift
        offset, v = shift.value.value.data, owner.source
    assert v in func.body.block.args, v
    return list(func.body.block.args).index(v), offset  # type: ignore[arg-type]


def lower_kernel(func: gpu.FuncOp, target: str) -> ptx.FuncOp | None:
    """The ``ptx.func`` of a wgmma ``gpu.func`` (None for other kernels). Raises ``PassFailedException`` when the
    target is not ``sm_90a`` (wgmma and setmaxnreg exist only there)."""
    attr = func.attributes.get(PROBLEM_ATTR)
    if not isinstance(attr, DictionaryAttr):
        return None
    d = attr.data
    name, dtype, out_dtype = (x.data for x in (d["schedule"], d["dtype"], d["out_dtype"]))  # type: ignore[attr-defined]
    if target != "sm_90a":
        raise PassFailedException(
            f"pg-to-ptx: matmul schedule '{name}' ({dtype}){where(func)} needs target sm_90a (wgmma.mma_async, "
            f"setmaxnreg); compiling for {target}: pass arch='sm_90a' (pgc --arch=sm_90a)"
        )
    m, n, k, batch = (x.value.data for x in d["sizes"].data)  # type: ignore[attr-defined]
    majors = tuple(x.data for x in d["majors"].data)  # type: ignore[attr-defined]
    pointers = [op for op in func.body.block.ops if isinstance(op, memref.ExtractAlignedPointerAsIndexOp)]
    assert len(pointers) == 3, pointers
    places = [buffer_place(op.source, func) for op in pointers]
    p = Problem(
        m, n, k, batch, dtype, out_dtype,
        offsets=tuple(off for _, off in places),  # type: ignore[arg-type]
        operands=tuple(i for i, _ in places),  # type: ignore[arg-type]
        args=len(func.body.block.args),
        majors=majors,  # type: ignore[arg-type]
        split="split" in d,
    )  # fmt: skip
    kernel = build_kernel(SCHEDULES[name], p, func.sym_name.data)
    kernel.attributes[SHARED_BYTES_ATTR] = IntegerAttr(SCHEDULES[name].shared_bytes, i64)
    kernel.location = func.location
    return kernel
