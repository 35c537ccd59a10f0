"""Accuracy of the GPU's elementary functions (``picograd.target.gpu_math``), measured without a GPU.

``gpu_math.evaluate`` runs each scheme with ``NumpyArith``: the operation sequence the PTX lowering emits, each
operation rounded as the GPU rounds it. The results are compared with mpmath at 50 digits on random samples over
each function's domain (plus special values) and the worst error, in ulp of the correctly rounded result, must stay
within ``gpu_math.MEASURED_ULP``. ``tests/test_gpu_ops.py`` checks on a GPU that the PTX computes the same numbers.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from picograd.target import gpu_math

mp.mp.dps = 50

REFERENCE = {
    "exp": mp.exp,
    "log": mp.log,
    "log1p": mp.log1p,
    "tanh": mp.tanh,
    "erf": mp.erf,
    "sin": mp.sin,
    "cos": mp.cos,
}


def samples(name: str, kind: str, rng: np.random.Generator, n: int = 1500) -> np.ndarray:
    dt = np.float32 if kind == "f32" else np.float64
    big = 88.0 if kind == "f32" else 709.0
    tiny = np.finfo(dt).tiny
    ranges = {
        "exp": [rng.uniform(-big - 15, big, n), rng.uniform(-1, 1, n // 4) * 1e-3],
        "log": [np.exp(rng.uniform(-80, 80, n)), rng.uniform(0.5, 2, n // 2), [tiny, tiny / 8, np.finfo(dt).max]],
        "log1p": [rng.uniform(-0.999, 4, n), rng.uniform(-1, 1, n // 4) * 1e-6, np.exp(rng.uniform(0, 40, n // 4))],
        "tanh": [rng.uniform(-12, 12, n), rng.uniform(-1, 1, n // 2) * 0.3, rng.uniform(-1, 1, n // 4) * 1e-5],
        "erf": [rng.uniform(-7, 7, n), rng.uniform(-1.2, 1.2, n // 2), rng.uniform(-1, 1, n // 4) * 1e-6],
        "sin": [rng.uniform(-10, 10, n), rng.uniform(-1e4, 1e4, n // 2), rng.uniform(-1, 1, n // 4) * 1e-4],
        "cos": [rng.uniform(-10, 10, n), rng.uniform(-1e4, 1e4, n // 2), rng.uniform(-1, 1, n // 4) * 1e-4],
    }[name]
    return np.concatenate([np.asarray(r, np.float64) for r in ranges]).astype(dt)


def ulp_errors(got: np.ndarray, x_args: list[np.ndarray], fn, kind: str) -> np.ndarray:
    dt = np.float32 if kind == "f32" else np.float64
    errs = np.zeros(got.shape)
    for i in range(got.size):
        ref = fn(*(mp.mpf(float(a[i])) for a in x_args))
        g = float(got[i])
        if isinstance(ref, mp.mpc) or not mp.isfinite(ref):
            errs[i] = 0.0 if (math.isnan(g) and (isinstance(ref, mp.mpc) or mp.isnan(ref))) or g == ref else math.inf
            continue
        rounded = dt(float(ref))  # the correctly rounded result (for f32 through f64: fine at this precision)
        if not np.isfinite(rounded):
            errs[i] = 0.0 if math.isinf(g) and g * float(ref) > 0 else math.inf
            continue
        u = float(np.spacing(np.abs(rounded)))
        if u == 0.0 or (rounded != 0 and abs(float(rounded)) < np.finfo(dt).tiny):
            u = float(np.finfo(dt).smallest_subnormal)
        errs[i] = abs(mp.mpf(g) - ref) / u
    return errs


@pytest.mark.parametrize("kind", ["f32", "f64"])
@pytest.mark.parametrize("name", list(REFERENCE))
def test_max_ulp_error(name: str, kind: str, rng: np.random.Generator) -> None:
    x = samples(name, kind, rng)
    got = gpu_math.evaluate(name, kind, x)
    assert got.dtype == x.dtype
    errs = ulp_errors(got, [x], REFERENCE[name], kind)
    worst = int(np.argmax(errs))
    bound = gpu_math.MEASURED_ULP[kind][name] + 1.0  # measured on earlier samples: fresh ones may land a bit above
    assert errs[worst] <= bound, f"{kind} {name}({x[worst]!r}) = {got[worst]!r}: {errs[worst]:.3f} ulp > {bound}"


def test_erf_f32_dense(rng: np.random.Generator) -> None:
    """The f32 erf (``gpu_math.erf_f32``: two short polynomials, picked by a select) on 200,000 fresh inputs,
    dense near its branch boundary and where it turns to 1: within ``MEASURED_ULP`` (the worst over every f32 input,
    ``tools/erf_f32_sweep.py``) of scipy's float64 erf (1e-16 relative: exact at f32 ulps); odd, and its
    special values exact."""
    from scipy import special

    fit = gpu_math.ERF_F32
    x = np.concatenate(
        [
            rng.uniform(-4.5, 4.5, 100_000),
            rng.uniform(fit.boundary - 0.01, fit.boundary + 0.01, 40_000),
            rng.uniform(fit.one_from - 0.05, fit.one_from + 0.05, 20_000),
            np.exp(rng.uniform(-100, 0, 40_000)),
        ]
    ).astype(np.float32)
    got = gpu_math.evaluate("erf", "f32", x)
    want = special.erf(x.astype(np.float64))
    err = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))
    worst = int(np.argmax(err))
    assert err[worst] <= gpu_math.MEASURED_ULP["f32"]["erf"], f"erf({x[worst]!r}) = {got[worst]!r}: {err[worst]} ulp"
    assert (gpu_math.evaluate("erf", "f32", -x) == -got).all()
    edges = np.array([0.0, -0.0, 1e-45, -1e-45, np.inf, -np.inf, np.nan, 1e30], np.float32)
    got = gpu_math.evaluate("erf", "f32", edges)
    want = special.erf(edges.astype(np.float64)).astype(np.float32)
    assert ((got == want) | (np.isnan(got) & np.isnan(want))).all(), got
    assert (np.signbit(got) == np.signbit(edges))[~np.isnan(edges)].all()


@pytest.mark.parametrize("kind", ["f32", "f64"])
def test_pow_error(kind: str, rng: np.random.Generator) -> None:
    dt = np.float32 if kind == "f32" else np.float64
    x = np.exp(rng.uniform(-5, 5, 1500)).astype(dt)
    y = rng.uniform(-8, 8, 1500).astype(dt)
    got = gpu_math.evaluate("pow", kind, x, y)
    errs = ulp_errors(got, [x, y], mp.power, kind)
    worst = int(np.argmax(errs))
    bound = gpu_math.MEASURED_ULP[kind]["pow"]
    assert errs[worst] <= bound, f"{kind} pow({x[worst]!r}, {y[worst]!r}): {errs[worst]:.3f} ulp > {bound}"


@pytest.mark.parametrize("kind", ["f32", "f64"])
def test_special_values(kind: str) -> None:
    """NaN, infinities, zeros (with their signs), overflow and underflow, as numpy gives them."""
    dt = np.float32 if kind == "f32" else np.float64
    inf, nan = dt(np.inf), dt(np.nan)
    big = dt(100.0 if kind == "f32" else 800.0)
    x = np.array([nan, inf, -inf, 0.0, -0.0, big, -big, 1.0, -1.0], dt)
    with np.errstate(all="ignore"):
        for name, ref in (("exp", np.exp), ("log", np.log), ("tanh", np.tanh), ("sin", np.sin), ("cos", np.cos),
                          ("log1p", np.log1p)):  # fmt: skip
            got = gpu_math.evaluate(name, kind, x)
            want = ref(x)
            close = np.abs(got - want) <= 2 * np.abs(np.spacing(want))  # numpy's own f32 sin/cos are within 1 ulp
            same = (got == want) | (np.isnan(got) & np.isnan(want)) | close
            assert same.all(), (name, x[~same], got[~same], want[~same])
            zeros = want == 0
            assert (np.signbit(got[zeros]) == np.signbit(want[zeros])).all(), (name, x[zeros], got[zeros])
        from scipy import special

        got = gpu_math.evaluate("erf", kind, x)
        want = special.erf(x)
        close = np.abs(got - want) <= np.abs(np.spacing(want))
        assert ((got == want) | (np.isnan(got) & np.isnan(want)) | close).all(), (got, want)
        assert np.signbit(gpu_math.evaluate("erf", kind, np.array([-0.0], dt)))[0]


@pytest.mark.parametrize("kind", ["f32", "f64"])
def test_pow_special_cases(kind: str) -> None:
    """C99 pow: x**0 = 1, 1**y = 1, (-1)**(+-inf) = 1, negative bases need integral exponents, signed zeros."""
    dt = np.float32 if kind == "f32" else np.float64
    vals = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, np.inf, -np.inf, np.nan]
    xs, ys = np.meshgrid(np.array(vals, dt), np.array(vals, dt))
    xs, ys = xs.ravel(), ys.ravel()
    with np.errstate(all="ignore"):
        want = np.power(xs, ys)
    got = gpu_math.evaluate("pow", kind, xs, ys)
    ulps = 1 if kind == "f32" else 4  # exp(y log x): 3.0**-3 within a few ulp in f64
    with np.errstate(invalid="ignore"):
        close = np.isfinite(want) & (np.abs(got - want) <= ulps * np.abs(np.spacing(want)))
    same = (got == want) | (np.isnan(got) & np.isnan(want)) | close
    assert same.all(), list(zip(xs[~same], ys[~same], got[~same], want[~same], strict=True))
    assert (np.signbit(got[want == 0]) == np.signbit(want[want == 0])).all()


def test_constants_are_exact() -> None:
    """The decimal expansions of pi and ln 2 behind the Cody-Waite constants agree with mpmath to 80 digits."""
    from fractions import Fraction

    with mp.workdps(100):
        assert abs(gpu_math._PI - Fraction(mp.nstr(mp.pi, 95, strip_zeros=False))) < Fraction(1, 10**80)
        assert abs(gpu_math._LN2 - Fraction(mp.nstr(mp.log(2), 95, strip_zeros=False))) < Fraction(1, 10**80)
    assert gpu_math._P1 + gpu_math._P2 + gpu_math._P3 == pytest.approx(math.pi / 2, abs=0)
