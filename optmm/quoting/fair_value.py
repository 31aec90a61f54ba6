"""Fair value of an underlying and of its options.

The underlying's fair price is its mid plus three separately reported, separately switchable terms
(:func:`fair_underlying`):

``imbalance_adj = imbalance_weight · half_spread · (bid_size − ask_size) / (bid_size + ask_size)``
    Top-of-book imbalance: with all the visible size on the bid (imbalance +1) the fair price sits
    ``imbalance_weight`` half-spreads above the mid. Price units. 0 when both sizes are 0.
``flow_adj = flow_weight · flow_signal``
    Recent signed trade flow (buyer-initiated positive); ``flow_weight`` is in price units per unit
    of signal. :func:`decay_flow` keeps such a signal as an exponentially decaying sum with half-life
    ``flow_halflife_s``.
``lead_adj = mid · lead_beta · lead_return``
    A leading instrument (a future, the index) moved by ``lead_return`` (a decimal return) since this
    book last updated; ``lead_beta`` is the dimensionless beta of this underlying to it.

Options are then valued on their contract terms at the fair spot on the market's vol surface
(:func:`option_fair_values`): the underlying's carry (rate, continuous yield, cash dividends) and
each option's style, through :mod:`optmm.pricing` (Black-Scholes-Merton for a European option on a
continuous yield).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from optmm import pricing
from optmm._config import Config, setting
from optmm.greeks import Greeks
from optmm.market import Market
from optmm.typing import ArrayLike, FloatArray

__all__ = ["FairUnderlying", "FairValueConfig", "decay_flow", "fair_underlying", "option_fair_values"]


# --------------------------------------------------------------------------------------------------
# the underlying


@dataclass(frozen=True, kw_only=True)
class FairValueConfig(Config):
    """How the underlying's fair price is built from its mid (see the module docstring).

    Parameters
    ----------
    imbalance_weight : float
        Half-spreads of adjustment at full imbalance, in [0, 1] (default 0.5).
    flow_weight : float
        Price units per unit of flow signal, finite (default 0).
    flow_halflife_s : float
        Half-life of :func:`decay_flow`, seconds, > 0 (default 1).
    lead_beta : float
        Beta to the leading instrument, dimensionless, finite (default 0).
    use_imbalance, use_flow, use_lead : bool
        Switch each term on or off (a switched-off term is reported as 0). Default all on.
    """

    imbalance_weight: float = setting(0.5, ge=0, le=1)
    flow_weight: float = 0.0
    flow_halflife_s: float = setting(1.0, gt=0, unit="s")
    lead_beta: float = 0.0
    use_imbalance: bool = True
    use_flow: bool = True
    use_lead: bool = True


class FairUnderlying(NamedTuple):
    """The underlying's fair price and its terms (floats, or arrays of the broadcast input shape).

    ``price = mid + imbalance_adj + flow_adj + lead_adj``, all in price units.
    """

    price: Any
    mid: Any
    imbalance_adj: Any
    flow_adj: Any
    lead_adj: Any


def _out(x: np.ndarray) -> Any:
    return float(x) if x.ndim == 0 else x


def fair_underlying(
    mid: ArrayLike,
    bid_size: ArrayLike,
    ask_size: ArrayLike,
    *,
    flow_signal: ArrayLike = 0.0,
    lead_return: ArrayLike = 0.0,
    half_spread: ArrayLike | None = None,
    config: FairValueConfig,
) -> FairUnderlying:
    """Fair price of an underlying: mid + imbalance + flow + lead terms (module docstring).

    Parameters
    ----------
    mid : array_like of float
        Mid price, > 0, price units.
    bid_size, ask_size : array_like of float
        Visible top-of-book sizes, shares, >= 0.
    flow_signal : array_like of float
        Signed flow signal (e.g. from :func:`decay_flow`), shares or any unit ``flow_weight`` is in.
    lead_return : array_like of float
        Return of the leading instrument since this book last updated, decimal (0.001 = 10 bp).
    half_spread : array_like of float, optional
        The underlying's half-spread ``(ask − bid) / 2``, price units, >= 0. Required when the
        imbalance term is on with a non-zero weight (the term is measured in half-spreads).
    config : FairValueConfig

    Returns
    -------
    FairUnderlying
        Floats for scalar input, else arrays of the broadcast shape.

    Raises
    ------
    ValueError
        Non-finite input, mid <= 0, negative sizes or half-spread, or a missing ``half_spread``.

    Examples
    --------
    >>> cfg = FairValueConfig(imbalance_weight=0.5, use_flow=False, use_lead=False)
    >>> fair_underlying(100.0, 300.0, 100.0, half_spread=0.02, config=cfg).price
    100.005
    """
    imbalance_on = config.use_imbalance and config.imbalance_weight != 0.0
    if imbalance_on and half_spread is None:
        raise ValueError("fair_underlying: half_spread is required when the imbalance term is on")
    hs = 0.0 if half_spread is None else half_spread
    arrays = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (mid, bid_size, ask_size, flow_signal, lead_return, hs))
    )
    m, bs, as_, flow, lead, h = arrays
    for name, arr in zip(
        ("mid", "bid_size", "ask_size", "flow_signal", "lead_return", "half_spread"), arrays, strict=True
    ):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"fair_underlying: {name} must be finite")
    if np.any(m <= 0.0):
        raise ValueError("fair_underlying: mid must be > 0")
    if np.any(bs < 0.0) or np.any(as_ < 0.0) or np.any(h < 0.0):
        raise ValueError("fair_underlying: sizes and half_spread must be >= 0")
    zero = np.zeros_like(m)
    if imbalance_on:
        total = bs + as_
        imb = np.divide(bs - as_, total, out=np.zeros_like(m), where=total > 0.0)
        imbalance_adj = config.imbalance_weight * h * imb
    else:
        imbalance_adj = zero
    flow_adj = config.flow_weight * flow if config.use_flow else zero
    lead_adj = m * config.lead_beta * lead if config.use_lead else zero
    price = m + imbalance_adj + flow_adj + lead_adj
    return FairUnderlying(*(_out(np.asarray(x)) for x in (price, m, imbalance_adj, flow_adj, lead_adj)))


def decay_flow(
    signal: ArrayLike, dt_s: ArrayLike, signed_volume: ArrayLike = 0.0, *, config: FairValueConfig
) -> Any:
    """Update an exponentially decaying flow signal: ``signal · 2^(−dt_s / flow_halflife_s) + signed_volume``.

    Parameters
    ----------
    signal : array_like of float
        The signal at the previous update.
    dt_s : array_like of float
        Seconds since then, >= 0.
    signed_volume : array_like of float
        Volume traded since, buyer-initiated positive (shares).
    config : FairValueConfig

    Examples
    --------
    >>> decay_flow(100.0, 1.0, 0.0, config=FairValueConfig(flow_halflife_s=1.0))
    50.0
    """
    dt = np.asarray(dt_s, dtype=np.float64)
    if np.any(~np.isfinite(dt)) or np.any(dt < 0.0):
        raise ValueError("decay_flow: dt_s must be finite and >= 0")
    out = np.asarray(signal, dtype=np.float64) * np.exp2(-dt / config.flow_halflife_s) + np.asarray(
        signed_volume, dtype=np.float64
    )
    return _out(out)


# --------------------------------------------------------------------------------------------------
# the options


def option_fair_values(
    market: Market,
    underlying: str,
    strikes: ArrayLike,
    expiries_t: ArrayLike,
    is_call: ArrayLike,
    fair_spot: float,
    *,
    american: ArrayLike | None = None,
) -> tuple[FloatArray, Greeks]:
    """Values of a chain on its contract terms at the fair spot, on the market's vol surface.

    Parameters
    ----------
    market : Market
    underlying : str
    strikes : array_like of float, shape (n,)
        Strikes, price units, > 0.
    expiries_t : array_like of float, shape (n,)
        Years to expiry (ACT/365).
    is_call : array_like of bool, shape (n,)
    fair_spot : float
        The underlying's fair price (:func:`fair_underlying`), > 0.
    american : array_like of bool, shape (n,), optional
        Which options are American; default the underlying's default style
        (:func:`optmm.pricing.american_flags`).

    Returns
    -------
    price : ndarray of float64, shape (n,)
        Fair option prices per unit of underlying (per share, not per contract).
    greeks : Greeks
        Their Greeks (plain partial derivatives: vega per 1.00 vol), same shape.

    Notes
    -----
    Vols are ``market.vols(underlying, K, t, spot_shift=fair_spot / spot − 1)``: the market's sticky
    rule decides whether the smile moves from the snapshot's spot to the fair spot. Prices and
    Greeks come from :func:`optmm.pricing.contract_greeks` with the underlying's
    :func:`~optmm.pricing.carry`: Black-Scholes-Merton on the continuous yield for a European
    option on an underlying without cash dividends, the escrowed-dividend formula with them, the
    American engine for American options.
    """
    s = float(fair_spot)
    if not (math.isfinite(s) and s > 0.0):
        raise ValueError(f"option_fair_values: fair_spot must be finite and > 0 (got {fair_spot!r})")
    k = np.asarray(strikes, dtype=np.float64)
    t = np.asarray(expiries_t, dtype=np.float64)
    call = np.asarray(is_call, dtype=bool)
    shape = np.broadcast_shapes(k.shape, t.shape, call.shape)
    if american is None:
        am = pricing.american_flags(market, np.full(shape, underlying, dtype=object))
    else:
        am = np.asarray(american, dtype=bool)
        try:
            shape = np.broadcast_shapes(shape, am.shape)
        except ValueError:
            raise ValueError(
                f"option_fair_values: american has shape {am.shape}, the chain {shape}"
            ) from None
    vol = market.vols(underlying, k, t, spot_shift=s / market.spot[underlying] - 1.0)
    carry = pricing.carry(market, [underlying])
    g = pricing.contract_greeks(carry, np.zeros(shape, dtype=np.intp), np.full(shape, s), k, t, vol, call, am)
    g = Greeks(**{name: np.reshape(getattr(g, name), shape) for name in Greeks.FIELDS})
    return g.price, g
