"""Historical value at risk and expected shortfall of a P&L sample.

Definitions (one place; every VaR figure of optmm comes from :func:`var_es`): with ``n`` scenario
P&Ls and a confidence level ``a``, let ``k = ceil(n (1 - a))`` (at least 1); the losses are the P&Ls
with their sign flipped, sorted worst first. VaR is the ``k``-th worst loss and ES the mean of the
``k`` worst losses, so that ES >= VaR always. Both are in currency, positive for a loss.

:func:`historical_var` revalues a book on every scenario of a history
(:class:`optmm.risk.history.HistoricalScenarios`) by full revaluation
(:func:`optmm.risk.scenarios.points_pnl`) and gives VaR and ES at each level, the P&L vector, the
worst days with their drivers and each underlying's component ES: the mean of its P&L over the
``k`` scenarios of the book's tail (the ``k`` lowest book P&Ls, ties in date order), with the sign
flipped, so that the components sum to the book's ES.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from optmm.typing import FloatArray

if TYPE_CHECKING:
    from optmm.book import Book
    from optmm.market import Market
    from optmm.risk.history import HistoricalScenarios

__all__ = [
    "LEVELS",
    "N_WORST",
    "VarResult",
    "check_levels",
    "check_moves",
    "historical_var",
    "scenario_pnl_frame",
    "tail_count",
    "var_es",
    "var_result",
]

#: The default confidence levels.
LEVELS = (0.95, 0.975, 0.99)
#: Worst days listed by :class:`VarResult`.
N_WORST = 10


def tail_count(n: int, level: float) -> int:
    """Number of scenarios in the tail at confidence ``level`` out of ``n``: ``ceil(n (1 - level))``,
    at least 1. The product is rounded to 12 digits first so that, e.g., 500 x (1 - 0.99) is 5."""
    if not (0.0 < level < 1.0):
        raise ValueError(f"level: must be strictly between 0 and 1, got {level!r}")
    if n < 1:
        raise ValueError("no scenarios: VaR needs at least one P&L")
    return max(1, math.ceil(round(n * (1.0 - level), 12)))


def var_es(pnl: FloatArray, level: float) -> tuple[float, float]:
    """``(VaR, ES)`` of the P&L sample ``pnl`` (1-d, finite) at confidence ``level`` (see the module)."""
    x = np.asarray(pnl, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"pnl: {x[bad[0]]!r} at index {int(bad[0])} is not a finite number")
    k = tail_count(x.size, level)
    worst = np.sort(x)[:k]  # the k lowest P&Ls, worst first
    return float(-worst[-1]), float(-worst.mean())


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """Confidence levels as a sorted tuple of distinct floats strictly between 0 and 1."""
    try:
        out = tuple(float(a) for a in levels)
    except (TypeError, ValueError):
        raise ValueError(f"levels: expected numbers between 0 and 1, got {levels!r}") from None
    if not out:
        raise ValueError("levels: at least one confidence level is needed")
    for a in out:
        if not (0.0 < a < 1.0):  # also NaN
            raise ValueError(f"levels: {a!r} is not strictly between 0 and 1 (95% is 0.95)")
    if len(set(out)) != len(out):
        raise ValueError(f"levels: {list(out)} has a level twice")
    return tuple(sorted(out))


@dataclass(frozen=True)
class VarResult:
    """Historical VaR and ES of a book, and where its tail comes from.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per level: ``level`` (0.99), ``var`` and ``es`` (currency, positive for a loss; see
        the module), ``tail`` (k, the scenarios in the tail) and ``scenarios`` (n).
    pnl : pandas.Series
        The book's P&L in each scenario (currency), indexed by the scenario's end date.
    by_underlying : pandas.DataFrame
        Dates x underlyings (sorted): each underlying's P&L; the rows sum to :attr:`pnl`.
    worst : pandas.DataFrame
        The :data:`N_WORST` lowest book P&Ls, worst first (ties in date order): ``date``, ``pnl``,
        ``driver`` (the underlying that lost most, :func:`optmm.risk.scenarios.driver_of`),
        ``driver_pnl``, and the driver's ``spot_shift`` (relative) and ``vol_shift`` (absolute).
    contributions : pandas.DataFrame
        Index underlying, one column per level: component ES (currency); each column sums to the
        level's ``es`` (to rounding).
    horizon : int
        Observations (trading days) per scenario.
    """

    table: pd.DataFrame
    pnl: pd.Series
    by_underlying: pd.DataFrame
    worst: pd.DataFrame
    contributions: pd.DataFrame
    horizon: int

    @property
    def levels(self) -> tuple[float, ...]:
        """The confidence levels, ascending."""
        return tuple(float(a) for a in self.table["level"])

    def var(self, level: float) -> float:
        """VaR at ``level`` (one of :attr:`levels`)."""
        return float(self.table.set_index("level").loc[float(level), "var"])

    def es(self, level: float) -> float:
        """ES at ``level`` (one of :attr:`levels`)."""
        return float(self.table.set_index("level").loc[float(level), "es"])


def _date_namer(dates: pd.DatetimeIndex) -> Callable[[int], str]:
    return lambda g: f"historical scenario ending {dates[g].date().isoformat()}"


def check_moves(book: Book, scenarios: HistoricalScenarios) -> None:
    """Refuse (ValueError) scenarios that do not move every underlying of ``book``."""
    missing = sorted(set(book.underlyings()) - set(scenarios.spot_shift.columns))
    if missing:
        raise ValueError(
            f"the scenarios do not move {', '.join(missing)}: build them for the book's underlyings"
        )


def scenario_pnl_frame(book: Book, market: Market, scenarios: HistoricalScenarios) -> pd.DataFrame:
    """Full-revaluation P&L of ``book`` in each scenario: :func:`optmm.risk.scenarios.points_pnl`
    with ``days = scenarios.horizon`` (time passes), indexed by date; errors name the scenario."""
    from optmm.risk.scenarios import points_pnl

    check_moves(book, scenarios)
    return points_pnl(
        book,
        market,
        scenarios.spot_shift,
        scenarios.vol_shift,
        days=float(scenarios.horizon),
        where=_date_namer(scenarios.dates),
    )


def var_result(
    frame: pd.DataFrame,
    *,
    levels: Sequence[float] = LEVELS,
    horizon: int = 1,
    scenarios: HistoricalScenarios | None = None,
) -> VarResult:
    """A :class:`VarResult` from the scenario P&L (:func:`scenario_pnl_frame`'s frame: one row per
    scenario, indexed by date, one column per underlying then ``"book"``)."""
    from optmm.risk.scenarios import BOOK, driver_of

    lv = check_levels(levels)
    by_und = frame.drop(columns=BOOK)
    book = frame[BOOK].to_numpy(dtype=np.float64)
    n = book.size
    if n == 0:
        raise ValueError("no scenarios: VaR needs at least one P&L")
    order = np.argsort(book, kind="stable")  # worst first, ties in date order
    parts = by_und.to_numpy(dtype=np.float64)
    rows, comps = [], {}
    for a in lv:
        v, e = var_es(book, a)
        k = tail_count(n, a)
        # + 0.0: a loss of zero shows as 0.0, not -0.0
        rows.append({"level": a, "var": v + 0.0, "es": e + 0.0, "tail": k, "scenarios": n})
        comps[a] = -parts[order[:k]].mean(axis=0) + 0.0
    table = pd.DataFrame(rows)
    contributions = pd.DataFrame(comps, index=pd.Index(by_und.columns, name="underlying"))
    contributions.columns = pd.Index(lv, name="level")
    unds = [str(u) for u in by_und.columns]
    worst_rows = []
    for g in order[: min(N_WORST, n)]:
        driver = driver_of(parts[g], unds)
        j = unds.index(driver) if driver is not None else None
        worst_rows.append(
            {
                "date": frame.index[g],
                "pnl": float(book[g]),
                "driver": driver,
                "driver_pnl": float(parts[g, j]) if j is not None else math.nan,
                "spot_shift": float(scenarios.spot_shift.iloc[g][driver])
                if scenarios is not None and driver is not None
                else math.nan,
                "vol_shift": float(scenarios.vol_shift.iloc[g][driver])
                if scenarios is not None and driver is not None
                else math.nan,
            }
        )
    worst = pd.DataFrame(
        worst_rows, columns=["date", "pnl", "driver", "driver_pnl", "spot_shift", "vol_shift"]
    )
    pnl = pd.Series(book, index=frame.index, name=BOOK)
    return VarResult(
        table=table,
        pnl=pnl,
        by_underlying=by_und,
        worst=worst,
        contributions=contributions,
        horizon=int(horizon),
    )


def historical_var(
    book: Book,
    market: Market,
    scenarios: HistoricalScenarios,
    *,
    levels: Sequence[float] = LEVELS,
) -> VarResult:
    """Historical VaR and ES of a book by full revaluation on every scenario of a history.

    Parameters
    ----------
    book : Book
    market : Market
        Today's market: every scenario moves it by the scenario's spot and vol moves and
        ``scenarios.horizon`` calendar days (see :func:`scenario_pnl_frame`).
    scenarios : HistoricalScenarios
        From :meth:`optmm.risk.history.History.scenarios`, for (at least) the book's underlyings.
    levels : sequence of float, default (0.95, 0.975, 0.99)
        Confidence levels, strictly between 0 and 1.

    Returns
    -------
    VarResult

    Raises
    ------
    ValueError
        A bad level, an underlying of the book that the scenarios do not move, a scenario whose
        P&L is not a finite number (named by its date).

    Examples
    --------
    >>> import pandas as pd
    >>> from optmm.book import Book
    >>> from optmm.market import Market
    >>> from optmm.risk.history import History
    >>> market = Market.load("scenarios/examples/market.toml")
    >>> book = Book.from_frame(pd.DataFrame({"underlying": ["SPY"], "kind": ["stock"],
    ...     "strike": [None], "expiry": [None], "quantity": [100]}))
    >>> history = History.from_frame(pd.DataFrame({
    ...     "date": ["2024-01-02", "2024-01-03", "2024-01-04"], "underlying": "SPY",
    ...     "spot": [100.0, 90.0, 99.0], "atm_vol": 0.2}))
    >>> res = historical_var(book, market, history.scenarios(["SPY"]), levels=[0.95])
    >>> res.table  # the worst of two days: -10% of 100 x 590
       level     var      es  tail  scenarios
    0   0.95  5900.0  5900.0     1          2
    """
    from optmm.risk.history import HistoricalScenarios

    if not isinstance(scenarios, HistoricalScenarios):
        raise TypeError(f"scenarios: expected HistoricalScenarios, got {type(scenarios).__name__}")
    lv = check_levels(levels)
    frame = scenario_pnl_frame(book, market, scenarios)
    return var_result(frame, levels=lv, horizon=scenarios.horizon, scenarios=scenarios)
