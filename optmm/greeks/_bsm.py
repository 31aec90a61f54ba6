"""Black-Scholes-Merton kernels: a scalar core and the parallel array kernels over it.

Layers (see ``optmm.greeks.api`` for the public, validating wrapper):

* ``bsm_all_py`` / ``bsm_price_py``: plain-Python scalar functions, readable and debuggable; the
  tests check that they agree with the compiled versions.
* ``bsm_all`` / ``bsm_price_scalar``: the same functions compiled with ``njit(inline="always")``.
* ``greeks_kernel`` / ``price_kernel``: ``prange`` loops over flat float64 arrays writing into a
  preallocated ``out``. Every input array has length 1 (a broadcast scalar) or ``n``; element ``i``
  reads ``a[i * step_a]`` with ``step_a`` 0 or 1, so scalars are never materialised to length ``n``.

All Greeks are plain partial derivatives of one option's value: vega per 1.00 of vol, theta is
``-dV/dt`` per year (calendar time passing), rho per 1.00 of rate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from optmm._jit import sized_kernel
from optmm.greeks._simd import vexp, vlog, vnorm_cdf, vnorm_cdf_pdf

N_OUTPUTS = 8  # price, delta, gamma, vega, theta, rho, vanna, volga


def split_price_py(
    fq: float, kr: float, x: float, sst: float, phi: float
) -> tuple[float, float, float, float, float, float]:
    """Intrinsic and time value of one option, with the normal probabilities behind them.

    ``fq``/``kr`` are the discounted forward and strike, ``x = ln(F/K)``, ``sst = sigma sqrt(t) > 0``.
    The time value is priced as the out-of-the-money counterpart (put-call parity), so it keeps
    full relative precision deep in the money, and ``intrinsic + time_value >= intrinsic`` always.
    Returns ``(intrinsic, time_value, N(phi d1), N(phi d2), d1, n(d1))``.
    """
    itm = phi * x > 0.0
    psi = -phi if itm else phi  # the out-of-the-money side
    d1 = x / sst + 0.5 * sst
    m1, pdf = vnorm_cdf_pdf(psi * d1)
    m2 = vnorm_cdf(psi * (d1 - sst))
    time_value = max(psi * (fq * m1 - kr * m2), 0.0)
    if itm:
        return max(phi * (fq - kr), 0.0), time_value, 1.0 - m1, 1.0 - m2, d1, pdf
    return 0.0, time_value, m1, m2, d1, pdf


split_price = njit(cache=True, inline="always", error_model="numpy")(split_price_py)


def bsm_all_py(
    s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool
) -> tuple[float, float, float, float, float, float, float, float]:
    """Price and the seven Greeks of one European option (scalar, plain Python).

    Expired options (``t <= 0``) are worth intrinsic value, with delta +-1 when strictly in the
    money and every other Greek 0. Zero total vol (``sigma * sqrt(t) == 0``) gives the discounted
    forward intrinsic; its delta, theta and rho are the derivatives of that kinked payoff away from
    the kink (at the forward exactly, the one-sided average), and gamma, vega, vanna, volga are 0.
    """
    phi = 1.0 if is_call else -1.0
    if t <= 0.0:
        itm = phi * (s - k) > 0.0
        return (phi * (s - k) if itm else 0.0, phi if itm else 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sqt = math.sqrt(t)
    dq = vexp(-q * t)
    dr = vexp(-r * t)
    fq = s * dq  # discounted forward
    kr = k * dr  # discounted strike
    x = vlog(s / k) + (r - q) * t  # log forward moneyness ln(F/K)
    sst = sigma * sqt
    if sst > 0.0:
        intrinsic, time_value, nd1, nd2, d1, pdf = split_price(fq, kr, x, sst, phi)
        price = intrinsic + time_value
        d2 = d1 - sst
        if pdf > 0.0:
            vega = fq * pdf * sqt
            gamma = dq * pdf / (s * sst)
            vanna = -dq * pdf * (d2 / sigma)
            volga = vega * d1 * (d2 / sigma)
        else:  # |d1| > ~38.6: the density has underflowed, and so have these Greeks
            vega = gamma = vanna = volga = 0.0
        theta_decay = fq * pdf * sigma / (2.0 * sqt)
    else:
        nd1 = 1.0 if phi * x > 0.0 else (0.5 if x == 0.0 else 0.0)
        nd2 = nd1
        price = max(phi * (fq - kr), 0.0)
        vega = gamma = vanna = volga = theta_decay = 0.0
    delta = phi * dq * nd1
    theta = -theta_decay + phi * (q * fq * nd1 - r * kr * nd2)
    rho = phi * t * kr * nd2
    return (price, delta, gamma, vega, theta, rho, vanna, volga)


def bsm_price_py(s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool) -> float:
    """Price alone of one European option (scalar, plain Python); same conventions as ``bsm_all_py``."""
    phi = 1.0 if is_call else -1.0
    if t <= 0.0:
        return max(phi * (s - k), 0.0)
    sst = sigma * math.sqrt(t)
    fq = s * vexp(-q * t)
    kr = k * vexp(-r * t)
    if sst > 0.0:
        intrinsic, time_value, _, _, _, _ = split_price(fq, kr, vlog(s / k) + (r - q) * t, sst, phi)
        return intrinsic + time_value
    return max(phi * (fq - kr), 0.0)


bsm_all = njit(cache=True, inline="always", error_model="numpy")(bsm_all_py)
bsm_price_scalar = njit(cache=True, inline="always", error_model="numpy")(bsm_price_py)


# Options per parallel work item. Each block sees its inputs as contiguous slices (a broadcast
# scalar as a slice of one block of copies, made once per call), so the inner loop is a plain
# unit-stride loop over inlined, branch-free arithmetic that LLVM vectorises.
#
# The vectorised loops are compiled with fastmath={"contract"} and nothing else: it lets LLVM fuse
# a*b + c into one FMA (one rounding instead of two; measured 25% faster on the polynomials of
# _simd), and leaves NaN, inf and signed-zero semantics alone, unlike the other fastmath flags.
# The pricing and implied-vol kernels use the same flags, so the intrinsic value the latter
# subtracts agrees to the bit with the prices of the former.
CHUNK = 1024


@njit(cache=True, inline="always")
def widen(a, n):  # pragma: no cover - compiled
    """A broadcast scalar (length 1) as one block of copies; a full-length input as it is."""
    if a.shape[0] == 1 and n > 1:
        return np.full(min(n, CHUNK), a[0])
    return a


@njit(cache=True, inline="always")
def stage(a, lo, m, n):  # pragma: no cover - compiled
    """The block ``[lo, lo + m)`` of a widened input: a slice of it, or of its block of copies."""
    if a.shape[0] == n:
        return a[lo : lo + m]
    return a[:m]


@njit(cache=True, inline="always")
def widen7(n, a, b, c, d, e, f, g):  # pragma: no cover - compiled
    """The seven inputs of a kernel (every kernel here has seven), widened once per call."""
    return widen(a, n), widen(b, n), widen(c, n), widen(d, n), widen(e, n), widen(f, n), widen(g, n)


@njit(cache=True, inline="always")
def stage7(lo, m, n, a, b, c, d, e, f, g):  # pragma: no cover - compiled
    """The seven widened inputs of a kernel, staged for one block."""
    return (
        stage(a, lo, m, n),
        stage(b, lo, m, n),
        stage(c, lo, m, n),
        stage(d, lo, m, n),
        stage(e, lo, m, n),
        stage(f, lo, m, n),
        stage(g, lo, m, n),
    )


@njit(cache=True, inline="always")
def inputs_ok(s, k, t, r, q, sigma):  # pragma: no cover - compiled
    """The API's rules (spot, strike > 0; vol >= 0; all finite), checked inside the kernels.

    Validation rides along with the computation, which reads every input anyway: a separate
    pass costs a tenth of the whole call. Only when a kernel reports a bad value does the API
    look for the first one, to name it.
    """
    inf = math.inf
    return (
        s > 0.0
        and s < inf
        and k > 0.0
        and k < inf
        and abs(t) < inf
        and abs(r) < inf
        and abs(q) < inf
        and sigma >= 0.0
        and sigma < inf
    )


@njit(cache=True, inline="always")
def all_finite(a, b, c=0.0, d=0.0, e=0.0, f=0.0, g=0.0, h=0.0):  # pragma: no cover - compiled
    """Whether every argument is finite, without a branch: ``x * 0.0`` is 0.0 for a finite ``x`` and
    NaN for an infinite or NaN one, and one NaN makes the sum NaN."""
    return a * 0.0 + b * 0.0 + c * 0.0 + d * 0.0 + e * 0.0 + f * 0.0 + g * 0.0 + h * 0.0 == 0.0


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _greeks_block(  # pragma: no cover - compiled
    s, k, t, r, q, sigma, is_call, o0, o1, o2, o3, o4, o5=None, o6=None, o7=None
):
    # Outputs come in as block slices indexed from 0: that form LLVM vectorises; the same stores
    # addressed as out[j, lo + i] stay scalar. Returns how many options had invalid inputs. Without
    # o5, o6, o7 (rho, vanna, volga: the simulator's loop) numba prunes their stores and LLVM their
    # arithmetic. An option counts as bad also when valid inputs give an output that overflows
    # (e.g. exp(-r t) beyond the float range): the caller names the cause.
    bad = 0
    for i in range(s.shape[0]):
        res = bsm_all(s[i], k[i], t[i], r[i], q[i], sigma[i], is_call[i])
        o0[i] = res[0]
        o1[i] = res[1]
        o2[i] = res[2]
        o3[i] = res[3]
        o4[i] = res[4]
        # x * 0.0 is 0.0 for a finite x and NaN otherwise: one sum, no branch, so the loop vectorises
        nan_if_overflow = res[0] * 0.0 + res[1] * 0.0 + res[2] * 0.0 + res[3] * 0.0 + res[4] * 0.0
        if o5 is not None:
            o5[i] = res[5]
            nan_if_overflow += res[5] * 0.0
        if o6 is not None:
            o6[i] = res[6]
            nan_if_overflow += res[6] * 0.0
        if o7 is not None:
            o7[i] = res[7]
            nan_if_overflow += res[7] * 0.0
        ok = inputs_ok(s[i], k[i], t[i], r[i], q[i], sigma[i])
        bad += 0 if ok & (nan_if_overflow == 0.0) else 1
    return bad


@sized_kernel(8_192, error_model="numpy")
def greeks_kernel(s, k, t, r, q, sigma, is_call, o0, o1, o2, o3, o4, o5, o6, o7):  # pragma: no cover
    """Fill the eight outputs (price, delta, gamma, vega, theta, rho, vanna, volga; each of length n).

    Inputs have length 1 or n. Returns the number of options with invalid inputs or an output that
    overflowed (whose outputs are meaningless: the caller must raise). The outputs are separate
    arrays rather than rows of one (8, n) block: a block that size is always a fresh mmap whose
    first touch costs page faults, while eight n-sized arrays are recycled by the allocator across
    calls.
    """
    n = o0.shape[0]
    w0, w1, w2, w3, w4, w5, w6 = widen7(n, s, k, t, r, q, sigma, is_call)
    bad = 0
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        m = min(CHUNK, n - lo)
        hi = lo + m
        bad += _greeks_block(
            *stage7(lo, m, n, w0, w1, w2, w3, w4, w5, w6),
            o0[lo:hi],
            o1[lo:hi],
            o2[lo:hi],
            o3[lo:hi],
            o4[lo:hi],
            o5[lo:hi],
            o6[lo:hi],
            o7[lo:hi],
        )
    return bad


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _price_block(s, k, t, r, q, sigma, is_call, out):  # pragma: no cover - compiled
    bad = 0
    for i in range(s.shape[0]):
        price = bsm_price_scalar(s[i], k[i], t[i], r[i], q[i], sigma[i], is_call[i])
        out[i] = price
        bad += 0 if inputs_ok(s[i], k[i], t[i], r[i], q[i], sigma[i]) and all_finite(price, 0.0) else 1
    return bad


@sized_kernel(16_384, error_model="numpy")
def price_kernel(s, k, t, r, q, sigma, is_call, out):  # pragma: no cover - compiled
    """Fill ``out`` (shape ``(n,)``) with prices; inputs have length 1 or n.

    Returns the number of options with invalid inputs, like ``greeks_kernel``.
    """
    n = out.shape[0]
    w0, w1, w2, w3, w4, w5, w6 = widen7(n, s, k, t, r, q, sigma, is_call)
    bad = 0
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        m = min(CHUNK, n - lo)
        bad += _price_block(*stage7(lo, m, n, w0, w1, w2, w3, w4, w5, w6), out[lo : lo + m])
    return bad


@njit(cache=True)
def first_invalid(a, lower, strict):  # pragma: no cover - compiled
    """First index whose value is not finite or below ``lower`` (or equal to it if strict); -1 if none."""
    for i in range(a.shape[0]):
        v = a[i]
        if not math.isfinite(v) or v < lower or (strict and v == lower):
            return i
    return -1


__all__ = [
    "CHUNK",
    "N_OUTPUTS",
    "all_finite",
    "bsm_all",
    "bsm_all_py",
    "bsm_price_py",
    "bsm_price_scalar",
    "first_invalid",
    "greeks_kernel",
    "inputs_ok",
    "price_kernel",
    "split_price",
    "split_price_py",
    "stage",
    "stage7",
    "widen",
    "widen7",
]
