"""Dtype rules (design.md section 2): Python floats become float32, ints int64, bools bool; numpy arrays keep their
dtype; promotion follows PyTorch (``torch.result_type``), checked against torch itself on a table of operand pairs."""

from __future__ import annotations

import itertools
import operator

import numpy as np
import pytest
import torch

import picograd as pg

DTYPES = ["float32", "float64", "int64", "int32", "bool"]


# ---------------------------------------------------------------------------------------------------------------
# Inference from data


@pytest.mark.parametrize(
    "data,dtype",
    [
        (1.5, pg.float32),
        ([1.0, 2.0], pg.float32),
        ([[1, 2], [3, 4.5]], pg.float32),
        (3, pg.int64),
        ([1, 2, 3], pg.int64),
        (True, pg.bool),
        ([True, False], pg.bool),
        ([], pg.float32),
    ],
)
def test_python_data(data, dtype):
    t = pg.tensor(data)
    assert t.dtype == dtype
    assert t.dtype.name == str(torch.tensor(data).dtype).removeprefix("torch.")
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=dtype.np))
    assert pg.Tensor(data).dtype == dtype


@pytest.mark.parametrize("name", DTYPES)
def test_numpy_data_keeps_dtype(rng, name):
    arr = (rng.standard_normal((2, 3)) * 10).astype(name)
    for data in (arr, arr[0, 1], arr[:, ::2]):  # arrays, numpy scalars, non-contiguous views
        t = pg.tensor(data)
        assert t.dtype.name == name and t.dtype == getattr(pg, name if name != "bool" else "bool_")
        out = t.numpy()
        assert out.dtype == np.dtype(name)
        np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("spelling", [pg.float64, "float64", "double", np.float64, np.dtype("float64")])
def test_explicit_dtype(spelling):
    t = pg.tensor([1, 2], dtype=spelling)
    assert t.dtype == pg.float64 and t.numpy().dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])


def test_explicit_dtype_converts_and_aliases():
    assert pg.tensor([1.7, -1.7], dtype=pg.int64).tolist() == [1, -1]
    assert pg.tensor([1.5], dtype=float).dtype == pg.float32
    assert pg.tensor([1], dtype=int).dtype == pg.int64
    assert pg.float is pg.float32 and pg.long is pg.int64 and pg.bool is pg.bool_
    assert pg.float32 == "float32" and pg.float32 == np.float32 and pg.float32 != pg.float64
    assert pg.tensor(np.zeros(2, np.float64)).dtype.is_floating_point
    assert not pg.tensor([1]).dtype.is_floating_point


def test_unsupported_dtype():
    with pytest.raises(pg.DTypeError):
        pg.tensor([1.0], dtype="uint16")
    with pytest.raises(pg.DTypeError):
        pg.tensor(np.zeros(2, dtype=np.complex64))


def test_creation_dtypes():
    assert pg.zeros(2).dtype == pg.float32 and pg.ones(2).dtype == pg.float32
    assert pg.full((2,), 1.5).dtype == pg.float32 and pg.full((2,), 2).dtype == pg.int64
    assert pg.full((2,), False).dtype == pg.bool
    assert pg.arange(3).dtype == pg.int64 and pg.arange(0, 1, 0.5).dtype == pg.float32
    assert (
        pg.randn(2).dtype == pg.float32 and pg.rand(2).dtype == pg.float32 and pg.randint(0, 3, (2,)).dtype == pg.int64
    )
    assert pg.randn(2, dtype=pg.float64).dtype == pg.float64


# ---------------------------------------------------------------------------------------------------------------
# Promotion against torch


def _np_data(name: str, ndim: int) -> np.ndarray:
    data = np.array([1, 2, 3]) if ndim else np.array(2)
    return data.astype(name) if name != "bool" else np.asarray(data % 2 == 1)


def _operand(name: str, ndim: int) -> tuple[pg.Tensor, torch.Tensor]:
    arr = _np_data(name, ndim)
    return pg.tensor(arr), torch.from_numpy(arr.copy())


OPS = {
    "add": (operator.add, torch.add),
    "sub": (operator.sub, torch.sub),
    "mul": (operator.mul, torch.mul),
    "div": (operator.truediv, torch.div),
    "pow": (operator.pow, torch.pow),
    "maximum": (pg.maximum, torch.maximum),
    "minimum": (pg.minimum, torch.minimum),
}
# torch refuses `-` with a bool operand and bool ** bool; picograd is more permissive there (not compared)
TENSOR_CASES = [
    (op, a, na, b, nb)
    for op in OPS
    for a, b in itertools.product(DTYPES, DTYPES)
    for na, nb in [(1, 1), (1, 0), (0, 1), (0, 0)]
    if not (op == "sub" and "bool" in (a, b)) and not (op == "pow" and a == b == "bool")
]


def _compare(out: pg.Tensor, ref: torch.Tensor) -> None:
    assert out.dtype.name == str(ref.dtype).removeprefix("torch."), (out.dtype, ref.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):  # bool operands divide by False
        got = out.numpy()
    assert got.dtype == ref.numpy().dtype and got.shape == tuple(ref.shape)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-6)


@pytest.mark.parametrize("op,a,na,b,nb", TENSOR_CASES)
def test_promotion_tensor_tensor(op, a, na, b, nb):
    pg_op, torch_op = OPS[op]
    (x, tx), (y, ty) = _operand(a, na), _operand(b, nb)
    _compare(pg_op(x, y), torch_op(tx, ty))


SCALARS = [2, 2.5, True, np.float64(2.5), np.int64(3), np.float32(0.5)]
SCALAR_CASES = [
    (op, a, s)
    for op in ["add", "sub", "mul", "div", "pow"]
    for a in DTYPES
    for s in SCALARS
    if not (op == "sub" and (a == "bool" or isinstance(s, bool)))
    and not (op == "pow" and a == "bool" and isinstance(s, bool))
]


@pytest.mark.parametrize("op,a,scalar", SCALAR_CASES, ids=repr)
def test_promotion_tensor_scalar(op, a, scalar):
    pg_op, _ = OPS[op]
    x, tx = _operand(a, 1)
    _compare(pg_op(x, scalar), pg_op(tx, scalar))
    if op != "pow" or a != "bool":
        _compare(pg_op(scalar, x), pg_op(scalar, tx))  # reflected


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
def test_where_and_cat_promote(a, b):
    (x, tx), (y, ty) = _operand(a, 1), _operand(b, 1)
    cond = np.array([True, False, True])
    _compare(pg.where(pg.tensor(cond), x, y), torch.where(torch.from_numpy(cond), tx, ty))
    _compare(pg.cat([x, y]), torch.cat([tx, ty]))
    _compare(pg.where(pg.tensor(cond), x, 1.5), torch.where(torch.from_numpy(cond), tx, 1.5))


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, DTYPES)))
@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne])
def test_comparisons_give_bool(op, a, b):
    (x, tx), (y, ty) = _operand(a, 1), _operand(b, 0)
    out = op(x, y)
    assert out.dtype == pg.bool
    _compare(out, op(tx, ty))
    _compare(op(x, 2), op(tx, 2))
    _compare(op(x, 1.5), op(tx, 1.5))


def test_integer_division_is_true_division():
    x = pg.tensor([7, -7, 2])
    out = x / 2
    assert out.dtype == pg.float32
    np.testing.assert_array_equal(out.numpy(), np.array([3.5, -3.5, 1.0], dtype=np.float32))
    out = x / pg.tensor([2, 4, 8])
    assert out.dtype == pg.float32
    np.testing.assert_array_equal(out.numpy(), np.array([3.5, -1.75, 0.25], dtype=np.float32))
    assert (pg.tensor([1], dtype=pg.int32) / pg.tensor([2], dtype=pg.int32)).dtype == pg.float32


def test_scalars_never_widen_a_tensor_of_their_category(rng):
    x32 = pg.tensor(rng.standard_normal(3).astype(np.float32))
    x64 = pg.tensor(rng.standard_normal(3))
    assert (x32 * 1e10).dtype == pg.float32
    assert (x64 * 2.5).dtype == pg.float64 and (2.5 - x64).dtype == pg.float64
    big = pg.tensor([1], dtype=pg.int32) + (2**31 - 2)
    assert big.dtype == pg.int32 and big.tolist() == [2**31 - 1]
    assert (pg.tensor([1], dtype=pg.int32) * 2.5).dtype == pg.float32  # a float scalar makes an int tensor float32
    assert (x32 + pg.tensor(np.asarray(1.0))).dtype == pg.float32  # a 0-d tensor does not widen a dimensioned one
    assert (pg.tensor([1, 2]) + pg.tensor(np.asarray(1.0))).dtype == pg.float64  # ...but lifts its category
    y = (x64 * 2.5 + 1).exp().sum() / 3  # float64 stays float64 through a chain
    assert y.dtype == pg.float64 and y.numpy().dtype == np.float64


# ---------------------------------------------------------------------------------------------------------------
# Result dtypes of other ops, against torch


@pytest.mark.parametrize("name", DTYPES)
def test_reduction_and_unary_dtypes(name):
    x, tx = _operand(name, 1)
    _compare(x.sum(), tx.sum())
    _compare(x.sum(0, keepdim=True), tx.sum(0, keepdim=True))
    _compare(x.max(), tx.amax())
    _compare(x.amin(0), tx.amin(0))
    _compare(x.min(0).values, tx.min(0).values)
    _compare(x.min(0).indices, tx.min(0).indices)
    _compare(x.argmax(), tx.to(torch.float32).argmax())
    if name != "bool":
        _compare(x.abs(), tx.abs())
        _compare(-x, -tx)
        _compare(x.relu(), tx.relu())
    _compare(x.exp(), tx.exp())
    _compare(x.sqrt(), tx.sqrt())
    _compare(x.sigmoid(), tx.sigmoid())
    _compare(x.float(), tx.float())
    _compare(x.long(), tx.long())
    _compare(x.to(pg.float64), tx.to(torch.float64))
    if pg.tensor(_np_data(name, 1)).dtype.is_floating_point:
        _compare(x.mean(), tx.mean())
    else:
        with pytest.raises(pg.DTypeError):
            x.mean()


def test_bool_arithmetic_is_logical_as_torch():
    """Regression: bool + bool and bool * bool are bool (or / and), maximum/minimum of bools work."""
    a, b = np.array([True, False, True, False]), np.array([True, True, False, False])
    x, y, tx, ty = pg.tensor(a), pg.tensor(b), torch.from_numpy(a), torch.from_numpy(b)
    for out, ref in [(x + y, a | b), (x * y, a & b), (pg.maximum(x, y), a | b), (pg.minimum(x, y), a & b)]:
        assert out.dtype == pg.bool
        np.testing.assert_array_equal(out.numpy(), ref)
    _compare(x + y, tx + ty)
    _compare(x * y, tx * ty)
    _compare(x + True, tx + True)
    _compare(x + 1, tx + 1)
    _compare(x * 2.5, tx * 2.5)


def test_integer_pow_stays_integer():
    """Regression: int ** int is an int tensor, as torch (it was float32)."""
    x = pg.tensor([0, 1, 2, 3, -4])
    out = x**3
    assert out.dtype == pg.int64
    np.testing.assert_array_equal(out.numpy(), np.array([0, 1, 8, 27, -64]))
    assert (2 ** pg.tensor([0, 10, 40])).tolist() == [1, 1024, 2**40]
    assert (pg.tensor([3], dtype=pg.int32) ** 2).dtype == pg.int32
    assert (pg.tensor([3, 4]) ** pg.tensor([2, 0])).tolist() == [9, 1]
    assert (x**0.5).dtype == pg.float32
    with pytest.raises(pg.DTypeError, match="negative integer powers"):
        x**-1


# ---------------------------------------------------------------------------------------------------------------
# Matmul-like ops do not promote (issue 19 item 3, issue 16 item 5)


MATMUL_PAIRS = [(a, b) for a in ("float32", "float64", "int64") for b in ("float32", "float64", "int64") if a != b]


@pytest.mark.parametrize("a,b", MATMUL_PAIRS)
def test_matmul_of_two_dtypes_raises_as_torch(rng, a, b):
    x = rng.standard_normal((2, 3)).astype(a)
    y = rng.standard_normal((3, 4)).astype(b)
    with pytest.raises(RuntimeError):  # PyTorch refuses the pair too
        torch.from_numpy(x) @ torch.from_numpy(y)
    with pytest.raises(pg.DTypeError, match=rf"matmul: .*self {a}, other {b}.*\(at .*test_dtypes\.py:\d+\)"):
        pg.tensor(x) @ pg.tensor(y)
    with pytest.raises(pg.DTypeError, match=rf"self {a}, other {b}"):
        pg.tensor(x) @ y  # a numpy operand keeps its dtype, as pg.tensor(y) would


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_of_one_float_dtype_computes_in_it(rng, dtype):
    x, y = rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal((5, 3, 4)).astype(dtype)
    out = pg.tensor(x) @ pg.tensor(y)
    assert out.dtype.name == dtype
    np.testing.assert_allclose(out.numpy(), x @ y, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_float64_input_into_float32_linear_raises_naming_both_dtypes_and_the_line(rng):
    """Issue 19 item 3: the float64 batch used to be computed in float64 silently; PyTorch says "mat1 and mat2 must
    have the same dtype"."""
    layer = pg.nn.Linear(3, 2)
    x = rng.standard_normal((1, 3))  # float64
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.nn.Linear(3, 2)(torch.from_numpy(x))
    with pytest.raises(pg.DTypeError, match=r"linear: .*input float64, weight float32.*test_dtypes\.py:\d+"):
        layer(pg.tensor(x))
    with pytest.raises(pg.DTypeError, match=r"input float32, weight float32, bias float64"):
        pg.nn.functional.linear(pg.tensor(x, dtype=pg.float32), layer.weight, pg.tensor(np.zeros(2)))
    y = layer(pg.tensor(x, dtype=pg.float32))  # the fix the message suggests
    assert y.dtype == pg.float32
    expected = x @ layer.weight.numpy().T.astype(np.float64) + layer.bias.numpy()
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_matmul_dtype_error_inside_a_compiled_step(rng):
    w = pg.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)

    @pg.compile
    def step(x):
        return (x @ w).sum()

    with pytest.raises(pg.DTypeError, match=r"self float64, other float32.*test_dtypes\.py:\d+"):
        step(pg.tensor(rng.standard_normal((4, 3))))


def test_elementwise_promotion_is_unchanged(rng):
    a = pg.tensor(rng.standard_normal(3).astype(np.float32))
    b = pg.tensor(rng.standard_normal(3))
    assert (a + b).dtype == pg.float64 == (a * b).dtype
    assert (a + pg.tensor([1, 2, 3])).dtype == pg.float32


def test_ml_dtypes_is_imported_on_first_use_of_bfloat16() -> None:
    """Importing picograd and its compiler driver loads neither ml_dtypes (half a CPU second: a twentieth of ``pgc
    --emit=ptx``), nor torch or scipy; ``pg.bfloat16``'s numpy dtype, or a dtype of ml_dtypes, is found when
    asked."""
    import subprocess
    import sys

    code = (
        "import sys; import picograd as pg; import picograd.tools.pgc\n"
        "print(sorted(m for m in ('ml_dtypes', 'torch', 'scipy') if m in sys.modules))\n"
        "print(pg.bfloat16.np, pg.float16.np, pg.bool.np)\n"
        "import ml_dtypes, numpy as np; from picograd.frontend.dtypes import as_dtype\n"
        "print(as_dtype(ml_dtypes.bfloat16), as_dtype(np.dtype(ml_dtypes.bfloat16)), as_dtype(np.float16))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[]", "bfloat16 float16 bool", "pg.bfloat16 pg.bfloat16 pg.float16"]
    assert pg.tensor([1.5, -2.25], dtype=pg.bfloat16).numpy().dtype == pg.bfloat16.np
    with pytest.raises(pg.DTypeError, match="unsupported dtype"):
        pg.zeros(2, dtype=np.uint8)
