"""Bad input of every kind the reliability review tried, and its neighbours: each is refused with one
clear line naming the file (or argument), the row (or index) and the field, never read as a wrong
figure, never a traceback of another type, never a NaN or inf result.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import shutil
import tomllib
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import assert_usage_error, run

from optmm.book import Book, BookError
from optmm.greeks import bsm_greeks, bsm_price, implied_vol
from optmm.market import Market, MarketError, _MarketReader
from optmm.surface import FlatSurface, SurfaceError, SVISurface, TableSurface

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BOOK = ROOT / "scenarios" / "examples" / "book.csv"
EXAMPLE_MARKET = ROOT / "scenarios" / "examples" / "market.toml"
HEADER = "id,underlying,kind,strike,expiry,quantity,multiplier,vol"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def refused(exc: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --------------------------------------------------------------------------------------------------
# CSV structure


@pytest.mark.parametrize(
    ("rows", "row", "field", "fragment"),
    [
        # an unquoted decimal comma in the last column: 0,175 must not be read as 0.0
        (["a,SPY,put,560,2026-12-18,-50,,", "b,SPY,put,580,2026-11-27,-25,,0,175"], 2, "vol", "'175'"),
        # in the middle: every later field would shift
        (["a,SPY,put,1,560,2026-12-18,-50,,"], 1, "vol", "9 fields"),
        # on the first data row (pandas would take the first column as an index)
        (["a,SPY,put,560,2026-12-18,-50,,,x", "b,SPY,put,580,2026-11-27,-25,,"], 1, "vol", "'x'"),
        # fewer fields: pandas would fill them with blanks
        (["a,SPY,put,560,2026-12-18,-50,,", "b,SPY,put,580,2026-11-27"], 2, "quantity", "5 fields"),
        (["a,SPY,put,560,2026-12-18,-50,100"], 1, "vol", "7 fields"),
        # blank lines are skipped and not counted as rows
        (["a,SPY,put,560,2026-12-18,-50,,", "", "b,SPY,put,580"], 2, "expiry", "4 fields"),
    ],
)
def test_csv_rows_with_more_or_fewer_fields_than_the_header(
    tmp_path: Path, rows: list[str], row: int, field: str, fragment: str
) -> None:
    path = write(tmp_path, "book.csv", "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(BookError) as exc:
        Book.read_csv(path)
    assert (exc.value.row, exc.value.field) == (row, field)
    refused(exc, str(path), "the header 8", fragment)


def test_csv_quoted_comma_is_one_field(tmp_path: Path) -> None:
    path = write(tmp_path, "book.csv", f'{HEADER}\n"a,1",SPY,put,560,2026-12-18,-50,,"0.175"\n')
    book = Book.read_csv(path)
    assert book.id.tolist() == ["a,1"] and book.vol.tolist() == [0.175]


def test_csv_quoted_comma_after_a_space_is_one_field(tmp_path: Path) -> None:
    path = write(tmp_path, "book.csv", f'{HEADER}\na, SPY, put, 560, 2026-12-18, -50, , "0,175"\n')
    with pytest.raises(BookError, match="not a number: '0,175'"):
        Book.read_csv(path)  # one field (quoted), which is not a number; not a row cut short
    path = write(tmp_path, "book.csv", f'{HEADER}\n"a,1", SPY, put, 560, 2026-12-18, -50, , 0.175\n')
    assert Book.read_csv(path).id.tolist() == ["a,1"]


@pytest.mark.parametrize("second", ["quantity", "Quantity", " quantity "])
def test_csv_duplicate_column_is_refused(tmp_path: Path, second: str) -> None:
    path = write(
        tmp_path,
        "book.csv",
        f"underlying,kind,strike,expiry,quantity,{second}\nSPY,put,560,2026-12-18,-50,7\n",
    )
    with pytest.raises(BookError) as exc:
        Book.read_csv(path)
    assert (exc.value.row, exc.value.field) == (0, "quantity")
    refused(exc, "duplicated column")


def test_csv_duplicate_of_an_ignored_column_is_harmless(tmp_path: Path) -> None:
    path = write(
        tmp_path, "book.csv", "note,underlying,kind,strike,expiry,quantity,note\nx,SPY,stock,,,5,y\n"
    )
    assert Book.read_csv(path).quantity.tolist() == [5.0]


@pytest.mark.parametrize(
    ("content", "row", "field", "line"),
    [
        (
            f"{HEADER}\na,SPY,put,560,2026-12-18,-50,,\nb,SP\xe9Y,put,580,2026-11-27,-25,,\n",
            2,
            "underlying",
            3,
        ),
        (f"{HEADER}\na,SPY,put,560,2026-12-18,-50,,0.2\xb5\n", 1, "vol", 2),
        ("id,underlying,kind,strike,expiry,quantit\xe9\n", 0, "<header>", 1),
    ],
)
def test_csv_not_utf8_names_file_row_and_field(
    tmp_path: Path, content: str, row: int, field: str, line: int
) -> None:
    path = write(tmp_path, "book.csv", content.encode("latin-1"))
    with pytest.raises(BookError) as exc:
        Book.read_csv(path)
    assert (exc.value.row, exc.value.field) == (row, field)
    refused(exc, str(path), "not UTF-8", f"line {line}", "0x")


# --------------------------------------------------------------------------------------------------
# Parquet


def parquet_book(path: Path, **columns: pa.Array) -> Path:
    base = {
        "id": pa.array(["a", "b"]),
        "underlying": pa.array(["SPY", "SPY"]),
        "kind": pa.array(["call", "put"]),
        "strike": pa.array([560.0, 580.0]),
        "expiry": pa.array(["2026-12-18", "2026-12-18"]),
        "quantity": pa.array([1.0, -2.0]),
    }
    base.update(columns)
    pq.write_table(pa.table(list(base.values()), names=list(base)), path)
    return path


def test_parquet_typed_columns_are_accepted(tmp_path: Path) -> None:
    path = parquet_book(
        tmp_path / "b.parquet",
        strike=pa.array([560, 580], pa.int32()),
        quantity=pa.array([Decimal("1.5"), Decimal("-2")], pa.decimal128(5, 2)),
        expiry=pa.array([dt.date(2026, 12, 18)] * 2, pa.date32()),
        id=pa.array([1, 2]),
    )
    book = Book.read_parquet(path)
    assert book.strike.tolist() == [560.0, 580.0] and book.quantity.tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    ("field", "array", "type_name"),
    [
        ("quantity", pa.array([True, False]), "bool"),
        ("strike", pa.array([True, True]), "bool"),
        ("quantity", pa.array(["1", "2"]), "string"),
        ("multiplier", pa.array([dt.datetime(2026, 1, 1)] * 2), "timestamp"),
        ("vol", pa.array([dt.timedelta(days=1)] * 2), "duration"),
        ("expiry", pa.array([20261218, 20261218]), "int64"),
        ("kind", pa.array([0, 1]), "int64"),
        ("underlying", pa.array([1.0, 2.0]), "double"),
    ],
)
def test_parquet_column_of_the_wrong_type_is_refused(
    tmp_path: Path, field: str, array: pa.Array, type_name: str
) -> None:
    path = parquet_book(tmp_path / "b.parquet", **{field: array})
    with pytest.raises(BookError) as exc:
        Book.read_parquet(path)
    assert (exc.value.row, exc.value.field) == (0, field)
    refused(exc, str(path), type_name)


def test_parquet_duplicate_column_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    table = pa.table(
        [
            pa.array(["SPY"]),
            pa.array(["stock"]),
            pa.array([0.0]),
            pa.array([""]),
            pa.array([1.0]),
            pa.array([2.0]),
        ],
        names=["underlying", "kind", "strike", "expiry", "quantity", "quantity"],
    )
    pq.write_table(table, path)
    with pytest.raises(BookError) as exc:
        Book.read_parquet(path)
    assert (exc.value.row, exc.value.field) == (0, "quantity")
    refused(exc, "duplicated column")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_corrupt_parquet_names_the_file(tmp_path: Path, damage: str) -> None:
    path = parquet_book(tmp_path / "b.parquet")
    data = path.read_bytes()
    if damage == "garbage":
        data = b"not parquet at all"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data = data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 40]) + data[middle + 40 :]
    path.write_bytes(data)
    with pytest.raises(BookError) as exc:
        Book.read_parquet(path)
    refused(exc, str(path), "Parquet")


# --------------------------------------------------------------------------------------------------
# DataFrames and the constructor: booleans, text, dates where numbers belong


FRAME = {
    "underlying": ["SPY", "SPY"],
    "kind": ["call", "stock"],
    "strike": [560.0, None],
    "expiry": ["2026-12-18", ""],
    "quantity": [1.0, 2.0],
}


@pytest.mark.parametrize(
    ("field", "values", "row"),
    [
        ("quantity", [True, False], 1),
        ("quantity", pd.array([True, None], dtype="boolean"), 1),
        ("quantity", [1.0, True], 2),
        ("quantity", ["1", False], 2),
        ("strike", [np.datetime64("2026-01-01"), None], 1),
        ("quantity", [pd.Timedelta(days=1)] * 2, 1),
        ("quantity", [1 + 0j, 2 + 0j], 1),
        ("vol", [0.2, dt.date(2026, 1, 1)], 2),
    ],
)
def test_frame_non_numbers_in_a_number_column(field: str, values: Any, row: int) -> None:
    with pytest.raises(BookError) as exc:
        Book.from_frame(pd.DataFrame({**FRAME, field: values}))
    assert (exc.value.row, exc.value.field) == (row, field)
    refused(exc, "not a number")


def test_frame_decimals_and_numeric_text_are_numbers() -> None:
    book = Book.from_frame(pd.DataFrame({**FRAME, "quantity": [Decimal("1.5"), " -2 "]}))
    assert book.quantity.tolist() == [1.5, -2.0]


ARRAYS: dict[str, Any] = {
    "id": ["a", "b"],
    "underlying": ["SPY", "SPY"],
    "kind": [0, 2],
    "strike": [560.0, np.nan],
    "expiry": ["2026-12-18", None],
    "quantity": [1.0, 2.0],
    "multiplier": [100.0, 1.0],
    "vol": [np.nan, np.nan],
}


def test_constructor_accepts_the_usual_forms() -> None:
    book = Book(**{**ARRAYS, "expiry": [dt.date(2026, 12, 18), ""], "quantity": [1, 2]})
    assert book.expiry.tolist() == [dt.date(2026, 12, 18), None]
    book = Book(**{**ARRAYS, "expiry": np.array(["2026-12-18T00:00", "NaT"], dtype="datetime64[m]")})
    assert str(book.expiry[0]) == "2026-12-18"


@pytest.mark.parametrize(
    ("field", "value", "row", "fragment"),
    [
        ("quantity", [True, False], 0, "booleans"),
        ("quantity", [2.0, True], 2, "bool"),
        ("quantity", ["1", "2"], 0, "strings"),
        ("strike", [Decimal("560"), None], 1, "Decimal"),
        ("multiplier", [100.0, Fraction(1)], 2, "Fraction"),
        ("vol", np.array([0.2 + 0j, 0]), 0, "complex"),
        ("kind", [None, 2], 1, "unknown kind code nan"),
        ("kind", ["call", "stock"], 0, "strings"),
        ("kind", [True, 2], 1, "bool"),
        ("expiry", [20261218, None], 1, "not a date"),
        ("expiry", np.array([20261218, 0]), 0, "must be dates"),
        ("expiry", ["2026-12-18T10:00", None], 1, "time of day"),
        ("expiry", [dt.datetime(2026, 12, 18, 16), None], 1, "time of day"),
        ("expiry", np.array(["2026-12-18T16", "NaT"], dtype="datetime64[h]"), 1, "time of day"),
        ("expiry", ["2026-12-18", 5], 2, "cannot parse date '5'"),
        ("expiry", ["2026", None], 1, "cannot parse date '2026'"),
        ("quantity", [10**400, 1], 1, "too large"),
    ],
)
def test_constructor_refuses_what_is_not_a_number_or_a_date(
    field: str, value: Any, row: int, fragment: str
) -> None:
    with pytest.raises(BookError) as exc:
        Book(**{**ARRAYS, field: value})
    assert (exc.value.row, exc.value.field) == (row, field)
    refused(exc, fragment)


# --------------------------------------------------------------------------------------------------
# plausible magnitudes (a result that would overflow is refused at the boundary)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("quantity", [1.0, 1e308], "1e+09"),
        ("quantity", [1.0, -2e9], "1e+09"),
        ("multiplier", [100.0, 1e308], "1e+06"),
        ("strike", [1e308, np.nan], "[1e-08, 1e+09]"),
        ("strike", [1e-300, np.nan], "[1e-08, 1e+09]"),
        ("vol", [11.0, np.nan], "10"),
    ],
)
def test_book_magnitudes_are_bounded(field: str, value: list[float], fragment: str) -> None:
    with pytest.raises(BookError) as exc:
        Book(**{**ARRAYS, field: value})
    assert exc.value.field == field
    refused(exc, "plausible", fragment)


def test_book_at_the_bounds_is_accepted() -> None:
    book = Book(**{**ARRAYS, "quantity": [1e9, -1e9], "strike": [1e9, 0.0], "multiplier": [1e6, 1.0]})
    assert book.quantity.tolist() == [1e9, -1e9]


def market_kwargs(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "valuation": "2026-11-20",
        "spot": {"SPY": 590.0},
        "rate": {"SPY": 0.04},
        "div_yield": {"SPY": 0.01},
        "surface": {"SPY": FlatSurface(0.2)},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("spot", 1e308, "[1e-08, 1e+09]"),
        ("spot", 1e-300, "[1e-08, 1e+09]"),
        ("rate", 1e3, "[-1, 1]"),
        ("rate", -1.5, "[-1, 1]"),
        ("div_yield", 5.0, "[-1, 1]"),
        ("beta", 1e308, "[-100, 100]"),
    ],
)
def test_market_magnitudes_are_bounded(field: str, value: float, fragment: str) -> None:
    with pytest.raises(MarketError) as exc:
        Market(**market_kwargs(**{field: {"SPY": value}}))
    assert (exc.value.table, exc.value.field) == ("underlyings.SPY", field)
    refused(exc, "plausible", fragment)


def test_market_file_with_rate_1e3_names_file_underlying_and_range(tmp_path: Path) -> None:
    text = EXAMPLE_MARKET.read_text().replace("rate = 0.044 ", "rate = 1e3 ")
    path = write(tmp_path, "market.toml", text)
    with pytest.raises(MarketError) as exc:
        Market.load(path)
    refused(exc, str(path), "underlyings.TSLA", "'rate'", "[-1, 1]")


def test_expiries_beyond_a_century_are_refused(tmp_path: Path) -> None:
    text = EXAMPLE_MARKET.read_text().replace("2027-12-17]", "2227-12-17]", 1)
    with pytest.raises(MarketError) as exc:
        Market.load(write(tmp_path, "market.toml", text))
    refused(exc, "underlyings.AAPL.surface", "expiries", "100 years")
    market = Market.load(EXAMPLE_MARKET)
    book = Book(**{**ARRAYS, "expiry": ["2200-01-01", None]})
    with pytest.raises(BookError) as exc2:
        book.check_market(market)
    assert (exc2.value.row, exc2.value.field) == (1, "expiry")
    refused(exc2, "100 years")


def test_bounded_book_and_market_give_finite_risk() -> None:
    from optmm.risk import exposures

    market = Market(**market_kwargs(spot={"SPY": 1e9}, rate={"SPY": -1.0}, div_yield={"SPY": 1.0}))
    book = Book(
        id=["a", "b", "c"],
        underlying=["SPY"] * 3,
        kind=[0, 1, 2],
        strike=[1e-8, 1e9, np.nan],
        expiry=["2126-10-01", "2026-11-21", None],
        quantity=[1e9, -1e9, 1e9],
        multiplier=[1e6, 1e6, 1e6],
        vol=[10.0, np.nan, np.nan],
    )
    result = exposures(book, market)
    for frame in (result.positions, result.by_underlying, result.total):
        numbers = frame.select_dtypes("number").to_numpy(dtype=np.float64)
        assert np.isfinite(numbers[~np.isnan(numbers)]).all()  # NaN only where none (a stock's vol)


# --------------------------------------------------------------------------------------------------
# the market's constructor and its TOML reader: wrong types anywhere


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("valuation", 5, "not a date"),
        ("valuation", 5.0, "not a date"),
        ("valuation", dt.time(10), "a time of day without a date"),
        ("spot", None, "must be a dict"),
        ("rate", [0.04], "must be a dict"),
        ("surface", None, "must be a dict"),
        ("beta", "SPY", "must be a dict"),
        ("spot", {1: 590.0}, "must be str"),
        ("spot", {"SPY": True}, "must be a number"),
        ("spot", {"SPY": "590"}, "must be a number"),
        ("spot", {"SPY": 10**400}, "too large"),
        ("index", ["SPY"], "must be an underlying"),
        ("sticky", ["strike"], "unknown value"),
    ],
)
def test_market_constructor_refuses_wrong_types(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(MarketError) as exc:
        Market(**market_kwargs(**{field: value}))
    refused(exc, fragment)


BAD_TOML_VALUES: list[Any] = [
    {"x": 1},
    {},
    [1, 2],
    [],
    [[1]],
    [{"a": 1}],
    "0.2",
    "",
    True,
    dt.datetime(2026, 1, 1, 10),
    dt.time(10),
    1e308,
    -1e308,
    10**400,
    0,
]


def _toml_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_toml_paths(value, (*prefix, key)))
    return out


def test_market_reader_refuses_a_wrong_value_anywhere() -> None:
    # Every field, list element and table of the example market, replaced in turn by each value
    # of a wrong kind: a MarketError of one line, never another exception (or an accepted value
    # that is not plausible).
    with open(EXAMPLE_MARKET, "rb") as f:
        doc = tomllib.load(f)
    tried = 0
    for path in _toml_paths(doc):
        for bad in BAD_TOML_VALUES:
            changed = copy.deepcopy(doc)
            node = changed
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = bad
            tried += 1
            try:
                _MarketReader("m.toml").read(changed)
            except MarketError as exc:
                assert "\n" not in str(exc)
            else:
                # only harmless replacements may pass: a zero where zero is valid, a list element
                # that stays a valid number, or a date-time as the valuation (a valuation moment)
                moment = path == ("valuation",) and isinstance(bad, dt.datetime)
                no_dividends = path[-1] == "dividends" and bad == []  # an empty schedule: none to come
                assert moment or no_dividends or (bad == 0 and not isinstance(bad, bool)), (path, bad)
    assert tried > 1000


def test_market_surface_type_of_the_wrong_kind(tmp_path: Path) -> None:
    for value in ('["svi"]', '{ name = "svi" }', "1", "true"):
        text = EXAMPLE_MARKET.read_text().replace('type = "table"', f"type = {value}")
        path = write(tmp_path, "market.toml", text)
        with pytest.raises(MarketError) as exc:
            Market.load(path)
        refused(exc, str(path), "underlyings.AAPL.surface", "'type'", "unknown surface type")


def test_market_file_not_utf8(tmp_path: Path) -> None:
    text = EXAMPLE_MARKET.read_text().replace("# High vol", "# H\xe9gh vol")
    path = write(tmp_path, "market.toml", text.encode("latin-1"))
    line = 1 + text[: text.index("H\xe9gh")].count("\n")
    with pytest.raises(MarketError) as exc:
        Market.load(path)
    refused(exc, str(path), "not UTF-8", f"line {line}", "0xe9")


# --------------------------------------------------------------------------------------------------
# surfaces


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlatSurface(True),
        lambda: FlatSurface("0.2"),
        lambda: FlatSurface(Decimal("0.2")),
        lambda: FlatSurface(11.0),
        lambda: TableSurface([0.5], [100.0], [[True]]),
        lambda: TableSurface([0.5], ["100"], [[0.2]]),
        lambda: TableSurface([0.5], [100.0], [[20.0]]),
        lambda: TableSurface([1e-300], [100.0], [[0.2]]),
        lambda: TableSurface([500.0], [100.0], [[0.2]]),
        lambda: SVISurface([0.5], a=[1e308], b=[1e308], rho=[0.0], m=[0.0], sigma=[1e308]),
        lambda: SVISurface([0.5], a=[0.02], b=[1e300], rho=[0.0], m=[0.0], sigma=[0.1]),
        lambda: SVISurface([0.5], a=[0.02], b=[0.1], rho=[0.0], m=[1e300], sigma=[0.1]),
        lambda: SVISurface([1e-320], a=[0.02], b=[0.1], rho=[0.0], m=[0.0], sigma=[0.1]),
        lambda: SVISurface([0.5], a=[0.02], b=[0.1], rho=[True], m=[0.0], sigma=[0.1]),
    ],
)
def test_surface_parameters_of_the_wrong_kind_or_magnitude(make: Any) -> None:
    with pytest.raises(SurfaceError) as exc:
        make()
    refused(exc, "field '")


def test_surface_vol_is_finite_at_extreme_queries() -> None:
    svi = SVISurface(
        [0.5, 1.0], a=[1e4, 1e4], b=[1e4, 1e4], rho=[0.9, 0.9], m=[100.0, 100.0], sigma=[100.0, 100.0]
    )
    table = TableSurface([0.5], [100.0, 100.00000000001], [[0.2, 0.3]])
    strikes = np.array([1e-300, 1e-8, 100.0, 1e9, 1e300])
    forwards = strikes[::-1].copy()
    assert np.isfinite(svi.vol(strikes, 0.75, forwards)).all()
    assert table.vol([1e300, 1e-300], 0.5, 1.0).tolist() == [0.3, 0.2]
    with pytest.raises(ValueError, match="strike: must be real numbers, got strings"):
        FlatSurface(0.2).vol("100", 1.0, 100.0)


# --------------------------------------------------------------------------------------------------
# the Greeks API


ARGS = {"spot": 100.0, "strike": 100.0, "t": 1.0, "rate": 0.03, "div_yield": 0.01, "vol": 0.2}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("t", np.timedelta64(30, "D"), "timedelta64"),
        ("t", np.datetime64("2026-12-18"), "datetime64"),
        ("vol", 0.2 + 0j, "complex"),
        ("strike", Decimal("100"), "Decimal"),
        ("spot", "100", "strings"),
        ("spot", True, "booleans"),
        ("rate", np.array([0.03, "x"], dtype=object), "not a real number"),
        ("strike", [100.0, True], "bool"),
        ("spot", 10**400, "too large"),
    ],
)
def test_greeks_refuse_what_is_not_a_real_number(name: str, value: Any, fragment: str) -> None:
    args = {**ARGS, name: value}
    for function in (bsm_greeks, bsm_price):
        with pytest.raises(ValueError) as exc:
            function(**args, is_call=True)
        refused(exc, f"{name}: ", fragment)
    price = {"price": 5.0, **{k: v for k, v in args.items() if k != "vol"}}
    if name == "vol":
        price["price"] = value
        name = "price"
    with pytest.raises(ValueError) as exc:
        implied_vol(**price, is_call=True)
    refused(exc, f"{name}: ", fragment)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"t": 75.0, "rate": -10.0}, "rate"),  # exp(-r t) = e^750
        ({"t": 75.0, "rate": 0.0, "div_yield": -10.0}, "div_yield"),
        ({"t": 1e6, "rate": -0.001}, "rate"),
        ({"spot": 1e300, "t": 10.0, "div_yield": -10.0}, "spot"),
        ({"strike": 1e307, "t": 1.0, "rate": -5.0}, "strike"),
    ],
)
def test_greeks_whose_result_overflows_are_refused(kwargs: dict[str, float], name: str) -> None:
    args = {**ARGS, **kwargs}
    for is_call in (True, False):
        with pytest.raises(ValueError) as exc:
            bsm_price(**args, is_call=is_call)
        refused(exc, f"{name}: ", "float64")
        with pytest.raises(ValueError) as exc:
            bsm_greeks(**args, is_call=is_call)
        refused(exc, f"{name}: ", "float64")
        price = {k: v for k, v in args.items() if k != "vol"}
        with pytest.raises(ValueError) as exc:
            implied_vol(1.0, **price, is_call=is_call)
        refused(exc, f"{name}: ", "float64")


def test_greeks_overflow_of_a_single_output_names_the_inputs() -> None:
    # the price is representable but rho = -t K e^-rt is not
    assert math.isfinite(float(bsm_price(100.0, 100.0, 1e307, 0.0, 0.0, 0.2, False)))
    with pytest.raises(ValueError) as exc:
        bsm_greeks(100.0, 100.0, [1.0, 1e307], 0.0, 0.0, 0.2, False)
    refused(exc, "index 1", "t=1e+307", "overflows a float64")


def test_greeks_near_the_overflow_limit_are_computed() -> None:
    # |r t| = 600: exp(600) ~ 3.8e260 is representable, and so are the results (a put deep in the
    # money: worth its discounted strike less the discounted spot).
    put = float(bsm_price(100.0, 100.0, 75.0, -8.0, 0.0, 0.2, False))
    assert put == pytest.approx(100.0 * math.exp(600.0) - 100.0, rel=1e-13)
    g = bsm_greeks(100.0, 100.0, 75.0, -8.0, 0.0, 0.2, np.array([True, False]))
    assert all(np.isfinite(a).all() for a in g.to_dict().values())


def test_greeks_repr_is_short() -> None:
    g = bsm_greeks(100.0, np.linspace(50.0, 150.0, 10_000), 1.0, 0.0, 0.0, 0.2, True)
    assert repr(g) == "Greeks(shape=(10000,): price, delta, gamma, vega, theta, rho, vanna, volga)"
    one = repr(bsm_greeks(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.20, True))
    assert one.startswith("Greeks(price=2.4005") and len(one) < 200


def test_reprs_are_short() -> None:
    market = Market.load(EXAMPLE_MARKET)
    text = repr(market)
    assert text.startswith("Market(valuation=2026-11-20, underlyings: SPY, AAPL, MSFT, TSLA")
    assert len(text) < 200
    assert repr(market.surface["AAPL"]) == (
        "TableSurface(5 expiries 0.0767123..1.07397 y, 6 strikes 180..280, vols 0.245..0.33)"
    )
    assert repr(market.surface["MSFT"]) == "SVISurface(5 slices, expiries 0.0767123..1.07397 y)"
    assert repr(Book.load(EXAMPLE_BOOK)).startswith("Book(")


# --------------------------------------------------------------------------------------------------
# the command line


def test_cli_decimal_comma_in_the_book_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = EXAMPLE_BOOK.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if line.endswith(",0.175"))
    lines[bad] = lines[bad][: -len("0.175")] + "0,175"
    book = write(tmp_path, "book.csv", "\n".join(lines) + "\n")
    market = tmp_path / "market.toml"
    shutil.copy(EXAMPLE_MARKET, market)
    result = run(capsys, "risk", str(book), "--market", str(market))
    assert_usage_error(result, str(book), f"row {bad}", "field 'vol'", "'175'")


def test_market_methods_refuse_wrong_arguments() -> None:
    market = Market.load(EXAMPLE_MARKET)
    with pytest.raises(ValueError, match=r"^t: 1000000.0 at index 1 gives no finite forward for 'SPY'"):
        market.forward("SPY", [1.0, 1e6])
    with pytest.raises(ValueError, match=r"^t: must be real numbers, got strings"):
        market.vols("SPY", 500.0, "1")
    with pytest.raises(ValueError, match=r"^spot_shift: must be real numbers, got booleans"):
        market.vols("SPY", 500.0, 1.0, spot_shift=True)
    with pytest.raises(ValueError, match=r"^expiry: must be dates"):
        market.year_fraction(20261218)
    assert market.year_fraction(np.datetime64("2027-11-20")) == 1.0


def test_market_vols_refuses_a_surface_that_gives_no_finite_vol() -> None:
    class Broken:
        def vol(self, strike: Any, t: Any, forward: Any) -> np.ndarray:
            return np.where(np.asarray(strike) > 100.0, np.inf, 0.2)

    market = Market(**market_kwargs(surface={"SPY": Broken()}))
    assert market.vols("SPY", 100.0, 1.0) == 0.2
    with pytest.raises(MarketError) as exc:
        market.vols("SPY", [100.0, 150.0], 1.0)
    refused(exc, "underlyings.SPY", "'surface'", "inf at index 1")
