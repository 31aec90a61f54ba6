"""The exposures' sums without the positions' figures (``optmm.risk._reval.exposure_sums``) equal, bit
for bit, what summing the figures gives (the compensated group sums in row order of ``group_sums``,
which the exposures used before, and ``numpy.sum``), and pandas' group sums to rounding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optmm.risk._reval import exposure_sums, group_sums, trader_units

NAMES = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 257, 1000, 4099, 100_003])
def test_exposure_sums_equal_the_sums_of_the_figures(n: int) -> None:
    rng = np.random.default_rng(n)
    n_c, n_u, n_g = max(1, n // 5), 7, 13
    table = rng.normal(size=(n_c, 8)) * rng.choice([1e-3, 1.0, 1e4], size=(n_c, 8))
    of_row = rng.integers(0, n_c, n)
    u_of_contract = rng.integers(0, n_u, n_c)
    g_of_contract = rng.integers(0, n_g, n_c)
    spot = rng.uniform(10.0, 500.0, n_u)
    quantity = rng.integers(-50, 51, n).astype(np.float64)
    multiplier = rng.choice([1.0, 100.0], n)
    u = u_of_contract[of_row]
    figures = trader_units(
        quantity * multiplier, spot[u], of_row, {k: table[:, j] for j, k in enumerate(NAMES)}, np.zeros(n_c)
    )[:9]
    by_u, by_g, total = exposure_sums(quantity, multiplier, u, spot, of_row, table, g_of_contract, n_g)
    frame = pd.DataFrame(figures.T)
    ref_u = frame.groupby(u).sum().reindex(range(n_u), fill_value=0.0).to_numpy()
    ref_g = frame.groupby(g_of_contract[of_row]).sum().reindex(range(n_g), fill_value=0.0).to_numpy()
    assert np.array_equal(by_u, group_sums(list(figures), u, n_u))
    assert np.array_equal(by_g, group_sums(list(figures), g_of_contract[of_row], n_g))
    scale = np.abs(figures).sum(axis=1) if n else np.zeros(9)
    assert np.all(np.abs(by_u - ref_u) <= 1e-14 * scale)
    assert np.all(np.abs(by_g - ref_g) <= 1e-14 * scale)
    assert np.array_equal(total, [np.sum(figures[j]) for j in range(9)])


def test_a_nan_figure_is_skipped_by_the_group_sums_and_makes_the_total_nan() -> None:
    table = np.array(
        [[1.0, 0.5, 0.1, 0.2, -0.3, 0.4, 0.01, 0.02], [np.nan, 0.5, 0.1, 0.2, -0.3, 0.4, 0.01, 0.02]]
    )
    of_row = np.array([0, 1, 0])
    by_u, _, total = exposure_sums(
        np.ones(3),
        np.ones(3),
        np.zeros(3, dtype=np.intp),
        np.array([100.0]),
        of_row,
        table,
        np.zeros(2, np.intp),
        1,
    )
    assert by_u[0, 0] == 2.0 and np.isnan(total[0])  # as pandas (skipna) and numpy.sum
