"""The ``flash-wgmma`` schedule of the ``attention`` kind: a bf16 FlashAttention forward on the Hopper tensor cores
(sm_90a), in the style of FlashAttention-3 (Shah et al. 2024), built directly as a ``ptx.func``.

out (B, L, d, bf16) and lse (B, L, f32 or the lse buffer's type) of softmax(scale * q k^T [causal]) v, q (B, L, d),
k and v (B, S, d) bf16 (B: the batch and heads flattened), accumulated in f32, for head dims 64 and 128. Written
from the PTX ISA 8.0 (sections 9.7.14 ``wgmma``, 9.7.8.24.9 ``cp.async.bulk.tensor``, 9.7.12.15 ``mbarrier``,
9.7.17.1 ``setmaxnreg``) and the FlashAttention-3 paper's Algorithm 1; the TMA boxes, descriptors and mbarrier
ring are those of ``matmul_wgmma`` (its ``TensorMapSpec``, ``smem_descriptor`` and ``PipelineBuilder``).

- **Warp specialisation**: warpgroup 0 is the producer (``setmaxnreg.dec``); one of its threads loads the block's
  Q tile once (its own mbarrier) and then the K and V tiles of ``block_n`` keys into a ring of ``stages`` buffers
  by TMA (three tensor maps, kernel parameters, boxes of 64 elements of d by the tile's rows, 128-byte swizzle,
  d = 128 as two boxes), each K and each V tile completing on its own *full* mbarrier, waiting on the stage's
  *empty* mbarrier (one arrival per consumer warpgroup) before refilling it.
- **Consumers**: ``consumers`` warpgroups (``setmaxnreg.inc``) of 64 query rows each (block_m = 64 * consumers).
  Per key tile: S (64 x block_n, f32) = Q K^T by d/16 ``wgmma.mma_async.m64n<block_n>k16`` with both operands from
  shared-memory descriptors (K-major); on the tiles that need it, -inf where a key is past S or (causal) after
  the row; the online softmax on the accumulator registers (a thread holds rows g and g + 8 of its warp's 16, a row
  spread over the 4 lanes of a quad: max by two butterfly shuffles; the sum kept per thread and reduced once at
  the end), exponentials as ``ex2`` of ``s * scale * log2(e) - m * scale * log2(e)``; P rounded to bf16 into the
  A-fragment registers (``cvt.rn.bf16x2.f32``: the S accumulator layout of a k16 column pair *is* the A fragment's,
  no shuffle), the output accumulators rescaled, then O += P V by block_n/16 ``wgmma.mma_async`` with **A from
  registers** and V (K-major for this product: its keys are the K dim, d contiguous) read M/N-major from a
  descriptor (imm-trans-b 1, the V tile stored exactly as a K tile). The consumers release the stage after that
  group completes.
- **Causal**: query blocks in reverse order (the longest first), key tiles after the block's last row not loaded,
  the diagonal tiles masked.
- **Epilogue**: O / l rounded to bf16 (``cvt.rn.bf16x2``, one 4-byte store per column pair), rows past L skipped;
  ``lse = m * scale + ln(l)`` (``-inf`` for a row with no key) by lane 0 of each quad.

Limits (:func:`unsupported`): bf16 q, k, v and out; d = ev in (64, 128); no mask tensor, no dropout (the
``flash-wgmma`` schedule then falls back: see ``attention.schedule``); any L and S (ragged tiles are masked; TMA
reads zeros past the end).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from xdsl.builder import ImplicitBuilder
from xdsl.dialects import arith, gpu, memref, scf
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    StringAttr,
    UnitAttr,
    bf16,
    f64,
    i64,
)
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import kernel, pg, ptx
from picograd.dialects.attrs import SHARED_BYTES_ATTR
from picograd.dialects.kernel import ScheduleAttr
from picograd.dialects.pg import element_of, shape_of
from picograd.passes.kinds.attention import ATTENTION_ATTR, ATTENTION_OPS, nest_buffers, replace_nest
from picograd.passes.kinds.matmul_wgmma import (
    ALIGN,
    ATOM,
    DYNAMIC_SHARED,
    MAX_SHARED,
    SWIZZLE,
    TENSOR_MAPS_ATTR,
    WARPGROUP,
    WGMMA_K,
    PipelineBuilder,
    TensorMapSpec,
    binop,
    buffer_place,
    imm,
    ptx_kernel_launch,
    smem_descriptor,
    type_name,
    where,
)

STRATEGY = "flash-wgmma"
"""The schedule strategy (``pg-schedule``'s ``attention`` option) and the kernel's launch strategy."""
HEAD_DIMS = (64, 128)
LOG2E = math.log2(math.e)
LN2 = math.log(2.0)


@dataclass(frozen=True)
class FlashWgmmaSchedule:
    """``consumers`` warpgroups of 64 query rows (block_m = 64 * consumers), ``block_n`` keys a K/V tile,
    ``stages`` K/V buffers; ``producer_regs``/``consumer_regs`` the ``setmaxnreg`` counts."""

    consumers: int = 2
    block_n: int = 128
    stages: int = 2
    producer_regs: int = 40
    consumer_regs: int = 232

    @property
    def block_m(self) -> int:
        return 64 * self.consumers

    @property
    def threads(self) -> int:
        return WARPGROUP * (self.consumers + 1)

    def shared_bytes(self, d: int) -> int:
        """Dynamic shared memory: the Q tile, ``stages`` K and V tiles, slack to align them to 1024 bytes."""
        return (self.block_m + 2 * self.stages * self.block_n) * d * 2 + ALIGN

    def check(self, d: int) -> None:
        if self.block_n % 16 or not 16 <= self.block_n <= 256 or self.consumers not in (1, 2) or self.stages < 2:
            raise ValueError(f"{STRATEGY}: block_n={self.block_n}, {self.consumers} consumers, {self.stages} stages")
        if self.shared_bytes(d) > MAX_SHARED:
            raise ValueError(f"{STRATEGY}: {self.shared_bytes(d)} bytes of shared memory (at most {MAX_SHARED})")


def schedule_for(d: int) -> FlashWgmmaSchedule:
    """The configuration for head dim ``d``: 128 query rows (two consumer warpgroups) by 128 keys, two stages
    (FlashAttention-3's 128 x 128 tiles; 160 KiB of shared memory at d = 128)."""
    return FlashWgmmaSchedule()


@dataclass(frozen=True)
class Problem:
    """An attention forward over ``batch`` (batch x heads) of ``length`` queries and ``keys`` keys of head dim
    ``d``. The kernel takes the tensor maps of q, k, v, then ``args`` pointer parameters; q, k, v, out, lse are the
    buffers of parameters ``operands`` at byte ``offsets``; ``lse_dtype`` is lse's element type (None: no lse)."""

    batch: int
    length: int
    keys: int
    d: int
    scale: float
    causal: bool = False
    dtype: str = "bf16"
    out_dtype: str = "bf16"
    lse_dtype: str | None = "f32"
    offsets: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    operands: tuple[int, int, int, int, int] = (0, 1, 2, 3, 4)
    args: int = 5


def unsupported(p: Problem) -> str | None:
    """Why the kernel cannot compute ``p`` (None when it can)."""
    if p.dtype != "bf16" or p.out_dtype != "bf16":
        return f"q, k, v of {p.dtype} and out of {p.out_dtype} (it reads and writes bf16)"
    if p.d not in HEAD_DIMS:
        return f"head dim {p.d} (it computes {' and '.join(map(str, HEAD_DIMS))})"
    if p.lse_dtype not in ("f32", "bf16", None):
        return f"an lse of {p.lse_dtype}"
    if min(p.batch, p.length, p.keys) < 1:
        return "an empty attention"
    if any(o % 16 for o in p.offsets[:3]):
        return "q, k or v not 16-byte aligned"
    if p.batch > 65535 or p.batch * p.length * p.d >= 2**31:
        return "more than 2**31 output elements or 65535 heads"
    return None


def grid(s: FlashWgmmaSchedule, p: Problem) -> tuple[int, int, int]:
    """(query blocks, batch x heads, 1)."""
    return (-(-p.length // s.block_m), p.batch, 1)


def tensor_map_specs(s: FlashWgmmaSchedule, p: Problem) -> list[TensorMapSpec]:
    """The tensor maps of q, k and v: (d, rows, batch) innermost first, boxes of 64 of d by the tile's rows."""
    specs = []
    for role, rows, box_rows in ((0, p.length, s.block_m), (1, p.keys, s.block_n), (2, p.keys, s.block_n)):
        specs.append(TensorMapSpec(p.operands[role], p.offsets[role], p.dtype, (p.d, rows, p.batch),
                                   (p.d * 2, p.d * 2 * rows), (ATOM, box_rows, 1)))  # fmt: skip
    return specs


class _Kernel(PipelineBuilder):
    """The ops of the kernel (see the module docstring)."""

    def __init__(self, s: FlashWgmmaSchedule, p: Problem, name: str):
        self.s, self.p, self.name = s, p, name
        self.stages = s.stages
        self.labels = 0
        self.n_key_tiles = -(-p.keys // s.block_n)
        self.atoms = p.d // ATOM

    # --- addresses ---------------------------------------------------------------------------------------------

    def tile(self, stage: SSAValue, which: int) -> SSAValue:
        """The K (``which`` 0) or V (1) tile of ``stage``: after Q, stage by stage, K then V."""
        s, d = self.s, self.p.d
        kv = s.block_n * d * 2
        base = binop(ptx.AddOp, self.q_tile, s.block_m * d * 2 + which * kv)
        return ptx.MadOp(stage, imm(2 * kv), base, "u32", mode="lo").result

    def bar(self, base: SSAValue, stage: SSAValue) -> SSAValue:
        return ptx.MadOp(stage, imm(8), base, "u32", mode="lo").result

    def load(self, dst: SSAValue, tmap: SSAValue, row: SSAValue, rows: int, bh: SSAValue, bar: SSAValue) -> None:
        """Arm ``bar`` with the tile's bytes and copy its boxes (64 of d each, ``rows * 128`` bytes apart)."""
        ptx.MbarrierArriveOp(bar, rows * self.p.d * 2)
        for c in range(self.atoms):
            at = binop(ptx.AddOp, dst, c * rows * SWIZZLE) if c else dst
            ptx.CpAsyncBulkTensorOp(at, tmap, [imm(c * ATOM, "s32"), row, bh], bar)

    # --- the kernel ----------------------------------------------------------------------------------------------

    def build(self) -> ptx.FuncOp:
        s, p = self.s, self.p
        func = ptx.FuncOp(self.name, [ptx.TENSOR_MAP] * 3 + ["u64"] * p.args, maxntid=(s.threads, 1, 1))
        specs = tensor_map_specs(s, p)
        func.attributes[TENSOR_MAPS_ATTR] = DictionaryAttr({str(i): spec.attr() for i, spec in enumerate(specs)})
        with ImplicitBuilder(func.body):
            bars = 1 + 3 * s.stages  # Q full; K full, V full, empty per stage
            ptx.SharedOp(f"{self.name}_bars", 8 * bars, 8)
            self.maps = [ptx.CvtaOp(ptx.ParamAddrOp(a).result, "param", to=False).result for a in func.args[:3]]
            pointers = []
            for role in (3, 4) if p.lse_dtype is not None else (3,):
                ptr = ptx.CvtaOp(ptx.LdParamOp(func.args[3 + p.operands[role]]).result).result
                if p.offsets[role]:
                    ptr = ptx.AddOp(ptr, imm(p.offsets[role], "s64"), "s64").result
                pointers.append(ptr)
            self.out_ptr, self.lse_ptr = pointers[0], pointers[-1]
            tid = ptx.SregOp("tid.x").result
            self.q_full = ptx.SharedAddrOp(f"{self.name}_bars").result
            self.k_full = binop(ptx.AddOp, self.q_full, 8)
            self.v_full = binop(ptx.AddOp, self.q_full, 8 + 8 * s.stages)
            self.empty = binop(ptx.AddOp, self.q_full, 8 + 16 * s.stages)
            dyn = ptx.SharedAddrOp(DYNAMIC_SHARED).result
            self.q_tile = binop(ptx.AndOp, binop(ptx.AddOp, dyn, ALIGN - 1), -ALIGN & 0xFFFFFFFF, "b32")
            self.true = ptx.SetpOp("eq", tid, tid).result
            self.false = ptx.SetpOp("ne", tid, tid).result
            done_init = self.label("INIT_DONE")
            ptx.BraOp(done_init, guard=ptx.SetpOp("eq", tid, imm(0)).result, negate=True)
            for i in range(bars):
                ptx.MbarrierInitOp(binop(ptx.AddOp, self.q_full, 8 * i), s.consumers if i > 2 * s.stages else 1)
            ptx.FenceProxyAsyncOp()
            ptx.LabelOp(done_init)
            ptx.BarSyncOp(0)
            bx: SSAValue = ptx.SregOp("ctaid.x").result
            if p.causal:  # the longest query blocks first
                bx = binop(ptx.SubOp, binop(ptx.SubOp, ptx.SregOp("nctaid.x").result, 1), bx)
            self.bh = ptx.SregOp("ctaid.y").result
            self.row0 = binop(ptx.MulOp, bx, s.block_m, mode="lo")
            self.n_tiles: SSAValue = imm(self.n_key_tiles)
            if p.causal:  # key tiles up to the block's last row
                last = binop(ptx.DivOp, binop(ptx.AddOp, self.row0, s.block_m - 1), s.block_n)
                self.n_tiles = binop(ptx.MinOp, binop(ptx.AddOp, last, 1), self.n_tiles)
            wg = binop(ptx.ShrOp, tid, 7)
            consumers = self.label("CONSUMERS")
            exit_label = self.label("EXIT")
            ptx.BraOp(consumers, guard=ptx.SetpOp("eq", wg, imm(0)).result, negate=True)
            ptx.SetmaxnregOp("dec", s.producer_regs)
            ptx.BraOp(exit_label, guard=ptx.SetpOp("ne", tid, imm(0)).result)
            self.produce()
            ptx.BraOp(exit_label)
            ptx.LabelOp(consumers)
            ptx.SetmaxnregOp("inc", s.consumer_regs)
            self.consume(binop(ptx.SubOp, wg, 1), binop(ptx.AndOp, tid, WARPGROUP - 1, "b32"))
            ptx.LabelOp(exit_label)
            ptx.RetOp()
        return func

    def produce(self) -> None:
        s = self.s
        self.load(self.q_tile, self.maps[0], self.row0, s.block_m, self.bh, self.q_full)
        stage, phase, kt = imm(0), imm(0), imm(0)
        top = self.label("P_LOOP")
        ptx.LabelOp(top)
        self.wait(self.bar(self.empty, stage), binop(ptx.XorOp, phase, 1, "b32"))  # fresh: the phase before 0 is done
        key0 = binop(ptx.MulOp, kt, s.block_n, "s32", mode="lo")
        for which, full in ((0, self.k_full), (1, self.v_full)):
            self.load(self.tile(stage, which), self.maps[1 + which], key0, s.block_n, self.bh, self.bar(full, stage))
        ptx.AssignOp(kt, binop(ptx.AddOp, kt, 1))
        self.advance(stage, phase)
        ptx.BraOp(top, guard=ptx.SetpOp("lt", kt, self.n_tiles).result)

    def consume(self, consumer: SSAValue, local: SSAValue) -> None:
        s, p = self.s, self.p
        bn, d = s.block_n, p.d
        warp, lane = binop(ptx.ShrOp, local, 5), binop(ptx.AndOp, local, 31, "b32")
        g, t = binop(ptx.ShrOp, lane, 2), binop(ptx.AndOp, lane, 3, "b32")
        first_row = ptx.MadOp(consumer, imm(64), self.row0, "u32", mode="lo").result  # the warpgroup's first row
        rows: list[SSAValue] = [ptx.MadOp(warp, imm(16), binop(ptx.AddOp, first_row, g), "u32", mode="lo").result]
        rows.append(binop(ptx.AddOp, rows[0], 8))
        c2 = ptx.MovOp(p.scale * LOG2E, "f32").result
        ninf = ptx.MovOp(-math.inf, "f32").result
        zero = ptx.MovOp(0.0, "f32").result
        m: list[SSAValue] = [ptx.MovOp(-math.inf, "f32").result for _ in range(2)]
        lsum: list[SSAValue] = [ptx.MovOp(0.0, "f32").result for _ in range(2)]
        o: list[SSAValue] = [ptx.MovOp(0.0, "f32").result for _ in range(d // 2)]
        sacc: list[SSAValue] = [ptx.MovOp(0.0, "f32").result for _ in range(bn // 2)]
        q_rows = ptx.MadOp(consumer, imm(64 * SWIZZLE), self.q_tile, "u32", mode="lo").result
        q_desc = [smem_descriptor(binop(ptx.AddOp, q_rows, c * s.block_m * SWIZZLE), 16) for c in range(self.atoms)]
        col_t = binop(ptx.ShlOp, t, 1, "b32")
        self.wait(self.q_full, imm(0))
        stage, phase, kt, previous = imm(0), imm(0), imm(0), imm(0)
        arrive = ptx.SetpOp("eq", local, imm(0)).result
        top = self.label("C_LOOP")
        ptx.LabelOp(top)
        # S = Q K^T
        k_tile = self.tile(stage, 0)
        self.wait(self.bar(self.k_full, stage), phase)
        k_desc = [smem_descriptor(binop(ptx.AddOp, k_tile, c * bn * SWIZZLE), 16) for c in range(self.atoms)]
        ptx.WgmmaFenceOp()
        for kk in range(d // WGMMA_K):
            atom, step = divmod(kk, ATOM // WGMMA_K)  # 16 of d: 32 bytes along a 128-byte row (>> 4: 2)
            da, db = q_desc[atom], k_desc[atom]
            if step:
                da = ptx.AddOp(da, imm(2 * step, "b64"), "s64").result
                db = ptx.AddOp(db, imm(2 * step, "b64"), "s64").result
            ptx.WgmmaMmaAsyncOp(bn, "bf16", sacc, da, db, self.false if kk == 0 else self.true)
        ptx.WgmmaCommitGroupOp()
        ptx.WgmmaWaitGroupOp(0)  # S, and the previous tile's P V (left in flight while S was issued)
        self.release(previous, ptx.AndOp(arrive, ptx.SetpOp("ne", kt, imm(0)).result, "pred").result)
        self.mask(kt, first_row, rows, col_t, sacc, ninf)
        # the online softmax: rows g (registers 4j, 4j+1) and g + 8 (4j+2, 4j+3), each over a quad's 4 lanes
        probs: list[SSAValue] = list(sacc)
        for h in (0, 1):
            mine = [sacc[4 * j + 2 * h + e] for j in range(bn // 8) for e in (0, 1)]
            mx = mine[0]
            for x in mine[1:]:
                mx = ptx.MaxOp(mx, x, "f32").result
            for off in (1, 2):
                mx = ptx.MaxOp(mx, ptx.ShflOp("bfly", mx, off, 31).result, "f32").result
            m_new = ptx.MaxOp(m[h], mx, "f32").result
            # a row with no key yet (all -inf) subtracts 0, so that exp(-inf - 0) = 0 and not NaN
            mu = ptx.SelpOp(zero, m_new, ptx.SetpOp("eq", m_new, ninf).result, "f32").result
            neg = ptx.NegOp(ptx.MulOp(mu, c2, "f32", mode="rn").result).result
            alpha = ptx.Ex2Op(ptx.FmaOp(m[h], c2, neg, "f32", rnd="rn").result, approx=True, ftz=True).result
            ptx.AssignOp(m[h], m_new)
            total = ptx.MulOp(lsum[h], alpha, "f32", mode="rn").result
            for j in range(bn // 8):
                for e in (0, 1):
                    i = 4 * j + 2 * h + e
                    x = ptx.FmaOp(sacc[i], c2, neg, "f32", rnd="rn").result
                    probs[i] = ptx.Ex2Op(x, approx=True, ftz=True).result
                    total = ptx.AddOp(probs[i], total, "f32", rnd="rn").result
            ptx.AssignOp(lsum[h], total)
            for j in range(d // 8):
                for e in (0, 1):
                    ptx.AssignOp(o[4 * j + 2 * h + e], ptx.MulOp(o[4 * j + 2 * h + e], alpha, "f32", mode="rn").result)
        # P (bf16) in A-fragment registers: k16 chunk c is S columns 16c.., accumulator registers 8c..8c+7
        frags = [
            [ptx.CvtPairOp(probs[8 * c + 2 * r + 1], probs[8 * c + 2 * r]).result for r in range(4)]
            for c in range(bn // WGMMA_K)
        ]
        # O += P V
        v_tile = self.tile(stage, 1)
        self.wait(self.bar(self.v_full, stage), phase)
        v_desc = smem_descriptor(v_tile, bn * SWIZZLE)  # M/N-major: 64-wide atoms of d, bn * 128 bytes apart
        ptx.WgmmaFenceOp()
        for c in range(bn // WGMMA_K):
            db = ptx.AddOp(v_desc, imm(128 * c, "b64"), "s64").result if c else v_desc  # 16 keys: 2048 bytes
            ptx.WgmmaMmaAsyncRsOp(d, "bf16", o, frags[c], db, self.true, trans_b=1)
        ptx.WgmmaCommitGroupOp()
        ptx.AssignOp(previous, stage)
        ptx.AssignOp(kt, binop(ptx.AddOp, kt, 1))
        self.advance(stage, phase)
        ptx.BraOp(top, guard=ptx.SetpOp("lt", kt, self.n_tiles).result)
        ptx.WgmmaWaitGroupOp(0)
        self.release(previous, arrive)
        self.epilogue(rows, col_t, t, m, lsum, o, zero, ninf)

    def release(self, stage: SSAValue, guard: SSAValue) -> None:
        """One arrival per consumer warpgroup (``guard``) on ``stage``'s empty mbarrier, once its K and V tiles are
        read: the producer may refill it."""
        released = self.label("RELEASED")
        ptx.BraOp(released, guard=guard, negate=True)
        ptx.MbarrierArriveOp(self.bar(self.empty, stage))
        ptx.LabelOp(released)

    def mask(self, kt: SSAValue, first_row: SSAValue, rows: list[SSAValue], col_t: SSAValue, sacc: list[SSAValue],
             ninf: SSAValue) -> None:  # fmt: skip
        """-inf at the keys past S and (causal) after the row, on the tiles that have such keys (a branch taken by
        a whole warpgroup: the last key tile when S is ragged, the diagonal tiles when causal)."""
        s, p = self.s, self.p
        bn = s.block_n
        if not p.causal and p.keys % bn == 0:
            return
        key0 = binop(ptx.MulOp, kt, bn, mode="lo")
        end = binop(ptx.AddOp, key0, bn)
        need: SSAValue = ptx.SetpOp("gt", end, imm(p.keys)).result if p.keys % bn else self.false
        if p.causal:  # some key of the tile after the warpgroup's first row
            need = ptx.OrOp(need, ptx.SetpOp("gt", end, binop(ptx.AddOp, first_row, 1)).result, "pred").result
        done = self.label("MASKED")
        ptx.BraOp(done, guard=need, negate=True)
        col0 = binop(ptx.AddOp, key0, col_t)
        for j in range(bn // 8):
            for e in (0, 1):
                col = binop(ptx.AddOp, col0, 8 * j + e)
                ok = ptx.SetpOp("lt", col, imm(p.keys)).result
                for h in (0, 1):
                    keep: SSAValue = ok
                    if p.causal:
                        keep = ptx.AndOp(ok, ptx.SetpOp("le", col, rows[h]).result, "pred").result
                    i = 4 * j + 2 * h + e
                    ptx.AssignOp(sacc[i], ptx.SelpOp(sacc[i], ninf, keep, "f32").result)
        ptx.LabelOp(done)

    def epilogue(self, rows: list[SSAValue], col_t: SSAValue, t: SSAValue, m: list[SSAValue], lsum: list[SSAValue],
                 o: list[SSAValue], zero: SSAValue, ninf: SSAValue) -> None:  # fmt: skip
        p = self.p
        d = p.d
        lead = ptx.SetpOp("eq", t, imm(0)).result
        one = ptx.MovOp(1.0, "f32").result
        base = ptx.MulOp(self.bh, imm(p.length), "u32", mode="lo").result
        lse_size = 4 if p.lse_dtype == "f32" else 2
        for h in (0, 1):
            total = lsum[h]
            for off in (1, 2):
                total = ptx.AddOp(total, ptx.ShflOp("bfly", total, off, 31).result, "f32", rnd="rn").result
            inside = ptx.SetpOp("lt", rows[h], imm(p.length)).result
            den = ptx.SelpOp(one, total, ptx.SetpOp("eq", total, zero).result, "f32").result
            inv = ptx.DivOp(one, den, "f32", mode="rn").result
            flat = binop(ptx.AddOp, base, rows[h])  # (batch x heads) * L + row
            index = ptx.MadOp(flat, imm(d), col_t, "u32", mode="lo").result
            addr = ptx.MadOp(ptx.CvtOp(index, "u64", "u32").result, imm(2, "u64"), self.out_ptr, "u64",
                             mode="lo").result  # fmt: skip
            for j in range(d // 8):
                lo, hi = (ptx.MulOp(o[4 * j + 2 * h + e], inv, "f32", mode="rn").result for e in (0, 1))
                ptx.StOp(addr, ptx.CvtPairOp(hi, lo).result, "b32", offset=16 * j, guard=inside)
            if p.lse_dtype is None:
                continue
            mu = ptx.SelpOp(zero, m[h], ptx.SetpOp("eq", m[h], ninf).result, "f32").result
            log_l = ptx.MulOp(ptx.Lg2Op(total, approx=True).result, ptx.MovOp(LN2, "f32").result, "f32",
                              mode="rn").result  # fmt: skip
            lse = ptx.FmaOp(mu, ptx.MovOp(p.scale, "f32").result, log_l, "f32", rnd="rn").result
            at = ptx.MadOp(ptx.CvtOp(flat, "u64", "u32").result, imm(lse_size, "u64"), self.lse_ptr, "u64",
                           mode="lo").result  # fmt: skip
            value = lse if p.lse_dtype == "f32" else ptx.CvtOp(lse, p.lse_dtype, "f32", rnd="rn").result
            ptx.StOp(at, value, p.lse_dtype if p.lse_dtype == "f32" else "b16",
                     guard=ptx.AndOp(inside, lead, "pred").result)  # fmt: skip


def build_kernel(p: Problem, name: str, s: FlashWgmmaSchedule | None = None) -> ptx.FuncOp:
    """The ``ptx.func`` of the forward of ``p`` (parameters: the tensor maps of q, k, v, then ``p.args`` pointers).
    Its module needs ``matmul_wgmma.dynamic_shared()`` and target ``sm_90a``; launch it on :func:`grid` with
    ``s.threads`` threads and ``s.shared_bytes(p.d)`` bytes of dynamic shared memory. Raises ``ValueError`` for a
    problem it cannot do."""
    s = s or schedule_for(p.d)
    why = unsupported(p)
    if why is not None:
        raise ValueError(f"the {STRATEGY} schedule cannot compute this attention: {why}")
    s.check(p.d)
    return _Kernel(s, p, name).build()


# ---------------------------------------------------------------------------------------------------------------
# Hooks: pg-schedule (the schedule attribute, under the ``attention=flash-wgmma`` override), pg-attention-schedule
# (the forward nest becomes a gpu.launch), pg-to-ptx (the gpu.func becomes the kernel built above)

PROBLEM_ATTR = "pg.flash_wgmma"
"""Attribute of the ``gpu.launch``/``gpu.func`` of a flash-wgmma kernel: the problem's sizes, scale, causality and
types. Its body only names the buffers q, k, v, out and lse (``memref.extract_aligned_pointer_as_index``, in that
order), for ``pg-to-gpu`` to pass them; ``pg-to-ptx`` builds the kernel from this attribute."""

ATTENTION_SCHEDULES = ("auto", STRATEGY)
"""``pg-schedule``'s ``attention`` option: ``auto`` (the attention kind's own choice) or ``flash-wgmma``."""


def check_schedule(name: str) -> str:
    """``name`` if it is an ``attention`` option of ``pg-schedule``; raises ``ValueError`` naming the choices."""
    if name not in ATTENTION_SCHEDULES:
        raise ValueError(f"unknown attention schedule '{name}': expected {' or '.join(ATTENTION_SCHEDULES)}")
    return name


def fallback_reason(k: kernel.FusedOp | kernel.LaunchOp) -> str | None:
    """Why an attention kernel does not take ``flash-wgmma`` (None when it does): it is the forward (out and lse)
    of bf16 q, k, v of head dim 64 or 128 (the value's too), without a mask tensor or dropout. A kernel it does not
    fit keeps the attention kind's own schedule."""
    ops = [o for o in k.body.block.ops if isinstance(o, ATTENTION_OPS)]
    fwd = next((o for o in ops if isinstance(o, pg.ScaledDotProductAttentionOp)), None)
    if fwd is None or any(isinstance(o, pg.AttentionBackwardOp) for o in ops):
        return "not an attention forward"
    if fwd.mask is not None or fwd.dropout is not None:
        return "a mask tensor or dropout"
    if element_of(fwd.query) != bf16 or any(element_of(x) != bf16 for x in (fwd.key, fwd.value)):
        return f"q, k, v of {element_of(fwd.query)}"
    d, ev = shape_of(fwd.query)[-1], shape_of(fwd.value)[-1]
    if d not in HEAD_DIMS or ev != d:
        return f"head dims {d} and {ev}"
    return None


def schedule(k: kernel.FusedOp | kernel.LaunchOp) -> ScheduleAttr | None:
    """``pg-schedule``'s ``#kernel.schedule`` of an attention kernel under ``attention=flash-wgmma``: the
    ``flash-wgmma`` sizes, or None when :func:`fallback_reason` says the kernel keeps its kind's own schedule."""
    if fallback_reason(k) is not None:
        return None
    fwd = next(o for o in k.body.block.ops if isinstance(o, pg.ScaledDotProductAttentionOp))
    s = schedule_for(shape_of(fwd.query)[-1])
    return ScheduleAttr(
        STRATEGY,
        {"block_m": s.block_m, "block_n": s.block_n, "stages": s.stages, "threads": s.threads, "specialised": True},
    )


def _shape(buf: SSAValue) -> tuple[int, ...]:
    t = buf.type
    assert isinstance(t, MemRefType)
    return tuple(t.get_shape())


def schedule_nest(par: scf.ParallelOp, info: DictionaryAttr, buffers: dict[str, SSAValue]) -> None:
    """Replace the forward nest ``par`` (``pg.attention``, roles ``buffers``) by the ``gpu.launch`` of the
    flash-wgmma kernel (see :data:`PROBLEM_ATTR`). Raises ``ValueError`` when it is not a forward the kernel
    computes."""
    # roles: q, k, v, out, the optional lse, and for 16-bit rows the loop stage's f32 accumulator (acc, dropped)
    if info.data["nest"].data != "forward" or set(buffers) - {"lse", "acc"} != {"q", "k", "v", "out"}:  # type: ignore[attr-defined]
        raise ValueError(f"{STRATEGY} computes the forward (out and lse) without mask or dropout")
    *batch, length, d = _shape(buffers["q"])
    keys = _shape(buffers["k"])[-2]
    types = {r: type_name(MemRefType.get_element_type(b.type)) for r, b in buffers.items()}  # type: ignore[arg-type]
    p = Problem(math.prod(batch), length, keys, d, float(info.data["scale"].value.data),  # type: ignore[attr-defined]
                "causal" in info.data, types["q"], types["out"], types.get("lse"))  # fmt: skip
    why = unsupported(p) or (None if types["k"] == types["v"] == p.dtype else "q, k, v of different types")
    if why is not None:
        raise ValueError(f"{STRATEGY} cannot compute this attention: {why}")
    s = schedule_for(d)
    sizes, launch = ptx_kernel_launch(
        par,
        [buffers[r] for r in ("q", "k", "v", "out", "lse") if r in buffers],
        (*grid(s, p), s.threads),
        STRATEGY,
        PROBLEM_ATTR,
        {
            "sizes": ArrayAttr([IntegerAttr(v, i64) for v in (p.batch, p.length, p.keys, p.d)]),
            "scale": FloatAttr(p.scale, f64),
            "types": ArrayAttr([StringAttr(x) for x in (p.dtype, p.out_dtype, p.lse_dtype or "none")]),
            **({"causal": UnitAttr()} if p.causal else {}),
        },
    )
    host = par.parent_block()
    assert host is not None
    # the values the nest computed before it (constants, and bf16 ones rounded from f32) go with it when only it
    # used them: pg-to-gpu takes no arith.truncf at the top level
    before = list(itertools.takewhile(lambda o: o is not par, host.ops))
    outside = {v.owner for o in par.walk() for v in o.operands if v.owner in before}
    replace_nest(par, launch, sizes)
    for op in reversed(before):
        if op in outside and isinstance(op, arith.ConstantOp | arith.TruncFOp) and not op.results[0].uses:
            outside.update(v.owner for v in op.operands)
            host.erase_op(op)


def lower_kernel(func: gpu.FuncOp, target: str) -> ptx.FuncOp | None:
    """The ``ptx.func`` of a flash-wgmma ``gpu.func`` (None for other kernels). Raises ``PassFailedException`` when
    the target is not ``sm_90a``."""
    attr = func.attributes.get(PROBLEM_ATTR)
    if not isinstance(attr, DictionaryAttr):
        return None
    if target != "sm_90a":
        raise PassFailedException(
            f"pg-to-ptx: attention schedule '{STRATEGY}'{where(func)} needs target sm_90a (wgmma.mma_async, "
            f"setmaxnreg); compiling for {target}: pass arch='sm_90a' (pgc --arch=sm_90a)"
        )
    d = attr.data
    batch, length, keys, hd = (x.value.data for x in d["sizes"].data)  # type: ignore[attr-defined]
    dtype, out_dtype, lse_dtype = (x.data for x in d["types"].data)  # type: ignore[attr-defined]
    pointers = [op for op in func.body.block.ops if isinstance(op, memref.ExtractAlignedPointerAsIndexOp)]
    assert len(pointers) == (4 if lse_dtype == "none" else 5), pointers
    places = [buffer_place(op.source, func) for op in pointers] + [(0, 0)] * (5 - len(pointers))
    p = Problem(
        batch, length, keys, hd, float(d["scale"].value.data), "causal" in d,  # type: ignore[attr-defined]
        dtype, out_dtype, None if lse_dtype == "none" else lse_dtype,
        offsets=tuple(off for _, off in places),  # type: ignore[arg-type]
        operands=tuple(i for i, _ in places),  # type: ignore[arg-type]
        args=len(func.body.block.args),
    )  # fmt: skip
    try:
        kernel_op = build_kernel(p, func.sym_name.data)
    except ValueError as e:
        raise PassFailedException(f"pg-to-ptx: {e}{where(func)}") from None
    kernel_op.attributes[SHARED_BYTES_ATTR] = IntegerAttr(schedule_for(hd).shared_bytes(hd), i64)
    kernel_op.location = func.location
    return kernel_op


def build_launch(par: scf.ParallelOp) -> None:
    """``pg-attention-schedule``'s builder for a nest under the ``flash-wgmma`` schedule: :func:`schedule_nest` on
    its ``pg.attention`` info and buffers."""
    info = par.attributes[ATTENTION_ATTR]
    assert isinstance(info, DictionaryAttr)
    schedule_nest(par, info, nest_buffers(par))
