"""The differential fuzzer (``tools/fuzz.py``): a short fixed-seed run finds nothing, its parts work, and each bug
it found stays fixed (compared with PyTorch, as the fuzzer does)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import picograd as pg
from picograd.frontend.tensor import realize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fuzz  # noqa: E402


def test_fixed_seed_run_is_clean() -> None:
    """200 graphs through eager, compiled, the loop stage and (every 10th) the PTX emulator: nothing differs."""
    out = io.StringIO()
    graphs, mismatches, crashes = fuzz.fuzz(200, seed=2026, ptx_every=10, out=out)
    assert graphs >= 190 and mismatches == 0 and crashes == 0, out.getvalue()
    assert out.getvalue().splitlines()[-1] == f"graphs={graphs} mismatches=0 crashes=0"
    assert fuzz.STAGE_RUNS["loops"] > 100 and fuzz.STAGE_RUNS["ptx"] > 5


def test_op_table_covers_the_public_ops() -> None:
    names = {op.name for op in fuzz.OPS}
    assert {"matmul", "index", "slice", "cat", "stack", "cross_entropy", "softmax", "log_softmax", "where"} <= names
    assert {"sum", "mean", "amax", "amin", "var", "std", "argmax", "logsumexp", "masked_fill", "compare"} <= names


def test_finds_and_shrinks_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong op (tanh computing sin) is found and shrunk to a repro of a few lines that uses it."""
    monkeypatch.setattr(pg.Tensor, "tanh", lambda self: self.sin())
    out = io.StringIO()
    graphs, mismatches, crashes = fuzz.fuzz(60, seed=5, loops_every=1000, ptx_every=1000, out=out)
    assert mismatches > 0, out.getvalue()
    report = out.getvalue()
    assert ".tanh()" in report and "mismatch in stage 'eager'" in report
    repro = report.split("=== graph")[1]
    assert len([line for line in repro.splitlines() if line.startswith("v")]) <= 3, repro


# ---------------------------------------------------------------------------------------------------------------
# Regressions found by the fuzzer


def test_realize_the_same_tensor_twice() -> None:
    x = pg.tensor(np.array([1.0, -2.0], np.float32))
    y = (x != 0.5).contiguous()  # contiguous() is the tensor itself
    realize(y, y)
    np.testing.assert_array_equal(y.numpy(), [True, True])


def test_std_gradient_is_zero_where_std_is_zero() -> None:
    data = np.array([[0.25], [0.5]], np.float32)
    x = pg.tensor(data, requires_grad=True)
    ((x.std(dim=1, correction=0) * pg.tensor([1.0, 2.0])).sum() + x.sum()).backward()
    tx = torch.tensor(data, requires_grad=True)
    ((tx.std(dim=1, correction=0) * torch.tensor([1.0, 2.0])).sum() + tx.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())  # 1, not NaN


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_masked_fill_keeps_the_dtype(value: float) -> None:
    data = np.array([[0, 2], [3, -4]])
    mask = np.array([True, False])
    for dtype in (np.bool_, np.int32, np.int64, np.float32):
        got = pg.tensor(data.astype(dtype)).masked_fill(pg.tensor(mask), value)
        want = torch.tensor(data.astype(dtype)).masked_fill(torch.tensor(mask), value)
        assert got.dtype.name == str(want.dtype).removeprefix("torch."), dtype
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_softmax_family_over_an_empty_dim() -> None:
    data = np.zeros((2, 0), np.float32)
    x = pg.tensor(data, requires_grad=True)
    tx = torch.tensor(data, requires_grad=True)
    for fn in (lambda t: t.softmax(1), lambda t: t.log_softmax(1), lambda t: t.logsumexp(1), lambda t: t.softmax(0)):
        got, want = fn(x), fn(tx)
        assert got.shape == tuple(want.shape)
        np.testing.assert_array_equal(got.numpy(), want.detach().numpy())  # logsumexp: -inf
    x.softmax(1).sum().backward()
    assert x.grad is not None and x.grad.shape == (2, 0)


def test_detach_inside_a_compiled_step_reads_the_current_values(rng: np.random.Generator) -> None:
    """``detach()`` of an argument or a parameter in a compiled step used the trace's placeholder (zeros) or the
    value at trace time."""
    w = pg.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)

    @pg.compile
    def step(x: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        return x.detach().argmax(dim=0), (w.detach() * x).sum()

    for _ in range(3):
        x_np = rng.standard_normal(3).astype(np.float32)
        i, s = step(pg.tensor(x_np))
        assert i.item() == int(np.argmax(x_np))
        np.testing.assert_allclose(s.item(), float((w.numpy() * x_np).sum()), rtol=1e-6)
        w.data = w - 0.5  # a parameter update


def test_loop_stage_never_reads_an_empty_buffer() -> None:
    """A reduction over a reshape to a size-0 shape: the reshape's (constant) index made the load loop-invariant,
    hoisted out of the loop of no trips, reading out of bounds (the loop interpreter failed; a GPU reads garbage)."""
    from picograd.driver.pipeline import passes_until, run_passes
    from picograd.frontend.realize import pending_module
    from picograd.runtime.loop_interpreter import run_function

    x = pg.tensor(np.zeros((4, 2, 0), np.float32))
    y = x.reshape(0).log_softmax(0)
    z = x.reshape(0).sum(0, keepdim=True)
    module, buffers = pending_module([y, z])
    run_passes(module, passes_until("loops")[len(passes_until("simplify")) :])
    got_y, got_z = run_function(module, "main", buffers)
    assert got_y.shape == (0,) and got_z.shape == (1,) and got_z[0] == 0.0


def test_integer_pow_is_exact_on_the_ptx_emulator() -> None:
    """int64 ``x ** 3`` runs in float64; the GPU's f64 pow is within ulps, not exact (4 ** 3 came out
    63.99999999999999, and a truncating cast gave 63): the result is rounded before the cast back."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _ptx_emulator import run_program

    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.frontend.realize import pending_module

    base = np.arange(-6, 7, dtype=np.int64)
    x = pg.tensor(base)
    module, buffers = pending_module([x**3, x ** pg.tensor(np.abs(base) % 4)])
    cubes, powers = run_program(compile_for_cuda(module), buffers)
    np.testing.assert_array_equal(cubes, base**3)
    np.testing.assert_array_equal(powers, base ** (np.abs(base) % 4))
    assert cubes.dtype == np.int64


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_gradient_with_a_nan_as_pytorch(fn: str) -> None:
    """Where one side is NaN no comparison holds: PyTorch gives both sides the gradient (picograd gave neither)."""
    a = np.array([np.nan, 1.0, 2.0, 3.0, 0.5])
    b = np.array([0.0, 1.0, 5.0, 1.0, np.nan])
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    x, y = pg.tensor(a, requires_grad=True), pg.tensor(b, requires_grad=True)
    (getattr(pg, fn)(x, y) * pg.tensor(w)).sum().backward()
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (getattr(torch, fn)(tx, ty) * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    np.testing.assert_array_equal(y.grad.numpy(), ty.grad.numpy())


def test_batched_matmul_with_an_empty_inner_dim() -> None:
    """``(1, 3, 0) @ (0, 4)``: folding the batch into one GEMM reshaped to ``(-1, 0)``, which has no answer."""
    x = pg.tensor(np.zeros((1, 3, 0), np.float32), requires_grad=True)
    w = pg.tensor(np.zeros((0, 4), np.float32), requires_grad=True)
    y = x @ w
    np.testing.assert_array_equal(y.numpy(), np.zeros((1, 3, 4), np.float32))
    y.sum().backward()
    assert x.grad.shape == (1, 3, 0) and w.grad.shape == (0, 4)
