"""Historical value at risk and expected shortfall of a P&L sample.

Definitions (one place; every VaR figure of optmm comes from :func:`var_es`): with ``n`` scenario
P&Ls and a confidence level ``a``, let ``k = ceil(n (1 - a))`` (at least 1); the losses are the P&Ls
with their sign flipped, sorted worst first. VaR is the ``k``-th worst loss and ES the mean of the
``k`` worst losses, so that ES >= VaR always. Both are in currency, positive for a loss.
"""

from __future__ import annotations

import math

import numpy as np

from optmm.typing import FloatArray

__all__ = ["tail_count", "var_es"]


def tail_count(n: int, level: float) -> int:
    """Number of scenarios in the tail at confidence ``level`` out of ``n``: ``ceil(n (1 - level))``,
    at least 1. The product is rounded to 12 digits first so that, e.g., 500 x (1 - 0.99) is 5."""
    if not (0.0 < level < 1.0):
        raise ValueError(f"level: must be strictly between 0 and 1, got {level!r}")
    if n < 1:
        raise ValueError("no scenarios: VaR needs at least one P&L")
    return max(1, math.ceil(round(n * (1.0 - level), 12)))


def var_es(pnl: FloatArray, level: float) -> tuple[float, float]:
    """``(VaR, ES)`` of the P&L sample ``pnl`` (1-d, finite) at confidence ``level`` (see the module)."""
    x = np.asarray(pnl, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"pnl: {x[bad[0]]!r} at index {int(bad[0])} is not a finite number")
    k = tail_count(x.size, level)
    worst = np.sort(x)[:k]  # the k lowest P&Ls, worst first
    return float(-worst[-1]), float(-worst.mean())
