"""Run directories, plots, the summary as text, comparison tables (optmm.sim.report)."""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optmm.sim import report
from optmm.sim.report import (
    COMPARE_COLUMNS,
    FRAMES,
    PLOTS,
    compare_table,
    format_table,
    write_run,
)
from optmm.sim.result import ATTRIBUTION, SimResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_PATHS, N_STEPS, DT_S = 2, 50, 60.0


@dataclass(frozen=True)
class FakeConfig:
    """What write_run needs of a SimConfig."""

    steps: int = N_STEPS

    def to_dict(self) -> dict[str, Any]:
        return {"sim": {"steps": self.steps, "dt_s": DT_S}}

    def to_toml(self) -> str:
        return f"[sim]\nsteps = {self.steps}\ndt_s = {DT_S}\n"

    @property
    def content_hash(self) -> str:
        return f"{self.steps:064x}"


def make_result(strategy: str = "inventory", seed: int = 1, scale: float = 1.0) -> SimResult:
    """A small hand-made result: 2 paths x 50 steps, 2 underlyings, a few fills and hedges, a quotes
    window of 20 steps and 3 contracts with gaps (NaN prices)."""
    rng = np.random.default_rng(seed)
    n = N_PATHS * N_STEPS
    path = np.repeat(np.arange(N_PATHS), N_STEPS)
    step = np.tile(np.arange(1, N_STEPS + 1), N_PATHS)
    steps = pd.DataFrame({"path": path, "step": step, "time_s": step * DT_S})
    for c in ATTRIBUTION:
        steps[c] = rng.normal(0.0, 100.0, n) * scale
    steps["hedge_cost"] = np.abs(steps["hedge_cost"])
    steps["pnl"] = steps[list(ATTRIBUTION[:-1])].sum(axis=1) - steps["hedge_cost"]
    steps["cum_pnl"] = steps.groupby("path")["pnl"].cumsum()
    steps["delta_shares"] = rng.normal(0.0, 500.0, n)
    steps["gamma_dollars_1pct"] = rng.normal(0.0, 50.0, n)
    steps["vega_per_vol_point"] = rng.normal(0.0, 80.0, n)
    steps["n_fills"] = rng.integers(0, 3, n)

    names = np.array(["AAA", "BBB"])
    u_path, u_step, u_idx = (
        a.ravel() for a in np.meshgrid(np.arange(N_PATHS), np.arange(1, N_STEPS + 1), [0, 1], indexing="ij")
    )
    layer = np.full(u_path.size, "NORMAL", dtype=object)
    layer[(u_idx == 0) & (u_step >= 10) & (u_step < 16)] = "SOFT"
    layer[(u_idx == 1) & (u_step >= 12) & (u_step < 14)] = "HARD"
    layer[(u_idx == 1) & (u_step >= 30) & (u_step < 34)] = "TOXIC"
    underlyings = pd.DataFrame(
        {
            "path": u_path,
            "step": u_step,
            "time_s": u_step * DT_S,
            "underlying": names[u_idx],
            "spot": 100.0 + rng.normal(0, 1, u_path.size),
            "vol": 0.2 + rng.normal(0, 0.01, u_path.size),
            "delta_shares": rng.normal(0, 100, u_path.size),
            "gamma_dollars_1pct": rng.normal(0, 10, u_path.size),
            "vega_per_vol_point": rng.normal(0, 10, u_path.size),
            "stock_shares": rng.integers(-500, 500, u_path.size).astype(float),
            "layer": layer.astype(str),
            "toxicity_score": rng.random(u_path.size),
        }
    )
    fills = pd.DataFrame(
        {
            "path": [0, 0, 0, 0, 1],
            "step": [22, 25, 25, 31, 7],
            "time_s": [22 * DT_S, 25 * DT_S, 25 * DT_S, 31 * DT_S, 7 * DT_S],
            "underlying": ["AAA", "AAA", "BBB", "AAA", "BBB"],
            "contract": [2, 2, 5, 2, 5],
            "kind": ["call", "call", "put", "call", "put"],
            "strike": [100.0, 100.0, 95.0, 100.0, 95.0],
            "expiry_days": [30.0, 30.0, 14.0, 30.0, 14.0],
            "side": [1, -1, -1, 1, 1],
            "size": [1.0, 2.0, 1.0, 1.0, 3.0],
            "price": [4.9, 5.3, 2.2, 5.0, 2.0],
            "fair": [5.0, 5.1, 2.1, 5.05, 2.05],
            "spread_capture": [10.0, 40.0, -10.0, 5.0, 15.0],
            "informed": [False, True, False, False, True],
            "markout": [12.0, -30.0, 4.0, math.nan, 1.0],
        }
    )
    hedges = pd.DataFrame(
        {
            "path": [0, 1],
            "step": [13, 40],
            "time_s": [13 * DT_S, 40 * DT_S],
            "underlying": ["AAA", "BBB"],
            "shares": [-300.0, 120.0],
            "price": [99.9, 50.1],
            "mid": [100.0, 50.0],
            "cost": [30.0, 12.0],
            "reason": ["band", "kill"],
        }
    )
    q_step, q_contract = (a.ravel() for a in np.meshgrid(np.arange(20, 40), [1, 2, 5], indexing="ij"))
    fair = 5.0 + 0.01 * q_step + q_contract
    bid, ask = fair - 0.1, fair + 0.1
    gap = (q_step >= 27) & (q_step < 30) & (q_contract == 2)
    bid[gap] = np.nan
    quotes = pd.DataFrame(
        {
            "step": q_step,
            "time_s": q_step * DT_S,
            "contract": q_contract,
            "fair": fair,
            "bid": bid,
            "ask": ask,
            "bid_size": np.where(gap, 0.0, 1.0),
            "ask_size": np.ones(q_step.size),
        }
    )
    summary: dict[str, Any] = {
        "config_hash": FakeConfig().content_hash,
        "seed": seed,
        "strategy": strategy,
        "paths": N_PATHS,
        "steps": N_STEPS,
        "dt_s": DT_S,
        "total_pnl_mean": 1_234_567.8 * scale,
        "total_pnl_std": np.float64(2_000.5 * scale),
        "pnl_per_day_mean": 100.0,
        "sharpe": math.nan,
        "attribution": {c: float(i + 1) * 1000.0 * scale for i, c in enumerate(ATTRIBUTION)},
        "time_in_layer": {
            "KILL": 0.0,
            "TOXIC": 0.04,
            "STALE": 0.0,
            "HARD": 0.02,
            "SOFT": 0.06,
            "NORMAL": 0.88,
        },
        "max_abs_delta_shares": 1500.0,
        "mean_abs_delta_shares": 400.0,
        "max_abs_vega_per_vol_point": 250.0,
        "mean_abs_vega_per_vol_point": 60.0,
        "max_abs_gamma_dollars_1pct": 90.0,
        "mean_abs_gamma_dollars_1pct": 20.0,
        "fill_rate": 0.0123,
        "fill_price_markout_loss_rate": 0.25,
        "markout_total": -14.0,
        "pulls": 3,
        "kill_events": np.int64(0),
        "final_inventory_mean": -2.5,
        "final_inventory_std": 1.5,
        "wall_s": math.inf,
    }
    return SimResult(
        config=FakeConfig(),  # type: ignore[arg-type]
        seed=seed,
        strategy=strategy,
        steps=steps,
        underlyings=underlyings,
        fills=fills,
        hedges=hedges,
        quotes=quotes,
        summary=summary,
    )


@pytest.fixture(scope="module")
def result() -> SimResult:
    return make_result()


@pytest.fixture
def fast_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for the three plots (a PNG signature only): the tests of the directory's
    atomicity do not need real pictures, which cost ~1 s a run; the plots are tested on their own."""

    def fake(result: SimResult, path: Any) -> Path:
        Path(path).write_bytes(PNG_MAGIC + bytes(1024))
        return Path(path)

    for name in ("plot_pnl", "plot_inventory", "plot_quotes", "plot_pnl_distribution"):
        monkeypatch.setattr(report, name, fake)


def expected_files() -> set[str]:
    """The files of a run of several paths (the fixture has two)."""
    return {f"{f}.parquet" for f in FRAMES} | {
        "paths.parquet",
        "summary.json",
        "config.toml",
        "pnl_distribution.png",
        *PLOTS,
    }


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path


# --------------------------------------------------------------------------------------------------
# the run directory


def test_write_run_round_trip(tmp_path: Path, result: SimResult) -> None:
    out = write_run(result, tmp_path / "runs" / "r1")
    assert out == tmp_path / "runs" / "r1"
    assert {p.name for p in out.iterdir()} == expected_files()
    assert [p.name for p in out.parent.iterdir()] == ["r1"]  # no temporary directory left
    for name in FRAMES:
        back = pd.read_parquet(out / f"{name}.parquet")
        want = getattr(result, name)
        if name in ("steps", "underlyings"):  # path 0's time series only, unless asked for every path's
            want = want[want["path"] == 0]
        pd.testing.assert_frame_equal(back, want.reset_index(drop=True))
    totals = pd.read_parquet(out / "paths.parquet")
    assert list(totals["path"]) == [0, 1]
    for p in (0, 1):
        rows = result.steps[result.steps["path"] == p]
        assert totals["total_pnl"][p] == pytest.approx(rows["pnl"].sum(), rel=1e-12)
        assert totals["hedge_cost"][p] == pytest.approx(rows["hedge_cost"].sum(), rel=1e-12)
        assert totals["fills"][p] == int((result.fills["path"] == p).sum())
    text = (out / "summary.json").read_text()
    summary = json.loads(text)
    assert summary["config_hash"] == FakeConfig().content_hash
    assert summary["sharpe"] is None and summary["wall_s"] is None  # NaN and inf written as null
    assert summary["total_pnl_std"] == 2_000.5 and summary["kill_events"] == 0
    assert summary["attribution"]["hedge_cost"] == 7000.0
    assert list(summary) == sorted(summary) and text.startswith('{\n  "attribution"')
    config = (out / "config.toml").read_text()
    assert config == FakeConfig().to_toml()
    assert tomllib.loads(config)["sim"]["steps"] == N_STEPS
    for png in (*PLOTS, "pnl_distribution.png"):
        assert_png(out / png)
    assert (os.stat(out).st_mode & 0o777) == 0o755
    # quantiles of the two paths' totals, as numpy computes them from the steps
    totals_np = result.steps.groupby("path")["pnl"].sum().to_numpy()
    assert summary["total_pnl_q05"] == pytest.approx(np.quantile(totals_np, 0.05), rel=1e-12)
    assert summary["total_pnl_q95"] == pytest.approx(np.quantile(totals_np, 0.95), rel=1e-12)


def test_per_path_series_writes_every_path(tmp_path: Path, result: SimResult, fast_plots: None) -> None:
    out = write_run(result, tmp_path / "run", per_path_series=True)
    for name in ("steps", "underlyings"):
        back = pd.read_parquet(out / f"{name}.parquet")
        pd.testing.assert_frame_equal(back, getattr(result, name).reset_index(drop=True))
        assert set(back["path"]) == {0, 1}


def test_existing_directory_is_not_overwritten(tmp_path: Path, result: SimResult, fast_plots: None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"run: exists and is not empty"):
        write_run(result, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_empty_directory_is_used(tmp_path: Path, result: SimResult, fast_plots: None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    write_run(result, out)
    assert {p.name for p in out.iterdir()} == expected_files()


def test_file_in_the_way_is_refused(tmp_path: Path, result: SimResult, fast_plots: None) -> None:
    out = tmp_path / "run"
    out.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        write_run(result, out, overwrite=True)
    assert out.read_text() == "x"


def test_overwrite_replaces(tmp_path: Path, result: SimResult, fast_plots: None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    write_run(result, out, overwrite=True)
    assert {p.name for p in out.iterdir()} == expected_files()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the old directory is gone too
    # and again over a previous run
    other = make_result("symmetric", seed=2)
    write_run(other, out, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["strategy"] == "symmetric"
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "steps.parquet"), other.steps[other.steps["path"] == 0]
    )


def test_overwrite_a_link_replaces_the_link_not_its_target(
    tmp_path: Path, result: SimResult, fast_plots: None
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (tmp_path / "run").symlink_to(target, target_is_directory=True)
    out = write_run(result, tmp_path / "run", overwrite=True)
    assert not out.is_symlink() and {p.name for p in out.iterdir()} == expected_files()
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "run"]


@pytest.mark.parametrize("writer", ["_write_frame", "_write_text", "plot_inventory", "plot_quotes"])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_leaves_nothing_behind(
    tmp_path: Path,
    result: SimResult,
    monkeypatch: pytest.MonkeyPatch,
    fast_plots: None,
    writer: str,
    existing: bool,
) -> None:
    calls = []

    def boom(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise RuntimeError("disk on fire")

    out = tmp_path / "run"
    if existing:
        out.mkdir()
        (out / "old.txt").write_text("old")
    monkeypatch.setattr(report, writer, boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_run(result, out, overwrite=True)
    assert calls
    if existing:
        assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == (["run"] if existing else [])


def test_failed_final_rename_restores_the_old_run(
    tmp_path: Path, result: SimResult, monkeypatch: pytest.MonkeyPatch, fast_plots: None
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp"):
            raise OSError("no")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="no"):
        write_run(result, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_summary_hash_must_match_the_config(tmp_path: Path, fast_plots: None) -> None:
    r = make_result()
    bad = replace(r, summary={**r.summary, "config_hash": "f" * 64})
    with pytest.raises(ValueError, match=r"summary\.config_hash"):
        write_run(bad, tmp_path / "run")
    assert not any(tmp_path.iterdir())
    missing = replace(r, summary={k: v for k, v in r.summary.items() if k != "config_hash"})
    out = write_run(missing, tmp_path / "run")
    assert json.loads((out / "summary.json").read_text())["config_hash"] == FakeConfig().content_hash
    assert "config_hash" not in missing.summary  # the result is not modified


def test_summary_that_is_not_jsonable(tmp_path: Path, fast_plots: None) -> None:
    r = make_result()
    bad = replace(r, summary={**r.summary, "attribution": {"x": object()}})
    with pytest.raises(TypeError, match=r"summary.attribution.x: object"):
        write_run(bad, tmp_path / "run")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------
# plots


def test_plots_with_empty_frames(tmp_path: Path, result: SimResult) -> None:
    empty = replace(
        result,
        fills=result.fills.iloc[0:0],
        hedges=result.hedges.iloc[0:0],
        quotes=result.quotes.iloc[0:0],
    )
    out = write_run(empty, tmp_path / "a")
    for png in PLOTS:
        assert_png(out / png)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "fills.parquet"), result.fills.iloc[0:0])
    # frames without even columns, and no steps at all
    bare = replace(
        result,
        steps=pd.DataFrame(),
        underlyings=pd.DataFrame(),
        fills=pd.DataFrame(),
        hedges=pd.DataFrame(),
        quotes=pd.DataFrame(),
    )
    out = write_run(bare, tmp_path / "b")
    for png in PLOTS:
        assert_png(out / png)


def test_quote_panels_prefer_contracts_with_fills(result: SimResult) -> None:
    # path 0, steps 20-39: contract 2 has three fills (steps 22, 25, 31), contract 5 one (step 25);
    # path 1's fill of contract 5 does not count, nor would one outside the window
    assert report._quote_contracts(result.quotes, result.fills) == [2, 5, 1]
    more = pd.concat([result.fills, result.fills.iloc[[2, 2, 2]].assign(step=45)])
    assert report._quote_contracts(result.quotes, more) == [2, 5, 1]
    assert report._quote_contracts(result.quotes, result.fills.iloc[0:0]) == [1, 2, 5]
    many = pd.concat([result.quotes.assign(contract=result.quotes["contract"] + k * 10) for k in range(3)])
    assert report._quote_contracts(many, result.fills) == [2, 5, 1, 11]


def test_layer_shading() -> None:
    times = np.array([0.0, 60.0, 120.0, 180.0, 240.0, 300.0])
    codes = np.array([5, 4, 4, 5, 1, 4])
    x, shading = report._layer_shading(times, codes, 60.0)
    np.testing.assert_array_equal(x, [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0])
    assert list(shading) == [1, 4]  # most severe first; NORMAL is not shaded
    np.testing.assert_array_equal(shading[4], [0, 1, 1, 0, 0, 1, 1])  # the last step covers [300, 360)
    np.testing.assert_array_equal(shading[1], [0, 0, 0, 0, 1, 0, 0])
    x, shading = report._layer_shading(times[:0], codes[:0], 0.0)
    assert x.size == 0 and shading == {}
    # merged into 3 bins of 2 steps, each with its most severe layer
    x, shading = report._layer_shading(times, codes, 60.0, max_bins=3)
    np.testing.assert_array_equal(x, [0.0, 120.0, 240.0, 360.0])
    np.testing.assert_array_equal(shading[4], [1, 1, 0, 0])
    np.testing.assert_array_equal(shading[1], [0, 0, 1, 1])
    x, shading = report._layer_shading(np.arange(7.0), np.array([5, 5, 5, 5, 5, 5, 3]), 1.0, max_bins=2)
    np.testing.assert_array_equal(x, [0.0, 4.0, 7.0])
    np.testing.assert_array_equal(shading[3], [0, 1, 1])


def test_worst_layer_over_underlyings(result: SimResult) -> None:
    u = result.underlyings[result.underlyings["path"] == 0]
    times, codes = report._worst_layers(u)
    assert times.size == N_STEPS
    by_step = dict(zip(times / DT_S, codes, strict=True))
    assert by_step[9.0] == 5 and by_step[10.0] == 4 and by_step[12.0] == 3 and by_step[14.0] == 4
    assert by_step[31.0] == 1 and by_step[34.0] == 5
    with pytest.raises(ValueError, match="unknown layer 'PANIC'"):
        report._worst_layers(u.assign(layer="PANIC"))


# --------------------------------------------------------------------------------------------------
# comparison


def test_compare_table_and_format() -> None:
    a, b = make_result("inventory"), make_result("symmetric", seed=2, scale=0.001)
    b.summary["sharpe"] = 1.25
    del b.summary["pulls"]
    df = compare_table({"inventory": a, "symmetric": b})
    assert list(df.index) == ["inventory", "symmetric"] and df.index.name == "strategy"
    assert list(df.columns) == list(COMPARE_COLUMNS)
    assert (df.dtypes == np.float64).all()
    assert df.loc["inventory", "total_pnl_mean"] == 1_234_567.8
    assert df.loc["symmetric", "hedge_cost"] == pytest.approx(7.0)
    assert df.loc["inventory", "time_in_normal"] == 0.88
    assert math.isnan(df.loc["inventory", "sharpe"]) and df.loc["symmetric", "sharpe"] == 1.25
    assert math.isnan(df.loc["symmetric", "pulls"]) and df.loc["inventory", "pulls"] == 3.0

    text = format_table(df)
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # fixed width
    assert lines[0].split() == ["metric", "inventory", "symmetric"]
    assert set(lines[1]) == {"-"}
    rows = {line[: lines[0].index("inventory") - 2].strip(): line for line in lines[2:]}
    assert len(rows) == len(COMPARE_COLUMNS)
    assert rows["total P&L, mean"].split()[-2:] == ["1,234,568", "1,235"]  # one precision per row
    # 2 paths of 50 one-minute steps: a Sharpe ratio of the paths' totals, said so
    assert df.attrs["sharpe_basis"] == "per 3000-s path, not annualised"
    assert rows["Sharpe (per 3000-s path, not annualised)"].split()[-2:] == ["n/a", "1.25"]
    assert rows["fill rate"].split()[-2:] == ["1.23%", "1.23%"]
    assert rows["time in NORMAL"].split()[-2:] == ["88.0%", "88.0%"]
    assert rows["pulls"].split()[-2:] == ["3", "n/a"]
    assert rows["hedge cost"].split()[-2:] == ["7,000", "7"]


def test_format_table_unknown_columns_and_empty() -> None:
    df = pd.DataFrame({"mystery": [0.5, 2.0]}, index=["x", "y"])
    assert format_table(df).splitlines()[2].split() == ["mystery", "0.50", "2.00"]
    assert format_table(compare_table({})).splitlines()[0] == "metric".ljust(
        len("fills marked out below their price")
    )


def test_format_table_shows_small_figures() -> None:
    # a fill rate of 0.0016 is 0.16%, not 0.00%; a rate of 4e-5 is 0.0040%; a vega of 0.004 is not 0.00
    df = pd.DataFrame(
        {
            "fill_rate": [0.0016, 0.2423],
            "time_in_normal": [0.00004, 1.0],
            "max_abs_vega_per_vol_point": [0.004, 2.5],
        },
        index=["a", "b"],
    )
    rows = {line.split("  ")[0]: line.split()[-2:] for line in format_table(df).splitlines()[2:]}
    assert rows["fill rate"] == ["0.16%", "24.23%"]
    assert rows["time in NORMAL"] == ["0.0040%", "100.0000%"]
    assert rows["max |vega| (per vol pt)"] == ["0.0040", "2.5000"]
    assert report.format_figure(-0.0001, "money") == "-0.00010"
    assert report.format_figure(-1e-12, "ratio") == "0.00000000"  # at most 8 decimals, no "-0"
    assert report.format_figure(float("nan"), "percent") == "n/a"
    assert report.format_figure(0.0, "percent2") == "0.00%"


@pytest.mark.parametrize(
    ("paths", "steps", "dt_s", "basis"),
    [
        (8, 23_400, 1.0, "per 6.5-h path, not annualised"),
        (1000, 200, 0.005, "per 1-s path, not annualised"),
        (1, 46_800, 1.0, "daily, not annualised"),
        (1, 46_799, 1.0, "n/a: needs two paths or two days"),
    ],
)
def test_sharpe_basis(paths: int, steps: int, dt_s: float, basis: str) -> None:
    assert report.sharpe_basis({"paths": paths, "steps": steps, "dt_s": dt_s}) == basis


def test_format_summary() -> None:
    r = make_result()
    r.summary.update(fill_rate=0.0016, sharpe=0.123456, final_inventory_std=math.nan)
    lines = report.format_summary(r.summary).splitlines()
    assert lines[0] == f"strategy inventory: 2 path(s) x 50 steps of 60 s, seed 1, config {'0' * 12}"
    rows = {line.strip().rsplit("  ", 1)[0].strip(): line.split()[-1] for line in lines[1:]}
    assert rows["fill rate (fills per quoted side-step)"] == "0.16%"
    assert rows["Sharpe (per 3000-s path, not annualised)"] == "0.12"
    assert rows["final inventory (std)"] == "n/a"  # never "nan"
    assert rows["total P&L (mean over paths)"] == "1,234,568"
    assert rows["wall time (s)"] == "n/a"  # inf
    assert rows["spread_capture"] == "1,000" and rows["hedge_cost"] == "7,000"
    assert lines[-1] == "  time in layers: TOXIC 4.0%, HARD 2.0%, SOFT 6.0%, NORMAL 88.0%"
    assert "nan" not in "\n".join(lines).lower().replace("n/a", "")
    assert len({len(line) for line in lines[1:-2] if "attribution" not in line}) == 1  # one column


def test_summary_json_keeps_full_precision() -> None:
    r = make_result()
    r.summary.update(fill_rate=0.0016123456789, sharpe=math.nan)
    doc = json.loads(report.summary_json(r.summary))
    assert doc["fill_rate"] == 0.0016123456789 and doc["sharpe"] is None


def test_reprs_are_short() -> None:
    r = make_result()
    text = repr(r)
    assert len(text) < 400 and len(text.splitlines()) <= 4
    assert (
        "strategy='inventory'" in text
        and f"config={'0' * 12}:" in text
        and "2 path(s) x 50 steps of 60 s" in text
    )
    assert "total P&L mean 1,234,568" in text and "fill rate 1.23%" in text and "Sharpe n/a" in text


# --------------------------------------------------------------------------------------------------
# what the plots draw


@dataclass(frozen=True)
class LimitedConfig(FakeConfig):
    """A FakeConfig with a limit set: delta for every underlying and for AAA, vega for BBB, gamma and
    the kill switch's daily loss for the book."""

    @property
    def limits(self) -> Any:
        from optmm.risk.limits import LimitSet

        doc = {
            "name": "plot_limits",
            "soft_fraction": 0.8,
            "underlying": {
                "delta_shares": 1000.0,
                "AAA": {"delta_shares": 1200.0},
                "BBB": {"vega_per_vol_point": 300},
            },
            "book": {"gamma_dollars_1pct": 1e9, "daily_loss": 500.0},
        }
        return LimitSet.from_dict(doc, source="<test>")


def _figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plots draw, kept instead of saved."""
    drawn: list[Any] = []

    def keep(fig: Any, path: Any) -> Path:
        drawn.append(fig)
        return Path(path)

    monkeypatch.setattr(report, "_save", keep)
    return drawn


def _hlines(ax: Any) -> dict[str, list[float]]:
    """The horizontal lines of ``ax`` at a non-zero level, by colour: their levels."""
    out: dict[str, list[float]] = {}
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        if y.size == 2 and y[0] == y[1] and y[0] != 0.0 and list(line.get_xdata()) == [0, 1]:
            out.setdefault(str(line.get_color()), []).append(float(y[0]))
    return out


def test_inventory_draws_the_limits_that_bound_the_book(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _figures(monkeypatch)
    # one underlying: its limits bound the book's figure; delta's are in reach of the data (|delta| ~
    # 500 x normal quantiles), the book's gamma limit of 1e9 is far off the scale and only named
    r = make_result()
    one = r.underlyings[r.underlyings["underlying"] == "AAA"]
    report.plot_inventory(replace(r, config=LimitedConfig(), underlyings=one), "x.png")
    delta, gamma, vega = drawn[-1].axes
    assert sorted(_hlines(delta)["#d7191c"]) == [-1200.0, -1000.0, 1000.0, 1200.0]  # hard: all, AAA
    assert sorted(_hlines(delta)["#fdae61"]) == [-960.0, -800.0, 800.0, 960.0]  # soft: 80%
    labels = {t.get_text() for t in delta.get_legend().get_texts()}
    assert {"hard limit (AAA)", "soft limit (AAA)"} <= labels
    assert _hlines(gamma) == {} and "off the scale:\nhard limit (book) ±1e+09" in gamma.texts[0].get_text()
    assert _hlines(vega) == {} and not vega.texts  # BBB's vega limit does not bound AAA
    # two underlyings: an underlying's limit does not bound the book's sum, the book's does
    report.plot_inventory(replace(r, config=LimitedConfig()), "x.png")
    delta, gamma, vega = drawn[-1].axes
    assert _hlines(delta) == {} and _hlines(vega) == {} and "hard limit (book)" in gamma.texts[0].get_text()
    # no limits at all: no lines
    report.plot_inventory(r, "x.png")
    assert all(_hlines(ax) == {} for ax in drawn[-1].axes)


def test_inventory_bins_a_long_run_into_range_and_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _figures(monkeypatch)
    n = 1000
    t = np.arange(n, dtype=float)
    delta = np.where(np.arange(n) % 2 == 0, 100.0, -100.0) + np.arange(n) * 0.1  # a swing each step
    steps = pd.DataFrame({"path": 0, "step": np.arange(n), "time_s": t, "delta_shares": delta,
                          "gamma_dollars_1pct": 0.0, "vega_per_vol_point": 0.0})  # fmt: skip
    r = replace(make_result(), steps=steps, underlyings=pd.DataFrame())
    report.plot_inventory(r, "x.png")
    ax = drawn[-1].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["range per 5 s", "mean per 5 s"]  # 1000 steps in 200 bins of 5 steps
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(delta.max()) and band[:, 1].min() == pytest.approx(delta.min())
    mean = ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(mean[:200], delta.reshape(200, 5).mean(axis=1))
    assert ax.get_xlabel() == "" and drawn[-1].axes[-1].get_xlabel() == "time (minutes)"  # 999 s


def test_pnl_shows_every_path_when_there_are_several(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _figures(monkeypatch)
    r = replace(make_result(), config=LimitedConfig())
    report.plot_pnl(r, "x.png")
    fig = drawn[-1]
    assert len(fig.axes) == 2
    fan = fig.axes[1]
    labels = {t.get_text() for t in fan.get_legend().get_texts()}
    assert labels == {"5-95% of paths", "25-75% of paths", "median", "mean", "kill: daily loss"}
    cum = r.steps.sort_values(["path", "step"])["cum_pnl"].to_numpy().reshape(N_PATHS, N_STEPS)
    lines = {line.get_label(): line for line in fan.get_lines()}
    np.testing.assert_allclose(lines["median"].get_ydata(), np.median(cum, axis=0))
    np.testing.assert_allclose(lines["mean"].get_ydata(), cum.mean(axis=0))
    assert _hlines(fan) == {"black": [-500.0]}  # the daily loss, below zero only
    thin = [line for line in fan.get_lines() if line.get_linewidth() == 0.5]
    assert len(thin) == N_PATHS
    # one path: the attribution alone
    one = replace(r, steps=r.steps[r.steps["path"] == 0])
    report.plot_pnl(one, "x.png")
    assert len(drawn[-1].axes) == 1


@pytest.mark.parametrize(("name", "magic"), [("p.png", PNG_MAGIC), ("p.pdf", b"%PDF-"), ("p.SVG", b"<?xml")])
def test_plots_honour_the_extension(tmp_path: Path, result: SimResult, name: str, magic: bytes) -> None:
    for plot in (report.plot_pnl, report.plot_inventory, report.plot_quotes):
        out = plot(result, tmp_path / name)
        assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["p.jpg", "p", "p.png.txt"])
def test_plots_refuse_other_extensions(tmp_path: Path, result: SimResult, name: str) -> None:
    for plot in (report.plot_pnl, report.plot_inventory, report.plot_quotes):
        with pytest.raises(ValueError, match=r"a figure is written as \.png, \.pdf or \.svg"):
            plot(result, tmp_path / name)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_pnl_distribution_draws_each_strategy_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = _figures(monkeypatch)
    rng = np.random.default_rng(5)
    n = 64
    results = {}
    for label, loc in (("greeks", 1000.0), ("no-pulls", 800.0)):
        steps = pd.DataFrame({"path": np.repeat(np.arange(n), 2), "step": np.tile([0, 1], n)})
        for c in ATTRIBUTION:
            steps[c] = 0.0
        steps["pnl"] = rng.normal(loc / 2.0, 100.0, 2 * n)
        results[label] = replace(make_result(label), steps=steps)
    report.plot_pnl_distribution(results, "x.png")
    hist, fan = drawn[-1].axes
    totals = {k: r.steps.groupby("path")["pnl"].sum().to_numpy() for k, r in results.items()}
    # one outline per strategy, on shared bins
    assert len(hist.patches) == 2
    assert [t.get_text() for t in hist.get_legend().get_texts()] == [
        "greeks (64 paths)",
        "no-pulls (64 paths)",
    ]
    # the means (dashed) and the fan's ranges at numpy's quantiles
    means = sorted(float(line.get_xdata()[0]) for line in hist.get_lines())
    assert means == pytest.approx(sorted(float(t.mean()) for t in totals.values()), rel=1e-12)
    for j, t in enumerate(totals.values()):
        thin, thick = fan.collections[4 * j], fan.collections[4 * j + 1]  # then the median, the mean
        (seg_thin,), (seg_thick,) = thin.get_segments(), thick.get_segments()
        assert seg_thin[:, 1] == pytest.approx(np.quantile(t, [0.05, 0.95]), rel=1e-12)
        assert seg_thick[:, 1] == pytest.approx(np.quantile(t, [0.25, 0.75]), rel=1e-12)
    assert [t.get_text() for t in fan.get_xticklabels()] == ["greeks", "no-pulls"]
