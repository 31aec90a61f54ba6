"""What a long command shows on stderr: a notice while numba compiles (a first run), and a progress bar.

* :func:`compile_notice`: while active, the first time numba compiles a kernel (it found none usable in
  its on-disk cache: a first run, or a changed source file) one line says so, at once, on stderr. Loading
  a compiled kernel from the cache says nothing: the notice follows numba's own ``numba:compile`` event,
  which fires on a cache miss only.
* :class:`Bar`: a tqdm bar on stderr, drawn only once the work has taken ``delay`` seconds (a short run
  shows nothing) and only when enabled (the commands enable it when stderr is a terminal and
  ``--no-progress`` is not given). A thread redraws it twice a second, so that its elapsed time moves
  while Python runs (imports, numba compiling); a compiled loop holds the interpreter and the bar
  waits for it, it does not guess.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["COMPILE_NOTICE", "DELAY_S", "Bar", "compile_notice", "stderr_is_terminal"]

DELAY_S = 2.0
"""Seconds of work before a :class:`Bar` is first drawn (unless it is given its own ``delay``)."""

COMPILE_NOTICE = (
    "optmm: compiling kernels, first run only (numba caches them on disk): "
    "up to a few minutes\N{HORIZONTAL ELLIPSIS}"
)


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is a terminal (where bars and notices go)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _write_line(text: str, stream: TextIO) -> None:
    """``text`` on its own line above any tqdm bar (which is redrawn below it)."""
    from tqdm import tqdm

    tqdm.write(text, file=stream)
    stream.flush()


@contextmanager
def compile_notice(*, enabled: bool, stream: TextIO | None = None) -> Iterator[None]:
    """While active, print :data:`COMPILE_NOTICE` on ``stream`` (default stderr) when numba starts
    compiling a kernel for the first time, once.

    Examples
    --------
    >>> import io
    >>> with compile_notice(enabled=True, stream=io.StringIO()):
    ...     pass
    """
    if not enabled:
        yield
        return
    from numba.core import event

    out = stream if stream is not None else sys.stderr
    shown = threading.Event()

    class _Notice(event.Listener):
        def on_start(self, event: Any) -> None:
            if not shown.is_set():
                shown.set()
                _write_line(COMPILE_NOTICE, out)

        def on_end(self, event: Any) -> None:
            pass

    with event.install_listener("numba:compile", _Notice()):
        yield


class Bar:
    """A progress bar on stderr (tqdm) when ``enabled``, else nothing; a context manager.

    Parameters
    ----------
    total : int
        Units of work (``unit``) in all.
    desc : str
        What is running; :meth:`phase` changes it.
    unit : str, default "it"
    enabled : bool
    delay : float, optional
        Seconds before the bar is first drawn: a run shorter than that shows nothing. Default
        :data:`DELAY_S`.
    stream : file, optional
        Default ``sys.stderr``.

    Examples
    --------
    >>> with Bar(3, desc="paths", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> bar.n
    3
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        enabled: bool,
        delay: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.n = 0
        self.desc = desc
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tqdm: Any = None
        self._thread: threading.Thread | None = None
        if not enabled:
            return
        from tqdm import tqdm

        # miniters=0: every update may redraw (mininterval still applies), which the ticking needs
        self._tqdm = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=total >= 10_000,  # 23.4k steps, but 3 paths
            file=stream if stream is not None else sys.stderr,
            dynamic_ncols=True,
            delay=DELAY_S if delay is None else delay,
            miniters=0,
            mininterval=0.25,
            leave=False,
        )
        self._thread = threading.Thread(target=self._tick, name="optmm-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._tqdm is not None:
                    self._tqdm.update(0)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        with self._lock:
            self.n += n
            if self._tqdm is not None:
                self._tqdm.update(n)

    def phase(self, desc: str) -> None:
        """Say what is running now (the bar's description; redrawn at once if the bar is shown)."""
        with self._lock:
            self.desc = desc
            if self._tqdm is not None:
                drawn = self._tqdm._time() >= self._tqdm.start_t + self._tqdm.delay
                self._tqdm.set_description_str(desc, refresh=drawn)

    def close(self) -> None:
        """Stop the redrawing and erase the bar (if it was drawn)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._tqdm is not None:
                self._tqdm.close()
                self._tqdm = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
