"""The risk controller's audit trail loses nothing a person or a rule did: a kill, a reset, a layer
change and a pull are committed before the call returns; the rest is flushed at the latest when the
interpreter exits. Checked in child processes that end normally and that are SIGKILLed right after
the call (the documented example: tests/docs/test_docs_controller_quoting.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from optmm.risk import AuditTrail

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from optmm import Book, Market
    from optmm.risk import AuditTrail, LimitSet, RiskController

    root, db, how = sys.argv[1], sys.argv[2], sys.argv[3]
    ctl = RiskController(Book.load(root + "/scenarios/examples/book.csv"),
                         Market.load(root + "/scenarios/examples/market.toml"),
                         LimitSet.load(root + "/scenarios/limits/desk.toml"), audit=AuditTrail(db))
    ctl.kill("desk head", by="person")
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "reset":
        ctl.reset_kill(by="person")
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _child(tmp_path: Path, how: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    db = tmp_path / f"{how}.db"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(db), how],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    return db, done


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_manual_kill_is_in_the_database_when_the_call_returns(tmp_path: Path, how: str) -> None:
    db, done = _child(tmp_path, how)
    if how == "exit":
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == -signal.SIGKILL, done.stderr
    frame = AuditTrail.read(db)
    kills = frame[frame["event"] == "kill"]
    assert len(kills) == 1
    assert kills["trigger"].iloc[0] == "manual" and kills["detail"].iloc[0] == "by=person: desk head"
    # every underlying's move to KILL and its pull came with it
    states = frame[(frame["event"] == "state") & (frame["layer"] == "KILL")]
    pulls = frame[frame["event"] == "pull"]
    assert len(states) == len(pulls) > 0


def test_a_reset_is_in_the_database_when_the_call_returns(tmp_path: Path) -> None:
    db, done = _child(tmp_path, "reset")
    assert done.returncode == -signal.SIGKILL, done.stderr
    events = list(AuditTrail.read(db)["event"])
    assert events.count("kill") == 1 and events.count("reset") == 1
    assert events.index("reset") > events.index("kill")
    assert events[-1] == "state"  # the underlyings left KILL: committed with the reset's call
