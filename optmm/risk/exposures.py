"""Book exposures in trader units: value, delta, dollar gamma, vega, theta, rho, vanna and volga.

:func:`exposures` prices every position of a :class:`~optmm.book.Book` against a
:class:`~optmm.market.Market` on its contract terms (:mod:`optmm.pricing`: times to settlement,
styles, carry and cash dividends) with ONE call of :func:`optmm.pricing.contract_greeks` and scales
the plain partial derivatives of the engines into the units a trader reads:

=============================  ==========================================================================
column                         definition (qty = signed quantity, mult = contract multiplier, S = spot)
=============================  ==========================================================================
``value``                      qty * mult * price (a stock: qty * mult * S), in currency
``delta_shares``               qty * mult * delta (a stock: qty * mult), in shares of the underlying
``delta_dollars``              delta_shares * S, in currency per 100% spot move (per 1.00 relative)
``gamma_dollars_1pct``         change of ``delta_dollars`` for a +1% spot move: qty * mult * gamma * S^2 / 100
``vega_per_vol_point``         qty * mult * vega / 100: value change for +1 vol point (0.01 of vol)
``theta_per_day``              qty * mult * theta / 365: value change for one calendar day passing
``rho_per_pct``                qty * mult * rho / 100: value change for +1% (0.01) of rate
``vanna_shares_per_vol_point`` qty * mult * vanna / 100: change of ``delta_shares`` for +1 vol point
``volga_per_vol_point2``       qty * mult * volga / 10000: change of ``vega_per_vol_point`` per vol point
=============================  ==========================================================================

Stock rows have delta 1 per share and every other Greek 0. Expired options (``t <= 0``) follow the
engine's edge rules: intrinsic value, delta 0 or +-1, every other Greek 0.

Every figure is checked: one that is not a finite number (an overflow from huge inputs) raises
``ValueError`` naming the position (or the underlying, or the book) and the column, rather than
coming out as inf or NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from optmm import pricing
from optmm.book import Book, Kind
from optmm.codes import BOOK_LABEL
from optmm.greeks import Greeks
from optmm.market import Market
from optmm.risk._reval import (
    dense_codes,
    exposure_sums,
    smile_points,
    stable_order,
    trader_units,
)
from optmm.typing import FloatArray

# The exposure columns, in the order they appear; each is a sum over positions in the aggregates.
EXPOSURE_COLUMNS: tuple[str, ...] = (
    "value",
    "delta_shares",
    "delta_dollars",
    "gamma_dollars_1pct",
    "vega_per_vol_point",
    "theta_per_day",
    "rho_per_pct",
    "vanna_shares_per_vol_point",
    "volga_per_vol_point2",
)

_KIND_NAMES = np.array([k.name for k in sorted(Kind, key=int)], dtype=object)


def market_vols(
    market: Market, underlying: str, strike: FloatArray, t: FloatArray, *, spot_shift: float
) -> FloatArray:
    """``market.vols`` for one underlying, checked: a surface that returns a NaN or a negative vol is
    named here rather than deep inside a pricing call."""
    vols = np.asarray(market.vols(underlying, strike, t, spot_shift=spot_shift), dtype=np.float64)
    vols = np.broadcast_to(vols, strike.shape)
    bad = np.flatnonzero(~(np.isfinite(vols) & (vols >= 0.0)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"vol surface of {underlying!r} returned vol {float(vols[i])!r} at strike {float(strike[i])!r}, "
            f"t {float(t[i])!r} "
            f"(spot shift {spot_shift!r}); it must be finite and >= 0"
        )
    return vols


def surface_vols(
    market: Market,
    underlyings: np.ndarray,
    uidx: np.ndarray,
    strike: FloatArray,
    t: FloatArray,
    rows: np.ndarray,
    out: FloatArray,
) -> None:
    """Write ``market.vols`` (no shock) into ``out[rows]``: one call per underlying present in
    ``rows``, asked once per distinct (underlying, t, strike) point (rows repeat them)."""
    if rows.size == 0:
        return
    every = rows.size == uidx.size  # every row (rows in order): no copies
    sel = slice(None) if every else rows
    points, of_row = smile_points(uidx[sel], t[sel], strike[sel])
    at = points if every else rows[points]
    sub = uidx[at]
    order = stable_order(sub, len(underlyings))
    ends = np.cumsum(np.bincount(sub, minlength=len(underlyings)))
    point_vol = np.empty(points.size)
    for u in np.flatnonzero(np.diff(np.r_[0, ends])).tolist():
        p = order[ends[u - 1] if u else 0 : ends[u]]
        point_vol[p] = market_vols(market, underlyings[u], strike[at[p]], t[at[p]], spot_shift=0.0)
    out[sel] = point_vol[of_row]


@dataclass(frozen=True, slots=True)
class BetaWeightedDelta:
    """Book delta expressed in an index.

    Attributes
    ----------
    index : str
        The index underlying.
    index_spot : float
        Its spot, in currency.
    index_shares : float
        Book delta in shares (units) of the index: sum of ``delta_dollars * beta`` / ``index_spot``.
    index_dollars : float
        Book delta in index dollars: sum of ``delta_dollars * beta``, currency per 100% index move.
    by_underlying : pandas.DataFrame
        One row per underlying (index ``underlying``), columns ``beta``, ``delta_dollars``,
        ``beta_delta_dollars``, ``beta_delta_index_shares``.
    """

    index: str
    index_spot: float
    index_shares: float
    index_dollars: float
    by_underlying: pd.DataFrame


@dataclass(frozen=True)
class Exposures:
    """Exposures of a book, per position and aggregated; every column in trader units.

    Attributes
    ----------
    positions : pandas.DataFrame
        One row per position, in book order: ``id``, ``underlying``, ``kind`` (``"CALL"``, ``"PUT"``,
        ``"STOCK"``), ``expiry`` (NaT for stock), ``strike`` (0 for stock), ``quantity``,
        ``multiplier``, ``spot``, ``t`` (years to expiry, ACT/365; 0 for stock), ``vol`` (decimal
        vol used: the override, else the surface's; 0 for an expired option without override; NaN
        for stock), ``price`` (per unit of underlying: option premium, or spot for stock) and the
        columns of :data:`EXPOSURE_COLUMNS` (see the module docstring for units).
    by_underlying : pandas.DataFrame
        Sums of :data:`EXPOSURE_COLUMNS` per underlying (index ``underlying``, sorted), with the
        underlying's ``spot``.
    by_expiry : pandas.DataFrame
        Sums per (``underlying``, ``expiry``) (a MultiIndex, sorted; stock rows under NaT).
    total : pandas.DataFrame
        One row (index ``"book"``) of book sums of the quantities that add across underlyings
        (value, dollar delta, dollar gamma, vega, theta, rho, volga). Share counts of different
        underlyings do not add, so ``delta_shares`` and ``vanna_shares_per_vol_point`` are left
        out; where the market gives every underlying a beta, ``beta_delta_index_shares`` and
        ``beta_delta_index_dollars`` (see :meth:`beta_weighted_delta`) stand in for them.
    market : Market
        The market the book was priced in (used by :meth:`beta_weighted_delta`).
    """

    by_underlying: pd.DataFrame
    by_expiry: pd.DataFrame
    total: pd.DataFrame
    market: Market
    # The per-position columns, in order (``kind`` as its codes, ``expiry`` in days), made when first
    # asked for by ``_make_columns``, and the frame built from them: the aggregates are summed
    # without them, and a million positions' figures cost more to write than to compute.
    _make_columns: Callable[[], dict[str, np.ndarray]] = field(repr=False, compare=False)
    _made: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def _columns(self) -> dict[str, np.ndarray]:
        if "columns" not in self._made:
            self._made["columns"] = self._make_columns()
        return self._made["columns"]

    @property
    def positions(self) -> pd.DataFrame:
        """One row per position (see the class attributes), built on first access."""
        if "frame" not in self._made:
            columns = dict(self._columns)
            columns["kind"] = _KIND_NAMES[np.asarray(columns["kind"], dtype=np.intp)]
            columns["expiry"] = np.asarray(columns["expiry"], dtype="datetime64[D]").astype("datetime64[s]")
            self._made["frame"] = pd.DataFrame(columns)
        return self._made["frame"]

    def beta_weighted_delta(self, index: str | None = None) -> BetaWeightedDelta:
        """Book delta in index shares and index dollars.

        Parameters
        ----------
        index : str, optional
            The index underlying; default ``market.index``. Its spot must be in the market.

        Returns
        -------
        BetaWeightedDelta
            ``index_dollars`` = sum over underlyings of ``delta_dollars * beta`` (currency per
            100% index move) and ``index_shares`` = ``index_dollars / index_spot``.

        Raises
        ------
        ValueError
            If no index is given or set on the market, the index has no spot, or an underlying
            other than the index has no beta in ``market.beta`` (all such underlyings are named).
            The index itself has beta 1 unless ``market.beta`` says otherwise.
        """
        market = self.market
        index = index if index is not None else market.index
        if index is None:
            raise ValueError("beta_weighted_delta: no index given and market.index is not set")
        if index not in market.spot:
            raise ValueError(f"beta_weighted_delta: the index {index!r} has no spot in the market")
        betas = beta_of(market, self.by_underlying.index, index)
        index_spot = float(market.spot[index])
        dd = self.by_underlying["delta_dollars"].to_numpy()
        bdd = dd * betas
        frame = pd.DataFrame(
            {
                "beta": betas,
                "delta_dollars": dd,
                "beta_delta_dollars": bdd,
                "beta_delta_index_shares": bdd / index_spot,
            },
            index=self.by_underlying.index,
        )
        total = float(bdd.sum())
        return BetaWeightedDelta(index, index_spot, total / index_spot, total, frame)


def beta_of(market: Market, underlyings, index: str) -> FloatArray:
    """Betas of ``underlyings`` to ``index`` (the index itself: 1 unless given); refuses missing ones."""
    beta = market.beta or {}
    missing = [u for u in underlyings if u not in beta and u != index]
    if missing:
        raise ValueError(
            f"no beta to the index {index!r} in market.beta for underlying(s) {', '.join(map(str, missing))}"
        )
    out = np.array([beta.get(u, 1.0) for u in underlyings], dtype=np.float64)
    bad = [u for u, b in zip(underlyings, out, strict=True) if not np.isfinite(b)]
    if bad:
        raise ValueError(f"market.beta: not a finite number for {', '.join(map(str, bad))}")
    return out


def exposures(book: Book, market: Market) -> Exposures:
    """Price a book and express its risk in trader units.

    Parameters
    ----------
    book : Book
        Positions (options and stock), ``n`` rows.
    market : Market
        Spots, rates, dividend yields and vol surfaces of every underlying of the book.

    Returns
    -------
    Exposures
        ``positions`` (n rows, book order) and the aggregates ``by_underlying``, ``by_expiry`` and
        ``total``; units in the column names (see the module docstring).

    Raises
    ------
    ValueError
        If an underlying has no market data (``book.check_market``), the engine refuses an
        input (it names the argument and the row), or a figure is not finite (it names the
        position, underlying or book total and the column).

    Notes
    -----
    The vol of a position is its override where the book gives one, else
    ``market.vols(underlying, strike, t)``. Options are priced on their contract terms
    (:func:`optmm.pricing.book_terms` for times to settlement and styles, :func:`optmm.pricing.carry`
    for rates, carry and cash dividends) in one call of :func:`optmm.pricing.contract_greeks`: plain
    European options by the Black-Scholes-Merton kernel, the others by the dividend and American
    engines. No Python loop runs over positions (one surface call per underlying), and the
    per-position frame :attr:`Exposures.positions` is built only when it is first asked for.
    Expired options are worth their intrinsic value, with delta 0 or +-1 and every other Greek 0;
    the surface is not consulted for them.

    Examples
    --------
    >>> import numpy as np
    >>> from optmm.book import Book, Kind
    >>> from optmm.market import Market, Sticky
    >>> from optmm.surface import FlatSurface
    >>> book = Book(id=np.array(["c1", "s1"], dtype=object),
    ...     underlying=np.array(["XYZ", "XYZ"], dtype=object),
    ...     kind=np.array([Kind.CALL, Kind.STOCK], dtype=np.int8), strike=np.array([100.0, 0.0]),
    ...     expiry=np.array(["2025-01-01", "NaT"], dtype="datetime64[D]"), quantity=np.array([10.0, -500.0]),
    ...     multiplier=np.array([100.0, 1.0]), vol=np.array([np.nan, np.nan]), source="doc")
    >>> market = Market(valuation=np.datetime64("2024-01-01"), spot={"XYZ": 100.0}, rate={"XYZ": 0.0},
    ...     div_yield={"XYZ": 0.0}, surface={"XYZ": FlatSurface(vol=0.2)}, beta={}, index=None,
    ...     sticky=Sticky.STRIKE, source="doc")
    >>> ex = exposures(book, market)
    >>> ex.by_underlying.loc["XYZ", ["delta_shares", "vega_per_vol_point"]].round(1).to_dict()
    {'delta_shares': 39.9, 'vega_per_vol_point': 397.5}
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below, by name
        result, rows_finite = _exposures(book, market)
    _check_finite(result, rows_finite)
    return result


def _not_finite(values: np.ndarray, columns: list[str]) -> tuple[int, str] | None:
    """The first (row, column) of ``values`` (rows x columns) that is not finite, or None."""
    bad = np.argwhere(~np.isfinite(values))
    if not bad.size:
        return None
    return int(bad[0][0]), columns[int(bad[0][1])]


def _check_finite(ex: Exposures, rows_finite: bool) -> None:
    """Refuse exposures with a figure that is not finite, naming the position, underlying or book.
    ``rows_finite``: every position's price and figures are known to be finite (else they are
    searched)."""
    too_large = "a quantity, multiplier, strike or spot is too large for the arithmetic"
    cols = ["price", *EXPOSURE_COLUMNS]
    hit = None if rows_finite else _not_finite(np.stack([ex._columns[c] for c in cols], axis=1), cols)
    if hit is not None:
        i, column = hit
        raise ValueError(
            f"position {ex._columns['id'][i]!r} ({ex._columns['underlying'][i]}, row {i + 1} of the book): "
            f"{column} is not a finite number; {too_large}"
        )
    hit = _not_finite(
        ex.by_underlying[list(EXPOSURE_COLUMNS)].to_numpy(dtype=np.float64), list(EXPOSURE_COLUMNS)
    )
    if hit is not None:
        i, col = hit
        raise ValueError(
            f"underlying {ex.by_underlying.index[i]}: {col} is not a finite number (the positions' "
            f"figures overflow when added); {too_large}"
        )
    hit = _not_finite(ex.total.to_numpy(dtype=np.float64), [str(c) for c in ex.total.columns])
    if hit is not None:
        raise ValueError(
            f"book total: {hit[1]} is not a finite number (the underlyings' figures overflow when "
            f"added); {too_large}"
        )


def _exposures(book: Book, market: Market) -> tuple[Exposures, bool]:
    book.check_market(market)
    underlyings, uidx = book.underlying_index()
    carry = pricing.carry(market, list(underlyings))
    spot_u = np.array([market.spot[u] for u in underlyings], dtype=np.float64)
    kind = np.asarray(book.kind)
    strike = np.asarray(book.strike, dtype=np.float64)
    override = np.asarray(book.vol, dtype=np.float64)

    # Each contract of the book (Book.contract_index) is priced once and its positions take its
    # figures: a large book holds each contract several times.
    of_row, rep = book.contract_index()
    c_t, c_american = pricing.book_terms(book, market, uidx, rows=rep)  # (the terms are the contract's)
    c_kind, cu, c_strike = kind[rep], uidx[rep], strike[rep]
    c_option = c_kind != Kind.STOCK
    c_vol = np.where(c_option, override[rep], np.nan)
    # The surface is asked only for live options without an override: an expired option is worth
    # its intrinsic value whatever the vol, and a surface need not be defined at t <= 0.
    need = np.flatnonzero(c_option & np.isnan(c_vol) & (c_t > 0.0))
    surface_vols(market, underlyings, cu, c_strike, c_t, need, c_vol)
    c_vol[c_option & np.isnan(c_vol)] = 0.0  # expired without override
    opt = np.flatnonzero(c_option)
    every = opt.size == rep.size  # options only: the contract arrays as they are
    sel = slice(None) if every else opt
    g = pricing.contract_greeks(
        carry, cu[sel], spot_u[cu[sel]], c_strike[sel], c_t[sel], c_vol[sel], c_kind[sel] == Kind.CALL,
        c_american[sel],
    )  # fmt: skip
    greeks = {name: np.zeros(rep.size) for name in Greeks.FIELDS}
    for name, arr in g.to_dict().items():
        greeks[name][sel] = arr
    stock = np.flatnonzero(~c_option)
    greeks["price"][stock] = spot_u[cu[stock]]
    greeks["delta"][stock] = 1.0
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    table = np.stack([greeks[name] for name in names], axis=1)
    quantity = np.asarray(book.quantity, dtype=np.float64)
    multiplier = np.asarray(book.multiplier, dtype=np.float64)

    # expiry codes in date order, NaT (stock) last as groupby(dropna=False) puts it; a row's
    # (underlying, expiry) group is its contract's
    e_codes, e_values = book.expiry_index()
    days = e_values.view(np.int64)
    nat = np.isnat(e_values)
    rank = np.empty(days.size, dtype=np.int64)
    rank[np.lexsort((days, nat))] = np.arange(days.size)
    exp_values = np.sort(days[~nat])
    if nat.any():
        exp_values = np.append(exp_values, days[nat])
    n_exp = max(1, exp_values.size)
    groups, c_group = dense_codes(cu.astype(np.int64) * n_exp + rank[e_codes[rep]])
    # the sums pandas' groupby and numpy.sum give (compensated in row order; pairwise), without
    # making the figures of every position
    sum_u, sum_g, sum_book = exposure_sums(
        quantity, multiplier, uidx, spot_u, of_row, table, c_group, groups.size
    )
    cols = list(EXPOSURE_COLUMNS)
    by_underlying = pd.DataFrame(sum_u, columns=cols, index=pd.Index(underlyings, name="underlying"))
    by_underlying.insert(0, "spot", spot_u)
    by_expiry = pd.DataFrame(
        sum_g,
        columns=cols,
        index=pd.MultiIndex.from_arrays(
            [
                pd.Index(underlyings[groups // n_exp], name="underlying"),
                pd.Index(
                    exp_values.view("datetime64[D]")[groups % n_exp].astype("datetime64[s]"), name="expiry"
                ),
            ]
        ),
    )

    def make_columns() -> dict[str, np.ndarray]:
        s = spot_u[uidx]
        units = trader_units(quantity * multiplier, s, of_row, greeks, c_vol)
        return {
            "id": np.asarray(book.id, dtype=object),
            "underlying": np.asarray(book.underlying, dtype=object),
            "kind": kind,
            "expiry": np.asarray(book.expiry, dtype="datetime64[D]"),
            "strike": strike,
            "quantity": quantity,
            "multiplier": multiplier,
            "spot": s,
            "t": c_t[of_row],
            "vol": units[10],
            "price": units[9],
            **dict(zip(EXPOSURE_COLUMNS, units[:9], strict=True)),
        }

    additive = [c for c in cols if c not in _PER_UNDERLYING_UNITS]
    total = pd.DataFrame(
        [[float(sum_book[cols.index(c)]) for c in additive]], columns=additive, index=pd.Index([BOOK_LABEL])
    )
    result = Exposures(by_underlying, by_expiry, total, market, make_columns)
    # a figure that is not finite makes its book sum so (NaN or inf), and so does an overflowing sum
    # of finite figures: only then are the positions searched
    rows_finite = bool(np.isfinite(table[:, 0]).all() and np.isfinite(sum_book).all())
    if market.index is not None and all(u in market.beta for u in by_underlying.index):
        bwd = result.beta_weighted_delta()
        total.insert(1, "beta_delta_index_shares", bwd.index_shares)
        total.insert(2, "beta_delta_index_dollars", bwd.index_dollars)
    return result, rows_finite


#: Columns in shares of one underlying: they do not add across underlyings.
_PER_UNDERLYING_UNITS = ("delta_shares", "vanna_shares_per_vol_point")

__all__ = ["EXPOSURE_COLUMNS", "BetaWeightedDelta", "Exposures", "exposures"]
