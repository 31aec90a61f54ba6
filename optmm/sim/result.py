"""The result of a simulation: time series, fills, hedges, quotes and a summary (see :class:`SimResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from optmm.sim.config import SimConfig

__all__ = ["ATTRIBUTION", "SimResult"]

ATTRIBUTION = (
    "spread_capture",
    "delta_pnl",
    "gamma_pnl",
    "vega_pnl",
    "theta_pnl",
    "residual_pnl",
    "hedge_cost",
)
"""The P&L components of a step, in currency: ``pnl = spread_capture + delta_pnl + gamma_pnl + vega_pnl
+ theta_pnl + residual_pnl - hedge_cost`` (``hedge_cost`` >= 0 is subtracted)."""


@dataclass(repr=False)
class SimResult:
    """One simulation (one strategy, one or more paths).

    Attributes
    ----------
    config : SimConfig
    seed : int
    strategy : str
    steps : DataFrame
        One row per (path, step): ``path``, ``step``, ``time_s``, the :data:`ATTRIBUTION` components and
        ``pnl`` of the step, ``cum_pnl``, the book's ``delta_shares``, ``gamma_dollars_1pct``,
        ``vega_per_vol_point`` after the step, ``n_fills``.
    underlyings : DataFrame
        One row per (path, step, underlying): ``spot``, ``vol``, ``delta_shares`` (net, with stock),
        ``gamma_dollars_1pct``, ``vega_per_vol_point``, ``stock_shares``, ``layer``, ``toxicity_score``.
    fills : DataFrame
        One row per fill of our quotes (see docs/simulation.md).
    hedges : DataFrame
        One row per hedge trade in an underlying.
    quotes : DataFrame
        Our quotes around fair value over the zoom window of path 0.
    summary : dict
        JSON-able metrics (see docs/simulation.md), with the config's hash and the seed.
    orders : DataFrame
        Path 0's orders that reached a live quote of ours (filled or not), in the order the loop met them:
        ``path``, ``step``, ``time_s``, the instrument (``underlying``, ``contract``, ``kind``,
        ``strike``, ``expiry_days``, as in ``fills``), ``side`` (+1: it hit our bid), ``size`` (the
        order's), ``price`` (the price it met). What :func:`optmm.sim.tape.tape_from_result` writes.
    market_end : DataFrame
        One row per (path, underlying): ``spot`` and ``vol`` at step ``steps``, where the last step's
        P&L is marked.
    vol_offset : ndarray
        Per instrument of the chain (the ``contract`` column of ``fills`` and ``orders``): the offset the
        loop adds to its underlying's smile (decimal vol; 0 but in a run from a market,
        :mod:`optmm.sim.start`); empty: 0 for every instrument.
    div_pv0 : ndarray
        Per instrument of the chain: the present value at the start of the cash dividends going ex
        before it settles (currency per unit; the loop prices on the spot less it, carried at
        ``r - q``, :func:`optmm.sim._kernels.dividend_pv_py`); 0 but in a run from a market with cash
        dividends; empty: 0 for every instrument.
    american : ndarray of bool
        Per instrument of the chain: an American option (a run from a market, :mod:`optmm.sim.start`):
        on an underlying with ``dividends`` priced by the finite-difference engine, else by the
        boundary engine; empty: none.
    dividends : tuple of (ndarray, ndarray)
        Per underlying: the cash dividends to go ex after the start, times (years from the start) and
        amounts (:attr:`optmm.sim.start.Start.dividends`); empty: none.
    """

    config: SimConfig
    seed: int
    strategy: str
    steps: pd.DataFrame
    underlyings: pd.DataFrame
    fills: pd.DataFrame
    hedges: pd.DataFrame
    quotes: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    market_end: pd.DataFrame = field(default_factory=pd.DataFrame)
    vol_offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    div_pv0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    american: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    dividends: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def __repr__(self) -> str:
        """A few lines: the configuration's hash, the run's shape and the summary's headline figures
        (the frames are attributes: ``result.steps``, ...)."""
        from optmm.sim.report import format_figure

        s = self.summary
        paths = s.get("paths", self.steps["path"].nunique() if "path" in self.steps else 0)
        steps = s.get("steps", "?")
        dt = s.get("dt_s")
        return (
            f"SimResult(strategy={self.strategy!r}, seed={self.seed}, "
            f"config={str(self.config.content_hash)[:12]}:\n"
            f"  {paths} path(s) x {steps} steps" + (f" of {dt:g} s" if dt is not None else "") + ";\n"
            f"  total P&L mean {format_figure(s.get('total_pnl_mean'), 'money')}, "
            f"std {format_figure(s.get('total_pnl_std'), 'money')}, "
            f"Sharpe {format_figure(s.get('sharpe'), 'ratio')}; "
            f"{format_figure(s.get('fills', len(self.fills)), 'count')} fills, "
            f"fill rate {format_figure(s.get('fill_rate'), 'percent2')}; "
            f"max |delta| {format_figure(s.get('max_abs_delta_shares'), 'amount')} shares)"
        )
