"""Pieces shared by the ``optmm`` sub-commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

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
