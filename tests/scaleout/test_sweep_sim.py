"""The bundled sweep with the real simulator: every stored run is the simulator's own summary for its
configuration and seed, and the swept settings reach the runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from optmm.scaleout import SweepSpec, run_sweep
from optmm.sim import SimConfig, run_summary

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_sweep_runs_the_simulator(tmp_path: Path) -> None:
    spec = SweepSpec.load(ROOT / "scenarios/sweeps/gamma_band.toml")
    # a short day, two settings of the risk aversion, two seeds: the same machinery, quickly
    spec = dataclasses.replace(
        spec,
        seeds=(0, 1),
        grid=(("quoter.gamma_risk_aversion", (2e-6, 2e-4)),),
        overrides=(*spec.overrides, ("sim.steps", 900)),
    )
    res = run_sweep(spec, tmp_path / "out", progress=False)
    runs = res.runs
    assert len(runs) == 4 and runs[["config_hash", "seed"]].drop_duplicates().shape[0] == 4
    base = SimConfig.load(ROOT / "scenarios/sim/calm_day.toml")
    for _, row in runs.iterrows():
        gamma = float(row["quoter.gamma_risk_aversion"])
        cfg = base.with_overrides(
            {"hedger.mode": "fixed_band", "sim.steps": 900, "quoter.gamma_risk_aversion": gamma}
        )
        assert cfg.content_hash == row["config_hash"]
        expected = run_summary(cfg, int(row["seed"]))
        assert row["total_pnl_mean"] == expected["total_pnl_mean"]
        assert row["fills"] == expected["fills"]
    # the risk aversion matters: the two settings do not give the same P&L
    by = runs.groupby("quoter.gamma_risk_aversion")["total_pnl_mean"].mean()
    assert not np.isclose(by.iloc[0], by.iloc[1])
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
