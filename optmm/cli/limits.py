"""``optmm limits``: every limit of a set, measured on a book by the risk controller, breaches first.

::

    optmm limits BOOK --market MARKET --limits LIMITS.toml [--pnl AMOUNT] [--high-water AMOUNT]
                 [--fail-on never|soft|hard] [--format table|csv|json] [--output FILE]

The figures are :func:`optmm.risk.utilisation.limit_utilisation`'s (a risk controller over the book).
``--pnl`` (the day's P&L so far) and ``--high-water`` (its high-water mark) are needed when the set has
a ``daily_loss`` or ``drawdown`` limit. The exit code is 0 whatever the limits say unless
``--fail-on`` asks otherwise: ``--fail-on hard`` exits 1 when a hard limit is breached, ``--fail-on
soft`` when any limit is past its soft level (the output is written first, in full). Bad input is one
``optmm: error: ...`` line and exit code 2; the ``--output`` file is written whole or not at all.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from optmm.cli.common import (
    _deliver,
    _finite_float,
    _load,
    _render,
    add_valuation_option,
    as_usage_error,
    check_destination,
    input_file,
)
from optmm.cli.var import add_history_options, history_scenarios

__all__ = ["EXIT_BREACH", "add_limits_parser", "run_limits"]

#: Exit code of ``optmm limits --fail-on ...`` when a limit is breached at that level.
EXIT_BREACH = 1


def add_limits_parser(subparsers: Any) -> None:
    """Add ``optmm limits`` to the ``optmm`` sub-parsers."""
    p = subparsers.add_parser(
        "limits",
        help="limit utilisation: every limit of a set, its measured value, levels, %% used, layer",
        description="Every limit of a limit set, per scope (each underlying, the book), measured on the "
        "book by the risk controller: the value, the soft and hard levels, the share of the hard limit "
        "used, the layer the value puts the scope in; hard breaches first, then soft ones, then by use.",
    )
    p.add_argument("book", metavar="BOOK", help="positions: .csv or .parquet")
    p.add_argument("--market", required=True, metavar="MARKET", help="market data: .toml")
    add_valuation_option(p)
    p.add_argument("--limits", required=True, metavar="LIMITS.toml", help="the limit set")
    add_history_options(p, required=False)
    pnl_help = "the day's P&L so far, in currency (a loss < 0): for daily_loss and drawdown"
    p.add_argument("--pnl", type=_finite_float, metavar="AMOUNT", help=pnl_help)
    hwm_help = "the day's P&L high-water mark (>= 0, >= --pnl): for drawdown"
    p.add_argument("--high-water", type=_finite_float, metavar="AMOUNT", help=hwm_help)
    fail_help = "exit 1 when a limit is breached at this level or worse (default never)"
    p.add_argument("--fail-on", choices=("never", "soft", "hard"), default="never", help=fail_help)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", metavar="FILE", help="write there (whole or not at all) instead of stdout")


def _table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    shown["used_pct"] = [f"{v:.1f}%" for v in frame["used_pct"]]
    return shown.rename(columns={"used_pct": "used"})


def run_limits(args: argparse.Namespace) -> int:
    """Run ``optmm limits``; returns the exit code (errors raise :class:`UsageError`)."""
    from optmm.risk import LimitSet
    from optmm.risk.utilisation import limit_utilisation

    check_destination("--output", args.output)
    input_file("--limits", args.limits)
    book, market = _load(args)
    with as_usage_error():
        limits = LimitSet.load(args.limits)
        scenarios = history_scenarios(args, book, market) if args.history is not None else None
        frame = limit_utilisation(
            book, market, limits, pnl=args.pnl, high_water=args.high_water, var_scenarios=scenarios
        )
    hard = int((frame["status"] == "hard breach").sum())
    soft = int((frame["status"] == "soft breach").sum())
    if args.format == "table":
        day = np.datetime_as_string(market.valuation, unit="D")
        title = (
            f"limit utilisation: {args.book} valued {day} in {args.market} against {args.limits} "
            f"({limits.name!r}, {limits.content_hash[:8]}): {len(frame)} limits, {hard} hard breach"
            f"{'es' if hard != 1 else ''}, {soft} soft; used = |measured| / hard"
        )
        data = _render(_table_frame(frame), "table", title=title)
    else:
        data = _render(frame, args.format)
    _deliver(data, args.output)
    if (args.fail_on == "hard" and hard) or (args.fail_on == "soft" and hard + soft):
        return EXIT_BREACH
    return 0
