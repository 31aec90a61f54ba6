"""The simulator's audit trail shows the simulated session's clock (step 0 at 09:30 New York on the
nominal date), not seconds after 1970, in ``optmm audit`` and in ``AuditTrail.read``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from builders import run

from optmm.risk.audit import AuditTrail
from optmm.sim.engine import SESSION_OPEN

ROOT = Path(__file__).resolve().parents[2]
CALM = str(ROOT / "scenarios/sim/calm_day.toml")
STEPS = 600  # of 1 s


def test_simulated_events_are_stamped_on_the_sessions_clock(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, _, _ = run(capsys, "simulate", CALM, "--set", f"sim.steps={STEPS}", "--out", str(out))
    assert code == 0
    events = AuditTrail.read(out / "audit.sqlite")
    assert len(events) > 0
    start = pd.Timestamp("2026-01-05T14:30:00Z")  # 09:30 New York (EST)
    assert pd.Timestamp(SESSION_OPEN, tz="UTC") == start
    assert (events["time"] >= start).all() and (events["time"] <= start + pd.Timedelta(seconds=STEPS)).all()
    assert (
        events["time"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H") >= "2026-01-05 09"
    ).all()
    code, table, _ = run(capsys, "audit", str(out / "audit.sqlite"))
    assert code == 0
    rows = table.splitlines()[3:]
    assert rows and all(" 2026-01-05T14:" in r for r in rows) and "1970" not in table
