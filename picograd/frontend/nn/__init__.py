"""``pg.nn``: modules with PyTorch's names (``Module``, ``Linear``, ``Embedding``, ``LayerNorm``, ...)."""

from picograd.frontend.nn import functional, utils
from picograd.frontend.nn.modules import (
    GELU,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    Linear,
    Module,
    ModuleDict,
    ModuleList,
    MultiheadAttention,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = [
    "functional",
    "Module",
    "Parameter",
    "Linear",
    "Embedding",
    "LayerNorm",
    "Sequential",
    "ReLU",
    "Tanh",
    "Dropout",
    "utils",
    "ModuleList",
    "ModuleDict",
    "GELU",
    "Sigmoid",
    "Identity",
    "Flatten",
    "MultiheadAttention",
]
