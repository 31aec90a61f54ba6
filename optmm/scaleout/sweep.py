"""Simulation sweeps: a grid of settings x seeds, one task per run, results in Parquet, resumable.

The sweep file (TOML)
---------------------
::

    name = "gamma_band_latency"            # optional, text (default: the file's stem)
    base = "../sim/calm_day.toml"          # required: a SimConfig file, relative to this file
    seeds = 100                            # required: N (seeds 0..N-1) or a list of distinct ints >= 0
                                           # and < 2**63
    [overrides]                            # optional: dotted SimConfig keys -> one value, for every run
    "hedger.mode" = "fixed_band"
    [grid]                                 # dotted SimConfig keys -> lists (the cartesian product)
    "quoter.gamma_risk_aversion" = [1e-5, 1e-4, 1e-3]
    "hedger.band_shares" = [200.0, 500.0]
    "flow.latency_steps" = [0, 1]
    [metrics]                              # optional: which summary metrics make the frontier
    pnl = "total_pnl_mean"                 # the P&L of a run (default total_pnl_mean)
    risk = "total_pnl_std"                 # the risk of a setting (default total_pnl_std, see below)

Each setting of the grid is the base config with the fixed ``[overrides]`` and then the setting's
values applied (``SimConfig.with_overrides``), identified by its ``content_hash``; each (setting,
seed) is one run, ``run_fn(config, seed)`` (default :func:`optmm.sim.run_summary`), returning a dict
of summary metrics. A sweep has at most :data:`MAX_SETTINGS` settings (each config is built and
checked before any run: about 2 ms each) and :data:`MAX_RUNS` runs, counted before anything is built.

What it writes (in the output directory ``OUT``)
------------------------------------------------
* ``parts/part-NNNNNN.parquet``: completed runs, a few at a time as they arrive, each file written to
  a temporary name and renamed (whole or absent);
* ``runs.parquet``: one row per run, keyed by ``config_hash`` and ``seed``: ``setting`` (index into
  the grid's cartesian product, in file order), ``config_hash``, ``seed``, one column per swept key
  (named by the key), then the run's numeric metrics in name order, nested dicts flattened with ``"."``
  (``attribution.spread_capture``), as float64 (counts too; NaN where a run reports none); text
  metrics are left out. Rows are sorted by setting, then seed in the file's order;
* ``summary.parquet``: one row per setting: ``setting``, ``config_hash``, the swept keys,
  ``n_runs``, ``pnl_mean`` and ``pnl_std`` (mean and standard deviation over seeds of the P&L
  metric), ``risk``, and ``efficient`` (on the efficient frontier). Both tables are written in full
  to temporary names before either is renamed into place (``runs.parquet`` first): a failed write
  (a full disk) replaces neither, and both are rebuilt from the parts by every resume;
* ``frontier.png``: mean P&L against risk, one labelled point per setting, the frontier joined;
* ``sweep.json``: the sweep as run: file, base config and its hash, fixed overrides, seeds, grid,
  metrics, and every setting's values and config hash, so each row traces to its exact settings.

The risk of a setting is the mean over its seeds of the metric named by ``risk``, except for
``"total_pnl_std"``: a run is one path, so the P&L risk of a setting is the standard deviation of the
P&L metric over its seeds (``pnl_std``).

Reliability
-----------
Every file is written atomically (a temporary file beside it, then ``os.replace``); a file that
cannot be written (a full disk, a read-only file system) is an OSError naming it. A run is done
when it is in a part file: an interrupted sweep (an exception, Ctrl-C) keeps the runs it finished
(buffered results are flushed on the way out; a client process killed outright loses at most the
last ``flush_seconds`` of them), never leaves a half-written table, and ``resume=True`` submits only
the (config_hash, seed) keys not stored yet. A worker lost mid-sweep makes Dask rerun its task
elsewhere; each task's result is consumed once, and a key stored twice (a copied part, a resume
racing a running sweep) is kept once (the first stored), so the tables are the same as an
undisturbed sweep's. That needs runs that are deterministic in (config, seed), as
:func:`optmm.sim.run_summary` is (it leaves the wall time out).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from optmm._config import MAX_SEED, Config, is_finite, read_toml, to_json
from optmm._io import atomic_target, figure_format, save_figure
from optmm.scaleout.cluster import limit_numba_threads

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DEFAULT_PNL",
    "FRONTIER_FILE",
    "MANIFEST_FILE",
    "MAX_RUNS",
    "MAX_SETTINGS",
    "PNL_STD",
    "RUNS_FILE",
    "SUMMARY_FILE",
    "SweepConfig",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "efficient_frontier",
    "flatten_metrics",
    "frontier_errors",
    "plot_frontier",
    "run_sweep",
    "summarize",
]

DEFAULT_PNL = "total_pnl_mean"
"""Default P&L metric of a run."""
PNL_STD = "total_pnl_std"
"""Default risk: the standard deviation over seeds of the P&L metric (see the module docstring)."""
RUNS_FILE = "runs.parquet"
SUMMARY_FILE = "summary.parquet"
FRONTIER_FILE = "frontier.png"
MANIFEST_FILE = "sweep.json"
PARTS_DIR = "parts"
KEY = ("config_hash", "seed")
MAX_SETTINGS = 10_000
"""The most settings (grid points) of a sweep: each one's config is built and checked before any run."""
MAX_RUNS = 1_000_000
"""The most runs (settings x seeds) of a sweep."""
_RESERVED = ("setting", "config_hash", "seed")


class SweepConfig(Protocol):
    """What a sweep needs of a configuration (:class:`optmm.sim.SimConfig` has it)."""

    @property
    def content_hash(self) -> str: ...

    def with_overrides(self, overrides: Mapping[str, Any]) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


RunFn = Callable[[Any, int], Mapping[str, Any]]
LoadConfig = Callable[[Path], Any]


class SweepError(RuntimeError):
    """A run of a sweep failed; the runs stored so far are kept (resume to continue)."""


def _default_run_fn() -> RunFn:
    from optmm.sim import run_summary  # lazily: this package imports without the simulator

    return run_summary


def _default_load_config() -> LoadConfig:
    from optmm.sim import SimConfig

    return SimConfig.load


# --------------------------------------------------------------------------------------------------
# The sweep file


def _value_kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if is_finite(v):
        return "number"
    if isinstance(v, str):
        return "str"
    return None


@dataclass(frozen=True, kw_only=True)
class SweepSpec(Config):
    """A sweep: a base configuration, a grid of overrides, seeds and the frontier's metrics.

    Parameters
    ----------
    name : str
        Names the sweep (progress bar, plot, task keys).
    base : pathlib.Path
        The base configuration file.
    seeds : tuple of int
        Distinct seeds >= 0 and <= 2**63 - 1, in order.
    grid : tuple of (str, tuple) pairs
        Dotted config keys and their values (non-empty, distinct, all numbers, all text or all
        booleans), in order; the settings are their cartesian product. Empty: one setting, the base.
    overrides : tuple of (str, value) pairs
        Dotted config keys set to one value in every run (applied to the base before the grid).
    pnl_metric : str, default "total_pnl_mean"
    risk_metric : str, default "total_pnl_std"
    source : str
        The file it came from, for messages.
    """

    name: str
    base: Path
    seeds: tuple[int, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    pnl_metric: str = DEFAULT_PNL
    risk_metric: str = PNL_STD
    source: str = "<SweepSpec>"

    def where(self, name: str) -> str:
        return f"{self.source}: field {name!r}"

    def check(self) -> None:
        where = self.source
        object.__setattr__(self, "base", Path(self.base))
        seeds = tuple(self.seeds)
        if not seeds:
            raise ValueError(f"{where}: field 'seeds': at least one seed is needed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s <= MAX_SEED:
                raise ValueError(
                    f"{where}: field 'seeds': seeds must be integers >= 0 and <= {MAX_SEED} (2**63 - 1), "
                    f"got {s!r}"
                )
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{where}: field 'seeds': duplicated seeds in {list(seeds)}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        grid = tuple((k, tuple(v)) for k, v in self.grid)
        keys = [k for k, _ in grid]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{where}: [grid]: duplicated keys in {keys}")
        for key, values in grid:
            if not isinstance(key, str) or key.count(".") < 1 or key in _RESERVED:
                raise ValueError(f"{where}: grid key {key!r}: expected a dotted config key 'section.field'")
            if not values:
                raise ValueError(f"{where}: grid key {key!r}: at least one value is needed")
            kinds = {_value_kind(v) for v in values}
            if None in kinds or len(kinds) != 1:
                raise ValueError(
                    f"{where}: grid key {key!r}: values must be all finite numbers, all text or all "
                    f"true/false, got {list(values)!r}"
                )
            if len(set(values)) != len(values):
                raise ValueError(f"{where}: grid key {key!r}: duplicated values in {list(values)!r}")
        object.__setattr__(self, "grid", grid)
        n_settings = math.prod(len(v) for _, v in grid)
        if n_settings > MAX_SETTINGS:
            sizes = " x ".join(str(len(v)) for _, v in grid)
            raise ValueError(
                f"{where}: [grid]: {sizes} = {n_settings:,} settings: at most {MAX_SETTINGS:,} (each "
                "setting's config is built before any run)"
            )
        if n_settings * len(seeds) > MAX_RUNS:
            raise ValueError(
                f"{where}: {n_settings:,} settings x {len(seeds):,} seeds = "
                f"{n_settings * len(seeds):,} runs: at most {MAX_RUNS:,}"
            )
        overrides = tuple((k, v) for k, v in self.overrides)
        for key, value in overrides:
            if not isinstance(key, str) or key.count(".") < 1:
                raise ValueError(f"{where}: override {key!r}: expected a dotted config key 'section.field'")
            if key in keys:
                raise ValueError(f"{where}: override {key!r}: also a key of the grid")
            if isinstance(value, dict):
                raise ValueError(f'{where}: override {key!r}: quote dotted keys, as in "{key}.<field>" = ...')
        object.__setattr__(self, "overrides", overrides)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SweepSpec:
        """Read a sweep file (format in the module docstring).

        Raises
        ------
        ValueError
            A file that cannot be read or parsed, an unknown or missing field, a value of the wrong
            type; the message names the file and the field (or grid key).
        """
        path = Path(path)
        where = str(path)
        doc = read_toml(path, "sweep file")
        allowed = ("name", "base", "seeds", "overrides", "grid", "metrics")
        unknown = sorted(set(doc) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: field {unknown[0]!r}: unknown (allowed: {', '.join(allowed)})")
        base = doc.get("base")
        if not isinstance(base, str) or not base:
            raise ValueError(f"{where}: field 'base': required, the path of a config file (got {base!r})")
        seeds_doc = doc.get("seeds")
        if isinstance(seeds_doc, int) and not isinstance(seeds_doc, bool):
            if not 1 <= seeds_doc <= MAX_RUNS:
                raise ValueError(
                    f"{where}: field 'seeds': must be >= 1 and <= {MAX_RUNS:,} (runs), got {seeds_doc}"
                )
            seeds: tuple[int, ...] = tuple(range(seeds_doc))
        elif isinstance(seeds_doc, list):
            seeds = tuple(seeds_doc)
        else:
            raise ValueError(
                f"{where}: field 'seeds': required, a count or a list of integers (got {seeds_doc!r})"
            )
        grid_doc = doc.get("grid", {})
        if not isinstance(grid_doc, dict):
            raise ValueError(f"{where}: field 'grid': must be a table of key = [values] (got {grid_doc!r})")
        grid = []
        for key, values in grid_doc.items():
            if isinstance(values, dict):  # an unquoted dotted key parses as a nested table
                raise ValueError(
                    f'{where}: grid key {key!r}: quote dotted keys, as in "{key}.<field>" = [...]'
                )
            if not isinstance(values, list):
                raise ValueError(f"{where}: grid key {key!r}: must be a list of values (got {values!r})")
            grid.append((key, tuple(values)))
        fixed = doc.get("overrides", {})
        if not isinstance(fixed, dict):
            raise ValueError(f"{where}: field 'overrides': must be a table of key = value (got {fixed!r})")
        metrics = doc.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ValueError(f"{where}: field 'metrics': must be a table (got {metrics!r})")
        bad = sorted(set(metrics) - {"pnl", "risk"})
        if bad:
            raise ValueError(f"{where}: field 'metrics.{bad[0]}': unknown (allowed: pnl, risk)")
        return cls(
            name=doc.get("name", path.stem),
            base=(path.parent / base),
            seeds=seeds,
            grid=tuple(grid),
            overrides=tuple(fixed.items()),
            pnl_metric=metrics.get("pnl", DEFAULT_PNL),
            risk_metric=metrics.get("risk", PNL_STD),
            source=where,
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The swept keys, in order."""
        return tuple(k for k, _ in self.grid)

    def settings(self) -> list[dict[str, Any]]:
        """The settings: the cartesian product of the grid, the last key varying fastest."""
        return [
            dict(zip(self.keys, combo, strict=True))
            for combo in itertools.product(*(v for _, v in self.grid))
        ]

    @property
    def n_runs(self) -> int:
        """Settings x seeds."""
        return math.prod(len(v) for _, v in self.grid) * len(self.seeds)


@dataclass(frozen=True)
class _Run:
    setting: int
    seed: int
    config_hash: str
    config: Any


def _plan(spec: SweepSpec, load_config: LoadConfig) -> tuple[str, list[dict[str, Any]], list[Any], list[str]]:
    """The base file's config hash, the settings, their configs and hashes; refusing bad keys and
    clashing settings."""
    if not spec.base.is_file():  # a named pipe would block the read
        problem = "not a regular file" if spec.base.exists() else "no such file"
        raise ValueError(f"{spec.source}: field 'base': {problem} {str(spec.base)!r}")
    base = load_config(spec.base)
    file_hash = str(base.content_hash)
    if spec.overrides:
        try:
            base = base.with_overrides(dict(spec.overrides))
        except ValueError as exc:
            raise ValueError(f"{spec.source}: [overrides]: {exc}") from None
    settings = spec.settings()
    configs = []
    for overrides in settings:
        try:
            configs.append(base.with_overrides(overrides) if overrides else base)
        except ValueError as exc:
            raise ValueError(f"{spec.source}: [grid]: {exc}") from None
    hashes = [str(c.content_hash) for c in configs]
    seen: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h in seen:
            raise ValueError(
                f"{spec.source}: [grid]: settings {settings[seen[h]]} and {settings[i]} give the same config"
            )
        seen[h] = i
    return file_hash, settings, configs, hashes


# --------------------------------------------------------------------------------------------------
# One run (executed on a worker)


def flatten_metrics(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric metrics of a run's summary, nested dicts flattened with ``"."``, as floats.

    Numbers and booleans become floats, None becomes NaN; text and lists are left out.

    >>> flatten_metrics({"pnl": 3, "attribution": {"spread": 1.5}, "strategy": "mm", "ok": True})
    {'pnl': 3.0, 'attribution.spread': 1.5, 'ok': 1.0}
    """
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, name + "."))
        elif isinstance(value, bool | np.bool_ | int | float | np.integer | np.floating):
            out[name] = float(value)
        elif value is None:
            out[name] = math.nan
    return out


def _run_one(run_fn: RunFn, config: Any, seed: int) -> dict[str, float]:
    limit_numba_threads()
    summary = run_fn(config, seed)
    if not isinstance(summary, Mapping):
        raise TypeError(f"the run function returned {type(summary).__name__}, not a dict of metrics")
    if "config_hash" in summary and summary["config_hash"] != config.content_hash:
        raise ValueError(
            f"the run reports config_hash {summary['config_hash']!r}, the sweep ran {config.content_hash!r}"
        )
    if "seed" in summary and summary["seed"] != seed:
        raise ValueError(f"the run reports seed {summary['seed']!r}, the sweep ran seed {seed}")
    return flatten_metrics({k: v for k, v in summary.items() if k not in KEY})


# --------------------------------------------------------------------------------------------------
# Part files


def _part_index(path: Path) -> int:
    return int(path.stem.removeprefix("part-"))


def _part_paths(parts_dir: Path) -> list[Path]:
    paths = [p for p in parts_dir.glob("part-*.parquet") if p.stem.removeprefix("part-").isdigit()]
    return sorted(paths, key=_part_index)


def _read_parts(parts_dir: Path) -> pd.DataFrame:
    frames = []
    for path in _part_paths(parts_dir):
        try:
            frames.append(pd.read_parquet(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read a stored part ({exc})") from None
    if not frames:
        return pd.DataFrame({"config_hash": pd.Series(dtype=object), "seed": pd.Series(dtype=np.int64)})
    return pd.concat(frames, ignore_index=True, sort=False)


class _PartWriter:
    """Buffers completed runs; writes them as one part file per flush (atomically)."""

    def __init__(self, parts_dir: Path, flush_rows: int, flush_seconds: float) -> None:
        existing = _part_paths(parts_dir)
        self.dir = parts_dir
        self.next = _part_index(existing[-1]) + 1 if existing else 1
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.rows: list[dict[str, Any]] = []
        self.last = time.monotonic()
        self.written = 0

    def add(self, run: _Run, metrics: Mapping[str, float]) -> None:
        self.rows.append({"config_hash": run.config_hash, "seed": run.seed, **metrics})
        if len(self.rows) >= self.flush_rows or time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        frame = pd.DataFrame.from_records(self.rows)
        frame["seed"] = frame["seed"].astype(np.int64)
        for col in frame.columns:
            if col not in KEY:
                frame[col] = frame[col].astype(np.float64)
        path = self.dir / f"part-{self.next:06d}.parquet"
        with _store(path, text=False) as fh:
            frame.to_parquet(fh, index=False)
        self.next += 1
        self.written += len(self.rows)
        self.rows = []
        self.last = time.monotonic()


# --------------------------------------------------------------------------------------------------
# Tables


def _runs_table(
    spec: SweepSpec, settings: Sequence[Mapping[str, Any]], hashes: Sequence[str], stored: pd.DataFrame
) -> pd.DataFrame:
    """The plan's stored runs, one per key (the first stored), sorted by setting then seed order."""
    setting_of = {h: i for i, h in enumerate(hashes)}
    seed_pos = {s: i for i, s in enumerate(spec.seeds)}
    stored = stored.drop_duplicates(list(KEY), keep="first")
    setting = stored["config_hash"].map(setting_of)
    position = stored["seed"].map(seed_pos)
    keep = setting.notna() & position.notna()
    stored = stored[keep].assign(_s=setting[keep].astype(np.int64), _p=position[keep].astype(np.int64))
    stored = stored.sort_values(["_s", "_p"], kind="stable").reset_index(drop=True)
    metrics = sorted(c for c in stored.columns if c not in (*KEY, "_s", "_p"))
    clash = sorted(set(metrics) & {*spec.keys, *_RESERVED})
    if clash:
        raise ValueError(
            f"{spec.source}: the runs report a metric named like a column of the table: {clash[0]!r}"
        )
    columns: dict[str, Any] = {
        "setting": stored["_s"].to_numpy(dtype=np.int64),
        "config_hash": stored["config_hash"].astype(object).to_numpy(),
        "seed": stored["seed"].to_numpy(dtype=np.int64),
    }
    grid = dict(spec.grid)
    for key in spec.keys:
        columns[key] = np.array([settings[i][key] for i in stored["_s"]], dtype=_key_dtype(grid[key]))
    for name in metrics:
        columns[name] = stored[name].to_numpy(dtype=np.float64)
    return pd.DataFrame(columns)


def _key_dtype(values: Sequence[Any]) -> Any:
    """A swept key's column type, from all its values (not only the rows present): stable tables."""
    if all(isinstance(v, bool) for v in values):
        return np.bool_
    if all(isinstance(v, str) for v in values):
        return object
    return np.float64 if any(isinstance(v, float) for v in values) else np.int64


def efficient_frontier(risk: Sequence[float] | np.ndarray, pnl: Sequence[float] | np.ndarray) -> np.ndarray:
    """The non-dominated points: no other point has risk <= and P&L >=, one of them strictly.

    Parameters
    ----------
    risk, pnl : array-like of shape (n,)
        A point with a NaN coordinate is never on the frontier and dominates nothing.

    Returns
    -------
    ndarray of bool, shape (n,)

    Examples
    --------
    >>> efficient_frontier([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 2.5]).tolist()
    [True, True, False, False]
    """
    r = np.asarray(risk, dtype=np.float64).reshape(-1)
    p = np.asarray(pnl, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"risk and pnl: shapes {r.shape} and {p.shape} differ")
    ok = np.isfinite(r) & np.isfinite(p)
    rv, pv = r[ok], p[ok]
    weakly = (rv[None, :] <= rv[:, None]) & (pv[None, :] >= pv[:, None])  # [i, j]: j at least as good
    strictly = (rv[None, :] < rv[:, None]) | (pv[None, :] > pv[:, None])
    out = np.zeros(r.shape, dtype=bool)
    out[ok] = ~np.any(weakly & strictly, axis=1)
    return out


def summarize(runs: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """Per setting: ``n_runs``, ``pnl_mean``, ``pnl_std``, ``risk`` and ``efficient``.

    Parameters
    ----------
    runs : pandas.DataFrame
        A runs table (``runs.parquet``).
    spec : SweepSpec
        Names the swept keys and the metrics (see the module docstring for ``risk``).

    Returns
    -------
    pandas.DataFrame
        One row per setting present in ``runs``, sorted by setting: ``setting``, ``config_hash``, the
        swept keys, then the figures. ``pnl_std`` is the sample standard deviation (NaN for one run).

    Raises
    ------
    ValueError
        A metric of ``spec`` the runs do not report, naming it and the file.
    """
    _check_metrics(spec, runs.columns, [c for c in runs.columns if c not in (*_RESERVED, *spec.keys)])
    first = runs.groupby("setting", sort=True).first()
    grouped = runs.groupby("setting", sort=True)
    pnl = grouped[spec.pnl_metric]
    out = pd.DataFrame({"config_hash": first["config_hash"]})
    for key in spec.keys:
        out[key] = first[key]
    out["n_runs"] = grouped.size().astype(np.int64)
    out["pnl_mean"] = pnl.mean()
    out["pnl_std"] = pnl.std(ddof=1)
    out["risk"] = out["pnl_std"] if spec.risk_metric == PNL_STD else grouped[spec.risk_metric].mean()
    out["efficient"] = efficient_frontier(out["risk"].to_numpy(), out["pnl_mean"].to_numpy())
    return out.reset_index()


def _label(summary_row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " / ".join(
        f"{summary_row[k]:g}" if is_finite(summary_row[k]) else str(summary_row[k]) for k in keys
    )


def plot_frontier(summary: pd.DataFrame, spec: SweepSpec, path: str | os.PathLike[str]) -> Path:
    """Write a figure of mean P&L against risk, one labelled point per setting with error bars, the
    frontier joined.

    The vertical bars are one standard error of the mean P&L over the setting's seeds,
    ``pnl_std / sqrt(n_runs)``. With the default risk (the standard deviation of P&L over seeds) the
    horizontal bars are that standard deviation's standard error under a normal approximation,
    ``pnl_std / sqrt(2 (n_runs - 1))``; a risk metric of the runs has no horizontal bars (the summary
    keeps its mean only). A setting run on one seed has no bars.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summarize`.
    spec : SweepSpec
    path : str or path-like
        ``.png``, ``.pdf`` or ``.svg`` (another extension is a ``ValueError``); written atomically.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure_format(path)  # refuse a wrong extension before drawing
    fig = Figure(figsize=(9.0, 6.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    risk = summary["risk"].to_numpy(dtype=np.float64)
    pnl = summary["pnl_mean"].to_numpy(dtype=np.float64)
    eff = summary["efficient"].to_numpy(dtype=bool)
    pnl_err, risk_err = frontier_errors(summary, spec)
    for mask, color, size, label in ((~eff, "0.55", 5, "dominated"), (eff, "tab:blue", 6, "efficient")):
        if mask.any():
            ax.errorbar(
                risk[mask], pnl[mask], yerr=pnl_err[mask], xerr=risk_err[mask], fmt="o", ms=size,
                color=color, ecolor=color, elinewidth=0.9, capsize=2.5, label=label, zorder=3,
            )  # fmt: skip
    order = np.argsort(risk[eff], kind="stable")
    ax.plot(risk[eff][order], pnl[eff][order], color="tab:blue", lw=1.2, zorder=2)
    rows = summary.to_dict("records")
    for row, x, y in zip(rows, risk, pnl, strict=True):
        if np.isfinite(x) and np.isfinite(y):
            ax.annotate(_label(row, spec.keys) or "base", (x, y), textcoords="offset points", xytext=(5, 5),
                        fontsize=7, color="0.25")  # fmt: skip
    risk_name = (
        f"std over seeds of {spec.pnl_metric}" if spec.risk_metric == PNL_STD else f"mean {spec.risk_metric}"
    )
    ax.set_xlabel(f"risk: {risk_name}")
    ax.set_ylabel(f"mean {spec.pnl_metric} over seeds")
    thousands = FuncFormatter(lambda v, _pos: f"{v + 0.0:,.6g}")
    ax.xaxis.set_major_formatter(thousands)
    ax.yaxis.set_major_formatter(thousands)
    n_runs = int(summary["n_runs"].sum()) if len(summary) else 0
    bars = "bars: \N{PLUS-MINUS SIGN}1 standard error over seeds" + (
        "" if spec.risk_metric == PNL_STD else " (P&L only)"
    )
    ax.set_title(f"{spec.name}: {len(summary)} settings, {n_runs} runs; {bars}" + (
        f"\nlabels: {' / '.join(spec.keys)}" if spec.keys else ""), fontsize=10)  # fmt: skip
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def frontier_errors(summary: pd.DataFrame, spec: SweepSpec) -> tuple[np.ndarray, np.ndarray]:
    """The error bars of :func:`plot_frontier`: per setting, the standard error of the mean P&L and
    of the risk (NaN where there is none: one seed, or a risk metric whose spread is not kept).

    Examples
    --------
    >>> spec = SweepSpec(name="s", base=Path("b.toml"), seeds=(0, 1, 2, 3, 4))
    >>> df = pd.DataFrame({"n_runs": [5, 1], "pnl_std": [10.0, float("nan")]})
    >>> pnl_err, risk_err = frontier_errors(df, spec)
    >>> pnl_err.round(4).tolist(), risk_err.round(4).tolist()
    ([4.4721, nan], [3.5355, nan])
    """
    n = summary["n_runs"].to_numpy(dtype=np.float64)
    sd = summary["pnl_std"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pnl_err = np.where(n > 1, sd / np.sqrt(n), np.nan)
        if spec.risk_metric == PNL_STD:
            risk_err = np.where(n > 1, sd / np.sqrt(2.0 * (n - 1.0)), np.nan)
        else:
            risk_err = np.full(n.shape, np.nan)
    return pnl_err, risk_err


# --------------------------------------------------------------------------------------------------
# Running a sweep


@dataclass(frozen=True, repr=False)
class SweepResult:
    """What :func:`run_sweep` produced.

    Attributes
    ----------
    spec : SweepSpec
    out : pathlib.Path
        The output directory.
    runs, summary : pandas.DataFrame
        The contents of ``runs.parquet`` and ``summary.parquet``.
    n_new : int
        Runs computed by this call.
    n_reused : int
        Runs of the plan found already stored (with ``resume``).
    """

    spec: SweepSpec
    out: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    n_new: int
    n_reused: int
    files: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        """A few lines: the sweep, where it is, how many runs and settings, the efficient settings
        (the tables are attributes: ``result.runs``, ``result.summary``)."""
        s = self.summary
        efficient = int(s["efficient"].sum()) if "efficient" in s else 0
        return (
            f"SweepResult({self.spec.name!r} in {str(self.out)!r}:\n"
            f"  {len(self.runs)} runs ({self.n_new} new, {self.n_reused} reused) of {len(s)} settings "
            f"x {len(self.spec.seeds)} seeds; {efficient} setting(s) on the efficient frontier of "
            f"{self.spec.pnl_metric} against {self.spec.risk_metric})"
        )


class _WriteError(OSError):
    """A file of the sweep that could not be written: ``"<path>: cannot write (<reason>)"``."""


def _write_error(path: Path, exc: OSError) -> OSError:
    """``exc`` as an OSError whose message names ``path`` (unchanged if it already names one)."""
    if isinstance(exc, _WriteError):
        return exc
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    return _WriteError(exc.errno, f"{path}: cannot write ({reason})")


@contextmanager
def _store(path: Path, *, text: bool) -> Iterator[Any]:
    """:func:`optmm._io.atomic_target`, a failure (a full disk) raised as an OSError naming ``path``."""
    try:
        with atomic_target(path, text=text) as fh:
            yield fh
    except _WriteError:
        raise
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _store_tables(tables: Mapping[Path, pd.DataFrame]) -> None:
    """Write every table to its temporary file and to disk, then rename them into place, in reverse
    order of ``tables`` (the last first): a failed write replaces none of them."""
    with ExitStack() as stack:
        for path, table in tables.items():
            fh = stack.enter_context(_store(path, text=False))
            try:
                table.to_parquet(fh, index=False)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise _write_error(path, exc) from exc


def _prepare_out(out: Path, resume: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out}: the output directory is not empty")
    parts = out / PARTS_DIR
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(parts, exc) from exc
    for stale in parts.glob(".part-*.tmp"):  # left by a process killed while writing a part
        stale.unlink(missing_ok=True)
    for name in (RUNS_FILE, SUMMARY_FILE, FRONTIER_FILE, MANIFEST_FILE):  # ... or a table
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    return parts


def _write_manifest(
    out: Path, spec: SweepSpec, file_hash: str, settings: Sequence[Mapping[str, Any]], hashes: Sequence[str]
) -> None:
    from optmm import __version__

    doc = {
        "name": spec.name,
        "source": spec.source,
        "base": str(spec.base),
        "base_config_hash": file_hash,
        "overrides": dict(spec.overrides),
        "seeds": list(spec.seeds),
        "grid": dict(spec.grid),
        "metrics": {"pnl": spec.pnl_metric, "risk": spec.risk_metric},
        "settings": [
            {"setting": i, "config_hash": h, "overrides": dict(s)}
            for i, (s, h) in enumerate(zip(settings, hashes, strict=True))
        ],
        "optmm_version": __version__,
    }
    with _store(out / MANIFEST_FILE, text=True) as fh:
        fh.write(to_json(doc, indent=2, where="sweep.json") + "\n")


def _check_metrics(spec: SweepSpec, present: Container[str], reported: Iterable[str]) -> None:
    """Refuse a frontier metric of ``spec`` not in ``present``, naming the metrics ``reported``: on the
    first run's metrics (so a sweep fails at once, not after all of them) and on the runs table."""
    for field_name, metric in (("pnl", spec.pnl_metric), ("risk", spec.risk_metric)):
        if field_name == "risk" and metric == PNL_STD:
            continue
        if metric not in present:
            raise ValueError(
                f"{spec.source}: metrics.{field_name} = {metric!r}: not a metric of the runs "
                f"(they report: {', '.join(reported) or 'none'})"
            )


def _failed(
    spec: SweepSpec, run: _Run, settings: Sequence[Mapping[str, Any]], exc: BaseException
) -> SweepError:
    return SweepError(
        f"{spec.name}: the run of setting {run.setting} {dict(settings[run.setting])} with seed {run.seed} "
        f"failed: {type(exc).__name__}: {exc} (the runs stored so far are kept: resume to continue)"
    )


def run_sweep(
    spec: SweepSpec | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    client: Client | None = None,
    run_fn: RunFn | None = None,
    load_config: LoadConfig | None = None,
    resume: bool = False,
    progress: bool | None = None,
    flush_rows: int = 256,
    flush_seconds: float = 2.0,
) -> SweepResult:
    """Run every (setting, seed) of a sweep, store the results, write the tables and the frontier.

    Parameters
    ----------
    spec : SweepSpec or path
        The sweep, or its TOML file.
    out : path
        Output directory (created if missing; see the module docstring for its files).
    client : distributed.Client, optional
        Run each (setting, seed) as a task on this cluster (see :func:`optmm.scaleout.client_for`).
        Default: one after another in this process, no cluster.
    run_fn : callable, optional
        ``run_fn(config, seed) -> dict`` of summary metrics, deterministic in (config, seed).
        Default :func:`optmm.sim.run_summary`. Must be importable (or picklable) by the workers.
    load_config : callable, optional
        ``load_config(path) -> config`` with ``with_overrides``, ``content_hash`` and ``to_dict``
        (:class:`SweepConfig`). Default :meth:`optmm.sim.SimConfig.load`.
    resume : bool, default False
        Keep the runs stored in ``out`` and run only the missing ones. Without it a non-empty ``out``
        is refused.
    progress : bool, optional
        A progress bar of finished runs on stderr. Default: when stderr is a terminal.
    flush_rows, flush_seconds
        A part file is written every ``flush_rows`` results or after ``flush_seconds`` (checked as
        results arrive), and on the way out, whatever happens.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        A bad sweep file, base config or grid key (before any run), or a frontier metric the runs
        do not report (after the first run).
    FileExistsError
        ``out`` is not empty and ``resume`` is False.
    SweepError
        A run failed (its exception chained); the runs completed before are stored.
    """
    from tqdm import tqdm

    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.load(spec)
    run_fn = run_fn if run_fn is not None else _default_run_fn()
    load_config = load_config if load_config is not None else _default_load_config()
    if flush_rows < 1 or not flush_seconds >= 0:
        raise ValueError(f"flush_rows must be >= 1 and flush_seconds >= 0, got {flush_rows}, {flush_seconds}")
    file_hash, settings, configs, hashes = _plan(spec, load_config)
    out = Path(out)
    parts_dir = _prepare_out(out, resume)
    _write_manifest(out, spec, file_hash, settings, hashes)

    stored = _read_parts(parts_dir)
    done = set(zip(stored["config_hash"], stored["seed"].astype(int), strict=True))
    todo = [
        _Run(i, seed, h, configs[i])
        for i, h in enumerate(hashes)
        for seed in spec.seeds
        if (h, seed) not in done
    ]
    n_total = len(hashes) * len(spec.seeds)
    n_reused = n_total - len(todo)
    writer = _PartWriter(parts_dir, flush_rows, flush_seconds)
    show = sys.stderr.isatty() if progress is None else progress
    checked = False
    with tqdm(total=n_total, initial=n_reused, desc=spec.name, unit="run", file=sys.stderr,
              disable=not show, dynamic_ncols=True) as bar:  # fmt: skip

        def record(run: _Run, metrics: dict[str, float]) -> None:
            nonlocal checked
            writer.add(run, metrics)
            bar.update(1)
            if not checked:
                checked = True
                _check_metrics(spec, metrics, metrics)

        try:
            if client is None:
                for run in todo:
                    try:
                        metrics = _run_one(run_fn, run.config, run.seed)
                    except Exception as exc:
                        raise _failed(spec, run, settings, exc) from exc
                    record(run, metrics)
            else:
                _run_on_cluster(client, spec, settings, todo, run_fn, record)
        finally:
            writer.flush()

    stored = _read_parts(parts_dir)
    runs = _runs_table(spec, settings, hashes, stored)
    summary = summarize(runs, spec)
    files = {
        "summary": out / SUMMARY_FILE,
        "frontier": out / FRONTIER_FILE,
        "runs": out / RUNS_FILE,
    }
    _store_tables({files["summary"]: summary, files["runs"]: runs})
    try:
        plot_frontier(summary, spec, files["frontier"])
    except OSError as exc:
        raise _write_error(files["frontier"], exc) from exc
    return SweepResult(spec=spec, out=out, runs=runs, summary=summary, n_new=writer.written,
                       n_reused=n_reused, files=files)  # fmt: skip


def _run_on_cluster(
    client: Client,
    spec: SweepSpec,
    settings: Sequence[Mapping[str, Any]],
    todo: Iterable[_Run],
    run_fn: RunFn,
    record: Callable[[_Run, dict[str, float]], None],
) -> None:
    """Submit every run, consume each result once as it completes, cancel what is left on the way out."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    pending: dict[str, tuple[_Run, Any]] = {}
    for run in todo:
        key = f"optmm-sweep-{token}-{run.config_hash[:12]}-{run.seed}"
        pending[key] = (run, client.submit(_run_one, run_fn, run.config, run.seed, key=key))
    try:
        for future in as_completed([f for _, f in pending.values()]):
            run, _ = pending.pop(future.key)
            try:
                metrics = future.result()
            except Exception as exc:
                raise _failed(spec, run, settings, exc) from exc
            future.release()  # a finished run no longer needs the cluster: never recomputed
            record(run, metrics)
    finally:
        if pending:
            client.cancel([f for _, f in pending.values()])
