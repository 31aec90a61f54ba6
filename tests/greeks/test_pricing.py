"""optmm.pricing: each contract priced by the engine its terms call for, rows in any order."""

import numpy as np

from optmm.greeks import Greeks, american_greeks, bsm_greeks
from optmm.pricing import Carry, contract_greeks, contract_price, plain

DIVS = (np.array([0.1, 0.35]), np.array([0.8, 0.8]))
CARRY = Carry(
    ("A", "B"), np.array([0.04, 0.03]), np.array([0.0, 0.01]), (DIVS[0], np.zeros(0)), (DIVS[1], np.zeros(0))
)


def test_each_row_priced_by_its_own_engine():
    u = np.array([1, 0, 1, 0, 0])
    am = np.array([True, False, False, True, False])
    spot = np.array([50.0, 100.0, 55.0, 100.0, 90.0])
    strike = np.array([52.0, 100.0, 50.0, 95.0, 100.0])
    call = np.array([False, True, True, False, True])
    g = contract_greeks(CARRY, u, spot, strike, 0.5, 0.25, call, am)
    expected = [
        american_greeks(50.0, 52.0, 0.5, 0.03, 0.01, 0.25, False),
        bsm_greeks(100.0, 100.0, 0.5, 0.04, 0.0, 0.25, True, dividends=DIVS),
        bsm_greeks(55.0, 50.0, 0.5, 0.03, 0.01, 0.25, True),
        american_greeks(100.0, 95.0, 0.5, 0.04, 0.0, 0.25, False, dividends=DIVS),
        bsm_greeks(90.0, 100.0, 0.5, 0.04, 0.0, 0.25, True, dividends=DIVS),
    ]
    for i, e in enumerate(expected):
        for name in Greeks.FIELDS:
            assert getattr(g, name)[i] == float(getattr(e, name)), (i, name)
    price = contract_price(CARRY, u, spot, strike, 0.5, 0.25, call, am)
    np.testing.assert_array_equal(price, g.price)
    np.testing.assert_array_equal(plain(CARRY, u, am), [False, False, True, False, False])


def test_elapsed_drops_dividends_gone_ex():
    # 0.2 years on, the first dividend (at 0.1) is gone and the second is 0.15 away
    p = contract_price(CARRY, np.array([0]), 100.0, 100.0, 0.3, 0.25, True, np.array([False]), elapsed=0.2)
    e = bsm_greeks(100.0, 100.0, 0.3, 0.04, 0.0, 0.25, True, dividends=(np.array([0.15]), np.array([0.8])))
    assert p[0] == float(e.price)
    past = contract_price(CARRY, np.array([0]), 100.0, 100.0, 0.1, 0.25, True, np.array([False]), elapsed=0.4)
    assert past[0] == float(bsm_greeks(100.0, 100.0, 0.1, 0.04, 0.0, 0.25, True).price)


# --------------------------------------------------------------------------------------------------
# the terms a market and a book give each contract


def _market(**kwargs):
    import datetime as dt

    from optmm.market import Market
    from optmm.surface import FlatSurface

    args = {
        "valuation": dt.datetime(2026, 11, 20, 10, 0),  # local (New York) time
        "spot": {"A": 100.0, "B": 50.0, "C": 20.0},
        "rate": {"A": 0.04, "B": 0.03, "C": 0.05},
        "div_yield": {"A": 0.0, "B": 0.01, "C": 0.0},
        "surface": {"A": FlatSurface(0.2), "B": FlatSurface(0.3), "C": FlatSurface(0.4)},
        "dividends": {"A": [("2026-11-20", 9.0), ("2026-12-10", 0.8), ("2027-03-10", 0.8)]},
        "borrow": {"B": 0.02},
        "settlement": {"C": "AM"},
        "asset": {"A": "equity", "B": "etf", "C": "index"},
    }
    args.update(kwargs)
    return Market(**args)


def test_carry_takes_yield_borrow_and_the_dividends_to_come():
    from optmm.pricing import carry

    m = _market()
    c = carry(m, ["B", "A", "C"])
    assert c.underlyings == ("B", "A", "C")
    np.testing.assert_array_equal(c.rate, [0.03, 0.04, 0.05])
    np.testing.assert_array_equal(c.q, [0.01 + 0.02, 0.0, 0.0])
    # A's 9.0 went ex at 09:30 today, before the 10:00 valuation; the others at 09:30 local
    day = 86400.0
    np.testing.assert_array_equal(
        c.div_times[1], [(20 * day - 1800) / day / 365, (110 * day - 1800) / day / 365]
    )
    np.testing.assert_array_equal(c.div_amounts[1], [0.8, 0.8])
    np.testing.assert_array_equal(c.has_dividends, [False, True, False])
    # valued at the close a day earlier, today's dividend is still to come
    assert carry(m.with_valuation("2026-11-19"), ["A"]).div_amounts[0].tolist() == [9.0, 0.8, 0.8]


def test_option_times_and_flags_per_row():
    from optmm.pricing import american_flags, option_times

    m = _market()
    und = np.array(["A", "C", "C", "A"], dtype=object)
    exp = np.array(["2026-11-20", "2026-12-18", "2026-12-18", "NaT"], dtype="datetime64[D]")
    day = 86400.0
    t = option_times(m, und, exp, np.array(["", "", "PM", ""], dtype=object))
    np.testing.assert_array_equal(
        t, [6 / 24 / 365, (28 * day - 1800) / day / 365, (28 * day + 6 * 3600) / day / 365, 0]
    )
    np.testing.assert_array_equal(american_flags(m, und), [True, False, False, True])
    np.testing.assert_array_equal(
        american_flags(m, und, np.array(["european", "American", "", ""], dtype=object)),
        [False, True, False, True],
    )
    try:
        american_flags(m, und, np.array(["", "asian", "", ""], dtype=object))
    except ValueError as exc:
        assert str(exc) == "style: unknown value 'asian' at index 1 (expected american or european)"
    else:
        raise AssertionError("an unknown style passed")


def test_book_terms_read_the_book_columns():
    import pandas as pd

    from optmm.book import Book
    from optmm.pricing import book_terms

    m = _market()
    book = Book.from_frame(
        pd.DataFrame(
            {
                "underlying": ["C", "C", "A", "A"],
                "kind": ["call", "put", "put", "stock"],
                "strike": [20.0, 20.0, 100.0, None],
                "expiry": ["2026-12-18", "2026-12-18", "2026-11-20", None],
                "quantity": [1, 1, 1, 100],
                "style": ["", "american", "European", ""],
                "settlement": ["PM", "", "", ""],
            }
        )
    )
    t, american = book_terms(book, m)
    day = 86400.0
    np.testing.assert_array_equal(
        t, [(28 * day + 6 * 3600) / day / 365, (28 * day - 1800) / day / 365, 6 / 24 / 365, 0]
    )
    np.testing.assert_array_equal(american, [False, True, False, False])


def test_book_terms_are_the_per_row_terms_of_a_large_book():
    """book_terms asks option_times / american_flags once per distinct combination: the result is
    theirs row by row, whatever the mix of blank and given terms, with or without the caller's codes."""
    import pandas as pd

    from optmm.book import Book
    from optmm.pricing import american_flags, book_terms, option_times

    m = _market()
    rng = np.random.default_rng(4)
    n = 3000
    und = np.array(["A", "B", "C"], dtype=object)[rng.integers(0, 3, n)]
    kind = rng.integers(0, 3, n)
    expiry = np.datetime64("2026-11-20") + rng.integers(0, 400, n).astype("timedelta64[D]")
    option = kind != 2
    style = np.where(option, np.array(["", "american", "European"], dtype=object)[rng.integers(0, 3, n)], "")
    settle = np.where(option, np.array(["", "AM", "pm"], dtype=object)[rng.integers(0, 3, n)], "")
    frame = pd.DataFrame(
        {
            "underlying": und,
            "kind": np.array(["call", "put", "stock"])[kind],
            "strike": np.where(option, 100.0, np.nan),
            "expiry": np.where(option, expiry.astype(str), None),
            "quantity": 1,
            "style": style,
            "settlement": settle,
        }
    )
    for given in (True, False):  # the terms given on some rows; all blank
        book = Book.from_frame(frame if given else frame.drop(columns=["style", "settlement"]))
        want_t = np.where(option, option_times(m, book.underlying, book.expiry, book.settlement), 0.0)
        want_am = american_flags(m, book.underlying, book.style) & option
        codes = pd.factorize(book.underlying, sort=True)[0]
        for t, am in (book_terms(book, m), book_terms(book, m, codes)):
            np.testing.assert_array_equal(t, want_t)
            np.testing.assert_array_equal(am, want_am)
