"""Regenerate ``calm_day.csv``: the first 15 minutes of the bundled calm day, written as a tape.

Usage (from the repository's root)::

    python scenarios/tapes/make_calm_day.py

Runs ``scenarios/sim/calm_day.toml`` for 900 one-second steps (seed 1, one path) and writes the run
with :func:`optmm.sim.tape.tape_from_result` (docs/tape.md, "A synthetic run as a tape"): a quote of
the underlying at every step (spot ∓ the configured half-spread, the spot itself as ``mid``, the
path's vol level as ``vol``; one more at the last step's end) and every order that reached a quote of
ours as a trade in the option at our price and the order's size.
"""

from __future__ import annotations

from pathlib import Path

from optmm.sim import SimConfig, simulate
from optmm.sim.tape import tape_from_result, write_tape

HERE = Path(__file__).resolve().parent
STEPS = 900


def main() -> None:
    cfg = SimConfig.load(HERE.parent / "sim" / "calm_day.toml").with_overrides({"sim.steps": STEPS})
    out = write_tape(tape_from_result(simulate(cfg)), HERE / "calm_day.csv")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
