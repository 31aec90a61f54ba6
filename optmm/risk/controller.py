"""The layered risk controller: gates every quote, checks it pre-trade, and keeps the risk state.

A :class:`RiskController` owns the risk state of a book (per contract, per underlying, for the book)
and answers, for each quote the quoter wants to show, which layer decides and what sizes may be
shown (:meth:`RiskController.decide`). Signals are checked in this order and the first that fires
decides (a book-level breach applies to every underlying):

======  ===========================================================================================
layer   rule
======  ===========================================================================================
KILL    the kill switch is thrown (:meth:`~RiskController.kill`, or :meth:`~RiskController.mark_pnl`
        on a daily-loss or drawdown breach): both sizes 0; ``hedge_delta_shares`` = the
        underlying's delta (flatten it). Only a person resets it (:meth:`~RiskController.reset_kill`).
TOXIC   the underlying is flagged toxic (:meth:`~RiskController.set_toxicity`): both sizes 0.
STALE   no market data for the underlying for more than ``stale_after_ms``: both sizes 0.
HARD    a hard limit is breached (the underlying's or the book's, or the contract's position):
        reduce-only. A side is kept only if its fill reduces the absolute value of every breached
        metric (for a worst-scenario-loss breach: if it gains in the worst cell of the grid);
        ``hedge_delta_shares`` = the underlying's delta, for the hedger.
SOFT    a soft level is breached: sizes x ``soft_size_factor`` (floored, but at least 1 contract
        where the quoter asked for one or more), spread x ``soft_spread_factor``.
NORMAL  the sizes asked for.
======  ===========================================================================================

Then, in every layer that quotes, the pre-trade check: a full fill of each side must keep the
contract's position, the underlying's ``delta_shares``, ``delta_dollars``, ``gamma_dollars_1pct``,
``vega_per_vol_point``, ``worst_scenario_loss`` and the book's ``delta_dollars``,
``gamma_dollars_1pct``, ``vega_per_vol_point``, ``worst_scenario_loss`` within their hard limits.
Each metric moves linearly with the size (by the contract's per-contract Greek; the loss is the
largest over the scenario grid's cells, each of which moves by the contract's P&L in it), so the
largest size that fits is a closed form; the side is cut to it (whole contracts), the size is
confirmed in the fill's own arithmetic (so a fill of the allowed size never lands past a limit, not
by one ulp), and the side is dropped if that is less than one contract. A side that reduces a
breached metric may fill until the metric reaches the limit on the other side of 0, not beyond. The
worst-scenario loss is re-measured by a full revaluation on the limit set's cadence
(``scenario_every_s``, by :meth:`~RiskController.on_market_data`) and after any fill whose vega
reaches ``scenario_after_fill_vega``; between revaluations each fill updates the P&L of every grid
cell exactly (P&L is linear in the position at the grid's market).

Contracts are priced on their terms (:mod:`optmm.pricing`: time to settlement, style, the
underlying's carry with cash dividends): Greeks by :func:`~optmm.pricing.contract_greeks`, the grid's
cells by the scenario kernel for plain contracts and :func:`~optmm.pricing.contract_price` for the
others.

The book's VaR (a ``var`` limit; :meth:`~RiskController.set_var_scenarios`) is measured with the
grid: the book's P&L on historical scenarios (each underlying its own spot and vol move) by full
revaluation, and :func:`optmm.risk.var.var_es` of it; it is graded like the other book limits
(reduce-only in HARD: a side is kept if it gains in the VaR scenario) but is not part of the
pre-trade check.

Units are those of :func:`optmm.risk.exposures`: ``delta_shares`` (shares),
``delta_dollars`` (``delta_shares`` x the current spot), ``gamma_dollars_1pct``,
``vega_per_vol_point``; P&L limits bound losses (positive numbers).

How it is fast
--------------
The state is a few flat float64 arrays (see :mod:`optmm.risk._controller_kernels`): a contract table
with per-contract Greeks (one :func:`optmm.pricing.contract_greeks` call, refreshed by
:meth:`~RiskController.recompute` and on the scenario cadence), per-underlying aggregates and
limits, the book's figures. One decision is one numba call over them that returns plain numbers;
:meth:`~RiskController.decide_many` runs the same function in a compiled loop. Fills update the
aggregates incrementally (:meth:`~RiskController.on_fill`); :meth:`~RiskController.recompute`
rebuilds everything from the positions and reports the difference.

Audit
-----
With an :class:`~optmm.risk.audit.AuditTrail`, the controller records (trigger, measured value,
threshold) for: every layer change of an underlying (``"state"``), every pull (entering KILL, TOXIC
or STALE from a quoting layer: ``"pull"``), every side cut (``"cut"``, sizes before and after in
``detail``) or dropped (``"drop"``) by a decision, every kill (``"kill"``) and reset (``"reset"``),
every full recompute (``"recompute"``: measured = the difference found) and every difference above
the tolerance (``"mismatch"``). A decision that changes nothing and cuts nothing records nothing.
Layer changes are detected when the state changes (fills, hedges, market data, P&L marks,
toxicity, kill, reset) and, for staleness (time passing), by the next decision or :meth:`check`.
Kills, resets, layer changes and pulls are committed to the database before the call returns; the
other events are flushed in the trail's batches (and when it is closed, or the interpreter exits).

Example::

    from optmm import Book, Market
    from optmm.risk import AuditTrail, LimitSet, QuoteRequest, RiskController

    ctl = RiskController(Book.load("scenarios/examples/book.csv"),
                         Market.load("scenarios/examples/market.toml"),
                         LimitSet.load("scenarios/limits/desk.toml"), audit=AuditTrail("out/audit.db"))
    ids = ctl.add_contracts("SPY", "call", [580.0, 590.0, 600.0], "2026-12-18")
    d = ctl.decide(QuoteRequest(int(ids[1]), bid_size=10, ask_size=10))
    # d.layer, d.bid_size, d.ask_size, d.spread_factor, d.trigger, d.hedge_delta_shares
    ctl.on_fill(int(ids[1]), +d.bid_size, price=12.3)  # our bid was hit: we bought
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optmm import pricing
from optmm.book import Book
from optmm.codes import BOOK_LABEL, BOOK_SCOPE, Kind, MetricCode
from optmm.market import Market
from optmm.risk import _controller_kernels as _k
from optmm.risk._kernels import reval_cells
from optmm.risk.audit import AuditEvent, AuditTrail, Layer
from optmm.risk.exposures import market_vols
from optmm.risk.limits import LimitSet, Metric
from optmm.risk.var import tail_count, var_es
from optmm.units import DAYS_PER_YEAR, gamma_dollars_1pct_py, vega_per_vol_point_py

__all__ = ["Decision", "QuoteRequest", "RiskController", "underlying_row"]

#: The metrics with a limit column per scope, in the kernels' order (their codes are these positions).
METRICS: tuple[Metric, ...] = tuple(Metric[c.name] for c in MetricCode if c < BOOK_SCOPE)
_UNDERLYING_METRICS = METRICS[1:6]
_BOOK_METRICS = METRICS[2:]
_LAYERS: tuple[Layer, ...] = tuple(sorted(Layer, key=int))
_PULLED = int(Layer.STALE)  # layers at or below this quote nothing
_KIND_CODES = {"call": Kind.CALL, "put": Kind.PUT}
_STYLES = ("american", "european")
_SETTLEMENTS = ("AM", "PM")
_Key = tuple[int, int, float, int, bool, float]  # underlying, kind, strike, expiry day, American, t


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """What the quoter wants to show for one contract.

    Attributes
    ----------
    contract : int
        Index into the controller's contract table (:meth:`RiskController.contract_index`,
        :meth:`RiskController.add_contracts`).
    bid_size, ask_size : float
        Contracts, >= 0 (0: no quote on that side).
    """

    contract: int
    bid_size: float
    ask_size: float


@dataclass(frozen=True, slots=True)
class Decision:
    """What may be shown for one contract.

    Attributes
    ----------
    layer : Layer
        The deciding layer for the contract's underlying (or the book; HARD / SOFT also for the
        contract's own position).
    bid_size, ask_size : float
        Allowed sizes after the layer's rule and the pre-trade check, whole contracts (0 = side
        dropped).
    spread_factor : float
        >= 1: the soft layer widens the spread by ``soft_spread_factor``.
    trigger : str
        The metric (a :class:`~optmm.risk.limits.Metric` value) or signal (``"toxicity"``,
        ``"stale"``, the kill's trigger) that decided; ``""`` when NORMAL.
    hedge_delta_shares : float
        The delta (shares) the hedger should take off this underlying now: the underlying's
        ``delta_shares`` in the HARD and KILL layers, else 0.
    """

    layer: Layer
    bid_size: float
    ask_size: float
    spread_factor: float
    trigger: str
    hedge_delta_shares: float


def _kind_code(kind: Any) -> int:
    if isinstance(kind, str):
        named = _KIND_CODES.get(kind.strip().lower())
        if named is None:
            raise ValueError(f"kind: expected 'call' or 'put', got {kind!r}")
        return int(named)
    code = int(kind)
    if code not in (Kind.CALL, Kind.PUT):
        raise ValueError(f"kind: expected a call or a put, got {kind!r}")
    return code


def _terms_text(name: str, values: np.ndarray, allowed: tuple[str, ...]) -> np.ndarray | None:
    """Per-contract ``style`` / ``settlement`` text, checked: None where every one is the default
    (None or ``""``), else an array of the allowed spellings (``""`` = the default)."""
    out = np.empty(values.size, dtype=object)
    for i, v in enumerate(values.tolist()):
        text = "" if v is None else v.strip() if isinstance(v, str) else None
        if text is None or (text and text.lower() not in {a.lower() for a in allowed}):
            raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))} or None, got {v!r}")
        out[i] = next((a for a in allowed if a.lower() == text.lower()), "")
    return out if any(out.tolist()) else None


def _day(expiry: Any) -> int:
    day = np.asarray(expiry, dtype="datetime64[D]")
    if day.ndim or np.isnat(day):
        raise ValueError(f"expiry: expected one date, got {expiry!r}")
    return int(day.astype(np.int64))


@dataclass(frozen=True, slots=True)
class _VarScenarios:
    """Historical scenarios of the book's VaR, checked: one row per scenario, one column per
    underlying (relative spot moves, absolute vol moves)."""

    labels: tuple[Any, ...]
    columns: dict[str, int]
    spot: np.ndarray  # (scenarios, columns)
    vol: np.ndarray
    days: float = 0.0  # calendar days passing in every scenario

    @classmethod
    def check(
        cls, spot_shift: Any, vol_shift: Any, underlyings: list[str], where: str, days: float = 0.0
    ) -> _VarScenarios:
        """Refuse scenarios that cannot be used (one line naming the scenario and the underlying)."""
        head = f"{where}: VaR scenarios"
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0.0 <= days <= 3650.0:
            raise ValueError(f"{head}: days must be a number of calendar days in [0, 3650], got {days!r}")
        if not (isinstance(spot_shift, pd.DataFrame) and isinstance(vol_shift, pd.DataFrame)):
            raise ValueError(
                f"{head}: spot_shift and vol_shift must both be pandas DataFrames (one row per scenario, "
                f"one column per underlying), got {type(spot_shift).__name__} and {type(vol_shift).__name__}"
            )
        if len(spot_shift) == 0:
            raise ValueError(f"{head}: no scenarios (spot_shift has no rows)")
        if not spot_shift.index.equals(vol_shift.index):
            raise ValueError(f"{head}: spot_shift and vol_shift must have the same index (the scenarios)")
        names = [str(c) for c in spot_shift.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{head}: an underlying has two columns in spot_shift")
        if set(names) != {str(c) for c in vol_shift.columns} or len(vol_shift.columns) != len(names):
            raise ValueError(f"{head}: spot_shift and vol_shift must have the same columns (the underlyings)")
        labels = tuple(spot_shift.index.tolist())
        arrays = []
        for frame, what in ((spot_shift, "spot move"), (vol_shift, "vol move")):
            table = np.empty((len(frame), len(names)))
            position = {str(c): i for i, c in enumerate(frame.columns)}
            for j, name in enumerate(names):
                col = frame.iloc[:, position[name]]
                values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)  # text: NaN, refused
                bad = ~np.isfinite(values) | ((values <= -1.0) if what == "spot move" else False)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    need = "a finite number > -1" if what == "spot move" else "a finite number"
                    given = col.iloc[i]
                    shown = float(given) if isinstance(given, float | np.floating | np.integer) else given
                    raise ValueError(
                        f"{head}: scenario {labels[i]}, {name}: the {what} {shown!r} must be {need}"
                    )
                table[:, j] = values
            arrays.append(table)
        out = cls(labels, {n: j for j, n in enumerate(names)}, arrays[0], arrays[1], float(days))
        for u in underlyings:
            out.column(u, where)
        return out

    def column(self, underlying: str, where: str) -> int:
        """The column of ``underlying``; an underlying without one is refused (its P&L would be
        left out of the VaR)."""
        j = self.columns.get(underlying)
        if j is None:
            raise ValueError(
                f"{where}: the VaR scenarios have no column for {underlying!r}: every underlying of the "
                "controller needs its spot and vol moves"
            )
        return j

    def matrices(self, underlyings: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Spot and vol moves of ``underlyings``, each of shape (underlyings, scenarios)."""
        cols = [self.columns[u] for u in underlyings]
        return np.ascontiguousarray(self.spot[:, cols].T), np.ascontiguousarray(self.vol[:, cols].T)


class _Fixed:
    """A clock that always reads one time (the replay of a recorded event)."""

    def __init__(self, ts: float) -> None:
        self.ts = ts

    def __call__(self) -> float:
        return self.ts


class RiskController:
    """The layered risk controller over a book, a market and a limit set.

    Parameters
    ----------
    book : Book
        The positions at the start. Options are collapsed into a contract table, one row per
        (underlying, kind, strike, expiry): position in contracts (the first row's multiplier is
        the contract's; rows with another multiplier count pro rata), vol = the book's override for
        the contract if a row has one (the first), else the market's surface. Stock rows are the
        underlying's stock (hedge) position.
    market : Market
        The market snapshot: spots (the start of :meth:`on_market_data`), rates, yields, surfaces.
        Vols follow the market's sticky rule as spots move (``market.vols`` with the spot's move
        from the snapshot).
    limits : LimitSet
        Hard and soft limits, soft-layer factors, the scenario grid and cadence, the stale age.
    audit : AuditTrail, optional
        Where events go (see the module docstring); None records nothing.
    clock : callable, default time.time
        Seconds; used for staleness, the scenario cadence and event timestamps.
    market_ts : float, optional
        Time of the market snapshot in the clock's seconds (default: now). An underlying is stale
        once ``clock() - last data time`` exceeds ``stale_after_ms``.
    var_spot_shift, var_vol_shift : pandas.DataFrame, optional
        The historical scenarios of the book's VaR (:meth:`set_var_scenarios`), both or neither.
        Required when ``limits`` has a ``var`` limit.
    var_days : float, default 0
        Calendar days passing in every VaR scenario (:meth:`set_var_scenarios`).

    Notes
    -----
    The contract table only grows (:meth:`add_contracts`); indices are stable. The controller is
    not thread-safe: call it from one thread (the quoter's).
    """

    #: Relative tolerance of :meth:`recompute` (difference / max(1, |value|, gross of the terms)).
    MISMATCH_RTOL = 1e-9

    def __init__(
        self,
        book: Book,
        market: Market,
        limits: LimitSet,
        *,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.time,
        market_ts: float | None = None,
        var_spot_shift: pd.DataFrame | None = None,
        var_vol_shift: pd.DataFrame | None = None,
        var_days: float = 0.0,
    ) -> None:
        book.check_market(market)
        self._market = market
        self._limits = limits
        self._audit = audit
        self._clock = clock
        now = float(clock())
        ts = now if market_ts is None else float(market_ts)
        self._spot_shocks = np.asarray(limits.scenario_spot, dtype=np.float64)
        self._vol_shocks = np.asarray(limits.scenario_vol, dtype=np.float64)
        n_s, n_v = self._spot_shocks.size, self._vol_shocks.size
        self._shock_spot_g = np.repeat(self._spot_shocks, n_v)  # (G,)
        self._shock_vol_g = np.tile(self._vol_shocks, n_s)
        self._n_cells = n_s * n_v

        self._names: list[str] = []
        self._uindex: dict[str, int] = {}
        self._keys: dict[_Key, int] = {}
        self._carry = pricing.Carry((), np.zeros(0), np.zeros(0), (), ())  # (set with the underlyings)
        self._reuse = pricing.Reuse()  # the slow engines' last figures (American, cash dividends)
        self._var: _VarScenarios | None = None
        self._var_index = -1  # the VaR scenario (row of the scenarios) at the last revaluation
        self._c_u = np.zeros(0, dtype=np.intp)
        self._c_kind = np.zeros(0, dtype=np.int8)
        self._c_strike = np.zeros(0)
        self._c_expiry = np.zeros(0, dtype="datetime64[D]")
        self._c_t = np.zeros(0)
        self._c_american = np.zeros(0, dtype=bool)
        self._c_override = np.zeros(0)
        self._c_vol = np.zeros(0)
        self._cf = np.zeros((0, _k.CCELL + self._n_cells))
        self._ust = np.zeros((1, _k.NUS))
        self._cells = np.zeros((1, self._n_cells))
        self._stock_cells = np.zeros((0, self._n_cells))
        self._layer_out = np.zeros((0, _k.N_LAYER_OUT))
        self._prm = np.zeros(_k.NPRM)
        self._prm[_k.P_STALE_S] = float(limits.stale_after_ms) / 1000.0
        self._prm[_k.P_SOFT_SIZE] = float(limits.soft_size_factor)
        self._prm[_k.P_SOFT_SPREAD] = float(limits.soft_spread_factor)
        self._aux = np.zeros(_k.NAUX)
        self._detail_prefix = ""
        self._replaying = False
        self._ust[0, _k.ULAYER] = int(Layer.NORMAL)
        self._set_limits(self._ust.shape[0] - 1, None)
        self._kill_info: tuple[str, float, float] = ("manual", math.nan, math.nan)
        self._toxic_info: dict[int, tuple[float, float]] = {}
        self._hwm = 0.0
        self._descriptions: dict[int, str] = {}
        self._trig_names = [""] * (_k.VAR + 2)  # the last one, read for T_NONE (-1), stays ""
        for m in METRICS:
            self._trig_names[METRICS.index(m)] = m.value
            self._trig_names[_k.BOOK + METRICS.index(m)] = m.value
        self._trig_names[_k.T_TOXIC] = "toxicity"
        self._trig_names[_k.T_STALE] = "stale"
        self._trig_names[_k.T_KILL] = "manual"
        self._trig_names[_k.VAR] = Metric.VAR.value

        # underlyings of the book (sorted), then its option contracts
        names = sorted(pd.unique(np.asarray(book.underlying, dtype=object)).tolist())
        if var_spot_shift is not None or var_vol_shift is not None:
            self._var = _VarScenarios.check(var_spot_shift, var_vol_shift, names, "RiskController", var_days)
        elif limits.book(Metric.VAR) is not None:
            raise ValueError(
                f"RiskController: the limit set {limits.name!r} ({limits.source}) has a var limit but no "
                "VaR scenarios were given: pass var_spot_shift= and var_vol_shift= (one row per "
                "historical scenario, one column per underlying)"
            )
        self._add_underlyings(names, ts)
        opt = np.flatnonzero(book.is_option)
        t_rows, american_rows = pricing.book_terms(book, market)
        if opt.size:
            qm = np.asarray(book.quantity)[opt] * np.asarray(book.multiplier)[opt]
            frame = pd.DataFrame(
                {
                    "underlying": np.asarray(book.underlying, dtype=object)[opt],
                    "kind": np.asarray(book.kind)[opt].astype(np.int64),
                    "strike": np.asarray(book.strike)[opt],
                    "expiry": np.asarray(book.expiry, dtype="datetime64[D]")[opt].view(np.int64),
                    "multiplier": np.asarray(book.multiplier)[opt],
                    "vol": np.asarray(book.vol)[opt],
                    "qm": qm,
                    "american": np.asarray(american_rows, dtype=bool)[opt],
                    "t": np.asarray(t_rows, dtype=np.float64)[opt],
                }
            )
            # a contract is also its terms: the same strike and expiry with another style or
            # settlement is another contract
            agg = frame.groupby(["underlying", "kind", "strike", "expiry", "american", "t"], sort=False).agg(
                multiplier=("multiplier", "first"), vol=("vol", "first"), qm=("qm", "sum")
            )
            idx = agg.index
            self._append_contracts(
                np.array([self._uindex[u] for u in idx.get_level_values("underlying")], dtype=np.intp),
                idx.get_level_values("kind").to_numpy(dtype=np.int8),
                idx.get_level_values("strike").to_numpy(dtype=np.float64),
                idx.get_level_values("expiry").to_numpy(dtype=np.int64).astype("datetime64[D]"),
                idx.get_level_values("t").to_numpy(dtype=np.float64),
                idx.get_level_values("american").to_numpy(dtype=bool),
                agg["multiplier"].to_numpy(dtype=np.float64),
                agg["vol"].to_numpy(dtype=np.float64),
                agg["qm"].to_numpy(dtype=np.float64) / agg["multiplier"].to_numpy(dtype=np.float64),
            )
        is_stock = np.flatnonzero(~book.is_option)
        for i in is_stock.tolist():
            u = self._uindex[str(book.underlying[i])]
            self._ust[u, _k.USTOCK] += float(book.quantity[i] * book.multiplier[i])
        self._refresh_greeks()
        self._revalue()
        now = float(clock())
        if market_ts is None:  # the snapshot is as fresh as the controller
            self._ust[:-1, _k.ULAST] = now
        self._last_full = now
        self._refresh_layers(now)

    @classmethod
    def for_underlyings(
        cls,
        names: Sequence[str],
        market: Market,
        limits: LimitSet,
        *,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.time,
        market_ts: float | None = None,
        var_spot_shift: pd.DataFrame | None = None,
        var_vol_shift: pd.DataFrame | None = None,
        var_days: float = 0.0,
    ) -> RiskController:
        """A controller over no position: one state row per underlying of ``names``, in that order
        (the row of ``names[j]`` is ``j``), no stock, no contracts (:meth:`add_contracts` adds those
        to quote). The other parameters are the constructor's.

        Raises
        ------
        ValueError
            A name that is not a string, a duplicate, or an underlying without a spot in ``market``.
        """
        names = list(names)
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"for_underlyings: an underlying's name must be a string, got {name!r}")
            if names.count(name) > 1:
                raise ValueError(f"for_underlyings: {name!r} is named twice")
            if name not in market.spot:
                raise ValueError(f"for_underlyings: {name!r} has no spot in the market ({market.source})")
        empty = Book(
            id=np.zeros(0, dtype=object), underlying=np.zeros(0, dtype=object),
            kind=np.zeros(0, dtype=np.int8), strike=np.zeros(0), expiry=np.zeros(0, dtype="datetime64[D]"),
            quantity=np.zeros(0), multiplier=np.zeros(0), vol=np.zeros(0), source="for_underlyings",
        )  # fmt: skip
        ctl = cls(
            empty, market, limits, audit=audit, clock=clock, market_ts=market_ts,
            var_spot_shift=var_spot_shift, var_vol_shift=var_vol_shift, var_days=var_days,
        )  # fmt: skip
        if ctl._var is not None:
            for name in names:
                ctl._var.column(name, "for_underlyings")
        ctl._add_underlyings(names, ctl._last_full if market_ts is None else float(market_ts))
        ctl._refresh_greeks()
        ctl._revalue()
        ctl._refresh_layers(ctl._last_full)
        return ctl

    def __repr__(self) -> str:
        """What the controller holds, from its state as last recorded (no layer is re-evaluated)."""
        names = self._names
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        flagged = [f"{n} {_LAYERS[int(self._ust[u, _k.ULAYER])].name}" for u, n in enumerate(names)]
        flagged = [f for f in flagged if not f.endswith(" NORMAL")]
        layers = ", ".join(flagged[:4]) + (", ..." if len(flagged) > 4 else "") if flagged else "all NORMAL"
        audit = "no audit" if self._audit is None else f"audit {self._audit.path or ':memory:'!r}"
        return (
            f"RiskController({len(names)} underlyings ({shown}), {self.n_contracts} contracts, "
            f"limits {self._limits.name!r} {self._limits.content_hash[:8]}, "
            f"{'KILLED' if self.killed else layers}, {audit})"
        )

    # ----------------------------------------------------------------------------------------------
    # the contract table

    @property
    def underlyings(self) -> tuple[str, ...]:
        """The underlyings, in the order of the state's rows."""
        return tuple(self._names)

    def kernel_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The controller's state arrays as its compiled kernels take them: ``(contracts, underlyings,
        parameters, scenario cells, stock cells)`` (layouts in :mod:`optmm.risk._controller_kernels`).

        The arrays themselves, not copies: a caller that runs the kernels on its own (the simulator,
        one copy per path) copies them first."""
        return self._cf, self._ust, self._prm, self._cells, self._stock_cells

    @property
    def n_contracts(self) -> int:
        """How many contracts the table holds."""
        return int(self._cf.shape[0])

    @property
    def limits(self) -> LimitSet:
        return self._limits

    def contract_index(
        self,
        underlying: str,
        kind: Any,
        strike: float,
        expiry: Any,
        *,
        style: str | None = None,
        settlement: str | None = None,
    ) -> int:
        """Index of a contract in the table (``kind``: a :class:`~optmm.book.Kind` or ``"call"`` /
        ``"put"``; ``expiry``: a date; ``style`` and ``settlement`` as in :meth:`add_contracts`,
        default the underlying's). Raises KeyError if it is not there."""
        if underlying not in self._uindex:
            raise KeyError(f"no contract {underlying} {kind} {strike} {expiry} in the table")
        day = _day(expiry)
        t, american = self._terms(
            underlying, np.array([day], dtype="datetime64[D]"), np.array([style], dtype=object),
            np.array([settlement], dtype=object),
        )  # fmt: skip
        key = (self._uindex[underlying], _kind_code(kind), float(strike), day, bool(american[0]), float(t[0]))
        try:
            return self._keys[key]
        except KeyError:
            raise KeyError(f"no contract {underlying} {kind} {strike} {expiry} in the table") from None

    def add_contracts(
        self,
        underlying: str,
        kind: Any,
        strike: Any,
        expiry: Any,
        *,
        multiplier: float = 100.0,
        style: Any = None,
        settlement: Any = None,
    ) -> np.ndarray:
        """Add contracts the quoter will quote (position 0); contracts already there are kept.

        Parameters
        ----------
        underlying : str
            Must have a spot and a vol surface in the market. A new underlying gets a row (its
            market data time: now).
        kind, strike, expiry : scalar or array_like
            Broadcast together: ``"call"`` / ``"put"`` (or :class:`~optmm.book.Kind`), strikes > 0,
            expiry dates.
        multiplier : float, default 100
            Units of the underlying per contract (for new contracts).
        style : str or array_like of str, optional
            ``"american"`` / ``"european"`` per contract (broadcast with ``kind``); None or ``""``:
            the underlying's default (:func:`optmm.pricing.american_flags`).
        settlement : str or array_like of str, optional
            ``"AM"`` / ``"PM"`` per contract; None or ``""``: the underlying's default
            (:func:`optmm.pricing.option_times`).

        Returns
        -------
        ndarray of intp
            The index of each contract (in the broadcast order). A contract is its underlying, kind,
            strike, expiry and terms (style, time to settlement): the same strike and expiry with
            other terms is another contract.
        """
        market = self._market
        if underlying not in market.spot or underlying not in market.surface:
            raise ValueError(f"add_contracts: {underlying!r} has no spot or no vol surface in the market")
        if not (math.isfinite(multiplier) and multiplier > 0.0):
            raise ValueError(f"add_contracts: multiplier must be finite and > 0, got {multiplier!r}")
        kinds, strikes, expiries, styles, settlements = np.broadcast_arrays(
            np.asarray(kind, dtype=object), np.asarray(strike, dtype=np.float64), np.asarray(expiry),
            np.asarray(style, dtype=object), np.asarray(settlement, dtype=object),
        )  # fmt: skip
        codes = np.array([_kind_code(k) for k in kinds.ravel()], dtype=np.int8)
        strikes = strikes.ravel().astype(np.float64)
        days = np.asarray(expiries.ravel(), dtype="datetime64[D]")
        if not np.all(np.isfinite(strikes) & (strikes > 0.0)):
            raise ValueError("add_contracts: strikes must be finite and > 0")
        if np.isnat(days).any():
            raise ValueError("add_contracts: every contract needs an expiry date")
        if underlying not in self._uindex and self._var is not None:
            self._var.column(underlying, "add_contracts")
        t, american = self._terms(underlying, days, styles.ravel(), settlements.ravel())
        if underlying not in self._uindex:
            self._add_underlyings([underlying], float(self._clock()))
        u = self._uindex[underlying]
        out = np.empty(codes.size, dtype=np.intp)
        new: list[int] = []
        seen: dict[_Key, int] = {}
        rows_ = zip(
            codes.tolist(), strikes.tolist(), days.view(np.int64).tolist(), american.tolist(), t.tolist(),
            strict=True,
        )  # fmt: skip
        for i, (c, k, d, am, tt) in enumerate(rows_):
            key = (u, c, k, d, bool(am), float(tt))
            if key in self._keys:
                out[i] = self._keys[key]
            elif key in seen:
                out[i] = seen[key]
            else:
                seen[key] = out[i] = self.n_contracts + len(new)
                new.append(i)
        if new:
            rows = np.asarray(new)
            m = rows.size
            self._append_contracts(
                np.full(m, u, dtype=np.intp),
                codes[rows],
                strikes[rows],
                days[rows],
                t[rows],
                american[rows],
                np.full(m, float(multiplier)),
                np.full(m, np.nan),
                np.zeros(m),
            )
            self._refresh_greeks(np.arange(self.n_contracts - m, self.n_contracts))
            self._revalue()
        return out

    def spot(self, underlying: str) -> float:
        """The underlying's current spot: the market snapshot's, then the last :meth:`on_market_data`.
        The quoter (:meth:`~optmm.quoting.Quoter.quote_with`) and the hedger
        (:meth:`~optmm.quoting.DeltaHedger.decide_with`) take it from here."""
        return float(self._ust[self._u(underlying), _k.USPOT])

    def is_american(self, contracts: Any) -> np.ndarray:
        """Whether each of ``contracts`` (indices into the table) is American, bool array."""
        c = np.asarray(contracts, dtype=np.intp)
        if c.size and not (c.min() >= 0 and c.max() < self.n_contracts):
            raise IndexError(f"contract index outside the table (0..{self.n_contracts - 1})")
        return self._c_american[c].copy()

    def position(self, contract: int) -> float:
        """Position of one contract, in contracts (cheap: no frame is built)."""
        c = int(contract)
        if not 0 <= c < self._cf.shape[0]:
            raise IndexError(f"contract {contract!r} is not in the table (0..{self._cf.shape[0] - 1})")
        return float(self._cf[c, _k.CPOS])

    def contracts(self) -> pd.DataFrame:
        """The contract table: one row per contract (index = its index): ``underlying``, ``kind``,
        ``strike``, ``expiry``, ``multiplier``, ``position`` (contracts), ``vol``, the per-contract
        ``delta_shares``, ``gamma_dollars_1pct``, ``vega_per_vol_point``, and the contract's terms:
        ``t`` (years to settlement) and ``american``."""
        cf = self._cf
        return pd.DataFrame(
            {
                "underlying": np.asarray(self._names, dtype=object)[self._c_u]
                if self._names
                else np.zeros(0, dtype=object),
                "kind": np.where(self._c_kind == Kind.CALL, "call", "put"),
                "strike": self._c_strike,
                "expiry": self._c_expiry,
                "multiplier": cf[:, _k.CMULT],
                "position": cf[:, _k.CPOS],
                "vol": self._c_vol,
                "delta_shares": cf[:, _k.CDELTA],
                "gamma_dollars_1pct": cf[:, _k.CGAMMA],
                "vega_per_vol_point": cf[:, _k.CVEGA],
                "t": self._c_t,
                "american": self._c_american,
            }
        )

    # ----------------------------------------------------------------------------------------------
    # the hot path

    def decide(self, req: QuoteRequest) -> Decision:
        """Gate and pre-trade check of one quote (see the module docstring).

        Raises
        ------
        IndexError
            Unknown contract index.
        ValueError
            A negative or non-finite size.
        """
        c = req.contract
        if not 0 <= c < self._cf.shape[0]:
            raise IndexError(f"contract {c!r} is not in the table (0..{self._cf.shape[0] - 1})")
        # float(): one compiled signature whatever the caller passes (an int size would compile another)
        lay, bid, ask, spread, trig, hedge, flags = _k.decide_one(
            c, float(req.bid_size), float(req.ask_size), float(self._clock()), self._cf, self._ust,
            self._cells, self._prm, self._aux,
        )  # fmt: skip
        if flags:
            self._after_decision(c, flags, lay, bid, ask, self._aux)
        return Decision(_LAYERS[lay], bid, ask, spread, self._trig_names[trig], hedge)

    def decide_many(
        self, contracts: Any, bid_sizes: Any, ask_sizes: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decide` for arrays of requests, in order, in one compiled loop (one clock reading).

        Returns
        -------
        layer : ndarray of int8
            :class:`~optmm.risk.audit.Layer` values.
        bid, ask, spread_factor : ndarray of float64
        """
        c = np.ascontiguousarray(contracts, dtype=np.int64).reshape(-1)
        n = c.size
        bids = np.ascontiguousarray(np.broadcast_to(np.asarray(bid_sizes, dtype=np.float64), (n,)))
        asks = np.ascontiguousarray(np.broadcast_to(np.asarray(ask_sizes, dtype=np.float64), (n,)))
        if n and not (c.min() >= 0 and c.max() < self._cf.shape[0]):
            raise IndexError(f"contract index outside the table (0..{self._cf.shape[0] - 1})")
        with np.errstate(invalid="ignore"):
            if not (np.all((bids >= 0.0) & (bids < np.inf)) and np.all((asks >= 0.0) & (asks < np.inf))):
                raise ValueError("decide_many: sizes must be finite and >= 0")
        layer = np.empty(n, dtype=np.int8)
        bid = np.empty(n)
        ask = np.empty(n)
        spread = np.empty(n)
        trig = np.empty(n, dtype=np.int64)
        hedge = np.empty(n)
        flags = np.empty(n, dtype=np.int64)
        aux = np.empty((n, _k.NAUX))
        _k.decide_loop(
            c, bids, asks, float(self._clock()), self._cf, self._ust, self._cells, self._prm,
            layer, bid, ask, spread, trig, hedge, flags, aux,
        )  # fmt: skip
        if self._audit is not None:  # without a trail there is nothing to record
            for i in np.flatnonzero(flags).tolist():
                self._after_decision(int(c[i]), int(flags[i]), int(layer[i]), bid[i], ask[i], aux[i])
        return layer, bid, ask, spread

    def decide_underlying(self, underlying: str, bid_size: float, ask_size: float) -> Decision:
        """Gate and pre-trade check of a quote (or order) in the underlying itself, in shares.

        The layers are refreshed now (changes recorded); then each side goes through the underlying
        gate (:func:`optmm.risk._controller_kernels.gate_underlying`, the simulator's rule for a quote
        in the underlying): nothing at or below STALE, in HARD only the side that reduces
        ``|delta_shares|``, in SOFT the size x ``soft_size_factor`` (at least 1 share), then cut to
        the whole shares that keep the underlying's ``delta_shares`` within its hard limit. Cuts are
        not recorded. ``spread_factor`` and ``hedge_delta_shares`` are those of :meth:`decide`.

        Raises
        ------
        KeyError
            Unknown underlying.
        ValueError
            A negative or non-finite size.
        """
        u = self._u(underlying)
        bid, ask = float(bid_size), float(ask_size)
        if not (0.0 <= bid < math.inf and 0.0 <= ask < math.inf):
            raise ValueError(
                f"decide_underlying: sizes must be finite and >= 0, got {bid_size!r}, {ask_size!r}"
            )
        self._refresh_layers()
        lay = int(self._ust[u, _k.ULAYER])
        trig = int(self._layer_out[u, _k.L_TRIG])
        spread = float(self._prm[_k.P_SOFT_SPREAD]) if lay == _k.SOFT else 1.0
        hedge = float(self._ust[u, _k.UDELTA]) if lay in (_k.HARD, _k.KILL) else 0.0
        return Decision(
            _LAYERS[lay],
            _k.gate_underlying(u, 1.0, bid, self._ust, self._prm),
            _k.gate_underlying(u, -1.0, ask, self._ust, self._prm),
            spread,
            self._trig_names[trig],
            hedge,
        )

    # ----------------------------------------------------------------------------------------------
    # events that change the state

    def on_fill(self, contract: int, signed_contracts: float, price: float) -> None:
        """A fill of our quote: ``signed_contracts`` > 0 we bought (bid hit), < 0 we sold.

        Updates the position, the underlying's and the book's Greeks and the scenario cells
        incrementally; re-measures the worst scenario loss by a full revaluation if the fill's
        ``|vega_per_vol_point|`` reaches ``scenario_after_fill_vega``. ``price`` is checked (finite)
        but not used: P&L comes from :meth:`mark_pnl`.
        """
        c = int(contract)
        if not 0 <= c < self._cf.shape[0]:
            raise IndexError(f"contract {contract!r} is not in the table (0..{self._cf.shape[0] - 1})")
        q = float(signed_contracts)
        if not (math.isfinite(q) and math.isfinite(float(price))):
            raise ValueError(f"on_fill: size and price must be finite, got {signed_contracts!r}, {price!r}")
        _k.apply_fill(c, q, self._cf, self._ust, self._cells)
        if abs(q * self._cf[c, _k.CVEGA]) >= float(self._limits.scenario_after_fill_vega):
            self._revalue()
        self._refresh_layers()

    def on_hedge(self, underlying: str, signed_shares: float, price: float) -> None:
        """A hedge trade in the underlying: ``signed_shares`` > 0 bought. ``price`` is checked only."""
        u = self._u(underlying)
        q = float(signed_shares)
        if not (math.isfinite(q) and math.isfinite(float(price))):
            raise ValueError(f"on_hedge: shares and price must be finite, got {signed_shares!r}, {price!r}")
        _k.apply_hedge(u, q, self._stock_cells, self._ust, self._cells)
        self._refresh_layers()

    def on_market_data(self, underlying: str, spot: float, ts: float | None = None) -> None:
        """New market data for an underlying: its spot (dollar delta moves with it) and its time
        (``ts`` in the clock's seconds, default now), which clears a stale state. Past the limit
        set's ``scenario_every_s`` since the last full recompute, runs :meth:`recompute` (fresh
        Greeks and scenario grid at the current spots)."""
        u = self._u(underlying)
        s = float(spot)
        if not (math.isfinite(s) and s > 0.0):
            raise ValueError(f"on_market_data: spot must be finite and > 0, got {spot!r}")
        now = float(self._clock())
        self._ust[u, _k.USPOT] = s
        self._ust[u, _k.ULAST] = now if ts is None else float(ts)
        if now - self._last_full >= float(self._limits.scenario_every_s):
            self.recompute()
        else:
            self._refresh_layers(now)

    def set_toxicity(
        self, underlying: str, toxic: bool, *, score: float = math.nan, threshold: float = math.nan
    ) -> None:
        """Flag (or clear) adverse selection on an underlying: TOXIC pulls its quotes at once.
        ``score`` and ``threshold`` go to the audit trail."""
        u = self._u(underlying)
        self._ust[u, _k.UTOXIC] = 1.0 if toxic else 0.0
        self._toxic_info[u] = (float(score), float(threshold))
        self._refresh_layers()

    def kill(self, reason: str, *, by: str = "rule") -> None:
        """Throw the kill switch: every underlying goes to KILL (nothing quoted, delta to flatten).

        ``by`` is ``"rule"`` (the trigger is ``reason``) or ``"person"`` (trigger ``"manual"``).
        A kill while killed changes nothing.
        """
        if by not in ("rule", "person"):
            raise ValueError(f"kill: by must be 'rule' or 'person', got {by!r}")
        trigger = "manual" if by == "person" else str(reason)
        self._kill(trigger, math.nan, math.nan, f"by={by}: {reason}")

    def reset_kill(self, *, by: str) -> None:
        """Clear the kill switch. Only a person may: any other ``by`` raises PermissionError."""
        if by != "person":
            raise PermissionError(f"reset_kill: only a person may reset the kill switch (by={by!r})")
        if not self.killed:
            return
        self._ust[:-1, _k.UKILL] = 0.0
        trigger, measured, threshold = self._kill_info
        self._record("", Layer.KILL, "reset", trigger, measured, threshold, "by=person", durable=True)
        self._refresh_layers()

    @property
    def killed(self) -> bool:
        """Whether the kill switch is thrown."""
        return bool(_k.is_killed(self._ust))

    def mark_pnl(self, pnl: float) -> None:
        """The day's P&L so far (currency). Tracks the high-water mark (from 0 at the start of the
        day); a daily loss (``-pnl``) or a drawdown (high-water mark - pnl) beyond its hard limit
        kills (by rule); beyond its soft level, the SOFT layer. The rule is the kernel
        :func:`~optmm.risk._controller_kernels.mark_pnl`, which the simulator's loop runs too."""
        p = float(pnl)
        if not math.isfinite(p):
            raise ValueError(f"mark_pnl: pnl must be finite, got {pnl!r}")
        self._hwm, m, value, hard = _k.mark_pnl(p, self._hwm, self._ust)
        if m >= 0:
            name = METRICS[m].value
            self._note_kill(name, value, hard, f"by=rule: {name} {value:g} > {hard:g}")
        self._refresh_layers()

    def check(self) -> list[tuple[str, Layer]]:
        """Re-evaluate every underlying's layer now (records any change, e.g. staleness without a
        decision); returns (underlying, layer) pairs."""
        self._refresh_layers()
        return [(n, _LAYERS[int(self._ust[u, _k.ULAYER])]) for u, n in enumerate(self._names)]

    def recompute(self) -> float:
        """Full recompute from the positions: fresh per-contract Greeks at the current spots, the
        aggregates, and the scenario grid's worst losses.

        Returns
        -------
        float
            The largest absolute difference between the incremental aggregates (``delta_shares``,
            ``gamma_dollars_1pct``, ``vega_per_vol_point`` per underlying) and their sums from the
            positions with the same per-contract Greeks: the bookkeeping error. (Moving to fresh
            Greeks afterwards is a market move, not a mismatch.) Recorded as a ``"recompute"``
            event (with the tolerance at that value as its threshold), and as a ``"mismatch"`` if any
            difference exceeds :attr:`MISMATCH_RTOL` x max(1, |value|, the gross of the terms
            summed or added: the scale of their rounding).
        """
        nu = len(self._names)
        both = np.zeros((nu, 6))
        _k.aggregate(self._cf, self._ust, both)
        full = both[:, :3]
        inc = self._ust[:nu, [_k.UDELTA, _k.UGAMMA, _k.UVEGA]]
        err = np.abs(inc - full)
        diff = float(err.max()) if err.size else 0.0
        # rounding of the incremental sums scales with the gross of what was added, not the net
        gross = np.maximum(both[:, 3:], self._ust[:nu, _k.UGROSS : _k.UGROSS + 3])
        tol = self.MISMATCH_RTOL * np.maximum(1.0, np.maximum(np.abs(full), gross))
        self._refresh_greeks()
        self._revalue()
        self._last_full = float(self._clock())
        at = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else None
        self._record(
            "", Layer.NORMAL, "recompute", "recompute", diff, float(tol[at]) if at else math.nan,
            f"{nu} underlyings; largest difference / tolerance (absolute, same unit)",
        )  # fmt: skip
        bad = np.argwhere(err > tol)
        if bad.size:
            u, j = (int(x) for x in bad[np.argmax(err[tuple(bad.T)])])
            name = ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point")[j]
            self._record(
                self._names[u], Layer.NORMAL, "mismatch", name, float(err[u, j]), float(tol[u, j]),
                f"incremental {inc[u, j]!r} vs recomputed {full[u, j]!r}",
            )  # fmt: skip
        self._refresh_layers()
        return diff

    def set_var_scenarios(self, spot_shift: pd.DataFrame, vol_shift: pd.DataFrame, days: float = 0.0) -> None:
        """The historical scenarios of the book's VaR (replacing any), and the VaR on them now.

        Parameters
        ----------
        spot_shift : pandas.DataFrame
            One row per scenario, one column per underlying (named as in the market): its relative
            spot move (0.01 = +1%, > -1). Every underlying of the controller needs a column (and so
            does an underlying :meth:`add_contracts` adds later); other columns are kept for them.
        vol_shift : pandas.DataFrame
            The same rows (same index, same order) and columns: absolute vol moves (0.01 = +1 vol
            point); the vols shocked are floored at 0.
        days : float, default 0
            Calendar days passing in every scenario (an N-day history's horizon, as
            :func:`optmm.risk.var.historical_var` revalues it): times to expiry shrink and dividends
            go ex; 0 is an instantaneous move.

        Notes
        -----
        Each scenario moves each underlying from its current spot by its own spot move (the vols
        follow the market's sticky rule) and adds its vol move; every contract and the stock are
        revalued in full (the grid's kernels; contracts that are not plain priced on their terms)
        and the book's P&L is summed. ``var`` = :func:`optmm.risk.var.var_es` of those P&Ls at the
        limit set's ``var_level``, floored at 0 (a loss), compared with the ``var`` limit like the
        other book limits. It is measured when the grid is (the scenario cadence, large fills,
        :meth:`recompute`, :meth:`add_contracts`), not updated between: a fill moves it at the next
        revaluation. Bad input raises ValueError naming the scenario and the underlying.
        """
        old = self._var
        self._var = _VarScenarios.check(spot_shift, vol_shift, self._names, "set_var_scenarios", days)
        nu = len(self._names)
        spot = np.ascontiguousarray(self._ust[:nu, _k.USPOT])
        move = self._spot_moves()
        try:
            self._revalue_var(spot, move, self._base(spot, move))
        except ValueError:
            self._var = old
            raise
        self._refresh_layers()

    @property
    def var_scenario(self) -> Any:
        """The label (index) of the VaR scenario at the last revaluation: the one whose loss is the
        VaR; None without VaR scenarios."""
        return None if self._var is None else self._var.labels[self._var_index]

    def state(self) -> pd.DataFrame:
        """Per underlying and for the book (last row, ``"book"``): ``layer`` (name, evaluated now)
        and, for every metric, its value and its hard and soft limit (``<metric>_hard``,
        ``<metric>_soft``; inf where there is none). ``position`` is the largest |position| among
        the underlying's contracts (the book's: among all); ``delta_dollars`` at current spots."""
        self._refresh_layers()
        nu = len(self._names)
        ust = self._ust
        b = nu
        pos = np.zeros(nu + 1)
        if self.n_contracts:
            np.maximum.at(pos, self._c_u, np.abs(self._cf[:, _k.CPOS]))
            pos[b] = pos[:nu].max(initial=0.0)
        dd_u = ust[:nu, _k.UDELTA] * ust[:nu, _k.USPOT]
        book_dd, book_gamma, book_vega = _k.book_sums(ust)  # the layer's sums, to the bit
        values = {
            Metric.POSITION: pos,
            Metric.DELTA_SHARES: np.append(ust[:nu, _k.UDELTA], np.nan),
            Metric.DELTA_DOLLARS: np.append(dd_u, book_dd),
            Metric.GAMMA_DOLLARS_1PCT: np.append(ust[:nu, _k.UGAMMA], book_gamma),
            Metric.VEGA_PER_VOL_POINT: np.append(ust[:nu, _k.UVEGA], book_vega),
            Metric.WORST_SCENARIO_LOSS: ust[:, _k.UWSL].copy(),
            Metric.DAILY_LOSS: np.append(np.full(nu, np.nan), ust[b, _k.UDAILY]),
            Metric.DRAWDOWN: np.append(np.full(nu, np.nan), ust[b, _k.UDRAWDOWN]),
        }
        codes = [int(x) for x in ust[:nu, _k.ULAYER]]
        worst = min(codes, default=int(Layer.NORMAL))  # the book's row: its most severe underlying
        columns: dict[str, Any] = {"layer": [_LAYERS[x].name for x in [*codes, worst]]}
        columns["spot"] = np.append(ust[:nu, _k.USPOT], np.nan)
        columns["stock_shares"] = np.append(ust[:nu, _k.USTOCK], np.nan)
        for i, m in enumerate(METRICS):
            columns[m.value] = values[m]
            columns[f"{m.value}_hard"] = ust[:, _k.UHARD + i].copy()
            columns[f"{m.value}_soft"] = ust[:, _k.USOFT + i].copy()
        var = ust[b, _k.UVAR] if self._var is not None else np.nan  # not measured without scenarios
        columns[Metric.VAR.value] = np.append(np.full(nu, np.nan), var)
        columns[f"{Metric.VAR.value}_hard"] = ust[:, _k.UVAR_HARD].copy()
        columns[f"{Metric.VAR.value}_soft"] = ust[:, _k.UVAR_SOFT].copy()
        return pd.DataFrame(columns, index=pd.Index([*self._names, BOOK_LABEL], name="underlying"))

    def replay_events(self, events: np.ndarray, times: np.ndarray, *, detail_prefix: str = "") -> None:
        """Record the events of a compiled loop that drove this controller's kernels itself.

        The simulator (:mod:`optmm.sim`) runs the gate, the fills and the hedges inside one compiled
        call on this controller's arrays; the decisions, layer changes, toxicity flags and kills it
        met are written as rows of ``_controller_kernels.NEV`` floats (the ``EV_*`` layout) and
        recorded here, in order, exactly as the live methods would have recorded them.

        Parameters
        ----------
        events : ndarray, shape (n, NEV)
        times : ndarray, shape (n,)
            Each event's time in the clock's seconds (the events' own timestamps).
        detail_prefix : str
            Put in front of every event's detail (e.g. ``"path 3; "``).
        """
        if self._audit is None or not len(events):
            return
        clock, prefix = self._clock, self._detail_prefix
        try:
            self._detail_prefix = detail_prefix
            self._replaying = True
            for row, ts in zip(events, np.asarray(times, dtype=np.float64).tolist(), strict=True):
                self._clock = _Fixed(ts)
                kind = int(row[0])
                if kind == _k.EV_DECIDE:
                    aux = row[8 : 8 + _k.NAUX]
                    self._after_decision(int(row[2]), int(row[3]), int(row[4]), row[5], row[6], aux)
                elif kind == _k.EV_LAYER:
                    self._note_layer(int(row[2]), int(row[3]), int(row[4]), int(row[5]), row[6], row[7])
                elif kind == _k.EV_TOXIC:
                    self._toxic_info[int(row[2])] = (float(row[4]), float(row[5]))
                elif kind == _k.EV_KILL:
                    name, value, hard = METRICS[int(row[2])].value, float(row[3]), float(row[4])
                    self._kill_info = (name, value, hard)
                    self._trig_names[_k.T_KILL] = name
                    self._record(
                        "", Layer.KILL, "kill", name, value, hard, f"by=rule: {name} {value:g} > {hard:g}"
                    )
                else:
                    raise ValueError(f"replay_events: unknown event type {kind}")
        finally:
            self._clock, self._detail_prefix, self._replaying = clock, prefix, False
        self._audit.flush()  # the replayed kills, layer changes and pulls: durable on return

    # ----------------------------------------------------------------------------------------------
    # internals

    def _u(self, underlying: str) -> int:
        try:
            return self._uindex[underlying]
        except KeyError:
            raise KeyError(f"unknown underlying {underlying!r} (not in the controller)") from None

    def _terms(
        self, underlying: str, days: np.ndarray, style: np.ndarray, settlement: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Years to settlement and American flags of contracts of ``underlying`` expiring on
        ``days``, from the pricing module's rules (``style`` / ``settlement`` per contract)."""
        n = days.size
        unds = np.full(n, underlying, dtype=object)
        settle = _terms_text("settlement", settlement, _SETTLEMENTS)
        styles = _terms_text("style", style, _STYLES)
        t = np.asarray(pricing.option_times(self._market, unds, days, settle), dtype=np.float64).reshape(-1)
        american = np.asarray(pricing.american_flags(self._market, unds, styles), dtype=bool).reshape(-1)
        return t, american

    def _set_limits(self, row: int, underlying: str | None) -> None:
        """Hard and soft limits of one state row (an underlying, or the book when None)."""
        ust, limits = self._ust, self._limits
        ust[row, _k.UHARD : _k.UHARD + _k.N_METRICS] = np.inf
        ust[row, _k.USOFT : _k.USOFT + _k.N_METRICS] = np.inf
        found = [(0, limits.contract(Metric.POSITION))]
        if underlying is None:
            found += [(METRICS.index(m), limits.book(m)) for m in _BOOK_METRICS]
        else:
            found += [(METRICS.index(m), limits.for_underlying(m, underlying)) for m in _UNDERLYING_METRICS]
        for i, lim in found:
            if lim is not None:
                ust[row, _k.UHARD + i] = float(lim.hard)
                ust[row, _k.USOFT + i] = float(lim.soft)
        var = limits.book(Metric.VAR) if underlying is None else None
        ust[row, _k.UVAR_HARD] = np.inf if var is None else float(var.hard)
        ust[row, _k.UVAR_SOFT] = np.inf if var is None else float(var.soft)

    def _add_underlyings(self, names: list[str], ts: float) -> None:
        market = self._market
        nu0 = len(self._names)
        m = len(names)
        if not m:
            return
        killed = nu0 > 0 and self.killed
        book_row = self._ust[-1:].copy()
        ust = np.zeros((nu0 + m + 1, _k.NUS))
        ust[:nu0] = self._ust[:nu0]
        ust[-1] = book_row
        cells = np.zeros((nu0 + m + 1, self._n_cells))
        cells[:nu0] = self._cells[:nu0]
        cells[-1] = self._cells[-1]
        self._ust, self._cells = ust, cells
        self._stock_cells = np.vstack([self._stock_cells, np.zeros((m, self._n_cells))])
        self._layer_out = np.zeros((nu0 + m, _k.N_LAYER_OUT))
        for j, name in enumerate(names):
            u = nu0 + j
            self._names.append(name)
            self._uindex[name] = u
            ust[u, _k.USPOT] = float(market.spot[name])
            ust[u, _k.ULAST] = ts
            ust[u, _k.ULAYER] = int(Layer.NORMAL)
            ust[u, _k.UKILL] = 1.0 if killed else 0.0
            self._set_limits(u, name)
        self._carry = pricing.carry(market, self._names)

    def _append_contracts(
        self,
        u: np.ndarray,
        kind: np.ndarray,
        strike: np.ndarray,
        expiry: np.ndarray,
        t: np.ndarray,
        american: np.ndarray,
        multiplier: np.ndarray,
        override: np.ndarray,
        position: np.ndarray,
    ) -> None:
        n0, m = self.n_contracts, u.size
        rows = np.zeros((m, self._cf.shape[1]))
        rows[:, _k.CU] = u
        rows[:, _k.CMULT] = multiplier
        rows[:, _k.CPOS] = position
        self._cf = np.ascontiguousarray(np.vstack([self._cf, rows]))
        self._c_u = np.concatenate([self._c_u, u.astype(np.intp)])
        self._c_kind = np.concatenate([self._c_kind, kind.astype(np.int8)])
        self._c_strike = np.concatenate([self._c_strike, strike.astype(np.float64)])
        self._c_expiry = np.concatenate([self._c_expiry, expiry.astype("datetime64[D]")])
        self._c_t = np.concatenate([self._c_t, t.astype(np.float64)])
        self._c_american = np.concatenate([self._c_american, american.astype(bool)])
        self._c_override = np.concatenate([self._c_override, override.astype(np.float64)])
        self._c_vol = np.concatenate([self._c_vol, np.zeros(m)])
        for i in range(m):
            key = (
                int(u[i]), int(kind[i]), float(strike[i]), int(expiry[i].astype(np.int64)), bool(american[i]),
                float(t[i]),
            )  # fmt: skip
            self._keys[key] = n0 + i

    def _vols(self, rows: np.ndarray, spot_shift: np.ndarray) -> np.ndarray:
        """Vols of contracts ``rows`` with each underlying's spot moved by ``spot_shift[u]`` from the
        market snapshot (the market's sticky rule): the override if any, else the surface; 0 for an
        expired contract without override."""
        vol = self._c_override[rows].copy()
        u_rows = self._c_u[rows]
        need = np.isnan(vol) & (self._c_t[rows] > 0.0)
        for u in np.unique(u_rows[need]).tolist():
            sel = np.flatnonzero(need & (u_rows == u))
            r = rows[sel]
            vol[sel] = market_vols(
                self._market, self._names[u], self._c_strike[r], self._c_t[r], spot_shift=float(spot_shift[u])
            )
        vol[np.isnan(vol)] = 0.0
        return vol

    def _spot_moves(self) -> np.ndarray:
        nu = len(self._names)
        snap = np.array([self._market.spot[n] for n in self._names], dtype=np.float64)
        return self._ust[:nu, _k.USPOT] / snap - 1.0

    def _refresh_greeks(self, rows: np.ndarray | None = None) -> None:
        """Per-contract Greeks at the current spots (all contracts, or ``rows``: new ones at 0
        position), then the aggregates from the positions."""
        rows = np.arange(self.n_contracts) if rows is None else np.asarray(rows)
        nu = len(self._names)
        if rows.size:
            vol = self._vols(rows, self._spot_moves())
            u = self._c_u[rows]
            spot = self._ust[u, _k.USPOT]
            g = pricing.contract_greeks(
                self._carry, u, spot, self._c_strike[rows], self._c_t[rows], vol,
                self._c_kind[rows] == Kind.CALL, self._c_american[rows], reuse=(self._reuse, "greeks"),
            )  # fmt: skip
            mult = self._cf[rows, _k.CMULT]
            self._cf[rows, _k.CDELTA] = mult * g.delta
            self._cf[rows, _k.CGAMMA] = gamma_dollars_1pct_py(mult, g.gamma, spot)
            self._cf[rows, _k.CVEGA] = vega_per_vol_point_py(mult, g.vega)
            self._c_vol[rows] = vol
        full = np.zeros((nu, 6))
        _k.aggregate(self._cf, self._ust, full)
        self._ust[:nu, _k.UDELTA] = full[:, 0]
        self._ust[:nu, _k.UGAMMA] = full[:, 1]
        self._ust[:nu, _k.UVEGA] = full[:, 2]
        self._ust[:nu, _k.UGROSS : _k.UGROSS + 3] = full[:, 3:]

    def _revalue(self) -> None:
        """Scenario grid by full revaluation at the current spots: the P&L of one contract of every
        contract in every cell, the cells of each underlying and the book, their worst losses; then
        the book's VaR if there are VaR scenarios."""
        nu, n_g = len(self._names), self._n_cells
        spot = np.ascontiguousarray(self._ust[:nu, _k.USPOT])
        move = self._spot_moves()
        cells = np.zeros((nu + 1, n_g))
        self._stock_cells = spot[:, None] * self._shock_spot_g[None, :]
        cells[:nu] = self._ust[:nu, _k.USTOCK, None] * self._stock_cells
        base = self._base(spot, move)
        if base is not None:
            shift = np.ascontiguousarray(np.broadcast_to(self._shock_spot_g, (nu, n_g)))
            vol_cg = self._scenario_vols(base[0], move, shift, np.broadcast_to(self._shock_vol_g, (nu, n_g)))
            out = self._reval(spot, base[1], shift, vol_cg, "grid")
            self._cf[:, _k.CCELL :] = out
            _k.cell_bounds(self._cf)
            np.add.at(cells, self._c_u, self._cf[:, _k.CPOS, None] * out)
        cells[nu] = cells[:nu].sum(axis=0)
        self._cells = cells
        _k.worst_rows(cells, self._ust)
        if self._var is not None:
            self._revalue_var(spot, move, base)

    def _base(self, spot: np.ndarray, move: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Vols and prices of every contract at the current spots (None without contracts)."""
        if not self.n_contracts:
            return None
        vol = self._vols(np.arange(self.n_contracts), move)
        u = self._c_u
        price = pricing.contract_greeks(
            self._carry, u, spot[u], self._c_strike, self._c_t, vol, self._c_kind == Kind.CALL,
            self._c_american, reuse=(self._reuse, "greeks"),
        ).price  # fmt: skip
        return vol, np.asarray(price, dtype=np.float64)

    def _scenario_vols(
        self, base_vol: np.ndarray, move: np.ndarray, spot_shift: np.ndarray, vol_shift: np.ndarray
    ) -> np.ndarray:
        """Vols of every contract at each scenario point, shape (contracts, G): the market's sticky
        rule at the point's spot (each underlying ``u`` moved by ``spot_shift[u, g]`` from its current
        spot, which is ``move[u]`` from the snapshot) for contracts priced on the surface, the vol in
        use for the others; plus ``vol_shift[u, g]``, floored at 0."""
        n_g = spot_shift.shape[1]
        u = self._c_u
        vol = np.repeat(base_vol[:, None], n_g, axis=1)
        surface = np.isnan(self._c_override) & (self._c_t > 0.0)
        if self._market.sticky.value != "strike" and surface.any():
            for j in np.unique(u[surface]).tolist():
                rows = np.flatnonzero(surface & (u == j))
                shifts, inv = np.unique(spot_shift[j], return_inverse=True)
                inv = inv.reshape(-1)
                for k, s in enumerate(shifts.tolist()):
                    total = (1.0 + move[j]) * (1.0 + s) - 1.0
                    v = market_vols(
                        self._market, self._names[j], self._c_strike[rows], self._c_t[rows],
                        spot_shift=float(total),
                    )  # fmt: skip
                    cols = np.flatnonzero(inv == k)
                    vol[rows[:, None], cols[None, :]] = v[:, None]
        return np.maximum(vol + vol_shift[u], 0.0)

    def _reval(
        self,
        spot: np.ndarray,
        price: np.ndarray,
        spot_shift: np.ndarray,
        vol: np.ndarray,
        slot: str,
        days: float = 0.0,
    ) -> np.ndarray:
        """P&L of one contract of every contract at each scenario point, shape (contracts, G): spot
        ``spot[u] * (1 + spot_shift[u, g])``, vol ``vol[c, g]``, ``days`` calendar days passing, less
        ``price``. Plain contracts through the scenario kernel, the others priced on their terms
        (through the controller's :class:`~optmm.pricing.Reuse`, in ``slot``: a group of them whose
        inputs are those of the slot's last revaluation is not priced again)."""
        dt = days / DAYS_PER_YEAR
        n_c, n_g = vol.shape
        u, carry = self._c_u, self._carry
        is_call = self._c_kind == Kind.CALL
        mult = self._cf[:, _k.CMULT]
        simple = pricing.plain(carry, u, self._c_american)
        out = np.empty((n_c, n_g))
        rows = np.flatnonzero(simple)
        if rows.size:
            part = out if rows.size == n_c else np.empty((rows.size, n_g))
            reval_cells(
                spot, carry.rate, carry.q, np.ascontiguousarray(u[rows]),
                np.ascontiguousarray(self._c_strike[rows]), np.ascontiguousarray(self._c_t[rows]),
                np.ascontiguousarray(is_call[rows]), np.ascontiguousarray(mult[rows]),
                np.ascontiguousarray(price[rows]), np.ascontiguousarray(spot_shift, dtype=np.float64),
                np.ascontiguousarray(vol[rows]), np.full(n_g, dt), part,
            )  # fmt: skip
            if part is not out:
                out[rows] = part
        rows = np.flatnonzero(~simple)
        if rows.size:
            ur = u[rows]
            shocked = pricing.contract_price(
                carry, ur[:, None], spot[ur][:, None] * (1.0 + spot_shift[ur]), self._c_strike[rows, None],
                self._c_t[rows, None] - dt, vol[rows], is_call[rows, None], self._c_american[rows, None],
                elapsed=dt, reuse=(self._reuse, slot),
            )  # fmt: skip
            out[rows] = mult[rows, None] * (shocked.reshape(rows.size, n_g) - price[rows, None])
        return out

    def _revalue_var(
        self, spot: np.ndarray, move: np.ndarray, base: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        """The book's P&L on the VaR scenarios by full revaluation at the current spots, its VaR
        (:func:`optmm.risk.var.var_es` at the limit set's level, floored at 0 as a loss) and the
        P&L of one contract of every contract in the VaR scenario."""
        assert self._var is not None
        nu = len(self._names)
        spot_shift, vol_shift = self._var.matrices(self._names)
        pnl = ((self._ust[:nu, _k.USTOCK] * spot)[:, None] * spot_shift).sum(axis=0)
        out = None
        if base is not None:
            vols = self._scenario_vols(base[0], move, spot_shift, vol_shift)
            out = self._reval(spot, base[1], spot_shift, vols, "var", self._var.days)
            pnl = pnl + (self._cf[:, _k.CPOS, None] * out).sum(axis=0)
        bad = np.flatnonzero(~np.isfinite(pnl))
        if bad.size:
            raise ValueError(
                f"VaR scenario {self._var.labels[int(bad[0])]}: the book's P&L {float(pnl[bad[0]])!r} is "
                "not a finite number"
            )
        level = float(self._limits.var_level)
        var = var_es(pnl, level)[0]
        j = int(np.argsort(pnl, kind="stable")[tail_count(pnl.size, level) - 1])  # the scenario at the VaR
        self._var_index = j
        self._cf[:, _k.CVARPNL] = 0.0 if out is None else out[:, j]
        self._ust[nu, _k.UVAR] = max(var, 0.0)

    def _refresh_layers(self, now: float | None = None) -> None:
        t = float(self._clock()) if now is None else now
        if _k.layers_all(t, self._ust, self._prm, self._layer_out):
            out = self._layer_out
            for u in np.flatnonzero(out[:, _k.L_OLD] != out[:, _k.L_LAYER]).tolist():
                old, new, trig = int(out[u, _k.L_OLD]), int(out[u, _k.L_LAYER]), int(out[u, _k.L_TRIG])
                self._note_layer(u, old, new, trig, out[u, _k.L_MEAS], out[u, _k.L_THR])

    def _trigger(self, u: int, trig: int, measured: float, threshold: float) -> tuple[str, float, float, str]:
        """Trigger name, measured, threshold and scope text of a layer trigger code."""
        if trig == _k.T_KILL:
            name, measured, threshold = self._kill_info
            return name, measured, threshold, BOOK_LABEL
        if trig == _k.T_TOXIC:
            score, thr = self._toxic_info.get(u, (math.nan, math.nan))
            return "toxicity", score, thr, "underlying"
        if trig == _k.T_STALE:
            return "stale", float(measured), float(threshold), "underlying"
        if trig < 0:
            return "", measured, threshold, ""
        scope = BOOK_LABEL if trig >= _k.BOOK else ("contract" if trig == _k.M_POSITION else "underlying")
        return self._trig_names[trig], float(measured), float(threshold), scope

    def _note_layer(self, u: int, old: int, new: int, trig: int, measured: float, threshold: float) -> None:
        if self._audit is None:
            return
        name, meas, thr, scope = self._trigger(u, trig, measured, threshold)
        und = self._names[u]
        detail = f"{_LAYERS[old].name} -> {_LAYERS[new].name}" + (f"; scope={scope}" if scope else "")
        pulled = new <= _PULLED < old
        self._record(und, _LAYERS[new], "state", name, meas, thr, detail, durable=not pulled)
        if pulled:
            self._record(
                und,
                _LAYERS[new],
                "pull",
                name,
                meas,
                thr,
                f"quotes of {und} pulled; scope={scope}",
                durable=True,
            )

    def _after_decision(self, c: int, flags: int, lay: int, bid: float, ask: float, aux: np.ndarray) -> None:
        if flags & _k.F_INVALID:
            raise ValueError("decide: sizes must be finite and >= 0")
        u = int(self._c_u[c])
        if flags & _k.F_CHANGED:
            self._note_layer(
                u,
                int(aux[_k.A_OLD]),
                int(aux[_k.A_LAYER]),
                int(aux[_k.A_TRIG]),
                aux[_k.A_MEAS],
                aux[_k.A_THR],
            )
        if self._audit is None:
            return
        for side, off, bit, after in (("bid", _k.A_BID, _k.F_BID, bid), ("ask", _k.A_ASK, _k.F_ASK, ask)):
            if not flags & bit:
                continue
            status, code = int(aux[off]), int(aux[off + 1])
            before = float(aux[off + 4])
            scope = BOOK_LABEL if code >= _k.BOOK else ("contract" if code == _k.M_POSITION else "underlying")
            what = self._describe(c)
            if status == _k.S_CUT:
                event, detail = (
                    "cut",
                    f"{what} {side} {before:g} -> {float(after):g}: a full fill would breach",
                )
            elif status == _k.S_DROP:
                event, detail = "drop", f"{what} {side} {before:g} -> 0: a full fill of 1 would breach"
            else:
                event, detail = (
                    "drop",
                    f"{what} {side} {before:g} -> 0: reduce-only, the side does not reduce it",
                )
            self._record(
                self._names[u], _LAYERS[lay], event, self._trig_names[code], float(aux[off + 2]),
                float(aux[off + 3]), f"{detail}; scope={scope}",
            )  # fmt: skip

    def _describe(self, c: int) -> str:
        text = self._descriptions.get(c)
        if text is None:
            kind = "call" if self._c_kind[c] == Kind.CALL else "put"
            text = self._descriptions[c] = (
                f"contract {c} ({self._names[int(self._c_u[c])]} {kind} {self._c_strike[c]:g} "
                f"{self._c_expiry[c]})"
            )
        return text

    def _kill(self, trigger: str, measured: float, threshold: float, detail: str) -> None:
        if self.killed:
            return
        self._ust[:-1, _k.UKILL] = 1.0
        self._note_kill(trigger, measured, threshold, detail)

    def _note_kill(self, trigger: str, measured: float, threshold: float, detail: str) -> None:
        """Record a kill switch just thrown (its trigger, the audit's event) and the layers it moves."""
        self._kill_info = (trigger, float(measured), float(threshold))
        self._trig_names[_k.T_KILL] = trigger
        self._record("", Layer.KILL, "kill", trigger, measured, threshold, detail, durable=True)
        self._refresh_layers()

    def _record(
        self, underlying: str, layer: Layer, event: str, trigger: str, measured: float, threshold: float,
        detail: str, *, durable: bool = False,
    ) -> None:  # fmt: skip
        """Record one event; ``durable``: commit it (and all buffered before it) now, unless a replay
        is under way (which commits once at its end)."""
        if self._audit is not None:
            self._audit.record(
                AuditEvent(
                    ts=float(self._clock()), underlying=underlying, layer=layer, event=event, trigger=trigger,
                    measured=float(measured), threshold=float(threshold), detail=self._detail_prefix + detail,
                )
            )  # fmt: skip
            if durable and not self._replaying:
                self._audit.flush()


def underlying_row(state: pd.DataFrame, underlying: str) -> pd.Series:
    """``underlying``'s row of a :meth:`RiskController.state` table. Its last row is the book's, not an
    underlying's: asking for it, or for a name the controller does not know, raises a KeyError."""
    rows = state.iloc[:-1]
    if underlying not in rows.index:
        raise KeyError(f"unknown underlying {underlying!r} (not in the controller)")
    return rows.loc[underlying]
