"""Convolutions (issue 12): ``pg.conv`` and the conv/pool/norm API against numpy float64, central finite differences
and PyTorch CPU (float64) over strides, paddings, dilations and groups; the op on every stage (numpy executor, loop
interpreter, PTX emulator and ptxas); BatchNorm's buffers, train/eval and compiled write-back; nn.init; the
bad-input errors.

Inputs are fresh random numbers; shapes are tiny."""

from __future__ import annotations

import itertools

import numpy as np
import picograd.nn.functional as F
import pytest
import torch
from _ptx_emulator import run_program
from _raises import raises_on_next_line
from test_loops import CTX, build, check, t
from xdsl.dialects.builtin import ModuleOp, f64

import picograd as pg
from picograd.dialects import pg as pgd
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.errors import DTypeError, ShapeError
from picograd.passes.autodiff import PgAutodiff
from picograd.passes.decompose_conv import PgDecomposeConv
from picograd.passes.fuse import PgFuse
from picograd.runtime.numpy_executor import compile_func

TF = torch.nn.functional


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def f64t(x: np.ndarray, grad: bool = False) -> pg.Tensor:
    return pg.tensor(x, dtype=pg.float64, requires_grad=grad)


def close(ours: pg.Tensor | np.ndarray, theirs: torch.Tensor | np.ndarray, tol: float = 1e-10) -> None:
    a = ours.numpy() if isinstance(ours, pg.Tensor) else ours
    b = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert a.shape == b.shape, f"{a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def conv_reference(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> np.ndarray:
    """A direct float64 convolution by loops over the kernel offsets (the definition, independent of the kernel)."""
    r = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0), *((p, p) for p in padding)])
    n, c, *size = x.shape
    o, cg, *kernel = w.shape
    out = [(s - d * (k - 1) - 1) // st + 1 for s, k, st, d in zip(size, kernel, stride, dilation, strict=True)]
    y = np.zeros((n, o, *out))
    og = o // groups
    for offs in itertools.product(*(range(k) for k in kernel)):
        index = tuple(
            slice(k * d, k * d + (q - 1) * st + 1, st) for k, d, q, st in zip(offs, dilation, out, stride, strict=True)
        )
        for g in range(groups):
            patch = x[(slice(None), slice(g * cg, (g + 1) * cg), *index)]  # (N, Cg, *Q)
            wk = w[(slice(g * og, (g + 1) * og), slice(None), *offs)]  # (Og, Cg)
            y[:, g * og : (g + 1) * og] += np.einsum("nc...,oc->no...", patch, wk)
    assert r == len(kernel)
    return y


CASES_2D = [  # stride, padding, dilation, groups
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 2), (1, 1), 1),
    ((1, 2), (1, 0), (2, 1), 2),
    ((3, 2), (2, 1), (1, 2), 1),
    ((2, 2), (0, 1), (2, 2), 4),
]


@pytest.mark.parametrize("stride,padding,dilation,groups", CASES_2D)
def test_conv2d_values_and_gradients(stride, padding, dilation, groups, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 4, 7, 8))
    w = rng.standard_normal((4, 4 // groups, 3, 2))
    b = rng.standard_normal(4)
    xp, wp, bp = f64t(x, True), f64t(w, True), f64t(b, True)
    y = F.conv2d(xp, wp, bp, stride, padding, dilation, groups)
    close(y, conv_reference(x, w, stride, padding, dilation, groups) + b.reshape(4, 1, 1))
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    yt = TF.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    close(y, yt)
    seed = rng.standard_normal(yt.shape)
    (y * f64t(seed)).sum().backward()
    (yt * torch.tensor(seed)).sum().backward()
    for ours, theirs in ((xp, xt), (wp, wt), (bp, bt)):
        close(ours.grad, theirs.grad)  # type: ignore[arg-type]


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 3), (3, 1, 2, 1)])
def test_conv1d_against_torch(stride, padding, dilation, groups, rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((2, 3, 11)), rng.standard_normal((6, 3 // groups, 3))
    xp, wp = f64t(x, True), f64t(w, True)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y, yt = (
        F.conv1d(xp, wp, None, stride, padding, dilation, groups),
        TF.conv1d(xt, wt, None, stride, padding, dilation, groups),
    )
    close(y, yt)
    close(y, conv_reference(x, w, (stride,), (padding,), (dilation,), groups))
    y.square().sum().backward()
    yt.square().sum().backward()
    close(xp.grad, xt.grad)  # type: ignore[arg-type]
    close(wp.grad, wt.grad)  # type: ignore[arg-type]


def test_conv2d_finite_differences(rng: np.random.Generator) -> None:
    """d/dx and d/dw of sum(conv(x, w) * seed) against central differences (float64, stride 2, dilation 2, groups
    2, asymmetric 'same'-style padding through padding=(1, 0))."""
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 1, 2, 3))
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    seed = rng.standard_normal(F.conv2d(f64t(x), f64t(w), **kw).shape)

    def loss(xv: np.ndarray, wv: np.ndarray) -> float:
        return float((F.conv2d(f64t(xv), f64t(wv), **kw) * f64t(seed)).sum().item())

    xp, wp = f64t(x, True), f64t(w, True)
    (F.conv2d(xp, wp, **kw) * f64t(seed)).sum().backward()
    h = 1e-6
    for value, grad, which in ((x, xp.grad, 0), (w, wp.grad, 1)):
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[i] += h
            down[i] -= h
            args_up = (up, w) if which == 0 else (x, up)
            args_down = (down, w) if which == 0 else (x, down)
            numeric[i] = (loss(*args_up) - loss(*args_down)) / (2 * h)
        close(grad, numeric, tol=1e-6)  # type: ignore[arg-type]


def test_conv2d_same_and_valid(rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 4, 3))
    for padding in ("same", "valid"):
        xp, xt = f64t(x, True), torch.tensor(x, requires_grad=True)
        y = F.conv2d(xp, f64t(w), padding=padding, dilation=(1, 2))
        yt = TF.conv2d(xt, torch.tensor(w), padding=padding, dilation=(1, 2))
        close(y, yt)
        y.square().sum().backward()
        yt.square().sum().backward()
        close(xp.grad, xt.grad)  # type: ignore[arg-type]


def test_conv_vjp_is_differentiable(rng: np.random.Generator) -> None:
    """The vjp is convolutions again, so pg-autodiff can differentiate it: a second pg.grad over the first one's
    expansion gives d/dx of sum((dL/dx)^2), checked against PyTorch's double backward."""
    x, w, seed = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    xt = torch.tensor(x, requires_grad=True)
    (gt,) = torch.autograd.grad(
        (TF.conv2d(xt, torch.tensor(w), **kw) * torch.tensor(seed)).square().sum(), xt, create_graph=True
    )
    (ggt,) = torch.autograd.grad(gt.square().sum(), xt)

    def body(e, xv, wv, sv):
        y = e(pgd.ConvOp(xv, wv, (2, 2), (1, 1), (1, 1), (1, 1), 2))
        ys = e(pgd.MulOp(y, sv))
        loss = e(pgd.SumOp(e(pgd.MulOp(ys, ys)), [0, 1, 2, 3]))
        g1 = pgd.GradOp(loss, [xv])
        e.block.add_op(g1)
        loss2 = e(pgd.SumOp(e(pgd.MulOp(g1.grads[0], g1.grads[0])), [0, 1, 2, 3]))
        g2 = pgd.GradOp(loss2, [xv])
        e.block.add_op(g2)
        return [g1.grads[0], g2.grads[0]]

    from _ir import only_func

    module = build([t(1, 2, 5, 5, el=f64), t(2, 1, 3, 3, el=f64), t(1, 2, 3, 3, el=f64)], body)
    PgAutodiff().apply(CTX, module)
    module.verify()
    g1, g2 = compile_func(only_func(module))(x, w, seed)
    close(g1, gt)
    close(g2, ggt)


@pytest.mark.parametrize(
    "stride,padding,output_padding,dilation,groups",
    [(1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, 2, 1, 2, 2), (2, 0, 0, 1, 3)],
)
def test_conv_transpose2d(stride, padding, output_padding, dilation, groups, rng: np.random.Generator) -> None:
    x, w = rng.standard_normal((2, 6, 4, 5)), rng.standard_normal((6, 2, 3, 2))  # 2 output channels per group
    out_ch = w.shape[1] * groups
    b = rng.standard_normal(out_ch)
    xp, wp, bp = f64t(x, True), f64t(w, True), f64t(b, True)
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    args = (stride, padding, output_padding, groups, dilation)
    y, yt = F.conv_transpose2d(xp, wp, bp, *args), TF.conv_transpose2d(xt, wt, bt, *args)
    close(y, yt)
    seed = rng.standard_normal(yt.shape)
    (y * f64t(seed)).sum().backward()
    (yt * torch.tensor(seed)).sum().backward()
    for ours, theirs in ((xp, xt), (wp, wt), (bp, bt)):
        close(ours.grad, theirs.grad)  # type: ignore[arg-type]


POOLS = [  # kernel, stride, padding, dilation, ceil_mode
    (2, None, 0, 1, False),
    (3, 2, 1, 1, False),
    ((3, 2), (1, 2), (1, 0), (2, 1), False),
    (3, 2, 1, 1, True),
    (2, 3, 0, 1, True),
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode", POOLS)
def test_max_pool2d(kernel, stride, padding, dilation, ceil_mode, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 7, 8))
    xp, xt = f64t(x, True), torch.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(xp, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    yt, idxt = TF.max_pool2d(xt, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    close(y, yt)
    np.testing.assert_array_equal(idx.numpy(), idxt.numpy())
    seed = rng.standard_normal(yt.shape)
    (y * f64t(seed)).sum().backward()
    (yt * torch.tensor(seed)).sum().backward()
    close(xp.grad, xt.grad)  # type: ignore[arg-type]


def test_max_pool_gradient_goes_to_the_first_maximum() -> None:
    """Ties (a ReLU's zeros): PyTorch gives the whole gradient to one element, and so do we."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 1.0
    xp, xt = f64t(x, True), torch.tensor(x, requires_grad=True)
    F.max_pool2d(xp, 2).sum().backward()
    TF.max_pool2d(xt, 2).sum().backward()
    close(xp.grad, xt.grad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode,count_include_pad,divisor", [
    (2, None, 0, False, True, None), (3, 2, 1, False, True, None), (3, 2, 1, False, False, None),
    ((3, 2), (2, 1), (1, 1), True, True, None), (3, 2, 1, True, False, None), (2, 1, 0, False, True, 3),
])  # fmt: skip
def test_avg_pool2d(kernel, stride, padding, ceil_mode, count_include_pad, divisor, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 2, 7, 6))
    xp, xt = f64t(x, True), torch.tensor(x, requires_grad=True)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    y, yt = F.avg_pool2d(xp, *args), TF.avg_pool2d(xt, *args)
    close(y, yt)
    y.square().sum().backward()
    yt.square().sum().backward()
    close(xp.grad, xt.grad)  # type: ignore[arg-type]


def test_pool1d_adaptive_pad_interpolate(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 9))
    close(F.max_pool1d(f64t(x), 3, 2, 1), TF.max_pool1d(torch.tensor(x), 3, 2, 1))
    close(F.avg_pool1d(f64t(x), 3, 2, 1), TF.avg_pool1d(torch.tensor(x), 3, 2, 1))
    x4 = rng.standard_normal((2, 3, 7, 6))
    for size in ((1, 1), (3, 2), (4, 4), (7, None), 5):
        xp, xt = f64t(x4, True), torch.tensor(x4, requires_grad=True)
        y, yt = F.adaptive_avg_pool2d(xp, size), TF.adaptive_avg_pool2d(xt, size)
        close(y, yt)
        y.square().sum().backward()
        yt.square().sum().backward()
        close(xp.grad, xt.grad)  # type: ignore[arg-type]
    pad_cases = [
        ((1, 2), "constant", 0.5), ((1, 2, 0, 3), "constant", None), ((-1, 2, 1, -2), "constant", None),
        ((2, 1, 1, 2), "reflect", None), ((2, 1, 3, 0), "replicate", None), ((2, 1, 1, 2), "circular", None),
    ]  # fmt: skip
    for pads, mode, value in pad_cases:
        xp, xt = f64t(x4, True), torch.tensor(x4, requires_grad=True)
        kw = {} if value is None else {"value": value}
        y, yt = F.pad(xp, pads, mode, **kw), TF.pad(xt, pads, mode, **kw)
        close(y, yt)
        y.square().sum().backward()
        yt.square().sum().backward()
        close(xp.grad, xt.grad)  # type: ignore[arg-type]
    for kw in ({"scale_factor": 2}, {"size": (5, 9)}, {"scale_factor": (1.5, 0.5)}, {"size": 3}):
        xp, xt = f64t(x4, True), torch.tensor(x4, requires_grad=True)
        y, yt = F.interpolate(xp, **kw), TF.interpolate(xt, **kw)
        close(y, yt)
        y.square().sum().backward()
        yt.square().sum().backward()
        close(xp.grad, xt.grad)  # type: ignore[arg-type]


def test_1d_transposed_and_padding_modules(rng: np.random.Generator) -> None:
    """conv_transpose1d, adaptive_avg_pool1d and the padding/pooling modules against PyTorch (values and input
    gradients, float64)."""
    x3, x4 = rng.standard_normal((2, 4, 7)), rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3))
    xp, xt = f64t(x3, True), torch.tensor(x3, requires_grad=True)
    y = F.conv_transpose1d(xp, f64t(w), None, 2, 1, 1, 2, 1)
    yt = TF.conv_transpose1d(xt, torch.tensor(w), None, 2, 1, 1, 2, 1)
    close(y, yt)
    y.square().sum().backward()
    yt.square().sum().backward()
    close(xp.grad, xt.grad)  # type: ignore[arg-type]
    close(F.adaptive_avg_pool1d(f64t(x3), 3), TF.adaptive_avg_pool1d(torch.tensor(x3), 3))
    pairs = [
        (pg.nn.ZeroPad2d((1, 0, 2, 1)), torch.nn.ZeroPad2d((1, 0, 2, 1)), x4),
        (pg.nn.ConstantPad2d(1, 0.5), torch.nn.ConstantPad2d(1, 0.5), x4),
        (pg.nn.ConstantPad1d((2, 1), -1.0), torch.nn.ConstantPad1d((2, 1), -1.0), x3),
        (pg.nn.ReflectionPad2d(2), torch.nn.ReflectionPad2d(2), x4),
        (pg.nn.ReplicationPad2d((1, 2, 0, 3)), torch.nn.ReplicationPad2d((1, 2, 0, 3)), x4),
        (pg.nn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1), x3),
        (pg.nn.AvgPool1d(2), torch.nn.AvgPool1d(2), x3),
        (pg.nn.AdaptiveAvgPool1d(2), torch.nn.AdaptiveAvgPool1d(2), x3),
    ]
    for ours, theirs, x in pairs:
        xp, xt = f64t(x, True), torch.tensor(x, requires_grad=True)
        y, yt = ours(xp), theirs(xt)
        close(y, yt)
        y.square().sum().backward()
        yt.square().sum().backward()
        close(xp.grad, xt.grad)  # type: ignore[arg-type]
    for mode in ("reflect", "replicate", "circular"):
        conv = pg.nn.Conv2d(3, 2, 3, padding=(1, 2), padding_mode=mode)
        convt = torch.nn.Conv2d(3, 2, 3, padding=(1, 2), padding_mode=mode).double()
        convt.load_state_dict({k: torch.tensor(v.astype(np.float64)) for k, v in conv.state_dict().items()})
        close(conv(pg.tensor(x4.astype(np.float32))), convt(torch.tensor(x4)).float(), tol=1e-5)
    ct = pg.nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2)
    ctt = torch.nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2).double()
    ctt.load_state_dict({k: torch.tensor(v.astype(np.float64)) for k, v in ct.state_dict().items()})
    close(ct(pg.tensor(x3.astype(np.float32))), ctt(torch.tensor(x3)).float(), tol=1e-5)


def test_batch_norm_group_norm_against_torch(rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 6, 3, 5))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    rm, rv = rng.standard_normal(6), rng.random(6) + 0.5
    xp, wp, bp = f64t(x, True), f64t(w, True), f64t(b, True)
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    rmp, rvp, rmt, rvt = f64t(rm), f64t(rv), torch.tensor(rm), torch.tensor(rv)
    y = F.batch_norm(xp, rmp, rvp, wp, bp, True, 0.3, 1e-4)
    yt = TF.batch_norm(xt, rmt, rvt, wt, bt, True, 0.3, 1e-4)
    close(y, yt)
    close(rmp, rmt)
    close(rvp, rvt)
    close(
        F.batch_norm(f64t(x), rmp, rvp, f64t(w), None, False),
        TF.batch_norm(torch.tensor(x), rmt, rvt, torch.tensor(w), None, False),
    )
    g = f64t(rng.standard_normal(x.shape))
    (y * g).sum().backward()
    (yt * torch.tensor(g.numpy())).sum().backward()
    for ours, theirs in ((xp, xt), (wp, wt), (bp, bt)):
        close(ours.grad, theirs.grad, tol=1e-9)  # type: ignore[arg-type]
    xp, wp, bp = f64t(x, True), f64t(w, True), f64t(b, True)
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    y, yt = F.group_norm(xp, 3, wp, bp, 1e-3), TF.group_norm(xt, 3, wt, bt, 1e-3)
    close(y, yt)
    (y * g).sum().backward()
    (yt * torch.tensor(g.numpy())).sum().backward()
    for ours, theirs in ((xp, xt), (wp, wt), (bp, bt)):
        close(ours.grad, theirs.grad, tol=1e-9)  # type: ignore[arg-type]


def test_modules_state_dict_and_init_match_torch() -> None:
    """Names, shapes, dtypes and defaults of the parameters and buffers as PyTorch's; default init bounds."""
    pairs = [
        (pg.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)),
        (pg.nn.Conv1d(3, 5, 2, bias=False), torch.nn.Conv1d(3, 5, 2, bias=False)),
        (pg.nn.ConvTranspose2d(4, 6, 3, groups=2), torch.nn.ConvTranspose2d(4, 6, 3, groups=2)),
        (pg.nn.BatchNorm2d(5), torch.nn.BatchNorm2d(5)),
        (pg.nn.BatchNorm1d(5, affine=False), torch.nn.BatchNorm1d(5, affine=False)),
        (pg.nn.GroupNorm(2, 6), torch.nn.GroupNorm(2, 6)),
    ]
    for ours, theirs in pairs:
        sd, sdt = ours.state_dict(), theirs.state_dict()
        assert list(sd) == list(sdt)
        for k in sd:
            assert sd[k].shape == tuple(sdt[k].shape) and str(sd[k].dtype) == str(sdt[k].dtype).removeprefix(
                "torch."
            ), k
        if "weight" in sd and isinstance(theirs, torch.nn.modules.conv._ConvNd):
            fan_in = theirs.weight.shape[1] * int(np.prod(theirs.weight.shape[2:]))
            bound = 1 / np.sqrt(fan_in)
            assert 0.5 * bound < np.abs(sd["weight"]).max() <= bound
    seq = pg.nn.Sequential(pg.nn.Conv2d(1, 2, 3), pg.nn.BatchNorm2d(2))
    assert list(seq.state_dict()) == list(
        torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).state_dict()
    )
    assert [n for n, _ in seq.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]


def test_register_buffer() -> None:
    """Buffers are in the state_dict unless non-persistent, stay buffers when reassigned, load back, and a
    compiled step reads the current value."""

    class M(pg.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("scale", pg.tensor([2.0, 3.0]))
            self.register_buffer("cache", pg.zeros(2), persistent=False)

        def forward(self, x):
            return x * self.scale

    m = M()
    assert list(m.state_dict()) == ["scale"] and [n for n, _ in m.named_buffers()] == ["scale", "cache"]
    assert not list(m.parameters())

    @pg.compile
    def f(x):
        return m(x)

    np.testing.assert_array_equal(f(pg.ones(2)).numpy(), [2.0, 3.0])
    m.scale = pg.tensor([5.0, 7.0])  # still a buffer
    assert list(m.state_dict()) == ["scale"]
    np.testing.assert_array_equal(f(pg.ones(2)).numpy(), [5.0, 7.0])
    m.load_state_dict({"scale": np.array([1.0, -1.0], np.float32)})
    np.testing.assert_array_equal(f(pg.ones(2)).numpy(), [1.0, -1.0])
    with raises_on_next_line(KeyError, "attribute 'forward' already exists"):
        m.register_buffer("forward", pg.zeros(1))
    with raises_on_next_line(TypeError, "must be a Tensor or None, got list"):
        m.register_buffer("b", [1.0])


def test_nn_init_fans_and_bounds() -> None:
    w = pg.nn.Parameter(np.zeros((64, 32, 3, 3), np.float32))
    fan_in, fan_out = 32 * 9, 64 * 9
    checks = [
        (lambda: pg.nn.init.kaiming_uniform_(w, a=0.5), np.sqrt(3) * np.sqrt(2 / 1.25) / np.sqrt(fan_in), "uniform"),
        (lambda: pg.nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"), np.sqrt(6 / fan_out), "uniform"),
        (lambda: pg.nn.init.kaiming_normal_(w, nonlinearity="relu"), np.sqrt(2 / fan_in), "normal"),
        (lambda: pg.nn.init.xavier_uniform_(w, gain=2.0), 2 * np.sqrt(6 / (fan_in + fan_out)), "uniform"),
        (lambda: pg.nn.init.xavier_normal_(w), np.sqrt(2 / (fan_in + fan_out)), "normal"),
        (lambda: pg.nn.init.normal_(w, 0.0, 0.02), 0.02, "normal"),
        (lambda: pg.nn.init.uniform_(w, -0.3, 0.3), 0.3, "uniform"),
    ]
    for fill, scale, kind in checks:
        out = fill()
        assert out is w
        v = w.numpy()
        if kind == "uniform":
            assert np.abs(v).max() <= scale and np.abs(v).max() > 0.99 * scale
        else:
            assert abs(v.std() / scale - 1) < 0.03
    pg.nn.init.zeros_(w)
    assert not w.numpy().any()
    pg.nn.init.ones_(w)
    pg.nn.init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    assert pg.nn.init.calculate_gain("tanh") == 5 / 3


def test_batchnorm_train_eval_and_compiled_write_back(rng: np.random.Generator) -> None:
    """BatchNorm2d (momentum 0.1 and None) eagerly, compiled and in PyTorch: same outputs, same running statistics
    and num_batches_tracked after three training steps, the same eval output afterwards."""
    xs = [rng.standard_normal((4, 3, 2, 3)) for _ in range(3)]
    for momentum in (0.1, None):
        torch_bn = torch.nn.BatchNorm2d(3, momentum=momentum).double()
        eager = pg.nn.BatchNorm2d(3, momentum=momentum)
        compiled = pg.nn.BatchNorm2d(3, momentum=momentum)
        for m in (eager, compiled):
            m.load_state_dict(
                {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in eager.state_dict().items()}
            )
            for name in ("weight", "bias"):
                setattr(m, name, pg.nn.Parameter(np.asarray(getattr(m, name).numpy(), np.float64)))
            for name in ("running_mean", "running_var"):
                m.register_buffer(name, pg.tensor(getattr(m, name).numpy().astype(np.float64)))

        @pg.compile
        def step(x, bn=compiled):
            return bn(x)

        for x in xs:
            want = torch_bn(torch.tensor(x))
            close(eager(f64t(x)), want)
            close(step(f64t(x)), want)
        for m in (eager, compiled):
            sd = m.state_dict()
            for k, v in torch_bn.state_dict().items():
                close(np.asarray(sd[k], np.float64), v.double())
        torch_bn.eval()
        eager.eval()
        compiled.eval()
        x = rng.standard_normal((2, 3, 2, 3))
        close(eager(f64t(x)), torch_bn(torch.tensor(x)))
        close(step(f64t(x)), torch_bn(torch.tensor(x)))
        assert int(compiled.num_batches_tracked.item()) == 3  # eval calls do not count


# ---------------------------------------------------------------------------------------------------------------
# Every stage: loops (interpreter) and PTX (emulator, ptxas) against the numpy executor


CONV_STAGE_CASES = [  # input, weight, stride, dilation, low, high, groups
    ((2, 2, 5, 4), (3, 2, 2, 2), (1, 1), (1, 1), (0, 0), (0, 0), 1),
    ((1, 4, 5, 6), (4, 2, 3, 2), (2, 1), (1, 2), (1, 0), (2, 1), 2),
    ((2, 3, 7), (2, 3, 3), (2,), (2,), (1,), (1,), 1),
    ((5, 3, 6, 5), (4, 3, 3, 3), (2, 1), (1, 2), (1, 1), (1, 0), 1),
]


def conv_module(case, grad: bool) -> ModuleOp:
    xs, ws, stride, dilation, low, high, groups = case
    spatial = zip(xs[2:], ws[2:], stride, dilation, low, high, strict=True)
    ys = (xs[0], ws[0], *(pgd.conv_output_size(*v) for v in spatial))
    types = [t(*xs, el=f64), t(*ws, el=f64)] + ([t(*ys, el=f64)] if grad else [])

    def body(e, x, w, *rest):
        y = e(pgd.ConvOp(x, w, stride, dilation, low, high, groups))
        if not grad:
            return [y]
        loss = e(pgd.SumOp(e(pgd.MulOp(y, rest[0])), list(range(len(ys)))))
        g = pgd.GradOp(loss, [x, w])
        e.block.add_op(g)
        return [y, *g.grads]

    module = build(types, body)
    if grad:
        PgAutodiff().apply(CTX, module)
    return module


def conv_inputs(case, grad: bool, rng: np.random.Generator) -> list[np.ndarray]:
    from _ir import only_func

    return [rng.standard_normal(tuple(a.type.get_shape())) for a in only_func(conv_module(case, grad)).body.block.args]


def decompose_then_fuse(module: ModuleOp) -> None:
    PgDecomposeConv().apply(CTX, module)
    module.verify()
    PgFuse().apply(CTX, module)


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "vjp"])
@pytest.mark.parametrize("case", range(len(CONV_STAGE_CASES)))
def test_conv_loop_stage(case: int, grad: bool, rng: np.random.Generator) -> None:
    c = CONV_STAGE_CASES[case]
    check(conv_module(c, grad), conv_inputs(c, grad, rng), fuse=decompose_then_fuse, rtol=1e-10)


def test_weight_gradient_gathers_in_the_forward_layout() -> None:
    """The weight gradient's correlation (batch and channels swapped) is lowered as ``g (O, N Q) @ cols (N Q, K C)``
    with the forward's channels-last im2col: no gather puts the batch (5) innermost (values: the vjp cases of
    ``test_conv_loop_stage``)."""
    module = conv_module(CONV_STAGE_CASES[3], grad=True)
    PgDecomposeConv().apply(CTX, module)
    gathers = [op for op in module.walk() if isinstance(op, pgd.GatherOp)]
    assert gathers and all(pgd.shape_of(op.result)[-1] != 5 for op in gathers)
    assert sum(isinstance(op, pgd.ConvOp) for op in module.walk()) == 0


def test_weight_gradient_reads_the_forward_channels_last_input() -> None:
    """The forward's im2col and the weight gradient's permute the input to channels last and pad it once between
    them, and both gathers read that pad; values: the vjp cases of ``test_conv_loop_stage``."""
    from _ir import only_func

    module = conv_module(CONV_STAGE_CASES[3], grad=True)
    PgDecomposeConv().apply(CTX, module)
    x = only_func(module).body.block.args[0]
    permutes = [op for op in module.walk() if isinstance(op, pgd.PermuteOp) and op.input is x]
    assert [op.perm_list for op in permutes] == [(0, 2, 3, 1)]
    (pad,) = {use.operation for use in permutes[0].result.uses}
    assert isinstance(pad, pgd.PadOp)
    reshapes = [use.operation for use in pad.result.uses]
    readers = [use.operation for r in reshapes for use in r.results[0].uses]
    assert len(readers) == 2 and all(isinstance(op, pgd.GatherOp) for op in readers)


def test_conv_of_one_permute_twice(rng: np.random.Generator) -> None:
    """Input and weight are one permuted tensor: the lowering composes that permute into both of its own."""

    def body(e, a):
        p = e(pgd.PermuteOp(a, (1, 0, 2, 3)))  # (3, 3, 4, 4), as input (N, C, H, W) and weight (O, C, K, K)
        return [e(pgd.ConvOp(p, p, [1, 1], [1, 1], [1, 1], [1, 1], 1))]

    check(build([t(3, 3, 4, 4, el=f64)], body), [rng.standard_normal((3, 3, 4, 4))], fuse=decompose_then_fuse)


@pytest.mark.parametrize("case", [0, 2])
def test_conv_ptx(case: int, rng: np.random.Generator) -> None:
    from _ir import only_func

    c = CONV_STAGE_CASES[case]
    reference = compile_func(only_func(conv_module(c, grad=True)))
    program = compile_for_cuda(conv_module(c, grad=True))
    assert not program.assemble(strict=True).spills
    inputs = conv_inputs(c, True, rng)
    for want, got in zip(reference(*inputs), run_program(program, inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def small_cnn() -> tuple[pg.nn.Module, pg.optim.Optimizer]:
    model = pg.nn.Sequential(
        pg.nn.Conv2d(1, 2, 3, padding=1), pg.nn.BatchNorm2d(2), pg.nn.ReLU(), pg.nn.MaxPool2d(2),
        pg.nn.Conv2d(2, 4, 3, padding=1, groups=2), pg.nn.GroupNorm(2, 4), pg.nn.SiLU(),
        pg.nn.Upsample(scale_factor=2), pg.nn.AvgPool2d(2), pg.nn.AdaptiveAvgPool2d(1), pg.nn.Flatten(),
        pg.nn.Linear(4, 3),
    )  # fmt: skip
    return model, pg.optim.SGD(model.parameters(), lr=0.1)


def test_cnn_train_step_on_loop_stage(rng: np.random.Generator) -> None:
    """A whole CNN train step (conv, BatchNorm with its running statistics, max-pool, GroupNorm, SiLU, upsample,
    avg-pool, SGD) at the loops stage, run by the loop interpreter, against the numpy executor."""
    from picograd.driver.pipeline import lower_to

    model, opt = small_cnn()

    @pg.compile(example_inputs=(pg.Spec((2, 1, 4, 4)), pg.Spec((2,), "int64")))
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    module = step.ir("simplify")
    from _ir import only_func

    fn = only_func(module)
    inputs = []
    for a in fn.body.block.args:
        shape, el = tuple(a.type.get_shape()), a.type.element_type
        inputs.append(
            rng.integers(0, 3, shape)
            if el == pgd.i64 and shape
            else (
                np.ones(shape, np.int64)
                if el == pgd.i64
                else rng.standard_normal(shape).astype(np.float32 if el == pgd.f32 else np.float64)
            )
        )
    want = compile_func(fn)(*inputs)
    lower_to(module, "loops")
    from picograd.runtime.loop_interpreter import run_function

    got = run_function(module, fn.sym_name.data, inputs)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_pool_and_norm_compositions_on_the_ptx_emulator(rng: np.random.Generator) -> None:
    """Max-pooling (tiles and strided windows), average pooling, GroupNorm, nearest upsampling and reflect padding,
    forward and gradients, lowered to PTX and run on the emulator against the numpy executor (float64, tiny)."""
    from _ir import only_func

    w = pg.tensor(rng.standard_normal(2), dtype=pg.float64, requires_grad=True)

    @pg.compile(example_inputs=(pg.Spec((1, 2, 4, 4), "float64"),))
    def f(x):
        h = F.max_pool2d(x, 2) + F.max_pool2d(x, 3, 1, 1)[..., :2, :2] + F.avg_pool2d(x, 2, 2)
        h = F.group_norm(F.interpolate(h, scale_factor=2), 2, w) + F.pad(x, (1, 1, 0, 0), "reflect")[..., 1:5]
        loss = (h * h).sum()
        loss.backward()
        return loss, w.grad

    module = f.ir("simplify")
    inputs = [rng.standard_normal(tuple(a.type.get_shape())) for a in only_func(module).body.block.args]
    want = compile_func(only_func(module))(*inputs)
    program = compile_for_cuda(module)
    for w_, g in zip(want, run_program(program, inputs), strict=True):
        np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-12)


def test_cnn_step_assembles() -> None:
    """The whole small-CNN train step lowers to PTX that ptxas accepts for sm_90."""
    model, opt = small_cnn()

    @pg.compile(example_inputs=(pg.Spec((2, 1, 4, 4)), pg.Spec((2,), "int64")))
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    program = compile_for_cuda(step.ir("simplify"))
    result = program.assemble()
    assert set(program.kernels) == set(result.kernels)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one clear error each, with the user's file:line


def test_conv_errors() -> None:
    x, w = pg.randn(2, 3, 8, 8), pg.randn(4, 3, 3, 3)
    r = raises_on_next_line
    with r(ShapeError, "input has 5 channels but the weight expects 3", "(2, 5, 8, 8)", "(4, 3, 3, 3)"):
        F.conv2d(pg.randn(2, 5, 8, 8), w)
    with r(ShapeError, "kernel (3, 3)", "larger than the padded input (2, 2)", "(1, 3, 2, 2)"):
        F.conv2d(pg.randn(1, 3, 2, 2), w)
    with r(ShapeError, "groups = 2 must divide", "input channels (3)", "(4, 3, 3, 3)"):
        F.conv2d(x, w, groups=2)
    with r(ShapeError, "expected a 4-d input (N, C, H, W), got shape (3, 8, 8)", "unsqueeze(0)"):
        F.conv2d(pg.randn(3, 8, 8), w)
    with r(ShapeError, "Conv2d", "groups = 2 must divide in_channels = 3"):
        pg.nn.Conv2d(3, 4, 3, groups=2)
    conv = pg.nn.Conv2d(3, 4, 3)
    with r(ShapeError, "input has 1 channels but the weight expects 3"):
        conv(pg.randn(2, 1, 8, 8))
    with r(DTypeError, "conv2d: input must be a float tensor, got int64"):
        F.conv2d(pg.ones(2, 3, 8, 8, dtype=pg.int64), w)
    with r(ValueError, "padding='same' needs stride 1"):
        F.conv2d(x, w, padding="same", stride=2)
    with r(ShapeError, "max_pool2d: kernel (5, 5)", "larger than the padded input (4, 4)"):
        F.max_pool2d(pg.randn(1, 1, 4, 4), 5)
    with r(ShapeError, "BatchNorm2d(3): expected input (N, C, H, W) with C = 3, got shape (2, 4, 5, 5)"):
        pg.nn.BatchNorm2d(3)(pg.randn(2, 4, 5, 5))
    with r(ShapeError, "num_groups = 4 does not divide the 6 channels"):
        F.group_norm(pg.randn(2, 6, 3), 4)
    with r(ValueError, "more than 1 value per channel"):
        F.batch_norm(pg.randn(1, 3), None, None, training=True)
    with r(ValueError, "interpolate: size (3, 3, 3) must have 2 entries", "(2, 2, 5, 5)"):
        F.interpolate(pg.randn(2, 2, 5, 5), size=(3, 3, 3))
    with r(ValueError, "interpolate: scale_factor (2, 2, 2) must have 2 entries"):
        F.interpolate(pg.randn(2, 2, 5, 5), scale_factor=(2, 2, 2))
    with r(ValueError, "pad: expects an even number of ints", "got 1"):
        F.pad(pg.randn(2, 3), 1)


def test_conv_op_verifier() -> None:
    module = build(
        [t(1, 3, 4, 4), t(2, 2, 3, 3)], lambda e, x, w: [e(pgd.ConvOp(x, w, (1, 1), (1, 1), (0, 0), (0, 0), 1))]
    )
    with pytest.raises(Exception, match=r"input \(1, 3, 4, 4\) and weight \(2, 2, 3, 3\) do not match for groups = 1"):
        module.verify()


def test_conv_transpose_output_size_picks_output_padding_as_pytorch(rng) -> None:
    m = pg.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    tm = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    for size in [(9, 9), (10, 10), (2, 3, 10, 9)]:
        y, t = m(pg.tensor(x), output_size=size), tm(torch.tensor(x), output_size=size)
        assert y.shape == tuple(t.shape)
        np.testing.assert_allclose(y.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-5)
    with raises_on_next_line(ValueError, "output_size (12, 12) is not reachable", "each size must lie in [9, 10]"):
        m(pg.tensor(x), output_size=(12, 12))
