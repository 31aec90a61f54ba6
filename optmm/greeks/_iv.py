"""Implied volatility: a normalised-Black solver in the spirit of Jäckel's "Let's Be Rational".

Method (Jäckel, "Let's Be Rational", Wilmott 2015, and "By Implication", Wilmott 2006):

1. Normalise. With discounted forward ``Fq = S e^{-qt}``, discounted strike ``Kr = K e^{-rt}`` and
   ``x = ln(F/K)``, the price is ``sqrt(Fq Kr) * b(x, s)`` in the total vol ``s = sigma sqrt(t)``,
   where ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)`` for a call.
2. Work from the out-of-the-money side. An in-the-money price is reduced by its discounted forward
   intrinsic (put-call parity); the remainder is the out-of-the-money option's price, whose
   normalised form is a call at ``x <= 0`` (``b_put(x) = b_call(-x)``). Nothing is lost that the
   in-the-money price carried: its digits beyond the time value are intrinsic value.
3. Guess in closed form. ``b`` is convex in ``s`` below ``s_c = sqrt(2|x|)`` and concave above.
   Below, the smaller of Jäckel's inverted lower map ``f_l(s) = 2 pi |x| / sqrt(27) N(-|x| /
   (sqrt(3) s))^3`` and the tangent at ``s_c`` (both over-estimate there); above, ``b_max - b`` is
   matched to ``2 cosh(x/2) N(-s/2)`` (exact at ``x = 0``).
4. Refine with Householder's third-order method on an objective that is nearly linear at the root:
   ``ln b(s) - ln beta`` below ``s_c`` (tiny prices), ``ln(b_max - beta) - ln(b_max - b(s))``
   above it (prices near the upper bound), kept inside a bracket that shrinks with every evaluation
   and falling back to bisection if a step would leave it. ``b_max - b`` is computed directly as a
   sum of two positive terms, never by cancellation.

The derivatives are closed forms, from differentiating b: ``b'(s) = exp(-(x^2/s^2 + s^2/4)/2) /
sqrt(2 pi)`` and ``b''(s) / b'(s) = x^2 / s^3 - s / 4``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from optmm._jit import sized_kernel
from optmm.greeks._bsm import CHUNK, inputs_ok, stage7, widen7
from optmm.greeks._simd import vexp, vlog, vnorm_cdf
from optmm.greeks._special import INV_SQRT_2PI, norm_cdf, norm_ppf, vnorm_ppf

# Status codes (mirrored by optmm.greeks.api.IVStatus).
OK = 0
BELOW_INTRINSIC = 1
ABOVE_MAXIMUM = 2
EXPIRED = 3

_TWO_PI_OVER_SQRT27 = 2.0 * math.pi / math.sqrt(27.0)
_SQRT3 = math.sqrt(3.0)
_MAX_ITER = 60
_EPS = 2.220446049250313e-16
# Householder(3) converges quartically: once a step is below this relative size, the error left
# after it is of order (1e-4)^4 = 1e-16 relative, so no confirming evaluation is needed.
# (Measured: 1e-3 still meets 1e-10 in vol but with half the margin; 1e-5 costs ~10% more time.)
_CONVERGED_REL_STEP = 1e-4


@njit(cache=True, inline="always")
def _b(x: float, s: float, ex2: float) -> float:
    """Normalised call price ``b(x, s)`` for ``x <= 0``; ``ex2 = exp(x / 2)``."""
    h = x / s
    t = 0.5 * s
    return ex2 * norm_cdf(h + t) - norm_cdf(h - t) / ex2


@njit(cache=True, inline="always")
def _gap(x: float, s: float, ex2: float) -> float:
    """``b_max - b(x, s)``, computed as a sum of two positive terms (no cancellation)."""
    h = x / s
    t = 0.5 * s
    return ex2 * norm_cdf(-h - t) + norm_cdf(h - t) / ex2


@njit(cache=True, inline="always")
def _vega_n(x: float, s: float) -> float:
    """``db/ds`` of the normalised Black price."""
    h = x / s
    return INV_SQRT_2PI * math.exp(-0.5 * (h * h + 0.25 * s * s))


def normalised_iv_py(beta: float, x: float) -> float:
    """Total vol ``s`` with ``b(x, s) == beta`` for an out-of-the-money call (``x <= 0``).

    Requires ``0 < beta < exp(x / 2)``; plain Python twin of the compiled ``normalised_iv``.
    """
    ex2 = math.exp(0.5 * x)
    bmax = ex2
    ax = -x
    s_c = math.sqrt(2.0 * ax)
    # At s_c the first argument of b is 0, so b(x, s_c) needs a single normal CDF.
    b_c = 0.5 * ex2 - norm_cdf(-s_c) / ex2 if s_c > 0.0 else 0.0
    lower = beta < b_c
    if lower:
        # Invert Jäckel's lower map f_l(s) = 2 pi |x| / sqrt(27) * N(-|x| / (sqrt(3) s))^3.
        u = (beta / (_TWO_PI_OVER_SQRT27 * ax)) ** (1.0 / 3.0)
        z = norm_ppf(min(u, 0.5))
        s = ax / (_SQRT3 * -z) if z < 0.0 else s_c
        # Both that and the tangent of b at its inflection point s_c overestimate the root (b is
        # convex below s_c), so the smaller of the two is the better guess.
        v_c = INV_SQRT_2PI * math.exp(-0.5 * ax)  # b'(s_c): there h^2 = t^2 = |x| / 2
        s = min(s, s_c - (b_c - beta) / v_c)
        lo_s, hi_s = 0.0, s_c
        log_target = math.log(beta)
    else:
        gap_target = bmax - beta
        z = norm_ppf(gap_target / (ex2 + 1.0 / ex2))
        s = -2.0 * z
        lo_s, hi_s = s_c, math.inf
        log_target = math.log(gap_target)
    if not (s > lo_s and s < hi_s):
        s = 0.5 * (lo_s + hi_s) if hi_s < math.inf else max(2.0 * lo_s, 1.0)
    for _ in range(_MAX_ITER):
        v = _vega_n(x, s)
        c2 = x * x / (s * s * s) - 0.25 * s  # b''/b'
        c3 = c2 * c2 - 3.0 * x * x / (s * s * s * s) - 0.25  # b'''/b'
        if lower:
            b = _b(x, s, ex2)
            if b <= 0.0:  # b underflowed: far left of the root, move right
                lo_s = s
                s = 0.5 * (s + hi_s)
                continue
            f = math.log(b) - log_target
            g = v / b  # f'
            eta = c2 - g  # f''/f'
            tau = c3 - 3.0 * g * c2 + 2.0 * g * g  # f'''/f'
        else:
            gap = _gap(x, s, ex2)
            if gap <= 0.0:  # b_max - b underflowed: far right of the root, move left
                hi_s = s
                s = 0.5 * (s + lo_s)
                continue
            f = log_target - math.log(gap)  # increases with s
            g = v / gap  # f'
            eta = c2 + g  # f''/f'
            tau = c3 + 3.0 * g * c2 + 2.0 * g * g  # f'''/f'
        if f < 0.0:
            lo_s = s
        elif f > 0.0:
            hi_s = s
        else:
            return s
        # Householder's third-order step (quartic convergence); Newton's where the correction
        # factor is far from 1, i.e. far from the root.
        nu = -f / g
        den = 1.0 + nu * (eta + nu * tau / 6.0)
        householder = abs(nu * eta) < 1.0 and den > 0.5
        step = nu * (1.0 + 0.5 * nu * eta) / den if householder else nu
        if abs(step) <= 4.0 * _EPS * s:  # at the root to within rounding: f's sign is noise now
            return s + step
        s_new = s + step
        if s_new > lo_s and s_new < hi_s:
            s = s_new
            if householder and abs(step) <= _CONVERGED_REL_STEP * s:
                break
        else:  # the step would leave the bracket: bisect it (never taken as convergence)
            s = 0.5 * (lo_s + hi_s) if hi_s < math.inf else 2.0 * s
    return s


normalised_iv = njit(cache=True)(normalised_iv_py)


def implied_vol_py(
    price: float, s: float, k: float, t: float, r: float, q: float, is_call: bool
) -> tuple[float, int]:
    """Black-Scholes-Merton implied vol of one option and its status code (plain Python)."""
    if t <= 0.0:
        return math.nan, EXPIRED
    # The same exp and log as the pricing kernels, so that a price from bsm_price and the intrinsic
    # value subtracted here agree to the last bit.
    fq = s * vexp(-q * t)
    kr = k * vexp(-r * t)
    phi = 1.0 if is_call else -1.0
    intrinsic = max(phi * (fq - kr), 0.0)
    upper = fq if is_call else kr
    if price < intrinsic:
        return math.nan, BELOW_INTRINSIC
    if price >= upper:
        return math.nan, ABOVE_MAXIMUM
    if price == intrinsic:
        return 0.0, OK
    x = -abs(vlog(s / k) + (r - q) * t)
    # Out-of-the-money equivalent: the time value, as a call at x = -|ln(F/K)| in normalised units.
    beta = (price - intrinsic) / math.sqrt(fq * kr)
    if beta >= math.exp(0.5 * x):  # the upper bound, once rounding has had its say
        return math.nan, ABOVE_MAXIMUM
    sn = normalised_iv(beta, x)
    return sn / math.sqrt(t), OK


implied_vol_scalar = njit(cache=True, inline="always")(implied_vol_py)

# The fast path: the same method with a fixed count of iterations and no branches, so that a block
# of options runs through it in SIMD lanes. Lanes that have not converged after two
# iterations (a few percent: guesses far off, underflowing prices) are solved again one by one by
# the bracketed solver above, so the fast path never decides an answer it is unsure of.


@njit(cache=True, inline="always", error_model="numpy")
def _fast_step(sn, x, ex2, sign, log_target):  # pragma: no cover - compiled
    """One branch-free Householder(3) step of the fast path: (new s, step, step was sound).

    "Sound" means a Householder step from a point where the objective could be evaluated.
    """
    h = x / sn
    tt = 0.5 * sn
    v = INV_SQRT_2PI * vexp(-0.5 * (h * h + tt * tt))
    val = ex2 * vnorm_cdf(sign * (h + tt)) - sign * vnorm_cdf(h - tt) / ex2  # b below, gap above
    f = sign * (vlog(val) - log_target)
    g = v / val
    c2 = x * x / (sn * sn * sn) - 0.25 * sn
    c3 = c2 * c2 - 3.0 * x * x / (sn * sn * sn * sn) - 0.25
    eta = c2 - sign * g
    tau = c3 - sign * 3.0 * g * c2 + 2.0 * g * g
    nu = -f / g
    den = 1.0 + nu * (eta + nu * tau / 6.0)
    householder = abs(nu * eta) < 1.0 and den > 0.5
    step = nu * (1.0 + 0.5 * nu * eta) / den if householder else nu
    s_new = sn + step
    # Only a Householder step is known to leave an error of order step**4 behind it.
    sound = sn > 0.0 and val > 0.0 and s_new > 0.0 and householder
    return (s_new if s_new > 0.0 else 0.5 * sn), step, sound


@njit(cache=True, inline="always", error_model="numpy")
def fast_iv(price, s, k, t, r, q, is_call):  # pragma: no cover - compiled
    """Implied vol, status and whether the fixed-iteration solve is trusted; branch-free."""
    fq = s * vexp(-q * t)
    kr = k * vexp(-r * t)
    phi = 1.0 if is_call else -1.0
    intrinsic = max(phi * (fq - kr), 0.0)
    upper = fq if is_call else kr
    x = -abs(vlog(s / k) + (r - q) * t)
    beta = (price - intrinsic) / math.sqrt(fq * kr)
    ex2 = vexp(0.5 * x)
    ax = -x
    s_c = math.sqrt(2.0 * ax)
    b_c = 0.5 * ex2 - vnorm_cdf(-s_c) / ex2
    lower = beta < b_c
    # Guess (as normalised_iv): one quantile, its argument chosen by region.
    gap_target = ex2 - beta
    u = vexp(vlog(beta / (_TWO_PI_OVER_SQRT27 * ax)) * (1.0 / 3.0))
    z = vnorm_ppf(min(u, 0.5) if lower else gap_target / (ex2 + 1.0 / ex2))
    s_low = min(ax / (_SQRT3 * -z) if z < 0.0 else s_c, s_c - (b_c - beta) / (INV_SQRT_2PI * vexp(-0.5 * ax)))
    sn = s_low if lower else -2.0 * z
    log_target = vlog(beta if lower else gap_target)
    sign = 1.0 if lower else -1.0  # b = ex2 N(h+t) - N(h-t)/ex2 below, gap = ex2 N(-h-t) + N(h-t)/ex2 above
    # Two iterations, written out: LLVM only vectorises innermost loops, so an inner loop here
    # (even of constant count) would keep the whole block scalar.
    sn, step, ok1 = _fast_step(sn, x, ex2, sign, log_target)
    sn, step, ok2 = _fast_step(sn, x, ex2, sign, log_target)
    ok = ok1 and ok2
    # Near the bottom of the float range the CDFs lose relative precision (denormals): leave
    # such prices (normalised time value or distance to the maximum below 1e-280) to the
    # bracketed solver.
    ok = ok and min(beta, gap_target) > 1e-280
    converged = ok and abs(step) <= _CONVERGED_REL_STEP * sn and sn < math.inf
    code = (
        EXPIRED
        if t <= 0.0
        else (
            BELOW_INTRINSIC
            if price < intrinsic
            else (ABOVE_MAXIMUM if (price >= upper or beta >= ex2) else OK)
        )
    )
    settled = code != OK or price == intrinsic  # answered without a solve
    vol = math.nan if code != OK else (0.0 if price == intrinsic else sn / math.sqrt(t))
    return vol, code, settled or converged


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _iv_block(price, s, k, t, r, q, is_call, out, status):  # pragma: no cover - compiled
    m = price.shape[0]
    done = np.empty(m, dtype=np.bool_)
    bad = 0
    for i in range(m):  # vectorised
        vol, code, trusted = fast_iv(price[i], s[i], k[i], t[i], r[i], q[i], is_call[i])
        out[i] = vol
        status[i] = code
        valid = inputs_ok(s[i], k[i], t[i], r[i], q[i], 0.0) and price[i] >= 0.0 and price[i] < math.inf
        done[i] = trusted or not valid  # invalid input: the caller raises, nothing to solve
        bad += 0 if valid else 1
    for i in range(m):  # the few the fast path could not settle
        if not done[i]:
            out[i], status[i] = implied_vol_scalar(price[i], s[i], k[i], t[i], r[i], q[i], is_call[i])
    return bad


@sized_kernel(4_096, error_model="numpy")
def iv_kernel(price, s, k, t, r, q, is_call, out, status):  # pragma: no cover - compiled
    """Fill ``out`` with implied vols and ``status`` with codes; inputs have length 1 or n.

    Returns the number of options with invalid inputs (the caller must raise).
    """
    n = out.shape[0]
    w0, w1, w2, w3, w4, w5, w6 = widen7(n, price, s, k, t, r, q, is_call)
    bad = 0
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        m = min(CHUNK, n - lo)
        staged = stage7(lo, m, n, w0, w1, w2, w3, w4, w5, w6)
        bad += _iv_block(*staged, out[lo : lo + m], status[lo : lo + m])
    return bad
