"""Tests of optmm.market: the example file, forwards, year fractions, sticky strike vs sticky moneyness,
vol shifts, and the errors for bad market files (file, table and field named)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from optmm.market import Market, MarketError, Sticky
from optmm.surface import FlatSurface, SVISurface, TableSurface

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"

SKEW = TableSurface(
    expiries=np.array([0.25, 1.0]),
    strikes=np.array([80.0, 90.0, 100.0, 110.0, 120.0]),
    vols=np.array([[0.30, 0.26, 0.22, 0.20, 0.19], [0.27, 0.245, 0.225, 0.21, 0.20]]),
)
SVI = SVISurface(
    [0.25, 1.0], a=[0.005, 0.03], b=[0.08, 0.12], rho=[-0.7, -0.6], m=[0.0, 0.02], sigma=[0.1, 0.15]
)


def market(sticky: Sticky | str = Sticky.STRIKE, surface: object = SKEW) -> Market:
    return Market(
        valuation=np.datetime64("2026-11-20"),
        spot={"X": 100.0},
        rate={"X": 0.04},
        div_yield={"X": 0.01},
        surface={"X": surface},  # type: ignore[dict-item]
        sticky=sticky,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------------
# the example


def test_example_market_loads() -> None:
    m = Market.load(EXAMPLES / "market.toml")
    assert m.valuation == np.datetime64("2026-11-20") and m.valuation.dtype == np.dtype("datetime64[D]")
    assert set(m.spot) == {"SPY", "AAPL", "MSFT", "TSLA"}
    assert m.index == "SPY" and m.beta["SPY"] == 1.0 and m.beta["TSLA"] > 1.5
    assert m.sticky is Sticky.STRIKE
    assert m.rate["AAPL"] == 0.043 and m.rate["TSLA"] == 0.044  # default and override
    assert m.div_yield["TSLA"] == 0.0 and m.div_yield["SPY"] == 0.0  # SPY on cash dividends
    assert m.borrow["TSLA"] == 0.003 and m.dividend_times("SPY")[0].size == 5
    assert isinstance(m.surface["SPY"], FlatSurface)
    assert isinstance(m.surface["AAPL"], TableSurface)
    assert isinstance(m.surface["MSFT"], SVISurface) and isinstance(m.surface["TSLA"], SVISurface)
    # table expiries are ACT/365 year fractions from the valuation date
    np.testing.assert_allclose(m.surface["AAPL"].expiries[:3], np.array([28, 56, 119]) / 365, rtol=0, atol=0)
    assert m.source == str(EXAMPLES / "market.toml")
    # TSLA is the high-vol name, with a put skew
    t = m.year_fraction(np.datetime64("2027-03-19"))
    vols = m.vols("TSLA", np.array([0.8, 1.0, 1.2]) * 340.0, t)
    assert 0.45 < vols[1] < 0.65 and vols[0] > vols[1]


# ------------------------------------------------------------------------------------------------
# year fractions and forwards


def test_year_fraction_act_365() -> None:
    m = market()
    expiry = np.array(
        ["2026-11-20", "2026-12-18", "2027-11-20", "2028-11-20", "2026-11-01", "NaT"], dtype="datetime64[D]"
    )
    np.testing.assert_array_equal(m.year_fraction(expiry), [0.0, 28 / 365, 1.0, 731 / 365, -19 / 365, 0.0])
    assert m.year_fraction(expiry).dtype == np.float64
    assert m.year_fraction(np.datetime64("2027-01-15")) == 56 / 365
    assert m.year_fraction(expiry.reshape(2, 3)).shape == (2, 3)


def test_forward() -> None:
    m = market()
    t = np.array([0.0, 0.25, 1.0, 3.0])
    np.testing.assert_allclose(m.forward("X", t), 100.0 * np.exp((0.04 - 0.01) * t), rtol=1e-15)
    np.testing.assert_allclose(m.forward("X", t, spot=90.0), 90.0 * np.exp(0.03 * t), rtol=1e-15)
    assert m.forward("X", 0.0) == 100.0
    with pytest.raises(MarketError, match=r"underlyings\.Y"):
        m.forward("Y", t)


# ------------------------------------------------------------------------------------------------
# sticky strike vs sticky moneyness


@pytest.mark.parametrize("shift", [-0.1, -0.03, 0.05, 0.15])
def test_sticky_strike_leaves_the_surface_in_place(shift: float) -> None:
    m = market(Sticky.STRIKE)
    k = np.linspace(70.0, 130.0, 25)
    for t in (0.1, 0.25, 0.6, 1.0, 2.0):
        np.testing.assert_array_equal(m.vols("X", k, t, spot_shift=shift), m.vols("X", k, t))
        np.testing.assert_array_equal(m.vols("X", k, t), SKEW.vol(k, t, m.forward("X", t)))


@pytest.mark.parametrize("shift", [-0.1, -0.03, 0.05, 0.15])
def test_sticky_moneyness_moves_the_smile_with_spot(shift: float) -> None:
    m = market(Sticky.MONEYNESS)
    k = np.linspace(70.0, 130.0, 25)
    for t in (0.1, 0.25, 0.6, 1.0, 2.0):
        before = m.vols("X", k, t)
        after = m.vols("X", k * (1.0 + shift), t, spot_shift=shift)
        np.testing.assert_allclose(after, before, rtol=1e-14, atol=0)
        # on a skewed surface this differs from sticky strike
        assert np.abs(m.vols("X", k, t, spot_shift=shift) - before).max() > 1e-3


def test_sticky_moneyness_svi_uses_the_shocked_forward() -> None:
    m = market(Sticky.MONEYNESS, SVI)
    k, shift = np.linspace(60.0, 140.0, 17), 0.08
    for t in (0.1, 0.5, 1.5):
        shocked_forward = m.forward("X", t, spot=100.0 * (1 + shift))
        np.testing.assert_allclose(
            m.vols("X", k, t, spot_shift=shift), SVI.vol(k, t, shocked_forward), rtol=1e-13
        )
    sticky_strike = market(Sticky.STRIKE, SVI)
    np.testing.assert_array_equal(
        sticky_strike.vols("X", k, 0.5, spot_shift=shift), SVI.vol(k, 0.5, sticky_strike.forward("X", 0.5))
    )


def test_sticky_from_string() -> None:
    assert market("moneyness").sticky is Sticky.MONEYNESS
    with pytest.raises(MarketError, match="field 'sticky'"):
        market("delta")


# ------------------------------------------------------------------------------------------------
# vol shift


def test_vol_shift_adds_points_and_floors_at_zero() -> None:
    m = market()
    k = np.array([80.0, 100.0, 120.0])
    base = m.vols("X", k, 0.25)
    np.testing.assert_allclose(m.vols("X", k, 0.25, vol_shift=0.05), base + 0.05, rtol=0, atol=1e-15)
    np.testing.assert_allclose(m.vols("X", k, 0.25, vol_shift=-0.2), np.maximum(base - 0.2, 0.0), atol=1e-15)
    down = m.vols("X", k, 0.25, vol_shift=-0.25)
    assert base.tolist() == [0.30, 0.22, 0.19]  # the table's nodes
    np.testing.assert_allclose(down, [0.05, 0.0, 0.0], rtol=0, atol=1e-15)
    assert down[1] == 0.0 and down[2] == 0.0  # floored exactly, not negative
    assert (m.vols("X", k, 0.25, vol_shift=-5.0) == 0.0).all()
    both = m.vols("X", k * 1.1, 0.25, spot_shift=0.1, vol_shift=0.02)
    np.testing.assert_allclose(both, SKEW.vol(k * 1.1, 0.25, 100.0) + 0.02, atol=1e-15)


def test_vols_refuses_bad_shifts_and_missing_surface() -> None:
    m = market()
    with pytest.raises(ValueError, match="spot_shift"):
        m.vols("X", 100.0, 0.5, spot_shift=-1.0)
    with pytest.raises(ValueError, match="vol_shift"):
        m.vols("X", 100.0, 0.5, vol_shift=np.nan)
    hedge_only = Market(
        valuation=np.datetime64("2026-11-20"),
        spot={"ES": 5900.0},
        rate={"ES": 0.04},
        div_yield={"ES": 0.0},
        surface={},
    )
    with pytest.raises(MarketError, match=r"underlyings\.ES: field 'surface'"):
        hedge_only.vols("ES", 100.0, 0.5)


def test_direct_construction_validates() -> None:
    base = {
        "valuation": dt.date(2026, 11, 20),
        "spot": {"X": 100.0, "I": 50.0},
        "rate": {"X": 0.04, "I": 0.04},
        "div_yield": {"X": 0.0, "I": 0.0},
        "surface": {"X": SKEW},
    }
    m = Market(**base, beta={"X": 1.3}, index="I")  # type: ignore[arg-type]
    assert m.valuation == np.datetime64("2026-11-20") and m.beta == {"X": 1.3, "I": 1.0}
    with pytest.raises(MarketError, match=r"underlyings\.X: field 'spot'"):
        Market(**{**base, "spot": {"X": -1.0, "I": 50.0}})  # type: ignore[arg-type]
    with pytest.raises(MarketError, match=r"underlyings\.I: field 'div_yield': missing"):
        Market(**{**base, "div_yield": {"X": 0.0}})  # type: ignore[arg-type]
    with pytest.raises(MarketError, match="field 'index'"):
        Market(**base, index="Z")  # type: ignore[arg-type]
    with pytest.raises(MarketError, match=r"underlyings\.I: field 'beta'"):
        Market(**base, beta={"I": 0.9}, index="I")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# bad market files

GOOD = """
valuation = 2026-11-20
sticky = "strike"
index = "SPY"
rate = 0.04

[underlyings.SPY]
spot = 590.0
div_yield = 0.013
beta = 1.0
vol = 0.16

[underlyings.AAPL]
spot = 230.0
beta = 1.2
[underlyings.AAPL.surface]
type = "table"
expiries = [2026-12-18, 2027-01-15]
strikes = [200.0, 230.0, 260.0]
vols = [[0.30, 0.26, 0.25], [0.29, 0.26, 0.25]]

[underlyings.TSLA.surface]
type = "svi"
expiries = [2026-12-18, 2027-03-19]
a = [0.01, 0.05]
b = [0.1, 0.2]
rho = [-0.6, -0.6]
m = [0.0, 0.0]
sigma = [0.1, 0.1]

[underlyings.MSFT.surface]
type = "flat"
vol = 0.22
"""
GOOD_WITH_SPOTS = GOOD.replace(
    "[underlyings.TSLA.surface]", "[underlyings.TSLA]\nspot = 340.0\n[underlyings.TSLA.surface]"
).replace("[underlyings.MSFT.surface]", "[underlyings.MSFT]\nspot = 505.0\n[underlyings.MSFT.surface]")


def load_text(tmp_path: Path, text: str) -> Market:
    path = tmp_path / "bad_market.toml"
    path.write_text(text)
    return Market.load(path)


def test_good_text_loads(tmp_path: Path) -> None:
    m = load_text(tmp_path, GOOD_WITH_SPOTS)
    assert set(m.surface) == {"SPY", "AAPL", "TSLA", "MSFT"}
    assert isinstance(m.surface["MSFT"], FlatSurface) and float(m.surface["MSFT"].vol) == 0.22
    assert m.div_yield["AAPL"] == 0.0 and m.rate["TSLA"] == 0.04


BAD_FILES = [
    # (replace this, with this, table, field)
    ("spot = 230.0\n", "", "underlyings.AAPL", "spot"),  # missing spot
    ("spot = 230.0", "spot = -230.0", "underlyings.AAPL", "spot"),
    ("spot = 230.0", 'spot = "230"', "underlyings.AAPL", "spot"),
    ("spot = 230.0", "spot = nan", "underlyings.AAPL", "spot"),
    (
        "vols = [[0.30, 0.26, 0.25], [0.29, 0.26, 0.25]]",
        "vols = [[0.30, 0.26, 0.25]]",
        "underlyings.AAPL.surface",
        "vols",
    ),
    (
        "vols = [[0.30, 0.26, 0.25], [0.29, 0.26, 0.25]]",
        "vols = [[0.30, 0.26], [0.29, 0.26]]",
        "underlyings.AAPL.surface",
        "vols",
    ),
    (
        "vols = [[0.30, 0.26, 0.25], [0.29, 0.26, 0.25]]",
        "vols = [[0.30, 0.26, 0.25], [0.29, 0.26]]",
        "underlyings.AAPL.surface",
        "vols",
    ),
    ('type = "table"', 'type = "sabr"', "underlyings.AAPL.surface", "type"),
    ('type = "table"\n', "", "underlyings.AAPL.surface", "type"),
    (
        "expiries = [2026-12-18, 2027-01-15]",
        "expiries = [2026-11-13, 2027-01-15]",
        "underlyings.AAPL.surface",
        "expiries",
    ),
    (
        "expiries = [2026-12-18, 2027-01-15]",
        "expiries = [2026-11-20, 2027-01-15]",
        "underlyings.AAPL.surface",
        "expiries",
    ),
    (
        "expiries = [2026-12-18, 2027-01-15]",
        "expiries = [2027-01-15, 2026-12-18]",
        "underlyings.AAPL.surface",
        "expiries",
    ),
    (
        "expiries = [2026-12-18, 2027-01-15]",
        "expiries = [2026-12-18, 2027-01-15T16:00:00]",
        "underlyings.AAPL.surface",
        "expiries",
    ),
    ('sticky = "strike"', 'sticky = "delta"', "top level", "sticky"),
    ("rho = [-0.6, -0.6]", "rho = [-0.6, -1.5]", "underlyings.TSLA.surface", "rho"),
    ("b = [0.1, 0.2]", "b = [0.1, -0.2]", "underlyings.TSLA.surface", "b"),
    ("sigma = [0.1, 0.1]", "sigma = [0.1, 0.0]", "underlyings.TSLA.surface", "sigma"),
    ("a = [0.01, 0.05]", "a = [0.01, -0.5]", "underlyings.TSLA.surface", "a"),
    ("a = [0.01, 0.05]", "a = [0.01]", "underlyings.TSLA.surface", "a"),
    ("m = [0.0, 0.0]\n", "", "underlyings.TSLA.surface", "m"),
    ("vol = 0.22", "vol = -0.22", "underlyings.MSFT.surface", "vol"),
    ("vol = 0.16", "vol = 0.0", "underlyings.SPY", "vol"),
    ("vol = 0.16", "vol = 0.16\nspto = 1.0", "underlyings.SPY", "spto"),  # typo: unknown field
    ("rate = 0.04\n", "", "underlyings.SPY", "rate"),  # no default and no override
    ('index = "SPY"', 'index = "QQQ"', "top level", "index"),
    ("beta = 1.0", "beta = 0.9", "underlyings.SPY", "beta"),
    ("valuation = 2026-11-20", "valuation = 09:30:00", "top level", "valuation"),  # a time, no date
    ("valuation = 2026-11-20\n", "", "top level", "valuation"),
    # the name of the whole book's row and column in the risk tables: an underlying so named would
    # give two rows called "book" in `optmm risk`'s exposures
    (
        "[underlyings.AAPL]",
        "[underlyings.book]\nspot = 10.0\nvol = 0.2\n\n[underlyings.AAPL]",
        "underlyings.book",
        "spot",
    ),
]


@pytest.mark.parametrize(("old", "new", "table", "field"), BAD_FILES)
def test_bad_market_file_names_file_table_and_field(
    tmp_path: Path, old: str, new: str, table: str, field: str
) -> None:
    assert old in GOOD_WITH_SPOTS
    with pytest.raises(MarketError) as info:
        load_text(tmp_path, GOOD_WITH_SPOTS.replace(old, new, 1))
    message = str(info.value)
    assert "bad_market.toml" in message
    assert f"{table}: field '{field}'" in message
    assert (info.value.table, info.value.field) == (table, field)


def test_missing_spot_on_a_surface_only_underlying(tmp_path: Path) -> None:
    with pytest.raises(MarketError, match=r"bad_market\.toml: underlyings\.TSLA: field 'spot': missing"):
        load_text(tmp_path, GOOD)


def test_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(MarketError, match=r"bad_market\.toml: .*not valid TOML"):
        load_text(tmp_path, GOOD_WITH_SPOTS + "\nspot = = 3\n")
