"""The plain-Python twins of the kernels agree with the compiled kernels, bit for bit or to rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optmm.greeks import _bsm, _iv, bsm_greeks, bsm_price, implied_vol


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261121)
    n = 400
    return {
        "s": rng.uniform(50.0, 150.0, n),
        "k": rng.uniform(40.0, 160.0, n),
        # include expired and zero-vol rows: the twins must agree on the edge branches too
        "t": np.where(rng.random(n) < 0.05, 0.0, rng.uniform(1 / 365, 5.0, n)),
        "r": rng.uniform(-0.01, 0.08, n),
        "q": rng.uniform(0.0, 0.05, n),
        "vol": np.where(rng.random(n) < 0.05, 0.0, rng.uniform(0.01, 3.0, n)),
        "call": rng.random(n) < 0.5,
    }


def test_bsm_twins_agree(sample: dict[str, np.ndarray]) -> None:
    d = sample
    g = bsm_greeks(d["s"], d["k"], d["t"], d["r"], d["q"], d["vol"], d["call"])
    p = bsm_price(d["s"], d["k"], d["t"], d["r"], d["q"], d["vol"], d["call"])
    compiled = np.stack([getattr(g, name) for name in g.FIELDS])
    for i in range(d["s"].size):
        args = (d["s"][i], d["k"][i], d["t"][i], d["r"][i], d["q"][i], d["vol"][i], bool(d["call"][i]))
        py = np.array(_bsm.bsm_all_py(*args))
        # Same operations in the same order, except that the compiled kernels let LLVM fuse a*b+c
        # into one FMA (fastmath={"contract"}): each fusion changes a rounding by <= 1/2 ulp, which
        # a later subtraction (1 - N(d2), the terms of theta) can raise to ~10 ulps of the result.
        # 64 ulps relative, 1e-13 absolute (spot ~100) still catches any divergence of logic.
        tol = 64 * np.finfo(float).eps
        np.testing.assert_allclose(compiled[:, i], py, rtol=tol, atol=1e-13)
        assert _bsm.bsm_price_py(*args) == pytest.approx(p[i], rel=tol, abs=1e-13)


def test_iv_twin_agrees(sample: dict[str, np.ndarray]) -> None:
    d = sample
    price = bsm_price(d["s"], d["k"], d["t"], d["r"], d["q"], d["vol"], d["call"])
    vega = bsm_greeks(d["s"], d["k"], d["t"], d["r"], d["q"], d["vol"], d["call"]).vega
    vol, status = implied_vol(price, d["s"], d["k"], d["t"], d["r"], d["q"], d["call"], return_status=True)
    for i in range(price.size):
        args = (price[i], d["s"][i], d["k"][i], d["t"][i], d["r"][i], d["q"][i], bool(d["call"][i]))
        py_vol, py_status = _iv.implied_vol_py(*args)
        nb_vol, nb_status = _iv.implied_vol_scalar(*args)
        # The twin and its compilation: the same operations, the same answer.
        assert (py_status, py_vol) == pytest.approx((nb_status, nb_vol), rel=1e-15, nan_ok=True)
        # The public kernel solves most options on the branch-free fast path, whose erfc differs
        # from libm's by a few ulps, and is compiled with FMA contraction like the pricing
        # kernels (so that a price from bsm_price and the intrinsic it subtracts agree to the
        # bit); the twin is not. The two can therefore differ on which side of the intrinsic a
        # price lies only when it lies within rounding of it, and otherwise agree as far as the
        # price determines the vol.
        if py_status != status[i]:
            fq = d["s"][i] * math.exp(-d["q"][i] * d["t"][i])
            kr = d["k"][i] * math.exp(-d["r"][i] * d["t"][i])
            intrinsic = max((1.0 if d["call"][i] else -1.0) * (fq - kr), 0.0)
            assert abs(price[i] - intrinsic) <= 1e-13 * max(fq, kr), (i, py_status, status[i])
            continue
        if math.isnan(py_vol):
            assert math.isnan(vol[i])
        else:
            bound = max(1e-12, 8.0 * np.spacing(price[i]) / vega[i]) if vega[i] > 0 else 1e-12
            assert abs(py_vol - vol[i]) <= bound, (i, py_vol, vol[i], bound)


def test_normalised_solver_twin_agrees() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        x = -rng.uniform(0.0, 3.0)
        s_true = rng.uniform(0.01, 4.0)
        h, t = x / s_true, 0.5 * s_true
        beta = math.exp(0.5 * x) * 0.5 * math.erfc(-(h + t) / math.sqrt(2)) - math.exp(
            -0.5 * x
        ) * 0.5 * math.erfc(-(h - t) / math.sqrt(2))
        if beta <= 1e-200:
            continue
        s_py = _iv.normalised_iv_py(beta, x)
        s_nb = _iv.normalised_iv(beta, x)
        assert s_py == pytest.approx(s_nb, rel=1e-13)
        # and both reproduce beta's total vol (well-conditioned region: modest s, moderate beta)
        if s_true < 3.0 and beta > 1e-12:
            assert s_nb == pytest.approx(s_true, rel=1e-9)


def test_five_output_greeks_block_is_the_full_blocks_first_five(sample: dict[str, np.ndarray]) -> None:
    """The block without rho, vanna, volga (the simulator's) is bit for bit the full block's first five."""
    d = sample
    n = d["s"].size
    full = [np.empty(n) for _ in range(8)]
    five = [np.empty(n) for _ in range(5)]
    args = (d["s"], d["k"], d["t"], d["r"], d["q"], d["vol"], d["call"])
    assert _bsm._greeks_block(*args, *full) == _bsm._greeks_block(*args, *five)
    for a, b in zip(full[:5], five, strict=True):
        np.testing.assert_array_equal(a, b)
