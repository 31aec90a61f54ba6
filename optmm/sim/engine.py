"""Run a simulation: build the chain, the controller and the draws, run the compiled loop, assemble the
result (:func:`simulate`), or just its summary (:func:`run_summary`, for sweeps).

Draws, in this order, from one ``numpy.random.Generator(PCG64(seed))``: the market paths of every path
(:func:`optmm.sim.paths.draw_paths`), then per path the order flow: arrival uniforms
``(steps, instruments, 2)``, order sizes ``1 + Poisson(order_size_mean − 1)`` of the same shape,
informed-arrival uniforms ``(steps, underlyings)`` and informed instrument picks of that shape. The
draws depend on the chain, the flow and the market, never on the strategy: strategies compared on one
seed meet identical paths and flow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm._config import MAX_SEED
from optmm._progress import Bar
from optmm.book import Book
from optmm.greeks._american_fd import GRIDS
from optmm.greeks.american import _scheme
from optmm.market import Market, Sticky
from optmm.quoting._kernels import pack_hedger, pack_quoter
from optmm.quoting._toxicity_kernels import new_toxicity_state, pack_toxicity
from optmm.quoting.hedger import HedgeReason
from optmm.risk._controller_kernels import CPOS
from optmm.risk._controller_kernels import USTOCK as CUSTOCK
from optmm.risk.audit import AuditTrail, Layer
from optmm.risk.controller import RiskController
from optmm.risk.limits import LimitSet
from optmm.sim import _kernels as sk
from optmm.sim import records as rec
from optmm.sim._groups import (
    K_CALL,
    K_PUT,
    K_UNDERLYING,
    Q_AS,
    Q_QUOTER,
    Q_SYMMETRIC,
    R_QUOTES,
    R_SYNTHETIC,
    R_TRADES,
    CashAmerican,
    Controller,
    Draws,
    Instruments,
    MarketPath,
    Settings,
    TapeFeed,
    Underlyings,
    cash_american,
    no_tape,
    workspaces,
)
from optmm.sim.config import SECONDS_PER_YEAR, TRADING_DAY_S, SimConfig
from optmm.sim.markouts import fair_values, smile_vols
from optmm.sim.paths import draw_paths, uniforms
from optmm.sim.result import ATTRIBUTION, SimResult
from optmm.sim.start import Start, prepare
from optmm.surface import FlatSurface

if TYPE_CHECKING:
    from optmm.sim.tape import Tape

__all__ = ["STRATEGIES", "TRADING_DAY_S", "run_summary", "simulate", "strategy_config"]

RV_HALF_LIFE_S = 300.0
"""Half-life of the realized-vol estimate that widens spreads (``quoter.vol_widen``)."""
VALUATION = np.datetime64("2026-01-05")
"""Nominal date of step 0 (it names contracts in the audit trail; times are counted from it)."""
SESSION_OPEN = VALUATION + np.timedelta64(14 * 3600 + 30 * 60, "s")
"""When step 0 happens on the audit trail's clock: 09:30 New York (14:30 UTC, EST) on VALUATION, so
that ``optmm audit`` shows the simulated session's time of day, not seconds after 1970."""

STRATEGIES: dict[str, dict[str, Any]] = {
    "symmetric": {"quoter.skew": "none"},
    "linear": {"quoter.skew": "linear"},
    "greeks": {"quoter.skew": "greeks"},
    "hedge": {"strategy.hedge": True},
    "no-hedge": {"strategy.hedge": False},
    "pulls": {"strategy.toxicity_pull": True},
    "no-pulls": {"strategy.toxicity_pull": False},
    "as2008": {"strategy.quoting": "avellaneda_stoikov"},
    "as-symmetric": {"strategy.quoting": "symmetric"},
}
"""Named strategies for ``--compare``; ``"greeks+no-hedge"`` combines them, left to right."""

_LAYER_NAMES = np.array([layer.name for layer in sorted(Layer, key=int)], dtype=object)
_REASONS = np.array([r.value for r in HedgeReason], dtype=object)
_NO_LIMITS = {"name": "none", "contract": {"position": 1e12}}


def strategy_config(config: SimConfig, name: str) -> SimConfig:
    """``config`` with the overrides of strategy ``name`` (``"greeks+no-hedge"``: both) and that name.

    Raises
    ------
    ValueError
        An unknown strategy (the message lists the known ones).
    """
    overrides: dict[str, Any] = {}
    for part in name.split("+"):
        if part not in STRATEGIES:
            raise ValueError(f"unknown strategy {part!r} (known: {', '.join(STRATEGIES)}; join with '+')")
        overrides.update(STRATEGIES[part])
    overrides["strategy.name"] = name
    return config.with_overrides(overrides)


@dataclass
class _Chain:
    u: np.ndarray
    kind: np.ndarray
    strike: np.ndarray
    t0: np.ndarray
    mult: np.ndarray
    contract: np.ndarray
    expiry_days: np.ndarray
    u_first: np.ndarray
    u_count: np.ndarray
    position0: np.ndarray
    vol_offset: np.ndarray  # added to the smile's vol (decimal): the market's at the start, else 0
    div_pv0: np.ndarray  # cash dividends before settlement, present value at the start (else 0)
    american: np.ndarray  # bool: an American option (from a market's style, else False)
    dividends: tuple[tuple[np.ndarray, np.ndarray], ...]  # per underlying: ex-times (years), amounts


def _chain(cfg: SimConfig, start: Start | None = None) -> _Chain:
    if start is not None:
        return _Chain(
            u=start.u,
            kind=start.kind,
            strike=start.strike,
            t0=start.t0_years,
            mult=start.mult,
            contract=np.full(start.u.size, -1, dtype=np.int64),
            expiry_days=np.where(start.kind == K_UNDERLYING, np.nan, start.t0_years * 365.0),
            u_first=start.u_first,
            u_count=start.u_count,
            position0=start.position0.copy(),
            vol_offset=start.vol_offset,
            div_pv0=start.div_pv0,
            american=start.american,
            dividends=start.dividends,
        )
    ch = cfg.chain
    rows: list[tuple[int, int, float, float]] = []
    first: list[int] = []
    count: list[int] = []
    for j, und in enumerate(cfg.underlying):
        first.append(len(rows))
        if ch.instrument == "underlying":
            rows.append((j, K_UNDERLYING, math.nan, math.nan))
        else:
            strikes = sorted({round(und.spot * m / ch.strike_step) * ch.strike_step for m in ch.moneyness})
            kinds = [k for k, on in ((K_CALL, ch.calls), (K_PUT, ch.puts)) if on]
            for days in ch.expiries_days:
                for strike in strikes:
                    if strike <= 0.0:
                        raise ValueError(f"[chain] moneyness: a strike of {und.name} rounds to {strike:g}")
                    rows.extend((j, kind, float(strike), float(days)) for kind in kinds)
        count.append(len(rows) - first[-1])
    u = np.array([r[0] for r in rows], dtype=np.int64)
    kind = np.array([r[1] for r in rows], dtype=np.int64)
    strike_a = np.array([r[2] for r in rows], dtype=np.float64)
    days_a = np.array([r[3] for r in rows], dtype=np.float64)
    mult = np.full(len(rows), ch.multiplier if ch.instrument == "options" else 1.0)
    return _Chain(
        u=u,
        kind=kind,
        strike=np.where(kind == K_UNDERLYING, 1.0, strike_a),
        t0=np.where(kind == K_UNDERLYING, 1.0, days_a / 365.0),
        mult=mult,
        contract=np.full(len(rows), -1, dtype=np.int64),
        expiry_days=days_a,
        u_first=np.array(first, dtype=np.int64),
        u_count=np.array(count, dtype=np.int64),
        position0=np.zeros(len(rows)),
        vol_offset=np.zeros(len(rows)),
        div_pv0=np.zeros(len(rows)),
        american=np.zeros(len(rows), dtype=bool),
        dividends=tuple((np.zeros(0), np.zeros(0)) for _ in cfg.underlying),
    )


def _replay(cfg: SimConfig, chain: _Chain, tape: Tape, grid: np.ndarray) -> tuple[Settings, TapeFeed]:
    """A replay's settings and orders: ``tape``'s trades in the chain's instruments, else their quotes,
    filled by the quote-driven rule at the flow's ``arrival_a`` per second (at and inside the touch)
    for at most ``order_size_mean`` a fill (docs/tape.md, "Replay")."""
    from optmm.sim._fill_kernels import pack_fill
    from optmm.sim.tape import replay_orders

    o = replay_orders(tape, grid, cfg.names, chain.u, chain.kind, chain.strike, chain.expiry_days)
    fl = cfg.flow
    fp = pack_fill(fl.arrival_a, fl.arrival_a, cfg.sim.dt_s, fl.order_size_mean)
    feed = TapeFeed(o.lo, o.hi, o.inst, o.price, o.size, o.side, o.bid, o.ask, o.bid_size, o.ask_size, fp)
    mode = {"trades": R_TRADES, "quotes": R_QUOTES, "none": R_TRADES}[o.mode]
    return _settings(cfg)._replace(replay=mode), feed


def run_limits(cfg: SimConfig) -> LimitSet:
    """The run's limits: the configuration's, or none (a position limit no run reaches)."""
    return cfg.limits if cfg.limits is not None else LimitSet.from_dict(_NO_LIMITS, source="<no limits>")


def stock_controller(cfg: SimConfig, audit: AuditTrail | None = None) -> RiskController:
    """The risk controller of a synthetic run before its contracts: the configuration's underlyings at
    its market (spot, rate, carry, a flat vol), in its order (the loop's underlying j is row j)."""
    market = Market(
        valuation=VALUATION,
        spot={u.name: u.spot for u in cfg.underlying},
        rate={u.name: u.rate for u in cfg.underlying},
        div_yield={u.name: u.div_yield for u in cfg.underlying},
        surface={u.name: FlatSurface(u.vol) for u in cfg.underlying},
        sticky=Sticky.STRIKE,
        source="simulation",
    )
    limits = run_limits(cfg)
    return RiskController.for_underlyings(
        list(cfg.names), market, limits, audit=audit, clock=lambda: 0.0, market_ts=0.0
    )


def _controller(
    cfg: SimConfig, chain: _Chain, audit: AuditTrail | None, start: Start | None = None
) -> RiskController:
    if start is not None:
        return _book_controller(cfg, chain, audit, start, run_limits(cfg))
    names = list(cfg.names)
    ctl = stock_controller(cfg, audit)
    opt = np.flatnonzero(chain.kind != K_UNDERLYING)
    for j, name in enumerate(names):
        rows = opt[chain.u[opt] == j]
        if rows.size:
            kinds = np.where(chain.kind[rows] == K_CALL, "call", "put")
            expiry = VALUATION + np.ceil(chain.expiry_days[rows]).astype("timedelta64[D]")
            chain.contract[rows] = ctl.add_contracts(
                name, kinds, chain.strike[rows], expiry, multiplier=cfg.chain.multiplier
            )
    return ctl


def _book_controller(
    cfg: SimConfig, chain: _Chain, audit: AuditTrail | None, start: Start, limits: LimitSet
) -> RiskController:
    """The controller of a run from a book: the start's book (its positions and stock) at the
    start's market; each option of the chain gets its contract row (``chain.contract``)."""
    ctl = RiskController(start.book, start.market, limits, audit=audit, clock=lambda: 0.0, market_ts=0.0)
    if ctl.underlyings != cfg.names:
        raise AssertionError(f"controller underlyings {ctl.underlyings} != the run's {cfg.names}")
    opt = np.flatnonzero(chain.kind != K_UNDERLYING)
    ctl_opt = np.flatnonzero(start.book.is_option)
    assert start.book.settlement is not None
    for j, name in enumerate(cfg.names):
        rows = opt[chain.u[opt] == j]
        if rows.size:
            kinds = np.where(chain.kind[rows] == K_CALL, "call", "put")
            chain.contract[rows] = ctl.add_contracts(
                name, kinds, chain.strike[rows], start.expiry[rows],
                style=np.where(chain.american[rows], "american", "european"),
                settlement=start.book.settlement[ctl_opt[chain.u[opt] == j]],
            )  # fmt: skip
    held = ctl.kernel_state()[0][chain.contract[opt], CPOS]
    if ctl.n_contracts != opt.size or not np.allclose(held, chain.position0[opt], rtol=1e-12, atol=0.0):
        raise AssertionError("the controller's contracts are not the chain's")
    chain.position0[opt] = held  # (the loop's positions are the controller's, bit for bit)
    return ctl


def _as_mean_spread(cfg: SimConfig) -> float:
    """The time average of the Avellaneda–Stoikov total spread over the run's steps (one underlying)."""
    st, und = cfg.strategy, cfg.underlying[0]
    sig2 = und.arith_vol_per_sqrt_s**2
    tau = cfg.horizon_s - np.arange(cfg.sim.steps) * cfg.sim.dt_s
    return float(
        np.mean(st.as_gamma * sig2 * tau + (2.0 / st.as_gamma) * math.log1p(st.as_gamma / cfg.flow.arrival_k))
    )


def _settings(cfg: SimConfig) -> Settings:
    """The loop's scalar settings (:class:`optmm.sim._groups.Settings`), each of its declared type (a
    value of another type would compile the loop again)."""
    dt_s = cfg.sim.dt_s
    fl, st = cfg.flow, cfg.strategy
    every = cfg.limits.scenario_every_s if cfg.limits is not None else math.inf
    sigma = cfg.quoter.sigma_s_annual
    q_from = min(round(cfg.sim.quotes_from_s / dt_s), cfg.sim.steps)
    if st.quoting == "symmetric":
        sym_spread = st.spread if st.spread is not None else _as_mean_spread(cfg)
    else:
        sym_spread = 0.0
    return Settings(
        dt_s=float(dt_s),
        dt_years=float(dt_s / SECONDS_PER_YEAR),
        arrival_k=float(fl.arrival_k),
        latency_steps=int(fl.latency_steps),
        informed_rate_per_s=float(fl.informed_rate),
        informed_horizon_steps=int(max(1, round(fl.informed_horizon_s / dt_s))),
        informed_size=float(fl.informed_size),
        informed_leak=float(fl.informed_leak),
        quoting={"quoter": Q_QUOTER, "avellaneda_stoikov": Q_AS, "symmetric": Q_SYMMETRIC}[st.quoting],
        hedge=bool(st.hedge),
        toxicity_pull=bool(st.toxicity_pull),
        as_gamma=float(st.as_gamma),
        symmetric_spread=float(sym_spread),
        quote_size=float(st.quote_size),
        horizon_s=float(cfg.horizon_s),
        scenario_every_steps=int(
            max(1, min(cfg.sim.steps + 1, round(every / dt_s) if math.isfinite(every) else 10**12))
        ),
        skew_sigma_annual=float(sigma) if sigma is not None else 0.0,
        rv_decay=float(0.5 ** (dt_s / RV_HALF_LIFE_S)),
        quotes_from_step=int(q_from),
        quotes_steps=int(min(round(cfg.sim.quotes_window_s / dt_s), cfg.sim.steps - q_from)),
        toxicity_threshold=float(cfg.toxicity.threshold),
        order_size_mean=float(fl.order_size_mean),
        # A dt per side: orders that hit our bid (sellers), that lift our offer (buyers)
        a_dt_bid=float(max(fl.arrival_a * (1.0 + fl.imbalance), 0.0) * dt_s),
        a_dt_ask=float(max(fl.arrival_a * (1.0 - fl.imbalance), 0.0) * dt_s),
        poisson=fl.fill_model == "poisson",
        markout_steps=round(cfg.sim.markout_s / dt_s),
        replay=R_SYNTHETIC,
    )


def _per_underlying(cfg: SimConfig, name: str) -> np.ndarray:
    """The setting ``name`` of each ``[[underlying]]``, in order, as float64."""
    return np.array([getattr(u, name) for u in cfg.underlying], dtype=np.float64)


def _market_paths(cfg: SimConfig, rng: np.random.Generator, n_paths: int) -> tuple[np.ndarray, np.ndarray]:
    und = cfg.underlying
    dt_s = cfg.sim.dt_s
    shocks = [(max(1, round(s.at_s / dt_s)), j, s.spot, s.vol) for j, u in enumerate(und) for s in u.shock]
    arr = partial(_per_underlying, cfg)
    return draw_paths(
        rng,
        n_paths=n_paths,
        n_steps=cfg.sim.steps,
        dt_years=dt_s / SECONDS_PER_YEAR,
        spot0=arr("spot"),
        vol0=arr("vol"),
        drift=arr("drift"),
        jump_intensity=arr("jump_intensity"),
        jump_mean=arr("jump_mean"),
        jump_std=arr("jump_std"),
        vol_kappa=arr("vol_kappa"),
        vol_theta=arr("vol_theta"),
        vol_of_vol=arr("vol_of_vol"),
        vol_spot_corr=arr("vol_spot_corr"),
        arith_vol=arr("arith_vol_per_sqrt_s") * math.sqrt(SECONDS_PER_YEAR),
        corr=cfg.correlation_matrix(),
        shock_step=np.array([s[0] for s in shocks], dtype=np.int64) if shocks else None,
        shock_underlying=np.array([s[1] for s in shocks], dtype=np.int64) if shocks else None,
        shock_spot=np.array([s[2] for s in shocks]) if shocks else None,
        shock_vol=np.array([s[3] for s in shocks]) if shocks else None,
    )


@dataclass
class _PathOut:
    st: np.ndarray
    un: np.ndarray
    fills: np.ndarray
    hedges: np.ndarray
    events: np.ndarray
    orders: np.ndarray
    qwin: np.ndarray
    pos: np.ndarray
    end: MarketPath  # the market at the last step (spot, vol per underlying)
    mtm: float
    breaches: int
    kills: int


def _underlyings(cfg: SimConfig) -> Underlyings:
    """What every path of a run shares, per underlying."""
    arr = partial(_per_underlying, cfg)
    return Underlyings(
        rate=arr("rate"),
        div_yield=arr("div_yield"),
        half_spread=arr("half_spread"),
        smile_slope=arr("smile_slope"),
        smile_curvature=arr("smile_curvature"),
        arith_vol_per_sqrt_s=arr("arith_vol_per_sqrt_s"),
    )


def _grid_shocks(limits: LimitSet) -> tuple[np.ndarray, np.ndarray]:
    """The scenario grid's spot and vol shock per cell (spot-major)."""
    spot_shocks = np.asarray(limits.scenario_spot, dtype=np.float64)
    vol_shocks = np.asarray(limits.scenario_vol, dtype=np.float64)
    return np.repeat(spot_shocks, vol_shocks.size), np.tile(vol_shocks, spot_shocks.size)


@dataclass
class _Run:
    """What every path of a run shares: the chain, the underlyings, the controller's starting state
    with the scenario grid's shocks (copied for each path), the settings."""

    chain: _Chain
    ins: Instruments
    und: Underlyings
    base: Controller
    settings: Settings
    qp: tuple[float, ...]
    hp: np.ndarray
    tp: np.ndarray
    feed: TapeFeed  # a tape's orders (replay), or none (no_tape)
    fd: CashAmerican  # the American options on cash dividends; their tables, reset for each path


def _new_run(cfg: SimConfig, chain: _Chain, ctl: RiskController) -> _Run:
    """What every path of a run of ``cfg`` on ``chain`` shares, the controller ``ctl``'s starting state
    (a synthetic run's settings and no tape: a replay sets its own)."""
    ch = chain
    base = Controller(*ctl.kernel_state(), *_grid_shocks(ctl.limits))
    grid = GRIDS["default"]  # (optmm.pricing's accuracy: american_greeks' default)
    return _Run(
        chain=ch,
        ins=Instruments(
            ch.u,
            ch.kind,
            ch.strike,
            ch.t0,
            ch.mult,
            ch.contract,
            ch.u_first,
            ch.u_count,
            ch.position0,
            ch.vol_offset,
            ch.div_pv0,
            ch.american,
            _scheme("default"),  # (optmm.pricing's accuracy: american_greeks' default)
        ),
        und=_underlyings(cfg),
        base=base,
        settings=_settings(cfg),
        # (the quoter's settings as a tuple: the loop's quote passes vectorize, sim/_kernels.py)
        qp=tuple(pack_quoter(cfg.quoter).tolist()),
        hp=pack_hedger(cfg.hedger),
        tp=pack_toxicity(cfg.toxicity),
        feed=no_tape(ch.u.size),
        fd=cash_american(
            ch.american,
            ch.u,
            ch.dividends,
            grid,
            np.unique(base.shock_vol).size,
            sk.FD_CELL_WIDTH * (grid.n_x - 1) + 1,
        ),
    )


def _draws(cfg: SimConfig, n_inst: int, rng: np.random.Generator) -> Draws:
    """One path's order-flow draws (the module docstring's order)."""
    n = cfg.sim.steps
    nu = len(cfg.underlying)
    # the flow's uniform draw per (step, instrument, side): an order reaches a quote at distance d from
    # fair value iff the draw is below its probability within the step (the loop: p = 1 - exp(-lambda
    # dt) for "poisson", min(lambda dt, 1) for "linear", lambda = A exp(-k d))
    shape = (n, n_inst, 2)
    arrive = uniforms(rng, shape)  # (rng.random(shape), two threads filling it)
    # order sizes: a uniform per (step, instrument, side), turned into 1 + Poisson(mean - 1) by the
    # loop only where an order arrives
    big = cfg.flow.order_size_mean > 1.0
    size = uniforms(rng, shape, np.float32) if big else np.zeros((1, 1, 2), np.float32)
    informed = rng.random((n, nu))
    return Draws(arrive=arrive, size=size, informed=informed, pick=rng.random((n, nu)))


def _run_path(
    cfg: SimConfig, run: _Run, mkt: MarketPath, rng: np.random.Generator, need_events: bool, value0: float
) -> _PathOut:
    n = cfg.sim.steps
    n_inst = run.chain.u.size
    nu = len(cfg.underlying)
    replay = run.settings.replay
    if replay == R_SYNTHETIC:
        draws = _draws(cfg, n_inst, rng)
    else:  # a replay draws only the quote-driven fills' uniforms
        arrive = uniforms(rng, (n, n_inst, 2)) if replay == R_QUOTES else np.zeros((1, 1, 2))
        none = np.zeros((1, nu))
        draws = Draws(arrive=arrive, size=np.zeros((1, 1, 2), np.float32), informed=none, pick=none)
    per_step = np.diff(np.concatenate([run.feed.lo[:1], run.feed.hi])) if run.feed.hi.size else np.zeros(1)
    caps = [  # (a buffer that overflows is enlarged and the path run again: for a large book, expensive)
        max(1024, 4 * n),
        max(256, n * nu // 2),
        max(256, n // 4) if need_events else 256,
        max(1024, 4 * n),
    ]
    while True:
        b = run.base  # (copied: the loop updates the controller's state in place)
        ctl = b._replace(
            cf=b.cf.copy(),
            ust=b.ust.copy(),
            prm=b.prm.copy(),
            cells=b.cells.copy(),
            stock_cells=b.stock_cells.copy(),
        )
        tox = new_toxicity_state(cfg.toxicity, nu)
        out = rec.new_outputs(n, nu, n_inst, run.settings.quotes_steps, caps)
        ws = workspaces(n_inst, nu, ctl.cf.shape[0], cfg.flow.latency_steps, int(per_step.max()))
        fd = run.fd
        fd.step[:] = -1.0  # (no tables yet: the first step makes them)
        loop = sk.run_path if run.ins.american.any() else sk.run_path_european
        status = loop(
            run.ins,
            run.und,
            mkt,
            draws,
            run.feed,
            ctl,
            tox,
            run.settings,
            run.qp,
            run.hp,
            run.tp,
            out,
            ws,
            fd,
        )
        tally = out.tally[0]
        grow = [
            bool(status & sk.OVER_FILLS),
            bool(status & sk.OVER_HEDGES),
            bool(status & sk.OVER_EVENTS) and need_events,
            bool(status & sk.OVER_ORDERS),
        ]
        if not any(grow):
            break
        counts = (int(tally["fills"]), int(tally["hedges"]), int(tally["events"]), int(tally["orders"]))
        caps = [counts[j] + 16 if g else c for j, (g, c) in enumerate(zip(grow, caps, strict=True))]
    n_ev = min(int(tally["events"]), caps[2])
    stock_end = out.underlyings[-1, :, rec.UN_STOCK]
    return _PathOut(
        st=out.steps,
        un=out.underlyings,
        fills=out.fills[: tally["fills"]],
        hedges=out.hedges[: tally["hedges"]],
        events=out.events[:n_ev],
        orders=out.orders[: tally["orders"]],
        qwin=out.quotes,
        pos=out.position,
        end=MarketPath(mkt.spot[-1], mkt.vol[-1]),
        breaches=int(tally["breaches"]),
        kills=int(tally["kills"]),
        mtm=_mtm(
            run.chain, out.position, float(tally["cash"]), out.fair_end, stock_end, mkt.spot[-1], value0
        ),
    )


def _mtm(
    chain: _Chain,
    pos: np.ndarray,
    cash: float,
    fair_end: np.ndarray,
    stock: np.ndarray,
    spot_end: np.ndarray,
    value0: float,
) -> float:
    """The path's P&L counted independently of the attribution: cash plus the positions at the last
    fair values and the stock at the last spot, less what the book started with (``value0``)."""
    opt = chain.kind != K_UNDERLYING
    end = cash + np.sum(pos[opt] * chain.mult[opt] * fair_end[opt]) + np.sum(stock * spot_end)
    return float(end - value0) if value0 else float(end)


def _initial_value(run: _Run, spot0: np.ndarray, vol0: np.ndarray) -> float:
    """The starting book's value at step 0 (currency): its options at the loop's vols (the smile plus
    each contract's offset: the market's) on the spot less their dividends (``div_pv0``), the American
    ones by their engine (:func:`optmm.sim.markouts.fair_values`), and its stock at the spot.
    ``spot0``, ``vol0``: the paths' first row (the same on every path)."""
    ch, und = run.chain, run.und
    opt = ch.kind != K_UNDERLYING
    u = ch.u[opt]
    s = spot0[u]
    x = np.log(ch.strike[opt]) - np.log(s)
    vol = smile_vols(vol0[u], und.smile_slope[u], und.smile_curvature[u], x, ch.vol_offset[opt])
    args = (
        s - ch.div_pv0[opt],
        ch.strike[opt],
        ch.t0[opt],
        und.rate[u],
        und.div_yield[u],
        vol,
        ch.kind[opt] == K_CALL,
    )
    price = fair_values(args, ch.american[opt], cash=(u, np.zeros(u.size), s, ch.dividends))[0]
    stock = run.base.ust[:-1, CUSTOCK]
    return float(np.sum(ch.position0[opt] * ch.mult[opt] * price) + np.sum(stock * spot0))


def _start_summary(start: Start, value0: float) -> dict[str, Any]:
    """The summary's ``start``: where the run started and the smiles fitted."""
    when = start.market.valuation_time
    return {
        "book": start.book.source,
        "market": start.market.source,
        "valuation": when.isoformat(timespec="seconds") if when is not None else str(start.market.valuation),
        "initial_value": value0,
        "smile_fits": [dataclasses.asdict(f) for f in start.fits],
    }


def _frames(cfg: SimConfig, chain: _Chain, outs: list[_PathOut]) -> dict[str, pd.DataFrame]:
    """The result's tables, built once from the paths' arrays stacked together."""
    n = cfg.sim.steps
    dt = cfg.sim.dt_s
    names = np.array(cfg.names, dtype=object)
    nu = names.size
    n_paths = len(outs)
    kind_names = np.array(["put", "call", "stock"], dtype=object)

    st = np.concatenate([o.st for o in outs])
    path = np.repeat(np.arange(n_paths), n)
    step = np.tile(np.arange(n), n_paths)
    d: dict[str, Any] = {"path": path, "step": step, "time_s": step * dt}
    for col, j in rec.STEP_PNL_COLUMNS:
        d[col] = st[:, j]
    d["cum_pnl"] = np.cumsum(st[:, rec.ST_PNL].reshape(n_paths, n), axis=1).ravel()
    d["delta_shares"] = st[:, rec.ST_BDELTA]
    d["gamma_dollars_1pct"] = st[:, rec.ST_BGAMMA]
    d["vega_per_vol_point"] = st[:, rec.ST_BVEGA]
    d["n_fills"] = st[:, rec.ST_NFILLS].astype(np.int64)
    d["n_quoted"] = st[:, rec.ST_NQUOTED].astype(np.int64)
    steps = pd.DataFrame(d)

    un = np.concatenate([o.un.reshape(n * nu, rec.NUN) for o in outs])
    ustep = np.tile(np.repeat(np.arange(n), nu), n_paths)
    unds = pd.DataFrame(
        {
            "path": np.repeat(np.arange(n_paths), n * nu),
            "step": ustep,
            "time_s": ustep * dt,
            "underlying": np.tile(names, n * n_paths),
            "spot": un[:, rec.UN_SPOT],
            "vol": un[:, rec.UN_VOL],
            "delta_shares": un[:, rec.UN_DELTA],
            "gamma_dollars_1pct": un[:, rec.UN_GAMMA],
            "vega_per_vol_point": un[:, rec.UN_VEGA],
            "stock_shares": un[:, rec.UN_STOCK],
            "layer": _LAYER_NAMES[un[:, rec.UN_LAYER].astype(np.int64)],
            "toxicity_score": un[:, rec.UN_TOX],
        }
    )

    def instrument_rows(step: np.ndarray, inst: np.ndarray) -> dict[str, np.ndarray]:
        """The step, time and instrument columns of rows at ``step`` on instruments ``inst``."""
        return {
            "step": step,
            "time_s": step * dt,
            "underlying": names[chain.u[inst]],
            "contract": inst,
            "kind": kind_names[chain.kind[inst]],
            "strike": np.where(chain.kind[inst] == K_UNDERLYING, np.nan, chain.strike[inst]),
            "expiry_days": chain.expiry_days[inst],
        }

    f = np.concatenate([o.fills for o in outs])
    fpath = np.concatenate([np.full(len(o.fills), p) for p, o in enumerate(outs)]).astype(np.int64)
    fstep = f[:, rec.F_STEP].astype(np.int64)
    inst = f[:, rec.F_INST].astype(np.int64)
    side, size, price, fair = f[:, rec.F_SIDE], f[:, rec.F_SIZE], f[:, rec.F_PRICE], f[:, rec.F_FAIR]
    mult = chain.mult[inst]
    fair_h = f[:, rec.F_FAIR_H]  # the fair value markout_s after each fill (NaN past the last step)
    fills = pd.DataFrame(
        {
            "path": fpath,
            **instrument_rows(fstep, inst),
            "side": side.astype(np.int64),
            "size": size,
            "price": price,
            "fair": fair,
            "spread_capture": side * (fair - price) * size * mult,
            "informed": f[:, rec.F_INFORMED] != 0.0,
            "markout": side * (fair_h - price) * size * mult,
        }
    )

    hh = np.concatenate([o.hedges for o in outs])
    hpath = np.concatenate([np.full(len(o.hedges), p) for p, o in enumerate(outs)]).astype(np.int64)
    hstep = hh[:, rec.H_STEP].astype(np.int64)
    hedges = pd.DataFrame(
        {
            "path": hpath,
            "step": hstep,
            "time_s": hstep * dt,
            "underlying": names[hh[:, rec.H_U].astype(np.int64)],
            "shares": hh[:, rec.H_SHARES],
            "price": hh[:, rec.H_PRICE],
            "mid": hh[:, rec.H_MID],
            "cost": hh[:, rec.H_COST],
            "reason": _REASONS[hh[:, rec.H_REASON].astype(np.int64)],
        }
    )

    q = outs[0].qwin
    q_from = min(round(cfg.sim.quotes_from_s / dt), n)
    nq, n_inst = q.shape[0], q.shape[1]
    qstep = np.repeat(np.arange(q_from, q_from + nq), n_inst)
    quotes = pd.DataFrame(
        {
            "step": qstep,
            "time_s": qstep * dt,
            "contract": np.tile(np.arange(n_inst), nq),
            "fair": q[:, :, rec.QW_FAIR].ravel(),
            "bid": q[:, :, rec.QW_BID].ravel(),
            "ask": q[:, :, rec.QW_ASK].ravel(),
            "bid_size": q[:, :, rec.QW_BSIZE].ravel(),
            "ask_size": q[:, :, rec.QW_ASIZE].ravel(),
        }
    )
    o = outs[0].orders  # (path 0's, as the quotes: what a recorded tape holds)
    orders = pd.DataFrame(
        {
            "path": np.zeros(len(o), dtype=np.int64),
            **instrument_rows(o[:, rec.O_STEP].astype(np.int64), o[:, rec.O_INST].astype(np.int64)),
            "side": o[:, rec.O_SIDE].astype(np.int64),
            "size": o[:, rec.O_SIZE],
            "price": o[:, rec.O_PRICE],
        }
    )
    market_end = pd.DataFrame(
        {
            "path": np.repeat(np.arange(n_paths), nu),
            "step": n,
            "underlying": np.tile(names, n_paths),
            "spot": np.concatenate([o.end.spot for o in outs]),
            "vol": np.concatenate([o.end.vol for o in outs]),
        }
    )
    return {
        "steps": steps,
        "underlyings": unds,
        "fills": fills,
        "hedges": hedges,
        "quotes": quotes,
        "orders": orders,
        "market_end": market_end,
    }


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else math.nan


def _summary(
    cfg: SimConfig, seed: int, frames: dict[str, pd.DataFrame], outs: list[_PathOut], wall_s: float
) -> dict[str, Any]:
    steps, fills = frames["steps"], frames["fills"]
    n_paths = len(outs)
    by_path = steps.groupby("path", sort=True)
    totals = by_path["pnl"].sum().to_numpy()
    days = cfg.horizon_s / TRADING_DAY_S
    # Sharpe: mean over standard deviation of the paths' totals; one path: of its days' P&L (whole
    # 23,400-s days of simulated time, at least two); else undefined
    day_steps = round(TRADING_DAY_S / cfg.sim.dt_s)
    if n_paths > 1:
        sample = totals
    elif cfg.sim.steps >= 2 * day_steps:
        n_days = cfg.sim.steps // day_steps
        sample = steps["pnl"].to_numpy()[: n_days * day_steps].reshape(n_days, day_steps).sum(axis=1)
    else:
        sample = np.zeros(0)
    sd = _std(sample)
    sharpe = float(np.mean(sample) / sd) if sd > 0 else math.nan
    attribution = {c: float(by_path[c].sum().mean()) for c in ATTRIBUTION}
    # the layers from the paths' arrays (the table's column holds their names)
    code = np.stack([o.un[:, :, rec.UN_LAYER] for o in outs]).astype(np.int64)  # (path, step, underlying)
    counts = np.bincount(code.ravel(), minlength=len(Layer))
    time_in_layer = {layer.name: float(counts[int(layer)] / code.size) for layer in sorted(Layer, key=int)}
    prev = np.concatenate([np.full((n_paths, 1, code.shape[2]), int(Layer.NORMAL)), code[:, :-1]], axis=1)
    pulls = int(np.sum((code <= int(Layer.STALE)) & (prev > int(Layer.STALE))))
    kills = sum(o.kills for o in outs)
    quoted = float(steps["n_quoted"].sum())
    mk = fills["markout"].to_numpy()
    final_inv = np.array([o.pos.sum() for o in outs])
    out: dict[str, Any] = {
        "config_hash": cfg.content_hash,
        "seed": int(seed),
        "strategy": cfg.strategy.name,
        "paths": n_paths,
        "steps": cfg.sim.steps,
        "dt_s": cfg.sim.dt_s,
        "total_pnl_mean": float(np.mean(totals)),
        "total_pnl_std": _std(totals),
        "pnl_per_day_mean": float(np.mean(totals) / days),
        "sharpe": sharpe,
        "attribution": attribution,
        "time_in_layer": time_in_layer,
        "fill_rate": float(len(fills) / quoted) if quoted else math.nan,
        "fills": len(fills),
        "fill_price_markout_loss_rate": float(np.mean(mk[np.isfinite(mk)] < 0.0))
        if np.isfinite(mk).any()
        else math.nan,
        "markout_total": float(np.nansum(mk) / n_paths),
        "adverse_selection_total": float(np.nansum(mk - fills["spread_capture"].to_numpy()) / n_paths),
        "total_pnl_mtm_mean": float(np.mean([o.mtm for o in outs])),
        "pulls": pulls,
        "kill_events": kills,
        "own_fill_breaches": int(sum(o.breaches for o in outs)),
        "final_inventory_mean": float(np.mean(final_inv)),
        "final_inventory_std": _std(final_inv),
        "wall_s": wall_s,
    }
    for col in ("delta_shares", "gamma_dollars_1pct", "vega_per_vol_point"):
        a = np.abs(steps[col].to_numpy())
        out[f"max_abs_{col}"] = float(a.max())
        out[f"mean_abs_{col}"] = float(a.mean())
    return out


def simulate(
    config: SimConfig,
    *,
    seed: int | None = None,
    paths: int | None = None,
    progress: bool | Bar = False,
    audit: AuditTrail | None = None,
    strategy: str | None = None,
    book: Book | None = None,
    market: Market | None = None,
    tape: Tape | None = None,
) -> SimResult:
    """Run ``config`` (``paths`` paths from ``seed``; defaults from ``[sim]``), from a flat inventory
    on its own chain and underlyings, or from ``book`` at ``market``; on synthetic markets or replaying
    ``tape``.

    Parameters
    ----------
    config : SimConfig
    seed, paths : int, optional
        Override ``[sim] seed`` and ``paths``.
    progress : bool or optmm._progress.Bar
        A progress bar of the steps run on stderr (advanced a path at a time), or the caller's bar
        to advance (left open).
    audit : AuditTrail, optional
        Where the controller's events go (times: the simulated session's clock, step 0 at
        :data:`SESSION_OPEN`, 09:30 New York on the nominal date, or a replayed tape's first record;
        with several paths every detail starts with ``"path N; "``).
    strategy : str, optional
        A named strategy (:data:`STRATEGIES`) applied to ``config`` first.
    book, market : Book and Market, optional
        Both or neither: start every path holding the book's positions (options and stock), quoting
        its option contracts and ``[chain]`` around the market's spots, with the market's spots,
        rates, carry, valuation moment and a smile fitted to its surfaces
        (:mod:`optmm.sim.start`); the dynamics come from ``config``. The summary's ``start`` says
        what was fitted; the result's ``config`` is the configuration run (the book's underlyings).
    tape : optmm.sim.tape.Tape, optional
        Replay this recorded market (docs/tape.md, "Replay"): its mids and vol levels are the market,
        its trades (else its quotes) the orders; steps of ``[sim] dt_s`` from its first record, as
        many as fit, at most ``[sim] steps`` (the result's config says how many ran). Paths differ
        only by the quote-driven fills' draws. Not with ``book``: a replay starts flat on the config's
        chain.

    Returns
    -------
    SimResult

    Raises
    ------
    ValueError
        Bad arguments (a tape with a book); a :class:`~optmm.book.BookError` for a book the simulator
        cannot start from; a tape that does not fit the configuration (no underlying of it, shorter
        than a step, ...; the message names the tape).
    """
    if (book is None) != (market is None):
        raise ValueError("simulate: give book and market together (or neither)")
    if tape is not None and book is not None:
        raise ValueError(
            "simulate: a replay starts flat on the config's chain: give a tape or a book, not both"
        )
    cfg = strategy_config(config, strategy) if strategy else config
    start = prepare(cfg, book, market) if book is not None and market is not None else None
    if start is not None:
        cfg = start.config
    seed = cfg.sim.seed if seed is None else int(seed)
    n_paths = cfg.sim.paths if paths is None else int(paths)
    if n_paths < 1 or not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"simulate: paths must be >= 1 and seed >= 0 and <= {MAX_SEED} (got paths={n_paths}, seed={seed})"
        )
    t0 = time.perf_counter()
    if tape is not None:
        from optmm.sim.tape import replay_market

        grid, t_spot, t_vol = replay_market(tape, cfg.names, cfg.sim.dt_s, cfg.sim.steps)
        if grid.size - 1 < cfg.sim.steps:
            cfg = cfg.with_overrides({"sim.steps": grid.size - 1})
    cfg.check_size(n_paths)
    chain = _chain(cfg, start)
    ctl = _controller(cfg, chain, audit, start)
    ch = chain
    run = _new_run(cfg, ch, ctl)
    rng = np.random.Generator(np.random.PCG64(seed))
    if tape is None:
        spot, vol = _market_paths(cfg, rng, n_paths)
        open_s = float(SESSION_OPEN.astype("datetime64[s]").astype(np.int64))  # epoch seconds
    else:
        spot = np.repeat(t_spot[None], n_paths, axis=0)
        t_vol = np.where(np.isnan(t_vol), [u.vol for u in cfg.underlying], t_vol)  # the config's before any
        vol = np.repeat(t_vol[None], n_paths, axis=0)
        run.settings, run.feed = _replay(cfg, ch, tape, grid)
        open_s = float(grid[0]) / 1e9
    outs = []
    if start is not None:
        open_s = start.market.valuation_time.timestamp()  # type: ignore[union-attr]
    value0 = _initial_value(run, spot[0, 0], vol[0, 0]) if start is not None else 0.0
    with (
        nullcontext(progress)
        if isinstance(progress, Bar)
        else Bar(n_paths * cfg.sim.steps, desc=cfg.strategy.name, unit="step", enabled=progress)
    ) as bar:
        for p in range(n_paths):
            bar.phase(f"{cfg.strategy.name}: path {p + 1}/{n_paths}")
            o = _run_path(cfg, run, MarketPath(spot[p], vol[p]), rng, audit is not None, value0)
            if audit is not None:
                times = open_s + o.events[:, rec.E_STEP] * cfg.sim.dt_s
                ctl.replay_events(o.events, times, detail_prefix=f"path {p}; " if n_paths > 1 else "")
            outs.append(o)
            bar.update(cfg.sim.steps)
    if audit is not None:
        audit.flush()
    frames = _frames(cfg, chain, outs)
    wall = time.perf_counter() - t0
    summary = _summary(cfg, seed, frames, outs, wall)
    if start is not None:
        summary["start"] = _start_summary(start, value0)
    return SimResult(
        config=cfg,
        seed=seed,
        strategy=cfg.strategy.name,
        summary=summary,
        vol_offset=ch.vol_offset,
        div_pv0=ch.div_pv0,
        american=ch.american,
        dividends=ch.dividends,
        **frames,
    )


def run_summary(config: SimConfig, seed: int) -> dict[str, Any]:
    """One path of ``config`` from ``seed``: its summary only (deterministic in config and seed; for
    sweeps). ``wall_s`` is left out so that equal inputs give equal outputs."""
    res = simulate(config, seed=seed, paths=1)
    out = dict(res.summary)
    out.pop("wall_s", None)
    return out
