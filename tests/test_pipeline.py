"""The pipeline's verification policy: once at the end of a pipeline, after every pass under --verify-each."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

import picograd as pg
from picograd.pipeline import VERIFY_EACH_ENV, passes_until, run_passes, set_verify_each, verify_each


def _module(rng: np.random.Generator) -> ModuleOp:
    w = pg.nn.Parameter(rng.standard_normal((3, 4)).astype(np.float32))

    @pg.compile(example_inputs=(pg.Spec((2, 3)),))
    def step(x: pg.Tensor) -> pg.Tensor:
        loss = (x @ w).tanh().sum()
        loss.backward()
        return loss

    return step.ir("pg")


@pytest.mark.parametrize("each, expected", [(False, 1), (True, None)])
def test_run_passes_verifies_once_unless_each(rng, monkeypatch, each, expected):
    module = _module(rng)
    names = passes_until("simplify")
    calls = []
    verify = ModuleOp.verify
    monkeypatch.setattr(ModuleOp, "verify", lambda self, *a, **k: calls.append(1) or verify(self, *a, **k))
    run_passes(module, names, each=each)
    assert len(calls) == (expected if expected is not None else len(names)) and len(names) > 1


def test_verify_each_follows_the_environment_then_the_setting(monkeypatch):
    monkeypatch.setenv(VERIFY_EACH_ENV, "0")
    assert not verify_each()
    monkeypatch.setenv(VERIFY_EACH_ENV, "1")
    assert verify_each()
    try:
        set_verify_each(False)
        assert not verify_each()
    finally:
        set_verify_each(None)
    assert verify_each()
