"""American options on cash dividends (escrowed model, finite differences) against QuantLib.

Reference: QuantLib's ``FdBlackScholesVanillaEngine`` with the ``Escrowed`` cash-dividend model
on a 400 x 800 grid (its own error on these options is ~1e-4 of the strike, measured against a
2000 x 2000 grid), one option at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
from ql_reference import Market, dividend_vector, option_args, random_options

from optmm.greeks import (
    AmericanIVStatus,
    _american_fd,
    american_greeks,
    american_implied_vol,
    american_price,
    bsm_price,
)

EX_DAYS = np.array([45, 136, 227, 318, 409, 500, 591, 682])
AMOUNTS = np.array([1.0, 1.0, 1.2, 1.2, 1.4, 0.5, 1.5, 1.5])
DIVIDENDS = (EX_DAYS / 365.0, AMOUNTS)


def _random_options(n: int, seed: int) -> dict[str, np.ndarray]:
    return random_options(n, seed, ex_days=EX_DAYS, days_high=2 * 365 + 1, strikes=(60.0, 170.0), vol_max=1.0)


_args = option_args


@pytest.fixture(scope="module")
def reference():
    import QuantLib as ql

    o = _random_options(6, seed=31)
    m = Market()
    engine = ql.FdBlackScholesVanillaEngine(
        m.process,
        dividend_vector(EX_DAYS, AMOUNTS),
        400,
        800,
        0,
        ql.FdmSchemeDesc.Douglas(),
        False,
        -ql.nullDouble(),
        ql.FdBlackScholesVanillaEngine.Escrowed,
    )
    ref = np.empty(6)
    for i in range(6):
        m.set(o["spot"][i], o["rate"][i], o["div_yield"][i], o["vol"][i])
        opt = m.option(o["strike"][i], o["days"][i], bool(o["is_call"][i]), american=True)
        opt.setPricingEngine(engine)
        ref[i] = opt.NPV()
    return o, ref


@pytest.mark.parametrize(("accuracy", "tolerance"), [("default", 2e-3), ("high", 4e-4)])
def test_against_quantlib_fd_escrowed(reference, accuracy, tolerance):
    o, ref = reference
    price = american_price(*_args(o), dividends=DIVIDENDS, accuracy=accuracy)
    err = np.abs(price - ref) / o["strike"]
    assert err.max() < tolerance, (err, accuracy)


def test_bounds_everywhere():
    o = _random_options(400, seed=32)
    am = american_price(*_args(o), dividends=DIVIDENDS)
    eu = bsm_price(*_args(o), dividends=DIVIDENDS)
    intrinsic = np.maximum(np.where(o["is_call"], o["spot"] - o["strike"], o["strike"] - o["spot"]), 0.0)
    # European in the same model: the American's grid error is ~1e-3 of the strike at most
    assert (am >= eu - 2e-3 * o["strike"]).all()
    assert (am >= intrinsic).all()


def test_no_dividends_agrees_with_the_alo_engine():
    o = _random_options(20, seed=33)
    fd = american_price(*_args(o), dividends=([], []), accuracy="high")
    alo = american_price(*_args(o), accuracy="high")
    np.testing.assert_allclose(fd, alo, atol=2e-4 * o["strike"].max())


def test_exercise_just_after_an_ex_date():
    # A low-vol put deep in the money at a high rate: its holder waits for each dividend, then
    # exercises as soon as the stock goes ex. A grid that could only exercise a step after the
    # ex-date would lose about r K dt; the engine agrees with a 16 times finer grid.
    args = (100.0, 120.0, 3.1, 0.06, 0.014, 0.08, False)
    coarse = american_price(*args, dividends=DIVIDENDS)
    fine = _american_fd.price_one_py(*args, *map(np.asarray, DIVIDENDS), _american_fd.Grid(1201, 2400, 5.5))
    assert coarse == pytest.approx(fine, abs=2e-4 * 120.0)


def test_greeks_against_differences():
    o = _random_options(12, seed=34)
    args = _args(o)
    g = american_greeks(*args, dividends=DIVIDENDS, accuracy="high")
    s = o["spot"]
    h = 0.5
    up = american_price(s + h, *args[1:], dividends=DIVIDENDS, accuracy="high")
    dn = american_price(s - h, *args[1:], dividends=DIVIDENDS, accuracy="high")
    np.testing.assert_allclose(g.delta, (up - dn) / (2 * h), atol=2e-3)
    hv = 1e-3
    vu = american_price(*args[:5], o["vol"] + hv, o["is_call"], dividends=DIVIDENDS, accuracy="high")
    vd = american_price(*args[:5], o["vol"] - hv, o["is_call"], dividends=DIVIDENDS, accuracy="high")
    # The engine's vega keeps its grid while bumping the vol; repricing moves the grid with the vol
    # (its width is in standard deviations), so the two differ by the grid error's own slope.
    np.testing.assert_allclose(g.vega, (vu - vd) / (2 * hv), atol=2e-2, rtol=1e-2)


def test_implied_vol_round_trip():
    o = _random_options(10, seed=35)
    price = american_price(*_args(o), dividends=DIVIDENDS, accuracy="high")
    rest = (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["is_call"])
    vol, status = american_implied_vol(price, *rest, dividends=DIVIDENDS, return_status=True)
    intrinsic = np.maximum(np.where(o["is_call"], o["spot"] - o["strike"], o["strike"] - o["spot"]), 0.0)
    vega = american_greeks(*_args(o), dividends=DIVIDENDS, accuracy="high").vega
    judged = (price - intrinsic > 1e-3 * o["strike"]) & (vega > 1e-1)  # where the price fixes the vol
    assert judged.sum() >= 3
    assert (status[judged] == AmericanIVStatus.OK).all()
    np.testing.assert_allclose(vol[judged], o["vol"][judged], rtol=1e-6)


def test_bad_dividends():
    with pytest.raises(ValueError, match=r"dividends: amounts has invalid value -1.0 at index 0"):
        american_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True, dividends=([0.5], [-1.0]))
    with pytest.raises(ValueError, match=r"dividends: present value .* at index 1"):
        american_greeks([100.0, 3.0], 100.0, 1.0, 0.05, 0.0, 0.2, True, dividends=([0.5], [5.0]))
    with pytest.raises(ValueError, match=r"strike: invalid value .* at index 0"):
        american_price(100.0, [-1.0], 1.0, 0.05, 0.0, 0.2, True, dividends=([0.5], [1.0]))


def test_theta_against_calendar_differences():
    # theta = -dV/dt as calendar time passes, the ex-dates coming closer with the expiry. The grid
    # moves with the expiry (its steps are spread over the life), so the difference carries the
    # grid error's own slope: a loose check that the Black-Scholes theta and the dividends' drift
    # are both there.
    o = _random_options(8, seed=36)
    args = _args(o)
    g = american_greeks(*args, dividends=DIVIDENDS, accuracy="high")
    ex, amounts = DIVIDENDS
    h = 2e-3

    def price_after(dt: float) -> np.ndarray:
        return american_price(
            o["spot"], o["strike"], o["t"] - dt, *args[3:], dividends=(ex - dt, amounts), accuracy="high"
        )

    np.testing.assert_allclose(g.theta, (price_after(h) - price_after(-h)) / (2 * h), atol=0.05, rtol=2e-2)


def test_fd_time_nodes_from_dates_in_any_order():
    """The finite-difference engine takes its time nodes from the ex-dates inside (0, T) in time
    order, whatever the schedule's order, repeats, or dates at 0 or past expiry (worth nothing
    here); the compiled kernel and its plain-Python twin agree."""
    grid = _american_fd.Grid(41, 30, 5.0)
    s_star, k, t, r, q, sigma = 95.0, 100.0, 1.0, 0.03, 0.01, 0.3
    dx = 2.0 * grid.width * sigma * np.sqrt(t) / (grid.n_x - 1)
    sorted_ex, sorted_amt = np.array([0.25, 0.5, 0.5, 0.75]), np.array([1.0, 0.5, 0.7, 1.0])
    shuffled_ex = np.array([1.5, 0.75, 0.5, 0.0, 0.25, 0.5])
    shuffled_amt = np.array([0.0, 1.0, 0.7, 0.0, 1.0, 0.5])
    for is_call in (False, True):
        args = (s_star, k, t, r, q, sigma, is_call)
        want = _american_fd.solve(*args, sorted_ex, sorted_amt, np.log(s_star), dx, grid)
        got = _american_fd.solve(*args, shuffled_ex, shuffled_amt, np.log(s_star), dx, grid)
        twin = _american_fd.solve_py(*args, shuffled_ex, shuffled_amt, np.log(s_star), dx, grid)
        assert got[:3] == pytest.approx(want[:3], rel=1e-12, abs=1e-14)
        assert twin[:3] == pytest.approx(got[:3], rel=1e-12, abs=1e-14)
        assert got[3] == want[3] == twin[3]
        # the dividends matter: without them the value moves by far more than the tolerance
        bare = _american_fd.solve(*args, sorted_ex[:0], sorted_amt[:0], np.log(s_star), dx, grid)
        assert abs(bare[0] - want[0]) > 1e-3
