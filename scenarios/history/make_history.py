"""Regenerate ``spx_vix.csv`` from the S&P 500 and VIX data sets bundled with the ``arch`` package.

Usage (arch 8.0.0 installed, or its wheel unpacked: ``pip download arch --no-deps``, then unzip)::

    python scenarios/history/make_history.py [ARCH_PACKAGE_DIR]

``ARCH_PACKAGE_DIR`` is the ``arch`` package directory (default: the installed one, found without
importing arch, which needs statsmodels). Reads ``arch/data/sp500/sp500.csv.gz`` (daily S&P 500,
1999-01-04 to 2018-12-31) and ``arch/data/vix/vix.csv.gz`` (daily VIX, 2014-01-03 to 2019-01-03)
and writes, for every date both give a number, one row for the underlying ``SPX``: ``spot`` the S&P
500 close exactly as in arch's file, ``atm_vol`` the VIX close / 100 (exact decimal arithmetic).
The VIX is a 30-day variance-swap rate of S&P 500 options, not strictly the ATM vol: it stands in
for it here (see README.md beside this script).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "spx_vix.csv"


def _arch_dir(argv: list[str]) -> Path:
    if len(argv) > 1:
        return Path(argv[1])
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("arch is not installed: pass the unpacked arch package directory")
    return Path(next(iter(spec.submodule_search_locations)))


def _read(path: Path, column: str) -> dict[str, str]:
    """ISO date -> the column's text, for rows where it is a number."""
    out: dict[str, str] = {}
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            day = datetime.strptime(row["Date"], "%m/%d/%Y").date().isoformat()
            try:
                Decimal(row[column])
            except InvalidOperation:
                continue  # a missing value in the source: no observation that day
            out[day] = row[column]
    return out


def main(argv: list[str]) -> None:
    arch = _arch_dir(argv)
    spx = _read(arch / "data" / "sp500" / "sp500.csv.gz", "Close")
    vix = _read(arch / "data" / "vix" / "vix.csv.gz", "vix")
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["date", "underlying", "spot", "atm_vol"])
        for day in sorted(set(spx) & set(vix)):
            w.writerow([day, "SPX", spx[day], str(Decimal(vix[day]) / 100)])


if __name__ == "__main__":
    main(sys.argv)
