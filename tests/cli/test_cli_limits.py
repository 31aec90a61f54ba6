"""``optmm limits`` (optmm.cli.limits): the rows of ``limit_utilisation``, the exit codes of
``--fail-on``, and bad input as one ``optmm: error:`` line with exit code 2 and no output file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm import Book, Market
from optmm.risk import LimitSet
from optmm.risk.utilisation import limit_utilisation

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
DESK = str(ROOT / "scenarios" / "limits" / "desk.toml")
TIGHT = str(ROOT / "scenarios" / "limits" / "tight.toml")
PNL = ["--pnl", "-9000", "--high-water", "5000"]


def limits_cmd(limits: str = TIGHT, *extra: str) -> list[str]:
    return ["limits", BOOK, "--market", MARKET, "--limits", limits, *PNL, *extra]


@pytest.fixture(scope="module")
def expected() -> pd.DataFrame:
    return limit_utilisation(
        Book.load(BOOK), Market.load(MARKET), LimitSet.load(TIGHT), pnl=-9000.0, high_water=5000.0
    )


def test_csv_and_json_equal_the_library(capsys: pytest.CaptureFixture[str], expected: pd.DataFrame) -> None:
    code, out, err = run(capsys, *limits_cmd(TIGHT, "--format", "csv"))
    assert (code, err) == (0, "")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), expected, check_exact=True)
    code, out, _ = run(capsys, *limits_cmd(TIGHT, "--format", "json"))
    assert code == 0
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(out)), expected, check_exact=True)


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *limits_cmd(TIGHT))
    assert code == 0
    lines = out.splitlines()
    assert "30 limits, 12 hard breaches, 5 soft" in lines[0]
    assert lines[1].split() == [
        "scope",
        "metric",
        "measured",
        "soft",
        "hard",
        "used",
        "layer",
        "status",
        "limit",
    ]
    first = lines[2].split()
    assert first[:3] == ["SPY", "gamma_dollars_1pct", "-356,090.23"] and first[5] == "712.2%"
    assert len(lines) == 2 + 30


@pytest.mark.parametrize(
    ("limits", "fail_on", "code"),
    [
        (TIGHT, "never", 0),
        (TIGHT, "hard", 1),
        (TIGHT, "soft", 1),
        (DESK, "hard", 0),  # SPY's gamma is past its soft level only
        (DESK, "soft", 1),
    ],
)
def test_fail_on(capsys: pytest.CaptureFixture[str], limits: str, fail_on: str, code: int) -> None:
    got, out, err = run(capsys, *limits_cmd(limits, "--fail-on", fail_on))
    assert got == code and err == ""
    assert out.startswith("limit utilisation:")  # the report is printed whatever the exit code


def test_output_file_even_on_breach(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "limits.csv"
    code, out, _ = run(
        capsys, *limits_cmd(TIGHT, "--fail-on", "hard", "--format", "csv", "--output", str(target))
    )
    assert code == 1 and out == ""
    assert len(pd.read_csv(target)) == 30


def test_pnl_needed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = run(capsys, "limits", BOOK, "--market", MARKET, "--limits", DESK, "--output", str(target))
    assert_usage_error(result, "limit [book] daily_loss", "desk.toml", "--pnl")
    assert not target.exists()
    result = run(capsys, "limits", BOOK, "--market", MARKET, "--limits", DESK, "--pnl", "-5")
    assert_usage_error(result, "limit [book] drawdown", "--high-water")
    result = run(
        capsys, "limits", BOOK, "--market", MARKET, "--limits", DESK, "--pnl", "10", "--high-water", "5"
    )
    assert_usage_error(result, "below the P&L")
    result = run(capsys, "limits", BOOK, "--market", MARKET, "--limits", DESK, "--pnl", "nan")
    assert_usage_error(result, "--pnl", "finite")


def test_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_usage_error(run(capsys, *limits_cmd(str(tmp_path / "none.toml"))), "none.toml: no such file")
    assert_usage_error(run(capsys, *limits_cmd(str(tmp_path))), "--limits", "is a directory")
    bad = tmp_path / "bad.toml"
    bad.write_text("[book]\ndelta_shares = 5\n")
    assert_usage_error(run(capsys, *limits_cmd(str(bad))), "bad.toml: [book] field 'delta_shares'")
    assert_usage_error(
        run(capsys, "limits", BOOK, "--market", str(tmp_path / "m.toml"), "--limits", TIGHT),
        "m.toml: no such file",
    )
    assert_usage_error(run(capsys, "limits", BOOK, "--market", MARKET), "--limits")
    assert_usage_error(run(capsys, *limits_cmd(TIGHT, "--format", "parquet")), "--format")


def test_var_limit_measured_on_the_history_as_optmm_var_measures_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A `var` limit is measured by the controller on the --history scenarios (time passing as the
    horizon says), and equals `optmm var`'s VaR at the set's level: one definition, two callers."""
    limits = tmp_path / "var.toml"
    limits.write_text(
        'name = "var"\n[underlying]\ndelta_shares = 1e9\n'
        "[book]\nvar = { hard = 30000, soft = 20000, level = 0.99 }\n"
    )
    history = ["--history", str(ROOT / "scenarios" / "history" / "spx_vix.csv"), "--proxy", "SPY=SPX:1"]
    for horizon in ("1", "5"):
        code, out, err = run(
            capsys, "limits", BOOK, "--market", MARKET, "--limits", str(limits), *history,
            "--horizon", horizon, "--format", "csv",
        )  # fmt: skip
        assert (code, err) == (0, ""), err
        rows = pd.read_csv(io.StringIO(out))
        var_row = rows[rows["metric"] == "var"].iloc[0]
        code, out, err = run(
            capsys, "var", BOOK, "--market", MARKET, *history, "--horizon", horizon, "--levels", "99",
            "--format", "json",
        )  # fmt: skip
        assert code == 0, err
        doc = json.loads(out)
        var99 = next(r for r in doc["table"] if r["level"] == 0.99)["var"]
        assert var_row["measured"] == pytest.approx(var99, rel=1e-9)
        assert var_row["status"] == (
            "hard breach" if var99 > 30000 else "soft breach" if var99 > 20000 else "ok"
        )
    assert_usage_error(run(capsys, "limits", BOOK, "--market", MARKET, "--limits", str(limits)), "--history")
