"""Speed and quality of ``optmm fit`` (optmm.chain).

Measures:

* ``slice_ms``               one expiry of 350 strikes (known-truth quotes): the arbitrage-free smile fit
* ``surface_ms``             a 20-expiry x 200-strike chain, quotes in (parity, vols, fits, checks)
* ``rmse_vol_pts``           the fit of the bundled real SPX smile (tests/data), whole smile
* ``rmse_near_vol_pts``      the same within 10% of the forward
* ``svi_rmse_vol_pts``       the constrained raw SVI alone on that smile (the floor the spline improves)
* ``arbitrage_violations``   call prices not decreasing or not convex in strike, on 20,001 strikes
                             covering the quotes and +-3 standard deviations, for that fit

Timings are the best of several repeats after a warm-up.

Usage::

    python bench/fit.py            # readable table
    python bench/fit.py --json     # ... plus one JSON object on the last line
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from optmm.chain.fit import fit_chain
from optmm.chain.reader import Chain
from optmm.chain.slicefit import fit_smile
from optmm.chain.smile import Smile
from optmm.chain.synthetic import SSVI, synthetic_chain

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "spx_smile_2025-03-10_38dte.json"
TARGETS = {"slice_ms": 2.0, "surface_ms": 50.0, "rmse_vol_pts": 0.3, "rmse_near_vol_pts": 0.15}


def _best(f, repeats: int) -> float:
    f()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _chain(df) -> Chain:
    expiry = np.array([np.datetime64(x, "s") for x in df["expiry"]])
    stamp = np.datetime64(df["timestamp"].iloc[0], "s")
    n = len(df)
    return Chain(
        underlying=df["underlying"].to_numpy(dtype=object),
        expiry=expiry,
        strike=df["strike"].to_numpy(float),
        is_call=(df["kind"] == "call").to_numpy(),
        bid=df["bid"].to_numpy(float),
        ask=df["ask"].to_numpy(float),
        spot=df["spot"].to_numpy(float),
        rate=df["rate"].to_numpy(float),
        american=np.zeros(n, dtype=bool),
        timestamp=stamp,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    # one 350-strike expiry (mid vols of known-truth quotes, weights 1 / spread_vol^2 ~ equal here)
    t = 0.25
    k = np.linspace(-0.45, 0.3, 350)
    w = SSVI().total_variance(k, t) * (1 + 0.002 * np.random.default_rng(1).standard_normal(k.size))
    slice_ms = _best(lambda: fit_smile(k, w, np.ones_like(k), t), args.repeats)

    df, _ = synthetic_chain(
        rng=np.random.default_rng(2), days=tuple(int(d) for d in np.geomspace(7, 730, 20)), n_strikes=100
    )
    df = df[df["bid"] > 0]
    chain = _chain(df)
    surface_ms = _best(lambda: fit_chain(chain), max(1, args.repeats // 2))

    d = json.loads(DATA.read_text())
    strikes, vols = np.array(d["market_vols"]).T
    fwd, tt = float(d["forward"]), float(d["expiry_years"])
    kk = np.log(strikes / fwd)
    fit = fit_smile(kk, vols**2 * tt, np.ones_like(kk), tt)
    err = np.sqrt(fit.smile.total_variance(kk) / tt) - vols
    near = np.abs(strikes / fwd - 1) <= 0.1
    s = fit.smile
    svi = Smile(s.a, s.b, s.rho, s.m, s.sigma)
    svi_err = np.sqrt(svi.total_variance(kk) / tt) - vols
    sd = float(np.sqrt(s.total_variance(0.0)))
    kg = np.linspace(min(kk.min(), -3 * sd), max(kk.max(), 3 * sd), 20001)
    kx = fwd * np.exp(kg)
    wg = s.total_variance(kg)
    d1 = np.log(fwd / kx) / np.sqrt(wg) + 0.5 * np.sqrt(wg)
    c = fwd * ndtr(d1) - kx * ndtr(d1 - np.sqrt(wg))
    slope = np.diff(c) / np.diff(kx)
    violations = int(np.sum(slope > 1e-12 * fwd) + np.sum(np.diff(slope) < -1e-12 * fwd))

    res = {
        "slice_ms": round(slice_ms, 3),
        "surface_ms": round(surface_ms, 3),
        "surface_quotes": len(df),
        "rmse_vol_pts": round(float(np.sqrt(np.mean(err**2))) * 100, 4),
        "rmse_near_vol_pts": round(float(np.sqrt(np.mean(err[near] ** 2))) * 100, 4),
        "svi_rmse_vol_pts": round(float(np.sqrt(np.mean(svi_err**2))) * 100, 4),
        "arbitrage_violations": violations,
        "fit_method": fit.method,
        "spline_scale": fit.spline_scale,
    }
    for key, value in res.items():
        target = TARGETS.get(key)
        print(f"{key:<22} {value!s:>10}" + (f"   (target <= {target})" if target else ""))
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
