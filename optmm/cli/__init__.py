"""Command-line interface: ``optmm <command> ...``, one module per command and :mod:`optmm.cli.common`
for what they share.

Commands are registered in :data:`COMMANDS`, a dispatch table mapping a sub-command name to a
pair ``(add_parser, run)``:

* ``add_parser(subparsers)`` adds the sub-command's parser to the ``argparse`` sub-parsers action;
* ``run(args)`` executes it with the parsed :class:`argparse.Namespace` and returns an exit code.

Usage errors (bad or missing arguments, and ``ValueError`` raised by the Greeks engine for the
given inputs) never produce a traceback: :func:`main` prints ONE line, ``optmm: error: ...``, on
stderr and returns exit code 2.

Beyond usage errors, :func:`main` turns any ``OSError``, ``sqlite3.Error``, ``MemoryError`` or
``ValueError`` that a command let through into the same one line and exit code 2, and prints no
numpy RuntimeWarning (the commands check their figures and name what is not finite).
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from optmm._progress import compile_notice, stderr_is_terminal
from optmm.cli import audit, chain, explain, fit, limits, report, risk, scenario, simulate, sweep, var
from optmm.cli.common import UsageError

__all__ = ["COMMANDS", "EXIT_USAGE", "build_parser", "main", "run"]

EXIT_USAGE = 2
_ERROR_PREFIX = "optmm: error: "


class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are raised (one line, no usage dump) instead of printed."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


#: name -> (add_parser(subparsers), run(args) -> exit code). Add new sub-commands here.
COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "chain": (chain.add_chain_parser, chain.run_chain),
    "risk": (risk.add_risk_parser, risk.run_risk),
    "scenario": (scenario.add_scenario_parser, scenario.run_scenario),
    "var": (var.add_var_parser, var.run_var),
    "audit": (audit.add_audit_parser, audit.run_audit),
    "limits": (limits.add_limits_parser, limits.run_limits),
    "explain": (explain.add_explain_parser, explain.run_explain),
    "simulate": (simulate.add_simulate_parser, simulate.run_simulate),
    "sweep": (sweep.add_sweep_parser, sweep.run_sweep),
    "fit": (fit.add_fit_parser, fit.run_fit),
    "report": (report.add_report_parser, report.run_report),
}


def build_parser() -> argparse.ArgumentParser:
    from optmm import __version__

    parser = _ArgumentParser(
        prog="optmm", description="Options market-making risk engine: command-line tools."
    )
    parser.add_argument("--version", action="version", version=f"optmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(subparsers)
    return parser


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--spot -20:20:2`` -> ``--spot=-20:20:2``: argparse would take "-20:20:2" for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and argv[i + 1][:1] == "-":
            nxt = argv[i + 1]
            if len(nxt) > 1 and (nxt[1].isdigit() or nxt[1] == "."):
                out.append(f"{a}={nxt}")
                i += 2
                continue
        out.append(a)
        i += 1
    return out


def _runtime_warnings_are_errors() -> bool:
    """Whether the warning filters in force (``python -W error``, a test run) turn a numpy
    RuntimeWarning into an exception: then :func:`main` leaves them so."""
    for action, message, category, module, _lineno in warnings.filters:
        if not issubclass(RuntimeWarning, category):
            continue
        if message is not None and not message.match("overflow encountered"):
            continue
        if module is not None and not module.match("numpy"):
            continue
        return action == "error"
    return False


def _unexpected_error(exc: BaseException) -> str:
    """One line for an error that no command turned into a :class:`UsageError`, naming what it can."""
    if isinstance(exc, MemoryError):
        return "out of memory: the input (book, grid, run) is too large for this machine's memory"
    if isinstance(exc, OSError):
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{' -> '.join(names)}: {reason}" if names else f"system error: {reason}"
    if isinstance(exc, sqlite3.Error):
        return f"database error (SQLite): {exc}"
    if isinstance(exc, RuntimeWarning):
        return f"numerical error: {exc}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``optmm`` command line; returns the process exit code.

    Every error ends as ONE line on stderr, ``optmm: error: ...``, and exit code 2: usage errors,
    and as a safety net any ``OSError``, ``sqlite3.Error``, ``MemoryError`` or ``ValueError`` that a
    command did not turn into one. numpy's RuntimeWarnings (overflow, invalid value) are not
    printed: the commands check their figures and name what is not finite; where the warning
    filters in force make them errors (``python -W error``, the tests), they stay errors and end
    as such a line.
    """
    with warnings.catch_warnings():
        if not _runtime_warnings_are_errors():
            warnings.simplefilter("ignore", RuntimeWarning)
        try:
            parser = build_parser()
            try:
                args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
            except SystemExit as exc:  # --help / --version
                return exc.code if isinstance(exc.code, int) else 0
            with compile_notice(enabled=stderr_is_terminal()):  # a first run compiles for minutes: say so
                return COMMANDS[args.command][1](args)
        except UsageError as exc:
            message = str(exc)
        except BrokenPipeError:  # e.g. `optmm chain ... | head`: exit quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        except (OSError, sqlite3.Error, MemoryError, ValueError, RuntimeWarning) as exc:
            message = _unexpected_error(exc)
    sys.stderr.write(_ERROR_PREFIX + _one_line(message) + "\n")
    return EXIT_USAGE


def run() -> int:
    """The ``optmm`` program, a process of its own (its console script and ``python -m optmm``):
    :func:`main`, then every object left is moved out of the garbage collector's reach
    (``gc.freeze()``). The interpreter's exit then does not walk them in its last collections,
    which took 0.3 s after a first ``optmm risk`` (numba's compiled functions, their IR and types)
    and 0.15 s after a warm one; they go with the process. Files are closed by then and exit
    handlers still run (the audit trail commits what it holds); only a finaliser of an object in a
    reference cycle is left uncalled, which Python never promises at exit."""
    code = main()
    gc.freeze()
    return code
