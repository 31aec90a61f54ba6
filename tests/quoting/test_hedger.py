"""Tests of optmm.quoting.hedger: bands, modes, targets, controller layers, lots, costs and the config."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optmm.greeks import bsm_greeks
from optmm.quoting import _kernels as K
from optmm.quoting.hedger import (
    DeltaHedger,
    HedgeMode,
    HedgeOrder,
    HedgerConfig,
    HedgeReason,
    HedgeTarget,
    ww_band_shares,
)
from optmm.risk.audit import Layer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "quoting" / "hedger.toml"
U = "SPY"


def _decide(
    h: DeltaHedger, delta: float, *, now: float = 0.0, layer: Layer = Layer.NORMAL, gamma: float = 0.0
):
    return h.decide(U, delta, gamma, 500.0, 499.99, 500.01, now, layer=layer)


# --------------------------------------------------------------------------------------------------
# The property: on a random spot path with a moving option delta, the band holds after every decision
# --------------------------------------------------------------------------------------------------


def _book_path(seed: int, n_steps: int):
    """Net option delta (shares) and dollar gamma per 1% along a seeded GBM spot path for a small book."""
    rng = np.random.default_rng(seed)
    strikes = np.array([480.0, 500.0, 520.0, 500.0])
    is_call = np.array([True, True, False, False])
    t0 = np.array([30.0, 30.0, 60.0, 10.0]) / 365.0
    pos = rng.integers(-40, 41, size=4).astype(float)  # contracts, multiplier 100
    dt = 60.0 / (365.0 * 86400.0)  # one minute per step
    spots = 500.0 * np.exp(np.cumsum(0.4 * math.sqrt(dt) * rng.standard_normal(n_steps)))
    deltas, gammas = [], []
    for i, s in enumerate(spots):
        g = bsm_greeks(s, strikes, t0 - i * dt, 0.04, 0.01, 0.25, is_call)
        deltas.append(float(np.sum(pos * 100.0 * g.delta)))
        gammas.append(float(np.sum(pos * 100.0 * g.gamma) * s * s / 100.0))
    return spots, np.array(deltas), np.array(gammas)


@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from([HedgeMode.FIXED_BAND, HedgeMode.WHALLEY_WILMOTT]),
    target=st.sampled_from(list(HedgeTarget)),
    lot=st.sampled_from([1, 10, 100]),
    band_lots=st.integers(1, 20),
    min_trade_frac=st.floats(0.0, 1.0),
    layer=st.sampled_from([Layer.NORMAL, Layer.SOFT, Layer.TOXIC, Layer.STALE]),
)
def test_net_delta_stays_inside_the_band_and_no_trade_inside_it(
    seed, mode, target, lot, band_lots, min_trade_frac, layer
) -> None:
    band = float(band_lots * lot)
    cfg = HedgerConfig(
        mode=mode,
        target=target,
        band_shares=band,
        min_band_shares=band,  # WW: the floor keeps a whole lot inside the band
        max_band_shares=20.0 * band,
        ww_cost_per_share=0.02,
        ww_risk_aversion=1e-5,
        lot_size=lot,
        min_trade_shares=min_trade_frac * band,
    )
    h = DeltaHedger(cfg)
    spots, opt_delta, opt_gamma = _book_path(seed, 60)
    trades = 0
    for i, (s, d_opt, g) in enumerate(zip(spots, opt_delta, opt_gamma, strict=True)):
        net = d_opt + h.position(U)
        width = h.band_shares(g, s)
        order = h.decide(U, net, g, s, s - 0.01, s + 0.01, float(i), layer=layer)
        if abs(net) <= width:
            assert order is None, "traded while inside the band"
            continue
        assert order is not None, "left delta outside the band"
        assert order.reason is HedgeReason.BAND and order.band_shares == width
        assert order.shares % lot == 0 and abs(order.shares) >= cfg.min_trade_shares
        h.execute(order, s, 0.02)
        trades += 1
        after = d_opt + h.position(U)
        assert math.isclose(after, order.delta_after, rel_tol=0.0, abs_tol=1e-9)
        assert abs(after) <= width + 1e-9
        if target is HedgeTarget.BAND_EDGE:  # the least trade: one lot less stays outside or is too small
            smaller = abs(order.shares) - lot
            assert abs(after - math.copysign(lot, order.shares)) > width - 1e-9 or smaller < max(
                cfg.min_trade_shares, 1.0
            )
    assert h.report().count == trades


def test_the_property_path_does_move_delta_out_of_the_band() -> None:
    """Guard for the property test: its paths do trigger hedges (else it would test nothing)."""
    _, opt_delta, _ = _book_path(7, 60)
    assert np.ptp(opt_delta) > 100.0


# --------------------------------------------------------------------------------------------------
# Whalley–Wilmott band
# --------------------------------------------------------------------------------------------------


def test_ww_band_reference_value_floor_and_cap() -> None:
    # Γ = 100·50_000/500² = 20 shares per $; H³ = 3·0.01·20²/(2·1e-5) = 600_000; cbrt by hand 84.34326653...
    h = ww_band_shares(50_000.0, 500.0, cost_per_share=0.01, risk_aversion=1e-5)
    assert math.isclose(float(h), 600_000.0 ** (1.0 / 3.0), rel_tol=1e-14)
    assert math.isclose(float(h), 84.34326653017493, rel_tol=1e-14)
    # sign of gamma does not matter; scaling the book by 8 scales the band by 8^(2/3) = 4
    assert float(ww_band_shares(-50_000.0, 500.0, cost_per_share=0.01, risk_aversion=1e-5)) == float(h)
    h8 = ww_band_shares(400_000.0, 500.0, cost_per_share=0.01, risk_aversion=1e-5)
    assert math.isclose(float(h8), 4.0 * float(h), rel_tol=1e-13)
    clipped = ww_band_shares(
        [0.0, 50_000.0, 1e9], 500.0, cost_per_share=0.01, risk_aversion=1e-5, min_band=100.0, max_band=5000.0
    )
    assert clipped.tolist() == [100.0, 100.0, 5000.0]


def test_ww_mode_band_comes_from_gamma() -> None:
    cfg = HedgerConfig(mode=HedgeMode.WHALLEY_WILMOTT, min_band_shares=10.0, max_band_shares=1e6)
    h = DeltaHedger(cfg)
    assert math.isclose(h.band_shares(50_000.0, 500.0), 84.34326653017493, rel_tol=1e-14)
    assert _decide(h, 80.0, gamma=50_000.0) is None
    order = _decide(h, 90.0, gamma=50_000.0)
    assert order is not None and order.shares == -6.0  # back to 84, the edge (lot 1)
    assert DeltaHedger(replace(cfg, mode=HedgeMode.FIXED_BAND)).band_shares(50_000.0, 500.0) == 500.0


# --------------------------------------------------------------------------------------------------
# Targets, lots, minimum trade
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "lot", "delta", "shares"),
    [
        (HedgeTarget.BAND_EDGE, 1, 1234.0, -734.0),
        (HedgeTarget.ZERO, 1, 1234.0, -1234.0),
        (HedgeTarget.BAND_EDGE, 100, 1234.0, -800.0),  # the least whole lots that get back inside
        (HedgeTarget.ZERO, 100, 1234.0, -1200.0),  # the lots nearest zero
        (HedgeTarget.BAND_EDGE, 1, -1234.5, 735.0),
        (HedgeTarget.ZERO, 100, -1260.0, 1300.0),
    ],
)
def test_targets_and_lot_rounding(target, lot, delta, shares) -> None:
    h = DeltaHedger(HedgerConfig(target=target, band_shares=500.0, lot_size=lot))
    order = _decide(h, delta)
    assert order is not None and order.shares == shares and order.delta_after == delta + shares
    assert abs(order.delta_after) <= 500.0


def test_min_trade_shares() -> None:
    cfg = HedgerConfig(band_shares=500.0, lot_size=100)
    assert _decide(DeltaHedger(cfg), 520.0).shares == -100.0
    # a bigger minimum trade is taken if it stays inside the band, else nothing
    assert _decide(DeltaHedger(replace(cfg, min_trade_shares=300.0)), 520.0).shares == -300.0
    assert _decide(DeltaHedger(replace(cfg, min_trade_shares=2000.0)), 520.0) is None
    # with lot 1 a 3-share breach is below a 5-share minimum... which is taken as 5 (inside the band)
    assert _decide(DeltaHedger(replace(cfg, lot_size=1, min_trade_shares=5.0)), 503.0).shares == -5.0


def test_lots_coarser_than_the_band_trade_towards_the_target() -> None:
    h = DeltaHedger(HedgerConfig(band_shares=50.0, lot_size=200))
    assert _decide(h, 130.0).shares == -200.0  # no whole lot lands inside ±50: nearest zero
    assert _decide(h, 60.0) is None  # a whole lot would overshoot further than 60


# --------------------------------------------------------------------------------------------------
# TIME mode
# --------------------------------------------------------------------------------------------------


def test_time_mode_trades_on_schedule_only() -> None:
    h = DeltaHedger(
        HedgerConfig(mode=HedgeMode.TIME, target=HedgeTarget.ZERO, interval_s=10.0, band_shares=1e6)
    )
    traded = []
    for i in range(35):
        order = _decide(h, 50.0 + i, now=float(i))  # far inside the (huge) band: trades anyway
        if order is not None:
            assert order.reason is HedgeReason.SCHEDULE and order.shares == -(50.0 + i)
            traded.append(i)
    assert traded == [0, 10, 20, 30]


def test_time_mode_band_edge_target() -> None:
    h = DeltaHedger(HedgerConfig(mode=HedgeMode.TIME, target=HedgeTarget.BAND_EDGE, interval_s=10.0))
    assert _decide(h, 300.0, now=0.0) is None  # scheduled, inside the band: nothing to do
    assert _decide(h, 900.0, now=5.0) is None  # outside the band but not scheduled
    order = _decide(h, 900.0, now=10.0)
    assert order is not None and order.shares == -400.0 and order.delta_after == 500.0


# --------------------------------------------------------------------------------------------------
# The controller's layers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(HedgeMode))
def test_kill_flattens_now_whatever_the_mode(mode) -> None:
    cfg = HedgerConfig(mode=mode, band_shares=500.0, min_trade_shares=1000.0, interval_s=10.0)
    h = DeltaHedger(cfg)
    order = _decide(h, 300.0, layer=Layer.KILL)  # inside the band, below min trade
    assert order is not None and order.reason is HedgeReason.KILL and order.shares == -300.0
    assert order.delta_after == 0.0
    lots = DeltaHedger(replace(cfg, lot_size=100))
    assert _decide(lots, -1260.0, layer=Layer.KILL).shares == 1300.0  # nearest whole lots to flat
    assert _decide(lots, 30.0, layer=Layer.KILL) is None  # already flat to within half a lot


@pytest.mark.parametrize("mode", list(HedgeMode))
def test_hard_hedges_now_to_zero(mode) -> None:
    h = DeltaHedger(HedgerConfig(mode=mode, band_shares=500.0, interval_s=10.0))
    if mode is HedgeMode.TIME:
        assert _decide(h, 1.0, now=0.0) is None  # inside the band at the first scheduled time
    order = _decide(h, 300.0, now=1.0, layer=Layer.HARD)  # inside the band, not scheduled
    assert order is not None and order.reason is HedgeReason.HARD and order.shares == -300.0


def test_hard_with_band_edge_target() -> None:
    h = DeltaHedger(HedgerConfig(band_shares=500.0, hard_target=HedgeTarget.BAND_EDGE))
    assert _decide(h, 300.0, layer=Layer.HARD) is None
    assert _decide(h, 700.0, layer=Layer.HARD).shares == -200.0


@pytest.mark.parametrize("layer", [Layer.TOXIC, Layer.STALE, Layer.SOFT])
def test_toxic_and_stale_hedge_as_normal(layer) -> None:
    h = DeltaHedger(HedgerConfig(band_shares=500.0))
    assert _decide(h, 300.0, layer=layer) is None
    order = _decide(h, 700.0, layer=layer)
    assert order is not None and order.reason is HedgeReason.BAND and order.shares == -200.0


# --------------------------------------------------------------------------------------------------
# Execution and costs
# --------------------------------------------------------------------------------------------------


def _order(shares: float) -> HedgeOrder:
    return HedgeOrder(
        underlying=U,
        shares=shares,
        expected_price=math.nan,
        reason=HedgeReason.BAND,
        layer=Layer.NORMAL,
        now=0.0,
        delta_before=0.0,
        delta_after=shares,
        band_shares=1.0,
    )


@given(
    fills=st.lists(
        st.tuples(
            st.integers(-50, 50).filter(bool),
            st.floats(1.0, 1000.0),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=10,
    ),
    slippage_bps=st.floats(0.0, 20.0),
    market=st.booleans(),
)
def test_cost_is_shares_times_half_spread_plus_slippage_exactly(fills, slippage_bps, market) -> None:
    cfg = HedgerConfig(slippage_bps=slippage_bps, use_market_spread=market, half_spread_bps=3.0, lot_size=10)
    h = DeltaHedger(cfg)
    spread_total = slip_total = gross = 0.0
    for lots, mid, spread in fills:
        q = 10.0 * lots
        f = h.execute(_order(q), mid, spread)
        half = spread / 2.0 if market else 3.0 * 1e-4 * mid
        slip = slippage_bps * 1e-4 * mid
        assert f.half_spread == half and f.slippage == slip
        assert f.spread_cost == abs(q) * half and f.slippage_cost == abs(q) * slip
        assert f.price == mid + math.copysign(half + slip, q)  # buys pay up, sells receive less
        spread_total += abs(q) * half
        slip_total += abs(q) * slip
        gross += q * (123.0 - mid)
    r = h.report(marks={U: 123.0})
    assert r.count == len(fills)
    assert r.shares_traded == sum(10.0 * abs(lots) for lots, _, _ in fills)
    assert r.net_shares == sum(10.0 * lots for lots, _, _ in fills) == h.position(U)
    assert math.isclose(r.spread_cost, spread_total, rel_tol=1e-12)
    assert math.isclose(r.slippage_cost, slip_total, rel_tol=1e-12)
    assert r.total_cost == r.spread_cost + r.slippage_cost
    assert math.isclose(r.gross_pnl, gross, rel_tol=1e-12, abs_tol=1e-9)
    assert r.net_pnl == r.gross_pnl - r.total_cost
    assert r.config_hash == cfg.content_hash


def test_report_per_underlying_and_default_mark() -> None:
    h = DeltaHedger(HedgerConfig(slippage_bps=0.0))
    h.execute(_order(100.0), 500.0, 0.02)
    h.execute(replace(_order(-50.0), underlying="QQQ"), 400.0, 0.02)
    h.execute(_order(-100.0), 501.0, 0.02)  # last SPY mid 501: bought at 500, sold at 501 (mid)
    spy = h.report(U)
    assert spy.count == 2 and spy.net_shares == 0.0 and spy.gross_pnl == 100.0
    assert spy.spread_cost == 200.0 * 0.01 and spy.net_pnl == 100.0 - 200.0 * 0.01
    assert h.report().count == 3 and h.report("QQQ").shares_traded == 50.0


def test_expected_price_buys_at_ask_sells_at_bid_plus_slippage() -> None:
    h = DeltaHedger(HedgerConfig(band_shares=100.0, slippage_bps=2.0))
    slip = 2.0 * 1e-4 * 500.0
    buy = h.decide(U, -200.0, 0.0, 500.0, 499.9, 500.1, 0.0)
    sell = h.decide(U, 200.0, 0.0, 500.0, 499.9, 500.1, 0.0)
    assert buy.shares > 0 and buy.expected_price == 500.1 + slip
    assert sell.shares < 0 and sell.expected_price == 499.9 - slip
    modelled = DeltaHedger(HedgerConfig(band_shares=100.0, slippage_bps=2.0, use_market_spread=False))
    assert modelled.decide(U, -200.0, 0.0, 500.0, 499.9, 500.1, 0.0).expected_price == 500.0 + (
        1.0 * 1e-4 * 500.0 + slip
    )


@pytest.mark.parametrize(
    ("delta", "spot", "bid", "ask"),
    [
        (math.nan, 500.0, 499.0, 501.0),
        (1.0, 0.0, 499.0, 501.0),
        (1.0, 500.0, 501.0, 499.0),
        (1.0, 500.0, 0.0, 1.0),
    ],
)
def test_decide_refuses_bad_inputs(delta, spot, bid, ask) -> None:
    with pytest.raises(ValueError, match="DeltaHedger"):
        DeltaHedger(HedgerConfig()).decide(U, delta, 0.0, spot, bid, ask, 0.0)


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "sometimes"),
        ("target", 3),
        ("band_shares", 0.0),
        ("band_shares", math.inf),
        ("ww_cost_per_share", -0.01),
        ("ww_risk_aversion", 0.0),
        ("interval_s", math.nan),
        ("slippage_bps", -1.0),
        ("half_spread_bps", -1.0),
        ("min_trade_shares", -1.0),
        ("lot_size", 0),
        ("lot_size", 2.5),
        ("lot_size", True),
        ("use_market_spread", 1),
        ("min_band_shares", 6000.0),  # > max_band_shares
        ("band_shares", "500"),
    ],
)
def test_config_validation_names_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=f"HedgerConfig.{field}"):
        HedgerConfig(**{field: value})


def test_config_unknown_key_refused_and_enums_parsed() -> None:
    with pytest.raises(ValueError, match="unknown key 'band'"):
        HedgerConfig.from_dict({"band": 5.0})
    cfg = HedgerConfig.from_dict({"mode": "TIME", "target": "zero", "lot_size": 100.0})
    assert cfg.mode is HedgeMode.TIME and cfg.target is HedgeTarget.ZERO and cfg.lot_size == 100
    assert type(cfg.lot_size) is int


def test_toml_round_trip_and_content_hash(tmp_path: Path) -> None:
    example = HedgerConfig.load(EXAMPLE)
    assert example.mode is HedgeMode.WHALLEY_WILMOTT and example.lot_size == 100
    assert len(example.content_hash) == 64
    path = tmp_path / "h.toml"
    path.write_text(example.to_toml(), encoding="utf-8")
    back = HedgerConfig.load(path)
    assert back == example and back.content_hash == example.content_hash
    via_json = HedgerConfig.from_dict(json.loads(json.dumps(example.to_dict())))
    assert via_json == example and via_json.content_hash == example.content_hash
    assert replace(example, slippage_bps=0.75).content_hash != example.content_hash
    assert HedgerConfig().content_hash == HedgerConfig().content_hash
    nested = tmp_path / "nested.toml"
    nested.write_text("[hedger]\n" + example.to_toml(), encoding="utf-8")
    assert HedgerConfig.load(nested) == example


def _lots_by_brute_force(delta: float, ideal: float, band: float, min_trade: float, lot: int) -> float:
    """The lot rule of the class Notes by enumeration: every whole-lot trade of at least min_trade
    landing inside [-band, band], nearest the ideal (then the smallest); else the one nearest zero
    delta if it reduces |delta|."""
    n = math.ceil((abs(delta) + band) / lot) + 2
    trades = [k * lot for k in range(-n, n + 1) if k != 0 and abs(k * lot) >= min_trade]
    inside = [q for q in trades if abs(delta + q) <= band]
    if inside:
        return float(min(inside, key=lambda q: (abs(q - ideal), abs(q))))
    q = float(round(-delta / lot) * lot)
    return q if q != 0.0 and abs(delta + q) < abs(delta) and abs(q) >= min_trade else 0.0


def test_lot_rounding_equals_brute_force() -> None:
    rng = np.random.default_rng(31)
    for _ in range(3000):
        lot = int(rng.choice([1, 7, 100, 1000]))
        band = float(rng.choice([250.0, 300.0, 500.0]))
        min_trade = float(rng.choice([0.0, 50.0, 300.0]))
        delta = float(rng.uniform(-3.0, 3.0) * band)
        zero = bool(rng.random() < 0.5)
        ideal = -delta if zero else math.copysign(band, delta) - delta
        b = lot / 2 if zero else band
        want = _lots_by_brute_force(delta, ideal, b, min_trade, lot)
        assert K.whole_lots_py(delta, ideal, b, min_trade, float(lot)) == want, (
            delta,
            ideal,
            b,
            min_trade,
            lot,
        )


def test_time_schedule_sequence() -> None:
    """TIME: due at the first call, then only once interval_s has passed; KILL and HARD bypass it."""
    hedger = DeltaHedger(HedgerConfig(mode="time", target="zero", interval_s=60.0, lot_size=1))
    calls = [  # (now, delta, layer)
        (0.0, 10.0, Layer.NORMAL), (30.0, 10.0, Layer.NORMAL), (59.999, 10.0, Layer.SOFT),
        (60.0, 0.2, Layer.NORMAL), (70.0, 300.0, Layer.HARD), (80.0, 300.0, Layer.KILL),
        (119.0, 5.0, Layer.TOXIC), (120.0, 5.0, Layer.STALE), (120.0, 5.0, Layer.NORMAL),
    ]  # fmt: skip
    trades = []
    for now, d, lay in calls:
        order = hedger.decide("X", d, 0.0, 100.0, 99.99, 100.01, now, layer=lay)
        trades.append(0.0 if order is None else order.shares)
    # 0: due; 30, 59.999: not; 60: due but 0.2 rounds to no lot; 70 HARD, 80 KILL: now; 119: not;
    # 120: due; 120 again: not
    assert trades == [-10.0, 0.0, 0.0, 0.0, -300.0, -300.0, 0.0, -5.0, 0.0]
