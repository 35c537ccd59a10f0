"""The JIT CPU backend (``picograd.driver.cpu_compile``, ``picograd.runtime.cpu_jit``, ``picograd.target.llvm_ir``)
against the numpy executor, its reference: the op surface's traced steps, whole train steps, threads, the fallback
to numpy per kernel, index checks."""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
from dataclasses import replace

import numpy as np
import picograd.nn.functional as F
import pytest
from test_op_surface import LOWER_OPS, OPS, step_module

import picograd as pg
from picograd.driver.cpu_compile import compile_for_cpu
from picograd.runtime import cpu_jit
from picograd.runtime.numpy_executor import compile_func
from picograd.target import llvm_ir

pytest.importorskip("llvmlite")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...], rtol: float = 2e-5) -> None:
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape, g.dtype, w.dtype)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"result {k}")
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol, err_msg=f"result {k}")


@pytest.mark.parametrize("name", LOWER_OPS)
def test_op_surface_steps_match_the_numpy_executor(name: str, rng: np.random.Generator) -> None:
    """Each op's traced step (forward and, for differentiable ops, backward) at float32: every kernel but the
    matmuls compiled by LLVM (none left to numpy), the results those of the numpy executor."""
    op = OPS[name]
    module, inputs = step_module(op, op.inputs(rng))
    with np.errstate(all="ignore"):
        want = compile_func(module.body.block.first_op)(*inputs)  # type: ignore[arg-type]
    exe = compile_for_cpu(module)
    assert isinstance(exe, cpu_jit.CpuFunction) and not exe.fallbacks
    with np.errstate(all="ignore"):
        assert_same(exe(*inputs), want)


def tiny_gpt_step(compiled: bool):
    """A 1-layer GPT of examples/gpt_shakespeare.py (16 wide, T 8, batch 2) with its clipped AdamW step."""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import gpt_shakespeare as ex

    cfg = replace(ex.CONFIGS["cpu"], n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=2, vocab_size=11)
    model, opt, _ = ex.make(cfg, 7)

    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        pg.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return loss

    return model, pg.compile(step) if compiled else step


def tiny_mlp_step(compiled: bool):
    pg.manual_seed(3)
    model = pg.nn.Sequential(pg.nn.Linear(6, 32), pg.nn.GELU(), pg.nn.LayerNorm(32), pg.nn.Linear(32, 5))
    return classifier_step(model, compiled)


def classifier_step(model: pg.nn.Module, compiled: bool):
    """``model`` and an Adam step on its cross-entropy (compiled or eager)."""
    opt = pg.optim.Adam(model.parameters(), lr=1e-2)

    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return model, pg.compile(step) if compiled else step


def tiny_conv_step(compiled: bool):
    """Convolutions as the DDPM's U-Net has them (3x3 padded, stride 2, 1x1; GroupNorm, SiLU): their im2col
    gathers read the input through the permutes and pads that ``pg-fuse{movement}`` joins to them. (The convolution
    before the GroupNorm has no bias: the norm removes it, so its gradient would be rounding noise, which Adam
    scales up to steps of 1e-3 of either sign.)"""
    pg.manual_seed(4)
    nn = pg.nn
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), nn.SiLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(36, 5),
    )  # fmt: skip
    return classifier_step(model, compiled)


INPUTS = {tiny_mlp_step: (7, 6), tiny_conv_step: (7, 2, 6, 6)}


@pytest.mark.parametrize("make", [tiny_mlp_step, tiny_gpt_step, tiny_conv_step], ids=["mlp", "gpt", "conv"])
def test_train_steps_match_the_numpy_executor_and_eager(make, monkeypatch, rng: np.random.Generator) -> None:
    """Three compiled steps on the JIT give the losses and parameters of the numpy executor's compiled steps and of
    eager steps (float32 tolerance)."""
    vocab, shape = (11, (2, 8)) if make is tiny_gpt_step else (5, (7,))
    batches = []
    for _ in range(3):
        x = rng.integers(0, vocab, shape) if make is tiny_gpt_step else rng.standard_normal(INPUTS[make])
        x = x.astype(np.float32) if make is not tiny_gpt_step else x
        batches.append((x, rng.integers(0, vocab, shape)))
    runs = {}
    for label, jit, compiled in (("jit", "1", True), ("numpy", "0", True), ("eager", "1", False)):
        monkeypatch.setenv(cpu_jit.ENABLE_ENV, jit)
        model, step = make(compiled)
        losses = [step(pg.tensor(x), pg.tensor(y)).item() for x, y in batches]
        runs[label] = (losses, [p.numpy().copy() for p in model.parameters()])
    for other in ("numpy", "eager"):
        np.testing.assert_allclose(runs["jit"][0], runs[other][0], rtol=1e-5, err_msg=other)
        for a, b in zip(runs["jit"][1], runs[other][1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=other)


def test_two_threads_split_a_nest(rng: np.random.Generator) -> None:
    """A nest with more than ``PARALLEL_WORK`` iterations runs on two threads, each over half of its first
    dimension, with the single-threaded result."""
    a = pg.tensor(rng.standard_normal((256, 300)).astype(np.float32))

    @pg.compile
    def f(x: pg.Tensor) -> pg.Tensor:
        return (x.exp() * x.tanh()).sum(dim=1) + x.erf().max()

    want = np.exp(a.numpy()) * np.tanh(a.numpy())
    before = pg.get_num_threads()
    try:
        out = {}
        for n in (1, 2):
            pg.set_num_threads(n)
            out[n] = f(a).numpy()
    finally:
        pg.set_num_threads(before)
    np.testing.assert_array_equal(out[1], out[2])
    from scipy import special

    np.testing.assert_allclose(out[1], want.sum(1) + special.erf(a.numpy()).max(), rtol=1e-5)


def test_a_kernel_without_llvm_form_runs_with_numpy(monkeypatch, capfd, rng: np.random.Generator) -> None:
    """Kernels whose nests the emitter rejects run their launch with numpy (per kernel), with the same results,
    and ``PICOGRAD_CPU_JIT_DEBUG=1`` names them."""
    op = OPS["lower-reductions"]
    module, inputs = step_module(op, op.inputs(rng))
    want = compile_func(module.body.block.first_op)(*inputs)  # type: ignore[arg-type]
    emit = llvm_ir.emit_nest

    def picky(nest, name):
        if nest.attributes["pg.kind"].data == "reduction":  # type: ignore[union-attr]
            raise llvm_ir.Unsupported("test")
        return emit(nest, name)

    monkeypatch.setattr(llvm_ir, "emit_nest", picky)
    monkeypatch.setenv(cpu_jit.DEBUG_ENV, "1")
    exe = compile_for_cpu(module)
    assert isinstance(exe, cpu_jit.CpuFunction) and exe.fallbacks and exe.jitted
    assert "kernels run with numpy" in capfd.readouterr().err
    assert_same(exe(*inputs), want)


def test_index_checks_raise_in_a_jit_step() -> None:
    """A gather's index check in a compiled step on the JIT raises ``IndexError`` naming the bad index."""
    table = pg.tensor(np.arange(12, dtype=np.float32).reshape(4, 3))

    @pg.compile
    def f(i: pg.Tensor) -> pg.Tensor:
        return table[i].sum()

    assert f(pg.tensor(np.array([0, 3]))).item() == 0 + 1 + 2 + 9 + 10 + 11
    with pytest.raises(IndexError, match="7"):
        f(pg.tensor(np.array([1, 7])))


def test_float_literals_and_casts_follow_numpy() -> None:
    """Literals print exactly (the f32 rounding of 0.1 stays that value); float-to-int conversion of NaN and
    out-of-range values gives the smallest integer, as numpy on x86."""
    assert float.fromhex("0x1.99999a0000000p-4") == float(np.float32(0.1))
    assert llvm_ir.float_literal(float(np.float32(0.1))) == "0x3FB99999A0000000"
    x = pg.tensor(np.array([1.5, -2.5, np.nan, 1e30], np.float32))

    @pg.compile
    def f(t: pg.Tensor) -> pg.Tensor:
        return (t * 2).to(pg.int64)

    with np.errstate(all="ignore"):
        want = (x.numpy() * 2).astype(np.int64)
    np.testing.assert_array_equal(f(x).numpy(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_math_functions_at_extreme_arguments_follow_numpy(dtype: type, monkeypatch) -> None:
    """exp, erf, sin and exp2 (whose argument reductions convert a float to an integer: a saturating conversion made
    of selects around LLVM's plain one, so that their loops vectorize) at NaN, infinities, huge and tiny values give
    what numpy gives; the emitted IR has no ``llvm.fptosi.sat``, which kept such loops scalar."""
    texts: list[str] = []
    module_text = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(module_text(*a)) or texts[-1])
    special = [np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9, -3e9, 88.5, -103.0, 0.75, -2.5, 0.0, 1e-30]
    rng = np.random.default_rng(5)
    x = np.concatenate([special, rng.standard_normal(64) * 10]).astype(dtype)

    @pg.compile
    def f(t: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor, pg.Tensor]:
        return t.exp(), t.erf(), t.sin(), t.exp2()

    with np.errstate(all="ignore"):
        got = [a.numpy() for a in f(pg.tensor(x))]
        erf = np.array([math.erf(v) if not np.isnan(v) else np.nan for v in x.astype(np.float64)])
        want = [np.exp(x), erf.astype(dtype), np.sin(x), np.exp2(x)]
    moderate = ~(np.abs(x) > 1e10)  # sin's argument reduction stops there (1e30 gives inf: a known limit)
    for name, a, b in zip(("exp", "erf", "sin", "exp2"), got, want, strict=True):
        keep = moderate if name == "sin" else np.ones_like(moderate)
        np.testing.assert_allclose(a[keep], b[keep], rtol=4 * float(np.finfo(dtype).eps), atol=0, err_msg=name)
    assert texts and all("fptosi.sat" not in t and "fptosi " in t for t in texts)


def test_integer_division_wraps_as_numpy_and_zero_divisors_raise_as_eager() -> None:
    """Integer ``//`` of ``INT_MIN // -1`` wraps, as numpy (LLVM leaves it undefined; x86's idiv traps), and
    ``remainder`` gives what eager gives; a zero divisor raises eager's ``RuntimeError`` (as torch), not a trap."""
    a = np.array([7, -7, 7, -7, np.iinfo(np.int64).min, 5, -9], np.int64)
    b = np.array([2, 2, -2, 3, -1, 7, -4], np.int64)

    @pg.compile
    def f(x: pg.Tensor, y: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        return x // y, pg.remainder(x, y)

    with np.errstate(all="ignore"):
        want = (a // b, pg.remainder(pg.tensor(a), pg.tensor(b)).numpy())
        got = f(pg.tensor(a), pg.tensor(b))
    np.testing.assert_array_equal(got[0].numpy(), want[0])
    np.testing.assert_array_equal(got[1].numpy(), want[1])
    zero = b.copy()
    zero[3] = 0
    with pytest.raises(RuntimeError, match="division by zero"):
        (pg.tensor(a) // pg.tensor(zero)).numpy()
    with pytest.raises(RuntimeError, match="division by zero"):
        f(pg.tensor(a), pg.tensor(zero))


def test_object_code_is_cached_between_compiles(tmp_path, monkeypatch, rng: np.random.Generator) -> None:
    """A module compiled once is read back from ``PICOGRAD_CACHE_DIR`` (no LLVM optimization the second time),
    with the same results."""
    monkeypatch.setenv(cpu_jit.CACHE_ENV, str(tmp_path))
    module, inputs = step_module(OPS["lower-pointwise"], OPS["lower-pointwise"].inputs(rng))
    first = compile_for_cpu(module)
    assert len(list((tmp_path / "cpu_jit").glob("*.o"))) == 1
    llvm = cpu_jit.host_llvm().llvm
    monkeypatch.setattr(llvm, "create_pass_builder", lambda *a: pytest.fail("optimized a cached module"))
    second = compile_for_cpu(module)
    with np.errstate(all="ignore"):
        assert_same(second(*inputs), first(*inputs), rtol=0)


@pytest.mark.parametrize("variant", ["causal-dropout", "bool-mask"])
def test_attention_kernels_run_with_numpy_blas(variant: str, monkeypatch, rng: np.random.Generator) -> None:
    """Attention kernels (forward with its lse, and the three-result backward) run through numpy's BLAS, not as
    loop nests: the compiled step's output and every gradient are the numpy executor's (dropout drawn from the
    same generator state) and no kernel falls back."""
    q, k, v = (rng.standard_normal((2, 3, 9, 8)).astype(np.float32) for _ in range(3))
    mask = rng.random((9, 9)) < 0.7
    mask[:, 0] = True

    def step(q: pg.Tensor, k: pg.Tensor, v: pg.Tensor) -> tuple[pg.Tensor, ...]:
        if variant == "bool-mask":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=pg.tensor(mask))
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.25)
        (out * out).sum().backward()
        return out, q.grad, k.grad, v.grad  # type: ignore[return-value]

    emit = llvm_ir.emit_nest

    def no_attention_nests(nest, name):
        assert nest.attributes["pg.kind"].data != "attention"  # type: ignore[union-attr]
        return emit(nest, name)

    monkeypatch.setattr(llvm_ir, "emit_nest", no_attention_nests)
    results = {}
    for jit in ("1", "0"):
        monkeypatch.setenv(cpu_jit.ENABLE_ENV, jit)
        pg.manual_seed(5)
        args = [pg.tensor(a, requires_grad=True) for a in (q, k, v)]
        results[jit] = [t.numpy() for t in pg.compile(step)(*args)]
    for got, want in zip(results["1"], results["0"], strict=True):
        # f32 sums in two orders (BLAS against the numpy executor): within a few ulps of the largest magnitude (an
        # absolute 1e-6 failed once, by 1.3e-6, on a gradient element that cancels)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6 * max(1.0, float(np.abs(want).max())))
    assert np.abs(results["1"][1]).max() > 0


def test_two_threads_run_regions(monkeypatch, rng: np.random.Generator) -> None:
    """At two threads a run of nests holding a nest worth splitting is one parallel region (split nests and
    sequences of small ones), between matmuls (BLAS threads itself), with the results of one thread."""
    monkeypatch.setattr(cpu_jit, "PARALLEL_WORK", 2000)
    a = rng.standard_normal((96, 40)).astype(np.float32)
    b = rng.standard_normal((40, 70)).astype(np.float32)
    c = rng.standard_normal((40, 130)).astype(np.float32)

    @pg.compile
    def f(x: pg.Tensor, y: pg.Tensor, z: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        h = (x @ y).tanh() * 2.0 + 1.0
        return h.sum(dim=0) + y.sum(), (x @ z).exp().mean(dim=1) * x.max()

    a64, b64, c64 = (x.astype(np.float64) for x in (a, b, c))
    terms = np.tanh(a64 @ b64) * 2 + 1
    want = terms.sum(0) + b64.sum(), np.exp(a64 @ c64).mean(1) * a64.max()
    # f32 sums of 96 and 2,800 terms that cancel: an absolute error of the terms' magnitudes, not of the result's
    scale = np.abs(terms).sum(0) + np.abs(b64).sum(), np.abs(want[1])
    made = []
    init = cpu_jit.CpuFunction.__init__
    monkeypatch.setattr(cpu_jit.CpuFunction, "__init__", lambda self, *args: (init(self, *args), made.append(self))[0])
    before = pg.get_num_threads()
    got = {}
    try:
        for n in (1, 2):
            pg.set_num_threads(n)
            got[n] = [g.numpy() for g in f(pg.tensor(a), pg.tensor(b), pg.tensor(c))]
            for g, w, m in zip(got[n], want, scale, strict=True):
                assert np.all(np.abs(g - w) <= 1e-4 * np.abs(w) + 1e-6 * m + 1e-6)
    finally:
        pg.set_num_threads(before)
    for one, two in zip(got[1], got[2], strict=True):
        np.testing.assert_array_equal(one, two)
    assert any(name.startswith("region") for name in made[0].step_names[True])
    assert any("region:" in name and "matmul" in name for name in made[0].joined_names)  # one job with the matmuls
    assert not any(name.startswith("region") for name in made[0].step_names[False])


def test_runs_of_nests_are_one_call(rng: np.random.Generator) -> None:
    """Consecutive nests run as one call of a sequence function (at one thread: all of them between matmuls),
    with the numpy executor's results."""
    op = OPS["lower-reductions"]
    module, inputs = step_module(op, op.inputs(rng))
    want = compile_func(module.body.block.first_op)(*inputs)  # type: ignore[arg-type]
    exe = compile_for_cpu(module)
    assert isinstance(exe, cpu_jit.CpuFunction)
    assert any(name.startswith("run") for name in exe.step_names[False])
    assert len(exe.step_names[False]) < len(exe.jitted)
    assert_same(exe(*inputs), want)


def test_scatter_add_nest_runs_its_rows_outside(monkeypatch, rng: np.random.Generator) -> None:
    """The embedding's gradient (a scatter-add over rows, repeated ids) runs with its loops over the ids outside
    the loop over the columns (which then reads and writes rows contiguously), with the numpy executor's result."""
    taken = []
    plan = llvm_ir._interchange_stores
    monkeypatch.setattr(llvm_ir, "_interchange_stores", lambda *a: taken.append(plan(*a)) or taken[-1])
    emb = pg.nn.Embedding(7, 40)
    ids = rng.integers(0, 7, (5, 9))
    w = rng.standard_normal((5, 9, 40)).astype(np.float32)

    def step(x: pg.Tensor, g: pg.Tensor) -> pg.Tensor:
        emb.weight.grad = None
        (emb(x) * g).sum().backward()
        return emb.weight.grad

    want = np.zeros((7, 40), np.float32)
    np.add.at(want, ids, w)
    got = pg.compile(step)(pg.tensor(ids), pg.tensor(w))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert any(t is not None for t in taken)


def test_reduction_loops_around_loops_are_not_vectorized(monkeypatch, rng: np.random.Generator) -> None:
    """A sum over the batch and the spatial dims of (N, C, H, W) (GroupNorm's weight gradient) marks its loop over
    the batch, which holds the spatial loops, as not to be vectorized (each such loop its own loop ID), and gives the
    numpy executor's result."""
    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    x, g = (rng.standard_normal((6, 8, 4, 4)).astype(np.float32) for _ in range(2))

    def step(a: pg.Tensor, b: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        return (a * b).sum((0, 2, 3)), (a * a).sum((0, 2, 3))

    got = pg.compile(step)(pg.tensor(x), pg.tensor(g))
    np.testing.assert_allclose(got[0].numpy(), (x * g).sum((0, 2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1].numpy(), (x * x).sum((0, 2, 3)), rtol=1e-5, atol=1e-5)
    (text,) = texts
    assert llvm_ir.NO_VECTORIZE not in text
    loop_ids = [line.split(" = ")[0] for line in text.splitlines() if "= distinct !{" in line]
    assert len(loop_ids) >= 2 and len(set(loop_ids)) == len(loop_ids)
    assert all(text.count(f"!llvm.loop {i}\n") == 1 for i in loop_ids)


def test_convolution_windows_are_copied_as_rows(monkeypatch, rng: np.random.Generator) -> None:
    """A padded 3x3 convolution's train step (16 channels): the im2col gathers copy rows of channels from the
    channels-last input without a branch for the padding (the padded read is a select, so their inner loop
    vectorizes; its loop ID forbids unrolling it first), and the output, input and weight gradients are those of
    float64 numpy."""
    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    n, c, o, h, w = 2, 16, 4, 5, 6
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    k = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    g = rng.standard_normal((n, o, h, w)).astype(np.float32)

    def step(a: pg.Tensor, b: pg.Tensor, dy: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
        a.requires_grad_(True)
        b.requires_grad_(True)
        y = F.conv2d(a, b, padding=1)
        (y * dy).sum().backward()
        return y, a.grad, b.grad

    got = pg.compile(step)(pg.tensor(x), pg.tensor(k), pg.tensor(g))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want_y = np.zeros((n, o, h, w))
    dxp = np.zeros_like(xp)
    want_dk = np.zeros((o, c, 3, 3))
    for i in range(3):
        for j in range(3):
            window = xp[:, :, i : i + h, j : j + w]
            want_y += np.einsum("nchw,oc->nohw", window, k[:, :, i, j])
            dxp[:, :, i : i + h, j : j + w] += np.einsum("nohw,oc->nchw", g, k[:, :, i, j])
            want_dk[:, :, i, j] = np.einsum("nohw,nchw->oc", g, window)
    for got_value, want in zip(got, (want_y, dxp[:, :, 1:-1, 1:-1], want_dk), strict=True):
        np.testing.assert_allclose(got_value.numpy(), want, rtol=1e-4, atol=1e-4)
    (text,) = texts
    assert "\nthen" not in text  # no branch around a padded read
    assert '!"llvm.loop.unroll.disable"' in text
    unrolled = [line.split(" = ")[0] for line in text.splitlines() if line.endswith(", !1}")]
    assert unrolled and all(text.count(f"!llvm.loop {i}\n") == 1 for i in unrolled)


def test_group_indices_are_affine(monkeypatch, rng: np.random.Generator) -> None:
    """GroupNorm's reshapes to (N, G, C/G * H * W) and back index the group as (c H W + h W + w) // (C/G H W): the
    emitter folds such quotients and remainders of bounded indices by their ranges (here to c // (C/G)), so a
    group's statistics are loop-invariant: fewer divisions than without the folding (those left split one
    flattened loop index); values as float64 numpy. (Without the split of loops at their divisors, whose loop
    shapes, and so the reductions' summation order, differ between the two runs: its own test below.)"""
    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setattr(llvm_ir, "_split_at_divisors", lambda nest: nest)
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    x = rng.standard_normal((3, 8, 4, 4)).astype(np.float32)
    gamma, beta = rng.standard_normal((2, 8)).astype(np.float32)

    def step(a: pg.Tensor, g: pg.Tensor, b: pg.Tensor) -> pg.Tensor:
        a.requires_grad_(True)
        y = F.group_norm(a, 2, g, b)
        (y * y).sum().backward()  # d/da of sum(y^2): 2 y's vjp; its kernels index the groups again
        return y, a.grad

    got = pg.compile(step)(pg.tensor(x), pg.tensor(gamma), pg.tensor(beta))
    monkeypatch.setattr(llvm_ir, "_scaled", lambda v: None)
    monkeypatch.setattr(llvm_ir, "_index_bound", lambda v: None)
    unfolded = pg.compile(step)(pg.tensor(x), pg.tensor(gamma), pg.tensor(beta))
    for a, b in zip(got, unfolded, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    xs = x.astype(np.float64).reshape(3, 2, -1)
    want = ((xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    want = want * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-4, atol=1e-4)
    # divisions of computed indices (not of a loop's induction variable, %i...)
    folded, plain = (len(re.findall(r" = u(?:div|rem) i64 %v", t)) for t in texts)
    assert folded < plain, (folded, plain)


def test_short_loops_run_as_one_flat_loop(monkeypatch, rng: np.random.Generator) -> None:
    """Perfectly nested loops of a few iterations each (the rows of an 8x8 or 4x4 image) whose loads and stores all
    advance with the flat index run as one loop over their product (``llvm_ir._flattened``, ``_flat_dims``), which
    LLVM vectorizes: a convolution's bias gradient, GroupNorm forward and backward, and a channels-last operand
    read through a permute (a strided load in the flat loop). Values as float64 numpy; elementwise results the
    same bits as the nested loops'; a 3x5 image (not a power of two) is not merged. (Without the split of
    reductions at their divisors, which sums in another order nested than flat: its own test below.)"""
    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setattr(llvm_ir, "_split_at_divisors", lambda nest: nest)
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")

    def step(a: pg.Tensor, cl: pg.Tensor, g: pg.Tensor, b: pg.Tensor) -> tuple[pg.Tensor, ...]:
        a.requires_grad_(True)
        y = F.group_norm(a, 2, g, b)
        z = y * cl.permute(0, 3, 1, 2)  # cl: channels last
        (z * z).sum().backward()
        return z.sum((0, 2, 3)), y * 2.0 + 1.0, a.grad

    for shape, merged in (((3, 8, 8, 8), True), ((5, 4, 4, 4), True), ((3, 4, 3, 5), False)):
        n, c, h, w = shape
        x = rng.standard_normal(shape).astype(np.float32)
        cl = rng.standard_normal((n, h, w, c)).astype(np.float32)
        gamma, beta = rng.standard_normal((2, c)).astype(np.float32)
        args = [pg.tensor(v) for v in (x, cl, gamma, beta)]
        texts.clear()
        got = [v.numpy() for v in pg.compile(step)(*args)]
        flat = any(re.search(rf"icmp slt i64 %i\d+, {h * w}\b", t) for t in texts)
        assert flat == merged, shape
        with monkeypatch.context() as m:
            m.setattr(llvm_ir, "FLATTEN_BELOW", 0)
            nested = [v.numpy() for v in pg.compile(step)(*args)]
        np.testing.assert_array_equal(got[1], nested[1])  # elementwise: the same operations on each element
        xs = x.astype(np.float64).reshape(n, 2, -1)
        norm = ((xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 1e-5)).reshape(shape)
        y64 = norm * gamma[:, None, None].astype(np.float64) + beta[:, None, None]
        z64 = y64 * cl.astype(np.float64).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got[0], z64.sum((0, 2, 3)), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[1], 2 * y64 + 1, rtol=1e-5, atol=1e-5)
        for k in (0, 2):
            np.testing.assert_allclose(got[k], nested[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reductions_split_at_their_divisors(monkeypatch, dtype, rng: np.random.Generator) -> None:
    """A reduction over a reshaped dim (GroupNorm's channels of a group x pixels, the channel ``i // (H W)``) runs
    as a perfect nest over the digits of its index (``llvm_ir._split_at_divisors``): the per-channel parameters are
    loaded once per channel, not gathered at every element, and the pixels merge into one flat loop (an
    elementwise nest's dims but its first likewise, as GroupNorm's normalization): fewer loops over a whole group.
    Values (forward and input gradient, odd batch, 3 groups of 4
    channels of 4 x 4 pixels) as float64 numpy and PyTorch, and as without the split."""
    import torch

    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    shape = (5, 12, 4, 4)
    x = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal((2, 12)).astype(dtype)
    seed = rng.standard_normal(shape).astype(dtype)

    def step(a: pg.Tensor, g: pg.Tensor, b: pg.Tensor, s: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor]:
        a.requires_grad_(True)
        y = F.group_norm(a, 3, g, b)
        (y * s).sum().backward()
        return y, a.grad

    args = [pg.tensor(v) for v in (x, gamma, beta, seed)]
    got = [v.numpy() for v in pg.compile(step)(*args)]
    (split,) = texts
    with monkeypatch.context() as m:
        m.setattr(llvm_ir, "_split_at_divisors", lambda nest: nest)
        texts.clear()
        plain = [v.numpy() for v in pg.compile(step)(*args)]
        (unsplit,) = texts
    whole = re.compile(r"icmp slt i64 %i\d+, 64\n")  # a loop over a group's 4 x 16 elements
    assert len(whole.findall(split)) < len(whole.findall(unsplit))
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    gt, bt, st = (torch.tensor(v.astype(np.float64)) for v in (gamma, beta, seed))
    yt = torch.nn.functional.group_norm(xt, 3, gt, bt)
    (yt * st).sum().backward()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for value, want, other in zip(got, (yt.detach().numpy(), xt.grad.numpy()), plain, strict=True):
        np.testing.assert_allclose(value, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(value, other, rtol=tol, atol=tol)


def test_two_threads_cut_matmuls_between_the_pools_threads(monkeypatch, rng: np.random.Generator) -> None:
    """At two threads a product of at least ``SPLIT_MATMUL_FLOPS`` is cut into one block per thread (rows when the
    output is tall, columns when it is wide), each a single-threaded BLAS call on the pool (native ``cblas`` calls
    where numpy's BLAS is OpenBLAS, else ``np.matmul`` callbacks), BLAS left at one thread during the step and
    restored after; the results as float64 numpy's and as one thread's. A smaller product is one call."""
    from picograd.runtime import threads

    monkeypatch.setattr(cpu_jit, "SPLIT_MATMUL_FLOPS", 10_000)
    a = rng.standard_normal((90, 30)).astype(np.float32)
    b = rng.standard_normal((30, 20)).astype(np.float32)
    c = rng.standard_normal((20, 90)).astype(np.float32)

    @pg.compile
    def f(x: pg.Tensor, y: pg.Tensor, z: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
        return x @ y, z @ x, y[:2] @ z[:, :3]  # tall, wide, small

    want = [p.astype(np.float64) @ q.astype(np.float64) for p, q in ((a, b), (c, a), (b[:2], c[:, :3]))]
    cuts: list[tuple[int, ...]] = []
    matmul = np.matmul

    def spy(p, q, out=None):
        cuts.append(out.shape)
        return matmul(p, q, out=out)

    before = pg.get_num_threads()
    got = {}
    try:
        for n in (1, 2):
            pg.set_num_threads(n)
            cuts.clear()
            monkeypatch.setattr(np, "matmul", spy)
            got[n] = [g.numpy() for g in f(pg.tensor(a), pg.tensor(b), pg.tensor(c))]
            monkeypatch.setattr(np, "matmul", matmul)
            for g, w in zip(got[n], want, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
            if n == 2 and cpu_jit.blas_library() is None:  # np.matmul on the pool's threads
                assert sorted(s[-2:] for s in cuts) == [(2, 3), (20, 15), (20, 15), (45, 20), (45, 20)], cuts
            elif n == 2:  # native BLAS calls (cpu_blas), no numpy
                assert cuts == []
            blas = threads._blas_libraries()
            assert all(lib.num_threads == n for lib in blas)  # restored after the step
    finally:
        pg.set_num_threads(before)
    # one thread may run a product on picograd's tile kernel and two cut it into BLAS calls: the same sums in another
    # order, so the two agree to f32 accumulation (K * 2**-23 * |p| @ |q| each), not bit for bit
    operands = ((a, b), (c, a), (b[:2], c[:, :3]))
    for one, two, (p, q) in zip(got[1], got[2], operands, strict=True):
        bound = 2 * p.shape[1] * 2.0**-23 * (np.abs(p.astype(np.float64)) @ np.abs(q.astype(np.float64)))
        assert np.all(np.abs(one.astype(np.float64) - two) <= bound)


def test_nests_striding_across_their_first_dim_are_not_split(monkeypatch, rng: np.random.Generator) -> None:
    """A column sum (its first dim the contiguous index of loads strided by its rows) is never split between
    threads; a row sum and an elementwise nest are. Values as float64 numpy at 1 and 2 threads."""
    made: list[llvm_ir.NestFunction] = []
    emit = llvm_ir.emit_nest
    monkeypatch.setattr(llvm_ir, "emit_nest", lambda *a: made.append(emit(*a)) or made[-1])
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    x = rng.standard_normal((300, 40)).astype(np.float32)

    @pg.compile
    def f(a: pg.Tensor) -> tuple[pg.Tensor, pg.Tensor, pg.Tensor]:
        return a.sum(0), a.sum(1), a * 3.0

    before = pg.get_num_threads()
    try:
        for n in (1, 2):
            pg.set_num_threads(n)
            got = [g.numpy() for g in f(pg.tensor(x))]
            x64 = x.astype(np.float64)
            for g, w in zip(got, (x64.sum(0), x64.sum(1), 3 * x64), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    finally:
        pg.set_num_threads(before)
    by_upper = {(m.upper, m.splits) for m in made}
    assert (40, False) in by_upper and (300, True) in by_upper, by_upper


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_transposing_copies_run_in_register_blocks(dtype: type, monkeypatch, rng: np.random.Generator) -> None:
    """A permute whose last dim moves (channels first to channels last and back, a 3-D swap) runs in 8 x 8 blocks
    transposed with shuffles where the two dims allow (multiples of 8, not the first dim), elementwise otherwise:
    the same values as numpy's transpose, at 1 and 2 threads."""
    texts: list[str] = []
    make = llvm_ir.module_text
    monkeypatch.setattr(llvm_ir, "module_text", lambda *a: texts.append(make(*a)) or texts[-1])
    monkeypatch.setenv("PICOGRAD_CACHE_DIR", "")
    cases = [((3, 16, 8, 8), (0, 2, 3, 1), True), ((2, 8, 8, 24), (0, 3, 1, 2), True), ((5, 24, 16), (0, 2, 1), True)]
    cases += [((3, 12, 8, 8), (0, 2, 3, 1), False), ((16, 8, 3), (1, 0, 2), False)]
    before = pg.get_num_threads()
    try:
        for shape, perm, blocked in cases:
            x = (rng.standard_normal(shape) * 100).astype(dtype)

            def f(a: pg.Tensor, perm=perm) -> pg.Tensor:
                return (a + a).permute(*perm) * 1  # the permute a kernel of its own, between two others

            for n in (1, 2):
                pg.set_num_threads(n)
                texts.clear()
                got = pg.compile(f)(pg.tensor(x)).numpy()
                np.testing.assert_array_equal(got, (x + x).transpose(perm))
                assert any("shufflevector" in t for t in texts) == blocked, (shape, perm)
    finally:
        pg.set_num_threads(before)


def test_flat_loops_and_block_transposes_on_random_layouts(rng: np.random.Generator) -> None:
    """Random 4-D shapes (dims of 1 to 16, powers of two and not) through a random permute, a reshape that splits
    and merges dims (GroupNorm's grouping), elementwise math, sums over random dims and a permute back: the JIT
    step (flat loops, affine addresses, block transposes where they apply) against the numpy executor."""
    sizes = (1, 2, 3, 4, 8, 16)
    for case in range(16):
        shape = tuple(int(rng.choice(sizes)) for _ in range(4))
        perm = tuple(int(p) for p in rng.permutation(4))
        dims = tuple(sorted(int(d) for d in rng.choice(4, size=int(rng.integers(1, 4)), replace=False)))
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal(tuple(shape[p] for p in perm)).astype(np.float32)

        def f(a: pg.Tensor, b: pg.Tensor, perm=perm, dims=dims) -> tuple[pg.Tensor, ...]:
            t = a.permute(*perm) * b + 1.0
            n0, n1, n2, n3 = t.shape
            g = t.reshape(n0, n1 * n2, n3).exp().reshape(n0, n1, n2, n3)
            s = (g * t).sum(dims)
            return s, (g * 2.0).permute(*np.argsort(perm).tolist()), t.reshape(-1, n3).sum(0)

        with np.errstate(all="ignore"):
            got = [v.numpy() for v in pg.compile(f)(pg.tensor(x), pg.tensor(y))]
        t64 = x.astype(np.float64).transpose(perm) * y + 1
        g64 = np.exp(t64)
        want = [(g64 * t64).sum(dims), (2 * g64).transpose(np.argsort(perm)), t64.reshape(-1, t64.shape[-1]).sum(0)]
        for k, (a, b) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3, err_msg=f"case {case} {shape} {perm} {dims} out {k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_blas_products_on_views(dtype: type, rng: np.random.Generator) -> None:
    """``cpu_blas.describe`` takes products of row- and column-major views (offsets into a buffer, batches with one
    stride, broadcast operands) and refuses what BLAS cannot take as it is; ``pg_gemm`` over any split of the
    split dimension (rows, columns, batch) gives float64 numpy's product."""
    from picograd.runtime import cpu_blas

    blas = cpu_jit.blas_library()
    if blas is None:
        pytest.skip("numpy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    nest = cpu_jit._NEST
    buf_a = rng.standard_normal(400).astype(dtype)
    buf_b = rng.standard_normal(400).astype(dtype)
    a3 = buf_a[3 : 3 + 210].reshape(6, 5, 7)
    b2 = buf_b[1 : 1 + 63].reshape(7, 9)
    b3 = buf_b[5 : 5 + 126].reshape(6, 7, 3)
    cases = [
        (a3, b2),  # batched a, shared b: batch split
        (a3[1], b2),  # 5 x 9: columns
        (a3.transpose(0, 2, 1)[:, 1:6, :], buf_b[:40].reshape(5, 8)),  # column-major a
        (a3, buf_b[2:65].reshape(9, 7).T),  # column-major b
        (a3[:1], b3),  # a broadcast over the batch
        (a3.reshape(3, 2, 5, 7), b3.reshape(3, 2, 7, 3)),  # two batch dims, one stride
        (buf_a[:390].reshape(39, 10), buf_b[:30].reshape(10, 3)),  # tall: rows
    ]
    for a, b in cases:
        base_a = buf_a if np.shares_memory(a, buf_a) else buf_b
        base_b = buf_b if np.shares_memory(b, buf_b) else buf_a
        c = np.full(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), np.nan, dtype)
        at = [(0, a.ctypes.data - base_a.ctypes.data), (1, b.ctypes.data - base_b.ctypes.data), (2, 0)]
        gemm = cpu_blas.describe(blas, a, b, c, at)
        assert gemm is not None, (a.shape, a.strides, b.shape, b.strides)
        slots = (ctypes.c_void_p * 3)(base_a.ctypes.data, base_b.ctypes.data, c.ctypes.data)
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        for split in (cpu_blas.SPLIT_ROWS, cpu_blas.SPLIT_COLS, cpu_blas.SPLIT_BATCH):
            c[...] = np.nan
            units = gemm.units[split]
            cut = int(rng.integers(0, units + 1))
            for lo, hi in ((0, cut), (cut, units)):
                nest(gemm.entry)(ctypes.addressof(slots), gemm.params(split), lo, hi)
            np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5, err_msg=f"{a.shape} @ {b.shape}, {split=}")
    refused = [
        (a3[:, :, ::2], buf_b[:12].reshape(4, 3)),  # a strided in both dims
        (a3.reshape(3, 2, 5, 7)[:, :1], b3.reshape(3, 2, 7, 3)),  # a broadcast in the middle: no single stride
    ]
    for a, b in refused:
        c = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), dtype)
        assert cpu_blas.describe(blas, a, b, c, [(0, 0), (1, 0), (2, 0)]) is None
    c = np.empty((5, 9), dtype)
    assert cpu_blas.describe(blas, a3[1], b2, c.T.copy().T, [(0, 0), (1, 0), (2, 0)]) is None  # output not row-major
    assert (
        cpu_blas.describe(blas, a3[1].astype(np.int64), b2.astype(np.int64), c.astype(np.int64), [(0, 0)] * 3) is None
    )


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_attention_slices_at_two_threads(causal: bool, dtype: type, monkeypatch, rng) -> None:
    """An attention without mask or dropout runs as native slices (``native_attention``: BLAS gemms and row
    kernels, causal row blocks; on the pool at two threads, on the calling thread at one), the forward's output and
    the three gradients those of the numpy executor, of ``cpu_attention``'s Python chunks and of float64 numpy."""
    from picograd.runtime import cpu_attention

    if cpu_jit.native_attention(np.dtype(dtype)) is None:
        pytest.skip("numpy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    monkeypatch.setattr(cpu_attention, "CAUSAL_BLOCK_ROWS", 2)  # 4 row blocks of 9 queries, against 7 keys
    q = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    k, v = (rng.standard_normal((2, 3, 7, 8)).astype(dtype) for _ in range(2))
    w = rng.standard_normal((2, 3, 9, 8)).astype(dtype)

    def step(q: pg.Tensor, k: pg.Tensor, v: pg.Tensor) -> tuple[pg.Tensor, ...]:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        (out * pg.tensor(w)).sum().backward()
        return out, q.grad, k.grad, v.grad  # type: ignore[return-value]

    ran: list[int] = []
    run_native = cpu_jit.CpuFunction._run_native

    def spy(self, fn: int, params: int, slices: int) -> bool:
        ran.append(slices)
        return run_native(self, fn, params, slices)

    monkeypatch.setattr(cpu_jit.CpuFunction, "_run_native", spy)
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    s = q64 @ k64.transpose(0, 1, 3, 2) / math.sqrt(8)
    if causal:
        s = np.where(np.tri(9, 7, dtype=bool), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want_out = p @ v64
    results = {}
    before = pg.get_num_threads()
    try:
        for label, jit, n in (("two", "1", 2), ("one", "1", 1), ("chunks", "1", 2), ("numpy", "0", 2)):
            monkeypatch.setenv(cpu_jit.ENABLE_ENV, jit)
            if label == "chunks":
                monkeypatch.setattr(cpu_jit, "native_attention", lambda dtype: None)
            pg.set_num_threads(n)
            ran.clear()
            args = [pg.tensor(a, requires_grad=True) for a in (q, k, v)]
            results[label] = [t.numpy() for t in pg.compile(step)(*args)]
            assert ran.count(6) == (2 if label in ("one", "two") else 0), ran  # 2 x 3 slices, forward and backward
    finally:
        pg.set_num_threads(before)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(results["two"][0], want_out, rtol=tol * 10, atol=tol * 10)
    for label in ("one", "chunks", "numpy"):
        for got, want in zip(results["two"], results[label], strict=True):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=label)
    assert np.abs(results["two"][2]).max() > 0


def test_native_blas_products_of_odd_views_across_thread_counts(monkeypatch, rng: np.random.Generator) -> None:
    """Products of transposed, sliced, step-sliced, permuted and broadcast views of odd and tiny shapes (1, 2, 3,
    17), float32 and float64, as native gemm entries cut between two threads (every product split), then at one
    thread (numpy) and at two again (the plans cached per thread count): fresh inputs each call, float64 numpy's
    results every time."""
    from picograd.runtime import cpu_blas

    if cpu_jit.blas_library() is None:
        pytest.skip("numpy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    monkeypatch.setattr(cpu_jit, "SPLIT_MATMUL_FLOPS", 0)
    described: list[bool] = []
    describe = cpu_blas.describe
    monkeypatch.setattr(cpu_blas, "describe", lambda *a: described.append((g := describe(*a)) is not None) or g)

    def f(x: pg.Tensor, y: pg.Tensor, z: pg.Tensor) -> tuple[pg.Tensor, ...]:
        return (
            x.T @ y[1:, 2:],
            x[::2] @ z[1].T,
            x[2:3].T @ y[1:2, :],
            x @ z.permute(0, 2, 1),
            x.T.unsqueeze(0) @ y[1:, :1],
        )

    def want(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        return x.T @ y[1:, 2:], x[::2] @ z[1].T, x[2:3].T @ y[1:2, :], x @ z.transpose(0, 2, 1), x.T[None] @ y[1:, :1]

    before = pg.get_num_threads()
    try:
        for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-12)):
            step = pg.compile(f)
            for n in (2, 1, 2):
                pg.set_num_threads(n)
                x, y, z = (rng.standard_normal(s).astype(dtype) for s in ((17, 3), (18, 19), (2, 1, 3)))
                got = [t.numpy() for t in step(pg.tensor(x), pg.tensor(y), pg.tensor(z))]
                for k, (g, w) in enumerate(zip(got, want(x, y, z), strict=True)):
                    assert g.shape == w.shape and g.dtype == dtype, (k, g.shape, w.shape)
                    np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{dtype.__name__} {n=} product {k}")
    finally:
        pg.set_num_threads(before)
    assert described.count(True) >= 8, described  # the gemm entries ran (not numpy's matmul alone)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("sizes", [(3, 5, 1, 3), (5, 2, 3, 1)], ids=["L3-S5-E1-EV3", "L5-S2-E3-EV1"])
def test_native_attention_of_odd_lengths_and_head_dims(sizes, causal: bool, monkeypatch, rng) -> None:
    """Native attention slices with fewer and more queries than keys, head dims 1 and 3 (values of another width),
    on views of a projection (transposed heads): at two threads, one, then two, fresh inputs each call, the
    output and gradients those of float64 numpy (PyTorch's top-left causal mask)."""
    if cpu_jit.native_attention(np.dtype(np.float32)) is None:
        pytest.skip("numpy's BLAS is not OpenBLAS (or threadpoolctl is missing)")
    ran: list[int] = []
    run_native = cpu_jit.CpuFunction._run_native
    monkeypatch.setattr(cpu_jit.CpuFunction, "_run_native", lambda self, *a: ran.append(a[2]) or run_native(self, *a))
    L, S, E, EV = sizes
    w = rng.standard_normal((2, L, 2 * EV))

    def step(q: pg.Tensor, kv: pg.Tensor) -> tuple[pg.Tensor, ...]:
        heads = q.reshape(2, L, 2, E).transpose(1, 2)
        k = kv[:, :, : 2 * E].reshape(2, S, 2, E).transpose(1, 2)
        v = kv[:, :, 2 * E :].reshape(2, S, 2, EV).transpose(1, 2)
        out = F.scaled_dot_product_attention(heads, k, v, is_causal=causal).transpose(1, 2).reshape(2, L, -1)
        (out * pg.tensor(w.astype(np.float32))).sum().backward()
        return out, q.grad, kv.grad  # type: ignore[return-value]

    def heads(a: np.ndarray, width: int) -> np.ndarray:  # (2, T, 2 * width) -> (2, 2, T, width)
        return a.astype(np.float64).reshape(2, a.shape[1], 2, width).transpose(0, 2, 1, 3)

    def merged(a: np.ndarray) -> np.ndarray:  # (2, 2, T, width) -> (2, T, 2 * width)
        return a.transpose(0, 2, 1, 3).reshape(2, a.shape[2], -1)

    compiled = pg.compile(step)
    before = pg.get_num_threads()
    try:
        for n in (2, 1, 2):
            pg.set_num_threads(n)
            q = rng.standard_normal((2, L, 2 * E)).astype(np.float32)
            kv = rng.standard_normal((2, S, 2 * (E + EV))).astype(np.float32)
            got = [t.numpy() for t in compiled(pg.tensor(q, requires_grad=True), pg.tensor(kv, requires_grad=True))]
            qh, k, v, do = heads(q, E), heads(kv[:, :, : 2 * E], E), heads(kv[:, :, 2 * E :], EV), heads(w, EV)
            s = qh @ k.transpose(0, 1, 3, 2) / math.sqrt(E)
            if causal:
                s = np.where(np.tri(L, S, dtype=bool), s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            dp = do @ v.transpose(0, 1, 3, 2)
            ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / math.sqrt(E)
            dk, dv = ds.transpose(0, 1, 3, 2) @ qh, p.transpose(0, 1, 3, 2) @ do
            want = [merged(p @ v), merged(ds @ k), np.concatenate([merged(dk), merged(dv)], -1)]
            for j, (g, x) in enumerate(zip(got, want, strict=True)):
                np.testing.assert_allclose(g, x, rtol=2e-4, atol=2e-4, err_msg=f"{n=} result {j}")
    finally:
        pg.set_num_threads(before)
    assert ran == [4] * 6, ran  # 2 x 2 slices natively, forward and backward, 3 calls


@pytest.mark.parametrize("threads", [1, 2])
def test_native_attention_of_an_empty_batch(threads: int) -> None:
    """An attention over no slices (a batch of 0) runs nothing natively: empty output and gradients at one and two
    threads, as eager (the pool refused a job entry of no pieces: ``ValueError`` at two threads)."""
    q, k, v = (np.ones(s, np.float32) for s in ((0, 3, 2), (0, 4, 2), (0, 4, 2)))

    def step(q: pg.Tensor, k: pg.Tensor, v: pg.Tensor) -> tuple[pg.Tensor, ...]:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()
        return out, q.grad, k.grad, v.grad  # type: ignore[return-value]

    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        got = pg.compile(step)(*(pg.tensor(a, requires_grad=True) for a in (q, k, v)))
    finally:
        pg.set_num_threads(before)
    assert [t.shape for t in got] == [(0, 3, 2), (0, 3, 2), (0, 4, 2), (0, 4, 2)]
