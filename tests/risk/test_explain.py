"""P&L explain (optmm.risk.explain): the actual P&L by full revaluation and its Taylor explanation.

References: :func:`optmm.greeks.bsm_price` and :func:`optmm.greeks.bsm_greeks` called directly (the
oracle does not go through :func:`optmm.risk.exposures` or its trader units); the third-order terms
of the Taylor expansion (speed, ultima) and the second derivative in time by central finite
differences of those.

Tolerances, from the Taylor argument: with dS and dsigma of order e and dt of order e^2, the seven
terms are the expansion of the value to second order, so the residual is the third-order remainder.
For a pure move of one variable the remainder's leading term is known (speed dS^3/6, ultima
dsigma^3/6, V_tt dt^2/2) and the next one is smaller by a factor of order dS/S (or dsigma/sigma,
dt/t): the tests compare the residual with its leading term to 5% for moves of 0.5% of spot, 0.5 vol
point and 1 day on a 105-day option, where that factor is below 2%.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm import Book, Market
from optmm.book import BookError, Kind
from optmm.greeks import bsm_greeks, bsm_price
from optmm.market import Sticky
from optmm.risk.explain import COLUMNS, TERMS, TOTAL, Trades, pnl_explain
from optmm.surface import FlatSurface

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scenarios" / "examples"
DAY0 = np.datetime64("2026-01-02")
EXPIRY = np.datetime64("2026-04-17")  # 105 days after DAY0
S0, VOL0, R0, Q0 = 100.0, 0.25, 0.03, 0.01
QTY, MULT = 10.0, 100.0


def market(
    *, spot: float = S0, vol: float = VOL0, rate: float = R0, day: np.datetime64 = DAY0, name: str = "m"
) -> Market:
    return Market(
        valuation=day,
        spot={"AAA": spot, "BBB": 50.0},
        rate={"AAA": rate, "BBB": 0.03},
        div_yield={"AAA": Q0, "BBB": 0.0},
        surface={"AAA": FlatSurface(vol), "BBB": FlatSurface(0.40)},
        sticky=Sticky.STRIKE,
        source=f"{name}.toml",
    )


def one_call(kind: Kind = Kind.CALL, strike: float = 100.0) -> Book:
    return Book(
        id=np.array(["c1"], dtype=object),
        underlying=np.array(["AAA"], dtype=object),
        kind=np.array([kind], dtype=np.int8),
        strike=np.array([strike]),
        expiry=np.array([EXPIRY]),
        quantity=np.array([QTY]),
        multiplier=np.array([MULT]),
        vol=np.array([np.nan]),
        source="one.csv",
    )


def small_book() -> Book:
    return Book.from_frame(
        pd.DataFrame(
            {
                "id": ["c1", "p1", "c2", "s1", "p2"],
                "underlying": ["AAA", "AAA", "AAA", "AAA", "BBB"],
                "kind": ["call", "put", "call", "stock", "put"],
                "strike": [100.0, 95.0, 110.0, None, 50.0],
                "expiry": ["2026-04-17", "2026-04-17", "2026-07-17", "", "2026-04-17"],
                "quantity": [10.0, -15.0, 20.0, -300.0, 8.0],
            }
        ),
        source="small.csv",
    )


def t_years(day: np.datetime64) -> float:
    return float((EXPIRY - day).astype(np.int64)) / 365.0


def price(spot: float = S0, vol: float = VOL0, t: float | None = None, rate: float = R0) -> float:
    t = t_years(DAY0) if t is None else t
    return float(bsm_price(spot, 100.0, t, rate, Q0, vol, True))


def greek(name: str, spot: float = S0, vol: float = VOL0) -> float:
    return float(getattr(bsm_greeks(spot, 100.0, t_years(DAY0), R0, Q0, vol, True), name))


def residual(before: Market, after: Market, book: Book | None = None) -> tuple[pd.Series, float]:
    ex = pnl_explain(book or one_call(), before, after)
    row = ex.table.loc[TOTAL]
    return row, float(row["unexplained"])


# --------------------------------------------------------------------------------------------------
# the terms, one variable at a time


def test_pure_spot_move_is_delta_gamma_to_third_order() -> None:
    ds = 0.005 * S0
    row, res = residual(market(), market(spot=S0 + ds))
    qm = QTY * MULT
    assert row["actual"] == pytest.approx(qm * (price(S0 + ds) - price()), rel=1e-12)
    assert row["delta"] == pytest.approx(qm * greek("delta") * ds, rel=1e-12)
    assert row["gamma"] == pytest.approx(qm * 0.5 * greek("gamma") * ds**2, rel=1e-12)
    for name in ("vega", "theta", "vanna", "volga", "rho"):
        assert row[name] == 0.0
    h = 1e-3 * S0
    speed = (greek("gamma", S0 + h) - greek("gamma", S0 - h)) / (2 * h)
    assert res == pytest.approx(qm * speed * ds**3 / 6.0, rel=0.05)
    assert abs(res) < 1e-4 * abs(row["actual"])


def test_pure_vol_move_is_vega_volga_to_third_order() -> None:
    dv = 0.005
    row, res = residual(market(), market(vol=VOL0 + dv))
    qm = QTY * MULT
    assert row["actual"] == pytest.approx(qm * (price(vol=VOL0 + dv) - price()), rel=1e-12)
    assert row["vega"] == pytest.approx(qm * greek("vega") * dv, rel=1e-12)
    assert row["volga"] == pytest.approx(qm * 0.5 * greek("volga") * dv**2, rel=1e-12)
    for name in ("delta", "gamma", "theta", "vanna", "rho"):
        assert row[name] == 0.0
    h = 1e-3
    ultima = (greek("volga", vol=VOL0 + h) - greek("volga", vol=VOL0 - h)) / (2 * h)
    assert res == pytest.approx(qm * ultima * dv**3 / 6.0, rel=0.05)


def test_pure_time_is_theta_to_second_order_in_time() -> None:
    day1 = DAY0 + np.timedelta64(1, "D")
    ex = pnl_explain(one_call(), market(), market(day=day1))
    assert ex.days == 1
    row = ex.table.loc[TOTAL]
    qm = QTY * MULT
    t0, t1 = t_years(DAY0), t_years(day1)
    assert row["actual"] == pytest.approx(qm * (price(t=t1) - price(t=t0)), rel=1e-12)
    assert row["theta"] == pytest.approx(qm * greek("theta") / 365.0, rel=1e-12)
    for name in ("delta", "gamma", "vega", "vanna", "volga", "rho"):
        assert row[name] == 0.0
    h = 1.0 / 365.0
    v_tt = (price(t=t0 + h) - 2 * price(t=t0) + price(t=t0 - h)) / h**2
    assert row["unexplained"] == pytest.approx(qm * 0.5 * v_tt * (t0 - t1) ** 2, rel=0.05)


def test_rate_and_cross_terms() -> None:
    """rho dr; and vanna dS dsigma as a cross term: its size, and that the residual of a joint spot and
    vol move is third order (halving both divides it by about 8: measured 7.9)."""
    qm = QTY * MULT
    row, _ = residual(market(), market(rate=R0 + 0.0001))
    assert row["rho"] == pytest.approx(qm * greek("rho") * 0.0001, rel=1e-12)
    ds, dv = 0.004 * S0, 0.004
    row, res = residual(market(), market(spot=S0 + ds, vol=VOL0 + dv))
    assert row["vanna"] == pytest.approx(qm * greek("vanna") * ds * dv, rel=1e-12)
    _, half = residual(market(), market(spot=S0 + ds / 2, vol=VOL0 + dv / 2))
    assert 6.0 < res / half < 10.0


def test_small_moves_leave_a_small_residual() -> None:
    """A small book, a day of small moves (1% spot, 1 vol point, 1 day, 1 bp): the residual is third
    order, well under 1% of the P&L (measured 0.2%)."""
    day1 = DAY0 + np.timedelta64(1, "D")
    before = market()
    after = dataclasses.replace(
        market(spot=S0 * 1.01, vol=VOL0 + 0.01, rate=R0 + 0.0001, day=day1),
        spot={"AAA": S0 * 1.01, "BBB": 50.0 * 0.99},
        surface={"AAA": FlatSurface(VOL0 + 0.01), "BBB": FlatSurface(0.41)},
    )
    ex = pnl_explain(small_book(), before, after)
    total = ex.table.loc[TOTAL]
    assert abs(total["unexplained"]) < 0.01 * abs(total["actual"])
    gross = ex.table.loc[TOTAL, list(TERMS)].abs().sum()
    assert abs(total["unexplained"]) < 0.01 * gross


# --------------------------------------------------------------------------------------------------
# the table


def example_explain() -> tuple[Book, object]:
    book = Book.load(EXAMPLES / "book.csv")
    ex = pnl_explain(
        book,
        Market.load(EXAMPLES / "market.toml"),
        Market.load(EXAMPLES / "market_next.toml"),
        Trades.load(EXAMPLES / "trades.csv"),
    )
    return book, ex


def test_the_terms_add_up_to_actual() -> None:
    book, ex = example_explain()
    table = ex.table
    assert tuple(table.columns) == COLUMNS
    assert list(table.index) == [*sorted(book.underlyings()), TOTAL]
    scale = table.abs().to_numpy().sum(axis=1)
    summed = table[[*TERMS, "new_trades", "unexplained"]].sum(axis=1)
    np.testing.assert_array_less(np.abs(table["actual"] - summed), 1e-13 * scale)
    underlyings = table.drop(index=TOTAL)
    pd.testing.assert_series_equal(underlyings.sum(axis=0), table.loc[TOTAL], check_names=False)
    # actual = the change of value of the positions held, by exposures, plus the trades' P&L
    pos = ex.positions
    assert table.loc[TOTAL, "actual"] == pytest.approx(
        pos["value_after"].sum() - pos["value_before"].sum() + ex.trades["pnl"].sum(), rel=1e-12
    )
    assert ex.days == 3
    assert abs(table.loc[TOTAL, "unexplained"]) > 0  # reported, not absorbed


def test_by_position_adds_up_to_the_table() -> None:
    book, ex = example_explain()
    rows = ex.by_position()
    assert list(rows["row"]) == ["held"] * len(book) + ["trade"] * 4
    assert list(rows["id"]) == [*book.id, "T-01", "T-02", "T-03", "T-04"]
    assert tuple(rows.columns[-len(COLUMNS) :]) == COLUMNS
    gross = rows[list(COLUMNS)].abs().sum(axis=1)
    summed = rows[[*TERMS, "new_trades", "unexplained"]].sum(axis=1)
    np.testing.assert_array_less(np.abs(rows["actual"] - summed), 1e-13 * gross + 1e-300)
    per_u = rows.groupby("underlying")[list(COLUMNS)].sum()
    table = ex.table.drop(index=TOTAL)
    np.testing.assert_allclose(per_u.to_numpy(), table.to_numpy(), rtol=1e-12, atol=1e-9)
    values = rows[list(COLUMNS)].to_numpy()
    assert not np.signbit(values[values == 0.0]).any()  # no -0.0 shown as a figure


def test_trades_pnl_by_hand() -> None:
    _, ex = example_explain()
    trades = ex.trades.set_index("id")
    # sold 500 SPY at 593.10; SPY is 596.5 today
    assert trades.loc["T-02", "pnl"] == pytest.approx(-500 * (596.5 - 593.10), rel=1e-12)
    # bought 20 SPY 580 puts of 2026-12-18 at 3.30; today: 25 days left, rate 4.295%, yield 1.3%, vol 15.5%
    p = float(bsm_price(596.5, 580.0, 25 / 365, 0.04295, 0.013, 0.155, False))
    assert trades.loc["T-01", "pnl"] == pytest.approx(20 * 100 * (p - 3.30), rel=1e-12)
    assert ex.table.loc["SPY", "new_trades"] == pytest.approx(
        trades.loc[["T-01", "T-02"], "pnl"].sum(), rel=1e-12
    )
    assert ex.table.loc["MSFT", "new_trades"] == 0.0


def test_a_trade_on_an_underlying_not_held() -> None:
    trades = Trades.from_frame(
        pd.DataFrame(
            {
                "underlying": ["BBB"],
                "kind": ["stock"],
                "strike": [""],
                "expiry": [""],
                "quantity": [100],
                "price": [49.5],
            }
        ),
        source="t.csv",
    )
    ex = pnl_explain(one_call(), market(), market(spot=101.0), trades)
    assert list(ex.table.index) == ["AAA", "BBB", TOTAL]
    assert ex.table.loc["BBB", "new_trades"] == pytest.approx(100 * (50.0 - 49.5), rel=1e-12)
    assert ex.table.loc["BBB", "actual"] == ex.table.loc["BBB", "new_trades"]


def test_an_option_expiring_in_between() -> None:
    """An option that expires by today's market has no vol there: no vol term; its value is intrinsic."""
    book = dataclasses.replace(one_call(), expiry=np.array([DAY0 + np.timedelta64(2, "D")]), source="x.csv")
    ex = pnl_explain(book, market(), market(spot=103.0, vol=0.30, day=DAY0 + np.timedelta64(3, "D")))
    row = ex.positions.iloc[0]
    assert row["vega"] == 0.0 and row["vanna"] == 0.0 and row["volga"] == 0.0
    assert row["value_after"] == pytest.approx(QTY * MULT * 3.0, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# bad input


def test_today_before_yesterday() -> None:
    with pytest.raises(
        ValueError, match=r"today's market m1.toml is dated 2026-01-01, before yesterday's m0.toml"
    ):
        pnl_explain(one_call(), market(name="m0"), market(day=DAY0 - np.timedelta64(1, "D"), name="m1"))


def test_underlying_missing_today() -> None:
    after = dataclasses.replace(
        market(), spot={"BBB": 50.0}, surface={"BBB": FlatSurface(0.4)}, source="today.toml"
    )
    with pytest.raises(BookError, match=r"one.csv: row 1: field 'underlying': no market data .*today.toml"):
        pnl_explain(one_call(), market(), after)


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("", "missing price"),
        ("abc", "not a number: 'abc'"),
        ("-1", "must be >= 0"),
        ("nan", "must be a finite number"),
        ("1e12", "not a plausible price"),
    ],
)
def test_bad_trade_price(tmp_path: Path, cell: str, problem: str) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        f"underlying,kind,strike,expiry,quantity,price\nAAA,call,100,2026-04-17,1,2.5\nAAA,put,90,2026-04-17,1,{cell}\n"
    )
    with pytest.raises(BookError, match=rf"trades.csv: row 2: field 'price': .*{problem}"):
        Trades.load(path)


def test_trades_file_needs_prices(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("underlying,kind,strike,expiry,quantity\nAAA,call,100,2026-04-17,1\n")
    with pytest.raises(BookError, match=r"trades.csv: row 0: field 'price': missing column"):
        Trades.load(path)
    path.write_text("underlying,kind,strike,expiry,quantity,price,Price\nAAA,stock,,,100,1,2\n")
    with pytest.raises(BookError, match=r"row 0: field 'price': duplicated column \('price' and 'Price'\)"):
        Trades.load(path)
    path.write_text("underlying,kind,strike,expiry,quantity,price\nAAA,stock,,,100,0\n")
    with pytest.raises(BookError, match=r"row 1: field 'price': must be > 0 for stock"):
        Trades.load(path)
    path.write_text("underlying,kind,strike,expiry,quantity,price\nAAA,call,100,2026-13-17,1,2\n")
    with pytest.raises(BookError, match=r"row 1: field 'expiry'"):
        Trades.load(path)


def test_trades_parquet_round_trip(tmp_path: Path) -> None:
    frame = pd.read_csv(EXAMPLES / "trades.csv", dtype=str, keep_default_na=False)
    for col in ("strike", "quantity", "multiplier", "price"):
        frame[col] = pd.to_numeric(frame[col])
    frame.to_parquet(tmp_path / "trades.parquet", index=False)
    from_csv = Trades.load(EXAMPLES / "trades.csv")
    from_pq = Trades.load(tmp_path / "trades.parquet")
    np.testing.assert_array_equal(from_csv.price, from_pq.price)
    assert len(from_pq) == 4
