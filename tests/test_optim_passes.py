"""The optimizer passes (pg-sgd, pg-adam, pg-adamw) against ``torch.optim`` over several training steps.

Each test builds a ``func.func`` around one optimizer op (hyperparameters, step, params, grads and state as
arguments, the op's results returned), expands it with its pass and runs it with the numpy executor, feeding the
returned step and state back in, while ``torch.optim`` steps the same parameters with the same random gradients.
Params and state must agree after every step to a relative tolerance (values below 1 in magnitude to the same
absolute tolerance: torch's fused multiply-adds round differently, which shows relatively on values near zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, TensorType, f32, f64, i64
from xdsl.ir import Attribute, Block, Region, SSAValue

from picograd.dialects import make_context, pg
from picograd.passes.adam import AdamPass
from picograd.passes.adamw import AdamWPass
from picograd.passes.sgd import SGDPass
from picograd.runtime.numpy_executor import compile_func

SHAPES = [(4, 3), (3,), ()]  # several params in one group, a 0-d one among them
STEPS = 10
TOLERANCE: dict[type, tuple[Attribute, float]] = {np.float32: (f32, 1e-5), np.float64: (f64, 1e-10)}

# kind: (pg op, its pass, torch optimizer, torch's names of the state buffers in the op's order)
OPTIMIZERS = {
    "sgd": (pg.SGDOp, SGDPass, torch.optim.SGD, ["momentum_buffer"]),
    "adam": (pg.AdamOp, AdamPass, torch.optim.Adam, ["exp_avg", "exp_avg_sq"]),
    "adamw": (pg.AdamWOp, AdamWPass, torch.optim.AdamW, ["exp_avg", "exp_avg_sq"]),
}


def build(
    op_type: type[pg.OptimizerOp], element: Attribute, flags: Sequence[str], constants: dict[str, float]
) -> tuple[ModuleOp, func.FuncOp]:
    """``@step(hyper..., step, params..., grads..., state...)`` around one ``op_type`` op, returning its results.
    Hyperparameters named in ``constants`` are ``pg.constant`` ops instead of arguments."""
    scalar = TensorType(f64, [])
    types: list[Attribute] = [TensorType(element, list(s)) for s in SHAPES]
    per_param = 1 if "momentum" in flags else op_type.STATE_PER_PARAM
    hyper_types: list[Attribute] = [scalar] * (len(op_type.HYPER) - len(constants))
    block = Block(arg_types=[*hyper_types, TensorType(i64, []), *types * (2 + per_param)])
    args = iter(block.args)
    hyper: list[SSAValue] = []
    for name in op_type.HYPER:
        if name in constants:
            const = pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(scalar, [constants[name]]))
            block.add_op(const)
            hyper.append(const.result)
        else:
            hyper.append(next(args))
    step = next(args)
    params, grads = [next(args) for _ in types], [next(args) for _ in types]
    op = op_type(hyper, step, params, grads, list(args), flags)
    block.add_ops([op, func.ReturnOp(*op.outs)])
    fn = func.FuncOp("step", (block.arg_types, [r.type for r in op.outs]), Region(block))
    return ModuleOp([fn]), fn


def check_against_torch(
    kind: str, kwargs: dict, dtype: type, constants: dict[str, float] | None = None, lr_decay: float = 1.0
) -> None:
    """Trains ``SHAPES`` params for ``STEPS`` steps through the expanded op and through torch's optimizer, comparing
    params and state after every step. ``lr_decay`` multiplies the learning rate after each step (a schedule)."""
    op_type, pass_type, torch_optimizer, buffer_names = OPTIMIZERS[kind]
    element, tol = TOLERANCE[dtype]
    constants = constants or {}
    flags = [f for f in ("momentum", "nesterov") if kind == "sgd" and kwargs.get(f)]
    module, fn = build(op_type, element, flags, constants)
    module.verify()
    pass_type().apply(make_context(), module)
    module.verify()
    assert not [op for op in module.walk() if isinstance(op, pg.OptimizerOp)]
    step_fn = compile_func(fn)

    rng = np.random.default_rng(0)
    params: list[np.ndarray] = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    theirs = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = torch_optimizer(theirs, foreach=False, **kwargs)
    group = opt.param_groups[0]  # torch's defaults filled in
    names = buffer_names if kind != "sgd" or "momentum" in flags else []
    # SGD's momentum buffers start as NaN: the first step must not read them (torch has no buffer yet)
    state = [np.full_like(p, np.nan if kind == "sgd" else 0.0) for _ in names for p in params]
    step = np.array(0, dtype=np.int64)
    for _ in range(STEPS):
        grads: list[np.ndarray] = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        for t, g in zip(theirs, grads, strict=True):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        values = {**group, "beta1": group.get("betas", (0, 0))[0], "beta2": group.get("betas", (0, 0))[1]}
        hyper = [np.array(values[name], dtype=np.float64) for name in op_type.HYPER if name not in constants]
        step, *rest = step_fn(*hyper, step, *params, *grads, *state)
        params, state = rest[: len(SHAPES)], rest[len(SHAPES) :]
        expected = [t.detach().numpy() for t in theirs] + [opt.state[t][name].numpy() for name in names for t in theirs]
        assert len(params) + len(state) == len(expected)
        for ours, want in zip(params + state, expected, strict=True):
            assert ours.dtype == dtype and ours.shape == want.shape
            np.testing.assert_allclose(ours, want, rtol=tol, atol=tol)
        group["lr"] *= lr_decay
    assert step.dtype == np.int64 and int(step) == STEPS


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.05}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("sgd", {"lr": 0.02, "momentum": 0.95, "nesterov": True, "weight_decay": 0.1}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adam", {"lr": 0.1, "betas": (0.5, 0.9), "eps": 1e-3}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "betas": (0.85, 0.95), "eps": 1e-6, "weight_decay": 0.3}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.0}),
]


def case_id(case: tuple[str, dict]) -> str:
    kind, kwargs = case
    return "-".join([kind, *(f"{k}={v}" for k, v in kwargs.items())])


@pytest.mark.parametrize("dtype", TOLERANCE, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch(case: tuple[str, dict], dtype: type) -> None:
    check_against_torch(*case, dtype)


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_constant_zero_weight_decay(kind: str) -> None:
    """A weight decay known to be 0 (a ``pg.constant``) is left out, as torch skips it."""
    kwargs = {"lr": 0.05, "momentum": 0.9} if kind == "sgd" else {"lr": 0.01, "weight_decay": 0.0}
    check_against_torch(kind, kwargs, np.float32, constants={"weight_decay": 0.0})


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_learning_rate_schedule(kind: str) -> None:
    """Hyperparameters are runtime scalars: a learning rate that changes between steps needs no new IR."""
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01} if kind == "sgd" else {"lr": 0.05}
    check_against_torch(kind, kwargs, np.float64, lr_decay=0.7)
