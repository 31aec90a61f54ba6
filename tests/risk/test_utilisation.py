"""Limit utilisation (optmm.risk.utilisation): the figures are the risk controller's own.

References: :meth:`RiskController.state` (values, levels, the layer of each underlying) and
:meth:`RiskController.check` of a controller built over the same book, market and limit set; the
limit set itself (:meth:`LimitSet.for_underlying`, :meth:`LimitSet.book`) for which limit applies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm import Book, Market
from optmm.risk import Layer, LimitSet, Metric, RiskController, Scope
from optmm.risk.utilisation import COLUMNS, STATUS, limit_utilisation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scenarios" / "examples"


@pytest.fixture(scope="module")
def book() -> Book:
    return Book.load(EXAMPLES / "book.csv")


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.load(EXAMPLES / "market.toml")


def _limits(name: str) -> LimitSet:
    return LimitSet.load(ROOT / "scenarios" / "limits" / f"{name}.toml")


def _controller(
    book: Book, market: Market, limits: LimitSet, pnl: float, high_water: float
) -> RiskController:
    ctl = RiskController(book, market, limits, clock=lambda: 0.0)
    ctl.mark_pnl(high_water)
    ctl.mark_pnl(pnl)
    return ctl


@pytest.mark.parametrize(
    ("name", "pnl", "high_water"), [("desk", -9_000.0, 5_000.0), ("tight", -9_000.0, 5_000.0)]
)
def test_figures_are_the_controllers(
    book: Book, market: Market, name: str, pnl: float, high_water: float
) -> None:
    limits = _limits(name)
    frame = limit_utilisation(book, market, limits, pnl=pnl, high_water=high_water)
    assert tuple(frame.columns) == COLUMNS
    ctl = _controller(book, market, limits, pnl, high_water)
    state = ctl.state()
    names = list(ctl.underlyings)
    # one row per (scope, metric) that a limit of the set bounds, and no other
    expected = set()
    for u in names:
        expected |= {
            (u, m.value) for m in Metric if Scope.UNDERLYING in m.scopes and limits.for_underlying(m, u)
        }
        if limits.contract() is not None:
            expected.add((u, "position"))
    expected |= {("book", m.value) for m in Metric if Scope.BOOK in m.scopes and limits.book(m)}
    assert set(zip(frame["scope"], frame["metric"], strict=True)) == expected
    assert len(frame) == len(expected)
    for row in frame.itertuples(index=False):
        # the controller's value and levels, bit for bit
        assert row.measured == state.loc[row.scope, row.metric]
        assert row.hard == state.loc[row.scope, f"{row.metric}_hard"]
        assert row.soft == state.loc[row.scope, f"{row.metric}_soft"]
        assert row.used_pct == pytest.approx(abs(row.measured) / row.hard * 100.0, rel=1e-15)
        breach = (
            "hard breach"
            if abs(row.measured) > row.hard
            else "soft breach"
            if abs(row.measured) > row.soft
            else "ok"
        )
        assert row.status == breach
        pnl_metric = row.metric in ("daily_loss", "drawdown")
        assert (
            row.layer
            == {"hard breach": "KILL" if pnl_metric else "HARD", "soft breach": "SOFT", "ok": "NORMAL"}[
                breach
            ]
        )
    # each underlying's layer in the controller is the most severe of what its own limits and the
    # book's say (a contract's position changes only that contract's layer)
    checked = dict(ctl.check())
    book_rows = frame[(frame["scope"] == "book")]
    for u in names:
        own = frame[(frame["scope"] == u) & (frame["metric"] != "position")]
        layers = [Layer[x] for x in pd.concat([own["layer"], book_rows["layer"]])]
        assert min(layers, default=Layer.NORMAL) == checked[u] == Layer[state.loc[u, "layer"]]


def test_breaches_first_then_by_use(book: Book, market: Market) -> None:
    frame = limit_utilisation(book, market, _limits("tight"), pnl=-9_000.0, high_water=5_000.0)
    rank = frame["status"].map({s: i for i, s in enumerate(STATUS)}).to_numpy()
    assert (np.diff(rank) >= 0).all()
    assert {"hard breach", "soft breach", "ok"} <= set(frame["status"])  # the tight set has all three
    for status in STATUS:
        used = frame.loc[frame["status"] == status, "used_pct"].to_numpy()
        assert (np.diff(used) <= 0).all()
    assert frame.iloc[0]["scope"] == "SPY" and frame.iloc[0]["metric"] == "gamma_dollars_1pct"


def test_desk_set(book: Book, market: Market) -> None:
    """The desk set: SPY's dollar gamma past its soft level (as the file says), nothing past a hard one."""
    frame = limit_utilisation(book, market, _limits("desk"), pnl=0.0, high_water=0.0)
    assert (frame["status"] != "hard breach").all()
    soft = frame[frame["status"] == "soft breach"]
    assert list(zip(soft["scope"], soft["metric"], strict=True)) == [("SPY", "gamma_dollars_1pct")]
    tsla = frame[(frame["scope"] == "TSLA") & (frame["metric"] == "vega_per_vol_point")].iloc[0]
    assert tsla["hard"] == 10_000.0 and tsla["limit"] == "[underlying.TSLA]"
    assert frame[frame["metric"] == "daily_loss"].iloc[0]["measured"] == 0.0


def test_pnl_kill(book: Book, market: Market) -> None:
    """A daily loss past its hard limit: the layer is KILL, as the controller's kill switch."""
    frame = limit_utilisation(book, market, _limits("tight"), pnl=-12_000.0, high_water=0.0)
    row = frame[frame["metric"] == "daily_loss"].iloc[0]
    assert row["measured"] == 12_000.0 and row["layer"] == "KILL" and row["status"] == "hard breach"
    assert row["used_pct"] == pytest.approx(120.0, rel=1e-15)
    ctl = _controller(book, market, _limits("tight"), -12_000.0, 0.0)
    assert ctl.killed


def test_pnl_limits_need_the_pnl(book: Book, market: Market) -> None:
    limits = _limits("desk")
    with pytest.raises(ValueError, match=r"limit \[book\] daily_loss .*desk.toml: cannot be measured .*P&L"):
        limit_utilisation(book, market, limits)
    with pytest.raises(ValueError, match=r"limit \[book\] drawdown .*high-water mark"):
        limit_utilisation(book, market, limits, pnl=-1.0)
    with pytest.raises(ValueError, match=r"high-water mark is >= 0"):
        limit_utilisation(book, market, limits, pnl=-5.0, high_water=-1.0)
    with pytest.raises(ValueError, match="is below the P&L"):
        limit_utilisation(book, market, limits, pnl=10.0, high_water=5.0)
    with pytest.raises(ValueError, match="pnl: must be a finite number"):
        limit_utilisation(book, market, limits, pnl=math.nan, high_water=5.0)
    # a set without P&L limits needs none
    no_pnl = LimitSet.from_dict({"underlying": {"delta_shares": 1_000}})
    frame = limit_utilisation(book, market, no_pnl)
    assert set(frame["metric"]) == {"delta_shares"} and len(frame) == 4


def test_every_limit_appears(book: Book, market: Market) -> None:
    """An override for an underlying the book does not hold is listed (nothing held: 0); a default that
    applies to no underlying of the book cannot be measured and is refused, naming it."""
    limits = LimitSet.from_dict(
        {"underlying": {"vega_per_vol_point": 5_000, "NVDA": {"vega_per_vol_point": 3_000}}}, source="x.toml"
    )
    frame = limit_utilisation(book, market, limits)
    nvda = frame[frame["scope"] == "NVDA"].iloc[0]
    assert nvda["measured"] == 0.0 and nvda["status"] == "ok" and nvda["limit"] == "[underlying.NVDA]"
    overridden = {
        "vega_per_vol_point": 5_000,
        **{u: {"vega_per_vol_point": 9_000} for u in book.underlyings()},
    }
    with pytest.raises(
        ValueError, match=r"limit \[underlying\] vega_per_vol_point of x.toml: applies to no underlying"
    ):
        limit_utilisation(book, market, LimitSet.from_dict({"underlying": overridden}, source="x.toml"))


def test_book_not_in_market(book: Book) -> None:
    market = Market.load(EXAMPLES / "market.toml")
    partial = Market(
        valuation=market.valuation,
        spot={"SPY": 590.0},
        rate={"SPY": 0.04},
        div_yield={"SPY": 0.0},
        surface={"SPY": market.surface["SPY"]},
        source="partial.toml",
    )
    with pytest.raises(ValueError, match=r"book.csv: row \d+: field 'underlying': no market data"):
        limit_utilisation(book, partial, _limits("desk"), pnl=0.0, high_water=0.0)
