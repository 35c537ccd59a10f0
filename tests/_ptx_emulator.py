"""An emulator of the ``ptx`` dialect, for checking generated kernels on machines without a GPU (tests only).

It runs the IR of a ``ptx.module`` (what ``print_ptx`` prints), thread by thread, with the semantics of PTX ISA 8.0
for the instructions picograd emits: registers hold bit patterns and each instruction reads and writes them through
its type suffix (``.f32``, ``.s64``, ``.u8`` ...); floats round to nearest like the hardware (numpy's float32/float64
arithmetic is IEEE; ``fma`` is exact through ``fractions``); ``cvt`` truncates, saturates and maps NaN to 0 when
converting floats to integers; ``div``/``rem`` on integers truncate toward zero. Every thread is a generator that
stops at ``shfl.sync`` and ``bar.sync``: a block runs until all its live threads wait at a barrier (released
together) or all lanes of a warp wait at the same shuffle (exchanged together); anything else is a deadlock and
raises. Blocks run one after another. Global memory is one byte array; shared memory one per block.

:func:`run_program` runs a ``picograd.driver.gpu_compile.CudaProgram`` (its launch plan: inputs, outputs, poisoned
temps, constants, launches and copies) on numpy inputs and returns the outputs, so that the whole path from the
``pg`` stage to PTX is checked against the numpy executor. Tiny shapes only: about 10**5 instructions a second.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Generator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from picograd.dialects import ptx
from picograd.runtime import cuda

POISON = 0xFF

_F = {"f32": ("<f", np.float32), "f64": ("<d", np.float64)}


def width(t: str) -> int:
    return ptx.TYPE_WIDTH[t]


def to_float(bits: int, t: str) -> Any:
    fmt, typ = _F[t]
    n = width(t) // 8
    return typ(struct.unpack(fmt, (bits & ((1 << (8 * n)) - 1)).to_bytes(n, "little"))[0])


def from_float(value: Any, t: str) -> int:
    fmt, typ = _F[t]
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
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if t == "f64":
        try:
            return np.float64(float(exact))
        except OverflowError:
            return np.float64(math.copysign(math.inf, exact))
    return _round_f32(exact)


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


def _cvt(value_bits: int, d: str, a: str, rnd: str | None) -> int:
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


class Emulator:
    """Runs kernels of one ``ptx.module`` on a :class:`Heap`."""

    def __init__(self, module: ptx.ModuleOp, heap: Heap | None = None) -> None:
        self.module = module
        self.heap = heap or Heap()
        self.funcs = {f.sym_name.data: f for f in module.funcs()}
        self.instructions = 0

    # --- launching --------------------------------------------------------------------------------------------

    def launch(self, name: str, grid: Sequence[int], block: Sequence[int], params: Sequence[int]) -> None:
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
                size += s.size.value.data if s.size is not None else 0
            smem = bytearray([POISON]) * max(size, 1)
            self.run_block(ops, labels, param_bits, b[::-1], (gx, gy, gz), bx, layout, smem)

    def run_block(self, ops, labels, params, ctaid, nctaid, ntid, layout, smem) -> None:
        threads = [self.thread(ops, labels, params, ctaid, nctaid, t, ntid, layout, smem) for t in range(ntid)]
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
            if not progressed:
                raise EmulationError(f"deadlock: threads wait at {sorted({str(state[i][0]) for i in live})}")

    # --- one thread -------------------------------------------------------------------------------------------

    def thread(self, ops, labels, params, ctaid, nctaid, tid, ntid, layout, smem) -> Generator[Any, Any, None]:
        regs: dict[SSAValue, int] = {}
        heap = self.heap.data
        pc = 0
        n = len(ops)

        def get(v: SSAValue) -> int:
            try:
                return regs[v]
            except KeyError:
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
                case ptx.LdParamOp():
                    regs[op.result] = params[op.param]
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
                case ptx.CpAsyncOp():
                    # Done at once: completing early is one of the orders cp.async allows.
                    size = op.size.value.data
                    dst = get(op.dst) + (op.dst_offset.value.data if op.dst_offset is not None else 0)
                    src = get(op.src) + (op.src_offset.value.data if op.src_offset is not None else 0)
                    valid = get(op.src_size)
                    if dst % size or src % size or valid > size:
                        raise EmulationError(f"cp.async of {size} bytes: misaligned, or src-size {valid}")
                    smem[dst : dst + size] = bytes(heap[src : src + valid]) + bytes(size - valid)
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
                case ptx.RcpOp():
                    return write(_F[t][1](1.0) / vals[0], t)
        raise EmulationError(f"no emulation of {op.name} ({op.opcode})")


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
            emu.launch(step.kernel, grid, block, [addrs[a] for a in step.args])
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
