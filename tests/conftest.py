"""Shared pytest fixtures: a fresh, unseeded numpy generator per test (every run draws new inputs)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()
