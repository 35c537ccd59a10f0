"""Tensors on "cuda": every frontend op and its gradient against the CPU executor, compiled train steps against the
same steps on the CPU, and the device plumbing (copies only at the edges, stable buffers for compiled steps,
errors for mixed devices).

Each device test runs twice: against ``fake`` (tests/_fake_cuda.py: host memory behind the DeviceBuffer interface
and the numpy executor behind ``compile_for_cuda``; runs everywhere, so CI checks the plumbing) and against the real
GPU (``gpu``: marked ``gpu``, skipped when ``picograd.runtime.cuda.available()`` is False). Tests of the behaviour
without a GPU skip themselves on a GPU machine. Inputs are fresh random draws on every run.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import picograd.nn.functional as F
import pytest
from _fake_cuda import COUNTERS, FakeDeviceBuffer, fake_compile_for_cuda

import picograd as pg
from picograd.frontend import realize
from picograd.runtime import cuda

HAS_GPU = cuda.available()
no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a GPU")
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):
    """Stand the fake runtime in for the real one (and an empty compile cache), for one test."""
    pg.manual_seed(0)  # the generator's offset may hold a real device buffer (after a GPU test)
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(cuda, "DeviceBuffer", FakeDeviceBuffer)
    monkeypatch.setattr(cuda, "synchronize", lambda: None)
    monkeypatch.setattr(realize, "cuda_compiler", lambda: fake_compile_for_cuda)
    monkeypatch.setattr(cuda, "device_target", lambda: "sm_90a")  # a Hopper GPU
    monkeypatch.setattr(realize, "_CACHE", OrderedDict())
    yield COUNTERS
    pg.manual_seed(0)  # the generator's offset may hold a fake buffer now


@pytest.fixture(params=["fake", pytest.param("gpu", marks=[pytest.mark.gpu])])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test against the fake runtime and against the GPU (skipped without one)."""
    if request.param == "fake":
        request.getfixturevalue("fake_cuda")
    elif not HAS_GPU:
        pytest.skip("needs an NVIDIA GPU")
    return request.param


# ---------------------------------------------------------------------------------------------------------------
# Every op and its gradient, on "cuda" against "cpu"


def F32(*shape: int) -> tuple[str, tuple[int, ...]]:
    return ("normal", shape)


def POS(*shape: int) -> tuple[str, tuple[int, ...]]:
    return ("positive", shape)


def INT(high: int, *shape: int) -> tuple[str, tuple[int, ...], int]:
    return ("int", shape, high)


# (name, function of tensors, inputs, whether to check gradients of the float inputs)
CASES: list[tuple[str, Callable[..., pg.Tensor], list[Any], bool]] = [
    ("exp", lambda x: x.exp(), [F32(3, 4)], True),
    ("log", lambda x: x.log(), [POS(3, 4)], True),
    ("sqrt", lambda x: x.sqrt(), [POS(3, 4)], True),
    ("rsqrt", lambda x: x.rsqrt(), [POS(3, 4)], True),
    ("sin_cos", lambda x: x.sin() + x.cos(), [F32(3, 4)], True),
    ("tanh", lambda x: x.tanh(), [F32(3, 4)], True),
    ("sigmoid", lambda x: x.sigmoid(), [F32(3, 4)], True),
    ("relu_abs_neg", lambda x: x.relu() - x.abs() * 0.5 + (-x), [F32(3, 4)], True),
    ("erf", lambda x: x.erf(), [F32(3, 4)], True),
    ("reciprocal", lambda x: x.reciprocal(), [POS(3, 4)], True),
    ("add_broadcast", lambda x, y: x + y, [F32(3, 4), F32(4)], True),
    ("sub_reflected", lambda x: 2.5 - x, [F32(3, 4)], True),
    ("mul_broadcast", lambda x, y: x * y, [F32(2, 3, 4), F32(3, 1)], True),
    ("div", lambda x, y: x / y, [F32(3, 4), POS(3, 4)], True),
    ("pow", lambda x, y: x**y, [POS(3, 4), F32(3, 4)], True),
    ("pow_scalar", lambda x: x**2 + 3.0**x, [F32(3, 4)], True),
    ("maximum_minimum", lambda x, y: pg.maximum(x, y) + pg.minimum(x, y * 2), [F32(3, 4), F32(3, 4)], True),
    ("where", lambda x, y: pg.where(x > y, x, y * 2.0), [F32(3, 4), F32(3, 4)], True),
    (
        "comparisons",
        lambda x, y: (x < y).float() + (x <= 0.1).float() * 2 + (x >= y).float() * 4 + (x != y).float() * 8,
        [F32(3, 4), F32(3, 4)],
        False,
    ),
    ("cast_f64", lambda x: x.double() * 3.0, [F32(3, 4)], True),
    (
        "int_arithmetic",
        lambda i, j: (i * 3 + j - 1).sum(1) + (i / 4).long().sum(1),
        [INT(10, 4, 5), INT(7, 4, 5)],
        False,
    ),
    ("sum_all", lambda x: x.sum(), [F32(4, 5)], True),
    ("sum_keepdim", lambda x: x.sum(1, keepdim=True), [F32(4, 5)], True),
    ("mean_dims", lambda x: x.mean((0, 2)), [F32(2, 3, 4)], True),
    ("max_dim", lambda x: x.amax(1), [F32(4, 5)], True),
    ("max_dim_values", lambda x: x.max(1).values, [F32(4, 5)], True),
    ("min_all", lambda x: x.min(), [F32(4, 5)], True),
    ("var", lambda x: x.var(1), [F32(4, 5)], True),
    ("argmax_argmin", lambda x: x.argmax(1) * 10 + x.argmin(0).sum(), [F32(4, 5)], False),
    ("logsumexp", lambda x: x.logsumexp(1), [F32(4, 5)], True),
    ("matmul", lambda a, b: a @ b, [F32(5, 7), F32(7, 3)], True),
    ("matmul_batched", lambda a, b: a @ b, [F32(2, 5, 7), F32(7, 3)], True),
    ("matvec", lambda a, b: a @ b, [F32(5, 7), F32(7)], True),
    ("reshape_permute", lambda x: x.reshape(4, 6).T.reshape(2, 12) * 1.5, [F32(2, 3, 4)], True),
    ("transpose_expand", lambda x: x.transpose(0, 1).unsqueeze(0).expand(3, -1, -1) * 2.0, [F32(2, 3)], True),
    ("slice", lambda x: x[1:, ::2] * 1.0, [F32(4, 6)], True),
    ("index_list", lambda x: x[[0, 2, 2, -1]], [F32(4, 6)], True),
    ("gather_tensor", lambda x, i: x[i], [F32(10, 4), INT(10, 6)], True),
    ("gather_2d", lambda x, i, j: x[i, j], [F32(5, 6), INT(5, 3), INT(6, 3)], True),
    ("embedding", lambda w, i: F.embedding(i, w), [F32(27, 10), INT(27, 8, 3)], True),
    ("cat", lambda a, b: pg.cat([a, b], 1), [F32(2, 3), F32(2, 5)], True),
    ("stack", lambda a, b: pg.stack([a, b], 0), [F32(2, 3), F32(2, 3)], True),
    ("softmax", lambda x: x.softmax(1), [F32(4, 5)], True),
    ("log_softmax", lambda x: x.log_softmax(-1), [F32(4, 5)], True),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t), [F32(8, 5), INT(5, 8)], True),
    ("cross_entropy_ignore", lambda x, t: F.cross_entropy(x, pg.where(t == 0, -100, t)), [F32(8, 5), INT(5, 8)], True),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (6,), w, b), [F32(4, 6), F32(6), F32(6)], True),
    ("gelu", lambda x: F.gelu(x) + F.gelu(x, approximate="tanh"), [F32(3, 4)], True),
    ("mse_loss", lambda x, y: F.mse_loss(x, y), [F32(3, 4), F32(3, 4)], True),
    ("linear_tanh", lambda x, w, b: F.linear(x, w, b).tanh(), [F32(6, 5), F32(3, 5), F32(3)], True),
]


def _draw(spec: Any, rng: np.random.Generator) -> np.ndarray:
    if spec[0] == "int":
        return rng.integers(0, spec[2], size=spec[1]).astype(np.int64)
    x = rng.standard_normal(spec[1]).astype(np.float32)
    return np.abs(x) + np.float32(0.5) if spec[0] == "positive" else x


def _evaluate(fn: Callable[..., pg.Tensor], arrays: list[np.ndarray], seed: np.ndarray | None, device: str):
    """The value of ``fn`` on ``device`` and, with a seed, the gradients of ``sum(fn * seed)`` for float inputs."""
    ts = [pg.tensor(a, device=device, requires_grad=seed is not None and a.dtype.kind == "f") for a in arrays]
    out = fn(*ts)
    assert out.device == device
    value = out.numpy()
    grads = []
    if seed is not None:
        (out * pg.tensor(seed, device=device)).sum().backward()
        grads = [t.grad.numpy() for t in ts if t.requires_grad]
        assert all(t.grad.device == device for t in ts if t.requires_grad)
    return value, grads


@pytest.mark.parametrize("name, fn, inputs, check_grad", CASES, ids=[c[0] for c in CASES])
def test_op_and_gradient_match_cpu(backend: str, name: str, fn, inputs, check_grad: bool, rng) -> None:
    arrays = [_draw(spec, rng) for spec in inputs]
    expected, _ = _evaluate(fn, arrays, None, "cpu")
    seed = rng.standard_normal(expected.shape).astype(expected.dtype) if check_grad else None
    expected, expected_grads = _evaluate(fn, arrays, seed, "cpu")
    value, grads = _evaluate(fn, arrays, seed, "cuda")
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL, err_msg=name)
    for g, e in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("kind", ["rand", "randn", "randint", "dropout"])
def test_random_numbers_match_cpu(backend: str, kind: str) -> None:
    """The Philox stream is the same on both devices: the same seed gives the same numbers."""

    def draw(device: str) -> np.ndarray:
        pg.manual_seed(1234)
        if kind == "rand":
            out = pg.rand(7, 33, device=device)
        elif kind == "randn":
            out = pg.randn(5, 13, device=device)
        elif kind == "randint":
            out = pg.randint(3, 20, (4, 9), device=device)
        else:
            out = F.dropout(pg.ones(6, 10, device=device), p=0.3)
        assert out.device == device
        return out.numpy()

    expected, got = draw("cpu"), draw("cuda")
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------
# Compiled train steps on "cuda" against the same steps on "cpu"


class TinyMLP(pg.nn.Module):
    """The names MLP at a smaller width: Embedding(27, 10) -> Linear(30, 64) -> tanh -> Linear(64, 27)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = pg.nn.Embedding(27, 10)
        self.hidden = pg.nn.Linear(30, 64)
        self.out = pg.nn.Linear(64, 27)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return self.out(self.hidden(self.emb(x).reshape(x.shape[0], 30)).tanh())


def _make_optimizer(name: str, params: Any) -> pg.optim.Optimizer:
    if name == "sgd":
        return pg.optim.SGD(params, lr=0.1, momentum=0.9)
    return pg.optim.AdamW(params, lr=1e-2, weight_decay=0.1)


def _train(device: str, optimizer: str, steps: int, seed: int, lr_schedule: bool = False):
    """``steps`` compiled steps on ``device`` from one initialisation and one batch sequence (both drawn on the
    host from ``seed``); returns the losses, the parameters, and the compiled step."""
    pg.manual_seed(seed)
    model = TinyMLP().to(device)
    opt = _make_optimizer(optimizer, model.parameters())

    @pg.compile
    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    for i in range(steps):
        if lr_schedule and i == steps // 2:
            opt.param_groups[0]["lr"] *= 0.5
        x, y = rng.integers(0, 27, (32, 3)), rng.integers(0, 27, (32,))
        losses.append(step(pg.tensor(x, device=device), pg.tensor(y, device=device)).item())
    return np.array(losses), [p.numpy() for p in model.parameters()], step, model, opt


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_compiled_step_matches_cpu(backend: str, optimizer: str) -> None:
    seed = int(np.random.default_rng().integers(1 << 30))
    cpu_losses, cpu_params, _, _, _ = _train("cpu", optimizer, 10, seed)
    losses, params, step, model, opt = _train("cuda", optimizer, 10, seed)
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-4)
    # AdamW divides by sqrt(v): where a gradient is near 0, rounding differences between the two executables' sums
    # move a weight by up to about lr (1e-2) over the steps; 40 seeds gave at most 2e-6, one run 8e-5
    atol = 1e-5 if optimizer == "sgd" else 2e-4
    for p, e in zip(params, cpu_params, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-4, atol=atol)
    assert all(p.device == "cuda" for p in model.parameters())
    assert all(t.device == "cuda" for st in opt.state.values() for t in st.values())
    assert all(p.grad is not None and p.grad.device == "cuda" for p in model.parameters())
    (exe,) = step.executables()
    assert exe.stats.calls == 10


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_compiled_step_replays_cached_graphs(backend: str, optimizer: str) -> None:
    """After the warm-up calls every call binds buffers it has bound before: no new CUDA graph per step, and a
    learning-rate change is a copy into the step's own buffer, not a new graph."""
    seed = int(np.random.default_rng().integers(1 << 30))
    _, _, step, _, opt = _train("cuda", optimizer, 6, seed)
    (exe,) = step.executables()
    rng = np.random.default_rng(seed)
    previous = None
    for i in range(10):  # a fresh batch in new buffers every step (the previous batch is still alive)
        if i == 3:  # the first call may still bind a batch directly: it may sit where the last one was
            captured = exe.stats.captures + exe.stats.updates
        if i == 6:
            opt.param_groups[0]["lr"] *= 0.5
        x, y = rng.integers(0, 27, (32, 3)), rng.integers(0, 27, (32,))
        batch = pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda")
        step(*batch).item()
        previous = batch  # noqa: F841
    assert exe.stats.captures + exe.stats.updates == captured
    x, y = pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda")
    for _ in range(3):  # the same batch tensors every call: bound as they are after one capture
        step(x, y).item()
    captured = exe.stats.captures + exe.stats.updates
    for _ in range(4):
        step(x, y).item()
    assert exe.stats.captures + exe.stats.updates == captured


def test_compiled_step_with_lr_schedule_matches_cpu(backend: str) -> None:
    seed = int(np.random.default_rng().integers(1 << 30))
    cpu_losses, cpu_params, _, _, _ = _train("cpu", "sgd", 8, seed, lr_schedule=True)
    losses, params, _, _, _ = _train("cuda", "sgd", 8, seed, lr_schedule=True)
    np.testing.assert_allclose(losses, cpu_losses, rtol=1e-4)
    for p, e in zip(params, cpu_params, strict=True):
        np.testing.assert_allclose(p, e, rtol=1e-4, atol=1e-5)


def test_eager_training_matches_cpu(backend: str) -> None:
    """Eager mode (no @pg.compile): each step realizes a graph on the device."""

    def run(device: str) -> list[float]:
        pg.manual_seed(7)
        model = TinyMLP().to(device)
        opt = pg.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(7)
        losses = []
        for _ in range(4):
            x, y = rng.integers(0, 27, (16, 3)), rng.integers(0, 27, (16,))
            loss = F.cross_entropy(model(pg.tensor(x, device=device)), pg.tensor(y, device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    np.testing.assert_allclose(run("cuda"), run("cpu"), rtol=1e-4)


def test_compiled_dropout_step_matches_cpu(backend: str) -> None:
    """The RNG offset is an implicit input and output of the compiled step: every call draws fresh numbers, the
    same on both devices."""

    def run(device: str) -> list[np.ndarray]:
        pg.manual_seed(3)
        w = pg.tensor(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6), device=device)

        @pg.compile
        def f(x: pg.Tensor) -> pg.Tensor:
            return F.dropout(x * w, p=0.5)

        x = pg.ones(4, 6, device=device)
        return [f(x).numpy() for _ in range(3)]

    cpu, dev = run("cpu"), run("cuda")
    for a, b in zip(dev, cpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    assert not np.array_equal(cpu[0], cpu[1])


# ---------------------------------------------------------------------------------------------------------------
# Plumbing (fake runtime only)


def test_tensors_move_between_devices(fake_cuda) -> None:
    x = pg.tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda")
    assert x.device == "cuda" and x.is_cuda and isinstance(x._buffer, FakeDeviceBuffer)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and (x * 2).sum().item() == 20.0
    assert "device='cuda:0'" in repr(x)  # as PyTorch prints it
    y = x.cpu()
    assert y.device == "cpu" and isinstance(y._buffer, np.ndarray)
    assert y.to("cuda").device == "cuda" and x.cuda() is x and y.cpu() is y
    z = x.to("cpu", pg.float64)
    assert z.device == "cpu" and z.dtype == pg.float64
    assert pg.zeros(2, 3, device="cuda").device == "cuda"
    assert pg.ones_like(x).device == "cuda" and pg.arange(5, device="cuda").device == "cuda"
    assert pg.full((2,), 3, device="cuda:0").tolist() == [3, 3]
    assert pg.tensor(x).device == "cuda"  # a copy of a tensor stays on its device
    w = pg.randn(3, device="cuda", requires_grad=True)
    assert w.device == "cuda" and w.requires_grad


def test_copies_happen_only_at_the_edges(fake_cuda) -> None:
    x = pg.tensor(np.arange(12, dtype=np.float32).reshape(3, 4), device="cuda")
    before = fake_cuda.snapshot()
    y = ((x * 2.0 + 1.0).exp().sum(1) / 3.0).log()  # scalars are constants in the graph: no copy
    y.realize()
    after = fake_cuda.snapshot()
    assert after["h2d"] == before["h2d"] and after["d2h"] == before["d2h"]
    y.numpy()
    assert fake_cuda.d2h == after["d2h"] + 1


def test_host_scalars_join_device_ops_and_their_copies_are_cached(fake_cuda) -> None:
    x = pg.tensor(np.ones((2, 3), np.float32), device="cuda")
    lr = pg.tensor(0.5)  # a 0-d host tensor joins an op on the GPU, as in PyTorch
    assert (x * lr).device == "cuda"
    (x * lr).realize()
    h2d = fake_cuda.h2d
    np.testing.assert_array_equal((x * lr).numpy(), np.full((2, 3), 0.5, np.float32))
    assert fake_cuda.h2d == h2d  # the scalar's upload is reused
    lr.numpy()[...] = 0.25  # changed in place behind our back: re-uploaded
    np.testing.assert_array_equal((x * lr).numpy(), np.full((2, 3), 0.25, np.float32))


def test_device_scalars_join_host_ops(fake_cuda) -> None:
    s = pg.tensor(np.array(3.0, np.float32), device="cuda")
    out = pg.ones(2, 2) * s
    assert out.device == "cpu"
    np.testing.assert_array_equal(out.numpy(), np.full((2, 2), 3.0, np.float32))
    d2h = fake_cuda.d2h
    (pg.ones(2, 2) * s).numpy()
    assert fake_cuda.d2h == d2h  # the scalar's host copy is kept
    assert (s * 2.0).device == "cuda" and (s + pg.tensor(1.0)).device == "cuda"


def test_mixing_devices_raises_naming_both_devices_and_the_line(fake_cuda) -> None:
    a = pg.ones(2, 3, device="cuda")
    b = pg.ones(2, 3)
    for fn in (lambda: a + b, lambda: b @ a.T, lambda: pg.cat([a, b]), lambda: pg.where(b > 0, a, 0.0)):
        with pytest.raises(pg.DeviceError) as info:
            fn()
        message = str(info.value)
        assert "cuda" in message and "cpu" in message and "(2, 3)" in message
        assert re.search(r"test_cuda_frontend\.py:\d+", message), message
    model = TinyMLP()
    with pytest.raises(pg.DeviceError, match="cpu.*cuda|cuda.*cpu"):
        model(pg.zeros(4, 3, dtype=pg.int64, device="cuda"))


def test_module_to_moves_parameters_in_place(fake_cuda) -> None:
    model = TinyMLP()
    params = list(model.parameters())
    opt = pg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert model.to("cuda") is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.device == "cuda" and p.requires_grad and p.is_leaf for p in params)
    loss = F.cross_entropy(
        model(pg.zeros(4, 3, dtype=pg.int64, device="cuda")), pg.ones(4, dtype=pg.int64, device="cuda")
    )
    loss.backward()
    opt.step()
    assert all(t.device == "cuda" for st in opt.state.values() for t in st.values())
    model.cpu()
    assert all(p.device == "cpu" and p.grad.device == "cpu" for p in params)
    opt.step()  # the momentum buffers follow the parameters
    assert all(t.device == "cpu" for st in opt.state.values() for t in st.values())
    state = model.state_dict()
    model.to("cuda").load_state_dict(state)
    assert all(p.device == "cuda" for p in params)


def test_compiled_step_allocates_nothing_per_step(fake_cuda) -> None:
    """In steady state a compiled step allocates no device memory and copies nothing: the parameters alternate
    between two buffers, the loss reuses its buffer, hyperparameters are not copied unless they change."""
    seed = 5
    _, _, step, _, opt = _train("cuda", "adamw", 6, seed)
    x = pg.tensor(np.zeros((32, 3), np.int64), device="cuda")
    y = pg.tensor(np.zeros(32, np.int64), device="cuda")
    step(x, y).item()
    before = fake_cuda.snapshot()
    for _ in range(5):
        step(x, y).item()
    after = fake_cuda.snapshot()
    assert after["allocations"] == before["allocations"]
    assert after["h2d"] == before["h2d"] and after["d2d"] == before["d2d"]
    assert after["d2h"] == before["d2h"] + 5  # the .item() calls
    opt.param_groups[0]["lr"] = 1e-4
    step(x, y).item()
    assert fake_cuda.h2d == after["h2d"] + 1  # the new learning rate: one 8-byte copy


def test_compiled_step_never_overwrites_tensors_the_user_keeps(fake_cuda) -> None:
    seed = 11
    _, _, step, model, _ = _train("cuda", "sgd", 4, seed)
    x = pg.tensor(np.ones((32, 3), np.int64), device="cuda")
    y = pg.tensor(np.ones(32, np.int64), device="cuda")
    kept_losses, kept_weights = [], []
    for _ in range(8):
        kept_losses.append(step(x, y))  # every loss tensor kept: its buffer is never reused
        kept_weights.append((model.hidden.weight.detach(), model.hidden.weight.numpy()))
    values = [t.item() for t in kept_losses]
    assert len(set(values)) == len(values)
    for tensor, snapshot in kept_weights:
        np.testing.assert_array_equal(tensor.numpy(), snapshot)
    (exe,) = step.executables()
    captured = exe.stats.captures
    for _ in range(4):
        kept_losses.append(step(x, y))
    assert exe.stats.captures == captured  # the kept outputs are copied out of the step's own buffers


def test_compiled_function_retraces_when_the_model_moves(fake_cuda) -> None:
    model = TinyMLP()

    @pg.compile
    def weight_norm() -> pg.Tensor:
        return (model.hidden.weight * model.hidden.weight).sum()

    expected = weight_norm().item()
    model.to("cuda")
    out = weight_norm()
    assert out.device == "cuda" and out.item() == pytest.approx(expected, rel=1e-6)
    model.to("cpu")
    assert weight_norm().device == "cpu"


def test_compiled_step_inside_trace_cannot_move_tensors(fake_cuda) -> None:
    @pg.compile
    def f(x: pg.Tensor) -> pg.Tensor:
        return x.to("cuda") * 2

    with pytest.raises(pg.CompileError, match="move"):
        f(pg.ones(3))


def test_the_backend_gets_one_function_at_the_simplify_stage(fake_cuda) -> None:
    x = pg.tensor(np.ones((4, 4), np.float32), device="cuda", requires_grad=True)
    (x.exp() * x).sum().backward()
    x.grad.numpy()
    module = fake_cuda.modules[-1]
    assert "pg.grad" not in str(module)
    cache = realize.cache_size()
    y = pg.tensor(np.ones((4, 4), np.float32), device="cuda", requires_grad=True)
    (y.exp() * y).sum().backward()
    y.grad.numpy()
    assert realize.cache_size() == cache  # same structure, same device: compiled once


PGC_MODEL = """
import picograd as pg
import picograd.nn.functional as F

model = pg.nn.Sequential(pg.nn.Linear(3, 16), pg.nn.Tanh(), pg.nn.Linear(16, 2))
opt = pg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@pg.compile(example_inputs=(pg.Spec((8, 3)), pg.Spec((8, 2))), matmul_schedule="smem")
def train_step(x, y):
    loss = F.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss
"""


def test_pgc_device_cuda_prints_what_compile_runs_on_cuda(fake_cuda, tmp_path, monkeypatch, capsys, rng) -> None:
    """Issue 19 item 1: ``pgc --device cuda`` (no GPU) prints the module that ``@pg.compile`` on cuda tensors hands
    the CUDA backend, and the PTX that the backend compiles from it, with the function's own matmul schedule and
    the GPU's target (sm_90a: the fake GPU is a Hopper)."""
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.tools import pgc

    path = tmp_path / "model.py"
    path.write_text(PGC_MODEL)
    handed: list[tuple[Any, str]] = []

    def recording_compiler(module: Any, matmul_schedule: str = "auto", arch: str = "sm_90") -> Any:
        handed.append((module.clone(), matmul_schedule))
        assert arch == "sm_90a"  # the fake GPU's target (realize asks the runtime)
        return fake_compile_for_cuda(module, matmul_schedule, arch)

    monkeypatch.setattr(realize, "cuda_compiler", lambda: recording_compiler)
    user = pgc.import_model(str(path))
    user.model.to("cuda")
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    user.train_step(pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda")).item()
    ((module, schedule),) = handed
    assert schedule == "smem"
    program = compile_for_cuda(module, matmul_schedule=schedule, arch="sm_90a")  # the fake GPU's target
    assert program.ptx != compile_for_cuda(module, arch="sm_90a").ptx  # the schedule shows in the PTX

    assert pgc.main([str(path), "--device", "cuda", "--emit=simplify", "--no-print-debuginfo"]) == 0
    assert capsys.readouterr().out.strip() == str(module).strip()
    out = tmp_path / "step.ptx"
    assert pgc.main([str(path), "--device", "cuda", "--emit=ptx", "-o", str(out)]) == 0
    assert out.read_text() == program.ptx


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")
def test_pgc_device_cuda_ptx_is_what_the_gpu_runs(tmp_path) -> None:
    """On a GPU: the PTX of ``pgc --device cuda`` is the PTX of the executable that the compiled step runs."""
    from picograd.tools import pgc

    path = tmp_path / "model.py"
    path.write_text(PGC_MODEL)
    user = pgc.import_model(str(path))
    user.model.to("cuda")
    rng = np.random.default_rng()
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    user.train_step(pg.tensor(x, device="cuda"), pg.tensor(y, device="cuda")).item()
    (exe,) = user.train_step.executables()
    out = tmp_path / "step.ptx"
    assert pgc.main([str(path), "--device", "cuda", "--emit=ptx", "-o", str(out)]) == 0
    assert out.read_text() == exe.program.ptx


def test_item_after_an_eager_cuda_step_does_not_run_the_forward_again(backend: str, monkeypatch, rng) -> None:
    """Issue 19 item 6 on "cuda": ``loss.item()`` after an eager ``opt.step()`` launches nothing."""
    runs: list[int] = []
    compile_graph = realize.compile_graph

    def counting(*args: Any, **kwargs: Any) -> Any:
        exe = compile_graph(*args, **kwargs)

        def run(*buffers: Any) -> Any:
            runs.append(len(buffers))
            return exe(*buffers)

        return run

    monkeypatch.setattr(realize, "compile_graph", counting)
    model = pg.nn.Sequential(pg.nn.Linear(3, 5), pg.nn.Tanh(), pg.nn.Linear(5, 2)).to("cuda")
    opt = pg.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(2):
        x, y = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
        w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in model.parameters())
        expected = (((np.tanh(x @ w1.T + b1) @ w2.T + b2) - y) ** 2).mean()
        loss = F.mse_loss(model(pg.tensor(x, device="cuda")), pg.tensor(y, device="cuda"))
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = len(runs)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        assert len(runs) == before


# ---------------------------------------------------------------------------------------------------------------
# Without a GPU


@no_gpu
def test_cuda_without_gpu_raises_naming_the_driver() -> None:
    with pytest.raises(pg.DeviceError) as info:
        pg.tensor([1.0], device="cuda")
    message = str(info.value)
    assert "cuda" in message and re.search("driver|cuda-python|GPU", message), message
    assert re.search(r"test_cuda_frontend\.py:\d+", message), message
    for make in (
        lambda: pg.zeros(2, device="cuda"),
        lambda: pg.randn(2, device="cuda"),
        lambda: pg.ones(2).to("cuda"),
        lambda: pg.ones(2).cuda(),
        lambda: TinyMLP().to("cuda"),
    ):
        with pytest.raises(pg.DeviceError, match="driver|cuda-python|GPU"):
            make()
    assert (pg.ones(2) * 3).tolist() == [3.0, 3.0]  # the CPU still works


def test_unknown_devices_raise() -> None:
    for name in ("tpu", "cuda:1", "gpu"):
        with pytest.raises(pg.DeviceError, match=re.escape(name)):
            pg.tensor([1.0], device=name)
