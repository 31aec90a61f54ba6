"""optmm: an options market-making risk engine.

The public API is re-exported here: the Black-Scholes-Merton engine (:mod:`optmm.greeks`), the book
and the market (:mod:`optmm.book`, :mod:`optmm.market`); risk lives in :mod:`optmm.risk`.
"""

from optmm.book import Book, Kind
from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol
from optmm.market import Market, Sticky

__all__ = ["Book", "Greeks", "IVStatus", "Kind", "Market", "Sticky", "bsm_greeks", "bsm_price", "implied_vol"]
__version__ = "0.1.0"
