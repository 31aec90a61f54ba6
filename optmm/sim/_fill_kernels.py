"""Fills of our quotes against a recorded market (docs/tape.md, "Fills against a tape"), each rule
written once as plain Python (``*_py``) and compiled by :func:`optmm.quoting._kernels.twin` for the
simulator's loop (``trade_fill = twin(trade_fill_py)``, ``quote_fill = twin(quote_fill_py)``).

Both rules return ``(bid_qty, bid_px, ask_qty, ask_px)``: what our bid buys and at what price, what
our ask sells and at what price (quantities >= 0, a price NaN where its quantity is 0). A side of ours
is live when its size is > 0 and its price is finite; prices are per share (option premium before the
multiplier), sizes in contracts (or shares).

* :func:`trade_fill_py`: a recorded trade at or through our quote fills it (a trade at or below our bid
  fills our bid, one at or above our ask our ask), at our price, for the smaller of our size and the
  trade's. A known aggressor picks the side (a seller hits bids, a buyer lifts offers); an unknown one
  (:data:`optmm.sim.tape.SIDE_UNKNOWN`) fills our bid if the price is at or below it, else our ask if at
  or above it. One trade fills one side at most. The caller passes the size still left on our quote
  and takes the fill off it before the next trade.
* :func:`quote_fill_py`: with no trades recorded, fills driven by the recorded quotes. The recorded
  market must be two-sided and not locked or crossed (``mkt_bid < mkt_ask``), else nothing fills; its
  mid is ``m = (mkt_bid + mkt_ask) / 2``. Our bid ``b``:

  - ``b >= mkt_ask``: it crosses the market and takes the recorded offer: fills at ``mkt_ask`` for the
    smaller of our size and the offer's size (all of ours when the size is not recorded: NaN);
  - ``mkt_bid <= b < m``: it rests at (``b == mkt_bid``) or inside (``b > mkt_bid``) the touch and
    fills, at ``b``, with probability ``1 − exp(−rate · dt_s)`` in the step (``rate`` =
    ``touch_rate_per_s`` at the touch, ``improve_rate_per_s`` inside it): when the step's uniform draw
    ``u_bid`` is below that; for the smaller of our size and ``passive_size``;
  - otherwise (behind the touch, ``b < mkt_bid``, or at or beyond the mid without crossing,
    ``m <= b < mkt_ask``): no fill.

  The ask mirrors it (crosses at ``a <= mkt_bid``, fills at ``mkt_bid``; rests for ``m < a <= mkt_ask``).
  So a quote that is not at or through the touch never fills, and nothing ever fills at the mid: a
  resting fill is strictly on its own side of the mid, a crossing one at the far touch, which is
  strictly beyond it. The draws are the caller's (deterministic).

Fill parameters (``fp``, length :data:`N_FP`, from :func:`pack_fill`)
--------------------------------------------------------------------
=====================  ==========================================================================
index                  value
=====================  ==========================================================================
``FP_TOUCH_RATE``      ``touch_rate_per_s``: fills per second of a resting quote at the touch
``FP_IMPROVE_RATE``    ``improve_rate_per_s``: fills per second of one inside the touch
``FP_PASSIVE_SIZE``    ``passive_size``: the most a resting fill takes (``inf``: all of our size)
``FP_DT_S``            the step, seconds
=====================  ==========================================================================
"""

from __future__ import annotations

import math

import numpy as np

from optmm.quoting._kernels import twin

__all__ = [
    "FP_DT_S",
    "FP_IMPROVE_RATE",
    "FP_PASSIVE_SIZE",
    "FP_TOUCH_RATE",
    "N_FP",
    "pack_fill",
    "quote_fill",
    "quote_fill_py",
    "trade_fill",
    "trade_fill_py",
]

FP_TOUCH_RATE, FP_IMPROVE_RATE, FP_PASSIVE_SIZE, FP_DT_S = range(4)
N_FP = 4


def pack_fill(
    touch_rate_per_s: float, improve_rate_per_s: float, dt_s: float, passive_size: float = math.inf
) -> np.ndarray:
    """The quote-driven rule's parameters as ``fp`` (module docstring).

    Raises
    ------
    ValueError
        A rate that is negative or not finite, a step that is not > 0, a ``passive_size`` that is not
        > 0 (``inf`` is allowed).
    """
    for name, v in (("touch_rate_per_s", touch_rate_per_s), ("improve_rate_per_s", improve_rate_per_s)):
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"fill model: {name} must be finite and >= 0 (got {v!r})")
    if not (math.isfinite(dt_s) and dt_s > 0.0):
        raise ValueError(f"fill model: dt_s must be finite and > 0 (got {dt_s!r})")
    if not passive_size > 0.0:
        raise ValueError(f"fill model: passive_size must be > 0 (got {passive_size!r})")
    fp = np.empty(N_FP)
    fp[FP_TOUCH_RATE] = touch_rate_per_s
    fp[FP_IMPROVE_RATE] = improve_rate_per_s
    fp[FP_PASSIVE_SIZE] = passive_size
    fp[FP_DT_S] = dt_s
    return fp


def trade_fill_py(bid, bid_size, ask, ask_size, price, size, side):
    """A recorded trade of ``size`` at ``price`` (aggressor ``side``: +1 buyer, −1 seller, 0 unknown)
    against our ``bid`` / ``ask`` with the sizes left on them: ``(bid_qty, bid_px, ask_qty, ask_px)``."""
    bid_live = bid_size > 0.0 and bid == bid  # (NaN != NaN: no quote)
    ask_live = ask_size > 0.0 and ask == ask
    if side <= 0 and bid_live and price <= bid:
        return min(bid_size, size), bid, 0.0, np.nan
    if side >= 0 and ask_live and price >= ask:
        return 0.0, np.nan, min(ask_size, size), ask
    return 0.0, np.nan, 0.0, np.nan


def quote_fill_py(
    bid, bid_size, ask, ask_size, mkt_bid, mkt_ask, mkt_bid_size, mkt_ask_size, u_bid, u_ask, fp
):
    """One step of the quote-driven rule for one instrument (module docstring): our ``bid`` / ``ask``
    and their sizes, the recorded touch and its sizes (NaN: not recorded), the step's uniform draws per
    side: ``(bid_qty, bid_px, ask_qty, ask_px)``."""
    bq = 0.0
    bpx = np.nan
    aq = 0.0
    apx = np.nan
    if not mkt_bid < mkt_ask:  # one-sided, locked, crossed or missing: nothing to measure against
        return bq, bpx, aq, apx
    mid = 0.5 * (mkt_bid + mkt_ask)
    dt = fp[FP_DT_S]
    if bid_size > 0.0 and bid == bid:
        if bid >= mkt_ask:
            q = bid_size if mkt_ask_size != mkt_ask_size else min(bid_size, mkt_ask_size)
            if q > 0.0:
                bq = q
                bpx = mkt_ask
        elif mkt_bid <= bid < mid:
            rate = fp[FP_TOUCH_RATE] if bid == mkt_bid else fp[FP_IMPROVE_RATE]
            if u_bid < -math.expm1(-rate * dt):
                bq = min(bid_size, fp[FP_PASSIVE_SIZE])
                bpx = bid
    if ask_size > 0.0 and ask == ask:
        if ask <= mkt_bid:
            q = ask_size if mkt_bid_size != mkt_bid_size else min(ask_size, mkt_bid_size)
            if q > 0.0:
                aq = q
                apx = mkt_bid
        elif mid < ask <= mkt_ask:
            rate = fp[FP_TOUCH_RATE] if ask == mkt_ask else fp[FP_IMPROVE_RATE]
            if u_ask < -math.expm1(-rate * dt):
                aq = min(ask_size, fp[FP_PASSIVE_SIZE])
                apx = ask
    return bq, bpx, aq, apx


trade_fill = twin(trade_fill_py)
quote_fill = twin(quote_fill_py)
