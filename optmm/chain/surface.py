"""The fitted surface: one :class:`~optmm.chain.smile.Smile` per expiry, free of calendar arbitrage.

Each expiry ``i`` has a forward ``F_i`` (from put-call parity) and a fitted total variance smile
``w_i(k)`` in ``k = ln(K / F_i)``. Calendar repair is part of the surface: the total variance of
expiry ``i`` is

    W_i(k) = max(w_1(k), ..., w_i(k))

so that it never falls with maturity at any log-moneyness. The maximum of smiles free of butterfly
arbitrage is free of it too (where it switches from one to another the total variance has a convex
kink: a point mass of positive density). Between expiries ``W`` is linear in ``t`` at fixed ``k`` and
``ln F`` is linear in ``t``; before the first expiry and after the last, the implied vol of the
nearest expiry (at its own forward's moneyness) is held, as for the other surfaces.

The surface keeps the forwards it was fitted with: the ``forward`` argument of :meth:`vol` is not
used (the vol at an absolute strike is what the quotes said; sticky strike). A market with
``sticky = "moneyness"`` moves it with spot as for any surface (``Market.vols``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optmm.chain.smile import Smile
from optmm.surface import SurfaceError, _broadcast_query, _increasing_times, _vector
from optmm.typing import ArrayLike, FloatArray

__all__ = ["FittedSurface"]

_PARAMS = ("a", "b", "rho", "m", "sigma")


@dataclass(frozen=True, eq=False)
class FittedSurface:
    """Fitted smiles per expiry (see the module notes).

    Parameters
    ----------
    expiries : ndarray of float64, shape (m,)
        Years (ACT/365) from the valuation date, > 0 and strictly increasing.
    forwards : ndarray of float64, shape (m,)
        The fitted forward of each expiry, > 0.
    a, b, rho, m, sigma : ndarray of float64, shape (m,) each
        Raw SVI parameters of each expiry's smile.
    knots, coef : list of ndarray of float64, m entries
        Each expiry's spline knots (``n + 2``, increasing) and coefficients (``n - 2``); both empty
        for a pure SVI smile.
    diagnostics : dict
        The fit's figures per expiry (written to and read from TOML; not compared by ``==``).
    """

    expiries: FloatArray
    forwards: FloatArray
    a: FloatArray
    b: FloatArray
    rho: FloatArray
    m: FloatArray
    sigma: FloatArray
    knots: list[FloatArray]
    coef: list[FloatArray]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    _smiles: list[Smile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expiries = _increasing_times("expiries", self.expiries)
        n = expiries.size
        arrays = {"forwards": _vector("forwards", self.forwards)}
        for name in _PARAMS:
            arrays[name] = _vector(name, getattr(self, name))
        for name, arr in arrays.items():
            if arr.size != n:
                raise SurfaceError(name, f"has {arr.size} values for {n} expiries")
        if (arrays["forwards"] <= 0).any():
            raise SurfaceError("forwards", "must be > 0")
        if not (arrays["b"] >= 0).all():
            raise SurfaceError("b", "must be >= 0")
        if not (np.abs(arrays["rho"]) < 1).all():
            raise SurfaceError("rho", "must satisfy |rho| < 1")
        if not (arrays["sigma"] > 0).all():
            raise SurfaceError("sigma", "must be > 0")
        if len(self.knots) != n or len(self.coef) != n:
            raise SurfaceError("knots", f"need one knot list and one coef list per expiry ({n})")
        knots, coef = [], []
        for i in range(n):
            kn = np.array(self.knots[i], dtype=np.float64).reshape(-1)
            cf = np.array(self.coef[i], dtype=np.float64).reshape(-1)
            if kn.size or cf.size:
                if kn.size < 5 or cf.size != kn.size - 4 or np.any(np.diff(kn) <= 0):
                    raise SurfaceError(
                        "knots", f"expiry {i}: need n + 2 >= 5 increasing knots and n - 2 coefs"
                    )
                if not (np.isfinite(kn).all() and np.isfinite(cf).all()):
                    raise SurfaceError("coef", f"expiry {i}: must be finite")
            knots.append(kn)
            coef.append(cf)
        object.__setattr__(self, "expiries", expiries)
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "knots", knots)
        object.__setattr__(self, "coef", coef)
        # each expiry's Smile made once (its spline is built on first use and kept)
        smiles = []
        for i in range(n):
            a, b, rho, m, sigma = (float(arrays[p][i]) for p in _PARAMS)
            smiles.append(Smile(a, b, rho, m, sigma, knots=knots[i], coef=coef[i]))
        object.__setattr__(self, "_smiles", smiles)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        same = all(
            np.array_equal(getattr(self, n), getattr(other, n)) for n in ("expiries", "forwards", *_PARAMS)
        )
        return same and all(
            np.array_equal(x, y)
            for xs, ys in ((self.knots, other.knots), (self.coef, other.coef))
            for x, y in zip(xs, ys, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def smile(self, i: int) -> Smile:
        """Expiry ``i``'s own fitted smile (before calendar repair)."""
        return self._smiles[i]

    def total_variance(self, k: ArrayLike, i: int) -> FloatArray:
        """Calendar-repaired total variance ``W_i(k)`` of expiry ``i`` at log-moneyness ``k``."""
        return self.total_variances(k, i + 1)[i]

    def total_variances(self, k: ArrayLike, n: int | None = None) -> FloatArray:
        """Calendar-repaired total variances ``W_i(k)`` of the first ``n`` expiries (default all) at
        log-moneyness ``k``, shape ``(n, *k.shape)``: the running maximum of the smiles, floored at 0."""
        kk = np.asarray(k, dtype=np.float64)
        out = np.empty((self.expiries.size if n is None else n, *kk.shape))
        running = np.full(kk.shape, -np.inf)
        for i in range(out.shape[0]):
            running = np.maximum(running, self.smile(i).total_variance(kk))
            out[i] = np.maximum(running, 0.0)
        return out

    def forward(self, t: ArrayLike) -> FloatArray:
        """The surface's forward at ``t``: log-linear between expiries, held flat outside."""
        tt = np.asarray(t, dtype=np.float64)
        return np.exp(np.interp(tt, self.expiries, np.log(self.forwards)))

    def vol(self, strike: ArrayLike, t: ArrayLike, forward: ArrayLike) -> FloatArray:
        """Implied vols at absolute ``strike`` and ``t`` (``forward`` unused; see the module notes).

        Returns
        -------
        ndarray of float64, the broadcast shape
            Implied vols (decimals), >= 0.
        """
        kk, tt, _ = _broadcast_query(strike, t, forward)
        if (kk <= 0).any():
            raise ValueError("strike: must be > 0")
        shape = kk.shape
        kk, tt = kk.reshape(-1), tt.reshape(-1)
        ex = self.expiries
        n = ex.size
        k = np.log(kk / self.forward(tt))
        out = np.empty(kk.size)
        j = np.clip(np.searchsorted(ex, tt, side="right") - 1, 0, n - 1)
        before = tt <= ex[0]
        after = tt >= ex[-1]
        node = np.isin(tt, ex)
        # calendar-repaired variance at every expiry up to the last needed, at these k
        last = int(j.max()) + 1 if n > 1 else 0
        wk = self.total_variances(k, min(last, n - 1) + 1)
        rows = np.arange(kk.size)
        w_lo = wk[j, rows]
        v_lo = np.sqrt(w_lo / ex[j])
        out[:] = v_lo
        inner = ~before & ~after & ~node
        if inner.any():
            jj = j[inner]
            frac = (tt[inner] - ex[jj]) / (ex[jj + 1] - ex[jj])
            w = w_lo[inner] + (wk[jj + 1, rows[inner]] - w_lo[inner]) * frac
            out[inner] = np.sqrt(np.maximum(w, 0.0) / tt[inner])
        out[before] = np.sqrt(wk[0, before] / ex[0])
        return out.reshape(shape)
