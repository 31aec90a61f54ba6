"""From a chain (or vols) to fitted surfaces: forwards, implied vols, per-expiry fits, checks.

:func:`fit_chain` runs, per underlying and expiry: put-call parity (:mod:`optmm.chain.parity`), the
implied vols of bid, ask and mid from the out-of-the-money side, the arbitrage-free smile fit
(:mod:`optmm.chain.slicefit`) weighted by ``1 / spread_vol^2``, and the checks of the resulting
:class:`~optmm.chain.surface.FittedSurface` (call prices decreasing and convex in strike on a fine
grid, total variance non-decreasing in maturity). :func:`fit_vols` does the same from vols given
directly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from optmm.chain.parity import parity_forward
from optmm.chain.reader import Chain, ChainError, VolQuotes
from optmm.chain.slicefit import fit_smile
from optmm.chain.surface import FittedSurface
from optmm.greeks import bsm_price, implied_vol
from optmm.typing import FloatArray

__all__ = ["ExpiryFit", "UnderlyingFit", "arbitrage_counts", "de_americanise", "fit_chain", "fit_vols"]

MIN_SPREAD_VOL = 0.0005  # spreads below 0.05 vol points weigh as 0.05 (a locked quote is not exact)
CHECK_SDS = 3.0  # the price checks cover +-3 standard deviations (and every quoted strike)


@dataclass(frozen=True)
class ExpiryFit:
    """One expiry's figures (vols decimal, RMSE in vol points)."""

    expiry: np.datetime64
    t: float
    forward: float
    discount: float
    implied_rate: float
    implied_dividend: float
    forward_method: str
    n_quotes: int
    atm_vol: float
    skew: float
    rmse_vol_pts: float
    inside_share: float
    method: str
    butterfly_violations: int
    calendar_violations: int
    calendar_repaired: bool
    k: FloatArray = field(repr=False)
    mid_vol: FloatArray = field(repr=False)
    bid_vol: FloatArray = field(repr=False)
    ask_vol: FloatArray = field(repr=False)


@dataclass(frozen=True)
class UnderlyingFit:
    """The fitted surface of one underlying, its spot, carry and per-expiry figures."""

    underlying: str
    spot: float
    rate: float
    div_yield: float
    surface: FittedSurface
    expiries: list[ExpiryFit]
    dropped: dict[str, int]


def de_americanise(chain: Chain, rows: np.ndarray) -> None:
    """Hook for American quotes: turn them into European-equivalent prices before parity and vols.

    Not implemented yet (it needs an American implied-vol solver): refuses the chain with a
    :class:`ChainError` naming the first American row, rather than fitting American prices as if
    European.
    """
    if chain.american[rows].any():
        raise ChainError(
            chain.source, 0, "style", "American quotes are not supported yet (European quotes only)"
        )


def _black_call(f: FloatArray, k: FloatArray, w: FloatArray) -> FloatArray:
    """Undiscounted Black call price from the forward, strike and total variance."""
    sd = np.sqrt(np.maximum(w, 1e-300))
    d1 = np.log(f / k) / sd + 0.5 * sd
    return f * ndtr(d1) - k * ndtr(d1 - sd)


def arbitrage_counts(surface: FittedSurface, k_quotes: list[FloatArray]) -> list[tuple[int, int]]:
    """Butterfly and calendar violations of every expiry, on one fine grid of log-moneyness.

    The grid has 16,001 points covering every expiry's quotes and +-3 of its standard deviations.
    Butterfly: the undiscounted call prices of expiry ``i`` on the part of the grid covering its quotes
    and +-3 standard deviations must decrease and be convex in strike (divided differences,
    tolerance 1e-12 of the forward). Calendar: the total variance must not fall from expiry
    ``i - 1`` to ``i`` at any grid point.
    """
    n = surface.expiries.size
    sds = [math.sqrt(max(float(surface.smile(i).total_variance(np.zeros(1))[0]), 1e-12)) for i in range(n)]
    ranges = [
        (min(float(kq.min()), -CHECK_SDS * sd), max(float(kq.max()), CHECK_SDS * sd))
        for kq, sd in zip(k_quotes, sds, strict=True)
    ]
    k = np.linspace(min(r[0] for r in ranges), max(r[1] for r in ranges), 16001)
    running = np.full(k.size, -np.inf)
    out = []
    previous = None
    for i in range(n):
        running = np.maximum(running, surface.smile(i).total_variance(k))
        w = np.maximum(running, 0.0)
        sel = (k >= ranges[i][0]) & (k <= ranges[i][1])
        f = float(surface.forwards[i])
        strikes = f * np.exp(k[sel])
        c = _black_call(np.full_like(strikes, f), strikes, w[sel])
        tol = 1e-12 * f
        slope = np.diff(c) / np.diff(strikes)
        butterfly = int(np.sum(slope > tol) + np.sum(np.diff(slope) < -tol))
        calendar = 0 if previous is None else int(np.sum(w < previous - 1e-15))
        out.append((butterfly, calendar))
        previous = w
    return out


@dataclass
class _Slice:
    expiry: np.datetime64
    t_quote: float
    t_node: float
    forward: float
    discount: float
    method: str
    k: FloatArray
    mid: FloatArray
    bid: FloatArray
    ask: FloatArray
    weight: FloatArray
    bid_price: FloatArray | None
    ask_price: FloatArray | None
    is_call: FloatArray | None


def _otm_slice(chain: Chain, rows: np.ndarray, t: float, spot: float) -> _Slice | None:
    """Parity forward, then the out-of-the-money quote per strike and its bid/ask/mid vols."""
    strike, is_call = chain.strike[rows], chain.is_call[rows]
    bid, ask = chain.bid[rows], chain.ask[rows]
    rate = float(np.median(chain.rate[rows]))
    calls = {float(s): i for i, s in enumerate(strike) if is_call[i]}
    puts = {float(s): i for i, s in enumerate(strike) if not is_call[i]}
    both = sorted(set(calls) & set(puts))
    ci = np.array([calls[s] for s in both], dtype=np.intp)
    pi = np.array([puts[s] for s in both], dtype=np.intp)
    par = parity_forward(
        np.array(both, dtype=np.float64),
        0.5 * (bid[ci] + ask[ci]),
        0.5 * (bid[pi] + ask[pi]),
        (ask[ci] - bid[ci]) + (ask[pi] - bid[pi]),
        t=t,
        rate=rate,
        spot=spot,
    )
    if par is None:
        fwd, disc, method = spot * math.exp(rate * t), math.exp(-rate * t), "spot, rate"
    else:
        fwd, disc, method = par.forward, par.discount, par.method
    # per strike: the OTM side where quoted, else the other
    pick: dict[float, int] = {}
    for s in sorted(set(calls) | set(puts)):
        otm_call = s >= fwd
        first, second = (calls, puts) if otm_call else (puts, calls)
        pick[s] = first[s] if s in first else second[s]
    idx = np.array(list(pick.values()), dtype=np.intp)
    ks = strike[idx]
    r_d = -math.log(disc) / t
    vols = []
    for price in (bid[idx], ask[idx], 0.5 * (bid[idx] + ask[idx])):
        v = implied_vol(price, fwd, ks, t, r_d, r_d, is_call[idx])
        vols.append(np.asarray(v, dtype=np.float64))
    bv, av, mv = vols
    ok = np.isfinite(mv) & (mv > 0) & np.isfinite(av)
    if not ok.any():
        return None
    bv = np.where(np.isfinite(bv), bv, 0.0)
    weight = 1.0 / np.maximum(av - bv, MIN_SPREAD_VOL) ** 2
    order = np.argsort(ks[ok])
    sel = np.flatnonzero(ok)[order]
    return _Slice(
        expiry=np.datetime64("NaT"),
        t_quote=t,
        t_node=t,
        forward=fwd,
        discount=disc,
        method=method,
        k=np.log(ks[sel] / fwd),
        mid=mv[sel],
        bid=bv[sel],
        ask=av[sel],
        weight=weight[sel],
        bid_price=bid[idx][sel],
        ask_price=ask[idx][sel],
        is_call=is_call[idx][sel],
    )


def _assemble(
    underlying: str, spot: float, slices: list[_Slice], dropped: dict[str, int], source: str
) -> UnderlyingFit:
    """Fit every slice, build the surface, and check it."""
    for a, b in itertools.pairwise(slices):
        if b.t_node <= a.t_node:
            raise ChainError(source, 0, "expiry", f"two expiries of {underlying} settle on {b.expiry}")
    fits = [fit_smile(s.k, s.mid**2 * s.t_quote, s.weight, s.t_quote) for s in slices]
    surface = FittedSurface(
        expiries=np.array([s.t_node for s in slices]),
        forwards=np.array([s.forward for s in slices]),
        a=np.array([f.smile.a for f in fits]),
        b=np.array([f.smile.b for f in fits]),
        rho=np.array([f.smile.rho for f in fits]),
        m=np.array([f.smile.m for f in fits]),
        sigma=np.array([f.smile.sigma for f in fits]),
        knots=[f.smile.knots for f in fits],
        coef=[f.smile.coef for f in fits],
    )
    checks = arbitrage_counts(surface, [s.k for s in slices])
    out = []
    for i, (s, f) in enumerate(zip(slices, fits, strict=True)):
        w = surface.total_variance(s.k, i)
        fit_vol = np.sqrt(w / s.t_quote)
        rmse = float(np.sqrt(np.mean((fit_vol - s.mid) ** 2))) * 100.0
        if s.bid_price is not None and s.is_call is not None and s.ask_price is not None:
            r_d = -math.log(s.discount) / s.t_quote
            strikes = s.forward * np.exp(s.k)
            price = bsm_price(s.forward, strikes, s.t_quote, r_d, r_d, fit_vol, s.is_call)
            tol = 1e-9 * s.forward
            inside = (price >= s.bid_price - tol) & (price <= s.ask_price + tol)
        else:
            inside = (fit_vol >= s.bid - 1e-12) & (fit_vol <= s.ask + 1e-12)
        w0, w1 = _w_and_slope(surface, i)
        atm = math.sqrt(w0 / s.t_quote)
        bfly, cal = checks[i]
        raw = f.smile.total_variance(s.k)
        r_impl = -math.log(s.discount) / s.t_quote
        out.append(
            ExpiryFit(
                expiry=s.expiry,
                t=s.t_node,
                forward=s.forward,
                discount=s.discount,
                implied_rate=r_impl,
                implied_dividend=r_impl - math.log(s.forward / spot) / s.t_quote,
                forward_method=s.method,
                n_quotes=int(s.k.size),
                atm_vol=atm,
                skew=w1 / (2.0 * math.sqrt(w0 * s.t_quote)),
                rmse_vol_pts=rmse,
                inside_share=float(np.mean(inside)),
                method=f.method,
                butterfly_violations=bfly,
                calendar_violations=cal,
                calendar_repaired=bool(np.any(w > raw)),
                k=s.k,
                mid_vol=s.mid,
                bid_vol=s.bid,
                ask_vol=s.ask,
            )
        )
    tt = np.array([e.t for e in out])
    rate = float(np.sum(tt * np.array([e.implied_rate for e in out]) * tt) / np.sum(tt * tt))
    q = float(np.sum(tt * np.array([e.implied_dividend for e in out]) * tt) / np.sum(tt * tt))
    diag: dict[str, Any] = {
        "forward": [e.forward for e in out],
        "discount": [e.discount for e in out],
        "implied_dividend": [e.implied_dividend for e in out],
        "atm_vol": [e.atm_vol for e in out],
        "skew": [e.skew for e in out],
        "rmse_vol_pts": [e.rmse_vol_pts for e in out],
        "inside_share": [e.inside_share for e in out],
        "n_quotes": [e.n_quotes for e in out],
        "method": [e.method for e in out],
        "butterfly_violations": [e.butterfly_violations for e in out],
        "calendar_violations": [e.calendar_violations for e in out],
    }
    object.__setattr__(surface, "diagnostics", diag)
    return UnderlyingFit(underlying, spot, rate, q, surface, out, dropped)


def _w_and_slope(surface: FittedSurface, i: int) -> tuple[float, float]:
    h = 1e-4
    w = surface.total_variance(np.array([-h, 0.0, h]), i)
    return float(w[1]), float((w[2] - w[0]) / (2 * h))


def _node_years(valuation: Any, expiry: Any) -> float:
    """ACT/365 from the valuation date to the expiry's date, as :meth:`Market.year_fraction`."""
    days = (
        np.asarray(expiry).astype("datetime64[D]") - np.asarray(valuation).astype("datetime64[D]")
    ).astype(np.int64)
    return float(days) / 365.0


def fit_chain(chain: Chain) -> tuple[Any, dict[str, UnderlyingFit]]:
    """Fit every underlying of ``chain``; returns the valuation date and the fits by underlying.

    The valuation date is the date of the chain's newest quote; expiries on that date (no whole day
    left) are dropped and counted under ``dropped["expires_today"]``.
    """
    valuation: Any = np.asarray(chain.timestamp).astype("datetime64[D]")[()]
    fits: dict[str, UnderlyingFit] = {}
    for und in sorted(set(chain.underlying.tolist())):
        rows_u = np.flatnonzero(chain.underlying == und)
        de_americanise(chain, rows_u)
        spot = float(np.median(chain.spot[rows_u]))
        dropped = dict(chain.dropped)
        dropped["expires_today"] = 0
        dropped["no_vol"] = 0
        slices = []
        for exp in np.unique(chain.expiry[rows_u]):
            rows = rows_u[chain.expiry[rows_u] == exp]
            t_node = _node_years(valuation, exp)
            if t_node <= 0:
                dropped["expires_today"] += rows.size
                continue
            t_quote = float(chain.years(np.array([exp]))[0])
            sl = _otm_slice(chain, rows, t_quote, spot)
            if sl is None:
                dropped["no_vol"] += rows.size
                continue
            sl.expiry, sl.t_node = exp, t_node
            slices.append(sl)
        if not slices:
            raise ChainError(chain.source, 0, "expiry", f"{und}: no expiry with usable quotes")
        fits[und] = _assemble(und, spot, slices, dropped, chain.source)
    return valuation, fits


def fit_vols(
    quotes: VolQuotes, valuation: np.datetime64, spot: dict[str, float], forward: Any
) -> dict[str, UnderlyingFit]:
    """Fit vols given directly. ``forward(underlying, t)`` gives a forward where the file has none."""
    fits: dict[str, UnderlyingFit] = {}
    for und in sorted(set(quotes.underlying.tolist())):
        rows_u = np.flatnonzero(quotes.underlying == und)
        if und not in spot:
            raise ChainError(
                quotes.source, int(rows_u[0]) + 1, "underlying", f"{und!r} has no spot in the market"
            )
        slices = []
        for exp in np.unique(quotes.expiry[rows_u]):
            rows = rows_u[quotes.expiry[rows_u] == exp]
            t = _node_years(valuation, exp)
            if t <= 0:
                raise ChainError(quotes.source, int(rows[0]) + 1, "expiry", f"{exp} is not after {valuation}")
            given = quotes.forward[rows]
            fwd = (
                float(np.median(given[np.isfinite(given)]))
                if np.isfinite(given).any()
                else float(forward(und, t))
            )
            rate = quotes.rate[rows]
            r = float(np.median(rate[np.isfinite(rate)])) if np.isfinite(rate).any() else 0.0
            order = np.argsort(quotes.strike[rows])
            sel = rows[order]
            k = np.log(quotes.strike[sel] / fwd)
            if np.any(np.diff(k) <= 0):
                i = int(sel[int(np.argmax(np.diff(k) <= 0)) + 1])
                raise ChainError(quotes.source, i + 1, "strike", "duplicate strike in one expiry")
            v = quotes.vol[sel]
            slices.append(
                _Slice(
                    exp,
                    t,
                    t,
                    fwd,
                    math.exp(-r * t),
                    "given",
                    k,
                    v,
                    v,
                    v,
                    quotes.weight[sel],
                    None,
                    None,
                    None,
                )
            )
        fits[und] = _assemble(und, spot[und], slices, {}, quotes.source)
    return fits
