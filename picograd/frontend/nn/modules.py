"""``pg.nn`` modules (PyTorch's API): parameters are tensors that require grad, registered by assignment."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from picograd.errors import ShapeError
from picograd.frontend import creation
from picograd.frontend import device as devices
from picograd.frontend.graph import STATE, user_location
from picograd.frontend.nn import functional as F
from picograd.frontend.tensor import Tensor


def Parameter(data: Any, requires_grad: bool = True) -> Tensor:
    """A realized tensor marked as a module parameter (``torch.nn.Parameter``)."""
    t = Tensor(data, requires_grad=requires_grad)  # a tensor's copy stays on its device
    t._is_param = True  # type: ignore[attr-defined]
    return t


class Module:
    """Base of all modules: parameters and submodules are registered when assigned as attributes;
    ``__call__`` runs ``forward``. Assigning an attribute (or ``train()``/``eval()``) makes compiled steps traced
    before it trace again at their next call, so that none uses a stale parameter or setting."""

    _parameters: dict[str, Tensor]
    _modules: dict[str, Module]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call super().__init__() before assigning attributes of a Module")
        if STATE.trace is None:  # compiled steps traced before this retrace (their guard)
            STATE.bindings += 1
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Tensor) and getattr(value, "_is_param", False):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, parameter)`` pairs, depth first, each parameter once."""
        seen: set[int] = set()
        for name, p in self._named(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named(self, prefix: str) -> Iterator[tuple[str, Tensor]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m._named(f"{prefix}{name}.")

    def parameters(self) -> Iterator[Tensor]:
        for _, p in self.named_parameters():
            yield p

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def modules(self) -> Iterator[Module]:
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        STATE.bindings += 1
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: Any) -> Module:
        """Move every parameter (and its ``.grad``) to ``device`` in place and return ``self`` (as
        ``torch.nn.Module.to``): the parameters stay the same objects, so an optimizer made before the move keeps
        working; its state is created on (or moved to) the parameters' device by the next ``step()``. Raises
        ``DeviceError`` for an unknown or unavailable device."""
        dev = devices.resolve(device, user_location())
        for p in self.parameters():
            p._move_(dev)
        return self

    def cuda(self) -> Module:
        """``self.to("cuda")``."""
        return self.to(devices.CUDA)

    def cpu(self) -> Module:
        """``self.to("cpu")``."""
        return self.to(devices.CPU)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter name -> a copy of its value as a numpy array."""
        return {name: p.numpy().copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy values into the parameters. Raises ``KeyError`` for missing/unexpected keys when ``strict`` and
        ``ShapeError`` for a shape mismatch."""
        params = dict(self.named_parameters())
        if strict:
            missing, unexpected = set(params) - set(state), set(state) - set(params)
            if missing or unexpected:
                raise KeyError(f"load_state_dict: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}")
        for name, value in state.items():
            if name not in params:
                continue
            p = params[name]
            arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
            if arr.shape != p.shape:
                raise ShapeError(f"load_state_dict: {name} has shape {p.shape}, the state has {arr.shape}")
            p._set_buffer(devices.transfer(arr.astype(p.dtype.np, order="C"), p.device))

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


def _uniform(shape: tuple[int, ...], bound: float) -> Tensor:
    return Parameter((creation.rand(*shape) * (2 * bound) - bound).numpy())


class Linear(Module):
    """``y = x @ W.T + b`` with W (out_features, in_features); PyTorch's default initialisation: W and b uniform in
    ``±1/sqrt(in_features)`` (``kaiming_uniform_(a=sqrt(5))``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            from picograd.frontend.graph import at, user_location

            raise ShapeError(
                f"Linear({self.in_features}, {self.out_features}): input of shape {x.shape} does not end in "
                f"{self.in_features}{at(user_location())}"
            )
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` rows of size ``embedding_dim``, initialised N(0, 1) (as PyTorch)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(creation.randn(num_embeddings, embedding_dim).numpy())

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` with learnable weight (ones) and bias (zeros)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(np.ones(shape, np.float32)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, np.float32)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Sequential(Module):
    """Modules applied in order."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Dropout(Module):
    """Inverted dropout with probability ``p`` while training; identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)
