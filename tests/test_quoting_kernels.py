"""The numba twins of the quoter and the hedger (optmm/quoting/_kernels.py) against the Python reference.

Every comparison is row by row against :meth:`Quoter.quote` / :meth:`DeltaHedger.decide` and
:meth:`DeltaHedger.execute` on seeded random inputs. Prices, sizes, hedge shares and prices are compared
bit for bit (NaN equal to NaN); half-spreads and skews to 1e-12 relative (they are bit-identical too, but
the brief's tolerance is kept where the twin's contract promises no more). The Whalley–Wilmott band is
the one documented exception: numpy's cube root (SVML on AVX-512) and libm's differ by up to 3 ulps.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from optmm.market import Market, Sticky
from optmm.quoting import (
    BookGreeks,
    FairValueConfig,
    HedgerConfig,
    QuoteInput,
    Quoter,
    QuoterConfig,
    SkewMode,
)
from optmm.quoting import _kernels as K
from optmm.quoting.hedger import HedgeMode, HedgeReason, HedgeTarget
from optmm.risk.audit import Layer
from optmm.surface import FlatSurface

# (tick_size, tick_size_above, tick_threshold)
GRIDS = [
    (0.05, 0.10, 3.0),
    (0.01, 0.05, 1.0),
    (0.05, 0.05, math.inf),
    (0.01, 0.01, math.inf),
    (0.25, 0.5, 10.0),
    (0.001, 0.01, 0.5),
]
WW_ULPS = 8  # numpy's SVML cbrt vs libm's cbrt (<= 3 ulps measured), with room


def _nan_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


# --------------------------------------------------------------------------------------------------
# codes and packing


def test_codes_are_the_enums_definition_order_and_the_layer_values() -> None:
    assert [K.SKEW_GREEKS, K.SKEW_LINEAR, K.SKEW_NONE] == [list(SkewMode).index(m) for m in SkewMode]
    assert list(SkewMode) == [SkewMode.GREEKS, SkewMode.LINEAR, SkewMode.NONE]
    assert list(HedgeMode) == [HedgeMode.FIXED_BAND, HedgeMode.WHALLEY_WILMOTT, HedgeMode.TIME]
    assert [K.MODE_FIXED_BAND, K.MODE_WHALLEY_WILMOTT, K.MODE_TIME] == [0, 1, 2]
    assert list(HedgeTarget) == [HedgeTarget.BAND_EDGE, HedgeTarget.ZERO]
    assert [K.TARGET_BAND_EDGE, K.TARGET_ZERO] == [0, 1]
    assert [m.name for m in HedgeReason] == ["BAND", "SCHEDULE", "HARD", "KILL"]
    assert [K.REASON_BAND, K.REASON_SCHEDULE, K.REASON_HARD, K.REASON_KILL] == [0, 1, 2, 3]
    assert [K.KILL, K.TOXIC, K.STALE, K.HARD, K.SOFT, K.NORMAL] == [int(x) for x in Layer]


def test_pack_quoter_layout() -> None:
    cfg = QuoterConfig(
        base_half_spread_vol_points=0.7, min_edge_ticks=2.0, tick_size=0.01, tick_size_above=0.05,
        tick_threshold=1.0, vol_widen=0.3, toxicity_widen=0.4, improve_market=True, cross_market=False,
        skew="linear", gamma_risk_aversion=3e-4, horizon_s=120.0, sigma_s_annual=None, sigma_vol=0.3,
        linear_k=0.02, base_size=7.0, size_shade=0.25,
    )  # fmt: skip
    qp = K.pack_quoter(cfg)
    assert qp.shape == (K.N_QP,) and qp.dtype == np.float64
    want = {
        K.Q_BASE_HS: 0.7, K.Q_MIN_EDGE: 2.0, K.Q_TICK: 0.01, K.Q_TICK_ABOVE: 0.05, K.Q_THRESHOLD: 1.0,
        K.Q_VOL_WIDEN: 0.3, K.Q_TOX_WIDEN: 0.4, K.Q_IMPROVE: 1.0, K.Q_CROSS: 0.0, K.Q_SKEW: K.SKEW_LINEAR,
        K.Q_NEG_GAMMA_H: -3e-4 * (120.0 / (365.0 * 86400.0)), K.Q_SIGMA_VOL2: 0.3**2,
        K.Q_NEG_LINEAR_K: -0.02, K.Q_BASE_SIZE: 7.0, K.Q_SIZE_SHADE: 0.25, K.Q_TWO: 2.0,
    }  # fmt: skip
    assert sorted([*want, K.Q_SIGMA_S]) == list(range(K.N_QP))
    for i, v in want.items():
        assert qp[i] == v, i
    assert math.isnan(qp[K.Q_SIGMA_S])
    assert K.pack_quoter(QuoterConfig(sigma_s_annual=0.2))[K.Q_SIGMA_S] == 0.2
    assert K.pack_quoter(QuoterConfig(tick_threshold=math.inf))[K.Q_THRESHOLD] == math.inf
    with pytest.raises(TypeError, match="QuoterConfig"):
        K.pack_quoter(HedgerConfig())  # type: ignore[arg-type]


def test_pack_hedger_layout() -> None:
    cfg = HedgerConfig(
        mode="whalley_wilmott", target="zero", hard_target="band_edge", band_shares=300.0,
        ww_cost_per_share=0.02, ww_risk_aversion=2e-5, min_band_shares=50.0, max_band_shares=900.0,
        interval_s=30.0, slippage_bps=1.5, use_market_spread=False, half_spread_bps=2.5,
        min_trade_shares=25.0, lot_size=10,
    )  # fmt: skip
    hp = K.pack_hedger(cfg)
    want = {
        K.H_MODE: K.MODE_WHALLEY_WILMOTT, K.H_TARGET: K.TARGET_ZERO, K.H_HARD_TARGET: K.TARGET_BAND_EDGE,
        K.H_BAND: 300.0, K.H_WW_3C: 3.0 * 0.02, K.H_WW_2G: 2.0 * 2e-5, K.H_MIN_BAND: 50.0,
        K.H_MAX_BAND: 900.0, K.H_INTERVAL: 30.0, K.H_SLIP: 1.5 * 1e-4, K.H_USE_MARKET: 0.0,
        K.H_HALF: 2.5 * 1e-4, K.H_MIN_TRADE: 25.0, K.H_LOT: 10.0,
    }  # fmt: skip
    assert hp.shape == (K.N_HP,) and sorted(want) == list(range(K.N_HP))
    for i, v in want.items():
        assert hp[i] == v, i
    with pytest.raises(TypeError, match="HedgerConfig"):
        K.pack_hedger(QuoterConfig())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# np.round(x, 10) and the tick grid


def test_round10_is_numpys_round_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    grid = np.arange(-2000, 200_000) * 0.05  # grid products with their representation error
    x = np.concatenate(
        [
            grid,
            np.floor(rng.uniform(0, 1e6, 20_000)) * 0.01,
            rng.uniform(-10, 10, 20_000),
            np.exp(rng.uniform(-40, 40, 20_000)),
            (np.arange(1, 20_000) + 0.5) * 1e-10,  # halfway cases: round half to even
            [0.0, -0.0, 1e290, -1e290, 5e-324],
        ]
    )
    got = np.array([K._round10(v) for v in x])
    assert _nan_equal(got, np.round(x, 10))
    # beyond 1.8e298, x * 1e10 overflows: numpy gives inf, and so does the twin (numba's np.round
    # would return x, which is why the twin spells numpy's formula out)
    with np.errstate(over="ignore"):
        assert np.round(np.array([1e299]), 10)[0] == math.inf == K._round10(1e299)


@pytest.mark.parametrize("grid", GRIDS)
def test_tick_grid_functions_equal_the_configs(grid: tuple[float, float, float]) -> None:
    tick, above, thr = grid
    cfg = QuoterConfig(tick_size=tick, tick_size_above=above, tick_threshold=thr)
    qp = K.pack_quoter(cfg)
    rng = np.random.default_rng(11)
    top = 3.0 * thr if math.isfinite(thr) else 50.0
    on = np.concatenate([np.arange(0, int(thr / tick) + 2) * tick if math.isfinite(thr) else [], [thr]])
    on = on[np.isfinite(on)]
    on = np.concatenate([on, thr + np.arange(0, 40) * above if math.isfinite(thr) else []])
    near = np.concatenate([on + d for d in (0.0, 1e-12, -1e-12, 1e-9 * tick, -1e-9 * tick, 0.4 * tick)])
    p = np.concatenate(
        [near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf), rng.uniform(-tick, top, 4000)]
    )
    for name, fn in (
        ("round_down", K._round_down),
        ("round_up", K._round_up),
        ("tick_up", K._tick_up),
        ("tick_down", K._tick_down),
    ):
        got = np.array([fn(v, qp) for v in p])
        assert _nan_equal(got, getattr(cfg, name)(p)), name


# --------------------------------------------------------------------------------------------------
# the quoter


def _random_quoter_config(rng: np.random.Generator, skew: SkewMode) -> QuoterConfig:
    tick, above, thr = GRIDS[rng.integers(len(GRIDS))]
    return QuoterConfig(
        base_half_spread_vol_points=float(rng.choice([0.0, 0.2, 0.5, 2.0])),
        min_edge_ticks=float(rng.choice([0.0, 0.5, 1.0, 2.0])),
        tick_size=tick,
        tick_size_above=above,
        tick_threshold=thr,
        vol_widen=float(rng.choice([0.0, 0.5, 2.0])),
        toxicity_widen=float(rng.choice([0.0, 1.0, 3.0])),
        improve_market=bool(rng.random() < 0.3),
        cross_market=bool(rng.random() < 0.3),
        skew=skew,
        gamma_risk_aversion=float(10 ** rng.uniform(-6, -2)),
        horizon_s=float(rng.uniform(1.0, 3600.0)),
        sigma_s_annual=None if rng.random() < 0.5 else float(rng.uniform(0.05, 1.0)),
        sigma_vol=float(rng.uniform(0.0, 0.5)),
        linear_k=float(rng.uniform(0.0, 0.1)),
        base_size=float(rng.choice([0.0, 1.0, 7.5, 10.0, 50.0])),
        size_shade=float(rng.choice([0.0, 0.5, 1.0, 3.0])),
    )


def _market_quotes(rng: np.random.Generator, fair: np.ndarray, cfg: QuoterConfig) -> tuple:
    """Option market quotes: none, one side, both around fair, crossed, on the grid, at the threshold."""
    n = fair.size
    tick = cfg.tick_at(fair)
    width = rng.uniform(0.0, 4.0, n) * tick
    off = rng.uniform(-3.0, 3.0, n) * tick
    bid = fair + off - width
    ask = fair + off + width
    kind = rng.integers(0, 7, n)
    on_grid = kind == 4
    bid[on_grid] = cfg.round_down(fair[on_grid]) - tick[on_grid] * rng.integers(0, 3, on_grid.sum())
    ask[on_grid] = cfg.round_up(fair[on_grid]) + tick[on_grid] * rng.integers(0, 3, on_grid.sum())
    crossed = kind == 5
    bid[crossed], ask[crossed] = ask[crossed] + tick[crossed], bid[crossed]
    if math.isfinite(cfg.tick_threshold):
        at = kind == 6
        bid[at] = cfg.tick_threshold - cfg.tick_size * rng.integers(0, 2, at.sum())
        ask[at] = cfg.tick_threshold + cfg.tick_size_above * rng.integers(0, 2, at.sum())
    bid[(kind == 0) | (kind == 1)] = np.nan
    ask[(kind == 0) | (kind == 2)] = np.nan
    return np.maximum(bid, 0.0), np.maximum(ask, 0.0)  # maximum keeps NaN


def _random_chain(rng: np.random.Generator, cfg: QuoterConfig, n: int) -> tuple:
    """A random chain, its QuoteInput, BookGreeks and decide_many-style decision arrays."""
    spot = float(np.exp(rng.uniform(math.log(0.5), math.log(2e4))))
    market = Market(
        valuation=np.datetime64("2026-01-02"),
        spot={"U": spot},
        rate={"U": float(rng.uniform(-0.01, 0.08))},
        div_yield={"U": float(rng.uniform(0.0, 0.05))},
        surface={"U": FlatSurface(float(rng.uniform(0.05, 1.5)))},
        sticky=Sticky.MONEYNESS if rng.random() < 0.5 else Sticky.STRIKE,
        source="test",
    )
    strike = spot * np.exp(rng.uniform(-1.5, 1.5, n))
    strike[: n // 8] = spot
    t = rng.uniform(1.0 / (365 * 24), 3.0, n)
    is_call = rng.random(n) < 0.5
    position = np.where(rng.random(n) < 0.5, rng.integers(-50, 51, n), rng.uniform(-80.0, 80.0, n))
    base = dict(market=market, underlying="U", contract=np.arange(n), strike=strike, t=t, is_call=is_call)
    signals = dict(
        spot_bid_size=float(rng.uniform(0, 500)),
        spot_ask_size=float(rng.uniform(0, 500)),
        spot_half_spread=float(rng.uniform(0, 0.001) * spot),
        realized_vol=float(rng.choice([0.0, rng.uniform(0.0, 2.0)])),
        toxicity_score=float(rng.choice([0.0, rng.uniform(0.0, 1.0)])),
    )
    # market quotes need the fair values: price the chain first
    probe = QuoteInput(**base, position=position, **signals)
    _, fair, _ = Quoter(cfg, FairValueConfig()).fair(probe)
    mkt_bid, mkt_ask = _market_quotes(rng, fair, cfg)
    chain = QuoteInput(**base, position=position, market_bid=mkt_bid, market_ask=mkt_ask, **signals)
    big = float(10 ** rng.uniform(0, 6))
    book = BookGreeks(
        delta_shares=float(rng.choice([0.0, rng.uniform(-big, big)])),
        vega_per_vol_point=float(rng.choice([0.0, rng.uniform(-big, big)])),
    )
    caps = np.array([np.inf, 0.0, 1.0, 3.7, 8.0, 100.0])
    decisions = (
        rng.integers(0, 6, n).astype(np.int64),
        np.where(rng.random(n) < 0.5, np.inf, caps[rng.integers(0, caps.size, n)]),
        np.where(rng.random(n) < 0.5, np.inf, caps[rng.integers(0, caps.size, n)]),
        np.array([1.0, 0.5, 1.5, 2.0, 3.0, 0.0])[rng.integers(0, 6, n)],
    )
    return chain, book, decisions


def _twin_quotes(quoter: Quoter, chain: QuoteInput, book: BookGreeks, decisions: tuple, ref) -> np.ndarray:
    """The twin's quotes for ``chain``: fair values and Greeks from Quoter.fair, σ_S and s from ref.attrs."""
    _, fair, g = quoter.fair(chain)
    layer, cap_bid, cap_ask, spread = decisions
    out = np.full((chain.n, K.N_OUT), -1.0)
    K.quote_chain(
        fair, g.delta, g.vega, chain.position, book.delta_shares, book.vega_per_vol_point,
        ref.attrs["sigma_s"], ref.attrs["fair_underlying"].price, chain.realized_vol, chain.toxicity_score,
        layer, cap_bid, cap_ask, spread, chain.market_bid, chain.market_ask, K.pack_quoter(quoter.config),
        out,
    )  # fmt: skip
    np.testing.assert_array_equal(ref["fair"].to_numpy(), fair)
    return out


def _assert_rows_equal(ref, out: np.ndarray, context: str) -> None:
    for col, j in (
        ("bid", K.O_BID),
        ("ask", K.O_ASK),
        ("bid_size", K.O_BID_SIZE),
        ("ask_size", K.O_ASK_SIZE),
    ):
        want = ref[col].to_numpy()
        bad = ~((want == out[:, j]) | (np.isnan(want) & np.isnan(out[:, j])))
        assert not bad.any(), (context, col, np.flatnonzero(bad)[:5], want[bad][:5], out[bad, j][:5])
    for col, j in (("half_spread", K.O_HALF_SPREAD), ("skew", K.O_SKEW)):
        np.testing.assert_allclose(out[:, j], ref[col].to_numpy(), rtol=1e-12, atol=0, err_msg=context)


@pytest.mark.parametrize("skew", list(SkewMode))
def test_quote_twin_equals_quoter_row_by_row(skew: SkewMode) -> None:
    rng = np.random.default_rng([20260611, list(SkewMode).index(skew)])
    seen = {"pulled": 0, "bid": 0, "ask": 0, "no_bid": 0, "shaded": 0, "near_thr": 0, "tiny": 0, "huge": 0}
    for trial in range(40):
        cfg = _random_quoter_config(rng, skew)
        quoter = Quoter(cfg, FairValueConfig())
        chain, book, decisions = _random_chain(rng, cfg, 40)
        ref = quoter.quote(chain, book, decisions)
        out = _twin_quotes(quoter, chain, book, decisions, ref)
        _assert_rows_equal(ref, out, f"{skew} trial {trial}: {cfg}")
        # the inputs do reach the branches that matter
        seen["pulled"] += int(np.sum(decisions[0] <= int(Layer.STALE)))
        seen["bid"] += int(np.sum(out[:, K.O_BID_SIZE] > 0))
        seen["ask"] += int(np.sum(out[:, K.O_ASK_SIZE] > 0))
        seen["no_bid"] += int(np.sum((decisions[0] > int(Layer.STALE)) & (out[:, K.O_BID_SIZE] == 0)))
        shaded = np.minimum(out[:, K.O_BID_SIZE], out[:, K.O_ASK_SIZE]) < cfg.base_size
        seen["shaded"] += int(np.sum(shaded & (out[:, K.O_SKEW] != 0)))
        fair = ref["fair"].to_numpy()
        if math.isfinite(cfg.tick_threshold):
            seen["near_thr"] += int(np.sum(np.abs(fair - cfg.tick_threshold) < 3 * cfg.tick_size_above))
        seen["tiny"] += int(np.sum(fair < cfg.tick_size))
        seen["huge"] += int(np.sum(fair > 1000.0))
    if skew is SkewMode.NONE:
        assert seen.pop("shaded") == 0
    assert all(v >= 10 for v in seen.values()), seen


def test_quote_twin_with_no_decisions_and_every_layer() -> None:
    """Decisions None (NORMAL, uncapped, factor 1) and each layer on the whole chain."""
    rng = np.random.default_rng(5)
    cfg = QuoterConfig(gamma_risk_aversion=1e-3, sigma_s_annual=0.3, size_shade=0.5)
    quoter = Quoter(cfg, FairValueConfig())
    chain, _, _ = _random_chain(rng, cfg, 60)
    book = BookGreeks(delta_shares=30_000.0, vega_per_vol_point=-20_000.0)
    none = (np.full(60, 5, dtype=np.int64), np.full(60, np.inf), np.full(60, np.inf), np.ones(60))
    ref = quoter.quote(chain, book)
    _assert_rows_equal(ref, _twin_quotes(quoter, chain, book, none, ref), "no decisions")
    for layer in Layer:
        dec = (
            np.full(60, int(layer), dtype=np.int64),
            np.full(60, 4.0),
            np.full(60, np.inf),
            np.full(60, 1.5),
        )
        ref = quoter.quote(chain, book, dec)
        out = _twin_quotes(quoter, chain, book, dec, ref)
        _assert_rows_equal(ref, out, str(layer))
        if layer <= Layer.STALE:
            assert np.all(np.isnan(out[:, :2])) and np.all(out[:, 2:4] == 0.0)
        else:
            assert np.all(out[:, K.O_BID_SIZE] <= 4.0) and np.any(out[:, K.O_ASK_SIZE] > 4.0)


def test_quote_twin_on_grid_centres_and_zero_half_spreads() -> None:
    """Centres on a grid point (to within the grid's 1e-9 ticks, or just outside) with a zero or tiny
    half-spread: the locked quote gets its ask a tick higher, in the twin as in the reference."""
    rng = np.random.default_rng(13)
    locked = 0
    for trial in range(12):
        tick, above, thr = GRIDS[trial % len(GRIDS)]
        cfg = QuoterConfig(
            base_half_spread_vol_points=0.0, min_edge_ticks=0.0, tick_size=tick, tick_size_above=above,
            tick_threshold=thr, improve_market=True, cross_market=bool(trial % 2), skew="linear",
            linear_k=1.0, size_shade=0.5,
        )  # fmt: skip
        quoter = Quoter(cfg, FairValueConfig())
        chain, book, (layer, cap_bid, cap_ask, _) = _random_chain(rng, cfg, 40)
        _, fair, _ = quoter.fair(chain)
        grid = cfg.round_down(fair) + cfg.tick_at(fair) * rng.integers(-2, 3, fair.size)
        nudge = rng.choice([0.0, 1e-12, -1e-12, 1e-10, -1e-10, 3e-9, -3e-9], fair.size) * cfg.tick_at(fair)
        position = fair - grid + nudge  # skew = -position: centre = grid - nudge
        chain = dataclasses.replace(chain, position=position)
        spread = rng.choice([0.0, 1e-12, 1.0], fair.size)
        decisions = (layer, cap_bid, cap_ask, spread)
        ref = quoter.quote(chain, book, decisions)
        out = _twin_quotes(quoter, chain, book, decisions, ref)
        _assert_rows_equal(ref, out, f"trial {trial}: {cfg}")
        both = (out[:, K.O_BID_SIZE] > 0) & (out[:, K.O_ASK_SIZE] > 0)
        step = cfg.tick_at(out[:, K.O_BID])
        locked += int(np.sum(both & np.isclose(out[:, K.O_ASK] - out[:, K.O_BID], step, rtol=1e-9, atol=0)))
    assert locked >= 20


def test_quote_one_called_directly_matches_quote_chain() -> None:
    """The scalar kernel from Python (its own compilation) gives quote_chain's rows."""
    rng = np.random.default_rng(9)
    cfg = _random_quoter_config(rng, SkewMode.GREEKS)
    quoter = Quoter(cfg, FairValueConfig())
    chain, book, decisions = _random_chain(rng, cfg, 12)
    ref = quoter.quote(chain, book, decisions)
    out = _twin_quotes(quoter, chain, book, decisions, ref)
    _, fair, g = quoter.fair(chain)
    qp = K.pack_quoter(cfg)
    qp.flags.writeable = True
    for i in range(chain.n):
        row = K.quote_one(
            fair[i], g.delta[i], g.vega[i], chain.position[i], book.delta_shares, book.vega_per_vol_point,
            ref.attrs["sigma_s"], ref.attrs["fair_underlying"].price, chain.realized_vol,
            chain.toxicity_score, int(decisions[0][i]), decisions[1][i], decisions[2][i], decisions[3][i],
            chain.market_bid[i], chain.market_ask[i], qp,
        )  # fmt: skip
        assert _nan_equal(np.array(row), out[i])


def test_greeks_skew_squares_like_python() -> None:
    """σ_S² and S² through libm's pow, as CPython's ``**`` (x*x differs in the last bit for some x)."""
    rng = np.random.default_rng(3)
    xs = rng.uniform(0.0, 10.0, 200_000)
    differ = xs[np.array([v**2 != v * v for v in xs.tolist()])]
    if differ.size == 0:  # pragma: no cover - a libm whose pow(x, 2) is x * x
        pytest.skip("this libm's pow(x, 2.0) equals x * x for every sample")
    qp = K.pack_quoter(QuoterConfig(gamma_risk_aversion=1.0, horizon_s=365.0 * 86400.0))  # -γh = -1
    assert qp[K.Q_NEG_GAMMA_H] == -1.0
    for x in differ[:50]:
        # skew = -1 * (1 * 1 * σ² * 1) with a single term: the twin's σ² alone
        skew = K.quote_one(
            1.0, 1.0, 0.0, 0.0, 1.0, 0.0, x, 1.0, 0.0, 0.0, 5, 1.0, 1.0, 1.0, np.nan, np.nan, qp
        )[5]
        assert -skew == x**2 != x * x
