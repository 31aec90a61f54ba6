"""Market paths (optmm.sim.paths): determinism, an independent reference, and the model's moments.

The statistical tests use seeded generators (so they are deterministic) and tolerances of 4 standard
errors of the estimate (a false alarm would have probability ~6e-5 per check for a fresh seed); each
states the estimate's standard error next to it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from optmm.sim import paths as paths_module
from optmm.sim.paths import MAX_JUMPS_PER_STEP, VOL_FLOOR, correlation_factor, draw_paths, uniforms


def params(nu: int = 1, **over: Any) -> dict[str, Any]:
    """Keyword arguments of draw_paths: constant vol 0.2, no drift, no jumps, independent spots."""
    p: dict[str, Any] = {
        "n_paths": 4,
        "n_steps": 10,
        "dt_years": 1.0 / 252.0,
        "spot0": np.full(nu, 100.0),
        "vol0": np.full(nu, 0.2),
        "drift": np.zeros(nu),
        "jump_intensity": np.zeros(nu),
        "jump_mean": np.zeros(nu),
        "jump_std": np.zeros(nu),
        "vol_kappa": np.zeros(nu),
        "vol_theta": np.full(nu, 0.2),
        "vol_of_vol": np.zeros(nu),
        "vol_spot_corr": np.zeros(nu),
        "arith_vol": np.zeros(nu),
        "corr": np.eye(nu),
    }
    p.update(over)
    return p


def full_params() -> dict[str, Any]:
    """Everything on: two geometric underlyings (jumps, stochastic vol) and one arithmetic, correlated."""
    return params(
        3,
        n_paths=7,
        n_steps=40,
        dt_years=1.0 / 2520.0,
        spot0=np.array([100.0, 50.0, 20.0]),
        vol0=np.array([0.25, 0.4, 0.3]),
        drift=np.array([0.05, -0.02, 1.5]),
        jump_intensity=np.array([200.0, 50.0, 0.0]),
        jump_mean=np.array([-0.02, 0.01, 0.0]),
        jump_std=np.array([0.03, 0.05, 0.0]),
        vol_kappa=np.array([4.0, 0.0, 10.0]),
        vol_theta=np.array([0.2, 0.4, 0.35]),
        vol_of_vol=np.array([1.2, 0.8, 0.0]),
        vol_spot_corr=np.array([-0.7, 0.3, 0.0]),
        arith_vol=np.array([0.0, 0.0, 6.0]),
        corr=np.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]]),
        shock_step=[5, 5, 12, 30],
        shock_underlying=[0, 0, 2, 1],
        shock_spot=[-0.05, -0.02, -1.0, 0.03],
        shock_vol=[0.1, 0.05, 0.0, -0.5],
    )


def reference_paths(seed: int, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The model written again in numpy, over all paths at once, in log space, with the documented
    draw order: independent of the module's kernel (only the generator is shared)."""
    rng = np.random.default_rng(seed)
    n, m, dt = p["n_paths"], p["n_steps"], p["dt_years"]
    nu = len(p["spot0"])
    lf = np.linalg.cholesky(p["corr"])
    zs = np.einsum("uv,pkv->pku", lf, rng.standard_normal((n, m, nu)))
    zp = rng.standard_normal((n, m, nu))
    lam_dt = p["jump_intensity"] * dt
    u = rng.random((n, m, nu))
    # scipy's Poisson quantile (its ppf is NaN at a zero mean: no jumps there)
    counts = np.where(lam_dt > 0, stats.poisson.ppf(u, np.where(lam_dt > 0, lam_dt, 1.0)), 0.0)
    jumps = counts * p["jump_mean"] + np.sqrt(counts) * p["jump_std"] * rng.standard_normal((n, m, nu))
    ds, dv = np.zeros((m + 1, nu)), np.zeros((m + 1, nu))
    for k, u, a, b in zip(
        p["shock_step"], p["shock_underlying"], p["shock_spot"], p["shock_vol"], strict=True
    ):
        ds[k, u] += a
        dv[k, u] += b
    kj = np.exp(p["jump_mean"] + 0.5 * p["jump_std"] ** 2) - 1.0
    rho = p["vol_spot_corr"]
    arith = p["arith_vol"] > 0
    spot = np.empty((n, m + 1, nu))
    vol = np.empty((n, m + 1, nu))
    spot[:, 0], vol[:, 0] = p["spot0"], p["vol0"]
    for k in range(1, m + 1):
        s, v, z = spot[:, k - 1], vol[:, k - 1], zs[:, k - 1]
        log_move = (
            (p["drift"] - 0.5 * v**2 - p["jump_intensity"] * kj) * dt
            + v * math.sqrt(dt) * z
            + jumps[:, k - 1]
            + ds[k]
        )
        arith_move = p["drift"] * dt + p["arith_vol"] * math.sqrt(dt) * z + ds[k]
        spot[:, k] = np.where(arith, s + arith_move, s * np.exp(log_move))
        zv = rho * z + np.sqrt(1 - rho**2) * zp[:, k - 1]
        ln_v = (
            np.log(v)
            + p["vol_kappa"] * (np.log(p["vol_theta"]) - np.log(v)) * dt
            + p["vol_of_vol"] * math.sqrt(dt) * zv
        )
        vol[:, k] = np.maximum(np.exp(ln_v) + dv[k], VOL_FLOOR)
    return spot, vol


# --------------------------------------------------------------------------------------------------
# determinism and the reference


def test_same_seed_same_paths_different_seed_different() -> None:
    p = full_params()
    a = draw_paths(np.random.default_rng(11), **p)
    b = draw_paths(np.random.default_rng(11), **p)
    c = draw_paths(np.random.default_rng(12), **p)
    for x, y in zip(a, b, strict=True):
        assert x.shape == (7, 41, 3) and x.dtype == np.float64
        np.testing.assert_array_equal(x, y)
    assert not np.any(a[0][:, 1:] == c[0][:, 1:])
    # the vols of the two underlyings with a vol of vol differ too (the third's is deterministic)
    assert not np.any(a[1][:, 1:30, :2] == c[1][:, 1:30, :2])
    np.testing.assert_array_equal(a[1][..., 2], c[1][..., 2])


def test_matches_numpy_reference() -> None:
    p = full_params()
    spot, vol = draw_paths(np.random.default_rng(5), **p)
    ref_spot, ref_vol = reference_paths(5, p)
    # The kernel moves S by a factor exp(.) and sigma by exp(d ln sigma); the reference works in logs:
    # the same formulas, rounded differently, over 40 steps: a few hundred ulps at most.
    np.testing.assert_allclose(spot, ref_spot, rtol=1e-12)
    np.testing.assert_allclose(vol, ref_vol, rtol=1e-12)
    # jumps happened (200 and 50 a year, 40 steps of 1/2520 year, 7 paths: ~3.3 and ~0.8 expected),
    # so the comparison covers the jump branch: the reference without jumps would not match
    no_jumps = {**p, "jump_intensity": np.zeros(3)}
    assert not np.allclose(reference_paths(5, no_jumps)[0], spot, rtol=1e-12)
    # the shocks are in the paths: the 1.0 drop of the arithmetic underlying, the vol floor
    assert (vol[:, 30, 1] == VOL_FLOOR).all()
    np.testing.assert_array_equal(spot[:, 0], np.broadcast_to(p["spot0"], (7, 3)))


def test_generator_state_depends_only_on_sizes() -> None:
    """Turning jumps and stochastic vol on draws the same numbers: the caller's later draws agree,
    and so do the diffusive shocks (a common random number across market settings)."""
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    plain = draw_paths(g1, **params(2, n_paths=50))
    rich = params(
        2,
        n_paths=50,
        jump_intensity=np.array([30.0, 0.0]),
        jump_std=np.array([0.05, 0.0]),
        vol_kappa=np.array([0.0, 3.0]),
        vol_of_vol=np.array([0.0, 1.0]),
    )
    rich_paths = draw_paths(g2, **rich)
    assert g1.random() == g2.random()
    # underlying 1 has no jumps and the spot of step 1 depends on vol0 only: identical
    np.testing.assert_array_equal(plain[0][:, 1, 1], rich_paths[0][:, 1, 1])


def test_constant_vol_is_exactly_constant() -> None:
    _, vol = draw_paths(np.random.default_rng(0), **params(2, n_steps=200))
    assert (vol == 0.2).all()


@pytest.mark.parametrize("lam", [1e-6, 0.02, 0.3, 2.5, 17.0, MAX_JUMPS_PER_STEP])
def test_poisson_inverse_transform_matches_scipy(lam: float) -> None:
    u = np.random.default_rng(31).random(20_000)
    u[0] = math.exp(-lam) * (1 - 1e-12)  # just below the first step of the CDF
    ours = np.array([paths_module._poisson_inv_py(x, lam) for x in u])
    # scipy's quantile, the same definition (smallest k with P(N <= k) >= u); a u within rounding
    # of a CDF step could differ by one: none occurs in these 20_000 draws
    np.testing.assert_array_equal(ours, stats.poisson.ppf(u, lam))
    compiled = np.array([paths_module._poisson_inv(x, lam) for x in u[:200]])
    np.testing.assert_array_equal(compiled, ours[:200])
    # the ends: u = 0 is no jump (scipy says -1 there); u within ulps of 1, above the rounded sum of
    # the probabilities, stops where the tail vanishes, near scipy's answer
    assert paths_module._poisson_inv_py(0.0, lam) == 0
    for top in (1.0 - 2.0**-53, 1.0 - 2.0**-50):
        assert abs(paths_module._poisson_inv_py(top, lam) - stats.poisson.ppf(top, lam)) <= 3


def test_jump_counts_have_poisson_frequencies() -> None:
    """The log-jumps of one step, with sigma_J = 0 and mu_J = 1, are the counts themselves."""
    lam, dt, n = 0.8 * 252.0, 1.0 / 252.0, 20_000
    p = params(
        1, n_paths=n, n_steps=1, dt_years=dt, vol0=[1e-6], vol_theta=[1e-6], jump_intensity=[lam],
        jump_mean=[1.0],
    )  # fmt: skip
    spot, _ = draw_paths(np.random.default_rng(14), **p)
    k_j = math.e - 1.0
    counts = np.log(spot[:, 1, 0] / 100.0) + lam * k_j * dt  # the compensator, and a ~1e-6 diffusion
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
    freq = np.bincount(np.round(counts).astype(int), minlength=6)[:6] / n
    pmf = stats.poisson.pmf(np.arange(6), lam * dt)
    assert (np.abs(freq - pmf) < 4 * np.sqrt(pmf * (1 - pmf) / n) + 1e-12).all()


# --------------------------------------------------------------------------------------------------
# moments


def test_gbm_log_return_mean_and_variance() -> None:
    sigma, mu, n, m, dt = 0.3, 0.08, 20_000, 50, 1.0 / 50.0
    p = params(1, n_paths=n, n_steps=m, dt_years=dt, vol0=[sigma], vol_theta=[sigma], drift=[mu])
    spot, _ = draw_paths(np.random.default_rng(21), **p)
    t = m * dt
    r = np.log(spot[:, -1, 0] / spot[:, 0, 0])
    mean, var = (mu - 0.5 * sigma**2) * t, sigma**2 * t
    se_mean = math.sqrt(var / n)  # 0.0021
    se_var = var * math.sqrt(2.0 / (n - 1))  # 0.0009 (normal sample variance)
    assert abs(r.mean() - mean) < 4 * se_mean
    assert abs(r.var(ddof=1) - var) < 4 * se_var
    # per-step log-returns: the same moments scaled by dt, from n * m samples
    steps = np.diff(np.log(spot[:, :, 0]), axis=1).ravel()
    assert abs(steps.mean() - mean / m) < 4 * math.sqrt(var / m / steps.size)
    assert abs(steps.var() - var / m) < 4 * (var / m) * math.sqrt(2.0 / steps.size)


def test_martingale_with_jumps_and_stochastic_vol() -> None:
    """E[S_T exp(-mu T)] = S_0. Without the compensator lambda_J k_J the mean would be
    S_0 exp(lambda_J k_J T) = 100 exp(-0.88) ~ 41: the test separates the two by far."""
    n, m, dt, mu = 20_000, 50, 1.0 / 50.0, 0.05
    p = params(
        1,
        n_paths=n,
        n_steps=m,
        dt_years=dt,
        vol0=[0.3],
        vol_theta=[0.25],
        vol_kappa=[2.0],
        vol_of_vol=[0.5],
        vol_spot_corr=[-0.5],
        drift=[mu],
        jump_intensity=[20.0],
        jump_mean=[-0.05],
        jump_std=[0.1],
    )
    spot, _ = draw_paths(np.random.default_rng(8), **p)
    x = spot[:, -1, 0] * math.exp(-mu * m * dt)
    se = x.std(ddof=1) / math.sqrt(n)  # ~0.5 (the terminal std is ~70)
    assert abs(x.mean() - 100.0) < 4 * se
    # and the jumps are there: they alone add lambda_J T (mu_J^2 + sigma_J^2) = 0.25 to the variance
    # of the log-return (the diffusion ~0.07), and skew it negatively (the diffusion alone: ~-0.1)
    r = np.log(spot[:, -1, 0] / 100.0)
    assert r.var() > 0.29
    skew = np.mean((r - r.mean()) ** 3) / r.std() ** 3
    assert skew < -0.2


def test_spot_shocks_have_the_requested_correlation() -> None:
    corr = np.array([[1.0, 0.8, -0.4], [0.8, 1.0, -0.1], [-0.4, -0.1, 1.0]])
    vols = np.array([0.2, 0.5, 0.35])
    n, m, dt = 4_000, 25, 1.0 / 252.0
    p = params(3, n_paths=n, n_steps=m, dt_years=dt, vol0=vols, vol_theta=vols, corr=corr)
    spot, _ = draw_paths(np.random.default_rng(4), **p)
    r = np.diff(np.log(spot), axis=1).reshape(-1, 3)
    est = np.corrcoef(r, rowvar=False)
    se = (1.0 - corr**2) / math.sqrt(r.shape[0])  # <= 0.001
    assert (np.abs(est - corr) <= 4 * se + 1e-12).all()


def test_singular_correlation_uses_the_eigen_factor() -> None:
    corr = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(corr)
    f = correlation_factor(corr, 3)
    np.testing.assert_allclose(f @ f.T, corr, atol=1e-14)
    spot, _ = draw_paths(np.random.default_rng(2), **params(3, n_paths=200, corr=corr))
    r = np.diff(np.log(spot), axis=1)
    # perfectly correlated underlyings with the same vol move together (to rounding of the factor)
    np.testing.assert_allclose(r[..., 0], r[..., 1], rtol=1e-10, atol=1e-15)
    assert abs(np.corrcoef(r[..., 0].ravel(), r[..., 2].ravel())[0, 1]) < 4 / math.sqrt(r[..., 0].size)


def test_vol_spot_correlation() -> None:
    rho, xi, sigma, n, m, dt = -0.7, 1.5, 0.3, 4_000, 25, 1.0 / 252.0
    p = params(
        1,
        n_paths=n,
        n_steps=m,
        dt_years=dt,
        vol0=[sigma],
        vol_theta=[sigma],
        vol_of_vol=[xi],
        vol_spot_corr=[rho],
    )
    spot, vol = draw_paths(np.random.default_rng(6), **p)
    # recover the shocks: with kappa = 0 and no jumps each is one step's move, standardised
    sig = vol[:, :-1, 0]
    z_s = (np.diff(np.log(spot[..., 0]), axis=1) + 0.5 * sig**2 * dt) / (sig * math.sqrt(dt))
    z_v = np.diff(np.log(vol[..., 0]), axis=1) / (xi * math.sqrt(dt))
    est = np.corrcoef(z_s.ravel(), z_v.ravel())[0, 1]
    assert abs(est - rho) < 4 * (1 - rho**2) / math.sqrt(z_s.size)  # SE 0.0010
    assert abs(z_s.std() - 1.0) < 0.01 and abs(z_v.std() - 1.0) < 0.01


def test_ou_mean_reversion() -> None:
    """ln sigma_n of the Euler scheme is normal with mean ln theta + a^n (ln sigma_0 - ln theta) and
    variance xi^2 dt (1 - a^(2n)) / (1 - a^2), a = 1 - kappa dt (exact for the discrete recursion)."""
    kappa, theta, xi, v0, n, m, dt = 8.0, 0.2, 0.9, 0.6, 5_000, 125, 1.0 / 125.0
    p = params(
        1,
        n_paths=n,
        n_steps=m,
        dt_years=dt,
        vol0=[v0],
        vol_theta=[theta],
        vol_kappa=[kappa],
        vol_of_vol=[xi],
        vol_spot_corr=[-0.5],
    )
    _, vol = draw_paths(np.random.default_rng(9), **p)
    assert vol.min() > VOL_FLOOR
    a = 1.0 - kappa * dt
    mean = math.log(theta) + a**m * (math.log(v0) - math.log(theta))
    var = xi**2 * dt * (1 - a ** (2 * m)) / (1 - a**2)  # ~ xi^2 / (2 kappa) = 0.051
    x = np.log(vol[:, -1, 0])
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / n)  # SE 0.0032
    assert abs(x.var(ddof=1) - var) < 4 * var * math.sqrt(2.0 / (n - 1))
    # kappa T = 8: the start (ln 0.6 - ln 0.2 = 1.1) is forgotten to 3e-4 (a^m = 2.5e-4)
    assert abs(x.mean() - math.log(theta)) < 0.01
    # without mean reversion the log-vol would still be centred on ln 0.6
    p0 = {**p, "vol_kappa": [0.0]}
    _, vol0 = draw_paths(np.random.default_rng(9), **p0)
    assert abs(np.log(vol0[:, -1, 0]).mean() - math.log(v0)) < 4 * xi / math.sqrt(n)  # SE xi sqrt(T / n)


def test_arithmetic_variance() -> None:
    a, mu, n, m, dt = 8.0, 3.0, 20_000, 20, 1.0 / 100.0
    p = params(1, n_paths=n, n_steps=m, dt_years=dt, arith_vol=[a], drift=[mu], spot0=[100.0])
    spot, vol = draw_paths(np.random.default_rng(13), **p)
    t = m * dt
    x = spot[:, -1, 0] - 100.0
    var = a * a * t
    assert abs(x.mean() - mu * t) < 4 * math.sqrt(var / n)
    assert abs(x.var(ddof=1) - var) < 4 * var * math.sqrt(2.0 / (n - 1))
    # additive: the step moves do not scale with the level
    steps = np.diff(spot[..., 0], axis=1)
    assert abs(steps.std() - a * math.sqrt(dt)) < 4 * a * math.sqrt(dt) / math.sqrt(2 * steps.size)
    assert (vol == 0.2).all()


def test_arithmetic_spot_may_go_negative() -> None:
    p = params(1, n_paths=2000, n_steps=50, arith_vol=[50.0], spot0=[1.0], dt_years=1.0 / 50.0)
    spot, _ = draw_paths(np.random.default_rng(1), **p)
    assert (spot < 0).any() and np.isfinite(spot).all()


# --------------------------------------------------------------------------------------------------
# scheduled shocks


def test_scheduled_shock_geometric() -> None:
    base = params(2, n_paths=5, n_steps=20, vol_kappa=[0.0, 25.0], vol_theta=[0.2, 0.2])
    k = 7
    shocked = {**base, "shock_step": [k], "shock_underlying": [1], "shock_spot": [-0.1], "shock_vol": [0.3]}
    s0, v0 = draw_paths(np.random.default_rng(17), **base)
    s1, v1 = draw_paths(np.random.default_rng(17), **shocked)
    # untouched before step k and on the other underlying
    np.testing.assert_array_equal(s1[:, :k], s0[:, :k])
    np.testing.assert_array_equal(v1[:, :k], v0[:, :k])
    np.testing.assert_array_equal(s1[..., 0], s0[..., 0])
    # at step k: ln S drops by 0.1 (vol before the step is the same, so the diffusion is the same)
    np.testing.assert_allclose(np.log(s1[:, k, 1] / s0[:, k, 1]), -0.1, rtol=1e-12)
    assert (v1[:, k, 1] == 0.5).all()  # 0.2 * exp(0) + 0.3, xi = 0
    # then the vol mean-reverts deterministically towards theta = 0.2
    dt = base["dt_years"]
    expected = 0.5
    for j in range(k + 1, 21):
        expected *= math.exp(25.0 * (math.log(0.2) - math.log(expected)) * dt)
        np.testing.assert_allclose(v1[:, j, 1], expected, rtol=1e-13)
    assert 0.2 < v1[0, -1, 1] < 0.5


def test_scheduled_shock_arithmetic_and_accumulation() -> None:
    base = params(1, n_paths=3, n_steps=5, arith_vol=[2.0], spot0=[10.0])
    s0, _ = draw_paths(np.random.default_rng(1), **base)
    s1, v1 = draw_paths(
        np.random.default_rng(1),
        **base,
        shock_step=np.array([5, 5, 1]),
        shock_underlying=[0, 0, 0],
        shock_spot=[-1.0, -0.5, 2.0],
    )
    np.testing.assert_allclose(s1[:, 1:5] - s0[:, 1:5], 2.0, rtol=1e-13)
    np.testing.assert_allclose(s1[:, 5] - s0[:, 5], 0.5, rtol=1e-12)
    assert (v1 == 0.2).all()  # shock_vol omitted: 0


def test_vol_shock_floored() -> None:
    p = params(1, shock_step=[2], shock_underlying=[0], shock_vol=[-1.0])
    _, vol = draw_paths(np.random.default_rng(0), **p)
    assert (vol[:, 2:, 0] == VOL_FLOOR).all() and (vol[:, :2, 0] == 0.2).all()


# --------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"n_paths": 0}, "n_paths"),
        ({"n_steps": 2.0}, "n_steps"),
        ({"dt_years": 0.0}, "dt_years"),
        ({"dt_years": math.nan}, "dt_years"),
        ({"spot0": [100.0, -1.0]}, r"spot0\[1\].*underlying 1"),
        ({"spot0": [[100.0, 1.0]]}, "spot0"),
        ({"vol0": [0.2, 0.0]}, r"vol0\[1\]"),
        ({"vol0": [0.2, math.nan]}, r"vol0\[1\].*not finite"),
        ({"vol0": [0.2, 0.2, 0.2]}, r"vol0.*shape"),
        ({"drift": [math.inf, 0.0]}, r"drift\[0\]"),
        ({"vol_theta": [0.2, -0.2]}, r"vol_theta\[1\]"),
        ({"vol_kappa": [-1.0, 0.0]}, r"vol_kappa\[0\]"),
        ({"vol_kappa": [0.0, 1000.0]}, r"vol_kappa\[1\].*kappa dt"),
        ({"vol_of_vol": [0.0, -0.1]}, r"vol_of_vol\[1\]"),
        ({"jump_intensity": [-1.0, 0.0]}, r"jump_intensity\[0\]"),
        ({"jump_std": [0.0, -0.1]}, r"jump_std\[1\]"),
        ({"jump_intensity": [0.0, 51.0 * 252.0]}, r"jump_intensity\[1\].*jumps per step"),
        ({"jump_mean": [0.0, 800.0], "jump_intensity": [1.0, 1.0]}, r"jump_mean\[1\].*underlying 1"),
        ({"vol_spot_corr": [0.0, 1.01]}, r"vol_spot_corr\[1\]"),
        ({"arith_vol": [-1.0, 0.0]}, r"arith_vol\[0\]"),
        ({"arith_vol": [1.0, 0.0], "jump_intensity": [2.0, 0.0]}, r"jump_intensity\[0\].*arithmetic"),
        ({"corr": np.eye(3)}, "corr: expected shape"),
        ({"corr": [[1.0, 0.5], [0.4, 1.0]]}, "corr is not symmetric"),
        ({"corr": [[1.0, 0.5], [0.5, 0.9]]}, r"corr does not have a unit diagonal.*corr\[1, 1\]"),
        ({"corr": [[1.0, math.nan], [math.nan, 1.0]]}, r"corr\[0, 1\].*not finite"),
        ({"corr": [[1.0, 1.5], [1.5, 1.0]]}, "positive semi-definite"),
        ({"shock_step": [3]}, "shock_underlying: required"),
        ({"shock_spot": [0.1]}, "shock_step: required"),
        ({"shock_step": [0], "shock_underlying": [0]}, r"shock_step\[0\] = 0"),
        ({"shock_step": [11], "shock_underlying": [0]}, r"shock_step\[0\] = 11.*\[1, 10\]"),
        ({"shock_step": [2.5], "shock_underlying": [0]}, r"shock_step\[0\]"),
        ({"shock_step": [2], "shock_underlying": [2]}, r"shock_underlying\[0\] = 2"),
        ({"shock_step": [2, 3], "shock_underlying": [0]}, "shock_underlying: length 1"),
        ({"shock_step": [2], "shock_underlying": [0], "shock_spot": [0.1, 0.2]}, "shock_spot: shape"),
        ({"shock_step": [2], "shock_underlying": [0], "shock_vol": [math.nan]}, r"shock_vol\[0\]"),
    ],
)
def test_bad_inputs_name_the_field(over: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        draw_paths(np.random.default_rng(0), **params(2, **over))


def test_overflowing_spot_is_refused() -> None:
    p = params(1, n_steps=5, drift=[1e300], dt_years=1.0)
    with pytest.raises(ValueError, match="spot of underlying 0 overflows"):
        draw_paths(np.random.default_rng(0), **p)


def test_inputs_not_mutated() -> None:
    p = full_params()
    frozen = {}
    for key, value in p.items():
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.setflags(write=False)
        frozen[key] = value
    spot, _ = draw_paths(np.random.default_rng(5), **frozen)
    np.testing.assert_array_equal(spot, draw_paths(np.random.default_rng(5), **p)[0])
    np.testing.assert_array_equal(frozen["spot0"], [100.0, 50.0, 20.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3,), (1 << 20,), ((1 << 20) + 1,), (1001, 1047), (2341, 80, 2)])
def test_uniforms_are_the_generators_own_stream(shape: tuple[int, ...], dtype: Any) -> None:
    """uniforms() (two threads on large arrays) is rng.random bit for bit, and leaves the generator
    where rng.random leaves it, also after an odd number of float32 draws (a buffered half output)."""
    for before in (0, 3, 4):
        a, b = np.random.default_rng(7), np.random.default_rng(7)
        a.random(before, dtype=np.float32)
        b.random(before, dtype=np.float32)
        np.testing.assert_array_equal(uniforms(b, shape, dtype), a.random(shape, dtype=dtype))
        np.testing.assert_array_equal(b.random(5), a.random(5))
        np.testing.assert_array_equal(b.random(5, dtype=np.float32), a.random(5, dtype=np.float32))
