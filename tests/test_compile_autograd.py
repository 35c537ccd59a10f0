"""Outputs of a ``@pg.compile``d function that runs no ``backward()`` itself require grad, as torch.compile's do:
the traced graph is spliced into the caller's recorded graph (``graph.replay``), so ``backward()`` outside goes
through it (autodiff of the traced ops); the values come from the compiled run. A function that runs
``backward()`` itself returns detached results, and ``backward()`` on them says so."""

from __future__ import annotations

import numpy as np
import picograd.nn.functional as F
import pytest
import torch
from _raises import raises_on_next_line

import picograd as pg


def _pair(rng: np.random.Generator):
    model = pg.nn.Sequential(pg.nn.Linear(3, 5), pg.nn.Tanh(), pg.nn.Linear(5, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    return model, twin


def test_backward_outside_a_compiled_loss_matches_torch(rng):
    model, twin = _pair(rng)
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(twin.parameters(), lr=0.1)

    @pg.compile
    def loss_fn(x, y):
        return F.cross_entropy(model(x), y)

    for _ in range(3):  # the second call replays the trace; parameters change in between
        x, y = rng.standard_normal((4, 3)).astype(np.float32), rng.integers(0, 2, 4)
        xp = pg.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        opt.zero_grad()
        topt.zero_grad()
        loss = loss_fn(xp, pg.tensor(y))
        assert loss.requires_grad and not loss.is_leaf
        loss.backward()
        expected = torch.nn.functional.cross_entropy(twin(xt), torch.tensor(y))
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xp.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
        opt.step()
        topt.step()
    assert len(loss_fn.executables()) == 1


def test_compiled_outputs_with_dropout_backward_as_eager(rng):
    """The spliced graph reads the random generator's offset as the call did: the same masks as the value."""
    model = pg.nn.Sequential(pg.nn.Linear(3, 6), pg.nn.Dropout(0.5), pg.nn.Linear(6, 1))

    def f(x):
        return model(x).pow(2).sum(), model(x).sum()

    compiled = pg.compile(f)
    x = pg.tensor(rng.standard_normal((4, 3)), dtype=pg.float32)
    for _ in range(2):
        seed = int(rng.integers(1 << 30))
        grads = []
        for fn in (f, compiled):
            pg.manual_seed(seed)
            model.zero_grad()
            a, b = fn(x)
            (a + 3 * b).backward()
            grads.append([a.item(), b.item()] + [p.grad.numpy().copy() for p in model.parameters()])
        for e, c in zip(*grads, strict=True):
            # float32 sums of O(1) terms in another order (the JIT's loops, numpy's pairwise sums): a few ulps of
            # the terms, which a small total (cancellation) turns into a large relative difference (CI, 2026-12-06:
            # -0.017236 apart by 1.5e-7); a different mask would differ by O(1)
            np.testing.assert_allclose(c, e, rtol=1e-6, atol=1e-6)


def test_backward_twice_through_a_compiled_output_raises(rng):
    w = pg.tensor(rng.standard_normal(3), dtype=pg.float32, requires_grad=True)
    f = pg.compile(lambda x: (x * w).sum())
    out = f(pg.tensor(rng.standard_normal(3), dtype=pg.float32))
    out.backward(retain_graph=True)
    out.backward()
    with pytest.raises(RuntimeError, match="second time"):
        out.backward()


def test_no_grad_outputs_do_not_require_grad_and_grad_mode_keys_the_trace(rng):
    w = pg.tensor(rng.standard_normal(3), dtype=pg.float32, requires_grad=True)
    f = pg.compile(lambda x: (x * w).sum())
    x = pg.tensor(rng.standard_normal(3), dtype=pg.float32)
    with pg.no_grad():
        assert not f(x).requires_grad
    out = f(x)  # traced again with grad on
    assert out.requires_grad
    out.backward()
    np.testing.assert_allclose(w.grad.numpy(), x.numpy())


def test_backward_on_the_result_of_a_compiled_train_step_names_the_problem(rng):
    model = pg.nn.Linear(3, 1)
    opt = pg.optim.SGD(model.parameters(), lr=0.1)

    @pg.compile
    def step(x):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    loss = step(pg.tensor(rng.standard_normal((4, 3)), dtype=pg.float32))
    with raises_on_next_line(RuntimeError, "step is a compiled function that runs backward() itself", "inside") as r:
        loss.backward()
    assert "test_compile_autograd.py:" in r.message.split("itself")[1]  # the line of the backward() inside
