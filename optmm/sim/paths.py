"""Market paths of the simulator: spot and instantaneous vol of each underlying, step by step.

Model, per underlying and per step of ``dt`` years (``sigma`` is the vol at the start of the step):

* vol, log-Ornstein-Uhlenbeck:
  ``ln sigma' = ln sigma + kappa (ln theta - ln sigma) dt + xi sqrt(dt) Z_v``, with
  ``Z_v = rho Z_s + sqrt(1 - rho^2) Z_perp`` (``rho < 0``: vol rises when spot falls);
* spot, geometric (``arith_vol == 0``):
  ``ln S' = ln S + (mu - sigma^2 / 2 - lambda_J k_J) dt + sigma sqrt(dt) Z_s + J``, where ``J`` is the
  sum of ``N ~ Poisson(lambda_J dt)`` normal log-jumps ``N(mu_J, sigma_J^2)`` and
  ``k_J = exp(mu_J + sigma_J^2 / 2) - 1``: each step is an exact martingale after the drift,
  ``E[S' | S] = S exp(mu dt)``, jumps or not;
* spot, arithmetic (``arith_vol > 0``, price units per sqrt(year), the Avellaneda-Stoikov (2008)
  mid-price): ``S' = S + mu dt + arith_vol sqrt(dt) Z_s`` (``mu`` in price units per year; no jumps).

The spot shocks ``Z_s`` of the underlyings are correlated by ``corr``; ``Z_perp`` is independent.
Scheduled shocks (a flash crash) add a jump of spot and of vol at given steps.

All random numbers are drawn up front from the caller's :class:`numpy.random.Generator`, in a fixed
order (see :func:`draw_paths`), and the recursion is a compiled loop over the drawn arrays: the same
seed gives the same paths bit for bit.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
from numba import njit

from optmm.typing import ArrayLike, FloatArray

__all__ = ["MAX_JUMPS_PER_STEP", "VOL_FLOOR", "correlation_factor", "draw_paths", "uniforms"]

VOL_FLOOR = 1e-4
"""The smallest instantaneous vol a path takes (a vol shock may push vol below zero; the floor keeps
the log-OU recursion and the option pricing defined)."""

MAX_JUMPS_PER_STEP = 50.0
"""The largest expected number of jumps in one step, ``jump_intensity * dt_years`` (beyond it jumps
are a diffusion: shorten the steps)."""

_SYM_TOL = 1e-12  # |corr[i, j] - corr[j, i]| and |corr[i, i] - 1| allowed (rounding of a user's matrix)
_PSD_TOL = 1e-10  # smallest eigenvalue allowed, times nu (rounding of a singular PSD matrix)


def _step_py(
    s: float,
    v: float,
    zs: float,
    zp: float,
    jump: float,
    dt: float,
    sqdt: float,
    mu: float,
    comp: float,
    arith: float,
    kappa: float,
    ln_theta: float,
    xi: float,
    rho: float,
    rho_c: float,
    shock_s: float,
    shock_v: float,
) -> tuple[float, float]:
    """One step of one underlying: ``(spot, vol)`` at the end of the step (plain Python).

    ``comp`` is the jump compensator ``lambda_J k_J``, ``rho_c = sqrt(1 - rho^2)``; ``shock_s`` is
    added to ``ln S`` (geometric) or to ``S`` (arithmetic), ``shock_v`` to the vol, which is then
    floored at :data:`VOL_FLOOR`. The vol moves by a factor ``exp(d ln sigma)``, so that with
    ``kappa = xi = 0`` it stays equal to its initial value to the bit.
    """
    if arith > 0.0:
        s_new = s + mu * dt + arith * sqdt * zs + shock_s
    else:
        s_new = s * math.exp((mu - 0.5 * v * v - comp) * dt + v * sqdt * zs + jump + shock_s)
    dlv = kappa * (ln_theta - math.log(v)) * dt + xi * sqdt * (rho * zs + rho_c * zp)
    v_new = v * math.exp(dlv) + shock_v
    return s_new, max(v_new, VOL_FLOOR)


_step = njit(cache=True, inline="always", error_model="numpy")(_step_py)


def _poisson_inv_py(u: float, lam: float) -> int:
    """The Poisson(``lam``) count at probability ``u`` in [0, 1): the smallest ``k`` with
    ``P(N <= k) >= u`` (inverse transform by sequential search; ``lam <=`` :data:`MAX_JUMPS_PER_STEP`).

    The search also stops past the mode once a term no longer changes the summed CDF: a ``u``
    within a few ulps of 1, above the rounded CDF, gets the count where the tail vanishes.
    """
    p = math.exp(-lam)
    cdf = p
    k = 0
    while u > cdf:
        k += 1
        p *= lam / k
        nxt = cdf + p
        if nxt == cdf and k > lam:
            break
        cdf = nxt
    return k


_poisson_inv = njit(cache=True, inline="always", error_model="numpy")(_poisson_inv_py)


def _jump_py(u: float, z: float, lam_dt: float, mu_j: float, sig_j: float) -> float:
    """The log-jump of one step: ``N mu_J + sqrt(N) sigma_J z``, ``N`` the Poisson(``lam_dt``) count at
    ``u`` (0 when ``lam_dt == 0``)."""
    if lam_dt <= 0.0:
        return 0.0
    n = _poisson_inv(u, lam_dt)
    if n == 0:
        return 0.0
    return n * mu_j + math.sqrt(n) * sig_j * z


_jump = njit(cache=True, inline="always", error_model="numpy")(_jump_py)


@njit(cache=True, error_model="numpy")
def _paths_kernel(
    zs,
    zp,
    uj,
    zj,
    shock_s,
    shock_v,
    dt,
    mu,
    lam_dt,
    mu_j,
    sig_j,
    comp,
    arith,
    kappa,
    ln_theta,
    xi,
    rho,
    rho_c,
    spot,
    vol,
):  # pragma: no cover - compiled
    """Fill ``spot`` and ``vol`` (n_paths, n_steps + 1, nu) from row 0, in place.

    ``zs`` (correlated spot shocks), ``zp`` (Z_perp), ``uj`` (uniforms of the jump counts), ``zj``
    (normals of the jump sizes): (n_paths, n_steps, nu); ``shock_s``, ``shock_v``: (n_steps, nu),
    row ``k - 1`` applied on the move into step ``k``; the rest per underlying (nu,), with
    ``lam_dt = lambda_J dt``, ``comp = lambda_J k_J`` and ``rho_c = sqrt(1 - rho^2)``.
    """
    n_paths, n_steps, nu = zs.shape
    sqdt = math.sqrt(dt)
    for p in range(n_paths):
        for k in range(n_steps):
            for u in range(nu):
                jump = _jump(uj[p, k, u], zj[p, k, u], lam_dt[u], mu_j[u], sig_j[u])
                s_new, v_new = _step(
                    spot[p, k, u],
                    vol[p, k, u],
                    zs[p, k, u],
                    zp[p, k, u],
                    jump,
                    dt,
                    sqdt,
                    mu[u],
                    comp[u],
                    arith[u],
                    kappa[u],
                    ln_theta[u],
                    xi[u],
                    rho[u],
                    rho_c[u],
                    shock_s[k, u],
                    shock_v[k, u],
                )
                spot[p, k + 1, u] = s_new
                vol[p, k + 1, u] = v_new


def _per_underlying(name: str, value: Any, nu: int) -> FloatArray:
    """``value`` as a float64 array of shape (nu,) (a scalar is broadcast), finite."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numeric ({exc})") from None
    if a.ndim == 0:
        a = np.full(nu, float(a))
    if a.shape != (nu,):
        raise ValueError(f"{name}: expected shape ({nu},) (one value per underlying), got {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {a[bad[0]]} is not finite")
    return a


def _require(name: str, a: FloatArray, ok: np.ndarray, what: str) -> None:
    """Raise ValueError naming the first underlying where ``ok`` is False."""
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {a[i]!r} (underlying {i}): must be {what}")


def correlation_factor(corr: ArrayLike, nu: int) -> FloatArray:
    """A factor ``L`` (nu, nu) with ``L @ L.T == corr``, after validating ``corr``.

    Parameters
    ----------
    corr : array_like of shape (nu, nu)
        A correlation matrix: finite, symmetric, unit diagonal, positive semi-definite.
    nu : int
        The number of underlyings.

    Returns
    -------
    ndarray of shape (nu, nu)
        The Cholesky factor; for a singular (PSD but not positive definite) matrix, where Cholesky
        fails, ``V diag(sqrt(max(w, 0)))`` from the eigen-decomposition ``corr = V diag(w) V^T``.

    Raises
    ------
    ValueError
        Naming the entry and the property that fails.

    Examples
    --------
    >>> correlation_factor([[1.0, 1.0], [1.0, 1.0]], 2) @ correlation_factor([[1.0, 1.0], [1.0, 1.0]], 2).T
    array([[1., 1.],
           [1., 1.]])
    """
    try:
        c = np.asarray(corr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"corr: not numeric ({exc})") from None
    if c.shape != (nu, nu):
        raise ValueError(f"corr: expected shape ({nu}, {nu}), got {c.shape}")
    bad = np.argwhere(~np.isfinite(c))
    if bad.size:
        i, j = bad[0]
        raise ValueError(f"corr[{i}, {j}] = {c[i, j]} is not finite")
    asym = np.abs(c - c.T)
    if asym.max(initial=0.0) > _SYM_TOL:
        i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
        raise ValueError(f"corr is not symmetric: corr[{i}, {j}] = {c[i, j]} != corr[{j}, {i}] = {c[j, i]}")
    off = np.abs(np.diag(c) - 1.0)
    if off.max(initial=0.0) > _SYM_TOL:
        i = int(np.argmax(off))
        raise ValueError(f"corr does not have a unit diagonal: corr[{i}, {i}] = {c[i, i]}")
    c = 0.5 * (c + c.T)
    try:
        return np.asarray(np.linalg.cholesky(c), dtype=np.float64)
    except np.linalg.LinAlgError:
        pass
    w, v = np.linalg.eigh(c)
    if w[0] < -_PSD_TOL * nu:
        raise ValueError(f"corr is not positive semi-definite: smallest eigenvalue {w[0]:.3g}")
    return np.asarray(v * np.sqrt(np.clip(w, 0.0, None)), dtype=np.float64)


def _shock_arrays(
    n_steps: int,
    nu: int,
    shock_step: ArrayLike | None,
    shock_underlying: ArrayLike | None,
    shock_spot: ArrayLike | None,
    shock_vol: ArrayLike | None,
) -> tuple[FloatArray, FloatArray]:
    """Dense (n_steps, nu) spot and vol shocks: row ``k - 1`` holds the shocks of step ``k``."""
    shock_s = np.zeros((n_steps, nu))
    shock_v = np.zeros((n_steps, nu))
    if shock_step is None and shock_underlying is None and shock_spot is None and shock_vol is None:
        return shock_s, shock_v
    if shock_step is None or shock_underlying is None:
        missing = "shock_step" if shock_step is None else "shock_underlying"
        raise ValueError(f"{missing}: required when a scheduled shock is given")
    index: dict[str, np.ndarray] = {}
    for name, value, lower, upper in (
        ("shock_step", shock_step, 1, n_steps),
        ("shock_underlying", shock_underlying, 0, nu - 1),
    ):
        a = np.atleast_1d(np.asarray(value))
        if a.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence, got shape {a.shape}")
        for j, x in enumerate(a.tolist()):
            ok = isinstance(x, int | float) and not isinstance(x, bool) and float(x).is_integer()
            if not (ok and lower <= x <= upper):
                raise ValueError(f"{name}[{j}] = {x!r}: must be an integer in [{lower}, {upper}]")
        index[name] = a.astype(np.int64)
    n = index["shock_step"].size
    if index["shock_underlying"].size != n:
        m = index["shock_underlying"].size
        raise ValueError(f"shock_underlying: length {m} != length of shock_step ({n})")
    size: dict[str, np.ndarray] = {}
    for name, amount in (("shock_spot", shock_spot), ("shock_vol", shock_vol)):
        try:
            a = np.zeros(n) if amount is None else np.atleast_1d(np.asarray(amount, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: not numeric ({exc})") from None
        if a.shape != (n,):
            raise ValueError(f"{name}: shape {a.shape} != ({n},) (the length of shock_step)")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {a[bad[0]]} is not finite")
        size[name] = a
    rows, cols = index["shock_step"] - 1, index["shock_underlying"]
    # several shocks at the same (step, underlying) add up
    np.add.at(shock_s, (rows, cols), size["shock_spot"])
    np.add.at(shock_v, (rows, cols), size["shock_vol"])
    return shock_s, shock_v


def draw_paths(
    rng: np.random.Generator,
    *,
    n_paths: int,
    n_steps: int,
    dt_years: float,
    spot0: ArrayLike,
    vol0: ArrayLike,
    drift: ArrayLike,
    jump_intensity: ArrayLike,
    jump_mean: ArrayLike,
    jump_std: ArrayLike,
    vol_kappa: ArrayLike,
    vol_theta: ArrayLike,
    vol_of_vol: ArrayLike,
    vol_spot_corr: ArrayLike,
    arith_vol: ArrayLike,
    corr: ArrayLike,
    shock_step: ArrayLike | None = None,
    shock_underlying: ArrayLike | None = None,
    shock_spot: ArrayLike | None = None,
    shock_vol: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Draw spot and vol paths of ``nu`` underlyings (see the module docstring for the model).

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of every random number (see Notes for the order of the draws).
    n_paths, n_steps : int
        Number of paths (>= 1) and of steps (>= 1).
    dt_years : float
        Length of a step in years (> 0).
    spot0 : array_like of shape (nu,)
        Initial spots; ``nu = len(spot0)``. > 0 for a geometric underlying.
    vol0 : array_like of shape (nu,)
        Initial instantaneous vols (decimals, > 0).
    drift : array_like of shape (nu,)
        ``mu``: per year, continuously compounded (geometric); price units per year (arithmetic).
    jump_intensity, jump_mean, jump_std : array_like of shape (nu,)
        ``lambda_J`` (jumps per year, >= 0, ``lambda_J dt <=`` :data:`MAX_JUMPS_PER_STEP`), mean and
        std (>= 0) of one log-jump.
    vol_kappa, vol_theta, vol_of_vol : array_like of shape (nu,)
        Mean reversion speed ``kappa`` (per year, >= 0, ``kappa dt <= 1``), long-run vol
        ``theta`` (> 0) and vol of log-vol ``xi`` (per sqrt(year), >= 0).
    vol_spot_corr : array_like of shape (nu,)
        ``rho`` in [-1, 1], correlation of the log-vol and spot shocks.
    arith_vol : array_like of shape (nu,)
        0: geometric spot; > 0: arithmetic spot with this vol in price units per sqrt(year)
        (then ``jump_intensity`` must be 0).
    corr : array_like of shape (nu, nu)
        Correlation of the spot shocks: symmetric, unit diagonal, positive semi-definite.
    shock_step, shock_underlying : sequence of int, optional
        Scheduled shocks: at step ``shock_step[j]`` in ``[1, n_steps]`` (the move between step
        ``k - 1`` and ``k``), underlying ``shock_underlying[j]`` in ``[0, nu)``. Required together.
    shock_spot, shock_vol : sequence of float, optional
        Added to ``ln S`` (geometric) or ``S`` (arithmetic), and to the vol (absolute; the vol then
        mean-reverts from there); default 0. Shocks at the same step and underlying add up.
        Every path gets the same shocks.

    Returns
    -------
    spot, vol : ndarray of shape (n_paths, n_steps + 1, nu)
        float64; row 0 holds ``spot0`` and ``vol0``, row ``k`` the values after ``k`` steps.

    Raises
    ------
    ValueError
        An invalid input, naming the field and the underlying.

    Notes
    -----
    The draws, in this order, each one vectorised call on ``rng``:

    1. ``rng.standard_normal((n_paths, n_steps, nu))``: independent spot shocks, then multiplied by
       the factor of ``corr`` (:func:`correlation_factor`) over the last axis;
    2. ``rng.standard_normal((n_paths, n_steps, nu))``: ``Z_perp`` of the vol shocks;
    3. ``rng.random((n_paths, n_steps, nu))``: uniforms ``U`` of the jump counts, ``N`` the
       Poisson(``jump_intensity * dt_years``) quantile at ``U`` (inverse transform, in the kernel);
    4. ``rng.standard_normal((n_paths, n_steps, nu))``: ``Z_J``, ``J = N mu_J + sqrt(N) sigma_J Z_J``.

    All four are made whatever the parameters, and the counts by inverse transform rather than
    ``rng.poisson`` (whose use of the stream depends on the intensity), so the generator's state
    after the call depends only on the three sizes: two configurations that differ only in market
    parameters see the same shocks, and the caller's later draws (order flow) are the same too.

    The vol is floored at :data:`VOL_FLOOR` after each step (only a large negative ``shock_vol``
    reaches it: the OU moves ``ln sigma``). The vol of a path is the instantaneous vol of its
    underlying whichever the spot model; with an arithmetic spot it does not drive the spot.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> spot, vol = draw_paths(rng, n_paths=2, n_steps=3, dt_years=1 / 252, spot0=[100.0], vol0=[0.2],
    ...     drift=0.0, jump_intensity=0.0, jump_mean=0.0, jump_std=0.0, vol_kappa=0.0, vol_theta=0.2,
    ...     vol_of_vol=0.0, vol_spot_corr=0.0, arith_vol=0.0, corr=[[1.0]])
    >>> spot.shape, bool((vol == 0.2).all())
    ((2, 4, 1), True)
    """
    for name, n, lower in (("n_paths", n_paths, 1), ("n_steps", n_steps, 1)):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < lower:
            raise ValueError(f"{name} = {n!r}: must be an integer >= {lower}")
    n_paths, n_steps = int(n_paths), int(n_steps)
    dt = float(dt_years)
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"dt_years = {dt_years!r}: must be finite and > 0")

    s0 = np.atleast_1d(np.asarray(spot0, dtype=np.float64))
    if s0.ndim != 1 or s0.size == 0:
        raise ValueError(f"spot0: expected a non-empty 1-D array (one spot per underlying), got {s0.shape}")
    nu = s0.size
    s0 = _per_underlying("spot0", s0, nu)
    v0 = _per_underlying("vol0", vol0, nu)
    mu = _per_underlying("drift", drift, nu)
    lam = _per_underlying("jump_intensity", jump_intensity, nu)
    mu_j = _per_underlying("jump_mean", jump_mean, nu)
    sig_j = _per_underlying("jump_std", jump_std, nu)
    kappa = _per_underlying("vol_kappa", vol_kappa, nu)
    theta = _per_underlying("vol_theta", vol_theta, nu)
    xi = _per_underlying("vol_of_vol", vol_of_vol, nu)
    rho = _per_underlying("vol_spot_corr", vol_spot_corr, nu)
    arith = _per_underlying("arith_vol", arith_vol, nu)

    _require("vol0", v0, v0 > 0.0, "> 0")
    _require("vol_theta", theta, theta > 0.0, "> 0")
    _require("vol_kappa", kappa, kappa >= 0.0, ">= 0")
    _require("vol_kappa", kappa, kappa * dt <= 1.0, f"<= 1 / dt_years = {1.0 / dt:.6g} (kappa dt <= 1)")
    _require("vol_of_vol", xi, xi >= 0.0, ">= 0")
    _require("jump_intensity", lam, lam >= 0.0, ">= 0")
    _require("jump_std", sig_j, sig_j >= 0.0, ">= 0")
    _require(
        "jump_intensity",
        lam,
        lam * dt <= MAX_JUMPS_PER_STEP,
        f"<= {MAX_JUMPS_PER_STEP:g} / dt_years = {MAX_JUMPS_PER_STEP / dt:.6g} (expected jumps per step)",
    )
    _require("vol_spot_corr", rho, np.abs(rho) <= 1.0, "in [-1, 1]")
    _require("arith_vol", arith, arith >= 0.0, ">= 0")
    _require("spot0", s0, (arith > 0.0) | (s0 > 0.0), "> 0 (geometric spot: arith_vol == 0)")
    _require(
        "jump_intensity", lam, (arith == 0.0) | (lam == 0.0), "0 with an arithmetic spot (arith_vol > 0)"
    )
    factor = correlation_factor(corr, nu)
    shock_s, shock_v = _shock_arrays(n_steps, nu, shock_step, shock_underlying, shock_spot, shock_vol)
    comp = np.zeros(nu)  # lambda_J k_J, the jump compensator
    for u in np.flatnonzero(lam > 0.0):
        try:
            comp[u] = lam[u] * math.expm1(mu_j[u] + 0.5 * sig_j[u] * sig_j[u])
        except OverflowError:
            raise ValueError(
                f"jump_mean[{u}], jump_std[{u}] (underlying {u}): exp(mu_J + sigma_J^2 / 2) overflows"
            ) from None

    shape = (n_paths, n_steps, nu)
    # einsum's own loop, not BLAS: a BLAS call leaves its thread pool spinning, stealing the cores
    # from the compiled loops that follow
    zs = np.einsum("psj,ij->psi", rng.standard_normal(shape), factor, optimize=False)
    zp = rng.standard_normal(shape)
    uj = rng.random(shape)
    zj = rng.standard_normal(shape)

    spot = np.empty((n_paths, n_steps + 1, nu))
    vol = np.empty((n_paths, n_steps + 1, nu))
    spot[:, 0, :] = s0
    vol[:, 0, :] = v0
    _paths_kernel(
        np.ascontiguousarray(zs), zp, uj, zj, shock_s, shock_v, dt, mu, lam * dt, mu_j, sig_j, comp, arith,
        kappa, np.log(theta), xi, rho, np.sqrt(1.0 - rho * rho), spot, vol,
    )  # fmt: skip
    if not np.isfinite(spot).all():
        first = int(np.flatnonzero(~np.isfinite(spot).all(axis=(0, 1)))[0])
        raise ValueError(f"spot of underlying {first} overflows: drift, vol or jumps too large for the run")
    return spot, vol


_TWO_THREADS_FROM = 1 << 20  # values; below it one thread fills as fast
_filler: ThreadPoolExecutor | None = None


def uniforms(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``rng.random(shape, dtype)``, bit for bit and leaving ``rng`` in the same state, filled by two
    threads when the array is large and ``rng`` is a PCG64 (the simulator's flow draws: millions of
    uniforms per path, the largest cost outside its loop).

    The second half comes from a copy of the generator advanced past the first half's draws (one
    64-bit output per float64, one per two float32), so the halves are the serial stream's.
    """
    global _filler
    dtype = np.dtype(dtype)
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    bg = rng.bit_generator
    state = bg.state
    per = 1 if dtype == np.float64 else 2  # values per 64-bit output
    if (
        flat.size < _TWO_THREADS_FROM
        or not isinstance(bg, np.random.PCG64)
        or state["has_uint32"]  # a float32 fill would start on a buffered half output
        or (os.cpu_count() or 1) < 2
    ):
        rng.random(dtype=dtype, out=flat)
        return out
    half = flat.size // 2 // per * per
    second = np.random.PCG64()
    second.state = cast(Any, state)  # (checked a PCG64 above)
    second.advance(half // per)
    if _filler is None:
        _filler = ThreadPoolExecutor(1, thread_name_prefix="optmm-uniforms")
    done = _filler.submit(np.random.Generator(second).random, dtype=dtype, out=flat[half:])
    rng.random(dtype=dtype, out=flat[:half])
    done.result()
    bg.state = second.state
    return out
