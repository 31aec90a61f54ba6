"""Contract terms as traded, priced in one place: carry per underlying, times to settlement, styles.

Every part of optmm that values an option on a market (exposures, scenario grids and stresses, the
risk controller, the quoter's fair values) gets its inputs and its prices here, so that one contract
is priced the same way everywhere:

* :func:`carry` -- per underlying: the rate, the continuous carry ``q`` (dividend yield plus borrow)
  and the schedule of cash dividends still to go ex (times in years from the valuation, amounts);
* :func:`option_times` -- years from the valuation to each option's settlement;
* :func:`american_flags` -- which options are American;
* :func:`book_terms` -- both for every row of a book;
* :func:`contract_greeks` / :func:`contract_price` -- price and Greeks of options given all that:
  European on a continuous carry through :func:`optmm.greeks.bsm_greeks`, European on cash
  dividends through its escrowed closed form (``dividends=``), American through
  :func:`optmm.greeks.american_greeks`.

A contract is *plain* (:func:`plain`) when it is European and its underlying has no cash dividends:
callers with a faster path of their own for plain contracts (the scenario kernels) may use it for
those and this module for the rest; the figures are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm.greeks import Greeks, american_greeks, american_price, bsm_greeks, bsm_price
from optmm.typing import BoolArray, FloatArray

if TYPE_CHECKING:
    from optmm.book import Book
    from optmm.market import Market

__all__ = [
    "Carry",
    "Reuse",
    "american_flags",
    "book_terms",
    "carry",
    "contract_greeks",
    "contract_price",
    "dividends_seen",
    "option_times",
    "plain",
]

_EMPTY = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Carry:
    """Carry of a list of underlyings, arrays aligned with :attr:`underlyings`.

    Attributes
    ----------
    underlyings : tuple of str, length U
    rate : ndarray of float64, shape (U,)
        Continuously compounded risk-free rate (decimal).
    q : ndarray of float64, shape (U,)
        Continuous carry deducted from the forward: dividend yield plus borrow rate (decimal).
    div_times : tuple of U ndarrays of float64
        Ex-dividend times of each underlying's cash dividends, years from the valuation, increasing,
        all > 0 (dividends already gone ex are not listed). Empty for an underlying on a yield.
    div_amounts : tuple of U ndarrays of float64
        The cash amounts (price units per share, > 0), aligned with ``div_times``.
    """

    underlyings: tuple[str, ...]
    rate: FloatArray
    q: FloatArray
    div_times: tuple[FloatArray, ...]
    div_amounts: tuple[FloatArray, ...]

    @property
    def has_dividends(self) -> BoolArray:
        """Underlyings with cash dividends to come, bool array of shape (U,)."""
        return np.array([a.size > 0 for a in self.div_amounts], dtype=bool)

    def dividends(self, u: int, elapsed: float = 0.0) -> tuple[FloatArray, FloatArray] | None:
        """Underlying ``u``'s schedule as the ``dividends=`` argument of the Greeks engine, seen
        ``elapsed`` years after the valuation (a dividend gone ex by then is dropped); ``None`` when
        there is none."""
        return dividends_seen(self.div_times[u], self.div_amounts[u], elapsed)


def dividends_seen(
    times: FloatArray, amounts: FloatArray, elapsed: float
) -> tuple[FloatArray, FloatArray] | None:
    """A cash-dividend schedule (ex-times in years from the valuation, amounts) seen ``elapsed`` years
    later: the ex-times from then and the amounts of the dividends not yet gone ex, ``None`` when none
    is left."""
    times = times - elapsed
    keep = times > 0.0
    if not keep.any():
        return None
    return times[keep], amounts[keep]


def carry(market: Market, underlyings: Sequence[str]) -> Carry:
    """The :class:`Carry` of ``underlyings`` (each must be in the market) on ``market``: the rate,
    ``q`` = dividend yield + borrow (:meth:`~optmm.market.Market.continuous_carry`) and the cash
    dividends still to go ex (:meth:`~optmm.market.Market.dividend_times`, on the clock of
    :func:`option_times`)."""
    names = tuple(str(u) for u in underlyings)
    rate = np.array([market.rate[u] for u in names], dtype=np.float64)
    q = np.array([market.continuous_carry(u) for u in names], dtype=np.float64)
    schedules = [market.dividend_times(u) for u in names]
    return Carry(
        underlyings=names,
        rate=rate,
        q=q,
        div_times=tuple(times for times, _ in schedules),
        div_amounts=tuple(amounts for _, amounts in schedules),
    )


def _per_row(underlying: np.ndarray, given: np.ndarray | None, default: Callable[[str], str]) -> np.ndarray:
    """Each row's term: ``given`` where it is not ``""``, else ``default(underlying)``; object array."""
    und = np.asarray(underlying, dtype=object).reshape(-1)
    codes, uniques = pd.factorize(und) if und.size else (np.zeros(0, dtype=np.intp), [])
    out = (
        np.array([default(str(u)) for u in uniques], dtype=object)[codes] if und.size else np.zeros(0, object)
    )
    if given is not None:
        g = np.broadcast_to(np.asarray(given, dtype=object), np.shape(underlying)).reshape(-1)
        set_ = g != ""
        out[set_] = g[set_]
    return out.reshape(np.shape(underlying))


def option_times(
    market: Market,
    underlying: np.ndarray,
    expiry: np.ndarray,
    settlement: np.ndarray | None = None,
) -> FloatArray:
    """Years (ACT/365) from the market's valuation moment to each option's settlement.

    Parameters
    ----------
    market : Market
    underlying : ndarray of str, shape (n,)
        Each option's underlying (its default settlement, :meth:`Market.default_settlement`).
    expiry : ndarray of datetime64[D], shape (n,)
        Expiry dates; NaT (a stock row) gives 0.
    settlement : ndarray of str, shape (n,), optional
        ``"AM"`` / ``"PM"`` per option; ``None`` or ``""`` is the default of the underlying.

    Returns
    -------
    ndarray of float64, shape (n,)
        :meth:`Market.year_fraction` to the settlement moments; negative or zero for an option past
        its settlement.
    """
    terms = _per_row(underlying, settlement, market.default_settlement)
    expiries = np.asarray(expiry, dtype="datetime64[D]")
    return np.asarray(market.year_fraction(expiries, settlement=terms), dtype=np.float64)


def american_flags(market: Market, underlying: np.ndarray, style: np.ndarray | None = None) -> BoolArray:
    """Which options are American: the position's ``style`` where given, else the underlying's default
    (:meth:`Market.default_style`).

    Parameters
    ----------
    market : Market
    underlying : ndarray of str, shape (n,)
    style : ndarray of str, shape (n,), optional
        ``"american"`` / ``"european"`` per option (any case); ``None`` or ``""`` is the underlying's
        default.
    """
    given = None
    if style is not None:
        # a book repeats a few spellings: each distinct one is read once
        codes, uniques = pd.factorize(np.asarray(style, dtype=object).reshape(-1), use_na_sentinel=False)
        names = np.array([str(x).strip().lower() for x in uniques], dtype=object)
        bad = ~np.isin(names, ("", "american", "european"))
        if bad.any():
            i = int(np.flatnonzero(bad[codes])[0])
            raise ValueError(
                f"style: unknown value {names[codes[i]]!r} at index {i} (expected american or european)"
            )
        given = names[codes].reshape(np.shape(style))
    return np.asarray(_per_row(underlying, given, market.default_style) == "american", dtype=bool)


def _distinct(*columns: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct combinations of code columns ``(codes, count)``: ``(rows, of_row)``, a row of each
    combination and each row's combination."""
    key, n_key = columns[0]
    for codes, count in columns[1:]:  # two at a time: a key never exceeds (rows x count)
        if count == 1:
            continue
        key, uniques = pd.factorize(np.asarray(key, dtype=np.int64) * count + codes)
        n_key = len(uniques)
    rows = np.zeros(n_key, dtype=np.intp)
    rows[key] = np.arange(key.size)  # any row of a combination stands for it
    return rows, np.asarray(key, dtype=np.intp)


def book_terms(
    book: Book, market: Market, underlying_codes: np.ndarray | None = None, rows: np.ndarray | None = None
) -> tuple[FloatArray, BoolArray]:
    """Years to settlement and American flags of every row of ``book`` (0 and False for stock rows),
    or of its rows ``rows`` only, from its ``settlement`` and ``style`` columns and the market's
    defaults.

    A row's time depends only on its (underlying, expiry, settlement) and its style on its
    (underlying, style): :func:`option_times` and :func:`american_flags` are asked once per distinct
    combination (a large book repeats a few hundred of them). ``underlying_codes``: each row's index
    into the book's distinct underlyings, when the caller has them (any numbering)."""
    sel = slice(None) if rows is None else np.asarray(rows, dtype=np.intp)
    option = book.kind[sel] != 2  # Kind.STOCK
    if option.size == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    assert book.settlement is not None and book.style is not None  # Book fills blank terms with ""
    if underlying_codes is None:
        underlying_codes = book.underlying_index()[1]
    u = (np.asarray(underlying_codes, dtype=np.intp)[sel], int(np.max(underlying_codes)) + 1)
    expiry = np.asarray(book.expiry, dtype="datetime64[D]")
    days, exp_values = book.expiry_index()
    settlement, settlement_values = book.term_index("settlement")
    style, style_values = book.term_index("style")
    first, of_row = _distinct(u, (settlement[sel], len(settlement_values)), (days[sel], len(exp_values)))
    at = first if rows is None else sel[first]  # type: ignore[index]
    t = option_times(market, book.underlying[at], expiry[at], book.settlement[at])[of_row]
    first, of_row = _distinct(u, (style[sel], len(style_values)))
    at = first if rows is None else sel[first]  # type: ignore[index]
    flags = american_flags(market, book.underlying[at], book.style[at])
    american = np.asarray(flags, dtype=np.bool_)[of_row]
    return np.where(option, t, 0.0), american & option


def plain(carry_: Carry, u: np.ndarray, american: BoolArray) -> BoolArray:
    """Contracts priced by the plain Black-Scholes-Merton formula: European, on an underlying without
    cash dividends. ``u`` indexes :attr:`Carry.underlyings`."""
    return ~np.asarray(american, dtype=bool) & ~carry_.has_dividends[np.asarray(u, dtype=np.intp)]


def _groups(carry_: Carry, u: np.ndarray, american: np.ndarray) -> list[tuple[np.ndarray, int, bool]]:
    """The rows that are not plain, by (underlying, style): (rows, u, american)."""
    out: list[tuple[np.ndarray, int, bool]] = []
    special = ~plain(carry_, u, american)
    if not special.any():
        return out
    rows = np.flatnonzero(special)
    key = u[rows].astype(np.int64) * 2 + american[rows]
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    bounds = [*starts.tolist(), rows.size]
    for j, k in enumerate(keys.tolist()):
        out.append((rows[order[bounds[j] : bounds[j + 1]]], k // 2, bool(k % 2)))
    return out


def _rows(terms: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """``terms`` (``u`` to ``american`` of :func:`contract_greeks`) as 1-d arrays of one length."""
    dtypes = (np.intp, np.float64, np.float64, np.float64, np.float64, bool, bool)
    given = tuple(np.asarray(a, dtype=d) for a, d in zip(terms, dtypes, strict=True))
    shape = np.broadcast_shapes(*(a.shape for a in given))
    # an array of the full shape as it is (a book's column), the others broadcast into own copies
    return tuple(
        (np.ascontiguousarray(a) if a.shape == shape else np.array(np.broadcast_to(a, shape))).reshape(-1)
        for a in given
    )


class Reuse:
    """The last figures of each group of contracts that are not plain (:func:`plain`; one group per
    underlying and style), kept with the exact inputs the engine priced them from.

    :func:`contract_greeks` and :func:`contract_price` given one (``reuse=``, with a ``slot`` name per
    kind of call) call the engine on a group again only when one of the group's inputs (spots,
    strikes, times, vols, call flags, rate, carry, dividends) differs from the last call's in the same
    slot, bit for bit; else they take the kept figures. The engines price each option from its
    inputs alone, so the figures are those of a fresh call. A caller that prices the same contracts
    again without a market move (the risk controller's revaluation after a fill, the Greeks and the
    base prices of one recompute) then does not pay the slow engines (American, cash dividends)
    again.

    Parameters
    ----------
    keep : bool, default True
        False keeps nothing: every group is priced again (the reference that the tests and
        ``bench/controller.py`` compare with).

    Attributes
    ----------
    calls, reused : int
        The groups priced by the engine, and those taken as kept.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self._last: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[FloatArray]]] = {}
        self.calls = 0
        self.reused = 0

    def __call__(
        self, key: tuple[Any, ...], fn: Any, args: tuple[Any, ...], dividends: Any
    ) -> list[FloatArray]:
        """``fn(*args, dividends=dividends)``'s outputs as 1-d arrays, kept under ``key``."""
        seen = tuple(_bits(a) for a in (*args, *(dividends or ()))) if self.keep else ()
        last = self._last.get(key)
        if last is not None and last[0] == seen:
            self.reused += 1
            return last[1]
        out = _arrays(fn(*args, dividends=dividends))
        self.calls += 1
        if self.keep:
            self._last[key] = (seen, out)
        return out


def _bits(a: Any) -> tuple[Any, ...]:
    """An input as its shape, type and bytes: two inputs are the same iff these are equal."""
    arr = np.asarray(a)
    return arr.shape, arr.dtype.str, arr.tobytes()


def _by_engine(
    european: Any,
    american_: Any,
    carry_: Carry,
    terms: tuple[Any, ...],
    elapsed: float,
    reuse: tuple[Reuse, str] | None = None,
) -> list[FloatArray]:
    """The outputs of ``european`` (``bsm_greeks`` or ``bsm_price``) and ``american_`` on ``terms``
    (``u`` to ``american`` of :func:`contract_greeks`), each 1-d: the plain rows in one call, the
    others by (underlying, style) with the underlying's dividends seen ``elapsed`` years on; those
    through ``reuse`` (a :class:`Reuse` and the slot) when given."""
    uu, s, k, tt, v, c, am = _rows(terms)
    groups = _groups(carry_, uu, am)
    if not groups:
        return _arrays(european(s, k, tt, carry_.rate[uu], carry_.q[uu], v, c))
    p = np.flatnonzero(plain(carry_, uu, am))  # the plain rows alone: the others are priced below
    calls: list[tuple[Any, ...]] = (
        [(p, european, carry_.rate[uu[p]], carry_.q[uu[p]], None, None)] if p.size else []
    )
    for rows, j, is_american in groups:
        fn = american_ if is_american else european
        calls.append((rows, fn, carry_.rate[j], carry_.q[j], carry_.dividends(j, elapsed), (j, is_american)))
    # the boundary engine's groups (American, no dividends to come) last: on a first run a helper process
    # may be compiling that engine meanwhile (optmm._compile_ahead); each call fills its own rows
    calls.sort(key=lambda call: call[5] is not None and call[5][1] and call[4] is None)
    out: list[FloatArray] = []
    for rows, fn, rate, q, dividends, group in calls:
        args = (s[rows], k[rows], tt[rows], rate, q, v[rows], c[rows])
        if group is not None and reuse is not None:  # a group, kept in the slot reuse[1]
            result = reuse[0]((reuse[1], fn, *group), fn, args, dividends)
        else:
            result = _arrays(fn(*args, dividends=dividends))
        out = out or [np.empty(s.size) for _ in result]
        for o, r in zip(out, result, strict=True):
            o[rows] = r
    return out


def _arrays(result: Greeks | FloatArray) -> list[FloatArray]:
    return [result] if isinstance(result, np.ndarray) else list(result.to_dict().values())


def contract_greeks(
    carry_: Carry,
    u: np.ndarray,
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    is_call: BoolArray,
    american: BoolArray,
    *,
    elapsed: float = 0.0,
    reuse: tuple[Reuse, str] | None = None,
) -> Greeks:
    """Price and Greeks of options on their contract terms (plain partial derivatives, as
    :class:`~optmm.greeks.Greeks`), 1-d arrays broadcast together.

    Parameters
    ----------
    carry_ : Carry
    u : ndarray of int
        Each option's index into ``carry_.underlyings``.
    spot, strike, t, vol : ndarray of float
        Spot, strike (price units), years to settlement, vol (decimal).
    is_call, american : ndarray of bool
    elapsed : float
        Years since the valuation the carry was taken at (a scenario's time passing): dividend
        times are seen from there. ``t`` is the time left at that point.
    reuse : (Reuse, str), optional
        A :class:`Reuse` and a slot name: the contracts that are not plain are priced through it,
        a group whose inputs are those of the slot's last call not again.
    """
    terms = (u, spot, strike, t, vol, is_call, american)
    return Greeks(*_by_engine(bsm_greeks, american_greeks, carry_, terms, elapsed, reuse))


def contract_price(
    carry_: Carry,
    u: np.ndarray,
    spot: FloatArray,
    strike: FloatArray,
    t: FloatArray,
    vol: FloatArray,
    is_call: BoolArray,
    american: BoolArray,
    *,
    elapsed: float = 0.0,
    reuse: tuple[Reuse, str] | None = None,
) -> FloatArray:
    """Prices alone, as :func:`contract_greeks` (same arguments), 1-d."""
    terms = (u, spot, strike, t, vol, is_call, american)
    return _by_engine(bsm_price, american_price, carry_, terms, elapsed, reuse)[0]
