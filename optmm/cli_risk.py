"""``optmm risk`` and ``optmm scenario``: exposures and scenario P&L of a book, from the shell.

::

    optmm risk BOOK --market MARKET [--valuation WHEN] [--by underlying|expiry|position|total]
               [--format table|csv|json|parquet] [--output FILE]
    optmm scenario BOOK --market MARKET [--valuation WHEN] [--spot -20:20:2] [--vol -10:10:2] [--days N]
               [--underlying U] [--beta-weighted] [--stress FILE ...] [--plot FILE.png|.pdf|.svg]
               [--format table|csv|json|parquet] [--output FILE] [--dask local[:N]|ADDRESS]

Spot shocks are in percent (within -100..100), vol shocks in vol points (within -100..100). Bad
input (a file that does not load, a malformed range, an unknown underlying, a result that is not a
finite number) is one ``optmm: error: ...`` line and exit code 2; the ``--output`` and ``--plot``
files are written whole or not at all, and neither is left behind when the command fails.
``--valuation WHEN`` values the book at another moment than the market file's (see
:func:`optmm.cli_common.load_market`).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optmm import cli_dist
from optmm._config import json_records, json_value, to_json
from optmm._io import write_files
from optmm.cli_common import UsageError, add_valuation_option, load_market, parse_grid, valuation_text

_MAX_GRID_POINTS = 201


# --------------------------------------------------------------------------------------------------
# Arguments


def _spot_range(text: str) -> np.ndarray:
    """``--spot``: relative spot shocks in percent, each > -100 and <= 100."""
    unit = "spot shocks are in percent: -20 = -20%"
    return np.array(
        parse_grid(text, what="--spot", max_points=_MAX_GRID_POINTS, gt=-100.0, le=100.0, unit=unit)
    )


def _vol_range(text: str) -> np.ndarray:
    """``--vol``: absolute vol shocks in vol points, each >= -100 and <= 100."""
    unit = "vol shocks are in vol points: 5 = +5 points, 0.20 -> 0.25"
    return np.array(
        parse_grid(text, what="--vol", max_points=_MAX_GRID_POINTS, ge=-100.0, le=100.0, unit=unit)
    )


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from optmm.book import Book

    for option, path in (("BOOK", args.book), ("--market", args.market)):
        if Path(path).is_dir():
            raise UsageError(f"{option} {path}: is a directory, not a file")
        if not Path(path).exists():
            raise UsageError(f"{path}: no such file")
        if not Path(path).is_file():
            raise UsageError(f"{option} {path}: not a regular file")
    market = load_market(args.market, args.valuation)
    try:
        book = Book.load(args.book)
        book.check_market(market)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return book, market


# --------------------------------------------------------------------------------------------------
# Output: whole or nothing


def check_destination(option: str, path: str | None) -> None:
    """Refuse, before any work is done, an output path whose directory does not exist."""
    if path is None:
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise UsageError(f"{option} {path}: no such directory {str(target.parent)!r}")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")


def write_outputs(items: Sequence[tuple[str, bytes]]) -> None:
    """Write every ``(path, content)`` whole, or none of them; an ``OSError`` is one line naming the file.

    A symlink's target is written (the link stays); a named pipe or a device is written into.
    """
    try:
        write_files(items)
    except OSError as exc:
        where = exc.filename or (items[0][0] if len(items) == 1 else ", ".join(p for p, _ in items))
        raise UsageError(f"{where}: cannot write: {exc.strerror or exc}") from None


def write_atomic(path: str, write: Callable[[Any], None], *, binary: bool = False) -> None:
    """Write through ``write(file)`` into memory, then to ``path`` whole (:func:`write_outputs`)."""
    buf: io.BytesIO | io.StringIO = io.BytesIO() if binary else io.StringIO()
    write(buf)
    value = buf.getvalue()
    write_outputs([(path, value if isinstance(value, bytes) else value.encode("utf-8"))])


# --------------------------------------------------------------------------------------------------
# Formats


#: Table columns that are rates or vols: shown in percent.
_PERCENT_COLUMNS = frozenset({"vol", "rate", "div_yield"})


def _decimals(values: np.ndarray) -> int:
    """Decimals that show the smallest non-zero magnitude of a column to 3 significant digits (2..8)."""
    finite = np.abs(values[np.isfinite(values) & (values != 0.0)])
    if finite.size == 0:
        return 2
    return int(min(max(2 - math.floor(math.log10(float(finite.min()))), 2), 8))


def _column_formatter(name: str, values: pd.Series) -> Callable[[Any], str]:
    """How a table shows one column: rates in percent, other numbers at a precision that shows them."""
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if name in _PERCENT_COLUMNS:
        d = max(_decimals(numeric * 100.0), 2)
        return lambda v: "" if _blank(v) else f"{100.0 * float(v):.{d}f}%"
    d = _decimals(numeric)
    return lambda v: "" if _blank(v) else f"{float(v):,.{d}f}"


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v) or bool(pd.isna(v))


def table_text(frame: pd.DataFrame) -> str:
    """A frame as a plain-text table: numbers right-aligned, each float column at a precision that
    shows its values (:func:`_decimals`), rates and vols in percent, missing values blank."""
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]) or (
            shown[col].dtype == object and shown[col].map(lambda v: isinstance(v, float)).any()
        ):
            fmt = _column_formatter(str(col), shown[col])
            shown[col] = [fmt(v) if not isinstance(v, str) else v for v in shown[col]]
        elif pd.api.types.is_datetime64_any_dtype(shown[col]):
            shown[col] = [json_value(v) or "" for v in shown[col]]
        else:
            shown[col] = ["" if _blank(v) else str(v) for v in shown[col]]
    with pd.option_context("display.width", 250, "display.max_columns", 80, "display.max_rows", 10_000):
        return shown.to_string(index=False) + "\n"


def _render(frame: pd.DataFrame, fmt: str, *, title: str | None = None) -> bytes:
    """The bytes of ``frame`` in ``fmt``: a table for people, csv / json / parquet at full precision."""
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = to_json(json_records(frame)) + "\n"
    else:
        text = (title + "\n" if title else "") + table_text(frame)
    return text.encode("utf-8")


def _deliver(data: bytes, output: str | None, plot: tuple[str, bytes] | None = None) -> None:
    """Write ``data`` to ``output`` (else stdout) and the plot, all or nothing."""
    items = [(output, data)] if output is not None else []
    if plot is not None:
        items.append(plot)
    if items:
        write_outputs(items)
    if output is None:
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("book", metavar="BOOK", help="positions: .csv or .parquet")
    p.add_argument("--market", required=True, metavar="MARKET", help="market data: .toml")
    add_valuation_option(p)
    p.add_argument("--output", metavar="FILE", help="write there (whole or not at all) instead of stdout")


# --------------------------------------------------------------------------------------------------
# optmm risk


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


def _by_underlying(exp: Any) -> pd.DataFrame:
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
        "underlying": _by_underlying,
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
        type=_spot_range,
        default=_spot_range("-20:20:2"),
        metavar="LO:HI:STEP",
        help="spot shocks in percent, -20 = -20%%, within (-100, 100] (default -20:20:2)",
    )
    p.add_argument(
        "--vol",
        type=_vol_range,
        default=_vol_range("-10:10:2"),
        metavar="LO:HI:STEP",
        help="vol shocks in vol points, 5 = +5 points, within [-100, 100] (default -10:10:2)",
    )
    p.add_argument("--days", type=float, default=0.0, help="calendar days forward, 0..3650 (default 0)")
    p.add_argument("--underlying", default=None, help="shock this underlying only (default: all)")
    p.add_argument("--beta-weighted", action="store_true", help="spot shocks are index moves, x beta")
    p.add_argument("--stress", nargs="+", default=[], metavar="FILE", help="named stress scenario files")
    p.add_argument("--plot", metavar="FILE.png|.pdf|.svg", help="write a heatmap of the grid")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--dask", type=cli_dist.dask_spec, default=None, metavar=cli_dist.DASK_METAVAR,
                   help=cli_dist.DASK_HELP + " (the book partitioned by underlying)")  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:+.4g}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.4g}pt"


def _stress_rows(results: list[Any], underlyings: Sequence[str]) -> pd.DataFrame:
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
            results = [run_stress(stress) for stress in stresses]
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    stress_rows = _stress_rows(results, grid.underlyings)
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
