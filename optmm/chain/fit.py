"""From a chain (or vols) to fitted surfaces: forwards, implied vols, per-expiry fits, checks.

:func:`fit_chain` runs, per underlying and expiry: the conversion of American quotes into
European-equivalent prices (:func:`de_americanise`), put-call parity (:mod:`optmm.chain.parity`), the
implied vols of bid, ask and mid from the out-of-the-money side, the arbitrage-free smile fit
(:mod:`optmm.chain.slicefit`) weighted by ``1 / spread_vol^2``, and the checks of the resulting
:class:`~optmm.chain.surface.FittedSurface` (call prices decreasing and convex in strike on a fine
grid, total variance non-decreasing in maturity). :func:`fit_vols` does the same from vols given
directly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import ndtr

from optmm.chain.parity import parity_forward
from optmm.chain.reader import Chain, ChainError, VolQuotes
from optmm.chain.slicefit import fit_smile
from optmm.chain.surface import FittedSurface
from optmm.greeks import AmericanIVStatus, american_implied_vol, bsm_price, implied_vol
from optmm.greeks._bsm import _price_block
from optmm.greeks._iv import _iv_block
from optmm.typing import FloatArray
from optmm.units import DAYS_PER_YEAR

__all__ = ["ExpiryFit", "UnderlyingFit", "arbitrage_counts", "de_americanise", "fit_chain", "fit_vols"]

# American quotes: converted again at each new carry until the forward it implies moves by less than
# 1e-6 of itself (|dq| t < 1e-6, well under parity's noise), at most five conversions; the iteration
# contracts some tenfold a pass (the premiums near the money are small), so three or four do
MAX_CARRY_PASSES = 5
FORWARD_TOL = 1e-6
_AMERICAN_REASONS = {
    AmericanIVStatus.BELOW_INTRINSIC: "american_below_intrinsic",
    AmericanIVStatus.NO_PREMIUM: "american_no_premium",
    AmericanIVStatus.ABOVE_MAXIMUM: "american_above_maximum",
}
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
    inside_share: float  # NaN for vols given directly (no bid/ask)
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


def de_americanise(chain: Chain, rows: np.ndarray, spot: float) -> tuple[Chain, np.ndarray, dict[str, int]]:
    """American quotes among ``rows`` (one underlying) turned into European-equivalent prices.

    Per expiry, a first carry ``q = r - ln(F / S) / t`` from put-call parity on the near-the-money
    pairs (where early-exercise premiums are smallest), discounting at the chain's rate; each
    American bid, ask and mid is then solved for its American implied vol at ``(S, K, t, r, q)``
    (:func:`optmm.greeks.american_implied_vol`) and replaced by the European price at that vol
    (:func:`optmm.greeks.bsm_price`, same ``r`` and ``q``). Parity on the converted prices gives a
    new carry; while the forward it implies moves by :data:`FORWARD_TOL` of itself or more
    (``|dq| t``), the quotes are converted again at it, at most :data:`MAX_CARRY_PASSES`
    conversions in all.

    Returns the chain with the converted bids, asks and mids (:attr:`Chain.mid`), the rows kept,
    and the rows dropped by reason: an American row whose bid, ask or mid has no American implied
    vol (``american_below_intrinsic``, ``american_no_premium`` for a price equal to its exercise
    value, ``american_above_maximum``).
    A chain without American rows comes back unchanged, with no counts.
    """
    am = rows[chain.american[rows]]
    if am.size == 0:
        return chain, rows, {}
    expiries = np.unique(chain.expiry[rows])
    groups = [rows[chain.expiry[rows] == e] for e in expiries]
    t_e = chain.years(expiries)
    at = np.searchsorted(expiries, chain.expiry[am])
    n = am.size
    r_e = np.array([np.median(chain.rate[g]) for g in groups])  # one rate an expiry, as parity's
    k, call, r, t = (np.tile(a, 3) for a in (chain.strike[am], chain.is_call[am], r_e[at], t_e[at]))
    quotes = np.concatenate([chain.bid[am], chain.ask[am], chain.mids(am)])
    bid, ask, mid = chain.bid.copy(), chain.ask.copy(), chain.mids(np.arange(chain.bid.size))
    kept = np.ones(chain.bid.size, dtype=bool)

    def carries() -> FloatArray:  # every expiry's, from the kept rows' prices as they stand
        return np.array(
            [
                _parity_carry(chain, g[kept[g]], tg, rate, spot, bid, ask, mid)
                for g, tg, rate in zip(groups, t_e, r_e, strict=True)
            ]
        )

    q = carries()
    for _ in range(MAX_CARRY_PASSES):
        qa = np.tile(q[at], 3)
        try:
            vol, status = american_implied_vol(quotes, spot, k, t, r, qa, call, return_status=True)
        except ValueError:  # two exercise boundaries (negative rates): name the expiry
            two = np.where(call, (r < qa) & (qa < 0), (qa < r) & (r < 0))
            i = int(np.argmax(two)) % n
            raise ChainError(
                chain.source,
                0,
                "rate",
                f"{chain.underlying[am[i]]} {chain.expiry[am[i]]}: rate {r[i]:.4%} and implied carry"
                f" {qa[i]:.4%} give American {'call' if call[i] else 'put'}s two exercise boundaries,"
                " which are not priced",
            ) from None
        ok = status == AmericanIVStatus.OK
        every = ok[:n] & ok[n : 2 * n] & ok[2 * n :]
        sel = np.flatnonzero(np.tile(every, 3))
        euro = np.asarray(bsm_price(spot, k[sel], t[sel], r[sel], qa[sel], vol[sel], call[sel]))
        bid[am[every]], ask[am[every]], mid[am[every]] = np.split(euro, 3)
        kept[am] = every
        q_new = carries()
        moved = float(np.max(np.abs(q_new - q) * t_e))
        q = q_new
        if moved < FORWARD_TOL:
            break
    # a dropped row's reason: its bid's, else its ask's, else its mid's
    reason = np.where(ok[:n], np.where(ok[n : 2 * n], status[2 * n :], status[n : 2 * n]), status[:n])[~every]
    counts = {name: int(np.sum(reason == code)) for code, name in _AMERICAN_REASONS.items()}
    return replace(chain, bid=bid, ask=ask, mid=mid), rows[kept[rows]], counts


def _parity_carry(
    chain: Chain,
    rows: np.ndarray,
    t: float,
    rate: float,
    spot: float,
    bid: FloatArray,
    ask: FloatArray,
    mid: FloatArray,
) -> float:
    """The carry ``r - ln(F / S) / t`` of one expiry's ``rows`` from parity at the rate's discount factor
    (``S e^{r t}``, no carry, with no pair)."""
    par, *_ = _parity(
        chain.strike[rows], chain.is_call[rows], mid[rows], ask[rows] - bid[rows], t, rate, spot, True
    )
    if par is None or not par.forward > 0:
        return 0.0
    return rate - math.log(par.forward / spot) / t


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
    out = []
    previous = None
    for i, w in enumerate(surface.total_variances(k)):
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


def _otm_pick(chain: Chain, rows: np.ndarray, t: float, spot: float) -> tuple[float, float, str, np.ndarray]:
    """Parity forward and discount factor, and the row (in ``chain``) of the quote used per strike:
    the out-of-the-money side where quoted, else the other."""
    rate = float(np.median(chain.rate[rows]))
    par, c_strike, c_row, p_strike, p_row = _parity(
        chain.strike[rows],
        chain.is_call[rows],
        chain.mids(rows),
        chain.ask[rows] - chain.bid[rows],
        t,
        rate,
        spot,
        False,
    )
    if par is None:
        fwd, disc, method = spot * math.exp(rate * t), math.exp(-rate * t), "spot, rate"
    else:
        fwd, disc, method = par.forward, par.discount, par.method
    every = np.union1d(c_strike, p_strike)
    c_at = np.minimum(np.searchsorted(c_strike, every), max(c_strike.size - 1, 0))
    p_at = np.minimum(np.searchsorted(p_strike, every), max(p_strike.size - 1, 0))
    has_call = (
        (c_at < c_strike.size) & (c_strike[c_at] == every) if c_strike.size else np.zeros(every.size, bool)
    )
    has_put = (
        (p_at < p_strike.size) & (p_strike[p_at] == every) if p_strike.size else np.zeros(every.size, bool)
    )
    use_call = np.where(every >= fwd, has_call, ~has_put)
    pick = np.where(
        use_call,
        c_row[c_at] if c_strike.size else 0,
        p_row[p_at] if p_strike.size else 0,
    )
    return fwd, disc, method, rows[pick]


def _parity(
    strike: FloatArray,
    is_call: np.ndarray,
    mid: FloatArray,
    spread: FloatArray,
    t: float,
    rate: float,
    spot: float,
    fixed_discount: bool,
) -> tuple[Any, FloatArray, np.ndarray, FloatArray, np.ndarray]:
    """Parity on the call/put pairs at the same strikes; also the distinct call and put strikes and
    their rows (as :func:`_by_strike`)."""
    c_strike, c_row = _by_strike(strike, is_call)
    p_strike, p_row = _by_strike(strike, ~is_call)
    both = np.intersect1d(c_strike, p_strike)
    ci = c_row[np.searchsorted(c_strike, both)]
    pi = p_row[np.searchsorted(p_strike, both)]
    par = parity_forward(
        both,
        mid[ci],
        mid[pi],
        spread[ci] + spread[pi],
        t=t,
        rate=rate,
        spot=spot,
        fixed_discount=fixed_discount,
    )
    return par, c_strike, c_row, p_strike, p_row


def _by_strike(strike: FloatArray, mask: np.ndarray) -> tuple[FloatArray, np.ndarray]:
    """The distinct strikes among ``mask`` (increasing) and, per strike, the last row (of ``strike``)
    quoting it."""
    rev = np.flatnonzero(mask)[::-1]
    distinct, first = np.unique(strike[rev], return_index=True)
    return distinct, rev[first]


def _otm_slices(
    chain: Chain, picks: list[tuple[np.datetime64, float, float, float, str, np.ndarray]]
) -> list[_Slice | None]:
    """The bid/ask/mid vols of every expiry's picked quotes (one implied-vol call for all three and all
    expiries), and the slices to fit; None for an expiry with no usable vol."""
    idx = np.concatenate([p[5] for p in picks])
    reps = [p[5].size for p in picks]
    t = np.repeat([p[1] for p in picks], reps)
    fwd = np.repeat([p[2] for p in picks], reps)
    r_d = -np.log(np.repeat([p[3] for p in picks], reps)) / t
    ks, is_call = chain.strike[idx], chain.is_call[idx]
    bid, ask = chain.bid[idx], chain.ask[idx]
    # bid, ask and mid in one call
    three = _implied_vols(
        np.concatenate([bid, ask, chain.mids(idx)]), *(np.tile(a, 3) for a in (fwd, ks, t, r_d, is_call))
    )
    vols = np.split(three, 3)
    out: list[_Slice | None] = []
    start = 0
    for (expiry, tq, f, disc, method, _), n in zip(picks, reps, strict=True):
        part = slice(start, start + n)
        start += n
        bv, av, mv = (v[part] for v in vols)
        ok = np.isfinite(mv) & (mv > 0) & np.isfinite(av)
        if not ok.any():
            out.append(None)
            continue
        bv = np.where(np.isfinite(bv), bv, 0.0)
        weight = 1.0 / np.maximum(av - bv, MIN_SPREAD_VOL) ** 2
        sel = np.flatnonzero(ok)[np.argsort(ks[part][ok])]
        out.append(
            _Slice(
                expiry=expiry,
                t_quote=tq,
                t_node=tq,
                forward=f,
                discount=disc,
                method=method,
                k=np.log(ks[part][sel] / f),
                mid=mv[sel],
                bid=bv[sel],
                ask=av[sel],
                weight=weight[sel],
                bid_price=bid[part][sel],
                ask_price=ask[part][sel],
                is_call=is_call[part][sel],
            )
        )
    return out


# A chain's few thousand options are priced and solved by the greeks' serial blocks (the same
# compiled code, so the same figures as bsm_price and implied_vol, bit for bit): on a busy 2-core
# machine the parallel kernels' start-up cost ~5 ms a call, ten times the work. Invalid inputs (none
# reach here from a validated chain) go to the public functions, which raise naming them.


def _implied_vols(
    price: FloatArray,
    fwd: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    r_d: FloatArray,
    is_call: np.ndarray,
) -> FloatArray:
    """Implied vols of undiscounted-forward quotes (spot = forward, rate = dividend = ``r_d``)."""
    a = [np.ascontiguousarray(x, dtype=np.float64) for x in (price, fwd, strike, t, r_d)]
    call = np.ascontiguousarray(is_call, dtype=np.bool_)
    out = np.empty(a[0].size)
    status = np.empty(a[0].size, dtype=np.int8)
    if _iv_block(a[0], a[1], a[2], a[3], a[4], a[4], call, out, status):
        return np.asarray(implied_vol(price, fwd, strike, t, r_d, r_d, is_call), dtype=np.float64)
    return out


def _prices(
    fwd: FloatArray, strike: FloatArray, t: FloatArray, r_d: FloatArray, vol: FloatArray, is_call: np.ndarray
) -> FloatArray:
    """Prices (spot = forward, rate = dividend = ``r_d``), as :func:`optmm.greeks.bsm_price`."""
    a = [np.ascontiguousarray(x, dtype=np.float64) for x in (fwd, strike, t, r_d, vol)]
    out = np.empty(a[0].size)
    if _price_block(a[0], a[1], a[2], a[3], a[3], a[4], np.ascontiguousarray(is_call, dtype=np.bool_), out):
        return np.asarray(bsm_price(fwd, strike, t, r_d, r_d, vol, is_call), dtype=np.float64)
    return out


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
    # the calendar-repaired variance at every slice's quotes: smile j evaluated once on the quotes of
    # slices j, j + 1, ... (a running maximum), not once per later slice
    reps = [s.k.size for s in slices]
    starts = np.concatenate([[0], np.cumsum(reps)])
    k_all = np.concatenate([s.k for s in slices])
    w_all = np.full(k_all.size, -np.inf)
    for j in range(len(slices)):
        tail = slice(int(starts[j]), None)
        w_all[tail] = np.maximum(w_all[tail], surface.smile(j).total_variance(k_all[tail]))
    w_all = np.maximum(w_all, 0.0)
    fit_vols = [np.sqrt(w_all[starts[i] : starts[i + 1]] / s.t_quote) for i, s in enumerate(slices)]
    inside_all = _inside(slices, fit_vols)
    atm_w = _w_and_slope(surface)
    out = []
    for i, (s, f) in enumerate(zip(slices, fits, strict=True)):
        fit_vol = fit_vols[i]
        rmse = float(np.sqrt(np.mean((fit_vol - s.mid) ** 2))) * 100.0
        inside = inside_all[i]
        w0, w1 = atm_w[i]
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
                inside_share=float(np.mean(inside)) if inside.size else math.nan,
                method=f.method,
                butterfly_violations=bfly,
                calendar_violations=cal,
                calendar_repaired=bool(np.any(fit_vol**2 * s.t_quote > raw * (1 + 1e-12))),
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
        "n_quotes": [e.n_quotes for e in out],
        "method": [e.method for e in out],
        "butterfly_violations": [e.butterfly_violations for e in out],
        "calendar_violations": [e.calendar_violations for e in out],
    }
    if all(math.isfinite(e.inside_share) for e in out):
        diag["inside_share"] = [e.inside_share for e in out]
    object.__setattr__(surface, "diagnostics", diag)
    return UnderlyingFit(underlying, spot, rate, q, surface, out, dropped)


def _inside(slices: list[_Slice], fit_vols: list[FloatArray]) -> list[np.ndarray]:
    """Per slice, whether each fitted price is inside its bid/ask (one pricing call for all)."""
    if any(s.bid_price is None for s in slices):  # vols given directly: no bid/ask to be inside
        return [np.zeros(0, dtype=bool) for _ in slices]
    reps = [s.k.size for s in slices]
    fwd = np.repeat([s.forward for s in slices], reps)
    t = np.repeat([s.t_quote for s in slices], reps)
    r_d = -np.log(np.repeat([s.discount for s in slices], reps)) / t
    strikes = fwd * np.exp(np.concatenate([s.k for s in slices]))
    is_call = np.concatenate([s.is_call for s in slices])
    price = _prices(fwd, strikes, t, r_d, np.concatenate(fit_vols), is_call)
    bid = np.concatenate([s.bid_price for s in slices])
    ask = np.concatenate([s.ask_price for s in slices])
    tol = 1e-9 * fwd
    inside = (price >= bid - tol) & (price <= ask + tol)
    return np.split(inside, np.cumsum(reps)[:-1])


_H = 1e-4  # the ATM skew's central difference step in log-moneyness


def _w_and_slope(surface: FittedSurface) -> list[tuple[float, float]]:
    """Every expiry's calendar-repaired ATM total variance and its slope in ``k`` (one running
    maximum over the expiries, as :meth:`FittedSurface.total_variance` per expiry)."""
    w = surface.total_variances(np.array([-_H, 0.0, _H]))
    return [(float(wj[1]), float((wj[2] - wj[0]) / (2 * _H))) for wj in w]


def _node_years(valuation: Any, expiry: Any) -> float:
    """ACT/365 from the valuation date to the expiry's date, as :meth:`Market.year_fraction`."""
    days = (
        np.asarray(expiry).astype("datetime64[D]") - np.asarray(valuation).astype("datetime64[D]")
    ).astype(np.int64)
    return float(days) / DAYS_PER_YEAR


def fit_chain(chain: Chain) -> tuple[Any, dict[str, UnderlyingFit]]:
    """Fit every underlying of ``chain``; returns the valuation date and the fits by underlying.

    The valuation date is the date of the chain's newest quote; expiries on that date (no whole day
    left) are dropped and counted under ``dropped["expires_today"]``.
    """
    valuation: Any = np.asarray(chain.timestamp).astype("datetime64[D]")[()]
    fits: dict[str, UnderlyingFit] = {}
    for und in sorted(set(chain.underlying.tolist())):
        rows_u = np.flatnonzero(chain.underlying == und)
        spot = float(np.median(chain.spot[rows_u]))
        dropped = dict(chain.dropped)
        exps = np.unique(chain.expiry[rows_u])
        live = np.array([_node_years(valuation, exp) > 0 for exp in exps])
        dropped["expires_today"] = int(np.sum(np.isin(chain.expiry[rows_u], exps[~live])))
        dropped["no_vol"] = 0
        euro, rows_u, american = de_americanise(
            chain, rows_u[np.isin(chain.expiry[rows_u], exps[live])], spot
        )
        dropped.update(american)
        picks = []
        for exp in exps[live]:
            rows = rows_u[euro.expiry[rows_u] == exp]
            if rows.size == 0:  # every quote American with no implied vol (counted)
                continue
            t_quote = float(euro.years(np.array([exp]))[0])
            picks.append((exp, t_quote, *_otm_pick(euro, rows, t_quote, spot)))
        slices = []
        for pick, sl in zip(picks, _otm_slices(euro, picks) if picks else [], strict=True):
            if sl is None:
                dropped["no_vol"] += int(np.sum(euro.expiry[rows_u] == pick[0]))
                continue
            sl.t_node = _node_years(valuation, pick[0])
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
