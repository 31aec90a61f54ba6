"""Branch-free exp, log and normal CDF that LLVM can vectorise inside numba loops.

numba compiles ``math.exp``, ``math.log`` and ``math.erfc`` to scalar libm calls, which stop the loop
vectoriser: a kernel over a million options then runs one option per instruction while numpy's own
SIMD ``exp``/``log`` run eight. These versions are plain arithmetic (polynomials, a rational function,
IEEE bit manipulation through two one-instruction LLVM bitcasts), so a loop that inlines them
compiles to AVX2/AVX-512 code. They need ``error_model="numpy"`` on the calling kernel: numba's
default inserts a zero-division check before every float division, and that branch alone defeats
vectorisation.

Accuracy (checked in ``tests/greeks/test_simd_special.py`` against mpmath): ``vexp`` and ``vlog`` within 3
ulps, ``verfc`` within 6 ulps wherever the result is a normal number.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from optmm._jit import python_meaning


@intrinsic
def _f2i(typingctx, x):  # pragma: no cover - compiled
    """The IEEE-754 bits of a float64, as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@python_meaning(_f2i)
def _f2i_py(x: float) -> np.int64:
    """:func:`_f2i` run by the interpreter."""
    return np.float64(x).view(np.int64)


@intrinsic
def _i2f(typingctx, x):  # pragma: no cover - compiled
    """The float64 whose IEEE-754 bits are the given int64."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@python_meaning(_i2f)
def _i2f_py(x: int) -> np.float64:
    """:func:`_i2f` run by the interpreter."""
    return np.int64(x).view(np.float64)


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = math.sqrt(2.0)


@njit(cache=True, inline="always", error_model="numpy")
def vexp2(hi: float, lo: float) -> float:
    """``exp(hi + lo)`` without rounding ``hi + lo`` first (``lo`` is a small correction).

    Within 3 ulps; 0 below -1400 (denormal results kept), inf above ~709.8.
    """
    x = min(max(hi + lo, -1400.0), 709.9)
    n = math.floor(x * _LOG2E + 0.5)
    hi = min(max(hi, -1500.0), 800.0)  # keeps r finite when x was clamped (the result is then 0/inf)
    r = ((hi - n * _LN2_HI) + lo) - n * _LN2_LO  # |r| <= ln2 / 2 (up to rounding)
    # Taylor series to r**13: truncation error < 4e-18 on |r| <= 0.347.
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2**n in two factors, so that results down to the smallest denormal come out right.
    k = int(n)
    h = k >> 1
    return p * _i2f((h + 1023) << 52) * _i2f((k - h + 1023) << 52)


@njit(cache=True, inline="always", error_model="numpy")
def vexp(x: float) -> float:
    """``exp(x)`` within 3 ulps, 0 below -1400 (denormal results kept), inf above ~709.8."""
    return vexp2(x, 0.0)


@njit(cache=True, inline="always", error_model="numpy")
def vlog(x: float) -> float:
    """``log(x)`` to within 2 ulps for positive normal ``x``."""
    bits = _f2i(x)
    e = (bits >> 52) - 1023
    m = _i2f((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m  # now in [sqrt(1/2), sqrt(2)]
    e = e + 1 if big else e
    f = (m - 1.0) / (m + 1.0)  # log m = 2 atanh f, |f| <= 0.1716
    s = f * f
    p = 1.0 / 23.0
    p = p * s + 1.0 / 21.0
    p = p * s + 1.0 / 19.0
    p = p * s + 1.0 / 17.0
    p = p * s + 1.0 / 15.0
    p = p * s + 1.0 / 13.0
    p = p * s + 1.0 / 11.0
    p = p * s + 1.0 / 9.0
    p = p * s + 1.0 / 7.0
    p = p * s + 1.0 / 5.0
    p = p * s + 1.0 / 3.0
    ef = float(e)
    return ef * _LN2_HI + ((2.0 * f + 2.0 * f * (s * p)) + ef * _LN2_LO)


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# 631-638; coefficients as in his SPECFUN routine CALERF (netlib), three ranges of |x|.
_A0, _A1, _A2, _A3, _A4 = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B0, _B1, _B2, _B3 = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7 = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_P0, _P1, _P2, _P3, _P4, _P5 = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q0, _Q1, _Q2, _Q3, _Q4 = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_INV_SQRT_PI = 0.56418958354775628695


@njit(cache=True, inline="always", error_model="numpy")
def verfc_exp(x: float) -> tuple[float, float]:
    """``(erfc(x), exp(-x^2))``: all three of Cody's ranges are evaluated and one is selected.

    The Gaussian factor is computed for every range anyway, and is the normal density the Greeks
    need: returning it saves them an exp.

    Each range is brought to one numerator and one denominator, so the whole function costs a
    single division (divisions, not multiplications, bound the vectorised loop's speed).
    """
    y = min(abs(x), 28.0)  # erfc(28) underflows to 0: clamping changes nothing and avoids inf - inf
    ysq = y * y
    # |x| <= 0.46875: erfc(x) = 1 - x A(x^2) / B(x^2)
    num = (((_A4 * ysq + _A0) * ysq + _A1) * ysq + _A2) * ysq + _A3
    den = (((ysq + _B0) * ysq + _B1) * ysq + _B2) * ysq + _B3
    n_small = den - x * num
    d_small = den
    # 0.46875 < |x| <= 4: erfc(y) = exp(-y^2) C(y) / D(y)
    n_mid = (((((((_C8 * y + _C0) * y + _C1) * y + _C2) * y + _C3) * y + _C4) * y + _C5) * y + _C6) * y + _C7
    d_mid = (((((((y + _D0) * y + _D1) * y + _D2) * y + _D3) * y + _D4) * y + _D5) * y + _D6) * y + _D7
    # |x| > 4: erfc(y) = exp(-y^2) / y (1/sqrt(pi) - z P(z) / Q(z)), z = 1/y^2. With P and Q of
    # degree 5 multiplied through by y^10 they become polynomials in y^2 with reversed coefficients.
    p_rev = ((((_P4 * ysq + _P3) * ysq + _P2) * ysq + _P1) * ysq + _P0) * ysq + _P5
    q_rev = ((((_Q4 * ysq + _Q3) * ysq + _Q2) * ysq + _Q1) * ysq + _Q0) * ysq + 1.0
    n_big = _INV_SQRT_PI * ysq * q_rev - p_rev
    d_big = y * ysq * q_rev
    # exp(-y^2) as exp(-u^2 - (y - u)(y + u)) with u = y rounded down to 1/16: u^2 is exact and
    # the two parts are never added in floating point, so the rounding of y^2 (which exp would
    # amplify by y^2) never enters.
    u = math.floor(y * 16.0) / 16.0
    e = vexp2(-u * u, -(y - u) * (y + u))
    is_small = y <= 0.46875
    num = n_small if is_small else e * (n_mid if y <= 4.0 else n_big)
    den = d_small if is_small else (d_mid if y <= 4.0 else d_big)
    res = num / den
    return (2.0 - res if (x < 0.0 and not is_small) else res), e


@njit(cache=True, inline="always", error_model="numpy")
def verfc(x: float) -> float:
    """Complementary error function (see ``verfc_exp``)."""
    return verfc_exp(x)[0]


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, inline="always", error_model="numpy")
def vnorm_cdf(z: float) -> float:
    """Standard normal CDF, ``erfc(-z / sqrt(2)) / 2``: full relative precision in the left tail."""
    return 0.5 * verfc(-z * _INV_SQRT2)


@njit(cache=True, inline="always", error_model="numpy")
def vnorm_cdf_pdf(z: float) -> tuple[float, float]:
    """``(N(z), n(z))`` for the price of one exp: ``n(z) = exp(-(z / sqrt 2)^2) / sqrt(2 pi)``."""
    c, e = verfc_exp(-z * _INV_SQRT2)
    return 0.5 * c, _INV_SQRT_2PI * e
