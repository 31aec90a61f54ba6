"""Tests of optmm.risk.audit: events, the SQLite trail, its transactions, queries, a writer killed mid-run."""

from __future__ import annotations

import datetime as dt
import gc
import math
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optmm.risk import AuditEvent, AuditTrail, Layer
from optmm.risk.audit import COLUMNS, EVENTS, parse_layer, parse_time

AUDIT_PY = Path(__file__).resolve().parents[2] / "optmm" / "risk" / "audit.py"
T0 = 1_763_650_000.0  # 2025-11-20T14:46:40Z


def ev(i: int = 0, **kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "ts": T0 + i,
        "underlying": "SPY",
        "layer": Layer.HARD,
        "event": "cut",
        "trigger": "vega_per_vol_point",
        "measured": 1000.0 + i,
        "threshold": 900.0,
        "detail": f"event {i}",
    }
    fields.update(kw)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def count(path: Path) -> int:
    """Rows committed, as another connection sees them."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# Layer and AuditEvent


def test_layer_order_is_the_precedence() -> None:
    assert [layer.name for layer in sorted(Layer)] == ["KILL", "TOXIC", "STALE", "HARD", "SOFT", "NORMAL"]
    assert [int(layer) for layer in sorted(Layer)] == [0, 1, 2, 3, 4, 5]
    assert min(Layer.SOFT, Layer.TOXIC, Layer.NORMAL) is Layer.TOXIC


def test_parse_layer() -> None:
    assert parse_layer(Layer.SOFT) is Layer.SOFT
    assert parse_layer("hard") is Layer.HARD and parse_layer(" Kill ") is Layer.KILL
    assert parse_layer(2) is Layer.STALE and parse_layer(np.int64(5)) is Layer.NORMAL
    for bad in ("HARDER", "", 6, -1, True, 3.0, None):
        with pytest.raises(ValueError, match="unknown layer"):
            parse_layer(bad)  # type: ignore[arg-type]


def test_parse_time() -> None:
    assert parse_time(T0) == T0 and parse_time(int(T0)) == T0
    assert parse_time("1763650000.5") == T0 + 0.5
    assert parse_time("2025-11-20T14:46:40Z") == T0
    assert parse_time("2025-11-20T14:46:40") == T0  # no offset: UTC
    assert parse_time("2025-11-20T15:46:40+01:00") == T0
    assert parse_time(dt.datetime(2025, 11, 20, 14, 46, 40)) == T0
    assert parse_time(dt.datetime(2025, 11, 20, 9, 46, 40, tzinfo=dt.timezone(dt.timedelta(hours=-5)))) == T0
    assert parse_time(dt.date(2025, 11, 20)) == T0 - (14 * 3600 + 46 * 60 + 40)
    assert parse_time(pd.Timestamp("2025-11-20 14:46:40.25", tz="UTC")) == T0 + 0.25
    for bad in ("yesterday", "2025-13-01", "", "nan", math.nan, math.inf, True, None):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_event_defaults_and_coercion() -> None:
    before = time.time()
    e = AuditEvent(
        underlying="",
        layer="kill",  # type: ignore[arg-type]
        event="kill",
        trigger="manual",
        measured=math.nan,
        threshold=math.nan,
    )
    assert before <= e.ts <= time.time()
    assert e.layer is Layer.KILL and e.detail == ""
    e = AuditEvent(underlying="X", layer=4, event="state", trigger="t", measured=np.float32(1.5), threshold=2)  # type: ignore[arg-type]
    assert e.layer is Layer.SOFT and type(e.measured) is float and type(e.threshold) is float
    assert set(EVENTS) >= {"state", "pull", "cancel", "cut", "drop", "kill", "reset", "recompute", "mismatch"}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("layer", "loud", "unknown layer"),
        ("ts", math.nan, "ts"),
        ("ts", math.inf, "ts"),
        ("ts", "2025-11-20", "ts"),
        ("underlying", None, "underlying"),
        ("event", "", "event"),
        ("event", 3, "event"),
        ("trigger", None, "trigger"),
        ("measured", "12", "measured"),
        ("threshold", None, "threshold"),
        ("measured", True, "measured"),
        ("detail", 5, "detail"),
    ],
)
def test_event_refuses_bad_fields(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ev(**{field: value})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# the database


def test_database_is_created_with_wal_full_sync_table_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.db"
    path.parent.mkdir()
    with AuditTrail(path) as trail:
        assert path.is_file()
        assert trail._conn is not None
        assert trail._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
        columns = [(r[1], r[2]) for r in conn.execute("PRAGMA table_info(events)")]
        assert columns == [
            ("id", "INTEGER"),
            ("ts", "REAL"),
            ("underlying", "TEXT"),
            ("layer", "TEXT"),
            ("event", "TEXT"),
            ("trigger", "TEXT"),
            ("measured", "REAL"),
            ("threshold", "REAL"),
            ("detail", "TEXT"),
        ]
        indexes = {
            name: [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert sorted(indexes.values()) == [["layer", "ts"], ["underlying", "ts"]]
    finally:
        conn.close()


def test_layer_is_stored_as_its_name_and_nan_as_null(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditTrail(path) as trail:
        trail.record(ev(0, layer=Layer.TOXIC, measured=math.nan, threshold=0.7))
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT layer, measured, threshold FROM events").fetchone()
    conn.close()
    assert row == ("TOXIC", None, 0.7)
    frame = AuditTrail.read(path)
    assert math.isnan(frame["measured"].iloc[0]) and frame["threshold"].iloc[0] == 0.7


def test_events_are_buffered_until_flush_or_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    trail = AuditTrail(path, batch_size=5)
    for i in range(4):
        trail.record(ev(i))
    assert count(path) == 0 and trail.pending == 4
    trail.record(ev(4))  # the 5th: automatic flush
    assert count(path) == 5 and trail.pending == 0
    trail.record_many(ev(i) for i in range(5, 12))  # flushes at 10
    assert count(path) == 10 and trail.pending == 2
    trail.flush()
    assert count(path) == 12
    trail.flush()  # nothing buffered: no-op
    trail.close()
    assert count(path) == 12


def test_a_flush_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    trail = AuditTrail(path, batch_size=1000)
    statements: list[str] = []
    assert trail._conn is not None
    trail._conn.set_trace_callback(statements.append)
    trail.record_many(ev(i) for i in range(100))
    trail.flush()
    begins = [s for s in statements if s.strip().upper().startswith("BEGIN")]
    commits = [s for s in statements if s.strip().upper().startswith("COMMIT")]
    assert len(begins) == 1 and len(commits) == 1
    assert sum("INSERT" in s.upper() for s in statements) == 100
    trail.close()


def test_a_failed_flush_commits_nothing_and_keeps_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    trail = AuditTrail(path, batch_size=1000)
    trail.record(ev(0))
    trail.record(ev(1))
    poisoned = ev(2)
    object.__setattr__(poisoned, "detail", object())  # SQLite cannot store it: the 3rd insert fails
    trail.record(poisoned)
    trail.record(ev(3))
    with pytest.raises(sqlite3.Error):
        trail.flush()
    assert count(path) == 0  # the two inserts before the failure were rolled back
    assert trail.pending == 4
    trail._buffer.pop(2)  # drop the poisoned row and retry
    trail.flush()
    assert count(path) == 3
    assert list(AuditTrail.read(path)["detail"]) == ["event 0", "event 1", "event 3"]
    trail.close()


def test_reopening_appends(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditTrail(path) as trail:
        trail.record_many(ev(i) for i in range(3))
    with AuditTrail(path) as trail:
        trail.record(ev(3))
        frame = trail.query()
    assert list(frame["id"]) == [1, 2, 3, 4]
    assert list(frame["detail"]) == [f"event {i}" for i in range(4)]


def test_context_manager_flushes_even_on_an_exception_and_close_is_final(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with pytest.raises(RuntimeError), AuditTrail(path) as trail:
        trail.record(ev(0))
        raise RuntimeError("boom")
    assert trail.closed and count(path) == 1
    trail.close()  # twice: harmless
    with pytest.raises(ValueError, match="closed"):
        trail.record(ev(1))
    with pytest.raises(ValueError, match="closed"):
        trail.query()


def test_in_memory_trail() -> None:
    with AuditTrail() as trail:
        trail.record_many(ev(i) for i in range(3))
        frame = trail.query(event="cut")
    assert len(frame) == 3 and trail.path is None


def test_bad_arguments(tmp_path: Path) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            AuditTrail(batch_size=bad)  # type: ignore[arg-type]
    with AuditTrail() as trail, pytest.raises(TypeError):
        trail.record({"event": "cut"})  # type: ignore[arg-type]


def test_an_existing_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an SQLite audit database"):
        AuditTrail(path)
    assert path.read_bytes() == content
    with pytest.raises(ValueError, match="not an SQLite audit database"):
        AuditTrail.read(path)


def test_an_sqlite_file_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="not an optmm audit trail"):
        AuditTrail(path)
    with pytest.raises(ValueError, match="not an optmm audit trail"):
        AuditTrail.read(path)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="no 'events' table"):
        AuditTrail.read(empty)


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AuditTrail.read(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # read never creates
    with pytest.raises(IsADirectoryError):
        AuditTrail.read(tmp_path)


# --------------------------------------------------------------------------------------------------
# queries


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "filled.db"
    rows = [
        # ts offset, underlying, layer, event
        (5, "SPY", Layer.SOFT, "state"),
        (1, "TSLA", Layer.HARD, "cut"),  # out of time order: results are in id order
        (2, "", Layer.KILL, "kill"),
        (3, "TSLA", Layer.TOXIC, "pull"),
        (4, "SPY", Layer.HARD, "drop"),
        (10, "SPY", Layer.HARD, "cut"),
    ]
    with AuditTrail(path) as trail:
        for i, (offset, u, layer, event) in enumerate(rows):
            trail.record(ev(i, ts=T0 + offset, underlying=u, layer=layer, event=event))
    return path


def test_query_columns_types_and_order(filled: Path) -> None:
    frame = AuditTrail.read(filled)
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["id"]) == [1, 2, 3, 4, 5, 6]
    assert frame["id"].dtype == np.int64
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype) and str(frame["time"].dt.tz) == "UTC"
    assert frame["time"].iloc[0] == pd.Timestamp("2025-11-20T14:46:45Z")
    assert list(frame["ts"]) == [T0 + x for x in (5, 1, 2, 3, 4, 10)]
    assert list(frame["layer"]) == ["SOFT", "HARD", "KILL", "TOXIC", "HARD", "HARD"]
    assert list(frame["measured"]) == [1000.0 + i for i in range(6)]
    assert (frame["threshold"] == 900.0).all() and frame["trigger"].iloc[0] == "vega_per_vol_point"


def test_time_column_is_exact_to_the_microsecond(tmp_path: Path) -> None:
    with AuditTrail() as trail:
        trail.record(ev(0, ts=T0 + 0.123456))
        frame = trail.query()
    assert frame["time"].iloc[0] == pd.Timestamp("2025-11-20T14:46:40.123456Z")


def test_query_filters(filled: Path) -> None:
    def ids(**filters: object) -> list[int]:
        return list(AuditTrail.read(filled, **filters)["id"])

    assert ids(underlying="SPY") == [1, 5, 6]
    assert ids(underlying="") == [3]
    assert ids(underlying=["TSLA", ""]) == [2, 3, 4]
    assert ids(layer=Layer.HARD) == [2, 5, 6]
    assert ids(layer="hard") == ids(layer=3) == [2, 5, 6]
    assert ids(layer=["KILL", Layer.TOXIC]) == [3, 4]
    assert ids(event="cut") == [2, 6]
    assert ids(underlying="SPY", layer="HARD", event="cut") == [6]
    assert ids(since=T0 + 3) == [1, 4, 5, 6]  # since is inclusive
    assert ids(until=T0 + 3) == [2, 3]  # until is exclusive
    assert ids(since="2025-11-20T14:46:42Z", until="2025-11-20T15:46:45+01:00") == [3, 4, 5]
    assert ids(since=dt.datetime(2025, 11, 20, 14, 46, 50)) == [6]
    assert ids(since=dt.datetime(2025, 11, 20, 14, 46, 50, tzinfo=dt.UTC)) == [6]
    assert ids(underlying="AAPL") == []
    assert ids(since=T0 + 100) == []
    empty = AuditTrail.read(filled, underlying="AAPL")
    assert tuple(empty.columns) == COLUMNS and len(empty) == 0


def test_query_refuses_bad_filters(filled: Path) -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        AuditTrail.read(filled, layer="LOUD")
    with pytest.raises(ValueError, match="ISO"):
        AuditTrail.read(filled, since="last tuesday")
    with pytest.raises(TypeError):
        AuditTrail.read(filled, symbol="SPY")


def test_query_flushes_the_buffer_first_and_read_sees_only_committed(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditTrail(path, batch_size=100) as trail:
        trail.record_many(ev(i) for i in range(3))
        assert len(AuditTrail.read(path)) == 0  # another reader: nothing committed yet
        assert len(trail.query()) == 3  # the trail's own query flushes
        assert len(AuditTrail.read(path)) == 3
        trail.record(ev(3))
        assert len(AuditTrail.read(path)) == 3


# --------------------------------------------------------------------------------------------------
# a process killed mid-run

# Loads audit.py on its own (not through the optmm package) so that the child starts in a fraction of a
# second: what is under test is SQLite's durability as the trail uses it, not the package's import time.
_CHILD = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("_optmm_audit_child", sys.argv[1])
    audit = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = audit
    spec.loader.exec_module(audit)
    trail = audit.AuditTrail(sys.argv[2], batch_size=1000)
    batch, committed = int(sys.argv[3]), 0
    while True:
        for i in range(batch):
            trail.record(audit.AuditEvent(underlying="SPY", layer=audit.Layer.HARD, event="cut",
                                          trigger="delta_shares", measured=float(committed + i),
                                          threshold=100.0, detail="x" * 200))
        trail.flush()
        committed += batch
        print(committed, flush=True)
    """
)


@pytest.mark.parametrize("reports_before_kill", [1, 7, 40])
def test_a_killed_writer_loses_no_committed_batch(tmp_path: Path, reports_before_kill: int) -> None:
    path = tmp_path / "crash.db"
    batch = 50
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(AUDIT_PY), str(path), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported = 0
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 20
        while reported < reports_before_kill * batch:
            line = child.stdout.readline()
            assert line, f"the writer died: {child.stderr.read() if child.stderr else ''}"
            reported = int(line)
            assert time.monotonic() < deadline
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL  # it was still running: killed mid-run
    assert reported >= reports_before_kill * batch

    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        n, lo, hi = conn.execute("SELECT count(*), min(id), max(id) FROM events").fetchone()
        measured = [r[0] for r in conn.execute("SELECT measured FROM events ORDER BY id")]
    finally:
        conn.close()
    assert n >= reported  # every batch reported committed is there
    assert n % batch == 0  # ... and only whole batches: a batch is one transaction
    assert (lo, hi) == (1, n)
    assert measured == [float(i) for i in range(n)]
    frame = AuditTrail.read(path)  # the trail's own read-only reader copes with the leftover WAL
    assert len(frame) == n
    with AuditTrail(path) as trail:  # and the trail can append to it again
        trail.record(ev(0))
    assert count(path) == n + 1


# --------------------------------------------------------------------------------------------------
# nothing buffered is lost when a script forgets to close its trail

_FORGETFUL = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("_optmm_audit_child", sys.argv[1])
    audit = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = audit
    spec.loader.exec_module(audit)
    trail = audit.AuditTrail(sys.argv[2])
    for i in range(3):
        trail.record(audit.AuditEvent(underlying="SPY", layer=audit.Layer.SOFT, event="state",
                                      trigger="delta_shares", measured=float(i), threshold=1.0))
    keep = trail  # still referenced when the interpreter exits
    """
)


def test_a_trail_not_closed_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    done = subprocess.run(
        [sys.executable, "-c", _FORGETFUL, str(AUDIT_PY), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert list(AuditTrail.read(path)["measured"]) == [0.0, 1.0, 2.0]


def test_a_dropped_trail_is_flushed_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "gc.db"
    trail = AuditTrail(path)
    trail.record_many(ev(i) for i in range(2))
    assert count(path) == 0
    del trail
    gc.collect()
    assert count(path) == 2


def test_commit_is_durable_on_return_and_takes_the_buffer_with_it(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with AuditTrail(path) as trail:
        trail.record(ev(0))
        trail.commit(ev(1))
        assert trail.pending == 0 and count(path) == 2


def test_repr_is_short_and_says_what_it_is(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "r.db", batch_size=8)
    trail.record(ev(0))
    assert repr(trail) == f"AuditTrail({str(tmp_path / 'r.db')!r}, batch_size=8, pending=1)"
    trail.close()
    assert repr(trail).endswith("batch_size=8, closed)")


# --------------------------------------------------------------------------------------------------
# several writers creating the same new database at once; a busy file is not a foreign one


def _create_and_append(path: str, barrier: Any, results: Any, i: int) -> None:
    barrier.wait()
    try:
        with AuditTrail(path) as trail:
            trail.record(ev(i))
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("trial", range(4))
def test_processes_creating_the_same_new_database_at_once_all_succeed(tmp_path: Path, trial: int) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 4
    for run in range(3):
        path = str(tmp_path / f"new{run}.db")
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_create_and_append, args=(path, barrier, results, i)) for i in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        outcome = sorted(results.get(timeout=10) for _ in procs)
        assert outcome == ["ok"] * n
        assert count(Path(path)) == n


def test_threads_creating_the_same_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    # threads race more tightly than processes: before creation retried on a lock, about 1 in 100
    # of these creations failed with "not an SQLite audit database (database is locked)"
    n, failures = 4, []
    for run in range(60):
        path = str(tmp_path / f"t{run}.db")
        barrier = threading.Barrier(n)

        def create(i: int, path: str = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                AuditTrail(path).close()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_a_busy_database_is_reported_busy_not_foreign(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the new file's lock
    try:
        with pytest.raises(TimeoutError, match="busy"):
            AuditTrail(path, busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
    AuditTrail(path).close()  # once the lock is released the trail is created
    # WAL readers are not blocked by a writer; a connection in exclusive locking mode blocks them
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("COMMIT")
    try:
        with pytest.raises(TimeoutError, match="busy"):
            AuditTrail.read(path, busy_timeout_s=0.2)
    finally:
        holder.close()
    assert AuditTrail.read(path).empty
    for bad in (-1.0, math.inf, math.nan, "1"):
        with pytest.raises(ValueError, match="busy_timeout_s"):
            AuditTrail(busy_timeout_s=bad)  # type: ignore[arg-type]
