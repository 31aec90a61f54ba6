"""Market data: valuation time, spots, rates, dividends (a yield or cash), borrow, vol surfaces, betas
and contract terms (settlement, exercise style), per underlying.

A :class:`Market` is read from a TOML file (:meth:`Market.load`; the layout is in
``docs/book-and-market.md``) or built directly. It is validated when it is built; errors are
:class:`MarketError` naming the file, the table (``underlyings.AAPL.surface``) and the field.

Time is in years, ACT/365 calendar time from the valuation moment :attr:`Market.valuation_time`
to each expiry's settlement moment, exact to the second: ``seconds / 86400 / 365``, the seconds
counted on the exchange's wall clock (the market's :attr:`~Market.timezone`), so a change of
daylight-saving time adds or removes no hour. A valuation given as a date is the 16:00 close of
that day and a PM expiry settles at 16:00, so whole-day expiries keep ``(expiry - valuation) / 365``
exactly. Rates, yields and borrow rates are continuously compounded decimals; vols are decimals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import os
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from optmm._config import is_real_number
from optmm.codes import BOOK_LABEL
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
from optmm.units import DAYS_PER_YEAR, SECONDS_PER_DAY

__all__ = [
    "ASSET_STYLES",
    "CLOSE",
    "DEFAULT_TIMEZONE",
    "EX_DIVIDEND_TIME",
    "SETTLEMENT_TIMES",
    "Market",
    "MarketError",
    "Sticky",
    "parse_valuation",
]

TOP = "top level"
MAX_BETA = 100.0
"""Largest |beta| to the index."""
DEFAULT_TIMEZONE = "America/New_York"
"""The exchanges' time zone when a market names none."""
SETTLEMENT_TIMES = {"AM": dt.time(9, 30), "PM": dt.time(16, 0)}
"""Local settlement time of an expiry: PM at the close, AM at the open of the expiry date."""
CLOSE = SETTLEMENT_TIMES["PM"]
"""The moment of a valuation given as a date: the close of that day."""
EX_DIVIDEND_TIME = dt.time(9, 30)
"""A cash dividend goes ex at the open of its ex-date (local time)."""
STYLES = ("american", "european")
ASSET_STYLES = {"index": "european", "equity": "american", "etf": "american"}
"""Exercise style of each asset class's options (an underlying's explicit ``style`` wins)."""
_SETTLEMENT_SECONDS = {k: v.hour * 3600 + v.minute * 60 for k, v in SETTLEMENT_TIMES.items()}
_US_PER_SECOND = 1_000_000


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
    """Market data for a set of underlyings at one valuation moment.

    Parameters
    ----------
    valuation : numpy.datetime64 or datetime.datetime
        Valuation date (``datetime64[D]``; a ``datetime.date`` or ISO date string is converted),
        whose moment is the 16:00 close of that day in :attr:`timezone` unless ``valuation_time``
        says otherwise. A ``datetime.datetime`` (or an ISO date-time string) gives both the date and
        the moment: with an offset or time zone it is converted to :attr:`timezone`, without one it
        is taken as local time there (except a naive ``datetime`` at exactly 00:00, read as its date,
        as before valuation times existed). The attribute is always the trade date,
        ``datetime64[D]``.
    spot : dict[str, float]
        Spot price per underlying, finite and > 0.
    rate : dict[str, float]
        Continuously compounded risk-free rate per underlying (decimal); one per spot.
    div_yield : dict[str, float]
        Continuous dividend yield per underlying (decimal); one per spot, except that an underlying
        with cash ``dividends`` has none (0.0, filled in; anything else is refused).
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
    valuation_time : datetime.datetime, optional
        The valuation moment's wall-clock time of day on the ``valuation`` date (aware: converted
        to :attr:`timezone` first; naive: local time there). Default: the 16:00 close, or the time
        of a ``valuation`` given as a date-time. The attribute is the aware moment in
        :attr:`timezone`. (Taking only its time of day lets ``dataclasses.replace(market,
        valuation=next_day)`` move a market one day on; :meth:`with_valuation` changes both.)
    timezone : str
        IANA name of the exchanges' time zone (``"America/New_York"``): settlement and ex-dividend
        times are local times there.
    dividends : dict[str, sequence of (date, float)]
        Cash dividends per underlying: ``(ex_date, amount)`` pairs, ex-dates strictly increasing,
        amounts > 0 (price units per share). Stored as a tuple of ``(datetime.date, float)``. Each
        goes ex at 09:30 local on its ex-date; those at or before the valuation moment are past.
    borrow : dict[str, float]
        Borrow rate per underlying (decimal, >= 0; absent = 0), added to the dividend yield in the
        continuous carry ``q`` (:meth:`continuous_carry`).
    settlement : dict[str, str]
        ``"AM"`` (09:30 local on the expiry date) or ``"PM"`` (16:00) per underlying; absent = PM.
        A book's ``settlement`` column overrides it per position.
    style : dict[str, str]
        ``"american"`` or ``"european"`` per underlying; wins over ``asset``.
    asset : dict[str, str]
        ``"index"`` (European options), ``"equity"`` or ``"etf"`` (American) per underlying.
        An underlying with neither ``style`` nor ``asset`` is European (:meth:`default_style`).

    Notes
    -----
    Times are ACT/365 calendar time on the exchange's wall clock (module docstring):
    :meth:`year_fraction` to settlements, :meth:`dividend_times` to ex-dividend moments.
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
    valuation_time: dt.datetime | None = None
    timezone: str = DEFAULT_TIMEZONE
    dividends: dict[str, tuple[tuple[dt.date, float], ...]] = field(default_factory=dict)
    borrow: dict[str, float] = field(default_factory=dict)
    settlement: dict[str, str] = field(default_factory=dict)
    style: dict[str, str] = field(default_factory=dict)
    asset: dict[str, str] = field(default_factory=dict)
    _clock: _Clock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        src = self.source
        zone = _zone(src, self.timezone)
        try:
            valuation, moment = _valuation_moment(self.valuation, zone, midnight_is_date=True)
        except ValueError as exc:
            raise MarketError(src, TOP, "valuation", str(exc)) from None
        if self.valuation_time is not None:
            at = self.valuation_time
            if not isinstance(at, dt.datetime):
                raise MarketError(src, TOP, "valuation_time", f"must be a datetime.datetime, got {at!r}")
            local = at.astimezone(zone) if at.tzinfo is not None else at
            moment = dt.datetime.combine(valuation.astype(dt.date), local.time().replace(tzinfo=None), zone)
        try:
            sticky = Sticky(self.sticky)
        except (TypeError, ValueError):
            raise MarketError(
                src, TOP, "sticky", f"unknown value {self.sticky!r} (expected 'strike' or 'moneyness')"
            ) from None
        for name in _PER_UNDERLYING:
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
        if BOOK_LABEL in self.spot:
            raise MarketError(
                src,
                f"underlyings.{BOOK_LABEL}",
                "spot",
                f"{BOOK_LABEL!r} is the name of the whole book's row in risk tables; rename the underlying",
            )
        spot = {u: _finite(src, f"underlyings.{u}", "spot", v) for u, v in self.spot.items()}
        for name in _PER_UNDERLYING[5:]:
            for u in getattr(self, name):
                if u not in spot:
                    raise MarketError(src, f"underlyings.{u}", "spot", f"missing (the underlying has {name})")
        dividends = {
            u: _dividend_schedule(src, f"underlyings.{u}", v, valuation) for u, v in self.dividends.items()
        }
        rate: dict[str, float] = {}
        div_yield: dict[str, float] = {}
        borrow: dict[str, float] = {}
        for u in spot:
            table = f"underlyings.{u}"
            if u in dividends:
                q = self.div_yield.get(u, 0.0)
                if not is_real_number(q) or q != 0.0:
                    raise MarketError(
                        src,
                        table,
                        "div_yield",
                        f"give either div_yield or dividends, not both (div_yield {q!r})",
                    )
            given_q = self.div_yield if u not in dividends else {u: 0.0}
            for name, given, out in (("rate", self.rate, rate), ("div_yield", given_q, div_yield)):
                if u not in given:
                    raise MarketError(src, table, name, "missing")
                out[u] = _finite(src, table, name, given[u])
                _plausible_rate(src, table, name, out[u])
            if u in self.borrow:
                borrow[u] = _finite(src, table, "borrow", self.borrow[u])
                _plausible_rate(src, table, "borrow", borrow[u])
                if borrow[u] < 0.0:
                    raise MarketError(src, table, "borrow", f"must be >= 0, got {borrow[u]!r}")
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
        settlement = {
            u: _choice(src, f"underlyings.{u}", "settlement", v, tuple(SETTLEMENT_TIMES), str.upper)
            for u, v in self.settlement.items()
        }
        style = {u: _choice(src, f"underlyings.{u}", "style", v, STYLES) for u, v in self.style.items()}
        asset = {
            u: _choice(src, f"underlyings.{u}", "asset", v, tuple(ASSET_STYLES))
            for u, v in self.asset.items()
        }
        for name, value in (
            ("valuation", valuation),
            ("valuation_time", moment),
            ("timezone", zone.key),
            ("sticky", sticky),
            ("spot", spot),
            ("rate", rate),
            ("div_yield", div_yield),
            ("surface", surface),
            ("beta", beta),
            ("dividends", dividends),
            ("borrow", borrow),
            ("settlement", settlement),
            ("style", style),
            ("asset", asset),
        ):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_clock", _Clock(valuation, moment))
        for u in dividends:  # the escrowed stock must stay positive
            _, amounts = self.dividend_times(u)
            if amounts.sum() >= spot[u]:
                raise MarketError(
                    src,
                    f"underlyings.{u}",
                    "dividends",
                    f"the dividends to come add up to {float(amounts.sum())!r}, "
                    f"not below the spot {spot[u]!r}",
                )

    def __repr__(self) -> str:
        names = list(self.spot)
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        index = f", index={self.index!r}" if self.index is not None else ""
        when = str(self.valuation)
        if self.is_intraday:
            when = f"{self.valuation_time.isoformat(timespec='seconds')} {self.timezone}"  # type: ignore[union-attr]
        return (
            f"Market(valuation={when}, underlyings: {shown}{index}, "
            f"sticky={self.sticky.value}, source={self.source!r})"
        )

    @property
    def is_intraday(self) -> bool:
        """Whether the valuation moment is other than the 16:00 close of the valuation date."""
        return bool(self._clock.is_intraday)

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

    def year_fraction(self, expiry: ArrayLike, settlement: ArrayLike | None = None) -> FloatArray:
        """Years from the valuation moment to the settlement of options expiring on ``expiry``.

        Parameters
        ----------
        expiry : array_like of datetime64[D]
            Dates (anything numpy converts to ``datetime64[D]``), any shape.
        settlement : str or array_like of str, optional
            ``"AM"`` (09:30 local on the expiry date) or ``"PM"`` (16:00), broadcast with
            ``expiry``; default PM. (Per-underlying and per-position defaults are resolved by
            :func:`optmm.pricing.option_times`.)

        Returns
        -------
        ndarray of float64, the broadcast shape
            ACT/365 calendar time on the exchange's wall clock, ``seconds / 86400 / 365``; negative
            for a settlement before the valuation moment, 0.0 where ``expiry`` is NaT (stock rows).
            From a valuation given as a date (the 16:00 close) to PM settlements this is exactly
            ``(expiry - valuation)`` in days / 365.
        """
        exp = _argument("expiry", expiry, date_array)
        seconds = _settlement_seconds(settlement)
        nat = np.isnat(exp)
        years = self._clock.years(np.where(nat, self.valuation, exp), seconds)
        return np.where(nat, 0.0, years) if nat.any() else years

    def dividend_times(self, underlying: str) -> tuple[FloatArray, FloatArray]:
        """The cash dividends of ``underlying`` still to go ex: ``(times, amounts)``, times in years
        from the valuation moment to each ex-date's 09:30 local (> 0, increasing), amounts in price
        units; both empty for an underlying without cash dividends."""
        self._check_underlying(underlying)
        schedule = self.dividends.get(underlying, ())
        if not schedule:
            return np.zeros(0), np.zeros(0)
        dates = np.array([d for d, _ in schedule], dtype="datetime64[D]")
        amounts = np.array([a for _, a in schedule], dtype=np.float64)
        seconds = np.int64(EX_DIVIDEND_TIME.hour * 3600 + EX_DIVIDEND_TIME.minute * 60)
        times = self._clock.years(dates, seconds)
        ahead = times > 0.0
        return times[ahead], amounts[ahead]

    def continuous_carry(self, underlying: str) -> float:
        """The continuous carry ``q`` deducted from the forward: dividend yield plus borrow rate."""
        self._check_underlying(underlying)
        return self.div_yield[underlying] + self.borrow.get(underlying, 0.0)

    def default_settlement(self, underlying: str) -> str:
        """``"AM"`` or ``"PM"``: the settlement of ``underlying``'s options unless a position says."""
        return self.settlement.get(underlying, "PM")

    def default_style(self, underlying: str) -> str:
        """``"american"`` or ``"european"``: the underlying's ``style``, else that of its ``asset``
        class, else European (files written before styles existed keep their meaning)."""
        if underlying in self.style:
            return self.style[underlying]
        return ASSET_STYLES.get(self.asset.get(underlying, ""), "european")

    def with_valuation(self, when: Any) -> Market:
        """This market at another valuation moment, validated again.

        Parameters
        ----------
        when : datetime.datetime, datetime.date, numpy.datetime64 or str
            A date (its 16:00 close), a date-time with an offset or time zone (converted to
            :attr:`timezone`) or without (local time there); a string is parsed by
            :func:`parse_valuation`.

        Returns
        -------
        Market
            A market read from a file is read again from the same document with ``valuation =
            when``, as if the file said so (surface expiries keep their dates; one that settles
            at or before the new moment is refused). A market built in Python keeps its surfaces,
            functions of the years to expiry, as they are.

        Raises
        ------
        MarketError
            Field ``valuation``: ``when`` is not a date or date-time, or the market is not valid
            at that moment.
        """
        if isinstance(when, str):
            try:
                when = parse_valuation(when)
            except ValueError as exc:
                raise MarketError(self.source, TOP, "valuation", str(exc)) from None
        document = getattr(self, "_document", None)
        if document is not None:
            return _MarketReader(self.source).read({**document, "valuation": when})
        zone = zoneinfo.ZoneInfo(self.timezone)
        try:
            date, moment = _valuation_moment(when, zone)
        except ValueError as exc:
            raise MarketError(self.source, TOP, "valuation", str(exc)) from None
        return dataclasses.replace(self, valuation=date, valuation_time=moment)

    def forward(self, underlying: str, t: ArrayLike, *, spot: float | None = None) -> FloatArray:
        """Forward price: ``S e^{(r - q) t}``, with cash dividends ``(S - PV) e^{(r - q) t}``.

        ``q`` is :meth:`continuous_carry` (dividend yield plus borrow); ``PV`` is the escrowed
        model's present value of the cash dividends going ex before ``t``, each discounted at
        ``r - q`` from its ex-time (:meth:`dividend_times`), the rule of the Greeks engine
        (:mod:`optmm.greeks._dividend`), so that forwards and prices agree.

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
        r, q = self.rate[underlying], self.continuous_carry(underlying)
        ex, amounts = self.dividend_times(underlying)
        base: float | FloatArray = s
        if ex.size and tt.size and math.isfinite(s) and s > 0.0:
            from optmm.greeks import _dividend  # the pricing kernels' own rule

            flat = np.ascontiguousarray(tt.reshape(-1))
            try:
                esc = _dividend.escrowed(
                    np.array([s]),
                    flat,
                    np.array([r]),
                    np.array([q]),
                    _dividend.Schedule(ex, amounts),
                    tt.shape,
                )
            except ValueError as exc:
                raise ValueError(f"{underlying!r}: {exc} (spot {s!r})") from None
            base = esc.s_star.reshape(tt.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            forward = base * np.exp((r - q) * tt)
        bad = ~np.isfinite(forward)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(
                f"t: {float(tt.reshape(-1)[i])!r} at index {i} gives no finite forward for {underlying!r} "
                f"(spot {s!r}, rate - div_yield {r - q!r})"
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


def _finite(source: str, table: str, name: str, value: Any) -> float:
    if not is_real_number(value):
        raise MarketError(source, table, name, f"must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise MarketError(source, table, name, "a number too large for a float") from None
    if not math.isfinite(x):
        raise MarketError(source, table, name, f"must be finite, got {x!r}")
    return x


_PER_UNDERLYING = (
    "spot", "rate", "div_yield", "surface", "beta",  # the first five: the original fields
    "dividends", "borrow", "settlement", "style", "asset",
)  # fmt: skip


def _plausible_rate(source: str, table: str, name: str, x: float) -> None:
    if abs(x) > MAX_RATE:
        raise MarketError(
            source,
            table,
            name,
            f"{x!r} is outside the plausible range [-{MAX_RATE:g}, {MAX_RATE:g}] "
            "(a continuously compounded decimal: 0.04 is 4% a year)",
        )


def _zone(source: str, name: Any) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``, or a MarketError on field ``timezone``."""
    if not isinstance(name, str):
        raise MarketError(source, TOP, "timezone", f"must be an IANA time zone name (str), got {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MarketError(
            source,
            TOP,
            "timezone",
            f"unknown time zone {name!r} (expected an IANA name such as 'America/New_York')",
        ) from None


def parse_valuation(text: str) -> dt.date | dt.datetime:
    """An ISO date (``2026-11-20``) or date-time (``2026-11-20T10:00-05:00``, ``2026-11-20T10:00``,
    a space for the ``T`` allowed) as a ``datetime.date`` or ``datetime.datetime``.

    Raises
    ------
    ValueError
        One line naming the text and the formats expected.
    """
    value = text.strip()
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        if len(value) > 10 and value[10] in "T t":
            return dt.datetime.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(
        f"not a date or date-time: {text!r} (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM], "
        "e.g. 2026-11-20T10:00-05:00)"
    )


def _valuation_moment(
    value: Any, zone: zoneinfo.ZoneInfo, *, midnight_is_date: bool = False
) -> tuple[np.datetime64, dt.datetime]:
    """``(date, moment)`` of a valuation: a date is its close; a date-time with an offset is converted
    to ``zone``, one without is local time there. With ``midnight_is_date`` (the constructor's
    ``valuation``, which took midnight datetimes as dates before valuation times existed) a naive
    ``datetime`` / ``Timestamp`` at 00:00 is its date; text is always read as written. ValueError
    with the problem otherwise."""
    if isinstance(value, str) and len(value.strip()) > 10:
        value = parse_valuation(value)
        midnight_is_date = False
    if isinstance(value, np.datetime64) and value.dtype != np.dtype("datetime64[D]") and not np.isnat(value):
        as_day = value.astype("datetime64[D]")
        if as_day != value:
            value = value.astype("datetime64[us]").astype(dt.datetime)
    if (
        midnight_is_date
        and isinstance(value, dt.datetime)
        and value.tzinfo is None
        and value.time() == dt.time()
    ):
        value = value.date()
    if isinstance(value, dt.datetime):
        moment = value.astimezone(zone) if value.tzinfo is not None else value.replace(tzinfo=zone)
        return np.datetime64(moment.date(), "D"), moment
    if isinstance(value, dt.time):
        raise ValueError(f"not a date: {value!r} (a time of day without a date)")
    try:
        date: Any = date_array(value)[()]
        if date.ndim:
            raise ValueError("must be a single date")
    except WrongTypeError as exc:
        raise ValueError(f"not a date: {value!r} ({exc.problem})") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a date: {value!r} ({exc})") from None
    if np.isnat(date):
        raise ValueError("missing (NaT)")
    return date, dt.datetime.combine(date.astype(dt.date), CLOSE, zone)


class _Clock(NamedTuple):
    """The valuation date and moment, and ACT/365 years from the moment on the local wall clock."""

    date: np.datetime64  # datetime64[D]
    moment: dt.datetime  # aware, in the market's zone

    @property
    def is_intraday(self) -> bool:
        return self.moment.time() != CLOSE

    def years(self, dates: np.ndarray, seconds: Any) -> FloatArray:
        """Years to ``seconds`` after local midnight of ``dates`` (datetime64[D]; broadcast):
        ``seconds / 86400 / 365`` of wall-clock time, exact in whole days."""
        start = np.datetime64(self.moment.replace(tzinfo=None), "us")
        moments = dates.astype("datetime64[us]") + (seconds * _US_PER_SECOND).astype("timedelta64[us]")
        us = (moments - start).astype(np.int64)
        return np.asarray(us / float(_US_PER_SECOND) / SECONDS_PER_DAY / DAYS_PER_YEAR, dtype=np.float64)


def _settlement_seconds(settlement: Any) -> np.ndarray:
    """Seconds after midnight of ``"AM"`` / ``"PM"`` settlements (None: PM), an int64 array."""
    if settlement is None:
        return np.array(_SETTLEMENT_SECONDS["PM"], dtype=np.int64)
    arr = np.asarray(settlement, dtype=object)
    flat = arr.reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    for code in set(flat.tolist()):
        key = code.strip().upper() if isinstance(code, str) else code
        if key not in _SETTLEMENT_SECONDS:
            i = next(j for j, x in enumerate(flat) if x == code)
            raise ValueError(f"settlement: unknown value {code!r} at index {i} (expected 'AM' or 'PM')")
        out[flat == code] = _SETTLEMENT_SECONDS[key]
    return out.reshape(arr.shape)


def _choice(
    source: str,
    table: str,
    name: str,
    value: Any,
    allowed: tuple[str, ...],
    norm: Callable[[str], str] = str.lower,
) -> str:
    """``value`` (case-insensitive text) as one of ``allowed``, or a MarketError."""
    key = norm(value.strip()) if isinstance(value, str) else None
    if key not in allowed:
        expected = " or ".join(repr(a) for a in allowed)
        raise MarketError(source, table, name, f"unknown value {value!r} (expected {expected})")
    return key


def _dividend_schedule(
    source: str, table: str, value: Any, valuation: np.datetime64
) -> tuple[tuple[dt.date, float], ...]:
    """A sequence of ``(ex_date, amount)`` pairs, validated: dates, amounts finite and > 0 (at most
    the largest plausible price), ex-dates strictly increasing."""
    del valuation  # past dividends are kept in the schedule; the carry leaves them out
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence | np.ndarray):
        raise MarketError(
            source, table, "dividends", f"must be a list of (ex_date, amount) pairs, got {value!r}"
        )
    out: list[tuple[dt.date, float]] = []
    for i, pair in enumerate(value):
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise MarketError(
                source, table, "dividends", f"entry {i}: must be an (ex_date, amount) pair, got {pair!r}"
            )
        when, amount = pair
        try:
            day: Any = date_array(when)[()]
            if day.ndim or np.isnat(day):
                raise ValueError
        except (WrongTypeError, TypeError, ValueError):
            raise MarketError(
                source, table, "dividends", f"entry {i}: ex_date {when!r} is not a date (YYYY-MM-DD)"
            ) from None
        x = _finite(source, table, "dividends", amount)
        if not 0.0 < x <= PRICE_RANGE[1]:
            raise MarketError(
                source,
                table,
                "dividends",
                f"entry {i}: amount must be > 0 (and at most {PRICE_RANGE[1]:g}), got {x!r}",
            )
        if out and day <= np.datetime64(out[-1][0], "D"):
            raise MarketError(
                source,
                table,
                "dividends",
                f"entry {i}: ex_date {day} is not after the previous one {out[-1][0]} "
                "(increasing, one per date)",
            )
        out.append((day.astype(dt.date), x))
    return tuple(out)


_TOP_KEYS = {"valuation", "timezone", "sticky", "index", "rate", "div_yield", "underlyings"}
_UNDERLYING_KEYS = {
    "spot", "rate", "div_yield", "beta", "vol", "surface",
    "dividends", "borrow", "settlement", "style", "asset",
}  # fmt: skip
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
        zone = _zone(self.source, doc.get("timezone", DEFAULT_TIMEZONE))
        try:
            valuation, moment = _valuation_moment(doc["valuation"], zone)
        except ValueError as exc:
            raise self.error(TOP, "valuation", str(exc)) from None
        clock = _Clock(valuation, moment)
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
        dividends: dict[str, Any] = {}
        terms: dict[str, dict[str, Any]] = {"borrow": {}, "settlement": {}, "style": {}, "asset": {}}
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
            if "dividends" in und:
                if "div_yield" in und:
                    raise self.error(table, "div_yield", "give either div_yield or dividends, not both")
                dividends[name] = self.dividends(table, und["dividends"])
                div_yield[name] = 0.0  # the top-level default yield is not for an underlying paying cash
            else:
                div_yield[name] = self.number(table, und, "div_yield", default_q)
            if "borrow" in und:
                terms["borrow"][name] = self.number(table, und, "borrow")
            for key, allowed, norm in (
                ("settlement", tuple(SETTLEMENT_TIMES), str.upper),
                ("style", STYLES, str.lower),
                ("asset", tuple(ASSET_STYLES), str.lower),
            ):
                if key in und:
                    terms[key][name] = _choice(self.source, table, key, und[key], allowed, norm)
            if "beta" in und:
                beta[name] = self.number(table, und, "beta")
            if "vol" in und and "surface" in und:
                raise self.error(
                    table, "vol", "give either vol (a flat surface) or a [surface] table, not both"
                )
            if "vol" in und:
                surface[name] = self.flat(table, und["vol"], "vol")
            elif "surface" in und:
                settles = terms["settlement"].get(name, "PM")
                surface[name] = self.surface(f"{table}.surface", und["surface"], clock, settles)

        index = doc.get("index")
        if index is not None:
            if not isinstance(index, str) or index not in spot:
                raise self.error(TOP, "index", f"{index!r} is not one of the [underlyings]")
            if beta.get(index, 1.0) != 1.0:
                raise self.error(
                    f"underlyings.{index}", "beta", f"the index's beta must be 1, got {beta[index]!r}"
                )
        market = Market(
            valuation=valuation,
            spot=spot,
            rate=rate,
            div_yield=div_yield,
            surface=surface,
            beta=beta,
            index=index,
            sticky=sticky,
            source=self.source,
            valuation_time=moment,
            timezone=zone.key,
            dividends=dividends,
            **terms,
        )
        object.__setattr__(market, "_document", doc)  # for with_valuation: the file at another moment
        return market

    def dividends(self, table: str, value: Any) -> list[tuple[Any, Any]]:
        """``[{ex_date = ..., amount = ...}, ...]`` as pairs (validated by :class:`Market`)."""
        if not isinstance(value, list):
            raise self.error(
                table,
                "dividends",
                f"must be an array of {{ex_date = ..., amount = ...}} tables, got {value!r}",
            )
        pairs = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or set(entry) != {"ex_date", "amount"}:
                raise self.error(
                    table,
                    "dividends",
                    f"entry {i}: must be a table {{ex_date = YYYY-MM-DD, amount = ...}}, got {entry!r}",
                )
            when = entry["ex_date"]
            if not isinstance(when, dt.date) or isinstance(when, dt.datetime):
                when = self.date(table, "dividends", when)
            pairs.append((when, entry["amount"]))
        return pairs

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
                return is_real_number(v)
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

    def expiries(self, table: str, doc: dict[str, Any], clock: _Clock, settlement: str) -> np.ndarray:
        if "expiries" not in doc:
            raise self.error(table, "expiries", "missing")
        value = doc["expiries"]
        if not isinstance(value, list) or not value:
            raise self.error(table, "expiries", f"must be a non-empty list of dates, got {value!r}")
        dates = np.array([self.date(table, "expiries", v) for v in value], dtype="datetime64[D]")
        years = clock.years(dates, np.int64(_SETTLEMENT_SECONDS[settlement]))
        valuation = clock.date
        for d, t in zip(dates, years, strict=True):
            if d < valuation or (d == valuation and not t > 0.0):
                when = SETTLEMENT_TIMES[settlement].strftime("%H:%M")
                raise self.error(
                    table,
                    "expiries",
                    f"expiry {d} is on or before the valuation date {valuation}"
                    if d < valuation or not clock.is_intraday
                    else f"expiry {d} settles ({settlement}, {when}) at or before the valuation moment "
                    f"{clock.moment.isoformat(timespec='seconds')}",
                )
            if (d - valuation).astype(np.int64) > MAX_YEARS * 365:
                raise self.error(
                    table,
                    "expiries",
                    f"expiry {d} is more than {MAX_YEARS:g} years after the valuation date {valuation}",
                )
        return years

    def surface(self, table: str, doc: Any, clock: _Clock, settlement: str) -> VolSurface:
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
            expiries = self.expiries(table, doc, clock, settlement)
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
