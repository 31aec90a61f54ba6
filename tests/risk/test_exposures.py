"""Book exposures (optmm.risk.exposures): trader units against finite differences, vollib and hand sums.

vollib 1.0.x (``vollib.black_scholes_merton``) is the independent reference for values; the Greeks'
scaling is checked by bumping the market (spot +-1%, vol +1 point) and repricing the whole book.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pandas as pd
import pytest
from builders import RISK_VALUATION as VALUATION
from builders import make_book, make_market, years

from optmm import pricing
from optmm.book import Book, Kind
from optmm.greeks import bsm_greeks
from optmm.market import Market
from optmm.risk import EXPOSURE_COLUMNS, exposures
from optmm.surface import SVISurface

# ``optmm.risk.exposures`` is also the name of the function optmm.risk exports: fetch the module itself
ex_mod = importlib.import_module("optmm.risk.exposures")


def bump_spot(market: Market, rel: float) -> Market:
    return dataclasses.replace(market, spot={u: s * (1 + rel) for u, s in market.spot.items()})


@pytest.fixture
def book() -> Book:
    return make_book(
        [
            ("AAA", Kind.CALL, 100.0, "2024-06-21", 10),
            ("AAA", Kind.PUT, 90.0, "2024-06-21", -15),
            ("AAA", Kind.CALL, 110.0, "2025-01-17", -7, 100.0, 0.31),
            ("AAA", Kind.STOCK, 0.0, None, -400),
            ("BBB", Kind.PUT, 45.0, "2024-04-19", 25),
            ("BBB", Kind.CALL, 55.0, "2024-09-20", -12, 10.0),
            ("BBB", Kind.STOCK, 0.0, None, 300),
            ("AAA", Kind.PUT, 100.0, "2024-06-21", 4),
        ]
    )


@pytest.fixture
def market() -> Market:
    return make_market({"AAA": 100.0, "BBB": 50.0})


# --------------------------------------------------------------------------------------------------
# values against vollib, and the per-position layout


def test_values_match_vollib(book: Book, market: Market) -> None:
    from vollib.black_scholes_merton import black_scholes_merton as vl

    pos = exposures(book, market).positions
    for i in range(len(book)):
        u, qm = book.underlying[i], book.quantity[i] * book.multiplier[i]
        if book.kind[i] == Kind.STOCK:
            want = qm * market.spot[u]
        else:
            sigma = 0.25 if np.isnan(book.vol[i]) else book.vol[i]
            flag = "c" if book.kind[i] == Kind.CALL else "p"
            t = years(str(book.expiry[i]))
            want = qm * vl(flag, market.spot[u], book.strike[i], t, 0.04, sigma, 0.01)
        assert pos["value"].iloc[i] == pytest.approx(want, rel=1e-10), i


def test_positions_layout_and_trader_units(book: Book, market: Market) -> None:
    pos = exposures(book, market).positions
    assert len(pos) == len(book)
    assert list(pos["id"]) == list(book.id)
    for col in (
        "id",
        "underlying",
        "kind",
        "expiry",
        "strike",
        "quantity",
        "multiplier",
        "t",
        "vol",
        "price",
    ):
        assert col in pos.columns
    assert list(pos.columns[-len(EXPOSURE_COLUMNS) :]) == list(EXPOSURE_COLUMNS)
    assert list(pos["kind"]) == ["CALL", "PUT", "CALL", "STOCK", "PUT", "CALL", "STOCK", "PUT"]
    np.testing.assert_allclose(pos["vol"].to_numpy(), [0.25, 0.25, 0.31, np.nan, 0.25, 0.25, np.nan, 0.25])
    # every option's Greeks, scaled by hand from the kernel's plain partial derivatives
    opt = np.flatnonzero(book.kind != Kind.STOCK)
    s = np.array([market.spot[u] for u in book.underlying[opt]])
    g = bsm_greeks(
        s,
        book.strike[opt],
        market.year_fraction(book.expiry[opt]),
        0.04,
        0.01,
        pos["vol"].to_numpy()[opt],
        book.kind[opt] == Kind.CALL,
    )
    qm = (book.quantity * book.multiplier)[opt]
    want = {
        "price": g.price,
        "value": qm * g.price,
        "delta_shares": qm * g.delta,
        "delta_dollars": qm * g.delta * s,
        "gamma_dollars_1pct": qm * g.gamma * s * s / 100,
        "vega_per_vol_point": qm * g.vega / 100,
        "theta_per_day": qm * g.theta / 365,
        "rho_per_pct": qm * g.rho / 100,
        "vanna_shares_per_vol_point": qm * g.vanna / 100,
        "volga_per_vol_point2": qm * g.volga / 10000,
    }
    for col, values in want.items():
        np.testing.assert_allclose(pos[col].to_numpy()[opt], values, rtol=1e-15, atol=0, err_msg=col)


def test_stock_rows(book: Book, market: Market) -> None:
    pos = exposures(book, market).positions
    stock = pos[pos["kind"] == "STOCK"]
    np.testing.assert_array_equal(stock["delta_shares"], [-400.0, 300.0])
    np.testing.assert_array_equal(stock["delta_dollars"], [-40_000.0, 15_000.0])
    np.testing.assert_array_equal(stock["value"], [-40_000.0, 15_000.0])
    np.testing.assert_array_equal(stock["price"], [100.0, 50.0])
    for col in EXPOSURE_COLUMNS[3:]:
        assert (stock[col] == 0.0).all(), col
    assert stock["expiry"].isna().all() and (stock["t"] == 0.0).all()


def test_expired_options_follow_the_engine_edge_rules(market: Market) -> None:
    expired = make_book(
        [
            ("AAA", Kind.CALL, 90.0, "2024-02-16", 2),  # in the money
            ("AAA", Kind.PUT, 90.0, "2024-03-01", 3),  # expires today, out of the money
            ("AAA", Kind.PUT, 110.0, "2024-01-19", -1),  # in the money
        ]
    )
    pos = exposures(expired, market).positions
    np.testing.assert_array_equal(pos["value"], [2000.0, 0.0, -1000.0])
    np.testing.assert_array_equal(pos["delta_shares"], [200.0, 0.0, 100.0])
    for col in EXPOSURE_COLUMNS[3:]:
        assert (pos[col] == 0.0).all(), col
    assert (pos["t"] <= 0).all()


# --------------------------------------------------------------------------------------------------
# Greeks in trader units against bumps of the market


def test_dollar_gamma_is_the_finite_difference_of_dollar_delta() -> None:
    # Long-dated options: there the +-1% central difference itself is within 1e-4 of the derivative.
    long_book = make_book(
        [
            ("AAA", Kind.CALL, 100.0, "2026-03-20", 10),
            ("AAA", Kind.PUT, 85.0, "2026-03-20", -6),
            ("BBB", Kind.CALL, 50.0, "2025-12-19", 20),
        ]
    )
    market = make_market({"AAA": 100.0, "BBB": 50.0}, vol=0.3)
    base = exposures(long_book, market)
    up, down = (exposures(long_book, bump_spot(market, h)) for h in (0.01, -0.01))
    spot = base.by_underlying["spot"]
    # change of dollar delta for a 1% move: the extra shares, valued at today's spot
    fd = (up.by_underlying["delta_shares"] - down.by_underlying["delta_shares"]) / 2 * spot
    np.testing.assert_allclose(fd, base.by_underlying["gamma_dollars_1pct"], rtol=1e-4)


def test_dollar_gamma_richardson_for_short_dated(book: Book, market: Market) -> None:
    # Short-dated options: the +-1% difference is off by its own truncation error (~h^2); Richardson's
    # combination of +-1% and +-0.5% cancels it.
    base = exposures(book, market).positions

    def fd(h: float) -> np.ndarray:
        up = exposures(book, bump_spot(market, h)).positions["delta_shares"]
        down = exposures(book, bump_spot(market, -h)).positions["delta_shares"]
        return ((up - down) / (2 * h) * base["spot"] / 100).to_numpy()

    rich = (4 * fd(0.005) - fd(0.01)) / 3
    np.testing.assert_allclose(rich, base["gamma_dollars_1pct"], rtol=1e-5, atol=1e-9)


def test_vega_per_vol_point_is_the_value_change_for_one_point(book: Book) -> None:
    m0, m_up, m_half_up, m_half_dn = (
        make_market({"AAA": 100.0, "BBB": 50.0}, vol=v) for v in (0.25, 0.26, 0.255, 0.245)
    )
    base = exposures(book, m0).positions
    surf = ~book.has_vol_override & book.is_option  # the bump moves the surface, not an override
    dv = exposures(book, m_up).positions["value"] - base["value"]
    vega = base["vega_per_vol_point"]
    # +1 point, one-sided: vega plus half volga is exact to third order
    np.testing.assert_allclose(dv[surf], (vega + 0.5 * base["volga_per_vol_point2"])[surf], rtol=1e-3)
    np.testing.assert_allclose(dv[surf], vega[surf], rtol=5e-2)  # without volga: a few percent off
    central = exposures(book, m_half_up).positions["value"] - exposures(book, m_half_dn).positions["value"]
    np.testing.assert_allclose(central[surf], vega[surf], rtol=5e-4)
    assert (dv[~surf] == 0).all()


def test_theta_and_vanna_units(book: Book, market: Market) -> None:
    base = exposures(book, market).positions
    tomorrow = dataclasses.replace(market, valuation=VALUATION + np.timedelta64(1, "D"))
    dv = exposures(book, tomorrow).positions["value"] - base["value"]
    opt = (base["kind"] != "STOCK").to_numpy()
    np.testing.assert_allclose(dv[opt], base["theta_per_day"][opt], rtol=5e-2)
    # vanna: change of delta_shares for +1 vol point
    up = exposures(book, make_market({"AAA": 100.0, "BBB": 50.0}, vol=0.255)).positions
    dn = exposures(book, make_market({"AAA": 100.0, "BBB": 50.0}, vol=0.245)).positions
    surf = np.isnan(book.vol) & opt
    vanna = base["vanna_shares_per_vol_point"][surf]
    fd = (up["delta_shares"] - dn["delta_shares"])[surf]
    np.testing.assert_allclose(fd, vanna, rtol=1e-3, atol=1e-3 * np.abs(vanna).max())


# --------------------------------------------------------------------------------------------------
# aggregates


def test_aggregates_sum_the_positions(book: Book, market: Market) -> None:
    ex = exposures(book, market)
    pos = ex.positions
    cols = list(EXPOSURE_COLUMNS)
    assert list(ex.by_underlying.index) == ["AAA", "BBB"]
    for u in ("AAA", "BBB"):
        mine = pos[pos["underlying"] == u]
        np.testing.assert_allclose(ex.by_underlying.loc[u, cols], mine[cols].sum(), rtol=1e-14)
    assert ex.by_underlying.loc["BBB", "spot"] == 50.0
    # the book total adds what adds across underlyings; share counts of different stocks do not
    additive = [c for c in cols if c not in ("delta_shares", "vanna_shares_per_vol_point")]
    np.testing.assert_allclose(ex.total.loc["book", additive], pos[additive].sum(), rtol=1e-14)
    assert "delta_shares" not in ex.total.columns and "vanna_shares_per_vol_point" not in ex.total.columns
    assert len(ex.total) == 1
    # by expiry: (underlying, expiry) groups, stock under NaT; they add up to the underlying
    groups = {(u, None if pd.isna(e) else str(e.date())) for u, e in ex.by_expiry.index}
    assert groups == {
        ("AAA", "2024-06-21"),
        ("AAA", "2025-01-17"),
        ("AAA", None),
        ("BBB", "2024-04-19"),
        ("BBB", "2024-09-20"),
        ("BBB", None),
    }
    aaa_june = pos[(pos["underlying"] == "AAA") & (pos["expiry"] == pd.Timestamp("2024-06-21"))]
    np.testing.assert_allclose(
        ex.by_expiry.loc[("AAA", pd.Timestamp("2024-06-21")), cols], aaa_june[cols].sum(), rtol=1e-14
    )
    np.testing.assert_allclose(
        ex.by_expiry.groupby(level="underlying")[cols].sum(), ex.by_underlying[cols], rtol=1e-14
    )


def test_beta_weighted_delta_by_hand(book: Book) -> None:
    market = make_market(
        {"AAA": 100.0, "BBB": 50.0, "IDX": 5000.0}, beta={"AAA": 1.4, "BBB": 0.6}, index="IDX"
    )
    with_index = make_book(
        [
            ("AAA", Kind.CALL, 100.0, "2024-06-21", 10),
            ("BBB", Kind.PUT, 45.0, "2024-04-19", 25),
            ("BBB", Kind.STOCK, 0.0, None, 300),
            ("IDX", Kind.PUT, 4800.0, "2024-06-21", -1),
        ]
    )
    ex = exposures(with_index, market)
    dd = ex.by_underlying["delta_dollars"]
    want_dollars = 1.4 * dd["AAA"] + 0.6 * dd["BBB"] + 1.0 * dd["IDX"]
    bw = ex.beta_weighted_delta()
    assert bw.index == "IDX" and bw.index_spot == 5000.0
    assert bw.index_dollars == pytest.approx(want_dollars, rel=1e-14)
    assert bw.index_shares == pytest.approx(want_dollars / 5000.0, rel=1e-14)
    np.testing.assert_allclose(bw.by_underlying["beta"], [1.4, 0.6, 1.0])
    assert bw.by_underlying["beta_delta_index_shares"].sum() == pytest.approx(bw.index_shares, rel=1e-14)
    # the index named explicitly gives the same
    assert ex.beta_weighted_delta("IDX").index_dollars == bw.index_dollars
    # and the book total carries it, in place of share counts that do not add
    assert ex.total.loc["book", "beta_delta_index_dollars"] == pytest.approx(want_dollars, rel=1e-14)
    assert ex.total.loc["book", "beta_delta_index_shares"] == pytest.approx(want_dollars / 5000.0, rel=1e-14)


def test_beta_weighted_delta_refuses_missing_betas(book: Book) -> None:
    market = make_market(
        {"AAA": 100.0, "BBB": 50.0, "CCC": 10.0, "IDX": 5000.0}, beta={"AAA": 1.1}, index="IDX"
    )
    three = make_book(
        [
            ("AAA", Kind.STOCK, 0.0, None, 10),
            ("BBB", Kind.STOCK, 0.0, None, 10),
            ("CCC", Kind.STOCK, 0.0, None, 10),
            ("IDX", Kind.STOCK, 0.0, None, 1),
        ]
    )
    ex = exposures(three, market)
    with pytest.raises(ValueError, match="BBB, CCC"):
        ex.beta_weighted_delta()
    no_index = exposures(three, make_market({"AAA": 100.0, "BBB": 50.0, "CCC": 10.0, "IDX": 5000.0}))
    with pytest.raises(ValueError, match="index"):
        no_index.beta_weighted_delta()
    # only the index itself: no beta needed
    idx_only = exposures(make_book([("IDX", Kind.STOCK, 0.0, None, 3)]), market)
    assert idx_only.beta_weighted_delta().index_shares == pytest.approx(3.0, rel=1e-15)


# --------------------------------------------------------------------------------------------------
# vols and structure


def test_surface_vol_is_looked_up_per_position_unless_overridden() -> None:
    svi = SVISurface(
        [0.25, 1.0], a=[0.01, 0.04], b=[0.1, 0.1], rho=[-0.5, -0.4], m=[0.0, 0.0], sigma=[0.1, 0.2]
    )
    market = make_market({"AAA": 100.0}, surface={"AAA": svi})
    skewed = make_book(
        [
            ("AAA", Kind.PUT, 80.0, "2024-09-20", 1),
            ("AAA", Kind.CALL, 120.0, "2024-09-20", 1),
            ("AAA", Kind.CALL, 120.0, "2024-09-20", 1, 100.0, 0.5),
        ]
    )
    pos = exposures(skewed, market).positions
    t = years("2024-09-20")
    want = market.vols("AAA", np.array([80.0, 120.0]), np.array([t, t]))
    np.testing.assert_allclose(pos["vol"].to_numpy()[:2], want, rtol=1e-15)
    assert pos["vol"].iloc[2] == 0.5
    assert pos["vol"].iloc[0] > pos["vol"].iloc[1]  # the skew is there


def test_one_greeks_call_for_the_whole_book(book: Book, market: Market, monkeypatch) -> None:
    calls = []
    real = pricing.contract_greeks

    def counting(*args, **kwargs):
        calls.append(np.shape(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(pricing, "contract_greeks", counting)
    exposures(book, market)
    assert calls == [(6,)]  # the six options of two underlyings, at once


def test_missing_market_data_is_refused(book: Book) -> None:
    with pytest.raises(ValueError, match="BBB"):
        exposures(book, make_market({"AAA": 100.0}))


def test_inputs_are_not_mutated(book: Book, market: Market) -> None:
    saved = {f: getattr(book, f).copy() for f in ("quantity", "strike", "vol", "multiplier")}
    for f in saved:
        getattr(book, f).flags.writeable = False
    exposures(book, market)
    for f, arr in saved.items():
        np.testing.assert_array_equal(getattr(book, f), arr)


def test_empty_book(market: Market) -> None:
    ex = exposures(make_book([]), market)
    assert len(ex.positions) == 0 and len(ex.by_underlying) == 0
    assert (ex.total.to_numpy() == 0).all()


def test_non_finite_exposures_are_refused_naming_the_position(book: Book, market: Market) -> None:
    """The safety net behind the input bounds: an overflowing figure is an error naming where."""
    ex_mod = importlib.import_module("optmm.risk.exposures")  # the name optmm.risk.exposures is the function

    ex = exposures(book, market)
    columns = dict(ex._columns)
    columns["vega_per_vol_point"] = columns["vega_per_vol_point"].copy()
    columns["vega_per_vol_point"][2] = np.inf
    with pytest.raises(
        ValueError, match=r"position 'p2' \(\w+, row 3 of the book\): vega_per_vol_point is not a finite"
    ):
        ex_mod._check_finite(dataclasses.replace(ex, _make_columns=lambda: columns), rows_finite=False)
    by_u = ex.by_underlying.copy()
    by_u.iloc[1, by_u.columns.get_loc("value")] = -np.inf
    with pytest.raises(ValueError, match=rf"underlying {by_u.index[1]}: value is not a finite number"):
        ex_mod._check_finite(dataclasses.replace(ex, by_underlying=by_u), rows_finite=True)
    total = ex.total.copy()
    total["theta_per_day"] = np.nan
    with pytest.raises(ValueError, match=r"book total: theta_per_day is not a finite number"):
        ex_mod._check_finite(dataclasses.replace(ex, total=total), rows_finite=True)
    ex_mod._check_finite(ex, rows_finite=False)  # finite: passes (every position searched)


def test_overflowing_book_raises_without_a_runtime_warning(market: Market) -> None:
    # RuntimeWarnings are errors in this test configuration: this proves none is raised on the way.
    rows = [("AAA", Kind.CALL, 100.0, "2024-06-21", 1e306), ("AAA", Kind.STOCK, 0.0, None, 1e307)]
    with pytest.raises(ValueError, match=r"plausible"):
        make_book(rows)  # refused at the book's boundary; a book changed behind its back is caught later:
    huge = make_book([(*r[:4], 1.0) for r in rows])
    huge.quantity[:] = [1e306, 1e307]
    with pytest.raises(ValueError, match=r"not a finite number"):
        exposures(huge, market)


def test_aggregates_are_pandas_groupby_sums_bit_for_bit(rng: np.random.Generator) -> None:
    """The aggregates are computed without a frame of the positions; they equal pandas' groupby
    sums of that frame (compensated, in row order) to the bit, NaT expiries (stock) last."""
    rows = []
    for i in range(400):
        u = str(rng.choice(["AAA", "BBB", "CCC"]))
        if i % 9 == 0:
            rows.append((u, Kind.STOCK, 0.0, None, float(rng.integers(-500, 500))))
            continue
        expiry = str(rng.choice(["2024-03-15", "2024-06-21", "2025-01-17", "2024-02-16"]))  # one expired
        kind = Kind.CALL if rng.random() < 0.5 else Kind.PUT
        rows.append(
            (
                u,
                kind,
                float(rng.choice([80.0, 95.0, 100.0, 105.0, 120.0])),
                expiry,
                float(rng.integers(-40, 40)),
            )
        )
    book = make_book(rows)
    ex = exposures(
        book,
        make_market({"AAA": 100.0, "BBB": 97.0, "CCC": 103.0}, index="AAA", beta={"BBB": 1.2, "CCC": 0.8}),
    )
    pos = ex.positions
    cols = list(EXPOSURE_COLUMNS)
    want_u = pos.groupby("underlying", sort=True)[cols].sum()
    pd.testing.assert_frame_equal(ex.by_underlying[cols], want_u, check_exact=True)
    want_e = pos.groupby(["underlying", "expiry"], sort=True, dropna=False)[cols].sum()
    pd.testing.assert_frame_equal(ex.by_expiry, want_e, check_exact=True)
    additive = [c for c in cols if c not in ("delta_shares", "vanna_shares_per_vol_point")]
    for c in additive:
        assert ex.total[c].iloc[0] == pos[c].sum(), c
    assert "beta_delta_index_dollars" in ex.total.columns


def test_market_vols_names_a_bad_vol_in_plain_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Market.vols refuses NaN itself; this is the check behind it, for a market of the caller's making
    market = make_market({"AAA": 100.0})
    monkeypatch.setattr(Market, "vols", lambda self, u, k, t, spot_shift=0.0: np.full(np.shape(k), -0.5))
    with pytest.raises(ValueError) as err:
        ex_mod.market_vols(market, "AAA", np.array([90.0, 110.0]), np.array([0.5, 0.5]), spot_shift=0.0)
    assert str(err.value) == (
        "vol surface of 'AAA' returned vol -0.5 at strike 90.0, t 0.5 (spot shift 0.0);"
        " it must be finite and >= 0"
    )
