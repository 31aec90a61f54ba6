"""``optmm simulate``: run a simulation configuration, or compare strategies on identical paths and flow.

::

    optmm simulate CONFIG.toml [--out DIR] [--seed N] [--paths N] [--compare STRATEGY ...]
                   [--set KEY=VALUE ...] [--overwrite] [--per-path-series] [--no-progress]
                   [--format table|json] [--book BOOK --market MARKET [--valuation WHEN]]
                   [--tape TAPE] [--record-tape OUT.csv|OUT.parquet]

One run prints its summary; ``--compare`` runs each named strategy (``symmetric``, ``linear``,
``greeks``, ``no-hedge``, ``no-pulls``, ``as2008``, ``as-symmetric``; combined with ``+``) on the same
seed, paths and order flow and prints them side by side. ``--out DIR`` writes the run directory (one
sub-directory per strategy with ``--compare``, plus ``compare.csv``), atomically, with the controller's
audit trail (``audit.sqlite``); with ``--compare``, ``pnl_distribution.png`` draws the strategies'
distributions of total P&L side by side. A run directory holds path 0's time series
(``steps.parquet``, ``underlyings.parquet``) unless ``--per-path-series`` asks for every path's.
``--set quoter.gamma_risk_aversion=1e-4`` changes a setting (the value is read as TOML: numbers,
true/false, "strings", [lists]).

``--book BOOK --market MARKET`` (both or neither) starts every path from the book's positions at the
market (its spots, rates, carry, valuation moment and a smile fitted to its surfaces, each fit's worst
error said on stderr), quoting the book's contracts and ``[chain]`` around the market's spots
(:mod:`optmm.sim.start`); ``--valuation WHEN`` moves the market first, as for ``optmm risk``.

``--tape TAPE`` replays a recorded market (docs/tape.md, "Replay") instead of the synthetic one: its
mids are the spot, its trades (else its quotes) the orders; with ``--compare`` every strategy replays
the same tape; several paths differ only by the quote-driven fills' draws (a tape of trades gives
identical paths); not with ``--book``. ``--record-tape OUT`` writes path 0 of the run as a tape
(``.csv`` or ``.parquet``) that replays it bit for bit; not with ``--compare`` (one run, one tape).

``--out`` is checked before the run (not a file, nor under one; its directory writable); a write that
fails (a full disk) is one ``optmm: error:`` line naming ``--out``, with nothing left behind. The run's
scratch folders beside ``--out`` are named after the process (:mod:`optmm._scratch`): those that a
killed run left are removed by the next run into the same directory, which says so on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optmm._io import atomic_target
from optmm._progress import Bar, stderr_is_terminal
from optmm._scratch import remove_stale, scratch_dir
from optmm.cli.common import UsageError, _load, add_valuation_option, as_usage_error

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
        "--per-path-series",
        action="store_true",
        help="write every path's time series to --out (default: path 0's; per-path totals always)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none unless stderr is a terminal)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the summary")
    p.add_argument(
        "--book", metavar="BOOK", help="start from this book's positions (CSV or Parquet; with --market)"
    )
    p.add_argument("--market", metavar="MARKET", help="the market the book starts at (TOML; with --book)")
    add_valuation_option(p)
    p.add_argument("--tape", metavar="TAPE", help="replay a recorded market (.csv, .parquet, or a directory)")
    p.add_argument(
        "--record-tape", metavar="OUT", help="write path 0 of the run as a tape (.csv or .parquet)"
    )


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
    from optmm import _compile_ahead
    from optmm._config import MAX_SEED, to_json
    from optmm.book import BookError
    from optmm.risk.audit import AuditTrail
    from optmm.sim.config import SimConfig
    from optmm.sim.engine import simulate, strategy_config
    from optmm.sim.report import (
        compare_table,
        format_summary,
        format_table,
        full_summary,
        summary_json,
        write_run,
    )
    from optmm.sim.start import SmileFit

    with as_usage_error():
        config = SimConfig.load(args.config)
        if args.overrides:
            config = config.with_overrides(parse_set(args.overrides))
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed: must be >= 0 and <= {MAX_SEED}, got {args.seed}")
    if args.paths is not None:
        if args.paths < 1:
            raise UsageError(f"--paths: must be >= 1, got {args.paths}")
        try:
            config.check_size(args.paths)
        except ValueError as exc:
            raise UsageError(f"--paths {args.paths}: {exc}") from None
    start = _start_inputs(args)
    if start and args.tape:
        raise UsageError("--tape with --book: a replay starts flat on the config's chain (give one of them)")
    # on a first run, a second core compiles kernels the loop calls (and an engine the book needs)
    _compile_ahead.for_simulation(start.get("book"), start.get("market"))
    names = args.compare or [None]
    with as_usage_error():
        configs = [(name, strategy_config(config, name) if name else config) for name in names]
    out = _check_out(args.out, args.overwrite) if args.out else None
    tape = _read_tape(args.tape) if args.tape else None
    if args.record_tape:
        _check_record_tape(args.record_tape, args.compare)
    n_steps = sum((args.paths or cfg.sim.paths) * cfg.sim.steps for _, cfg in configs)
    bar = Bar(n_steps, desc="simulate", unit="step", enabled=not args.no_progress and stderr_is_terminal())
    results = {}
    with bar, _scratch(out) as tmp:
        audits: dict[str, Path] = {}
        try:
            for name, cfg in configs:
                label = name or cfg.strategy.name
                audit_path = tmp / f"{len(audits)}.sqlite" if tmp is not None else None
                try:
                    trail = AuditTrail(audit_path, batch_size=8192) if audit_path is not None else None
                except ValueError as exc:  # an SQLite file that cannot be made (a full disk)
                    cause = exc.__context__ if isinstance(exc.__context__, sqlite3.Error) else exc
                    raise UsageError(
                        f"--out {out}: cannot write the run ({_reason(cause)}); nothing was written"
                    ) from None
                try:
                    results[label] = simulate(
                        cfg, seed=args.seed, paths=args.paths, progress=bar, audit=trail, tape=tape, **start
                    )
                except BookError as exc:  # (it names its file)
                    raise UsageError(str(exc)) from None
                except ValueError as exc:
                    raise UsageError(f"{args.config}: {exc}") from None
                except OverflowError as exc:  # a setting so extreme that the run's arithmetic overflows
                    raise UsageError(f"{args.config}: a setting is out of range ({exc})") from None
                finally:
                    if trail is not None:
                        trail.close()
                if audit_path is not None:
                    audits[label] = audit_path
            if out is not None:
                bar.phase(f"writing {out}")
                if args.compare:
                    _write_compare(out, results, audits, args.overwrite, args.per_path_series)
                else:
                    ((label, result),) = results.items()
                    write_run(
                        result,
                        out,
                        overwrite=args.overwrite,
                        extra_files={"audit.sqlite": audits[label]},
                        per_path_series=args.per_path_series,
                    )
        except FileExistsError:
            raise UsageError(f"--out {out}: exists (use --overwrite to replace it)") from None
        except (OSError, sqlite3.Error) as exc:  # a full disk, a file system gone read-only
            raise UsageError(
                f"--out {out}: cannot write the run ({_reason(exc)}); nothing was written"
            ) from None
    if start:
        for fit in next(iter(results.values())).summary["start"]["smile_fits"]:
            print(SmileFit(**fit), file=sys.stderr)
    if args.record_tape:
        _record_tape(next(iter(results.values())), args.record_tape)
    if args.compare:
        table = compare_table(results)
        if args.format == "json":
            print(to_json({str(name): dict(row) for name, row in table.iterrows()}, indent=2))
        else:
            print(format_table(table))
    else:
        summary = full_summary(next(iter(results.values())))
        print(summary_json(summary) if args.format == "json" else format_summary(summary))
    if out is not None:
        print(f"run written to {out}", file=sys.stderr)
    return 0


def _start_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """``{"book": ..., "market": ...}`` of ``--book`` and ``--market`` (read and checked against each
    other), or ``{}`` without them; one of them alone, or ``--valuation`` without them, is refused."""
    if (args.book is None) != (args.market is None):
        given, missing = ("--book", "--market") if args.book is not None else ("--market", "--book")
        raise UsageError(f"{given} needs {missing} (a simulation starts from a book at a market)")
    if args.book is None:
        if args.valuation is not None:
            raise UsageError("--valuation needs --book and --market")
        return {}
    book, market = _load(args, compile_ahead=False)
    return {"book": book, "market": market}


def _read_tape(path: str) -> Any:
    """``--tape``, read and validated (a problem: one line naming the file, row and field)."""
    from optmm.sim.tape import read_tape

    try:
        return read_tape(path)
    except ValueError as exc:
        raise UsageError(f"--tape {exc}") from None
    except OSError as exc:  # (read_tape's own "<path>: no such file or directory" names the file)
        raise UsageError(f"--tape {path}: {exc.strerror}" if exc.strerror else f"--tape {exc}") from None


def _check_record_tape(path: str, compare: list[str] | None) -> None:
    """``--record-tape`` before the run: one run, a known suffix, a directory to write in."""
    if compare:
        raise UsageError("--record-tape: records one run, not a --compare (run the strategy alone)")
    target = Path(path)
    if target.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UsageError(
            f"--record-tape {path}: unknown tape format {target.suffix!r} (use .csv or .parquet)"
        )
    if target.is_dir() or not Path(os.path.abspath(target)).parent.is_dir():
        raise UsageError(f"--record-tape {path}: not a file in an existing directory")


def _record_tape(result: Any, path: str) -> None:
    """Path 0 of ``result`` written to ``path`` as a tape, whole or not at all."""
    from optmm.sim.tape import tape_from_result, write_tape

    try:
        write_tape(tape_from_result(result), path)
    except OSError as exc:
        raise UsageError(f"--record-tape {path}: cannot write the tape ({_reason(exc)})") from None
    print(f"tape written to {path}", file=sys.stderr)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_out(text: str, overwrite: bool) -> Path:
    """``--out`` before the run: a directory or absent, empty unless ``overwrite``, not under a file."""
    out = Path(text)
    try:
        if os.path.lexists(out):
            if not out.is_dir():
                raise UsageError(f"--out {text}: exists and is not a directory")
            if any(out.iterdir()) and not overwrite:
                raise UsageError(f"--out {text}: exists and is not empty (use --overwrite to replace it)")
        above = Path(os.path.abspath(out)).parent
        while not os.path.lexists(above):
            above = above.parent
        if not above.is_dir():
            raise UsageError(f"--out {text}: {str(above)!r} is not a directory")
    except OSError as exc:
        raise UsageError(f"--out {text}: {_reason(exc)}") from None
    return out


@contextmanager
def _scratch(out: Path | None) -> Iterator[Path | None]:
    """A scratch folder beside ``out`` for the audit trails (None without ``out``), removed on the way
    out; the missing directories above ``out`` are made, and removed again if the run fails. Scratch
    folders of killed runs in that directory are removed first (said on stderr)."""
    if out is None:
        yield None
        return
    parent = Path(os.path.abspath(out)).parent
    missing: list[Path] = []
    above = parent
    while not os.path.lexists(above):
        missing.insert(0, above)
        above = above.parent
    made: list[Path] = []
    done = False
    try:
        try:
            for d in missing:
                os.mkdir(d)
                made.append(d)
            stale = remove_stale(parent)
            tmp = scratch_dir(parent, "optmm-audit")
        except OSError as exc:
            raise UsageError(f"--out {out}: cannot write in {str(parent)!r} ({_reason(exc)})") from None
        if stale:
            names = ", ".join(p.name for p in stale)
            print(
                f"optmm: removed {len(stale)} folder(s) left in {parent} by killed runs: {names}",
                file=sys.stderr,
            )
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        done = True
    finally:
        if not done:
            for d in reversed(made):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


def _write_compare(
    out: Path, results: dict[str, Any], audits: dict[str, Path], overwrite: bool, per_path_series: bool
) -> None:
    """Each strategy's run directory, ``compare.csv`` and ``pnl_distribution.png`` under a temporary
    sibling of ``out``, then the whole put in place at once (:func:`optmm.sim.report.install_dir`)."""
    from optmm.sim.report import compare_table, install_dir, plot_pnl_distribution, write_run

    tmp = scratch_dir(out.parent, out.name)
    try:
        for label, result in results.items():
            write_run(
                result,
                tmp / label.replace("/", "_"),
                extra_files={"audit.sqlite": audits[label]},
                per_path_series=per_path_series,
            )
        with atomic_target(tmp / "compare.csv", text=True) as target:
            compare_table(results).to_csv(target)
        plot_pnl_distribution(results, tmp / "pnl_distribution.png")
        install_dir(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
