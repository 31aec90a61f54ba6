"""``optmm fit`` from the shell: the table, the written market, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.book import Book
from optmm.chain.synthetic import synthetic_chain
from optmm.market import Market
from optmm.risk import exposures

DATA = Path(__file__).parents[1] / "data" / "spx_smile_2025-03-10_38dte.json"


@pytest.fixture(scope="module")
def chain_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df, _ = synthetic_chain(rng=np.random.default_rng(5), days=(30, 91), n_strikes=41)
    path = tmp_path_factory.mktemp("cli") / "chain.csv"
    df.to_csv(path, index=False)
    return path


def test_fit_prints_per_expiry_and_writes_a_market_that_feeds_risk(
    capsys: pytest.CaptureFixture[str], chain_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fitted.toml"
    code, stdout, err = run(capsys, "fit", str(chain_csv), "--out", str(out), "--plot", str(tmp_path))
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["underlying", "expiry", "quotes", "forward"]
    assert sum(line.startswith("SYN ") for line in lines) == 2
    assert lines[-1] == "arbitrage violations: 0"
    assert "nan" not in stdout.lower()
    market = Market.load(out)
    assert type(market.surface["SYN"]).__name__ == "FittedSurface"
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["SYN_2026-02-04.png", "SYN_2026-04-06.png", "SYN_surface.png"]
    book = Book.from_frame(
        pd.DataFrame(
            {
                "underlying": ["SYN"],
                "kind": ["call"],
                "strike": [100.0],
                "expiry": ["2026-03-01"],
                "quantity": [10],
            }
        )
    )
    exp = exposures(book, market)
    assert np.isfinite(exp.by_underlying.to_numpy(dtype=float)).all()


def test_fit_vols_file_with_a_market(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = json.loads(DATA.read_text())
    strikes, vols = np.array(d["market_vols"]).T
    vols_csv = tmp_path / "vols.csv"
    pd.DataFrame(
        {
            "underlying": "SPX",
            "expiry": "2025-04-17",
            "strike": strikes,
            "implied_vol": vols,
            "forward": d["forward"],
        }
    ).to_csv(vols_csv, index=False)
    base = tmp_path / "m.toml"
    base.write_text("valuation = 2025-03-10\nrate = 0.0433\n[underlyings.SPX]\nspot = 5600.0\nvol = 0.2\n")
    out = tmp_path / "f.toml"
    code, stdout, err = run(capsys, "fit", "--vols", str(vols_csv), "--market", str(base), "--out", str(out))
    assert code == 0, err
    row = next(line for line in stdout.splitlines() if line.startswith("SPX "))
    assert float(row.split()[7]) <= 0.30  # RMSE in vol points
    assert row.split()[8] == "-"  # no bid/ask: no share inside it
    assert stdout.splitlines()[-1] == "arbitrage violations: 0"
    m = Market.load(out)
    assert "inside_share" not in m.surface["SPX"].diagnostics
    k = 5640.3911
    assert abs(m.vols("SPX", k, 38 / 365) - 0.2213) < 0.003


def test_fit_errors_are_one_line(capsys: pytest.CaptureFixture[str], chain_csv: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.read_csv(chain_csv).drop(columns=["kind"]).to_csv(bad, index=False)
    out = tmp_path / "never.toml"
    assert_usage_error(run(capsys, "fit", str(bad), "--out", str(out)), "bad.csv: row 0: field 'kind'")
    assert not out.exists()
    assert_usage_error(run(capsys, "fit", "--out", str(out)), "CHAIN")
    negative = pd.read_csv(chain_csv)
    negative.loc[2, "strike"] = -5.0
    negative.to_csv(bad, index=False)
    err = assert_usage_error(
        run(capsys, "fit", str(bad), "--out", str(out)),
        "bad.csv: row 3: field 'strike': must be > 0, got -5.0\n",
    )
    assert "np." not in err
    assert_usage_error(
        run(capsys, "fit", str(chain_csv), "--out", str(tmp_path / "no" / "x.toml")), "no such directory"
    )


def test_a_forward_not_from_parity_is_said(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    df, _ = synthetic_chain(rng=np.random.default_rng(4), days=(30,), n_strikes=9)
    calls = tmp_path / "calls.csv"
    df[df["kind"] == "call"].to_csv(calls, index=False)
    code, stdout, err = run(capsys, "fit", str(calls), "--out", str(tmp_path / "f.toml"))
    assert code == 0, err
    assert "SYN 2026-02-04: forward from spot and rate (no call/put pair at one strike)" in stdout
