"""How many threads the CPU backend uses: ``pg.set_num_threads(n)`` / ``pg.get_num_threads()``, as PyTorch's.

The default is ``OMP_NUM_THREADS`` when it is set to a positive integer (PyTorch's rule), else the machine's core
count. The CPU runtime (``cpu_jit``) splits loop nests over that many threads of its own pool (``cpu_pool``) and
leaves matmuls to numpy's BLAS, threaded by BLAS itself: ``set_num_threads`` sets BLAS's thread count through
``threadpoolctl`` when that package is installed. Without it the BLAS keeps the thread count it read when numpy was
loaded (``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` in the environment, else every core): set the variable before
starting Python, as ``bench/cpu_models.py`` does for each thread count it measures.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_THREADS: list[int | None] = [None]  # the set_num_threads setting; None: the default


def default_num_threads() -> int:
    """``OMP_NUM_THREADS`` when it is a positive integer, else ``os.cpu_count()`` (1 when unknown)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def get_num_threads() -> int:
    """The number of threads the CPU backend uses (``torch.get_num_threads``)."""
    n = _THREADS[0]
    return default_num_threads() if n is None else n


def set_num_threads(n: int) -> None:
    """Use ``n`` threads on the CPU (``torch.set_num_threads``); limits numpy's BLAS through ``threadpoolctl`` when it
    is installed (see the module docstring). Raises ``ValueError`` unless ``n`` is a positive int."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: the number of threads must be a positive int, got {n!r}")
    _THREADS[0] = n
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")


_BLAS: list[list[Any]] = []  # threadpoolctl's controllers of the BLAS libraries loaded (found once)


def _blas_libraries() -> list[Any]:
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS.append([])
        else:
            _BLAS.append(list(ThreadpoolController().select(user_api="blas").lib_controllers))
    return _BLAS[0]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """Within the block numpy's BLAS runs each call on the calling thread (for a runtime that spreads many small
    BLAS calls over threads of its own, as ``cpu_jit`` does with attention chunks: a 2-thread BLAS call per small
    product waits on its helper thread each time); yields whether it could (it needs ``threadpoolctl``), and
    restores the BLAS thread counts on leaving."""
    libs = _blas_libraries()
    before = [lib.num_threads for lib in libs]
    for lib, n in zip(libs, before, strict=True):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield bool(libs)
    finally:
        for lib, n in zip(libs, before, strict=True):
            if n != 1:
                lib.set_num_threads(n)
