"""A simulation that starts from a book and a market (``simulate(config, book=..., market=...)``).

:func:`prepare` turns a configuration, a :class:`~optmm.book.Book` and a :class:`~optmm.market.Market`
into what the engine (:mod:`optmm.sim.engine`) runs (docs/simulation.md, "Starting from a book and a
market"):

* the underlyings: the book's, in sorted order (the risk controller's order), each with the
  market's spot, rate and continuous carry (dividend yield plus borrow, the loop's ``div_yield``),
  and the dynamics of the configuration's ``[[underlying]]`` of the same name, else of its first
  ``[[underlying]]`` (a template: its scheduled shocks are not copied); correlations between two
  underlyings both named in the configuration are its own, others 0;
* the chain: every option contract of the book (rows of one contract merged as the risk controller
  merges them: the first row's multiplier, the others' quantities pro rata), then the
  configuration's ``[chain]`` generated around the market's spot with expiry dates ``ceil(days)``
  after the valuation date, settled at the underlying's default settlement, in its default style
  (as a book row without a style: :func:`optmm.pricing.american_flags`), less the contracts the
  book already holds; times to settlement from the market's valuation moment
  (:func:`optmm.pricing.option_times`), so a contract expiring today (0DTE) is priced to its
  settlement;
* the surface: the loop's smile per underlying, ``vol + slope·x + curvature·x²`` with ``x = ln K −
  ln S`` (:func:`optmm.sim._kernels._smile_vol`), fitted by least squares to the market's implied
  vols at the chain's contracts (strike and time to settlement); the fitted ATM level is the
  starting instantaneous vol of the path and ``vol_theta`` keeps the configuration's ratio to
  ``vol``. One smile has no term structure: :class:`SmileFit` keeps each fit's worst error in vol
  points. Each contract then gets its own offset (``vol_offset``), the market's vol at the contract
  less the fitted smile's, which the loop adds to the smile: at the start every contract's vol is the
  market's (to rounding; floored at one vol point), so its fair value is the market's. The offset
  stays with the contract (sticky): as the spot and the vol move, the smile moves them and the
  offset rides on it; the fit's error describes how far the smile's own dynamics are from the
  surface's;
* cash dividends: a contract whose underlying pays cash dividends before it settles is priced as
  :func:`optmm.pricing.contract_price` prices a European one, in the escrowed model
  (:mod:`optmm.greeks._dividend`): Black-Scholes-Merton on the spot less the dividends' present
  value, discounted at the carry ``r - q``. :attr:`Start.div_pv0` is that value at the start; as the
  run goes on each ex-date comes closer, so the loop carries it at ``r - q``
  (:func:`optmm.sim._kernels.dividend_pv_py`) and adds the accrual to the contract's theta;
* American options (:attr:`Start.american`: the row's style, else the underlying's default in the
  market; ``[chain]``'s alike): priced as :func:`optmm.pricing.contract_greeks` prices them, at its
  default accuracy. On a continuous yield by the boundary engine (:mod:`optmm.greeks._american`) at
  every step of the loop (:func:`optmm.sim._kernels._market_step`); on an underlying with cash
  dividends to come (:attr:`Start.dividends`) by the finite-difference engine
  (:mod:`optmm.greeks._american_fd`), whose solves the loop keeps and reads between refreshes
  (:func:`optmm.sim._kernels._fd_marks`);
* a position's vol override (the book's ``vol``): its contract's vol at the start, as
  :func:`optmm.risk.exposures` prices it (the offset is taken from it instead of the market's vol),
  which the smile then moves; the contract, held, is not quoted again at the market's vol;
* the starting inventory: the book's contract positions (``position0``) and stock, in the loop and
  in the risk controller (its book is :attr:`Start.book`, each contract with its style and vol).

What the loop cannot price as the market does is refused (a :class:`~optmm.book.BookError` naming the
book's file, row and field): American options with two exercise boundaries (no engine prices them; the
book's on their row's ``style``, ``[chain]``'s on the underlying's first row), an underlying with a cash
dividend going ex before the run ends (the loop's spot does not drop on an ex-date), a vol override below
the loop's floor of one vol point, rows of one contract with different vol overrides (the loop prices a
contract at one vol), an option that settles before the
run ends, options on an underlying with arithmetic dynamics or under a strategy that quotes the underlying
alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optmm import pricing
from optmm.book import Book, BookError, Kind
from optmm.greeks._american import regime_py
from optmm.greeks._dividend import as_schedule, escrowed
from optmm.market import Market
from optmm.sim._groups import K_CALL, K_PUT, K_UNDERLYING
from optmm.sim._kernels import VOL_FLOOR
from optmm.sim.config import MAX_INSTRUMENTS, MAX_STEP_INSTRUMENTS, SECONDS_PER_YEAR, SimConfig

__all__ = ["SmileFit", "Start", "fit_smile", "prepare"]


@dataclass(frozen=True)
class SmileFit:
    """One underlying's smile, fitted to the market's implied vols at its chain's contracts.

    Attributes
    ----------
    underlying : str
    atm_vol, slope, curvature : float
        The loop's smile ``atm_vol + slope·x + curvature·x²``, ``x = ln K − ln S`` (decimal vol per
        unit of ``x`` and of ``x²``).
    worst_error_points : float
        The largest ``|smile vol − market vol|`` over the contracts, in vol points (0.01 of vol), the
        smile's vol floored at one vol point. The loop adds each contract's offset
        (:attr:`Start.vol_offset`), which makes its vol at the start the market's: this error is
        the smile's alone, how far the smile that moves them is from the surface.
    points : int
        Contracts fitted.
    """

    underlying: str
    atm_vol: float
    slope: float
    curvature: float
    worst_error_points: float
    points: int

    def __str__(self) -> str:
        return (
            f"{self.underlying}: smile fitted to {self.points} contracts: ATM vol {100 * self.atm_vol:.2f}%, "
            f"slope {self.slope:+.4f}, curvature {self.curvature:+.4f} per log-moneyness; "
            f"worst error {self.worst_error_points:.2f} vol points; "
            "each contract's offset makes its starting vol the market's"
        )


@dataclass(frozen=True)
class Start:
    """What a run from a book and a market quotes and holds (module docstring).

    Attributes
    ----------
    config : SimConfig
        The configuration run: the book's underlyings, with the market's spot, rate, carry and
        fitted smile.
    book : Book
        The risk controller's starting book: one row per option contract (with its style) and the
        stock.
    market : Market
    u, kind, strike, t0_years, mult, expiry, position0, vol_offset, div_pv0 : ndarray
        Per instrument, underlyings' chains contiguous: underlying index, simulator kind
        (``K_PUT``, ``K_CALL``, ``K_UNDERLYING``), strike (1.0 for the underlying), years to
        settlement (1.0 for the underlying), multiplier, expiry date (NaT for the underlying),
        starting position in contracts, vol offset (decimal: the market's implied vol at the
        contract less the fitted smile's at the start; 0.0 for the underlying), present value at the
        start of the cash dividends going ex before the contract settles (price units per share;
        0.0 for the underlying and without cash dividends).
    american : ndarray of bool
        Per instrument: an American option (the book row's style, else, as for ``[chain]``'s, the
        underlying's default in the market).
    dividends : tuple of (ndarray, ndarray)
        Per underlying: the cash dividends still to go ex, their times (years from the start,
        increasing) and amounts (price units per share); empty arrays for none. An American option
        on an underlying with some is priced by the finite-difference engine.
    fits : tuple of SmileFit
        One per underlying with options quoted.
    """

    config: SimConfig
    book: Book
    market: Market
    u: np.ndarray
    kind: np.ndarray
    strike: np.ndarray
    t0_years: np.ndarray
    mult: np.ndarray
    expiry: np.ndarray
    position0: np.ndarray
    vol_offset: np.ndarray
    div_pv0: np.ndarray
    american: np.ndarray
    dividends: tuple[tuple[np.ndarray, np.ndarray], ...]
    fits: tuple[SmileFit, ...]

    @property
    def u_first(self) -> np.ndarray:
        """Per underlying: its first instrument."""
        return np.searchsorted(self.u, np.arange(len(self.config.underlying))).astype(np.int64)

    @property
    def u_count(self) -> np.ndarray:
        """Per underlying: its number of instruments."""
        return np.bincount(self.u, minlength=len(self.config.underlying)).astype(np.int64)


def fit_smile(x: np.ndarray, vol: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares fit of ``vol ≈ a + b·x + c·x²`` (the highest degree, at most 2, that the distinct
    ``x`` determine: one point fits the level alone, two a line).

    Returns
    -------
    (a, b, c, worst) : the coefficients and ``max |max(a + b·x + c·x², VOL_FLOOR) − vol|`` (decimal).
    """
    degree = min(2, np.unique(x).size - 1)
    design = np.vander(x, degree + 1, increasing=True)
    coef = np.zeros(3)
    coef[: degree + 1] = np.linalg.lstsq(design, vol, rcond=None)[0]
    a, b, c = (float(v) for v in coef)
    fitted = np.maximum(a + b * x + c * x * x, VOL_FLOOR)
    return a, b, c, float(np.max(np.abs(fitted - vol)))


def _refuse(book: Book, rows: np.ndarray, field: str, problem: str) -> None:
    """Raise a BookError for the first of ``rows`` (a mask), if any."""
    if rows.any():
        r = int(np.argmax(rows))
        raise BookError(book.source, r + 1, field, problem.replace("{u}", str(book.underlying[r])))


def _check(cfg: SimConfig, book: Book, market: Market, t: np.ndarray, american: np.ndarray) -> None:
    """Refuse what the loop cannot price as the market does (module docstring)."""
    book.check_market(market)
    opt = book.is_option
    _american(cfg, book, market, opt & american)
    _refuse(
        book,
        opt & (book.vol < VOL_FLOOR),
        "vol",
        f"a vol override below the simulator's floor of {VOL_FLOOR:g} (one vol point)",
    )
    if cfg.chain.instrument == "options":
        _refuse(
            book,
            np.array([u not in market.surface for u in book.underlying], dtype=bool),
            "underlying",
            f"no vol surface for {{u}} in {market.source} ([chain] quotes options on every underlying)",
        )
    horizon_years = cfg.horizon_s / SECONDS_PER_YEAR
    _refuse(
        book,
        opt & (t <= horizon_years),
        "expiry",
        f"settles before the run's end ({cfg.horizon_s:g} s after the valuation of {market.source})",
    )
    if cfg.strategy.quoting != "quoter":
        _refuse(
            book,
            opt,
            "kind",
            f"an option, but [strategy] quoting = {cfg.strategy.quoting.value!r} quotes the underlying alone",
        )


def _american(cfg: SimConfig, book: Book, market: Market, american: np.ndarray) -> None:
    """Refuse the American options no engine prices: the book's (``american``, a mask of its rows)
    and ``[chain]``'s (the underlying's default style) in the two-boundary regime."""
    two = (
        f"has two exercise boundaries at the rate and carry of {market.source} (a put with carry < rate "
        "< 0, a call with rate < carry < 0), which the simulator does not price"
    )
    names = list(dict.fromkeys(book.underlying))  # in the book's order
    # (on cash dividends the finite-difference engine prices every regime)
    boundary = {n: market.dividend_times(n)[0].size == 0 for n in names}
    carry_ = {n: (market.rate[n], market.continuous_carry(n)) for n in names}
    is_call = book.kind == Kind.CALL
    double = [
        boundary[n] and regime_py(*carry_[n], bool(c)) == 2
        for n, c in zip(book.underlying, is_call, strict=True)
    ]
    rows = american & np.array(double, dtype=bool)
    if rows.any():
        explicit = book.style is not None and book.style[int(np.argmax(rows))] == "american"
        default = "" if explicit else f" (the default for {{u}} in {market.source})"
        _refuse(book, rows, "style", f"American option{default} on {{u}}, which {two}")
    if cfg.chain.instrument != "options":
        return
    kinds = [c for c, on in ((True, cfg.chain.calls), (False, cfg.chain.puts)) if on]
    for name in names:
        if (
            market.default_style(name) == "american"
            and boundary[name]
            and any(regime_py(*carry_[name], c) == 2 for c in kinds)
        ):
            _refuse(
                book,
                book.underlying == name,
                "underlying",
                f"[chain] quotes American options on {{u}} (its default style in {market.source}), "
                f"which {two}",
            )


def _dividends(
    cfg: SimConfig,
    book: Book,
    market: Market,
    names: list[str],
    u: np.ndarray,
    t0: np.ndarray,
    is_opt: np.ndarray,
) -> np.ndarray:
    """Per instrument of the chain (underlying index ``u``, years to settlement ``t0``), the present
    value at the start of the cash dividends going ex before it settles (``Start.div_pv0``: the
    escrowed model, as :func:`optmm.pricing.contract_price` prices). Refuses an underlying with a
    cash dividend going ex before the run ends (the loop's spot does not drop on an ex-date) or with
    dividends before an option settles worth its spot or more (no escrowed stock left)."""
    horizon_years = cfg.horizon_s / SECONDS_PER_YEAR
    carry_ = pricing.carry(market, names)
    pv0 = np.zeros(u.size)
    for j, name in enumerate(names):
        schedule = carry_.dividends(j)
        if schedule is None:
            continue
        mine = book.underlying == name
        if horizon_years > schedule[0][0]:
            ex = market.dividends[name][-carry_.div_times[j].size][0]
            _refuse(
                book,
                mine,
                "underlying",
                f"{{u}} has a cash dividend going ex on {ex} in {market.source}, before the run ends: "
                "the simulator's spot does not drop on an ex-date",
            )
        rows = np.flatnonzero((u == j) & is_opt)
        if rows.size:
            one = np.ones(1)
            try:
                esc = escrowed(
                    one * market.spot[name], t0[rows], one * carry_.rate[j], one * carry_.q[j],
                    as_schedule(schedule), (rows.size,),
                )  # fmt: skip
            except ValueError:
                _refuse(
                    book,
                    mine,
                    "underlying",
                    f"{{u}} in {market.source}: the cash dividends before one of its options settles are "
                    "worth its spot or more (no escrowed stock left)",
                )
                raise
            pv0[rows] = esc.pv
    return pv0


def _template(cfg: SimConfig, name: str) -> tuple[int, dict]:
    """The configuration's ``[[underlying]]`` for ``name`` (its index, its fields): the one of that
    name, else the first, without its shocks."""
    for j, und in enumerate(cfg.underlying):
        if und.name == name:
            return j, und.to_dict()
    d = cfg.underlying[0].to_dict()
    d["shock"] = []
    return -1, d


def _contracts(book: Book, t: np.ndarray, american: np.ndarray) -> pd.DataFrame:
    """The book's option contracts, as the risk controller merges them: one row per (underlying,
    kind, strike, expiry, time to settlement, style), the first row's multiplier and settlement,
    quantity in contracts of that multiplier."""
    opt = np.flatnonzero(book.is_option)
    frame = pd.DataFrame(
        {
            "underlying": book.underlying[opt],
            "kind": book.kind[opt].astype(np.int64),
            "strike": book.strike[opt],
            "expiry": book.expiry[opt].view(np.int64),
            "t": t[opt],
            "american": american[opt],
            "multiplier": book.multiplier[opt],
            "settlement": book.settlement[opt],  # type: ignore[index]
            "qm": book.quantity[opt] * book.multiplier[opt],
            "vol": book.vol[opt],
        }
    )
    groups = frame.groupby(["underlying", "kind", "strike", "expiry", "t", "american"], sort=False)
    first_vol = groups["vol"].transform("first").to_numpy()
    other = ~(
        (frame["vol"].to_numpy() == first_vol) | (np.isnan(frame["vol"].to_numpy()) & np.isnan(first_vol))
    )
    rows = np.zeros(len(book), dtype=bool)
    rows[opt[other]] = True
    _refuse(
        book,
        rows,
        "vol",
        "a vol override other than the contract's first row's: the simulator prices a contract at one vol",
    )
    agg = groups.agg(
        multiplier=("multiplier", "first"),
        settlement=("settlement", "first"),
        qm=("qm", "sum"),
        vol=("vol", "first"),
    ).reset_index()
    agg["position"] = agg["qm"] / agg["multiplier"]
    return agg


def _generated(cfg: SimConfig, market: Market, name: str) -> pd.DataFrame:
    """The configuration's ``[chain]`` around the market's spot of ``name`` (module docstring)."""
    ch = cfg.chain
    spot = market.spot[name]
    strikes = sorted({round(spot * m / ch.strike_step) * ch.strike_step for m in ch.moneyness})
    if strikes[0] <= 0.0:
        raise ValueError(f"[chain] moneyness: a strike of {name} rounds to {strikes[0]:g}")
    kinds = [k for k, on in ((Kind.CALL, ch.calls), (Kind.PUT, ch.puts)) if on]
    rows = [
        (int(k), float(s), market.valuation + np.timedelta64(math.ceil(days), "D"))
        for days in ch.expiries_days
        for s in strikes
        for k in kinds
    ]
    expiry = np.array([r[2] for r in rows], dtype="datetime64[D]")
    under = np.full(len(rows), name, dtype=object)
    return pd.DataFrame(
        {
            "underlying": under,
            "kind": np.array([r[0] for r in rows], dtype=np.int64),
            "strike": np.array([r[1] for r in rows]),
            "expiry": expiry.view(np.int64),
            "t": pricing.option_times(market, under, expiry),
            "american": pricing.american_flags(market, under),
            "multiplier": float(ch.multiplier),
            "settlement": "",
            "position": 0.0,
            "vol": math.nan,
        }
    )


def prepare(config: SimConfig, book: Book, market: Market) -> Start:
    """The run of ``config`` from ``book`` at ``market`` (module docstring).

    Raises
    ------
    BookError
        A row the simulator cannot start from (file, row and field named).
    ValueError
        A chain too large, or a smile whose fitted ATM vol is not positive.
    """
    cfg = config
    if not len(book):
        raise BookError(book.source, 0, "quantity", "the book is empty")
    t, american = pricing.book_terms(book, market)
    _check(cfg, book, market, t, american)
    names = book.underlyings()
    held = _contracts(book, t, american)
    parts = []
    options = cfg.chain.instrument == "options"
    for name in names:
        mine = held[held["underlying"] == name]
        if options:
            gen = _generated(cfg, market, name)
            key = ["kind", "strike", "expiry", "t", "american"]
            known = pd.MultiIndex.from_frame(mine[key])
            gen = gen[~pd.MultiIndex.from_frame(gen[key]).isin(known)]
            parts.extend([mine, gen])
        else:
            stock = {"underlying": name, "kind": int(Kind.STOCK), "strike": 1.0, "expiry": 0, "t": 1.0}
            stock["american"] = False
            parts.extend(
                [
                    pd.DataFrame(
                        [{**stock, "multiplier": 1.0, "settlement": "", "position": 0.0, "vol": math.nan}]
                    ),
                    mine,
                ]
            )
    chain = pd.concat(parts, ignore_index=True)
    n_inst = len(chain)
    for size, bound, what in (
        (n_inst, MAX_INSTRUMENTS, f"{n_inst:,} instruments (the book's and [chain]'s)"),
        (
            cfg.sim.steps * n_inst,
            MAX_STEP_INSTRUMENTS,
            f"[sim] steps x instruments = {cfg.sim.steps:,} x {n_inst:,}",
        ),
    ):
        if size > bound:
            raise ValueError(f"{what}: more than the bound of {bound:,} (memory); make the run smaller")
    uidx = {name: j for j, name in enumerate(names)}
    # (copies: pandas may give a read-only view, and the loop's arrays are writable, so that a run
    # from a book and a synthetic one compile the loop's phases once, optmm._compile_ahead)
    u = chain["underlying"].map(uidx).to_numpy(dtype=np.int64, copy=True)
    bkind = chain["kind"].to_numpy()
    kind = np.select([bkind == Kind.CALL, bkind == Kind.PUT], [K_CALL, K_PUT], K_UNDERLYING).astype(np.int64)
    is_opt = kind != K_UNDERLYING
    strike = chain["strike"].to_numpy(dtype=np.float64)
    t0 = chain["t"].to_numpy(dtype=np.float64)
    expiry = np.where(is_opt, chain["expiry"].to_numpy(dtype=np.int64), np.iinfo(np.int64).min)
    div_pv0 = _dividends(cfg, book, market, names, u, t0, is_opt)
    carry_ = pricing.carry(market, names)
    is_american = chain["american"].to_numpy(dtype=bool) & is_opt
    override = chain["vol"].to_numpy(dtype=np.float64)  # a position's vol override, else NaN

    fits: list[SmileFit] = []
    vol_offset = np.zeros(n_inst)
    corr_src = cfg.correlation_matrix()
    src_index: list[int] = []
    unds = []
    for j, name in enumerate(names):
        k_src, d = _template(cfg, name)
        src_index.append(k_src)
        rows = np.flatnonzero((u == j) & is_opt)
        spot = market.spot[name]
        d.update(name=name, spot=spot, rate=market.rate[name], div_yield=market.continuous_carry(name))
        if rows.size:
            if d["arith_vol_per_sqrt_s"] > 0.0:
                raise ValueError(
                    f"[underlying {name}] arith_vol_per_sqrt_s: options need geometric dynamics "
                    f"(the book holds options on {name})"
                )
            x = np.log(strike[rows]) - math.log(spot)
            vols = market.vols(name, strike[rows], t0[rows])
            a, b, c, worst = fit_smile(x, vols)
            vols = np.where(np.isnan(override[rows]), vols, override[rows])  # (a position's own vol)
            if not a > 0.0:
                raise ValueError(
                    f"{market.source}: underlyings.{name}: the smile fitted has ATM vol {a:g} (<= 0)"
                )
            fits.append(SmileFit(name, a, b, c, 100.0 * worst, int(rows.size)))
            vol_offset[rows] = vols - (a + b * x + c * x * x)
            ratio = d["vol_theta"] / d["vol"]
            d.update(vol=a, vol_theta=a * ratio, smile_slope=b, smile_curvature=c)
        unds.append(d)
    corr = np.eye(len(names))
    for i, ki in enumerate(src_index):
        for j, kj in enumerate(src_index):
            if i != j and ki >= 0 and kj >= 0:
                corr[i, j] = corr_src[ki, kj]
    doc = cfg.to_dict()
    doc["underlying"] = unds
    doc.pop("correlation", None)
    if len(names) > 1:
        doc["correlation"] = corr.tolist()
    run_cfg = SimConfig.from_dict(doc, source=f"{cfg.source} from {book.source} at {market.source}")

    ctl_book = _controller_book(
        book, chain[is_opt], expiry[is_opt].astype("datetime64[D]"), is_american[is_opt]
    )
    return Start(
        config=run_cfg,
        book=ctl_book,
        market=market,
        u=u,
        kind=kind,
        strike=np.where(is_opt, strike, 1.0),
        t0_years=np.where(is_opt, t0, 1.0),
        mult=chain["multiplier"].to_numpy(dtype=np.float64, copy=True),
        expiry=expiry.astype("datetime64[D]"),
        position0=chain["position"].to_numpy(dtype=np.float64),
        vol_offset=vol_offset,
        div_pv0=div_pv0,
        american=is_american,
        dividends=tuple(zip(carry_.div_times, carry_.div_amounts, strict=True)),
        fits=tuple(fits),
    )


def _controller_book(book: Book, options: pd.DataFrame, expiry: np.ndarray, american: np.ndarray) -> Book:
    """The risk controller's starting book: one row per option contract of the chain (``options``,
    with their ``expiry`` dates, style (``american``), settlement and vol override) and the book's
    stock rows."""
    stock = np.flatnonzero(~book.is_option)
    n_opt, n_stock = len(options), stock.size

    def both(column: str, stock_values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        return np.concatenate([options[column].to_numpy(dtype=dtype), stock_values])

    return Book(
        id=np.array([f"c{i}" for i in range(n_opt)] + [f"s{i}" for i in range(n_stock)], dtype=object),
        underlying=both("underlying", book.underlying[stock], object),
        kind=both("kind", np.full(n_stock, float(Kind.STOCK))),
        strike=both("strike", np.zeros(n_stock)),
        expiry=np.concatenate([expiry, book.expiry[stock]]),
        quantity=both("position", book.quantity[stock]),
        multiplier=both("multiplier", book.multiplier[stock]),
        vol=both("vol", np.full(n_stock, np.nan)),
        style=np.concatenate(
            [np.where(american, "american", "european").astype(object), np.full(n_stock, "", dtype=object)]
        ),
        settlement=both("settlement", np.full(n_stock, "", dtype=object), object),
        source=book.source,
    )
