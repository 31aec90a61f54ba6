"""Scenario P&L of a book partitioned over a Dask cluster: the local engine on each part, P&L summed.

How it works
------------
1. The book is cut into partitions (:func:`partition_book`): by underlying (each partition holds whole
   underlyings, balanced by position count), or into contract ranges (positions sorted by contract,
   cut into ranges of about equal size, never splitting a contract) for a book dominated by one big
   underlying.
2. The partitions are scattered to the workers and the market is broadcast to all of them once
   (:meth:`DistributedBook.scatter`); or each worker loads its own partition from a file
   (:meth:`DistributedBook.from_files`), so the whole book never passes through one machine.
3. Each scenario request revalues every partition where it lives with the local engine
   (:func:`optmm.risk.scenario_grid`, :func:`optmm.risk.scenario_pnl`) and the client sums the
   returned P&L cells per underlying as they arrive.

Why it is exact
---------------
Full revaluation is additive over positions: a contract's P&L at a scenario point depends on that
contract, the market and the shock only (its surface vol, its price before and after), never on the
other positions. Every partition computes its contracts' cells with the same kernel on the same
inputs as the local engine does on the whole book, so the cells are the same numbers; only the order
of the final sums changes, which moves a result by a few ulps of the book's gross value (the tests
hold it to 1e-9 of it). Time passing, beta weighting and a shock restricted to one underlying are
per-contract rules too, so they partition the same way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from optmm.book import Book, Kind
from optmm.market import Market
from optmm.risk import scenarios as local
from optmm.risk.scenarios import (
    GridResult,
    Shock,
    Stress,
    StressResult,
    check_finite,
    check_stress,
    load_stress,
    stress_result,
)
from optmm.scaleout.cluster import on_worker

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["DistributedBook", "Partitioning", "partition_book", "run_stress", "scenario_grid", "scenario_pnl"]

Partitioning = Literal["underlying", "contracts"]
"""How a book is cut: ``"underlying"`` (whole underlyings per partition) or ``"contracts"`` (ranges)."""

_PARTITIONS_PER_THREAD = 4


# --------------------------------------------------------------------------------------------------
# Partitioning


def _subset(book: Book, rows: np.ndarray, label: str) -> Book:
    # The rows come from a validated book: the package's trusted constructor skips re-validating them.
    arrays = {name: getattr(book, name)[rows] for name in Book._ARRAYS}
    return Book._trusted(arrays, f"{book.source} ({label})")


def _by_underlying(book: Book, n: int | None) -> list[np.ndarray]:
    codes, uniques = pd.factorize(np.asarray(book.underlying, dtype=object), sort=True)
    counts = np.bincount(codes, minlength=len(uniques))
    n_bins = len(uniques) if n is None else min(n, len(uniques))
    # Longest processing time first: biggest underlyings first, each into the lightest bin so far.
    load = np.zeros(n_bins, dtype=np.int64)
    bin_of = np.empty(len(uniques), dtype=np.intp)
    for u in sorted(range(len(uniques)), key=lambda i: (-counts[i], i)):
        b = int(np.argmin(load))
        bin_of[u] = b
        load[b] += counts[u]
    row_bin = bin_of[codes]
    return [np.flatnonzero(row_bin == b) for b in range(n_bins) if load[b]]


def _by_contracts(book: Book, n: int) -> list[np.ndarray]:
    keys = [
        np.asarray(book.vol, dtype=np.float64),
        np.asarray(book.expiry, dtype="datetime64[D]").view(np.int64),
        np.asarray(book.strike, dtype=np.float64),
        np.asarray(book.kind).astype(np.int64),
        np.asarray(book.underlying, dtype=object),
    ]
    codes = [pd.factorize(k, sort=True, use_na_sentinel=False)[0] for k in keys]
    order = np.lexsort(codes)  # last key first: underlying, kind, strike, expiry, vol
    sorted_codes = np.stack([c[order] for c in codes])
    new_contract = np.ones(order.size, dtype=bool)
    new_contract[1:] = np.any(sorted_codes[:, 1:] != sorted_codes[:, :-1], axis=0)
    starts = np.flatnonzero(new_contract)  # where each contract's rows begin, in sorted order
    targets = np.arange(1, n) * order.size / n
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, targets), starts.size - 1)])
    bounds = [0, *[int(c) for c in cuts if 0 < c < order.size], order.size]
    return [np.sort(order[lo:hi]) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def partition_book(book: Book, *, by: Partitioning = "underlying", n: int | None = None) -> list[Book]:
    """Cut a book into partitions that revalue independently.

    Parameters
    ----------
    book : Book
    by : {"underlying", "contracts"}, default "underlying"
        ``"underlying"``: each partition holds whole underlyings; with ``n`` the underlyings are packed
        into at most ``n`` partitions balanced by position count (largest first into the lightest).
        ``"contracts"``: positions sorted by contract (underlying, kind, strike, expiry, vol override)
        and cut into ``n`` ranges of about equal size, each cut moved forward to the next contract
        boundary so a contract is never split.
    n : int, optional
        The most partitions. Default: one per underlying for ``"underlying"``; required for
        ``"contracts"``.

    Returns
    -------
    list of Book
        Non-empty sub-books whose positions, together, are the book's (each exactly once, in book
        order within a partition). Empty for an empty book.

    Raises
    ------
    ValueError
        An unknown ``by``, or ``n`` not an integer >= 1 (or missing for ``"contracts"``).

    Examples
    --------
    >>> import pandas as pd
    >>> from optmm.book import Book, Kind
    >>> book = Book.from_frame(pd.DataFrame({
    ...     "underlying": ["A", "B", "A", "C", "A"], "kind": ["call", "put", "call", "stock", "put"],
    ...     "strike": [100, 50, 100, None, 90], "expiry": ["2027-01-15"] * 3 + [None, "2027-01-15"],
    ...     "quantity": [1, 2, 3, 4, 5]}))
    >>> [p.underlyings() for p in partition_book(book)]
    [['A'], ['B'], ['C']]
    >>> [p.underlyings() for p in partition_book(book, n=2)]
    [['A'], ['B', 'C']]
    >>> [p.quantity.tolist() for p in partition_book(book, by="contracts", n=2)]
    [[1.0, 3.0, 5.0], [2.0, 4.0]]
    """
    if by not in ("underlying", "contracts"):
        raise ValueError(f"by: expected 'underlying' or 'contracts', got {by!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        raise ValueError(f"n: the number of partitions must be an integer >= 1, got {n!r}")
    if by == "contracts" and n is None:
        raise ValueError("n: the number of partitions is needed to cut a book into contract ranges")
    if len(book) == 0:
        return []
    rows = _by_underlying(book, n) if by == "underlying" else _by_contracts(book, int(n or 1))
    return [_subset(book, r, f"part {i} of {len(rows)}") for i, r in enumerate(rows, start=1)]


# --------------------------------------------------------------------------------------------------
# Work done on the workers (module level: the workers import it by name)


def _load_part(path: str, market: Market) -> Book:
    try:
        book = Book.load(path)
    except OSError as exc:  # the file system is the worker's: say where it looked
        import socket

        raise ValueError(
            f"{path}: cannot read the book on worker host {socket.gethostname()} ({exc})"
        ) from None
    book.check_market(market)
    return book


def _part_info(book: Book) -> tuple[int, list[str]]:
    return len(book), book.underlyings()


def _grid_part(
    book: Book, market: Market, kwargs: dict[str, Any]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One partition's grid: its underlyings and their (U_p, n_spot, n_vol) full and Taylor P&L."""
    res = local.scenario_grid(book, market, **kwargs)
    full = np.stack([res.matrix(u).to_numpy() for u in res.underlyings])
    taylor = np.stack([res.taylor_matrix(u).to_numpy() for u in res.underlyings])
    return list(res.underlyings), full, taylor


# --------------------------------------------------------------------------------------------------
# The partitioned book


class DistributedBook:
    """A book partitioned over a Dask cluster, with its market: scenario P&L computed where it lives.

    Make one with :meth:`scatter` (from a book in memory) or :meth:`from_files` (each worker loads a
    partition file); use it as a context manager (or call :meth:`release`) to free the workers'
    memory. Every method returns what the local engine (:mod:`optmm.risk.scenarios`) returns for the
    whole book, to rounding of the sums (see the module docstring).

    Attributes
    ----------
    client : distributed.Client
    market : Market
    underlyings : tuple of str
        The book's underlyings, sorted.
    n_positions : int
    n_partitions : int
    """

    def __init__(
        self,
        client: Client,
        market: Market,
        market_future: Future,
        parts: Sequence[Future],
        underlyings: Iterable[str],
        n_positions: int,
    ) -> None:
        # What scatter() and from_files() made: the futures of the market and of the partitions.
        self.client = client
        self.market = market
        self._market = market_future
        self._parts: list[Future] = list(parts)
        self.underlyings = tuple(sorted(set(underlyings)))
        self.n_positions = int(n_positions)

    @property
    def _skeleton(self) -> Book:
        """One share of each underlying: the local engine checks a request on it (shocks, betas, spot
        moves of every underlying) in a millisecond, before any work is sent."""
        n = len(self.underlyings)
        return Book(
            id=np.array([f"check-{i}" for i in range(n)], dtype=object),
            underlying=np.array(self.underlyings, dtype=object),
            kind=np.full(n, Kind.STOCK, dtype=np.int8),
            strike=np.zeros(n),
            expiry=np.full(n, np.datetime64("NaT"), dtype="datetime64[D]"),
            quantity=np.ones(n),
            multiplier=np.ones(n),
            vol=np.full(n, np.nan),
            source="<request check>",
        )

    @property
    def n_partitions(self) -> int:
        """Number of partitions held by the workers."""
        return len(self._parts)

    @classmethod
    def scatter(
        cls,
        client: Client,
        book: Book,
        market: Market,
        *,
        by: Partitioning = "underlying",
        n_partitions: int | None = None,
    ) -> DistributedBook:
        """Partition a book in memory and send the partitions to the workers.

        Parameters
        ----------
        client : distributed.Client
        book : Book
        market : Market
            Broadcast to every worker once.
        by : {"underlying", "contracts"}, default "underlying"
            See :func:`partition_book`.
        n_partitions : int, optional
            Default: four per worker thread of the cluster (for ``"underlying"``, at most one per
            underlying).

        Raises
        ------
        BookError
            An underlying of the book without market data (checked before anything is sent).
        """
        book.check_market(market)
        if n_partitions is None:
            threads = sum(client.nthreads().values()) or 1
            n_partitions = _PARTITIONS_PER_THREAD * threads
        parts = partition_book(book, by=by, n=n_partitions)
        market_future = client.scatter(market, broadcast=True, hash=False)
        futures = client.scatter(parts, hash=False) if parts else []
        return cls(client, market, market_future, futures, book.underlyings(), len(book))

    @classmethod
    def from_files(
        cls, client: Client, paths: Iterable[str | os.PathLike[str]], market: Market
    ) -> DistributedBook:
        """Let the workers load the partitions: one book file (CSV or Parquet) per partition.

        Parameters
        ----------
        client : distributed.Client
        paths : iterable of path
            Files readable by the workers at these paths (a shared file system, or the same files on
            every worker). Any split is exact, even one underlying across several files.
        market : Market

        Raises
        ------
        BookError, ValueError
            A file that does not load, or an underlying without market data, naming the file.
        """
        market_future = client.scatter(market, broadcast=True, hash=False)
        parts = [client.submit(_load_part, str(p), market_future, pure=False) for p in paths]
        info = client.gather([client.submit(_part_info, f, pure=False) for f in parts])
        underlyings = [u for _, us in info for u in us]
        return cls(client, market, market_future, parts, underlyings, sum(n for n, _ in info))

    def __enter__(self) -> DistributedBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop the partitions and the market from the workers' memory (at once, not when collected)."""
        futures, self._parts = [*self._parts, self._market], []
        if self.client.status == "running":
            self.client.cancel(futures)

    def __repr__(self) -> str:
        return (
            f"DistributedBook({self.n_positions} positions, {len(self.underlyings)} underlyings, "
            f"{self.n_partitions} partitions)"
        )

    def _results(self, fn: Any, *args: Any) -> Iterator[Any]:
        from distributed import as_completed

        if not self._parts:
            return
        futures = [
            self.client.submit(on_worker, fn, part, self._market, *args, pure=False) for part in self._parts
        ]
        for future in as_completed(futures):
            result = future.result()
            future.release()
            if isinstance(result, ValueError):
                raise result
            yield result

    def scenario_grid(
        self,
        *,
        spot_shocks: Iterable[float],
        vol_shocks: Iterable[float],
        days: float = 0.0,
        underlying: str | None = None,
        beta_weighted: bool = False,
    ) -> GridResult:
        """Full-revaluation P&L over every (spot shock, vol shock) pair: :func:`optmm.risk.scenario_grid`.

        Parameters and result as :func:`optmm.risk.scenario_grid`; the shocks are validated on the
        client before any work is sent.
        """
        kwargs: dict[str, Any] = {
            "spot_shocks": list(spot_shocks),
            "vol_shocks": list(vol_shocks),
            "days": days,
            "underlying": underlying,
            "beta_weighted": beta_weighted,
        }
        checked = local.scenario_grid(self._skeleton, self.market, **kwargs)
        kwargs["spot_shocks"], kwargs["vol_shocks"] = list(checked.spot_shocks), list(checked.vol_shocks)
        index = {u: i for i, u in enumerate(self.underlyings)}
        n_s, n_v = len(checked.spot_shocks), len(checked.vol_shocks)
        full = np.zeros((len(self.underlyings), n_s, n_v))
        taylor = np.zeros_like(full)
        for unds, part_full, part_taylor in self._results(_grid_part, kwargs):
            rows = [index[u] for u in unds]
            with np.errstate(over="ignore", invalid="ignore"):  # GridResult checks every cell
                full[rows] += part_full
                taylor[rows] += part_taylor
        return local._grid_result(
            full,
            taylor,
            underlyings=self.underlyings,
            spot_shocks=checked.spot_shocks,
            vol_shocks=checked.vol_shocks,
            days=checked.days,
            underlying=underlying,
            beta_weighted=beta_weighted,
            valuation=self.market.valuation,
        )

    def _pnl(self, shocks: Sequence[Shock]) -> np.ndarray:
        """(U, n_shocks) P&L, validated on the client first."""
        local.scenario_pnl(self._skeleton, self.market, shocks)
        index = {u: i for i, u in enumerate(self.underlyings)}
        pnl = np.zeros((len(self.underlyings), len(shocks)))
        for unds, part in self._results(local.shock_pnl, list(shocks)):
            with np.errstate(over="ignore", invalid="ignore"):  # the callers check every figure
                pnl[[index[u] for u in unds]] += part
        return pnl

    def scenario_pnl(self, shocks: Sequence[Shock]) -> pd.DataFrame:
        """Full-revaluation P&L under each shock: :func:`optmm.risk.scenario_pnl`.

        Returns
        -------
        pandas.DataFrame
            One row per shock, one column per underlying (sorted), then ``"book"``.
        """
        pnl = self._pnl(list(shocks))
        check_finite(pnl, list(self.underlyings))
        return local._shock_frame(self.underlyings, pnl)

    def run_stress(self, stress: Stress | str | os.PathLike[str]) -> StressResult:
        """P&L under a named stress, per leg: :func:`optmm.risk.run_stress`."""
        if not isinstance(stress, Stress):
            stress = load_stress(stress)
        check_stress(self._skeleton, self.market, stress)
        pnl = self._pnl(list(stress.legs))
        return stress_result(stress, local._shock_frame(self.underlyings, pnl), pnl, list(self.underlyings))


# --------------------------------------------------------------------------------------------------
# One-shot functions


def scenario_grid(
    book: Book,
    market: Market,
    *,
    client: Client,
    spot_shocks: Iterable[float],
    vol_shocks: Iterable[float],
    days: float = 0.0,
    underlying: str | None = None,
    beta_weighted: bool = False,
    by: Partitioning = "underlying",
    n_partitions: int | None = None,
) -> GridResult:
    """:func:`optmm.risk.scenario_grid` on a Dask cluster: partition, revalue where it lives, sum.

    Parameters
    ----------
    book, market, spot_shocks, vol_shocks, days, underlying, beta_weighted
        As :func:`optmm.risk.scenario_grid`.
    client : distributed.Client
        The cluster (see :func:`optmm.scaleout.client_for`).
    by, n_partitions
        How to partition the book (see :func:`partition_book`, :meth:`DistributedBook.scatter`).

    Returns
    -------
    GridResult
        Equal to the local engine's to rounding of the sums (module docstring).

    Examples
    --------
    ::

        from optmm.scaleout import client_for, scenario_grid

        with client_for("local:2") as client:
            grid = scenario_grid(book, market, client=client, spot_shocks=[-0.1, 0.1], vol_shocks=[0.05])
        grid.matrix()  # the same table as optmm.risk.scenario_grid(book, market, ...)
    """
    with DistributedBook.scatter(client, book, market, by=by, n_partitions=n_partitions) as dbook:
        return dbook.scenario_grid(
            spot_shocks=spot_shocks,
            vol_shocks=vol_shocks,
            days=days,
            underlying=underlying,
            beta_weighted=beta_weighted,
        )


def scenario_pnl(
    book: Book,
    market: Market,
    shocks: Sequence[Shock],
    *,
    client: Client,
    by: Partitioning = "underlying",
    n_partitions: int | None = None,
) -> pd.DataFrame:
    """:func:`optmm.risk.scenario_pnl` on a Dask cluster (see :func:`scenario_grid`)."""
    with DistributedBook.scatter(client, book, market, by=by, n_partitions=n_partitions) as dbook:
        return dbook.scenario_pnl(shocks)


def run_stress(
    book: Book,
    market: Market,
    stress: Stress | str | os.PathLike[str],
    *,
    client: Client,
    by: Partitioning = "underlying",
    n_partitions: int | None = None,
) -> StressResult:
    """:func:`optmm.risk.run_stress` on a Dask cluster (see :func:`scenario_grid`)."""
    with DistributedBook.scatter(client, book, market, by=by, n_partitions=n_partitions) as dbook:
        return dbook.run_stress(stress)
