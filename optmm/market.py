"""Market data: valuation date, spots, rates, dividend yields, vol surfaces and betas, per underlying.

A :class:`Market` is read from a TOML file (:meth:`Market.load`; the layout is in
``docs/book-and-market.md``) or built directly. It is validated when it is built; errors are
:class:`MarketError` naming the file, the table (``underlyings.AAPL.surface``) and the field.

Time is in years, ACT/365 from :attr:`Market.valuation`; rates and yields are continuously
compounded decimals; vols are decimals.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optmm.surface import FlatSurface, SurfaceError, SVISurface, TableSurface, VolSurface
from optmm.typing import (
    MAX_RATE,
    MAX_YEARS,
    PRICE_RANGE,
    ArrayLike,
    FloatArray,
    WrongTypeError,
    date_array,
    first_non_utf8,
    real_array,
)

__all__ = ["Market", "MarketError", "Sticky"]

TOP = "top level"
MAX_BETA = 100.0
"""Largest |beta| to the index."""


class Sticky(enum.Enum):
    """How the vol surface responds to a spot move."""

    STRIKE = "strike"
    """The vol at each absolute strike is unchanged by a spot move."""
    MONEYNESS = "moneyness"
    """The smile moves with spot: the vol at K after a move S -> S (1 + s) is the old vol at K / (1 + s)."""


class MarketError(ValueError):
    """Invalid market data. The message is ``"<source>: <table>: field '<field>': <problem>"``.

    ``table`` is ``"top level"`` or e.g. ``"underlyings.AAPL"`` / ``"underlyings.AAPL.surface"``.
    """

    def __init__(self, source: str, table: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {table}: field '{field}': {problem}")
        self.source = source
        self.table = table
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Market:
    """Market data for a set of underlyings at one valuation date.

    Parameters
    ----------
    valuation : numpy.datetime64
        Valuation date (``datetime64[D]``; a ``datetime.date`` or ISO string is converted). Year
        fractions are ACT/365 from it.
    spot : dict[str, float]
        Spot price per underlying, finite and > 0.
    rate : dict[str, float]
        Continuously compounded risk-free rate per underlying (decimal); one per spot.
    div_yield : dict[str, float]
        Continuous dividend yield per underlying (decimal); one per spot.
    surface : dict[str, VolSurface]
        Vol surface per underlying; an underlying held only as stock needs none.
    beta : dict[str, float]
        Beta to :attr:`index` per underlying; may be empty. The index's own beta is 1 (filled in if
        absent, refused if given otherwise).
    index : str or None
        The index underlying for beta weighting; must have a spot.
    sticky : Sticky
        How :meth:`vols` moves the surface under a spot shock (a string ``"strike"`` /
        ``"moneyness"`` is converted).
    source : str
        Where the data came from (a file name); used in error messages.
    """

    valuation: np.datetime64
    spot: dict[str, float]
    rate: dict[str, float]
    div_yield: dict[str, float]
    surface: dict[str, VolSurface]
    beta: dict[str, float] = field(default_factory=dict)
    index: str | None = None
    sticky: Sticky = Sticky.STRIKE
    source: str = "<Market>"

    def __post_init__(self) -> None:
        src = self.source
        try:
            valuation = date_array(self.valuation)[()]
            if valuation.ndim:
                raise ValueError("must be a single date")
        except WrongTypeError as exc:
            raise MarketError(
                src, TOP, "valuation", f"not a date: {self.valuation!r} ({exc.problem})"
            ) from None
        except (TypeError, ValueError) as exc:
            raise MarketError(src, TOP, "valuation", f"not a date: {self.valuation!r} ({exc})") from None
        if np.isnat(valuation):
            raise MarketError(src, TOP, "valuation", "missing (NaT)")
        try:
            sticky = Sticky(self.sticky)
        except (TypeError, ValueError):
            raise MarketError(
                src, TOP, "sticky", f"unknown value {self.sticky!r} (expected 'strike' or 'moneyness')"
            ) from None
        for name in ("spot", "rate", "div_yield", "surface", "beta"):
            given = getattr(self, name)
            if not isinstance(given, Mapping):
                raise MarketError(
                    src, TOP, name, f"must be a dict from underlying names, got {type(given).__name__}"
                )
            for u in given:
                if not isinstance(u, str):
                    raise MarketError(src, TOP, name, f"underlying names must be str, got {u!r}")
        if self.index is not None and not isinstance(self.index, str):
            raise MarketError(
                src, TOP, "index", f"must be an underlying's name (str) or None, got {self.index!r}"
            )
        spot = {u: _finite(src, f"underlyings.{u}", "spot", v) for u, v in self.spot.items()}
        rate: dict[str, float] = {}
        div_yield: dict[str, float] = {}
        for u in spot:
            for name, given, out in (("rate", self.rate, rate), ("div_yield", self.div_yield, div_yield)):
                if u not in given:
                    raise MarketError(src, f"underlyings.{u}", name, "missing")
                out[u] = _finite(src, f"underlyings.{u}", name, given[u])
                if abs(out[u]) > MAX_RATE:
                    raise MarketError(
                        src,
                        f"underlyings.{u}",
                        name,
                        f"{out[u]!r} is outside the plausible range [-{MAX_RATE:g}, {MAX_RATE:g}] "
                        "(a continuously compounded decimal: 0.04 is 4% a year)",
                    )
        for u, s in spot.items():
            if s <= 0.0:
                raise MarketError(src, f"underlyings.{u}", "spot", f"must be > 0, got {s!r}")
            if not PRICE_RANGE[0] <= s <= PRICE_RANGE[1]:
                raise MarketError(
                    src,
                    f"underlyings.{u}",
                    "spot",
                    f"{s!r} is outside the plausible range "
                    f"[{PRICE_RANGE[0]:g}, {PRICE_RANGE[1]:g}] (price units)",
                )
        surface = dict(self.surface)
        for u, surf in surface.items():
            if u not in spot:
                raise MarketError(src, f"underlyings.{u}", "spot", "missing (the underlying has a surface)")
            if not callable(getattr(surf, "vol", None)):
                raise MarketError(src, f"underlyings.{u}", "surface", f"not a vol surface: {surf!r}")
        beta = {u: _finite(src, f"underlyings.{u}", "beta", v) for u, v in self.beta.items()}
        for u, b in beta.items():
            if abs(b) > MAX_BETA:
                raise MarketError(
                    src,
                    f"underlyings.{u}",
                    "beta",
                    f"{b!r} is outside the plausible range [-{MAX_BETA:g}, {MAX_BETA:g}]",
                )
        if self.index is not None:
            if self.index not in spot:
                raise MarketError(src, TOP, "index", f"{self.index!r} is not an underlying with a spot")
            if beta.setdefault(self.index, 1.0) != 1.0:
                raise MarketError(
                    src,
                    f"underlyings.{self.index}",
                    "beta",
                    f"the index's beta must be 1, got {beta[self.index]!r}",
                )
        object.__setattr__(self, "valuation", valuation)
        object.__setattr__(self, "sticky", sticky)
        object.__setattr__(self, "spot", spot)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "div_yield", div_yield)
        object.__setattr__(self, "surface", surface)
        object.__setattr__(self, "beta", beta)

    def __repr__(self) -> str:
        names = list(self.spot)
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        index = f", index={self.index!r}" if self.index is not None else ""
        return (
            f"Market(valuation={self.valuation}, underlyings: {shown}{index}, "
            f"sticky={self.sticky.value}, source={self.source!r})"
        )

    # ----------------------------------------------------------------------------------------------
    # loading

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Market:
        """Read and validate a market TOML file (layout in ``docs/book-and-market.md``).

        Parameters
        ----------
        path : str or path-like
            The file; its path is the ``source`` named in errors.

        Returns
        -------
        Market

        Raises
        ------
        MarketError
            Naming the file, the table and the field: a missing or non-positive spot, a missing rate,
            an unknown surface type or field, a vols shape that does not match, an expiry on or
            before the valuation date, an unknown ``sticky``, a TOML syntax error...
        """
        source = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        where = first_non_utf8(data)
        if where is not None:
            line, byte, _ = where
            raise MarketError(
                source, TOP, "<file>", f"not UTF-8 text: byte {byte} on line {line} (save the file as UTF-8)"
            )
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise MarketError(source, TOP, "<syntax>", f"not valid TOML ({exc})") from None
        return _MarketReader(source).read(doc)

    # ----------------------------------------------------------------------------------------------
    # queries

    def year_fraction(self, expiry: ArrayLike) -> FloatArray:
        """Years from the valuation date to ``expiry``, ACT/365.

        Parameters
        ----------
        expiry : array_like of datetime64[D]
            Dates (anything numpy converts to ``datetime64[D]``), any shape.

        Returns
        -------
        ndarray of float64, the shape of ``expiry``
            ``(expiry - valuation)`` in days / 365; negative for past dates, 0.0 where ``expiry`` is NaT
            (stock rows).
        """
        exp = _argument("expiry", expiry, date_array)
        nat = np.isnat(exp)
        days = (np.where(nat, self.valuation, exp) - self.valuation).astype(np.int64)
        return days.astype(np.float64) / 365.0

    def forward(self, underlying: str, t: ArrayLike, *, spot: float | None = None) -> FloatArray:
        """Forward price ``S e^{(r - q) t}``.

        Parameters
        ----------
        underlying : str
        t : array_like of float
            Years to expiry (ACT/365), any shape.
        spot : float, optional
            Spot to use instead of the market's (e.g. a shocked spot), price units.

        Returns
        -------
        ndarray of float64, the shape of ``t``
            Forwards in price units.
        """
        self._check_underlying(underlying)
        s = self.spot[underlying] if spot is None else float(_argument("spot", spot, real_array, scalar=True))
        tt = _argument("t", t, real_array).astype(np.float64, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):
            forward = s * np.exp((self.rate[underlying] - self.div_yield[underlying]) * tt)
        bad = ~np.isfinite(forward)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(
                f"t: {float(tt.reshape(-1)[i])!r} at index {i} gives no finite forward for {underlying!r} "
                f"(spot {s!r}, rate - div_yield {self.rate[underlying] - self.div_yield[underlying]!r})"
            )
        return forward

    def vols(
        self,
        underlying: str,
        strike: ArrayLike,
        t: ArrayLike,
        *,
        spot_shift: float = 0.0,
        vol_shift: float = 0.0,
    ) -> FloatArray:
        """Implied vols from the underlying's surface under a spot shock and a vol shift.

        Parameters
        ----------
        underlying : str
        strike : array_like of float
            Absolute strikes (price units); broadcast with ``t``.
        t : array_like of float
            Years to expiry (ACT/365).
        spot_shift : float
            Relative spot shock ``s``: spot moves to ``S (1 + s)``; must be > -1.
        vol_shift : float
            Absolute vol shift added to every vol (0.05 = +5 vol points).

        Returns
        -------
        ndarray of float64, the broadcast shape of ``strike`` and ``t``
            ``max(vol + vol_shift, 0)``, where ``vol`` is, with :attr:`sticky` =
            ``Sticky.STRIKE``, the surface's vol at ``K`` with the original forward (the surface does
            not move), and with ``Sticky.MONEYNESS`` the original vol at ``K / (1 + s)`` (the smile
            moves with spot; for a surface in log-moneyness this is its vol at ``K`` with the shocked
            forward).
        """
        self._check_underlying(underlying)
        if underlying not in self.surface:
            raise MarketError(self.source, f"underlyings.{underlying}", "surface", "no vol surface")
        s = float(_argument("spot_shift", spot_shift, real_array, scalar=True))
        dv = float(_argument("vol_shift", vol_shift, real_array, scalar=True))
        if not (math.isfinite(s) and s > -1.0):
            raise ValueError(f"spot_shift: invalid value {spot_shift!r} (must be finite and > -1)")
        if not math.isfinite(dv):
            raise ValueError(f"vol_shift: invalid value {vol_shift!r} (must be finite)")
        k = _argument("strike", strike, real_array).astype(np.float64, copy=False)
        tt = _argument("t", t, real_array).astype(np.float64, copy=False)
        forward = self.forward(underlying, tt)
        if self.sticky is Sticky.MONEYNESS and s != 0.0:
            k = k / (1.0 + s)
        vol = np.asarray(self.surface[underlying].vol(k, tt, forward), dtype=np.float64)
        bad = ~np.isfinite(vol)
        if bad.any():  # a surface of the caller's own making (the VolSurface protocol)
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise MarketError(
                self.source,
                f"underlyings.{underlying}",
                "surface",
                f"gave the vol {float(vol.reshape(-1)[i])!r} at index {i} (must be finite)",
            )
        return np.maximum(vol + dv, 0.0)

    def _check_underlying(self, underlying: str) -> None:
        if underlying not in self.spot:
            raise MarketError(
                self.source, f"underlyings.{underlying}", "spot", "unknown underlying (no market data)"
            )


# --------------------------------------------------------------------------------------------------
# TOML reading


def _argument(
    name: str, value: Any, convert: Callable[[Any], np.ndarray], *, scalar: bool = False
) -> np.ndarray:
    """A method's argument through ``convert`` (:func:`~optmm.typing.real_array` or
    :func:`~optmm.typing.date_array`), with a ValueError naming it if it is of the wrong kind."""
    try:
        arr = convert(value)
    except WrongTypeError as exc:
        where = "" if exc.index is None else f" at index {exc.index}"
        raise ValueError(f"{name}: {exc.problem}{where}") from None
    if scalar and arr.ndim:
        raise ValueError(f"{name}: must be a single number, got shape {arr.shape}")
    return arr


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(source: str, table: str, name: str, value: Any) -> float:
    if not _is_number(value) and not isinstance(value, np.floating | np.integer):
        raise MarketError(source, table, name, f"must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise MarketError(source, table, name, "a number too large for a float") from None
    if not math.isfinite(x):
        raise MarketError(source, table, name, f"must be finite, got {x!r}")
    return x


_TOP_KEYS = {"valuation", "sticky", "index", "rate", "div_yield", "underlyings"}
_UNDERLYING_KEYS = {"spot", "rate", "div_yield", "beta", "vol", "surface"}
_SURFACE_KEYS = {
    "flat": {"type", "vol"},
    "table": {"type", "expiries", "strikes", "vols"},
    "svi": {"type", "expiries", "a", "b", "rho", "m", "sigma"},
    # written by `optmm fit` (optmm.chain.toml)
    "fitted": {"type", "expiries", "forwards", "a", "b", "rho", "m", "sigma", "knots", "coef", "diagnostics"},
}


class _MarketReader:
    """Turns a parsed TOML document into a :class:`Market`, naming table and field in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, table: str, name: str, problem: str) -> MarketError:
        return MarketError(self.source, table, name, problem)

    def unknown_keys(self, table: str, doc: dict[str, Any], allowed: set[str]) -> None:
        for key in doc:
            if key not in allowed:
                raise self.error(table, key, f"unknown field (expected one of {', '.join(sorted(allowed))})")

    def number(self, table: str, doc: dict[str, Any], name: str, default: float | None = None) -> float:
        if name not in doc:
            if default is None:
                raise self.error(table, name, "missing")
            return default
        return _finite(self.source, table, name, doc[name])

    def date(self, table: str, name: str, value: Any) -> np.datetime64:
        if isinstance(value, dt.datetime):
            raise self.error(
                table, name, f"expected a date (YYYY-MM-DD), got a date-time {value.isoformat()}"
            )
        if isinstance(value, dt.date):
            return np.datetime64(value, "D")
        if isinstance(value, str):
            try:
                return np.datetime64(dt.date.fromisoformat(value.strip()), "D")
            except ValueError:
                pass
        raise self.error(table, name, f"expected a date (YYYY-MM-DD), got {value!r}")

    def read(self, doc: dict[str, Any]) -> Market:
        self.unknown_keys(TOP, doc, _TOP_KEYS)
        if "valuation" not in doc:
            raise self.error(TOP, "valuation", "missing")
        valuation = self.date(TOP, "valuation", doc["valuation"])
        sticky_text = doc.get("sticky", "strike")
        try:
            sticky = Sticky(sticky_text)
        except (TypeError, ValueError):
            raise self.error(
                TOP, "sticky", f"unknown value {sticky_text!r} (expected 'strike' or 'moneyness')"
            ) from None
        default_rate = self.number(TOP, doc, "rate") if "rate" in doc else None
        default_q = self.number(TOP, doc, "div_yield", 0.0)
        unds = doc.get("underlyings")
        if not isinstance(unds, dict) or not unds:
            raise self.error(TOP, "underlyings", "missing (at least one [underlyings.<name>] table)")

        spot: dict[str, float] = {}
        rate: dict[str, float] = {}
        div_yield: dict[str, float] = {}
        beta: dict[str, float] = {}
        surface: dict[str, VolSurface] = {}
        for name, und in unds.items():
            table = f"underlyings.{name}"
            if not isinstance(und, dict):
                raise self.error(TOP, table, "must be a table")
            self.unknown_keys(table, und, _UNDERLYING_KEYS)
            s = self.number(table, und, "spot")
            if s <= 0.0:
                raise self.error(table, "spot", f"must be > 0, got {s!r}")
            spot[name] = s
            if "rate" in und:
                rate[name] = self.number(table, und, "rate")
            elif default_rate is not None:
                rate[name] = default_rate
            else:
                raise self.error(table, "rate", "missing (and no top-level default rate)")
            div_yield[name] = self.number(table, und, "div_yield", default_q)
            if "beta" in und:
                beta[name] = self.number(table, und, "beta")
            if "vol" in und and "surface" in und:
                raise self.error(
                    table, "vol", "give either vol (a flat surface) or a [surface] table, not both"
                )
            if "vol" in und:
                surface[name] = self.flat(table, und["vol"], "vol")
            elif "surface" in und:
                surface[name] = self.surface(f"{table}.surface", und["surface"], valuation)

        index = doc.get("index")
        if index is not None:
            if not isinstance(index, str) or index not in spot:
                raise self.error(TOP, "index", f"{index!r} is not one of the [underlyings]")
            if beta.get(index, 1.0) != 1.0:
                raise self.error(
                    f"underlyings.{index}", "beta", f"the index's beta must be 1, got {beta[index]!r}"
                )
        return Market(
            valuation=valuation,
            spot=spot,
            rate=rate,
            div_yield=div_yield,
            surface=surface,
            beta=beta,
            index=index,
            sticky=sticky,
            source=self.source,
        )

    def flat(self, table: str, value: Any, name: str) -> FlatSurface:
        level = _finite(self.source, table, name, value)
        try:
            return FlatSurface(level)
        except SurfaceError as exc:
            raise self.error(table, name, exc.problem) from None

    def numbers(self, table: str, doc: dict[str, Any], name: str, depth: int = 1) -> np.ndarray:
        if name not in doc:
            raise self.error(table, name, "missing")
        value = doc[name]

        def ok(v: Any, d: int) -> bool:
            if d == 0:
                return _is_number(v)
            return isinstance(v, list) and all(ok(x, d - 1) for x in v)

        if not ok(value, depth):
            shape = "a list of numbers" if depth == 1 else "a list of lists of numbers"
            raise self.error(table, name, f"must be {shape}, got {value!r}")
        if depth == 2 and len({len(row) for row in value}) > 1:
            lengths = [len(row) for row in value]
            raise self.error(table, name, f"rows have different lengths {lengths}")
        try:
            return np.array(value, dtype=np.float64)
        except OverflowError:
            raise self.error(table, name, "a number too large for a float") from None

    def expiries(self, table: str, doc: dict[str, Any], valuation: np.datetime64) -> np.ndarray:
        if "expiries" not in doc:
            raise self.error(table, "expiries", "missing")
        value = doc["expiries"]
        if not isinstance(value, list) or not value:
            raise self.error(table, "expiries", f"must be a non-empty list of dates, got {value!r}")
        dates = [self.date(table, "expiries", v) for v in value]
        for d in dates:
            if d <= valuation:
                raise self.error(
                    table, "expiries", f"expiry {d} is on or before the valuation date {valuation}"
                )
            if (d - valuation).astype(np.int64) > MAX_YEARS * 365:
                raise self.error(
                    table,
                    "expiries",
                    f"expiry {d} is more than {MAX_YEARS:g} years after the valuation date {valuation}",
                )
        days = (np.array(dates, dtype="datetime64[D]") - valuation).astype(np.int64)
        return days.astype(np.float64) / 365.0

    def surface(self, table: str, doc: Any, valuation: np.datetime64) -> VolSurface:
        if not isinstance(doc, dict):
            raise self.error(table, "surface", "must be a table")
        kind = doc.get("type")
        if kind is None:
            raise self.error(table, "type", "missing (expected 'flat', 'table' or 'svi')")
        if not isinstance(kind, str) or kind not in _SURFACE_KEYS:
            raise self.error(
                table, "type", f"unknown surface type {kind!r} (expected 'flat', 'table' or 'svi')"
            )
        self.unknown_keys(table, doc, _SURFACE_KEYS[kind])
        try:
            if kind == "flat":
                if "vol" not in doc:
                    raise self.error(table, "vol", "missing")
                return self.flat(table, doc["vol"], "vol")
            expiries = self.expiries(table, doc, valuation)
            if kind == "fitted":
                from optmm.chain.toml import fitted_from_toml  # optmm.chain imports this module

                return fitted_from_toml(doc, expiries)
            if kind == "table":
                return TableSurface(
                    expiries, self.numbers(table, doc, "strikes"), self.numbers(table, doc, "vols", depth=2)
                )
            params = {name: self.numbers(table, doc, name) for name in ("a", "b", "rho", "m", "sigma")}
            return SVISurface(expiries, **params)
        except SurfaceError as exc:
            raise self.error(table, exc.field, exc.problem) from None
