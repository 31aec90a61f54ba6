"""``optmm simulate`` on bad input and bad disks: one ``optmm: error:`` line, exit code 2, no
traceback, nothing left behind; bounds checked before the run; scratch folders of killed runs
removed by the next run; the documented NaN of the output tables (docs/simulation.md)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import assert_usage_error, run
from disks import full_disk_dir, raising, read_only_dir

import optmm._scratch as scratch_mod
import optmm.sim.report as report_mod
from optmm._scratch import remove_stale, scratch_dir
from optmm.sim import SimConfig, simulate

ROOT = Path(__file__).resolve().parents[2]
CALM = str(ROOT / "scenarios/sim/calm_day.toml")
AS2008 = str(ROOT / "scenarios/sim/as2008.toml")
SHORT = ["--set", "sim.steps=600", "--set", "sim.quotes_window_s=60.0"]
BIG = "1" + "0" * 400  # an integer too large for a float64


def _host() -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


# --------------------------------------------------------------------------------------------------
# bad --set keys and values, bad files: one line


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        ("underlying.shock=5", ("[underlying AAA] shock", "must be a list of tables", "got 5")),
        ('underlying.shock="x"', ("shock", "must be a list of tables")),
        ("underlying.shock={at_s=1}", ("shock", "must be a list of tables")),
        ("underlying.shock=[1]", ("shock[0]", "expected a table")),
        ("underlying.shock=[{at_s=true}]", ("at_s", "must be a finite number")),
        ("sim.dt_s=46800", ("[sim] dt_s", "must be < 46,800 s")),
        ("sim.dt_s=1e9", ("[sim] dt_s", "must be < 46,800 s")),
        ("sim.seed=9223372036854775808", ("[sim] seed", "<= 9223372036854775807")),
        (f"sim.seed={BIG}", ("[sim] seed", "<= 9223372036854775807")),
        (f"sim.steps={BIG}", ("[sim] steps x [chain] instruments", "more than the bound of 50,000,000")),
        ("sim.steps=10000000", ("[sim] steps x [chain] instruments", "50,000,000")),
        ("sim.paths=100000", ("[sim] steps x paths x (underlyings + 1)", "20,000,000")),
        ("flow.latency_steps=1000000000", ("[flow] latency_steps", "must be <= [sim] steps (600)")),
        (f"flow.arrival_k={BIG}", ("[flow] arrival_k", "must be a finite number")),
        (f"chain.moneyness=[{BIG}]", ("[chain] moneyness[0]", "must be a finite number")),
        (
            "chain.expiries_days=[" + ", ".join(str(d) for d in range(1, 3001)) + "]",
            ("[chain] 120,000 instruments", "100,000"),
        ),
        ("sim.markout_s=1e308", ("[sim] markout_s", "must be less than 9.007e+15 steps of dt_s = 1 s")),
        ("sim.quotes_from_s=1e308", ("[sim] quotes_from_s", "steps of dt_s")),
        ("sim.quotes_window_s=1e308", ("[sim] quotes_window_s", "steps of dt_s")),
        ("flow.informed_horizon_s=1e308", ("[flow] informed_horizon_s", "steps of dt_s")),
        ("chain.strike_step=1e-308", ("[chain] strike_step", "too small", "strike steps")),
        ("quoter.tick_size=1e-308", ("[quoter] a value is out of range",)),
        ("quoter.sigma_vol=1e308", ("calm_day.toml: a setting is out of range",)),
        ("sim.steps=true", ("[sim] steps", "whole number")),
        ("strategy.spread=true", ("[strategy] spread", "finite number")),
        ("sim.steps.x=1", ("override 'sim.steps.x'",)),
        ("nosuch.field=1", ("override 'nosuch.field'",)),
        ("underlying.ZZZ.spot=1", ("no underlying named 'ZZZ'",)),
    ],
)
def test_bad_settings_are_one_line(
    capsys: pytest.CaptureFixture[str], setting: str, fragments: tuple[str, ...]
) -> None:
    assert_usage_error(run(capsys, "simulate", CALM, *SHORT, "--set", setting), *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--seed", "9223372036854775808"], ("--seed", "<= 9223372036854775807")),
        (["--paths", "100000"], ("--paths 100000", "20,000,000")),
    ],
)
def test_bad_seed_and_paths_options(
    capsys: pytest.CaptureFixture[str], args: list[str], fragments: tuple[str, ...]
) -> None:
    assert_usage_error(run(capsys, "simulate", CALM, *SHORT, *args), *fragments)


def test_the_bounds_hold_in_the_library_too() -> None:
    config = SimConfig.load(CALM).with_overrides({"sim.steps": 600})
    with pytest.raises(ValueError, match="seed >= 0 and <= 9223372036854775807"):
        simulate(config, seed=2**63)
    with pytest.raises(ValueError, match=r"steps x paths x \(underlyings \+ 1\) = 600 x 100,000 x 2"):
        simulate(config, paths=100_000)


def test_a_scenario_interval_of_more_steps_than_a_float_counts_is_refused() -> None:
    d = SimConfig.load(CALM).to_dict()
    d["limits"]["scenario"]["every_s"] = 1e308
    with pytest.raises(ValueError, match=r"\[limits\] scenario every_s: must be less than 9.007e\+15 steps"):
        SimConfig.from_dict(d)


def test_dt_just_below_two_days_runs() -> None:
    """The bound is where the run used to fail: a step just under two trading days still runs and
    its per-day figures are finite."""
    config = SimConfig.load(CALM).with_overrides(
        {"sim.steps": 3, "sim.dt_s": 46_799.0, "sim.quotes_window_s": 0.0, "sim.markout_s": 0.0}
    )
    summary = simulate(config).summary
    assert math.isfinite(summary["pnl_per_day_mean"])


@pytest.mark.parametrize(
    "matrix",
    [
        "[[1.0, true], [true, 1.0]]",
        '[[1.0, "0.5"], ["0.5", 1.0]]',
        "[[1.0, {a = 1}], [0.0, 1.0]]",
        "[[1.0, [0.5]], [0.5, 1.0]]",
    ],
)
def test_correlation_refuses_anything_but_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, matrix: str
) -> None:
    text = Path(CALM).read_text()
    text = text.replace('name = "calm_day"', f'name = "calm_day"\ncorrelation = {matrix}', 1)
    text += '\n[[underlying]]\nname = "BBB"\n'
    path = tmp_path / "two.toml"
    path.write_text(text)
    assert_usage_error(
        run(capsys, "simulate", str(path), *SHORT),
        str(path),
        "correlation: row 1, column 2",
        "must be a number",
    )


def _run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``optmm`` in a child process (a regression that blocks fails the test by its timeout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "optmm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_named_pipes_are_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    done = _run_cli("simulate", str(fifo))
    assert (
        done.returncode == 2
        and done.stderr == f"optmm: error: {fifo}: cannot read the configuration (not a regular file)\n"
    )
    # a limit file named by the config
    text = Path(CALM).read_text()
    start, end = text.index("[limits]"), text.index("[[underlying]]")
    (tmp_path / "lim.toml").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "lim.toml")
    config = tmp_path / "sim.toml"
    config.write_text(text[:start] + '[limits]\nfile = "lim.toml"\n\n' + text[end:])
    done = _run_cli("simulate", str(config), *SHORT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "lim.toml: cannot read the limit file (not a regular file)" in done.stderr


# --------------------------------------------------------------------------------------------------
# --out: a file, under a file, read-only, full: one line, nothing left


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_out_onto_a_file_or_under_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert_usage_error(
        run(capsys, "simulate", CALM, *SHORT, "--out", str(afile)),
        f"--out {afile}: exists and is not a directory",
    )
    assert_usage_error(
        run(capsys, "simulate", CALM, *SHORT, "--out", str(afile / "a" / "run")),
        f"'{afile}' is not a directory",
    )
    assert _entries(tmp_path) == ["afile"] and afile.read_text() == "mine"


def test_out_on_a_read_only_file_system(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = raising(monkeypatch, scratch_mod.tempfile, "mkdtemp")
    with read_only_dir(tmp_path / "ro", fallback) as ro:
        err = assert_usage_error(
            run(capsys, "simulate", CALM, *SHORT, "--out", str(ro / "run")), f"--out {ro / 'run'}"
        )
        assert "Read-only file system" in err
        assert _entries(ro) == []


@pytest.mark.parametrize("free_kib", [24, 120, 260])  # full at the audit trail, the tables, the plots
def test_out_on_a_full_disk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_kib: int
) -> None:
    fallback = raising(monkeypatch, report_mod, "_write_frame")
    with full_disk_dir(tmp_path / "disk", free_kib, fallback) as disk:
        out = disk / "a" / "b" / "run"
        err = assert_usage_error(
            run(capsys, "simulate", CALM, *SHORT, "--out", str(out)), f"--out {out}: cannot write"
        )
        assert "full" in err or "No space left" in err
        assert _entries(disk) == ["filler"]  # no run, no scratch folder, not even the parents made


def test_compare_on_a_full_disk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = raising(monkeypatch, report_mod, "_write_frame")
    with full_disk_dir(tmp_path / "disk", 300, fallback) as disk:
        out = disk / "cmp"
        args = ("simulate", CALM, *SHORT, "--compare", "symmetric", "linear", "--out", str(out))
        assert_usage_error(run(capsys, *args), f"--out {out}: cannot write")
        assert _entries(disk) == ["filler"]


# --------------------------------------------------------------------------------------------------
# scratch folders of killed runs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_scratch_folders_of_dead_processes_are_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    dead, host = _dead_pid(), _host()
    stale = [tmp_path / f".optmm-audit.{host}-{dead}.abc123.tmp", tmp_path / f".run.{host}-{dead}.x_y.tmp"]
    kept = [
        tmp_path / f".optmm-audit.{host}-{os.getpid()}.live.tmp",  # a live process's
        tmp_path / f".optmm-audit.otherhost-{dead}.abc.tmp",  # another host's (a shared file system)
        tmp_path / ".optmm-audit-oldstyle",  # not attributable to a process
    ]
    for d in stale + kept:
        d.mkdir()
        (d / "0.sqlite").write_bytes(b"x" * 1000)
    code, _, err = run(capsys, "simulate", CALM, *SHORT, "--out", str(tmp_path / "run"))
    assert code == 0
    assert f"optmm: removed 2 folder(s) left in {tmp_path} by killed runs" in err
    assert all(d.name in err for d in stale)
    assert not any(d.exists() for d in stale) and all(d.exists() for d in kept)
    assert sorted(_entries(tmp_path)) == sorted(["run", *(d.name for d in kept)])


def test_a_killed_run_leaves_a_folder_that_the_next_run_removes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optmm",
            "simulate",
            CALM,
            "--set",
            "sim.quotes_window_s=60.0",
            "--paths",
            "4",
            "--out",
            str(tmp_path / "first"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120.0
        while (
            not list(tmp_path.glob(".optmm-audit.*.tmp"))
            and child.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        left = list(tmp_path.glob(".optmm-audit.*.tmp"))
        assert left and child.poll() is None, "the run did not start its audit trail"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert [p.name for p in tmp_path.iterdir()] == [left[0].name]  # what a killed run leaves
    code, _, err = run(capsys, "simulate", CALM, *SHORT, "--out", str(tmp_path / "second"))
    assert code == 0 and left[0].name in err
    assert _entries(tmp_path) == ["second"]


def test_scratch_dirs_name_their_process(tmp_path: Path) -> None:
    d = scratch_dir(tmp_path, "run")
    assert d.name.startswith(f".run.{_host()}-{os.getpid()}.") and d.name.endswith(".tmp")
    assert remove_stale(tmp_path) == [] and d.is_dir()  # ours, alive


# --------------------------------------------------------------------------------------------------
# the documented NaN of the outputs (docs/simulation.md, "Output tables")


@pytest.fixture(scope="module")
def short_calm() -> Any:
    config = SimConfig.load(CALM).with_overrides(
        {"sim.steps": 900, "sim.quotes_from_s": 0.0, "sim.quotes_window_s": 900.0, "sim.markout_s": 30.0}
    )
    return simulate(config, seed=4)


def test_markouts_are_missing_exactly_for_the_fills_of_the_last_markout_s(short_calm: Any) -> None:
    fills, n = short_calm.fills, short_calm.config.sim.steps
    h = round(short_calm.config.sim.markout_s / short_calm.config.sim.dt_s)
    late = fills["step"].to_numpy() + h > n  # its horizon is after the end of the run
    assert late.any() and (~late).any()
    np.testing.assert_array_equal(fills["markout"].isna().to_numpy(), late)
    assert short_calm.summary["markout_total"] == pytest.approx(np.nansum(fills["markout"]), rel=1e-12)


def test_quote_prices_are_missing_exactly_where_the_side_has_no_size(short_calm: Any) -> None:
    q = short_calm.quotes
    assert (q["bid_size"] == 0).any()
    np.testing.assert_array_equal(q["bid"].isna().to_numpy(), (q["bid_size"] == 0).to_numpy())
    np.testing.assert_array_equal(q["ask"].isna().to_numpy(), (q["ask_size"] == 0).to_numpy())
    assert q["fair"].notna().all()


def test_the_underlying_itself_has_no_strike_or_expiry() -> None:
    config = SimConfig.load(AS2008).with_overrides({"sim.steps": 600})
    fills = simulate(config).fills
    assert len(fills) and (fills["kind"] == "stock").all()
    assert fills["strike"].isna().all() and fills["expiry_days"].isna().all()


def test_no_fill_gives_a_zero_fill_rate_and_no_fill_price_markout_loss_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ("simulate", CALM, *SHORT, "--set", "flow.arrival_a=0.0", "--set", "flow.informed_rate=0.0")
    summary = json.loads(run(capsys, *args, "--format", "json")[1])
    assert summary["fills"] == 0 and summary["fill_rate"] == 0.0
    assert summary["fill_price_markout_loss_rate"] is None  # null, not NaN (which is not JSON)
    assert summary["markout_total"] == 0.0 and summary["adverse_selection_total"] == 0.0
    code, out, _ = run(capsys, *args)
    assert code == 0 and "nan" not in out.lower()
    line = next(row for row in out.splitlines() if "fills marked out below their price" in row)
    assert line.split()[-1] == "n/a"
    # no fill to mark at any horizon: the rates are null, the money 0
    rows = summary["adverse_by_horizon"]
    assert [r["horizon_s"] for r in rows] == [1.0, 5.0, 30.0]
    assert all(r["fills"] == 0 and r["adverse_rate_mid"] is None for r in rows)
    assert all(r["markout_pnl"] == 0.0 and r["spread_capture"] == 0.0 for r in rows)


def test_nothing_quoted_gives_no_fill_rate() -> None:
    config = SimConfig.load(CALM).with_overrides({"sim.steps": 60, "quoter.base_size": 0.0})
    result = simulate(config)
    if result.steps["n_quoted"].sum() != 0:  # pragma: no cover - the setting must stop the quotes
        pytest.fail("quoter.base_size = 0 still quoted: pick another way to stop quoting")
    assert math.isnan(result.summary["fill_rate"])
    assert math.isnan(result.summary["fill_price_markout_loss_rate"])


def test_an_underlying_may_not_be_called_book(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # "book" names the whole book's row of the controller's state and the risk tables
    text = Path(CALM).read_text()
    assert text.count('name = "AAA"') == 1
    path = tmp_path / "book.toml"
    path.write_text(text.replace('name = "AAA"', 'name = "book"'))
    assert_usage_error(
        run(capsys, "simulate", str(path), *SHORT), str(path), "[[underlying]] name: 'book' is the name of"
    )
