"""Sweeps on bad input and bad disks: sizes counted and refused before any config is built, seeds
that fit the tables, named pipes refused, a full disk named in one line, ``runs.parquet`` and
``summary.parquet`` replaced together or not at all; ``--dask local:N`` bounded.

The simulator is stood in for by ``dist_fakes`` (as in test_dist_sweep.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from builders import assert_usage_error, run
from disks import full_disk_dir, raising, read_only_dir
from dist_fakes import BASE_TOML, FakeConfig, fast_run

import optmm.scaleout.sweep as sweep_mod
from optmm.scaleout import SweepSpec, parse_spec, run_sweep
from optmm.scaleout.cluster import max_local_workers

ROOT = Path(__file__).resolve().parents[2]
GRID = '[grid]\n"quoter.gamma_risk_aversion" = [1e-5, 1e-4, 1e-3]\n"flow.latency_steps" = [0, 1]\n'


def write_sweep(directory: Path, body: str = GRID, *, seeds: str = "3") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "base.toml").write_text(BASE_TOML)
    path = directory / "sweep.toml"
    path.write_text(f'name = "robust"\nbase = "base.toml"\nseeds = {seeds}\n{body}')
    return path


def sweep(spec: Any, out: Path, **kwargs: Any) -> Any:
    return run_sweep(spec, out, run_fn=fast_run, load_config=FakeConfig.load, progress=False, **kwargs)


@pytest.fixture
def fake_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_mod, "_default_run_fn", lambda: fast_run)
    monkeypatch.setattr(sweep_mod, "_default_load_config", lambda: FakeConfig.load)


# --------------------------------------------------------------------------------------------------
# sizes and seeds, before any work


def _values(n: int) -> str:
    return "[" + ", ".join(str(i) for i in range(n)) + "]"


@pytest.mark.parametrize(
    ("body", "seeds", "message"),
    [
        (  # 10^6 settings: built one by one, minutes before the first run
            f'[grid]\n"a.x" = {_values(100)}\n"b.y" = {_values(100)}\n"c.z" = {_values(100)}\n',
            "1",
            "[grid]: 100 x 100 x 100 = 1,000,000 settings: at most 10,000",
        ),
        (
            f'[grid]\n"a.x" = {_values(100)}\n',
            "20000",
            "100 settings x 20,000 seeds = 2,000,000 runs: at most 1,000,000",
        ),
        ("", "1000000000000", "field 'seeds': must be >= 1 and <= 1,000,000 (runs)"),
        ("", "[0, 9223372036854775808]", "seeds must be integers >= 0 and <= 9223372036854775807"),
        ("", "[1" + "0" * 400 + "]", "seeds must be integers >= 0 and <= 9223372036854775807"),
    ],
)
def test_too_large_sweeps_and_seeds_are_refused_before_any_config(
    tmp_path: Path, body: str, seeds: str, message: str
) -> None:
    path = write_sweep(tmp_path, body, seeds=seeds)
    loaded: list[Path] = []

    def load(p: Path) -> FakeConfig:
        loaded.append(p)
        return FakeConfig.load(p)

    with pytest.raises(ValueError) as info:
        run_sweep(path, tmp_path / "out", run_fn=fast_run, load_config=load, progress=False)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert loaded == [] and not (tmp_path / "out").exists()


def test_the_largest_seed_runs_and_is_stored(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, "", seeds="[0, 9223372036854775807]")
    result = sweep(path, tmp_path / "out")
    assert pd.read_parquet(tmp_path / "out" / "runs.parquet")["seed"].tolist() == [0, 2**63 - 1]
    assert result.n_new == 2


@pytest.mark.usefixtures("fake_sim")
def test_cli_refuses_a_huge_grid_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_sweep(tmp_path, f'[grid]\n"a.x" = {_values(200)}\n"b.y" = {_values(200)}\n')
    err = assert_usage_error(
        run(capsys, "sweep", str(path), "--out", str(tmp_path / "out")), "at most 10,000"
    )
    assert "200 x 200 = 40,000 settings" in err


@pytest.mark.usefixtures("fake_sim")
def test_one_seed_prints_no_nan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_sweep(tmp_path, seeds="1")
    code, out, _ = run(capsys, "sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 0 and not re.search(r"\bnan\b", out, re.IGNORECASE)
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["0"]]
    assert rows and rows[0][-2:] == ["n/a", "n/a"]  # pnl_std, risk: one seed has no spread


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``optmm`` in a child process: a read that blocks fails the test by its timeout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "optmm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_named_pipes_are_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    done = _run_cli("sweep", str(fifo), "--out", str(tmp_path / "out"))
    assert (done.returncode, done.stderr) == (2, f"optmm: error: {fifo}: not a regular file\n")
    path = write_sweep(tmp_path / "s")
    path.write_text(path.read_text().replace('base = "base.toml"', f'base = "{fifo}"'))
    done = _run_cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"field 'base': not a regular file '{fifo}'" in done.stderr
    with pytest.raises(ValueError, match="cannot read the sweep file \\(not a regular file\\)"):
        SweepSpec.load(fifo)


# --------------------------------------------------------------------------------------------------
# disks


@pytest.mark.usefixtures("fake_sim")
@pytest.mark.parametrize("free_kib", [0, 8, 24, 40, 64])  # the manifest, a part, the tables, the plot
def test_a_full_disk_is_one_line_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_kib: int
) -> None:
    path = write_sweep(tmp_path / "s", seeds="40")
    with full_disk_dir(tmp_path / "disk", free_kib, raising(monkeypatch, pd.DataFrame, "to_parquet")) as disk:
        out = disk / "out"
        err = assert_usage_error(run(capsys, "sweep", str(path), "--out", str(out), "--no-progress"))
        assert err.startswith(f"optmm: error: {out}") and ": cannot write (" in err
        assert err.count("cannot write") == 1 and "No space left on device" in err
        assert not list(disk.rglob("*.tmp"))
        assert (out / "runs.parquet").exists() == (out / "summary.parquet").exists()  # a pair or none


def test_a_read_only_output_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep_mod, "_default_run_fn", lambda: fast_run)
    monkeypatch.setattr(sweep_mod, "_default_load_config", lambda: FakeConfig.load)
    path = write_sweep(tmp_path / "s")

    with read_only_dir(tmp_path / "ro", raising(monkeypatch, Path, "mkdir")) as ro:
        err = assert_usage_error(run(capsys, "sweep", str(path), "--out", str(ro / "out")))
        assert f"{ro / 'out' / 'parts'}: cannot write (Read-only file system)" in err


def _failing_table(monkeypatch: pytest.MonkeyPatch, column: str) -> None:
    """Make writing the table that has ``column`` fail half-way, as a full disk would."""
    real = pd.DataFrame.to_parquet

    def failing(self: pd.DataFrame, target: Any, *args: Any, **kwargs: Any) -> Any:
        if column in self.columns and "setting" in self.columns:
            target.write(b"PAR1 half a table")
            raise OSError(28, "No space left on device")
        return real(self, target, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing)


@pytest.mark.parametrize("column", ["n_runs", "seed"])  # the summary, the runs table
def test_runs_and_summary_are_replaced_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str
) -> None:
    small = write_sweep(tmp_path / "small")
    out = tmp_path / "out"
    sweep(small, out)
    before = {name: (out / name).read_bytes() for name in ("runs.parquet", "summary.parquet")}
    larger = write_sweep(tmp_path / "larger", GRID.replace("[0, 1]", "[0, 1, 2]"))
    _failing_table(monkeypatch, column)
    with pytest.raises(
        OSError, match=f"{out / ('summary' if column == 'n_runs' else 'runs')}.parquet: cannot write"
    ):
        sweep(larger, out, resume=True)
    # neither table moved: the old pair is still a pair
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    result = sweep(larger, out, resume=True)
    assert result.n_new == 0 and len(result.runs) == 27
    runs, summary = pd.read_parquet(out / "runs.parquet"), pd.read_parquet(out / "summary.parquet")
    assert int(summary["n_runs"].sum()) == len(runs) == 27


def test_stale_temporary_tables_are_removed_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep(write_sweep(tmp_path), out)
    for name in (".runs.parquet.abc.tmp", ".summary.parquet.def.tmp", "parts/.part-000009.parquet.x.tmp"):
        (out / name).write_bytes(b"left by a killed process")
    (out / "notes.tmp").write_text("not ours")
    sweep(write_sweep(tmp_path), out, resume=True)
    assert sorted(p.name for p in out.rglob("*.tmp")) == ["notes.tmp"]


# --------------------------------------------------------------------------------------------------
# --dask local:N


def test_local_workers_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    most = max_local_workers()
    assert most == 4 * max(1, os.cpu_count() or 1)
    assert parse_spec(f"local:{most}").workers == most
    with pytest.raises(ValueError, match=f"at most {most} local workers \\(4 per core"):
        parse_spec(f"local:{most + 1}")
    err = assert_usage_error(run(capsys, "sweep", "s.toml", "--out", "o", "--dask", "local:100000"), "--dask")
    assert f"at most {most} local workers" in err
    for spec in ("local:²", "local:1e3", "local:-1"):
        with pytest.raises(ValueError, match="an integer >= 1"):
            parse_spec(spec)
