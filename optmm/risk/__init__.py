"""Exposures, scenarios, limits and the layered risk controller (built on :mod:`optmm.greeks`).

Public API: :func:`exposures` (book risk in trader units), :func:`scenario_grid` and
:func:`scenario_pnl` (full-revaluation scenario P&L), :func:`load_stress`, :func:`run_stress` and
:func:`run_stresses` (named stress scenarios from TOML, units in the field names), :func:`heatmap`
(PNG, PDF or SVG of a grid) and :func:`driver_of` (the underlying that drives a scenario's P&L).
"""

from optmm.risk.audit import AuditEvent, AuditTrail, Layer
from optmm.risk.controller import Decision, QuoteRequest, RiskController
from optmm.risk.exposures import EXPOSURE_COLUMNS, BetaWeightedDelta, Exposures, exposures
from optmm.risk.limits import Limit, LimitError, LimitSet, Metric, Scope
from optmm.risk.scenarios import (
    GridResult,
    Shock,
    Stress,
    StressResult,
    Worst,
    driver_of,
    heatmap,
    load_stress,
    run_stress,
    run_stresses,
    scenario_grid,
    scenario_pnl,
)

__all__ = [
    "EXPOSURE_COLUMNS",
    "AuditEvent",
    "AuditTrail",
    "BetaWeightedDelta",
    "Decision",
    "Exposures",
    "GridResult",
    "Layer",
    "Limit",
    "LimitError",
    "LimitSet",
    "Metric",
    "QuoteRequest",
    "RiskController",
    "Scope",
    "Shock",
    "Stress",
    "StressResult",
    "Worst",
    "driver_of",
    "exposures",
    "heatmap",
    "load_stress",
    "run_stress",
    "run_stresses",
    "scenario_grid",
    "scenario_pnl",
]
