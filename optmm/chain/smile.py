"""One expiry's smile in total variance: raw SVI plus a clamped cubic-spline correction.

A fitted smile is

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)) + s(k),    k = ln(K / F)

where ``s`` is a cubic B-spline whose basis functions all lie inside ``[lo, hi]`` (the quoted
range; knots at quantiles of the quotes), so that ``s``, ``s'`` and ``s''`` vanish at both ends and
outside: the wings are raw SVI's, linear in ``k`` with slopes ``b (1 +- rho)`` bounded by Lee's 2.
``w`` is twice continuously
differentiable, so Durrleman's density function

    g(k) = (1 - k w' / (2 w))^2 - (w'^2 / 4) (1 / w + 1 / 4) + w'' / 2

is continuous; the smile is free of butterfly arbitrage where ``g >= 0`` and ``w > 0`` (Gatheral and
Jacquier 2014, Lemma 2.2). The fit (:mod:`optmm.chain.fit`) enforces ``g >= 0`` on a fine grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numba import vectorize

from optmm.chain._spline import design, durrleman_py, spline_eval, svi_eval, total_variance
from optmm.typing import ArrayLike, FloatArray

__all__ = ["Smile", "bspline_basis", "design_matrix", "durrleman_g"]

_EMPTY = np.zeros(0)


def _knot_vector(knots: FloatArray) -> FloatArray:
    """The full knot vector: ``knots`` with both ends repeated four times."""
    return np.concatenate([np.repeat(knots[:1], 3), knots, np.repeat(knots[-1:], 3)])


def bspline_basis(k: ArrayLike, knots: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The clamped cubic basis at ``k`` and its first two derivatives, each ``(k.size, knots.size - 4)``.

    ``knots`` are ``lo, k_1, ..., k_n, hi`` (strictly increasing, ``n >= 3``). Of the ``n + 4`` cubic
    B-splines on the knot vector with ``lo`` and ``hi`` repeated four times, the three at each end
    that do not vanish to second order there are dropped: every function kept is zero with its first
    two derivatives at and beyond ``lo`` and ``hi``.
    """
    x = np.asarray(k, dtype=np.float64).reshape(-1, 1)
    t = _knot_vector(knots)
    nt = t.size
    inside = (x >= t[0]) & (x < t[-1])
    # degree 0: the indicator of [t_i, t_{i+1}) (empty for repeated knots)
    basis = [((x >= t[:-1]) & (x < t[1:]) & inside).astype(np.float64)]
    for p in range(1, 4):
        prev = basis[-1]
        left_den = t[p : nt - 1] - t[: nt - 1 - p]
        right_den = t[p + 1 : nt] - t[1 : nt - p]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(left_den > 0, (x - t[: nt - 1 - p]) / left_den, 0.0)
            right = np.where(right_den > 0, (t[p + 1 : nt] - x) / right_den, 0.0)
        basis.append(left * prev[:, :-1] + right * prev[:, 1:])

    def deriv(lower: FloatArray, p: int) -> FloatArray:
        a_den = t[p : p + lower.shape[1] - 1] - t[: lower.shape[1] - 1]
        b_den = t[p + 1 : p + lower.shape[1]] - t[1 : lower.shape[1]]
        a_c = np.divide(p, a_den, out=np.zeros_like(a_den), where=a_den > 0)
        b_c = np.divide(p, b_den, out=np.zeros_like(b_den), where=b_den > 0)
        return a_c * lower[:, :-1] - b_c * lower[:, 1:]

    d1 = deriv(basis[2], 3)
    d2 = deriv(deriv(basis[1], 2), 3)
    keep = slice(3, basis[3].shape[1] - 3)
    return basis[3][:, keep], d1[:, keep], d2[:, keep]


def design_matrix(k: FloatArray, knots: FloatArray) -> FloatArray:
    """The values of :func:`bspline_basis` alone, ``(k.size, knots.size - 4)``, for ``k`` inside
    ``[lo, hi]`` (compiled: :func:`optmm.chain._spline.design`)."""
    out = np.empty((k.size, knots.size - 4))
    design(np.ascontiguousarray(k, dtype=np.float64), _knot_vector(knots), out)
    return out


durrleman_g = vectorize(["float64(float64, float64, float64, float64)"], cache=True)(durrleman_py)
"""Durrleman's ``g(k)`` from the total variance and its first two derivatives (``w > 0``), elementwise:
:func:`optmm.chain._spline.durrleman_py` as a ufunc."""


@dataclass(frozen=True, eq=False)
class Smile:
    """One expiry's total variance ``w(k)``: raw SVI ``(a, b, rho, m, sigma)`` plus a spline.

    Parameters
    ----------
    a, b, rho, m, sigma : float
        Raw SVI parameters (``b >= 0``, ``|rho| < 1``, ``sigma > 0``).
    knots : ndarray of float64, shape (n + 2,)
        The spline's knots in log-moneyness, ``lo, k_1, ..., k_n, hi``, strictly increasing; empty for
        a pure SVI smile.
    coef : ndarray of float64, shape (n - 2,)
        Spline coefficients (total variance units); empty for a pure SVI smile.
    """

    a: float
    b: float
    rho: float
    m: float
    sigma: float
    knots: FloatArray = field(default_factory=lambda: np.zeros(0))
    coef: FloatArray = field(default_factory=lambda: np.zeros(0))

    def svi(self, k: FloatArray, orders: int = 3) -> tuple[FloatArray, ...]:
        """Raw SVI's total variance and its first ``orders - 1`` (0 to 2) derivatives at ``k``."""
        out = np.empty((orders, np.size(k)))
        svi_eval(np.ascontiguousarray(k, dtype=np.float64).reshape(-1), self.params, out)
        return tuple(out)

    @cached_property
    def params(self) -> FloatArray:
        """``(a, b, rho, m, sigma)`` as an array."""
        return np.array([self.a, self.b, self.rho, self.m, self.sigma])

    def spline(self, k: FloatArray, orders: int = 3) -> tuple[FloatArray, ...]:
        """The correction ``s`` and its first ``orders - 1`` derivatives at ``k`` (zeros when none)."""
        if self.coef.size == 0:
            z = np.zeros_like(k)
            return (z,) * orders
        t, c = self.padded
        out = np.empty((orders, k.size))
        spline_eval(np.ascontiguousarray(k, dtype=np.float64), t, c, out)
        return tuple(out)

    @cached_property
    def padded(self) -> tuple[FloatArray, FloatArray]:
        """The full knot vector and the coefficients padded with the dropped end functions' zeros."""
        return _knot_vector(self.knots), np.concatenate([np.zeros(3), self.coef, np.zeros(3)])

    def derivatives(self, k: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``w``, ``w'`` and ``w''`` at log-moneyness ``k`` (any shape, flattened)."""
        kk = np.asarray(k, dtype=np.float64).reshape(-1)
        w, w1, w2 = self.svi(kk)
        if self.coef.size:
            s, s1, s2 = self.spline(kk)
            w, w1, w2 = w + s, w1 + s1, w2 + s2
        return w, w1, w2

    def total_variance(self, k: ArrayLike) -> FloatArray:
        """``w(k)`` in the shape of ``k``."""
        kk = np.ascontiguousarray(k, dtype=np.float64).reshape(-1)
        t, c = self.padded if self.coef.size else (_EMPTY, _EMPTY)
        out = np.empty((1, kk.size))
        total_variance(kk, self.params, t, c, out)
        return out[0].reshape(np.shape(k))

    def g(self, k: ArrayLike) -> FloatArray:
        """Durrleman's ``g`` at ``k`` (flattened); ``-inf`` where ``w <= 0``."""
        kk = np.asarray(k, dtype=np.float64).reshape(-1)
        w, w1, w2 = self.derivatives(kk)
        out = np.full(kk.shape, -np.inf)
        pos = w > 0.0
        out[pos] = durrleman_g(kk[pos], w[pos], w1[pos], w2[pos])
        return out
