"""Shape- and dtype-carrying aliases shared across optmm, the check that an input is real numbers,
and the plausible magnitudes that inputs are held to where a person or a file supplies them."""

from __future__ import annotations

import warnings
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from optmm._config import is_real_number

FloatArray: TypeAlias = npt.NDArray[np.float64]
"""float64 array; its shape is stated where it is used (e.g. ``(n_positions,)``)."""
BoolArray: TypeAlias = npt.NDArray[np.bool_]
ArrayLike: TypeAlias = npt.ArrayLike
"""Anything numpy can turn into an array: scalars, sequences, arrays."""

__all__ = [
    "MAX_MULTIPLIER",
    "MAX_QUANTITY",
    "MAX_RATE",
    "MAX_VOL",
    "MAX_YEARS",
    "MIN_VOL",
    "PRICE_RANGE",
    "ArrayLike",
    "BoolArray",
    "FloatArray",
    "RowError",
    "WrongTypeError",
    "date_array",
    "first_non_utf8",
    "real_array",
]

# Plausible magnitudes of the inputs of a book and a market (files and constructors). They are far
# beyond any real position or price, and near enough that every risk figure computed from them
# (quantity x multiplier x spot x Greeks, forwards over a century) stays well inside float64.
PRICE_RANGE = (1e-8, 1e9)
"""Spots and option strikes, in price units: from 1e-8 to 1e9."""
MAX_QUANTITY = 1e9
"""Largest |quantity| of a position (contracts, or shares for stock)."""
MAX_MULTIPLIER = 1e6
"""Largest contract multiplier."""
MAX_VOL = 10.0
"""Largest implied vol (decimal; 10.0 is 1000 vol points) of a vol override or a surface level."""
MIN_VOL = 1e-4
"""Smallest non-zero implied vol (0.01 vol points) of a vol override or a flat or table surface:
gamma grows as 1 / vol near the strike, beyond the float range for a vol like 1e-300."""
MAX_RATE = 1.0
"""Largest |rate| and |dividend yield| (continuously compounded decimals; 1.0 is 100% a year)."""
MAX_YEARS = 100.0
"""Longest time from the valuation date to an expiry, in years."""


class RowError(ValueError):
    """A file is invalid at a row: ``"<source>: row <r>: field '<field>': <problem>"``.

    ``row`` is the 1-based data row (the header is not counted; 0 for a problem with the columns or
    the whole file), ``field`` the column.
    """

    def __init__(self, source: str, row: int, field: str, problem: str) -> None:
        super().__init__(f"{source}: row {row}: field '{field}': {problem}")
        self.source = source
        self.row = row
        self.field = field
        self.problem = problem


class WrongTypeError(ValueError):
    """A value is not of the kind expected (real numbers, dates). ``index`` is the flat index of the
    first bad element (``None`` when the whole array is of the wrong type) and ``problem`` says what
    is wrong; callers add the argument's name."""

    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.problem = problem


def _describe_dtype(dtype: np.dtype) -> str:
    names = {"b": "booleans", "U": "strings", "S": "bytes", "c": "complex numbers"}
    names.update({"M": "dates (datetime64)", "m": "durations (timedelta64)", "V": "raw records"})
    return names.get(dtype.kind, f"dtype {dtype}")


def real_array(value: ArrayLike) -> np.ndarray:
    """``value`` as an array of real numbers (integer or floating dtype), without a copy if it is one.

    Booleans, strings, bytes, complex numbers, datetime64 / timedelta64 and objects other than Python
    or numpy ints and floats (``Decimal``, ``Fraction``, dates, ...) are refused with a
    :class:`WrongTypeError`: numpy would otherwise turn ``True`` into 1.0, ``"1.5"`` into 1.5,
    ``timedelta64(30, 'D')`` into 30.0 and drop an imaginary part. ``None`` in a list of numbers is
    allowed and becomes NaN (the caller's rules decide whether a missing value is valid); a Python int
    too large for a float (``10**400``) is refused.
    """
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise WrongTypeError(None, f"cannot be read as numbers ({exc})") from None
    kind = arr.dtype.kind
    if kind in "iuf":
        if isinstance(value, list | tuple) and arr.size:  # numpy makes [True, 2] the integers [1, 2]
            _refuse_bools(np.array(value, dtype=object).reshape(-1))
        return arr
    if kind != "O":
        raise WrongTypeError(None, f"must be real numbers, got {_describe_dtype(arr.dtype)}")
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.float64)
    for i, x in enumerate(flat):
        if x is None:
            out[i] = np.nan
        elif not is_real_number(x):
            raise WrongTypeError(i, f"not a real number: {x!r} ({type(x).__name__})")
        else:
            try:
                out[i] = float(x)
            except OverflowError:
                bits = int(x).bit_length()  # only a Python int overflows a float
                raise WrongTypeError(i, f"too large for a float: an integer of {bits} bits") from None
    return out.reshape(arr.shape)


def _refuse_bools(flat: np.ndarray) -> None:
    for i, x in enumerate(flat):
        if isinstance(x, bool | np.bool_):
            raise WrongTypeError(i, f"not a real number: {x!r} (bool)")


def date_array(value: ArrayLike) -> np.ndarray:
    """``value`` as datetime64[D]: datetime64 values, ``datetime.date`` / ``datetime`` objects or ISO
    strings; None, "" and NaT are missing. Refused (:class:`WrongTypeError` naming the index): numbers
    (numpy reads an integer as days since 1970) and a time of day other than midnight (it would be
    dropped)."""
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind in "biufc":
        raise WrongTypeError(
            None, f"must be dates (datetime64, datetime.date or 'YYYY-MM-DD'), got dtype {arr.dtype}"
        )
    flat = arr.reshape(-1)
    if kind in "OU":
        _require_iso(flat)
    if kind == "O":
        for i, x in enumerate(flat):
            if isinstance(x, bool | int | float | np.number | np.bool_) and not (
                isinstance(x, float | np.floating) and np.isnan(x)
            ):
                raise WrongTypeError(
                    i, f"not a date: {x!r} (expected datetime64, datetime.date or 'YYYY-MM-DD')"
                )
        flat = np.array([None if isinstance(x, float | np.floating) else x for x in flat], dtype=object)
    if kind != "M":
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a time zone, which datetime64 cannot carry
            try:
                flat = np.array(flat, dtype="datetime64")
            except (TypeError, ValueError, UserWarning, DeprecationWarning) as exc:
                raise WrongTypeError(None, f"cannot be read as dates ({exc})") from None
    days = flat.astype("datetime64[D]")
    timed = ~np.isnat(flat) & (days != flat)
    if timed.any():
        i = int(np.flatnonzero(timed)[0])
        raise WrongTypeError(
            i,
            f"has a time of day: {str(flat[i])!r} (expected a date; expiry times are not supported)",
        )
    return days.reshape(arr.shape)


def _require_iso(flat: np.ndarray) -> None:
    """Refuse text that is not an ISO date (numpy would read ``"2026"`` as 2026-01-01, ``"5"`` as the
    year 5); blank and ``"NaT"`` are missing values."""
    is_text = np.array([isinstance(x, str) for x in flat], dtype=bool) if flat.dtype == object else None
    texts = pd.Series(flat if is_text is None else flat[is_text], dtype=object)
    ok = texts.str.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?|NaT|")
    if not ok.all():
        j = int(np.flatnonzero(~ok.to_numpy(dtype=bool))[0])
        i = j if is_text is None else int(np.flatnonzero(is_text)[j])
        raise WrongTypeError(i, f"cannot parse date {str(flat[i])!r} (expected YYYY-MM-DD)")


def first_non_utf8(data: bytes) -> tuple[int, str, str] | None:
    """Where ``data`` stops being UTF-8: ``(line, byte, before)`` with the 1-based line, the bad byte
    as ``0x..`` and the text of its line before it; None if all of ``data`` is UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        before = data[line_start : exc.start].decode("utf-8", errors="replace")
        return line, "0x" + data[exc.start : exc.start + 1].hex(), before
    return None
