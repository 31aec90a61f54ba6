"""Implied forward and discount factor of one expiry from put-call parity.

For a call and a put at the same strike, ``C - P = D (F - K)``: a straight line in ``K`` with slope
``-D`` and intercept ``D F``. It is fitted to the mids of the pairs nearest the money (where both
quotes are tightest), weighted by ``1 / (spread_C + spread_P)^2``, and refitted without the pairs
whose residual exceeds 4 robust standard deviations (MAD), so a stale or fat-fingered pair does not
move the forward. With fewer than :data:`MIN_PAIRS` pairs, or an implied discount factor outside
``[0.5, 1.5]``, the discount factor is taken from the given rate and only the forward is fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optmm.typing import FloatArray

__all__ = ["MIN_PAIRS", "NEAR_PAIRS", "ParityFit", "parity_forward"]

MIN_PAIRS = 3
NEAR_PAIRS = 20


@dataclass(frozen=True)
class ParityFit:
    """Forward, discount factor, and how many pairs they came from (``n_pairs``, ``n_outliers``).

    ``method`` is ``"parity"`` (forward and discount factor both implied) or ``"parity, rate"``
    (the discount factor from the given rate).
    """

    forward: float
    discount: float
    n_pairs: int
    n_outliers: int
    method: str


def _weighted_line(x: FloatArray, y: FloatArray, wt: FloatArray) -> tuple[float, float]:
    sw = wt.sum()
    mx, my = (wt * x).sum() / sw, (wt * y).sum() / sw
    sxx = (wt * (x - mx) ** 2).sum()
    slope = (wt * (x - mx) * (y - my)).sum() / sxx if sxx > 0 else 0.0
    return float(slope), float(my - slope * mx)


def parity_forward(
    strike: FloatArray,
    call_mid: FloatArray,
    put_mid: FloatArray,
    spread: FloatArray,
    *,
    t: float,
    rate: float,
    spot: float,
    fixed_discount: bool = False,
) -> ParityFit | None:
    """Forward and discount factor from call/put mids at the same strikes (arrays of shape (n,)).

    ``spread`` is the call's plus the put's bid/ask spread. Returns None with no pair at all. With
    ``fixed_discount`` the discount factor is always the rate's (method ``"parity, rate"``): for
    American prices, whose early-exercise premiums bend the line away from the money.
    """
    n = strike.size
    if n == 0:
        return None
    diff = call_mid - put_mid
    near = np.argsort(np.abs(diff))[: min(n, NEAR_PAIRS)]  # |C - P| is smallest at the forward
    x, y = strike[near], diff[near]
    wt = 1.0 / np.maximum(spread[near], 1e-12 * spot) ** 2
    d_rate = math.exp(-rate * t)
    keep = np.ones(x.size, dtype=bool)
    for _ in range(2):
        disc, method = d_rate, "parity, rate"  # unless the line gives a plausible discount factor
        if not fixed_discount and keep.sum() >= MIN_PAIRS and np.ptp(x[keep]) > 0:
            slope, intercept = _weighted_line(x[keep], y[keep], wt[keep])
            if 0.5 <= -slope <= 1.5:
                disc, method, fwd = -slope, "parity", intercept / -slope
        if method != "parity":
            fwd = float(np.sum(wt[keep] * (x[keep] + y[keep] / disc)) / np.sum(wt[keep]))
        resid = y - disc * (fwd - x)
        mad = float(np.median(np.abs(resid[keep] - np.median(resid[keep]))))
        scale = max(1.4826 * mad, 1e-12 * spot)
        new_keep = np.abs(resid) <= 4.0 * scale + 0.5 * np.sqrt(1.0 / wt)
        if new_keep.sum() < 1 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return ParityFit(float(fwd), float(disc), int(keep.sum()), int((~keep).sum()), method)
