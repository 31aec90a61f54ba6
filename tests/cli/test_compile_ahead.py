"""A helper process compiling the boundary engine on a first run (optmm._compile_ahead): the same
figures, the engine compiled by the helper and not again here, and no helper where it cannot help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optmm import Book, Market, _compile_ahead, pricing
from optmm.cli import main

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "scenarios/examples/book.csv"
MARKET = ROOT / "scenarios/examples/market.toml"
RISK = ["risk", str(BOOK), "--market", str(MARKET), "--by", "position", "--format", "csv"]

# optmm risk in a fresh process, listing every function numba compiles in it (not in the helper)
DRIVER = """
import json, sys
from numba.core import event
import optmm._compile_ahead as ahead
ahead._cores = lambda: 2  # a helper even on a one-core machine: this is about what it compiles
compiled = []
class Seen(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f.__module__ + "." + f.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Seen())
from optmm.cli import main
code = main(sys.argv[2:])
json.dump({"code": code, "compiled": compiled}, open(sys.argv[1], "w"))
"""


def _csv(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 0
    return capsys.readouterr().out


def test_a_first_run_with_the_helper_gives_the_same_figures_and_leaves_it_the_boundary_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the example book has American options on dividends (finite differences) and without (TSLA:
    # the boundary engine); an empty numba cache
    cache, report = tmp_path / "numba", tmp_path / "compiled.json"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), OPTMM_COMPILE_AHEAD="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(report), *RISK],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(report.read_text())
    assert seen["code"] == 0
    # the same table, every figure at full precision, as this process's run (own cache, no helper)
    assert done.stdout == _csv(capsys, RISK)
    compiled = set(seen["compiled"])
    # this process compiled the finite-difference engine and not the boundary engine's own functions
    assert "optmm.greeks._american_fd.greeks_kernel_serial" in compiled
    boundary = {"greeks_kernel_serial", "all_py", "marks_py", "core_py", "solve_boundary_py", "price_py"}
    assert not {f"optmm.greeks._american.{name}" for name in boundary} & compiled, compiled
    # ... which the helper left in the cache
    assert list(cache.rglob("_american.greeks_kernel_serial-*.nbi")), sorted(p.name for p in cache.rglob("*"))


def _book_of(underlyings: tuple[str, ...]) -> Book:
    """The example book's rows on ``underlyings``."""
    frame = Book.load(BOOK).to_frame()
    return Book.from_frame(frame[frame["underlying"].isin(underlyings)].reset_index(drop=True))


class _NoProcess:
    """subprocess.Popen that refuses: a helper must not be started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a helper was started: {args}")


def test_no_helper_when_switched_off_cached_on_one_core_or_for_one_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market, book = Market.load(MARKET), Book.load(BOOK)
    monkeypatch.setattr(subprocess, "Popen", _NoProcess)
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "0")
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "1")
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 1)
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: d is _compile_ahead._entry_points()[-1])
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    # one engine only: TSLA (no cash dividends) alone, or the dividend payers alone
    for kept in (("TSLA",), ("SPY", "AAPL", "MSFT")):
        assert _compile_ahead.for_book(_book_of(kept), market) is None
    # both engines: the helper would start
    with pytest.raises(AssertionError, match="a helper was started"):
        _compile_ahead.for_book(book, market)


class _Kernel:
    """Stands for a numba dispatcher: ``compile`` records its signatures."""

    def __init__(self) -> None:
        self.sigs: list[Any] = []

    def compile(self, sig: Any) -> str:
        self.sigs.append(sig)
        return "compiled"


def test_the_kernels_wait_for_the_helper_once_then_compile_as_numba_does() -> None:
    kernel = _Kernel()
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    helper = _compile_ahead.Helper(process, [kernel])
    assert "compile" in vars(kernel)  # shadowed while the helper runs
    assert kernel.compile(("f8",)) == "compiled"  # waited, then numba's own compile
    assert helper.returncode == 0 and helper.process is None
    assert "compile" not in vars(kernel) and kernel.sigs == [("f8",)]
    helper.stop()  # again: nothing to do


def test_a_helper_still_running_is_stopped() -> None:
    kernel = _Kernel()
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    helper = _compile_ahead.Helper(process, [kernel])
    helper.stop()  # what happens at exit when this process did not come to the engine
    assert process.poll() is not None and helper.returncode != 0
    assert "compile" not in vars(kernel)


def test_pricing_calls_the_boundary_engines_groups_last() -> None:
    # TSLA without cash dividends, numbered first; AAPL and SPY on dividends; American and European
    # rows of each, mixed
    market = Market.load(MARKET)
    carry = pricing.carry(market, ["TSLA", "AAPL", "SPY"])
    assert carry.has_dividends.tolist() == [False, True, True]
    u = np.array([0, 1, 0, 2, 1, 2, 0])
    american = np.array([True, True, False, True, False, False, True])
    calls: list[tuple[str, bool]] = []

    def engine(name: str) -> Any:
        def fn(s: Any, k: Any, t: Any, r: Any, q: Any, v: Any, c: Any, dividends: Any = None) -> Any:
            calls.append((name, dividends is not None))
            return np.asarray(s, dtype=float) * (2.0 if name == "american" else 1.0)

        return fn

    n = u.size
    terms = (u, np.full(n, 100.0), np.full(n, 100.0), np.full(n, 0.5), np.full(n, 0.2), np.ones(n, bool))
    terms = (*terms, american)
    out = pricing._by_engine(engine("european"), engine("american"), carry, terms, 0.0)
    assert calls[-1] == ("american", False)  # TSLA's American group
    assert ("american", False) not in calls[:-1]
    np.testing.assert_array_equal(out[0], np.where(american, 200.0, 100.0))
