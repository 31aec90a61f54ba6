"""var_es: the k-th worst loss and the mean of the k worst, against a by-hand count."""

import numpy as np
import pytest

from optmm.risk.var import tail_count, var_es


def test_var_es_by_hand():
    pnl = np.array([5.0, -1.0, -7.0, 3.0, -2.0, 0.5, -4.0, 8.0, -0.5, 1.0])
    # n = 10, level 0.8: k = 2; worst two P&Ls -7, -4
    assert var_es(pnl, 0.8) == (4.0, 5.5)
    # level 0.95: k = ceil(0.5) = 1
    assert var_es(pnl, 0.95) == (7.0, 7.0)


def test_tail_count_exact_products():
    assert tail_count(500, 0.99) == 5
    assert tail_count(500, 0.975) == 13  # 12.5 -> 13
    assert tail_count(250, 0.99) == 3  # 2.5 -> 3
    assert tail_count(1000, 0.95) == 50


def test_es_at_least_var_and_refusals():
    rng = np.random.default_rng(3)
    x = rng.standard_t(3, 997)
    for level in (0.9, 0.95, 0.975, 0.99):
        v, e = var_es(x, level)
        assert e >= v
        k = tail_count(x.size, level)
        assert np.sum(-x >= v) >= k
    with pytest.raises(ValueError, match="index 2"):
        var_es(np.array([1.0, 2.0, np.nan]), 0.99)
    with pytest.raises(ValueError, match="level"):
        var_es(x, 1.0)
