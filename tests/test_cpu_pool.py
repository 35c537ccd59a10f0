"""The CPU runtime's thread pool (``picograd.runtime.cpu_pool``): every piece of every entry runs once, entries in
order, on the calling thread and the workers."""

from __future__ import annotations

import ctypes
import threading

import pytest

pytest.importorskip("llvmlite")

from picograd.runtime import cpu_jit, cpu_pool  # noqa: E402

PIECE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def callback(fn) -> object:
    """A ``ctypes`` function with a nest's signature calling ``fn(lo, hi)`` (the tests' stand-in for a nest)."""
    return PIECE(lambda slots, map_, lo, hi: fn(lo, hi))


def _address(fn: object) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


def test_pieces_cover_each_entry_once_in_order() -> None:
    seen: list[tuple[int, int, int]] = []

    def recorder(j: int):
        return lambda lo, hi: seen.append((j, lo, hi))

    calls = [callback(recorder(j)) for j in range(3)]
    bounds = [(0, 100, 7), (5, 9, 4), (3, 4, 1)]
    entries = [(_address(c), 0, lo, hi, p, cpu_pool.NEST) for c, (lo, hi, p) in zip(calls, bounds, strict=True)]
    job = cpu_pool.Job(entries)
    for _ in range(50):  # the same job again and again: counters reset for each generation
        seen.clear()
        cpu_jit.pool().run(job, 0, 1)
        assert [j for j, _, _ in seen] == sorted(j for j, _, _ in seen)  # an entry starts when the one before is done
        for j, (lo, hi, pieces) in enumerate(bounds):
            ranges = sorted((a, b) for k, a, b in seen if k == j)
            assert len(ranges) == pieces
            assert ranges[0][0] == lo and ranges[-1][1] == hi
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_workers_take_pieces() -> None:
    """With a helper and pieces that wait for one another, both threads run pieces."""
    names: set[str] = set()
    barrier = threading.Barrier(2, timeout=10)

    def piece(lo: int, hi: int) -> None:
        names.add(threading.current_thread().name)
        barrier.wait()

    call = callback(piece)
    cpu_jit.pool().run(cpu_pool.Job([(_address(call), 0, 0, 2, 2, cpu_pool.NEST)]), 0, 1)
    assert len(names) == 2


def test_a_job_rejects_bad_pieces() -> None:
    with pytest.raises(ValueError, match="pieces"):
        cpu_pool.Job([(1, 0, 0, 4, 0, cpu_pool.NEST)])
    with pytest.raises(ValueError, match="pieces"):
        cpu_pool.Job([(1, 0, 0, 0, 2, cpu_pool.SEQUENCE)])


def test_an_error_in_a_worker_surfaces() -> None:
    """A Python callback's exception, raised on a worker thread, is kept for the caller to raise."""
    main = threading.current_thread()
    barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def piece(lo: int, hi: int) -> None:
        barrier.wait()  # so that the worker runs one of the two pieces
        if threading.current_thread() is not main:
            raise ZeroDivisionError(f"piece {lo}:{hi} on a worker")

    call = cpu_pool.callback(piece, errors)
    cpu_jit.pool().run(cpu_pool.Job([(_address(call), 0, 0, 2, 2, cpu_pool.NEST)]), 0, 1)
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
