"""Passes over picograd's dialects: one pass per module, ``pg-foo-bar`` in ``foo_bar.py``.

``all_passes()`` finds them by scanning this package, so adding a pass means adding its file; ``pgc-opt`` and the
compile pipeline look passes up here by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from xdsl.passes import ModulePass


def all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Every picograd pass by its command-line name (``pg-autodiff`` -> its ``ModulePass`` class)."""
    found: dict[str, Callable[[], type[ModulePass]]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, ModulePass)
                and obj is not ModulePass
                and obj.__module__ == module.__name__
                and isinstance(getattr(obj, "name", None), str)
            ):
                found[obj.name] = _factory(obj)
    return found


def _factory(cls: type[ModulePass]) -> Callable[[], type[ModulePass]]:
    return lambda: cls
