"""``optmm risk`` / ``scenario`` / ``chain``: outputs onto pipes, devices and symlinks, nothing left
behind on failure, units that cannot be mistaken, non-finite figures refused, and ``main``'s safety
net (OS, SQLite and memory errors, RuntimeWarnings) turning every failure into one line, exit 2."""

from __future__ import annotations

import csv
import errno
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

import optmm._io as io_mod
from optmm import cli

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
RISK = ["risk", BOOK, "--market", MARKET]
SMALL = ["scenario", BOOK, "--market", MARKET, "--spot", "-10:10:10", "--vol", "-5:5:5"]


# --------------------------------------------------------------------------------------------------
# --output onto a FIFO, a device, a symlink


def test_output_into_a_named_pipe_is_written_through(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, out, err = run(capsys, *RISK, "--format", "csv", "--output", str(fifo))
    reader.join(timeout=60)
    assert (code, out, err) == (0, "", "")
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe, not replaced by a file
    assert got and got[0].decode().startswith("underlying,spot,beta,value")
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_output_onto_dev_null_leaves_the_device(capsys: pytest.CaptureFixture[str]) -> None:
    before = os.stat(os.devnull)
    for args in (RISK, [*SMALL, "--format", "csv"]):
        code, out, err = run(capsys, *args, "--output", os.devnull)
        assert (code, out, err) == (0, "", "")
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_output_through_a_symlink_writes_its_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "risk.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, out, err = run(capsys, *RISK, "--format", "csv", "--output", str(link))
    assert (code, out, err) == (0, "", "")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("underlying,")
    assert sorted(os.listdir(tmp_path / "real")) == ["risk.csv"]  # no temporary left beside it
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "real" / "new.csv")
    code, _, _ = run(capsys, *RISK, "--format", "csv", "--output", str(dangling))
    assert (
        code == 0
        and dangling.is_symlink()
        and (tmp_path / "real" / "new.csv").read_text() == target.read_text()
    )


# --------------------------------------------------------------------------------------------------
# nothing left behind


def failing_at(monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
    """Make the ``nth`` call (1-based) of ``os.<name>`` in optmm._io fail with ENOSPC."""
    real = getattr(os, name)
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(io_mod.os, name, fake)


@pytest.mark.parametrize(("name", "nth"), [("fsync", 1), ("fsync", 2), ("replace", 1), ("replace", 2)])
def test_failed_output_leaves_no_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, nth: int
) -> None:
    failing_at(monkeypatch, name, nth)
    out_file, plot = tmp_path / "grid.csv", tmp_path / "grid.png"
    result = run(capsys, *SMALL, "--format", "csv", "--output", str(out_file), "--plot", str(plot))
    assert_usage_error(result, "cannot write", "No space left on device")
    assert os.listdir(tmp_path) == []


def test_failed_output_keeps_an_older_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_file, plot = tmp_path / "grid.csv", tmp_path / "grid.png"
    plot.write_bytes(b"old plot")
    failing_at(monkeypatch, "replace", 2)  # the output is renamed, then the plot's rename fails
    assert_usage_error(run(capsys, *SMALL, "--format", "csv", "--output", str(out_file), "--plot", str(plot)))
    assert sorted(os.listdir(tmp_path)) == ["grid.png"] and plot.read_bytes() == b"old plot"


@pytest.mark.parametrize("suffix", ["pdf", "svg"])
def test_plot_format_follows_the_suffix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str
) -> None:
    plot = tmp_path / f"grid.{suffix}"
    code, _, err = run(capsys, *SMALL, "--plot", str(plot))
    assert (code, err) == (0, "")
    assert plot.read_bytes()[:5] == {"pdf": b"%PDF-", "svg": b"<?xml"}[suffix]


def test_plot_with_an_unknown_suffix_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert_usage_error(run(capsys, *SMALL, "--plot", str(tmp_path / "grid.jpg")), "--plot", "'.jpg'", ".pdf")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# units


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--spot", "-500:500:100"], ["--spot", "percent", "-500"]),
        (["--spot", "-100,0"], ["--spot", "percent"]),
        (["--vol", "0:200:50"], ["--vol", "vol points", "150"]),
        (["--days", "100000"], ["--days", "0..3650"]),
    ],
)
def test_scenario_refuses_implausible_magnitudes(
    capsys: pytest.CaptureFixture[str], args: list[str], fragments: list[str]
) -> None:
    assert_usage_error(run(capsys, "scenario", BOOK, "--market", MARKET, *args), *fragments)


def test_stress_file_in_the_wrong_unit_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\n[[legs]]\nspot = 5\nvol = 2\n')  # meant +5% and +2 points?
    err = assert_usage_error(
        run(capsys, *SMALL, "--stress", str(path)), str(path), "leg 1", "'spot'", "spot_pct"
    )
    assert "P&L" not in err


@pytest.mark.parametrize(
    ("leg", "market_edit", "fragments"),
    [
        ('underlying = "NVDA"', None, ["leg 1 ('only')", "'underlying'", "'NVDA'", "no market data"]),
        ("beta_weighted = true", 'index = "SPY"', ["leg 1 ('only')", "'beta_weighted'", "sets no `index`"]),
    ],
)
def test_stress_errors_name_file_and_leg(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    leg: str,
    market_edit: str | None,
    fragments: list[str],
) -> None:
    stress = tmp_path / "s.toml"
    stress.write_text(f'name = "s"\n[[legs]]\nlabel = "only"\nspot_pct = -5\n{leg}\n')
    market = MARKET
    if market_edit is not None:
        market = str(tmp_path / "market.toml")
        Path(market).write_text(Path(MARKET).read_text().replace(market_edit, ""))
    args = ["scenario", BOOK, "--market", market, "--spot", "0", "--vol", "0", "--stress", str(stress)]
    assert_usage_error(run(capsys, *args), f"{stress}: leg 1", *fragments)


def test_chain_vol_in_percent_or_decimal_is_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["chain", "--spot", "100", "--days", "30", "--format", "csv"]
    _, decimal, _ = run(capsys, *base, "--vol", "0.2", "--rate", "0.04", "--div", "0.01")
    code, percent, err = run(capsys, *base, "--vol", "20%", "--rate", "4%", "--div", "1%")
    assert (code, err) == (0, "") and percent == decimal
    err = assert_usage_error(run(capsys, "chain", "--spot", "100", "--days", "30", "--vol", "20"), "--vol")
    assert "2,000%" in err and "0.2" in err and "20%" in err


# --------------------------------------------------------------------------------------------------
# non-finite figures from finite inputs


@pytest.fixture(scope="module")
def huge_book(tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = list(csv.reader(open(BOOK, newline="")))
    rows[3][rows[0].index("quantity")] = "1e308"
    path = tmp_path_factory.mktemp("huge") / "huge.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_huge_quantities_are_an_error_not_inf(
    capsys: pytest.CaptureFixture[str], huge_book: str, command: str
) -> None:
    extra = ["--stress", *sorted(str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml"))]
    args = [command, huge_book, "--market", MARKET, *(extra if command == "scenario" else [])]
    err = assert_usage_error(run(capsys, *args))
    assert "numerical error" not in err  # no RuntimeWarning was raised on the way (they are errors here)
    assert ("not a finite number" in err and "SPY" in err) or "plausible" in err


def test_huge_quantities_subprocess_prints_no_warning(huge_book: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optmm",
            "scenario",
            huge_book,
            "--market",
            MARKET,
            "--spot",
            "-10,0",
            "--vol",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("optmm: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Warning" not in proc.stderr


# --------------------------------------------------------------------------------------------------
# main's safety net


@pytest.mark.parametrize(
    ("exc", "fragments"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/x/y.db"), ["/x/y.db", "Permission denied"]),
        (OSError(errno.EIO, "Input/output error"), ["Input/output error"]),
        (sqlite3.OperationalError("database is locked"), ["SQLite", "database is locked"]),
        (MemoryError(), ["out of memory"]),
    ],
)
def test_main_turns_unexpected_errors_into_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    fragments: list[str],
) -> None:
    def boom(args):
        raise exc

    for name in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, name, (cli.COMMANDS[name][0], boom))
    for argv in (["chain", "--spot", "1", "--vol", "0.2", "--days", "1"], ["audit", "db.sqlite"]):
        assert_usage_error(run(capsys, *argv), *fragments)


def numpy_overflow(args) -> int:
    np.float64(1e308) * np.float64(10.0)  # a RuntimeWarning on its way
    return 0


def test_main_prints_no_runtime_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "chain", (cli.COMMANDS["chain"][0], numpy_overflow))
    argv = ["chain", "--spot", "1", "--vol", "0.2", "--days", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a user's shell: warnings would be printed
        assert run(capsys, *argv) == (0, "", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # python -W error, the test configuration
        assert_usage_error(run(capsys, *argv), "numerical error", "overflow")


def test_scenario_machine_formats_have_no_nan_and_full_precision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "s.parquet"
    stress = str(ROOT / "scenarios" / "stress" / "flash_crash.toml")
    code, out, err = run(capsys, *SMALL, "--stress", stress, "--format", "parquet", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    got = pd.read_parquet(target)
    assert np.isfinite(got["pnl"].to_numpy(float)).all()
    crash = got[(got["scenario"] == "Flash crash") & (got["leg"] == "crash")]
    assert crash["spot_shock"].iloc[0] == -0.07 and crash["vol_shock"].iloc[0] == 0.15
    assert set(crash["underlying"]) == {"AAPL", "MSFT", "SPY", "TSLA", "book"}


def readme_commands() -> dict[str, str]:
    """The README's command list: each ``optmm NAME ...`` entry with its continuation lines."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        if line.startswith("optmm "):
            name = line.split()[1]
            entries[name] = line
        elif line.strip() and name is not None:
            entries[name] += " " + line
    return entries


@pytest.mark.parametrize("command", ["chain", "risk", "scenario"])
def test_readme_command_list_matches_the_options(command: str) -> None:
    import re

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    real = {s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    shown = set(re.findall(r"--[a-z][a-z-]*", readme_commands()[command]))
    assert shown == real
    for action in sub._actions:  # every choice of every option is listed
        if action.choices and action.option_strings:
            listed = re.search(re.escape(action.option_strings[0]) + r" ([\w|]+)", readme_commands()[command])
            assert listed is not None and set(listed.group(1).split("|")) == set(action.choices)


def test_docs_stress_table_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/risk.md shows the example book's stress table: it must be what `optmm scenario` prints."""
    doc = (ROOT / "docs" / "risk.md").read_text()
    shown = doc.split("```text\nstresses, worst first", 1)[1].split("```", 1)[0]
    stresses = sorted(
        str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml")
    )  # the shell's glob order
    code, out, err = run(capsys, "scenario", BOOK, "--market", MARKET, "--stress", *stresses)
    assert (code, err) == (0, "")
    assert "stresses, worst first" + shown == out[out.index("stresses, worst first") :]


@pytest.mark.parametrize("command", ["risk", "scenario"])
def test_a_directory_given_as_an_input_file_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    assert_usage_error(run(capsys, command, BOOK, "--market", str(tmp_path)), "--market", "is a directory")
    assert_usage_error(run(capsys, command, str(tmp_path), "--market", MARKET), "BOOK", "is a directory")


def test_every_help_page_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """``optmm --help`` and each command's ``--help`` print their page and exit 0 (a bare ``%`` in a help
    text makes argparse raise when it formats the page)."""
    for argv in [["--help"]] + [[name, "--help"] for name in cli.COMMANDS]:
        assert cli.main(argv) == 0, argv
        out = capsys.readouterr().out
        assert out.startswith("usage: optmm"), argv
        if argv == ["--help"]:
            assert all(name in out for name in cli.COMMANDS)
