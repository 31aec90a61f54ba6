"""``optmm simulate`` from the shell: one run, a comparison, the run directory, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.risk.audit import AuditTrail

ROOT = Path(__file__).resolve().parents[2]
CALM = str(ROOT / "scenarios/sim/calm_day.toml")
SHORT = ["--set", "sim.steps=600", "--set", "sim.quotes_window_s=60.0"]


def test_one_run_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", CALM, *SHORT, "--seed", "3")
    assert code == 0
    assert "strategy calm_day: 1 path(s) x 600 steps of 1 s, seed 3" in out
    assert "spread_capture" in out and "hedge_cost" in out and "time in layers" in out


def test_json_summary_and_seed_determinism(capsys: pytest.CaptureFixture[str]) -> None:
    a = json.loads(run(capsys, "simulate", CALM, *SHORT, "--format", "json")[1])
    b = json.loads(run(capsys, "simulate", CALM, *SHORT, "--format", "json")[1])
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b and a["steps"] == 600 and len(a["config_hash"]) == 64


def test_compare_prints_the_strategies_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", CALM, *SHORT, "--compare", "symmetric", "greeks+no-hedge")
    assert code == 0
    header = out.splitlines()[0]
    assert "symmetric" in header and "greeks+no-hedge" in header
    assert "total P&L, mean" in out


def test_out_writes_the_run_directory_with_the_audit_trail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, "simulate", CALM, *SHORT, "--out", str(out))
    assert code == 0 and "run written to" in err
    names = {p.name for p in out.iterdir()}
    assert {
        "steps.parquet",
        "fills.parquet",
        "summary.json",
        "config.toml",
        "audit.sqlite",
        "pnl.png",
    } <= names
    summary = json.loads((out / "summary.json").read_text())
    steps = pd.read_parquet(out / "steps.parquet")
    assert len(steps) == 600 and summary["total_pnl_mean"] == pytest.approx(steps["pnl"].sum(), rel=1e-12)
    events = AuditTrail.read(out / "audit.sqlite")
    assert len(events) > 0 and set(events["event"]) <= {"state", "pull", "cut", "drop", "kill", "reset"}
    # an existing run is not overwritten without --overwrite, and is left whole
    before = (out / "summary.json").read_bytes()
    assert_usage_error(run(capsys, "simulate", CALM, *SHORT, "--out", str(out)), "exists and is not empty")
    assert (out / "summary.json").read_bytes() == before
    code, _, _ = run(capsys, "simulate", CALM, *SHORT, "--seed", "9", "--out", str(out), "--overwrite")
    assert code == 0 and json.loads((out / "summary.json").read_text())["seed"] == 9


def test_compare_with_out_writes_one_directory_per_strategy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    code, _, _ = run(capsys, "simulate", CALM, *SHORT, "--compare", "symmetric", "linear", "--out", str(out))
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"symmetric", "linear", "compare.csv", "pnl_distribution.png"}
    table = pd.read_csv(out / "compare.csv", index_col=0)
    assert list(table.index) == ["symmetric", "linear"]
    assert (out / "pnl_distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_several_paths_write_path_zero_series_unless_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text, _ = run(capsys, "simulate", CALM, *SHORT, "--paths", "3", "--out", str(tmp_path / "a"))
    assert code == 0
    # the printed summary: quantiles of the paths' totals, and adverse selection by horizon
    assert "total P&L, median path" in text and "adverse selection by markout horizon" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip().endswith("%")}
    assert {"1", "5", "30"} <= set(lines)  # the toxicity detector's horizons (s) and markout_s
    a = tmp_path / "a"
    steps = pd.read_parquet(a / "steps.parquet")
    assert set(steps["path"]) == {0} and len(steps) == 600
    assert set(pd.read_parquet(a / "underlyings.parquet")["path"]) == {0}
    totals = pd.read_parquet(a / "paths.parquet")
    summary = json.loads((a / "summary.json").read_text())
    assert list(totals["path"]) == [0, 1, 2]
    assert totals["total_pnl"].mean() == pytest.approx(summary["total_pnl_mean"], rel=1e-12)
    assert summary["total_pnl_q50"] == pytest.approx(totals["total_pnl"].median(), rel=1e-12)
    assert (a / "pnl_distribution.png").exists()
    code, _, _ = run(
        capsys, "simulate", CALM, *SHORT, "--paths", "3", "--per-path-series", "--out", str(tmp_path / "b")
    )
    assert code == 0
    every = pd.read_parquet(tmp_path / "b" / "steps.parquet")
    assert set(every["path"]) == {0, 1, 2} and len(every) == 1800
    pd.testing.assert_frame_equal(every[every["path"] == 0].reset_index(drop=True), steps)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["simulate", "nope.toml"], ("nope.toml", "cannot read")),
        (["simulate", CALM, "--set", "quoter.gama=1"], ("quoter.gama", "no field 'gama'")),
        (["simulate", CALM, "--set", "flow.arrival_k=-1"], ("arrival_k", "must be a finite number > 0")),
        (["simulate", CALM, "--set", "novalue"], ("--set 'novalue'", "KEY=VALUE")),
        (["simulate", CALM, "--compare", "bogus"], ("unknown strategy 'bogus'",)),
        (["simulate", CALM, "--paths", "0"], ("--paths", ">= 1")),
    ],
)
def test_usage_errors_name_the_problem(
    capsys: pytest.CaptureFixture[str], args: list[str], fragments: tuple[str, ...]
) -> None:
    assert_usage_error(run(capsys, *args), *fragments)
