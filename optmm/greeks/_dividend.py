"""Cash dividends in the escrowed model: the kernels and the validating layer the API dispatches to.

The escrowed model (QuantLib's ``AnalyticDividendEuropeanEngine``, and its ``Escrowed``
cash-dividend model for finite differences) takes the volatility to be that of the stock less the
present value of the cash dividends paid before expiry:

    S* = S - PV,    PV = sum over 0 <= t_i < t of D_i exp(-(r - q) t_i),

and prices a European option as Black-Scholes-Merton on ``S*``. The dividends are discounted at
the carry ``r - q``, as QuantLib does: the continuous yield ``q`` is paid on the whole stock, so
``S*`` has the stock's forward ``(S - PV) exp((r - q) t)``. Every Greek follows by the chain rule:
``dS*/dS = 1``, so delta, gamma, vega, vanna and volga are those of ``S*``; calendar time passing
moves every ex-date closer, ``dS*/dcal = -(r - q) PV``, so theta gains ``-(r - q) PV delta``;
``dS*/dr = sum t_i D_i exp(-(r - q) t_i)``, so rho gains that times delta.

A dividend on or after an option's expiry does not count for it; ex-times must be >= 0 and
amounts >= 0. An option whose dividends before expiry are worth the spot or more has no escrowed
stock left and is refused.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from optmm._jit import sized_kernel
from optmm.typing import FloatArray


def escrow_py(
    s: float, t: float, r: float, q: float, ex: FloatArray, amt: FloatArray
) -> tuple[float, float, float]:
    """``(S*, PV, dPV/dr)`` of one option: spot less the dividends paid before expiry ``t``."""
    pv = 0.0
    dpv_dr = 0.0
    for j in range(ex.shape[0]):
        if ex[j] < t:
            d = amt[j] * math.exp(-(r - q) * ex[j])
            pv += d
            dpv_dr -= ex[j] * d
    return s - pv, pv, dpv_dr


escrow = njit(cache=True, inline="always", error_model="numpy")(escrow_py)


@sized_kernel(8_192, error_model="numpy")
def escrow_kernel(s, t, r, q, ex, amt, s_star, pv, dpv_dr):  # pragma: no cover - compiled
    """Fill ``s_star``, ``pv``, ``dpv_dr`` (length n); ``s``, ``t``, ``r``, ``q`` have length 1 or n.

    Returns the first index whose escrowed spot is not positive, or -1. An option whose spot,
    time or rate is itself invalid keeps its spot as ``S*``, for the pricing kernel to flag and the
    API to name.
    """
    n = s_star.shape[0]
    ss = 1 if s.shape[0] == n else 0
    st = 1 if t.shape[0] == n else 0
    sr = 1 if r.shape[0] == n else 0
    sq = 1 if q.shape[0] == n else 0
    for i in prange(n):
        si, ti, ri, qi = s[i * ss], t[i * st], r[i * sr], q[i * sq]
        if si > 0.0 and si < math.inf and abs(ti) < math.inf and abs(ri) < math.inf and abs(qi) < math.inf:
            s_star[i], pv[i], dpv_dr[i] = escrow(si, ti, ri, qi, ex, amt)
        else:
            s_star[i], pv[i], dpv_dr[i] = si, 0.0, 0.0
    for i in range(n):
        if not s_star[i] > 0.0 and pv[i] > 0.0:
            return i
    return -1


class Schedule(NamedTuple):
    """One validated schedule of cash dividends: ex-times (years from valuation) and amounts."""

    ex: FloatArray  # shape (n_dividends,), finite, >= 0
    amount: FloatArray  # shape (n_dividends,), finite, >= 0


def as_schedule(dividends: Any) -> Schedule:
    """Validate ``dividends=(ex_times, amounts)``; a ValueError names the part and the first bad index."""
    try:
        ex_times, amounts = dividends
    except (TypeError, ValueError):
        raise ValueError("dividends: must be a pair (ex_times, amounts) of equal-length sequences") from None
    parts = {}
    for name, value in (("ex_times", ex_times), ("amounts", amounts)):
        try:
            arr = np.array(value, dtype=np.float64, ndmin=1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"dividends: {name} cannot be read as float64 numbers ({exc})") from None
        if arr.ndim != 1:
            raise ValueError(f"dividends: {name} must be one-dimensional, got shape {arr.shape}")
        bad = np.flatnonzero(~(np.isfinite(arr) & (arr >= 0.0)))
        if bad.size:
            raise ValueError(
                f"dividends: {name} has invalid value {float(arr[bad[0]])!r} at index {int(bad[0])}"
                " (must be finite and >= 0)"
            )
        parts[name] = arr
    if parts["ex_times"].shape != parts["amounts"].shape:
        raise ValueError(
            f"dividends: ex_times has {parts['ex_times'].size} values but amounts has {parts['amounts'].size}"
        )
    return Schedule(parts["ex_times"], parts["amounts"])


class Escrowed(NamedTuple):
    """Per option (flat, length n or 1): the escrowed spot and the derivatives of its dividends."""

    s_star: FloatArray
    pv: FloatArray
    dpv_dr: FloatArray


def escrowed(
    spot: np.ndarray,
    t: np.ndarray,
    rate: np.ndarray,
    div_yield: np.ndarray,
    schedule: Schedule,
    shape: tuple[int, ...],
) -> Escrowed:
    """Escrowed spots of flat, broadcast inputs (each of length 1 or n); refuses ``S* <= 0``."""
    n = max(spot.shape[0], t.shape[0], rate.shape[0], div_yield.shape[0])
    out = Escrowed(np.empty(n), np.empty(n), np.empty(n))
    bad = int(escrow_kernel(spot, t, rate, div_yield, schedule.ex, schedule.amount, *out))
    if bad >= 0:
        flat = bad if n > 1 else 0
        index = tuple(int(i) for i in np.unravel_index(flat, shape)) if len(shape) > 1 else flat
        raise ValueError(
            f"dividends: present value {float(out.pv[bad])!r} of the dividends before expiry is not below the"
            f" spot at index {index} (no escrowed stock left)"
        )
    return out


def adjust_greeks(outs: list[np.ndarray], rate: np.ndarray, div_yield: np.ndarray, esc: Escrowed) -> None:
    """Turn the Greeks of ``S*`` (price, delta, ... in ``Greeks.FIELDS`` order) into those of ``S``.

    Only theta and rho change (module docstring); in place.
    """
    delta = outs[1]
    outs[4] -= (rate - div_yield) * esc.pv * delta
    outs[5] -= esc.dpv_dr * delta


__all__ = [
    "Escrowed",
    "Schedule",
    "adjust_greeks",
    "as_schedule",
    "escrow",
    "escrow_kernel",
    "escrow_py",
    "escrowed",
]
