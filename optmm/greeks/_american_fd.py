"""American options on a schedule of cash dividends: finite differences in the escrowed model.

The model is the European one of ``_dividend`` (and QuantLib's ``FdBlackScholesVanillaEngine``
with its ``Escrowed`` cash-dividend model): the escrowed stock ``S* = S - PV(t)`` follows
Black-Scholes with the option's vol, where ``PV(t) = sum over t <= t_i < T of D_i e^{-(r-q)(t_i-t)}``
is the value at time ``t`` of the dividends still to go ex before expiry. Exercise is decided on
the full stock price ``S* + PV(t)``, so the exercise value changes with time (it drops at every
ex-date) while ``S*`` itself moves continuously: no jump conditions on the grid.

Scheme: the Black-Scholes operator in ``x = ln S*`` on a uniform grid centred on today's ``x``
(a node), ``width`` standard deviations each side; Crank-Nicolson, with two fully implicit steps
(Rannacher) starting each period between ex-dates against the kinks of the exercise value; the
early-exercise constraint by projection after each step, at an ex-date both cum and ex dividend
(the best moment to exercise is often just after the stock goes ex); time nodes on every ex-date.
The operator's coefficients are constant, so each step is one tridiagonal solve.

Greeks: delta and gamma from the grid at today's node (``dS*/dS = 1``); theta from the
Black-Scholes equation off the exercise region, less ``(r - q) PV delta`` (calendar time brings
the dividends closer, as for the European options); vega, volga, vanna and rho are central
differences of the engine on the same grid.

One solve gives today's values over the whole grid (:func:`sweep_py`), read at a spot by
:func:`at_py`. :func:`tables_py` makes the three solves of the price and Greeks (the vol and its two
bumps) and :func:`from_tables_py` reads them: at the solves' vol and time exactly the engine's
figures (what :func:`all_one_py` returns), at a nearby vol and a little later to second and first
order (what the simulator's loop reads between its refreshes, ``optmm.sim._kernels._fd_marks``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from optmm._jit import sized_kernel
from optmm.greeks import _dividend, _iv
from optmm.greeks._american import NO_PREMIUM, european
from optmm.greeks._bsm import inputs_ok


class Grid(NamedTuple):
    """Settings of the finite-difference engine."""

    n_x: int  # space nodes (odd: today's spot is the middle one)
    n_t: int  # time steps over the whole life (at least one per period between ex-dates)
    width: float  # half-width of the grid in standard deviations sigma sqrt(T)


GRIDS = {"default": Grid(301, 150, 5.0), "high": Grid(801, 400, 5.5)}

_VOL_BUMP = 1e-4
_RATE_BUMP = 1e-5


def pv_at_py(
    t: float, big_t: float, carry: float, ex: np.ndarray, amt: np.ndarray, after: bool = False
) -> float:
    """Value at calendar time ``t`` of the dividends going ex in ``[t, T)``, discounted at the carry.

    At an ex-date the stock is cum dividend until the moment it goes ex; ``after`` gives the value
    just after that moment (the dividends going ex in ``(t, T)``).
    """
    pv = 0.0
    for j in range(ex.shape[0]):
        if (ex[j] > t if after else ex[j] >= t) and ex[j] < big_t:
            pv += amt[j] * math.exp(-carry * (ex[j] - t))
    return pv


pv_at = njit(cache=True, inline="always", error_model="numpy")(pv_at_py)


def zero_vol_py(
    s_star: float, k: float, t: float, r: float, q: float, is_call: bool, ex: np.ndarray, amt: np.ndarray
) -> float:
    """Value without volatility: the best exercise time, exactly.

    Between two ex-dates the exercise value discounted to today is ``phi (A e^{-q u} - K e^{-r u})``
    with ``A = S* + PV(0)`` constant, so the best time is an end of such a period (an ex-date is
    taken just before, cum dividend) or that form's stationary point.
    """
    phi = 1.0 if is_call else -1.0
    a = s_star + pv_at(0.0, t, r - q, ex, amt)
    best = max(phi * (a - k), 0.0)
    cands = np.empty(2 * ex.shape[0] + 2)
    cands[0] = t
    cands[1] = math.log(r * k / (q * a)) / (r - q) if (r != q and r * q > 0.0) else -1.0
    for j in range(ex.shape[0]):
        cands[2 + 2 * j] = ex[j]
        cands[3 + 2 * j] = -1.0
    for u in cands:
        if u > 0.0 and u <= t:
            # value at u of the stock then, S*(u) + PV(u), discounted: cum and ex dividend
            for after in (False, True):
                fwd = (s_star * math.exp((r - q) * u) + pv_at(u, t, r - q, ex, amt, after)) * math.exp(-r * u)
                best = max(best, phi * (fwd - k * math.exp(-r * u)))
    # stationary points inside each period between ex-dates
    for j in range(ex.shape[0] + 1):
        lo = 0.0 if j == 0 else ex[j - 1]
        hi = ex[j] if j < ex.shape[0] else t
        if r != q and r * q > 0.0 and hi > lo:
            aj = s_star + pv_at(lo + 0.5 * (hi - lo), t, r - q, ex, amt) * math.exp(
                -(r - q) * (lo + 0.5 * (hi - lo))
            )
            if aj > 0.0 and r * k / (q * aj) > 0.0:
                u = math.log(r * k / (q * aj)) / (r - q)
                if u > lo and u < min(hi, t):
                    best = max(best, phi * (aj * math.exp(-q * u) - k * math.exp(-r * u)))
    return best


zero_vol = njit(cache=True, error_model="numpy")(zero_vol_py)


def sweep_py(
    k: float,
    t: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    x_mid: float,
    dx: float,
    grid: Grid,
    v: np.ndarray,
) -> None:
    """Today's values on the grid centred on ``x_mid`` (``x_j = x_mid + (j - (n - 1) / 2) dx``,
    ``x = ln S*``) into ``v`` (its length ``n`` odd: ``grid.n_x``, or more nodes at the same spacing
    to reach further): the scheme of the module docstring, backwards from expiry."""
    n = v.shape[0]
    phi = 1.0 if is_call else -1.0
    carry = r - q
    x = np.empty(n)
    st = np.empty(n)
    for j in range(n):
        x[j] = x_mid + (j - (n - 1) // 2) * dx
        st[j] = math.exp(x[j])
    # time nodes: the ex-dates inside (0, t) and steps spread over the periods between them;
    # ``marks[:n_marks]`` sorted by insertion (a handful of dates)
    marks = np.empty(ex.shape[0] + 2)
    marks[0] = 0.0
    n_marks = 1
    for j in range(ex.shape[0] + 1):
        mark = ex[j] if j < ex.shape[0] else t
        if j == ex.shape[0] or (mark > 0.0 and mark < t):
            i = n_marks
            while marks[i - 1] > mark:
                marks[i] = marks[i - 1]
                i -= 1
            marks[i] = mark
            n_marks += 1
    # the operator L V = a V_xx + b V_x - r V, central differences
    a = 0.5 * sigma * sigma
    b = carry - a
    lo_c = a / (dx * dx) - b / (2.0 * dx)
    di_c = -2.0 * a / (dx * dx) - r
    up_c = a / (dx * dx) + b / (2.0 * dx)
    pv_t = pv_at(t, t, carry, ex, amt)  # 0 at expiry
    for j in range(n):
        v[j] = max(phi * (st[j] + pv_t - k), 0.0)
    rhs = np.empty(n)
    cp = np.empty(n)
    for m in range(n_marks - 1, 0, -1):  # backwards, period by period
        t_hi, t_lo = marks[m], marks[m - 1]
        n_steps = max(1, round(grid.n_t * (t_hi - t_lo) / t))
        dt = (t_hi - t_lo) / n_steps
        for step in range(n_steps):
            # fully implicit for the first two steps of every period: the exercise value changes
            # at each ex-date, leaving a kink that Crank-Nicolson alone would ring on
            implicit = step < 2
            theta_i = 1.0 if implicit else 0.5
            t_now = t_hi - (step + 1) * dt
            tau = t - t_now
            # explicit part
            for j in range(1, n - 1):
                lv = lo_c * v[j - 1] + di_c * v[j] + up_c * v[j + 1]
                rhs[j] = v[j] + (1.0 - theta_i) * dt * lv
            # boundaries: the larger of exercise now and the forward intrinsic
            pv_now = pv_at(t_now, t, carry, ex, amt)
            for j in (0, n - 1):
                fwd = phi * (st[j] * math.exp(-q * tau) - k * math.exp(-r * tau))
                rhs[j] = max(phi * (st[j] + pv_now - k), fwd, 0.0)
            # implicit solve (Thomas): (1 - theta dt L) v_new = rhs, Dirichlet rows at the ends
            al = -theta_i * dt * lo_c
            ad = 1.0 - theta_i * dt * di_c
            au = -theta_i * dt * up_c
            cp[0] = 0.0
            v[0] = rhs[0]
            for j in range(1, n - 1):
                den = ad - al * cp[j - 1]
                cp[j] = au / den
                v[j] = (rhs[j] - al * v[j - 1]) / den
            v[n - 1] = rhs[n - 1]
            for j in range(n - 2, 0, -1):
                v[j] -= cp[j] * v[j + 1]
            # early exercise on the full stock price; at an ex-date both just after it goes ex and
            # just before (the best moment to exercise is often one of these two)
            pv_after = pv_at(t_now, t, carry, ex, amt, True) if step == n_steps - 1 else pv_now
            for j in range(n):
                v[j] = max(v[j], phi * (st[j] + pv_after - k), phi * (st[j] + pv_now - k))


sweep = njit(cache=True, error_model="numpy")(sweep_py)


def at_py(
    v: np.ndarray, x_mid: float, dx: float, s_star: float, pv: float, k: float, is_call: bool
) -> tuple[float, float, float, bool]:
    """``(price, dV/dS*, d2V/dS*2, exercised)`` at ``S*`` from today's values ``v`` on the grid
    centred on ``x_mid`` (:func:`sweep_py`), quadratic in ``x = ln S*`` between its nodes; ``pv``:
    the present value of the dividends before expiry (the exercise value is on ``S* + pv``)."""
    n = v.shape[0]
    xs = math.log(s_star)
    x0 = x_mid + (0 - (n - 1) // 2) * dx
    j = min(max(round((xs - x0) / dx), 1), n - 2)
    u = (xs - (x_mid + (j - (n - 1) // 2) * dx)) / dx
    f0, f1, f2 = v[j - 1], v[j], v[j + 1]
    price = f1 + 0.5 * u * (f2 - f0) + 0.5 * u * u * (f2 - 2.0 * f1 + f0)
    vx = (0.5 * (f2 - f0) + u * (f2 - 2.0 * f1 + f0)) / dx
    vxx = (f2 - 2.0 * f1 + f0) / (dx * dx)
    delta = vx / s_star
    gamma = (vxx - vx) / (s_star * s_star)
    payoff = (1.0 if is_call else -1.0) * (s_star + pv - k)
    exercised = price <= payoff + 1e-12 * k
    price = max(price, payoff, 0.0)
    return price, delta, gamma, exercised


at = njit(cache=True, error_model="numpy")(at_py)


def solve_py(
    s_star: float,
    k: float,
    t: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    x_mid: float,
    dx: float,
    grid: Grid,
) -> tuple[float, float, float, bool]:
    """``(price, dV/dS*, d2V/dS*2, exercised)`` at ``S*`` on the grid centred on ``x_mid``."""
    v = np.empty(grid.n_x)
    sweep(k, t, r, q, sigma, is_call, ex, amt, x_mid, dx, grid, v)
    return at(v, x_mid, dx, s_star, pv_at(0.0, t, r - q, ex, amt), k, is_call)


solve = njit(cache=True, error_model="numpy")(solve_py)


def spacing_py(sigma: float, t: float, grid: Grid) -> float:
    """The grid's spacing in ``x = ln S*`` for an option of vol ``sigma`` and ``t`` years to expiry."""
    half = grid.width * sigma * math.sqrt(t)
    return 2.0 * half / (grid.n_x - 1)


spacing = njit(cache=True, error_model="numpy", inline="always")(spacing_py)


def price_one_py(
    s: float,
    k: float,
    t: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    grid: Grid,
) -> float:
    """Price of one American option on the schedule (plain Python twin of ``price_one``)."""
    if t <= 0.0:
        return max((s - k) if is_call else (k - s), 0.0)
    s_star = s - pv_at(0.0, t, r - q, ex, amt)
    if sigma == 0.0:
        return zero_vol(s_star, k, t, r, q, is_call, ex, amt)
    dx = spacing(sigma, t, grid)
    return solve(s_star, k, t, r, q, sigma, is_call, ex, amt, math.log(s_star), dx, grid)[0]


price_one = njit(cache=True, error_model="numpy")(price_one_py)


def vol_bump_py(sigma: float) -> float:
    """The vol bump of the engine's vol Greeks."""
    return min(_VOL_BUMP, 0.5 * sigma)


vol_bump = njit(cache=True, error_model="numpy", inline="always")(vol_bump_py)


def tables_py(
    k: float,
    t: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    x_mid: float,
    dx: float,
    grid: Grid,
    v: np.ndarray,
) -> None:
    """Today's values on the grid centred on ``x_mid`` at the vols ``sigma``, ``sigma + h`` and
    ``sigma - h`` (:func:`vol_bump_py`) into ``v[0]``, ``v[1]``, ``v[2]``: what
    :func:`from_tables_py` reads the price and Greeks from."""
    h = vol_bump(sigma)
    sweep(k, t, r, q, sigma, is_call, ex, amt, x_mid, dx, grid, v[0])
    sweep(k, t, r, q, sigma + h, is_call, ex, amt, x_mid, dx, grid, v[1])
    sweep(k, t, r, q, sigma - h, is_call, ex, amt, x_mid, dx, grid, v[2])


tables = njit(cache=True, error_model="numpy")(tables_py)


def from_tables_py(
    v: np.ndarray,
    x_mid: float,
    dx: float,
    sigma_c: float,
    s_star: float,
    pv: float,
    k: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    tau: float,
) -> tuple[float, float, float, float, float, float, float, bool]:
    """``(price, delta, gamma, vega, theta, vanna, volga, exercised)`` at ``S*`` (dividends' present
    value ``pv``) and vol ``sigma``, ``tau`` years after the tables ``v`` (:func:`tables_py`, made at
    the vol ``sigma_c``): on the grid as :func:`at_py` reads it, second order in ``sigma - sigma_c``
    (the vega and volga of the tables' bumps), first order in ``tau`` (the Black-Scholes equation at
    ``S*``). At ``sigma = sigma_c`` and ``tau = 0`` these are the engine's figures exactly. Delta and
    gamma are per unit of ``S*`` (``dS*/dS = 1``); theta includes the dividends' accrual
    ``-(r - q) pv delta`` (calendar time brings them closer). Exercised: the price is the exercise
    value, the Greeks but delta are 0."""
    p0, d0, g0, exercised = at(v[0], x_mid, dx, s_star, pv, k, is_call)
    if exercised:
        return (p0, d0, 0.0, 0.0, 0.0, 0.0, 0.0, True)
    h = vol_bump(sigma_c)
    pu, du, gu, _ = at(v[1], x_mid, dx, s_star, pv, k, is_call)
    pd, dd, gd, _ = at(v[2], x_mid, dx, s_star, pv, k, is_call)
    vega = (pu - pd) / (2.0 * h)
    volga = (pu - 2.0 * p0 + pd) / (h * h)
    vanna = (du - dd) / (2.0 * h)
    e = sigma - sigma_c
    price = p0 + vega * e + 0.5 * volga * e * e
    delta = d0 + vanna * e
    gamma = g0 + (gu - gd) / (2.0 * h) * e
    carry = r - q
    decay = r * price - carry * s_star * delta - 0.5 * sigma * sigma * s_star * s_star * gamma
    return (
        price + decay * tau,
        delta,
        gamma,
        vega + volga * e,
        decay - carry * pv * delta,
        vanna,
        volga,
        False,
    )


from_tables = njit(cache=True, error_model="numpy")(from_tables_py)


def all_one_py(
    s: float,
    k: float,
    t: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    grid: Grid,
) -> tuple[float, float, float, float, float, float, float, float]:
    """Price and the seven Greeks of one American option on the schedule."""
    if t <= 0.0:
        return european(s, k, t, r, q, sigma, is_call)
    carry = r - q
    pv = pv_at(0.0, t, carry, ex, amt)
    s_star = s - pv
    if sigma == 0.0:
        # no vol: the value alone is exact; its derivatives by differences
        p0 = zero_vol(s_star, k, t, r, q, is_call, ex, amt)
        hs = 1e-6 * s
        dlt = (
            zero_vol(s_star + hs, k, t, r, q, is_call, ex, amt)
            - zero_vol(s_star - hs, k, t, r, q, is_call, ex, amt)
        ) / (2.0 * hs)
        return (p0, dlt, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    dx = spacing(sigma, t, grid)
    xm = math.log(s_star)
    v = np.empty((3, grid.n_x))
    tables(k, t, r, q, sigma, is_call, ex, amt, xm, dx, grid, v)
    a = from_tables(v, xm, dx, sigma, s_star, pv, k, r, q, sigma, is_call, 0.0)
    if a[7]:  # exercised: the exercise value and its delta
        return (a[0], a[1], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    hr = _RATE_BUMP
    s_up = s - pv_at(0.0, t, carry + hr, ex, amt)
    s_dn = s - pv_at(0.0, t, carry - hr, ex, amt)
    p_up = solve(s_up, k, t, r + hr, q, sigma, is_call, ex, amt, xm, dx, grid)[0]
    p_dn = solve(s_dn, k, t, r - hr, q, sigma, is_call, ex, amt, xm, dx, grid)[0]
    rho = (p_up - p_dn) / (2.0 * hr)
    return (a[0], a[1], a[2], a[3], a[4], rho, a[5], a[6])


all_one = njit(cache=True, error_model="numpy")(all_one_py)
# the kernel's loop body: inlined, one compiled level fewer (a compiled function's machine code holds
# a copy of every function it calls, which LLVM optimises and compiles again with it; see
# _american._price_inlined for what calling it costs with optmm._compile_link)
_all_one_inlined = njit(cache=True, inline="always", error_model="numpy")(all_one_py)


@sized_kernel(16, error_model="numpy")
def greeks_kernel(
    s, k, t, r, q, sigma, is_call, ex, amt, grid, o0, o1, o2, o3, o4, o5, o6, o7
):  # pragma: no cover
    """Fill the eight outputs (length n); inputs have length 1 or n. Returns the invalid count."""
    n = o0.shape[0]
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(sigma.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]], sigma[i * su[1]])
        if not inputs_ok(a[0], a[1], a[2], a[3], a[4], a[5]):
            bad += 1
            continue
        res = _all_one_inlined(a[0], a[1], a[2], a[3], a[4], a[5], is_call[i * su[2]], ex, amt, grid)
        o0[i], o1[i], o2[i], o3[i], o4[i], o5[i], o6[i], o7[i] = res
    return bad


@sized_kernel(128, error_model="numpy")
def price_kernel(s, k, t, r, q, sigma, is_call, ex, amt, grid, out):  # pragma: no cover - compiled
    """Fill ``out`` (length n) with prices; inputs have length 1 or n. Returns the invalid count."""
    n = out.shape[0]
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(sigma.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]], sigma[i * su[1]])
        if not inputs_ok(a[0], a[1], a[2], a[3], a[4], a[5]):
            bad += 1
            continue
        out[i] = price_one(a[0], a[1], a[2], a[3], a[4], a[5], is_call[i * su[2]], ex, amt, grid)
    return bad


_IV_MAX_VOL = 100.0
_IV_MIN_VOL = 1e-3


def implied_vol_py(
    price: float,
    s: float,
    k: float,
    t: float,
    r: float,
    q: float,
    is_call: bool,
    ex: np.ndarray,
    amt: np.ndarray,
    grid: Grid,
) -> tuple[float, int]:
    """Vol at which the engine prices the option at ``price``; codes of ``_american.implied_vol_py``."""
    if t <= 0.0:
        return math.nan, _iv.EXPIRED
    intrinsic = max((s - k) if is_call else (k - s), 0.0)
    upper = s if is_call else k
    if price < intrinsic:
        return math.nan, _iv.BELOW_INTRINSIC
    if price >= upper:
        return math.nan, _iv.ABOVE_MAXIMUM
    p0 = price_one(s, k, t, r, q, 0.0, is_call, ex, amt, grid)
    if price == p0:
        return (0.0, _iv.OK) if p0 > intrinsic else (math.nan, NO_PREMIUM)
    lo, f_lo = 0.0, p0 - price
    if f_lo > 0.0:
        # below the exact value without vol: the grid's prices at small vols may still reach it
        lo, f_lo = _IV_MIN_VOL, price_one(s, k, t, r, q, _IV_MIN_VOL, is_call, ex, amt, grid) - price
        if f_lo > 0.0:
            return math.nan, _iv.BELOW_INTRINSIC
    hi = 0.5
    f_hi = price_one(s, k, t, r, q, hi, is_call, ex, amt, grid) - price
    while f_hi <= 0.0:
        lo, f_lo = hi, f_hi
        hi *= 2.0
        if hi > _IV_MAX_VOL:
            return math.nan, _iv.ABOVE_MAXIMUM
        f_hi = price_one(s, k, t, r, q, hi, is_call, ex, amt, grid) - price
    side = 0
    x = hi
    for _ in range(100):
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not (x > lo and x < hi):
            x = 0.5 * (lo + hi)
        fx = price_one(s, k, t, r, q, x, is_call, ex, amt, grid) - price
        if fx == 0.0 or hi - lo <= 1e-14 * hi or abs(fx) <= 1e-14 * upper:
            break
        if fx > 0.0:
            hi, f_hi = x, fx
            if side == 1:
                f_lo *= 0.5
            side = 1
        else:
            lo, f_lo = x, fx
            if side == -1:
                f_hi *= 0.5
            side = -1
    return x, _iv.OK


implied_vol_one = njit(cache=True, error_model="numpy")(implied_vol_py)


@sized_kernel(16, error_model="numpy")
def iv_kernel(price, s, k, t, r, q, is_call, ex, amt, grid, out, status):  # pragma: no cover - compiled
    """Fill ``out`` and ``status`` (length n); inputs have length 1 or n. Returns the invalid count."""
    n = out.shape[0]
    sp = int(price.shape[0] == n)
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        p = price[i * sp]
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]])
        if not (inputs_ok(a[0], a[1], a[2], a[3], a[4], 0.0) and p >= 0.0 and p < math.inf):
            bad += 1
            status[i] = _iv.OK
            continue
        out[i], status[i] = implied_vol_one(
            p, a[0], a[1], a[2], a[3], a[4], is_call[i * su[1]], ex, amt, grid
        )
    return bad


# ----------------------------------------------------------------------------------------------
# The validating layer (called by optmm.greeks.american with prepared, flat inputs)
# ----------------------------------------------------------------------------------------------


def _schedule(prep: Any, dividends: Any, i_spot: int) -> _dividend.Schedule:
    """Validate the schedule, and refuse options whose dividends are worth their spot or more."""
    schedule = _dividend.as_schedule(dividends)
    order = np.argsort(schedule.ex, kind="stable")  # the periods between ex-dates, in time order
    schedule = _dividend.Schedule(schedule.ex[order], schedule.amount[order])
    if prep.size:
        spot, t, rate, div_yield = (prep.flat[i_spot + j] for j in (0, 2, 3, 4))
        _dividend.escrowed(spot, t, rate, div_yield, schedule, prep.shape)
    return schedule


def greeks(prep: Any, dividends: Any, accuracy: str, outs: list[np.ndarray]) -> int:
    schedule = _schedule(prep, dividends, 0)
    if not prep.size:
        return 0
    return int(greeks_kernel(*prep.flat, schedule.ex, schedule.amount, GRIDS[accuracy], *outs))


def prices(prep: Any, dividends: Any, accuracy: str, out: np.ndarray) -> int:
    schedule = _schedule(prep, dividends, 0)
    if not prep.size:
        return 0
    return int(price_kernel(*prep.flat, schedule.ex, schedule.amount, GRIDS[accuracy], out))


def implied_vols(prep: Any, dividends: Any, out: np.ndarray, status: np.ndarray) -> int:
    schedule = _schedule(prep, dividends, 1)
    if not prep.size:
        return 0
    return int(iv_kernel(*prep.flat, schedule.ex, schedule.amount, GRIDS["high"], out, status))


__all__ = [
    "GRIDS",
    "Grid",
    "all_one_py",
    "at_py",
    "from_tables_py",
    "greeks",
    "implied_vols",
    "price_one_py",
    "prices",
    "solve_py",
    "sweep_py",
    "tables_py",
]
