"""The quoter: skew signs and values, baselines, the tick grid, the market, sizes and the gate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from builders import one_name_market
from hypothesis import given
from hypothesis import strategies as st

from optmm.greeks import bsm_greeks
from optmm.quoting import BookGreeks, FairValueConfig, QuoteInput, Quoter, QuoterConfig, SkewMode
from optmm.risk.audit import Layer
from optmm.risk.controller import Decision
from optmm.units import SECONDS_PER_YEAR

ROOT = Path(__file__).resolve().parents[2]
MARKET = one_name_market()
FV = FairValueConfig(use_imbalance=False, use_flow=False, use_lead=False)  # fair spot = mid = 100
STRIKES = np.array([80.0, 90.0, 100.0, 110.0, 120.0] * 2)
T = np.full(10, 0.25)
IS_CALL = np.repeat([True, False], 5)
G = bsm_greeks(100.0, STRIKES, T, 0.03, 0.01, 0.25, IS_CALL)


def chain(**kw) -> QuoteInput:
    args = dict(market=MARKET, underlying="AAA", contract=np.arange(10), strike=STRIKES, t=T, is_call=IS_CALL)
    return QuoteInput(**(args | kw))


def quoter(**kw) -> Quoter:
    return Quoter(QuoterConfig(**kw), FV)


def decisions(layer=Layer.NORMAL, bid=100.0, ask=100.0, spread=1.0, n=10) -> list[Decision]:
    return [Decision(layer, bid, ask, spread, "", 0.0)] * n


# --------------------------------------------------------------------------------------------------
# the GREEKS skew


def test_greeks_skew_equals_the_documented_formula():
    q = quoter(gamma_risk_aversion=2e-4, horizon_s=600.0, sigma_s_annual=0.3, sigma_vol=0.2)
    book = BookGreeks(delta_shares=1500.0, vega_per_vol_point=-800.0)
    out = q.quote(chain(), book)
    h = 600.0 / (365 * 86400)
    want = -2e-4 * h * (1500.0 * G.delta * 0.09 * 100.0**2 + 100.0 * -800.0 * G.vega * 0.04)
    np.testing.assert_allclose(out["skew"], want, rtol=1e-13)
    np.testing.assert_allclose(out["fair"], G.price, rtol=1e-14)


def test_long_vega_lowers_both_quotes_of_long_vega_options_more_for_more_vega():
    q = quoter(gamma_risk_aversion=1e-3, sigma_s_annual=0.25, size_shade=0.0)  # no side emptied
    flat = q.quote(chain(), BookGreeks())
    long_vega = q.quote(chain(), BookGreeks(vega_per_vol_point=500_000.0))
    skew = long_vega["skew"].to_numpy()
    assert np.all(G.vega > 0) and np.all(skew < 0)
    # proportional to each option's vega (delta_shares = 0): more vega, lower quotes
    np.testing.assert_allclose(skew / G.vega, skew[0] / G.vega[0], rtol=1e-12)
    order = np.argsort(G.vega[IS_CALL])  # calls: five distinct vegas
    assert np.all(np.diff(skew[IS_CALL][order]) < 0)
    for side in ("bid", "ask"):
        assert np.all(long_vega[side] <= flat[side])
        # where the skew is at least a tick, the rounded quote really moves down
        big = np.abs(skew) >= 0.1
        assert big.any() and np.all(long_vega[side][big] < flat[side][big])
    # short vega raises them
    short = q.quote(chain(), BookGreeks(vega_per_vol_point=-50_000.0))
    assert np.all(short["skew"] > 0)


def test_long_delta_lowers_calls_and_raises_puts():
    q = quoter(gamma_risk_aversion=1e-3, sigma_s_annual=0.25)
    flat = q.quote(chain(), BookGreeks())
    out = q.quote(chain(), BookGreeks(delta_shares=20_000.0))
    skew = out["skew"].to_numpy()
    assert np.all(skew[IS_CALL] < 0) and np.all(skew[~IS_CALL] > 0)
    np.testing.assert_allclose(skew / G.delta, skew[0] / G.delta[0], rtol=1e-12)
    for side in ("bid", "ask"):
        assert np.all(out[side][IS_CALL] <= flat[side][IS_CALL])
        assert np.all(out[side][~IS_CALL] >= flat[side][~IS_CALL])
    # shading: a long-delta book shows less on the side that adds delta
    assert np.all(out["bid_size"][IS_CALL] < out["ask_size"][IS_CALL])
    assert np.all(out["ask_size"][~IS_CALL] < out["bid_size"][~IS_CALL])
    assert np.all(flat["bid_size"] == flat["ask_size"])


def test_sigma_s_defaults_to_the_market_vol():
    q = quoter(gamma_risk_aversion=1e-3)
    book = BookGreeks(delta_shares=1000.0)
    out = q.quote(chain(), book)
    assert out.attrs["sigma_s"] == 0.25
    np.testing.assert_allclose(
        out["skew"], quoter(gamma_risk_aversion=1e-3, sigma_s_annual=0.25).quote(chain(), book)["skew"]
    )


# --------------------------------------------------------------------------------------------------
# LINEAR and NONE baselines


def test_linear_skew_uses_the_options_own_position():
    position = np.array([0, 5, -5, 10, 0, 0, 0, 0, 0, -20], dtype=float)
    out = quoter(skew=SkewMode.LINEAR, linear_k=0.02).quote(
        chain(position=position), BookGreeks(delta_shares=1e6, vega_per_vol_point=1e6)
    )
    np.testing.assert_allclose(out["skew"], -0.02 * position, rtol=1e-15, atol=0)
    assert out.attrs["sigma_s"] != out.attrs["sigma_s"]  # NaN: no book-Greeks skew computed


def test_none_is_symmetric_around_fair_whatever_the_book():
    out = quoter(skew="none").quote(chain(position=np.full(10, 50.0)), BookGreeks(delta_shares=1e6))
    assert np.all(out["skew"] == 0.0)
    tick = QuoterConfig().tick_at(out["fair"])
    for dist in (out["fair"] - out["bid"], out["ask"] - out["fair"]):
        assert np.all(dist >= out["half_spread"] - 1e-12) and np.all(dist < out["half_spread"] + tick)
    assert np.all(out["bid_size"] == 10.0) and np.all(out["ask_size"] == 10.0)


# --------------------------------------------------------------------------------------------------
# the half-spread


def test_half_spread_components_and_multipliers():
    cfg = dict(skew="none", base_half_spread_vol_points=1.0, min_edge_ticks=0.0)
    base = quoter(**cfg).quote(chain(), BookGreeks())
    np.testing.assert_allclose(base["half_spread"], G.vega / 100.0, rtol=1e-15)
    edge = quoter(**(cfg | {"min_edge_ticks": 40.0})).quote(chain(), BookGreeks())
    tick = np.where(G.price < 3.0, 0.05, 0.10)
    np.testing.assert_allclose(edge["half_spread"], np.maximum(G.vega / 100.0, 40.0 * tick), rtol=1e-15)
    wide = quoter(**(cfg | {"vol_widen": 2.0, "toxicity_widen": 0.5})).quote(
        chain(realized_vol=0.3, toxicity_score=1.0), BookGreeks(), decisions(spread=1.5)
    )
    np.testing.assert_allclose(wide["half_spread"], base["half_spread"] * (1 + 0.6 + 0.5) * 1.5, rtol=1e-14)


def test_market_half_spread_is_a_floor_unless_improving():
    mb, ma = G.price - 1.0, G.price + 1.0
    cfg = dict(skew="none", base_half_spread_vol_points=0.1)
    out = quoter(**cfg).quote(chain(market_bid=mb, market_ask=ma), BookGreeks())
    np.testing.assert_allclose(out["half_spread"], 1.0, rtol=1e-14)
    improving = quoter(**cfg, improve_market=True).quote(chain(market_bid=mb, market_ask=ma), BookGreeks())
    assert np.all(improving["half_spread"] < 1.0)


# --------------------------------------------------------------------------------------------------
# the tick grid and the market


def test_tick_rule_and_rounding_directions():
    cfg = QuoterConfig(tick_size=0.05, tick_size_above=0.10, tick_threshold=3.0)
    np.testing.assert_allclose(cfg.round_down([2.97, 3.0, 3.07, 0.049]), [2.95, 3.0, 3.0, 0.0])
    np.testing.assert_allclose(cfg.round_up([2.97, 3.0, 3.01, 2.951]), [3.0, 3.0, 3.1, 3.0])
    np.testing.assert_allclose(cfg.tick_up([2.95, 3.0]), [3.0, 3.1])
    np.testing.assert_allclose(cfg.tick_down([3.0, 3.1]), [2.95, 3.0])
    assert cfg.on_grid([2.95, 3.0, 3.1]).all() and not cfg.on_grid([3.05]).any()
    with pytest.raises(ValueError, match="tick_threshold"):
        QuoterConfig(tick_threshold=3.03)


def test_a_locked_quote_is_widened_by_a_tick():
    # zero half-spread and a centre exactly on the grid (1.00): bid 1.00, ask one tick up
    q = quoter(skew="linear", linear_k=1.0, base_half_spread_vol_points=0.0, min_edge_ticks=0.0)
    out = q.quote(chain(position=G.price - 1.0), BookGreeks())
    np.testing.assert_allclose(out["bid"], 1.0)
    np.testing.assert_allclose(out["ask"], 1.05)


def test_never_at_or_through_the_market_opposite_side_unless_allowed():
    rich = G.price > 1.0
    mb, ma = G.price - 0.30, G.price - 0.20  # a market well below our fair: our bid would cross it
    mb, ma = np.where(rich, mb, np.nan), np.where(rich, ma, np.nan)
    out = quoter(skew="none").quote(chain(market_bid=mb, market_ask=ma), BookGreeks())
    cfg = QuoterConfig()
    assert rich.sum() >= 6 and out["bid"][rich].notna().all()
    assert np.all(out["bid"][rich] < ma[rich])
    np.testing.assert_allclose(out["bid"][rich], cfg.tick_down(cfg.round_up(ma[rich])))
    crossing = quoter(skew="none", cross_market=True).quote(chain(market_bid=mb, market_ask=ma), BookGreeks())
    assert np.all(crossing["bid"][rich] >= ma[rich])
    # and symmetrically for the ask against a market above our fair
    high = quoter(skew="none").quote(chain(market_bid=G.price + 0.2, market_ask=G.price + 0.3), BookGreeks())
    assert np.all(high["ask"] > G.price + 0.2)


prices = st.floats(0.0, 40.0, allow_nan=False)


@given(
    gamma=st.floats(0.0, 1e-2),
    delta=st.floats(-1e5, 1e5),
    vega=st.floats(-1e5, 1e5),
    half_vp=st.floats(0.0, 2.0),
    edge=st.floats(0.0, 3.0),
    ticks=st.sampled_from([(0.05, 0.10, 3.0), (0.01, 0.05, 1.0), (0.05, 0.05, float("inf"))]),
    mkt=st.lists(st.tuples(prices, prices), min_size=10, max_size=10),
    have_market=st.booleans(),
)
def test_quotes_are_on_grid_never_crossed_locked_or_through_the_market(
    gamma, delta, vega, half_vp, edge, ticks, mkt, have_market
):
    t1, t2, thr = ticks
    q = quoter(
        gamma_risk_aversion=gamma, base_half_spread_vol_points=half_vp, min_edge_ticks=edge,
        tick_size=t1, tick_size_above=t2, tick_threshold=thr,
    )  # fmt: skip
    m = np.sort(np.array(mkt), axis=1)
    mb, ma = (m[:, 0], m[:, 1]) if have_market else (None, None)
    out = q.quote(
        chain(market_bid=mb, market_ask=ma), BookGreeks(delta_shares=delta, vega_per_vol_point=vega)
    )
    bid, ask = out["bid"].to_numpy(), out["ask"].to_numpy()
    both = ~np.isnan(bid) & ~np.isnan(ask)
    assert np.all(bid[both] < ask[both])
    assert np.all(bid[~np.isnan(bid)] > 0.0) and np.all(ask[~np.isnan(ask)] > 0.0)
    assert q.config.on_grid(bid[~np.isnan(bid)]).all() and q.config.on_grid(ask[~np.isnan(ask)]).all()
    if have_market:
        hb, ha = ~np.isnan(bid), ~np.isnan(ask)
        assert np.all(bid[hb] < m[hb, 1]) and np.all(ask[ha] > m[ha, 0])
    assert np.all(out["bid_size"][np.isnan(bid)] == 0.0) and np.all(out["ask_size"][np.isnan(ask)] == 0.0)


# --------------------------------------------------------------------------------------------------
# sizes and the controller's gate


@given(
    caps=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=10, max_size=10),
    delta=st.floats(-1e5, 1e5),
)
def test_sizes_never_exceed_the_controllers(caps, delta):
    c = np.array(caps, dtype=float)
    dec = [Decision(Layer.NORMAL, b, a, 1.0, "", 0.0) for b, a in c]
    out = quoter(base_size=20.0, gamma_risk_aversion=1e-3).quote(chain(), BookGreeks(delta_shares=delta), dec)
    assert np.all(out["bid_size"] <= c[:, 0]) and np.all(out["ask_size"] <= c[:, 1])
    assert np.all(out["bid_size"] <= 20.0) and np.all(out["ask_size"] <= 20.0)
    assert np.all(np.isnan(out["bid"][c[:, 0] == 0])) and np.all(np.isnan(out["ask"][c[:, 1] == 0]))
    assert np.all(out["bid_size"] == np.floor(out["bid_size"]))


def test_decide_many_arrays_are_accepted():
    layer = np.full(10, int(Layer.SOFT), dtype=np.int8)
    bid, ask, spread = np.full(10, 3.0), np.zeros(10), np.full(10, 2.0)
    out = quoter(skew="none").quote(chain(), BookGreeks(), (layer, bid, ask, spread))
    rich = G.price > 1.0  # cheap options may have no bid above 0
    assert np.all(out["bid_size"][rich] == 3.0) and np.all(out["ask_size"] == 0.0) and out["ask"].isna().all()
    assert all(x is Layer.SOFT for x in out["layer"])
    with pytest.raises(ValueError, match="expected 10 decisions"):
        quoter().quote(chain(), BookGreeks(), decisions(n=9))


@pytest.mark.parametrize("layer", [Layer.KILL, Layer.TOXIC, Layer.STALE])
def test_toxicity_kill_stale_pull_beats_any_skew(layer):
    q = quoter(gamma_risk_aversion=1.0)  # an enormous skew
    out = q.quote(chain(), BookGreeks(delta_shares=1e5, vega_per_vol_point=1e5), decisions(layer=layer))
    assert out["bid"].isna().all() and out["ask"].isna().all()
    assert (out["bid_size"] == 0).all() and (out["ask_size"] == 0).all()
    assert all(x is layer for x in out["layer"])
    hard = quoter(gamma_risk_aversion=1e-4).quote(
        chain(), BookGreeks(delta_shares=1e3), decisions(layer=Layer.HARD, bid=0.0, ask=5.0)
    )
    assert hard["bid"].isna().all() and hard["ask"].notna().all()


def test_quote_with_a_risk_controller():
    from builders import make_book

    from optmm.book import Kind
    from optmm.risk.controller import RiskController
    from optmm.risk.limits import LimitSet

    book = make_book([("AAA", Kind.CALL, 100.0, "2026-04-02", 10.0)])
    limits = LimitSet.from_dict({"name": "t", "underlying": {"vega_per_vol_point": 1e6}})
    ctl = RiskController(book, MARKET, limits, clock=lambda: 0.0)
    contracts = ctl.add_contracts("AAA", ["call"] * 3, [90.0, 100.0, 110.0], ["2026-04-02"] * 3)
    t = MARKET.year_fraction(np.datetime64("2026-04-02"))
    ch = QuoteInput(
        market=MARKET, underlying="AAA", contract=contracts, strike=[90.0, 100.0, 110.0], t=t, is_call=True
    )
    q = quoter(gamma_risk_aversion=1e-3)
    out = q.quote_with(ctl, ch)
    assert np.all(out["skew"] < 0)  # the book is long the call: long delta and vega
    assert np.all(out["bid_size"] <= out["ask_size"])
    ctl.set_toxicity("AAA", True, score=5.0, threshold=1.0)
    pulled = q.quote_with(ctl, ch)
    assert pulled["bid"].isna().all() and pulled["ask"].isna().all()


# --------------------------------------------------------------------------------------------------
# configuration


def test_config_round_trip_file_and_validation():
    cfg = QuoterConfig.load(ROOT / "scenarios" / "quoting" / "quoter.toml")
    assert cfg.skew is SkewMode.GREEKS and cfg.sigma_s_annual is None
    assert QuoterConfig.from_dict(cfg.to_dict()) == cfg
    assert QuoterConfig.from_dict(cfg.to_dict()).content_hash == cfg.content_hash
    with_sigma = QuoterConfig(sigma_s_annual=0.2)
    assert QuoterConfig.from_dict(with_sigma.to_dict()) == with_sigma
    assert with_sigma.content_hash != QuoterConfig().content_hash
    one_tick = QuoterConfig(tick_size_above=0.05, tick_threshold=float("inf"))
    assert QuoterConfig.from_dict(one_tick.to_dict()).content_hash == one_tick.content_hash
    with pytest.raises(ValueError, match=r"QuoterConfig\.skew"):
        QuoterConfig(skew="quadratic")
    with pytest.raises(ValueError, match=r"QuoterConfig\.tick_size"):
        QuoterConfig(tick_size=0.0)
    with pytest.raises(ValueError, match=r"QuoterConfig\.horizon_s"):
        QuoterConfig(horizon_s=-1.0)
    with pytest.raises(ValueError, match="unknown key"):
        QuoterConfig.from_dict({"gamma": 1.0})
    assert SECONDS_PER_YEAR == 365 * 86400


def test_quote_with_prices_off_the_controllers_live_spot():
    from builders import make_book

    from optmm.book import Kind
    from optmm.quoting import DeltaHedger, HedgerConfig
    from optmm.quoting.fair_value import option_fair_values
    from optmm.risk.controller import RiskController
    from optmm.risk.limits import LimitSet

    book = make_book([("AAA", Kind.CALL, 100.0, "2026-04-02", 10.0)])
    limits = LimitSet.from_dict({"name": "t", "underlying": {"vega_per_vol_point": 1e6}})
    ctl = RiskController(book, MARKET, limits, clock=lambda: 0.0)
    strikes = [90.0, 100.0, 110.0]
    contracts = ctl.add_contracts("AAA", ["call"] * 3, strikes, ["2026-04-02"] * 3)
    t = MARKET.year_fraction(np.datetime64("2026-04-02"))
    ch = QuoteInput(market=MARKET, underlying="AAA", contract=contracts, strike=strikes, t=t, is_call=True)
    q = quoter(skew="none")
    before = q.quote_with(ctl, ch)
    assert ctl.spot("AAA") == MARKET.spot["AAA"] == 100.0
    np.testing.assert_array_equal(before["fair"], q.quote(ch, BookGreeks())["fair"])

    ctl.on_market_data("AAA", 102.0)
    assert ctl.spot("AAA") == 102.0
    after = q.quote_with(ctl, ch)
    assert after.attrs["fair_underlying"].price == 102.0
    want, _ = option_fair_values(MARKET, "AAA", np.array(strikes), np.full(3, t), np.ones(3, bool), 102.0)
    np.testing.assert_array_equal(after["fair"], want)
    assert np.all(after["fair"] > before["fair"]) and np.all(after["bid"] > before["bid"])
    centre = (after["bid"] + after["ask"]) / 2
    assert np.all(np.abs(centre - after["fair"]) <= after["half_spread"] + 0.05)  # quotes sit on fair
    # the same mid given on the chain is accepted; another one is refused
    same = QuoteInput(
        market=MARKET, underlying="AAA", contract=contracts, strike=strikes, t=t, is_call=True, spot_mid=102.0
    )
    np.testing.assert_array_equal(q.quote_with(ctl, same)["fair"], after["fair"])
    other = QuoteInput(
        market=MARKET, underlying="AAA", contract=contracts, strike=strikes, t=t, is_call=True, spot_mid=100.0
    )
    with pytest.raises(ValueError, match="differs from the controller's spot"):
        q.quote_with(ctl, other)

    # the hedger reads the same spot (the Whalley-Wilmott band depends on it)
    hedger = DeltaHedger(
        HedgerConfig(
            mode="whalley_wilmott", ww_cost_per_share=0.01, ww_risk_aversion=1e-5, min_band_shares=1.0
        )
    )
    row = ctl.state().loc["AAA"]
    assert row["spot"] == 102.0
    got = hedger.decide_with(ctl, "AAA", 101.99, 102.01, 0.0)
    ref = DeltaHedger(hedger.config).decide(
        "AAA", row["delta_shares"], row["gamma_dollars_1pct"], 102.0, 101.99, 102.01, 0.0, layer=Layer.NORMAL
    )
    assert got == ref and got is not None
    assert got.band_shares == hedger.band_shares(row["gamma_dollars_1pct"], 102.0)
    assert got.band_shares != hedger.band_shares(row["gamma_dollars_1pct"], 100.0)
    with pytest.raises(KeyError, match="ZZZ"):
        hedger.decide_with(ctl, "ZZZ", 1.0, 1.0, 0.0)
    # the state's last row is the book's aggregate, not an underlying the hedger or quoter can act on
    assert ctl.state().index[-1] == "book"
    with pytest.raises(KeyError, match="'book'"):
        hedger.decide_with(ctl, "book", 101.99, 102.01, 0.0)
    with pytest.raises(KeyError, match="'book'"):
        q.quote_with(ctl, replace(ch, underlying="book"))
    with pytest.raises(KeyError, match="'book'"):
        BookGreeks.from_state(ctl.state(), "book")


# --------------------------------------------------------------------------------------------------
# fair values on the contracts' terms


def test_fair_values_use_each_options_style_and_quote_with_the_controllers(monkeypatch):
    from builders import make_book

    from optmm import pricing
    from optmm.book import Kind
    from optmm.greeks import american_greeks
    from optmm.risk.controller import RiskController
    from optmm.risk.limits import LimitSet

    american = np.array([False, True] * 5)
    fair = quoter(skew="none").quote(chain(american=american), BookGreeks())["fair"].to_numpy()
    ref = american_greeks(100.0, STRIKES[american], T[american], 0.03, 0.01, 0.25, IS_CALL[american])
    np.testing.assert_allclose(fair[american], ref.price, rtol=1e-13)
    np.testing.assert_array_equal(fair[~american], G.price[~american])  # European: unchanged, to the bit
    with pytest.raises(ValueError, match=r"QuoteInput.american: expected shape \(10,\)"):
        chain(american=[True, False])

    # through the controller: its contracts' style, unless the chain gives one
    def flags(market, underlying, style=None):
        return np.ones(np.shape(underlying), dtype=bool) if style is None else np.asarray(style) == "american"

    monkeypatch.setattr(pricing, "american_flags", flags)
    book = make_book([("AAA", Kind.PUT, 110.0, "2026-04-02", 10.0)])
    ctl = RiskController(book, MARKET, LimitSet.from_dict({"book": {"daily_loss": 1e9}}), clock=lambda: 0.0)
    c = ctl.add_contracts("AAA", "put", [110.0, 110.0], "2026-04-02", style=["american", "european"])
    t = MARKET.year_fraction(np.datetime64("2026-04-02"))
    ch = QuoteInput(market=MARKET, underlying="AAA", contract=c, strike=110.0, t=t, is_call=False)
    out = quoter(skew="none").quote_with(ctl, ch)["fair"].to_numpy()
    am = float(american_greeks(100.0, 110.0, t, 0.03, 0.01, 0.25, False).price)
    eu = float(bsm_greeks(100.0, 110.0, t, 0.03, 0.01, 0.25, False).price)
    np.testing.assert_allclose(out, [am, eu], rtol=1e-13)
    given = quoter(skew="none").quote_with(ctl, replace(ch, american=[False, False]))["fair"].to_numpy()
    np.testing.assert_allclose(given, [eu, eu], rtol=1e-13)
