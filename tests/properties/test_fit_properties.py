"""Properties of chain fits over random noisy chains: no butterfly and no calendar arbitrage."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from optmm.chain.fit import fit_chain
from optmm.chain.reader import read_chain
from optmm.chain.synthetic import SSVI, synthetic_chain


@settings(max_examples=12, phases=[Phase.explicit, Phase.generate])  # each example fits a surface
@given(
    seed=st.integers(0, 2**32 - 1),
    atm=st.floats(0.08, 0.6),
    rho=st.floats(-0.9, 0.3),
    eta=st.floats(0.3, 1.0),
    rel_spread=st.floats(0.002, 0.05),
    n_strikes=st.integers(5, 61),
    calls_only=st.booleans(),
)
def test_fitted_surfaces_are_free_of_arbitrage(
    seed: int, atm: float, rho: float, eta: float, rel_spread: float, n_strikes: int, calls_only: bool
) -> None:
    surface = SSVI(atm_vol=atm, rho=rho, eta=eta * 2.0 / (1.0 + abs(rho)) * 0.99)
    df, _ = synthetic_chain(
        rng=np.random.default_rng(seed),
        surface=surface,
        rel_spread=rel_spread,
        n_strikes=n_strikes,
        days=(9, 40, 120, 400),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.csv"
        (df[df["kind"] == "call"] if calls_only else df).to_csv(path, index=False)
        _, fits = fit_chain(read_chain(path))
    f = fits["SYN"]
    for i, e in enumerate(f.expiries):
        assert e.butterfly_violations == 0, (i, e)
        assert e.calendar_violations == 0, (i, e)
        assert np.isfinite([e.forward, e.atm_vol, e.skew, e.rmse_vol_pts]).all()
    # total variance non-decreasing in maturity at every forward moneyness, between the expiries too
    k = np.linspace(-1.0, 1.0, 201)
    t = np.linspace(f.surface.expiries[0], f.surface.expiries[-1], 40)
    w = np.array([f.surface.vol(f.surface.forward(ti) * np.exp(k), ti, 1.0) ** 2 * ti for ti in t])
    assert np.all(np.diff(w, axis=0) >= -1e-14)
