"""``pg.cuda``: the ``torch.cuda`` functions that PyTorch code reaches for to ask about the GPU, with PyTorch's
semantics; on a machine without a usable GPU (no cuda-python, no driver, no GPU visible) ``is_available()`` is False
and ``device_count()`` 0, as PyTorch's.

picograd has one random generator for every device (``picograd.frontend.random``): ``manual_seed`` and
``manual_seed_all`` seed it, as ``pg.manual_seed`` does (PyTorch seeds a separate CUDA generator; scripts seed both
with the same value, which gives the same result)."""

from __future__ import annotations

from picograd.errors import DeviceError
from picograd.frontend import random as generator
from picograd.frontend.graph import at, user_location
from picograd.runtime import cuda as runtime


def is_available() -> bool:
    """Whether a CUDA GPU can be used (``torch.cuda.is_available``); initialises CUDA on the first call."""
    return runtime.available()


def device_count() -> int:
    """The number of GPUs visible (``torch.cuda.device_count``); 0 without a usable GPU."""
    return runtime.device_count()


def current_device() -> int:
    """The index of the GPU that work goes to: 0, picograd's only current device (``torch.cuda.current_device``).
    Raises ``DeviceError`` naming what is missing when there is no usable GPU (PyTorch raises there too)."""
    _require("current_device")
    return 0


def get_device_name(device: object = None) -> str:
    """The name of GPU 0 (``torch.cuda.get_device_name``). Raises ``DeviceError`` without a usable GPU."""
    _require("get_device_name")
    return str(runtime.device().name)


def synchronize(device: object = None) -> None:
    """Wait until the GPU work queued so far is done (``torch.cuda.synchronize``); nothing to wait for, and so a
    no-op, on a machine without a usable GPU."""
    if runtime.available():
        runtime.synchronize()


def empty_cache() -> None:
    """``torch.cuda.empty_cache``: picograd keeps no caching allocator to empty; a no-op."""


def manual_seed(seed: int) -> None:
    """Seed picograd's generator (shared by all devices): ``pg.manual_seed(seed)``."""
    generator.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Seed picograd's generator (shared by all devices): ``pg.manual_seed(seed)``."""
    generator.manual_seed(seed)


def _require(what: str) -> None:
    if not runtime.available():
        try:
            runtime.device()
        except DeviceError as e:
            raise DeviceError(f"pg.cuda.{what}(): {e}{at(user_location())}") from None
