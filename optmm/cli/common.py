"""Pieces shared by the ``optmm`` sub-commands: the one-line error, argument types, the book and market
inputs, whole-or-nothing outputs, the table / csv / json / parquet formats and the ``--dask`` option."""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm._config import bound_text, decimals_to_show, json_records, json_value, to_json, within
from optmm._io import write_files

if TYPE_CHECKING:
    from distributed import Client

    from optmm.book import Book
    from optmm.market import Market


class UsageError(Exception):
    """A user-facing error: reported as one ``optmm: error: ...`` line, exit code 2."""


@contextmanager
def as_usage_error(*kinds: type[Exception]) -> Iterator[None]:
    """An exception of ``kinds`` (default ValueError) raised in the ``with`` block is raised again as a
    :class:`UsageError` with the same message (the library's errors name the file and the field)."""
    catch = kinds or (ValueError,)
    try:
        yield
    except catch as exc:
        raise UsageError(str(exc)) from None


def add_valuation_option(p: argparse.ArgumentParser) -> None:
    """``--valuation WHEN``, for every command that reads a market file (see :func:`load_market`)."""
    p.add_argument(
        "--valuation",
        metavar="WHEN",
        help="value at WHEN instead of the market file's valuation: an ISO date (its 16:00 close) or "
        "date-time, with an offset or in the market's time zone, e.g. 2026-11-20T10:00-05:00",
    )


def load_market(path: str, valuation: str | None = None) -> Market:
    """Read the market file ``path``, moved to ``valuation`` (the text of ``--valuation``) if given.

    Raises
    ------
    UsageError
        One line: a ``--valuation`` that is not an ISO date or date-time, or a market error (a bad
        file, or a file not valid at that moment, e.g. a surface expiry settled by then).
    """
    from optmm.market import Market, parse_valuation

    when = None
    if valuation is not None:
        try:
            when = parse_valuation(valuation)
        except ValueError as exc:
            raise UsageError(f"--valuation {exc}") from None
    with as_usage_error():
        market = Market.load(path)
        return market if when is None else market.with_valuation(when)


def valuation_text(market: Market) -> str:
    """The valuation as shown in headers: the date, or the moment when it is not the close."""
    if market.is_intraday:
        assert market.valuation_time is not None
        return market.valuation_time.isoformat(timespec="minutes")
    return str(market.valuation)


# --------------------------------------------------------------------------------------------------
# Argument types


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0.0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Inputs


def input_file(option: str, path: str) -> None:
    """Refuse, in one line, an input path that is missing, a directory or not a regular file."""
    if Path(path).is_dir():
        raise UsageError(f"{option} {path}: is a directory, not a file")
    if not Path(path).exists():
        raise UsageError(f"{path}: no such file")
    if not Path(path).is_file():
        raise UsageError(f"{option} {path}: not a regular file")


def _load(args: argparse.Namespace, compile_ahead: bool = True) -> tuple[Any, Any]:
    """``(book, market)`` of the arguments ``BOOK --market MARKET [--valuation WHEN]``, the book checked
    against the market; every problem is one :class:`UsageError` line. On a first run, a helper
    compiles the boundary engine when the book needs it (``compile_ahead``: the caller starts its own)."""
    from optmm import _compile_ahead
    from optmm.book import Book

    input_file("BOOK", args.book)
    input_file("--market", args.market)
    market = load_market(args.market, args.valuation)
    with as_usage_error(ValueError, OSError):
        book = Book.load(args.book)
        book.check_market(market)
        if compile_ahead:
            _compile_ahead.for_book(book, market)  # on a first run, a second core compiles an engine
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


# --------------------------------------------------------------------------------------------------
# Formats


#: Table columns that are rates or vols: shown in percent.
_PERCENT_COLUMNS = frozenset({"vol", "rate", "div_yield"})


def _column_formatter(name: str, values: pd.Series) -> Callable[[Any], str]:
    """How a table shows one column: rates in percent, other numbers at a precision that shows them."""
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if name in _PERCENT_COLUMNS:
        d = decimals_to_show(numeric * 100.0, 3, 2)
        return lambda v: "" if _blank(v) else f"{100.0 * float(v):.{d}f}%"
    d = decimals_to_show(numeric, 3, 2)
    return lambda v: "" if _blank(v) else f"{float(v):,.{d}f}"


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v) or bool(pd.isna(v))


def table_text(frame: pd.DataFrame) -> str:
    """A frame as a plain-text table: numbers right-aligned, each float column at a precision that
    shows its values (:func:`~optmm._config.decimals_to_show`), rates and vols in percent, missing
    values blank."""
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
# --dask: work spread over a Dask cluster

DASK_METAVAR = "ADDRESS|local[:N]"


DASK_HELP = (
    "run on a Dask cluster: 'local' (one worker process per core), 'local:N', or the address of a "
    "running scheduler such as tcp://host:8786"
)


def dask_spec(text: str) -> str:
    """``argparse`` type of ``--dask``: the spec, if :func:`optmm.scaleout.parse_spec` accepts it."""
    from optmm.scaleout.cluster import check_spec

    return check_spec(text)


@contextmanager
def _client(spec: str) -> Iterator[Client]:
    from optmm.scaleout.cluster import client_for

    with ExitStack() as stack:
        try:
            client = stack.enter_context(client_for(spec))
        except (ValueError, OSError) as exc:  # a bad spec, or no scheduler at the address
            raise UsageError(f"--dask {spec}: {exc}") from None
        yield client


@contextmanager
def scenario_engine(
    spec: str | None, book: Book, market: Market
) -> Iterator[tuple[Callable[..., Any], Callable[[Any], Any]]]:
    """``(scenario_grid(**kwargs), run_stress(stress))`` for a book: local, or on a cluster.

    With ``spec`` None the local engine (:mod:`optmm.risk`); else the book partitioned by underlying
    over the cluster of ``spec`` (:class:`optmm.scaleout.DistributedBook`), released with the cluster on
    exit. Both give the same figures (to rounding of the sums).
    """
    if spec is None:
        from optmm.risk import run_stress, scenario_grid

        yield (
            (lambda **kwargs: scenario_grid(book, market, **kwargs)),
            (lambda s: run_stress(book, market, s)),
        )
        return
    from optmm.scaleout import DistributedBook

    with _client(spec) as client, DistributedBook.scatter(client, book, market) as dbook:
        yield dbook.scenario_grid, dbook.run_stress


def parse_grid(
    text: str,
    *,
    what: str,
    max_points: int,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    unit: str = "",
) -> tuple[float, ...]:
    """The values of ``LO:HI:STEP`` (HI included when on the grid) or ``A,B,C`` (as given, in order),
    each a finite number within the bounds, at most ``max_points`` of them: the one parser of a
    command line's ranges. Grid points are rounded to 12 significant digits of the grid's scale, so
    that ``0.7:1:0.1`` ends on 1.0 and ``-1:1:0.1`` passes through 0.0.

    Raises
    ------
    argparse.ArgumentTypeError
        ``"bad <what> '<text>': <problem>"``.
    """

    def fail(problem: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(f"bad {what} {text!r}: {problem}")

    sep = ":" if ":" in text else ","
    try:
        parts = [float(p) for p in text.split(sep)]
    except ValueError:
        raise fail("expected LO:HI:STEP or A,B,C (numbers)") from None
    if not all(math.isfinite(p) for p in parts):
        raise fail("values must be finite numbers")
    if sep == ":":
        if len(parts) != 3:
            raise fail("expected LO:HI:STEP")
        lo, hi, step = parts
        if not (step > 0.0 and hi >= lo):
            raise fail("need LO <= HI and STEP > 0")
        span = (hi - lo) / step * (1.0 + 1e-12) + 1e-9  # counted in float first: never a huge allocation
        if not span < max_points:
            count = f"{math.floor(span) + 1:,}" if math.isfinite(span) else "infinitely many"
            raise fail(f"{count} points, more than the maximum {max_points:,}")
        scale = max(abs(lo), abs(hi))
        digits = 12 - (math.floor(math.log10(scale)) + 1 if scale > 0.0 else 0)
        values = [round(lo + step * i, digits) + 0.0 for i in range(math.floor(span) + 1)]
    else:
        if len(parts) > max_points:
            raise fail(f"{len(parts):,} values, more than the maximum {max_points:,}")
        values = parts
    for v in values:
        if not within(v, ge=ge, gt=gt, le=le):
            raise fail(f"{v:g} is not {bound_text(ge=ge, gt=gt, le=le)}" + (f" ({unit})" if unit else ""))
    return tuple(values)
