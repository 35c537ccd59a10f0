"""Forward numerics of the frontend's tensor ops (design.md section 2) against numpy in float64.

Inputs are fresh random numbers on every run (the ``rng`` fixture is unseeded) and float64 numpy arrays, which keep
their dtype, so results are compared at ``rtol=1e-12``. Indexing has its own file (test_indexing.py), dtype rules
too (test_dtypes.py).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from scipy import special

import picograd as pg

RTOL = 1e-12


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """float64 normal samples of ``shape`` as an array (also for ``()``, where numpy would give a Python float)."""
    return np.asarray(rng.standard_normal(shape))


def positive(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return np.abs(randn(rng, *shape)) + 0.25


def check(t: pg.Tensor, expected: np.ndarray | float, rtol: float = RTOL) -> np.ndarray:
    """``t`` realizes to ``expected``: same shape, same dtype, values within ``rtol`` (NaN and inf where numpy has
    them)."""
    assert isinstance(t, pg.Tensor)
    expected = np.asarray(expected)
    got = t.numpy()
    assert isinstance(got, np.ndarray)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert t.shape == expected.shape
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    else:
        np.testing.assert_array_equal(got, expected)
    return got


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic

BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
}
BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((2, 1, 4), (3, 1)),
    ((1,), (5,)),
    ((5, 1), (1, 5)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((0, 3), (1, 3)),
]


@pytest.mark.parametrize("sa,sb", BROADCAST_PAIRS)
@pytest.mark.parametrize("name", BINARY)
def test_binary_tensor_tensor(rng, name, sa, sb):
    op = BINARY[name]
    a = positive(rng, *sa) if name == "pow" else randn(rng, *sa)
    b = randn(rng, *sb)
    check(op(pg.tensor(a), pg.tensor(b)), op(a, b))


@pytest.mark.parametrize("scalar", [2.5, -3, 0.5, 7])
@pytest.mark.parametrize("name", BINARY)
def test_binary_tensor_scalar_and_reflected(rng, name, scalar):
    op = BINARY[name]
    a = positive(rng, 3, 4) if name == "pow" else randn(rng, 3, 4)
    t = pg.tensor(a)
    check(op(t, scalar), op(a, scalar))
    if name == "pow" and scalar < 0:
        scalar = -scalar  # a negative base to a real power is NaN
    check(op(scalar, t), op(scalar, a))  # __radd__, __rsub__, __rtruediv__, __rpow__ ...


@pytest.mark.parametrize("name", BINARY)
def test_binary_with_numpy_operands(rng, name):
    op = BINARY[name]
    a, b = positive(rng, 2, 3), randn(rng, 3)
    check(op(pg.tensor(a), b), op(a, b))
    check(op(a, pg.tensor(b)), op(a, b))  # ndarray on the left defers to the tensor (__array_priority__)
    check(op(np.float64(1.5), pg.tensor(a)), op(1.5, a))


def test_neg_and_chained_expression(rng):
    a, b, c = randn(rng, 4, 5), randn(rng, 5), positive(rng, 4, 1)
    x, y, z = pg.tensor(a), pg.tensor(b), pg.tensor(c)
    check(-x, -a)
    check(-(x * y - z) / z + 2.0 * x**2, -(a * b - c) / c + 2.0 * a**2)


def test_pow_method(rng):
    a, b = positive(rng, 3, 4), randn(rng, 4)
    x = pg.tensor(a)
    check(x.pow(2), a**2)
    check(x.pow(0.5), np.sqrt(a))
    check(x.pow(pg.tensor(b)), a**b)
    check(x.pow(-1.5), a**-1.5)


def test_integer_arithmetic():
    a = np.array([[7, -7, 3], [0, 12, -5]])
    b = np.array([2, 3, -4])
    x, y = pg.tensor(a), pg.tensor(b)
    check(x + y, a + b)
    check(x - y, a - b)
    check(x * y, a * b)
    check(x / y, (a / b).astype(np.float32))  # true division gives float32, as torch
    check(-x, -a)
    check(x * 3 + 1, a * 3 + 1)


# ---------------------------------------------------------------------------------------------------------------
# Matmul

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((1, 4), (4, 1)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 6)),
    ((1, 3, 4), (6, 4, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(rng, sa, sb):
    a, b = randn(rng, *sa), randn(rng, *sb)
    check(pg.tensor(a) @ pg.tensor(b), a @ b)


def test_matmul_of_transposed_operands(rng):
    a, b = randn(rng, 5, 3), randn(rng, 2, 5, 4)
    check(pg.tensor(a).T @ pg.tensor(b).transpose(1, 2).transpose(-1, -2), a.T @ b)
    check(pg.tensor(b).mT @ pg.tensor(b), np.swapaxes(b, -1, -2) @ b)
    check(a @ pg.tensor(a).T, a @ a.T)  # ndarray @ tensor: __rmatmul__


# ---------------------------------------------------------------------------------------------------------------
# Comparisons, where, maximum/minimum

COMPARISONS = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons(rng, name):
    op = COMPARISONS[name]
    a = rng.integers(-2, 3, (4, 5)).astype(np.float64)  # small integers: ties occur
    b = rng.integers(-2, 3, (5,)).astype(np.float64)
    x, y = pg.tensor(a), pg.tensor(b)
    check(op(x, y), op(a, b))
    check(op(x, 1.0), op(a, 1.0))
    check(op(1, x), op(1, a))  # reflected: Python turns 1 < x into x > 1
    check(op(x.T, y[:4]), op(a.T, b[:4]))


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), (3, 4)), ((), (2, 3), (3,))])
def test_where(rng, shapes):
    sc, sa, sb = shapes
    c, a, b = randn(rng, *sc) > 0, randn(rng, *sa), randn(rng, *sb)
    check(pg.where(pg.tensor(c), pg.tensor(a), pg.tensor(b)), np.where(c, a, b))


def test_where_scalar_branches_and_condition_kinds(rng):
    a = randn(rng, 3, 4)
    x = pg.tensor(a)
    check(pg.where(x > 0, x, 0.0), np.where(a > 0, a, 0.0))
    check(pg.where(x > 0, -1.5, x), np.where(a > 0, -1.5, a))
    check(pg.where([True, False, True, False], x, -x), np.where([True, False, True, False], a, -a))
    check(pg.where(pg.tensor([0, 2, 0, -1]), x, 7.0), np.where([0, 2, 0, -1], a, 7.0))  # nonzero is true
    check(x.masked_fill(x < 0, -9.0), np.where(a < 0, -9.0, a))


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum(rng, fn):
    a, b = randn(rng, 3, 4), randn(rng, 4)
    ref = getattr(np, fn)
    check(getattr(pg, fn)(pg.tensor(a), pg.tensor(b)), ref(a, b))
    check(getattr(pg, fn)(pg.tensor(a), 0.25), ref(a, 0.25))
    check(getattr(pg, fn)(-1, pg.tensor(a)), ref(-1, a))
    check(getattr(pg.tensor(a), fn)(pg.tensor(b)), ref(a, b))


# ---------------------------------------------------------------------------------------------------------------
# Elementwise unary

UNARY = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda a: 1 / np.sqrt(a),
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0),
    "abs": np.abs,
}
NEEDS_POSITIVE = {"log", "sqrt", "rsqrt"}


@pytest.mark.parametrize("shape", [(3, 4), (), (1, 5, 1)])
@pytest.mark.parametrize("name", UNARY)
def test_unary(rng, name, shape):
    a = positive(rng, *shape) if name in NEEDS_POSITIVE else 3 * randn(rng, *shape)
    check(getattr(pg.tensor(a), name)(), UNARY[name](a))


@pytest.mark.parametrize("name", UNARY)
def test_unary_after_permute(rng, name):
    a = positive(rng, 2, 3, 4) if name in NEEDS_POSITIVE else 3 * randn(rng, 2, 3, 4)
    p = a.transpose(2, 0, 1)
    check(getattr(pg.tensor(a).permute(2, 0, 1), name)(), UNARY[name](p))


def test_sigmoid_tanh_exp_at_large_magnitudes():
    a = np.array([-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    with np.errstate(over="ignore"):
        check(pg.tensor(a).sigmoid(), special.expit(a))
        check(pg.tensor(a).exp(), np.exp(a))
    check(pg.tensor(a).tanh(), np.tanh(a))


def test_unary_on_int_tensor_gives_float32():
    a = np.array([1, 4, 9])
    check(pg.tensor(a).sqrt(), np.sqrt(a).astype(np.float32))
    check(pg.tensor(np.array([-2, 3])).abs(), np.array([2, 3]))
    check(pg.tensor(np.array([-2, 3])).relu(), np.array([0, 3]))


# ---------------------------------------------------------------------------------------------------------------
# Casts


def test_float_long_to(rng):
    a = 10 * randn(rng, 3, 4)
    x = pg.tensor(a)
    check(x.float(), a.astype(np.float32))
    check(x.long(), np.trunc(a).astype(np.int64))  # toward zero, as torch
    check(x.to(pg.int32), np.trunc(a).astype(np.int32))
    check(x.to(pg.float32).to(pg.float64), a.astype(np.float32).astype(np.float64))
    check(x.to("float32"), a.astype(np.float32))
    check(x.to("cpu", pg.float32), a.astype(np.float32))
    check(x.to(dtype=pg.float32), a.astype(np.float32))
    check(x.to(device="cpu", dtype=pg.float32), a.astype(np.float32))
    assert x.to(device="cpu") is x
    with pytest.raises(TypeError, match="give the device once"):
        x.to("cpu", device="cpu")
    check((x > 0).float(), (a > 0).astype(np.float32))
    check(x.to(pg.bool), a != 0)
    check(pg.tensor([3, -2]).float(), np.array([3.0, -2.0], dtype=np.float32))
    assert x.to("cpu").device == "cpu"
    assert x.to(pg.float64) is x  # same dtype: no copy


# ---------------------------------------------------------------------------------------------------------------
# Reductions

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "amax": np.max, "amin": np.min}
DIMS = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions(rng, name, dim, keepdim):
    a = randn(rng, 3, 4, 5)
    ref = REDUCTIONS[name](a, axis=dim, keepdims=keepdim)
    check(getattr(pg.tensor(a), name)(dim, keepdim=keepdim), ref)
    check(getattr(pg.tensor(a), name)(dim=dim, keepdim=keepdim), ref)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_default_and_after_permute(rng, name):
    a = randn(rng, 3, 4, 5)
    ref = REDUCTIONS[name]
    check(getattr(pg.tensor(a), name)(), ref(a))
    check(getattr(pg.tensor(a).permute(1, 2, 0), name)(1), ref(a.transpose(1, 2, 0), axis=1))
    check(getattr(pg.tensor(a).T, name)((0, 2), keepdim=True), ref(a.T, axis=(0, 2), keepdims=True))


def test_reduction_edge_cases(rng):
    z = np.asarray(2.5)
    check(pg.tensor(z).sum(), z)
    check(pg.tensor(z).max(), z)
    check(pg.tensor(z).sum(0), z)  # a 0-d tensor accepts dim 0 and -1, as torch
    e = np.zeros((2, 0, 3))
    check(pg.tensor(e).sum(1), np.zeros((2, 3)))
    check(pg.tensor(e).sum(), np.asarray(0.0))
    check(pg.tensor(e).max(2).values, np.zeros((2, 0)))
    i = rng.integers(-5, 5, (3, 4))
    check(pg.tensor(i).sum(1), i.sum(1))
    check(pg.tensor(i).max(0).values, i.max(0))
    check(pg.tensor(i).max(0).indices, i.argmax(0))
    check(pg.tensor(i > 0).sum(), np.asarray((i > 0).sum()))  # bool sums to int64
    b = randn(rng, 1, 5, 1)
    check(pg.tensor(b).sum((0, 2)), b.sum((0, 2)))
    check(pg.tensor(b).amax(0, keepdim=True), b.max(0, keepdims=True))
    check(pg.tensor(b).max(0, keepdim=True).values, b.max(0, keepdims=True))


def test_max_min_dim_give_values_and_first_indices():
    a = np.array([[1.0, 3.0, 3.0], [-2.0, -2.0, 0.0]])
    values, indices = pg.tensor(a).max(1)
    check(values, np.array([3.0, 0.0]))
    check(indices, np.array([1, 2]))
    out = pg.tensor(a).min(1)
    check(out.values, np.array([1.0, -2.0]))
    check(out.indices, np.array([0, 0]))
    check(pg.tensor(a).amax(0), np.array([1.0, 3.0, 3.0]))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2)])
def test_var(rng, dim, correction, keepdim):
    a = 3 * randn(rng, 3, 4, 5) + 1
    ref = np.var(a, axis=dim, ddof=correction, keepdims=keepdim)
    check(pg.tensor(a).var(dim, correction=correction, keepdim=keepdim), ref)
    check(pg.tensor(a).std(dim, correction=correction, keepdim=keepdim), np.sqrt(ref))


def test_var_default_correction_is_bessel(rng):
    a = randn(rng, 6)
    check(pg.tensor(a).var(), np.var(a, ddof=1))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin(rng, name, dim, keepdim):
    a = rng.integers(0, 4, (3, 4, 5)).astype(np.float64)  # ties: the first index wins, as numpy and torch
    ref = getattr(np, name)(a, axis=dim, keepdims=keepdim)
    out = getattr(pg.tensor(a), name)(dim, keepdim=keepdim)
    assert out.dtype == pg.int64
    check(out, np.asarray(ref, dtype=np.int64))


def test_argmax_of_permuted_and_0d(rng):
    a = randn(rng, 3, 4)
    check(pg.tensor(a).T.argmax(1), np.argmax(a.T, 1))
    check(pg.tensor(np.asarray(1.5)).argmax(), np.asarray(0))


# ---------------------------------------------------------------------------------------------------------------
# logsumexp, softmax, log_softmax


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1, (0, 2), (2, 1)])
@pytest.mark.parametrize("scale", [1.0, 1000.0])  # 1000: a naive exp overflows
def test_logsumexp(rng, dim, keepdim, scale):
    a = scale * randn(rng, 3, 4, 5)
    check(pg.tensor(a).logsumexp(dim, keepdim=keepdim), special.logsumexp(a, axis=dim, keepdims=keepdim))


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_log_softmax(rng, dim, scale):
    a = scale * randn(rng, 3, 4, 5)
    x = pg.tensor(a)
    sm = check(x.softmax(dim), special.softmax(a, axis=dim), rtol=1e-11)
    np.testing.assert_allclose(sm.sum(dim), 1.0, rtol=1e-12)
    check(x.log_softmax(dim), special.log_softmax(a, axis=dim), rtol=1e-11)


def test_softmax_after_permute(rng):
    a = randn(rng, 3, 4, 5)
    p = a.transpose(2, 0, 1)
    check(pg.tensor(a).permute(2, 0, 1).softmax(-1), special.softmax(p, axis=-1), rtol=1e-11)
    check(pg.tensor(a).permute(2, 0, 1).logsumexp(0), special.logsumexp(p, axis=0))


def test_fully_masked_row_gives_no_nan(rng):
    """design.md: a row that is entirely -inf gives logsumexp -inf, softmax zeros, never NaN."""
    inf = math.inf
    a = np.array([[-inf, -inf, -inf, -inf], [0.5, -inf, 2.0, -inf], randn(rng, 4).tolist()])
    x = pg.tensor(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse_ref = special.logsumexp(a[1:], axis=1)
        sm_ref = special.softmax(a[1:], axis=1)
        lsm_ref = special.log_softmax(a[1:], axis=1)

    lse = x.logsumexp(1).numpy()
    assert lse[0] == -inf
    np.testing.assert_allclose(lse[1:], lse_ref, rtol=RTOL)

    sm = x.softmax(1).numpy()
    assert not np.isnan(sm).any()
    np.testing.assert_array_equal(sm[0], np.zeros(4))
    np.testing.assert_allclose(sm[1:], sm_ref, rtol=1e-12)
    assert sm[1, 1] == 0.0 and sm[1, 3] == 0.0

    lsm = x.log_softmax(1).numpy()
    assert not np.isnan(lsm).any()
    assert (lsm[0] == -inf).all()
    np.testing.assert_allclose(lsm[1:], lsm_ref, rtol=1e-12)

    # the same along dim 0 of the transpose (a non-contiguous view), and with keepdim
    np.testing.assert_array_equal(x.T.softmax(0).numpy(), sm.T)
    lse_keep = x.logsumexp(-1, keepdim=True).numpy()
    assert lse_keep.shape == (3, 1) and lse_keep[0, 0] == -inf


# ---------------------------------------------------------------------------------------------------------------
# Movement


@pytest.mark.parametrize(
    "src,target",
    [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((2, 3, 4), (4, -1, 2)), ((6,), (1, 6, 1)), ((), (1, 1)), ((1,), ())],
)
def test_reshape_view(rng, src, target):
    a = randn(rng, *src)
    check(pg.tensor(a).reshape(*target), a.reshape(target))
    check(pg.tensor(a).reshape(target), a.reshape(target))
    check(pg.tensor(a).view(*target), a.reshape(target))


def test_reshape_after_permute_is_row_major_of_the_permuted(rng):
    a = randn(rng, 2, 3, 4)
    p = a.transpose(1, 2, 0)
    check(pg.tensor(a).permute(1, 2, 0).reshape(-1), p.reshape(-1))
    check(pg.tensor(a).permute(1, 2, 0).reshape(4, 6), p.reshape(4, 6))
    check(pg.tensor(a).transpose(0, 2).flatten(1), a.transpose(2, 1, 0).reshape(4, 6))


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 0, 2), (2, 1, 0), (-1, 0, -2)])
def test_permute(rng, perm):
    a = randn(rng, 2, 3, 4)
    check(pg.tensor(a).permute(*perm), np.transpose(a, perm))
    check(pg.tensor(a).permute(perm), np.transpose(a, perm))


def test_transpose_T(rng):
    a = randn(rng, 2, 3, 4)
    x = pg.tensor(a)
    check(x.transpose(0, 2), np.swapaxes(a, 0, 2))
    check(x.transpose(-1, -2), np.swapaxes(a, -1, -2))
    check(x.T, a.T)
    b = randn(rng, 3, 5)
    check(pg.tensor(b).T, b.T)
    check(pg.tensor(b).T.T, b)
    v = randn(rng, 5)
    check(pg.tensor(v).T, v)


@pytest.mark.parametrize("start,end", [(0, -1), (1, -1), (0, 1), (1, 2), (-2, -1), (2, 2)])
def test_flatten(rng, start, end):
    a = randn(rng, 2, 3, 4, 5)
    s, e = start % 4, end % 4
    ref = a.reshape(*a.shape[:s], -1, *a.shape[e + 1 :])
    check(pg.tensor(a).flatten(start, end), ref)


def test_flatten_default_and_0d(rng):
    a = randn(rng, 2, 3)
    check(pg.tensor(a).flatten(), a.reshape(-1))
    check(pg.tensor(np.asarray(3.5)).flatten(), np.array([3.5]))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_unsqueeze(rng, dim):
    a = randn(rng, 3, 4)
    check(pg.tensor(a).unsqueeze(dim), np.expand_dims(a, dim))


@pytest.mark.parametrize("dim", [None, 0, 2, -1, (0, 2), (0, 1)])
def test_squeeze(rng, dim):
    a = randn(rng, 1, 3, 1, 1)
    d = dim if dim is None or isinstance(dim, tuple) else (dim,)
    ref = np.squeeze(a, axis=None if d is None else tuple(i for i in d if a.shape[i] == 1))  # non-1 dims stay
    check(pg.tensor(a).squeeze(dim), ref)


@pytest.mark.parametrize(
    "src,sizes,ref",
    [((3, 1), (3, 4), (3, 4)), ((3, 1), (2, -1, 5), (2, 3, 5)), ((), (2, 2), (2, 2)), ((4,), (3, 4), (3, 4))],
)
def test_expand(rng, src, sizes, ref):
    a = randn(rng, *src)
    out = pg.tensor(a).expand(*sizes)
    check(out, np.broadcast_to(a, ref))
    check(out * 2.0 + pg.tensor(a), np.broadcast_to(a, ref) * 2.0 + a)


def test_expand_as(rng):
    a, b = randn(rng, 1, 4), randn(rng, 3, 4)
    check(pg.tensor(a).expand_as(pg.tensor(b)), np.broadcast_to(a, (3, 4)))


# ---------------------------------------------------------------------------------------------------------------
# Joining


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_cat(rng, dim):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, k in enumerate((1, 3, 2)):
        shapes[i][dim] = k
    arrays = [randn(rng, *s) for s in shapes]
    check(pg.cat([pg.tensor(a) for a in arrays], dim), np.concatenate(arrays, axis=dim))


def test_cat_edge_cases(rng):
    a, b, e = randn(rng, 2, 3), randn(rng, 4, 3), np.zeros((0, 3))
    check(pg.cat([pg.tensor(a), pg.tensor(e), pg.tensor(b)]), np.concatenate([a, e, b]))
    check(pg.cat([pg.tensor(a)], 1), a)
    check(pg.cat((pg.tensor(a), pg.tensor(b).T.T), dim=-2), np.concatenate([a, b]))
    check(pg.cat([pg.tensor(a).T, pg.tensor(b).T], 1), np.concatenate([a.T, b.T], 1))  # non-contiguous inputs
    f32 = pg.tensor(a.astype(np.float32))
    check(pg.cat([f32, pg.tensor(b)]), np.concatenate([a.astype(np.float32), b]))  # promoted to float64


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_stack(rng, dim):
    arrays = [randn(rng, 3, 4) for _ in range(3)]
    check(pg.stack([pg.tensor(a) for a in arrays], dim), np.stack(arrays, axis=dim))


def test_stack_0d(rng):
    arrays = [randn(rng) for _ in range(4)]
    check(pg.stack([pg.tensor(a) for a in arrays]), np.stack(arrays))


# ---------------------------------------------------------------------------------------------------------------
# Creation


@pytest.mark.parametrize("fn,value", [("zeros", 0.0), ("ones", 1.0)])
def test_zeros_ones(fn, value):
    make = getattr(pg, fn)
    check(make(2, 3), np.full((2, 3), value, dtype=np.float32))
    check(make((2, 3)), np.full((2, 3), value, dtype=np.float32))
    check(make([4]), np.full((4,), value, dtype=np.float32))
    check(make(2, 0), np.full((2, 0), value, dtype=np.float32))
    check(make(), np.full((), value, dtype=np.float32))
    check(make(3, dtype=pg.int64), np.full((3,), value, dtype=np.int64))
    check(make(3, dtype=pg.float64), np.full((3,), value, dtype=np.float64))
    check(make(3, dtype="bool"), np.full((3,), value, dtype=np.bool_))
    t = make(2, requires_grad=True)
    assert t.requires_grad and t.dtype == pg.float32


def test_zeros_like_ones_like(rng):
    a = randn(rng, 2, 3)
    check(pg.zeros_like(pg.tensor(a)), np.zeros((2, 3)))
    check(pg.ones_like(pg.tensor(a), dtype=pg.int64), np.ones((2, 3), dtype=np.int64))


def test_full():
    check(pg.full((2, 3), 1.5), np.full((2, 3), 1.5, dtype=np.float32))
    check(pg.full((2,), 7), np.full((2,), 7, dtype=np.int64))
    check(pg.full((2,), True), np.full((2,), True))
    check(pg.full(3, -2.25, dtype=pg.float64), np.full((3,), -2.25))


@pytest.mark.parametrize(
    "args,kwargs,ref",
    [
        ((5,), {}, np.arange(5)),
        ((2, 9), {}, np.arange(2, 9)),
        ((2, 9, 3), {}, np.arange(2, 9, 3)),
        ((5, 0, -2), {}, np.arange(5, 0, -2)),
        ((0,), {}, np.arange(0)),
        ((0.0, 1.0, 0.25), {}, np.arange(0.0, 1.0, 0.25).astype(np.float32)),
        ((3.5,), {}, np.arange(3.5).astype(np.float32)),
        ((4,), {"dtype": pg.float64}, np.arange(4, dtype=np.float64)),
        ((1, 4), {"dtype": "int32"}, np.arange(1, 4, dtype=np.int32)),
    ],
)
def test_arange(args, kwargs, ref):
    check(pg.arange(*args, **kwargs), ref)


@pytest.mark.parametrize("fn", ["randn", "rand"])
def test_random_shapes_and_dtypes(fn):
    make = getattr(pg, fn)
    assert make(2, 3).shape == (2, 3) and make(2, 3).dtype == pg.float32
    assert make((4,)).shape == (4,)
    assert make(3, dtype=pg.float64).numpy().dtype == np.float64
    assert make(0, 2).numpy().shape == (0, 2)
    t = make(3, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_randn_statistics():
    x = pg.randn(100_000, dtype=pg.float64).numpy()
    assert abs(x.mean()) < 0.02  # the standard error is 0.003
    assert abs(x.std() - 1.0) < 0.02
    assert 0.15 < (x > 1.0).mean() < 0.17  # a normal tail, not a uniform one (P(x > 1) = 0.1587)
    assert np.unique(x).size > 99_000


def test_rand_statistics():
    x = pg.rand(100_000).numpy()
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() < 1.0
    assert abs(x.mean() - 0.5) < 0.01
    counts = np.histogram(x, bins=10, range=(0, 1))[0]
    assert counts.min() > 9_000 and counts.max() < 11_000


def test_randint():
    x = pg.randint(3, 7, (10_000,))
    assert x.dtype == pg.int64 and x.shape == (10_000,)
    v = x.numpy()
    assert set(np.unique(v).tolist()) == {3, 4, 5, 6}
    assert np.bincount(v - 3).min() > 2_000
    y = pg.randint(10, (2, 3))  # randint(high, size)
    assert y.shape == (2, 3) and 0 <= y.numpy().min() and y.numpy().max() < 10
    assert pg.randint(0, 5, (4,), dtype=pg.int32).dtype == pg.int32


@pytest.mark.parametrize("fn", ["randn", "rand"])
def test_seeding(rng, fn):
    make = getattr(pg, fn)
    seed = int(rng.integers(0, 2**31))
    pg.manual_seed(seed)
    first, second = make(64).numpy(), make(64).numpy()
    assert not np.array_equal(first, second)  # each call advances the generator
    pg.manual_seed(seed)
    np.testing.assert_array_equal(make(64).numpy(), first)
    np.testing.assert_array_equal(make(64).numpy(), second)
    pg.manual_seed(seed + 1)
    assert not np.array_equal(make(64).numpy(), first)
    pg.manual_seed(int(rng.integers(0, 2**31)))  # leave the generator unpredictable for later tests


def test_randint_seeding(rng):
    seed = int(rng.integers(0, 2**31))
    pg.manual_seed(seed)
    a = pg.randint(0, 1000, (50,)).numpy()
    pg.manual_seed(seed)
    np.testing.assert_array_equal(pg.randint(0, 1000, (50,)).numpy(), a)
    assert not np.array_equal(pg.randint(0, 1000, (50,)).numpy(), a)


# ---------------------------------------------------------------------------------------------------------------
# Reading values, metadata, the compile cache


def test_item_tolist_numpy(rng):
    a = randn(rng, 2, 3)
    x = pg.tensor(a)
    assert x.shape == (2, 3) and x.ndim == 2 and x.numel() == 6 and x.dtype == pg.float64 and x.device == "cpu"
    n = (x * 2.0).numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float64
    np.testing.assert_array_equal(n, a * 2.0)
    assert (x + 1.0).tolist() == (a + 1.0).tolist()
    s = x.sum().item()
    assert isinstance(s, float) and s == pytest.approx(a.sum(), rel=RTOL)
    assert x[1, 2].item() == a[1, 2]
    assert x.reshape(1, 6)[0, 4].item() == a[1, 1]  # any one-element tensor
    i = pg.tensor([[4, -2]]).sum().item()
    assert isinstance(i, int) and i == 2
    b = (x > 100.0).sum().item()
    assert isinstance(b, int) and b == 0
    f = pg.tensor(True).item()
    assert f is True
    assert pg.tensor(2.5).tolist() == 2.5
    assert float(x[0, 0]) == a[0, 0] and int(pg.tensor(7)) == 7


def test_same_structure_different_data_and_constants(rng):
    """The compile cache is keyed by structure: a second graph of the same shape with other data (or other
    constants) must not reuse the first one's values."""
    a, b = randn(rng, 3, 4), randn(rng, 3, 4)
    check(pg.tensor(a) * 2.0 + 1.0, a * 2.0 + 1.0)
    check(pg.tensor(b) * 2.0 + 1.0, b * 2.0 + 1.0)
    check(pg.tensor(b) * 3.0 + 1.0, b * 3.0 + 1.0)
    check(pg.tensor(b) * 3.0 - 1.0, b * 3.0 - 1.0)


def test_realized_values_feed_later_ops(rng):
    a, b = randn(rng, 3, 4), randn(rng, 4)
    x = pg.tensor(a) + pg.tensor(b)
    check(x, a + b)
    y = x.exp() * x  # x is a realized leaf now
    check(y, np.exp(a + b) * (a + b))
    check(x, a + b)  # reading twice gives the same value


def test_len_iter_size(rng):
    a = randn(rng, 3, 2)
    x = pg.tensor(a)
    assert len(x) == 3 and x.size() == (3, 2) and x.size(-1) == 2 and x.dim() == 2
    for row, ref in zip(x, a, strict=True):
        check(row, ref)


def test_integer_division_by_zero_raises_and_percent_is_remainder(rng: np.random.Generator) -> None:
    """Integer ``//``, ``div(rounding_mode=)`` and ``%`` by zero raise ``RuntimeError`` as PyTorch's (numpy gave 0
    or the dividend silently), eagerly and in a compiled step, naming the user's line; ``%`` works (it was missing)
    and follows Python's sign rule like ``torch.remainder``, for ints and floats, on either side."""
    import torch

    a = rng.integers(-50, 50, 6)
    b = rng.integers(1, 9, 6) * rng.choice([-1, 1], 6)
    x, y = pg.tensor(a), pg.tensor(b)
    np.testing.assert_array_equal((x % y).numpy(), (torch.tensor(a) % torch.tensor(b)).numpy())
    np.testing.assert_array_equal((7 % y).numpy(), (7 % torch.tensor(b)).numpy())
    f = rng.standard_normal(6) * 10
    np.testing.assert_allclose((pg.tensor(f) % -2.5).numpy(), (torch.tensor(f) % -2.5).numpy(), rtol=1e-12)
    zero_at = b.copy()
    zero_at[int(rng.integers(6))] = 0
    line = "ZeroDivisionError: integer division by zero"
    for fn in (
        lambda u, v: u // v,
        lambda u, v: u.div(v, rounding_mode="trunc"),
        lambda u, v: u % v,
        lambda u, v: u // 0,
        lambda u, v: pg.remainder(u, 0),
    ):
        for run in (fn, pg.compile(fn)):
            with pytest.raises(RuntimeError, match=f"{line} \\(at {__file__}:"):
                run(x, pg.tensor(zero_at)).numpy()


def test_format_and_truth_value_as_torch(rng: np.random.Generator) -> None:
    """``f"{loss:.4f}"`` works (it raised TypeError) and formats like PyTorch; ``if t:`` on several elements raises
    PyTorch's RuntimeError naming the problem, not ``item()``'s ShapeError."""
    import torch

    v = float(rng.standard_normal())
    for spec in (".4f", "", ">10.2e"):
        assert format(pg.tensor(v), spec) == format(torch.tensor(v), spec)
    assert f"{pg.tensor(7):>4d}" == f"{torch.tensor(7):>4d}" and f"{pg.tensor([1.0, 2.0])}" == "tensor([1., 2.])"
    with pytest.raises(TypeError):
        f"{pg.tensor([1.0, 2.0]):.2f}"  # noqa: B018 - as torch
    with pytest.raises(RuntimeError, match=rf"truth value of a tensor of shape \(2,\) is ambiguous.*{__file__}:"):
        bool(pg.tensor([1.0, 2.0]))
    assert bool(pg.tensor([3.0])) and not bool(pg.tensor(0))


def test_an_empty_dim_list_reduces_every_dim_as_torch(rng: np.random.Generator) -> None:
    """``x.sum(dim=())`` is ``x.sum()`` in PyTorch (also mean, amax, amin, var, std); it returned ``x`` unreduced."""
    import torch

    a = rng.standard_normal((2, 3))
    x, t = pg.tensor(a), torch.tensor(a)
    for name in ("sum", "mean", "amax", "amin", "var", "std"):
        for dim in ((), []):
            for keepdim in (False, True):
                got = getattr(x, name)(dim=dim, keepdim=keepdim)
                want = getattr(t, name)(dim=dim, keepdim=keepdim)
                assert got.shape == tuple(want.shape), (name, dim, keepdim)
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
