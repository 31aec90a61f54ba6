"""Simulation of the quote -> fill -> inventory -> hedge loop, with P&L attribution (docs/simulation.md).

``simulate(SimConfig.load("scenarios/sim/calm_day.toml"))`` runs a configuration; ``optmm simulate``
does the same from the shell and writes the run directory (:func:`optmm.sim.report.write_run`).
"""

from optmm.sim.config import SimConfig
from optmm.sim.engine import STRATEGIES, TRADING_DAY_S, run_summary, simulate, strategy_config
from optmm.sim.result import ATTRIBUTION, SimResult

__all__ = [
    "ATTRIBUTION",
    "STRATEGIES",
    "TRADING_DAY_S",
    "SimConfig",
    "SimResult",
    "run_summary",
    "simulate",
    "strategy_config",
]
