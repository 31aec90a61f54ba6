"""``optmm var`` (optmm.cli.var) on the example book, market and bundled history.

Figures are checked against the library (``historical_var``, ``backtest``); bad input must give exit
code 2, ONE ``optmm: error: ...`` line naming the file, row and field, and no output file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.book import Book
from optmm.market import Market
from optmm.risk.backtest import backtest
from optmm.risk.history import load_history
from optmm.risk.var import VarResult, historical_var

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
HISTORY = str(ROOT / "scenarios" / "history" / "spx_vix.csv")
VAR = ["var", BOOK, "--market", MARKET, "--history", HISTORY, "--proxy", "SPY=SPX:1"]


@pytest.fixture(scope="module")
def expected() -> VarResult:
    book, market = Book.load(BOOK), Market.load(MARKET)
    sc = load_history(HISTORY).scenarios(book.underlyings(), market, proxies={"SPY": ("SPX", 1.0)})
    return historical_var(book, market, sc)


def test_csv_equals_the_library(capsys: pytest.CaptureFixture[str], expected: VarResult) -> None:
    code, out, err = run(capsys, *VAR, "--format", "csv")
    assert code == 0 and err == ""
    frame = pd.read_csv(io.StringIO(out))
    pd.testing.assert_frame_equal(frame[["level", "var", "es", "tail", "scenarios"]], expected.table)
    for und in ["AAPL", "MSFT", "SPY", "TSLA"]:
        np.testing.assert_array_equal(frame[f"es_{und}"], expected.contributions.loc[und].to_numpy())
    assert (frame["horizon"] == 1).all()


def test_table_shows_levels_components_and_worst_days(
    capsys: pytest.CaptureFixture[str], expected: VarResult
) -> None:
    code, out, err = run(capsys, *VAR)
    assert code == 0 and err == ""
    assert "1256 scenarios of 1 trading day" in out
    assert "TSLA 1.9 x SPX (beta to index: TSLA -> SPY -> SPX)" in out
    for a in (0.95, 0.975, 0.99):
        assert f"{expected.var(a):,.2f}" in out and f"{expected.es(a):,.2f}" in out
    worst = expected.worst.iloc[0]
    assert f"{worst['date'].date().isoformat()} {worst['pnl']:,.2f}" in out


def test_json_and_pnl_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, expected: VarResult) -> None:
    pnl_path = tmp_path / "pnl.csv"
    code, out, err = run(capsys, *VAR, "--format", "json", "--levels", "99", "--pnl", str(pnl_path))
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert [r["level"] for r in doc["table"]] == [0.99]
    assert doc["table"][0]["es"] == expected.es(0.99)
    assert len(doc["pnl"]) == 1256 and doc["pnl"][0]["date"] == "2014-01-06"
    assert doc["worst"][0]["date"] == expected.worst["date"].iloc[0].date().isoformat()
    pnl = pd.read_csv(pnl_path, index_col="date")
    np.testing.assert_array_equal(pnl["book"].to_numpy(), expected.pnl.to_numpy())


def test_horizon_passes_time_and_levels(capsys: pytest.CaptureFixture[str]) -> None:
    book, market = Book.load(BOOK), Market.load(MARKET)
    sc = load_history(HISTORY).scenarios(book.underlyings(), market, horizon=5, proxies={"SPY": ("SPX", 1.0)})
    ref = historical_var(book, market, sc, levels=(0.9, 0.99))
    code, out, _ = run(capsys, *VAR, "--horizon", "5", "--levels", "90,99", "--format", "csv")
    assert code == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(io.StringIO(out))[["level", "var", "es", "tail", "scenarios"]], ref.table
    )


def test_realised_backtest(capsys: pytest.CaptureFixture[str], tmp_path: Path, expected: VarResult) -> None:
    realised = expected.pnl.iloc[-250:].rename("pnl")
    path = tmp_path / "realised.csv"
    realised.rename_axis("date").reset_index().assign(
        date=lambda f: f["date"].dt.strftime("%Y-%m-%d")
    ).to_csv(path, index=False)
    code, out, err = run(capsys, *VAR, "--realised", str(path), "--format", "csv")
    assert code == 0 and err == ""
    frame = pd.read_csv(io.StringIO(out))
    for _, row in frame.iterrows():
        bt = backtest(realised, expected.var(row["level"]), row["level"])
        assert row["exceptions"] == bt.exceptions
        assert row["kupiec_lr"] == bt.kupiec_lr and row["cc_p"] == bt.cc_p


def test_dask_equals_local(capsys: pytest.CaptureFixture[str]) -> None:
    code, local, _ = run(capsys, *VAR, "--format", "csv")
    code_d, dist, err = run(capsys, *VAR, "--format", "csv", "--dask", "local:2")
    assert code == code_d == 0, err
    a, b = pd.read_csv(io.StringIO(local)), pd.read_csv(io.StringIO(dist))
    pd.testing.assert_frame_equal(a, b, rtol=1e-9)


def write(tmp_path: Path, text: str, name: str = "h.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["var", BOOK, "--market", MARKET]
    out = tmp_path / "out.csv"
    missing = write(tmp_path, "date,underlying,spot\n2024-01-02,SPX,1\n")
    assert_usage_error(
        run(capsys, *base, "--history", missing, "--output", str(out)),
        f"{missing}: row 0: field 'atm_vol': missing column",
    )
    bad_row = write(tmp_path, "date,underlying,spot,atm_vol\n2024-01-02,SPX,1,0.2\n2024-01-03,SPX,-1,0.2\n")
    assert_usage_error(
        run(capsys, *base, "--history", bad_row), f"{bad_row}: row 2: field 'spot': -1.0 must be > 0"
    )
    # SPY (the index) has no history and no proxy: AAPL, MSFT, TSLA reach it by beta
    assert_usage_error(
        run(capsys, *base, "--history", HISTORY, "--output", str(out)), "no history for SPY", "--proxy SPY="
    )
    assert not out.exists()
    assert_usage_error(run(capsys, *base, "--history", str(tmp_path / "nope.csv")), "nope.csv: no such file")
    assert_usage_error(run(capsys, *VAR, "--levels", "0.99"), "levels are percents", "write 99 for 99%")
    assert_usage_error(run(capsys, *VAR, "--proxy", "TSLA=SPX"), "expected UNDERLYING=PROXY:BETA")
    assert_usage_error(run(capsys, *VAR, "--proxy", "NFLX=SPX:1.2"), "NFLX is not an underlying of the book")
    assert_usage_error(run(capsys, *VAR, "--horizon", "0"), "outside 1..250")
    realised = write(tmp_path, "date,pnl\n2024-01-02,1\n", "r.csv")
    assert_usage_error(run(capsys, *VAR, "--realised", realised, "--horizon", "2"), "1-day VaR")
    bad_realised = write(tmp_path, "date,pnl\n2024-01-02,abc\n", "r2.csv")
    assert_usage_error(
        run(capsys, *VAR, "--realised", bad_realised),
        f"{bad_realised}: row 1: field 'pnl': 'abc' is not a number",
    )


def test_empty_and_flat_books(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = write(tmp_path, "underlying,kind,strike,expiry,quantity\n", "empty.csv")
    assert_usage_error(
        run(capsys, "var", empty, "--market", MARKET, "--history", HISTORY), "the book has no positions"
    )
    # a long and a short of one call: no risk, VaR 0 (not -0), no driver, no NaN shown
    flat = write(
        tmp_path,
        "underlying,kind,strike,expiry,quantity\nSPY,call,600,2027-01-15,5\nSPY,call,600,2027-01-15,-5\n",
        "flat.csv",
    )
    code, out, err = run(
        capsys, "var", flat, "--market", MARKET, "--history", HISTORY, "--proxy", "SPY=SPX:1"
    )
    assert code == 0 and err == ""
    assert "nan" not in out.lower() and "-0.00" not in out
    code, out, _ = run(capsys, "var", flat, "--market", MARKET, "--history", HISTORY, "--proxy", "SPY=SPX:1",
                       "--format", "csv")  # fmt: skip
    assert (pd.read_csv(io.StringIO(out))[["var", "es"]] == 0.0).all().all()
