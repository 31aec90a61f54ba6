"""optmm: an options market-making risk engine.

The public API is re-exported here; see ``optmm.greeks`` for the Black-Scholes-Merton engine.
"""

from optmm.book import Book, Kind
from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol
from optmm.market import Market, Sticky

__all__ = ["Greeks", "IVStatus", "bsm_greeks", "bsm_price", "implied_vol"]
__all__ += ["Book", "Kind", "Market", "Sticky"]
__version__ = "0.1.0"
