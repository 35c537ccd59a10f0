"""Edge cases of the tf32 path to Hopper's ``wgmma`` (``pg-wgmma-layout``, ``matmul_rungs.wgmma_choice``, the
loop stage's ``mma-sync`` fallback), compiled for ``sm_90a`` and run on the PTX emulator against float64.

A wgmma reads the f32 bits truncated to tf32 (:func:`test_matmul_wgmma.random_tf32`); the ``mma-sync`` fallback
rounds each operand to the nearest tf32 (``cvt.rn.tf32.f32`` on sm_90), so a result is checked against the
product of the operands as the kernel that ran reads them, within ``assert_close``'s f32-accumulation bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ptx_emulator import run_program
from test_loops import build, t
from test_matmul_wgmma import pg_matmul_tf32, random_tf32
from test_tensor_core_ptx import assert_close

from picograd.dialects import pg
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.errors import CompileError
from picograd.runtime import cuda


def truncated(x: np.ndarray) -> np.ndarray:
    """The tf32 a wgmma reads of f32 ``x`` (low 13 mantissa bits dropped), as float64."""
    return (x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)


def rounded(x: np.ndarray) -> np.ndarray:
    """``cvt.rn.tf32.f32`` of f32 ``x`` (nearest tf32, ties to even), as float64: what the mma-sync rung reads."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & 0xFFFFE000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def launches(program: cuda.CudaProgram) -> list[cuda.Launch]:
    return [s for s in program.steps if isinstance(s, cuda.Launch)]


def check_a_at_b(program: cuda.CudaProgram, m: int, n: int, k: int, rng: np.random.Generator) -> None:
    """Run ``program`` (``a @ b``, B stored [k, n]) on the emulator on fresh tf32 operands against float64."""
    a_bits, a = random_tf32(rng, (m, k))
    b_bits, b = random_tf32(rng, (k, n))
    (c,) = run_program(program, [a_bits.view(np.float32), b_bits.view(np.float32)])
    assert_close(c, a, b)


def test_batched_b_stored_k_by_n_and_also_returned(rng: np.random.Generator) -> None:
    """A batched ``a @ b`` (B stored [batch, k, n]) under ``auto``: ``pg-wgmma-layout``'s copy keeps the batch (a
    [batch, n, k] Bt that wgmma reads K-major); B also returned is B itself, not the copy."""

    def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
        return [e(pg.MatmulOp(a, b, tf32=True)), b]

    program = compile_for_cuda(build([t(2, 64, 64), t(2, 64, 128)], body), arch="sm_90a")
    gemm = [x for x in launches(program) if any(isinstance(a, cuda.TensorMap) for a in x.args)]
    assert len(gemm) == 1 and "wgmma.mma_async.sync.aligned.m64n" in program.ptx
    program.assemble(strict=True)
    a_bits, a = random_tf32(rng, (2, 64, 64))
    b_bits, b = random_tf32(rng, (2, 64, 128))
    c, b_out = run_program(program, [a_bits.view(np.float32), b_bits.view(np.float32)])
    for i in range(2):
        assert_close(c[i], a[i], b[i])
    np.testing.assert_array_equal(b_out, b_bits.view(np.float32))


@pytest.mark.parametrize("name", ["wgmma", "wgmma-pp", "wgmma-pp-128", "wgmma-pp-192"])
def test_forced_schedules_on_a_ragged_matmul_with_b_stored_k_by_n(name: str, rng: np.random.Generator) -> None:
    """M = 70, N = 37 (not multiples of 8) and K = 36 (one K tile of 32 and a ragged one of 4, zero-filled by TMA)
    on each forced wgmma schedule, B stored [k, n] (through the transposed copy)."""
    m, n, k = 70, 37, 36
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, "mn"), arch="sm_90a", matmul_schedule=name)
    copy, gemm = launches(program)
    assert [type(x) for x in gemm.args[:2]] == [cuda.TensorMap] * 2
    assert "wgmma.mma_async.sync.aligned.m64n" in program.ptx and ".tf32.tf32" in program.ptx
    check_a_at_b(program, m, n, k, rng)


def test_split_k_on_a_ragged_tf32_matmul_with_b_stored_k_by_n(rng: np.random.Generator) -> None:
    """``auto`` on 40 x 40 x 1024 (B stored [k, n]): few tiles, so split-K (partial matmuls on wgmma-ws over the
    transposed copy of B, then their sum)."""
    m, n, k = 40, 40, 1024
    program = compile_for_cuda(pg_matmul_tf32(m, n, k, "mn"), arch="sm_90a")
    assert len(launches(program)) == 3  # copy, partial products, sum
    assert ".tf32.tf32" in program.ptx and "wgmma.mma_async" in program.ptx
    check_a_at_b(program, m, n, k, rng)


def test_linear_forward_and_weight_gradient_from_the_frontend(rng: np.random.Generator) -> None:
    """A traced ``Linear`` step under ``allow_tf32`` on sm_90a: the forward ``x @ W.T`` on wgmma (both K-major), the
    weight gradient ``dY.T @ x`` on the tf32 mma-sync fallback (dY.T is M-major)."""
    import picograd

    lin = picograd.nn.Linear(64, 128, bias=False)
    x = picograd.tensor(rng.standard_normal((128, 64)).astype(np.float32))

    @picograd.compile
    def step(x):  # noqa: ANN001, ANN202
        y = lin(x)
        (y * y).sum().backward()
        return y, lin.weight.grad

    try:
        picograd.backends.cuda.matmul.allow_tf32 = True
        module = step.ir("simplify", (x,))
    finally:
        picograd.backends.cuda.matmul.allow_tf32 = False
    program = compile_for_cuda(module, arch="sm_90a")
    assert "wgmma.mma_async" in program.ptx and "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in program.ptx
    w, xs = lin.weight.numpy().astype(np.float32), x.numpy()
    y, grad = run_program(program, [xs, w])[:2]
    assert_close(y, truncated(xs), truncated(w).T)
    dy = 2 * y.astype(np.float32)  # the kernel's own dY: the gradient's operands as the fallback reads them
    assert_close(grad, rounded(dy).T, rounded(xs))


@pytest.mark.parametrize("name", ["wgmma", "wgmma-ws", "wgmma-pp-128"])
@pytest.mark.parametrize("b_major", ["k", "mn"])
def test_k_not_a_multiple_of_4_is_one_clear_error(name: str, b_major: str) -> None:
    """K = 6: f32 rows of 24 bytes, which TMA cannot copy; forcing a wgmma schedule says so (auto would not pick
    it: ``wgmma_choice`` wants multiples of 8)."""

    def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
        return [e(pg.MatmulOp(a, e(pg.PermuteOp(b, [1, 0])) if b_major == "k" else b, tf32=True))]

    module = build([t(64, 6), t(*((64, 6) if b_major == "k" else (6, 64)))], body)
    with pytest.raises(CompileError, match=rf"{name} cannot compute the matmul.*K = 6 \(TMA needs rows of a multiple"):
        compile_for_cuda(module, arch="sm_90a", matmul_schedule=name)


def test_nan_and_inf_propagate_through_the_tf32_wgmma(rng: np.random.Generator) -> None:
    """A NaN, infinities (one against a zero: NaN) and a subnormal in A, on a ragged wgmma-ws tf32 matmul: C has
    NaN and infinities exactly where float64 has them, and the finite rest is within the bound."""

    def body(e, a, b):  # noqa: ANN001, ANN202 - test_loops.build's callback
        return [e(pg.MatmulOp(a, b, tf32=True))]

    program = compile_for_cuda(build([t(64, 40), t(40, 72)], body), arch="sm_90a", matmul_schedule="wgmma-ws")
    a = rng.standard_normal((64, 40)).astype(np.float32)
    b = rng.standard_normal((40, 72)).astype(np.float32)
    a[3, 5], a[7, 9], b[9, 11], a[10, 39], a[20, 2] = np.nan, np.inf, 0.0, -np.inf, 1e-40
    with np.errstate(invalid="ignore"):  # inf * 0, in the emulator's products and in the reference
        (c,) = run_program(program, [a, b])
        ref = truncated(a) @ truncated(b)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(ref))
    np.testing.assert_array_equal(np.signbit(c[np.isinf(c)]), np.signbit(ref[np.isinf(ref)]))
    rows = np.isfinite(ref).all(axis=1)
    assert rows.sum() == 61
    assert_close(c[rows], truncated(a)[rows], truncated(b))
