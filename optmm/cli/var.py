"""``optmm var``: historical VaR and expected shortfall of a book by full revaluation, from the shell.

::

    optmm var BOOK --market MARKET --history FILE [--horizon N] [--levels 95,97.5,99]
              [--proxy U=PROXY:BETA ...] [--realised FILE] [--pnl FILE] [--format table|csv|json]
              [--output FILE] [--dask local[:N]|ADDRESS]

Levels are percents (``99`` = 99%), the horizon a number of observations (trading days) of the
history. Bad input (a file that does not load, naming its row and field; an underlying with neither
a history nor a proxy; a malformed option) is one ``optmm: error: ...`` line and exit code 2; the
``--output`` and ``--pnl`` files are written whole or not at all, together.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import pandas as pd

from optmm._config import json_records, to_json
from optmm.cli.common import (
    DASK_HELP,
    DASK_METAVAR,
    UsageError,
    _add_common,
    _client,
    _deliver,
    _load,
    as_usage_error,
    check_destination,
    dask_spec,
    input_file,
    table_text,
)
from optmm.risk.var import LEVELS

__all__ = ["add_var_parser", "parse_levels", "parse_proxy", "run_var"]

_MAX_HORIZON = 250
_MAX_BETA = 10.0


def parse_levels(text: str) -> tuple[float, ...]:
    """``--levels``: comma-separated percents within [50, 100), e.g. ``95,97.5,99``; as decimals.

    >>> parse_levels("99, 95,97.5")
    (0.95, 0.975, 0.99)
    """
    out = []
    for part in text.split(","):
        try:
            pct = float(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} in {text!r} is not a number") from None
        if not (50.0 <= pct < 100.0):  # also NaN
            hint = f" (write {100 * pct:g} for {100 * pct:g}%)" if 0.5 <= pct < 1.0 else ""
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} in {text!r}: levels are percents within [50, 100){hint}"
            )
        out.append(round(pct / 100.0, 12))
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"{text!r} gives a level twice")
    return tuple(sorted(out))


def parse_proxy(text: str) -> tuple[str, str, float]:
    """``--proxy U=PROXY:BETA``: ``(U, PROXY, BETA)``; U moves BETA x PROXY's spot return and PROXY's
    vol move.

    >>> parse_proxy("TSLA=SPX:1.8")
    ('TSLA', 'SPX', 1.8)
    """
    und, eq, rest = text.partition("=")
    proxy, colon, beta_text = rest.rpartition(":")
    if not (eq and colon and und.strip() and proxy.strip()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected UNDERLYING=PROXY:BETA, e.g. TSLA=SPY:1.8")
    try:
        beta = float(beta_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the beta {beta_text!r} is not a number") from None
    if not (math.isfinite(beta) and abs(beta) <= _MAX_BETA):
        raise argparse.ArgumentTypeError(f"{text!r}: the beta must be a number within -10..10")
    return und.strip(), proxy.strip(), beta


def _horizon(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= n <= _MAX_HORIZON:
        raise argparse.ArgumentTypeError(f"{n} is outside 1..{_MAX_HORIZON} (trading days)")
    return n


def add_history_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--history``, ``--horizon`` and ``--proxy``: the historical scenarios (``optmm var``,
    ``optmm limits`` for a VaR limit)."""
    p.add_argument(
        "--history", required=required, metavar="FILE", help="spots and ATM vols: .csv or .parquet"
    )
    p.add_argument(
        "--horizon",
        type=_horizon,
        default=1,
        metavar="N",
        help="trading days per scenario, 1..250 (default 1); N calendar days of time pass",
    )
    p.add_argument(
        "--proxy",
        type=parse_proxy,
        nargs="+",
        action="extend",
        default=[],
        metavar="U=PROXY:BETA",
        help="move U by BETA x PROXY's spot return and PROXY's vol move",
    )


def history_scenarios(args: argparse.Namespace, book: Any, market: Any) -> Any:
    """The historical scenarios of ``--history`` / ``--horizon`` / ``--proxy`` for ``book``'s
    underlyings (ValueError for a bad file, UsageError for a bad option)."""
    from optmm.risk.history import load_history

    input_file("--history", args.history)
    history = load_history(args.history)
    return history.scenarios(
        book.underlyings(), market, horizon=args.horizon, proxies=_proxies(args, book, market)
    )


def add_var_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "var",
        help="historical VaR and expected shortfall of a book by full revaluation",
        description="Full revaluation of the book on every scenario of a history of spots and ATM "
        "vols (docs/var.md): VaR and ES at each level, the worst days and their drivers, each "
        "underlying's component ES; with --realised, Kupiec and Christoffersen backtests. csv: one "
        "row per level with the components (and the backtest); json: every table, the P&L vector "
        "included.",
    )
    _add_common(p)
    add_history_options(p, required=True)
    p.add_argument(
        "--levels",
        type=parse_levels,
        default=LEVELS,
        metavar="95,97.5,99",
        help="confidence levels in percent (default 95,97.5,99)",
    )
    p.add_argument("--realised", metavar="FILE", help="realised daily P&L (date, pnl): backtest the VaR")
    p.add_argument("--pnl", metavar="FILE", help="write the scenario P&L (date, per underlying, book) as CSV")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--dask",
        type=dask_spec,
        default=None,
        metavar=DASK_METAVAR,
        help=DASK_HELP + " (the scenarios partitioned into blocks of dates)",
    )


def _proxies(args: argparse.Namespace, book: Any, market: Any) -> dict[str, tuple[str, float]]:
    proxies: dict[str, tuple[str, float]] = {}
    targets = {p for _, p, _ in args.proxy}
    for und, proxy, beta in args.proxy:
        if und in proxies:
            raise UsageError(f"--proxy {und}=...: given twice")
        if und not in book.underlyings() and und != market.index and und not in targets:
            raise UsageError(
                f"--proxy {und}={proxy}:{beta:g}: {und} is not an underlying of the book "
                f"({', '.join(book.underlyings())})"
            )
        proxies[und] = (proxy, beta)
    return proxies


def _level_name(a: float) -> str:
    return f"{100 * a:g}%"


def _mapping_text(mapping: pd.DataFrame) -> str:
    parts = []
    for und, row in mapping.iterrows():
        if row["how"] == "own history":
            parts.append(f"{und} its own history")
        else:
            parts.append(f"{und} {row['beta']:g} x {row['source']} ({row['how']}: {row['via']})")
    return "; ".join(parts)


def _table_text(
    res: Any, sc: Any, backtests: list[Any], args: argparse.Namespace, book: Any, market: Any
) -> str:
    day = np.datetime_as_string(market.valuation, unit="D")
    first, last = sc.dates[0].date().isoformat(), sc.dates[-1].date().isoformat()
    lines = [
        f"historical VaR of {args.book} valued {day} in {args.market} ({len(book)} positions; amounts "
        "in the market's currency, VaR and ES positive for a loss)",
        f"history {args.history}: {len(sc)} scenarios of {sc.horizon} trading day"
        f"{'s' if sc.horizon > 1 else ''} (overlapping) ending {first} to {last}, each with "
        f"{sc.horizon} calendar day{'s' if sc.horizon > 1 else ''} of time passing; "
        f"{sc.dates_dropped} dates not common to the series used; longest step between dates "
        f"{sc.longest_step} calendar days",
        f"moves: {_mapping_text(sc.mapping)}",
        "",
    ]
    table = res.table.copy()
    table["level"] = table["level"].map(_level_name)
    lines.append(table_text(table.rename(columns={"var": "VaR", "es": "ES"})).rstrip("\n"))
    comp = res.contributions.copy()
    comp.columns = [f"ES {_level_name(a)}" for a in comp.columns]
    lines += ["", "component ES by underlying (sums to the book's ES):"]
    lines.append(table_text(comp.reset_index()).rstrip("\n"))
    worst = res.worst.copy()
    worst["spot_shift"] = worst["spot_shift"].map(lambda v: f"{100 * v:+.2f}%" if math.isfinite(v) else "")
    worst["vol_shift"] = worst["vol_shift"].map(lambda v: f"{100 * v:+.2f}pt" if math.isfinite(v) else "")
    lines += ["", f"worst {len(worst)} scenarios (driver: the underlying that lost most; its moves):"]
    lines.append(table_text(worst.rename(columns={"date": "end date"})).rstrip("\n"))
    if backtests:
        lines += [
            "",
            f"backtest against {args.realised} ({backtests[0].days} days; each day's P&L against "
            "today's VaR; p-values below 0.05 reject):",
        ]
        bt = pd.DataFrame([b.row() for b in backtests])
        bt["level"] = bt["level"].map(_level_name)
        lines.append(table_text(bt).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _csv_frame(res: Any, backtests: list[Any]) -> pd.DataFrame:
    frame = res.table.assign(horizon=res.horizon)
    for und in res.contributions.index:
        frame[f"es_{und}"] = res.contributions.loc[und].to_numpy()
    if backtests:
        bt = pd.DataFrame([b.row() for b in backtests]).drop(columns="level")
        frame = pd.concat([frame, bt], axis=1)
    return frame


def _json_doc(res: Any, sc: Any, backtests: list[Any]) -> str:
    comp = res.contributions.copy()
    comp.columns = [f"es_{a:g}" for a in comp.columns]
    pnl = res.by_underlying.assign(book=res.pnl).reset_index()
    doc = {
        "horizon": res.horizon,
        "scenarios": len(sc),
        "dates_dropped": sc.dates_dropped,
        "longest_step_days": sc.longest_step,
        "mapping": json_records(sc.mapping.reset_index()),
        "table": json_records(res.table),
        "contributions": json_records(comp.reset_index()),
        "worst": json_records(res.worst),
        "backtest": [
            {**b.row(), "exception_dates": [d.date().isoformat() for d in b.exception_dates]}
            for b in backtests
        ],
        "pnl": json_records(pnl),
    }
    return to_json(doc) + "\n"


def run_var(args: argparse.Namespace) -> int:
    from optmm.risk.backtest import backtest, load_realised
    from optmm.risk.var import historical_var

    if args.realised is not None and args.horizon != 1:
        raise UsageError(
            f"--realised: the backtest compares daily P&L with a 1-day VaR: drop --horizon {args.horizon}"
        )
    check_destination("--output", args.output)
    check_destination("--pnl", args.pnl)
    if args.realised is not None:
        input_file("--realised", args.realised)
    book, market = _load(args)
    if len(book) == 0:
        raise UsageError(f"{args.book}: the book has no positions: nothing to revalue")
    with as_usage_error():
        realised = load_realised(args.realised) if args.realised is not None else None
        sc = history_scenarios(args, book, market)
        if args.dask is None:
            res = historical_var(book, market, sc, levels=args.levels)
        else:
            from optmm.scaleout.var import historical_var as dist_var

            with _client(args.dask) as client:
                res = dist_var(book, market, sc, client=client, levels=args.levels)
        backtests = [backtest(realised, res.var(a), a) for a in res.levels] if realised is not None else []
    if args.format == "table":
        data = _table_text(res, sc, backtests, args, book, market).encode("utf-8")
    elif args.format == "csv":
        data = _csv_frame(res, backtests).to_csv(index=False).encode("utf-8")
    else:
        data = _json_doc(res, sc, backtests).encode("utf-8")
    extra = None
    if args.pnl is not None:
        pnl = res.by_underlying.assign(book=res.pnl).reset_index()
        pnl["date"] = pnl["date"].dt.strftime("%Y-%m-%d")
        extra = (args.pnl, pnl.to_csv(index=False).encode("utf-8"))
    _deliver(data, args.output, extra)
    return 0
