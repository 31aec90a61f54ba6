"""Black-Scholes-Merton engine: prices, seven Greeks and implied volatility over whole arrays.

Public API: :func:`bsm_greeks`, :func:`bsm_price`, :func:`implied_vol`, :class:`Greeks`,
:class:`IVStatus`. The numba kernels behind them live in private modules (``_bsm``, ``_iv``).
"""

from optmm.greeks.api import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol

__all__ = ["Greeks", "IVStatus", "bsm_greeks", "bsm_price", "implied_vol"]
