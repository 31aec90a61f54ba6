"""Contract terms in the market and the book: the valuation moment, AM/PM settlement, 0DTE options,
cash dividends and borrow, exercise style, ``--valuation`` on the command line.

Times are checked against hand computations of the convention: seconds of wall-clock time from the
valuation moment to the settlement moment (16:00 PM, 09:30 AM, local), / 86400 / 365.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm import pricing
from optmm.book import Book, BookError
from optmm.chain.surface import FittedSurface
from optmm.greeks import Greeks, bsm_greeks
from optmm.market import Market, MarketError
from optmm.risk import exposures
from optmm.surface import FlatSurface, SVISurface, TableSurface

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "examples"
TERMS = EXAMPLE / "terms"
NY = ZoneInfo("America/New_York")
DAY = 86400.0


def hours(h: float) -> float:
    """``h`` hours in ACT/365 years, as the convention computes it."""
    return h * 3600.0 / DAY / 365.0


def simple(**kwargs: object) -> Market:
    """One underlying X at 100, flat 20% vol, valued on 2026-11-20 (the close unless told)."""
    args: dict[str, object] = {
        "valuation": np.datetime64("2026-11-20"),
        "spot": {"X": 100.0},
        "rate": {"X": 0.04},
        "div_yield": {"X": 0.0},
        "surface": {"X": FlatSurface(0.2)},
    }
    args.update(kwargs)
    return Market(**args)  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MARKET_TOML = """\
valuation = {valuation}
rate = 0.04
{top}
[underlyings.X]
spot = 100.0
vol = 0.2
{und}
"""


def load(tmp_path: Path, valuation: str = "2026-11-20", top: str = "", und: str = "") -> Market:
    text = MARKET_TOML.format(valuation=valuation, top=top, und=und)
    return Market.load(write(tmp_path, "market.toml", text))


def one_option_book(expiry: str = "2026-11-20", **columns: str) -> Book:
    frame = {
        "underlying": ["X"],
        "kind": ["call"],
        "strike": [100.0],
        "expiry": [expiry],
        "quantity": [1.0],
    }
    frame.update({k: [v] for k, v in columns.items()})
    return Book.from_frame(pd.DataFrame(frame))


# --------------------------------------------------------------------------------------------------
# the valuation moment and the clock


def test_date_valuation_keeps_whole_day_fractions_bit_for_bit() -> None:
    m = Market.load(EXAMPLE / "market.toml")
    assert m.valuation_time == dt.datetime(2026, 11, 20, 16, 0, tzinfo=NY) and not m.is_intraday
    rng = np.random.default_rng(7)
    days = np.concatenate([np.arange(-400, 800), rng.integers(-36500, 36500, 2000)])
    expiry = m.valuation + days.astype("timedelta64[D]")  # across many daylight-saving changes
    old = days.astype(np.float64) / 365.0
    assert np.array_equal(m.year_fraction(expiry), old)
    assert np.array_equal(m.year_fraction(expiry, settlement="PM"), old)
    t = pricing.option_times(m, np.full(days.size, "AAPL", dtype=object), expiry)
    assert np.array_equal(t, old)
    # the example's surfaces keep their whole-day nodes
    assert np.array_equal(m.surface["AAPL"].expiries[:3], np.array([28, 56, 119]) / 365)


def test_offset_local_and_utc_valuations_are_one_moment(tmp_path: Path) -> None:
    expiry = np.array(["2026-11-20", "2026-11-23", "2027-06-18", "NaT"], dtype="datetime64[D]")
    # 6 hours to today's close; 3 days + 6 hours; and to a summer date (the wall clock: no DST hour)
    expected = np.array([hours(6), 3 / 365 + hours(6), (210 * DAY + 6 * 3600) / DAY / 365, 0.0])
    for valuation in ("2026-11-20T10:00:00-05:00", "2026-11-20T15:00:00Z", "2026-11-20T10:00:00"):
        m = load(tmp_path, valuation)
        assert m.valuation == np.datetime64("2026-11-20") and m.valuation.dtype == np.dtype("datetime64[D]")
        assert m.valuation_time == dt.datetime(2026, 11, 20, 10, 0, tzinfo=NY)
        assert m.valuation_time.utcoffset() == dt.timedelta(hours=-5) and m.timezone == "America/New_York"
        assert m.is_intraday
        np.testing.assert_array_equal(m.year_fraction(expiry), expected)
    assert m.year_fraction(np.datetime64("2026-11-20"))[()] == 6 / 24 / 365
    # an offset that moves the date: 03:00 UTC on the 21st is 22:00 on the 20th in New York
    late = load(tmp_path, "2026-11-21T03:00:00+00:00")
    assert (
        late.valuation == np.datetime64("2026-11-20") and late.year_fraction(np.datetime64("2026-11-20")) < 0
    )


def test_timezone_sets_the_local_clock(tmp_path: Path) -> None:
    m = load(tmp_path, "2026-11-20T10:00:00", top='timezone = "Europe/London"')
    assert m.valuation_time == dt.datetime(2026, 11, 20, 10, tzinfo=ZoneInfo("Europe/London"))
    assert m.year_fraction(np.datetime64("2026-11-20"))[()] == hours(6)
    # a moment given with New York's offset is 15:00 in London: one hour to the close there
    m = load(tmp_path, "2026-11-20T10:00:00-05:00", top='timezone = "Europe/London"')
    assert m.year_fraction(np.datetime64("2026-11-20"))[()] == hours(1)


def test_constructor_valuation_forms() -> None:
    aware = simple(valuation=dt.datetime(2026, 11, 20, 10, tzinfo=NY))
    naive = simple(valuation=dt.datetime(2026, 11, 20, 10))
    text = simple(valuation="2026-11-20T10:00-05:00")
    timed = simple(valuation_time=dt.datetime(2026, 11, 20, 15, tzinfo=dt.UTC))
    for m in (aware, naive, text, timed):
        assert m.valuation == np.datetime64("2026-11-20")
        assert m.valuation_time == dt.datetime(2026, 11, 20, 10, tzinfo=NY)
        assert m.year_fraction(np.datetime64("2026-11-20"))[()] == hours(6)
    assert simple().valuation_time == dt.datetime(2026, 11, 20, 16, tzinfo=NY)
    # replace the date: the time of day stays, the fractions move by whole days
    later = dataclasses.replace(aware, valuation=np.datetime64("2026-11-23"))
    assert later.valuation_time == dt.datetime(2026, 11, 23, 10, tzinfo=NY)
    assert later.year_fraction(np.datetime64("2026-11-24"))[()] == (DAY + 6 * 3600) / DAY / 365


def test_with_valuation() -> None:
    m = simple(
        surface={"X": TableSurface(np.array([0.1, 0.5]), np.array([90.0, 110.0]), np.full((2, 2), 0.2))}
    )
    moved = m.with_valuation("2026-11-20T10:00-05:00")
    assert moved.valuation_time == dt.datetime(2026, 11, 20, 10, tzinfo=NY)
    assert moved.surface == m.surface  # a market built in Python keeps its surfaces
    assert m.with_valuation(dt.date(2026, 11, 23)).valuation_time == dt.datetime(2026, 11, 23, 16, tzinfo=NY)
    assert m.with_valuation(np.datetime64("2026-11-23")).valuation == np.datetime64("2026-11-23")
    with pytest.raises(MarketError, match=r"top level: field 'valuation': not a date or date-time: 'soon'"):
        m.with_valuation("soon")
    # a market from a file is read again: its surface expiries keep their dates, and are checked
    f = Market.load(EXAMPLE / "market.toml")
    g = f.with_valuation("2026-11-20T10:00-05:00")
    np.testing.assert_array_equal(g.surface["AAPL"].expiries[:1], [(28 * DAY + 6 * 3600) / DAY / 365])
    assert g.spot == f.spot and g.source == f.source
    with pytest.raises(MarketError, match=r"underlyings.AAPL.surface: field 'expiries': expiry 2026-12-18"):
        f.with_valuation("2026-12-21")


# --------------------------------------------------------------------------------------------------
# settlement


def test_am_and_pm_settlement() -> None:
    m = simple(valuation="2026-11-20T10:00-05:00", settlement={"X": "am"})
    e = np.array(["2026-12-18", "2026-12-18"], dtype="datetime64[D]")
    am = (28 * DAY - 30 * 60) / DAY / 365  # 10:00 to 09:30, 28 days on
    pm = (28 * DAY + 6 * 3600) / DAY / 365
    np.testing.assert_array_equal(m.year_fraction(e, settlement=np.array(["AM", "PM"])), [am, pm])
    assert m.year_fraction(e[0])[()] == pm  # no settlement given: PM
    assert m.default_settlement("X") == "AM" and m.settlement == {"X": "AM"}
    und = np.array(["X", "X"], dtype=object)
    np.testing.assert_array_equal(pricing.option_times(m, und, e), [am, am])  # the underlying's default
    np.testing.assert_array_equal(
        pricing.option_times(m, und, e, np.array(["", "PM"], dtype=object)), [am, pm]
    )
    with pytest.raises(ValueError, match="settlement: unknown value 'XM' at index 0"):
        m.year_fraction(e, settlement=["XM", "PM"])
    book = one_option_book("2026-12-18", settlement="pm")
    t, american = pricing.book_terms(book, m)
    assert t[0] == pm and not american[0]


def test_surface_settlement_follows_the_underlying(tmp_path: Path) -> None:
    surface = (
        '[underlyings.X.surface]\ntype = "table"\nexpiries = [2026-12-18]\nstrikes = [100.0]\nvols = [[0.2]]'
    )
    text = MARKET_TOML.format(valuation="2026-11-20", top="", und='settlement = "AM"').replace(
        "vol = 0.2\n", ""
    )
    m = Market.load(write(tmp_path, "m.toml", text + surface + "\n"))
    assert m.surface["X"].expiries[0] == (28 * DAY - 6.5 * 3600) / DAY / 365


# --------------------------------------------------------------------------------------------------
# 0DTE


ZERO_DTE = """
[underlyings.X.surface]
type = "svi"
expiries = [2026-11-20, 2026-12-18]
a = [6.7e-6, 0.0008]
b = [6.27e-4, 0.012]
rho = [-0.6, -0.7]
m = [0.0, 0.0]
sigma = [0.005, 0.06]
"""


def test_atm_option_expiring_today_has_six_hours(tmp_path: Path) -> None:
    m = simple(valuation="2026-11-20T10:00:00-05:00", div_yield={"X": 0.01})
    book = one_option_book()
    t, american = pricing.book_terms(book, m)
    assert t[0] == 6 / 24 / 365 and not american[0]
    c = pricing.carry(m, ["X"])
    g = pricing.contract_greeks(c, np.array([0]), 100.0, 100.0, t, 0.2, np.array([True]), american)
    e = bsm_greeks(100.0, 100.0, 6 / 24 / 365, 0.04, 0.01, 0.2, True)
    for name in Greeks.FIELDS:
        assert getattr(g, name)[0] == float(getattr(e, name)), name
    # by hand: an ATM-forward call is about 0.4 S sigma sqrt(t); gamma huge next to a month's
    assert g.price[0] == pytest.approx(0.4 * 100 * 0.2 * math.sqrt(t[0]), rel=2e-2)
    # at and after the settlement, expired: intrinsic, delta 0 or 1
    for when, sign in (("2026-11-20T16:00:00-05:00", 0), ("2026-11-20T17:30:00-05:00", -1)):
        later = m.with_valuation(when)
        t_after = pricing.book_terms(book, later)[0][0]
        assert np.sign(t_after) == sign
        g = pricing.contract_greeks(c, np.array([0]), 101.0, 100.0, t_after, 0.2, np.array([True]), american)
        assert g.price[0] == 1.0 and g.delta[0] == 1.0 and g.gamma[0] == 0.0


def test_zero_dte_surface_slice(tmp_path: Path) -> None:
    text = MARKET_TOML.format(valuation="2026-11-20T10:00:00-05:00", top="", und="").replace(
        "vol = 0.2\n", ""
    )
    m = Market.load(write(tmp_path, "m.toml", text + ZERO_DTE))
    assert m.surface["X"].expiries[0] == hours(6)
    vols = m.vols("X", np.array([95.0, 99.0, 100.0, 101.0, 105.0]), hours(6))
    assert np.isfinite(vols).all() and 0.10 < vols[2] < 0.14 and vols[0] > vols[2]
    # at the close (a date-only valuation) today's slice has settled: refused
    text = text.replace("2026-11-20T10:00:00-05:00", "2026-11-20")
    with pytest.raises(MarketError) as info:
        Market.load(write(tmp_path, "m.toml", text + ZERO_DTE))
    assert (
        "underlyings.X.surface: field 'expiries': expiry 2026-11-20 is on or before the valuation date"
        in str(info.value)
    )
    text = text.replace("valuation = 2026-11-20", "valuation = 2026-11-20T16:30:00")
    with pytest.raises(
        MarketError, match=r"expiry 2026-11-20 settles \(PM, 16:00\) at or before the valuation"
    ):
        Market.load(write(tmp_path, "m.toml", text + ZERO_DTE))
    # an AM-settled underlying's slice for today settled at 09:30
    text = text.replace("T16:30:00", "T10:00:00").replace(
        "[underlyings.X]", '[underlyings.X]\nsettlement = "AM"'
    )
    with pytest.raises(
        MarketError, match=r"expiry 2026-11-20 settles \(AM, 09:30\) at or before the valuation"
    ):
        Market.load(write(tmp_path, "m.toml", text + ZERO_DTE))


def test_every_surface_kind_is_finite_six_hours_out() -> None:
    t = np.array([hours(6), hours(0.5), 1e-6])
    k = np.array([[80.0], [99.0], [100.0], [101.0], [125.0]])
    fitted = FittedSurface(
        expiries=np.array([hours(6), 30 / 365]),
        forwards=np.array([100.0, 100.3]),
        a=np.array([6.7e-6, 0.002]),
        b=np.array([6.27e-4, 0.05]),
        rho=np.array([-0.6, -0.5]),
        m=np.array([0.0, 0.0]),
        sigma=np.array([0.005, 0.1]),
        knots=[np.zeros(0), np.zeros(0)],
        coef=[np.zeros(0), np.zeros(0)],
    )
    surfaces = [
        FlatSurface(0.2),
        TableSurface(
            np.array([hours(6), 0.1]), np.array([90.0, 100.0, 110.0]), np.array([[0.2, 0.12, 0.15]] * 2)
        ),
        SVISurface(
            [hours(6), 0.1],
            a=[6.7e-6, 0.003],
            b=[6.27e-4, 0.05],
            rho=[-0.6, -0.6],
            m=[0, 0],
            sigma=[0.005, 0.1],
        ),
        SVISurface([0.1], a=[0.003], b=[0.05], rho=[-0.6], m=[0], sigma=[0.1]),  # held from the first slice
        fitted,
    ]
    for s in surfaces:
        v = np.asarray(s.vol(k, t, 100.0))
        assert v.shape == (5, 3) and np.isfinite(v).all() and (v > 0).all() and (v < 5).all(), s
    # the 0DTE slices' own vols at their node: sqrt(w / t)
    assert surfaces[2].vol(100.0, hours(6), 100.0) == pytest.approx(
        math.sqrt((6.7e-6 + 6.27e-4 * 0.005) / hours(6))
    )


# --------------------------------------------------------------------------------------------------
# dividends and borrow


def test_forward_with_cash_dividends_by_hand(tmp_path: Path) -> None:
    und = (
        "borrow = 0.005\n"
        "dividends = [{ex_date = 2026-11-20, amount = 0.5}, {ex_date = 2026-12-10, amount = 0.26},"
        " {ex_date = 2027-03-10, amount = 0.27}]"
    )
    m = load(tmp_path, "2026-11-20T10:00:00-05:00", und=und)
    r, q = 0.04, 0.005
    assert m.div_yield["X"] == 0.0 and m.continuous_carry("X") == q
    # the 2026-11-20 dividend went ex at 09:30, before 10:00: gone; the others at 09:30 local
    t1 = (20 * DAY - 30 * 60) / DAY / 365
    t2 = (110 * DAY - 30 * 60) / DAY / 365
    times, amounts = m.dividend_times("X")
    np.testing.assert_array_equal(times, [t1, t2])
    np.testing.assert_array_equal(amounts, [0.26, 0.27])
    for t, paid in ((0.01, []), (0.1, [0]), (0.5, [0, 1])):
        pv = sum([(0.26, 0.27)[i] * math.exp(-(r - q) * (t1, t2)[i]) for i in paid])
        assert m.forward("X", t) == pytest.approx((100.0 - pv) * math.exp((r - q) * t), rel=1e-14)
    assert m.forward("X", 0.5, spot=90.0) == pytest.approx(
        (90.0 - 0.26 * math.exp(-(r - q) * t1) - 0.27 * math.exp(-(r - q) * t2)) * math.exp((r - q) * 0.5),
        rel=1e-14,
    )
    c = pricing.carry(m, ["X"])
    np.testing.assert_array_equal(c.div_times[0], [t1, t2])
    np.testing.assert_array_equal(c.q, [q])
    # priced by the dividend engine with the same schedule
    p = pricing.contract_price(c, np.array([0]), 100.0, 100.0, 0.5, 0.2, np.array([False]), np.array([False]))
    e = bsm_greeks(
        100.0, 100.0, 0.5, r, q, 0.2, False, dividends=(np.array([t1, t2]), np.array([0.26, 0.27]))
    )
    assert p[0] == float(e.price)
    # a valuation before the open keeps today's dividend, half an hour away
    early = m.with_valuation("2026-11-20T09:00-05:00")
    assert early.dividend_times("X")[0][0] == hours(0.5)


def test_top_level_yield_is_not_for_cash_dividend_underlyings(tmp_path: Path) -> None:
    m = load(tmp_path, top="div_yield = 0.02", und="dividends = [{ex_date = 2027-01-05, amount = 1.0}]")
    assert m.div_yield["X"] == 0.0 and m.borrow == {}
    assert pricing.carry(m, ["X"]).q[0] == 0.0
    plain = load(tmp_path, top="div_yield = 0.02", und="borrow = 0.01")
    assert plain.continuous_carry("X") == 0.02 + 0.01
    assert plain.forward("X", 1.0) == 100.0 * math.exp(0.04 - 0.03)


# --------------------------------------------------------------------------------------------------
# exercise style


def test_styles_from_asset_class_and_explicit_style() -> None:
    m = simple(
        spot={"I": 10.0, "E": 10.0, "F": 10.0, "S": 10.0, "N": 10.0},
        rate=dict.fromkeys("IEFSN", 0.04),
        div_yield=dict.fromkeys("IEFSN", 0.0),
        surface={},
        asset={"I": "index", "E": "Equity", "F": "etf", "S": "equity"},
        style={"S": "european"},
    )
    und = np.array(list("IEFSN"), dtype=object)
    np.testing.assert_array_equal(pricing.american_flags(m, und), [False, True, True, False, False])
    given = np.array(["american", "", "European", "", "AMERICAN"], dtype=object)
    np.testing.assert_array_equal(pricing.american_flags(m, und, given), [True, True, False, False, True])
    assert [m.default_style(u) for u in "IEFSN"] == [
        "european",
        "american",
        "american",
        "european",
        "european",
    ]


def test_example_market_and_book_have_their_terms() -> None:
    m = Market.load(TERMS / "market.toml")
    book = Book.load(TERMS / "book.csv")
    book.check_market(m)
    t, american = pricing.book_terms(book, m)
    row = {i: j for j, i in enumerate(book.id)}
    assert t[row["SPX-0D-5900C"]] == 6 / 24 / 365
    assert t[row["SPX-M-5700P"]] == (28 * DAY - 30 * 60) / DAY / 365  # AM-settled monthly
    assert t[row["SPX-W-5850P"]] == (28 * DAY + 6 * 3600) / DAY / 365
    assert not american[row["SPX-0D-5900C"]] and american[row["AAPL-01"]] and american[row["TSLA-01"]]
    assert not american[row["MSFT-03"]]  # the book says european
    assert t[row["AAPL-HEDGE"]] == 0.0 and not american[row["AAPL-HEDGE"]]
    assert m.dividend_times("MSFT")[1].size == 4  # yesterday's has gone ex
    assert m.continuous_carry("TSLA") == 0.0075
    assert np.isfinite(exposures(book, m).total.to_numpy(dtype=float)).all()


# --------------------------------------------------------------------------------------------------
# errors name the file, the table and the field


@pytest.mark.parametrize(
    ("top", "und", "table", "field", "problem"),
    [
        (
            "",
            "dividends = [{ex_date = 2027-01-05, amount = -0.5}]",
            "underlyings.X",
            "dividends",
            "amount must be > 0",
        ),
        (
            "",
            "dividends = [{ex_date = 2027-01-05, amount = 0.0}]",
            "underlyings.X",
            "dividends",
            "amount must be > 0",
        ),
        (
            "",
            "div_yield = 0.01\ndividends = [{ex_date = 2027-01-05, amount = 0.5}]",
            "underlyings.X",
            "div_yield",
            "give either div_yield or dividends, not both",
        ),
        (
            "",
            "dividends = [{ex_date = 2027-02-05, amount = 0.5}, {ex_date = 2027-01-05, amount = 0.5}]",
            "underlyings.X",
            "dividends",
            "entry 1: ex_date 2027-01-05 is not after the previous one 2027-02-05",
        ),
        (
            "",
            "dividends = [{ex_date = 2027-01-05}]",
            "underlyings.X",
            "dividends",
            "entry 0: must be a table",
        ),
        (
            "",
            'dividends = [{ex_date = "soon", amount = 1.0}]',
            "underlyings.X",
            "dividends",
            "expected a date",
        ),
        (
            "",
            "dividends = [{ex_date = 2027-01-05, amount = 60.0}, {ex_date = 2027-02-05, amount = 40.0}]",
            "underlyings.X",
            "dividends",
            "not below the spot 100.0",
        ),
        ("", "dividends = 0.5", "underlyings.X", "dividends", "must be an array"),
        (
            "",
            'style = "bermudan"',
            "underlyings.X",
            "style",
            "unknown value 'bermudan' (expected 'american' or",
        ),
        (
            "",
            'asset = "bond"',
            "underlyings.X",
            "asset",
            "unknown value 'bond'",
        ),
        (
            "",
            'settlement = "noon"',
            "underlyings.X",
            "settlement",
            "unknown value 'noon' (expected 'AM' or 'PM')",
        ),
        ("", "borrow = -0.01", "underlyings.X", "borrow", "must be >= 0"),
        ("", "borrow = 5.0", "underlyings.X", "borrow", "outside the plausible range"),
        ('timezone = "Mars/Olympus"', "", "top level", "timezone", "unknown time zone 'Mars/Olympus'"),
        ("timezone = 5", "", "top level", "timezone", "must be an IANA time zone name"),
    ],
)
def test_market_file_errors(tmp_path: Path, top: str, und: str, table: str, field: str, problem: str) -> None:
    with pytest.raises(MarketError) as info:
        load(tmp_path, top=top, und=und)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'market.toml'}: {table}: field '{field}': "), message
    assert problem in message and "\n" not in message


def test_constructor_errors() -> None:
    with pytest.raises(MarketError, match=r"underlyings.X: field 'dividends': entry 0: amount must be > 0"):
        simple(dividends={"X": [("2027-01-05", -1.0)]})
    with pytest.raises(
        MarketError, match=r"underlyings.X: field 'div_yield': give either div_yield or dividends"
    ):
        simple(div_yield={"X": 0.01}, dividends={"X": [("2027-01-05", 1.0)]})
    with pytest.raises(
        MarketError, match=r"underlyings.Y: field 'spot': missing \(the underlying has borrow\)"
    ):
        simple(borrow={"Y": 0.01})
    with pytest.raises(MarketError, match=r"top level: field 'timezone': unknown time zone"):
        simple(timezone="Nowhere/Town")
    with pytest.raises(MarketError, match=r"top level: field 'valuation_time': must be a datetime"):
        simple(valuation_time="10:00")
    with pytest.raises(MarketError, match=r"underlyings.X: field 'style': unknown value 'asian'"):
        simple(style={"X": "asian"})
    m = simple(dividends={"X": [(dt.date(2027, 1, 5), 1), ("2027-04-05", 1.5)]})
    assert m.dividends == {"X": ((dt.date(2027, 1, 5), 1.0), (dt.date(2027, 4, 5), 1.5))}
    assert m.div_yield == {"X": 0.0}
    assert dataclasses.replace(m, spot={"X": 101.0}).dividends == m.dividends


# --------------------------------------------------------------------------------------------------
# the book's style and settlement columns


def test_book_terms_columns_validate_and_round_trip(tmp_path: Path) -> None:
    text = (
        "underlying,kind,strike,expiry,quantity,style,settlement\n"
        "X,call,100,2026-12-18,1,American,am\n"
        "X,put,100,2026-12-18,1,,\n"
        "X,stock,,,10,,\n"
    )
    book = Book.load(write(tmp_path, "b.csv", text))
    assert book.style.tolist() == ["american", "", ""] and book.settlement.tolist() == ["AM", "", ""]
    for path in (tmp_path / "out.csv", tmp_path / "out.parquet"):
        (book.to_csv if path.suffix == ".csv" else book.to_parquet)(path)
        back = Book.load(path)
        assert back.style.tolist() == book.style.tolist()
        assert back.settlement.tolist() == book.settlement.tolist()
    assert Book.from_frame(book.to_frame()).style.tolist() == book.style.tolist()
    # a book without the columns: blank terms, and none written
    plain = Book.load(EXAMPLE / "book.csv")
    assert (plain.style == "").all() and (plain.settlement == "").all()
    assert "style" not in plain.to_frame().columns and "settlement" not in plain.to_frame().columns


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        (
            "X,call,100,2026-12-18,1,bermudan,",
            "style",
            "unknown style 'bermudan' (expected american or european",
        ),
        ("X,call,100,2026-12-18,1,,noon", "settlement", "unknown settlement 'noon' (expected AM or PM"),
        ("X,stock,,,10,american,", "style", "a stock row takes no style (leave it blank), got 'american'"),
        ("X,stock,,,10,,PM", "settlement", "a stock row takes no settlement (leave it blank), got 'PM'"),
    ],
)
def test_book_terms_errors_name_row_and_field(tmp_path: Path, row: str, field: str, problem: str) -> None:
    text = "underlying,kind,strike,expiry,quantity,style,settlement\nX,put,90,2026-12-18,1,,\n" + row + "\n"
    path = write(tmp_path, "b.csv", text)
    with pytest.raises(BookError) as info:
        Book.load(path)
    assert str(info.value) == f"{path}: row 2: field '{field}': {problem}" or (
        str(info.value).startswith(f"{path}: row 2: field '{field}': ") and problem in str(info.value)
    )
    with pytest.raises(BookError, match=r"row 1: field 'style': must be a str"):
        Book(
            id=["a"], underlying=["X"], kind=[0], strike=[1.0], expiry=["2026-12-18"], quantity=[1.0],
            multiplier=[100.0], vol=[np.nan], style=[1],
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# --valuation on the command line


def test_cli_valuation_moves_the_market(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    book, market = str(TERMS / "book.csv"), str(TERMS / "market.toml")
    out = tmp_path / "risk.csv"
    code, _, err = run(
        capsys, "risk", book, "--market", market, "--valuation", "2026-11-20T12:00-05:00", "--by", "position",
        "--format", "csv", "--output", str(out),
    )  # fmt: skip
    assert code == 0, err
    got = pd.read_csv(out).set_index("id")
    moved = Market.load(market).with_valuation("2026-11-20T12:00-05:00")
    expected = exposures(Book.load(book), moved).positions.set_index("id")
    np.testing.assert_allclose(got["value"], expected.loc[got.index, "value"], rtol=1e-12)
    base = exposures(Book.load(book), Market.load(market)).positions.set_index("id")
    assert got.loc["SPX-0D-5900C", "value"] != base.loc["SPX-0D-5900C", "value"]  # two hours of decay
    code, text, _ = run(capsys, "risk", book, "--market", market, "--valuation", "2026-11-20T12:00-05:00")
    assert code == 0 and "valued 2026-11-20T12:00-05:00 in" in text


def test_cli_valuation_errors(capsys: pytest.CaptureFixture[str]) -> None:
    book, market = str(TERMS / "book.csv"), str(TERMS / "market.toml")
    assert_usage_error(
        run(capsys, "risk", book, "--market", market, "--valuation", "tomorrow"),
        "--valuation not a date or date-time: 'tomorrow'",
    )
    assert_usage_error(
        run(capsys, "scenario", book, "--market", market, "--valuation", "2026-13-01"),
        "--valuation not a date",
    )
    # at the close today's SPX slice has settled: the file is not valid then
    assert_usage_error(
        run(capsys, "risk", book, "--market", market, "--valuation", "2026-11-20"),
        "market.toml: underlyings.SPX.surface: field 'expiries': expiry 2026-11-20",
    )
    assert_usage_error(
        run(capsys, "fit", "--vols", "v.csv", "--valuation", "2026-11-20", "--out", "x.toml"),
        "--vols needs --market",
    )


def test_cli_scenario_takes_valuation(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(
        capsys, "scenario", str(EXAMPLE / "book.csv"), "--market", str(EXAMPLE / "market.toml"),
        "--valuation", "2026-11-20", "--spot", "-2:2:2", "--vol", "0:0:1",
    )  # fmt: skip
    code2, text2, _ = run(
        capsys, "scenario", str(EXAMPLE / "book.csv"), "--market", str(EXAMPLE / "market.toml"),
        "--spot", "-2:2:2", "--vol", "0:0:1",
    )  # fmt: skip
    assert code == code2 == 0 and text == text2  # the file's own valuation: the same figures


def test_market_toml_round_trips_the_terms(tmp_path: Path) -> None:
    from optmm.chain.toml import write_market

    m = Market.load(TERMS / "market.toml")
    chicago = Market.load(write(tmp_path, "c.toml", (TERMS / "market.toml").read_text().replace(
        'timezone = "America/New_York"', 'timezone = "America/Chicago"')))  # fmt: skip
    assert chicago.timezone == "America/Chicago" and chicago.valuation_time.hour == 9
    for market in (m, m.with_valuation("2026-11-19"), chicago):
        path = tmp_path / "written.toml"
        write_market(market, path)
        back = Market.load(path)
        assert dataclasses.replace(back, source=market.source) == market
        assert back.valuation_time == market.valuation_time
        np.testing.assert_array_equal(back.surface["SPX"].expiries, market.surface["SPX"].expiries)
    # surfaces of a market moved in Python are no longer whole days from the file's dates
    with pytest.raises(ValueError, match="surface expiries are not settlement times of whole days"):
        write_market(dataclasses.replace(m, timezone="America/Chicago"), tmp_path / "no.toml")
    assert not (tmp_path / "no.toml").exists()


def test_fit_refuses_an_intraday_valuation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    vols = write(tmp_path, "v.csv", "underlying,expiry,strike,implied_vol\nSPX,2026-12-18,5900,0.14\n")
    out = str(tmp_path / "fitted.toml")
    assert_usage_error(
        run(capsys, "fit", "--vols", str(vols), "--market", str(TERMS / "market.toml"), "--out", out),
        "valuation 2026-11-20T10:00:00-05:00: optmm fit works on whole days",
    )
    assert not Path(out).exists()


def test_midnight_objects_keep_meaning_a_date_in_the_constructor(tmp_path: Path) -> None:
    for given in (dt.datetime(2026, 11, 20), pd.Timestamp("2026-11-20"), np.datetime64("2026-11-20T00:00")):
        m = simple(valuation=given)
        assert m.valuation == np.datetime64("2026-11-20") and not m.is_intraday
        assert m.year_fraction(np.datetime64("2026-12-18"))[()] == 28 / 365
    # typed as text or in a file, a time is read as written
    assert simple(valuation="2026-11-20T00:00").valuation_time == dt.datetime(2026, 11, 20, tzinfo=NY)
    assert load(tmp_path, "2026-11-20T00:00:00").year_fraction(np.datetime64("2026-11-20"))[()] == hours(16)
