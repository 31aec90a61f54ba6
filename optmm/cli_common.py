"""Pieces shared by the ``optmm`` sub-commands."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from optmm._config import bound_text, within

if TYPE_CHECKING:
    from optmm.market import Market


class UsageError(Exception):
    """A user-facing error: reported as one ``optmm: error: ...`` line, exit code 2."""


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
    try:
        market = Market.load(path)
        return market if when is None else market.with_valuation(when)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def valuation_text(market: Market) -> str:
    """The valuation as shown in headers: the date, or the moment when it is not the close."""
    if market.is_intraday:
        assert market.valuation_time is not None
        return market.valuation_time.isoformat(timespec="minutes")
    return str(market.valuation)


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
