"""Option-chain and implied-vol files (CSV or Parquet), validated like books.

Chain columns (layout and units in ``docs/fitting.md``):

=================  ========  ===============================================================
column             required  meaning
=================  ========  ===============================================================
``timestamp``      yes       quote time, ISO ``YYYY-MM-DDTHH:MM[:SS]``
``underlying``     yes       underlying name
``expiry``         yes       ``YYYY-MM-DD`` (settles at 16:00) or ``YYYY-MM-DDTHH:MM``
``strike``         yes       > 0
``kind``           yes       ``call``/``put`` (or ``C``/``P``)
``bid``, ``ask``   yes       option quotes, >= 0 (blank: no quote)
``spot``           one of    the underlying's price; or ``underlying_bid`` and
                             ``underlying_ask`` (their mid is used)
``rate``           no        continuously compounded rate to the expiry (default 0)
``style``          no        ``european`` (default) or ``american``
``bid_size``, ``ask_size``, ``last``, ``volume``, ``open_interest``: optional, numbers when given
=================  ========  ===============================================================

Errors are :class:`ChainError` naming the file, the 1-based data row and the field. Rows that are
valid but unusable are dropped and counted in :attr:`Chain.dropped`, never silently: a missing
quote (blank bid or ask), a zero bid, a crossed quote (bid > ask), a stale quote (a timestamp more
than ``stale_seconds`` before the chain's newest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from optmm.book import BookError
from optmm.typing import FloatArray
from optmm.units import SECONDS_PER_YEAR

__all__ = ["Chain", "ChainError", "VolQuotes", "read_chain", "read_vols"]

SETTLEMENT_HOUR = 16  # an expiry given as a date settles at 16:00
DEFAULT_STALE_SECONDS = 300.0
_OPTIONAL_NUMBERS = ("bid_size", "ask_size", "last", "volume", "open_interest")


class ChainError(BookError):
    """An invalid chain or vols file: ``"<source>: row <r>: field '<field>': <problem>"`` (row 0:
    the columns), the same form and attributes as a book's errors."""


@dataclass(frozen=True)
class Chain:
    """The usable quotes of an option chain, one entry per row kept (arrays of shape (n,)).

    Attributes
    ----------
    underlying : ndarray of str
    expiry : ndarray of datetime64[s]
        Settlement times.
    strike, bid, ask, spot, rate : ndarray of float64
        ``spot`` is the underlying's price (the mid of its bid and ask where those were given).
    is_call, american : ndarray of bool
    timestamp : numpy.datetime64
        The chain's newest quote time (``datetime64[s]``): times to expiry are measured from it.
    dropped : dict[str, int]
        Rows dropped, by reason: ``no_quote``, ``zero_bid``, ``crossed``, ``stale``.
    source : str
    mid : ndarray of float64 or None
        The mid of each row where it is not the midpoint of ``bid`` and ``ask`` (American quotes
        converted to European-equivalent prices, the mid converted on its own); None: the midpoint.
    """

    underlying: np.ndarray
    expiry: np.ndarray
    strike: FloatArray
    is_call: np.ndarray
    bid: FloatArray
    ask: FloatArray
    spot: FloatArray
    rate: FloatArray
    american: np.ndarray
    timestamp: np.datetime64
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = "<Chain>"
    mid: FloatArray | None = None

    def mids(self, rows: np.ndarray) -> FloatArray:
        """The mids of ``rows``: :attr:`mid` where given, else ``(bid + ask) / 2``."""
        if self.mid is not None:
            return self.mid[rows]
        return 0.5 * (self.bid[rows] + self.ask[rows])

    def years(self, expiry: np.ndarray) -> FloatArray:
        """Years (ACT/365, to the second) from :attr:`timestamp` to ``expiry`` (datetime64[s])."""
        secs = (np.asarray(expiry, dtype="datetime64[s]") - self.timestamp).astype(np.int64)
        return secs.astype(np.float64) / SECONDS_PER_YEAR


@dataclass(frozen=True)
class VolQuotes:
    """Implied vols given directly (``optmm fit --vols``); arrays of shape (n,).

    ``forward`` and ``rate`` are NaN where not given; ``weight`` is 1 where not given.
    """

    underlying: np.ndarray
    expiry: np.ndarray
    strike: FloatArray
    vol: FloatArray
    forward: FloatArray
    rate: FloatArray
    weight: FloatArray
    source: str = "<VolQuotes>"


def _frame(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, str]:
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(source)
        else:
            df = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise ChainError(source, 0, "<file>", "no such file") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ChainError(source, 0, "<file>", f"cannot be read ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df, source


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


class _Columns:
    """Typed, validated access to a frame's columns, naming the first bad row in errors."""

    def __init__(self, df: pd.DataFrame, source: str) -> None:
        self.df = df
        self.source = source

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.df.columns:
                raise ChainError(self.source, 0, name, "missing column")

    def has(self, name: str) -> bool:
        return name in self.df.columns

    def numbers(self, name: str, *, blank_ok: bool = False, low: float | None = None) -> FloatArray:
        out = np.full(len(self.df), np.nan)
        if not self.has(name):
            return out
        for i, value in enumerate(self.df[name].tolist()):
            if _blank(value):
                if not blank_ok:
                    raise ChainError(self.source, i + 1, name, "missing")
                continue
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ChainError(self.source, i + 1, name, f"not a number: {value!r}") from None
            if not np.isfinite(x):
                raise ChainError(self.source, i + 1, name, f"must be finite, got {value!r}")
            if low is not None and x < low:
                raise ChainError(self.source, i + 1, name, f"must be >= {low:g}, got {value!r}")
            out[i] = x
        return out

    def refuse(self, name: str, mask: np.ndarray, problem: Callable[[int], str]) -> None:
        """Refuse the first row where ``mask`` holds, ``problem(i)`` saying what is wrong with row ``i``."""
        if mask.any():
            i = int(np.argmax(mask))
            raise ChainError(self.source, i + 1, name, problem(i))

    def positive(self, name: str, values: FloatArray) -> None:
        """Refuse the first of ``values`` (column ``name``) that is <= 0; NaN (a blank) passes."""
        self.refuse(name, values <= 0, lambda i: f"must be > 0, got {float(values[i])!r}")

    def texts(self, name: str) -> np.ndarray:
        values = []
        for i, value in enumerate(self.df[name].tolist()):
            if _blank(value):
                raise ChainError(self.source, i + 1, name, "missing")
            values.append(str(value).strip())
        return np.array(values, dtype=object)

    def times(self, name: str, *, date_hour: int | None) -> np.ndarray:
        out = np.empty(len(self.df), dtype="datetime64[s]")
        for i, value in enumerate(self.df[name].tolist()):
            text = "" if _blank(value) else str(value).strip()
            try:
                if len(text) == 10 and date_hour is not None:
                    t = np.datetime64(text, "D").astype("datetime64[s]") + np.timedelta64(date_hour, "h")
                else:
                    t = np.datetime64(pd.Timestamp(text).tz_localize(None).to_datetime64(), "s")
            except (ValueError, TypeError):
                shape = "YYYY-MM-DD or YYYY-MM-DDTHH:MM" if date_hour is not None else "YYYY-MM-DDTHH:MM:SS"
                raise ChainError(
                    self.source, i + 1, name, f"cannot parse {text!r} (expected {shape})"
                ) from None
            if np.isnat(t):
                raise ChainError(self.source, i + 1, name, "missing")
            out[i] = t
        return out


def read_chain(path: str | os.PathLike[str], *, stale_seconds: float = DEFAULT_STALE_SECONDS) -> Chain:
    """Read and validate an option-chain file (CSV, or Parquet by its ``.parquet`` suffix).

    Parameters
    ----------
    path : str or path-like
    stale_seconds : float
        Rows quoted more than this before the newest ``timestamp`` are dropped as stale.

    Returns
    -------
    Chain
        The usable rows; :attr:`Chain.dropped` counts the others by reason.

    Raises
    ------
    ChainError
        For a missing column, an unparseable or out-of-range value, an unknown ``kind`` or
        ``style``, an expiry at or before its quote time, or a chain with no usable quote.
    """
    df, source = _frame(path)
    cols = _Columns(df, source)
    cols.require("timestamp", "underlying", "expiry", "strike", "kind", "bid", "ask")
    if not cols.has("spot") and not (cols.has("underlying_bid") and cols.has("underlying_ask")):
        raise ChainError(
            source, 0, "spot", "missing column (give spot, or underlying_bid and underlying_ask)"
        )
    if len(df) == 0:
        raise ChainError(source, 0, "<file>", "no rows")
    stamp = cols.times("timestamp", date_hour=None)
    underlying = cols.texts("underlying")
    expiry = cols.times("expiry", date_hour=SETTLEMENT_HOUR)
    cols.refuse("expiry", expiry <= stamp, lambda i: f"{expiry[i]} is not after the quote time {stamp[i]}")
    strike = cols.numbers("strike")
    cols.positive("strike", strike)
    kinds = cols.texts("kind")
    is_call = np.zeros(len(df), dtype=bool)
    for i, kind in enumerate(kinds):
        low = kind.lower()
        if low in ("call", "c"):
            is_call[i] = True
        elif low not in ("put", "p"):
            raise ChainError(source, i + 1, "kind", f"unknown kind {kind!r} (expected call or put)")
    bid = cols.numbers("bid", blank_ok=True, low=0.0)
    ask = cols.numbers("ask", blank_ok=True, low=0.0)
    if cols.has("spot"):
        spot = cols.numbers("spot", low=0.0)
    else:
        ub = cols.numbers("underlying_bid", low=0.0)
        ua = cols.numbers("underlying_ask", low=0.0)
        cols.refuse("underlying_bid", ub > ua, lambda i: f"{ub[i]!r} is above underlying_ask {ua[i]!r}")
        spot = 0.5 * (ub + ua)
    cols.refuse("spot", spot <= 0, lambda i: "must be > 0")
    rate = cols.numbers("rate") if cols.has("rate") else np.zeros(len(df))
    american = np.zeros(len(df), dtype=bool)
    if cols.has("style"):
        for i, style in enumerate(cols.texts("style")):
            if style.lower() == "american":
                american[i] = True
            elif style.lower() != "european":
                raise ChainError(
                    source, i + 1, "style", f"unknown style {style!r} (expected european or american)"
                )
    for name in _OPTIONAL_NUMBERS:
        cols.numbers(name, blank_ok=True, low=0.0)  # validated when given; not used by the fit

    newest = stamp.max()
    reasons = {
        "no_quote": np.isnan(bid) | np.isnan(ask),
        "zero_bid": ~np.isnan(bid) & (bid <= 0.0),
        "crossed": bid > ask,
        "stale": (newest - stamp).astype(np.int64) > stale_seconds,
    }
    drop = np.zeros(len(df), dtype=bool)
    dropped: dict[str, int] = {}
    for reason, mask in reasons.items():  # each row counted once, under its first reason
        dropped[reason] = int(np.sum(mask & ~drop))
        drop |= mask
    keep = ~drop
    if not keep.any():
        raise ChainError(source, 0, "bid", f"no usable quote (dropped: {dropped})")
    return Chain(
        underlying=underlying[keep],
        expiry=expiry[keep],
        strike=strike[keep],
        is_call=is_call[keep],
        bid=bid[keep],
        ask=ask[keep],
        spot=spot[keep],
        rate=rate[keep],
        american=american[keep],
        timestamp=newest,
        dropped=dropped,
        source=source,
    )


def read_vols(path: str | os.PathLike[str]) -> VolQuotes:
    """Read implied vols: columns ``underlying, expiry, strike, implied_vol`` and optional
    ``forward, rate, weight`` (CSV, or Parquet by suffix). Errors as :func:`read_chain`."""
    df, source = _frame(path)
    cols = _Columns(df, source)
    cols.require("underlying", "expiry", "strike", "implied_vol")
    if len(df) == 0:
        raise ChainError(source, 0, "<file>", "no rows")
    underlying = cols.texts("underlying")
    expiry = cols.times("expiry", date_hour=SETTLEMENT_HOUR)
    strike = cols.numbers("strike")
    vol = cols.numbers("implied_vol")
    cols.positive("strike", strike)
    cols.positive("implied_vol", vol)
    forward = cols.numbers("forward", blank_ok=True)
    cols.positive("forward", forward)
    weight = cols.numbers("weight", blank_ok=True, low=0.0)
    weight = np.where(np.isnan(weight), 1.0, weight)
    return VolQuotes(
        underlying=underlying,
        expiry=expiry,
        strike=strike,
        vol=vol,
        forward=forward,
        rate=cols.numbers("rate", blank_ok=True),
        weight=weight,
        source=source,
    )
