"""The compiled raw SVI stage (optmm.chain._svi): its twins, its gradient, and its fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optmm.chain import _svi
from optmm.chain.slicefit import check_grid


def _problem(n: int = 41) -> tuple[np.ndarray, ...]:
    """A skewed SVI smile with noise, equal weights in vol units over ~0.2 vol, t = 0.25."""
    rng = np.random.default_rng(7)
    k = np.linspace(-0.4, 0.25, n)
    x = k - 0.05
    w = (0.01 + 0.08 * (-0.6 * x + np.sqrt(x * x + 0.1**2))) * (1 + 0.01 * rng.standard_normal(n))
    t = 0.25
    om = 1.0 / (2.0 * np.sqrt(w / t) * t) ** 2
    grid = np.ascontiguousarray(check_grid(k, w)[::4])
    return k, w, om, grid


def _q(a: float, b: float, rho: float, m: float, sig: float) -> np.ndarray:
    return np.array([a, math.log(b), math.atanh(rho), m, math.log(sig)])


@pytest.mark.parametrize(
    "q",
    [
        _q(0.01, 0.08, -0.6, 0.05, 0.1),  # no penalty active
        _q(-0.02, 0.9, -0.99, 0.3, 0.01),  # g < 0 and w < 0 on parts of the grid
        _q(0.01, 1.5, 0.8, 0.0, 0.1),  # Lee's bound broken
    ],
)
def test_system_twins_agree_and_the_gradient_is_the_costs(q: np.ndarray) -> None:
    k, w, om, grid = _problem()
    sq = np.sqrt(om)
    out = []
    for f in (_svi.svi_system_py, _svi.svi_system):
        jtj, jtr = np.zeros((5, 5)), np.zeros(5)
        cost = f(q, k, w, sq, grid, jtj, jtr, True)
        out.append((cost, jtj, jtr))
    (c_py, a_py, g_py), (c_nb, a_nb, g_nb) = out
    assert c_py == pytest.approx(c_nb, rel=1e-13)
    np.testing.assert_allclose(a_py, a_nb, rtol=1e-12, atol=1e-12 * np.abs(a_py).max())
    np.testing.assert_allclose(g_py, g_nb, rtol=1e-12, atol=1e-12 * np.abs(g_py).max())
    np.testing.assert_array_equal(a_nb, a_nb.T)
    # J^T r is the gradient of the cost: central differences, step 1e-6 (the cost is piecewise smooth)
    fd = np.empty(5)
    for i in range(5):
        e = np.zeros(5)
        e[i] = 1e-6
        hi = _svi.svi_system(q + e, k, w, sq, grid, np.zeros((5, 5)), np.zeros(5), False)
        lo = _svi.svi_system(q - e, k, w, sq, grid, np.zeros((5, 5)), np.zeros(5), False)
        fd[i] = (hi - lo) / 2e-6
    np.testing.assert_allclose(g_nb, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


def test_start_and_fit_twins_agree() -> None:
    k, w, om, grid = _problem()
    p_py, p_nb = _svi.svi_start_py(k, w, om), _svi.svi_start(k, w, om)
    np.testing.assert_allclose(p_py, p_nb, rtol=1e-10)
    q0 = _q(*(float(x) for x in p_nb))
    np.testing.assert_allclose(
        _svi.svi_fit_py(q0, k, w, np.sqrt(om), grid), _svi.svi_fit(q0, k, w, np.sqrt(om), grid), rtol=1e-8
    )


def test_fit_recovers_an_exact_svi_smile() -> None:
    # exact raw SVI quotes, free of arbitrage: the fit must find the parameters (all penalties 0)
    truth = (0.012, 0.11, -0.45, 0.03, 0.13)
    k = np.linspace(-0.5, 0.35, 60)
    a, b, rho, m, sig = truth
    w = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sig * sig))
    om = np.ones_like(k)
    grid = np.ascontiguousarray(check_grid(k, w)[::4])
    q = _svi.svi_fit(_q(0.02, 0.05, 0.0, 0.0, 0.2), k, w, om, grid)  # a start far from the truth
    np.testing.assert_allclose(_svi.svi_raw(q), truth, rtol=1e-5, atol=1e-7)


def test_fit_matches_minpack_on_a_noisy_smile() -> None:
    # an independent reference: scipy's MINPACK Levenberg-Marquardt on the same residuals
    from scipy.optimize import least_squares

    k, w, om, grid = _problem()
    sq = np.sqrt(om)
    q0 = _q(*(float(x) for x in _svi.svi_start(k, w, om)))
    ours = _svi.svi_fit(q0, k, w, sq, grid)

    def cost(q: np.ndarray) -> float:
        return float(_svi.svi_system(q, k, w, sq, grid, np.zeros((5, 5)), np.zeros(5), False))

    def resid(q: np.ndarray) -> np.ndarray:
        a, b, rho, m, sig = _svi.svi_raw(q)
        return sq * (a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sig * sig)) - w)

    ref = least_squares(resid, q0, method="lm", x_scale="jac", ftol=1e-10, xtol=1e-10).x
    # no penalty is active at our solution, so the reference's problem is the same there
    assert cost(ours) == pytest.approx(0.5 * float(np.sum(resid(ours) ** 2)), rel=1e-12)
    assert cost(ours) <= cost(ref) * (1 + 1e-5)
    np.testing.assert_allclose(_svi.svi_raw(ours), _svi.svi_raw(ref), rtol=1e-3, atol=1e-5)
