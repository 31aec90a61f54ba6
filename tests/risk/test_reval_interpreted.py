"""The revaluation's kernels run interpreted below ``PYTHON_BELOW`` rows (``optmm._jit.interpreted``):
each gives what its compiled form gives, bit for bit, on the same inputs (the hash table growing, NaN,
-0.0 and infinities, groups and blocks of every size the pairwise sums split), but for a NaN's sign."""

from __future__ import annotations

import numpy as np
import pytest

from optmm._jit import interpreted
from optmm.risk import _reval

SIZES = [0, 1, 7, 9, 128, 129, 700, 1023]


def _same(got: object, want: object) -> None:
    """Equal to the bit (-0.0 is not 0.0), and of one dtype; NaN where NaN, whatever its sign (which
    neither IEEE nor LLVM fixes: adding two NaNs gives either, and LLVM may swap an addition's
    operands)."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        if got.dtype.kind == "f":
            nan = np.isnan(want)
            assert np.array_equal(np.isnan(got), nan)
            got, want = np.where(nan, 0.0, got), np.where(nan, 0.0, want)
        assert got.tobytes() == want.tobytes()
    else:
        assert type(got) is type(want) and got == want


def _both(kernel: object, *args: object) -> None:
    """``kernel`` compiled and interpreted on copies of ``args``: the same results and the same
    arrays written."""
    a = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    b = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    want = kernel(*a)  # type: ignore[operator]
    got = interpreted(kernel)(*b)  # type: ignore[arg-type]
    _same(got, want)
    for x, y in zip(b, a, strict=True):
        if isinstance(x, np.ndarray):
            _same(x, y)


@pytest.mark.parametrize("n", SIZES)
def test_numbering_kernels(n: int) -> None:
    rng = np.random.default_rng(n)
    floats = rng.choice(np.r_[rng.normal(size=600), 0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf], n)
    _both(_reval.float_codes, floats)  # 600 distinct values: the table doubles past 1,024 slots
    i64, m = np.iinfo(np.int64), max(n // 2, 1)
    keys = rng.integers(i64.min, i64.max, m)[rng.integers(0, m, n)]
    _both(_reval.int_codes, keys)
    codes, count = _reval.int_codes(keys)
    _both(_reval._first_of, codes, count)
    a, b = rng.integers(0, 9, n), rng.integers(0, 5, n)
    _both(_reval._table_codes, a, b, 9, 5)


@pytest.mark.parametrize("n", SIZES)
def test_sum_kernels(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    n_c, n_u, n_g = max(1, n // 3), 4, 6
    table = rng.normal(size=(n_c, 8)) * rng.choice([1e-3, 1.0, 1e4], size=(n_c, 8))
    table[rng.random((n_c, 8)) < 0.02] = np.nan
    table[rng.random((n_c, 8)) < 0.01] = np.inf
    of_row = rng.integers(0, n_c, n).astype(np.intp)
    u = rng.integers(0, n_u, n).astype(np.intp)
    spot = rng.uniform(10.0, 500.0, n_u)
    quantity = rng.integers(-50, 51, n).astype(np.float64)
    multiplier = rng.choice([1.0, 100.0], n)
    group = rng.integers(0, n_g, n_c).astype(np.intp)
    cols = (quantity, multiplier, u, spot, of_row, table, group)
    acc = (np.zeros((n_u, 9)), np.zeros((n_u, 9)), np.zeros((n_g, 9)), np.zeros((n_g, 9)))
    if n:
        # the exposures' sums: every figure, group sum, compensation and pairwise level
        for kernel in (_reval._pairwise,):
            a = tuple(x.copy() for x in acc)
            b = tuple(x.copy() for x in acc)
            sa, sb = np.zeros((8, 9)), np.zeros((8, 9))
            kernel(0, n, 0, cols, a, np.empty((128, 9)), sa)
            interpreted(kernel)(0, n, 0, cols, b, np.empty((128, 9)), sb)
            _same(sb, sa)
            _same(b, a)
    values = tuple(table[of_row, j].copy() for j in range(3))
    _both(_reval._kahan_group_sums, values, u, np.zeros((n_u, 3)))
    greeks = np.c_[table, np.ones(n_c)]
    _both(_reval._trader_units, quantity * multiplier, spot[u], of_row, greeks, np.empty((11, n)))


def test_the_public_functions_agree_on_either_side_of_the_threshold() -> None:
    """The threshold changes who runs a kernel, not what it gives: the exposures' sums of one book
    interpreted and compiled."""
    rng = np.random.default_rng(3)
    n = _reval.PYTHON_BELOW - 1
    table = rng.normal(size=(40, 8))
    args = (
        rng.integers(-9, 9, n).astype(float),
        np.full(n, 100.0),
        rng.integers(0, 3, n),
        rng.uniform(50.0, 150.0, 3),
        rng.integers(0, 40, n),
        table,
        rng.integers(0, 5, 40),
        5,
    )
    _same(_reval.exposure_sums(*args), _reval.exposure_sums(*args, python_below=0))
