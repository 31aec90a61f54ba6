"""``optmm audit``: read the risk controller's audit trail (an SQLite file) from the shell.

::

    optmm audit DB [--underlying U] [--layer L] [--event E] [--since ISO] [--until ISO]
                   [--format table|csv] [--output FILE]

Times are shown and read as UTC (ISO 8601; a time without an offset is UTC; epoch seconds also work);
``--since`` is inclusive and ``--until`` exclusive. ``--underlying``, ``--layer`` and ``--event`` may
be repeated (any of them matches). The database is opened read-only, so a trail another process is
writing can be read at any time; only committed events appear. Bad input (no such file, not an audit
database, an unreadable time, an unknown layer) is one ``optmm: error: ...`` line and exit code 2; an
``--output`` file is written whole or not at all.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import pandas as pd

from optmm.cli.common import UsageError, _deliver, check_destination

__all__ = ["add_audit_parser", "run_audit"]


def _layer(text: str) -> str:
    from optmm.risk.audit import parse_layer

    try:
        return parse_layer(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_audit_parser(subparsers: Any) -> None:
    """Add ``optmm audit`` to the ``optmm`` sub-parsers."""
    p = subparsers.add_parser(
        "audit",
        help="show the risk controller's audit trail: state changes, pulls, cuts, kills",
        description="Events of an audit trail (SQLite) in recording order, with their trigger, the "
        "measured value and the threshold; filtered by underlying, layer, event and time (UTC).",
    )
    p.add_argument(
        "db", metavar="DB", help="the audit trail: an SQLite file written by optmm.risk.AuditTrail"
    )
    p.add_argument("--underlying", action="append", metavar="U", help='only this underlying ("" = book-wide)')
    p.add_argument("--layer", action="append", type=_layer, metavar="L",
                   help="only this layer: KILL, TOXIC, STALE, HARD, SOFT, NORMAL (any case)")  # fmt: skip
    p.add_argument(
        "--event", action="append", metavar="E", help="only this event: state, pull, cut, drop, ..."
    )
    p.add_argument("--since", metavar="ISO", help="from this time, inclusive (UTC unless an offset is given)")
    p.add_argument("--until", metavar="ISO", help="up to this time, exclusive")
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.add_argument("--output", metavar="FILE", help="write there (atomically) instead of stdout")


def _iso(frame: pd.DataFrame, timespec: str) -> list[str]:
    return [t.isoformat(timespec=timespec).replace("+00:00", "Z") for t in frame["time"]]


def _number(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return f"{x:,.2f}" if abs(x) >= 1.0 or x == 0.0 else f"{x:.6g}"


def _table(frame: pd.DataFrame, source: str) -> str:
    if frame.empty:
        return f"audit trail {source}: no events match\n"
    columns: list[tuple[str, list[str], bool]] = [  # (header, cells, right-aligned)
        ("id", [str(i) for i in frame["id"]], True),
        ("time (UTC)", _iso(frame, "milliseconds"), False),
        ("underlying", [u if u else "(book)" for u in frame["underlying"]], False),
        ("layer", list(frame["layer"]), False),
        ("event", list(frame["event"]), False),
        ("trigger", list(frame["trigger"]), False),
        ("measured", [_number(x) for x in frame["measured"]], True),
        ("threshold", [_number(x) for x in frame["threshold"]], True),
        ("detail", [" ".join(d.split()) for d in frame["detail"]], False),
    ]
    widths = [max(len(head), *(len(c) for c in cells)) for head, cells, _ in columns]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, (_, _, right) in zip(cells, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [f"audit trail {source}: {len(frame)} event{'s' if len(frame) != 1 else ''}"]
    lines.append(line([head for head, _, _ in columns]))
    lines.append("-" * len(lines[-1]))
    lines.extend(line([cells[i] for _, cells, _ in columns]) for i in range(len(frame)))
    return "\n".join(lines) + "\n"


def _csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    out["time"] = _iso(frame, "microseconds")
    return out.to_csv(index=False, lineterminator="\n")


def run_audit(args: argparse.Namespace) -> int:
    """Run ``optmm audit``; returns the exit code (errors raise :class:`UsageError`)."""
    from optmm.risk.audit import AuditTrail, parse_time

    check_destination("--output", args.output)
    for option in ("since", "until"):
        value = getattr(args, option)
        if value is not None:
            try:
                parse_time(value)
            except ValueError as exc:
                raise UsageError(f"--{option} {value!r}: {exc}") from None
    try:
        frame = AuditTrail.read(
            args.db,
            underlying=args.underlying,
            layer=args.layer,
            event=args.event,
            since=args.since,
            until=args.until,
        )
    except FileNotFoundError:
        raise UsageError(f"{args.db}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{args.db}: is a directory") from None
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    text = _table(frame, args.db) if args.format == "table" else _csv(frame)
    _deliver(text.encode("utf-8"), args.output)
    return 0
