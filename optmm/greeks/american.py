"""American options: price, Greeks and implied vol, with continuous carry or cash dividends.

Public API: :func:`american_greeks`, :func:`american_price`, :func:`american_implied_vol`, and
:class:`AmericanIVStatus`. The engines are private: ``_american`` (Andersen-Lake-Offengeld, for
continuous carry) and ``_american_fd`` (finite differences in the escrowed model, for a schedule
of cash dividends). Arguments, broadcasting and errors are those of :func:`optmm.greeks.bsm_greeks`.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from optmm.greeks import _american, _american_fd, _iv
from optmm.greeks.api import Greeks, _market, _prepare, _Prepared, _quotes, _raise_first_invalid, _vols
from optmm.typing import ArrayLike, FloatArray

# The engine's settings by name: node and iteration counts and quadrature rules, chosen by
# measurement against QuantLib's high-precision QdFp scheme (docs/greeks.md, bench/american.py).
_SCHEMES = {
    "default": _american.make_scheme(7, 1, _american.gauss_legendre(7), _american.gauss_legendre(20)),
    "high": _american.make_scheme(12, 4, _american.tanh_sinh(0.3, 10), _american.tanh_sinh(0.12, 30)),
}


class AmericanIVStatus(enum.IntEnum):
    """Why :func:`american_implied_vol` returned what it did, per option (codes 0-3 as ``IVStatus``)."""

    OK = _iv.OK
    """A vol was found (0.0 when the price is the value without volatility, above intrinsic)."""
    BELOW_INTRINSIC = _iv.BELOW_INTRINSIC
    """Price below the exercise value, or below the value without volatility: no vol."""
    ABOVE_MAXIMUM = _iv.ABOVE_MAXIMUM
    """Price at or above the no-arbitrage maximum (spot for a call, strike for a put)."""
    EXPIRED = _iv.EXPIRED
    """``t <= 0``: no vol is implied."""
    NO_PREMIUM = _american.NO_PREMIUM
    """Price equal to the exercise value of an option exercised at once at every vol up to some
    level: there is no time value to solve for, and no one vol."""


def _scheme(accuracy: str) -> _american.Scheme:
    try:
        return _SCHEMES[accuracy]
    except (KeyError, TypeError):
        raise ValueError(
            f"accuracy: must be one of {', '.join(map(repr, _SCHEMES))}, got {accuracy!r}"
        ) from None


def _raise_double_boundary(status: np.ndarray, code: int, shape: tuple[int, ...]) -> None:
    bad = np.flatnonzero(status == code)
    if bad.size:
        index = tuple(int(i) for i in np.unravel_index(int(bad[0]), shape)) if len(shape) > 1 else int(bad[0])
        raise ValueError(
            f"rate, div_yield: at index {index} the option has two exercise boundaries (a put with"
            " div_yield < rate < 0, or a call with rate < div_yield < 0), which is not supported"
        )


def _check(prep: _Prepared, bad: int, status: np.ndarray, code: int) -> None:
    if bad:
        _raise_first_invalid(prep, [])
    _raise_double_boundary(status, code, prep.shape)


def american_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    dividends: Any = None,
    accuracy: str = "default",
) -> Greeks:
    """Price and Greeks of American options, vectorised; arguments as :func:`~optmm.greeks.bsm_greeks`.

    Parameters
    ----------
    spot, strike, t, rate, div_yield, vol, is_call
        As in :func:`optmm.greeks.bsm_greeks`.
    dividends : (ex_times, amounts) or None, keyword-only
        One schedule of cash dividends for every option, as in :func:`optmm.greeks.bsm_greeks`
        (escrowed model; exercise is decided on the full stock price).
    accuracy : {"default", "high"}, keyword-only
        The engine's setting. Worst price errors measured against QuantLib's high-precision
        scheme over 1 day to 5 years, vols 5%-200%: ``"default"`` about 2e-5 of the strike,
        ``"high"`` about 2e-7, some five times slower. With ``dividends``, the grid of the
        finite-difference engine: about 1e-3 and 1e-4 of the strike.

    Returns
    -------
    Greeks
        Eight float64 arrays of the broadcast shape, with the units of :func:`bsm_greeks`.

    Raises
    ------
    ValueError
        As :func:`optmm.greeks.bsm_greeks`; also for an unknown ``accuracy``, and for an option with
        two exercise boundaries (a put with ``div_yield < rate < 0``), which is not priced.

    Notes
    -----
    Price, delta and gamma come from the engine (the premium integral differentiated in the
    spot), theta from the Black-Scholes equation the price satisfies off the exercise boundary
    (0 where the option is exercised at once); vega, volga, vanna and rho are central differences
    of the engine (bumps of 1e-4 in vol and 1e-5 in rate). Where early exercise never pays (a call
    with ``div_yield <= 0`` and ``div_yield <= rate``, a put with ``rate <= 0`` and
    ``rate <= div_yield``) the results are the European ones exactly.

    Examples
    --------
    >>> g = american_greeks(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False)
    >>> from optmm.greeks import bsm_greeks
    >>> e = bsm_greeks(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False)
    >>> print(f"{g.price:.4f} {e.price:.4f} {g.delta:.4f}")
    6.0903 5.5735 -0.4111
    """
    prep = _prepare(_market(spot, strike, t, rate, div_yield, vol), is_call)
    scheme = _scheme(accuracy)
    outs = [np.empty(prep.size, dtype=np.float64) for _ in Greeks.FIELDS]
    status = np.empty(prep.size, dtype=np.int8)
    if dividends is not None:
        if _american_fd.greeks(prep, dividends, accuracy, outs):
            _raise_first_invalid(prep, outs)
    elif prep.size:
        bad = _american.greeks_kernel(*prep.flat, scheme, *outs, status)
        _check(prep, bad, status, _american.DOUBLE_BOUNDARY)
    return Greeks(*(out.reshape(prep.shape) for out in outs))


def american_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    dividends: Any = None,
    accuracy: str = "default",
) -> FloatArray:
    """American option prices alone (faster than :func:`american_greeks`); same arguments and rules.

    Examples
    --------
    >>> print(f"{american_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False, accuracy='high'):.6f}")
    6.090364
    """
    prep = _prepare(_market(spot, strike, t, rate, div_yield, vol), is_call)
    scheme = _scheme(accuracy)
    out = np.empty(prep.size, dtype=np.float64)
    status = np.empty(prep.size, dtype=np.int8)
    if dividends is not None:
        if _american_fd.prices(prep, dividends, accuracy, out):
            _raise_first_invalid(prep, [out])
    elif prep.size:
        bad = _american.price_kernel(*prep.flat, scheme, out, status)
        _check(prep, bad, status, _american.DOUBLE_BOUNDARY)
    return out.reshape(prep.shape)


def american_implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
    *,
    dividends: Any = None,
    return_status: bool = False,
) -> FloatArray | tuple[FloatArray, np.ndarray]:
    """Implied vol of American prices: the vol at which :func:`american_price` (``"high"``) returns them.

    Parameters
    ----------
    price, spot, strike, t, rate, div_yield, is_call, dividends
        As in :func:`optmm.greeks.implied_vol` and :func:`american_price`.
    return_status : bool, keyword-only
        Also return :class:`AmericanIVStatus` codes.

    Returns
    -------
    vol : ndarray of float64
        NaN exactly where no single vol reproduces the price: below the exercise value (or the
        value without volatility), at or above the maximum, expired, or no time value to solve
        for (``NO_PREMIUM``).
    status : ndarray of int8, only if ``return_status``

    Notes
    -----
    The vol is solved to the engine's own accuracy at ``"high"``: the price error of the engine
    (about 1e-7 of the strike) divided by the vega. Where early exercise never pays, this is
    :func:`optmm.greeks.implied_vol` exactly.

    Examples
    --------
    >>> p = american_price(100.0, [90.0, 110.0], 0.5, 0.05, 0.0, 0.25, False, accuracy="high")
    >>> american_implied_vol(p, 100.0, [90.0, 110.0], 0.5, 0.05, 0.0, False).round(8)
    array([0.25, 0.25])
    """
    prep = _prepare(_quotes(price, spot, strike, t, rate, div_yield), is_call)
    out = np.empty(prep.size, dtype=np.float64)
    status = np.empty(prep.size, dtype=np.int8)
    if dividends is not None:
        if _american_fd.implied_vols(prep, dividends, out, status):
            _raise_first_invalid(prep, [out])
    elif prep.size:
        bad = _american.iv_kernel(*prep.flat, _SCHEMES["high"], out, status)
        _check(prep, bad, status, _american.DOUBLE_BOUNDARY_IV)
    return _vols(out, status, prep.shape, return_status)


__all__ = ["AmericanIVStatus", "american_greeks", "american_implied_vol", "american_price"]
