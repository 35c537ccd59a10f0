"""``pg.nn``: modules with PyTorch's names (``Module``, ``Linear``, ``Embedding``, ``LayerNorm``, ``LSTM``, ...)."""

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
from picograd.frontend.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase

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
    "RNNBase",
    "RNN",
    "GRU",
    "LSTM",
    "RNNCellBase",
    "RNNCell",
    "GRUCell",
    "LSTMCell",
]
