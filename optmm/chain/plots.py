"""PNG plots of fits: per expiry the bid/ask vols as bars and the fit as a line; the whole surface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from optmm.chain.fit import UnderlyingFit

__all__ = ["plot_fits"]


def plot_fits(fits: dict[str, UnderlyingFit], directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``<underlying>_<expiry>.png`` per expiry and ``<underlying>_surface.png``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[Path] = []
    for und, f in fits.items():
        s = f.surface
        for i, e in enumerate(f.expiries):
            fig, ax = plt.subplots(figsize=(8, 5))
            lo, hi = float(e.k.min()), float(e.k.max())
            pad = 0.05 * (hi - lo)
            grid = np.linspace(lo - pad, hi + pad, 600)
            fit = 100 * np.sqrt(s.total_variance(grid, i) / e.t)
            has_spread = bool(np.any(e.ask_vol > e.bid_vol))
            if has_spread:
                ax.vlines(e.k, 100 * e.bid_vol, 100 * e.ask_vol, color="0.6", lw=1.5, label="bid/ask vols")
            else:
                ax.plot(e.k, 100 * e.mid_vol, ".", color="0.5", ms=3, label="quoted vols")
            ax.plot(grid, fit, color="C3", lw=1.2, label="fit")
            day = str(np.asarray(e.expiry).astype("datetime64[D]"))
            ax.set_title(f"{und} {day}: RMSE {e.rmse_vol_pts:.3f} vol pts, forward {e.forward:.4f}")
            ax.set_xlabel("log-moneyness ln(K / F)")
            ax.set_ylabel("implied vol (%)")
            ax.legend()
            path = Path(directory) / f"{und}_{day}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
            out.append(path)
        fig, ax = plt.subplots(figsize=(8, 5))
        cmap = plt.get_cmap("viridis")
        for i, e in enumerate(f.expiries):
            grid = np.linspace(float(e.k.min()), float(e.k.max()), 300)
            vol = 100 * np.sqrt(s.total_variance(grid, i) / e.t)
            color = cmap(i / max(1, len(f.expiries) - 1))
            ax.plot(grid, vol, color=color, lw=1, label=str(np.asarray(e.expiry).astype("datetime64[D]")))
        ax.set_title(f"{und}: fitted surface")
        ax.set_xlabel("log-moneyness ln(K / F)")
        ax.set_ylabel("implied vol (%)")
        if len(f.expiries) <= 12:
            ax.legend(fontsize=7)
        path = Path(directory) / f"{und}_surface.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    return out
