"""optmm: an options market-making risk engine.

The public API is re-exported here; see ``optmm.greeks`` for the Black-Scholes-Merton engine.
"""

from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol

__all__ = ["Greeks", "IVStatus", "bsm_greeks", "bsm_price", "implied_vol"]
__version__ = "0.1.0"
