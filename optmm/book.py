"""The book: option and stock positions as a struct of numpy arrays, read from and written to CSV/Parquet.

A :class:`Book` is validated completely when it is built (from arrays, a DataFrame or a file): either
every row is usable or a :class:`BookError` names the file, the first bad row and the field, e.g.
``book.csv: row 7: field 'expiry': cannot parse date '2026/12/18' (expected YYYY-MM-DD)``. Nothing is
ever computed from a half-read book.

Input columns (header names are matched case-insensitively, surrounding spaces ignored):

==============  ========  ===================================================================
column          required  content
==============  ========  ===================================================================
``underlying``  yes       the underlying's name, as in the market file
``kind``        yes       ``call``, ``put`` or ``stock`` (case-insensitive)
``strike``      yes       > 0 for options; blank or 0 for stock
``expiry``      yes       ``YYYY-MM-DD`` for options; blank for stock
``quantity``    yes       signed number of contracts (shares for stock); negative = short
``multiplier``  no        > 0; blank or absent = 100 for options, 1 for stock
``id``          no        unique position id; blank or absent = ``p<row>`` (``p1``, ``p2``, ...)
``vol``         no        per-position implied-vol override (decimal, >= 0); blank = none;
                          options only
``style``       no        ``american`` or ``european`` (case-insensitive); blank or absent = the
                          underlying's default in the market; options only
``settlement``  no        ``AM`` or ``PM`` (case-insensitive); blank or absent = the underlying's
                          default in the market; options only
==============  ========  ===================================================================

Any other column is ignored. A CSV file is UTF-8, every row with as many fields as the header (a value
with a comma is quoted); a column given twice is refused. Magnitudes are held to the plausible ranges
of :mod:`optmm.typing` (strikes, quantities, multipliers, vol overrides), so that no risk figure
computed from a valid book overflows.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm._io import atomic_target
from optmm.codes import Kind
from optmm.typing import (
    MAX_MULTIPLIER,
    MAX_QUANTITY,
    MAX_VOL,
    MAX_YEARS,
    MIN_VOL,
    PRICE_RANGE,
    BoolArray,
    RowError,
    WrongTypeError,
    date_array,
    first_non_utf8,
    real_array,
)

if TYPE_CHECKING:
    from optmm.market import Market

__all__ = ["Book", "BookError", "Kind"]


_KIND_NAMES = np.array(["call", "put", "stock"], dtype=object)
_KIND_CODES = {"call": Kind.CALL, "put": Kind.PUT, "stock": Kind.STOCK}
_REQUIRED = ("underlying", "kind", "strike", "expiry", "quantity")
_OPTIONAL = ("id", "multiplier", "vol", "style", "settlement")
_TEXT_COLUMNS = ("id", "underlying", "kind", "expiry", "style", "settlement")
_TERMS = {"style": ("american", "european"), "settlement": ("AM", "PM")}
"""The contract terms a position may set, and their values (``""``: the underlying's default)."""
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAT = np.datetime64("NaT", "D")


class BookError(RowError):
    """A book is invalid. The message is ``"<source>: row <r>: field '<field>': <problem>"``.

    ``row`` is the 1-based data row (the header is not counted; 0 for a problem with the columns),
    ``field`` the column.
    """


# An issue: the field, a boolean mask over rows, and a function from a 0-based row to the problem text.
_Issue = tuple[str, np.ndarray, Callable[[int], str]]


def _known_columns(
    source: str,
    names: Iterable[Any],
    required: Sequence[str],
    optional: Sequence[str] = (),
    error: Callable[[str, int, str, str], ValueError] = BookError,
    missing: str = "missing column",
) -> dict[str, Any]:
    """The file's column (as spelled there) of each known column, by its lower-case name; a doubled
    known column or a missing required one refused as ``error(source, 0, column, problem)``."""
    found: dict[str, Any] = {}
    for name in names:
        key = str(name).strip().lower()
        if key in required or key in optional:
            if key in found:
                raise error(source, 0, key, f"duplicated column ({found[key]!r} and {name!r})")
            found[key] = name
    for key in required:
        if key not in found:
            raise error(source, 0, key, missing)
    return found


def _raise_first(source: str, issues: list[_Issue]) -> None:
    """Raise the BookError of the earliest row with an issue (ties: the earlier issue in the list)."""
    best: tuple[int, int] | None = None
    for order, (_, mask, _) in enumerate(issues):
        if mask.any():
            row = int(np.argmax(mask))
            if best is None or row < best[0]:
                best = (row, order)
    if best is not None:
        row, order = best
        field, _, problem = issues[order]
        raise BookError(source, row + 1, field, problem(row))


def _rule_issues(arrays: dict[str, np.ndarray], skip: dict[str, np.ndarray] | None = None) -> list[_Issue]:
    """The rules every book obeys, as issues; rows in ``skip[field]`` already have a parse issue."""
    skip = skip or {}
    id, underlying, kind = arrays["id"], arrays["underlying"], arrays["kind"]
    strike, expiry, quantity = arrays["strike"], arrays["expiry"], arrays["quantity"]
    multiplier, vol = arrays["multiplier"], arrays["vol"]
    terms = {name: arrays[name] for name in _TERMS}

    def unskipped(field: str, mask: np.ndarray) -> np.ndarray:
        return mask & ~skip[field] if field in skip else mask

    is_stock = kind == Kind.STOCK
    is_option = ~is_stock
    with np.errstate(invalid="ignore"):
        dup = pd.Series(id).duplicated(keep="first").to_numpy()

        def dup_problem(r: int) -> str:
            first = int(np.flatnonzero(id[:r] == id[r])[0]) + 1
            return f"duplicate id {id[r]!r} (first at row {first})"

        blank_under = (underlying == "") if underlying.size else np.zeros(0, dtype=bool)
        return [
            ("id", unskipped("id", (id == "") if id.size else np.zeros(0, bool)), lambda r: "empty id"),
            ("id", dup, dup_problem),
            ("underlying", unskipped("underlying", blank_under), lambda r: "missing underlying"),
            (
                "kind",
                unskipped("kind", ~np.isin(kind, (0, 1, 2))),
                lambda r: f"unknown kind code {int(kind[r])!r}",
            ),
            (
                "strike",
                unskipped("strike", is_option & np.isnan(strike)),
                lambda r: "missing strike (required for an option)",
            ),
            (
                "strike",
                unskipped("strike", is_option & ~np.isnan(strike) & ~(np.isfinite(strike) & (strike > 0))),
                lambda r: f"strike must be finite and > 0 for an option, got {float(strike[r])!r}",
            ),
            (
                "strike",
                unskipped(
                    "strike", is_option & np.isfinite(strike) & (strike > 0) & ~_in_price_range(strike)
                ),
                lambda r: (
                    f"strike {float(strike[r])!r} is outside the plausible range "
                    f"[{PRICE_RANGE[0]:g}, {PRICE_RANGE[1]:g}] (price units)"
                ),
            ),
            (
                "strike",
                unskipped("strike", is_stock & ~np.isnan(strike) & (strike != 0.0)),
                lambda r: f"a stock row takes no strike (blank or 0), got {float(strike[r])!r}",
            ),
            (
                "expiry",
                unskipped("expiry", is_option & np.isnat(expiry)),
                lambda r: "missing expiry (required for an option)",
            ),
            (
                "expiry",
                unskipped("expiry", is_stock & ~np.isnat(expiry)),
                lambda r: f"a stock row takes no expiry, got {str(expiry[r])!r}",
            ),
            ("quantity", unskipped("quantity", np.isnan(quantity)), lambda r: "missing quantity"),
            (
                "quantity",
                unskipped("quantity", np.isinf(quantity)),
                lambda r: f"quantity must be finite, got {float(quantity[r])!r}",
            ),
            (
                "quantity",
                unskipped("quantity", np.isfinite(quantity) & (np.abs(quantity) > MAX_QUANTITY)),
                lambda r: (
                    f"quantity {float(quantity[r])!r} is beyond the plausible magnitude {MAX_QUANTITY:g}"
                ),
            ),
            (
                "multiplier",
                unskipped("multiplier", ~(np.isfinite(multiplier) & (multiplier > 0))),
                lambda r: f"multiplier must be finite and > 0, got {float(multiplier[r])!r}",
            ),
            (
                "multiplier",
                unskipped("multiplier", np.isfinite(multiplier) & (multiplier > MAX_MULTIPLIER)),
                lambda r: (
                    f"multiplier {float(multiplier[r])!r} is beyond the plausible maximum {MAX_MULTIPLIER:g}"
                ),
            ),
            (
                "vol",
                unskipped("vol", ~np.isnan(vol) & ~(np.isfinite(vol) & (vol >= 0))),
                lambda r: f"vol override must be finite and >= 0, got {float(vol[r])!r}",
            ),
            (
                "vol",
                unskipped("vol", np.isfinite(vol) & ((vol > MAX_VOL) | ((vol > 0) & (vol < MIN_VOL)))),
                lambda r: (
                    f"vol override {float(vol[r])!r} is outside the plausible range 0 or "
                    f"[{MIN_VOL:g}, {MAX_VOL:g}] (a decimal: 0.20 is 20 vol points)"
                ),
            ),
            (
                "vol",
                unskipped("vol", is_stock & ~np.isnan(vol)),
                lambda r: f"a stock row takes no vol override, got {float(vol[r])!r}",
            ),
            *_term_issues(terms, is_stock),
        ]


def _term_issues(terms: dict[str, np.ndarray], is_stock: np.ndarray) -> list[_Issue]:
    """Unknown styles and settlements, and stock rows with one."""
    issues: list[_Issue] = []
    for name, allowed in _TERMS.items():
        values = terms[name]
        known = np.isin(values, ("", *allowed)) if values.size else np.ones(0, dtype=bool)
        unknown, on_stock = _term_problems(name, values, " or ".join(allowed))
        issues.append((name, ~known, unknown))
        issues.append((name, known & is_stock & (values != ""), on_stock))
    return issues


def _term_problems(
    name: str, values: np.ndarray, expected: str
) -> tuple[Callable[[int], str], Callable[[int], str]]:
    def unknown(r: int) -> str:
        return f"unknown {name} {values[r]!r} (expected {expected}, or blank)"

    def on_stock(r: int) -> str:
        return f"a stock row takes no {name} (leave it blank), got {values[r]!r}"

    return unknown, on_stock


def _canonical_terms(name: str, values: np.ndarray) -> np.ndarray:
    """Stripped text with the known values of term ``name`` in their canonical case (others as given)."""
    out = np.array([v.strip() for v in values], dtype=object) if values.size else np.zeros(0, dtype=object)
    for value in _TERMS[name]:
        if out.size:
            out[np.char.lower(out.astype(str)) == value.lower()] = value
    return out


# --------------------------------------------------------------------------------------------------
# parsing DataFrame columns (vectorised; a Python loop runs over the distinct values at most)


def _blank(s: pd.Series) -> np.ndarray:
    """Missing cells: NA, or text that is empty after stripping."""
    na = s.isna().to_numpy()
    if s.dtype.kind in "biufcmM":
        return na
    text = s.astype("string").str.strip()
    return na | (text == "").fillna(True).to_numpy(dtype=bool)


def _text(s: pd.Series) -> np.ndarray:
    """A column as an object array of stripped str ("" where missing); vectorised."""
    text = s.astype("string").str.strip().fillna("")
    return text.to_numpy(dtype=object)


_NUMBER_TYPES = (str, int, float, np.integer, np.floating, Decimal)
_CLEAN_NUMBER_COLUMNS = {"string", "empty", "floating", "integer", "mixed-integer-float", "decimal"}


def _numeric(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, unparsable)``: float64 values (NaN where blank or unparsable) and the unparsable mask.

    Numbers are numeric columns, or text / numbers / Decimals in an object column; anything else is
    unparsable, in particular booleans (numpy and pandas read True as 1), dates and durations (read
    as nanoseconds) and complex numbers.
    """
    kind = s.dtype.kind
    if kind in "iuf":
        return s.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(s), dtype=bool)
    missing = s.isna().to_numpy(dtype=bool)
    if kind != "O":  # booleans, datetimes, durations, complex: not numbers, whatever numpy says
        return np.full(len(s), np.nan), ~missing
    alien = np.zeros(len(s), dtype=bool)
    if pd.api.types.infer_dtype(s, skipna=True) not in _CLEAN_NUMBER_COLUMNS:
        alien = (
            s.map(lambda x: isinstance(x, bool | np.bool_) or not isinstance(x, _NUMBER_TYPES)).to_numpy(
                dtype=bool
            )
            & ~missing
        )
    blank = _blank(s)
    values = pd.to_numeric(s.where(~alien), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, (np.isnan(values) & ~blank) | alien


@dataclass(frozen=True, eq=False)
class Book:
    """Positions as a struct of arrays, one element per position (``n`` rows).

    Parameters
    ----------
    id : ndarray of object (str), shape (n,)
        Unique, non-empty position ids.
    underlying : ndarray of object (str), shape (n,)
        Underlying names (keys of the :class:`~optmm.market.Market` dicts).
    kind : ndarray of int8, shape (n,)
        :class:`Kind` codes: 0 call, 1 put, 2 stock.
    strike : ndarray of float64, shape (n,)
        Strike in price units; > 0 for options, 0.0 for stock rows.
    expiry : ndarray of datetime64[D], shape (n,)
        Expiry date of options; NaT for stock rows.
    quantity : ndarray of float64, shape (n,)
        Signed number of contracts (shares for stock); negative = short. Finite.
    multiplier : ndarray of float64, shape (n,)
        Units of the underlying per contract, > 0 (100 for a listed equity option, 1 for stock).
    vol : ndarray of float64, shape (n,)
        Per-position implied-vol override (decimal, >= 0); NaN where there is none (always for stock).
    source : str
        Where the book came from (a file name); used in error messages.
    style : ndarray of object (str), shape (n,), optional
        ``"american"`` / ``"european"`` per position, ``""`` for the underlying's default
        (:meth:`optmm.market.Market.default_style`); always ``""`` for stock. Case-insensitive in;
        default all ``""``.
    settlement : ndarray of object (str), shape (n,), optional
        ``"AM"`` / ``"PM"`` per position, ``""`` for the underlying's default
        (:meth:`optmm.market.Market.default_settlement`); always ``""`` for stock. Default all ``""``.

    Notes
    -----
    The constructor copies the arrays, converts them to the dtypes above and validates every rule
    (raising :class:`BookError` for the first bad row); a stock row's strike may be given as NaN and
    becomes 0.0. The arrays are owned by the book: treat them as read-only.
    """

    id: np.ndarray
    underlying: np.ndarray
    kind: np.ndarray
    strike: np.ndarray
    expiry: np.ndarray
    quantity: np.ndarray
    multiplier: np.ndarray
    vol: np.ndarray
    source: str = "<DataFrame>"
    style: np.ndarray | None = None
    settlement: np.ndarray | None = None
    # the text columns and the contracts numbered when the book is made (see _index_text)
    _underlying_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _term_index: dict[str, tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False, compare=False)
    _expiry_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _contract_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    _ARRAYS = (
        "id", "underlying", "kind", "strike", "expiry", "quantity", "multiplier", "vol",
        "style", "settlement",
    )  # fmt: skip

    def __post_init__(self) -> None:
        source = self.source
        converted: dict[str, np.ndarray] = {}
        for name in self._ARRAYS:
            value = getattr(self, name)
            if name in _TERMS and value is None:
                value = np.full(np.shape(self.id), "", dtype=object)
            try:
                if name in ("id", "underlying", *_TERMS):
                    arr = np.array(value, dtype=object, copy=True)
                elif name == "expiry":
                    arr = date_array(value)
                else:  # kind (its codes) and the numbers: real numbers only, never booleans or text
                    arr = np.array(real_array(value), dtype=np.float64, copy=True)
            except WrongTypeError as exc:
                raise BookError(
                    source, 0 if exc.index is None else exc.index + 1, name, exc.problem
                ) from None
            except (TypeError, ValueError) as exc:
                raise BookError(source, 0, name, f"cannot be read ({exc})") from None
            if arr.ndim != 1:
                raise BookError(source, 0, name, f"must be 1-d, got shape {arr.shape}")
            converted[name] = arr
        n = converted["id"].size
        for name, arr in converted.items():
            if arr.size != n:
                raise BookError(source, 0, name, f"has {arr.size} rows, 'id' has {n}")
        for name in ("id", "underlying", *_TERMS):
            arr = converted[name]
            if n and pd.api.types.infer_dtype(arr, skipna=False) != "string":
                bad = int(np.flatnonzero([not isinstance(x, str) for x in arr])[0])
                raise BookError(source, bad + 1, name, f"must be a str, got {arr[bad]!r}")
            if name in _TERMS:
                converted[name] = _canonical_terms(name, arr)
        kind = converted["kind"]
        known = np.isin(kind, (0, 1, 2)) if n else np.ones(0, dtype=bool)
        if not known.all():
            bad = int(np.flatnonzero(~known)[0])
            raise BookError(
                source, bad + 1, "kind", f"unknown kind code {_code_text(kind[bad])} (expected 0, 1 or 2)"
            )
        converted["kind"] = kind.astype(np.int8)
        stock = converted["kind"] == Kind.STOCK
        converted["strike"][stock & np.isnan(converted["strike"])] = 0.0
        _raise_first(source, _rule_issues(converted))
        for name, arr in converted.items():
            object.__setattr__(self, name, arr)
        self._index_text()

    @classmethod
    def _trusted(cls, arrays: dict[str, np.ndarray], source: str) -> Book:
        """Build from arrays already converted and validated (skips ``__post_init__``); terms that are
        not given are blank (the underlyings' defaults)."""
        book = object.__new__(cls)
        for name in cls._ARRAYS:
            value = arrays.get(name)
            if value is None and name in _TERMS:
                value = np.full(arrays["id"].size, "", dtype=object)
            object.__setattr__(book, name, value)
        object.__setattr__(book, "source", source)
        book._index_text()
        return book

    def _index_text(self) -> None:
        """Number the text columns the pricing groups rows by, once, when the book is made (a book is
        immutable; a million rows of text take about as long to number as to price):
        :meth:`underlying_index` and :meth:`term_index`."""
        codes, names = pd.factorize(self.underlying, sort=True)
        object.__setattr__(
            self, "_underlying_index", (np.asarray(names, dtype=object), codes.astype(np.intp))
        )
        terms: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in _TERMS:
            values = getattr(self, name)
            if values.size and (values == "").all():  # the usual case: the underlyings' defaults
                terms[name] = (np.zeros(values.size, dtype=np.intp), np.array([""], dtype=object))
            else:
                term_codes, uniques = pd.factorize(values, use_na_sentinel=False)
                terms[name] = (term_codes.astype(np.intp), np.asarray(uniques, dtype=object))
        object.__setattr__(self, "_term_index", terms)
        expiry_codes, expiry_values = pd.factorize(self.expiry.view(np.int64), use_na_sentinel=False)
        object.__setattr__(
            self,
            "_expiry_index",
            (expiry_codes.astype(np.intp), np.asarray(expiry_values, dtype=np.int64).view("datetime64[D]")),
        )
        # a contract: (underlying, kind, expiry, settlement, style, strike, vol override), numbered in
        # order of first appearance by combining the fields' codes two at a time
        strike_codes, strikes = pd.factorize(self.strike, use_na_sentinel=False)
        fields = [
            (self.kind.astype(np.int64), 3),
            (expiry_codes, len(expiry_values)),
            (terms["settlement"][0], len(terms["settlement"][1])),
            (terms["style"][0], len(terms["style"][1])),
            (strike_codes, len(strikes)),
        ]
        if not np.isnan(self.vol).all():
            vol_codes, vols = pd.factorize(self.vol, use_na_sentinel=False)
            fields.append((vol_codes, len(vols)))
        key = codes.astype(np.int64)
        for i, (field_codes, count) in enumerate(fields):
            if count > 1 or i == len(fields) - 1:
                key = pd.factorize(key * count + np.asarray(field_codes, dtype=np.int64))[0].astype(np.int64)
        top = np.maximum.accumulate(key) if key.size else key
        first = np.flatnonzero(np.r_[key.size > 0, top[1:] > top[:-1]][: key.size])  # new contracts
        object.__setattr__(self, "_contract_index", (key.astype(np.intp), first))

    # ----------------------------------------------------------------------------------------------
    # views

    def __len__(self) -> int:
        return int(self.id.size)

    def __repr__(self) -> str:
        return f"Book({len(self)} positions, {len(self.underlyings())} underlyings, source={self.source!r})"

    @property
    def has_vol_override(self) -> BoolArray:
        """Positions with a vol override, bool array of shape (n,)."""
        return ~np.isnan(self.vol)

    @property
    def is_option(self) -> BoolArray:
        """Option (call or put) positions, bool array of shape (n,)."""
        return self.kind != Kind.STOCK

    def underlyings(self) -> list[str]:
        """The distinct underlyings, sorted."""
        return self._underlying_index[0].tolist()

    def underlying_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(names, codes)``: the distinct underlyings (object array, sorted) and each row's index into
        them (intp), as ``pandas.factorize(book.underlying, sort=True)`` gives them. Numbered once, when
        the book is made: treat both as read-only."""
        return self._underlying_index

    def expiry_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)``: each row's index into the book's distinct expiries (datetime64[D], NaT
        for stock rows, in order of first appearance). Numbered once, when the book is made."""
        return self._expiry_index

    def contract_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(of_row, first)``: each row's contract (intp) and the first row of each contract. A
        contract is what a row holds: its underlying, kind, expiry, settlement, style, strike and vol
        override (every row of the underlying's stock is one contract). Rows of one contract are priced
        alike on any market. Numbered once, when the book is made: treat both as read-only."""
        return self._contract_index

    def term_index(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)`` of the contract-term column ``name`` (``"style"`` or ``"settlement"``):
        each row's index into the column's distinct values (object array, in order of first
        appearance; ``[""]`` alone when every row leaves the term to the underlying's default).
        Numbered once, when the book is made: treat both as read-only."""
        return self._term_index[name]

    # ----------------------------------------------------------------------------------------------
    # input

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, source: str = "<DataFrame>") -> Book:
        """Build and validate a book from a DataFrame of the columns in the module docstring.

        Parameters
        ----------
        df : DataFrame
            One row per position. Required columns ``underlying, kind, strike, expiry, quantity``;
            optional ``multiplier, id, vol, style, settlement``; header names are matched
            case-insensitively and any other column is ignored. Cells may be text (as read from a
            CSV) or typed values (numbers, dates / datetime64 for ``expiry``); a boolean, date,
            duration or complex number in a number column is refused (numpy and pandas would read
            True as 1).
        source : str
            Name used in error messages (the file name when reading a file).

        Returns
        -------
        Book

        Raises
        ------
        BookError
            For the first bad row (or ``row 0`` for a missing column), naming ``source``, the row and
            the field.
        """
        columns = _known_columns(source, df.columns, _REQUIRED, _OPTIONAL)
        n = len(df)

        def column(key: str) -> pd.Series:
            return df[columns[key]].reset_index(drop=True)

        issues: list[_Issue] = []
        skip: dict[str, np.ndarray] = {}

        # underlying
        underlying = _text(column("underlying"))

        # kind
        kind_series = column("kind")
        codes, uniques = pd.factorize(kind_series, use_na_sentinel=True)
        table = np.full(len(uniques) + 1, -1, dtype=np.int8)
        for i, u in enumerate(uniques):
            if isinstance(u, str):
                table[i] = _KIND_CODES.get(u.strip().lower(), -1)
        kind = table[np.where(codes < 0, len(uniques), codes)]
        bad_kind = kind < 0
        kind_text = kind_series.to_numpy(dtype=object)
        issues.append(
            (
                "kind",
                bad_kind,
                lambda r: (
                    "missing kind (expected call, put or stock)"
                    if _is_blank_cell(kind_text[r])
                    else f"unknown kind {kind_text[r]!r} (expected call, put or stock)"
                ),
            )
        )
        skip["kind"] = bad_kind

        # numbers
        def number(key: str, default: float = np.nan) -> np.ndarray:
            if key not in columns:
                return np.full(n, default)
            values, bad = _numeric(column(key))
            cells = column(key)
            issues.append((key, bad, lambda r: _not_a_number(cells.iloc[r])))
            skip[key] = bad
            return values

        strike = number("strike")
        quantity = number("quantity")
        multiplier = number("multiplier")
        vol = number("vol")
        is_stock = kind == Kind.STOCK
        strike = np.where(is_stock & np.isnan(strike) & ~skip["strike"], 0.0, strike)
        multiplier_blank = np.isnan(multiplier) & ~skip.get("multiplier", np.zeros(n, dtype=bool))
        multiplier = np.where(multiplier_blank, np.where(is_stock, 1.0, 100.0), multiplier)

        # expiry
        expiry_series = column("expiry")
        expiry, bad_date, problem_of = _parse_dates(expiry_series)
        issues.append(("expiry", bad_date, problem_of))
        skip["expiry"] = bad_date

        # id
        if "id" in columns:
            id_ = _text(column("id"))
            missing = id_ == ""
            if missing.any():
                id_[missing] = _generated_ids(n)[missing]
        else:
            id_ = _generated_ids(n)

        arrays = {
            "id": id_,
            "underlying": underlying,
            "kind": kind,
            "strike": strike,
            "expiry": expiry,
            "quantity": quantity,
            "multiplier": multiplier,
            "vol": vol,
        }
        for name in _TERMS:
            if name in columns:
                arrays[name] = _canonical_terms(name, _text(column(name)))
            else:
                arrays[name] = np.full(n, "", dtype=object)
        rules = _rule_issues(arrays, skip)
        _raise_first(source, _order_by_column(issues + rules))
        return cls._trusted(arrays, source)

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str]) -> Book:
        """Read and validate a CSV book (see the module docstring for the columns).

        Parameters
        ----------
        path : str or path-like
            The file; its path is the ``source`` named in errors.

        Returns
        -------
        Book
        """
        source = os.fspath(path)
        options: dict[str, Any] = {"keep_default_na": False, "na_values": [""], "skipinitialspace": True}
        try:
            try:
                first = pd.read_csv(path, header=None, nrows=1, dtype=str, **options)
            except pd.errors.EmptyDataError:
                return cls.from_frame(pd.DataFrame(), source=source)
            header = ["" if pd.isna(c) else str(c) for c in first.iloc[0]]
            _check_header(source, header)
            _check_field_counts(source, path, len(header))
            wanted = [i for i, c in enumerate(header) if c.strip().lower() in _REQUIRED + _OPTIONAL]
            text = [i for i in wanted if header[i].strip().lower() in _TEXT_COLUMNS]
            # Text columns stay text (ids like "007" keep their zeros); numbers are parsed by the C
            # parser, and a column holding something else arrives as text for from_frame to name.
            df = pd.read_csv(path, usecols=wanted, dtype=dict.fromkeys(text, str), **options)
        except UnicodeDecodeError:
            raise _encoding_error(source, path) from None
        except pd.errors.ParserError as exc:
            raise BookError(source, 0, "<file>", f"not a readable CSV ({exc})") from None
        return cls.from_frame(df, source=source)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> Book:
        """Read and validate a Parquet book (same columns as CSV; typed columns are accepted).

        Parameters
        ----------
        path : str or path-like
            The file; its path is the ``source`` named in errors.

        Returns
        -------
        Book
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = os.fspath(path)
        try:
            schema = pq.read_schema(path)
            wanted = [name for name in schema.names if name.strip().lower() in _REQUIRED + _OPTIONAL]
            _check_header(source, wanted)
            for name in wanted:
                _check_parquet_type(source, name, schema.field(name).type)
            df = pq.read_table(path, columns=wanted).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            problem = " ".join(str(exc).split())  # one line
            raise BookError(source, 0, "<file>", f"not a readable Parquet file ({problem})") from None
        return cls.from_frame(df, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Book:
        """Read a book, choosing the format by suffix: ``.csv``, or ``.parquet`` / ``.pq``."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            return cls.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return cls.read_parquet(path)
        raise BookError(
            os.fspath(path), 0, "<file>", f"unknown book format {suffix!r} (use .csv, .parquet or .pq)"
        )

    # ----------------------------------------------------------------------------------------------
    # output

    def to_frame(self) -> pd.DataFrame:
        """The book as a DataFrame in the input format.

        Returns
        -------
        DataFrame
            Columns ``id, underlying, kind, strike, expiry, quantity, multiplier, vol``: ``kind`` as
            ``"call"/"put"/"stock"``, ``expiry`` as an ISO date string (``""`` for stock), ``vol`` NaN
            where there is no override; then ``style`` and ``settlement`` (``""`` for the default),
            each only if some position sets it. ``Book.from_frame(book.to_frame())`` reproduces the
            book.
        """
        expiry = np.datetime_as_string(self.expiry, unit="D").astype(object)
        expiry[np.isnat(self.expiry)] = ""
        columns = {
            "id": self.id,
            "underlying": self.underlying,
            "kind": _KIND_NAMES[self.kind],
            "strike": self.strike,
            "expiry": expiry,
            "quantity": self.quantity,
            "multiplier": self.multiplier,
            "vol": self.vol,
        }
        for name in _TERMS:
            values = getattr(self, name)
            if (values != "").any():
                columns[name] = values
        return pd.DataFrame(columns)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the book as CSV, atomically (a temporary file in the same directory, then a rename).

        On any error the target is left as it was and the temporary file is removed.
        """
        frame = self.to_frame()
        with atomic_target(path, text=True) as f:
            frame.to_csv(f, index=False, lineterminator="\n")

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the book as Parquet (needs pyarrow), atomically, like :meth:`to_csv`."""
        frame = self.to_frame()
        with atomic_target(path, text=False) as f:
            frame.to_parquet(f, index=False)

    # ----------------------------------------------------------------------------------------------
    # checks

    def check_market(self, market: Market) -> None:
        """Check that ``market`` has what every position needs: a spot, and a vol surface for options;
        and that no option expires more than :data:`~optmm.typing.MAX_YEARS` after its valuation date.

        Raises
        ------
        BookError
            Naming this book's source, the first row whose underlying lacks market data (field
            ``'underlying'``) or whose expiry is too far (field ``'expiry'``).
        """
        if not len(self):
            return
        uniques, codes = self.underlying_index()
        has_spot = np.array([u in market.spot for u in uniques], dtype=bool)
        has_surface = np.array([u in market.surface for u in uniques], dtype=bool)
        expiries = self.expiry_index()[1]
        far = ~np.isnat(expiries) & ((expiries - market.valuation).astype(np.int64) > MAX_YEARS * 365)
        if has_spot.all() and has_surface.all() and not far.any():  # (the rows' checks would find nothing)
            return
        no_spot = ~has_spot[codes]
        no_surface = self.is_option & ~has_surface[codes]
        horizon = (self.expiry - market.valuation).astype(np.int64) > MAX_YEARS * 365
        issues: list[_Issue] = [
            (
                "expiry",
                self.is_option & ~np.isnat(self.expiry) & horizon,
                lambda r: (
                    f"expiry {self.expiry[r]} is more than {MAX_YEARS:g} years after the valuation date "
                    f"{market.valuation} of {market.source}"
                ),
            ),
            (
                "underlying",
                no_spot,
                lambda r: f"no market data (spot) for {self.underlying[r]!r} in {market.source}",
            ),
            (
                "underlying",
                no_surface,
                lambda r: (
                    f"no vol surface for {self.underlying[r]!r} in {market.source} (the row is an option)"
                ),
            ),
        ]
        _raise_first(self.source, issues)


# --------------------------------------------------------------------------------------------------
# helpers


_FIELD_ORDER = {name: i for i, name in enumerate(Book._ARRAYS)}


def _order_by_column(issues: list[_Issue]) -> list[_Issue]:
    """Stable sort of issues by column, so a tie on a row is reported for the leftmost field."""
    return sorted(issues, key=lambda issue: _FIELD_ORDER.get(issue[0], len(_FIELD_ORDER)))


def _check_header(source: str, header: list[str]) -> None:
    """Refuse a column of the book given twice (CSV readers would rename or drop the second)."""
    seen: dict[str, str] = {}
    for name in header:
        key = name.strip().lower()
        if key in _REQUIRED or key in _OPTIONAL:
            if key in seen:
                raise BookError(source, 0, key, f"duplicated column ({seen[key]!r} and {name!r})")
            seen[key] = name


def _check_field_counts(source: str, path: str | os.PathLike[str], n_fields: int) -> None:
    """Refuse a CSV row with more or fewer fields than the header: pandas would silently drop the
    extra ones (an unquoted ``0,175`` would read as 0) or fill the missing ones with blanks. Arrow's
    reader checks the count of every row at C speed; only on a mismatch is the file scanned again, in
    Python, to name the row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(n_fields)]
    try:
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                include_columns=names[:1], column_types={names[0]: pa.string()}
            ),
        )
    except pa.ArrowInvalid as exc:
        if "columns" not in str(exc):
            return  # something else: the pandas reader reports it
    else:
        return
    header: list[str] = []
    with open(path, newline="", encoding="utf-8") as f:
        row = 0
        for record in csv.reader(f, skipinitialspace=True):  # as the pandas reader
            if not record:
                continue  # blank line: skipped by the readers
            if row == 0:
                header = record
            elif len(record) != n_fields:
                break
            row += 1
        else:
            return
    if len(record) > n_fields:
        extra = ",".join(record[n_fields:])
        raise BookError(
            source,
            row,
            header[-1].strip(),
            f"the row has {len(record)} fields, the header {n_fields}: extra {extra!r} after the last "
            f'column (quote a value that contains a comma, e.g. "0,175")',
        )
    raise BookError(
        source,
        row,
        header[len(record)].strip(),
        f"the row has {len(record)} fields, the header {n_fields}: this field and those after it are missing",
    )


def _encoding_error(source: str, path: str | os.PathLike[str]) -> BookError:
    """The BookError naming the row (and field) of the first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    where = first_non_utf8(data)
    if where is None:
        return BookError(source, 0, "<file>", "not UTF-8 text")
    line, byte, before = where
    problem = f"not UTF-8 text: byte {byte} on line {line} (save the file as UTF-8)"
    if line == 1:
        return BookError(source, 0, "<header>", problem)
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = next(csv.reader([first_line], skipinitialspace=True))
    column = len(next(csv.reader([before], skipinitialspace=True))) - 1 if before else 0
    field = header[column].strip() if column < len(header) else f"<field {column + 1}>"
    return BookError(source, line - 1, field, problem)


def _check_parquet_type(source: str, name: str, type_: Any) -> None:
    """Refuse a Parquet column whose type cannot hold what the column means."""
    import pyarrow as pa

    key = name.strip().lower()
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_null(type_):
        return
    text = pa.types.is_string(type_) or pa.types.is_large_string(type_)
    if key in ("strike", "quantity", "multiplier", "vol"):
        ok = pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
        expected = "numbers (integer, floating point or decimal)"
    elif key == "expiry":
        ok = text or pa.types.is_date(type_) or pa.types.is_timestamp(type_)
        expected = "dates, timestamps or 'YYYY-MM-DD' text"
    elif key == "id":
        ok = text or pa.types.is_integer(type_)
        expected = "text or integers"
    else:
        ok = text
        expected = "text"
    if not ok:
        raise BookError(source, 0, key, f"the Parquet column {name!r} has type {type_}; expected {expected}")


def _not_a_number(cell: Any) -> str:
    if isinstance(cell, np.generic):
        cell = cell.item()
    if isinstance(cell, str):
        return f"not a number: {cell!r}"
    return f"not a number: {cell!r} (a {type(cell).__name__})"


def _code_text(code: float) -> str:
    return str(int(code)) if float(code).is_integer() else repr(float(code))


def _in_price_range(x: np.ndarray) -> np.ndarray:
    """Where ``x`` (finite, > 0) is within the plausible :data:`~optmm.typing.PRICE_RANGE`."""
    return (x >= PRICE_RANGE[0]) & (x <= PRICE_RANGE[1])


def _is_blank_cell(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or bool(pd.isna(value))


def _generated_ids(n: int) -> np.ndarray:
    """``p1, p2, ..., pn`` as an object array (vectorised)."""
    return np.char.add("p", np.arange(1, n + 1).astype(str)).astype(object)


def _parse_dates(s: pd.Series) -> tuple[np.ndarray, np.ndarray, Callable[[int], str]]:
    """Parse an expiry column; returns datetime64[D] values (NaT where blank or bad), the bad mask and
    a function giving the problem of a bad row. Only distinct values are looked at one by one."""
    if s.dtype.kind == "M":
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)
        full = s.to_numpy(dtype="datetime64[ns]")
        days = full.astype("datetime64[D]")
        bad = ~np.isnat(full) & (days != full)
        return days, bad, lambda r: f"has a time of day: {str(full[r])!r} (expected a date)"
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    nu = len(uniques)
    parsed = np.full(nu + 1, _NAT)  # the extra slot is for missing cells (code -1)
    problems: dict[int, str] = {}
    text_idx: list[int] = []
    texts: list[str] = []
    for i, u in enumerate(uniques):
        if isinstance(u, str):
            u = u.strip()
            if u == "":
                continue
            if _ISO_DATE.fullmatch(u):
                text_idx.append(i)
                texts.append(u)
            else:
                problems[i] = f"cannot parse date {u!r} (expected YYYY-MM-DD)"
        elif isinstance(u, pd.Timestamp | np.datetime64) or hasattr(u, "year"):
            stamp = pd.Timestamp(u)
            if stamp.tz is not None:
                stamp = stamp.tz_localize(None)
            if stamp != stamp.normalize():
                problems[i] = f"has a time of day: {str(u)!r} (expected a date)"
            else:
                parsed[i] = np.datetime64(stamp.date(), "D")
        else:
            problems[i] = f"cannot parse date {u!r} (expected YYYY-MM-DD)"
    if texts:
        conv = pd.to_datetime(pd.Series(texts, dtype=object), format="%Y-%m-%d", errors="coerce")
        days = conv.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
        for i, text, day in zip(text_idx, texts, days, strict=True):
            if np.isnat(day):
                problems[i] = f"cannot parse date {text!r} (expected YYYY-MM-DD)"
            else:
                parsed[i] = day
    codes = np.where(codes < 0, nu, codes)
    bad_unique = np.zeros(nu + 1, dtype=bool)
    bad_unique[list(problems)] = True
    return parsed[codes], bad_unique[codes], lambda r: problems[int(codes[r])]
