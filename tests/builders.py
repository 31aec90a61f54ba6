"""Builders and assertions shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optmm.book import Book, Kind
from optmm.cli import main
from optmm.market import Market, Sticky
from optmm.surface import FlatSurface, SVISurface

#: The valuation of :func:`make_market`'s markets (the scenario and exposure tests).
RISK_VALUATION = np.datetime64("2024-03-01")


class Clock:
    """A settable clock for the risk controller: it reads ``t`` (seconds), which a test moves."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_book(rows: list[tuple], source: str = "test") -> Book:
    """Rows of (underlying, kind, strike, expiry, quantity[, multiplier[, vol]])."""
    und, kind, strike, expiry, qty, mult, vol = [], [], [], [], [], [], []
    for r in rows:
        u, k, s, e, q = r[:5]
        und.append(u)
        kind.append(int(k))
        strike.append(s)
        expiry.append(e if e is not None else "NaT")
        qty.append(q)
        mult.append(r[5] if len(r) > 5 else (1.0 if k == Kind.STOCK else 100.0))
        vol.append(r[6] if len(r) > 6 else np.nan)
    n = len(rows)
    return Book(
        id=np.array([f"p{i}" for i in range(n)], dtype=object),
        underlying=np.array(und, dtype=object),
        kind=np.array(kind, dtype=np.int8),
        strike=np.array(strike, dtype=np.float64),
        expiry=np.array(expiry, dtype="datetime64[D]"),
        quantity=np.array(qty, dtype=np.float64),
        multiplier=np.array(mult, dtype=np.float64),
        vol=np.array(vol, dtype=np.float64),
        source=source,
    )


def one_name_market() -> Market:
    """AAA at 100, 3% rate, 1% dividend yield, flat 25% vol, valued 2026-01-02."""
    return Market(
        valuation=np.datetime64("2026-01-02"),
        spot={"AAA": 100.0},
        rate={"AAA": 0.03},
        div_yield={"AAA": 0.01},
        surface={"AAA": FlatSurface(0.25)},
        sticky=Sticky.STRIKE,
        source="test",
    )


def flat_market(
    spot: dict[str, float], rate: dict[str, float], div_yield: dict[str, float], vol: dict[str, float]
) -> Market:
    """Per underlying: spot, rate, dividend yield and a flat vol; sticky strike, valued 2026-01-02."""
    return Market(
        valuation=np.datetime64("2026-01-02"),
        spot=dict(spot),
        rate=dict(rate),
        div_yield=dict(div_yield),
        surface={u: FlatSurface(v) for u, v in vol.items()},
        sticky=Sticky.STRIKE,
        source="test",
    )


def make_market(
    spot: dict[str, float],
    *,
    vol: float = 0.25,
    rate: float = 0.04,
    div: float = 0.01,
    surface: dict | None = None,
    beta: dict[str, float] | None = None,
    index: str | None = None,
    sticky: Sticky = Sticky.STRIKE,
) -> Market:
    """Every underlying of ``spot`` at one rate, dividend yield and flat vol (unless ``surface`` gives
    its surfaces), valued :data:`RISK_VALUATION`."""
    return Market(
        valuation=RISK_VALUATION,
        spot=dict(spot),
        rate={u: rate for u in spot},
        div_yield={u: div for u in spot},
        surface=surface if surface is not None else {u: FlatSurface(vol=vol) for u in spot},
        beta=dict(beta or {}),
        index=index,
        sticky=sticky,
        source="test",
    )


def years(expiry: str) -> float:
    """ACT/365 years from :data:`RISK_VALUATION` to ``expiry``."""
    return float((np.datetime64(expiry, "D") - RISK_VALUATION).astype(np.int64)) / 365.0


def skew_surface() -> SVISurface:
    """Three SVI slices (0.1, 0.5 and 1.5 years), each with a downward skew."""
    return SVISurface(
        [0.1, 0.5, 1.5],
        a=[0.004, 0.02, 0.06],
        b=[0.08, 0.1, 0.12],
        rho=[-0.6, -0.5, -0.4],
        m=[0.0, 0.02, 0.05],
        sigma=[0.1, 0.15, 0.2],
    )


def with_cash_dividends(real_carry: Any, dividends: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    """A stand-in for :func:`optmm.pricing.carry` (to monkeypatch): the real carry plus the cash
    dividends (ex times in years from the valuation, amounts) of the underlyings named."""
    from optmm.pricing import Carry

    def carry(market: Market, underlyings: Any) -> Carry:
        c = real_carry(market, underlyings)
        none = (np.zeros(0), np.zeros(0))
        divs = [dividends.get(u, none) for u in c.underlyings]
        return Carry(c.underlyings, c.rate, c.q, tuple(d[0] for d in divs), tuple(d[1] for d in divs))

    return carry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``optmm`` in-process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit code 2, nothing on stdout, exactly one ``optmm: error:`` line on stderr naming ``fragments``."""
    code, out, err = result
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.startswith("optmm: error: ")
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, cache: Path, *args: str, **env: str) -> str:
    """``code`` (Python source) in a new interpreter, from the project's root, on the numba cache
    ``cache``, with ``args`` and ``env`` added to the environment: its stdout. It must exit 0 (the
    message has the end of its stderr; -11 is a crash)."""
    full = dict(os.environ, NUMBA_CACHE_DIR=str(cache), **env)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=full, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    return done.stdout


def last_json(stdout: str) -> Any:
    """The last line of ``stdout``, as JSON."""
    return json.loads(stdout.strip().splitlines()[-1])


def run_driver(driver: str, tmp_path: Path, args: list[str], **env: str) -> tuple[str, dict[str, Any]]:
    """``driver`` (:func:`run_python`) on an empty numba cache in ``tmp_path``, with ``args`` after the
    path of the JSON report it writes (its ``sys.argv[1]``): (its stdout, the report)."""
    report = tmp_path / "report.json"
    out = run_python(driver, tmp_path / "numba", str(report), *args, **env)
    return out, json.loads(report.read_text())
