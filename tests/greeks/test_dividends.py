"""European options on a schedule of cash dividends (escrowed model): prices, Greeks, implied vol.

Reference: QuantLib's ``AnalyticDividendEuropeanEngine`` (price, delta, gamma, vega, theta, rho),
one option at a time; vanna and volga against central differences of optmm's own delta and vega.
"""

from __future__ import annotations

import numpy as np
import pytest
from ql_reference import Market, dividend_vector, option_args, random_options

from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol

EX_DAYS = np.array([20, 111, 202, 293, 384, 475, 566, 657, 748, 839])
AMOUNTS = np.array([0.9, 1.0, 1.0, 1.1, 1.1, 1.2, 0.0, 1.3, 1.3, 1.4])
DIVIDENDS = (EX_DAYS / 365.0, AMOUNTS)


def _random_options(n: int, seed: int) -> dict[str, np.ndarray]:
    return random_options(n, seed, ex_days=EX_DAYS, days_high=3 * 365, strikes=(40.0, 250.0), vol_max=2.0)


_args = option_args


def test_against_quantlib_analytic_dividend_engine():
    import QuantLib as ql

    o = _random_options(300, seed=11)
    g = bsm_greeks(*_args(o), dividends=DIVIDENDS)
    m = Market()
    divs = dividend_vector(EX_DAYS, AMOUNTS)
    for i in range(300):
        m.set(o["spot"][i], o["rate"][i], o["div_yield"][i], o["vol"][i])
        opt = m.option(o["strike"][i], o["days"][i], bool(o["is_call"][i]), american=False)
        opt.setPricingEngine(ql.AnalyticDividendEuropeanEngine(m.process, divs))
        ref = {
            "price": opt.NPV(),
            "delta": opt.delta(),
            "gamma": opt.gamma(),
            "vega": opt.vega(),
            "theta": opt.theta(),
            "rho": opt.rho(),
        }
        for name, value in ref.items():
            # Same closed form; the differences are rounding in the two implementations.
            scale = {"price": 100.0, "delta": 1.0, "gamma": 0.01, "vega": 100.0}.get(name, 100.0)
            assert getattr(g, name)[i] == pytest.approx(value, rel=1e-11, abs=1e-12 * scale), (name, i)


def test_vanna_volga_against_differences():
    o = _random_options(200, seed=12)
    args = _args(o)
    g = bsm_greeks(*args, dividends=DIVIDENDS)
    h = 1e-5
    up = bsm_greeks(*args[:5], o["vol"] + h, o["is_call"], dividends=DIVIDENDS)
    dn = bsm_greeks(*args[:5], o["vol"] - h, o["is_call"], dividends=DIVIDENDS)
    np.testing.assert_allclose(g.vanna, (up.delta - dn.delta) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.volga, (up.vega - dn.vega) / (2 * h), rtol=1e-6, atol=1e-5)


def test_theta_moves_the_ex_dates_with_the_calendar():
    # theta = -dV/dt as calendar time passes: expiry and every ex-date come closer together.
    o = _random_options(200, seed=13)
    args = _args(o)
    g = bsm_greeks(*args, dividends=DIVIDENDS)
    h = 1e-6
    ex, amounts = DIVIDENDS

    def price_after(dt: float) -> np.ndarray:
        keep = ex - dt >= 0.0  # none of them goes ex within dt here
        assert keep.all()
        return bsm_price(o["spot"], o["strike"], o["t"] - dt, *args[3:], dividends=(ex - dt, amounts))

    np.testing.assert_allclose(g.theta, (price_after(h) - price_after(-h)) / (2 * h), rtol=1e-5, atol=1e-5)


def test_rho_includes_the_dividends_discounting():
    o = _random_options(200, seed=14)
    args = _args(o)
    g = bsm_greeks(*args, dividends=DIVIDENDS)
    h = 1e-6
    up = bsm_price(*args[:3], o["rate"] + h, *args[4:], dividends=DIVIDENDS)
    dn = bsm_price(*args[:3], o["rate"] - h, *args[4:], dividends=DIVIDENDS)
    np.testing.assert_allclose(g.rho, (up - dn) / (2 * h), rtol=1e-6, atol=1e-5)


def test_none_and_empty_schedules_change_nothing():
    o = _random_options(500, seed=15)
    args = _args(o)
    base = bsm_greeks(*args)
    for dividends in (([], []), ([2.5, 4.0], [0.0, 3.0])):  # empty; zero, and past every expiry
        g = bsm_greeks(*args, dividends=dividends)
        for name in Greeks.FIELDS:
            np.testing.assert_array_equal(getattr(g, name), getattr(base, name))
        np.testing.assert_array_equal(bsm_price(*args, dividends=dividends), bsm_price(*args))


def test_one_dividend_as_two_scalars():
    assert bsm_price(100.0, 90.0, 1.0, 0.0, 0.0, 0.2, True, dividends=(0.5, 2.0)) == bsm_price(
        98.0, 90.0, 1.0, 0.0, 0.0, 0.2, True
    )


def test_dividend_on_or_after_expiry_is_ignored():
    one = bsm_price(100.0, 100.0, 0.5, 0.03, 0.0, 0.3, True, dividends=([0.25], [2.0]))
    same = bsm_price(100.0, 100.0, 0.5, 0.03, 0.0, 0.3, True, dividends=([0.25, 0.5, 0.7], [2.0, 5.0, 5.0]))
    assert one == same
    assert one < bsm_price(100.0, 100.0, 0.5, 0.03, 0.0, 0.3, True)


def test_price_is_bsm_on_the_escrowed_spot():
    # An independent statement of the model: PV at the carry, then the plain closed form.
    o = _random_options(300, seed=16)
    ex, amounts = DIVIDENDS
    before = ex[None, :] < o["t"][:, None]
    pv = (before * amounts * np.exp(-(o["rate"] - o["div_yield"])[:, None] * ex[None, :])).sum(axis=1)
    expected = bsm_price(o["spot"] - pv, *_args(o)[1:])
    np.testing.assert_allclose(bsm_price(*_args(o), dividends=DIVIDENDS), expected, rtol=1e-13, atol=1e-13)


def test_implied_vol_round_trip():
    o = _random_options(1000, seed=17)
    args = _args(o)
    price = bsm_price(*args, dividends=DIVIDENDS)
    rest = (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["is_call"])
    vol, status = implied_vol(price, *rest, dividends=DIVIDENDS, return_status=True)
    g = bsm_greeks(*args, dividends=DIVIDENDS)
    judged = (price - np.maximum(0, 0) > 1e-6) & (g.vega > 1e-3)
    assert (status[judged] == IVStatus.OK).all()
    np.testing.assert_allclose(vol[judged], o["vol"][judged], rtol=1e-9)
    # Below the intrinsic of the escrowed forward: NaN and its status.
    v, s = implied_vol(0.0, 100.0, 50.0, 1.0, 0.0, 0.0, True, dividends=([0.5], [5.0]), return_status=True)
    assert np.isnan(v) and s == IVStatus.BELOW_INTRINSIC


def test_inputs_are_not_mutated():
    o = _random_options(50, seed=18)
    ex = DIVIDENDS[0].copy()
    amounts = DIVIDENDS[1].copy()
    for a in (ex, amounts, *o.values()):
        a.flags.writeable = False
    bsm_greeks(*_args(o), dividends=(ex, amounts))
    implied_vol(np.full(50, 5.0), *_args(o)[:5], o["is_call"], dividends=(ex, amounts))


@pytest.mark.parametrize(
    ("dividends", "message"),
    [
        (([0.1, -0.2], [1.0, 1.0]), r"dividends: ex_times has invalid value -0.2 at index 1"),
        (([0.1, 0.2], [1.0, -1.0]), r"dividends: amounts has invalid value -1.0 at index 1"),
        (([0.1, np.nan], [1.0, 1.0]), r"dividends: ex_times has invalid value nan at index 1"),
        (([0.1, 0.2], [1.0]), r"dividends: ex_times has 2 values but amounts has 1"),
        ((0.1, 1.0, 2.0), r"dividends: must be a pair"),
        (None.__class__, r"dividends: must be a pair"),
        (([[0.1]], [[1.0]]), r"dividends: ex_times must be one-dimensional"),
        ((["a"], [1.0]), r"dividends: ex_times cannot be read"),
    ],
)
def test_bad_schedules(dividends, message):
    with pytest.raises(ValueError, match=message):
        bsm_greeks(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True, dividends=dividends)


def test_dividends_worth_the_spot_are_refused_at_their_index():
    with pytest.raises(ValueError, match=r"dividends: present value .* not below the spot at index 2"):
        bsm_price([100.0, 100.0, 5.0], 100.0, 1.0, 0.0, 0.0, 0.2, True, dividends=([0.5], [5.0]))
    with pytest.raises(ValueError, match=r"at index \(1, 0\)"):
        bsm_greeks([[100.0], [5.0]], [100.0, 90.0], 1.0, 0.0, 0.0, 0.2, True, dividends=([0.5], [5.0]))
    # An invalid spot is named as such, not as a lack of escrowed stock.
    with pytest.raises(ValueError, match=r"spot: invalid value .*nan.* at index 1"):
        bsm_price([100.0, np.nan], 100.0, 1.0, 0.0, 0.0, 0.2, True, dividends=([0.5], [5.0]))
    # Expired options have no dividends to pay.
    assert bsm_price(5.0, 1.0, 0.0, 0.0, 0.0, 0.2, True, dividends=([0.5], [5.0])) == 4.0


def test_escrow_twins_agree():
    from optmm.greeks._dividend import escrow, escrow_py

    ex, amounts = DIVIDENDS
    for t in (0.0, 0.3, 1.0, 2.5):
        assert escrow(100.0, t, 0.04, 0.01, ex, amounts) == escrow_py(100.0, t, 0.04, 0.01, ex, amounts)
