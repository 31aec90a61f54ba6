"""The pieces of the report's HTML: escaping, figures as people read them, tables.

Figures are written with thousands separators and, for amounts that can go either way (P&L,
exposures), an explicit sign; a column is shown at one precision (whole currency units when its
largest magnitude is 100 or more, else 2 decimals, else 4 below 1). A figure that is not a finite
number is never written: it raises ``ValueError`` naming the table, the row and the column, unless
the column says what a missing value means (``Column.missing``, e.g. "no soft limit"), in which
case a missing value (None, NaN) shows as a dash with that meaning as its tooltip. Infinities are
always an error.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["KINDS", "Blank", "Column", "decimals_for", "esc", "figure", "pct_shock", "pts_shock", "table"]

DASH = "\u2014"


@dataclass(frozen=True)
class Blank:
    """A cell left empty on purpose, and why (shown as a dash with ``reason`` as its tooltip): e.g.
    share counts on the book's line, which do not add across underlyings."""

    reason: str


def esc(text: Any) -> str:
    """``text`` as HTML text or an attribute value (``&``, ``<``, ``>`` and quotes escaped)."""
    return html.escape(str(text), quote=True)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def figure(value: Any, *, decimals: int = 0, signed: bool = False, where: str = "value") -> str:
    """A finite number with thousands separators, at ``decimals`` decimals, with a ``+`` for a
    positive figure when ``signed``; no ``-0``.

    Raises
    ------
    ValueError
        ``value`` is not a finite number: the message starts with ``where``.

    Examples
    --------
    >>> figure(-1234567.8)
    '-1,234,568'
    >>> figure(12.5, decimals=2, signed=True)
    '+12.50'
    >>> figure(-0.001, decimals=2, signed=True)
    '0.00'
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: {x!r} is not a finite number")
    text = f"{x:{'+' if signed else ''},.{decimals}f}"
    if not text.strip("+-0.,"):  # rounds to zero: no sign
        text = text.lstrip("+-")
    return text


def pct_shock(x: float) -> str:
    """A relative spot shock in percent, to 4 significant digits: ``-0.12`` -> ``-12%``,
    ``0.0495937`` -> ``+4.959%``, ``0`` -> ``0%``."""
    v = float(f"{100.0 * float(x):.4g}") + 0.0
    return f"{v:+g}%" if v else "0%"


def pts_shock(x: float) -> str:
    """An absolute vol shock in vol points, to 4 significant digits: ``0.05`` -> ``+5 pt``."""
    v = float(f"{100.0 * float(x):.4g}") + 0.0
    return f"{v:+g} pt" if v else "0 pt"


def decimals_for(values: Sequence[float] | Any) -> int:
    """Whole units for a column whose largest magnitude is >= 100 (or 0), 2 decimals from 1, else 4."""
    top = max((abs(v) for v in values), default=0.0)
    return 0 if top >= 100.0 or top == 0.0 else 2 if top >= 1.0 else 4


def _date(value: Any) -> str:
    ts = pd.Timestamp(value)
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat(sep=" ")


#: How a column shows its values: ``text`` as it is; ``amount`` signed with a precision by the
#: column's magnitude (P&L, exposures); ``level`` the same without a sign (limits, VaR); ``price``
#: and ``ratio`` 2 decimals; ``percent`` a number already in percent, 1 decimal; ``fraction`` a
#: decimal shown in percent (0.99 -> 99%); ``spot`` and ``vol`` shocks; ``date``.
KINDS = ("text", "amount", "level", "price", "ratio", "percent", "fraction", "spot", "vol", "date", "count")


@dataclass(frozen=True)
class Column:
    """One column of a table: the key of its values, its header (a label and a unit line), how its
    values are shown (:data:`KINDS`, ``decimals`` to fix an amount's precision), and what a missing
    value means (None: it is an error)."""

    key: str
    label: str
    unit: str = ""
    kind: str = "amount"
    missing: str | None = None
    tip: str = ""
    decimals: int | None = None  # amounts and levels: None = by the column's magnitude

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.key!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")


def _finite(values: Sequence[Any]) -> list[float]:
    """The finite numbers among a column's values (blanks, missing and non-numbers left out)."""
    finite = []
    for v in values:
        if isinstance(v, Blank) or _is_missing(v):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue  # reported, with its row, when the cell is written
        if math.isfinite(x):
            finite.append(x)
    return finite


def _formatter(col: Column, values: Sequence[Any], where: str) -> Callable[[Any, str], str]:
    d = 0  # the decimals of an amount or a level: by the column's magnitude unless the column sets them
    if col.kind in ("amount", "level"):
        d = decimals_for(_finite(values)) if col.decimals is None else col.decimals
    kind = col.kind

    def fmt(v: Any, row: str) -> str:
        at = f"{where}: row {row!r}, column {col.key!r}"
        if kind == "text":
            return "" if _is_missing(v) else str(v)
        if kind == "date":
            if _is_missing(v):
                raise ValueError(f"{at}: missing date")
            return _date(v)
        if kind == "amount":
            return figure(v, decimals=d, signed=True, where=at)
        if kind == "level":
            return figure(v, decimals=d, where=at)
        if kind in ("price", "ratio"):
            return figure(v, decimals=2, where=at)
        if kind == "count":
            return figure(v, where=at)
        if kind == "percent":
            return figure(v, decimals=1, where=at) + "%"
        if kind == "fraction":
            return f"{figure(100.0 * float(v), decimals=2, where=at).rstrip('0').rstrip('.')}%"
        figure(v, decimals=2, where=at)  # the finiteness check and its message
        return pct_shock(v) if kind == "spot" else pts_shock(v)

    return fmt


def _header(col: Column) -> str:
    unit = f'<span class="unit">{esc(col.unit)}</span>' if col.unit else ""
    tip = f' title="{esc(col.tip)}"' if col.tip else ""
    return f'<th scope="col"{tip}><span class="label">{esc(col.label)}</span>{unit}</th>'


def table(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    columns: Sequence[Column],
    *,
    where: str,
    row_class: Callable[[Mapping[str, Any]], str] | None = None,
    cell_class: Callable[[Mapping[str, Any], Column], str] | None = None,
    cell_style: Callable[[Mapping[str, Any], Column], str] | None = None,
) -> str:
    """An HTML table of ``rows`` (mappings, or a frame's records) in ``columns``.

    Numbers are right-aligned, negative ones marked (class ``neg``); the first column is the row's
    header; a :class:`Blank` value shows as a dash with its reason. ``where`` names the table in
    errors; ``row_class``, ``cell_class`` and ``cell_style`` add a class to a row, a class and an
    inline style to a cell.

    Raises
    ------
    ValueError
        A figure that is not a finite number, or missing where its column allows none: the message
        names ``where``, the row (its first column) and the column.
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    fmts = [_formatter(c, [r.get(c.key) for r in records], where) for c in columns]
    head = "".join(_header(c) for c in columns)
    body = []
    for r in records:
        name = str(r.get(columns[0].key, ""))
        cells = []
        for j, (col, fmt) in enumerate(zip(columns, fmts, strict=True)):
            v = r.get(col.key)
            classes = []
            if col.kind != "text":
                classes.append("num")
            if isinstance(v, Blank) or (col.missing is not None and _is_missing(v)):
                reason = v.reason if isinstance(v, Blank) else col.missing
                text, tip = DASH, f' title="{esc(reason)}"'
                classes.append("missing")
            else:
                if _is_missing(v) and col.kind != "text":
                    raise ValueError(f"{where}: row {name!r}, column {col.key!r}: missing value")
                text, tip = fmt(v, name), ""
                if text.startswith("-") and col.kind in ("amount", "level"):
                    classes.append("neg")
            if cell_class is not None and (more := cell_class(r, col)):
                classes.append(more)
            style = cell_style(r, col) if cell_style is not None else ""
            extra = f' style="{esc(style)}"' if style else ""
            cls = f' class="{" ".join(classes)}"' if classes else ""
            tag = "th" if j == 0 else "td"
            scope = ' scope="row"' if j == 0 else ""
            cells.append(f"<{tag}{scope}{cls}{tip}{extra}>{esc(text)}</{tag}>")
        rc = row_class(r) if row_class is not None else ""
        body.append(f"<tr{f' class={chr(34)}{rc}{chr(34)}' if rc else ''}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
