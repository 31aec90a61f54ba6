"""``optmm fit``: from today's quotes to an arbitrage-free vol surface in a market TOML file.

::

    optmm fit CHAIN [--market MARKET [--valuation WHEN]] --out FITTED.toml [--plot DIR] [--stale-seconds S]
    optmm fit --vols VOLS --market MARKET [--valuation WHEN] --out FITTED.toml [--plot DIR]

Prints one line per expiry (forward, implied dividend, ATM vol, skew, RMSE in vol points, share of
fitted prices inside the bid/ask, arbitrage found) and writes the market: the fitted underlyings'
spot, rate and dividend yield (their implied carry, replacing any cash dividends and borrow rate)
and surfaces (``type = "fitted"``); the other underlyings, index, betas, ``sticky``, time zone and
contract terms of ``--market`` are kept. Fits are on whole days (ACT/365 from the valuation date):
a valuation that is not a day's 16:00 close is refused.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from optmm.cli.common import UsageError, add_valuation_option, as_usage_error, check_destination, load_market

if TYPE_CHECKING:
    from optmm.market import Market

__all__ = ["add_fit_parser", "run_fit"]


def add_fit_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit an arbitrage-free vol surface to an option chain; write the fitted market",
        description="Per expiry: put-call parity forward, OTM implied vols, an SVI + spline smile "
        "free of butterfly arbitrage; across expiries no calendar arbitrage.",
    )
    p.add_argument("chain", nargs="?", help="option chain (CSV or .parquet)")
    p.add_argument("--vols", help="implied vols instead of a chain (CSV or .parquet)")
    p.add_argument("--market", help="market TOML whose other data is kept (required with --vols)")
    add_valuation_option(p)
    p.add_argument("--out", required=True, help="the fitted market TOML to write")
    p.add_argument("--plot", help="directory for a PNG per expiry and one of the surface")
    p.add_argument("--stale-seconds", type=float, default=300.0, help="drop quotes older than this (s)")


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "-"


def _check_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, a combination of options that cannot run and a missing input."""
    if (args.chain is None) == (args.vols is None):
        raise UsageError("give a CHAIN file or --vols FILE (one of them)")
    if args.vols is not None and args.market is None:
        raise UsageError("--vols needs --market (valuation date, spots and forwards)")
    if args.valuation is not None and args.market is None:
        raise UsageError("--valuation needs --market (the market file it moves)")
    check_destination("--out", args.out)
    if args.plot is not None and not Path(args.plot).is_dir():
        raise UsageError(f"--plot {args.plot}: no such directory")
    for path in (args.chain, args.vols, args.market):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{path}: no such file")


def _fitted_market(base: Market | None, valuation: Any, fits: dict[str, Any], source: str) -> Market:
    """``base`` (or an empty market) with the fitted underlyings' spot, carry and surface."""
    from optmm.market import Market, Sticky

    spot = dict(base.spot) if base else {}
    rate = dict(base.rate) if base else {}
    div = dict(base.div_yield) if base else {}
    surface = dict(base.surface) if base else {}
    terms: dict[str, Any] = {}
    if base is not None:
        terms = {
            "timezone": base.timezone,
            # the implied carry of a fitted underlying holds its dividends and borrow
            "dividends": {u: d for u, d in base.dividends.items() if u not in fits},
            "borrow": {u: b for u, b in base.borrow.items() if u not in fits},
            "settlement": dict(base.settlement),
            "style": dict(base.style),
            "asset": dict(base.asset),
        }
    for und, f in fits.items():
        spot[und], rate[und], div[und], surface[und] = f.spot, f.rate, f.div_yield, f.surface
    with as_usage_error():
        return Market(
            valuation=valuation,
            spot=spot,
            rate=rate,
            div_yield=div,
            surface=surface,
            beta=dict(base.beta) if base else {},
            index=base.index if base else None,
            sticky=base.sticky if base else Sticky.STRIKE,
            source=source,
            **terms,
        )


def _print_fits(fits: dict[str, Any], out: TextIO) -> None:
    """One line per fitted expiry, then how forwards were found where not by parity, and dropped rows."""
    import numpy as np

    header = (
        f"{'underlying':<10} {'expiry':<10} {'quotes':>6} {'forward':>11} {'div':>7} {'atm_vol':>7} "
        f"{'skew':>7} {'rmse_vp':>7} {'inside':>6} {'fit':<10} {'arb':>3}"
    )
    print(header, file=out)
    total_arb = 0
    for und, f in fits.items():
        for e in f.expiries:
            arb = e.butterfly_violations + e.calendar_violations
            day = str(np.asarray(e.expiry).astype("datetime64[D]"))
            total_arb += arb
            inside = _fmt(100 * e.inside_share, ".1f")
            print(
                f"{und:<10} {day:<10} {e.n_quotes:>6} {e.forward:>11.4f} "
                f"{100 * e.implied_dividend + 0.0:>6.2f}% {100 * e.atm_vol:>7.2f} {e.skew:>7.3f} "
                f"{e.rmse_vol_pts:>7.3f} {inside:>6} {e.method:<10} {arb:>3}",
                file=out,
            )
        for e in f.expiries:
            if e.forward_method not in ("parity", "given"):
                day = str(np.asarray(e.expiry).astype("datetime64[D]"))
                how = {
                    "parity, rate": "parity with the discount factor from the rate column",
                    "spot, rate": "spot and rate (no call/put pair at one strike)",
                }[e.forward_method]
                print(f"{und} {day}: forward from {how}", file=out)
        dropped = ", ".join(f"{k} {v}" for k, v in f.dropped.items() if v)
        if dropped:
            print(f"{und}: rows dropped: {dropped}", file=out)
    print(f"arbitrage violations: {total_arb}", file=out)


def run_fit(args: argparse.Namespace) -> int:
    from optmm.chain.fit import fit_chain, fit_vols
    from optmm.chain.reader import read_chain, read_vols
    from optmm.chain.toml import write_market

    _check_args(args)
    base = load_market(args.market, args.valuation) if args.market else None
    if base is not None and base.is_intraday:
        assert base.valuation_time is not None
        raise UsageError(
            f"{args.market}: valuation {base.valuation_time.isoformat()}: optmm fit works on whole days "
            "from a day's close; give a date (e.g. --valuation 2026-11-20)"
        )
    with as_usage_error():
        if args.vols is not None:
            assert base is not None
            valuation = base.valuation
            fits = fit_vols(read_vols(args.vols), valuation, base.spot, base.forward)
        else:
            valuation, fits = fit_chain(read_chain(args.chain, stale_seconds=args.stale_seconds))
    market = _fitted_market(base, valuation, fits, args.out)
    _print_fits(fits, sys.stdout)
    source = args.chain or args.vols
    try:
        write_market(market, args.out, header=f"fitted by optmm fit from {Path(source).name}")
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    if args.plot is not None:
        from optmm.chain.plots import plot_fits

        plot_fits(fits, args.plot)
    return 0
