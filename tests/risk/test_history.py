"""History files and historical scenarios (optmm.risk.history).

Scenario moves are checked against values written out by hand from a tiny history; file errors must
name the file, the 1-based data row and the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm.market import Market
from optmm.risk.history import History, HistoryError, load_history

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "scenarios" / "history" / "spx_vix.csv"
MARKET = ROOT / "scenarios" / "examples" / "market.toml"

TINY = """date,underlying,spot,atm_vol
2024-01-02,AAA,100,0.20
2024-01-02,BBB,50,0.30
2024-01-03,AAA,110,0.25
2024-01-03,BBB,45,0.33
2024-01-04,AAA,99,0.22
2024-01-04,BBB,54,0.30
2024-01-05,AAA,99,0.22
2024-01-05,BBB,54,0.31
"""


def write(tmp_path: Path, text: str, name: str = "h.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.load(MARKET)


def test_scenarios_by_hand(tmp_path: Path) -> None:
    h = load_history(write(tmp_path, TINY))
    sc = h.scenarios(["BBB", "AAA"])
    assert list(sc.dates.strftime("%Y-%m-%d")) == ["2024-01-03", "2024-01-04", "2024-01-05"]
    assert list(sc.spot_shift.columns) == ["AAA", "BBB"]
    # relative spot moves, absolute vol moves, day over day
    np.testing.assert_allclose(sc.spot_shift["AAA"], [0.1, 99 / 110 - 1, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sc.spot_shift["BBB"], [-0.1, 0.2, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sc.vol_shift["AAA"], [0.05, -0.03, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sc.vol_shift["BBB"], [0.03, -0.03, 0.01], rtol=0, atol=1e-15)
    assert sc.horizon == 1 and sc.dates_dropped == 0 and sc.skew_shift is None and sc.longest_step == 1
    assert sc.start == pd.Timestamp("2024-01-02")
    assert list(sc.mapping["how"]) == ["own history", "own history"]


def test_horizon_windows_overlap(tmp_path: Path) -> None:
    sc = load_history(write(tmp_path, TINY)).scenarios(["AAA", "BBB"], horizon=2)
    assert list(sc.dates.strftime("%Y-%m-%d")) == ["2024-01-04", "2024-01-05"]
    np.testing.assert_allclose(sc.spot_shift["AAA"], [-0.01, 99 / 110 - 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sc.vol_shift["BBB"], [0.0, -0.02], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="horizon of 4 needs at least 5"):
        load_history(write(tmp_path, TINY)).scenarios(["AAA"], horizon=4)
    with pytest.raises(ValueError, match="horizon"):
        load_history(write(tmp_path, TINY)).scenarios(["AAA"], horizon=0)


def test_rows_in_any_order_and_parquet_equal_csv(tmp_path: Path) -> None:
    lines = TINY.splitlines()
    shuffled = "\n".join([lines[0], *reversed(lines[1:])]) + "\n"
    a = load_history(write(tmp_path, TINY)).scenarios(["AAA", "BBB"])
    b = load_history(write(tmp_path, shuffled, "s.csv")).scenarios(["AAA", "BBB"])
    frame = pd.read_csv(write(tmp_path, TINY))
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(tmp_path / "h.parquet", index=False)
    c = load_history(tmp_path / "h.parquet").scenarios(["AAA", "BBB"])
    for other in (b, c):
        pd.testing.assert_frame_equal(a.spot_shift, other.spot_shift)
        pd.testing.assert_frame_equal(a.vol_shift, other.vol_shift)


def test_a_date_missing_from_one_series_is_dropped_and_counted(tmp_path: Path) -> None:
    text = TINY.replace("2024-01-03,BBB,45,0.33\n", "")
    sc = load_history(write(tmp_path, text)).scenarios(["AAA", "BBB"])
    assert list(sc.dates.strftime("%Y-%m-%d")) == ["2024-01-04", "2024-01-05"]
    assert sc.dates_dropped == 1 and sc.longest_step == 2
    # the first return spans the gap: 01-02 -> 01-04
    np.testing.assert_allclose(sc.spot_shift.iloc[0], [-0.01, 0.08], rtol=0, atol=1e-15)
    # one series alone is not affected by the other's gap
    alone = load_history(write(tmp_path, text)).scenarios(["AAA"])
    assert len(alone) == 3 and alone.dates_dropped == 0


def test_proxies_explicit_by_beta_and_chained(tmp_path: Path, market: Market) -> None:
    h = load_history(write(tmp_path, TINY.replace("AAA", "SPY")))
    # AAPL and TSLA: no history, market betas 1.15 and 1.90 to the index SPY; CCC an explicit proxy
    sc = h.scenarios(["AAPL", "TSLA", "SPY", "CCC"], market, proxies={"CCC": ("BBB", -0.5)})
    spy = np.array([0.1, 99 / 110 - 1, 0.0])
    np.testing.assert_allclose(sc.spot_shift["AAPL"], 1.15 * spy, rtol=1e-15, atol=0)
    np.testing.assert_allclose(sc.spot_shift["TSLA"], 1.90 * spy, rtol=1e-15, atol=0)
    np.testing.assert_allclose(sc.spot_shift["CCC"], [0.05, -0.1, 0.0], rtol=1e-15, atol=1e-17)
    # vol moves are the proxy's, unscaled
    np.testing.assert_array_equal(sc.vol_shift["TSLA"], sc.vol_shift["SPY"])
    np.testing.assert_array_equal(sc.vol_shift["CCC"], [0.33 - 0.30, 0.30 - 0.33, 0.31 - 0.30])
    assert sc.mapping.loc["TSLA", "how"] == "beta to index" and sc.mapping.loc["CCC", "how"] == "proxy"
    # a chain: the index itself by proxy; betas multiply
    h2 = load_history(write(tmp_path, TINY.replace("AAA", "SPX"), "x.csv"))
    sc2 = h2.scenarios(["AAPL", "SPY"], market, proxies={"SPY": ("SPX", 2.0)})
    np.testing.assert_allclose(sc2.spot_shift["AAPL"], 2.0 * 1.15 * spy, rtol=1e-15, atol=0)
    assert sc2.mapping.loc["AAPL", "via"] == "AAPL -> SPY -> SPX"
    # an explicit proxy wins over the underlying's own history
    sc3 = h.scenarios(["BBB"], proxies={"BBB": ("SPY", 1.0)})
    np.testing.assert_allclose(sc3.spot_shift["BBB"], spy, rtol=1e-15, atol=0)


def test_underlying_without_history_or_proxy_is_refused_by_name(tmp_path: Path, market: Market) -> None:
    h = load_history(write(tmp_path, TINY))
    with pytest.raises(ValueError, match=r"no history for ZZZ and no proxy"):
        h.scenarios(["AAA", "ZZZ"], market)
    # by beta to an index that has no history: named with the way it was reached
    with pytest.raises(ValueError, match=r"no history for SPY \(reached by AAPL -> SPY\)"):
        h.scenarios(["AAPL"], market)
    with pytest.raises(ValueError, match="cycle"):
        h.scenarios(["X"], proxies={"X": ("Y", 1.0), "Y": ("X", 1.0)})
    with pytest.raises(ValueError, match="finite"):
        h.scenarios(["X"], proxies={"X": ("AAA", float("nan"))})


def test_skew_changes_are_given(tmp_path: Path) -> None:
    text = "date,underlying,spot,atm_vol,skew\n2024-01-02,A,1,0.2,0.05\n2024-01-03,A,1,0.2,0.07\n"
    sc = load_history(write(tmp_path, text)).scenarios(["A"])
    assert sc.skew_shift is not None
    np.testing.assert_allclose(sc.skew_shift["A"], [0.02], rtol=1e-12)


@pytest.mark.parametrize(
    ("text", "row", "field", "fragment"),
    [
        ("date,underlying,spot\n2024-01-02,A,1\n", 0, "atm_vol", "missing column"),
        ("date,underlying,spot,atm_vol,Spot\n", 0, "spot", "duplicated column"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,1,0.2\n2024-13-02,A,1,0.2\n", 2, "date", "not a date"),
        ("date,underlying,spot,atm_vol\n,A,1,0.2\n", 1, "date", "missing value"),
        ("date,underlying,spot,atm_vol\n2024-01-02,,1,0.2\n", 1, "underlying", "missing value"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,0,0.2\n", 1, "spot", "must be > 0"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,-3,0.2\n", 1, "spot", "must be > 0"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,abc,0.2\n", 1, "spot", "'abc' is not a number"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,inf,0.2\n", 1, "spot", "not a finite number"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,1,20\n", 1, "atm_vol", "write 0.2 for 20%"),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,1,0\n", 1, "atm_vol", "must be > 0"),
        (
            "date,underlying,spot,atm_vol\n2024-01-02,A,1,0.2\n2024-01-02,A,2,0.2\n",
            2,
            "date",
            "the first is row 1",
        ),
        ("date,underlying,spot,atm_vol\n2024-01-02,A,1,0.2,9\n", 1, "atm_vol", "extra '9'"),
        ("date,underlying,spot,atm_vol\n", 0, "<file>", "no observations"),
        ("", 0, "<file>", "empty file"),
    ],
)
def test_file_errors_name_file_row_and_field(
    tmp_path: Path, text: str, row: int, field: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(HistoryError) as info:
        load_history(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: row {row}: field '{field}': "), msg
    assert fragment in msg and "\n" not in msg


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r"unknown format '\.txt'"):
        load_history(write(tmp_path, TINY, "h.txt"))
    with pytest.raises(FileNotFoundError):
        load_history(tmp_path / "nope.csv")


def test_from_frame_validates_as_a_file() -> None:
    frame = pd.DataFrame({"Date": ["2024-01-02"], "Underlying": ["A"], "Spot": [-1.0], "ATM_vol": [0.2]})
    with pytest.raises(HistoryError, match=r"<frame>: row 1: field 'spot'"):
        History.from_frame(frame)


def test_the_bundled_example(market: Market) -> None:
    h = load_history(EXAMPLE)
    assert h.underlyings() == ["SPX"]
    assert len(h.frame) == 1257
    assert h.frame["date"].min() == pd.Timestamp("2014-01-03")
    assert h.frame["date"].max() == pd.Timestamp("2018-12-31")
    assert h.scenarios(["SPX"]).longest_step == 4  # a weekend and a Monday holiday
    # 2018-12-26: the S&P 500 closed at 2467.699951 after 2351.100098 (+4.96%), VIX 30.41 after 36.07
    sc = h.scenarios(["SPY"], market, proxies={"SPY": ("SPX", 1.0)})
    day = pd.Timestamp("2018-12-26")
    assert sc.spot_shift.loc[day, "SPY"] == pytest.approx(2467.699951 / 2351.100098 - 1, rel=1e-14)
    assert sc.vol_shift.loc[day, "SPY"] == pytest.approx(0.3041 - 0.3607, rel=1e-12)


def test_parquet_errors_show_plain_values(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"date": pd.to_datetime(["2024-01-02", "2024-01-03"]), "underlying": "A", "spot": [1.0, 2.0]}
    )
    frame.assign(atm_vol=[0.2, float("inf")]).to_parquet(tmp_path / "a.parquet", index=False)
    with pytest.raises(HistoryError, match=r"row 2: field 'atm_vol': inf is not a finite number$"):
        load_history(tmp_path / "a.parquet")
    frame.assign(atm_vol=0.2, spot=[1.0, -2.0]).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(HistoryError, match=r"row 2: field 'spot': -2.0 must be > 0$"):
        load_history(tmp_path / "b.parquet")


def test_no_underlyings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no underlyings"):
        load_history(write(tmp_path, TINY)).scenarios([])
