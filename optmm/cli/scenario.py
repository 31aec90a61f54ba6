"""``optmm scenario``: the P&L of a book over a grid of spot and vol shocks and under named stresses.

::

    optmm scenario BOOK --market MARKET [--valuation WHEN] [--spot -20:20:2] [--vol -10:10:2] [--days N]
               [--underlying U] [--beta-weighted] [--stress FILE ...] [--plot FILE.png|.pdf|.svg]
               [--format table|csv|json|parquet] [--output FILE] [--dask local[:N]|ADDRESS]

Spot shocks are in percent (within -100..100), vol shocks in vol points (within -100..100). Bad
input (a file that does not load, a malformed range, an unknown underlying, a result that is not a
finite number) is one ``optmm: error: ...`` line and exit code 2; the ``--output`` and ``--plot``
files are written whole or not at all, and neither is left behind when the command fails.
``--valuation WHEN`` values the book at another moment than the market file's (see
:func:`optmm.cli.common.load_market`); ``--dask`` revalues the book partitioned by underlying over a
Dask cluster (:func:`optmm.cli.common.scenario_engine`).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from optmm.cli.common import (
    DASK_HELP,
    DASK_METAVAR,
    UsageError,
    _add_common,
    _deliver,
    _load,
    _render,
    as_usage_error,
    check_destination,
    dask_spec,
    parse_grid,
    scenario_engine,
    table_text,
    valuation_text,
)

__all__ = ["add_scenario_parser", "run_scenario"]

_MAX_GRID_POINTS = 201


# --------------------------------------------------------------------------------------------------
# Arguments


def spot_range(text: str) -> np.ndarray:
    """``--spot``: relative spot shocks in percent, each > -100 and <= 100."""
    unit = "spot shocks are in percent: -20 = -20%"
    return np.array(
        parse_grid(text, what="--spot", max_points=_MAX_GRID_POINTS, gt=-100.0, le=100.0, unit=unit)
    )


def vol_range(text: str) -> np.ndarray:
    """``--vol``: absolute vol shocks in vol points, each >= -100 and <= 100."""
    unit = "vol shocks are in vol points: 5 = +5 points, 0.20 -> 0.25"
    return np.array(
        parse_grid(text, what="--vol", max_points=_MAX_GRID_POINTS, ge=-100.0, le=100.0, unit=unit)
    )


# --------------------------------------------------------------------------------------------------
# optmm scenario


def add_scenario_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scenario",
        help="P&L of a book on a spot x vol grid and under named stresses",
        description="Full revaluation of the book on a grid of spot shocks (percent) and vol shocks "
        "(vol points), optionally days forward, with the worst cell and its driver; and P&L under "
        "named stress scenarios (TOML files, see scenarios/stress/), each leg with its shocks and "
        "its P&L per underlying, worst first.",
    )
    _add_common(p)
    p.add_argument(
        "--spot",
        type=spot_range,
        default=spot_range("-20:20:2"),
        metavar="LO:HI:STEP",
        help="spot shocks in percent, -20 = -20%%, within (-100, 100] (default -20:20:2)",
    )
    p.add_argument(
        "--vol",
        type=vol_range,
        default=vol_range("-10:10:2"),
        metavar="LO:HI:STEP",
        help="vol shocks in vol points, 5 = +5 points, within [-100, 100] (default -10:10:2)",
    )
    p.add_argument("--days", type=float, default=0.0, help="calendar days forward, 0..3650 (default 0)")
    p.add_argument("--underlying", default=None, help="shock this underlying only (default: all)")
    p.add_argument("--beta-weighted", action="store_true", help="spot shocks are index moves, x beta")
    p.add_argument("--stress", nargs="+", default=[], metavar="FILE", help="named stress scenario files")
    p.add_argument("--plot", metavar="FILE.png|.pdf|.svg", help="write a heatmap of the grid")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--dask", type=dask_spec, default=None, metavar=DASK_METAVAR,
                   help=DASK_HELP + " (the book partitioned by underlying)")  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:+.4g}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.4g}pt"


def stress_rows_frame(results: list[Any], underlyings: Sequence[str]) -> pd.DataFrame:
    """One row per stress leg, stresses worst first and legs worst first within each: the leg's
    shocks (decimals), its P&L per underlying and for the book, its driver, and whether it is the
    stress's worst leg (whose P&L is the stress's)."""
    from optmm.risk.scenarios import BOOK

    rows = []
    for res in sorted(results, key=lambda r: r.pnl):
        legs = res.legs.assign(_pnl=res.table[BOOK]).sort_values("_pnl", kind="stable")
        for label, leg in legs.iterrows():
            row: dict[str, Any] = {
                "scenario": res.name,
                "file": res.stress.source if res.stress is not None else "",
                "leg": str(label),
                "spot_shock": float(leg["spot"]),
                "vol_shock": float(leg["vol"]),
                "days": float(leg["days"]),
                "shocked": leg["underlying"] if leg["underlying"] is not None else "all",
                "beta_weighted": bool(leg["beta_weighted"]),
            }
            row.update({u: float(res.table.loc[label, u]) for u in underlyings})
            row[BOOK] = float(res.table.loc[label, BOOK])
            row["driver"] = leg["driver"]
            row["worst"] = label == res.worst_leg
            rows.append(row)
    return pd.DataFrame(rows)


def _stress_table(stresses: pd.DataFrame, underlyings: Sequence[str]) -> str:
    from optmm.risk.scenarios import BOOK

    shown = pd.DataFrame(
        {
            "stress": stresses["scenario"],
            "leg": [
                f"{leg}{' *' if w else ''}" for leg, w in zip(stresses["leg"], stresses["worst"], strict=True)
            ],
            "spot": [
                _pct(s) + (" x beta" if b else "")
                for s, b in zip(stresses["spot_shock"], stresses["beta_weighted"], strict=True)
            ],
            "vol": [_pts(v) for v in stresses["vol_shock"]],
            "days": [f"{d:g}" for d in stresses["days"]],
            "shocked": stresses["shocked"],
        }
    )
    for u in [*underlyings, BOOK]:
        shown[u] = [f"{v:,.0f}" for v in stresses[u]]
    shown["driver"] = stresses["driver"].map(lambda d: d or "")
    return (
        "stresses, worst first (P&L in the market's currency; each leg from today's market; "
        "* = the stress's worst leg, whose P&L is the stress's):\n" + table_text(shown)
    )


def _grid_rows(grid: Any) -> pd.DataFrame:
    """The grid in long form: a row per cell and underlying, then the book's row per cell (with the
    cell's driver and the worst cell marked)."""
    from optmm.risk.scenarios import BOOK, driver_of

    long = grid.pnl
    m = grid.matrix()
    cube = np.stack([grid.matrix(u).to_numpy() for u in grid.underlyings]) if grid.underlyings else None
    worst = grid.worst()
    book_rows = []
    for i, s in enumerate(grid.spot_shocks):
        for j, v in enumerate(grid.vol_shocks):
            book_rows.append(
                {
                    "spot_shock": s,
                    "vol_shock": v,
                    "days": grid.days,
                    "underlying": BOOK,
                    "pnl": float(m.iloc[i, j]),
                    "driver": driver_of(cube[:, i, j], grid.underlyings) if cube is not None else None,
                    "worst": (s, v) == (worst.spot_shock, worst.vol_shock),
                }
            )
    frame = pd.concat([long.assign(driver=None, worst=False), pd.DataFrame(book_rows)], ignore_index=True)
    frame.insert(0, "scenario", "grid")
    frame.insert(1, "file", "")
    frame.insert(2, "leg", "")
    frame.insert(6, "shocked", grid.underlying if grid.underlying is not None else "all")
    frame.insert(7, "beta_weighted", grid.beta_weighted)
    return frame


def _machine_frame(grid: Any, stresses: pd.DataFrame) -> pd.DataFrame:
    """Grid and stresses in one long table: what the table shows, at full precision."""
    from optmm.risk.scenarios import BOOK

    frame = _grid_rows(grid)
    if stresses.empty:
        return frame
    keys = ["scenario", "file", "leg", "spot_shock", "vol_shock", "days", "shocked", "beta_weighted"]
    long = stresses.melt(
        id_vars=[*keys, "driver", "worst"],
        value_vars=[*grid.underlyings, BOOK],
        var_name="underlying",
        value_name="pnl",
    )
    book = long["underlying"] == BOOK
    long.loc[~book, "driver"] = None
    long.loc[~book, "worst"] = False
    order = {name: i for i, name in enumerate(dict.fromkeys(stresses["scenario"] + "\0" + stresses["leg"]))}
    long["_o"] = (long["scenario"] + "\0" + long["leg"]).map(order)
    long = long.sort_values(["_o"], kind="stable").drop(columns="_o")
    return pd.concat([frame, long[list(frame.columns)]], ignore_index=True)


def _grid_text(grid: Any, args: argparse.Namespace, market: Any) -> str:
    matrix = grid.matrix()
    w = grid.worst()
    shown = matrix.copy()
    shown.index = [_pct(v) for v in shown.index]
    shown.columns = [_pts(v) for v in shown.columns]
    day = valuation_text(market)
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        return (
            f"book P&L (market's currency) valued {day}: spot shock (rows) x vol shock (columns, vol "
            f"points), {args.days:g} days forward, {grid.label()}\n"
            + shown.to_string(float_format=lambda v: f"{v:,.0f}")
            + f"\nworst: {w.pnl:,.2f} at spot {_pct(w.spot_shock)}, vol {_pts(w.vol_shock)}"
            + f" (driver: {w.driver or 'none'})\n"
        )


def run_scenario(args: argparse.Namespace) -> int:
    from optmm.risk import heatmap, load_stress
    from optmm.risk.scenarios import plot_format

    if not (np.isfinite(args.days) and 0 <= args.days <= 3650):
        raise UsageError(f"--days must be calendar days within 0..3650, got {args.days}")
    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    check_destination("--output", args.output)
    check_destination("--plot", args.plot)
    if args.plot:
        try:
            image_format = plot_format(args.plot)
        except ValueError as exc:
            raise UsageError(f"--plot {exc}") from None
    book, market = _load(args)
    if args.underlying is not None and args.underlying not in book.underlyings():
        raise UsageError(
            f"--underlying {args.underlying!r}: not in the book ({', '.join(book.underlyings())})"
        )
    with as_usage_error(ValueError, OSError):
        stresses = [load_stress(path) for path in args.stress]
        with scenario_engine(args.dask, book, market) as (scenario_grid, run_stress):
            grid = scenario_grid(
                spot_shocks=args.spot / 100.0,
                vol_shocks=args.vol / 100.0,
                days=args.days,
                underlying=args.underlying,
                beta_weighted=args.beta_weighted,
            )
            results = [run_stress(stress) for stress in stresses]
    stress_rows = stress_rows_frame(results, grid.underlyings)
    if args.format == "table":
        text = _grid_text(grid, args, market)
        if not stress_rows.empty:
            text += "\n" + _stress_table(stress_rows, grid.underlyings)
        data = text.encode("utf-8")
    else:
        data = _render(_machine_frame(grid, stress_rows), args.format)
    plot = None
    if args.plot:
        image = io.BytesIO()
        try:
            heatmap(grid, image, format=image_format)
        except ValueError as exc:
            raise UsageError(f"{args.plot}: cannot draw the plot: {exc}") from None
        plot = (args.plot, image.getvalue())
    _deliver(data, args.output, plot)
    return 0
