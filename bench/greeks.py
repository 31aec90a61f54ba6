"""Throughput of the optmm Greeks engine against numpy/scipy and vollib (py_vollib's successor).

One run, one seeded set of random European options (default 1,000,000), measures:

* ``greeks_per_s``          optmm.greeks.bsm_greeks, all 8 outputs (options per second)
* ``numpy_greeks_per_s``    the same 8 outputs as straightforward vectorised numpy/scipy (below),
                            asserted to agree with optmm to 1e-9 relative
* ``py_vollib_greeks_per_s`` a Python loop over vollib's BSM price + analytical delta, gamma, vega,
                            theta, rho (the 6 it has), on a subsample, scaled to per second
* ``iv_per_s``              optmm.greeks.implied_vol on bsm_price of the same options
* ``py_vollib_iv_per_s``    vollib's BSM implied_volatility in a Python loop on a subsample

Timings of the vectorised engines are the BEST of several repeats after a warm-up (numba compile,
page faults); the vollib loops are single passes over their subsample.

Usage::

    python bench/greeks.py                 # 1,000,000 options, readable table
    python bench/greeks.py --json          # ... plus one JSON object on the last line
    python bench/greeks.py --n 200000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from scipy.special import ndtr

from optmm.greeks import IVStatus, bsm_greeks, bsm_price, implied_vol

FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho", "vanna", "volga")
TARGETS = {"greeks_vs_numpy": 6.0, "greeks_vs_py_vollib": 300.0, "iv_vs_py_vollib": 250.0}
SPOT = 100.0
NUMPY_RTOL = 1e-9
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# The option set
# --------------------------------------------------------------------------------------------


def make_options(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` random options: spot 100, strike 50-150, t 1 day-2 years, r 0-6%, q 0-3%,
    vol 5%-80% (all uniform), exactly half calls and half puts in random order."""
    rng = np.random.default_rng(seed)
    is_call = np.zeros(n, dtype=np.bool_)
    is_call[: n // 2] = True
    return {
        "spot": np.full(n, SPOT),
        "strike": rng.uniform(50.0, 150.0, n),
        "t": rng.uniform(1.0 / 365.0, 2.0, n),
        "rate": rng.uniform(0.0, 0.06, n),
        "div_yield": rng.uniform(0.0, 0.03, n),
        "vol": rng.uniform(0.05, 0.80, n),
        "is_call": rng.permutation(is_call),
    }


# --------------------------------------------------------------------------------------------
# The numpy/scipy baseline: the textbook closed forms, vectorised, no Python loops
# --------------------------------------------------------------------------------------------


def numpy_greeks(
    spot: np.ndarray,
    strike: np.ndarray,
    t: np.ndarray,
    rate: np.ndarray,
    div_yield: np.ndarray,
    vol: np.ndarray,
    is_call: np.ndarray,
) -> dict[str, np.ndarray]:
    """Price and the 7 Greeks (optmm units) for t > 0, vol > 0, with scipy.special.ndtr for N."""
    sqrt_t = np.sqrt(t)
    sig_sqrt_t = vol * sqrt_t
    d1 = (np.log(spot / strike) + (rate - div_yield + 0.5 * vol * vol) * t) / sig_sqrt_t
    d2 = d1 - sig_sqrt_t
    sign = np.where(is_call, 1.0, -1.0)
    s_dq = spot * np.exp(-div_yield * t)  # S e^{-qt}
    k_dr = strike * np.exp(-rate * t)  # K e^{-rt}
    n_d1 = ndtr(sign * d1)  # N(d1) for calls, N(-d1) for puts
    n_d2 = ndtr(sign * d2)
    s_dq_pdf = s_dq * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)  # S e^{-qt} phi(d1)
    vega = s_dq_pdf * sqrt_t
    return {
        "price": sign * (s_dq * n_d1 - k_dr * n_d2),
        "delta": sign * (s_dq / spot) * n_d1,
        "gamma": s_dq_pdf / (spot * spot * sig_sqrt_t),
        "vega": vega,
        "theta": -s_dq_pdf * vol / (2.0 * sqrt_t) + sign * (div_yield * s_dq * n_d1 - rate * k_dr * n_d2),
        "rho": sign * t * k_dr * n_d2,
        "vanna": -s_dq_pdf * d2 / (spot * vol),
        "volga": vega * d1 * d2 / vol,
    }


# Natural size of each output for the spot-100 set, used as an absolute floor for the relative
# comparison: a value that cancels to ~0 (a put's theta changing sign, a far out-of-the-money
# price of 1e-30) cannot agree "relatively" between two correct formulas computed differently.
_SCALE = {
    "price": SPOT,
    "delta": 1.0,
    "gamma": 1.0 / SPOT,
    "vega": SPOT,
    "theta": SPOT,
    "rho": SPOT,
    "vanna": 1.0,
    "volga": SPOT,
}
_ABS_FLOOR = 1e-13  # x natural scale: ~500 ulps of the largest terms that get subtracted


def check_numpy_agrees(ref: dict[str, np.ndarray], opt: Any) -> dict[str, float]:
    """Assert |numpy - optmm| <= 1e-9 * max(|optmm|, 1e-4 * scale) per output; return max rel diff.

    The floor 1e-9 * 1e-4 * scale = 1e-13 * scale only matters for values that are themselves
    rounding noise of the terms they are computed from.
    """
    worst = {}
    for name in FIELDS:
        a = ref[name]
        b = np.asarray(getattr(opt, name))
        denom = np.maximum(np.abs(b), (_ABS_FLOOR / NUMPY_RTOL) * _SCALE[name])
        rel = np.abs(a - b) / denom
        i = int(np.argmax(rel))
        worst[name] = float(rel[i])
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), f"{name}: non-finite values"
        assert rel[i] <= NUMPY_RTOL, (
            f"numpy vs optmm {name} differ by {rel[i]:.3g} relative at index {i}: "
            f"numpy {a[i]!r}, optmm {b[i]!r}"
        )
    return worst


# --------------------------------------------------------------------------------------------
# vollib loops
# --------------------------------------------------------------------------------------------


def _subsample(opts: dict[str, np.ndarray], m: int) -> list[tuple[Any, ...]]:
    """The first ``m`` options (a random subsample, the set being random) as Python floats."""
    cols = [opts[k][:m].tolist() for k in ("spot", "strike", "t", "rate", "div_yield", "vol")]
    flags = ["c" if c else "p" for c in opts["is_call"][:m].tolist()]
    return list(zip(*cols, flags, strict=True))


def vollib_greeks_loop(rows: list[tuple[Any, ...]]) -> np.ndarray:
    """vollib BSM price, delta, gamma, vega, theta, rho per option, in a plain Python loop."""
    from vollib.black_scholes_merton import black_scholes_merton
    from vollib.black_scholes_merton.greeks.analytical import delta, gamma, rho, theta, vega

    out = []
    for s, k, t, r, q, sigma, flag in rows:
        out.append(
            (
                black_scholes_merton(flag, s, k, t, r, sigma, q),
                delta(flag, s, k, t, r, sigma, q),
                gamma(flag, s, k, t, r, sigma, q),
                vega(flag, s, k, t, r, sigma, q),
                theta(flag, s, k, t, r, sigma, q),
                rho(flag, s, k, t, r, sigma, q),
            )
        )
    return np.array(out, dtype=np.float64)


def vollib_iv_loop(rows: list[tuple[Any, ...]], prices: list[float]) -> np.ndarray:
    """vollib BSM implied_volatility per option; NaN where vollib raises (price out of bounds)."""
    from vollib.black_scholes_merton.implied_volatility import implied_volatility

    out = []
    for (s, k, t, r, q, _sigma, flag), p in zip(rows, prices, strict=True):
        try:
            out.append(implied_volatility(p, s, k, t, r, q, flag))
        except Exception:  # vollib raises PriceIsBelowIntrinsic / PriceIsAboveMaximum
            out.append(math.nan)
    return np.array(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best = math.inf
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(n: int, seed: int, repeats: int, vollib_greeks_n: int, vollib_iv_n: int) -> dict[str, Any]:
    opts = make_options(n, seed)
    args = tuple(opts[k] for k in ("spot", "strike", "t", "rate", "div_yield", "vol", "is_call"))
    m_g = min(vollib_greeks_n, n)
    m_iv = min(vollib_iv_n, n)

    # Warm-up: numba compile (or cache load) and first-touch of the output pages.
    bsm_greeks(*(a[:16] for a in args))
    bsm_greeks(*args)
    prices = bsm_price(*args)
    implied_vol(prices[:16], *(a[:16] for a in args[:5]), args[6][:16])
    numpy_greeks(*(a[:1000] for a in args))

    # 1. optmm bsm_greeks
    t_greeks, g = best_time(lambda: bsm_greeks(*args), repeats)

    # 2. numpy/scipy, same options, same 8 outputs; must agree before its time means anything.
    t_numpy, ref = best_time(lambda: numpy_greeks(*args), repeats)
    numpy_rel = check_numpy_agrees(ref, g)
    del ref

    # 3. vollib greeks loop on a subsample (and a loose check that it computes the same thing:
    #    vollib's vega and rho are per 1%, its theta per calendar day).
    rows_g = _subsample(opts, m_g)
    t0 = time.perf_counter()
    vl = vollib_greeks_loop(rows_g)
    t_vollib_g = time.perf_counter() - t0
    scale = {"vega": 100.0, "theta": 365.0, "rho": 100.0}
    mine = np.stack([np.asarray(getattr(g, f))[:m_g] / scale.get(f, 1.0) for f in FIELDS[:6]], axis=1)
    assert np.allclose(vl, mine, rtol=1e-6, atol=1e-9 * SPOT), "vollib greeks disagree with optmm"
    del g

    # 4. optmm implied_vol on the prices of the same options.
    t_iv, (iv, status) = best_time(
        lambda: implied_vol(prices, *args[:5], args[6], return_status=True), repeats
    )
    vol = opts["vol"]
    finite = np.isfinite(iv)
    err = np.abs(iv - vol)
    iv_max_abs_err = float(np.max(err[finite])) if finite.any() else math.nan
    # Where the price does determine the vol: an ulp of the price moves the vol by < 1e-10.
    vega = np.asarray(bsm_greeks(*args).vega)
    determined = np.spacing(np.maximum(prices, 1e-300)) < 1e-10 * vega
    iv_err_determined = float(np.max(err[determined & finite])) if determined.any() else math.nan
    status_counts = {
        IVStatus(code).name: int(count)
        for code, count in zip(*np.unique(status, return_counts=True), strict=True)
    }

    # 5. vollib implied vol loop on a subsample of the same prices.
    rows_iv = _subsample(opts, m_iv)
    p_iv = prices[:m_iv].tolist()
    t0 = time.perf_counter()
    viv = vollib_iv_loop(rows_iv, p_iv)
    t_vollib_iv = time.perf_counter() - t0
    sub_det = determined[:m_iv] & np.isfinite(viv)
    vollib_iv_err = float(np.max(np.abs(viv - vol[:m_iv])[sub_det])) if sub_det.any() else math.nan

    greeks_per_s = n / t_greeks
    numpy_per_s = n / t_numpy
    vollib_g_per_s = m_g / t_vollib_g
    iv_per_s = n / t_iv
    vollib_iv_per_s = m_iv / t_vollib_iv
    return {
        "n_options": n,
        "seed": seed,
        "threads": numba.get_num_threads(),
        "threading_layer": numba.threading_layer(),
        "cores": os.cpu_count(),
        "timing": f"best of {repeats} (optmm, numpy); single pass (vollib loops)",
        "greeks_per_s": greeks_per_s,
        "numpy_greeks_per_s": numpy_per_s,
        "py_vollib_greeks_per_s": vollib_g_per_s,
        "py_vollib_greeks_sample": m_g,
        "iv_per_s": iv_per_s,
        "py_vollib_iv_per_s": vollib_iv_per_s,
        "py_vollib_iv_sample": m_iv,
        "greeks_vs_numpy": greeks_per_s / numpy_per_s,
        "greeks_vs_py_vollib": greeks_per_s / vollib_g_per_s,
        "iv_vs_py_vollib": iv_per_s / vollib_iv_per_s,
        "targets": TARGETS,
        "numpy_max_rel_diff": max(numpy_rel.values()),
        "iv_max_abs_err": iv_max_abs_err,
        "iv_max_abs_err_where_price_determines_vol": iv_err_determined,
        "iv_n_price_determines_vol": int(determined.sum()),
        "iv_n_nan": int((~finite).sum()),
        "iv_status_counts": status_counts,
        "py_vollib_iv_max_abs_err_where_price_determines_vol": vollib_iv_err,
        "py_vollib_iv_n_nan": int(np.isnan(viv).sum()),
    }


def _rate(x: float) -> str:
    return f"{x:>14,.0f} /s"


def print_table(r: dict[str, Any], out: Any = sys.stdout) -> None:
    n = r["n_options"]
    p = out.write
    p(
        f"optmm greeks benchmark: {n:,} options (seed {r['seed']}), "
        f"numba threads {r['threads']} ({r['threading_layer']}), cores {r['cores']}\n"
    )
    p(f"timing: {r['timing']}\n\n")
    p(f"{'bsm_greeks (optmm, 8 outputs)':<44}{_rate(r['greeks_per_s'])}\n")
    p(f"{'numpy/scipy vectorised (8 outputs)':<44}{_rate(r['numpy_greeks_per_s'])}\n")
    label = f"vollib loop (6 outputs, {r['py_vollib_greeks_sample']:,} options)"
    p(f"{label:<44}{_rate(r['py_vollib_greeks_per_s'])}\n")
    p(f"{'implied_vol (optmm)':<44}{_rate(r['iv_per_s'])}\n")
    label = f"vollib implied_volatility loop ({r['py_vollib_iv_sample']:,} options)"
    p(f"{label:<44}{_rate(r['py_vollib_iv_per_s'])}\n\n")
    for key, target in TARGETS.items():
        ratio = r[key]
        verdict = "meets" if ratio >= target else "BELOW"
        p(f"{key:<24}{ratio:>10.1f}x   target >= {target:g}x  ({verdict})\n")
    p("\n")
    p(f"numpy vs optmm max relative difference: {r['numpy_max_rel_diff']:.3g} (asserted <= 1e-9)\n")
    p(
        f"implied_vol max |vol error|: {r['iv_max_abs_err']:.3g} over all finite results "
        f"({r['iv_n_nan']:,} NaN; status {r['iv_status_counts']})\n"
    )
    p(
        f"  where the price determines the vol ({r['iv_n_price_determines_vol']:,} options): "
        f"{r['iv_max_abs_err_where_price_determines_vol']:.3g}; vollib on its sample: "
        f"{r['py_vollib_iv_max_abs_err_where_price_determines_vol']:.3g} "
        f"({r['py_vollib_iv_n_nan']} NaN)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of options (1,000,000)")
    parser.add_argument("--seed", type=int, default=20240531, help="numpy Generator seed")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats, best taken (5)")
    parser.add_argument("--vollib-greeks-n", type=int, default=5000, help="vollib greeks sample")
    parser.add_argument("--vollib-iv-n", type=int, default=3000, help="vollib IV sample")
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    a = parser.parse_args(argv)
    if a.n < 2 or a.repeats < 1 or a.vollib_greeks_n < 1 or a.vollib_iv_n < 1:
        parser.error("--n must be >= 2, --repeats and the vollib samples >= 1")
    r = run(a.n, a.seed, a.repeats, a.vollib_greeks_n, a.vollib_iv_n)
    print_table(r)
    if a.json:
        sys.stdout.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
