"""pg.set_num_threads / pg.get_num_threads follow PyTorch's: OMP_NUM_THREADS by default, a positive int to set."""

from __future__ import annotations

import os

import pytest

import picograd as pg
from picograd.runtime import threads


@pytest.fixture
def restore():
    saved = pg.get_num_threads()
    yield
    pg.set_num_threads(saved)


def test_default_follows_omp_num_threads(monkeypatch):
    monkeypatch.setattr(threads, "_THREADS", [None])
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert pg.get_num_threads() == 3
    for bad in ("0", "x", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert pg.get_num_threads() == (os.cpu_count() or 1)


def test_set_then_get(restore):
    for n in (1, 2):
        pg.set_num_threads(n)
        assert pg.get_num_threads() == n


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_rejects_what_is_not_a_positive_int(restore, bad):
    with pytest.raises(ValueError, match="positive int"):
        pg.set_num_threads(bad)
