"""Historical VaR on a Dask cluster: the scenarios cut into blocks, each block revalued on a worker.

The book and the market are broadcast to the workers once; the scenarios (one row per historical
date) are cut into contiguous blocks of dates, and each block is revalued where it lands by the
local engine (:func:`optmm.risk.var.scenario_pnl_frame`, i.e.
:func:`optmm.risk.scenarios.points_pnl`). The client puts the blocks' P&L back in date order and
computes the figures with the same code as the local :func:`optmm.risk.var.historical_var`
(:func:`optmm.risk.var.var_result`).

Why the figures equal the local ones: a scenario's P&L depends on that scenario, the book and the
market only, so a block's rows are the rows the whole run gives for those dates, up to the order in
which the engine adds contracts' P&L (it works in chunks of contracts sized by the number of
scenarios, so a smaller block may group the additions differently): a few ulps of the book's gross
value. The tests hold VaR, ES, the P&L vector and the contributions to 1e-9 relative.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from optmm.risk.var import LEVELS, VarResult, check_levels, check_moves, scenario_pnl_frame, var_result
from optmm.scaleout.cluster import on_worker

if TYPE_CHECKING:
    from distributed import Client

    from optmm.book import Book
    from optmm.market import Market
    from optmm.risk.history import HistoricalScenarios

__all__ = ["historical_var", "scenario_blocks"]

_BLOCKS_PER_THREAD = 4


def scenario_blocks(n: int, n_blocks: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: ``n`` scenarios cut into at most ``n_blocks`` contiguous, non-empty blocks
    of about equal size, in order.

    >>> scenario_blocks(10, 3)
    [(0, 3), (3, 6), (6, 10)]
    >>> scenario_blocks(2, 5)
    [(0, 1), (1, 2)]
    """
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer) or n_blocks < 1:
        raise ValueError(f"n_blocks: an integer >= 1, got {n_blocks!r}")
    edges = np.unique(np.linspace(0, n, min(int(n_blocks), max(n, 1)) + 1).astype(np.int64))
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges.tolist()) if hi > lo]


def historical_var(
    book: Book,
    market: Market,
    scenarios: HistoricalScenarios,
    *,
    client: Client,
    levels: Sequence[float] = LEVELS,
    n_blocks: int | None = None,
) -> VarResult:
    """:func:`optmm.risk.var.historical_var` with the scenarios partitioned over a Dask cluster.

    Parameters
    ----------
    book, market, scenarios, levels
        As :func:`optmm.risk.var.historical_var`.
    client : distributed.Client
        The cluster (see :func:`optmm.scaleout.client_for`).
    n_blocks : int, optional
        Blocks of scenarios; default four per worker thread.

    Returns
    -------
    VarResult
        The local result's figures, to a few ulps (module docstring).
    """
    from optmm.risk.history import HistoricalScenarios

    if not isinstance(scenarios, HistoricalScenarios):
        raise TypeError(f"scenarios: expected HistoricalScenarios, got {type(scenarios).__name__}")
    lv = check_levels(levels)
    book.check_market(market)
    check_moves(book, scenarios)
    if len(scenarios) == 0:
        raise ValueError("no scenarios: VaR needs at least one P&L")
    if n_blocks is None:
        n_blocks = _BLOCKS_PER_THREAD * (sum(client.nthreads().values()) or 1)
    blocks = scenario_blocks(len(scenarios), n_blocks)
    book_f = client.scatter(book, broadcast=True, hash=False)
    market_f = client.scatter(market, broadcast=True, hash=False)
    futures = [
        client.submit(on_worker, scenario_pnl_frame, book_f, market_f, scenarios.block(lo, hi), pure=False)
        for lo, hi in blocks
    ]
    try:
        parts = client.gather(futures)
    finally:
        if client.status == "running":
            client.cancel([*futures, book_f, market_f])
    for part in parts:
        if isinstance(part, ValueError):
            raise part
    frame = pd.concat(parts)
    return var_result(frame, levels=lv, horizon=scenarios.horizon, scenarios=scenarios)
