"""Speed of the simulator against the Greeks engine, side by side in one run.

Measures, on this machine, in one process:

* ``day_s``               one simulated trading day: ``scenarios/sim/calm_day.toml`` (80 options, 23,400
                          one-second steps, quoter + controller + toxicity + hedger), the whole
                          ``simulate()`` call (draws, the compiled loop, the result tables), best of
                          ``--repeats`` after a warm-up run (numba compilation);
* ``option_steps_per_s``  80 x 23,400 / ``day_s``;
* ``replay_option_steps_per_s``  the same day recorded as a tape (``--record-tape``: its orders as
                          trades) and replayed (``simulate(day, tape=...)``, the whole call, best of
                          ``--repeats`` after a warm-up), 80 x 23,400 / its time (target >= 0.5 x
                          ``option_steps_per_s``);
* ``greeks_per_s``        ``optmm.greeks.bsm_greeks`` options per second on 1,000,000 random options
                          (the option set of bench/greeks.py), best of max(``--repeats``, 15);
* ``ratio``               ``option_steps_per_s / greeks_per_s`` (target >= 0.1: the loop costs at most
                          ten Greeks evaluations per option-step);
* ``as2008_s``            the Avellaneda-Stoikov (2008) experiment: ``scenarios/sim/as2008.toml``, both
                          strategies (inventory and symmetric) for gamma = 0.01, 0.1, 1, 1,000 paths
                          each (target <= 10 s).

Usage::

    python bench/simulate.py            # readable table
    python bench/simulate.py --json     # ... plus one JSON object on the last line
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from greeks import best_time, make_options  # bench/greeks.py: the same option set and timing

from optmm.greeks import bsm_greeks
from optmm.sim import SimConfig, simulate
from optmm.sim.tape import read_tape, tape_from_result, write_tape

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"day_s": 2.0, "ratio": 0.1, "as2008_s": 10.0, "replay_vs_synthetic": 0.5}


def best(fn: Any, repeats: int) -> float:
    return best_time(fn, repeats)[0]


def run(repeats: int) -> dict[str, Any]:
    # bsm_greeks first, warmed as bench/greeks.py warms it, best of at least 15: its figure here is the
    # one bench/greeks.py reports (a call whose outputs land on freshly mapped pages runs several
    # times slower than one on recycled memory; later in a process that has freed large arrays the
    # allocator's state can make every call pay that, which would flatter the ratio)
    o = make_options(1_000_000, 0)
    args = (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["vol"], o["is_call"])
    bsm_greeks(*(a[:16] for a in args))
    bsm_greeks(*args)
    greeks_s = best(lambda: bsm_greeks(*args), max(repeats, 15))

    day = SimConfig.load(ROOT / "scenarios/sim/calm_day.toml")
    simulate(day)  # compile, warm
    n_options = 80
    day_s = best(lambda: simulate(day), repeats)
    option_steps = n_options * day.sim.steps
    with tempfile.TemporaryDirectory() as tmp:
        tape = read_tape(write_tape(tape_from_result(simulate(day)), Path(tmp) / "calm_day.parquet"))
    simulate(day, tape=tape)  # warm
    replay_s = best(lambda: simulate(day, tape=tape), repeats)

    as_cfg = SimConfig.load(ROOT / "scenarios/sim/as2008.toml")
    configs = [as_cfg.with_overrides({"strategy.as_gamma": g}) for g in (0.01, 0.1, 1.0)]
    simulate(configs[0].with_overrides({"sim.paths": 2}), strategy="as2008")  # compile, warm
    t0 = time.perf_counter()
    for cfg in configs:
        for strategy in ("as2008", "as-symmetric"):
            simulate(cfg, strategy=strategy)
    as2008_s = time.perf_counter() - t0

    ops = option_steps / day_s
    gps = 1_000_000 / greeks_s
    return {
        "day_s": round(day_s, 4),
        "option_steps_per_s": round(ops),
        "replay_option_steps_per_s": round(option_steps / replay_s),
        "greeks_per_s": round(gps),
        "ratio": round(ops / gps, 4),
        "as2008_s": round(as2008_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    a = parser.parse_args(argv)
    r = run(a.repeats)
    rows = [
        ("one trading day (80 options x 23,400 s)", f"{r['day_s']:.3f} s", f"<= {TARGETS['day_s']} s"),
        ("option-steps per second", f"{r['option_steps_per_s']:,d}", ""),
        (
            "  replaying the day as a tape",
            f"{r['replay_option_steps_per_s']:,d}",
            f">= {TARGETS['replay_vs_synthetic']} x synthetic",
        ),
        ("bsm_greeks options per second", f"{r['greeks_per_s']:,d}", ""),
        ("ratio", f"{r['ratio']:.4f}", f">= {TARGETS['ratio']}"),
        ("Avellaneda-Stoikov, 6 x 1,000 paths", f"{r['as2008_s']:.3f} s", f"<= {TARGETS['as2008_s']} s"),
    ]
    for label, value, target in rows:
        print(f"{label:<42}{value:>14}  {('target ' + target) if target else ''}")
    if a.json:
        sys.stdout.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
