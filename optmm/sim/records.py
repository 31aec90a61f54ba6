"""The simulator's output rows: the compiled loop (:mod:`optmm.sim._kernels`) writes them, the engine
(:mod:`optmm.sim.engine`) turns them into the result's tables. Every column is named here once.

Rows are float64 arrays addressed by the column constants below (a structured dtype would give the
same names, but the events go on, as they are, to the controller's replay, which reads its own float
layout). :class:`Outputs` groups one path's output arrays; :func:`new_outputs` allocates them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from optmm.risk import _controller_kernels as ck

# steps: one row per step (currency unless named otherwise)
(
    ST_SPREAD,  # spread capture of the step's fills
    ST_DELTA,  # the step's inventory P&L, attributed: delta, gamma, vega, theta, residual
    ST_GAMMA,
    ST_VEGA,
    ST_THETA,
    ST_RESID,
    ST_HCOST,  # hedge cost (>= 0, subtracted)
    ST_PNL,  # the step's P&L: spread capture + inventory P&L - hedge cost
    ST_BDELTA,  # the book's delta (shares), dollar gamma per 1 % move, vega per vol point, after the step
    ST_BGAMMA,
    ST_BVEGA,
    ST_NFILLS,  # fills and quoted sides (counts)
    ST_NQUOTED,
) = range(13)
NST = 13
STEP_PNL_COLUMNS = (
    ("spread_capture", ST_SPREAD),
    ("delta_pnl", ST_DELTA),
    ("gamma_pnl", ST_GAMMA),
    ("vega_pnl", ST_VEGA),
    ("theta_pnl", ST_THETA),
    ("residual_pnl", ST_RESID),
    ("hedge_cost", ST_HCOST),
    ("pnl", ST_PNL),
)
"""The steps table's P&L columns and where they come from."""

# underlyings: one row per step and underlying, after the step
(
    UN_SPOT,
    UN_VOL,  # the path's instantaneous vol (annual)
    UN_DELTA,  # the controller's aggregates: delta (shares), dollar gamma per 1 %, vega per vol point
    UN_GAMMA,
    UN_VEGA,
    UN_STOCK,  # stock held (shares)
    UN_LAYER,  # the controller's layer code
    UN_TOX,  # the toxicity score
) = range(8)
NUN = 8

# fills: one row per fill. F_FAIR_H: the instrument's fair value markout_steps after the fill, NaN
# past the last step
(
    F_STEP,
    F_INST,  # instrument index
    F_SIDE,  # +1 we bought, -1 we sold
    F_SIZE,  # contracts (shares for the underlying)
    F_PRICE,
    F_FAIR,  # fair value at the fill
    F_INFORMED,  # 1.0 for an informed order
    F_FAIR_H,
) = range(8)
NF = 8

# hedges: one row per hedge
(
    H_STEP,
    H_U,  # underlying index
    H_SHARES,  # signed
    H_PRICE,  # executed price
    H_MID,  # the underlying's mid
    H_COST,  # shares * (price - mid) >= 0
    H_REASON,  # optmm.quoting.hedger.HedgeReason, by position
) = range(7)
NH = 7

# orders: one row per order that reached a live quote of ours (filled or not), in the order the loop
# met them
(
    O_STEP,
    O_INST,  # instrument index
    O_SIDE,  # +1 it hit our bid (we buy), -1 it lifted our ask
    O_SIZE,  # the order's size (contracts; shares for the underlying)
    O_PRICE,  # the price it met: our quote's (a replayed quote-driven fill: the rule's)
) = range(5)
NO = 5

# events: the controller's EV_* layout (optmm.risk._controller_kernels), with the step in place of the
# time (column 1)
E_DECIDE, E_LAYER, E_TOXIC, E_KILL = ck.EV_DECIDE, ck.EV_LAYER, ck.EV_TOXIC, ck.EV_KILL
E_STEP = 1
NE = ck.NEV

# quote window: per step of the window and instrument, the quote posted (NaN price, 0 size: none)
QW_FAIR, QW_BID, QW_ASK, QW_BSIZE, QW_ASIZE = range(5)
NQW = 5

TALLY = np.dtype(
    [
        ("fills", np.int64),  # fills made (past the fills array's capacity too)
        ("hedges", np.int64),  # hedges made
        ("events", np.int64),  # events written
        ("orders", np.int64),  # orders that reached a quote of ours
        ("markouts", np.int64),  # fills whose markout fair value is recorded
        ("kills", np.int64),  # kill-switch events
        ("breaches", np.int64),  # own fills that took a pre-trade metric past its hard limit
        ("cash", np.float64),  # cash (currency)
        ("cum_pnl", np.float64),  # the path's P&L so far (currency)
        ("high_water", np.float64),  # its high-water mark (currency)
    ]
)
"""The run's running totals: one record (``tally[0]``) that the loop's phases update in place."""


class Outputs(NamedTuple):
    """One path's output arrays (rows above); ``fills``, ``hedges``, ``events`` and ``orders`` have a
    capacity, the tally counts past it (the caller enlarges them and runs again)."""

    steps: np.ndarray  # (steps, NST)
    underlyings: np.ndarray  # (steps, underlyings, NUN)
    fills: np.ndarray  # (capacity, NF)
    hedges: np.ndarray  # (capacity, NH)
    events: np.ndarray  # (capacity, NE)
    orders: np.ndarray  # (capacity, NO)
    quotes: np.ndarray  # (window steps, instruments, NQW)
    fair_end: np.ndarray  # (instruments,) the last step's fair values
    position: np.ndarray  # (instruments,) contracts (shares for the underlying) held at the end
    tally: np.ndarray  # (1,) of TALLY


def new_outputs(n_steps: int, nu: int, n_inst: int, quote_steps: int, caps: list[int]) -> Outputs:
    """Zeroed outputs for a path of ``n_steps`` steps, ``nu`` underlyings, ``n_inst`` instruments, a
    quote window of ``quote_steps`` steps and ``caps`` rows of fills, hedges, events and orders."""
    return Outputs(
        steps=np.zeros((n_steps, NST)),
        underlyings=np.zeros((n_steps, nu, NUN)),
        fills=np.zeros((caps[0], NF)),
        hedges=np.zeros((caps[1], NH)),
        events=np.zeros((caps[2], NE)),
        orders=np.zeros((caps[3], NO)),
        quotes=np.full((quote_steps, n_inst, NQW), np.nan),
        fair_end=np.empty(n_inst),
        position=np.zeros(n_inst),
        tally=np.zeros(1, dtype=TALLY),
    )
