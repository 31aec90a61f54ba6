"""Adverse selection by markout horizon (optmm.sim.markouts): the fair values after the fills against
the loop's own markouts and a textbook Black-Scholes formula; the informed orders' rule; the rates
counted fill by fill."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from optmm.sim.config import SECONDS_PER_YEAR, SimConfig
from optmm.sim.engine import simulate
from optmm.sim.markouts import MARKOUT_COLUMNS, horizons, markouts
from optmm.sim.result import SimResult

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def informed() -> SimResult:
    cfg = SimConfig.load(ROOT / "scenarios/sim/informed_flow.toml").with_overrides(
        {"sim.steps": 1800, "sim.quotes_window_s": 60.0}
    )
    return simulate(cfg)


def _bs(s: float, k: float, t: float, r: float, q: float, v: float, call: bool) -> float:
    """Black-Scholes-Merton by the textbook formula (math.erf), independent of optmm.greeks."""
    d1 = (math.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    n = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # noqa: E731
    if call:
        return s * math.exp(-q * t) * n(d1) - k * math.exp(-r * t) * n(d2)
    return k * math.exp(-r * t) * n(-d2) - s * math.exp(-q * t) * n(-d1)


def _fair_after(result: SimResult, h_steps: int) -> np.ndarray:
    """Each fill's fair value ``h_steps`` after it, one by one from the underlyings table (NaN past
    the last recorded step)."""
    cfg = result.config
    und = cfg.underlying[0]
    u = result.underlyings.set_index(["path", "step"])
    out = np.full(len(result.fills), math.nan)
    for j, f in enumerate(result.fills.itertuples()):
        k = f.step + h_steps
        if k >= cfg.sim.steps:
            continue
        s, vol = u.loc[(f.path, k), "spot"], u.loc[(f.path, k), "vol"]
        x = math.log(f.strike) - math.log(s)
        iv = max(vol + und.smile_slope * x + und.smile_curvature * x * x, 0.01)
        t = f.expiry_days / 365.0 - k * cfg.sim.dt_s / SECONDS_PER_YEAR
        out[j] = _bs(s, f.strike, t, und.rate, und.div_yield, iv, f.kind == "call")
    return out


def test_default_horizons(informed: SimResult) -> None:
    # the toxicity detector's 1, 5, 30 s, markout_s 5 s and the informed orders' 120 s
    assert horizons(informed) == (1.0, 5.0, 30.0, 120.0)


def test_marks_agree_with_the_loop_and_a_textbook_formula(informed: SimResult) -> None:
    f = informed.fills
    h = round(informed.config.sim.markout_s / informed.config.sim.dt_s)
    fair_h = _fair_after(informed, h)
    mult = informed.config.chain.multiplier
    mine = f["side"] * (fair_h - f["price"]) * f["size"] * mult
    ok = np.isfinite(fair_h)
    assert ok.sum() > 100
    # the loop's markout column, fill by fill (1e-9 of the notional)
    np.testing.assert_allclose(mine[ok], f["markout"][ok], rtol=0, atol=1e-9 * mult * f["size"].max())
    row = markouts(informed, [informed.config.sim.markout_s]).iloc[0]
    assert row["fills"] == ok.sum()
    assert row["markout_pnl"] == pytest.approx(mine[ok].sum(), rel=1e-9)
    spread = f["spread_capture"][ok].sum()
    assert row["spread_capture"] == pytest.approx(spread, rel=1e-12)
    assert row["adverse_selection"] == pytest.approx(mine[ok].sum() - spread, rel=1e-9)
    # the mid's move against us, counted fill by fill
    against = (f["side"] * (fair_h - f["fair"]) < 0.0)[ok]
    assert row["adverse_rate_mid"] == pytest.approx(against.mean(), abs=1e-15)
    assert row["informed_fills"] == int((f["informed"] & ok).sum()) > 0
    assert row["adverse_rate_mid_informed"] == pytest.approx(against[f["informed"][ok]].mean(), abs=1e-15)


def test_every_informed_fill_is_marked_down_at_the_informed_horizon(informed: SimResult) -> None:
    # an informed order trades only when the fair value informed_horizon_s ahead is through our quote,
    # so its markout against our price at that horizon is negative, every one
    h = round(informed.config.flow.informed_horizon_s / informed.config.sim.dt_s)
    f = informed.fills
    fair_h = _fair_after(informed, h)
    inf = f["informed"].to_numpy() & np.isfinite(fair_h)
    assert inf.sum() > 10
    assert (f["side"][inf] * (fair_h[inf] - f["price"][inf]) < 0.0).all()
    row = markouts(informed, [informed.config.flow.informed_horizon_s]).iloc[0]
    assert row["adverse_selection"] < 0.0


def test_the_underlying_rate_counts_moves_against_the_fills_delta(informed: SimResult) -> None:
    f = informed.fills
    u = informed.underlyings.set_index(["path", "step"])["spot"]
    s0 = u.loc[list(zip(f["path"], f["step"], strict=True))].to_numpy()
    k1 = f["step"] + 30
    ok = (k1 < informed.config.sim.steps).to_numpy()
    s1 = np.full(len(f), math.nan)
    s1[ok] = u.loc[list(zip(f["path"][ok], k1[ok], strict=True))].to_numpy()
    # a call's delta is positive, a put's negative
    sign = np.where(f["kind"] == "call", 1.0, -1.0)
    want = (f["side"] * sign * (s1 - s0) < 0.0)[ok].mean()
    assert markouts(informed, [30.0]).iloc[0]["adverse_rate_underlying"] == pytest.approx(want, abs=1e-15)


def test_no_fills_and_bad_horizons(informed: SimResult) -> None:
    from dataclasses import replace

    empty = replace(informed, fills=informed.fills.iloc[0:0])
    df = markouts(empty, [5.0])
    assert list(df.columns) == list(MARKOUT_COLUMNS) and df["fills"].tolist() == [0]
    assert df["markout_pnl"].tolist() == [0.0] and df["adverse_selection"].tolist() == [0.0]
    assert math.isnan(df["adverse_rate_mid"].iloc[0])
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive number of seconds"):
            markouts(informed, [bad])


def test_compare_table_has_a_row_pair_per_horizon(informed: SimResult) -> None:
    from optmm.sim.report import COMPARE_COLUMNS, compare_table, format_table, horizon_columns

    df = compare_table({"a": informed, "b": informed})
    mk = markouts(informed)
    extra = [c for h in mk["horizon_s"] for c in horizon_columns(h)]
    assert [c for c in df.columns if c not in COMPARE_COLUMNS] == extra
    for _, m in mk.iterrows():
        a, r = horizon_columns(m["horizon_s"])
        assert df.loc["b", a] == m["adverse_selection"] and df.loc["a", r] == m["adverse_rate_mid"]
    text = format_table(df)
    assert "adverse selection at 120 s (markout - spread)" in text
    assert "fills the mid moved against at 120 s" in text
