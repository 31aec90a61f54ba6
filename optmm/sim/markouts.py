"""Adverse selection as practitioners measure it: after each of our fills, did the price move against us?

:func:`markouts` takes a run's fills and marks each of them at several horizons (seconds after the
fill) against two prices:

* the option's **mid**: in the simulator the market has no quotes but ours, so an option's mid is its
  fair value (Black–Scholes–Merton on the path's spot and implied-vol surface, the value the quoter
  prices from): a fill is adverse at horizon ``h`` when ``side · (fair(t + h) − fair(t)) < 0`` (we
  bought and the mid fell, or we sold and it rose);
* the **underlying's mid** against the delta the fill gave us: adverse when
  ``side · Δ(t) · (S(t + h) − S(t)) < 0``, the part of the move a delta hedge can take away.

Next to the rates, the markout P&L at each horizon: ``side · (fair(t + h) − price) · size ·
multiplier`` summed over the fills, its split into the spread captured at the fill and the adverse
move after it (``markout − spread capture``), and that move's share of the spread.

This is not the summary's ``fill_price_markout_loss_rate``, which counts fills whose markout
against their own *fill price* is negative: the half-spread earned outweighs a few seconds' move, so
that rate stays near zero whatever the flow.

The fair values after the fills are computed again from the run's ``underlyings`` table (spot and vol
per step) with the simulator's surface rule (``vol_t + slope·x + curvature·x²``, ``x = ln K − ln S``,
floored at one vol point) and :func:`optmm.greeks.bsm_price` (on the spot less the contract's cash
dividends, ``result.div_pv0`` carried forward, as the loop prices them), or for an American option
(``result.american``) :func:`optmm.greeks.american_price` (:func:`fair_values`); at the run's ``markout_s``
they equal the ``markout`` column the loop records (``tests/sim/test_sim_markouts.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optmm.greeks import american_greeks, american_price, bsm_greeks, bsm_price
from optmm.pricing import dividends_seen
from optmm.sim._kernels import VOL_FLOOR, dividend_pv_py
from optmm.sim.config import SECONDS_PER_YEAR
from optmm.sim.result import SimResult
from optmm.units import DAYS_PER_YEAR

__all__ = ["MARKOUT_COLUMNS", "VOL_FLOOR", "fair_values", "horizons", "markouts", "smile_vols"]


def smile_vols(
    vol: np.ndarray, slope: np.ndarray, curvature: np.ndarray, x: np.ndarray, offset: np.ndarray | float
) -> np.ndarray:
    """The loop's implied vols (:func:`optmm.sim._kernels._smile_vol`) over arrays: ``vol + slope·x +
    curvature·x² + offset`` at log-moneyness ``x = ln K − ln S``, floored at ``VOL_FLOOR`` (one vol
    point), in the loop's order of operations, so the same figures."""
    return np.maximum(vol + slope * x + curvature * x * x + offset, VOL_FLOOR)


def fair_values(
    args: tuple[np.ndarray, ...],
    american: np.ndarray,
    *,
    greeks: bool = False,
    cash: tuple[np.ndarray, np.ndarray, np.ndarray, Sequence[tuple[np.ndarray, np.ndarray]]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Options' fair values as the loop prices them, and (with ``greeks``, else NaN) their deltas per
    unit: ``args`` those of :func:`optmm.greeks.bsm_price` (spot, strike, time, rate, carry, vol, is_call:
    1-d arrays of one length; the spot escrowed), Black-Scholes-Merton, the ``american`` ones by
    :func:`optmm.greeks.american_price` (:func:`~optmm.greeks.american_greeks`) at its default accuracy
    (:func:`optmm.pricing.contract_price`'s, ``sim._kernels._market_step``'s). With ``cash`` = (per row:
    underlying index, years since the start, the full spot; per underlying: the cash dividends, ex-times
    from the start and amounts), those on an underlying with dividends to go ex are priced on the full
    spot and the dividends seen then (the finite-difference engine); the others by the boundary engine."""
    if greeks:
        g = bsm_greeks(*args)
        price, delta = g.price, g.delta
    else:
        price, delta = bsm_price(*args), np.full(args[0].shape, math.nan)
    groups: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]] = []
    if american.any():
        fd = np.zeros(american.shape, dtype=bool)
        if cash is not None:
            u, elapsed, _, dividends = cash
            for j, (ex, amt) in enumerate(dividends):
                for e in np.unique(elapsed[american & (u == j)]) if ex.size else ():
                    rows = american & (u == j) & (elapsed == e)
                    schedule = dividends_seen(ex, amt, e)
                    if schedule is not None:
                        groups.append((rows, schedule))
                        fd |= rows
        groups.append((american & ~fd, None))
    for rows, schedule in groups:
        sub = tuple(a[rows] for a in args)
        if schedule is not None:  # (the engine escrows the full spot itself)
            sub = (cash[2][rows], *sub[1:])  # type: ignore[index]
        if greeks:
            ga = american_greeks(*sub, dividends=schedule)
            price[rows], delta[rows] = ga.price, ga.delta
        else:
            price[rows] = american_price(*sub, dividends=schedule)
    return price, delta


MARKOUT_COLUMNS = (
    "horizon_s",
    "fills",
    "spread_capture",
    "markout_pnl",
    "adverse_selection",
    "adverse_share_of_spread",
    "adverse_rate_mid",
    "adverse_rate_underlying",
    "informed_fills",
    "adverse_rate_mid_informed",
)
"""The columns of :func:`markouts` (see its docstring)."""


def horizons(result: SimResult) -> tuple[float, ...]:
    """The default markout horizons of a run, in seconds: the toxicity detector's
    (``[toxicity] markout_horizons_s``), the run's ``[sim] markout_s`` and, with informed flow, its
    ``informed_horizon_s``; sorted, each at least one step and shorter than the run."""
    cfg = result.config
    dt, length = cfg.sim.dt_s, cfg.sim.steps * cfg.sim.dt_s
    hs = {float(h) for h in cfg.toxicity.markout_horizons_s} | {float(cfg.sim.markout_s)}
    if cfg.flow.informed_rate > 0.0:
        hs.add(float(cfg.flow.informed_horizon_s))
    return tuple(sorted(h for h in hs if dt <= h < length))


def _values(
    result: SimResult, fills: pd.DataFrame, step: np.ndarray, *, greeks: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fills' instruments at ``step`` (per fill): fair value (as the loop prices it: the smile plus
    the contract's ``result.vol_offset``), underlying's spot, and (with ``greeks``) delta per unit; NaN
    where ``step`` is past the run's last recorded step."""
    cfg = result.config
    n = len(fills)
    unds = result.underlyings
    names = {u.name: j for j, u in enumerate(cfg.underlying)}
    nu, n_steps = len(cfg.underlying), cfg.sim.steps
    ok = step < n_steps
    # the underlyings table is (path, step, underlying) in that order: a row number per fill
    u_idx = fills["underlying"].map(names).to_numpy(dtype=np.int64)
    row = (fills["path"].to_numpy(dtype=np.int64) * n_steps + np.where(ok, step, 0)) * nu + u_idx
    spot = np.where(ok, unds["spot"].to_numpy(dtype=float)[row], math.nan)
    vol = np.where(ok, unds["vol"].to_numpy(dtype=float)[row], math.nan)
    kind = fills["kind"].to_numpy(dtype=object)
    opt = kind != "stock"
    fair = spot.copy()
    delta = np.ones(n)
    if opt.any():
        und = [cfg.underlying[j] for j in u_idx[opt]]
        strike = fills["strike"].to_numpy(dtype=float)[opt]
        s = spot[opt]
        x = np.log(strike) - np.log(s)
        slope = np.array([u.smile_slope for u in und])
        curv = np.array([u.smile_curvature for u in und])
        off = result.vol_offset
        contract = fills["contract"].to_numpy(dtype=np.int64)[opt]
        iv = smile_vols(vol[opt], slope, curv, x, off[contract] if off.size else 0.0)
        elapsed = step[opt] * (cfg.sim.dt_s / SECONDS_PER_YEAR)
        t = (fills["expiry_days"].to_numpy(dtype=float)[opt] / DAYS_PER_YEAR) - elapsed
        rate = np.array([u.rate for u in und])
        div_yield = np.array([u.div_yield for u in und])
        s_full = s
        if result.div_pv0.size:  # the escrowed spot, as the loop prices (sim._kernels._market_step)
            s = s - dividend_pv_py(result.div_pv0[contract], rate - div_yield, elapsed)
        args = (
            np.where(np.isfinite(s), s, 1.0),
            strike,
            t,
            rate,
            div_yield,
            np.where(np.isfinite(iv), iv, VOL_FLOOR),
            kind[opt] == "call",
        )
        american = result.american[contract] if result.american.size else np.zeros(contract.size, dtype=bool)
        american = american & np.isfinite(s)  # (past the last step: no price)
        cash = (np.asarray(u_idx[opt]), elapsed, s_full, result.dividends) if result.dividends else None
        price, d = fair_values(args, american, greeks=greeks, cash=cash)
        fair[opt] = np.where(np.isfinite(s), price, math.nan)
        if greeks:
            delta[opt] = d
    return fair, spot, delta


def markouts(result: SimResult, horizons_s: Sequence[float] | None = None) -> pd.DataFrame:
    """Adverse selection of a run's fills at each horizon (default :func:`horizons`).

    Parameters
    ----------
    result : SimResult
    horizons_s : sequence of float, optional
        Seconds after the fill; each is rounded to a whole number of steps (at least one).

    Returns
    -------
    DataFrame
        One row per horizon, the columns :data:`MARKOUT_COLUMNS`: ``horizon_s``; ``fills``, the
        fills that have a mark at that horizon (a fill whose horizon falls past the run's last step
        has none), over all paths; money columns in currency, summed over those fills and averaged
        over paths: ``spread_capture`` (``side · (fair − price) · size · multiplier`` at the fill),
        ``markout_pnl`` (the same with the fair value ``h`` later), ``adverse_selection`` (their
        difference, the mid's move against us times size and multiplier: negative when it moved
        against us on balance); ``adverse_share_of_spread`` (``−adverse_selection /
        spread_capture``); the fractions of fills after which the option's mid
        (``adverse_rate_mid``) or the underlying's mid against the fill's delta
        (``adverse_rate_underlying``) moved against us; ``informed_fills`` and
        ``adverse_rate_mid_informed``, the latter among informed fills. A rate with no fill to
        count is NaN; the money columns are 0 when no fill has a mark.

    Raises
    ------
    ValueError
        A horizon that is not a positive finite number of seconds.
    """
    hs = horizons(result) if horizons_s is None else tuple(float(h) for h in horizons_s)
    for h in hs:
        if not (math.isfinite(h) and h > 0.0):
            raise ValueError(f"markouts: a horizon must be a positive number of seconds, got {h!r}")
    fills = result.fills
    n_paths = int(result.summary.get("paths") or max(1, result.steps["path"].nunique()))
    dt = result.config.sim.dt_s
    rows = []
    if len(fills):
        step = fills["step"].to_numpy(dtype=np.int64)
        side = fills["side"].to_numpy(dtype=float)
        notional = fills["size"].to_numpy(dtype=float) * np.array(
            [result.config.chain.multiplier if k != "stock" else 1.0 for k in fills["kind"]]
        )
        price = fills["price"].to_numpy(dtype=float)
        informed = fills["informed"].to_numpy(dtype=bool)
        fair0, spot0, delta0 = _values(result, fills, step, greeks=True)
    for h in hs:
        if not len(fills):
            zero = dict.fromkeys(("spread_capture", "markout_pnl", "adverse_selection"), 0.0)
            rows.append({"horizon_s": h, "fills": 0, "informed_fills": 0, **zero})
            continue
        fair_h, spot_h, _ = _values(result, fills, step + max(1, round(h / dt)), greeks=False)
        ok = np.isfinite(fair_h)
        spread = float(np.sum((side * (fills["fair"].to_numpy(dtype=float) - price) * notional)[ok]))
        mark = float(np.sum((side * (fair_h - price) * notional)[ok]))
        against = side * (fair_h - fair0) < 0.0
        inf_ok = ok & informed
        rows.append(
            {
                "horizon_s": h,
                "fills": int(ok.sum()),
                "spread_capture": spread / n_paths,
                "markout_pnl": mark / n_paths,
                "adverse_selection": (mark - spread) / n_paths,
                "adverse_share_of_spread": (spread - mark) / spread if spread > 0.0 else math.nan,
                "adverse_rate_mid": float(against[ok].mean()) if ok.any() else math.nan,
                "adverse_rate_underlying": float((side * delta0 * (spot_h - spot0) < 0.0)[ok].mean())
                if ok.any()
                else math.nan,
                "informed_fills": int(inf_ok.sum()),
                "adverse_rate_mid_informed": float(against[inf_ok].mean()) if inf_ok.any() else math.nan,
            }
        )
    df = pd.DataFrame(rows, columns=list(MARKOUT_COLUMNS))
    df["fills"] = df["fills"].fillna(0).astype(np.int64)
    df["informed_fills"] = df["informed_fills"].fillna(0).astype(np.int64)
    return df
