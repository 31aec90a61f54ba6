"""The simulator's loop on American options, against the same book all European, side by side.

The bundled example book (``scenarios/examples/book.csv`` at ``scenarios/examples/market.toml``: four
underlyings, about 90 contracts each with ``[chain]``'s) is started from (``simulate(config,
book=, market=)``) on the calm day (``scenarios/sim/calm_day.toml``) for ``--steps`` one-second steps,
one path, after a warm-up run (the loops compiled). Its options are split by the engine that prices
them:

* ``fd_option_steps_per_s``        SPY, AAPL, MSFT: American on cash dividends, the finite-difference
                                   engine's tables (``optmm.sim._kernels._fd_marks``)
* ``boundary_option_steps_per_s``  TSLA: American on a borrow (a continuous carry), the boundary
                                   engine at every step
* ``european_option_steps_per_s``  the whole book with every option European (the rows' ``style``;
                                   ``[chain]``'s made European through the market's default)

each the options times the steps over the run's wall time (the whole ``simulate`` call: the loop,
the start and the result's tables), and ``fd_vs_european``, ``boundary_vs_european`` their ratios.

Usage::

    python bench/sim_american.py                  # readable lines
    python bench/sim_american.py --json           # ... plus one JSON object on the last line
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optmm.book import Book  # noqa: E402
from optmm.market import Market  # noqa: E402
from optmm.sim import SimConfig, simulate  # noqa: E402
from optmm.sim.start import prepare  # noqa: E402


def _subset(book: Book, keep: np.ndarray, style: str | None = None) -> Book:
    """The rows ``keep`` of ``book`` (with every option of ``style``, if given)."""
    frame = book.to_frame().iloc[np.flatnonzero(keep)].reset_index(drop=True)
    if style is not None:
        frame["style"] = np.where(frame["kind"].astype(str).str.lower() == "stock", "", style)
    return Book.from_frame(frame, source=book.source)


def _rate(cfg: SimConfig, book: Book, market: Market) -> float:
    """Option-steps per second of one run (after a warm-up of two steps)."""
    simulate(cfg.with_overrides({"sim.steps": 2}), book=book, market=market)
    n_opt = int(np.sum(prepare(cfg, book, market).kind != 2))
    t0 = time.perf_counter()
    simulate(cfg, book=book, market=market)
    return n_opt * cfg.sim.steps / (time.perf_counter() - t0)


def run(steps: int) -> dict[str, float | int]:
    book = Book.load(ROOT / "scenarios/examples/book.csv")
    market = Market.load(ROOT / "scenarios/examples/market.toml")
    cfg = SimConfig.load(ROOT / "scenarios/sim/calm_day.toml").with_overrides({"sim.steps": steps})
    tsla = book.underlying == "TSLA"
    european = dataclasses.replace(market, style={u: "european" for u in market.spot})
    r: dict[str, float | int] = {
        "steps": steps,
        "fd_option_steps_per_s": _rate(cfg, _subset(book, ~tsla), market),
        "boundary_option_steps_per_s": _rate(cfg, _subset(book, tsla), market),
        "european_option_steps_per_s": _rate(
            cfg, _subset(book, np.ones(len(book), bool), "european"), european
        ),
    }
    r["fd_vs_european"] = r["fd_option_steps_per_s"] / r["european_option_steps_per_s"]
    r["boundary_vs_european"] = r["boundary_option_steps_per_s"] / r["european_option_steps_per_s"]
    return r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1800, help="one-second steps per run (default 1800)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    a = parser.parse_args(argv)
    r = run(a.steps)
    for key, value in r.items():
        print(f"{key:30s} {value:,.4g}" if isinstance(value, float) else f"{key:30s} {value}")
    if a.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
