"""The raw SVI stage of the smile fit, compiled: a start by linear least squares, then
Levenberg-Marquardt with an analytic Jacobian on the weighted residuals plus the arbitrage penalties.

Each rule is written once as plain Python (``*_py``, readable and debuggable; the tests run the
twins against the compiled forms) and compiled with ``njit``.

The fit works in unconstrained coordinates ``q = (a, u, v, m, s)`` with ``b = e^u``,
``rho = tanh v``, ``sigma = e^s``, clamped so that ``|rho| < 1`` and ``b``, ``sigma`` stay finite and
> 0 in floating point (the derivative is 0 beyond the clamps). Its residuals, in vol-weighted total
variance units, are

* ``sqrt(om_i) (w_svi(k_i) - w_i)`` per quote;
* ``PENALTY min(g(x_j) - G_MARGIN, 0)`` per penalty grid point (Durrleman's density condition);
* ``PENALTY min(w_svi(x_j) - W_FLOOR, 0)`` per penalty grid point (positive total variance);
* ``PENALTY max(b (1 + |rho|) - 2, 0)`` (Lee's wing bound).

The normal equations (``J^T J``, ``J^T r``: 5 x 5 and 5) are accumulated point by point, never
forming ``J``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from optmm.chain._spline import durrleman
from optmm.typing import FloatArray

__all__ = [
    "svi_fit",
    "svi_fit_py",
    "svi_raw",
    "svi_raw_py",
    "svi_start",
    "svi_start_py",
    "svi_system",
    "svi_system_py",
]

PENALTY = 1e3  # weight of one unit of negative g (vs residuals in vol units)
G_MARGIN = 1e-3  # SVI's g is held above this, so that rounding cannot take it below 0
W_FLOOR = 1e-10
ATANH_MAX = 7.0  # |rho| <= tanh(7) = 0.9999983
U_LO, U_HI = -30.0, math.log(4.0)  # b in [e^-30, 4]
S_LO, S_HI = math.log(1e-5), math.log(1e2)  # sigma in [1e-5, 100]
MAX_NFEV = 200
TOL = 1e-6  # relative reduction of the cost, and relative step, below which the fit stops


def svi_raw_py(q: FloatArray) -> tuple[float, float, float, float, float]:
    """Raw SVI ``(a, b, rho, m, sigma)`` from the clamped unconstrained coordinates."""
    u = min(max(q[1], U_LO), U_HI)
    v = min(max(q[2], -ATANH_MAX), ATANH_MAX)
    s = min(max(q[4], S_LO), S_HI)
    return q[0], math.exp(u), math.tanh(v), q[3], math.exp(s)


svi_raw = njit(cache=True, inline="always")(svi_raw_py)


def _add_row(row: FloatArray, res: float, jtj: FloatArray, jtr: FloatArray) -> None:
    for i in range(5):
        jtr[i] += row[i] * res
        for j in range(i + 1):
            jtj[i, j] += row[i] * row[j]


_add = njit(cache=True, inline="always")(_add_row)


def svi_system_py(
    q: FloatArray,
    k: FloatArray,
    w: FloatArray,
    sq: FloatArray,
    grid: FloatArray,
    jtj: FloatArray,
    jtr: FloatArray,
    want_jac: bool,
) -> float:
    """Half the sum of squared residuals at ``q``; with ``want_jac``, ``J^T J`` and ``J^T r`` in ``q``'s
    coordinates written into ``jtj`` (5 x 5, full) and ``jtr`` (5)."""
    a, b, rho, m, sig = svi_raw(q)
    # d(raw)/d(q), 0 beyond the clamps
    chain = np.empty(5)
    chain[0] = 1.0
    chain[1] = b if U_LO <= q[1] <= U_HI else 0.0
    chain[2] = 1.0 - rho * rho if -ATANH_MAX <= q[2] <= ATANH_MAX else 0.0
    chain[3] = 1.0
    chain[4] = sig if S_LO <= q[4] <= S_HI else 0.0
    if want_jac:
        jtj[:, :] = 0.0
        jtr[:] = 0.0
    row = np.zeros(5)
    row1 = np.zeros(5)
    row2 = np.zeros(5)
    ss = sig * sig
    cost = 0.0
    for i in range(k.size):
        x = k[i] - m
        r = math.sqrt(x * x + ss)
        res = sq[i] * (a + b * (rho * x + r) - w[i])
        cost += res * res
        if want_jac:
            row[0] = sq[i]
            row[1] = sq[i] * (rho * x + r)
            row[2] = sq[i] * b * x
            row[3] = -sq[i] * b * (rho + x / r)
            row[4] = sq[i] * b * sig / r
            _add(row, res, jtj, jtr)
    for j in range(grid.size):
        kx = grid[j]
        x = kx - m
        r2 = x * x + ss
        r = math.sqrt(r2)
        r3 = r2 * r
        gw = a + b * (rho * x + r)
        g1 = b * (rho + x / r)
        g2 = b * ss / r3
        wpos = max(gw, W_FLOOR)
        u = 1.0 - kx * g1 / (2.0 * wpos)  # (also in g's derivatives below)
        gg = durrleman(kx, wpos, g1, g2) - G_MARGIN
        bad_w = gw - W_FLOOR
        if gg < 0.0:
            res = PENALTY * gg
            cost += res * res
        if bad_w < 0.0:
            res_w = PENALTY * bad_w
            cost += res_w * res_w
        if want_jac and (gg < 0.0 or bad_w < 0.0):
            r5 = r3 * r2
            row[0] = 1.0
            row[1] = rho * x + r
            row[2] = b * x
            row[3] = -b * (rho + x / r)
            row[4] = b * sig / r
            if gg < 0.0:
                row1[1] = rho + x / r
                row1[2] = b
                row1[3] = -b * ss / r3
                row1[4] = -b * x * sig / r3
                row2[1] = ss / r3
                row2[3] = 3.0 * b * ss * x / r5
                row2[4] = b * (2.0 * sig / r3 - 3.0 * ss * sig / r5)
                g_w = (u * kx * g1 / (wpos * wpos) + g1 * g1 / (4.0 * wpos * wpos)) if gw > W_FLOOR else 0.0
                g_w1 = -u * kx / wpos - 0.5 * g1 * (1.0 / wpos + 0.25)
                for c in range(5):
                    row1[c] = PENALTY * (g_w * row[c] + g_w1 * row1[c] + 0.5 * row2[c])
                _add(row1, PENALTY * gg, jtj, jtr)
                row1[0] = 0.0
            if bad_w < 0.0:
                for c in range(5):
                    row[c] *= PENALTY
                _add(row, PENALTY * bad_w, jtj, jtr)
    lee = b * (1.0 + abs(rho)) - 2.0
    if lee > 0.0:
        res = PENALTY * lee
        cost += res * res
        if want_jac:
            row[:] = 0.0
            row[1] = PENALTY * (1.0 + abs(rho))
            row[2] = PENALTY * b * (1.0 if rho > 0.0 else (-1.0 if rho < 0.0 else 0.0))
            _add(row, res, jtj, jtr)
    if want_jac:
        for i in range(5):
            jtr[i] *= chain[i]
            for j in range(i + 1):
                jtj[i, j] *= chain[i] * chain[j]
                jtj[j, i] = jtj[i, j]
    return 0.5 * cost


svi_system = njit(cache=True, error_model="numpy")(svi_system_py)


def _solve_spd_py(lhs: FloatArray, rhs: FloatArray, out: FloatArray) -> bool:
    """``lhs x = rhs`` by Cholesky (``lhs`` symmetric, overwritten); False if not positive definite."""
    n = rhs.size
    for j in range(n):
        d = lhs[j, j]
        for c in range(j):
            d -= lhs[j, c] * lhs[j, c]
        if not d > 0.0:
            return False
        d = math.sqrt(d)
        lhs[j, j] = d
        for i in range(j + 1, n):
            s = lhs[i, j]
            for c in range(j):
                s -= lhs[i, c] * lhs[j, c]
            lhs[i, j] = s / d
    for i in range(n):
        s = rhs[i]
        for c in range(i):
            s -= lhs[i, c] * out[c]
        out[i] = s / lhs[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for c in range(i + 1, n):
            s -= lhs[c, i] * out[c]
        out[i] = s / lhs[i, i]
    return True


_solve_spd = njit(cache=True)(_solve_spd_py)


def svi_fit_py(q0: FloatArray, k: FloatArray, w: FloatArray, sq: FloatArray, grid: FloatArray) -> FloatArray:
    """Levenberg-Marquardt from ``q0`` (Marquardt's scaling by the largest diagonal of ``J^T J`` seen,
    Nielsen's damping update); returns the final unconstrained coordinates.

    Stops when both the actual and the predicted relative reduction of the cost are below
    :data:`TOL`, when the scaled step is below :data:`TOL` of the scaled coordinates, or after
    :data:`MAX_NFEV` evaluations of the cost.
    """
    q = q0.copy()
    jtj = np.zeros((5, 5))
    jtr = np.zeros(5)
    lhs = np.zeros((5, 5))
    step = np.zeros(5)
    trial = np.zeros(5)
    diag = np.zeros(5)
    cost = svi_system(q, k, w, sq, grid, jtj, jtr, True)
    nfev = 1
    mu = 1e-3  # damping, relative to the scaled diagonal
    nu = 2.0
    while nfev < MAX_NFEV and cost > 0.0:
        top = 0.0
        for i in range(5):
            diag[i] = max(diag[i], jtj[i, i])
            top = max(top, diag[i])
        if top == 0.0:
            break
        lhs[:, :] = jtj
        for i in range(5):
            lhs[i, i] += mu * max(diag[i], 1e-12 * top)
        if not _solve_spd(lhs, -jtr, step):
            if mu > 1e16:
                break
            mu *= nu
            nu *= 2.0
            continue
        pred = 0.0  # the cost's predicted reduction by the linear model
        for i in range(5):
            quad = 0.0
            for j in range(5):
                quad += jtj[i, j] * step[j]
            pred -= step[i] * (jtr[i] + 0.5 * quad)
        snorm = 0.0
        qnorm = 0.0
        for i in range(5):
            trial[i] = q[i] + step[i]
            snorm += diag[i] * step[i] * step[i]
            qnorm += diag[i] * q[i] * q[i]
        small = math.sqrt(snorm) <= TOL * (math.sqrt(qnorm) + TOL)
        new = svi_system(trial, k, w, sq, grid, jtj, jtr, False)
        nfev += 1
        if new < cost:
            ratio = (cost - new) / pred if pred > 0.0 else 0.0
            done = ((cost - new) <= TOL * cost and pred <= TOL * cost) or small
            q[:] = trial
            cost = svi_system(q, k, w, sq, grid, jtj, jtr, True)
            if done:
                break
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
            nu = 2.0
        else:
            if mu > 1e16:  # no descent along any damped step: a (local) minimum
                break
            mu *= nu
            nu *= 2.0
    return q


svi_fit = njit(cache=True, error_model="numpy")(svi_fit_py)


def svi_start_py(k: FloatArray, w: FloatArray, om: FloatArray) -> FloatArray:
    """A starting point: for 5 ``m`` x 3 ``sigma``, ``(a, b rho, b)`` by weighted linear least squares
    (clamped to a valid smile); the best of the 15 by the weighted squared error, as raw
    ``(a, b, rho, m, sigma)``."""
    best = np.zeros(5)
    best_err = np.inf
    lo, hi = k[0], k[0]
    for i in range(k.size):
        lo = min(lo, k[i])
        hi = max(hi, k[i])
    span = hi - lo
    nte = np.zeros((3, 3))
    rhs = np.zeros(3)
    coef = np.zeros(3)
    for im in range(5):
        m = lo + 0.2 * span + im * (0.6 * span) / 4.0
        for sig_frac in (0.02, 0.08, 0.25):
            sig = sig_frac * span
            nte[:, :] = 0.0
            rhs[:] = 0.0
            for i in range(k.size):
                x = k[i] - m
                r = math.sqrt(x * x + sig * sig)
                f0, f1, f2 = 1.0, x, r
                nte[0, 0] += om[i] * f0 * f0
                nte[1, 0] += om[i] * f1 * f0
                nte[1, 1] += om[i] * f1 * f1
                nte[2, 0] += om[i] * f2 * f0
                nte[2, 1] += om[i] * f2 * f1
                nte[2, 2] += om[i] * f2 * f2
                rhs[0] += om[i] * f0 * w[i]
                rhs[1] += om[i] * f1 * w[i]
                rhs[2] += om[i] * f2 * w[i]
            nte[0, 1], nte[0, 2], nte[1, 2] = nte[1, 0], nte[2, 0], nte[2, 1]
            for i in range(3):
                nte[i, i] *= 1.0 + 1e-12
            if not _solve_spd(nte, rhs, coef):
                continue
            a, brho, b = coef[0], coef[1], coef[2]
            b = min(max(b, 1e-4), 1.9)
            rho = min(max(brho / b, -0.95), 0.95)
            b = min(b, 1.99 / (1.0 + abs(rho)))
            a = max(a, -b * sig * math.sqrt(1.0 - rho * rho) + 1e-6)
            err = 0.0
            for i in range(k.size):
                x = k[i] - m
                d = a + b * (rho * x + math.sqrt(x * x + sig * sig)) - w[i]
                err += om[i] * d * d
            if err < best_err:
                best_err = err
                best[0], best[1], best[2], best[3], best[4] = a, b, rho, m, sig
    return best


svi_start = njit(cache=True, error_model="numpy")(svi_start_py)
