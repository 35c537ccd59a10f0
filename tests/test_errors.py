"""Errors users see (design.md section 2): a ``ShapeError`` names the shapes as Python tuples and the user's
``file:line`` (here: this file and the line of the offending statement); ``DTypeError`` for grad on non-float
tensors; ``DeviceError`` for devices that are not there; ``CompileError`` for reading a value while tracing."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from _raises import raises_on_next_line

import picograd as pg


def test_broadcast_mismatch():
    a, b = pg.randn(2, 3), pg.randn(4, 5)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)"):
        a + b
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)"):
        b * 2.0 - a
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(3, 2)"):
        _ = a < a.T
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)"):
        pg.maximum(a, b)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)"):
        pg.where(a > 0, a, b)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(2,)"):
        a + np.zeros(2)


def test_the_example_from_the_design():
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)") as e:
        pg.randn(2, 3) + pg.randn(4, 5)
    assert isinstance(pg.ShapeError("x"), ValueError)
    assert e.message.count(__file__) == 1


def test_matmul_mismatch():
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 5)"):
        pg.randn(2, 3) @ pg.randn(4, 5)
    with raises_on_next_line(pg.ShapeError, "(3,)", "(4,)"):
        pg.randn(3) @ pg.randn(4)
    with raises_on_next_line(pg.ShapeError, "(2, 3, 4)", "(3, 4, 5)"):
        pg.randn(2, 3, 4) @ pg.randn(3, 4, 5)  # batch dims 2 and 3
    with raises_on_next_line(pg.ShapeError, "()", "(3,)"):
        pg.tensor(2.0) @ pg.randn(3)


def test_bad_reshape():
    x = pg.randn(2, 3)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 2)"):
        x.reshape(4, 2)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, -1)"):
        x.view(4, -1)
    with raises_on_next_line(pg.ShapeError, "(-1, -1)"):
        x.reshape(-1, -1)


def test_cat_and_stack_mismatch():
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(3, 4)"):
        pg.cat([pg.randn(2, 3), pg.randn(3, 4)], 0)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(3,)"):
        pg.cat([pg.randn(2, 3), pg.randn(3)])
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(3, 2)"):
        pg.stack([pg.randn(2, 3), pg.randn(3, 2)])


def test_bad_dims():
    x = pg.randn(2, 3)
    with raises_on_next_line(pg.ShapeError, "dim 2", "(2, 3)"):
        x.sum(2)
    with raises_on_next_line(pg.ShapeError, "dim -3", "(2, 3)"):
        x.softmax(-3)
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.amax((0, 5))
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.transpose(0, 2)
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.permute(1, 1)
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.unsqueeze(3)
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.argmax(-3)
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        pg.cat([x, x], 2)
    with raises_on_next_line(pg.ShapeError, "(2, 3)", "(4, 3)"):
        x.expand(4, 3)


def test_indexing_errors():
    x = pg.randn(2, 3)
    with raises_on_next_line(IndexError, "index 5", "dim 0 of size 2", "(2, 3)"):  # as PyTorch
        x[5]
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x[0, 0, 0]
    with raises_on_next_line(pg.ShapeError, "(2,)", "(3,)"):
        x[[0, 1], [0, 1, 2]]
    with raises_on_next_line(pg.ShapeError, "(2, 3)"):
        x.item()


def _helper_that_adds(a, b):
    return a + b


def test_location_is_the_innermost_user_frame():
    """An error in a user helper points at the helper's line (the innermost frame outside picograd)."""
    line = inspect.getsourcelines(_helper_that_adds)[1] + 1
    with pytest.raises(pg.ShapeError) as e:
        _helper_that_adds(pg.randn(2), pg.randn(3))
    assert f"{__file__}:{line}" in str(e.value)
    assert "(2,)" in str(e.value) and "(3,)" in str(e.value)


def test_error_inside_nn_points_at_user_code():
    layer = pg.nn.Linear(4, 3)
    with raises_on_next_line(pg.ShapeError, "(2, 5)"):
        layer(pg.randn(2, 5))


def test_int_tensor_cannot_require_grad():
    with raises_on_next_line(pg.DTypeError, "only float tensors can require gradients"):
        pg.tensor([1, 2], requires_grad=True)
    with raises_on_next_line(pg.DTypeError, "only float tensors can require gradients"):
        pg.tensor([True], requires_grad=True)
    t = pg.arange(3)
    with raises_on_next_line(pg.DTypeError, "only float tensors can require gradients"):
        t.requires_grad = True
    with raises_on_next_line(pg.DTypeError, "only float tensors can require gradients"):
        pg.zeros(2, dtype=pg.int64, requires_grad=True)
    assert issubclass(pg.DTypeError, TypeError)
    assert pg.tensor([1.0, 2.0], requires_grad=True).requires_grad  # float tensors can


def test_unknown_device():
    with raises_on_next_line(pg.DeviceError, "tpu"):
        pg.tensor([1.0], device="tpu")
    with raises_on_next_line(pg.DeviceError, "tpu"):
        pg.zeros(2, device="tpu")
    with raises_on_next_line(pg.DeviceError, "xla"):
        pg.randn(2, device="xla")
    with raises_on_next_line(pg.DeviceError, "npu"):
        pg.tensor([1.0]).to("npu")
    assert issubclass(pg.DeviceError, RuntimeError)
    assert pg.tensor([1.0], device="cpu").device == "cpu"


@pytest.mark.parametrize("read", ["item", "numpy", "tolist", "print", "float", "bool"])
def test_reading_a_value_inside_compile(read):
    readers = {
        "item": lambda t: t.sum().item(),
        "numpy": lambda t: t.numpy(),  # a traced input: its value is not known while tracing
        "tolist": lambda t: (t * 2.0).tolist(),
        "print": lambda t: print(t),
        "float": lambda t: float(t.sum()),
        "bool": lambda t: bool(t.sum() > 0),
    }

    @pg.compile
    def step(x):
        readers[read](x)
        return x * 2.0

    with pytest.raises(pg.CompileError, match="@pg.compile") as e:
        step(pg.randn(3))
    assert f"{__file__}:{readers[read].__code__.co_firstlineno}" in str(e.value)  # the line that reads
    assert issubclass(pg.CompileError, RuntimeError)
    x = pg.randn(3)
    np.testing.assert_array_equal(x.numpy() * 2.0, (x * 2.0).numpy())  # eager reads still work afterwards


def test_reading_a_parameter_inside_compile():
    """A realized tensor the step reads (a parameter) would be baked into the trace and go stale: refused too."""
    w = pg.randn(3, requires_grad=True)

    where = []

    @pg.compile
    def step(x):
        where.append(f"{__file__}:{inspect.currentframe().f_lineno + 1}")
        scale = w.sum().item()
        return x * scale

    with pytest.raises(pg.CompileError, match="@pg.compile") as e:
        step(pg.randn(3))
    assert where and where[0] in str(e.value)


def test_mean_of_int_and_neg_of_bool():
    with raises_on_next_line(pg.DTypeError, "int64"):
        pg.tensor([1, 2]).mean()
    with raises_on_next_line(pg.DTypeError, "bool"):
        -pg.tensor([True])


def test_scalar_that_does_not_fit_the_tensor_dtype():
    """Regression: the overflow was a bare numpy OverflowError at realize time, with no location."""
    x = pg.tensor([1], dtype=pg.int32)
    with raises_on_next_line(pg.DTypeError, "1000000000000", "int32"):
        x + 10**12
    with raises_on_next_line(pg.DTypeError, "int64"):
        pg.tensor([1]) * 2**64


def test_arg_reduction_of_an_empty_dim():
    """Regression: argmax over an empty dim failed inside numpy at realize time."""
    with raises_on_next_line(pg.ShapeError, "(0,)"):
        pg.zeros(0).argmax()
    with raises_on_next_line(pg.ShapeError, "(2, 0)"):
        pg.zeros(2, 0).argmin(1)
    with raises_on_next_line(pg.ShapeError, "(2, 0)"):
        pg.zeros(2, 0).max(1)
    assert pg.zeros(2, 0).argmax(0).shape == (0,)  # reducing a non-empty dim of an empty tensor is fine


def test_numpy_array_into_a_compiled_step(rng):
    """Issue 19 item 4: the message held the whole array repr (6,700 characters for 1,000 elements) and no advice."""
    data = rng.standard_normal(1000)

    @pg.compile
    def step(batch, scale):
        return (batch * scale).sum()

    fragments = ["step: argument 0 (batch)", "numpy.ndarray", "shape (1000,)", "float64", "pg.tensor(batch)"]
    with raises_on_next_line(pg.CompileError, *fragments):
        step(data, 2.0)
    with pytest.raises(pg.CompileError) as info:
        step(data, 2.0)
    assert len(str(info.value)) < 400 and repr(data[0])[:6] not in str(info.value)
    with raises_on_next_line(pg.CompileError, "step: argument 1 (scale) is a list of length 2", "tuple"):
        step(pg.tensor(data), [1.0, 2.0])
    np.testing.assert_allclose(step(pg.tensor(data), 2.0).item(), 2 * data.sum(), rtol=1e-5)  # the advice works


@pytest.mark.parametrize(
    "examples,fragments",
    [
        (((4, 3),), ["example input 0 (x) is the shape (4, 3), not a pg.Spec", "pg.Spec((4, 3))"]),
        ([[4, 3]], ["example input 0 (x) is the shape [4, 3]", "pg.Spec((4, 3))"]),
        ((4, 3), ["2 example inputs do not fit", "(pg.Spec((4, 3)),)"]),
        (pg.Spec((4, 3)), ["example_inputs takes one entry per argument", "got Spec("]),
        ((pg.Spec((4, 3)), pg.Spec((3,))), ["2 example inputs do not fit"]),
        (({"shape": (4, 3)},), ["example input 0 (x) is a dict"]),
    ],
)
def test_example_inputs_that_are_not_specs(examples, fragments):
    """Issue 19 item 5: a shape in place of a pg.Spec ended in a 29-line traceback (AttributeError: 'tuple' object
    has no attribute 'shape'); now the decorator says what example_inputs takes, naming its own line."""

    def step(x):
        return (x * 2.0).sum()

    with raises_on_next_line(pg.CompileError, *fragments, "example_inputs takes one entry per argument: pg.Spec"):
        pg.compile(example_inputs=examples)(step)


def test_example_inputs_that_are_specs_or_values(rng):
    @pg.compile(example_inputs=(pg.Spec([4, 3]), 2.0, pg.tensor(rng.standard_normal(3).astype(np.float32))))
    def step(x, scale, b):
        return ((x + b) * scale).sum()

    assert step.example_inputs[0] == pg.Spec((4, 3))
    assert "pg.sum" in str(step.ir("pg"))
    with raises_on_next_line(pg.CompileError, "pg.Spec: shape must be a tuple of non-negative ints, got (4, -1)"):
        pg.Spec((4, -1))


def test_recurrent_input_shapes():
    """nn.RNN/GRU/LSTM and their cells: input of the wrong rank or feature size, an initial state of the wrong
    shape, and an input laid out for the other batch_first setting."""
    lstm = pg.nn.LSTM(4, 3, num_layers=2, batch_first=True)
    with raises_on_next_line(pg.ShapeError, "LSTM", "rank 3", "(5, 2, 4, 1)"):
        lstm(pg.randn(5, 2, 4, 1))
    with raises_on_next_line(pg.ShapeError, "LSTM(input_size=4)", "(2, 5, 6)", "6 features"):
        lstm(pg.randn(2, 5, 6))
    with raises_on_next_line(pg.ShapeError, "c_0", "(2, 2, 3)", "(2, 5, 3)", "(2, 5, 4)"):
        lstm(pg.randn(2, 5, 4), (pg.zeros(2, 2, 3), pg.zeros(2, 5, 3)))
    with raises_on_next_line(TypeError, "pair (h_0, c_0)"):
        lstm(pg.randn(2, 5, 4), pg.zeros(2, 2, 3))
    gru = pg.nn.GRU(4, 3)  # (seq, batch, feature): a (batch 8, seq 5) input with an 8-row state is a mismatch
    with raises_on_next_line(pg.ShapeError, "h_0", "(1, 5, 3)", "(1, 8, 3)", "(8, 5, 4)", "batch_first=True (batch 8)"):
        gru(pg.randn(8, 5, 4), pg.zeros(1, 8, 3))
    with raises_on_next_line(pg.ShapeError, "h_0", "(1, 8, 3)", "(1, 5, 3)", "batch_first=False (batch 5)"):
        pg.nn.GRU(4, 3, batch_first=True)(pg.randn(8, 5, 4), pg.zeros(1, 5, 3))
    with raises_on_next_line(pg.ShapeError, "h_0", "(1, 3)", "(1, 1, 3)"):
        gru(pg.randn(5, 4), pg.zeros(1, 1, 3))  # unbatched input, batched state
    cell = pg.nn.LSTMCell(4, 3)
    with raises_on_next_line(pg.ShapeError, "LSTMCell(input_size=4)", "(2, 5)"):
        cell(pg.randn(2, 5))
    with raises_on_next_line(pg.ShapeError, "LSTMCell: c", "(2, 3)", "(2, 4)"):
        cell(pg.randn(2, 4), (pg.zeros(2, 3), pg.zeros(2, 4)))
    with raises_on_next_line(pg.ShapeError, "RNNCell: hx", "(2, 3)", "(3,)"):
        pg.nn.RNNCell(4, 3)(pg.randn(2, 4), pg.zeros(3))


def test_compiled_functions_take_keyword_arguments() -> None:
    """``step(x, scale=2.0)`` and ``step(x=x)`` work as for torch.compile'd functions (a TypeError from
    ``CompiledFunction.__call__`` before); wrong keywords name the function and line; a list of tensors names the
    fix (separate arguments)."""
    m = pg.nn.Linear(3, 2)

    @pg.compile
    def f(x, scale=1.0):
        return m(x) * scale

    x = pg.randn(4, 3)
    np.testing.assert_allclose(f(x, scale=2.0).numpy(), 2 * f(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(f(x=x, scale=3.0).numpy(), 3 * f(x).numpy(), rtol=1e-6)
    with raises_on_next_line(TypeError, "f: got an unexpected keyword argument 'bogus'"):
        f(x, bogus=1)
    with raises_on_next_line(pg.CompileError, "argument 0 (x) is a list of length 2", "separate arguments"):
        f([x, x])
