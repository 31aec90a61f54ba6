"""optmm: an options market-making risk engine.

The public API is re-exported here: the Black-Scholes-Merton engine (:mod:`optmm.greeks`), the book
and the market (:mod:`optmm.book`, :mod:`optmm.market`); risk lives in :mod:`optmm.risk`.

Importing optmm first deletes numba cache entries compiled from sources that have since changed
(:mod:`optmm._cache_guard`; ``OPTMM_CACHE_GUARD=0`` turns this off), before any kernel is imported,
and shortens numba's inlining and typing of optmm's own functions (:mod:`optmm._compile_speed`;
``OPTMM_COMPILE_SPEED=0`` turns this off).
"""

from optmm._cache_guard import guard
from optmm._compile_speed import install

guard()  # first: the imports below create optmm's numba dispatchers
install()  # before any kernel compiles

from optmm.book import Book, Kind  # noqa: E402
from optmm.greeks import Greeks, IVStatus, bsm_greeks, bsm_price, implied_vol  # noqa: E402
from optmm.market import Market, Sticky  # noqa: E402

__all__ = ["Book", "Greeks", "IVStatus", "Kind", "Market", "Sticky", "bsm_greeks", "bsm_price", "implied_vol"]
__version__ = "0.1.0"
