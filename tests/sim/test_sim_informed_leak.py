"""Price discovery (``[flow] informed_leak``): the hedge of a step with informed fills trades around a mid
moved toward the informed orders' forecast, and that is what informed flow costs a hedged book.

Tolerances: a hedge's price is recomputed from the run's own tables (the path's spot at the step and
``informed_horizon_s`` later, the underlying's half-spread and the hedger's slippage), independently of
the loop's arithmetic, to 1e-12 of the price (a few roundings of a sum of terms of the price's size);
the hedge cost to 1e-12 of the hedge's notional. With ``informed_leak = 0`` the loop is unchanged bit
for bit (``tests/golden/test_golden.py`` pins every table of the bundled ``flash_crash``, whose informed
sellers fill at a leak of 0, as before the setting existed; here the price rule at 0 is checked too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm.sim.config import SimConfig
from optmm.sim.engine import simulate
from optmm.sim.markouts import markouts
from optmm.sim.result import SimResult

ROOT = Path(__file__).resolve().parents[2]
INFORMED = ROOT / "scenarios/sim/informed_flow.toml"
SHORT = {"sim.steps": 3600, "sim.quotes_window_s": 60.0}


@pytest.fixture(scope="module")
def leaky() -> SimResult:
    """An hour of the bundled informed day, with its leak (0.8)."""
    return simulate(SimConfig.load(INFORMED).with_overrides(SHORT))


@pytest.fixture(scope="module")
def tight() -> SimResult:
    """The same hour without the leak."""
    return simulate(SimConfig.load(INFORMED).with_overrides({**SHORT, "flow.informed_leak": 0.0}))


def expected_hedges(result: SimResult) -> pd.DataFrame:
    """The hedges with the mid they should trade around, their expected price and cost, computed from the
    run's tables: the spot at the hedge's step k; in a step with an informed fill on the underlying, moved
    ``informed_leak`` of the way to the spot at k + h (h the informed horizon in steps); the hedger pays
    the underlying's half-spread plus its slippage in basis points of that mid, and the cost is counted
    against the spot at k. Hedges whose k + h is past the table's last step are left out."""
    cfg = result.config
    h = max(1, round(cfg.flow.informed_horizon_s / cfg.sim.dt_s))
    spot = result.underlyings.set_index(["path", "underlying", "step"])["spot"]
    half = {u.name: u.half_spread for u in cfg.underlying}
    assert cfg.hedger.use_market_spread  # the price rule below is the market-spread one
    hed = result.hedges[result.hedges["step"] + h < cfg.sim.steps].copy()
    f = result.fills[result.fills["informed"]]
    informed_steps = set(zip(f["path"], f["underlying"], f["step"], strict=True))
    key = list(zip(hed["path"], hed["underlying"], hed["step"], strict=True))
    hed["leaked"] = [k in informed_steps for k in key]
    s_k = spot.loc[key].to_numpy()
    s_h = spot.loc[[(p, u, k + h) for p, u, k in key]].to_numpy()
    theta = cfg.flow.informed_leak
    mid = np.where(hed["leaked"], s_k + theta * (s_h - s_k), s_k)
    half_k = hed["underlying"].map(half).to_numpy()
    sign = np.sign(hed["shares"].to_numpy())
    hed["s_k"] = s_k
    hed["want_price"] = mid + sign * (half_k + cfg.hedger.slippage_bps * 1e-4 * mid)
    hed["price_at_spot"] = s_k + sign * (half_k + cfg.hedger.slippage_bps * 1e-4 * s_k)
    hed["want_cost"] = hed["shares"].to_numpy() * (hed["want_price"].to_numpy() - s_k)
    return hed


@pytest.mark.parametrize("which", ["leaky", "tight"])
def test_hedges_of_steps_with_informed_fills_trade_at_the_leaked_mid(
    which: str, request: pytest.FixtureRequest
) -> None:
    result: SimResult = request.getfixturevalue(which)
    hed = expected_hedges(result)
    assert hed["leaked"].sum() >= 20 and (~hed["leaked"]).sum() >= 20  # both kinds of step are checked
    price = hed["price"].to_numpy()
    np.testing.assert_allclose(price, hed["want_price"], rtol=1e-12, atol=0.0)
    notional = (hed["shares"].abs() * hed["price"]).to_numpy()
    assert (np.abs(hed["cost"] - hed["want_cost"]).to_numpy() <= 1e-12 * notional).all()
    assert (hed["mid"].to_numpy() == hed["s_k"].to_numpy()).all()  # the recorded mid is the step's spot
    off = np.abs(hed["price"] - hed["price_at_spot"]).to_numpy()  # from the price of the rule without leak
    leaked = hed["leaked"].to_numpy()
    assert off[~leaked].max() <= 1e-12 * price.max()
    if which == "leaky":  # the leak moves the price by cents: the check above tells the two rules apart
        assert np.median(off[leaked]) > 1e-3
    else:
        assert off[leaked].max() <= 1e-12 * price.max()


def test_the_leak_changes_the_hedges_price_only(leaky: SimResult, tight: SimResult) -> None:
    # the hedger decides on the observed spot: the same fills and hedge orders; the P&L differs by the
    # hedge cost alone, and the leak is a cost (an informed fill's hedge trades toward their forecast)
    pd.testing.assert_frame_equal(leaky.fills, tight.fills)
    cols = ["path", "step", "underlying", "shares", "mid", "reason"]
    pd.testing.assert_frame_equal(leaky.hedges[cols], tight.hedges[cols])
    d_cost = leaky.steps["hedge_cost"] - tight.steps["hedge_cost"]
    d_pnl = leaky.steps["pnl"] - tight.steps["pnl"]
    np.testing.assert_allclose(d_pnl, -d_cost, rtol=0.0, atol=1e-9)
    assert d_cost.sum() > 0.0
    assert leaky.summary["total_pnl_mean"] < tight.summary["total_pnl_mean"]


def test_the_bundled_informed_day_costs_a_hedged_book() -> None:
    # the whole bundled day, one path: informed flow takes more than 30% of the spread it pays at its
    # horizon, and the day earns less than the same day without informed flow
    cfg = SimConfig.load(INFORMED)
    assert cfg.flow.informed_leak > 0.0
    day = simulate(cfg)
    without = simulate(cfg.with_overrides({"flow.informed_rate": 0.0}))
    assert day.fills["informed"].any() and not without.fills["informed"].any()
    row = markouts(day, [cfg.flow.informed_horizon_s]).iloc[0]
    assert row["spread_capture"] > 0.0
    assert -row["adverse_selection"] >= 0.3 * row["spread_capture"]
    assert row["adverse_share_of_spread"] >= 0.3
    assert day.summary["total_pnl_mean"] < without.summary["total_pnl_mean"]


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_a_leak_outside_0_1_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match=r"\[flow\] informed_leak: must be a finite number"):
        SimConfig.load(INFORMED).with_overrides({"flow.informed_leak": value})
