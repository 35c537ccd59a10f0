"""Recurrent modules with PyTorch's API: ``RNN`` (tanh or relu), ``GRU``, ``LSTM`` and their one-step cells.

Parameter names, shapes, gate order and initialisation are PyTorch's, so a ``state_dict`` moves between the two
frameworks unchanged: layer ``k`` holds ``weight_ih_l{k}`` (G*H, I), ``weight_hh_l{k}`` (G*H, H), ``bias_ih_l{k}``
and ``bias_hh_l{k}`` (G*H,), with G = 1 (RNN), 3 (GRU: gates r, z, n) or 4 (LSTM: gates i, f, g, o); every
parameter is uniform in ``±1/sqrt(hidden_size)``. The equations are those of ``torch.nn.RNN``/``GRU``/``LSTM``
(Elman 1990; Cho et al. 2014, with the reset gate applied after the hidden matmul as cuDNN does; Hochreiter and
Schmidhuber 1997 with a forget gate, Gers et al. 2000).

Everything is composed of existing ``pg`` ops (matmul, sigmoid, tanh, slice, concat): a sequence of T steps is
unrolled while tracing, so the graph holds one input projection per layer (a single matmul over all T steps, as
cuDNN does) and then T copies of the cell's hidden-state update; its size, and so compile time, is linear in T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from picograd.errors import ShapeError
from picograd.frontend import creation
from picograd.frontend.graph import at, user_location
from picograd.frontend.nn import functional as F
from picograd.frontend.nn.modules import Module, uniform_parameter
from picograd.frontend.tensor import Tensor

# mode -> number of gates stacked in the weight matrices
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}

State = Any  # a Tensor (RNN, GRU) or a (h, c) pair of Tensors (LSTM)


def _gate(x: Tensor, k: int, hidden: int) -> Tensor:
    """Gate ``k`` of pre-activations ``x`` (..., G*H): columns ``k*H:(k+1)*H``."""
    return x[..., k * hidden : (k + 1) * hidden]


def rnn_tanh_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """One Elman step from the input projection ``gi = x W_ih^T + b_ih`` (B, H) and state ``h`` (B, H):
    ``tanh(gi + h W_hh^T + b_hh)``."""
    return (gi + F.linear(h, w_hh, b_hh)).tanh()


def rnn_relu_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """``rnn_tanh_step`` with ``relu`` in place of ``tanh``."""
    return (gi + F.linear(h, w_hh, b_hh)).relu()


def gru_step(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """One GRU step from ``gi = x W_ih^T + b_ih`` (B, 3H) and ``h`` (B, H), as ``torch.nn.GRU``:
    r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r * gh_n), h' = (1 - z) * n + z * h
    with ``gh = h W_hh^T + b_hh``."""
    hidden = h.shape[-1]
    gh = F.linear(h, w_hh, b_hh)
    rz = (gi + gh)[..., : 2 * hidden].sigmoid()
    r, z = _gate(rz, 0, hidden), _gate(rz, 1, hidden)
    n = (_gate(gi, 2, hidden) + r * _gate(gh, 2, hidden)).tanh()
    return n + z * (h - n)


def lstm_step(gi: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor, b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTM step from ``gi = x W_ih^T + b_ih`` (B, 4H) and ``(h, c)`` (B, H) each, as ``torch.nn.LSTM``:
    gates i, f, g, o = σ, σ, tanh, σ of ``gi + h W_hh^T + b_hh``; c' = f * c + i * g, h' = o * tanh(c')."""
    h, c = state
    hidden = h.shape[-1]
    gates = gi + F.linear(h, w_hh, b_hh)
    ifo = gates.sigmoid()  # one sigmoid over all gates; the g block is not used
    i, f, o = _gate(ifo, 0, hidden), _gate(ifo, 1, hidden), _gate(ifo, 3, hidden)
    g = _gate(gates, 2, hidden).tanh()
    c2 = f * c + i * g
    return o * c2.tanh(), c2


# mode -> its step function: (input projection, state, W_hh, b_hh) -> next state
STEPS: dict[str, Callable[..., Any]] = {
    "RNN_TANH": rnn_tanh_step,
    "RNN_RELU": rnn_relu_step,
    "GRU": gru_step,
    "LSTM": lstm_step,
}


def _check_state(what: str, state: Any, expected: tuple[int, ...], x: Tensor, loc: Any, other: str = "") -> None:
    """``ShapeError`` unless ``state`` has shape ``expected``; ``other`` is a hint added when the state would fit
    the input read with the other ``batch_first`` layout."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(state).__name__}{at(loc)}")
    if tuple(state.shape) != expected:
        raise ShapeError(
            f"{what}: expected shape {expected} for input of shape {tuple(x.shape)}, got {tuple(state.shape)}"
            f"{other}{at(loc)}"
        )


class RNNBase(Module):
    """The multi-layer recurrent network shared by ``RNN``, ``GRU`` and ``LSTM`` (``torch.nn.RNNBase``)."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"unknown recurrent mode {mode!r}; expected one of {sorted(GATES)}")
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError(
                f"{type(self).__name__}: input_size, hidden_size and num_layers must be positive, got "
                f"{input_size}, {hidden_size}, {num_layers}"
            )
        if not 0 <= dropout <= 1:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1], got {dropout}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first, self.dropout = num_layers, bias, batch_first, dropout
        gates, bound = GATES[mode] * hidden_size, 1 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", uniform_parameter((gates, in_size), bound))
            setattr(self, f"weight_hh_l{layer}", uniform_parameter((gates, hidden_size), bound))
            if bias:
                setattr(self, f"bias_ih_l{layer}", uniform_parameter((gates,), bound))
                setattr(self, f"bias_hh_l{layer}", uniform_parameter((gates,), bound))

    def _layer_params(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        get = self._parameters.get
        w_ih, w_hh = get(f"weight_ih_l{layer}"), get(f"weight_hh_l{layer}")
        assert w_ih is not None and w_hh is not None
        return w_ih, w_hh, get(f"bias_ih_l{layer}"), get(f"bias_hh_l{layer}")

    def _check_input(self, x: Any, loc: Any) -> Tensor:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(x).__name__}{at(loc)}")
        if x.ndim not in (2, 3):
            layout = "(batch, seq, feature)" if self.batch_first else "(seq, batch, feature)"
            raise ShapeError(
                f"{name}: expected input of rank 3 {layout} or rank 2 (seq, feature), got shape "
                f"{tuple(x.shape)}{at(loc)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}(input_size={self.input_size}): input of shape {tuple(x.shape)} has {x.shape[-1]} features, "
                f"expected {self.input_size}{at(loc)}"
            )
        return x

    def forward(self, input: Tensor, hx: State = None) -> tuple[Tensor, State]:
        """``input`` (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I); ``hx`` the initial state
        (num_layers, B, H) (an ``(h_0, c_0)`` pair for LSTM; (num_layers, H) unbatched), zeros when omitted.
        Returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for LSTM): output (T, B, H) (or batch first, or
        unbatched) holds the last layer's state at every step. Raises ``ShapeError`` naming the shapes for input
        of the wrong rank or feature size and for a state of the wrong shape (with a hint when the input looks
        like it has the other ``batch_first`` layout)."""
        loc = user_location()
        x = self._check_input(input, loc)
        unbatched = x.ndim == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        states = self._initial_states(hx, input, batch, unbatched, loc)
        step = STEPS[self.mode]
        finals = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_params(layer)
            if layer > 0 and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            gi = F.linear(x, w_ih, b_ih)  # (T, B, G*H): the input part of every step in one matmul
            state = states[layer]
            outs = []
            for t in range(steps):
                state = step(gi[t], state, w_hh, b_hh)
                outs.append(state[0] if self.mode == "LSTM" else state)
            finals.append(state)
            x = creation.stack(outs, 0)
        if unbatched:
            x = x.squeeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, self._final_state(finals, unbatched)

    def _initial_states(self, hx: State, input: Tensor, batch: int, unbatched: bool, loc: Any) -> list[State]:
        """Per-layer initial states, each (B, H) (an (h, c) pair for LSTM)."""
        name = type(self).__name__
        shape: tuple[int, ...] = (
            (self.num_layers, self.hidden_size) if unbatched else (self.num_layers, batch, self.hidden_size)
        )
        hint = ""
        if not unbatched and input.shape[0] != input.shape[1]:
            other_batch = input.shape[0] if not self.batch_first else input.shape[1]
            states = [s for s in (hx if isinstance(hx, tuple | list) else [hx]) if isinstance(s, Tensor)]
            if any(s.ndim == 3 and s.shape[1] == other_batch for s in states):
                hint = (
                    f"; with batch_first={self.batch_first} dim {1 if not self.batch_first else 0} of the input is "
                    f"the batch: is the input laid out for batch_first={not self.batch_first} (batch {other_batch})?"
                )
        if self.mode == "LSTM":
            if hx is None:
                h0 = c0 = creation.zeros(*shape, dtype=input.dtype, device=input.device)
            else:
                if not isinstance(hx, tuple | list) or len(hx) != 2:
                    raise TypeError(f"{name}: the initial state must be a pair (h_0, c_0){at(loc)}")
                h0, c0 = hx
                _check_state(f"{name}: h_0", h0, shape, input, loc, hint)
                _check_state(f"{name}: c_0", c0, shape, input, loc, hint)
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            return [(h0[k], c0[k]) for k in range(self.num_layers)]
        if hx is None:
            h0 = creation.zeros(*shape, dtype=input.dtype, device=input.device)
        else:
            _check_state(f"{name}: h_0", hx, shape, input, loc, hint)
            h0 = hx
        if unbatched:
            h0 = h0.unsqueeze(1)
        return [h0[k] for k in range(self.num_layers)]

    def _final_state(self, finals: Sequence[State], unbatched: bool) -> State:
        def join(ts: list[Tensor]) -> Tensor:
            out = creation.stack(ts, 0)
            return out.squeeze(1) if unbatched else out

        if self.mode == "LSTM":
            return join([h for h, _ in finals]), join([c for _, c in finals])
        return join(list(finals))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


class RNN(RNNBase):
    """Elman RNN, ``h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` with ``nonlinearity`` 'tanh'
    (default) or 'relu' (``torch.nn.RNN``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class GRU(RNNBase):
    """Gated recurrent unit (``torch.nn.GRU``): gates r, z, n stacked in that order in the weights."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout)


class LSTM(RNNBase):
    """Long short-term memory (``torch.nn.LSTM``): gates i, f, g, o stacked in that order in the weights; the
    state is a pair (h, c)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout)


class RNNCellBase(Module):
    """One step of a recurrent layer (``torch.nn.RNNCellBase``): parameters ``weight_ih`` (G*H, I),
    ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H,), uniform in ``±1/sqrt(hidden_size)``."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if hidden_size < 1 or input_size < 1:
            raise ValueError(
                f"{type(self).__name__}: input_size and hidden_size must be positive, got {input_size}, {hidden_size}"
            )
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        gates, bound = GATES[mode] * hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = uniform_parameter((gates, input_size), bound)
        self.weight_hh = uniform_parameter((gates, hidden_size), bound)
        self.bias_ih = uniform_parameter((gates,), bound) if bias else None
        self.bias_hh = uniform_parameter((gates,), bound) if bias else None

    def forward(self, input: Tensor, hx: State = None) -> State:
        """``input`` (B, I) or (I,), ``hx`` (B, H) or (H,) (a pair for LSTMCell), zeros when omitted; returns the
        next state of the same shape. Raises ``ShapeError`` naming the shapes."""
        loc, name = user_location(), type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}{at(loc)}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}(input_size={self.input_size}): expected input (batch, {self.input_size}) or "
                f"({self.input_size},), got shape {tuple(input.shape)}{at(loc)}"
            )
        unbatched = input.ndim == 1
        x = input.unsqueeze(0) if unbatched else input
        shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)

        def state(s: Any, what: str) -> Tensor:
            if s is None:
                return creation.zeros(x.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            _check_state(f"{name}: {what}", s, shape, input, loc)
            return s.unsqueeze(0) if unbatched else s

        if self.mode == "LSTM":
            if hx is not None and (not isinstance(hx, tuple | list) or len(hx) != 2):
                raise TypeError(f"{name}: the state must be a pair (h, c){at(loc)}")
            h, c = (None, None) if hx is None else hx
            st: State = (state(h, "h"), state(c, "c"))
        else:
            st = state(hx, "hx")
        out = STEPS[self.mode](F.linear(x, self.weight_ih, self.bias_ih), st, self.weight_hh, self.bias_hh)
        if unbatched:
            return (out[0].squeeze(0), out[1].squeeze(0)) if self.mode == "LSTM" else out.squeeze(0)
        return out

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """One Elman step with ``nonlinearity`` 'tanh' or 'relu' (``torch.nn.RNNCell``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity


class GRUCell(RNNCellBase):
    """One GRU step (``torch.nn.GRUCell``), gates r, z, n."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__("GRU", input_size, hidden_size, bias)


class LSTMCell(RNNCellBase):
    """One LSTM step (``torch.nn.LSTMCell``), gates i, f, g, o; state and result are ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__("LSTM", input_size, hidden_size, bias)
