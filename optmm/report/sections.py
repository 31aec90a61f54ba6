"""The sections of the risk report, each built from the plain objects and frames the library returns
(so that each can be made, and tested, on its own).

========================  ==================================================================
section (id)              from
========================  ==================================================================
``exposures``             :func:`optmm.risk.exposures`: per underlying and the book's line
``limits``                ``optmm.risk.utilisation.limit_utilisation``: a row per limit
``heatmap``               :func:`optmm.risk.scenario_grid`: the book's P&L over spot x vol
``stresses``              :func:`optmm.risk.run_stress`: every leg of every stress
``var``                   ``optmm.risk.var.historical_var``: VaR / ES, the P&L histogram, worst days
``explain``               ``optmm.risk.explain.pnl_explain``: P&L explained between two markets
========================  ==================================================================

Every amount is in the market's currency. Every figure is checked (:func:`optmm.report.html.table`):
one that is not a finite number is a ``ValueError`` naming the section, the row and the column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from optmm.codes import BOOK_LABEL
from optmm.report.charts import pnl_histogram
from optmm.report.html import Blank, Column, decimals_for, esc, figure, pct_shock, pts_shock, table
from optmm.report.page import Section

__all__ = [
    "EXPOSURE_HEADERS",
    "explain_section",
    "exposures_section",
    "heatmap_section",
    "limits_section",
    "stresses_section",
    "var_section",
]


#: Exposure column -> (label, unit) as the page shows them (the column's name is its tooltip;
#: definitions in docs/risk.md).
EXPOSURE_HEADERS: dict[str, tuple[str, str]] = {
    "spot": ("spot", "price"),
    "beta": ("beta", "to the index"),
    "value": ("value", "currency"),
    "delta_shares": ("delta", "shares"),
    "delta_dollars": ("delta", "currency (shares x spot)"),
    "beta_delta_index_shares": ("beta-weighted delta", "index shares"),
    "beta_delta_index_dollars": ("beta-weighted delta", "index currency"),
    "gamma_dollars_1pct": ("gamma", "delta currency per 1% move"),
    "vega_per_vol_point": ("vega", "per vol point"),
    "theta_per_day": ("theta", "per calendar day"),
    "rho_per_pct": ("rho", "per 1% of rate"),
    "vanna_shares_per_vol_point": ("vanna", "delta shares per vol point"),
    "volga_per_vol_point2": ("volga", "vega per vol point, per vol point"),
}
_KIND = {"spot": "price", "beta": "ratio"}
_NOT_ADDITIVE = Blank("does not add across underlyings (share counts of different stocks, prices, betas)")
_NOT_GIVEN = Blank("not given for this underlying")


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def exposures_section(by_underlying: pd.DataFrame, total: pd.Series | pd.DataFrame) -> Section:
    """Exposures per underlying (rows) and the book's line.

    Parameters
    ----------
    by_underlying : pandas.DataFrame
        Indexed by underlying; columns among :data:`EXPOSURE_HEADERS` (``Exposures.by_underlying``,
        with ``beta`` and the beta-weighted delta where the market gives them).
    total : pandas.Series or one-row pandas.DataFrame
        The book's line (``Exposures.total``): only what adds across underlyings; the rest is
        shown as a dash that says so.
    """
    book = total.iloc[0] if isinstance(total, pd.DataFrame) else total
    keys = [k for k in EXPOSURE_HEADERS if k in by_underlying.columns or k in book.index]
    unknown = [str(c) for c in (*by_underlying.columns, *book.index) if c not in EXPOSURE_HEADERS]
    if unknown:
        raise ValueError(f"exposures: unknown column {unknown[0]!r} (known: {', '.join(EXPOSURE_HEADERS)})")
    columns = [Column("underlying", "underlying", kind="text")] + [
        Column(k, *EXPOSURE_HEADERS[k], kind=_KIND.get(k, "amount"), tip=k) for k in keys
    ]
    rows: list[dict[str, Any]] = [
        {"underlying": str(u), **{k: r[k] if k in r.index else _NOT_GIVEN for k in keys}}
        for u, r in by_underlying.iterrows()
    ]
    rows.append(
        {
            "underlying": BOOK_LABEL,
            "_total": True,
            **{k: book[k] if k in book.index else _NOT_ADDITIVE for k in keys},
        }
    )
    body = _note(
        "Amounts in the market's currency, Greeks in trader units: dollar gamma is the change of the "
        "currency delta for a 1% move of spot, vega per vol point, theta per calendar day. The book's "
        "line sums what adds across underlyings; beta-weighted delta is in the index's shares and "
        "currency."
    ) + table(
        rows,
        columns,
        where="exposures",
        row_class=lambda r: "total" if r.get("_total") else "",
    )
    return Section("exposures", "Exposures", body)


def _status_class(status: Any) -> str:
    """``hard breach`` (or a kill) red, ``soft breach`` amber, ``ok`` green."""
    s = str(status).lower()
    if "soft" in s:
        return "st-soft"
    if "hard" in s or "breach" in s or "kill" in s:
        return "st-hard"
    return "st-ok"


def _metric_unit(metric: Any) -> str:
    from optmm.risk.limits import Metric

    key = metric.value if isinstance(metric, Metric) else str(metric)
    try:
        return Metric(key).unit
    except ValueError:
        return ""


LIMIT_COLUMNS = ("scope", "metric", "measured", "soft", "hard", "used_pct", "layer", "status")


def limits_section(utilisation: pd.DataFrame, *, source: str = "") -> Section:
    """Limit utilisation: one row per limit, as given (breaches first).

    Parameters
    ----------
    utilisation : pandas.DataFrame
        Columns ``scope, metric, measured, soft, hard, used_pct, layer, status``: the measured
        value (in the metric's unit), the soft and hard levels (missing: none set), the measured
        value as a percent of the hard limit, the controller layer it puts the scope in, its status.
    source : str
        The limit set's file, named in the note.

    Notes
    -----
    ``optmm.risk.utilisation.limit_utilisation`` gives these columns (and ``limit``, the table of
    the set a limit comes from, shown when present).
    """
    absent = [c for c in LIMIT_COLUMNS if c not in utilisation.columns]
    if absent:
        raise ValueError(
            f"limit utilisation: missing column {absent[0]!r} (expected {', '.join(LIMIT_COLUMNS)})"
        )
    frame = utilisation.copy()
    frame["metric"] = [getattr(m, "value", m) for m in frame["metric"]]  # a Metric or its TOML key
    frame["layer"] = [str(getattr(v, "name", v)).lower() for v in frame["layer"]]  # a Layer or its name
    frame["unit"] = [_metric_unit(m) for m in frame["metric"]]
    columns = [
        Column("scope", "scope", kind="text"),
        Column("metric", "metric", kind="text"),
        Column("unit", "unit", kind="text"),
        Column("measured", "measured", "in the metric's unit", kind="amount"),
        Column("soft", "soft level", kind="level", missing="no soft level"),
        Column("hard", "hard limit", kind="level", missing="no hard limit"),
        Column("used_pct", "used", "% of the hard limit", kind="percent", missing="no hard limit"),
        Column("layer", "layer", "the controller's", kind="text"),
        Column("status", "status", kind="text"),
    ]
    if "limit" in frame.columns:
        columns.append(Column("limit", "set in", "the limit set's table", kind="text"))

    def style(r: Mapping[str, Any], col: Column) -> str:
        if col.key != "used_pct":
            return ""
        u = r.get("used_pct")
        if u is None or not np.isfinite(float(u)):
            return ""
        w = min(max(float(u), 0.0), 100.0)
        colour = "#f3c4bf" if float(u) >= 100.0 else "#cfe0f5"
        return f"background: linear-gradient(90deg, {colour} {w:.1f}%, transparent {w:.1f}%)"

    n_breach = int(sum(_status_class(s) == "st-hard" for s in frame["status"]))
    n_soft = int(sum(_status_class(s) == "st-soft" for s in frame["status"]))
    summary = (
        f"{len(frame)} limits{f' from {source}' if source else ''}: {n_breach} at or past the hard "
        f"limit, {n_soft} past the soft level. Limits bound absolute values (|delta| <= limit); the "
        "loss limits bound losses, as positive numbers. Breaches first."
    )
    body = _note(summary) + table(
        frame,
        columns,
        where="limit utilisation",
        cell_class=lambda r, c: f"status {_status_class(r['status'])}" if c.key == "status" else "",
        cell_style=style,
    )
    return Section("limits", "Limit utilisation", body)


def _heat_colour(value: float, lim: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    x = 0.5 + 0.5 * (value / lim if lim > 0 else 0.0)
    return str(to_hex(colormaps["RdYlGn"](0.15 + 0.7 * min(max(x, 0.0), 1.0))))


def heatmap_section(grid: Any) -> Section:
    """The book's full-revaluation P&L over the grid's spot x vol shocks, coloured (losses red,
    gains green, centred at 0), the worst cell outlined; the title says what was shocked, the
    valuation date and the days forward (:func:`optmm.risk.scenarios.heatmap_title`).

    Parameters
    ----------
    grid : optmm.risk.GridResult
    """
    from optmm.risk.scenarios import heatmap_title

    m = grid.matrix()
    values = m.to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = bad[0]
        raise ValueError(
            f"heatmap: spot {pct_shock(m.index[i])}, vol {pts_shock(m.columns[j])}: "
            f"{float(values[i, j])!r} is not a finite number"
        )
    w = grid.worst()
    wi, wj = m.index.get_loc(w.spot_shock), m.columns.get_loc(w.vol_shock)
    lim = float(np.max(np.abs(values))) if values.size else 0.0
    decimals = decimals_for(values.ravel())
    spot_axis = "spot shock (%)" + (" of the index, x beta" if grid.beta_weighted else "")
    head = (
        f'<th scope="col"><span class="label">{esc(spot_axis)}</span>'
        '<span class="unit">rows; columns: vol shock</span></th>'
        + "".join(f'<th scope="col">{esc(pts_shock(v))}</th>' for v in m.columns)
    )
    rows = []
    for i, s in enumerate(m.index):
        cells = [f'<th scope="row">{esc(pct_shock(s))}</th>']
        for j, v in enumerate(m.columns):
            text = figure(values[i, j], decimals=decimals, signed=True, where=f"heatmap {s}, {v}")
            worst = (i, j) == (wi, wj)
            cls = ' class="worst" title="worst cell"' if worst else ""
            cells.append(f'<td{cls} style="background: {_heat_colour(values[i, j], lim)}">{esc(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    title_lines = heatmap_title(grid).split("\n")
    worst_line = (
        f"Worst cell (outlined): {figure(w.pnl, decimals=decimals, signed=True)} at spot "
        f"{pct_shock(w.spot_shock)}, vol {pts_shock(w.vol_shock)}"
        + (f", driven by {w.driver}" if w.driver else "")
        + "."
    )
    caption = " ".join(line.rstrip(",") + "." for line in title_lines)
    body = (
        _note(
            "Every cell is a full revaluation of the book from today's market: spot shocks in percent, "
            "vol shocks in vol points (+5 pt: 20% -> 25%), P&L in the market's currency."
        )
        + f'<p class="worst-line"><strong>{esc(worst_line)}</strong></p>'
        + f'<div class="scroll"><table class="heat"><caption>{esc(caption)}</caption>'
        + f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return Section("heatmap", "Scenario heatmap", body)


def stresses_section(legs: pd.DataFrame, underlyings: Sequence[str]) -> Section:
    """Every leg of every named stress, stresses worst first, each leg's P&L per underlying and for
    the book, the worst leg of each stress (whose P&L is the stress's) marked.

    Parameters
    ----------
    legs : pandas.DataFrame
        A row per leg with ``scenario`` (the stress's name), ``leg``, ``spot_shock`` (relative),
        ``vol_shock`` (decimal vol), ``days``, ``shocked``, ``beta_weighted``, a P&L column per
        underlying, ``book``, ``driver`` and ``worst`` (what ``optmm scenario`` lists).
    underlyings : sequence of str
        The P&L columns, in order.
    """
    frame = legs.copy()
    frame["spot"] = [
        pct_shock(s) + (" x beta" if b else "")
        for s, b in zip(frame["spot_shock"], frame["beta_weighted"], strict=True)
    ]
    frame["leg_shown"] = [
        f"{g}{' *' if w else ''}" for g, w in zip(frame["leg"], frame["worst"], strict=True)
    ]
    columns = [
        Column("scenario", "stress", kind="text"),
        Column("leg_shown", "leg", "* = the stress's worst leg", kind="text"),
        Column("spot", "spot", "% move", kind="text"),
        Column("vol_shock", "vol", "vol points", kind="vol"),
        Column("days", "days", "calendar days forward", kind="count"),
        Column("shocked", "shocked", kind="text"),
        *[Column(str(u), str(u), "P&L", kind="amount") for u in underlyings],
        Column(BOOK_LABEL, "book", "P&L", kind="amount"),
        Column("driver", "driver", kind="text"),
    ]
    worst = frame[frame["worst"]].sort_values(BOOK_LABEL, kind="stable")
    lead = ""
    if len(worst):
        top = worst.iloc[0]
        lead = (
            f"Worst stress: {top['scenario']} ({top['leg']}), book P&L "
            f"{figure(top[BOOK_LABEL], signed=True, where='stresses: book P&L')}"
            + (f", driven by {top['driver']}" if isinstance(top["driver"], str) and top["driver"] else "")
            + ". "
        )
    body = _note(
        lead + "Each leg is a full revaluation from today's market; a stress's P&L is that of its worst "
        "leg. P&L in the market's currency."
    ) + table(frame, columns, where="stresses", row_class=lambda r: "worst" if bool(r["worst"]) else "")
    return Section("stresses", "Stresses", body)


def _frame_of(obj: Any, name: str, index_name: str = "index") -> pd.DataFrame:
    """A Series or a frame as a frame with its index (named ``index_name`` if unnamed) as the first
    column."""
    frame = obj.to_frame(name=obj.name or name) if isinstance(obj, pd.Series) else obj.copy()
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(names=index_name if frame.index.name is None else None)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _auto_columns(frame: pd.DataFrame, amount_unit: str = "P&L") -> list[Column]:
    cols = []
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            cols.append(Column(c, c, kind="date"))
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            cols.append(Column(c, c, amount_unit, kind="amount"))
        else:
            cols.append(Column(c, c, kind="text"))
    return cols


def _level_name(c: Any) -> str:
    """A contributions column: a level (0.975) as ``ES 97.5%``, anything else as it is."""
    try:
        level = float(c)
    except (TypeError, ValueError):
        return str(c)
    return f"ES {figure(100.0 * level, decimals=2).rstrip('0').rstrip('.')}%" if 0.0 < level < 1.0 else str(c)


#: The columns of ``VarResult.worst`` the page knows, with their units.
_WORST_COLUMNS = {
    "date": Column("date", "date", "scenario's end", kind="date"),
    "pnl": Column("pnl", "book P&L", "currency", kind="amount"),
    "driver": Column("driver", "driver", kind="text"),
    "driver_pnl": Column("driver_pnl", "driver's P&L", "currency", kind="amount"),
    "spot_shift": Column("spot_shift", "driver's spot", "move", kind="spot"),
    "vol_shift": Column("vol_shift", "driver's vol", "move", kind="vol"),
}


def var_section(result: Any, *, horizon_days: int = 1, source: str = "") -> Section:
    """Historical VaR and ES: the table by confidence level, the histogram of scenario P&Ls with
    each level's VaR and ES, the worst days and each underlying's contribution.

    Parameters
    ----------
    result : VarResult
        ``table`` (columns ``level``, ``var``, ``es``: currency, a loss positive), ``pnl`` (the
        scenario P&L, a Series by date), ``worst`` (``date``, ``pnl``, ``driver``) and
        ``contributions`` (component ES per underlying: a Series or a frame).
    horizon_days : int
        The P&L horizon, in days (named in the titles).
    source : str
        The history's file.
    """
    levels = _frame_of(result.table, "var")
    for col in ("level", "var", "es"):
        if col not in levels.columns:
            raise ValueError(f"VaR: the table has no column {col!r}")
    pnl = result.pnl
    values = np.asarray(pnl, dtype=np.float64).reshape(-1)
    n = values.size
    span = ""
    if isinstance(pnl, pd.Series) and n and isinstance(pnl.index, pd.DatetimeIndex):
        span = f", {pnl.index.min().date().isoformat()} to {pnl.index.max().date().isoformat()}"
    lines: list[tuple[str, float, str]] = []
    for r in levels.itertuples(index=False):
        tag = f"{figure(100.0 * float(r.level), decimals=2).rstrip('0').rstrip('.')}%"
        lines.append((f"VaR {tag}", -float(r.var), "-"))
        lines.append((f"ES {tag}", -float(r.es), "--"))
    what = f"{horizon_days}-day P&L over {figure(n)} historical scenarios{span}"
    chart = pnl_histogram(values, lines, title=what)
    level_columns = [
        Column("level", "confidence", kind="fraction"),
        Column("var", "VaR", "currency, a loss > 0", kind="level"),
        Column("es", "ES", "currency, mean of the tail losses", kind="level"),
    ]
    if "tail" in levels.columns:
        level_columns.append(Column("tail", "tail", "k, scenarios", kind="count"))
    level_table = table(levels, level_columns, where="VaR")
    worst = _frame_of(result.worst, "pnl", "date")
    contrib = _frame_of(result.contributions, "es", "underlying")
    contrib.columns = [_level_name(c) for c in contrib.columns]
    body = (
        _note(
            f"Full revaluation of today's book under each historical scenario ({what}"
            f"{f', from {source}' if source else ''}). VaR is the k-th worst loss and ES the mean of "
            "the k worst, k = ceil(n (1 - level)); both in the market's currency, positive for a loss."
        )
        + level_table
        + f'<figure class="chart">{chart}</figure>'
        + "<h3>Worst scenarios</h3>"
        + _note("The lowest book P&Ls, worst first; the driver is the underlying that lost most.")
        + table(
            worst,
            [_WORST_COLUMNS.get(c) or _auto_columns(worst[[c]])[0] for c in worst.columns],
            where="VaR: worst scenarios",
        )
        + "<h3>Contributions to ES by underlying</h3>"
        + _note(
            "Component ES: each underlying's P&L over the book's tail scenarios, averaged, with the "
            "sign flipped (positive: adds to the loss), so that each column sums to the level's ES."
        )
        + table(contrib, _auto_columns(contrib, "currency"), where="VaR: contributions")
    )
    return Section("var", "Value at risk and expected shortfall", body)


EXPLAIN_COLUMNS = (
    "actual", "delta", "gamma", "vega", "theta", "vanna", "volga", "rho", "new_trades", "unexplained",
)  # fmt: skip


def explain_section(explained: Any, *, before: str, after: str) -> Section:
    """P&L explain between two markets: the actual change in value of the book and its parts.

    Parameters
    ----------
    explained : Explain or pandas.DataFrame
        Its ``table`` (or the frame itself): indexed by underlying and ``total``, columns
        :data:`EXPLAIN_COLUMNS` (currency).
    before, after : str
        The two markets (their files and valuation dates), named in the note.
    """
    frame = explained if isinstance(explained, pd.DataFrame) else explained.table
    absent = [c for c in EXPLAIN_COLUMNS if c not in frame.columns]
    if absent:
        raise ValueError(f"P&L explain: the table has no column {absent[0]!r}")
    shown = frame[list(EXPLAIN_COLUMNS)].copy()
    shown.insert(0, "underlying", [str(u) for u in frame.index])
    figures = shown[list(EXPLAIN_COLUMNS)].to_numpy(dtype=np.float64)
    decimals = decimals_for(figures[np.isfinite(figures)])  # one precision for the table: the parts add up
    columns = [Column("underlying", "underlying", kind="text")] + [
        Column(c, c.replace("_", " "), "currency", kind="amount", decimals=decimals) for c in EXPLAIN_COLUMNS
    ]
    days = getattr(explained, "days", None)
    span = f" ({days} calendar day{'s' if days != 1 else ''})" if isinstance(days, int | np.integer) else ""
    body = _note(
        f"From {before} to {after}{span}. 'actual' is the change of the book's value by full "
        "revaluation; delta to rho are its parts by the first market's Greeks (Taylor terms to second "
        "order), 'new trades' the trades' P&L, 'unexplained' what is left (actual minus the rest, "
        "never absorbed into a term). Amounts in the market's currency."
    ) + table(
        shown, columns, where="P&L explain", row_class=lambda r: "total" if r["underlying"] == "total" else ""
    )
    return Section("explain", "P&L explain", body)
