"""Command-line interface: ``optmm <command> ...``.

Commands are registered in :data:`COMMANDS`, a dispatch table mapping a sub-command name to a
pair ``(add_parser, run)``:

* ``add_parser(subparsers)`` adds the sub-command's parser to the ``argparse`` sub-parsers action;
* ``run(args)`` executes it with the parsed :class:`argparse.Namespace` and returns an exit code.

Usage errors (bad or missing arguments, and ``ValueError`` raised by the Greeks engine for the
given inputs) never produce a traceback: :func:`main` prints ONE line, ``optmm: error: ...``, on
stderr and returns exit code 2.

Beyond usage errors, :func:`main` turns any ``OSError``, ``sqlite3.Error``, ``MemoryError`` or
``ValueError`` that a command let through into the same one line and exit code 2, and prints no
numpy RuntimeWarning (the commands check their figures and name what is not finite).

``optmm chain`` is the quick option-chain calculator::

    optmm chain --spot 100 --vol 0.2 --rate 0.04 --div 0 --days 30 --strikes 80:120:5

``--vol``, ``--rate`` and ``--div`` are decimals (0.2) or percents (20%); a bare number above 1 is
refused (``--vol 20`` would be 2,000%).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np

from optmm import (
    cli_audit,
    cli_dist,
    cli_explain,
    cli_fit,
    cli_limits,
    cli_report,
    cli_risk,
    cli_sim,
    cli_var,
)
from optmm._progress import compile_notice, stderr_is_terminal
from optmm.cli_common import UsageError
from optmm.units import DAYS_PER_YEAR, rho_per_pct_py, theta_per_day_py, vega_per_vol_point_py

__all__ = ["COMMANDS", "EXIT_USAGE", "MAX_STRIKES", "default_strikes", "main", "parse_strikes"]

EXIT_USAGE = 2
MAX_STRIKES = 10_000

_ERROR_PREFIX = "optmm: error: "


class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are raised (one line, no usage dump) instead of printed."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# --------------------------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------------------------


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


def _decimal_or_percent(name: str, *, what: str, example: float, max_decimal: float, max_pct: float,
                        negative: bool) -> Callable[[str], float]:  # fmt: skip
    """An argument type for a rate-like number: ``0.2`` (a decimal) or ``20%`` (a percent).

    A bare number above ``max_decimal`` in magnitude is refused: ``--vol 20`` is 2,000% as a
    decimal, and more likely meant as 20%. So is a percent above ``max_pct`` in magnitude.
    """

    def parse(text: str) -> float:
        body = text.strip()
        pct = body.endswith("%")
        value = _finite_float(body[:-1] if pct else body)
        if value < 0.0 and not negative:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
        if pct:
            if abs(value) > max_pct:
                raise argparse.ArgumentTypeError(f"{text!r}: {what} beyond {max_pct:g}% is not plausible")
            return value / 100.0
        if abs(value) > max_decimal:
            raise argparse.ArgumentTypeError(
                f"{text!r} is a decimal ({example:g} = {100 * example:g}%), so {value:g} would be "
                f"{100 * value:,.0f}%: write {value / 100:g} for {value:g}%, or the percent itself "
                f"({name} {value:g}%)"
            )
        return value

    return parse


_vol_arg = _decimal_or_percent(
    "--vol", what="a vol", example=0.2, max_decimal=1.0, max_pct=1000.0, negative=False
)
_rate_arg = _decimal_or_percent(
    "--rate", what="a rate", example=0.04, max_decimal=1.0, max_pct=100.0, negative=True
)
_div_arg = _decimal_or_percent(
    "--div", what="a yield", example=0.01, max_decimal=1.0, max_pct=100.0, negative=True
)


def _clean(x: float) -> float:
    """Round away binary noise from a grid value (``80 + 3 * 0.1`` -> ``80.3``)."""
    return float(f"{x:.12g}")


def parse_strikes(spec: str) -> tuple[float, ...]:
    """Parse a strike spec: ``LO:HI:STEP`` (HI included when on the grid) or ``K1,K2,...``.

    >>> parse_strikes("80:100:5")
    (80.0, 85.0, 90.0, 95.0, 100.0)
    >>> parse_strikes("80:99:5")
    (80.0, 85.0, 90.0, 95.0)
    >>> parse_strikes("105, 95,100")
    (95.0, 100.0, 105.0)
    >>> parse_strikes("0.1:0.3:0.1")
    (0.1, 0.2, 0.3)
    """
    spec = spec.strip()
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"expected LO:HI:STEP, got {spec!r}")
        try:
            lo, hi, step = (_finite_float(p) for p in parts)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"bad LO:HI:STEP {spec!r}: {exc}") from None
        if lo <= 0.0:
            raise argparse.ArgumentTypeError(f"LO must be > 0 in {spec!r}")
        if step <= 0.0:
            raise argparse.ArgumentTypeError(f"STEP must be > 0 in {spec!r}")
        if hi < lo:
            raise argparse.ArgumentTypeError(f"HI must be >= LO in {spec!r}")
        # Count grid points in float first, so that a huge count never allocates.
        span = (hi - lo) / step * (1.0 + 1e-12) + 1e-9
        if not span < MAX_STRIKES:  # also catches an infinite span
            count = f"{math.floor(span) + 1}" if math.isfinite(span) else "infinitely many"
            raise argparse.ArgumentTypeError(
                f"{spec!r} gives {count} strikes, more than the maximum {MAX_STRIKES}"
            )
        strikes = [_clean(lo + step * i) for i in range(math.floor(span) + 1)]
    else:
        strikes = []
        for part in spec.split(","):
            try:
                k = _positive_float(part.strip())
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"bad strike in {spec!r}: {exc}") from None
            strikes.append(k)
        if len(strikes) > MAX_STRIKES:
            raise argparse.ArgumentTypeError(
                f"{len(strikes)} strikes given, more than the maximum {MAX_STRIKES}"
            )
    return tuple(sorted(set(strikes)))


def _nice_step(raw: float) -> float:
    """The value in {1, 2, 2.5, 5} x 10^k closest (in ratio) to ``raw``."""
    exponent = math.floor(math.log10(raw))
    candidates = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 2.5, 5)]
    return min(candidates, key=lambda c: abs(math.log(c / raw)))


def default_strikes(spot: float) -> tuple[float, ...]:
    """About 80%-120% of spot in steps of about 5% of spot, on a round grid.

    >>> default_strikes(100.0)
    (80.0, 85.0, 90.0, 95.0, 100.0, 105.0, 110.0, 115.0, 120.0)
    >>> default_strikes(4321.0)[:3]
    (3600.0, 3800.0, 4000.0)
    """
    step = _nice_step(0.05 * spot)
    center = round(spot / step) * step
    strikes = (_clean(center + i * step) for i in range(-4, 5))
    return tuple(k for k in strikes if k > 0.0)


# --------------------------------------------------------------------------------------------
# optmm chain
# --------------------------------------------------------------------------------------------

# (column key, table header, description) in trader units; the raw partials follow in csv/json.
_TRADER_FIELDS = (
    ("price", "price", "option value, in currency per 1 unit of underlying"),
    ("delta", "delta", "dV/dS"),
    ("gamma", "gamma", "d2V/dS2, delta change per 1.00 of spot"),
    ("vega_per_vol_point", "vega/vpt", "dV/dvol / 100: value change per 1 vol point (1%)"),
    ("theta_per_day", "theta/day", "-dV/dt / 365: value change per calendar day passing"),
    ("rho_per_pct", "rho/1%", "dV/drate / 100: value change per 1% (100bp) of rate"),
    ("vanna", "vanna", "d2V/dS dvol: delta change per 1.00 of vol (raw)"),
    ("volga", "volga", "d2V/dvol2: vega change per 1.00 of vol, per 1.00 of vol (raw)"),
)
_RAW_FIELDS = (
    ("vega_per_unit_vol", "dV/dvol, per 1.00 of vol (raw)"),
    ("theta_per_year", "-dV/dt, per year of calendar time passing (raw)"),
    ("rho_per_unit_rate", "dV/drate, per 1.00 of rate (raw)"),
)
_INPUT_FIELDS = ("spot", "vol", "rate", "div", "days", "t_years")


def _add_chain_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "chain",
        help="price and Greeks of calls and puts over a strike ladder",
        description=(
            "Black-Scholes-Merton prices and Greeks for a call and a put at each strike. "
            "Time to expiry t = DAYS/365 (ACT/365). The table shows trader units: vega per "
            "vol point, theta per calendar day, rho per 1% of rate; csv/json also carry the "
            "raw partial derivatives."
        ),
    )
    p.add_argument("--spot", type=_positive_float, required=True, help="underlying price (> 0)")
    p.add_argument(
        "--vol",
        type=_vol_arg,
        required=True,
        help="volatility: a decimal (0.2) or a percent (20%%); a bare number above 1 is refused",
    )
    p.add_argument(
        "--rate",
        type=_rate_arg,
        default=0.0,
        help="cont. rate: a decimal (0.04) or a percent (4%%); default 0",
    )
    p.add_argument(
        "--div",
        type=_div_arg,
        default=0.0,
        help="cont. dividend yield: a decimal (0.01) or a percent (1%%); default 0",
    )
    p.add_argument(
        "--days",
        type=_nonnegative_float,
        required=True,
        help="calendar days to expiry (>= 0); t = days/365",
    )
    p.add_argument(
        "--strikes",
        type=parse_strikes,
        default=None,
        metavar="LO:HI:STEP|K1,K2,...",
        help="strike grid (HI included when on the grid) or list; "
        "default about 80%%-120%% of spot in ~5%% steps",
    )
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table for people (default); csv / json with unit-suffixed names for machines",
    )


def _chain_rows(args: argparse.Namespace) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from optmm.greeks import bsm_greeks

    strikes = args.strikes if args.strikes is not None else default_strikes(args.spot)
    t = args.days / DAYS_PER_YEAR
    inputs = {
        "spot": args.spot,
        "vol": args.vol,
        "rate": args.rate,
        "div": args.div,
        "days": args.days,
        "t_years": t,
    }
    k = np.repeat(np.asarray(strikes, dtype=np.float64), 2)
    is_call = np.tile(np.array([True, False]), len(strikes))
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rows checked below
            g = bsm_greeks(args.spot, k, t, args.rate, args.div, args.vol, is_call)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n = k.shape[0]
    cols = {
        name: np.broadcast_to(np.asarray(getattr(g, name), dtype=np.float64), (n,))
        for name in ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    }
    rows = []
    for i in range(n):
        vega, theta, rho = float(cols["vega"][i]), float(cols["theta"][i]), float(cols["rho"][i])
        values = {
            "price": float(cols["price"][i]),
            "delta": float(cols["delta"][i]),
            "gamma": float(cols["gamma"][i]),
            "vega_per_vol_point": vega_per_vol_point_py(1.0, vega),
            "theta_per_day": theta_per_day_py(1.0, theta),
            "rho_per_pct": rho_per_pct_py(1.0, rho),
            "vanna": float(cols["vanna"][i]),
            "volga": float(cols["volga"][i]),
            "vega_per_unit_vol": vega,
            "theta_per_year": theta,
            "rho_per_unit_rate": rho,
        }
        row: dict[str, Any] = {"strike": float(k[i]), "type": "call" if is_call[i] else "put"}
        row.update({name: v + 0.0 for name, v in values.items()})  # + 0.0: no "-0.0" output
        bad = [name for name, v in values.items() if not math.isfinite(v)]
        if bad:
            raise UsageError(
                f"strike {_fmt_strike(float(k[i]))} {row['type']}: {bad[0]} is not a finite number; "
                "the spot or strike is too large for the arithmetic"
            )
        rows.append(row)
    return inputs, rows


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_json(out: TextIO, inputs: dict[str, float], rows: list[dict[str, Any]]) -> None:
    units = {name: desc for name, _, desc in _TRADER_FIELDS}
    units.update(dict(_RAW_FIELDS))
    doc = {
        "inputs": {**inputs, "day_count": "ACT/365"},
        "units": units,
        "rows": [{key: _json_safe(v) for key, v in row.items()} for row in rows],
    }
    out.write(json.dumps(doc, indent=2, allow_nan=False))
    out.write("\n")


def _write_csv(out: TextIO, inputs: dict[str, float], rows: list[dict[str, Any]]) -> None:
    fieldnames = ["strike", "type"]
    fieldnames += [name for name, _, _ in _TRADER_FIELDS]
    fieldnames += [name for name, _ in _RAW_FIELDS]
    fieldnames += list(_INPUT_FIELDS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **inputs})
    out.write(buf.getvalue())


def _fmt_num(x: float) -> str:
    """Compact exact-looking number for the header line: 100, 0.2, 97.5."""
    return f"{x:.10g}"


def _fmt_strike(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _write_table(out: TextIO, inputs: dict[str, float], rows: list[dict[str, Any]]) -> None:
    spot = inputs["spot"]
    # Decimals scale with the size of the underlying: spot ~100 -> price to 4dp, gamma to 5dp.
    s = math.floor(math.log10(spot)) - 2
    money = min(max(4 - s, 2), 10)
    decimals = {
        "price": money,
        "delta": 4,
        "gamma": min(max(5 + s, 3), 10),
        "vega_per_vol_point": money,
        "theta_per_day": money,
        "rho_per_pct": money,
        "vanna": 4,
        "volga": money,
    }
    fields = [name for name, _, _ in _TRADER_FIELDS]
    headers = {name: head for name, head, _ in _TRADER_FIELDS}

    by_strike: dict[float, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_strike.setdefault(row["strike"], {})[row["type"]] = row

    def cell(row: dict[str, Any], name: str) -> str:
        v = row[name]
        if not math.isfinite(v):
            return "nan"
        text = f"{v:.{decimals[name]}f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.00"

    cells = {
        (k, typ, name): cell(sides[typ], name)
        for k, sides in by_strike.items()
        for typ in ("call", "put")
        for name in fields
    }
    width = {
        name: max(
            [len(headers[name])] + [len(cells[(k, t, name)]) for k in by_strike for t in ("call", "put")]
        )
        for name in fields
    }
    strike_txt = {k: _fmt_strike(k) for k in by_strike}
    kw = max([len("strike")] + [len(v) for v in strike_txt.values()])

    def side(values: dict[str, str]) -> str:
        return "  ".join(values[name].rjust(width[name]) for name in fields)

    call_head = side(headers)
    put_head = side(headers)
    sep = " | "
    title = (
        f"optmm chain  spot={_fmt_num(spot)}  vol={_fmt_num(inputs['vol'])} "
        f"({inputs['vol'] * 100:.4g}%)  rate={_fmt_num(inputs['rate'])} "
        f"({inputs['rate'] * 100:.4g}%)  div={_fmt_num(inputs['div'])} "
        f"({inputs['div'] * 100:.4g}%)  days={_fmt_num(inputs['days'])}  "
        f"t={inputs['t_years']:.6f}y (days/365, ACT/365)  model=BSM"
    )
    lines = [title]
    lines.append("CALLS".center(len(call_head)) + sep + " " * kw + sep + "PUTS".center(len(put_head)))
    lines.append(call_head + sep + "strike".rjust(kw) + sep + put_head)
    lines.append("-" * len(lines[-1]))
    for k in by_strike:
        call = side({name: cells[(k, "call", name)] for name in fields})
        put = side({name: cells[(k, "put", name)] for name in fields})
        lines.append(call + sep + strike_txt[k].rjust(kw) + sep + put)
    lines.append("-" * len(lines[2]))
    lines.append(
        "units: price per 1 unit of underlying; delta per 1.00 spot; gamma = d(delta)/d(spot); "
        "vega/vpt = vega per 1 vol point (raw vega/100);"
    )
    lines.append(
        "       theta/day = value change per calendar day passing (raw theta/365); "
        "rho/1% = per 1% of rate (raw rho/100);"
    )
    lines.append(
        "       vanna = d(delta)/d(vol) and volga = d(vega)/d(vol), raw: per 1.00 of vol "
        "(1.00 = 100 vol points)"
    )
    out.write("\n".join(line.rstrip() for line in lines) + "\n")


_WRITERS: dict[str, Callable[[TextIO, dict[str, float], list[dict[str, Any]]], None]] = {
    "table": _write_table,
    "csv": _write_csv,
    "json": _write_json,
}


def _run_chain(args: argparse.Namespace) -> int:
    inputs, rows = _chain_rows(args)
    _WRITERS[args.format](sys.stdout, inputs, rows)
    return 0


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

#: name -> (add_parser(subparsers), run(args) -> exit code). Add new sub-commands here.
COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "chain": (_add_chain_parser, _run_chain),
    "risk": (cli_risk.add_risk_parser, cli_risk.run_risk),
    "scenario": (cli_risk.add_scenario_parser, cli_risk.run_scenario),
    "var": (cli_var.add_var_parser, cli_var.run_var),
    "audit": (cli_audit.add_audit_parser, cli_audit.run_audit),
    "limits": (cli_limits.add_limits_parser, cli_limits.run_limits),
    "explain": (cli_explain.add_explain_parser, cli_explain.run_explain),
    "simulate": (cli_sim.add_simulate_parser, cli_sim.run_simulate),
    "sweep": (cli_dist.add_sweep_parser, cli_dist.run_sweep),
    "fit": (cli_fit.add_fit_parser, cli_fit.run_fit),
    "report": (cli_report.add_report_parser, cli_report.run_report),
}


def build_parser() -> argparse.ArgumentParser:
    from optmm import __version__

    parser = _ArgumentParser(
        prog="optmm", description="Options market-making risk engine: command-line tools."
    )
    parser.add_argument("--version", action="version", version=f"optmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(subparsers)
    return parser


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--spot -20:20:2`` -> ``--spot=-20:20:2``: argparse would take "-20:20:2" for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and argv[i + 1][:1] == "-":
            nxt = argv[i + 1]
            if len(nxt) > 1 and (nxt[1].isdigit() or nxt[1] == "."):
                out.append(f"{a}={nxt}")
                i += 2
                continue
        out.append(a)
        i += 1
    return out


def _runtime_warnings_are_errors() -> bool:
    """Whether the warning filters in force (``python -W error``, a test run) turn a numpy
    RuntimeWarning into an exception: then :func:`main` leaves them so."""
    for action, message, category, module, _lineno in warnings.filters:
        if not issubclass(RuntimeWarning, category):
            continue
        if message is not None and not message.match("overflow encountered"):
            continue
        if module is not None and not module.match("numpy"):
            continue
        return action == "error"
    return False


def _unexpected_error(exc: BaseException) -> str:
    """One line for an error that no command turned into a :class:`UsageError`, naming what it can."""
    if isinstance(exc, MemoryError):
        return "out of memory: the input (book, grid, run) is too large for this machine's memory"
    if isinstance(exc, OSError):
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{' -> '.join(names)}: {reason}" if names else f"system error: {reason}"
    if isinstance(exc, sqlite3.Error):
        return f"database error (SQLite): {exc}"
    if isinstance(exc, RuntimeWarning):
        return f"numerical error: {exc}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``optmm`` command line; returns the process exit code.

    Every error ends as ONE line on stderr, ``optmm: error: ...``, and exit code 2: usage errors,
    and as a safety net any ``OSError``, ``sqlite3.Error``, ``MemoryError`` or ``ValueError`` that a
    command did not turn into one. numpy's RuntimeWarnings (overflow, invalid value) are not
    printed: the commands check their figures and name what is not finite; where the warning
    filters in force make them errors (``python -W error``, the tests), they stay errors and end
    as such a line.
    """
    with warnings.catch_warnings():
        if not _runtime_warnings_are_errors():
            warnings.simplefilter("ignore", RuntimeWarning)
        try:
            parser = build_parser()
            try:
                args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
            except SystemExit as exc:  # --help / --version
                return exc.code if isinstance(exc.code, int) else 0
            with compile_notice(enabled=stderr_is_terminal()):  # a first run compiles for minutes: say so
                return COMMANDS[args.command][1](args)
        except UsageError as exc:
            message = str(exc)
        except BrokenPipeError:  # e.g. `optmm chain ... | head`: exit quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        except (OSError, sqlite3.Error, MemoryError, ValueError, RuntimeWarning) as exc:
            message = _unexpected_error(exc)
    sys.stderr.write(_ERROR_PREFIX + _one_line(message) + "\n")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
