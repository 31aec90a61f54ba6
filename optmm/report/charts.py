"""Charts of the report, drawn with matplotlib's Agg canvas and embedded as ``data:`` PNG images
(the page loads nothing from anywhere)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from optmm.report.html import esc, figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["png_img", "pnl_histogram"]


def png_img(fig: Figure, alt: str) -> str:
    """An ``<img>`` holding ``fig`` as a base64 PNG (no timestamp or software in its metadata, so
    the same figure gives the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def pnl_histogram(
    pnl: Sequence[float] | np.ndarray, lines: Sequence[tuple[str, float, str]], *, title: str
) -> str:
    """A histogram of scenario P&Ls with vertical lines at ``lines`` (label, P&L, style ``"-"`` or
    ``"--"``), as an ``<img>`` (:func:`png_img`).

    Raises
    ------
    ValueError
        No P&L, or one that is not finite.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    x = np.asarray(pnl, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("P&L histogram: no P&L to draw")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(
            f"P&L histogram: scenario {int(bad[0])}: {float(x[bad[0]])!r} is not a finite number"
        )
    fig = Figure(figsize=(8.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = int(min(120, max(10, x.size // 8)))
    ax.hist(x, bins=bins, color="#4c72b0", edgecolor="white", linewidth=0.4)
    colors = ("#c0392b", "#e67e22", "#8e44ad", "#16a085")
    for i, (label, value, style) in enumerate(lines):
        ax.axvline(value, color=colors[(i // 2) % len(colors)], linestyle=style, linewidth=1.6,
                   label=f"{label}: {figure(value, signed=True, where=label)}")  # fmt: skip
    if lines:
        ax.legend(fontsize=8, loc="upper right", frameon=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.set_xlabel("P&L (currency of the market)")
    ax.set_ylabel("scenarios")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return png_img(fig, title)
