"""The layered risk controller (optmm.risk.controller): layers and their precedence, the pre-trade
check, incremental state against full recomputes and independent references (exposures, scenario
grids), the kill switch, staleness, toxicity, the audit records, and decide_many against decide.

References: :func:`optmm.risk.exposures` and :func:`optmm.risk.scenario_grid` on a Book rebuilt from
the controller's positions; per-contract Greeks from :func:`optmm.greeks.bsm_greeks`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import Clock, make_book

from optmm.book import Book, Kind
from optmm.greeks import bsm_greeks
from optmm.market import Market, Sticky
from optmm.risk import AuditTrail, Layer, LimitSet, exposures, scenario_grid
from optmm.risk import _controller_kernels as ck
from optmm.risk.controller import Decision, QuoteRequest, RiskController
from optmm.surface import FlatSurface

ROOT = Path(__file__).resolve().parents[2]
VALUATION = np.datetime64("2026-01-02")
EXPIRY = "2026-04-17"
EXPIRY2 = "2026-07-17"
BIG = 1e12  # a limit that never binds


def make_market(spot_a: float = 100.0, spot_b: float = 50.0) -> Market:
    return Market(
        valuation=VALUATION,
        spot={"AAA": spot_a, "BBB": spot_b},
        rate={"AAA": 0.03, "BBB": 0.03},
        div_yield={"AAA": 0.01, "BBB": 0.0},
        surface={"AAA": FlatSurface(0.25), "BBB": FlatSurface(0.40)},
        sticky=Sticky.STRIKE,
        source="test",
    )


def limit_set(
    *,
    contract: dict | None = None,
    underlying: dict | None = None,
    book: dict | None = None,
    **settings,
) -> LimitSet:
    d: dict = {"name": "test", "stale_after_ms": 500, "soft_fraction": 0.8}
    d["contract"] = {"position": BIG} if contract is None else contract
    if underlying:
        d["underlying"] = underlying
    if book:
        d["book"] = book
    d["scenario"] = {"spot": [-0.1, 0.0, 0.1], "vol": [-0.05, 0.0, 0.05], "every_s": 60}
    d["scenario"].update(settings.pop("scenario", {}))
    d.update(settings)
    return LimitSet.from_dict(d)


def controller(rows, limits, *, market=None, clock=None, audit=True) -> RiskController:
    trail = AuditTrail() if audit else None
    return RiskController(
        make_book(rows) if not isinstance(rows, Book) else rows,
        market or make_market(),
        limits,
        audit=trail,
        clock=clock or Clock(),
    )


def events(ctl: RiskController, **filters) -> pd.DataFrame:
    return ctl._audit.query(**filters)


def book_of(ctl: RiskController) -> Book:
    """The controller's positions as a Book (options, then one stock row per underlying)."""
    table = ctl.contracts()
    state = ctl.state()
    rows = [
        (r.underlying, Kind.CALL if r.kind == "call" else Kind.PUT, r.strike, str(r.expiry), r.position,
         r.multiplier)
        for r in table.itertuples()
    ]  # fmt: skip
    rows += [(u, Kind.STOCK, 0.0, None, float(state.loc[u, "stock_shares"])) for u in ctl.underlyings]
    return make_book(rows)


CALL_A = ("AAA", Kind.CALL, 100.0, EXPIRY)
PUT_A = ("AAA", Kind.PUT, 95.0, EXPIRY)
CALL_B = ("BBB", Kind.CALL, 50.0, EXPIRY2)


# --------------------------------------------------------------------------------------------------
# the state against independent references


def test_initial_state_matches_exposures_and_scenario_grid():
    book = Book.load(ROOT / "scenarios/examples/book.csv")
    market = Market.load(ROOT / "scenarios/examples/market.toml")
    limits = LimitSet.load(ROOT / "scenarios/limits/desk.toml")
    ctl = RiskController(book, market, limits, clock=Clock())
    state = ctl.state()
    ex = exposures(book, market).by_underlying
    assert list(ctl.underlyings) == list(ex.index)
    for col in ("delta_shares", "delta_dollars", "gamma_dollars_1pct", "vega_per_vol_point"):
        np.testing.assert_allclose(state.loc[list(ex.index), col], ex[col], rtol=1e-12, err_msg=col)
    for col in ("delta_dollars", "gamma_dollars_1pct", "vega_per_vol_point"):
        assert state.loc["book", col] == pytest.approx(ex[col].sum(), rel=1e-12)
    grid = scenario_grid(book, market, spot_shocks=limits.scenario_spot, vol_shocks=limits.scenario_vol)
    for u in ctl.underlyings:
        expected = max(-grid.matrix(u).to_numpy().min(), 0.0)
        assert state.loc[u, "worst_scenario_loss"] == pytest.approx(expected, rel=1e-9)
    assert state.loc["book", "worst_scenario_loss"] == pytest.approx(
        -grid.matrix().to_numpy().min(), rel=1e-9
    )
    # the limits land in the right rows (SPY and TSLA have overrides in desk.toml)
    assert state.loc["SPY", "delta_shares_hard"] == 20_000
    assert state.loc["AAPL", "delta_shares_hard"] == 10_000
    assert state.loc["TSLA", "vega_per_vol_point_soft"] == pytest.approx(7_000)
    assert state.loc["book", "daily_loss_hard"] == 250_000
    assert state.loc["book", "delta_shares_hard"] == np.inf
    assert (state["position_hard"] == 250).all()
    # the desk set puts SPY (dollar gamma) in the soft layer, the rest normal
    assert state.loc["SPY", "layer"] == "SOFT"
    assert set(state.loc[["AAPL", "MSFT", "TSLA"], "layer"]) == {"NORMAL"}


def test_contract_table_and_per_contract_greeks():
    ctl = controller([(*CALL_A, 3.0), (*CALL_A, 2.0), (*PUT_A, -4.0, 50.0)], limit_set())
    assert ctl.n_contracts == 2
    c = ctl.contract_index("AAA", "call", 100.0, EXPIRY)
    p = ctl.contract_index("AAA", Kind.PUT, 95, np.datetime64(EXPIRY))
    table = ctl.contracts()
    assert table.loc[c, "position"] == 5.0
    assert table.loc[p, "position"] == -4.0 and table.loc[p, "multiplier"] == 50.0
    with pytest.raises(KeyError):
        ctl.contract_index("AAA", "call", 101.0, EXPIRY)
    ids = ctl.add_contracts("AAA", ["call", "call", "put"], [100.0, 105.0, 105.0], EXPIRY)
    assert ids[0] == c and ids[1] == 2 and ids[2] == 3
    assert ctl.add_contracts("AAA", "call", 105.0, EXPIRY).tolist() == [2]
    new_u = ctl.add_contracts("BBB", "put", [45.0, 50.0], EXPIRY2)
    assert ctl.underlyings == ("AAA", "BBB") and new_u.tolist() == [4, 5]
    table = ctl.contracts()
    assert (table.loc[[2, 3, 4, 5], "position"] == 0).all()
    t = float(make_market().year_fraction(np.datetime64(EXPIRY)))
    g = bsm_greeks(100.0, 105.0, t, 0.03, 0.01, 0.25, False)
    assert table.loc[3, "delta_shares"] == pytest.approx(100 * float(g.delta), rel=1e-12)
    assert table.loc[3, "gamma_dollars_1pct"] == pytest.approx(100 * float(g.gamma) * 100.0, rel=1e-12)
    assert table.loc[3, "vega_per_vol_point"] == pytest.approx(float(g.vega), rel=1e-12)
    # new contracts add nothing to the state
    assert ctl.state().loc["BBB", "vega_per_vol_point"] == 0.0
    with pytest.raises(ValueError, match="surface"):
        RiskController(
            make_book([(*CALL_A, 1.0)]),
            dataclasses.replace(make_market(), spot={"AAA": 100.0, "BBB": 50.0, "CCC": 10.0},
                                rate={"AAA": 0.0, "BBB": 0.0, "CCC": 0.0},
                                div_yield={"AAA": 0.0, "BBB": 0.0, "CCC": 0.0}),
            limit_set(),
        ).add_contracts("CCC", "call", 10.0, EXPIRY)  # fmt: skip


def test_kernel_state_is_the_live_state_the_kernels_update():
    # the simulator's entry point: the arrays the controller's own calls read and write
    ctl = _mixed_controller()
    cf, ust, prm, cells, stock_cells = ctl.kernel_state()
    assert cf.shape[0] == ctl.n_contracts and ust.shape[0] == len(ctl.underlyings) + 1
    assert cells.shape == (ust.shape[0], len(ctl.limits.scenario_spot) * len(ctl.limits.scenario_vol))
    assert stock_cells.shape == (len(ctl.underlyings), cells.shape[1]) and prm.ndim == 1
    before = ctl.position(0)
    ctl.on_fill(0, 3.0, 1.0)
    assert ctl.kernel_state()[0] is cf  # not a copy: the fill is seen in the same array
    assert ctl.position(0) == before + 3.0 == cf[0, ck.CPOS]


def test_incremental_equals_recompute_and_references_after_random_fills():
    rng = np.random.default_rng(7)
    rows = [(*CALL_A, 10.0), (*PUT_A, -5.0), (*CALL_B, 3.0), ("AAA", Kind.STOCK, 0.0, None, -300.0)]
    lim = limit_set()
    ctl = controller(rows, lim)
    ctl.add_contracts("AAA", ["call", "put"], [90.0, 110.0], EXPIRY2)
    ctl.add_contracts("BBB", "put", [40.0, 45.0, 55.0], EXPIRY)
    for _ in range(400):
        if rng.random() < 0.1:
            ctl.on_hedge(str(rng.choice(["AAA", "BBB"])), float(rng.integers(-500, 500)), 1.0)
        else:
            ctl.on_fill(int(rng.integers(ctl.n_contracts)), float(rng.integers(-20, 21)), 1.0)
    before = ctl.state()
    # independent references on the positions: exposures and the scenario grid
    book = book_of(ctl)
    ex = exposures(book, make_market()).by_underlying
    grid = scenario_grid(book, make_market(), spot_shocks=lim.scenario_spot, vol_shocks=lim.scenario_vol)
    for u in ctl.underlyings:
        for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
            assert before.loc[u, col] == pytest.approx(ex.loc[u, col], rel=1e-9, abs=1e-9), (u, col)
        wsl = max(-grid.matrix(u).to_numpy().min(), 0.0)
        assert before.loc[u, "worst_scenario_loss"] == pytest.approx(wsl, rel=1e-9, abs=1e-9)
    assert before.loc["book", "worst_scenario_loss"] == pytest.approx(
        max(-grid.matrix().to_numpy().min(), 0.0), rel=1e-9, abs=1e-9
    )
    diff = ctl.recompute()
    after = ctl.state()
    scale = before[["delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"]].abs().to_numpy()
    assert diff <= 1e-9 * max(1.0, float(np.nanmax(scale)))
    for col in (
        "delta_shares",
        "delta_dollars",
        "gamma_dollars_1pct",
        "vega_per_vol_point",
        "worst_scenario_loss",
    ):
        np.testing.assert_allclose(after[col], before[col], rtol=1e-9, atol=1e-9, err_msg=col)
    rec = events(ctl, event=["recompute", "mismatch"])
    assert rec["event"].tolist() == ["recompute"]
    assert rec["measured"].iloc[0] == diff


def test_recompute_records_a_mismatch():
    ctl = controller([(*CALL_A, 10.0)], limit_set())
    ctl._ust[0, 1] += 0.5  # corrupt the incremental delta_shares of AAA
    assert ctl.recompute() == pytest.approx(0.5)
    mis = events(ctl, event="mismatch")
    assert len(mis) == 1
    assert mis["trigger"].iloc[0] == "delta_shares" and mis["underlying"].iloc[0] == "AAA"
    assert mis["measured"].iloc[0] == pytest.approx(0.5) and mis["threshold"].iloc[0] < 1e-5
    assert ctl.recompute() < 1e-9  # repaired


def test_delta_dollars_follow_spot_and_cadence_refreshes_greeks():
    clock = Clock()
    ctl = controller([(*CALL_A, 10.0)], limit_set(scenario={"every_s": 5}), clock=clock)
    shares = ctl.state().loc["AAA", "delta_shares"]
    ctl.on_market_data("AAA", 110.0)
    st = ctl.state()
    assert st.loc["AAA", "delta_shares"] == shares  # Greeks kept until the cadence
    assert st.loc["AAA", "delta_dollars"] == pytest.approx(shares * 110.0, rel=1e-15)
    assert len(events(ctl, event="recompute")) == 0
    clock.t += 6.0
    ctl.on_market_data("AAA", 110.0)
    assert len(events(ctl, event="recompute")) == 1
    t = float(make_market().year_fraction(np.datetime64(EXPIRY)))
    g = bsm_greeks(110.0, 100.0, t, 0.03, 0.01, 0.25, True)
    assert ctl.state().loc["AAA", "delta_shares"] == pytest.approx(10 * 100 * float(g.delta), rel=1e-12)
    # the grid was re-measured at the new spot: it agrees with a grid on a market at 110
    moved = dataclasses.replace(make_market(), spot={"AAA": 110.0, "BBB": 50.0})
    grid = scenario_grid(book_of(ctl), moved, spot_shocks=[-0.1, 0.0, 0.1], vol_shocks=[-0.05, 0.0, 0.05])
    assert ctl.state().loc["AAA", "worst_scenario_loss"] == pytest.approx(
        -grid.matrix("AAA").to_numpy().min(), rel=1e-9
    )


def test_large_fill_remeasures_worst_scenario_loss():
    lim = limit_set(scenario={"after_fill_vega": 100.0})
    ctl = controller([(*CALL_A, 10.0)], lim)
    c = ctl.contract_index(*CALL_A)
    vega1 = ctl.contracts().loc[c, "vega_per_vol_point"]
    ctl.on_market_data("AAA", 104.0)  # no cadence yet: the grid is still at 100
    ctl.on_fill(c, -1.0, 1.0)  # small: incremental cells at the old grid
    moved = dataclasses.replace(make_market(), spot={"AAA": 104.0, "BBB": 50.0})

    def grid_loss(market):
        g = scenario_grid(book_of(ctl), market, spot_shocks=lim.scenario_spot, vol_shocks=lim.scenario_vol)
        return -g.matrix("AAA").to_numpy().min()

    assert abs(vega1) < 100.0
    assert ctl.state().loc["AAA", "worst_scenario_loss"] == pytest.approx(grid_loss(make_market()), rel=1e-9)
    ctl.on_fill(c, -10.0, 1.0)  # |vega| >= 100: full revaluation at the current spot
    assert ctl.state().loc["AAA", "worst_scenario_loss"] == pytest.approx(grid_loss(moved), rel=1e-9)


# --------------------------------------------------------------------------------------------------
# the pre-trade check


def test_pretrade_cut_is_closed_form_and_audited_once():
    ctl = controller([(*CALL_A, 15.0)], limit_set(contract={"position": 20}))
    c = ctl.contract_index(*CALL_A)
    d = ctl.decide(QuoteRequest(c, 10.0, 40.0))
    assert isinstance(d, Decision)
    assert d.layer is Layer.NORMAL and d.trigger == ""
    assert (d.bid_size, d.ask_size) == (5.0, 35.0)  # 15 + 5 = 20; 15 - 35 = -20
    cuts = events(ctl, event="cut")
    assert len(cuts) == 2
    bid = cuts[cuts["detail"].str.contains(" bid ")].iloc[0]
    assert bid["trigger"] == "position" and bid["threshold"] == 20.0 and bid["measured"] == 25.0
    assert "10 -> 5" in bid["detail"] and bid["underlying"] == "AAA" and bid["layer"] == "NORMAL"
    ask = cuts[cuts["detail"].str.contains(" ask ")].iloc[0]
    assert "40 -> 35" in ask["detail"] and ask["measured"] == 25.0
    # a quote that fits records nothing
    n = len(events(ctl))
    d = ctl.decide(QuoteRequest(c, 5.0, 35.0))
    assert (d.bid_size, d.ask_size) == (5.0, 35.0)
    assert len(events(ctl)) == n
    # fractional sizes are floored to whole contracts, not a cut
    d = ctl.decide(QuoteRequest(c, 2.7, 0.0))
    assert (d.bid_size, d.ask_size) == (2.0, 0.0) and len(events(ctl)) == n


def test_pretrade_greek_limits_cut_to_the_largest_size_that_fits():
    lim = limit_set(underlying={"vega_per_vol_point": 1_000.0}, book={"gamma_dollars_1pct": 30_000.0})
    ctl = controller([("AAA", Kind.STOCK, 0.0, None, 0.0)], lim)
    c = int(ctl.add_contracts("AAA", "call", 100.0, EXPIRY)[0])
    row = ctl.contracts().loc[c]
    q_vega = math.floor(1_000.0 / row["vega_per_vol_point"])
    q_gamma = math.floor(30_000.0 / row["gamma_dollars_1pct"])
    expected = min(q_vega, q_gamma)
    d = ctl.decide(QuoteRequest(c, 1e6, 1e6))
    assert d.bid_size == expected and d.ask_size == expected
    cut = events(ctl, event="cut").iloc[0]
    assert cut["trigger"] == ("vega_per_vol_point" if q_vega <= q_gamma else "gamma_dollars_1pct")
    ctl.on_fill(c, d.bid_size, 1.0)
    st = ctl.state()
    assert abs(st.loc["AAA", "vega_per_vol_point"]) <= 1_000.0
    assert abs(st.loc["book", "gamma_dollars_1pct"]) <= 30_000.0
    # one more contract would have breached
    assert (expected + 1) * row["vega_per_vol_point"] > 1_000.0 or (expected + 1) * row[
        "gamma_dollars_1pct"
    ] > 30_000.0
    d = ctl.decide(QuoteRequest(c, 10.0, 10.0))
    assert d.layer is Layer.SOFT  # at the limit: past the soft level
    assert d.bid_size == 0.0 and d.ask_size == 5.0
    drop = events(ctl, event="drop")
    assert len(drop) == 1 and "bid" in drop["detail"].iloc[0]


def test_side_dropped_below_one_contract_is_audited_with_its_threshold():
    ctl = controller([(*CALL_A, 20.0)], limit_set(contract={"position": 20}))
    c = ctl.contract_index(*CALL_A)
    d = ctl.decide(QuoteRequest(c, 3.0, 3.0))
    assert d.layer is Layer.SOFT  # 20 > 16 (soft), not > 20
    assert d.bid_size == 0.0 and d.ask_size == 1.0  # soft: floor(3 x 0.5) = 1
    drop = events(ctl, event="drop")
    assert len(drop) == 1
    assert drop["trigger"].iloc[0] == "position" and drop["threshold"].iloc[0] == 20.0
    assert drop["measured"].iloc[0] == 21.0 and drop["layer"].iloc[0] == "SOFT"


# --------------------------------------------------------------------------------------------------
# layers


def test_layer_precedence_kill_toxic_stale_hard_soft_normal():
    clock = Clock()
    lim = limit_set(underlying={"delta_shares": 1_000.0, "vega_per_vol_point": {"hard": 1e6, "soft": 50.0}})
    ctl = controller([(*CALL_A, 30.0), (*CALL_B, 1.0)], lim, clock=clock)  # AAA delta ~ 1,700 shares
    a, b = ctl.contract_index(*CALL_A), ctl.contract_index(*CALL_B)
    req = QuoteRequest(a, 5.0, 5.0)
    assert ctl.decide(req).layer is Layer.HARD
    assert ctl.decide(QuoteRequest(b, 5.0, 5.0)).layer is Layer.NORMAL
    clock.t += 1.0  # stale (500 ms)
    ctl.on_market_data("BBB", 50.0)
    assert ctl.decide(req).layer is Layer.STALE
    ctl.set_toxicity("AAA", True, score=0.9, threshold=0.5)
    assert ctl.decide(req).layer is Layer.TOXIC
    ctl.kill("test", by="person")
    assert ctl.decide(req).layer is Layer.KILL
    assert ctl.decide(QuoteRequest(b, 5.0, 5.0)).layer is Layer.KILL
    ctl.reset_kill(by="person")
    assert ctl.decide(req).layer is Layer.TOXIC
    ctl.set_toxicity("AAA", False)
    assert ctl.decide(req).layer is Layer.STALE
    ctl.on_market_data("AAA", 100.0)
    assert ctl.decide(req).layer is Layer.HARD
    ctl.on_hedge("AAA", -1_500.0, 100.0)  # delta within the hard limit; vega still past its soft level
    d = ctl.decide(req)
    assert d.layer is Layer.SOFT and d.trigger == "vega_per_vol_point"
    for _ in range(2):  # unwind without crossing the delta limit
        ctl.on_fill(a, -15.0, 1.0)
        ctl.on_hedge("AAA", 750.0, 100.0)
    assert abs(ctl.state().loc["AAA", "delta_shares"]) < 100.0
    d = ctl.decide(req)
    assert d.layer is Layer.NORMAL and d.trigger == "" and d.spread_factor == 1.0
    states = events(ctl, event="state", underlying="AAA")["detail"].str.split(";").str[0].tolist()
    assert states == [
        "NORMAL -> HARD",
        "HARD -> STALE",
        "STALE -> TOXIC",
        "TOXIC -> KILL",
        "KILL -> TOXIC",
        "TOXIC -> STALE",
        "STALE -> HARD",
        "HARD -> SOFT",
        "SOFT -> NORMAL",
    ]


def test_book_breach_applies_to_every_underlying():
    lim = limit_set(book={"vega_per_vol_point": 1_500.0})
    ctl = controller([(*CALL_A, 100.0), (*CALL_B, 1.0)], lim)  # the AAA calls alone exceed it
    b = ctl.contract_index(*CALL_B)
    d = ctl.decide(QuoteRequest(b, 5.0, 5.0))
    assert d.layer is Layer.HARD and d.trigger == "vega_per_vol_point"
    assert d.bid_size == 0.0 and d.ask_size == 5.0  # only selling vega reduces the book's vega
    state_b = events(ctl, event="state", underlying="BBB")
    assert len(state_b) == 1 and "scope=book" in state_b["detail"].iloc[0]


def test_soft_widens_and_shrinks_rather_than_going_dark():
    lim = limit_set(underlying={"vega_per_vol_point": 1_000.0}, soft_spread_factor=2.0, soft_size_factor=0.25)
    ctl = controller([(*CALL_A, 0.0)], lim)
    c = ctl.contract_index(*CALL_A)
    vega = ctl.contracts().loc[c, "vega_per_vol_point"]
    ctl.on_fill(c, float(math.ceil(850.0 / vega)), 1.0)  # past 800 (soft), below 1,000
    d = ctl.decide(QuoteRequest(c, 10.0, 10.0))
    assert d.layer is Layer.SOFT and d.spread_factor == 2.0 and d.trigger == "vega_per_vol_point"
    assert d.ask_size == 2.0  # floor(10 x 0.25)
    assert 0 < d.bid_size <= 2.0  # and the bid is within what the hard limit leaves
    d = ctl.decide(QuoteRequest(c, 1.0, 1.0))
    assert d.layer is Layer.SOFT and d.ask_size == 1.0  # never to nothing
    assert d.hedge_delta_shares == 0.0


def test_hard_is_reduce_only_and_hands_delta_to_the_hedger():
    lim = limit_set(underlying={"delta_shares": 1_000.0})
    ctl = controller([(*CALL_A, 30.0)], lim)
    call = ctl.contract_index(*CALL_A)
    put = int(ctl.add_contracts("AAA", "put", 95.0, EXPIRY)[0])
    delta = ctl.state().loc["AAA", "delta_shares"]
    assert delta > 1_000.0
    d = ctl.decide(QuoteRequest(call, 5.0, 5.0))
    assert d.layer is Layer.HARD and d.trigger == "delta_shares"
    assert d.bid_size == 0.0 and d.ask_size == 5.0
    assert d.hedge_delta_shares == delta
    d = ctl.decide(QuoteRequest(put, 5.0, 5.0))
    assert d.bid_size == 5.0 and d.ask_size == 0.0  # buying puts reduces delta
    # a reducing side may go through 0 up to the limit on the other side, not beyond
    per = ctl.contracts().loc[call, "delta_shares"]
    d = ctl.decide(QuoteRequest(call, 0.0, 1_000.0))
    assert d.ask_size == math.floor((delta + 1_000.0) / per)
    ctl.on_fill(call, -d.ask_size, 1.0)
    assert -1_000.0 <= ctl.state().loc["AAA", "delta_shares"] < -1_000.0 + per
    drops = events(ctl, event="drop")
    assert (drops["trigger"] == "delta_shares").all() and (drops["threshold"] == 1_000.0).all()
    assert drops["detail"].str.contains("reduce-only").all()
    assert len(drops) == 2  # the call's bid and the put's ask


def test_position_limit_makes_only_that_contract_hard():
    ctl = controller([(*CALL_A, -25.0), (*PUT_A, 1.0)], limit_set(contract={"position": 20}))
    call, put = ctl.contract_index(*CALL_A), ctl.contract_index(*PUT_A)
    d = ctl.decide(QuoteRequest(call, 3.0, 3.0))
    assert d.layer is Layer.HARD and d.trigger == "position"
    assert d.bid_size == 3.0 and d.ask_size == 0.0
    assert ctl.decide(QuoteRequest(put, 3.0, 3.0)).layer is Layer.NORMAL
    assert len(events(ctl, event="state")) == 0  # the underlying's layer did not change


def test_worst_scenario_loss_hard_keeps_the_side_that_gains_in_the_worst_cell():
    lim = limit_set(underlying={"worst_scenario_loss": 1_000.0})
    ctl = controller([(*PUT_A, -20.0)], lim)  # short puts: the worst cell is spot down, vol up
    put = ctl.contract_index(*PUT_A)
    st = ctl.state()
    assert st.loc["AAA", "worst_scenario_loss"] > 1_000.0
    d = ctl.decide(QuoteRequest(put, 2.0, 2.0))
    assert d.layer is Layer.HARD and d.trigger == "worst_scenario_loss"
    assert d.bid_size == 2.0 and d.ask_size == 0.0


# --------------------------------------------------------------------------------------------------
# kill switch, P&L, staleness, toxicity


def test_kill_reset_only_by_a_person():
    ctl = controller([(*CALL_A, 10.0), (*CALL_B, 1.0)], limit_set())
    c = ctl.contract_index(*CALL_A)
    delta = ctl.state().loc["AAA", "delta_shares"]
    ctl.kill("risk desk says stop", by="rule")
    assert ctl.killed
    d = ctl.decide(QuoteRequest(c, 5.0, 5.0))
    assert d == Decision(Layer.KILL, 0.0, 0.0, 1.0, "risk desk says stop", delta)
    with pytest.raises(PermissionError):
        ctl.reset_kill(by="rule")
    with pytest.raises(PermissionError):
        ctl.reset_kill(by="robot")
    assert ctl.killed and ctl.decide(QuoteRequest(c, 5.0, 5.0)).layer is Layer.KILL
    ctl.reset_kill(by="person")
    assert not ctl.killed and ctl.decide(QuoteRequest(c, 5.0, 5.0)).layer is Layer.NORMAL
    with pytest.raises(ValueError):
        ctl.kill("x", by="robot")
    kills = events(ctl, event=["kill", "reset"])
    assert kills["event"].tolist() == ["kill", "reset"]
    assert kills["underlying"].tolist() == ["", ""]
    assert "by=person" in kills["detail"].iloc[1]
    pulls = events(ctl, event="pull")
    assert sorted(pulls["underlying"]) == ["AAA", "BBB"]  # one pull per underlying
    ctl.kill("fat finger", by="person")
    assert events(ctl, event="kill")["trigger"].iloc[-1] == "manual"


def test_mark_pnl_kills_on_daily_loss_and_drawdown():
    lim = limit_set(book={"daily_loss": 1_000.0, "drawdown": 1_500.0})
    ctl = controller([(*CALL_A, 1.0)], lim)
    c = ctl.contract_index(*CALL_A)
    ctl.mark_pnl(-500.0)
    assert ctl.decide(QuoteRequest(c, 5, 5)).layer is Layer.NORMAL
    ctl.mark_pnl(-850.0)  # past the soft level (800)
    d = ctl.decide(QuoteRequest(c, 5, 5))
    assert d.layer is Layer.SOFT and d.trigger == "daily_loss"
    ctl.mark_pnl(-1_001.0)
    assert ctl.killed and ctl.decide(QuoteRequest(c, 5, 5)).layer is Layer.KILL
    kill = events(ctl, event="kill").iloc[0]
    assert (kill["trigger"], kill["measured"], kill["threshold"]) == ("daily_loss", 1_001.0, 1_000.0)
    ctl.reset_kill(by="person")
    ctl.mark_pnl(-1_002.0)  # still beyond: killed again
    assert ctl.killed
    ctl.reset_kill(by="person")
    ctl.mark_pnl(1_000.0)  # high-water mark 1,000
    assert not ctl.killed
    ctl.mark_pnl(-600.0)  # drawdown 1,600 > 1,500, daily loss 600 < 1,000
    kill = events(ctl, event="kill").iloc[-1]
    assert (kill["trigger"], kill["measured"], kill["threshold"]) == ("drawdown", 1_600.0, 1_500.0)


def test_stale_market_data_pulls_once_per_episode():
    clock = Clock()
    ctl = controller([(*CALL_A, 1.0), (*CALL_B, 1.0)], limit_set(stale_after_ms=500), clock=clock)
    a, b = ctl.contract_index(*CALL_A), ctl.contract_index(*CALL_B)
    clock.t += 0.4
    ctl.on_market_data("BBB", 50.0)
    assert ctl.decide(QuoteRequest(a, 5, 5)).layer is Layer.NORMAL
    clock.t += 0.2  # AAA: 600 ms old
    d = ctl.decide(QuoteRequest(a, 5, 5))
    assert (d.layer, d.bid_size, d.ask_size, d.trigger) == (Layer.STALE, 0.0, 0.0, "stale")
    assert ctl.decide(QuoteRequest(b, 5, 5)).layer is Layer.NORMAL  # BBB's data is fresh
    clock.t += 0.1
    ctl.decide(QuoteRequest(a, 5, 5))
    pulls = events(ctl, event="pull")
    assert len(pulls) == 1
    assert pulls["underlying"].iloc[0] == "AAA" and pulls["trigger"].iloc[0] == "stale"
    assert pulls["threshold"].iloc[0] == 500.0 and pulls["measured"].iloc[0] == pytest.approx(600.0)
    ctl.on_market_data("AAA", 100.0)
    assert ctl.decide(QuoteRequest(a, 5, 5)).layer is Layer.NORMAL
    clock.t += 0.501  # stale again: noticed by check() without any decision
    ctl.on_market_data("BBB", 50.0)
    assert dict(ctl.check()) == {"AAA": Layer.STALE, "BBB": Layer.NORMAL}
    pulls = events(ctl, event="pull")
    assert pulls["underlying"].tolist() == ["AAA", "AAA"]
    assert pulls["detail"].str.contains("scope=underlying").all()


def test_toxicity_pulls_at_once():
    ctl = controller([(*CALL_A, 1.0)], limit_set())
    c = ctl.contract_index(*CALL_A)
    ctl.set_toxicity("AAA", True, score=0.93, threshold=0.7)
    pulls = events(ctl, event="pull")  # recorded before any decision
    assert len(pulls) == 1
    assert (pulls["trigger"].iloc[0], pulls["measured"].iloc[0], pulls["threshold"].iloc[0]) == (
        "toxicity", 0.93, 0.7,
    )  # fmt: skip
    d = ctl.decide(QuoteRequest(c, 5, 5))
    assert (d.layer, d.bid_size, d.ask_size, d.hedge_delta_shares) == (Layer.TOXIC, 0.0, 0.0, 0.0)
    ctl.set_toxicity("AAA", True, score=0.95, threshold=0.7)  # still toxic: no new pull
    assert len(events(ctl, event="pull")) == 1
    ctl.set_toxicity("AAA", False)
    assert ctl.decide(QuoteRequest(c, 5, 5)).layer is Layer.NORMAL


# --------------------------------------------------------------------------------------------------
# decide_many, inputs, state


def _mixed_controller() -> RiskController:
    lim = limit_set(
        contract={"position": 25},
        underlying={"delta_shares": 1_000.0, "vega_per_vol_point": 2_000.0},
        book={"gamma_dollars_1pct": 40_000.0},
    )
    ctl = controller([(*CALL_A, 22.0), (*PUT_A, -3.0), (*CALL_B, 2.0)], lim)
    ctl.add_contracts("AAA", ["call", "put"], [90.0, 110.0], EXPIRY2)
    ctl.add_contracts("BBB", ["call", "put"], [45.0, 55.0], EXPIRY)
    return ctl


def test_decide_many_equals_decide():
    rng = np.random.default_rng(3)
    one, many = _mixed_controller(), _mixed_controller()
    seen: set[int] = set()
    for step in range(6):
        n = 200
        contracts = rng.integers(0, one.n_contracts, n)
        bids = np.round(rng.uniform(0, 40, n), 1)
        asks = np.where(rng.random(n) < 0.2, 0.0, rng.integers(0, 60, n).astype(float))
        layer, bid, ask, spread = many.decide_many(contracts, bids, asks)
        triples = zip(contracts.tolist(), bids.tolist(), asks.tolist(), strict=True)
        ds = [one.decide(QuoteRequest(c, b, a)) for c, b, a in triples]
        np.testing.assert_array_equal(layer, [int(d.layer) for d in ds])
        np.testing.assert_array_equal(bid, [d.bid_size for d in ds])
        np.testing.assert_array_equal(ask, [d.ask_size for d in ds])
        np.testing.assert_array_equal(spread, [d.spread_factor for d in ds])
        seen.update(layer.tolist())
        for ctl in (one, many):  # move the state the same way
            c = int(contracts[step])
            ctl.on_fill(c, float(bid[step]), 1.0)
    assert {int(Layer.HARD), int(Layer.NORMAL)} <= seen
    e1 = events(one).drop(columns=["id", "time", "ts"])
    e2 = events(many).drop(columns=["id", "time", "ts"])
    pd.testing.assert_frame_equal(e1, e2)
    assert set(e1["event"]) >= {"cut", "drop"}


def test_quote_clear_of_every_limit_skips_the_pretrade_check_with_the_same_answer():
    """decide_in_layer answers a quote whose full fill on either side leaves every pre-trade metric
    clearly inside its hard limit without running the check (_clear_of_limits); it must answer what
    the check itself (_side on the loaded metrics) answers, sizes and audit status alike. Random
    states with limits placed at, just past and just short of where a full fill would land."""
    from optmm.risk import _controller_kernels as ck

    rng = np.random.default_rng(11)
    taken = 0
    for _ in range(4000):
        cf = np.zeros((1, ck.CCELL + 1))
        ust = np.zeros((3, ck.NUS))  # two underlyings and the book; the contract is on 0
        cf[0, ck.CDELTA] = rng.uniform(-100.0, 100.0)
        cf[0, ck.CGAMMA] = rng.uniform(0.0, 300.0) * rng.choice([1.0, -1.0, 0.0], p=[0.6, 0.3, 0.1])
        cf[0, ck.CVEGA] = rng.uniform(0.0, 30.0) * rng.choice([1.0, -1.0])
        cf[0, ck.CPOS] = float(rng.integers(-50, 50))
        ust[:2, ck.USPOT] = rng.uniform(20.0, 200.0, 2)
        for col, scale in ((ck.UDELTA, 5e3), (ck.UGAMMA, 3e4), (ck.UVEGA, 3e3)):
            ust[:2, col] = rng.uniform(-scale, scale, 2)
        ust[:, ck.USOFT : ck.USOFT + ck.N_METRICS] = np.inf
        ust[:, ck.UHARD + ck.M_WSL] = np.inf  # (the loss's shortcut: test_wsl_shortcut_...)
        cells = np.zeros((3, 1))
        ust[:2, ck.ULAYER] = ck.NORMAL
        qb, qa = (float(x) for x in rng.integers(0, 25, 2))
        qm = max(qb, qa)
        prm = np.zeros(ck.NPRM)
        ck.load_pretrade(0, 0, cf, ust, prm)  # the metrics, to place the limits around
        for j, code in enumerate(ck.PRETRADE_CODES):
            row, m = (2, code - ck.BOOK) if code >= ck.BOOK else (0, code)
            v, g = prm[ck.P_V + j], prm[ck.P_G + j]
            edge = abs(v) + abs(g) * qm  # where the fuller side lands
            clear = [np.inf, edge * 1.5, edge * 1.0000001]
            close = [edge * (1 + 1e-12), edge, edge * (1 - 1e-12), edge * 0.9]
            ust[row, ck.UHARD + m] = rng.choice(clear + close, p=[0.3] * 3 + [0.025] * 4)
        ust[1, ck.UHARD : ck.UHARD + ck.N_METRICS] = ust[0, ck.UHARD : ck.UHARD + ck.N_METRICS]
        ck.load_pretrade(0, 0, cf, ust, prm)
        hard = abs(cf[0, ck.CPOS]) > ust[0, ck.UHARD + ck.M_POSITION]  # the contract alone is HARD
        aux_want = np.zeros(ck.NAUX)
        want = (
            ck._side(1.0, qb, hard, 0, 0, cf, ust, cells, prm, aux_want),
            ck._side(-1.0, qa, hard, 0, 0, cf, ust, cells, prm, aux_want),
        )
        aux = np.full(ck.NAUX, -7.0)
        lay, nb, na, spread, _trig, _hedge, flags = ck.decide_in_layer(
            0, qb, qa, ck.NORMAL, ck.T_NONE, math.nan, math.nan, cf, ust, cells, np.zeros(ck.NPRM), aux
        )
        assert (lay, spread) == (ck.HARD if hard else ck.NORMAL, 1.0)
        assert (nb, na) == want
        assert aux[ck.A_BID] == aux_want[ck.A_BID] and aux[ck.A_ASK] == aux_want[ck.A_ASK]
        assert bool(flags & ck.F_BID) == (aux_want[ck.A_BID] != ck.S_OK)
        assert bool(flags & ck.F_ASK) == (aux_want[ck.A_ASK] != ck.S_OK)
        taken += bool(ck._clear_of_limits(0, 0, qm, cf, ust, cells))
    assert 400 < taken < 3600  # both ways were tested often


def test_invalid_inputs_are_refused():
    ctl = controller([(*CALL_A, 1.0)], limit_set())
    with pytest.raises(ValueError):
        ctl.decide(QuoteRequest(0, -1.0, 1.0))
    with pytest.raises(ValueError):
        ctl.decide(QuoteRequest(0, 1.0, math.nan))
    with pytest.raises(IndexError):
        ctl.decide(QuoteRequest(5, 1.0, 1.0))
    with pytest.raises(IndexError):
        ctl.decide(QuoteRequest(-1, 1.0, 1.0))
    with pytest.raises(ValueError):
        ctl.decide_many([0], [1.0], [np.inf])
    with pytest.raises(IndexError):
        ctl.decide_many([0, 1], 1.0, 1.0)
    with pytest.raises(KeyError):
        ctl.on_market_data("ZZZ", 1.0)
    with pytest.raises(ValueError):
        ctl.on_market_data("AAA", 0.0)
    with pytest.raises(ValueError):
        ctl.on_fill(0, math.inf, 1.0)
    with pytest.raises(ValueError):
        ctl.mark_pnl(math.nan)


def test_state_frame_layout():
    ctl = controller([(*CALL_A, 3.0), (*CALL_B, -2.0)], limit_set(book={"daily_loss": 100.0}), audit=False)
    st = ctl.state()
    assert list(st.index) == ["AAA", "BBB", "book"]
    assert st.columns[0] == "layer"
    for m in ("position", "delta_shares", "delta_dollars", "gamma_dollars_1pct", "vega_per_vol_point",
              "worst_scenario_loss", "daily_loss", "drawdown"):  # fmt: skip
        assert {m, f"{m}_hard", f"{m}_soft"} <= set(st.columns)
    assert st.loc["BBB", "position"] == 2.0 and st.loc["book", "position"] == 3.0
    assert st.loc["book", "daily_loss_hard"] == 100.0 and st.loc["AAA", "daily_loss_hard"] == np.inf
