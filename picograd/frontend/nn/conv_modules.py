"""Convolution, pooling, normalization and resizing modules (issue 12), with PyTorch's names, constructor
arguments, defaults, initialisation and ``state_dict`` keys."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from picograd.errors import ShapeError
from picograd.frontend import dtypes
from picograd.frontend.graph import STATE, at, user_location
from picograd.frontend.nn import functional as F
from picograd.frontend.nn.modules import Module, Parameter, uniform_parameter
from picograd.frontend.tensor import Tensor, realize


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


class _ConvNd(Module):
    """Shared by the convolutions: weight and bias drawn as PyTorch's ``reset_parameters`` does
    (``kaiming_uniform_(a=sqrt(5))``, i.e. uniform in ``±1/sqrt(fan_in)`` for both, ``fan_in = weight.shape[1] *
    prod(kernel)``)."""

    _rank = 2
    _transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        output_padding: Any = 0,
    ) -> None:
        super().__init__()
        loc = user_location()
        r = self._rank
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ShapeError(
                f"{type(self).__name__}: groups = {groups} must divide in_channels = {in_channels} and out_channels = "
                f"{out_channels}{at(loc)}"
            )
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"{type(self).__name__}: unknown padding_mode {padding_mode!r}{at(loc)}")
        if padding_mode != "zeros" and (isinstance(padding, str) or self._transposed):
            raise ValueError(
                f"{type(self).__name__}: padding_mode {padding_mode!r} needs an int or tuple padding (and no "
                f"transposed convolution){at(loc)}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(kernel_size, r)
        self.stride, self.dilation = _ntuple(stride, r), _ntuple(dilation, r)
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, r)
        self.output_padding = _ntuple(output_padding, r)
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        fan_in = shape[1] * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        self.weight = uniform_parameter(shape, bound)
        self.bias = uniform_parameter((out_channels,), bound) if bias else None

    def _pad_input(self, x: Tensor) -> tuple[Tensor, Any]:
        if self.padding_mode == "zeros":
            return x, self.padding
        pads = [int(v) for p in reversed(tuple(self.padding)) for v in (p, p)]  # type: ignore[call-overload]
        return F.pad(x, pads, mode=self.padding_mode), 0

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._rank:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self._rank:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class _ConvForwardNd(_ConvNd):
    """The convolutions' shared constructor and forward (``torch.nn.Conv1d/2d``'s signature)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        x, padding = self._pad_input(x)
        fn = F.conv1d if self._rank == 1 else F.conv2d
        return fn(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class Conv1d(_ConvForwardNd):
    """``torch.nn.Conv1d``: (N, C_in, L) -> (N, C_out, L'); weight (C_out, C_in / groups, k), bias (C_out,)."""

    _rank = 1


class Conv2d(_ConvForwardNd):
    """``torch.nn.Conv2d``: (N, C_in, H, W) -> (N, C_out, H', W'); weight (C_out, C_in / groups, kH, kW), bias
    (C_out,); ``padding`` an int, a pair, ``'same'`` or ``'valid'``; ``padding_mode`` zeros, reflect, replicate or
    circular."""

    _rank = 2


class _ConvTransposeNd(_ConvNd):
    """The transposed convolutions' shared constructor and forward (``torch.nn.ConvTranspose1d/2d``'s signature)."""

    _transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding,
        )

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        """``output_size`` (the spatial size, or the whole shape) picks ``output_padding`` as PyTorch does: it must
        lie within ``stride`` (or ``dilation``) of the size without output padding; else ``ValueError``."""
        fn = F.conv_transpose1d if self._rank == 1 else F.conv_transpose2d
        output_padding: tuple[int, ...] = self.output_padding
        if output_size is not None:
            loc = user_location()
            want = tuple(int(v) for v in output_size)[-self._rank :]
            spatial = x.shape[-self._rank :]
            picked: list[int] = []
            for n, m, k, s, p, d in zip(
                spatial, want, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
            ):
                least = (n - 1) * s - 2 * p + d * (k - 1) + 1
                if not least <= m < least + max(s, d):
                    raise ValueError(
                        f"{type(self).__name__}: output_size {tuple(output_size)} is not reachable from an input of "
                        f"shape {x.shape}: each size must lie in [{least}, {least + max(s, d) - 1}]{at(loc)}"
                    )
                picked.append(m - least)
            output_padding = tuple(picked)
        return fn(x, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """``torch.nn.ConvTranspose2d``: (N, C_in, H, W) -> (N, C_out, H', W') with ``H' = (H - 1) stride - 2 padding
    + dilation (k - 1) + output_padding + 1``; weight (C_in, C_out / groups, kH, kW)."""

    _rank = 2


class ConvTranspose1d(_ConvTransposeNd):
    """``torch.nn.ConvTranspose1d``: (N, C_in, L) -> (N, C_out, L'); weight (C_in, C_out / groups, k)."""

    _rank = 1


class _MaxPoolNd(Module):
    """The max-pooling modules' shared constructor and forward (``torch.nn.MaxPool1d/2d``'s signature)."""

    _rank = 1

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x: Tensor) -> Any:
        fn = F.max_pool1d if self._rank == 1 else F.max_pool2d
        return fn(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices)


class MaxPool1d(_MaxPoolNd):
    """``torch.nn.MaxPool1d`` (see ``F.max_pool1d``)."""


class AvgPool1d(Module):
    """``torch.nn.AvgPool1d`` (see ``F.avg_pool1d``)."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)


class AdaptiveAvgPool1d(Module):
    """``torch.nn.AdaptiveAvgPool1d`` (see ``F.adaptive_avg_pool1d``)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool1d(x, self.output_size)


class _PadNd(Module):
    """The padding layers: ``F.pad(x, padding, mode, value)`` with ``padding`` an int (every side of the last
    ``_rank`` dims) or a tuple as ``F.pad`` takes it."""

    _rank = 2
    _mode = "constant"

    def __init__(self, padding: Any, value: float = 0.0) -> None:
        super().__init__()
        self.padding = (padding,) * (2 * self._rank) if isinstance(padding, int) else tuple(padding)
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.padding, self._mode, self.value if self._mode == "constant" else None)


class ZeroPad2d(_PadNd):
    """``torch.nn.ZeroPad2d``."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)


class ConstantPad1d(_PadNd):
    """``torch.nn.ConstantPad1d``."""

    _rank = 1


class ConstantPad2d(_PadNd):
    """``torch.nn.ConstantPad2d``."""


class ReflectionPad2d(_PadNd):
    """``torch.nn.ReflectionPad2d``."""

    _mode = "reflect"

    def __init__(self, padding: Any) -> None:
        super().__init__(padding)


class ReplicationPad2d(_PadNd):
    """``torch.nn.ReplicationPad2d``."""

    _mode = "replicate"

    def __init__(self, padding: Any) -> None:
        super().__init__(padding)


class MaxPool2d(_MaxPoolNd):
    """``torch.nn.MaxPool2d`` (see ``F.max_pool2d``)."""

    _rank = 2


class AvgPool2d(Module):
    """``torch.nn.AvgPool2d`` (see ``F.avg_pool2d``)."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Any = None,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AdaptiveAvgPool2d(Module):
    """``torch.nn.AdaptiveAvgPool2d`` (see ``F.adaptive_avg_pool2d``)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)


class Upsample(Module):
    """``torch.nn.Upsample`` with ``mode='nearest'`` (see ``F.interpolate``)."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest", align_corners: Any = None):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}{at(user_location())}")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, self.size, self.scale_factor, self.mode)


class _BatchNorm(Module):
    """``torch.nn.BatchNorm*``: weight (ones) and bias (zeros) when ``affine``; buffers ``running_mean`` (zeros),
    ``running_var`` (ones) and int64 ``num_batches_tracked`` when ``track_running_stats``. In training mode the
    batch's statistics normalize and the running ones are updated with ``momentum`` (a cumulative average when
    ``momentum=None``); in eval mode the running ones normalize (PyTorch's rules). A compiled step writes the
    updated buffers back after every call."""

    _ranks: tuple[int, ...] = ()
    _layout = ""
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_features, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ShapeError(
                f"{type(self).__name__}({self.num_features}): expected input {self._layout} with C = "
                f"{self.num_features}, got shape {x.shape}{at(user_location())}"
            )
        training = self.training
        factor: Any = 0.0 if self.momentum is None else self.momentum
        nbt = self.num_batches_tracked
        if training and nbt is not None:
            nbt._assign(nbt + 1)
            if STATE.trace is None:
                realize(nbt)
            if self.momentum is None:
                factor = 1.0 / nbt._cast(dtypes.float64)
        use_batch = training or self.running_mean is None
        track = not training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d``: input (N, C) or (N, C, L)."""

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d``: input (N, C, H, W)."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class GroupNorm(Module):
    """``torch.nn.GroupNorm``: ``num_groups`` groups of ``num_channels / num_groups`` channels; weight (ones) and
    bias (zeros) of shape (num_channels,) when ``affine``."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ShapeError(
                f"GroupNorm: num_channels = {num_channels} must be divisible by num_groups = {num_groups}"
                f"{at(user_location())}"
            )
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = Parameter(np.ones(num_channels, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, np.float32)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
