"""The fused attention kernel kind (issue 15): ``pg.attention_lse`` / ``pg.attention_backward`` in numpy against
the unfused decomposition and PyTorch, and the fused kernels on the loop stage (interpreter) and the PTX stage
(emulator, ptxas without spills) against the unfused decomposition in float64, forward and every gradient.

Shapes are tiny and the grid is chosen, not crossed: the emulator runs about 10**5 instructions a second. Every
case has fresh random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _ir import only_func
from _ptx_emulator import run_program
from test_loops import CTX, build, t, to_loops
from xdsl.dialects.builtin import ModuleOp, f32, f64, i1, i64
from xdsl.ir import Attribute

from picograd.dialects import kernel
from picograd.dialects import pg as pgd
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.passes.autodiff import PgAutodiff
from picograd.passes.decompose_attention import PgDecomposeAttention
from picograd.passes.fuse import PgFuse
from picograd.passes.schedule import PgSchedule
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def module(
    length: int, d: int, causal: bool, mask: str, heads: int = 2, decomposed: bool = False, el: Attribute = f64
) -> ModuleOp:
    """f(q, k, v[, mask], w[, seed, offset]) -> (out, dq, dk, dv) of ``sum(attention(q, k, v) * w)``, (heads, T, d)
    in f64; a padding mask is (T,) bool over the keys (``mask="pad"``) or a float (1, T, T) bias
    (``mask="float"``); ``mask="dropout"``: dropout 0.3 on the probabilities drawn from Philox as
    ``F.scaled_dot_product_attention`` draws it. ``decomposed``: the attention op is replaced by its ``pg``
    decomposition before autodiff (the unfused reference). ``el``: the element type of q, k, v and the weights."""
    shape = (heads, length, d)
    types = [t(*shape, el=el)] * 3
    if mask == "pad":
        types.append(t(length, el=i1))
    elif mask == "float":
        types.append(t(1, length, length, el=el))
    types.append(t(*shape, el=el))
    if mask == "dropout":
        types += [t(el=i64), t(el=i64)]

    def body(e, q, k, v, *rest):
        m = rest[0] if mask in ("pad", "float") else None
        drop = None
        if mask == "dropout":
            wide = f32 if pgd.is_low_precision(el) else el  # drawn in f32 for 16-bit attention, then cast
            scores = t(heads, length, length, el=wide)
            u = e(pgd.RandomOp("uniform", rest[-2], rest[-1], scores))
            keep = e(pgd.CmpOp("ge", u, e.const(0.3, wide, scores.get_shape())))
            drop = e(
                pgd.SelectOp(keep, e.const(1 / 0.7, wide, scores.get_shape()), e.const(0.0, wide, scores.get_shape()))
            )
            if wide != el:
                drop = e(pgd.CastOp(drop, el))
            rest = rest[:-2]
        out = e(pgd.ScaledDotProductAttentionOp(q, k, v, m, drop, 0.7 / d**0.5, causal))
        loss = e(pgd.SumOp(e(pgd.MulOp(out, rest[-1])), [0, 1, 2]))
        g = pgd.GradOp(loss, [q, k, v])
        e.block.add_op(g)
        return [out, *g.grads]

    mod = build(types, body)
    if decomposed:
        PgDecomposeAttention(all=True).apply(CTX, mod)
    PgAutodiff().apply(CTX, mod)
    return mod


def inputs(rng: np.random.Generator, length: int, d: int, mask: str, heads: int = 2) -> list[np.ndarray]:
    xs = [rng.standard_normal((heads, length, d)) for _ in range(3)]
    if mask == "pad":
        keep = np.ones(length, bool)
        keep[rng.integers(1, length) if length > 1 else 1 :] = False  # padding at the end, key 0 kept
        xs.append(keep)
    elif mask == "float":
        xs.append(rng.standard_normal((1, length, length)))
    xs.append(rng.standard_normal((heads, length, d)))
    if mask == "dropout":
        xs += [np.array(rng.integers(0, 2**40)), np.array(rng.integers(0, 2**20))]
    return xs


def reference(length: int, d: int, causal: bool, mask: str, xs: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    return compile_func(only_func(module(length, d, causal, mask, decomposed=True)))(*xs)  # the unfused ops


def close(got: tuple[np.ndarray, ...] | list[np.ndarray], want: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(want)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=name)


def fuse(mod: ModuleOp) -> None:
    PgDecomposeAttention().apply(CTX, mod)
    PgFuse().apply(CTX, mod)
    PgSchedule().apply(CTX, mod)


# ---------------------------------------------------------------------------------------------------------------
# The ops' numpy semantics


@pytest.mark.parametrize("causal,mask", [(True, "none"), (False, "pad"), (False, "none")])
def test_numpy_backward_matches_decomposition_and_torch(causal: bool, mask: str, rng: np.random.Generator) -> None:
    xs = inputs(rng, 9, 5, mask)
    mod = module(9, 5, causal, mask)
    ops = [op.name for op in only_func(mod).walk()]
    assert "pg.attention_backward" in ops and "pg.attention_lse" in ops and "pg.matmul" not in ops
    got = compile_func(only_func(mod))(*xs)
    close(got, reference(9, 5, causal, mask, xs))
    q, k, v = (torch.tensor(x, requires_grad=True) for x in xs[:3])
    m = torch.tensor(xs[3]) if mask == "pad" else None
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, m, is_causal=causal, scale=0.7 / 5**0.5)
    (out * torch.tensor(xs[-1])).sum().backward()
    for g, w in zip(got, (out, q.grad, k.grad, v.grad), strict=True):
        assert w is not None
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_fully_masked_rows_give_zeros(rng: np.random.Generator) -> None:
    """A padding mask that hides every key: zeros out and gradients (picograd's softmax), lse = -inf."""
    xs = inputs(rng, 4, 3, "pad")
    xs[3] = np.zeros(4, bool)
    got = compile_func(only_func(module(4, 3, False, "pad")))(*xs)
    for g in got:
        np.testing.assert_array_equal(g, 0.0)


def test_float_mask_backward_falls_back() -> None:
    """A float mask's gradient is a T x T tensor: the vjp stays decomposed (the forward is still fused)."""
    mod = module(5, 4, False, "float")
    fuse(mod)
    kinds = [op.kind.data for op in only_func(mod).walk() if isinstance(op, kernel.FusedOp)]
    assert kinds.count("attention") == 1 and "matmul" in kinds


# ---------------------------------------------------------------------------------------------------------------
# The fused kernels: loop stage and PTX stage


def test_kernels_are_fused(rng: np.random.Generator) -> None:
    mod = module(7, 8, True, "pad")
    fuse(mod)
    fused = [op for op in only_func(mod).walk() if isinstance(op, kernel.FusedOp)]
    attention = [op for op in fused if op.kind.data == "attention"]
    assert len(attention) == 2  # forward (out and lse), backward (dq, dk, dv)
    assert all(op.schedule is not None and op.schedule.strategy.data == "flash" for op in attention)
    assert len(attention[0].outputs) == 2 and len(attention[1].outputs) == 3
    assert not [op for op in fused if op.kind.data == "matmul"]  # no score matrix anywhere


LOOP_CASES = [
    (1, 8, True, "none", 2),
    (7, 8, True, "pad", 2),
    (16, 16, False, "pad", 1),
    (33, 8, False, "none", 1),
    (7, 8, True, "dropout", 1),
]


@pytest.mark.parametrize("length,d,causal,mask,heads", LOOP_CASES)
def test_loop_stage(length: int, d: int, causal: bool, mask: str, heads: int, rng: np.random.Generator) -> None:
    xs = inputs(rng, length, d, mask, heads)
    mod = to_loops(module(length, d, causal, mask, heads), fuse)
    assert not any(isinstance(op, kernel.LaunchOp) for op in mod.walk())
    want = compile_func(only_func(module(length, d, causal, mask, heads, decomposed=True)))(*xs)
    close(run_function(mod, "f", xs), want)


PTX_CASES = [
    (1, 8, False, "pad", 2),
    (7, 64, True, "none", 1),
    (16, 16, False, "pad", 1),
    (33, 8, True, "none", 1),
    (9, 8, False, "dropout", 1),
    (12, 8, True, "dropout", 2),  # keys a multiple of 4: the forward and dq draw once per 4 keys (SharedDraw)
]


@pytest.mark.parametrize("length,d,causal,mask,heads", PTX_CASES)
def test_ptx_stage(length: int, d: int, causal: bool, mask: str, heads: int, rng: np.random.Generator) -> None:
    xs = inputs(rng, length, d, mask, heads)
    program = compile_for_cuda(module(length, d, causal, mask, heads))
    assert {"k0_scaled_dot_product_attention", "k1_attention_backward_1", "k1_attention_backward_2"} <= set(
        program.kernels
    )
    assert not program.assemble(strict=True).spills
    want = compile_func(only_func(module(length, d, causal, mask, heads, decomposed=True)))(*xs)
    close(run_program(program, xs), want)


@pytest.mark.parametrize("d,el", [(128, "f32"), (64, "f32"), (128, "f64")])
def test_head_dims_assemble_without_spills(d: int, el: str) -> None:
    """ptxas -arch=sm_90 --warn-on-spills -Werror on the kernels at the largest head dims, T not a tile multiple."""
    from xdsl.dialects.builtin import f32

    element = f32 if el == "f32" else f64
    shape = (2, 300, d)

    def body(e, q, k, v, w):
        out = e(pgd.ScaledDotProductAttentionOp(q, k, v, None, None, d**-0.5, True))
        g = pgd.GradOp(e(pgd.SumOp(e(pgd.MulOp(out, w)), [0, 1, 2])), [q, k, v])
        e.block.add_op(g)
        return [out, *g.grads]

    mod = build([t(*shape, el=element)] * 4, body)
    PgAutodiff().apply(CTX, mod)
    program = compile_for_cuda(mod)
    result = program.assemble(strict=True)
    assert not result.spills and len([k for k in program.kernels if "attention" in k]) == 4


# ---------------------------------------------------------------------------------------------------------------
# The CPU runtime's blocked attention (picograd.runtime.cpu_attention)

CPU_CASES = [
    (9, 5, True, "none", 2, 1),
    (16, 8, False, "pad", 3, 2),
    (12, 4, True, "pad", 3, 2),
    (10, 6, False, "float", 2, 1),
    (7, 8, True, "dropout", 2, 1),
]


@pytest.mark.parametrize("length,d,causal,mask,heads,threads", CPU_CASES)
def test_cpu_blocked_attention(
    length: int, d: int, causal: bool, mask: str, heads: int, threads: int, monkeypatch, rng: np.random.Generator
) -> None:
    """The JIT CPU runtime runs the attention kernels as blocked BLAS products (several chunks of slices: a tile
    of one slice's scores; one or two threads; transposed operands copied or not), forward and every gradient
    against the unfused decomposition in float64; dropout kernels run with numpy (the launch's ops)."""
    import picograd as pg
    from picograd.driver.cpu_compile import compile_for_cpu
    from picograd.runtime import cpu_attention, cpu_jit

    monkeypatch.setattr(cpu_attention, "TILE_BYTES", length * length * 8)
    monkeypatch.setattr(cpu_attention, "CAUSAL_BLOCK_ROWS", 2)  # causal row blocks at these lengths too
    monkeypatch.setattr(cpu_attention, "TRANSPOSED_COPY_SCORES", 0 if causal else 1 << 30)  # both products' forms
    xs = inputs(rng, length, d, mask, heads)
    exe = compile_for_cpu(module(length, d, causal, mask, heads))
    assert isinstance(exe, cpu_jit.CpuFunction)
    blocked = [s for s in exe.step_names[False] if "attention" in s and s.endswith("(blas)")]
    assert len(blocked) == (0 if mask == "dropout" else 1 if mask == "float" else 2), exe.step_names
    before = pg.get_num_threads()
    try:
        pg.set_num_threads(threads)
        got = exe(*xs)
    finally:
        pg.set_num_threads(before)
    close(got, compile_func(only_func(module(length, d, causal, mask, heads, decomposed=True)))(*xs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_attention_row_kernels(dtype: type, rng: np.random.Generator) -> None:
    """The native row kernels of the CPU attention (``llvm_ir.row_kernels_text``) against numpy in float64: the
    softmax's row maximum (0 for a row of -inf, NaN propagated), exponentials and row sums; ``exp(s - c)`` with a
    -inf ``c``; ``(ds - d) * p * scale``; rows of lengths around the vector width."""
    from picograd.runtime import cpu_jit

    native = cpu_jit.row_kernels(np.dtype(dtype))
    tol = dict(rtol=3e-6, atol=1e-30) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-300)
    for n in (1, 7, 16, 33, 128):
        s = (3 * rng.standard_normal((2, 5, n))).astype(dtype)
        s[0, 1] = -np.inf  # a query without keys
        s[1, 2, rng.integers(n)] = np.nan
        if n > 1:
            s[1, 3, : n // 2] = -np.inf  # masked keys
        want_m = s.astype(np.float64).max(-1, keepdims=True)
        want_m[np.isneginf(want_m)] = 0
        with np.errstate(invalid="ignore"):
            want_p = np.exp(s.astype(np.float64) - want_m)
        m, total, p = np.empty((2, 5, 1), dtype), np.empty((2, 5, 1), dtype), s.copy()
        native.softmax(p, m, total)
        np.testing.assert_array_equal(m, want_m.astype(dtype))
        np.testing.assert_allclose(p, want_p, **tol)
        np.testing.assert_allclose(total, want_p.sum(-1, keepdims=True), **tol)

        c = rng.standard_normal((2, 5, 1)).astype(dtype)
        c[1, 4] = -np.inf
        e = s.copy()
        native.exp(e, c)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(e, np.exp(s.astype(np.float64) - np.where(np.isneginf(c), 0, c)), **tol)

        ds, d = rng.standard_normal((2, 5, n)).astype(dtype), rng.standard_normal((2, 5, 1)).astype(dtype)
        q = rng.standard_normal((2, 5, n)).astype(dtype)
        want = (ds.astype(np.float64) - d) * q * 0.25
        native.dsoftmax(ds, q, d, 0.25)
        np.testing.assert_allclose(ds, want, **tol)
