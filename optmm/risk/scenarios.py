"""Scenario P&L by full revaluation: spot x vol grids, named stress scenarios and heatmaps.

Every scenario is priced by full revaluation of the book, each contract on its terms (never by a
Taylor expansion; the Taylor P&L is computed alongside, only to show where it breaks).

How it is fast
--------------
Grids, stresses, single shocks and historical scenarios (:func:`points_pnl`) share one path:

1. Positions are collapsed to unique contracts (underlying, kind, strike, time to settlement, vol
   override, style), summing quantity x multiplier; contracts that net to zero are dropped.
2. Per contract, once: its terms (:func:`optmm.pricing.book_terms`, :func:`optmm.pricing.carry`), base
   vol (override, else the surface), base price and base Greeks (one
   :func:`optmm.pricing.contract_greeks` call).
3. Plain contracts (European, no cash dividends) x scenario points are revalued by one parallel numba
   kernel (``optmm.risk._kernels.reval_segments``) with the operations of
   :func:`optmm.greeks.bsm_price`, so the same prices to the bit: ``sqrt(t)`` and the discount
   factors once per contract, the forward and log-moneyness once per distinct spot move of its
   underlying, the two normal probabilities per cell. The kernel adds up the P&L (and the Taylor
   P&L) of each segment of at most :data:`SEGMENT` contracts of one underlying; the segments are
   then added per underlying in order. Nothing of shape (contracts, points) is materialised. Under
   sticky strike a contract's vol is looked up once and the vol shift applied in the kernel; under
   sticky moneyness the vols of a block of contracts at every spot level of their underlying (at
   most :data:`MAX_CELLS` of them) are looked up per kernel call.
4. Other contracts (American, or on cash dividends) are priced point by point by
   :func:`optmm.pricing.contract_price`, spot shocked, ``t - days / 365`` left and the dividends seen
   ``days / 365`` later (one gone ex by then is dropped), vols as for plain ones.

Shocks
------
A :class:`Shock` moves spot by a relative amount (``spot=-0.2`` is -20%), vol by an absolute amount
(``vol=0.05`` is +5 vol points) and calendar time forward by ``days``; it applies to one underlying or
to all. With ``beta_weighted=True`` the spot shock is a move of ``market.index`` and each underlying
moves ``beta * spot`` (betas from ``market.beta``; the index itself has beta 1 unless given).

* Vol of a surface-priced contract under a shock: ``market.vols(underlying, strike, t, spot_shift=s)``
  (the market's sticky rule: sticky strike keeps the vol of the strike, sticky moneyness the vol of
  the moneyness) plus the vol shift, floored at 0. ``t`` is the contract's base time to expiry: the
  contract keeps its vol as time passes (no roll-down along the term structure).
* Vol of a contract with a vol override: override + vol shift, floored at 0.
* Time: ``t`` shrinks by ``days / 365`` for every contract of the book (time passes for all, even
  when the spot and vol shocks target one underlying); an option that expires within the shock is
  worth its intrinsic value at the shocked spot.
* Stock positions move with spot: P&L = quantity x multiplier x spot x shock. Carry (financing,
  dividends received) over ``days`` is not included. An option on cash dividends is priced at the
  point with the dividends still to go ex ``days / 365`` after the valuation (the escrowed model),
  the shocked spot being the spot at that point.

Named stress scenarios (TOML)
-----------------------------
A file under ``scenarios/stress/`` holds a name, a description and one or more legs; each leg is a
scenario from today's market (legs do not accumulate). A stress's P&L is its WORST leg's book P&L
(the most negative), reported with the leg and its driver. The unit of every shock is in its
field's name, and a magnitude outside a plausible range is refused::

    name = "Flash crash"                      # required, text
    description = "Spot -7% with vol +15..."  # optional, text
    [[legs]]                                  # one table per leg, at least one
    label = "crash"                           # optional, text (default "leg 1", "leg 2", ...)
    spot_pct = -7                             # spot move in percent, -100 < spot_pct <= 100 (default 0)
    vol_pts = 15                              # vol move in vol points, -100..100 (default 0)
    days = 0                                  # calendar days forward, 0..3650 (default 0)
    beta_weighted = false                     # spot_pct is an index move scaled by beta (default false)
    # underlying = "AAPL"                     # only this underlying (default: all)
    [[legs]]
    label = "recovery"
    spot_pct = -1
    vol_pts = 3

Files of the older form, with ``spot`` (a fraction: -0.07 = -7%) and ``vol`` (decimals of vol:
0.15 = +15 points), are still read where the number cannot be mistaken: a magnitude of 1 or more
(``spot = 5``: +500%, or 5%?) is refused with a message naming the field to use instead.

Unknown keys and values of the wrong type or range are refused with a ``ValueError`` naming the
file, the leg and the field.

Drivers
-------
The driver of a scenario (a grid cell, a stress leg) is the underlying that contributes most to
its book P&L in that P&L's direction: the biggest loser when the book loses, the biggest winner when
it gains (None when the book's P&L is exactly 0 or the book is empty).

Non-finite results
------------------
Every P&L is checked: a scenario whose P&L is not a finite number (an overflow from huge inputs)
raises ``ValueError`` naming the underlying and the cell or stress leg, rather than returning inf
or NaN as a figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import pandas as pd

from optmm import pricing
from optmm._config import Config, read_toml, setting
from optmm._io import FIGURE_FORMATS as PLOT_FORMATS
from optmm._io import atomic_target
from optmm._io import figure_format as plot_format
from optmm.book import Book, Kind
from optmm.codes import BOOK_LABEL
from optmm.market import Market, Sticky
from optmm.risk._kernels import RevalContracts, RevalPoints, reval_segments
from optmm.risk._reval import contract_keys, stable_order, underlying_codes
from optmm.risk.exposures import beta_of, market_vols, surface_vols
from optmm.typing import FloatArray
from optmm.units import DAYS_PER_YEAR

MAX_CELLS = 1 << 20
"""Most contract x scenario-point cells revalued in one kernel call.

A handful of float64 arrays of this many cells (vols, P&L, the Taylor terms) are alive at once."""

BOOK = BOOK_LABEL
"""Column (or row) name of whole-book figures in the stress tables."""


# --------------------------------------------------------------------------------------------------
# Shocks


@dataclass(frozen=True, slots=True)
class Shock(Config):
    """One scenario: a spot move, a vol move and time passing, from today's market.

    Parameters
    ----------
    spot : float
        Relative spot shock, > -1 (``-0.2`` = -20%). With ``beta_weighted`` a move of the index.
    vol : float
        Absolute vol shock, in decimals of vol (``0.05`` = +5 vol points); shocked vols are floored at 0.
    days : float, default 0
        Calendar days forward, >= 0: every option's time to expiry shrinks by ``days / 365``.
    underlying : str or None, default None
        Shock only this underlying's spot and vol (None: all underlyings). Time passes for all.
    beta_weighted : bool, default False
        ``spot`` is an index move: each underlying moves ``beta * spot`` (``market.beta``,
        ``market.index`` required).
    """

    spot: float = setting(gt=-1, doc="a relative move; -1 is a spot of 0")
    vol: float = setting()
    days: float = setting(0.0, ge=0, unit="days")
    underlying: str | None = None
    beta_weighted: bool = False


@dataclass(frozen=True, slots=True)
class _Points:
    """Scenario points as per-underlying shifts: columns are points."""

    spot_shift: FloatArray  # (U, G) relative
    vol_shift: FloatArray  # (U, G) absolute
    days: FloatArray  # (G,)


def _shock_name(g: int) -> str:
    return f"shock {g}"


def _points(
    contracts: _Contracts, shocks: Sequence[Shock], where: Callable[[int], str] = _shock_name
) -> _Points:
    """Turn shocks into per-underlying shifts, refusing unknown underlyings and missing betas.

    ``where(g)`` names shock ``g`` in the errors (a grid, a stress file's leg).
    """
    market = contracts.market
    unds = contracts.underlyings
    n_u, n_g = len(unds), len(shocks)
    spot_shift = np.zeros((n_u, n_g))
    vol_shift = np.zeros((n_u, n_g))
    days = np.array([s.days for s in shocks], dtype=np.float64).reshape(n_g)
    betas: FloatArray | None = None
    for g, s in enumerate(shocks):
        if s.underlying is None:
            target = np.ones(n_u, dtype=bool)
        else:
            if s.underlying not in market.spot:
                raise ValueError(
                    f"{where(g)}, field 'underlying': {s.underlying!r} has no market data in "
                    f"{market.source} (it has {', '.join(sorted(market.spot))})"
                )
            target = unds == s.underlying  # all False if the book holds none of it
        move = np.full(n_u, s.spot)
        if s.beta_weighted:
            if betas is None:
                if market.index is None:
                    raise ValueError(
                        f"{where(g)}, field 'beta_weighted': a beta-weighted shock needs the index it "
                        f"moves, and {market.source} sets no `index`"
                    )
                try:
                    betas = beta_of(market, list(unds), market.index)
                except ValueError as exc:
                    raise ValueError(f"{where(g)}, field 'beta_weighted': {exc} ({market.source})") from None
            move = betas * s.spot
        spot_shift[:, g] = np.where(target, move, 0.0)
        vol_shift[:, g] = np.where(target, s.vol, 0.0)
    bad = np.argwhere(spot_shift <= -1.0)
    if bad.size:
        u, g = bad[0]
        raise ValueError(
            f"{where(int(g))}: moves {unds[u]} by {100 * spot_shift[u, g]:+.4g}% (beta x index move): "
            "a spot at or below 0; use a smaller index move"
        )
    return _Points(spot_shift, vol_shift, days)


def driver_of(pnl: FloatArray, underlyings: Sequence[str]) -> str | None:
    """The underlying that contributes most to ``pnl.sum()`` in its direction.

    Parameters
    ----------
    pnl : ndarray of shape (n_underlyings,)
        P&L of each underlying in one scenario, in currency.
    underlyings : sequence of str
        Their names.

    Returns
    -------
    str or None
        The biggest loser if the total is negative, the biggest winner if it is positive; None if
        the total is 0 (or there is no underlying).
    """
    total = float(np.sum(pnl))
    if not len(underlyings) or total == 0.0:
        return None
    return str(underlyings[int(np.argmin(pnl) if total < 0.0 else np.argmax(pnl))])


def check_finite(
    pnl: FloatArray,
    underlyings: Sequence[str],
    where: Callable[[int], str] = _shock_name,
    what: str = "P&L",
) -> None:
    """Refuse a (U, G) P&L array with a value that is not finite, naming the underlying and the point.

    The book's sum over underlyings is checked too (finite parts can overflow when added).
    """
    pnl = np.asarray(pnl, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(pnl))
    if bad.size:
        u, g = (int(x) for x in bad[0])
        raise ValueError(
            f"{where(g)}: {what} of {underlyings[u]} is not a finite number; "
            "a quantity, multiplier, strike or spot is too large for the arithmetic"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        book = pnl.sum(axis=0)
    bad_g = np.flatnonzero(~np.isfinite(book))
    if bad_g.size:
        g = int(bad_g[0])
        raise ValueError(
            f"{where(g)}: the book's {what} is not a finite number: the underlyings' "
            "figures overflow when added"
        )


# --------------------------------------------------------------------------------------------------
# Collapsed book


@dataclass(frozen=True, slots=True)
class _Contracts:
    """A book collapsed to unique option contracts, sorted by underlying, plus stock per underlying."""

    market: Market
    underlyings: np.ndarray  # (U,) object, sorted
    carry: pricing.Carry  # of the underlyings
    spot: FloatArray  # (U,)
    stock_units: FloatArray  # (U,) shares held (quantity x multiplier)
    u: np.ndarray  # (C,) intp, non-decreasing
    strike: FloatArray  # (C,)
    t: FloatArray  # (C,) years to settlement
    is_call: np.ndarray  # (C,) bool
    american: np.ndarray  # (C,) bool
    override: FloatArray  # (C,) NaN where the surface prices the contract
    units: FloatArray  # (C,) sum of quantity x multiplier
    base_vol: FloatArray  # (C,)
    price: FloatArray  # (C,) base price per unit
    delta: FloatArray  # (C,) base Greeks per unit (plain partial derivatives)
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    n_positions: int = 0

    @property
    def rate(self) -> FloatArray:
        return self.carry.rate

    @property
    def div_yield(self) -> FloatArray:
        return self.carry.q

    @property
    def surface_priced(self) -> np.ndarray:
        """Contracts whose shocked vol comes from the surface (no override, not expired)."""
        return np.isnan(self.override) & (self.t > 0.0)

    @property
    def plain(self) -> np.ndarray:
        """Contracts priced by the plain formula in the kernel (:func:`optmm.pricing.plain`)."""
        return pricing.plain(self.carry, self.u, self.american)


# Huge (finite) inputs can overflow in the arithmetic below: numpy is told not to warn, and every
# P&L is checked with check_finite instead, which names the underlying and the scenario.
@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _collapse(book: Book, market: Market) -> _Contracts:
    book.check_market(market)
    underlyings, uidx = underlying_codes(book)
    n_u = len(underlyings)
    carry = pricing.carry(market, list(underlyings))
    spot = np.array([market.spot[u] for u in underlyings], dtype=np.float64)
    kind = np.asarray(book.kind)
    qm = np.asarray(book.quantity, dtype=np.float64) * np.asarray(book.multiplier, dtype=np.float64)

    is_stock = kind == Kind.STOCK
    stock_units = np.bincount(uidx[is_stock], weights=qm[is_stock], minlength=n_u).astype(np.float64)

    t_all, american_all = pricing.book_terms(book, market, uidx)
    strike_all = np.asarray(book.strike, dtype=np.float64)
    override_all = np.asarray(book.vol, dtype=np.float64)
    u_all, kind_all, qm_all = uidx, kind, qm
    if is_stock.any():  # the option rows
        opt = np.flatnonzero(~is_stock)
        strike_all, override_all, t_all, american_all = (
            strike_all[opt],
            override_all[opt],
            t_all[opt],
            american_all[opt],
        )
        u_all, kind_all, qm_all = uidx[opt], kind[opt], qm[opt]
    key, rep = contract_keys(u_all, kind_all, strike_all, t_all, override_all, american_all)
    units = np.bincount(key, weights=qm_all, minlength=rep.size)
    keep = units != 0.0
    rep, units = rep[keep], units[keep]
    order = stable_order(u_all[rep], n_u)
    rep, units = rep[order], units[order]

    u = u_all[rep]
    strike = strike_all[rep]
    override = override_all[rep]
    is_call = kind_all[rep] == Kind.CALL
    t = t_all[rep]
    american = american_all[rep]
    base_vol = override.copy()
    surf = np.flatnonzero(np.isnan(override) & (t > 0.0))
    surface_vols(market, underlyings, u, strike, t, surf, base_vol)
    base_vol[np.isnan(base_vol)] = 0.0  # expired without override: worth intrinsic, vol irrelevant
    g = pricing.contract_greeks(carry, u, spot[u], strike, t, base_vol, is_call, american)
    return _Contracts(
        market=market,
        underlyings=underlyings,
        carry=carry,
        spot=spot,
        stock_units=stock_units,
        u=u,
        strike=strike,
        t=t,
        is_call=is_call,
        american=american,
        override=override,
        units=units,
        base_vol=base_vol,
        price=np.asarray(g.price, dtype=np.float64).reshape(-1),
        delta=np.asarray(g.delta, dtype=np.float64).reshape(-1),
        gamma=np.asarray(g.gamma, dtype=np.float64).reshape(-1),
        vega=np.asarray(g.vega, dtype=np.float64).reshape(-1),
        theta=np.asarray(g.theta, dtype=np.float64).reshape(-1),
        n_positions=len(book),
    )


# --------------------------------------------------------------------------------------------------
# Revaluation


class _Levels(NamedTuple):
    """The distinct spot moves of each underlying over a set of points."""

    shift: FloatArray  # (U, L) the distinct moves (padded with 0)
    used: np.ndarray  # (U,) how many of each row are used
    of_point: np.ndarray  # (U, G) intp: the level of each point


def _levels(spot_shift: FloatArray) -> _Levels:
    n_u, n_g = spot_shift.shape
    rows = [np.unique(spot_shift[j], return_inverse=True) for j in range(n_u)]
    count = np.array([r[0].size for r in rows], dtype=np.intp)
    shift = np.zeros((n_u, max(1, int(count.max(initial=0)))))
    index = np.zeros((n_u, n_g), dtype=np.intp)
    for j, (uniq, inv) in enumerate(rows):
        shift[j, : uniq.size] = uniq
        index[j] = inv.reshape(-1)
    return _Levels(shift, count, index)


def _vol_table(c: _Contracts, rows: np.ndarray, lv: _Levels) -> FloatArray:
    """Vols of contracts ``rows`` (sorted) before the vol shift, one column per spot level of their
    underlying (sticky moneyness: the surface at each level's spot move; one surface call per
    underlying and level, vectorised over its contracts), shape (rows.size, L)."""
    table = np.repeat(c.base_vol[rows, None], lv.shift.shape[1], axis=1)
    at = np.flatnonzero(c.surface_priced[rows])  # sorted by underlying, as the contracts
    if at.size == 0:
        return table
    us, starts = np.unique(c.u[rows[at]], return_index=True)
    bounds = [*starts.tolist(), at.size]
    for j, u in enumerate(us.tolist()):
        sel = at[bounds[j] : bounds[j + 1]]
        r = rows[sel]
        for k in range(int(lv.used[u])):
            table[sel, k] = market_vols(
                c.market, c.underlyings[u], c.strike[r], c.t[r], spot_shift=float(lv.shift[u, k])
            )
    return table


SEGMENT = 256
"""Most contracts whose P&L the kernel adds one after the other (a segment, of one underlying);
segments are summed in parallel, then added per underlying in order."""


def _segments(u: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments of the contracts: each underlying's run cut every ``length`` contracts from its
    start, so that an underlying's sums do not depend on the other underlyings of the book (a
    partition of the book by underlying gives the same figures); ``(starts, ends)``."""
    n = u.size
    run_start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    run_len = np.diff(np.r_[run_start, n])
    pieces = -(-run_len // length)
    offsets = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    starts = np.repeat(run_start, pieces) + offsets * length
    return starts, np.minimum(starts + length, np.repeat(run_start + run_len, pieces))


def _blocks(starts: np.ndarray, ends: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive segments grouped into blocks of at most ``size`` contracts (or one segment):
    ``(first segment, last segment + 1)`` of each."""
    out: list[tuple[int, int]] = []
    first = 0
    for i in range(1, starts.size + 1):
        if i == starts.size or ends[i] - starts[first] > size:
            out.append((first, i))
            first = i
    return out


def _kernel_inputs(
    c: _Contracts, lo: int, hi: int, skip: np.ndarray, vol_table: FloatArray
) -> RevalContracts:
    return RevalContracts(
        u=c.u[lo:hi], strike=c.strike[lo:hi], t=c.t[lo:hi], is_call=c.is_call[lo:hi], skip=skip[lo:hi],
        units=c.units[lo:hi], price=c.price[lo:hi], base_vol=c.base_vol[lo:hi], delta=c.delta[lo:hi],
        gamma=c.gamma[lo:hi], vega=c.vega[lo:hi], theta=c.theta[lo:hi], vol_table=vol_table,
    )  # fmt: skip


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _revalue(c: _Contracts, pts: _Points, *, taylor: bool = True) -> tuple[FloatArray, FloatArray | None]:
    """Full-revaluation P&L (and Taylor P&L) per underlying and point: arrays of shape (U, G).

    Plain contracts go through :func:`~optmm.risk._kernels.reval_segments` (one call per time step,
    and per block of contracts under sticky moneyness, whose vols depend on the spot move); the
    others through :func:`optmm.pricing.contract_price`, point by point.
    """
    n_u, n_g = len(c.underlyings), pts.days.size
    pnl = np.zeros((n_u, n_g))
    tay = np.zeros((n_u, n_g)) if taylor else None
    # stock: linear in spot, exact to first order
    stock = (c.stock_units * c.spot)[:, None] * pts.spot_shift
    pnl += stock
    if tay is not None:
        tay += stock
    n_c = c.u.size
    if n_c == 0 or n_g == 0:
        return pnl, tay
    plain = c.plain
    skip = ~plain
    step = max(1, MAX_CELLS // n_g)
    sticky_strike = c.market.sticky is Sticky.STRIKE
    lv = _levels(pts.spot_shift)
    vol_col = np.zeros((n_u, n_g), dtype=np.intp) if sticky_strike else lv.of_point
    seg_lo, seg_hi = _segments(c.u, min(SEGMENT, step))
    # sticky moneyness: a block's vols at every spot level are looked up at once, <= MAX_CELLS of them
    blocks = [(0, seg_lo.size)] if sticky_strike else _blocks(seg_lo, seg_hi, step)
    for days in np.unique(pts.days).tolist():
        cols = np.flatnonzero(pts.days == days)
        sub = np.ix_(np.arange(n_u), cols)
        p = RevalPoints(
            spot=c.spot, rate=c.rate, div=c.div_yield,
            shift=np.ascontiguousarray(pts.spot_shift[sub]),
            vol_shift=np.ascontiguousarray(pts.vol_shift[sub]),
            level_shift=lv.shift, level=np.ascontiguousarray(lv.of_point[sub]),
            vol_col=np.ascontiguousarray(vol_col[sub]), dt=days / DAYS_PER_YEAR,
        )  # fmt: skip
        for first, last in blocks:
            lo, hi = int(seg_lo[first]), int(seg_hi[last - 1])
            if not plain[lo:hi].any():
                continue
            table = c.base_vol[lo:hi, None] if sticky_strike else _vol_table(c, np.arange(lo, hi), lv)
            acc = np.zeros((last - first, cols.size))
            tacc = np.zeros((last - first, cols.size) if taylor else (0, 0))
            reval_segments(
                _kernel_inputs(c, lo, hi, skip, np.ascontiguousarray(table)), p, seg_lo[first:last] - lo,
                seg_hi[first:last] - lo, lv.used, taylor, acc, tacc,
            )  # fmt: skip
            for s, j in enumerate(c.u[seg_lo[first:last]].tolist()):
                pnl[j, cols] += acc[s]
                if tay is not None:
                    tay[j, cols] += tacc[s]
    if skip.any():
        _revalue_terms(c, pts, lv, np.flatnonzero(skip), pnl, tay)
    return pnl, tay


def _revalue_terms(
    c: _Contracts, pts: _Points, lv: _Levels, rows: np.ndarray, pnl: FloatArray, tay: FloatArray | None
) -> None:
    """Add the P&L of contracts ``rows`` (not plain: American, or on cash dividends) priced on their
    terms by :func:`optmm.pricing.contract_price` at each point: spot moved, ``t - days / 365`` left,
    the dividends seen ``days / 365`` later (those gone ex by then dropped), vols as for plain ones.

    The points that let the same time pass are priced in one call (every cell of a grid at once):
    the engines' cost per call, not per option, dominates small books."""
    u = c.u[rows]
    n_u = len(c.underlyings)
    table = None if c.market.sticky is Sticky.STRIKE else _vol_table(c, rows, lv)
    units = c.units[rows]
    for days in np.unique(pts.days).tolist():
        g = np.flatnonzero(pts.days == days)  # the points of this time step
        dt = float(days) / DAYS_PER_YEAR
        shift = pts.spot_shift[u][:, g]  # (rows, points)
        if table is None:
            vol0 = np.broadcast_to(c.base_vol[rows, None], shift.shape)
        else:
            vol0 = table[np.arange(rows.size)[:, None], lv.of_point[u][:, g]]
        vol = np.maximum(vol0 + pts.vol_shift[u][:, g], 0.0)
        price = pricing.contract_price(
            c.carry, u[:, None], c.spot[u, None] * (1.0 + shift), c.strike[rows, None],
            c.t[rows, None] - dt, vol, c.is_call[rows, None], c.american[rows, None], elapsed=dt,
        ).reshape(shift.shape)  # fmt: skip
        cell = units[:, None] * (price - c.price[rows, None])
        for j, gg in enumerate(g.tolist()):
            pnl[:, gg] += np.bincount(u, weights=cell[:, j], minlength=n_u)
        if tay is not None:
            ds = c.spot[u, None] * shift
            approx = (
                c.delta[rows, None] * ds
                + 0.5 * c.gamma[rows, None] * ds * ds
                + c.vega[rows, None] * (vol - c.base_vol[rows, None])
                + c.theta[rows, None] * dt
            )
            for j, gg in enumerate(g.tolist()):
                tay[:, gg] += np.bincount(u, weights=units * approx[:, j], minlength=n_u)


@np.errstate(over="ignore", invalid="ignore")
def _shock_frame(underlyings: Sequence[str], pnl: FloatArray) -> pd.DataFrame:
    """(U, G) P&L as a frame: one row per point, one column per underlying, then ``book``."""
    frame = pd.DataFrame(pnl.T, columns=pd.Index(list(underlyings), name="underlying"))
    frame[BOOK] = pnl.sum(axis=0)
    return frame


def scenario_pnl(book: Book, market: Market, shocks: Sequence[Shock]) -> pd.DataFrame:
    """Full-revaluation P&L of a book under each of a list of shocks.

    Parameters
    ----------
    book : Book
        The positions.
    market : Market
        Today's market (spots, rates, yields, surfaces; betas and index for beta-weighted shocks).
    shocks : sequence of Shock
        The scenarios, each from today's market.

    Returns
    -------
    pandas.DataFrame
        One row per shock (in order, index 0..n-1), one column per underlying of the book (sorted),
        then ``"book"``: P&L in currency (shocked value minus today's value).

    Raises
    ------
    ValueError
        Missing market data, a shock on an underlying without market data, a beta-weighted shock
        without ``market.index`` or with an underlying that has no beta, a (beta-scaled) spot
        move of -100% or worse, or a P&L that is not finite (overflow from huge inputs).
    """
    underlyings, pnl = shock_pnl(book, market, shocks)
    check_finite(pnl, underlyings)
    return _shock_frame(underlyings, pnl)


def shock_pnl(book: Book, market: Market, shocks: Sequence[Shock]) -> tuple[list[str], FloatArray]:
    """The book's underlyings (sorted) and their full-revaluation P&L under each shock, shape
    (n_underlyings, n_shocks), NOT checked for finiteness: the callers (:func:`scenario_pnl`,
    :func:`stress_result`, the distributed engine) check it and name the scenario."""
    c = _collapse(book, market)
    pnl, _ = _revalue(c, _points(c, list(shocks)), taylor=False)
    return [str(u) for u in c.underlyings], pnl


def points_pnl(
    book: Book,
    market: Market,
    spot_shift: pd.DataFrame,
    vol_shift: pd.DataFrame,
    days: float = 0.0,
    where: Callable[[int], str] = _shock_name,
) -> pd.DataFrame:
    """Full-revaluation P&L of a book under scenarios that move each underlying its own way.

    Parameters
    ----------
    book : Book
    market : Market
    spot_shift : pandas.DataFrame
        One row per scenario, one column per underlying: its relative spot move (> -1). An
        underlying of the book without a column does not move.
    vol_shift : pandas.DataFrame
        Same rows (same index, in the same order): absolute vol moves (0.01 = +1 vol point) per
        underlying; shocked vols are floored at 0.
    days : float
        Calendar days passing in every scenario (>= 0).
    where : callable
        ``where(i)`` names scenario ``i`` in errors.

    Returns
    -------
    pandas.DataFrame
        The index of ``spot_shift``; one column per underlying of the book (sorted), then ``"book"``:
        P&L in currency. A figure that is not finite is refused (ValueError naming the scenario).
    """
    if not spot_shift.index.equals(vol_shift.index):
        raise ValueError("points_pnl: spot_shift and vol_shift must have the same index (the scenarios)")
    c = _collapse(book, market)
    n_g = len(spot_shift)
    unds = [str(u) for u in c.underlyings]
    spot = np.zeros((len(unds), n_g))
    vol = np.zeros((len(unds), n_g))
    for j, u in enumerate(unds):
        if u in spot_shift.columns:
            spot[j] = np.asarray(spot_shift[u], dtype=np.float64)
        if u in vol_shift.columns:
            vol[j] = np.asarray(vol_shift[u], dtype=np.float64)
    bad = np.argwhere(~np.isfinite(spot) | (spot <= -1.0) | ~np.isfinite(vol))
    if bad.size:
        j, g = (int(x) for x in bad[0])
        raise ValueError(
            f"{where(g)}: the spot move {spot[j, g]!r} / vol move {vol[j, g]!r} of {unds[j]} "
            "must be finite, the spot move > -1"
        )
    if not (math.isfinite(days) and days >= 0.0):
        raise ValueError(f"points_pnl: days must be finite and >= 0, got {days!r}")
    pnl, _ = _revalue(c, _Points(spot, vol, np.full(n_g, float(days))), taylor=False)
    check_finite(pnl, unds, where)
    frame = _shock_frame(unds, pnl)
    frame.index = spot_shift.index
    return frame


# --------------------------------------------------------------------------------------------------
# Grids


class Worst(NamedTuple):
    """The worst cell of a grid: its shocks, the book P&L there and its driver."""

    spot_shock: float
    vol_shock: float
    pnl: float
    driver: str | None


def _cell_namer(spots: Sequence[float], vols: Sequence[float]) -> Callable[[int], str]:
    """Names point ``g`` of a grid (spot-major) in messages by its shocks."""
    n_v = len(vols)
    return lambda g: f"grid cell spot {100 * spots[g // n_v]:+.4g}%, vol {100 * vols[g % n_v]:+.4g}pt"


def _check_shocks(name: str, values: Iterable[float]) -> tuple[float, ...]:
    try:
        arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be numbers ({exc})") from None
    if arr.size == 0:
        raise ValueError(f"{name}: at least one shock is needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite, got {arr.tolist()}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name}: duplicated shocks in {arr.tolist()}")
    return tuple(arr.tolist())


@dataclass(frozen=True)
class GridResult:
    """P&L of a book over a spot x vol grid, per underlying, by full revaluation and by Taylor.

    Attributes
    ----------
    pnl : pandas.DataFrame
        Long form, one row per (spot_shock, vol_shock, underlying): columns ``spot_shock``
        (relative), ``vol_shock`` (absolute vol), ``days``, ``underlying`` and ``pnl`` (currency).
        Summing ``pnl`` over underlyings gives the book.
    spot_shocks, vol_shocks : tuple of float
        The grid axes, as given. With ``beta_weighted`` the spot shocks are index moves.
    days : float
        Calendar days forward in every cell.
    underlying : str or None
        The underlying shocked (None: all).
    beta_weighted : bool
        Whether spot shocks are index moves scaled by each underlying's beta.
    underlyings : tuple of str
        The book's underlyings (sorted).
    valuation : numpy.datetime64 or None
        The market's valuation date.

    Raises
    ------
    ValueError
        On construction, if a P&L (full or Taylor, of an underlying or of the book) is not finite:
        the message names the underlying and the cell.
    """

    pnl: pd.DataFrame
    spot_shocks: tuple[float, ...]
    vol_shocks: tuple[float, ...]
    days: float
    underlying: str | None
    beta_weighted: bool
    underlyings: tuple[str, ...]
    _full: FloatArray = field(repr=False)  # (U, n_spot, n_vol)
    _taylor: FloatArray = field(repr=False)
    valuation: np.datetime64 | None = None

    def __post_init__(self) -> None:
        cell = _cell_namer(self.spot_shocks, self.vol_shocks)
        unds = list(self.underlyings)
        n_g = len(self.spot_shocks) * len(self.vol_shocks)
        check_finite(self._full.reshape(len(unds), n_g), unds, cell, "P&L")
        check_finite(self._taylor.reshape(len(unds), n_g), unds, cell, "Taylor P&L")

    def label(self) -> str:
        """What the grid shocked, in words: all underlyings, one, or index moves x beta."""
        what = "shocked: all underlyings" if self.underlying is None else f"shocked: {self.underlying} only"
        return what + (", spot shocks are index moves x beta" if self.beta_weighted else "")

    def _cube(self, cube: FloatArray, underlying: str | None) -> pd.DataFrame:
        if underlying is None:
            values = cube.sum(axis=0)
        else:
            if underlying not in self.underlyings:
                raise ValueError(
                    f"{underlying!r} is not an underlying of the book ({', '.join(self.underlyings)})"
                )
            values = cube[self.underlyings.index(underlying)]
        return pd.DataFrame(
            values,
            index=pd.Index(self.spot_shocks, name="spot_shock"),
            columns=pd.Index(self.vol_shocks, name="vol_shock"),
        )

    def matrix(self, underlying: str | None = None) -> pd.DataFrame:
        """Full-revaluation P&L as a 2-D table.

        Parameters
        ----------
        underlying : str, optional
            One underlying's P&L; default the whole book's.

        Returns
        -------
        pandas.DataFrame
            Index ``spot_shock`` (relative), columns ``vol_shock`` (absolute vol), P&L in currency.
        """
        return self._cube(self._full, underlying)

    @property
    def taylor(self) -> pd.DataFrame:
        """Book P&L from the Taylor expansion at today's Greeks, shaped like :meth:`matrix`.

        Per contract: delta dS + gamma dS^2 / 2 + vega dsigma + theta dt, with dsigma the contract's
        actual vol change (sticky rule, shift, floor) and dt = days / 365. It is exact to second
        order in spot and first order in vol: its gap to :meth:`matrix` shows where it breaks.
        """
        return self._cube(self._taylor, None)

    def taylor_matrix(self, underlying: str | None = None) -> pd.DataFrame:
        """Taylor P&L of one underlying (or the book), shaped like :meth:`matrix`."""
        return self._cube(self._taylor, underlying)

    def worst(self) -> Worst:
        """The cell with the lowest book P&L and its driver (:func:`driver_of`: the underlying that
        contributes most to that P&L in its direction).

        Returns
        -------
        Worst
            ``(spot_shock, vol_shock, pnl, driver)``; ``driver`` is None for an empty book.
        """
        book = self._full.sum(axis=0)
        i, j = np.unravel_index(int(np.argmin(book)), book.shape)
        driver = driver_of(self._full[:, i, j], self.underlyings)
        return Worst(self.spot_shocks[i], self.vol_shocks[j], float(book[i, j]), driver)


def scenario_grid(
    book: Book,
    market: Market,
    *,
    spot_shocks: Iterable[float],
    vol_shocks: Iterable[float],
    days: float = 0.0,
    underlying: str | None = None,
    beta_weighted: bool = False,
) -> GridResult:
    """Full-revaluation P&L of a book over every (spot shock, vol shock) pair.

    Parameters
    ----------
    book : Book
        The positions.
    market : Market
        Today's market; its sticky rule decides how surface vols move with spot.
    spot_shocks : iterable of float
        Relative spot moves (``-0.1`` = -10%), distinct, each > -1. Index moves if ``beta_weighted``.
    vol_shocks : iterable of float
        Absolute vol moves (``0.05`` = +5 vol points), distinct; shocked vols are floored at 0.
    days : float, default 0
        Calendar days forward in every cell (for the whole book).
    underlying : str, optional
        Shock only this underlying (time still passes for all); default all underlyings.
    beta_weighted : bool, default False
        Each underlying moves ``beta * spot_shock`` (``market.beta``, ``market.index``).

    Returns
    -------
    GridResult
        Long-form ``pnl`` per underlying, :meth:`GridResult.matrix`, :attr:`GridResult.taylor` and
        :meth:`GridResult.worst`.

    Raises
    ------
    ValueError
        Empty, duplicated or non-finite shocks, and every error of :class:`Shock` and
        :func:`scenario_pnl`.

    Notes
    -----
    See the module docstring for the vol and time rules and for how the revaluation is batched.

    Examples
    --------
    >>> import numpy as np
    >>> from optmm.book import Book, Kind
    >>> from optmm.market import Market, Sticky
    >>> from optmm.surface import FlatSurface
    >>> book = Book(id=np.array(["p1"], dtype=object), underlying=np.array(["XYZ"], dtype=object),
    ...     kind=np.array([Kind.PUT], dtype=np.int8), strike=np.array([100.0]),
    ...     expiry=np.array(["2024-07-01"], dtype="datetime64[D]"), quantity=np.array([10.0]),
    ...     multiplier=np.array([100.0]), vol=np.array([np.nan]), source="doc")
    >>> market = Market(valuation=np.datetime64("2024-01-01"), spot={"XYZ": 100.0}, rate={"XYZ": 0.03},
    ...     div_yield={"XYZ": 0.0}, surface={"XYZ": FlatSurface(vol=0.2)}, beta={}, index=None,
    ...     sticky=Sticky.STRIKE, source="doc")
    >>> grid = scenario_grid(book, market, spot_shocks=[-0.1, 0.0, 0.1], vol_shocks=[-0.05, 0.05])
    >>> print(grid.matrix().round(0).to_string())  # doctest: +NORMALIZE_WHITESPACE
    vol_shock    -0.05    0.05
    spot_shock
    -0.1        4728.0  6859.0
     0.0       -1385.0  1387.0
     0.1       -4028.0 -1905.0
    >>> grid.worst().driver
    'XYZ'
    """
    spots = _check_shocks("spot_shocks", spot_shocks)
    vols = _check_shocks("vol_shocks", vol_shocks)
    shocks = [
        Shock(s, v, days=days, underlying=underlying, beta_weighted=beta_weighted)
        for s in spots
        for v in vols
    ]
    c = _collapse(book, market)
    full, tay = _revalue(c, _points(c, shocks, _cell_namer(spots, vols)), taylor=True)
    assert tay is not None
    shape = (len(c.underlyings), len(spots), len(vols))
    return _grid_result(
        full.reshape(shape),
        tay.reshape(shape),
        underlyings=tuple(str(u) for u in c.underlyings),
        spot_shocks=spots,
        vol_shocks=vols,
        days=float(days),
        underlying=underlying,
        beta_weighted=beta_weighted,
        valuation=market.valuation,
    )


def _grid_result(full: FloatArray, taylor: FloatArray, **attrs: Any) -> GridResult:
    """The :class:`GridResult` of the (U, n_spot, n_vol) full-revaluation and Taylor P&L cubes, with
    its long-form ``pnl`` table; ``attrs`` are its other attributes (``spot_shocks`` to ``valuation``)."""
    n_u, n_s, n_v = full.shape
    long = pd.DataFrame(
        {
            "spot_shock": np.tile(np.repeat(attrs["spot_shocks"], n_v), n_u),
            "vol_shock": np.tile(np.tile(attrs["vol_shocks"], n_s), n_u),
            "days": attrs["days"],
            "underlying": np.repeat(np.array(attrs["underlyings"], dtype=object), n_s * n_v),
            "pnl": full.reshape(-1),
        }
    )
    return GridResult(pnl=long, _full=full, _taylor=taylor, **attrs)


# --------------------------------------------------------------------------------------------------
# Named stresses


@dataclass(frozen=True)
class Stress:
    """A named stress scenario: one or more legs, each a :class:`Shock` from today's market.

    Attributes
    ----------
    name, description : str
        From the file.
    legs : tuple of Shock
        The legs, in file order.
    labels : tuple of str
        One label per leg (``label`` in the file, else ``"leg 1"``, ``"leg 2"``, ...).
    source : str
        The file it was loaded from ("" if built in code).
    """

    name: str
    description: str
    legs: tuple[Shock, ...]
    labels: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.legs:
            raise ValueError(f"stress {self.name!r}: at least one leg is needed")
        if not self.labels:
            object.__setattr__(self, "labels", tuple(f"leg {i}" for i in range(1, len(self.legs) + 1)))
        if len(self.labels) != len(self.legs):
            raise ValueError(f"stress {self.name!r}: {len(self.labels)} labels for {len(self.legs)} legs")


_LEG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "spot_pct": (int, float),
    "vol_pts": (int, float),
    "days": (int, float),
    "underlying": str,
    "beta_weighted": bool,
    "spot": (int, float),
    "vol": (int, float),
}
_TOP_FIELDS = ("name", "description", "legs")


class _Unit(NamedTuple):
    """A shock field of a stress file: its unit in words, the divisor to the :class:`Shock`'s
    decimal (a division: -7 / 100 is exactly -0.07, -7 * 0.01 is not), the plausible range (in
    the field's unit) and whether its ends are allowed."""

    unit: str
    per: float
    lo: float
    hi: float
    lo_open: bool
    hi_open: bool


# spot_pct / vol_pts carry their unit. The older spot / vol (decimals) are read only below a
# magnitude of 1: `spot = 5` could mean +5% or +500%, `vol = 2` 2 or 200 vol points.
_UNITS = {
    "spot_pct": _Unit("percent (-5 = -5%)", 100.0, -100.0, 100.0, True, False),
    "vol_pts": _Unit("vol points (10 = +10 points of vol)", 100.0, -100.0, 100.0, False, False),
    "days": _Unit("calendar days", 1.0, 0.0, 3650.0, False, False),
    "spot": _Unit("a fraction (-0.05 = -5%)", 1.0, -1.0, 1.0, True, True),
    "vol": _Unit("decimals of vol (0.10 = +10 vol points)", 1.0, -1.0, 1.0, True, True),
}
_INSTEAD = {"spot": "spot_pct", "vol": "vol_pts"}


def _leg_value(where: str, leg: dict[str, Any], key: str) -> float:
    """A shock field of a leg in the :class:`Shock`'s decimals, refused outside its plausible range."""
    value = leg[key]
    u = _UNITS[key]
    low_ok = value > u.lo if u.lo_open else value >= u.lo
    high_ok = value < u.hi if u.hi_open else value <= u.hi
    if not (math.isfinite(value) and low_ok and high_ok):
        lo, hi = ("(" if u.lo_open else "["), (")" if u.hi_open else "]")
        hint = ""
        if key in _INSTEAD:
            hint = f"; to give it in {_UNITS[_INSTEAD[key]].unit.split(' (')[0]}, write {_INSTEAD[key]} = ..."
        raise ValueError(
            f"{where}, field {key!r}: {value!r} is outside {lo}{u.lo:g}, {u.hi:g}{hi}: "
            f"{key} is in {u.unit}{hint}"
        )
    return float(value) / u.per


def load_stress(path: str | os.PathLike[str]) -> Stress:
    """Read a named stress scenario from a TOML file (format in the module docstring).

    Parameters
    ----------
    path : str or path-like
        The ``.toml`` file.

    Returns
    -------
    Stress

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, or a field is missing, unknown or of the wrong type or
        range; the message names the file, the leg (1-based) and the field.
    """
    path = Path(path)
    where = str(path)
    doc = read_toml(path, "stress file")

    unknown = sorted(set(doc) - set(_TOP_FIELDS))
    if unknown:
        raise ValueError(f"{where}: field {unknown[0]!r}: unknown (allowed: {', '.join(_TOP_FIELDS)})")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: field 'name': required, a non-empty string (got {name!r})")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where}: field 'description': must be a string (got {description!r})")
    legs_doc = doc.get("legs")
    if not isinstance(legs_doc, list) or not legs_doc or not all(isinstance(x, dict) for x in legs_doc):
        raise ValueError(f"{where}: field 'legs': required, one or more [[legs]] tables (got {legs_doc!r})")

    legs: list[Shock] = []
    labels: list[str] = []
    for i, leg in enumerate(legs_doc, start=1):
        at = f"{where}: leg {i}"
        for key, value in leg.items():
            if key not in _LEG_FIELDS:
                allowed = [k for k in _LEG_FIELDS if k not in _INSTEAD]
                raise ValueError(f"{at}, field {key!r}: unknown (allowed: {', '.join(allowed)})")
            expected = _LEG_FIELDS[key]
            if (expected is not bool and isinstance(value, bool)) or not isinstance(value, expected):
                kind = (
                    "true or false" if expected is bool else "a number" if expected is not str else "a string"
                )
                raise ValueError(f"{at}, field {key!r}: must be {kind} (got {value!r})")
        for old, new in _INSTEAD.items():
            if old in leg and new in leg:
                raise ValueError(
                    f"{at}, field {old!r}: give the move once, as {new} (not both {old} and {new})"
                )
        shifts = {
            target: _leg_value(at, leg, key)
            for key, target in (("spot_pct", "spot"), ("vol_pts", "vol"), ("spot", "spot"), ("vol", "vol"))
            if key in leg
        }
        try:
            shock = Shock(
                spot=shifts.get("spot", 0.0),
                vol=shifts.get("vol", 0.0),
                days=_leg_value(at, leg, "days") if "days" in leg else 0.0,
                underlying=leg.get("underlying"),
                beta_weighted=leg.get("beta_weighted", False),
            )
        except ValueError as exc:
            field_name = str(exc).split(":", 1)[0].removeprefix("Shock.")
            raise ValueError(f"{at}, field {field_name!r}: {str(exc).split(': ', 1)[1]}") from None
        legs.append(shock)
        labels.append(leg.get("label", f"leg {i}"))
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: field 'label': duplicated leg labels {labels}")
    return Stress(name=name, description=description, legs=tuple(legs), labels=tuple(labels), source=where)


@dataclass(frozen=True)
class StressResult:
    """P&L of a book under a stress, per leg and underlying.

    Attributes
    ----------
    name : str
        The stress's name.
    table : pandas.DataFrame
        Index ``leg`` (the labels), one column per underlying of the book (sorted), then ``"book"``:
        P&L in currency of each leg (each leg from today's market).
    legs : pandas.DataFrame
        Index ``leg``: the shock of each leg (``spot``, ``vol``, ``days``, ``underlying``,
        ``beta_weighted``), its book ``pnl`` and its ``driver``.
    worst_leg : str
        Label of the leg with the lowest book P&L (the first of equals).
    pnl : float
        The stress's P&L: its WORST leg's book P&L, in currency.
    driver : str or None
        The worst leg's driver (:func:`driver_of`): the underlying that contributes most to its
        book P&L in that P&L's direction (None for an empty book or a P&L of exactly 0).
    stress : Stress or None
        The stress that was run (its legs' shocks, its file).
    """

    name: str
    table: pd.DataFrame
    legs: pd.DataFrame
    worst_leg: str
    pnl: float
    driver: str | None
    stress: Stress | None = None


def _leg_where(stress: Stress) -> Callable[[int], str]:
    """Names leg ``g`` of a stress in messages: its file (or name), its number and its label."""
    origin = stress.source or f"stress {stress.name!r}"
    return lambda g: f"{origin}: leg {g + 1} ({stress.labels[g]!r})"


def check_stress(book: Book, market: Market, stress: Stress) -> None:
    """Refuse, before any revaluation, a stress whose legs the market cannot price (an underlying
    without market data, a beta-weighted leg without an index or a beta): ``ValueError`` naming the
    file and the leg."""
    _points(_collapse(book, market), stress.legs, _leg_where(stress))


def _stress_result(c: _Contracts, stress: Stress) -> StressResult:
    pnl, _ = _revalue(c, _points(c, stress.legs, _leg_where(stress)), taylor=False)
    underlyings = [str(u) for u in c.underlyings]
    return stress_result(stress, _shock_frame(underlyings, pnl), pnl, underlyings)


def stress_result(
    stress: Stress, table: pd.DataFrame, pnl: FloatArray, underlyings: Sequence[str]
) -> StressResult:
    """A :class:`StressResult` from the stress's P&L table (one row per leg, a column per underlying
    and ``"book"``) and its per-underlying P&L ``pnl`` (underlyings x legs): the legs' table, the
    worst leg and each leg's driver (:func:`driver_of`). The local and the distributed engines share
    it; a P&L that is not finite raises ``ValueError`` naming the file, the leg and the underlying."""
    check_finite(pnl, list(underlyings), _leg_where(stress))
    table.index = pd.Index(list(stress.labels), name="leg")
    drivers = [driver_of(pnl[:, g], underlyings) for g in range(len(stress.legs))]
    legs = pd.DataFrame(
        {
            "spot": [s.spot for s in stress.legs],
            "vol": [s.vol for s in stress.legs],
            "days": [s.days for s in stress.legs],
            "underlying": [s.underlying for s in stress.legs],
            "beta_weighted": [bool(s.beta_weighted) for s in stress.legs],
            "pnl": table[BOOK].to_numpy(),
            "driver": drivers,
        },
        index=table.index,
    )
    worst = int(np.argmin(table[BOOK].to_numpy()))
    return StressResult(
        name=stress.name,
        table=table,
        legs=legs,
        worst_leg=stress.labels[worst],
        pnl=float(table[BOOK].iloc[worst]),
        driver=drivers[worst],
        stress=stress,
    )


def run_stress(book: Book, market: Market, stress: Stress | str | os.PathLike[str]) -> StressResult:
    """Full-revaluation P&L of a book under a named stress, per leg.

    Parameters
    ----------
    book : Book
    market : Market
        Needs ``index`` and ``beta`` for beta-weighted legs.
    stress : Stress or path
        A :class:`Stress`, or a TOML file to :func:`load_stress`.

    Returns
    -------
    StressResult
        ``table`` (P&L per leg per underlying, plus the book), and ``pnl``: the worst leg's book P&L.
    """
    if not isinstance(stress, Stress):
        stress = load_stress(stress)
    return _stress_result(_collapse(book, market), stress)


def run_stresses(
    book: Book,
    market: Market,
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str] | Stress],
) -> pd.DataFrame:
    """Run several named stresses on one book (collapsed once).

    Parameters
    ----------
    book : Book
    market : Market
    paths : path, or iterable of paths or Stress
        TOML files; a directory stands for its ``*.toml`` files (sorted by name).

    Returns
    -------
    pandas.DataFrame
        One row per stress, in order: ``name``, ``file``, ``legs`` (count), ``worst_leg``, ``pnl``
        (the worst leg's book P&L, currency) and ``driver``.
    """
    stresses: list[Stress] = []
    for item in [paths] if isinstance(paths, str | os.PathLike) else paths:
        if isinstance(item, Stress):
            stresses.append(item)
        else:
            p = Path(item)
            stresses.extend(load_stress(f) for f in (sorted(p.glob("*.toml")) if p.is_dir() else [p]))
    c = _collapse(book, market)
    rows: list[dict[str, Any]] = []
    for stress in stresses:
        r = _stress_result(c, stress)
        rows.append(
            {
                "name": stress.name,
                "file": stress.source,
                "legs": len(stress.legs),
                "worst_leg": r.worst_leg,
                "pnl": r.pnl,
                "driver": r.driver,
            }
        )
    return pd.DataFrame(rows, columns=["name", "file", "legs", "worst_leg", "pnl", "driver"])


# --------------------------------------------------------------------------------------------------
# Heatmap


def _compact(x: float) -> str:
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.1f}{suffix}"
    return f"{x:.0f}"


_ANNOTATE_MAX_COLS = 25
_ANNOTATE_MAX_ROWS = 41


#: Formats :func:`heatmap` writes, by file suffix.
def heatmap_title(grid_result: GridResult, underlying: str | None = None) -> str:
    """The default title of :func:`heatmap`: what the P&L is of, what was shocked, the valuation
    date and the days forward."""
    of = f"{underlying}'s P&L" if underlying else "Book P&L"
    title = f"{of} (currency of the market), {grid_result.label()}"
    when = []
    if grid_result.valuation is not None:
        when.append(f"valued {np.datetime_as_string(grid_result.valuation, unit='D')}")
    when.append(f"{grid_result.days:g} day(s) forward" if grid_result.days else "no time passing")
    return title + "\n" + ", ".join(when)


def heatmap(
    grid_result: GridResult,
    path: str | os.PathLike[str] | IO[bytes],
    *,
    underlying: str | None = None,
    title: str | None = None,
    format: str | None = None,
) -> Path | None:
    """Write a heatmap of a grid's full-revaluation P&L (PNG, PDF or SVG).

    Parameters
    ----------
    grid_result : GridResult
    path : str, path-like or binary file
        The file to write, its format from its suffix (:data:`PLOT_FORMATS`); a path is written to a
        temporary file beside it, then renamed (atomic). A file object is written as it is.
    underlying : str, optional
        One underlying's P&L; default the book's.
    title : str, optional
        Default :func:`heatmap_title`: whose P&L, what was shocked (all underlyings, one, or index
        moves x beta), the valuation date and the days forward.
    format : str, optional
        ``"png"``, ``"pdf"`` or ``"svg"``; default from the suffix of ``path`` (required for a file
        object).

    Returns
    -------
    pathlib.Path or None
        ``path``, or None when a file object was given.

    Raises
    ------
    ValueError
        A suffix (or format) that is not one of :data:`PLOT_FORMATS`.

    Notes
    -----
    Rows are spot shocks in percent, columns vol shocks in vol points; a diverging colormap
    (losses red, gains green) centred at 0, every cell annotated with its P&L up to a 41 x 25 grid
    (larger grids fit a bounded figure, without per-cell numbers); the worst cell is outlined and
    its P&L given under the title. Uses matplotlib's Agg canvas directly (no global backend switch,
    no display needed).
    """
    is_path = isinstance(path, str | os.PathLike)
    if format is None:
        if not is_path:
            raise ValueError("heatmap: format is needed to write to a file object")
        format = plot_format(path)  # type: ignore[arg-type]
    elif format not in PLOT_FORMATS:
        raise ValueError(f"heatmap: unknown format {format!r} (one of {', '.join(PLOT_FORMATS)})")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    m = grid_result.matrix(underlying)
    values = m.to_numpy()
    lim = float(np.max(np.abs(values))) or 1.0
    n_s, n_v = values.shape
    # Cells keep a readable size up to ~25 x 40; larger grids shrink into a bounded figure, with
    # every k-th tick labelled and no per-cell numbers (they would not be legible).
    annotate = n_v <= _ANNOTATE_MAX_COLS and n_s <= _ANNOTATE_MAX_ROWS
    fig = Figure(
        figsize=(min(max(6.5, 0.9 * n_v + 2.5), 24.0), min(max(4.5, 0.45 * n_s + 2.2), 20.0)), dpi=110
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="RdYlGn", norm=TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim), aspect="auto")
    xs, ys = range(0, n_v, -(-n_v // _ANNOTATE_MAX_COLS)), range(0, n_s, -(-n_s // _ANNOTATE_MAX_ROWS))
    ax.set_xticks(list(xs), [f"{m.columns[j] * 100:+g}" for j in xs])
    ax.set_yticks(list(ys), [f"{m.index[i] * 100:+g}" for i in ys])
    ax.set_xlabel("vol shock (vol points)")
    ax.set_ylabel("spot shock (%)" + (" of the index, x beta" if grid_result.beta_weighted else ""))
    wi, wj = np.unravel_index(int(np.argmin(values)), values.shape)
    if annotate:
        for i in range(n_s):
            for j in range(n_v):
                bold = (i, j) == (wi, wj)
                ax.text(j, i, _compact(values[i, j]), ha="center", va="center", fontsize=7,
                        fontweight="bold" if bold else "normal")  # fmt: skip
    ax.add_patch(Rectangle((wj - 0.5, wi - 0.5), 1.0, 1.0, fill=False, edgecolor="black", linewidth=2.0))
    bar = fig.colorbar(im, ax=ax, label="P&L (currency of the market)")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _compact(x)))
    worst = (
        f"worst (outlined): {_compact(values[wi, wj])} at spot {m.index[wi] * 100:+g}%, "
        f"vol {m.columns[wj] * 100:+g} pts"
    )
    ax.set_title(
        (title if title is not None else heatmap_title(grid_result, underlying)) + "\n" + worst, fontsize=9
    )
    fig.tight_layout()

    if not is_path:
        fig.savefig(path, format=format)
        return None
    target = Path(path)  # type: ignore[arg-type]
    with atomic_target(target, text=False) as fh:
        fig.savefig(fh, format=format)
    return target


__all__ = [
    "BOOK",
    "MAX_CELLS",
    "PLOT_FORMATS",
    "GridResult",
    "Shock",
    "Stress",
    "StressResult",
    "Worst",
    "check_finite",
    "check_stress",
    "driver_of",
    "heatmap",
    "heatmap_title",
    "load_stress",
    "plot_format",
    "points_pnl",
    "run_stress",
    "run_stresses",
    "scenario_grid",
    "scenario_pnl",
    "shock_pnl",
    "stress_result",
]
