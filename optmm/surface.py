"""Implied-volatility surfaces: flat, a strike x expiry table, and raw SVI slices.

Conventions shared by every surface:

- ``t`` is time to expiry in years, ACT/365 from the market's valuation date (see
  :meth:`optmm.market.Market.year_fraction`); ``t <= 0`` (expired) is allowed and gets the vol of the
  first expiry.
- ``strike`` and ``forward`` are absolute prices; the caller supplies the forward
  ``F = S e^{(r - q) t}`` (only surfaces defined in log-moneyness ``k = ln(K / F)`` use it).
- vols are decimals (0.20 = 20 vol points), returned as float64 arrays of the broadcast shape of
  ``(strike, t, forward)``.
- Between expiries every surface interpolates linearly in total variance ``w = vol^2 t`` at a fixed
  strike (table) or a fixed log-moneyness (SVI); before the first expiry and after the last it holds
  the implied vol of the nearest expiry constant.

Bad parameters are refused when a surface is built, with a :class:`SurfaceError` that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from optmm.typing import (
    MAX_VOL,
    MAX_YEARS,
    MIN_VOL,
    PRICE_RANGE,
    ArrayLike,
    FloatArray,
    WrongTypeError,
    real_array,
)

__all__ = ["FlatSurface", "SVISurface", "SurfaceError", "TableSurface", "VolSurface"]


class SurfaceError(ValueError):
    """A surface parameter is invalid; ``field`` names it and ``problem`` says what is wrong.

    The message is ``"field '<field>': <problem>"``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")
        self.field = field
        self.problem = problem


@runtime_checkable
class VolSurface(Protocol):
    """What a vol surface provides: implied vols at absolute strikes and times to expiry."""

    def vol(self, strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> FloatArray:
        """Implied vols (decimals) at ``strike`` (price units) and ``t`` (years, ACT/365).

        Parameters
        ----------
        strike, t, forward : array_like
            Absolute strikes, times to expiry in years and the forwards ``S e^{(r - q) t}`` at those
            times; they broadcast together like numpy arrays.

        Returns
        -------
        ndarray of float64, the broadcast shape
            Implied vols, finite and >= 0.
        """
        ...


# --------------------------------------------------------------------------------------------------
# helpers

MIN_EXPIRY = 1e-6
"""Shortest expiry of a surface slice, in years (about 30 seconds); the vol divides by it."""
_VOL_BOUND = (
    f"must be within the plausible range [{MIN_VOL:g}, {MAX_VOL:g}] (a decimal: 0.20 is 20 vol points)"
)
# Plausible magnitudes of the raw SVI parameters: they keep every total variance finite (a few 1e7
# at the most extreme log-moneyness of two float64 prices), so no vol overflows to inf.
_SVI_BOUNDS = {"a": 1e4, "b": 1e4, "m": 1e2, "sigma": 1e2}


def _broadcast_query(strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> tuple[FloatArray, ...]:
    """Convert to float64, broadcast, and check that the values are finite (``ValueError`` if not)."""
    arrays = []
    for name, value in (("strike", strike), ("t", t), ("forward", forward)):
        try:
            arr = real_array(value).astype(np.float64, copy=False)
        except WrongTypeError as exc:
            raise ValueError(f"{name}: {exc.problem}{_at(exc.index, np.shape(value))}") from None
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(
                f"{name}: invalid value {float(arr.reshape(-1)[i])!r} at index {i} (must be finite)"
            )
        arrays.append(arr)
    try:
        return tuple(np.broadcast_arrays(*arrays))
    except ValueError:
        shapes = ", ".join(f"{n}{a.shape}" for n, a in zip(("strike", "t", "forward"), arrays, strict=True))
        raise ValueError(f"shapes do not broadcast together: {shapes}") from None


def _at(index: int | None, shape: tuple[int, ...]) -> str:
    if index is None:
        return ""
    where = tuple(int(j) for j in np.unravel_index(index, shape)) if len(shape) > 1 else index
    return f" at index {where}"


def _floats(name: str, value: ArrayLike) -> FloatArray:
    """A float64 copy of ``value``, which must be real numbers (no booleans, text, Decimal...)."""
    try:
        return np.array(real_array(value), dtype=np.float64, copy=True)
    except WrongTypeError as exc:
        raise SurfaceError(name, f"{exc.problem}{_at(exc.index, np.shape(value))}") from None


def _vector(name: str, value: ArrayLike) -> FloatArray:
    """A 1-d, finite float64 copy of ``value``."""
    arr = _floats(name, value)
    if arr.ndim != 1 or arr.size == 0:
        raise SurfaceError(name, f"must be a non-empty 1-d array, got shape {arr.shape}")
    _require(name, np.isfinite(arr), arr, "must be finite")
    return arr


def _require(name: str, ok: np.ndarray, values: np.ndarray, rule: str, what: str = "index") -> None:
    """Raise a SurfaceError naming the first element where ``ok`` is False."""
    if not ok.all():
        i = int(np.flatnonzero(~ok.reshape(-1))[0])
        where = str(tuple(int(j) for j in np.unravel_index(i, ok.shape))) if ok.ndim > 1 else str(i)
        raise SurfaceError(name, f"{rule}, got {float(values.reshape(-1)[i])!r} at {what} {where}")


def _log_moneyness(strike: FloatArray, forward: FloatArray) -> FloatArray:
    """``ln(K / F)``; where the ratio leaves the float range, ``ln K - ln F`` instead."""
    with np.errstate(over="ignore", under="ignore"):
        ratio = strike / forward
    extreme = (ratio == 0.0) | (ratio == np.inf)
    if not extreme.any():
        return np.log(ratio)
    k = np.log(np.where(extreme, 1.0, ratio))
    k[extreme] = np.log(strike[extreme]) - np.log(forward[extreme])
    return k


def _increasing_times(name: str, value: ArrayLike) -> FloatArray:
    arr = _vector(name, value)
    _require(name, arr > 0.0, arr, "must be > 0 (years after the valuation date)")
    _require(
        name,
        (arr >= MIN_EXPIRY) & (arr <= MAX_YEARS),
        arr,
        f"must be within the plausible range [{MIN_EXPIRY:g}, {MAX_YEARS:g}] years",
    )
    _require(name, np.diff(arr) > 0.0, arr[1:], "must be strictly increasing")
    return arr


def _time_bracket(
    expiries: FloatArray, t: FloatArray
) -> tuple[np.ndarray, FloatArray, np.ndarray, np.ndarray]:
    """Locate ``t`` among ``expiries``.

    Returns ``(j, frac, before, after)``: ``j`` the index of the expiry at or below ``t`` (clipped to
    ``[0, m - 2]``, or 0 when m == 1), ``frac`` the fraction of the way from ``expiries[j]`` to
    ``expiries[j + 1]`` (0 exactly at a node), and masks for ``t`` at or before the first expiry and at
    or after the last.
    """
    m = expiries.size
    before = t <= expiries[0]
    after = t >= expiries[-1]
    if m == 1:
        zero = np.zeros(t.shape, dtype=np.intp)
        return zero, np.zeros(t.shape), before, after
    j = np.clip(np.searchsorted(expiries, t, side="right") - 1, 0, m - 2)
    t_lo, t_hi = expiries[j], expiries[j + 1]
    frac = np.clip((t - t_lo) / (t_hi - t_lo), 0.0, 1.0)
    return j, frac, before, after


def _interpolate_variance(
    v_lo: FloatArray,
    v_hi: FloatArray,
    w_lo: FloatArray,
    w_hi: FloatArray,
    t: FloatArray,
    frac: FloatArray,
    before: np.ndarray,
    after: np.ndarray,
    v_first: FloatArray,
    v_last: FloatArray,
) -> FloatArray:
    """Implied vol from the bracketing slices' vols and total variances (linear in total variance).

    Exactly at a node (``frac == 0``) the node's vol is returned unchanged.
    """
    out = np.where(frac == 0.0, v_lo, v_hi)  # frac is 0 or 1 only at nodes; overwritten below otherwise
    inner = ~before & ~after & (frac != 0.0)
    if inner.any():
        w = w_lo[inner] + (w_hi[inner] - w_lo[inner]) * frac[inner]
        out[inner] = np.sqrt(np.maximum(w, 0.0) / t[inner])
    out[before] = v_first[before]
    out[after] = v_last[after]
    return out


def _span(values: FloatArray) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.6g}" if lo == hi else f"{lo:.6g}..{hi:.6g}"


class _ArrayFieldsMixin:
    """Equality and hashing by value for frozen dataclasses whose fields are numpy arrays."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)  # type: ignore[arg-type]
        )

    def __hash__(self) -> int:
        return hash(tuple(np.asarray(getattr(self, f.name)).tobytes() for f in fields(self)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# flat


class _FlatVol(float):
    """The level of a :class:`FlatSurface`: a float that is also the surface's ``vol`` method.

    ``FlatSurface(0.2).vol`` is the number 0.2 (it compares, prints and computes as a float), and
    ``FlatSurface(0.2).vol(strike, t, forward)`` is the :class:`VolSurface` method, which returns 0.2
    in the broadcast shape of its arguments.
    """

    __slots__ = ()

    def __call__(self, strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> FloatArray:
        strike_b, _, _ = _broadcast_query(strike, t, forward)
        return np.full(strike_b.shape, float(self))


@dataclass(frozen=True)
class FlatSurface:
    """The same implied vol at every strike and expiry.

    Parameters
    ----------
    vol : float
        The vol, a decimal, finite and > 0.

    Notes
    -----
    ``vol`` is both the parameter and the :class:`VolSurface` method: the attribute is a ``float``
    that can be called as ``vol(strike, t, forward)``.

    Examples
    --------
    >>> s = FlatSurface(0.2)
    >>> float(s.vol)
    0.2
    >>> s.vol([90.0, 110.0], 0.5, 100.0)
    array([0.2, 0.2])
    """

    vol: _FlatVol  # built from a float; see Notes

    if TYPE_CHECKING:  # the constructor takes a plain float

        def __init__(self, vol: float) -> None: ...

    def __post_init__(self) -> None:
        try:
            arr = real_array(self.vol)
        except WrongTypeError:
            arr = np.zeros(1)
        if arr.ndim:
            raise SurfaceError("vol", f"must be a number, got {self.vol!r}")
        level = float(arr)
        if not (np.isfinite(level) and level > 0.0):
            raise SurfaceError("vol", f"must be finite and > 0, got {level!r}")
        if not MIN_VOL <= level <= MAX_VOL:
            raise SurfaceError("vol", f"{_VOL_BOUND}, got {level!r}")
        object.__setattr__(self, "vol", _FlatVol(level))


# --------------------------------------------------------------------------------------------------
# table


@dataclass(frozen=True, eq=False)
class TableSurface(_ArrayFieldsMixin):
    """Implied vols on a grid of expiries x absolute strikes.

    Parameters
    ----------
    expiries : ndarray of float64, shape (m,)
        Times to expiry in years (ACT/365), > 0 and strictly increasing.
    strikes : ndarray of float64, shape (k,)
        Absolute strikes, > 0 and strictly increasing.
    vols : ndarray of float64, shape (m, k)
        Implied vols (decimals), finite and > 0; ``vols[i, j]`` at ``expiries[i]``, ``strikes[j]``.

    Notes
    -----
    Within an expiry the vol is linear in strike between the table's strikes and flat beyond the
    first and last strike. Across expiries the total variance ``w = vol^2 t`` at the same strike is
    linear in ``t``; before the first expiry the first expiry's vol is held constant, after the last
    the last expiry's. At the table's nodes the table's vols are returned exactly. The forward is not
    used (strikes are absolute). Calendar arbitrage (total variance falling with ``t``) is not refused.

    Examples
    --------
    >>> s = TableSurface([0.25, 1.0], [90.0, 110.0], [[0.25, 0.20], [0.22, 0.19]])
    >>> s.vol([90.0, 100.0, 120.0], 0.25, 100.0)
    array([0.25 , 0.225, 0.2  ])
    """

    expiries: FloatArray
    strikes: FloatArray
    vols: FloatArray

    def __post_init__(self) -> None:
        expiries = _increasing_times("expiries", self.expiries)
        strikes = _vector("strikes", self.strikes)
        _require("strikes", strikes > 0.0, strikes, "must be > 0")
        _require(
            "strikes",
            (strikes >= PRICE_RANGE[0]) & (strikes <= PRICE_RANGE[1]),
            strikes,
            f"must be within the plausible range [{PRICE_RANGE[0]:g}, {PRICE_RANGE[1]:g}] (price units)",
        )
        _require("strikes", np.diff(strikes) > 0.0, strikes[1:], "must be strictly increasing")
        vols = _floats("vols", self.vols)
        if vols.shape != (expiries.size, strikes.size):
            raise SurfaceError(
                "vols",
                f"shape {vols.shape} does not match ({expiries.size} expiries, {strikes.size} strikes)",
            )
        _require("vols", np.isfinite(vols) & (vols > 0.0), vols, "must be finite and > 0", "(expiry, strike)")
        _require("vols", (vols >= MIN_VOL) & (vols <= MAX_VOL), vols, _VOL_BOUND, "(expiry, strike)")
        object.__setattr__(self, "expiries", expiries)
        object.__setattr__(self, "strikes", strikes)
        object.__setattr__(self, "vols", vols)

    def __repr__(self) -> str:
        return (
            f"TableSurface({self.expiries.size} expiries {_span(self.expiries)} y, "
            f"{self.strikes.size} strikes {_span(self.strikes)}, vols {_span(self.vols)})"
        )

    def _row_vols(self, rows: np.ndarray, kidx: np.ndarray, kw: FloatArray) -> FloatArray:
        """Vol of table row ``rows`` at the strikes located by ``(kidx, kw)`` (linear, flat wings)."""
        if self.strikes.size == 1:
            return self.vols[rows, 0]
        return (1.0 - kw) * self.vols[rows, kidx] + kw * self.vols[rows, kidx + 1]

    def vol(self, strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> FloatArray:
        """Implied vols at ``strike`` and ``t``; see :class:`VolSurface` and the class notes.

        Parameters
        ----------
        strike, t, forward : array_like
            Absolute strikes, years to expiry, forwards (unused); broadcast together.

        Returns
        -------
        ndarray of float64, the broadcast shape
            Implied vols (decimals), > 0.
        """
        k, tt, _ = _broadcast_query(strike, t, forward)
        shape = k.shape
        k, tt = k.reshape(-1), tt.reshape(-1)
        ks = self.strikes
        if ks.size == 1:
            kidx = np.zeros(k.shape, dtype=np.intp)
            kw = np.zeros(k.shape)
        else:
            kidx = np.clip(np.searchsorted(ks, k, side="right") - 1, 0, ks.size - 2)
            with np.errstate(over="ignore"):  # a strike far beyond the table: +inf, clipped to 1
                kw = np.clip((k - ks[kidx]) / (ks[kidx + 1] - ks[kidx]), 0.0, 1.0)
        j, frac, before, after = _time_bracket(self.expiries, tt)
        m = self.expiries.size
        v_lo = self._row_vols(j, kidx, kw)
        j_hi = np.minimum(j + 1, m - 1)
        v_hi = self._row_vols(j_hi, kidx, kw)
        v_first = self._row_vols(np.zeros_like(j), kidx, kw)
        v_last = self._row_vols(np.full_like(j, m - 1), kidx, kw)
        w_lo = v_lo * v_lo * self.expiries[j]
        w_hi = v_hi * v_hi * self.expiries[j_hi]
        out = _interpolate_variance(v_lo, v_hi, w_lo, w_hi, tt, frac, before, after, v_first, v_last)
        return out.reshape(shape)


# --------------------------------------------------------------------------------------------------
# SVI


@dataclass(frozen=True, eq=False)
class SVISurface(_ArrayFieldsMixin):
    """Raw SVI slices (Gatheral) at a set of expiries.

    At each expiry ``i`` the total implied variance at log-moneyness ``k = ln(K / F)`` is

        w_i(k) = a_i + b_i (rho_i (k - m_i) + sqrt((k - m_i)^2 + sigma_i^2))

    and the implied vol is ``sqrt(w / t)``.

    Parameters
    ----------
    expiries : ndarray of float64, shape (m,)
        Times to expiry in years (ACT/365), > 0 and strictly increasing.
    a, b, rho, m, sigma : ndarray of float64, shape (m,) each
        Raw SVI parameters per expiry: ``a`` level of total variance, ``b >= 0`` slope of the wings,
        ``-1 < rho < 1`` their asymmetry, ``m`` the shift in k, ``sigma > 0`` the curvature at the
        minimum. ``a + b sigma sqrt(1 - rho^2) >= 0`` (the minimum of ``w``) so that ``w >= 0``.

    Notes
    -----
    Between expiries the total variance at a fixed k is linear in ``t``; before the first expiry and
    after the last, the implied vol of the nearest slice at that k is held constant. Butterfly and
    calendar arbitrage are not checked beyond ``w >= 0``.

    Examples
    --------
    >>> s = SVISurface([0.5], a=[0.02], b=[0.1], rho=[-0.5], m=[0.0], sigma=[0.1])
    >>> round(float(s.vol(100.0, 0.5, 100.0)), 12)  # at the money: sqrt((a + b sigma) / t)
    0.244948974278
    """

    expiries: FloatArray
    a: FloatArray
    b: FloatArray
    rho: FloatArray
    m: FloatArray
    sigma: FloatArray

    def __post_init__(self) -> None:
        expiries = _increasing_times("expiries", self.expiries)
        params = {}
        for name in ("a", "b", "rho", "m", "sigma"):
            arr = _vector(name, getattr(self, name))
            if arr.shape != expiries.shape:
                raise SurfaceError(name, f"has {arr.size} values for {expiries.size} expiries")
            params[name] = arr
        a, b, rho, sigma = params["a"], params["b"], params["rho"], params["sigma"]
        for name, bound in _SVI_BOUNDS.items():
            arr = params[name]
            _require(
                name, np.abs(arr) <= bound, arr, f"must be within the plausible range +-{bound:g}", "slice"
            )
        _require("b", b >= 0.0, b, "must be >= 0", "slice")
        _require("rho", np.abs(rho) < 1.0, rho, "must satisfy |rho| < 1", "slice")
        _require("sigma", sigma > 0.0, sigma, "must be > 0", "slice")
        w_min = a + b * sigma * np.sqrt(1.0 - rho * rho)
        _require(
            "a",
            w_min >= 0.0,
            a,
            "makes the minimum total variance a + b sigma sqrt(1 - rho^2) negative",
            "slice",
        )
        object.__setattr__(self, "expiries", expiries)
        for name, arr in params.items():
            object.__setattr__(self, name, arr)

    def __repr__(self) -> str:
        return f"SVISurface({self.expiries.size} slices, expiries {_span(self.expiries)} y)"

    def total_variance(self, k: ArrayLike, slice_index: ArrayLike) -> FloatArray:
        """Raw SVI total variance ``w_i(k)`` of slice ``i`` at log-moneyness ``k`` (broadcast)."""
        i = np.asarray(slice_index, dtype=np.intp)
        x = np.asarray(k, dtype=np.float64) - self.m[i]
        w = self.a[i] + self.b[i] * (self.rho[i] * x + np.sqrt(x * x + self.sigma[i] ** 2))
        return np.maximum(w, 0.0)  # >= 0 mathematically; clip rounding below the minimum

    def vol(self, strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> FloatArray:
        """Implied vols at ``strike``, ``t`` and ``forward``; see :class:`VolSurface` and the notes.

        Parameters
        ----------
        strike, t, forward : array_like
            Absolute strikes (> 0), years to expiry, forwards (> 0); broadcast together.

        Returns
        -------
        ndarray of float64, the broadcast shape
            Implied vols (decimals), >= 0.
        """
        kk, tt, ff = _broadcast_query(strike, t, forward)
        for name, arr in (("strike", kk), ("forward", ff)):
            if (arr <= 0.0).any():
                i = int(np.flatnonzero((arr <= 0.0).reshape(-1))[0])
                raise ValueError(
                    f"{name}: invalid value {float(arr.reshape(-1)[i])!r} at index {i} (must be > 0)"
                )
        shape = kk.shape
        tt = tt.reshape(-1)
        k = _log_moneyness(kk.reshape(-1), ff.reshape(-1))
        n = self.expiries.size
        j, frac, before, after = _time_bracket(self.expiries, tt)
        j_hi = np.minimum(j + 1, n - 1)
        w_lo = self.total_variance(k, j)
        w_hi = self.total_variance(k, j_hi)
        v_lo = np.sqrt(w_lo / self.expiries[j])
        v_hi = np.sqrt(w_hi / self.expiries[j_hi])
        v_first = np.sqrt(self.total_variance(k, 0) / self.expiries[0])
        v_last = np.sqrt(self.total_variance(k, n - 1) / self.expiries[-1])
        out = _interpolate_variance(v_lo, v_hi, w_lo, w_hi, tt, frac, before, after, v_first, v_last)
        return out.reshape(shape)
