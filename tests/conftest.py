"""Shared pytest fixtures: a fresh, unseeded numpy generator per test (every run draws new inputs)."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


@pytest.fixture(autouse=True, scope="session")
def verify_each_pass():
    """The tests verify the module after every pass (``pgc --verify-each``), so that a pass's fault shows at that
    pass; outside the tests the pipeline verifies once, at its end."""
    from picograd.driver.pipeline import VERIFY_EACH_ENV

    os.environ[VERIFY_EACH_ENV] = "1"  # also for the pgc and pgc-opt processes the tests start
    yield
