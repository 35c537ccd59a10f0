"""``pg-canonicalize`` and the ``simplify`` stage change no bit of any result: random programs built around the
identities it folds, run on inputs full of signed zeros, infinities and NaNs; whole train steps; and function
arguments are never merged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import picograd.nn.functional as F
import pytest
from _ir import only_func, parse
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

import picograd as pg
from picograd.dialects import pg as pgd
from picograd.driver.pipeline import STAGES, make_pass, passes_until, run_passes
from picograd.runtime.numpy_executor import compile_func

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.5, -3.0, 1e-30], dtype=np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values with equal signs of zero; any NaN matches any NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    nan = np.isnan(a)
    bits = np.dtype(f"u{a.dtype.itemsize}")
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(bits), b[~nan].view(bits)))


def simplified(module: ModuleOp, passes: Sequence[str] = ("pg-canonicalize", "cse", "dce")) -> ModuleOp:
    out = module.clone()
    run_passes(out, list(passes))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Random programs around the folded identities

CONSTANTS = ["0.0", "-0.0", "0.0", "-0.0", "1.0", "1.0", "-1.0", "2.0", "inf", "nan"]  # mostly identities
UNARY = ["neg", "exp", "abs", "tanh", "relu", "sqrt", "log"]
BINARY = ["add", "sub", "mul", "add", "sub", "mul", "div", "pow", "maximum", "minimum"]


def random_program(rng: np.random.Generator, n_ops: int = 20) -> str:
    """A function of two f32 vectors (returning every value it computes) that mixes ops with splat constants
    (often 0, -0, 1), neg/neg and cast chains, broadcasts, selects on constant and runtime conditions, and x op x."""
    lines: list[str] = []
    values = ["%a", "%b"]
    t = "tensor<10xf32>"

    def constant(text: str) -> str:
        name = f"%c{len(lines)}"
        if text in ("inf", "nan"):  # 1 / 0 and 0 / 0, folded into constants (xDSL 0.74 misparses hex floats)
            top = "1.0" if text == "inf" else "0.0"
            lines.append(f"{name}t = pg.constant dense<{top}> : {t}")
            lines.append(f"{name}z = pg.constant dense<0.0> : {t}")
            lines.append(f"{name} = pg.div {name}t, {name}z : {t}")
        elif rng.random() < 0.5:  # a 0-d constant broadcast, or a splat
            lines.append(f"{name}s = pg.constant dense<{text}> : tensor<f32>")
            lines.append(f"{name} = pg.broadcast_to {name}s : tensor<f32> -> {t}")
        else:
            lines.append(f"{name} = pg.constant dense<{text}> : {t}")
        return name

    for _ in range(n_ops):
        kind = (0, 1, 1, 1, 2, 3, 4, 5)[rng.integers(8)]  # mostly ops with a constant operand
        name = f"%v{len(lines)}"
        x = values[rng.integers(len(values))]
        if kind == 0:
            lines.append(f"{name} = pg.{UNARY[rng.integers(len(UNARY))]} {x} : {t}")
        elif kind in (1, 2):
            y = constant(CONSTANTS[rng.integers(len(CONSTANTS))]) if kind == 1 else values[rng.integers(len(values))]
            lhs, rhs = (x, y) if rng.random() < 0.5 else (y, x)
            lines.append(f"{name} = pg.{BINARY[rng.integers(len(BINARY))]} {lhs}, {rhs} : {t}")
        elif kind == 3:
            lines.append(f"{name}n = pg.neg {x} : {t}")
            lines.append(f"{name} = pg.neg {name}n : {t}")
        elif kind == 4:
            mid = ["f64", "i64", "f32"][rng.integers(3)]
            lines.append(f"{name}c = pg.cast {x} : {t} -> tensor<10x{mid}>")
            lines.append(f"{name} = pg.cast {name}c : tensor<10x{mid}> -> {t}")
        else:
            y = values[rng.integers(len(values))]
            if rng.random() < 0.5:
                c = f"%k{len(lines)}"
                lines.append(f"{c} = pg.constant dense<{['true', 'false'][rng.integers(2)]}> : tensor<10xi1>")
            else:
                c = f"%k{len(lines)}"
                lines.append(f'{c} = pg.cmp "lt", {x}, {y} : {t} -> tensor<10xi1>')
            lines.append(f"{name} = pg.select {c}, {x}, {y} : tensor<10xi1>, {t}")
        values.append(name)
    results = values[2:]  # every value, so that no rewrite hides in dead code
    types = ", ".join([t] * len(results))
    body = "\n  ".join(lines)
    return f"func.func @f(%a: {t}, %b: {t}) -> ({types}) {{\n  {body}\n  func.return {', '.join(results)} : {types}\n}}"


@pytest.mark.parametrize("seed", range(40))
def test_random_programs_keep_every_bit(seed: int) -> None:
    """Results before and after agree bit for bit (so -0.0 and +0.0 differ)."""
    rng = np.random.default_rng(seed)
    module = parse(random_program(rng))
    before = compile_func(only_func(module))
    for passes in (("pg-canonicalize", "cse", "dce"), ("pg-canonicalize{max-splat-elements=1}",)):
        after = compile_func(only_func(simplified(module, passes)))
        for _ in range(3):
            a = rng.choice(SPECIAL, 10)
            b = rng.choice(SPECIAL, 10)
            with np.errstate(all="ignore"):
                want, got = before(a, b), after(a, b)
            for w, g in zip(want, got, strict=True):
                assert same_bits(g, w), f"{passes}:\n{a}\n{b}\n{w}\n{g}"


def test_signed_zero_identities_need_the_option() -> None:
    """x + 0.0 is -0.0 + 0.0 = +0.0 for x = -0.0: folded only with no-signed-zeros, where it does change bits."""
    module = parse(
        """
func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  %z = pg.constant dense<0.0> : tensor<2xf32>
  %y = pg.add %x, %z : tensor<2xf32>
  func.return %y : tensor<2xf32>
}"""
    )
    x = np.array([-0.0, 1.0], dtype=np.float32)
    exact = simplified(module, ["pg-canonicalize"])
    assert any(isinstance(op, pgd.AddOp) for op in exact.walk())
    assert same_bits(compile_func(only_func(exact))(x)[0], np.array([0.0, 1.0], dtype=np.float32))
    loose = simplified(module, ["pg-canonicalize{no-signed-zeros=true}"])
    assert not any(isinstance(op, pgd.AddOp) for op in loose.walk())


# ---------------------------------------------------------------------------------------------------------------
# Train steps and parameters


class TwoLayers(pg.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = pg.nn.Linear(4, 4)
        self.b = pg.nn.Linear(4, 4)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        return self.b(self.a(x).tanh())


def compiled_step(model: pg.nn.Module, opt: Any) -> Any:
    @pg.compile
    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def step_buffers(step: Any, args: Sequence[pg.Tensor]) -> list[np.ndarray]:
    """The buffers a call of ``step`` binds to its function's arguments (inputs, then implicit ones)."""
    trace = step._trace(args)
    trace.ctx.rollback()
    return [np.asarray(a.numpy()) for a in args] + [leaf.data for leaf in trace.graph.leaves[trace.num_inputs :]]


def test_identical_parameters_stay_two_arguments() -> None:
    """Two layers initialised identically: cse must not merge their parameters (arguments) nor their updates."""
    pg.manual_seed(0)
    model = TwoLayers()
    model.b.load_state_dict(model.a.state_dict())
    opt = pg.optim.SGD(model.parameters(), lr=0.1)
    step = compiled_step(model, opt)
    rng = np.random.default_rng(0)
    args = [
        pg.tensor(rng.standard_normal((5, 4)).astype(np.float32)),
        pg.tensor(rng.standard_normal((5, 4)).astype(np.float32)),
    ]
    at_step, at_simplify = only_func(step.ir("step", args)), only_func(step.ir("simplify", args))
    assert at_simplify.function_type == at_step.function_type
    returned = at_simplify.body.block.last_op
    assert isinstance(returned, func.ReturnOp)
    buffers = step_buffers(step, args)
    want = compile_func(at_step)(*buffers)
    got = compile_func(at_simplify)(*buffers)
    for w, g in zip(want, got, strict=True):
        assert same_bits(g, w)
    # and training through the compiled step updates the two layers differently
    before = model.a.weight.numpy().copy()
    step(*args)
    assert np.array_equal(model.a.weight.numpy(), model.b.weight.numpy()) is False
    assert not np.array_equal(model.a.weight.numpy(), before)


def test_train_step_simplified_matches_step() -> None:
    pg.manual_seed(5)
    model = TwoLayers()
    opt = pg.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
    step = compiled_step(model, opt)
    rng = np.random.default_rng(1)
    args = [
        pg.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
        pg.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
    ]
    step(*args)
    step(*args)
    before, after = step.ir("step", args), step.ir("simplify", args)
    n_before = len(list(only_func(before).body.block.ops))
    n_after = len(list(only_func(after).body.block.ops))
    assert n_after < n_before
    buffers = step_buffers(step, args)
    for w, g in zip(compile_func(only_func(before))(*buffers), compile_func(only_func(after))(*buffers), strict=True):
        assert same_bits(g, w)


def test_returning_one_value_twice_gives_two_buffers() -> None:
    """cse may make two results one SSA value; the executor still hands out separate arrays."""
    module = simplified(
        parse(
            """
func.func @f(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %a = pg.exp %x : tensor<3xf32>
  %b = pg.exp %x : tensor<3xf32>
  func.return %a, %b : tensor<3xf32>, tensor<3xf32>
}"""
        )
    )
    assert sum(isinstance(op, pgd.ExpOp) for op in module.walk()) == 1
    a, b = compile_func(only_func(module))(np.ones(3, dtype=np.float32))
    assert a is not b and not np.shares_memory(a, b)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


def test_simplify_and_kernels_stages() -> None:
    assert STAGES["simplify"] == ("pg-canonicalize", "cse", "dce")
    assert passes_until("kernels")[-8:] == [
        "pg-canonicalize",
        "cse",
        "dce",
        "pg-decompose-attention",
        "pg-decompose-conv",
        "pg-wgmma-layout{matmul=auto arch=sm_90}",
        "pg-fuse{recompute=true movement=true}",
        "pg-schedule{matmul=auto random-points=4 unroll=4}",
    ]


def test_make_pass_knows_xdsl_passes_and_options() -> None:
    assert make_pass("cse").name == "cse"
    p = make_pass("pg-canonicalize{max-splat-elements=7 no-signed-zeros=true}")
    assert p.max_splat_elements == 7 and p.no_signed_zeros  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown pass 'no-such-pass'"):
        make_pass("no-such-pass")
