"""The quoter's and the hedger's rules (optmm/quoting/_kernels.py): packed settings, the tick grid
against numpy's rounding, the GREEKS skew's squares against CPython's. (Python forms against compiled:
tests/quoting/test_kernel_twins.py; the codes against optmm.codes: tests/core/test_codes.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optmm.quoting import HedgerConfig, QuoterConfig
from optmm.quoting import _kernels as K

# (tick_size, tick_size_above, tick_threshold)
GRIDS = [
    (0.05, 0.10, 3.0),
    (0.01, 0.05, 1.0),
    (0.05, 0.05, math.inf),
    (0.01, 0.01, math.inf),
    (0.25, 0.5, 10.0),
    (0.001, 0.01, 0.5),
]
WW_ULPS = 8  # numpy's SVML cbrt vs libm's cbrt (<= 3 ulps measured), with room


def _nan_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


# --------------------------------------------------------------------------------------------------
# packing


def test_pack_quoter_layout() -> None:
    cfg = QuoterConfig(
        base_half_spread_vol_points=0.7, min_edge_ticks=2.0, tick_size=0.01, tick_size_above=0.05,
        tick_threshold=1.0, vol_widen=0.3, toxicity_widen=0.4, improve_market=True, cross_market=False,
        skew="linear", gamma_risk_aversion=3e-4, horizon_s=120.0, sigma_s_annual=None, sigma_vol=0.3,
        linear_k=0.02, base_size=7.0, size_shade=0.25,
    )  # fmt: skip
    qp = K.pack_quoter(cfg)
    assert qp.shape == (K.N_QP,) and qp.dtype == np.float64
    want = {
        K.Q_BASE_HS: 0.7, K.Q_MIN_EDGE: 2.0, K.Q_TICK: 0.01, K.Q_TICK_ABOVE: 0.05, K.Q_THRESHOLD: 1.0,
        K.Q_VOL_WIDEN: 0.3, K.Q_TOX_WIDEN: 0.4, K.Q_IMPROVE: 1.0, K.Q_CROSS: 0.0, K.Q_SKEW: K.SKEW_LINEAR,
        K.Q_NEG_GAMMA_H: -3e-4 * (120.0 / (365.0 * 86400.0)), K.Q_SIGMA_VOL2: 0.3**2,
        K.Q_NEG_LINEAR_K: -0.02, K.Q_BASE_SIZE: 7.0, K.Q_SIZE_SHADE: 0.25, K.Q_TWO: 2.0,
    }  # fmt: skip
    assert sorted([*want, K.Q_SIGMA_S]) == list(range(K.N_QP))
    for i, v in want.items():
        assert qp[i] == v, i
    assert math.isnan(qp[K.Q_SIGMA_S])
    assert K.pack_quoter(QuoterConfig(sigma_s_annual=0.2))[K.Q_SIGMA_S] == 0.2
    assert K.pack_quoter(QuoterConfig(tick_threshold=math.inf))[K.Q_THRESHOLD] == math.inf
    with pytest.raises(TypeError, match="QuoterConfig"):
        K.pack_quoter(HedgerConfig())  # type: ignore[arg-type]


def test_pack_hedger_layout() -> None:
    cfg = HedgerConfig(
        mode="whalley_wilmott", target="zero", hard_target="band_edge", band_shares=300.0,
        ww_cost_per_share=0.02, ww_risk_aversion=2e-5, min_band_shares=50.0, max_band_shares=900.0,
        interval_s=30.0, slippage_bps=1.5, use_market_spread=False, half_spread_bps=2.5,
        min_trade_shares=25.0, lot_size=10,
    )  # fmt: skip
    hp = K.pack_hedger(cfg)
    want = {
        K.H_MODE: K.MODE_WHALLEY_WILMOTT, K.H_TARGET: K.TARGET_ZERO, K.H_HARD_TARGET: K.TARGET_BAND_EDGE,
        K.H_BAND: 300.0, K.H_WW_3C: 3.0 * 0.02, K.H_WW_2G: 2.0 * 2e-5, K.H_MIN_BAND: 50.0,
        K.H_MAX_BAND: 900.0, K.H_INTERVAL: 30.0, K.H_SLIP: 1.5 * 1e-4, K.H_USE_MARKET: 0.0,
        K.H_HALF: 2.5 * 1e-4, K.H_MIN_TRADE: 25.0, K.H_LOT: 10.0,
    }  # fmt: skip
    assert hp.shape == (K.N_HP,) and sorted(want) == list(range(K.N_HP))
    for i, v in want.items():
        assert hp[i] == v, i
    with pytest.raises(TypeError, match="HedgerConfig"):
        K.pack_hedger(QuoterConfig())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# np.round(x, 10) and the tick grid


def test_round10_is_numpys_round_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    grid = np.arange(-2000, 200_000) * 0.05  # grid products with their representation error
    x = np.concatenate(
        [
            grid,
            np.floor(rng.uniform(0, 1e6, 20_000)) * 0.01,
            rng.uniform(-10, 10, 20_000),
            np.exp(rng.uniform(-40, 40, 20_000)),
            (np.arange(1, 20_000) + 0.5) * 1e-10,  # halfway cases: round half to even
            [0.0, -0.0, 1e290, -1e290, 5e-324],
        ]
    )
    got = np.array([K.round10(v) for v in x])
    assert _nan_equal(got, np.round(x, 10))
    assert _nan_equal(np.array([K.round10_py(v) for v in x]), got)
    # beyond 1.8e298, x * 1e10 overflows: numpy gives inf, and so does the twin (numba's np.round
    # would return x, which is why the twin spells numpy's formula out)
    with np.errstate(over="ignore"):
        assert np.round(np.array([1e299]), 10)[0] == math.inf == K.round10(1e299)


def _numpy_grid(cfg: QuoterConfig, name: str, p: np.ndarray) -> np.ndarray:
    """The grid's rules written with numpy over arrays (the quoter's former implementation): an oracle."""
    below = np.where(p < cfg.tick_threshold, cfg.tick_size, cfg.tick_size_above)
    at_or_below = np.where(p <= cfg.tick_threshold, cfg.tick_size, cfg.tick_size_above)
    return {
        "round_down": lambda: np.round(np.floor(p / below + 1e-9) * below, 10),
        "round_up": lambda: np.round(np.ceil(p / at_or_below - 1e-9) * at_or_below, 10),
        "tick_up": lambda: np.round(p + below, 10),
        "tick_down": lambda: np.round(p - at_or_below, 10),
        "tick_at": lambda: below,
    }[name]()


@pytest.mark.parametrize("grid", GRIDS)
def test_tick_grid_rules_equal_numpys_and_their_python_forms(grid: tuple[float, float, float]) -> None:
    tick, above, thr = grid
    cfg = QuoterConfig(tick_size=tick, tick_size_above=above, tick_threshold=thr)
    qp = K.pack_quoter(cfg)
    rng = np.random.default_rng(11)
    top = 3.0 * thr if math.isfinite(thr) else 50.0
    on = np.concatenate([np.arange(0, int(thr / tick) + 2) * tick if math.isfinite(thr) else [], [thr]])
    on = on[np.isfinite(on)]
    on = np.concatenate([on, thr + np.arange(0, 40) * above if math.isfinite(thr) else []])
    near = np.concatenate([on + d for d in (0.0, 1e-12, -1e-12, 1e-9 * tick, -1e-9 * tick, 0.4 * tick)])
    p = np.concatenate(
        [near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf), rng.uniform(-tick, top, 4000)]
    )
    for name in ("round_down", "round_up", "tick_up", "tick_down", "tick_at"):
        got = getattr(cfg, name)(p)  # the compiled rule over the array
        assert _nan_equal(got, _numpy_grid(cfg, name, p)), name
        py = getattr(K, f"{name}_py")
        assert _nan_equal(np.array([py(v, qp) for v in p[::7]]), got[::7]), name
    assert cfg.round_down(np.array([[thr]])).shape == (1, 1)  # the input's shape


# --------------------------------------------------------------------------------------------------
# the GREEKS skew's squares


def test_greeks_skew_squares_like_python() -> None:
    """σ_S² and S² through libm's pow, as CPython's ``**`` (x*x differs in the last bit for some x)."""
    rng = np.random.default_rng(3)
    xs = rng.uniform(0.0, 10.0, 200_000)
    differ = xs[np.array([v**2 != v * v for v in xs.tolist()])]
    if differ.size == 0:  # pragma: no cover - a libm whose pow(x, 2) is x * x
        pytest.skip("this libm's pow(x, 2.0) equals x * x for every sample")
    qp = K.pack_quoter(QuoterConfig(gamma_risk_aversion=1.0, horizon_s=365.0 * 86400.0))  # -γh = -1
    assert qp[K.Q_NEG_GAMMA_H] == -1.0
    for x in differ[:50]:
        # skew = -1 * (1 * 1 * σ² * 1) with a single term: the twin's σ² alone
        skew = K.quote_one(
            1.0, 1.0, 0.0, 0.0, 1.0, 0.0, x, 1.0, 0.0, 0.0, 5, 1.0, 1.0, 1.0, np.nan, np.nan, qp
        )[5]
        assert -skew == x**2 != x * x
