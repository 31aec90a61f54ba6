"""``optmm report``: one self-contained HTML page of a book's risk.

::

    optmm report BOOK --market MARKET [--valuation WHEN] --out REPORT.html [--limits LIMITS.toml]
                 [--pnl AMOUNT] [--high-water AMOUNT] [--stress FILE ...]
                 [--history FILE [--horizon N] [--proxy U=PROXY:BETA ...]]
                 [--market-before MARKET] [--spot -20:20:2] [--vol -10:10:2]

The page has the exposures, the scenario heatmap and, when their inputs are given, limit
utilisation (``--limits``; ``--pnl`` and ``--high-water`` as for ``optmm limits``), the stresses with
their legs (``--stress``), historical VaR / ES (``--history``; ``--horizon`` and ``--proxy`` as for ``optmm
var``) and the P&L explain of the book from ``--market-before`` to ``--market``. Every input is read
and checked before any revaluation; bad input is one ``optmm: error: ...`` line and exit code 2, and
the page is written whole or not at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from optmm.cli.common import (
    UsageError,
    _finite_float,
    _load,
    add_valuation_option,
    as_usage_error,
    check_destination,
    input_file,
    write_outputs,
)
from optmm.cli.risk import by_underlying_frame
from optmm.cli.scenario import spot_range, stress_rows_frame, vol_range
from optmm.cli.var import add_history_options, history_scenarios

__all__ = ["add_report_parser", "run_report"]


def add_report_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page of a book's risk",
        description="Exposures, limit utilisation (--limits), the spot x vol scenario heatmap, named "
        "stresses with their legs (--stress), one-day historical VaR / ES with the P&L histogram and "
        "the worst days (--history), and the P&L explain between two markets (--market-before), on "
        "one HTML page that opens with no network.",
    )
    p.add_argument("book", metavar="BOOK", help="positions: .csv or .parquet")
    p.add_argument("--market", required=True, metavar="MARKET", help="today's market data: .toml")
    add_valuation_option(p)
    p.add_argument(
        "--out", required=True, metavar="REPORT.html", help="the page (.html), written whole or not at all"
    )
    p.add_argument("--limits", metavar="LIMITS.toml", help="a limit set: adds limit utilisation")
    p.add_argument("--pnl", type=_finite_float, metavar="AMOUNT",
                   help="the day's P&L so far (a loss < 0): for daily_loss and drawdown limits")  # fmt: skip
    p.add_argument("--high-water", type=_finite_float, metavar="AMOUNT",
                   help="the day's P&L high-water mark (>= 0, >= --pnl): for drawdown limits")  # fmt: skip
    p.add_argument("--stress", nargs="+", default=[], metavar="FILE", help="named stress scenario files")
    add_history_options(p, required=False)
    p.add_argument(
        "--market-before",
        metavar="MARKET",
        help="an earlier market (.toml): adds the P&L explain from it to --market",
    )
    p.add_argument("--spot", type=spot_range, default=spot_range("-20:20:2"), metavar="LO:HI:STEP",
                   help="heatmap spot shocks in percent, -20 = -20%% (default -20:20:2)")  # fmt: skip
    p.add_argument("--vol", type=vol_range, default=vol_range("-10:10:2"), metavar="LO:HI:STEP",
                   help="heatmap vol shocks in vol points, 5 = +5 points (default -10:10:2)")  # fmt: skip


def _day(market: Any) -> str:
    return str(np.datetime_as_string(market.valuation))


def run_report(args: argparse.Namespace) -> int:
    from optmm.market import Market
    from optmm.report import (
        explain_section,
        exposures_section,
        heatmap_section,
        limits_section,
        render_page,
        stresses_section,
        var_section,
    )
    from optmm.risk import exposures, load_stress, run_stress, scenario_grid
    from optmm.risk.explain import pnl_explain
    from optmm.risk.limits import LimitSet
    from optmm.risk.scenarios import check_stress
    from optmm.risk.utilisation import limit_utilisation
    from optmm.risk.var import historical_var

    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {args.out}: the report is an HTML page: name it .html")
    if not args.limits and (args.pnl is not None or args.high_water is not None):
        raise UsageError("--pnl and --high-water are for the limits: give --limits LIMITS.toml")
    if not args.history and args.proxy:
        raise UsageError("--proxy is for the VaR: give --history HISTORY")
    check_destination("--out", args.out)
    inputs = (("--limits", args.limits), ("--history", args.history), ("--market-before", args.market_before))
    for option, path in inputs:
        if path is not None:
            input_file(option, path)
    for path in args.stress:
        input_file("--stress", path)
    book, market = _load(args)
    with as_usage_error(ValueError, OSError):
        # Every input read and checked before any revaluation.
        limits = LimitSet.load(args.limits) if args.limits else None
        stresses = [load_stress(path) for path in args.stress]
        for stress in stresses:
            check_stress(book, market, stress)
        scenarios = None
        if args.history:
            scenarios = history_scenarios(args, book, market)
        before = Market.load(args.market_before) if args.market_before else None

        exp = exposures(book, market)
        frame = by_underlying_frame(exp).set_index("underlying").drop(index="book")
        sections = [exposures_section(frame, exp.total)]
        absent = []
        if limits is not None:
            util = limit_utilisation(
                book, market, limits, pnl=args.pnl, high_water=args.high_water, var_scenarios=scenarios
            )
            sections.append(limits_section(util, source=args.limits))
        else:
            absent.append("limit utilisation (no --limits)")
        grid = scenario_grid(book, market, spot_shocks=args.spot / 100.0, vol_shocks=args.vol / 100.0)
        sections.append(heatmap_section(grid))
        if stresses:
            legs = stress_rows_frame([run_stress(book, market, s) for s in stresses], grid.underlyings)
            sections.append(stresses_section(legs, grid.underlyings))
        else:
            absent.append("stresses (no --stress)")
        if scenarios is not None:
            result = historical_var(book, market, scenarios)
            sections.append(var_section(result, horizon_days=args.horizon, source=args.history))
        else:
            absent.append("VaR / ES (no --history)")
        if before is not None:
            explained = pnl_explain(book, before, market)
            sections.append(
                explain_section(
                    explained,
                    before=f"{args.market_before} (valued {_day(before)})",
                    after=f"{args.market} (valued {_day(market)})",
                )
            )
        else:
            absent.append("P&L explain (no --market-before)")
        meta = [
            ("book", f"{args.book} ({len(book)} positions; underlyings {', '.join(grid.underlyings)})"),
            ("market", f"{args.market}, valued {_day(market)} (sticky {market.sticky.value})"),
            ("amounts", "in the market's currency"),
            ("written", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ]
        title = f"Risk report: {Path(args.book).name}, valued {_day(market)}"
        page = render_page(title, sections, meta=meta, absent=absent)
    write_outputs([(args.out, page.encode("utf-8"))])
    return 0
