"""``optmm sweep``: a grid of simulation settings x seeds, in this process or over a Dask cluster.

::

    optmm sweep SWEEP.toml --out DIR [--dask ADDRESS|local[:N]] [--resume] [--no-progress]

Without ``--dask`` a sweep runs its runs one after another in this process: no cluster is needed.
Bad input (a sweep file or base config that does not load, an unknown grid key, a grid too large, a
bad ``--dask`` spec, an unreachable scheduler, a non-empty ``--out`` without ``--resume``) and a file
that cannot be written (a full disk: the message names the file) are one ``optmm: error: ...`` line
and exit code 2; a failed run is one line and exit code 1, with the runs done so far stored for
``--resume``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optmm.cli.common import DASK_HELP, DASK_METAVAR, UsageError, _client, as_usage_error, dask_spec

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["add_sweep_parser", "run_sweep"]


def add_sweep_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of simulation settings x seeds; runs, summary and efficient frontier",
        description="Run every (setting, seed) of a sweep file (a base simulation config, a grid of "
        "overrides, seeds; see docs/distributed.md), in this process or on a Dask cluster. Writes "
        "DIR/runs.parquet (one row per run, keyed by config_hash and seed), DIR/summary.parquet (per "
        "setting: mean and std of P&L, risk, on the frontier or not), DIR/frontier.png and "
        "DIR/sweep.json, and prints the summary. Runs are stored as they finish: --resume continues "
        "an interrupted sweep.",
    )
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--dask", type=dask_spec, default=None, metavar=DASK_METAVAR,
                   help=DASK_HELP + "; default: the runs one after another in this process")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="keep the runs stored in DIR, run the others")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none unless stderr is a TTY)")


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _summary_text(result: Any) -> str:
    import pandas as pd

    from optmm.scaleout.sweep import PNL_STD

    spec, summary = result.spec, result.summary
    shown = pd.DataFrame({"setting": summary["setting"], "config": summary["config_hash"].str[:10]})
    for key in spec.keys:
        shown[key] = [_fmt_value(v) for v in summary[key].tolist()]
    shown["runs"] = summary["n_runs"]
    for col in ("pnl_mean", "pnl_std", "risk"):
        # n/a: no figure (pnl_std and its risk need two seeds)
        shown[col] = [f"{v:,.2f}" if math.isfinite(v) else "n/a" for v in summary[col].to_numpy(dtype=float)]
    shown["frontier"] = ["*" if e else "" for e in summary["efficient"]]
    risk = (
        f"std over seeds of {spec.pnl_metric}"
        if spec.risk_metric == PNL_STD
        else f"mean of {spec.risk_metric}"
    )
    n_settings = len(spec.settings())
    lines = [
        f"sweep {spec.name} ({spec.source}): {n_settings} settings x {len(spec.seeds)} seeds = "
        f"{spec.n_runs} runs; {result.n_new} run now, {result.n_reused} already stored",
        f"pnl_mean, pnl_std: mean and std over seeds of {spec.pnl_metric}; risk: {risk}",
        shown.to_string(index=False),
    ]
    eff = summary[summary["efficient"]].sort_values("risk", kind="stable")
    lines.append(
        "efficient frontier, low risk to high: settings " + ", ".join(str(int(s)) for s in eff["setting"])
        if len(eff)
        else "efficient frontier: no setting with a finite P&L and risk"
    )
    lines.append("wrote " + ", ".join(str(p) for p in result.files.values()))
    return "\n".join(lines) + "\n"


def run_sweep(args: argparse.Namespace) -> int:
    from optmm.scaleout.sweep import SweepError, SweepSpec
    from optmm.scaleout.sweep import run_sweep as run

    if not Path(args.sweep).is_file():  # a named pipe would block the read
        problem = "not a regular file" if Path(args.sweep).exists() else "no such file"
        raise UsageError(f"{args.sweep}: {problem}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: no such directory {str(out.parent)!r}")
    with as_usage_error():
        spec = SweepSpec.load(args.sweep)
    progress = False if args.no_progress else None

    def go(client: Client | None) -> Any:
        try:
            return run(spec, out, client=client, resume=args.resume, progress=progress)
        except SweepError as exc:
            sys.stderr.write(f"optmm: error: {' '.join(str(exc).split())}\n")
            return 1
        except FileExistsError as exc:
            raise UsageError(f"--out {args.out}: {exc}: --resume continues the sweep stored there") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # a full disk, a read-only file system: the message names the file
            where = f"{exc.filename}: " if exc.filename else ""
            raise UsageError(where + (exc.strerror or str(exc))) from None
        except KeyboardInterrupt:
            sys.stderr.write(f"optmm: interrupted; the runs done are stored in {out}: --resume continues\n")
            return 130

    if args.dask is None:
        result = go(None)
    else:
        with _client(args.dask) as client:
            result = go(client)
    if isinstance(result, int):
        return result
    sys.stdout.write(_summary_text(result))
    return 0
