r"""The options quoter: centre, half-spread, skew and sizes for a whole chain at once.

For every option of one underlying's chain (no Python loop over options) the quoter computes

``centre = fair + skew``, ``bid = centre − half_spread``, ``ask = centre + half_spread``,

rounds the prices outward onto the tick grid, keeps them uncrossed and off the market's opposite side,
sizes each side, and caps the sizes at what the risk controller allows (:class:`~optmm.risk.controller.
Decision`). A KILL, TOXIC or STALE decision empties the quote whatever the skew.

Units
-----
Option prices, fair values, half-spreads and skews are **per unit of underlying** (per share), the way
options are quoted; one contract is ``multiplier`` of them (100 unless the book says otherwise). Sizes
are contracts. Book Greeks (:class:`BookGreeks`) are the controller's: ``delta_shares`` in shares and
``vega_per_vol_point`` in currency per vol point, both already multiplied by the contract multipliers.
Option Greeks are the kernels' plain derivatives of one unit: ``δ_i`` dimensionless (shares per unit),
``ν_i`` currency per 1.00 of vol. Times: ``h = horizon_s / (365 · 86400)`` years (ACT/365 like the rest
of optmm); vols are per √year.

The GREEKS skew: a book-Greeks reservation price
-----------------------------------------------
Avellaneda–Stoikov price a single asset held ``q`` units of at the reservation price
``r = s − q γ σ² (T − t)``: the mid shifted by the marginal cost of the inventory's risk. For an option
book, value its risk over the quoting horizon ``h`` as ``R = (γ/2) Var[ΔV_book]``, with γ the risk
aversion in 1/currency. To first order in the spot move ``ΔS`` and a parallel implied-vol move ``Δσ``,

``ΔV_book ≈ Δ ΔS + N Δσ``,

with ``Δ`` the book's delta in shares and ``N = 100 · vega_per_vol_point`` its vega in currency per
1.00 vol. Taking ``ΔS`` and ``Δσ`` independent with ``Var ΔS = σ_S² S² h`` and ``Var Δσ = σ_σ² h``
(``σ_S`` the underlying's vol, ``σ_σ`` the vol of implied vol, both per √year),

``R = (γ/2) h (Δ² σ_S² S² + N² σ_σ²)``.

Buying one contract of option ``i`` (multiplier ``m``) adds ``m δ_i`` to Δ and ``m ν_i`` to N, so

``ΔR = γ h m (Δ δ_i σ_S² S² + N ν_i σ_σ²) + (γ/2) h m² (δ_i² σ_S² S² + ν_i² σ_σ²)``  (currency).

The first term is odd in the trade's sign: it is the inventory cost that moves the reservation price.
The second is even (buying and selling cost the same) and belongs to the spread, not the skew; it is
left to ``base_half_spread_vol_points``. Dividing the odd term by ``m`` to get a per-unit price gives the
reservation shift of option ``i``:

``skew_i = −γ h (Δ δ_i σ_S² S² + N ν_i σ_σ²)``  (currency per unit of underlying).

Units check: ``γ [1/$] · h [y] · Δ [sh] · δ_i [1] · σ_S² [1/y] · S² [$²] = $`` and
``γ [1/$] · h [y] · N [$/vol] · ν_i [$/vol] · σ_σ² [vol²/y] = $``. The multiplier cancels: the book's
Greeks carry it, the option's do not. With a single asset (``δ_i = 1``, ``N = 0``, ``h = T − t``) this is
Avellaneda–Stoikov's ``−q γ σ² S² (T − t)`` for a price following ``dS = σ S dW``.

Signs: a book long vega (``N > 0``) lowers both quotes of every long-vega option (``ν_i > 0``), more for
higher vega, so the market sells us less vega and buys more. A book long delta lowers calls
(``δ_i > 0``) and raises puts (``δ_i < 0``).

LINEAR mode: ``skew_i = −linear_k · q_i`` with ``q_i`` the option's own position in contracts and
``linear_k`` in price units per contract. NONE: ``skew_i = 0``.

Half-spread and sizes
---------------------
``half_spread = max(base_half_spread_vol_points · ν_i / 100, min_edge_ticks · tick(fair),
market half-spread unless improve_market) · (1 + vol_widen · realized_vol + toxicity_widen · score)
· decision.spread_factor``.

The inventory risk of a quote is ``ρ_i = |skew_i| / half_spread_i`` (how many half-spreads the
reservation price has moved). The side that adds risk (the bid when ``skew_i < 0``, the ask when
``skew_i > 0``) shows ``base_size · max(0, 1 − size_shade · ρ_i)``, the other side ``base_size``; both are
floored to whole contracts and capped at the decision's sizes (0 = side dropped).

Tick grid and the market
------------------------
Prices below ``tick_threshold`` trade in ``tick_size``, at or above it in ``tick_size_above`` (the
threshold lies on both grids). Bids round down and asks up; a locked quote gets its ask one tick higher.
Unless ``cross_market``, a bid stays at least one tick below the market's ask and an ask one tick above
its bid. A bid at 0 or below is dropped; an ask is at least one tick. An empty side has price NaN and
size 0.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from optmm._config import Config, parse_number, setting
from optmm.market import Market
from optmm.quoting import _kernels as _k
from optmm.quoting.fair_value import (
    FairUnderlying,
    FairValueConfig,
    fair_underlying,
    option_fair_values,
)
from optmm.risk.audit import Layer
from optmm.risk.controller import Decision, underlying_row
from optmm.typing import ArrayLike, FloatArray

__all__ = ["BookGreeks", "QuoteInput", "Quoter", "QuoterConfig", "SkewMode"]

QUOTE_COLUMNS = ("contract", "bid", "ask", "bid_size", "ask_size", "fair", "half_spread", "skew", "layer")
_LAYER_OBJECTS = np.array(list(Layer), dtype=object)  # indexed by the layer's value
_EPS = 1e-9  # in ticks: a price within this of a grid point is on it


class SkewMode(enum.Enum):
    """How inventory moves the centre of the quotes (module docstring)."""

    GREEKS = "greeks"
    """Book-Greeks reservation price: ``−γ h (Δ δ_i σ_S² S² + N ν_i σ_σ²)``."""
    LINEAR = "linear"
    """``−linear_k · q_i``, the option's own position."""
    NONE = "none"
    """Symmetric quotes around fair."""


@dataclass(frozen=True, kw_only=True)
class QuoterConfig(Config):
    """Settings of :class:`Quoter` (frozen; validated; :meth:`to_dict` / :meth:`load` / content hash).

    Parameters
    ----------
    base_half_spread_vol_points : float
        Base half-spread in vol points: ``· ν_i / 100`` in price units, >= 0 (default 0.5).
    min_edge_ticks : float
        Minimum half-spread in ticks at the fair price, >= 0 (default 1).
    tick_size : float
        Tick below ``tick_threshold``, price units, > 0 (default 0.05).
    tick_size_above : float
        Tick at or above ``tick_threshold``, > 0 (default 0.10; equal to ``tick_size`` for one tick).
    tick_threshold : float
        Price where the tick changes, > 0, a multiple of both ticks, or inf (default 3.00).
    vol_widen : float
        Spread widening per unit of realized vol (decimal, annual), >= 0 (default 0).
    toxicity_widen : float
        Spread widening per unit of toxicity score, >= 0 (default 0).
    improve_market : bool
        Allow a half-spread narrower than the market's (default False).
    cross_market : bool
        Allow a bid at or above the market's ask / an ask at or below its bid (default False).
    skew : SkewMode
        GREEKS, LINEAR or NONE (a string value is converted; default GREEKS).
    gamma_risk_aversion : float
        γ, per unit of currency, >= 0 (default 1e-4).
    horizon_s : float
        Risk horizon ``h`` of the GREEKS skew, seconds, > 0 (default 300).
    sigma_s_annual : float or None
        Underlying vol for the skew, decimal per √year, > 0; None (default): the market's vol at the
        fair spot and the chain's nearest expiry.
    sigma_vol : float
        Vol of implied vol, vol units (decimal) per √year, >= 0 (default 0.15).
    linear_k : float
        LINEAR skew, price units per contract of position, >= 0 (default 0.01).
    base_size : float
        Contracts per side before shading, >= 0 (default 10).
    size_shade : float
        Fraction of size removed per half-spread of skew on the side that adds risk, >= 0 (default 0.5).
    """

    base_half_spread_vol_points: float = setting(0.5, ge=0)
    min_edge_ticks: float = setting(1.0, ge=0)
    tick_size: float = setting(0.05, gt=0)
    tick_size_above: float = setting(0.10, gt=0)
    tick_threshold: float = setting(3.0, gt=0, inf_ok=True)
    vol_widen: float = setting(0.0, ge=0)
    toxicity_widen: float = setting(0.0, ge=0)
    improve_market: bool = False
    cross_market: bool = False
    skew: SkewMode = SkewMode.GREEKS
    gamma_risk_aversion: float = setting(1e-4, ge=0)
    horizon_s: float = setting(300.0, gt=0, unit="s")
    sigma_s_annual: float | None = setting(None, gt=0)
    sigma_vol: float = setting(0.15, ge=0)
    linear_k: float = setting(0.01, ge=0)
    base_size: float = setting(10.0, ge=0)
    size_shade: float = setting(0.5, ge=0)

    def __repr__(self) -> str:
        return self.short_repr()

    def check(self) -> None:
        thr = self.tick_threshold
        if thr == math.inf:
            return
        for tick_name in ("tick_size", "tick_size_above"):
            n = thr / getattr(self, tick_name)
            if abs(n - round(n)) > _EPS * max(1.0, n):
                raise ValueError(
                    f"QuoterConfig.tick_threshold: must be a multiple of {tick_name} "
                    f"({getattr(self, tick_name)!r}), got {thr!r}"
                )

    # the tick grid (the quoter's own rules, optmm.quoting._kernels) ----------------------------------

    def _grid(self, op: int, price: ArrayLike) -> FloatArray:
        p = np.asarray(price, dtype=np.float64)
        out = np.empty(p.size)
        _k.grid(op, np.ascontiguousarray(p).reshape(-1), _k.pack_quoter(self), out)
        return out.reshape(p.shape)

    def tick_at(self, price: ArrayLike) -> FloatArray:
        """The tick of the grid at ``price`` (``tick_size`` below the threshold, else the other)."""
        return self._grid(_k.GRID_TICK, price)

    def round_down(self, price: ArrayLike) -> FloatArray:
        """The highest grid price <= ``price`` (a bid)."""
        return self._grid(_k.GRID_DOWN, price)

    def round_up(self, price: ArrayLike) -> FloatArray:
        """The lowest grid price >= ``price`` (an ask)."""
        return self._grid(_k.GRID_UP, price)

    def tick_up(self, price: ArrayLike) -> FloatArray:
        """The next grid price above the grid price ``price``."""
        return self._grid(_k.GRID_TICK_UP, price)

    def tick_down(self, price: ArrayLike) -> FloatArray:
        """The next grid price below the grid price ``price``."""
        return self._grid(_k.GRID_TICK_DOWN, price)

    def on_grid(self, price: ArrayLike) -> np.ndarray:
        """Whether each price lies on the tick grid (to 1e-6 of a tick)."""
        p = np.asarray(price, dtype=np.float64)
        n = p / self.tick_at(p)
        return np.abs(n - np.round(n)) <= 1e-6


@dataclass(frozen=True, kw_only=True)
class BookGreeks:
    """The book's Greeks on the quoted underlying, multipliers included (the controller's units).

    Parameters
    ----------
    delta_shares : float
        Delta in shares (options and stock).
    vega_per_vol_point : float
        Vega in currency per vol point (per 0.01 of vol).
    """

    delta_shares: float = 0.0
    vega_per_vol_point: float = 0.0

    def __post_init__(self) -> None:
        for name in ("delta_shares", "vega_per_vol_point"):
            object.__setattr__(self, name, parse_number(getattr(self, name), f"BookGreeks.{name}"))

    @classmethod
    def from_state(cls, state: pd.DataFrame, underlying: str) -> BookGreeks:
        """From :meth:`RiskController.state` (its row for ``underlying``, :func:`underlying_row`)."""
        row = underlying_row(state, underlying)
        return cls(
            delta_shares=float(row["delta_shares"]), vega_per_vol_point=float(row["vega_per_vol_point"])
        )


def _vector(name: str, value: ArrayLike, n: int, dtype: Any = np.float64, fill: float = np.nan) -> np.ndarray:
    if value is None:
        return np.full(n, fill, dtype=dtype)
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 0:
        arr = np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"QuoteInput.{name}: expected shape ({n},), got {arr.shape}")
    return arr


@dataclass(frozen=True, kw_only=True)
class QuoteInput:
    """One underlying's chain and market state, as arrays of shape ``(n,)``.

    Parameters
    ----------
    market : Market
        Rates, yields, the vol surface and the snapshot spot.
    underlying : str
    contract : array_like of int
        The controller's contract indices (reported back; used by :meth:`Quoter.quote_with`).
    strike, t : array_like of float
        Strikes (price units, > 0) and years to expiry (> 0).
    is_call : array_like of bool
    american : array_like of bool, optional
        Which options are American (fair values on their terms); default the underlying's default
        style (:meth:`Quoter.quote_with` takes the controller's contract terms instead).
    position : array_like of float, optional
        Our position per option, contracts (LINEAR skew); default 0.
    market_bid, market_ask : array_like of float, optional
        The options' best bid / ask, price per unit; NaN = none (default none).
    spot_mid : float, optional
        The underlying's mid (default: the market's snapshot spot; :meth:`Quoter.quote_with` uses the
        controller's live spot instead, and refuses a ``spot_mid`` given here that differs from it).
    spot_bid_size, spot_ask_size, spot_half_spread : float
        The underlying's top of book for the imbalance term (shares; price units). Default 0.
    flow_signal, lead_return : float
        Fair-value signals (:func:`~optmm.quoting.fair_value.fair_underlying`). Default 0.
    realized_vol : float
        The underlying's realized vol, decimal per √year, >= 0 (spread widening). Default 0.
    toxicity_score : float
        The toxicity detector's score, >= 0 (spread widening). Default 0.
    """

    market: Market
    underlying: str
    contract: Any
    strike: Any
    t: Any
    is_call: Any
    american: Any = None
    position: Any = None
    market_bid: Any = None
    market_ask: Any = None
    spot_mid: float | None = None
    spot_bid_size: float = 0.0
    spot_ask_size: float = 0.0
    spot_half_spread: float = 0.0
    flow_signal: float = 0.0
    lead_return: float = 0.0
    realized_vol: float = 0.0
    toxicity_score: float = 0.0
    n: int = field(init=False)

    def __post_init__(self) -> None:
        contract = np.asarray(self.contract, dtype=np.int64).reshape(-1)
        n = contract.size
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "contract", contract)
        for name in ("strike", "t"):
            arr = _vector(name, getattr(self, name), n)
            if not np.all(np.isfinite(arr) & (arr > 0.0)):
                raise ValueError(f"QuoteInput.{name}: must be finite and > 0")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "is_call", _vector("is_call", self.is_call, n, dtype=np.bool_))
        if self.american is not None:
            object.__setattr__(self, "american", _vector("american", self.american, n, dtype=np.bool_))
        position = _vector("position", self.position, n, fill=0.0)
        if not np.all(np.isfinite(position)):
            raise ValueError("QuoteInput.position: must be finite")
        object.__setattr__(self, "position", position)
        for name in ("market_bid", "market_ask"):
            arr = _vector(name, getattr(self, name), n)
            if np.any(np.isinf(arr)):
                raise ValueError(f"QuoteInput.{name}: must be finite or NaN (none)")
            object.__setattr__(self, name, arr)
        # (not a field: whether the caller chose the mid, which quote_with checks against the controller's)
        object.__setattr__(self, "_spot_given", self.spot_mid is not None)
        if self.spot_mid is None:
            object.__setattr__(self, "spot_mid", float(self.market.spot[self.underlying]))
        for name in ("realized_vol", "toxicity_score"):
            object.__setattr__(self, name, parse_number(getattr(self, name), f"QuoteInput.{name}", ge=0))


def _decision_arrays(decisions: Any, n: int) -> tuple[np.ndarray, FloatArray, FloatArray, FloatArray]:
    """(layer codes, bid sizes, ask sizes, spread factors) from Decisions or decide_many's arrays."""
    if decisions is None:
        return (np.full(n, int(Layer.NORMAL)), np.full(n, np.inf), np.full(n, np.inf), np.ones(n))
    if isinstance(decisions, tuple) and len(decisions) == 4 and not isinstance(decisions[0], Decision):
        layer, bid, ask, spread = (np.asarray(a).reshape(-1) for a in decisions)
    elif isinstance(decisions, Sequence):
        if not all(isinstance(d, Decision) for d in decisions):
            raise ValueError("decisions: expected Decision objects")
        layer = np.array([int(d.layer) for d in decisions], dtype=np.int64)
        bid = np.array([d.bid_size for d in decisions], dtype=np.float64)
        ask = np.array([d.ask_size for d in decisions], dtype=np.float64)
        spread = np.array([d.spread_factor for d in decisions], dtype=np.float64)
    else:
        raise ValueError(
            f"decisions: expected a sequence of Decision or decide_many's arrays, got {decisions!r}"
        )
    if not layer.size == bid.size == ask.size == spread.size == n:
        raise ValueError(f"decisions: expected {n} decisions (one per option), got {layer.size}")
    return layer.astype(np.int64), bid.astype(np.float64), ask.astype(np.float64), spread.astype(np.float64)


class Quoter:
    """Two-sided quotes for an option chain (module docstring for every rule).

    A validating shell over the rules the simulator runs: :meth:`quote` prices the chain (:meth:`fair`),
    then runs :func:`optmm.quoting._kernels.quote_chain` (``quote_one_py`` compiled) over it.

    Parameters
    ----------
    config : QuoterConfig
    fair_config : FairValueConfig
    """

    def __init__(self, config: QuoterConfig, fair_config: FairValueConfig) -> None:
        if not isinstance(config, QuoterConfig) or not isinstance(fair_config, FairValueConfig):
            raise TypeError("Quoter(config: QuoterConfig, fair_config: FairValueConfig)")
        self.config = config
        self.fair_config = fair_config

    def __repr__(self) -> str:
        return f"Quoter({self.config!r}, {self.fair_config!r})"

    def fair(self, chain: QuoteInput) -> tuple[FairUnderlying, FloatArray, Any]:
        """The underlying's fair value with its terms, and the chain's fair prices and Greeks."""
        assert chain.spot_mid is not None  # QuoteInput sets the market's spot when none is given
        fu = fair_underlying(
            chain.spot_mid,
            chain.spot_bid_size,
            chain.spot_ask_size,
            flow_signal=chain.flow_signal,
            lead_return=chain.lead_return,
            half_spread=chain.spot_half_spread,
            config=self.fair_config,
        )
        price, greeks = option_fair_values(
            chain.market,
            chain.underlying,
            chain.strike,
            chain.t,
            chain.is_call,
            fu.price,
            american=chain.american,
        )
        return fu, price, greeks

    def sigma_s(self, chain: QuoteInput, fair_spot: float) -> float:
        """The underlying's vol for the GREEKS skew (config, else the market's near ATM vol)."""
        if self.config.sigma_s_annual is not None:
            return self.config.sigma_s_annual
        t_near = float(chain.t.min()) if chain.n else 1.0 / 12.0
        spot_shift = fair_spot / chain.market.spot[chain.underlying] - 1.0
        return float(chain.market.vols(chain.underlying, fair_spot, t_near, spot_shift=spot_shift))

    def quote(self, chain: QuoteInput, book_greeks: BookGreeks, decisions: Any = None) -> pd.DataFrame:
        """Quotes for every option of ``chain``.

        Parameters
        ----------
        chain : QuoteInput
        book_greeks : BookGreeks
            The book's delta and vega on ``chain.underlying`` (GREEKS skew).
        decisions : sequence of Decision, or (layer, bid_size, ask_size, spread_factor) arrays, optional
            The controller's decision per option, in chain order (``decide_many`` returns the arrays).
            None: NORMAL, sizes not capped, spread factor 1.

        Returns
        -------
        DataFrame
            One row per option, columns :data:`QUOTE_COLUMNS`: ``contract``; ``bid``, ``ask`` (price
            per unit, NaN = no quote); ``bid_size``, ``ask_size`` (contracts); ``fair``,
            ``half_spread``, ``skew`` (price per unit); ``layer`` (:class:`Layer`). ``attrs`` holds
            ``fair_underlying`` (:class:`FairUnderlying`, every term reported), ``sigma_s``,
            ``config_hash`` and ``fair_config_hash``.
        """
        cfg = self.config
        n = chain.n
        layer, cap_bid, cap_ask, spread_factor = _decision_arrays(decisions, n)
        fu, fair, g = self.fair(chain)
        s = float(fu.price)
        sigma_s = self.sigma_s(chain, s) if cfg.skew is SkewMode.GREEKS else math.nan
        q = np.empty((n, _k.N_OUT))
        _k.quote_chain(
            np.ascontiguousarray(fair, dtype=np.float64),
            np.ascontiguousarray(g.delta, dtype=np.float64),
            np.ascontiguousarray(g.vega, dtype=np.float64),
            chain.position,
            float(book_greeks.delta_shares),
            float(book_greeks.vega_per_vol_point),
            sigma_s,
            s,
            float(chain.realized_vol),
            float(chain.toxicity_score),
            layer,
            cap_bid,
            cap_ask,
            spread_factor,
            chain.market_bid,
            chain.market_ask,
            _k.pack_quoter(cfg),
            q,
        )
        bid, ask, bid_size, ask_size, half, skew = (q[:, j] for j in range(_k.N_OUT))

        out = pd.DataFrame(
            {
                "contract": chain.contract,
                "bid": bid,
                "ask": ask,
                "bid_size": bid_size,
                "ask_size": ask_size,
                "fair": fair,
                "half_spread": half,
                "skew": skew,
                "layer": _LAYER_OBJECTS[layer],
            },
            columns=list(QUOTE_COLUMNS),
        )
        out.attrs.update(
            fair_underlying=fu,
            sigma_s=sigma_s,
            config_hash=cfg.content_hash,
            fair_config_hash=self.fair_config.content_hash,
        )
        return out

    def quote_with(self, controller: Any, chain: QuoteInput) -> pd.DataFrame:
        """Quote ``chain`` through a :class:`~optmm.risk.controller.RiskController`.

        The contracts' style is the controller's (unless ``chain.american`` is given). The spot is the
        controller's (the market snapshot's, then the last
        :meth:`~optmm.risk.controller.RiskController.on_market_data`): the one spot the limits, the
        fair values and the hedger see. Book Greeks come from ``controller.state()``; the uncapped
        sizes go to ``controller.decide_many`` as the requests, and its decisions cap and gate the
        final quotes.

        Raises
        ------
        ValueError
            ``chain.spot_mid`` was given and differs from the controller's spot (feed the mid to
            ``controller.on_market_data`` instead).
        KeyError
            The controller does not know ``chain.underlying``.
        """
        state = controller.state()
        live = float(underlying_row(state, chain.underlying)["spot"])
        if getattr(chain, "_spot_given", False) and chain.spot_mid != live:
            raise ValueError(
                f"quote_with: chain.spot_mid {chain.spot_mid!r} differs from the controller's spot "
                f"{live!r} for {chain.underlying}; pass the mid to controller.on_market_data instead"
            )
        american = controller.is_american(chain.contract) if chain.american is None else chain.american
        chain = replace(chain, spot_mid=live, american=american)
        book = BookGreeks.from_state(state, chain.underlying)
        wanted = self.quote(chain, book)
        decisions = controller.decide_many(
            chain.contract, wanted["bid_size"].to_numpy(), wanted["ask_size"].to_numpy()
        )
        return self.quote(chain, book, decisions)
