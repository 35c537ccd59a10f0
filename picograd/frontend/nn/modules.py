"""``pg.nn`` modules (PyTorch's API): parameters are tensors that require grad, registered by assignment."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from picograd.errors import DTypeError, ShapeError
from picograd.frontend import creation, dtypes
from picograd.frontend import device as devices
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.nn import functional as F
from picograd.frontend.tensor import Tensor, where


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
    _buffers: dict[str, Tensor | None]
    _non_persistent: set[str]
    _modules: dict[str, Module]
    _training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_training", True)

    @property
    def training(self) -> bool:
        """Whether the module is in training mode (``train()`` / ``eval()``). Read while ``@pg.compile`` traces, it
        becomes a guard of the compiled step: a call in the other mode traces again (dropout on or off)."""
        mode = self._training
        trace = STATE.trace
        if trace is not None:
            trace.mode_reads.setdefault(id(self), (self, mode))
        return mode

    @training.setter
    def training(self, mode: bool) -> None:
        object.__setattr__(self, "_training", bool(mode))

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call super().__init__() before assigning attributes of a Module")
        if STATE.trace is None:  # compiled steps traced before this retrace (their guard)
            STATE.bindings += 1
        if name in self.__dict__.get("_buffers", {}) and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value  # assigning a registered buffer keeps it a buffer (as PyTorch)
            object.__setattr__(self, name, value)
            return
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.get("_buffers", {}).pop(name, None)
        if isinstance(value, Tensor) and getattr(value, "_is_param", False):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        """``del module.name``: a compiled step that read it traces again; a parameter, buffer or submodule of that
        name is no longer one (as PyTorch)."""
        if STATE.trace is None:
            STATE.bindings += 1
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

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

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register ``tensor`` as a buffer: state that is not a parameter (BatchNorm's running statistics), moved
        by ``to()`` and kept in the ``state_dict`` unless ``persistent=False`` (``torch.nn.Module.register_buffer``).
        A compiled step reads a buffer afresh at every call and writes back what the step assigns to it. Raises
        ``KeyError`` for a name that is already an attribute and ``TypeError`` for a non-tensor."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("call super().__init__() before register_buffer()")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: invalid buffer name {name!r}{at(user_location())}")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute '{name}' already exists{at(user_location())}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: {name} must be a Tensor or None, got {type(tensor).__name__}{at(user_location())}"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        if STATE.trace is None:
            STATE.bindings += 1
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, buffer)`` pairs, depth first, each buffer once (None buffers skipped)."""
        seen: set[int] = set()
        for m_prefix, m in self._named_modules(prefix):
            for name, b in m._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    yield m_prefix + name, b

    def buffers(self) -> Iterator[Tensor]:
        for _, b in self.named_buffers():
            yield b

    def _named_modules(self, prefix: str) -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m._named_modules(f"{prefix}{name}.")

    def _state_items(self) -> Iterator[tuple[str, Tensor]]:
        """What the state_dict holds, in PyTorch's order: per module, its parameters then its persistent buffers."""
        seen: set[int] = set()
        for m_prefix, m in self._named_modules(""):
            items = [*m._parameters.items(), *((k, b) for k, b in m._buffers.items() if k not in m._non_persistent)]
            for name, t in items:
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield m_prefix + name, t

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def modules(self) -> Iterator[Module]:
        yield self
        for m in self._modules.values():
            yield from m.modules()

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and on this module, as ``torch.nn.Module.apply`` (the
        usual way to initialise weights); returns ``self``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (freeze with False), as ``torch.nn.Module.requires_grad_``."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "_training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: Any = None, dtype: Any = None) -> Module:
        """Move every parameter (and its ``.grad``) to ``device`` and/or convert the float ones to ``dtype``, in
        place, and return ``self`` (as ``torch.nn.Module.to``): ``model.to("cuda")``, ``model.to(pg.bfloat16)``,
        ``model.to("cuda", pg.bfloat16)``. The parameters stay the same objects, so an optimizer made before keeps
        working; its state is created on (or moved to) the parameters' device by the next ``step()``. Buffers
        (BatchNorm's running statistics) go along; integer parameters and buffers keep their dtype. Raises
        ``DeviceError`` for an unknown or unavailable device, ``DTypeError`` for a non-float ``dtype``."""
        if device is not None and dtype is None:
            try:
                dtype, device = dtypes.as_dtype(device), None
            except DTypeError:
                pass
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if not dtype.is_floating_point:
                raise DTypeError(f"Module.to: dtype must be a float dtype, got {dtype.name}{at(user_location())}")
            for p in (*self.parameters(), *self.buffers()):
                if p.dtype.is_floating_point:
                    p._convert_(dtype)
        if device is not None:
            dev = devices.resolve(device, user_location())
            for p in (*self.parameters(), *self.buffers()):
                p._move_(dev)
        return self

    def cuda(self) -> Module:
        """``self.to("cuda")``."""
        return self.to(devices.CUDA)

    def cpu(self) -> Module:
        """``self.to("cpu")``."""
        return self.to(devices.CPU)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter and persistent buffer name -> a copy of its value as a numpy array (PyTorch's keys and order:
        ``conv.weight``, ``bn.running_mean``, ``bn.num_batches_tracked``, ...)."""
        return {name: p.numpy().copy() for name, p in self._state_items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters and persistent buffers. Raises ``KeyError`` for missing/unexpected keys
        when ``strict`` and ``ShapeError`` for a shape mismatch (before copying anything); returns the missing and
        unexpected keys (``missing_keys, unexpected_keys``, empty under ``strict``), as PyTorch."""
        params = dict(self._state_items())
        missing, unexpected = [k for k in params if k not in state], [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}")
        arrays = {}
        for name, value in state.items():
            if name not in params:
                continue
            p = params[name]
            arr = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
            if arr.shape != p.shape:
                raise ShapeError(
                    f"load_state_dict: {name} has shape {p.shape}, the state has {arr.shape}{at(user_location())}"
                )
            arrays[name] = arr
        for name, arr in arrays.items():
            p = params[name]
            p._set_buffer(devices.transfer(arr.astype(p.dtype.np, order="C"), p.device))
        return IncompatibleKeys(missing, unexpected)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""

    # dtype shorthands last: their names (float, double) would shadow the builtins in the annotations above

    def half(self) -> Module:
        """``self.to(pg.float16)``."""
        return self.to(dtype=dtypes.float16)

    def bfloat16(self) -> Module:
        """``self.to(pg.bfloat16)``."""
        return self.to(dtype=dtypes.bfloat16)

    def float(self) -> Module:
        """``self.to(pg.float32)``."""
        return self.to(dtype=dtypes.float32)

    def double(self) -> Module:
        """``self.to(pg.float64)``."""
        return self.to(dtype=dtypes.float64)


class IncompatibleKeys(NamedTuple):
    """What ``Module.load_state_dict`` returns: the keys the module has that the state lacks, and the reverse."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def uniform_parameter(shape: tuple[int, ...], bound: float) -> Tensor:
    """A parameter of ``shape`` drawn uniformly from ``[-bound, bound)`` with picograd's generator (float32)."""
    return Parameter((creation.rand(*shape) * (2 * bound) - bound).numpy())


class Linear(Module):
    """``y = x @ W.T + b`` with W (out_features, in_features); PyTorch's default initialisation: W and b uniform in
    ``±1/sqrt(in_features)`` (``kaiming_uniform_(a=sqrt(5))``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = uniform_parameter((out_features, in_features), bound)
        self.bias = uniform_parameter((out_features,), bound) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
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
        if not 0 <= p <= 1:  # as PyTorch: refused when built, not at the first forward
            raise ValueError(f"Dropout: probability must be in [0, 1], got {p}{at(user_location())}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)


# -- activation modules (issue 20)


class ELU(Module):
    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class CELU(Module):
    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.celu(x, self.alpha)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class Hardsigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.hardsigmoid(x)


class Hardswish(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(x)


class Softsign(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.softsign(x)


class Softplus(Module):
    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)


class LogSigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.logsigmoid(x)


class Mish(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.mish(x)


# -- more modules (issue 20, second batch): stateless wrappers of functional ops


def _stateless(name: str, fn: Any, doc: str, *params: tuple[str, Any]) -> type[Module]:
    """A module class whose ``forward(x, ...)`` is ``fn(x, ..., **its constructor arguments)``."""

    def __init__(self: Module, *args: Any, **kwargs: Any) -> None:
        Module.__init__(self)
        names = [p for p, _ in params]
        values = dict(params)
        values.update(zip(names, args, strict=False))
        values.update(kwargs)
        for key, value in values.items():
            setattr(self, key, value)

    def forward(self: Module, *xs: Any) -> Any:
        return fn(*xs, **{p: getattr(self, p) for p, _ in params})

    return type(name, (Module,), {"__init__": __init__, "forward": forward, "__doc__": doc})


SiLU = _stateless("SiLU", F.silu, "``F.silu``.")
SELU = _stateless("SELU", F.selu, "``F.selu``.")
ReLU6 = _stateless("ReLU6", F.relu6, "``F.relu6``.")
Hardtanh = _stateless("Hardtanh", F.hardtanh, "``F.hardtanh``.", ("min_val", -1.0), ("max_val", 1.0))
Threshold = _stateless("Threshold", F.threshold, "``F.threshold``.", ("threshold", 0.0), ("value", 0.0))
Hardshrink = _stateless("Hardshrink", F.hardshrink, "``F.hardshrink``.", ("lambd", 0.5))
Softshrink = _stateless("Softshrink", F.softshrink, "``F.softshrink``.", ("lambd", 0.5))
Tanhshrink = _stateless("Tanhshrink", F.tanhshrink, "``F.tanhshrink``.")
GLU = _stateless("GLU", F.glu, "``F.glu``.", ("dim", -1))
Softmax = _stateless("Softmax", F.softmax, "``F.softmax``.", ("dim", -1))
LogSoftmax = _stateless("LogSoftmax", F.log_softmax, "``F.log_softmax``.", ("dim", -1))
Softmin = _stateless("Softmin", F.softmin, "``F.softmin``.", ("dim", -1))
Unflatten = _stateless("Unflatten", lambda x, dim, unflattened_size: x.reshape(
    *x.shape[: dim % x.ndim], *unflattened_size, *x.shape[dim % x.ndim + 1 :]), "``torch.unflatten``.",
    ("dim", 1), ("unflattened_size", (1,)))  # fmt: skip
MSELoss = _stateless("MSELoss", F.mse_loss, "``F.mse_loss``.", ("reduction", "mean"))
L1Loss = _stateless("L1Loss", F.l1_loss, "``F.l1_loss``.", ("reduction", "mean"))
CrossEntropyLoss = _stateless("CrossEntropyLoss", F.cross_entropy, "``F.cross_entropy``.", ("weight", None),
                              ("ignore_index", -100), ("reduction", "mean"), ("label_smoothing", 0.0))  # fmt: skip
NLLLoss = _stateless("NLLLoss", F.nll_loss, "``F.nll_loss``.", ("weight", None), ("ignore_index", -100),
                     ("reduction", "mean"))  # fmt: skip
BCELoss = _stateless("BCELoss", F.binary_cross_entropy, "``F.binary_cross_entropy``.", ("weight", None),
                     ("reduction", "mean"))  # fmt: skip
BCEWithLogitsLoss = _stateless("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits,
                               "``F.binary_cross_entropy_with_logits``.", ("weight", None), ("reduction", "mean"),
                               ("pos_weight", None))  # fmt: skip
KLDivLoss = _stateless("KLDivLoss", F.kl_div, "``F.kl_div``.", ("reduction", "mean"), ("log_target", False))
HuberLoss = _stateless("HuberLoss", F.huber_loss, "``F.huber_loss``.", ("reduction", "mean"), ("delta", 1.0))
SmoothL1Loss = _stateless("SmoothL1Loss", F.smooth_l1_loss, "``F.smooth_l1_loss``.", ("reduction", "mean"),
                          ("beta", 1.0))  # fmt: skip


class PReLU(Module):
    """``max(0, x) + a min(0, x)`` with a learned slope ``a`` (one, or one per channel in dim 1; He et al.,
    2015)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        self.weight = Parameter(np.full((num_parameters,), init, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if w.shape[0] > 1 and x.ndim >= 2:
            w = w.reshape(-1, *([1] * (x.ndim - 2)))
        return where(x > 0, x, w * x)


# ---------------------------------------------------------------------------------------------------------------
# transformers (issue 11): containers, activations, attention


class ModuleList(Module):
    """Submodules in a list, registered as ``0``, ``1``, ... (``torch.nn.ModuleList``)."""

    def __init__(self, modules: Any = None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules: Any) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def __getitem__(self, i: int | slice) -> Any:
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __setitem__(self, i: int, module: Module) -> None:
        setattr(self, str(range(len(self))[i]), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class ModuleDict(Module):
    """Submodules by name (``torch.nn.ModuleDict``): ``d["name"]``, ``keys()``, ``items()``, ``values()``."""

    def __init__(self, modules: Any = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules: Any) -> None:
        for name, m in modules.items() if isinstance(modules, dict | ModuleDict) else modules:
            self[name] = m

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        delattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self) -> list[str]:
        return list(self._modules)

    def values(self) -> list[Module]:
        return list(self._modules.values())

    def items(self) -> list[tuple[str, Module]]:
        return list(self._modules.items())


class GELU(Module):
    """GELU activation: exact (erf) by default, ``approximate='tanh'`` for the tanh form (``torch.nn.GELU``)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}{at(user_location())}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Identity(Module):
    """Returns its input (``torch.nn.Identity``; extra constructor arguments are ignored, as there)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x


class Flatten(Module):
    """``x.flatten(start_dim, end_dim)`` with PyTorch's defaults (keep the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention`` (Vaswani et al., 2017) with its defaults and parameter names:
    ``in_proj_weight`` (3E, E, Xavier-uniform), ``in_proj_bias`` (3E, zeros), ``out_proj`` (``Linear(E, E)``, bias
    zeros).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` takes (L, N, E) inputs, or (N, L, E) with ``batch_first``, or
    unbatched (L, E), and returns ``(output, weights)``: weights (N, L, S) averaged over heads (or (N, H, L, S)),
    None with ``need_weights=False``. Masks as PyTorch: a bool ``attn_mask`` (L, S) or (N*H, L, S) and a bool
    ``key_padding_mask`` (N, S) mean True = masked out; float masks are added to the scores. ``is_causal`` is a hint
    there; here it applies a causal mask when no ``attn_mask`` is given. Not supported (``NotImplementedError``):
    ``add_bias_kv``, ``add_zero_attn``, ``kdim``/``vdim`` other than ``embed_dim``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
    ):
        super().__init__()
        loc = user_location()
        if add_bias_kv or add_zero_attn or kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise NotImplementedError(f"MultiheadAttention: add_bias_kv, add_zero_attn, kdim and vdim{at(loc)}")
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}{at(loc)}"
            )
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform_ of a (3E, E) matrix
        self.in_proj_weight = uniform_parameter((3 * embed_dim, embed_dim), bound)
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            self.out_proj.bias = Parameter(np.zeros(embed_dim, np.float32))

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        loc = user_location()
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if query.ndim != 3 or query.shape[-1] != self.embed_dim or key.shape != value.shape or key.ndim != 3:
            raise ShapeError(
                f"MultiheadAttention({self.embed_dim}, {self.num_heads}): expected query (L, N, {self.embed_dim}) and "
                f"key, value (S, N, {self.embed_dim}), got {query.shape}, {key.shape}, {value.shape}{at(loc)}"
            )
        (length, n, e), s, h, d = query.shape, key.shape[0], self.num_heads, self.head_dim
        if key.shape[1] != n or key.shape[2] != e:
            raise ShapeError(f"MultiheadAttention: key {key.shape} does not match query {query.shape}{at(loc)}")
        w_q, w_k, w_v = self.in_proj_weight.split(e)
        b_q, b_k, b_v = self.in_proj_bias.split(e) if self.in_proj_bias is not None else (None, None, None)

        def heads(x: Tensor, w: Tensor, b: Tensor | None, size: int) -> Tensor:  # (T, N, E) -> (N, H, T, D)
            return F.linear(x, w, b).reshape(size, n, h, d).permute(1, 2, 0, 3)

        q, k, v = heads(query, w_q, b_q, length), heads(key, w_k, b_k, s), heads(value, w_v, b_v, s)
        mask = _merge_masks(attn_mask, key_padding_mask, is_causal, (n, h, length, s), q.dtype, loc)
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            if mask is not None:
                scores = scores + mask
            weights = F.dropout(scores.softmax(-1), p, True) if p > 0 else scores.softmax(-1)
            out = weights @ v
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(length, n, e))
        if self.batch_first and not unbatched:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            out = out.squeeze(1)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _merge_masks(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    scores: tuple[int, int, int, int],
    dtype: Any,
    loc: Any,
) -> Tensor | None:
    """One additive float mask of shape broadcastable to ``scores`` (N, H, L, S) from MultiheadAttention's masks
    (bool True = masked out, as PyTorch's module), or None."""
    n, h, length, s = scores
    out: Tensor | None = None
    if attn_mask is None and is_causal:
        attn_mask = creation.ones(length, s, dtype=dtypes.bool_).triu(1)
    if attn_mask is not None:
        if attn_mask.shape not in ((length, s), (n * h, length, s)):
            raise ShapeError(
                f"MultiheadAttention: attn_mask of shape {attn_mask.shape} must be {(length, s)} or "
                f"{(n * h, length, s)}{at(loc)}"
            )
        m = attn_mask.reshape(n, h, length, s) if attn_mask.ndim == 3 else attn_mask
        out = where(m, -math.inf, 0.0).to(dtype) if m.dtype == dtypes.bool_ else m
    if key_padding_mask is not None:
        if key_padding_mask.shape != (n, s):
            raise ShapeError(
                f"MultiheadAttention: key_padding_mask of shape {key_padding_mask.shape} must be {(n, s)}{at(loc)}"
            )
        kp = key_padding_mask.reshape(n, 1, 1, s)
        kp = where(kp, -math.inf, 0.0).to(dtype) if kp.dtype == dtypes.bool_ else kp
        out = kp if out is None else out + kp
    return out
