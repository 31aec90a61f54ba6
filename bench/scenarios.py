"""Scenario-grid benchmark: optmm's collapsed full revaluation against a per-position numba loop.

One run builds a seeded 100,000-position book over ~4,000 unique contracts (4 underlyings x 10
expiries x 50 strikes x call/put) and a 21 x 11 spot x vol grid (spot -20%..+20% by 2%, vol -10..+10
points by 2), and measures on it:

* ``optmm_s``: ``optmm.risk.scenario_grid`` (collapses positions to contracts, revalues contracts x
  grid points in broadcast calls of the SIMD pricing kernel, aggregates per underlying);
* ``reference_s``: a straightforward per-position parallel numba revaluation (``prange`` over
  positions, every grid point priced with the textbook formula and libm's ``erfc``), the P&L
  summed per underlying; asserted equal to optmm's grid to 1e-9 relative;
* ``ratio``: reference_s / optmm_s (target >= 10);
* ``peak_mib_1m``: peak resident memory (MiB, whole process, measured in a fresh subprocess) of
  loading a 1,000,000-position book from a DataFrame and running the same grid (target < 2048).

``--json`` prints the figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from optmm.book import Book
from optmm.market import Market, Sticky
from optmm.risk import scenario_grid
from optmm.surface import TableSurface

VALUATION = np.datetime64("2026-11-20")
UNDERLYINGS = {"SPY": 590.0, "AAPL": 230.0, "MSFT": 420.0, "TSLA": 340.0}
BASE_VOL = {"SPY": 0.15, "AAPL": 0.26, "MSFT": 0.24, "TSLA": 0.55}
N_EXPIRIES = 10
N_STRIKES = 50
SPOT_SHOCKS = np.round(np.arange(-0.20, 0.2001, 0.02), 10)  # 21
VOL_SHOCKS = np.round(np.arange(-0.10, 0.1001, 0.02), 10)  # 11
TARGET_RATIO = 10.0
TARGET_PEAK_MIB = 2048.0


def make_market() -> Market:
    """Four underlyings with skewed table surfaces (sticky strike)."""
    surfaces = {}
    for u, s in UNDERLYINGS.items():
        expiries = np.array([0.05, 0.25, 0.5, 1.0, 2.0])
        strikes = s * np.linspace(0.6, 1.4, 9)
        skew = -0.25 * (strikes / s - 1.0)  # downside skew
        vols = np.clip(BASE_VOL[u] + skew[None, :] + 0.01 * np.log1p(expiries)[:, None], 0.05, None)
        surfaces[u] = TableSurface(expiries=expiries, strikes=strikes, vols=vols)
    return Market(
        valuation=VALUATION,
        spot=dict(UNDERLYINGS),
        rate={u: 0.043 for u in UNDERLYINGS},
        div_yield={u: 0.01 for u in UNDERLYINGS},
        surface=surfaces,
        beta={"SPY": 1.0, "AAPL": 1.15, "MSFT": 1.05, "TSLA": 1.9},
        index="SPY",
        sticky=Sticky.STRIKE,
        source="<bench>",
    )


def make_book(n_positions: int, seed: int) -> Book:
    """``n_positions`` positions drawn from 4 x 10 x 50 x 2 = 4,000 contracts."""
    rng = np.random.default_rng(seed)
    contracts = []
    for u, s in UNDERLYINGS.items():
        expiries = VALUATION + np.round(np.geomspace(7, 720, N_EXPIRIES)).astype("timedelta64[D]")
        strikes = np.round(s * np.linspace(0.7, 1.3, N_STRIKES), 2)
        for e in expiries:
            for k in strikes:
                contracts.append((u, "call", k, e))
                contracts.append((u, "put", k, e))
    pick = rng.integers(0, len(contracts), n_positions)
    table = pd.DataFrame(contracts, columns=["underlying", "kind", "strike", "expiry"]).iloc[pick]
    table = table.reset_index(drop=True)
    table["expiry"] = np.datetime_as_string(table["expiry"].to_numpy().astype("datetime64[D]"))
    table["quantity"] = rng.integers(-50, 51, n_positions).astype(float)
    table["multiplier"] = 100.0
    return Book.from_frame(table)


# --------------------------------------------------------------------------------------------
# The reference: per position, per grid point, the textbook formula
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _ref_price(s, k, t, r, q, v, is_call):  # pragma: no cover - compiled
    if t <= 0.0:
        return max(s - k, 0.0) if is_call else max(k - s, 0.0)
    sst = v * math.sqrt(t)
    fq = s * math.exp(-q * t)
    kr = k * math.exp(-r * t)
    if sst <= 0.0:
        return max(fq - kr, 0.0) if is_call else max(kr - fq, 0.0)
    d1 = (math.log(s / k) + (r - q) * t) / sst + 0.5 * sst
    d2 = d1 - sst
    n1 = 0.5 * math.erfc(-d1 / math.sqrt(2.0))
    n2 = 0.5 * math.erfc(-d2 / math.sqrt(2.0))
    return fq * n1 - kr * n2 if is_call else kr * (1.0 - n2) - fq * (1.0 - n1)


@njit(cache=True, parallel=True)
def _ref_grid(spot, strike, t, rate, div, vol, is_call, qm, spot_shocks, vol_shocks, out):  # pragma: no cover
    """out[i, a, b] = P&L of position i at spot shock a, vol shock b."""
    for i in prange(spot.shape[0]):
        base = _ref_price(spot[i], strike[i], t[i], rate[i], div[i], vol[i], is_call[i])
        for a in range(spot_shocks.shape[0]):
            s = spot[i] * (1.0 + spot_shocks[a])
            for b in range(vol_shocks.shape[0]):
                v = max(vol[i] + vol_shocks[b], 0.0)
                out[i, a, b] = qm[i] * (_ref_price(s, strike[i], t[i], rate[i], div[i], v, is_call[i]) - base)


def reference_grid(book: Book, market: Market) -> dict[str, np.ndarray]:
    """Book P&L per underlying on the grid, one position at a time (sticky strike, no days)."""
    und = book.underlying
    t = market.year_fraction(book.expiry)
    spot = np.array([market.spot[u] for u in und])
    rate = np.array([market.rate[u] for u in und])
    div = np.array([market.div_yield[u] for u in und])
    vol = np.empty(len(book))
    for u in book.underlyings():
        m = und == u
        vol[m] = market.vols(u, book.strike[m], t[m])
    out = np.empty((len(book), SPOT_SHOCKS.size, VOL_SHOCKS.size))
    is_call = book.kind == 0
    _ref_grid(spot, book.strike, t, rate, div, vol, is_call, book.quantity * book.multiplier,
              SPOT_SHOCKS, VOL_SHOCKS, out)  # fmt: skip
    return {u: out[und == u].sum(axis=0) for u in book.underlyings()}


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _peak_1m(seed: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds a 1,000,000-position book and runs the grid."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import resource, sys; sys.path.insert(0, {here!r}); import scenarios as b; "
        f"bk = b.make_book(1_000_000, {seed}); m = b.make_market(); "
        "b.scenario_grid(bk, m, spot_shocks=b.SPOT_SHOCKS, vol_shocks=b.VOL_SHOCKS); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0  # ru_maxrss is in KiB on Linux


def run(n_positions: int, seed: int, repeats: int) -> dict[str, Any]:
    market = make_market()
    book = make_book(n_positions, seed)
    n_contracts = len(book.to_frame().drop_duplicates(["underlying", "kind", "strike", "expiry"]))

    def optmm_run() -> Any:
        return scenario_grid(book, market, spot_shocks=SPOT_SHOCKS, vol_shocks=VOL_SHOCKS)

    optmm_run()  # compile / load the numba cache
    reference_grid(book.__class__.from_frame(book.to_frame().head(64)), market)
    optmm_s, grid = best_time(optmm_run, repeats)
    reference_s, ref = best_time(lambda: reference_grid(book, market), max(1, repeats // 2))
    # apples to apples: the same P&L, underlying by underlying
    worst_rel = 0.0
    for u, ref_u in ref.items():
        ours = grid.matrix(u).to_numpy()
        scale = max(np.abs(ref_u).max(), 1.0)
        worst_rel = max(worst_rel, float(np.abs(ours - ref_u).max() / scale))
    assert worst_rel <= 1e-9, f"optmm and the reference disagree: {worst_rel:.3g}"
    peak = _peak_1m(seed)
    return {
        "n_positions": n_positions,
        "n_contracts": n_contracts,
        "grid": [int(SPOT_SHOCKS.size), int(VOL_SHOCKS.size)],
        "optmm_s": optmm_s,
        "reference_s": reference_s,
        "ratio": reference_s / optmm_s,
        "peak_mib_1m": peak,
        "max_rel_diff": worst_rel,
        "targets": {"ratio": TARGET_RATIO, "peak_mib_1m": TARGET_PEAK_MIB},
        "timing": f"best of {repeats} (optmm), best of {max(1, repeats // 2)} (reference)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="positions (100,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print one JSON object, last")
    args = parser.parse_args(argv)
    r = run(args.n, args.seed, args.repeats)
    print(f"scenario grid {r['grid'][0]} x {r['grid'][1]} on {r['n_positions']:,} positions "
          f"({r['n_contracts']:,} unique contracts); {r['timing']}")  # fmt: skip
    print(f"  optmm (collapsed, SIMD)          {r['optmm_s'] * 1e3:10.1f} ms")
    print(f"  per-position numba reference     {r['reference_s'] * 1e3:10.1f} ms")
    ok = "meets" if r["ratio"] >= TARGET_RATIO else "BELOW"
    print(f"  ratio                            {r['ratio']:10.1f}x   target >= {TARGET_RATIO:.0f}x ({ok})")
    ok = "meets" if r["peak_mib_1m"] <= TARGET_PEAK_MIB else "ABOVE"
    print(
        f"  peak memory, 1,000,000 positions {r['peak_mib_1m']:10.0f} MiB  "
        f"target < {TARGET_PEAK_MIB:.0f} MiB ({ok}; whole process)"
    )
    print(f"  max relative difference to the reference: {r['max_rel_diff']:.2g} (asserted <= 1e-9)")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
