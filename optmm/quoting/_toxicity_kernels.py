"""The toxicity detector's state and rules on arrays, for :class:`optmm.quoting.ToxicityDetector` and
compiled loops.

The simulator runs its whole quote → fill → hedge loop inside one compiled kernel, so it cannot call the
Python detector. This module keeps the detector's state in five numpy arrays and works on it with
``@njit`` functions that allocate nothing. :class:`~optmm.quoting.ToxicityDetector` is a validating shell
over them: it keeps its events in the same arrays and calls the same event functions (:func:`tox_on_fill`,
:func:`tox_on_mid`, :func:`tox_on_trade`: push, drop the oldest when full, trim to the window), the same
score (:func:`tox_score_into`) and the same latch (:func:`tox_update_into`). The score and the latch are
written once, as plain Python (:func:`score_rule_py`, :func:`latch_py`) compiled by
:func:`~optmm.quoting._kernels.twin`; ``tests/quoting/test_toxicity_kernels.py`` checks the score against a
vectorised numpy reference on random event streams.

Settings: ``params = pack_toxicity(config)``, float64 of length ``P_HORIZONS + n_horizons``
----------------------------------------------------------------------------------------------
==================  ======================================================================
index               value
==================  ======================================================================
``P_WINDOW_S``      ``window_s``
``P_ADVERSE_BPS``   ``adverse_threshold_bps``
``P_SCALE_BPS``     ``markout_scale_bps``
``P_W_ONE_SIDED``   ``weight_one_sided`` (then ``P_W_ADVERSE``, ``P_W_MARKOUT``, ``P_W_FLOW``)
``P_W_SUM``         the sum of the four weights, added in the detector's order
``P_THRESHOLD``     ``threshold``
``P_COOLDOWN_S``    ``cooldown_s``
``P_MIN_FILLS``     ``min_fills``
``P_CAPACITY``      ``capacity``
``P_N_HORIZONS``    ``H``, the number of markout horizons
``P_HORIZONS + h``  horizon ``h`` (seconds), ``h = 0 .. H - 1``
==================  ======================================================================

State: ``state = new_toxicity_state(config, n_underlyings)``, a :class:`ToxicityState` of arrays
------------------------------------------------------------------------------------------------
Underlyings are rows ``u = 0 .. n_underlyings - 1``; ``cap = config.capacity``.

``fills`` float64 (n_underlyings, cap, 5)
    Ring of our fills, columns ``FL_TS, FL_SIDE, FL_SIZE, FL_PRICE, FL_MID``.
``mids`` float64 (n_underlyings, cap, 2)
    Ring of mids, columns ``MD_TS, MD_MID``.
``trades`` float64 (n_underlyings, cap, 3)
    Ring of prints, columns ``TR_TS, TR_SIZE, TR_SIDE`` (aggressor side).
``ist`` int64 (n_underlyings, NIST)
    Per underlying: each ring's head (physical row of its oldest event) and count
    (``I_F_HEAD, I_F_N``, ``I_M_HEAD, I_M_N``, ``I_T_HEAD, I_T_N``), the events each ring dropped when
    full (``I_F_DROPPED, I_M_DROPPED, I_T_DROPPED``) and the latched flag ``I_TOXIC`` (0 / 1).
``fst`` float64 (n_underlyings, NFST)
    Per underlying: ``S_CALM_SINCE``, the start of the cool-down clock (NaN when it is not running),
    and ``S_WINDOW_S``, the window, kept here so that the event functions can trim on arrival without
    the settings.

The event at logical position ``i`` (0 = oldest) of a ring is at physical row ``(head + i) % cap``. An
event function pushes (dropping and counting the oldest event when the ring is full), then trims all
three rings of the underlying to the window ending at the event's time, exactly as the detector does.

Scores: ``out = new_score_out(config)``, float64 of length ``O_MARKOUTS + 2 * H``
----------------------------------------------------------------------------------
``O_SCORE``, ``O_RAW`` (the raw signal, 0 / 1), ``O_ENOUGH`` (``n_fills >= min_fills``), ``O_N_FILLS``,
``O_N_TRADES``, ``O_ONE_SIDED``, ``O_ADVERSE_FRAC`` (NaN when no fill has reached the first horizon),
the score's components ``O_C_ADVERSE`` (the adverse fraction, 0 for NaN), ``O_C_MARKOUT``,
``O_C_FLOW`` (``|flow imbalance|``), ``O_FLOW_IMBALANCE`` (signed), then the size-weighted mean markout
per horizon at ``O_MARKOUTS + h`` (bps, NaN when no fill covers it) and the fills covered per horizon at
``O_MARKOUTS + H + h``. The one-sided component is ``O_ONE_SIDED`` itself.

Notes
-----
Input validation is the detector's job: the kernels assume what :class:`ToxicityDetector` checks
(``u`` a valid row, finite timestamps that do not decrease within each stream of an underlying, side
and aggressor side +1 or -1, sizes, prices and mids finite and > 0) and that ``now`` is not before the
underlying's last event and does not decrease between :func:`tox_update` calls. Scores read the state
only; the event functions and :func:`tox_update` write it.
Pass ``u`` as an integer and every other scalar (``side`` and ``aggressor_side`` too) as a float:
other types work but compile another specialization.

Cost: an event is O(1) amortised (each event is trimmed once); a score is
O(log(ring) + (log(ring) + fills + mids in the window) × horizons + prints in the window).
Sums (the mean markouts, the flow imbalance) are formed in event order, one term at a time.

Examples
--------
The detector's docstring example, on the arrays:

>>> from optmm.quoting import ToxicityConfig
>>> cfg = ToxicityConfig(min_fills=1)
>>> params, st, out = pack_toxicity(cfg), new_toxicity_state(cfg, 1), new_score_out(cfg)
>>> tox_on_fill(*st, 0, 0.0, 1.0, 1.0, 100.0, 100.0)   # we bought at 100.00
>>> tox_on_mid(*st, 0, 0.5, 99.9)                      # the mid falls by 10 bps
>>> s = tox_score_into(*st, params, 0, 1.0, out)
>>> round(float(out[O_MARKOUTS]), 6), float(out[O_ADVERSE_FRAC]), round(s, 6)
(-10.0, 1.0, 0.85)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numba import njit

from optmm.quoting._kernels import twin

if TYPE_CHECKING:  # the detector imports this module: its config is imported where checked
    from optmm.quoting.toxicity import ToxicityConfig

__all__ = [
    "ToxicityState",
    "latch",
    "latch_py",
    "new_score_out",
    "new_toxicity_state",
    "pack_toxicity",
    "ring_bisect",
    "ring_bisect_py",
    "ring_row",
    "ring_row_py",
    "score_rule",
    "score_rule_py",
    "tox_dropped",
    "tox_is_toxic",
    "tox_on_fill",
    "tox_on_mid",
    "tox_on_trade",
    "tox_score",
    "tox_score_into",
    "tox_update",
    "tox_update_into",
]

# params
P_WINDOW_S, P_ADVERSE_BPS, P_SCALE_BPS = 0, 1, 2
P_W_ONE_SIDED, P_W_ADVERSE, P_W_MARKOUT, P_W_FLOW, P_W_SUM = 3, 4, 5, 6, 7
P_THRESHOLD, P_COOLDOWN_S, P_MIN_FILLS, P_CAPACITY, P_N_HORIZONS = 8, 9, 10, 11, 12
P_HORIZONS = 16

# ring columns (column 0 is always the timestamp)
FL_TS, FL_SIDE, FL_SIZE, FL_PRICE, FL_MID = range(5)
MD_TS, MD_MID = range(2)
TR_TS, TR_SIZE, TR_SIDE = range(3)

# ist columns: head and count of each ring (count at head + 1), drops, the latched flag
I_F_HEAD, I_F_N, I_M_HEAD, I_M_N, I_T_HEAD, I_T_N = range(6)
I_F_DROPPED, I_M_DROPPED, I_T_DROPPED, I_TOXIC = 6, 7, 8, 9
NIST = 10

# fst columns
S_CALM_SINCE, S_WINDOW_S = 0, 1
NFST = 2

# score output
O_SCORE, O_RAW, O_ENOUGH, O_N_FILLS, O_N_TRADES, O_ONE_SIDED = 0, 1, 2, 3, 4, 5
O_ADVERSE_FRAC, O_C_ADVERSE, O_C_MARKOUT, O_FLOW_IMBALANCE, O_C_FLOW = 6, 7, 8, 9, 10
O_MARKOUTS = 16

_BPS = 1e4


class ToxicityState(NamedTuple):
    """The arrays of the twin's state (see the module docstring); pass them as ``*state``."""

    fills: np.ndarray
    mids: np.ndarray
    trades: np.ndarray
    ist: np.ndarray
    fst: np.ndarray


def _check_config(where: str, config: object) -> ToxicityConfig:
    from optmm.quoting.toxicity import ToxicityConfig

    if not isinstance(config, ToxicityConfig):
        raise TypeError(f"{where}: config must be a ToxicityConfig, got {type(config).__name__}")
    return config


def pack_toxicity(config: ToxicityConfig) -> np.ndarray:
    """The settings as a float64 array for the kernels (layout in the module docstring).

    Parameters
    ----------
    config : ToxicityConfig

    Returns
    -------
    ndarray of shape (P_HORIZONS + len(config.markout_horizons_s),)
    """
    cfg = _check_config("pack_toxicity", config)
    hs = cfg.markout_horizons_s
    p = np.zeros(P_HORIZONS + len(hs), dtype=np.float64)
    p[P_WINDOW_S] = cfg.window_s
    p[P_ADVERSE_BPS] = cfg.adverse_threshold_bps
    p[P_SCALE_BPS] = cfg.markout_scale_bps
    p[P_W_ONE_SIDED] = cfg.weight_one_sided
    p[P_W_ADVERSE] = cfg.weight_adverse
    p[P_W_MARKOUT] = cfg.weight_markout
    p[P_W_FLOW] = cfg.weight_flow
    p[P_W_SUM] = sum(cfg.weights.values())  # the detector's denominator, same order
    p[P_THRESHOLD] = cfg.threshold
    p[P_COOLDOWN_S] = cfg.cooldown_s
    p[P_MIN_FILLS] = cfg.min_fills
    p[P_CAPACITY] = cfg.capacity
    p[P_N_HORIZONS] = len(hs)
    p[P_HORIZONS:] = hs
    return p


def new_toxicity_state(config: ToxicityConfig, n_underlyings: int) -> ToxicityState:
    """An empty state for ``n_underlyings`` underlyings: no events, nothing toxic, no clock running.

    Parameters
    ----------
    config : ToxicityConfig
        Gives the rings' ``capacity`` and the ``window_s`` they are trimmed to.
    n_underlyings : int
        Rows of the state (>= 1); the kernels' ``u`` indexes them.

    Returns
    -------
    ToxicityState
        ``(fills, mids, trades, ist, fst)``.
    """
    cfg = _check_config("new_toxicity_state", config)
    n = n_underlyings
    if not (isinstance(n, int | np.integer) and not isinstance(n, bool | np.bool_) and n >= 1):
        raise ValueError(f"new_toxicity_state: n_underlyings must be an integer >= 1 (got {n!r})")
    n = int(n)
    cap = cfg.capacity
    fst = np.zeros((n, NFST), dtype=np.float64)
    fst[:, S_CALM_SINCE] = np.nan
    fst[:, S_WINDOW_S] = cfg.window_s
    return ToxicityState(
        fills=np.zeros((n, cap, 5), dtype=np.float64),
        mids=np.zeros((n, cap, 2), dtype=np.float64),
        trades=np.zeros((n, cap, 3), dtype=np.float64),
        ist=np.zeros((n, NIST), dtype=np.int64),
        fst=fst,
    )


def new_score_out(config: ToxicityConfig) -> np.ndarray:
    """A NaN-filled float64 array of length ``O_MARKOUTS + 2 * H`` for :func:`tox_score_into`."""
    cfg = _check_config("new_score_out", config)
    return np.full(O_MARKOUTS + 2 * len(cfg.markout_horizons_s), np.nan)


# --------------------------------------------------------------------------------------------------
# rings


@njit(cache=True, inline="always", error_model="numpy")
def _push(buf, ist, u, ih, idrop):  # pragma: no cover - compiled
    """Make room for one event at the back of ring ``buf[u]`` (head at ``ist[u, ih]``, count at
    ``ih + 1``), dropping and counting the oldest when it is full; returns the physical row to fill."""
    cap = buf.shape[1]
    head = ist[u, ih]
    n = ist[u, ih + 1]
    if n == cap:
        head += 1
        if head == cap:
            head = 0
        n -= 1
        ist[u, ih] = head
        ist[u, idrop] += 1
    row = head + n
    if row >= cap:
        row -= cap
    ist[u, ih + 1] = n + 1
    return row


@njit(cache=True, inline="always", error_model="numpy")
def _drop_through(buf, ist, u, ih, cutoff):  # pragma: no cover - compiled
    """Drop the events with timestamp <= ``cutoff`` from the front of ring ``buf[u]``."""
    cap = buf.shape[1]
    head = ist[u, ih]
    n = ist[u, ih + 1]
    while n > 0 and buf[u, head, 0] <= cutoff:
        head += 1
        if head == cap:
            head = 0
        n -= 1
    ist[u, ih] = head
    ist[u, ih + 1] = n


@njit(cache=True, inline="always", error_model="numpy")
def _trim(fills, mids, trades, ist, fst, u, ts):  # pragma: no cover - compiled
    cutoff = ts - fst[u, S_WINDOW_S]
    _drop_through(fills, ist, u, I_F_HEAD, cutoff)
    _drop_through(mids, ist, u, I_M_HEAD, cutoff)
    _drop_through(trades, ist, u, I_T_HEAD, cutoff)


def ring_row_py(head, i, cap):
    """The physical row of logical position ``i`` of a ring of ``cap`` rows whose oldest event is at
    ``head``."""
    r = head + i
    if r >= cap:
        r -= cap
    return r


def ring_bisect_py(buf, u, head, lo, hi, x):
    """First logical position in [lo, hi] of ring ``buf[u]`` whose timestamp is > ``x`` (timestamps
    sorted): ``lo`` + the number of events in [lo, hi) at or before ``x``."""
    cap = buf.shape[1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if buf[u, ring_row_py(head, mid, cap), 0] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


ring_row = twin(ring_row_py)
ring_bisect = twin(ring_bisect_py)


# --------------------------------------------------------------------------------------------------
# events


@njit(cache=True, error_model="numpy")
def tox_on_fill(fills, mids, trades, ist, fst, u, ts, side, size, price, mid):  # pragma: no cover - compiled
    """One of our fills on underlying ``u`` at ``ts`` (seconds): ``side`` +1 we bought / -1 we sold,
    ``size`` > 0, ``price`` and the ``mid`` at the fill > 0. As :meth:`ToxicityDetector.on_fill`."""
    r = _push(fills, ist, u, I_F_HEAD, I_F_DROPPED)
    fills[u, r, FL_TS] = ts
    fills[u, r, FL_SIDE] = side
    fills[u, r, FL_SIZE] = size
    fills[u, r, FL_PRICE] = price
    fills[u, r, FL_MID] = mid
    _trim(fills, mids, trades, ist, fst, u, ts)


@njit(cache=True, error_model="numpy")
def tox_on_mid(fills, mids, trades, ist, fst, u, ts, mid):  # pragma: no cover - compiled
    """The mid (> 0) of the instrument the fills of ``u`` are marked against, at ``ts``."""
    r = _push(mids, ist, u, I_M_HEAD, I_M_DROPPED)
    mids[u, r, MD_TS] = ts
    mids[u, r, MD_MID] = mid
    _trim(fills, mids, trades, ist, fst, u, ts)


@njit(cache=True, error_model="numpy")
def tox_on_trade(fills, mids, trades, ist, fst, u, ts, size, aggressor_side):  # pragma: no cover - compiled
    """A market print on ``u`` of ``size`` > 0; ``aggressor_side`` +1 buyer-initiated, -1 seller."""
    r = _push(trades, ist, u, I_T_HEAD, I_T_DROPPED)
    trades[u, r, TR_TS] = ts
    trades[u, r, TR_SIZE] = size
    trades[u, r, TR_SIDE] = aggressor_side
    _trim(fills, mids, trades, ist, fst, u, ts)


# --------------------------------------------------------------------------------------------------
# score


def score_rule_py(fills, mids, trades, ist, params, u, now, out, write):
    """``(score, raw signal)`` of underlying ``u`` at ``now``; the details into ``out`` (layout ``O_*``)
    if ``write``. The score of :mod:`optmm.quoting.toxicity`'s docstring; reads the state only."""
    lo = now - params[P_WINDOW_S]
    cap = fills.shape[1]

    # fills in (lo, now]: logical [f0, f1)
    fh = ist[u, I_F_HEAD]
    fn = ist[u, I_F_N]
    f0 = ring_bisect_py(fills, u, fh, 0, fn, lo)
    f1 = ring_bisect_py(fills, u, fh, f0, fn, now)
    n = f1 - f0
    side_sum = 0.0
    for i in range(f0, f1):
        side_sum += fills[u, ring_row_py(fh, i, cap), FL_SIDE]
    one_sided = abs(side_sum) / n if n > 0 else 0.0

    # mids at or before now: logical [0, m1)
    mh = ist[u, I_M_HEAD]
    m1 = ring_bisect_py(mids, u, mh, 0, ist[u, I_M_N], now)

    nh = int(params[P_N_HORIZONS])
    adverse_bps = params[P_ADVERSE_BPS]
    adverse_frac = math.nan
    worst = math.inf  # the lowest mean markout over the horizons with one
    for h in range(nh):
        hz = params[P_HORIZONS + h]
        wsum = 0.0
        num = 0.0
        n_mat = 0
        n_adv = 0
        k0 = 0  # horizons are reached in fill order: each fill's answer is at or after the last one's
        for i in range(f0, f1):
            r = ring_row_py(fh, i, cap)
            t = fills[u, r, FL_TS]
            th = t + hz
            if not th <= now:  # not matured, nor any later fill
                break
            if i == f0:
                k0 = ring_bisect_py(mids, u, mh, 0, m1, th)
            else:  # the next fills' answers by walking on: they come a few mids apart
                while k0 < m1 and mids[u, ring_row_py(mh, k0, cap), MD_TS] <= th:
                    k0 += 1
            mid_h = fills[u, r, FL_MID]
            if k0 > 0:
                rk = ring_row_py(mh, k0 - 1, cap)
                if mids[u, rk, MD_TS] >= t:  # a mid at or after the fill, the last by t + h
                    mid_h = mids[u, rk, MD_MID]
            price = fills[u, r, FL_PRICE]
            size = fills[u, r, FL_SIZE]
            mk = fills[u, r, FL_SIDE] * (mid_h - price) / price * _BPS
            wsum += size
            num += size * mk
            n_mat += 1
            if mk < -adverse_bps:
                n_adv += 1
        mean = num / wsum if wsum > 0.0 else math.nan
        if h == 0 and n_mat > 0:
            adverse_frac = n_adv / n_mat
        if mean < worst:  # NaN never is
            worst = mean
        if write:
            out[O_MARKOUTS + h] = mean
            out[O_MARKOUTS + nh + h] = n_mat
    c_markout = 0.0
    if worst < math.inf:
        c_markout = min(max(-worst / params[P_SCALE_BPS], 0.0), 1.0)
    c_adverse = 0.0 if math.isnan(adverse_frac) else adverse_frac

    # prints in (lo, now]
    th_ = ist[u, I_T_HEAD]
    tn = ist[u, I_T_N]
    t0 = ring_bisect_py(trades, u, th_, 0, tn, lo)
    t1 = ring_bisect_py(trades, u, th_, t0, tn, now)
    total = 0.0
    signed = 0.0
    for i in range(t0, t1):
        r = ring_row_py(th_, i, cap)
        total += trades[u, r, TR_SIZE]
        signed += trades[u, r, TR_SIZE] * trades[u, r, TR_SIDE]
    flow = signed / total if total > 0.0 else 0.0
    c_flow = abs(flow)

    enough = n >= params[P_MIN_FILLS]
    score = 0.0
    if enough:  # the detector's order of operations
        score = (
            params[P_W_ONE_SIDED] * one_sided
            + params[P_W_ADVERSE] * c_adverse
            + params[P_W_MARKOUT] * c_markout
            + params[P_W_FLOW] * c_flow
        ) / params[P_W_SUM]
        score = min(max(score, 0.0), 1.0)
    raw = enough and score >= params[P_THRESHOLD]
    if write:
        out[O_SCORE] = score
        out[O_RAW] = 1.0 if raw else 0.0
        out[O_ENOUGH] = 1.0 if enough else 0.0
        out[O_N_FILLS] = n
        out[O_N_TRADES] = t1 - t0
        out[O_ONE_SIDED] = one_sided
        out[O_ADVERSE_FRAC] = adverse_frac
        out[O_C_ADVERSE] = c_adverse
        out[O_C_MARKOUT] = c_markout
        out[O_FLOW_IMBALANCE] = flow
        out[O_C_FLOW] = c_flow
    return score, raw


score_rule = twin(score_rule_py)


@njit(cache=True, error_model="numpy")
def tox_score(fills, mids, trades, ist, fst, params, u, now):  # pragma: no cover - compiled
    """The score of underlying ``u`` at ``now`` (in [0, 1]; 0 with fewer than ``min_fills`` fills).

    As ``ToxicityDetector.score(u, now).score``; reads the state only.
    """
    empty = fst[u, :0]  # an empty view, never written
    s, _ = score_rule(fills, mids, trades, ist, params, u, now, empty, False)
    return s


@njit(cache=True, error_model="numpy")
def tox_score_into(fills, mids, trades, ist, fst, params, u, now, out):  # pragma: no cover - compiled
    """:func:`tox_score`, with the score's details written into ``out`` (layout: ``O_*``, module
    docstring; length ``O_MARKOUTS + 2 * H``, see :func:`new_score_out`). Returns the score."""
    s, _ = score_rule(fills, mids, trades, ist, params, u, now, out, True)
    return s


# --------------------------------------------------------------------------------------------------
# latch


def latch_py(toxic, calm_since, now, raw, cooldown_s):
    """One update of an underlying's latch: ``(toxic, calm_since, changed)`` after it.

    A clear underlying turns toxic as soon as the raw signal fires. A toxic one is cleared once its
    raw signal has stayed off for ``cooldown_s``, measured between updates: ``calm_since`` (NaN when the
    clock is not running) starts at the first update that sees it off, and a raw signal resets it.
    ``changed``: this update flipped the flag (the caller tells the risk controller then, and only then).
    :meth:`ToxicityDetector.update` runs this form, :func:`tox_update` its compilation.
    """
    if not toxic:
        if raw:
            return True, math.nan, True
        return False, calm_since, False
    if raw:
        return True, math.nan, False
    since = now if math.isnan(calm_since) else calm_since
    if now - since >= cooldown_s:
        return False, math.nan, True
    return True, since, False


latch = twin(latch_py)


@njit(cache=True, inline="always", error_model="numpy")
def _latch(ist, fst, u, now, raw, cooldown_s):  # pragma: no cover - compiled
    """:func:`latch_py` on the state of ``u``: ``(toxic, changed)``."""
    toxic, since, changed = latch(ist[u, I_TOXIC] != 0, fst[u, S_CALM_SINCE], now, raw, cooldown_s)
    ist[u, I_TOXIC] = 1 if toxic else 0
    fst[u, S_CALM_SINCE] = since
    return toxic, changed


@njit(cache=True, error_model="numpy")
def tox_update(fills, mids, trades, ist, fst, params, u, now):  # pragma: no cover - compiled
    """Score underlying ``u`` at ``now`` and apply the latch and cool-down: ``(toxic, changed, score)``.

    ``toxic`` is the latched flag after the call and ``changed`` whether this call flipped it (the
    caller tells the risk controller then, and only then). As one underlying of
    ``ToxicityDetector.update(now)``; ``now`` should not decrease between calls.
    """
    empty = fst[u, :0]  # an empty view, never written
    s, raw = score_rule(fills, mids, trades, ist, params, u, now, empty, False)
    toxic, changed = _latch(ist, fst, u, now, raw, params[P_COOLDOWN_S])
    return toxic, changed, s


@njit(cache=True, error_model="numpy")
def tox_update_into(fills, mids, trades, ist, fst, params, u, now, out):  # pragma: no cover - compiled
    """:func:`tox_update`, with the score's details written into ``out`` as :func:`tox_score_into`."""
    s, raw = score_rule(fills, mids, trades, ist, params, u, now, out, True)
    toxic, changed = _latch(ist, fst, u, now, raw, params[P_COOLDOWN_S])
    return toxic, changed, s


@njit(cache=True, error_model="numpy")
def tox_is_toxic(ist, u):  # pragma: no cover - compiled
    """The latched flag of ``u`` as of its last :func:`tox_update`."""
    return ist[u, I_TOXIC] != 0


@njit(cache=True, error_model="numpy")
def tox_dropped(ist):  # pragma: no cover - compiled
    """Events dropped because a ring was full, over every stream and underlying (as
    :attr:`ToxicityDetector.dropped`)."""
    d = 0
    for u in range(ist.shape[0]):
        d += ist[u, I_F_DROPPED] + ist[u, I_M_DROPPED] + ist[u, I_T_DROPPED]
    return d
