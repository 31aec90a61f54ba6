"""Writing a :class:`~optmm.market.Market` to TOML, every surface type included, to reload bit for bit.

Floats are written with ``repr`` (the shortest text that reads back to the same float64) and
expiries as the dates whose ACT/365 year fractions are the surface's; ``Market.load`` of the text
gives a market equal to the one written, its fitted surfaces' ``vol`` identical to the last bit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from optmm._io import atomic_target
from optmm.chain.surface import _PARAMS, FittedSurface
from optmm.market import DEFAULT_TIMEZONE, Market
from optmm.surface import FlatSurface, SurfaceError, SVISurface, TableSurface, VolSurface
from optmm.units import DAYS_PER_YEAR

__all__ = ["fitted_from_toml", "market_toml", "write_market"]


def _num(x: float) -> str:
    return repr(float(x))


def _list(values: Any) -> str:
    return "[" + ", ".join(_num(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)) + "]"


def _value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return _num(v)


def _dates(market: Market, und: str, years: np.ndarray) -> str:
    """The expiry dates whose settlements (the underlying's default) are ``years`` from the valuation,
    exactly (as :meth:`Market.year_fraction` reads them back)."""
    settlement = market.default_settlement(und)
    shift = market.year_fraction(market.valuation, settlement=settlement)  # the valuation date's settlement
    days = np.rint((np.asarray(years) - shift) * DAYS_PER_YEAR).astype(np.int64)
    dates = np.asarray(market.valuation).astype("datetime64[D]") + days.astype("timedelta64[D]")
    if not np.array_equal(market.year_fraction(dates, settlement=settlement), years):
        raise ValueError(
            "surface expiries are not settlement times of whole days after the valuation date (ACT/365)"
        )
    return "[" + ", ".join(str(d) for d in dates) + "]"


def _surface_lines(table: str, s: VolSurface, market: Market, und: str) -> list[str]:
    lines = [f"[{table}]"]
    if isinstance(s, FlatSurface):
        lines += ['type = "flat"', f"vol = {_num(s.vol)}"]
    elif isinstance(s, TableSurface):
        lines += [
            'type = "table"',
            f"expiries = {_dates(market, und, s.expiries)}",
            f"strikes = {_list(s.strikes)}",
        ]
        lines.append("vols = [" + ", ".join(_list(row) for row in s.vols) + "]")
    elif isinstance(s, SVISurface):
        lines += ['type = "svi"', f"expiries = {_dates(market, und, s.expiries)}"]
        lines += [f"{n} = {_list(getattr(s, n))}" for n in _PARAMS]
    elif isinstance(s, FittedSurface):
        lines += ['type = "fitted"', f"expiries = {_dates(market, und, s.expiries)}"]
        lines.append(f"forwards = {_list(s.forwards)}")
        lines += [f"{n} = {_list(getattr(s, n))}" for n in _PARAMS]
        lines.append("knots = [" + ", ".join(_list(x) for x in s.knots) + "]")
        lines.append("coef = [" + ", ".join(_list(x) for x in s.coef) + "]")
        if s.diagnostics:
            lines += ["", f"[{table}.diagnostics]"]
            lines += [f"{key} = {_value(v)}" for key, v in s.diagnostics.items()]
    else:
        raise ValueError(f"{table}: cannot write a {type(s).__name__} to TOML")
    return lines


def market_toml(market: Market, *, header: str = "") -> str:
    """The TOML text of ``market`` (layout of ``docs/book-and-market.md``, plus ``type = "fitted"``)."""
    lines = [f"# {line}" for line in header.splitlines()]
    when = market.valuation_time
    assert when is not None
    lines += [
        f"valuation = {when.isoformat() if market.is_intraday else market.valuation}",
        f'sticky = "{market.sticky.value}"',
    ]
    if market.timezone != DEFAULT_TIMEZONE:
        lines.append(f"timezone = {_value(market.timezone)}")
    if market.index is not None:
        lines.append(f"index = {_value(market.index)}")
    for und in market.spot:
        table = "underlyings." + (und if und.replace("_", "").replace("-", "").isalnum() else _value(und))
        lines += ["", f"[{table}]", f"spot = {_num(market.spot[und])}"]
        lines.append(f"rate = {_num(market.rate[und])}")
        if und in market.dividends:
            cash = ", ".join(f"{{ex_date = {d}, amount = {_num(a)}}}" for d, a in market.dividends[und])
            lines.append(f"dividends = [{cash}]")
        else:
            lines.append(f"div_yield = {_num(market.div_yield[und])}")
        if und in market.borrow:
            lines.append(f"borrow = {_num(market.borrow[und])}")
        for key in ("settlement", "style", "asset"):
            if und in getattr(market, key):
                lines.append(f"{key} = {_value(getattr(market, key)[und])}")
        if und in market.beta:
            lines.append(f"beta = {_num(market.beta[und])}")
        if und in market.surface:
            lines += ["", *_surface_lines(f"{table}.surface", market.surface[und], market, und)]
    return "\n".join(lines) + "\n"


def write_market(market: Market, path: str | os.PathLike[str], *, header: str = "") -> None:
    """Write :func:`market_toml` to ``path``, whole or not at all."""
    with atomic_target(path, text=True) as f:
        f.write(market_toml(market, header=header))


def fitted_from_toml(doc: dict[str, Any], expiries: np.ndarray) -> FittedSurface:
    """Build a :class:`FittedSurface` from its TOML table (``expiries`` already in years).

    Raises :class:`~optmm.surface.SurfaceError` naming the field.
    """

    def numbers(name: str) -> np.ndarray:
        if name not in doc:
            raise SurfaceError(name, "missing")
        value = doc[name]
        if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise SurfaceError(name, f"must be a list of numbers, got {value!r}")
        return np.array(value, dtype=np.float64)

    def ragged(name: str) -> list[np.ndarray]:
        if name not in doc:
            raise SurfaceError(name, "missing")
        value = doc[name]
        if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
            raise SurfaceError(name, "must be a list of lists of numbers (one per expiry)")
        out = []
        for row in value:
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
                raise SurfaceError(name, f"must hold numbers, got {row!r}")
            out.append(np.array(row, dtype=np.float64))
        return out

    diagnostics = doc.get("diagnostics", {})
    if not isinstance(diagnostics, dict):
        raise SurfaceError("diagnostics", "must be a table")
    return FittedSurface(
        expiries=expiries,
        forwards=numbers("forwards"),
        **{n: numbers(n) for n in _PARAMS},
        knots=ragged("knots"),
        coef=ragged("coef"),
        diagnostics=dict(diagnostics),
    )
