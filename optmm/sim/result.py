"""The result of a simulation: time series, fills, hedges, quotes and a summary (see :class:`SimResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass
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
