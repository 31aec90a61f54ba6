"""``optmm risk``: the exposures of a book, from the shell.

::

    optmm risk BOOK --market MARKET [--valuation WHEN] [--by underlying|expiry|position|total]
               [--format table|csv|json|parquet] [--output FILE]

Bad input (a file that does not load, a result that is not a finite number) is one
``optmm: error: ...`` line and exit code 2; the ``--output`` file is written whole or not at all.
``--valuation WHEN`` values the book at another moment than the market file's (see
:func:`optmm.cli.common.load_market`).
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from optmm.cli.common import (
    UsageError,
    _add_common,
    _deliver,
    _load,
    _render,
    as_usage_error,
    check_destination,
    valuation_text,
)

__all__ = ["add_risk_parser", "run_risk"]


def add_risk_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "risk",
        help="exposures of a book: value, delta, gamma, vega, theta, rho, vanna, volga",
        description="Exposures in trader units (column names carry the units), per underlying "
        "(default, with a book line and the beta-weighted delta where the market gives betas), per "
        "underlying and expiry, per position, or for the whole book. csv / json / parquet carry what "
        "the table shows, at full precision.",
    )
    _add_common(p)
    p.add_argument("--by", choices=("underlying", "expiry", "position", "total"), default="underlying")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")


def by_underlying_frame(exp: Any) -> pd.DataFrame:
    """Per underlying, with its beta-weighted delta where the market gives betas, then the book line."""
    frame = exp.by_underlying.copy()
    if "beta_delta_index_shares" in exp.total.columns:
        bwd = exp.beta_weighted_delta().by_underlying
        frame.insert(1, "beta", bwd["beta"])
        for col in ("beta_delta_index_shares", "beta_delta_index_dollars"):
            frame[col] = bwd["beta_delta_dollars" if col.endswith("dollars") else col]
    frame = frame.reset_index()
    total = exp.total.reset_index(names="underlying")
    return pd.concat([frame, total], ignore_index=True)[list(frame.columns)]


def run_risk(args: argparse.Namespace) -> int:
    from optmm import _compile_ahead
    from optmm.risk import _reval, exposures

    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    check_destination("--output", args.output)
    book, market = _load(args)
    if len(book) >= _reval.PYTHON_BELOW:  # (fewer positions are summed interpreted, not compiled)
        # on a first run, compiled while the command would wait for its helper (the engine it compiles)
        _compile_ahead.meanwhile(_reval.compile_exposure_sums)
    with as_usage_error():
        exp = exposures(book, market)
    frame = {
        "underlying": by_underlying_frame,
        "expiry": lambda e: e.by_expiry.reset_index(),
        "position": lambda e: e.positions,
        "total": lambda e: e.total.reset_index(names="scope"),
    }[args.by](exp)
    day = valuation_text(market)
    title = (
        f"exposures by {args.by}: {args.book} valued {day} in {args.market} ({len(book)} positions; "
        "amounts in the market's currency)"
    )
    _deliver(_render(frame, args.format, title=title), args.output)
    return 0
