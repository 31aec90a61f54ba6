"""The examples of docs/controller.md and docs/quoting.md run as written (each page's Python blocks in
order, in one fresh interpreter, from a directory that has the repository's ``scenarios/``), print
what their comments say, and leave the controller's events in the audit database."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from optmm.risk import AuditTrail

ROOT = Path(__file__).resolve().parents[2]


def run_page(page: str, where: Path) -> str:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    script = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    (where / "scenarios").symlink_to(ROOT / "scenarios")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=where,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_controller_page_runs_and_its_events_are_in_the_database(tmp_path: Path) -> None:
    out = run_page("controller.md", tmp_path)
    lines = out.splitlines()
    assert lines[0] == "10000.0"
    assert (
        lines[1].startswith("Limit(metric=<Metric.DAILY_LOSS: 'daily_loss'>")
        and "hard=250000.0, soft=200000.0" in lines[1]
    )
    assert re.fullmatch(r"[0-9a-f]{64}", lines[2])
    assert (
        "Decision(layer=<Layer.SOFT: 4>, bid_size=5.0, ask_size=5.0, spread_factor=1.5, "
        "trigger='gamma_dollars_1pct', hedge_delta_shares=0.0)"
    ) in lines
    assert re.search(r"SPY\s+SOFT\nTSLA\s+TOXIC", out)
    at = next(i for i, x in enumerate(lines) if x.startswith("RiskController("))
    assert lines[at].startswith(
        "RiskController(4 underlyings (AAPL, MSFT, SPY, TSLA), 52 contracts, limits 'desk' "
    )
    recompute_error = float(lines[at - 1])
    assert 0.0 <= recompute_error < 1e-9
    # the VaR section: the book's VaR (positive, below its soft level), its limits, its scenario's date
    var = lines[at + 1 :]
    assert var[0].startswith("var ") and 0.0 < float(var[0].split()[1]) < 120_000.0
    assert re.fullmatch(r"var_hard\s+150000\.0+", var[1]) and re.fullmatch(r"var_soft\s+120000\.0+", var[2])
    assert re.fullmatch(r"20\d\d-\d\d-\d\d 00:00:00", var[-1])
    events = AuditTrail.read(tmp_path / "out" / "audit.db")
    assert {"kill", "reset", "pull", "state", "recompute"} <= set(events["event"])
    assert "TSLA" in set(events.loc[events["event"] == "pull", "underlying"])


def test_the_quoting_page_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    lines = run_page("quoting.md", tmp_path).splitlines()
    assert lines[0].startswith("ToxicityScore(underlying='SPY', now=130.0, score=0.0,")
    assert lines[1].startswith(
        "ToxicityDetector(4 underlyings, window 60 s, threshold 0.6, toxic: none, config "
    )
    assert "shares=-2400.0" in lines[2] and "delta_after=100.0, band_shares=100.0)" in lines[2]
    assert lines[3].startswith(
        "HedgeReport(count=1, shares_traded=2400.0, net_shares=-2400.0, spread_cost=24.0"
    )
    assert lines[4] == "None"


@pytest.mark.parametrize("page", ["controller.md", "quoting.md"])
def test_outputs_go_under_out(page: str) -> None:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for name in re.findall(r"AuditTrail\(\"([^\"]+)\"", text):
        assert name.startswith("out/"), name
