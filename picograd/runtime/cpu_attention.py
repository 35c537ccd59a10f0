"""Attention kernels on the CPU: the ``attention`` kind's launches (``pg.scaled_dot_product_attention`` with
``pg.attention_lse``, and ``pg.attention_backward``) run as blocked BLAS products, for ``picograd.runtime.cpu_jit``.

The loop stage's form of these kernels (FlashAttention-2's online softmax, one query row and one key at a time) is
made for GPU threads; on the CPU its per-key scalar work runs at a few GFLOP/s. Here the batch (all leading dims
flattened: ``N`` slices of ``L`` queries and ``S`` keys) is cut into chunks of slices whose ``L x S`` score tiles
fit in the L2 cache (:data:`TILE_BYTES`); each chunk's scores are one batched matmul into a scratch tile, the softmax
runs in place on it (native row kernels, :class:`RowKernels`: two passes over a row where numpy's ufuncs made five),
and the products with the values go straight into the output buffers. So no ``N x L x S`` tensor exists, as in
FlashAttention, and the work is BLAS's. Chunks are spread over the runtime's threads (numpy releases the GIL in
matmuls and ufunc loops, ``ctypes`` in native calls); each thread keeps its own scratch.

- forward (``out``, ``lse``; either may be absent): ``S = scale q k^T`` masked (causal: keys after the query;
  a boolean mask's false entries: ``-inf``; a float mask added), ``m`` the row maximum (0 for a row with every key
  masked), ``P = exp(S - m)``, ``l = rowsum(P)``, ``out = (P v) / l`` (0 where ``l`` is 0), ``lse = m + log l``;
- backward (FlashAttention-2's Algorithm 2 without the tiling of L): ``P = exp(S - lse)`` (0 where ``lse`` is
  ``-inf``), ``dv = P^T dout``, ``dS = scale P (dout v^T - rowsum(dout * out))``, ``dq = dS k``, ``dk = dS^T q``.

Without mask or dropout the slices run in native code instead (``native_attention``, when the runtime gives
``natives``: no Python on the threads). Kernels with dropout, 16-bit ones, or bodies holding other ops, are not
taken (:func:`attention_step` returns None; the caller runs them another way). Algorithms: Dao,
"FlashAttention-2" (2023); the numpy semantics are ``pg_numpy``'s.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from picograd.dialects import pg
from picograd.dialects.kernel import LaunchOp
from picograd.dialects.pg_numpy import numpy_dtype
from picograd.runtime.native_attention import BACKWARD_WORDS, FORWARD_WORDS, STACK_TILE_BYTES, NativeAttention
from picograd.target import llvm_ir

CAUSAL_BLOCKS = 4
"""Row blocks of a causal attention's queries (each against the keys up to its last row)."""

CAUSAL_BLOCK_ROWS = 16
"""Query rows a causal row block has at least: below, the calls of the blocks (per slice, a BLAS call each) cost
more than the half of the products they save (a names transformer's 16 x 16 scores of 128 slices: a forward's
products 34 us in one block, 77 us in four; 64 x 64 scores of 48 slices: 195 us in one, 150 in four)."""

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The element types taken here (bf16/f16 attention runs as the numpy executor's kernels do)."""

TRANSPOSED_COPY_SCORES = 1 << 14
"""Score elements per slice (``L x S``) from which a product with a transposed operand (``q k^T``, ``dout v^T``) takes
a contiguous copy of the transposed keys or values first: BLAS ran BERT's 128 x 32 x 128 products 1.4x slower
with the operand transposed in place (1.9 against 1.3 ms a layer; the copy costs 0.2), the GPT's 64 x 32 x 64 ones
no faster."""

TILE_BYTES = 1 << 19
"""Bytes of score tile a chunk holds (per thread): a chunk is as many (query, key) slices as fit."""

Getter = Callable[[list[np.ndarray]], np.ndarray]
Compile = Callable[[str, Sequence[str]], tuple[Any, list[int]]]
RunChunks = Callable[[Callable[[int, int], None], Sequence[tuple[int, int]]], None]
Step = Callable[[list[np.ndarray]], None]
Natives = Callable[[np.dtype], NativeAttention | None]
RunNative = Callable[[int, int, int], bool]  # (function, params, slices): False when the caller should run chunks


_ROWS2 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_ROWS3 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_SCALAR = {"f32": ctypes.c_float, "f64": ctypes.c_double}


class RowKernels:
    """The native row kernels of ``llvm_ir.row_kernels_text`` for one float type, compiled with ``compile`` (the
    runtime's LLVM), called on contiguous arrays: ``softmax(s, m, l)``, ``exp(s, c)``, ``dsoftmax(ds, p, d,
    scale)``, each over the rows of its first array (``m``, ``l``, ``c``, ``d``: one value per row). ``ctypes``
    releases the GIL during the call, so chunks on the pool's threads run them in parallel."""

    def __init__(self, compile: Compile, dtype: np.dtype):
        kind = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]
        names = [f"pg_{k}_{kind}" for k in llvm_ir.ROW_KERNELS]
        self.engine, (softmax, exp, dsoftmax) = compile(llvm_ir.row_kernels_text(kind), names)  # engine kept alive
        self._softmax, self._exp = _ROWS3(softmax), _ROWS2(exp)
        scalar = _SCALAR[kind]
        self._dsoftmax = ctypes.CFUNCTYPE(
            None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, scalar, ctypes.c_int64, ctypes.c_int64
        )(dsoftmax)

    def softmax(self, s: np.ndarray, m: np.ndarray, l: np.ndarray) -> None:
        n = s.shape[-1]
        self._softmax(s.ctypes.data, m.ctypes.data, l.ctypes.data, s.size // n, n)

    def exp(self, s: np.ndarray, c: np.ndarray) -> None:
        n = s.shape[-1]
        self._exp(s.ctypes.data, c.ctypes.data, s.size // n, n)

    def dsoftmax(self, ds: np.ndarray, p: np.ndarray, d: np.ndarray, scale: float) -> None:
        n = ds.shape[-1]
        self._dsoftmax(ds.ctypes.data, p.ctypes.data, d.ctypes.data, scale, ds.size // n, n)


def attention_step(
    launch: LaunchOp,
    ins: Sequence[Getter],
    outs: Sequence[Getter],
    run: RunChunks,
    rows: Callable[[np.dtype], RowKernels],
    natives: Natives | None = None,
    run_native: RunNative | None = None,
) -> Step | None:
    """The step running ``launch`` (of kind ``attention``) blocked over its batch, or None when its body is not one
    this module takes (see the module docstring). ``ins``/``outs`` give the launch's buffers from the call's
    arguments, ``run(fn, chunks)`` calls ``fn(lo, hi)`` for every chunk (on the runtime's threads) and ``rows(dtype)``
    gives the row kernels; ``natives(dtype)`` the native slices (``native_attention``) or None, which
    ``run_native(function, params, slices)`` runs on the threads, or says False (one thread: the chunks run)."""
    block = launch.body.block
    ops = [op for op in block.ops if op is not launch.yield_op]
    args = {a: i for i, a in enumerate(block.args)}
    yielded = list(launch.yield_op.values)
    if len(set(yielded)) != len(yielded) or not ops:
        return None
    if any(numpy_dtype(pg.element_of(op.operands[0])) not in FLOAT_TYPES for op in ops):
        return None  # 16-bit attention: pg_numpy's kernels (math in f32, rounded once), as the executor
    fwd = [op for op in ops if isinstance(op, pg.ScaledDotProductAttentionOp | pg.AttentionLseOp)]
    bwd = [op for op in ops if isinstance(op, pg.AttentionBackwardOp)]
    if fwd and len(fwd) == len(ops) and len(ops) <= 2:
        return _forward(fwd, args, yielded, ins, outs, run, rows, natives, run_native)
    if len(bwd) == 1 and len(ops) == 1:
        return _backward(bwd[0], args, yielded, ins, outs, run, rows, natives, run_native)
    return None


def _operand(v: SSAValue | None, args: dict[SSAValue, int], ins: Sequence[Getter]) -> Getter | None:
    if v is None:
        return None
    if v not in args:
        raise KeyError(v)
    return ins[args[v]]


def _out(v: SSAValue, yielded: list[SSAValue], outs: Sequence[Getter]) -> Getter | None:
    return outs[yielded.index(v)] if v in yielded else None


class _Scores:
    """What the forward and backward share: the flattened shapes, the masks, the chunks and per-thread scratch."""

    def __init__(self, op: Any, args: dict[SSAValue, int], ins: Sequence[Getter], run: RunChunks):
        *batch, self.L, self.E = pg.shape_of(op.query)
        self.S = pg.shape_of(op.key)[-2]
        self.N = math.prod(batch)
        self.batch = tuple(batch)
        self.dtype = numpy_dtype(pg.element_of(op.query))
        self.scale = self.dtype.type(op.scale_value)
        self.causal = op.is_causal
        self.q = _operand(op.query, args, ins)
        self.k = _operand(op.key, args, ins)
        self.mask = _operand(op.mask, args, ins)
        self.run = run
        per = max(1, TILE_BYTES // (self.L * self.S * self.dtype.itemsize))
        self.chunks = [(lo, min(lo + per, self.N)) for lo in range(0, self.N, per)]
        self.per = min(per, self.N)
        self.future = ~np.tri(self.L, self.S, dtype=bool) if self.causal else None  # keys after the query
        # causal: query rows in blocks, each against the keys up to its last row only (about half the work)
        blocks = CAUSAL_BLOCKS if self.causal and self.L >= CAUSAL_BLOCK_ROWS * CAUSAL_BLOCKS else 1
        cuts = [self.L * b // blocks for b in range(blocks + 1)]
        pairs = zip(cuts[:-1], cuts[1:], strict=True)
        self.rows = [(r0, r1, min(self.S, r1) if self.causal else self.S) for r0, r1 in pairs]
        self.scratch: dict[tuple[int, str], np.ndarray] = {}

    def flat(self, a: np.ndarray, last: tuple[int, ...]) -> np.ndarray:
        return a.reshape(self.N, *last)

    def tile(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's scratch ``name`` (made once)."""
        key = (threading.get_ident(), name)
        t = self.scratch.get(key)
        if t is None:
            t = self.scratch[key] = np.empty((self.per, *shape), self.dtype)
        return t

    def masks(self, bufs: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(keys to drop as (N, L, S) bool, a float mask to add as (N, L, S)) of this call."""
        if self.mask is None:
            return None, None
        m = np.broadcast_to(self.mask(bufs), (*self.batch, self.L, self.S)).reshape(self.N, self.L, self.S)
        return (~m, None) if m.dtype == np.bool_ else (None, m)

    def scores(self, q: np.ndarray, k: np.ndarray, lo: int, hi: int, rows: tuple[int, int, int], drop: Any, add: Any):
        """The masked scaled scores of slices lo..hi, query rows r0..r1 against keys 0..kend (``rows``), in this
        thread's tile, and the scaled queries ``scale * q`` of those rows (another tile)."""
        r0, r1, kend = rows
        s = self.part("s", (self.L, self.S), (hi - lo, r1 - r0, kend))
        qs = self.part("q", (self.L, self.E), (hi - lo, r1 - r0, self.E))
        np.multiply(q[lo:hi, r0:r1], self.scale, out=qs)  # the scale on q: a pass over E, not over the keys
        np.matmul(qs, self.transposed(k[lo:hi, :kend]), out=s)
        if self.future is not None:
            np.copyto(s, -np.inf, where=self.future[r0:r1, :kend])
        if drop is not None:
            np.copyto(s, -np.inf, where=drop[lo:hi, r0:r1, :kend])
        if add is not None:
            s += add[lo:hi, r0:r1, :kend]
        return s, qs

    def transposed(self, x: np.ndarray) -> np.ndarray:
        """``x`` (slices, keys, E) transposed to (slices, E, keys): a contiguous copy in this thread's tile from
        ``TRANSPOSED_COPY_SCORES``, else a view."""
        n, keys, e = x.shape
        if self.L * self.S < TRANSPOSED_COPY_SCORES:
            return x.transpose(0, 2, 1)
        t = self.part("t", (max(self.E, e), self.S), (n, e, keys))
        np.copyto(t, x.transpose(0, 2, 1))
        return t

    def part(self, name: str, full: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        """The first elements of this thread's tile ``name`` (of ``full`` per slice) as a contiguous ``shape``."""
        return self.tile(name, full).reshape(-1)[: math.prod(shape)].reshape(shape)


def _native(sc: _Scores, natives: Natives | None, run_native: RunNative | None, *arrays: Any) -> NativeAttention | None:
    """The native slices for ``sc`` when it has no mask, every one of ``arrays`` (getters) is there and its tiles fit
    the stack, else None."""
    if natives is None or run_native is None or sc.mask is not None or any(a is None for a in arrays):
        return None
    if sc.L * sc.S * sc.dtype.itemsize > STACK_TILE_BYTES:
        return None
    return natives(sc.dtype)


def _contiguous(*arrays: np.ndarray | None) -> bool:
    return all(a is not None and a.flags.c_contiguous for a in arrays)


def _forward(ops: list[Any], args, yielded, ins, outs, run, rows, natives, run_native) -> Step | None:
    sdpa = next((op for op in ops if isinstance(op, pg.ScaledDotProductAttentionOp)), None)
    lse_op = next((op for op in ops if isinstance(op, pg.AttentionLseOp)), None)
    if len(ops) == 2 and (sdpa is None or lse_op is None):
        return None
    if sdpa is not None and sdpa.dropout is not None:
        return None
    first = sdpa if sdpa is not None else lse_op
    if sdpa is not None and lse_op is not None:
        same = (sdpa.query, sdpa.key, sdpa.mask, sdpa.scale_value, sdpa.is_causal)
        if same != (lse_op.query, lse_op.key, lse_op.mask, lse_op.scale_value, lse_op.is_causal):
            return None
    try:
        sc = _Scores(first, args, ins, run)
        v_get = _operand(sdpa.value, args, ins) if sdpa is not None else None
    except KeyError:
        return None
    out_get = _out(sdpa.result, yielded, outs) if sdpa is not None else None
    lse_get = _out(lse_op.result, yielded, outs) if lse_op is not None else None
    ev = pg.shape_of(sdpa.value)[-1] if sdpa is not None else 0
    assert sc.q is not None and sc.k is not None
    q_get, k_get = sc.q, sc.k
    native = rows(sc.dtype)
    whole = _native(sc, natives, run_native, v_get, out_get)
    ml = np.empty((2, sc.N, sc.L), sc.dtype) if whole is not None else None  # row maxima and sums

    def step(bufs: list[np.ndarray]) -> None:
        q, k = sc.flat(q_get(bufs), (sc.L, sc.E)), sc.flat(k_get(bufs), (sc.S, sc.E))
        v = sc.flat(v_get(bufs), (sc.S, ev)) if v_get is not None else None
        o = sc.flat(out_get(bufs), (sc.L, ev)) if out_get is not None else None
        lse = sc.flat(lse_get(bufs), (sc.L,)) if lse_get is not None else None
        if whole is not None and ml is not None and run_native is not None and _contiguous(q, k, v, o):
            sizes = dict(L=sc.L, S=sc.S, E=sc.E, EV=ev, scale=sc.scale, causal=int(sc.causal), blocks=len(sc.rows))
            params = whole.params(FORWARD_WORDS, dict(q=q, k=k, v=v, o=o, m=ml[0], l=ml[1], **sizes))
            if run_native(whole.forward, ctypes.addressof(params), sc.N):
                if lse is not None:
                    with np.errstate(divide="ignore"):
                        np.log(ml[1], out=ml[1])
                    np.add(ml[0], ml[1], out=lse)
                return
        drop, add = sc.masks(bufs)

        def chunk(lo: int, hi: int) -> None:
            for rows in sc.rows:
                r0, r1, kend = rows
                s, _ = sc.scores(q, k, lo, hi, rows, drop, add)
                m = sc.part("m", (sc.L, 1), (hi - lo, r1 - r0, 1))
                den = sc.part("l", (sc.L, 1), (hi - lo, r1 - r0, 1))
                native.softmax(s, m, den)  # m = row max (0 if -inf), s = exp(s - m), den = row sum
                if o is not None:
                    assert v is not None
                    out = o[lo:hi, r0:r1]
                    np.matmul(s, v[lo:hi, :kend], out=out)
                    np.divide(out, np.where(den == 0, 1, den), out=out)
                if lse is not None:
                    np.log(den, out=den)
                    np.add(m[..., 0], den[..., 0], out=lse[lo:hi, r0:r1])

        with np.errstate(divide="ignore", invalid="ignore"):
            sc.run(chunk, sc.chunks)

    return step


def _backward(op: pg.AttentionBackwardOp, args, yielded, ins, outs, run, rows, natives, run_native) -> Step | None:
    if op.dropout is not None:
        return None
    try:
        sc = _Scores(op, args, ins, run)
        v_get, o_get, do_get, lse_get = (_operand(x, args, ins) for x in (op.value, op.out, op.dout, op.lse))
    except KeyError:
        return None
    dq_get, dk_get, dv_get = (_out(r, yielded, outs) for r in op.results)
    ev = pg.shape_of(op.value)[-1]
    assert sc.q is not None and sc.k is not None and v_get and o_get and do_get and lse_get
    q_get, k_get = sc.q, sc.k
    native = rows(sc.dtype)
    whole = _native(sc, natives, run_native, dq_get, dk_get, dv_get)
    d_rows = np.empty((sc.N, sc.L), sc.dtype) if whole is not None else None  # rowsum(dout * out)

    def step(bufs: list[np.ndarray]) -> None:
        q, k = sc.flat(q_get(bufs), (sc.L, sc.E)), sc.flat(k_get(bufs), (sc.S, sc.E))
        v, o, do = sc.flat(v_get(bufs), (sc.S, ev)), sc.flat(o_get(bufs), (sc.L, ev)), sc.flat(do_get(bufs), (sc.L, ev))
        lse = sc.flat(lse_get(bufs), (sc.L, 1))
        dq = sc.flat(dq_get(bufs), (sc.L, sc.E)) if dq_get is not None else None
        dk = sc.flat(dk_get(bufs), (sc.S, sc.E)) if dk_get is not None else None
        dv = sc.flat(dv_get(bufs), (sc.S, ev)) if dv_get is not None else None
        arrays = (q, k, v, o, do, lse, dq, dk, dv)
        if whole is not None and d_rows is not None and run_native is not None and _contiguous(*arrays):
            sizes = dict(L=sc.L, S=sc.S, E=sc.E, EV=ev, scale=sc.scale, causal=int(sc.causal), blocks=len(sc.rows))
            values = dict(q=q, k=k, v=v, o=o, do=do, lse=lse, d=d_rows, dq=dq, dk=dk, dv=dv, **sizes)
            params = whole.params(BACKWARD_WORDS, values)
            with np.errstate(invalid="ignore", over="ignore"):
                if run_native(whole.backward, ctypes.addressof(params), sc.N):
                    return
        drop, add = sc.masks(bufs)

        def chunk(lo: int, hi: int) -> None:
            d_all = sc.part("d", (sc.L, 1), (hi - lo, sc.L, 1))  # D = rowsum(dout * out), once for the row blocks
            np.einsum("nle,nle->nl", do[lo:hi], o[lo:hi], out=d_all[..., 0])
            for b, rows in enumerate(sc.rows):
                r0, r1, kend = rows
                p, _ = sc.scores(q, k, lo, hi, rows, drop, add)
                row = sc.part("m", (sc.L, 1), (hi - lo, r1 - r0, 1))
                np.copyto(row, lse[lo:hi, r0:r1])
                native.exp(p, row)  # P = exp(S - lse), lse -inf (no keys) taken as 0
                if dv is not None:
                    _product(p.transpose(0, 2, 1), do[lo:hi, r0:r1], dv[lo:hi], b == 0, sc.tile("dv", (sc.S, ev)))
                ds = sc.part("ds", (sc.L, sc.S), p.shape)
                np.matmul(do[lo:hi, r0:r1], sc.transposed(v[lo:hi, :kend]), out=ds)
                d = d_all
                if r1 - r0 < sc.L:
                    d = row
                    np.copyto(d, d_all[:, r0:r1])
                native.dsoftmax(ds, p, d, float(sc.scale))  # dS = scale P (dP - D)
                if dq is not None:
                    np.matmul(ds, k[lo:hi, :kend], out=dq[lo:hi, r0:r1])
                if dk is not None:
                    _product(ds.transpose(0, 2, 1), q[lo:hi, r0:r1], dk[lo:hi], b == 0, sc.tile("dk", (sc.S, sc.E)))

        with np.errstate(invalid="ignore", over="ignore"):
            sc.run(chunk, sc.chunks)

    return step


def _product(a: np.ndarray, b: np.ndarray, out: np.ndarray, first: bool, scratch: np.ndarray) -> None:
    """A causal backward's ``dk``/``dv`` of some slices, over row blocks: ``out[:, :kend] = a @ b`` and the keys
    beyond zeroed for the ``first`` block (it reaches the fewest keys), ``out[:, :kend] += a @ b`` (through
    ``scratch``) for the next ones."""
    kend = a.shape[-2]
    if first:
        np.matmul(a, b, out=out[:, :kend])
        out[:, kend:] = 0
        return
    tmp = scratch.reshape(-1)[: a.shape[0] * kend * b.shape[-1]].reshape(a.shape[0], kend, b.shape[-1])
    np.matmul(a, b, out=tmp)
    out[:, :kend] += tmp
