"""Numba kernels of the risk controller: the quote gate, the pre-trade check, the fill update, the layer
refresh, the P&L kill and the underlying gate.

The controller (:mod:`optmm.risk.controller`) keeps its whole state in a few flat float64 arrays,
so that one decision is one compiled call with five array arguments:

``cf`` (contracts x ``CCELL + G``)
    One row per contract: its underlying's index, multiplier, per-contract Greeks in trader units
    (``delta_shares``, ``gamma_dollars_1pct``, ``vega_per_vol_point`` of ONE contract), the position
    in contracts, its P&L in the book's VaR scenario (``CVARPNL``: the scenario whose loss is the
    VaR at the last revaluation), and from column ``CCELL`` the P&L of one contract in each of the
    ``G`` cells of the scenario grid (these two are used by the reduce-only rules of the VaR and the
    worst-scenario-loss limits), and at ``CBOUND`` the largest absolute value of those cells
    (:func:`cell_bounds`: whoever writes the cells calls it).
``ust`` (underlyings + 1) x ``NUS``
    One row per underlying, the last row the book: spot, aggregates (``delta_shares`` including
    stock, ``gamma_dollars_1pct``, ``vega_per_vol_point``), worst scenario loss and its cell, stock
    shares, the toxic and kill flags, the time of the last market data, the last layer recorded, the
    book's daily loss and drawdown, and the hard and soft limits of every metric (``inf`` where
    there is no limit; the contract position limit is repeated on every row); the book's VaR and
    its hard and soft limits (columns ``UVAR``, ``UVAR_HARD``, ``UVAR_SOFT``, book row).
``cells`` (underlyings + 1) x ``G``
    The P&L of each underlying (and, last row, of the book) in each cell of the scenario grid: the
    pre-trade check of the worst scenario loss.
``prm``
    Settings (stale age, soft size and spread factors) and a scratch area for the pre-trade check.
``aux``
    Per decision: what the audit trail needs when something happened (a layer change, a cut, a
    drop); written only then, read by the Python wrapper only when the returned flags say so.

Layers, metric and trigger codes, event types, side statuses and flags are the integer codes of
:mod:`optmm.codes` (:class:`~optmm.codes.Layer`, KILL 0 ... NORMAL 5; :class:`~optmm.codes.MetricCode`,
0 position ... 7 drawdown, plus ``BOOK`` 8 for the book's scope; the book's VaR, a book-only metric, is
code ``VAR`` 19, after the signal codes of :class:`~optmm.codes.TriggerSignal`). Every function here
is a plain loop over scalars; no array is allocated on the decision path.

The functions compiled on their own are compiled without numba's reference counting (``_nrt=False``;
the inlined ones take their caller's), as nothing here allocates. With it, their array arguments and
row views came with reference-count calls that LLVM removed or kept depending on how the function
reached its caller's module: the simulator's loop, which calls them, ran a day about 15% slower when
an earlier process (the controller's own use) had compiled and cached them than when it compiled
them itself.

Both :class:`~optmm.risk.controller.RiskController` and the simulator's loop (:mod:`optmm.sim._kernels`,
on a copy of :meth:`~optmm.risk.controller.RiskController.kernel_state`) run these rules: the decision
(:func:`decide_one`, :func:`decide_in_layer`), the fills and hedges (:func:`apply_fill`,
:func:`apply_hedge`), the layer refresh (:func:`layers_all`), the P&L kill (:func:`mark_pnl`) and the
gate of an order in the underlying itself (:func:`gate_underlying`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from optmm.codes import BOOK_SCOPE, DecisionFlag, EventCode, Layer, MetricCode, SideStatus, TriggerSignal

# Layers
KILL, TOXIC, STALE, HARD, SOFT, NORMAL = (int(x) for x in Layer)

# Metric codes (book scope adds BOOK to the code) and the signals' trigger codes
M_POSITION = int(MetricCode.POSITION)
M_DELTA_SHARES = int(MetricCode.DELTA_SHARES)
M_DELTA_DOLLARS = int(MetricCode.DELTA_DOLLARS)
M_GAMMA = int(MetricCode.GAMMA_DOLLARS_1PCT)
M_VEGA = int(MetricCode.VEGA_PER_VOL_POINT)
M_WSL = int(MetricCode.WORST_SCENARIO_LOSS)
M_DAILY = int(MetricCode.DAILY_LOSS)
M_DRAWDOWN = int(MetricCode.DRAWDOWN)
N_METRICS = BOOK = BOOK_SCOPE
T_TOXIC, T_STALE, T_KILL = int(TriggerSignal.TOXIC), int(TriggerSignal.STALE), int(TriggerSignal.KILL)
T_NONE = int(TriggerSignal.NONE)
VAR = int(MetricCode.VAR)  # the book's VaR (book scope only)

# cf columns
CU, CMULT, CDELTA, CGAMMA, CVEGA, CPOS = 0, 1, 2, 3, 4, 5
CVARPNL = 6  # P&L of one contract in the book's VaR scenario
CBOUND = 7  # the largest |P&L| of one contract in a cell (cell_bounds, after every change of the cells)
CCELL = 8

# ust columns
USPOT, UDELTA, UGAMMA, UVEGA, UWSL, UWORST, USTOCK = 0, 1, 2, 3, 4, 5, 6
UTOXIC, UKILL, ULAST, ULAYER, UDAILY, UDRAWDOWN = 7, 8, 9, 10, 11, 12
UGROSS = 13  # 13, 14, 15: gross |change| of delta_shares, gamma, vega (the scale of rounding errors)
UHARD, USOFT = 16, 24  # + metric index
UVAR, UVAR_HARD, UVAR_SOFT = 32, 33, 34  # the book's VaR and its limits (book row)
NUS = 35

# prm
P_STALE_S, P_SOFT_SIZE, P_SOFT_SPREAD = 0, 1, 2
P_V, P_G, P_H = 8, 16, 24  # scratch of the pre-trade check: value, per-contract change, hard limit
NPRM = 32
N_PRETRADE = 8  # position; underlying delta shares/dollars, gamma, vega; book delta dollars, gamma, vega
PRETRADE_CODES = (
    M_POSITION,
    M_DELTA_SHARES,
    M_DELTA_DOLLARS,
    M_GAMMA,
    M_VEGA,
    BOOK + M_DELTA_DOLLARS,
    BOOK + M_GAMMA,
    BOOK + M_VEGA,
)

# aux (per decision)
A_BID, A_ASK = 0, 5  # per side: status, metric code, measured, threshold, size before the check
A_OLD, A_LAYER, A_TRIG, A_MEAS, A_THR = 10, 11, 12, 13, 14
NAUX = 16

# Events of a compiled loop that drives these kernels itself (the simulator), one row of NEV floats each:
# type, time (s), then per type: EV_DECIDE (contract, flags, layer, bid, ask, -, aux[NAUX]); EV_LAYER
# (underlying, old, new, trigger, measured, threshold); EV_TOXIC (underlying, toxic, score, threshold);
# EV_KILL (metric code, measured, threshold). RiskController.replay_events records them.
EV_DECIDE, EV_LAYER, EV_TOXIC, EV_KILL = (int(x) for x in EventCode)
NEV = 8 + NAUX

# layers_all's out columns
L_LAYER, L_TRIG, L_MEAS, L_THR, L_OLD = 0, 1, 2, 3, 4
N_LAYER_OUT = 5

# side status
S_OK, S_CUT, S_DROP, S_REDUCE = (int(x) for x in SideStatus)

# returned flags
F_CHANGED, F_BID, F_ASK, F_INVALID = (int(x) for x in DecisionFlag)

_INF = math.inf


@njit(cache=True, inline="always", error_model="numpy")
def grade(v, hard, soft, code, lay, trig, meas, thr, ratio):  # pragma: no cover - compiled
    """Fold one metric into the running (layer, trigger, measured, threshold, ratio) (public: limit
    utilisation grades with it, so it and the controller give the same layer).

    A hard breach (``|v| > hard``) beats any soft one; among breaches of the same kind the largest
    ``|v| / limit`` decides.
    """
    a = abs(v)
    if a > hard:
        r = a / hard
        if lay != HARD or r > ratio:
            return HARD, code, a, hard, r
    elif a > soft and lay != HARD:
        r = a / soft
        if lay != SOFT or r > ratio:
            return SOFT, code, a, soft, r
    return lay, trig, meas, thr, ratio


@njit(cache=True, inline="always", error_model="numpy")
def book_sums(ust):  # pragma: no cover - compiled
    """Book delta dollars (at current spots), dollar gamma and vega: sums over the underlyings."""
    dd = 0.0
    gam = 0.0
    veg = 0.0
    for j in range(ust.shape[0] - 1):
        dd += ust[j, UDELTA] * ust[j, USPOT]
        gam += ust[j, UGAMMA]
        veg += ust[j, UVEGA]
    return dd, gam, veg


@njit(cache=True, error_model="numpy", _nrt=False)
def underlying_layer(u, now, ust, prm):  # pragma: no cover - compiled
    """Layer of underlying ``u`` at time ``now`` (seconds): ``(layer, trigger, measured, threshold)``.

    KILL > TOXIC > STALE (no market data for more than the stale age) > HARD > SOFT > NORMAL. HARD and
    SOFT look at the underlying's and the book's metrics (not at single contracts' positions).
    """
    if ust[u, UKILL] != 0.0:
        return KILL, T_KILL, math.nan, math.nan
    if ust[u, UTOXIC] != 0.0:
        return TOXIC, T_TOXIC, math.nan, math.nan
    age = now - ust[u, ULAST]
    if not (age <= prm[P_STALE_S]):
        return STALE, T_STALE, age * 1000.0, prm[P_STALE_S] * 1000.0
    b = ust.shape[0] - 1
    dd, gam, veg = book_sums(ust)
    lay, trig, meas, thr, ratio = NORMAL, T_NONE, math.nan, math.nan, 0.0
    d = ust[u, UDELTA]
    lay, trig, meas, thr, ratio = grade(
        d, ust[u, UHARD + 1], ust[u, USOFT + 1], M_DELTA_SHARES, lay, trig, meas, thr, ratio
    )
    lay, trig, meas, thr, ratio = grade(
        d * ust[u, USPOT], ust[u, UHARD + 2], ust[u, USOFT + 2], M_DELTA_DOLLARS, lay, trig, meas, thr, ratio
    )
    for m, col in ((M_GAMMA, UGAMMA), (M_VEGA, UVEGA), (M_WSL, UWSL)):
        lay, trig, meas, thr, ratio = grade(
            ust[u, col], ust[u, UHARD + m], ust[u, USOFT + m], m, lay, trig, meas, thr, ratio
        )
    for m, v in (
        (M_DELTA_DOLLARS, dd),
        (M_GAMMA, gam),
        (M_VEGA, veg),
        (M_WSL, ust[b, UWSL]),
        (M_DAILY, ust[b, UDAILY]),
        (M_DRAWDOWN, ust[b, UDRAWDOWN]),
    ):
        lay, trig, meas, thr, ratio = grade(
            v, ust[b, UHARD + m], ust[b, USOFT + m], BOOK + m, lay, trig, meas, thr, ratio
        )
    lay, trig, meas, thr, ratio = grade(
        ust[b, UVAR], ust[b, UVAR_HARD], ust[b, UVAR_SOFT], VAR, lay, trig, meas, thr, ratio
    )
    return lay, trig, meas, thr


@njit(cache=True, inline="always", error_model="numpy")
def book_gross(ust):  # pragma: no cover - compiled
    """The sums of the absolute terms of :func:`book_sums` (delta dollars, gamma, vega): how far the
    book's sums can be from their exact values is a few ulps of these."""
    dd = 0.0
    gam = 0.0
    veg = 0.0
    for j in range(ust.shape[0] - 1):
        dd += abs(ust[j, UDELTA] * ust[j, USPOT])
        gam += abs(ust[j, UGAMMA])
        veg += abs(ust[j, UVEGA])
    return dd, gam, veg


@njit(cache=True, inline="always", error_model="numpy")
def pretrade_after(x, c, u, cf, ust):  # pragma: no cover - compiled
    """The pre-trade metrics (the order of ``PRETRADE_CODES``) after a fill of ``x`` contracts (signed)
    of ``c``, computed with the operations, in the order, that :func:`apply_fill` and then
    :func:`underlying_layer` perform: the values the layer will compare with the limits, to the bit."""
    b = ust.shape[0] - 1
    pos = cf[c, CPOS] + x
    d = ust[u, UDELTA] + x * cf[c, CDELTA]
    gam = ust[u, UGAMMA] + x * cf[c, CGAMMA]
    veg = ust[u, UVEGA] + x * cf[c, CVEGA]
    dd = 0.0
    bg = 0.0
    bv = 0.0
    for j in range(b):  # book_sums with row u replaced
        if j == u:
            dd += d * ust[j, USPOT]
            bg += gam
            bv += veg
        else:
            dd += ust[j, UDELTA] * ust[j, USPOT]
            bg += ust[j, UGAMMA]
            bv += ust[j, UVEGA]
    return pos, d, d * ust[u, USPOT], gam, veg, dd, bg, bv


@njit(cache=True, inline="always", error_model="numpy")
def _breach(s, x, c, u, cf, ust, cells, prm):  # pragma: no cover - compiled
    """The first limit a fill of ``x`` (= ``s`` x a size) contracts of ``c`` would take past its hard
    limit, in the fill's own arithmetic: ``0 .. N_PRETRADE - 1`` a pre-trade metric, ``N_PRETRADE``
    the underlying's worst scenario loss, ``N_PRETRADE + 1`` the book's; -1 if none. A metric is
    checked on the side it moves to (a value already past the limit on the other side may come back
    through 0); a scenario cell only when the fill loses in it."""
    after = pretrade_after(x, c, u, cf, ust)
    for k in range(N_PRETRADE):
        d = s * prm[P_G + k]
        h = prm[P_H + k]
        if (d > 0.0 and after[k] > h) or (d < 0.0 and after[k] < -h):
            return k
    b = ust.shape[0] - 1
    for r in range(2):
        row = u if r == 0 else b
        h = ust[row, UHARD + M_WSL]
        if h == _INF:
            continue
        for g in range(cells.shape[1]):
            y = x * cf[c, CCELL + g]  # as apply_fill adds it
            if y < 0.0 and cells[row, g] + y < -h:
                return N_PRETRADE + r
    return -1


@njit(cache=True, inline="always", error_model="numpy")
def _loss_after(x, c, row, cf, cells):  # pragma: no cover - compiled
    """The worst scenario loss of ``row`` (an underlying or the book) after a fill of ``x`` of ``c``."""
    v_min = _INF
    for g in range(cells.shape[1]):
        v = cells[row, g] + x * cf[c, CCELL + g]
        if v < v_min:
            v_min = v
    return max(-v_min, 0.0)


@njit(cache=True, error_model="numpy", _nrt=False)
def _side(s, q, hard_mode, c, u, cf, ust, cells, prm, aux):  # pragma: no cover - compiled
    """Size allowed on one side (``s`` +1: a bid fill buys, -1: an ask fill sells) of contract ``c``.

    The side's entries of ``aux`` start at ``A_BID`` or ``A_ASK``, chosen here from ``s``: passed as
    a constant, numba would compile a copy of this function for each (an int constant argument is
    typed as its literal value).

    ``q`` is the size after the layer's rule (whole contracts). In the HARD layer the side is dropped
    unless a fill on it reduces the absolute value of every hard-breached metric (a loss: gains in
    its worst cell, or in the VaR scenario). Then the pre-trade
    check: the largest whole size whose full fill keeps every pre-trade metric, and every scenario
    cell of the underlying and of the book, within its hard limit (closed form, linear in size; the
    worst scenario loss is the largest loss over the cells, each linear in the size), confirmed in
    the fill's own arithmetic (:func:`_breach`) unless the closed form settles it by more than that
    arithmetic can differ (every metric and cell clear of its limit; or the sizes where the fill
    could pass or breach a limit, each quotient within its margin, all between the same two whole
    sizes); dropped if below one contract. Writes the audit details at ``aux[off:off + 5]`` when
    the side is cut or dropped.
    """
    off = A_BID if s > 0.0 else A_ASK
    aux[off] = S_OK
    if q <= 0.0:
        return 0.0
    b = ust.shape[0] - 1
    if hard_mode:
        for k in range(N_PRETRADE):
            v = prm[P_V + k]
            h = prm[P_H + k]
            if abs(v) > h and not (s * prm[P_G + k] * v < 0.0):
                aux[off] = S_REDUCE
                aux[off + 1] = PRETRADE_CODES[k]
                aux[off + 2] = abs(v)
                aux[off + 3] = h
                aux[off + 4] = q
                return 0.0
        # losses: a side reduces the worst scenario loss if its fill gains in the worst cell
        for row, code in ((u, M_WSL), (b, BOOK + M_WSL)):
            loss = ust[row, UWSL]
            h = ust[row, UHARD + M_WSL]
            if loss > h and not (s * cf[c, CCELL + int(ust[row, UWORST])] > 0.0):
                aux[off] = S_REDUCE
                aux[off + 1] = code
                aux[off + 2] = loss
                aux[off + 3] = h
                aux[off + 4] = q
                return 0.0
        # the VaR: a side reduces it if its fill gains in the VaR scenario
        if ust[b, UVAR] > ust[b, UVAR_HARD] and not (s * cf[c, CVARPNL] > 0.0):
            aux[off] = S_REDUCE
            aux[off + 1] = VAR
            aux[off + 2] = ust[b, UVAR]
            aux[off + 3] = ust[b, UVAR_HARD]
            aux[off + 4] = q
            return 0.0
        for m in (M_DAILY, M_DRAWDOWN):  # nothing a quote does reduces a realised loss
            col = UDAILY if m == M_DAILY else UDRAWDOWN
            if ust[b, col] > ust[b, UHARD + m]:
                aux[off] = S_REDUCE
                aux[off + 1] = BOOK + m
                aux[off + 2] = ust[b, col]
                aux[off + 3] = ust[b, UHARD + m]
                aux[off + 4] = q
                return 0.0
    # The largest size each metric allows, (h - v) / d, and their minimum. A metric that a full fill
    # leaves clearly inside its limit (by more than the rounding of that quotient) cannot bind, so it
    # needs no division: the divisions are most of the check's cost.
    #
    # A metric or cell skipped that way is also clearly inside in the fill's own arithmetic (which
    # :func:`_breach` uses): the book's sums differ from ``v + d q`` by a few ulps of their terms'
    # gross, added to the margin for them. So when nothing is left (``bind`` -1) a whole size passes
    # :func:`_breach`, which need not be asked.
    gross = (0.0, 0.0, 0.0)
    if prm[P_H + 5] != _INF or prm[P_H + 6] != _INF or prm[P_H + 7] != _INF:
        gross = book_gross(ust)
    qmax = _INF
    bind = -1
    lo = _INF  # below lo every size passes in the fill's arithmetic; above hi a size breaches
    hi = _INF
    for k in range(N_PRETRADE):
        h = prm[P_H + k]
        if h == _INF:
            continue
        d = s * prm[P_G + k]
        v = prm[P_V + k]
        if d > 0.0:
            room = h - v
        elif d < 0.0:
            room = h + v
            d = -d
        else:
            continue
        margin = 1e-9 * (h + abs(v) + d * q + (gross[k - 5] if k >= 5 else 0.0))
        if room - d * q > margin:
            continue
        qk = room / d
        e = 2.0 * margin / d
        lo = min(lo, qk - e)
        hi = min(hi, qk + e)
        if qk < qmax:
            qmax = qk
            bind = k
    # the worst scenario loss: each cell where the fill loses, cell + size * change >= -limit
    for r in range(2):
        row = u if r == 0 else b
        h = ust[row, UHARD + M_WSL]
        if h == _INF:
            continue
        for g in range(cells.shape[1]):
            y = s * cf[c, CCELL + g]
            if not y < 0.0:
                continue
            room = cells[row, g] + h
            margin = 1e-9 * (h + abs(cells[row, g]) - y * q)
            if room + y * q > margin:
                continue
            qk = room / -y
            e = 2.0 * margin / -y
            lo = min(lo, qk - e)
            hi = min(hi, qk + e)
            if qk < qmax:
                qmax = qk
                bind = N_PRETRADE + r
    if bind < 0 and q >= 1.0:
        return q
    allowed = q if qmax >= q else (math.floor(qmax) if qmax > 0.0 else 0.0)
    # Each quotient is within its margin (in contracts, twice the metric's, for the quotient's own
    # rounding) of where the fill's arithmetic passes or breaches: every size below ``lo`` passes,
    # and a size above ``hi`` breaches. With ``lo`` and ``hi`` between the same two whole sizes, the
    # lower, floor(qmax), is the size, as _breach would confirm; with ``hi`` below 1, none is.
    settled = hi < 1.0
    if 0.0 <= lo and lo < q:
        whole = math.floor(lo)
        settled = settled or (whole < lo and hi < whole + 1.0 and whole + 1.0 <= q)
    if settled:
        allowed = allowed if hi >= 1.0 else 0.0
    else:
        # the quotients round differently from the fill, by a few ulps: the whole size may be one
        # more (a quotient just below an integer) or less (just above), so the fill's own arithmetic
        # decides (a size that still breaches after three steps down is dropped)
        if allowed < q and allowed >= 0.0 and _breach(s, s * (allowed + 1.0), c, u, cf, ust, cells, prm) < 0:
            allowed += 1.0
        for step in range(4):
            if allowed < 1.0:
                break
            k = _breach(s, s * allowed, c, u, cf, ust, cells, prm)
            if k < 0:
                break
            if bind < 0:
                bind = k
            allowed = allowed - 1.0 if step < 3 else 0.0
    if allowed < 1.0:
        allowed = 0.0
    if allowed == q:
        return q
    aux[off] = S_CUT if allowed >= 1.0 else S_DROP
    if bind < N_PRETRADE:
        d = s * prm[P_G + bind]
        aux[off + 1] = PRETRADE_CODES[bind]
        aux[off + 2] = abs(prm[P_V + bind] + d * q)
        aux[off + 3] = prm[P_H + bind]
    else:
        row = u if bind == N_PRETRADE else b
        aux[off + 1] = M_WSL if bind == N_PRETRADE else BOOK + M_WSL
        aux[off + 2] = _loss_after(s * q, c, row, cf, cells)
        aux[off + 3] = ust[row, UHARD + M_WSL]
    aux[off + 4] = q
    return allowed


@njit(cache=True, inline="always", error_model="numpy")
def pretrade_values(pos, u, ust):  # pragma: no cover - compiled
    """The pre-trade metrics (the order of ``PRETRADE_CODES``) of a contract of underlying ``u`` with
    position ``pos``, now."""
    dd, gam, veg = book_sums(ust)
    d = ust[u, UDELTA]
    return pos, d, d * ust[u, USPOT], ust[u, UGAMMA], ust[u, UVEGA], dd, gam, veg


@njit(cache=True, inline="always", error_model="numpy")
def pretrade_changes(c, u, cf, ust):  # pragma: no cover - compiled
    """How one contract of ``c`` bought changes each pre-trade metric."""
    gd = cf[c, CDELTA]
    gd_s = gd * ust[u, USPOT]
    return 1.0, gd, gd_s, cf[c, CGAMMA], cf[c, CVEGA], gd_s, cf[c, CGAMMA], cf[c, CVEGA]


@njit(cache=True, inline="always", error_model="numpy")
def pretrade_limits(u, ust):  # pragma: no cover - compiled
    """The hard limit of each pre-trade metric of a contract of underlying ``u``."""
    b = ust.shape[0] - 1
    return (
        ust[u, UHARD + M_POSITION],
        ust[u, UHARD + M_DELTA_SHARES],
        ust[u, UHARD + M_DELTA_DOLLARS],
        ust[u, UHARD + M_GAMMA],
        ust[u, UHARD + M_VEGA],
        ust[b, UHARD + M_DELTA_DOLLARS],
        ust[b, UHARD + M_GAMMA],
        ust[b, UHARD + M_VEGA],
    )


@njit(cache=True, inline="always", error_model="numpy")
def load_pretrade(c, u, cf, ust, prm):  # pragma: no cover - compiled
    """The pre-trade metrics of contract ``c`` (of underlying ``u``) into the scratch of ``prm``: value
    at ``P_V``, change per contract bought at ``P_G``, hard limit at ``P_H``."""
    v = pretrade_values(cf[c, CPOS], u, ust)
    g = pretrade_changes(c, u, cf, ust)
    h = pretrade_limits(u, ust)
    for k in range(N_PRETRADE):
        prm[P_V + k] = v[k]
        prm[P_G + k] = g[k]
        prm[P_H + k] = h[k]


@njit(cache=True, inline="always", error_model="numpy")
def _clear(v, g, h, q, gross):  # pragma: no cover - compiled
    """Whether a fill of up to ``q`` units on either side, each changing the value ``v`` by ``±g``,
    leaves it clearly inside ``[-h, h]``: by more than :func:`_side` asks before it skips a metric,
    and by more than the fill's own arithmetic can differ from ``v ± g q`` (a few ulps of ``gross``,
    the sum of the absolute terms that make ``v``, and of ``|v| + |g| q``), so that then
    :func:`_side` allows the whole size; finite values only."""
    a = abs(v)
    dq = abs(g) * q
    if h == _INF:
        return a + dq < _INF
    return (h - a) - dq > 1e-9 * (h + a + dq + gross)


@njit(cache=True, inline="always", error_model="numpy")
def _clear_of_limits(c, u, q, cf, ust, cells):  # pragma: no cover - compiled
    """Whether every pre-trade metric of contract ``c``, and the worst scenario loss of its underlying
    and of the book, is :func:`_clear` of its hard limit for a fill of up to ``q`` on either side:
    the pre-trade check of both sides then allows the whole size, and :func:`decide_in_layer` skips
    it (most quotes of a book inside its limits). The loss after a fill of ``q`` is at most the loss
    now plus ``q`` times the contract's largest ``|P&L|`` in a cell (each cell moves by at most that):
    a bound, so the shortcut is only taken where the check would allow the whole size."""
    v = pretrade_values(cf[c, CPOS], u, ust)
    g = pretrade_changes(c, u, cf, ust)
    h = pretrade_limits(u, ust)
    for k in range(N_PRETRADE - 3):
        if not _clear(v[k], g[k], h[k], q, 0.0):
            return False
    b = ust.shape[0] - 1
    if h[5] != _INF or h[6] != _INF or h[7] != _INF:  # the book's sums: their terms' gross
        dd, gam, veg = book_gross(ust)
        if not (_clear(v[5], g[5], h[5], q, dd) and _clear(v[6], g[6], h[6], q, gam)):
            return False
        if not _clear(v[7], g[7], h[7], q, veg):
            return False
    # the worst scenario loss moves by at most q times the contract's largest |P&L| in a cell
    h_u = ust[u, UHARD + M_WSL]
    h_b = ust[b, UHARD + M_WSL]
    if h_u != _INF or h_b != _INF:
        m = cf[c, CBOUND]
        if not (_clear(ust[u, UWSL], m, h_u, q, 0.0) and _clear(ust[b, UWSL], m, h_b, q, 0.0)):
            return False
    return True


@njit(cache=True, inline="always", error_model="numpy")
def _whole(x):  # pragma: no cover - compiled
    return math.floor(x)


@njit(cache=True, error_model="numpy", _nrt=False)
def decide_one(c, bid, ask, now, cf, ust, cells, prm, aux):  # pragma: no cover - compiled
    """Gate and pre-trade check of one quote: ``(layer, bid, ask, spread_factor, trigger, hedge, flags)``.

    ``trigger`` is a metric code (``+ BOOK`` for the book's scope), ``T_TOXIC``, ``T_STALE``,
    ``T_KILL`` or ``T_NONE``. ``flags``: ``F_CHANGED`` when the underlying's layer differs from the
    last one recorded (which is then updated; details in ``aux[A_OLD:]``), ``F_BID`` / ``F_ASK`` when
    that side was cut or dropped (details in ``aux``), ``F_INVALID`` for a negative or non-finite size
    (nothing else is done then).
    """
    if not (bid >= 0.0 and bid < _INF and ask >= 0.0 and ask < _INF):
        return NORMAL, 0.0, 0.0, 1.0, T_NONE, 0.0, F_INVALID
    lay_u, trig_u, meas_u, thr_u = underlying_layer(int(cf[c, CU]), now, ust, prm)
    return decide_in_layer(c, bid, ask, lay_u, trig_u, meas_u, thr_u, cf, ust, cells, prm, aux)


@njit(cache=True, inline="always", error_model="numpy")
def decide_in_layer(c, bid, ask, lay_u, trig_u, meas_u, thr_u, cf, ust, cells, prm, aux):  # pragma: no cover
    """:func:`decide_one` given its underlying's layer ``(lay_u, trig_u, meas_u, thr_u)`` from
    :func:`underlying_layer` at the same instant and state, and valid sizes: a caller deciding many
    contracts of one underlying at one instant computes the layer once."""
    u = int(cf[c, CU])
    flags = 0
    if lay_u != ust[u, ULAYER]:
        flags |= F_CHANGED
        aux[A_OLD] = ust[u, ULAYER]
        aux[A_LAYER] = lay_u
        aux[A_TRIG] = trig_u
        aux[A_MEAS] = meas_u
        aux[A_THR] = thr_u
        ust[u, ULAYER] = lay_u
    lay = lay_u
    trig = trig_u
    if lay <= STALE:
        hedge = ust[u, UDELTA] if lay == KILL else 0.0
        return lay, 0.0, 0.0, 1.0, trig, hedge, flags
    pos = cf[c, CPOS]
    if abs(pos) > ust[u, UHARD + M_POSITION]:
        if lay != HARD:
            lay = HARD
            trig = M_POSITION
    elif abs(pos) > ust[u, USOFT + M_POSITION] and lay == NORMAL:
        lay = SOFT
        trig = M_POSITION
    spread = 1.0
    hedge = 0.0
    qb = _whole(bid)
    qa = _whole(ask)
    if lay == SOFT:
        spread = prm[P_SOFT_SPREAD]
        f = prm[P_SOFT_SIZE]
        # shrink, but never to nothing: the soft layer is a safe mode, not dark
        qb = max(_whole(bid * f), 1.0) if qb >= 1.0 else 0.0
        qa = max(_whole(ask * f), 1.0) if qa >= 1.0 else 0.0
    elif lay == HARD:
        hedge = ust[u, UDELTA]
    hard_mode = lay == HARD
    if not hard_mode and _clear_of_limits(c, u, qb if qb >= qa else qa, cf, ust, cells):
        aux[A_BID] = S_OK
        aux[A_ASK] = S_OK
        return lay, qb if qb > 0.0 else 0.0, qa if qa > 0.0 else 0.0, spread, trig, hedge, flags
    load_pretrade(c, u, cf, ust, prm)
    nb = _side(1.0, qb, hard_mode, c, u, cf, ust, cells, prm, aux)
    na = _side(-1.0, qa, hard_mode, c, u, cf, ust, cells, prm, aux)
    if aux[A_BID] != S_OK:
        flags |= F_BID
    if aux[A_ASK] != S_OK:
        flags |= F_ASK
    return lay, nb, na, spread, trig, hedge, flags


@njit(cache=True, error_model="numpy", _nrt=False)
def decide_loop(
    contracts, bids, asks, now, cf, ust, cells, prm, layer, out_bid, out_ask, spread, trig, hedge, flags, aux
):  # pragma: no cover
    """:func:`decide_one` over arrays of requests, in order; outputs written per request."""
    for i in range(contracts.shape[0]):
        r = decide_one(contracts[i], bids[i], asks[i], now, cf, ust, cells, prm, aux[i])
        layer[i] = r[0]
        out_bid[i] = r[1]
        out_ask[i] = r[2]
        spread[i] = r[3]
        trig[i] = r[4]
        hedge[i] = r[5]
        flags[i] = r[6]


@njit(cache=True, error_model="numpy", _nrt=False)
def layers_all(now, ust, prm, out):  # pragma: no cover - compiled
    """The layer refresh: the layer of every underlying at time ``now`` (seconds); rows of ``out``
    (columns ``L_*``): (layer, trigger, measured, threshold, the layer recorded before).

    Updates the last recorded layer; returns how many underlyings changed layer. The controller runs
    it after every change of its state; the simulator's loop at every step (its quotes read the
    first four columns)."""
    changed = 0
    for u in range(ust.shape[0] - 1):
        lay, trig, meas, thr = underlying_layer(u, now, ust, prm)
        out[u, L_LAYER] = lay
        out[u, L_TRIG] = trig
        out[u, L_MEAS] = meas
        out[u, L_THR] = thr
        out[u, L_OLD] = ust[u, ULAYER]
        if lay != ust[u, ULAYER]:
            ust[u, ULAYER] = lay
            changed += 1
    return changed


@njit(cache=True, inline="always", error_model="numpy")
def is_killed(ust):  # pragma: no cover - compiled
    """Whether the kill switch is thrown (on any underlying: it is thrown on all at once)."""
    for u in range(ust.shape[0] - 1):
        if ust[u, UKILL] != 0.0:
            return True
    return False


@njit(cache=True, error_model="numpy", _nrt=False)
def mark_pnl(pnl, hwm, ust):  # pragma: no cover - compiled
    """The P&L kill: the day's P&L so far ``pnl`` (currency) against the high-water mark ``hwm``.

    Writes the book's daily loss (``max(-pnl, 0)``) and drawdown (high-water mark - ``pnl``) into
    ``ust``; when the kill switch is not thrown and either is past its hard limit (daily loss first),
    throws it on every underlying. Returns ``(high-water mark, metric, measured, threshold)``:
    ``metric`` the code (``M_DAILY`` / ``M_DRAWDOWN``) of the limit that threw the switch, -1 if
    this mark threw nothing."""
    b = ust.shape[0] - 1
    hwm = max(hwm, pnl)
    daily = max(-pnl, 0.0)
    dd = hwm - pnl
    ust[b, UDAILY] = daily
    ust[b, UDRAWDOWN] = dd
    if not is_killed(ust):
        for m, value in ((M_DAILY, daily), (M_DRAWDOWN, dd)):
            hard = ust[b, UHARD + m]
            if value > hard:
                for u in range(b):
                    ust[u, UKILL] = 1.0
                return hwm, m, value, hard
    return hwm, -1, math.nan, math.nan


@njit(cache=True, error_model="numpy", _nrt=False)
def gate_underlying(u, s, q, ust, prm):  # pragma: no cover - compiled
    """The underlying gate: the size allowed on side ``s`` (+1 buy, -1 sell) of an order or quote of
    ``q`` shares in underlying ``u`` itself, at the layer last recorded (:func:`layers_all`).

    Nothing at or below STALE; in HARD only a side whose fill reduces ``|delta_shares|``; in SOFT the
    size x ``soft_size_factor`` (floored, at least 1 share when ``q`` >= 1); then the pre-trade
    check on the underlying's ``delta_shares`` alone (its hard limit; the other limits bound
    options): cut to the whole shares that still fit, 0 below one."""
    lay = int(ust[u, ULAYER])
    if lay <= STALE or q <= 0.0:
        return 0.0
    d = ust[u, UDELTA]
    hard = ust[u, UHARD + M_DELTA_SHARES]
    if lay == HARD and not (s * d < 0.0):
        return 0.0
    if lay == SOFT:
        q = max(math.floor(q * prm[P_SOFT_SIZE]), 1.0) if q >= 1.0 else q * prm[P_SOFT_SIZE]
    room = hard - s * d  # shares that can still be added on this side
    if q > room:
        q = math.floor(room) if room >= 1.0 else 0.0
    return q


@njit(cache=True, error_model="numpy", _nrt=False)
def cell_bounds(cf):  # pragma: no cover - compiled
    """Each contract's largest ``|P&L|`` of one contract in a cell of the grid into ``cf[:, CBOUND]``
    (how far a fill of one contract can move a scenario cell: :func:`_clear_of_limits`). Public: who
    writes the contracts' cells (the controller's revaluation, the simulator's) calls it after."""
    for c in range(cf.shape[0]):
        m = 0.0
        for j in range(CCELL, cf.shape[1]):
            m = max(m, abs(cf[c, j]))
        cf[c, CBOUND] = m


@njit(cache=True, error_model="numpy", _nrt=False)
def worst_cell(cells, row, ust):  # pragma: no cover - compiled
    """The worst scenario cell of ``cells[row]`` (an underlying's row, or the book's) into ``ust``: its
    loss (``UWSL``, >= 0) and its index (``UWORST``). Public: the simulator's scenario refresh uses it."""
    g_min = 0
    v_min = cells[row, 0]
    for g in range(1, cells.shape[1]):
        if cells[row, g] < v_min:
            v_min = cells[row, g]
            g_min = g
    ust[row, UWSL] = max(-v_min, 0.0)
    ust[row, UWORST] = g_min


@njit(cache=True, error_model="numpy", _nrt=False)
def apply_fill(c, q, cf, ust, cells):  # pragma: no cover - compiled
    """Incremental update for a fill of ``q`` contracts (signed) of contract ``c``.

    Position, the underlying's Greeks (the book's are sums over underlyings) and the scenario cells
    of the underlying and the book (P&L is linear in the position, so this is exact at the grid's
    market); the worst scenario losses follow.
    """
    u = int(cf[c, CU])
    b = ust.shape[0] - 1
    cf[c, CPOS] += q
    ust[u, UDELTA] += q * cf[c, CDELTA]
    ust[u, UGAMMA] += q * cf[c, CGAMMA]
    ust[u, UVEGA] += q * cf[c, CVEGA]
    ust[u, UGROSS] += abs(q * cf[c, CDELTA])
    ust[u, UGROSS + 1] += abs(q * cf[c, CGAMMA])
    ust[u, UGROSS + 2] += abs(q * cf[c, CVEGA])
    for g in range(cells.shape[1]):
        x = q * cf[c, CCELL + g]
        cells[u, g] += x
        cells[b, g] += x
    worst_cell(cells, u, ust)
    worst_cell(cells, b, ust)


@njit(cache=True, error_model="numpy", _nrt=False)
def apply_hedge(u, shares, stock_cells, ust, cells):  # pragma: no cover - compiled
    """Incremental update for a hedge of ``shares`` (signed) of underlying ``u``."""
    b = ust.shape[0] - 1
    ust[u, USTOCK] += shares
    ust[u, UDELTA] += shares
    ust[u, UGROSS] += abs(shares)
    for g in range(cells.shape[1]):
        x = shares * stock_cells[u, g]
        cells[u, g] += x
        cells[b, g] += x
    worst_cell(cells, u, ust)
    worst_cell(cells, b, ust)


@njit(cache=True, error_model="numpy", _nrt=False)
def aggregate(cf, ust, out):  # pragma: no cover - compiled
    """Underlying aggregates from positions: ``out[u, 0:3]`` = (delta_shares incl. stock, gamma,
    vega), ``out[u, 3:6]`` = the sums of their terms' absolute values (gross)."""
    for u in range(ust.shape[0] - 1):
        out[u, 0] = ust[u, USTOCK]
        out[u, 3] = abs(ust[u, USTOCK])
        for j in (1, 2, 4, 5):
            out[u, j] = 0.0
    # summed in contract order, in registers while the underlying stays the same (a book's contracts
    # come grouped by underlying; the sums through memory were a chain of store-to-load waits)
    u_run = -1
    d = g = v = gd = gg = gv = 0.0
    for c in range(cf.shape[0]):
        u = int(cf[c, CU])
        if u != u_run:
            if u_run >= 0:
                _store6(out, u_run, d, g, v, gd, gg, gv)
            u_run = u
            d, g, v, gd, gg, gv = out[u, 0], out[u, 1], out[u, 2], out[u, 3], out[u, 4], out[u, 5]
        p = cf[c, CPOS]
        x_d = p * cf[c, CDELTA]
        x_g = p * cf[c, CGAMMA]
        x_v = p * cf[c, CVEGA]
        d += x_d
        g += x_g
        v += x_v
        gd += abs(x_d)
        gg += abs(x_g)
        gv += abs(x_v)
    if u_run >= 0:
        _store6(out, u_run, d, g, v, gd, gg, gv)


@njit(cache=True, inline="always", error_model="numpy")
def _store6(out, u, a, b, c, d, e, f):  # pragma: no cover - compiled
    out[u, 0] = a
    out[u, 1] = b
    out[u, 2] = c
    out[u, 3] = d
    out[u, 4] = e
    out[u, 5] = f


def worst_rows(cells: np.ndarray, ust: np.ndarray) -> None:
    """Worst scenario loss and cell of every row of ``cells`` (underlyings and the book)."""
    for row in range(cells.shape[0]):
        worst_cell(cells, row, ust)


__all__ = [
    "BOOK",
    "HARD",
    "KILL",
    "NORMAL",
    "SOFT",
    "STALE",
    "TOXIC",
    "VAR",
    "aggregate",
    "apply_fill",
    "apply_hedge",
    "decide_in_layer",
    "decide_loop",
    "decide_one",
    "gate_underlying",
    "is_killed",
    "layers_all",
    "mark_pnl",
    "underlying_layer",
]
