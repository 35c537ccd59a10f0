"""Accurate elementary functions for the GPU, written once against an arithmetic interface.

PTX has ``ex2``/``lg2``/``sin``/``cos``/``tanh`` only as ``.approx.f32`` instructions (PTX ISA 8.0 section 9.7.3:
``ex2.approx`` and ``lg2.approx`` have about 2 ulp of error, ``sin.approx``/``cos.approx`` are accurate only on
``[-pi, pi]``, ``tanh.approx`` has a relative error of 2**-11) and has no f64 transcendentals at all. picograd's GPU
results are checked against numpy, so every function here is built from correctly rounded operations only
(``add``/``sub``/``mul``/``fma``/``div``/``sqrt`` ``.rn``, ``cvt.rni`` to integral, integer and bit operations):

- ``exp``: ``n = rint(x log2 e)``, ``r = x - n ln2`` by Cody and Waite's two-constant reduction with fused
  multiply-adds (W. J. Cody and W. Waite, *Software Manual for the Elementary Functions*, 1980; the first step is
  exact because ``x - n ln2_hi`` is representable), ``exp(r) = 1 + expm1(r)`` with the Taylor polynomial of
  ``expm1`` on ``|r| <= ln2/2`` (degree 7 for f32, whose truncation error ``(ln2/2)**8/8!`` is 0.04 ulp; degree 13
  for f64), and the scaling by ``2**n`` done exactly on the exponent bits in two steps (so subnormal results round
  once and ``n`` may exceed the exponent range of one factor).
- ``log``: ``x = 2**k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` from the exponent bits (subnormals scaled first),
  ``f = m - 1``, ``s = f / (2 + f)`` and ``log(1 + f) = 2 atanh(s) = f - (hfsq - s (hfsq + R(s*s)))`` with
  ``hfsq = f*f/2`` and ``R`` the Taylor series of ``2 atanh(s)/s - 2`` (the arrangement of Sun's fdlibm ``e_log.c``,
  K. C. Ng, 1993), plus ``k ln2`` in two parts (``ln2_hi`` has trailing zero bits, so ``k ln2_hi`` is exact).
- ``log1p``: ``u = 1 + x``, ``log1p(x) = x`` if ``u == 1`` else ``log(u) * x / (u - 1)`` (D. Goldberg, "What every
  computer scientist should know about floating-point arithmetic", ACM Computing Surveys 23(1), 1991, Theorem 4,
  after W. Kahan).
- ``tanh``: ``tanh |x| = e / (e + 2)`` with ``e = expm1(2|x|) = 2**n (1 + p) - 1`` computed as ``fma(2**n, p, 2**n -
  1)`` (exact ``2**n - 1``), so there is no cancellation for small ``|x|`` and none near 1 for large ``|x|``; 1 beyond
  the point where ``tanh`` rounds to 1; the sign of ``x`` is copied back (``tanh(-0) = -0``).
- ``sin``/``cos``: ``k = rint(x 2/pi)``, ``y = x - k pi/2`` as a double-double ``y0 + y1`` with pi/2 in three parts
  of 33, 33 and 53 bits (the "medium" reduction of fdlibm's ``__ieee754_rem_pio2``; exact products for
  ``|k| < 2**20``, i.e. ``|x| < 1.6e6``; beyond that the absolute error grows like ``|x| 2**-53``: Payne-Hanek
  reduction is not implemented), then the Taylor polynomials of ``sin`` and ``cos`` on ``|y| <= pi/4`` with the tail
  ``y1`` folded in to first order, chosen by the quadrant ``k mod 4``. f32 arguments are reduced and evaluated in
  f64 (the reduction needs more than 24 bits) and the result rounded once to f32.
- ``erf`` in f32 (``erf_f32``, the GELU's; the CPU JIT's too): two short branches, each straight-line code, and a
  select (a warp of a GELU's activations nearly always holds both kinds, so a branch would run both anyway). On
  ``|x| < 3/4`` ``erf(x) = x + x P(x*x)`` with ``P`` of degree 5; on ``3/4 <= |x|`` (clamped to 3.9192, where
  ``erf`` rounds to 1 and so does this) ``erf = 1 - 2**q`` with ``q = |x| R(|x|) ~ log2 erfc |x|`` (``R`` of degree
  5), and ``2**q = 2**n (1 + f E(f))`` for ``n = rint(q)`` (one fma ``|x| R + 1.5 * 2**23 + 127``, whose low bits are
  then the exponent field of ``2**n``) and ``f = |x| R - n`` (one fma, so ``f`` is rounded once near 0 rather than
  as ``q``), ``E`` of degree 5; the result is assembled as ``(1 - 2**n) - (2**n f) E(f)`` (both parts exact for
  ``n >= -24``, so only the final fma rounds a value near 1); the sign copied back. The
  approach of ``1 - exp(polynomial)`` beyond a small-argument odd polynomial is that of CUDA's ``erff`` (and of
  N. Juffa's published versions); the coefficients are picograd's own weighted minimax fits
  (``tools/fit_gpu_math.py``: Lawson's algorithm, coefficients rounded to f32 one at a time from the highest,
  refitting the rest). 29 SASS instructions an element (``bench/gelu_sass.py``), against 76 for the f64
  scheme below evaluated in f32; error over every f32 input 0.954 ulp (``tools/erf_f32_sweep.py``; the f64
  scheme in f32 measured 1.10 on 3 million samples).
- ``erf`` in f64: on ``|x| < 1`` the Taylor series ``2/sqrt(pi) sum (-1)**n x**(2n+1) / (n! (2n+1))`` (Abramowitz and
  Stegun 7.1.5; alternating terms below 1/3, so no cancellation); on ``1 <= |x| < X`` ``erf = 1 - exp(-x*x) t h(t)``
  with ``t = 1/|x|`` and ``h(t) = erfcx(1/t)/t`` approximated by a near-minimax polynomial from Chebyshev
  interpolation (``tools/fit_gpu_math.py``: degree 10 on ``[1, 4)`` for f32, error 7e-10; degree 26 on ``[1, 6)`` for
  f64, error 2e-18); 1 beyond ``X``, where ``erf`` rounds to 1. (Abramowitz and Stegun 7.1.26 has an absolute error
  of 1.5e-7, about 2 ulp of f32 near 1 but far worse relative error near 0: not used.)
- ``pow``: ``|x|**y = exp(y log|x|)`` in f64 (f32 arguments too), with C99/numpy's special cases (``x**0 = 1``,
  ``1**y = 1``, a negative base needs an integral exponent and gives the sign of ``x`` for odd ones, zero and
  infinite bases and exponents). The f64 result's relative error is about ``(|y log x| + 2) 2**-53``: a few ulp for
  moderate exponents, more for results near the ends of the f64 range (the log would need double-double
  precision). f32 results are within 1 ulp.

Measured errors (``tests/test_gpu_math.py`` evaluates these schemes with :class:`NumpyArith`, the same operation
sequence in numpy (fma emulated in wider precision), against mpmath/scipy on dense samples): see
``MEASURED_ULP``. ``tests/test_gpu_ops.py`` (GPU) checks the PTX results against the same emulation.

The interface (:class:`Arith`) is what :mod:`picograd.passes.to_ptx` implements on PTX registers; float values are
of one precision (``kind`` ``"f32"`` or ``"f64"``), integers of the same width (bit manipulation), predicates are
booleans.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, getcontext
from fractions import Fraction
from typing import Any, Generic, TypeVar

import numpy as np

V = TypeVar("V")  # a float value
I = TypeVar("I")  # noqa: E741 - an integer value of the float's width
P = TypeVar("P")  # a predicate

getcontext().prec = 80
_PI = Fraction(Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899863"))
_LN2 = Fraction(Decimal("0.69314718055994530941723212145817656807550013436025525412068000949339362196969471561"))
_LOG2E = 1 / _LN2

MEASURED_ULP: dict[str, dict[str, float]] = {
    # Bounds on the error in ulp of the correctly rounded result, asserted by tests/test_gpu_math.py on random
    # samples (worst seen over 3 x 4500 samples per function: f32 exp 0.98, log 0.74, tanh 2.10, sin/cos 0.50, log1p
    # 0.50, pow 0.50; f64 exp 0.88, log 0.76, tanh 2.33, erf 0.82, sin 0.70, cos 0.72, log1p 2.19, pow 29.2 for
    # |y log x| <= 40, i.e. about 0.75 (|y log x| + 1) ulp). f32 erf (erf_f32): 0.954 over every f32 input
    # (tools/erf_f32_sweep.py, bench/results/erf_f32_sweep.json), within CUDA's erff (2 ulp documented).
    "f32": {"exp": 1.0, "log": 1.0, "tanh": 2.5, "erf": 1.0, "sin": 1.0, "cos": 1.0, "log1p": 1.0, "pow": 1.0},
    "f64": {"exp": 1.0, "log": 1.0, "tanh": 2.5, "erf": 1.0, "sin": 1.0, "cos": 1.0, "log1p": 2.5, "pow": 40.0},
}
# The operator surface (issue 20), measured the same way against mpmath (tests/test_op_surface.py): f32 results are
# evaluated in f64 and within 0.5 ulp plus the final rounding; f64 worst seen 1 (log2 exp2 expm1 atan atan2) and 2
# (asin acos asinh acosh atanh) ulp.
for _name, _f64 in {"log2": 1.5, "exp2": 1.5, "expm1": 1.5, "atan": 1.5, "atan2": 1.5, "asin": 2.5, "acos": 2.5,
                    "asinh": 2.5, "acosh": 2.5, "atanh": 2.5}.items():  # fmt: skip
    MEASURED_ULP["f32"][_name] = 1.0
    MEASURED_ULP["f64"][_name] = _f64


@dataclass(frozen=True)
class Format:
    """An IEEE binary format: ``bits`` wide, ``mant`` fraction bits, exponent ``bias``."""

    kind: str
    bits: int
    mant: int
    bias: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.bits == 32 else np.float64)

    @property
    def int_dtype(self) -> np.dtype:
        return np.dtype(np.int32 if self.bits == 32 else np.int64)

    def round(self, value: Fraction | float) -> float:
        """``value`` rounded to nearest in this format (as a Python float)."""
        return float(self.dtype.type(float(value))) if self.bits == 32 else float(value)

    def split(self, value: Fraction, bits: int) -> tuple[float, Fraction]:
        """``value`` rounded to ``bits`` significant bits, and the exact remainder."""
        e = math.floor(math.log2(abs(value)))
        scale = Fraction(2) ** (bits - 1 - e)
        hi = Fraction(round(value * scale)) / scale
        return float(hi), value - hi

    def bits_of(self, value: float) -> int:
        """The bit pattern of ``value`` in this format (unsigned)."""
        return int(np.array(value, self.dtype).view(np.uint32 if self.bits == 32 else np.uint64))


F32 = Format("f32", 32, 23, 127)
F64 = Format("f64", 64, 52, 1023)
FORMATS = {"f32": F32, "f64": F64}


class Arith(Generic[V, I, P]):
    """Correctly rounded arithmetic on one float format (see the module docstring); subclasses implement it on PTX
    registers or numpy arrays."""

    fmt: Format

    # floats
    def c(self, value: float) -> V:
        raise NotImplementedError

    def add(self, a: V, b: V) -> V:
        raise NotImplementedError

    def sub(self, a: V, b: V) -> V:
        raise NotImplementedError

    def mul(self, a: V, b: V) -> V:
        raise NotImplementedError

    def fma(self, a: V, b: V, c: V) -> V:
        raise NotImplementedError

    def div(self, a: V, b: V) -> V:
        raise NotImplementedError

    def neg(self, a: V) -> V:
        raise NotImplementedError

    def abs(self, a: V) -> V:
        raise NotImplementedError

    def sqrt(self, a: V) -> V:
        raise NotImplementedError

    def rint(self, a: V) -> V:
        """Round to the nearest integral value, ties to even (``cvt.rni.f32.f32``)."""
        raise NotImplementedError

    # comparisons (ordered: false when an operand is NaN) and predicates
    def cmp(self, pred: str, a: V, b: V) -> P:
        """``pred`` in ``lt le gt ge eq ne`` (ordered) or ``nan`` (either operand is NaN)."""
        raise NotImplementedError

    def p_and(self, a: P, b: P) -> P:
        raise NotImplementedError

    def p_or(self, a: P, b: P) -> P:
        raise NotImplementedError

    def sel(self, p: P, a: V, b: V) -> V:
        raise NotImplementedError

    # integers of the float's width
    def ci(self, value: int) -> I:
        raise NotImplementedError

    def to_int(self, a: V) -> I:
        """Truncate to an integer (``cvt.rzi``: NaN gives 0, out-of-range values saturate)."""
        raise NotImplementedError

    def to_float(self, i: I) -> V:
        raise NotImplementedError

    def bits(self, a: V) -> I:
        raise NotImplementedError

    def from_bits(self, i: I) -> V:
        raise NotImplementedError

    def iadd(self, a: I, b: I) -> I:
        raise NotImplementedError

    def isub(self, a: I, b: I) -> I:
        raise NotImplementedError

    def iand(self, a: I, b: I) -> I:
        raise NotImplementedError

    def ior(self, a: I, b: I) -> I:
        raise NotImplementedError

    def shl(self, a: I, n: int) -> I:
        raise NotImplementedError

    def sar(self, a: I, n: int) -> I:
        """Arithmetic shift right."""
        raise NotImplementedError

    # precision changes (for f32 functions evaluated in f64)
    def widen(self, a: Any) -> Any:
        """An f32 value of the companion arithmetic as an f64 value of this one (exact)."""
        raise NotImplementedError

    def narrow(self, a: V) -> Any:
        """This f64 value rounded to f32."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


def horner(m: Arith, x: Any, coeffs: tuple[float, ...]) -> Any:
    """``coeffs[0] + x * (coeffs[1] + x * (...))`` with fused multiply-adds."""
    acc = m.c(coeffs[-1])
    for a in reversed(coeffs[:-1]):
        acc = m.fma(acc, x, m.c(a))
    return acc


def ldexp(m: Arith, x: Any, n: Any) -> Any:
    """``x * 2**n`` for an integer ``n`` with ``|n| <= 2 (bias - 1)``: two exact scalings by ``2**(n >> 1)`` and
    ``2**(n - (n >> 1))`` made from exponent bits, so only the last product rounds (subnormal results)."""
    f = m.fmt
    n1 = m.sar(n, 1)
    n2 = m.isub(n, n1)
    s1 = m.from_bits(m.shl(m.iadd(n1, m.ci(f.bias)), f.mant))
    s2 = m.from_bits(m.shl(m.iadd(n2, m.ci(f.bias)), f.mant))
    return m.mul(m.mul(x, s1), s2)


def copysign(m: Arith, mag: Any, sign: Any) -> Any:
    """``|mag|`` with the sign bit of ``sign`` (``mag`` must be non-negative)."""
    s = m.iand(m.bits(sign), m.ci(-(1 << (m.fmt.bits - 1))))
    return m.from_bits(m.ior(m.bits(mag), s))


def _exp_terms(fmt: Format) -> tuple[float, ...]:
    """Taylor coefficients ``1/k!`` for ``k = 2 ..`` of ``(expm1(r) - r) / r**2``."""
    last = 7 if fmt.bits == 32 else 13
    return tuple(fmt.round(Fraction(1, math.factorial(k))) for k in range(2, last + 1))


@dataclass(frozen=True)
class _ExpConsts:
    log2e: float
    ln2_hi: float
    ln2_lo: float
    terms: tuple[float, ...]


def _exp_consts(fmt: Format) -> _ExpConsts:
    hi, rest = fmt.split(_LN2, fmt.mant + 1)
    return _ExpConsts(fmt.round(_LOG2E), hi, fmt.round(rest), _exp_terms(fmt))


_EXP = {k: _exp_consts(f) for k, f in FORMATS.items()}


def _reduce_exp(m: Arith, x: Any) -> tuple[Any, Any]:
    """``n = rint(x log2 e)`` and ``r = x - n ln2`` (Cody-Waite with fma)."""
    k = _EXP[m.fmt.kind]
    n = m.rint(m.mul(x, m.c(k.log2e)))
    nn = m.neg(n)
    r = m.fma(nn, m.c(k.ln2_hi), x)
    r = m.fma(nn, m.c(k.ln2_lo), r)
    return n, r


def _expm1_poly(m: Arith, r: Any) -> Any:
    """``expm1(r)`` on ``|r| <= ln2/2`` (a bit beyond is fine): ``r + r*r*q(r)``."""
    q = horner(m, r, _EXP[m.fmt.kind].terms)
    return m.fma(m.mul(r, r), q, r)


# ---------------------------------------------------------------------------------------------------------------
# The functions


_EXP_CLAMP = {"f32": (-110.0, 90.0), "f64": (-760.0, 710.0)}


def exp(m: Arith, x: Any) -> Any:
    lo, hi = _EXP_CLAMP[m.fmt.kind]
    xc = m.sel(m.cmp("gt", x, m.c(hi)), m.c(hi), x)
    xc = m.sel(m.cmp("lt", xc, m.c(lo)), m.c(lo), xc)  # NaN compares false and stays
    n, r = _reduce_exp(m, xc)
    e = m.add(m.c(1.0), _expm1_poly(m, r))
    return ldexp(m, e, m.to_int(n))


_TANH_ONE = {"f32": 9.1, "f64": 19.1}  # tanh(x) rounds to 1 from here on


def tanh(m: Arith, x: Any) -> Any:
    a = m.abs(x)
    one = m.c(1.0)
    big = m.cmp("ge", a, m.c(_TANH_ONE[m.fmt.kind]))
    t = m.add(a, a)
    t = m.sel(big, m.c(1.0), t)  # keeps 2**n small where the result is 1 anyway
    n, r = _reduce_exp(m, t)
    p = _expm1_poly(m, r)
    s = ldexp(m, one, m.to_int(n))
    em = m.fma(s, p, m.sub(s, one))  # expm1(2|x|); s - 1 is exact
    y = m.div(em, m.add(em, m.c(2.0)))
    y = m.sel(big, one, y)
    return copysign(m, y, x)


def _log_consts(fmt: Format) -> tuple[float, float, tuple[float, ...], int]:
    hi, rest = fmt.split(_LN2, fmt.mant + 1 - (8 if fmt.bits == 32 else 11))  # k ln2_hi exact for |k| < 2**e_bits
    count = 4 if fmt.bits == 32 else 10
    terms = tuple(fmt.round(Fraction(2, 2 * k + 1)) for k in range(1, count + 1))  # 2 atanh(s)/s - 2 in s*s
    return hi, fmt.round(rest), terms, fmt.bits_of(math.sqrt(0.5))


_LOG = {k: _log_consts(f) for k, f in FORMATS.items()}


def log(m: Arith, x: Any) -> Any:
    f = m.fmt
    ln2_hi, ln2_lo, terms, sqrt_half = _LOG[f.kind]
    tiny = m.cmp("lt", x, m.c(2.0 ** (1 - f.bias)))  # subnormal (or zero, or negative: fixed at the end)
    scale = f.mant + 2
    xs = m.sel(tiny, m.mul(x, m.c(2.0**scale)), x)
    ix = m.isub(m.bits(xs), m.ci(sqrt_half))
    k = m.to_float(m.sar(ix, f.mant))
    k = m.sel(tiny, m.sub(k, m.c(float(scale))), k)
    mant = m.from_bits(m.iadd(m.iand(ix, m.ci((1 << f.mant) - 1)), m.ci(sqrt_half)))
    fr = m.sub(mant, m.c(1.0))
    s = m.div(fr, m.add(m.c(2.0), fr))
    z = m.mul(s, s)
    rr = m.mul(z, horner(m, z, terms))
    hfsq = m.mul(m.mul(m.c(0.5), fr), fr)
    inner = m.fma(s, m.add(hfsq, rr), m.mul(k, m.c(ln2_lo)))
    y = m.fma(k, m.c(ln2_hi), m.sub(fr, m.sub(hfsq, inner)))
    y = m.sel(m.cmp("eq", x, m.c(0.0)), m.c(-math.inf), y)
    y = m.sel(m.cmp("eq", x, m.c(math.inf)), m.c(math.inf), y)
    bad = m.p_or(m.cmp("lt", x, m.c(0.0)), m.cmp("nan", x, x))
    return m.sel(bad, m.c(math.nan), y)


def log1p(m: Arith, x: Any) -> Any:
    u = m.add(m.c(1.0), x)
    d = m.sub(u, m.c(1.0))
    y = m.mul(log(m, u), m.div(x, d))
    y = m.sel(m.cmp("eq", d, m.c(0.0)), x, y)
    return m.sel(m.cmp("eq", x, m.c(math.inf)), m.c(math.inf), y)


# sin / cos: pi/2 in three parts (33, 33, 53 bits), 2/pi, Taylor terms (f64 arithmetic)
_P1, _R1 = F64.split(_PI / 2, 33)
_P2, _R2 = F64.split(_R1, 33)
_P3 = float(_R2)
_TWO_OVER_PI = float(2 / _PI)


def _trig_terms(target: Format) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Taylor coefficients in ``z = y*y``: ``sin(y) = y + y z S(z)``, ``cos(y) = 1 - z/2 + z z C(z)``, long enough for
    ``|y| <= pi/4`` at ``target`` precision."""
    ks = 5 if target.bits == 32 else 9
    kc = 5 if target.bits == 32 else 8
    s = tuple(float(Fraction((-1) ** k, math.factorial(2 * k + 1))) for k in range(1, ks + 1))
    c = tuple(float(Fraction((-1) ** k, math.factorial(2 * k))) for k in range(2, kc + 1))
    return s, c


def _sincos(m: Arith, x: Any, target: Format) -> tuple[Any, Any, Any]:
    """(sin(y), cos(y), k) with ``x = k pi/2 + y``: ``m`` is f64 arithmetic."""
    k = m.rint(m.mul(x, m.c(_TWO_OVER_PI)))
    nk = m.neg(k)
    t = m.fma(nk, m.c(_P1), x)  # exact
    w = m.mul(k, m.c(_P2))  # exact
    r = m.sub(t, w)
    # TwoSum(t, -w): the exact rounding error of r
    bb = m.sub(r, t)
    err = m.add(m.sub(t, m.sub(r, bb)), m.sub(m.neg(w), bb))
    tail = m.fma(nk, m.c(_P3), err)
    y0 = m.add(r, tail)
    y1 = m.add(m.sub(r, y0), tail)
    s_terms, c_terms = _trig_terms(target)
    z = m.mul(y0, y0)
    # sin(y0 + y1) ~ y0 + y0 z S(z) + y1 (1 - z/2)
    hz = m.mul(m.c(0.5), z)
    sin_y = m.add(y0, m.fma(m.mul(y0, z), horner(m, z, s_terms), m.mul(y1, m.sub(m.c(1.0), hz))))
    # cos(y0 + y1) ~ 1 - z/2 + z z C(z) - y0 y1, with the rounding error of 1 - z/2 put back
    w1 = m.sub(m.c(1.0), hz)
    corr = m.sub(m.sub(m.c(1.0), w1), hz)
    cos_y = m.add(w1, m.add(corr, m.fma(m.mul(z, z), horner(m, z, c_terms), m.neg(m.mul(y0, y1)))))
    return sin_y, cos_y, k


def _quadrant(m: Arith, k: Any, q: int) -> Any:
    """Predicate ``k mod 4 == q``."""
    kq = m.iand(m.to_int(k), m.ci(3))
    return m.cmp("eq", m.to_float(kq), m.c(float(q)))


def sin(m: Arith, x: Any, target: Format | None = None) -> Any:
    s, c, k = _sincos(m, x, target or m.fmt)
    y = m.sel(_quadrant(m, k, 1), c, s)
    y = m.sel(_quadrant(m, k, 2), m.neg(s), y)
    y = m.sel(_quadrant(m, k, 3), m.neg(c), y)
    return m.sel(m.cmp("eq", x, m.c(0.0)), x, y)  # sin(-0) = -0


def cos(m: Arith, x: Any, target: Format | None = None) -> Any:
    s, c, k = _sincos(m, x, target or m.fmt)
    y = m.sel(_quadrant(m, k, 1), m.neg(s), c)
    y = m.sel(_quadrant(m, k, 2), m.neg(c), y)
    return m.sel(_quadrant(m, k, 3), s, y)


@dataclass(frozen=True)
class ErfcFit:
    """``h(t) = erfcx(1/t)/t`` on ``t`` in ``[1/upper, 1]`` as a polynomial in ``u = (t - center)/half_width``."""

    upper: float
    center: float
    half_width: float
    coeffs: tuple[float, ...]


# Generated by tools/fit_gpu_math.py (mpmath.chebyfit, 40 digits).
ERFC_F32 = ErfcFit(
    upper=4.0,
    center=0.625,
    half_width=0.375,
    coeffs=(
        0.4895247876335057,
        -0.06434461763200044,
        -0.0001820477325467644,
        0.0038022267462635264,
        -0.0015431775850939231,
        0.0003680008879681291,
        -2.839504707885861e-05,
        -2.5779828383544047e-05,
        1.8255979496103604e-05,
        -6.957703008127449e-06,
        1.280440759007427e-06,
    ),
)
ERFC_F64 = ErfcFit(
    upper=6.0,
    center=0.5833333333333334,
    half_width=0.4166666666666667,
    coeffs=(
        0.49666648512593864,
        -0.07128287792547401,
        -0.001936888067684339,
        0.0062197175875553425,
        -0.002669343031673527,
        0.0006408677496504928,
        -2.4390207321973774e-06,
        -9.303470423687909e-05,
        5.9516325732270594e-05,
        -2.3855596823370406e-05,
        5.899938989517464e-06,
        2.1354513036609536e-07,
        -1.2890953304935965e-06,
        9.23946558978962e-07,
        -4.4472604965288373e-07,
        1.5475799103584133e-07,
        -2.7655351935076825e-08,
        -1.3369806861697567e-08,
        1.7203157323327043e-08,
        -8.98944248990351e-09,
        3.575943150195838e-09,
        -2.9114286148039767e-09,
        1.6171927045530526e-09,
        4.221709426957562e-10,
        -7.255987971224593e-10,
        1.644435114523381e-10,
        1.4985885959316806e-11,
    ),
)


def _erf_taylor(fmt: Format) -> tuple[float, ...]:
    count = 11 if fmt.bits == 32 else 19
    two_over_sqrt_pi = 2 / Fraction(Decimal("1.77245385090551602729816748334114518279754945612238712821380779"))
    exact = [two_over_sqrt_pi * Fraction((-1) ** n, math.factorial(n) * (2 * n + 1)) for n in range(count)]
    exact[0] -= 1  # erf(a) = a + a * (2/sqrt(pi) - 1 + ...): the leading term is added exactly, last
    return tuple(fmt.round(c) for c in exact)


_ERF_TAYLOR = {k: _erf_taylor(f) for k, f in FORMATS.items()}


@dataclass(frozen=True)
class FastErf:
    """The f32 ``erf`` (see the module docstring): ``erf(a) = a + a P(a*a)`` below ``boundary`` (``small``: ``P``),
    ``1 - 2**q`` with ``q = a R(a)`` (``large``: ``R``) from there to ``one_from`` (where ``erf`` rounds to 1), and
    ``2**q = 2**n (1 + f E(f))`` with ``n = rint(q)``, ``f = q - n`` (``exp2``: ``E``); coefficients from the lowest
    power up."""

    boundary: float
    one_from: float
    small: tuple[float, ...]
    large: tuple[float, ...]
    exp2: tuple[float, ...]


# Generated by tools/fit_gpu_math.py (weighted minimax by Lawson's algorithm, f32 coefficients rounded greedily);
# max fit errors in f32 ulps of erf: P 0.070, R 0.059, E 0.023.
ERF_F32 = FastErf(
    boundary=0.75,
    one_from=3.919205904006958,
    small=(0.12837916612625122, -0.3761261999607086, 0.11283376812934875, -0.026834623888134956,
           0.005114345345646143, -0.0006749512394890189),
    large=(-1.6281296014785767, -0.9170536994934082, -0.1519855260848999, 0.033103786408901215,
           -0.004663466010242701, 0.0003117956221103668),
    exp2=(0.6931471824645996, 0.24022650718688965, 0.055503278970718384, 0.009618003852665424,
          0.001340026967227459, 0.00015476300904992968),
)  # fmt: skip
_EXP2_SHIFT = 1.5 * 2.0**23 + 127  # q + this rounds q to an integer n, and the low bits become n + 127


def erf_f32(m: Arith, x: Any) -> Any:
    """The f32 ``erf``: both branches are straight-line code (about 15 operations each) and a select picks one."""
    fit = ERF_F32
    a = m.abs(x)
    small = m.fma(a, horner(m, m.mul(a, a), fit.small), a)
    # the large branch on [boundary, one_from]: 1 at one_from (and for +-inf); a NaN stays (a min that ptxas makes
    # of this select propagates it) and flows through either branch
    al = m.sel(m.cmp("gt", a, m.c(fit.one_from)), m.c(fit.one_from), a)
    r = horner(m, al, fit.large)
    j = m.fma(al, r, m.c(_EXP2_SHIFT))  # _EXP2_SHIFT + rint(q) (ulp 1 there) for q = al r, -127 < q < 0
    n = m.sub(j, m.c(_EXP2_SHIFT))  # exact
    f = m.fma(al, r, m.neg(n))  # rounded once, near 0
    s = m.from_bits(m.shl(m.bits(j), 23))  # 2**n: the bits n + 127 shifted into the exponent field
    # 1 - 2**n 2**f = (1 - 2**n) - (2**n f) E(f) with 2**f = 1 + f E(f): 2**n f is exact, and so is 1 - 2**n but
    # where n < -24 (then erf rounds to 1 anyway), so the rounding errors of E are relative to 2**n f E(f), not to
    # 2**n 2**f
    large = m.fma(m.neg(m.mul(s, f)), horner(m, f, fit.exp2), m.sub(m.c(1.0), s))
    y = m.sel(m.cmp("lt", a, m.c(fit.boundary)), small, large)
    return copysign(m, y, x)


def erf(m: Arith, x: Any) -> Any:
    """``erf_f32`` in f32, ``erf_accurate`` in f64."""
    return erf_f32(m, x) if m.fmt.bits == 32 else erf_accurate(m, x)


def erf_accurate(m: Arith, x: Any) -> Any:
    """The f64 scheme (see the module docstring), in either precision: in f32 (the scheme before ``erf_f32``) it is
    within 1.1 ulp too, at 2.5 times the instructions; ``bench/gelu_sass.py --accurate-erf`` and
    ``bench/erf_cpu.py`` compare the two."""
    f = m.fmt
    fit = ERFC_F32 if f.bits == 32 else ERFC_F64
    a = m.abs(x)
    one = m.c(1.0)
    small = m.fma(a, horner(m, m.mul(a, a), _ERF_TAYLOR[f.kind]), a)
    ab = m.sel(m.cmp("lt", a, one), one, a)  # the large branch on [1, upper] only (no overflow, no 1/0)
    ab = m.sel(m.cmp("gt", ab, m.c(fit.upper)), m.c(fit.upper), ab)
    t = m.div(one, ab)
    u = m.fma(t, m.c(f.round(1 / fit.half_width)), m.c(f.round(-fit.center / fit.half_width)))
    h = horner(m, u, tuple(f.round(c) for c in fit.coeffs))
    erfc = m.mul(exp(m, m.neg(m.mul(ab, ab))), m.mul(t, h))
    large = m.sub(one, erfc)
    y = m.sel(m.cmp("lt", a, one), small, large)
    y = m.sel(m.cmp("ge", a, m.c(fit.upper)), one, y)
    y = m.sel(m.cmp("nan", x, x), x, y)
    return copysign(m, y, x)


def pow_(m: Arith, x: Any, y: Any) -> Any:
    """``x**y`` as C99 ``pow`` (f64 arithmetic; see the module docstring). The exponents 2, 1, -1 and 0.5 are exact
    (one correctly rounded ``mul``, ``div`` or ``sqrt``), as numpy's are."""
    one, zero, inf = m.c(1.0), m.c(0.0), m.c(math.inf)
    ax = m.abs(x)
    mag = exp(m, m.mul(y, log(m, ax)))
    ry = m.rint(y)
    half = m.mul(m.c(0.5), y)
    odd = m.p_and(m.cmp("eq", ry, y), m.cmp("ne", m.rint(half), half))  # false for NaN and +-inf
    res = m.sel(odd, copysign(m, mag, x), mag)  # a negative base (or -0, -inf) to an odd power is negative
    # (+-1)**y is 1 (also for y = +-inf), -1 for odd y
    res = m.sel(m.p_and(m.cmp("eq", ax, one), m.cmp("eq", y, y)), m.sel(odd, copysign(m, one, x), one), res)
    finite_y = m.cmp("eq", m.sub(y, y), zero)
    negative = m.p_and(m.cmp("lt", x, zero), m.cmp("gt", x, m.c(-math.inf)))
    res = m.sel(m.p_and(negative, m.p_and(finite_y, m.cmp("ne", ry, y))), m.c(math.nan), res)
    # exact small exponents
    res = m.sel(m.cmp("eq", y, m.c(2.0)), m.mul(x, x), res)
    res = m.sel(m.cmp("eq", y, one), x, res)
    res = m.sel(m.cmp("eq", y, m.c(-1.0)), m.div(one, x), res)
    root = m.sel(m.cmp("eq", x, m.c(-math.inf)), inf, m.add(m.sqrt(x), zero))  # sqrt(-0) + 0 = +0
    res = m.sel(m.cmp("eq", y, m.c(0.5)), root, res)
    res = m.sel(m.cmp("nan", x, x), x, res)
    res = m.sel(m.cmp("eq", x, one), one, res)
    return m.sel(m.cmp("eq", y, zero), one, res)


# ---------------------------------------------------------------------------------------------------------------
# More functions (the operator surface of issue 20): built from the ones above and correctly rounded operations.
# f32 arguments are evaluated in f64 and rounded once (F64_EVALUATED), so their error is that of the final rounding.


def log2(m: Arith, x: Any) -> Any:
    """``log(x) * log2(e)`` (the product adds half an ulp to ``log``'s error)."""
    return m.mul(log(m, x), m.c(m.fmt.round(_LOG2E)))


def exp2(m: Arith, x: Any) -> Any:
    """``2**x = 2**n exp(r ln2)`` with ``n = rint(x)`` and ``r = x - n`` exact, ``|r| <= 1/2``."""
    lo, hi = _EXP_CLAMP[m.fmt.kind]
    xc = m.sel(m.cmp("gt", x, m.c(hi * 1.5)), m.c(hi * 1.5), x)
    xc = m.sel(m.cmp("lt", xc, m.c(lo * 1.5)), m.c(lo * 1.5), xc)  # NaN compares false and stays
    n = m.rint(xc)
    r = m.mul(m.sub(xc, n), m.c(m.fmt.round(_LN2)))
    return ldexp(m, exp(m, r), m.to_int(n))


def expm1(m: Arith, x: Any) -> Any:
    """``2**n (1 + p) - 1`` as ``fma(2**n, p, 2**n - 1)`` (``p = expm1(r)``, ``2**n - 1`` exact), as in ``tanh``:
    no cancellation for small ``|x|``, and ``-1`` once ``2**n`` underflows."""
    lo, hi = _EXP_CLAMP[m.fmt.kind]
    xc = m.sel(m.cmp("gt", x, m.c(hi)), m.c(hi), x)
    xc = m.sel(m.cmp("lt", xc, m.c(lo)), m.c(lo), xc)
    n, r = _reduce_exp(m, xc)
    p = _expm1_poly(m, r)
    one = m.c(1.0)
    s = ldexp(m, one, m.to_int(n))
    return m.fma(s, p, m.sub(s, one))


def _atan_consts() -> tuple[tuple[float, float], ...]:
    """(hi, lo) of atan(1/2), atan(1), atan(3/2), atan(inf) = pi/2 (atan by its Taylor series in Fractions)."""

    def series(t: Fraction, terms: int) -> Fraction:
        return sum((Fraction((-1) ** k, 2 * k + 1) * t ** (2 * k + 1) for k in range(terms)), Fraction(0))

    half = series(Fraction(1, 2), 60)
    values = [half, _PI / 4, _PI / 2 - series(Fraction(2, 3), 120), _PI / 2]
    return tuple((float(v), float(v - Fraction(float(v)))) for v in values)


_ATAN_OFFSETS = _atan_consts()
_ATAN_TERMS = tuple(1.0 / (2 * k + 1) * (-1) ** k for k in range(1, 26))  # atan(t)/t - 1 = z q(z), z = t*t


def atan(m: Arith, x: Any) -> Any:
    """fdlibm's ``s_atan.c`` reduction (|x| < 7/16: as is; then around 1/2, 1, 3/2 and infinity: ``t = (x - c) / (1
    + c x)``, ``atan x = atan c + atan t``, ``|t| <= 7/16``) and the Taylor series of ``atan t`` (25 terms: the
    truncation error is below 2**-60 on ``|t| <= 7/16``). Meant for f64 arithmetic."""
    a = m.abs(x)
    one, two = m.c(1.0), m.c(2.0)
    t = m.div(m.c(-1.0), a)  # |x| >= 39/16 (and NaN)
    hi, lo = m.c(_ATAN_OFFSETS[3][0]), m.c(_ATAN_OFFSETS[3][1])
    branches = [
        (39 / 16, m.div(m.sub(a, m.c(1.5)), m.fma(m.c(1.5), a, one)), _ATAN_OFFSETS[2]),
        (19 / 16, m.div(m.sub(a, one), m.add(a, one)), _ATAN_OFFSETS[1]),
        (11 / 16, m.div(m.fma(two, a, m.c(-1.0)), m.add(two, a)), _ATAN_OFFSETS[0]),
        (7 / 16, a, (0.0, 0.0)),
    ]
    for bound, tb, (h, low) in branches:
        below = m.cmp("lt", a, m.c(bound))
        t = m.sel(below, tb, t)
        hi, lo = m.sel(below, m.c(h), hi), m.sel(below, m.c(low), lo)
    z = m.mul(t, t)
    y = m.fma(m.mul(t, z), horner(m, z, _ATAN_TERMS), t)
    return copysign(m, m.add(hi, m.add(lo, y)), x)


def atan2(m: Arith, y: Any, x: Any) -> Any:
    """``atan(min/max)`` of ``|y|, |x|`` (so the argument is at most 1), ``pi/2 -`` it where ``|y| > |x|``, ``pi -``
    it where ``x`` is negative (or -0), with the sign of ``y``; C99's special cases (zeros, infinities, NaN)."""
    ax, ay = m.abs(x), m.abs(y)
    steep = m.cmp("gt", ay, ax)
    num, den = m.sel(steep, ax, ay), m.sel(steep, ay, ax)
    q = m.div(num, den)
    q = m.sel(m.cmp("eq", den, m.c(0.0)), m.c(0.0), q)  # both zero
    q = m.sel(m.p_and(m.cmp("eq", num, m.c(math.inf)), m.cmp("eq", den, m.c(math.inf))), m.c(1.0), q)
    a = atan(m, q)
    a = m.sel(steep, m.add(m.c(_ATAN_OFFSETS[3][0]), m.sub(m.c(_ATAN_OFFSETS[3][1]), a)), a)
    pi_hi, pi_lo = 2 * _ATAN_OFFSETS[3][0], 2 * _ATAN_OFFSETS[3][1]
    negative_x = m.cmp("lt", copysign(m, m.c(1.0), x), m.c(0.0))
    a = m.sel(negative_x, m.add(m.c(pi_hi), m.sub(m.c(pi_lo), a)), a)
    r = copysign(m, a, y)
    return m.sel(m.p_or(m.cmp("nan", x, x), m.cmp("nan", y, y)), m.add(x, y), r)


def asin(m: Arith, x: Any) -> Any:
    """``atan2(x, sqrt((1 - x)(1 + x)))`` (NaN outside [-1, 1], from the square root)."""
    one = m.c(1.0)
    return atan2(m, x, m.sqrt(m.mul(m.sub(one, x), m.add(one, x))))


def acos(m: Arith, x: Any) -> Any:
    """``atan2(sqrt((1 - x)(1 + x)), x)``."""
    one = m.c(1.0)
    return atan2(m, m.sqrt(m.mul(m.sub(one, x), m.add(one, x))), x)


_HUGE = 2.0**28  # beyond this, sqrt(x*x + 1) rounds to |x| in f64: asinh/acosh are log(2|x|)


def asinh(m: Arith, x: Any) -> Any:
    """``log1p(a + a*a / (1 + sqrt(1 + a*a)))`` with ``a = |x|`` (no cancellation), ``log(a) + ln2`` for huge ``a``;
    the sign of ``x`` copied back."""
    a = m.abs(x)
    one = m.c(1.0)
    a2 = m.mul(a, a)
    small = log1p(m, m.add(a, m.div(a2, m.add(one, m.sqrt(m.add(one, a2))))))
    big = m.add(log(m, a), m.c(m.fmt.round(_LN2)))
    return copysign(m, m.sel(m.cmp("gt", a, m.c(_HUGE)), big, small), x)


def acosh(m: Arith, x: Any) -> Any:
    """``log1p(t + sqrt(2t + t*t))`` with ``t = x - 1`` (exact near 1), ``log(x) + ln2`` for huge ``x``; NaN below 1."""
    t = m.sub(x, m.c(1.0))
    small = log1p(m, m.add(t, m.sqrt(m.fma(t, t, m.add(t, t)))))
    big = m.add(log(m, x), m.c(m.fmt.round(_LN2)))
    return m.sel(m.cmp("gt", x, m.c(_HUGE)), big, small)


def atanh(m: Arith, x: Any) -> Any:
    """``log1p(2a / (1 - a)) / 2`` with ``a = |x|``, the sign of ``x`` copied back (inf at 1, NaN beyond)."""
    a = m.abs(x)
    y = m.mul(m.c(0.5), log1p(m, m.div(m.add(a, a), m.sub(m.c(1.0), a))))
    return copysign(m, y, x)


# ---------------------------------------------------------------------------------------------------------------
# numpy evaluation of the same operation sequence


class NumpyArith(Arith[np.ndarray, np.ndarray, np.ndarray]):
    """:class:`Arith` on numpy arrays, each operation rounded as the GPU rounds it: numpy's float32/float64 add,
    mul, div and sqrt are IEEE round-to-nearest; ``fma`` is computed in wider precision (f64 for f32, numpy's
    ``longdouble`` for f64: exact products when it has a 64-bit significand, as on x86) and rounded once more,
    which differs from a true fma only in rare double-rounding cases; ``to_int`` follows ``cvt.rzi`` (NaN gives 0,
    saturation)."""

    def __init__(self, fmt: Format):
        self.fmt = fmt
        self.dt = fmt.dtype
        self.it = fmt.int_dtype

    def _f(self, a: Any) -> np.ndarray:
        return np.asarray(a, self.dt)

    def c(self, value: float) -> np.ndarray:
        return np.asarray(value, self.dt)

    def add(self, a, b):
        return self._f(a) + self._f(b)

    def sub(self, a, b):
        return self._f(a) - self._f(b)

    def mul(self, a, b):
        return self._f(a) * self._f(b)

    def fma(self, a, b, c):
        wide = np.float64 if self.fmt.bits == 32 else np.longdouble
        r = np.asarray(a, wide) * np.asarray(b, wide) + np.asarray(c, wide)
        return r.astype(self.dt)

    def div(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._f(a) / self._f(b)

    def neg(self, a):
        return -self._f(a)

    def abs(self, a):
        return np.abs(self._f(a))

    def sqrt(self, a):
        with np.errstate(invalid="ignore"):
            return np.sqrt(self._f(a))

    def rint(self, a):
        return np.rint(self._f(a))

    def cmp(self, pred, a, b):
        a, b = self._f(a), self._f(b)
        if pred == "nan":
            return np.isnan(a) | np.isnan(b)
        ordered = ~(np.isnan(a) | np.isnan(b))
        table = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal}
        if pred == "ne":
            return ordered & (a != b)
        return table[pred](a, b)

    def p_and(self, a, b):
        return np.logical_and(a, b)

    def p_or(self, a, b):
        return np.logical_or(a, b)

    def sel(self, p, a, b):
        return np.where(p, self._f(a), self._f(b)).astype(self.dt)

    def ci(self, value):
        return np.asarray(value, self.it)

    def to_int(self, a):
        a = self._f(a)
        info = np.iinfo(self.it)
        clipped = np.clip(np.trunc(np.nan_to_num(a, nan=0.0)), info.min, info.max)
        return np.where(np.isnan(a), 0, clipped).astype(self.it)

    def to_float(self, i):
        return np.asarray(i, self.it).astype(self.dt)

    def bits(self, a):
        return np.ascontiguousarray(self._f(a)).view(self.it)

    def from_bits(self, i):
        return np.ascontiguousarray(np.asarray(i, self.it)).view(self.dt)

    def iadd(self, a, b):
        return (np.asarray(a, self.it) + np.asarray(b, self.it)).astype(self.it)

    def isub(self, a, b):
        return (np.asarray(a, self.it) - np.asarray(b, self.it)).astype(self.it)

    def iand(self, a, b):
        return np.asarray(a, self.it) & np.asarray(b, self.it)

    def ior(self, a, b):
        return np.asarray(a, self.it) | np.asarray(b, self.it)

    def shl(self, a, n):
        return np.left_shift(np.asarray(a, self.it), n).astype(self.it)

    def sar(self, a, n):
        return np.right_shift(np.asarray(a, self.it), n)

    def widen(self, a):
        return np.asarray(a, np.float32).astype(np.float64)

    def narrow(self, a):
        return np.asarray(a, np.float64).astype(np.float32)


def evaluate(name: str, kind: str, *args: np.ndarray) -> np.ndarray:
    """The GPU's result of function ``name`` (``exp log log1p tanh erf sin cos pow``) on ``args`` in precision ``kind``,
    computed by :class:`NumpyArith` with the operation sequence the PTX lowering emits."""
    with np.errstate(all="ignore"):
        if kind == "f32" and name in F64_EVALUATED:
            m64 = NumpyArith(F64)
            wide = [m64.widen(a) for a in args]
            if name in ("sin", "cos"):
                return m64.narrow(FUNCTIONS[name](m64, *wide, target=F32))
            return m64.narrow(FUNCTIONS[name](m64, *wide))
        m = NumpyArith(FORMATS[kind])
        return FUNCTIONS[name](m, *(m._f(a) for a in args))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exp": exp,
    "log": log,
    "log1p": log1p,
    "tanh": tanh,
    "erf": erf,
    "sin": sin,
    "cos": cos,
    "pow": pow_,
    # the operator surface (issue 20)
    "log2": log2,
    "exp2": exp2,
    "expm1": expm1,
    "atan": atan,
    "atan2": atan2,
    "asin": asin,
    "acos": acos,
    "asinh": asinh,
    "acosh": acosh,
    "atanh": atanh,
}
F64_EVALUATED = (
    "sin",
    "cos",
    "pow",
    "log1p",
    "log2",
    "exp2",
    "expm1",
    "atan",
    "atan2",
    "asin",
    "acos",
    "asinh",
    "acosh",
    "atanh",
)
"""f32 functions evaluated in f64 arithmetic and rounded once (the argument reduction of sin/cos needs more than
24 bits; pow's ``y log x`` needs more than 24 bits to give an f32 result within 1 ulp)."""
