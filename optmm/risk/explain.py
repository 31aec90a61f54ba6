"""P&L explain: a day's P&L by full revaluation, and its explanation by the Greeks.

:func:`pnl_explain` values the book held at yesterday's market (``before``) and at today's (``after``)
with :func:`optmm.risk.exposures` (the one pricing path: contract terms, styles and dividends flow
through it), and explains the difference with yesterday's Greeks, position by position:

=================  ============================================================================
term               currency, from the ``before`` exposures (trader units converted back)
=================  ============================================================================
``delta``          delta_shares x dS
``gamma``          1/2 Gamma dS^2 = 1/2 gamma_dollars_1pct x 100 x (dS / S)^2
``vega``           vega_per_vol_point x 100 dsigma
``theta``          theta_per_day x days (calendar days between the two valuation dates)
``vanna``          vanna_shares_per_vol_point x 100 dsigma x dS
``volga``          1/2 volga_per_vol_point2 x (100 dsigma)^2
``rho``            rho_per_pct x 100 dr
``new_trades``     the trades' value at ``after`` minus what was paid: price x quantity x multiplier
``unexplained``    actual - (the seven terms) - new_trades: reported, never absorbed into a term
=================  ============================================================================

dS is the underlying's spot at ``after`` minus at ``before``; dsigma, per position, the vol at
``after`` minus the vol at ``before`` at the position's strike and expiry (each from its market's
surface, or the position's override, which does not move); dr the underlying's rate change. An option
that expires by ``after`` has no vol there: its dsigma is 0 and what it did beyond delta, gamma and
theta is unexplained. Changes of the dividend yield have no term (they are unexplained); cash paid on
stock positions is not counted (the P&L is the change of value).

With dS and dsigma of order e and dt of order e^2 (diffusion scaling), the seven terms are the
Taylor expansion of the value to second order, so ``unexplained`` is of third order: speed dS^3 / 6,
zomma dS^2 dsigma / 2, dS dsigma^2 and dsigma^3 terms, charm dS dt, veta dsigma dt, and the dr, dq
cross terms (``docs/explain.md``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optmm.book import Book, BookError, Kind
from optmm.market import Market
from optmm.risk.exposures import _not_finite, exposures
from optmm.typing import PRICE_RANGE

__all__ = ["COLUMNS", "TERMS", "TOTAL", "Explain", "Trades", "pnl_explain"]

#: The Greek terms, in the order of the table.
TERMS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "vanna", "volga", "rho")
#: The columns of :attr:`Explain.table`.
COLUMNS: tuple[str, ...] = ("actual", *TERMS, "new_trades", "unexplained")
#: The label of the table's last row.
TOTAL = "total"
_POSITION_KEYS = ("id", "underlying", "kind", "strike", "expiry", "quantity", "multiplier")


# --------------------------------------------------------------------------------------------------
# trades


def _price_problem(cell: Any, is_stock: bool) -> tuple[float, str | None]:
    """A trade's price from one cell, or the problem with it."""
    if (
        cell is None
        or (isinstance(cell, float) and math.isnan(cell))
        or (isinstance(cell, str) and not cell.strip())
    ):
        return math.nan, "missing price (the per-unit price the trade was done at)"
    if isinstance(cell, bool | np.bool_):
        return math.nan, f"not a number: {cell!r}"
    try:
        value = float(cell.strip() if isinstance(cell, str) else cell)
    except (TypeError, ValueError):
        return math.nan, f"not a number: {cell!r}"
    if not math.isfinite(value):
        return math.nan, f"must be a finite number, got {cell!r}"
    if value < 0.0 or (is_stock and value == 0.0):
        return math.nan, f"must be {'> 0 for stock' if is_stock else '>= 0'}, got {cell!r}"
    if value > PRICE_RANGE[1]:
        return math.nan, f"{value:g} is beyond {PRICE_RANGE[1]:g}: not a plausible price"
    return value, None


@dataclass(frozen=True)
class Trades:
    """The day's new trades: a book of what was traded and the price of each.

    Attributes
    ----------
    book : Book
        The trades as positions (signed quantity: > 0 bought), in the book format.
    price : ndarray of float64, shape (n,)
        Per unit: the option premium per unit of underlying (as quoted), or the price of one share
        for a stock row; the cash paid is price x quantity x multiplier.
    """

    book: Book
    price: np.ndarray

    def __post_init__(self) -> None:
        price = np.array(self.price, dtype=object).reshape(-1)
        if price.size != len(self.book):
            raise BookError(
                self.book.source, 0, "price", f"has {price.size} rows, the trades {len(self.book)}"
            )
        object.__setattr__(self, "price", self._prices(pd.Series(price)))

    def _prices(self, cells: pd.Series) -> np.ndarray:
        stock = np.asarray(self.book.kind) == Kind.STOCK
        out = np.empty(len(cells))
        for r, cell in enumerate(cells.tolist()):
            out[r], problem = _price_problem(cell, bool(stock[r]))
            if problem is not None:
                raise BookError(self.book.source, r + 1, "price", problem)
        return out

    def __len__(self) -> int:
        return len(self.book)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, source: str = "<DataFrame>") -> Trades:
        """The book columns (:meth:`Book.from_frame`) and a ``price`` column (header case-insensitive)."""
        book = Book.from_frame(df, source=source)
        return cls(book, _price_column(df, source).to_numpy(dtype=object))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trades:
        """Read trades from a ``.csv`` or ``.parquet`` file: a book with a ``price`` column.

        Raises
        ------
        BookError
            Naming the file, the row and the field (``price``: missing column, missing, not a number,
            negative, or implausibly large; any book field as :meth:`Book.load` names it).
        """
        book = Book.load(path)
        source = os.fspath(path)
        if Path(path).suffix.lower() == ".csv":
            # the header as written: pandas would rename a second "price" to "price.1"
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
            name = _price_name(header.tolist(), source)
            frame = pd.read_csv(path, usecols=[name], dtype=str, keep_default_na=False, skipinitialspace=True)
        else:
            import pyarrow.parquet as pq

            name = _price_name(pq.read_schema(path).names, source)
            frame = pq.read_table(path, columns=[name]).to_pandas()
        return cls(book, frame[name].to_numpy(dtype=object))


def _price_name(columns: Any, source: str) -> str:
    found = [str(c) for c in columns if str(c).strip().lower() == "price"]
    if not found:
        raise BookError(source, 0, "price", "missing column (each trade's per-unit price)")
    if len(found) > 1:
        raise BookError(source, 0, "price", f"duplicated column ({found[0]!r} and {found[1]!r})")
    return found[0]


def _price_column(df: pd.DataFrame, source: str) -> pd.Series:
    name = _price_name(df.columns, source)
    return df[next(c for c in df.columns if str(c) == name)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# the explain


@dataclass(frozen=True)
class Explain:
    """A day's P&L and its explanation (every amount in the markets' currency).

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by underlying (sorted; those of the book and of the trades) and a last row
        ``"total"`` (the column sums), columns :data:`COLUMNS`: ``actual`` (the full-revaluation
        change of value of the positions held at ``before``, plus ``new_trades``), the Greek terms
        :data:`TERMS`, ``new_trades`` and ``unexplained`` = actual - terms - new_trades.
    positions : pandas.DataFrame
        One row per position of the book (book order): its keys (``id``, ``underlying``, ``kind``,
        ``strike``, ``expiry``, ``quantity``, ``multiplier``), ``spot_before``, ``spot_after``,
        ``vol_before``, ``vol_after`` (NaN for stock), ``value_before``, ``value_after``, ``actual``,
        the Greek terms and ``unexplained``.
    trades : pandas.DataFrame
        One row per trade: its keys, ``price``, ``paid`` (price x quantity x multiplier),
        ``value_after`` and ``pnl`` (value_after - paid). Empty without trades.
    days : int
        Calendar days from ``before``'s valuation date to ``after``'s (the theta term's dt).
    """

    table: pd.DataFrame
    positions: pd.DataFrame
    trades: pd.DataFrame
    days: int

    def by_position(self) -> pd.DataFrame:
        """One row per position held (``row`` = ``"held"``, book order), then per trade (``"trade"``):
        ``row``, the position's keys, and :data:`COLUMNS`. A trade's ``actual`` and ``new_trades`` are
        its P&L, its Greek terms and ``unexplained`` 0; each row's terms, ``new_trades`` and
        ``unexplained`` add up to its ``actual``, and the rows of an underlying to its line of
        :attr:`table`."""
        held = self.positions[[*_POSITION_KEYS, "actual", *TERMS, "unexplained"]].copy()
        held.insert(0, "row", "held")
        held.insert(held.columns.get_loc("unexplained"), "new_trades", 0.0)
        pnl = self.trades["pnl"].to_numpy(dtype=np.float64)
        traded = self.trades[list(_POSITION_KEYS)].copy()
        traded.insert(0, "row", "trade")
        traded["actual"] = pnl
        for name in TERMS:
            traded[name] = 0.0
        traded["new_trades"] = pnl
        traded["unexplained"] = 0.0
        frames = [f for f in (held, traded) if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else held


def _check_finite(frame: pd.DataFrame, where: str) -> None:
    hit = _not_finite(frame, [str(c) for c in frame.columns])
    if hit is not None:
        raise ValueError(
            f"P&L explain: {where} {frame.index[hit[0]]!r}: {hit[1]} is not a finite number "
            "(a quantity, multiplier, strike or spot is too large for the arithmetic)"
        )


def pnl_explain(book: Book, before: Market, after: Market, trades: Trades | None = None) -> Explain:
    """The P&L of ``book`` from ``before`` to ``after``, and its explanation by the Greeks.

    Parameters
    ----------
    book : Book
        The positions held at ``before`` (yesterday's close).
    before, after : Market
        Yesterday's and today's markets; every underlying of the book in both (and of the trades in
        ``after``). ``after``'s valuation date must not be before ``before``'s.
    trades : Trades, optional
        The trades done between the two (valued at ``after``; their P&L is one column, ``new_trades``).

    Returns
    -------
    Explain
        See :class:`Explain`; the module docstring defines each term and its units.

    Raises
    ------
    ValueError
        ``after`` dated before ``before``; an underlying missing from a market (a ``BookError``
        naming the file, the row and the field); a figure that is not finite (naming the underlying
        or the position and the column).
    """
    days = int((after.valuation - before.valuation).astype("timedelta64[D]").astype(np.int64))
    if days < 0:
        raise ValueError(
            f"today's market {after.source} is dated {after.valuation}, before yesterday's {before.source} "
            f"({before.valuation})"
        )
    p0 = exposures(book, before).positions
    p1 = exposures(book, after).positions
    is_option = np.asarray(book.kind) != Kind.STOCK
    s0 = p0["spot"].to_numpy()
    ds = p1["spot"].to_numpy() - s0
    live = is_option & (p1["t"].to_numpy() > 0.0)  # an option expired by `after` has no vol there
    dvol = np.where(live, p1["vol"].to_numpy() - p0["vol"].to_numpy(), 0.0)
    rate0 = np.array([before.rate[u] for u in book.underlying], dtype=np.float64)
    rate1 = np.array([after.rate[u] for u in book.underlying], dtype=np.float64)
    dr = rate1 - rate0

    terms = {
        "delta": p0["delta_shares"].to_numpy() * ds,
        "gamma": 0.5 * p0["gamma_dollars_1pct"].to_numpy() * 100.0 * (ds / s0) ** 2,
        "vega": p0["vega_per_vol_point"].to_numpy() * (100.0 * dvol),
        "theta": p0["theta_per_day"].to_numpy() * float(days),
        "vanna": p0["vanna_shares_per_vol_point"].to_numpy() * (100.0 * dvol) * ds,
        "volga": 0.5 * p0["volga_per_vol_point2"].to_numpy() * (100.0 * dvol) ** 2,
        "rho": p0["rho_per_pct"].to_numpy() * (100.0 * dr),
    }
    actual = p1["value"].to_numpy() - p0["value"].to_numpy()
    positions = p0[list(_POSITION_KEYS)].copy()
    positions["spot_before"] = s0
    positions["spot_after"] = p1["spot"].to_numpy()
    positions["vol_before"] = np.where(is_option, p0["vol"].to_numpy(), np.nan)
    positions["vol_after"] = np.where(is_option, p1["vol"].to_numpy(), np.nan)
    positions["value_before"] = p0["value"].to_numpy()
    positions["value_after"] = p1["value"].to_numpy()
    positions["actual"] = actual
    for name in TERMS:
        positions[name] = terms[name] + 0.0  # a term of a zero move is 0, not -0.0
    positions["unexplained"] = actual - sum(terms[name] for name in TERMS)

    if trades is not None and len(trades):
        t1 = exposures(trades.book, after).positions
        paid = trades.price * np.asarray(trades.book.quantity) * np.asarray(trades.book.multiplier)
        trade_rows = t1[list(_POSITION_KEYS)].copy()
        trade_rows["price"] = trades.price
        trade_rows["paid"] = paid
        trade_rows["value_after"] = t1["value"].to_numpy()
        trade_rows["pnl"] = t1["value"].to_numpy() - paid
    else:
        trade_rows = pd.DataFrame(
            {k: pd.Series(dtype=object) for k in _POSITION_KEYS}
            | {k: pd.Series(dtype=np.float64) for k in ("price", "paid", "value_after", "pnl")}
        )
    _check_finite(positions.set_index("id")[["actual", *TERMS, "unexplained"]], "position")
    _check_finite(trade_rows.set_index("id")[["pnl"]], "trade")

    held = positions.groupby("underlying", sort=True)[["actual", *TERMS]].sum()
    new = trade_rows.groupby("underlying", sort=True)["pnl"].sum()
    names = sorted(set(held.index) | set(new.index))
    table = held.reindex(names, fill_value=0.0)
    table["new_trades"] = new.reindex(names, fill_value=0.0).astype(np.float64)
    table["unexplained"] = table["actual"] - table[list(TERMS)].sum(axis=1)
    table["actual"] = table["actual"] + table["new_trades"]
    table = table[list(COLUMNS)]
    table.loc[TOTAL] = table.sum(axis=0)
    table.index.name = "underlying"
    _check_finite(table, "underlying")
    return Explain(table=table, positions=positions, trades=trade_rows, days=days)
