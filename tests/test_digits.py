"""The digits examples (issue 12): their data split, the FID and Inception Score code, the committed classifier,
and the first steps of ``cnn_digits.py`` and ``ddpm_digits.py`` against their PyTorch twins (same initial
state_dict, same batches, the DDPM twin fed picograd's timesteps and noise)."""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

import picograd as pg

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _import(*names: str):
    sys.path[:0] = [os.path.join(ROOT, "examples"), os.path.join(ROOT, "bench")]
    try:
        # fresh modules, so fresh compiled functions bound to the model made here
        return [importlib.reload(importlib.import_module(n)) for n in names]
    finally:
        del sys.path[:2]


def test_split_is_fixed_disjoint_and_covers_every_class() -> None:
    (dd,) = _import("digits_data")
    a, b = dd.load_digits(), dd.load_digits()
    assert a.x_train.shape == (1437, 1, 8, 8) and a.x_test.shape == (360, 1, 8, 8)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert 0 <= a.x_train.min() and a.x_train.max() == 16
    assert set(a.y_train) == set(a.y_test) == set(range(10))
    rows = {r.tobytes() for r in a.x_test.reshape(360, -1)}
    assert sum(r.tobytes() in rows for r in a.x_train.reshape(1437, -1)) < 10  # a few digits recur in the set
    other = dd.load_digits(seed=1)
    assert not np.array_equal(other.y_test, a.y_test)


def test_load_digits_names_a_bad_file(tmp_path) -> None:
    import gzip

    (dd,) = _import("digits_data")
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write(",".join(["17"] * 64 + ["3"]) + "\n")
    with pytest.raises(ValueError, match="bad.csv.gz"):
        dd.load_digits(str(bad))


def test_frechet_distance_against_closed_forms() -> None:
    (dd,) = _import("digits_data")
    rng = np.random.default_rng(7)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    shift = rng.normal(size=12)
    assert dd.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # b = 2a + shift: S_b = 4 S_a, (S_a S_b)^(1/2) = 2 S_a, so FID = |shift + mu_a|^2 + Tr(S_a)
    b = 2 * a + shift
    want = ((a.mean(0) + shift) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert dd.frechet_distance(a, b) == pytest.approx(want, rel=1e-9)
    assert dd.frechet_distance(a, b) == pytest.approx(dd.frechet_distance(b, a), rel=1e-9)


def test_inception_score_bounds() -> None:
    (dd,) = _import("digits_data")
    assert dd.inception_score(np.eye(10)[np.arange(100) % 10]) == pytest.approx(10.0)
    assert dd.inception_score(np.eye(10)[np.zeros(50, int)]) == pytest.approx(1.0)
    assert dd.inception_score(np.full((30, 10), 0.1)) == pytest.approx(1.0)
    p = np.random.default_rng(0).dirichlet(np.ones(10), 200)
    assert 1.0 < dd.inception_score(p) < 10.0


def test_committed_classifier_scores_the_held_out_digits() -> None:
    cnn, dd = _import("cnn_digits", "digits_data")
    data = dd.load_digits()
    classify = cnn.load_classifier()
    features, probs = classify(dd.to_unit(data.x_test))
    assert features.shape == (360, cnn.HIDDEN) and probs.shape == (360, 10)
    assert (probs.argmax(1) == data.y_test).mean() >= 0.98
    fid, inception = dd.quality(classify, dd.to_unit(data.x_test), dd.to_unit(data.x_train))
    assert 0 < fid < 10 and inception > 8


def test_cnn_example_matches_its_twin() -> None:
    ex, dd, twin_mod = _import("cnn_digits", "digits_data", "cnn_digits_twin")
    data = dd.load_digits()
    x = dd.to_unit(data.x_train)
    ex.model, ex.opt = ex.make(3)
    twin = twin_mod.from_picograd(twin_mod.TorchCNN(), ex.model.state_dict())
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR)
    rng = np.random.default_rng(3)
    for _ in range(4):
        idx = dd.batches(len(x), 16, rng)
        ours = ex.train_step(pg.tensor(x[idx]), pg.tensor(data.y_train[idx])).item()
        loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x[idx])), torch.from_numpy(data.y_train[idx]))
        topt.zero_grad()
        loss.backward()
        topt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-4)
    state = ex.model.state_dict()
    for name, value in twin.state_dict().items():  # BatchNorm's running statistics and step count included
        np.testing.assert_allclose(np.array(state[name]), value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_ddpm_example_matches_its_twin() -> None:
    ex, dd, twin_mod, cnn_twin = _import("ddpm_digits", "digits_data", "ddpm_digits_twin", "cnn_digits_twin")
    x = dd.to_signed(dd.load_digits().x_train)
    ex.model, ex.opt, ex.sched = ex.make(5)
    twin = cnn_twin.from_picograd(twin_mod.TorchUNet(), ex.model.state_dict())
    topt = torch.optim.Adam(twin.parameters(), lr=ex.LR)
    alpha_bar = torch.cumprod(1.0 - torch.from_numpy(ex.betas()), 0)
    np.testing.assert_allclose(ex.sched.alpha_bar.numpy(), alpha_bar.numpy(), rtol=1e-5)
    rng = np.random.default_rng(5)
    for _ in range(3):
        x0 = x[dd.batches(len(x), 16, rng)]  # a small batch: the test is about agreement, not the recipe
        loss, t, noise = ex.train_step(pg.tensor(x0))
        tt, nt = torch.from_numpy(t.numpy()), torch.from_numpy(noise.numpy())
        assert tt.dtype == torch.int64 and 0 <= tt.min() and tt.max() < ex.T and nt.std() == pytest.approx(1, abs=0.1)
        a = alpha_bar[tt][:, None, None, None]
        tloss = torch.nn.functional.mse_loss(twin(a.sqrt() * torch.from_numpy(x0) + (1 - a).sqrt() * nt, tt), nt)
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-4)
    # one compiled sampler step on 4 noisy images: the update of Algorithm 2 with sigma = 0 at t = 0
    xt = np.random.default_rng(1).normal(size=(4, 1, 8, 8)).astype(np.float32)
    coef = ex.sampler_coefficients(0)
    assert coef[2] == 0
    ours = ex.sample_step(pg.tensor(xt), pg.tensor(np.zeros(4, np.int64)), pg.tensor(coef)).numpy()
    with torch.no_grad():
        eps = twin(torch.from_numpy(xt), torch.zeros(4, dtype=torch.int64)).numpy()
    np.testing.assert_allclose(ours, coef[0] * (xt - coef[1] * eps), rtol=1e-4, atol=1e-5)
