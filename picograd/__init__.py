"""picograd: a deep-learning compiler on xDSL.

PyTorch-style models (``Tensor``, ``nn``, ``optim``) are traced into the ``pg`` tensor dialect; autodiff and the
optimizer updates are passes over that dialect; the result runs on the CPU through numpy (the default device).
See design.md for the pipeline and the README for a tour.
"""

import sys

from picograd.errors import CompileError, DeviceError, DTypeError, ShapeError

# -- the operator surface (issue 20)
from picograd.frontend import (
    nn,
    ops,  # noqa: E402 - importing it attaches the Tensor methods
    optim,
)
from picograd.frontend.compile import Spec, compile
from picograd.frontend.creation import (  # noqa: E402
    arange,
    cat,
    empty,
    empty_like,
    eye,
    full,
    full_like,
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
from picograd.frontend.ops import (  # noqa: E402  # noqa: E402, A004
    all,
    allclose,
    any,
    argsort,
    cummax,
    cummin,
    cumprod,
    cumsum,
    einsum,
    flip,
    gather,
    isclose,
    logcumsumexp,
    masked_select,
    nonzero,
    prod,
    repeat,
    roll,
    scatter,
    scatter_add,
    scatter_reduce,
    sort,
    std_mean,
    take_along_dim,
    tile,
    var_mean,
)  # fmt: skip
from picograd.frontend.random import manual_seed
from picograd.frontend.realize import matmul_schedule
from picograd.frontend.serialization import load, save
from picograd.frontend.tensor import Tensor, ValuesIndices, matmul, maximum, minimum, where  # noqa: E402

TENSOR_FUNCTIONS = (
    "floor", "ceil", "round", "trunc", "fix", "sign", "sgn", "log2", "exp2", "log1p", "expm1", "asin", "acos", "atan",
    "asinh", "acosh", "atanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "atan2", "arctan2",
    "copysign", "div", "divide", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_not", "amax",
    "amin", "max", "min", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "abs", "relu", "sum",
    "mean", "var", "std", "argmax", "argmin", "logsumexp", "softmax", "log_softmax", "reshape", "permute",
    "transpose", "flatten", "squeeze", "unsqueeze", "reciprocal", "erf", "neg",
)  # fmt: skip
"""``torch.floor(x)`` and friends: functions calling the Tensor method of the same name."""


def _tensor_function(name: str):  # noqa: ANN202
    def fn(input, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``input.{name}(...)`` (see ``Tensor.{name}``)."
    return fn


for _name in TENSOR_FUNCTIONS:
    globals().setdefault(_name, _tensor_function(_name))

# `import picograd.nn.functional as F` and `from picograd.optim import SGD` work as they do for torch
sys.modules[__name__ + ".nn"] = nn
sys.modules[__name__ + ".nn.functional"] = nn.functional
sys.modules[__name__ + ".optim"] = optim

float = float32  # noqa: A001 - torch.float
long = int64
bool = bool_  # noqa: A001 - torch.bool

__all__ = [
    "CompileError", "DeviceError", "DTypeError", "ShapeError", "Spec", "Tensor", "arange", "bool_", "cat", "compile",
    "float32", "float64", "full", "int32", "int64", "load", "manual_seed", "matmul_schedule", "maximum", "minimum",
    "nn", "no_grad", "ones", "ones_like", "optim", "rand", "randint", "randn", "save", "stack", "tensor", "where",
    "zeros", "zeros_like",
]  # fmt: skip
__all__ += [
    "ValuesIndices", "all", "allclose", "any", "argsort", "cummax", "cummin", "cumprod", "cumsum", "einsum", "empty",
    "empty_like", "eye", "flip", "full_like", "gather", "isclose", "logcumsumexp", "masked_select", "matmul",
    "nonzero", "ops", "prod", "repeat", "roll", "scatter", "scatter_add", "scatter_reduce", "sort", "std_mean",
    "take_along_dim", "tile", "var_mean",
]  # fmt: skip
__all__ += list(TENSOR_FUNCTIONS)
