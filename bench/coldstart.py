"""First-run and warm-run times of the two main commands, each in a fresh process.

numba compiles every kernel the first time it is called and caches the machine code on disk
(``cache=True``). This benchmark points numba at an empty cache directory (``NUMBA_CACHE_DIR``), runs
each command once there (cold: imports + compiling + the work), then again with the cache the first
run wrote (warm: imports + loading the cache + the work):

* ``risk_cold_s`` / ``risk_warm_s``          ``optmm risk`` on the bundled example book
* ``simulate_cold_s`` / ``simulate_warm_s``  ``optmm simulate scenarios/sim/calm_day.toml``
* ``risk_cold_over_warm``, ``simulate_cold_over_warm``: what compiling costs, as a ratio
* ``risk_cold_one_process_s`` / ``simulate_cold_one_process_s``: each command cold again, in another
  empty cache, without the helper process that compiles kernels it needs later on a second core
  (``OPTMM_COMPILE_AHEAD=0``, see ``optmm/_compile_ahead.py``), and ``*_cold_vs_one_process``: cold
  over that, as a ratio
* ``risk_cold_stock_s`` / ``simulate_cold_stock_s``: the cold runs again as numba does it, with its own
  inlining and typing (``OPTMM_COMPILE_SPEED=0``, see ``optmm/_compile_speed.py``) and in one process
  (``OPTMM_COMPILE_AHEAD=0``), in yet another empty cache, and ``risk_cold_vs_stock`` /
  ``simulate_cold_vs_stock``: cold over that, as a ratio

Wall-clock seconds of the whole process (as a user waits for it). The risk command runs first in its
cache and the simulation in its own, so that neither inherits the other's kernels.

Usage::

    python bench/coldstart.py            # readable lines
    python bench/coldstart.py --json     # ... plus one JSON object on the last line
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "scenarios" / "examples"
COMMANDS = {
    "risk": [
        "risk",
        str(EXAMPLES / "book.csv"),
        "--market",
        str(EXAMPLES / "market.toml"),
    ],
    "simulate": ["simulate", str(ROOT / "scenarios" / "sim" / "calm_day.toml"), "--no-progress"],
}


def run(args: list[str], cache: Path, compile_speed: bool = True, ahead: bool = True) -> float:
    """Seconds of one ``python -m optmm ARGS`` process with numba's cache in ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env["OPTMM_COMPILE_SPEED"] = "1" if compile_speed else "0"
    env["OPTMM_COMPILE_AHEAD"] = "1" if ahead else "0"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "optmm", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"optmm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="optmm-coldstart-") as tmp:
        for name, command in COMMANDS.items():
            cache = Path(tmp) / name
            cache.mkdir()
            cold = figures[f"{name}_cold_s"] = round(run(command, cache), 2)
            warm = figures[f"{name}_warm_s"] = round(run(command, cache), 2)
            line = f"optmm {name:<9} cold {cold:7.2f} s   warm {warm:6.2f} s"
            one_cache = Path(tmp) / f"{name}-one-process"
            one_cache.mkdir()
            one = figures[f"{name}_cold_one_process_s"] = round(run(command, one_cache, ahead=False), 2)
            figures[f"{name}_cold_vs_one_process"] = round(cold / one, 2)
            line += f"   cold in one process {one:7.2f} s"
            (Path(tmp) / f"{name}-stock").mkdir()
            stock = figures[f"{name}_cold_stock_s"] = round(
                run(command, Path(tmp) / f"{name}-stock", compile_speed=False, ahead=False), 2
            )
            figures[f"{name}_cold_over_warm"] = round(cold / warm, 1)
            figures[f"{name}_cold_vs_stock"] = round(cold / stock, 2)
            print(f"{line}   cold as numba does it {stock:7.2f} s", flush=True)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
