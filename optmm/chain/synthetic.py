"""Known-truth chains: quotes generated from an arbitrage-free SSVI surface with noise inside the spread.

Used by the tests and ``bench/fit.py``. The surface is Gatheral and Jacquier's SSVI with the power-law
curvature ``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))``, free of static arbitrage for
``eta (1 + |rho|) <= 2`` and ``0 < gamma <= 1/2`` (their Corollary 4.1), and ATM total variance
``theta_t = atm_vol^2 t`` increasing in ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from optmm.greeks import american_price
from optmm.typing import FloatArray
from optmm.units import SECONDS_PER_YEAR

__all__ = ["SSVI", "synthetic_chain"]


@dataclass(frozen=True)
class SSVI:
    """An SSVI surface (decimals; ``atm_vol`` the ATM implied vol at every expiry)."""

    atm_vol: float = 0.2
    rho: float = -0.6
    eta: float = 1.0
    gamma: float = 0.4

    def total_variance(self, k: FloatArray, t: float) -> FloatArray:
        theta = self.atm_vol**2 * t
        phi = self.eta / (theta**self.gamma * (1.0 + theta) ** (1.0 - self.gamma))
        x = phi * k
        return 0.5 * theta * (1.0 + self.rho * x + np.sqrt((x + self.rho) ** 2 + 1.0 - self.rho**2))


def synthetic_chain(
    *,
    rng: np.random.Generator,
    spot: float = 100.0,
    rate: float = 0.04,
    div_yield: float = 0.015,
    days: tuple[int, ...] = (30, 60, 91, 182, 365),
    n_strikes: int = 61,
    width_sds: float = 3.0,
    rel_spread: float = 0.005,
    min_spread: float = 0.01,
    surface: SSVI | None = None,
    timestamp: str = "2026-01-05T15:00:00",
    underlying: str = "SYN",
    style: str = "european",
) -> tuple[pd.DataFrame, dict[str, FloatArray]]:
    """A chain frame (the columns of :func:`optmm.chain.reader.read_chain`) and its truth.

    Expiries are ``days`` calendar days after the timestamp's date, settling at 16:00. Strikes are
    ``n_strikes`` evenly spaced in log-moneyness over ``+-width_sds`` standard deviations, each
    with a call and a put. Each quote's spread is ``max(min_spread, rel_spread * price)``; its mid
    is the true price moved by a uniform draw within +-80% of the half-spread, so the true price is
    always inside the bid/ask. Returns the frame and ``{"t", "forward", "discount"}`` per expiry.

    With ``style="american"`` the true prices are American (:func:`optmm.greeks.american_price`,
    ``"high"``, at each strike's SSVI vol, spot, rate and ``div_yield``), the rows carry
    ``style = american``, and the SSVI vols are those of the European-equivalent prices.
    """
    if style not in ("european", "american"):
        raise ValueError(f"style: must be 'european' or 'american', got {style!r}")
    surf = surface or SSVI()
    stamp = pd.Timestamp(timestamp)
    rows = []
    truth: dict[str, list[float]] = {"t": [], "forward": [], "discount": []}
    for d in days:
        expiry = (stamp.normalize() + pd.Timedelta(days=d)).replace(hour=16)
        t = (expiry - stamp).total_seconds() / SECONDS_PER_YEAR
        fwd = spot * np.exp((rate - div_yield) * t)
        disc = np.exp(-rate * t)
        sd = surf.atm_vol * np.sqrt(t)
        k = np.linspace(-width_sds * sd, width_sds * sd, n_strikes)
        strikes = np.round(fwd * np.exp(k), 2)
        kk = np.log(strikes / fwd)
        w = surf.total_variance(kk, t)
        s = np.sqrt(w)
        d1 = -kk / s + 0.5 * s
        call = disc * (fwd * ndtr(d1) - strikes * ndtr(d1 - s))
        put = call - disc * (fwd - strikes)
        if style == "american":
            vol = s / np.sqrt(t)
            call, put = (
                american_price(spot, strikes, t, rate, div_yield, vol, c, accuracy="high")
                for c in (True, False)
            )
        for is_call, price in ((True, call), (False, put)):
            half = 0.5 * np.maximum(min_spread, rel_spread * price)
            mid = price + rng.uniform(-0.8, 0.8, price.size) * half
            bid, ask = mid - half, mid + half
            for j in range(strikes.size):
                rows.append(
                    {
                        "timestamp": stamp.isoformat(),
                        "underlying": underlying,
                        "expiry": expiry.isoformat(),
                        "strike": float(strikes[j]),
                        "kind": "call" if is_call else "put",
                        "bid": round(max(float(bid[j]), 0.0), 6),
                        "ask": round(float(ask[j]), 6),
                        "spot": spot,
                        "rate": rate,
                    }
                    | ({"style": style} if style == "american" else {})
                )
        truth["t"].append(t)
        truth["forward"].append(float(fwd))
        truth["discount"].append(float(disc))
    return pd.DataFrame(rows), {key: np.array(v) for key, v in truth.items()}
