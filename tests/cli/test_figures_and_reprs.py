"""Figures in the format their file name says (optmm._io.save_figure; the sweep's frontier with its error
bars; optmm scenario --plot) and the short reprs of the simulator's and the sweep's objects."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run
from dist_fakes import BASE_TOML, FakeConfig, fast_run

from optmm._io import figure_format
from optmm.scaleout import sweep as sweep_mod
from optmm.scaleout.sweep import SweepSpec, frontier_errors, plot_frontier, run_sweep, summarize
from optmm.sim.config import SimConfig

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios/examples/book.csv")
MARKET = str(ROOT / "scenarios/examples/market.toml")


@pytest.mark.parametrize(("name", "fmt"), [("a.png", "png"), ("a.PDF", "pdf"), ("d/a.b.svg", "svg")])
def test_figure_format_from_the_extension(name: str, fmt: str) -> None:
    assert figure_format(name) == fmt


@pytest.mark.parametrize(("name", "what"), [("a.jpg", "extension '.jpg'"), ("a", "no extension")])
def test_figure_format_refuses_others(name: str, what: str) -> None:
    with pytest.raises(ValueError, match=f"{name}: {what}; a figure is written as .png, .pdf or .svg"):
        figure_format(name)


# --------------------------------------------------------------------------------------------------
# the sweep's frontier


def _summary(spec: SweepSpec) -> pd.DataFrame:
    """Three settings: 5 seeds (P&L 10, 12, 14, 16, 18), 5 seeds (all 7: no spread), 1 seed."""
    pnl = {0: [10.0, 12.0, 14.0, 16.0, 18.0], 1: [7.0] * 5, 2: [30.0]}
    runs = pd.DataFrame(
        [
            {"setting": s, "seed": k, "config_hash": f"h{s}", "total_pnl_mean": v}
            for s, values in pnl.items()
            for k, v in enumerate(values)
        ]
    )
    return summarize(runs, spec)


def test_frontier_error_bars_are_standard_errors_over_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SweepSpec(name="s", base=Path("b.toml"), seeds=(0, 1, 2, 3, 4))
    summary = _summary(spec)
    sd = math.sqrt(10.0)  # sample std of 10, 12, ..., 18
    pnl_err, risk_err = frontier_errors(summary, spec)
    np.testing.assert_allclose(pnl_err[:2], [sd / math.sqrt(5.0), 0.0], rtol=1e-15)
    np.testing.assert_allclose(risk_err[:2], [sd / math.sqrt(8.0), 0.0], rtol=1e-15)
    assert math.isnan(pnl_err[2]) and math.isnan(risk_err[2])  # one seed: no bar
    other = SweepSpec(
        name="s", base=Path("b.toml"), seeds=(0, 1, 2, 3, 4), risk_metric="max_abs_delta_shares"
    )
    pnl_err2, risk_err2 = frontier_errors(summary, other)
    np.testing.assert_array_equal(pnl_err2, pnl_err)
    assert np.isnan(risk_err2).all()  # only the metric's mean is kept: no horizontal bars

    drawn: list[Any] = []
    monkeypatch.setattr(sweep_mod, "save_figure", lambda fig, path: drawn.append(fig) or Path(path))
    plot_frontier(summary, spec, "frontier.png")
    ax = drawn[0].axes[0]
    # each errorbar container: (data line, caplines, (x bars, y bars)); the y bars' half-lengths
    halves = {}
    for container in ax.containers:
        for segment in container.lines[2][1].get_segments():
            if len(segment) == 0:  # a NaN bar (one seed) draws nothing
                continue
            (x0, y0), (_, y1) = segment
            halves[round(float(x0), 9)] = (y1 - y0) / 2.0
    assert halves == {round(sd, 9): pytest.approx(sd / math.sqrt(5.0), rel=1e-12), 0.0: 0.0}
    assert "1 standard error over seeds" in ax.get_title()


def test_frontier_file_format(tmp_path: Path) -> None:
    spec = SweepSpec(name="s", base=Path("b.toml"), seeds=(0, 1, 2, 3, 4))
    assert plot_frontier(_summary(spec), spec, tmp_path / "f.pdf").read_bytes().startswith(b"%PDF-")
    with pytest.raises(ValueError, match="a figure is written as"):
        plot_frontier(_summary(spec), spec, tmp_path / "f.jpeg")
    assert [p.name for p in tmp_path.iterdir()] == ["f.pdf"]


# --------------------------------------------------------------------------------------------------
# optmm scenario --plot


def test_scenario_plot_honours_or_refuses_the_extension(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pdf = tmp_path / "grid.pdf"
    code, _, _ = run(capsys, "scenario", BOOK, "--market", MARKET, "--plot", str(pdf))
    assert code == 0 and pdf.read_bytes().startswith(b"%PDF-")
    jpg = tmp_path / "grid.jpg"
    result = run(capsys, "scenario", BOOK, "--market", MARKET, "--plot", str(jpg))
    assert_usage_error(result, f"--plot {jpg}: extension '.jpg'; a figure is written as .png, .pdf or .svg")
    assert not jpg.exists()


# --------------------------------------------------------------------------------------------------
# reprs


def test_simconfig_repr_is_one_short_line() -> None:
    cfg = SimConfig.load(ROOT / "scenarios/sim/calm_day.toml")
    text = repr(cfg)
    assert "\n" not in text and len(text) < 300
    assert text.startswith(
        f"SimConfig('{ROOT / 'scenarios/sim/calm_day.toml'}', hash {cfg.content_hash[:12]}: "
    )
    assert "1 path(s) x 23400 steps of 1 s, seed 1" in text and "calls/puts at 2 expiries x 20" in text
    assert "limits 'sim_desk'" in text


def test_sweep_result_repr_is_short(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE_TOML)
    (tmp_path / "s.toml").write_text(
        'name = "t"\nbase = "base.toml"\nseeds = 3\n[grid]\n"quoter.gamma_risk_aversion" = [1e-5, 1e-4]\n'
    )
    res = run_sweep(tmp_path / "s.toml", tmp_path / "out", run_fn=fast_run, load_config=FakeConfig.load,
                    progress=False)  # fmt: skip
    text = repr(res)
    assert len(text) < 300 and len(text.splitlines()) == 2
    assert text.startswith(f"SweepResult('t' in '{tmp_path / 'out'}':")
    assert "6 runs (6 new, 0 reused) of 2 settings x 3 seeds" in text
