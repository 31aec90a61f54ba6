"""Edge cases, input validation and the array API contract of the BSM engine.

Edge cases are answers, not errors:
* t <= 0: intrinsic value, delta +-1 / 0, every other Greek exactly 0;
* vol == 0 with t > 0: discounted forward intrinsic and its derivatives;
* extreme but valid inputs: finite, no NaN, no RuntimeWarning.
Bad inputs raise ValueError naming the argument and the first bad index.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

import numpy as np
import pytest

from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol

FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
EPS = np.finfo(float).eps
ARGS = ("spot", "strike", "t", "rate", "div_yield", "vol", "is_call")


def _kw(**over):
    base = dict(spot=100.0, strike=95.0, t=0.5, rate=0.03, div_yield=0.01, vol=0.25, is_call=True)
    base.update(over)
    return base


# ---------------------------------------------------------------------------
# Expired options (t <= 0)
# ---------------------------------------------------------------------------

EXPIRED_CASES = [
    # spot, strike, is_call, price, delta
    (110.0, 100.0, True, 10.0, 1.0),
    (90.0, 100.0, True, 0.0, 0.0),
    (100.0, 100.0, True, 0.0, 0.0),
    (90.0, 100.0, False, 10.0, -1.0),
    (110.0, 100.0, False, 0.0, 0.0),
    (100.0, 100.0, False, 0.0, 0.0),
]


@pytest.mark.parametrize("t", [0.0, -0.0, -1e-12, -0.5])
@pytest.mark.parametrize(("spot", "strike", "is_call", "price", "delta"), EXPIRED_CASES)
def test_expired_is_intrinsic(t, spot, strike, is_call, price, delta):
    # Exact: intrinsic max(phi(S-K), 0) is one subtraction of exactly representable
    # numbers; delta and the zeros are exact by contract.  Rates/vols are arbitrary
    # (non-zero) and must not leak into an expired option's value.
    g = bsm_greeks(spot, strike, t, 0.05, 0.02, 0.3, is_call)
    assert g.price == price
    assert g.delta == delta
    for name in ("gamma", "vega", "theta", "rho", "vanna", "volga"):
        assert getattr(g, name) == 0.0, name
    assert bsm_price(spot, strike, t, 0.05, 0.02, 0.3, is_call) == price


def test_expired_vectorized_mixed_with_live():
    # Expired and live options in one call: the expired ones are exact, the live ones
    # are unaffected (equal to their scalar evaluation).
    spot = np.array([110.0, 90.0, 110.0, 90.0, 100.0])
    strike = 100.0
    t = np.array([0.0, -1.0, 0.5, 0.0, 1.0])
    is_call = np.array([True, False, True, True, False])
    g = bsm_greeks(spot, strike, t, 0.04, 0.01, 0.2, is_call)
    np.testing.assert_array_equal(g.price[[0, 1, 3]], [10.0, 10.0, 0.0])
    np.testing.assert_array_equal(g.delta[[0, 1, 3]], [1.0, -1.0, 0.0])
    for name in ("gamma", "vega", "theta", "rho", "vanna", "volga"):
        np.testing.assert_array_equal(getattr(g, name)[[0, 1, 3]], 0.0, err_msg=name)
    for i in (2, 4):
        gi = bsm_greeks(spot[i], strike, t[i], 0.04, 0.01, 0.2, is_call[i])
        for name in FIELDS:
            assert getattr(g, name)[i] == pytest.approx(float(getattr(gi, name)), rel=4 * EPS), name


# ---------------------------------------------------------------------------
# Zero volatility with t > 0
# ---------------------------------------------------------------------------


def _zero_vol_expected(spot, strike, t, r, q, is_call):
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    phi = 1.0 if is_call else -1.0
    fwd = phi * (spot * dq - strike * dr)
    if fwd > 0:
        return dict(
            price=fwd,
            delta=phi * dq,
            rho=phi * strike * t * dr,
            theta=phi * (q * spot * dq - r * strike * dr),
        )
    return dict(price=0.0, delta=0.0, rho=0.0, theta=0.0)


@pytest.mark.parametrize("is_call", [True, False], ids=["call", "put"])
@pytest.mark.parametrize(
    ("spot", "strike", "t", "r", "q"),
    [
        (100.0, 90.0, 0.5, 0.05, 0.02),  # call fwd-ITM
        (100.0, 110.0, 0.5, 0.05, 0.02),  # put fwd-ITM
        (100.0, 100.0, 2.0, 0.06, 0.01),  # spot == strike but forward ITM for the call
        (100.0, 100.0, 2.0, -0.01, 0.04),  # spot == strike, forward ITM for the put
        (100.0, 101.0, 1.0, 0.05, 0.0),  # spot < strike, yet call forward-ITM (r > 0)
        (50.0, 150.0, 30.0, 0.07, 0.0),  # long-dated: call forward-ITM
    ],
)
def test_zero_vol_is_discounted_forward_intrinsic(spot, strike, t, r, q, is_call):
    # Expected values use the same elementary operations as the formulas in the
    # contract, so 4 ulps (relative) + 4 ulps of spot (absolute, for the subtraction)
    # is all the rounding there can be.
    g = bsm_greeks(spot, strike, t, r, q, 0.0, is_call)
    exp = _zero_vol_expected(spot, strike, t, r, q, is_call)
    for name, val in exp.items():
        got = float(getattr(g, name))
        assert abs(got - val) <= 4 * EPS * abs(val) + 4 * EPS * spot, (name, got, val)
        if val == 0.0:
            assert got == 0.0, (name, got)
    for name in ("gamma", "vega", "vanna", "volga"):
        assert getattr(g, name) == 0.0, name
    assert float(bsm_price(spot, strike, t, r, q, 0.0, is_call)) == pytest.approx(
        exp["price"], rel=4 * EPS, abs=4 * EPS * spot
    )


def test_zero_vol_hand_values():
    # Hand-computed example, independent of the helper above:
    # S=100, K=90, t=1, r=5%, q=2%, call:  price = 100 e^-0.02 - 90 e^-0.05 = 12.40922...,
    # delta = e^-0.02, rho = 90 e^-0.05, theta = 0.02*100 e^-0.02 - 0.05*90 e^-0.05.
    eq, er = math.exp(-0.02), math.exp(-0.05)
    g = bsm_greeks(100.0, 90.0, 1.0, 0.05, 0.02, 0.0, True)
    assert float(g.price) == pytest.approx(12.409219125611, abs=1e-11)
    assert float(g.price) == pytest.approx(100 * eq - 90 * er, rel=1e-14)
    assert float(g.delta) == pytest.approx(eq, rel=1e-15)
    assert float(g.rho) == pytest.approx(90 * er, rel=1e-15)
    assert float(g.theta) == pytest.approx(0.02 * 100 * eq - 0.05 * 90 * er, rel=1e-14)
    # ... and the corresponding put is out of the money: everything exactly 0.
    gp = bsm_greeks(100.0, 90.0, 1.0, 0.05, 0.02, 0.0, False)
    for name in FIELDS:
        assert getattr(gp, name) == 0.0, name


def test_zero_vol_is_limit_of_small_vol():
    # Continuity: at vol = 1e-8 (still t > 0) the Greeks that survive at vol = 0 are
    # within 1e-9 relative of the vol = 0 answers for a strongly ITM forward (d ~ 1e6).
    for is_call, strike in ((True, 90.0), (False, 110.0)):
        g0 = bsm_greeks(100.0, strike, 0.5, 0.04, 0.01, 0.0, is_call)
        g1 = bsm_greeks(100.0, strike, 0.5, 0.04, 0.01, 1e-8, is_call)
        for name in ("price", "delta", "theta", "rho"):
            assert float(getattr(g1, name)) == pytest.approx(float(getattr(g0, name)), rel=1e-9), name


# ---------------------------------------------------------------------------
# Extreme but valid inputs: finite, sane, no warnings
# ---------------------------------------------------------------------------


def _extreme_grid():
    spot = np.array([1e-4, 1.0, 100.0, 1e6])
    moneyness = np.array([1e-6, 1e-3, 0.2, 0.9, 1.0, 1.1, 5.0, 1e3, 1e6])  # K/S
    t = np.array([1e-6, 1.0 / 365.0, 1.0, 30.0])
    vol = np.array([1e-8, 1e-3, 0.2, 1.0, 5.0])
    rate = np.array([-0.05, 0.0, 0.2])
    q = np.array([-0.02, 0.0, 0.1])
    is_call = np.array([True, False])
    grids = np.meshgrid(spot, moneyness, t, vol, rate, q, is_call, indexing="ij")
    s, m, tt, v, r, qq, c = (x.ravel() for x in grids)
    return dict(spot=s, strike=s * m, t=tt, rate=r, div_yield=qq, vol=v, is_call=c.astype(bool))


def test_extreme_inputs_finite_and_sane():
    # Deep ITM/OTM (K/S from 1e-6 to 1e6), 1e-6-year to 30-year expiries, vol 1e-8..5,
    # negative rates and yields: all outputs finite (no NaN/inf) with no RuntimeWarning,
    # and inside the model-free bounds.
    d = _extreme_grid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = bsm_greeks(**d)
        p = bsm_price(**d)
    for name in FIELDS:
        a = getattr(g, name)
        assert a.shape == d["spot"].shape, name
        bad = ~np.isfinite(a)
        assert not bad.any(), (name, {k: v[bad][:3] for k, v in d.items()})
    assert np.isfinite(p).all()

    s, k, t, r, q, c = (d[x] for x in ("spot", "strike", "t", "rate", "div_yield", "is_call"))
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    lower = np.maximum(np.where(c, s * dq - k * dr, k * dr - s * dq), 0.0)
    upper = np.where(c, s * dq, k * dr)
    scale = np.maximum(s, k)
    # 1e-12 relative slack for rounding of values up to max(S, K).
    assert (g.price >= lower - 1e-12 * scale).all()
    assert (g.price <= upper + 1e-12 * scale).all()
    assert (g.gamma >= 0).all() and (g.vega >= 0).all()
    assert ((g.delta >= -1e-15) & (g.delta <= dq * (1 + 4 * EPS)) | ~c).all()
    assert ((g.delta <= 1e-15) & (g.delta >= -dq * (1 + 4 * EPS)) | c).all()
    np.testing.assert_allclose(g.price, p, rtol=4 * EPS, atol=0)


@pytest.mark.parametrize("t", [1e-6, 30.0])
@pytest.mark.parametrize("vol", [0.01, 5.0])
def test_extreme_expiry_and_vol_match_parity(t, vol):
    # The extreme regimes must still satisfy put-call parity (1e-12 * S).
    strikes = np.array([1.0, 50.0, 99.0, 100.0, 101.0, 200.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = bsm_price(100.0, strikes, t, 0.03, 0.01, vol, True)
        p = bsm_price(100.0, strikes, t, 0.03, 0.01, vol, False)
    fwd = 100.0 * np.exp(-0.01 * t) - strikes * np.exp(-0.03 * t)
    err = np.abs((c - p) - fwd)
    assert (err <= 1e-12 * np.maximum(100.0, strikes)).all(), (strikes, c, p, fwd, err)


def test_tiny_expiry_is_close_to_intrinsic():
    # t = 1e-6 y, vol 20%: sigma sqrt(t) = 2e-4, so away from the strike the value is
    # intrinsic to ~1e-12 (the time value at 10 sd is ~e^-50).
    g = bsm_greeks(np.array([90.0, 110.0]), 100.0, 1e-6, 0.0, 0.0, 0.2, True)
    np.testing.assert_allclose(g.price, [0.0, 10.0], atol=1e-12)
    np.testing.assert_allclose(g.delta, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(g.gamma, [0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def _msg(name, index=None):
    """Regex: message mentions the argument ``name`` and (optionally) 'index <i>'."""
    pat = rf"(?s)(?=.*(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_]))"
    if index is not None:
        pat += rf"(?=.*\bindex {index}\b)"
    return pat


def _array_kw(n=6, **over):
    base = dict(
        spot=np.full(n, 100.0),
        strike=np.linspace(80.0, 120.0, n),
        t=np.full(n, 0.5),
        rate=np.full(n, 0.03),
        div_yield=np.full(n, 0.01),
        vol=np.full(n, 0.25),
        is_call=np.array([True, False] * (n // 2)),
    )
    base.update(over)
    return base


BAD_VALUES = {
    "spot": [np.nan, 0.0, -1.0, np.inf, -np.inf],
    "strike": [np.nan, 0.0, -5.0, np.inf, -np.inf],
    "t": [np.nan, np.inf, -np.inf],
    "rate": [np.nan, np.inf, -np.inf],
    "div_yield": [np.nan, np.inf, -np.inf],
    "vol": [np.nan, -1e-12, -0.2, np.inf],
}
BAD_CASES = [(name, v) for name, vals in BAD_VALUES.items() for v in vals]


@pytest.mark.parametrize(("name", "bad"), BAD_CASES, ids=[f"{n}={v}" for n, v in BAD_CASES])
@pytest.mark.parametrize("func", [bsm_greeks, bsm_price], ids=["bsm_greeks", "bsm_price"])
def test_bad_value_raises_with_name_and_first_index(func, name, bad):
    kw = _array_kw()
    arr = kw[name].copy()
    arr[3] = bad
    arr[5] = bad  # the *first* bad index must be reported
    kw[name] = arr
    with pytest.raises(ValueError, match=_msg(name, 3)):
        func(**kw)


@pytest.mark.parametrize(("name", "bad"), BAD_CASES, ids=[f"{n}={v}" for n, v in BAD_CASES])
def test_bad_scalar_value_raises_with_name(name, bad):
    with pytest.raises(ValueError, match=_msg(name)):
        bsm_greeks(**_kw(**{name: bad}))


@pytest.mark.parametrize("name", ["spot", "strike", "t", "rate", "div_yield", "vol"])
def test_bad_value_in_broadcast_argument(name):
    # The bad value sits in an argument that is broadcast against the others; the
    # argument is still named and its own first bad index (3) reported.
    kw = _kw(spot=np.full(6, 100.0))
    arr = np.full(6, float(_kw()[name]))
    arr[3] = np.nan
    kw[name] = arr
    with pytest.raises(ValueError, match=_msg(name, 3)):
        bsm_greeks(**kw)


@pytest.mark.parametrize(
    "bad",
    [
        "c",
        np.array(["c", "p", "c", "p"]),
        np.array([True, False, True, "x"], dtype=object),
    ],
    ids=["str", "str-array", "object-array-with-str"],
)
def test_is_call_not_boolean_like_raises(bad):
    with pytest.raises(ValueError, match=_msg("is_call")):
        bsm_greeks(**_kw(spot=np.full(4, 100.0), is_call=bad))


def test_is_call_accepts_bool_and_01_ints():
    spot = np.full(4, 100.0)
    ref = bsm_greeks(**_kw(spot=spot, is_call=np.array([True, False, True, False])))
    for flags in ([1, 0, 1, 0], np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0], dtype=np.int8)):
        g = bsm_greeks(**_kw(spot=spot, is_call=flags))
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(g, name), getattr(ref, name), err_msg=name)
    assert bsm_price(**_kw(is_call=1)) == bsm_price(**_kw(is_call=True))
    assert bsm_price(**_kw(is_call=0)) == bsm_price(**_kw(is_call=False))
    assert bsm_price(**_kw(is_call=np.True_)) == bsm_price(**_kw(is_call=True))


def test_shapes_that_do_not_broadcast_raise_naming_shapes():
    with pytest.raises(ValueError, match=r"(?s)(?=.*\(3,\))(?=.*\(4,\))"):
        bsm_greeks(**_kw(spot=np.full(3, 100.0), strike=np.full(4, 100.0)))
    with pytest.raises(ValueError, match=r"(?s)(?=.*\(2, 3\))(?=.*\(2,\))"):
        bsm_price(**_kw(vol=np.full((2, 3), 0.2), is_call=np.array([True, False])))


def test_implied_vol_bad_inputs():
    n = 6
    kw = dict(
        spot=np.full(n, 100.0),
        strike=np.full(n, 100.0),
        t=np.full(n, 0.5),
        rate=np.full(n, 0.03),
        div_yield=np.full(n, 0.01),
        is_call=np.ones(n, dtype=bool),
    )
    price = np.full(n, 5.0)
    for bad in (-1.0, -1e-300, np.nan, np.inf):
        p = price.copy()
        p[3] = bad
        with pytest.raises(ValueError, match=_msg("price", 3)):
            implied_vol(p, **kw)
    for name in ("spot", "strike", "t", "rate", "div_yield"):
        for bad in BAD_VALUES[name]:
            kk = dict(kw)
            a = kk[name].copy()
            a[3] = bad
            kk[name] = a
            with pytest.raises(ValueError, match=_msg(name, 3)):
                implied_vol(price, **kk)
    with pytest.raises(ValueError, match=_msg("is_call")):
        implied_vol(price, **{**kw, "is_call": np.array(["c"] * n)})
    with pytest.raises(ValueError, match=r"(?s)(?=.*\(6,\))(?=.*\(4,\))"):
        implied_vol(price, **{**kw, "strike": np.full(4, 100.0)})


# ---------------------------------------------------------------------------
# API contract: types, shapes, broadcasting, immutability
# ---------------------------------------------------------------------------


def test_greeks_is_frozen_dataclass_of_arrays():
    g = bsm_greeks(**_kw())
    assert isinstance(g, Greeks)
    assert dataclasses.is_dataclass(g)
    assert {f.name for f in dataclasses.fields(g)} == set(FIELDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.price = np.array(0.0)  # type: ignore[misc]
    for name in FIELDS:
        a = getattr(g, name)
        assert isinstance(a, np.ndarray), name
        assert a.shape == (), name
        assert a.dtype == np.float64, name


def test_scalar_inputs_give_0d_outputs():
    p = bsm_price(**_kw())
    assert isinstance(p, np.ndarray) and p.shape == ()
    v = implied_vol(p, 100.0, 95.0, 0.5, 0.03, 0.01, True)
    assert isinstance(v, np.ndarray) and v.shape == ()
    v2, st = implied_vol(p, 100.0, 95.0, 0.5, 0.03, 0.01, True, return_status=True)
    assert v2.shape == () and st.shape == () and st.dtype == np.int8
    assert st == IVStatus.OK
    # numpy scalars and 0-d arrays are scalars too
    g = bsm_greeks(np.float64(100.0), np.array(95.0), 0.5, np.float32(0.03), 0.01, 0.25, np.bool_(True))
    assert all(getattr(g, f).shape == () for f in FIELDS)


def test_broadcast_scalar_rate_with_array_strikes():
    strikes = np.linspace(60.0, 140.0, 9)
    g = bsm_greeks(100.0, strikes, 0.75, 0.04, 0.015, 0.3, False)
    for name in FIELDS:
        a = getattr(g, name)
        assert a.shape == (9,), name
        expected = [
            float(getattr(bsm_greeks(100.0, k, 0.75, 0.04, 0.015, 0.3, False), name)) for k in strikes
        ]
        np.testing.assert_allclose(a, expected, rtol=4 * EPS, atol=0, err_msg=name)
    # python lists broadcast like arrays
    np.testing.assert_array_equal(bsm_price(100.0, list(strikes), 0.75, 0.04, 0.015, 0.3, False), g.price)


def test_broadcast_2d():
    spot = np.array([[90.0], [100.0], [110.0]])  # (3, 1)
    strike = np.array([[95.0, 100.0, 105.0, 120.0]])  # (1, 4)
    t = np.array([0.25, 0.5, 1.0, 2.0])  # (4,)
    is_call = np.array([[True], [False], [True]])  # (3, 1)
    g = bsm_greeks(spot, strike, t, 0.02, 0.0, 0.2, is_call)
    p = bsm_price(spot, strike, t, 0.02, 0.0, 0.2, is_call)
    assert p.shape == (3, 4)
    for name in FIELDS:
        a = getattr(g, name)
        assert a.shape == (3, 4), name
        for i in range(3):
            for j in range(4):
                ref = float(
                    getattr(
                        bsm_greeks(spot[i, 0], strike[0, j], t[j], 0.02, 0.0, 0.2, is_call[i, 0]),
                        name,
                    )
                )
                assert a[i, j] == pytest.approx(ref, rel=4 * EPS, abs=0), (name, i, j)
    # implied vol broadcasts the same way and returns the vol back
    v, st = implied_vol(p, spot, strike, t, 0.02, 0.0, is_call, return_status=True)
    assert v.shape == (3, 4) and st.shape == (3, 4) and st.dtype == np.int8
    np.testing.assert_array_equal(st, IVStatus.OK)
    np.testing.assert_allclose(v, 0.2, rtol=0, atol=1e-10)


def test_non_contiguous_and_other_dtypes():
    base = np.linspace(80.0, 120.0, 20)
    strided = base[::2]  # non-contiguous view
    g1 = bsm_greeks(100.0, strided, 0.5, 0.03, 0.01, 0.25, True)
    g2 = bsm_greeks(100.0, np.ascontiguousarray(strided), 0.5, 0.03, 0.01, 0.25, True)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name), err_msg=name)
    # integer spot/strike arrays are accepted and give float64 results
    gi = bsm_greeks(np.array([100, 101]), np.array([100, 95]), 1, 0, 0, 0.2, True)
    assert gi.price.dtype == np.float64 and np.all(gi.price > 0)


def _readonly(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def test_inputs_never_mutated_and_readonly_ok():
    # Includes the edge-case values (t <= 0, vol == 0) that an implementation might
    # be tempted to clip in place.
    n = 8
    d = dict(
        spot=np.linspace(80.0, 120.0, n),
        strike=np.full(n, 100.0),
        t=np.array([0.5, 0.0, -1.0, 1e-6, 1.0, 2.0, 0.25, 30.0]),
        rate=np.linspace(-0.01, 0.05, n),
        div_yield=np.linspace(0.0, 0.03, n),
        vol=np.array([0.2, 0.0, 0.3, 5.0, 0.0, 1.0, 0.1, 0.4]),
        is_call=np.array([True, False] * 4),
    )
    ro = {k: _readonly(v) for k, v in d.items()}
    snapshot = {k: v.copy() for k, v in d.items()}
    g = bsm_greeks(**ro)
    p = bsm_price(**ro)
    g_w = bsm_greeks(**d)  # writable inputs must not be modified either
    bsm_price(**d)
    for k in d:
        np.testing.assert_array_equal(ro[k], snapshot[k], err_msg=k)
        np.testing.assert_array_equal(d[k], snapshot[k], err_msg=k)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(g, name), getattr(g_w, name), err_msg=name)
    np.testing.assert_array_equal(p, g.price)

    live = ro["t"] > 0
    price = _readonly(np.where(live, g.price, 1.0))
    args = {k: ro[k] for k in ("spot", "strike", "t", "rate", "div_yield", "is_call")}
    v, st = implied_vol(price, **args, return_status=True)
    v_w = implied_vol(np.array(price), **{k: np.array(a) for k, a in args.items()})
    np.testing.assert_array_equal(v, v_w)
    np.testing.assert_array_equal(st[~live], IVStatus.EXPIRED)
    np.testing.assert_array_equal(price, np.where(live, g.price, 1.0))
    for k in args:
        np.testing.assert_array_equal(args[k], snapshot[k], err_msg=k)
