"""``optmm explain``: a day's P&L by full revaluation and its explanation by the Greeks.

::

    optmm explain BOOK --market YESTERDAY --market-today TODAY [--trades TRADES]
                  [--by underlying|position] [--format table|csv|json] [--output FILE]

The figures are :func:`optmm.risk.explain.pnl_explain`'s: per underlying and in total (or, with
``--by position``, per position held and per trade: ``Explain.by_position``), the actual P&L, the
delta, gamma, vega, theta, vanna, volga and rho terms from yesterday's Greeks, the new trades' P&L
and the unexplained residual. Bad input (a file that does not load, a trade without a
price, an underlying missing from a market, today's market dated before yesterday's) is one
``optmm: error: ...`` line and exit code 2; the ``--output`` file is written whole or not at all.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from optmm.cli.common import _deliver, _load, _render, as_usage_error, check_destination, input_file

__all__ = ["add_explain_parser", "run_explain"]


def add_explain_parser(subparsers: Any) -> None:
    """Add ``optmm explain`` to the ``optmm`` sub-parsers."""
    p = subparsers.add_parser(
        "explain",
        help="P&L explain: actual P&L between two markets and its delta, gamma, vega, theta, ... terms",
        description="The P&L of the book from yesterday's market to today's by full revaluation, "
        "explained by delta, gamma, vega, theta, vanna, volga and rho (yesterday's Greeks), the new "
        "trades' P&L and the unexplained residual, per underlying and in total.",
    )
    p.add_argument("book", metavar="BOOK", help="positions held at yesterday's market: .csv or .parquet")
    p.add_argument("--market", required=True, metavar="YESTERDAY", help="yesterday's market: .toml")
    p.add_argument("--market-today", required=True, metavar="TODAY", help="today's market: .toml")
    p.add_argument("--trades", metavar="TRADES", help="the day's trades: a book file with a price column")
    by_help = "a row per underlying and the total (default), or per position held and per trade"
    p.add_argument("--by", choices=("underlying", "position"), default="underlying", help=by_help)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", metavar="FILE", help="write there (whole or not at all) instead of stdout")
    p.set_defaults(valuation=None)  # each market at its own file's valuation


def run_explain(args: argparse.Namespace) -> int:
    """Run ``optmm explain``; returns the exit code (errors raise :class:`UsageError`)."""
    from optmm.market import Market
    from optmm.risk.explain import Trades, pnl_explain

    check_destination("--output", args.output)
    input_file("--market-today", args.market_today)
    if args.trades is not None:
        input_file("--trades", args.trades)
    book, before = _load(args)
    with as_usage_error(ValueError, OSError):
        after = Market.load(args.market_today)
        trades = Trades.load(args.trades) if args.trades is not None else None
        ex = pnl_explain(book, before, after, trades)
    frame = ex.table.reset_index() if args.by == "underlying" else ex.by_position()
    if args.format == "table":
        day0 = np.datetime_as_string(before.valuation, unit="D")
        day1 = np.datetime_as_string(after.valuation, unit="D")
        traded = f"{len(trades)} trades from {args.trades}" if trades is not None else "no trades"
        title = (
            f"P&L explain: {args.book} from {args.market} ({day0}) to {args.market_today} ({day1}), "
            f"{ex.days} days, {traded}\n(market's currency; terms from yesterday's Greeks; "
            "unexplained = actual - terms - new_trades)"
        )
        data = _render(frame, "table", title=title)
    else:
        data = _render(frame, args.format)
    _deliver(data, args.output)
    return 0
