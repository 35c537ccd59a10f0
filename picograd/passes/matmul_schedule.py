"""``pg-matmul-schedule``: the matmul loop nests of the loop stage become tiled GPU kernels (``gpu.launch``).

Input: the loop stage (``pg-to-loops``), where a ``pg.matmul`` is one ``scf.parallel`` over (batch..., M, N) tagged
``pg.kind = "matmul"`` whose body is an ``scf.for`` over K accumulating ``acc + a * b`` and a store of the sum.
``a`` and ``b`` are the operands' loads, and may be any side-effect-free expression of (batch, m, k) and
(batch, k, n): a transposed operand is a load with swapped indices. Output: each such nest becomes a ``gpu.launch``
(MLIR's form of a kernel before outlining; ``pg-to-gpu`` outlines it) that runs the schedule below on a grid of
``(ceil(N / BN), ceil(M / BM), batch)`` thread blocks. Other nests are left to ``pg-to-gpu``.

**The schedules** (the rungs of the SGEMM ladder in Simon Boehm, "How to Optimize a CUDA Matmul Kernel for
cuBLAS-like Performance", 2022; the CUTLASS warp-level hierarchy in NVIDIA, "CUTLASS: Fast Linear Algebra in
CUDA C++", 2017). A schedule is data (``picograd.passes.schedule.Schedule``): the warps of a block, the lanes of
a warp and the outputs of a thread along (M, N), the K tile, and three switches::

    name       block tile (MxNxK)  threads  outputs/thread  operands
    naive      32x8                256      1               global, consecutive threads along M (uncoalesced)
    coalesced  8x32                256      1               global, consecutive threads along N
    smem       32x32x32            1024     1               shared-memory tiles
    regtile    128x128x8           256      8x8             shared-memory tiles, 16-byte loads, 2-D register tile
    warptile   128x128x16          256      8x8 = 2x2 4x4   as regtile, each warp owns a 64x32 tile
    cp-async   128x128x16          256      8x8 = 2x2 4x4   as warptile, tiles copied with cp.async, 2 stages

- *Threads* are numbered along the block's warps (row-major over ``warps``), then lanes (row-major over
  ``lanes``); a thread owns ``reps`` fragments of ``vec`` contiguous outputs in each direction, the fragments
  ``lanes * vec`` apart, so the accumulators (``TM x TN`` of them) are ``scf.for`` iteration values, i.e. registers.
- *Shared-memory tiles* (``bk > 0``): each K step, the block copies an ``BM x BK`` tile of A and a ``BK x BN`` tile
  of B into workgroup memory, stored K-major (``tile[k][m]``) so that a thread reads its fragment of a row with
  16-byte loads; then every thread runs the unrolled ``BK`` steps of its outer products. A tile whose memory order
  is the other way round (A row-major, or a transposed B) is transposed on its way through registers; its rows are
  padded by 4 elements so that the transposing stores do not collide in one bank.
- *16-byte loads* (``vector``): f32 operands that are plain loads, whose contiguous dimension is a multiple of 4,
  are read from global memory as ``gpu_ext.vector_load`` of 4 elements (``ld.global.v4.f32``); fragments are read
  from shared memory the same way, and outputs are written 4 at a time.
- *cp.async* (``async_copy``): two stages of shared memory. Each K step issues the copies of the next tile into
  the other stage (``gpu_ext.async_copy``: 16 bytes at a time where the tile keeps its memory order; a transposed
  f32 tile goes through registers with 16-byte loads, read before the step's outer products and stored after
  them), computes on the current stage, then waits for its copies (``async_wait pending 0``) and meets the other
  threads at one barrier. Operands that are not plain loads take the register path too. A K tile is halved
  where the stages would not fit in 48 KiB of static shared memory (f64).

**Limits.** A schedule is adapted to f64 (half the K tile, to fit 48 KiB of static shared memory; half the
outputs per thread, so the accumulators fit in registers). A nest whose grid would exceed CUDA's 65535 blocks in
y (M tiles) or z (batch), or with K = 0, is left to ``pg-to-gpu``'s one thread per output on a 1-D grid, even when
a rung is forced (``pg-schedule`` records ``thread_per_point`` for it).

**Edge tiles.** Sizes need not divide the tiles: operand elements outside the matrix are read as zero (indices are
clamped into range and the value selected, so no load leaves the buffer; ``cp.async`` copies zero bytes of them),
and outputs outside it are not stored. A 16-byte access is used only where the contiguous extent is a multiple of
4, so a vector is either wholly inside or wholly outside the matrix.

**Choosing** is ``pg-schedule``'s (``picograd/passes/schedule.py``, where the table of rungs lives): each nest
carries its kernel's ``#kernel.schedule`` (``kernel.schedule``, copied by ``pg-to-loops``), and this pass builds the
rung it names, with the sizes it records (``auto``'s 64x64 tile, an f64 rung's halved K tile and outputs); a nest
scheduled ``thread_per_point`` is left to ``pg-to-gpu``. A nest without the attribute (loop-stage IR written by
hand, as in the tests) takes the rung of option ``schedule`` (``auto`` or a rung's name, chosen and fitted by the
same table). The ``gpu.launch`` records the rung (``pg.schedule``) and the tile (``pg.tile``).

Raises ``PassFailedException`` for an unknown schedule name, a malformed schedule attribute, or a nest scheduled
with a rung that is not a matmul nest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    LocationAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import is_side_effect_free
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import gpu_ext
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes._buffers import where
from picograd.passes.kinds import matmul_wgmma
from picograd.passes.schedule import VEC, WGMMA, Schedule, check_schedule, matmul_rung
from picograd.passes.to_gpu import SCHEDULE_ATTR, _const_int
from picograd.passes.to_loops import KERNEL_ATTR, KIND_ATTR

TILE_ATTR = "pg.tile"
"""Attribute of the ``gpu.launch``: the block tile (BM, BN, BK; BK = 0 without shared-memory tiles)."""
NEST_SCHEDULE_ATTR = "kernel.schedule"
"""Attribute of a loop nest (``pg-to-loops`` copies it from the kernel): the ``#kernel.schedule`` to follow."""
WARP = gpu_ext.WARP_SIZE


# ---------------------------------------------------------------------------------------------------------------
# Matching the nest


@dataclass
class Operand:
    """How one operand is read: the ops computing it in the K loop body and the loop variables they use.

    ``dims`` names the nest's loop variables the value depends on, as (batch ivs..., ``i``, ``k``) where ``i`` is m
    for A and n for B. ``plain`` is set when the value is one ``memref.load`` whose indices are loop variables or
    constants: then ``buffer``, ``index_of`` (for each buffer dim, the position in (batch..., i, k) it takes, or a
    constant) and ``contiguous`` (``"i"``, ``"k"`` or None: which of i and k is the buffer's innermost dim)."""

    ops: list[Operation]
    value: SSAValue
    buffer: SSAValue | None = None
    index_of: list[int | tuple[int]] | None = None
    contiguous: str | None = None

    @property
    def plain(self) -> bool:
        return self.buffer is not None


@dataclass
class MatmulNest:
    par: scf.ParallelOp
    batch: list[int]
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    out: SSAValue
    element: Attribute
    ivs: list[SSAValue]
    k_iv: SSAValue

    @property
    def precision(self) -> str:
        """As ``pg.MatmulOp.precision`` names it, from the output buffer (``tf32`` is not recorded in loop nests):
        ``bf16``, ``fp16``, ``fp32`` or ``fp64``."""
        t = self.out.type
        assert isinstance(t, MemRefType)
        names = {"bf16": "bf16", "f16": "fp16", "f32": "fp32", "f64": "fp64"}
        return names.get(str(getattr(t.element_type, "name", "")), "fp32")


def aligned16(buf: SSAValue) -> bool:
    """Whether ``buf`` starts on a 16-byte boundary: a kernel argument or scratch buffer (the runtime allocates
    them 256-byte aligned) or a view of one at such an offset; ``memref.global`` constants make no promise."""
    owner = buf.owner
    if isinstance(owner, memref.ViewOp):
        shift = _const_int(owner.byte_shift)
        return shift is not None and shift % 16 == 0
    return not isinstance(owner, memref.GetGlobalOp)


def _slice(value: SSAValue, body: Block) -> list[Operation] | None:
    """The ops of ``body`` that ``value`` depends on, in order; None when one of them is not side-effect free
    (loads are allowed: nothing in a matmul nest writes what it reads)."""
    needed: set[Operation] = set()
    work = [value]
    while work:
        v = work.pop()
        op = v.owner
        if not isinstance(op, Operation) or op.parent_block() is not body or op in needed:
            continue
        if op.regions or not (isinstance(op, memref.LoadOp) or is_side_effect_free(op)):
            return None
        needed.add(op)
        work.extend(op.operands)
    return [op for op in body.ops if op in needed]


def _depends(ops: Sequence[Operation], v: SSAValue) -> bool:
    return any(v in op.operands for op in ops)


def match_operand(value: SSAValue, body: Block, dims: list[SSAValue], other: SSAValue) -> Operand | None:
    ops = _slice(value, body)
    if ops is None or _depends(ops, other):
        return None
    operand = Operand(ops, value)
    if len(ops) == 1 and isinstance(ops[0], memref.LoadOp):
        load = ops[0]
        index_of: list[int | tuple[int]] = []
        for idx in load.indices:
            if idx in dims:
                index_of.append(dims.index(idx))
            elif (c := _const_int(idx)) is not None:
                index_of.append((c,))
            else:
                return operand
        positions = [p for p in index_of if isinstance(p, int)]
        if len(positions) != len(set(positions)):
            return operand  # a loop variable in two indices (a diagonal): not a plain tile of the buffer
        operand.buffer = load.memref
        operand.index_of = index_of
        last = index_of[-1] if index_of else None
        operand.contiguous = {len(dims) - 2: "i", len(dims) - 1: "k"}.get(last) if isinstance(last, int) else None
    return operand


def match_matmul(par: scf.ParallelOp) -> MatmulNest | None:
    """The matmul nest of the loop stage (see the module docstring), or None when ``par`` is not one."""
    kind = par.attributes.get(KIND_ATTR)
    if not (isinstance(kind, StringAttr) and kind.data == "matmul"):
        return None
    bounds = [
        (_const_int(lb), _const_int(ub), _const_int(st))
        for lb, ub, st in zip(par.lowerBound, par.upperBound, par.step, strict=True)
    ]
    if any(b != (0, b[1], 1) or b[1] is None for b in bounds) or len(bounds) < 2:
        return None
    extents = [int(b[1]) for b in bounds]  # type: ignore[arg-type]
    block = par.body.block
    ops = list(block.ops)
    rounded = len(ops) == 4 and isinstance(ops[1], arith.TruncFOp)  # bf16/f16: f32 sums rounded once at the store
    if len(ops) != 3 + rounded or not isinstance(ops[0], scf.ForOp) or not isinstance(ops[-2], memref.StoreOp):
        return None
    loop, store = ops[0], ops[-2]
    stored = ops[1].input if isinstance(ops[1], arith.TruncFOp) else store.value
    ivs: list[SSAValue] = list(block.args)
    if list(store.indices) != ivs or stored is not loop.results[0] or len(loop.results) != 1:
        return None
    if rounded and store.value is not ops[1].results[0]:
        return None
    if _const_int(loop.lb) != 0 or _const_int(loop.step) != 1 or (k := _const_int(loop.ub)) is None:
        return None
    init = loop.iter_args[0].owner
    if not (isinstance(init, arith.ConstantOp) and isinstance(init.value, FloatAttr) and init.value.value.data == 0):
        return None
    body = loop.body.block
    k_iv, acc = body.args
    yld = body.last_op
    assert yld is not None
    total = yld.operands[0].owner
    if not isinstance(total, arith.AddfOp) or total.lhs is not acc:
        return None
    prod = total.rhs.owner
    if not isinstance(prod, arith.MulfOp) or len(list(body.ops)) < 3:
        return None
    *batch, m_iv, n_iv = ivs
    a = match_operand(prod.lhs, body, [*batch, m_iv, k_iv], n_iv)
    b = match_operand(prod.rhs, body, [*batch, n_iv, k_iv], m_iv)
    if a is None or b is None or _depends(a.ops, acc) or _depends(b.ops, acc):
        return None
    used = {id(op) for op in [*a.ops, *b.ops, prod, total, yld]}
    if any(id(op) not in used for op in body.ops):
        return None
    return MatmulNest(par, extents[:-2], extents[-2], extents[-1], k, a, b, store.memref, total.result.type, ivs, k_iv)


# ---------------------------------------------------------------------------------------------------------------
# Building the kernel

Index = SSAValue | int
"""An index: an SSA value or a constant (folded until it is needed)."""


class KernelBuilder:
    """Appends ops to a block (before its terminator, if set), folding constant index arithmetic; constants go to
    the start of the launch body, once each."""

    def __init__(self, block: Block, loc: LocationAttr, consts: dict, const_block: Block):
        self.block = block
        self.loc = loc
        self.consts = consts
        self.const_block = const_block
        self.memo: dict[tuple, SSAValue] = {}

    def at(self, block: Block) -> KernelBuilder:
        """A builder for ``block``, nested in this one's block: it may reuse the values made so far."""
        b = KernelBuilder(block, self.loc, self.consts, self.const_block)
        b.memo = self.memo if block is self.block else dict(self.memo)
        return b

    def op(self, op: Operation) -> Operation:
        op.location = self.loc
        last = self.block.last_op
        if last is not None and isinstance(last, scf.YieldOp | gpu.TerminatorOp):
            self.block.insert_op_before(op, last)
        else:
            self.block.add_op(op)
        return op

    def v(self, op: Operation) -> SSAValue:
        return self.op(op).results[0]

    def const(self, value: int | float, t: Attribute) -> SSAValue:
        key = (value, t)
        if key not in self.consts:
            integer = isinstance(t, IndexType) or t == i32
            attr = IntegerAttr(int(value), t) if integer else FloatAttr(float(value), t)  # type: ignore[call-overload]
            c = arith.ConstantOp(attr)  # type: ignore[arg-type]
            c.location = self.loc
            first = self.const_block.first_op
            anchor = self.consts.get("last")
            if anchor is not None:
                Rewriter.insert_op(c, InsertPoint.after(anchor.owner))
            elif first is not None:
                self.const_block.insert_op_before(c, first)
            else:
                self.const_block.add_op(c)
            self.consts[key] = c.result
            self.consts["last"] = c.result
        return self.consts[key]

    def c32(self, n: int) -> SSAValue:
        return self.const(n, i32)

    def idx(self, x: Index) -> SSAValue:
        """``x`` as an ``index`` (what memref accesses take): index arithmetic is done in ``i32`` (every extent
        here is below 2**31), so ``pg-to-ptx`` computes the offsets in 32 bits."""
        if isinstance(x, int):
            return self.const(x, IndexType())
        if isinstance(x.type, IndexType):
            return x
        return self._memo(("idx", x), lambda: arith.IndexCastOp(x, IndexType()))

    def i32(self, x: SSAValue) -> SSAValue:
        return self._memo(("i32", x), lambda: arith.IndexCastOp(x, i32))

    def _memo(self, key: tuple, make) -> SSAValue:
        if key not in self.memo:
            self.memo[key] = self.v(make())
        return self.memo[key]

    def add(self, a: Index, b: Index) -> Index:
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(a, int):
            a, b = b, a
        if b == 0:
            return a
        assert not isinstance(a, int)
        return self._memo(("add", a, b), lambda: arith.AddiOp(a, self.c32(b) if isinstance(b, int) else b))

    def mul(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a * n
        if n == 1:
            return a
        return self._memo(("mul", a, n), lambda: arith.MuliOp(a, self.c32(n)))

    def div(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a // n
        if n == 1:
            return a
        if n & (n - 1) == 0:  # a shift: PTX has no 64-bit division instruction (ptxas calls a routine)
            return self._memo(("shr", a, n), lambda: arith.ShRUIOp(a, self.c32(n.bit_length() - 1)))
        return self._memo(("div", a, n), lambda: arith.DivUIOp(a, self.c32(n)))

    def rem(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return a % n
        if n == 1:
            return 0
        if n & (n - 1) == 0:
            return self._memo(("and", a, n), lambda: arith.AndIOp(a, self.c32(n - 1)))
        return self._memo(("rem", a, n), lambda: arith.RemUIOp(a, self.c32(n)))

    def min(self, a: Index, n: int) -> Index:
        if isinstance(a, int):
            return min(a, n)
        return self._memo(("min", a, n), lambda: arith.MinUIOp(a, self.c32(n)))

    def lt(self, a: Index, n: int) -> SSAValue | bool:
        if isinstance(a, int):
            return a < n
        return self._memo(("lt", a, n), lambda: arith.CmpiOp(a, self.c32(n), "ult"))

    def both(self, p: SSAValue | bool, q: SSAValue | bool) -> SSAValue | bool:
        if isinstance(p, bool):
            return q if p else False
        if isinstance(q, bool):
            return p if q else False
        return self._memo(("and", p, q), lambda: arith.AndIOp(p, q))

    def select(self, p: SSAValue | bool, x: SSAValue, zero: SSAValue) -> SSAValue:
        if isinstance(p, bool):
            return x if p else zero
        return self.v(arith.SelectOp(p, x, zero))

    def if_(self, p: SSAValue | bool) -> KernelBuilder | None:
        """A builder inside ``scf.if p`` (no results); None when ``p`` is false; this builder when it is true."""
        if isinstance(p, bool):
            return self if p else None
        then = Block()
        then.add_op(scf.YieldOp())
        then.last_op.location = self.loc  # type: ignore[union-attr]
        self.op(scf.IfOp(p, [], Region(then)))
        return self.at(then)


@dataclass
class _Chunk:
    """One thread's share of a tile copy: guard (False past the tile), tile coordinates (``ii`` along M or N,
    ``kk`` along K), global row or column ``gi``, whether it is inside the matrix, and ``gi`` clamped into it."""

    guard: SSAValue | bool
    ii: Index
    kk: Index
    gi: Index
    i_ok: SSAValue | bool
    ci: Index


@dataclass
class _TilePlan:
    operand: Operand
    vec: int
    along_i: bool
    copy: bool
    i_ext: int
    k_ext: int
    chunks: list[_Chunk] = field(default_factory=list)


class TiledKernel:
    """Builds the ``gpu.launch`` of one matmul nest under one schedule."""

    def __init__(self, nest: MatmulNest, s: Schedule):
        self.nest, self.s = nest, s
        self.loc = nest.par.location
        self.f32 = isinstance(nest.element, Float32Type)
        self.vector = s.vector and self.f32
        self.body = Block(arg_types=[IndexType()] * 12)
        self.body.add_op(gpu.TerminatorOp())
        self.b = KernelBuilder(self.body, self.loc, {}, self.body)
        self.zero = self.b.const(0.0, nest.element)

    # --- operands ---------------------------------------------------------------------------------------------

    def element(self, b: KernelBuilder, x: Operand, coords: Sequence[Index], extents: Sequence[int]) -> SSAValue:
        """The operand value at (batch..., i, k) ``coords``, zero outside ``extents`` (clamped, then selected)."""
        ok: SSAValue | bool = True
        clamped: list[Index] = []
        for c, e in zip(coords, extents, strict=True):
            ok = b.both(ok, b.lt(c, e))
            clamped.append(b.min(c, e - 1))
        value = self.evaluate(b, x, [b.idx(c) for c in clamped])
        return b.select(ok, value, self.zero)

    def evaluate(self, b: KernelBuilder, x: Operand, coords: Sequence[SSAValue]) -> SSAValue:
        """Clone the ops computing ``x`` with the loop variables replaced by ``coords``."""
        dims = self.dims(x)
        mapping: dict[SSAValue, SSAValue] = dict(zip(dims, coords, strict=True))
        for op in x.ops:
            clone = op.clone(value_mapper=mapping)
            b.op(clone)
            for old, new in zip(op.results, clone.results, strict=True):
                mapping[old] = new
        return mapping.get(x.value, x.value)  # a value from outside the loop is the same at every point

    def dims(self, x: Operand) -> list[SSAValue]:
        *batch, m, n = self.nest.ivs
        return [*batch, m if x is self.nest.a else n, self.nest.k_iv]

    def indices(self, x: Operand, coords: Sequence[Index]) -> list[Index]:
        assert x.index_of is not None
        return [coords[p] if isinstance(p, int) else p[0] for p in x.index_of]

    def vectorizable(self, x: Operand) -> bool:
        """16-byte loads along the operand's contiguous dim: f32, a plain load of an aligned buffer."""
        if not (self.vector and x.plain and x.contiguous is not None):
            return False
        buf = x.buffer
        assert buf is not None
        t = buf.type
        assert isinstance(t, MemRefType)
        ext = self.extents(x)
        if t.get_shape()[-1] % VEC or t.get_shape()[-1] != ext[-2 if x.contiguous == "i" else -1]:
            return False
        return aligned16(buf)

    # --- the kernel -------------------------------------------------------------------------------------------

    def build(self) -> gpu.LaunchOp:
        nest, s, b = self.nest, self.s, self.b
        args = self.body.args
        bx, by, bz, tid = (b.i32(v) for v in args[:4])
        self.tid = tid
        batch = math.prod(nest.batch)
        self.batch_iv: list[Index] = []
        rest: Index = bz
        for e in reversed(nest.batch):
            self.batch_iv.insert(0, b.rem(rest, e) if e > 1 else 0)
            rest = b.div(rest, e)
        self.m0 = b.mul(by, s.bm)
        self.n0 = b.mul(bx, s.bn)
        self.emit_body()
        grid = [-(-nest.n // s.bn), -(-nest.m // s.bm), batch]
        consts_host = [arith.ConstantOp(IntegerAttr(v, IndexType())) for v in (*grid, s.threads, 1)]
        for c in consts_host:
            c.location = self.loc
        launch = gpu.LaunchOp(
            Region(self.body),
            [consts_host[0], consts_host[1], consts_host[2]],
            [consts_host[3], consts_host[4], consts_host[4]],
        )
        launch.location = self.loc
        for key in (KERNEL_ATTR, KIND_ATTR):
            if key in nest.par.attributes:
                launch.attributes[key] = nest.par.attributes[key]
        launch.attributes[SCHEDULE_ATTR] = StringAttr(s.name)
        launch.attributes[TILE_ATTR] = DenseArrayBase.from_list(i32, [s.bm, s.bn, s.bk])
        launch.attributes["gpu.known_block_size"] = DenseArrayBase.from_list(i32, [s.threads, 1, 1])
        self.host_consts = consts_host
        return launch

    def emit_body(self) -> None:
        """The kernel's work once the block's first output row ``m0`` and column ``n0`` are known: the SIMT
        rungs' loops and stores (a tensor-core rung overrides it)."""
        s, b, tid = self.s, self.b, self.tid
        warp, lane = b.div(tid, WARP), b.rem(tid, WARP)
        wm, wn = b.div(warp, s.warps[1]), b.rem(warp, s.warps[1])
        lm, ln = b.div(lane, s.lanes[1]), b.rem(lane, s.lanes[1])
        wtm = s.reps[0] * s.lanes[0] * s.vec[0]
        wtn = s.reps[1] * s.lanes[1] * s.vec[1]
        # Block-local first row/column of the thread, and the constant offsets of its outputs.
        self.row0 = b.add(b.mul(wm, wtm), b.mul(lm, s.vec[0]))
        self.col0 = b.add(b.mul(wn, wtn), b.mul(ln, s.vec[1]))
        self.row_offs = [r * s.lanes[0] * s.vec[0] + v for r in range(s.reps[0]) for v in range(s.vec[0])]
        self.col_offs = [r * s.lanes[1] * s.vec[1] + v for r in range(s.reps[1]) for v in range(s.vec[1])]
        acc = self.tiled_loop() if s.bk else self.direct_loop()
        self.store(acc)

    def coords(self, i: Index, k: Index) -> list[Index]:
        return [*self.batch_iv, i, k]

    def extents(self, x: Operand) -> list[int]:
        nest = self.nest
        return [*nest.batch, nest.m if x is nest.a else nest.n, nest.k]

    def direct_loop(self) -> list[SSAValue]:
        """Thread per output: the K loop reads the operands from global memory."""
        nest, b = self.nest, self.b
        row = b.add(self.m0, self.row0)
        col = b.add(self.n0, self.col0)
        loop_body = Block(arg_types=[IndexType(), nest.element])
        k_index, acc = loop_body.args
        lb = b.at(loop_body)
        lb.op(scf.YieldOp(acc))
        k = lb.i32(k_index)
        av = self.element(lb, nest.a, self.coords(row, k), self.extents(nest.a))
        bv = self.element(lb, nest.b, self.coords(col, k), self.extents(nest.b))
        total = lb.v(arith.AddfOp(acc, lb.v(arith.MulfOp(av, bv))))
        loop_body.last_op.operands = [total]  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(0), b.idx(nest.k), b.idx(1), [self.zero], Region(loop_body))
        b.op(loop)
        return [loop.results[0]]

    # --- shared-memory tiles ----------------------------------------------------------------------------------

    def tile_layout(self, x: Operand) -> tuple[int, int]:
        """(extent along i of the operand's tile, row length in workgroup memory: padded when transposed)."""
        s = self.s
        bi = s.bm if x is self.nest.a else s.bn
        if x.contiguous == "i":
            return bi, bi
        return bi, bi + (VEC if self.vector else 1)

    def tiled_loop(self) -> list[SSAValue]:
        """The K loop over tiles: one stage (load, barrier, compute, barrier) or two (the next tile's copies are in
        flight, or its values in registers, while the threads compute on the current one; one barrier a step)."""
        nest, s, b = self.nest, self.s, self.b
        stages = 2 if s.async_copy else 1
        self.tiles = {}
        plans = []
        for x in (nest.a, nest.b):
            _, row = self.tile_layout(x)
            self.tiles[id(x)] = b.v(gpu_ext.WorkgroupAllocOp(nest.element, [stages, s.bk, row]))
            plans.append(self.plan_tile(b, x, async_copy=s.async_copy))
        k_tiles = -(-nest.k // s.bk)
        n_acc = len(self.row_offs) * len(self.col_offs)
        loop_body = Block(arg_types=[IndexType(), *([nest.element] * n_acc)])
        kt_index, *acc = loop_body.args
        lb = b.at(loop_body)
        lb.op(scf.YieldOp(*acc))
        kt = lb.i32(kt_index)
        if stages == 1:
            k0 = lb.mul(kt, s.bk)
            for plan in plans:
                self.store_tile(lb, plan, 0, self.load_tile(lb, plan, k0))
            lb.op(gpu.BarrierOp())
            new = self.compute(lb, 0, acc)
            lb.op(gpu.BarrierOp())
        else:
            # Prologue: tile 0 into stage 0.
            for plan in plans:
                self.store_tile(b, plan, 0, self.load_tile(b, plan, 0))
            b.op(gpu_ext.AsyncCommitOp())
            b.op(gpu_ext.AsyncWaitOp(0))
            b.op(gpu.BarrierOp())
            # Step kt: start tile kt + 1 towards stage (kt + 1) % 2, compute on stage kt % 2. Past the last tile
            # the loads read zeros (clamped, never out of the buffers) into a stage nobody reads.
            k_next = lb.add(lb.mul(kt, s.bk), s.bk)
            here = lb.rem(kt, 2)
            assert not isinstance(here, int)
            there = lb.v(arith.XOrIOp(here, lb.c32(1)))
            pending = [self.load_tile(lb, plan, k_next, stage=there) for plan in plans]
            lb.op(gpu_ext.AsyncCommitOp())
            new = self.compute(lb, here, acc)
            for plan, values in zip(plans, pending, strict=True):
                self.store_tile(lb, plan, there, values)
            lb.op(gpu_ext.AsyncWaitOp(0))
            lb.op(gpu.BarrierOp())
        loop_body.last_op.operands = new  # type: ignore[union-attr]
        loop = scf.ForOp(b.idx(0), b.idx(k_tiles), b.idx(1), [self.zero] * n_acc, Region(loop_body))
        b.op(loop)
        return list(loop.results)

    def plan_tile(self, b: KernelBuilder, x: Operand, async_copy: bool) -> _TilePlan:
        """How the threads share the copy of one operand tile (the loop-invariant part, made once at the top):
        chunks of ``vec`` elements along the operand's contiguous dimension, consecutive threads taking consecutive
        chunks (coalesced global reads)."""
        s, nest = self.s, self.nest
        bi, _ = self.tile_layout(x)
        i0 = self.m0 if x is nest.a else self.n0
        ext = self.extents(x)
        along_i = x.contiguous == "i"
        copy = async_copy and x.plain and (along_i or not self.vectorizable(x))
        vec = VEC if self.vectorizable(x) else 1
        if copy and not along_i:
            vec = 1  # a transposing copy moves one element at a time
        fast, slow = (bi, s.bk) if along_i else (s.bk, bi)
        per_row = fast // vec
        chunks = per_row * slow
        tid = self.tid
        plan = _TilePlan(x, vec, along_i, copy, ext[-2], ext[-1])
        for r in range(-(-chunks // s.threads)):
            c = b.add(tid, r * s.threads)
            guard = b.lt(c, chunks) if (r + 1) * s.threads > chunks else True
            f = b.mul(b.rem(c, per_row), vec)
            sl = b.div(c, per_row)
            ii, kk = (f, sl) if along_i else (sl, f)
            gi = b.add(i0, ii)
            i_ok = b.lt(gi, plan.i_ext)
            ci = b.min(gi, plan.i_ext - (vec if along_i else 1))
            plan.chunks.append(_Chunk(guard, ii, kk, gi, i_ok, ci))
        return plan

    def load_tile(self, b: KernelBuilder, plan: _TilePlan, k0: Index, stage: Index = 0) -> list[list[SSAValue] | None]:
        """Read this thread's chunks of the tile at K offset ``k0``: their values (registers), or, for a copy that
        goes straight to workgroup memory, ``None`` after issuing its ``gpu_ext.async_copy`` into ``stage``."""
        out: list[list[SSAValue] | None] = []
        x, vec = plan.operand, plan.vec
        for ch in plan.chunks:
            gb = b.if_(ch.guard) if plan.copy else b
            if gb is None:
                out.append(None)
                continue
            gk = gb.add(k0, ch.kk)
            ok = gb.both(ch.i_ok, gb.lt(gk, plan.k_ext))
            if not x.plain or (vec == 1 and not plan.copy):
                out.append([self.element(gb, x, self.coords(ch.gi, gk), self.extents(x))])
                continue
            ck = gb.min(gk, plan.k_ext - (1 if plan.along_i else vec))
            src = [gb.idx(v) for v in self.indices(x, self.coords(ch.ci, ck))]
            assert x.buffer is not None
            if plan.copy:
                tile = self.tiles[id(x)]
                valid = (
                    gb.idx(vec if ok else 0)
                    if isinstance(ok, bool)
                    else gb.v(arith.SelectOp(ok, gb.idx(vec), gb.idx(0)))
                )
                dst = [gb.idx(stage), gb.idx(ch.kk), gb.idx(ch.ii)]
                gb.op(gpu_ext.AsyncCopyOp(x.buffer, src, tile, dst, vec, valid))
                out.append(None)
                continue
            load = (
                gb.op(gpu_ext.VectorLoadOp(x.buffer, src, vec)) if vec > 1 else gb.op(memref.LoadOp.get(x.buffer, src))
            )
            out.append([gb.select(ok, v, self.zero) for v in load.results])
        return out

    def store_tile(self, b: KernelBuilder, plan: _TilePlan, stage: Index, values: list[list[SSAValue] | None]) -> None:
        """Write the chunks ``load_tile`` read into registers to workgroup memory ``stage`` (k-major)."""
        tile = self.tiles[id(plan.operand)]
        for ch, vals in zip(plan.chunks, values, strict=True):
            if vals is None:
                continue
            gb = b.if_(ch.guard)
            if gb is None:
                continue
            if plan.along_i and len(vals) > 1:
                gb.op(gpu_ext.VectorStoreOp(vals, tile, [gb.idx(stage), gb.idx(ch.kk), gb.idx(ch.ii)]))
                continue
            for j, v in enumerate(vals):
                kj, ij = (ch.kk, gb.add(ch.ii, j)) if plan.along_i else (gb.add(ch.kk, j), ch.ii)
                gb.op(memref.StoreOp.get(v, tile, [gb.idx(stage), gb.idx(kj), gb.idx(ij)]))

    # --- the outer products -----------------------------------------------------------------------------------

    def fragment(
        self, b: KernelBuilder, x: Operand, stage: Index, kk: int, base: Index, offs: list[int]
    ) -> list[SSAValue]:
        tile = self.tiles[id(x)]
        out: list[SSAValue] = []
        j = 0
        while j < len(offs):
            run = offs[j : j + VEC]
            contiguous = len(run) == VEC and run == list(range(run[0], run[0] + VEC))
            idx = [b.idx(stage), b.idx(kk), b.idx(b.add(base, offs[j]))]
            if self.vector and contiguous:
                out.extend(b.op(gpu_ext.VectorLoadOp(tile, idx, VEC)).results)
                j += VEC
            else:
                out.append(b.v(memref.LoadOp.get(tile, idx)))
                j += 1
        return out

    def compute(self, b: KernelBuilder, stage: Index, acc: Sequence[SSAValue]) -> list[SSAValue]:
        nest = self.nest
        acc = list(acc)
        tn = len(self.col_offs)
        for kk in range(self.s.bk):
            av = self.fragment(b, nest.a, stage, kk, self.row0, self.row_offs)
            bv = self.fragment(b, nest.b, stage, kk, self.col0, self.col_offs)
            for i, a in enumerate(av):
                for j, bb in enumerate(bv):
                    acc[i * tn + j] = b.v(arith.AddfOp(acc[i * tn + j], b.v(arith.MulfOp(a, bb))))
        return acc

    # --- the results ------------------------------------------------------------------------------------------

    def store(self, acc: Sequence[SSAValue]) -> None:
        nest, b = self.nest, self.b
        out_t = nest.out.type
        assert isinstance(out_t, MemRefType)
        vec_out = self.vector and nest.n % VEC == 0 and out_t.get_shape()[-1] % VEC == 0 and aligned16(nest.out)
        tn = len(self.col_offs)
        for i, ro in enumerate(self.row_offs):
            m = b.add(self.m0, b.add(self.row0, ro))
            j = 0
            while j < tn:
                co = self.col_offs[j]
                n = b.add(self.n0, b.add(self.col0, co))
                run = self.col_offs[j : j + VEC]
                width = VEC if vec_out and run == list(range(co, co + VEC)) else 1
                sb = b.if_(b.both(b.lt(m, nest.m), b.lt(n, nest.n)))
                if sb is not None:
                    idx = [sb.idx(v) for v in [*self.batch_iv, m, n]]
                    values = list(acc[i * tn + j : i * tn + j + width])
                    if width > 1:
                        sb.op(gpu_ext.VectorStoreOp(values, nest.out, idx))
                    else:
                        sb.op(memref.StoreOp.get(values[0], nest.out, idx))
                j += width


def schedule_nest(nest: MatmulNest, s: Schedule) -> None:
    """Replace the nest by the ``gpu.launch`` of the (fitted) rung ``s``."""
    if s.tensor_core:
        from picograd.passes.kinds.matmul_mma_sync import MmaSyncKernel  # it builds on TiledKernel

        kernel: TiledKernel = MmaSyncKernel(nest, s)
    else:
        kernel = TiledKernel(nest, s)
    launch = kernel.build()
    par = nest.par
    host = par.parent_block()
    assert host is not None
    for c in kernel.host_consts:
        host.insert_op_before(c, par)
    host.insert_op_before(launch, par)
    host.erase_op(par, safe_erase=False)


@dataclass(frozen=True)
class PgMatmulSchedule(ModulePass):
    """Tile the matmul nests of the loop stage into ``gpu.launch`` kernels (see the module docstring): each nest
    the rung its ``kernel.schedule`` attribute names (``pg-schedule`` chose it), none where it names
    ``thread_per_point``. Nests without the attribute (loop-stage IR written by hand) take the rung of option
    ``schedule``: ``auto`` (the default) or one of ``naive``, ``coalesced``, ``smem``, ``regtile``, ``warptile``,
    ``cp-async``."""

    name = "pg-matmul-schedule"
    schedule: str = "auto"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        try:
            check_schedule(self.schedule)
        except ValueError as e:
            raise PassFailedException(f"pg-matmul-schedule: {e}") from None
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            for par in [p for p in fn.body.block.ops if isinstance(p, scf.ParallelOp)]:
                attr = par.attributes.get(NEST_SCHEDULE_ATTR)
                name = attr.strategy.data if isinstance(attr, ScheduleAttr) else self.schedule
                if name in WGMMA:  # the Hopper tensor-core kernels (picograd/passes/kinds/matmul_wgmma.py)
                    if (nest := match_matmul(par)) is not None:
                        matmul_wgmma.schedule_nest(nest, name)
                    elif isinstance(attr, ScheduleAttr):
                        raise PassFailedException(f"pg-matmul-schedule: a loop nest{where(par)} is scheduled {attr} "
                                                  "but is not a matmul nest")  # fmt: skip
                    continue
                if isinstance(attr, ScheduleAttr):
                    try:
                        rung = Schedule.from_attr(attr)
                    except (ValueError, KeyError) as e:
                        raise PassFailedException(f"pg-matmul-schedule: {e}{where(par)}") from None
                    if rung is None:
                        continue
                    nest = match_matmul(par)
                    if nest is None:
                        raise PassFailedException(
                            f"pg-matmul-schedule: a loop nest{where(par)} is scheduled {attr} but is not a matmul nest"
                        )
                    schedule_nest(nest, rung)
                    continue
                nest = match_matmul(par)
                if nest is None:
                    continue
                try:
                    fit = matmul_rung(
                        nest.m, nest.n, nest.k, math.prod(nest.batch), nest.element, self.schedule, nest.precision
                    )
                except ValueError as e:
                    raise PassFailedException(f"pg-matmul-schedule: {e}{where(par)}") from None
                if fit is not None:
                    schedule_nest(nest, fit)
