"""picograd: a deep-learning compiler on xDSL.

PyTorch-style models (``Tensor``, ``nn``, ``optim``) are traced into the ``pg`` tensor dialect; autodiff and the
optimizer updates are passes over that dialect; the result runs on the CPU through numpy (the default device).
See design.md for the pipeline and the README for a tour.
"""

import sys

from picograd.errors import CheckpointError, CompileError, DeviceError, DTypeError, ShapeError
from picograd.frontend import nn, optim
from picograd.frontend.compile import Spec, compile
from picograd.frontend.creation import (
    arange,
    cat,
    full,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    stack,
    tensor,
    zeros,
    zeros_like,
)
from picograd.frontend.dtypes import bool_, float32, float64, int32, int64
from picograd.frontend.graph import no_grad
from picograd.frontend.random import manual_seed
from picograd.frontend.realize import matmul_schedule, set_cache_size
from picograd.frontend.serialization import load, save
from picograd.frontend.tensor import Tensor, maximum, minimum, where

# `import picograd.nn.functional as F` and `from picograd.optim import SGD` work as they do for torch
sys.modules[__name__ + ".nn"] = nn
sys.modules[__name__ + ".nn.functional"] = nn.functional
sys.modules[__name__ + ".optim"] = optim

float = float32  # noqa: A001 - torch.float
long = int64
bool = bool_  # noqa: A001 - torch.bool

__all__ = [
    "CheckpointError", "CompileError", "DeviceError", "DTypeError", "ShapeError", "Spec", "Tensor", "arange", "bool_",
    "cat", "compile", "float32", "float64", "full", "int32", "int64", "load", "manual_seed", "matmul_schedule",
    "maximum", "minimum", "nn", "no_grad", "ones", "ones_like", "optim", "rand", "randint", "randn", "save",
    "set_cache_size", "stack", "tensor", "where", "zeros", "zeros_like",
]  # fmt: skip
