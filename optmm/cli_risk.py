"""``optmm risk`` and ``optmm scenario``: exposures and scenario P&L of a book, from the shell.

::

    optmm risk BOOK --market MARKET [--by underlying|expiry|position|total]
               [--format table|csv|json|parquet] [--output FILE]
    optmm scenario BOOK --market MARKET [--spot -20:20:2] [--vol -10:10:2] [--days N]
               [--underlying U] [--beta-weighted] [--stress FILE ...] [--plot FILE.png]
               [--format table|csv|json] [--output FILE] [--dask ADDRESS|local[:N]]

Spot shocks are in percent, vol shocks in vol points. Bad input (a file that does not load, a
malformed range, an unknown underlying) is one ``optmm: error: ...`` line and exit code 2; an
``--output`` or ``--plot`` file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optmm import cli_dist
from optmm._io import atomic_target, figure_format
from optmm.cli_common import UsageError

_MAX_GRID_POINTS = 201


def parse_shock_range(text: str) -> np.ndarray:
    """``LO:HI:STEP`` (HI included when on the grid) or ``A,B,C``; values as typed (percent/points)."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            lo, hi, step = parts
            if not all(math.isfinite(p) for p in parts):
                raise argparse.ArgumentTypeError(f"bad range {text!r}: values must be finite")
            if not (step > 0 and hi >= lo):
                raise argparse.ArgumentTypeError(f"bad range {text!r}: need LO <= HI and STEP > 0")
            # Count the points in float first: a huge (or overflowing) count never allocates.
            span = (hi - lo) / step + 1e-9
            if not span < _MAX_GRID_POINTS:
                raise argparse.ArgumentTypeError(f"bad range {text!r}: more than {_MAX_GRID_POINTS} points")
            values = lo + step * np.arange(int(np.floor(span)) + 1)
        else:
            values = np.array([float(p) for p in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad range {text!r}: expected LO:HI:STEP or A,B,C") from None
    if not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"bad range {text!r}: values must be finite")
    if values.size > _MAX_GRID_POINTS:
        raise argparse.ArgumentTypeError(f"bad range {text!r}: more than {_MAX_GRID_POINTS} points")
    return np.round(values, 10)


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from optmm.book import Book
    from optmm.market import Market

    for path in (args.book, args.market):
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    try:
        market = Market.load(args.market)
        book = Book.load(args.book)
        book.check_market(market)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return book, market


def check_destination(option: str, path: str | None) -> None:
    """Refuse, before any work is done, an output path whose directory does not exist."""
    if path is None:
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise UsageError(f"{option} {path}: no such directory {str(target.parent)!r}")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")


def write_atomic(path: str, write: Callable[[Any], None], *, binary: bool = False) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``.

    The file is written whole or not at all; an ``OSError`` becomes a one-line :class:`UsageError`.
    """
    try:
        with atomic_target(path, text=not binary) as fh:
            write(fh)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _json_value(v: Any) -> Any:
    """A cell as a JSON value: finite floats exactly (repr), dates as ISO text, NaN/NaT as null."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        x = float(v)
        return x if math.isfinite(x) else None
    if pd.isna(v):
        return None
    if isinstance(v, pd.Timestamp | np.datetime64):
        ts = pd.Timestamp(v)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    return str(v)


def _json_records(frame: pd.DataFrame) -> str:
    columns = [str(c) for c in frame.columns]
    records = [
        dict(zip(columns, map(_json_value, row), strict=True))
        for row in frame.itertuples(index=False, name=None)
    ]
    return json.dumps(records, allow_nan=False)


def _emit(frame: pd.DataFrame, fmt: str, output: str | None, *, title: str | None = None) -> None:
    if fmt == "parquet":
        if output is None:
            raise UsageError("--format parquet needs --output FILE")
        write_atomic(output, lambda fh: frame.to_parquet(fh, index=False), binary=True)
        return
    buf = io.StringIO()
    if fmt == "csv":
        frame.to_csv(buf, index=False)
    elif fmt == "json":
        buf.write(_json_records(frame) + "\n")
    else:
        if title:
            buf.write(title + "\n")
        with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500):
            buf.write(frame.to_string(index=False, float_format=lambda v: f"{v:,.2f}") + "\n")
    text = buf.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, lambda fh: fh.write(text))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("book", metavar="BOOK", help="positions: .csv or .parquet")
    p.add_argument("--market", required=True, metavar="MARKET", help="market data: .toml")
    p.add_argument("--output", metavar="FILE", help="write there (atomically) instead of stdout")


def add_risk_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "risk",
        help="exposures of a book: value, delta, gamma, vega, theta, rho, vanna, volga",
        description="Exposures in trader units (column names carry the units), per underlying "
        "(default), per underlying and expiry, per position, or for the whole book.",
    )
    _add_common(p)
    p.add_argument("--by", choices=("underlying", "expiry", "position", "total"), default="underlying")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")


def run_risk(args: argparse.Namespace) -> int:
    from optmm.risk import exposures

    if args.format == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    check_destination("--output", args.output)
    book, market = _load(args)
    try:
        exp = exposures(book, market)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    frame = {
        "underlying": exp.by_underlying.reset_index(),
        "expiry": exp.by_expiry.reset_index(),
        "position": exp.positions,
        "total": exp.total.reset_index(names="scope"),
    }[args.by]
    title = f"exposures by {args.by}: {args.book} at {market.valuation} ({len(book)} positions)"
    if args.by == "underlying" and args.format == "table":
        total = exp.total.reset_index(names="underlying")
        frame = pd.concat([frame, total], ignore_index=True).astype(object).where(lambda f: f.notna(), "")
    _emit(frame, args.format, args.output, title=title)
    return 0


def add_scenario_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scenario",
        help="P&L of a book on a spot x vol grid and under named stresses",
        description="Full revaluation of the book on a grid of spot shocks (percent) and vol shocks "
        "(points), optionally days forward, with the worst cell and its driver; and P&L under "
        "named stress scenarios (TOML files, see scenarios/stress/).",
    )
    _add_common(p)
    p.add_argument("--spot", type=parse_shock_range, default=parse_shock_range("-20:20:2"),
                   metavar="LO:HI:STEP", help="spot shocks in %% (default -20:20:2)")  # fmt: skip
    p.add_argument("--vol", type=parse_shock_range, default=parse_shock_range("-10:10:2"),
                   metavar="LO:HI:STEP", help="vol shocks in vol points (default -10:10:2)")  # fmt: skip
    p.add_argument("--days", type=float, default=0.0, help="calendar days forward (default 0)")
    p.add_argument("--underlying", default=None, help="shock this underlying only (default: all)")
    p.add_argument("--beta-weighted", action="store_true", help="spot shocks are index moves, x beta")
    p.add_argument("--stress", nargs="+", default=[], metavar="FILE", help="named stress scenario files")
    p.add_argument("--plot", metavar="FILE.png", help="write a heatmap of the grid (.png, .pdf or .svg)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--dask", type=cli_dist.dask_spec, default=None, metavar=cli_dist.DASK_METAVAR,
                   help=cli_dist.DASK_HELP + " (the book partitioned by underlying)")  # fmt: skip


def run_scenario(args: argparse.Namespace) -> int:
    from optmm.risk import heatmap, load_stress

    if not (np.isfinite(args.days) and args.days >= 0):
        raise UsageError(f"--days must be >= 0, got {args.days}")
    check_destination("--output", args.output)
    check_destination("--plot", args.plot)
    if args.plot:
        try:
            figure_format(args.plot)
        except ValueError as exc:
            raise UsageError(f"--plot {exc}") from None
    book, market = _load(args)
    if args.underlying is not None and args.underlying not in book.underlyings():
        raise UsageError(
            f"--underlying {args.underlying!r}: not in the book ({', '.join(book.underlyings())})"
        )
    try:
        stresses = [load_stress(path) for path in args.stress]
        with cli_dist.scenario_engine(args.dask, book, market) as (scenario_grid, run_stress):
            grid = scenario_grid(
                spot_shocks=args.spot / 100.0,
                vol_shocks=args.vol / 100.0,
                days=args.days,
                underlying=args.underlying,
                beta_weighted=args.beta_weighted,
            )
            stress_rows = []
            for stress in stresses:
                res = run_stress(stress)
                stress_rows.append({"scenario": stress.name, "pnl": res.pnl, "driver": res.driver})
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if args.plot:  # before --output: a failed plot leaves no output behind
        try:
            heatmap(grid, args.plot, underlying=None)
        except OSError as exc:
            raise UsageError(f"{args.plot}: cannot write the plot: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{args.plot}: cannot draw the plot: {exc}") from None
    matrix = grid.matrix()
    spot_s, vol_s, pnl, driver = grid.worst()
    if args.format == "table":
        shown = matrix.copy()
        shown.index = [f"{100 * v:+.4g}%" for v in shown.index]
        shown.columns = [f"{100 * v:+.4g}pt" for v in shown.columns]
        with pd.option_context("display.width", 250, "display.max_columns", 60):
            text = (
                f"book P&L: spot shock (rows) x vol shock (columns), {args.days:g} days forward"
                + (f", {args.underlying} only" if args.underlying else "")
                + (", beta-weighted index moves" if args.beta_weighted else "")
                + "\n"
                + shown.to_string(float_format=lambda v: f"{v:,.0f}")
                + f"\nworst: {pnl:,.2f} at spot {100 * spot_s:+.4g}%, vol {100 * vol_s:+.4g}pt"
                f" (driver: {driver})\n"
            )
        if stress_rows:
            text += "\n" + pd.DataFrame(stress_rows).to_string(
                index=False, float_format=lambda v: f"{v:,.2f}"
            )
            text += "\n"
        if args.output:
            write_atomic(args.output, lambda fh: fh.write(text))
        else:
            sys.stdout.write(text)
    else:
        frame = grid.pnl
        if stress_rows:
            frame = pd.concat([frame, pd.DataFrame(stress_rows)], ignore_index=True)
        _emit(frame, args.format, args.output)
    return 0
