"""Limit utilisation: every limit of a set, per scope, with the risk controller's own figures.

:func:`limit_utilisation` builds a :class:`~optmm.risk.controller.RiskController` over the book, the
market and the limit set and reads its :meth:`~optmm.risk.controller.RiskController.state`: the
measured values, the hard and soft levels, and the layer rule are the controller's (one code path),
so this table says what the controller would do with the book.

One row per limit and scope:

* a ``[contract]`` ``position`` limit: one row per underlying of the book, measured = the largest
  \\|position\\| among that underlying's contracts (in contracts);
* an ``[underlying]`` default: one row per underlying of the book that has no override of that metric;
* an ``[underlying.X]`` override: one row for X (an X the book does not hold measures 0: nothing held);
* a ``[book]`` limit: one row, scope ``"book"``.

``used_pct`` is \\|measured\\| / hard x 100 for every metric: the controller bounds absolute values
(long or short alike) and the P&L limits bound losses, which are measured as positive numbers, so the
one formula is the controller's notion for both. ``layer`` is the layer the measured value alone puts
the scope in by the controller's rule (\\|value\\| > hard: ``HARD``; > soft: ``SOFT``; else
``NORMAL``); a hard breach of ``daily_loss`` or ``drawdown`` throws the kill switch (``KILL``). For
``position`` it is the layer of the underlying's largest contract (a position breach makes that
contract reduce-only without changing its underlying's layer).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from optmm.book import Book
from optmm.codes import BOOK_LABEL
from optmm.market import Market
from optmm.risk import _controller_kernels as _k
from optmm.risk.audit import Layer
from optmm.risk.controller import RiskController
from optmm.risk.limits import Limit, LimitSet, Metric, Scope, _table_name

__all__ = ["COLUMNS", "STATUS", "limit_utilisation"]

#: The columns of :func:`limit_utilisation`, in order.
COLUMNS: tuple[str, ...] = (
    "scope",
    "metric",
    "measured",
    "soft",
    "hard",
    "used_pct",
    "layer",
    "status",
    "limit",
)
#: The statuses, most severe first.
STATUS: tuple[str, ...] = ("hard breach", "soft breach", "ok")
_PNL_METRICS = (Metric.DAILY_LOSS, Metric.DRAWDOWN)
_NEEDS = {"pnl": "P&L (pnl, --pnl)", "high_water": "high-water mark (high_water, --high-water)"}


def _table(limit: Limit) -> str:
    """The TOML table a limit comes from: ``[contract]``, ``[underlying]``, ``[underlying.X]``, ``[book]``."""
    return f"[{_table_name(limit.scope, limit.underlying)}]"


def _layer(metric: Metric, measured: float, hard: float, soft: float) -> Layer:
    """The layer one measured value puts its scope in, by the controller's own comparison."""
    graded = _k.grade(
        float(measured), float(hard), float(soft), 0, _k.NORMAL, _k.T_NONE, math.nan, math.nan, 0.0
    )
    layer = Layer(int(graded[0]))
    if layer is Layer.HARD and metric in _PNL_METRICS:
        return Layer.KILL  # mark_pnl throws the kill switch on a hard P&L breach
    return layer


def _check_pnl(limits: LimitSet, pnl: float | None, high_water: float | None) -> None:
    """Refuse a P&L limit that cannot be measured, or P&L figures that cannot be the day's."""
    for metric, needs in ((Metric.DAILY_LOSS, ("pnl",)), (Metric.DRAWDOWN, ("pnl", "high_water"))):
        if limits.book(metric) is None:
            continue
        given = {"pnl": pnl, "high_water": high_water}
        missing = [name for name in needs if given[name] is None]
        if missing:
            what = " and ".join(_NEEDS[n] for n in missing)
            raise ValueError(
                f"limit [book] {metric.value} of {limits.source}: cannot be measured without the day's {what}"
            )
    for name, value in (("pnl", pnl), ("high_water", high_water)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, got {value!r}")
    if high_water is not None:
        if high_water < 0.0:
            raise ValueError(
                f"high_water: the day's P&L starts at 0, so its high-water mark is >= 0, got {high_water!r}"
            )
        if pnl is not None and high_water < pnl:
            raise ValueError(
                f"high_water {high_water!r} is below the P&L {pnl!r}: the mark is the day's highest P&L"
            )


def limit_utilisation(
    book: Book,
    market: Market,
    limits: LimitSet,
    *,
    pnl: float | None = None,
    high_water: float | None = None,
    var_scenarios: Any = None,
) -> pd.DataFrame:
    """Every limit of ``limits``, per scope, measured on ``book`` in ``market`` by the risk controller.

    Parameters
    ----------
    book : Book
    market : Market
        Every underlying of the book must be in it (spot; a surface for options).
    limits : LimitSet
    pnl : float, optional
        The day's P&L so far, in currency (a loss is negative). Needed if the set has a ``daily_loss``
        or a ``drawdown`` limit: they cannot be measured from a book and a market.
    high_water : float, optional
        The day's P&L high-water mark (>= 0, the day starts at 0; >= ``pnl``). Needed if the set has a
        ``drawdown`` limit.
    var_scenarios : optmm.risk.history.HistoricalScenarios, optional
        The historical scenarios a ``var`` limit is measured on (the controller revalues the book on
        them: :meth:`~optmm.risk.controller.RiskController.set_var_scenarios`). Needed if the set has
        a ``var`` limit.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``scope`` (``"book"`` or the underlying), ``metric`` (the TOML key),
        ``measured`` (signed, in the metric's unit: contracts, shares, currency; a loss is positive),
        ``soft`` and ``hard`` (the levels in force), ``used_pct`` (\\|measured\\| / hard x 100),
        ``layer`` (the :class:`~optmm.risk.audit.Layer` name the value alone puts the scope in),
        ``status`` (``"hard breach"``, ``"soft breach"``, ``"ok"``) and ``limit`` (the table of the file
        it comes from: ``[underlying]`` for a default, ``[underlying.TSLA]`` for an override). Hard
        breaches first, then soft ones, then the rest, each by ``used_pct`` descending (ties: underlyings
        in name order, then the book; metrics in :class:`~optmm.risk.limits.Metric` order).

    Raises
    ------
    ValueError
        A book the market cannot price (``BookError`` names the row); a ``daily_loss`` or ``drawdown``
        limit without ``pnl`` / ``high_water``, or a default ``[underlying]`` limit that applies to no
        underlying of the book (every one has its own), each naming the limit; a figure that is not
        finite.

    Notes
    -----
    The controller is built with a fixed clock, so no underlying is stale; its figures are those of a
    fresh controller over the book (no fills yet). With ``pnl``, the day's P&L is marked
    (``mark_pnl(high_water)`` then ``mark_pnl(pnl)``), as a desk's controller would have seen it.
    """
    _check_pnl(limits, pnl, high_water)
    if limits.book(Metric.VAR) is not None and var_scenarios is None:
        raise ValueError(
            f"limit [book] var of {limits.source}: cannot be measured without historical scenarios "
            "(var_scenarios, --history)"
        )
    shifts: dict[str, Any] = {}
    if var_scenarios is not None:
        shifts = {
            "var_spot_shift": var_scenarios.spot_shift,
            "var_vol_shift": var_scenarios.vol_shift,
            "var_days": float(var_scenarios.horizon),  # as optmm.risk.var.historical_var revalues them
        }
    ctl = RiskController(book, market, limits, clock=lambda: 0.0, **shifts)
    if high_water is not None:
        ctl.mark_pnl(high_water)
    if pnl is not None:
        ctl.mark_pnl(pnl)
    state = ctl.state()
    names = list(ctl.underlyings)
    rows: list[dict[str, object]] = []
    used: set[Limit] = set()

    def add(scope: str, limit: Limit, measured: float, hard: float, soft: float) -> None:
        m = limit.metric
        if not (hard == limit.hard and soft == limit.soft):  # the controller holds the set's levels
            raise AssertionError(f"{scope} {m.value}: the controller's levels differ from {_table(limit)}")
        if not math.isfinite(measured):
            raise ValueError(f"limit {_table(limit)} {m.value} for {scope}: the measured value is not finite")
        layer = _layer(m, measured, hard, soft)
        status = STATUS[0] if layer <= Layer.HARD else STATUS[1] if layer is Layer.SOFT else STATUS[2]
        rows.append(
            {
                "scope": scope,
                "metric": m.value,
                "measured": float(measured) + 0.0,
                "soft": soft,
                "hard": hard,
                "used_pct": abs(measured) / hard * 100.0,
                "layer": layer.name,
                "status": status,
                "limit": _table(limit),
            }
        )
        used.add(limit)

    def read(scope: str, metric: Metric) -> tuple[float, float, float]:
        row = state.loc[scope]
        key = metric.value
        return float(row[key]), float(row[f"{key}_hard"]), float(row[f"{key}_soft"])

    position = limits.contract(Metric.POSITION)
    for u in names:
        if position is not None:
            add(u, position, *read(u, Metric.POSITION))
        for m in Metric:
            lim = limits.for_underlying(m, u) if Scope.UNDERLYING in m.scopes else None
            if lim is not None:
                add(u, lim, *read(u, m))
    for lim in limits.limits:  # overrides for underlyings the book does not hold: nothing held
        if lim.scope is Scope.UNDERLYING and lim.underlying is not None and lim.underlying not in names:
            add(lim.underlying, lim, 0.0, lim.hard, lim.soft)
    for m in Metric:
        lim = limits.book(m) if Scope.BOOK in m.scopes else None
        if lim is not None:
            add(BOOK_LABEL, lim, *read(BOOK_LABEL, m))
    unmeasured = [lim for lim in limits.limits if lim not in used]
    if unmeasured:
        lim = unmeasured[0]
        raise ValueError(
            f"limit {_table(lim)} {lim.metric.value} of {limits.source}: applies to no underlying of the "
            f"book ({', '.join(names) or 'none'}: each has its own {lim.metric.value} limit), so it "
            "cannot be measured"
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    rank = frame["status"].map({s: i for i, s in enumerate(STATUS)}).to_numpy()
    order = np.lexsort((-frame["used_pct"].to_numpy(), rank))  # stable: ties keep the canonical order
    return frame.iloc[order].reset_index(drop=True)
