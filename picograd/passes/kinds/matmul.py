"""The ``matmul`` kind (``pg.matmul``, batched: (batch..., M, K) x (batch..., K, N)).

**Loops** (``pg-to-loops``). One ``scf.parallel`` over (batch..., M, N), marked ``pg.nest = "matmul"``, whose body
is exactly an ``scf.for`` over K (from 0, step 1) carrying one accumulator that starts at 0.0, and the store of its
result at the nest's indices. The K loop's body computes ``a`` (the lhs at (batch..., m, k)) and ``b`` (the rhs at
(batch..., k, n)), then ``acc + a * b`` (``arith.mulf`` then ``arith.addf``), which it yields. ``a`` and ``b`` are
whatever the kernel computes at those indices: a load, a load with swapped indices (a transposed operand, a
``pg.permute`` fused into the kernel), or any side-effect-free expression. bf16/f16 matmuls: ``a`` and ``b`` are
extended to f32 (``arith.extf``), the accumulator is f32, and its result is rounded once (``arith.truncf``) before
the store.

**GPU** (``pg-matmul-schedule``'s ``tile`` hook, under a rung of ``picograd.passes.schedule.SCHEDULES``): the
marked nest becomes a ``gpu.launch`` (MLIR's form of a kernel before outlining; ``pg-to-gpu`` outlines it as it
stands) that runs the rung on a grid of ``(ceil(N / BN), ceil(M / BM), batch)`` thread blocks; see
``picograd/passes/matmul_schedule.py`` for the rungs. Each operand's expression is read off the K loop (the ops
of its body that the factor depends on, a use-def slice): one ``memref.load`` whose indices are loop variables
or constants is a *plain* operand, which the tiled rungs copy tile by tile (16 bytes at a time, or with
``cp.async``); anything else is cloned at each element it needs. ``to_loops`` marks the nest only when this
reader takes it apart (the loop emitter may hoist an operand's row-invariant ops out of the K loop, as for a
softmax fused into the matmul's kernel: that nest stays unmarked, a thread per output, and a rung scheduled on it
is an error); a nest marked by hand that is not of this form is an error too, never a silent fallback. Under
``thread_per_point`` (small or f64 matmuls that ``auto`` leaves, grids past CUDA's limits) the nest stays and
``pg-to-gpu`` maps it a thread per output, with the K loop sequential.

**Tensor cores.** A rung with ``tensor_core`` set (``mma-sync``) is built by
``picograd/passes/kinds/matmul_mma_sync.py``'s ``MmaSyncKernel``, a :class:`TiledKernel` whose ``emit_body`` is
its ldmatrix / mma.sync pipeline; ``wgmma``, ``wgmma-ws`` and ``wgmma-pp`` (``matmul_wgmma.SCHEDULES``) go to
``matmul_wgmma.schedule_nest``, whose ``gpu.launch`` ``pg-to-ptx`` turns into the sm_90a kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import (
    BFloat16Type,
    DenseArrayBase,
    Float16Type,
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    MemRefType,
    StringAttr,
    i32,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.traits import is_side_effect_free

from picograd.dialects import gpu_ext, pg
from picograd.dialects.attrs import KERNEL_ATTR, KIND_ATTR, SCHEDULE_ATTR, STRATEGY_ATTR, TILE_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.passes.ir_builder import Builder, ConstantPool, Index, const_int
from picograd.passes.kinds import matmul_wgmma
from picograd.passes.kinds.base import KernelKind, MalformedNest, Riders, keep_mark
from picograd.passes.kinds.elementwise import thread_per_point
from picograd.passes.kinds.matmul_rungs import RUNGS, VEC, WGMMA, Schedule, matmul_rung

if TYPE_CHECKING:
    from picograd.passes.to_loops import KernelLowering

NAME = "matmul"
WARP = gpu_ext.WARP_SIZE


# ---------------------------------------------------------------------------------------------------------------
# Loops


def to_loops(lw: KernelLowering, op: pg.MatmulOp, out: SSAValue, riders: Riders) -> None:
    """The marked matmul nest (see the module docstring)."""
    k_size = pg.shape_of(op.lhs)[-1]
    el = pg.element_of(op.result)
    with lw.parallel(pg.shape_of(op.result), nest=NAME) as ivs:
        *batch, m, n = ivs

        def body(ks: list[SSAValue], acc: list[SSAValue]) -> list[SSAValue]:
            a = lw.at_wide(op.lhs, (*batch, m, ks[0]))
            b = lw.at_wide(op.rhs, (*batch, ks[0], n))
            return [lw.pure(arith.AddfOp, acc[0], lw.pure(arith.MulfOp, a, b))]

        # bf16/f16: f32 accumulators (the products of 16-bit floats are exact in f32), the sum rounded once
        (total,) = lw.loops([(0, k_size)], [lw.const(0.0, lw.wide_type(el))], body)
        lw.store(lw.narrow(total, el), out, tuple(ivs))
    try:
        read_matmul(lw.last_nest)  # type: ignore[arg-type]
    except MalformedNest:  # operand ops hoisted out of the K loop (a fused softmax's row sums): a thread per output
        keep_mark(lw.last_nest, False)


# ---------------------------------------------------------------------------------------------------------------
# Reading the marked nest


@dataclass
class SplitIndex:
    """The index ``s * chunk + k`` a partial matmul of split-K (``matmul_split.py``) reads its operands at: ``value``
    in the K loop, ``ops`` its multiply and add (not part of an operand's ops), ``s`` the position of the chunk's
    loop variable in the operand's (batch..., i, k)."""

    value: SSAValue
    ops: list[Operation]
    s: int
    chunk: int


def split_index(v: SSAValue, dims: list[SSAValue]) -> SplitIndex | None:
    """``v`` as ``s * chunk + k`` (``s`` a batch dim of ``dims`` = (batch..., i, k), ``chunk`` a constant), else
    None."""
    add = v.owner
    if not isinstance(add, arith.AddiOp):
        return None
    for x, y in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        mul = x.owner
        if y is dims[-1] and isinstance(mul, arith.MuliOp):
            for sv, c in ((mul.lhs, mul.rhs), (mul.rhs, mul.lhs)):
                n = const_int(c)
                if sv in dims[:-2] and n is not None:
                    return SplitIndex(v, [mul, add], dims.index(sv), n)
    return None


@dataclass
class Operand:
    """How one operand is read: the ops computing it in the K loop body and the loop variables they use.

    ``dims`` names the nest's loop variables the value depends on, as (batch ivs..., ``i``, ``k``) where ``i`` is m
    for A and n for B. ``plain`` is set when the value is one ``memref.load`` whose indices are loop variables or
    constants: then ``buffer``, ``index_of`` (for each buffer dim, the position in (batch..., i, k) it takes, or a
    constant) and ``contiguous`` (``"i"``, ``"k"`` or None: which of i and k is the buffer's innermost dim).
    ``split``: the operand is read at ``s * chunk + k`` instead of ``k`` (a partial matmul of split-K); its
    ``index_of`` names k there, and :meth:`TiledKernel.indices` adds the chunk's offset."""

    ops: list[Operation]
    value: SSAValue
    buffer: SSAValue | None = None
    index_of: list[int | tuple[int]] | None = None
    contiguous: str | None = None
    split: SplitIndex | None = None

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
        ``bf16``, ``fp16``, ``fp32`` or ``fp64``; a partial matmul of split-K (f32 partial sums) takes its
        operands' 16-bit type, read off an operand loaded then extended."""
        t = self.out.type
        assert isinstance(t, MemRefType)
        names = {"bf16": "bf16", "f16": "fp16", "f32": "fp32", "f64": "fp64"}
        element = t.element_type
        if self.a.split is not None:
            for op in self.a.ops:
                if isinstance(op, arith.ExtFOp) and isinstance(op.input.type, BFloat16Type | Float16Type):
                    element = op.input.type
        return names.get(str(getattr(element, "name", "")), "fp32")


def aligned16(buf: SSAValue) -> bool:
    """Whether ``buf`` starts on a 16-byte boundary: a kernel argument or scratch buffer (the runtime allocates
    them 256-byte aligned) or a view of one at such an offset; ``memref.global`` constants make no promise."""
    owner = buf.owner
    if isinstance(owner, memref.ViewOp):
        shift = const_int(owner.byte_shift)
        return shift is not None and shift % 16 == 0
    return not isinstance(owner, memref.GetGlobalOp)


def operand_ops(value: SSAValue, body: Block) -> list[Operation] | None:
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


def rows_match(x: Operand, row: int, inner: int, vec: int) -> bool:
    """Whether the buffer rows (``row`` elements) of a plain operand are its matrix's rows (``inner`` elements along
    its contiguous dim), so that a chunk of ``vec`` clamped into the matrix stays in the row; a partial matmul of
    split-K reads ``inner``-long runs of its rows at multiples of ``inner``."""
    if x.split is not None and x.contiguous == "k":
        return row % inner == 0 and inner % vec == 0 and x.split.chunk == inner
    return row == inner


def depends(ops: Sequence[Operation], v: SSAValue) -> bool:
    return any(v in op.operands for op in ops)


def read_operand(value: SSAValue, body: Block, dims: list[SSAValue], other: SSAValue) -> Operand | None:
    ops = operand_ops(value, body)
    if ops is None or depends(ops, other):
        return None
    split = None
    for op in ops:
        for v in op.operands:
            split = split or split_index(v, dims)
    if split is not None:
        ops = [op for op in ops if op not in split.ops]
        if any(split.ops[0].results[0] in op.operands for op in ops):
            return None  # s * chunk used otherwise
    operand = Operand(ops, value, split=split)
    if len(ops) == 1 and isinstance(ops[0], memref.LoadOp):
        load = ops[0]
        index_of: list[int | tuple[int]] = []
        for idx in load.indices:
            if idx in dims:
                index_of.append(dims.index(idx))
            elif split is not None and idx is split.value:
                index_of.append(len(dims) - 1)
            elif (c := const_int(idx)) is not None:
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


def read_matmul(par: scf.ParallelOp) -> MatmulNest:
    """The parts of the marked matmul nest ``par`` (see the module docstring); raises :class:`MalformedNest`
    naming what differs from the form ``to_loops`` emits."""

    def need(ok: object, what: str) -> None:
        if not ok:
            raise MalformedNest(f"is not a matmul nest ({what})")

    bounds = [
        (const_int(lb), const_int(ub), const_int(st))
        for lb, ub, st in zip(par.lowerBound, par.upperBound, par.step, strict=True)
    ]
    need(len(bounds) >= 2 and all(b == (0, b[1], 1) and b[1] is not None for b in bounds), "its bounds")
    extents = [int(b[1]) for b in bounds]  # type: ignore[arg-type]
    block = par.body.block
    ops = list(block.ops)
    rounded = len(ops) == 4 and isinstance(ops[1], arith.TruncFOp)  # bf16/f16: f32 sums rounded once at the store
    need(len(ops) == 3 + rounded and isinstance(ops[0], scf.ForOp) and isinstance(ops[-2], memref.StoreOp), "its body")
    loop, store = ops[0], ops[-2]
    assert isinstance(loop, scf.ForOp) and isinstance(store, memref.StoreOp)
    ivs: list[SSAValue] = list(block.args)
    stored = ops[1].input if isinstance(ops[1], arith.TruncFOp) else store.value
    need(list(store.indices) == ivs and len(loop.results) == 1 and stored is loop.results[0], "its store")
    need(not rounded or store.value is ops[1].results[0], "its store")
    k = const_int(loop.ub)
    need(const_int(loop.lb) == 0 and const_int(loop.step) == 1 and k is not None, "its K loop's bounds")
    assert k is not None
    init = loop.iter_args[0].owner
    need(
        isinstance(init, arith.ConstantOp) and isinstance(init.value, FloatAttr) and init.value.value.data == 0,
        "its accumulator does not start at 0",
    )
    body = loop.body.block
    k_iv, acc = body.args
    yld = body.last_op
    assert yld is not None
    total = yld.operands[0].owner
    need(isinstance(total, arith.AddfOp) and total.lhs is acc, "its K loop does not yield acc + a * b")
    assert isinstance(total, arith.AddfOp)
    prod = total.rhs.owner
    need(isinstance(prod, arith.MulfOp), "its K loop does not yield acc + a * b")
    assert isinstance(prod, arith.MulfOp)
    *batch, m_iv, n_iv = ivs
    a = read_operand(prod.lhs, body, [*batch, m_iv, k_iv], n_iv)
    b = read_operand(prod.rhs, body, [*batch, n_iv, k_iv], m_iv)
    need(a is not None and b is not None, "an operand has side effects or depends on the other's index")
    assert a is not None and b is not None
    need(not depends(a.ops, acc) and not depends(b.ops, acc), "an operand depends on the accumulator")
    split_ops = [op for x in (a, b) if x.split is not None for op in x.split.ops]
    used = {id(op) for op in [*a.ops, *b.ops, *split_ops, prod, total, yld]}
    need(all(id(op) in used for op in body.ops), "its K loop computes more than acc + a * b")
    return MatmulNest(par, extents[:-2], extents[-2], extents[-1], k, a, b, store.memref, total.result.type, ivs, k_iv)


# ---------------------------------------------------------------------------------------------------------------
# Building the kernel


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
        self.b = Builder(self.body, self.loc, ConstantPool(self.body))
        self.zero = self.b.const(0.0, nest.element)

    # --- operands ---------------------------------------------------------------------------------------------

    def element(self, b: Builder, x: Operand, coords: Sequence[Index], extents: Sequence[int]) -> SSAValue:
        """The operand value at (batch..., i, k) ``coords``, zero outside ``extents`` (clamped, then selected)."""
        ok: SSAValue | bool = True
        clamped: list[Index] = []
        for c, e in zip(coords, extents, strict=True):
            ok = b.both(ok, b.lt(c, e))
            clamped.append(b.min(c, e - 1))
        value = self.evaluate(b, x, [b.idx(c) for c in clamped])
        return b.select(ok, value, self.zero)

    def evaluate(self, b: Builder, x: Operand, coords: Sequence[SSAValue]) -> SSAValue:
        """Clone the ops computing ``x`` with the loop variables replaced by ``coords``."""
        dims = self.dims(x)
        mapping: dict[SSAValue, SSAValue] = dict(zip(dims, coords, strict=True))
        if x.split is not None:
            offset = b.v(arith.MuliOp(coords[x.split.s], b.index(x.split.chunk)))
            mapping[x.split.value] = b.v(arith.AddiOp(offset, coords[-1]))
        for op in x.ops:
            clone = op.clone(value_mapper=mapping)
            b.op(clone)
            for old, new in zip(op.results, clone.results, strict=True):
                mapping[old] = new
        return mapping.get(x.value, x.value)  # a value from outside the loop is the same at every point

    def dims(self, x: Operand) -> list[SSAValue]:
        *batch, m, n = self.nest.ivs
        return [*batch, m if x is self.nest.a else n, self.nest.k_iv]

    def indices(self, b: Builder, x: Operand, coords: Sequence[Index]) -> list[Index]:
        """The buffer indices of a plain operand at (batch..., i, k) ``coords`` (k offset by the chunk's start in
        a partial matmul of split-K)."""
        assert x.index_of is not None
        if x.split is not None:
            offset = self.k_offsets.get((x.split.s, x.split.chunk))
            if offset is None:
                offset = b.mul(coords[x.split.s], x.split.chunk)
            coords = [*coords[:-1], b.add(offset, coords[-1])]
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
        if t.get_shape()[-1] % VEC or not rows_match(x, t.get_shape()[-1], ext[-2 if x.contiguous == "i" else -1], VEC):
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
        # split-K: the chunk's first k, once (the operands' split indices add it to their tile's k)
        self.k_offsets = {
            (x.split.s, x.split.chunk): b.mul(self.batch_iv[x.split.s], x.split.chunk)
            for x in (nest.a, nest.b)
            if x.split is not None
        }
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
        launch.attributes[STRATEGY_ATTR] = StringAttr(s.name)
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

    def plan_tile(self, b: Builder, x: Operand, async_copy: bool) -> _TilePlan:
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

    def load_tile(self, b: Builder, plan: _TilePlan, k0: Index, stage: Index = 0) -> list[list[SSAValue] | None]:
        """Read this thread's chunks of the tile at K offset ``k0``: their values (registers), or, for a copy that
        goes straight to workgroup memory, ``None`` after issuing its ``gpu_ext.async_copy`` into ``stage``."""
        out: list[list[SSAValue] | None] = []
        x, vec = plan.operand, plan.vec
        for ch in plan.chunks:
            gb = b.when(ch.guard) if plan.copy else b
            if gb is None:
                out.append(None)
                continue
            gk = gb.add(k0, ch.kk)
            ok = gb.both(ch.i_ok, gb.lt(gk, plan.k_ext))
            if not x.plain or (vec == 1 and not plan.copy):
                out.append([self.element(gb, x, self.coords(ch.gi, gk), self.extents(x))])
                continue
            ck = gb.min(gk, plan.k_ext - (1 if plan.along_i else vec))
            src = [gb.idx(v) for v in self.indices(gb, x, self.coords(ch.ci, ck))]
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

    def store_tile(self, b: Builder, plan: _TilePlan, stage: Index, values: list[list[SSAValue] | None]) -> None:
        """Write the chunks ``load_tile`` read into registers to workgroup memory ``stage`` (k-major)."""
        tile = self.tiles[id(plan.operand)]
        for ch, vals in zip(plan.chunks, values, strict=True):
            if vals is None:
                continue
            gb = b.when(ch.guard)
            if gb is None:
                continue
            if plan.along_i and len(vals) > 1:
                gb.op(gpu_ext.VectorStoreOp(vals, tile, [gb.idx(stage), gb.idx(ch.kk), gb.idx(ch.ii)]))
                continue
            for j, v in enumerate(vals):
                kj, ij = (ch.kk, gb.add(ch.ii, j)) if plan.along_i else (gb.add(ch.kk, j), ch.ii)
                gb.op(memref.StoreOp.get(v, tile, [gb.idx(stage), gb.idx(kj), gb.idx(ij)]))

    # --- the outer products -----------------------------------------------------------------------------------

    def fragment(self, b: Builder, x: Operand, stage: Index, kk: int, base: Index, offs: list[int]) -> list[SSAValue]:
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

    def compute(self, b: Builder, stage: Index, acc: Sequence[SSAValue]) -> list[SSAValue]:
        nest = self.nest
        acc = list(acc)
        tn = len(self.col_offs)
        for kk in range(self.s.bk):
            av = self.fragment(b, nest.a, stage, kk, self.row0, self.row_offs)
            bv = self.fragment(b, nest.b, stage, kk, self.col0, self.col_offs)
            for i, a in enumerate(av):
                for j, bb in enumerate(bv):
                    acc[i * tn + j] = b.float_op(arith.AddfOp, acc[i * tn + j], b.float_op(arith.MulfOp, a, bb))
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
                sb = b.when(b.both(b.lt(m, nest.m), b.lt(n, nest.n)))
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


def tile(par: scf.ParallelOp, option: str) -> bool:
    """``pg-matmul-schedule``'s hook: replace the marked nest ``par`` by the ``gpu.launch`` of the rung its
    ``kernel.schedule`` names, or, without one, of the rung ``option`` (``auto`` or a rung's name) gives for its
    shape. Returns False (the nest left to ``pg-to-gpu``) under ``thread_per_point``. Raises ``ValueError`` for a
    malformed schedule attribute and :class:`MalformedNest`."""
    attr = par.attributes.get(SCHEDULE_ATTR)
    name = attr.strategy.data if isinstance(attr, ScheduleAttr) else option
    tf32 = isinstance(attr, ScheduleAttr) and attr.flag("tf32")
    if name in WGMMA:  # the Hopper tensor-core kernels (picograd/passes/kinds/matmul_wgmma.py)
        nest = read_matmul(par)
        auto_choice = isinstance(attr, ScheduleAttr) and attr.flag("fallback")
        if auto_choice and isinstance(matmul_wgmma.problem(nest, name, tf32), str):
            option, attr = "auto", None  # auto's wgmma choice on a nest it cannot run: auto's rung for it instead
        else:
            matmul_wgmma.schedule_nest(nest, name, tf32)
            return True
    if isinstance(attr, ScheduleAttr):
        rung = Schedule.from_attr(attr)
        if rung is None:
            return False
        schedule_nest(read_matmul(par), rung)
        return True
    nest = read_matmul(par)
    precision = "tf32" if tf32 else nest.precision  # a tf32 matmul's fallback keeps the tensor cores (mma-sync)
    fit = matmul_rung(nest.m, nest.n, nest.k, math.prod(nest.batch), nest.element, option, precision)
    if fit is None:
        return False
    schedule_nest(nest, fit)
    return True


KIND = KernelKind(
    name=NAME,
    doc="pg.matmul: a rung of the SGEMM ladder (pg-matmul-schedule), or a thread per output",
    ops=(pg.MatmulOp,),
    to_loops=to_loops,
    gpu={"thread_per_point": thread_per_point},
    tile=tile,
    strategies=("thread_per_point", *RUNGS, *WGMMA),
)
