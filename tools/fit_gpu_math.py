"""Regenerate the erf coefficients of ``picograd/target/gpu_math.py`` (needs mpmath; a development tool).

For ``1 <= |x| < X`` the GPU computes ``erf(x) = 1 - exp(-x*x) * t * h(u)`` with ``t = 1/|x|`` and ``u = (t - c) / w``
mapping ``t`` in ``[1/X, 1]`` onto ``[-1, 1]``, where ``h(t) = erfcx(1/t) / t`` (``erfcx(x) = exp(x*x) erfc(x)``, the
scaled complementary error function, which is smooth and bounded there: ``h`` goes from ``erfcx(1) = 0.4276`` at
``t = 1`` to ``1/sqrt(pi)`` as ``t -> 0``). ``h`` is approximated by the near-minimax polynomial of Chebyshev
interpolation (``mpmath.chebyfit``, 40 significant digits), written in powers of ``u``; its coefficients are small
(below 0.5), so Horner's rule in ``u`` is well conditioned.

Run ``python tools/fit_gpu_math.py`` and paste the printed tables over ``ERFC_F32``/``ERFC_F64``.
"""

from __future__ import annotations

import mpmath as mp

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


if __name__ == "__main__":
    main()
