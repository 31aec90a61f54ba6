"""Where the work runs: a Dask client for a local cluster or an existing scheduler, from one string.

A spec is one of

* ``"local"``: a :class:`distributed.LocalCluster` on this machine, one worker process per core, one
  thread per worker;
* ``"local:N"``: the same with ``N`` worker processes, at most :func:`max_local_workers` (4 per core:
  each worker is a process of one thread, so more would only compete for the cores);
* a scheduler address, ``"tcp://host:8786"`` (also ``tls://``, ``ws://``, ``wss://``, ``ucx://``, or a
  bare ``host:port``, which means ``tcp://``): a cluster started elsewhere (``dask scheduler`` and
  ``dask worker ADDRESS``; see ``docs/distributed.md``).

``distributed`` is imported only when a client is made: :func:`parse_spec` and :func:`check_spec`
(used by the command line to refuse a bad ``--dask`` before any work) stay cheap.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ClusterSpec",
    "check_spec",
    "client_for",
    "limit_numba_threads",
    "max_local_workers",
    "parse_spec",
]

_T = TypeVar("_T")

WORKERS_PER_CORE = 4
"""The most local worker processes per core (:func:`max_local_workers`)."""

_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$"
)
_SPEC_HELP = "'local', 'local:N' (N worker processes) or a scheduler address such as 'tcp://host:8786'"


def max_local_workers() -> int:
    """The most worker processes ``"local:N"`` may start: :data:`WORKERS_PER_CORE` per core."""
    return WORKERS_PER_CORE * max(1, os.cpu_count() or 1)


class ClusterSpec(NamedTuple):
    """A parsed ``--dask`` spec: a local cluster of ``workers`` processes, or a scheduler ``address``."""

    workers: int | None
    address: str | None


def parse_spec(spec: str) -> ClusterSpec:
    """Parse a cluster spec (see the module docstring).

    Parameters
    ----------
    spec : str
        ``"local"``, ``"local:N"`` or a scheduler address.

    Returns
    -------
    ClusterSpec
        ``workers`` is the number of local worker processes (``os.cpu_count()`` for ``"local"``) and
        ``address`` None; or ``address`` (with its scheme) and ``workers`` None.

    Raises
    ------
    ValueError
        Naming the spec, if it is none of these, or asks for more than :func:`max_local_workers`
        local workers.

    Examples
    --------
    >>> parse_spec("local:2")
    ClusterSpec(workers=2, address=None)
    >>> parse_spec("10.0.0.5:8786")
    ClusterSpec(workers=None, address='tcp://10.0.0.5:8786')
    """
    if not isinstance(spec, str):
        raise ValueError(f"cluster spec {spec!r}: expected {_SPEC_HELP}")
    text = spec.strip()
    if text == "local":
        return ClusterSpec(workers=max(1, os.cpu_count() or 1), address=None)
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not (count.isascii() and count.isdigit()) or int(count) < 1:
            raise ValueError(f"cluster spec {spec!r}: the number of local workers must be an integer >= 1")
        most = max_local_workers()
        if int(count) > most:
            raise ValueError(
                f"cluster spec {spec!r}: at most {most} local workers ({WORKERS_PER_CORE} per core, "
                f"{most // WORKERS_PER_CORE} cores)"
            )
        return ClusterSpec(workers=int(count), address=None)
    match = _ADDRESS.match(text)
    if match is None:
        raise ValueError(f"cluster spec {spec!r}: expected {_SPEC_HELP}")
    scheme = match["scheme"] or "tcp"
    if scheme not in _SCHEMES:
        raise ValueError(f"cluster spec {spec!r}: unknown scheme {scheme!r} (expected one of {_SCHEMES})")
    if not 0 < int(match["port"]) < 65536:
        raise ValueError(f"cluster spec {spec!r}: port {match['port']} is out of range")
    return ClusterSpec(workers=None, address=f"{scheme}://{match['host']}:{match['port']}")


def check_spec(spec: str) -> str:
    """An ``argparse`` type: ``spec`` unchanged if :func:`parse_spec` accepts it."""
    try:
        parse_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


@contextmanager
def client_for(spec: str, *, timeout: float = 10.0) -> Iterator[Client]:
    """A :class:`distributed.Client` for a cluster spec, closed (with any cluster it started) on exit.

    Parameters
    ----------
    spec : str
        ``"local"``, ``"local:N"`` or a scheduler address (see :func:`parse_spec`).
    timeout : float, default 10
        Seconds to wait for a remote scheduler to answer.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ValueError
        A spec that :func:`parse_spec` refuses (before anything starts).
    ConnectionError
        Naming the address, if the scheduler does not answer within ``timeout``.

    Notes
    -----
    A local cluster has ``N`` worker processes of one thread each (the simulator and the Python parts
    of the scenario engine hold the GIL: processes, not threads, give parallelism), no dashboard, and
    ``NUMBA_NUM_THREADS`` set in the workers to ``cores // N`` (at least 1), applied by
    :func:`limit_numba_threads` in every optmm task, so that numba's parallel kernels in ``N`` workers
    do not oversubscribe the machine's cores. A remote cluster is used as it is: its workers need
    optmm installed, at the same version as the client.
    """
    parsed = parse_spec(spec)
    from distributed import Client, LocalCluster

    if parsed.address is not None:
        try:
            client = Client(parsed.address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"cluster spec {spec!r}: no scheduler answers at {parsed.address} "
                f"within {timeout:g} s ({exc})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return

    assert parsed.workers is not None
    numba_threads = max(1, (os.cpu_count() or 1) // parsed.workers)
    cluster = LocalCluster(
        n_workers=parsed.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"NUMBA_NUM_THREADS": str(numba_threads)},
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            # Through the scheduler: workers stop before it does (a plain close races their heartbeats
            # against the scheduler's shutdown and may log a spurious "failed to communicate" error).
            client.shutdown()
    finally:
        cluster.close()


def limit_numba_threads() -> None:
    """Make numba's parallel kernels in this thread use ``NUMBA_NUM_THREADS`` threads, if it is set.

    Called by optmm's tasks on the workers. A worker process may import numba before the cluster's
    environment reaches it (a spawned process first re-imports the parent's main module: the
    ``optmm`` command's imports numba), when numba has already read its thread count; the count is
    then lowered here, for the calling thread (numba's setting is per thread). A no-op without numba
    loaded (it reads the variable when imported) or without the variable.
    """
    numba = sys.modules.get("numba")
    want = os.environ.get("NUMBA_NUM_THREADS", "")
    if numba is None or not want.isdigit():
        return
    n = max(1, min(int(want), int(numba.config.NUMBA_NUM_THREADS)))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)


def on_worker(fn: Callable[..., _T], *args: Any) -> _T | ValueError:
    """``fn(*args)`` as an optmm task runs on a worker: numba's threads limited first
    (:func:`limit_numba_threads`), and a ValueError handed back, to be raised on the client, rather
    than raised (no worker-side traceback log)."""
    limit_numba_threads()
    try:
        return fn(*args)
    except ValueError as exc:
        return exc
