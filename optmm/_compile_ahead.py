"""A second process that compiles one American engine while this one compiles the other.

numba compiles a kernel in the process that first calls it, one function at a time (its compiler
holds a lock), and keeps the machine code in its on-disk cache (``cache=True``). A book with American
options on underlyings with cash dividends (the finite-difference engine,
:mod:`optmm.greeks._american_fd`) and on underlyings without (the boundary engine,
:mod:`optmm.greeks._american`) needs both engines on its first run: about 4 and 6 seconds of
compiling, one after the other (``optmm risk`` on the example book).

On a machine with a second core, the commands that load a book (:func:`optmm.cli.common._load`) call
:func:`for_book`: when the book needs both engines and the boundary engine's kernels are not in the
cache, it starts a helper process that compiles that engine's Greeks kernel (and everything it calls)
into numba's cache, while this process goes on. Pricing calls the boundary engine's groups last
(:func:`optmm.pricing._by_engine`); the first time this process comes to compile one of the engine's
kernels, it waits for the helper, and numba then loads the kernel and its callees from the cache.

The helper compiles the same functions, with the same options and environment, so the machine code
loaded is what this process would have compiled: the figures are the same to the bit
(``tests/cli/test_compile_ahead.py``). Nothing is started when the engine is in the cache already,
on one core, or with ``OPTMM_COMPILE_AHEAD=0``. A helper still running when this process exits is
stopped.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ENV_SWITCH", "Helper", "for_book"]

ENV_SWITCH = "OPTMM_COMPILE_AHEAD"
WAIT_S = 600.0
"""Seconds this process waits for a helper before stopping it and compiling the engine itself."""


def _entry_points() -> list[Any]:
    """The boundary engine's array kernels (each compiled serial and threaded): every call from
    Python reaches the engine through one of them."""
    from optmm.greeks import _american

    kernels = (_american.greeks_kernel, _american.price_kernel, _american.iv_kernel)
    return [d for k in kernels for d in (k.serial, k.threaded)]


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
    """A running helper process and the kernels this process waits for before compiling them.

    While it runs, each kernel of ``waits`` compiles through :meth:`wait` first (an attribute of the
    dispatcher that shadows its ``compile``); :meth:`wait` and :meth:`stop` take those away.
    """

    def __init__(self, process: subprocess.Popen[bytes], waits: list[Any]) -> None:
        self.process: subprocess.Popen[bytes] | None = process
        self.waits = waits
        self.returncode: int | None = None
        for d in waits:
            d.compile = self._after_helper(d)
        atexit.register(self.stop)

    def _after_helper(self, dispatcher: Any) -> Any:
        def compile(sig: Any) -> Any:
            self.wait()
            return dispatcher.compile(sig)  # numba's own, which now finds the helper's in the cache

        return compile

    def wait(self) -> None:
        """Wait for the helper to finish (at most :data:`WAIT_S`; then stop it)."""
        if self.process is not None:
            try:
                self.returncode = self.process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        self.stop()

    def stop(self) -> None:
        """Stop the helper if it still runs; the kernels compile as numba does it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.returncode = self.process.wait()
            self.process = None
            atexit.unregister(self.stop)
        for d in self.waits:
            vars(d).pop("compile", None)


def for_book(book: Any, market: Any) -> Helper | None:
    """Start a helper compiling the boundary engine when ``book`` at ``market`` has American options
    on both engines and the boundary engine's kernels are not in numba's cache; else ``None``."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or _cores() < 2:
        return None
    waits = _entry_points()
    if any(_in_cache(d) for d in waits):
        return None
    from optmm import pricing

    names, codes = book.underlying_index()
    t, american = pricing.book_terms(book, market, codes)
    dividends = pricing.carry(market, list(names)).has_dividends[codes]
    live = american & (t > 0.0)
    if not ((live & dividends).any() and (live & ~dividends).any()):
        return None
    root = str(Path(__file__).resolve().parents[1])  # the folder this optmm is imported from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    process = subprocess.Popen(
        [sys.executable, "-m", "optmm._compile_ahead"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Helper(process, waits)


def _compile_boundary_engine() -> None:
    """The helper's work: the boundary engine's Greeks kernel, compiled through the public function
    as pricing calls it (one option: the serial form; the threaded form, for large books, then finds
    every function it calls in the cache)."""
    import numpy as np

    from optmm.greeks.american import american_greeks

    one = np.ones(1)
    american_greeks(100.0 * one, 100.0 * one, 0.5 * one, 0.04 * one, 0.01 * one, 0.3 * one, one > 0.0)


if __name__ == "__main__":
    _compile_boundary_engine()
