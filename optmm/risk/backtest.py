"""VaR backtests: Kupiec's proportion of failures and Christoffersen's independence and conditional coverage.

Given a realised daily P&L series and the VaR reported for each day (positive for a loss), a day is
an *exception* when the loss exceeds the VaR: ``pnl < -var``. With ``n`` days, ``x`` exceptions and
the expected exception rate ``p = 1 - level``:

* Kupiec (1995), proportion of failures::

      LR_pof = -2 ln[(1 - p)^(n - x) p^x] + 2 ln[(1 - x/n)^(n - x) (x/n)^x]   ~ chi2(1)

* Christoffersen (1998), independence: with ``n_ij`` the number of days in state ``j`` following a
  day in state ``i`` (1 = exception), ``pi_01 = n_01 / (n_00 + n_01)``, ``pi_11 = n_11 / (n_10 + n_11)``
  and ``pi = (n_01 + n_11) / (n - 1)``::

      LR_ind = -2 ln[(1 - pi)^(n_00 + n_10) pi^(n_01 + n_11)]
               + 2 ln[(1 - pi_01)^n_00 pi_01^n_01 (1 - pi_11)^n_10 pi_11^n_11]   ~ chi2(1)

* conditional coverage: ``LR_cc = LR_pof + LR_ind ~ chi2(2)``.

``0 ln 0`` is 0 (a state never seen contributes nothing). The p-values are the chi-square survival
function at the statistic: a small p-value rejects the VaR model (too many or too few exceptions,
or exceptions that cluster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import xlogy
from scipy.stats import chi2

from optmm.risk.history import HistoryError, _first, parse_dates, parse_numbers, read_table

__all__ = ["Backtest", "backtest", "christoffersen", "exceptions", "kupiec", "load_realised", "transitions"]


def exceptions(pnl: pd.Series | np.ndarray, var: pd.Series | np.ndarray | float) -> np.ndarray:
    """Boolean array: the days whose loss exceeds the VaR (``pnl < -var``)."""
    return np.asarray(pnl, dtype=np.float64) < -np.asarray(var, dtype=np.float64)


def kupiec(n: int, x: int, level: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures likelihood ratio and its chi2(1) p-value.

    Parameters
    ----------
    n : int
        Days, >= 1.
    x : int
        Exceptions, 0..n.
    level : float
        The VaR's confidence level (the expected exception rate is ``1 - level``).
    """
    if n < 1 or not (0 <= x <= n):
        raise ValueError(f"kupiec: need 0 <= exceptions <= days and days >= 1, got {x} of {n}")
    p = 1.0 - level
    rate = x / n
    null = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    alt = xlogy(n - x, 1.0 - rate) + xlogy(x, rate)
    lr = max(0.0, float(-2.0 * (null - alt)))
    return lr, float(chi2.sf(lr, 1))


def transitions(hits: np.ndarray) -> tuple[int, int, int, int]:
    """``(n_00, n_01, n_10, n_11)``: days in state j (1 = exception) after a day in state i."""
    h = np.asarray(hits, dtype=bool)
    prev, cur = h[:-1], h[1:]
    return (
        int(np.sum(~prev & ~cur)),
        int(np.sum(~prev & cur)),
        int(np.sum(prev & ~cur)),
        int(np.sum(prev & cur)),
    )


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0  # a state never left: its terms are 0 ln 0 = 0 whatever the ratio


def christoffersen(hits: np.ndarray) -> tuple[float, float]:
    """Christoffersen's independence likelihood ratio of an exception sequence and its chi2(1) p-value."""
    n00, n01, n10, n11 = transitions(hits)
    pi01 = _ratio(n01, n00 + n01)
    pi11 = _ratio(n11, n10 + n11)
    pi = _ratio(n01 + n11, n00 + n01 + n10 + n11)
    null = xlogy(n00 + n10, 1.0 - pi) + xlogy(n01 + n11, pi)
    alt = xlogy(n00, 1.0 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1.0 - pi11) + xlogy(n11, pi11)
    lr = max(0.0, float(-2.0 * (null - alt)))
    return lr, float(chi2.sf(lr, 1))


@dataclass(frozen=True)
class Backtest:
    """A VaR backtest at one level (see the module for the statistics).

    Attributes
    ----------
    level : float
    days : int
    exceptions : int
    expected : float
        ``days x (1 - level)``.
    kupiec_lr, kupiec_p : float
        Proportion of failures: statistic and chi2(1) p-value.
    independence_lr, independence_p : float
        Christoffersen's independence: statistic and chi2(1) p-value.
    cc_lr, cc_p : float
        Conditional coverage (the sum of the two): statistic and chi2(2) p-value.
    exception_dates : pandas.DatetimeIndex
        The days of the exceptions.
    """

    level: float
    days: int
    exceptions: int
    expected: float
    kupiec_lr: float
    kupiec_p: float
    independence_lr: float
    independence_p: float
    cc_lr: float
    cc_p: float
    exception_dates: pd.DatetimeIndex

    def row(self) -> dict[str, float | int]:
        """The figures as one flat record (no dates)."""
        return {
            "level": self.level,
            "days": self.days,
            "exceptions": self.exceptions,
            "expected": self.expected,
            "kupiec_lr": self.kupiec_lr,
            "kupiec_p": self.kupiec_p,
            "independence_lr": self.independence_lr,
            "independence_p": self.independence_p,
            "cc_lr": self.cc_lr,
            "cc_p": self.cc_p,
        }


def backtest(realised: pd.Series, var: pd.Series | float, level: float) -> Backtest:
    """Backtest a VaR at ``level`` against a realised P&L history.

    Parameters
    ----------
    realised : pandas.Series
        Realised P&L per day (currency), indexed by date, in date order.
    var : pandas.Series or float
        The VaR of each day (positive for a loss), on the same dates; or one VaR for every day.
    level : float
        The VaR's confidence level, strictly between 0 and 1.

    Returns
    -------
    Backtest

    Examples
    --------
    >>> pnl = pd.Series([-5.0, 1.0, -12.0, -11.0, 2.0], index=pd.date_range("2024-01-01", periods=5))
    >>> bt = backtest(pnl, 10.0, 0.99)
    >>> bt.exceptions, bt.exception_dates.strftime("%m-%d").tolist()
    (2, ['01-03', '01-04'])
    """
    if not (0.0 < level < 1.0):
        raise ValueError(f"level: {level!r} is not strictly between 0 and 1")
    pnl = realised.to_numpy(dtype=np.float64)
    if pnl.size == 0:
        raise ValueError("backtest: the realised P&L has no days")
    if isinstance(var, pd.Series):
        if not var.index.equals(realised.index):
            raise ValueError("backtest: the VaR series must have the realised P&L's dates")
        v = var.to_numpy(dtype=np.float64)
    else:
        v = np.full(pnl.size, float(var))
    if not (np.all(np.isfinite(pnl)) and np.all(np.isfinite(v))):
        raise ValueError("backtest: the realised P&L and the VaR must be finite numbers")
    hits = exceptions(pnl, v)
    x = int(hits.sum())
    lr_pof, p_pof = kupiec(pnl.size, x, level)
    lr_ind, p_ind = christoffersen(hits)
    lr_cc = lr_pof + lr_ind
    return Backtest(
        level=float(level),
        days=int(pnl.size),
        exceptions=x,
        expected=round(pnl.size * (1.0 - level), 12),
        kupiec_lr=lr_pof,
        kupiec_p=p_pof,
        independence_lr=lr_ind,
        independence_p=p_ind,
        cc_lr=lr_cc,
        cc_p=float(chi2.sf(lr_cc, 2)),
        exception_dates=pd.DatetimeIndex(realised.index[hits]),
    )


def load_realised(path: str | os.PathLike[str]) -> pd.Series:
    """Read a realised P&L history: CSV or Parquet with columns ``date`` and ``pnl`` (currency).

    Returns
    -------
    pandas.Series
        P&L indexed by date, in date order.

    Raises
    ------
    HistoryError
        A missing column, a blank or malformed date or number, a date given twice (naming the row
        and the field), or no rows.
    """
    source = os.fspath(path)
    frame = read_table(path, ("date", "pnl"))
    if len(frame) == 0:
        raise HistoryError(source, 0, "<file>", "no rows (a header without data)")
    dates = parse_dates(source, frame, "date")
    pnl = parse_numbers(source, frame, "pnl", required=True)

    def twice(i: int) -> str:
        first = int(np.argmax(np.asarray(dates == dates[i])))
        return f"{dates[i].date().isoformat()} is given twice (the first is row {first + 1})"

    _first(source, np.asarray(dates.duplicated()), "date", twice)
    series = pd.Series(pnl, index=pd.DatetimeIndex(dates, name="date"), name="pnl")
    return series.sort_index(kind="stable")
