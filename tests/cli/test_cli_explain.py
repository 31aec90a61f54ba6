"""``optmm explain`` (optmm.cli.explain): the table of ``pnl_explain``, and bad input as one
``optmm: error:`` line with exit code 2 and no output file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm import Book, Market
from optmm.risk.explain import Trades, pnl_explain

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scenarios" / "examples"
BOOK = str(EXAMPLES / "book.csv")
BEFORE = str(EXAMPLES / "market.toml")
AFTER = str(EXAMPLES / "market_next.toml")
TRADES = str(EXAMPLES / "trades.csv")


def explain_cmd(*extra: str) -> list[str]:
    return ["explain", BOOK, "--market", BEFORE, "--market-today", AFTER, *extra]


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    ex = pnl_explain(Book.load(BOOK), Market.load(BEFORE), Market.load(AFTER), Trades.load(TRADES))
    return ex.table.reset_index()


def test_csv_and_json_equal_the_library(capsys: pytest.CaptureFixture[str], expected: pd.DataFrame) -> None:
    code, out, err = run(capsys, *explain_cmd("--trades", TRADES, "--format", "csv"))
    assert (code, err) == (0, "")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), expected, check_exact=True)
    code, out, _ = run(capsys, *explain_cmd("--trades", TRADES, "--format", "json"))
    assert code == 0
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(out)), expected, check_exact=True)


def test_by_position(capsys: pytest.CaptureFixture[str]) -> None:
    ex = pnl_explain(Book.load(BOOK), Market.load(BEFORE), Market.load(AFTER), Trades.load(TRADES))
    code, out, _ = run(capsys, *explain_cmd("--trades", TRADES, "--by", "position", "--format", "json"))
    assert code == 0
    got = pd.DataFrame(json.loads(out))
    want = ex.by_position()
    assert list(got.columns) == list(want.columns) and list(got["id"]) == list(want["id"])
    for col in ("actual", "delta", "new_trades", "unexplained"):
        assert got[col].tolist() == want[col].tolist()
    assert got.loc[got["kind"] == "STOCK", "expiry"].isna().all()  # no date for stock: null


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *explain_cmd())
    assert code == 0
    lines = out.splitlines()
    assert "(2026-11-20) to" in lines[0] and "3 days, no trades" in lines[0]
    assert lines[2].split()[:3] == ["underlying", "actual", "delta"]
    assert [line.split()[0] for line in lines[3:]] == ["AAPL", "MSFT", "SPY", "TSLA", "total"]
    assert lines[-1].split()[-2] == "0.00"  # no new trades


def test_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, expected: pd.DataFrame) -> None:
    target = tmp_path / "explain.csv"
    code, out, _ = run(capsys, *explain_cmd("--trades", TRADES, "--format", "csv", "--output", str(target)))
    assert (code, out) == (0, "")
    pd.testing.assert_frame_equal(pd.read_csv(target), expected, check_exact=True)


def test_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    out = ["--output", str(target)]
    bad = tmp_path / "trades.csv"
    bad.write_text("underlying,kind,strike,expiry,quantity,price\nSPY,put,580,2026-12-18,20,\n")
    assert_usage_error(
        run(capsys, *explain_cmd("--trades", str(bad), *out)), "trades.csv: row 1: field 'price'"
    )
    bad.write_text("underlying,kind,strike,expiry,quantity\nSPY,put,580,2026-12-18,20\n")
    assert_usage_error(run(capsys, *explain_cmd("--trades", str(bad), *out)), "field 'price': missing column")
    bad.write_text("underlying,kind,strike,expiry,quantity,price\nNVDA,put,580,2026-12-18,20,3\n")
    assert_usage_error(
        run(capsys, *explain_cmd("--trades", str(bad), *out)), "row 1: field 'underlying'", "NVDA"
    )
    assert_usage_error(
        run(capsys, *explain_cmd("--trades", str(tmp_path / "no.csv"))), "no.csv: no such file"
    )
    # today's market dated before yesterday's: the two swapped
    swapped = ["explain", BOOK, "--market", AFTER, "--market-today", BEFORE, *out]
    assert_usage_error(run(capsys, *swapped), "is dated 2026-11-20, before yesterday's")
    missing = ["explain", BOOK, "--market", BEFORE, "--market-today", str(tmp_path / "t.toml")]
    assert_usage_error(run(capsys, *missing), "t.toml: no such file")
    assert_usage_error(run(capsys, "explain", BOOK, "--market", BEFORE), "--market-today")
    assert not target.exists()
