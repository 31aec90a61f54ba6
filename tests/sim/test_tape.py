"""The tape format (optmm.sim.tape, docs/tape.md) and the fill rules against a recorded market
(optmm.sim._fill_kernels): parsing and validation, exact round trips through CSV and Parquet, as-of
access without look-ahead, the fill rules' invariants, and a synthetic run written as a tape."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optmm.sim import SimConfig, simulate
from optmm.sim import _fill_kernels as fk
from optmm.sim.tape import (
    KIND_CALL,
    KIND_PUT,
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    Quotes,
    Tape,
    Trades,
    asof_index,
    asof_values,
    read_tape,
    step_slices,
    tape_from_result,
    time_grid,
    write_tape,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_623_400_000_000_000  # 2026-01-05T14:30:00Z in ns: 20458 days of 86400 s, plus 14.5 h
assert T0 == (20458 * 86400 + 14 * 3600 + 1800) * 10**9

HEADER = "time,type,underlying,kind,expiry,strike,bid,ask,bid_size,ask_size,price,size,side\n"
GOOD = (
    HEADER
    + "2026-01-05T14:30:00Z,quote,SPY,,,,99.99,100.01,500,300,,,\n"
    + "2026-01-05T14:30:00.5Z,quote,SPY,call,2026-01-16,100,1.20,1.25,10,12,,,\n"
    + "2026-01-05T09:30:01-05:00,trade,SPY,call,2026-01-16,100,,,,,1.25,3,buy\n"
    + f"{T0 + 2 * 10**9},trade,SPY,,,,,,,,100.01,200,\n"
    + "2026-01-05T14:30:02.1Z,quote,SPY,P,2026-01-16,95,0.5,,,,,,\n"
    + "2026-01-05 14:30:03+00:00,quote,AAPL,,,,250.1,250.2,,,,,\n"
    + "2026-01-05T14:30:03Z,trade,SPY,put,2026-01-16,95,,,,,0.55,1,S\n"
)


def _write(tmp_path: Path, text: str, name: str = "tape.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- reading ---------------------------------------------------------------------------------------


def test_reads_a_worked_example(tmp_path: Path) -> None:
    tape = read_tape(_write(tmp_path, "\ufeff" + GOOD.replace("\n", "\r\n")))  # a spreadsheet's BOM and CRLF
    assert tape.underlyings == ("AAPL", "SPY")  # ids in name order
    # contracts by (underlying, expiry, strike, kind): the 95 put, then the 100 call
    assert tape.contract_underlying.tolist() == [1, 1]
    assert tape.contract_strike.tolist() == [95.0, 100.0]
    assert tape.contract_kind.tolist() == [KIND_PUT, KIND_CALL]
    assert (
        tape.contract_expiry_day.tolist()
        == [(np.datetime64("2026-01-16") - np.datetime64("1970-01-01")).item().days] * 2
    )
    uq = tape.underlying_quotes
    assert uq.time_ns.tolist() == [T0, T0 + 3 * 10**9]
    assert uq.inst.tolist() == [1, 0]
    assert uq.bid.tolist() == [99.99, 250.1] and uq.ask.tolist() == [100.01, 250.2]
    assert uq.bid_size[0] == 500.0 and math.isnan(uq.bid_size[1])
    assert uq.mid.tolist() == [0.5 * (99.99 + 100.01), 0.5 * (250.1 + 250.2)]
    assert np.isnan(uq.vol).all()
    oq = tape.option_quotes
    assert oq.time_ns.tolist() == [T0 + 500_000_000, T0 + 2_100_000_000]
    assert oq.inst.tolist() == [1, 0]
    assert oq.ask[1] != oq.ask[1] and math.isnan(oq.mid[1])  # the put's empty ask: one-sided
    # the -05:00 offset is the same instant as 14:30:01Z
    assert tape.option_trades.time_ns.tolist() == [T0 + 10**9, T0 + 3 * 10**9]
    assert tape.option_trades.side.tolist() == [SIDE_BUY, SIDE_SELL]
    assert tape.option_trades.inst.tolist() == [1, 0]
    assert tape.underlying_trades.side.tolist() == [SIDE_UNKNOWN]
    assert tape.underlying_trades.price.tolist() == [100.01]
    for rec in (uq, oq, tape.underlying_trades, tape.option_trades):
        for name in rec.__dataclass_fields__:
            a = getattr(rec, name)
            assert a.flags.c_contiguous and a.dtype in (np.float64, np.int64)
    assert tape.contract_ids(
        np.array([1, 1, 0]),
        np.array([KIND_CALL, KIND_CALL, KIND_CALL]),
        np.array([100.0, 101.0, 100.0]),
        tape.contract_expiry_day[[0, 0, 0]],
    ).tolist() == [1, -1, -1]
    assert "2 contract(s)" in repr(tape)


def _replace(row: int, field: str, value: str) -> str:
    """GOOD with data row ``row`` (1-based) having ``value`` in ``field``."""
    lines = GOOD.splitlines()
    cols = lines[0].split(",")
    cells = lines[row].split(",")
    cells[cols.index(field)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "row", "field", "words"),
    [
        (GOOD.replace("time,", "when,", 1), 0, "time", "missing column"),
        (GOOD.replace(",bid,ask,", ",b,a,", 1), 0, "bid", "needed by the quote rows"),
        (_replace(2, "time", "2026-01-05T14:30:00.5"), 2, "time", "with 'Z' or an offset"),
        (_replace(2, "time", "yesterday"), 2, "time", "cannot parse"),
        (_replace(2, "time", "2026-02-30T14:30:00Z"), 2, "time", "not a valid date"),
        (_replace(3, "time", "2026-01-05T14:29:59Z"), 3, "time", "earlier than the row before"),
        (_replace(1, "type", "quotes"), 1, "type", "unknown record type"),
        (_replace(2, "kind", "straddle"), 2, "kind", "unknown kind"),
        (_replace(2, "bid", "inf"), 2, "bid", "finite"),
        (_replace(2, "ask", "nan"), 2, "ask", "finite"),
        (_replace(1, "bid", "-0.01"), 1, "bid", ">= 0"),
        (_replace(2, "bid", "1.30"), 2, "bid", "above ask"),
        (_replace(2, "bid", "1.2x"), 2, "bid", "not a number"),
        (_replace(2, "expiry", "2026-01-04"), 2, "expiry", "before the record's date"),
        (_replace(2, "expiry", "16/01/2026"), 2, "expiry", "YYYY-MM-DD"),
        (_replace(2, "strike", ""), 2, "strike", "finite strike > 0"),
        (_replace(3, "size", "0"), 3, "size", "size > 0"),
        (_replace(3, "price", ""), 3, "price", "finite price"),
        (_replace(4, "price", "-1"), 4, "price", "finite price"),
        (_replace(3, "side", "long"), 3, "side", "unknown aggressor side"),
        (_replace(1, "bid_size", "-5"), 1, "bid_size", ">= 0"),
        (_replace(6, "underlying", ""), 6, "underlying", "empty"),
        (HEADER, 0, "<file>", "no records"),
    ],
)
def test_errors_name_file_row_and_field(tmp_path: Path, text: str, row: int, field: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        read_tape(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: row {row}: field '{field}': "), msg
    assert words in msg and "\n" not in msg


def test_other_file_problems(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_tape(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"unknown tape format '\.txt'"):
        read_tape(_write(tmp_path, GOOD, "tape.txt"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=r"sub: row 0: field '<file>': a tape directory with no \.csv"):
        read_tape(tmp_path / "sub")
    _write(tmp_path, "", "empty.csv")
    with pytest.raises(ValueError, match=r"empty\.csv: row 0: field '<file>': empty"):
        read_tape(tmp_path / "empty.csv")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk\.parquet: row 0: field '<file>': not a readable Parquet"):
        read_tape(junk)


def test_parquet_needs_a_time_zone(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "time": pa.array([np.datetime64("2026-01-05T14:30:00", "ns")], type=pa.timestamp("ns")),
            "type": ["quote"],
            "underlying": ["SPY"],
            "bid": [1.0],
            "ask": [1.1],
        }
    )
    pq.write_table(table, tmp_path / "naive.parquet")
    with pytest.raises(ValueError, match=r"naive\.parquet: row 0: field 'time': .*without a time zone"):
        read_tape(tmp_path / "naive.parquet")
    # the same with a zone, the expiry as a Parquet date and the strike an integer column: accepted
    table = pa.table(
        {
            "time": pa.array([T0], type=pa.int64()).cast(pa.timestamp("ns", tz="America/New_York")),
            "type": ["quote"],
            "underlying": ["SPY"],
            "kind": ["call"],
            "expiry": pa.array([dt.date(2026, 1, 16)], type=pa.date32()),
            "strike": pa.array([100], type=pa.int32()),
            "bid": [1.0],
            "ask": pa.array([None], type=pa.float64()),
        }
    )
    pq.write_table(table, tmp_path / "zoned.parquet")
    tape = read_tape(tmp_path / "zoned.parquet")
    assert tape.option_quotes.time_ns.tolist() == [T0]
    assert tape.contract_strike.tolist() == [100.0] and math.isnan(tape.option_quotes.ask[0])


# -- writing: exact round trips --------------------------------------------------------------------


def _random_tape(seed: int) -> Tape:
    """A tape with every kind of record and awkward numbers (no short decimal form)."""
    rng = np.random.default_rng(seed)
    nu, nc = 3, 5
    c_u = np.array([0, 0, 1, 1, 2])
    c_e = np.array([20470, 20470, 20470, 20500, 20470])
    c_k = np.array([90.0, 90.0, 100.5, 100.5, 7.25])
    c_c = np.array([KIND_PUT, KIND_CALL, KIND_CALL, KIND_CALL, KIND_PUT])

    def times(n: int) -> np.ndarray:
        return np.sort(T0 + rng.integers(0, 10**12, n))

    def quotes(n: int, n_inst: int, gaps: bool) -> Quotes:
        bid = rng.uniform(0.0, 100.0, n)
        ask = bid + rng.exponential(0.1, n)
        if gaps:
            bid[rng.random(n) < 0.2] = np.nan
        return Quotes(
            times(n),
            rng.integers(0, n_inst, n),
            bid,
            ask,
            rng.uniform(0, 1e3, n),
            np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 1e3, n)),
            np.where(rng.random(n) < 0.5, 0.5 * (bid + ask), bid + rng.random(n) * (ask - bid)),
            np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0.05, 2.0, n)),
        )

    def trades(n: int, n_inst: int) -> Trades:
        return Trades(
            times(n),
            rng.integers(0, n_inst, n),
            rng.uniform(0.0, 200.0, n),
            rng.uniform(1e-3, 1e4, n),
            rng.integers(-1, 2, n),
        )

    return Tape(
        "random",
        ("A", "B", "C"),
        c_u,
        c_c,
        c_k,
        c_e,
        quotes(200, nu, False),
        trades(50, nu),
        quotes(300, nc, True),
        trades(80, nc),
    )


def _assert_same(a: Tape, b: Tape) -> None:
    """Same instruments, and the same records as sets ordered by time (files may reorder ties)."""
    assert a.underlyings == b.underlyings
    for name in ("contract_underlying", "contract_kind", "contract_strike", "contract_expiry_day"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for ra, rb in zip(a._records(), b._records(), strict=True):
        ka = np.lexsort((ra.inst, ra.time_ns))
        kb = np.lexsort((rb.inst, rb.time_ns))
        for name in ra.__dataclass_fields__:
            x, y = getattr(ra, name)[ka], getattr(rb, name)[kb]
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y, err_msg=name, strict=True)  # NaN == NaN, bits of floats


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    tape = _random_tape(7)
    # written as a tape, it is read back bit for bit (contracts of a written tape are those its records use)
    path = write_tape(tape, tmp_path / f"t{suffix}")
    back = read_tape(path)
    _assert_same(tape, back)
    # and again: a tape read and written is unchanged
    _assert_same(back, read_tape(write_tape(back, tmp_path / f"u{suffix}")))


def test_a_directory_merges_its_files_by_time(tmp_path: Path) -> None:
    tape = _random_tape(8)
    whole = read_tape(write_tape(tape, tmp_path / "whole.csv"))
    d = tmp_path / "day"
    d.mkdir()
    frame = pd.read_csv(tmp_path / "whole.csv", dtype=str, keep_default_na=False)
    is_trade = frame["type"] == "trade"
    frame[is_trade].to_csv(d / "trades.csv", index=False)
    frame[~is_trade].to_csv(d / "quotes.csv", index=False)
    write_tape(read_tape(d / "trades.csv"), d / "trades.parquet")
    (d / "trades.csv").unlink()
    (d / "notes.txt").write_text("ignored")
    _assert_same(whole, read_tape(d))


def test_write_refuses_an_unknown_format_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tape format"):
        write_tape(_random_tape(1), tmp_path / "t.xlsx")
    assert list(tmp_path.iterdir()) == []


# -- as-of access: no look-ahead -------------------------------------------------------------------


def test_asof_uses_a_record_at_t_never_one_after() -> None:
    t = T0 + 10**9
    time_ns = np.array([T0, t, t + 1, t + 1, t + 5], dtype=np.int64)
    inst = np.array([0, 1, 0, 1, 1])
    grid = np.array([T0 - 1, T0, t, t + 1, t + 4], dtype=np.int64)
    got = asof_index(time_ns, inst, 3, grid)
    # instrument 0: nothing before T0; the T0 record from T0; the one at t + 1 from t + 1 on
    assert got[:, 0].tolist() == [-1, 0, 0, 2, 2]
    # instrument 1: its record stamped exactly at t is used at t, the one at t + 1 not before t + 1
    assert got[:, 1].tolist() == [-1, -1, 1, 3, 3]
    assert got[:, 2].tolist() == [-1] * 5  # no records
    values = np.arange(10.0, 15.0)
    q = Quotes(time_ns, inst, values, values, values, values, values, values)
    np.testing.assert_array_equal(
        asof_values(q, "mid", 3, grid),
        [
            [np.nan, np.nan, np.nan],
            [10, np.nan, np.nan],
            [10, 11, np.nan],
            [12, 13, np.nan],
            [12, 13, np.nan],
        ],
    )
    lo, hi = step_slices(time_ns, grid)
    # step k: the records in (grid[k-1], grid[k]]; step 0 those exactly at grid[0]
    assert list(zip(lo.tolist(), hi.tolist(), strict=True)) == [(0, 0), (0, 1), (1, 2), (2, 4), (4, 4)]


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=60),
    st.lists(st.integers(-5, 45), min_size=1, max_size=20),
)
def test_asof_and_slices_match_brute_force(records: list[tuple[int, int]], grid_list: list[int]) -> None:
    records.sort(key=lambda r: r[0])
    time_ns = np.array([r[0] for r in records], dtype=np.int64)
    inst = np.array([r[1] for r in records], dtype=np.int64)
    grid = np.array(sorted(grid_list), dtype=np.int64)
    got = asof_index(time_ns, inst, 4, grid)
    for k, g in enumerate(grid):
        for j in range(4):
            seen = [i for i in range(len(records)) if inst[i] == j and time_ns[i] <= g]
            assert got[k, j] == (seen[-1] if seen else -1)
    lo, hi = step_slices(time_ns, grid)
    for k, g in enumerate(grid):
        prev = grid[k - 1] if k else g - 1
        want = [i for i in range(len(records)) if prev < time_ns[i] <= g]
        assert list(range(lo[k], hi[k])) == want


def test_time_grid() -> None:
    g = time_grid(T0, 0.1, 4)
    assert g.dtype == np.int64 and g.tolist() == [T0, T0 + 100_000_000, T0 + 200_000_000, T0 + 300_000_000]


# -- the fill rules --------------------------------------------------------------------------------

FP = fk.pack_fill(touch_rate_per_s=0.2, improve_rate_per_s=0.5, dt_s=1.0, passive_size=5.0)
prices = st.one_of(st.floats(0.0, 10.0), st.sampled_from([1.0, 1.05, 1.1, 1.15, 1.2]), st.just(math.nan))
sizes = st.one_of(st.floats(0.0, 50.0), st.sampled_from([0.0, 1.0, 10.0]))


def _both(f_py, f, *args):  # type: ignore[no-untyped-def]
    """The rule's Python form and its compiled twin agree bit for bit; their result."""
    a = f_py(*args)
    b = f(*args)
    np.testing.assert_array_equal(np.array(a), np.array(b), strict=True)
    return a


@given(prices, sizes, prices, sizes, prices, st.floats(1e-6, 50.0), st.sampled_from([-1, 0, 1]))
def test_trade_fill_invariants(bid, bs, ask, asz, price, size, side) -> None:  # type: ignore[no-untyped-def]
    bq, bpx, aq, apx = _both(fk.trade_fill_py, fk.trade_fill, bid, bs, ask, asz, price, size, side)
    assert bq >= 0.0 and aq >= 0.0 and not (bq > 0.0 and aq > 0.0)  # one side at most
    if bq > 0.0:  # a trade at or through our bid, by a seller or an unknown side: at our price, capped
        assert price <= bid and side <= 0 and bpx == bid and bq == min(bs, size)
    if aq > 0.0:
        assert price >= ask and side >= 0 and apx == ask and aq == min(asz, size)
    if bq == 0.0:
        assert math.isnan(bpx)
    if aq == 0.0:
        assert math.isnan(apx)
    # and a live quote that a trade reaches is filled
    if bs > 0.0 and bid == bid and price <= bid and side <= 0:
        assert bq > 0.0
    if (
        asz > 0.0
        and ask == ask
        and price >= ask
        and side >= 0
        and not (side == 0 and bs > 0.0 and price <= bid)
    ):
        assert aq > 0.0


@st.composite
def _near_market(draw: st.DrawFn) -> tuple[float, ...]:
    """A recorded market on a 0.05 grid and our quotes a few ticks around it (at, inside, behind,
    through the touch, at the mid), so that every branch of the rule is reached."""
    tick = 0.05
    mb = draw(st.integers(0, 40)) * tick
    ma = mb + draw(st.integers(0, 6)) * tick  # 0: locked
    bid = mb + draw(st.integers(-2, 8)) * tick
    ask = ma - draw(st.integers(-2, 8)) * tick
    return (
        bid,
        draw(sizes),
        ask,
        draw(sizes),
        mb,
        ma,
        draw(st.one_of(sizes, st.just(math.nan))),
        draw(st.one_of(sizes, st.just(math.nan))),
        draw(st.floats(0.0, 0.5)),
        draw(st.floats(0.0, 0.5)),
    )


_anything = st.tuples(
    prices,
    sizes,
    prices,
    sizes,
    prices,
    prices,
    st.one_of(sizes, st.just(math.nan)),
    st.one_of(sizes, st.just(math.nan)),
    st.floats(0.0, 1.0, exclude_max=True),
    st.floats(0.0, 1.0, exclude_max=True),
)


@given(st.one_of(_near_market(), _anything))
def test_quote_fill_invariants(case: tuple[float, ...]) -> None:
    bid, bs, ask, asz, mb, ma, mbs, mas, ub, ua = case
    bq, bpx, aq, apx = _both(fk.quote_fill_py, fk.quote_fill, bid, bs, ask, asz, mb, ma, mbs, mas, ub, ua, FP)
    mid = 0.5 * (mb + ma)
    if bq > 0.0:
        assert mb < ma  # a two-sided, uncrossed recorded market
        assert bid >= mb  # at or through the touch: a bid behind it never fills
        assert bpx != mid and bpx <= bid and bq <= bs  # never at mid, never above our price
        assert (bpx == ma and bid >= ma) or (bpx == bid and bid < mid)
    if aq > 0.0:
        assert mb < ma and ask <= ma and apx != mid and apx >= ask and aq <= asz
        assert (apx == mb and ask <= mb) or (apx == ask and ask > mid)
    if bq == 0.0:
        assert math.isnan(bpx)
    if aq == 0.0:
        assert math.isnan(apx)
    # and a live quote resting at or inside the touch fills exactly when its draw is below
    # 1 - exp(-rate dt): 0.2 / s at the touch, 0.5 / s inside it, over FP's one-second step
    if mb < ma and bs > 0.0 and mb <= bid < mid:
        assert (bq > 0.0) == (ub < -math.expm1(-(0.2 if bid == mb else 0.5)))
    if mb < ma and asz > 0.0 and mid < ask <= ma:
        assert (aq > 0.0) == (ua < -math.expm1(-(0.2 if ask == ma else 0.5)))


def test_quote_fill_worked_cases() -> None:
    p = math.exp(-0.2)  # a quote at the touch fills with probability 1 - exp(-0.2 / s x 1 s) = 0.1813
    nan = math.nan

    def run(bid, ask, ub=0.0, ua=0.0, mb=1.00, ma=1.10, mbs=nan, mas=nan):  # type: ignore[no-untyped-def]
        return _both(fk.quote_fill_py, fk.quote_fill, bid, 10.0, ask, 10.0, mb, ma, mbs, mas, ub, ua, FP)

    assert run(1.00, 1.10, ub=0.18, ua=0.18)[0::2] == (5.0, 5.0)  # at the touch, draws below 0.1813
    assert run(1.00, 1.10, ub=1 - p + 1e-9, ua=1 - p)[0::2] == (0.0, 0.0)  # draws above (or at) it
    assert run(1.01, 1.09, ub=0.39, ua=0.39) == (5.0, 1.01, 5.0, 1.09)  # inside: 1 - exp(-0.5) = 0.393
    assert run(1.01, 1.09, ub=0.40, ua=0.40)[0::2] == (0.0, 0.0)
    assert run(0.99, 1.11)[0::2] == (0.0, 0.0)  # behind the touch: never, whatever the draw
    assert run(1.05, 1.05)[0::2] == (0.0, 0.0)  # at the mid: never
    assert run(1.07, 1.12)[0::2] == (0.0, 0.0)  # between the mid and the far touch: never
    assert run(1.10, 1.20, ub=0.99, mas=3.0)[:2] == (3.0, 1.10)  # a bid at the offer takes it
    assert run(1.12, 1.30, ub=0.99, mas=3.0)[:2] == (3.0, 1.10)  # crossing takes the offer, its size
    assert run(0.90, 0.95, ua=0.99)[2:] == (10.0, 1.00)  # crossing the bid, size not recorded: all ours
    assert run(1.00, 1.10, mb=1.05, ma=1.05)[0::2] == (0.0, 0.0)  # locked market: nothing
    assert run(1.00, 1.10, mb=nan)[0::2] == (0.0, 0.0)  # one-sided market: nothing


def test_trade_fill_worked_cases() -> None:
    def run(price, size, side, bs=10.0, asz=10.0):  # type: ignore[no-untyped-def]
        return _both(fk.trade_fill_py, fk.trade_fill, 1.00, bs, 1.10, asz, price, size, side)

    bq, bpx, aq, apx = run(1.00, 3.0, SIDE_SELL)  # a sale at our bid fills it, at our price
    assert (bq, bpx, aq) == (3.0, 1.00, 0.0) and math.isnan(apx)
    assert run(0.95, 30.0, SIDE_UNKNOWN)[:2] == (10.0, 1.00)  # through our bid: capped by our size
    assert run(1.01, 30.0, SIDE_SELL)[0::2] == (0.0, 0.0)  # above our bid: not through
    assert run(1.10, 2.0, SIDE_BUY)[2:] == (2.0, 1.10)
    assert run(1.20, 2.0, SIDE_SELL)[0::2] == (0.0, 0.0)  # a seller does not lift offers
    assert run(0.90, 2.0, SIDE_BUY)[0::2] == (0.0, 0.0)  # a buyer does not hit bids
    assert run(0.90, 2.0, SIDE_SELL, bs=0.0)[0::2] == (0.0, 0.0)  # no size left on our bid


def test_pack_fill_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="touch_rate_per_s must be finite and >= 0"):
        fk.pack_fill(-1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="dt_s must be finite and > 0"):
        fk.pack_fill(0.1, 0.5, 0.0)
    with pytest.raises(ValueError, match="passive_size must be > 0"):
        fk.pack_fill(0.1, 0.5, 1.0, passive_size=0.0)
    assert fk.pack_fill(0.1, 0.5, 1.0)[fk.FP_PASSIVE_SIZE] == math.inf


# -- a synthetic run as a tape ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def calm_run():  # type: ignore[no-untyped-def]
    cfg = SimConfig.load(ROOT / "scenarios/sim/calm_day.toml").with_overrides(
        {"sim.steps": 900, "sim.quotes_from_s": 0.0, "sim.quotes_window_s": 900.0}
    )
    return simulate(cfg)


def test_synthetic_run_as_a_tape(calm_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = calm_run
    tape = read_tape(write_tape(tape_from_result(res), tmp_path / "calm.csv"))
    assert len(res.fills) > 20
    # the market path, bit for bit: one quote per step at the step's time and one at the last step's
    # end (step 900, where the last step's P&L is marked), mid = spot, vol = the level
    grid = time_grid(T0, 1.0, 901)  # the session opens at 2026-01-05 14:30Z, one-second steps
    uq = tape.underlying_quotes
    spot = np.append(res.underlyings["spot"].to_numpy(), res.market_end["spot"].to_numpy())
    np.testing.assert_array_equal(uq.time_ns, grid)
    np.testing.assert_array_equal(uq.mid, spot, strict=True)
    np.testing.assert_array_equal(uq.vol[:900], res.underlyings["vol"].to_numpy(), strict=True)
    assert uq.vol[900] == res.market_end["vol"].iloc[0]
    hs = res.config.underlying[0].half_spread
    np.testing.assert_array_equal(uq.bid, spot - hs)
    # each step's quote is what asof gives at that step, never the next one
    np.testing.assert_array_equal(asof_index(uq.time_ns, uq.inst, 1, grid)[:, 0], np.arange(901))

    # our recorded quotes, replayed against the tape's trades (the orders that reached us) with the
    # trade-through rule, give back each order's fill before the pre-trade check: same contract, side
    # and price, the smaller of the order's size and our quote's, bit for bit (the whole run's replay,
    # pre-trade check included: tests/sim/test_replay.py)
    fills = res.orders.sort_values(["step"], kind="stable")
    q = res.quotes.set_index(["step", "contract"])
    ot = tape.option_trades
    lo, hi = step_slices(ot.time_ns, grid)
    key = {}
    for r in fills.itertuples():
        expiry = (np.datetime64("2026-01-05") + np.timedelta64(math.ceil(r.expiry_days), "D")).astype(
            np.int64
        )
        kind = KIND_CALL if r.kind == "call" else KIND_PUT
        key[r.contract] = int(
            tape.contract_ids(np.array([0]), np.array([kind]), np.array([r.strike]), np.array([expiry]))[0]
        )
    inst_of = {v: k for k, v in key.items()}
    replayed = []
    for k in range(900):
        left: dict[tuple[int, int], float] = {}
        for j in range(lo[k], hi[k]):
            i = inst_of[int(ot.inst[j])]
            row = q.loc[(k, i)]
            bs = left.setdefault((i, 1), row["bid_size"])
            asz = left.setdefault((i, -1), row["ask_size"])
            bq, bpx, aq, apx = fk.trade_fill(
                row["bid"], bs, row["ask"], asz, ot.price[j], ot.size[j], ot.side[j]
            )
            if bq > 0.0:
                left[(i, 1)] -= bq
                replayed.append((k, i, 1, bq, bpx))
            if aq > 0.0:
                left[(i, -1)] -= aq
                replayed.append((k, i, -1, aq, apx))
    ours = q.loc[list(zip(fills["step"], fills["contract"], strict=True))]
    quoted = np.where(fills["side"] == 1, ours["bid_size"], ours["ask_size"])
    size = np.minimum(fills["size"].to_numpy(), quoted)
    want = list(zip(fills["step"], fills["contract"], fills["side"], size, fills["price"], strict=True))
    assert sorted(replayed) == sorted(want)


def test_bundled_example_is_the_calm_day_as_written_now(calm_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """scenarios/tapes/calm_day.csv is what make_calm_day.py writes (the calm day's first 900 steps;
    the fixture's zoom window changes what the run records, not its figures)."""
    bundled = ROOT / "scenarios/tapes/calm_day.csv"
    written = write_tape(tape_from_result(calm_run), tmp_path / "calm_day.csv")
    assert written.read_bytes() == bundled.read_bytes(), "run python scenarios/tapes/make_calm_day.py"
    tape = read_tape(bundled)
    # a quote at each step's time and at the last step's end; a trade per order that reached us
    assert len(tape.underlying_quotes) == 901 and len(tape.option_trades) == len(calm_run.orders)


def test_synthetic_tape_of_two_underlyings_numbers_them_by_name(calm_run) -> None:  # type: ignore[no-untyped-def]
    """Underlyings in the config's order ZZZ, AAA: the tape numbers them AAA 0, ZZZ 1, and each quote
    keeps its own underlying's half-spread and path; a fill of the underlying itself is an underlying
    trade."""
    import dataclasses

    from optmm.sim import SimResult

    cfg = calm_run.config
    aaa = cfg.underlying[0]
    two = dataclasses.replace(
        cfg,
        underlying=(dataclasses.replace(aaa, name="ZZZ", half_spread=0.02), aaa),
        sim=dataclasses.replace(cfg.sim, steps=2),
    )
    und = pd.DataFrame(
        {
            "path": 0,
            "step": [0, 0, 1, 1],
            "underlying": ["ZZZ", "AAA", "ZZZ", "AAA"],
            "spot": [50.0, 100.0, 51.0, 101.0],
            "vol": [0.3, 0.2, 0.31, 0.21],
        }
    )
    fills = pd.DataFrame(
        {
            "path": 0,
            "step": [1, 1],
            "underlying": ["ZZZ", "AAA"],
            "kind": ["stock", "put"],
            "strike": [np.nan, 95.0],
            "expiry_days": [np.nan, 6.5],
            "side": [1, -1],
            "size": [2.0, 3.0],
            "price": [50.98, 0.5],
        }
    )
    res = SimResult(two, 1, "x", pd.DataFrame(), und, fills, pd.DataFrame(), pd.DataFrame(), orders=fills)
    tape = tape_from_result(res)
    assert tape.underlyings == ("AAA", "ZZZ")
    uq = tape.underlying_quotes
    assert uq.inst.tolist() == [1, 0, 1, 0]
    assert uq.bid.tolist() == [50.0 - 0.02, 100.0 - 0.01, 51.0 - 0.02, 101.0 - 0.01]
    assert uq.vol.tolist() == [0.3, 0.2, 0.31, 0.21]
    ut, ot = tape.underlying_trades, tape.option_trades
    assert (ut.inst.tolist(), ut.price.tolist(), ut.side.tolist()) == ([1], [50.98], [SIDE_SELL])
    assert (ot.inst.tolist(), ot.side.tolist(), ot.time_ns.tolist()) == ([0], [SIDE_BUY], [T0 + 10**9])
    # a 6.5-day expiry is named by its whole days, as the controller names it: 2026-01-05 + 7
    assert tape.contract_expiry_day.tolist() == [int(np.datetime64("2026-01-12").astype(np.int64))]
    assert tape.contract_kind.tolist() == [KIND_PUT] and tape.contract_underlying.tolist() == [0]
