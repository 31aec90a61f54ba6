"""Sweep benchmark: the same simulation sweep on a LocalCluster of 1 worker and of 2 workers.

One run times ``optmm.scaleout.run_sweep`` end to end (submitting the runs, storing them in part files,
writing the tables and the frontier plot) on a ``LocalCluster`` of one worker process, then on a new
one of two (one thread per worker, processes), each warmed first (a run on every worker: imports
and numba compilation) so that the timings are of the sweep alone, and reports:

* ``one_worker_s``, ``two_workers_s``: wall times of the sweep;
* ``speedup``: one_worker_s / two_workers_s (target >= 1.7 on a 2-core machine);
* ``tables_equal``: the two runs tables are identical (asserted).

The sweep is ``scenarios/sweeps/gamma_band.toml`` (the simulator, ~0.5 s a run), or with ``--fake``
the same 3 x 2 x 2 grid with a stand-in run: a CPU-bound pure-numpy task of about ``--task-s``
seconds (calibrated on this machine) whose numbers depend on (config, seed) only. ``--runs N`` sets
the number of runs (rounded to a whole number of seeds per setting). ``--json`` prints the figures
as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this file's directory heads sys.path, and this file (bench/distributed.py) would
# shadow the `distributed` package, here and in the workers (spawned with this sys.path): drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "scenarios" / "sweeps" / "gamma_band.toml"
TARGET_SPEEDUP = 1.7
FAKE_RUNS = 48
_FAKE_SIZE = 50_000


# --------------------------------------------------------------------------------------------------
# The stand-in simulation (--fake): module level, so that the workers (which re-import this module
# when they are spawned) unpickle it by name.


@dataclass(frozen=True)
class FakeConfig:
    """Sections of fields as canonical JSON: ``with_overrides``, ``content_hash``, ``to_dict``."""

    text: str

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FakeConfig:
        with open(path, "rb") as fh:
            return cls(json.dumps(tomllib.load(fh), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.text))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def with_overrides(self, overrides: dict[str, Any]) -> FakeConfig:
        doc = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if name not in doc.get(section, {}):
                raise ValueError(f"unknown config key {key!r}")
            doc[section][name] = value
        return FakeConfig(json.dumps(doc, sort_keys=True))


def _churn(x: np.ndarray, iterations: int) -> float:
    # Elementwise and in place: one thread, no BLAS, no allocation (Dask workers run with
    # MALLOC_TRIM_THRESHOLD_ set, which makes every large temporary array an mmap and its page faults).
    acc = 0.0
    for _ in range(iterations):
        np.multiply(x, 1.0001, out=x)
        np.add(x, 0.01, out=x)
        np.tanh(x, out=x)
        acc += float(x[::97].sum())
    return acc


def fake_run(config: FakeConfig, seed: int) -> dict[str, float]:
    """About ``bench.iterations`` x (calibrated) of numpy work; metrics a pure function of (config, seed)."""
    doc = config.to_dict()
    rng = np.random.default_rng([seed, int(config.content_hash[:12], 16)])
    acc = _churn(rng.standard_normal(_FAKE_SIZE), int(doc["bench"]["iterations"]))
    gamma = float(doc["quoter"]["gamma_risk_aversion"])
    band = float(doc["hedger"]["band_shares"])
    return {
        "total_pnl_mean": 1e3 - 1e6 * gamma - 0.2 * band + 1e-3 * acc + 300.0 * rng.standard_normal(),
        "max_abs_delta_shares": band * (1.0 + rng.uniform()),
    }


def _fake_base(directory: Path, task_s: float) -> Path:
    """A base config whose run takes about ``task_s`` seconds here (calibrated on 20 iterations)."""
    x = np.random.default_rng(0).standard_normal(_FAKE_SIZE)
    _churn(x, 5)
    t0 = time.perf_counter()
    _churn(x, 20)
    per_iteration = (time.perf_counter() - t0) / 20
    path = directory / "fake_base.toml"
    path.write_text(
        f"[bench]\niterations = {max(1, round(task_s / per_iteration))}\n"
        "[quoter]\ngamma_risk_aversion = 2e-5\n[hedger]\nband_shares = 500.0\n[flow]\nlatency_steps = 0\n"
    )
    return path


# --------------------------------------------------------------------------------------------------


def _timed_sweep(n_workers: int, spec: Any, out: Path, run_fn: Any, load_config: Any) -> tuple[float, Any]:
    from optmm.scaleout import client_for, run_sweep

    config = load_config(spec.base)
    config = config.with_overrides(dict(spec.overrides)) if spec.overrides else config
    with client_for(f"local:{n_workers}") as client:
        client.wait_for_workers(n_workers)
        warm = [  # one run on every worker, in its task thread: imports, numba compilation
            client.submit(run_fn, config, 0, workers=[addr], pure=False) for addr in client.nthreads()
        ]
        client.gather(warm)
        del warm
        t0 = time.perf_counter()
        result = run_sweep(spec, out, client=client, run_fn=run_fn, load_config=load_config, progress=False)
        return time.perf_counter() - t0, result


def run(*, fake: bool, runs: int | None, task_s: float) -> dict[str, Any]:
    import pandas as pd

    from optmm.scaleout import SweepSpec, run_sweep

    with tempfile.TemporaryDirectory(prefix="optmm-bench-") as tmp:
        tmpdir = Path(tmp)
        spec = SweepSpec.load(SWEEP)
        if fake:
            run_fn: Any = fake_run
            load_config: Any = FakeConfig.load
            spec = replace(spec, name=f"{spec.name}_fake", base=_fake_base(tmpdir, task_s), overrides=())
            runs = runs or FAKE_RUNS
        else:
            from optmm.sim import SimConfig, run_summary

            run_fn, load_config = run_summary, SimConfig.load
        n_settings = len(spec.settings())
        if runs is not None:
            spec = replace(spec, seeds=tuple(range(max(1, round(runs / n_settings)))))
        # this process's own imports (pyarrow, matplotlib, tqdm) before any timing
        run_sweep(replace(spec, grid=(), seeds=(0,)), tmpdir / "warm", run_fn=run_fn, load_config=load_config,
                  progress=False)  # fmt: skip
        one_s, one = _timed_sweep(1, spec, tmpdir / "one", run_fn, load_config)
        two_s, two = _timed_sweep(2, spec, tmpdir / "two", run_fn, load_config)
        pd.testing.assert_frame_equal(one.runs, two.runs)
    return {
        "one_worker_s": one_s,
        "two_workers_s": two_s,
        "speedup": one_s / two_s,
        "runs": spec.n_runs,
        "settings": n_settings,
        "seeds": len(spec.seeds),
        "task": f"~{task_s:g} s numpy task (--fake)" if fake else "simulator run (optmm.sim.run_summary)",
        "sweep": str(SWEEP.relative_to(ROOT)),
        "cores": os.cpu_count(),
        "tables_equal": True,
        "target_speedup": TARGET_SPEEDUP,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake", action="store_true", help="a CPU-bound numpy task instead of the simulator")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs in the sweep (default: the file's; {FAKE_RUNS} with --fake)",
    )
    parser.add_argument("--task-s", type=float, default=0.3, help="seconds of a --fake run (default 0.3)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object, last")
    args = parser.parse_args(argv)
    r = run(fake=args.fake, runs=args.runs, task_s=args.task_s)
    print(f"sweep {r['sweep']}: {r['settings']} settings x {r['seeds']} seeds = {r['runs']} runs, each a "
          f"{r['task']}; LocalCluster, 1 thread per worker process, warmed; {r['cores']} cores")  # fmt: skip
    print(f"  1 worker     {r['one_worker_s']:8.2f} s")
    print(f"  2 workers    {r['two_workers_s']:8.2f} s")
    ok = "meets" if r["speedup"] >= TARGET_SPEEDUP else "BELOW"
    print(f"  speed-up     {r['speedup']:8.2f}x   target >= {TARGET_SPEEDUP} ({ok})")
    print("  the two runs tables are identical (asserted)")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
