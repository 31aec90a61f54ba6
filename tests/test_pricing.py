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
