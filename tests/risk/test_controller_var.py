"""The book's VaR limit in the risk controller: the VaR it measures on historical scenarios against
``var_es`` of an independent revaluation (``bsm_price`` / ``american_price`` per position per
scenario), its layers (soft, hard, reduce-only) and audit records, and the refusals (a var limit
without scenarios, scenarios that cannot be used)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import Clock, flat_market, make_book, with_cash_dividends

from optmm import pricing
from optmm.book import Kind
from optmm.greeks import american_price, bsm_price
from optmm.market import Market
from optmm.risk import AuditTrail, Layer, LimitSet, QuoteRequest
from optmm.risk.controller import RiskController
from optmm.risk.var import var_es

EXPIRY, EXPIRY2 = "2026-04-17", "2026-07-17"
SPOT = {"AAA": 100.0, "BBB": 50.0, "CCC": 20.0}
RATE = {"AAA": 0.03, "BBB": 0.03, "CCC": 0.02}
Q = {"AAA": 0.01, "BBB": 0.0, "CCC": 0.0}
VOL = {"AAA": 0.25, "BBB": 0.40, "CCC": 0.30}
LEVEL = 0.95
DIVS = (np.array([0.05, 0.30]), np.array([0.6, 0.6]))  # AAA's cash dividends in the terms test

ROWS = [
    ("AAA", Kind.CALL, 100.0, EXPIRY, 10.0),
    ("AAA", Kind.PUT, 95.0, EXPIRY2, -25.0),
    ("BBB", Kind.CALL, 50.0, EXPIRY, -8.0),
    ("BBB", Kind.PUT, 45.0, EXPIRY2, 12.0),
    ("AAA", Kind.STOCK, 0.0, None, -300.0),
    ("BBB", Kind.STOCK, 0.0, None, 150.0),
]


def make_market() -> Market:
    return flat_market(SPOT, RATE, Q, VOL)


def limit_set(var: float | dict | None = 1e12) -> LimitSet:
    d: dict = {
        "name": "v",
        "contract": {"position": 1e12},
        "scenario": {"spot": [-0.1, 0.0, 0.1], "vol": [0.0]},
    }
    d["book"] = (
        {"daily_loss": 1e12} if var is None else {"var": var if isinstance(var, dict) else {"hard": var}}
    )
    if var is not None:
        d["book"]["var"].setdefault("level", LEVEL)
    return LimitSet.from_dict(d)


def scenarios(n: int = 60, seed: int = 7, names=("AAA", "BBB")) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=n, freq="B", name="date")
    spot = pd.DataFrame(rng.normal(0.0, 0.03, (n, len(names))), index=index, columns=list(names))
    vol = pd.DataFrame(rng.normal(0.0, 0.02, (n, len(names))), index=index, columns=list(names))
    return spot, vol


def reference_pnl(spot_shift, vol_shift, spots=SPOT, american=lambda u: False, divs=lambda u: None):
    """The book's P&L per scenario: every position revalued on its own (scalar calls)."""
    market = make_market()
    pnl = np.zeros(len(spot_shift))
    for u, kind, strike, expiry, qty in ROWS:
        ds = spot_shift[u].to_numpy()
        s0 = spots[u]
        if kind == Kind.STOCK:
            pnl += qty * s0 * ds
            continue
        t = float(market.year_fraction(np.datetime64(expiry)))
        fn = american_price if american(u) else bsm_price
        args = (strike, t, RATE[u], Q[u])
        base = float(fn(s0, *args, VOL[u], kind == Kind.CALL, dividends=divs(u)))
        for i, (d, dv) in enumerate(zip(ds, vol_shift[u].to_numpy(), strict=True)):
            v = max(VOL[u] + dv, 0.0)
            pnl[i] += (
                qty * 100.0 * (float(fn(s0 * (1 + d), *args, v, kind == Kind.CALL, dividends=divs(u))) - base)
            )
    return pnl


def make_ctl(limits=None, *, spot=None, vol=None, audit=False, clock=None) -> RiskController:
    if spot is None:
        spot, vol = scenarios()
    return RiskController(
        make_book(ROWS), make_market(), limits or limit_set(), audit=AuditTrail() if audit else None,
        clock=clock or Clock(), var_spot_shift=spot, var_vol_shift=vol,
    )  # fmt: skip


def test_var_equals_var_es_of_an_independent_revaluation() -> None:
    spot, vol = scenarios()
    ctl = make_ctl(spot=spot, vol=vol)
    ref = reference_pnl(spot, vol)
    expected = var_es(ref, LEVEL)[0]
    assert expected > 0.0
    state = ctl.state()
    assert state.loc["book", "var"] == pytest.approx(expected, rel=1e-10)
    assert np.isnan(state.loc["AAA", "var"]) and state.loc["AAA", "var_hard"] == np.inf
    # the VaR scenario is the k-th worst (k = ceil(60 x 0.05) = 3) of the reference
    assert ctl.var_scenario == spot.index[np.argsort(ref)[2]]


def test_var_follows_the_spot_on_the_scenario_cadence() -> None:
    clock = Clock()
    spot, vol = scenarios(seed=3)
    ctl = make_ctl(spot=spot, vol=vol, clock=clock)
    before = ctl.state().loc["book", "var"]
    ctl.on_market_data("AAA", 104.0)  # within the cadence: the VaR is not re-measured
    assert ctl.state().loc["book", "var"] == before
    clock.t += 61.0
    ctl.on_market_data("AAA", 104.0)  # past every_s: recompute, the grid and the VaR at 104
    expected = var_es(reference_pnl(spot, vol, spots=SPOT | {"AAA": 104.0}), LEVEL)[0]
    assert ctl.state().loc["book", "var"] == pytest.approx(expected, rel=1e-10)
    assert expected != pytest.approx(before, rel=1e-6)


def test_var_of_contracts_on_their_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    """AAA's options American on cash dividends: priced by american_price per cell."""
    monkeypatch.setattr(pricing, "carry", with_cash_dividends(pricing.carry, {"AAA": DIVS}))
    monkeypatch.setattr(
        pricing, "american_flags", lambda m, u, style=None: np.asarray(u, dtype=object) == "AAA"
    )
    spot, vol = scenarios(n=40, seed=11)
    ctl = make_ctl(spot=spot, vol=vol)
    ref = reference_pnl(spot, vol, american=lambda u: u == "AAA", divs=lambda u: DIVS if u == "AAA" else None)
    assert ctl.state().loc["book", "var"] == pytest.approx(var_es(ref, LEVEL)[0], rel=1e-10)
    plain = var_es(reference_pnl(spot, vol), LEVEL)[0]
    assert ctl.state().loc["book", "var"] != pytest.approx(plain, rel=1e-4)  # the terms matter


def test_soft_and_hard_breaches_move_the_layers_and_are_audited() -> None:
    spot, vol = scenarios()
    var = var_es(reference_pnl(spot, vol), LEVEL)[0]
    soft = make_ctl(limit_set({"hard": 1.2 * var, "soft": 0.9 * var}), audit=True)
    assert soft.check() == [("AAA", Layer.SOFT), ("BBB", Layer.SOFT)]
    d = soft.decide(QuoteRequest(0, 10.0, 10.0))
    assert (d.layer, d.trigger, d.bid_size, d.ask_size) == (Layer.SOFT, "var", 5.0, 5.0)

    hard = make_ctl(limit_set({"hard": 0.9 * var, "soft": 0.5 * var}), audit=True)
    assert [layer for _, layer in hard.check()] == [Layer.HARD, Layer.HARD]
    ev = hard._audit.query(event="state")
    assert set(ev["trigger"]) == {"var"} and set(ev["layer"]) == {"HARD"}
    assert ev["measured"].to_numpy() == pytest.approx(var, rel=1e-10)
    assert ev["threshold"].to_numpy() == pytest.approx(0.9 * var, rel=1e-15)
    assert all("scope=book" in x for x in ev["detail"])
    # reduce-only: each contract keeps the side whose fill gains in the VaR scenario
    row = spot.index.get_loc(hard.var_scenario)
    one = spot.iloc[[row]], vol.iloc[[row]]
    market = make_market()
    for c, r in hard.contracts().iterrows():
        u = r.underlying
        fn_args = (r.strike, float(market.year_fraction(np.datetime64(r.expiry))), RATE[u], Q[u])
        call = r.kind == "call"
        base = float(bsm_price(SPOT[u], *fn_args, VOL[u], call))
        shocked = float(
            bsm_price(SPOT[u] * (1 + one[0][u].iloc[0]), *fn_args, VOL[u] + one[1][u].iloc[0], call)
        )
        gains_if_bought = shocked > base
        d = hard.decide(QuoteRequest(int(c), 10.0, 10.0))
        assert (d.layer, d.trigger) == (Layer.HARD, "var")
        assert (d.bid_size, d.ask_size) == ((10.0, 0.0) if gains_if_bought else (0.0, 10.0)), c
    drops = hard._audit.query(event="drop")
    assert len(drops) == hard.n_contracts and set(drops["trigger"]) == {"var"}


def test_a_var_limit_without_scenarios_is_refused() -> None:
    with pytest.raises(ValueError, match="has a var limit but no VaR scenarios were given"):
        RiskController(make_book(ROWS), make_market(), limit_set(), clock=Clock())


def test_without_a_var_limit_nothing_is_measured_unless_scenarios_are_given() -> None:
    ctl = RiskController(make_book(ROWS), make_market(), limit_set(None), clock=Clock())
    state = ctl.state()
    assert np.isnan(state.loc["book", "var"]) and state.loc["book", "var_hard"] == np.inf
    assert ctl.var_scenario is None
    spot, vol = scenarios()
    ctl.set_var_scenarios(spot, vol)  # measured and shown (at the default level), no limit to compare with
    assert ctl.limits.var_level == 0.99
    assert ctl.state().loc["book", "var"] == pytest.approx(
        var_es(reference_pnl(spot, vol), 0.99)[0], rel=1e-10
    )
    assert [layer for _, layer in ctl.check()] == [Layer.NORMAL, Layer.NORMAL]


def test_set_var_scenarios_replaces_them_and_moves_the_layer() -> None:
    spot, vol = scenarios()
    var = var_es(reference_pnl(spot, vol), LEVEL)[0]
    calm = (spot * 0.1, vol * 0.1)
    ctl = make_ctl(limit_set({"hard": 0.9 * var}), spot=calm[0], vol=calm[1])
    assert [layer for _, layer in ctl.check()] == [Layer.NORMAL, Layer.NORMAL]
    ctl.set_var_scenarios(spot, vol)
    assert ctl.state().loc["book", "var"] == pytest.approx(var, rel=1e-10)
    assert [layer for _, layer in ctl.check()] == [Layer.HARD, Layer.HARD]


def test_scenarios_that_cannot_be_used_are_refused_naming_the_scenario() -> None:
    spot, vol = scenarios()
    ctl = make_ctl(limit_set(None), spot=spot, vol=vol)
    bad = spot.copy()
    bad.iloc[4, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"scenario 2024-01-05 00:00:00, BBB: the spot move nan must be a finite"
    ):
        ctl.set_var_scenarios(bad, vol)
    bad.iloc[4, 1] = -1.0
    with pytest.raises(ValueError, match=r"BBB: the spot move -1.0 must be a finite number > -1"):
        ctl.set_var_scenarios(bad, vol)
    text = vol.astype(object)
    text.iloc[2, 0] = "high"
    with pytest.raises(
        ValueError, match="scenario 2024-01-03 00:00:00, AAA: the vol move 'high' must be a finite"
    ):
        ctl.set_var_scenarios(spot, text)
    with pytest.raises(ValueError, match="same index"):
        ctl.set_var_scenarios(spot, vol.iloc[1:])
    with pytest.raises(ValueError, match="same columns"):
        ctl.set_var_scenarios(spot, vol[["AAA"]])
    with pytest.raises(ValueError, match="no scenarios"):
        ctl.set_var_scenarios(spot.iloc[:0], vol.iloc[:0])
    with pytest.raises(ValueError, match="must both be pandas DataFrames"):
        ctl.set_var_scenarios(spot.to_numpy(), vol)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no column for 'BBB'"):
        RiskController(
            make_book(ROWS), make_market(), limit_set(), clock=Clock(), var_spot_shift=spot[["AAA"]],
            var_vol_shift=vol[["AAA"]],
        )  # fmt: skip
    # the last good scenarios stay in force after a refusal
    assert ctl.state().loc["book", "var"] == pytest.approx(
        var_es(reference_pnl(spot, vol), 0.99)[0], rel=1e-10
    )
    # a new underlying needs its column before it is added
    n, names = ctl.n_contracts, ctl.underlyings
    with pytest.raises(ValueError, match="add_contracts: the VaR scenarios have no column for 'CCC'"):
        ctl.add_contracts("CCC", "call", 20.0, EXPIRY)
    assert (ctl.n_contracts, ctl.underlyings) == (n, names)
    spot3, vol3 = scenarios(names=("AAA", "BBB", "CCC"))
    ctl.set_var_scenarios(spot3, vol3)
    ctl.add_contracts("CCC", "call", 20.0, EXPIRY)
    assert ctl.underlyings == ("AAA", "BBB", "CCC")
