"""Reference tests for the BSM Greeks engine.

* against vollib (independent implementation built on Jaeckel's LetsBeRational),
* against Hull's textbook example,
* against 50-digit mpmath evaluations of the closed forms,
* against finite differences of ``bsm_price`` (every Greek, calls and puts),
* put-call parity.

Units (contract): plain partial derivatives of one option's value, vega/rho per 1.00,
theta = -dV/dt per year (t = time to expiry).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import vollib.black_scholes_merton as vollib_bsm
import vollib.black_scholes_merton.greeks.analytical as vollib_an

from optmm.greeks import bsm_greeks, bsm_price

EPS = np.finfo(float).eps
FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


def _unit_floor(name, spot):
    """1e-12 * spot expressed in the units of Greek ``name`` (absolute-error floor).

    Every value is a sum/difference of terms of order ``spot`` (e.g. the price is
    S e^{-qt} N(d1) - K e^{-rt} N(d2)), so rounding alone leaves an absolute error of a
    few ulp(S) ~ 1e-16 * S even when the result itself is tiny (deep OTM prices, theta
    near its zero crossing, ...); a *relative* tolerance cannot hold there for any
    double-precision implementation.  1e-12 * S is ~4500 ulp(S) -- generous for
    rounding yet ~10 orders of magnitude below the typical size of each quantity, so
    any formula error (missing e^{-qt}, wrong sign, per-day units) is still caught.
    Converting "1e-12 * S in price units" to each Greek: dividing by S per
    S-derivative (delta, vanna: 1e-12; gamma: 1e-12 / S); vol, rate and time
    derivatives keep price units.
    """
    return {
        "price": 1e-12 * spot,
        "delta": 1e-12 * np.ones_like(spot),
        "gamma": 1e-12 / spot,
        "vega": 1e-12 * spot,
        "theta": 1e-12 * spot,
        "rho": 1e-12 * spot,
        "vanna": 1e-12 * np.ones_like(spot),
        "volga": 1e-12 * spot,
    }[name]


def _assert_close(name, got, ref, rtol, atol, inputs=None):
    got = np.asarray(got, dtype=float)
    ref = np.asarray(ref, dtype=float)
    err = np.abs(got - ref)
    tol = rtol * np.abs(ref) + atol
    bad = ~(err <= tol)  # also catches NaN
    if bad.any():
        idx = np.flatnonzero(bad.reshape(-1))
        i = idx[np.argmax((err / tol).reshape(-1)[idx])]
        where = ""
        if inputs is not None:
            where = " at " + ", ".join(
                f"{k}={np.broadcast_to(v, got.shape).reshape(-1)[i]!r}" for k, v in inputs.items()
            )
        raise AssertionError(
            f"{name}: {idx.size} of {got.size} outside tolerance; worst{where}: "
            f"got {got.reshape(-1)[i]!r}, expected {ref.reshape(-1)[i]!r}, "
            f"|err| {err.reshape(-1)[i]:.3e} > "
            f"tol {np.broadcast_to(tol, got.shape).reshape(-1)[i]:.3e}"
        )


# ---------------------------------------------------------------------------
# vollib reference
# ---------------------------------------------------------------------------


def _random_domain(rng, n):
    spot = rng.uniform(50.0, 150.0, n)
    return dict(
        spot=spot,
        strike=spot * rng.uniform(0.5, 1.5, n),
        t=rng.uniform(1.0 / 365.0, 3.0, n),
        rate=rng.uniform(-0.01, 0.08, n),
        div_yield=rng.uniform(0.0, 0.05, n),
        vol=rng.uniform(0.05, 1.0, n),
        is_call=rng.random(n) < 0.5,
    )


def _vollib_reference(d):
    """vollib values converted to the contract's units.

    vollib: vega per vol point (x0.01), theta per calendar day (/365), rho per 1% (x0.01).
    """
    out = {k: np.empty(d["spot"].size) for k in ("price", "delta", "gamma", "vega", "theta", "rho")}
    for i in range(d["spot"].size):
        flag = "c" if d["is_call"][i] else "p"
        args = (
            flag,
            float(d["spot"][i]),
            float(d["strike"][i]),
            float(d["t"][i]),
            float(d["rate"][i]),
            float(d["vol"][i]),
            float(d["div_yield"][i]),
        )
        out["price"][i] = vollib_bsm.black_scholes_merton(*args)
        out["delta"][i] = vollib_an.delta(*args)
        out["gamma"][i] = vollib_an.gamma(*args)
        out["vega"][i] = vollib_an.vega(*args) * 100.0
        out["theta"][i] = vollib_an.theta(*args) * 365.0
        out["rho"][i] = vollib_an.rho(*args) * 100.0
    return out


def test_against_vollib_random(rng):
    # 3000 random options over: spot 50-150, strike 0.5-1.5 x spot, t 1 day - 3 years,
    # r -1%..8%, q 0..5%, vol 5%-100%, calls and puts.
    # Tolerance: 1e-10 relative, with an absolute floor of 1e-12*spot in each Greek's
    # units (see _unit_floor for the justification).  vollib evaluates the same closed
    # forms with an accurate normal CDF, so the two should agree to ~1e-13 relative
    # except where cancellation makes only the absolute error meaningful.
    d = _random_domain(rng, 3000)
    ref = _vollib_reference(d)
    g = bsm_greeks(d["spot"], d["strike"], d["t"], d["rate"], d["div_yield"], d["vol"], d["is_call"])
    p = bsm_price(d["spot"], d["strike"], d["t"], d["rate"], d["div_yield"], d["vol"], d["is_call"])
    for name in ref:
        _assert_close(name, getattr(g, name), ref[name], 1e-10, _unit_floor(name, d["spot"]), inputs=d)
    _assert_close("bsm_price", p, ref["price"], 1e-10, _unit_floor("price", d["spot"]), inputs=d)


def test_greeks_price_equals_bsm_price(rng):
    # Greeks.price and bsm_price are the same quantity; they must agree to rounding
    # (4 ulps), whatever code path each uses.
    d = _random_domain(rng, 500)
    g = bsm_greeks(**d)
    p = bsm_price(**d)
    _assert_close("price", g.price, p, 4 * EPS, 0.0, inputs=d)


# ---------------------------------------------------------------------------
# Hull, "Options, Futures and Other Derivatives", the running Greeks example
# (Ch. "The Greek letters"): S=49, K=50, r=5%, sigma=20%, T=20 weeks, q=0, call.
# ---------------------------------------------------------------------------

HULL = dict(spot=49.0, strike=50.0, t=20.0 / 52.0, rate=0.05, div_yield=0.0, vol=0.20, is_call=True)


@pytest.mark.parametrize(
    ("name", "printed", "decimals"),
    [
        (
            "price",
            2.40,
            2,
        ),  # Hull: "the Black-Scholes-Merton price of the option is about $240,000"
        ("delta", 0.522, 3),
        ("gamma", 0.066, 3),
        ("vega", 12.1, 1),  # per 1.00 of vol (Hull: 12.1, i.e. 0.121 per vol point)
        ("theta", -4.31, 2),  # per year
        ("rho", 8.91, 2),  # per 1.00 of rate
    ],
)
def test_hull_example(name, printed, decimals):
    # To the precision Hull prints: the value must round to the printed figure, i.e.
    # be within half a unit of the last printed decimal.
    got = float(getattr(bsm_greeks(**HULL), name))
    assert abs(got - printed) <= 0.5 * 10.0**-decimals, (name, got, printed)


# ---------------------------------------------------------------------------
# 50-digit mpmath closed forms
# ---------------------------------------------------------------------------

mp = mpmath.mp

# Moderately conditioned cases (no massive cancellation between the two terms of the
# price), spanning calls/puts, ITM/OTM, short/long expiries, negative rate, high vol.
MP_CASES = [
    # spot, strike, t, rate, q, vol, is_call
    (100.0, 100.0, 1.0, 0.05, 0.02, 0.2, True),
    (100.0, 100.0, 1.0, 0.05, 0.02, 0.2, False),
    (49.0, 50.0, 20.0 / 52.0, 0.05, 0.0, 0.2, True),
    (120.0, 100.0, 0.25, 0.03, 0.01, 0.35, True),
    (120.0, 100.0, 0.25, 0.03, 0.01, 0.35, False),
    (80.0, 95.0, 2.5, -0.005, 0.03, 0.45, False),
    (80.0, 95.0, 2.5, -0.005, 0.03, 0.45, True),
    (150.0, 140.0, 10.0 / 365.0, 0.07, 0.0, 0.6, True),
    (63.5, 70.0, 0.75, 0.01, 0.045, 1.5, False),
    (101.25, 87.0, 3.0, 0.08, 0.05, 0.15, True),
]


def _mp_price(S, K, t, r, q, v, phi):
    sst = v * mpmath.sqrt(t)
    d1 = (mpmath.log(S / K) + (r - q + v * v / 2) * t) / sst
    d2 = d1 - sst
    return phi * (
        S * mpmath.exp(-q * t) * mpmath.ncdf(phi * d1) - K * mpmath.exp(-r * t) * mpmath.ncdf(phi * d2)
    )


def _mp_closed_forms(S, K, t, r, q, v, phi):
    sq = mpmath.sqrt(t)
    sst = v * sq
    d1 = (mpmath.log(S / K) + (r - q + v * v / 2) * t) / sst
    d2 = d1 - sst
    dq, dr = mpmath.exp(-q * t), mpmath.exp(-r * t)
    n1 = mpmath.npdf(d1)
    N1, N2 = mpmath.ncdf(phi * d1), mpmath.ncdf(phi * d2)
    vega = S * dq * n1 * sq
    return {
        "price": phi * (S * dq * N1 - K * dr * N2),
        "delta": phi * dq * N1,
        "gamma": dq * n1 / (S * sst),
        "vega": vega,
        "theta": -S * dq * n1 * v / (2 * sq) + phi * (q * S * dq * N1 - r * K * dr * N2),
        "rho": phi * K * t * dr * N2,
        "vanna": -dq * n1 * d2 / v,
        "volga": vega * d1 * d2 / v,
    }


def _mp_args(case):
    # mpf(float) is exact: the reference is evaluated at exactly the doubles we pass.
    *xs, is_call = case
    return [mpmath.mpf(x) for x in xs] + [mpmath.mpf(1 if is_call else -1)]


@pytest.mark.parametrize("case", MP_CASES)
def test_mpmath_closed_forms_are_the_derivatives(case):
    # Guards the test's own formulas: the 50-digit closed forms must equal 50-digit
    # numerical derivatives of the 50-digit price (mpmath.diff, extrapolated).
    with mp.workdps(50):
        S, K, t, r, q, v, phi = _mp_args(case)
        cf = _mp_closed_forms(S, K, t, r, q, v, phi)
        f = lambda S_, K_, t_, r_, q_, v_: _mp_price(S_, K_, t_, r_, q_, v_, phi)  # noqa: E731
        x = (S, K, t, r, q, v)
        numeric = {
            "price": f(*x),
            "delta": mpmath.diff(f, x, (1, 0, 0, 0, 0, 0)),
            "gamma": mpmath.diff(f, x, (2, 0, 0, 0, 0, 0)),
            "vega": mpmath.diff(f, x, (0, 0, 0, 0, 0, 1)),
            "theta": -mpmath.diff(f, x, (0, 0, 1, 0, 0, 0)),
            "rho": mpmath.diff(f, x, (0, 0, 0, 1, 0, 0)),
            "vanna": mpmath.diff(f, x, (1, 0, 0, 0, 0, 1)),
            "volga": mpmath.diff(f, x, (0, 0, 0, 0, 0, 2)),
        }
        for name in FIELDS:
            assert abs(cf[name] - numeric[name]) <= mpmath.mpf(10) ** -30 * (1 + abs(cf[name])), name


@pytest.mark.parametrize("case", MP_CASES)
def test_against_mpmath_50_digits(case):
    # Tolerance: 1e-14 relative (~45 ulps) plus an absolute floor of 4 ulps of spot in
    # each Greek's units (4*eps*S; same unit conversion as _unit_floor).  Justification:
    # the double-precision closed forms combine O(1)-conditioned steps (log, exp, erfc,
    # a handful of products) whose rounding errors accumulate to a few tens of ulps at
    # most on these well-conditioned cases; the absolute floor covers the difference of
    # two O(S) terms (price, theta) and Greeks that are small because d2 ~ 0 (vanna,
    # volga).
    with mp.workdps(50):
        ref = _mp_closed_forms(*_mp_args(case))
        ref = {k: float(v) for k, v in ref.items()}
    spot, strike, t, rate, q, vol, is_call = case
    g = bsm_greeks(spot, strike, t, rate, q, vol, is_call)
    for name in FIELDS:
        floor = _unit_floor(name, np.float64(spot)) * (4 * EPS / 1e-12)
        _assert_close(name, getattr(g, name), ref[name], 1e-14, floor)


# ---------------------------------------------------------------------------
# Finite differences of bsm_price
# ---------------------------------------------------------------------------
#
# Five-point central stencils (fourth order):
#   f'(x)  ~ [f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)] / (12 h)
#            truncation ~ h^4 |f^(5)| / 30,   rounding <= (18/12) eps max|f| / h
#   f''(x) ~ [-f(x-2h) + 16 f(x-h) - 30 f(x) + 16 f(x+h) - f(x+2h)] / (12 h^2)
#            truncation ~ h^4 |f^(6)| / 90,   rounding <= (64/12) eps max|f| / h^2
#   vanna (d2/dS dsigma): the first-derivative stencil in sigma applied to the one in
#            S; rounding <= (18/12)^2 eps max|f| / (h_S h_sigma).
# Steps are proportional to the distance over which the option value changes shape:
#   S: S * min(sigma sqrt(t), 0.25)   (d1 moves by O(c); capped because the 1/S^k
#                                      factors in higher S-derivatives also matter)
#   sigma: sigma;   t: t;   r: sigma / sqrt(t)   (dd1/dr = sqrt(t)/sigma)
# with c = 0.01 (first and second derivatives; even for the second derivatives the
# rounding term, ~1e-11 relative, stays far below the truncation term).
#
# Tolerance, per case:  20 x the truncation estimate  +  50 x the rounding bound
#                       +  1e-9 relative.
# The truncation estimate is Richardson's: for a 4th-order stencil
#   D(h) - D* ~ C h^4 and D(2h) - D* ~ 16 C h^4  =>  |D(h) - D*| ~ |D(2h) - D(h)| / 15.
# This is computed from bsm_price alone, so it bounds the error of the finite
# difference, not of the Greek under test; a wrong Greek (sign, units, missing
# factor) still fails by orders of magnitude.  Measured (reference closed forms):
# actual FD error / (20 x estimate + ...) <= 0.07 on these cases; truncation estimates
# 1e-10..5e-8 and rounding bounds 1e-14..1e-11 of the largest |Greek|.
# test_fd_error_estimates_are_small guards against the tolerance silently growing
# (e.g. if bsm_price were noisy).
#
# Domain: spot 50-150, t 0.05-3 y, r -1%..8%, q 0..5%, vol 10%-80%, strike within two
# standard deviations of the forward (|log(K/F)| <= 2 sigma sqrt(t)).

C1 = C2 = 0.01  # step factors for first / second derivatives (see above)
W1 = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
W2 = np.array([-1.0, 16.0, -30.0, 16.0, -1.0]) / 12.0
OFFS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])


def _fd_domain(rng, n, is_call):
    spot = rng.uniform(50.0, 150.0, n)
    t = rng.uniform(0.05, 3.0, n)
    rate = rng.uniform(-0.01, 0.08, n)
    q = rng.uniform(0.0, 0.05, n)
    vol = rng.uniform(0.1, 0.8, n)
    strike = spot * np.exp((rate - q) * t + rng.uniform(-2.0, 2.0, n) * vol * np.sqrt(t))
    return dict(spot=spot, strike=strike, t=t, rate=rate, div_yield=q, vol=vol, is_call=np.full(n, is_call))


def _steps(d):
    sst = d["vol"] * np.sqrt(d["t"])
    return {
        "spot": d["spot"] * np.minimum(sst, 0.25),
        "vol": d["vol"],
        "t": d["t"],
        "rate": d["vol"] / np.sqrt(d["t"]),
    }


def _stencil(func, d, var, h, weights):
    """(sum_j w_j f(x + o_j h), max_j |f(x + o_j h)|) over the 5-point stencil."""
    acc = np.zeros(np.shape(d["spot"]))
    fmax = np.zeros(np.shape(d["spot"]))
    for w, o in zip(weights, OFFS, strict=True):
        dd = dict(d)
        dd[var] = d[var] + o * h
        f = func(**dd)
        acc = acc + w * f
        fmax = np.maximum(fmax, np.abs(f))
    return acc, fmax


def _fd(func, d, var, h, order):
    """Finite-difference derivative with Richardson truncation estimate and rounding bound."""
    if order == 1:
        w, k, rconst = W1, 1, 1.5
    else:
        w, k, rconst = W2, 2, 64.0 / 12.0
    a1, m1 = _stencil(func, d, var, h, w)
    a2, m2 = _stencil(func, d, var, 2 * h, w)
    d1, d2 = a1 / h**k, a2 / (2 * h) ** k
    return d1, np.abs(d2 - d1) / 15.0, rconst * EPS * np.maximum(m1, m2) / h**k


def _fd_mixed(func, d, hs, hv):
    """d2 f / dS dsigma, same outputs as _fd."""

    def one(hs_, hv_):
        acc = np.zeros(np.shape(d["spot"]))
        fmax = np.zeros(np.shape(d["spot"]))
        for wv, ov in zip(W1, OFFS, strict=True):
            dv = dict(d)
            dv["vol"] = d["vol"] + ov * hv_
            a, m = _stencil(func, dv, "spot", hs_, W1)
            acc = acc + wv * a
            fmax = np.maximum(fmax, m)
        return acc / (hs_ * hv_), fmax

    d1, m1 = one(hs, hv)
    d2, m2 = one(2 * hs, 2 * hv)
    return d1, np.abs(d2 - d1) / 15.0, 1.5**2 * EPS * np.maximum(m1, m2) / (hs * hv)


def _greek_fn(name):
    return lambda **kw: getattr(bsm_greeks(**kw), name)


def _fd_table(d):
    """{label: (greek name, fd value, truncation estimate, rounding bound)}."""
    sc = _steps(d)
    out = {}
    for name, var, sign in [
        ("delta", "spot", 1),
        ("vega", "vol", 1),
        ("theta", "t", -1),
        ("rho", "rate", 1),
    ]:
        v, tr, ro = _fd(bsm_price, d, var, C1 * sc[var], 1)
        out[f"{name} = {'-' if sign < 0 else ''}dV/d{var}"] = (name, sign * v, tr, ro)
    for name, var in [("gamma", "spot"), ("volga", "vol")]:
        out[f"{name} = d2V/d{var}2"] = (name, *_fd(bsm_price, d, var, C2 * sc[var], 2))
    out["vanna = d2V/dSdvol"] = ("vanna", *_fd_mixed(bsm_price, d, C1 * sc["spot"], C1 * sc["vol"]))
    # Second-order Greeks as first differences of the engine's own first-order Greeks
    # (themselves checked against vollib above): a tighter consistency check.
    for name, of, var in [
        ("gamma", "delta", "spot"),
        ("vanna", "vega", "spot"),
        ("vanna", "delta", "vol"),
        ("volga", "vega", "vol"),
    ]:
        out[f"{name} = d{of}/d{var}"] = (name, *_fd(_greek_fn(of), d, var, C1 * sc[var], 1))
    return out


@pytest.mark.parametrize("is_call", [True, False], ids=["call", "put"])
def test_greeks_vs_finite_differences(rng, is_call):
    d = _fd_domain(rng, 300, is_call)
    g = bsm_greeks(**d)
    for label, (name, fd, trunc, rnd) in _fd_table(d).items():
        _assert_close(label, getattr(g, name), fd, 1e-9, 20 * trunc + 50 * rnd, inputs=d)


@pytest.mark.parametrize("is_call", [True, False], ids=["call", "put"])
def test_fd_error_estimates_are_small(rng, is_call):
    # The data-driven tolerances above must stay meaningful: the estimated FD error
    # (truncation + rounding) is below 1e-6 of the largest |Greek| in the batch.
    # (If bsm_price were noisy or non-smooth, the estimates would blow up here.)
    d = _fd_domain(rng, 300, is_call)
    for label, (_, fd, trunc, rnd) in _fd_table(d).items():
        worst = np.max(trunc + rnd)
        assert worst <= 1e-6 * np.max(np.abs(fd)), (label, worst, np.max(np.abs(fd)))


# ---------------------------------------------------------------------------
# Put-call parity
# ---------------------------------------------------------------------------


def test_put_call_parity(rng):
    # C - P = S e^{-qt} - K e^{-rt}.  Both prices are O(max(S, K)) at worst, so rounding
    # leaves a few ulp(S) ~ 1e-16 * S; tolerance 1e-12 * S (the spot and strike ranges
    # keep K <= 3 S).  Wide domain: t 1 day-10 y, vol 1%-500%.
    n = 5000
    spot = rng.uniform(10.0, 500.0, n)
    strike = spot * np.exp(rng.uniform(-1.0, 1.0, n))
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(10.0), n))
    rate = rng.uniform(-0.02, 0.10, n)
    q = rng.uniform(-0.01, 0.08, n)
    vol = np.exp(rng.uniform(np.log(0.01), np.log(5.0), n))
    c = bsm_price(spot, strike, t, rate, q, vol, True)
    p = bsm_price(spot, strike, t, rate, q, vol, False)
    fwd = spot * np.exp(-q * t) - strike * np.exp(-rate * t)
    _assert_close(
        "C - P",
        c - p,
        fwd,
        0.0,
        1e-12 * spot,
        inputs=dict(spot=spot, strike=strike, t=t, rate=rate, q=q, vol=vol),
    )
    # Greeks too: delta_C - delta_P = e^{-qt}; gamma, vega, vanna, volga equal;
    # rho_C - rho_P = K t e^{-rt}; theta_C - theta_P = q S e^{-qt} - r K e^{-rt}.
    gc = bsm_greeks(spot, strike, t, rate, q, vol, True)
    gp = bsm_greeks(spot, strike, t, rate, q, vol, False)
    _assert_close("delta parity", gc.delta - gp.delta, np.exp(-q * t), 0.0, 1e-12)
    for name in ("gamma", "vega", "vanna", "volga"):
        _assert_close(f"{name} parity", getattr(gc, name), getattr(gp, name), 1e-12, _unit_floor(name, spot))
    _assert_close("rho parity", gc.rho - gp.rho, strike * t * np.exp(-rate * t), 0.0, 1e-12 * spot * t)
    _assert_close(
        "theta parity",
        gc.theta - gp.theta,
        q * spot * np.exp(-q * t) - rate * strike * np.exp(-rate * t),
        0.0,
        1e-12 * spot,
    )
