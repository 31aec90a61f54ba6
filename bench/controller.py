"""Risk-controller benchmark: microseconds per quote decision, from Python and inside a compiled loop.

One run loads the example book and market (``scenarios/examples/``), adds an 80-option SPY chain
(40 strikes from 80% to 119% of spot x call/put, 2026-12-18) to a :class:`optmm.risk.RiskController`
with a limit set sized so that some decisions are cut by the pre-trade check and most are not, and
drives a seeded stream of random quote requests over the chain with fills in between (every 10th
decision, a random part of an allowed side fills) and a SPY market-data tick every 50 decisions:

* ``*_us_python``: ``RiskController.decide`` timed one call at a time (``perf_counter_ns`` around
  each call), with an in-memory audit trail recording every cut, drop and layer change;
* ``*_us_compiled``: ``RiskController.decide_many`` on batches of ``--batch`` requests (the same
  decision function in a numba loop), the batch's time divided by its size; median and p99 over
  batches. The controller has no audit trail here, so the figure is the compiled loop itself;
  ``*_us_compiled_audited`` is the same with the trail (each cut or drop then costs a Python
  AuditEvent).

* ``fill_revalue_ms``: the milliseconds of a fill that revalues the grid (the limit set's
  ``after_fill_vega`` set so low that every fill does), median over the fills of the stream's first
  ``--fills-over`` decisions, ticks included; the example book's American options and options on
  cash dividends are priced by the slow engines, whose figures the controller reuses where their
  inputs are unchanged (:class:`optmm.pricing.Reuse`). ``fill_revalue_fresh_ms`` is the same stream
  with every group priced afresh, side by side; ``fill_revalue_speedup`` the ratio of the medians;
  ``*_mean_ms`` the means (a fill right after a tick prices that underlying's groups again).

``cut_fraction`` is the share of decisions with a side cut or dropped by the pre-trade check (or the
reduce-only rule), ``layer_share`` the share of decisions per deciding layer (a contract past its
soft position level is quoted in SOFT). Targets (printed, not
asserted): median <= 5 us from Python, <= 1 us compiled. ``--json`` prints the figures as one JSON
object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from optmm import pricing
from optmm.book import Book
from optmm.market import Market
from optmm.pricing import Reuse
from optmm.risk import AuditTrail, Layer, LimitSet
from optmm.risk.controller import QuoteRequest, RiskController

ROOT = Path(__file__).resolve().parents[1]
TARGET_PYTHON_US = 5.0
TARGET_COMPILED_US = 1.0
EXPIRY = "2026-12-18"
FILL_EVERY = 10
TICK_EVERY = 50

# Sized for the example book plus the chain: the contract position limit and SPY's vega bind on
# the larger requests as positions build up; the rest of the book stays clear.
LIMITS: dict[str, Any] = {
    "name": "bench",
    "soft_fraction": 0.8,
    "stale_after_ms": 5_000,
    "contract": {"position": 40},
    "underlying": {
        "delta_shares": 50_000,
        "delta_dollars": 30_000_000,
        "gamma_dollars_1pct": 3_000_000,
        "vega_per_vol_point": 150_000,
        "worst_scenario_loss": 50_000_000,
    },
    "book": {"delta_dollars": 60_000_000, "gamma_dollars_1pct": 6_000_000, "vega_per_vol_point": 400_000},
}


def make_controller(
    audit: AuditTrail | None, limits: dict[str, Any] = LIMITS
) -> tuple[RiskController, np.ndarray]:
    book = Book.load(ROOT / "scenarios/examples/book.csv")
    market = Market.load(ROOT / "scenarios/examples/market.toml")
    ctl = RiskController(book, market, LimitSet.from_dict(limits, source="<bench>"), audit=audit)
    spot = market.spot["SPY"]
    strikes = np.round(spot * np.linspace(0.80, 1.19, 40))
    chain = ctl.add_contracts("SPY", ["call"] * 40 + ["put"] * 40, np.concatenate([strikes, strikes]), EXPIRY)
    return ctl, chain


def make_stream(chain: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    big = rng.random(n) < 0.15  # occasional large requests
    return {
        "contract": rng.choice(chain, n),
        "bid": np.where(big, rng.integers(20, 80, n), rng.integers(1, 15, n)).astype(np.float64),
        "ask": np.where(rng.random(n) < 0.15, rng.integers(20, 80, n), rng.integers(1, 15, n)).astype(float),
        "fill_side": rng.random(n) < 0.75,
        "fill_part": rng.random(n),
        "tick": rng.normal(0.0, 2e-4, n),
    }


def _between(ctl: RiskController, i: int, c: int, bid: float, ask: float, s: dict, spot: list[float]) -> None:
    """The stream's events after decision ``i``: a fill every FILL_EVERY (three times in four on the
    side that flattens the contract's position, as a skewed quoter's would be), a tick every
    TICK_EVERY."""
    if i % FILL_EVERY == 0:
        buy = (ctl.position(c) < 0.0) == s["fill_side"][i]
        q = float(np.floor(s["fill_part"][i] * (bid if buy else ask)))
        if q:
            ctl.on_fill(c, q if buy else -q, 1.0)
    if i % TICK_EVERY == 0:
        spot[0] *= 1.0 + s["tick"][i]
        ctl.on_market_data("SPY", spot[0])


def run_python(n: int, seed: int) -> dict[str, Any]:
    ctl, chain = make_controller(AuditTrail())
    s = make_stream(chain, n, seed)
    triples = zip(s["contract"].tolist(), s["bid"].tolist(), s["ask"].tolist(), strict=True)
    reqs = [QuoteRequest(c, b, a) for c, b, a in triples]
    for r in reqs[:2_000]:  # warm-up: numba cache load, first calls
        ctl.decide(r)
    trail = AuditTrail()
    ctl, chain = make_controller(trail)
    spot = [ctl.state().loc["SPY", "spot"]]
    times = np.empty(n, dtype=np.int64)
    cut = 0
    layers = np.zeros(len(Layer), dtype=np.int64)
    clock = time.perf_counter_ns
    decide = ctl.decide
    f = ctl.limits.soft_size_factor
    for i, r in enumerate(reqs):
        t0 = clock()
        d = decide(r)
        times[i] = clock() - t0
        layers[d.layer] += 1
        if d.layer >= Layer.HARD:  # sides the pre-trade check (or reduce-only) cut below the layer's size
            shown = [
                max(np.floor(x * f), 1.0) if d.layer == Layer.SOFT else x for x in (r.bid_size, r.ask_size)
            ]
            cut += d.bid_size < shown[0] or d.ask_size < shown[1]
        _between(ctl, i, r.contract, d.bid_size, d.ask_size, s, spot)
    us = times / 1e3
    return {
        "median_us_python": float(np.median(us)),
        "p99_us_python": float(np.percentile(us, 99)),
        "cut_fraction": cut / n,
        "audit_events": len(trail.query()),
        "layer_share": {lay.name: float(layers[lay]) / n for lay in Layer if layers[lay]},
    }


def run_compiled(n: int, seed: int, batch: int, audited: bool) -> dict[str, float]:
    ctl, chain = make_controller(AuditTrail() if audited else None)
    s = make_stream(chain, n, seed)
    ctl.decide_many(s["contract"][:batch], s["bid"][:batch], s["ask"][:batch])  # warm-up
    ctl, chain = make_controller(AuditTrail() if audited else None)
    spot = [ctl.state().loc["SPY", "spot"]]
    per: list[float] = []
    for lo in range(0, n - batch + 1, batch):
        sl = slice(lo, lo + batch)
        t0 = time.perf_counter_ns()
        _, bid, ask, _ = ctl.decide_many(s["contract"][sl], s["bid"][sl], s["ask"][sl])
        per.append((time.perf_counter_ns() - t0) / 1e3 / batch)
        for j in range(0, batch, FILL_EVERY):  # the stream's fills and ticks between batches
            _between(ctl, lo + j, int(s["contract"][lo + j]), float(bid[j]), float(ask[j]), s, spot)
    arr = np.asarray(per)
    key = "_audited" if audited else ""
    return {
        f"median_us_compiled{key}": float(np.median(arr)),
        f"p99_us_compiled{key}": float(np.percentile(arr, 99)),
    }


def run_fill_revalue(n: int, seed: int, reuse: bool) -> tuple[float, float]:
    """Median and mean milliseconds of ``on_fill`` over the stream's first ``n`` decisions, every fill
    revaluing the grid; the slow engines' figures reused where their inputs are unchanged, or not."""
    limits = LIMITS | {"scenario": {"after_fill_vega": 1e-9}}
    with mock.patch.object(pricing, "Reuse", lambda: Reuse(keep=reuse)):  # the controller's
        ctl, chain = make_controller(None, limits)
        s = make_stream(chain, n, seed)
        spot = [ctl.state().loc["SPY", "spot"]]
        per: list[float] = []
        fill = ctl.on_fill

        def timed(c: int, q: float, price: float) -> None:
            t0 = time.perf_counter_ns()
            fill(c, q, price)
            per.append((time.perf_counter_ns() - t0) / 1e6)

        ctl.on_fill = timed  # type: ignore[method-assign]
        for i in range(n):
            c = int(s["contract"][i])
            d = ctl.decide(QuoteRequest(c, float(s["bid"][i]), float(s["ask"][i])))
            _between(ctl, i, c, d.bid_size, d.ask_size, s, spot)
    return float(np.median(per)), float(np.mean(per))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="decisions (200,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="requests per decide_many call (1,000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--fills-over", type=int, default=500, help="decisions of the fill timing (500)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object, last")
    args = parser.parse_args(argv)
    r: dict[str, Any] = {"n_decisions": args.n, "batch": args.batch, "chain": 80}
    r.update(run_python(args.n, args.seed))
    r.update(run_compiled(args.n, args.seed, args.batch, audited=False))
    r.update(run_compiled(args.n, args.seed, args.batch, audited=True))
    r["fill_revalue_ms"], r["fill_revalue_mean_ms"] = run_fill_revalue(args.fills_over, args.seed, True)
    r["fill_revalue_fresh_ms"], r["fill_revalue_fresh_mean_ms"] = run_fill_revalue(
        args.fills_over, args.seed, False
    )
    r["fill_revalue_speedup"] = r["fill_revalue_fresh_ms"] / r["fill_revalue_ms"]
    r["targets"] = {"median_us_python": TARGET_PYTHON_US, "median_us_compiled": TARGET_COMPILED_US}
    r["cores"] = os.cpu_count()
    print(
        f"risk controller: {args.n:,} decisions on an 80-option SPY chain over the example book; "
        f"{r['cut_fraction']:.1%} cut or dropped by the pre-trade check; {r['audit_events']:,} audit events"
    )
    ok = "meets" if r["median_us_python"] <= TARGET_PYTHON_US else "ABOVE"
    print(f"  decide (Python)          median {r['median_us_python']:6.2f} us  "
          f"p99 {r['p99_us_python']:6.2f} us   target median <= {TARGET_PYTHON_US:g} us ({ok})")  # fmt: skip
    ok = "meets" if r["median_us_compiled"] <= TARGET_COMPILED_US else "ABOVE"
    print(f"  decide_many (compiled)   median {r['median_us_compiled']:6.3f} us  "
          f"p99 {r['p99_us_compiled']:6.3f} us   "
          f"target median <= {TARGET_COMPILED_US:g} us ({ok})")  # fmt: skip
    print(f"  decide_many, audited     median {r['median_us_compiled_audited']:6.3f} us  "
          f"p99 {r['p99_us_compiled_audited']:6.3f} us")  # fmt: skip
    print(f"  fill that revalues       median {r['fill_revalue_ms']:6.1f} ms  "
          f"mean {r['fill_revalue_mean_ms']:6.1f} ms   priced afresh: median "
          f"{r['fill_revalue_fresh_ms']:6.1f} ms  "
          f"mean {r['fill_revalue_fresh_mean_ms']:6.1f} ms")  # fmt: skip
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
