"""The options quoter's rules and the delta hedger's, each written once, for the classes and compiled loops.

Each rule is a plain-Python function (``*_py``) over floats and a packed settings array, compiled by
:func:`twin` (``quote_one = twin(quote_one_py)``, ``hedge_decide = twin(hedge_decide_py)``), as
``optmm.greeks._bsm`` does. :class:`~optmm.quoting.quoter.Quoter` validates a chain and runs the
compiled :func:`quote_chain` over it (the tick grid's methods of
:class:`~optmm.quoting.quoter.QuoterConfig` run :func:`grid`); :class:`~optmm.quoting.hedger.DeltaHedger`
validates one decision and runs the Python forms (no dispatch; see the Notes); the simulator's loop
inlines the compiled forms. ``tests/quoting/test_kernel_twins.py`` checks that the two forms agree.

A configuration is packed once, in Python, into a flat float64 array (:func:`pack_quoter`,
:func:`pack_hedger`); every scalar derived from the settings alone (``−γ·h``, ``σ_σ²``, ``3·λS``, basis
points as fractions) is computed there, once.
Enums are the integer codes of :mod:`optmm.codes` (``SKEW_*``: :class:`~optmm.codes.SkewCode`,
``MODE_*``, ``TARGET_*``, ``REASON_*``: the ``Hedge*Code`` enums; layers: :class:`~optmm.codes.Layer`,
KILL 0 ... NORMAL 5). The rules validate nothing: the caller passes what the classes accept (finite
prices, spot > 0, 0 < bid <= ask for a hedge).

Quoter parameters (``qp``, length :data:`N_QP`)
-----------------------------------------------
==================  ===================================================================================
index               value
==================  ===================================================================================
``Q_BASE_HS``       ``base_half_spread_vol_points``
``Q_MIN_EDGE``      ``min_edge_ticks``
``Q_TICK``          ``tick_size``
``Q_TICK_ABOVE``    ``tick_size_above``
``Q_THRESHOLD``     ``tick_threshold`` (``inf``: one tick)
``Q_VOL_WIDEN``     ``vol_widen``
``Q_TOX_WIDEN``     ``toxicity_widen``
``Q_IMPROVE``       ``improve_market`` (1.0 / 0.0)
``Q_CROSS``         ``cross_market`` (1.0 / 0.0)
``Q_SKEW``          the skew mode's code (``SKEW_GREEKS`` 0, ``SKEW_LINEAR`` 1, ``SKEW_NONE`` 2)
``Q_NEG_GAMMA_H``   ``−gamma_risk_aversion · horizon_s / SECONDS_PER_YEAR``: ``−γ h`` of the GREEKS skew
``Q_SIGMA_VOL2``    ``sigma_vol ** 2`` (Python's power)
``Q_NEG_LINEAR_K``  ``−linear_k``
``Q_BASE_SIZE``     ``base_size``
``Q_SIZE_SHADE``    ``size_shade``
``Q_SIGMA_S``       ``sigma_s_annual`` (NaN when None: the market's vol); informative, the caller
                    passes σ_S to :func:`quote_one`
``Q_TWO``           2.0, the exponent of ``σ_S²`` and ``S²`` (see Notes)
==================  ===================================================================================

Hedger parameters (``hp``, length :data:`N_HP`)
-----------------------------------------------
================  =====================================================================================
index             value
================  =====================================================================================
``H_MODE``        the mode's code (``MODE_FIXED_BAND`` 0, ``MODE_WHALLEY_WILMOTT`` 1, ``MODE_TIME`` 2)
``H_TARGET``      ``target``'s code (``TARGET_BAND_EDGE`` 0, ``TARGET_ZERO`` 1)
``H_HARD_TARGET`` ``hard_target``'s code
``H_BAND``        ``band_shares``
``H_WW_3C``       ``3.0 · ww_cost_per_share``
``H_WW_2G``       ``2.0 · ww_risk_aversion``
``H_MIN_BAND``    ``min_band_shares``
``H_MAX_BAND``    ``max_band_shares``
``H_INTERVAL``    ``interval_s``
``H_SLIP``        ``slippage_bps · 1e-4`` (fraction of mid)
``H_USE_MARKET``  ``use_market_spread`` (1.0 / 0.0)
``H_HALF``        ``half_spread_bps · 1e-4`` (fraction of mid)
``H_MIN_TRADE``   ``min_trade_shares``
``H_LOT``         ``lot_size`` (as a float)
================  =====================================================================================

Notes
-----
Where the figures come from, and where the two forms can differ:

* Tick rounding is numpy's ``np.round(x, 10)``, ``rint(x · 1e10) / 1e10`` (multiply, round half to
  even, divide): :func:`round10_py`, not numba's ``np.round``, which follows CPython's algorithm and
  returns ``x`` itself where ``x · 1e10`` overflows. ``np.maximum`` / ``np.minimum`` propagate NaN in
  both forms.
* ``σ_S²`` and ``S²`` of the GREEKS skew are libm's ``pow(x, 2.0)`` (CPython's ``x ** 2``, which the
  quoter's figures were first defined with), which differs from ``x · x`` in the last bit for about
  one input in 1 200 on glibc. LLVM folds ``pow(x, 2.0)`` with a constant exponent into ``x · x``;
  reading the exponent from ``qp[Q_TWO]`` keeps the call to ``pow``. Squaring with ``x · x`` instead
  would move those quotes' skews by an ulp and, through them, the simulations' figures.
* The Whalley–Wilmott band's cube root. :class:`~optmm.quoting.hedger.DeltaHedger` runs the hedger's
  rules in their Python form (``hedge_decide_py``: one decision at a time, no dispatch), where
  ``np.cbrt`` is numpy's, which dispatches to SVML on AVX-512 machines; the compiled form calls libm's
  ``cbrt``. The two differ by up to 3 ulps in about half the inputs on such machines (bit for bit
  elsewhere), so a decision can differ only when ``|delta|`` or a lot boundary lies within those ulps
  of the band. Every other band, and every decision and fill given the band, is the same to the bit
  (``tests/quoting/test_kernel_twins.py``).
* Hedge cost. :meth:`DeltaHedger.execute` books ``spread_cost = |q|·half`` and ``slippage_cost =
  |q|·slip`` from :func:`hedge_fill_py`. :func:`hedge_cost_py` is ``q · (price − mid)``: what filling at
  ``price`` rather than at ``mid`` cost (``price − mid`` is exact, Sterbenz), so that ``gross_pnl − Σ
  cost`` is the hedges' P&L at their actual fill prices (the simulator's). It is >= 0 and equals
  ``spread_cost + slippage_cost`` up to the rounding of ``price = mid ± (half + slip)``: about ``|q|``
  ulps of the price, ~1e-12 of the cost for a one-basis-point half-spread.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from optmm import units
from optmm._jit import function_copy
from optmm.codes import HedgeModeCode, HedgeReasonCode, HedgeTargetCode, Layer, SkewCode
from optmm.units import SECONDS_PER_YEAR, gamma_per_share_py, vega_per_unit_vol_py, vega_per_vol_point_py

if TYPE_CHECKING:  # the classes import this module: their configs are imported where packed
    from optmm.quoting.hedger import HedgerConfig
    from optmm.quoting.quoter import QuoterConfig

__all__ = [
    "N_HP",
    "N_QP",
    "grid",
    "grid_py",
    "hedge_band",
    "hedge_band_py",
    "hedge_cost",
    "hedge_cost_py",
    "hedge_decide",
    "hedge_decide_py",
    "hedge_expected_price",
    "hedge_expected_price_py",
    "hedge_fill",
    "hedge_fill_py",
    "pack_hedger",
    "pack_quoter",
    "quote_chain",
    "quote_chain_py",
    "quote_one",
    "quote_one_py",
    "quote_one_squared",
    "quote_one_squared_py",
    "round10",
    "round10_py",
    "round_down",
    "round_down_py",
    "round_up",
    "round_up_py",
    "skew_squares",
    "skew_squares_py",
    "tick_at",
    "tick_at_py",
    "tick_down",
    "tick_down_py",
    "tick_up",
    "tick_up_py",
    "twin",
    "whole_lots",
    "whole_lots_py",
    "ww_band",
    "ww_band_py",
]

KILL, TOXIC, STALE, HARD, SOFT, NORMAL = (int(x) for x in Layer)
SKEW_GREEKS, SKEW_LINEAR, SKEW_NONE = (int(x) for x in SkewCode)

# qp
Q_BASE_HS, Q_MIN_EDGE, Q_TICK, Q_TICK_ABOVE, Q_THRESHOLD = 0, 1, 2, 3, 4
Q_VOL_WIDEN, Q_TOX_WIDEN, Q_IMPROVE, Q_CROSS, Q_SKEW = 5, 6, 7, 8, 9
Q_NEG_GAMMA_H, Q_SIGMA_VOL2, Q_NEG_LINEAR_K, Q_BASE_SIZE, Q_SIZE_SHADE = 10, 11, 12, 13, 14
Q_SIGMA_S, Q_TWO = 15, 16
N_QP = 17

# quote_chain's out columns
O_BID, O_ASK, O_BID_SIZE, O_ASK_SIZE, O_HALF_SPREAD, O_SKEW = 0, 1, 2, 3, 4, 5
N_OUT = 6

# grid_py's rules
GRID_TICK, GRID_DOWN, GRID_UP, GRID_TICK_UP, GRID_TICK_DOWN = 0, 1, 2, 3, 4

MODE_FIXED_BAND, MODE_WHALLEY_WILMOTT, MODE_TIME = (int(x) for x in HedgeModeCode)
TARGET_BAND_EDGE, TARGET_ZERO = (int(x) for x in HedgeTargetCode)
REASON_NONE, REASON_BAND, REASON_SCHEDULE, REASON_HARD, REASON_KILL = (int(x) for x in HedgeReasonCode)

# hp
H_MODE, H_TARGET, H_HARD_TARGET, H_BAND, H_WW_3C, H_WW_2G, H_MIN_BAND = 0, 1, 2, 3, 4, 5, 6
H_MAX_BAND, H_INTERVAL, H_SLIP, H_USE_MARKET, H_HALF, H_MIN_TRADE, H_LOT = 7, 8, 9, 10, 11, 12, 13
N_HP = 14

_EPS = 1e-9  # the quoter's: a price within this many ticks of a grid point is on it


def twin(f_py):
    """``f_py`` compiled (``njit``, inlined where called), with its calls to the other rules' Python
    forms (``name_py``) bound to their compiled forms (``name``), which must be made first.

    Each rule is written once, as plain Python that runs as it is (the classes call it, or its
    compilation, and the tests check the two forms agree: ``tests/quoting/test_kernel_twins.py``), and that
    numba compiles for the simulator's loop."""
    env = dict(f_py.__globals__)
    env.update(_COMPILED)
    compiled = njit(cache=True, inline="always", error_model="numpy")(function_copy(f_py, env=env))
    _COMPILED[f_py.__name__] = compiled
    return compiled


_COMPILED: dict[str, Any] = dict(units.COMPILED)  # a rule's Python name -> its compiled form


def pack_quoter(config: QuoterConfig) -> np.ndarray:
    """The quoter's settings as the ``qp`` array of :func:`quote_one` (layout in the module docstring).

    Parameters
    ----------
    config : QuoterConfig

    Returns
    -------
    ndarray of float64, shape (N_QP,)

    Examples
    --------
    >>> from optmm.quoting import QuoterConfig
    >>> qp = pack_quoter(QuoterConfig(skew="linear", linear_k=0.02))
    >>> int(qp[Q_SKEW]) == SKEW_LINEAR, float(qp[Q_NEG_LINEAR_K])
    (True, -0.02)
    """
    from optmm.quoting.quoter import QuoterConfig

    if not isinstance(config, QuoterConfig):
        raise TypeError(f"pack_quoter: config must be a QuoterConfig (got {type(config).__name__})")
    c = config
    qp = np.empty(N_QP, dtype=np.float64)
    qp[Q_BASE_HS] = c.base_half_spread_vol_points
    qp[Q_MIN_EDGE] = c.min_edge_ticks
    qp[Q_TICK] = c.tick_size
    qp[Q_TICK_ABOVE] = c.tick_size_above
    qp[Q_THRESHOLD] = c.tick_threshold
    qp[Q_VOL_WIDEN] = c.vol_widen
    qp[Q_TOX_WIDEN] = c.toxicity_widen
    qp[Q_IMPROVE] = 1.0 if c.improve_market else 0.0
    qp[Q_CROSS] = 1.0 if c.cross_market else 0.0
    qp[Q_SKEW] = SkewCode[c.skew.name]
    h = c.horizon_s / SECONDS_PER_YEAR
    qp[Q_NEG_GAMMA_H] = -c.gamma_risk_aversion * h
    qp[Q_SIGMA_VOL2] = c.sigma_vol**2
    qp[Q_NEG_LINEAR_K] = -c.linear_k
    qp[Q_BASE_SIZE] = c.base_size
    qp[Q_SIZE_SHADE] = c.size_shade
    qp[Q_SIGMA_S] = math.nan if c.sigma_s_annual is None else c.sigma_s_annual
    qp[Q_TWO] = 2.0
    return qp


def pack_hedger(config: HedgerConfig) -> np.ndarray:
    """The hedger's settings as the ``hp`` array of the ``hedge_*`` kernels (layout in the module docstring).

    Parameters
    ----------
    config : HedgerConfig

    Returns
    -------
    ndarray of float64, shape (N_HP,)

    Examples
    --------
    >>> from optmm.quoting import HedgerConfig
    >>> hp = pack_hedger(HedgerConfig(mode="time", slippage_bps=2.0))
    >>> int(hp[H_MODE]) == MODE_TIME, float(hp[H_SLIP])
    (True, 0.0002)
    """
    from optmm.quoting.hedger import HedgerConfig

    if not isinstance(config, HedgerConfig):
        raise TypeError(f"pack_hedger: config must be a HedgerConfig (got {type(config).__name__})")
    c = config
    hp = np.empty(N_HP, dtype=np.float64)
    hp[H_MODE] = HedgeModeCode[c.mode.name]
    hp[H_TARGET] = HedgeTargetCode[c.target.name]
    hp[H_HARD_TARGET] = HedgeTargetCode[c.hard_target.name]
    hp[H_BAND] = c.band_shares
    hp[H_WW_3C] = 3.0 * c.ww_cost_per_share
    hp[H_WW_2G] = 2.0 * c.ww_risk_aversion
    hp[H_MIN_BAND] = c.min_band_shares
    hp[H_MAX_BAND] = c.max_band_shares
    hp[H_INTERVAL] = c.interval_s
    hp[H_SLIP] = c.slippage_bps * 1e-4
    hp[H_USE_MARKET] = 1.0 if c.use_market_spread else 0.0
    hp[H_HALF] = c.half_spread_bps * 1e-4
    hp[H_MIN_TRADE] = c.min_trade_shares
    hp[H_LOT] = float(c.lot_size)
    return hp


# -- the tick grid -------------------------------------------------------------------------------------
# Prices round onto the grid with numpy's ``np.round(x, 10)`` formula, ``rint(x · 1e10) / 1e10``
# (numba's ``np.round`` follows CPython's algorithm instead). ``np.maximum`` / ``np.minimum`` below
# propagate NaN, in Python and compiled alike.


def round10_py(x):
    """``x`` rounded to 10 decimals: numpy's ``rint(x · 1e10) / 1e10``, clearing the grid's float dust."""
    return np.rint(x * 1e10) / 1e10


def tick_at_py(p, qp):
    """The grid's tick at price ``p``: ``tick_size`` below ``tick_threshold``, else ``tick_size_above``."""
    return qp[Q_TICK] if p < qp[Q_THRESHOLD] else qp[Q_TICK_ABOVE]


def round_down_py(p, qp):
    """The highest grid price <= ``p`` (a bid)."""
    t = qp[Q_TICK] if p < qp[Q_THRESHOLD] else qp[Q_TICK_ABOVE]
    return round10_py(np.floor(p / t + _EPS) * t)


def round_up_py(p, qp):
    """The lowest grid price >= ``p`` (an ask)."""
    t = qp[Q_TICK] if p <= qp[Q_THRESHOLD] else qp[Q_TICK_ABOVE]
    return round10_py(np.ceil(p / t - _EPS) * t)


def tick_up_py(p, qp):
    """The next grid price above the grid price ``p``."""
    return round10_py(p + (qp[Q_TICK] if p < qp[Q_THRESHOLD] else qp[Q_TICK_ABOVE]))


def tick_down_py(p, qp):
    """The next grid price below the grid price ``p``."""
    return round10_py(p - (qp[Q_TICK] if p <= qp[Q_THRESHOLD] else qp[Q_TICK_ABOVE]))


def grid_py(op, prices, qp, out):
    """One of the grid's rules (``GRID_*``) over an array of prices, into ``out`` (the config's methods)."""
    for i in range(prices.shape[0]):
        p = prices[i]
        if op == GRID_TICK:
            out[i] = tick_at_py(p, qp)
        elif op == GRID_DOWN:
            out[i] = round_down_py(p, qp)
        elif op == GRID_UP:
            out[i] = round_up_py(p, qp)
        elif op == GRID_TICK_UP:
            out[i] = tick_up_py(p, qp)
        else:
            out[i] = tick_down_py(p, qp)


# -- the quoter -----------------------------------------------------------------------------------------


def quote_one_py(
    fair, delta, vega, position, book_delta_shares, book_vega_per_vol_point, sigma_s, spot_fair,
    realized_vol, toxicity_score, layer, cap_bid, cap_ask, spread_factor, market_bid, market_ask, qp,
):  # fmt: skip
    """The quote of one option (the rules of :mod:`optmm.quoting.quoter`'s docstring).

    Parameters
    ----------
    fair : float
        The option's fair value, price per unit of underlying.
    delta, vega : float
        Its plain per-unit Greeks (vega per 1.00 of vol).
    position : float
        Our position in the option, contracts (LINEAR skew).
    book_delta_shares, book_vega_per_vol_point : float
        The book's Greeks on the underlying (:class:`~optmm.quoting.quoter.BookGreeks`; GREEKS skew).
    sigma_s : float
        σ_S of the GREEKS skew, decimal per √year (:meth:`Quoter.sigma_s`); unused by the other modes.
    spot_fair : float
        ``s`` of the GREEKS skew: the underlying's fair price.
    realized_vol, toxicity_score : float
        The spread-widening inputs of :class:`~optmm.quoting.quoter.QuoteInput`.
    layer : int
        The controller's layer (a :class:`~optmm.risk.audit.Layer` value); KILL, TOXIC, STALE empty the
        quote.
    cap_bid, cap_ask : float
        The decision's sizes, contracts (``inf``: not capped).
    spread_factor : float
        The decision's spread factor (1.0 when none).
    market_bid, market_ask : float
        The option's best bid / ask; NaN: none.
    qp : ndarray of float64, shape (N_QP,)
        :func:`pack_quoter`.

    Returns
    -------
    bid, ask : float
        Prices per unit on the tick grid; NaN for an empty side.
    bid_size, ask_size : float
        Contracts (0.0 for an empty side).
    half_spread, skew : float
        Price per unit.
    """
    sigma_s_sq, spot_fair_sq = skew_squares_py(sigma_s, spot_fair, qp)
    return quote_one_squared_py(
        fair, delta, vega, position, book_delta_shares, book_vega_per_vol_point, sigma_s_sq, spot_fair_sq,
        realized_vol, toxicity_score, layer, cap_bid, cap_ask, spread_factor, market_bid, market_ask, qp,
    )  # fmt: skip


def skew_squares_py(sigma_s, spot_fair, qp):
    """``(σ_S², s²)`` of the GREEKS skew, once per underlying and instant: libm's ``pow(x, 2.0)``, the
    exponent read from ``qp[Q_TWO]`` so that LLVM does not fold it into ``x · x`` (module Notes)."""
    two = qp[Q_TWO]
    return math.pow(sigma_s, two), math.pow(spot_fair, two)


def quote_one_squared_py(
    fair, delta, vega, position, book_delta_shares, book_vega_per_vol_point, sigma_s_sq, spot_fair_sq,
    realized_vol, toxicity_score, layer, cap_bid, cap_ask, spread_factor, market_bid, market_ask, qp,
):  # fmt: skip
    """:func:`quote_one_py` given ``(sigma_s_sq, spot_fair_sq) = skew_squares_py(sigma_s, spot_fair, qp)``:
    a caller quoting many options of one underlying at one instant squares them once."""
    mode = qp[Q_SKEW]
    if mode == SKEW_GREEKS:
        big_n = vega_per_unit_vol_py(book_vega_per_vol_point)
        risk = book_delta_shares * delta * sigma_s_sq * spot_fair_sq + big_n * vega * qp[Q_SIGMA_VOL2]
        skew = qp[Q_NEG_GAMMA_H] * risk
    elif mode == SKEW_LINEAR:
        skew = qp[Q_NEG_LINEAR_K] * position
    else:
        skew = 0.0
    skew = skew + 0.0  # no -0.0

    half = np.maximum(vega_per_vol_point_py(qp[Q_BASE_HS], vega), qp[Q_MIN_EDGE] * tick_at_py(fair, qp))
    has_bid = np.isfinite(market_bid)
    has_ask = np.isfinite(market_ask)
    if qp[Q_IMPROVE] == 0.0:
        mkt_half = (market_ask - market_bid) / 2.0 if (has_bid and has_ask) else 0.0
        half = np.maximum(half, mkt_half)
    widen = 1.0 + qp[Q_VOL_WIDEN] * realized_vol + qp[Q_TOX_WIDEN] * toxicity_score
    half = half * widen * spread_factor

    centre = fair + skew
    bid = round_down_py(centre - half, qp)
    ask = round_up_py(centre + half, qp)
    ask = np.maximum(ask, tick_up_py(bid, qp))  # locked -> one tick wider
    if qp[Q_CROSS] == 0.0:
        if has_ask:
            bid = np.minimum(bid, tick_down_py(round_up_py(market_ask, qp), qp))
        if has_bid:
            ask = np.maximum(ask, tick_up_py(round_down_py(market_bid, qp), qp))
    ask = np.maximum(ask, qp[Q_TICK])  # the lowest positive price; only binds once the bid is <= 0

    # sizes: shade the side that adds risk, then cap at the controller's
    rho = abs(skew) / half if half > 0.0 else 0.0
    base = qp[Q_BASE_SIZE]
    shaded = base * np.maximum(0.0, 1.0 - qp[Q_SIZE_SHADE] * rho)
    bid_size = np.floor((shaded if skew < 0.0 else base) + _EPS)
    ask_size = np.floor((shaded if skew > 0.0 else base) + _EPS)
    bid_size = np.floor(np.minimum(bid_size, cap_bid) + _EPS)
    ask_size = np.floor(np.minimum(ask_size, cap_ask) + _EPS)
    if not bid > 0.0:
        bid_size = 0.0
    if layer <= STALE:
        bid_size = 0.0
        ask_size = 0.0
    else:
        bid_size = np.maximum(bid_size, 0.0)
        ask_size = np.maximum(ask_size, 0.0)
    if not bid_size > 0.0:
        bid = math.nan
    if not ask_size > 0.0:
        ask = math.nan
    return bid, ask, bid_size, ask_size, half, skew


def quote_chain_py(
    fair, delta, vega, position, book_delta_shares, book_vega_per_vol_point, sigma_s, spot_fair,
    realized_vol, toxicity_score, layer, cap_bid, cap_ask, spread_factor, market_bid, market_ask, qp, out,
):  # fmt: skip
    """:func:`quote_one_py` over one underlying's chain, into ``out`` (:meth:`Quoter.quote`).

    The per-option arguments (``fair`` ... ``position``, ``layer``, ``cap_bid`` ... ``market_ask``) are
    arrays of shape ``(n,)``; the book's Greeks, ``sigma_s``, ``spot_fair``, ``realized_vol`` and
    ``toxicity_score`` are the underlying's scalars. ``out`` has shape ``(n, N_OUT)``, columns
    ``O_BID, O_ASK, O_BID_SIZE, O_ASK_SIZE, O_HALF_SPREAD, O_SKEW``. Nothing is allocated.
    """
    for i in range(fair.shape[0]):
        r = quote_one_py(
            fair[i], delta[i], vega[i], position[i], book_delta_shares, book_vega_per_vol_point, sigma_s,
            spot_fair, realized_vol, toxicity_score, layer[i], cap_bid[i], cap_ask[i], spread_factor[i],
            market_bid[i], market_ask[i], qp,
        )  # fmt: skip
        for j in range(N_OUT):
            out[i, j] = r[j]


round10 = twin(round10_py)
tick_at = twin(tick_at_py)
round_down = twin(round_down_py)
round_up = twin(round_up_py)
tick_up = twin(tick_up_py)
tick_down = twin(tick_down_py)
grid = twin(grid_py)
quote_one_squared = twin(quote_one_squared_py)
skew_squares = twin(skew_squares_py)
quote_one = twin(quote_one_py)
quote_chain = twin(quote_chain_py)


# -- the hedger -----------------------------------------------------------------------------------------
# Each rule is a plain-Python function (``*_py``) compiled once by :func:`twin`. DeltaHedger runs the
# Python forms (one decision at a time; numpy's cbrt, see the module Notes), the simulator the compiled.


def ww_band_py(gamma_dollars_1pct, spot, cost3, aversion2, min_band, max_band):
    """The Whalley–Wilmott half-width, shares: ``clip(cbrt(cost3·Γ²/aversion2), min_band, max_band)``,
    ``Γ = 100·gamma_dollars_1pct/S²``, ``cost3 = 3·λS``, ``aversion2 = 2·γ``
    (:func:`~optmm.quoting.hedger.ww_band_shares`). Scalars or, in Python, arrays; NaN propagates."""
    gamma_shares = gamma_per_share_py(gamma_dollars_1pct, spot)
    h = np.cbrt(cost3 * gamma_shares * gamma_shares / aversion2)
    return np.minimum(np.maximum(h, min_band), max_band)


def hedge_band_py(gamma_dollars_1pct, spot, hp):
    """:meth:`DeltaHedger.band_shares`: the no-trade half-width in shares for the configured mode
    (``WHALLEY_WILMOTT``: :func:`ww_band_py`; else ``band_shares``)."""
    if hp[H_MODE] == MODE_WHALLEY_WILMOTT:
        return ww_band_py(gamma_dollars_1pct, spot, hp[H_WW_3C], hp[H_WW_2G], hp[H_MIN_BAND], hp[H_MAX_BAND])
    return hp[H_BAND]


def whole_lots_py(delta, ideal, band, min_trade, lot):
    """The signed whole-lot trade (0.0 for none) nearest ``ideal`` that lands inside the band.

    Among trades of ``k`` lots with ``|k| >= k_min`` (at least ``min_trade``) that land inside
    ``[-band, band]``, the one minimising ``(|k − x|, |k|)``, ``x = ideal / lot``; the feasible set is
    at most two intervals of integers, whose point nearest ``x`` is an end (``k_lo``, ``k_hi``,
    ``±k_min``) or ``x`` rounded either way and clipped. Lot counts are floats holding integers
    (exact below 2**53). If no whole lot lands inside the band, the lots that bring delta nearest zero,
    if that reduces it.
    """
    x = ideal / lot
    k_lo = np.ceil((-band - delta) / lot)
    k_hi = np.floor((band - delta) / lot)
    k_min = max(1.0, np.ceil(min_trade / lot - 1e-12))
    fx = min(max(np.floor(x), k_lo), k_hi)
    cx = min(max(np.ceil(x), k_lo), k_hi)
    best = 0.0
    best_d = math.inf
    best_a = math.inf
    found = False
    for k in (k_lo, k_hi, k_min, -k_min, fx, cx):
        if abs(k) >= k_min and k_lo <= k and k <= k_hi:
            d = abs(k - x)
            a = abs(k)
            if not found or d < best_d or (d == best_d and a < best_a):
                best, best_d, best_a, found = k, d, a, True
    if found:
        return best * lot
    k = np.rint(-delta / lot)
    q = k * lot
    if k != 0.0 and abs(delta + q) < abs(delta) and abs(q) >= min_trade:
        return q
    return 0.0


def hedge_fill_py(shares, mid, spread, hp):
    """A hedge fill of ``shares`` at ``mid`` with the full bid-ask ``spread`` (>= 0): ``(price,
    half_spread, slippage)``, ``price = mid ± (half_spread + slippage)``; half the spread is paid with
    ``use_market_spread``, else ``half_spread_bps`` of mid; slippage is ``slippage_bps`` of mid."""
    half = 0.5 * spread if hp[H_USE_MARKET] != 0.0 else hp[H_HALF] * mid
    slip = hp[H_SLIP] * mid
    return mid + math.copysign(half + slip, shares), half, slip


def hedge_expected_price_py(shares, bid, ask, hp):
    """An order's expected fill price (``HedgeOrder.expected_price``): with ``use_market_spread``
    the touch ± slippage, else :func:`hedge_fill_py`'s price at mid."""
    mid = 0.5 * (bid + ask)
    if hp[H_USE_MARKET] != 0.0:
        slip = hp[H_SLIP] * mid
        return ask + slip if shares > 0 else bid - slip
    return hedge_fill_py(shares, mid, ask - bid, hp)[0]


def hedge_cost_py(shares, price, mid):
    """The cost of a hedge fill against mid, currency, >= 0: ``shares · (price − mid)``.

    :class:`~optmm.quoting.hedger.HedgeReport` counts the hedges' P&L as ``gross_pnl`` at mid less
    ``total_cost``; this is the cost that makes the split exact at the fill price. It equals the
    fill's ``spread_cost + slippage_cost`` to within ``|shares|`` ulps of the price (module Notes).
    """
    return shares * (price - mid)


def hedge_decide_py(delta, gamma_dollars_1pct, spot, bid, ask, now, layer, next_due, hp):
    """:meth:`DeltaHedger.decide` for one underlying.

    Parameters
    ----------
    delta : float
        Net delta in shares (options plus hedge shares held).
    gamma_dollars_1pct : float
        The book's dollar gamma per 1% move (``WHALLEY_WILMOTT``).
    spot, bid, ask : float
        Spot and the underlying's touch, > 0, bid <= ask.
    now : float
        Seconds.
    layer : int
        The controller's layer (a :class:`~optmm.risk.audit.Layer` value).
    next_due : float
        The ``TIME`` schedule's state for this underlying: the next due time, ``-inf`` before the
        first decision.
    hp : ndarray of float64, shape (N_HP,)
        :func:`pack_hedger`.

    Returns
    -------
    shares : float
        Signed shares, a nonzero whole number of lots; 0.0: no order.
    expected_price : float
        ``HedgeOrder.expected_price``; NaN when no order.
    band : float
        The no-trade half-width in force (``HedgeOrder.band_shares``): NaN for KILL, ``band_shares``
        in ``TIME`` mode (also when not due), else :func:`hedge_band_py`.
    reason_code : int
        ``REASON_BAND`` 0, ``REASON_SCHEDULE`` 1, ``REASON_HARD`` 2, ``REASON_KILL`` 3 (the values of
        :class:`~optmm.codes.HedgeReasonCode`); ``REASON_NONE`` (-1) when no order.
    next_due_after : float
        The schedule's state after the decision: ``now + interval_s`` when a ``TIME`` decision was due
        (whether or not it traded), else ``next_due``.
    """
    lot = hp[H_LOT]
    min_trade = hp[H_MIN_TRADE]
    due_after = next_due
    q = 0.0
    if layer == KILL:  # flatten now, whatever min_trade_shares
        band = math.nan
        q = np.rint(-delta / lot) * lot
        reason = REASON_KILL
    elif layer == HARD:
        band = hedge_band_py(gamma_dollars_1pct, spot, hp)
        reason = REASON_HARD
        if hp[H_HARD_TARGET] == TARGET_ZERO:
            q = whole_lots_py(delta, -delta, lot / 2, min_trade, lot)
        elif abs(delta) > band:
            q = whole_lots_py(delta, math.copysign(band, delta) - delta, band, min_trade, lot)
    elif hp[H_MODE] == MODE_TIME:
        band = hp[H_BAND]
        reason = REASON_SCHEDULE
        if not now < next_due:
            due_after = now + hp[H_INTERVAL]
            if hp[H_TARGET] == TARGET_ZERO:
                q = whole_lots_py(delta, -delta, lot / 2, min_trade, lot)
            elif abs(delta) > band:
                q = whole_lots_py(delta, math.copysign(band, delta) - delta, band, min_trade, lot)
    else:
        band = hedge_band_py(gamma_dollars_1pct, spot, hp)
        reason = REASON_BAND
        if abs(delta) > band:
            ideal = -delta if hp[H_TARGET] == TARGET_ZERO else math.copysign(band, delta) - delta
            q = whole_lots_py(delta, ideal, band, min_trade, lot)
    if q == 0.0:
        return 0.0, math.nan, band, REASON_NONE, due_after
    return q, hedge_expected_price_py(q, bid, ask, hp), band, reason, due_after


ww_band = twin(ww_band_py)
hedge_band = twin(hedge_band_py)
whole_lots = twin(whole_lots_py)
hedge_fill = twin(hedge_fill_py)
hedge_expected_price = twin(hedge_expected_price_py)
hedge_cost = twin(hedge_cost_py)
hedge_decide = twin(hedge_decide_py)
