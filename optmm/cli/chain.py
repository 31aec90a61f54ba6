"""``optmm chain``: price and Greeks of calls and puts over a strike ladder, the quick option-chain
calculator::

    optmm chain --spot 100 --vol 0.2 --rate 0.04 --div 0 --days 30 --strikes 80:120:5

``--vol``, ``--rate`` and ``--div`` are decimals (0.2) or percents (20%); a bare number above 1 is
refused (``--vol 20`` would be 2,000%).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from optmm._config import to_json
from optmm.cli.common import (
    UsageError,
    _finite_float,
    _nonnegative_float,
    _positive_float,
    as_usage_error,
    parse_grid,
)
from optmm.units import DAYS_PER_YEAR, rho_per_pct_py, theta_per_day_py, vega_per_vol_point_py

__all__ = ["MAX_STRIKES", "add_chain_parser", "default_strikes", "parse_strikes", "run_chain"]

MAX_STRIKES = 10_000


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
    """Parse a strike spec: ``LO:HI:STEP`` (HI included when on the grid) or ``K1,K2,...``, each > 0,
    at most :data:`MAX_STRIKES`; sorted, duplicates dropped.

    >>> parse_strikes("80:100:5")
    (80.0, 85.0, 90.0, 95.0, 100.0)
    >>> parse_strikes("80:99:5")
    (80.0, 85.0, 90.0, 95.0)
    >>> parse_strikes("105, 95,100")
    (95.0, 100.0, 105.0)
    >>> parse_strikes("0.1:0.3:0.1")
    (0.1, 0.2, 0.3)
    """
    return tuple(sorted(set(parse_grid(spec.strip(), what="strikes", max_points=MAX_STRIKES, gt=0.0))))


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


def add_chain_parser(subparsers: Any) -> None:
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
    with as_usage_error():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # rows checked below
            g = bsm_greeks(args.spot, k, t, args.rate, args.div, args.vol, is_call)
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


def _write_json(out: TextIO, inputs: dict[str, float], rows: list[dict[str, Any]]) -> None:
    units = {name: desc for name, _, desc in _TRADER_FIELDS}
    units.update(dict(_RAW_FIELDS))
    doc = {
        "inputs": {**inputs, "day_count": "ACT/365"},
        "units": units,
        "rows": rows,
    }
    out.write(to_json(doc, indent=2))
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

    head = side(headers)  # the calls' and the puts' alike
    sep = " | "
    title = (
        f"optmm chain  spot={_fmt_num(spot)}  vol={_fmt_num(inputs['vol'])} "
        f"({inputs['vol'] * 100:.4g}%)  rate={_fmt_num(inputs['rate'])} "
        f"({inputs['rate'] * 100:.4g}%)  div={_fmt_num(inputs['div'])} "
        f"({inputs['div'] * 100:.4g}%)  days={_fmt_num(inputs['days'])}  "
        f"t={inputs['t_years']:.6f}y (days/365, ACT/365)  model=BSM"
    )
    lines = [title]
    lines.append("CALLS".center(len(head)) + sep + " " * kw + sep + "PUTS".center(len(head)))
    lines.append(head + sep + "strike".rjust(kw) + sep + head)
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


def run_chain(args: argparse.Namespace) -> int:
    inputs, rows = _chain_rows(args)
    _WRITERS[args.format](sys.stdout, inputs, rows)
    return 0
