"""The risk controller's audit trail: every change of state and every cancel, durably, in SQLite.

Each :class:`AuditEvent` says what happened (``event``), to which underlying, in which controller
:class:`Layer`, why (``trigger``: the metric or signal), and the measured value and the threshold it was
compared with, so that each pull can be shown to have been caused by a documented threshold.

:class:`AuditTrail` buffers events and writes each batch in ONE SQLite transaction (:meth:`flush`,
automatic when ``batch_size`` events are buffered). The database is an ordinary SQLite file in WAL mode
with ``synchronous=FULL``: a committed batch survives the process being killed and the machine losing
power, and a reader never sees half a batch. Read it back with :meth:`AuditTrail.query`,
:meth:`AuditTrail.read` (read-only, for a database another process writes) or ``optmm audit DB``.

The table::

    events(id INTEGER PRIMARY KEY, ts REAL, underlying TEXT, layer TEXT, event TEXT, trigger TEXT,
           measured REAL, threshold REAL, detail TEXT)

``ts`` is seconds since the epoch (UTC), ``layer`` the layer's name (``"HARD"``), ``underlying`` is
``""`` for book-wide events, and a NaN ``measured`` or ``threshold`` is stored as NULL (SQLite has no
NaN) and read back as NaN.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from optmm._config import is_real_number
from optmm.codes import Layer

__all__ = ["COLUMNS", "EVENTS", "AuditEvent", "AuditTrail", "Layer", "parse_layer", "parse_time"]

#: The event kinds the controller records.
EVENTS: tuple[str, ...] = ("state", "pull", "cancel", "cut", "drop", "kill", "reset", "recompute", "mismatch")

#: Columns of :meth:`AuditTrail.query` / :meth:`AuditTrail.read`, in order.
COLUMNS: tuple[str, ...] = (
    "id",
    "time",
    "ts",
    "underlying",
    "layer",
    "event",
    "trigger",
    "measured",
    "threshold",
    "detail",
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events ("
    "id INTEGER PRIMARY KEY, ts REAL NOT NULL, underlying TEXT NOT NULL, layer TEXT NOT NULL, "
    "event TEXT NOT NULL, trigger TEXT NOT NULL, measured REAL, threshold REAL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_underlying_ts ON events (underlying, ts)",
    "CREATE INDEX IF NOT EXISTS events_layer_ts ON events (layer, ts)",
)
_DB_COLUMNS = ("id", "ts", "underlying", "layer", "event", "trigger", "measured", "threshold", "detail")
_INSERT = (
    "INSERT INTO events (ts, underlying, layer, event, trigger, measured, threshold, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def parse_layer(value: Layer | str | int | np.integer) -> Layer:
    """A :class:`Layer` from itself, its name (any case: ``"hard"``) or its value.

    Raises
    ------
    ValueError
        Not a layer; the message lists the layers.
    """
    if isinstance(value, Layer):
        return value
    if isinstance(value, str):
        try:
            return Layer[value.strip().upper()]
        except KeyError:
            pass
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        try:
            return Layer(int(value))
        except ValueError:
            pass
    raise ValueError(f"unknown layer {value!r} (one of {', '.join(m.name for m in Layer)})")


def parse_time(value: float | int | str | dt.datetime | dt.date | pd.Timestamp | np.datetime64) -> float:
    """Seconds since the epoch from epoch seconds, an ISO 8601 text or a date/datetime.

    A time without a UTC offset (naive datetime, ISO text without ``Z`` or ``+hh:mm``, a date) is
    taken as UTC. A numeric string (``"1763650000.5"``) is epoch seconds.

    Raises
    ------
    ValueError
        Not a time, or not finite.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value)
    else:
        if isinstance(value, str):
            text = value.strip()
            try:
                seconds = float(text)
            except ValueError:
                seconds = math.nan
            if math.isfinite(seconds):
                return seconds
            if not text or text.lower() in ("nan", "nat", "inf", "-inf", "now", "today"):
                raise ValueError(f"not an ISO 8601 date/time or epoch seconds: {value!r}")
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"not an ISO 8601 date/time or epoch seconds: {value!r}") from None
        if ts is pd.NaT or pd.isna(ts):
            raise ValueError(f"not an ISO 8601 date/time or epoch seconds: {value!r}")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        whole, nanos = divmod(int(ts.value), 1_000_000_000)  # exact: ts.value / 1e9 would round
        seconds = whole + nanos / 1e9
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {value!r}")
    return seconds


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One audited event.

    Attributes
    ----------
    ts : float
        When, in seconds since the epoch (UTC); default ``time.time()`` at construction.
    underlying : str
        The underlying, ``""`` for a book-wide event.
    layer : Layer
        The layer in force after the event (a name or value is converted).
    event : str
        What happened: one of :data:`EVENTS` (``"state"`` = layer change, ``"pull"``, ``"cancel"``,
        ``"cut"``, ``"drop"``, ``"kill"``, ``"reset"``, ``"recompute"``, ``"mismatch"``); not enforced.
    trigger : str
        Why: the metric or signal, e.g. ``"vega_per_vol_point"``, ``"toxicity"``, ``"stale"``,
        ``"manual"``, ``"daily_loss"``.
    measured : float
        The measured value, in the trigger's unit (NaN only where nothing is measured, e.g. a manual
        kill).
    threshold : float
        The threshold it was compared with, same unit (NaN likewise).
    detail : str
        Free text: contract id, sizes before/after, who reset, ...
    """

    ts: float = field(default_factory=time.time)
    underlying: str
    layer: Layer
    event: str
    trigger: str
    measured: float
    threshold: float
    detail: str = ""

    def __post_init__(self) -> None:
        try:
            layer = parse_layer(self.layer)
        except ValueError as exc:
            raise ValueError(f"AuditEvent.layer: {exc}") from None
        object.__setattr__(self, "layer", layer)
        if not (is_real_number(self.ts) and math.isfinite(self.ts)):
            raise ValueError(f"AuditEvent.ts: must be finite epoch seconds (got {self.ts!r})")
        object.__setattr__(self, "ts", float(self.ts))
        for name in ("underlying", "event", "trigger", "detail"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"AuditEvent.{name}: must be a string (got {getattr(self, name)!r})")
        if not self.event:
            raise ValueError("AuditEvent.event: must not be empty")
        for name in ("measured", "threshold"):
            value = getattr(self, name)
            if not is_real_number(value):
                raise ValueError(f"AuditEvent.{name}: must be a number, NaN if none (got {value!r})")
            object.__setattr__(self, name, float(value))

    def _row(self) -> tuple[float, str, str, str, str, float | None, float | None, str]:
        return (
            self.ts,
            self.underlying,
            self.layer.name,
            self.event,
            self.trigger,
            None if math.isnan(self.measured) else self.measured,
            None if math.isnan(self.threshold) else self.threshold,
            self.detail,
        )


def _values(name: str, value: Any, convert: Any = str) -> list[Any]:
    """One filter value or a collection of them, as a list."""
    if isinstance(value, str | Layer) or not isinstance(value, Iterable):
        return [convert(value)]
    values = [convert(v) for v in value]
    if not values:
        raise ValueError(f"{name}: empty selection")
    return values


def _select(
    conn: sqlite3.Connection,
    *,
    underlying: str | Iterable[str] | None = None,
    layer: Layer | str | int | Iterable[Layer | str | int] | None = None,
    event: str | Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
) -> pd.DataFrame:
    where: list[str] = []
    params: list[Any] = []
    for column, value, convert in (
        ("underlying", underlying, str),
        ("layer", layer, lambda v: parse_layer(v).name),
        ("event", event, str),
    ):
        if value is not None:
            values = _values(column, value, convert)
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if since is not None:
        where.append("ts >= ?")
        params.append(parse_time(since))
    if until is not None:
        where.append("ts < ?")
        params.append(parse_time(until))
    sql = f"SELECT {', '.join(_DB_COLUMNS)} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    rows = conn.execute(sql, params).fetchall()
    data = dict(zip(_DB_COLUMNS, zip(*rows, strict=True), strict=True)) if rows else {}
    frame = pd.DataFrame(
        {
            "id": np.asarray(data.get("id", ()), dtype=np.int64),
            "ts": np.asarray(data.get("ts", ()), dtype=np.float64),
            **{
                c: np.asarray(data.get(c, ()), dtype=object)
                for c in ("underlying", "layer", "event", "trigger")
            },
            # NULL (a NaN that was stored) reads back as None -> NaN
            **{c: np.asarray(data.get(c, ()), dtype=np.float64) for c in ("measured", "threshold")},
            "detail": np.asarray(data.get("detail", ()), dtype=object),
        }
    )
    # to whole microseconds first: float seconds -> nanoseconds would show binary noise
    micros = np.round(frame["ts"].to_numpy() * 1e6).astype(np.int64)
    frame.insert(1, "time", pd.to_datetime(micros, unit="us", utc=True))
    return frame[list(COLUMNS)]


_T = TypeVar("_T")
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error is another connection holding a lock (not a damaged or foreign file)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _while_busy(target: str, timeout_s: float, attempt: Callable[[], _T]) -> _T:
    """``attempt()`` again (short growing sleeps) while another connection holds the database's lock,
    for at most ``timeout_s`` seconds: SQLite's busy handler does not wait in every case (switching a
    new file to WAL while another connection opens it returns "database is locked" at once).

    Raises
    ------
    TimeoutError
        Still locked after ``timeout_s``: the file is busy, which is not the same as foreign.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{target}: the audit database is busy (locked by another connection for more "
                    f"than {timeout_s:g} s)"
                ) from None
        time.sleep(pause)
        pause = min(2.0 * pause, 0.05)


def _commit(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` in ONE transaction, then empty the list; on an error nothing is committed and
    the rows stay."""
    if not rows:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    rows.clear()


def _commit_and_close(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """The last act of a trail nobody closed (garbage collected, or the interpreter exiting)."""
    try:
        _commit(conn, rows)
    finally:
        conn.close()


def _create(target: str, timeout_s: float) -> sqlite3.Connection:
    """Open (creating if missing) the trail's database: WAL, full sync, the table and its indexes."""

    def attempt() -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _commit issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(target, isolation_level=None, timeout=timeout_s)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_SCHEMA[0])
            _check_schema(conn, target)  # an existing table of another shape: refused, untouched
            for statement in _SCHEMA[1:]:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return _while_busy(target, timeout_s, attempt)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{target}: not an SQLite audit database ({exc})") from None


class AuditTrail:
    """An append-only audit trail in an SQLite database.

    Parameters
    ----------
    path : str, path-like or None
        The database file, created (with its table and indexes) if missing; an existing trail is
        appended to. ``None``: an in-memory database (gone when closed; for tests and dry runs).
    batch_size : int
        Events buffered before an automatic :meth:`flush` (>= 1). Each flush is one transaction, so the
        cost of durability (one fsync per transaction) is paid once per batch, not per event.
    busy_timeout_s : float
        How long to wait for a lock another connection holds (creating the file, a flush, a read)
        before giving up with :class:`TimeoutError`.

    Raises
    ------
    ValueError
        ``path`` exists but is not an SQLite database, or holds an ``events`` table of another shape.
    TimeoutError
        Another connection held the database's lock for more than ``busy_timeout_s``.
    OSError
        The file cannot be created or opened.

    Notes
    -----
    Durability: the database is in WAL mode with ``PRAGMA synchronous=FULL``. A flush returns only after
    its transaction is appended to the write-ahead log AND the log is fsynced, so a committed batch
    survives both the process being killed and the machine losing power; ``synchronous=NORMAL`` would
    skip that fsync and could lose the last transactions on power loss (never on a process kill). WAL
    with FULL costs one fsync per transaction, which batching amortises. An event still in the buffer
    (not yet flushed) is lost if the process is killed: call :meth:`flush` at points that must be
    durable (the risk controller does after every kill, reset, layer change and pull). The buffer is
    flushed on :meth:`close`, on leaving a ``with`` block, when the trail is garbage collected and when
    the interpreter exits normally, so a script that ends without closing its trail loses nothing.

    Several processes may create and append to the same file at once: creation waits on the lock
    like a write does (``busy_timeout_s``), and a busy file is never reported as a foreign one.

    Not thread-safe: use one trail per thread (SQLite serialises writers across connections).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 256,
        busy_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
        if not (is_real_number(busy_timeout_s) and 0.0 <= float(busy_timeout_s) < math.inf):
            raise ValueError(f"busy_timeout_s must be finite and >= 0 (got {busy_timeout_s!r})")
        self.batch_size = int(batch_size)
        self.busy_timeout_s = float(busy_timeout_s)
        self.path: str | None = None if path is None else os.fspath(path)
        self._buffer: list[tuple[Any, ...]] = []
        conn = _create(":memory:" if self.path is None else self.path, self.busy_timeout_s)
        self._conn: sqlite3.Connection | None = conn
        # flushes and closes a trail that is dropped or still open when the interpreter exits
        self._finalizer = weakref.finalize(self, _commit_and_close, conn, self._buffer)

    # ----------------------------------------------------------------------------------------------
    # writing

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._conn is None

    @property
    def pending(self) -> int:
        """Events buffered and not yet committed."""
        return len(self._buffer)

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("the audit trail is closed")
        return self._conn

    def record(self, event: AuditEvent) -> None:
        """Buffer one event; flushes when ``batch_size`` events are buffered.

        Raises
        ------
        TypeError
            ``event`` is not an :class:`AuditEvent`.
        ValueError
            The trail is closed.
        """
        self._open()
        if not isinstance(event, AuditEvent):
            raise TypeError(f"expected an AuditEvent, got {type(event).__name__}")
        self._buffer.append(event._row())
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def record_many(self, events: Iterable[AuditEvent]) -> None:
        """Buffer several events (flushing every ``batch_size``)."""
        for event in events:
            self.record(event)

    def flush(self) -> None:
        """Commit the buffered events in ONE transaction; durable when this returns.

        On an error nothing of the batch is committed and the events stay buffered.
        """
        _commit(self._open(), self._buffer)

    def commit(self, event: AuditEvent) -> None:
        """Record ``event`` and flush: it (and everything buffered before it) is durable on return."""
        self.record(event)
        self.flush()

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn = None
            self._finalizer()  # closes the connection (the buffer is empty unless the flush failed)

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path if self.path is not None else ":memory:"
        state = "closed" if self.closed else f"pending={self.pending}"
        return f"AuditTrail({where!r}, batch_size={self.batch_size}, {state})"

    # ----------------------------------------------------------------------------------------------
    # reading

    def query(
        self,
        *,
        underlying: str | Iterable[str] | None = None,
        layer: Layer | str | int | Iterable[Layer | str | int] | None = None,
        event: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
    ) -> pd.DataFrame:
        """The recorded events (buffered ones are flushed first) that match every filter given.

        Parameters
        ----------
        underlying : str or collection of str, optional
            ``""`` selects the book-wide events.
        layer : Layer, name, value, or a collection of them, optional
        event : str or collection of str, optional
        since, until : float, str, datetime, optional
            Epoch seconds, ISO 8601 text, or a date/datetime (UTC when no offset is given); keeps
            ``since <= ts < until``.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`COLUMNS`: ``id``, ``time`` (``datetime64[ns, UTC]``), ``ts`` (epoch
            seconds), ``underlying``, ``layer`` (name), ``event``, ``trigger``, ``measured``,
            ``threshold`` (NaN where none), ``detail``; ordered by ``id`` (the recording order).

        Raises
        ------
        ValueError
            An unknown layer or a time that cannot be read.
        """
        self.flush()
        return _select(
            self._open(), underlying=underlying, layer=layer, event=event, since=since, until=until
        )

    @staticmethod
    def read(path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0, **filters: Any) -> pd.DataFrame:
        """Read an existing trail without writing to it (another process may be appending).

        Parameters
        ----------
        path : str or path-like
            The database file.
        busy_timeout_s : float
            How long to wait for a lock a writer holds (e.g. while it creates the file).
        **filters
            As for :meth:`query`.

        Returns
        -------
        pandas.DataFrame
            As :meth:`query`; only committed events.

        Raises
        ------
        FileNotFoundError
            No such file.
        IsADirectoryError
            ``path`` is a directory.
        ValueError
            Not an SQLite database, no ``events`` table of the right shape, or a bad filter.
        TimeoutError
            A writer held the lock for more than ``busy_timeout_s``.
        """
        target = Path(path)
        if target.is_dir():
            raise IsADirectoryError(f"{os.fspath(path)}: is a directory")
        if not target.is_file():
            raise FileNotFoundError(f"{os.fspath(path)}: no such file")
        where = os.fspath(path)
        timeout_s = float(busy_timeout_s)
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
        try:

            def attempt() -> pd.DataFrame:
                _check_schema(conn, where)
                return _select(conn, **filters)

            try:
                return _while_busy(where, timeout_s, attempt)
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"{where}: not an SQLite audit database ({exc})") from None
        finally:
            conn.close()


def _check_schema(conn: sqlite3.Connection, where: str) -> None:
    """Refuse a database without the ``events`` table of the trail's shape."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    if not columns:
        raise ValueError(f"{where}: not an optmm audit trail (no 'events' table)")
    if tuple(columns) != _DB_COLUMNS:
        raise ValueError(
            f"{where}: not an optmm audit trail ('events' has columns {', '.join(columns)}; "
            f"expected {', '.join(_DB_COLUMNS)})"
        )
