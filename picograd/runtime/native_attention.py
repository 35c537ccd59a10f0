"""Attention slices in native code: the CPU attention's forward and backward (``cpu_attention``) over a range of
(batch, head) slices as one LLVM function that calls BLAS (``cblas_?gemm``, as ``cpu_blas``) and the native row
kernels (``llvm_ir.row_kernels_text``), run by ``cpu_jit`` on the pool's threads (on the calling thread at one
thread, where it also saves the chunks' numpy calls: the GPT's forward 0.86 -> 0.44 ms a layer).

The Python chunks of ``cpu_attention`` run a dozen numpy calls per row block, each taking the GIL: on two threads
the GPT's attention was no faster than on one (a thread waiting for the GIL gets it late). Here a piece of the
pool's job is a range of slices and holds no GIL: for each slice and each causal row block (``cpu_attention``'s
blocks: the queries ``r0..r1`` against keys ``0..kend``), with its score tiles on the thread's stack (``alloca``):

- forward: ``S = scale q k^T`` (one gemm with ``alpha = scale``), causal keys after the query ``-inf``, the softmax
  row kernel (``m``, ``l`` per row into arrays of the call), ``out = P v`` (gemm), each row divided by ``l`` (1
  where ``l`` is 0); ``lse = m + log l`` is one numpy call after the job;
- backward: ``P = exp(S - lse)`` (row kernel), ``dv += P^T dout``, ``dS = dout v^T`` then ``scale P (dS - D)`` (row
  kernel; ``D = rowsum(dout * out)`` per slice first), ``dq = dS k``, ``dk += dS^T q`` (gemms with ``beta = 1``
  into ``dk`` and ``dv``, zeroed per slice first).

Taken only without masks and dropout, all of ``out``/``dq``/``dk``/``dv`` present and score tiles of at most
:data:`STACK_TILE_BYTES`; else ``cpu_attention``'s chunks run as before. Algorithm: Dao, "FlashAttention-2" (2023),
as ``cpu_attention``.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from picograd.target import llvm_ir

Compile = Callable[[str, Sequence[str]], tuple[Any, list[int]]]

STACK_TILE_BYTES = 1 << 17  # the most bytes of one score tile on a thread's stack (two in a backward)
FORWARD_WORDS = ("gemm", "q", "k", "v", "o", "m", "l", "L", "S", "E", "EV", "scale", "causal", "blocks")
BACKWARD_WORDS = (
    *("gemm", "q", "k", "v", "o", "do", "lse", "d", "dq", "dk", "dv"),
    *("L", "S", "E", "EV", "scale", "causal", "blocks"),
)
NO_TRANS, TRANS = 111, 112
MADE_PARAMS = 256  # parameter tables kept (a step's attention kernels, forward and backward, over its buffers)


class _Ir:
    """Lines of one LLVM function, fresh names, and counted loops with their phis."""

    def __init__(self, t: str, it: str):
        self.t, self.it, self.count, self.block = t, it, 0, "entry"
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append("  " + text)

    def fresh(self, prefix: str = "v") -> str:
        self.count += 1
        return f"%{prefix}{self.count}"

    def value(self, text: str, prefix: str = "v") -> str:
        name = self.fresh(prefix)
        self(f"{name} = {text}")
        return name

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def loop(self, start: str, end: str, body: Callable[[str], None]) -> None:
        """``for i in start..end: body(i)``; the body may open blocks of its own."""
        self.count += 1
        head, inside, latch, done = (f"{x}{self.count}" for x in ("head", "body", "latch", "done"))
        before, i, step = self.block, f"%i{self.count}", f"%inext{self.count}"
        self(f"br label %{head}")
        self.label(head)
        self(f"{i} = phi i64 [{start}, %{before}], [{step}, %{latch}]")
        more = self.value(f"icmp slt i64 {i}, {end}")
        self(f"br i1 {more}, label %{inside}, label %{done}")
        self.label(inside)
        body(i)
        self(f"br label %{latch}")
        self.label(latch)
        self(f"{step} = add i64 {i}, 1")
        self(f"br label %{head}")
        self.label(done)

    def when(self, cond: str, body: Callable[[], None]) -> None:
        """``if cond: body()``."""
        self.count += 1
        then, done = f"then{self.count}", f"endif{self.count}"
        self(f"br i1 {cond}, label %{then}, label %{done}")
        self.label(then)
        body()
        self(f"br label %{done}")
        self.label(done)

    def at(self, base: str, index: str) -> str:
        return self.value(f"getelementptr {self.t}, ptr {base}, i64 {index}", "p")

    def mul(self, a: str, b: str) -> str:
        return self.value(f"mul i64 {a}, {b}")

    def add(self, a: str, b: str) -> str:
        return self.value(f"add i64 {a}, {b}")

    def gemm(self, fn: str, ta: int, tb: int, m: str, n: str, k: str, alpha: str, a: str, lda: str, b: str,
             ldb: str, beta: str, c: str, ldc: str) -> None:  # fmt: skip
        """``cblas_?gemm`` (row-major) through the pointer ``fn``."""
        ints = []
        for x in (m, n, k, lda, ldb, ldc):
            ints.append(x if self.it == "i64" else self.value(f"trunc i64 {x} to i32"))
        m, n, k, lda, ldb, ldc = (f"{self.it} {x}" for x in ints)
        t = self.t
        self(
            f"call void {fn}(i32 101, i32 {ta}, i32 {tb}, {m}, {n}, {k}, {t} {alpha}, ptr {a}, {lda}, ptr {b}, {ldb}, "
            f"{t} {beta}, ptr {c}, {ldc})"
        )


def _params(e: _Ir, names: Sequence[str]) -> dict[str, str]:
    """Load the i64 words of the parameters (``%params``): pointers as ``ptr``, ``scale`` as the float type (f64 bits
    in the word), the rest as i64."""
    w: dict[str, str] = {}
    for i, name in enumerate(names):
        p = e.value(f"getelementptr i64, ptr %params, i64 {i}", "w")
        word = e.value(f"load i64, ptr {p}", "w")
        if name in ("L", "S", "E", "EV", "causal", "blocks"):
            w[name] = word
        elif name == "scale":
            d = e.value(f"bitcast i64 {word} to double")
            w[name] = d if e.t == "double" else e.value(f"fptrunc double {d} to float")
        else:
            w[name] = e.value(f"inttoptr i64 {word} to ptr")
    return w


def _blocks(e: _Ir, w: dict[str, str], body: Callable[[str, str, str, str], None]) -> None:
    """For each row block ``b`` of ``blocks``: ``body(r0, rows, kend, b)`` (``cpu_attention._Scores.rows``)."""

    def block(b: str) -> None:
        r0 = e.value(f"sdiv i64 {e.mul(w['L'], b)}, {w['blocks']}")
        r1 = e.value(f"sdiv i64 {e.mul(w['L'], e.add(b, '1'))}, {w['blocks']}")
        rows = e.value(f"sub i64 {r1}, {r0}")
        short = e.value(f"icmp slt i64 {r1}, {w['S']}")
        reach = e.value(f"select i1 {short}, i64 {r1}, i64 {w['S']}")
        causal = e.value(f"icmp ne i64 {w['causal']}, 0")
        kend = e.value(f"select i1 {causal}, i64 {reach}, i64 {w['S']}")
        body(r0, rows, kend, b)

    e.loop("0", w["blocks"], block)


def _mask(e: _Ir, w: dict[str, str], tile: str, r0: str, rows: str, kend: str) -> None:
    """Causal: ``tile[i, j] = -inf`` for keys ``j > r0 + i`` (rows of ``kend``)."""
    causal = e.value(f"icmp ne i64 {w['causal']}, 0")
    ninf = llvm_ir.float_literal(-float("inf"))

    def rows_(i: str) -> None:
        first = e.add(e.add(r0, i), "1")
        row = e.mul(i, kend)

        def key(j: str) -> None:
            e(f"store {e.t} {ninf}, ptr {e.at(tile, e.add(row, j))}")

        e.loop(first, kend, key)

    e.when(causal, lambda: e.loop("0", rows, rows_))


def _function(name: str, kind: str, it: str, words: Sequence[str], body: Callable[[_Ir, dict[str, str]], None]) -> str:
    t = "float" if kind == "f32" else "double"
    e = _Ir(t, it)
    w = _params(e, words)
    body(e, w)
    e("ret void")
    head = f"define void @{name}_{kind}(ptr %slots, ptr %params, i64 %lo, i64 %hi) {{"
    return "\n".join([head, "entry:", *e.lines, "}"])


MEMSET = "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)"


def _forward(e: _Ir, w: dict[str, str]) -> None:
    kind = "f32" if e.t == "float" else "f64"
    one, zero = llvm_ir.float_literal(1.0), llvm_ir.float_literal(0.0)
    tile = e.value(f"alloca {e.t}, i64 {e.mul(w['L'], w['S'])}, align 64", "tile")

    def slice_(n: str) -> None:
        q, k = e.at(w["q"], e.mul(n, e.mul(w["L"], w["E"]))), e.at(w["k"], e.mul(n, e.mul(w["S"], w["E"])))
        v, o = e.at(w["v"], e.mul(n, e.mul(w["S"], w["EV"]))), e.at(w["o"], e.mul(n, e.mul(w["L"], w["EV"])))
        rowsat = e.mul(n, w["L"])

        def block(r0: str, rows: str, kend: str, _: str) -> None:
            qr, orow = e.at(q, e.mul(r0, w["E"])), e.at(o, e.mul(r0, w["EV"]))
            e.gemm(w["gemm"], NO_TRANS, TRANS, rows, kend, w["E"], w["scale"], qr, w["E"], k, w["E"], zero, tile, kend)
            _mask(e, w, tile, r0, rows, kend)
            m, l_ = e.at(w["m"], e.add(rowsat, r0)), e.at(w["l"], e.add(rowsat, r0))
            e(f"call void @pg_softmax_rows_{kind}(ptr {tile}, ptr {m}, ptr {l_}, i64 {rows}, i64 {kend})")
            e.gemm(w["gemm"], NO_TRANS, NO_TRANS, rows, w["EV"], kend, one, tile, kend, v, w["EV"], zero, orow, w["EV"])

            def divide(i: str) -> None:
                li = e.value(f"load {e.t}, ptr {e.at(l_, i)}")
                empty = e.value(f"fcmp oeq {e.t} {li}, {zero}")
                d = e.value(f"select i1 {empty}, {e.t} {one}, {e.t} {li}")
                row = e.mul(i, w["EV"])

                def col(j: str) -> None:
                    p = e.at(orow, e.add(row, j))
                    x = e.value(f"load {e.t}, ptr {p}")
                    e(f"store {e.t} {e.value(f'fdiv {e.t} {x}, {d}')}, ptr {p}")

                e.loop("0", w["EV"], col)

            e.loop("0", rows, divide)

        _blocks(e, w, block)

    e.loop("%lo", "%hi", slice_)


def _backward(e: _Ir, w: dict[str, str]) -> None:
    kind = "f32" if e.t == "float" else "f64"
    one, zero = llvm_ir.float_literal(1.0), llvm_ir.float_literal(0.0)
    size = e.mul(w["L"], w["S"])
    p_tile = e.value(f"alloca {e.t}, i64 {size}, align 64", "tile")
    ds = e.value(f"alloca {e.t}, i64 {size}, align 64", "tile")
    acc = e.value(f"alloca {e.t}", "acc")  # a row's sum of D (allocas here, at the entry: once a call)
    E, EV = w["E"], w["EV"]

    def slice_(n: str) -> None:
        q, k = e.at(w["q"], e.mul(n, e.mul(w["L"], E))), e.at(w["k"], e.mul(n, e.mul(w["S"], E)))
        v, do = e.at(w["v"], e.mul(n, e.mul(w["S"], EV))), e.at(w["do"], e.mul(n, e.mul(w["L"], EV)))
        dq, dk = e.at(w["dq"], e.mul(n, e.mul(w["L"], E))), e.at(w["dk"], e.mul(n, e.mul(w["S"], E)))
        dv = e.at(w["dv"], e.mul(n, e.mul(w["S"], EV)))
        o = e.at(w["o"], e.mul(n, e.mul(w["L"], EV)))
        rowsat = e.mul(n, w["L"])
        item = "4" if e.t == "float" else "8"
        for grad, width in ((dk, E), (dv, EV)):  # zeroed, then accumulated over the row blocks
            nbytes = e.mul(e.mul(w["S"], width), item)
            e(f"call void @llvm.memset.p0.i64(ptr {grad}, i8 0, i64 {nbytes}, i1 false)")

        def rowsum(i: str) -> None:  # D = rowsum(dout * out)
            row = e.mul(i, EV)
            e(f"store {e.t} {zero}, ptr {acc}")

            def term(j: str) -> None:
                at = e.add(row, j)
                x = e.value(f"load {e.t}, ptr {e.at(do, at)}")
                y = e.value(f"load {e.t}, ptr {e.at(o, at)}")
                a = e.value(f"load {e.t}, ptr {acc}")
                xy = e.value(f"fmul reassoc contract {e.t} {x}, {y}")
                e(f"store {e.t} {e.value(f'fadd reassoc contract {e.t} {a}, {xy}')}, ptr {acc}")

            e.loop("0", EV, term)
            e(f"store {e.t} {e.value(f'load {e.t}, ptr {acc}')}, ptr {e.at(w['d'], e.add(rowsat, i))}")

        e.loop("0", w["L"], rowsum)

        def block(r0: str, rows: str, kend: str, _: str) -> None:
            qr, dor, dqr = e.at(q, e.mul(r0, E)), e.at(do, e.mul(r0, EV)), e.at(dq, e.mul(r0, E))
            e.gemm(w["gemm"], NO_TRANS, TRANS, rows, kend, E, w["scale"], qr, E, k, E, zero, p_tile, kend)
            _mask(e, w, p_tile, r0, rows, kend)
            lse, d = e.at(w["lse"], e.add(rowsat, r0)), e.at(w["d"], e.add(rowsat, r0))
            e(f"call void @pg_exp_rows_{kind}(ptr {p_tile}, ptr {lse}, i64 {rows}, i64 {kend})")
            e.gemm(w["gemm"], TRANS, NO_TRANS, kend, EV, rows, one, p_tile, kend, dor, EV, one, dv, EV)
            e.gemm(w["gemm"], NO_TRANS, TRANS, rows, kend, EV, one, dor, EV, v, EV, zero, ds, kend)
            s = w["scale"]
            e(f"call void @pg_dsoftmax_rows_{kind}(ptr {ds}, ptr {p_tile}, ptr {d}, {e.t} {s}, i64 {rows}, i64 {kend})")
            e.gemm(w["gemm"], NO_TRANS, NO_TRANS, rows, E, kend, one, ds, kend, k, E, zero, dqr, E)
            e.gemm(w["gemm"], TRANS, NO_TRANS, kend, E, rows, one, ds, kend, qr, E, one, dk, E)

        _blocks(e, w, block)

    e.loop("%lo", "%hi", slice_)


class NativeAttention:
    """The native forward and backward of one float type (``"f32"``/``"f64"``) calling the BLAS ``gemm`` (the
    address of ``cblas_sgemm``/``cblas_dgemm``, ints of ``int_type``), compiled with ``compile``: ``forward`` and
    ``backward`` are the addresses of nest-shaped functions ``(slots, params, lo, hi)`` over slices ``lo..hi``;
    ``forward_params``/``backward_params`` lay out their parameters."""

    def __init__(self, compile: Compile, kind: str, gemm: int, int_type: str):
        self.kind, self.gemm = kind, gemm
        text = "\n".join(
            [
                llvm_ir.row_kernels_text(kind),
                _function("pg_attention_forward", kind, int_type, FORWARD_WORDS, _forward),
                _function("pg_attention_backward", kind, int_type, BACKWARD_WORDS, _backward),
                MEMSET,
            ]
        )
        names = [f"pg_attention_forward_{kind}", f"pg_attention_backward_{kind}"]
        self.engine, (self.forward, self.backward) = compile(text, names)  # the engine is kept alive
        self._made: dict[tuple[int, ...], Any] = {}

    def params(self, words: Sequence[str], values: dict[str, Any]) -> Any:
        """The i64 words of ``words`` from ``values`` (arrays by their address, ``scale`` as f64 bits, ints), made
        once per distinct words (the buffers of the memory plan keep their addresses from call to call)."""
        out = []
        for name in words:
            x = values.get(name, self.gemm if name == "gemm" else None)
            if isinstance(x, np.ndarray):
                x = x.ctypes.data
            elif name == "scale":
                x = struct.unpack("<q", struct.pack("<d", float(x)))[0]  # type: ignore[arg-type]
            out.append(int(x))  # type: ignore[arg-type]
        key = tuple(out)
        made = self._made.get(key)
        if made is None:
            if len(self._made) >= MADE_PARAMS:
                self._made.clear()
            made = self._made[key] = (ctypes.c_int64 * len(out))(*out)
        return made
