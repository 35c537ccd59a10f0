"""``pg-fuse-attention`` on what the frontend records for hand-written attention: the fused form (one
``pg.scaled_dot_product_attention``, its gradient the op's vjp) and the unfused form (the pass left out) give
PyTorch's values and gradients in float64, on the CPU executor and through the loop-stage interpreter."""

from __future__ import annotations

import math

import numpy as np
import picograd.nn.functional as F
import pytest
import torch
from _ir import only_func
from test_loops import check
from test_transformers import decompose_then_fuse
from xdsl.dialects.builtin import ModuleOp

import picograd as pg
from picograd.dialects import pg as pgd
from picograd.driver.pipeline import passes_until, run_passes
from picograd.runtime.numpy_executor import compile_func

B, H, E = 1, 2, 4

# the scale, three ways: on the scores (product or quotient) or on q
SCALED_SCORES = {
    "mul": lambda q, k: (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1))),
    "div": lambda q, k: (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1)),
    "q": lambda q, k: (q * (1.0 / math.sqrt(q.size(-1)))) @ k.transpose(-2, -1),
}


def manual_attention(q, k, v, mask: str, form: str, keep=None, p: float = 0.0):
    """nanoGPT's non-flash attention with the causal mask built as ``mask`` says."""
    t = q.shape[-2]
    att = SCALED_SCORES[form](q, k)
    if mask == "tril":  # nanoGPT's bias[:, :, :T, :T] == 0, the tril made inside the step
        att = att.masked_fill(pg.tril(pg.ones(t, t)).view(1, 1, t, t) == 0, float("-inf"))
    elif mask == "arange":
        i = pg.arange(t)
        att = att.masked_fill(i[None, :] > i[:, None], float("-inf"))
    elif mask == "triu":
        att = pg.where(pg.triu(pg.ones(t, t, dtype=pg.bool), diagonal=1), float("-inf"), att)
    elif mask == "padding":
        att = att.masked_fill(~keep, float("-inf"))
    att = F.softmax(att, dim=-1)
    att = F.dropout(att, p)
    return att @ v


def step_module(mask: str, form: str, arrays: list[np.ndarray], fused: bool, p: float = 0.0) -> ModuleOp:
    """f(q, k, v, w[, keep]) -> (out, dq, dk, dv) of loss = sum(out * w), at the simplify stage."""

    def step(q, k, v, w, *keep):
        out = manual_attention(q, k, v, mask, form, *keep, p=p)
        (out * w).sum().backward()
        return out, q.grad, k.grad, v.grad

    args = [pg.tensor(a, requires_grad=i < 3) for i, a in enumerate(arrays)]
    module = pg.compile(step).ir("pg", args)
    names = [n for n in passes_until("simplify") if fused or n != "pg-fuse-attention"]
    run_passes(module, names)
    return module


def attention_ops(module: ModuleOp) -> list[pgd.ScaledDotProductAttentionOp]:
    return [op for op in module.walk() if isinstance(op, pgd.ScaledDotProductAttentionOp)]


def torch_reference(arrays: list[np.ndarray], causal: bool) -> list[np.ndarray]:
    q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
    mask = torch.tensor(arrays[4]) if len(arrays) > 4 else None
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    (out * torch.tensor(arrays[3])).sum().backward()
    return [x.detach().numpy() for x in (out, q.grad, k.grad, v.grad)]


CASES = [(t, mask) for t in (1, 7, 16) for mask in ("none", "tril", "arange", "triu", "padding")]


@pytest.mark.parametrize(("t", "mask"), CASES, ids=[f"T{t}-{m}" for t, m in CASES])
def test_fused_and_unfused_match_torch(t: int, mask: str) -> None:
    rng = np.random.default_rng(t * 31 + len(mask))
    form = list(SCALED_SCORES)[(t + len(mask)) % 3]
    arrays = [rng.standard_normal((B, H, t, E)) for _ in range(4)]
    if mask == "padding":  # per batch row, keys to attend (key 0 always, so no row is fully masked)
        keep = rng.random((B, 1, 1, t)) < 0.6
        keep[..., 0] = True
        arrays.append(keep)
    causal = mask in ("tril", "arange", "triu")
    want = torch_reference(arrays, causal)
    fused = step_module(mask, form, arrays, fused=True)
    (attn,) = attention_ops(fused)
    assert attn.is_causal == causal and (attn.mask is not None) == (mask == "padding") and attn.dropout is None
    unfused = step_module(mask, form, arrays, fused=False)
    assert not attention_ops(unfused)
    for module in (fused, unfused):
        got = compile_func(only_func(module))(*arrays)
        for g, w in zip(got[:4], want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)
    check(fused, arrays, fuse=decompose_then_fuse, rtol=1e-10, atol=1e-12)  # the loop-stage interpreter


def test_dropout_on_the_probabilities_is_the_ops_multiplier() -> None:
    """With ``F.dropout`` on the probabilities the op takes the multiplier; fused and unfused draw the same
    numbers (one ``pg.random``), so values and gradients agree."""
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((B, H, 7, E)) for _ in range(4)]
    fused = step_module("arange", "mul", arrays, fused=True, p=0.3)
    (attn,) = attention_ops(fused)
    assert attn.is_causal and attn.dropout is not None
    unfused = step_module("arange", "mul", arrays, fused=False, p=0.3)
    seed = [np.array(1234, np.int64), np.array(0, np.int64)]
    got = compile_func(only_func(fused))(*arrays, *seed)
    want = compile_func(only_func(unfused))(*arrays, *seed)
    assert not np.allclose(got[0], torch_reference(arrays, causal=True)[0])  # some probabilities were dropped
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


def test_a_mask_from_a_step_input_stays_a_mask() -> None:
    """nanoGPT's registered ``bias`` buffer is a step input: its values may change between calls, so the pass
    keeps it as the op's boolean mask (``bias != 0``) instead of assuming it is causal; values match torch."""
    t = 5
    bias = pg.tensor(np.tril(np.ones((t, t))).reshape(1, 1, t, t))
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal((B, H, t, E)) for _ in range(4)]

    def step(q, k, v, w):
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(bias[:, :, :t, :t] == 0, float("-inf"))
        out = F.softmax(att, dim=-1) @ v
        (out * w).sum().backward()
        return out, q.grad, k.grad, v.grad

    args = [pg.tensor(a, requires_grad=i < 3) for i, a in enumerate(arrays)]
    module = pg.compile(step).ir("simplify", args)
    (attn,) = attention_ops(module)
    assert not attn.is_causal and attn.mask is not None
    got = compile_func(only_func(module))(*arrays, bias.numpy())
    for g, w in zip(got[:4], torch_reference(arrays, causal=True), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_gpt_example_traces_to_the_attention_op(attention: str) -> None:
    """``examples/gpt_shakespeare.py --attention sdpa|manual`` on a tiny config: each layer's attention is one
    ``pg.scaled_dot_product_attention`` after ``pg-fuse-attention`` (causal for the call; for nanoGPT's form the mask is
    its ``bias`` buffer, a step input), and no softmax is left but the loss's."""
    from dataclasses import replace

    from picograd.tools.pgc import import_model

    gpt = import_model("examples/gpt_shakespeare.py")
    cfg = replace(gpt.Config(), n_layer=2, n_head=2, n_embd=16, block_size=8, batch_size=2, attention=attention)
    gpt.model, gpt.opt, gpt.sched = gpt.make(cfg, 0)
    x = pg.tensor(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 8)))
    module = gpt.train_step.ir("pg", (x, x))
    run_passes(module, ["pg-fuse-attention"])
    ops = attention_ops(module)
    assert len(ops) == cfg.n_layer
    assert all(op.is_causal == (attention == "sdpa") and (op.mask is not None) == (attention == "manual") for op in ops)
    scores = [op for op in module.walk() if isinstance(op, pgd.ExpOp) and pgd.shape_of(op.results[0])[-2:] == (8, 8)]
    assert not scores
