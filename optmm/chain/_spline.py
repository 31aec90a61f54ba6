"""The smile's clamped cubic spline correction evaluated with its first two derivatives, compiled.

``spline_eval_py`` is the rule in plain Python (the tests run it against the compiled
``spline_eval`` and against scipy's B-splines); see :mod:`optmm.chain.smile` for the basis.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from optmm.typing import FloatArray

__all__ = [
    "design",
    "design_py",
    "durrleman",
    "durrleman_py",
    "min_g",
    "min_g_py",
    "spline_eval",
    "spline_eval_py",
    "svi_eval",
    "svi_eval_py",
    "svi_point",
    "svi_point_py",
    "total_variance",
    "total_variance_py",
]


def spline_eval_py(x: FloatArray, t: FloatArray, c: FloatArray, out: FloatArray) -> None:
    """``s``, ``s'``, ``s''`` at ``x`` into ``out[0]``, ``out[1]``, ``out[2]`` (shape ``(orders, x.size)``,
    ``orders`` 1 to 3: only the first ``orders`` are computed).

    ``t`` is the full knot vector (the ends repeated four times), ``c`` the coefficients padded with
    the three zeros at each end (``t.size - 4`` of them). Outside the open interval
    ``(t[0], t[-1])`` the spline and its derivatives are 0 (the kept basis functions vanish there to
    second order). Cox-de Boor recursion on the four basis functions that are not 0 at each point.
    """
    nt = t.size
    orders = out.shape[0]
    lo, hi = t[0], t[nt - 1]
    n0 = np.zeros(1)  # degree 0 .. 3 basis values on the span, index j <-> basis s - d + j
    n1 = np.zeros(2)
    n2 = np.zeros(3)
    n3 = np.zeros(4)
    for p in range(x.size):
        xp = x[p]
        if not (lo < xp < hi):
            for o in range(orders):
                out[o, p] = 0.0
            continue
        s = _span(xp, t)
        _cubic(xp, t, s, n0, n1, n2, n3)
        v = 0.0
        d1 = 0.0
        d2 = 0.0
        for j in range(4):
            i = s - 3 + j  # basis index
            v += c[i] * n3[j]
            if orders == 1:
                continue
            # N'_{i,3} = 3 (N_{i,2} / (t_{i+3} - t_i) - N_{i+1,2} / (t_{i+4} - t_{i+1}))
            left2 = n2[j - 1] / (t[i + 3] - t[i]) if j >= 1 else 0.0
            right2 = n2[j] / (t[i + 4] - t[i + 1]) if j <= 2 else 0.0
            d1 += c[i] * 3.0 * (left2 - right2)
            # N''_{i,3} = 3 (N'_{i,2} / (t_{i+3} - t_i) - N'_{i+1,2} / (t_{i+4} - t_{i+1}))
            dl = _dn2(t, s, i, n1) / (t[i + 3] - t[i]) if j >= 1 else 0.0
            dr = _dn2(t, s, i + 1, n1) / (t[i + 4] - t[i + 1]) if j <= 2 else 0.0
            d2 += c[i] * 3.0 * (dl - dr)
        out[0, p] = v
        if orders > 1:
            out[1, p] = d1
        if orders > 2:
            out[2, p] = d2


def svi_point_py(k: float, svi: FloatArray) -> tuple[float, float, float]:
    """Raw SVI ``(a, b, rho, m, sigma)``'s ``w``, ``w'``, ``w''`` at ``k``, the same operations in the same
    order as :meth:`optmm.chain.smile.Smile.svi`."""
    a, b, rho, m, sig = svi[0], svi[1], svi[2], svi[3], svi[4]
    x = k - m
    r = np.sqrt(x * x + sig * sig)
    return a + b * (rho * x + r), b * (rho + x / r), b * sig * sig / (r * r * r)


svi_point = njit(cache=True, inline="always")(svi_point_py)


def svi_eval_py(x: FloatArray, svi: FloatArray, out: FloatArray) -> None:
    """:func:`svi_point_py` at every ``x``: ``w``, ``w'``, ``w''`` into ``out[0]``, ``out[1]``, ``out[2]``
    (shape ``(orders, x.size)``, ``orders`` 1 to 3)."""
    orders = out.shape[0]
    for p in range(x.size):
        v = svi_point(x[p], svi)
        for o in range(orders):
            out[o, p] = v[o]


def total_variance_py(x: FloatArray, svi: FloatArray, t: FloatArray, c: FloatArray, out: FloatArray) -> None:
    """Raw SVI ``(a, b, rho, m, sigma)`` plus the spline (``t``, ``c`` as in :func:`spline_eval_py`; both
    empty: none) at ``x``, into ``out`` (shape ``(1, x.size)``); the same operations, in the same
    order, as :meth:`optmm.chain.smile.Smile.svi` plus :meth:`~optmm.chain.smile.Smile.spline`."""
    if c.size:
        spline_eval(x, t, c, out)
    for p in range(x.size):
        w = svi_point(x[p], svi)[0]
        out[0, p] = w + out[0, p] if c.size else w


def durrleman_py(k: float, w: float, w1: float, w2: float) -> float:
    """Durrleman's ``g(k) = (1 - k w' / (2 w))^2 - (w'^2 / 4) (1 / w + 1 / 4) + w'' / 2`` (``w > 0``)."""
    u = 1.0 - k * w1 / (2.0 * w)
    return u * u - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2


durrleman = njit(cache=True, inline="always")(durrleman_py)


def min_g_py(x: FloatArray, svi: FloatArray, t: FloatArray, c: FloatArray, theta: float) -> float:
    """The smallest Durrleman ``g`` at ``x`` of ``w = svi + theta * spline`` (``-inf`` if ``w <= 0``
    anywhere, or ``g`` is NaN).

    ``svi`` is raw SVI's ``(a, b, rho, m, sigma)``; ``t``, ``c`` as in :func:`spline_eval_py` (both empty:
    no spline). The same operations, in the same order, as :meth:`optmm.chain.smile.Smile.g` on
    ``Smile.svi`` plus ``theta`` times ``Smile.spline``.
    """
    spl = np.zeros((3, x.size))
    if c.size:
        spline_eval(x, t, c, spl)
    lowest = np.inf
    for p in range(x.size):
        v0, v1, v2 = svi_point(x[p], svi)
        w = v0 + theta * spl[0, p]
        if not w > 0.0:
            return -np.inf
        w1 = v1 + theta * spl[1, p]
        w2 = v2 + theta * spl[2, p]
        g = durrleman(x[p], w, w1, w2)
        if not g >= lowest:
            if g != g:
                return -np.inf
            lowest = g
    return lowest


def _span_py(xp: float, t: FloatArray) -> int:
    """The span ``s`` with ``t[s] <= xp < t[s + 1]``, ``3 <= s <= t.size - 5`` (``xp`` inside)."""
    a, b = 3, t.size - 5
    while a < b:
        mid = (a + b + 1) // 2
        if t[mid] <= xp:
            a = mid
        else:
            b = mid - 1
    return a


def _cubic_py(
    xp: float, t: FloatArray, s: int, n0: FloatArray, n1: FloatArray, n2: FloatArray, n3: FloatArray
) -> None:
    """The basis values of degrees 0 to 3 that are not 0 on span ``s`` (index ``j`` <-> basis
    ``s - d + j``)."""
    n0[0] = 1.0
    _raise(xp, t, s, 1, n0, n1)
    _raise(xp, t, s, 2, n1, n2)
    _raise(xp, t, s, 3, n2, n3)


def design_py(x: FloatArray, t: FloatArray, out: FloatArray) -> None:
    """The kept cubic basis functions' values at ``x`` (inside ``[t[0], t[-1]]``) into ``out``
    (``(x.size, t.size - 10)``, zeroed here): the design matrix of the spline correction."""
    nt = t.size
    n0 = np.zeros(1)
    n1 = np.zeros(2)
    n2 = np.zeros(3)
    n3 = np.zeros(4)
    out[:, :] = 0.0
    nb = nt - 10
    for p in range(x.size):
        xp = x[p]
        if not (t[0] <= xp <= t[nt - 1]):
            continue
        s = _span(xp, t)  # at t[-1]: the last span
        _cubic(xp, t, s, n0, n1, n2, n3)
        for j in range(4):
            col = s - 3 + j - 3  # the first three basis functions are dropped
            if 0 <= col < nb:
                out[p, col] = n3[j]


def _raise_py(xp: float, t: FloatArray, s: int, d: int, prev: FloatArray, nxt: FloatArray) -> None:
    """Degree ``d`` basis values on span ``s`` from degree ``d - 1``'s (Cox-de Boor)."""
    for j in range(d + 1):
        i = s - d + j
        v = 0.0
        if j >= 1:
            den = t[i + d] - t[i]
            if den > 0.0:
                v += (xp - t[i]) / den * prev[j - 1]
        if j <= d - 1:
            den = t[i + d + 1] - t[i + 1]
            if den > 0.0:
                v += (t[i + d + 1] - xp) / den * prev[j]
        nxt[j] = v


def _dn2_py(t: FloatArray, s: int, i: int, n1: FloatArray) -> float:
    """``N'_{i,2}`` on span ``s`` (0 unless ``s - 2 <= i <= s``) from the degree-1 values ``n1``."""
    j = i - (s - 2)
    if j < 0 or j > 2:
        return 0.0
    left = n1[j - 1] / (t[i + 2] - t[i]) if j >= 1 else 0.0
    right = n1[j] / (t[i + 3] - t[i + 1]) if j <= 1 else 0.0
    return 2.0 * (left - right)


_raise = njit(cache=True, inline="always")(_raise_py)
_dn2 = njit(cache=True, inline="always")(_dn2_py)
_span = njit(cache=True, inline="always")(_span_py)
_cubic = njit(cache=True, inline="always")(_cubic_py)
spline_eval = njit(cache=True, error_model="numpy")(spline_eval_py)
design = njit(cache=True, error_model="numpy")(design_py)
min_g = njit(cache=True, error_model="numpy")(min_g_py)
total_variance = njit(cache=True, error_model="numpy")(total_variance_py)
svi_eval = njit(cache=True, error_model="numpy")(svi_eval_py)
