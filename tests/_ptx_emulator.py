"""An emulator of the ``ptx`` dialect, for checking generated kernels on machines without a GPU (tests only).

It runs the IR of a ``ptx.module`` (what ``print_ptx`` prints), thread by thread, with the semantics of PTX ISA 8.0
for the instructions picograd emits: registers hold bit patterns and each instruction reads and writes them through
its type suffix (``.f32``, ``.s64``, ``.u8`` ...); floats round to nearest like the hardware (numpy's float32/float64
arithmetic is IEEE; ``fma`` is exact through ``fractions``); ``cvt`` truncates, saturates and maps NaN to 0 when
converting floats to integers, and ``cvt.rna.tf32.f32``/``cvt.rn.tf32.f32`` round to tf32 (:func:`tf32_rna`,
:func:`tf32_rn`); ``div``/``rem`` on integers truncate toward zero. Every thread is a generator that
stops at ``shfl.sync`` and ``bar.sync``: a block runs until all its live threads wait at a barrier (released
together) or all lanes of a warp wait at the same shuffle (exchanged together); anything else is a deadlock and
raises. Blocks run one after another. Global memory is one byte array; shared memory one per block.

Tensor cores and Hopper's asynchronous copies (PTX ISA 8.0 sections 9.7.13, 9.7.14, 9.7.8.24, 9.7.12.15):

- ``ldmatrix``/``stmatrix``/``mma.sync`` are warp collectives (all 32 lanes at the same instruction), with the
  fragment layouts of :func:`fragment` (the ``mma.sync`` one is the layout verified on an H200 in
  ``../shared/reference/cuda/``); products are exact and sums are rounded once to f32 per instruction.
- ``wgmma.mma_async``/``commit_group``/``wait_group`` are warpgroup collectives (128 threads). An mma only queues;
  ``wait_group`` runs the finished groups, reading A and B from shared memory *then* (through the descriptors'
  address, leading/stride byte offsets and swizzle mode, :func:`wgmma_operand`) and writing the accumulators back;
  reading an accumulator in between is an error. K-major operands, and swizzled M/N-major ones (imm-trans 1);
  A may come from registers instead (``wgmma_mma_async_rs``: the four ``.b32`` of each thread captured at issue,
  laid out by :func:`wgmma_a_fragment`), and its registers then need ``wgmma.fence`` like the accumulators.
- ``cp.async.bulk.tensor`` copies the box that a :class:`TensorMap` (registered with :meth:`Emulator.tensor_map`)
  describes, swizzled as :func:`swizzle` says; it lands when a thread waits on its mbarrier after all arrivals,
  so reading the tile without waiting sees old bytes. ``mbarrier`` objects count arrivals and transaction bytes
  per phase (section 9.7.12.15); ``try_wait.parity`` blocks the thread until the phase it means is complete (too
  many arrivals, more bytes than expected, or a wait that never completes are errors). The parity is one bit of the
  phase number, and the ISA allows a parity wait only for the current or the immediately preceding phase: the
  emulator follows what each thread knows of each mbarrier (its own waits, and what other threads knew when they
  arrived on a phase it waited for, or met it at ``bar.sync``), reads the phase a wait means from that and the
  parity, and raises on a wait that the hardware would alias to another phase (:meth:`Block.wait_phase`).
- Async proxy: shared memory that a thread wrote with ordinary stores (``st.shared``, ``stmatrix``, ``cp.async``)
  and wgmma reads needs ``fence.proxy.async`` by that thread first; otherwise wgmma raises.

:func:`run_program` runs a ``picograd.driver.gpu_compile.CudaProgram`` (its launch plan: inputs, outputs, poisoned
temps, constants, launches and copies) on numpy inputs and returns the outputs, so that the whole path from the
``pg`` stage to PTX is checked against the numpy executor (tensor-map arguments, ``cuda.TensorMap``, registered as
the runtime would encode them). Tiny shapes only: about 10**5 instructions a second.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import ml_dtypes
import numpy as np
from xdsl.ir import SSAValue

from picograd.dialects import ptx
from picograd.runtime import cuda

POISON = 0xFF

_F = {
    "f32": ("<f", np.float32),
    "f64": ("<d", np.float64),
    "f16": ("<e", np.float16),
    "bf16": ("", ml_dtypes.bfloat16),  # no struct code: through a numpy view of the bits
}


def width(t: str) -> int:
    return ptx.TYPE_WIDTH[t]


def to_float(bits: int, t: str) -> Any:
    fmt, typ = _F[t]
    if t == "bf16":
        return np.array([bits & 0xFFFF], dtype=np.uint16).view(typ)[0]
    n = width(t) // 8
    return typ(struct.unpack(fmt, (bits & ((1 << (8 * n)) - 1)).to_bytes(n, "little"))[0])


def from_float(value: Any, t: str) -> int:
    fmt, typ = _F[t]
    if t == "bf16":  # ml_dtypes rounds to nearest even (from the f32 value: one rounding, as cvt.rn.bf16.f32)
        return int(np.array([np.float32(value)]).astype(typ).view(np.uint16)[0])
    return int.from_bytes(struct.pack(fmt, typ(value)), "little")


def read(bits: int, t: str) -> Any:
    """The value of a register's bits as PTX type ``t``."""
    if t == "pred":
        return bool(bits)
    if t in _F:
        return to_float(bits, t)
    w = width(t)
    v = bits & ((1 << w) - 1)
    if t[0] == "s" and v >> (w - 1):
        v -= 1 << w
    return v


def write(value: Any, t: str) -> int:
    """The bits of ``value`` as PTX type ``t`` (integers wrap)."""
    if t == "pred":
        return int(bool(value))
    if t in _F:
        return from_float(value, t)
    return int(value) & ((1 << width(t)) - 1)


def _fma(a: Any, b: Any, c: Any, t: str) -> Any:
    _, typ = _F[t]
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        with np.errstate(all="ignore"):
            return typ(np.float64(a) * np.float64(b) + np.float64(c))
    if t == "f32":
        return _fma_f32(float(a), float(b), float(c))
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if t == "f64":
        try:
            return np.float64(float(exact))
        except OverflowError:
            return np.float64(math.copysign(math.inf, exact))
    return _round_f32(exact)


def _fma_f32(a: float, b: float, c: float) -> np.float32:
    """``fma.rn.f32`` of finite ``a``, ``b``, ``c``: ``a * b`` is exact in float64 (24 + 24 bits), the sum is
    rounded to odd in float64 (its rounding error from the TwoSum identity; an inexact sum gets an odd last bit),
    and rounding that to float32 is then correct, since 53 >= 24 + 2 bits (Boldo and Melquiond, "Emulation of FMA and
    correctly rounded sums: proved algorithms using rounding to odd", IEEE Trans. Computers 2008)."""
    p = a * b
    s = p + c
    v = s - p
    err = (p - (s - v)) + (c - v)
    if err != 0.0 and not struct.unpack("<q", struct.pack("<d", s))[0] & 1:
        s = math.nextafter(s, math.inf if err > 0.0 else -math.inf)
    with np.errstate(over="ignore"):
        return np.float32(s)


def _round_f32(x: Fraction) -> np.float32:
    """``x`` correctly rounded to float32 (no double rounding through float64)."""
    if x == 0:
        return np.float32(0.0)
    sign = -1 if x < 0 else 1
    a = abs(x)
    e = math.floor(math.log2(a))
    if Fraction(2) ** e > a:
        e -= 1
    if Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, -126)
    ulp = Fraction(2) ** (e - 23)
    q, r = divmod(a, ulp)
    if r * 2 > ulp or (r * 2 == ulp and q % 2 == 1):
        q += 1
    value = float(q * ulp)
    with np.errstate(over="ignore"):
        return np.float32(sign * value)


def _float_minmax(a: Any, b: Any, is_max: bool, nan: bool, typ: Any) -> Any:
    if np.isnan(a) or np.isnan(b):
        if nan or (np.isnan(a) and np.isnan(b)):
            return typ(np.nan)
        return b if np.isnan(a) else a
    if a == b == 0:
        neg_a = math.copysign(1.0, float(a)) < 0
        return (b if neg_a else a) if is_max else (a if neg_a else b)
    return max(a, b) if is_max else min(a, b)


def tf32_rna(bits: int) -> int:
    """``cvt.rna.tf32.f32`` of an f32's bits (PTX ISA 8.0 section 9.7.8.21): round to the nearest tf32 (10
    mantissa bits), ties away from zero, the low 13 bits cleared; an infinity stays, a NaN stays a NaN, and a
    magnitude that rounds past the largest finite tf32 becomes an infinity (the carry reaches the exponent)."""
    magnitude, sign = bits & 0x7FFFFFFF, bits & 0x80000000
    if magnitude > 0x7F800000:  # NaN: keep it one (quiet) after clearing the low bits
        return sign | (magnitude & 0xFFFFE000) | 0x00400000
    if magnitude == 0x7F800000:
        return bits
    return sign | ((magnitude + 0x1000) & 0xFFFFE000)


def tf32_rn(bits: int) -> int:
    """``cvt.rn.tf32.f32`` of an f32's bits (PTX ISA 8.0 section 9.7.8.21, sm_90+): round to the nearest tf32, ties
    to the even one, the low 13 bits cleared; infinities stay, a NaN stays a NaN, and a magnitude that rounds past
    the largest finite tf32 becomes an infinity."""
    magnitude, sign = bits & 0x7FFFFFFF, bits & 0x80000000
    if magnitude >= 0x7F800000:
        return tf32_rna(bits)
    odd = (magnitude >> 13) & 1
    return sign | ((magnitude + 0xFFF + odd) & 0xFFFFE000)


def _cvt(value_bits: int, d: str, a: str, rnd: str | None) -> int:
    if d == "tf32":  # the verifier allows only cvt.rna.tf32.f32 and cvt.rn.tf32.f32
        return (tf32_rn if rnd == "rn" else tf32_rna)(value_bits & 0xFFFFFFFF)
    if a in _F and d in _F:
        x = to_float(value_bits, a)
        if d == a:
            f = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil, None: lambda v: v}[rnd]
            return write(f(x), d)
        with np.errstate(over="ignore"):
            return write(_F[d][1](x), d)
    if a in _F:  # float -> int
        x = to_float(value_bits, a)
        if np.isnan(x):
            return 0
        f = {"rni": np.rint, "rzi": np.trunc, "rmi": np.floor, "rpi": np.ceil}[rnd or "rzi"]
        w = width(d)
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if d[0] == "s" else (0, (1 << w) - 1)
        v = f(np.float64(x))
        if np.isinf(v):
            v = hi if v > 0 else lo
        return write(min(max(int(v), lo), hi), d)
    x = read(value_bits, a)
    if d in _F:
        if d == "f64":
            return write(float(x), d)
        return write(_round_f32(Fraction(int(x))), d)
    return write(x, d)


class Heap:
    """Global memory: one growing byte array; buffer addresses are 256-byte aligned and start at 0x1000."""

    def __init__(self) -> None:
        self.data = bytearray(0x1000)

    def alloc(self, nbytes: int, fill: int = 0) -> int:
        addr = (len(self.data) + 255) // 256 * 256
        self.data.extend(bytes(addr - len(self.data)))
        self.data.extend(bytes([fill]) * max(nbytes, 1))
        return addr

    def put(self, addr: int, array: np.ndarray) -> None:
        raw = np.ascontiguousarray(array).tobytes()
        self.data[addr : addr + len(raw)] = raw

    def get(self, addr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = math.prod(shape) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.data[addr : addr + n]), dtype=dtype).reshape(shape).copy()


class EmulationError(RuntimeError):
    pass


# --- tensor cores, TMA and mbarriers (PTX ISA 8.0 sections 9.7.13, 9.7.14, 9.7.8.24, 9.7.12.15) ---------------------
#
# Fragment layouts of mma.sync as data: for each (shape, input type) and operand, ``fragment(...)`` gives, for lane
# ``l`` (g = l >> 2, t = l & 3), register ``i`` and element ``h`` of the register (two 16-bit halves, low half first;
# one element for tf32 and f32), the (row, column) of the matrix element it holds (PTX ISA 8.0 section 9.7.13.4.1,
# "Matrix Fragments for mma.m16n8k*"). A is M x K, B is K x N, C/D are M x N.

_LAYOUTS = {
    # 16-bit inputs, k16: a0 = A[g][2t..2t+1], a1 = A[g+8][..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
    ("m16n8k16", "a16"): lambda g, t, i, h: (g + 8 * (i % 2), 2 * t + h + 8 * (i // 2)),
    ("m16n8k16", "b16"): lambda g, t, i, h: (2 * t + h + 8 * i, g),
    ("m16n8k8", "a16"): lambda g, t, i, h: (g + 8 * i, 2 * t + h),
    ("m16n8k8", "b16"): lambda g, t, i, h: (2 * t + h, g),
    # tf32, k8: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]; b0 = B[t][g], b1 = B[t+4][g]
    ("m16n8k8", "atf32"): lambda g, t, i, h: (g + 8 * (i % 2), t + 4 * (i // 2)),
    ("m16n8k8", "btf32"): lambda g, t, i, h: (t + 4 * i, g),
    # f32 accumulators of every shape: d0, d1 = D[g][2t..2t+1], d2, d3 = D[g+8][2t..2t+1]
    ("m16n8", "c"): lambda g, t, i, h: (g + 8 * (i // 2), 2 * t + i % 2),
}


def fragment(shape: str, type_name: str, operand: str) -> np.ndarray:
    """The (row, col) of every fragment element of ``mma.sync.<shape>`` on ``type_name`` inputs: an int array of
    shape (32 lanes, registers, elements per register, 2). ``operand`` is ``"a"``, ``"b"`` or ``"c"`` (C and D)."""
    row = ptx.MMA_SHAPES[(shape, type_name)]
    if operand == "c":
        key, regs, elems = ("m16n8", "c"), row.c_regs, 1
    else:
        kind = "tf32" if type_name == "tf32" else "16"
        key, regs = (shape, operand + kind), row.a_regs if operand == "a" else row.b_regs
        elems = 1 if type_name == "tf32" else 2
    f = _LAYOUTS[key]
    return np.array([[[f(lane >> 2, lane & 3, i, h) for h in range(elems)] for i in range(regs)] for lane in range(32)])


def mma_dims(shape: str) -> tuple[int, int, int]:
    m, n, k = (int(x) for x in shape[1:].replace("n", " ").replace("k", " ").split())
    return m, n, k


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def _unpack(type_name: str, regs: np.ndarray) -> np.ndarray:
    """Values of packed input registers (uint32, shape (..., regs)) as float64, shape (..., regs, elements)."""
    regs = np.asarray(regs, dtype=np.uint32)
    if type_name == "tf32":  # tf32 keeps the top 19 bits: the low 13 mantissa bits are ignored
        return (regs & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)[..., None]
    halves = np.stack([regs & 0xFFFF, regs >> 16], axis=-1).astype(np.uint16)
    if type_name == "bf16":
        return bf16_to_f32(halves).astype(np.float64)
    return halves.view(np.float16).astype(np.float64)


def _to_f32_bits(values: np.ndarray) -> np.ndarray:
    """float64 values rounded once to f32 (round to nearest even), as uint32 bits."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).view(np.uint32)


def mma_sync(op: ptx.MmaOp, lanes: dict[int, tuple[list[int], list[int], list[int]]]) -> dict[int, list[int]]:
    """One warp's ``mma.sync``: gather A, B and C from the lanes' fragments, D = A @ B + C with exact products and
    sums in float64 rounded once to f32 (the hardware's f32 accumulation is at least this accurate to within a few
    f32 ulps; tests compare against float64 with a tolerance), scattered back to the D fragments."""
    shape, t = op.mod("shape") or "", op.mod("atype") or ""
    m, n, k = mma_dims(shape)
    mats = {"a": np.zeros((m, k)), "b": np.zeros((k, n)), "c": np.zeros((m, n))}
    frags = {x: fragment(shape, t, x) for x in "abc"}
    for lane, (a, b, c) in lanes.items():
        for x, regs in (("a", a), ("b", b)):
            vals = _unpack(t, np.array(regs, dtype=np.uint32))
            idx = frags[x][lane]
            mats[x][idx[..., 0], idx[..., 1]] = vals
        idx = frags["c"][lane][:, 0]
        mats["c"][idx[:, 0], idx[:, 1]] = np.array(c, dtype=np.uint32).view(np.float32)
    d = _to_f32_bits(mats["a"] @ mats["b"] + mats["c"])
    out = {}
    for lane in lanes:
        idx = frags["c"][lane][:, 0]
        out[lane] = [int(x) for x in d[idx[:, 0], idx[:, 1]]]
    return out


def ldmatrix_rows(num: int, lanes: dict[int, int]) -> list[list[int]]:
    """The 8 row addresses of each of the ``num`` matrices: threads 8i..8i+7 give those of matrix i."""
    rows = []
    for i in range(num):
        try:
            rows.append([lanes[8 * i + r] for r in range(8)])
        except KeyError:
            raise EmulationError(f"ldmatrix/stmatrix .x{num}: lanes {8 * i}..{8 * i + 7} give matrix {i}") from None
    for addr in (a for r in rows for a in r):
        if addr % 16:
            raise EmulationError(f"ldmatrix/stmatrix row address {addr} is not 16-byte aligned")
    return rows


def ldmatrix(smem: bytearray, num: int, trans: bool, lanes: dict[int, int]) -> dict[int, list[int]]:
    """Lane l gets, in register i, the b16 elements (r, 2c) and (r, 2c+1) (r = l/4, c = l%4) of matrix i, or of its
    transpose with ``.trans`` (PTX ISA 8.0 section 9.7.13.4.15)."""
    rows = ldmatrix_rows(num, lanes)
    mats = [np.array([np.frombuffer(bytes(smem[a : a + 16]), dtype=np.uint16) for a in r]) for r in rows]
    if trans:
        mats = [x.T for x in mats]
    out = {}
    for lane in lanes:
        r, c = lane >> 2, lane & 3
        out[lane] = [int(x[r, 2 * c]) | int(x[r, 2 * c + 1]) << 16 for x in mats]
    return out


def stmatrix(smem: bytearray, num: int, trans: bool, lanes: dict[int, tuple[int, list[int]]]) -> None:
    """The inverse of ``ldmatrix`` (PTX ISA 8.0 section 9.7.13.4.16)."""
    rows = ldmatrix_rows(num, {lane: addr for lane, (addr, _) in lanes.items()})
    for i in range(num):
        x = np.zeros((8, 8), dtype=np.uint16)
        for lane, (_, regs) in lanes.items():
            r, c = lane >> 2, lane & 3
            x[r, 2 * c], x[r, 2 * c + 1] = regs[i] & 0xFFFF, regs[i] >> 16
        if trans:
            x = x.T
        for r, addr in enumerate(rows[i]):
            smem[addr : addr + 16] = x[r].tobytes()


def swizzle(address: int, width: int) -> int:
    """The shared-memory byte address that a swizzled access of ``width`` bytes (32, 64, 128; 0: none) lands at:
    the 16-byte chunk index (address bits 4..) is XORed with bits 7.. (1, 2 or 3 bits): CUTLASS's
    ``Swizzle<3,4,3>`` for 128 bytes, the pattern of TMA's ``CU_TENSOR_MAP_SWIZZLE_128B`` and wgmma's 128-byte
    swizzle mode (PTX ISA 8.0 section 9.7.14.5.1; tiles aligned to 1024 bytes)."""
    if not width:
        return address
    bits = {32: 1, 64: 2, 128: 3}[width]
    return address ^ (((address >> 7) & ((1 << bits) - 1)) << 4)


@dataclass(frozen=True)
class TensorMap:
    """What ``cuTensorMapEncodeTiled`` encodes, as plain data (tests register it with
    :meth:`Emulator.tensor_map`): the global address, element type, ``shape`` and ``box`` innermost first, byte
    ``strides`` of the outer dimensions, and the shared-memory ``swizzle`` (0, 32, 64 or 128 bytes)."""

    address: int
    dtype: np.dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    box: tuple[int, ...]
    swizzle: int = 0

    def copy(self, heap: bytearray, smem: bytearray, dst: int, coords: Sequence[int]) -> int:
        """Copy the box at ``coords`` into shared memory at ``dst`` (zeros outside the tensor); the bytes copied."""
        esize = np.dtype(self.dtype).itemsize
        inner = self.box[0] * esize
        if self.swizzle and (inner > self.swizzle or dst % (8 * self.swizzle)):
            raise EmulationError(
                f"TMA swizzle {self.swizzle}: a box row of {inner} bytes, or a destination {dst} not aligned to the "
                f"{8 * self.swizzle}-byte swizzle pattern"
            )
        if dst % 128:
            raise EmulationError(f"TMA destination {dst} is not 128-byte aligned")
        nbytes = 0
        for outer in itertools.product(*(range(b) for b in self.box[:0:-1])):
            idx = outer[::-1]  # dims 1.. innermost first
            row = bytearray(inner)
            pos = [c + i for c, i in zip(coords[1:], idx, strict=True)]
            if all(0 <= p < s for p, s in zip(pos, self.shape[1:], strict=True)):
                base = self.address + sum(p * s for p, s in zip(pos, self.strides, strict=True))
                for e in range(self.box[0]):
                    x = coords[0] + e
                    if 0 <= x < self.shape[0]:
                        row[e * esize : (e + 1) * esize] = heap[base + x * esize : base + (x + 1) * esize]
            flat = sum(i * math.prod(self.box[: d + 1]) for d, i in enumerate(idx))
            start = dst + flat * esize
            for chunk in range(0, inner, 16):
                at = swizzle(start + chunk, self.swizzle)
                smem[at : at + min(16, inner - chunk)] = row[chunk : chunk + 16]
            nbytes += inner
        return nbytes


Knowledge = dict[int, int]
"""What a thread knows of the mbarriers of its block: for each (by shared address), the latest phase it knows to
have completed (-1, the phase before the first, counts as complete from ``mbarrier.init`` on)."""


def join(into: Knowledge, other: Knowledge) -> None:
    """``into`` learns what ``other`` knows (the later phase of each mbarrier)."""
    for addr, phase in other.items():
        if into.get(addr, -1) < phase:
            into[addr] = phase


@dataclass
class Mbarrier:
    """An mbarrier object (PTX ISA 8.0 section 9.7.12.15.1): arrivals still pending in the current phase, the
    transaction count (expected minus completed bytes), the phase number (0 from ``mbarrier.init``; the current,
    incomplete phase), and the bulk copies that complete on it. A phase completes when its pending arrivals and its
    transaction count are both zero; the next phase then expects ``count`` arrivals again.
    Copies land lazily, when a thread waits on the barrier after all arrivals: reading their destination earlier
    sees old bytes, as on the GPU where the copy may not have landed yet.

    ``released`` is what the threads that arrived in the current phase knew (:data:`Knowledge`; an arrive releases
    it), ``history`` the same for each completed phase: a thread whose wait returns for a phase learns it (acquire).
    """

    count: int
    pending: int
    tx: int = 0
    phase: int = 0
    copies: list[Any] = field(default_factory=list)
    released: Knowledge = field(default_factory=dict)
    history: dict[int, Knowledge] = field(default_factory=dict)

    def settle(self) -> None:
        if self.pending:
            return
        for copy in self.copies:
            self.tx -= copy()
        self.copies.clear()
        if self.tx < 0:
            raise EmulationError(f"bulk copies completed {-self.tx} bytes more than mbarrier.expect_tx announced")
        if self.tx == 0:
            self.history[self.phase] = self.released
            self.released = {}
            self.phase += 1
            self.pending = self.count


def parity_wait_phase(known: int, parity: int) -> int:
    """The phase that ``mbarrier.try_wait.parity`` with ``parity`` means, for a thread that knows phase ``known``
    of the mbarrier complete (its own last wait on it, or what it learnt from other threads through barriers):
    the next phase if ``parity`` is that one's, else ``known`` itself, a wait that returns at once. The parity
    holds one bit of the phase number, so a wait meant for ``known + 2`` reads as ``known`` (and one meant for
    ``known + 3`` as ``known + 1``): this is the most the hardware can tell, and :meth:`Block.wait_phase` checks it
    against the PTX ISA's rule."""
    return known + 1 if (known + 1) % 2 == parity else known


@dataclass
class Block:
    """The shared state of one thread block: shared memory, mbarriers by address, the shared-memory 16-byte chunks
    each thread wrote through the generic proxy since its last ``fence.proxy.async``, the wgmma groups of
    each warpgroup (uncommitted operations, then committed groups, oldest first), and what each thread knows of the
    mbarriers' phases (:data:`Knowledge`)."""

    smem: bytearray
    mbarriers: dict[int, Mbarrier] = field(default_factory=dict)
    unfenced: dict[int, set[int]] = field(default_factory=dict)
    wgmma: dict[int, list[list[Any]]] = field(default_factory=dict)
    wgmma_acc: dict[int, dict[Any, np.ndarray]] = field(default_factory=dict)
    known: dict[int, Knowledge] = field(default_factory=dict)

    def mbarrier(self, addr: int) -> Mbarrier:
        if addr not in self.mbarriers:
            raise EmulationError(f"no mbarrier initialised at shared address {addr}")
        return self.mbarriers[addr]

    def init_mbarrier(self, addr: int, count: int) -> None:
        """``mbarrier.init``: a fresh object in phase 0, of which no thread knows more than the phase before it."""
        self.mbarriers[addr] = Mbarrier(count, count)
        for known in self.known.values():
            known.pop(addr, None)

    def arrive(self, tid: int, addr: int, tx: int) -> int:
        """``mbarrier.arrive`` (``.expect_tx``: ``tx`` bytes) by thread ``tid``; the phase it arrived on. The
        expect-tx raises the phase's transaction count before the arrival counts (PTX ISA 8.0 section
        9.7.12.15.12); the arrival releases what the thread knows to the threads that wait for the phase."""
        bar = self.mbarrier(addr)
        phase = bar.phase
        join(bar.released, self.known.setdefault(tid, {}))
        bar.tx += tx
        bar.pending -= 1
        if bar.pending < 0:
            raise EmulationError("more arrivals on an mbarrier than its phase expects")
        bar.settle()
        return phase

    def wait_phase(self, tid: int, addr: int, parity: int) -> int:
        """The phase that thread ``tid``'s ``mbarrier.try_wait.parity`` on the mbarrier at ``addr`` means
        (:func:`parity_wait_phase`), checked against the PTX ISA 8.0 (section 9.7.12.15.16): a parity wait is valid
        only for the current, incomplete phase (it returns false until that completes) or the immediately preceding
        one (it returns true); the hardware compares one bit, so a wait for any other phase aliases one of those two
        and returns at once or waits for the wrong phase. Raises on a wait that

        - means a phase the thread already knows complete (other than the phase before the first, the idiom of a
          producer's first pass over a ring of empty buffers): the program meant the phase two after it, which the
          parity cannot tell from it, and which the hardware answers at once whenever the phase between is current;
        - means a phase two or more before the current one: the barrier moved on without the thread (a wait meant
          for a phase more than one ahead of what the thread has seen complete reads this way too).
        """
        bar = self.mbarrier(addr)
        known = self.known.setdefault(tid, {}).get(addr, -1)
        phase = parity_wait_phase(known, parity)
        where = f"thread {tid}: mbarrier.try_wait.parity {parity} on the mbarrier at shared address {addr}"
        if phase == known and known >= 0:
            raise EmulationError(
                f"{where} after phase {known} is known complete to it: a wait for phase {known + 2}, two phases "
                f"ahead, which the parity cannot tell from phase {known}: the hardware returns at once while phase "
                f"{known + 1} is current (a parity wait is valid for the current or the immediately preceding phase "
                "only)"
            )
        if phase < bar.phase - 1:
            raise EmulationError(
                f"{where}: the thread knows phase {known} complete, so the parity names phase {phase}, but the "
                f"mbarrier is in phase {bar.phase}. A parity wait is valid for the current or the immediately "
                f"preceding phase only: if it means phase {phase + 2} or later, the wait returns at once in a timing "
                f"where the phase before that is still current (it waits more than one phase past what it has seen "
                f"complete); if it means phase {phase}, the mbarrier moved on without it"
            )
        return phase

    def passed(self, tid: int, addr: int, phase: int) -> None:
        """Thread ``tid``'s wait for ``phase`` of the mbarrier at ``addr`` returned: it knows that phase complete,
        and what the threads that arrived on it knew."""
        known = self.known.setdefault(tid, {})
        join(known, self.mbarrier(addr).history.get(phase, {}))
        if known.get(addr, -1) < phase:
            known[addr] = phase

    def synchronise(self, tids: Sequence[int]) -> None:
        """``bar.sync`` (or another barrier released for all of ``tids`` together): each learns what all knew."""
        union: Knowledge = {}
        for tid in tids:
            join(union, self.known.get(tid, {}))
        for tid in tids:
            self.known[tid] = dict(union)

    def generic_write(self, tid: int, addr: int, nbytes: int) -> None:
        self.unfenced.setdefault(tid, set()).update(range(addr >> 4, (addr + nbytes + 15) >> 4))


def wgmma_operand(block: Block, desc: int, rows: int, trans: int, esize: int) -> np.ndarray:
    """The (rows x 16) operand tile (row = M or N, column = K) that a shared-memory matrix descriptor names, read
    from shared memory (PTX ISA 8.0 section 9.7.14.5.1; the canonical layouts of CUTLASS's ``make_gmma_desc``).
    K-major (imm-trans 0): rows in groups of 8 ``stride`` bytes apart; within a group, no swizzle puts 8x16-byte
    core matrices ``leading`` bytes apart along K, a W-byte swizzle has W-byte rows swizzled by :func:`swizzle`.
    M/N-major (imm-trans 1, swizzled only): each K index is a W-byte row of W/esize consecutive M/N elements (an
    atom), 8 rows of K ``W`` bytes apart, groups of 8 ``stride`` bytes apart, atoms along M/N ``leading`` bytes
    apart; the same swizzle. Raises on an M/N-major operand without swizzle, which this emulator does not model."""
    start, leading = (desc & 0x3FFF) << 4, ((desc >> 16) & 0x3FFF) << 4
    stride, width = ((desc >> 32) & 0x3FFF) << 4, ptx.WGMMA_SWIZZLE[desc >> 62]
    if (desc >> 49) & 7:
        raise EmulationError("wgmma descriptor base offset is not emulated (align tiles to the swizzle pattern)")
    if trans and not width:
        raise EmulationError("wgmma with imm-trans 1 (M/N-major) without swizzle is not emulated")
    per_chunk = 16 // esize
    kdim = 32 // esize  # one instruction's K: 32 bytes (k16 of bf16/f16, k8 of tf32)
    bits = {2: np.uint16, 4: np.uint32}[esize]
    out = np.zeros((rows, kdim), dtype=bits)
    chunks: set[int] = set()

    def chunk(at: int) -> np.ndarray:
        if at % 16 or at + 16 > len(block.smem):
            raise EmulationError(f"wgmma operand chunk at shared address {at}: misaligned or out of range")
        chunks.add(at >> 4)
        return np.frombuffer(bytes(block.smem[at : at + 16]), bits)

    if trans:
        if esize != 2:
            raise EmulationError("wgmma with imm-trans 1 on 32-bit (tf32) operands: PTX allows it for f16/bf16 only")
        atom = width // esize  # M/N elements of one swizzled row
        for k in range(16):
            for r0 in range(0, rows, per_chunk):
                at = swizzle(start + (k // 8) * stride + (k % 8) * width + (r0 // atom) * leading
                             + (r0 % atom) * esize, width)  # fmt: skip
                out[r0 : r0 + per_chunk, k] = chunk(at)[: rows - r0]
    for r in range(rows if not trans else 0):
        for kc in range(2):  # the two 16-byte chunks of a row's 32 bytes of K
            if width:
                at = swizzle(start + (r // 8) * stride + (r % 8) * width + kc * 16, width)
            else:
                at = start + (r // 8) * stride + kc * leading + (r % 8) * 16
            out[r, kc * per_chunk : (kc + 1) * per_chunk] = chunk(at)
    for tid, written in block.unfenced.items():
        if written & chunks:
            raise EmulationError(
                f"wgmma reads shared memory that thread {tid} wrote without fence.proxy.async before it"
            )
    return out


def wgmma_a_fragment(regs: Sequence[Sequence[int]]) -> np.ndarray:
    """The 64x16 A operand (16-bit bit patterns) of a ``wgmma.mma_async`` with A in registers, from the four
    ``.b32`` registers of each of the 128 threads (PTX ISA 8.0 section 9.7.14.4.1): warp w holds rows 16w..16w+15 in
    ``mma.m16n8k16``'s A fragment layout (:func:`fragment`)."""
    layout = fragment("m16n8k16", "bf16", "a")  # (lane, register, half, (row, col))
    out = np.zeros((64, 16), dtype=np.uint16)
    for tid, four in enumerate(regs):
        w, lane = tid // 32, tid % 32
        for i, bits in enumerate(four):
            for h in (0, 1):
                r, c = layout[lane, i, h]
                out[16 * w + r, c] = (bits >> (16 * h)) & 0xFFFF
    return out


def wgmma_accumulator_index(n: int) -> np.ndarray:
    """(row, col) of accumulator register i of thread tid of the warpgroup, for m64nNk16 with f32 accumulators,
    shape (128, N/2, 2) (PTX ISA 8.0 section 9.7.14.4.2, "Register Fragments"): warp w holds rows 16w..16w+15;
    registers 4j..4j+3 cover columns 8j..8j+7 as mma.m16n8's C fragment does."""
    idx = np.zeros((128, n // 2, 2), dtype=np.int64)
    for tid in range(128):
        w, g, t = tid // 32, (tid % 32) >> 2, tid & 3
        for i in range(n // 2):
            idx[tid, i] = (16 * w + g + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2 * t + (i & 1))
    return idx


def wgmma_run(block: Block, group: list[Any], chained: dict[Any, np.ndarray]) -> None:
    """Run committed ``wgmma.mma_async`` operations in order: read A and B from shared memory now (they are read
    asynchronously, any time up to the wait), D = A @ B + scale_d * D in float64 rounded to f32 per instruction."""
    for op, threads in group:
        n, t = op.n, op.mod("atype")
        esize = 4 if t == "tf32" else 2
        idx = wgmma_accumulator_index(n)
        key = tuple(op.acc)
        first = threads[0]
        if isinstance(op, ptx.WgmmaMmaAsyncRsOp):
            scale_a, scale_b, trans_b = op.immediates()
            a = wgmma_a_fragment([th[1] for th in threads])
            shared = 2
        else:
            scale_a, scale_b, trans_a, trans_b = op.immediates()
            a = wgmma_operand(block, first[1], 64, trans_a, esize)
            shared = 1
        b = wgmma_operand(block, first[2], n, trans_b, esize)
        if any(th[shared:] != first[shared:] for th in threads):
            raise EmulationError("wgmma.mma_async: the threads of the warpgroup give different descriptors or scale-d")
        conv = {
            "bf16": lambda x: bf16_to_f32(x).astype(np.float64),
            "f16": lambda x: x.view(np.float16),
            # tf32 from shared memory: the f32 bits as stored (no cvt can round them on the way); the tensor cores
            # use the sign, exponent and top 10 mantissa bits, modelled here as truncating the low 13
            "tf32": lambda x: (x & np.uint32(0xFFFFE000)).view(np.float32),
        }[t]
        av, bv = conv(a).astype(np.float64) * scale_a, conv(b).astype(np.float64) * scale_b
        d = np.zeros((64, n))
        if first[3]:
            if any(th[0] is None for th in threads):
                if key not in chained:
                    raise EmulationError("wgmma.mma_async reads accumulators that were never written")
                d = chained[key].astype(np.float64)
            else:
                for tid, th in enumerate(threads):
                    d[idx[tid, :, 0], idx[tid, :, 1]] = np.array(th[0], dtype=np.uint32).view(np.float32)
        chained[key] = (av @ bv.T + d).astype(np.float32)


class Emulator:
    """Runs kernels of one ``ptx.module`` on a :class:`Heap`."""

    def __init__(self, module: ptx.ModuleOp, heap: Heap | None = None) -> None:
        self.module = module
        self.heap = heap or Heap()
        self.funcs = {f.sym_name.data: f for f in module.funcs()}
        self.instructions = 0
        self.computed: dict[type, bool] = {}  # instruction class -> whether compute() alone emulates it
        self.tensor_maps: dict[int, TensorMap] = {}

    def tensor_map(self, tmap: TensorMap) -> int:
        """Put a tensor map in global memory (128 bytes, 64-byte aligned, as ``cuTensorMapEncodeTiled`` makes
        it); the address to pass to a kernel, whose ``cp.async.bulk.tensor`` then copies what ``tmap`` says."""
        addr = self.heap.alloc(128)
        self.tensor_maps[addr] = tmap
        return addr

    # --- launching --------------------------------------------------------------------------------------------

    def launch(self, name: str, grid: Sequence[int], block: Sequence[int], params: Sequence[int], shmem: int = 0
               ) -> None:  # fmt: skip
        """Run kernel ``name``; ``params`` are the parameters' values (a tensor map parameter: the address
        :meth:`tensor_map` returned), ``shmem`` the bytes of the dynamic shared-memory buffer."""
        func = self.funcs[name]
        ops = list(func.body.block.ops)
        labels = {op.label.data: i for i, op in enumerate(ops) if isinstance(op, ptx.LabelOp)}
        shared = [op for op in [*ops, *self.module.body.block.ops] if isinstance(op, ptx.SharedOp)]
        gx, gy, gz = (tuple(grid) + (1, 1))[:3]
        bx, by, bz = (tuple(block) + (1, 1))[:3]
        if by != 1 or bz != 1:
            raise EmulationError("the emulator runs 1-D blocks only")
        if func.maxntid is not None and bx > int(func.maxntid.get_values()[0]):
            raise EmulationError(f"{name}: block of {bx} threads exceeds .maxntid")
        if len(params) != len(func.args):
            raise EmulationError(f"{name} takes {len(func.args)} parameters, got {len(params)}")
        param_bits = dict(zip(func.args, params, strict=True))
        for b in itertools.product(range(gz), range(gy), range(gx)):
            layout: dict[str, int] = {}
            size = 0
            for s in shared:
                align = s.alignment.value.data
                size = (size + align - 1) // align * align
                layout[s.symbol] = size
                size += s.size.value.data if s.size is not None else shmem
            block_state = Block(bytearray([POISON]) * max(size, 1))
            self.run_block(ops, labels, param_bits, b[::-1], (gx, gy, gz), bx, layout, block_state)

    def run_block(self, ops, labels, params, ctaid, nctaid, ntid, layout, block: Block) -> None:
        threads = [self.thread(ops, labels, params, ctaid, nctaid, t, ntid, layout, block) for t in range(ntid)]
        state: list[Any] = [None] * ntid
        live = set(range(ntid))

        def advance(i: int, value: Any = None) -> None:
            try:
                state[i] = threads[i].send(value)
            except StopIteration:
                state[i] = None
                live.discard(i)

        for i in range(ntid):
            advance(i)
        while live:
            if all(state[i][0] == "bar" for i in live):
                block.synchronise(sorted(live))
                for i in sorted(live):
                    advance(i)
                continue
            progressed = False
            for w in range(0, ntid, 32):
                lanes = [i for i in range(w, min(w + 32, ntid)) if i in live]
                if not lanes or not all(state[i][0] == "shfl" for i in lanes):
                    continue
                op = state[lanes[0]][1]
                if any(state[i][1] is not op for i in lanes):
                    raise EmulationError("lanes of a warp wait at different shuffles")
                if len(lanes) != min(32, ntid - w):
                    raise EmulationError("shfl.sync with exited lanes in the warp")
                values = {i - w: state[i][2] for i in lanes}
                mode, b, c = op.mod("mode"), op.lane.value.data, op.clamp.value.data
                results = {}
                for lane in values:
                    src = {"bfly": lane ^ b, "down": lane + b, "up": lane - b, "idx": b}[mode]
                    ok = 0 <= src <= (c & 31) if mode != "up" else src >= 0
                    results[lane] = values.get(src, values[lane]) if ok else values[lane]
                for i in lanes:
                    advance(i, results[i - w])
                progressed = True
            for i in sorted(live):  # mbarrier.try_wait: released once the phase it means has completed
                if state[i][0] == "mbar":
                    _, _, addr, phase = state[i]
                    bar = block.mbarrier(addr)
                    if bar.phase == phase:  # answer from the current phase first: the earliest legal outcome, so
                        bar.settle()  # that a wait on the wrong parity reads data that has not landed
                    if bar.phase > phase + 1:
                        raise EmulationError(
                            f"thread {i}: phases {phase} and {phase + 1} of the mbarrier at shared address {addr} "
                            f"completed while it waited for phase {phase}: its parity names the current phase "
                            "again, and a thread that polls in between waits for the phase after"
                        )
                    if bar.phase > phase:
                        advance(i, 1)
                        progressed = True
            for size, kind in ((32, "warp"), (128, "warpgroup")):
                for w in range(0, ntid, size):
                    members = [i for i in range(w, min(w + size, ntid)) if i in live]
                    if not members or not all(state[i][0] == kind for i in members):
                        continue
                    op = state[members[0]][1]
                    if any(state[i][1] is not op for i in members):
                        raise EmulationError(f"threads of a {kind} wait at different {op.name} instructions")
                    if len(members) != size:
                        raise EmulationError(f"{op.name} needs the whole {kind} of {size} threads")
                    results = self.collective(block, w // size, op, {i - w: state[i][2] for i in members})
                    for i in members:
                        advance(i, results.get(i - w))
                    progressed = True
            if not progressed:
                raise EmulationError(f"deadlock: threads wait at {sorted({str(state[i][0]) for i in live})}")

    def collective(self, block: Block, index: int, op: Any, payloads: dict[int, Any]) -> dict[int, Any]:
        """Run a warp (``index``: the warp) or warpgroup (``index``: the warpgroup) instruction once for all its
        threads; ``payloads`` and the result map each thread's position in the group to what it gave / gets."""
        match op:
            case ptx.LdmatrixOp():
                return ldmatrix(block.smem, len(op.values), op.mod("trans") is not None, payloads)
            case ptx.StmatrixOp():
                stmatrix(block.smem, len(op.values), op.mod("trans") is not None, payloads)
                for lane in range(8 * len(op.values)):
                    block.generic_write(32 * index + lane, payloads[lane][0], 16)
                return {}
            case ptx.MmaOp():
                return mma_sync(op, payloads)
        groups = block.wgmma.setdefault(index, [[]])  # committed groups, then the open one
        match op:
            case ptx.WgmmaMmaAsyncOp() | ptx.WgmmaMmaAsyncRsOp():
                groups[-1].append((op, [payloads[t] for t in range(128)]))
                return {}
            case ptx.WgmmaCommitGroupOp():
                groups.append([])
                return {}
            case ptx.WgmmaWaitGroupOp():
                chained = block.wgmma_acc.setdefault(index, {})
                done: dict[Any, Any] = {}
                while len(groups) - 1 > op.pending.value.data:
                    group = groups.pop(0)
                    wgmma_run(block, group, chained)
                    done.update({tuple(o.acc): o for o, _ in group})
                still = {v for g in groups for o, _ in g for v in o.acc}
                out: dict[int, Any] = {t: {} for t in range(128)}
                for key, o in done.items():
                    if still.intersection(key):
                        continue
                    bits = chained[key].view(np.uint32)
                    idx = wgmma_accumulator_index(o.n)
                    for t in range(128):
                        out[t].update(zip(key, (int(x) for x in bits[idx[t, :, 0], idx[t, :, 1]]), strict=True))
                return out
        raise EmulationError(f"no emulation of {op.name}")

    # --- one thread -------------------------------------------------------------------------------------------

    THREAD_OPS = (
        ptx.LabelOp, ptx.SharedOp, ptx.BraOp, ptx.RetOp, ptx.BarSyncOp, ptx.ShflOp, ptx.LdParamOp, ptx.ParamAddrOp,
        ptx.CvtaOp, ptx.SregOp, ptx.SharedAddrOp, ptx.MovOp, ptx.AssignOp, ptx.LdOp, ptx.StOp, ptx.LdmatrixOp,
        ptx.StmatrixOp, ptx.MmaOp, ptx.MbarrierInitOp, ptx.MbarrierArriveOp, ptx.MbarrierTryWaitOp,
        ptx.CpAsyncBulkTensorOp, ptx.FenceProxyAsyncOp, ptx.WgmmaFenceOp, ptx.SetmaxnregOp, ptx.WgmmaMmaAsyncOp,
        ptx.WgmmaMmaAsyncRsOp, ptx.WgmmaCommitGroupOp, ptx.WgmmaWaitGroupOp, ptx.CpAsyncOp, ptx.CpAsyncCommitGroupOp,
        ptx.CpAsyncWaitGroupOp, ptx.RedOp, ptx.AtomOp,
    )  # fmt: skip
    """The instructions :meth:`thread` emulates itself (every class its ``match`` names); the others go to
    :meth:`compute`."""

    def thread(self, ops, labels, params, ctaid, nctaid, tid, ntid, layout, block) -> Generator[Any, Any, None]:
        regs: dict[SSAValue, int] = {}
        computed = self.computed
        heap = self.heap.data
        smem = block.smem
        pending_acc: set[SSAValue] = set()
        fenced: dict[SSAValue, int] | None = None  # the registers at the last wgmma.fence
        pc = 0
        n = len(ops)

        def get(v: SSAValue) -> int:
            try:
                return regs[v]
            except KeyError:
                if v in pending_acc:
                    raise EmulationError("a wgmma accumulator is read before wgmma.wait_group") from None
                raise EmulationError(f"register read before it is written (by {v.owner.name})") from None

        def memory(space: str) -> bytearray:
            return smem if space == "shared" else heap

        while pc < n:
            op = ops[pc]
            pc += 1
            self.instructions += 1
            if isinstance(op, ptx.LabelOp | ptx.SharedOp):
                continue
            guard = op.guard_value if isinstance(op, ptx.Instruction) else None
            if guard is not None and bool(get(guard)) == op.guard_negated:
                continue
            cls = type(op)
            plain = computed.get(cls)
            if plain is None:
                plain = computed[cls] = not issubclass(cls, self.THREAD_OPS)
            if plain:  # straight to compute(): the match below tests its ~35 classes through ABCMeta one by one
                regs[op.results[0]] = self.compute(op, get)
                continue
            match op:
                case ptx.BraOp():
                    pc = labels[op.target.data]
                    continue
                case ptx.RetOp():
                    return
                case ptx.BarSyncOp():
                    yield ("bar", op)
                    continue
                case ptx.ShflOp():
                    regs[op.result] = yield ("shfl", op, get(op.source) & 0xFFFFFFFF)
                    continue
                case ptx.LdParamOp() | ptx.ParamAddrOp():
                    regs[op.result] = params[op.param]  # a tensor map parameter: the address Emulator.tensor_map gave
                case ptx.CvtaOp():
                    regs[op.result] = get(op.source)
                case ptx.SregOp():
                    specials = {"tid.x": tid, "ntid.x": ntid, "laneid": tid % 32, "tid.y": 0, "tid.z": 0,
                                "ctaid.x": ctaid[0], "ctaid.y": ctaid[1], "ctaid.z": ctaid[2],
                                "nctaid.x": nctaid[0], "nctaid.y": nctaid[1], "nctaid.z": nctaid[2]}  # fmt: skip
                    regs[op.result] = specials.get(op.register.data, 1)
                case ptx.SharedAddrOp():
                    regs[op.result] = layout[op.symbol.root_reference.data]
                case ptx.MovOp():
                    t = op.instr_type
                    if op.source is not None:
                        regs[op.result] = get(op.source) & ((1 << width(t)) - 1) if t != "pred" else get(op.source)
                    else:
                        regs[op.result] = write(op.immediate, t)
                case ptx.AssignOp():
                    regs[op.dest] = get(op.source)
                case ptx.LdOp():
                    t = op.instr_type
                    addr = get(op.addr) + (op.offset.value.data if op.offset is not None else 0)
                    nb = max(1, width(t) // 8)
                    if addr % (nb * len(op.values)):
                        raise EmulationError(f"misaligned {op.opcode} at byte {addr}")
                    for j, result in enumerate(op.values):
                        at = addr + j * nb
                        raw = int.from_bytes(memory(op.mod("space"))[at : at + nb], "little")
                        value = read(raw, t)
                        regs[result] = write(value, ptx.kind_of(result) if t not in _F else t)
                case ptx.StOp():
                    t = op.instr_type
                    addr = get(op.addr) + (op.offset.value.data if op.offset is not None else 0)
                    nb = max(1, width(t) // 8)
                    if addr % (nb * len(op.values)):
                        raise EmulationError(f"misaligned {op.opcode} at byte {addr}")
                    for j, v in enumerate(op.values):
                        bits = get(v) & ((1 << (8 * nb)) - 1)
                        memory(op.mod("space"))[addr + j * nb : addr + (j + 1) * nb] = bits.to_bytes(nb, "little")
                    if op.mod("space") == "shared":
                        block.generic_write(tid, addr, nb * len(op.values))
                case ptx.LdmatrixOp():
                    addr = get(op.addr) + (op.offset.value.data if op.offset is not None else 0)
                    for result, bits in zip(op.values, (yield ("warp", op, addr)), strict=True):
                        regs[result] = bits
                    continue
                case ptx.StmatrixOp():
                    addr = get(op.addr) + (op.offset.value.data if op.offset is not None else 0)
                    yield ("warp", op, (addr, [get(v) & 0xFFFFFFFF for v in op.values]))
                    continue
                case ptx.MmaOp():
                    payload = tuple([get(v) & 0xFFFFFFFF for v in group] for group in (op.a, op.b, op.c))
                    for result, bits in zip(op.d, (yield ("warp", op, payload)), strict=True):
                        regs[result] = bits
                    continue
                case ptx.MbarrierInitOp():
                    addr = get(op.addr)
                    if addr % 8 or addr + 8 > len(smem):
                        raise EmulationError(f"mbarrier at shared address {addr}: misaligned or out of range")
                    block.init_mbarrier(addr, op.count.value.data)
                    smem[addr : addr + 8] = bytes(8)
                case ptx.MbarrierArriveOp():
                    tx = op.tx_count.value.data if op.tx_count is not None else 0
                    regs[op.state] = block.arrive(tid, get(op.addr), tx)
                case ptx.MbarrierTryWaitOp():
                    addr = get(op.addr)
                    phase = block.wait_phase(tid, addr, get(op.phase_parity) & 1)
                    regs[op.result] = yield ("mbar", op, addr, phase)
                    block.passed(tid, addr, phase)
                    continue
                case ptx.CpAsyncBulkTensorOp():
                    tmap = self.tensor_maps.get(get(op.tmap))
                    if tmap is None:
                        raise EmulationError(f"no tensor map at address {get(op.tmap)} (see Emulator.tensor_map)")
                    coords = [read(get(c), "s32") for c in op.coords]
                    if len(coords) != len(tmap.shape):
                        raise EmulationError(f"{op.opcode} on a tensor map of {len(tmap.shape)} dimensions")
                    dst = get(op.dst)
                    block.mbarrier(get(op.mbar)).copies.append(
                        lambda tmap=tmap, dst=dst, coords=coords: tmap.copy(heap, smem, dst, coords)
                    )
                case ptx.FenceProxyAsyncOp():
                    block.unfenced.pop(tid, None)
                case ptx.WgmmaFenceOp():
                    fenced = dict(regs)
                case ptx.SetmaxnregOp():
                    pass
                case ptx.WgmmaMmaAsyncOp() | ptx.WgmmaMmaAsyncRsOp():
                    # PTX ISA 8.0 section 9.7.14.7.1: wgmma.fence before the first wgmma.mma_async, and between an
                    # ordinary write of an accumulator (or of an A fragment register) and the wgmma that reads it
                    if fenced is None:
                        raise EmulationError("wgmma.mma_async without a wgmma.fence before it")
                    if any(v in regs and fenced.get(v) != regs[v] for v in op.acc):
                        raise EmulationError("a wgmma accumulator was written after the last wgmma.fence")
                    accs = [regs[v] & 0xFFFFFFFF for v in op.acc] if all(v in regs for v in op.acc) else None
                    if isinstance(op, ptx.WgmmaMmaAsyncRsOp):
                        if any(fenced.get(v) != get(v) for v in op.a):
                            raise EmulationError("a wgmma A fragment register was written after the last wgmma.fence")
                        a_arg: Any = tuple(get(v) & 0xFFFFFFFF for v in op.a)
                    else:
                        a_arg = get(op.desc_a)
                    yield ("warpgroup", op, (accs, a_arg, get(op.desc_b), get(op.scale_d)))
                    for v in op.acc:
                        regs.pop(v, None)
                    pending_acc.update(op.acc)
                    continue
                case ptx.WgmmaCommitGroupOp():
                    yield ("warpgroup", op, None)
                    continue
                case ptx.WgmmaWaitGroupOp():
                    written = yield ("warpgroup", op, None)
                    regs.update(written)
                    pending_acc.difference_update(written)
                    if fenced is not None:
                        fenced.update(written)
                    continue
                case ptx.CpAsyncOp():
                    # Done at once: completing early is one of the orders cp.async allows.
                    size = op.size.value.data
                    dst = get(op.dst) + (op.dst_offset.value.data if op.dst_offset is not None else 0)
                    src = get(op.src) + (op.src_offset.value.data if op.src_offset is not None else 0)
                    valid = get(op.src_size)
                    if dst % size or src % size or valid > size:
                        raise EmulationError(
                            f"cp.async of {size} bytes: dst {dst} or src {src} misaligned, or src-size {valid}"
                        )
                    smem[dst : dst + size] = bytes(heap[src : src + valid]) + bytes(size - valid)
                    block.generic_write(tid, dst, size)
                case ptx.CpAsyncCommitGroupOp() | ptx.CpAsyncWaitGroupOp():
                    pass
                case ptx.RedOp() | ptx.AtomOp():
                    t = op.instr_type
                    addr = get(op.addr) + (op.offset.value.data if op.offset is not None else 0)
                    nb = width(t) // 8
                    mem = memory(op.mod("space"))
                    old_bits = int.from_bytes(mem[addr : addr + nb], "little")
                    value = get(op.value if isinstance(op, ptx.RedOp) else op.values[0])
                    if t in _F:
                        new = write(read(old_bits, t) + read(value, t), t)
                    else:
                        new = write(read(old_bits, t) + read(value, t), t)
                    mem[addr : addr + nb] = new.to_bytes(nb, "little")
                    if isinstance(op, ptx.AtomOp):
                        regs[op.result] = old_bits
                case _:
                    regs[op.results[0]] = self.compute(op, get)
        raise EmulationError("fell off the end of the kernel without ret")

    def compute(self, op: Any, get: Any) -> int:  # noqa: C901 - one case per instruction
        match op:
            case ptx.SetpOp():
                t, cmp = op.instr_type, op.mod("cmp")
                a, b = read(get(op.lhs), t), read(get(op.rhs), t)
                if t in _F:
                    unordered = bool(np.isnan(a) or np.isnan(b))
                    base = cmp.rstrip("u") if cmp not in ("num", "nan") else cmp
                    if cmp == "num":
                        return int(not unordered)
                    if cmp == "nan":
                        return int(unordered)
                    if unordered:
                        return int(cmp.endswith("u"))
                    table = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}
                    return int(bool(table[base]))
                if t[0] == "b" or cmp in ("lo", "ls", "hi", "hs"):
                    a, b = get(op.lhs) & ((1 << width(t)) - 1), get(op.rhs) & ((1 << width(t)) - 1)
                table = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b,
                         "lo": a < b, "ls": a <= b, "hi": a > b, "hs": a >= b}  # fmt: skip
                return int(table[cmp])
            case ptx.SelpOp():
                return get(op.a) if get(op.cond) else get(op.b)
            case ptx.CvtOp():
                return _cvt(get(op.source), op.dest_type, op.source_type, op.mod("rnd"))
            case ptx.CvtPairOp():
                half, rnd = op.mod("dtype")[:-2], op.mod("rnd")
                hi, lo = (_cvt(get(v), half, "f32", rnd) & 0xFFFF for v in (op.a, op.b))
                return (hi << 16) | lo
        t = op.instr_type
        vals = [read(get(v), t) for v in op.operands]
        with np.errstate(all="ignore"):
            match op:
                case ptx.AddOp():
                    return write(vals[0] + vals[1], t)
                case ptx.SubOp():
                    return write(vals[0] - vals[1], t)
                case ptx.MulOp() | ptx.MadOp():
                    mode = op.mod("mode")
                    extra = vals[2] if isinstance(op, ptx.MadOp) else 0
                    if t in _F:
                        if isinstance(op, ptx.MadOp):
                            return write(_fma(vals[0], vals[1], vals[2], t), t)
                        return write(vals[0] * vals[1], t)
                    product = int(vals[0]) * int(vals[1])
                    if mode == "hi":
                        return write(product >> width(t), t)
                    if mode == "wide":
                        wt = t[0] + str(2 * width(t))
                        return write(product + (extra if isinstance(op, ptx.MadOp) else 0), wt)
                    return write(product + extra, t)
                case ptx.FmaOp():
                    return write(_fma(vals[0], vals[1], vals[2], t), t)
                case ptx.DivOp():
                    if t in _F:
                        return write(_F[t][1](vals[0]) / _F[t][1](vals[1]), t)
                    a, b = int(vals[0]), int(vals[1])
                    if b == 0:
                        return write(-1, t)
                    q = abs(a) // abs(b)
                    return write(q if (a >= 0) == (b >= 0) else -q, t)
                case ptx.RemOp():
                    a, b = int(vals[0]), int(vals[1])
                    if b == 0:
                        return write(a, t)
                    r = abs(a) % abs(b)
                    return write(r if a >= 0 else -r, t)
                case ptx.MinOp() | ptx.MaxOp():
                    is_max = isinstance(op, ptx.MaxOp)
                    if t in _F:
                        return write(_float_minmax(vals[0], vals[1], is_max, op.mod("nan") is not None, _F[t][1]), t)
                    return write(max(vals) if is_max else min(vals), t)
                case ptx.NegOp():
                    return write(-vals[0], t)
                case ptx.AbsOp():
                    return write(abs(vals[0]), t)
                case ptx.AndOp():
                    return write(vals[0] & vals[1], t) if t != "pred" else int(vals[0] and vals[1])
                case ptx.OrOp():
                    return write(vals[0] | vals[1], t) if t != "pred" else int(vals[0] or vals[1])
                case ptx.XorOp():
                    return write(vals[0] ^ vals[1], t) if t != "pred" else int(vals[0] != vals[1])
                case ptx.NotOp():
                    return write(~vals[0], t) if t != "pred" else int(not vals[0])
                case ptx.ShlOp():
                    n = get(op.rhs) & 0xFFFFFFFF
                    return write(vals[0] << n if n < width(t) else 0, t)
                case ptx.ShrOp():
                    n = get(op.rhs) & 0xFFFFFFFF
                    w = width(t)
                    if t[0] == "s":
                        return write(vals[0] >> min(n, w), t)
                    return write((get(op.lhs) & ((1 << w) - 1)) >> n if n < w else 0, t)
                case ptx.SqrtOp():
                    return write(np.sqrt(vals[0]), t)
                case ptx.Ex2Op():  # .approx is within 2 ulp of 2**x: the exact value rounded once
                    return write(np.exp2(np.float64(vals[0])), t)
                case ptx.Lg2Op():
                    return write(np.log2(np.float64(vals[0])), t)
                case ptx.RcpOp():
                    return write(_F[t][1](1.0) / vals[0], t)
                case ptx.Ex2Op():  # ex2.approx: the exact power, rounded (the hardware is within 2 ulp)
                    return write(np.exp2(vals[0]), t)
        raise EmulationError(f"no emulation of {op.name} ({op.opcode})")


def _tensor_map(emu: Emulator, address: int, tmap: cuda.TensorMap) -> int:
    """Register a launch plan's ``cuda.TensorMap`` of the buffer at ``address``: what the runtime encodes with
    ``cuTensorMapEncodeTiled`` when it binds the buffers."""
    tmap.check()
    dtype = np.dtype(np.float32) if tmap.dtype == "f32" else np.dtype(np.uint16)
    return emu.tensor_map(TensorMap(address + tmap.offset, dtype, tmap.shape, tmap.strides, tmap.box, tmap.swizzle))


def run_program(program: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a ``CudaProgram`` (``picograd.driver.gpu_compile``) on numpy ``inputs``: its launch plan with buffers
    on an emulated heap (temps poisoned with 0xFF bytes, outputs too, so unwritten results show). Raises the
    ``IndexError`` that the program's index checks report (``CudaProgram.index_error``), as the runtime does."""
    from picograd.dialects import ptx as ptx_dialect

    module = program.module
    pmods = [op for op in module.ops if isinstance(op, ptx_dialect.ModuleOp)] if module is not None else []
    emu = Emulator(pmods[0] if pmods else ptx_dialect.ModuleOp())
    heap = emu.heap
    if len(inputs) != len(program.inputs):
        raise EmulationError(f"{program.name} takes {len(program.inputs)} inputs, got {len(inputs)}")
    addrs: dict[Any, int] = {}
    for i, (spec, array) in enumerate(zip([*program.inputs], inputs, strict=True)):
        array = np.asarray(array)
        if array.shape != spec.shape or array.dtype != spec.dtype:
            raise EmulationError(f"input {i}: {array.shape} {array.dtype}, expected {spec.shape} {spec.dtype}")
        addrs[cuda.Input(i)] = heap.alloc(spec.nbytes)
        heap.put(addrs[cuda.Input(i)], array)
    for j, c in enumerate(program.constants):
        slot = cuda.Input(len(program.inputs) + j)
        addrs[slot] = heap.alloc(c.nbytes)
        heap.put(addrs[slot], c)
    for k, spec in enumerate(program.outputs):
        addrs[cuda.Output(k)] = heap.alloc(spec.nbytes, POISON)
    for j, spec in enumerate(program.temps):
        addrs[cuda.Temp(j)] = heap.alloc(spec.nbytes, POISON)
    specs = {**{cuda.Output(k): s for k, s in enumerate(program.outputs)}}
    specs.update({cuda.Input(i): s for i, s in enumerate(program.inputs)})
    for step in program.steps:
        if isinstance(step, cuda.Launch):
            grid = step.grid if isinstance(step.grid, tuple) else (step.grid,)
            block = step.block if isinstance(step.block, tuple) else (step.block,)
            params = [
                _tensor_map(emu, addrs[a.slot], a)
                if isinstance(a, cuda.TensorMap)
                else addrs[a.base] + a.offset
                if isinstance(a, cuda.View)
                else addrs[a]
                for a in step.args
            ]
            emu.launch(step.kernel, grid, block, params, shmem=step.shmem)
        elif isinstance(step, cuda.Copy):
            spec = specs[step.dst]
            heap.put(addrs[step.dst], heap.get(addrs[step.src], spec.shape, spec.dtype))
        else:
            raise EmulationError(f"no emulation of step {step}")
    checks = getattr(program, "checks", ())
    if checks:  # device-side index checks: their error flags, as the runtime reads them after a step
        n_in = len(program.inputs)
        flags = [heap.get(addrs[cuda.Input(n_in + j)], (2,), np.dtype(np.int64)) for j, _ in checks]
        error = program.index_error(flags)
        if error is not None:
            raise error
    return [heap.get(addrs[cuda.Output(k)], s.shape, s.dtype) for k, s in enumerate(program.outputs)]
