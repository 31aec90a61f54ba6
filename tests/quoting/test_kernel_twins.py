"""The plain-Python twins of the kernels agree with the compiled kernels, bit for bit or to rounding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from optmm.greeks import _bsm, _iv, bsm_greeks, bsm_price, implied_vol
from optmm.quoting import HedgeMode, HedgerConfig, HedgeTarget, QuoterConfig
from optmm.quoting import _kernels as K
from optmm.quoting import _toxicity_kernels as tk
from optmm.risk.audit import Layer

WW_ULPS = 8  # numpy's cbrt (SVML on AVX-512 machines) vs libm's, which numba calls: <= 3 ulps measured


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


# --------------------------------------------------------------------------------------------------
# the hedger's rules (optmm.quoting._kernels): DeltaHedger runs the Python forms, the simulator the
# compiled ones


def _hedger_configs() -> list[HedgerConfig]:
    """Every mode x target x hard target, with fine, odd, coarse (> band) lots and minimum trades."""
    rng = np.random.default_rng(17)
    lots = ((1, 0.0, 500.0), (7, 50.0, 300.0), (100, 300.0, 250.0), (1000, 0.0, 300.0))
    configs = []
    for mode, target, hard_target, (lot, min_trade, band) in itertools.product(
        HedgeMode, HedgeTarget, HedgeTarget, lots
    ):
        configs.append(
            HedgerConfig(
                mode=mode,
                target=target,
                hard_target=hard_target,
                band_shares=band,
                min_trade_shares=min_trade,
                lot_size=lot,
                ww_cost_per_share=float(rng.uniform(0.005, 0.05)),
                ww_risk_aversion=float(10 ** rng.uniform(-6, -4)),
                min_band_shares=float(rng.choice([0.0, 50.0, 100.0])),
                max_band_shares=float(rng.choice([800.0, 5000.0])),
                interval_s=float(rng.choice([1.0, 60.0, 7.5])),
                slippage_bps=float(rng.choice([0.0, 0.5, 3.0])),
                use_market_spread=bool(rng.random() < 0.5),
                half_spread_bps=float(rng.choice([0.0, 1.0, 4.0])),
            )
        )
    return configs


def _deltas(rng: np.random.Generator, cfg: HedgerConfig, n: int) -> np.ndarray:
    """Random net deltas, with the knife edges of the fixed band (exact, ± one lot, ± one ulp)."""
    scale = cfg.band_shares if cfg.mode is not HedgeMode.WHALLEY_WILMOTT else cfg.max_band_shares
    d = rng.uniform(-3.0, 3.0, n) * scale
    d[rng.random(n) < 0.1] = 0.0
    if cfg.mode is not HedgeMode.WHALLEY_WILMOTT:
        b, lot = cfg.band_shares, float(cfg.lot_size)
        edges = np.array([b, b + lot, b - lot, np.nextafter(b, np.inf), np.nextafter(b, 0), b + 0.5 * lot])
        pick = rng.random(n) < 0.3
        d[pick] = rng.choice([-1.0, 1.0], pick.sum()) * rng.choice(edges, pick.sum())
    return d


def test_hedge_band_twin_agrees() -> None:
    rng = np.random.default_rng(23)
    for cfg in _hedger_configs()[::4]:
        hp = K.pack_hedger(cfg)
        for g, s in zip(rng.uniform(-1e6, 1e6, 200), np.exp(rng.uniform(0.0, 8.0, 200)), strict=True):
            py, nb = K.hedge_band_py(g, s, tuple(hp.tolist())), K.hedge_band(g, s, hp)
            if cfg.mode is HedgeMode.WHALLEY_WILMOTT:
                assert abs(py - nb) <= WW_ULPS * np.spacing(py), (cfg, g, s)
            else:
                assert py == nb == cfg.band_shares


def test_hedge_decide_and_fill_twins_agree() -> None:
    """Every mode, target, hard target and layer; TIME's schedule threaded through a sequence of calls.

    The same rule, so the same decision and fill to the bit, except the Whalley–Wilmott band's cube
    root (numpy's against libm's): a decision could then differ only with delta or a lot boundary
    within those ulps of the band, which these inputs never are."""
    rng = np.random.default_rng(29)
    reasons = dict.fromkeys(range(-1, 4), 0)
    for cfg in _hedger_configs():
        hp = K.pack_hedger(cfg)
        hp_py = tuple(hp.tolist())
        n = 120
        deltas = _deltas(rng, cfg, n)
        layers = np.where(rng.random(n) < 0.6, int(Layer.NORMAL), rng.integers(0, 6, n))
        now = 1000.0 + np.cumsum(
            rng.choice([0.0, 0.3 * cfg.interval_s, cfg.interval_s, 2.5 * cfg.interval_s], n)
        )
        due = -math.inf
        for i in range(n):
            spot = float(np.exp(rng.uniform(1.0, 7.0)))
            half = spot * float(rng.choice([0.0, 1e-4, 1e-3]))
            gamma = float(rng.uniform(-2e5, 2e5))
            args = (
                float(deltas[i]),
                gamma,
                spot,
                spot - half,
                spot + half,
                float(now[i]),
                int(layers[i]),
                due,
            )
            py, nb = K.hedge_decide_py(*args, hp_py), K.hedge_decide(*args, hp)
            context = f"{cfg} call {i}: {args}"
            assert (py[0], py[3], py[4]) == (nb[0], nb[3], nb[4]), context
            assert py[1] == nb[1] or (math.isnan(py[1]) and math.isnan(nb[1])), context
            if math.isnan(py[2]) or py[2] == nb[2]:  # KILL's NaN; every band but Whalley–Wilmott's
                assert math.isnan(py[2]) == math.isnan(nb[2]), context
            else:
                assert cfg.mode is HedgeMode.WHALLEY_WILMOTT, context
                assert abs(py[2] - nb[2]) <= WW_ULPS * np.spacing(py[2]), context
            due = nb[4]
            reasons[nb[3]] += 1
            if nb[0] == 0.0:
                continue
            mid = spot * float(rng.uniform(0.999, 1.001))
            spread = 2.0 * half * float(rng.uniform(0.5, 2.0))
            fill = K.hedge_fill(nb[0], mid, spread, hp)
            assert K.hedge_fill_py(nb[0], mid, spread, hp_py) == fill, context
            cost = K.hedge_cost(nb[0], fill[0], mid)
            assert K.hedge_cost_py(nb[0], fill[0], mid) == cost >= 0.0
            # price - mid is exact: the cost is the fill's half-spread and slippage to |shares| ulps
            ulps = 2.0 * abs(nb[0]) * np.spacing(max(fill[0], mid))
            assert abs(cost - abs(nb[0]) * (fill[1] + fill[2])) <= ulps, context
    assert all(v > 200 for v in reasons.values()), reasons


# --------------------------------------------------------------------------------------------------
# the quoter's rules: Quoter.quote runs the compiled quote_chain


def test_quote_twins_agree() -> None:
    """quote_one's Python form and its compilation, row by row, bit for bit (NaN equal to NaN): every skew
    mode, layer, grid, with and without a market, caps and spread factors; quote_chain is quote_one."""
    rng = np.random.default_rng(41)
    grids = [(0.05, 0.10, 3.0), (0.01, 0.05, 1.0), (0.05, 0.05, math.inf), (0.001, 0.01, 0.5)]
    n = 300
    for skew, (tick, above, thr), improve, cross in itertools.product(
        ("greeks", "linear", "none"), grids, (False, True), (False, True)
    ):
        cfg = QuoterConfig(
            skew=skew, tick_size=tick, tick_size_above=above, tick_threshold=thr, improve_market=improve,
            cross_market=cross, gamma_risk_aversion=float(10 ** rng.uniform(-5, -2)),
            base_half_spread_vol_points=float(rng.choice([0.0, 0.5, 2.0])), vol_widen=0.5,
            toxicity_widen=float(rng.choice([0.0, 1.0])), size_shade=float(rng.choice([0.0, 0.5, 2.0])),
            linear_k=0.05, min_edge_ticks=float(rng.choice([0.0, 1.0])),
        )  # fmt: skip
        qp = K.pack_quoter(cfg)
        fair = np.exp(rng.uniform(-4.0, 4.0, n))
        delta = rng.uniform(-1.0, 1.0, n)
        vega = rng.uniform(0.0, 2.0, n) * fair
        pos = np.round(rng.normal(0.0, 30.0, n))
        layer = np.where(rng.random(n) < 0.7, int(Layer.NORMAL), rng.integers(0, 6, n))
        cap_b = np.where(rng.random(n) < 0.5, np.inf, np.floor(rng.uniform(0.0, 12.0, n)))
        cap_a = np.where(rng.random(n) < 0.5, np.inf, np.floor(rng.uniform(0.0, 12.0, n)))
        factor = rng.choice([1.0, 1.5, 2.0], n)
        mid = fair * np.exp(rng.normal(0.0, 0.02, n))
        width = fair * rng.uniform(0.0, 0.1, n)
        mkt_b = np.where(rng.random(n) < 0.2, np.nan, mid - width)
        mkt_a = np.where(rng.random(n) < 0.2, np.nan, mid + width)
        und = (float(rng.normal(0, 5e4)), float(rng.normal(0, 2e3)), 0.25, 100.0, 0.3, 0.4)
        out = np.empty((n, K.N_OUT))
        per = (fair, delta, vega, pos)
        caps = (layer, cap_b, cap_a, factor, mkt_b, mkt_a)
        K.quote_chain(*per, *und, *caps, qp, out)
        for i in range(n):
            py = K.quote_one_py(*(a[i] for a in per), *und, *(a[i] for a in caps), qp)
            nb = K.quote_one(*(a[i] for a in per), *und, *(a[i] for a in caps), qp)
            assert np.array_equal(np.array(py, dtype=float), np.array(nb), equal_nan=True), (cfg, i)
            assert np.array_equal(out[i], np.array(nb), equal_nan=True), (cfg, i)


# --------------------------------------------------------------------------------------------------
# the toxicity latch: the Python form and its compilation (which ToxicityDetector and the simulator run)


def test_toxicity_latch_twin_agrees() -> None:
    rng = np.random.default_rng(43)
    flips = 0
    for cooldown in (0.0, 2.5, 30.0):
        py = nb = (False, math.nan)
        now = 0.0
        for _ in range(2000):
            now += float(rng.choice([0.0, 0.5, 1.0, 10.0]))
            raw = bool(rng.random() < 0.3)
            t_py, s_py, c_py = tk.latch_py(*py, now, raw, cooldown)
            t_nb, s_nb, c_nb = tk.latch(*nb, now, raw, cooldown)
            assert (t_py, c_py) == (t_nb, c_nb) and (s_py == s_nb or (math.isnan(s_py) and math.isnan(s_nb)))
            py, nb = (t_py, s_py), (t_nb, s_nb)
            flips += c_py
    assert flips > 100
