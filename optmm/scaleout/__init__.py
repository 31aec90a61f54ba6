"""Beyond one machine: scenario grids over a partitioned book and simulation sweeps, on Dask.

* :func:`client_for` turns ``"local"``, ``"local:N"`` or a scheduler address into a
  :class:`distributed.Client` (closing what it started).
* :class:`DistributedBook` (and the one-shot :func:`scenario_grid`, :func:`scenario_pnl`,
  :func:`run_stress`): a book partitioned by underlying or into contract ranges, each partition
  revalued on a worker by the local engine, the P&L summed; equal to :mod:`optmm.risk.scenarios` to
  rounding of the sums.
* :func:`run_sweep`: a grid of simulation settings x seeds (:class:`SweepSpec`, a TOML file), one
  task per run, results stored as they arrive and gathered into Parquet tables keyed by config hash
  and seed, a summary per setting and an efficient-frontier plot; atomic and resumable.

``distributed`` itself is imported only when a client is made or a sweep runs on one; see
``docs/distributed.md``.
"""

from optmm.scaleout.cluster import ClusterSpec, check_spec, client_for, parse_spec
from optmm.scaleout.scenarios import (
    DistributedBook,
    Partitioning,
    partition_book,
    run_stress,
    scenario_grid,
    scenario_pnl,
)
from optmm.scaleout.sweep import (
    SweepConfig,
    SweepError,
    SweepResult,
    SweepSpec,
    efficient_frontier,
    flatten_metrics,
    plot_frontier,
    run_sweep,
    summarize,
)

__all__ = [
    "ClusterSpec",
    "DistributedBook",
    "Partitioning",
    "SweepConfig",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "check_spec",
    "client_for",
    "efficient_frontier",
    "flatten_metrics",
    "parse_spec",
    "partition_book",
    "plot_frontier",
    "run_stress",
    "run_sweep",
    "scenario_grid",
    "scenario_pnl",
    "summarize",
]
