"""What flows into the simulator's compiled loop (:mod:`optmm.sim._kernels`), in named groups.

Each group is a ``NamedTuple`` of arrays or of scalars: numba compiles a named tuple as a plain struct
(attribute access is a field load), and two groups of different classes are different types, so an
argument passed in the wrong place fails to compile instead of running wrong. The engine
(:mod:`optmm.sim.engine`) builds them; :func:`workspaces` allocates the loop's scratch, so that the
loop needs no runtime (its arrays are plain views, no reference counting).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from optmm.codes import QuotingCode, SimKind
from optmm.greeks._american import Scheme
from optmm.greeks._american_fd import Grid
from optmm.risk import _controller_kernels as ck
from optmm.sim._fill_kernels import N_FP

# instrument kinds (optmm.codes.SimKind: plain ints, compile-time constants in the loop)
K_PUT, K_CALL, K_UNDERLYING = int(SimKind.PUT), int(SimKind.CALL), int(SimKind.UNDERLYING)
# how quotes are made (Settings.quoting; optmm.codes.QuotingCode)
Q_QUOTER, Q_AS, Q_SYMMETRIC = (
    int(QuotingCode.QUOTER),
    int(QuotingCode.AVELLANEDA_STOIKOV),
    int(QuotingCode.SYMMETRIC),
)
# where the orders come from (Settings.replay): the synthetic flow, a tape's trades, a tape's quotes
R_SYNTHETIC, R_TRADES, R_QUOTES = 0, 1, 2


class Instruments(NamedTuple):
    """The chain, one entry per instrument (underlyings' chains contiguous, in underlying order)."""

    u: np.ndarray  # int64: its underlying's index
    kind: np.ndarray  # int64: K_PUT, K_CALL or K_UNDERLYING
    strike: np.ndarray  # 1.0 for the underlying
    t0_years: np.ndarray  # time to expiry at step 0 (years; 1.0 for the underlying)
    mult: np.ndarray  # contract multiplier (1.0 for the underlying)
    contract: np.ndarray  # int64: the controller's contract row, -1 for the underlying
    u_first: np.ndarray  # int64, per underlying: its first instrument
    u_count: np.ndarray  # int64, per underlying: its number of instruments
    position0: np.ndarray  # the position at step 0 (contracts; 0 but in a run from a book)
    vol_offset: np.ndarray  # added to the smile's vol (decimal; 0 but in a run from a market)
    div_pv0: np.ndarray  # cash dividends before settlement, present value at step 0 (0 but from a market)
    american: np.ndarray  # bool: an American option (False but from a market)
    scheme: Scheme  # the boundary engine's settings (optmm.pricing's: american_greeks' default accuracy)


class Underlyings(NamedTuple):
    """What every path shares, per underlying."""

    rate: np.ndarray  # continuously compounded, annual
    div_yield: np.ndarray  # continuous, annual
    half_spread: np.ndarray  # of the stock's market (currency)
    smile_slope: np.ndarray  # implied vol per unit of log-moneyness ln K - ln S
    smile_curvature: np.ndarray  # implied vol per unit of log-moneyness squared
    arith_vol_per_sqrt_s: np.ndarray  # 0: the spot moves geometrically; else its arithmetic vol


class MarketPath(NamedTuple):
    """One path of the market, ``(steps + 1, underlyings)``."""

    spot: np.ndarray
    vol: np.ndarray  # instantaneous vol (annual)


class Draws(NamedTuple):
    """One path's order-flow draws (uniforms on [0, 1))."""

    arrive: np.ndarray  # (steps, instruments, 2): an order reaches side 0 (our bid) or 1 (our ask)
    size: np.ndarray  # (steps, instruments, 2) float32, or (1, 1, 2) zeros: order sizes
    informed: np.ndarray  # (steps, underlyings): an informed order arrives
    pick: np.ndarray  # (steps, underlyings): the instrument it trades


class Controller(NamedTuple):
    """The risk controller's compiled state (:mod:`optmm.risk._controller_kernels`), updated in place,
    and its scenario grid: the spot and vol shock of every cell."""

    cf: np.ndarray
    ust: np.ndarray
    prm: np.ndarray
    cells: np.ndarray
    stock_cells: np.ndarray
    shock_spot: np.ndarray  # relative
    shock_vol: np.ndarray  # vol points as a fraction (0.01: one point)


class Settings(NamedTuple):
    """The run's scalar settings (from the configuration's [sim], [flow], [strategy], [quoter])."""

    dt_s: float  # a step (seconds)
    dt_years: float  # a step (years)
    arrival_k: float  # order arrival decay per unit of distance from fair value (1 / currency)
    latency_steps: int  # our quotes reach the market this many steps late
    informed_rate_per_s: float  # informed orders per second per underlying
    informed_horizon_steps: int  # how far ahead an informed order sees the fair value
    informed_size: float  # contracts
    informed_leak: float  # the share of the informed orders' foreseen spot move in the hedge's mid
    quoting: int  # Q_QUOTER, Q_AS or Q_SYMMETRIC
    hedge: bool  # run the hedger (the controller's hedges on KILL and HARD run regardless)
    toxicity_pull: bool  # a toxic underlying's quotes are pulled
    as_gamma: float  # Avellaneda-Stoikov risk aversion
    symmetric_spread: float  # the symmetric strategy's total spread (currency)
    quote_size: float  # Avellaneda-Stoikov and symmetric quote size
    horizon_s: float  # the run's horizon (seconds)
    scenario_every_steps: int  # the scenario grid is revalued every this many steps
    skew_sigma_annual: float  # the GREEKS skew's sigma; 0: the path's instantaneous vol
    rv_decay: float  # realized variance's decay per step
    quotes_from_step: int  # the quote window's first step
    quotes_steps: int  # and its length
    toxicity_threshold: float
    order_size_mean: float  # contracts
    a_dt_bid: float  # arrival intensity at fair value times dt, orders that hit our bid
    a_dt_ask: float  # and that lift our ask
    poisson: bool  # fill probability 1 - exp(-lambda dt); else min(lambda dt, 1)
    markout_steps: int  # a fill's markout is taken this many steps after it
    replay: int  # R_SYNTHETIC, R_TRADES or R_QUOTES: the order source


class TapeFeed(NamedTuple):
    """A recorded market's orders on the run's steps (docs/tape.md, "Replay"); a synthetic run passes
    :func:`no_tape` (one compiled loop for both). Trades, in time order: step ``k``'s are ``lo[k] <= j
    < hi[k]``. Quotes: the recorded touch as of each step, per instrument (NaN: none)."""

    lo: np.ndarray  # int64 (steps,)
    hi: np.ndarray  # int64 (steps,)
    inst: np.ndarray  # int64 (trades,): the chain's instrument, -1 for one outside the chain
    price: np.ndarray  # (trades,) per share
    size: np.ndarray  # (trades,) contracts (shares)
    side: np.ndarray  # int64 (trades,): the aggressor, +1 buyer, -1 seller, 0 unknown
    bid: np.ndarray  # (steps, instruments), or (0, instruments) without quote-driven fills
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    fp: np.ndarray  # the quote-driven rule's parameters (optmm.sim._fill_kernels.pack_fill)


def no_tape(n_inst: int) -> TapeFeed:
    """The empty feed of a synthetic run (its arrays of the types a replay's have)."""
    i0, f0, q0 = np.zeros(0, np.int64), np.zeros(0), np.zeros((0, n_inst))
    return TapeFeed(i0, i0, i0, f0, f0, i0, q0, q0, q0, q0, np.ones(N_FP))


class Pricing(NamedTuple):
    """Per instrument: the pricer's inputs at the current step (except the vol, in :class:`Marks`)."""

    spot: np.ndarray  # the escrowed spot: the underlying's less ``div_pv``
    t_years: np.ndarray  # time to expiry
    rate: np.ndarray
    div_yield: np.ndarray
    is_call: np.ndarray  # bool
    ln_strike: np.ndarray  # ln K of the options (the smile's log-moneyness is ln K - ln S)
    div_pv: np.ndarray  # present value of the cash dividends before settlement (Instruments.div_pv0 on)


class Marks(NamedTuple):
    """Per instrument: implied vol, fair value and Greeks (per unit of underlying)."""

    vol: np.ndarray
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray  # per unit of vol
    theta: np.ndarray  # per year


class Quotes(NamedTuple):
    """Per instrument (or per ring slot and instrument): a two-sided quote (size 0: no quote)."""

    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray


class Decisions(NamedTuple):
    """Per instrument: the controller's decision on a quote: layer, size caps, spread factor."""

    layer: np.ndarray
    cap_bid: np.ndarray
    cap_ask: np.ndarray
    spread: np.ndarray


class QuoteInputs(NamedTuple):
    """Per instrument, its underlying's inputs to the quoter (gathered once a step)."""

    book_delta: np.ndarray  # shares
    book_vega: np.ndarray  # per vol point
    skew_sig2: np.ndarray  # the skew's sigma, squared
    skew_s2: np.ndarray  # the skew's spot, squared
    realized_vol: np.ndarray
    toxicity: np.ndarray  # score


class ContractGreeks(NamedTuple):
    """Per instrument: one contract's Greeks in trader units."""

    delta_shares: np.ndarray
    gamma_dollars: np.ndarray  # per 1 % move
    vega_points: np.ndarray  # per vol point


class GridScratch(NamedTuple):
    """Per instrument: one scenario cell's spot, vol and price."""

    spot: np.ndarray
    vol: np.ndarray
    price: np.ndarray


class UnderlyingState(NamedTuple):
    """Per underlying: the loop's own state."""

    prev_spot: np.ndarray  # the previous step's spot
    prev_stock: np.ndarray  # and stock held
    rv2: np.ndarray  # realized variance (annual), exponentially weighted
    next_hedge_s: np.ndarray  # the hedger's next due time (seconds)
    toxicity: np.ndarray  # the step's toxicity score
    skew_sig2: np.ndarray  # the quoter's skew squares
    skew_s2: np.ndarray
    realized_vol: np.ndarray  # sqrt(rv2)
    ln_spot: np.ndarray
    informed_fill: np.ndarray  # 1.0 when an informed order filled on the underlying in this step
    div_growth: np.ndarray  # what a cash dividend's present value has grown by since the start


class Orders(NamedTuple):
    """A step's orders: at most one per instrument and side, and one informed per underlying."""

    inst: np.ndarray  # instrument (as a float)
    side: np.ndarray  # +1: hits our bid (we buy), -1: lifts our ask; 0 for an informed order
    size: np.ndarray  # contracts
    informed: np.ndarray  # 1.0 for an informed order
    future: np.ndarray  # the fair value an informed order foresees
    price: np.ndarray  # a replayed order's fill price; NaN (synthetic orders): our quote's


class CashAmerican(NamedTuple):
    """The American options on cash dividends, priced by the finite-difference engine: which they are,
    the dividends, and per option (``row``) the engine's values on its grids at the last refresh
    (:func:`optmm.greeks._american_fd.tables_py`) and where they were made; scratch. Its own group, not
    in :class:`Instruments` or :class:`Workspaces`: the loop passes those to each of its compiled
    phases, and every array in them adds to every phase's first compilation."""

    row: np.ndarray  # int64 per instrument: an American option on cash dividends, its row below; else -1
    div_ex: np.ndarray  # (underlyings, J): the cash dividends' ex-times (years from step 0; inf: none)
    div_amt: np.ndarray  # (underlyings, J): and amounts (price units per share)
    div_n: np.ndarray  # int64, per underlying: its number of cash dividends
    grid: Grid  # the finite-difference engine's settings (optmm.pricing's: its default accuracy)
    v: np.ndarray  # (n_fd, 3, n_x): today's values at the vol and its two bumps
    x_mid: np.ndarray  # (n_fd,): the grid's centre, ln S*
    dx: np.ndarray  # (n_fd,): its spacing
    sigma: np.ndarray  # (n_fd,): the vol
    step: np.ndarray  # (n_fd,): the step of the refresh (-1: none yet)
    cells: np.ndarray  # (n_fd, vols, 3, width): as v, at each of the scenario grid's vols ...
    cell_sigma: np.ndarray  # (n_fd, vols): ... this vol ...
    cell_dx: np.ndarray  # (n_fd, vols): ... on a grid of this spacing centred on x_mid ...
    cell_n: np.ndarray  # (n_fd, vols): ... of this many nodes (0: none)
    ex_now: np.ndarray  # (underlyings, J): the ex-times from the current step (years)
    ex_at: np.ndarray  # (J,): from another step (an informed order's horizon)


class Workspaces(NamedTuple):
    """The loop's scratch (contents set by it)."""

    pricing: Pricing
    marks: Marks  # the current step's
    prev: Marks  # the previous step's
    wanted: Quotes  # the quoter's quotes, then the step's final ones
    requoted: Quotes  # the quoter's quotes under the controller's decisions
    ring: Quotes  # (latency_steps + 1, instruments): quotes posted, reaching the market later
    free: Decisions  # no decision: NORMAL, no caps, spread factor 1
    decision: Decisions  # the controller's decisions on the wanted quotes
    requote: np.ndarray  # per instrument: 1.0 where a decision changes the quote
    quote_inputs: QuoteInputs
    contract_greeks: ContractGreeks
    grid: GridScratch
    und: UnderlyingState
    last_stat: np.ndarray  # (contracts, 4): each side's last decision status and metric
    aux: np.ndarray  # (NAUX,): the details of the controller's last decision
    layer_info: np.ndarray  # (underlyings, 5): ck.layers_all's rows: layer, trigger, measured, threshold, old
    aggregates: np.ndarray  # (underlyings, 6): the controller's aggregates (ck.aggregate)
    orders: Orders


def workspaces(
    n_inst: int,
    nu: int,
    n_contracts: int,
    latency_steps: int,
    max_orders: int = 0,
) -> Workspaces:
    """Scratch for :func:`optmm.sim._kernels.run_path` on ``n_inst`` instruments, ``nu`` underlyings,
    ``n_contracts`` controller contracts and a quote latency of ``latency_steps`` steps; room for
    ``max_orders`` orders in a step (at least the synthetic flow's most)."""
    wi = np.empty((46, n_inst))  # per instrument rows, one block
    wu = np.zeros((11, nu))
    wo = np.zeros((6, max(2 * n_inst + nu, max_orders)))
    wo[5] = np.nan
    return Workspaces(
        pricing=Pricing(wi[0], wi[1], wi[2], wi[3], np.empty(n_inst, dtype=np.bool_), wi[19], wi[45]),
        marks=Marks(*wi[4:10]),
        prev=Marks(wi[18], *wi[13:18]),
        wanted=Quotes(*wi[20:24]),
        requoted=Quotes(*wi[35:39]),
        ring=Quotes(*np.empty((4, latency_steps + 1, n_inst))),
        free=Decisions(wi[42], wi[43], wi[43], wi[44]),
        decision=Decisions(*wi[24:28]),
        requote=wi[28],
        quote_inputs=QuoteInputs(*wi[29:35]),
        contract_greeks=ContractGreeks(*wi[39:42]),
        grid=GridScratch(*wi[10:13]),
        und=UnderlyingState(*wu),
        last_stat=np.empty((n_contracts, 4)),
        aux=np.zeros(ck.NAUX),
        layer_info=np.empty((nu, ck.N_LAYER_OUT)),
        aggregates=np.empty((nu, 6)),
        orders=Orders(*wo),
    )


def cash_american(
    american: np.ndarray,
    u: np.ndarray,
    dividends: tuple[tuple[np.ndarray, np.ndarray], ...],
    grid: Grid,
    n_vols: int,
    width: int,
) -> CashAmerican:
    """The :class:`CashAmerican` of a run's instruments (``american`` and ``u``, their underlying's
    index, per instrument), each underlying's ``dividends`` (ex-times in years from step 0, amounts),
    the engine's ``grid``, room for ``n_vols`` distinct vol shocks in the scenario grid on grids of at
    most ``width`` nodes. An American option on an underlying with cash dividends gets a row of the
    tables, numbered in order; the other instruments -1."""
    n = np.array([ex.size for ex, _ in dividends], dtype=np.int64)
    on = american & (n[u] > 0 if n.size else False)
    row = np.where(on, np.cumsum(on) - 1, -1).astype(np.int64)
    n_div = int(n.max()) if n.size else 0
    div_ex = np.full((n.size, n_div), np.inf)
    div_amt = np.zeros((n.size, n_div))
    for j, (e, a) in enumerate(dividends):
        div_ex[j, : e.size], div_amt[j, : a.size] = e, a
    n_fd = int(np.sum(on))
    return CashAmerican(
        row=row,
        div_ex=div_ex,
        div_amt=div_amt,
        div_n=n,
        grid=grid,
        v=np.empty((n_fd, 3, grid.n_x)),
        x_mid=np.empty(n_fd),
        dx=np.empty(n_fd),
        sigma=np.empty(n_fd),
        step=np.full(n_fd, -1.0),
        cells=np.empty((n_fd, n_vols, 3, width)),
        cell_sigma=np.empty((n_fd, n_vols)),
        cell_dx=np.empty((n_fd, n_vols)),
        cell_n=np.zeros((n_fd, n_vols)),
        ex_now=np.empty((n.size, n_div)),
        ex_at=np.empty(n_div),
    )
