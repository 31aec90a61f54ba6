"""A simulation started from a book and a market (``simulate(config, book=, market=)``,
``optmm simulate CONFIG --book BOOK --market MARKET``): the starting inventory, the chain, the smile fit,
the refusals."""

from __future__ import annotations

import copy
import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import QuantLib as ql
from builders import assert_usage_error, run
from numba import typeof
from ql_reference import Market as QlMarket

from optmm import _compile_ahead, pricing
from optmm.book import Book, BookError
from optmm.greeks import american_price, bsm_price
from optmm.market import Market
from optmm.risk import exposures
from optmm.risk._controller_kernels import CBOUND, CCELL
from optmm.sim import SimConfig, engine, records, simulate
from optmm.sim import _kernels as sk
from optmm.sim._groups import K_CALL, K_UNDERLYING, MarketPath, workspaces
from optmm.sim.markouts import markouts, smile_vols
from optmm.sim.start import Start, fit_smile, prepare
from optmm.surface import FlatSurface

ROOT = Path(__file__).resolve().parents[2]
CALM = str(ROOT / "scenarios/sim/calm_day.toml")
INDEX_BOOK = str(ROOT / "scenarios/examples/index/book.csv")
INDEX_MARKET = str(ROOT / "scenarios/examples/index/market.toml")
INDEX_CONFIG = str(ROOT / "scenarios/examples/index/sim.toml")
SHORT = ["--set", "sim.steps=300", "--set", "sim.quotes_window_s=60.0", "--no-progress"]

A, B, C = 0.24, -0.15, 0.8  # AAA's surface: exactly the loop's smile form
SPOT = {"AAA": 100.0, "BBB": 50.0}

CONFIG: dict[str, Any] = {
    "sim": {"steps": 120, "dt_s": 1.0, "seed": 5, "quotes_window_s": 10.0},
    "chain": {"expiries_days": [20], "moneyness": [0.9, 1.0, 1.1], "strike_step": 1.0},
    "flow": {"arrival_a": 0.0, "informed_rate": 0.0},  # no order flow: the book stays as it is
    "strategy": {"hedge": False},
    "underlying": [
        {
            "name": "AAA",
            "spot": 70.0,  # (the market's spot wins)
            "vol": 0.5,
            "vol_kappa": 4.0,
            "vol_theta": 0.6,  # 1.2 x vol
            "vol_of_vol": 1.5,  # the vol moves: the smile moves with it
            "vol_spot_corr": -0.5,
            "half_spread": 0.02,
        }
    ],
}


class SmileSurface:
    """``a + b·ln(K/S) + c·ln(K/S)²`` about a fixed spot: the loop's smile at the start."""

    def __init__(self, a: float, b: float, c: float, spot: float) -> None:
        self.a, self.b, self.c, self.spot = a, b, c, spot

    def vol(self, strike: Any, t: Any, forward: Any) -> np.ndarray:
        x = np.log(np.asarray(strike, dtype=np.float64) / self.spot)
        return np.broadcast_to(self.a + self.b * x + self.c * x * x, np.broadcast(x, np.asarray(t)).shape)


def market() -> Market:
    return Market(
        valuation=np.datetime64("2026-11-20"),
        spot=dict(SPOT),
        rate={"AAA": 0.04, "BBB": 0.03},
        div_yield={"AAA": 0.01, "BBB": 0.0},
        borrow={"BBB": 0.005},
        surface={"AAA": SmileSurface(A, B, C, SPOT["AAA"]), "BBB": FlatSurface(0.3)},
        source="test-market",
    )


def book(rows: list[tuple[Any, ...]] | None = None) -> Book:
    rows = rows or [
        ("AAA", "call", 105.0, "2026-12-18", -20.0),
        ("AAA", "put", 90.0, "2026-12-18", 15.0),
        ("AAA", "call", 100.0, "2027-01-15", 10.0),  # (on [chain]'s strike grid, another expiry)
        ("AAA", "stock", math.nan, "", 300.0),
        ("BBB", "put", 45.0, "2026-12-04", -30.0),
        ("BBB", "call", 55.0, "2026-12-04", 12.0),
    ]
    columns = ["underlying", "kind", "strike", "expiry", "quantity", "style", "vol"][: len(rows[0])]
    frame = pd.DataFrame(rows, columns=columns)
    return Book.from_frame(frame, source="test-book")


def config(**changes: Any) -> SimConfig:
    d = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        table, _, name = key.partition("__")
        d.setdefault(table, {})[name] = value
    return SimConfig.from_dict(d, source="test-config")


@pytest.fixture(scope="module")
def started() -> Any:
    return simulate(config(), book=book(), market=market())


def smile_value(res: Any, step: int, bk: Book, mk: Market) -> float:
    """The book's value at ``step`` of path 0, priced here: BSM at the loop's smile about the path's
    spot and vol plus each contract's offset (the market's vol less the smile's at the start, kept as
    the smile moves), with the market's times, rates and carry, on the spot less the cash dividends
    before settlement (:func:`escrowed_pv`), the American options (the row's style, else the
    market's default) by :func:`optmm.greeks.american_price`; the stock at the spot."""
    und = res.underlyings[(res.underlyings["path"] == 0) & (res.underlyings["step"] == step)]
    spot = dict(zip(und["underlying"], und["spot"], strict=True))
    vol = dict(zip(und["underlying"], und["vol"], strict=True))
    slope = {u.name: u.smile_slope for u in res.config.underlying}
    curv = {u.name: u.smile_curvature for u in res.config.underlying}
    dt_years = step * res.config.sim.dt_s / (365.0 * 86400.0)
    american = pricing.american_flags(mk, bk.underlying, bk.style)
    total = 0.0
    for i in range(len(bk)):
        u = str(bk.underlying[i])
        s = spot[u]
        if bk.kind[i] == 2:
            total += bk.quantity[i] * s
            continue
        k = float(bk.strike[i])
        t0 = float(mk.year_fraction(bk.expiry[i]))
        start = next(c for c in res.config.underlying if c.name == u)
        x0 = math.log(k) - math.log(start.spot)
        offset = mk.vols(u, [k], [t0])[0] - (start.vol + slope[u] * x0 + curv[u] * x0 * x0)
        x = math.log(k) - math.log(s)
        v = vol[u] + slope[u] * x + curv[u] * x * x + offset
        t = t0 - dt_years
        s_star = s - escrowed_pv(mk, u, t0, dt_years)  # (0 without cash dividends)
        price_fn = american_price if american[i] else bsm_price
        price = price_fn(s_star, k, t, mk.rate[u], mk.continuous_carry(u), v, bk.kind[i] == 0)
        total += bk.quantity[i] * bk.multiplier[i] * float(price)
    return total


# -- the starting inventory -------------------------------------------------------------------------


def test_a_run_from_a_book_passes_its_loop_the_types_of_a_synthetic_run() -> None:
    # one compilation of the loop's called phases for both runs, the compile helper's (a read-only
    # array, as pandas' to_numpy may give, would be another numba type, and all compiled again)
    st = prepare(config(), book(), market())
    chain = engine._chain(st.config, st)
    run = engine._new_run(st.config, chain, engine._controller(st.config, chain, None, st))
    want = _compile_ahead._loop_types()
    got = {"ins": run.ins, "und": run.und, "ctl": run.base, "cfg": run.settings, "qp": run.qp}
    assert {name: typeof(v) for name, v in got.items()} == {name: want[name] for name in got}


def test_step_zero_greeks_are_the_books_exposures_at_the_market(started: Any) -> None:
    ex = exposures(book(), market()).by_underlying
    und = started.underlyings[(started.underlyings["path"] == 0) & (started.underlyings["step"] == 0)]
    und = und.set_index("underlying")
    for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
        for name in ("AAA", "BBB"):
            assert und.loc[name, col] == pytest.approx(ex.loc[name, col], rel=1e-9, abs=1e-9), (col, name)
    first = started.steps.iloc[0]
    assert first["delta_shares"] == pytest.approx(ex["delta_shares"].sum(), rel=1e-9)
    assert und.loc["AAA", "stock_shares"] == 300.0 and und.loc["BBB", "stock_shares"] == 0.0


def test_the_first_steps_delta_pnl_is_the_books_delta_times_the_spot_move(started: Any) -> None:
    ex = exposures(book(), market()).by_underlying
    und = started.underlyings[started.underlyings["path"] == 0]
    move = (
        und[und["step"] == 1].set_index("underlying")["spot"]
        - und[und["step"] == 0].set_index("underlying")["spot"]
    )
    expected = float((ex["delta_shares"] * move).sum())
    assert started.steps["delta_pnl"].iloc[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("which", ["smile", "term", "dividends", "american"])
def test_the_pnl_without_trades_is_the_books_change_of_value_priced_independently(
    which: str, started: Any
) -> None:
    bk, mk = {
        "smile": (book(), market()),
        "term": (term_book(), term_market()),  # the offsets are large: they stay with their contracts
        "dividends": (book(), paying(*DIVIDENDS)),  # each contract's dividends come closer
        "american": (american_book(), american_market()),  # priced by the boundary engine
    }[which]
    if which != "smile":
        started = simulate(config(), book=bk, market=mk)
    n = started.config.sim.steps
    v0, v_last = smile_value(started, 0, bk, mk), smile_value(started, n - 1, bk, mk)
    assert started.summary["start"]["initial_value"] == pytest.approx(v0, rel=1e-9)
    cum = started.steps["cum_pnl"].to_numpy()
    assert cum[n - 2] == pytest.approx(v_last - v0, rel=1e-7, abs=1e-7 * abs(v0))
    assert abs(v_last - v0) > 1.0  # (the vol and spot moved: the check is not 0 = 0)
    s = started.summary
    assert s["fills"] == 0 and len(started.hedges) == 0
    assert s["total_pnl_mtm_mean"] == pytest.approx(s["total_pnl_mean"], rel=1e-9, abs=1e-6)
    held = bk.quantity[bk.is_option].sum()
    assert s["final_inventory_mean"] == pytest.approx(held)  # the options held


def test_a_run_from_a_book_with_order_flow_adds_up_and_keeps_its_limits() -> None:
    res = simulate(
        config(flow__arrival_a=0.5, strategy__hedge=True), book=book(), market=market(), seed=2, paths=2
    )
    s = res.summary
    assert s["fills"] > 0
    assert s["total_pnl_mtm_mean"] == pytest.approx(s["total_pnl_mean"], rel=1e-9, abs=1e-6)
    assert set(res.fills["underlying"]) <= {"AAA", "BBB"}


# -- the chain and the underlyings ------------------------------------------------------------------


def test_the_chain_is_the_books_contracts_and_the_config_chain_around_the_market_spot() -> None:
    bk, mk = book(), market()
    st = prepare(config(), bk, mk)
    assert st.config.names == ("AAA", "BBB")
    held = st.position0 != 0.0
    t_book = mk.year_fraction(bk.expiry[bk.is_option])
    got = sorted(zip(st.u[held], st.strike[held], st.t0_years[held], st.position0[held], strict=True))
    want = sorted(
        zip(
            [0 if u == "AAA" else 1 for u in bk.underlying[bk.is_option]],
            bk.strike[bk.is_option],
            t_book,
            bk.quantity[bk.is_option],
            strict=True,
        )
    )
    assert got == want
    # [chain]: strikes 0.9, 1.0, 1.1 of each market spot at 20 days, calls and puts, none held
    for j, spot in enumerate((100.0, 50.0)):
        gen = (st.u == j) & ~held
        assert sorted(set(st.strike[gen])) == [round(spot * m) for m in (0.9, 1.0, 1.1)]
        assert np.allclose(st.t0_years[gen], 20 / 365) and gen.sum() == 6
    # contracts kept once: a book contract that [chain] also generates is quoted once, held
    overlap = book([("AAA", "put", 110.0, "2026-12-10", 5.0)])
    st2 = prepare(config(), overlap, mk)
    assert st2.u.size == 6 and st2.position0.tolist().count(5.0) == 1


def test_the_underlyings_take_the_market_and_the_configs_dynamics() -> None:
    st = prepare(config(), book(), market())
    aaa, bbb = st.config.underlying
    assert (aaa.spot, aaa.rate, aaa.div_yield) == (100.0, 0.04, 0.01)
    assert (bbb.spot, bbb.rate, bbb.div_yield) == (50.0, 0.03, 0.005)  # carry = yield + borrow
    for u in (aaa, bbb):  # AAA's own dynamics; BBB, not in the config, takes them as a template
        assert (u.vol_kappa, u.vol_of_vol, u.vol_spot_corr, u.half_spread) == (4.0, 1.5, -0.5, 0.02)
        assert u.vol_theta == pytest.approx(1.2 * u.vol)
    assert bbb.vol == pytest.approx(0.3, abs=1e-12)


def test_the_smile_fit_reproduces_a_surface_of_the_loops_form() -> None:
    st = prepare(config(), book(), market())
    fit = {f.underlying: f for f in st.fits}
    assert fit["AAA"].atm_vol == pytest.approx(A, abs=1e-9)
    assert fit["AAA"].slope == pytest.approx(B, abs=1e-9)
    assert fit["AAA"].curvature == pytest.approx(C, abs=1e-9)
    assert fit["AAA"].worst_error_points < 1e-7
    aaa = st.config.underlying[0]
    assert (aaa.vol, aaa.smile_slope, aaa.smile_curvature) == (
        fit["AAA"].atm_vol,
        fit["AAA"].slope,
        fit["AAA"].curvature,
    )
    assert fit["BBB"].slope == pytest.approx(0.0, abs=1e-12) and fit["AAA"].points == 9


def test_the_fit_is_least_squares_and_reports_its_worst_error() -> None:
    mk = Market.load(INDEX_MARKET)
    st = prepare(SimConfig.load(CALM).with_overrides({"sim.steps": 3600}), Book.load(INDEX_BOOK), mk)
    spx = next(f for f in st.fits if f.underlying == "SPX")
    j = st.config.names.index("SPX")
    rows = (st.u == j) & (st.kind != 2)
    x = np.log(st.strike[rows] / mk.spot["SPX"])
    v = mk.vols("SPX", st.strike[rows], st.t0_years[rows])
    c2, c1, c0 = np.polyfit(x, v, 2)  # an independent least squares
    assert (spx.atm_vol, spx.slope, spx.curvature) == pytest.approx((c0, c1, c2), rel=1e-8)
    worst = 100 * np.max(np.abs(np.maximum(c0 + c1 * x + c2 * x * x, 0.01) - v))
    assert spx.worst_error_points == pytest.approx(worst, rel=1e-6)
    assert spx.worst_error_points > 0.5  # a 0DTE slice and monthlies: one smile cannot fit both
    # too few strikes for a parabola: a line, then a level
    assert fit_smile(np.array([0.0, 0.1]), np.array([0.2, 0.25]))[:3] == pytest.approx((0.2, 0.5, 0.0))
    assert fit_smile(np.array([0.1, 0.1]), np.array([0.2, 0.3]))[:3] == pytest.approx((0.25, 0.0, 0.0))


def test_synthetic_runs_are_unchanged_by_the_book_keywords() -> None:
    cfg = config(flow__arrival_a=0.3)
    a, b = simulate(cfg), simulate(cfg, book=None, market=None)
    pd.testing.assert_frame_equal(a.steps, b.steps)
    assert "start" not in a.summary


# -- the start is the market's ----------------------------------------------------------------------


class TermSurface:
    """A surface with a strong term structure: ATM vol from about 13 % at a day to 37 % at a year,
    a skew that flattens with time (``x = ln(K / F)``)."""

    def vol(self, strike: Any, t: Any, forward: Any) -> np.ndarray:
        tt = np.asarray(t, dtype=np.float64)
        x = np.log(np.asarray(strike, dtype=np.float64) / np.asarray(forward, dtype=np.float64))
        return 0.12 + 0.25 * np.sqrt(tt) - 0.2 * x / np.sqrt(tt + 0.05)


def term_market() -> Market:
    return Market(
        valuation=np.datetime64("2026-11-20"),
        spot={"AAA": 100.0},
        rate={"AAA": 0.04},
        div_yield={"AAA": 0.015},
        surface={"AAA": TermSurface()},
        source="term-market",
    )


def term_book() -> Book:
    return book(
        [
            ("AAA", "call", 105.0, "2026-11-27", -20.0),
            ("AAA", "put", 95.0, "2026-12-18", 15.0),
            ("AAA", "call", 100.0, "2027-05-21", 10.0),
            ("AAA", "put", 80.0, "2027-11-19", 5.0),
            ("AAA", "stock", math.nan, "", 300.0),
        ]
    )


def _market_prices(st: Start, mk: Market) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chain's options (their rows) at the market: optmm's own pricing (each contract's style) at
    the market's implied vols, and those vols."""
    names = st.config.names
    opt = np.flatnonzero(st.kind != K_UNDERLYING)
    u = st.u[opt]
    vols = np.array(
        [mk.vols(names[j], [k], [t])[0] for j, k, t in zip(u, st.strike[opt], st.t0_years[opt], strict=True)]
    )
    spot = np.array([mk.spot[n] for n in names])[u]
    price = pricing.contract_price(
        pricing.carry(mk, names), u, spot, st.strike[opt], st.t0_years[opt], vols,
        st.kind[opt] == K_CALL, st.american[opt],
    )  # fmt: skip
    return opt, price, vols


def _fair_at_start(cfg: SimConfig, bk: Book, mk: Market) -> tuple[Start, Any, np.ndarray]:
    """The run's start, result and the loop's fair value of every instrument at step 0."""
    cfg = cfg.with_overrides({"sim.steps": 30, "sim.quotes_from_s": 0.0, "sim.quotes_window_s": 5.0})
    st = prepare(cfg, bk, mk)
    res = simulate(cfg, book=bk, market=mk)
    q = res.quotes[res.quotes["step"] == 0].sort_values("contract")
    assert q["contract"].tolist() == list(range(st.u.size))
    return st, res, q["fair"].to_numpy()


@pytest.mark.parametrize("which", ["index", "term"])
def test_the_loops_fair_values_at_the_start_are_the_markets(which: str) -> None:
    if which == "index":
        cfg, bk, mk = SimConfig.load(INDEX_CONFIG), Book.load(INDEX_BOOK), Market.load(INDEX_MARKET)
    else:
        cfg, bk, mk = config(), term_book(), term_market()
    st, res, fair = _fair_at_start(cfg, bk, mk)
    opt, price, vols = _market_prices(st, mk)
    # one smile cannot fit the surface: without the offsets the start would be off by over a point
    assert max(f.worst_error_points for f in st.fits) > 1.0
    assert np.abs(st.vol_offset[opt]).max() > 0.01
    assert fair[opt] == pytest.approx(price, rel=1e-9, abs=1e-12)
    # the loop's vol at the start, as it forms it: the smile plus the offset is the market's vol
    und = {u.name: u for u in res.config.underlying}
    for i, v in zip(opt, vols, strict=True):
        u = und[st.config.names[st.u[i]]]
        x = math.log(st.strike[i]) - math.log(u.spot)
        assert u.vol + u.smile_slope * x + u.smile_curvature * x * x + st.vol_offset[i] == pytest.approx(
            v, rel=1e-12
        )
    # the book's starting value is the market's
    value = float(np.sum(st.position0[opt] * st.mult[opt] * price)) + sum(
        float(bk.quantity[r] * mk.spot[str(bk.underlying[r])]) for r in np.flatnonzero(~bk.is_option)
    )
    assert (st.position0[opt] != 0.0).any()
    assert res.summary["start"]["initial_value"] == pytest.approx(value, rel=1e-9)


def test_the_start_is_the_markets_by_quantlibs_black_scholes_merton() -> None:
    """An independent check: QuantLib's Black formula on the forward (Black–Scholes–Merton with a
    continuous carry) at the surface's own vol, written out here, for the term-structure market."""
    mk = term_market()
    st, _, fair = _fair_at_start(config(), term_book(), mk)
    r, q, s = 0.04, 0.015, 100.0
    opt = np.flatnonzero(st.kind != K_UNDERLYING)
    picks = opt[np.argsort(st.t0_years[opt])][[0, 1, opt.size // 2, -2, -1]]
    for i in picks:
        t, k = float(st.t0_years[i]), float(st.strike[i])
        fwd = s * math.exp((r - q) * t)
        vol = 0.12 + 0.25 * math.sqrt(t) - 0.2 * math.log(k / fwd) / math.sqrt(t + 0.05)
        kind = ql.Option.Call if st.kind[i] == K_CALL else ql.Option.Put
        want = ql.blackFormula(kind, k, fwd, vol * math.sqrt(t), math.exp(-r * t))
        assert fair[i] == pytest.approx(want, rel=1e-9), (k, t)
    assert st.t0_years[picks].max() > 0.9 and st.t0_years[picks].min() < 0.03  # a week to a year


@pytest.mark.parametrize("which", ["term", "dividends", "american"])
def test_markouts_price_with_the_offsets_and_dividends_as_the_loop_does(which: str) -> None:
    bk, mk = {
        "term": (term_book(), term_market()),
        "dividends": (book(), paying(*DIVIDENDS)),
        "american": (american_book(), american_market()),
    }[which]
    res = simulate(config(flow__arrival_a=0.5), book=bk, market=mk, seed=3)
    f, sim = res.fills, res.config.sim
    ok = (f["step"] + round(sim.markout_s / sim.dt_s) < sim.steps).to_numpy()  # marked within the table
    assert ok.sum() > 20
    if which == "term":
        assert np.abs(res.vol_offset).max() > 0.01
    elif which == "dividends":
        assert (f["underlying"][ok] == "BBB").sum() > 5 and res.div_pv0.max() > 0.4
    else:
        assert res.american[f["contract"][ok]].sum() > 5
    row = markouts(res, [res.config.sim.markout_s]).iloc[0]
    assert row["fills"] == ok.sum()
    assert row["markout_pnl"] == pytest.approx(f["markout"][ok].sum(), rel=1e-9)


# -- refusals ---------------------------------------------------------------------------------------


def _refused(bk: Book, mk: Market, *fragments: str, cfg: SimConfig | None = None) -> None:
    with pytest.raises(BookError) as info:
        prepare(cfg or config(), bk, mk)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("test-book: row ")
    for f in fragments:
        assert f in msg, (f, msg)


def test_what_the_loop_cannot_price_as_the_market_does_is_refused() -> None:
    mk = market()
    two_vols = [
        ("AAA", "call", 100.0, "2026-12-18", 1.0, "", 0.3),
        ("AAA", "call", 100.0, "2026-12-18", 2.0, "", math.nan),
    ]
    _refused(book(two_vols), mk, "row 2: field 'vol'", "the simulator prices a contract at one vol")
    _refused(book([("AAA", "call", 100.0, "2026-12-18", 1.0, "", 0.005)]), mk, "row 1: field 'vol'", "floor")
    _refused(
        book(), mk, "row 5: field 'expiry'", "settles before", cfg=config(sim__steps=30, sim__dt_s=43200.0)
    )
    stock_only = Market(
        **{
            **_fields(mk),
            "spot": {**SPOT, "CCC": 20.0},
            "rate": {**mk.rate, "CCC": 0.03},
            "div_yield": {**mk.div_yield, "CCC": 0.0},
        }
    )
    held = book([("AAA", "call", 100.0, "2026-12-18", 1.0), ("CCC", "stock", math.nan, "", 100.0)])
    _refused(held, stock_only, "row 2: field 'underlying'", "no vol surface for CCC")
    with pytest.raises(ValueError, match="together"):
        simulate(config(), book=book())


def paying(*ex_dates: dt.date) -> Market:
    """:func:`market` with BBB paying 0.5 in cash on each of ``ex_dates`` (its options in the chain: the
    book's settle on 2026-12-04, [chain]'s on 2026-12-10)."""
    mk = market()
    return Market(**{**_fields(mk), "dividends": {"BBB": [(d, 0.5) for d in ex_dates]}})


def test_a_cash_dividend_going_ex_within_the_run_is_refused() -> None:
    # a stock held through an ex-date within the run: refused (the loop's spot does not drop)
    mk = paying(dt.date(2026, 11, 23))  # 09:30 on Monday, 65.5 hours after the valuation (16:00)
    stock = book([("BBB", "stock", math.nan, "", 100.0)])
    flat = config(
        chain__instrument="underlying", strategy__quoting="symmetric", sim__dt_s=3600.0, sim__steps=66
    )
    _refused(stock, mk, "row 1: field 'underlying'", "ex on 2026-11-23", "before the run ends", cfg=flat)
    assert (
        prepare(config(chain__instrument="underlying", strategy__quoting="symmetric"), stock, mk).u.size == 1
    )
    # options too, whatever their expiry
    _refused(
        book(),
        mk,
        "row 5: field 'underlying'",
        "before the run ends",
        cfg=config(sim__dt_s=3600.0, sim__steps=66),
    )
    # dividends before an option settles worth the spot or more: no escrowed stock left (a dividend
    # below the spot, discounted at a carry r - q < 0)
    fields = {**_fields(market()), "borrow": {"BBB": 1.0}}
    rich = Market(**{**fields, "dividends": {"BBB": [(dt.date(2026, 12, 1), 49.5)]}})
    _refused(book(), rich, "row 5: field 'underlying'", "no escrowed stock left")


def escrowed_pv(mk: Market, name: str, t_settle: float, elapsed: float) -> float:
    """The present value ``elapsed`` years after the valuation of ``name``'s cash dividends going ex
    before ``t_settle`` (years from the valuation), discounted at the carry ``r - q``: written out here
    from the market's schedule, independently of the loop's carrying forward."""
    times, amounts = mk.dividend_times(name)
    carry_ = mk.rate[name] - mk.continuous_carry(name)
    pv = [a * math.exp(-carry_ * (t - elapsed)) for t, a in zip(times, amounts, strict=True) if t < t_settle]
    return float(sum(pv))


DIVIDENDS = (dt.date(2026, 12, 1), dt.date(2026, 12, 8), dt.date(2027, 3, 12))  # before, between, after


def test_dividends_worth_the_spot_are_refused_in_words() -> None:
    # BBB (spot 50) pays 49.9 before its options settle, worth more than 50 at a rate of -50 %: no
    # escrowed stock left
    f = _fields(market())
    f["rate"] = {"AAA": 0.04, "BBB": -0.5}
    mk = Market(**{**f, "dividends": {"BBB": [(dt.date(2026, 12, 1), 49.9)]}})
    _refused(book(), mk, "row 5: field 'underlying'", "BBB in test-market", "worth its spot or more")


def test_cash_dividends_before_settlement_are_priced_as_the_market_prices_them() -> None:
    """BBB pays 0.5 on three ex-dates: before the book's options settle (2026-12-04), before [chain]'s
    (2026-12-10) and after both. The loop prices each contract in the escrowed model, as
    :func:`optmm.pricing.contract_price` does (the Greeks engine, checked against QuantLib's
    ``AnalyticDividendEuropeanEngine`` in tests/greeks)."""
    bk, mk = book(), paying(*DIVIDENDS)
    st, res, fair = _fair_at_start(config(), bk, mk)
    opt, price, vols = _market_prices(st, mk)
    bbb = opt[np.array(st.config.names)[st.u[opt]] == "BBB"]
    assert fair[opt] == pytest.approx(price, rel=1e-9, abs=1e-12)
    # each contract's dividends: the first for the book's options, the first two for [chain]'s
    for i in bbb:
        want = escrowed_pv(mk, "BBB", float(st.t0_years[i]), 0.0)
        assert st.div_pv0[i] == pytest.approx(want, rel=1e-12)
        assert want == pytest.approx(0.5 if st.expiry[i] < np.datetime64("2026-12-08") else 1.0, rel=1e-3)
    assert (st.div_pv0[np.setdiff1d(opt, bbb)] == 0.0).all()
    # without the dividends the prices differ by far more than the tolerance
    spot, v = np.full(bbb.size, SPOT["BBB"]), vols[np.isin(opt, bbb)]
    plain = bsm_price(spot, st.strike[bbb], st.t0_years[bbb], 0.03, 0.005, v, st.kind[bbb] == K_CALL)
    assert np.abs(plain - fair[bbb]).min() > 0.01
    # the step-0 Greeks are the book's exposures at the market, dividends and all
    ex = exposures(bk, mk).by_underlying
    und = res.underlyings[(res.underlyings["step"] == 0)].set_index("underlying")
    for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
        assert und.loc["BBB", col] == pytest.approx(ex.loc["BBB", col], rel=1e-9), col


def test_the_dividends_accrual_is_in_theta() -> None:
    """The first step's theta P&L is the book's theta (the Greeks engine's, with the dividends' accrual
    ``-(r - q) PV delta``) times the step."""
    bk, mk = book(), paying(*DIVIDENDS)
    res = simulate(config(), book=bk, market=mk)
    st = prepare(config(), bk, mk)
    opt = np.flatnonzero(st.kind != K_UNDERLYING)
    _, _, vols = _market_prices(st, mk)
    names = st.config.names
    spot = np.array([mk.spot[n] for n in names])[st.u[opt]]
    args = (st.u[opt], spot, st.strike[opt], st.t0_years[opt], vols, st.kind[opt] == K_CALL)
    g = pricing.contract_greeks(pricing.carry(mk, names), *args, np.zeros(opt.size, dtype=bool))
    qm = st.position0[opt] * st.mult[opt]
    dt_years = res.config.sim.dt_s / (365.0 * 86400.0)
    want = float(np.sum(qm * g.theta)) * dt_years
    got = float(res.steps["theta_pnl"].iloc[0])
    assert got == pytest.approx(want, rel=1e-9)
    carry_ = np.array([mk.rate[n] - mk.continuous_carry(n) for n in names])[st.u[opt]]
    accrual = -float(np.sum(qm * carry_ * st.div_pv0[opt] * g.delta)) * dt_years
    assert abs(accrual) > 1e-5 * abs(want)  # (the accrual is not lost in the tolerance)


def american_market() -> Market:
    """AAA's options are American by default (``asset = "equity"``), on AAA's continuous yield."""
    return Market(**{**_fields(market()), "asset": {"AAA": "equity"}})


def american_book() -> Book:
    """The book with styles: AAA's rows take the market's default (American), BBB's put is American
    by its row, BBB's call European (BBB's default)."""
    return book(
        [
            ("AAA", "call", 105.0, "2026-12-18", -20.0, "", math.nan),
            ("AAA", "put", 90.0, "2026-12-18", 15.0, "", math.nan),
            ("AAA", "call", 100.0, "2027-01-15", 10.0, "", math.nan),
            ("AAA", "stock", math.nan, "", 300.0, "", math.nan),
            ("BBB", "put", 45.0, "2026-12-04", -30.0, "american", math.nan),
            ("BBB", "call", 55.0, "2026-12-04", 12.0, "", math.nan),
        ]
    )


def test_american_options_are_priced_as_the_market_prices_them() -> None:
    """The loop's fair values and Greeks at the start are :func:`optmm.pricing.contract_price`'s and
    :func:`optmm.risk.exposures`' (the boundary engine for the American ones), and the first step's
    theta P&L the book's theta (:func:`optmm.pricing.contract_greeks`) times the step."""
    bk, mk = american_book(), american_market()
    st, res, fair = _fair_at_start(config(), bk, mk)
    opt, price, vols = _market_prices(st, mk)
    names = np.array(st.config.names)
    aaa = st.u[opt] == 0
    # AAA's contracts, [chain]'s with the book's, are American (the market's default); BBB's put alone
    assert (
        st.american[opt]
        == (
            aaa
            | (
                (names[st.u[opt]] == "BBB")
                & (st.kind[opt] != K_CALL)
                & (st.expiry[opt] == np.datetime64("2026-12-04"))
            )
        )
    ).all()
    assert fair[opt] == pytest.approx(price, rel=1e-9, abs=1e-12)
    # the American puts are worth more than the European ones by far more than the tolerance
    put = opt[st.american[opt] & (st.kind[opt] != K_CALL)]
    rate, q = np.array([0.04, 0.03])[st.u[put]], np.array([0.01, 0.005])[st.u[put]]
    spot = np.array([SPOT["AAA"], SPOT["BBB"]])[st.u[put]]
    european = bsm_price(spot, st.strike[put], st.t0_years[put], rate, q, vols[np.isin(opt, put)], False)
    assert (fair[put] - european).max() > 0.01
    # the step-0 Greeks are the book's exposures at the market
    ex = exposures(bk, mk).by_underlying
    und = res.underlyings[(res.underlyings["step"] == 0)].set_index("underlying")
    for name in ("AAA", "BBB"):
        for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
            assert und.loc[name, col] == pytest.approx(ex.loc[name, col], rel=1e-9), (name, col)
    # the first step's theta P&L: the book's theta (the boundary engine's for the American contracts)
    res = simulate(config(), book=bk, market=mk)
    spot = np.array([mk.spot[n] for n in names])[st.u[opt]]
    args = (st.u[opt], spot, st.strike[opt], st.t0_years[opt], vols, st.kind[opt] == K_CALL)
    g = pricing.contract_greeks(pricing.carry(mk, list(names)), *args, st.american[opt])
    qm = st.position0[opt] * st.mult[opt]
    dt_years = res.config.sim.dt_s / (365.0 * 86400.0)
    want = float(np.sum(qm * g.theta)) * dt_years
    assert float(res.steps["theta_pnl"].iloc[0]) == pytest.approx(want, rel=1e-9)
    plain = pricing.contract_greeks(pricing.carry(mk, list(names)), *args, np.zeros(opt.size, dtype=bool))
    assert abs(float(np.sum(qm * plain.theta)) * dt_years - want) > 1e-3 * abs(want)  # (not European)


def test_the_american_start_is_quantlibs() -> None:
    """An independent check: QuantLib's ``QdFpAmericanEngine`` (high-precision scheme) at AAA's
    surface, for four of its American contracts (the calls and the puts of the highest strikes: out
    of and in the money), to the engine's stated accuracy at its default setting (4e-5 of the strike,
    tests/greeks/test_american.py)."""
    mk = american_market()
    st, _, fair = _fair_at_start(config(), american_book(), mk)
    opt = np.flatnonzero(st.american)
    picks = opt[np.argsort(st.strike[opt] * np.where(st.kind[opt] == K_CALL, -1.0, 1.0))][[0, 1, -2, -1]]
    ql_mk = QlMarket()
    engine = ql.QdFpAmericanEngine(ql_mk.process, ql.QdFpAmericanEngine.highPrecisionScheme())
    for i in picks:
        k, t = float(st.strike[i]), float(st.t0_years[i])
        days = round(t * 365.0)
        assert t * 365.0 == pytest.approx(days, abs=1e-9)  # (QuantLib's dates: whole days)
        x = math.log(k / SPOT["AAA"])
        ql_mk.set(SPOT["AAA"], 0.04, 0.01, A + B * x + C * x * x)  # AAA's surface, written out
        option = ql_mk.option(k, days, st.kind[i] == K_CALL, american=True)
        option.setPricingEngine(engine)
        assert abs(fair[i] - option.NPV()) < 4e-5 * k, (k, t)
    assert (st.kind[picks] == K_CALL).any() and (st.kind[picks] != K_CALL).any()


def test_american_options_the_loop_cannot_price_as_the_market_does_are_refused() -> None:
    # on cash dividends (going ex before settlement or after): the finite-difference engine's, accepted
    put = [("BBB", "put", 45.0, "2026-12-04", 1.0, "american", math.nan)]
    for ex_date in (dt.date(2026, 12, 1), dt.date(2027, 3, 12)):
        st = prepare(config(), book(put), paying(ex_date))
        assert st.american[0] and st.dividends[0][0].size == 1
    # two exercise boundaries (a put with carry < rate < 0): no engine prices them
    negative = Market(
        **{**_fields(market()), "rate": {"AAA": -0.01, "BBB": 0.03}, "div_yield": {"AAA": -0.02, "BBB": 0.0}}
    )
    aaa_put = [("AAA", "put", 90.0, "2026-12-18", 1.0, "american", math.nan)]
    _refused(book(aaa_put), negative, "row 1: field 'style'", "two exercise boundaries")
    # ... but on cash dividends the finite-difference engine prices every regime
    f = _fields(negative)
    f["div_yield"] = {"AAA": 0.0, "BBB": 0.0}
    cash = Market(**{**f, "dividends": {"AAA": [(dt.date(2027, 3, 12), 0.5)]}})
    assert prepare(config(), book(aaa_put), cash).american[0]
    _refused(
        book([("AAA", "call", 90.0, "2026-12-18", 1.0, "european", math.nan)]),
        Market(**{**_fields(negative), "asset": {"AAA": "equity"}}),
        "row 1: field 'underlying'",
        "[chain] quotes American options on AAA",
        "two exercise boundaries",
    )


def _fields(mk: Market) -> dict[str, Any]:
    return {
        "valuation": mk.valuation,
        "spot": mk.spot,
        "rate": mk.rate,
        "div_yield": mk.div_yield,
        "borrow": mk.borrow,
        "surface": mk.surface,
        "source": mk.source,
    }


# -- the command ------------------------------------------------------------------------------------


def test_the_command_starts_from_the_book_and_says_what_the_fit_approximates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "simulate", CALM, *SHORT, "--book", INDEX_BOOK, "--market", INDEX_MARKET)
    assert code == 0, err
    assert "strategy calm_day: 1 path(s) x 300 steps" in out
    assert "SPX: smile fitted to" in err and "NDX: smile fitted to" in err and "worst error" in err
    assert err.count("each contract's offset makes its starting vol the market's") == 2


def _book_file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "book.csv"
    p.write_text("id,underlying,kind,strike,expiry,quantity,multiplier,vol,style\n" + text)
    return str(p)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--book", INDEX_BOOK], ("--book needs --market",)),
        (["--market", INDEX_MARKET], ("--market needs --book",)),
        (["--valuation", "2026-11-20"], ("--valuation needs --book",)),
        (
            ["--book", INDEX_BOOK, "--market", INDEX_MARKET, "--set", "sim.steps=23400"],
            ("row 1: field 'expiry'",),
        ),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], extra: list[str], fragments: tuple[str, ...]
) -> None:
    assert_usage_error(run(capsys, "simulate", CALM, "--no-progress", *extra), *fragments)


def test_usage_errors_name_the_book_row_and_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = _book_file(tmp_path, "a,SPX,call,5900,2026-12-18,1,,,\nb,ZZZ,call,10,2026-12-18,1,,,\n")
    assert_usage_error(
        run(capsys, "simulate", CALM, *SHORT, "--book", missing, "--market", INDEX_MARKET),
        "row 2: field 'underlying'",
        "'ZZZ'",
    )
    # two rows of one contract at different vols
    two = _book_file(tmp_path, "a,SPY,call,600,2026-12-18,1,,0.2,\nb,SPY,call,600,2026-12-18,1,,0.25,\n")
    assert_usage_error(
        run(
            capsys,
            "simulate",
            CALM,
            *SHORT,
            "--book",
            two,
            "--market",
            str(ROOT / "scenarios/examples/market.toml"),
        ),
        "row 2: field 'vol'",
        "one vol",
    )


def test_the_loop_without_the_american_engine_gives_the_loops_figures_to_the_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run with no American option runs ``run_path_european`` (the loop compiled without the
    American engine); ``run_path`` on the same run gives every table and the summary equal."""
    from optmm.sim import _kernels

    cfg = config(flow__arrival_a=0.5, strategy__hedge=True)
    bk, mk = book(), paying(*DIVIDENDS)
    ours = simulate(cfg, book=bk, market=mk, seed=4)
    assert not ours.american.any() and len(ours.fills) > 20
    monkeypatch.setattr(_kernels, "run_path_european", _kernels.run_path)
    full = simulate(cfg, book=bk, market=mk, seed=4)
    for name in ("steps", "underlyings", "fills", "hedges", "quotes", "orders"):
        pd.testing.assert_frame_equal(getattr(ours, name), getattr(full, name), check_exact=True)
    assert {k: v for k, v in ours.summary.items() if k != "wall_s"} == {
        k: v for k, v in full.summary.items() if k != "wall_s"
    }


# -- American options on cash dividends: the finite-difference engine's tables ----------------------


def dividend_market() -> Market:
    """:func:`american_market` with AAA paying cash dividends (on no yield) instead: its American
    options are the finite-difference engine's (one dividend before the book's December expiry, one
    before the January one)."""
    f = _fields(market())
    f["div_yield"] = {"AAA": 0.0, "BBB": 0.0}
    aaa = [(dt.date(2026, 12, 11), 0.6), (dt.date(2027, 1, 8), 0.6), (dt.date(2027, 3, 12), 0.6)]
    return Market(**{**f, "asset": {"AAA": "equity"}, "dividends": {"AAA": aaa}})


def moving_config(steps: int) -> SimConfig:
    """:func:`config` over ``steps`` one-second steps whose AAA jumps (spot and vol, up then down),
    past every band of the tables (``optmm.sim._kernels.FD_*``), with every step's quotes (and fair
    values) recorded."""
    cfg = config(sim__steps=steps, sim__quotes_from_s=0.0, sim__quotes_window_s=float(steps))
    shocks = [{"at_s": 400.0, "spot": 0.04, "vol": 0.03}, {"at_s": 1300.0, "spot": -0.06, "vol": -0.02}]
    return cfg.with_overrides({"underlying.AAA.shock": shocks})


def _engine_prices(st: Start, res: Any, step: int, rows: np.ndarray, accuracy: str = "default") -> np.ndarray:
    """AAA's ``rows`` at ``step`` of path 0 priced afresh: :func:`optmm.greeks.american_price` on the
    dividends still to come, at the path's spot and the loop's vols (smile plus offset)."""
    und = res.underlyings[(res.underlyings["step"] == step) & (res.underlyings["underlying"] == "AAA")]
    s, v = float(und["spot"].iloc[0]), float(und["vol"].iloc[0])
    c = res.config.underlying[0]
    x = np.log(st.strike[rows]) - math.log(s)
    vols = smile_vols(v, c.smile_slope, c.smile_curvature, x, st.vol_offset[rows])
    e = step * res.config.sim.dt_s / (365.0 * 86400.0)
    ex, amt = st.dividends[0]
    return american_price(
        s, st.strike[rows], st.t0_years[rows] - e, c.rate, c.div_yield, vols, st.kind[rows] == K_CALL,
        dividends=(ex[ex > e] - e, amt[ex > e]), accuracy=accuracy,
    )  # fmt: skip


def test_american_options_on_cash_dividends_start_at_the_markets_prices_and_greeks() -> None:
    """At the start the loop's fair values, its Greeks (the book's exposures) and the first step's
    theta P&L are :func:`optmm.pricing.contract_price`'s, :func:`optmm.risk.exposures`' and
    :func:`optmm.pricing.contract_greeks`' (the finite-difference engine's for AAA's contracts)."""
    bk, mk = american_book(), dividend_market()
    st, res, fair = _fair_at_start(config(), bk, mk)
    opt, price, vols = _market_prices(st, mk)
    aaa = opt[st.u[opt] == 0]
    assert st.american[aaa].all() and st.dividends[0][0].size == 3 and st.dividends[1][0].size == 0
    assert fair[opt] == pytest.approx(price, rel=1e-9, abs=1e-12)
    # not the boundary engine's prices on the escrowed spot: the dividends' timing matters
    boundary = american_price(
        SPOT["AAA"] - st.div_pv0[aaa], st.strike[aaa], st.t0_years[aaa], 0.04, 0.0, vols[st.u[opt] == 0],
        st.kind[aaa] == K_CALL,
    )  # fmt: skip
    assert np.abs(fair[aaa] - boundary).max() > 1e-3
    ex = exposures(bk, mk).by_underlying
    und = res.underlyings[(res.underlyings["step"] == 0)].set_index("underlying")
    for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
        assert und.loc["AAA", col] == pytest.approx(ex.loc["AAA", col], rel=1e-9), col
    names = list(st.config.names)
    spot = np.array([mk.spot[n] for n in names])[st.u[opt]]
    args = (st.u[opt], spot, st.strike[opt], st.t0_years[opt], vols, st.kind[opt] == K_CALL, st.american[opt])
    g = pricing.contract_greeks(pricing.carry(mk, names), *args)
    qm = st.position0[opt] * st.mult[opt]
    want = float(np.sum(qm * g.theta)) * res.config.sim.dt_s / (365.0 * 86400.0)
    assert float(res.steps["theta_pnl"].iloc[0]) == pytest.approx(want, rel=1e-9)


def test_american_fair_values_on_cash_dividends_stay_the_engines_as_the_market_moves() -> None:
    """Along a path whose spot and vol jump past the tables' bands and that runs past their hour,
    every 50th step's fair value of every AAA contract is as accurate as a fresh solve of the engine
    at that step's spot, vol and dates: against the engine at its high accuracy (801 x 400 nodes)
    the loop is off by at most twice the worst of the fresh solves (the engine's own discretisation
    error, which the tables keep from their refresh), and by 3e-3 per share at the most; and it is
    within that same bound of the fresh solves."""
    bk, mk = american_book(), dividend_market()
    cfg = moving_config(4000)  # (past the hour after which the tables are made again regardless)
    st = prepare(cfg, bk, mk)
    res = simulate(cfg, book=bk, market=mk)
    aaa = np.flatnonzero((st.u == 0) & (st.kind != K_UNDERLYING))
    vol = res.underlyings[res.underlyings["underlying"] == "AAA"]["vol"]
    assert vol.max() - vol.min() > 0.02  # (the vol band is 0.005: crossed)
    loop_err, fresh_err, loop_fresh = 0.0, 0.0, 0.0
    for step in range(0, 4000, 50):
        loop = res.quotes[res.quotes["step"] == step].set_index("contract")["fair"].loc[aaa].to_numpy()
        fresh = _engine_prices(st, res, step, aaa)
        high = _engine_prices(st, res, step, aaa, "high")
        loop_err = max(loop_err, float(np.abs(loop - high).max()))
        fresh_err = max(fresh_err, float(np.abs(fresh - high).max()))
        loop_fresh = max(loop_fresh, float(np.abs(loop - fresh).max()))
    bound = min(2.0 * fresh_err, 3e-3)
    assert 0.0 < loop_err <= bound and 0.0 < loop_fresh <= bound, (loop_err, fresh_err, loop_fresh)


def _loop_state(cfg: SimConfig, bk: Book, mk: Market, spot: np.ndarray, vol: np.ndarray) -> Any:
    """The loop's state after its market steps over the path ``spot``, ``vol`` (steps x underlyings) and
    the controller's scenario grid at the last step (:func:`optmm.sim._kernels._revalue`), run as the
    loop runs them: (start, run, controller state, workspaces, the American options on cash dividends)."""
    st = prepare(cfg, bk, mk)
    ch = engine._chain(st.config, st)
    run = engine._new_run(st.config, ch, engine._controller(st.config, ch, None, st))
    b = run.base
    ctl = b._replace(cf=b.cf.copy(), ust=b.ust.copy(), cells=b.cells.copy(), stock_cells=b.stock_cells.copy())
    w = workspaces(ch.u.size, len(st.config.underlying), ctl.cf.shape[0], st.config.flow.latency_steps)
    fd = run.fd
    mkt = MarketPath(np.ascontiguousarray(spot), np.ascontiguousarray(vol))
    n = spot.shape[0] - 1
    out = records.new_outputs(n, spot.shape[1], ch.u.size, 0, [16, 16, 16, 16])
    sk._start(run.ins, run.und, mkt, out, w)
    for k in range(n + 1):
        sk._market_step(k, run.ins, run.und, mkt, ctl, run.settings, w, fd)
    sk._revalue(n, run.ins, w.pricing, w.marks, spot[n], ctl, w.grid, run.settings.dt_years, fd)
    return st, run, ctl, w, fd


@pytest.mark.parametrize("moved", [False, True])
def test_the_scenario_cells_of_american_options_on_cash_dividends_are_the_engines(moved: bool) -> None:
    """The risk controller's scenario cells of AAA's contracts (each shock of the default grid: spot
    ±5 %, ±10 %, vol ±5 points) are fresh solves of the engine at the shocked spot and vol, less the
    fair value, to within the engine's accuracy (1e-3 per share), at the start and after the spot and
    vol have moved within the tables' bands; the unshocked cell is 0."""
    bk, mk = american_book(), dividend_market()
    cfg = config()
    n = 300 if moved else 0
    spot = np.tile([SPOT["AAA"], SPOT["BBB"]], (n + 1, 1))
    vol = np.tile([A, 0.3], (n + 1, 1))
    if moved:
        spot[1:, 0] *= np.linspace(1.0, 1.008, n)
        vol[1:, 0] += np.linspace(0.0, 0.003, n)
    st, run, ctl, w, fd = _loop_state(cfg, bk, mk, spot, vol)
    c0 = st.config.underlying[0]
    e = n * st.config.sim.dt_s / (365.0 * 86400.0)
    ex, amt = st.dividends[0]
    aaa = np.flatnonzero((st.u == 0) & (st.kind != K_UNDERLYING))
    contract = run.ins.contract[aaa]
    assert (contract >= 0).all() and (fd.row[aaa] >= 0).all()
    assert ctl.shock_spot.size == 15 and np.unique(ctl.shock_vol).size == 3  # (the default grid)
    zero = np.flatnonzero((ctl.shock_spot == 0.0) & (ctl.shock_vol == 0.0))
    assert zero.size == 1 and (ctl.cf[contract, CCELL + zero[0]] == 0.0).all()
    for g in range(ctl.shock_spot.shape[0]):
        fresh = american_price(
            spot[n, 0] * (1.0 + ctl.shock_spot[g]), st.strike[aaa], st.t0_years[aaa] - e, c0.rate,
            c0.div_yield, np.maximum(w.marks.vol[aaa] + ctl.shock_vol[g], 0.0), st.kind[aaa] == K_CALL,
            dividends=(ex - e, amt),
        )  # fmt: skip
        want = st.mult[aaa] * (fresh - w.marks.price[aaa])
        got = ctl.cf[contract, CCELL + g]
        assert np.abs(got - want).max() <= 1e-3 * st.mult[aaa].max(), (g, np.abs(got - want).max())
    # each contract's bound of a cell's move (the clear-of-limits shortcut) follows its cells
    np.testing.assert_array_equal(ctl.cf[:, CBOUND], np.abs(ctl.cf[:, CCELL:]).max(axis=1))
    assert (ctl.cf[contract, CBOUND] > 0.0).all()


def test_the_bundled_book_starts_at_optmm_risks_exposures() -> None:
    """The bundled example (American options on cash dividends, on a borrow; vol overrides; four
    kinds of surface), started from: at step 0 the loop's Greeks per underlying are :func:`exposures`'
    (``optmm risk``'s), and the start's value is the book's value at the market, each position at its
    own vol (the overrides' too)."""
    bk = Book.load(ROOT / "scenarios/examples/book.csv")
    mk = Market.load(ROOT / "scenarios/examples/market.toml")
    assert bk.has_vol_override.any()
    res = simulate(config(sim__steps=30), book=bk, market=mk)  # (no flow, no hedging, no limits)
    ex = exposures(bk, mk).by_underlying
    und = res.underlyings[(res.underlyings["step"] == 0)].set_index("underlying")
    assert sorted(und.index) == sorted(ex.index)
    for name in ex.index:
        for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
            assert und.loc[name, col] == pytest.approx(ex.loc[name, col], rel=1e-9), (name, col)
    assert res.summary["start"]["initial_value"] == pytest.approx(float(ex["value"].sum()), rel=1e-12)
