"""Scenario P&L (optmm.risk.scenarios): full revaluation against references, additivity, collapsing,
Taylor vs full, sticky rules, named stresses and the heatmap.

References: ``optmm.greeks.bsm_price`` called directly at shocked and base inputs, and vollib 1.0.x
(``vollib.black_scholes_merton.black_scholes_merton``), an independent implementation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import RISK_VALUATION as VALUATION
from builders import make_book, make_market, skew_surface, years

import optmm.risk.scenarios as sc
from optmm.book import Book, Kind
from optmm.greeks import bsm_price
from optmm.market import Market, Sticky
from optmm.risk import (
    GridResult,
    Shock,
    Stress,
    heatmap,
    load_stress,
    run_stress,
    run_stresses,
    scenario_grid,
    scenario_pnl,
)
from optmm.surface import FlatSurface

STRESS_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "stress"
SPOTS = (-0.2, -0.1, -0.03, 0.0, 0.04, 0.12)
VOLS = (-0.05, 0.0, 0.03, 0.1)


def concat(a: Book, b: Book) -> Book:
    fields = ("underlying", "kind", "strike", "expiry", "quantity", "multiplier", "vol")
    arrays = {f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in fields}
    ids = np.array([f"q{i}" for i in range(len(a) + len(b))], dtype=object)
    return Book(id=ids, source="a+b", **arrays)


@pytest.fixture
def two_name_book() -> Book:
    return make_book(
        [
            ("AAA", Kind.CALL, 100.0, "2024-06-21", 10),
            ("AAA", Kind.PUT, 90.0, "2024-06-21", -15),
            ("AAA", Kind.CALL, 110.0, "2025-01-17", -7, 100.0, 0.31),
            ("AAA", Kind.STOCK, 0.0, None, -400),
            ("BBB", Kind.PUT, 45.0, "2024-04-19", 25),
            ("BBB", Kind.CALL, 55.0, "2024-09-20", -12),
            ("BBB", Kind.STOCK, 0.0, None, 300),
        ]
    )


@pytest.fixture
def two_name_market() -> Market:
    return make_market({"AAA": 100.0, "BBB": 50.0})


# --------------------------------------------------------------------------------------------------
# one option against two bsm_price calls


@pytest.mark.parametrize("override", [np.nan, 0.37])
@pytest.mark.parametrize("days", [0.0, 3.0])
def test_single_option_pnl_is_difference_of_two_prices(override: float, days: float) -> None:
    book = make_book([("XYZ", Kind.PUT, 95.0, "2024-08-16", 7.0, 100.0, override)])
    surface_vol = 0.22
    market = make_market({"XYZ": 101.0}, surface={"XYZ": FlatSurface(vol=surface_vol)}, rate=0.05, div=0.02)
    grid = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS, days=days)
    t = years("2024-08-16")
    base_vol = surface_vol if np.isnan(override) else override
    base = bsm_price(101.0, 95.0, t, 0.05, 0.02, base_vol, False)
    for s in SPOTS:
        for v in VOLS:
            shocked = bsm_price(
                101.0 * (1 + s), 95.0, t - days / 365, 0.05, 0.02, max(base_vol + v, 0.0), False
            )
            want = 700.0 * (shocked - base)
            got = grid.matrix().loc[s, v]
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12 * 700 * base), (s, v)
            assert grid.matrix("XYZ").loc[s, v] == got


def test_vol_floor_at_zero() -> None:
    book = make_book([("XYZ", Kind.CALL, 100.0, "2024-06-01", 1.0)])
    market = make_market({"XYZ": 100.0}, surface={"XYZ": FlatSurface(vol=0.08)}, rate=0.03, div=0.0)
    grid = scenario_grid(book, market, spot_shocks=[0.05], vol_shocks=[-0.1, -0.08])
    t = years("2024-06-01")
    base = bsm_price(100.0, 100.0, t, 0.03, 0.0, 0.08, True)
    zero_vol = bsm_price(105.0, 100.0, t, 0.03, 0.0, 0.0, True)
    np.testing.assert_allclose(grid.matrix().to_numpy(), [[100 * (zero_vol - base)] * 2], rtol=1e-13)


def test_days_past_expiry_gives_intrinsic() -> None:
    book = make_book(
        [("XYZ", Kind.CALL, 100.0, "2024-03-02", 3.0), ("XYZ", Kind.PUT, 100.0, "2024-03-02", 2.0)]
    )
    market = make_market({"XYZ": 100.0})
    grid = scenario_grid(book, market, spot_shocks=[-0.1, 0.1], vol_shocks=[0.0], days=2)
    t = years("2024-03-02")
    base_c = bsm_price(100.0, 100.0, t, 0.04, 0.01, 0.25, True)
    base_p = bsm_price(100.0, 100.0, t, 0.04, 0.01, 0.25, False)
    want_down = 300 * (0.0 - base_c) + 200 * (10.0 - base_p)
    want_up = 300 * (10.0 - base_c) + 200 * (0.0 - base_p)
    np.testing.assert_allclose(grid.matrix()[0.0].to_numpy(), [want_down, want_up], rtol=1e-12)


def test_stock_pnl_is_linear_and_ignores_vol_and_time() -> None:
    book = make_book([("XYZ", Kind.STOCK, 0.0, None, -250.0)])
    grid = scenario_grid(book, make_market({"XYZ": 80.0}), spot_shocks=SPOTS, vol_shocks=VOLS, days=5)
    want = np.outer(-250.0 * 80.0 * np.array(SPOTS), np.ones(len(VOLS)))
    np.testing.assert_allclose(grid.matrix().to_numpy(), want, rtol=1e-14, atol=1e-10)
    np.testing.assert_allclose(grid.taylor.to_numpy(), want, rtol=1e-14, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# independent reference: vollib


def test_flat_surface_book_matches_vollib(two_name_book: Book, two_name_market: Market) -> None:
    from vollib.black_scholes_merton import black_scholes_merton as vl

    book, market = two_name_book, two_name_market
    spots, vols, days = (-0.15, -0.05, 0.05, 0.15), (-0.05, 0.1), 2.0
    grid = scenario_grid(book, market, spot_shocks=spots, vol_shocks=vols, days=days)

    def value(s: float, v: float, dt: float) -> dict[str, float]:
        out = {"AAA": 0.0, "BBB": 0.0}
        for i in range(len(book)):
            u = book.underlying[i]
            qm = book.quantity[i] * book.multiplier[i]
            spot = market.spot[u] * (1 + s)
            if book.kind[i] == Kind.STOCK:
                out[u] += qm * spot
                continue
            t = years(str(book.expiry[i])) - dt / 365
            sigma = (0.25 if np.isnan(book.vol[i]) else book.vol[i]) + v
            flag = "c" if book.kind[i] == Kind.CALL else "p"
            out[u] += qm * vl(flag, spot, book.strike[i], t, 0.04, sigma, 0.01)
        return out

    base = value(0.0, 0.0, 0.0)
    for s in spots:
        for v in vols:
            shocked = value(s, v, days)
            for u in ("AAA", "BBB"):
                want = shocked[u] - base[u]
                assert grid.matrix(u).loc[s, v] == pytest.approx(want, rel=1e-10), (u, s, v)
            want_book = sum(shocked.values()) - sum(base.values())
            assert grid.matrix().loc[s, v] == pytest.approx(want_book, rel=1e-10)


# --------------------------------------------------------------------------------------------------
# additivity and collapsing


def test_grid_is_additive_over_underlyings_and_books(rng: np.random.Generator) -> None:
    market = make_market({"AAA": 100.0, "BBB": 50.0, "CCC": 20.0})
    contracts = [
        (u, kind, round(spot * m, 2), exp)
        for u, spot in market.spot.items()
        for kind in (Kind.CALL, Kind.PUT)
        for m in (0.8, 1.0, 1.15)
        for exp in ("2024-04-19", "2024-12-20")
    ]

    def random_book(n: int, tag: str) -> Book:
        pick = rng.integers(0, len(contracts), n)
        rows = [(*contracts[i], float(rng.integers(-20, 21))) for i in pick]
        rows += [(u, Kind.STOCK, 0.0, None, float(rng.integers(-500, 500))) for u in ("AAA", "CCC")]
        return make_book(rows, source=tag)

    a, b = random_book(25, "a"), random_book(30, "b")
    kw = {"spot_shocks": SPOTS, "vol_shocks": VOLS, "days": 1.0}
    ga, gb, gab = (scenario_grid(x, market, **kw) for x in (a, b, concat(a, b)))
    per_underlying = sum(gab.matrix(u) for u in gab.underlyings)
    np.testing.assert_allclose(per_underlying.to_numpy(), gab.matrix().to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        gab.matrix().to_numpy(), ga.matrix().to_numpy() + gb.matrix().to_numpy(), rtol=0, atol=1e-9
    )
    for u in gab.underlyings:
        np.testing.assert_allclose(
            gab.matrix(u).to_numpy(), ga.matrix(u).to_numpy() + gb.matrix(u).to_numpy(), rtol=0, atol=1e-9
        )
    # the long form holds the same numbers
    long = gab.pnl.groupby(["spot_shock", "vol_shock"])["pnl"].sum().unstack("vol_shock")
    np.testing.assert_allclose(long.to_numpy(), gab.matrix().to_numpy(), rtol=0, atol=1e-9)
    assert list(gab.pnl.columns) == ["spot_shock", "vol_shock", "days", "underlying", "pnl"]
    assert len(gab.pnl) == len(SPOTS) * len(VOLS) * 3


def per_position_reference(book: Book, market: Market, spots, vols, days: float) -> np.ndarray:
    """The straightforward loop the engine must agree with: every position, every cell."""
    out = np.zeros((len(spots), len(vols)))
    t_all = market.year_fraction(book.expiry)
    for i in range(len(book)):
        u, qm = book.underlying[i], book.quantity[i] * book.multiplier[i]
        spot, r, q = market.spot[u], market.rate[u], market.div_yield[u]
        if book.kind[i] == Kind.STOCK:
            out += qm * spot * np.asarray(spots)[:, None]
            continue
        k, t, call = book.strike[i], float(t_all[i]), book.kind[i] == Kind.CALL
        override = book.vol[i]
        base_vol = (
            override if not np.isnan(override) else float(market.vols(u, np.array([k]), np.array([t]))[0])
        )
        base = bsm_price(spot, k, t, r, q, base_vol, call)
        for a, s in enumerate(spots):
            if np.isnan(override):
                v0 = float(market.vols(u, np.array([k]), np.array([t]), spot_shift=s)[0])
            else:
                v0 = override
            for b, v in enumerate(vols):
                price = bsm_price(spot * (1 + s), k, t - days / 365, r, q, max(v0 + v, 0.0), call)
                out[a, b] += qm * (price - base)
    return out


@pytest.mark.parametrize("sticky", [Sticky.STRIKE, Sticky.MONEYNESS])
def test_collapsed_contracts_match_per_position_loop(sticky: Sticky, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        ("AAA", Kind.CALL, 100.0, "2024-06-21", 10),
        ("AAA", Kind.CALL, 100.0, "2024-06-21", -4),  # same contract
        ("AAA", Kind.CALL, 100.0, "2024-06-21", 3, 10.0),  # same contract, mini multiplier
        ("AAA", Kind.CALL, 100.0, "2024-06-21", 2, 100.0, 0.3),  # same, but an override: another contract
        ("AAA", Kind.CALL, 100.0, "2024-06-21", 5, 100.0, 0.3),
        ("AAA", Kind.PUT, 100.0, "2024-06-21", 8),  # same strike/expiry, other kind
        ("AAA", Kind.PUT, 100.0, "2024-09-20", 8),  # other expiry
        ("AAA", Kind.PUT, 100.0, "2024-09-20", -8),  # nets to zero
        ("AAA", Kind.STOCK, 0.0, None, 120),
        ("AAA", Kind.STOCK, 0.0, None, -20),
        ("BBB", Kind.CALL, 100.0, "2024-06-21", 10),  # same terms, other underlying
        ("BBB", Kind.PUT, 40.0, "2024-03-04", -30),  # expires inside the 5-day shock
        ("AAA", Kind.PUT, 85.0, "2025-03-21", -6),
        ("AAA", Kind.PUT, 85.0, "2025-03-21", -6, 100.0, 0.0),  # zero-vol override
    ]
    book = make_book(rows)
    market = make_market(
        {"AAA": 100.0, "BBB": 41.0}, surface={"AAA": skew_surface(), "BBB": skew_surface()}, sticky=sticky
    )
    want = per_position_reference(book, market, SPOTS, VOLS, 5.0)
    got = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS, days=5.0)
    np.testing.assert_allclose(got.matrix().to_numpy(), want, rtol=0, atol=1e-9)
    # chunks that split the contracts (and an underlying) give the same numbers
    monkeypatch.setattr(sc, "MAX_CELLS", 3 * len(SPOTS) * len(VOLS))
    monkeypatch.setattr(sc, "SEGMENT", 2)
    small = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS, days=5.0)
    np.testing.assert_allclose(small.matrix().to_numpy(), want, rtol=0, atol=1e-9)
    for u in ("AAA", "BBB"):
        np.testing.assert_allclose(small.matrix(u).to_numpy(), got.matrix(u).to_numpy(), rtol=0, atol=1e-9)


def test_one_kernel_call_per_sticky_strike_grid(
    two_name_book: Book, two_name_market: Market, monkeypatch
) -> None:
    """Under sticky strike the whole grid is one kernel call over per-contract arrays: nothing of
    shape (contracts, points) goes in (the vols are one per contract, the shifts per underlying)."""
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    real = sc.reval_segments

    def counting(c, p, *args):
        calls.append((c.vol_table.shape, args[-2].shape))  # vols in, the segment sums out
        return real(c, p, *args)

    monkeypatch.setattr(sc, "reval_segments", counting)
    scenario_grid(two_name_book, two_name_market, spot_shocks=SPOTS, vol_shocks=VOLS)
    assert calls == [((5, 1), (2, len(SPOTS) * len(VOLS)))]  # 5 option contracts, 2 underlyings


# --------------------------------------------------------------------------------------------------
# Taylor against full revaluation


def test_taylor_error_is_third_order_in_spot() -> None:
    book = make_book([("XYZ", Kind.CALL, 105.0, "2024-09-20", 10), ("XYZ", Kind.PUT, 95.0, "2024-06-21", -4)])
    market = make_market({"XYZ": 100.0})
    hs = (0.02, 0.01, 0.005)
    shocks = [-h for h in hs] + list(hs)
    grid = scenario_grid(book, market, spot_shocks=shocks, vol_shocks=[0.0])
    err = (grid.matrix() - grid.taylor)[0.0]
    for sign in (-1, 1):
        e = [abs(err[sign * h]) for h in hs]
        assert e[0] / e[1] == pytest.approx(8.0, rel=0.05)
        assert e[1] / e[2] == pytest.approx(8.0, rel=0.03)
        # and the error is small against the P&L itself
        assert e[2] < 1e-4 * abs(grid.matrix()[0.0][sign * hs[2]])


def test_taylor_breaks_for_large_shocks() -> None:
    book = make_book(
        [("XYZ", Kind.PUT, 90.0, "2024-04-19", -50), ("XYZ", Kind.CALL, 110.0, "2024-04-19", -50)]
    )
    market = make_market({"XYZ": 100.0})
    grid = scenario_grid(book, market, spot_shocks=[-0.3, -0.01], vol_shocks=[0.0, 0.3])
    full, tay = grid.matrix(), grid.taylor
    assert abs(full.loc[-0.01, 0.0] - tay.loc[-0.01, 0.0]) < 5e-3 * abs(full.loc[-0.01, 0.0])
    assert abs(full.loc[-0.3, 0.0] - tay.loc[-0.3, 0.0]) > 0.05 * abs(full.loc[-0.3, 0.0])
    assert abs(full.loc[-0.01, 0.3] - tay.loc[-0.01, 0.3]) > 0.05 * abs(full.loc[-0.01, 0.3])


def test_taylor_terms_by_hand() -> None:
    from optmm.greeks import bsm_greeks

    book = make_book([("XYZ", Kind.CALL, 100.0, "2024-09-20", 3)])
    grid = scenario_grid(book, make_market({"XYZ": 100.0}), spot_shocks=[0.1], vol_shocks=[0.02], days=4)
    g = bsm_greeks(100.0, 100.0, years("2024-09-20"), 0.04, 0.01, 0.25, True)
    want = 300 * (g.delta * 10 + 0.5 * g.gamma * 100 + g.vega * 0.02 + g.theta * 4 / 365)
    assert grid.taylor.loc[0.1, 0.02] == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# the sticky rule


def test_sticky_rule_changes_the_grid_and_matches_hand_computation() -> None:
    surface = skew_surface()
    book = make_book([("XYZ", Kind.PUT, 90.0, "2024-09-20", 10)])
    spot, k, t = 100.0, 90.0, years("2024-09-20")
    spots, vols = (-0.1, 0.1), (0.0, 0.05)
    grids = {}
    for sticky in (Sticky.STRIKE, Sticky.MONEYNESS):
        market = make_market({"XYZ": spot}, surface={"XYZ": surface}, sticky=sticky)
        grids[sticky] = scenario_grid(book, market, spot_shocks=spots, vol_shocks=vols).matrix()
    fwd = spot * math.exp((0.04 - 0.01) * t)
    v0 = float(surface.vol(k, t, fwd))
    base = bsm_price(spot, k, t, 0.04, 0.01, v0, False)
    for s in spots:
        for v in vols:
            # sticky strike: the strike keeps its vol; sticky moneyness: the vol of K / F moves with F
            v_strike = v0 + v
            v_money = float(surface.vol(k, t, fwd * (1 + s))) + v
            want_strike = 1000 * (bsm_price(spot * (1 + s), k, t, 0.04, 0.01, v_strike, False) - base)
            want_money = 1000 * (bsm_price(spot * (1 + s), k, t, 0.04, 0.01, v_money, False) - base)
            assert grids[Sticky.STRIKE].loc[s, v] == pytest.approx(want_strike, rel=1e-12)
            assert grids[Sticky.MONEYNESS].loc[s, v] == pytest.approx(want_money, rel=1e-12)
            assert abs(want_strike - want_money) > 0.01 * abs(want_strike)


# --------------------------------------------------------------------------------------------------
# shocks: targets, beta weighting, validation


def test_single_underlying_shock_leaves_the_others(two_name_book: Book, two_name_market: Market) -> None:
    g0 = scenario_grid(two_name_book, two_name_market, spot_shocks=SPOTS, vol_shocks=VOLS, underlying="AAA")
    assert np.all(g0.matrix("BBB").to_numpy() == 0.0)
    full = scenario_grid(two_name_book, two_name_market, spot_shocks=SPOTS, vol_shocks=VOLS)
    np.testing.assert_allclose(g0.matrix("AAA").to_numpy(), full.matrix("AAA").to_numpy(), rtol=1e-14)
    # time passes for everyone: with days, BBB carries its theta only (a constant over the grid)
    g1 = scenario_grid(
        two_name_book, two_name_market, spot_shocks=SPOTS, vol_shocks=VOLS, underlying="AAA", days=1
    )
    bbb = g1.matrix("BBB").to_numpy()
    assert np.all(bbb == bbb[0, 0]) and bbb[0, 0] != 0.0
    pnl = scenario_pnl(two_name_book, two_name_market, [Shock(0.0, 0.0, days=1)])
    assert bbb[0, 0] == pytest.approx(pnl.loc[0, "BBB"], rel=1e-13)


def test_beta_weighted_grid_equals_per_underlying_moves(two_name_book: Book) -> None:
    market = make_market(
        {"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0}, beta={"AAA": 1.3, "BBB": 0.7}, index="IDX"
    )
    grid = scenario_grid(
        two_name_book, market, spot_shocks=[-0.1, 0.05], vol_shocks=[0.0, 0.04], beta_weighted=True
    )
    for s in (-0.1, 0.05):
        for v in (0.0, 0.04):
            legs = [Shock(1.3 * s, v, underlying="AAA"), Shock(0.7 * s, v, underlying="BBB")]
            pnl = scenario_pnl(two_name_book, market, legs)
            assert grid.matrix("AAA").loc[s, v] == pytest.approx(pnl.loc[0, "AAA"], rel=1e-13)
            assert grid.matrix("BBB").loc[s, v] == pytest.approx(pnl.loc[1, "BBB"], rel=1e-13)


def test_beta_weighted_refuses_missing_beta_and_index(two_name_book: Book) -> None:
    market = make_market({"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0}, beta={"AAA": 1.3}, index="IDX")
    with pytest.raises(ValueError, match="BBB"):
        scenario_grid(two_name_book, market, spot_shocks=[-0.1], vol_shocks=[0.0], beta_weighted=True)
    no_index = make_market({"AAA": 100.0, "BBB": 50.0}, beta={"AAA": 1.3, "BBB": 1.0})
    with pytest.raises(ValueError, match=r"beta_weighted.*sets no `index`"):
        scenario_grid(two_name_book, no_index, spot_shocks=[-0.1], vol_shocks=[0.0], beta_weighted=True)
    # the index itself needs no beta
    idx_book = make_book([("IDX", Kind.PUT, 3800.0, "2024-06-21", 1)])
    grid = scenario_grid(idx_book, market, spot_shocks=[-0.1], vol_shocks=[0.0], beta_weighted=True)
    plain = scenario_grid(idx_book, market, spot_shocks=[-0.1], vol_shocks=[0.0])
    assert grid.matrix().iloc[0, 0] == plain.matrix().iloc[0, 0]
    # a beta large enough to push a spot below zero is refused, naming the underlying
    wild = make_market({"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0}, beta={"AAA": 3.0, "BBB": 1.0}, index="IDX")
    with pytest.raises(ValueError, match="AAA"):
        scenario_grid(two_name_book, wild, spot_shocks=[-0.4], vol_shocks=[0.0], beta_weighted=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spot_shocks": [], "vol_shocks": [0.0]}, "spot_shocks"),
        ({"spot_shocks": [0.1, 0.1], "vol_shocks": [0.0]}, "duplicated"),
        ({"spot_shocks": [np.nan], "vol_shocks": [0.0]}, "spot_shocks"),
        ({"spot_shocks": [-1.0], "vol_shocks": [0.0]}, "spot"),
        ({"spot_shocks": [0.0], "vol_shocks": [np.inf]}, "vol_shocks"),
        ({"spot_shocks": [0.0], "vol_shocks": [0.0], "days": -1}, "days"),
        ({"spot_shocks": [0.0], "vol_shocks": [0.0], "underlying": "ZZZ"}, "ZZZ"),
    ],
)
def test_bad_grid_arguments_are_refused(two_name_book, two_name_market, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        scenario_grid(two_name_book, two_name_market, **kwargs)


def test_worst_cell_and_driver() -> None:
    # AAA: short puts lose on the way down; BBB: long puts gain. The worst cell is spot -20%, vol +10.
    book = make_book([("AAA", Kind.PUT, 95.0, "2024-06-21", -30), ("BBB", Kind.PUT, 48.0, "2024-06-21", 10)])
    grid = scenario_grid(book, make_market({"AAA": 100.0, "BBB": 50.0}), spot_shocks=SPOTS, vol_shocks=VOLS)
    m = grid.matrix()
    i, j = np.unravel_index(np.argmin(m.to_numpy()), m.shape)
    w = grid.worst()
    assert (w.spot_shock, w.vol_shock) == (m.index[i], m.columns[j]) == (-0.2, 0.1)
    assert w.pnl == m.iloc[i, j] < 0
    assert w.driver == "AAA"
    assert grid.matrix("BBB").loc[-0.2, 0.1] > 0


def test_grid_inputs_are_not_mutated(two_name_book: Book, two_name_market: Market) -> None:
    before = {f: getattr(two_name_book, f).copy() for f in ("quantity", "strike", "vol", "kind")}
    for arr in (getattr(two_name_book, f) for f in before):
        arr.flags.writeable = False
    spots = np.array(SPOTS)
    spots.flags.writeable = False
    scenario_grid(two_name_book, two_name_market, spot_shocks=spots, vol_shocks=VOLS)
    for f, arr in before.items():
        np.testing.assert_array_equal(getattr(two_name_book, f), arr)


# --------------------------------------------------------------------------------------------------
# named stresses


def beta_market(spot_shift: float = 0.0) -> Market:
    return make_market(
        {"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0},
        beta={"AAA": 1.2, "BBB": 0.8},
        index="IDX",
    )


def test_all_stress_files_load() -> None:
    names = {p.stem: load_stress(p) for p in sorted(STRESS_DIR.glob("*.toml"))}
    assert set(names) >= {
        "index_crash",
        "gap_up",
        "gap_down",
        "vol_crush",
        "flash_crash",
        "correlated_selloff",
    }
    crash = names["index_crash"].legs
    assert crash == (Shock(-0.2, 0.25, days=0, beta_weighted=True),)
    assert names["gap_up"].legs == (Shock(0.05, 0.0, days=1),)
    assert names["gap_down"].legs == (Shock(-0.05, 0.0, days=1),)
    assert names["vol_crush"].legs == (Shock(0.0, -0.1, days=1),)
    assert names["correlated_selloff"].legs == (Shock(-0.08, 0.08, beta_weighted=True),)
    flash = names["flash_crash"]
    assert len(flash.legs) >= 2 and flash.legs[0] == Shock(-0.07, 0.15)
    for stress in names.values():
        assert stress.description and stress.source.endswith(".toml")


def test_index_crash_pays_a_long_put_book() -> None:
    book = make_book(
        [
            ("AAA", Kind.PUT, 95.0, "2024-06-21", 20),
            ("BBB", Kind.PUT, 45.0, "2024-06-21", 30),
            ("IDX", Kind.PUT, 3800.0, "2024-06-21", 2),
        ]
    )
    res = run_stress(book, beta_market(), STRESS_DIR / "index_crash.toml")
    assert res.pnl > 0
    assert res.table.loc["crash", "book"] == res.pnl
    assert (res.table.loc["crash", ["AAA", "BBB", "IDX"]] > 0).all()
    # each name moved by its beta: AAA -24%, BBB -16%
    want = scenario_pnl(book, beta_market(), [Shock(-0.24, 0.25, underlying="AAA")]).loc[0, "AAA"]
    assert res.table.loc["crash", "AAA"] == pytest.approx(want, rel=1e-13)


def test_flash_crash_is_reported_per_leg_and_scored_by_its_worst_leg() -> None:
    book = make_book([("AAA", Kind.PUT, 95.0, "2024-04-19", -40), ("BBB", Kind.CALL, 50.0, "2024-04-19", 15)])
    res = run_stress(book, beta_market(), load_stress(STRESS_DIR / "flash_crash.toml"))
    assert list(res.table.index) == ["crash", "recovery"]
    assert list(res.table.columns) == ["AAA", "BBB", "book"]
    np.testing.assert_allclose(res.table[["AAA", "BBB"]].sum(axis=1), res.table["book"], rtol=1e-14)
    assert res.pnl == res.table["book"].min() < 0
    assert res.worst_leg == "crash" and res.driver == "AAA"
    direct = scenario_pnl(book, beta_market(), [Shock(-0.07, 0.15), Shock(-0.01, 0.03)])
    np.testing.assert_array_equal(res.table["book"].to_numpy(), direct["book"].to_numpy())
    assert list(res.legs.columns) == ["spot", "vol", "days", "underlying", "beta_weighted", "pnl", "driver"]


def test_run_stresses_one_row_per_file() -> None:
    book = make_book([("AAA", Kind.CALL, 100.0, "2024-06-21", -10), ("BBB", Kind.STOCK, 0.0, None, 100)])
    table = run_stresses(book, beta_market(), STRESS_DIR)
    assert list(table.columns) == ["name", "file", "legs", "worst_leg", "pnl", "driver"]
    assert len(table) == len(list(STRESS_DIR.glob("*.toml")))
    gap_up = table.set_index("name").loc["Gap up"]
    want = run_stress(book, beta_market(), STRESS_DIR / "gap_up.toml").pnl
    assert gap_up["pnl"] == want and gap_up["legs"] == 1
    one = run_stresses(book, beta_market(), [STRESS_DIR / "gap_up.toml"])
    assert one["pnl"].tolist() == [want]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('name = "x"\n[[legs]]\nspot = "big"\n', "'spot'"),
        ('name = "x"\n[[legs]]\nspot = -0.1\n[[legs]]\nvol = true\n', "leg 2, field 'vol'"),
        ('name = "x"\n[[legs]]\nspto = -0.1\n', "'spto'"),
        ('name = "x"\n[[legs]]\nspot = -1.5\n', "'spot'"),
        ('name = "x"\n[[legs]]\ndays = -1\n', "'days'"),
        ('name = "x"\n[[legs]]\nbeta_weighted = "yes"\n', "'beta_weighted'"),
        ('name = "x"\n[[legs]]\nunderlying = 3\n', "'underlying'"),
        ("[[legs]]\nspot = -0.1\n", "'name'"),
        ('name = "x"\n', "'legs'"),
        ('name = "x"\nlegs = []\n', "'legs'"),
        ('name = "x"\ncolour = "red"\n[[legs]]\nspot = 0.1\n', "'colour'"),
        ('name = "x"\n[[legs]]\nspot = \n', "not valid TOML"),
    ],
)
def test_malformed_stress_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_stress(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)


def test_missing_stress_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.toml"):
        load_stress(tmp_path / "nope.toml")


def test_stress_built_in_code() -> None:
    stress = Stress("Mine", "", (Shock(-0.02, 0.01), Shock(0.02, -0.01)))
    assert stress.labels == ("leg 1", "leg 2")
    book = make_book([("AAA", Kind.CALL, 100.0, "2024-06-21", 5)])
    res = run_stress(book, beta_market(), stress)
    assert res.worst_leg == "leg 1"


# --------------------------------------------------------------------------------------------------
# heatmap


def test_heatmap_of_a_large_grid_stays_bounded(
    tmp_path: Path, two_name_book: Book, two_name_market: Market
) -> None:
    # 101 x 61 cells: no per-cell numbers, a figure of at most 24 x 20 inches at 110 dpi
    grid = scenario_grid(
        two_name_book,
        two_name_market,
        spot_shocks=np.linspace(-0.5, 0.5, 101).round(4),
        vol_shocks=np.linspace(-0.3, 0.3, 61).round(4),
    )
    data = heatmap(grid, tmp_path / "big.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width <= 24 * 110 and height <= 20 * 110


def test_heatmap_writes_a_png(tmp_path: Path, two_name_book: Book, two_name_market: Market) -> None:
    grid = scenario_grid(
        two_name_book,
        two_name_market,
        spot_shocks=np.linspace(-0.2, 0.2, 9).round(4),
        vol_shocks=[-0.1, 0.0, 0.1],
    )
    out = heatmap(grid, tmp_path / "grid.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 300 < width < 3000 and 200 < height < 3000
    assert 10_000 < len(data) < 2_000_000
    heatmap(grid, tmp_path / "aaa.png", underlying="AAA")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aaa.png", "grid.png"]  # no temp files left
    with pytest.raises(ValueError, match="ZZZ"):
        heatmap(grid, tmp_path / "z.png", underlying="ZZZ")
    assert not (tmp_path / "z.png").exists()


def test_grid_result_type(two_name_book: Book, two_name_market: Market) -> None:
    grid = scenario_grid(two_name_book, two_name_market, spot_shocks=[0.0], vol_shocks=[0.0])
    assert isinstance(grid, GridResult)
    assert grid.matrix().iloc[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert grid.underlyings == ("AAA", "BBB")
    assert isinstance(grid.pnl, pd.DataFrame)


@pytest.mark.parametrize("sticky", [Sticky.STRIKE, Sticky.MONEYNESS])
def test_segments_and_blocks_give_the_same_pnl(sticky: Sticky, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under sticky moneyness the vols of a block of contracts at every spot level are looked up
    per kernel call: a block holds at most MAX_CELLS of them, whatever the book (here 100 // 24 = 4
    contracts a block, of whole segments of 3: the last two, 3 + 1, make one). Smaller blocks and
    segments change only the order of the additions."""
    rows = [("AAA", Kind.CALL, float(k), "2024-06-21", 1) for k in range(60, 140, 2)]  # 40 contracts
    book = make_book(rows)
    market = make_market({"AAA": 100.0}, surface={"AAA": skew_surface()}, sticky=sticky)
    want = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS)
    sizes: list[int] = []
    real = sc.reval_segments

    def recording(c, *args):
        sizes.append(int(c.u.size))  # contracts of the block going in
        assert c.vol_table.size <= 100
        return real(c, *args)

    monkeypatch.setattr(sc, "reval_segments", recording)
    monkeypatch.setattr(sc, "MAX_CELLS", 100)
    monkeypatch.setattr(sc, "SEGMENT", 3)
    got = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS)
    assert sizes == ([40] if sticky is Sticky.STRIKE else [3] * 12 + [4])  # whole segments, <= 4
    np.testing.assert_allclose(got.matrix().to_numpy(), want.matrix().to_numpy(), rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(got.taylor.to_numpy(), want.taylor.to_numpy(), rtol=1e-13, atol=1e-9)


EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"


def test_example_book_runs_every_stress() -> None:
    book = Book.load(EXAMPLES / "book.csv")
    market = Market.load(EXAMPLES / "market.toml")
    table = run_stresses(book, market, STRESS_DIR)
    assert len(table) == 6 and np.isfinite(table["pnl"]).all()
    for path in sorted(STRESS_DIR.glob("*.toml")):
        res = run_stress(book, market, path)
        np.testing.assert_allclose(res.table.drop(columns="book").sum(axis=1), res.table["book"], rtol=1e-12)
        assert res.pnl == res.table["book"].min()


# --------------------------------------------------------------------------------------------------
# units in stress files, drivers, non-finite results, errors that name the leg, plot formats


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("spot_pct = -7\nvol_pts = 15\n", Shock(-0.07, 0.15)),
        ("spot_pct = 100\nvol_pts = -100\n", Shock(1.0, -1.0)),
        ("spot_pct = -20\nvol_pts = 25\nbeta_weighted = true\n", Shock(-0.2, 0.25, beta_weighted=True)),
        # the older decimal form, read where it cannot be mistaken: the same shocks bit for bit
        ("spot = -0.07\nvol = 0.15\n", Shock(-0.07, 0.15)),
    ],
)
def test_stress_units_are_in_the_field_names(tmp_path: Path, text: str, want: Shock) -> None:
    assert load_stress(write(tmp_path, f'name = "x"\n[[legs]]\n{text}')).legs == (want,)


@pytest.mark.parametrize(
    ("leg", "fragments"),
    [
        ("spot = 5\n", ["leg 1, field 'spot'", "fraction", "spot_pct"]),  # +500% or 5%? refused
        ("vol = 2\n", ["leg 1, field 'vol'", "decimals of vol", "vol_pts"]),  # 200 or 2 points?
        ("spot = -1\n", ["field 'spot'", "spot_pct"]),
        ("spot_pct = 500\n", ["field 'spot_pct'", "percent"]),
        ("spot_pct = -100\n", ["field 'spot_pct'", "percent"]),
        ("vol_pts = 200\n", ["field 'vol_pts'", "vol points"]),
        ("days = 100000\n", ["field 'days'", "calendar days"]),
        ("spot = -0.05\nspot_pct = -5\n", ["field 'spot'", "once"]),
        ("spot_pct = nan\n", ["field 'spot_pct'"]),
    ],
)
def test_stress_magnitudes_outside_their_unit_are_refused(
    tmp_path: Path, leg: str, fragments: list[str]
) -> None:
    path = write(tmp_path, f'name = "x"\n[[legs]]\n{leg}')
    with pytest.raises(ValueError) as info:
        load_stress(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_bundled_stresses_use_explicit_units() -> None:
    for path in sorted(STRESS_DIR.glob("*.toml")):
        body = [
            line.split("=")[0].strip()
            for line in path.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        ]
        assert "spot" not in body and "vol" not in body, path.name
        assert "spot_pct" in body and "vol_pts" in body, path.name


def test_driver_is_the_largest_contributor_in_the_direction_of_the_pnl() -> None:
    # A gain: the biggest winner, not the underlying with the lowest P&L.
    assert (
        sc.driver_of(np.array([208_000.0, 40_000.0, 163_000.0, 78_000.0]), ["SPY", "TSLA", "MSFT", "AAPL"])
        == "SPY"
    )
    # A loss: the biggest loser, even when another underlying gains more than it loses.
    assert sc.driver_of(np.array([-50.0, 30.0, -10.0]), ["A", "B", "C"]) == "A"
    assert sc.driver_of(np.array([10.0, -10.0]), ["A", "B"]) is None
    assert sc.driver_of(np.array([]), []) is None


def test_stress_and_grid_drivers_follow_the_direction() -> None:
    # Long puts on both: a crash gains on both, AAA most; the driver is AAA (before: the smaller gainer).
    book = make_book([("AAA", Kind.PUT, 95.0, "2024-06-21", 50), ("BBB", Kind.PUT, 45.0, "2024-06-21", 2)])
    res = run_stress(book, beta_market(), STRESS_DIR / "index_crash.toml")
    row = res.table.loc["crash"]
    assert row["book"] > 0 and row["AAA"] > row["BBB"] > 0
    assert res.driver == "AAA" and res.legs.loc["crash", "driver"] == "AAA"
    grid = scenario_grid(book, beta_market(), spot_shocks=[-0.3, -0.2], vol_shocks=[0.1])
    w = grid.worst()  # the least good cell still gains: its driver is the biggest winner there
    assert w.pnl > 0 and w.driver == "AAA"


def test_grid_result_refuses_non_finite_pnl_naming_the_underlying_and_cell(
    two_name_book, two_name_market
) -> None:
    grid = scenario_grid(two_name_book, two_name_market, spot_shocks=[-0.1, 0.1], vol_shocks=[0.0, 0.05])
    full = grid._full.copy()
    full[1, 1, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"grid cell spot \+10%, vol \+0pt: P&L of BBB is not a finite number;"
    ):
        sc.GridResult(**{**grid.__dict__, "_full": full})
    huge = np.full_like(grid._full, 1e308)  # finite parts whose book sum overflows
    with pytest.raises(ValueError, match=r"grid cell spot -10%, vol \+0pt: the book's P&L is not a finite"):
        sc.GridResult(**{**grid.__dict__, "_full": huge})


def test_stress_result_refuses_non_finite_pnl_naming_the_file_and_leg() -> None:
    stress = load_stress(STRESS_DIR / "flash_crash.toml")
    pnl = np.array([[1.0, np.nan], [2.0, 3.0]])
    with np.errstate(invalid="ignore"):
        table = sc._shock_frame(["AAA", "BBB"], pnl)
    with pytest.raises(
        ValueError, match=r"flash_crash\.toml: leg 2 \('recovery'\): P&L of AAA is not a finite"
    ):
        sc.stress_result(stress, table, pnl, ["AAA", "BBB"])


def test_huge_inputs_give_a_named_error_not_inf(two_name_market: Market) -> None:
    """Quantities that overflow the arithmetic: an error naming where, no RuntimeWarning (errors here)."""
    rows = [("AAA", Kind.CALL, 100.0, "2024-06-21", 1e306), ("BBB", Kind.STOCK, 0.0, None, 1e307)]
    with pytest.raises(ValueError, match=r"row 1: field 'quantity'.*plausible"):
        make_book(rows)  # the book refuses them at its boundary ...
    # ... and a book whose arrays were changed behind its back still gets a named error, not inf
    book = make_book([(*r[:4], 1.0) for r in rows])
    book.quantity[:] = [1e306, 1e307]
    with pytest.raises(ValueError, match=r"not a finite number"):
        scenario_grid(book, two_name_market, spot_shocks=[-0.2, 0.2], vol_shocks=[0.0])
    with pytest.raises(ValueError, match=r"not a finite number"):
        scenario_pnl(book, two_name_market, [Shock(-0.2, 0.1)])


@pytest.mark.parametrize(
    ("leg", "market_kwargs", "fragments"),
    [
        ('underlying = "ZZZ"\n', {}, ["leg 2 ('b')", "field 'underlying'", "'ZZZ'", "no market data"]),
        ("beta_weighted = true\n", {}, ["leg 2 ('b')", "field 'beta_weighted'", "sets no `index`"]),
        ("beta_weighted = true\n", {"index": "IDX", "beta": {"AAA": 1.1}}, ["leg 2 ('b')", "no beta", "BBB"]),
    ],
)
def test_stress_errors_name_the_file_and_the_leg(
    tmp_path: Path, two_name_book: Book, leg: str, market_kwargs: dict, fragments: list[str]
) -> None:
    path = write(
        tmp_path,
        f'name = "x"\n[[legs]]\nlabel = "a"\nspot_pct = -1\n[[legs]]\nlabel = "b"\nspot_pct = -2\n{leg}',
    )
    market = make_market({"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0}, **market_kwargs)
    for check in (
        lambda: run_stress(two_name_book, market, path),
        lambda: sc.check_stress(two_name_book, market, load_stress(path)),
    ):
        with pytest.raises(ValueError) as info:
            check()
        assert str(info.value).startswith(f"{path}: leg 2")
        for fragment in fragments:
            assert fragment in str(info.value)


@pytest.mark.parametrize(("suffix", "magic"), [("pdf", b"%PDF-"), ("svg", b"<?xml"), ("png", b"\x89PNG")])
def test_heatmap_writes_the_format_its_suffix_names(
    tmp_path: Path, two_name_book, two_name_market, suffix, magic
) -> None:
    grid = scenario_grid(two_name_book, two_name_market, spot_shocks=[-0.1, 0.0, 0.1], vol_shocks=[0.0, 0.05])
    assert heatmap(grid, tmp_path / f"g.{suffix.upper()}").read_bytes().startswith(magic)


def test_heatmap_refuses_an_unknown_suffix(tmp_path: Path, two_name_book, two_name_market) -> None:
    grid = scenario_grid(two_name_book, two_name_market, spot_shocks=[0.0], vol_shocks=[0.0])
    for name in ("g.jpg", "g"):
        with pytest.raises(ValueError, match=r"a figure is written as \.png, \.pdf or \.svg"):
            heatmap(grid, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_heatmap_title_names_what_was_shocked_the_date_and_the_currency(two_name_book) -> None:
    market = make_market(
        {"AAA": 100.0, "BBB": 50.0, "IDX": 4000.0}, beta={"AAA": 1.2, "BBB": 0.8}, index="IDX"
    )
    one = scenario_grid(two_name_book, market, spot_shocks=[0.0], vol_shocks=[0.0], underlying="AAA", days=2)
    title = sc.heatmap_title(one)
    assert "AAA only" in title and "(book)" not in title and "2 day(s) forward" in title
    assert f"valued {VALUATION}" in title and "currency" in title
    beta = scenario_grid(two_name_book, market, spot_shocks=[0.0], vol_shocks=[0.0], beta_weighted=True)
    assert "all underlyings, spot shocks are index moves x beta" in sc.heatmap_title(beta)


def test_points_pnl_moves_each_underlying_its_own_way():
    """points_pnl equals scenario_pnl run one underlying at a time (P&L is additive across
    underlyings: each underlying's options see only their own spot and vol)."""
    from optmm.risk.scenarios import points_pnl

    book = Book.load(EXAMPLES / "book.csv")
    market = Market.load(EXAMPLES / "market.toml")
    unds = book.underlyings()
    rng = np.random.default_rng(7)
    spot = pd.DataFrame(rng.uniform(-0.1, 0.1, (4, len(unds))), columns=unds)
    vol = pd.DataFrame(rng.uniform(-0.05, 0.05, (4, len(unds))), columns=unds)
    got = points_pnl(book, market, spot, vol, days=1.0)
    for i in range(4):
        for u in unds:
            one = scenario_pnl(book, market, [Shock(spot.at[i, u], vol.at[i, u], 1.0, underlying=u)])
            assert got.at[i, u] == pytest.approx(one.at[0, u], rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(got["book"], got[unds].sum(axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="scenario 2"):
        bad = spot.copy()
        bad.iloc[2, 0] = -1.5
        points_pnl(book, market, bad, vol, where=lambda g: f"scenario {g}")
