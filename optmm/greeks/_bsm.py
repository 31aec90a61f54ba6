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

from numba import njit, prange

from optmm.greeks._special import norm_cdf, norm_pdf

N_OUTPUTS = 8  # price, delta, gamma, vega, theta, rho, vanna, volga


def split_price_py(
    fq: float, kr: float, x: float, sst: float, phi: float
) -> tuple[float, float, float, float, float]:
    """Intrinsic and time value of one option, with the normal probabilities behind them.

    ``fq``/``kr`` are the discounted forward and strike, ``x = ln(F/K)``, ``sst = sigma sqrt(t) > 0``.
    The time value is priced as the out-of-the-money counterpart (put-call parity), so it keeps
    full relative precision deep in the money, and ``intrinsic + time_value >= intrinsic`` always.
    Returns ``(intrinsic, time_value, N(phi d1), N(phi d2), d1)``.
    """
    itm = phi * x > 0.0
    psi = -phi if itm else phi  # the out-of-the-money side
    d1 = x / sst + 0.5 * sst
    m1 = norm_cdf(psi * d1)
    m2 = norm_cdf(psi * (d1 - sst))
    time_value = max(psi * (fq * m1 - kr * m2), 0.0)
    if itm:
        return max(phi * (fq - kr), 0.0), time_value, 1.0 - m1, 1.0 - m2, d1
    return 0.0, time_value, m1, m2, d1


split_price = njit(cache=True, inline="always")(split_price_py)


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
    dq = math.exp(-q * t)
    dr = math.exp(-r * t)
    fq = s * dq  # discounted forward
    kr = k * dr  # discounted strike
    x = math.log(s / k) + (r - q) * t  # log forward moneyness ln(F/K)
    sst = sigma * sqt
    if sst > 0.0:
        intrinsic, time_value, nd1, nd2, d1 = split_price(fq, kr, x, sst, phi)
        price = intrinsic + time_value
        d2 = d1 - sst
        pdf = norm_pdf(d1)
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
    fq = s * math.exp(-q * t)
    kr = k * math.exp(-r * t)
    if sst > 0.0:
        intrinsic, time_value, _, _, _ = split_price(fq, kr, math.log(s / k) + (r - q) * t, sst, phi)
        return intrinsic + time_value
    return max(phi * (fq - kr), 0.0)


bsm_all = njit(cache=True, inline="always")(bsm_all_py)
bsm_price_scalar = njit(cache=True, inline="always")(bsm_price_py)


@njit(cache=True, parallel=True)
def greeks_kernel(s, k, t, r, q, sigma, is_call, out):  # pragma: no cover - compiled
    """Fill ``out`` (shape ``(8, n)``) with price and Greeks; inputs have length 1 or n."""
    n = out.shape[1]
    ss = 1 if s.shape[0] > 1 else 0
    sk = 1 if k.shape[0] > 1 else 0
    st = 1 if t.shape[0] > 1 else 0
    sr = 1 if r.shape[0] > 1 else 0
    sq = 1 if q.shape[0] > 1 else 0
    sv = 1 if sigma.shape[0] > 1 else 0
    sc = 1 if is_call.shape[0] > 1 else 0
    for i in prange(n):
        res = bsm_all(s[i * ss], k[i * sk], t[i * st], r[i * sr], q[i * sq], sigma[i * sv], is_call[i * sc])
        for j in range(N_OUTPUTS):
            out[j, i] = res[j]


@njit(cache=True, parallel=True)
def price_kernel(s, k, t, r, q, sigma, is_call, out):  # pragma: no cover - compiled
    """Fill ``out`` (shape ``(n,)``) with prices; inputs have length 1 or n."""
    n = out.shape[0]
    ss = 1 if s.shape[0] > 1 else 0
    sk = 1 if k.shape[0] > 1 else 0
    st = 1 if t.shape[0] > 1 else 0
    sr = 1 if r.shape[0] > 1 else 0
    sq = 1 if q.shape[0] > 1 else 0
    sv = 1 if sigma.shape[0] > 1 else 0
    sc = 1 if is_call.shape[0] > 1 else 0
    for i in prange(n):
        out[i] = bsm_price_scalar(
            s[i * ss], k[i * sk], t[i * st], r[i * sr], q[i * sq], sigma[i * sv], is_call[i * sc]
        )


@njit(cache=True)
def first_invalid(a, lower, strict):  # pragma: no cover - compiled
    """First index whose value is not finite or below ``lower`` (or equal to it if strict); -1 if none."""
    for i in range(a.shape[0]):
        v = a[i]
        if not math.isfinite(v) or v < lower or (strict and v == lower):
            return i
    return -1


__all__ = [
    "N_OUTPUTS",
    "bsm_all",
    "bsm_all_py",
    "bsm_price_py",
    "bsm_price_scalar",
    "first_invalid",
    "greeks_kernel",
    "price_kernel",
    "split_price",
    "split_price_py",
]
