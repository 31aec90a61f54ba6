"""Property-based tests (hypothesis) of the BSM engine.

Profile: see tests/conftest.py (HYPOTHESIS_PROFILE, default "ci").

Domain unless stated otherwise: spot 1-10_000, log(K/S) in [-3, 3], t 1 day-10 y,
vol 0.01-5, r -5%..20%, q -2%..15%, calls and puts.

Rounding tolerance for comparisons between two prices: 16 eps (S + K).  The price is
a difference of terms of size <= max(S, K), each carrying a few ulps of rounding, so
two mathematically ordered prices can appear swapped by at most a few ulps of S + K;
any real violation of the ordering (or of parity) is far larger.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, note
from hypothesis import strategies as st

from optmm.greeks import IVStatus, bsm_greeks, bsm_price, implied_vol

EPS = np.finfo(float).eps


def _f(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


spots = _f(1.0, 10_000.0)
log_moneyness = _f(-3.0, 3.0)
expiries = _f(1.0 / 365.0, 10.0)
vols = _f(0.01, 5.0)
rates = _f(-0.05, 0.20)
yields_ = _f(-0.02, 0.15)


def _rtol(spot, strike):
    return 16 * EPS * (spot + strike)


@given(spots, log_moneyness, expiries, rates, yields_, vols)
def test_put_call_parity(spot, lm, t, r, q, vol):
    strike = spot * np.exp(lm)
    c = float(bsm_price(spot, strike, t, r, q, vol, True))
    p = float(bsm_price(spot, strike, t, r, q, vol, False))
    fwd = spot * np.exp(-q * t) - strike * np.exp(-r * t)
    note(f"strike={strike!r} c={c!r} p={p!r} fwd={fwd!r}")
    # 1e-12 * max(S, K): see test_greeks_reference.test_put_call_parity.
    assert abs((c - p) - fwd) <= 1e-12 * max(spot, strike)


@given(spots, log_moneyness, log_moneyness, expiries, rates, yields_, vols, st.booleans())
def test_price_monotone_in_strike(spot, lm1, lm2, t, r, q, vol, is_call):
    # Call price decreasing and put price increasing in strike; and the slope is at
    # most the discount factor: |V(K2) - V(K1)| <= e^{-rt} (K2 - K1).
    k1, k2 = sorted((spot * np.exp(lm1), spot * np.exp(lm2)))
    v1, v2 = (float(x) for x in bsm_price(spot, np.array([k1, k2]), t, r, q, vol, is_call))
    tol = _rtol(spot, k2)
    note(f"k1={k1!r} k2={k2!r} v1={v1!r} v2={v2!r}")
    if is_call:
        assert v2 <= v1 + tol
    else:
        assert v2 >= v1 - tol
    assert abs(v2 - v1) <= np.exp(-r * t) * (k2 - k1) * (1 + 1e-12) + tol


@given(spots, log_moneyness, expiries, rates, yields_, vols, vols, st.booleans())
def test_price_increasing_in_vol(spot, lm, t, r, q, vol1, vol2, is_call):
    strike = spot * np.exp(lm)
    lo, hi = sorted((vol1, vol2))
    p_lo, p_hi = (float(x) for x in bsm_price(spot, strike, t, r, q, np.array([lo, hi]), is_call))
    note(f"strike={strike!r} p_lo={p_lo!r} p_hi={p_hi!r}")
    assert p_hi >= p_lo - _rtol(spot, strike)


@given(spots, log_moneyness, expiries, rates, yields_, vols, st.booleans())
def test_price_within_model_free_bounds(spot, lm, t, r, q, vol, is_call):
    strike = spot * np.exp(lm)
    dq, dr = np.exp(-q * t), np.exp(-r * t)
    lower = max((spot * dq - strike * dr) if is_call else (strike * dr - spot * dq), 0.0)
    upper = spot * dq if is_call else strike * dr
    p = float(bsm_price(spot, strike, t, r, q, vol, is_call))
    tol = _rtol(spot, strike)
    assert lower - tol <= p <= upper + tol


# vol = 0 exactly, or 1e-6..5.  (Not subnormal vols: at the forward, gamma ~
# 0.4 / (S sigma sqrt(t)) genuinely overflows a double for sigma ~ 1e-310.)
vols_or_zero = st.one_of(st.just(0.0), _f(1e-6, 5.0))


@given(spots, log_moneyness, expiries, rates, yields_, vols_or_zero, st.booleans())
def test_delta_gamma_vega_bounds(spot, lm, t, r, q, vol, is_call):
    # call delta in [0, e^{-qt}], put delta in [-e^{-qt}, 0], gamma >= 0, vega >= 0
    # (exactly: e^{-qt} N(d1) with N in [0, 1] cannot leave the interval except by the
    # rounding of e^{-qt} itself, allowed as 4 eps relative).  Every Greek finite.
    strike = spot * np.exp(lm)
    g = bsm_greeks(spot, strike, t, r, q, vol, is_call)
    dq = np.exp(-q * t)
    note(repr(g))
    if is_call:
        assert 0.0 <= g.delta <= dq * (1 + 4 * EPS)
    else:
        assert -dq * (1 + 4 * EPS) <= g.delta <= 0.0
    assert g.gamma >= 0.0
    assert g.vega >= 0.0
    for name in ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga"):
        assert np.isfinite(getattr(g, name)), name


@given(spots, log_moneyness, _f(-5.0, 0.0), rates, yields_, vols_or_zero, st.booleans())
def test_expired_is_intrinsic(spot, lm, t, r, q, vol, is_call):
    strike = spot * np.exp(lm)
    g = bsm_greeks(spot, strike, t, r, q, vol, is_call)
    assert g.price == max((spot - strike) if is_call else (strike - spot), 0.0)
    for name in ("gamma", "vega", "theta", "rho", "vanna", "volga"):
        assert getattr(g, name) == 0.0


# ---------------------------------------------------------------------------
# Implied-vol round trip over the whole domain
# ---------------------------------------------------------------------------


@given(
    spot=spots,
    std_moneyness=_f(-8.0, 8.0),
    t=_f(1.0 / 365.0, 5.0),
    r=rates,
    q=yields_,
    vol=vols,
    is_call=st.booleans(),
)
def test_implied_vol_round_trip(bsm_ref, iv_accuracy_violations, spot, std_moneyness, t, r, q, vol, is_call):
    # vol 0.01-5, t 1 day-5 y, strike at -8..+8 standard deviations from the forward
    # (|log(K/F)| capped at 10 -- see tests/greeks/test_implied_vol.py::_grid for why a cap is
    # needed), restricted to time value >= 1e-8 * spot; criterion as in
    # tests/greeks/test_implied_vol.py (1e-10 where the price determines vol that well, else
    # 8 ulps of price / vega plus re-pricing within 4 ulps).
    strike = spot * np.exp((r - q) * t + np.clip(std_moneyness * vol * np.sqrt(t), -10, 10))
    tv = bsm_ref.time_value(spot, strike, t, r, q, vol)
    assume(tv >= 1e-8 * spot)
    price = bsm_price(spot, strike, t, r, q, vol, is_call)
    vol_iv, status = implied_vol(price, spot, strike, t, r, q, is_call, return_status=True)
    note(f"strike={strike!r} price={float(price)!r} vol_iv={float(vol_iv)!r} status={int(status)}")
    assert status == IVStatus.OK
    repriced = bsm_price(spot, strike, t, r, q, vol_iv, is_call)
    vega = bsm_ref.vega(spot, strike, t, r, q, vol)
    bad, _, well = iv_accuracy_violations(
        np.float64(vol), vol_iv, status, price, repriced, np.float64(tv), vega, np.float64(spot)
    )
    note(f"well_determined={bool(well)} repriced={float(repriced)!r} vega={float(vega)!r}")
    assert not bad
