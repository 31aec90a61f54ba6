"""Throughput and accuracy of optmm's American engines against QuantLib's.

One run, one seeded set of random American options (default 20,000: spot 100, strikes 50-200
log-uniform, 1 day to 5 years, rates 0-8%, yields 0-5%, vols 5%-200% log-uniform, calls and
puts), measures:

* ``american_per_s``, ``american_err``                    optmm.greeks.american_price, accuracy="default"
* ``american_accurate_per_s``, ``american_accurate_err``  the same at accuracy="high"
* ``ql_fast_per_s``, ``ql_fast_err``                      QuantLib QdFpAmericanEngine, fastScheme
* ``ql_accurate_per_s``, ``ql_accurate_err``              QuantLib QdFpAmericanEngine, accurateScheme

QuantLib is a Python loop pricing each option once (quotes moved, option rebuilt, NPV). Errors are
the worst ``|price - reference| / strike`` on a subsample, the reference being QuantLib's
high-precision QdFp scheme. Rates start at 0: a call at a negative rate is, by put-call symmetry,
a put at a negative yield, where QuantLib's QD+ start lies outside (0, K].

Cash dividends (quarterly dividends of 1.00 over five years, escrowed model):

* ``dividend_american_per_s``, ``dividend_american_err``  american_price(..., dividends=...), default
* ``ql_fd_per_s``, ``ql_fd_err``                          QuantLib FdBlackScholesVanillaEngine,
                                                          Escrowed, its default 100 x 100 grid

on subsamples of the same options (QuantLib's engine is slow), errors against QuantLib's engine on
an 800 x 800 grid.

Usage::

    python bench/american.py                  # readable table
    python bench/american.py --json           # ... plus one JSON object on the last line
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numba
import numpy as np
import QuantLib as ql
from greeks import best_time  # bench/greeks.py: the house timing helper

from optmm.greeks import american_price

TARGETS = {"vs_ql_fast": 4.0, "vs_ql_accurate": 4.0, "dividend_vs_ql_fd": 10.0}
EX_DAYS = np.arange(45, 5 * 365, 91)
AMOUNTS = np.full(EX_DAYS.shape, 1.0)
TODAY = ql.Date(4, 12, 2026)
_DC = ql.Actual365Fixed()


def make_options(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = rng.integers(1, 5 * 365 + 1, n)
    days[np.isin(days, EX_DAYS)] += 1  # QuantLib counts a dividend on the expiry date; optmm does not
    return {
        "spot": np.full(n, 100.0),
        "strike": np.exp(rng.uniform(np.log(50.0), np.log(200.0), n)),
        "days": days,
        "t": days / 365.0,
        "rate": rng.uniform(0.0, 0.08, n),
        "div_yield": rng.uniform(0.0, 0.05, n),
        "vol": np.exp(rng.uniform(np.log(0.05), np.log(2.0), n)),
        "is_call": rng.random(n) < 0.5,
    }


class _QLMarket:
    def __init__(self) -> None:
        ql.Settings.instance().evaluationDate = TODAY
        self.quotes = [ql.SimpleQuote(x) for x in (100.0, 0.0, 0.0, 0.2)]
        spot, rate, div, vol = (ql.QuoteHandle(x) for x in self.quotes)
        self.process = ql.BlackScholesMertonProcess(
            spot,
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, div, _DC)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, rate, _DC)),
            ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), vol, _DC)),
        )

    def loop(self, engine: Any, o: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        """Price options ``idx`` one at a time, as a QuantLib user would."""
        out = np.empty(idx.shape[0])
        for j, i in enumerate(idx):
            for quote, key in zip(self.quotes, ("spot", "rate", "div_yield", "vol"), strict=True):
                quote.setValue(float(o[key][i]))
            payoff = ql.PlainVanillaPayoff(
                ql.Option.Call if o["is_call"][i] else ql.Option.Put, float(o["strike"][i])
            )
            option = ql.VanillaOption(payoff, ql.AmericanExercise(TODAY, TODAY + int(o["days"][i])))
            option.setPricingEngine(engine)
            out[j] = option.NPV()
        return out

    def fd(self, t_grid: int, x_grid: int) -> Any:
        dividends = ql.DividendVector([TODAY + int(d) for d in EX_DAYS], [float(a) for a in AMOUNTS])
        return ql.FdBlackScholesVanillaEngine(
            self.process,
            dividends,
            t_grid,
            x_grid,
            0,
            ql.FdmSchemeDesc.Douglas(),
            False,
            -ql.nullDouble(),
            ql.FdBlackScholesVanillaEngine.Escrowed,
        )


def _timed_loop(fn: Any) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(
    n: int, seed: int, repeats: int, n_err: int, n_div: int, n_ql_fd: int, n_div_err: int
) -> dict[str, Any]:
    o = make_options(n, seed)
    args = tuple(o[k] for k in ("spot", "strike", "t", "rate", "div_yield", "vol", "is_call"))
    dividends = (EX_DAYS / 365.0, AMOUNTS)
    m = _QLMarket()
    everyone = np.arange(n)
    sub = np.arange(min(n_err, n))

    # optmm: warm-up (compile or cache load), then the best of `repeats` passes over all n
    for accuracy in ("default", "high"):
        american_price(*(a[:8] for a in args), accuracy=accuracy)
    american_price(*(a[:8] for a in args), dividends=dividends)
    t_def, p_def = best_time(lambda: american_price(*args), repeats)
    t_high, p_high = best_time(lambda: american_price(*args, accuracy="high"), repeats)

    # QuantLib QdFp: a loop over all n, each scheme once
    engine = {
        name: ql.QdFpAmericanEngine(m.process, scheme)
        for name, scheme in (
            ("fast", ql.QdFpAmericanEngine.fastScheme()),
            ("accurate", ql.QdFpAmericanEngine.accurateScheme()),
            ("high", ql.QdFpAmericanEngine.highPrecisionScheme()),
        )
    }
    t_fast, ql_fast = _timed_loop(lambda: m.loop(engine["fast"], o, everyone))
    t_acc, ql_acc = _timed_loop(lambda: m.loop(engine["accurate"], o, everyone))
    ref = m.loop(engine["high"], o, sub)

    def worst(prices: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> float:
        return float(np.max(np.abs(prices[idx] - ref) / o["strike"][idx]))

    # Cash dividends: optmm on n_div options, QuantLib's FD on n_ql_fd, errors on n_div_err
    div_idx = np.arange(min(n_div, n))
    dargs = tuple(a[div_idx] for a in args)
    t_div, p_div = best_time(lambda: american_price(*dargs, dividends=dividends), repeats)
    fd_idx = np.arange(min(n_ql_fd, n))
    t_qlfd, ql_fd = _timed_loop(lambda: m.loop(m.fd(100, 100), o, fd_idx))
    err_idx = np.arange(min(n_div_err, n_ql_fd, n_div, n))
    fd_ref = m.loop(m.fd(800, 800), o, err_idx)

    r = {
        "n_options": n,
        "seed": seed,
        "threads": numba.get_num_threads(),
        "cores": os.cpu_count(),
        "timing": f"best of {repeats} (optmm); single pass (QuantLib loops)",
        "error_sample": int(sub.shape[0]),
        "american_per_s": n / t_def,
        "american_err": worst(p_def, ref, sub),
        "american_accurate_per_s": n / t_high,
        "american_accurate_err": worst(p_high, ref, sub),
        "ql_fast_per_s": n / t_fast,
        "ql_fast_err": worst(ql_fast, ref, sub),
        "ql_accurate_per_s": n / t_acc,
        "ql_accurate_err": worst(ql_acc, ref, sub),
        "dividend_sample": int(div_idx.shape[0]),
        "ql_fd_sample": int(fd_idx.shape[0]),
        "dividend_error_sample": int(err_idx.shape[0]),
        "dividend_american_per_s": div_idx.shape[0] / t_div,
        "dividend_american_err": worst(p_div, fd_ref, err_idx),
        "ql_fd_per_s": fd_idx.shape[0] / t_qlfd,
        "ql_fd_err": worst(ql_fd, fd_ref, err_idx),
    }
    r["vs_ql_fast"] = r["american_per_s"] / r["ql_fast_per_s"]
    r["vs_ql_accurate"] = r["american_accurate_per_s"] / r["ql_accurate_per_s"]
    r["dividend_vs_ql_fd"] = r["dividend_american_per_s"] / r["ql_fd_per_s"]
    r["targets"] = TARGETS
    return r


def print_table(r: dict[str, Any], out: Any = sys.stdout) -> None:
    p = out.write
    p(
        f"American options: {r['n_options']:,} (seed {r['seed']}), numba threads {r['threads']}, "
        f"cores {r['cores']}; {r['timing']}\n"
    )
    p(f"worst |price - reference| / strike on {r['error_sample']} options (QdFp high precision)\n\n")
    rows = [
        ("optmm american_price, default", "american"),
        ("optmm american_price, high", "american_accurate"),
        ("QuantLib QdFp fastScheme", "ql_fast"),
        ("QuantLib QdFp accurateScheme", "ql_accurate"),
        (f"optmm, cash dividends ({r['dividend_sample']:,} options)", "dividend_american"),
        (f"QuantLib FD escrowed 100x100 ({r['ql_fd_sample']} options)", "ql_fd"),
    ]
    for label, key in rows:
        p(f"{label:<50}{r[key + '_per_s']:>12,.0f} /s   err {r[key + '_err']:.2e}\n")
    p(f"(cash-dividend errors against QuantLib FD 800x800 on {r['dividend_error_sample']} options)\n\n")
    for key, target in TARGETS.items():
        verdict = "meets" if r[key] >= target else "BELOW"
        p(f"{key:<22}{r[key]:>8.1f}x   target >= {target:g}x  ({verdict})\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of options (20,000)")
    parser.add_argument("--seed", type=int, default=20261204, help="numpy Generator seed")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of optmm, best taken (2)")
    parser.add_argument("--error-n", type=int, default=300, help="options checked against QdFp high (300)")
    parser.add_argument("--dividend-n", type=int, default=2000, help="optmm cash-dividend options (2,000)")
    parser.add_argument("--ql-fd-n", type=int, default=100, help="QuantLib FD options timed (100)")
    parser.add_argument("--dividend-error-n", type=int, default=24, help="options checked on 800x800 (24)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    a = parser.parse_args(argv)
    if min(a.n, a.repeats, a.error_n, a.dividend_n, a.ql_fd_n, a.dividend_error_n) < 1:
        parser.error("every count must be >= 1")
    r = run(a.n, a.seed, a.repeats, a.error_n, a.dividend_n, a.ql_fd_n, a.dividend_error_n)
    print_table(r)
    if a.json:
        sys.stdout.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
