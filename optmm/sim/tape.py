"""Recorded markets for the simulator: the tape format (docs/tape.md), its reader and writer, and
as-of access without look-ahead.

A tape is one table of timestamped records, each a ``quote`` or a ``trade`` of an underlying or of an
option contract. :func:`read_tape` validates a CSV or Parquet file (or a directory of them) and returns
a :class:`Tape`: per kind of record (underlying quotes, underlying trades, option quotes, option
trades) contiguous numpy arrays sorted by time, the instruments mapped to integer ids, ready for a
numba kernel. :func:`write_tape` writes a :class:`Tape` back; :func:`tape_from_result` makes one from a
synthetic run (:class:`optmm.sim.SimResult`).

Time is UTC nanoseconds since 1970-01-01 (int64) everywhere in memory. :func:`asof_index` gives, for
a grid of simulation times, the last record of each instrument stamped at or before each time;
:func:`step_slices` gives the records stamped in each step's interval ``(t[k-1], t[k]]``. Neither
ever reaches a record stamped after the time it serves.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm._io import atomic_target
from optmm.codes import SimKind
from optmm.typing import RowError

if TYPE_CHECKING:
    from optmm.sim.result import SimResult

__all__ = [
    "KIND_CALL",
    "KIND_PUT",
    "SIDE_BUY",
    "SIDE_SELL",
    "SIDE_UNKNOWN",
    "Quotes",
    "Tape",
    "Trades",
    "asof_index",
    "asof_values",
    "read_tape",
    "step_slices",
    "tape_from_result",
    "time_grid",
    "write_tape",
]

KIND_PUT, KIND_CALL = int(SimKind.PUT), int(SimKind.CALL)
"""Option kinds in :attr:`Tape.contract_kind` (the simulator's codes, :class:`optmm.codes.SimKind`)."""
SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN = 1, -1, 0
"""A trade's aggressor in :attr:`Trades.side`: a buyer lifted the offer (+1), a seller hit the bid
(−1), or the data does not say (0)."""

COLUMNS = (
    "time",
    "type",
    "underlying",
    "kind",
    "expiry",
    "strike",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "price",
    "size",
    "side",
    "mid",
    "vol",
)
"""The columns of a tape, in the order :func:`write_tape` writes them; others are ignored."""
_REQUIRED = ("time", "type", "underlying")
_KINDS = {"": -1, "underlying": -1, "call": KIND_CALL, "c": KIND_CALL, "put": KIND_PUT, "p": KIND_PUT}
_SIDES = {"": SIDE_UNKNOWN, "buy": SIDE_BUY, "b": SIDE_BUY, "sell": SIDE_SELL, "s": SIDE_SELL}
_NEEDED_BY = {"quote": ("bid", "ask"), "trade": ("price", "size")}
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_NS_PER_DAY = 86_400 * 10**9
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Records:
    """Records with a ``time_ns`` array: their count and a short repr."""

    time_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.time_ns.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} records)"


@dataclass(frozen=True, repr=False)
class Quotes(_Records):
    """Quote records of one kind of instrument, sorted by time (ties: the order of the file).

    Attributes
    ----------
    time_ns : int64 array
        UTC nanoseconds since the epoch.
    inst : int64 array
        The instrument's id: an index into :attr:`Tape.underlyings` (underlying quotes) or into the
        contract arrays (option quotes).
    bid, ask : float64 array
        Prices, in currency per share (option premium per share, before the multiplier); NaN where
        that side was empty.
    bid_size, ask_size : float64 array
        Displayed sizes (shares or contracts); NaN where not recorded.
    mid : float64 array
        The ``mid`` column where given, else ``(bid + ask) / 2`` (NaN with a side missing).
    vol : float64 array
        The ``vol`` column (implied vol, a decimal) where given, else NaN.
    """

    time_ns: np.ndarray
    inst: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    mid: np.ndarray
    vol: np.ndarray


@dataclass(frozen=True, repr=False)
class Trades(_Records):
    """Trade records of one kind of instrument, sorted by time (ties: the order of the file).

    Attributes
    ----------
    time_ns, inst : int64 array
        As in :class:`Quotes`.
    price : float64 array
        Price per share (option premium per share).
    size : float64 array
        Shares or contracts, > 0.
    side : int64 array
        The aggressor: :data:`SIDE_BUY`, :data:`SIDE_SELL` or :data:`SIDE_UNKNOWN`.
    """

    time_ns: np.ndarray
    inst: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray


@dataclass(frozen=True, repr=False)
class Tape:
    """A recorded market (docs/tape.md): the instruments and four kinds of records.

    Attributes
    ----------
    source : str
        The file or directory read, or a description.
    underlyings : tuple of str
        Underlying names, sorted; an underlying's id is its index.
    contract_underlying, contract_kind : int64 array
        Per option contract: its underlying's id and :data:`KIND_CALL` / :data:`KIND_PUT`.
    contract_strike : float64 array
        Strike, in currency.
    contract_expiry_day : int64 array
        Expiry date, days since 1970-01-01. Contracts are sorted by (underlying, expiry, strike,
        kind); a contract's id is its index.
    underlying_quotes, option_quotes : Quotes
    underlying_trades, option_trades : Trades
    """

    source: str
    underlyings: tuple[str, ...]
    contract_underlying: np.ndarray
    contract_kind: np.ndarray
    contract_strike: np.ndarray
    contract_expiry_day: np.ndarray
    underlying_quotes: Quotes
    underlying_trades: Trades
    option_quotes: Quotes
    option_trades: Trades

    @property
    def n_contracts(self) -> int:
        return int(self.contract_underlying.size)

    def contract_ids(
        self, underlying: np.ndarray, kind: np.ndarray, strike: np.ndarray, expiry_day: np.ndarray
    ) -> np.ndarray:
        """The ids of contracts given by their keys (underlying ids, kinds, strikes, expiry days, arrays
        of one length), −1 where the tape has no such contract (the strike must match exactly)."""
        keys = _contract_keys(
            self.contract_underlying, self.contract_expiry_day, self.contract_strike, self.contract_kind
        )
        want = _contract_keys(
            np.asarray(underlying, np.int64),
            np.asarray(expiry_day, np.int64),
            np.asarray(strike, np.float64),
            np.asarray(kind, np.int64),
        )
        pos = np.searchsorted(keys, want)
        found = pos < keys.size
        found[found] = keys[pos[found]] == want[found]
        return np.where(found, pos, -1).astype(np.int64)

    def time_range_ns(self) -> tuple[int, int]:
        """The first and last record's time (UTC ns)."""
        times = [r.time_ns for r in self._records() if len(r)]
        return int(min(t[0] for t in times)), int(max(t[-1] for t in times))

    def _records(self) -> tuple[Quotes | Trades, ...]:
        return (self.underlying_quotes, self.underlying_trades, self.option_quotes, self.option_trades)

    def __repr__(self) -> str:
        first, last = self.time_range_ns()
        span = f"{_iso(np.array([first]))[0]} .. {_iso(np.array([last]))[0]}"
        return (
            f"Tape({self.source!r}: {len(self.underlyings)} underlying(s), {self.n_contracts} contract(s), "
            f"{span}; quotes {len(self.underlying_quotes)} underlying / {len(self.option_quotes)} option, "
            f"trades {len(self.underlying_trades)} underlying / {len(self.option_trades)} option)"
        )


def _contract_keys(u: np.ndarray, expiry: np.ndarray, strike: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """One sortable structured key per contract: (underlying, expiry, strike, kind)."""
    keys = np.empty(u.size, dtype=[("u", np.int64), ("e", np.int64), ("k", np.float64), ("c", np.int64)])
    keys["u"], keys["e"], keys["k"], keys["c"] = u, expiry, strike, kind
    return keys


# -- reading ---------------------------------------------------------------------------------------


def _first(source: str, field: str, mask: np.ndarray, problem: Any) -> None:
    """Raise for the first row where ``mask`` holds, ``problem(row0)`` its text."""
    if mask.any():
        r = int(np.argmax(mask))
        raise RowError(source, r + 1, field, problem(r))


class _Table:
    """One file's columns as text (CSV) or typed arrays (Parquet), with the problems named."""

    def __init__(self, source: str, columns: dict[str, np.ndarray], n: int) -> None:
        self.source = source
        self.columns = columns
        self.n = n

    def has(self, name: str) -> bool:
        return name in self.columns

    def factor(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The column as ``(codes, texts)``: its distinct values as stripped text (``texts``, an object
        array, ``""`` for an empty cell or a null) and each row's index into them (int64)."""
        if name not in self.columns:
            return np.zeros(self.n, dtype=np.int64), np.array([""], dtype=object)
        col = self.columns[name]
        if col.dtype.kind in "fiu":
            raise RowError(self.source, 0, name, f"expected text, the column holds numbers ({col.dtype})")
        codes, distinct = pd.factorize(col)  # a null: code -1, the empty text appended last
        texts = np.array([str(v).strip() for v in distinct] + [""], dtype=object)
        return np.where(codes < 0, len(distinct), codes).astype(np.int64), texts

    def text(self, name: str) -> np.ndarray:
        """The column as stripped text (``""`` where empty), an object array."""
        codes, texts = self.factor(name)
        return texts[codes]

    def choice(self, name: str, values: dict[str, int], rows: np.ndarray, what: str) -> np.ndarray:
        """The column's codes by ``values`` (keys lower case; the text's case is ignored); a text on
        ``rows`` that is not a key is an error naming ``what``."""
        codes, texts = self.factor(name)
        lower = [t.lower() for t in texts]
        known = np.array([t in values for t in lower], dtype=bool)
        _first(self.source, name, rows & ~known[codes], lambda r: f"unknown {what} {texts[codes[r]]!r}")
        return np.array([values.get(t, 0) for t in lower], dtype=np.int64)[codes]

    def numbers(self, name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, empty)`` over all rows; a value in ``rows`` that is not a number is an error (an
        empty cell or a Parquet null is NaN and ``empty``)."""
        if name not in self.columns:
            return np.full(self.n, np.nan), np.ones(self.n, dtype=bool)
        col = self.columns[name]
        if col.dtype.kind in "fiu":
            values = col.astype(np.float64)
            return values, np.isnan(values)
        text = col
        cells = pd.Series(col, dtype=object)
        empty = (cells.isna() | (cells == "")).to_numpy(dtype=bool)
        values = np.full(self.n, np.nan)
        use = rows & ~empty
        try:
            values[use] = text[use].astype(np.float64)  # Python's float(): exact, spaces allowed
        except ValueError:
            for r in np.flatnonzero(use):
                try:
                    float(text[r])
                except ValueError:
                    raise RowError(self.source, int(r) + 1, name, f"not a number: {text[r]!r}") from None
        return values, empty


def _read_csv(path: Path, source: str) -> _Table:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise RowError(source, 0, "<file>", "empty (no header)") from None
    except UnicodeDecodeError:
        raise RowError(source, 0, "<file>", "not UTF-8 text") from None
    except pd.errors.ParserError as exc:
        raise RowError(source, 0, "<file>", f"not a readable CSV ({' '.join(str(exc).split())})") from None
    cols = {str(c).strip().lower(): df[c].to_numpy(dtype=object) for c in df.columns}
    return _Table(source, cols, len(df))


def _read_parquet(path: Path, source: str) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise RowError(
            source, 0, "<file>", f"not a readable Parquet file ({' '.join(str(exc).split())})"
        ) from None
    cols: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        key = name.strip().lower()
        if key not in COLUMNS:
            continue
        t = column.type
        if pa.types.is_dictionary(t):
            column, t = column.cast(t.value_type), t.value_type
        if pa.types.is_timestamp(t):
            if key != "time":
                column, t = column.cast(pa.date32()), pa.date32()
            elif t.tz is None:
                raise RowError(
                    source,
                    0,
                    "time",
                    "a timestamp column without a time zone (store UTC: timestamp[ns, tz=UTC])",
                )
            else:
                cols[key] = (
                    column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
                )
                continue
        if pa.types.is_date(t):
            cols[key] = np.array(
                [None if v is None else v.isoformat() for v in column.to_pylist()], dtype=object
            )
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            if key == "time":
                if not pa.types.is_integer(t) or column.null_count:
                    raise RowError(
                        source,
                        0,
                        "time",
                        f"a numeric time must be integer nanoseconds without nulls (type {t})",
                    )
                cols[key] = column.to_numpy().astype(np.int64)
            else:
                cols[key] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            cols[key] = np.array(column.to_pylist(), dtype=object)
    return _Table(source, cols, table.num_rows)


def _times(tab: _Table) -> np.ndarray:
    """The ``time`` column as UTC ns: integer nanoseconds, or ISO 8601 text with ``Z`` or an offset."""
    col = tab.columns["time"]
    if col.dtype.kind in "iu":
        return col.astype(np.int64)
    text = tab.text("time")
    out = np.empty(tab.n, dtype=np.int64)
    is_int = pd.Series(text, dtype=object).str.fullmatch(r"-?\d+").to_numpy(dtype=bool)
    for i in np.flatnonzero(is_int):
        v = int(text[i])
        if not -(2**63) < v < 2**63:
            raise RowError(tab.source, int(i) + 1, "time", f"integer nanoseconds out of range: {text[i]!r}")
        out[i] = v
    iso = ~is_int
    if iso.any():
        bad = ~pd.Series(text[iso], dtype=object).str.fullmatch(_ISO.pattern).to_numpy(dtype=bool)
        where = np.flatnonzero(iso)
        if bad.any():
            r = int(where[np.argmax(bad)])
            problem = (
                "empty"
                if text[r] == ""
                else f"cannot parse {text[r]!r} (expected integer UTC nanoseconds or ISO 8601 with 'Z' or "
                "an offset, e.g. 2026-01-05T14:30:00.25Z)"
            )
            raise RowError(tab.source, r + 1, "time", problem)
        parsed = pd.to_datetime(
            pd.Series(text[iso], dtype=object), utc=True, format="ISO8601", errors="coerce"
        )
        nat = parsed.isna().to_numpy()
        if nat.any():
            r = int(where[np.argmax(nat)])
            raise RowError(tab.source, r + 1, "time", f"not a valid date and time: {text[r]!r}")
        out[iso] = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return out


@dataclass
class _Rows:
    """One file's validated rows (0-based positions as in the file)."""

    time: np.ndarray
    is_trade: np.ndarray
    is_option: np.ndarray
    underlying: np.ndarray
    kind: np.ndarray
    expiry_day: np.ndarray
    strike: np.ndarray
    a: np.ndarray  # bid (quote) or price (trade)
    b: np.ndarray  # ask (quote) or size (trade)
    a_size: np.ndarray  # bid_size (quote)
    b_size: np.ndarray  # ask_size (quote)
    side: np.ndarray  # the aggressor (trade)
    mid: np.ndarray
    vol: np.ndarray


def _validate(tab: _Table) -> _Rows:
    src, n = tab.source, tab.n
    if n == 0:
        raise RowError(src, 0, "<file>", "no records")
    for name in _REQUIRED:
        if not tab.has(name):
            raise RowError(src, 0, name, f"missing column (has: {', '.join(tab.columns) or 'none'})")
    time = _times(tab)
    back = np.zeros(n, dtype=bool)
    back[1:] = time[1:] < time[:-1]
    _first(src, "time", back, lambda r: "earlier than the row before it (a tape is sorted by time)")

    every = np.ones(n, dtype=bool)
    is_trade = tab.choice("type", {"quote": 0, "trade": 1}, every, "record type (quote or trade)") == 1
    for t, rows in (("quote", ~is_trade), ("trade", is_trade)):
        if rows.any():
            for name in _NEEDED_BY[t]:
                if not tab.has(name):
                    raise RowError(src, 0, name, f"missing column (needed by the {t} rows)")
    und = tab.text("underlying")
    _first(src, "underlying", und == "", lambda r: "empty")
    kind = tab.choice("kind", _KINDS, every, "kind (call, put, or empty / underlying)")
    is_option = kind >= 0

    strike, _ = tab.numbers("strike", is_option)
    _first(
        src,
        "strike",
        is_option & ~(np.isfinite(strike) & (strike > 0.0)),
        lambda r: f"an option needs a finite strike > 0, got {_show(tab, 'strike', r)}",
    )
    expiry_day = _expiry_days(tab, is_option)
    _first(
        src,
        "expiry",
        is_option & (expiry_day < np.floor_divide(time, _NS_PER_DAY)),
        lambda r: (
            f"expiry {_day_iso(int(expiry_day[r]))} is before the record's date "
            f"{_iso(time[r : r + 1])[0][:10]} (UTC)"
        ),
    )

    is_quote = ~is_trade
    bid, bid_empty = tab.numbers("bid", is_quote)
    ask, ask_empty = tab.numbers("ask", is_quote)
    for name, v, empty in (("bid", bid, bid_empty), ("ask", ask, ask_empty)):
        _first(
            src,
            name,
            is_quote & ~empty & ~(np.isfinite(v) & (v >= 0.0)),
            lambda r, name=name: f"a price must be finite and >= 0, got {_show(tab, name, r)}",
        )
    _first(src, "bid", is_quote & (bid > ask), lambda r: f"bid {float(bid[r])!r} above ask {float(ask[r])!r}")
    sizes = []
    for name in ("bid_size", "ask_size"):
        v, empty = tab.numbers(name, is_quote)
        _first(
            src,
            name,
            is_quote & ~empty & ~(np.isfinite(v) & (v >= 0.0)),
            lambda r, name=name: f"a size must be finite and >= 0, got {_show(tab, name, r)}",
        )
        sizes.append(v)
    mid, mid_empty = tab.numbers("mid", is_quote)
    _first(
        src,
        "mid",
        is_quote & ~mid_empty & ~(np.isfinite(mid) & (mid > 0.0)),
        lambda r: f"must be finite and > 0, got {_show(tab, 'mid', r)}",
    )
    mid = np.where(mid_empty, 0.5 * (bid + ask), mid)
    vol, vol_empty = tab.numbers("vol", is_quote)
    _first(
        src,
        "vol",
        is_quote & ~vol_empty & ~(np.isfinite(vol) & (vol > 0.0)),
        lambda r: f"an implied vol must be finite and > 0 (a decimal), got {_show(tab, 'vol', r)}",
    )

    price, price_empty = tab.numbers("price", is_trade)
    _first(
        src,
        "price",
        is_trade & (price_empty | ~(np.isfinite(price) & (price >= 0.0))),
        lambda r: f"a trade needs a finite price >= 0, got {_show(tab, 'price', r)}",
    )
    size, size_empty = tab.numbers("size", is_trade)
    _first(
        src,
        "size",
        is_trade & (size_empty | ~(np.isfinite(size) & (size > 0.0))),
        lambda r: f"a trade needs a finite size > 0, got {_show(tab, 'size', r)}",
    )
    side = tab.choice("side", _SIDES, is_trade, "aggressor side (buy, sell or empty)")

    return _Rows(
        time=time,
        is_trade=is_trade,
        is_option=is_option,
        underlying=und,
        kind=kind,
        expiry_day=expiry_day,
        strike=np.where(is_option, strike, np.nan),
        a=np.where(is_trade, price, bid),
        b=np.where(is_trade, size, ask),
        a_size=sizes[0],
        b_size=sizes[1],
        side=np.where(is_trade, side, SIDE_UNKNOWN),
        mid=mid,
        vol=vol,
    )


def _show(tab: _Table, name: str, r: int) -> str:
    """A cell as the user wrote it, for a message."""
    if name not in tab.columns:
        return "nothing (no such column)"
    v = tab.columns[name][r]
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return "nothing (empty)"
    return repr(v.strip()) if isinstance(v, str) else repr(float(v))


def _expiry_days(tab: _Table, rows: np.ndarray) -> np.ndarray:
    """The ``expiry`` column (YYYY-MM-DD) as days since the epoch on ``rows`` (0 elsewhere)."""
    if not rows.any():
        return np.zeros(tab.n, dtype=np.int64)
    if not tab.has("expiry"):
        raise RowError(tab.source, 0, "expiry", "missing column (needed by the option rows)")
    codes, texts = tab.factor("expiry")  # a day's options share a few expiries: each parsed once
    shaped = np.array([_DATE.fullmatch(t) is not None for t in texts], dtype=bool)
    _first(
        tab.source,
        "expiry",
        rows & ~shaped[codes],
        lambda r: f"cannot parse {texts[codes[r]]!r} (expected YYYY-MM-DD)",
    )
    days = pd.to_datetime(pd.Series(texts, dtype=object), format="%Y-%m-%d", errors="coerce")
    invalid = days.isna().to_numpy()
    _first(tab.source, "expiry", rows & invalid[codes], lambda r: f"not a valid date: {texts[codes[r]]!r}")
    day = np.where(invalid, 0, days.to_numpy(dtype="datetime64[D]").astype(np.int64))
    return np.where(rows, day[codes], 0)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if not files:
            raise RowError(
                os.fspath(path), 0, "<file>", "a tape directory with no .csv, .parquet or .pq file"
            )
        return files
    if path.suffix.lower() not in _SUFFIXES:
        raise RowError(
            os.fspath(path),
            0,
            "<file>",
            f"unknown tape format {path.suffix!r} (use .csv, .parquet or .pq, or a directory)",
        )
    if not path.exists():
        raise FileNotFoundError(f"{os.fspath(path)}: no such file or directory")
    return [path]


def read_tape(path: str | os.PathLike[str]) -> Tape:
    """Read and validate a tape: a ``.csv``, ``.parquet`` / ``.pq`` file, or a directory of them (their
    records merged by time; on equal times, files in name order, rows in file order).

    Returns
    -------
    Tape

    Raises
    ------
    ValueError
        The first problem, as ``"<file>: row <r>: field '<field>': <problem>"`` (``r`` the 1-based data
        row: the first row under the header is 1; 0 for the file or its columns).
    FileNotFoundError
        ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{os.fspath(root)}: no such file or directory")
    parts = []
    for f in _files(root):
        reader = _read_csv if _SUFFIXES[f.suffix.lower()] == "csv" else _read_parquet
        parts.append(_validate(reader(f, os.fspath(f))))
    return _tape(
        os.fspath(root),
        _Rows(*(np.concatenate([getattr(p, fl.name) for p in parts]) for fl in fields(_Rows))),
    )


def _tape(source: str, rows: _Rows) -> Tape:
    """The tape of ``rows``: sorted by time (stable), underlyings numbered in name order, contracts in
    (underlying, expiry, strike, kind) order."""
    order = np.argsort(rows.time, kind="stable")
    rows = _Rows(*(getattr(rows, fl.name)[order] for fl in fields(_Rows)))
    codes, distinct = pd.factorize(rows.underlying)
    by_name = np.argsort(distinct.astype(str))
    rank = np.empty(by_name.size, dtype=np.int64)
    rank[by_name] = np.arange(by_name.size)
    inst = rank[codes]
    opt = rows.is_option
    cu, ce, ck, cc = inst[opt], rows.expiry_day[opt], rows.strike[opt], rows.kind[opt]
    by_key = np.lexsort((cc, ck, ce, cu))
    change = np.zeros(by_key.size, dtype=bool)
    if by_key.size:
        change[0] = True
        for a in (cu, ce, ck, cc):
            change[1:] |= a[by_key][1:] != a[by_key][:-1]
    c_id = np.empty(by_key.size, dtype=np.int64)
    c_id[by_key] = np.cumsum(change) - 1
    inst[opt] = c_id
    first = by_key[change]
    names = tuple(str(n) for n in distinct[by_name])

    def pick(mask: np.ndarray, a: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
        return np.ascontiguousarray(a[mask], dtype=dtype)

    def quotes(m: np.ndarray) -> Quotes:
        return Quotes(
            pick(m, rows.time, np.int64),
            pick(m, inst, np.int64),
            pick(m, rows.a),
            pick(m, rows.b),
            pick(m, rows.a_size),
            pick(m, rows.b_size),
            pick(m, rows.mid),
            pick(m, rows.vol),
        )

    def trades(m: np.ndarray) -> Trades:
        return Trades(
            pick(m, rows.time, np.int64),
            pick(m, inst, np.int64),
            pick(m, rows.a),
            pick(m, rows.b),
            pick(m, rows.side, np.int64),
        )

    q, o = ~rows.is_trade, rows.is_option
    return Tape(
        source=source,
        underlyings=names,
        contract_underlying=np.ascontiguousarray(cu[first], dtype=np.int64),
        contract_kind=np.ascontiguousarray(cc[first], dtype=np.int64),
        contract_strike=np.ascontiguousarray(ck[first], dtype=np.float64),
        contract_expiry_day=np.ascontiguousarray(ce[first], dtype=np.int64),
        underlying_quotes=quotes(q & ~o),
        underlying_trades=trades(~q & ~o),
        option_quotes=quotes(q & o),
        option_trades=trades(~q & o),
    )


# -- writing ---------------------------------------------------------------------------------------


def _iso(ns: np.ndarray) -> np.ndarray:
    """UTC nanoseconds as ISO 8601 text with nanoseconds and ``Z``."""
    return np.char.add(np.datetime_as_string(ns.astype("datetime64[ns]"), unit="ns"), "Z")


def _day_iso(day: int | np.integer) -> str:
    return str(np.datetime64(int(day), "D"))


def tape_frame(tape: Tape) -> pd.DataFrame:
    """The tape as one table of :data:`COLUMNS`, sorted by time (stable: underlying quotes, underlying
    trades, option quotes, option trades on equal times), ``time`` as int64 UTC ns, empty cells NaN
    (numbers) or ``""`` (text)."""
    names = np.array(tape.underlyings, dtype=object)
    parts = []
    for rec, option in zip(tape._records(), (False, False, True, True), strict=True):
        n = len(rec)
        d: dict[str, Any] = {c: np.full(n, np.nan) for c in COLUMNS}
        d["time"] = rec.time_ns
        for c in ("kind", "expiry", "side"):
            d[c] = np.full(n, "", dtype=object)
        if option:
            ids = rec.inst
            d["underlying"] = names[tape.contract_underlying[ids]]
            d["kind"] = np.where(tape.contract_kind[ids] == KIND_CALL, "call", "put").astype(object)
            d["expiry"] = np.datetime_as_string(tape.contract_expiry_day[ids].astype("datetime64[D]")).astype(
                object
            )
            d["strike"] = tape.contract_strike[ids]
        else:
            d["underlying"] = names[rec.inst]
        if isinstance(rec, Quotes):
            d["type"] = np.full(n, "quote", dtype=object)
            for c in ("bid", "ask", "bid_size", "ask_size", "mid", "vol"):
                d[c] = getattr(rec, c)
        else:
            d["type"] = np.full(n, "trade", dtype=object)
            d["price"], d["size"] = rec.price, rec.size
            d["side"] = np.array(["sell", "", "buy"], dtype=object)[rec.side + 1]
        parts.append(pd.DataFrame(d, columns=list(COLUMNS)))
    frame = pd.concat(parts, ignore_index=True)
    return frame.iloc[np.argsort(frame["time"].to_numpy(), kind="stable")].reset_index(drop=True)


def write_tape(tape: Tape, path: str | os.PathLike[str]) -> Path:
    """Write ``tape`` as one table (docs/tape.md), CSV or Parquet by the suffix; whole or not at all.

    CSV: ``time`` as ISO 8601 UTC with nanoseconds and ``Z``, numbers as Python's shortest round-trip
    text (reading gives back the same float64 values), empty cells where a value is absent; the
    ``mid`` and ``vol`` columns only when some record has a ``mid`` other than ``(bid + ask) / 2`` or a
    ``vol``. Parquet: ``time`` as ``timestamp[ns, tz=UTC]``, numbers as float64 with nulls, text as
    strings.

    Returns
    -------
    Path
        The file written.
    """
    target = Path(path)
    fmt = _SUFFIXES.get(target.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{os.fspath(target)}: unknown tape format {target.suffix!r} (use .csv, .parquet or .pq)"
        )
    frame = tape_frame(tape)
    quotes = frame["type"].to_numpy() == "quote"
    implied = 0.5 * (frame["bid"].to_numpy() + frame["ask"].to_numpy())
    mid = frame["mid"].to_numpy()
    if not (quotes & ~np.isnan(mid) & ~(mid == implied)).any():
        frame = frame.drop(columns="mid")
    if frame["vol"].isna().all():
        frame = frame.drop(columns="vol")
    if fmt == "csv":
        frame["time"] = _iso(frame["time"].to_numpy())
        with atomic_target(target, text=True) as f:
            frame.to_csv(f, index=False, float_format=None, lineterminator="\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {}
        for c in frame.columns:
            v = frame[c].to_numpy()
            if c == "time":
                arrays[c] = pa.array(v.astype("datetime64[ns]"), type=pa.timestamp("ns", tz="UTC"))
            elif v.dtype == object:
                arrays[c] = pa.array([s if s else None for s in v], type=pa.string())
            else:
                arrays[c] = pa.array(v, type=pa.float64(), from_pandas=True)
        with atomic_target(target, text=False) as f:
            pq.write_table(pa.table(arrays), f)
    return target


# -- time ------------------------------------------------------------------------------------------


def time_grid(start_ns: int, dt_s: float, steps: int) -> np.ndarray:
    """The simulation's step times, UTC ns: ``start_ns + round(k · dt_s · 1e9)``, ``k = 0 .. steps − 1``."""
    return np.int64(start_ns) + np.rint(np.arange(steps) * (dt_s * 1e9)).astype(np.int64)


def asof_index(time_ns: np.ndarray, inst: np.ndarray, n_inst: int, grid_ns: np.ndarray) -> np.ndarray:
    """For each grid time and instrument, the index (into ``time_ns``) of the instrument's last record
    stamped at or before that time, −1 if none yet: an int64 array ``(len(grid_ns), n_inst)``.

    ``time_ns`` is sorted (as every :class:`Quotes` / :class:`Trades` is). A record stamped exactly at a
    grid time is used from that time on; one stamped a nanosecond later is not (no look-ahead). Among
    records of one instrument with equal times, the last in the tape's order wins.
    """
    grid = np.asarray(grid_ns, dtype=np.int64)
    out = np.full((grid.size, n_inst), -1, dtype=np.int64)
    order = np.argsort(inst, kind="stable")  # records grouped by instrument, in time order within each
    bounds = np.searchsorted(inst[order], np.arange(n_inst + 1))
    for j in range(n_inst):
        idx = order[bounds[j] : bounds[j + 1]]
        if idx.size:
            pos = np.searchsorted(time_ns[idx], grid, side="right") - 1
            out[:, j] = np.where(pos >= 0, idx[np.maximum(pos, 0)], -1)
    return out


def asof_values(records: Quotes | Trades, field: str, n_inst: int, grid_ns: np.ndarray) -> np.ndarray:
    """``field`` of each instrument's last record stamped at or before each grid time (:func:`asof_index`),
    NaN before its first: a float64 array ``(len(grid_ns), n_inst)``, e.g. ``asof_values(tape.
    underlying_quotes, "mid", len(tape.underlyings), grid)``, the underlyings' mid at every step."""
    idx = asof_index(records.time_ns, records.inst, n_inst, grid_ns)
    values = np.asarray(getattr(records, field), dtype=np.float64)
    return np.where(idx >= 0, values[np.maximum(idx, 0)] if values.size else np.nan, np.nan)


def step_slices(time_ns: np.ndarray, grid_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records of each step: step ``k`` holds indices ``lo[k] <= j < hi[k]`` of the sorted
    ``time_ns``, those stamped in ``(grid[k−1], grid[k]]`` (step 0: exactly at ``grid[0]``; records
    before the first step belong to none). Two int64 arrays of ``len(grid_ns)``."""
    grid = np.asarray(grid_ns, dtype=np.int64)
    hi = np.searchsorted(time_ns, grid, side="right").astype(np.int64)
    lo = np.empty_like(hi)
    if hi.size:
        lo[0] = np.searchsorted(time_ns, grid[0], side="left")
        lo[1:] = hi[:-1]
    return lo, hi


# -- a synthetic run as a tape ---------------------------------------------------------------------


def tape_from_result(result: SimResult, path: int = 0) -> Tape:
    """Path ``path`` of a synthetic run as a tape (docs/tape.md, "A synthetic run as a tape"), which
    replays it bit for bit; ``path`` 0 (a result keeps path 0's orders, ``ValueError`` for another).

    At each step's time (:data:`optmm.sim.engine.SESSION_OPEN` plus ``step · dt_s``, on
    :func:`time_grid`), and at the end of the last step (``result.market_end``): a quote of every
    underlying, ``bid``/``ask`` = spot ∓ its configured ``half_spread``, ``mid`` = the spot path itself
    and ``vol`` = the path's vol level (the surface's ATM level before the smile); and every order that
    reached a live quote of ours (``result.orders``) as a trade at the price it met (our quote's) and
    the order's size, the aggressor the other side of ours, in an option contract (expiry: the
    session's date plus the expiry's whole days, as the risk controller names the contract) or in the
    underlying.
    """
    from optmm.sim.engine import SESSION_OPEN, VALUATION

    if path != 0:
        raise ValueError(f"tape_from_result: a result records the orders of path 0 only (got path {path})")
    cfg = result.config
    und = result.underlyings[result.underlyings["path"] == path]
    if len(result.market_end):  # (a run's; a result made by hand may leave it out)
        end = result.market_end[result.market_end["path"] == path]
        und = pd.concat(
            [und[["step", "underlying", "spot", "vol"]], end[["step", "underlying", "spot", "vol"]]]
        )
    orders = result.orders[result.orders["path"] == path]
    n_steps = int(und["step"].max()) + 1 if len(und) else 0
    grid = time_grid(int(SESSION_OPEN.astype("datetime64[ns]").astype(np.int64)), cfg.sim.dt_s, n_steps)
    half_spread = {u.name: u.half_spread for u in cfg.underlying}
    u_name = und["underlying"].to_numpy(dtype=object)
    spot = und["spot"].to_numpy(np.float64)
    hs = np.array([half_spread[n] for n in u_name], dtype=np.float64)
    n_q, n_f = spot.size, len(orders)
    none_q, none_f = np.full(n_q, np.nan), np.full(n_f, np.nan)

    is_opt = (orders["kind"] != "stock").to_numpy(dtype=bool)
    days = np.ceil(np.where(is_opt, orders["expiry_days"].to_numpy(np.float64), 0.0)).astype("timedelta64[D]")
    rows = _Rows(
        time=np.concatenate([grid[und["step"].to_numpy(np.int64)], grid[orders["step"].to_numpy(np.int64)]]),
        is_trade=np.concatenate([np.zeros(n_q, bool), np.ones(n_f, bool)]),
        is_option=np.concatenate([np.zeros(n_q, bool), is_opt]),
        underlying=np.concatenate([u_name, orders["underlying"].to_numpy(dtype=object)]),
        kind=np.concatenate(
            [np.full(n_q, -1), np.where(is_opt, np.where(orders["kind"] == "call", KIND_CALL, KIND_PUT), -1)]
        ),
        expiry_day=np.concatenate(
            [np.zeros(n_q, np.int64), np.where(is_opt, (VALUATION + days).astype(np.int64), 0)]
        ),
        strike=np.concatenate([none_q, np.where(is_opt, orders["strike"].to_numpy(np.float64), np.nan)]),
        a=np.concatenate([spot - hs, orders["price"].to_numpy(np.float64)]),
        b=np.concatenate([spot + hs, orders["size"].to_numpy(np.float64)]),
        a_size=np.concatenate([none_q, none_f]),
        b_size=np.concatenate([none_q, none_f]),
        side=np.concatenate([np.zeros(n_q, np.int64), -orders["side"].to_numpy(np.int64)]),
        mid=np.concatenate([spot, none_f]),
        vol=np.concatenate([und["vol"].to_numpy(np.float64), none_f]),
    )
    return _tape(f"{cfg.source} (seed {result.seed}, path {path})", rows)


# -- replay ----------------------------------------------------------------------------------------


def _asof_field(
    time_ns: np.ndarray, inst: np.ndarray, values: np.ndarray, n_inst: int, grid: np.ndarray
) -> np.ndarray:
    """``values`` of each instrument's last record with a finite value stamped at or before each grid
    time (NaN before it): records without the value (a one-sided quote's mid, a quote without a vol)
    do not hide an earlier one."""
    ok = np.isfinite(values)
    idx = asof_index(time_ns[ok], inst[ok], n_inst, grid)
    kept = values[ok]
    return np.where(idx >= 0, kept[np.maximum(idx, 0)] if kept.size else np.nan, np.nan)


def replay_market(
    tape: Tape, names: tuple[str, ...], dt_s: float, max_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The market of a replay (docs/tape.md, "Replay"): ``(grid_ns, spot, vol)``. The steps are
    ``time_grid(first record's time, dt_s, ·)``, as many as fit in the tape (the last step's end at or
    before its last record), at most ``max_steps``: ``grid_ns`` has ``steps + 1`` times. ``spot`` and
    ``vol`` are ``(steps + 1, len(names))``: each underlying's mid as of each time (:func:`asof_index`,
    no look-ahead; quotes without a mid skipped) and its ``vol`` as of each time (NaN where the tape
    has none yet).

    Raises
    ------
    ValueError
        The tape has no underlying of ``names``, lacks one of them, has no mid of one at the first step,
        or is shorter than one step (messages name the tape).
    """
    start, last = tape.time_range_ns()
    known = [n for n in names if n in tape.underlyings]
    if not known:
        raise ValueError(
            f"{tape.source}: no underlying of the configuration ({', '.join(names)}); "
            f"the tape has {', '.join(tape.underlyings)}"
        )
    for n in names:
        if n not in tape.underlyings:
            raise ValueError(f"{tape.source}: no quotes of underlying {n!r} (the configuration trades it)")
    full = time_grid(start, dt_s, max_steps + 1)
    steps = int(np.searchsorted(full, last, side="right")) - 1
    if steps < 1:
        raise ValueError(f"{tape.source}: shorter than one step of {dt_s:g} s")
    grid = full[: steps + 1]
    uq = tape.underlying_quotes
    ids = np.array([tape.underlyings.index(n) for n in names], dtype=np.int64)
    n_u = len(tape.underlyings)
    spot = _asof_field(uq.time_ns, uq.inst, uq.mid, n_u, grid)[:, ids]
    vol = _asof_field(uq.time_ns, uq.inst, uq.vol, n_u, grid)[:, ids]
    for j in np.flatnonzero(np.isnan(spot[0])):
        raise ValueError(
            f"{tape.source}: no mid of {names[j]!r} at or before the first step ({_iso(grid[:1])[0]})"
        )
    return grid, np.ascontiguousarray(spot), np.ascontiguousarray(vol)


@dataclass(frozen=True)
class ReplayOrders:
    """A tape's orders on a run's steps, for the chain's instruments (docs/tape.md, "Replay").

    Attributes
    ----------
    mode : str
        ``"trades"`` (the tape has trades in the chain's instruments), else ``"quotes"`` (it has their
        quotes only) or ``"none"``.
    lo, hi : int64 array
        Step ``k``'s trades are ``lo[k] <= j < hi[k]`` (:func:`step_slices`).
    inst : int64 array
        Each trade's instrument in the chain.
    price, size : float64 array
    side : int64 array
        The trades, in time order.
    bid, ask, bid_size, ask_size : float64 array
        ``(steps, instruments)``: the recorded touch as of each step (NaN: none), in ``"quotes"``
        mode; ``(0, instruments)`` otherwise.
    """

    mode: str
    lo: np.ndarray
    hi: np.ndarray
    inst: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray


def replay_orders(
    tape: Tape,
    grid_ns: np.ndarray,
    names: tuple[str, ...],
    u: np.ndarray,
    kind: np.ndarray,
    strike: np.ndarray,
    expiry_days: np.ndarray,
) -> ReplayOrders:
    """The tape's trades (or quotes) mapped to a chain's instruments: instrument ``i`` is underlying
    ``names[u[i]]`` itself (``kind[i]`` neither :data:`KIND_CALL` nor :data:`KIND_PUT`) or its option of
    that kind and strike expiring on the session's date (the first step's UTC date) plus
    ``ceil(expiry_days[i])`` days. Records of other instruments are left out. ``grid_ns``: the run's
    ``steps + 1`` times (orders at steps ``0 .. steps − 1``)."""
    steps = grid_ns.size - 1
    grid = grid_ns[:steps]
    n_inst = u.size
    tid = np.array(
        [tape.underlyings.index(n) if n in tape.underlyings else -1 for n in names], dtype=np.int64
    )
    t_u = tid[u]
    opt = (kind == KIND_CALL) | (kind == KIND_PUT)
    session_day = int(grid_ns[0] // _NS_PER_DAY)
    expiry = session_day + np.ceil(np.where(opt, expiry_days, 0.0)).astype(np.int64)
    cid = np.where(opt, tape.contract_ids(np.maximum(t_u, 0), kind, strike, expiry), -1)
    cid[t_u < 0] = -1
    of_contract = np.full(tape.n_contracts, -1, dtype=np.int64)
    of_contract[cid[cid >= 0]] = np.flatnonzero(cid >= 0)
    of_underlying = np.full(len(tape.underlyings), -1, dtype=np.int64)
    und_rows = np.flatnonzero(~opt & (t_u >= 0))
    of_underlying[t_u[und_rows]] = und_rows

    ot, ut = tape.option_trades, tape.underlying_trades
    t_inst = np.concatenate([of_contract[ot.inst], of_underlying[ut.inst]])
    keep = t_inst >= 0
    times = np.concatenate([ot.time_ns, ut.time_ns])[keep]
    order = np.argsort(times, kind="stable")
    times = times[order]

    def trade_field(name: str, dtype: Any) -> np.ndarray:
        both = np.concatenate([getattr(ot, name), getattr(ut, name)])[keep][order]
        return np.ascontiguousarray(both, dtype=dtype)

    lo, hi = step_slices(times, grid)
    q_empty = np.zeros((0, n_inst))
    touch = {c: q_empty for c in ("bid", "ask", "bid_size", "ask_size")}
    oq, uq = tape.option_quotes, tape.underlying_quotes
    quoted = bool((of_contract[oq.inst] >= 0).any() or (of_underlying[uq.inst] >= 0).any())
    mode = "trades" if times.size else ("quotes" if quoted else "none")
    if mode == "quotes":
        o_idx = asof_index(oq.time_ns, oq.inst, tape.n_contracts, grid)
        u_idx = asof_index(uq.time_ns, uq.inst, len(tape.underlyings), grid)
        for c in touch:
            t = np.full((steps, n_inst), np.nan)
            for rows, ids, idx, recs in ((opt, cid, o_idx, oq), (~opt, t_u, u_idx, uq)):
                cols = np.flatnonzero(rows & (ids >= 0))
                at = idx[:, ids[cols]]
                values = getattr(recs, c)
                if values.size:
                    t[:, cols] = np.where(at >= 0, values[np.maximum(at, 0)], np.nan)
            touch[c] = t
    return ReplayOrders(
        mode=mode,
        lo=lo,
        hi=hi,
        inst=np.ascontiguousarray(t_inst[keep][order], dtype=np.int64),
        price=trade_field("price", np.float64),
        size=trade_field("size", np.float64),
        side=trade_field("side", np.int64),
        **touch,
    )
