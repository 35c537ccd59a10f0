"""Errors users see (design.md section 2): a ``ShapeError`` names the shapes as Python tuples and the user's
``file:line`` (here: this file and the line of the offending statement); ``DTypeError`` for grad on non-float
tensors; ``DeviceError`` for devices that are not there; ``CompileError`` for reading a value while tracing."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import picograd as pg


class raises_on_next_line:
    """``with raises_on_next_line(Exc, "fragment", ...):`` followed by the offending statement on the next line:
    expects ``Exc`` whose message holds every fragment and ``<this file>:<that line>``."""

    def __init__(self, exc: type[Exception], *fragments: str):
        caller = inspect.currentframe().f_back  # the frame of the `with` line
        self.exc = exc
        self.fragments = (*fragments, f"{__file__}:{caller.f_lineno + 1}")

    def __enter__(self) -> raises_on_next_line:
        return self

    def __exit__(self, typ, value, tb) -> bool:
        assert typ is not None, f"{self.exc.__name__} was not raised"
        assert issubclass(typ, self.exc), f"expected {self.exc.__name__}, got {typ.__name__}: {value}"
        for fragment in self.fragments:
            assert fragment in str(value), f"{fragment!r} not in the message {str(value)!r}"
        self.message = str(value)
        return True


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
        x.max((0, 5))
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
