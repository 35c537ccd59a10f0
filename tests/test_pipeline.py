"""The pipeline's verification policy: once at the end of a pipeline, after every pass under --verify-each."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

import picograd as pg
from picograd.driver.pipeline import VERIFY_EACH_ENV, passes_until, run_passes, set_verify_each, verify_each


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


@pytest.mark.parametrize("flag, expected", [([], 2), (["--verify-each"], 4)])
def test_pgc_opt_verifies_the_input_and_the_result_unless_verify_each(tmp_path, monkeypatch, flag, expected):
    from picograd.tools.pgc_opt import main

    monkeypatch.setenv(VERIFY_EACH_ENV, "0")
    src = tmp_path / "in.mlir"
    src.write_text("func.func @f(%a: f32) -> f32 {\n  %b = arith.addf %a, %a : f32\n  func.return %b : f32\n}\n")
    calls = []
    verify = ModuleOp.verify
    monkeypatch.setattr(ModuleOp, "verify", lambda self, *a, **k: calls.append(1) or verify(self, *a, **k))
    assert main([str(src), "-p", "cse,dce,cse", "-o", str(tmp_path / "out.mlir"), *flag]) == 0
    assert len(calls) == expected  # the input, between the 3 passes with --verify-each, the result
