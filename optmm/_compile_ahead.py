"""A second process that compiles kernels a command will need later, while the command compiles others.

numba compiles a kernel in the process that first calls it, one function at a time (its compiler
holds a lock), and keeps the machine code in its on-disk cache (``cache=True``). On a first run
(an empty cache, or sources changed since), a command spends most of its time compiling, on one
core. On a machine with a second core, the commands start a helper process (:func:`for_book`,
:func:`for_simulation`) that compiles, into numba's cache, kernels the command needs only later,
while the command goes on with its own; the first time the command comes to compile one of them,
it waits until the helper has done that one (a line on the helper's pipe), then numba loads it,
and every function it calls, from the cache. On Linux the helper is the command forked
(:class:`_Forked`), which starts with everything imported and numba's registries loaded (a new
interpreter takes most of a second for that); elsewhere, and where another thread runs, it is a new
interpreter running this module.

* A book with American options on underlyings with cash dividends (the finite-difference engine)
  and on underlyings without (the boundary engine) needs both engines: the helper compiles the
  boundary engine (its one-boundary solve first), while the command compiles the closed form both
  engines call and two small functions of the boundary engine's (which the helper then loads), the
  escrowed spot's kernel and the finite-difference engine; pricing calls the boundary engine's groups
  last (:func:`optmm.pricing._by_engine`), and while the command waits for the helper it compiles
  what it needs after pricing (:func:`meanwhile`: for ``optmm risk`` on a book of 1,024 positions
  or more, the exposures' sums; a smaller book's run interpreted, :mod:`optmm.risk._reval`).
  ``optmm risk`` on the example book: 5.8–6.6 s on one core, 3.6–4.1 s on two.
* A simulation compiles its controller's setup, then its loop and, as numba types the loop, each
  kernel the loop calls. The helper compiles the loop's phases that are functions of their own (the
  quotes and the fills, :data:`LOOP_STEPS`, with every kernel they call: the quoter's pass, the
  controller's side check, decision, fill, hedge and gate, the toxicity detector's trade and fill),
  for the loop's argument types (:func:`_loop_types`, from the engine's inputs of a small run), and
  the markouts' price kernel, while the command sets the run up and compiles the rest. ``optmm
  simulate`` on ``calm_day``: 23–25 s on one core, 18–20 s on two. A run from a book that needs both
  American engines has the helper compile the boundary engine first (``"book+loop"``).

The helper compiles the same functions with the same options, types and environment, so the
machine code loaded is what the command would have compiled: the figures are the same to the bit
(``tests/cli/test_compile_ahead.py``); both write numba's cache under a lock
(:func:`_locked_cache_writes`). A kernel the helper compiled calls the large functions it calls by
their symbols (:mod:`optmm._compile_link`); when the command compiled one of them itself, numba named
it differently there, and the loaded kernel calls the command's own (the same function of the same
source and types). Nothing is started when the kernels are in the cache already, on one
core, off POSIX systems, while another helper runs, or with ``OPTMM_COMPILE_AHEAD=0``. A helper still
running when the command exits is stopped.
"""

from __future__ import annotations

import atexit
import functools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ENV_SWITCH", "Helper", "for_book", "for_simulation", "meanwhile"]

ENV_SWITCH = "OPTMM_COMPILE_AHEAD"
WAIT_S = 600.0
"""Seconds after its start when a helper still running is stopped (the command then compiles the
kernels itself)."""


# --------------------------------------------------------------------------------------------------
# What a helper compiles: steps, each a function that compiles by calling, and the kernels it leaves in
# the cache (those the command waits for)


def _boundary_engine() -> None:
    """The boundary engine's Greeks kernel, through the function pricing calls (one option: the serial
    form; the threaded form, for large books, then finds every function it calls in the cache).

    Its one-boundary solve first, which calls nothing the finite-difference engine calls: meanwhile
    the command compiles the closed form both engines call for an expired option, and two small
    functions the engine calls after its solve (:func:`_start`), which the kernel then loads from the
    cache rather than compiling them again."""
    import numpy as np

    from optmm.greeks import _american
    from optmm.greeks.american import _scheme, american_greeks

    _american.core(100.0, 100.0, 0.5, 0.04, 0.01, 0.3, False, _scheme("default"))
    one = np.ones(1)
    american_greeks(100.0 * one, 100.0 * one, 0.5 * one, 0.04 * one, 0.01 * one, 0.3 * one, one > 0.0)


def _boundary_kernels() -> list[Any]:
    from optmm.greeks import _american

    sized = (_american.greeks_kernel, _american.price_kernel, _american.iv_kernel)
    return [d for k in sized for d in (k.serial, k.threaded)]


def _prices() -> None:
    """The closed form's price kernel (serial form), as the markouts call it."""
    import numpy as np

    from optmm.greeks import bsm_price

    one = np.ones(2)
    bsm_price(100.0 * one, 100.0 * one, 0.5 * one, 0.04 * one, 0.0 * one, 0.2 * one, one > 0.0)


def _price_kernels() -> list[Any]:
    from optmm.greeks import _bsm

    return [_bsm.price_kernel.serial]


@functools.cache
def _loop_types() -> dict[str, Any]:
    """numba's types of the loop's arguments, by the names :func:`optmm.sim._kernels.run_path` gives
    them, from the engine's own inputs of a small synthetic run (one underlying, a controller without
    contracts: the loop's types, built in about a second)."""
    import numpy as np
    from numba import typeof

    from optmm.quoting._toxicity_kernels import new_toxicity_state
    from optmm.sim import SimConfig, engine, records
    from optmm.sim._groups import MarketPath, workspaces

    cfg = SimConfig.from_dict(
        {"sim": {"steps": 2, "dt_s": 1.0}, "underlying": [{"name": "X", "spot": 100.0, "vol": 0.2}]},
        source="compile ahead",
    )
    chain = engine._chain(cfg)
    run = engine._new_run(cfg, chain, engine.stock_controller(cfg))
    n_inst = chain.u.size
    values = {
        "k": 0,  # (a step: int64, as the loop's range gives it)
        "now": 0.0,
        "ins": run.ins,
        "und": run.und,
        "mkt": MarketPath(np.full((3, 1), 100.0), np.full((3, 1), 0.2)),
        "ctl": run.base,
        "tox": new_toxicity_state(cfg.toxicity, 1),
        "cfg": run.settings,
        "qp": run.qp,
        "out": records.new_outputs(2, 1, n_inst, run.settings.quotes_steps, [16, 16, 16, 16]),
        "w": workspaces(n_inst, 1, run.base.cf.shape[0], cfg.flow.latency_steps),
    }
    return {name: typeof(v) for name, v in values.items()}


def _compile_phase(name: str, *arguments: str) -> None:
    """Compile the loop's phase ``name`` (a function of its own) for the loop's ``arguments``."""
    from optmm.sim import _kernels as sk

    types = _loop_types()
    getattr(sk, name).compile(tuple(types[a] for a in arguments))


def _quote() -> None:
    """The loop's quotes (with the quoter's pass, the controller's side check and underlying gate)."""
    _compile_phase("_quote", "k", "now", "ins", "und", "mkt", "ctl", "cfg", "qp", "out", "w")


def _quote_kernels() -> list[Any]:
    from optmm.risk import _controller_kernels as ck
    from optmm.sim import _kernels as sk

    return [sk._quote, sk._quote_pass, ck._side, ck.gate_underlying]


def _fills() -> None:
    """The loop's fills (with a fill: the controller's decision, fill and hedge, the toxicity
    detector's trade and fill); ``k`` stands for the step and the two counts, all int64."""
    _compile_phase("_fills", "k", "now", "k", "k", "ins", "mkt", "ctl", "tox", "out", "w")


def _fill_kernels() -> list[Any]:
    from optmm.quoting import _toxicity_kernels as tk
    from optmm.risk import _controller_kernels as ck
    from optmm.sim import _kernels as sk

    phases = [sk._fills, sk._fill, ck.decide_one, ck.apply_fill, ck.apply_hedge]
    return [*phases, tk.tox_on_trade, tk.tox_on_fill]


Step = tuple[str, Callable[[], None], Callable[[], list[Any]]]
"""A helper's step: its name, the function that compiles by calling, and the kernels it compiles."""

BOOK_STEPS: tuple[Step, ...] = (("boundary", _boundary_engine, _boundary_kernels),)
LOOP_STEPS: tuple[Step, ...] = (
    ("quote", _quote, _quote_kernels),
    ("fills", _fills, _fill_kernels),
    ("prices", _prices, _price_kernels),
)
JOBS = {
    "book": BOOK_STEPS,
    "loop": LOOP_STEPS,
    # a simulation from a book on both engines: the boundary engine and the price kernel first (the
    # run's setup prices the book), then the loop's phases
    "book+loop": (*BOOK_STEPS, LOOP_STEPS[2], *LOOP_STEPS[:2]),
}


# --------------------------------------------------------------------------------------------------
# The command's side


def _locked_cache_writes() -> None:
    """Make each of numba's cache writes one step across processes: the command and its helper write
    entries of the same functions (a function both compile, with the same or another signature), and
    numba's ``IndexDataCacheFile.save`` reads the function's index, adds the entry, writes the index,
    then the data file. Two such writes at once could give one signature's entry the other's data
    file; under an exclusive lock (``fcntl.flock`` on a file beside the index) the second sees the
    first's entry and takes the next file."""
    import fcntl

    from numba.core import caching

    save = caching.IndexDataCacheFile.save
    if getattr(save, "optmm_locked", False):
        return

    def locked(self: Any, key: Any, data: Any) -> None:
        with open(os.path.join(self._cache_path, "optmm-cache.lock"), "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                save(self, key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    locked.optmm_locked = True  # type: ignore[attr-defined]
    caching.IndexDataCacheFile.save = locked


def _in_cache(dispatcher: Any) -> bool:
    """Whether numba's cache has an index of machine code for ``dispatcher`` (any signature); True
    when this numba keeps its cache elsewhere than this module knows (then nothing is started)."""
    try:
        return Path(dispatcher._cache._cache_file._index_path).exists()
    except AttributeError:
        return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Helper:
    """A running helper process and, for each kernel it compiles, the step that compiles it.

    While the helper runs, each of those kernels compiles through :meth:`wait_for` its step first (an
    attribute of the dispatcher that shadows its ``compile``, taken away once the step is done or the
    helper has stopped). The helper writes each step's name on its pipe (a new interpreter's stdout)
    when the step is done.
    """

    def __init__(self, process: Any, waits: dict[Any, str]) -> None:
        self.process: Any = process  # a subprocess.Popen or a _Forked
        self.waits = waits
        self.meanwhile: list[Callable[[], None]] = []  # compiling the command does while it waits
        self.done: set[str] = set()
        self._partial = b""  # the start of a line not yet ended
        self.returncode: int | None = None
        self.deadline = time.monotonic() + WAIT_S
        for d in waits:
            d.compile = self._after_step(d)
        atexit.register(self.stop)

    def _after_step(self, dispatcher: Any) -> Any:
        def compile(sig: Any) -> Any:
            self.wait_for(self.waits[dispatcher])
            vars(dispatcher).pop("compile", None)
            return dispatcher.compile(sig)  # numba's own, which now finds the helper's in the cache

        return compile

    def wait_for(self, step: str) -> None:
        """Wait until the helper has done ``step`` or has ended (at most until :data:`WAIT_S` after it
        started; then it is stopped). The pipe is read as it comes, unbuffered: a line read into a
        buffer would not wake ``select``."""
        proc = self.process
        while proc is not None and proc.stdout is not None and step not in self.done:
            if self.meanwhile and not select.select([proc.stdout], [], [], 0.0)[0]:
                self._run_meanwhile()
                continue
            ready, _, _ = select.select([proc.stdout], [], [], max(self.deadline - time.monotonic(), 0.0))
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:  # the helper has ended, its steps done or not, or has run out of time
                self.wait()
                return
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self.done.update(line.decode().strip() for line in lines)

    def _run_meanwhile(self) -> None:
        """The first of :attr:`meanwhile`: compiling that the command would do later anyway. A failure
        is left to that later call, which raises it where the command expects it."""
        compile_ = self.meanwhile.pop(0)
        try:
            compile_()
        except Exception:  # (see the docstring)
            pass

    def wait(self) -> None:
        """Wait for the helper to end (at most :data:`WAIT_S`; then stop it)."""
        if self.process is not None:
            try:
                self.returncode = self.process.wait(timeout=max(self.deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                pass
        self.stop()

    def stop(self) -> None:
        """Stop the helper if it still runs; every kernel compiles as numba does it."""
        global _running
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.returncode = self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
            atexit.unregister(self.stop)
        for d in self.waits:
            vars(d).pop("compile", None)
        if _running is self:
            _running = None


_running: Helper | None = None


def _waits(job: str) -> dict[Any, str] | None:
    """The kernels of ``job`` (a key of :data:`JOBS`) and their steps, when a helper may start for it:
    not switched off, two cores or more, no other helper running, none of the kernels in the cache."""
    if _running is not None and _running.process is not None and _running.process.poll() is not None:
        _running.stop()  # (ended: its steps are done or will not be)
    if os.environ.get(ENV_SWITCH, "1") == "0" or os.name != "posix" or _cores() < 2 or _running is not None:
        return None
    waits = {d: name for name, _, kernels in JOBS[job] for d in kernels()}
    return None if any(_in_cache(d) for d in waits) else waits


class _Forked:
    """A helper forked from the command (as :class:`subprocess.Popen` for what :class:`Helper` uses:
    ``stdout``, ``poll``, ``kill``, ``wait``). It starts with the command's imports and numba's
    registries in place, which a new interpreter takes most of a second to load."""

    def __init__(self, job: str) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if pid == 0:  # the helper: its steps, then out without the command's exit handlers
            code = 1
            try:
                os.close(read)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                _run(job, lambda name: os.write(write, (name + "\n").encode()))
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.pid = pid
        self.stdout = os.fdopen(read, "rb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(f"helper {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        return self.returncode  # type: ignore[return-value]


def _can_fork() -> bool:
    """Whether the helper can be this process forked: on Linux, with no other thread running (numba's
    threading layer not started, no Python thread), where a fork copies everything the helper uses."""
    import threading

    parallel = sys.modules.get("numba.np.ufunc.parallel")
    return (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and not getattr(parallel, "_is_initialized", False)
    )


def _launch(job: str) -> Any:
    """The helper's process for ``job``: this one forked where it can be (:func:`_can_fork`; numba's
    registries loaded first, which the command's first compile would load anyway), else (or should
    the fork fail) a new interpreter running this module."""
    if _can_fork():
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
        try:
            return _Forked(job)
        except OSError:  # (no process or pipe to spare: a new interpreter may still start)
            pass
    root = str(Path(__file__).resolve().parents[1])  # the folder this optmm is imported from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen(
        [sys.executable, "-m", "optmm._compile_ahead", job],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
    )


def _start(job: str, waits: dict[Any, str]) -> Helper:
    global _running
    _locked_cache_writes()
    _running = Helper(_launch(job), waits)
    if BOOK_STEPS[-1] in JOBS[job]:
        # the closed form the finite-difference engine calls (an expired option), which the boundary
        # engine calls too, and the boundary engine's boundary and zero-vol value, which it calls after
        # its one-boundary solve: compiled here first, for the helper to load (see _boundary_engine;
        # the two take a tenth of a second each, which evens the two processes' work)
        import numpy as np

        from optmm.greeks._american import boundary, european, zero_vol

        european(100.0, 100.0, 0.5, 0.04, 0.01, 0.3, False)
        boundary(np.ones(3), 100.0, 0.25, 0.5)
        zero_vol(100.0, 100.0, 0.5, 0.04, 0.01, False)
    return _running


def _both_engines(book: Any, market: Any) -> bool:
    """Whether ``book`` at ``market`` has live American options on both engines: on underlyings with
    cash dividends (the finite-difference engine) and without (the boundary engine)."""
    from optmm import pricing

    names, codes = book.underlying_index()
    t, american = pricing.book_terms(book, market, codes)
    dividends = pricing.carry(market, list(names)).has_dividends[codes]
    live = american & (t > 0.0)
    return bool((live & dividends).any() and (live & ~dividends).any())


def meanwhile(compile_: Callable[[], None]) -> None:
    """Have the command run ``compile_`` (a call that compiles kernels it needs later, for the types
    it will call them with) while it would otherwise wait for the running helper; nothing when no
    helper runs (the kernels then compile when first called, as always)."""
    if _running is not None and _running.process is not None:
        _running.meanwhile.append(compile_)


def for_book(book: Any, market: Any) -> Helper | None:
    """Start a helper compiling the boundary engine when ``book`` at ``market`` has American options on
    both engines and the boundary engine's kernels are not in numba's cache; else ``None``."""
    waits = _waits("book")
    if waits is None or not _both_engines(book, market):
        return None
    return _start("book", waits)


def for_simulation(book: Any = None, market: Any = None) -> Helper | None:
    """Start a helper compiling the loop's kernels (:data:`LOOP_STEPS`) when they are not in numba's
    cache; for a run from ``book`` at ``market`` that needs both American engines, the boundary engine
    first (or alone, when the loop's kernels are cached). ``None`` when nothing is started."""
    jobs = ["book+loop", "loop", "book"] if book is not None and _both_engines(book, market) else ["loop"]
    for job in jobs:
        waits = _waits(job)
        if waits is not None:
            return _start(job, waits)
    return None


def _say(step: str) -> None:
    print(step, flush=True)


def _run(job: str, done: Callable[[str], Any] = _say) -> None:
    """The helper's work: each step of ``job``, its name given to ``done`` (by default on stdout) once
    done."""
    _locked_cache_writes()
    for name, compile_, _ in JOBS[job]:
        compile_()
        done(name)


if __name__ == "__main__":
    _run(sys.argv[1])
