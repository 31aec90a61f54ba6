"""Historical VaR / ES by full revaluation (optmm.risk.var.historical_var), its Dask twin
(optmm.scaleout.var) and the backtests (optmm.risk.backtest).

The reference is an independent revaluation: every position priced with ``bsm_price`` before and
after each scenario (no collapsing into contracts, no chunks, no kernels of the scenario engine),
on scenarios written out from a small seeded history. P&L agrees to 1e-9 of the book's gross
value; the backtest statistics are checked against the formulas written out with ``math.log`` and
the chi-square survival functions in closed form (chi2(1): erfc(sqrt(x / 2)); chi2(2): exp(-x / 2)).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optmm.book import Book, Kind
from optmm.greeks import bsm_price
from optmm.market import Market
from optmm.pricing import book_terms
from optmm.risk.backtest import backtest, christoffersen, kupiec, load_realised, transitions
from optmm.risk.history import History, HistoryError
from optmm.risk.var import historical_var, tail_count, var_es, var_result

MARKET_TOML = """
valuation = 2026-11-20
index = "AAA"
rate = 0.04
[underlyings.AAA]
spot = 100.0
div_yield = 0.01
vol = 0.2
[underlyings.BBB]
spot = 50.0
vol = 0.35
beta = 1.3
[underlyings.CCC]
spot = 20.0
vol = 0.5
beta = 1.6
"""

LEVELS = (0.95, 0.975, 0.99)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    path = tmp_path_factory.mktemp("var") / "market.toml"
    path.write_text(MARKET_TOML, encoding="utf-8")
    return Market.load(path)


@pytest.fixture(scope="module")
def book() -> Book:
    return Book.from_frame(
        pd.DataFrame(
            {
                "underlying": ["AAA", "AAA", "AAA", "BBB", "BBB", "BBB", "CCC", "CCC"],
                "kind": ["call", "put", "put", "call", "put", "stock", "call", "call"],
                "strike": [100, 95, 85, 55, 45, None, 20, 25],
                "expiry": [
                    "2026-12-18",
                    "2026-12-18",
                    "2027-03-19",
                    "2026-11-23",
                    "2027-01-15",
                    None,
                    "2026-12-18",
                    "2027-06-17",
                ],
                "quantity": [-20, -30, 40, 15, -25, -300, -50, 60],
                "vol": [None, None, 0.26, None, None, None, None, 0.45],
            }
        ),
        source="small book",
    )


@pytest.fixture(scope="module")
def history() -> History:
    """120 days of AAA and BBB (CCC has none: it moves by beta to the index AAA)."""
    rng = np.random.default_rng(20261120)
    n = 120
    dates = pd.bdate_range("2023-01-02", periods=n)
    rows = []
    for und, s0, v0, sd in (("AAA", 4000.0, 0.18, 0.012), ("BBB", 80.0, 0.30, 0.02)):
        spot = s0 * np.exp(np.cumsum(rng.standard_t(4, n) * sd))
        vol = np.clip(v0 + np.cumsum(rng.normal(0, 0.01, n)), 0.05, 1.5)
        rows.append(pd.DataFrame({"date": dates, "underlying": und, "spot": spot, "atm_vol": vol}))
    return History.from_frame(pd.concat(rows, ignore_index=True), source="seeded")


def oracle_pnl(
    book: Book, market: Market, spot_shift: pd.DataFrame, vol_shift: pd.DataFrame, days: float
) -> pd.DataFrame:
    """Position by position, scenario by scenario: qm x (price after - price before)."""
    out = pd.DataFrame(0.0, index=spot_shift.index, columns=sorted(set(book.underlying)))
    t0, american = book_terms(book, market)  # years to settlement, as the engine counts them
    assert not american.any()  # European options on a continuous yield: the plain formula is exact
    for i in range(len(book)):
        u = str(book.underlying[i])
        qm = float(book.quantity[i] * book.multiplier[i])
        s0, r, q = market.spot[u], market.rate[u], market.div_yield[u]
        s = spot_shift[u].to_numpy()
        if book.kind[i] == Kind.STOCK:
            out[u] += qm * s0 * s
            continue
        k, call = float(book.strike[i]), bool(book.kind[i] == Kind.CALL)
        v0 = float(book.vol[i]) if not np.isnan(book.vol[i]) else float(market.vols(u, k, t0[i]))
        base = float(bsm_price(s0, k, t0[i], r, q, v0, call))
        t1 = max(t0[i] - days / 365.0, 0.0)
        for g in range(len(s)):
            new = float(bsm_price(s0 * (1 + s[g]), k, t1, r, q, max(v0 + vol_shift[u].iloc[g], 0.0), call))
            out.iloc[g, out.columns.get_loc(u)] += qm * (new - base)
    return out


def gross(book: Book, market: Market) -> float:
    from optmm.risk import exposures

    return float(np.abs(exposures(book, market).positions["value"]).sum())


@pytest.mark.parametrize("horizon", [1, 3])
def test_var_equals_an_independent_revaluation(
    book: Book, market: Market, history: History, horizon: int
) -> None:
    sc = history.scenarios(book.underlyings(), market, horizon=horizon)
    assert sc.mapping.loc["CCC", "how"] == "beta to index"
    res = historical_var(book, market, sc, levels=LEVELS)
    ref = oracle_pnl(book, market, sc.spot_shift, sc.vol_shift, days=float(horizon))
    ref_book = ref.sum(axis=1).to_numpy()
    tol = 1e-9 * gross(book, market)
    assert res.horizon == horizon
    assert res.pnl.index.equals(sc.dates)
    np.testing.assert_allclose(res.pnl.to_numpy(), ref_book, rtol=0, atol=tol)
    np.testing.assert_allclose(res.by_underlying.to_numpy(), ref.to_numpy(), rtol=0, atol=tol)
    n = len(sc)
    losses = np.sort(-ref_book)[::-1]  # worst loss first, counted without var_es
    for a in LEVELS:
        k = math.ceil(round(n * (1 - a), 12))
        assert res.table.set_index("level").loc[a, "tail"] == k
        assert res.var(a) == pytest.approx(losses[k - 1], abs=tol)
        assert res.es(a) == pytest.approx(losses[:k].mean(), abs=tol)
        assert (res.var(a), res.es(a)) == var_es(res.pnl.to_numpy(), a)
    # the worst days, worst first, by the reference's P&L
    order = np.argsort(ref_book, kind="stable")[:10]
    assert list(res.worst["date"]) == list(sc.dates[order])
    np.testing.assert_allclose(res.worst["pnl"], ref_book[order], rtol=0, atol=tol)
    for _, row in res.worst.iterrows():  # the driver is the biggest loser of a losing day
        assert row["driver"] == ref.loc[row["date"]].idxmin()
        assert row["spot_shift"] == sc.spot_shift.loc[row["date"], row["driver"]]


def test_component_es_sums_to_es_and_is_the_tail_mean(book: Book, market: Market, history: History) -> None:
    sc = history.scenarios(book.underlyings(), market)
    before = (sc.spot_shift.copy(), sc.vol_shift.copy())
    res = historical_var(book, market, sc, levels=LEVELS)
    pd.testing.assert_frame_equal(sc.spot_shift, before[0])  # the scenarios are not modified
    pd.testing.assert_frame_equal(sc.vol_shift, before[1])
    worst_first = res.pnl.sort_values(kind="stable").index
    for a in LEVELS:
        comp = res.contributions[a]
        assert comp.sum() == pytest.approx(res.es(a), rel=1e-12)
        tail = worst_first[: tail_count(len(sc), a)]
        expected = -res.by_underlying.loc[tail].mean()
        np.testing.assert_allclose(comp.to_numpy(), expected.to_numpy(), rtol=1e-13, atol=1e-9)
    assert list(res.contributions.index) == ["AAA", "BBB", "CCC"]


def test_refusals(book: Book, market: Market, history: History) -> None:
    sc = history.scenarios(["AAA", "BBB"], market)
    with pytest.raises(ValueError, match="do not move CCC"):
        historical_var(book, market, sc)
    full = history.scenarios(book.underlyings(), market)
    with pytest.raises(ValueError, match="levels"):
        historical_var(book, market, full, levels=[95])
    with pytest.raises(ValueError, match="twice"):
        historical_var(book, market, full, levels=[0.99, 0.99])
    # a beta that takes a spot below zero: the scenario is named by its date
    crash = history.scenarios(book.underlyings(), market, proxies={"CCC": ("BBB", 60.0)})
    with pytest.raises(ValueError, match="historical scenario ending 2023-"):
        historical_var(book, market, crash)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from optmm.scaleout import client_for

    with client_for("local:2") as c:
        yield c


def test_dask_equals_local(book: Book, market: Market, history: History, client: object) -> None:
    from optmm.scaleout.var import historical_var as dist_var

    sc = history.scenarios(book.underlyings(), market, horizon=2)
    local = historical_var(book, market, sc, levels=LEVELS)
    dist = dist_var(book, market, sc, client=client, levels=LEVELS, n_blocks=5)
    scale = gross(book, market)
    pd.testing.assert_frame_equal(dist.table, local.table, rtol=1e-9, atol=1e-9 * scale)
    pd.testing.assert_series_equal(dist.pnl, local.pnl, rtol=0, atol=1e-9 * scale)
    pd.testing.assert_frame_equal(dist.contributions, local.contributions, rtol=0, atol=1e-9 * scale)
    assert list(dist.worst["date"]) == list(local.worst["date"])
    # errors come back as the local engine's
    crash = history.scenarios(book.underlyings(), market, proxies={"CCC": ("BBB", 60.0)})
    with pytest.raises(ValueError, match="historical scenario ending"):
        dist_var(book, market, crash, client=client)


# --------------------------------------------------------------------------------------------------
# Backtests


def chi2_1_sf(x: float) -> float:
    return math.erfc(math.sqrt(x / 2.0))


def test_kupiec_by_hand() -> None:
    n, x, p = 250, 7, 0.01
    lr = -2 * ((n - x) * math.log(1 - p) + x * math.log(p)) + 2 * (
        (n - x) * math.log(1 - x / n) + x * math.log(x / n)
    )
    got, pv = kupiec(n, x, 0.99)
    assert got == pytest.approx(lr, rel=1e-12)
    assert pv == pytest.approx(chi2_1_sf(lr), rel=1e-10)
    # no exception: the second term is 0 (0 ln 0 = 0)
    got0, _ = kupiec(250, 0, 0.99)
    assert got0 == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)
    # exactly the expected count: no evidence against the model
    assert kupiec(200, 2, 0.99) == (0.0, 1.0)


def test_christoffersen_by_hand() -> None:
    hits = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    n00, n01, n10, n11 = transitions(hits)
    assert (n00, n01, n10, n11) == (10, 3, 3, 3)
    pi01, pi11, pi = 3 / 13, 3 / 6, 6 / 19
    lr = -2 * (13 * math.log(1 - pi) + 6 * math.log(pi)) + 2 * (
        10 * math.log(1 - pi01) + 3 * math.log(pi01) + 3 * math.log(1 - pi11) + 3 * math.log(pi11)
    )
    got, pv = christoffersen(hits)
    assert got == pytest.approx(lr, rel=1e-12)
    assert pv == pytest.approx(chi2_1_sf(lr), rel=1e-10)


def test_backtest_conditional_coverage_and_exceptions() -> None:
    dates = pd.bdate_range("2024-01-01", periods=20)
    pnl = pd.Series(np.where(np.arange(20) % 6 == 2, -120.0, 10.0), index=dates)
    var = pd.Series(100.0, index=dates)
    var.iloc[8] = 130.0  # 2024-01-11: the loss of 120 is within that day's VaR
    bt = backtest(pnl, var, 0.95)
    assert bt.exceptions == 2 and bt.days == 20 and bt.expected == 1.0
    assert list(bt.exception_dates.strftime("%Y-%m-%d")) == ["2024-01-03", "2024-01-19"]
    assert bt.kupiec_lr == kupiec(20, 2, 0.95)[0]
    assert bt.independence_lr == christoffersen((np.arange(20) % 6 == 2) & (np.arange(20) != 8))[0]
    assert bt.cc_lr == pytest.approx(bt.kupiec_lr + bt.independence_lr, rel=1e-15)
    assert bt.cc_p == pytest.approx(math.exp(-bt.cc_lr / 2.0), rel=1e-10)
    # a loss equal to the VaR is not an exception
    assert backtest(pd.Series([-100.0], index=dates[:1]), 100.0, 0.99).exceptions == 0
    with pytest.raises(ValueError, match="dates"):
        backtest(pnl, var.iloc[1:], 0.95)


def test_load_realised(tmp_path: Path) -> None:
    good = tmp_path / "r.csv"
    good.write_text("date,pnl\n2024-01-03,-5\n2024-01-02,7.5\n", encoding="utf-8")
    s = load_realised(good)
    assert list(s.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"] and list(s) == [7.5, -5.0]
    bad = tmp_path / "b.csv"
    bad.write_text("date,pnl\n2024-01-02,1\n2024-01-02,2\n", encoding="utf-8")
    with pytest.raises(HistoryError, match=r"b.csv: row 2: field 'date': 2024-01-02 is given twice"):
        load_realised(bad)
    bad.write_text("date,pnl\n2024-01-02,x\n", encoding="utf-8")
    with pytest.raises(HistoryError, match=r"row 1: field 'pnl': 'x' is not a number"):
        load_realised(bad)
    bad.write_text("day,pnl\n2024-01-02,1\n", encoding="utf-8")
    with pytest.raises(HistoryError, match=r"row 0: field 'date': missing column"):
        load_realised(bad)


# --------------------------------------------------------------------------------------------------
# var_result on arbitrary P&L (hypothesis)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 60), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 2)),
    )
)
def test_components_add_up_and_es_is_at_least_var(parts: np.ndarray) -> None:
    dates = pd.date_range("2020-01-01", periods=parts.shape[0], name="date")
    frame = pd.DataFrame(parts, index=dates, columns=[f"U{j}" for j in range(parts.shape[1])])
    frame["book"] = parts.sum(axis=1)
    res = var_result(frame, levels=LEVELS)
    scale = max(1.0, float(np.abs(parts).sum()))
    for a in LEVELS:
        assert res.es(a) >= res.var(a)
        assert abs(res.contributions[a].sum() - res.es(a)) <= 1e-12 * scale
    # the worst days are the lowest book P&Ls, in order
    assert list(res.worst["pnl"]) == sorted(frame["book"])[: min(10, len(frame))]
