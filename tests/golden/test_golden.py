"""Golden results: every output table and summary of the bundled simulations, a sweep and the risk
reports, by content hash.

These pin the figures bit for bit, so that a change meant to keep results (a restructuring, a
speed-up) is proved to keep them. A change that alters a result on purpose updates the hashes in
``tests/golden/hashes.json`` and its commit says which figures move and why:

    OPTMM_GOLDEN_UPDATE=1 python -m pytest -q -n 0 tests/golden/test_golden.py

(in one process, ``-n 0``, as the tests write one file; the test then writes the file and fails, so
an update is never silent).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm.book import Book
from optmm.market import Market
from optmm.risk import exposures, load_stress, run_stress, run_stresses, scenario_grid
from optmm.sim.config import SimConfig
from optmm.sim.engine import simulate

ROOT = Path(__file__).resolve().parents[2]
SCEN = ROOT / "scenarios"
HASHES = Path(__file__).with_name("hashes.json")
UPDATE = os.environ.get("OPTMM_GOLDEN_UPDATE") == "1"
SIMS = ("calm_day", "flash_crash", "informed_flow", "as2008")


def frame_hash(df: pd.DataFrame) -> str:
    """Hash of a frame's index, columns, dtypes and every value (floats by their bits)."""
    flat = df.reset_index()
    h = hashlib.sha256()
    h.update(json.dumps([list(map(str, flat.columns)), list(map(str, flat.dtypes))]).encode())
    h.update(pd.util.hash_pandas_object(flat, index=False).to_numpy().tobytes())
    for name in flat.columns:  # float bits, not only their hash: -0.0 and NaN payloads count
        col = flat[name].to_numpy()
        if col.dtype.kind in "fiub":
            h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


def summary_hash(summary: dict) -> str:
    clean = {k: v for k, v in summary.items() if k != "wall_s"}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=repr).encode()).hexdigest()


def _sim_hashes(name: str) -> dict[str, str]:
    res = simulate(SimConfig.load(SCEN / "sim" / f"{name}.toml"))
    out = {t: frame_hash(getattr(res, t)) for t in ("steps", "underlyings", "fills", "hedges", "quotes")}
    out["summary"] = summary_hash(res.summary)
    return out


def _risk_hashes() -> dict[str, str]:
    book = Book.load(SCEN / "examples" / "book.csv")
    market = Market.load(SCEN / "examples" / "market.toml")
    ex = exposures(book, market)
    out = {
        name: frame_hash(getattr(ex, name)) for name in ("positions", "by_underlying", "by_expiry", "total")
    }
    spots, vols = np.linspace(-0.2, 0.2, 21), np.linspace(-0.1, 0.1, 11)
    grid = scenario_grid(book, market, spot_shocks=spots, vol_shocks=vols)
    out["grid"] = frame_hash(grid.matrix())
    out["grid_taylor"] = frame_hash(grid.taylor_matrix())
    for u in book.underlyings():
        out[f"grid_{u}"] = frame_hash(grid.matrix(u))
    out["grid_days"] = frame_hash(
        scenario_grid(book, market, spot_shocks=spots, vol_shocks=vols, days=5).matrix()
    )
    stresses = run_stresses(book, market, sorted((SCEN / "stress").glob("*.toml")))
    out["stresses"] = frame_hash(stresses.assign(file=[Path(f).name for f in stresses["file"]]))  # not where
    for path in sorted((SCEN / "stress").glob("*.toml")):
        out[f"stress_{path.stem}"] = frame_hash(run_stress(book, market, load_stress(path)).table)
    return out


def _sweep_hashes(tmp: Path) -> dict[str, str]:
    from optmm.scaleout.sweep import SweepSpec, run_sweep

    spec = SweepSpec(
        name="golden",
        base=SCEN / "sim" / "calm_day.toml",
        seeds=(0, 1),
        grid=(("hedger.band_shares", (100.0, 400.0)),),
        overrides=(("hedger.mode", "fixed_band"), ("sim.steps", 600)),
    )
    res = run_sweep(spec, tmp / "sweep", progress=False)
    return {"runs": frame_hash(res.runs), "summary": frame_hash(res.summary)}


def _check(section: str, got: dict[str, str]) -> None:
    stored = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    if UPDATE:
        stored[section] = got
        HASHES.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        pytest.fail(f"golden hashes of {section!r} written to {HASHES}: review and commit them")
    assert section in stored, f"no golden hashes for {section!r}: run with OPTMM_GOLDEN_UPDATE=1"
    changed = sorted(k for k in stored[section].keys() | got.keys() if stored[section].get(k) != got.get(k))
    assert not changed, f"{section}: these outputs changed: {', '.join(changed)}"


@pytest.mark.parametrize("name", SIMS)
def test_bundled_simulations(name):
    _check(f"sim_{name}", _sim_hashes(name))


def test_risk_reports():
    _check("risk_example", _risk_hashes())


def test_sweep(tmp_path):
    _check("sweep", _sweep_hashes(tmp_path))
