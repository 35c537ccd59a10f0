"""``pg.nn.RNN``/``GRU``/``LSTM`` and their cells against PyTorch: parameter names, shapes and initialisation,
state dicts both ways, outputs and gradients in float64 (against PyTorch autograd and central finite differences,
over several time steps, with and without an initial state, two layers), dropout between layers, and a compiled
train step of each through the loop stage (loop interpreter) and PTX (ptxas and the PTX emulator) on tiny shapes.
The traced graph grows exactly linearly with the sequence length."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from _ir import only_func
from _ptx_emulator import run_program
from test_loops import random_input
from xdsl.dialects.builtin import TensorType, i64

import picograd as pg
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import lower_to
from picograd.frontend.tensor import realize
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func

LAYERS: dict[str, tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]] = {
    "rnn_tanh": (pg.nn.RNN, torch.nn.RNN, {}),
    "rnn_relu": (pg.nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "gru": (pg.nn.GRU, torch.nn.GRU, {}),
    "lstm": (pg.nn.LSTM, torch.nn.LSTM, {}),
}
CELLS: dict[str, tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]] = {
    "rnn_tanh": (pg.nn.RNNCell, torch.nn.RNNCell, {}),
    "rnn_relu": (pg.nn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "gru": (pg.nn.GRUCell, torch.nn.GRUCell, {}),
    "lstm": (pg.nn.LSTMCell, torch.nn.LSTMCell, {}),
}
I, H = 3, 4  # input and hidden sizes of the small cases


def to_float64(module: pg.nn.Module) -> dict[str, np.ndarray]:
    """Replace every parameter of ``module`` by a float64 copy (in place); returns the float64 state."""
    state = {k: v.astype(np.float64) for k, v in module.state_dict().items()}
    for name, value in state.items():
        *path, leaf = name.split(".")
        owner = module
        for p in path:
            owner = getattr(owner, p)
        setattr(owner, leaf, pg.nn.Parameter(value))
    return state


def torch_from(cls: Callable[..., Any], state: dict[str, np.ndarray], *args: Any, **kw: Any) -> torch.nn.Module:
    m = cls(*args, **kw).double()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return m


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("bias", [True, False])
def test_parameters_as_pytorch(name: str, bias: bool) -> None:
    """Names, order, shapes and dtype of the parameters are PyTorch's; values uniform in ±1/sqrt(H)."""
    cls, tcls, kw = LAYERS[name]
    m, t = cls(5, 16, num_layers=3, bias=bias, **kw), tcls(5, 16, num_layers=3, bias=bias, **kw)
    ours, theirs = m.state_dict(), t.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape) and ours[k].dtype == np.float32, k
    values = np.concatenate([v.ravel() for v in ours.values()])
    assert np.abs(values).max() <= 0.25 and values.std() == pytest.approx(0.25 / np.sqrt(3), rel=0.1)
    ccls, tccls, ckw = CELLS[name]
    cell, tcell = ccls(5, 16, bias=bias, **ckw), tccls(5, 16, bias=bias, **ckw)
    assert {k: v.shape for k, v in cell.state_dict().items()} == {
        k: tuple(v.shape) for k, v in tcell.state_dict().items()
    }


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dict_moves_both_ways(name: str, rng: np.random.Generator) -> None:
    """PyTorch's weights loaded into picograd, and picograd's into PyTorch, give the same outputs (float32)."""
    cls, tcls, kw = LAYERS[name]
    x = rng.standard_normal((5, 2, I)).astype(np.float32)
    t = tcls(I, H, num_layers=2, **kw)
    m = cls(I, H, num_layers=2, **kw)
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    np.testing.assert_allclose(m(pg.tensor(x))[0].numpy(), t(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6)
    m2 = cls(I, H, num_layers=2, **kw)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m2.state_dict().items()})
    np.testing.assert_allclose(m2(pg.tensor(x))[0].numpy(), t(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6)


def _outputs(result: Any) -> list[Any]:
    """Flatten ``(out, h)`` / ``(out, (h, c))`` / ``h`` / ``(h, c)`` into a list of tensors."""
    if isinstance(result, tuple | list):
        return [t for r in result for t in _outputs(r)]
    return [result]


def _weighted_sum(outs: list[Any], weights: list[np.ndarray]) -> Any:
    total = None
    for o, w in zip(outs, weights, strict=True):
        term = (o * pg.tensor(w) if isinstance(o, pg.Tensor) else o * torch.from_numpy(w)).sum()
        total = term if total is None else total + term
    return total


def _check_grads(
    m: pg.nn.Module,
    t: torch.nn.Module,
    args: list[np.ndarray],
    call: Callable[[Any, list[Any]], Any],
    rng: np.random.Generator,
) -> None:
    """Outputs and gradients (of a random weighted sum of every output, w.r.t. the inputs and every parameter) of
    ``call(module, args)``: picograd against torch, and against central finite differences on a few entries."""
    pg_args = [pg.tensor(a, requires_grad=True) for a in args]
    t_args = [torch.from_numpy(a.copy()).requires_grad_() for a in args]
    pg_outs, t_outs = _outputs(call(m, pg_args)), _outputs(call(t, t_args))
    weights = [rng.standard_normal(tuple(o.shape)) for o in t_outs]
    for a, b in zip(pg_outs, t_outs, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    _weighted_sum(pg_outs, weights).backward()
    _weighted_sum(t_outs, weights).backward()
    params, tparams = dict(m.named_parameters()), dict(t.named_parameters())
    assert set(params) == set(tparams)
    pairs = [(a, b) for a, b in zip(pg_args, t_args, strict=True)] + [(params[k], tparams[k]) for k in params]
    grads = [ours.grad for ours, _ in pairs]
    assert all(g is not None for g in grads)
    realize(*grads)  # one compiled graph for every gradient
    for ours, theirs in pairs:
        assert ours.grad is not None
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-9, atol=1e-11)

    def loss(values: list[np.ndarray]) -> float:
        with pg.no_grad():
            return float(_weighted_sum(_outputs(call(m, [pg.tensor(v) for v in values])), weights).item())

    eps = 1e-6
    for k, a in enumerate(args):  # the inputs: a few entries each
        for idx in [tuple(rng.integers(0, s) for s in a.shape) for _ in range(3)]:
            plus, minus = [v.copy() for v in args], [v.copy() for v in args]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (loss(plus) - loss(minus)) / (2 * eps)
            assert pg_args[k].grad is not None
            assert pg_args[k].grad.numpy()[idx] == pytest.approx(fd, rel=1e-5, abs=1e-7)
    for name, p in params.items():  # the parameters: one entry each
        idx = tuple(int(rng.integers(0, s)) for s in p.shape)
        value = p.numpy().copy()
        diffs = []
        for sign in (1, -1):
            moved = value.copy()
            moved[idx] += sign * eps
            p.data = pg.tensor(moved)
            diffs.append(loss(args))
        p.data = pg.tensor(value)
        assert p.grad is not None
        assert p.grad.numpy()[idx] == pytest.approx((diffs[0] - diffs[1]) / (2 * eps), rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize(
    "batch_first,initial_state", [(False, False), (True, True)], ids=["seq_first-zero_state", "batch_first-state"]
)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradients(name: str, batch_first: bool, initial_state: bool, rng: np.random.Generator) -> None:
    """Two layers over 4 time steps, batch 2, float64: (output, h_n[, c_n]) and every gradient (of the input, the
    initial state when given, every parameter); the batch-first case has no biases."""
    cls, tcls, kw = LAYERS[name]
    kw = {**kw, "batch_first": batch_first, "bias": not batch_first}
    m = cls(I, H, num_layers=2, **kw)
    t = torch_from(tcls, to_float64(m), I, H, num_layers=2, **kw)
    x = rng.standard_normal((2, 4, I) if batch_first else (4, 2, I))
    args = [x]
    if initial_state:
        args += [rng.standard_normal((2, 2, H)) for _ in range(2 if name == "lstm" else 1)]

    def call(mod: Any, a: list[Any]) -> Any:
        if len(a) == 1:
            return mod(a[0])
        return mod(a[0], (a[1], a[2]) if name == "lstm" else a[1])

    _check_grads(m, t, args, call, rng)


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_gradients(name: str, initial_state: bool, rng: np.random.Generator) -> None:
    """The cell applied over 3 time steps (its own state fed back), batch 2, float64."""
    cls, tcls, kw = CELLS[name]
    m = cls(I, H, **kw)
    t = torch_from(tcls, to_float64(m), I, H, **kw)
    args = [rng.standard_normal((3, 2, I))]
    if initial_state:
        args += [rng.standard_normal((2, H)) for _ in range(2 if name == "lstm" else 1)]

    def call(mod: Any, a: list[Any]) -> Any:
        state = None if len(a) == 1 else ((a[1], a[2]) if name == "lstm" else a[1])
        outs = []
        for step in range(3):
            state = mod(a[0][step], state)
            outs.append(state)
        return outs

    _check_grads(m, t, args, call, rng)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_unbatched_matches_batch_of_one(name: str, rng: np.random.Generator) -> None:
    """Unbatched (T, I) input (and (L, H) states) as PyTorch: the batch-of-one result without the batch dim."""
    cls, tcls, kw = LAYERS[name]
    m = cls(I, H, num_layers=2, **kw)
    t = torch_from(tcls, to_float64(m), I, H, num_layers=2, **kw)
    x = rng.standard_normal((5, I))
    ours, theirs = _outputs(m(pg.tensor(x))), _outputs(t(torch.from_numpy(x)))
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    cell, tcell = CELLS[name][0](I, H), CELLS[name][1](I, H).double()
    tcell.load_state_dict({k: torch.from_numpy(v) for k, v in to_float64(cell).items()})
    for a, b in zip(_outputs(cell(pg.tensor(x[0]))), _outputs(tcell(torch.from_numpy(x[0]))), strict=True):
        assert a.shape == tuple(b.shape) == (H,)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_between_layers(rng: np.random.Generator) -> None:
    """Dropout applies to the outputs of every layer but the last, only in training mode."""
    m = pg.nn.LSTM(I, H, num_layers=2, dropout=0.5)
    x = pg.tensor(rng.standard_normal((4, 2, I)).astype(np.float32))
    plain = pg.nn.LSTM(I, H, num_layers=2)
    plain.load_state_dict(m.state_dict())
    m.eval()
    np.testing.assert_array_equal(m(x)[0].numpy(), plain(x)[0].numpy())
    m.train()
    assert not np.allclose(m(x)[0].numpy(), plain(x)[0].numpy())
    one = pg.nn.LSTM(I, H, num_layers=1, dropout=0.5)  # one layer: nothing to drop (PyTorch warns, we agree)
    np.testing.assert_array_equal(one(x)[0].numpy(), one.eval()(x)[0].numpy())


# ---------------------------------------------------------------------------------------------------------------
# Compiled train steps: tiny shapes through the loop stage and PTX; graph size linear in T


class TinyLM(pg.nn.Module):
    """Embedding(5, 3) -> recurrent layer(s) (3 -> 4, batch first) -> Linear(4, 5)."""

    def __init__(self, name: str, layers: int = 1):
        super().__init__()
        cls, _, kw = LAYERS[name]
        self.emb = pg.nn.Embedding(5, I)
        self.rnn = cls(I, H, num_layers=layers, batch_first=True, **kw)
        self.head = pg.nn.Linear(H, 5)

    def forward(self, x: Any) -> Any:
        return self.head(self.rnn(self.emb(x))[0])


def tiny_step_module(name: str, steps: int, stage: str = "step", batch: int = 2, layers: int = 1) -> Any:
    """The compiled AdamW train step of ``TinyLM`` on (batch, steps) tokens, at ``stage``."""
    import picograd.nn.functional as F

    pg.manual_seed(0)
    model = TinyLM(name, layers)
    opt = pg.optim.AdamW(model.parameters(), lr=0.01)

    @pg.compile
    def step(x: Any, y: Any) -> Any:
        loss = F.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    tokens = np.random.default_rng(1).integers(0, 5, (2, batch, steps))
    return step.ir(stage, [pg.tensor(tokens[0]), pg.tensor(tokens[1])])


def step_inputs(rng: np.random.Generator, module: Any) -> list[np.ndarray]:
    """Random arguments for ``tiny_step_module``'s step function: tokens and targets (B, T) in [0, 5), the
    flattened row numbers of cross_entropy (B T,) in [0, B T), the step count, hyperparameters in (0.05, 0.5),
    parameters and optimizer state (second moments non-negative: all float tensors are drawn as |N(0, 1)| / 2)."""
    inputs = []
    for ty in only_func(module).function_type.inputs.data:
        assert isinstance(ty, TensorType)
        shape = tuple(ty.get_shape())
        if ty.element_type == i64:
            inputs.append(rng.integers(0, shape[0] if len(shape) == 1 else 5, shape).astype(np.int64))
        elif not shape:
            inputs.append(np.array(rng.uniform(0.05, 0.5)))
        else:
            inputs.append(np.abs(random_input(rng, ty)) * 0.5)
    return inputs


@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "lstm"])
def test_train_step_on_loops(name: str, rng: np.random.Generator) -> None:
    """The compiled train step (3 time steps, 2 layers), lowered to loops, matches the numpy executor."""
    module = tiny_step_module(name, 3, layers=2)
    fn = only_func(module)
    inputs = step_inputs(rng, module)
    want = compile_func(fn)(*inputs)
    lower_to(module, "loops")
    got = run_function(module, fn.sym_name.data, inputs)
    for w, g in zip(want, got, strict=True):
        assert np.isfinite(w).all()
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["rnn_relu", "gru", "lstm"])
def test_train_step_on_ptx_emulator(name: str, rng: np.random.Generator) -> None:
    """The compiled train step (2 time steps) as PTX: ptxas accepts it, and its emulated run matches numpy."""
    module = tiny_step_module(name, 2, batch=1)
    reference, inputs = compile_func(only_func(module)), step_inputs(rng, module)
    program = compile_for_cuda(module)  # leaves its argument alone
    result = program.assemble(strict=True)
    assert set(program.kernels) <= set(result.kernels)
    for w, g in zip(reference(*inputs), run_program(program, inputs), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _op_counts(name: str, steps: int, stage: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in only_func(tiny_step_module(name, steps, stage)).walk():
        counts[op.name] = counts.get(op.name, 0) + 1
    return counts


@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "lstm"])
def test_graph_linear_in_sequence_length(name: str) -> None:
    """The traced train step of T = 4, 8 and 16 steps, after autodiff and the optimizer ('step') and after
    simplification and kernel formation ('kernels'): every op kind's count is exactly a + b T. (At T = 2 the first
    step is also the last but one, and kernel formation may merge across that edge.)"""
    for stage in ("step", "kernels"):
        c2, c4, c8 = (_op_counts(name, t, stage) for t in (4, 8, 16))
        assert set(c2) == set(c4) == set(c8)
        for kind in c2:
            assert c8[kind] - c4[kind] == 2 * (c4[kind] - c2[kind]), (stage, kind, c2[kind], c4[kind], c8[kind])
        assert sum(c4.values()) > sum(c2.values())


# ---------------------------------------------------------------------------------------------------------------
# The example and its PyTorch twin


@pytest.mark.parametrize("kind", ["mlp", "rnn", "gru", "lstm"])
def test_names_example_matches_its_twin(kind: str) -> None:
    """examples/names.py's compiled train step and bench/names_twin.py's torch model, from the same initial
    state_dict on the same batches: the first losses agree within 1e-4 relative, and so do the validation losses
    (on the first 100 validation names) after them."""
    import importlib
    import os
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    sys.path[:0] = [os.path.join(root, "examples"), os.path.join(root, "bench")]
    try:
        import names
        import names_twin

        # a fresh module, so fresh compiled functions: a compiled step keeps the model it was traced with even when
        # the global `model` is rebound later (names.py's main() rebinds it before the first call)
        ex = importlib.reload(names)
    finally:
        del sys.path[:2]
    ex.model, ex.opt = ex.make(kind)
    tmodel = names_twin.torch_twin(kind, ex.model.state_dict())
    topt = torch.optim.AdamW(tmodel.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
    train, val, _ = ex.split(ex.load_words(), 42)
    xtr, ytr = ex.build_sequences(train[:500], ex.BLOCK)
    assert xtr[0, 0] == 0 and (ytr == -1).any() and ((xtr[:, 1:] == ytr[:, :-1]) | (ytr[:, :-1] == -1)).all()
    for ix in ex.batches(len(xtr), 4, seed=3):
        ours = ex.train_step(pg.tensor(xtr[ix]), pg.tensor(ytr[ix])).item()
        logits = tmodel(torch.from_numpy(xtr[ix]))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 27), torch.from_numpy(ytr[ix]).reshape(-1), ignore_index=-1
        )
        topt.zero_grad()
        loss.backward()
        topt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-4)
    xva, yva = ex.build_sequences(val[:100], ex.BLOCK)
    with torch.no_grad():
        logits = tmodel(torch.from_numpy(xva)).reshape(-1, 27)
        want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yva).reshape(-1), ignore_index=-1)
    assert ex.evaluate(xva, yva) == pytest.approx(want.item(), rel=1e-4)
