"""Numba kernels of the scenario engine: full revaluation of contracts x scenario points.

``reval_segments`` is the one revaluation path of the grids, the stresses and the historical
scenarios (:mod:`optmm.risk.scenarios`). It prices every (contract, point) cell with the operations
of :func:`optmm.greeks.bsm_price`, in the same order, so a cell's price is the same to the bit, and
sums the P&L of each run of contracts (a *segment*: contracts of one underlying within one block) in
the kernel, so nothing of shape (contracts, points) is materialised. What depends only on the
contract and the time left (``sqrt(t)``, the discount factors) is computed once per contract, what
depends on the spot level (the forward, ``log(S/K)``) once per distinct spot move of the underlying
(a grid's 21 spot shocks serve its 231 cells), and the cell itself costs the two normal
probabilities of the price.

``reval_cells`` is the older form (one price per cell into a (contracts, points) array), which the
risk controller uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from optmm.greeks._bsm import bsm_price_scalar, split_price
from optmm.greeks._simd import _f2i, vexp, vlog


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _contract_row(s0, k, t, r, q, is_call, units, base, shift, vol, dt, out):  # pragma: no cover
    for g in range(out.shape[0]):
        price = bsm_price_scalar(s0 * (1.0 + shift[g]), k, t - dt[g], r, q, vol[g], is_call)
        out[g] = units * (price - base)


@njit(cache=True, parallel=True)
def reval_cells(
    spot_u, rate_u, div_u, u, strike, t, is_call, units, base, shift_ug, vol_cg, dt_g, out_cg
):  # pragma: no cover
    """``out_cg[c, g]`` = P&L of contract ``c`` at point ``g``.

    ``spot_u``, ``rate_u``, ``div_u``: per underlying; ``u``: each contract's underlying index;
    ``shift_ug[u, g]``: relative spot shock of underlying ``u`` at point ``g``; ``vol_cg[c, g]``:
    the contract's vol at the point (shift applied, floored at 0); ``dt_g``: years forward.
    """
    for c in prange(out_cg.shape[0]):
        j = u[c]
        _contract_row(
            spot_u[j], strike[c], t[c], rate_u[j], div_u[j], is_call[c], units[c], base[c],
            shift_ug[j], vol_cg[c], dt_g, out_cg[c],
        )  # fmt: skip


class RevalContracts(NamedTuple):
    """Contracts going into :func:`reval_segments`, sorted by underlying; arrays of shape (C,) unless
    said. Only contracts with ``skip`` False are priced (the others are priced elsewhere)."""

    u: np.ndarray  # intp: index of the underlying
    strike: np.ndarray
    t: np.ndarray  # years to settlement at the valuation
    is_call: np.ndarray  # bool
    skip: np.ndarray  # bool
    units: np.ndarray  # quantity x multiplier
    price: np.ndarray  # base price per unit
    base_vol: np.ndarray
    delta: np.ndarray  # base Greeks per unit, for the Taylor P&L
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    vol_table: np.ndarray  # (C, V): the contract's vol before the vol shift, by vol column


class RevalPoints(NamedTuple):
    """Scenario points of one :func:`reval_segments` call (one time step for all of them)."""

    spot: np.ndarray  # (U,) spot of each underlying
    rate: np.ndarray  # (U,)
    div: np.ndarray  # (U,) continuous carry
    shift: np.ndarray  # (U, G) relative spot move of the underlying at each point
    vol_shift: np.ndarray  # (U, G) absolute vol move
    level_shift: np.ndarray  # (U, L) the distinct spot moves of each underlying
    level: np.ndarray  # (U, G) intp: the level of each point
    vol_col: np.ndarray  # (U, G) intp: the column of RevalContracts.vol_table at each point
    dt: float  # years passing at every point


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _discounts(k, tt, r, q):  # pragma: no cover - compiled
    """``sqrt(t)``, ``exp(-q t)`` and ``K exp(-r t)`` of one contract, compiled with the flags of
    the Greeks kernels (the polynomials of ``vexp`` fuse the same way), so the same values."""
    sqt = math.sqrt(tt) if tt > 0.0 else 0.0
    return sqt, vexp(-q * tt), k * vexp(-r * tt)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _levels(s0, k, tt, r, q, dq, level_shift, n_levels, s_l, fq_l, x_l):  # pragma: no cover
    """Spot, discounted forward and log forward moneyness at each spot level of one contract:
    the expressions of ``bsm_price_py``, so the same values. ``tt`` is read from memory (``x_l``
    holds it first) so that ``(r - q) * tt`` stays in the loop and fuses with the addition into
    one FMA, as it does in the Greeks kernels, where ``t`` changes from option to option."""
    for lv in range(n_levels):
        x_l[lv] = tt
    for lv in range(n_levels):
        s = s0 * (1.0 + level_shift[lv])
        s_l[lv] = s
        fq_l[lv] = s * dq
        x_l[lv] = vlog(s / k) + (r - q) * x_l[lv]


@njit(cache=True, error_model="numpy")
def _gather(vol_row, level, vol_col, vol_shift, s_l, fq_l, x_l, vol, s, fq, x):  # pragma: no cover
    """The level values of every point of one contract, contiguous, and its vol there
    (``numpy.maximum(vol + shift, 0)``: a NaN kept, -0.0 kept)."""
    if vol_row.shape[0] == 1:  # one vol for every point (sticky strike): no column to look up
        v0 = vol_row[0]
        for g in range(vol.shape[0]):
            v = v0 + vol_shift[g]
            vol[g] = v if (v >= 0.0) | (v != v) else 0.0
    else:
        for g in range(vol.shape[0]):
            v = vol_row[vol_col[g]] + vol_shift[g]
            vol[g] = v if (v >= 0.0) | (v != v) else 0.0
    for g in range(vol.shape[0]):
        lv = level[g]
        s[g] = s_l[lv]
        fq[g] = fq_l[lv]
        x[g] = x_l[lv]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _cells(kr, sqt, phi, vol, fq, x, price):  # pragma: no cover - compiled
    """Price of one live contract at every point: ``bsm_price_py`` from ``sigma sqrt(t)`` on, with
    both of its branches computed and one selected, so the loop vectorises."""
    for g in range(price.shape[0]):
        sst = vol[g] * sqt
        f = fq[g]
        intrinsic, time_value, _, _, _, _ = split_price(f, kr, x[g], sst, phi)
        priced = intrinsic + time_value
        price[g] = priced if sst > 0.0 else max(phi * (f - kr), 0.0)


@njit(cache=True, error_model="numpy")
def _expired(k, phi, s, price):  # pragma: no cover - compiled
    """Intrinsic value at every point of a contract expired by then."""
    for g in range(price.shape[0]):
        price[g] = max(phi * (s[g] - k), 0.0)


@njit(cache=True, error_model="numpy")
def _add_pnl(units, base, price, acc):  # pragma: no cover - compiled
    """``acc += units * (price - base)``: no fused multiply-add, as numpy adds the cells."""
    for g in range(acc.shape[0]):
        acc[g] += units * (price[g] - base)


@njit(cache=True, error_model="numpy")
def _add_both(units, base, price, delta, gamma, vega, theta, base_vol, spot, shift, vol, dt, acc, tacc):
    # pragma: no cover - compiled
    """:func:`_add_pnl` and ``tacc += units * (delta dS + gamma dS^2 / 2 + vega dvol + theta dt)``
    (in numpy's order) in one pass."""
    for g in range(acc.shape[0]):
        acc[g] += units * (price[g] - base)
        ds = spot * shift[g]
        approx = delta * ds + 0.5 * gamma * ds * ds + vega * (vol[g] - base_vol) + theta * dt
        tacc[g] += units * approx


@njit(cache=True, parallel=True)
def reval_segments(c, p, seg_lo, seg_hi, n_levels, taylor, acc, tacc):  # pragma: no cover
    """Sum the P&L of contracts ``seg_lo[s]:seg_hi[s]`` (one underlying) at every point into
    ``acc[s]`` (and the Taylor P&L into ``tacc[s]`` when ``taylor``), in contract order.

    ``c``: :class:`RevalContracts`; ``p``: :class:`RevalPoints`; ``n_levels[u]``: how many levels of
    ``p.level_shift[u]`` are used. ``acc``, ``tacc``: (S, G), zeroed by the caller.
    """
    n_g = acc.shape[1]
    n_l = p.level_shift.shape[1]
    for s in prange(seg_lo.shape[0]):
        s_l = np.empty(n_l)
        fq_l = np.empty(n_l)
        x_l = np.empty(n_l)
        vol = np.empty(n_g)
        price = np.empty(n_g)
        s_g = np.empty(n_g)
        fq_g = np.empty(n_g)
        x_g = np.empty(n_g)
        for i in range(seg_lo[s], seg_hi[s]):
            if c.skip[i]:
                continue
            j = c.u[i]
            k = c.strike[i]
            r = p.rate[j]
            q = p.div[j]
            phi = 1.0 if c.is_call[i] else -1.0
            tt = c.t[i] - p.dt
            sqt, dq, kr = _discounts(k, tt, r, q)
            _levels(p.spot[j], k, tt, r, q, dq, p.level_shift[j], n_levels[j], s_l, fq_l, x_l)
            _gather(
                c.vol_table[i], p.level[j], p.vol_col[j], p.vol_shift[j], s_l, fq_l, x_l, vol, s_g, fq_g, x_g
            )
            if tt > 0.0:
                _cells(kr, sqt, phi, vol, fq_g, x_g, price)
            else:
                _expired(k, phi, s_g, price)
            if taylor:
                _add_both(
                    c.units[i], c.price[i], price, c.delta[i], c.gamma[i], c.vega[i], c.theta[i],
                    c.base_vol[i], p.spot[j], p.shift[j], vol, p.dt, acc[s], tacc[s],
                )  # fmt: skip
            else:
                _add_pnl(c.units[i], c.price[i], price, acc[s])


@njit(cache=True)
def _mix(h, x):  # pragma: no cover - compiled
    """One step of a 64-bit hash (splitmix64's finaliser over the running hash xor the field)."""
    z = (h ^ x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _bits(x):  # pragma: no cover - compiled
    """A float's bits as a key: equal exactly when the values are (-0.0 as 0.0, every NaN one)."""
    return _f2i(x + 0.0) if x == x else np.int64(0x7FF8000000000000)
