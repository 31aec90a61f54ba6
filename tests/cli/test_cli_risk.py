"""Tests of ``optmm risk`` and ``optmm scenario`` (optmm.cli.risk, optmm.cli.scenario) on the example book
and market.

Values are checked against the library (``exposures``, ``scenario_grid``, ``run_stress``); bad input
must give exit code 2, ONE ``optmm: error: ...`` line on stderr, no traceback and no output file.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.book import Book
from optmm.market import Market
from optmm.risk import exposures, load_stress, run_stress, scenario_grid

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
STRESS_FILES = sorted(str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml"))
UNDERLYINGS = ["AAPL", "MSFT", "SPY", "TSLA"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RISK = ["risk", BOOK, "--market", MARKET]
SCENARIO = ["scenario", BOOK, "--market", MARKET]


# --------------------------------------------------------------------------------------------------
# helpers


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden temporaries included) with its content."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def book() -> Book:
    return Book.load(BOOK)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market.load(MARKET)


@pytest.fixture(scope="module")
def expected_frames(book: Book, market: Market) -> dict[str, pd.DataFrame]:
    exp = exposures(book, market)
    # By underlying: each underlying with its beta and beta-weighted delta, then the book's line.
    bwd = exp.beta_weighted_delta()
    per_u = exp.by_underlying.copy()
    per_u.insert(1, "beta", [market.beta[u] for u in per_u.index])
    per_u["beta_delta_index_shares"] = per_u["delta_dollars"] * per_u["beta"] / market.spot["SPY"]
    per_u["beta_delta_index_dollars"] = per_u["delta_dollars"] * per_u["beta"]
    np.testing.assert_allclose(per_u["beta_delta_index_dollars"].sum(), bwd.index_dollars, rtol=1e-12)
    book_line = exp.total.reset_index(names="underlying")
    underlying = pd.concat([per_u.reset_index(), book_line], ignore_index=True)[
        ["underlying", *per_u.columns]
    ]
    return {
        "underlying": underlying,
        "expiry": exp.by_expiry.reset_index(),
        "position": exp.positions.reset_index(drop=True),
        "total": exp.total.reset_index(names="scope"),
    }


def _dates(values: pd.Series) -> list[str | None]:
    parsed = pd.to_datetime(values)
    return [None if pd.isna(v) else v.date().isoformat() for v in parsed]


def assert_frame_matches(got: pd.DataFrame, expected: pd.DataFrame, *, rtol: float = 1e-12) -> None:
    """Same columns in the same order, same rows; numbers to ``rtol`` relative, dates as days."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    assert len(expected) > 0
    for col in expected.columns:
        want = expected[col]
        if pd.api.types.is_datetime64_any_dtype(want):
            assert _dates(got[col]) == _dates(want), col
        elif pd.api.types.is_numeric_dtype(want):
            np.testing.assert_allclose(
                got[col].to_numpy(dtype=np.float64),
                want.to_numpy(dtype=np.float64),
                rtol=rtol,
                atol=0.0,
                equal_nan=True,
                err_msg=col,
            )
        else:
            assert got[col].astype(str).tolist() == want.astype(str).tolist(), col


def read_output(text: str, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    records = json.loads(text)
    assert isinstance(records, list) and records
    return pd.DataFrame.from_records(records, columns=list(records[0]))


# --------------------------------------------------------------------------------------------------
# optmm risk


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("by", ["underlying", "expiry", "position", "total"])
def test_risk_values_equal_exposures(
    capsys: pytest.CaptureFixture[str], expected_frames: dict[str, pd.DataFrame], by: str, fmt: str
) -> None:
    code, out, err = run(capsys, *RISK, "--by", by, "--format", fmt)
    assert (code, err) == (0, "")
    assert_frame_matches(read_output(out, fmt), expected_frames[by])


def test_risk_json_dates_are_iso_and_missing_values_null(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *RISK, "--by", "position", "--format", "json")
    assert code == 0
    records = {r["id"]: r for r in json.loads(out)}
    assert records["SPY-01"]["expiry"] == "2026-12-18"
    assert records["SPY-HEDGE"]["expiry"] is None
    assert records["SPY-HEDGE"]["vol"] is None
    assert records["SPY-05"]["vol"] == 0.175


def test_risk_table_shows_every_underlying_and_a_book_line(
    capsys: pytest.CaptureFixture[str], expected_frames: dict[str, pd.DataFrame]
) -> None:
    code, out, err = run(capsys, *RISK)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("exposures by underlying: ")
    assert "(53 positions;" in lines[0] and "valued 2026-11-20" in lines[0]
    firsts = [line.split()[0] for line in lines[2:] if line.strip()]
    assert firsts == [*UNDERLYINGS, "book"]
    by_u = expected_frames["underlying"].set_index("underlying")
    for line in lines[2:]:
        name = line.split()[0]
        if name in UNDERLYINGS:
            assert f"{by_u.loc[name, 'value']:,.2f}" in line
            assert f"{by_u.loc[name, 'delta_shares']:,.2f}" in line
    book_line = next(line for line in lines if line.split()[:1] == ["book"])
    total = expected_frames["total"].iloc[0]
    for col in ("value", "delta_dollars", "vega_per_vol_point", "beta_delta_index_dollars"):
        assert f"{total[col]:,.2f}" in book_line, col
    # Every column shows something: the per-underlying beta-weighted delta is filled in.
    header = lines[1].split()
    assert "beta_delta_index_shares" in header and "beta" in header
    aapl = next(line for line in lines if line.split()[:1] == ["AAPL"]).split()
    assert len(aapl) == len(header)
    assert (
        aapl[header.index("beta_delta_index_dollars")]
        == f"{by_u.loc['AAPL', 'beta_delta_index_dollars']:,.2f}"
    )


def test_risk_machine_formats_carry_the_book_line_and_beta_delta(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, expected_frames: dict[str, pd.DataFrame]
) -> None:
    """csv, json and parquet hold everything the table shows: the book line and the beta columns."""
    target = tmp_path / "u.parquet"
    code, out, err = run(capsys, *RISK, "--format", "parquet", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    got = pd.read_parquet(target)
    assert got["underlying"].tolist() == [*UNDERLYINGS, "book"]
    assert_frame_matches(got, expected_frames["underlying"])
    code, out, _ = run(capsys, *RISK, "--format", "json")
    book_record = json.loads(out)[-1]
    assert book_record["underlying"] == "book"
    assert book_record["beta_delta_index_dollars"] == pytest.approx(
        float(expected_frames["total"]["beta_delta_index_dollars"].iloc[0]), rel=1e-12
    )
    assert book_record["delta_shares"] is None  # shares of different stocks do not add


def test_risk_table_shows_small_numbers_and_vols_in_percent(capsys: pytest.CaptureFixture[str]) -> None:
    """A 0.175 vol shows as 17.50% (not 0.17), a year fraction with its digits; json keeps it exact."""
    code, out, err = run(capsys, *RISK, "--by", "position")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    header = lines[1].split()
    row = next(line for line in lines if line.split()[:1] == ["SPY-05"]).split()
    assert row[header.index("vol")] == "17.50%"
    t = row[header.index("t")]
    assert len(t.split(".")[1]) >= 3 and float(t) > 0
    code, out, _ = run(capsys, *RISK, "--by", "position", "--format", "csv")
    got = read_output(out, "csv").set_index("id")
    assert got.loc["SPY-05", "vol"] == 0.175


@pytest.mark.parametrize("by", ["position", "expiry", "total"])
def test_risk_parquet_round_trips(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    expected_frames: dict[str, pd.DataFrame],
    by: str,
) -> None:
    target = tmp_path / "risk.parquet"
    code, out, err = run(capsys, *RISK, "--by", by, "--format", "parquet", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert_frame_matches(pd.read_parquet(target), expected_frames[by])
    assert sorted(os.listdir(tmp_path)) == ["risk.parquet"]  # no temporary file left


def test_risk_output_writes_the_file_and_prints_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout_text, _ = run(capsys, *RISK, "--by", "expiry", "--format", "csv")
    assert code == 0
    target = tmp_path / "risk.csv"
    target.write_text("stale\n")
    for fmt in ("csv", "table"):
        code, out, err = run(capsys, *RISK, "--by", "expiry", "--format", fmt, "--output", str(target))
        assert (code, out, err) == (0, "", "")
        assert target.stat().st_size > 0
    assert target.read_text().startswith("exposures by expiry: ")
    new = tmp_path / "new.csv"
    code, out, err = run(capsys, *RISK, "--by", "expiry", "--format", "csv", "--output", str(new))
    assert (code, out, err) == (0, "", "")
    assert new.read_text() == stdout_text
    assert stat.S_IMODE(new.stat().st_mode) & 0o044 == 0o044  # readable like any other file
    assert sorted(os.listdir(tmp_path)) == ["new.csv", "risk.csv"]


def test_risk_subprocess_python_m_optmm(expected_frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "optmm", "risk", BOOK, "--market", MARKET, "--format", "csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_frame_matches(read_output(proc.stdout, "csv"), expected_frames["underlying"])


# --------------------------------------------------------------------------------------------------
# optmm scenario


def grid_for(book: Book, market: Market, spot_pct, vol_pts, **kwargs):
    return scenario_grid(
        book,
        market,
        spot_shocks=np.asarray(spot_pct, dtype=np.float64) / 100.0,
        vol_shocks=np.asarray(vol_pts, dtype=np.float64) / 100.0,
        **kwargs,
    )


def grid_part(got: pd.DataFrame) -> pd.DataFrame:
    """The grid's per-underlying rows of a machine output (not the book's rows, not the stresses)."""
    return got[(got["scenario"] == "grid") & (got["underlying"] != "book")].reset_index(drop=True)


def assert_long_pnl_matches(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = grid_part(got)
    assert len(got) == len(expected) > 0
    assert got["underlying"].tolist() == expected["underlying"].tolist()
    for col in ("spot_shock", "vol_shock", "days"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), atol=1e-12)
    np.testing.assert_allclose(got["pnl"].to_numpy(float), expected["pnl"].to_numpy(float), rtol=0, atol=1e-9)


def test_scenario_csv_equals_scenario_grid(
    capsys: pytest.CaptureFixture[str], book: Book, market: Market
) -> None:
    code, out, err = run(
        capsys, *SCENARIO, "--spot", "-10:10:5", "--vol", "-4:4:2", "--days", "3", "--format", "csv"
    )
    assert (code, err) == (0, "")
    expected = grid_for(book, market, [-10, -5, 0, 5, 10], [-4, -2, 0, 2, 4], days=3.0).pnl
    got = read_output(out, "csv")
    assert list(got.columns) == [
        "scenario", "file", "leg", "spot_shock", "vol_shock", "days", "shocked", "beta_weighted",
        "underlying", "pnl", "driver", "worst",
    ]  # fmt: skip
    assert_long_pnl_matches(got, expected)
    # The book's row of every cell, its driver, and the worst cell marked: what the table shows.
    book_rows = got[got["underlying"] == "book"]
    grid = grid_for(book, market, [-10, -5, 0, 5, 10], [-4, -2, 0, 2, 4], days=3.0)
    np.testing.assert_allclose(book_rows["pnl"].to_numpy(float), grid.matrix().to_numpy().ravel(), rtol=1e-12)
    worst = book_rows[book_rows["worst"]]
    w = grid.worst()
    assert len(worst) == 1 and worst["driver"].iloc[0] == w.driver
    assert (worst["spot_shock"].iloc[0], worst["vol_shock"].iloc[0]) == pytest.approx(
        (w.spot_shock, w.vol_shock)
    )


def test_scenario_json_default_grid_equals_scenario_grid(
    capsys: pytest.CaptureFixture[str], book: Book, market: Market
) -> None:
    code, out, err = run(capsys, *SCENARIO, "--format", "json")
    assert (code, err) == (0, "")
    expected = grid_for(book, market, np.arange(-20, 21, 2), np.arange(-10, 11, 2)).pnl
    assert len(expected) == 21 * 11 * len(UNDERLYINGS)
    assert_long_pnl_matches(read_output(out, "json"), expected)


def test_scenario_table_worst_line_matches_grid(
    capsys: pytest.CaptureFixture[str], book: Book, market: Market
) -> None:
    code, out, err = run(capsys, *SCENARIO, "--spot", "-15:15:5", "--vol", "-5:5:5", "--days", "1")
    assert (code, err) == (0, "")
    grid = grid_for(book, market, [-15, -10, -5, 0, 5, 10, 15], [-5, 0, 5], days=1.0)
    w = grid.worst()
    expected = (
        f"worst: {w.pnl:,.2f} at spot {100 * w.spot_shock:+.4g}%, vol {100 * w.vol_shock:+.4g}pt"
        f" (driver: {w.driver})"
    )
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("worst:")] == [expected]
    assert lines[0].startswith(
        "book P&L (market's currency) valued 2026-11-20: spot shock (rows) x vol shock"
    )
    assert "1 days forward, shocked: all underlyings" in lines[0]
    assert lines[1].split() == ["-5pt", "+0pt", "+5pt"]
    matrix = grid.matrix()
    for i, label in enumerate(["-15%", "-10%", "-5%", "+0%", "+5%", "+10%", "+15%"]):
        row = lines[2 + i].split()
        assert row[0] == label
        assert row[1:] == [f"{v:,.0f}" for v in matrix.iloc[i]]


def test_scenario_stress_lists_every_leg_worst_first(
    capsys: pytest.CaptureFixture[str], book: Book, market: Market
) -> None:
    assert len(STRESS_FILES) >= 2
    results = {}
    for path in STRESS_FILES:
        stress = load_stress(path)
        results[stress.name] = run_stress(book, market, stress)
    worst_first = sorted(results, key=lambda name: results[name].pnl)

    code, out, err = run(
        capsys, *SCENARIO, "--spot", "0", "--vol", "0", "--stress", *STRESS_FILES, "--format", "json"
    )
    assert (code, err) == (0, "")
    rows = [r for r in json.loads(out) if r["scenario"] != "grid"]
    assert list(dict.fromkeys(r["scenario"] for r in rows)) == worst_first
    for r in rows:
        res = results[r["scenario"]]
        assert r["pnl"] == res.table.loc[r["leg"], r["underlying"]]  # exact: full precision
        assert r["spot_shock"] == res.legs.loc[r["leg"], "spot"]
        assert r["vol_shock"] == res.legs.loc[r["leg"], "vol"]
        if r["underlying"] == "book":
            assert r["driver"] == res.legs.loc[r["leg"], "driver"]
            assert r["worst"] == (r["leg"] == res.worst_leg)
    assert {r["underlying"] for r in rows} == {*UNDERLYINGS, "book"}

    code, out, err = run(capsys, *SCENARIO, "--spot", "0", "--vol", "0", "--stress", *STRESS_FILES)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stresses, worst first"))
    header = lines[start + 1].split()
    assert header[-6:] == [*UNDERLYINGS, "book", "driver"]
    table_rows = lines[start + 2 :]
    assert len(table_rows) == sum(len(r.legs) for r in results.values())
    seen = []
    for line in table_rows:
        name = next(n for n in results if line.strip().startswith(n))
        seen.append(name)
        res = results[name]
        leg = line.strip()[len(name) :].split()[0]
        cells = line.split()
        assert cells[-1] == res.legs.loc[leg, "driver"]
        assert cells[-6:-1] == [f"{res.table.loc[leg, u]:,.0f}" for u in [*UNDERLYINGS, "book"]]
        assert f"{100 * res.legs.loc[leg, 'vol']:+.4g}pt" in cells
    assert list(dict.fromkeys(seen)) == worst_first
    # Shocks shown with their units: the index crash is a beta-weighted -20% with +25 vol points.
    crash = next(line for line in table_rows if line.strip().startswith("Index crash"))
    assert "-20% x beta" in crash and "+25pt" in crash


def test_scenario_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "grid.png"
    code, out, err = run(capsys, *SCENARIO, "--spot", "-10:10:5", "--vol", "-5:5:5", "--plot", str(png))
    assert (code, err) == (0, "")
    assert "worst:" in out
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100
    assert data.endswith(b"IEND\xaeB`\x82")
    assert sorted(os.listdir(tmp_path)) == ["grid.png"]


def test_scenario_negative_values_after_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *SCENARIO, "--spot", "-10:10:5", "--vol", "-5,0,5", "--format", "csv")
    assert (code, err) == (0, "")
    got = read_output(out, "csv")
    np.testing.assert_allclose(sorted(got["spot_shock"].unique()), [-0.1, -0.05, 0.0, 0.05, 0.1], atol=1e-15)
    np.testing.assert_allclose(sorted(got["vol_shock"].unique()), [-0.05, 0.0, 0.05], atol=1e-15)


def test_scenario_underlying_limits_the_shock(
    capsys: pytest.CaptureFixture[str], book: Book, market: Market
) -> None:
    args = ["--spot", "-10:10:10", "--vol", "-5:5:5", "--underlying", "AAPL"]
    code, out, err = run(capsys, *SCENARIO, *args, "--format", "csv")
    assert (code, err) == (0, "")
    got = read_output(out, "csv")
    assert_long_pnl_matches(got, grid_for(book, market, [-10, 0, 10], [-5, 0, 5], underlying="AAPL").pnl)
    others = grid_part(got)[grid_part(got)["underlying"] != "AAPL"]
    assert len(others) == 3 * 3 * 3
    np.testing.assert_allclose(others["pnl"].to_numpy(float), 0.0, atol=1e-6)
    assert np.abs(got.loc[got["underlying"] == "AAPL", "pnl"].to_numpy(float)).max() > 1000.0
    assert set(got["shocked"]) == {"AAPL"}

    code, out, err = run(capsys, *SCENARIO, *args)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].endswith(", shocked: AAPL only")
    assert "(driver: AAPL)" in out


def test_scenario_beta_weighted(capsys: pytest.CaptureFixture[str], book: Book, market: Market) -> None:
    assert market.index == "SPY" and market.beta["AAPL"] != 1.0
    code, out, err = run(
        capsys, *SCENARIO, "--spot", "-10:10:10", "--vol", "0", "--beta-weighted", "--format", "csv"
    )
    assert (code, err) == (0, "")
    got = read_output(out, "csv")
    weighted = grid_for(book, market, [-10, 0, 10], [0], beta_weighted=True).pnl
    plain = grid_for(book, market, [-10, 0, 10], [0]).pnl
    assert_long_pnl_matches(got, weighted)
    aapl = (weighted["underlying"] == "AAPL") & (weighted["spot_shock"] != 0.0)
    assert np.all(np.abs(weighted.loc[aapl, "pnl"].to_numpy() - plain.loc[aapl, "pnl"].to_numpy()) > 1.0)

    code, out, err = run(capsys, *SCENARIO, "--spot", "-10:10:10", "--vol", "0", "--beta-weighted")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].endswith("all underlyings, spot shocks are index moves x beta")


def test_scenario_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = [*SCENARIO, "--spot", "-5:5:5", "--vol", "0"]
    _, table, _ = run(capsys, *args)
    target = tmp_path / "grid.txt"
    code, out, err = run(capsys, *args, "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_text() == table
    assert sorted(os.listdir(tmp_path)) == ["grid.txt"]


# --------------------------------------------------------------------------------------------------
# errors: one line, exit code 2, no traceback, nothing written


@pytest.fixture
def bad_book(tmp_path: Path) -> Path:
    lines = Path(BOOK).read_text().splitlines()
    lines.insert(3, "BAD-1,SPY,straddle,560,2026-12-18,5,,")  # data row 3
    path = tmp_path / "bad_book.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def market_without_tsla(tmp_path: Path) -> Path:
    text = Path(MARKET).read_text()
    head = text[: text.index("[underlyings.TSLA]")]
    assert "TSLA" not in head.replace("# ", "").split("[underlyings.SPY]")[1]
    path = tmp_path / "market_no_tsla.toml"
    path.write_text(head)
    Market.load(path)  # a valid market, just without TSLA
    return path


@pytest.fixture
def market_without_index(tmp_path: Path) -> Path:
    text = Path(MARKET).read_text()
    path = tmp_path / "market_no_index.toml"
    path.write_text(re.sub(r'(?m)^index = "SPY".*$', "", text))
    assert Market.load(path).index is None
    return path


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_error_missing_book(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    missing = str(tmp_path / "nope.csv")
    assert_usage_error(run(capsys, command, missing, "--market", MARKET), missing)


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_error_missing_market(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    missing = str(tmp_path / "nope.toml")
    assert_usage_error(run(capsys, command, BOOK, "--market", missing), missing)


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_error_bad_book_row(capsys: pytest.CaptureFixture[str], bad_book: Path, command: str) -> None:
    assert_usage_error(
        run(capsys, command, str(bad_book), "--market", MARKET),
        str(bad_book),
        "row 3",
        "'kind'",
        "straddle",
    )


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_error_market_lacks_an_underlying(
    capsys: pytest.CaptureFixture[str], market_without_tsla: Path, command: str
) -> None:
    assert_usage_error(
        run(capsys, command, BOOK, "--market", str(market_without_tsla)), "TSLA", "'underlying'", BOOK
    )


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--spot", "20:-20:5", "20:-20:5"),
        ("--vol", "a:b:c", "a:b:c"),
        ("--spot", "-20:20:0", "STEP > 0"),
        ("--spot", "1:2:3:4", "1:2:3:4"),
        ("--spot", "0:1e300:1e-300", "more than"),  # the point count overflows
        ("--spot", "0:inf:1", "finite"),
        ("--spot", "0:1e7:1", "more than"),  # refused before allocating
        ("--vol", "1,1", "duplicated"),
        ("--spot", "-100:0:50", "-1"),  # a spot of 0
    ],
)
def test_error_bad_range(capsys: pytest.CaptureFixture[str], option: str, value: str, fragment: str) -> None:
    assert_usage_error(run(capsys, *SCENARIO, option, value), fragment)


@pytest.mark.parametrize("days", ["-1", "inf", "soon"])
def test_error_bad_days(capsys: pytest.CaptureFixture[str], days: str) -> None:
    assert_usage_error(run(capsys, *SCENARIO, "--days", days), "--days")


def test_error_unknown_underlying(capsys: pytest.CaptureFixture[str]) -> None:
    assert_usage_error(run(capsys, *SCENARIO, "--underlying", "NFLX"), "--underlying", "NFLX", "AAPL")


def test_error_beta_weighted_without_index(
    capsys: pytest.CaptureFixture[str], market_without_index: Path
) -> None:
    assert_usage_error(
        run(capsys, "scenario", BOOK, "--market", str(market_without_index), "--beta-weighted"), "index"
    )


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('name = "x"\n[[legs]]\nspot = "a lot"\n', ("leg 1", "'spot'")),
        ('name = "x"\n[[legs]]\nspot = -0.1\ncolour = "red"\n', ("leg 1", "'colour'")),
        ('name = "x"\n[[legs]\nspot = -0.1\n', ("not valid TOML",)),
        ('description = "no name"\n[[legs]]\nspot = -0.1\n', ("'name'",)),
    ],
)
def test_error_malformed_stress(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "bad_stress.toml"
    path.write_text(content)
    assert_usage_error(run(capsys, *SCENARIO, "--stress", STRESS_FILES[0], str(path)), str(path), *fragments)


def test_error_missing_stress_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    assert_usage_error(run(capsys, *SCENARIO, "--stress", missing), missing)


def test_error_parquet_needs_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert_usage_error(run(capsys, *RISK, "--format", "parquet"), "--output")


@pytest.mark.parametrize(
    "args",
    [
        [*RISK, "--format", "csv", "--output", "{missing}/risk.csv"],
        [*RISK, "--format", "parquet", "--output", "{missing}/risk.parquet"],
        [*RISK, "--output", "{missing}/risk.txt"],
        [*SCENARIO, "--output", "{missing}/grid.txt"],
        [*SCENARIO, "--format", "csv", "--output", "{missing}/grid.csv"],
        [*SCENARIO, "--plot", "{missing}/grid.png"],
        [*SCENARIO, "--format", "json", "--output", "{tmp}/grid.json", "--plot", "{missing}/grid.png"],
        [*RISK, "--format", "csv", "--output", "{tmp}"],
    ],
)
def test_error_output_into_missing_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "keep.txt").write_text("unchanged\n")
    before = snapshot(tmp_path)
    missing = str(tmp_path / "no" / "such" / "dir")
    argv = [a.format(missing=missing, tmp=tmp_path) for a in args]
    assert_usage_error(run(capsys, *argv))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "extra",
    [
        ["--spot", "20:-20:5"],
        ["--days", "-1"],
        ["--underlying", "NFLX"],
        ["--stress", "{tmp}/bad_stress.toml"],
        ["--stress", "{tmp}/nope.toml"],
        ["--spot", "-100:0:50"],
        ["--plot", "{tmp}/missing/grid.png"],
    ],
)
@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_error_leaves_no_partial_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], fmt: str
) -> None:
    (tmp_path / "bad_stress.toml").write_text('name = "x"\n[[legs]]\nvol = "up"\n')
    (tmp_path / "existing.csv").write_text("old content\n")
    before = snapshot(tmp_path)
    for output in ("new.csv", "existing.csv"):
        argv = [*SCENARIO, "--format", fmt, "--output", str(tmp_path / output)]
        argv += [a.format(tmp=tmp_path) for a in extra]
        assert_usage_error(run(capsys, *argv))
        assert snapshot(tmp_path) == before


def test_error_bad_book_leaves_no_risk_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bad_book: Path
) -> None:
    before = snapshot(tmp_path)
    for fmt, name in (("csv", "risk.csv"), ("parquet", "risk.parquet")):
        argv = ["risk", str(bad_book), "--market", MARKET, "--format", fmt, "--output", str(tmp_path / name)]
        assert_usage_error(run(capsys, *argv), "row 3")
    assert snapshot(tmp_path) == before
