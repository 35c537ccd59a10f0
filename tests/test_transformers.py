"""Transformers (issue 11): the new API against PyTorch and numpy, ``pg.scaled_dot_product_attention`` on every
stage (numpy executor, loop interpreter, PTX emulator and ptxas), compiled-step behaviour (clip inside the graph,
schedules without retracing, train/eval guards, weight tying) and the bad-input errors.

Inputs are fresh random numbers; shapes are tiny."""

from __future__ import annotations

import os

import numpy as np
import picograd.nn.functional as F
import pytest
import torch
from _ptx_emulator import run_program
from test_loops import CTX, build, check, t
from xdsl.dialects import memref
from xdsl.dialects.builtin import ModuleOp, f64, i1

import picograd as pg
from picograd.dialects import kernel
from picograd.dialects import pg as pgd
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.errors import DTypeError, ShapeError
from picograd.passes.autodiff import PgAutodiff
from picograd.passes.decompose_attention import PgDecomposeAttention
from picograd.passes.fuse import PgFuse
from picograd.runtime.numpy_executor import compile_func

HERE = os.path.basename(__file__)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def close(ours: pg.Tensor, theirs: torch.Tensor, tol: float = 1e-6) -> None:
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------------------
# Ops against PyTorch


def test_tril_triu_split_chunk_clamp(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for d in (-2, 0, 1, 3):
        close(pg.tril(pg.tensor(x), d), torch.tril(torch.tensor(x), d))
        close(pg.tensor(x).triu(d), torch.tensor(x).triu(d))
    for arg, dim in ((2, 2), ([1, 3, 1], -1), (3, 1)):
        ours, theirs = pg.tensor(x).split(arg, dim), torch.tensor(x).split(arg, dim)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            close(a, b)
    for a, b in zip(pg.tensor(x).chunk(3, 2), torch.tensor(x).chunk(3, 2), strict=True):
        close(a, b)
    close(pg.tensor(x).clamp(-0.5, 0.7), torch.tensor(x).clamp(-0.5, 0.7))
    close(pg.tensor(x).clamp(max=0.1), torch.tensor(x).clamp(max=0.1))
    # the gradient of clamp flows inside the bounds only
    xp, xt = pg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (xp.clamp(-0.5, 0.5) * 3.0).sum().backward()
    (xt.clamp(-0.5, 0.5) * 3.0).sum().backward()
    close(xp.grad, xt.grad)


def test_topk_one_hot(rng: np.random.Generator) -> None:
    x = rng.permutation(24).reshape(4, 6).astype(np.float64) + rng.uniform(0, 0.5, (4, 6))  # no ties
    for dim, largest in ((1, True), (0, False), (-1, False)):
        v, i = pg.tensor(x).topk(3, dim, largest=largest)
        tv, ti = torch.tensor(x).topk(3, dim, largest=largest)
        close(v, tv)
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
    xp, xt = pg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    w = rng.standard_normal((4, 2))
    (xp.topk(2).values * pg.tensor(w)).sum().backward()
    (xt.topk(2).values * torch.tensor(w)).sum().backward()
    close(xp.grad, xt.grad)
    labels = rng.integers(0, 5, (3, 4))
    np.testing.assert_array_equal(
        F.one_hot(pg.tensor(labels), 6).numpy(), torch.nn.functional.one_hot(torch.tensor(labels), 6)
    )
    np.testing.assert_array_equal(
        F.one_hot(pg.tensor(labels)).numpy(), torch.nn.functional.one_hot(torch.tensor(labels))
    )


def test_multinomial_frequencies() -> None:
    """Samples follow the weights (with and without replacement); zero weights are never drawn."""
    pg.manual_seed(np.random.default_rng().integers(1 << 30))
    w = np.array([0.1, 0.0, 0.6, 0.3], np.float32)
    draws = pg.multinomial(pg.tensor(np.tile(w * 5.0, (4000, 1))), 1, replacement=True).numpy().ravel()
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, w, atol=0.03)
    rows = pg.multinomial(pg.tensor(np.tile(w, (500, 1))), 3).numpy()
    assert rows.shape == (500, 3) and not (rows == 1).any()
    assert all(len(set(r)) == 3 for r in rows.tolist())  # without replacement
    first = np.bincount(rows[:, 0], minlength=4) / 500
    np.testing.assert_allclose(first, w, atol=0.07)


@pytest.mark.parametrize("variant", ["causal", "bool", "float", "gqa", "scale"])
def test_sdpa_matches_torch(variant: str, rng: np.random.Generator) -> None:
    """Forward and gradients in float64 against torch's SDPA (query L != key S)."""
    hk = 2 if variant == "gqa" else 4
    arrays = [rng.standard_normal(s) for s in ((2, 4, 3, 8), (2, hk, 5, 8), (2, hk, 5, 6))]
    kw_p: dict = {"enable_gqa": variant == "gqa"}
    kw_t: dict = dict(kw_p)
    mask = None
    if variant == "causal":
        kw_p["is_causal"] = kw_t["is_causal"] = True
    elif variant == "bool":
        mask = np.concatenate([np.ones((3, 1), bool), rng.random((3, 4)) < 0.5], 1)  # a key kept in every row
    elif variant == "float":
        mask = rng.standard_normal((1, 3, 5))
    elif variant == "scale":
        kw_p["scale"] = kw_t["scale"] = 0.3
    ours = [pg.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    if mask is not None:
        mp, mt = pg.tensor(mask, requires_grad=mask.dtype != bool), torch.tensor(mask, requires_grad=mask.dtype != bool)
        kw_p["attn_mask"], kw_t["attn_mask"] = mp, mt
        ours.append(mp)
        theirs.append(mt)
    w = rng.standard_normal((2, 4, 3, 6))
    out_p = F.scaled_dot_product_attention(*ours[:3], **kw_p)
    out_t = torch.nn.functional.scaled_dot_product_attention(*theirs[:3], **kw_t)
    close(out_p, out_t, 1e-12)
    (out_p * pg.tensor(w)).sum().backward()
    (out_t * torch.tensor(w)).sum().backward()
    for a, b in zip(ours, theirs, strict=True):
        if b.grad is not None:
            close(a.grad, b.grad, 1e-12)


def test_sdpa_is_one_op_through_autodiff() -> None:
    """The traced step holds one pg.scaled_dot_product_attention; after pg-autodiff it is still there (its vjp is
    one pg.attention_backward), and at the kernels stage both are fused attention kernels (kind attention)."""
    q = pg.randn(1, 2, 4, 8, requires_grad=True)

    @pg.compile(example_inputs=(pg.Spec((1, 2, 4, 8)),))
    def step(x):
        y = F.scaled_dot_product_attention(x, q, q, is_causal=True)
        loss = y.sum()
        loss.backward()
        return loss, q.grad

    def count(stage: str) -> int:
        return sum(isinstance(op, pgd.ScaledDotProductAttentionOp) for op in step.ir(stage).walk())

    assert count("pg") == count("simplify") == 1
    assert count("kernels") == 1
    kinds = [op.kind.data for op in step.ir("kernels").walk() if isinstance(op, kernel.FusedOp)]
    assert kinds.count("attention") == 2 and "matmul" not in kinds


def test_sdpa_dropout_scales_and_drops() -> None:
    """dropout_p draws a keep mask: surviving probabilities scaled by 1 / (1 - p), rows of ones average out."""
    pg.manual_seed(3)
    v = pg.ones(1, 1, 64, 4)
    out = F.scaled_dot_product_attention(pg.zeros(1, 1, 64, 4), pg.zeros(1, 1, 64, 4), v, dropout_p=0.5).numpy()
    kept = out * 32  # uniform probabilities 1/64, kept ones scaled by 2: each output is (keys kept) / 32
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-4)
    assert 0.8 < out.mean() < 1.2 and out.std() > 0


def test_sdpa_dropout_draws_afresh_in_a_compiled_step() -> None:
    @pg.compile
    def attend(x):
        return F.scaled_dot_product_attention(x, x, x, dropout_p=0.3)

    x = pg.randn(1, 2, 8, 4)
    a, b = attend(x).numpy(), attend(x).numpy()
    assert not np.array_equal(a, b) and np.isfinite(a).all()
    assert sum(len(v) for v in attend._cache.values()) == 1


def test_multihead_attention_matches_torch(rng: np.random.Generator) -> None:
    pg.manual_seed(int(rng.integers(1 << 30)))
    ours = pg.nn.MultiheadAttention(8, 2)
    theirs = torch.nn.MultiheadAttention(8, 2)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    q, k = rng.standard_normal((5, 3, 8)).astype(np.float32), rng.standard_normal((6, 3, 8)).astype(np.float32)
    am = rng.random((5, 6)) < 0.3
    am[:, 0] = False  # no fully masked row (PyTorch gives NaN there, picograd zeros)
    kp = np.zeros((3, 6), bool)
    kp[:, -1] = True
    o, w = ours(pg.tensor(q), pg.tensor(k), pg.tensor(k), attn_mask=pg.tensor(am), key_padding_mask=pg.tensor(kp))
    to, tw = theirs(
        torch.tensor(q), torch.tensor(k), torch.tensor(k), attn_mask=torch.tensor(am), key_padding_mask=torch.tensor(kp)
    )
    close(o, to, 1e-5)
    close(w, tw, 1e-5)
    o, w = ours(pg.tensor(q), pg.tensor(k), pg.tensor(k), need_weights=False)
    to, _ = theirs(torch.tensor(q), torch.tensor(k), torch.tensor(k), need_weights=False)
    assert w is None
    close(o, to, 1e-5)
    bf = pg.nn.MultiheadAttention(8, 2, batch_first=True)
    tbf = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    tbf.load_state_dict({k: torch.tensor(v) for k, v in bf.state_dict().items()})
    x = rng.standard_normal((3, 5, 8)).astype(np.float32)
    close(
        bf(pg.tensor(x), pg.tensor(x), pg.tensor(x))[0], tbf(torch.tensor(x), torch.tensor(x), torch.tensor(x))[0], 1e-5
    )


def test_modules(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    close(pg.nn.GELU()(pg.tensor(x)), torch.nn.GELU()(torch.tensor(x)))
    close(pg.nn.GELU("tanh")(pg.tensor(x)), torch.nn.GELU("tanh")(torch.tensor(x)))
    close(pg.nn.Sigmoid()(pg.tensor(x)), torch.sigmoid(torch.tensor(x)))
    close(pg.nn.Identity(3, k=1)(pg.tensor(x)), torch.tensor(x))
    assert pg.nn.Flatten()(pg.tensor(x)).shape == (2, 12)
    layers = pg.nn.ModuleList([pg.nn.Linear(4, 4) for _ in range(2)])
    layers.append(pg.nn.Linear(4, 2))
    d = pg.nn.ModuleDict({"a": pg.nn.Linear(2, 2)})
    d["b"] = pg.nn.Linear(2, 1)
    holder = pg.nn.Module()
    holder.layers, holder.heads = layers, d
    names = [n for n, _ in holder.named_parameters()]
    assert names[:2] == ["layers.0.weight", "layers.0.bias"] and "heads.b.weight" in names and len(names) == 10
    assert len(layers) == 3 and list(d) == ["a", "b"] and "a" in d
    with pytest.raises(ValueError, match="approximate"):
        pg.nn.GELU("fast")


# ---------------------------------------------------------------------------------------------------------------
# Compiled steps


def test_clip_grad_norm_in_a_compiled_step_matches_torch(rng: np.random.Generator) -> None:
    pg.manual_seed(int(rng.integers(1 << 30)))
    model = pg.nn.Sequential(pg.nn.Linear(3, 5), pg.nn.Tanh(), pg.nn.Linear(5, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    opt = pg.optim.SGD(model.parameters(), lr=0.5)
    topt = torch.optim.SGD(twin.parameters(), lr=0.5)

    @pg.compile
    def step(x):
        loss = (model(x) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        norm = pg.nn.utils.clip_grad_norm_(model.parameters(), 0.3)
        opt.step()
        return loss, norm

    for _ in range(3):
        x = rng.standard_normal((4, 3)).astype(np.float32) * 3
        loss, norm = step(pg.tensor(x))
        tl = (twin(torch.tensor(x)) ** 2).sum()
        topt.zero_grad()
        tl.backward()
        tn = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.3)
        topt.step()
        np.testing.assert_allclose([loss.item(), norm.item()], [tl.item(), tn.item()], rtol=1e-5)
    assert sum(len(v) for v in step._cache.values()) == 1  # zero_grad() clears .grad before it is read
    assert pg.nn.utils.clip_grad_norm_([pg.randn(3, requires_grad=True)], 1.0).item() == 0.0  # no gradients


@pytest.mark.parametrize("norm_type", [-float("inf"), 0, -1.0, 3.0, float("inf")])
def test_clip_grad_norm_of_every_order_matches_torch(rng: np.random.Generator, norm_type: float) -> None:
    grads = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    ps = [pg.zeros(*g.shape, requires_grad=True) for g in grads]
    ts = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, tt, g in zip(ps, ts, grads, strict=True):
        p.grad, tt.grad = pg.tensor(g), torch.tensor(g)
    norm = pg.nn.utils.clip_grad_norm_(ps, 0.5, norm_type, foreach=True)  # -inf gave 1.0, 0 a ZeroDivisionError
    tn = torch.nn.utils.clip_grad_norm_(ts, 0.5, norm_type, foreach=True)
    np.testing.assert_allclose(norm.item(), tn.item(), rtol=1e-5)
    for p, tt in zip(ps, ts, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_value_and_error_if_nonfinite_match_torch(rng: np.random.Generator) -> None:
    g = rng.standard_normal(6).astype(np.float32) * 3
    g[:2] = np.nan, np.inf
    p, tt = pg.zeros(6, requires_grad=True), torch.zeros(6, requires_grad=True)
    p.grad, tt.grad = pg.tensor(g), torch.tensor(g)
    pg.nn.utils.clip_grad_value_([p], 0.7)
    torch.nn.utils.clip_grad_value_([tt], 0.7)
    np.testing.assert_array_equal(p.grad.numpy(), tt.grad.numpy())
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        q = pg.zeros(6, requires_grad=True)
        q.grad = pg.tensor(np.where(np.isnan(g), 1.0, g).astype(np.float32))  # one inf
        pg.nn.utils.clip_grad_norm_(q, 1.0, error_if_nonfinite=True)
    w = pg.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)

    @pg.compile
    def step(x):
        (x * w).sum().backward()
        return pg.nn.utils.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)

    with pytest.raises(RuntimeError, match="error_if_nonfinite=True reads the norm"):  # a CompileError before
        step(pg.tensor(rng.standard_normal(3).astype(np.float32)))


def test_lr_scheduler_names_a_group_added_after_it(rng: np.random.Generator) -> None:
    a, b = (pg.tensor(rng.standard_normal(2).astype(np.float32), requires_grad=True) for _ in range(2))
    opt = pg.optim.SGD([a], lr=0.1)
    sched = pg.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    opt.add_param_group({"params": [b]})
    with pytest.raises(ValueError, match="has 2 parameter groups, the scheduler was made for 1"):  # a zip error
        sched.step()


@pytest.mark.parametrize("kind", ["lambda", "cosine"])
def test_lr_schedulers_match_torch_without_retrace(kind: str) -> None:
    p, tp = pg.tensor(np.ones(3, np.float32), requires_grad=True), torch.ones(3, requires_grad=True)
    opt, topt = pg.optim.SGD([p], lr=0.2), torch.optim.SGD([tp], lr=0.2)
    if kind == "lambda":
        f = lambda i: 1.0 / (1 + i)  # noqa: E731
        sched, tsched = pg.optim.lr_scheduler.LambdaLR(opt, f), torch.optim.lr_scheduler.LambdaLR(topt, f)
    else:
        sched = pg.optim.lr_scheduler.CosineAnnealingLR(opt, 5, eta_min=0.01)
        tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 5, eta_min=0.01)

    @pg.compile
    def step():
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()

    for _ in range(7):
        step()
        (tp * tp).sum().backward()
        topt.step()
        topt.zero_grad()
        sched.step()
        tsched.step()
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-6)
    assert sum(len(v) for v in step._cache.values()) <= 2


def test_train_eval_switches_dropout_in_a_compiled_step() -> None:
    model = pg.nn.Sequential(pg.nn.Dropout(0.5))

    @pg.compile
    def forward(x):
        return model(x)

    x = pg.ones(200)
    assert (forward(x).numpy() == 0).any()
    model.eval()
    np.testing.assert_array_equal(forward(x).numpy(), np.ones(200))
    model.train()
    assert (forward(x).numpy() == 0).any()
    model.eval()
    np.testing.assert_array_equal(forward(x).numpy(), np.ones(200))
    assert sum(len(v) for v in forward._cache.values()) == 2  # one trace per mode, kept


def test_weight_tying_sums_gradients_and_saves_once(tmp_path) -> None:
    class Tied(pg.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = pg.nn.Embedding(5, 3)
            self.head = pg.nn.Linear(3, 5, bias=False)
            self.head.weight = self.wte.weight

        def forward(self, idx):
            return self.head(self.wte(idx).tanh())

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["wte.weight"]
    w = m.wte.weight.numpy().copy()
    idx = np.array([0, 3, 3, 1])
    F.cross_entropy(m(pg.tensor(idx)), pg.tensor([1, 2, 0, 4])).backward()
    wt = torch.tensor(w, requires_grad=True)
    torch.nn.functional.cross_entropy(torch.tanh(wt[torch.tensor(idx)]) @ wt.T, torch.tensor([1, 2, 0, 4])).backward()
    close(m.wte.weight.grad, wt.grad, 1e-6)
    pg.save(m.state_dict(), str(tmp_path / "tied.pg"))
    assert list(pg.load(str(tmp_path / "tied.pg"))) == ["wte.weight"]


def test_no_grad_generation() -> None:
    x = pg.randn(3, requires_grad=True)
    with pg.no_grad():
        y = F.softmax(x * 2.0, -1)
    assert not y.requires_grad
    assert int(pg.multinomial(y, 1).item()) in (0, 1, 2)


def test_assigned_data_is_read_by_a_compiled_step() -> None:
    """``p.data = value`` before a compiled step: the step reads the parameter's current value on every call."""
    p = pg.tensor(np.zeros(2, np.float32), requires_grad=True)
    p.data = (pg.ones(2) * 3.0).realize()
    opt = pg.optim.SGD([p], lr=0.25)

    @pg.compile
    def step():
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
        return p.sum()

    assert [round(step().item(), 4) for _ in range(3)] == [3.0, 1.5, 0.75]


# ---------------------------------------------------------------------------------------------------------------
# Every stage: loops (interpreter) and PTX (emulator, ptxas) against the numpy executor


def attention_module(mask: str, grad: bool) -> ModuleOp:
    """f(q, k, v[, mask]) -> attention (and, with ``grad``, the gradients of sum(out * w) wrt q, k, v)."""
    types = [t(2, 3, 4, el=f64), t(2, 5, 4, el=f64), t(2, 5, 2, el=f64)]
    if mask == "bool":
        types.append(t(3, 5, el=i1))
    elif mask == "float":
        types.append(t(1, 3, 5, el=f64))
    if grad:
        types.append(t(2, 3, 2, el=f64))

    def body(e, q, k, v, *rest):
        m = rest[0] if mask != "none" else None
        out = e(pgd.ScaledDotProductAttentionOp(q, k, v, m, None, 0.45, mask == "none"))
        if not grad:
            return [out]
        loss = e(pgd.SumOp(e(pgd.MulOp(out, rest[-1])), [0, 1, 2]))
        g = pgd.GradOp(loss, [q, k, v])
        e.block.add_op(g)
        return [out, *g.grads]

    module = build(types, body)
    if grad:
        PgAutodiff().apply(CTX, module)
    return module


def attention_inputs(rng: np.random.Generator, mask: str, grad: bool) -> list[np.ndarray]:
    xs = [rng.standard_normal(s) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 2))]
    if mask == "bool":
        xs.append(np.concatenate([np.ones((3, 1), bool), rng.random((3, 4)) < 0.5], 1))
    elif mask == "float":
        xs.append(rng.standard_normal((1, 3, 5)))
    if grad:
        xs.append(rng.standard_normal((2, 3, 2)))
    return xs


def decompose_then_fuse(module: ModuleOp) -> None:
    PgDecomposeAttention(all=True).apply(CTX, module)
    PgFuse().apply(CTX, module)


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "vjp"])
@pytest.mark.parametrize("mask", ["none", "bool", "float"])
def test_attention_loop_stage(mask: str, grad: bool, rng: np.random.Generator) -> None:
    check(attention_module(mask, grad), attention_inputs(rng, mask, grad), fuse=decompose_then_fuse, rtol=1e-10)


@pytest.mark.parametrize("mask", ["none", "bool"])
def test_attention_ptx(mask: str, rng: np.random.Generator) -> None:
    module = attention_module(mask, grad=True)
    from _ir import only_func

    reference = compile_func(only_func(attention_module(mask, grad=True)))
    program = compile_for_cuda(module)
    assert not program.assemble(strict=True).spills
    inputs = attention_inputs(rng, mask, grad=True)
    for want, got in zip(reference(*inputs), run_program(program, inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_gpt_shakespeare_step_assembles() -> None:
    """``pgc examples/gpt_shakespeare.py --emit=ptx``: the whole baby-GPT train step (forward, attention vjp, clip,
    AdamW) lowers to PTX that ptxas accepts for sm_90."""
    from picograd.tools.pgc import compiled_functions, import_model

    model = import_model("examples/gpt_shakespeare.py")
    (step,) = compiled_functions(model)
    program = compile_for_cuda(step.ir("simplify"))
    result = program.assemble()
    assert set(program.kernels) == set(result.kernels) and "gpt_shakespeare.py" in program.ptx
    # the fused attention kernels (issue 15), forward and backward, and no (..., T, T) buffer in the memory plan
    kernels = set(program.kernels)
    assert any(k.endswith("_scaled_dot_product_attention") for k in kernels)
    assert any(k.endswith("_attention_backward_1") for k in kernels)  # dk, dv
    loops = step.ir("loops")
    t = model.CFG.block_size
    square = [
        op for op in loops.walk() if isinstance(op, memref.ViewOp) and tuple(op.result.type.get_shape())[-2:] == (t, t)
    ]
    assert not square


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one clear error each, with the user's file:line


def expect(exc: type[Exception], *fragments: str):
    return pytest.raises(exc, match=".*".join([*fragments, f"at .*{HERE}:\\d+"]))


def test_attention_errors() -> None:
    q = pg.randn(2, 4, 3, 8)
    with expect(ShapeError, "head dims differ", r"\(2, 4, 3, 8\)"):
        F.scaled_dot_product_attention(q, pg.randn(2, 4, 5, 6), pg.randn(2, 4, 5, 6))
    with expect(ShapeError, "sequence lengths differ"):
        F.scaled_dot_product_attention(q, pg.randn(2, 4, 5, 8), pg.randn(2, 4, 6, 8))
    with expect(ShapeError, "head counts differ", "enable_gqa"):
        F.scaled_dot_product_attention(q, pg.randn(2, 3, 5, 8), pg.randn(2, 3, 5, 8))
    with expect(ShapeError, "batch dims do not broadcast"):
        F.scaled_dot_product_attention(q, pg.randn(3, 4, 5, 8), pg.randn(3, 4, 5, 8))
    with expect(ShapeError, r"attn_mask of shape \(4, 5\)", r"\(2, 4, 3, 5\)"):
        F.scaled_dot_product_attention(q, pg.randn(2, 4, 5, 8), pg.randn(2, 4, 5, 8), attn_mask=pg.ones(4, 5))
    with expect(DTypeError, "attn_mask must be bool", "int64"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=pg.ones(3, 3, dtype=pg.int64))
    with expect(ValueError, "either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=pg.ones(3, 3, dtype=pg.bool), is_causal=True)


def test_one_hot_and_multinomial_errors() -> None:
    with expect(RuntimeError, "class 7 is out of range for num_classes = 5"):
        F.one_hot(pg.tensor([1, 7]), 5)
    with expect(RuntimeError, r"weights of shape \(2,\) must be finite and non-negative", "got -0.5 at index 1"):
        pg.multinomial(pg.tensor([0.5, -0.5]), 1)
    with expect(RuntimeError, r"weights of shape \(2, 2\) must be finite", "row 1 sums to 0"):
        pg.multinomial(pg.tensor([[0.5, 0.5], [0.0, 0.0]]), 1)
    with expect(RuntimeError, "cannot draw 3 samples from 2 categories without replacement"):
        pg.multinomial(pg.tensor([0.5, 0.5]), 3)


def test_one_hot_and_multinomial_check_values_in_a_compiled_step(rng: np.random.Generator) -> None:
    """Inside ``@pg.compile`` the values cannot be read at trace time: a ``pg.check_index`` raises when the step runs,
    on the CPU executor and in the loop-stage program the GPU runs (never a silent row of zeros or a biased draw)."""
    from picograd.runtime.loop_interpreter import run_function

    @pg.compile
    def encode(x):
        return F.one_hot(x, 5)

    x = rng.integers(0, 5, (3, 4))
    np.testing.assert_array_equal(encode(pg.tensor(x)).numpy(), np.eye(5, dtype=np.int64)[x])
    x[1, 2] = 7
    with expect(RuntimeError, "class 7 is out of range for num_classes = 5"):  # at the one_hot line
        encode(pg.tensor(x))
    x[1, 2] = -1
    with pytest.raises(RuntimeError, match="class -1 is out of range"):
        encode(pg.tensor(x))

    @pg.compile
    def draw(w):
        return pg.multinomial(w, 2, replacement=True)

    good = rng.random((3, 4)) + 0.1
    assert draw(pg.tensor(good)).shape == (3, 2)
    for bad in ([[0.5, -0.5]], [[0.0, 0.0]], [[0.5, np.nan]], [[np.inf, 1.0]]):
        w = pg.tensor(np.concatenate([good[:2, :2], np.array(bad)]))
        # the same error class and problem as eagerly (it was IndexError compiled and ValueError eager)
        for fn in (draw, draw.fn):
            with pytest.raises(RuntimeError, match=r"multinomial: weights of shape \(3, 2\) must be finite"):
                fn(w)

    module = encode.ir("loops", [pg.tensor(x[:1, :2])])
    (out,) = run_function(module, "encode", [np.array([[1, 4]])])
    np.testing.assert_array_equal(out, np.eye(5, dtype=np.int64)[[[1, 4]]])
    with pytest.raises(RuntimeError, match="class 5 is out of range for num_classes = 5"):
        run_function(module, "encode", [np.array([[1, 5]])])


def test_attention_op_verifier() -> None:
    def bad(e, q, k, v):
        return [e(pgd.ScaledDotProductAttentionOp(q, k, v))]

    module = build([t(2, 3, 4), t(2, 5, 3), t(2, 5, 2)], bad)
    with pytest.raises(Exception, match=r"shapes query \(2, 3, 4\), key \(2, 5, 3\)"):
        module.verify()


def test_names_transformer_matches_its_twin(rng: np.random.Generator) -> None:
    """``examples/names.py --type transformer`` and the body of its PyTorch twin: same state_dict names, same logits
    and gradients on a batch of token ids."""
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:0] = [os.path.join(root, "examples"), os.path.join(root, "bench")]
    try:
        import names
        from names_twin import torch_twin
    finally:
        del sys.path[:2]
    model = names.NamesModel("transformer")
    twin = torch_twin("transformer", model.state_dict())
    x = rng.integers(0, names.VOCAB, (3, names.BLOCK))
    y = rng.integers(0, names.VOCAB, (3, names.BLOCK))
    loss = names.sequence_loss(model(pg.tensor(x)), pg.tensor(y))
    loss.backward()
    tl = torch.nn.functional.cross_entropy(twin(torch.tensor(x)).reshape(-1, names.VOCAB), torch.tensor(y).reshape(-1))
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-5)
    theirs = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        close(p.grad, theirs[name].grad, 1e-5)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize(
    "shapes",
    [((2, 3, 4, 8), (2, 3, 0, 8), (2, 3, 0, 6)), ((2, 3, 4, 0), (2, 3, 5, 0), (2, 3, 5, 6))],
    ids=["no-keys", "head-dim-0"],
)
def test_attention_of_no_keys_or_an_empty_head_dim_matches_torch(shapes, compiled: bool, rng) -> None:  # type: ignore[no-untyped-def]
    """No keys (PyTorch: zeros, zero gradients) and a head dim of 0 (the scores all 0: the mean of the values),
    eager and compiled: PyTorch's values and gradients, not an error from inside the library."""
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in arrays)
    g = rng.standard_normal((*shapes[0][:-1], shapes[2][-1])).astype(np.float32)
    (torch.nn.functional.scaled_dot_product_attention(tq, tk, tv) * torch.tensor(g)).sum().backward()

    def step(q: pg.Tensor, k: pg.Tensor, v: pg.Tensor) -> tuple[pg.Tensor, ...]:
        out = F.scaled_dot_product_attention(q, k, v)
        (out * pg.tensor(g)).sum().backward()
        return out, q.grad, k.grad, v.grad

    run = pg.compile(step) if compiled else step
    got = run(*[pg.tensor(a, requires_grad=True) for a in arrays])
    want = [
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv).detach(),
        tq.grad,
        tk.grad,
        tv.grad,
    ]
    for i, (a, w) in enumerate(zip(got, want, strict=True)):
        assert a is not None and a.shape == tuple(w.shape), (i, None if a is None else a.shape, w.shape)
        np.testing.assert_allclose(a.numpy(), w.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"output {i}")
