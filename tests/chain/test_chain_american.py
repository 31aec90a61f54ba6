"""optmm.chain with American quotes: de-Americanisation against a known-truth American chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run
from scipy.special import ndtr

from optmm.chain.fit import de_americanise, fit_chain
from optmm.chain.reader import read_chain
from optmm.chain.synthetic import SSVI, synthetic_chain

RATE, DIV = 0.04, 0.015
DAYS = (30, 91, 182, 365)


def _chain(tmp: Path, name: str, df: pd.DataFrame):
    path = tmp / name
    df.to_csv(path, index=False)
    return read_chain(path)


@pytest.fixture(scope="module")
def american(tmp_path_factory: pytest.TempPathFactory):
    # deep in and out of the money (+-3 standard deviations), American prices at the SSVI vols with
    # r = 4%, q = 1.5%: deep in-the-money puts are worth their exercise value
    df, truth = synthetic_chain(
        rng=np.random.default_rng(11), rate=RATE, div_yield=DIV, days=DAYS, n_strikes=31, style="american"
    )
    return df, truth, tmp_path_factory.mktemp("american")


def _truth_vol(k: np.ndarray, t: float) -> np.ndarray:
    return np.sqrt(SSVI().total_variance(k, t) / t)


def test_known_truth_american_chain_recovers_forwards_carry_and_vols(american) -> None:
    df, truth, tmp = american
    _, fits = fit_chain(_chain(tmp, "am.csv", df))
    f = fits["SYN"]
    fwd = np.array([e.forward for e in f.expiries])
    # measured: within 2.4e-5 of the truth (parity's noise); as European prices the same chain's
    # forwards are off by up to 7e-3 (the test below)
    np.testing.assert_allclose(fwd, truth["forward"], rtol=1e-4)
    assert abs(f.div_yield - DIV) < 5e-4  # measured 1.5% - 1.4915% = 8.5e-5
    for e in f.expiries:
        true = _truth_vol(e.k, e.t)
        # every quote's bid/ask vol brackets the true vol (measured: all), and the fit stays near it
        assert np.mean((e.bid_vol <= true + 1e-9) & (true <= e.ask_vol + 1e-9)) >= 0.95
        assert np.max(np.abs(e.mid_vol - true)) < 0.01  # measured <= 0.0042
        assert e.inside_share >= 0.95  # measured 1.0
        assert abs(e.atm_vol - _truth_vol(np.zeros(1), e.t)[0]) < 0.005
        assert e.butterfly_violations == 0 and e.calendar_violations == 0
    # deep in-the-money quotes pushed below their exercise value by the noise are dropped and counted
    assert f.dropped["american_below_intrinsic"] > 0


def test_the_same_chain_read_as_european_has_wrong_forwards(american) -> None:
    # the check above can fail: fitting American prices as European biases the forward
    df, truth, tmp = american
    _, fits = fit_chain(_chain(tmp, "eu.csv", df.drop(columns=["style"])))
    fwd = np.array([e.forward for e in fits["SYN"].expiries])
    assert np.max(np.abs(fwd / truth["forward"] - 1)) > 1e-3


def test_converted_prices_bracket_the_true_european_prices(american) -> None:
    # independent of the fit: the European-equivalent bid/ask of each kept American row against the
    # European price at the SSVI vol (Black formula, the true forward and discount factor)
    df, truth, tmp = american
    chain = _chain(tmp, "am2.csv", df)
    rows = np.arange(chain.strike.size)
    euro, kept, dropped = de_americanise(chain, rows, 100.0)
    assert kept.size + sum(dropped.values()) == rows.size
    assert set(dropped) == {"american_below_intrinsic", "american_no_premium", "american_above_maximum"}
    lost = np.setdiff1d(rows, kept)
    # only in-the-money quotes lose their vol
    assert np.all(np.where(chain.is_call[lost], chain.strike[lost] < 100.0, chain.strike[lost] > 100.0))
    t_e = chain.years(np.unique(chain.expiry))
    at = np.searchsorted(np.unique(chain.expiry), chain.expiry[kept])
    t, fwd, disc = t_e[at], truth["forward"][at], truth["discount"][at]
    k = np.log(chain.strike[kept] / fwd)
    s = np.sqrt(SSVI().total_variance(k, t))
    d1 = -k / s + 0.5 * s
    call = disc * (fwd * ndtr(d1) - chain.strike[kept] * ndtr(d1 - s))
    price = np.where(chain.is_call[kept], call, call - disc * (fwd - chain.strike[kept]))
    tol = 1e-6 * 100.0  # the carry's estimate moves prices by about 1e-6 of the spot
    inside = (euro.bid[kept] <= price + tol) & (price <= euro.ask[kept] + tol)
    assert inside.mean() >= 0.99  # measured: all 192 rows kept
    # the mid is converted on its own and stays inside the converted bid/ask
    assert np.all((euro.bid[kept] <= euro.mid[kept]) & (euro.mid[kept] <= euro.ask[kept]))
    # the American premium is removed, not added: converted prices are at or below the American ones
    assert np.all(euro.ask[kept] <= chain.ask[kept] + 1e-12)
    # European rows (none here) and the input chain are untouched
    assert not np.shares_memory(euro.bid, chain.bid)


def test_mixed_european_and_american_rows(tmp_path: Path) -> None:
    # European calls and American puts on one underlying, and a European-only underlying whose fit
    # must be the same, bit for bit, as when it is fitted alone
    am, truth = synthetic_chain(
        rng=np.random.default_rng(5), rate=RATE, div_yield=DIV, days=(61, 182), n_strikes=25, style="american"
    )
    eu, _ = synthetic_chain(
        rng=np.random.default_rng(5), rate=RATE, div_yield=DIV, days=(61, 182), n_strikes=25
    )
    eu = eu.assign(style="european")
    mixed = pd.concat([eu[eu["kind"] == "call"], am[am["kind"] == "put"]], ignore_index=True)
    other, _ = synthetic_chain(rng=np.random.default_rng(6), days=(61, 182), n_strikes=25, underlying="EUR")
    _, fits = fit_chain(_chain(tmp_path, "mixed.csv", pd.concat([mixed, other.assign(style="european")])))
    f = fits["SYN"]
    np.testing.assert_allclose([e.forward for e in f.expiries], truth["forward"], rtol=1e-4)
    for e in f.expiries:
        true = _truth_vol(e.k, e.t)
        assert np.mean((e.bid_vol <= true + 1e-9) & (true <= e.ask_vol + 1e-9)) >= 0.95
        assert e.butterfly_violations == 0 and e.calendar_violations == 0
    _, alone = fit_chain(_chain(tmp_path, "eur.csv", other))
    a, b = fits["EUR"], alone["EUR"]
    # (the reader's counts are the whole file's; no American reasons for a European underlying)
    assert list(a.dropped) == list(b.dropped) and not any(key.startswith("american") for key in a.dropped)
    assert [e.forward for e in a.expiries] == [e.forward for e in b.expiries]
    assert [e.atm_vol for e in a.expiries] == [e.atm_vol for e in b.expiries]
    assert np.array_equal(a.surface.a, b.surface.a) and np.array_equal(a.surface.b, b.surface.b)


@pytest.mark.parametrize(
    ("bid", "ask", "reason"),
    [
        (-0.05, 0.5, "american_below_intrinsic"),  # bid below the exercise value
        (0.0, 0.5, "american_no_premium"),  # bid at it, where the put is exercised at once at low vols
        (0.5, 4.0, "american_above_maximum"),  # ask above the strike
    ],
)
def test_quotes_without_an_american_vol_are_dropped_and_counted(
    tmp_path: Path, bid: float, ask: float, reason: str
) -> None:
    df, _ = synthetic_chain(
        rng=np.random.default_rng(3), rate=RATE, div_yield=DIV, days=(91,), n_strikes=21, style="american"
    )
    base = fit_chain(_chain(tmp_path, "base.csv", df))[1]["SYN"].dropped
    # an in-the-money put near the money (strike 103.69), well above its exercise value
    put = df.index[(df["kind"] == "put") & (df["strike"] > 102.0)][0]
    strike = df.loc[put, "strike"]
    intrinsic = strike - 100.0
    assert df.loc[put, "bid"] > intrinsic + 0.1
    edited = df.copy()
    edited.loc[put, ["bid", "ask"]] = [intrinsic + bid, intrinsic + ask if ask < 4.0 else strike + 0.01]
    got = fit_chain(_chain(tmp_path, "edited.csv", edited))[1]["SYN"].dropped
    assert got[reason] == base[reason] + 1
    assert {key: v for key, v in got.items() if key != reason} == {
        key: v for key, v in base.items() if key != reason
    }


def test_two_exercise_boundaries_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # rate -1% and an implied carry of -3%: American puts have two boundaries, which are not priced
    df, _ = synthetic_chain(
        rng=np.random.default_rng(3), rate=-0.01, div_yield=-0.03, days=(91,), n_strikes=11
    )
    path = tmp_path / "neg.csv"
    df.assign(style="american").to_csv(path, index=False)
    assert_usage_error(
        run(capsys, "fit", str(path), "--out", str(tmp_path / "neg.toml")),
        "neg.csv: row 0: field 'rate': SYN 2026-04-06T16:00:00: rate -1.0000% and implied carry",
        "two exercise boundaries",
    )
    assert not (tmp_path / "neg.toml").exists()


def test_fit_command_on_an_american_chain(american, capsys: pytest.CaptureFixture[str]) -> None:
    df, _, tmp = american
    path = tmp / "cli.csv"
    df.to_csv(path, index=False)
    code, out, err = run(capsys, "fit", str(path), "--out", str(tmp / "cli.toml"))
    assert code == 0, err
    assert "SYN: rows dropped: zero_bid 16, american_below_intrinsic 40\n" in out
    assert "arbitrage violations: 0" in out
