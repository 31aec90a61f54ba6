"""Tests of ``optmm audit`` (optmm.cli.audit): the table and CSV views of an audit trail, filters, errors.

Bad input must give exit code 2, ONE ``optmm: error: ...`` line on stderr, nothing on stdout and no
output file.
"""

from __future__ import annotations

import io
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.cli import COMMANDS
from optmm.risk import AuditEvent, AuditTrail, Layer

T0 = 1_763_650_000.0  # 2025-11-20T14:46:40Z
EVENTS = [
    AuditEvent(ts=T0 + 0.123456, underlying="SPY", layer=Layer.SOFT, event="state",
               trigger="gamma_dollars_1pct", measured=-355_557.56, threshold=320_000.0,
               detail="NORMAL -> SOFT"),
    AuditEvent(ts=T0 + 1.5, underlying="", layer=Layer.KILL, event="kill", trigger="manual",
               measured=math.nan, threshold=math.nan, detail="by person: jd"),
    AuditEvent(ts=T0 + 2, underlying="TSLA", layer=Layer.HARD, event="cut", trigger="vega_per_vol_point",
               measured=2_150.25, threshold=2_000.0, detail="ask 10 -> 3, contract 17"),
    AuditEvent(ts=T0 + 3600, underlying="TSLA", layer=Layer.TOXIC, event="pull", trigger="toxicity",
               measured=0.91, threshold=0.8, detail=""),
]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.db"
    with AuditTrail(path) as trail:
        trail.record_many(EVENTS)
    return path


def csv_ids(out: str) -> list[int]:
    return list(pd.read_csv(io.StringIO(out))["id"])


def test_registered() -> None:
    assert "audit" in COMMANDS


def test_table(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = run(capsys, "audit", str(db))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"audit trail {db}: 4 events"
    assert lines[1].split() == [
        "id",
        "time",
        "(UTC)",
        "underlying",
        "layer",
        "event",
        "trigger",
        "measured",
        "threshold",
        "detail",
    ]
    assert set(lines[2]) == {"-"}
    rows = lines[3:]
    assert len(rows) == 4
    assert rows[0].split()[:7] == [
        "1",
        "2025-11-20T14:46:40.123Z",
        "SPY",
        "SOFT",
        "state",
        "gamma_dollars_1pct",
        "-355,557.56",
    ]
    assert rows[0].rstrip().endswith("320,000.00  NORMAL -> SOFT")
    assert rows[1].split() == [
        "2",
        "2025-11-20T14:46:41.500Z",
        "(book)",
        "KILL",
        "kill",
        "manual",
        "by",
        "person:",
        "jd",
    ]
    assert "2,150.25" in rows[2] and "2,000.00" in rows[2] and rows[2].endswith("ask 10 -> 3, contract 17")
    assert rows[3].split()[1] == "2025-11-20T15:46:40.000Z"
    assert "0.91" in rows[3] and "0.8" in rows[3]
    # columns line up: every row has its time where the header has it
    start = lines[1].index("time (UTC)")
    assert all(row[start : start + 4] == "2025" for row in rows)


def test_csv_is_exact_and_has_the_read_columns(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = run(capsys, "audit", str(db), "--format", "csv")
    assert (code, err) == (0, "")
    frame = pd.read_csv(
        io.StringIO(out), keep_default_na=False, na_values={"measured": [""], "threshold": [""]}
    )
    expected = AuditTrail.read(db)
    assert list(frame.columns) == list(expected.columns)
    assert list(frame["time"]) == [
        "2025-11-20T14:46:40.123456Z",
        "2025-11-20T14:46:41.500000Z",
        "2025-11-20T14:46:42.000000Z",
        "2025-11-20T15:46:40.000000Z",
    ]
    assert list(frame["ts"]) == list(expected["ts"])  # exact round trip
    assert list(frame["underlying"]) == ["SPY", "", "TSLA", "TSLA"]
    assert list(frame["layer"]) == ["SOFT", "KILL", "HARD", "TOXIC"]
    assert frame["measured"].iloc[0] == -355_557.56 and math.isnan(frame["measured"].iloc[1])
    assert list(frame["detail"]) == [e.detail for e in EVENTS]


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--underlying", "TSLA"], [3, 4]),
        (["--underlying", ""], [2]),
        (["--underlying", "SPY", "--underlying", ""], [1, 2]),
        (["--layer", "hard"], [3]),
        (["--layer", "KILL", "--layer", "toxic"], [2, 4]),
        (["--event", "pull"], [4]),
        (["--underlying", "TSLA", "--layer", "HARD", "--event", "cut"], [3]),
        (["--since", "2025-11-20T14:46:41.5Z"], [2, 3, 4]),  # inclusive
        (["--until", "2025-11-20T14:46:42Z"], [1, 2]),  # exclusive
        (["--since", "2025-11-20T15:00:00+01:00", "--until", "2025-11-20T15:46:40"], [1, 2, 3]),
        (["--since", str(T0 + 1)], [2, 3, 4]),  # epoch seconds
        (["--since", "2025-11-21"], []),
    ],
)
def test_filters(capsys: pytest.CaptureFixture[str], db: Path, args: list[str], ids: list[int]) -> None:
    code, out, err = run(capsys, "audit", str(db), "--format", "csv", *args)
    assert (code, err) == (0, "")
    assert csv_ids(out) == ids


def test_no_match(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    code, out, err = run(capsys, "audit", str(db), "--underlying", "AAPL")
    assert (code, out, err) == (0, f"audit trail {db}: no events match\n", "")
    code, out, err = run(capsys, "audit", str(db), "--underlying", "AAPL", "--format", "csv")
    assert code == 0 and out == "id,time,ts,underlying,layer,event,trigger,measured,threshold,detail\n"


def test_output_file(capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path) -> None:
    target = tmp_path / "events.csv"
    code, out, err = run(capsys, "audit", str(db), "--format", "csv", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert csv_ids(target.read_text(encoding="utf-8")) == [1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_shows_only_committed_events_of_a_live_trail(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    with AuditTrail(db, batch_size=100) as trail:
        trail.record(EVENTS[0])
        code, out, _ = run(capsys, "audit", str(db), "--format", "csv")
        assert code == 0 and csv_ids(out) == [1, 2, 3, 4]
        trail.flush()
        code, out, _ = run(capsys, "audit", str(db), "--format", "csv")
        assert code == 0 and csv_ids(out) == [1, 2, 3, 4, 5]


def test_errors(capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_usage_error(run(capsys, "audit", str(missing)), str(missing), "no such file")
    assert not missing.exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100, encoding="utf-8")
    assert_usage_error(run(capsys, "audit", str(text)), str(text), "not an SQLite audit database")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE trades (id INTEGER)")
    conn.commit()
    conn.close()
    assert_usage_error(run(capsys, "audit", str(other)), str(other), "not an optmm audit trail")
    assert_usage_error(run(capsys, "audit", str(tmp_path)), "is a directory")
    assert_usage_error(run(capsys, "audit", str(db), "--since", "yesterday"), "--since", "yesterday")
    assert_usage_error(run(capsys, "audit", str(db), "--until", "2025-13-01"), "--until", "2025-13-01")
    assert_usage_error(run(capsys, "audit", str(db), "--layer", "loud"), "--layer", "loud", "KILL")
    assert_usage_error(run(capsys, "audit", str(db), "--format", "json"), "--format")
    assert_usage_error(run(capsys, "audit"), "DB")
    target = tmp_path / "nodir" / "out.csv"
    assert_usage_error(run(capsys, "audit", str(db), "--output", str(target)), "no such directory")
    assert not target.parent.exists()


def test_a_failed_run_leaves_no_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert_usage_error(run(capsys, "audit", str(tmp_path / "missing.db"), "--output", str(target)))
    assert not target.exists()
