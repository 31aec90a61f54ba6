"""The output of a simulation run: its directory (tables, summary, config, plots), its summary as text,
and comparison tables of strategies.

A run directory holds

* ``steps.parquet``, ``underlyings.parquet``, ``fills.parquet``, ``hedges.parquet``,
  ``quotes.parquet``: the frames of :class:`~optmm.sim.result.SimResult`, as they are;
* ``summary.json``: the summary (sorted keys, indented, NaN and infinities as ``null``), with the
  configuration's content hash;
* ``config.toml``: the configuration that produced it;
* ``paths.parquet``: one row per path, its total P&L and attribution totals and its fills;
* ``pnl.png``, ``inventory.png``, ``quotes.png``: path 0's P&L attribution, its inventory with the
  controller's layers, and the quotes around fair value in the zoom window; with several paths,
  ``pnl_distribution.png``: the distribution of the paths' total P&L.

``steps.parquet`` and ``underlyings.parquet`` hold path 0's time series only, unless
``per_path_series`` asks for every path's (64 paths of ``calm_day``, a 6.5-hour day at one-second
steps, are 214 MB of them, against 4 MB for path 0).

:func:`write_run` writes all of it or nothing: the files go to a temporary sibling directory that is
renamed into place at the end.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from optmm._config import decimals_to_show, to_json
from optmm._io import save_figure
from optmm._scratch import scratch_dir
from optmm.risk.audit import Layer
from optmm.sim.config import SimConfig
from optmm.sim.markouts import markouts
from optmm.sim.result import ATTRIBUTION, SimResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COMPARE_COLUMNS",
    "FRAMES",
    "PLOTS",
    "compare_table",
    "format_figure",
    "format_markouts",
    "format_summary",
    "format_table",
    "full_summary",
    "horizon_columns",
    "path_totals",
    "plot_inventory",
    "plot_pnl",
    "plot_pnl_distribution",
    "plot_quotes",
    "sharpe_basis",
    "summary_json",
    "write_run",
]

FRAMES = ("steps", "underlyings", "fills", "hedges", "quotes")
"""The frames of a :class:`SimResult`, each written to ``<name>.parquet``."""
PLOTS = ("pnl.png", "inventory.png", "quotes.png")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
"""The quantiles of the paths' total P&L in :func:`full_summary` (keys ``total_pnl_q05`` ...)."""

_LABELS = {
    "spread_capture": "spread capture",
    "delta_pnl": "delta",
    "gamma_pnl": "gamma",
    "vega_pnl": "vega",
    "theta_pnl": "theta",
    "residual_pnl": "residual",
    "hedge_cost": "\N{MINUS SIGN}hedge cost",
}
_LAYER_COLORS = {
    Layer.KILL: "#000000",
    Layer.TOXIC: "#7b3294",
    Layer.STALE: "#878787",
    Layer.HARD: "#d7191c",
    Layer.SOFT: "#fdae61",
}
_MAX_QUOTE_PANELS = 4


# --------------------------------------------------------------------------------------------------
# the run directory


def write_run(
    result: SimResult,
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    per_path_series: bool = False,
) -> Path:
    """Write a run directory (see the module docstring for its contents), atomically.

    Parameters
    ----------
    result : SimResult
    out_dir : str or path-like
        The directory to create. Its parent is created if missing.
    overwrite : bool, default False
        Replace ``out_dir`` if it exists and is not empty.
    extra_files : mapping of str to path, optional
        Files copied into the run directory under the given names before it is put in place (the
        simulator's audit trail, ``audit.sqlite``).
    per_path_series : bool, default False
        Write every path's rows of ``steps`` and ``underlyings``; by default path 0's only (the
        per-path totals are in ``paths.parquet`` either way).

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    FileExistsError
        ``out_dir`` exists and is not an empty directory, and ``overwrite`` is False; or it exists
        and is not a directory (whatever ``overwrite``).
    ValueError
        The summary's ``config_hash`` is not the configuration's.

    Notes
    -----
    Everything is written into a temporary directory beside ``out_dir`` (same parent, so the final
    rename is atomic), each file flushed to disk, then the directory is renamed to ``out_dir``. With
    ``overwrite`` the old directory is first renamed aside, then deleted once the new one is in
    place (and renamed back if that fails). On any error the temporary directory is removed and
    ``out_dir`` is left as it was. A summary without ``config_hash`` gets the configuration's.
    """
    out = Path(os.path.abspath(out_dir))
    _check_target(out, overwrite=overwrite)
    summary = full_summary(result)
    config_hash = result.config.content_hash
    if summary.setdefault("config_hash", config_hash) != config_hash:
        got = summary["config_hash"]
        raise ValueError(f"summary.config_hash = {got!r} is not the configuration's hash {config_hash!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out.parent, out.name)  # named after this process: see optmm._scratch
    try:
        for name in FRAMES:
            df = getattr(result, name)
            if name in ("steps", "underlyings") and not per_path_series and "path" in df.columns:
                df = df[df["path"] == df["path"].min()] if len(df) else df
            _write_frame(df, tmp / f"{name}.parquet")
        _write_frame(path_totals(result), tmp / "paths.parquet")
        _write_text(tmp / "summary.json", summary_json(summary))
        _write_text(tmp / "config.toml", result.config.to_toml())
        plot_pnl(result, tmp / "pnl.png")
        plot_inventory(result, tmp / "inventory.png")
        plot_quotes(result, tmp / "quotes.png")
        if "path" in result.steps.columns and result.steps["path"].nunique() > 1:
            plot_pnl_distribution({result.strategy: result}, tmp / "pnl_distribution.png")
        for name, src in (extra_files or {}).items():
            if Path(name).name != name or name in {f.name for f in tmp.iterdir()}:
                raise ValueError(f"extra_files: {name!r} must be a new plain file name in the run directory")
            shutil.copyfile(src, tmp / name)
        for f in tmp.iterdir():
            _fsync(f)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0o700
        install_dir(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    return out


def _check_target(out: Path, *, overwrite: bool) -> None:
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if not overwrite and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty (pass overwrite=True to replace it)")


def install_dir(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename the finished directory ``tmp`` (a sibling of ``out``) to ``out``; an existing ``out`` is
    removed (empty) or, with ``overwrite``, set aside and deleted once the new one is in place.

    Raises FileExistsError when ``out`` exists and is not an empty directory and not ``overwrite``."""
    _check_target(out, overwrite=overwrite)  # again: the files took a while
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if not any(out.iterdir()):
        if os.path.islink(out):
            os.unlink(out)
        else:
            os.rmdir(out)
        os.rename(tmp, out)
        return
    aside = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(aside, out)
        raise
    if os.path.islink(aside):  # out was a link to a directory: drop the link, not its target
        os.unlink(aside)
    else:
        shutil.rmtree(aside, ignore_errors=True)


def _write_frame(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse
        pass
    finally:
        os.close(fd)


def summary_json(summary: Mapping[str, Any]) -> str:
    """``summary`` as JSON text (sorted keys, indented, every float in full, NaN and infinities as
    ``null``): ``summary.json`` and ``optmm simulate --format json``."""
    return to_json(summary, sort_keys=True, indent=2, where="summary") + "\n"


def path_totals(result: SimResult) -> pd.DataFrame:
    """One row per path: ``path``, ``total_pnl`` and the :data:`ATTRIBUTION` totals (currency), and
    ``fills`` (``paths.parquet``; sorted by path)."""
    steps = result.steps
    if steps.empty or "path" not in steps.columns:
        return pd.DataFrame(
            {"path": np.zeros(0, np.int64), "total_pnl": np.zeros(0), "fills": np.zeros(0, np.int64)}
        )
    g = steps.groupby("path", sort=True)
    out = pd.DataFrame({"total_pnl": g["pnl"].sum()})
    for c in ATTRIBUTION:
        out[c] = g[c].sum()
    n = result.fills.groupby("path").size() if "path" in result.fills.columns else pd.Series(dtype=np.int64)
    out["fills"] = n.reindex(out.index, fill_value=0).astype(np.int64)
    return out.reset_index()


def full_summary(result: SimResult) -> dict[str, Any]:
    """The run's summary with what the report adds to it: ``summary.json`` and ``optmm simulate``.

    Added keys: ``total_pnl_q05``, ``total_pnl_q25``, ``total_pnl_q50``, ``total_pnl_q75``,
    ``total_pnl_q95``, the quantiles of the paths' total P&L (null for one path, as the standard
    deviation); ``adverse_by_horizon``, the rows of :func:`optmm.sim.markouts.markouts` (the fraction
    of fills after which the mid moved against us, and the markout P&L, at each horizon); and from
    its row at the run's ``markout_s``, ``adverse_rate_mid`` and ``adverse_rate_underlying``.
    """
    out = dict(result.summary)
    totals = path_totals(result)["total_pnl"].to_numpy(dtype=float)
    qs = np.quantile(totals, QUANTILES) if totals.size > 1 else np.full(len(QUANTILES), math.nan)
    for q, v in zip(QUANTILES, qs, strict=True):
        out[f"total_pnl_q{round(q * 100):02d}"] = float(v)
    if not isinstance(result.config, SimConfig):  # a hand-made result: no model to mark the fills with
        return out
    mk = markouts(result)
    out["adverse_by_horizon"] = mk.to_dict(orient="records")
    at = mk[np.isclose(mk["horizon_s"], float(result.config.sim.markout_s))]
    for key in ("adverse_rate_mid", "adverse_rate_underlying"):
        out[key] = float(at[key].iloc[0]) if len(at) else math.nan
    return out


# --------------------------------------------------------------------------------------------------
# plots


def _figure(nrows: int, height: float, *, hspace: float = 0.15) -> Figure:
    """An 11 in wide figure of ``nrows`` stacked panels sharing x, on the Agg canvas (no backend
    switch), with room on the right for legends (:func:`_legend`).

    Fixed margins in inches instead of ``tight_layout``, which would measure every label first (a
    third of the plotting time); the tick labels here are short (ScalarFormatter offsets large ones).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots(nrows, 1, sharex=True, squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.84, bottom=0.6 / height, top=1.0 - 0.45 / height, hspace=hspace)
    return fig


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend in the right margin, beside ``ax``'s top (it never hides the data)."""
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0.0, **kwargs
    )


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    return save_figure(fig, path)


def _nothing(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _first_path(df: pd.DataFrame, columns: Sequence[str]) -> tuple[int | None, pd.DataFrame]:
    """The lowest path's rows of ``df`` sorted by step (``(None, empty)`` if there are none or a
    needed column is missing)."""
    if df.empty or not {"path", "step", *columns} <= set(df.columns):
        return None, df.iloc[0:0]
    p = int(df["path"].min())
    return p, df[df["path"] == p].sort_values("step", kind="stable")


def _time_unit(times_s: np.ndarray) -> tuple[str, float]:
    """The unit of a time axis spanning ``times_s``: seconds under two minutes, minutes under two
    hours, else hours; and its length in seconds."""
    span = float(np.max(times_s) - np.min(times_s)) if times_s.size else 0.0
    return ("seconds", 1.0) if span < 120.0 else ("minutes", 60.0) if span < 7200.0 else ("hours", 3600.0)


def _money_axis(ax: Axes) -> None:
    """Thousands separators on the y axis (20,000 rather than 20000), small values as they are."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v + 0.0:,.6g}"))


_Level = tuple[float, str, str, str, bool]
"""A limit line: level, label, color, line style, and whether it is drawn at minus the level too."""


def _limit_lines(ax: Axes, levels: Sequence[_Level], data_max: float) -> None:
    """Lines at each ``level`` (and at minus it if ``both``) within reach of the data (at most three
    times its largest magnitude, so that the data stays readable); the others listed in the right
    margin, under the legend, as off the scale."""
    off = []
    for level, label, color, ls, both in levels:
        if abs(level) <= 3.0 * data_max:
            ax.axhline(level, color=color, ls=ls, lw=1.0, label=label)
            if both:
                ax.axhline(-level, color=color, ls=ls, lw=1.0)
        else:
            off.append(f"{label} {chr(0xB1) if both else ''}{level:,.6g}")
    if off:
        ax.text(1.01, 0.0, "off the scale:\n" + "\n".join(off), transform=ax.transAxes, ha="left",
                va="bottom", fontsize=7, color="0.3")  # fmt: skip


def _bins(n: int, max_bins: int) -> np.ndarray:
    """Starts of consecutive bins of equal whole numbers of steps (the last one shorter) covering
    ``n`` steps in at most ``max_bins`` bins."""
    return np.arange(0, n, -(-n // max_bins))


def _dense_line(ax: Axes, x_t: np.ndarray, y: np.ndarray, dt_s: float, *, color: str) -> None:
    """``y`` against the times ``x_t``; more than 600 points are shown per bin of steps as their
    range (a band) and their mean (a line), which a plain line of second-by-second swings would hide
    in a solid block of ink."""
    if y.size <= 600:
        ax.plot(x_t, y, color=color, lw=1.2, drawstyle="steps-post")  # held from one step to the next
        return
    starts = _bins(y.size, 200)
    width = int(starts[1] - starts[0])
    counts = np.diff(np.append(starts, y.size))
    x = np.append(x_t[starts], x_t[-1] + (x_t[1] - x_t[0]))
    lo, hi = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    mean = np.add.reduceat(y, starts) / counts
    span = f"{width * dt_s:,.6g} s"
    ax.fill_between(x, np.append(lo, lo[-1]), np.append(hi, hi[-1]), step="post", color=color, alpha=0.25,
                    lw=0, label=f"range per {span}")  # fmt: skip
    ax.step(x, np.append(mean, mean[-1]), where="post", color=color, lw=1.2, label=f"mean per {span}")


def plot_pnl(result: SimResult, path: str | os.PathLike[str]) -> Path:
    """A figure of path 0's cumulative P&L and its cumulative attribution components against time,
    and with several paths a second panel of every path's cumulative P&L: the median, the 25-75% and
    5-95% bands across paths at each time, the mean, and each path as a thin line (up to 50 paths).

    The components are ``spread_capture``, ``delta_pnl``, ``gamma_pnl``, ``vega_pnl``,
    ``theta_pnl``, ``residual_pnl`` and ``-hedge_cost``: they add up to the total at every time. The
    kill switch's daily-loss level of the run's limits is drawn on the paths' panel (or named, when
    far off the scale). PNG, PDF or SVG by ``path``'s extension, written atomically; an empty
    ``steps`` frame gives a figure that says so.
    """
    steps = result.steps
    n_paths = int(steps["path"].nunique()) if "path" in steps.columns else 0
    fig = _figure(2 if n_paths > 1 else 1, 8.5 if n_paths > 1 else 5.0, hspace=0.25)
    ax = fig.axes[0]
    p, s = _first_path(steps, ["time_s", "cum_pnl", *ATTRIBUTION])
    unit, scale = _time_unit(s["time_s"].to_numpy(dtype=float) if p is not None else np.zeros(0))
    if p is None:
        _nothing(ax, "no steps")
    else:
        hours = s["time_s"].to_numpy(dtype=float) / scale
        for c in ATTRIBUTION:
            y = np.cumsum(s[c].to_numpy(dtype=float))
            ax.plot(hours, -y if c == "hedge_cost" else y, lw=1.2, label=_LABELS[c])
        ax.plot(hours, s["cum_pnl"].to_numpy(dtype=float), color="black", lw=2.2, label="total")
        ax.axhline(0.0, color="0.6", lw=0.6)
        _legend(ax)
    ax.set_ylabel("cumulative P&L")
    _money_axis(ax)
    ax.set_title(f"P&L attribution, path {p if p is not None else 0} ({result.strategy})")
    if p is not None and n_paths > 1:
        _plot_paths(fig.axes[1], result, n_paths, scale)
    fig.axes[-1].set_xlabel(f"time ({unit})")
    return _save(fig, path)


def _plot_paths(ax: Axes, result: SimResult, n_paths: int, scale: float) -> None:
    """Every path's cumulative P&L: quantile bands across paths, median, mean, thin lines (<= 50)."""
    s = result.steps.sort_values(["path", "step"], kind="stable")
    cum = s["cum_pnl"].to_numpy(dtype=float)
    n_steps = cum.size // n_paths
    if n_steps * n_paths != cum.size:  # ragged paths: no bands
        _nothing(ax, "paths of different lengths")
        return
    cum = cum.reshape(n_paths, n_steps)
    hours = s["time_s"].to_numpy(dtype=float)[:n_steps] / scale
    if n_paths <= 50:
        for row in cum:
            ax.plot(hours, row, color="tab:blue", lw=0.5, alpha=0.35)
    q05, q25, q50, q75, q95 = np.quantile(cum, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(hours, q05, q95, color="tab:blue", alpha=0.15, lw=0, label="5-95% of paths")
    ax.fill_between(hours, q25, q75, color="tab:blue", alpha=0.3, lw=0, label="25-75% of paths")
    ax.plot(hours, q50, color="tab:blue", lw=2.0, label="median")
    ax.plot(hours, cum.mean(axis=0), color="black", lw=1.2, ls="--", label="mean")
    ax.axhline(0.0, color="0.6", lw=0.6)
    limits = getattr(result.config, "limits", None)
    levels = [
        (-lim.hard, "kill: daily loss", "black", ":", False)
        for lim in (limits.limits if limits is not None else ())
        if lim.metric.value == "daily_loss"
    ]
    _limit_lines(ax, levels, float(np.max(np.abs(cum))) if cum.size else 0.0)
    ax.set_ylabel("cumulative P&L")
    _money_axis(ax)
    ax.set_title(f"Cumulative P&L of the {n_paths} paths", fontsize=10)
    _legend(ax)


def _layer_shading(
    times: np.ndarray, codes: np.ndarray, width: float, *, max_bins: int = 1000
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Step edges ``x`` and, for each non-NORMAL layer code present, a 0/1 step function over them
    (for ``fill_between(..., step="post")``: one artist per layer, however often the layer flickers).

    Step ``i`` covers ``[times[i], times[i + 1])``, the last one ``width`` long. More than
    ``max_bins`` steps are first merged into ``max_bins`` consecutive bins, each with its most severe
    layer (a bin is under a pixel wide: drawing every step would cost seconds and show nothing
    more). The functions have the length of ``x``, their last value repeated.
    """
    if times.size == 0:
        return times, {}
    end = times[-1] + width
    if times.size > max_bins:
        starts = np.flatnonzero(np.diff((np.arange(times.size) * max_bins) // times.size, prepend=-1))
        codes = np.minimum.reduceat(codes, starts)
        times = times[starts]
    x = np.append(times, end)
    shading = {}
    for code in np.unique(codes):
        if code != int(Layer.NORMAL):
            on = (codes == code).astype(float)
            shading[int(code)] = np.append(on, on[-1])
    return x, shading


def _worst_layers(unds: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and the most severe layer code over the underlyings at each step of the frame."""
    names = unds["layer"].astype(str)
    unknown = sorted(set(names.unique()) - set(Layer.__members__))
    if unknown:
        raise ValueError(
            f"underlyings.layer: unknown layer {unknown[0]!r} (expected one of {list(Layer.__members__)})"
        )
    codes = names.map({name: int(layer) for name, layer in Layer.__members__.items()})
    by_step = pd.DataFrame(
        {"step": unds["step"].to_numpy(), "time_s": unds["time_s"].to_numpy(), "code": codes}
    )
    g = by_step.groupby("step", sort=True).agg(time_s=("time_s", "first"), code=("code", "min"))
    return g["time_s"].to_numpy(dtype=float), g["code"].to_numpy(dtype=np.int64)


def _inventory_limits(result: SimResult, metric: str) -> list[_Level]:
    """The hard and soft levels (drawn at both signs) of the run's limits on ``metric`` that bound the book's
    figure: book-wide ones, and with a single underlying those of every underlying or of that one."""
    limits = getattr(result.config, "limits", None)
    if limits is None:
        return []
    names = pd.unique(result.underlyings["underlying"]) if "underlying" in result.underlyings else []
    one = str(names[0]) if len(names) == 1 else None
    levels: list[_Level] = []
    for lim in limits.limits:
        scope = lim.scope.value
        if lim.metric.value != metric:
            continue
        if scope == "book" or (scope == "underlying" and one is not None and lim.underlying in (None, one)):
            where = "book" if scope == "book" else (lim.underlying or one)
            for level, kind, color, ls in (
                (lim.hard, "hard", "#d7191c", "--"),
                (lim.soft, "soft", "#fdae61", ":"),
            ):
                if level is not None and math.isfinite(level):
                    levels.append((level, f"{kind} limit ({where})", color, ls, True))
    return levels


def plot_inventory(result: SimResult, path: str | os.PathLike[str]) -> Path:
    """A figure of path 0's book delta (shares), gamma ($ per 1%) and vega (per vol point) against
    time, in three stacked panels, with the steps where any underlying is not in the NORMAL layer
    shaded by the most severe layer among them (KILL, TOXIC, STALE, HARD, SOFT), and the run's hard
    and soft limits on each figure as dashed and dotted lines (:func:`_inventory_limits`; named in a
    note when far off the scale). Over 600 steps a panel shows the range and the mean of each bin of
    steps rather than a line through every step. PNG, PDF or SVG by ``path``'s extension, written
    atomically.
    """
    from matplotlib.patches import Patch

    fig = _figure(3, 8.5, hspace=0.2)
    axes = fig.axes
    cols = (
        ("delta_shares", "delta (shares)"),
        ("gamma_dollars_1pct", "gamma ($ per 1%)"),
        ("vega_per_vol_point", "vega (per vol pt)"),
    )
    p, s = _first_path(result.steps, ["time_s", *(c for c, _ in cols)])
    unit, scale = _time_unit(s["time_s"].to_numpy(dtype=float) if p is not None else np.zeros(0))
    if p is None:
        _nothing(axes[0], "no steps")
    else:
        hours = s["time_s"].to_numpy(dtype=float) / scale
        dt_s = float(np.median(np.diff(s["time_s"].to_numpy(dtype=float)))) if len(s) > 1 else 0.0
        for ax, (c, _) in zip(axes, cols, strict=True):
            y = s[c].to_numpy(dtype=float)
            _dense_line(ax, hours, y, dt_s, color="tab:blue")
            ax.axhline(0.0, color="0.6", lw=0.6)
            finite = np.abs(y[np.isfinite(y)])
            _limit_lines(ax, _inventory_limits(result, c), float(finite.max()) if finite.size else 0.0)
    for ax, (_, label) in zip(axes, cols, strict=True):
        ax.set_ylabel(label)
        _money_axis(ax)
    pu, u = _first_path(result.underlyings, ["time_s", "layer"])
    shading: dict[int, np.ndarray] = {}
    if pu is not None:
        times, codes = _worst_layers(u)
        width = float(np.median(np.diff(times))) if times.size > 1 else 0.0
        x, shading = _layer_shading(times, codes, width)
        for code, on in shading.items():
            for ax in axes:
                ax.fill_between(
                    x / scale, 0.0, on, step="post", transform=ax.get_xaxis_transform(),
                    color=_LAYER_COLORS[Layer(code)], alpha=0.25, lw=0,
                )  # fmt: skip
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        keep = [(h, lab) for h, lab in zip(handles, labels, strict=True) if lab and not lab.startswith("_")]
        if ax is axes[0] and shading:
            keep += [
                (Patch(color=_LAYER_COLORS[Layer(c)], alpha=0.25), f"layer {Layer(c).name}") for c in shading
            ]
        if keep:
            _legend(ax, handles=[h for h, _ in keep], labels=[lab for _, lab in keep])
    axes[-1].set_xlabel(f"time ({unit})")
    axes[0].set_title(f"Inventory, path {p if p is not None else 0} ({result.strategy})")
    return _save(fig, path)


def _quote_contracts(quotes: pd.DataFrame, fills: pd.DataFrame) -> list[int]:
    """Up to 4 contracts of the quotes frame: those with the most fills of path 0 in the window (ties
    by contract number), then the lowest-numbered others."""
    contracts = sorted(int(c) for c in pd.unique(quotes["contract"]))
    ranked: list[int] = []
    window = _window_fills(quotes, fills)
    if not window.empty:
        counts = window.groupby("contract").size()
        ranked = sorted((int(c) for c in counts.index), key=lambda c: (-int(counts[c]), c))
    rest = [c for c in contracts if c not in set(ranked)]
    return (ranked + rest)[:_MAX_QUOTE_PANELS]


def _window_fills(quotes: pd.DataFrame, fills: pd.DataFrame) -> pd.DataFrame:
    """The fills of path 0 (the quotes' path) on the quoted contracts within the window's steps."""
    need = {"path", "step", "time_s", "contract", "side", "price"}
    if quotes.empty or fills.empty or not need <= set(fills.columns):
        return fills.iloc[0:0]
    lo, hi = quotes["step"].min(), quotes["step"].max()
    keep = (
        (fills["path"] == fills["path"].min())
        & fills["step"].between(lo, hi)
        & fills["contract"].isin(pd.unique(quotes["contract"]))
    )
    return fills[keep]


def _contract_title(c: int, fills: pd.DataFrame) -> str:
    rows = fills[fills["contract"] == c] if "contract" in fills.columns else fills.iloc[0:0]
    if rows.empty or not {"kind", "strike", "expiry_days"} <= set(rows.columns):
        return f"contract {c}"
    r = rows.iloc[0]
    return f"contract {c}: {r['kind']} {float(r['strike']):g}, {float(r['expiry_days']):g} days"


def plot_quotes(result: SimResult, path: str | os.PathLike[str]) -> Path:
    """PNG of the quotes of the zoom window: one panel per contract (up to 4, those with most fills
    in the window, else the first), fair value as a line, bid and ask as step lines (gaps where
    there is no quote), the fills as markers (buy: up triangle, sell: down triangle). The time axis
    is in seconds for a window under two minutes, minutes under two hours, else hours. PNG, PDF or
    SVG by ``path``'s extension, written atomically.
    """
    q = result.quotes
    need = {"step", "time_s", "contract", "fair", "bid", "ask"}
    if q.empty or not need <= set(q.columns):
        fig = _figure(1, 3.0)
        _nothing(fig.axes[0], "no quotes in the zoom window")
        fig.axes[0].set_title(f"Quotes ({result.strategy})")
        return _save(fig, path)
    chosen = _quote_contracts(q, result.fills)
    fills = _window_fills(q, result.fills)
    unit, scale = _time_unit(q["time_s"].to_numpy(dtype=float))
    fig = _figure(len(chosen), 2.4 * len(chosen) + 0.9, hspace=0.35)
    for ax, c in zip(fig.axes, chosen, strict=True):
        qc = q[q["contract"] == c].sort_values("step", kind="stable")
        x = qc["time_s"].to_numpy(dtype=float) / scale
        ax.plot(x, qc["fair"].to_numpy(dtype=float), color="black", lw=1.2, label="fair value")
        ax.step(x, qc["bid"].to_numpy(dtype=float), where="post", color="tab:green", lw=1.0, label="bid")
        ax.step(x, qc["ask"].to_numpy(dtype=float), where="post", color="tab:red", lw=1.0, label="ask")
        fc = fills[fills["contract"] == c]
        for side, marker, color, label in ((1, "^", "tab:green", "we buy"), (-1, "v", "tab:red", "we sell")):
            f = fc[np.sign(fc["side"].to_numpy(dtype=float)) == side]
            if not f.empty:
                ax.scatter(
                    f["time_s"].to_numpy(dtype=float) / scale,
                    f["price"].to_numpy(dtype=float),
                    marker=marker,
                    color=color,
                    edgecolors="black",
                    linewidths=0.5,
                    s=40,
                    zorder=3,
                    label=label,
                )
        ax.set_title(_contract_title(c, result.fills), fontsize=9)
        ax.set_ylabel("price")
        _legend(ax)
    fig.axes[-1].set_xlabel(f"time ({unit})")
    return _save(fig, path)


def plot_pnl_distribution(results: Mapping[str, SimResult], path: str | os.PathLike[str]) -> Path:
    """The distribution of the paths' total P&L of one or several strategies, side by side: a
    histogram of each (shared bins, outlines, its mean dashed) and a fan of each (the 5-95% and
    25-75% ranges across paths, the median and the mean). PNG, PDF or SVG by ``path``'s extension,
    written atomically; strategies without paths are named as such.

    Parameters
    ----------
    results : mapping of str to SimResult
        A label (a strategy's name) to its result, in the order drawn.
    path : str or path-like
    """
    totals = {str(k): path_totals(r)["total_pnl"].to_numpy(dtype=float) for k, r in results.items()}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(11.0, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax_h, ax_f = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2], "wspace": 0.25})
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.13, top=0.88)
    finite = np.concatenate([t[np.isfinite(t)] for t in totals.values()] or [np.zeros(0)])
    if finite.size == 0:
        _nothing(ax_h, "no paths")
        _nothing(ax_f, "no paths")
        return _save(fig, path)
    lo, hi = float(finite.min()), float(finite.max())
    per = finite.size / max(1, len(totals))  # paths per strategy
    n_bins = int(np.clip(np.ceil(np.sqrt(per)), 5, 40))  # the square-root rule: 8 bins for 64 paths
    bins = np.linspace(lo, hi, n_bins + 1) if hi > lo else n_bins
    colors = [f"C{j}" for j in range(len(totals))]
    for j, (label, t) in enumerate(totals.items()):
        t = t[np.isfinite(t)]
        if t.size == 0:
            continue
        ax_h.hist(t, bins=bins, histtype="step", lw=1.6, color=colors[j], label=f"{label} ({t.size} paths)")
        ax_h.axvline(float(t.mean()), color=colors[j], ls="--", lw=1.0)
        q05, q25, q50, q75, q95 = np.quantile(t, QUANTILES)
        ax_f.vlines(j, q05, q95, color=colors[j], lw=2.0, alpha=0.5)
        ax_f.vlines(j, q25, q75, color=colors[j], lw=8.0, alpha=0.7)
        ax_f.scatter(
            [j], [q50], color="white", edgecolors="black", zorder=3, s=30, label="median" if j == 0 else None
        )
        ax_f.scatter(
            [j],
            [float(t.mean())],
            marker="x",
            color="black",
            zorder=3,
            s=30,
            label="mean" if j == 0 else None,
        )
    ax_h.set_xlabel("total P&L of a path")
    ax_h.set_ylabel("paths")
    ax_h.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v + 0.0:,.6g}"))
    ax_h.legend(fontsize=8, frameon=False)
    ax_h.set_title("Total P&L over paths (dashed: mean)", fontsize=10)
    ax_f.set_xticks(range(len(totals)), list(totals), fontsize=8, rotation=15)
    ax_f.set_xlim(-0.6, len(totals) - 0.4)
    _money_axis(ax_f)
    ax_f.legend(fontsize=8, frameon=False)
    ax_f.set_title("5-95% (thin), 25-75% (thick) of paths", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# comparison tables

COMPARE_COLUMNS = (
    "total_pnl_mean",
    "total_pnl_std",
    "sharpe",
    "total_pnl_q05",
    "total_pnl_q50",
    "total_pnl_q95",
    *ATTRIBUTION,
    "markout_total",
    "max_abs_delta_shares",
    "mean_abs_delta_shares",
    "max_abs_vega_per_vol_point",
    "fill_rate",
    "fill_price_markout_loss_rate",
    "pulls",
    "kill_events",
    "time_in_normal",
    "final_inventory_mean",
    "final_inventory_std",
)
"""The columns of :func:`compare_table`: keys of :func:`full_summary`, the attribution totals
(``summary["attribution"]``) and ``time_in_normal`` (``summary["time_in_layer"]["NORMAL"]``); after
``markout_total``, two columns per markout horizon (:func:`horizon_columns`)."""


def horizon_columns(horizon_s: float) -> tuple[str, str]:
    """The :func:`compare_table` columns of one markout horizon: the adverse selection (markout P&L
    minus spread capture) and the fraction of fills the mid moved against, ``h`` seconds on.

    >>> horizon_columns(120.0)
    ('adverse_selection_120s', 'adverse_rate_mid_120s')
    """
    return f"adverse_selection_{horizon_s:g}s", f"adverse_rate_mid_{horizon_s:g}s"


_KINDS: dict[str, str] = {
    "total_pnl_mean": "money",
    "total_pnl_std": "money",
    "sharpe": "ratio",
    **dict.fromkeys(ATTRIBUTION, "money"),
    "max_abs_delta_shares": "amount",
    "mean_abs_delta_shares": "amount",
    "max_abs_vega_per_vol_point": "amount",
    "fill_rate": "percent2",
    "fill_price_markout_loss_rate": "percent",
    "total_pnl_q05": "money",
    "total_pnl_q50": "money",
    "total_pnl_q95": "money",
    "markout_total": "money",
    "pulls": "count",
    "kill_events": "count",
    "time_in_normal": "percent",
    "final_inventory_mean": "amount",
    "final_inventory_std": "amount",
}
_TITLES = {
    "total_pnl_mean": "total P&L, mean",
    "total_pnl_std": "total P&L, std",
    "sharpe": "Sharpe",
    "spread_capture": "spread capture",
    "delta_pnl": "delta P&L",
    "gamma_pnl": "gamma P&L",
    "vega_pnl": "vega P&L",
    "theta_pnl": "theta P&L",
    "residual_pnl": "residual P&L",
    "hedge_cost": "hedge cost",
    "max_abs_delta_shares": "max |delta| (shares)",
    "mean_abs_delta_shares": "mean |delta| (shares)",
    "max_abs_vega_per_vol_point": "max |vega| (per vol pt)",
    "fill_rate": "fill rate",
    "fill_price_markout_loss_rate": "fills marked out below their price",
    "total_pnl_q05": "total P&L, 5% of paths",
    "total_pnl_q50": "total P&L, median",
    "total_pnl_q95": "total P&L, 95% of paths",
    "markout_total": "markout P&L",
    "pulls": "pulls",
    "kill_events": "kill events",
    "time_in_normal": "time in NORMAL",
    "final_inventory_mean": "final inventory, mean",
    "final_inventory_std": "final inventory, std",
}


def _title_kind(col: str) -> tuple[str, str]:
    """A compare-table column's row title and figure kind (a markout horizon's columns included;
    unknown columns keep their name and are formatted as amounts)."""
    for prefix, title, kind in (
        ("adverse_selection_", "adverse selection at {} (markout - spread)", "money"),
        ("adverse_rate_mid_", "fills the mid moved against at {}", "percent"),
    ):
        rest = col.removeprefix(prefix)
        if rest != col and rest.endswith("s") and rest[:-1].replace(".", "", 1).isdigit():
            return title.format(f"{rest[:-1]} s"), kind
    return _TITLES.get(col, col), _KINDS.get(col, "auto")


def _number(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def compare_table(results: Mapping[str, SimResult]) -> pd.DataFrame:
    """One row per strategy, the columns :data:`COMPARE_COLUMNS` and those of each markout horizon of
    the results (:func:`horizon_columns`, after ``markout_total``), from each result's
    :func:`full_summary`.

    Parameters
    ----------
    results : mapping of str to SimResult
        The row label (a strategy's name) to its result; rows keep the mapping's order.

    Returns
    -------
    DataFrame
        Indexed by ``strategy``, float64 columns; the attribution columns are the totals of a path,
        mean over paths; the markout columns at the run's ``markout_s``; a key missing from a summary
        (or null) gives NaN.
        ``attrs["sharpe_basis"]``: what the Sharpe ratios are ratios of (:func:`sharpe_basis`), when
        the results share it.
    """
    rows = []
    summaries = [full_summary(r) for r in results.values()]
    hs = sorted({float(m["horizon_s"]) for s in summaries for m in s.get("adverse_by_horizon", [])})
    cut = COMPARE_COLUMNS.index("markout_total") + 1
    columns = [*COMPARE_COLUMNS[:cut], *(c for h in hs for c in horizon_columns(h)), *COMPARE_COLUMNS[cut:]]
    for s in summaries:
        attribution = s.get("attribution") or {}
        layers = s.get("time_in_layer") or {}
        row = {}
        for m in s.get("adverse_by_horizon", []):
            a, r = horizon_columns(float(m["horizon_s"]))
            row[a], row[r] = _number(m["adverse_selection"]), _number(m["adverse_rate_mid"])
        for col in COMPARE_COLUMNS:
            if col in ATTRIBUTION:
                row[col] = _number(attribution.get(col))
            elif col == "time_in_normal":
                row[col] = _number(layers.get("NORMAL"))
            else:
                row[col] = _number(s.get(col))
        rows.append(row)
    index = pd.Index([str(k) for k in results], name="strategy")
    df = pd.DataFrame(rows, index=index, columns=columns, dtype=np.float64)
    bases = {
        sharpe_basis(r.summary) for r in results.values() if {"paths", "steps", "dt_s"} <= r.summary.keys()
    }
    if len(bases) == 1:
        df.attrs["sharpe_basis"] = bases.pop()
    return df


def _format_row(values: np.ndarray, kind: str) -> list[str]:
    """The cells of one metric across strategies: a precision shared by the row, enough to show its
    smallest non-zero value; NaN is ``n/a``."""
    finite = values[np.isfinite(values)]
    big = finite.size > 0 and float(np.max(np.abs(finite))) >= 1000.0
    if kind == "count":
        fmt = "{:,.0f}"
    elif kind in ("percent", "percent2"):
        fmt = f"{{:.{decimals_to_show(values * 100.0, 2, 1 if kind == 'percent' else 2)}f}}%"
        values = values * 100.0
    elif kind == "ratio" or kind == "seconds":
        fmt = f"{{:.{decimals_to_show(values, 2, 2)}f}}"
    else:  # money, amount, auto
        fmt = "{:,.0f}" if big else f"{{:,.{decimals_to_show(values, 2, 2)}f}}"
    cells = [fmt.format(v) if math.isfinite(v) else "n/a" for v in values]
    return [c[1:] if c.startswith("-") and not c.strip("-0.,%") else c for c in cells]  # no "-0.00"


def format_figure(value: Any, kind: str) -> str:
    """One figure as :func:`format_table` prints it: ``kind`` is ``"money"``, ``"amount"``,
    ``"ratio"``, ``"percent"`` (one decimal), ``"percent2"`` (two), ``"count"`` or ``"seconds"``;
    NaN, None or a missing value is ``n/a``.

    Examples
    --------
    >>> format_figure(0.0016, "percent2"), format_figure(0.00004, "percent"), format_figure(None, "money")
    ('0.16%', '0.0040%', 'n/a')
    """
    return _format_row(np.array([_number(value)]), kind)[0]


def sharpe_basis(summary: Mapping[str, Any]) -> str:
    """What the summary's Sharpe ratio is a ratio of, for its label: ``"per 6.5-h path, not
    annualised"`` over several paths, ``"daily, not annualised"`` for one path of two trading days or
    more, ``"n/a: needs two paths or two days"`` otherwise (the engine's rule,
    :func:`optmm.sim.engine._summary`).

    Examples
    --------
    >>> sharpe_basis({"paths": 1000, "steps": 200, "dt_s": 0.005})
    'per 1-s path, not annualised'
    >>> sharpe_basis({"paths": 1, "steps": 23400, "dt_s": 1.0})
    'n/a: needs two paths or two days'
    """
    from optmm.sim.engine import TRADING_DAY_S

    paths, steps, dt_s = int(summary["paths"]), int(summary["steps"]), float(summary["dt_s"])
    if paths > 1:
        horizon = steps * dt_s
        span = f"{horizon / 3600.0:g}-h" if horizon >= 3600.0 else f"{horizon:g}-s"
        return f"per {span} path, not annualised"
    if steps >= 2 * round(TRADING_DAY_S / dt_s):
        return "daily, not annualised"
    return "n/a: needs two paths or two days"


_SUMMARY_ROWS = (
    ("total_pnl_mean", "total P&L (mean over paths)", "money"),
    ("total_pnl_std", "total P&L (std over paths)", "money"),
    ("pnl_per_day_mean", "P&L per 23,400-s day", "money"),
    ("sharpe", "Sharpe", "ratio"),
    ("fills", "fills", "count"),
    ("fill_rate", "fill rate (fills per quoted side-step)", "percent2"),
    ("total_pnl_q05", "total P&L, 5% of paths", "money"),
    ("total_pnl_q25", "total P&L, 25% of paths", "money"),
    ("total_pnl_q50", "total P&L, median path", "money"),
    ("total_pnl_q75", "total P&L, 75% of paths", "money"),
    ("total_pnl_q95", "total P&L, 95% of paths", "money"),
    ("fill_price_markout_loss_rate", "fills marked out below their price", "percent"),
    ("max_abs_delta_shares", "max |delta| (shares)", "amount"),
    ("mean_abs_delta_shares", "mean |delta| (shares)", "amount"),
    ("max_abs_vega_per_vol_point", "max |vega| (per vol point)", "amount"),
    ("max_abs_gamma_dollars_1pct", "max |gamma| ($ per 1%)", "money"),
    ("pulls", "pulls", "count"),
    ("kill_events", "kill events", "count"),
    ("final_inventory_mean", "final inventory (mean)", "amount"),
    ("final_inventory_std", "final inventory (std)", "amount"),
    ("wall_s", "wall time (s)", "seconds"),
)


def format_summary(summary: Mapping[str, Any]) -> str:
    """A run's summary as text for a person (``optmm simulate``): a headline, one figure a line, the
    attribution, the time in each layer.

    Figures as in :func:`format_table` (a fill rate of 0.16% shows as such, NaN as ``n/a``); the
    Sharpe ratio says what it is a ratio of (:func:`sharpe_basis`). ``--format json``
    (:func:`summary_json`) has every figure in full.
    """
    head = (
        f"strategy {summary['strategy']}: {summary['paths']} path(s) x {summary['steps']} steps of "
        f"{summary['dt_s']:g} s, seed {summary['seed']}, config {str(summary['config_hash'])[:12]}"
    )
    fig = format_figure
    several = int(summary.get("paths") or 0) > 1
    rows = [
        (f"Sharpe ({sharpe_basis(summary)})" if key == "sharpe" else label, fig(summary.get(key), kind))
        for key, label, kind in _SUMMARY_ROWS
        if several or not key.startswith("total_pnl_q")  # quantiles over one path: not shown
    ]
    attribution = [(f"  {k}", fig(v, "money")) for k, v in (summary.get("attribution") or {}).items()]
    width = max(len(label) for label, _ in rows + attribution)
    lines = [head, *(f"  {label:<{width}}  {text:>12}" for label, text in rows)]
    lines.append("  attribution (mean over paths):")
    lines.extend(f"  {label:<{width}}  {text:>12}" for label, text in attribution)
    layers = summary.get("time_in_layer") or {}
    shown = ", ".join(f"{k} {fig(v, 'percent')}" for k, v in layers.items() if v > 0.0)
    lines.append(f"  time in layers: {shown}")
    by_horizon = summary.get("adverse_by_horizon")
    if by_horizon:
        lines.append("  adverse selection by markout horizon (money: mean over paths):")
        lines.extend(f"    {line}" for line in format_markouts(pd.DataFrame(by_horizon)).splitlines())
    return "\n".join(lines)


_MARKOUT_HEADS = (
    ("horizon_s", "horizon", "seconds"),
    ("fills", "fills", "count"),
    ("spread_capture", "spread capture", "money"),
    ("markout_pnl", "markout P&L", "money"),
    ("adverse_selection", "adverse sel.", "money"),
    ("adverse_share_of_spread", "of spread", "percent"),
    ("adverse_rate_mid", "mid against", "percent"),
    ("adverse_rate_underlying", "underlying against", "percent"),
    ("adverse_rate_mid_informed", "informed: mid against", "percent"),
)


def format_markouts(df: pd.DataFrame) -> str:
    """A fixed-width text rendering of :func:`optmm.sim.markouts.markouts`, one line per horizon:
    the markout P&L and its adverse part next to the fractions of fills after which the mid (and the
    underlying, against the fill's delta) moved against us; the informed fills' column only when
    there are some.

    Examples
    --------
    >>> df = pd.DataFrame({"horizon_s": [5.0, 120.0], "fills": [10, 9], "spread_capture": [100.0, 90.0],
    ...                    "markout_pnl": [80.0, -20.0], "adverse_selection": [-20.0, -110.0],
    ...                    "adverse_share_of_spread": [0.2, 1.22], "adverse_rate_mid": [0.5, 0.6],
    ...                    "adverse_rate_underlying": [0.5, 0.7], "informed_fills": [0, 0],
    ...                    "adverse_rate_mid_informed": [float("nan")] * 2})
    >>> print(format_markouts(df))
    horizon  fills  spread capture  markout P&L  adverse sel.  of spread  mid against  underlying against
    -----------------------------------------------------------------------------------------------------
        5 s     10          100.00        80.00        -20.00      20.0%        50.0%               50.0%
      120 s      9           90.00       -20.00       -110.00     122.0%        60.0%               70.0%
    """
    heads = [h for h in _MARKOUT_HEADS if h[0] in df.columns]
    if "informed_fills" in df.columns and not (df["informed_fills"] > 0).any():
        heads = [h for h in heads if h[0] != "adverse_rate_mid_informed"]
    cols = []
    for key, title, kind in heads:
        values = pd.to_numeric(df[key], errors="coerce").to_numpy(dtype=float)
        cells = [f"{v:g} s" for v in values] if kind == "seconds" else _format_row(values, kind)
        cols.append([title, *cells])
    widths = [max(len(c) for c in col) for col in cols]
    lines = [
        "  ".join(col[r].rjust(w) for col, w in zip(cols, widths, strict=True)) for r in range(len(df) + 1)
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def format_table(df: pd.DataFrame) -> str:
    """A fixed-width text rendering of a :func:`compare_table` frame, one line per metric.

    Strategies are the columns (a comparison reads across), metrics the rows, in the frame's column
    order. Money and share amounts get thousands separators (no decimals from 1,000 up, else two),
    rates are percentages (one or two decimals), the Sharpe ratio has two decimals, counts none; a
    row's smallest non-zero figure gets the decimals that show two significant digits of it (up to
    eight); NaN is ``n/a``. The Sharpe row says what it is a ratio of when the frame's
    ``attrs["sharpe_basis"]`` does (:func:`compare_table`). Columns the table does not know are
    formatted like amounts. Every line has the same width.

    Examples
    --------
    >>> df = pd.DataFrame({"total_pnl_mean": [1234567.8, -20.0], "sharpe": [1.234, float("nan")],
    ...                    "time_in_normal": [0.9, 1.0]}, index=pd.Index(["inventory", "symmetric"]))
    >>> print(format_table(df))
    metric           inventory  symmetric
    -------------------------------------
    total P&L, mean  1,234,568        -20
    Sharpe                1.23        n/a
    time in NORMAL       90.0%     100.0%
    """
    header = ["metric", *(str(i) for i in df.index)]
    body = []
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        title, kind = _title_kind(str(col))
        if col == "sharpe" and "sharpe_basis" in df.attrs:
            title = f"{title} ({df.attrs['sharpe_basis']})"
        body.append([title, *_format_row(values, kind)])
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    total = sum(widths) + 2 * (len(widths) - 1)
    return "\n".join([line(header), "-" * total, *(line(r) for r in body)])
