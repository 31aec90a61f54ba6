"""Exposures, grids, stresses and historical points on contract terms, and the one revaluation path.

The market gives every contract plain terms today; :mod:`optmm.pricing` is monkeypatched here to give
cash dividends to one underlying and the American style to another. The references are direct calls
of the pricing engines (``american_price``, ``bsm_price(dividends=)``, ``bsm_price``) one position
at a time: a straightforward computation that shares nothing with the engine but the engines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import RISK_VALUATION as VALUATION
from builders import make_book, skew_surface

import optmm.pricing as pricing
from optmm.book import Book, Kind
from optmm.greeks import american_greeks, american_price, bsm_greeks, bsm_price
from optmm.market import Market, Sticky
from optmm.risk import exposures, run_stress, scenario_grid
from optmm.risk.scenarios import Shock, Stress, points_pnl, scenario_pnl

SPOTS = (-0.15, 0.0, 0.08)
VOLS = (-0.04, 0.0, 0.06)
DIV_TIMES = np.array([0.02, 0.3])  # BBB's cash dividends: one goes ex within a 10-day shock
DIV_AMOUNTS = np.array([0.8, 0.9])


def market(sticky: Sticky = Sticky.STRIKE) -> Market:
    names = ("AAA", "BBB", "CCC")
    return Market(
        valuation=VALUATION,
        spot={"AAA": 100.0, "BBB": 50.0, "CCC": 80.0},
        rate={u: 0.04 for u in names},
        div_yield={"AAA": 0.01, "BBB": 0.0, "CCC": 0.02},
        surface={u: skew_surface() for u in names},
        beta={},
        index=None,
        sticky=sticky,
        source="test",
    )


def book() -> Book:
    return make_book(
        [
            ("AAA", Kind.PUT, 105.0, "2024-09-20", 10),  # American
            ("AAA", Kind.CALL, 95.0, "2024-06-21", -6),
            ("AAA", Kind.PUT, 105.0, "2024-09-20", 4),  # same contract as the first
            ("AAA", Kind.STOCK, 0.0, None, -300),
            ("BBB", Kind.CALL, 48.0, "2024-06-21", 12),  # cash dividends
            ("BBB", Kind.PUT, 52.0, "2024-12-20", -9, 100.0, 0.35),
            ("BBB", Kind.CALL, 55.0, "2024-03-08", 20),  # expires within the 10-day shock
            ("CCC", Kind.CALL, 80.0, "2024-06-21", 7),  # plain
            ("CCC", Kind.PUT, 70.0, "2025-01-17", -5),
        ]
    )


@pytest.fixture
def terms(monkeypatch: pytest.MonkeyPatch) -> None:
    """AAA's options American, BBB on cash dividends, CCC plain."""
    real_carry = pricing.carry

    def carry(market_: Market, underlyings) -> pricing.Carry:
        c = real_carry(market_, underlyings)
        times = tuple(DIV_TIMES if u == "BBB" else t for u, t in zip(c.underlyings, c.div_times, strict=True))
        amounts = tuple(
            DIV_AMOUNTS if u == "BBB" else a for u, a in zip(c.underlyings, c.div_amounts, strict=True)
        )
        return pricing.Carry(c.underlyings, c.rate, c.q, times, amounts)

    def american_flags(market_: Market, underlying, style=None) -> np.ndarray:
        return np.asarray(underlying) == "AAA"

    monkeypatch.setattr(pricing, "carry", carry)
    monkeypatch.setattr(pricing, "american_flags", american_flags)


def _dividends(u: str, elapsed: float, special: bool = True):
    if u != "BBB" or not special:
        return None
    keep = DIV_TIMES - elapsed > 0.0
    return (DIV_TIMES - elapsed)[keep], DIV_AMOUNTS[keep]


def direct_price(m: Market, u: str, s, k, t, v, call, elapsed: float = 0.0, special: bool = True) -> float:
    """One option on its terms (``special``: those of the ``terms`` fixture, else plain), by the
    engine of its kind, directly."""
    r, q = m.rate[u], m.div_yield[u]
    if u == "AAA" and special:
        return float(american_price(s, k, t, r, q, v, call))
    return float(bsm_price(s, k, t, r, q, v, call, dividends=_dividends(u, elapsed, special)))


def base_vol(m: Market, b: Book, i: int) -> float:
    t = float(m.year_fraction(b.expiry[i : i + 1])[0])
    if not np.isnan(b.vol[i]):
        return float(b.vol[i])
    return float(m.vols(b.underlying[i], np.array([b.strike[i]]), np.array([t]))[0]) if t > 0 else 0.0


def reference_pnl(m: Market, b: Book, spot, vol, days: float, special: bool = True) -> dict[str, float]:
    """P&L per underlying of the book when each underlying moves by ``spot[u]``, ``vol[u]``, one
    position at a time."""
    out = dict.fromkeys(sorted(set(b.underlying)), 0.0)
    dt = days / 365.0
    for i in range(len(b)):
        u = b.underlying[i]
        qm = b.quantity[i] * b.multiplier[i]
        s0 = m.spot[u]
        if b.kind[i] == Kind.STOCK:
            out[u] += qm * s0 * spot[u]
            continue
        k, call = b.strike[i], bool(b.kind[i] == Kind.CALL)
        t = float(m.year_fraction(b.expiry[i : i + 1])[0])
        v0 = base_vol(m, b, i)
        base = direct_price(m, u, s0, k, t, v0, call, special=special)
        if np.isnan(b.vol[i]) and t > 0 and m.sticky is Sticky.MONEYNESS:
            v0 = float(m.vols(u, np.array([k]), np.array([t]), spot_shift=spot[u])[0])
        price = direct_price(
            m, u, s0 * (1 + spot[u]), k, t - dt, max(v0 + vol[u], 0.0), call, elapsed=dt, special=special
        )
        out[u] += qm * (price - base)
    return out


# --------------------------------------------------------------------------------------------------
# exposures


def test_exposures_price_each_contract_on_its_terms(terms: None) -> None:
    m, b = market(), book()
    pos = exposures(b, m).positions
    for i in range(len(b)):
        if b.kind[i] == Kind.STOCK:
            continue
        u, k, call = b.underlying[i], b.strike[i], bool(b.kind[i] == Kind.CALL)
        t = float(m.year_fraction(b.expiry[i : i + 1])[0])
        v = base_vol(m, b, i)
        r, q = m.rate[u], m.div_yield[u]
        if u == "AAA":
            g = american_greeks(m.spot[u], k, t, r, q, v, call)
        else:
            g = bsm_greeks(m.spot[u], k, t, r, q, v, call, dividends=_dividends(u, 0.0))
        qm = b.quantity[i] * b.multiplier[i]
        assert pos["price"].iloc[i] == pytest.approx(float(g.price), rel=1e-13, abs=1e-13), i
        assert pos["delta_shares"].iloc[i] == pytest.approx(qm * float(g.delta), rel=1e-12, abs=1e-12), i
        assert pos["vega_per_vol_point"].iloc[i] == pytest.approx(
            qm * float(g.vega) / 100, rel=1e-12, abs=1e-12
        )
    # the American put is worth more than its European twin, the dividend call less than without
    eu = bsm_price(
        100.0,
        105.0,
        float(m.year_fraction(np.datetime64("2024-09-20"))),
        0.04,
        0.01,
        base_vol(m, b, 0),
        False,
    )
    assert pos["price"].iloc[0] > float(eu)


def test_plain_rows_are_unchanged_when_others_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    m, b = market(), book()
    plain = exposures(b, m).positions
    plain_grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=3.0)
    real_carry, real_flags = pricing.carry, pricing.american_flags
    with monkeypatch.context() as mp:
        mp.setattr(
            pricing, "american_flags", lambda market_, underlying, style=None: np.asarray(underlying) == "AAA"
        )
        special = exposures(b, m).positions
        special_grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=3.0)
    assert pricing.carry is real_carry and pricing.american_flags is real_flags
    rows = b.underlying != "AAA"
    pd.testing.assert_frame_equal(plain[rows], special[rows], check_exact=True)
    for u in ("BBB", "CCC"):
        np.testing.assert_array_equal(plain_grid.matrix(u).to_numpy(), special_grid.matrix(u).to_numpy())
    assert not np.array_equal(plain_grid.matrix("AAA").to_numpy(), special_grid.matrix("AAA").to_numpy())


# --------------------------------------------------------------------------------------------------
# grids, stresses and historical points on contract terms


@pytest.mark.parametrize("sticky", [Sticky.STRIKE, Sticky.MONEYNESS])
@pytest.mark.parametrize("days", [0.0, 10.0])
def test_grid_prices_contracts_on_their_terms(terms: None, sticky: Sticky, days: float) -> None:
    m, b = market(sticky), book()
    grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=days)
    for a, s in enumerate(SPOTS):
        for c, v in enumerate(VOLS):
            want = reference_pnl(m, b, dict.fromkeys(m.spot, s), dict.fromkeys(m.spot, v), days)
            for u, value in want.items():
                got = grid.matrix(u).iloc[a, c]
                assert got == pytest.approx(value, rel=1e-11, abs=1e-7), (u, s, v)


def test_stress_and_points_price_contracts_on_their_terms(terms: None) -> None:
    m, b = market(), book()
    legs = (Shock(-0.1, 0.05, days=10.0), Shock(0.05, -0.02, days=10.0, underlying="BBB"))
    result = run_stress(b, m, Stress(name="s", description="", legs=legs))
    for g, leg in enumerate(legs):
        moved = {u: (leg.underlying in (None, u)) for u in m.spot}
        want = reference_pnl(
            m, b, {u: leg.spot * moved[u] for u in m.spot}, {u: leg.vol * moved[u] for u in m.spot}, 10.0
        )
        for u, value in want.items():
            assert result.table[u].iloc[g] == pytest.approx(value, rel=1e-11, abs=1e-7), (g, u)
    rng = np.random.default_rng(5)
    spot = pd.DataFrame(rng.normal(0, 0.05, (4, 3)), columns=["AAA", "BBB", "CCC"])
    vol = pd.DataFrame(rng.normal(0, 0.02, (4, 3)), columns=["AAA", "BBB", "CCC"])
    got = points_pnl(b, m, spot, vol, days=10.0)
    for g in range(4):
        want = reference_pnl(m, b, spot.iloc[g].to_dict(), vol.iloc[g].to_dict(), 10.0)
        for u, value in want.items():
            assert got[u].iloc[g] == pytest.approx(value, rel=1e-11, abs=1e-7), (g, u)


# --------------------------------------------------------------------------------------------------
# the one revaluation path


def random_book(rng: np.random.Generator, n: int) -> Book:
    rows = []
    for i in range(n):
        u = str(rng.choice(["AAA", "BBB", "CCC"]))
        if i % 11 == 0:
            rows.append((u, Kind.STOCK, 0.0, None, float(rng.integers(-300, 300))))
            continue
        expiry = str(rng.choice(["2024-03-04", "2024-04-19", "2024-09-20", "2025-06-20"]))
        strike = float(np.round(rng.uniform(0.7, 1.3) * {"AAA": 100.0, "BBB": 50.0, "CCC": 80.0}[u], 0))
        kind = Kind.CALL if rng.random() < 0.5 else Kind.PUT
        row = (u, kind, strike, expiry, float(rng.integers(-30, 31)))
        if rng.random() < 0.1:
            row = (*row, 100.0, float(rng.choice([0.0, 0.3])))
        rows.append(row)
    return make_book(rows)


@pytest.mark.parametrize("sticky", [Sticky.STRIKE, Sticky.MONEYNESS])
def test_revaluation_matches_a_per_position_reference(sticky: Sticky, rng: np.random.Generator) -> None:
    """Random plain books: the grid and historical points against bsm_price one position at a time."""
    m = market(sticky)
    for _ in range(3):
        b = random_book(rng, 60)
        days = float(rng.choice([0.0, 5.0]))
        grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=days)
        scale = float(np.sum(np.abs(b.quantity * b.multiplier))) * 100.0  # ~ gross notional
        for a, s in enumerate(SPOTS):
            for c, v in enumerate(VOLS):
                want = reference_pnl_plain(m, b, s, v, days)
                for u, value in want.items():
                    assert abs(grid.matrix(u).iloc[a, c] - value) <= 1e-12 * scale, (u, s, v)
        spot = pd.DataFrame(rng.normal(0, 0.04, (3, 3)), columns=["AAA", "BBB", "CCC"])
        vol = pd.DataFrame(rng.normal(0, 0.02, (3, 3)), columns=["AAA", "BBB", "CCC"])
        got = points_pnl(b, m, spot, vol, days=days)
        for g in range(3):
            want = reference_pnl(m, b, spot.iloc[g].to_dict(), vol.iloc[g].to_dict(), days, special=False)
            for u, value in want.items():
                assert abs(got[u].iloc[g] - value) <= 1e-12 * scale, (g, u)


def reference_pnl_plain(m: Market, b: Book, s: float, v: float, days: float) -> dict[str, float]:
    return reference_pnl(m, b, dict.fromkeys(m.spot, s), dict.fromkeys(m.spot, v), days, special=False)


def test_one_contract_cells_are_bsm_price_to_the_bit() -> None:
    """A book of one contract per underlying: each cell's P&L is units x (bsm_price at the cell -
    bsm_price today), to the bit (the kernel's hoisted arithmetic is bsm_price's)."""
    m = market()
    b = make_book(
        [("AAA", Kind.PUT, 97.0, "2024-07-19", 3), ("CCC", Kind.CALL, 85.0, "2024-04-19", -2, 50.0, 0.27)]
    )
    grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=2.0)
    for i, u in enumerate(("AAA", "CCC")):
        k, call = b.strike[i], bool(b.kind[i] == Kind.CALL)
        t = float(m.year_fraction(b.expiry[i : i + 1])[0])
        v0 = base_vol(m, b, i)
        r, q = m.rate[u], m.div_yield[u]
        base = bsm_price(m.spot[u], k, t, r, q, v0, call)
        s = m.spot[u] * (1.0 + np.array(SPOTS))[:, None]
        v = np.maximum(v0 + np.array(VOLS), 0.0)[None, :]
        want = b.quantity[i] * b.multiplier[i] * (bsm_price(s, k, t - 2.0 / 365.0, r, q, v, call) - base)
        np.testing.assert_array_equal(grid.matrix(u).to_numpy(), want)


@pytest.mark.parametrize("sticky", [Sticky.STRIKE, Sticky.MONEYNESS])
def test_grid_stress_and_points_agree_on_the_same_scenario(sticky: Sticky, rng: np.random.Generator) -> None:
    """A grid cell, a stress leg, a shock and a historical point that move every underlying alike
    are the same scenario: the same figures to the bit (one revaluation path, the same order)."""
    m, b = market(sticky), random_book(rng, 80)
    grid = scenario_grid(b, m, spot_shocks=SPOTS, vol_shocks=VOLS, days=4.0)
    legs = tuple(Shock(s, v, days=4.0) for s in SPOTS for v in VOLS)
    stress = run_stress(b, m, Stress(name="all", description="", legs=legs)).table
    shocks = scenario_pnl(b, m, legs)
    names = sorted(m.spot)
    spot = pd.DataFrame([[s] * 3 for s in SPOTS for _ in VOLS], columns=names)
    vol = pd.DataFrame([[v] * 3 for _ in SPOTS for v in VOLS], columns=names)
    points = points_pnl(b, m, spot, vol, days=4.0)
    for u in names:
        cells = grid.matrix(u).to_numpy().reshape(-1)
        np.testing.assert_array_equal(stress[u].to_numpy(), cells)
        np.testing.assert_array_equal(shocks[u].to_numpy(), cells)
        np.testing.assert_array_equal(points[u].to_numpy(), cells)


def test_helpers_number_as_numpy_and_pandas_do(rng: np.random.Generator) -> None:
    from optmm.risk._reval import dense_codes, float_codes, int_codes, smile_points, stable_order

    keys = rng.integers(-(2**63), 2**63 - 1, 3000, dtype=np.int64)[rng.integers(0, 3000, 20000)]
    codes, count = int_codes(keys)
    want, uniq = pd.factorize(keys)
    np.testing.assert_array_equal(codes, want)
    assert count == len(uniq)

    for x in (
        rng.choice(rng.uniform(1.0, 900.0, 3000), 20000),  # the hash table grows past 1,024 slots
        np.array([0.0, -0.0, np.nan, 1.5, np.nan, 1.5]),
        np.zeros(0),
    ):
        codes, count = float_codes(x)
        want, uniq = pd.factorize(x + 0.0, use_na_sentinel=False)  # -0.0 + 0.0 is 0.0
        np.testing.assert_array_equal(codes, want)
        assert count == len(uniq)

    for values in (
        rng.integers(-5, 40, 1000),
        rng.integers(-(10**15), 10**15, 500),
        np.zeros(0, dtype=np.int64),
    ):
        uniq, codes = dense_codes(values)
        want_u, want_c = np.unique(values, return_inverse=True)
        np.testing.assert_array_equal(uniq, want_u)
        np.testing.assert_array_equal(codes, want_c.reshape(-1))
    codes = rng.integers(0, 7, 2000)
    np.testing.assert_array_equal(stable_order(codes, 7), np.argsort(codes, kind="stable"))
    u = rng.integers(0, 3, 3000)
    t = rng.choice([0.1, 0.25, 1.0], 3000)
    k = rng.choice([90.0, 100.0, -0.0, 0.0, 110.0], 3000)
    first, of_row = smile_points(u, t, k)
    # each row's point is a row with the same (underlying, t, strike), and points are distinct
    np.testing.assert_array_equal(u[first][of_row], u)
    np.testing.assert_array_equal(t[first][of_row], t)
    np.testing.assert_array_equal(k[first][of_row], k)
    assert len({(u[i], t[i], k[i]) for i in first}) == first.size == len(set(zip(u, t, k + 0.0, strict=True)))


@pytest.mark.parametrize("n_b", [7, 10**9])  # a table of every pair; hashing
def test_pair_codes_number_pairs_in_order_of_first_appearance(rng: np.random.Generator, n_b: int) -> None:
    from optmm.risk._reval import pair_codes

    a = rng.integers(0, 50, 20000)
    b = rng.integers(0, 7, 20000) * (n_b // 7)
    codes, first = pair_codes(a, 50, b, n_b)
    want, uniq = pd.MultiIndex.from_arrays([a, b]).factorize()  # pandas numbers by first appearance
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_array_equal(first, [np.flatnonzero(want == c)[0] for c in range(len(uniq))])


def test_contract_keys_tell_every_field_apart(rng: np.random.Generator) -> None:
    """Rows are one contract exactly when every field is equal (floats by value: -0.0 is 0.0, every
    NaN one override), numbered by first appearance: against pandas on the fields' bits."""
    from optmm.risk._reval import contract_keys

    def bits(x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), np.nan, x + 0.0).view(np.int64)

    n = 5000
    u, kind = rng.integers(0, 4, n), rng.integers(0, 2, n)
    strike = rng.choice([90.0, 100.0, 0.0, -0.0], n)
    t = rng.choice([0.1, 0.5, -0.0, 0.0], n)
    american = rng.integers(0, 2, n).astype(bool)
    for override in (np.full(n, np.nan), np.where(rng.random(n) < 0.3, rng.choice([0.2, 0.3], n), np.nan)):
        ids, first = contract_keys(u, kind, strike, t, override, american)
        fields = [u, kind, bits(strike), bits(t), bits(override), american.astype(np.int64)]
        want, uniq = pd.MultiIndex.from_arrays(fields).factorize()
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(first, [np.flatnonzero(want == c)[0] for c in range(len(uniq))])
    ids, first = contract_keys(*(np.zeros(0) for _ in range(6)))
    assert ids.size == first.size == 0


def test_trader_units_are_the_numpy_expressions_to_the_bit(rng: np.random.Generator) -> None:
    from optmm.risk._reval import trader_units

    n = 1000
    qm = rng.integers(-5000, 5000, n).astype(float)
    s = rng.uniform(1.0, 900.0, n)
    g = {
        k: rng.normal(0.0, 3.0, n)
        for k in ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    }
    # the positions hold contracts (rows of the Greeks), some of them several times
    of_row = rng.integers(0, n, n)
    vol = rng.uniform(0.05, 0.9, n)
    got = trader_units(qm, s, of_row, g, vol)
    g = {k: v[of_row] for k, v in g.items()}
    d = qm * g["delta"]
    want = [
        qm * g["price"], d, d * s, qm * g["gamma"] * s * s / 100.0, qm * g["vega"] / 100.0,
        qm * g["theta"] / 365.0, qm * g["rho"] / 100.0, qm * g["vanna"] / 100.0, qm * g["volga"] / 10000.0,
        g["price"], vol[of_row],
    ]  # fmt: skip
    for row, expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(row, expected)
