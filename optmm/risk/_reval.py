"""Shared pieces of the book revaluation (exposures and the scenario engine): underlying codes,
contract numbering and per-group sums, over the rows of a book without building frames."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numba import njit, prange

from optmm.book import Book
from optmm.risk._kernels import _bits, _mix, contract_hashes, first_rows
from optmm.typing import FloatArray
from optmm.units import (
    gamma_dollars_1pct,
    rho_per_pct,
    theta_per_day,
    vanna_per_vol_point,
    vega_per_vol_point,
    volga_per_vol_point2,
)

__all__ = [
    "contract_keys",
    "dense_codes",
    "float_codes",
    "group_sums",
    "int_codes",
    "smile_points",
    "stable_order",
    "trader_units",
    "underlying_codes",
]


def underlying_codes(book: Book) -> tuple[np.ndarray, np.ndarray]:
    """The book's underlyings (sorted, object array) and each row's index into them."""
    codes, uniq = pd.factorize(np.asarray(book.underlying, dtype=object), sort=True)
    return np.asarray(uniq, dtype=object), codes.astype(np.intp, copy=False)


def stable_order(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``numpy.argsort(codes, kind="stable")`` for codes in ``[0, n_codes)``, by a radix sort when
    they fit 16 bits (numpy sorts 16-bit integers in linear time)."""
    small = codes.astype(np.uint16) if n_codes <= 1 << 16 else codes
    return np.argsort(small, kind="stable")


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``numpy.unique(values, return_inverse=True)`` for int64 values, by counting when their range
    is at most about 8 times their number (no sort)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size == 0:
        return values.copy(), np.zeros(0, dtype=np.intp)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 8 * values.size + 1024:
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.reshape(-1)
    offset = values - lo
    present = np.bincount(offset, minlength=hi - lo + 1) > 0
    remap = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, remap[offset]


@njit(cache=True)
def _first_of(codes, n_codes):  # pragma: no cover - compiled
    """The first index of each code in ``[0, n_codes)`` (every code present)."""
    first = np.full(n_codes, -1, dtype=np.int64)
    for i in range(codes.shape[0]):
        if first[codes[i]] < 0:
            first[codes[i]] = i
    return first


@njit(cache=True)
def int_codes(keys):  # pragma: no cover - compiled
    """Number the distinct values of ``keys`` (int64, 1-d) in order of first appearance:
    ``(codes, count)``, as :func:`pandas.factorize`. A hash table that starts small and doubles, so
    that a few thousand distinct values stay in the cache."""
    n = keys.shape[0]
    bits = 10
    table = np.full(1 << bits, -1, dtype=np.int64)
    seen = np.empty(16, dtype=np.int64)
    codes = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        key = keys[i]
        mask = (1 << bits) - 1
        slot = np.int64(_mix(np.uint64(0), np.uint64(key)) >> np.uint64(64 - bits))
        while True:
            j = table[slot]
            if j < 0:
                if count == seen.shape[0]:
                    grown = np.empty(2 * count, dtype=np.int64)
                    grown[:count] = seen
                    seen = grown
                seen[count] = key
                table[slot] = count
                codes[i] = count
                count += 1
                if 2 * count > table.shape[0]:  # rehash into a table twice the size
                    bits += 1
                    table = np.full(1 << bits, -1, dtype=np.int64)
                    for c in range(count):
                        sl = np.int64(_mix(np.uint64(0), np.uint64(seen[c])) >> np.uint64(64 - bits))
                        while table[sl] >= 0:
                            sl = (sl + 1) & ((1 << bits) - 1)
                        table[sl] = c
                break
            if seen[j] == key:
                codes[i] = j
                break
            slot = (slot + 1) & mask
    return codes, count


@njit(cache=True)
def float_codes(x):  # pragma: no cover - compiled
    """:func:`int_codes` of float64 values, equal when their values are (-0.0 as 0.0, every NaN
    one value)."""
    keys = np.empty(x.shape[0], dtype=np.int64)
    for i in range(x.shape[0]):
        keys[i] = _bits(x[i])
    return int_codes(keys)


def smile_points(uidx: np.ndarray, t: FloatArray, strike: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (underlying, t, strike) points of rows: ``(first, of_row)``, the first row of
    each point and each row's point (a vol surface answers per point, and positions repeat them).
    Floats are equal when their values are."""
    n = uidx.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    t_code, n_t = float_codes(np.ascontiguousarray(t, dtype=np.float64))
    k_code, n_k = float_codes(np.ascontiguousarray(strike, dtype=np.float64))
    if (int(uidx.max()) + 1) * n_t * n_k >= 1 << 62:  # the packed key would overflow: one point a row
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    # (underlying, strike) pairs first, then with t: two small ranges to count instead of one large
    _, pair_code = dense_codes(uidx.astype(np.int64) * n_k + k_code)
    uniq, codes = dense_codes(pair_code * n_t + t_code)
    return _first_of(codes, uniq.size), codes


def _float_key(x: np.ndarray) -> np.ndarray:
    """The bits of a float64 array as int64 keys that are equal exactly when the values are equal,
    every NaN being one value (as :func:`pandas.factorize`): -0.0 becomes 0.0, NaNs one NaN."""
    return np.where(np.isnan(x), np.nan, x + 0.0).view(np.int64)


def contract_keys(
    uidx: np.ndarray, kind: np.ndarray, strike: FloatArray, t: FloatArray, override: FloatArray, american
) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct contracts of option rows in order of first appearance: ``(ids, first)``,
    ``ids`` per row and ``first`` the first row of each contract. A contract is (underlying, kind,
    strike, time to settlement, vol override, style); floats are equal when their values are, and
    every NaN (no override) is one value."""
    cols = (
        np.ascontiguousarray(uidx, dtype=np.int64),
        np.ascontiguousarray(kind, dtype=np.int64),
        np.ascontiguousarray(strike, dtype=np.float64),
        np.ascontiguousarray(t, dtype=np.float64),
        np.ascontiguousarray(override, dtype=np.float64),
        np.ascontiguousarray(american, dtype=np.int64),
    )
    codes, n_codes = int_codes(contract_hashes(*cols).view(np.int64))  # in order of first appearance
    first = first_rows(*cols, codes, n_codes)
    if first.size != n_codes:  # two contracts with one 64-bit hash: number the fields themselves
        keys = [c if c.dtype == np.int64 else _float_key(c) for c in cols]
        codes, uniq = pd.MultiIndex.from_arrays(keys).factorize()
        first = first_rows(*cols, codes, len(uniq))
    return codes.astype(np.int64, copy=False), first


@njit(cache=True)
def _kahan_group_sums(values, labels, out):  # pragma: no cover - compiled
    """``out[g, j]`` = compensated (Kahan) sum of ``values[j][i]`` over rows ``i`` with label ``g``,
    in row order, NaNs skipped: the arithmetic of pandas' groupby sum, so the same figures."""
    comp = np.zeros_like(out)
    for i in range(labels.shape[0]):
        g = labels[i]
        for j in range(len(values)):
            val = values[j][i]
            if val != val:
                continue
            y = val - comp[g, j]
            t = out[g, j] + y
            comp[g, j] = t - out[g, j] - y
            if comp[g, j] != comp[g, j]:  # an infinite value: keep the sum infinite, not NaN
                comp[g, j] = 0.0
            out[g, j] = t


def group_sums(values: Sequence[FloatArray], labels: np.ndarray, n_groups: int) -> FloatArray:
    """Sums of each of ``values`` (1-d float arrays of the rows) per label: shape (n_groups,
    len(values)), as ``DataFrame.groupby(labels).sum()`` computes them."""
    out = np.zeros((n_groups, len(values)))
    if len(values) and len(labels):
        _kahan_group_sums(
            tuple(np.ascontiguousarray(v, dtype=np.float64) for v in values),
            np.ascontiguousarray(labels, dtype=np.intp),
            out,
        )
    return out


@njit(cache=True, parallel=True)
def _trader_units(qm, s, price, delta, gamma, vega, theta, rho, vanna, volga, out):  # pragma: no cover
    # numpy's operations in numpy's order (no fused multiply-add): the same figures
    for i in prange(qm.shape[0]):
        q = qm[i]
        d = q * delta[i]
        out[0, i] = q * price[i]
        out[1, i] = d
        out[2, i] = d * s[i]
        out[3, i] = gamma_dollars_1pct(q, gamma[i], s[i])
        out[4, i] = vega_per_vol_point(q, vega[i])
        out[5, i] = theta_per_day(q, theta[i])
        out[6, i] = rho_per_pct(q, rho[i])
        out[7, i] = vanna_per_vol_point(q, vanna[i])
        out[8, i] = volga_per_vol_point2(q, volga[i])


def trader_units(qm: FloatArray, s: FloatArray, greeks: dict[str, FloatArray]) -> FloatArray:
    """The exposure figures of positions in trader units, shape (9, n), rows in the order of
    :data:`optmm.risk.exposures.EXPOSURE_COLUMNS`: value, delta in shares and dollars, dollar gamma
    per 1%, vega per vol point, theta per day, rho per 1%, vanna per vol point, volga per vol point^2
    (``qm`` quantity x multiplier, ``s`` the spot, ``greeks`` per unit)."""
    out = np.empty((9, qm.size))
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    _trader_units(
        np.ascontiguousarray(qm), np.ascontiguousarray(s),
        *(np.ascontiguousarray(greeks[k], dtype=np.float64) for k in names), out,
    )  # fmt: skip
    return out
