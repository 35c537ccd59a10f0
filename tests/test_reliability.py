"""Regression tests of issue 16: compiled steps never silently differ from eager, bad input gets one clear error
naming the problem and the user's ``file:line``, and the caches stay bounded."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import picograd as pg

F = pg.nn.functional


class raises_here:
    """``with raises_here(Exc, "fragment", ...):`` followed by the offending statement on the next line: expects
    ``Exc`` whose message holds every fragment and the caller's ``file:line`` of that statement."""

    def __init__(self, exc: type[BaseException], *fragments: str):
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        self.exc = exc
        self.fragments = (*fragments, f"{caller.f_code.co_filename}:{caller.f_lineno + 1}")  # type: ignore[union-attr]

    def __enter__(self) -> raises_here:
        return self

    def __exit__(self, typ, value, tb) -> bool:
        assert typ is not None, f"{self.exc.__name__} was not raised"
        assert issubclass(typ, self.exc), f"expected {self.exc.__name__}, got {typ.__name__}: {value}"
        for fragment in self.fragments:
            assert fragment in str(value), f"{fragment!r} not in the message {str(value)!r}"
        return True


# ---------------------------------------------------------------------------------------------------------------
# Silent wrong results (issue 16, items 3 and 4) and out-of-range indices


def test_cross_entropy_negative_target_raises_eager(rng):
    logits = pg.tensor(rng.standard_normal((2, 3)))
    with raises_here(IndexError, "target -1", "dim 1 of size 3"):
        F.cross_entropy(logits, pg.tensor([0, -1]))
    with raises_here(IndexError, "target 3", "size 3"):
        F.cross_entropy(logits, pg.tensor([3, 0]))
    # a computed (lazy) target is checked when it is realized, at the line of the cross_entropy call
    lazy = pg.tensor([1, 0]) - 1
    loss = F.cross_entropy(logits, lazy)
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(IndexError, match=rf"target -1 is out of range .*{__file__}:{line}"):
        loss.item()
    # ignore_index=-1 still skips them, as PyTorch
    t = torch.tensor(logits.numpy())
    want = torch.nn.functional.cross_entropy(t, torch.tensor([0, -1]), ignore_index=-1)
    got = F.cross_entropy(logits, pg.tensor([0, -1]), ignore_index=-1)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_cross_entropy_bad_target_raises_compiled(rng):
    w = pg.tensor(rng.standard_normal((3, 3)), requires_grad=True)

    @pg.compile
    def step(x, y):
        loss = F.cross_entropy(x @ w, y)
        loss.backward()
        return loss

    x = pg.tensor(rng.standard_normal((2, 3)))
    good = step(x, pg.tensor([0, 2])).item()
    t = torch.tensor(w.numpy())
    want = torch.nn.functional.cross_entropy(torch.tensor(x.numpy()) @ t, torch.tensor([0, 2]))
    np.testing.assert_allclose(good, want.item(), rtol=1e-10)
    for bad in ([0, -1], [3, 0]):
        with pytest.raises(IndexError, match=rf"target {bad[0] or bad[1]} is out of range for dim 1 of size 3"):
            step(x, pg.tensor(bad))


def test_embedding_negative_index_raises(rng):
    weight = pg.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    with raises_here(IndexError, "index -1", "dim 0 of size 4"):
        F.embedding(pg.tensor([-1]), weight)
    with raises_here(IndexError, "index 4", "size 4"):
        F.embedding(pg.tensor([[0, 4]]), weight)

    @pg.compile
    def step(i):
        out = F.embedding(i, weight).sum()
        out.backward()
        return out

    np.testing.assert_allclose(step(pg.tensor([1, 3])).item(), weight.numpy()[[1, 3]].sum(), rtol=1e-12)
    with pytest.raises(IndexError, match=r"index -1 is out of range for dim 0 of size 4 \(at .*test_reliability"):
        step(pg.tensor([1, -1]))
    with pytest.raises(IndexError, match="index 7 is out of range"):
        step(pg.tensor([7, 0]))


def test_cross_entropy_unbatched_none_is_0d(rng):
    logits = rng.standard_normal(3)
    got = F.cross_entropy(pg.tensor(logits), pg.tensor(1), reduction="none")
    want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(1), reduction="none")
    assert got.shape == () == tuple(want.shape)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_getitem_out_of_range_index_error(rng):
    x = pg.tensor(rng.standard_normal((3, 4)))
    with raises_here(IndexError, "index 7", "dim 0 of size 3"):
        x[pg.tensor([0, 7])]
    with raises_here(IndexError, "index -5", "dim 1 of size 4"):
        x[:, [1, -5]]
    # two index arrays are merged into one linear index: each is still checked against its own dim
    i, j = pg.tensor([0]) + 0, pg.tensor([5]) + 0  # lazy: checked at run time
    y = x[i, j]
    line = inspect.currentframe().f_lineno - 1
    with pytest.raises(IndexError, match=rf"index 5 is out of range for dim 1 of size 4 \(at {__file__}:{line}\)"):
        y.numpy()

    @pg.compile
    def pick(i, j):
        return x[i, j]

    np.testing.assert_allclose(pick(pg.tensor([2, -1]), pg.tensor([-4, 3])).numpy(), x.numpy()[[2, -1], [-4, 3]])
    with pytest.raises(IndexError, match="index -4 is out of range for dim 0 of size 3"):
        pick(pg.tensor([-4, 0]), pg.tensor([0, 0]))


def test_arange_requires_grad():
    t = pg.arange(0.0, 3.0, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), [0.0, 2.0, 4.0])
    with pytest.raises(pg.DTypeError):
        pg.arange(3, requires_grad=True)


# ---------------------------------------------------------------------------------------------------------------
# backward() twice


def test_backward_twice_raises_unless_retain_graph(rng):
    a = rng.standard_normal(3)
    x = pg.tensor(a, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with raises_here(RuntimeError, "second time", "retain_graph=True"):
        loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)  # the refused call added nothing
    # through a shared part of the graph, as PyTorch
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 2.0).sum().backward()
    # with retain_graph=True the second one accumulates, as PyTorch
    xt = torch.tensor(a, requires_grad=True)
    lt = (xt * xt.sin()).sum()
    lt.backward(retain_graph=True)
    lt.backward()
    y = pg.tensor(a, requires_grad=True)
    ly = (y * y.sin()).sum()
    ly.backward(retain_graph=True)
    ly.backward()
    np.testing.assert_allclose(y.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    # a fresh graph each step, and data computed without grad once and reused, are fine
    data = pg.tensor(a) * 2.0
    w = pg.tensor(a, requires_grad=True)
    opt = pg.optim.SGD([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w * data).sum().backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), a - 0.3 * 2 * a, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Size-0 tensors through every op, forward and backward, eager and compiled, against PyTorch

ZERO_OPS = {
    "mul_scalar": lambda m, x: x * 2.0,
    "add": lambda m, x: x + x,
    "sub_rscalar": lambda m, x: 1.0 - x,
    "neg": lambda m, x: -x,
    "exp": lambda m, x: x.exp(),
    "log": lambda m, x: (x * x + 1.0).log(),
    "sqrt": lambda m, x: (x * x + 1.0).sqrt(),
    "rsqrt": lambda m, x: (x * x + 1.0).rsqrt(),
    "tanh": lambda m, x: x.tanh(),
    "sigmoid": lambda m, x: x.sigmoid(),
    "relu": lambda m, x: x.relu(),
    "abs": lambda m, x: x.abs(),
    "sin_cos": lambda m, x: x.sin() * x.cos(),
    "erf": lambda m, x: x.erf(),
    "pow": lambda m, x: x**2,
    "div": lambda m, x: x / (x * x + 1.0),
    "maximum": lambda m, x: m.maximum(x, x * 0.5),
    "where": lambda m, x: m.where(x > 0, x, x * 2.0),
    "sum": lambda m, x: x.sum(),
    "sum_dim": lambda m, x: x.sum(0),
    "sum_keepdim": lambda m, x: x.sum(-1, keepdim=True),
    "mean_dim": lambda m, x: x.mean(0) if x.shape[0] else x.mean(-1),
    "max_dim": lambda m, x: x.amax(-1) if x.shape[-1] else x.amax(0),
    "softmax": lambda m, x: x.softmax(-1),
    "log_softmax": lambda m, x: x.log_softmax(0),
    "logsumexp": lambda m, x: x.logsumexp(-1),
    "reshape": lambda m, x: x.reshape(-1),
    "transpose": lambda m, x: x.T * 1.0,
    "slice": lambda m, x: x[..., :1] * 1.0,
    "cat": lambda m, x: m.cat([x, x], 0),
    "stack": lambda m, x: m.stack([x, x]),
    "matmul_k": lambda m, x: x.T @ x,
    "matmul_mn": lambda m, x: x @ x.T,
    "broadcast": lambda m, x: x + m.ones(x.shape[-1], dtype=x.dtype),
    "expand": lambda m, x: x.unsqueeze(0).expand(2, *x.shape) * 1.0,
    "cast": lambda m, x: x.float().double(),
}


@pytest.mark.parametrize("shape", [(2, 0), (0, 3)])
@pytest.mark.parametrize("name", sorted(ZERO_OPS))
def test_size_zero_tensors_through_every_op(name, shape, rng):
    fn = ZERO_OPS[name]
    a = rng.standard_normal(shape)
    xt = torch.tensor(a, requires_grad=True)
    want = fn(torch, xt)
    want.sum().backward()

    x = pg.tensor(a, requires_grad=True)
    got = fn(pg, x)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12)
    got.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)

    @pg.compile
    def step(x):
        y = fn(pg, x)
        y.sum().backward()
        return y

    x = pg.tensor(a, requires_grad=True)
    y = step(x)
    np.testing.assert_allclose(y.numpy(), want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_size_zero_batches_in_losses_and_lookups(rng):
    table = pg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    empty = pg.tensor(np.zeros(0, np.int64))
    out = F.embedding(empty, table)
    assert out.shape == (0, 3)
    out.sum().backward()
    np.testing.assert_array_equal(table.grad.numpy(), np.zeros((4, 3)))
    logits = pg.tensor(np.zeros((0, 3)), requires_grad=True)
    assert F.cross_entropy(logits, empty, reduction="sum").item() == 0.0
    assert F.cross_entropy(logits, empty, reduction="none").shape == (0,)


# ---------------------------------------------------------------------------------------------------------------
# Compiled steps: explicit arguments that require grad (item 1)


def test_compiled_argument_that_requires_grad_gets_its_gradient(rng):
    a = rng.standard_normal(3)

    @pg.compile
    def f(x):
        loss = (x * x.sin()).sum()
        loss.backward()
        return loss, x.grad

    x = pg.tensor(a, requires_grad=True)
    loss, inside = f(x)
    xt = torch.tensor(a, requires_grad=True)
    (xt * xt.sin()).sum().backward()
    np.testing.assert_allclose(inside.numpy(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    # a second call accumulates into .grad, as PyTorch; a fresh tensor starts from None
    f(x)
    np.testing.assert_allclose(x.grad.numpy(), 2 * xt.grad.numpy(), rtol=1e-12)
    y = pg.tensor(-a, requires_grad=True)
    f(y)
    np.testing.assert_allclose(y.grad.numpy(), -xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 2 * xt.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Guards (item 2): a compiled step never reads a stale binding

_GLOBAL_W = pg.tensor([1.0, 2.0])
_GLOBAL_SCALE = 1.0


def _read_globals(x):
    return (_GLOBAL_W * x).sum() * _GLOBAL_SCALE


def test_rebound_parameter_global_and_closure_retrace(rng):
    global _GLOBAL_W, _GLOBAL_SCALE
    model = pg.nn.Linear(2, 1)
    a = rng.standard_normal((1, 2)).astype(np.float32)
    box = [pg.tensor([3.0])]

    def captured():
        return box[0]

    cell = pg.tensor([0.5])

    @pg.compile
    def f(x):
        return model(x).sum() + _read_globals(x) + (x * cell).sum() + captured().sum()

    def eager():
        w, b = model.weight.numpy(), model.bias.numpy()
        g = _GLOBAL_W.numpy()
        extra = (a * cell.numpy()).sum() + box[0].numpy().sum()
        return float((a @ w.T + b).sum() + (g * a).sum() * _GLOBAL_SCALE + extra)

    x = pg.tensor(a)
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-6)
    model.weight = pg.nn.Parameter(rng.standard_normal((1, 2)).astype(np.float32))  # a new parameter object
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-6)
    old = _GLOBAL_W
    try:
        _GLOBAL_W = pg.tensor(rng.standard_normal(2).astype(np.float32))  # a global read by a helper function
        np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-6)
        _GLOBAL_SCALE = 3.0  # a Python scalar baked into the trace
        np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-6)
    finally:
        _GLOBAL_W, _GLOBAL_SCALE = old, 1.0
    cell = pg.tensor([-2.0])  # a rebound closure variable
    np.testing.assert_allclose(f(x).item(), eager(), rtol=1e-6)
    # unchanged bindings hit the cache: no retrace
    calls = []

    @pg.compile
    def g(x):
        calls.append(1)
        return model(x).sum()

    for _ in range(3):
        g(x)
    assert len(calls) == 1
    model.eval()
    g(x)
    assert len(calls) == 2
