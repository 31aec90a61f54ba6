"""Shared pieces of the book revaluation (exposures and the scenario engine): underlying codes,
contract numbering and per-group sums, over the rows of a book without building frames.

Their kernels run interpreted below :data:`PYTHON_BELOW` rows (:func:`optmm._jit.interpreted`): the
same functions, run by Python in a few milliseconds, where numba would spend over a second compiling
them on a book's first run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from optmm._jit import interpreted
from optmm.book import Book
from optmm.risk._kernels import _bits, _mix
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
    "PYTHON_BELOW",
    "contract_keys",
    "dense_codes",
    "float_codes",
    "group_sums",
    "int_codes",
    "pair_codes",
    "smile_points",
    "stable_order",
    "trader_units",
    "underlying_codes",
]

PYTHON_BELOW = 1024
"""Rows below which the kernels of this module run interpreted: about 4 µs a row to number floats,
15 µs to sum a position's exposures (so at most some 15 ms), against over half a second to compile
each kernel the first time and some milliseconds to load it from numba's cache every time after."""


def _kernel(kernel: Any, rows: int, below: int = PYTHON_BELOW) -> Any:
    """``kernel``, or its interpreted form for fewer than ``below`` rows."""
    return interpreted(kernel) if rows < below else kernel


def underlying_codes(book: Book) -> tuple[np.ndarray, np.ndarray]:
    """The book's underlyings (sorted, object array) and each row's index into them
    (:meth:`optmm.book.Book.underlying_index`)."""
    return book.underlying_index()


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
                    for c in range(count):  # a loop: a slice copy compiles run-time shape checks
                        grown[c] = seen[c]
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


@njit(cache=True)
def _table_codes(a, b, n_a, n_b):  # pragma: no cover - compiled
    """:func:`pair_codes` by a table of ``n_a * n_b`` slots."""
    table = np.full(n_a * n_b, -1, dtype=np.int64)
    codes = np.empty(a.shape[0], dtype=np.int64)
    first = np.empty(min(a.shape[0], n_a * n_b), dtype=np.int64)
    count = 0
    for i in range(a.shape[0]):
        slot = a[i] * n_b + b[i]
        c = table[slot]
        if c < 0:
            c = count
            table[slot] = c
            first[c] = i
            count += 1
        codes[i] = c
    return codes, first[:count]


def pair_codes(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct pairs ``(a[i], b[i])`` of codes in ``[0, n_a)`` x ``[0, n_b)`` in order of
    first appearance: ``(codes, first)``, each row's pair and the first row of each pair. By a table
    of every pair when there are at most about 8 times as many as rows (in the cache when they are
    few), else by hashing (``n_a * n_b`` must fit 63 bits)."""
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    if n_a * n_b <= 8 * a.size + 1024:
        return _kernel(_table_codes, a.size)(a, b, n_a, n_b)
    codes, count = _kernel(int_codes, a.size)(a * n_b + b)
    return codes, _kernel(_first_of, a.size)(codes, count)


def smile_points(uidx: np.ndarray, t: FloatArray, strike: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (underlying, t, strike) points of rows: ``(first, of_row)``, the first row of
    each point and each row's point, numbered in order of first appearance (a vol surface answers
    per point, and positions repeat them). Floats are equal when their values are."""
    n = uidx.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    t_code, n_t = _kernel(float_codes, n)(np.ascontiguousarray(t, dtype=np.float64))
    k_code, n_k = _kernel(float_codes, n)(np.ascontiguousarray(strike, dtype=np.float64))
    # (underlying, strike) pairs first, then with t: two small tables instead of one large
    pair, pair_first = pair_codes(uidx, int(uidx.max()) + 1, k_code, n_k)
    codes, first = pair_codes(pair, pair_first.size, t_code, n_t)
    return first, codes


def contract_keys(
    uidx: np.ndarray, kind: np.ndarray, strike: FloatArray, t: FloatArray, override: FloatArray, american
) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct contracts of option rows in order of first appearance: ``(ids, first)``,
    ``ids`` per row and ``first`` the first row of each contract. A contract is (underlying, kind,
    strike, time to settlement, vol override, style); floats are equal when their values are, and
    every NaN (no override) is one value. The fields are numbered and paired one after the other
    (:func:`smile_points`, :func:`pair_codes`): exact, with no hash of whole contracts to check."""
    if len(uidx) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    points, of_row = smile_points(uidx, t, strike)
    style = np.asarray(kind, dtype=np.int64) * 2 + np.asarray(american, dtype=np.int64)  # kind 0..2
    ids, first = pair_codes(of_row, points.size, style, 6)
    override = np.ascontiguousarray(override, dtype=np.float64)
    if not np.isnan(override).all():  # every NaN is one value: nothing to tell apart otherwise
        o_code, n_o = _kernel(float_codes, override.size)(override)
        ids, first = pair_codes(ids, first.size, o_code, n_o)
    return ids, first


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
        _kernel(_kahan_group_sums, len(labels))(
            tuple(np.ascontiguousarray(v, dtype=np.float64) for v in values),
            np.ascontiguousarray(labels, dtype=np.intp),
            out,
        )
    return out


@njit(cache=True, parallel=True)
def _trader_units(qm, s, of_row, table, out):  # pragma: no cover - compiled
    # numpy's operations in numpy's order (no fused multiply-add): the same figures. ``table`` holds a
    # contract per row (price, delta, gamma, vega, theta, rho, vanna, volga, vol): one or two cache
    # lines per position
    for i in prange(qm.shape[0]):
        g = table[of_row[i]]
        q = qm[i]
        d = q * g[1]
        out[0, i] = q * g[0]
        out[1, i] = d
        out[2, i] = d * s[i]
        out[3, i] = gamma_dollars_1pct(q, g[2], s[i])
        out[4, i] = vega_per_vol_point(q, g[3])
        out[5, i] = theta_per_day(q, g[4])
        out[6, i] = rho_per_pct(q, g[5])
        out[7, i] = vanna_per_vol_point(q, g[6])
        out[8, i] = volga_per_vol_point2(q, g[7])
        out[9, i] = g[0]
        out[10, i] = g[8]


def trader_units(
    qm: FloatArray, s: FloatArray, of_row: np.ndarray, greeks: dict[str, FloatArray], vol: FloatArray
) -> FloatArray:
    """The exposure figures of positions in trader units from the Greeks of the contracts they hold,
    shape (11, n): rows 0-8 in the order of :data:`optmm.risk.exposures.EXPOSURE_COLUMNS` (value,
    delta in shares and dollars, dollar gamma per 1%, vega per vol point, theta per day, rho per 1%,
    vanna per vol point, volga per vol point^2), then each position's price and vol. ``qm`` quantity
    x multiplier and ``s`` the spot per position, ``of_row`` each position's contract, ``greeks``
    (per unit) and ``vol`` per contract."""
    names = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
    table = np.stack([*(np.asarray(greeks[k], dtype=np.float64) for k in names), vol], axis=1)
    out = np.empty((11, qm.size))
    _kernel(_trader_units, qm.size)(
        np.ascontiguousarray(qm),
        np.ascontiguousarray(s),
        np.ascontiguousarray(of_row, dtype=np.intp),
        table,
        out,
    )
    return out


# The sums of the exposure figures without the figures of every position: each position's figures
# are computed from its contract's row of ``table`` as :func:`_trader_units` does, then added where
# they go at once: per underlying and per (underlying, expiry) group by compensated sums in row order
# (:func:`_kahan_group_sums`), and over the book by numpy's pairwise summation (``numpy.sum``: blocks
# of at most 128 values, eight running sums within a block, halves split at a multiple of 8). A
# million positions' figures never touch memory.

_N_FIG = 9
_PW_BLOCK = 128


@njit(cache=True, inline="always")
def _kahan_row(out, comp, g, vals, r):  # pragma: no cover - compiled
    """Add row ``r`` of ``vals`` to row ``g`` of ``out`` as :func:`_kahan_group_sums` does."""
    for j in range(_N_FIG):
        val = vals[r, j]
        if val != val:
            continue
        c = comp[g, j]
        o = out[g, j]
        y = val - c
        t = o + y
        c = t - o - y
        comp[g, j] = 0.0 if c != c else c  # an infinite value: keep the sum infinite, not NaN
        out[g, j] = t


@njit(cache=True)
def _block(lo, n, cols, acc, vals, res):  # pragma: no cover - compiled
    """Rows ``lo .. lo + n`` (n <= 128): their figures (the arithmetic of :func:`_trader_units`),
    added to the group sums in row order as :func:`_kahan_group_sums` adds (NaNs skipped), and each
    figure's pairwise block sum into ``res``. ``cols`` the inputs, ``acc`` the group sums."""
    quantity, multiplier, u_of_row, spot_u, of_row, table, group_of_contract = cols
    by_u, comp_u, by_g, comp_g = acc
    for r in range(n):  # the contracts' rows first: independent loads, in flight together
        c = of_row[lo + r]
        for j in range(8):
            vals[r, j] = table[c, j]
    for r in range(n):
        i = lo + r
        q = quantity[i] * multiplier[i]
        s = spot_u[u_of_row[i]]
        price, delta, gamma, vega = vals[r, 0], vals[r, 1], vals[r, 2], vals[r, 3]
        theta, rho, vanna, volga = vals[r, 4], vals[r, 5], vals[r, 6], vals[r, 7]
        d = q * delta
        vals[r, 0] = q * price
        vals[r, 1] = d
        vals[r, 2] = d * s
        vals[r, 3] = gamma_dollars_1pct(q, gamma, s)
        vals[r, 4] = vega_per_vol_point(q, vega)
        vals[r, 5] = theta_per_day(q, theta)
        vals[r, 6] = rho_per_pct(q, rho)
        vals[r, 7] = vanna_per_vol_point(q, vanna)
        vals[r, 8] = volga_per_vol_point2(q, volga)
        _kahan_row(by_u, comp_u, u_of_row[i], vals, r)
        _kahan_row(by_g, comp_g, group_of_contract[of_row[i]], vals, r)
    for j in range(_N_FIG):
        if n < 8:
            s = 0.0
            for r in range(n):
                s += vals[r, j]
        else:
            r0, r1, r2, r3 = vals[0, j], vals[1, j], vals[2, j], vals[3, j]
            r4, r5, r6, r7 = vals[4, j], vals[5, j], vals[6, j], vals[7, j]
            r = 8
            while r < n - n % 8:
                r0 += vals[r, j]
                r1 += vals[r + 1, j]
                r2 += vals[r + 2, j]
                r3 += vals[r + 3, j]
                r4 += vals[r + 4, j]
                r5 += vals[r + 5, j]
                r6 += vals[r + 6, j]
                r7 += vals[r + 7, j]
                r += 8
            s = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            while r < n:
                s += vals[r, j]
                r += 1
        res[j] = s


@njit(cache=True)
def _pairwise(lo, n, level, cols, acc, vals, stack):  # pragma: no cover - compiled
    """numpy's pairwise sums of rows ``lo .. lo + n`` into ``stack[level]`` (the levels below it are
    the halves' scratch), every row passing through :func:`_block` in row order."""
    if n <= _PW_BLOCK:
        _block(lo, n, cols, acc, vals, stack[level])
        return 0
    n2 = n // 2
    n2 -= n2 % 8
    _pairwise(lo, n2, level + 1, cols, acc, vals, stack)
    for j in range(_N_FIG):
        stack[level, j] = stack[level + 1, j]
    _pairwise(lo + n2, n - n2, level + 1, cols, acc, vals, stack)
    for j in range(_N_FIG):
        stack[level, j] = stack[level, j] + stack[level + 1, j]
    return 0


def exposure_sums(
    quantity: FloatArray,
    multiplier: FloatArray,
    u_of_row: np.ndarray,
    spot_u: FloatArray,
    of_row: np.ndarray,
    table: FloatArray,
    group_of_contract: np.ndarray,
    n_groups: int,
    python_below: int = PYTHON_BELOW,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The sums of the positions' exposure figures (:func:`trader_units` rows 0-8), without making
    them: ``(by_underlying, by_group, total)``, shapes (U, 9), (n_groups, 9), (9,), each as
    :func:`group_sums` and ``numpy.sum`` give them from the figures. ``table`` (contracts x 8): each
    contract's price, delta, gamma, vega, theta, rho, vanna, volga per unit; ``of_row`` each
    position's contract; ``u_of_row`` its underlying (``spot_u`` the spots); ``group_of_contract``
    each contract's group. Interpreted for fewer than ``python_below`` positions."""
    n = int(np.asarray(quantity).size)
    by_u = np.zeros((spot_u.size, _N_FIG))
    by_g = np.zeros((n_groups, _N_FIG))
    depth = 2 + max(0, int(np.ceil(np.log2(max(n, 1) / _PW_BLOCK))) + 1)
    stack = np.zeros((depth + 1, _N_FIG))
    if n:
        cols = (
            np.ascontiguousarray(quantity, dtype=np.float64),
            np.ascontiguousarray(multiplier, dtype=np.float64),
            np.ascontiguousarray(u_of_row, dtype=np.intp),
            np.ascontiguousarray(spot_u, dtype=np.float64),
            np.ascontiguousarray(of_row, dtype=np.intp),
            np.ascontiguousarray(table, dtype=np.float64),
            np.ascontiguousarray(group_of_contract, dtype=np.intp),
        )
        acc = (by_u, np.zeros_like(by_u), by_g, np.zeros_like(by_g))
        _kernel(_pairwise, n, python_below)(0, n, 0, cols, acc, np.empty((_PW_BLOCK, _N_FIG)), stack)
    return by_u, by_g, stack[0].copy()


def compile_exposure_sums() -> None:
    """Compile :func:`exposure_sums`' kernels, for the types every call of :data:`PYTHON_BELOW` rows
    or more gives them (one row)."""
    one, at = np.ones(1), np.zeros(1, dtype=np.intp)
    exposure_sums(one, one, at, one, at, np.ones((1, 8)), at, 1, python_below=0)
