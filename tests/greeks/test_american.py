"""American options with continuous carry: the ALO engine against QuantLib, bounds, Greeks, implied vol.

Reference: QuantLib's ``QdFpAmericanEngine`` with its high-precision scheme (tanh-sinh quadrature,
30 Chebyshev nodes, 10 iterations), one option at a time. Tolerances are stated as fractions of
the strike, above the worst errors measured over these inputs (given beside each).
"""

from __future__ import annotations

import numpy as np
import pytest
from ql_reference import Market

from optmm.greeks import (
    AmericanIVStatus,
    Greeks,
    _american,
    american_greeks,
    american_implied_vol,
    american_price,
    bsm_greeks,
    bsm_price,
)


def _random_options(n: int, seed: int, rate_lo: float = -0.01) -> dict[str, np.ndarray]:
    """Spot 100; strikes 50-200 log-uniform (deep in and out of the money at short expiries); 1 day
    to 5 years in whole days; rates -1%..8%, yields 0..5%, vols 5%..200% log-uniform."""
    rng = np.random.default_rng(seed)
    days = rng.integers(1, 5 * 365 + 1, n)
    return {
        "spot": np.full(n, 100.0),
        "strike": np.exp(rng.uniform(np.log(50.0), np.log(200.0), n)),
        "days": days,
        "t": days / 365.0,
        "rate": rng.uniform(rate_lo, 0.08, n),
        "div_yield": rng.uniform(0.0, 0.05, n),
        "vol": np.exp(rng.uniform(np.log(0.05), np.log(2.0), n)),
        "is_call": rng.random(n) < 0.5,
    }


def _args(o: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["vol"], o["is_call"])


def _ql_prices(o: dict[str, np.ndarray]) -> np.ndarray:
    import QuantLib as ql

    m = Market()
    engine = ql.QdFpAmericanEngine(m.process, ql.QdFpAmericanEngine.highPrecisionScheme())
    out = np.empty(o["t"].shape[0])
    for i in range(out.shape[0]):
        m.set(o["spot"][i], o["rate"][i], o["div_yield"][i], o["vol"][i])
        opt = m.option(o["strike"][i], o["days"][i], bool(o["is_call"][i]), american=True)
        opt.setPricingEngine(engine)
        out[i] = opt.NPV()
    return out


@pytest.fixture(scope="module")
def reference():
    # Rates from 0: QuantLib's QD+ start takes the put of put-call symmetry, and a call at a
    # negative rate becomes a put at a negative yield, where its start lies outside (0, K].
    o = _random_options(80, seed=21, rate_lo=0.0)
    return o, _ql_prices(o)


@pytest.mark.parametrize(("accuracy", "tolerance"), [("default", 4e-5), ("high", 1.5e-6)])
def test_against_quantlib_high_precision(reference, accuracy, tolerance):
    # Worst errors measured on the benchmark's 300 options (bench/american.py): default 1.8e-5,
    # high 2.1e-7 of the strike (QuantLib's own fast scheme 3.7e-5, accurate scheme 1.0e-6); on
    # these 80, high 7.0e-7.
    o, ref = reference
    price = american_price(*_args(o), accuracy=accuracy)
    err = np.abs(price - ref) / o["strike"]
    assert err.max() < tolerance, (accuracy, err.max(), int(err.argmax()))


def test_high_is_closer_to_the_reference_than_default(reference):
    o, ref = reference
    err = {a: np.abs(american_price(*_args(o), accuracy=a) - ref) / o["strike"] for a in ("default", "high")}
    assert err["high"].max() < 0.1 * err["default"].max()
    assert np.median(err["high"]) < np.median(err["default"])


def test_bounds_everywhere():
    # American >= European and >= exercise value, on inputs with negative rates too.
    o = _random_options(3000, seed=22)
    am = american_price(*_args(o))
    eu = bsm_price(*_args(o))
    intrinsic = np.maximum(np.where(o["is_call"], o["spot"] - o["strike"], o["strike"] - o["spot"]), 0.0)
    assert (am >= eu - 1e-12 * o["strike"]).all()
    assert (am >= intrinsic).all()
    assert (am <= np.where(o["is_call"], o["spot"], o["strike"])).all()


def test_put_call_symmetry():
    o = _random_options(200, seed=23)
    c = american_price(o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["vol"], True)
    p = american_price(o["strike"], o["spot"], o["t"], o["div_yield"], o["rate"], o["vol"], False)
    np.testing.assert_allclose(c, p, rtol=1e-13, atol=1e-13)


def test_european_regime_is_european_exactly():
    # A call without dividends, a put at a negative rate above the yield: never exercised early.
    # The same closed form; the European kernels fuse multiply-adds, so the last bit may differ.
    args = (100.0, [80.0, 100.0, 130.0], 1.5, 0.03, 0.0, 0.3, True)
    g, e = american_greeks(*args), bsm_greeks(*args)
    for name in Greeks.FIELDS:
        np.testing.assert_allclose(getattr(g, name), getattr(e, name), rtol=4e-15, atol=1e-15)
    args = (100.0, [80.0, 100.0, 130.0], 1.5, -0.01, 0.0, 0.3, False)
    np.testing.assert_allclose(american_price(*args), bsm_price(*args), rtol=4e-15)


def test_zero_vol_is_the_best_deterministic_exercise():
    # Put, r = 5%, q = 1%, no vol: worth exercising now (K - S) or at expiry, whichever is more.
    now = american_greeks(100.0, 120.0, 1.0, 0.05, 0.01, 0.0, False)
    assert now.price == pytest.approx(20.0) and now.delta == -1.0
    # Deep call, r = 10%, q = 2%: S e^{-qt} - K e^{-rt} is largest at t* = ln(rK/(qS)) / (r - q) = 1
    # (78.416), above its values now (78.334) and at expiry in 2 years (78.339).
    k = 0.02 * 100.0 * np.exp(0.08) / 0.1
    g = american_greeks(100.0, k, 2.0, 0.1, 0.02, 0.0, True)
    assert g.price == pytest.approx(100.0 * np.exp(-0.02) - k * np.exp(-0.1), rel=1e-14)
    assert g.delta == pytest.approx(np.exp(-0.02), rel=1e-14)
    assert g.rho == pytest.approx(k * np.exp(-0.1), rel=1e-14)
    assert g.theta == 0.0 and g.gamma == 0.0 and g.vega == 0.0


def test_greeks_against_differences_of_the_price():
    o = _random_options(40, seed=24, rate_lo=0.0)
    args = _args(o)
    g = american_greeks(*args, accuracy="high")
    s = o["spot"]
    h = 1e-3 * s
    up = american_price(s + h, *args[1:], accuracy="high")
    dn = american_price(s - h, *args[1:], accuracy="high")
    mid = american_price(*args, accuracy="high")
    np.testing.assert_array_equal(g.price, mid)
    # The engine's price carries ~1e-9 S of discretisation noise; the differences amplify it.
    np.testing.assert_allclose(g.delta, (up - dn) / (2 * h), atol=2e-5)
    np.testing.assert_allclose(g.gamma, (up - 2 * mid + dn) / (h * h), atol=2e-3, rtol=2e-3)
    dt = 1e-4
    later = american_price(s, o["strike"], o["t"] - dt, *args[3:], accuracy="high")
    earlier = american_price(s, o["strike"], o["t"] + dt, *args[3:], accuracy="high")
    np.testing.assert_allclose(
        g.theta, (later - earlier) / (2 * dt), atol=2e-3 * o["strike"].max() / 100, rtol=2e-3
    )


def test_vega_and_rho_against_quantlib_differences():
    import QuantLib as ql

    o = _random_options(8, seed=25, rate_lo=0.0)
    g = american_greeks(*_args(o), accuracy="high")
    m = Market()
    engine = ql.QdFpAmericanEngine(m.process, ql.QdFpAmericanEngine.highPrecisionScheme())

    def ql_price(i: int, dr: float = 0.0, dv: float = 0.0) -> float:
        m.set(o["spot"][i], o["rate"][i] + dr, o["div_yield"][i], o["vol"][i] + dv)
        opt = m.option(o["strike"][i], o["days"][i], bool(o["is_call"][i]), american=True)
        opt.setPricingEngine(engine)
        return opt.NPV()

    for i in range(8):
        hv, hr = 1e-4, 1e-5  # QuantLib's high-precision prices carry ~1e-10: small bumps are safe
        vega = (ql_price(i, dv=hv) - ql_price(i, dv=-hv)) / (2 * hv)
        rho = (ql_price(i, dr=hr) - ql_price(i, dr=-hr)) / (2 * hr)
        # the engine's own slope at "high" (its price error ~1e-7 K moves with the inputs)
        assert g.vega[i] == pytest.approx(vega, rel=3e-5, abs=1e-4), i
        assert g.rho[i] == pytest.approx(rho, rel=3e-5, abs=1e-3), i


def test_vanna_volga_against_differences_of_delta_and_vega():
    o = _random_options(30, seed=26, rate_lo=0.0)
    args = _args(o)
    g = american_greeks(*args, accuracy="high")
    h = 1e-3
    up = american_greeks(*args[:5], o["vol"] + h, o["is_call"], accuracy="high")
    dn = american_greeks(*args[:5], o["vol"] - h, o["is_call"], accuracy="high")
    np.testing.assert_allclose(g.vanna, (up.delta - dn.delta) / (2 * h), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(g.volga, (up.vega - dn.vega) / (2 * h), atol=5e-2, rtol=5e-3)


def test_exercised_options_are_worth_intrinsic_with_flat_greeks():
    g = american_greeks(100.0, 200.0, 0.5, 0.05, 0.0, 0.2, False)
    assert g.price == 100.0 and g.delta == -1.0
    assert g.gamma == g.vega == g.theta == g.rho == g.vanna == g.volga == 0.0


def test_low_vol_put_far_from_the_density_form():
    # r >> q at a low vol: the density form of the boundary equation does not converge there
    # (0.2405 against 0.5752); the CDF form does. Reference: QuantLib QdFp high precision.
    import QuantLib as ql

    m = Market()
    m.set(100.0, 0.06817, 0.00148, 0.05241)
    opt = m.option(99.46945, 1513, False, american=True)
    opt.setPricingEngine(ql.QdFpAmericanEngine(m.process, ql.QdFpAmericanEngine.highPrecisionScheme()))
    ref = opt.NPV()
    assert ref == pytest.approx(0.5752, abs=1e-4)
    args = (100.0, 99.46945, 1513 / 365, 0.06817, 0.00148, 0.05241, False)
    assert american_price(*args, accuracy="high") == pytest.approx(ref, abs=1e-6 * 99.5)


def test_twins_agree():
    sch = _american.make_scheme(8, 1, _american.gauss_legendre(8), _american.gauss_legendre(27))
    for case in ((100.0, 110.0, 0.7, 0.04, 0.01, 0.3, False), (100.0, 90.0, 2.0, 0.01, 0.04, 0.5, True)):
        assert _american.price_py(*case, sch) == _american.price_scalar(*case, sch)
        for rho in (True, False):
            want = _american.marks(*case, sch, rho)
            assert _american.marks_py(*case, sch, rho) == pytest.approx(want, rel=1e-14)


def test_implied_vol_round_trip_and_statuses():
    o = _random_options(60, seed=27)
    price = american_price(*_args(o), accuracy="high")
    rest = (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["is_call"])
    vol, status = american_implied_vol(price, *rest, return_status=True)
    intrinsic = np.maximum(np.where(o["is_call"], o["spot"] - o["strike"], o["strike"] - o["spot"]), 0.0)
    g = american_greeks(*_args(o), accuracy="high")
    judged = (price - intrinsic > 1e-4 * o["strike"]) & (g.vega > 1e-2)
    assert judged.sum() > 30
    assert (status[judged] == AmericanIVStatus.OK).all()
    np.testing.assert_allclose(vol[judged], o["vol"][judged], rtol=1e-7)
    cases = [
        ((5.0, 100.0, 110.0, 1.0, 0.05, 0.0, False), AmericanIVStatus.BELOW_INTRINSIC),
        ((110.0, 100.0, 110.0, 1.0, 0.05, 0.0, False), AmericanIVStatus.ABOVE_MAXIMUM),
        ((1.0, 100.0, 110.0, 0.0, 0.05, 0.0, False), AmericanIVStatus.EXPIRED),
        ((10.0, 100.0, 110.0, 1.0, 0.05, 0.0, False), AmericanIVStatus.NO_PREMIUM),
    ]
    for args, code in cases:
        v, s = american_implied_vol(*args, return_status=True)
        assert np.isnan(v) and s == code, (args, v, s)


def test_bad_input():
    with pytest.raises(ValueError, match=r"accuracy: must be one of 'default', 'high', got 'best'"):
        american_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True, accuracy="best")
    with pytest.raises(ValueError, match=r"vol: invalid value .* at index 2"):
        american_greeks(100.0, 100.0, 1.0, 0.05, 0.0, [0.2, 0.3, -0.1], True)
    with pytest.raises(
        ValueError, match=r"rate, div_yield: at index 1 the option has two exercise boundaries"
    ):
        american_price(100.0, 100.0, 1.0, [-0.01, -0.01], [0.0, -0.02], 0.2, False)
    with pytest.raises(ValueError, match=r"at index 0 the option has two exercise boundaries"):
        american_implied_vol(5.0, 100.0, 100.0, 1.0, -0.02, -0.01, True)
