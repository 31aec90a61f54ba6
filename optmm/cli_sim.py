"""``optmm simulate``: run a simulation configuration, or compare strategies on identical paths and flow.

::

    optmm simulate CONFIG.toml [--out DIR] [--seed N] [--paths N] [--compare STRATEGY ...]
                   [--set KEY=VALUE ...] [--overwrite] [--no-progress] [--format table|json]

One run prints its summary; ``--compare`` runs each named strategy (``symmetric``, ``linear``,
``greeks``, ``no-hedge``, ``no-pulls``, ``as2008``, ``as-symmetric``; combined with ``+``) on the same
seed, paths and order flow and prints them side by side. ``--out DIR`` writes the run directory (one
sub-directory per strategy with ``--compare``, plus ``compare.csv``), atomically, with the controller's
audit trail (``audit.sqlite``). ``--set quoter.gamma_risk_aversion=1e-4`` changes a setting (the value is
read as TOML: numbers, true/false, "strings", [lists]).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from optmm._io import atomic_target
from optmm._progress import Bar, stderr_is_terminal
from optmm.cli_common import UsageError

__all__ = ["add_simulate_parser", "parse_set", "run_simulate"]


def add_simulate_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate options quoting with hedging (P&L attribution, strategy comparison)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("config", metavar="CONFIG.toml", help="simulation configuration (scenarios/sim/)")
    p.add_argument(
        "--out", metavar="DIR", help="write the run directory (Parquet, summary.json, PNGs, audit)"
    )
    p.add_argument("--seed", type=int, help="override [sim] seed")
    p.add_argument("--paths", type=int, help="override [sim] paths")
    p.add_argument("--compare", nargs="+", metavar="STRATEGY", help="strategies to run side by side")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help='change a setting, e.g. quoter.skew="none" (repeatable)',
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none unless stderr is a terminal)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the summary")


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["quoter.skew=none", "sim.paths=4"]`` -> overrides; values parsed as TOML, else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = value
    return out


def run_simulate(args: argparse.Namespace) -> int:
    from optmm.risk.audit import AuditTrail
    from optmm.sim.config import SimConfig
    from optmm.sim.engine import simulate, strategy_config
    from optmm.sim.report import compare_table, format_summary, format_table, summary_json, write_run

    try:
        config = SimConfig.load(args.config)
        if args.overrides:
            config = config.with_overrides(parse_set(args.overrides))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name, value in (("--seed", args.seed), ("--paths", args.paths)):
        if value is not None and value < (1 if name == "--paths" else 0):
            raise UsageError(f"{name}: must be >= {1 if name == '--paths' else 0}, got {value}")
    names = args.compare or [None]
    try:
        configs = [(name, strategy_config(config, name) if name else config) for name in names]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out {out}: exists and is not empty (use --overwrite to replace it)")
    n_steps = sum((args.paths or cfg.sim.paths) * cfg.sim.steps for _, cfg in configs)
    bar = Bar(n_steps, desc="simulate", unit="step", enabled=not args.no_progress and stderr_is_terminal())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    with (
        bar,
        tempfile.TemporaryDirectory(
            dir=out.parent if out is not None else None, prefix=".optmm-audit-"
        ) as tmp,
    ):
        audits: dict[str, Path] = {}
        for name, cfg in configs:
            label = name or cfg.strategy.name
            audit_path = Path(tmp) / f"{len(audits)}.sqlite"
            trail = AuditTrail(audit_path, batch_size=8192) if out is not None else None
            try:
                results[label] = simulate(cfg, seed=args.seed, paths=args.paths, progress=bar, audit=trail)
            except ValueError as exc:
                raise UsageError(f"{args.config}: {exc}") from None
            finally:
                if trail is not None:
                    trail.close()
            audits[label] = audit_path
        if out is not None:
            bar.phase(f"writing {out}")
            if args.compare:
                _write_compare(out, results, audits, args.overwrite)
            else:
                ((label, result),) = results.items()
                write_run(result, out, overwrite=args.overwrite, extra_files={"audit.sqlite": audits[label]})
    if args.compare:
        table = compare_table(results)
        if args.format == "json":
            print(table.to_json(orient="index"))
        else:
            print(format_table(table))
    else:
        summary = next(iter(results.values())).summary
        print(summary_json(summary) if args.format == "json" else format_summary(summary))
    if out is not None:
        print(f"run written to {out}", file=sys.stderr)
    return 0


def _write_compare(out: Path, results: dict[str, Any], audits: dict[str, Path], overwrite: bool) -> None:
    """Each strategy's run directory and ``compare.csv`` under a temporary sibling of ``out``, then the
    whole put in place at once (:func:`optmm.sim.report.install_dir`)."""
    from optmm.sim.report import compare_table, install_dir, write_run

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        for label, result in results.items():
            write_run(result, tmp / label.replace("/", "_"), extra_files={"audit.sqlite": audits[label]})
        with atomic_target(tmp / "compare.csv", text=True) as target:
            compare_table(results).to_csv(target)
        install_dir(tmp, out, overwrite=overwrite)
    except FileExistsError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"--out {out}: exists (use --overwrite to replace it)") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
