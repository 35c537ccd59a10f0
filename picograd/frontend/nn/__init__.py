"""``pg.nn``: modules with PyTorch's names (``Module``, ``Linear``, ``Embedding``, ``LayerNorm``, ...)."""

from picograd.frontend.nn import functional
from picograd.frontend.nn.modules import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
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
]
