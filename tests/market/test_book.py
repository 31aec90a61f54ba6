"""Tests of optmm.book: loading, validation (file, row and field in every error), round trips,
atomic writes and a large book."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm.book import Book, BookError, Kind
from optmm.market import Market
from optmm.surface import FlatSurface

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"

HEADER = "id,underlying,kind,strike,expiry,quantity,multiplier,vol"
GOOD_ROWS = [
    "a1,SPY,call,600,2026-12-18,10,,",
    "a2,SPY,put,550,2027-01-15,-5,100,0.2",
    "a3,SPY,stock,,,250,,",
    "a4,AAPL,Put,230,2026-12-18,3,10,",
]


def write(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "book.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def sample_book() -> Book:
    return Book.from_frame(
        pd.DataFrame(
            {
                "id": ["x1", "x2", "x3", "x4", "x5"],
                "underlying": ["SPY", "SPY", "AAPL", "AAPL", "TSLA"],
                "kind": ["call", "put", "call", "stock", "put"],
                "strike": [600.1234567890123, 550.0, 1 / 3, np.nan, 250.0],
                "expiry": ["2026-12-18", "2027-01-15", "2027-03-19", "", "2027-12-17"],
                "quantity": [10.0, -5.5, 1e-7, -1234.0, 0.0],
                "multiplier": [100.0, 50.0, np.nan, np.nan, 10.0],
                "vol": [np.nan, 0.123456789012345, np.nan, np.nan, 0.0],
            }
        ),
        source="sample",
    )


def assert_books_equal(a: Book, b: Book) -> None:
    assert len(a) == len(b)
    for name in ("id", "underlying"):
        assert getattr(a, name).dtype == object and getattr(b, name).dtype == object
        assert getattr(a, name).tolist() == getattr(b, name).tolist()
    assert a.kind.dtype == b.kind.dtype == np.int8
    np.testing.assert_array_equal(a.kind, b.kind)
    assert a.expiry.dtype == b.expiry.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(a.expiry, b.expiry)
    for name in ("strike", "quantity", "multiplier", "vol"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float64
        np.testing.assert_array_equal(x, y)  # exact, NaN == NaN


# ------------------------------------------------------------------------------------------------
# reading and the defaults


def test_reads_csv_with_types_and_defaults(tmp_path: Path) -> None:
    book = Book.read_csv(write(tmp_path, GOOD_ROWS))
    assert len(book) == 4
    assert book.id.tolist() == ["a1", "a2", "a3", "a4"]
    assert book.kind.tolist() == [Kind.CALL, Kind.PUT, Kind.STOCK, Kind.PUT]
    assert book.strike.tolist() == [600.0, 550.0, 0.0, 230.0]
    assert book.expiry[0] == np.datetime64("2026-12-18") and np.isnat(book.expiry[2])
    assert book.quantity.tolist() == [10.0, -5.0, 250.0, 3.0]
    assert book.multiplier.tolist() == [100.0, 100.0, 1.0, 10.0]  # blank -> 100 option / 1 stock
    assert book.has_vol_override.tolist() == [False, True, False, False]
    assert book.vol[1] == 0.2
    assert book.is_option.tolist() == [True, True, False, True]
    assert book.underlyings() == ["AAPL", "SPY"]
    assert book.source == str(tmp_path / "book.csv")


def test_from_frame_defaults_without_optional_columns() -> None:
    df = pd.DataFrame(
        {
            "underlying": ["SPY", "SPY", "MSFT"],
            "kind": ["CALL", "stock", "put"],
            "strike": [600.0, np.nan, 500.0],
            "expiry": ["2026-12-18", None, "2027-01-15"],
            "quantity": [1, -2, 3],
            "unrelated": ["ignored", 1, None],  # unknown columns are ignored
        }
    )
    book = Book.from_frame(df)
    assert book.id.tolist() == ["p1", "p2", "p3"]
    assert book.multiplier.tolist() == [100.0, 1.0, 100.0]
    assert np.isnan(book.vol).all()
    assert book.strike.tolist() == [600.0, 0.0, 500.0]
    assert book.source == "<DataFrame>"


def test_blank_id_cells_are_generated_from_the_row() -> None:
    df = pd.DataFrame(
        {
            "id": ["first", "", None],
            "underlying": ["SPY"] * 3,
            "kind": ["stock"] * 3,
            "strike": [np.nan] * 3,
            "expiry": [""] * 3,
            "quantity": [1.0, 2.0, 3.0],
        }
    )
    assert Book.from_frame(df).id.tolist() == ["first", "p2", "p3"]


def test_typed_frame_with_datetime_expiry() -> None:
    df = pd.DataFrame(
        {
            "Underlying ": ["SPY", "SPY"],  # header matched case-insensitively, spaces stripped
            "KIND": ["call", "put"],
            "strike": [600, 580],
            "expiry": pd.to_datetime(["2026-12-18", "2027-01-15"]),
            "quantity": [1.0, 2.0],
        }
    )
    book = Book.from_frame(df)
    assert book.expiry.tolist() == [np.datetime64("2026-12-18").item(), np.datetime64("2027-01-15").item()]


def test_example_book_loads_and_matches_market() -> None:
    book = Book.load(EXAMPLES / "book.csv")
    market = Market.load(EXAMPLES / "market.toml")
    book.check_market(market)
    assert 40 <= len(book) <= 80
    assert book.underlyings() == ["AAPL", "MSFT", "SPY", "TSLA"]
    assert (~book.is_option).sum() >= 4 and book.has_vol_override.sum() >= 3
    assert (book.quantity > 0).any() and (book.quantity < 0).any()


def test_constructor_validates_direct_arrays() -> None:
    ok = sample_book()
    args = {name: getattr(ok, name) for name in Book._ARRAYS}
    book = Book(**args)
    assert_books_equal(book, ok)
    with pytest.raises(BookError, match=r"<DataFrame>: row 2: field 'quantity'"):
        Book(**{**args, "quantity": np.array([1.0, np.nan, 1.0, 1.0, 1.0])})
    with pytest.raises(BookError, match=r"row 4: field 'expiry': a stock row takes no expiry"):
        Book(**{**args, "expiry": np.full(5, np.datetime64("2027-01-15"))})
    with pytest.raises(BookError, match=r"row 3: field 'kind'"):
        Book(**{**args, "kind": np.array([0, 1, 7, 2, 1])})
    with pytest.raises(BookError, match=r"row 2: field 'id': duplicate id 'x1' \(first at row 1\)"):
        Book(**{**args, "id": np.array(["x1", "x1", "x3", "x4", "x5"], dtype=object)})


def test_constructor_copies_its_input() -> None:
    quantity = np.array([1.0, 2.0])
    book = Book(
        id=["a", "b"],
        underlying=["SPY", "SPY"],
        kind=[Kind.CALL, Kind.STOCK],
        strike=[100.0, 0.0],
        expiry=np.array(["2027-01-15", "NaT"], dtype="datetime64[D]"),
        quantity=quantity,
        multiplier=[100.0, 1.0],
        vol=[np.nan, np.nan],
    )
    quantity[0] = 99.0
    assert book.quantity[0] == 1.0
    assert book.id.dtype == object and book.kind.dtype == np.int8


# ------------------------------------------------------------------------------------------------
# round trips and atomic writes


def test_round_trip_csv(tmp_path: Path) -> None:
    book = sample_book()
    path = tmp_path / "out.csv"
    book.to_csv(path)
    again = Book.read_csv(path)
    assert_books_equal(book, again)
    assert again.source == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary left behind


def test_round_trip_parquet(tmp_path: Path) -> None:
    book = sample_book()
    path = tmp_path / "out.parquet"
    book.to_parquet(path)
    assert_books_equal(book, Book.read_parquet(path))
    assert_books_equal(book, Book.load(path))
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_round_trip_frame() -> None:
    book = sample_book()
    frame = book.to_frame()
    assert list(frame.columns) == [
        "id",
        "underlying",
        "kind",
        "strike",
        "expiry",
        "quantity",
        "multiplier",
        "vol",
    ]
    assert frame["kind"].tolist() == ["call", "put", "call", "stock", "put"]
    assert frame["expiry"].tolist()[2:4] == ["2027-03-19", ""]
    assert_books_equal(book, Book.from_frame(frame))


def test_round_trip_example_csv(tmp_path: Path) -> None:
    book = Book.load(EXAMPLES / "book.csv")
    book.to_csv(tmp_path / "copy.csv")
    assert_books_equal(book, Book.load(tmp_path / "copy.csv"))


@pytest.mark.parametrize("method", ["to_csv", "to_parquet"])
@pytest.mark.parametrize("existing", [True, False])
def test_atomic_write_leaves_target_untouched_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, existing: bool
) -> None:
    target = tmp_path / ("book.csv" if method == "to_csv" else "book.parquet")
    if existing:
        target.write_bytes(b"previous content\n")
    frame_method = "to_csv" if method == "to_csv" else "to_parquet"
    original = getattr(pd.DataFrame, frame_method)

    def half_then_fail(self: pd.DataFrame, f: object, *args: object, **kwargs: object) -> None:
        original(self.iloc[: len(self) // 2], f, *args, **kwargs)  # write part of the book...
        raise OSError("disk full")  # ...then fail

    monkeypatch.setattr(pd.DataFrame, frame_method, half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        getattr(sample_book(), method)(target)
    if existing:
        assert target.read_bytes() == b"previous content\n"
    else:
        assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if existing else [])


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "book.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    sample_book().to_csv(target)
    assert len(Book.read_csv(target)) == 5
    assert target.stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------------------
# refusals: every message names the file, the row and the field

BAD_CASES = [
    # (rows, row, field, fragment of the problem)
    (["a1,SPY,future,600,2026-12-18,10,,"], 1, "kind", "unknown kind 'future'"),
    (["a1,SPY,c,600,2026-12-18,10,,"], 1, "kind", "unknown kind 'c'"),
    ([*GOOD_ROWS, "a5,SPY,,600,2026-12-18,10,,"], 5, "kind", "missing kind"),
    (["a1,SPY,call,600,2026/12/18,10,,"], 1, "expiry", "cannot parse date '2026/12/18'"),
    (["a1,SPY,call,600,2026-13-18,10,,"], 1, "expiry", "cannot parse date '2026-13-18'"),
    (["a1,SPY,call,600,18.12.2026,10,,", "a2,SPY,call,600,soon,10,,"], 1, "expiry", "cannot parse date"),
    ([GOOD_ROWS[0], "a2,SPY,put,550,,-5,,"], 2, "expiry", "missing expiry"),
    (["a1,SPY,stock,,2026-12-18,10,,"], 1, "expiry", "a stock row takes no expiry"),
    ([GOOD_ROWS[0], GOOD_ROWS[1], "a3,SPY,call,-600,2026-12-18,10,,"], 3, "strike", "must be finite and > 0"),
    (["a1,SPY,put,0,2026-12-18,10,,"], 1, "strike", "must be finite and > 0"),
    (["a1,SPY,put,,2026-12-18,10,,"], 1, "strike", "missing strike"),
    (["a1,SPY,put,abc,2026-12-18,10,,"], 1, "strike", "not a number: 'abc'"),
    (["a1,SPY,stock,5,,10,,"], 1, "strike", "a stock row takes no strike"),
    ([*GOOD_ROWS, "a5,SPY,call,600,2026-12-18,,,"], 5, "quantity", "missing quantity"),
    (["a1,SPY,call,600,2026-12-18,NaN,,"], 1, "quantity", "not a number: 'NaN'"),
    (["a1,SPY,call,600,2026-12-18,inf,,"], 1, "quantity", "must be finite"),
    (["a1,SPY,call,600,2026-12-18,ten,,"], 1, "quantity", "not a number: 'ten'"),
    ([GOOD_ROWS[0], "a2,SPY,call,600,2026-12-18,1,0,"], 2, "multiplier", "must be finite and > 0"),
    (["a1,SPY,call,600,2026-12-18,1,-100,"], 1, "multiplier", "must be finite and > 0"),
    (
        [GOOD_ROWS[0], GOOD_ROWS[1], "a1,SPY,put,550,2027-01-15,-5,,"],
        3,
        "id",
        "duplicate id 'a1' (first at row 1)",
    ),
    (["a1,SPY,call,600,2026-12-18,1,,-0.2"], 1, "vol", "vol override must be finite and >= 0"),
    (["a1,SPY,stock,,,1,,0.2"], 1, "vol", "a stock row takes no vol override"),
    (["a1, ,call,600,2026-12-18,1,,"], 1, "underlying", "missing underlying"),
]


@pytest.mark.parametrize(("rows", "row", "field", "problem"), BAD_CASES)
def test_bad_file_names_file_row_and_field(
    tmp_path: Path, rows: list[str], row: int, field: str, problem: str
) -> None:
    path = write(tmp_path, rows, name="bad_book.csv")
    with pytest.raises(BookError) as info:
        Book.read_csv(path)
    message = str(info.value)
    assert "bad_book.csv" in message
    assert f"row {row}:" in message
    assert f"field '{field}'" in message
    assert problem in message
    assert (info.value.row, info.value.field) == (row, field)


@pytest.mark.parametrize("missing", ["underlying", "kind", "strike", "expiry", "quantity"])
def test_missing_required_column(tmp_path: Path, missing: str) -> None:
    columns = HEADER.split(",")
    keep = [i for i, c in enumerate(columns) if c != missing]
    rows = [",".join(r.split(",")[i] for i in keep) for r in GOOD_ROWS]
    path = write(tmp_path, rows, header=",".join(columns[i] for i in keep), name="cols.csv")
    with pytest.raises(BookError, match=rf"cols\.csv: row 0: field '{missing}': missing column"):
        Book.read_csv(path)


def test_empty_file_is_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(BookError, match=r"empty\.csv: row 0: field 'underlying': missing column"):
        Book.read_csv(path)


def test_header_only_is_an_empty_book(tmp_path: Path) -> None:
    book = Book.read_csv(write(tmp_path, []))
    assert len(book) == 0 and book.underlyings() == []
    assert book.kind.dtype == np.int8 and book.expiry.dtype == np.dtype("datetime64[D]")


def test_first_bad_row_is_reported(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, "a5,SPY,call,600,2026-12-18,1,-1,", "a6,SPY,swap,600,2026-12-18,1,,"]
    with pytest.raises(BookError, match=r"row 5: field 'multiplier'"):
        Book.read_csv(write(tmp_path, rows))


def test_bad_parquet_names_file_row_and_field(tmp_path: Path) -> None:
    frame = sample_book().to_frame()
    frame.loc[3, "expiry"] = "2027-02-30"
    frame.loc[3, "kind"] = "call"
    frame.loc[3, "strike"] = 10.0
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(
        BookError, match=r"bad\.parquet: row 4: field 'expiry': cannot parse date '2027-02-30'"
    ):
        Book.load(path)


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(BookError, match=r"book\.xlsx.*unknown book format"):
        Book.load(tmp_path / "book.xlsx")


def test_check_market_names_first_row_without_data(tmp_path: Path) -> None:
    book = Book.read_csv(write(tmp_path, GOOD_ROWS, name="positions.csv"))
    market = Market(
        valuation=np.datetime64("2026-11-20"),
        spot={"SPY": 590.0},
        rate={"SPY": 0.04},
        div_yield={"SPY": 0.0},
        surface={"SPY": FlatSurface(0.2)},
        source="mkt.toml",
    )
    with pytest.raises(BookError) as info:
        book.check_market(market)
    assert str(info.value).startswith(
        f"{tmp_path / 'positions.csv'}: row 4: field 'underlying': no market data"
    )
    assert "'AAPL'" in str(info.value) and "mkt.toml" in str(info.value)

    # a spot without a surface is enough for stock, not for options
    stock_only = Market(
        valuation=np.datetime64("2026-11-20"),
        spot={"SPY": 590.0, "AAPL": 230.0},
        rate={"SPY": 0.04, "AAPL": 0.04},
        div_yield={"SPY": 0.0, "AAPL": 0.0},
        surface={"AAPL": FlatSurface(0.3)},
    )
    with pytest.raises(BookError, match=r"row 1: field 'underlying': no vol surface for 'SPY'"):
        book.check_market(stock_only)
    Book.from_frame(book.to_frame().iloc[[2]]).check_market(stock_only)  # the SPY stock row alone is fine


# ------------------------------------------------------------------------------------------------
# scale


def test_large_frame_is_vectorised() -> None:
    n = 200_000
    rng = np.random.default_rng(7)
    kinds = np.array(["call", "put", "stock"], dtype=object)[rng.integers(0, 3, n)]
    stock = kinds == "stock"
    expiries = np.array(["2026-12-18", "2027-01-15", "2027-03-19", "2027-12-17"], dtype=object)
    df = pd.DataFrame(
        {
            "id": np.char.add("q", np.arange(n).astype(str)).astype(object),
            "underlying": np.array(["SPY", "AAPL", "MSFT", "TSLA"], dtype=object)[rng.integers(0, 4, n)],
            "kind": kinds,
            "strike": np.where(stock, np.nan, rng.uniform(50, 700, n)),
            "expiry": np.where(stock, "", expiries[rng.integers(0, 4, n)]),
            "quantity": rng.normal(0, 50, n),
        }
    )
    book = Book.from_frame(df)
    assert len(book) == n
    np.testing.assert_array_equal(book.quantity, df["quantity"].to_numpy())
    assert (book.multiplier[stock] == 1.0).all() and (book.multiplier[~stock] == 100.0).all()
    assert (book.strike[stock] == 0.0).all() and np.isnat(book.expiry[stock]).all()
    # one bad cell deep in the frame is found and named
    df.loc[n - 3, "expiry"] = "2027-12-32"
    df.loc[n - 3, "kind"] = "put"
    df.loc[n - 3, "strike"] = 100.0
    with pytest.raises(BookError, match=rf"row {n - 2}: field 'expiry'"):
        Book.from_frame(df, source="big")


def _random_book(n: int, seed: int) -> Book:
    """Rows repeating a few contracts, with stock rows, terms and vol overrides mixed in."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n).astype(np.int8)
    stock = kind == Kind.STOCK
    return Book(
        id=np.array([f"p{i}" for i in range(n)], dtype=object),
        underlying=rng.choice(np.array(["ZZ", "AA", "MM"], dtype=object), n),
        kind=kind,
        strike=np.where(stock, 0.0, rng.choice([90.0, 100.0, 110.0], n)),
        expiry=np.where(
            stock,
            np.datetime64("NaT", "D"),
            rng.choice(np.array(["2026-01-16", "2026-03-20"], dtype="datetime64[D]"), n),
        ),
        quantity=rng.integers(-5, 6, n).astype(np.float64),
        multiplier=np.where(stock, 1.0, 100.0),
        vol=np.where(stock | (rng.random(n) < 0.7), np.nan, rng.choice([0.2, 0.3], n)),
        style=np.where(stock, "", rng.choice(np.array(["", "american", "european"], dtype=object), n)),
        settlement=np.where(stock, "", rng.choice(np.array(["", "AM", "PM"], dtype=object), n)),
        source="random",
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract_index_numbers_the_rows_as_a_groupby_over_the_contract_columns(seed: int) -> None:
    book = _random_book(400, seed)
    of_row, first = book.contract_index()
    frame = pd.DataFrame(
        {
            "u": book.underlying,
            "kind": book.kind,
            "expiry": book.expiry,
            "settlement": book.settlement,
            "style": book.style,
            "strike": book.strike,
            "vol": book.vol,
        }
    )
    # pandas' groups in order of first appearance (NaN and NaT each one value)
    groups = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    assert np.array_equal(of_row, pd.factorize(groups)[0])
    assert np.array_equal(first, [np.flatnonzero(of_row == c)[0] for c in range(first.size)])
    names, codes = book.underlying_index()
    assert names.tolist() == sorted(set(book.underlying)) == book.underlyings()
    assert np.array_equal(names[codes], book.underlying)
    for term in ("style", "settlement"):
        term_codes, values = book.term_index(term)
        assert np.array_equal(values[term_codes], getattr(book, term))
    e_codes, e_values = book.expiry_index()
    assert np.array_equal(e_values[e_codes], book.expiry, equal_nan=True)


def test_contract_index_of_an_empty_book_and_of_one_row() -> None:
    empty = _random_book(0, 0)
    assert empty.contract_index()[0].size == 0 and empty.contract_index()[1].size == 0
    one = _random_book(1, 0)
    assert one.contract_index()[0].tolist() == [0] and one.contract_index()[1].tolist() == [0]
