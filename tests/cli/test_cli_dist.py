"""``optmm sweep`` and ``optmm scenario --dask`` (optmm.cli.sweep, optmm.cli.common.scenario_engine).

The sweep commands run with the stand-in simulator of ``dist_fakes`` (the defaults of
optmm.scaleout.sweep are patched); ``--dask ADDRESS`` points at a module-scoped LocalCluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from builders import assert_usage_error, run
from dist_fakes import BASE_TOML, FakeConfig, failing_run, fast_run

import optmm.scaleout.sweep as sweep_mod
from optmm.scaleout import client_for

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
STRESS_FILES = sorted(str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml"))
SWEEP = """\
name = "cli_sweep"
base = "base.toml"
seeds = 3
[grid]
"quoter.gamma_risk_aversion" = [1e-5, 1e-3]
"flow.latency_steps" = [0, 1]
"""


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with client_for("local:2") as client:
        yield str(client.scheduler.address)


@pytest.fixture
def fake_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_mod, "_default_run_fn", lambda: fast_run)
    monkeypatch.setattr(sweep_mod, "_default_load_config", lambda: FakeConfig.load)


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    (tmp_path / "base.toml").write_text(BASE_TOML)
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    return path


def table(out: str) -> list[str]:
    """The summary table's lines (from the column header to the frontier line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("setting"))
    end = next(i for i, line in enumerate(lines) if line.startswith("efficient frontier"))
    return lines[start : end + 1]


# --------------------------------------------------------------------------------------------------
# optmm scenario --dask


def test_scenario_on_a_local_cluster_prints_the_same_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["scenario", BOOK, "--market", MARKET, "--days", "2", "--stress", *STRESS_FILES]
    code, local, err = run(capsys, *args)
    assert code == 0 and err == ""
    code, dist, err = run(capsys, *args, "--dask", "local:2")
    assert code == 0 and err == ""
    assert dist == local
    assert "worst:" in dist and "Flash crash" in dist


@pytest.mark.parametrize("command", ["scenario", "sweep"])
@pytest.mark.parametrize("spec", ["local:0", "nowhere", "http://h:1"])
def test_bad_dask_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str], command: str, spec: str) -> None:
    args = [BOOK, "--market", MARKET] if command == "scenario" else ["s.toml", "--out", "o"]
    assert_usage_error(run(capsys, command, *args, "--dask", spec), "--dask", f"cluster spec {spec!r}")


# --------------------------------------------------------------------------------------------------
# optmm sweep


@pytest.mark.usefixtures("fake_sim")
def test_sweep_prints_the_summary_and_writes_the_tables(
    capsys: pytest.CaptureFixture[str], sweep_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, text, err = run(capsys, "sweep", str(sweep_file), "--out", str(out))
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    lines = text.splitlines()
    assert (
        lines[0].startswith("sweep cli_sweep (")
        and "4 settings x 3 seeds = 12 runs; 12 run now, 0 already stored" in lines[0]
    )
    assert "risk: std over seeds of total_pnl_mean" in lines[1]
    summary = pd.read_parquet(out / "summary.parquet")
    rows = table(text)
    header = ["setting", "config", "quoter.gamma_risk_aversion", "flow.latency_steps", "runs"]
    assert rows[0].split() == [*header, "pnl_mean", "pnl_std", "risk", "frontier"]
    for line, row in zip(rows[1:-1], summary.itertuples(index=False), strict=True):
        cells = line.split()
        assert cells[:5] == [str(row.setting), row.config_hash[:10], f"{row._2:g}", str(row._3), "3"]
        assert cells[5] == f"{row.pnl_mean:,.2f}" and cells[7] == f"{row.risk:,.2f}"
        assert (cells[-1] == "*") == row.efficient
    frontier = summary[summary["efficient"]].sort_values("risk")["setting"].tolist()
    assert rows[-1] == "efficient frontier, low risk to high: settings " + ", ".join(map(str, frontier))
    assert lines[-1].startswith("wrote ") and str(out / "runs.parquet") in lines[-1]
    assert len(pd.read_parquet(out / "runs.parquet")) == 12 and (out / "frontier.png").is_file()

    # again: refused without --resume, nothing to run with it
    assert_usage_error(
        run(capsys, "sweep", str(sweep_file), "--out", str(out)), str(out), "not empty", "--resume"
    )
    code, again, err = run(capsys, "sweep", str(sweep_file), "--out", str(out), "--resume", "--no-progress")
    assert code == 0 and err == ""
    assert "0 run now, 12 already stored" in again.splitlines()[0]
    assert table(again) == table(text)


@pytest.mark.usefixtures("fake_sim")
def test_sweep_on_a_cluster_prints_the_same_summary(
    capsys: pytest.CaptureFixture[str], sweep_file: Path, tmp_path: Path, address: str
) -> None:
    code, local, _ = run(capsys, "sweep", str(sweep_file), "--out", str(tmp_path / "a"))
    code, dist, err = run(capsys, "sweep", str(sweep_file), "--out", str(tmp_path / "b"), "--dask", address)
    assert code == 0 and err == ""
    assert table(dist) == table(local)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "runs.parquet"), pd.read_parquet(tmp_path / "b" / "runs.parquet")
    )


@pytest.mark.usefixtures("fake_sim")
def test_sweep_usage_errors(capsys: pytest.CaptureFixture[str], sweep_file: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert_usage_error(
        run(capsys, "sweep", str(tmp_path / "missing.toml"), "--out", out), "missing.toml: no such file"
    )
    assert_usage_error(
        run(capsys, "sweep", str(sweep_file), "--out", str(tmp_path / "no" / "out")),
        "--out",
        "no such directory",
    )
    assert_usage_error(run(capsys, "sweep", str(sweep_file)), "--out")
    sweep_file.write_text(SWEEP.replace('"flow.latency_steps"', '"flow.latency"'))
    assert_usage_error(run(capsys, "sweep", str(sweep_file), "--out", out), "sweep.toml", "'flow.latency'")
    sweep_file.write_text(SWEEP.replace("seeds = 3", "seeds = -3"))
    assert_usage_error(run(capsys, "sweep", str(sweep_file), "--out", out), "sweep.toml", "field 'seeds'")
    sweep_file.write_text(SWEEP.replace("base.toml", "gone.toml"))
    assert_usage_error(run(capsys, "sweep", str(sweep_file), "--out", out), "field 'base'", "gone.toml")
    sweep_file.write_text(SWEEP + '[metrics]\nrisk = "nope"\n')
    assert_usage_error(run(capsys, "sweep", str(sweep_file), "--out", out), "metrics.risk = 'nope'")


def test_a_failed_run_is_one_line_and_exit_code_1(
    capsys: pytest.CaptureFixture[str], sweep_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep_mod, "_default_run_fn", lambda: failing_run)
    monkeypatch.setattr(sweep_mod, "_default_load_config", lambda: FakeConfig.load)
    sweep_file.write_text(SWEEP.replace("seeds = 3", "seeds = 5"))
    code, out, err = run(capsys, "sweep", str(sweep_file), "--out", str(tmp_path / "out"))
    assert (code, out) == (1, "")
    assert err.startswith("optmm: error: cli_sweep: the run of setting 0 ") and err.count("\n") == 1
    assert "with seed 3 failed: ArithmeticError: seed 3 diverged" in err and "resume" in err
    assert len(pd.read_parquet(tmp_path / "out" / "parts" / "part-000001.parquet")) == 3  # seeds 0-2 kept
