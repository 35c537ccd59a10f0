"""Regenerate the erf coefficients of ``picograd/target/gpu_math.py`` (needs mpmath; a development tool).

For ``1 <= |x| < X`` the GPU computes ``erf(x) = 1 - exp(-x*x) * t * h(u)`` with ``t = 1/|x|`` and ``u = (t - c) / w``
mapping ``t`` in ``[1/X, 1]`` onto ``[-1, 1]``, where ``h(t) = erfcx(1/t) / t`` (``erfcx(x) = exp(x*x) erfc(x)``, the
scaled complementary error function, which is smooth and bounded there: ``h`` goes from ``erfcx(1) = 0.4276`` at
``t = 1`` to ``1/sqrt(pi)`` as ``t -> 0``). ``h`` is approximated by the near-minimax polynomial of Chebyshev
interpolation (``mpmath.chebyfit``, 40 significant digits), written in powers of ``u``; its coefficients are small
(below 0.5), so Horner's rule in ``u`` is well conditioned.

The f32 erf (``gpu_math.erf_f32``, ``ERF_F32``) is fitted separately (float64 numpy and scipy, :func:`fit_erf_f32`):
three polynomials, each a weighted minimax fit (Lawson's algorithm) whose weight turns its error into f32 ulps of
``erf``, with coefficients rounded to f32 one at a time from the highest power, refitting the lower ones.

Run ``python tools/fit_gpu_math.py`` and paste the printed tables over ``ERFC_F32``/``ERFC_F64``/``ERF_F32``
(``ERFC_F32`` serves ``gpu_math.erf_accurate`` in f32, which only the comparisons of ``bench/`` use now).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np

mp.mp.dps = 40

# (name, X, degree, numpy-free rounding of the coefficients)
FITS = (("ERFC_F32", 4, 10), ("ERFC_F64", 6, 26))


def h(t: mp.mpf) -> mp.mpf:
    x = 1 / t
    return mp.erfc(x) * mp.exp(x * x) / t


def main() -> None:
    for name, upper, degree in FITS:
        lo = mp.mpf(1) / upper
        c, w = (1 + lo) / 2, (1 - lo) / 2
        poly, err = mp.chebyfit(lambda u, c=c, w=w: h(c + w * u), [-1, 1], degree + 1, error=True)
        coeffs = list(reversed(poly))  # chebyfit gives the highest power first
        print(
            f"# |x| in [1, {upper}): t = 1/|x| in [{mp.nstr(lo, 6)}, 1], u = (t - {mp.nstr(c, 17)}) / {mp.nstr(w, 17)}"
        )
        print(f"# max |h - poly| = {mp.nstr(err, 3)} (degree {degree})")
        print(f"{name} = ErfcFit(")
        print(f"    upper={upper}.0,")
        print(f"    center={float(c)!r},")
        print(f"    half_width={float(w)!r},")
        print("    coeffs=(")
        for a in coeffs:
            print(f"        {float(a)!r},")
        print("    ),")
        print(")")


# ---------------------------------------------------------------------------------------------------------------
# The f32 erf (gpu_math.ERF_F32): two short polynomials, each fitted by weighted minimax and rounded to f32


def lawson(xs: np.ndarray, f: np.ndarray, w: np.ndarray, degree: int, iters: int = 400) -> tuple[np.ndarray, float]:
    """The polynomial ``c[0] + c[1] x + ... + c[degree] x**degree`` minimizing ``max |w (f - p)|`` on the points
    ``xs``: Lawson's algorithm (iteratively reweighted least squares, C. L. Lawson, 1961), which converges to the
    minimax (Chebyshev) fit on a discrete set. Returns the coefficients and the weighted error reached."""
    a = np.vander(xs, degree + 1, increasing=True)
    lw = np.full(len(xs), 1.0 / len(xs))
    for _ in range(iters):
        sw = np.sqrt(lw) * w
        c = np.linalg.lstsq(a * sw[:, None], sw * f, rcond=None)[0]
        r = np.abs(w * (f - a @ c))
        lw = lw * r + 1e-300
        lw /= lw.sum()
    return c, float(r.max())


def fit_f32(xs: np.ndarray, f: np.ndarray, w: np.ndarray, degree: int) -> tuple[tuple[float, ...], float]:
    """A minimax fit whose coefficients are f32 numbers: the highest coefficient is rounded to f32, the lower ones
    refitted with it fixed, and so on down (the greedy rounding of N. Brisebarre, J.-M. Muller and A. Tisserand,
    "Computing machine-efficient polynomial approximations", ACM TOMS 32(2), 2006, section 1, which loses far less
    than rounding all at once). Returns ``(c0, ..., c_degree)`` and the weighted error of the last fit."""
    fixed: list[float] = []  # the highest powers first
    err = 0.0
    for k in range(degree + 1):
        rest = f - sum(c * xs ** (degree - i) for i, c in enumerate(fixed))
        c, err = lawson(xs, rest, w, degree - k)
        fixed.append(float(np.float32(c[-1])))
    return tuple(reversed(fixed)), err


def chebyshev_points(lo: float, hi: float, n: int = 6000) -> np.ndarray:
    return np.cos(np.linspace(0, np.pi, n)) * (hi - lo) / 2 + (hi + lo) / 2


def fit_erf_f32() -> dict[str, object]:
    """The fits of ``gpu_math.ERF_F32`` (float64 numpy; errors in f32 ulps of the result, before the rounding of
    the evaluation: ``tools/erf_f32_sweep.py`` measures the whole scheme)."""
    from scipy import special

    ulp = 2.0**-24  # of erf's results in [0.5, 1), where the large branch lands (erf(0.75) = 0.71)
    one_from = float(np.nextafter(np.float32(3.9), np.float32(4)))
    while np.float32(special.erf(one_from)) != 1:  # the least f32 whose erf rounds to 1 in f32
        one_from = float(np.nextafter(np.float32(one_from), np.float32(4)))
    # |x| < B: erf(x) = x + x P(x*x); the error of P is an error of erf relative to x (about 1.13 erf(x))
    x = chebyshev_points(0.0, ERF_F32_BOUNDARY)
    x = x[x > 1e-3]
    s = x * x
    small, small_err = fit_f32(s, special.erf(x) / x - 1, x / special.erf(x) / 2.0**-24, ERF_F32_DEGREES[0])
    # B <= |x| < one_from: erf(x) = 1 - 2**q(x) with q = log2(erfc): an error d of q is one of d ln2 erfc(x) in erf
    t = chebyshev_points(ERF_F32_BOUNDARY, one_from)
    e = special.erfc(t)
    # q(x) = x R(x) (q(0) = 0, and the fit loses nothing by it): f = q - n is then one fma, exact but for rounding
    large, large_err = fit_f32(t, np.log2(e) / t, t * e * math.log(2) / ulp, ERF_F32_DEGREES[1] - 1)
    # 2**f = 1 + f E(f) on |f| <= 1/2: erf = (1 - 2**n) - 2**n f E(f), so an error d of E is one of 2**n f d in erf,
    # with 2**n <= sqrt(2) erfc(B)
    f = chebyshev_points(-0.5, 0.5)
    f = f[np.abs(f) > 1e-6]
    weight = math.sqrt(2) * special.erfc(ERF_F32_BOUNDARY) * np.abs(f) / ulp
    exp2, exp2_err = fit_f32(f, np.expm1(f * math.log(2)) / f, weight, ERF_F32_DEGREES[2] - 1)
    return {
        "one_from": one_from,
        "small": small,
        "large": large,
        "exp2": exp2,
        "errors": (small_err, large_err, exp2_err),
    }


ERF_F32_BOUNDARY = 0.75  # the small branch below, the large one from here on
ERF_F32_DEGREES = (5, 6, 6)  # of P (in x*x), q and 2**f


def print_erf_f32() -> None:
    fit = fit_erf_f32()
    small_err, large_err, exp2_err = fit["errors"]  # type: ignore[misc]
    print(f"# tools/fit_gpu_math.py: max fit errors in f32 ulps of erf: P {small_err:.3f}, q {large_err:.3f}, "
          f"2**f {exp2_err:.3f}")  # fmt: skip
    print("ERF_F32 = FastErf(")
    print(f"    boundary={ERF_F32_BOUNDARY!r},")
    print(f"    one_from={fit['one_from']!r},")
    for key in ("small", "large", "exp2"):
        print(f"    {key}=(" + ", ".join(repr(c) for c in fit[key]) + "),")  # type: ignore[attr-defined]
    print(")")


if __name__ == "__main__":
    main()
    print_erf_f32()
