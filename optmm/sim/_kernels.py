"""The simulator's event loop: one compiled call runs one path, every step of it.

Per step ``k`` (time ``k · dt``), in this order (docs/simulation.md, "The loop"):

1. market data: spot and vol of every underlying at step ``k``; fair value and Greeks of every
   instrument (one SIMD block of :func:`optmm.greeks._bsm._greeks_block`, five outputs); the previous step's
   inventory P&L is attributed (delta, gamma, vega, theta, residual) now that both ends are known;
2. the controller's state is refreshed in place (per-contract Greeks, aggregates, spots, market-data
   time; the worst-scenario grid every ``scenario_every_s``), the day's P&L is marked (daily loss
   and drawdown may throw the kill switch), the toxicity detector sees the mid and updates its latch
   (which, when ``toxicity_pull``, flags the underlying toxic), and every underlying's layer is
   re-evaluated;
3. quotes, in passes over the instruments: the quoter's wanted quotes (a vector loop), the
   controller's gate and pre-trade check of each (:func:`optmm.risk._controller_kernels.decide_in_layer`),
   the final quotes where a decision changed them (a vector loop); they reach the market
   ``latency_steps`` steps later;
4. fills: an uninformed market order reaches a live quote at distance ``δ`` from fair value when the
   step's uniform draw for it is below ``1 − exp(−λ·dt)`` (or ``min(λ·dt, 1)``),
   ``λ(δ) = A·exp(−k·δ)``; informed orders trade against us when the fair value
   ``informed_horizon_s`` ahead is through our quote; every fill passes the pre-trade check again at
   the state it meets (so no fill of ours takes a position or Greek past a hard limit), updates the
   inventory, the controller (:func:`apply_fill`) and the toxicity detector;
5. hedge: the hedger's decision for every underlying on the net delta after the fills;
6. record.

Random numbers are never drawn here: the caller passes them in (``draws``).

Events for the audit trail are written to ``events`` (rows of :data:`NE` floats) and replayed by the
Python side through the controller (:meth:`optmm.risk.RiskController.replay_events`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from optmm.greeks._bsm import _greeks_block, _price_block
from optmm.greeks._bsm import bsm_price_scalar as bsm_price
from optmm.quoting._kernels import hedge_cost, hedge_decide, hedge_fill, quote_one_squared, skew_squares
from optmm.quoting._toxicity_kernels import tox_on_fill, tox_on_mid, tox_on_trade, tox_update
from optmm.risk import _controller_kernels as ck

# instrument kinds
K_PUT, K_CALL, K_UNDERLYING = 0, 1, 2

# sp: the run's parameters
(
    SP_DT_S,
    SP_DT_Y,
    SP_K,
    SP_LAT,
    SP_INF_RATE,
    SP_INF_H,
    SP_INF_SIZE,
    SP_QUOTING,
    SP_HEDGE,
    SP_TOXPULL,
    SP_AS_GAMMA,
    SP_SYM_SPREAD,
    SP_QSIZE,
    SP_HORIZON_S,
    SP_SCEN_EVERY,
    SP_SIGMA_S,
    SP_RV_DECAY,
    SP_Q_FROM,
    SP_Q_LEN,
    SP_TOX_THR,
    SP_SIZE_MEAN,
    SP_ADT_BID,
    SP_ADT_ASK,
    SP_POISSON,
    SP_MARKOUT,
) = range(25)
NSP = 25
Q_QUOTER, Q_AS, Q_SYMMETRIC = 0, 1, 2

# st_out columns (per step)
(
    ST_SPREAD,
    ST_DELTA,
    ST_GAMMA,
    ST_VEGA,
    ST_THETA,
    ST_RESID,
    ST_HCOST,
    ST_PNL,
    ST_BDELTA,
    ST_BGAMMA,
    ST_BVEGA,
    ST_NFILLS,
    ST_NQUOTED,
) = range(13)
NST = 13
# un_out columns (per step and underlying)
UN_SPOT, UN_VOL, UN_DELTA, UN_GAMMA, UN_VEGA, UN_STOCK, UN_LAYER, UN_TOX = range(8)
NUN = 8
# fills rows
# (F_FAIR_H: the instrument's fair value SP_MARKOUT steps after the fill, NaN past the last step)
F_STEP, F_INST, F_SIDE, F_SIZE, F_PRICE, F_FAIR, F_INFORMED, F_FAIR_H = range(8)
NF = 8
# hedges rows
H_STEP, H_U, H_SHARES, H_PRICE, H_MID, H_COST, H_REASON = range(7)
NH = 7
# events rows: the controller's EV_* layout (optmm.risk._controller_kernels), with the step in place
# of the time
E_DECIDE, E_LAYER, E_TOXIC, E_KILL = ck.EV_DECIDE, ck.EV_LAYER, ck.EV_TOXIC, ck.EV_KILL
NE = ck.NEV
# quote window rows
QW_FAIR, QW_BID, QW_ASK, QW_BSIZE, QW_ASIZE = range(5)
NQW = 5
# workspaces the caller allocates (run_path needs no runtime): rows of wi (per instrument), of wu (per
# underlying), of wx (the controller's aux of a decision; the count of breaches)
NWI, NWU, NWX = 45, 9, 2


def workspaces(n_inst: int, nu: int, n_contracts: int, latency_steps: int) -> tuple[np.ndarray, ...]:
    """``(wi, wb, wu, wr, wc, wx, wl, wo)`` for :func:`run_path` (contents set by it); ``wo`` holds a
    step's orders: at most one per instrument and side, and one informed per underlying."""
    return (
        np.empty((NWI, n_inst)),
        np.empty(n_inst, dtype=np.bool_),
        np.empty((NWU, nu)),
        np.empty((4, latency_steps + 1, n_inst)),
        np.empty((n_contracts, 4)),
        np.zeros((NWX, ck.NAUX)),
        np.empty((nu, 10)),
        np.zeros((2 * n_inst + nu, 5)),
    )


# returned status bits
OVER_FILLS, OVER_HEDGES, OVER_EVENTS = 1, 2, 4

VOL_FLOOR = 0.01  # implied vols are floored at one vol point


@njit(cache=True, inline="always", error_model="numpy")
def _event(events, n_ev, cap, typ, step, a, b, c, d, e, f):  # pragma: no cover - compiled
    if n_ev < cap:
        row = events[n_ev]
        row[0] = typ
        row[1] = step
        row[2] = a
        row[3] = b
        row[4] = c
        row[5] = d
        row[6] = e
        row[7] = f
    return n_ev + 1


@njit(cache=True, inline="always", error_model="numpy")
def _decision_event(events, n_ev, cap, step, c, flags, lay, nb, na, aux, last_stat):  # pragma: no cover
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
        return n_ev
    if n_ev < cap:
        row = events[n_ev]
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
    return n_ev + 1


@njit(cache=True, inline="always", error_model="numpy")
def _smile_vol(vol_t, slope, curvature, x):  # pragma: no cover - compiled
    """Implied vol at log-moneyness ``x = ln K − ln S``: ``vol_t + slope·x + curvature·x²``, floored."""
    return max(vol_t + slope * x + curvature * x * x, VOL_FLOOR)


@njit(cache=True, inline="always", error_model="numpy")
def _quote_pass(
    price, delta, vega, pos, x_und, lay, cap_b, cap_a, spread, qp, o_bid, o_ask, o_bs, o_as
):  # pragma: no cover - compiled
    """The quoter on every instrument, a loop LLVM vectorizes: ``x_und`` the rows of its underlying's
    inputs (book delta and vega, the squares of the skew's sigma and spot, realized vol, toxicity),
    ``lay``, ``cap_b``, ``cap_a``, ``spread`` the controller's layer, size caps and spread factor."""
    bd, bv, sig2, s2, rv, tox = x_und
    for i in range(price.shape[0]):
        w = quote_one_squared(
            price[i],
            delta[i],
            vega[i],
            pos[i],
            bd[i],
            bv[i],
            sig2[i],
            s2[i],
            rv[i],
            tox[i],
            lay[i],
            cap_b[i],
            cap_a[i],
            spread[i],
            np.nan,
            np.nan,
            qp,
        )
        o_bid[i] = w[0]
        o_ask[i] = w[1]
        o_bs[i] = w[2]
        o_as[i] = w[3]


@njit(cache=True, inline="always", error_model="numpy")
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


@njit(cache=True, inline="always", error_model="numpy")
def _markouts(fills, n_mk, n_f, k, h, price):  # pragma: no cover - compiled
    """Record, for the fills from ``n_mk`` on made ``h`` steps or more before step ``k``, the fair value
    at step ``k`` (``price``): called at every step, each gets the one ``h`` steps after it."""
    while n_mk < n_f and fills[n_mk, F_STEP] + h <= k:
        fills[n_mk, F_FAIR_H] = price[int(fills[n_mk, F_INST])]
        n_mk += 1
    return n_mk


@njit(cache=True, inline="always", error_model="numpy")
def _layers(step, now, ust, prm, events, n_ev, cap, info):  # pragma: no cover - compiled
    """Re-evaluate every underlying's layer; a change is recorded (as the controller's layers_all).
    ``info[u]`` keeps ``(layer, trigger, measured, threshold)`` for the quotes of the step."""
    for u in range(ust.shape[0] - 1):
        lay, trig, meas, thr = ck.underlying_layer(u, now, ust, prm)
        info[u, 0] = lay
        info[u, 1] = trig
        info[u, 2] = meas
        info[u, 3] = thr
        if lay != ust[u, ck.ULAYER]:
            n_ev = _event(events, n_ev, cap, E_LAYER, step, u, ust[u, ck.ULAYER], lay, trig, meas, thr)
            ust[u, ck.ULAYER] = lay
    return n_ev


@njit(cache=True, inline="always", error_model="numpy")
def _gate_underlying(u, s, q, ust, prm):  # pragma: no cover - compiled
    """Size allowed on side ``s`` (+1 buy) of a quote in the underlying itself: the layer's rule and
    the pre-trade check on the underlying's delta in shares (its hard limit)."""
    lay = int(ust[u, ck.ULAYER])
    if lay <= ck.STALE or q <= 0.0:
        return 0.0
    d = ust[u, ck.UDELTA]
    hard = ust[u, ck.UHARD + ck.M_DELTA_SHARES]
    if lay == ck.HARD and not (s * d < 0.0):
        return 0.0
    if lay == ck.SOFT:
        q = max(math.floor(q * prm[ck.P_SOFT_SIZE]), 1.0) if q >= 1.0 else q * prm[ck.P_SOFT_SIZE]
    room = hard - s * d  # shares that can still be added on this side
    if q > room:
        q = math.floor(room) if room >= 1.0 else 0.0
    return q


@njit(cache=True, error_model="numpy")
def _revalue(
    i_u,
    i_c,
    i_strike,
    t_now,
    r_in,
    q_in,
    is_call,
    i_mult,
    iv,
    price,
    spot_k,
    cf,
    ust,
    cells,
    stock_cells,
    shock_s,
    shock_v,
    tmp_s,
    tmp_v,
    tmp_p,
):  # pragma: no cover - compiled
    """The controller's scenario grid at the current market (sticky strike: each contract keeps its
    implied vol, plus the vol shock): one contract's P&L per cell, the cells, the worst losses."""
    nu = ust.shape[0] - 1
    n_g = shock_s.shape[0]
    for r in range(cells.shape[0]):
        for g in range(n_g):
            cells[r, g] = 0.0
    for u in range(nu):
        for g in range(n_g):
            stock_cells[u, g] = spot_k[u] * shock_s[g]
            cells[u, g] = ust[u, ck.USTOCK] * stock_cells[u, g]
    n_inst = i_u.shape[0]
    for g in range(n_g):  # one cell of every instrument at once, in the pricing kernel's SIMD block
        for i in range(n_inst):
            tmp_s[i] = spot_k[i_u[i]] * (1.0 + shock_s[g])
            tmp_v[i] = max(iv[i] + shock_v[g], 0.0)
        _price_block(tmp_s, i_strike, t_now, r_in, q_in, tmp_v, is_call, tmp_p)
        for i in range(n_inst):
            c = i_c[i]
            if c < 0:
                continue
            x = i_mult[i] * (tmp_p[i] - price[i])
            cf[c, ck.CCELL + g] = x
            cells[i_u[i], g] += cf[c, ck.CPOS] * x
    for g in range(n_g):
        tot = 0.0
        for u in range(nu):
            tot += cells[u, g]
        cells[nu, g] = tot
    for r in range(cells.shape[0]):
        ck._worst(cells, r, ust)


@njit(cache=True, error_model="numpy", _nrt=False)
def run_path(
    i_u,
    i_kind,
    i_strike,
    i_t0,
    i_mult,
    i_c,
    rate,
    div,
    half_spread,
    slope,
    curv,
    arith,
    spot,
    vol,
    d_arrive,
    d_size,
    d_inf,
    d_pick,
    u_first,
    u_count,
    sp,
    qp,
    hp,
    tp,
    cf,
    ust,
    prm,
    cells,
    stock_cells,
    shock_s,
    shock_v,
    fills_t,
    mids_t,
    trades_t,
    ist_t,
    fst_t,
    st_out,
    un_out,
    fills,
    hedges,
    events,
    qwin,
    fair_end,
    counts,
    pos,
    cash_out,
    wi,
    wb,
    wu,
    wr,
    wc,
    wx,
    wl,
    wo,
):  # pragma: no cover - compiled
    """Run one path (module docstring). Returns a status (``OVER_*`` bits when a buffer overflowed:
    the caller enlarges it and runs again; the draws make the rerun identical)."""
    n_steps = spot.shape[0] - 1
    n_inst = i_u.shape[0]
    nu = spot.shape[1]
    b = nu
    dt_s = sp[SP_DT_S]
    dt_y = sp[SP_DT_Y]
    big_k = sp[SP_K]
    lat = int(sp[SP_LAT])
    inf_rate = sp[SP_INF_RATE]
    inf_h = int(sp[SP_INF_H])
    inf_size = sp[SP_INF_SIZE]
    quoting = int(sp[SP_QUOTING])
    hedge_on = sp[SP_HEDGE] != 0.0
    toxpull = sp[SP_TOXPULL] != 0.0
    as_gamma = sp[SP_AS_GAMMA]
    sym_spread = sp[SP_SYM_SPREAD]
    qsize = sp[SP_QSIZE]
    horizon_s = sp[SP_HORIZON_S]
    scen_every = int(sp[SP_SCEN_EVERY])
    sigma_cfg = sp[SP_SIGMA_S]
    rv_decay = sp[SP_RV_DECAY]
    q_from = int(sp[SP_Q_FROM])
    q_len = int(sp[SP_Q_LEN])
    tox_thr = sp[SP_TOX_THR]
    size_mean = sp[SP_SIZE_MEAN]
    markout_steps = sp[SP_MARKOUT]
    cap_f = fills.shape[0]
    cap_h = hedges.shape[0]
    cap_e = events.shape[0]
    n_f = 0
    n_h = 0
    n_ev = 0
    n_mk = 0  # the fills whose markout fair value is recorded

    # per-instrument state: current and previous step's values and Greeks
    # scratch: every array comes from the caller (``wi``, ``wb``, ``wu``, ``wr``, ``wc``), so that this
    # function needs no runtime (compiled with _nrt=False: no reference counting of the arrays passed
    # to the inlined quoter and controller functions, which costs an atomic operation per array
    # per call otherwise); rows of the workspaces are plain views
    s_in, t_in, r_in, q_in, iv = wi[0], wi[1], wi[2], wi[3], wi[4]
    price, delta, gamma, vega, theta, o5, o6, o7 = wi[5], wi[6], wi[7], wi[8], wi[9], wi[10], wi[11], wi[12]
    p_price, p_delta, p_gamma, p_vega, p_theta, p_iv = wi[13], wi[14], wi[15], wi[16], wi[17], wi[18]
    ln_k = wi[19]  # ln K of the options (the smile's log-moneyness is ln K - ln S)
    # a step's quotes: bid, ask, sizes; the controller's decision on them (layer, size caps, spread
    # factor) and whether it changes them (``q_again``)
    q_bid, q_ask, q_bs, q_as = wi[20], wi[21], wi[22], wi[23]
    q_lay, q_cap_b, q_cap_a, q_spread, q_again = wi[24], wi[25], wi[26], wi[27], wi[28]
    x_bd, x_bv, x_sig2, x_s2, x_rv, x_tox = wi[29], wi[30], wi[31], wi[32], wi[33], wi[34]
    f_bid, f_ask, f_bs, f_as = wi[35], wi[36], wi[37], wi[38]
    x_cd, x_cg, x_cv = wi[39], wi[40], wi[41]  # one contract's delta_shares, dollar gamma, vega
    c_normal, c_inf, c_one = wi[42], wi[43], wi[44]  # the wanted quotes' layer, size caps, spread
    is_call = wb
    for i in range(n_inst):
        is_call[i] = i_kind[i] == K_CALL
        r_in[i] = rate[i_u[i]]
        q_in[i] = div[i_u[i]]
        ln_k[i] = math.log(i_strike[i]) if i_kind[i] != K_UNDERLYING else 0.0
        c_normal[i] = ck.NORMAL
        c_inf[i] = np.inf
        c_one[i] = 1.0
    p_spot, p_stock, rv2, next_due, tox_score, sig2_u, s2_u, rvol_u, ln_s = (
        wu[0],
        wu[1],
        wu[2],
        wu[3],
        wu[4],
        wu[5],
        wu[6],
        wu[7],
        wu[8],
    )
    # the flow: an order reaches a quote at distance d from fair value (on side 0, it hits our bid;
    # 1, it lifts our offer) within a step with probability p = 1 - exp(-lambda dt) ("poisson") or
    # min(lambda dt, 1) ("linear"), lambda dt = A dt exp(-k d); it does iff the step's uniform draw
    # is below p. At d >= 0, p is at most its value at d = 0: a draw at or above that needs no exp
    adt = (sp[SP_ADT_BID], sp[SP_ADT_ASK])
    poisson = sp[SP_POISSON] != 0.0
    p_at_fair = (-math.expm1(-adt[0]), -math.expm1(-adt[1])) if poisson else adt
    ring = lat + 1
    r_bid, r_ask, r_bs, r_as = wr[0], wr[1], wr[2], wr[3]
    for j in range(ring):
        for i in range(n_inst):
            r_bid[j, i] = np.nan
            r_ask[j, i] = np.nan
            r_bs[j, i] = 0.0
            r_as[j, i] = 0.0
    last_stat = wc
    for c in range(last_stat.shape[0]):
        for j in range(4):
            last_stat[c, j] = -2.0
    aux = wx[0]
    linfo = wl[:, :4]  # per underlying: its layer as _layers found it (layer, trigger, measured, threshold)
    agg = wl[:, 4:]  # per underlying: the controller's aggregates (ck.aggregate)
    for u in range(nu):
        next_due[u] = -np.inf
        tox_score[u] = 0.0
        for j in range(4):
            linfo[u, j] = 0.0
    breaches = wx[1]
    breaches[0] = 0.0
    for u in range(nu):
        rv2[u] = vol[0, u] * vol[0, u]
    cash = 0.0
    cum = 0.0
    hwm = 0.0
    for i in range(n_inst):
        pos[i] = 0.0
    n_kill = 0

    for k in range(n_steps + 1):
        now = k * dt_s
        # -- 1. market data, fair values and Greeks ---------------------------------------------
        for u in range(nu):
            ln_s[u] = math.log(spot[k, u])
        for i in range(n_inst):
            u = i_u[i]
            sk = spot[k, u]
            s_in[i] = sk
            t_in[i] = i_t0[i] - k * dt_y
            if i_kind[i] != K_UNDERLYING:
                iv[i] = _smile_vol(vol[k, u], slope[u], curv[u], ln_k[i] - ln_s[u])
            else:
                iv[i] = 0.0
        _greeks_block(s_in, i_strike, t_in, r_in, q_in, iv, is_call, price, delta, gamma, vega, theta)
        for i in range(n_inst):
            if i_kind[i] == K_UNDERLYING:
                price[i] = s_in[i]
                delta[i] = 1.0
                gamma[i] = 0.0
                vega[i] = 0.0
                theta[i] = 0.0
        n_mk = _markouts(fills, n_mk, min(n_f, cap_f), k, markout_steps, price)
        # the previous step's inventory P&L, now that both ends are known
        if k > 0:
            row = st_out[k - 1]
            d_pnl = 0.0
            g_pnl = 0.0
            v_pnl = 0.0
            th_pnl = 0.0
            total = 0.0
            for u in range(nu):
                ds = spot[k, u] - p_spot[u]
                x = p_stock[u] * ds
                d_pnl += x
                total += x
            for i in range(n_inst):
                if i_kind[i] == K_UNDERLYING or pos[i] == 0.0:
                    continue
                u = i_u[i]
                qm = pos[i] * i_mult[i]
                ds = spot[k, u] - p_spot[u]
                d_pnl += qm * p_delta[i] * ds
                g_pnl += 0.5 * qm * p_gamma[i] * ds * ds
                v_pnl += qm * p_vega[i] * (iv[i] - p_iv[i])
                th_pnl += qm * p_theta[i] * dt_y
                total += qm * (price[i] - p_price[i])
            row[ST_DELTA] = d_pnl
            row[ST_GAMMA] = g_pnl
            row[ST_VEGA] = v_pnl
            row[ST_THETA] = th_pnl
            row[ST_RESID] = total - d_pnl - g_pnl - v_pnl - th_pnl
            row[ST_PNL] = row[ST_SPREAD] + total - row[ST_HCOST]
            cum += total
        if k == n_steps:
            break
        for i in range(n_inst):
            p_price[i] = price[i]
            p_delta[i] = delta[i]
            p_gamma[i] = gamma[i]
            p_vega[i] = vega[i]
            p_theta[i] = theta[i]
            p_iv[i] = iv[i]

        # -- 2. controller state, P&L mark, toxicity, layers --------------------------------------
        for u in range(nu):
            sk = spot[k, u]
            if k > 0:
                r = math.log(sk / spot[k - 1, u]) if arith[u] == 0.0 else (sk - spot[k - 1, u]) / spot[0, u]
                rv2[u] = rv_decay * rv2[u] + (1.0 - rv_decay) * r * r / dt_y
            ust[u, ck.USPOT] = sk
            ust[u, ck.ULAST] = now
            tox_on_mid(fills_t, mids_t, trades_t, ist_t, fst_t, u, now, sk)
        for i in range(n_inst):  # per-contract Greeks in trader units (a vector loop: contiguous rows)
            m = i_mult[i]
            x_cd[i] = m * delta[i]
            x_cg[i] = m * gamma[i] * s_in[i] * s_in[i] / 100.0
            x_cv[i] = m * vega[i] / 100.0
        for i in range(n_inst):
            c = i_c[i]
            if c >= 0:
                cf[c, ck.CDELTA] = x_cd[i]
                cf[c, ck.CGAMMA] = x_cg[i]
                cf[c, ck.CVEGA] = x_cv[i]
        ck.aggregate(cf, ust, agg)  # the controller's aggregates (and their gross, unused here)
        for u in range(nu):
            ust[u, ck.UDELTA] = agg[u, 0]
            ust[u, ck.UGAMMA] = agg[u, 1]
            ust[u, ck.UVEGA] = agg[u, 2]
        if cf.shape[0] > 0 and k % scen_every == 0:
            _revalue(
                i_u,
                i_c,
                i_strike,
                t_in,
                r_in,
                q_in,
                is_call,
                i_mult,
                iv,
                price,
                spot[k],
                cf,
                ust,
                cells,
                stock_cells,
                shock_s,
                shock_v,
                o5,  # scratch rows
                o6,
                o7,
            )
        # the day's P&L so far (marked at this step's fair values) -> daily loss, drawdown, kill
        hwm = max(hwm, cum)
        daily = max(-cum, 0.0)
        dd = hwm - cum
        ust[b, ck.UDAILY] = daily
        ust[b, ck.UDRAWDOWN] = dd
        if ust[0, ck.UKILL] == 0.0:
            for m_code, value in ((ck.M_DAILY, daily), (ck.M_DRAWDOWN, dd)):
                hard = ust[b, ck.UHARD + m_code]
                if value > hard and ust[0, ck.UKILL] == 0.0:
                    for u in range(nu):
                        ust[u, ck.UKILL] = 1.0
                    n_ev = _event(events, n_ev, cap_e, E_KILL, k, m_code, value, hard, 0.0, 0.0, 0.0)
                    n_kill += 1
        for u in range(nu):
            toxic, changed, score = tox_update(fills_t, mids_t, trades_t, ist_t, fst_t, tp, u, now)
            tox_score[u] = score
            if toxpull and changed:
                ust[u, ck.UTOXIC] = 1.0 if toxic else 0.0
                n_ev = _event(
                    events, n_ev, cap_e, E_TOXIC, k, u, 1.0 if toxic else 0.0, score, tox_thr, 0.0, 0.0
                )
        n_ev = _layers(k, now, ust, prm, events, n_ev, cap_e, linfo)

        # -- 3. quotes ----------------------------------------------------------------------------
        slot = k % ring
        for u in range(nu):  # per underlying: the skew's squares (the quoter's), realized vol
            sig = sigma_cfg if sigma_cfg > 0.0 else vol[k, u]
            sig2_u[u], s2_u[u] = skew_squares(sig, spot[k, u], qp)
            rvol_u[u] = math.sqrt(rv2[u])
        if quoting == Q_QUOTER:
            # in three passes over the instruments: the quoter's wanted quotes, the controller's
            # decisions on them, the final quotes where a decision changed them. The quoter's passes
            # are loops LLVM vectorizes (the quoter's settings are a tuple, not an array that the
            # stores could alias), several instruments' quotes at once: a quote is a chain of
            # divisions and roundings, and computed one at a time, most of the loop's cost
            for i in range(n_inst):  # the underlyings' inputs per instrument (no gathers below)
                u = i_u[i]
                x_bd[i] = ust[u, ck.UDELTA]
                x_bv[i] = ust[u, ck.UVEGA]
                x_sig2[i] = sig2_u[u]
                x_s2[i] = s2_u[u]
                x_rv[i] = rvol_u[u]
                x_tox[i] = tox_score[u]
            x_und = (x_bd, x_bv, x_sig2, x_s2, x_rv, x_tox)
            _quote_pass(
                price, delta, vega, pos, x_und, c_normal, c_inf, c_inf, c_one, qp, q_bid, q_ask, q_bs, q_as
            )
            n_again = 0
            for i in range(n_inst):
                u = i_u[i]
                c = i_c[i]
                bs = q_bs[i]
                asz = q_as[i]
                q_again[i] = 0.0
                if c >= 0:
                    # (linfo[u, j], not a row view: a view costs two atomic reference counts)
                    lay, nb, na, spread, _trig, _hedge, flags = ck.decide_in_layer(
                        c,
                        bs,
                        asz,
                        int(linfo[u, 0]),
                        int(linfo[u, 1]),
                        linfo[u, 2],
                        linfo[u, 3],
                        cf,
                        ust,
                        cells,
                        prm,
                        aux,
                    )
                    if flags:
                        n_ev = _decision_event(events, n_ev, cap_e, k, c, flags, lay, nb, na, aux, last_stat)
                    q_lay[i] = lay
                    q_cap_b[i] = nb
                    q_cap_a[i] = na
                    q_spread[i] = spread
                    if not (lay == ck.NORMAL and nb == bs and na == asz and spread == 1.0):
                        q_again[i] = 1.0
                        n_again += 1
                else:
                    q_bs[i] = _gate_underlying(u, 1.0, bs, ust, prm)
                    q_as[i] = _gate_underlying(u, -1.0, asz, ust, prm)
                    q_lay[i] = ck.NORMAL
                    q_cap_b[i] = np.inf
                    q_cap_a[i] = np.inf
                    q_spread[i] = 1.0
            if n_again > 0:
                # every instrument (into rows of their own: a store that keeps the old value unless
                # ... is a loop LLVM does not vectorize), kept where needed
                _quote_pass(
                    price,
                    delta,
                    vega,
                    pos,
                    x_und,
                    q_lay,
                    q_cap_b,
                    q_cap_a,
                    q_spread,
                    qp,
                    f_bid,
                    f_ask,
                    f_bs,
                    f_as,
                )
                for i in range(n_inst):
                    if q_again[i] != 0.0:
                        q_bid[i] = f_bid[i]
                        q_ask[i] = f_ask[i]
                        q_bs[i] = f_bs[i]
                        q_as[i] = f_as[i]
        else:
            for i in range(n_inst):
                u = i_u[i]
                sk = spot[k, u]
                if quoting == Q_AS:
                    sigma = arith[u]
                    tau = horizon_s - now
                    qinv = ust[u, ck.USTOCK]
                    res = sk - qinv * as_gamma * sigma * sigma * tau
                    total_spread = as_gamma * sigma * sigma * tau + (2.0 / as_gamma) * math.log(
                        1.0 + as_gamma / big_k
                    )
                else:
                    res = sk
                    total_spread = sym_spread
                factor = prm[ck.P_SOFT_SPREAD] if ust[u, ck.ULAYER] == ck.SOFT else 1.0
                q_bid[i] = res - 0.5 * total_spread * factor
                q_ask[i] = res + 0.5 * total_spread * factor
                q_bs[i] = _gate_underlying(u, 1.0, qsize, ust, prm)
                q_as[i] = _gate_underlying(u, -1.0, qsize, ust, prm)
        for i in range(n_inst):
            bid = q_bid[i]
            ask = q_ask[i]
            bs = q_bs[i]
            asz = q_as[i]
            if not bs > 0.0:
                bid = np.nan
                bs = 0.0
            if not asz > 0.0:
                ask = np.nan
                asz = 0.0
            r_bid[slot, i] = bid
            r_ask[slot, i] = ask
            r_bs[slot, i] = bs
            r_as[slot, i] = asz
            if q_from <= k < q_from + q_len:
                qrow = qwin[k - q_from, i]
                qrow[QW_FAIR] = price[i]
                qrow[QW_BID] = bid
                qrow[QW_ASK] = ask
                qrow[QW_BSIZE] = bs
                qrow[QW_ASIZE] = asz

        # -- 4. fills -----------------------------------------------------------------------------
        # the step's orders first (wo rows: instrument, side or 0 for informed, size, informed, the
        # fair value an informed order foresees), then each against the quotes left, in that order
        spread_k = 0.0
        n_fills_k = 0.0
        n_quoted = 0.0
        n_ord = 0
        live = (k - lat) % ring
        if k >= lat:
            for i in range(n_inst):
                for side in range(2):
                    s = 1.0 if side == 0 else -1.0  # +1: our bid is hit, we buy
                    qp_ = r_bid[live, i] if side == 0 else r_ask[live, i]
                    qs = r_bs[live, i] if side == 0 else r_as[live, i]
                    if not qs > 0.0:
                        continue
                    n_quoted += 1.0
                    dist = s * (price[i] - qp_)
                    x = d_arrive[k, i, side]
                    if not x < p_at_fair[side] and dist >= 0.0:
                        continue
                    lam_dt = adt[side] * math.exp(-big_k * dist)
                    if not x < (-math.expm1(-lam_dt) if poisson else lam_dt):
                        continue
                    wo[n_ord, 0] = i
                    wo[n_ord, 1] = s
                    wo[n_ord, 2] = (
                        1.0 + _poisson_quantile(d_size[k, i, side], size_mean - 1.0)
                        if size_mean > 1.0
                        else 1.0
                    )
                    wo[n_ord, 3] = 0.0
                    n_ord += 1
            # informed orders: one chance per underlying per step
            for u in range(nu):
                if u_count[u] == 0 or not d_inf[k, u] < inf_rate * dt_s:
                    continue
                i = u_first[u] + min(int(d_pick[k, u] * u_count[u]), u_count[u] - 1)
                kf = min(k + inf_h, n_steps)
                if i_kind[i] == K_UNDERLYING:
                    future = spot[kf, u]
                else:
                    sf = spot[kf, u]
                    vf = _smile_vol(vol[kf, u], slope[u], curv[u], ln_k[i] - math.log(sf))
                    future = bsm_price(sf, i_strike[i], i_t0[i] - kf * dt_y, rate[u], div[u], vf, is_call[i])
                wo[n_ord, 0] = i
                wo[n_ord, 1] = 0.0
                wo[n_ord, 2] = inf_size
                wo[n_ord, 3] = 1.0
                wo[n_ord, 4] = future
                n_ord += 1
        for j in range(n_ord):
            i = int(wo[j, 0])
            order = wo[j, 2]
            if wo[j, 3] == 0.0:
                s = wo[j, 1]
            else:  # informed: lifts our ask if fair value will be above it, hits our bid if below
                future = wo[j, 4]
                if r_as[live, i] > 0.0 and future > r_ask[live, i]:
                    s = -1.0
                elif r_bs[live, i] > 0.0 and future < r_bid[live, i]:
                    s = 1.0
                else:
                    continue
            qp_ = r_bid[live, i] if s > 0.0 else r_ask[live, i]
            qs = r_bs[live, i] if s > 0.0 else r_as[live, i]
            n_f, n_ev, sc, cash_d, filled = _fill(
                k,
                now,
                i,
                s,
                min(order, qs),
                qp_,
                wo[j, 3],
                i_u,
                i_c,
                i_kind,
                i_mult,
                price,
                delta,
                spot,
                cf,
                ust,
                prm,
                cells,
                stock_cells,
                pos,
                aux,
                events,
                last_stat,
                fills_t,
                mids_t,
                trades_t,
                ist_t,
                fst_t,
                fills,
                n_f,
                n_ev,
                order,
                breaches,
                wx,
            )
            if filled > 0.0:
                if s > 0.0:
                    r_bs[live, i] -= filled
                else:
                    r_as[live, i] -= filled
                n_fills_k += 1.0
            spread_k += sc
            cash += cash_d
        n_mk = _markouts(fills, n_mk, min(n_f, cap_f), k, markout_steps, price)  # (a 0-step horizon)
        n_ev = _layers(k, now, ust, prm, events, n_ev, cap_e, linfo)

        # -- 5. hedge -------------------------------------------------------------------------------
        hcost = 0.0
        for u in range(nu):
            lay = int(ust[u, ck.ULAYER])
            if not (hedge_on or lay == ck.KILL or lay == ck.HARD):
                continue
            sk = spot[k, u]
            hs = half_spread[u]
            res = hedge_decide(
                ust[u, ck.UDELTA], ust[u, ck.UGAMMA], sk, sk - hs, sk + hs, now, lay, next_due[u], hp
            )
            shares = res[0]
            next_due[u] = res[4]
            if shares == 0.0:
                continue
            px = hedge_fill(shares, sk, 2.0 * hs, hp)[0]
            cost = hedge_cost(shares, px, sk)
            hcost += cost
            cash -= shares * px
            ck.apply_hedge(u, shares, stock_cells, ust, cells)
            if n_h < cap_h:
                h = hedges[n_h]
                h[H_STEP] = k
                h[H_U] = u
                h[H_SHARES] = shares
                h[H_PRICE] = px
                h[H_MID] = sk
                h[H_COST] = cost
                h[H_REASON] = res[3]
            n_h += 1
        n_ev = _layers(k, now, ust, prm, events, n_ev, cap_e, linfo)

        # -- 6. record ------------------------------------------------------------------------------
        row = st_out[k]
        row[ST_SPREAD] = spread_k
        row[ST_HCOST] = hcost
        row[ST_NFILLS] = n_fills_k
        row[ST_NQUOTED] = n_quoted
        bd = 0.0
        bg = 0.0
        bv = 0.0
        for u in range(nu):
            un = un_out[k, u]
            un[UN_SPOT] = spot[k, u]
            un[UN_VOL] = vol[k, u]
            un[UN_DELTA] = ust[u, ck.UDELTA]
            un[UN_GAMMA] = ust[u, ck.UGAMMA]
            un[UN_VEGA] = ust[u, ck.UVEGA]
            un[UN_STOCK] = ust[u, ck.USTOCK]
            un[UN_LAYER] = ust[u, ck.ULAYER]
            un[UN_TOX] = tox_score[u]
            bd += ust[u, ck.UDELTA]
            bg += ust[u, ck.UGAMMA]
            bv += ust[u, ck.UVEGA]
            p_spot[u] = spot[k, u]
            p_stock[u] = ust[u, ck.USTOCK]
        row[ST_BDELTA] = bd
        row[ST_BGAMMA] = bg
        row[ST_BVEGA] = bv
        # this step's spread capture and hedge cost count now (the inventory part at the next step)
        cum += spread_k - hcost

    cash_out[0] = cash
    for i in range(n_inst):
        fair_end[i] = price[i]  # the last step's fair values
    counts[0] = n_f
    counts[1] = n_h
    counts[2] = n_ev
    counts[3] = int(breaches[0])
    counts[4] = n_kill
    status = 0
    if n_f > cap_f:
        status |= OVER_FILLS
    if n_h > cap_h:
        status |= OVER_HEDGES
    if n_ev > cap_e:
        status |= OVER_EVENTS
    return status


@njit(cache=True, error_model="numpy")
def _fill(
    k,
    now,
    i,
    s,
    want,
    px,
    informed,
    i_u,
    i_c,
    i_kind,
    i_mult,
    price,
    delta,
    spot,
    cf,
    ust,
    prm,
    cells,
    stock_cells,
    pos,
    aux,
    events,
    last_stat,
    fills_t,
    mids_t,
    trades_t,
    ist_t,
    fst_t,
    fills,
    n_f,
    n_ev,
    order,
    breaches,
    wx,
):  # pragma: no cover - compiled
    """A market order of ``order`` reaching our quote at ``px`` on side ``s`` (+1 we buy) wanting
    ``want``: the pre-trade check at the current state, then the fill's bookkeeping.
    Returns ``(n_f, n_ev, spread capture, cash change, size filled)``."""
    u = i_u[i]
    c = i_c[i]
    sk = spot[k, u]
    tox_on_trade(fills_t, mids_t, trades_t, ist_t, fst_t, u, now, order, -s)
    if c >= 0:
        bid_req = want if s > 0.0 else 0.0
        ask_req = want if s < 0.0 else 0.0
        lay, nb, na, _spread, _trig, _hedge, flags = ck.decide_one(
            c, bid_req, ask_req, now, cf, ust, cells, prm, aux
        )
        if flags:
            n_ev = _decision_event(events, n_ev, events.shape[0], k, c, flags, lay, nb, na, aux, last_stat)
        q = nb if s > 0.0 else na
    else:
        q = _gate_underlying(u, s, want, ust, prm)
    if not q > 0.0:
        return n_f, n_ev, 0.0, 0.0, 0.0
    m = i_mult[i]
    fair = price[i]
    # the pre-trade metrics before and after (a quote in the underlying itself has no contract position)
    before = ck.pretrade_values(cf[c, ck.CPOS] if c >= 0 else 0.0, u, ust)
    if c >= 0:
        ck.apply_fill(c, s * q, cf, ust, cells)
        pos[i] += s * q
        side_delta = 1.0 if s * delta[i] > 0.0 else (-1.0 if s * delta[i] < 0.0 else 0.0)
        if side_delta != 0.0:
            tox_on_fill(
                fills_t, mids_t, trades_t, ist_t, fst_t, u, now, side_delta, q * abs(delta[i]) * m, sk, sk
            )
    else:
        ck.apply_hedge(u, s * q * m, stock_cells, ust, cells)
        pos[i] += s * q
        tox_on_fill(fills_t, mids_t, trades_t, ist_t, fst_t, u, now, s, q * m, px, sk)
    after = ck.pretrade_values(cf[c, ck.CPOS] if c >= 0 else 0.0, u, ust)
    limit = ck.pretrade_limits(u, ust)
    for j in range(ck.N_PRETRADE):  # a fill that takes a metric past its hard limit, away from 0
        if abs(after[j]) > limit[j] and abs(after[j]) > abs(before[j]):
            breaches[0] += 1.0
    if n_f < fills.shape[0]:
        f = fills[n_f]
        f[F_STEP] = k
        f[F_INST] = i
        f[F_SIDE] = s
        f[F_SIZE] = q
        f[F_PRICE] = px
        f[F_FAIR] = fair
        f[F_INFORMED] = informed
        f[F_FAIR_H] = np.nan
    return n_f + 1, n_ev, s * (fair - px) * q * m, -s * q * px * m, q
