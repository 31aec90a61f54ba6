"""Black-Scholes-Merton engine: prices, seven Greeks and implied volatility over whole arrays.

Public API: :func:`bsm_greeks`, :func:`bsm_price`, :func:`implied_vol`, :class:`Greeks`,
:class:`IVStatus`, and for American options :func:`american_greeks`, :func:`american_price`,
:func:`american_implied_vol`, :class:`AmericanIVStatus`. The numba kernels behind them live in
private modules (``_bsm``, ``_iv``, ``_dividend``, ``_american``, ``_american_fd``).
"""

from optmm.greeks.american import AmericanIVStatus, american_greeks, american_implied_vol, american_price
from optmm.greeks.api import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol

__all__ = [
    "AmericanIVStatus",
    "Greeks",
    "IVStatus",
    "american_greeks",
    "american_implied_vol",
    "american_price",
    "bsm_greeks",
    "bsm_price",
    "implied_vol",
]
