"""Historical scenarios: per underlying, the spot returns and implied-vol changes of a dated history.

The history file
----------------
CSV (UTF-8, a header row) or Parquet (``.parquet`` / ``.pq``), one row per underlying and date:

========== ========================================================================================
column     meaning
========== ========================================================================================
date       the observation's date, ``YYYY-MM-DD`` (Parquet: a date, a timestamp or that text)
underlying the underlying's name, as in the book and the market
spot       its closing price, > 0
atm_vol    its at-the-money implied vol that day, a decimal (0.20 = 20%), > 0 and at most 5
skew       optional: a skew measure of the smile (e.g. 25-delta put minus call vol), a decimal
========== ========================================================================================

Column names are matched ignoring case and surrounding blanks; other columns are ignored. Rows may
come in any order (they are sorted by date). Refused, with the file, the 1-based data row and the
field named (:class:`HistoryError`): a missing column, a blank or malformed date or number, a
non-positive spot, a vol outside (0, 5] (``20`` would be 2,000%: write 0.20), an underlying with two
rows on the same date, a file without rows.

Scenarios
---------
:meth:`History.scenarios` turns the history into one scenario per date: the relative spot move
``S(d) / S(d') - 1`` and the absolute vol move ``atm_vol(d) - atm_vol(d')`` of each underlying,
where ``d'`` is ``horizon`` observations before ``d`` (overlapping windows: a scenario ends on every
date that has ``horizon`` dates before it). The calendar is the dates on which every series the
request uses has an observation: a date missing from one series is left out for all (a return then
spans the gap), and the number of dates so left out is reported
(:attr:`HistoricalScenarios.dates_dropped`), never hidden, as is the longest step between two
consecutive dates (:attr:`HistoricalScenarios.longest_step`), where a hole in a history shows.

An underlying without its own history moves with a proxy:

* explicitly, ``proxies={"TSLA": ("SPY", 1.8)}``: TSLA's spot return is 1.8 x SPY's, its vol move
  SPY's vol move (an absolute move, not scaled by beta or by the ratio of the vols). An explicit
  proxy is used even where the underlying has a history of its own;
* else, where the market gives it a beta (``market.beta``) and it is not the index, by beta to
  ``market.index``: spot return ``beta x`` the index's, vol move the index's.

A proxy may itself move with a proxy (the betas multiply). An underlying with neither a history nor
a proxy is refused, naming it: nothing is silently left unmoved. ``skew`` is read and its changes
are given (:attr:`HistoricalScenarios.skew_shift`), but revaluation moves each underlying's whole
smile by its ATM vol move (:func:`optmm.risk.scenarios.points_pnl` shifts vols in parallel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm.book import BookError, _check_field_counts, _encoding_error, _known_columns
from optmm.typing import RowError

if TYPE_CHECKING:
    from optmm.market import Market

__all__ = [
    "COLUMNS",
    "MAX_VOL",
    "HistoricalScenarios",
    "History",
    "HistoryError",
    "load_history",
    "parse_dates",
    "parse_numbers",
    "read_table",
]

#: The required columns, then the optional one.
COLUMNS = ("date", "underlying", "spot", "atm_vol")
_OPTIONAL = ("skew",)
#: The largest ATM vol accepted (500%): a larger number is most likely a percent.
MAX_VOL = 5.0


class HistoryError(RowError):
    """A history file is invalid: ``"<source>: row <r>: field '<field>': <problem>"``.

    ``row`` is the 1-based data row (the header is not counted; 0 for a problem with the columns or
    the whole file), ``field`` the column.
    """


def _from_book_error(exc: BookError) -> HistoryError:
    return HistoryError(exc.source, exc.row, exc.field, exc.problem)


# --------------------------------------------------------------------------------------------------
# Reading


def _columns(
    source: str, names: Iterable[Any], required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, Any]:
    """The file's column (as spelled there) of each known column; a missing or doubled one refused."""
    more = f"[, {', '.join(optional)}]" if optional else ""
    missing = f"missing column (the columns are {', '.join(required)}{more})"
    return _known_columns(source, names, required, optional, HistoryError, missing)


def read_table(
    path: str | os.PathLike[str], required: Sequence[str], optional: Sequence[str] = ()
) -> pd.DataFrame:
    """The known columns of a CSV or Parquet file (by suffix), renamed to their lower-case names,
    CSV cells as text; a missing column, an unreadable file or a row of the wrong length refused
    with a :class:`HistoryError` naming the file, the row and the field."""
    source = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, source, required, optional)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, source, required, optional)
    raise HistoryError(source, 0, "<file>", f"unknown format {suffix!r} (use .csv, .parquet or .pq)")


def _read_csv(
    path: str | os.PathLike[str], source: str, required: Sequence[str], optional: Sequence[str]
) -> pd.DataFrame:
    options: dict[str, Any] = {"keep_default_na": False, "na_values": [""], "skipinitialspace": True}
    try:
        try:
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, **options)
        except pd.errors.EmptyDataError:
            raise HistoryError(source, 0, "<file>", "empty file: no header and no observations") from None
        names = ["" if pd.isna(c) else str(c) for c in header.iloc[0]]
        cols = _columns(source, names, required, optional)
        try:
            _check_field_counts(source, path, len(names))
        except BookError as exc:
            raise _from_book_error(exc) from None
        frame = pd.read_csv(path, usecols=list(cols.values()), dtype=str, **options)
    except UnicodeDecodeError:
        raise _from_book_error(_encoding_error(source, path)) from None
    except pd.errors.ParserError as exc:
        raise HistoryError(
            source, 0, "<file>", f"not a readable CSV ({' '.join(str(exc).split())})"
        ) from None
    return frame.rename(columns={v: k for k, v in cols.items()})


def _read_parquet(
    path: str | os.PathLike[str], source: str, required: Sequence[str], optional: Sequence[str]
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        cols = _columns(source, pq.read_schema(path).names, required, optional)
        frame = pq.read_table(path, columns=list(cols.values())).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        problem = " ".join(str(exc).split())
        raise HistoryError(source, 0, "<file>", f"not a readable Parquet file ({problem})") from None
    return frame.rename(columns={v: k for k, v in cols.items()})


def _cell(v: Any) -> Any:
    """A cell as shown in a message: numpy scalars as Python values (``-1.0``, not ``np.float64(-1.0)``)."""
    return v.item() if isinstance(v, np.generic) else v


def _first(source: str, mask: np.ndarray, name: str, problem: Any) -> None:
    """Refuse the first row where ``mask`` holds; ``problem(i)`` says what is wrong with row ``i``."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        raise HistoryError(source, i + 1, name, problem(i))


def parse_numbers(source: str, frame: pd.DataFrame, name: str, *, required: bool) -> np.ndarray:
    """Column ``name`` as float64 (NaN where blank and not ``required``); the first cell that is not
    a finite number refused, naming its row."""
    raw = frame[name]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    blank = raw.isna().to_numpy()
    if required:
        _first(source, blank, name, lambda i: "missing value")
    _first(source, np.isnan(values) & ~blank, name, lambda i: f"{_cell(raw.iloc[i])!r} is not a number")
    _first(source, np.isinf(values), name, lambda i: f"{_cell(raw.iloc[i])!r} is not a finite number")
    return values


def parse_dates(source: str, frame: pd.DataFrame, name: str) -> pd.DatetimeIndex:
    """Column ``name`` as dates (midnight, no time zone); a blank, a malformed date or a time of day
    refused, naming the row."""
    raw = frame[name]
    _first(source, raw.isna().to_numpy(), name, lambda i: "missing value")
    if pd.api.types.is_datetime64_any_dtype(raw):
        dates = pd.DatetimeIndex(raw)
    else:
        text = raw.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v).strip())
        dates = pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601", errors="coerce"))
        _first(
            source,
            np.asarray(dates.isna()),
            name,
            lambda i: f"{_cell(raw.iloc[i])!r} is not a date (YYYY-MM-DD)",
        )
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    _first(
        source,
        np.asarray(dates != dates.normalize()),
        name,
        lambda i: f"{_cell(raw.iloc[i])!r} has a time of day: give the date (YYYY-MM-DD)",
    )
    return dates


def _validate(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The long, typed, sorted table of a read file, or the first problem, naming row and field."""
    if len(frame) == 0:
        raise HistoryError(source, 0, "<file>", "no observations (a header without rows)")
    dates = parse_dates(source, frame, "date")

    und = frame["underlying"]
    und_text = und.map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
    )
    _first(source, (und_text == "").to_numpy(), "underlying", lambda i: "missing value")

    spot = parse_numbers(source, frame, "spot", required=True)
    _first(source, spot <= 0.0, "spot", lambda i: f"{float(spot[i])!r} must be > 0")
    vol = parse_numbers(source, frame, "atm_vol", required=True)
    _first(source, vol <= 0.0, "atm_vol", lambda i: f"{float(vol[i])!r} must be > 0 (a decimal: 0.20 = 20%)")
    _first(
        source,
        vol > MAX_VOL,
        "atm_vol",
        lambda i: (
            f"{float(vol[i])!r} is a decimal (0.20 = 20%), so it would be {100 * vol[i]:,.0f}%: "
            f"write {vol[i] / 100:g} for {vol[i]:g}%"
        ),
    )
    skew = parse_numbers(source, frame, "skew", required=False) if "skew" in frame else None

    table = pd.DataFrame(
        {
            "date": dates.to_numpy(dtype="datetime64[ns]"),
            "underlying": und_text.to_numpy(dtype=object),
            "spot": spot,
            "atm_vol": vol,
        }
    )
    if skew is not None:
        table["skew"] = skew

    def second(i: int) -> str:
        und, day = table["underlying"].iloc[i], table["date"].iloc[i]
        first = int(np.argmax(((table["underlying"] == und) & (table["date"] == day)).to_numpy()))
        return f"{und} has a second observation on {day.date().isoformat()} (the first is row {first + 1})"

    _first(source, table.duplicated(["underlying", "date"], keep="first").to_numpy(), "date", second)
    return table.sort_values(["date", "underlying"], kind="stable").reset_index(drop=True)


def load_history(path: str | os.PathLike[str]) -> History:
    """Read and validate a history file, CSV or Parquet by suffix (see the module for the columns).

    Parameters
    ----------
    path : str or path-like
        ``.csv``, or ``.parquet`` / ``.pq``; its path is the source named in errors.

    Returns
    -------
    History

    Raises
    ------
    HistoryError
        The first problem, naming the file, the row and the field.
    FileNotFoundError
        No such file.
    """
    source = os.fspath(path)
    return History(_validate(read_table(path, COLUMNS, _OPTIONAL), source), source)


# --------------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class HistoricalScenarios:
    """One scenario per historical date: each underlying's spot and vol move over the horizon.

    Attributes
    ----------
    dates : pandas.DatetimeIndex
        The scenarios' end dates, ascending (named ``date``).
    spot_shift : pandas.DataFrame
        Index ``dates``, one column per underlying: the relative spot move (-0.05 = -5%).
    vol_shift : pandas.DataFrame
        Same shape: the absolute ATM vol move (0.01 = +1 vol point).
    skew_shift : pandas.DataFrame or None
        Same shape: the change of ``skew`` where the history gives it (NaN where a series has none),
        None for a history without skew. Not used by the revaluation (see the module).
    horizon : int
        Observations (trading days) per scenario.
    mapping : pandas.DataFrame
        Index underlying: ``source`` (the series it moves with), ``beta`` (spot return = beta x the
        source's), ``how`` (``"own history"``, ``"proxy"`` or ``"beta to index"``), ``via`` (the
        chain of proxies, e.g. ``"TSLA -> SPY -> SPX"``).
    dates_dropped : int
        Dates of the series used that are not on every one of them, left out of the calendar.
    longest_step : int
        The most calendar days between two consecutive dates of the calendar (3 over a weekend; a
        hole in the history shows here, as one return spans it).
    start : pandas.Timestamp
        The first date of the calendar (the start of the first scenario).
    source : str
        The history's file.
    """

    dates: pd.DatetimeIndex
    spot_shift: pd.DataFrame
    vol_shift: pd.DataFrame
    skew_shift: pd.DataFrame | None
    horizon: int
    mapping: pd.DataFrame
    dates_dropped: int = 0
    longest_step: int = 0
    start: pd.Timestamp | None = None
    source: str = "<history>"

    def __len__(self) -> int:
        return len(self.dates)

    def block(self, lo: int, hi: int) -> HistoricalScenarios:
        """Scenarios ``lo:hi`` (a block for a worker), same mapping and horizon."""
        return HistoricalScenarios(
            dates=self.dates[lo:hi],
            spot_shift=self.spot_shift.iloc[lo:hi],
            vol_shift=self.vol_shift.iloc[lo:hi],
            skew_shift=None if self.skew_shift is None else self.skew_shift.iloc[lo:hi],
            horizon=self.horizon,
            mapping=self.mapping,
            dates_dropped=self.dates_dropped,
            longest_step=self.longest_step,
            start=self.start,
            source=self.source,
        )


@dataclass(frozen=True)
class History:
    """A validated history of spots and ATM vols per underlying (see :func:`load_history`).

    Attributes
    ----------
    frame : pandas.DataFrame
        Long form, sorted by date then underlying: ``date`` (datetime64), ``underlying``, ``spot``,
        ``atm_vol`` and, when the file has it, ``skew``.
    source : str
        The file (or ``"<frame>"``), named in errors.
    """

    frame: pd.DataFrame
    source: str = "<frame>"
    _wide: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = "<frame>") -> History:
        """A history from a DataFrame with the file's columns (validated as a file is)."""
        cols = _columns(source, frame.columns, COLUMNS, _OPTIONAL)
        return cls(
            _validate(frame[list(cols.values())].rename(columns={v: k for k, v in cols.items()}), source),
            source,
        )

    def __repr__(self) -> str:
        dates = self.frame["date"]
        return (
            f"History({self.source}: {len(self.frame)} observations of {', '.join(self.underlyings())}, "
            f"{dates.min().date()} to {dates.max().date()})"
        )

    def underlyings(self) -> list[str]:
        """The underlyings with a history, sorted."""
        return sorted(self.frame["underlying"].unique().tolist())

    def wide(self, column: str) -> pd.DataFrame:
        """``column`` (``spot``, ``atm_vol`` or ``skew``) as dates x underlyings, NaN where missing."""
        if column not in self._wide:
            self._wide[column] = self.frame.pivot(index="date", columns="underlying", values=column)
        return self._wide[column]

    def _resolve(
        self, u: str, market: Market | None, proxies: Mapping[str, tuple[str, float]], seen: tuple[str, ...]
    ) -> tuple[str, float, str, tuple[str, ...]]:
        """(source series, beta to it, how, chain) of underlying ``u``."""
        chain = (*seen, u)
        if u in seen:
            raise ValueError(f"proxies: {' -> '.join(chain)} is a cycle: a proxy must lead to a history")
        own = u in self.wide("spot").columns
        if u in proxies:
            p, beta = proxies[u]
            src, b, _, full = self._resolve(p, market, proxies, chain)
            return src, beta * b, "proxy", full
        if own:
            return u, 1.0, "own history", chain
        if market is not None and market.index is not None and u != market.index and u in market.beta:
            src, b, _, full = self._resolve(market.index, market, proxies, chain)
            return src, market.beta[u] * b, "beta to index", full
        lead = f" (reached by {' -> '.join(chain)})" if seen else ""
        raise ValueError(
            f"{self.source}: no history for {u}{lead} and no proxy: give it one "
            f"(--proxy {u}=PROXY:BETA, or a beta in the market to an index with a history)"
        )

    def scenarios(
        self,
        underlyings: Iterable[str],
        market: Market | None = None,
        *,
        horizon: int = 1,
        proxies: Mapping[str, tuple[str, float]] | None = None,
    ) -> HistoricalScenarios:
        """The historical scenarios of ``underlyings`` (see the module docstring).

        Parameters
        ----------
        underlyings : iterable of str
            The underlyings to move (a book's: ``book.underlyings()``).
        market : Market, optional
            Its ``beta`` and ``index`` map an underlying without a history to the index.
        horizon : int, default 1
            Observations (trading days) per scenario, >= 1; windows overlap.
        proxies : mapping, optional
            ``{underlying: (proxy, beta)}``: explicit proxies, which win over a history of the
            underlying's own and over the market's beta.

        Returns
        -------
        HistoricalScenarios

        Raises
        ------
        ValueError
            An underlying with neither a history nor a proxy (named), a proxy cycle, a bad beta or
            horizon, or fewer than ``horizon + 1`` common dates.
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"horizon: a number of observations >= 1, got {horizon!r}")
        horizon = int(horizon)
        proxies = dict(proxies or {})
        for u, spec in proxies.items():
            try:
                p, beta = spec
                beta = float(beta)
            except (TypeError, ValueError):
                raise ValueError(f"proxies: {u}: expected (proxy, beta), got {spec!r}") from None
            if not math.isfinite(beta):
                raise ValueError(f"proxies: {u}: the beta must be a finite number, got {beta!r}")
            proxies[u] = (str(p), beta)
        unds = sorted(dict.fromkeys(str(u) for u in underlyings))
        if not unds:
            raise ValueError("no underlyings: historical scenarios move at least one")
        rows = {u: self._resolve(u, market, proxies, ()) for u in unds}
        mapping = pd.DataFrame(
            {
                "source": [rows[u][0] for u in unds],
                "beta": [rows[u][1] for u in unds],
                "how": [rows[u][2] for u in unds],
                "via": [" -> ".join(rows[u][3]) for u in unds],
            },
            index=pd.Index(unds, name="underlying"),
        )
        sources = sorted(set(mapping["source"]))
        spot = self.wide("spot")[sources]
        vol = self.wide("atm_vol")[sources]
        union = spot.notna().any(axis=1)
        common = spot.notna().all(axis=1)
        spot, vol = spot[common], vol[common]
        if len(spot) < horizon + 1:
            raise ValueError(
                f"{self.source}: {len(spot)} dates on which {', '.join(sources)} all have an "
                f"observation: a horizon of {horizon} needs at least {horizon + 1}"
            )
        s = spot.to_numpy(dtype=np.float64)
        v = vol.to_numpy(dtype=np.float64)
        ret = s[horizon:] / s[:-horizon] - 1.0
        dvol = v[horizon:] - v[:-horizon]
        dates = pd.DatetimeIndex(spot.index[horizon:], name="date")
        col = {src: j for j, src in enumerate(sources)}
        idx = [col[src] for src in mapping["source"]]
        beta = mapping["beta"].to_numpy(dtype=np.float64)
        columns = pd.Index(unds, name="underlying")
        spot_shift = pd.DataFrame(ret[:, idx] * beta, index=dates, columns=columns)
        vol_shift = pd.DataFrame(dvol[:, idx], index=dates, columns=columns)
        skew_shift = None
        if "skew" in self.frame:
            k = self.wide("skew").reindex(columns=sources)[common].to_numpy(dtype=np.float64)
            skew_shift = pd.DataFrame((k[horizon:] - k[:-horizon])[:, idx], index=dates, columns=columns)
        return HistoricalScenarios(
            dates=dates,
            spot_shift=spot_shift,
            vol_shift=vol_shift,
            skew_shift=skew_shift,
            horizon=horizon,
            mapping=mapping,
            dates_dropped=int(union.sum() - common.sum()),
            longest_step=int(np.diff(spot.index.to_numpy(dtype="datetime64[D]")).astype(np.int64).max()),
            start=pd.Timestamp(spot.index[0]),
            source=self.source,
        )
