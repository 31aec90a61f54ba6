"""The delta hedger: when and how much of the underlying to trade so that the book's delta stays bounded.

A :class:`DeltaHedger` is asked, per underlying and per step, :meth:`DeltaHedger.decide` with the book's
*net* delta in shares (options **plus** the shares already held as hedges), its dollar gamma, the spot
and the underlying's quote. It answers with a :class:`HedgeOrder` (signed shares in whole lots) or
``None``. :meth:`DeltaHedger.execute` fills an order under a simple cost model and books the fill;
:meth:`DeltaHedger.report` separates the hedges' mark-to-market P&L from what they cost.

When to trade (:class:`HedgeMode`)
----------------------------------
``FIXED_BAND``
    Trade when \\|delta\\| > ``band_shares``.
``WHALLEY_WILMOTT``
    Trade when \\|delta\\| > the Whalley–Wilmott half-width computed from the book's gamma and the cost
    of trading (:func:`ww_band_shares`), floored at ``min_band_shares`` and capped at ``max_band_shares``.
``TIME``
    Trade every ``interval_s`` seconds whatever the band: at each scheduled time bring delta to the
    target (``ZERO``: flatten; ``BAND_EDGE``: back inside ``band_shares``, which is no trade when already
    inside); never between scheduled times.

Where to trade to (:class:`HedgeTarget`): ``BAND_EDGE`` trades just back inside the band (the least
trading, the Whalley–Wilmott optimum for proportional costs), ``ZERO`` flattens delta.

The controller's layer overrides the mode: ``KILL`` flattens delta to 0 now (nearest whole lot, ignoring
``min_trade_shares``); ``HARD`` hedges now to ``hard_target`` (default ``ZERO``) whatever the band or
schedule; ``TOXIC`` and ``STALE`` hedge as normal — the quotes are pulled, and the hedger is how the risk
leaves the book.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from optmm._config import Config, setting
from optmm.codes import HedgeReasonCode
from optmm.quoting._kernels import (
    hedge_band_py,
    hedge_decide_py,
    hedge_fill_py,
    pack_hedger,
    ww_band_py,
)
from optmm.risk.audit import Layer, parse_layer
from optmm.risk.controller import underlying_row

__all__ = [
    "DeltaHedger",
    "HedgeFill",
    "HedgeMode",
    "HedgeOrder",
    "HedgeReason",
    "HedgeReport",
    "HedgeTarget",
    "HedgerConfig",
    "ww_band_shares",
]


class HedgeMode(enum.Enum):
    """When the hedger trades (see the module docstring)."""

    FIXED_BAND = "fixed_band"
    WHALLEY_WILMOTT = "whalley_wilmott"
    TIME = "time"


class HedgeTarget(enum.Enum):
    """Where a hedge takes delta: just back inside the band, or to zero."""

    BAND_EDGE = "band_edge"
    ZERO = "zero"


class HedgeReason(enum.Enum):
    """Why an order was sent."""

    BAND = "band"  # delta outside the band (FIXED_BAND, WHALLEY_WILMOTT)
    SCHEDULE = "schedule"  # TIME mode, a scheduled hedge
    HARD = "hard"  # controller layer HARD
    KILL = "kill"  # controller layer KILL: flatten


@dataclass(frozen=True, kw_only=True)
class HedgerConfig(Config):
    """Settings of a :class:`DeltaHedger`; frozen, validated at construction, round-trips to TOML/JSON.

    Attributes
    ----------
    mode : HedgeMode
        When to trade (``FIXED_BAND``, ``WHALLEY_WILMOTT``, ``TIME``).
    target : HedgeTarget
        Where a band or scheduled hedge takes delta (``BAND_EDGE`` or ``ZERO``).
    hard_target : HedgeTarget
        Where a hedge forced by the controller's ``HARD`` layer takes delta (default ``ZERO``).
    band_shares : float
        Half-width of the no-trade band in shares (``FIXED_BAND``; ``TIME`` with ``BAND_EDGE``), > 0.
    ww_cost_per_share : float
        Whalley–Wilmott: the cost of trading one share, in currency (λ·S, with λ the proportional cost
        rate), > 0.
    ww_risk_aversion : float
        Whalley–Wilmott: γ, the absolute risk aversion, per unit of currency, > 0.
    min_band_shares, max_band_shares : float
        Floor and cap of the Whalley–Wilmott half-width in shares; 0 <= min <= max, max > 0.
    interval_s : float
        ``TIME``: seconds between scheduled hedges, > 0.
    slippage_bps : float
        Price paid beyond the touch (or beyond mid ± half-spread), in basis points of mid, >= 0.
    use_market_spread : bool
        True: buy at the ask and sell at the bid (half-spread = (ask - bid)/2). False: buy at
        mid + ``half_spread_bps``, sell at mid - ``half_spread_bps``.
    half_spread_bps : float
        The modelled half-spread in basis points of mid when ``use_market_spread`` is False, >= 0.
    min_trade_shares : float
        No order smaller than this (in absolute shares), >= 0.
    lot_size : int
        Orders are whole multiples of this many shares, >= 1.
    content_hash : str
        sha256 of the canonical JSON of :meth:`to_dict`; equal settings, equal hash.
    """

    _toml_table: ClassVar[str | None] = "hedger"  # files may nest the settings under [hedger]

    mode: HedgeMode = HedgeMode.FIXED_BAND
    target: HedgeTarget = HedgeTarget.BAND_EDGE
    hard_target: HedgeTarget = HedgeTarget.ZERO
    band_shares: float = setting(500.0, gt=0, unit="shares")
    ww_cost_per_share: float = setting(0.01, gt=0)
    ww_risk_aversion: float = setting(1e-5, gt=0)
    min_band_shares: float = setting(100.0, ge=0, unit="shares")
    max_band_shares: float = setting(5000.0, gt=0, unit="shares")
    interval_s: float = setting(60.0, gt=0, unit="s")
    slippage_bps: float = setting(0.5, ge=0, unit="bps")
    use_market_spread: bool = True
    half_spread_bps: float = setting(1.0, ge=0, unit="bps")
    min_trade_shares: float = setting(0.0, ge=0, unit="shares")
    lot_size: int = setting(1, ge=1)

    def __repr__(self) -> str:
        return self.short_repr()

    def check(self) -> None:
        if self.min_band_shares > self.max_band_shares:
            raise ValueError(
                f"HedgerConfig.min_band_shares: must be <= max_band_shares "
                f"(got {self.min_band_shares!r} > {self.max_band_shares!r})"
            )


def ww_band_shares(
    gamma_dollars_1pct: ArrayLike,
    spot: ArrayLike,
    *,
    cost_per_share: float,
    risk_aversion: float,
    min_band: float = 0.0,
    max_band: float = math.inf,
) -> NDArray[np.float64]:
    """Whalley–Wilmott no-trade half-width in shares, vectorised.

    Parameters
    ----------
    gamma_dollars_1pct : array_like of float
        The book's dollar gamma per 1% move (currency): change of delta·S for a 1% spot move, Γ·S²/100.
    spot : array_like of float
        Spot S, > 0 (currency per share).
    cost_per_share : float
        λ·S, the cost of trading one share (currency), with λ the proportional cost rate.
    risk_aversion : float
        γ, absolute risk aversion (per unit of currency), > 0.
    min_band, max_band : float
        Floor and cap of the result (shares).

    Returns
    -------
    ndarray of float64
        The half-width H in shares, of the broadcast shape, ``clip(H, min_band, max_band)``.

    Notes
    -----
    Whalley & Wilmott (1997), asymptotic for small proportional costs, exponential utility:

    .. math:: H = \\left(\\frac{3\\, e^{-r(T-t)}\\, \\lambda S\\, \\Gamma^2}{2\\gamma}\\right)^{1/3}

    with Γ = ∂Δ/∂S the book's gamma in shares per unit of S (shares² per currency), recovered from the
    dollar gamma as Γ = 100·gamma_dollars_1pct/S². Units: λS [currency/share]·Γ² [share⁴/currency²]/γ
    [1/currency] = share³, so H is in shares. The discount factor e^{-r(T-t)} is taken as 1: the hedging
    horizon is seconds to days, where it differs from 1 by far less than the asymptotic approximation's
    own error. The band grows like the book's size to the power 2/3 and vanishes with gamma, hence the
    floor; the cap bounds it where the small-cost asymptotics fail (tiny γ).

    Examples
    --------
    >>> float(ww_band_shares(50_000.0, 500.0, cost_per_share=0.01, risk_aversion=1e-5).round(3))
    84.343
    """
    g = np.asarray(gamma_dollars_1pct, dtype=np.float64)
    s = np.asarray(spot, dtype=np.float64)
    return ww_band_py(g, s, 3.0 * cost_per_share, 2.0 * risk_aversion, min_band, max_band)


@dataclass(frozen=True, slots=True)
class HedgeOrder:
    """A hedge the hedger wants done.

    Attributes
    ----------
    underlying : str
    shares : float
        Signed shares, a nonzero whole number of lots (> 0 buy, < 0 sell).
    expected_price : float
        Where it is expected to fill (buy: ask + slippage, sell: bid - slippage; or mid ± modelled
        half-spread ± slippage), currency per share. A limit price for a marketable order.
    reason : HedgeReason
    layer : Layer
        The controller's layer at the decision.
    now : float
        Decision time, seconds.
    delta_before, delta_after : float
        Net delta in shares before the order and after it fills.
    band_shares : float
        The no-trade half-width in force (shares); ``nan`` for ``KILL``.
    """

    underlying: str
    shares: float
    expected_price: float
    reason: HedgeReason
    layer: Layer
    now: float
    delta_before: float
    delta_after: float
    band_shares: float


@dataclass(frozen=True, slots=True)
class HedgeFill:
    """A filled hedge.

    ``price = mid + sign·(half_spread + slippage)``; ``spread_cost = |shares|·half_spread`` and
    ``slippage_cost = |shares|·slippage`` exactly (currency); half-spread and slippage are per share.
    """

    underlying: str
    now: float
    shares: float
    price: float
    mid: float
    half_spread: float
    slippage: float
    spread_cost: float
    slippage_cost: float
    reason: HedgeReason


@dataclass(frozen=True, slots=True)
class HedgeReport:
    """What the hedges did and cost (for one underlying or all of them).

    Attributes
    ----------
    count : int
        Number of fills.
    shares_traded : float
        Sum of \\|shares\\|.
    net_shares : float
        The hedge position, signed shares.
    spread_cost, slippage_cost, total_cost : float
        Currency paid crossing the half-spread, in slippage, and their sum (all >= 0).
    gross_pnl : float
        Mark-to-market P&L of the hedge shares as if each had filled at mid: Σ shares·(mark - mid).
    net_pnl : float
        ``gross_pnl - total_cost``.
    config_hash : str
        The hedger config's content hash.
    """

    count: int
    shares_traded: float
    net_shares: float
    spread_cost: float
    slippage_cost: float
    total_cost: float
    gross_pnl: float
    net_pnl: float
    config_hash: str


_REASONS = {int(c): HedgeReason[c.name] for c in HedgeReasonCode if c is not HedgeReasonCode.NONE}  # by code


def _check_finite(name: str, value: float, *, positive: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0.0):
        raise ValueError(
            f"DeltaHedger: {name} must be finite{' and > 0' if positive else ''} (got {value!r})"
        )
    return v


class DeltaHedger:
    """Keeps each underlying's net delta inside a no-trade band (see the module docstring).

    Parameters
    ----------
    config : HedgerConfig

    Notes
    -----
    ``delta_shares`` passed to :meth:`decide` is the book's net delta *including* the hedge shares
    already held (the caller's book owns the stock position); the hedger's own position from
    :meth:`execute` is kept only for :meth:`report`. An order not executed is not remembered: the next
    decision sees the same delta and asks again.

    Lot rounding: among whole-lot trades of at least ``min_trade_shares`` that land inside the band, the
    one nearest the ideal trade (to the band edge or to zero) is chosen — with ``BAND_EDGE`` the
    smallest trade that gets back inside. If no such trade exists (lots coarser than the band), the
    whole-lot trade that brings delta nearest zero is sent if it reduces abs(delta) and is at least
    ``min_trade_shares``; the band then cannot be kept, and ``lot_size <= 2·band`` is the caller's to
    choose.
    """

    def __init__(self, config: HedgerConfig) -> None:
        if not isinstance(config, HedgerConfig):
            raise TypeError(f"DeltaHedger: config must be a HedgerConfig (got {type(config).__name__})")
        self.config = config
        self._hp = tuple(pack_hedger(config).tolist())  # the rules' settings (optmm.quoting._kernels)
        self._next_due: dict[str, float] = {}
        self._fills: list[HedgeFill] = []
        self._last_mid: dict[str, float] = {}

    def __repr__(self) -> str:
        c = self.config
        return (
            f"DeltaHedger(mode={c.mode.value}, target={c.target.value}, lot_size={c.lot_size}, "
            f"{len(self._fills)} fills, config {c.content_hash[:8]})"
        )

    # -- the band -------------------------------------------------------------------------------------
    def band_shares(self, gamma_dollars_1pct: float, spot: float) -> float:
        """The no-trade half-width in shares for the configured mode."""
        return float(hedge_band_py(gamma_dollars_1pct, spot, self._hp))

    # -- the decision ---------------------------------------------------------------------------------
    def decide(
        self,
        underlying: str,
        delta_shares: float,
        gamma_dollars_1pct: float,
        spot: float,
        bid: float,
        ask: float,
        now: float,
        *,
        layer: Layer = Layer.NORMAL,
    ) -> HedgeOrder | None:
        """Decide whether, and how much, to hedge one underlying now.

        Validates the inputs and runs the rule the simulator runs compiled
        (:func:`optmm.quoting._kernels.hedge_decide_py`), keeping the ``TIME`` schedule per underlying.

        Parameters
        ----------
        underlying : str
        delta_shares : float
            Net delta in shares, options plus hedge shares held.
        gamma_dollars_1pct : float
            The book's dollar gamma per 1% move in this underlying (currency); used by ``WHALLEY_WILMOTT``.
        spot : float
            Spot, > 0 (currency per share).
        bid, ask : float
            The underlying's touch, 0 < bid <= ask (used for the expected price).
        now : float
            Seconds (``TIME`` schedules on it).
        layer : Layer
            The controller's layer for this underlying: ``KILL`` flattens, ``HARD`` hedges now to
            ``hard_target``, anything else hedges per the mode.

        Returns
        -------
        HedgeOrder or None
            None when no trade is due (inside the band, not scheduled, or below one lot /
            ``min_trade_shares``).
        """
        delta = _check_finite("delta_shares", delta_shares)
        gamma = _check_finite("gamma_dollars_1pct", gamma_dollars_1pct)
        spot = _check_finite("spot", spot, positive=True)
        bid = _check_finite("bid", bid, positive=True)
        ask = _check_finite("ask", ask, positive=True)
        now = _check_finite("now", now)
        if bid > ask:
            raise ValueError(f"DeltaHedger: bid {bid!r} > ask {ask!r}")
        layer = Layer(layer)
        self._last_mid[underlying] = 0.5 * (bid + ask)
        due = self._next_due.get(underlying, -math.inf)
        q, price, band, reason, due_after = hedge_decide_py(
            delta, gamma, spot, bid, ask, now, int(layer), due, self._hp
        )
        if due_after != due:
            self._next_due[underlying] = due_after
        if q == 0.0:
            return None
        return HedgeOrder(
            underlying=underlying,
            shares=float(q),
            expected_price=float(price),
            reason=_REASONS[reason],
            layer=layer,
            now=now,
            delta_before=delta,
            delta_after=float(delta + q),
            band_shares=float(band),
        )

    def decide_with(
        self, controller: Any, underlying: str, bid: float, ask: float, now: float
    ) -> HedgeOrder | None:
        """:meth:`decide` with the underlying's net ``delta_shares``, ``gamma_dollars_1pct``, spot and
        layer taken from a :class:`~optmm.risk.controller.RiskController` (its ``state()``): the spot
        the controller's limits and the quoter see, not a copy of it.

        Raises
        ------
        KeyError
            The controller does not know ``underlying``.
        """
        row = underlying_row(controller.state(), underlying)
        return self.decide(
            underlying,
            float(row["delta_shares"]),
            float(row["gamma_dollars_1pct"]),
            float(row["spot"]),
            bid,
            ask,
            now,
            layer=parse_layer(row["layer"]),
        )

    # -- execution and accounting -------------------------------------------------------------------
    def execute(self, order: HedgeOrder, mid: float, spread: float, *, now: float | None = None) -> HedgeFill:
        """Fill ``order`` at ``mid ± (half-spread + slippage)`` and book it.

        Parameters
        ----------
        order : HedgeOrder
        mid : float
            The underlying's mid at the fill, > 0.
        spread : float
            Its full bid-ask spread (ask - bid), >= 0; half of it is paid when ``use_market_spread``.
        now : float, optional
            Fill time; default the order's.

        Returns
        -------
        HedgeFill
            With ``spread_cost = |shares|·half_spread`` and ``slippage_cost = |shares|·slippage``.
        """
        mid = _check_finite("mid", mid, positive=True)
        spread = _check_finite("spread", spread)
        if spread < 0.0:
            raise ValueError(f"DeltaHedger: spread must be >= 0 (got {spread!r})")
        q = order.shares
        price, half, slip = hedge_fill_py(q, mid, spread, self._hp)
        fill = HedgeFill(
            underlying=order.underlying,
            now=order.now if now is None else float(now),
            shares=q,
            price=float(price),
            mid=mid,
            half_spread=float(half),
            slippage=float(slip),
            spread_cost=float(abs(q) * half),
            slippage_cost=float(abs(q) * slip),
            reason=order.reason,
        )
        self._fills.append(fill)
        self._last_mid[order.underlying] = mid
        return fill

    @property
    def fills(self) -> tuple[HedgeFill, ...]:
        """Every fill booked, in order."""
        return tuple(self._fills)

    def position(self, underlying: str) -> float:
        """Hedge shares held in ``underlying`` from the fills booked."""
        return float(sum(f.shares for f in self._fills if f.underlying == underlying))

    def report(
        self, underlying: str | None = None, *, marks: Mapping[str, float] | None = None
    ) -> HedgeReport:
        """Counts, costs and P&L of the hedges (of one underlying, or of all).

        Parameters
        ----------
        underlying : str, optional
            Only this underlying's fills; default all.
        marks : mapping of str to float, optional
            Mark price per underlying for the P&L; default the last mid the hedger saw.
        """
        fills = [f for f in self._fills if underlying is None or f.underlying == underlying]
        marks = dict(self._last_mid) | dict(marks or {})
        spread_cost = float(sum(f.spread_cost for f in fills))
        slippage_cost = float(sum(f.slippage_cost for f in fills))
        gross = float(sum(f.shares * (marks[f.underlying] - f.mid) for f in fills))
        total = spread_cost + slippage_cost
        return HedgeReport(
            count=len(fills),
            shares_traded=float(sum(abs(f.shares) for f in fills)),
            net_shares=float(sum(f.shares for f in fills)),
            spread_cost=spread_cost,
            slippage_cost=slippage_cost,
            total_cost=total,
            gross_pnl=gross,
            net_pnl=gross - total,
            config_hash=self.config.content_hash,
        )
