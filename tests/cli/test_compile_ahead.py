"""Helper processes compiling kernels on a first run (optmm._compile_ahead): the same figures, the
helper's kernels compiled by it and not again by the command, and no helper where it cannot help."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import run_driver

from optmm import Book, Market, _compile_ahead, pricing
from optmm.cli import common, main

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "scenarios/examples/book.csv"
MARKET = ROOT / "scenarios/examples/market.toml"
RISK = ["risk", str(BOOK), "--market", str(MARKET), "--by", "position", "--format", "csv"]
SIMULATE = [
    "simulate", str(ROOT / "scenarios/sim/calm_day.toml"), "--set", "sim.steps=600", "--no-progress",
    "--format", "json",
]  # fmt: skip

# an optmm command in a fresh process, listing every function numba compiles in it (not in the helper)
DRIVER = """
import json, sys
from numba.core import event
import optmm._compile_ahead as ahead
ahead._cores = lambda: 2  # a helper even on a one-core machine: this is about what it compiles
compiled, launched = [], []
launch = ahead._launch
def _launch(job):
    process = launch(job)
    launched.append(type(process).__name__)
    return process
ahead._launch = _launch
class Seen(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f.__module__ + "." + f.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Seen())
from optmm.cli import main
code = main(sys.argv[2:])
json.dump({"code": code, "compiled": compiled, "launched": launched}, open(sys.argv[1], "w"))
"""


def _cold_run(tmp_path: Path, args: list[str]) -> tuple[str, set[str], Path]:
    """``optmm ARGS`` on an empty numba cache with helpers on: (stdout, what the command compiled,
    the cache). On Linux the helper is the command forked."""
    out, seen = run_driver(DRIVER, tmp_path, args, OPTMM_COMPILE_AHEAD="1")
    assert seen["code"] == 0
    assert seen["launched"] == (["_Forked"] if sys.platform.startswith("linux") else ["Popen"])
    return out, set(seen["compiled"]), tmp_path / "numba"


def _here(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """``optmm ARGS`` in this process (its own cache, warm after the first test that ran it)."""
    assert main(args) == 0
    return capsys.readouterr().out


def test_a_first_risk_run_leaves_the_boundary_engine_to_the_helper_with_the_same_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the example book has American options on dividends (finite differences) and without (TSLA:
    # the boundary engine)
    out, compiled, cache = _cold_run(tmp_path, RISK)
    assert out == _here(capsys, RISK)  # every figure at full precision
    # the command compiled the escrowed spot's kernel and the finite-difference engine and not the
    # boundary engine's own functions
    assert "optmm.greeks._american_fd.greeks_kernel_serial" in compiled
    assert "optmm.greeks._dividend.escrow_kernel_serial" in compiled
    boundary = {"greeks_kernel_serial", "marks_py", "core_py", "solve_boundary_py", "price_py"}
    assert not {f"optmm.greeks._american.{name}" for name in boundary} & compiled, compiled
    # the closed form both engines call and two small functions of the boundary engine's, compiled by
    # the command first, for the helper to load
    for name in ("european_py", "boundary_py", "zero_vol_py"):
        assert f"optmm.greeks._american.{name}" in compiled
    # the numbering and the exposures' sums of 53 positions: interpreted, not compiled
    assert not {name for name in compiled if name.startswith("optmm.risk._reval.")}, compiled
    # ... which the helper left in the cache, both writing it under the lock
    assert list(cache.rglob("_american.greeks_kernel_serial-*.nbi"))
    assert list(cache.rglob("optmm-cache.lock"))


def test_a_first_simulation_leaves_the_loops_called_phases_to_the_helper_with_the_same_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, compiled, _ = _cold_run(tmp_path, SIMULATE)
    got, want = json.loads(out), json.loads(_here(capsys, SIMULATE))
    assert got.pop("wall_s") > 0.0 and want.pop("wall_s") > 0.0
    assert got == want  # every figure of the summary, to the last digit
    assert "optmm.sim._kernels.run_path_european" in compiled  # the command compiled its loop ...
    # ... and loaded from the cache the phases it calls, with the functions they call, and the
    # markouts' price kernel: the helper's, compiled for the loop's own types
    helper = {f"optmm.sim._kernels.{n}" for n in ("_quote", "_quote_pass", "_fills", "_fill")}
    controller = ("decide_one", "_side", "apply_fill", "apply_hedge", "gate_underlying")
    helper |= {f"optmm.risk._controller_kernels.{n}" for n in controller}
    helper |= {f"optmm.quoting._toxicity_kernels.{n}" for n in ("tox_on_trade", "tox_on_fill")}
    helper.add("optmm.greeks._bsm.price_kernel_serial")
    assert not helper & compiled, helper & compiled
    kernels = [d.py_func for _, _, step_kernels in _compile_ahead.LOOP_STEPS for d in step_kernels()]
    assert {f"{f.__module__}.{f.__qualname__}" for f in kernels} == helper  # (each step's list)


def _book_of(underlyings: tuple[str, ...]) -> Book:
    """The example book's rows on ``underlyings``."""
    frame = Book.load(BOOK).to_frame()
    return Book.from_frame(frame[frame["underlying"].isin(underlyings)].reset_index(drop=True))


class _NoProcess:
    """A launch that refuses: a helper must not be started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a helper was started: {args}")


def test_no_helper_when_switched_off_cached_on_one_core_or_for_one_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market, book = Market.load(MARKET), Book.load(BOOK)
    monkeypatch.setattr(_compile_ahead, "_running", None)  # (whatever this process's commands started)
    monkeypatch.setattr(_compile_ahead, "_launch", _NoProcess)
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "0")
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "1")
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 1)
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: d is _compile_ahead._boundary_kernels()[-1])
    assert _compile_ahead.for_book(book, market) is None
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    # one engine only: TSLA (no cash dividends) alone, or the dividend payers alone
    for kept in (("TSLA",), ("SPY", "AAPL", "MSFT")):
        assert _compile_ahead.for_book(_book_of(kept), market) is None
    # both engines: the helper would start
    with pytest.raises(AssertionError, match="a helper was started"):
        _compile_ahead.for_book(book, market)


def test_a_simulation_from_a_book_on_both_engines_has_its_helper_compile_the_boundary_engine_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market, book = Market.load(MARKET), Book.load(BOOK)
    started: list[str] = []
    monkeypatch.setattr(_compile_ahead, "_running", None)
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "1")
    monkeypatch.setattr(_compile_ahead, "_start", lambda job, waits: started.append(job))
    _compile_ahead.for_simulation(book, market)
    _compile_ahead.for_simulation(_book_of(("TSLA",)), market)  # one engine: the command's alone
    _compile_ahead.for_simulation()  # a synthetic run
    assert started == ["book+loop", "loop", "loop"]
    # the book's pricing needs the engine and the price kernel first, the loop its phases later
    steps = [name for name, _, _ in _compile_ahead.JOBS["book+loop"]]
    assert steps == ["boundary", "prices", "quote", "fills"]
    started.clear()  # the loop's kernels cached: the boundary engine alone
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: d is _compile_ahead._quote_kernels()[0])
    _compile_ahead.for_simulation(book, market)
    assert started == ["book"]
    # optmm simulate loads its book without the risk commands' helper (it starts its own)
    monkeypatch.setattr(_compile_ahead, "for_book", _NoProcess)
    args = argparse.Namespace(book=str(BOOK), market=str(MARKET), valuation=None)
    assert len(common._load(args, compile_ahead=False)) == 2
    with pytest.raises(AssertionError, match="a helper was started"):
        common._load(args)


class _Kernel:
    """Stands for a numba dispatcher: ``compile`` records its signatures."""

    def __init__(self) -> None:
        self.sigs: list[Any] = []

    def compile(self, sig: Any) -> str:
        self.sigs.append(sig)
        return "compiled"


def _helper(script: str, waits: dict[Any, str]) -> _compile_ahead.Helper:
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, bufsize=0)
    return _compile_ahead.Helper(process, waits)


def test_a_kernel_waits_for_its_step_only_then_compiles_as_numba_does() -> None:
    first, second = _Kernel(), _Kernel()
    # the helper does steps a and z at once (one write), then takes its time before step b
    script = "import os, time\nos.write(1, b'a\\nz\\n')\ntime.sleep(30)\nos.write(1, b'b\\n')"
    helper = _helper(script, {first: "a", second: "b"})
    assert "compile" in vars(first) and "compile" in vars(second)  # shadowed while the helper runs
    assert first.compile(("f8",)) == "compiled"  # waited for a alone: the helper still runs
    assert helper.done == {"a", "z"} and helper.process is not None and helper.process.poll() is None
    helper.wait_for("z")  # done already: no wait
    assert "compile" not in vars(first) and first.sigs == [("f8",)]
    helper.stop()  # what happens at exit: the helper is stopped, every kernel compiles as numba does it
    assert helper.process is None and helper.returncode != 0
    assert "compile" not in vars(second)
    assert second.compile(("i8",)) == "compiled" and second.sigs == [("i8",)]
    helper.stop()  # again: nothing to do


def test_a_kernel_whose_helper_ends_without_its_step_compiles_it() -> None:
    kernel = _Kernel()
    helper = _helper("raise SystemExit(3)", {kernel: "a"})  # a helper that fails at once
    assert kernel.compile(("f8",)) == "compiled"
    assert helper.returncode == 3 and kernel.sigs == [("f8",)] and "compile" not in vars(kernel)


def test_the_command_compiles_what_it_will_need_while_it_waits_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []
    _compile_ahead.meanwhile(lambda: ran.append("none running"))  # no helper: nothing kept
    # the helper does step a at once, then takes its time before step b
    helper = _helper("import os, time\nos.write(1, b'a\\n')\ntime.sleep(1)\nos.write(1, b'b\\n')", {})
    monkeypatch.setattr(_compile_ahead, "_running", helper)

    def failing() -> None:
        ran.append("failing")
        raise RuntimeError("left to the later call")

    for job in (lambda: ran.append("first"), failing, lambda: ran.append("third")):
        _compile_ahead.meanwhile(job)
    helper.wait_for("a")  # ... which the helper has done, or does without the command waiting long
    assert ran[:1] in ([], ["first"]) and "none running" not in ran
    helper.wait_for("b")  # a wait: the rest, in order, a failure passed over
    assert ran == ["first", "failing", "third"] and helper.meanwhile == []
    helper.stop()


def test_one_helper_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compile_ahead, "_in_cache", lambda d: False)
    monkeypatch.setattr(_compile_ahead, "_cores", lambda: 2)
    monkeypatch.setenv(_compile_ahead.ENV_SWITCH, "1")
    running = _helper("import time; time.sleep(30)", {})
    monkeypatch.setattr(_compile_ahead, "_running", running)
    monkeypatch.setattr(_compile_ahead, "_launch", _NoProcess)
    assert _compile_ahead.for_simulation() is None
    assert _compile_ahead.for_book(Book.load(BOOK), Market.load(MARKET)) is None
    running.stop()


# A command that forks a helper for a job of two steps (the second slow, or failing), with text in its
# stdout buffer and an exit handler: the helper must not write the one nor run the other.
_FORKING = """
import atexit, sys, time
from optmm import _compile_ahead as ahead
fail = sys.argv[2] == "fail"
def slow():
    time.sleep(0.3)
    if fail:
        raise RuntimeError("a step that fails")
ahead.JOBS["test"] = (("a", lambda: None, list), ("b", slow, list))
atexit.register(lambda: open(sys.argv[1], "a").write("exit handler\\n"))
print("before the fork", end="")
assert ahead._can_fork()
helper = ahead.Helper(ahead._launch("test"), {})
helper.wait_for("b")
helper.wait()
print(" | done:", sorted(helper.done), "| returncode", helper.returncode)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the helper is forked on Linux only")
@pytest.mark.parametrize("outcome", ["done", "fail"])
def test_a_forked_helper_reports_its_steps_and_leaves_the_commands_output_and_exit_to_it(
    tmp_path: Path, outcome: str
) -> None:
    handlers = tmp_path / "handlers.txt"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )
    done = subprocess.run(
        [sys.executable, "-c", _FORKING, str(handlers), outcome],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    steps, code = ("['a', 'b']", 0) if outcome == "done" else ("['a']", 1)
    assert done.stdout == f"before the fork | done: {steps} | returncode {code}\n"
    assert handlers.read_text() == "exit handler\n"  # the command's, once


def test_a_helper_is_a_new_interpreter_where_it_cannot_be_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []

    class Recorded:
        def __init__(self, args: list[str], **kwargs: Any) -> None:
            started.append((args, kwargs))

    def no_fork() -> int:
        raise OSError("no process to spare")

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    monkeypatch.setattr(_compile_ahead, "_can_fork", lambda: False)
    assert isinstance(_compile_ahead._launch("book"), Recorded)
    ((args, kwargs),) = started
    assert args == [sys.executable, "-m", "optmm._compile_ahead", "book"]
    assert kwargs["stdout"] == subprocess.PIPE and str(ROOT) in kwargs["env"]["PYTHONPATH"]
    # ... and where a fork fails
    monkeypatch.setattr(_compile_ahead, "_can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    assert isinstance(_compile_ahead._launch("loop"), Recorded)
    assert started[-1][0] == [sys.executable, "-m", "optmm._compile_ahead", "loop"]


def test_a_new_interpreters_helper_says_each_step_on_its_stdout() -> None:
    script = (
        "from optmm import _compile_ahead as ahead\n"
        "ahead.JOBS['test'] = (('a', lambda: None, list), ('b', lambda: None, list))\n"
        "ahead._run('test')\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout == "a\nb\n"


def test_no_fork_beside_another_thread() -> None:
    import threading

    # (numba's threading layer, started by an earlier test's threaded kernel, rules a fork out too)
    started = getattr(sys.modules.get("numba.np.ufunc.parallel"), "_is_initialized", False)
    alone = sys.platform.startswith("linux") and threading.active_count() == 1 and not started
    assert _compile_ahead._can_fork() == alone
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not _compile_ahead._can_fork()
    finally:
        stop.set()
        other.join()


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
