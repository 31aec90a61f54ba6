"""Tests of the ``optmm`` command line (optmm.cli): values, units, layout and usage errors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from builders import run
from hypothesis import given
from hypothesis import strategies as st

import optmm
from optmm.cli.chain import MAX_STRIKES, parse_strikes
from optmm.greeks import bsm_greeks

SPOT, VOL, RATE, DIV, DAYS = 100.0, 0.25, 0.04, 0.015, 45.0
T = DAYS / 365.0
STRIKES = [80.0, 85.0, 90.0, 95.0, 100.0, 105.0, 110.0, 115.0, 120.0]
BASE = ["chain", "--spot", "100", "--vol", "0.25", "--rate", "0.04", "--div", "0.015"]
BASE += ["--days", "45", "--strikes", "80:120:5"]

# output column -> (Greeks field, divisor): the trader units, then the raw partials.
UNIT_COLUMNS = {
    "price": ("price", 1.0),
    "delta": ("delta", 1.0),
    "gamma": ("gamma", 1.0),
    "vega_per_vol_point": ("vega", 100.0),
    "theta_per_day": ("theta", 365.0),
    "rho_per_pct": ("rho", 100.0),
    "vanna": ("vanna", 1.0),
    "volga": ("volga", 1.0),
    "vega_per_unit_vol": ("vega", 1.0),
    "theta_per_year": ("theta", 1.0),
    "rho_per_unit_rate": ("rho", 1.0),
}


def expected(strike: float, kind: str) -> dict[str, float]:
    g = bsm_greeks(SPOT, strike, T, RATE, DIV, VOL, kind == "call")
    return {col: float(getattr(g, field)) / div for col, (field, div) in UNIT_COLUMNS.items()}


def check_records(records: list[dict[str, float | str]]) -> None:
    """One record per (strike, type), every value equal to bsm_greeks in the stated units."""
    keys = [(float(r["strike"]), r["type"]) for r in records]
    assert sorted(keys) == sorted((k, typ) for k in STRIKES for typ in ("call", "put"))
    for rec in records:
        exp = expected(float(rec["strike"]), str(rec["type"]))
        for col, value in exp.items():
            assert math.isclose(float(rec[col]), value, rel_tol=1e-12, abs_tol=1e-300), (
                rec["strike"],
                rec["type"],
                col,
            )


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _no_nan(token: str) -> float:
    raise AssertionError(f"non-standard JSON constant {token}")


# ---------------------------------------------------------------------------------------------
# Values and units
# ---------------------------------------------------------------------------------------------


def test_csv_values_equal_bsm_greeks_in_stated_units(capsys):
    code, out, err = run(capsys, *BASE, "--format", "csv")
    assert (code, err) == (0, "")
    rows = parse_csv(out)
    assert len(rows) == 2 * len(STRIKES)
    assert set(UNIT_COLUMNS) <= set(rows[0])
    check_records(rows)
    for row in rows:  # the inputs are restated on every row
        assert float(row["t_years"]) == T
        assert (float(row["spot"]), float(row["vol"]), float(row["days"])) == (SPOT, VOL, DAYS)
        assert (float(row["rate"]), float(row["div"])) == (RATE, DIV)


def test_json_values_equal_bsm_greeks_in_stated_units(capsys):
    code, out, err = run(capsys, *BASE, "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out, parse_constant=_no_nan)
    assert doc["inputs"]["t_years"] == T
    assert doc["inputs"]["days"] == DAYS
    assert set(UNIT_COLUMNS) <= set(doc["units"])
    assert len(doc["rows"]) == 2 * len(STRIKES)
    check_records(doc["rows"])


def test_put_call_parity_holds_in_the_output(capsys):
    code, out, _ = run(capsys, *BASE, "--format", "csv")
    assert code == 0
    by = {
        (float(r["strike"]), r["type"]): {k: float(v) for k, v in r.items() if k != "type"}
        for r in parse_csv(out)
    }
    dq, dr = math.exp(-DIV * T), math.exp(-RATE * T)
    for k in STRIKES:
        c, p = by[(k, "call")], by[(k, "put")]
        assert math.isclose(c["price"] - p["price"], SPOT * dq - k * dr, rel_tol=0, abs_tol=1e-12 * SPOT)
        assert math.isclose(c["delta"] - p["delta"], dq, rel_tol=0, abs_tol=1e-12)
        for same in ("gamma", "vega_per_vol_point", "vanna", "volga"):
            assert math.isclose(c[same], p[same], rel_tol=1e-12, abs_tol=1e-15), same
        # d/d(rate) of the parity relation, per 1%: K t e^{-rt} / 100
        assert math.isclose(c["rho_per_pct"] - p["rho_per_pct"], k * T * dr / 100, abs_tol=1e-12)
        # -d/dt of the parity relation, per day: (q S e^{-qt} - r K e^{-rt}) / 365
        theta_diff = (DIV * SPOT * dq - RATE * k * dr) / 365
        assert math.isclose(c["theta_per_day"] - p["theta_per_day"], theta_diff, abs_tol=1e-12)


def test_theta_per_day_is_the_one_day_decay(capsys):
    """Independent of the engine's sign convention: theta/day ~ V(t - 1 day) - V(t)."""
    code, out, _ = run(capsys, *BASE, "--format", "csv")
    assert code == 0
    for r in parse_csv(out):
        k, is_call = float(r["strike"]), r["type"] == "call"
        one_day = float(bsm_greeks(SPOT, k, T - 1 / 365, RATE, DIV, VOL, is_call).price)
        decay = one_day - float(r["price"])
        assert math.isclose(float(r["theta_per_day"]), decay, rel_tol=0.05, abs_tol=2e-4)


def test_subprocess_python_m_optmm(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "optmm", *BASE, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    check_records(json.loads(proc.stdout, parse_constant=_no_nan)["rows"])


def test_the_program_freezes_what_is_left_after_the_command(monkeypatch):
    import optmm.cli as cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    monkeypatch.setattr(cli.gc, "freeze", lambda: calls.append("freeze"))
    assert cli.run() == 3 and calls == ["main", "freeze"]


def test_a_frozen_exit_still_runs_exit_handlers_and_closes_files(tmp_path):
    """``run`` leaves the objects of the command to the process's end: an audit trail left open (in a
    reference cycle, for good measure) still commits at exit, a file still gets its text."""
    script = f"""
import sys
import optmm.cli as cli
from optmm.risk.audit import AuditEvent, AuditTrail, Layer

def command():
    trail = AuditTrail({str(tmp_path / "trail.db")!r}, batch_size=100)
    trail.record(AuditEvent(ts=1.0, underlying="SPY", layer=Layer.HARD, event="cut", trigger="t",
                            measured=2.0, threshold=1.0, detail="left open"))
    trail.me = trail  # a cycle
    cli.kept = [trail, open({str(tmp_path / "out.txt")!r}, "w")]
    cli.kept[1].write("written")
    return 0

cli.main = command
sys.exit(cli.run())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.txt").read_text() == "written"
    conn = sqlite3.connect(tmp_path / "trail.db")
    try:
        assert conn.execute("SELECT detail FROM events").fetchall() == [("left open",)]
    finally:
        conn.close()


def test_subprocess_bad_argument_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "optmm", "chain", "--spot", "-1", "--vol", "0.2", "--days", "30"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("optmm: error:"), proc.stderr
    assert "--spot" in lines[0]


# ---------------------------------------------------------------------------------------------
# The readable table
# ---------------------------------------------------------------------------------------------


def test_table_restates_inputs_and_labels_units(capsys):
    code, out, err = run(capsys, *BASE)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    title = lines[0]
    for token in ("spot=100", "vol=0.25", "rate=0.04", "div=0.015", "days=45", f"t={T:.6f}"):
        assert token in title, token
    assert "ACT/365" in title
    header = next(line for line in lines if "strike" in line and "price" in line)
    for label in ("price", "delta", "gamma", "vega/vpt", "theta/day", "rho/1%", "vanna", "volga"):
        assert header.count(label) == 2, label  # once for calls, once for puts
    units = " ".join(lines[-3:])
    assert "raw vega/100" in units and "raw theta/365" in units and "raw rho/100" in units
    assert "CALLS" in lines[1] and "PUTS" in lines[1]
    assert lines[1].index("CALLS") < lines[1].index("PUTS")


def test_table_has_calls_left_and_puts_right_of_each_strike(capsys):
    code, out, _ = run(capsys, *BASE)
    assert code == 0
    body = [line.split(" | ") for line in out.splitlines() if line.count(" | ") == 2]
    rows = [parts for parts in body if parts[1].strip() != "strike" and parts[1].strip()]
    assert [float(parts[1]) for parts in rows] == STRIKES
    for call_part, strike, put_part in rows:
        k = float(strike)
        call, put = expected(k, "call"), expected(k, "put")
        call_cells, put_cells = call_part.split(), put_part.split()
        assert float(call_cells[0]) == pytest.approx(call["price"], abs=5e-5)
        assert float(put_cells[0]) == pytest.approx(put["price"], abs=5e-5)
        assert float(call_cells[1]) == pytest.approx(call["delta"], abs=5e-5)
        assert float(put_cells[1]) == pytest.approx(put["delta"], abs=5e-5)
        # trader units in the table: vega per vol point, theta per day, rho per 1%
        assert float(call_cells[3]) == pytest.approx(call["vega_per_vol_point"], abs=5e-5)
        assert float(put_cells[4]) == pytest.approx(put["theta_per_day"], abs=5e-5)
        assert float(put_cells[5]) == pytest.approx(put["rho_per_pct"], abs=5e-5)


def test_default_strikes_bracket_spot(capsys):
    code, out, _ = run(capsys, "chain", "--spot", "100", "--vol", "0.2", "--days", "30", "--format", "csv")
    assert code == 0
    strikes = sorted({float(r["strike"]) for r in parse_csv(out)})
    assert strikes == [80.0, 85.0, 90.0, 95.0, 100.0, 105.0, 110.0, 115.0, 120.0]


def test_comma_strike_list(capsys):
    code, out, _ = run(
        capsys,
        "chain",
        "--spot",
        "50",
        "--vol",
        "0.3",
        "--days",
        "7",
        "--strikes",
        "55,45, 50",
        "--format",
        "csv",
    )
    assert code == 0
    assert [(float(r["strike"]), r["type"]) for r in parse_csv(out)] == [
        (k, typ) for k in (45.0, 50.0, 55.0) for typ in ("call", "put")
    ]


@pytest.mark.parametrize(
    ("spec", "strikes"),
    [
        ("80:100:5", (80.0, 85.0, 90.0, 95.0, 100.0)),  # HI on the grid: included
        ("80:99:5", (80.0, 85.0, 90.0, 95.0)),  # HI off the grid: last point below it
        ("100:100:5", (100.0,)),
        ("0.7:1:0.1", (0.7, 0.8, 0.9, 1.0)),  # float steps land exactly on HI
        ("97.5", (97.5,)),
        ("100,95,100", (95.0, 100.0)),
    ],
)
def test_parse_strikes(spec, strikes):
    assert parse_strikes(spec) == strikes


@given(
    lo=st.integers(1, 10_000),
    n=st.integers(0, 500),
    step=st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
    off=st.sampled_from([0.0, 0.3, 0.7]),
)
def test_grid_includes_hi_exactly_when_on_grid(lo, n, step, off):
    hi = lo + (n + off) * step
    got = parse_strikes(f"{lo}:{hi!r}:{step}")
    assert len(got) == n + 1
    assert got[0] == lo
    assert got[-1] == pytest.approx(lo + n * step, rel=1e-12)
    assert np.allclose(np.diff(got), step, rtol=1e-9, atol=0)


# ---------------------------------------------------------------------------------------------
# Usage errors: exit 2, one line on stderr, nothing on stdout
# ---------------------------------------------------------------------------------------------

GOOD = {"--spot": "100", "--vol": "0.2", "--days": "30"}


def chain_args(**override: str | None) -> list[str]:
    opts = {**GOOD, **{f"--{k}": v for k, v in override.items()}}
    return ["chain"] + [x for k, v in opts.items() if v is not None for x in (k, v)]


BAD = {
    "negative spot": chain_args(spot="-5"),
    "zero spot": chain_args(spot="0"),
    "non-numeric spot": chain_args(spot="abc"),
    "nan spot": chain_args(spot="nan"),
    "negative vol": chain_args(vol="-0.1"),
    "infinite vol": chain_args(vol="inf"),
    "non-numeric rate": chain_args(rate="four"),
    "vol in percent without %": chain_args(vol="20"),
    "implausible vol percent": chain_args(vol="2000%"),
    "rate in percent without %": chain_args(rate="4"),
    "div in percent without %": chain_args(div="1.5"),
    "infinite div": chain_args(div="-inf"),
    "negative days": chain_args(days="-1"),
    "missing spot": chain_args(spot=None),
    "reversed strikes": chain_args(strikes="120:80:5"),
    "zero step": chain_args(strikes="80:120:0"),
    "negative step": chain_args(strikes="80:120:-5"),
    "two-part spec": chain_args(strikes="80:120"),
    "non-numeric strike": chain_args(strikes="80,x,100"),
    "zero strike": chain_args(strikes="0,100"),
    "too many strikes (grid)": chain_args(strikes=f"1:{MAX_STRIKES + 1}:1"),
    "astronomically many strikes": chain_args(strikes="1:1e300:1e-300"),
    "too many strikes (list)": chain_args(strikes=",".join(map(str, range(1, MAX_STRIKES + 2)))),
    "bad format": chain_args(format="xml"),
    "unknown command": ["frobnicate"],
    "no command": [],
}


@pytest.mark.parametrize("argv", BAD.values(), ids=BAD.keys())
def test_bad_arguments_exit_2_with_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("optmm: error: ")


def test_limits_are_inclusive(capsys):
    """The boundary cases of the checks above are accepted (so those tests test the limit)."""
    assert run(capsys, *chain_args(strikes=f"1:{MAX_STRIKES}:1", format="csv"))[0] == 0
    assert run(capsys, *chain_args(vol="0", days="0", format="csv"))[0] == 0


def test_greeks_value_error_becomes_one_line_exit_2(capsys, monkeypatch):
    import optmm.greeks

    def boom(*args, **kwargs):
        raise ValueError("strike: invalid value nan at index 3\n(must be finite and > 0)")

    monkeypatch.setattr(optmm.greeks, "bsm_greeks", boom)
    code, out, err = run(capsys, *chain_args())
    assert (code, out) == (2, "")
    assert err == "optmm: error: strike: invalid value nan at index 3 (must be finite and > 0)\n"


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"optmm {optmm.__version__}"


def test_non_finite_greeks_are_an_error_not_a_figure(capsys, monkeypatch):
    import optmm.greeks

    real = optmm.greeks.bsm_greeks

    def overflowing(*args, **kwargs):
        g = real(*args, **kwargs)
        price = np.array(g.price, dtype=np.float64)
        price[4] = np.inf  # the 90 call of the default ladder (80 call, 80 put, 85 call, ...)
        return dataclasses.replace(g, price=price)

    monkeypatch.setattr(optmm.greeks, "bsm_greeks", overflowing)
    code, out, err = run(capsys, *chain_args())
    assert (code, out) == (2, "")
    assert err.startswith("optmm: error: strike 90 call: price is not a finite number;")
    assert err.count("\n") == 1 and "inf" not in err.replace("finite", "")
