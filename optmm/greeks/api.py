"""Public, validating API over the Black-Scholes-Merton kernels.

Every function here validates its inputs once, broadcasts them like numpy, allocates the outputs and
calls one parallel numba kernel. Nothing loops in Python over options.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from optmm.greeks import _bsm, _dividend, _iv
from optmm.typing import ArrayLike, FloatArray, WrongTypeError, real_array


class IVStatus(enum.IntEnum):
    """Why :func:`implied_vol` returned what it did, per option."""

    OK = _iv.OK
    """A vol was found (0.0 when the price is exactly the discounted forward intrinsic)."""
    BELOW_INTRINSIC = _iv.BELOW_INTRINSIC
    """Price below the discounted forward intrinsic ``max(phi (S e^-qt - K e^-rt), 0)``: no vol."""
    ABOVE_MAXIMUM = _iv.ABOVE_MAXIMUM
    """Price at or above the no-arbitrage maximum (``S e^-qt`` for a call, ``K e^-rt`` for a put)."""
    EXPIRED = _iv.EXPIRED
    """``t <= 0``: an expired option is worth intrinsic whatever the vol, so none is implied."""


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and Greeks of a set of European options, each an array of the broadcast input shape.

    All are plain partial derivatives of one option's value (not per contract, not scaled):
    ``delta`` dV/dS, ``gamma`` d2V/dS2, ``vega`` dV/dsigma per 1.00 of vol, ``theta`` -dV/dt per
    year of calendar time passing, ``rho`` dV/dr per 1.00 of rate, ``vanna`` d2V/dS dsigma,
    ``volga`` d2V/dsigma2.
    """

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray
    vanna: FloatArray
    volga: FloatArray

    FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")

    def __repr__(self) -> str:
        if self.price.size == 1:
            values = ", ".join(f"{name}={float(getattr(self, name)):.6g}" for name in self.FIELDS)
            return f"Greeks({values})"
        return f"Greeks(shape={self.price.shape}: {', '.join(self.FIELDS)})"

    def to_dict(self) -> dict[str, FloatArray]:
        """The eight arrays by name, in the order of :attr:`FIELDS`."""
        return {name: getattr(self, name) for name in self.FIELDS}


# Per argument: the lowest allowed value and whether it is excluded. Every value must be finite.
_RULES: dict[str, tuple[float, bool, str]] = {
    "spot": (0.0, True, "finite and > 0"),
    "strike": (0.0, True, "finite and > 0"),
    "t": (-np.inf, False, "finite"),
    "rate": (-np.inf, False, "finite"),
    "div_yield": (-np.inf, False, "finite"),
    "vol": (0.0, False, "finite and >= 0"),
    "price": (0.0, False, "finite and >= 0"),
}


def _index_str(flat_index: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return str(flat_index)
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def _as_float(name: str, value: ArrayLike) -> FloatArray:
    """``value`` as a float64 array (no copy if it already is one); only real numbers are accepted
    (see :func:`optmm.typing.real_array`: no booleans, strings, complex, Decimal, datetime64...)."""
    try:
        arr = real_array(value)
    except WrongTypeError as exc:
        where = "" if exc.index is None else f" at index {_index_str(exc.index, np.shape(value))}"
        raise ValueError(f"{name}: {exc.problem}{where}") from None
    return arr.astype(np.float64, copy=False)


def _raise_first_invalid(prep: _Prepared, outputs: list[np.ndarray]) -> None:
    """Raise the ValueError that names the first argument breaking its rule, and the index; when
    every input is valid, the one naming the first input whose result overflows a float64."""
    for name, arr in prep.named.items():
        lower, strict, rule = _RULES[name]
        flat = arr.reshape(-1)
        bad = int(_bsm.first_invalid(flat, lower, strict))
        if bad >= 0:
            raise ValueError(
                f"{name}: invalid value {flat[bad]!r} at index {_index_str(bad, arr.shape)} (must be {rule})"
            )
    overflow = np.zeros(prep.size, dtype=bool)
    for out in outputs:
        overflow |= ~np.isfinite(out)
    if overflow.any():
        i = int(np.argmax(overflow))
        raise ValueError(_scale_problem(prep, i, _OVERFLOW_LOG) or _overflow_problem(prep, i))
    raise AssertionError("a kernel reported invalid input that the argument rules do not find")


# |ln(S e^-qt)| and |ln(K e^-rt)| beyond which the discounted spot or strike overflows (or, for the
# implied vol, whose normalisation multiplies the two, beyond which their product would).
_OVERFLOW_LOG = 700.0
_IV_SCALE_LOG = 350.0


def _element(prep: _Prepared, i: int) -> dict[str, float]:
    """The float arguments of the option at flat index ``i`` of the broadcast shape."""
    return {name: float(a[i] if a.size > 1 else a[0]) for name, a in zip(prep.named, prep.flat, strict=False)}


def _scale_problem(prep: _Prepared, i: int, limit: float) -> str | None:
    """The message naming the argument that puts ``S e^-qt`` or ``K e^-rt`` of option ``i`` beyond
    ``e^limit`` (or below ``e^-limit``), or None if both are within."""
    v = _element(prep, i)
    t = v["t"]
    if t <= 0.0:
        return None
    where = _index_str(i, prep.shape)
    for price, rate, what in (
        ("strike", "rate", "discounted strike"),
        ("spot", "div_yield", "discounted spot"),
    ):
        log_price, rt = math.log(v[price]), v[rate] * t
        if abs(log_price - rt) > limit:
            name = rate if abs(rt) >= abs(log_price) else price
            return (
                f"{name}: {v[name]!r} at index {where} puts the {what} {price} * exp(-{rate} * t) at "
                f"exp({log_price - rt:.6g}) ({price}={v[price]!r}, {rate}={v[rate]!r}, t={t!r}), beyond "
                f"the float64 range this needs (exp(+-{limit:g})): no representable result"
            )
    return None


def _overflow_problem(prep: _Prepared, i: int) -> str:
    v = _element(prep, i)
    inputs = ", ".join(f"{name}={x!r}" for name, x in v.items())
    return (
        f"the result at index {_index_str(i, prep.shape)} overflows a float64 ({inputs}): "
        "no representable result for inputs of this magnitude"
    )


def _check_iv_scale(prep: _Prepared) -> None:
    """Refuse options whose discounted spot or strike is too large or small for the implied-vol
    solve (which divides by their geometric mean). A bound over whole arrays settles the usual
    case in a few reductions; only when it fails is each option looked at."""
    n = prep.named

    def log_range(a: FloatArray) -> float:
        return max(abs(math.log(float(a.min()))), abs(math.log(float(a.max())))) if a.size else 0.0

    t_max = float(np.abs(n["t"]).max()) if n["t"].size else 0.0
    r_max = float(np.abs(n["rate"]).max()) if n["rate"].size else 0.0
    q_max = float(np.abs(n["div_yield"]).max()) if n["div_yield"].size else 0.0
    bound = max(log_range(n["spot"]) + q_max * t_max, log_range(n["strike"]) + r_max * t_max)
    if bound <= _IV_SCALE_LOG:
        return
    s, k, t, r, q = (
        np.broadcast_to(n[x], prep.shape).reshape(-1) for x in ("spot", "strike", "t", "rate", "div_yield")
    )
    with np.errstate(over="ignore", invalid="ignore"):
        bad = (t > 0.0) & (
            (np.abs(np.log(s) - q * t) > _IV_SCALE_LOG) | (np.abs(np.log(k) - r * t) > _IV_SCALE_LOG)
        )
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(_scale_problem(prep, i, _IV_SCALE_LOG) or _overflow_problem(prep, i))


def _as_bool(name: str, value: ArrayLike) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iu":
        flat = arr.reshape(-1)
        bad = np.flatnonzero((flat != 0) & (flat != 1))
        if bad.size:
            raise ValueError(
                f"{name}: invalid value {flat[bad[0]]!r} at index {_index_str(int(bad[0]), arr.shape)}"
                " (must be a boolean, or 0/1)"
            )
        return arr.astype(np.bool_)
    raise ValueError(f"{name}: must be booleans (True for calls), got dtype {arr.dtype}")


class _Prepared(NamedTuple):
    flat: list[np.ndarray]  # 1-d, C-contiguous, length 1 or n, in argument order, is_call last
    shape: tuple[int, ...]  # the broadcast shape
    named: dict[str, FloatArray]  # the float arguments as given (for naming a bad value)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _prepare(named: dict[str, Any], is_call: ArrayLike) -> _Prepared:
    """Convert, broadcast and flatten; the kernels check the values (see ``_bsm.inputs_ok``)."""
    floats = {name: _as_float(name, value) for name, value in named.items()}
    arrays = [*floats.values(), _as_bool("is_call", is_call)]
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(f"{name}{a.shape}" for name, a in zip([*named, "is_call"], arrays, strict=True))
        raise ValueError(f"shapes do not broadcast together: {shapes}") from None
    flat = []
    for a in arrays:
        if a.size == 1:
            flat.append(np.ascontiguousarray(a.reshape(1)))
        elif a.shape == shape:
            flat.append(np.ascontiguousarray(a).reshape(-1))
        else:  # partial broadcast (e.g. (n, 1) against (1, m)): materialise once
            flat.append(np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1))
    return _Prepared(flat, shape, floats)


def _market(spot: Any, strike: Any, t: Any, rate: Any, div_yield: Any, vol: Any) -> dict[str, Any]:
    """The market arguments of a pricing call by name, in the kernels' order."""
    return {"spot": spot, "strike": strike, "t": t, "rate": rate, "div_yield": div_yield, "vol": vol}


def _quotes(price: Any, spot: Any, strike: Any, t: Any, rate: Any, div_yield: Any) -> dict[str, Any]:
    """The arguments of an implied-vol call by name, in the kernels' order."""
    return {"price": price, "spot": spot, "strike": strike, "t": t, "rate": rate, "div_yield": div_yield}


def _vols(
    out: np.ndarray, status: np.ndarray, shape: tuple[int, ...], return_status: bool
) -> FloatArray | tuple[FloatArray, np.ndarray]:
    """Implied vols (and their status codes if ``return_status``) in the broadcast ``shape``."""
    vol = out.reshape(shape)
    return (vol, status.reshape(shape)) if return_status else vol


def _escrowed(
    prep: _Prepared, i_spot: int, dividends: Any
) -> tuple[list[np.ndarray], _dividend.Escrowed | None]:
    """The kernel inputs with the spot at ``i_spot`` replaced by the escrowed spot (``_dividend``).

    Without dividends, the inputs as they are (today's results bit for bit). Time and rate follow
    the spot, then the rate and the yield, in every kernel's argument order.
    """
    if dividends is None:
        return prep.flat, None
    schedule = _dividend.as_schedule(dividends)
    if not prep.size:
        return prep.flat, None
    spot, t, rate, div_yield = (prep.flat[i_spot + j] for j in (0, 2, 3, 4))
    esc = _dividend.escrowed(spot, t, rate, div_yield, schedule, prep.shape)
    return [*prep.flat[:i_spot], esc.s_star, *prep.flat[i_spot + 1 :]], esc


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    dividends: Any = None,
) -> Greeks:
    """Black-Scholes-Merton price and Greeks of European options, vectorised.

    Parameters
    ----------
    spot, strike : array_like of float
        Underlying price and strike, > 0.
    t : array_like of float
        Time to expiry in years (ACT/365). ``t <= 0`` means expired.
    rate, div_yield : array_like of float
        Continuously compounded risk-free rate and dividend yield, as decimals (0.04).
    vol : array_like of float
        Volatility as a decimal (0.20), >= 0.
    is_call : array_like of bool
        True for calls, False for puts (0/1 integers are accepted).
    dividends : (ex_times, amounts) or None, keyword-only
        One schedule of cash dividends for every option: ex-dividend times in years from
        valuation (>= 0) and cash amounts (>= 0), 1-d and of equal length. Priced in the escrowed
        model (``optmm.greeks._dividend``): Black-Scholes-Merton on the spot less the dividends
        paid before each option's expiry, discounted at the carry ``r - q``; a dividend on or
        after expiry does not count. ``None`` (the default) is the plain model.

    Returns
    -------
    Greeks
        Eight float64 arrays of the broadcast shape of the inputs (0-d if all are scalars).

    Raises
    ------
    ValueError
        Naming the argument and the first bad index: NaN or infinite values, spot or strike <= 0,
        vol < 0, non-boolean ``is_call``, shapes that do not broadcast, what is not a real number
        (booleans, text, complex, ``Decimal``, datetime64 / timedelta64), or inputs whose result
        overflows a float64 (e.g. ``exp(-rate * t)`` with ``|rate * t| > ~700``); a malformed dividend
        schedule, or dividends before expiry worth the spot or more.

    Notes
    -----
    Units are those of plain partial derivatives: vega per 1.00 of vol (divide by 100 for a vol
    point), theta per year (divide by 365 for a calendar day), rho per 1.00 of rate.

    Expired options (``t <= 0``) are worth intrinsic value with delta 1 (call) or -1 (put) when
    strictly in the money, else 0, and all other Greeks 0. Zero vol gives the discounted forward
    intrinsic, with gamma, vega, vanna and volga 0. No NaN is ever produced from valid input;
    deep in- and out-of-the-money options use the complementary error function, so their prices
    keep full relative precision until they underflow.

    Examples
    --------
    Hull's example (S=49, K=50, r=5%, sigma=20%, T=20 weeks):

    >>> g = bsm_greeks(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.20, True)
    >>> print(f"{g.price:.4f} {g.delta:.4f} {g.gamma:.4f} {g.vega / 100:.4f}")
    2.4005 0.5216 0.0655 0.1211
    """
    prep = _prepare(_market(spot, strike, t, rate, div_yield, vol), is_call)
    outs = [np.empty(prep.size, dtype=np.float64) for _ in range(_bsm.N_OUTPUTS)]
    flat, esc = _escrowed(prep, 0, dividends)
    if prep.size and _bsm.greeks_kernel(*flat, *outs):
        _raise_first_invalid(prep, outs)
    if esc is not None:
        _dividend.adjust_greeks(outs, flat[3], flat[4], esc)
    return Greeks(*(out.reshape(prep.shape) for out in outs))


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    dividends: Any = None,
) -> FloatArray:
    """Black-Scholes-Merton price alone (faster than :func:`bsm_greeks`); same arguments and rules.

    Returns
    -------
    ndarray of float64
        Prices, of the broadcast shape of the inputs.

    Examples
    --------
    >>> c = bsm_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, True)
    >>> p = bsm_price(100.0, 100.0, 1.0, 0.05, 0.0, 0.2, False)
    >>> print(f"{c:.6f} {p:.6f}")
    10.450584 5.573526
    """
    prep = _prepare(_market(spot, strike, t, rate, div_yield, vol), is_call)
    out = np.empty(prep.size, dtype=np.float64)
    if prep.size and _bsm.price_kernel(*_escrowed(prep, 0, dividends)[0], out):
        _raise_first_invalid(prep, [out])
    return out.reshape(prep.shape)


def implied_vol(
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
    """Black-Scholes-Merton implied volatility, vectorised.

    Parameters
    ----------
    price : array_like of float
        Option prices, >= 0.
    spot, strike, t, rate, div_yield, is_call, dividends
        As in :func:`bsm_greeks`.
    return_status : bool, keyword-only
        Also return why each vol is what it is.

    Returns
    -------
    vol : ndarray of float64
        Implied vols (decimals) of the broadcast shape; NaN exactly where no vol reproduces the
        price: below the discounted forward intrinsic, at or above the no-arbitrage maximum, or
        expired (``t <= 0``). A price exactly at the discounted forward intrinsic gives 0.0.
    status : ndarray of int8, only if ``return_status``
        :class:`IVStatus` codes, same shape.

    Notes
    -----
    In-the-money prices are solved through their out-of-the-money counterpart (put-call parity).
    The vol is exact to about 1e-15 relative in the total vol ``sigma sqrt(t)`` wherever the price
    itself determines it: where a price's last digit moves the vol by more (very high
    ``sigma sqrt(t)``, or a time value of a few ulps of the price), the error is that of the price.

    Examples
    --------
    >>> p = bsm_price(100.0, [90.0, 110.0], 0.5, 0.03, 0.01, 0.25, False)
    >>> implied_vol(p, 100.0, [90.0, 110.0], 0.5, 0.03, 0.01, False).round(12)
    array([0.25, 0.25])
    >>> vol, status = implied_vol(200.0, 100.0, 100.0, 1.0, 0.0, 0.0, True, return_status=True)
    >>> print(vol, IVStatus(status).name)
    nan ABOVE_MAXIMUM
    """
    prep = _prepare(_quotes(price, spot, strike, t, rate, div_yield), is_call)
    out = np.empty(prep.size, dtype=np.float64)
    status = np.empty(prep.size, dtype=np.int8)
    if prep.size:
        if _iv.iv_kernel(*_escrowed(prep, 1, dividends)[0], out, status):
            _raise_first_invalid(prep, [])
        _check_iv_scale(prep)
    return _vols(out, status, prep.shape, return_status)
