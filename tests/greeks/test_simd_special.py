"""The vectorisable exp, log and erfc of optmm.greeks._simd against 50-digit mpmath.

Tolerances are in units in the last place (ulps) of the exact result, as tight as each
algorithm allows: exp 3 ulps (Taylor to r**13 after Cody-Waite reduction), log 2 ulps (atanh
series), erfc 6 ulps (Cody's rational approximations, quoted by Cody at ~1e-16 relative plus the
exp of the split square). libm's erfc is within 2 ulps on the same points, for scale.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from numba import njit

from optmm.greeks._simd import verfc, vexp, vlog

mpmath.mp.dps = 50


@njit(error_model="numpy")
def _map_exp(a, out):
    for i in range(a.shape[0]):
        out[i] = vexp(a[i])


@njit(error_model="numpy")
def _map_log(a, out):
    for i in range(a.shape[0]):
        out[i] = vlog(a[i])


@njit(error_model="numpy")
def _map_erfc(a, out):
    for i in range(a.shape[0]):
        out[i] = verfc(a[i])


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.abs(got - exact) / np.spacing(np.abs(exact))


def _run(kernel, xs: np.ndarray) -> np.ndarray:
    out = np.empty_like(xs)
    kernel(xs, out)
    return out


def test_vexp_against_mpmath() -> None:
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.uniform(-700.0, 700.0, 2000), rng.uniform(-1.0, 1.0, 2000), [0.0, 1.0, -1.0]])
    exact = np.array([float(mpmath.exp(mpmath.mpf(x))) for x in xs])
    assert _ulps(_run(_map_exp, xs), exact).max() <= 3


def test_vexp_denormals_and_underflow() -> None:
    xs = np.array([-708.5, -720.0, -740.0, -745.1, -746.0, -1000.0, -5000.0])
    exact = np.array([float(mpmath.exp(mpmath.mpf(x))) for x in xs])
    got = _run(_map_exp, xs)
    # denormal results: absolute error within one denormal step; beyond the range, exactly 0
    np.testing.assert_allclose(got, exact, rtol=0, atol=5e-324 * 2)
    assert got[-1] == 0.0 and got[-2] == 0.0


def test_vlog_against_mpmath() -> None:
    rng = np.random.default_rng(2)
    special = [1.0, 2.0, 0.5, math.sqrt(2.0)]
    xs = np.concatenate([np.exp(rng.uniform(-700.0, 700.0, 2000)), rng.uniform(0.5, 2.0, 2000), special])
    exact = np.array([float(mpmath.log(mpmath.mpf(x))) for x in xs])
    got = _run(_map_log, xs)
    nonzero = exact != 0.0
    assert _ulps(got[nonzero], exact[nonzero]).max() <= 2
    assert np.all(got[~nonzero] == 0.0)  # log(1) is exactly 0


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(-6.0, -0.46875), (-0.46875, 0.46875), (0.46875, 4.0), (4.0, 26.5)],
    ids=["negative", "small", "middle", "tail"],
)
def test_verfc_against_mpmath_per_range(lo: float, hi: float) -> None:
    xs = np.linspace(lo, hi, 1501)
    exact = np.array([float(mpmath.erfc(mpmath.mpf(x))) for x in xs])
    normal = exact > 2.2250738585072014e-308
    assert _ulps(_run(_map_erfc, xs)[normal], exact[normal]).max() <= 6


def test_verfc_far_tail_underflows_to_zero_not_nan() -> None:
    got = _run(_map_erfc, np.array([28.0, 30.0, 1e3, 1e300]))
    assert np.all(got == 0.0)
    got = _run(_map_erfc, np.array([-28.0, -1e300]))
    assert np.all(got == 2.0)


def test_scalar_and_vector_paths_agree_bitwise() -> None:
    # The same function inlined in a vectorised loop and called on one value: no FMA contraction
    # or reassociation may make the two differ.
    xs = np.random.default_rng(3).uniform(-8.0, 8.0, 256)
    vec = _run(_map_erfc, xs)
    assert all(verfc(x) == v for x, v in zip(xs, vec, strict=True))
