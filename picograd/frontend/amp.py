"""Automatic mixed precision: ``pg.autocast`` and ``pg.backends.cuda.matmul.allow_tf32`` (PyTorch's names).

Within ``with pg.autocast("cpu", dtype=pg.bfloat16):`` the ops of two lists cast their float arguments on that
device type before they run, as ``torch.autocast`` does (PyTorch's "Automatic Mixed Precision" op reference):

- ``LOWER_PRECISION``: matrix products (``matmul``/``@``, ``mm``, ``bmm``, ``mv``, ``dot``, ``addmm``, ``addmv``,
  ``addbmm``, ``baddbmm``, ``einsum``, ``F.linear``) and ``F.scaled_dot_product_attention`` cast ``float32`` (and
  the other 16-bit) arguments to the autocast dtype. Backends multiply them with ``float32`` accumulation and round
  the result once.
- ``FLOAT32``: reductions (``sum``, ``prod``, ``cumsum``, ``cumprod``, ``logsumexp``, ``norm``), ``softmax``,
  ``log_softmax``, ``softmin``, the norms (``F.layer_norm``, ``F.normalize``, ``F.cosine_similarity``) and every
  loss cast 16-bit arguments to ``float32``, so they run and give their results in ``float32``.

Other ops run in the dtype of their inputs, promoted as usual (a ``bfloat16`` activation plus a ``float32`` bias is
``float32``). ``float64`` arguments are never cast (as PyTorch). Parameters stay ``float32``: the casts are ops of
the graph, so their gradients are cast back and the optimizer updates ``float32`` master weights. Autocast state is
part of what a ``@pg.compile`` step is traced under: a call under another state traces again.

``pg.backends.cuda.matmul.allow_tf32`` (False by default, as in PyTorch since 1.12) marks the ``float32`` matmuls
recorded while it is set (``pg.matmul ... tf32``), so that a GPU schedule may use TF32 tensor cores for them.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from picograd.errors import DTypeError
from picograd.frontend import dtypes
from picograd.frontend.dtypes import DType

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_TYPES = ("cpu", "cuda")
# torch.get_autocast_dtype's defaults: float16 on the GPU, bfloat16 on the CPU
_DEFAULT_DTYPE = {"cpu": dtypes.bfloat16, "cuda": dtypes.float16}

# device type -> the autocast dtype in force there (absent: autocast is off on that device type)
_STATE: contextvars.ContextVar[tuple[tuple[str, DType], ...]] = contextvars.ContextVar("autocast", default=())


class autocast:  # noqa: N801 - PyTorch's name
    """``with pg.autocast(device_type, dtype=None, enabled=True):`` — ops on ``device_type`` tensors ("cpu" or
    "cuda") follow the autocast op lists (module docstring) with ``dtype`` (``pg.bfloat16`` or ``pg.float16``;
    by default bfloat16 on the CPU and float16 on the GPU, as PyTorch). ``enabled=False`` turns it off inside an
    outer autocast. Also a decorator. ``cache_enabled`` is accepted and ignored (the casts are graph ops: a
    compiled step casts each weight once per step). Raises ``ValueError`` for another device type and
    ``DTypeError`` for another dtype."""

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True, cache_enabled: Any = None):
        if device_type not in DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {DEVICE_TYPES}, got {device_type!r}")
        self.device_type = device_type
        self.dtype = _DEFAULT_DTYPE[device_type] if dtype is None else dtypes.as_dtype(dtype)
        if self.dtype not in dtypes.LOW_PRECISION:
            raise DTypeError(f"autocast: dtype must be bfloat16 or float16, got {self.dtype.name}")
        self.enabled = bool(enabled)
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> autocast:
        rest = tuple((d, t) for d, t in _STATE.get() if d != self.device_type)
        self._tokens.append(_STATE.set(rest + (((self.device_type, self.dtype),) if self.enabled else ())))
        return self

    def __exit__(self, *exc: object) -> None:
        _STATE.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]


def autocast_dtype(device: str) -> DType | None:
    """The autocast dtype in force for ops on ``device`` (None when autocast is off there)."""
    for d, t in _STATE.get():
        if d == device:
            return t
    return None


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """Whether autocast is on for ``device_type`` (``torch.is_autocast_enabled``)."""
    return autocast_dtype(device_type) is not None


def state_key() -> tuple:
    """What a compiled step is traced under from this module: the autocast dtypes and ``allow_tf32``."""
    return (_STATE.get(), backends.cuda.matmul.allow_tf32)


def _cast_args(policy: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    from picograd.frontend.tensor import Tensor

    def device_of() -> str | None:
        for a in (*args, *kwargs.values()):
            if isinstance(a, Tensor):
                return a.device.type
        return None

    device = device_of()
    target = autocast_dtype(device) if device is not None else None
    if target is None:
        return args, kwargs
    if policy == "float32":
        target = dtypes.float32

    def cast(a: Any) -> Any:
        # eligible: float tensors other than float64, on the autocast device (torch's is_eligible)
        if isinstance(a, Tensor) and a.dtype.is_floating_point and a.dtype != dtypes.float64 and a.device == device:
            return a._cast(target)
        return a

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _policy(name: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if _STATE.get():
                args, kwargs = _cast_args(name, args, kwargs)
            return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


LOWER_PRECISION = _policy("lower")  # decorator: the op runs in the autocast dtype
FLOAT32 = _policy("float32")  # decorator: the op runs in float32


def _round_once(result: Any, dtype: DType) -> Any:
    from picograd.frontend.tensor import Tensor

    if isinstance(result, Tensor):
        return result._cast(dtype) if result.dtype.is_floating_point else result
    if isinstance(result, tuple) and not hasattr(result, "_fields"):
        return tuple(_round_once(r, dtype) for r in result)
    return result


def opmath(fn: F) -> F:
    """Decorator for composite ops (norms, softmax, mean and variance, fused activations) that PyTorch's CPU kernels
    compute in float32 for 16-bit inputs and round once at the end (their "opmath" type): when the first tensor
    argument is bfloat16 or float16, the 16-bit float tensor arguments are cast to float32, the op runs, and its
    float results are cast back to that dtype. Without it each intermediate op would round to 16 bits (results up
    to several ulp off PyTorch's)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from picograd.frontend.tensor import Tensor

        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)
        if first is None or first.dtype not in dtypes.LOW_PRECISION:
            return fn(*args, **kwargs)

        def up(a: Any) -> Any:
            return a._cast(dtypes.float32) if isinstance(a, Tensor) and a.dtype in dtypes.LOW_PRECISION else a

        result = fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})
        return _round_once(result, first.dtype)

    return run  # type: ignore[return-value]


# -- pg.backends.cuda.matmul.allow_tf32


class _Matmul:
    """``pg.backends.cuda.matmul``: ``allow_tf32`` (bool, False by default)."""

    def __init__(self) -> None:
        self.allow_tf32 = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "allow_tf32":
            raise AttributeError(f"pg.backends.cuda.matmul has no setting {name!r} (it has allow_tf32)")
        object.__setattr__(self, name, bool(value))


class _Cuda:
    def __init__(self) -> None:
        self.matmul = _Matmul()


class _Backends:
    """``pg.backends``: ``pg.backends.cuda.matmul.allow_tf32`` as in PyTorch."""

    def __init__(self) -> None:
        self.cuda = _Cuda()


backends = _Backends()


_PRECISIONS = ("highest", "high", "medium")


def set_float32_matmul_precision(precision: str) -> None:
    """``torch.set_float32_matmul_precision``: "highest" keeps float32 matmuls in float32 (``allow_tf32 = False``),
    "high" and "medium" let them use TF32 (``allow_tf32 = True``; picograd has no bf16x3 mode). Raises
    ``ValueError`` for another name."""
    if precision not in _PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: expected one of {_PRECISIONS}, got {precision!r}")
    backends.cuda.matmul.allow_tf32 = precision != "highest"


def get_float32_matmul_precision() -> str:
    """ "highest" without ``allow_tf32``, "high" with it."""
    return "high" if backends.cuda.matmul.allow_tf32 else "highest"


def matmul_tf32(dtype: DType) -> bool:
    """Whether a matmul of ``dtype`` recorded now may use TF32 (``float32`` under ``allow_tf32``)."""
    return dtype == dtypes.float32 and backends.cuda.matmul.allow_tf32
