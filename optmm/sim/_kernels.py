"""The simulator's event loop: one compiled call runs one path, every step of it.

Per step ``k`` (time ``k · dt``), in this order (docs/simulation.md, "The loop"), one phase function
each:

1. market data (:func:`_market_step`): spot and vol of every underlying at step ``k``; fair value and
   Greeks of every instrument (one SIMD block of :func:`optmm.greeks._bsm._greeks_block`, five
   outputs; an American option's then by the boundary engine, :func:`optmm.greeks._american.marks_py`);
   the previous step's inventory P&L is attributed (:func:`_attribute`: delta, gamma, vega,
   theta, residual) now that both ends are known;
2. the controller's state is refreshed in place (:func:`_refresh_risk`: per-contract Greeks,
   aggregates, spots, market-data time; the worst-scenario grid every ``scenario_every_steps``), the
   day's P&L is marked (:func:`_mark_pnl`: daily loss and drawdown may throw the kill switch), the
   toxicity detector sees the mid and updates its latch (:func:`_toxicity`: when ``toxicity_pull``,
   it flags the underlying toxic), and every underlying's layer is re-evaluated (:func:`_layers`);
3. quotes (:func:`_quote`), in passes over the instruments: the quoter's wanted quotes (a vector
   loop), the controller's gate and pre-trade check of each (:func:`_decide`,
   :func:`optmm.risk._controller_kernels.decide_in_layer`), the final quotes where a decision changed
   them (a vector loop); they reach the market ``latency_steps`` steps later (:func:`_post_quotes`);
4. fills: the step's orders (:func:`_market_orders`, :func:`_informed_orders`; replaying a tape,
   :func:`_tape_orders` instead): an uninformed market order reaches a live quote at distance ``δ``
   from fair value when the step's uniform draw for it is below ``1 − exp(−λ·dt)`` (or
   ``min(λ·dt, 1)``), ``λ(δ) = A·exp(−k·δ)``; informed orders trade against us when the fair value
   ``informed_horizon_steps`` ahead is through our quote; each order that reaches a live quote is
   recorded (``out.orders``) and every fill (:func:`_fills`, :func:`_fill`) passes the pre-trade check
   again at the state it meets (so no fill of ours takes a position or Greek past a hard limit),
   updates the inventory, the controller (:func:`apply_fill`) and the toxicity detector;
5. hedge (:func:`_hedge`): the hedger's decision for every underlying on the net delta after the fills;
6. record (:func:`_record`).

What flows in is grouped in named tuples (:mod:`optmm.sim._groups`); what flows out are the rows of
:mod:`optmm.sim.records`. Random numbers are never drawn here: the caller passes them in (``Draws``).

Events for the audit trail are written to ``out.events`` (rows of :data:`NE` floats) and replayed by
the Python side through the controller (:meth:`optmm.risk.RiskController.replay_events`).

The phases are compiled without numba's runtime (``_nrt=False``: the arrays they pass on to the
quoter's and controller's inlined functions are not reference counted, which would cost an atomic
operation per array per call), on the caller's arrays only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher

from optmm._jit import function_copy
from optmm.greeks._american import marks as american_marks
from optmm.greeks._american import price_scalar as american_price
from optmm.greeks._american_fd import all_one as fd_all
from optmm.greeks._american_fd import from_tables as fd_from_tables
from optmm.greeks._american_fd import price_one as fd_price
from optmm.greeks._american_fd import spacing as fd_spacing
from optmm.greeks._american_fd import tables as fd_tables
from optmm.greeks._bsm import _greeks_block, _price_block
from optmm.greeks._bsm import bsm_price_scalar as bsm_price
from optmm.quoting._kernels import hedge_cost, hedge_decide, hedge_fill, quote_one_squared, skew_squares
from optmm.quoting._toxicity_kernels import tox_on_fill, tox_on_mid, tox_on_trade, tox_update
from optmm.risk import _controller_kernels as ck
from optmm.sim._fill_kernels import quote_fill, trade_fill
from optmm.sim._groups import K_CALL, K_UNDERLYING, Q_AS, Q_QUOTER, R_SYNTHETIC, R_TRADES
from optmm.sim.records import (
    E_DECIDE,
    E_KILL,
    E_LAYER,
    E_TOXIC,
    F_FAIR,
    F_FAIR_H,
    F_INFORMED,
    F_INST,
    F_PRICE,
    F_SIDE,
    F_SIZE,
    F_STEP,
    H_COST,
    H_MID,
    H_PRICE,
    H_REASON,
    H_SHARES,
    H_STEP,
    H_U,
    O_INST,
    O_PRICE,
    O_SIDE,
    O_SIZE,
    O_STEP,
    QW_ASIZE,
    QW_ASK,
    QW_BID,
    QW_BSIZE,
    QW_FAIR,
    ST_BDELTA,
    ST_BGAMMA,
    ST_BVEGA,
    ST_DELTA,
    ST_GAMMA,
    ST_HCOST,
    ST_NFILLS,
    ST_NQUOTED,
    ST_PNL,
    ST_RESID,
    ST_SPREAD,
    ST_THETA,
    ST_VEGA,
    UN_DELTA,
    UN_GAMMA,
    UN_LAYER,
    UN_SPOT,
    UN_STOCK,
    UN_TOX,
    UN_VEGA,
    UN_VOL,
)

# returned status bits
OVER_FILLS, OVER_HEDGES, OVER_EVENTS, OVER_ORDERS = 1, 2, 4, 8

VOL_FLOOR = 0.01  # implied vols are floored at one vol point

_inline = njit(cache=True, inline="always", error_model="numpy")
_phase = njit(cache=True, inline="always", error_model="numpy")
"""A phase of :func:`run_path`, compiled into it: a call that passes the workspaces costs more than
the light phases' work (each array of a group is several arguments)."""
_own = njit(cache=True, error_model="numpy", _nrt=False)
"""A heavy phase, compiled as a function of its own: the quotes, the quoter's pass (called twice)
and the fills (numba inlines a function by compiling its body again in the caller, at every call;
for these, whose own inlined quoter and controller functions are large, that made the first run
several times slower to compile). The controller's underlying gate and worst-cell search are called,
not inlined, for the same reason; its decision and the quoter's, hedger's and toxicity detector's rules
stay inlined: called, they made a day up to a quarter slower (``bench/simulate.py``)."""


@_inline
def _event(events, tally, typ, step, a, b, c, d, e, f):  # pragma: no cover - compiled
    """Write one event row (``events`` full: count it only)."""
    t = tally[0]
    if t.events < events.shape[0]:
        row = events[t.events]
        row[0] = typ
        row[1] = step
        row[2] = a
        row[3] = b
        row[4] = c
        row[5] = d
        row[6] = e
        row[7] = f
    t.events += 1


@_inline
def _decision_event(events, tally, step, c, flags, lay, nb, na, aux, last_stat):  # pragma: no cover
    """Write a decision's event, leaving out a side's cut or drop that repeats the previous decision's
    for the same contract and side (same status and metric): one event when it starts, not one per step."""
    for side, off, bit in ((0, ck.A_BID, ck.F_BID), (1, ck.A_ASK, ck.F_ASK)):
        status = aux[off] if flags & bit else ck.S_OK
        code = aux[off + 1] if flags & bit else -1.0
        if last_stat[c, 2 * side] == status and last_stat[c, 2 * side + 1] == code and flags & bit:
            flags &= ~bit
        last_stat[c, 2 * side] = status
        last_stat[c, 2 * side + 1] = code
    if flags == 0:
        return
    t = tally[0]
    if t.events < events.shape[0]:
        row = events[t.events]
        row[0] = E_DECIDE
        row[1] = step
        row[2] = c
        row[3] = flags
        row[4] = lay
        row[5] = nb
        row[6] = na
        row[7] = 0.0
        for j in range(ck.NAUX):
            row[8 + j] = aux[j]
    t.events += 1


@_inline
def _smile_vol(vol_t, slope, curvature, x, offset):  # pragma: no cover - compiled
    """Implied vol at log-moneyness ``x = ln K − ln S``: ``vol_t + slope·x + curvature·x² + offset``,
    floored. ``offset`` is the contract's own (``Instruments.vol_offset``): a run from a market sets it
    to the market's vol less the smile's at the start, so the start is the market's; it stays with the
    contract (sticky) while the smile moves with the spot and the vol."""
    return max(vol_t + slope * x + curvature * x * x + offset, VOL_FLOOR)


def dividend_pv_py(pv0: float, carry: float, elapsed_years: float) -> float:
    """The present value, ``elapsed_years`` into a run, of cash dividends worth ``pv0`` at its start
    when none goes ex in between (a run from a market refuses one that would): each ex-date is that
    much closer, and the escrowed model discounts at the carry ``r - q`` (:mod:`optmm.greeks._dividend`),
    so ``pv0 · exp(carry · elapsed)``. Scalars in the loop, arrays in :mod:`optmm.sim.markouts`."""
    return pv0 * np.exp(carry * elapsed_years)


_dividend_pv = _inline(dividend_pv_py)


@_inline
def _poisson_quantile(u, lam):  # pragma: no cover - compiled
    """The smallest n with P(Poisson(lam) <= n) >= u (inverse transform of a uniform draw)."""
    p = math.exp(-lam)
    cdf = p
    n = 0
    while cdf < u and n < 100_000:
        n += 1
        p *= lam / n
        cdf += p
    return float(n)


# -- setup ------------------------------------------------------------------------------------------


@_phase
def _start(ins, und, mkt, out, w):  # pragma: no cover - compiled
    """The path's starting state. Reads the chain, the underlyings and the first step's vol; writes
    ``w.pricing`` (is_call, rate, div_yield, ln_strike), ``w.free``, ``w.ring`` (no quotes),
    ``w.last_stat``, ``w.und`` (next hedge time, toxicity, realized variance), ``w.layer_info`` and
    the positions (``ins.position0``); the tally is zero already."""
    p = w.pricing
    for i in range(ins.u.shape[0]):
        p.is_call[i] = ins.kind[i] == K_CALL
        p.rate[i] = und.rate[ins.u[i]]
        p.div_yield[i] = und.div_yield[ins.u[i]]
        p.ln_strike[i] = math.log(ins.strike[i]) if ins.kind[i] != K_UNDERLYING else 0.0
        w.free.layer[i] = ck.NORMAL
        w.free.cap_bid[i] = np.inf
        w.free.cap_ask[i] = np.inf
        w.free.spread[i] = 1.0
        out.position[i] = ins.position0[i]
    r = w.ring
    for j in range(r.bid.shape[0]):
        for i in range(r.bid.shape[1]):
            r.bid[j, i] = np.nan
            r.ask[j, i] = np.nan
            r.bid_size[j, i] = 0.0
            r.ask_size[j, i] = 0.0
    for c in range(w.last_stat.shape[0]):
        for j in range(4):
            w.last_stat[c, j] = -2.0
    for u in range(mkt.spot.shape[1]):
        w.und.next_hedge_s[u] = -np.inf
        w.und.toxicity[u] = 0.0
        for j in range(4):
            w.layer_info[u, j] = 0.0
        w.und.rv2[u] = mkt.vol[0, u] * mkt.vol[0, u]


# -- 1. market data, fair values and Greeks; the previous step's P&L --------------------------------


@_phase
def _market_step(k, ins, und, mkt, ctl, cfg, w, fd):  # pragma: no cover - compiled
    """Step ``k``'s fair values. Reads the chain, the smile and the path at ``k``; writes
    ``w.und`` (ln_spot, div_growth), ``w.pricing`` (spot, t_years, div_pv) and ``w.marks`` (implied vol
    from the smile and the contract's offset, fair value, Greeks; the underlying: its spot, delta 1, no
    other Greek). A contract with cash dividends before it settles (``ins.div_pv0``) is priced in the
    escrowed model (:mod:`optmm.greeks._dividend`): Black-Scholes-Merton on the spot less their present
    value, its theta with the dividends' accrual. An American option (``ins.american``) is then priced
    again as :func:`optmm.pricing.contract_greeks` prices it: on cash dividends by the
    finite-difference engine (:func:`_fd_marks`), else by the boundary engine
    (:func:`optmm.greeks._american.marks_py`, ``ins.scheme``)."""
    p, m = w.pricing, w.marks
    for u in range(mkt.spot.shape[1]):
        w.und.ln_spot[u] = math.log(mkt.spot[k, u])
        w.und.div_growth[u] = _dividend_pv(1.0, und.rate[u] - und.div_yield[u], k * cfg.dt_years)
        for j in range(fd.div_n[u]):
            fd.ex_now[u, j] = fd.div_ex[u, j] - k * cfg.dt_years
    for i in range(ins.u.shape[0]):  # (no branch: the loop vectorises; 0 dividends leave the spot as it is)
        u = ins.u[i]
        p.div_pv[i] = ins.div_pv0[i] * w.und.div_growth[u]
        p.spot[i] = mkt.spot[k, u] - p.div_pv[i]
        p.t_years[i] = ins.t0_years[i] - k * cfg.dt_years
        if ins.kind[i] != K_UNDERLYING:
            x = p.ln_strike[i] - w.und.ln_spot[u]
            m.vol[i] = _smile_vol(
                mkt.vol[k, u], und.smile_slope[u], und.smile_curvature[u], x, ins.vol_offset[i]
            )
        else:
            m.vol[i] = 0.0
    _greeks_block(
        p.spot, ins.strike, p.t_years, p.rate, p.div_yield, m.vol, p.is_call,
        m.price, m.delta, m.gamma, m.vega, m.theta,
    )  # fmt: skip
    for i in range(ins.u.shape[0]):
        if ins.kind[i] == K_UNDERLYING:
            m.price[i] = p.spot[i]
            m.delta[i] = 1.0
            m.gamma[i] = 0.0
            m.vega[i] = 0.0
            m.theta[i] = 0.0
        elif fd.row[i] >= 0:  # American on cash dividends: the finite-difference engine, by its tables
            m.price[i], m.delta[i], m.gamma[i], m.vega[i], m.theta[i] = _fd_marks(
                k, i, ins, p, m.vol[i], ctl, cfg.dt_s, cfg.dt_years, fd
            )
        elif ins.american[i]:  # on a continuous yield: the boundary engine's figures, rho skipped
            a = american_marks(
                p.spot[i], ins.strike[i], p.t_years[i], p.rate[i], p.div_yield[i], m.vol[i], p.is_call[i],
                ins.scheme, bool(False),  # noqa: UP018 (not the literal: one compilation of the rule)
            )  # fmt: skip
            m.price[i], m.delta[i], m.gamma[i], m.vega[i], m.theta[i] = a[0], a[1], a[2], a[3], a[4]
        elif p.div_pv[i] != 0.0:  # time brings each ex-date closer: dS*/dt = -(r - q) PV
            m.theta[i] -= (p.rate[i] - p.div_yield[i]) * p.div_pv[i] * m.delta[i]


# American options on cash dividends: the finite-difference engine (optmm.greeks._american_fd) solves
# for today's values over its whole grid of ln S*. A contract keeps the solves of its last refresh
# (FdTables): at its vol and the two bumps of its vega, on the engine's grid; and the same at each of
# the scenario grid's vols, on grids of the same spacing as wide as the spot shocks need. It reads its
# price and Greeks, and its scenario cells, from them (exact at the refresh; as the spot, vol and time
# move, to the grid's accuracy, second order in the vol, first in time) until it crosses one of these
# bands and is solved again (docs/simulation.md, "American options")
FD_REFRESH_S = 3600.0  # at least this often (seconds) ...
FD_VOL_BAND = 0.005  # ... and when its vol has moved more than this from the tables' ...
FD_X_BAND = 0.25  # ... or ln S* more than this share of the grid's half-width from its centre
FD_CELL_WIDTH = 4  # a scenario vol's grid has at most this many times the engine's grid's intervals
_fd_kernel = njit(cache=True, error_model="numpy", _nrt=True)
"""The engine's entry points in the loop: the engine's scratch arrays need numba's runtime, which a
callee compiled from the loop (without it) would otherwise lack."""


@_inline
def _first_of_vol(shock_vol, g):  # pragma: no cover - compiled
    """Cell ``g`` is the first of its vol shock."""
    for g0 in range(g):
        if shock_vol[g0] == shock_vol[g]:
            return False
    return True


@_inline
def _vol_slot(shock_vol, g):  # pragma: no cover - compiled
    """The rank of cell ``g``'s vol shock among the grid's distinct ones, in order of appearance."""
    slot = 0
    for g0 in range(g):
        if shock_vol[g0] == shock_vol[g]:  # (its first cell)
            return slot
        slot += 1 if _first_of_vol(shock_vol, g0) else 0
    return slot


@_inline
def _fd_dividends(fd, u):  # pragma: no cover - compiled
    """Underlying ``u``'s cash dividends still to come, as the finite-difference engine takes them:
    their ex-times from now (``fd.ex_now``) and amounts."""
    n = fd.div_n[u]
    return fd.ex_now[u, :n], fd.div_amt[u, :n]


@_inline
def _fd_marks(k, i, ins, p, vol, ctl, dt_s, dt_years, fd):  # pragma: no cover - compiled
    """Step ``k``'s price, delta, gamma, vega and theta of instrument ``i`` (``fd.row[i] >= 0``) at the
    vol ``vol`` and the pricing inputs ``p``: read from its tables (``fd``,
    :func:`optmm.greeks._american_fd.from_tables_py`), made again first (:func:`_fd_refresh`) when a
    band (``FD_*``) is crossed."""
    r = fd.row[i]
    x = math.log(p.spot[i])
    if (
        p.t_years[i] <= 0.0
        or fd.step[r] < 0.0
        or (k - fd.step[r]) * dt_s >= FD_REFRESH_S
        or abs(vol - fd.sigma[r]) > FD_VOL_BAND
        or abs(x - fd.x_mid[r]) > FD_X_BAND * 0.5 * (fd.grid.n_x - 1) * fd.dx[r]
    ):
        return _fd_refresh(k, i, ins, p, vol, ctl, fd)
    a = fd_from_tables(
        fd.v[r], fd.x_mid[r], fd.dx[r], fd.sigma[r], p.spot[i], p.div_pv[i], ins.strike[i], p.rate[i],
        p.div_yield[i], vol, p.is_call[i], (k - fd.step[r]) * dt_years,
    )  # fmt: skip
    return a[0], a[1], a[2], a[3], a[4]


@_fd_kernel
def _fd_refresh(k, i, ins, p, vol, ctl, fd):  # pragma: no cover - compiled
    """:func:`_fd_marks` at step ``k`` after making instrument ``i``'s tables again: at its vol and
    at those of the scenario grid's cells (``ctl``'s shocks), centred on today's escrowed spot, the
    ex-times ``fd.ex_now``'s. Expired, its intrinsic value (no tables)."""
    r = fd.row[i]
    ex, amt = _fd_dividends(fd, ins.u[i])
    t, s_star, strike, rate, q, call = (
        p.t_years[i],
        p.spot[i],
        ins.strike[i],
        p.rate[i],
        p.div_yield[i],
        p.is_call[i],
    )
    if t <= 0.0:
        a = fd_all(s_star + p.div_pv[i], strike, t, rate, q, vol, call, ex, amt, fd.grid)
        return a[0], a[1], a[2], a[3], a[4]
    x = math.log(s_star)
    fd.x_mid[r] = x
    fd.dx[r] = fd_spacing(vol, t, fd.grid)
    fd.sigma[r] = vol
    fd.step[r] = k
    fd_tables(strike, t, rate, q, vol, call, ex, amt, x, fd.dx[r], fd.grid, fd.v[r])
    reach = 0.0  # the largest spot shock, in ln S
    for g in range(ctl.shock_spot.shape[0]):
        if ctl.shock_spot[g] > -1.0:
            reach = max(reach, abs(math.log1p(ctl.shock_spot[g])))
    for g in range(ctl.shock_vol.shape[0]):
        if not _first_of_vol(ctl.shock_vol, g):
            continue
        j = _vol_slot(ctl.shock_vol, g)
        vol_g = max(vol + ctl.shock_vol[g], 0.0)
        fd.cell_n[r, j] = 0.0
        if vol_g <= 0.0:  # (no vol: each cell solved on its own)
            continue
        dx = fd_spacing(vol_g, t, fd.grid)
        fd.cell_sigma[r, j] = vol_g
        half = min((fd.grid.n_x - 1) // 2 + 2 + math.ceil(reach / dx), FD_CELL_WIDTH * (fd.grid.n_x - 1) // 2)
        fd.cell_dx[r, j] = dx
        fd.cell_n[r, j] = 2 * half + 1
        fd_tables(strike, t, rate, q, vol_g, call, ex, amt, x, dx, fd.grid, fd.cells[r, j, :, : 2 * half + 1])
    a = fd_from_tables(fd.v[r], x, fd.dx[r], vol, s_star, p.div_pv[i], strike, rate, q, vol, call, 0.0)
    return a[0], a[1], a[2], a[3], a[4]


@_fd_kernel
def _fd_cells(k, i, ins, pricing, marks, spot_k, ctl, dt_years, fd):  # pragma: no cover - compiled
    """Instrument ``i``'s (``fd.row[i] >= 0``) scenario cells at step ``k``, as :func:`_revalue`'s:
    each from the tables of its vol shock (without one, near today's spot, from those of its marks, so
    that the unshocked cell is 0), read as the marks are; a cell off the tables' interior by a solve of
    its own. Writes cf's cells and adds them to ``ctl.cells``."""
    r, u, c = fd.row[i], ins.u[i], ins.contract[i]
    ex, amt = _fd_dividends(fd, u)
    strike, t, rate, q = ins.strike[i], pricing.t_years[i], pricing.rate[i], pricing.div_yield[i]
    call, pv, x_mid = pricing.is_call[i], pricing.div_pv[i], fd.x_mid[r]
    tau = (k - fd.step[r]) * dt_years
    inner = (0.5 * (fd.grid.n_x - 1) - 2.0) * fd.dx[r]  # how far from the centre a grid is read
    for g in range(ctl.shock_spot.shape[0]):
        sv = ctl.shock_vol[g]
        j = _vol_slot(ctl.shock_vol, g)
        n_j = int(fd.cell_n[r, j])
        s_full = spot_k[u] * (1.0 + ctl.shock_spot[g])
        s_star = s_full - pv
        off = abs(math.log(s_star) - x_mid) if s_star > 0.0 else np.inf
        if t > 0.0 and sv == 0.0 and off <= inner:
            price = fd_from_tables(
                fd.v[r], x_mid, fd.dx[r], fd.sigma[r], s_star, pv, strike, rate, q, marks.vol[i], call, tau
            )[0]
        elif t > 0.0 and n_j > 0 and off <= (0.5 * (n_j - 1) - 2.0) * fd.cell_dx[r, j]:
            price = fd_from_tables(
                fd.cells[r, j, :, :n_j], x_mid, fd.cell_dx[r, j], fd.cell_sigma[r, j], s_star, pv, strike,
                rate, q, max(marks.vol[i] + sv, 0.0), call, tau,
            )[0]  # fmt: skip
        else:
            vol = max(marks.vol[i] + sv, 0.0)
            price = fd_price(s_full, strike, t, rate, q, vol, call, ex, amt, fd.grid)
        cell = ins.mult[i] * (price - marks.price[i])
        ctl.cf[c, ck.CCELL + g] = cell
        ctl.cells[u, g] += ctl.cf[c, ck.CPOS] * cell


@_fd_kernel
def _fd_future(i, kf, s, vol, t, ins, und, dt_years, fd):  # pragma: no cover - compiled
    """The price of instrument ``i`` (``fd.row[i] >= 0``) at step ``kf``'s spot ``s``, vol ``vol`` and
    time to expiry ``t``: one solve of the finite-difference engine (an informed order's foresight)."""
    u = ins.u[i]
    n = fd.div_n[u]
    for j in range(n):
        fd.ex_at[j] = fd.div_ex[u, j] - kf * dt_years
    return fd_price(
        s, ins.strike[i], t, und.rate[u], und.div_yield[u], vol, ins.kind[i] == K_CALL, fd.ex_at[:n],
        fd.div_amt[u, :n], fd.grid,
    )  # fmt: skip


@_inline
def _markouts(out, k, h, price):  # pragma: no cover - compiled
    """Record, for the fills made ``h`` steps or more before step ``k`` whose markout is not yet
    recorded, the fair value at step ``k`` (``price``): called at every step, each gets the one ``h``
    steps after it. Reads and writes ``out.fills`` and the tally's ``markouts``."""
    t = out.tally[0]
    fills = out.fills
    n_f = min(t.fills, fills.shape[0])
    while t.markouts < n_f and fills[t.markouts, F_STEP] + h <= k:
        fills[t.markouts, F_FAIR_H] = price[int(fills[t.markouts, F_INST])]
        t.markouts += 1


@_phase
def _attribute(k, ins, mkt, cfg, out, w):  # pragma: no cover - compiled
    """Step ``k - 1``'s inventory P&L, now that both ends are known: delta, gamma, vega, theta and
    residual into ``out.steps[k - 1]`` with the step's total P&L; the inventory part is added to the
    tally's ``cum_pnl``. Reads the positions held over the step, ``w.prev``, ``w.marks`` and the
    previous spots and stock (``w.und``)."""
    row = out.steps[k - 1]
    pm, m = w.prev, w.marks
    d_pnl = 0.0
    g_pnl = 0.0
    v_pnl = 0.0
    th_pnl = 0.0
    total = 0.0
    for u in range(mkt.spot.shape[1]):
        ds = mkt.spot[k, u] - w.und.prev_spot[u]
        x = w.und.prev_stock[u] * ds
        d_pnl += x
        total += x
    pos = out.position
    for i in range(ins.u.shape[0]):
        if ins.kind[i] == K_UNDERLYING or pos[i] == 0.0:
            continue
        u = ins.u[i]
        qm = pos[i] * ins.mult[i]
        ds = mkt.spot[k, u] - w.und.prev_spot[u]
        d_pnl += qm * pm.delta[i] * ds
        g_pnl += 0.5 * qm * pm.gamma[i] * ds * ds
        v_pnl += qm * pm.vega[i] * (m.vol[i] - pm.vol[i])
        th_pnl += qm * pm.theta[i] * cfg.dt_years
        total += qm * (m.price[i] - pm.price[i])
    row[ST_DELTA] = d_pnl
    row[ST_GAMMA] = g_pnl
    row[ST_VEGA] = v_pnl
    row[ST_THETA] = th_pnl
    row[ST_RESID] = total - d_pnl - g_pnl - v_pnl - th_pnl
    row[ST_PNL] = row[ST_SPREAD] + total - row[ST_HCOST]
    out.tally[0].cum_pnl += total


@_phase
def _roll_marks(w):  # pragma: no cover - compiled
    """Keep this step's marks (``w.marks``) as the previous step's (``w.prev``)."""
    m, pm = w.marks, w.prev
    for i in range(m.price.shape[0]):
        pm.price[i] = m.price[i]
        pm.delta[i] = m.delta[i]
        pm.gamma[i] = m.gamma[i]
        pm.vega[i] = m.vega[i]
        pm.theta[i] = m.theta[i]
        pm.vol[i] = m.vol[i]


# -- 2. controller state, P&L mark, toxicity, layers ------------------------------------------------


@njit(cache=True, error_model="numpy")
def _revalue(k, ins, pricing, marks, spot_k, ctl, grid, dt_years, fd):  # pragma: no cover - compiled
    """The controller's scenario grid at step ``k``'s market (sticky strike: each contract keeps its
    implied vol, plus the vol shock): one contract's P&L per cell, the cells, the worst losses. Reads
    the chain, the step's pricing inputs and marks, the spots ``spot_k``; writes ``ctl`` (cf's cells,
    cells, stock cells, the worst losses) using ``grid`` as scratch; an American option on cash
    dividends by :func:`_fd_cells` (``fd``)."""
    cf, ust, cells, stock_cells = ctl.cf, ctl.ust, ctl.cells, ctl.stock_cells
    nu = ust.shape[0] - 1
    n_g = ctl.shock_spot.shape[0]
    for r in range(cells.shape[0]):
        for g in range(n_g):
            cells[r, g] = 0.0
    for u in range(nu):
        for g in range(n_g):
            stock_cells[u, g] = spot_k[u] * ctl.shock_spot[g]
            cells[u, g] = ust[u, ck.USTOCK] * stock_cells[u, g]
    n_inst = ins.u.shape[0]
    for g in range(n_g):  # one cell of every instrument at once, in the pricing kernel's SIMD block
        for i in range(n_inst):
            grid.spot[i] = spot_k[ins.u[i]] * (1.0 + ctl.shock_spot[g]) - pricing.div_pv[i]
            grid.vol[i] = max(marks.vol[i] + ctl.shock_vol[g], 0.0)
        _price_block(
            grid.spot, ins.strike, pricing.t_years, pricing.rate, pricing.div_yield, grid.vol,
            pricing.is_call, grid.price,
        )  # fmt: skip
        for i in range(n_inst):
            c = ins.contract[i]
            if c < 0 or fd.row[i] >= 0:
                continue
            if ins.american[i]:  # the boundary engine's price (optmm.greeks._american)
                grid.price[i] = american_price(
                    grid.spot[i], ins.strike[i], pricing.t_years[i], pricing.rate[i], pricing.div_yield[i],
                    grid.vol[i], pricing.is_call[i], ins.scheme,
                )  # fmt: skip
            x = ins.mult[i] * (grid.price[i] - marks.price[i])
            cf[c, ck.CCELL + g] = x
            cells[ins.u[i], g] += cf[c, ck.CPOS] * x
    for i in range(n_inst):
        if fd.row[i] >= 0 and ins.contract[i] >= 0:
            _fd_cells(k, i, ins, pricing, marks, spot_k, ctl, dt_years, fd)
    ck.cell_bounds(cf)
    for g in range(n_g):
        tot = 0.0
        for u in range(nu):
            tot += cells[u, g]
        cells[nu, g] = tot
    for r in range(cells.shape[0]):
        ck.worst_cell(cells, r, ust)


@_phase
def _refresh_risk(k, now, ins, und, mkt, ctl, tox, cfg, w, fd):  # pragma: no cover - compiled
    """The controller's state at step ``k`` (time ``now``, seconds). Reads the path, ``w.marks``;
    writes the realized variance (``w.und.rv2``), the toxicity detector's mids, the controller's
    spots, market-data time, per-contract Greeks (``w.contract_greeks`` as scratch), aggregates and,
    every ``scenario_every_steps``, its scenario grid (:func:`_revalue`)."""
    spot, ust, cf = mkt.spot, ctl.ust, ctl.cf
    for u in range(spot.shape[1]):
        sk = spot[k, u]
        if k > 0:
            arith = und.arith_vol_per_sqrt_s[u]
            r = math.log(sk / spot[k - 1, u]) if arith == 0.0 else (sk - spot[k - 1, u]) / spot[0, u]
            w.und.rv2[u] = cfg.rv_decay * w.und.rv2[u] + (1.0 - cfg.rv_decay) * r * r / cfg.dt_years
        ust[u, ck.USPOT] = sk
        ust[u, ck.ULAST] = now
        tox_on_mid(tox.fills, tox.mids, tox.trades, tox.ist, tox.fst, u, now, sk)
    m, s_in, x = w.marks, w.pricing.spot, w.contract_greeks
    pv = w.pricing.div_pv
    for i in range(ins.u.shape[0]):  # per-contract Greeks in trader units (a vector loop: contiguous rows)
        mult = ins.mult[i]
        s = s_in[i] + pv[i]  # the underlying's spot (s_in is escrowed)
        x.delta_shares[i] = mult * m.delta[i]
        x.gamma_dollars[i] = mult * m.gamma[i] * s * s / 100.0
        x.vega_points[i] = mult * m.vega[i] / 100.0
    for i in range(ins.u.shape[0]):
        c = ins.contract[i]
        if c >= 0:
            cf[c, ck.CDELTA] = x.delta_shares[i]
            cf[c, ck.CGAMMA] = x.gamma_dollars[i]
            cf[c, ck.CVEGA] = x.vega_points[i]
    agg = w.aggregates
    ck.aggregate(cf, ust, agg)  # the controller's aggregates (and their gross, unused here)
    for u in range(spot.shape[1]):
        ust[u, ck.UDELTA] = agg[u, 0]
        ust[u, ck.UGAMMA] = agg[u, 1]
        ust[u, ck.UVEGA] = agg[u, 2]
    if cf.shape[0] > 0 and k % cfg.scenario_every_steps == 0:
        _revalue(k, ins, w.pricing, m, spot[k], ctl, w.grid, cfg.dt_years, fd)


@_phase
def _mark_pnl(k, ctl, out):  # pragma: no cover - compiled
    """The day's P&L so far (the tally's ``cum_pnl``, marked at this step's fair values) through the
    controller's P&L kill (:func:`optmm.risk._controller_kernels.mark_pnl`: its high-water mark into
    the tally, the daily loss and drawdown, the kill switch); a kill is an event and counts in the
    tally's ``kills``."""
    t = out.tally[0]
    t.high_water, m_code, value, hard = ck.mark_pnl(t.cum_pnl, t.high_water, ctl.ust)
    if m_code >= 0:
        _event(out.events, out.tally, E_KILL, k, m_code, value, hard, 0.0, 0.0, 0.0)
        t.kills += 1


@_phase
def _toxicity(k, now, tox, tp, ctl, cfg, out, w):  # pragma: no cover - compiled
    """The toxicity detector's score and latch per underlying at time ``now``: the score into
    ``w.und.toxicity``; with ``toxicity_pull``, a change of the latch flags the underlying in the
    controller (and is an event)."""
    for u in range(ctl.ust.shape[0] - 1):
        toxic, changed, score = tox_update(tox.fills, tox.mids, tox.trades, tox.ist, tox.fst, tp, u, now)
        w.und.toxicity[u] = score
        if cfg.toxicity_pull and changed:
            ctl.ust[u, ck.UTOXIC] = 1.0 if toxic else 0.0
            flag = 1.0 if toxic else 0.0
            _event(out.events, out.tally, E_TOXIC, k, u, flag, score, cfg.toxicity_threshold, 0.0, 0.0)


@_phase
def _layers(k, now, ctl, out, w):  # pragma: no cover - compiled
    """The controller's layer refresh at time ``now`` (:func:`optmm.risk._controller_kernels.layers_all`);
    a change is an event. ``w.layer_info[u]`` keeps ``(layer, trigger, measured, threshold, old
    layer)`` for the quotes of the step."""
    info = w.layer_info
    if ck.layers_all(now, ctl.ust, ctl.prm, info):
        for u in range(info.shape[0]):
            old, lay = info[u, ck.L_OLD], info[u, ck.L_LAYER]
            if lay != old:
                meas, thr = info[u, ck.L_MEAS], info[u, ck.L_THR]
                _event(out.events, out.tally, E_LAYER, k, u, old, lay, info[u, ck.L_TRIG], meas, thr)


# -- 3. quotes --------------------------------------------------------------------------------------


@_own
def _quote_pass(marks, pos, x, dec, qp, dst):  # pragma: no cover - compiled
    """The quoter on every instrument, a loop LLVM vectorizes: ``x`` its underlying's inputs
    (:class:`QuoteInputs`), ``dec`` the controller's decisions (layer, size caps, spread factor);
    writes ``dst``."""
    for i in range(marks.price.shape[0]):
        q = quote_one_squared(
            marks.price[i], marks.delta[i], marks.vega[i], pos[i],
            x.book_delta[i], x.book_vega[i], x.skew_sig2[i], x.skew_s2[i], x.realized_vol[i], x.toxicity[i],
            dec.layer[i], dec.cap_bid[i], dec.cap_ask[i], dec.spread[i], np.nan, np.nan, qp,
        )  # fmt: skip
        dst.bid[i] = q[0]
        dst.ask[i] = q[1]
        dst.bid_size[i] = q[2]
        dst.ask_size[i] = q[3]


@_phase
def _decide(k, ins, ctl, out, w):  # pragma: no cover - compiled
    """The controller's gate and pre-trade check of each wanted quote (``w.wanted``): decisions into
    ``w.decision`` and ``w.requote`` (1.0 where a decision changes the quote; the underlying's own
    quote is gated here, in ``w.wanted``), decision events. Returns how many quotes change."""
    q, dec, info = w.wanted, w.decision, w.layer_info
    n_again = 0
    for i in range(ins.u.shape[0]):
        u = ins.u[i]
        c = ins.contract[i]
        bs = q.bid_size[i]
        asz = q.ask_size[i]
        w.requote[i] = 0.0
        if c >= 0:
            # (info[u, j], not a row view: a view costs two atomic reference counts)
            lay, nb, na, spread, _trig, _hedge, flags = ck.decide_in_layer(
                c, bs, asz, int(info[u, 0]), int(info[u, 1]), info[u, 2], info[u, 3],
                ctl.cf, ctl.ust, ctl.cells, ctl.prm, w.aux,
            )  # fmt: skip
            if flags:
                _decision_event(out.events, out.tally, k, c, flags, lay, nb, na, w.aux, w.last_stat)
            dec.layer[i] = lay
            dec.cap_bid[i] = nb
            dec.cap_ask[i] = na
            dec.spread[i] = spread
            if not (lay == ck.NORMAL and nb == bs and na == asz and spread == 1.0):
                w.requote[i] = 1.0
                n_again += 1
        else:
            q.bid_size[i] = ck.gate_underlying(u, 1.0, bs, ctl.ust, ctl.prm)
            q.ask_size[i] = ck.gate_underlying(u, -1.0, asz, ctl.ust, ctl.prm)
            dec.layer[i] = ck.NORMAL
            dec.cap_bid[i] = np.inf
            dec.cap_ask[i] = np.inf
            dec.spread[i] = 1.0
    return n_again


@_phase
def _quote_with_quoter(k, ins, ctl, qp, out, w):  # pragma: no cover - compiled
    """The quoter's quotes under the controller, in three passes over the instruments: the wanted
    quotes, the controller's decisions on them (:func:`_decide`), the final quotes where a decision
    changed them; into ``w.wanted``. The quoter's passes are loops LLVM vectorizes (the quoter's
    settings are a tuple, not an array that the stores could alias), several instruments' quotes at
    once: a quote is a chain of divisions and roundings, and computed one at a time, most of the loop's
    cost."""
    x, ust = w.quote_inputs, ctl.ust
    for i in range(ins.u.shape[0]):  # the underlyings' inputs per instrument (no gathers below)
        u = ins.u[i]
        x.book_delta[i] = ust[u, ck.UDELTA]
        x.book_vega[i] = ust[u, ck.UVEGA]
        x.skew_sig2[i] = w.und.skew_sig2[u]
        x.skew_s2[i] = w.und.skew_s2[u]
        x.realized_vol[i] = w.und.realized_vol[u]
        x.toxicity[i] = w.und.toxicity[u]
    _quote_pass(w.marks, out.position, x, w.free, qp, w.wanted)
    if _decide(k, ins, ctl, out, w) > 0:
        # every instrument (into rows of their own: a store that keeps the old value unless ... is a
        # loop LLVM does not vectorize), kept where needed
        _quote_pass(w.marks, out.position, x, w.decision, qp, w.requoted)
        q, f = w.wanted, w.requoted
        for i in range(ins.u.shape[0]):
            if w.requote[i] != 0.0:
                q.bid[i] = f.bid[i]
                q.ask[i] = f.ask[i]
                q.bid_size[i] = f.bid_size[i]
                q.ask_size[i] = f.ask_size[i]


@_phase
def _quote_stoikov(k, now, ins, und, mkt, ctl, cfg, w):  # pragma: no cover - compiled
    """Avellaneda-Stoikov (``Q_AS``) or symmetric quotes around the spot, widened in the SOFT layer and
    gated by the controller (:func:`optmm.risk._controller_kernels.gate_underlying`); into ``w.wanted``."""
    ust, prm, q = ctl.ust, ctl.prm, w.wanted
    for i in range(ins.u.shape[0]):
        u = ins.u[i]
        sk = mkt.spot[k, u]
        if cfg.quoting == Q_AS:
            g = cfg.as_gamma
            sigma = und.arith_vol_per_sqrt_s[u]
            tau = cfg.horizon_s - now
            res = sk - ust[u, ck.USTOCK] * g * sigma * sigma * tau
            total_spread = g * sigma * sigma * tau + (2.0 / g) * math.log(1.0 + g / cfg.arrival_k)
        else:
            res = sk
            total_spread = cfg.symmetric_spread
        factor = prm[ck.P_SOFT_SPREAD] if ust[u, ck.ULAYER] == ck.SOFT else 1.0
        q.bid[i] = res - 0.5 * total_spread * factor
        q.ask[i] = res + 0.5 * total_spread * factor
        q.bid_size[i] = ck.gate_underlying(u, 1.0, cfg.quote_size, ust, prm)
        q.ask_size[i] = ck.gate_underlying(u, -1.0, cfg.quote_size, ust, prm)


@_own
def _quote(k, now, ins, und, mkt, ctl, cfg, qp, out, w):  # pragma: no cover - compiled
    """Step ``k``'s quotes into ``w.wanted``: the quoter's skew squares and realized vol per underlying
    (``w.und``), then the strategy's quotes."""
    for u in range(mkt.spot.shape[1]):  # per underlying: the skew's squares (the quoter's), realized vol
        sig = cfg.skew_sigma_annual if cfg.skew_sigma_annual > 0.0 else mkt.vol[k, u]
        w.und.skew_sig2[u], w.und.skew_s2[u] = skew_squares(sig, mkt.spot[k, u], qp)
        w.und.realized_vol[u] = math.sqrt(w.und.rv2[u])
    if cfg.quoting == Q_QUOTER:
        _quote_with_quoter(k, ins, ctl, qp, out, w)
    else:
        _quote_stoikov(k, now, ins, und, mkt, ctl, cfg, w)


@_phase
def _post_quotes(k, slot, cfg, out, w):  # pragma: no cover - compiled
    """Post step ``k``'s quotes (``w.wanted``; a side of size 0 is no quote: NaN price) into ring slot
    ``slot``, and into the quote window (``out.quotes``, with the fair value) when ``k`` is in it."""
    q, r = w.wanted, w.ring
    for i in range(q.bid.shape[0]):
        bid = q.bid[i]
        ask = q.ask[i]
        bs = q.bid_size[i]
        asz = q.ask_size[i]
        if not bs > 0.0:
            bid = np.nan
            bs = 0.0
        if not asz > 0.0:
            ask = np.nan
            asz = 0.0
        r.bid[slot, i] = bid
        r.ask[slot, i] = ask
        r.bid_size[slot, i] = bs
        r.ask_size[slot, i] = asz
        if cfg.quotes_from_step <= k < cfg.quotes_from_step + cfg.quotes_steps:
            qrow = out.quotes[k - cfg.quotes_from_step, i]
            qrow[QW_FAIR] = w.marks.price[i]
            qrow[QW_BID] = bid
            qrow[QW_ASK] = ask
            qrow[QW_BSIZE] = bs
            qrow[QW_ASIZE] = asz


# -- 4. orders and fills ----------------------------------------------------------------------------


@_phase
def _market_orders(k, live, ins, dr, cfg, w):  # pragma: no cover - compiled
    """The step's uninformed orders against the live quotes (ring slot ``live``), into ``w.orders``
    from row 0: an order reaches a quote at distance d from fair value (on side 0, it hits our bid; 1,
    it lifts our offer) within a step with probability p = 1 - exp(-lambda dt) (``poisson``) or
    min(lambda dt, 1), lambda dt = A dt exp(-k d); it does iff the step's uniform draw is below p. At
    d >= 0, p is at most its value at d = 0: a draw at or above that needs no exp. Returns the number
    of orders and of quoted sides."""
    adt = (cfg.a_dt_bid, cfg.a_dt_ask)
    p_at_fair = (-math.expm1(-adt[0]), -math.expm1(-adt[1])) if cfg.poisson else adt
    r, o, price = w.ring, w.orders, w.marks.price
    n_quoted = 0.0
    n_ord = 0
    for i in range(ins.u.shape[0]):
        for side in range(2):
            s = 1.0 if side == 0 else -1.0  # +1: our bid is hit, we buy
            qp_ = r.bid[live, i] if side == 0 else r.ask[live, i]
            qs = r.bid_size[live, i] if side == 0 else r.ask_size[live, i]
            if not qs > 0.0:
                continue
            n_quoted += 1.0
            dist = s * (price[i] - qp_)
            x = dr.arrive[k, i, side]
            if not x < p_at_fair[side] and dist >= 0.0:
                continue
            lam_dt = adt[side] * math.exp(-cfg.arrival_k * dist)
            if not x < (-math.expm1(-lam_dt) if cfg.poisson else lam_dt):
                continue
            o.inst[n_ord] = i
            o.side[n_ord] = s
            mean = cfg.order_size_mean
            o.size[n_ord] = 1.0 + _poisson_quantile(dr.size[k, i, side], mean - 1.0) if mean > 1.0 else 1.0
            o.informed[n_ord] = 0.0
            n_ord += 1
    return n_ord, n_quoted


@_phase
def _informed_orders(k, n_ord, ins, mkt, und, dr, cfg, w, fd):  # pragma: no cover - compiled
    """The step's informed orders, one chance per underlying, into ``w.orders`` from row ``n_ord``:
    each on a random instrument of the underlying's chain, knowing its fair value
    ``informed_horizon_steps`` ahead (the smile at the path's spot and vol then, plus the contract's
    offset). Returns the number of orders."""
    n_steps = mkt.spot.shape[0] - 1
    o = w.orders
    for u in range(mkt.spot.shape[1]):
        n_u = ins.u_count[u]
        if n_u == 0 or not dr.informed[k, u] < cfg.informed_rate_per_s * cfg.dt_s:
            continue
        i = ins.u_first[u] + min(int(dr.pick[k, u] * n_u), n_u - 1)
        kf = min(k + cfg.informed_horizon_steps, n_steps)
        sf = mkt.spot[kf, u]
        if ins.kind[i] == K_UNDERLYING:
            future = sf
        else:
            x = w.pricing.ln_strike[i] - math.log(sf)
            vf = _smile_vol(mkt.vol[kf, u], und.smile_slope[u], und.smile_curvature[u], x, ins.vol_offset[i])
            t_f = ins.t0_years[i] - kf * cfg.dt_years
            call = w.pricing.is_call[i]
            if fd.row[i] >= 0:  # (on the full spot: the engine escrows it)
                future = _fd_future(i, kf, sf, vf, t_f, ins, und, cfg.dt_years, fd)
            else:
                if ins.div_pv0[i] != 0.0:
                    sf -= _dividend_pv(ins.div_pv0[i], und.rate[u] - und.div_yield[u], kf * cfg.dt_years)
                if ins.american[i]:
                    future = american_price(
                        sf, ins.strike[i], t_f, und.rate[u], und.div_yield[u], vf, call, ins.scheme
                    )
                else:
                    future = bsm_price(sf, ins.strike[i], t_f, und.rate[u], und.div_yield[u], vf, call)
        o.inst[n_ord] = i
        o.side[n_ord] = 0.0
        o.size[n_ord] = cfg.informed_size
        o.informed[n_ord] = 1.0
        o.future[n_ord] = future
        n_ord += 1
    return n_ord


@_phase
def _tape_orders(k, live, ins, tf, dr, cfg, w):  # pragma: no cover - compiled
    """The step's orders from a tape (``tf``), into ``w.orders`` from row 0. With trades
    (``R_TRADES``): each of the step's trades in an instrument of the chain that trades at or through
    our live quote (ring slot ``live``; its size as posted) by :func:`trade_fill`, an order of the
    trade's size on that side, at our price (:func:`_fills` caps it at the size left on the quote, as
    ``trade_fill`` would on the size left, and drops it when none is). With quotes only: per instrument, what
    :func:`quote_fill` fills against the recorded touch with the step's draws (``dr.arrive``), an
    order of that size at the rule's price. Returns the number of orders and of quoted sides."""
    r, o = w.ring, w.orders
    n_quoted = 0.0
    for i in range(ins.u.shape[0]):
        n_quoted += (1.0 if r.bid_size[live, i] > 0.0 else 0.0) + (1.0 if r.ask_size[live, i] > 0.0 else 0.0)
    n_ord = 0
    if cfg.replay == R_TRADES:
        for j in range(tf.lo[k], tf.hi[k]):
            i = tf.inst[j]
            if i < 0:
                continue
            bid, bs, ask, asz = r.bid[live, i], r.bid_size[live, i], r.ask[live, i], r.ask_size[live, i]
            bq, bpx, aq, apx = trade_fill(bid, bs, ask, asz, tf.price[j], tf.size[j], tf.side[j])
            if not (bq > 0.0 or aq > 0.0):
                continue
            o.inst[n_ord] = i
            o.side[n_ord] = 1.0 if bq > 0.0 else -1.0
            o.size[n_ord] = tf.size[j]
            o.informed[n_ord] = 0.0
            o.price[n_ord] = bpx if bq > 0.0 else apx
            n_ord += 1
    else:
        for i in range(ins.u.shape[0]):
            bq, bpx, aq, apx = quote_fill(
                r.bid[live, i], r.bid_size[live, i], r.ask[live, i], r.ask_size[live, i],
                tf.bid[k, i], tf.ask[k, i], tf.bid_size[k, i], tf.ask_size[k, i],
                dr.arrive[k, i, 0], dr.arrive[k, i, 1], tf.fp,
            )  # fmt: skip
            for s, q, px in ((1.0, bq, bpx), (-1.0, aq, apx)):
                if q > 0.0:
                    o.inst[n_ord] = i
                    o.side[n_ord] = s
                    o.size[n_ord] = q
                    o.informed[n_ord] = 0.0
                    o.price[n_ord] = px
                    n_ord += 1
    return n_ord, n_quoted


@_inline
def _record_order(out, k, i, s, size, px):  # pragma: no cover - compiled
    """An order that reached our live quote into ``out.orders`` (full: count it only)."""
    t = out.tally[0]
    if t.orders < out.orders.shape[0]:
        row = out.orders[t.orders]
        row[O_STEP] = k
        row[O_INST] = i
        row[O_SIDE] = s
        row[O_SIZE] = size
        row[O_PRICE] = px
    t.orders += 1


@njit(cache=True, error_model="numpy")
def _fill(k, now, i, s, want, px, informed, order, ins, mkt, ctl, tox, out, w):  # pragma: no cover
    """A market order of ``order`` reaching our quote at ``px`` on side ``s`` (+1 we buy) of instrument
    ``i`` wanting ``want``: the pre-trade check at the current state, then the fill's bookkeeping (the
    controller, the position, the toxicity detector, ``out.fills``; the tally's fills, breaches,
    events and cash). Returns ``(spread capture, size filled)``."""
    u = ins.u[i]
    c = ins.contract[i]
    sk = mkt.spot[k, u]
    cf, ust, t = ctl.cf, ctl.ust, out.tally[0]
    tox_on_trade(tox.fills, tox.mids, tox.trades, tox.ist, tox.fst, u, now, order, -s)
    if c >= 0:
        bid_req = want if s > 0.0 else 0.0
        ask_req = want if s < 0.0 else 0.0
        lay, nb, na, _spread, _trig, _hedge, flags = ck.decide_one(
            c, bid_req, ask_req, now, cf, ust, ctl.cells, ctl.prm, w.aux
        )
        if flags:
            _decision_event(out.events, out.tally, k, c, flags, lay, nb, na, w.aux, w.last_stat)
        q = nb if s > 0.0 else na
    else:
        q = ck.gate_underlying(u, s, want, ust, ctl.prm)
    if not q > 0.0:
        return 0.0, 0.0
    m = ins.mult[i]
    fair = w.marks.price[i]
    delta = w.marks.delta[i]
    # the pre-trade metrics before and after (a quote in the underlying itself has no contract position)
    before = ck.pretrade_values(cf[c, ck.CPOS] if c >= 0 else 0.0, u, ust)
    if c >= 0:
        ck.apply_fill(c, s * q, cf, ust, ctl.cells)
        out.position[i] += s * q
        side_delta = 1.0 if s * delta > 0.0 else (-1.0 if s * delta < 0.0 else 0.0)
        if side_delta != 0.0:
            size = q * abs(delta) * m
            tox_on_fill(tox.fills, tox.mids, tox.trades, tox.ist, tox.fst, u, now, side_delta, size, sk, sk)
    else:
        ck.apply_hedge(u, s * q * m, ctl.stock_cells, ust, ctl.cells)
        out.position[i] += s * q
        tox_on_fill(tox.fills, tox.mids, tox.trades, tox.ist, tox.fst, u, now, s, q * m, px, sk)
    after = ck.pretrade_values(cf[c, ck.CPOS] if c >= 0 else 0.0, u, ust)
    limit = ck.pretrade_limits(u, ust)
    for j in range(ck.N_PRETRADE):  # a fill that takes a metric past its hard limit, away from 0
        if abs(after[j]) > limit[j] and abs(after[j]) > abs(before[j]):
            t.breaches += 1
    if t.fills < out.fills.shape[0]:
        f = out.fills[t.fills]
        f[F_STEP] = k
        f[F_INST] = i
        f[F_SIDE] = s
        f[F_SIZE] = q
        f[F_PRICE] = px
        f[F_FAIR] = fair
        f[F_INFORMED] = informed
        f[F_FAIR_H] = np.nan
    t.fills += 1
    t.cash += -s * q * px * m
    return s * (fair - px) * q * m, q


@_own
def _fills(k, now, live, n_ord, ins, mkt, ctl, tox, out, w):  # pragma: no cover - compiled
    """Each of the step's ``n_ord`` orders (``w.orders``) against the quotes left in ring slot ``live``
    (an informed order lifts our ask if the fair value it foresees is above it, hits our bid if below,
    else does not trade), filled by :func:`_fill`; a fill takes its size off the quote, and an informed
    fill flags its underlying (``w.und.informed_fill``: the step's hedge meets a leaked mid,
    :func:`_hedge`). Returns the step's spread capture and number of fills."""
    r, o = w.ring, w.orders
    spread_k = 0.0
    n_fills_k = 0.0
    for j in range(n_ord):
        i = int(o.inst[j])
        if o.informed[j] == 0.0:
            s = o.side[j]
        elif r.ask_size[live, i] > 0.0 and o.future[j] > r.ask[live, i]:
            s = -1.0
        elif r.bid_size[live, i] > 0.0 and o.future[j] < r.bid[live, i]:
            s = 1.0
        else:
            continue
        px = r.bid[live, i] if s > 0.0 else r.ask[live, i]
        if o.price[j] == o.price[j]:  # (a replayed order's own price)
            px = o.price[j]
        qs = r.bid_size[live, i] if s > 0.0 else r.ask_size[live, i]
        order = o.size[j]
        if not qs > 0.0:  # (a replayed trade after our quote's size is gone: it does not reach us)
            continue
        _record_order(out, k, i, s, order, px)
        sc, filled = _fill(k, now, i, s, min(order, qs), px, o.informed[j], order, ins, mkt, ctl, tox, out, w)
        if filled > 0.0:
            if s > 0.0:
                r.bid_size[live, i] -= filled
            else:
                r.ask_size[live, i] -= filled
            n_fills_k += 1.0
            if o.informed[j] != 0.0:
                w.und.informed_fill[ins.u[i]] = 1.0
        spread_k += sc
    return spread_k, n_fills_k


# -- 5. hedge, 6. record ----------------------------------------------------------------------------


@_phase
def _hedge(k, now, mkt, und, ctl, cfg, hp, out, w):  # pragma: no cover - compiled
    """The hedger's decision for every underlying on the net delta after the fills (with ``hedge`` off,
    only the controller's orders: flatten on KILL, hedge on HARD), executed at the hedger's fill price:
    the controller's stock, ``out.hedges``, the tally's hedges and cash, ``w.und.next_hedge_s``. Returns
    the step's hedge cost.

    Price discovery: in a step with an informed fill on the underlying (``w.und.informed_fill``, reset
    here), its hedge trades around a mid moved toward the spot the informed orders foresee,
    ``s_k + informed_leak · (s_{k+h} − s_k)`` (``h = informed_horizon_steps``, capped at the last
    step); the decision is on the observed spot ``s_k``, and the cost is counted against it, so the
    leak is part of the hedge cost."""
    ust, t = ctl.ust, out.tally[0]
    hcost = 0.0
    for u in range(mkt.spot.shape[1]):
        leaked = w.und.informed_fill[u] != 0.0 and cfg.informed_leak > 0.0
        w.und.informed_fill[u] = 0.0
        lay = int(ust[u, ck.ULAYER])
        if not (cfg.hedge or lay == ck.KILL or lay == ck.HARD):
            continue
        sk = mkt.spot[k, u]
        hs = und.half_spread[u]
        due = w.und.next_hedge_s[u]
        res = hedge_decide(ust[u, ck.UDELTA], ust[u, ck.UGAMMA], sk, sk - hs, sk + hs, now, lay, due, hp)
        shares = res[0]
        w.und.next_hedge_s[u] = res[4]
        if shares == 0.0:
            continue
        mid = sk
        if leaked:
            kf = min(k + cfg.informed_horizon_steps, mkt.spot.shape[0] - 1)
            mid = sk + cfg.informed_leak * (mkt.spot[kf, u] - sk)
        px = hedge_fill(shares, mid, 2.0 * hs, hp)[0]
        cost = hedge_cost(shares, px, sk)
        hcost += cost
        t.cash -= shares * px
        ck.apply_hedge(u, shares, ctl.stock_cells, ust, ctl.cells)
        if t.hedges < out.hedges.shape[0]:
            h = out.hedges[t.hedges]
            h[H_STEP] = k
            h[H_U] = u
            h[H_SHARES] = shares
            h[H_PRICE] = px
            h[H_MID] = sk
            h[H_COST] = cost
            h[H_REASON] = res[3]
        t.hedges += 1
    return hcost


@_phase
def _record(k, spread_k, hcost, n_fills_k, n_quoted, mkt, ctl, out, w):  # pragma: no cover - compiled
    """Step ``k``'s row (``out.steps``: spread capture, hedge cost, counts, the book's Greeks) and its
    underlyings' (``out.underlyings``); keeps the spots and stock for the next step's attribution
    (``w.und``); this step's spread capture and hedge cost count in the tally's ``cum_pnl`` now (the
    inventory part at the next step)."""
    ust = ctl.ust
    row = out.steps[k]
    row[ST_SPREAD] = spread_k
    row[ST_HCOST] = hcost
    row[ST_NFILLS] = n_fills_k
    row[ST_NQUOTED] = n_quoted
    bd = 0.0
    bg = 0.0
    bv = 0.0
    for u in range(mkt.spot.shape[1]):
        un = out.underlyings[k, u]
        un[UN_SPOT] = mkt.spot[k, u]
        un[UN_VOL] = mkt.vol[k, u]
        un[UN_DELTA] = ust[u, ck.UDELTA]
        un[UN_GAMMA] = ust[u, ck.UGAMMA]
        un[UN_VEGA] = ust[u, ck.UVEGA]
        un[UN_STOCK] = ust[u, ck.USTOCK]
        un[UN_LAYER] = ust[u, ck.ULAYER]
        un[UN_TOX] = w.und.toxicity[u]
        bd += ust[u, ck.UDELTA]
        bg += ust[u, ck.UGAMMA]
        bv += ust[u, ck.UVEGA]
        w.und.prev_spot[u] = mkt.spot[k, u]
        w.und.prev_stock[u] = ust[u, ck.USTOCK]
    row[ST_BDELTA] = bd
    row[ST_BGAMMA] = bg
    row[ST_BVEGA] = bv
    out.tally[0].cum_pnl += spread_k - hcost


# -- the loop ---------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", _nrt=False)
def run_path(ins, und, mkt, dr, tf, ctl, tox, cfg, qp, hp, tp, out, w, fd):  # pragma: no cover - compiled
    """Run one path (module docstring): ``ins`` :class:`Instruments`, ``und`` :class:`Underlyings`,
    ``mkt`` :class:`MarketPath`, ``dr`` :class:`Draws`, ``tf`` :class:`TapeFeed` (the orders' source
    when ``cfg.replay`` is not ``R_SYNTHETIC``), ``ctl`` :class:`Controller` (updated in place),
    ``tox`` the toxicity detector's state (``ToxicityState``, updated in place), ``cfg``
    :class:`Settings`, ``qp``, ``hp``, ``tp`` the quoter's, hedger's and toxicity detector's packed
    settings, ``out`` :class:`optmm.sim.records.Outputs`, ``w`` :class:`Workspaces`, ``fd``
    :class:`CashAmerican` (the American options on cash dividends and their tables). Returns a status
    (``OVER_*`` bits when a buffer overflowed: the caller enlarges it and runs again; the draws make
    the rerun identical)."""
    n_steps = mkt.spot.shape[0] - 1
    ring = cfg.latency_steps + 1
    _start(ins, und, mkt, out, w)
    for k in range(n_steps + 1):
        now = k * cfg.dt_s
        _market_step(k, ins, und, mkt, ctl, cfg, w, fd)
        _markouts(out, k, cfg.markout_steps, w.marks.price)
        if k > 0:
            _attribute(k, ins, mkt, cfg, out, w)
        if k == n_steps:
            break
        _roll_marks(w)
        _refresh_risk(k, now, ins, und, mkt, ctl, tox, cfg, w, fd)
        _mark_pnl(k, ctl, out)
        _toxicity(k, now, tox, tp, ctl, cfg, out, w)
        _layers(k, now, ctl, out, w)
        _quote(k, now, ins, und, mkt, ctl, cfg, qp, out, w)
        _post_quotes(k, k % ring, cfg, out, w)
        live = (k - cfg.latency_steps) % ring
        n_ord, n_quoted = k - k, 0.0  # int64, not the literal 0 (numba would compile _fills for it too)
        if k >= cfg.latency_steps and cfg.replay == R_SYNTHETIC:
            n_ord, n_quoted = _market_orders(k, live, ins, dr, cfg, w)
            n_ord = _informed_orders(k, n_ord, ins, mkt, und, dr, cfg, w, fd)
        elif k >= cfg.latency_steps:
            n_ord, n_quoted = _tape_orders(k, live, ins, tf, dr, cfg, w)
        spread_k, n_fills_k = _fills(k, now, live, n_ord, ins, mkt, ctl, tox, out, w)
        _markouts(out, k, cfg.markout_steps, w.marks.price)  # (a 0-step horizon)
        _layers(k, now, ctl, out, w)
        hcost = _hedge(k, now, mkt, und, ctl, cfg, hp, out, w)
        _layers(k, now, ctl, out, w)
        _record(k, spread_k, hcost, n_fills_k, n_quoted, mkt, ctl, out, w)
    for i in range(ins.u.shape[0]):
        out.fair_end[i] = w.marks.price[i]  # the last step's fair values
    t = out.tally[0]
    status = 0
    if t.fills > out.fills.shape[0]:
        status |= OVER_FILLS
    if t.hedges > out.hedges.shape[0]:
        status |= OVER_HEDGES
    if t.events > out.events.shape[0]:
        status |= OVER_EVENTS
    if t.orders > out.orders.shape[0]:
        status |= OVER_ORDERS
    return status


# -- the loop of a run without American options ----------------------------------------------------


def _no_american_marks_py(s, k, t, r, q, sigma, is_call, sch, rho):  # pragma: no cover - compiled
    """Stands for :func:`optmm.greeks._american.marks` in :data:`run_path_european` (never called)."""
    nan = math.nan
    return (nan, nan, nan, nan, nan, nan, nan, nan)


def _no_american_price_py(s, k, t, r, q, sigma, is_call, sch):  # pragma: no cover - compiled
    """Stands for :func:`optmm.greeks._american.price_scalar` in :data:`run_path_european`."""
    return math.nan


def _no_fd_marks_py(k, i, ins, p, vol, ctl, dt_s, dt_years, fd):  # pragma: no cover - compiled
    """Stands for :func:`_fd_marks` in :data:`run_path_european`."""
    nan = math.nan
    return nan, nan, nan, nan, nan


def _no_fd_cells_py(k, i, ins, pricing, marks, spot_k, ctl, dt_years, fd):  # pragma: no cover - compiled
    """Stands for :func:`_fd_cells` in :data:`run_path_european`."""


def _no_fd_future_py(i, kf, s, vol, t, ins, und, dt_years, fd):  # pragma: no cover - compiled
    """Stands for :func:`_fd_future` in :data:`run_path_european`."""
    return math.nan


def _european_loop():
    """:func:`run_path` compiled without the American engine, for a chain with no American option
    (every synthetic run, most runs from a market): the same code, with each of this module's
    kernels that reaches the engine's two entry points (named in its code, or through another such
    kernel) copied (:func:`optmm._jit.function_copy`, with its own compile options) to resolve them to
    stubs. The engine would add about ten seconds to the loop's first compilation."""
    kernels = {
        name: f
        for name, f in globals().items()
        if isinstance(f, CPUDispatcher) and f.py_func.__module__ == __name__
    }
    stubs = {
        "american_marks": _no_american_marks_py,
        "american_price": _no_american_price_py,
        "_fd_marks": _no_fd_marks_py,
        "_fd_cells": _no_fd_cells_py,
        "_fd_future": _no_fd_future_py,
    }
    reach = set(stubs)
    grown = True
    while grown:  # (the kernels that call one that reaches the engine reach it too)
        grown = False
        for name, f in kernels.items():
            if name not in reach and reach & set(f.py_func.__code__.co_names):
                reach.add(name)
                grown = True
    env = dict(globals())
    env.update({name: _inline(stub) for name, stub in stubs.items()})
    for name in (reach - stubs.keys()) & kernels.keys():
        f = kernels[name]
        options = {key: v for key, v in f.targetoptions.items() if key != "nopython"}
        env[name] = njit(cache=True, **options)(function_copy(f.py_func, suffix="_european", env=env))
    return env["run_path"]


run_path_european = _european_loop()
"""What the engine runs when no instrument is American (:func:`_european_loop`): :func:`run_path`'s
figures to the bit."""
