"""Fit one expiry's smile, free of butterfly arbitrage by constraint.

The fit has two stages, both weighted in vol units (a residual of 0.001 is 0.1 vol point):

1. Raw SVI by least squares with the arbitrage conditions as constraints: Lee's wing bound
   ``b (1 + |rho|) <= 2``, ``w > 0``, and Durrleman's ``g(k) >= 0`` on a grid over and beyond the
   quotes (penalties that vanish where the conditions hold). This is the floor: a pure SVI smile.
2. A clamped cubic B-spline correction in total variance fitted to SVI's residuals by penalised
   least squares (second differences of the coefficients; P-spline), with knots inside the quoted
   range so that the wings stay SVI's. The correction is then scaled by the largest factor in
   ``[0, 1]`` that keeps ``g >= 0`` on the grid: the correction can only bring the fit closer to the
   quotes and never brings in butterfly arbitrage.

Slices with fewer than :data:`MIN_QUOTES_SVI` quotes are not fitted by SVI (five parameters from a
handful of noisy points is a wild fit): see :func:`fit_smile`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optmm.chain._spline import min_g
from optmm.chain._svi import svi_fit, svi_raw, svi_start
from optmm.chain.smile import Smile, design_matrix
from optmm.typing import FloatArray

__all__ = ["MIN_QUOTES_SPLINE", "MIN_QUOTES_SVI", "SliceFit", "check_grid", "fit_smile", "spline_grid"]

MIN_QUOTES_SVI = 6
"""Fewer quotes than this: the smile is flat in total variance at the weighted mean of the quotes."""
MIN_QUOTES_SPLINE = 20
"""Fewer quotes than this: no spline correction (SVI alone)."""
QUOTES_PER_KNOT = 10
MAX_KNOTS = 40
_SMOOTH = 1e-3  # P-spline roughness weight, relative to the total data weight


def check_grid(k: FloatArray, w: FloatArray, n: int = 801) -> FloatArray:
    """The log-moneyness grid on which butterfly arbitrage is checked and enforced.

    It covers the quotes and 8 standard deviations of the median total variance either side of
    them (beyond, SVI's wings are linear with Lee-bounded slopes), ``n`` points evenly spaced.
    """
    sd = float(np.sqrt(max(float(np.median(w)), 1e-8)))
    return np.linspace(float(k.min()) - 8.0 * sd, float(k.max()) + 8.0 * sd, n)


@dataclass(frozen=True)
class SliceFit:
    """A fitted smile and how it was obtained.

    Attributes
    ----------
    smile : Smile
    method : str
        ``"svi+spline"``, ``"svi"`` or ``"flat"`` (too few quotes).
    spline_scale : float
        The factor the spline correction was scaled by to keep ``g >= 0`` (1.0: not needed).
    min_g : float
        The smallest Durrleman ``g`` on the check grid (>= 0: no butterfly arbitrage there).
    """

    smile: Smile
    method: str
    spline_scale: float
    min_g: float


def _fit_svi(k: FloatArray, w: FloatArray, om: FloatArray, check: FloatArray) -> Smile:
    """Raw SVI by the compiled Levenberg-Marquardt of :mod:`optmm.chain._svi`, the density penalty on
    every fourth point of the check grid (``g`` is held above a margin there, and checked on
    ``check``)."""
    p0 = svi_start(k, w, om)
    q0 = np.array(
        [
            p0[0],
            math.log(max(p0[1], 1e-6)),
            math.atanh(min(max(float(p0[2]), -0.99), 0.99)),
            p0[3],
            math.log(max(p0[4], 1e-4)),
        ]
    )
    q = svi_fit(q0, k, w, np.sqrt(om), np.ascontiguousarray(check[::4]))
    a, b, rho, m, sig = (float(x) for x in svi_raw(q))
    return Smile(a, b, rho, m, sig)


def _min_g(smile: Smile, grid: FloatArray, theta: float = 1.0) -> float:
    """The smallest ``g`` on ``grid`` of ``smile``'s SVI plus ``theta`` times its spline (``-inf`` where
    ``w <= 0``), compiled (:func:`optmm.chain._spline.min_g`)."""
    t, c = smile.padded if smile.coef.size else (np.zeros(0), np.zeros(0))
    return float(min_g(np.ascontiguousarray(grid), smile.params, t, c, theta))


def _largest_safe_scale(base: Smile, knots: FloatArray, coef: FloatArray, grid: FloatArray) -> float:
    """The largest ``theta`` in [0, 1] (to 1/1024) with ``g >= 0`` for ``base + theta * spline``."""
    both = Smile(base.a, base.b, base.rho, base.m, base.sigma, knots, coef)

    def ok(theta: float) -> bool:
        return _min_g(both, grid, theta) >= 0.0

    if ok(1.0):
        return 1.0
    lo_t, hi_t = 0.0, 1.0
    for _ in range(10):
        mid = 0.5 * (lo_t + hi_t)
        if ok(mid):
            lo_t = mid
        else:
            hi_t = mid
    return lo_t


def spline_grid(k: FloatArray, knots: FloatArray) -> FloatArray:
    """Where ``g >= 0`` is enforced inside the spline's range: the quotes and 16 points per knot span."""
    # as np.linspace(knots[i], knots[i + 1], 17)[:-1] per span, all spans at once
    pieces = knots[:-1, None] + np.arange(16.0) * (np.diff(knots) / 16.0)[:, None]
    return np.unique(np.concatenate([pieces.reshape(-1), knots[-1:], k]))


def _ladder(n: int) -> list[tuple[int, float]]:
    """(interior knots, roughness weight) from the most flexible down: the fit takes the first that is
    free of butterfly arbitrage."""
    top = int(min(MAX_KNOTS, max(3, n // QUOTES_PER_KNOT)))
    out: list[tuple[int, float]] = []
    n_int = top
    while True:
        out += [(n_int, 0.1), (n_int, 1.0)]
        if n_int == 3:
            return out
        n_int = max(3, min(n_int - 1, int(n_int * 0.9)))


def _correction(
    base: Smile, k: FloatArray, w: FloatArray, om: FloatArray, n_int: int, smooth: float
) -> tuple[FloatArray, FloatArray]:
    """Knots at quantiles of the quotes and P-spline coefficients fitted to SVI's residuals."""
    inner = np.quantile(k, np.linspace(0.0, 1.0, n_int + 2)[1:-1])
    knots = np.concatenate([k[:1], inner, k[-1:]])
    if np.any(np.diff(knots) <= 0.0):
        knots = np.linspace(k[0], k[-1], n_int + 2)
    v = design_matrix(k, knots)
    nb = v.shape[1]
    d2 = np.diff(np.eye(nb), 2, axis=0)
    lam = smooth * _SMOOTH * float(np.sum(om))
    lhs = (v.T * om) @ v + lam * (d2.T @ d2) + 1e-12 * lam * np.eye(nb)
    coef = np.linalg.solve(lhs, (v.T * om) @ (w - base.svi(k)[0]))
    return np.asarray(knots, dtype=np.float64), np.asarray(coef, dtype=np.float64)


def fit_smile(k: FloatArray, w: FloatArray, weight: FloatArray, t: float) -> SliceFit:
    """Fit one expiry's total variance smile to quotes, free of butterfly arbitrage on the grid.

    Parameters
    ----------
    k : ndarray of float64, shape (n,)
        Log-moneyness ``ln(K / F)`` of the quotes, strictly increasing.
    w : ndarray of float64, shape (n,)
        Total implied variance ``vol^2 t`` of the quotes (mid), > 0.
    weight : ndarray of float64, shape (n,)
        Weight of each quote's error in vol units (e.g. ``1 / spread_vol^2``), >= 0.
    t : float
        Time to expiry in years (converts total variance errors to vol errors).

    Returns
    -------
    SliceFit

    Notes
    -----
    Fallback rules: with fewer than :data:`MIN_QUOTES_SVI` quotes the smile is flat in total
    variance at the weighted mean (``b = 0``; no skew is invented); with fewer than
    :data:`MIN_QUOTES_SPLINE` it is SVI alone. A pure SVI fit that still shows negative ``g`` on the
    grid (the penalty is soft) is reported through ``min_g``; the caller counts it as a violation.
    """
    n = k.size
    vol = np.sqrt(w / t)
    om = weight / (2.0 * vol * t) ** 2  # a total variance error dw is a vol error dw / (2 vol t)
    if n < MIN_QUOTES_SVI:
        level = float(np.sum(weight * w) / np.sum(weight)) if np.sum(weight) > 0 else float(np.mean(w))
        smile = Smile(level, 0.0, 0.0, 0.0, 1.0)
        return SliceFit(smile, "flat", 0.0, 0.25)
    grid = check_grid(k, w)
    base = _fit_svi(k, w, om, grid)
    if n < MIN_QUOTES_SPLINE:
        return SliceFit(base, "svi", 0.0, _min_g(base, grid))
    best: tuple[FloatArray, FloatArray, FloatArray, float] | None = None
    for n_int, smooth in _ladder(n):
        knots, coef = _correction(base, k, w, om, n_int, smooth)
        fine = spline_grid(k, knots)
        theta = _largest_safe_scale(base, knots, coef, fine)
        if best is None or theta == 1.0:
            best = (knots, coef, fine, theta)
        if theta == 1.0:
            break
    assert best is not None
    knots, coef, fine, theta = best
    smile = Smile(base.a, base.b, base.rho, base.m, base.sigma, knots, theta * coef)
    return SliceFit(smile, "svi+spline", theta, min(_min_g(smile, grid), _min_g(smile, fine)))
