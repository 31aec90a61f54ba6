"""Simulation sweeps (optmm.scaleout.sweep): the sweep file, the tables, resume, interruption, worker loss.

The simulator is stood in for by ``dist_fakes`` (a config with dotted overrides and a content hash,
and run functions whose metrics are a pure function of (config, seed)). The reference for every
disturbed sweep (an interruption, a failed run, a lost worker) is the same sweep run undisturbed in
this process: the tables must be identical, not close.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dist_fakes import BASE_TOML, FakeConfig, failing_run, fast_run, slow_run
from distributed import Client

from optmm.scaleout import SweepError, SweepSpec, client_for, efficient_frontier, run_sweep, summarize
from optmm.scaleout.sweep import PNL_STD

GRID = """\
[grid]
"quoter.gamma_risk_aversion" = [1e-5, 1e-4, 1e-3]
"hedger.band_shares" = [200.0, 500.0]
"flow.latency_steps" = [0, 1]
"""
KEYS = ["quoter.gamma_risk_aversion", "hedger.band_shares", "flow.latency_steps"]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with client_for("local:2") as c:
        yield c


def write_sweep(directory: Path, body: str = GRID, *, seeds: str = "4", name: str = "test_sweep") -> Path:
    (directory / "base.toml").write_text(BASE_TOML)
    path = directory / "sweep.toml"
    path.write_text(f'name = "{name}"\nbase = "base.toml"\nseeds = {seeds}\n{body}')
    return path


def sweep(spec: Any, out: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("run_fn", fast_run)
    return run_sweep(spec, out, load_config=FakeConfig.load, progress=False, **kwargs)


@pytest.fixture
def spec(tmp_path: Path) -> SweepSpec:
    return SweepSpec.load(write_sweep(tmp_path))


@pytest.fixture
def reference(spec: SweepSpec, tmp_path: Path) -> pd.DataFrame:
    """The undisturbed sweep's runs table, as stored."""
    sweep(spec, tmp_path / "reference")
    return pd.read_parquet(tmp_path / "reference" / "runs.parquet")


def stored_rows(out: Path) -> int:
    return sum(len(pd.read_parquet(p)) for p in (out / "parts").glob("part-*.parquet"))


# --------------------------------------------------------------------------------------------------
# The sweep file


def test_load_sweep_file(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, GRID + '[metrics]\nrisk = "max_abs_delta_shares"\n', seeds="[7, 3, 11]")
    spec = SweepSpec.load(path)
    assert spec.name == "test_sweep"
    assert spec.base == tmp_path / "base.toml"  # relative to the sweep file
    assert spec.seeds == (7, 3, 11)
    assert spec.keys == tuple(KEYS)
    assert (spec.pnl_metric, spec.risk_metric) == ("total_pnl_mean", "max_abs_delta_shares")
    assert spec.n_runs == 3 * 2 * 2 * 3
    settings = spec.settings()
    assert len(settings) == 12 and len({tuple(s.items()) for s in settings}) == 12
    assert settings[0] == dict(zip(KEYS, [1e-5, 200.0, 0], strict=True))
    assert settings[1] == dict(zip(KEYS, [1e-5, 200.0, 1], strict=True))  # the last key varies fastest
    assert SweepSpec.load(write_sweep(tmp_path, seeds="3")).seeds == (0, 1, 2)


@pytest.mark.parametrize(
    ("body", "seeds", "fragment"),
    [
        ("colour = 1\n", "2", "field 'colour': unknown"),
        (GRID, "0", "field 'seeds': must be >= 1"),
        (GRID, "[1, 1]", "field 'seeds': duplicated"),
        (GRID, "[1, -2]", "field 'seeds': seeds must be integers >= 0"),
        (GRID, "true", "field 'seeds': required"),
        (
            '[grid]\n"quoter.gamma_risk_aversion" = 1e-4\n',
            "2",
            "grid key 'quoter.gamma_risk_aversion': must be a list",
        ),
        ("[grid]\nquoter.gamma_risk_aversion = [1e-4]\n", "2", "grid key 'quoter': quote dotted keys"),
        ('[grid]\n"quoter.gamma_risk_aversion" = []\n', "2", "at least one value"),
        (
            '[grid]\n"flow.latency_steps" = [0, "1"]\n',
            "2",
            "grid key 'flow.latency_steps': values must be all",
        ),
        (
            '[grid]\n"flow.latency_steps" = [1, 1.0]\n',
            "2",
            "grid key 'flow.latency_steps': duplicated values",
        ),
        ('[grid]\n"latency" = [1, 2]\n', "2", "grid key 'latency': expected a dotted config key"),
        ('[metrics]\nsharpe = "x"\n', "2", "field 'metrics.sharpe': unknown"),
        ("[grid\n", "2", "not valid TOML"),
    ],
)
def test_bad_sweep_files_are_refused_naming_the_field(
    tmp_path: Path, body: str, seeds: str, fragment: str
) -> None:
    path = write_sweep(tmp_path, body, seeds=seeds)
    with pytest.raises(ValueError, match=r"sweep\.toml") as info:
        SweepSpec.load(path)
    assert fragment in str(info.value)


def test_bad_keys_and_base_are_refused_before_any_run(tmp_path: Path) -> None:
    spec = SweepSpec.load(write_sweep(tmp_path, '[grid]\n"quoter.gamma" = [1.0]\n'))
    with pytest.raises(ValueError, match=r"unknown config key 'quoter\.gamma'"):
        sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "base.toml").unlink()
    with pytest.raises(ValueError, match="field 'base': no such file"):
        sweep(SweepSpec.load(tmp_path / "sweep.toml"), tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# The tables


def test_runs_table(spec: SweepSpec, tmp_path: Path) -> None:
    result = sweep(spec, tmp_path / "out")
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    pd.testing.assert_frame_equal(runs, result.runs)
    assert (result.n_new, result.n_reused) == (48, 0)
    assert list(runs.columns[:6]) == ["setting", "config_hash", "seed", *KEYS]
    assert runs["setting"].tolist() == [s for s in range(12) for _ in range(4)]
    assert runs["seed"].tolist() == [0, 1, 2, 3] * 12
    base = FakeConfig.load(spec.base)
    for row in runs.itertuples(index=False):
        setting = spec.settings()[row.setting]
        config = base.with_overrides(setting)
        assert row.config_hash == config.content_hash
        assert [getattr(row, f"_{3 + i}") for i in range(3)] == list(setting.values())
        expected = fast_run(config, row.seed)
        assert row.total_pnl_mean == expected["total_pnl_mean"]  # identical: stored, not recomputed
        assert row.pulls == float(expected["pulls"])
    assert runs["attribution.spread_capture"].dtype == np.float64  # nested dicts flattened with "."
    assert "time_in_layer.SOFT" in runs.columns
    assert runs["sharpe"].isna().all()  # None -> NaN
    assert "strategy" not in runs.columns  # text is not a metric
    assert runs["flow.latency_steps"].dtype == np.int64 and runs["hedger.band_shares"].dtype == np.float64
    assert not runs.duplicated(["config_hash", "seed"]).any()


def test_summary_and_frontier(tmp_path: Path) -> None:
    spec = SweepSpec.load(write_sweep(tmp_path, GRID + '[metrics]\nrisk = "max_abs_delta_shares"\n'))
    result = sweep(spec, tmp_path / "out")
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    pd.testing.assert_frame_equal(summary, result.summary)
    assert list(summary.columns) == [
        "setting",
        "config_hash",
        *KEYS,
        "n_runs",
        "pnl_mean",
        "pnl_std",
        "risk",
        "efficient",
    ]
    runs = result.runs
    for row in summary.itertuples(index=False):
        mine = runs[runs["setting"] == row.setting]
        pnl = mine["total_pnl_mean"].to_numpy()
        assert row.n_runs == 4
        assert row.pnl_mean == pytest.approx(pnl.sum() / 4, rel=1e-15)
        assert row.pnl_std == pytest.approx(np.sqrt(((pnl - pnl.mean()) ** 2).sum() / 3), rel=1e-12)
        assert row.risk == pytest.approx(mine["max_abs_delta_shares"].mean(), rel=1e-15)
    # the frontier, brute force: nobody else at least as good on both and better on one
    pts = summary[["risk", "pnl_mean"]].to_numpy()
    for i, (r, p) in enumerate(pts):
        dominated = any((r2 <= r and p2 >= p) and (r2 < r or p2 > p) for r2, p2 in pts)
        assert summary["efficient"].iloc[i] == (not dominated)
    assert 1 <= summary["efficient"].sum() < 12
    png = (tmp_path / "out" / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    manifest = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert manifest["base_config_hash"] == FakeConfig.load(spec.base).content_hash
    assert [s["config_hash"] for s in manifest["settings"]] == summary["config_hash"].tolist()
    assert manifest["settings"][5]["overrides"] == spec.settings()[5]
    assert manifest["metrics"] == {"pnl": "total_pnl_mean", "risk": "max_abs_delta_shares"}


def test_default_risk_is_the_pnl_std_over_seeds(spec: SweepSpec, tmp_path: Path) -> None:
    assert spec.risk_metric == PNL_STD
    summary = sweep(spec, tmp_path / "out").summary
    np.testing.assert_array_equal(summary["risk"], summary["pnl_std"])
    assert (summary["risk"] > 0).all()  # not the runs' own total_pnl_std (0.0: one path each)


def test_one_seed_has_no_pnl_std_and_no_frontier(tmp_path: Path) -> None:
    result = sweep(SweepSpec.load(write_sweep(tmp_path, seeds="1")), tmp_path / "out")
    assert result.summary["n_runs"].eq(1).all() and result.summary["risk"].isna().all()
    assert not result.summary["efficient"].any()
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0


def test_fixed_overrides_apply_to_every_run(tmp_path: Path) -> None:
    body = '[overrides]\n"hedger.band_shares" = 300.0\n[grid]\n"flow.latency_steps" = [0, 1]\n'
    spec = SweepSpec.load(write_sweep(tmp_path, body))
    assert spec.overrides == (("hedger.band_shares", 300.0),)
    result = sweep(spec, tmp_path / "out")
    assert (result.runs["attribution.hedge_cost"] == 30.0).all()  # 0.1 x the band, in every run
    assert "hedger.band_shares" not in result.runs.columns  # not swept: not a column
    manifest = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert manifest["overrides"] == {"hedger.band_shares": 300.0}
    assert manifest["base_config_hash"] == FakeConfig.load(spec.base).content_hash
    bad = SweepSpec.load(write_sweep(tmp_path, '[overrides]\n"hedger.band" = 1.0\n'))
    with pytest.raises(ValueError, match=r"\[overrides\]: unknown config key 'hedger\.band'"):
        sweep(bad, tmp_path / "bad")
    with pytest.raises(ValueError, match=r"override 'flow\.latency_steps': also a key of the grid"):
        SweepSpec.load(write_sweep(tmp_path, '[overrides]\n"flow.latency_steps" = 1\n' + GRID))


def test_seeds_keep_the_file_order(tmp_path: Path) -> None:
    result = sweep(SweepSpec.load(write_sweep(tmp_path, seeds="[9, 2, 5]")), tmp_path / "out")
    assert result.runs["seed"].tolist()[:6] == [9, 2, 5, 9, 2, 5]


def test_a_metric_the_runs_lack_fails_on_the_first_run(tmp_path: Path) -> None:
    spec = SweepSpec.load(write_sweep(tmp_path, GRID + '[metrics]\nrisk = "inventory"\n'))
    with pytest.raises(
        ValueError, match=r"metrics.risk = 'inventory': not a metric of the runs \(they report: .*pulls"
    ):
        sweep(spec, tmp_path / "out")
    assert stored_rows(tmp_path / "out") == 1  # the one run done is kept


@pytest.mark.parametrize(
    ("risk", "pnl", "expected"),
    [
        ([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 2.5], [True, True, False, False]),
        ([1.0, 1.0], [2.0, 2.0], [True, True]),  # equal points dominate neither
        ([1.0, np.nan, 0.5], [1.0, 9.0, np.nan], [True, False, False]),  # NaN: never efficient
        ([], [], []),
    ],
)
def test_efficient_frontier(risk: list[float], pnl: list[float], expected: list[bool]) -> None:
    assert efficient_frontier(risk, pnl).tolist() == expected


def test_summarize_names_a_missing_metric(spec: SweepSpec, tmp_path: Path) -> None:
    runs = sweep(spec, tmp_path / "out").runs
    with pytest.raises(ValueError, match=r"metrics\.pnl = 'total_pnl_mean': not a metric"):
        summarize(runs.drop(columns="total_pnl_mean"), spec)


# --------------------------------------------------------------------------------------------------
# Output directory, resume, interruption


def test_a_non_empty_output_directory_needs_resume(spec: SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=f"{out}: the output directory is not empty"):
        sweep(spec, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


class StopAfter:
    """A run function that raises KeyboardInterrupt on its n-th call (as Ctrl-C would)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, config: FakeConfig, seed: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return fast_run(config, seed)


def test_interrupted_sweep_keeps_its_runs_and_resume_completes_it(
    spec: SweepSpec, reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, out, run_fn=StopAfter(20), flush_rows=6)
    assert not (out / "runs.parquet").exists() and not (out / "summary.parquet").exists()
    assert (
        len(list((out / "parts").glob("part-*.parquet"))) == 4
    )  # 3 full parts + the 1 flushed on the way out
    assert stored_rows(out) == 19  # every completed run, none lost
    assert not list(out.rglob("*.tmp"))
    result = sweep(spec, out, resume=True)
    assert (result.n_new, result.n_reused) == (48 - 19, 19)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), reference)
    again = sweep(spec, out, resume=True)  # nothing left: the same tables again
    assert (again.n_new, again.n_reused) == (0, 48)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), reference)


def test_a_failed_write_leaves_no_half_table(
    spec: SweepSpec, reference: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pd.DataFrame.to_parquet

    def disk_full(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> Any:
        if {"setting", "seed"} <= set(
            self.columns
        ):  # the runs table (parts have no setting, summaries no seed)
            path.write(b"PAR1 half a table")
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sweep(spec, out)
    assert not (out / "runs.parquet").exists() and not list(out.rglob("*.tmp"))
    assert not (out / "summary.parquet").exists()  # written only with its runs table
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert sweep(spec, out, resume=True).n_new == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), reference)


def test_duplicated_keys_are_dropped_deterministically(
    spec: SweepSpec, reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sweep(spec, out)
    first = pd.read_parquet(out / "parts" / "part-000001.parquet")
    # a later copy of some runs (a rerun), with different numbers, and a stale temp file of a killed writer
    (first.head(10).assign(total_pnl_mean=-1.0)).to_parquet(
        out / "parts" / "part-000002.parquet", index=False
    )
    (out / "parts" / ".part-000003.parquet.abc.tmp").write_bytes(b"PAR1")
    result = sweep(spec, out, resume=True)
    assert result.n_new == 0
    pd.testing.assert_frame_equal(result.runs, reference)
    assert not list(out.rglob("*.tmp"))


def test_resume_with_a_larger_grid_runs_only_the_new_settings(spec: SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep(spec, out)
    bigger = SweepSpec.load(
        write_sweep(tmp_path, GRID.replace("[1e-5, 1e-4, 1e-3]", "[1e-5, 1e-4, 1e-3, 1e-2]"), name="bigger")
    )
    result = sweep(bigger, out, resume=True)
    assert (result.n_new, result.n_reused) == (16, 48)
    fresh = sweep(bigger, tmp_path / "fresh")
    pd.testing.assert_frame_equal(result.runs, fresh.runs)


def test_progress_bar_counts_runs(
    spec: SweepSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sweep(spec, tmp_path / "out", run_fn=fast_run, load_config=FakeConfig.load, progress=True)
    err = capsys.readouterr().err
    assert "test_sweep" in err and "48/48" in err


# --------------------------------------------------------------------------------------------------
# On the cluster


def test_cluster_sweep_equals_local_sweep_and_a_failed_run_is_resumable(
    client: Client, spec: SweepSpec, reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(
        SweepError, match=r"setting \d+ .* with seed 3 failed: ArithmeticError: seed 3 diverged"
    ) as info:
        sweep(spec, out, client=client, run_fn=failing_run, flush_rows=1)
    assert isinstance(info.value.__cause__, ArithmeticError)
    assert not (out / "runs.parquet").exists()
    done = stored_rows(out)
    result = sweep(spec, out, client=client, resume=True)
    assert result.n_new == 48 - done and result.n_reused == done
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), reference)


def test_a_lost_worker_loses_and_duplicates_no_run(
    client: Client, spec: SweepSpec, reference: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed_at: list[int] = []

    def kill_when_half_done() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = len(list((out / "parts").glob("part-*.parquet"))) if (out / "parts").is_dir() else 0
            if n >= 12:
                killed_at.append(n)
                os.kill(victim, signal.SIGKILL)  # the worker process dies with runs in flight
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_half_done)
    killer.start()
    try:
        result = sweep(spec, out, client=client, run_fn=slow_run, flush_rows=1)
    finally:
        killer.join()
    assert killed_at and killed_at[0] < 48  # the worker died mid-sweep
    assert victim not in client.run(os.getpid).values()
    assert stored_rows(out) == 48  # every run stored exactly once
    pd.testing.assert_frame_equal(result.runs, reference)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), reference)
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it
