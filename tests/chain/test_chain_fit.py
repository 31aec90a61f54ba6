"""optmm.chain: readers, parity forwards, the arbitrage-free smile fit, the fitted surface, its TOML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import BSpline
from scipy.special import ndtr

from optmm.chain._spline import design_py, spline_eval_py
from optmm.chain.fit import arbitrage_counts, fit_chain
from optmm.chain.reader import ChainError, read_chain, read_vols
from optmm.chain.slicefit import fit_smile
from optmm.chain.smile import Smile, bspline_basis, design_matrix
from optmm.chain.surface import FittedSurface
from optmm.chain.synthetic import SSVI, synthetic_chain
from optmm.chain.toml import market_toml, write_market
from optmm.market import Market

DATA = Path(__file__).parents[1] / "data" / "spx_smile_2025-03-10_38dte.json"


def _black_call(f: float, k: np.ndarray, w: np.ndarray) -> np.ndarray:
    s = np.sqrt(w)
    d1 = np.log(f / k) / s + 0.5 * s
    return f * ndtr(d1) - k * ndtr(d1 - s)


# ------------------------------------------------------------------------------------------------
# the spline basis against scipy's B-splines (independent reference)


def test_basis_matches_scipy_bspline() -> None:
    knots = np.array([-0.5, -0.3, -0.1, 0.0, 0.05, 0.2, 0.3])
    x = np.linspace(-0.7, 0.4, 1001)
    full = np.r_[[knots[0]] * 3, knots, [knots[-1]] * 3]
    nb = full.size - 4
    got = bspline_basis(x, knots)
    for nu in range(3):
        for j in range(3, nb - 3):
            c = np.zeros(nb)
            c[j] = 1.0
            ref = np.nan_to_num(BSpline(full, c, 3, extrapolate=False)(x, nu))
            np.testing.assert_allclose(got[nu][:, j - 3], ref, rtol=0, atol=1e-10 * 10**nu)
    # every kept function vanishes with two derivatives at and beyond the ends
    for arr in got:
        assert np.all(arr[(x <= knots[0]) | (x >= knots[-1])] == 0.0)


def test_compiled_spline_matches_scipy_bspline_and_its_twin() -> None:
    knots = np.array([-0.5, -0.3, -0.1, 0.0, 0.05, 0.2, 0.3])
    coef = np.random.default_rng(5).standard_normal(knots.size - 4)
    x = np.concatenate([np.linspace(-0.7, 0.4, 1001), knots])  # the knots themselves too
    full = np.r_[[knots[0]] * 3, knots, [knots[-1]] * 3]
    padded = np.r_[np.zeros(3), coef, np.zeros(3)]
    got = np.asarray(Smile(0.0, 0.0, 0.0, 0.0, 1.0, knots, coef).spline(x))
    ref = BSpline(full, padded, 3, extrapolate=False)
    for nu in range(3):
        want = np.nan_to_num(ref(x, nu))
        scale = np.abs(want).max()
        np.testing.assert_allclose(got[nu], want, rtol=0, atol=1e-14 * scale)
    assert np.all(got[:, (x <= knots[0]) | (x >= knots[-1])] == 0.0)
    twin = np.empty((3, x.size))
    spline_eval_py(x, full, padded, twin)
    np.testing.assert_array_equal(twin, got)
    # the design matrix (values of the kept functions) inside [lo, hi], against scipy's
    inside = x[(x >= knots[0]) & (x <= knots[-1])]
    mat = design_matrix(inside, knots)
    ref_mat = BSpline.design_matrix(inside, full, 3).toarray()[:, 3:-3]
    np.testing.assert_allclose(mat, ref_mat, rtol=0, atol=1e-15)
    twin_mat = np.empty_like(mat)
    design_py(inside, full, twin_mat)
    np.testing.assert_array_equal(twin_mat, mat)


# ------------------------------------------------------------------------------------------------
# the real SPX smile


def _real_smile() -> tuple[np.ndarray, np.ndarray, float, float]:
    d = json.loads(DATA.read_text())
    a = np.array(d["market_vols"])
    return a[:, 0], a[:, 1], float(d["forward"]), float(d["expiry_years"])


def test_real_spx_smile_fit_meets_the_targets_without_arbitrage() -> None:
    strikes, vols, fwd, t = _real_smile()
    k = np.log(strikes / fwd)
    fit = fit_smile(k, vols**2 * t, np.ones_like(k), t)
    err = np.sqrt(fit.smile.total_variance(k) / t) - vols
    near = np.abs(strikes / fwd - 1.0) <= 0.10
    assert np.sqrt(np.mean(err**2)) * 100 <= 0.30
    assert np.sqrt(np.mean(err[near] ** 2)) * 100 <= 0.15
    # no butterfly arbitrage: call prices decreasing and convex in strike on a fine grid covering
    # the quotes and +-3 standard deviations
    sd = np.sqrt(fit.smile.total_variance(0.0) + 0.0)
    kg = np.linspace(min(k.min(), -3 * sd), max(k.max(), 3 * sd), 20001)
    kk = fwd * np.exp(kg)
    c = _black_call(fwd, kk, fit.smile.total_variance(kg))
    slope = np.diff(c) / np.diff(kk)
    assert np.all(slope <= 1e-12 * fwd)
    assert np.all(np.diff(slope) >= -1e-12 * fwd)
    assert fit.min_g >= 0.0
    assert np.min(fit.smile.g(np.linspace(-3.0, 2.0, 100001))) >= 0.0


def test_too_few_quotes_fall_back_to_a_flat_smile() -> None:
    k = np.array([-0.1, 0.0, 0.1])
    w = np.array([0.05, 0.04, 0.045])
    fit = fit_smile(k, w, np.array([1.0, 2.0, 1.0]), 1.0)
    assert fit.method == "flat"
    assert fit.smile.total_variance(0.5) == pytest.approx(np.average(w, weights=[1, 2, 1]), rel=1e-15)


# ------------------------------------------------------------------------------------------------
# known-truth chains


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    df, truth = synthetic_chain(rng=np.random.default_rng(11))
    path = tmp_path_factory.mktemp("chain") / "chain.csv"
    df.to_csv(path, index=False)
    return path, truth


def test_known_truth_chain_recovers_forwards_and_prices_within_the_spread(synthetic) -> None:
    path, truth = synthetic
    chain = read_chain(path)
    valuation, fits = fit_chain(chain)
    assert str(valuation) == "2026-01-05"
    f = fits["SYN"]
    fwd = np.array([e.forward for e in f.expiries])
    np.testing.assert_allclose(fwd, truth["forward"], rtol=1e-4)
    inside = np.concatenate([np.full(e.n_quotes, e.inside_share) for e in f.expiries])
    assert inside.mean() >= 0.98
    assert all(e.butterfly_violations == 0 and e.calendar_violations == 0 for e in f.expiries)
    # fitted vols within the quotes' vol spread of the truth at the money
    truth_surface = SSVI()
    for i, e in enumerate(f.expiries):
        w_true = truth_surface.total_variance(np.zeros(1), truth["t"][i])
        atm_true = np.sqrt(w_true / truth["t"][i])[0]
        assert abs(e.atm_vol - atm_true) < 0.005


def test_dropped_rows_are_counted_by_reason(tmp_path: Path) -> None:
    df, _ = synthetic_chain(rng=np.random.default_rng(3), days=(30,), n_strikes=21)
    df = df.copy()
    df.loc[0, "bid"] = np.nan  # no quote
    df.loc[1, "bid"] = 0.0  # zero bid (may also occur naturally far out)
    df.loc[2, ["bid", "ask"]] = [2.0, 1.0]  # crossed
    df.loc[3, "timestamp"] = "2026-01-05T14:00:00"  # an hour stale
    natural_zero = int((df["bid"] == 0.0).sum()) - 1
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    chain = read_chain(path)
    assert chain.dropped == {"no_quote": 1, "zero_bid": natural_zero + 1, "crossed": 1, "stale": 1}
    assert chain.strike.size == len(df) - sum(chain.dropped.values())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df: df.drop(columns=["strike"]), "row 0: field 'strike': missing column"),
        (
            lambda df: df.assign(strike=df["strike"].astype(object)).replace(
                {"strike": {df["strike"][4]: "abc"}}
            ),
            "row 5: field 'strike': not a number: 'abc'",
        ),
        (
            lambda df: df.assign(kind=["call"] * 6 + ["straddle"] + ["put"] * (len(df) - 7)),
            "row 7: field 'kind': unknown kind 'straddle'",
        ),
        (lambda df: df.assign(expiry=["2026-01-04"] * len(df)), "row 1: field 'expiry':"),
    ],
)
def test_bad_chain_names_the_row_and_field(tmp_path: Path, edit, message: str) -> None:
    df, _ = synthetic_chain(rng=np.random.default_rng(3), days=(30,), n_strikes=11)
    path = tmp_path / "bad.csv"
    edit(df).to_csv(path, index=False)
    with pytest.raises(ChainError, match=message.replace("(", r"\(")):
        read_chain(path)


def test_parquet_chain_reads_like_csv(tmp_path: Path) -> None:
    df, _ = synthetic_chain(rng=np.random.default_rng(3), days=(30,), n_strikes=11)
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet")
    a, b = read_chain(tmp_path / "c.csv"), read_chain(tmp_path / "c.parquet")
    np.testing.assert_array_equal(a.bid, b.bid)
    np.testing.assert_array_equal(a.expiry, b.expiry)


# ------------------------------------------------------------------------------------------------
# the surface: calendar repair, TOML round trip, Market


def _two_slice_surface() -> FittedSurface:
    # the second expiry's own smile is below the first's in the wings: calendar arbitrage to repair
    return FittedSurface(
        expiries=np.array([30 / 365, 60 / 365]),
        forwards=np.array([100.0, 100.0]),
        a=np.array([0.002, 0.0045]),
        b=np.array([0.05, 0.02]),
        rho=np.array([-0.5, -0.5]),
        m=np.array([0.0, 0.0]),
        sigma=np.array([0.1, 0.1]),
        knots=[np.zeros(0), np.zeros(0)],
        coef=[np.zeros(0), np.zeros(0)],
    )


def test_calendar_repair_makes_total_variance_non_decreasing() -> None:
    s = _two_slice_surface()
    k = np.linspace(-1.0, 1.0, 2001)
    raw0, raw1 = s.smile(0).total_variance(k), s.smile(1).total_variance(k)
    assert np.any(raw1 < raw0)  # the raw smiles cross
    assert np.all(s.total_variance(k, 1) >= s.total_variance(k, 0))
    assert arbitrage_counts(s, [k, k]) == [(0, 0), (0, 0)]
    # and between the expiries, at every strike
    t = np.linspace(30 / 365, 60 / 365, 11)
    strikes = 100.0 * np.exp(k)
    w = np.array([s.vol(strikes, ti, 100.0) ** 2 * ti for ti in t])
    assert np.all(np.diff(w, axis=0) >= -1e-15)


def test_fitted_market_round_trips_bit_for_bit(synthetic, tmp_path: Path) -> None:
    path, _ = synthetic
    valuation, fits = fit_chain(read_chain(path))
    f = fits["SYN"]
    market = Market(
        valuation=valuation,
        spot={"SYN": f.spot},
        rate={"SYN": f.rate},
        div_yield={"SYN": f.div_yield},
        surface={"SYN": f.surface},
    )
    out = tmp_path / "fitted.toml"
    write_market(market, out)
    loaded = Market.load(out)
    assert loaded.surface["SYN"] == f.surface
    assert loaded.spot == market.spot and loaded.rate == market.rate
    strikes = np.linspace(50.0, 160.0, 97)
    for t in (0.01, 30 / 365, 0.2, 0.5, 1.0, 2.0):
        np.testing.assert_array_equal(loaded.vols("SYN", strikes, t), market.vols("SYN", strikes, t))
    assert market_toml(loaded) == market_toml(market)
    assert loaded.surface["SYN"].diagnostics["butterfly_violations"] == [0] * 5


def test_vols_at_the_nodes_reprice_the_fitted_total_variance(synthetic) -> None:
    path, _ = synthetic
    _, fits = fit_chain(read_chain(path))
    s = fits["SYN"].surface
    k = np.linspace(-0.2, 0.2, 9)
    for i, t in enumerate(s.expiries):
        v = s.vol(s.forwards[i] * np.exp(k), t, 1.0)
        np.testing.assert_allclose(v**2 * t, s.total_variance(k, i), rtol=1e-13)


def test_read_vols_names_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    pd.DataFrame(
        {
            "underlying": ["X", "X"],
            "expiry": ["2026-03-20", "2026-03-20"],
            "strike": [90, 100],
            "implied_vol": [0.2, -0.1],
        }
    ).to_csv(path, index=False)
    with pytest.raises(ChainError, match="row 2: field 'implied_vol': must be > 0"):
        read_vols(path)


def test_smile_without_spline_is_raw_svi() -> None:
    s = Smile(0.01, 0.1, -0.4, 0.02, 0.15)
    k = np.linspace(-0.5, 0.5, 11)
    x = k - 0.02
    np.testing.assert_allclose(
        s.total_variance(k), 0.01 + 0.1 * (-0.4 * x + np.sqrt(x * x + 0.15**2)), rtol=1e-15
    )


@pytest.mark.parametrize("kinds", ["both", "call", "put"])
def test_otm_pick_takes_the_out_of_the_money_side_and_the_last_duplicate(kinds: str) -> None:
    from optmm.chain.fit import _otm_pick
    from optmm.chain.reader import Chain

    rng = np.random.default_rng(4)
    n = 60
    strike = rng.choice(np.arange(80.0, 121.0, 5.0), n)  # many duplicates
    is_call = rng.random(n) < 0.5 if kinds == "both" else np.full(n, kinds == "call")
    bid = rng.uniform(0.5, 5.0, n)
    chain = Chain(
        underlying=np.full(n, "X", dtype=object),
        expiry=np.full(n, np.datetime64("2026-03-20T16:00", "s")),
        strike=strike,
        is_call=is_call,
        bid=bid,
        ask=bid + 0.1,
        spot=np.full(n, 100.0),
        rate=np.full(n, 0.03),
        american=np.zeros(n, dtype=bool),
        timestamp=np.datetime64("2026-01-05T15:00", "s"),
    )
    rows = np.arange(n)
    fwd, _, _, pick = _otm_pick(chain, rows, 0.2, 100.0)
    # the rule by dictionaries (the last row quoting a strike wins), an independent oracle
    calls = {float(s): i for i, s in enumerate(strike) if is_call[i]}
    puts = {float(s): i for i, s in enumerate(strike) if not is_call[i]}
    want = []
    for s in sorted(set(calls) | set(puts)):
        first, second = (calls, puts) if s >= fwd else (puts, calls)
        want.append(first[s] if s in first else second[s])
    np.testing.assert_array_equal(pick, want)


def test_serial_vols_and_prices_are_the_public_functions_bit_for_bit() -> None:
    from optmm.chain.fit import _implied_vols, _prices
    from optmm.greeks import bsm_price, implied_vol

    rng = np.random.default_rng(9)
    n = 3000  # several of the parallel kernels' blocks
    fwd = rng.uniform(50.0, 150.0, n)
    strike = fwd * np.exp(rng.uniform(-0.8, 0.5, n))
    t = rng.uniform(1 / 365, 3.0, n)
    r_d = rng.uniform(-0.01, 0.06, n)
    is_call = rng.random(n) < 0.5
    vol = rng.uniform(0.05, 1.5, n)
    price = _prices(fwd, strike, t, r_d, vol, is_call)
    np.testing.assert_array_equal(price, bsm_price(fwd, strike, t, r_d, r_d, vol, is_call))
    quoted = price * rng.uniform(0.9, 1.1, n)  # some below intrinsic or above the maximum: NaN
    np.testing.assert_array_equal(
        _implied_vols(quoted, fwd, strike, t, r_d, is_call),
        implied_vol(quoted, fwd, strike, t, r_d, r_d, is_call),
    )
    # an invalid input goes to the public function, which names it
    with pytest.raises(ValueError, match="strike"):
        _implied_vols(quoted[:3], fwd[:3], np.array([1.0, -1.0, 1.0]), t[:3], r_d[:3], is_call[:3])


def test_compiled_min_g_is_the_smiles_g_and_its_twin() -> None:
    from optmm.chain._spline import min_g, min_g_py, total_variance_py
    from optmm.chain.smile import durrleman_g

    knots = np.array([-0.3, -0.1, 0.0, 0.05, 0.2, 0.3])
    coef = np.array([0.002, -0.001])
    smile = Smile(0.01, 0.1, -0.4, 0.02, 0.15, knots, coef)
    x = np.linspace(-1.0, 1.0, 2001)
    svi = np.array([smile.a, smile.b, smile.rho, smile.m, smile.sigma])
    t, c = smile.padded
    assert min_g(x, svi, t, c, 1.0) == np.min(smile.g(x))
    assert min_g_py(x, svi, t, c, 1.0) == min_g(x, svi, t, c, 1.0)
    # theta scales the correction: at theta, the g of SVI plus theta times the spline
    w, w1, w2 = smile.svi(x)
    s, s1, s2 = smile.spline(x)
    ref = np.min(durrleman_g(x, w + 0.5 * s, w1 + 0.5 * s1, w2 + 0.5 * s2))
    assert min_g(x, svi, t, c, 0.5) == ref
    # the ufunc against the formula written out (an independent form)
    formula = (1 - x * w1 / (2 * w)) ** 2 - w1**2 / 4 * (1 / w + 0.25) + w2 / 2
    np.testing.assert_allclose(durrleman_g(x, w, w1, w2), formula, rtol=1e-13, atol=1e-13)
    # the compiled total variance: SVI plus the spline, bit for bit, and its twin
    np.testing.assert_array_equal(smile.total_variance(x), w + s)
    np.testing.assert_array_equal(Smile(*svi).total_variance(x), w)
    twin = np.empty((1, x.size))
    total_variance_py(x, svi, t, c, twin)
    np.testing.assert_array_equal(twin[0], w + s)
    # w <= 0 somewhere: -inf, as Smile.g
    low = np.array([-0.2, 0.1, 0.02, 0.3, 0.1])
    assert min_g(x, low, np.zeros(0), np.zeros(0), 1.0) == -np.inf
    assert np.min(Smile(*low).g(x)) == -np.inf
