"""Matmul test helpers shared by the schedule suites (tests/test_matmul_schedule.py, test_mma_sync.py,
test_matmul_wgmma.py): ``MM``, a pg-stage matmul of one shape, precision and layout with its inputs and float64
reference; ``emulate``, a compiled matmul run on the PTX emulator; ``loops_matmul``, a hand-written loop-stage
matmul nest, and ``parse_loops`` to read it."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from _ptx_emulator import run_program
from test_loops import build, t
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import BFloat16Type, Float16Type, ModuleOp, f32, f64
from xdsl.parser import Parser

from picograd.dialects import make_context, pg
from picograd.driver.gpu_compile import CudaProgram

#: dtype name -> (element type of the pg stage, numpy dtype of the inputs); "tf32" is f32 under allow_tf32
DTYPES = {
    "f32": (f32, np.float32),
    "f64": (f64, np.float64),
    "bf16": (BFloat16Type(), ml_dtypes.bfloat16),
    "f16": (Float16Type(), np.float16),
    "tf32": (f32, np.float32),
}


@dataclass(frozen=True)
class MM:
    """A (batch x) M x N x K matmul as the frontend records it: ``ta``/``tb`` store an operand transposed and
    ``pg.permute`` it back (the permute folds into the matmul's loads); ``b_batched=False`` gives B no batch dims
    and broadcasts it (``pg.broadcast_to``, as ``Tensor.matmul`` does); ``dtype`` is a key of ``DTYPES``."""

    m: int
    n: int
    k: int
    ta: bool = False
    tb: bool = False
    batch: tuple[int, ...] = ()
    b_batched: bool = True
    dtype: str = "f32"

    def __str__(self) -> str:
        flags = [f for f, on in (("ta", self.ta), ("tb", self.tb), ("bcast", not self.b_batched)) if on]
        precision = [self.dtype] if self.dtype != "f32" else []
        return "_".join(["x".join(map(str, (*self.batch, self.m, self.n, self.k))), *precision, *flags])

    @property
    def f64(self) -> bool:
        return self.dtype == "f64"

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (*self.batch, *((self.k, self.m) if self.ta else (self.m, self.k)))

    @property
    def b_shape(self) -> tuple[int, ...]:
        batch = self.batch if self.b_batched else ()
        return (*batch, *((self.n, self.k) if self.tb else (self.k, self.n)))

    def module(self) -> ModuleOp:
        nb = len(self.batch)

        def body(e, a, b):
            if self.ta:
                a = e(pg.PermuteOp(a, [*range(nb), nb + 1, nb]))
            if self.tb:
                rank = len(self.b_shape)
                b = e(pg.PermuteOp(b, [*range(rank - 2), rank - 1, rank - 2]))
            if not self.b_batched and self.batch:
                b = e(pg.BroadcastToOp(b, (*self.batch, self.k, self.n)))
            return [e(pg.MatmulOp(a, b, tf32=self.dtype == "tf32"))]

        el = DTYPES[self.dtype][0]
        return build([t(*self.a_shape, el=el), t(*self.b_shape, el=el)], body)

    def inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal(s).astype(DTYPES[self.dtype][1]) for s in (self.a_shape, self.b_shape)]

    def operands64(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The operands in float64, transposed back to (..., M, K) and (..., K, N)."""
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        return (np.swapaxes(a64, -1, -2) if self.ta else a64), (np.swapaxes(b64, -1, -2) if self.tb else b64)

    def reference(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The product in float64."""
        a64, b64 = self.operands64(a, b)
        return a64 @ b64


def emulate(program: CudaProgram, shape: MM, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``program`` (``shape`` compiled) run on the PTX emulator on fresh random inputs: the result and the inputs."""
    a, b = shape.inputs(rng)
    (got,) = run_program(program, [a, b])
    return got, a, b


def loops_matmul(
    args: str,
    body: list[str],
    m: int,
    n: int,
    k: int,
    *,
    out_type: str | None = None,
    consts: tuple[str, ...] = (),
    init: str = "0.0",
) -> str:
    """A hand-written loop-stage matmul nest (``pg.nest = "matmul"``): ``func @f(args, %result0)`` over an M x N
    ``scf.parallel`` (``%i``, ``%j``) whose K loop (``%kk``, accumulator ``%acc`` from ``init``) runs ``body``,
    which must yield ``%s``; ``consts`` are defined before the nest, ``out_type`` (default ``memref<MxNxf32>``) is
    the result's."""
    out = out_type or f"memref<{m}x{n}xf32>"
    lines = "\n      ".join(body)
    defined = "".join(f"\n  {c}" for c in consts)
    return f"""
func.func @f({args}, %result0: {out} {{pg.result = 0 : i64}}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant {m} : index
  %n = arith.constant {n} : index
  %k = arith.constant {k} : index
  %zero = arith.constant {init} : f32{defined}
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{{operandSegmentSizes = array<i32: 2, 2, 2, 0>}}> ({{
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {{
      {lines}
      scf.yield %s : f32
    }}
    memref.store %sum, %result0[%i, %j] : {out}
    scf.reduce
  }}) {{pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"}}
    : (index, index, index, index, index, index) -> ()
  func.return
}}
"""


def parse_loops(text: str) -> ModuleOp:
    """Parse a loop-stage module (picograd's dialects and scf, memref)."""
    ctx = make_context()
    ctx.load_dialect(scf.Scf)
    ctx.load_dialect(memref.MemRef)
    return Parser(ctx, text).parse_module()
