"""Shared test configuration for the optmm test suite.

Hypothesis profiles
-------------------
The active profile is chosen with the ``HYPOTHESIS_PROFILE`` environment variable
(default ``"ci"``):

* ``ci``        -- moderate number of examples, no deadline (the first call of a numba
                   kernel may compile / load from cache and take far longer than a
                   deadline would allow); derandomized so CI runs are reproducible.
* ``dev``       -- a quick smoke run while editing.
* ``thorough``  -- many examples, for occasional deep runs
                   (``HYPOTHESIS_PROFILE=thorough pytest tests/properties``).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from scipy.special import ndtr

# The suite runs on every core already (pytest-xdist): the commands' helper processes that compile
# kernels ahead on a second core (optmm._compile_ahead) would only compete with the other workers.
# tests/cli/test_compile_ahead.py switches them on where it tests them.
os.environ.setdefault("OPTMM_COMPILE_AHEAD", "0")

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "thorough",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator: every test that uses it sees the same stream."""
    return np.random.default_rng(20240607)


def _iv_accuracy_violations(vol_true, vol_iv, status, price, repriced, time_value, vega, spot):
    """Boolean mask of implied-vol round-trip failures (the criterion of tests 4 and 5).

    Only options whose time value is >= 1e-8 * spot are judged; for those:

    * status must be OK and vol finite;
    * "well determined" (4 ulps of the price move vol by <= 1e-10, i.e.
      ``4*spacing(price) <= 1e-10*vega``): require ``|vol_iv - vol| <= 1e-10``;
    * otherwise the float price itself cannot pin vol to 1e-10: require
      ``|vol_iv - vol| * vega <= 8*spacing(price)`` (vol is recovered to within what
      8 ulps of the price allow) AND re-pricing at vol_iv reproduces the price to
      within 4 ulps.

    Written with products instead of divisions so that a vega that underflows to 0
    cannot raise a divide-by-zero RuntimeWarning.
    """
    ulp = np.spacing(np.abs(price))
    judged = time_value >= 1e-8 * spot
    well = 4.0 * ulp <= 1e-10 * vega
    err = np.abs(vol_iv - vol_true)
    bad_status = judged & ((status != 0) | ~np.isfinite(vol_iv))
    with np.errstate(invalid="ignore"):  # NaN vol_iv is already reported via bad_status
        bad_well = judged & well & ~(err <= 1e-10)
        bad_poor = judged & ~well & ~((err * vega <= 8.0 * ulp) & (np.abs(repriced - price) <= 4.0 * ulp))
    return bad_status | bad_well | bad_poor, judged, well


@pytest.fixture(scope="session")
def iv_accuracy_violations():
    """The implied-vol round-trip accuracy criterion, shared by the IV and property tests.

    Session-scoped so that hypothesis tests can use it (function-scoped fixtures are
    not reset between hypothesis examples).
    """
    return _iv_accuracy_violations


def _ref_d1d2(spot, strike, t, rate, div_yield, vol):
    sst = vol * np.sqrt(t)
    d1 = (np.log(spot / strike) + (rate - div_yield + 0.5 * vol * vol) * t) / sst
    return d1, d1 - sst


def _ref_price(spot, strike, t, rate, div_yield, vol, is_call):
    """Textbook BSM price (numpy + scipy.special.ndtr), independent of optmm; t, vol > 0."""
    phi = np.where(is_call, 1.0, -1.0)
    d1, d2 = _ref_d1d2(spot, strike, t, rate, div_yield, vol)
    return phi * (
        spot * np.exp(-div_yield * t) * ndtr(phi * d1) - strike * np.exp(-rate * t) * ndtr(phi * d2)
    )


def _ref_vega(spot, strike, t, rate, div_yield, vol):
    d1, _ = _ref_d1d2(spot, strike, t, rate, div_yield, vol)
    return spot * np.exp(-div_yield * t) * np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi) * np.sqrt(t)


def _ref_time_value(spot, strike, t, rate, div_yield, vol):
    """Time value (price minus discounted-forward intrinsic) without cancellation.

    By put-call parity the time value of either option equals the price of the
    option that is out of the money with respect to the forward, so it is computed
    as that option's price.  (Subtracting the intrinsic from an in-the-money price
    would leave only rounding noise of size ulp(price) for deep ITM options.)
    """
    fwd_itm_call = spot * np.exp(-div_yield * t) > strike * np.exp(-rate * t)
    return _ref_price(spot, strike, t, rate, div_yield, vol, ~fwd_itm_call)


@pytest.fixture(scope="session")
def bsm_ref():
    """Independent numpy/scipy closed forms used to build tolerances in the IV tests."""
    return SimpleNamespace(price=_ref_price, vega=_ref_vega, time_value=_ref_time_value)
