"""Report pages for the tests (tests/report/test_report.py, tests/report/test_report_browser.py):
every section built from small hand-made inputs, and a reader of the page's HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from builders import make_book, one_name_market

from optmm.book import Book, Kind
from optmm.cli.risk import by_underlying_frame
from optmm.cli.scenario import stress_rows_frame
from optmm.market import Market
from optmm.report import (
    Section,
    explain_section,
    exposures_section,
    heatmap_section,
    limits_section,
    render_page,
    stresses_section,
    var_section,
)
from optmm.risk import Shock, Stress, exposures, run_stress, scenario_grid

SECTION_IDS = ("exposures", "limits", "heatmap", "stresses", "var", "explain")


def small_book() -> Book:
    """AAA: a short put, a long call spread, a stock hedge."""
    return make_book(
        [
            ("AAA", Kind.PUT, 95.0, "2026-03-20", -25.0),
            ("AAA", Kind.CALL, 105.0, "2026-03-20", 10.0),
            ("AAA", Kind.CALL, 115.0, "2026-06-19", -10.0),
            ("AAA", Kind.STOCK, 0.0, None, 800.0),
        ]
    )


def small_stress() -> Stress:
    return Stress(
        name="Crash and recovery",
        description="two legs",
        legs=(Shock(-0.08, 0.12), Shock(-0.02, 0.03, days=1.0)),
        labels=("crash", "recovery"),
        source="hand-made",
    )


def limits_frame() -> pd.DataFrame:
    """What ``limit_utilisation`` returns: a row per limit, breaches first (and a missing soft level,
    which the page must show as such)."""
    return pd.DataFrame(
        {
            "scope": ["AAA", "AAA", "book", "AAA"],
            "metric": ["gamma_dollars_1pct", "vega_per_vol_point", "vega_per_vol_point", "delta_shares"],
            "measured": [-12_500.0, 900.0, 3_210.5, 640.0],
            "soft": [8_000.0, 800.0, np.nan, 4_000.0],
            "hard": [10_000.0, 1_000.0, 25_000.0, 5_000.0],
            "used_pct": [125.0, 90.0, 12.842, 12.8],
            "layer": ["HARD", "SOFT", "NORMAL", "NORMAL"],
            "status": ["hard breach", "soft breach", "ok", "ok"],
            "limit": ["[underlying]", "[underlying.AAA]", "[book]", "[underlying]"],
        }
    )


def var_result(n: int = 250, seed: int = 7) -> SimpleNamespace:
    """What ``historical_var`` returns, from a seeded sample (the VaR figures by the definition of
    optmm.risk.var.var_es)."""
    from optmm.risk.var import var_es

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2025-01-02", periods=n, name="date")
    by_und = pd.DataFrame(
        {"AAA": rng.normal(0.0, 1_500.0, n), "BBB": rng.standard_t(4, n) * 700.0}, index=dates
    )
    pnl = by_und.sum(axis=1).rename("pnl")
    rows = []
    for level in (0.95, 0.99):
        v, e = var_es(pnl.to_numpy(), level)
        rows.append({"level": level, "var": v, "es": e})
    worst = pnl.nsmallest(5)
    return SimpleNamespace(
        table=pd.DataFrame(rows),
        pnl=pnl,
        worst=pd.DataFrame(
            {
                "date": worst.index,
                "pnl": worst.to_numpy(),
                "driver": [str(by_und.loc[d].idxmin()) for d in worst.index],
            }
        ),
        contributions=by_und.loc[pnl.nsmallest(13).index].mean().rename("es_contribution"),
    )


def explain_result() -> SimpleNamespace:
    cols = ["delta", "gamma", "vega", "theta", "vanna", "volga", "rho", "new_trades"]
    parts = pd.DataFrame(
        [[1200.0, -310.5, 450.0, -80.0, 12.0, -3.5, 1.25, 0.0]], columns=cols, index=pd.Index(["AAA"])
    )
    parts["unexplained"] = [-25.75]
    parts.insert(0, "actual", parts.sum(axis=1))
    table = pd.concat([parts, parts.sum().to_frame("total").T])
    table.index.name = "underlying"
    return SimpleNamespace(table=table)


@dataclass
class Inputs:
    book: Book
    market: Market
    sections: list[Section] = field(default_factory=list)
    grid: Any = None


def full_page() -> tuple[str, Inputs]:
    """A page with all six sections, from the small book and hand-made limit, VaR and explain results."""
    book, market = small_book(), one_name_market()
    exp = exposures(book, market)
    frame = by_underlying_frame(exp).set_index("underlying").drop(index="book")
    grid = scenario_grid(
        book, market, spot_shocks=[-0.1, -0.05, 0.0, 0.05, 0.1], vol_shocks=[-0.05, 0.0, 0.05]
    )
    legs = stress_rows_frame([run_stress(book, market, small_stress())], grid.underlyings)
    sections = [
        exposures_section(frame, exp.total),
        limits_section(limits_frame(), source="limits.toml"),
        heatmap_section(grid),
        stresses_section(legs, grid.underlyings),
        var_section(var_result(), source="history.csv"),
        explain_section(explain_result(), before="before.toml", after="after.toml"),
    ]
    page = render_page("Risk report: small book", sections, meta=[("market", "test, valued 2026-01-02")])
    return page, Inputs(book, market, sections, grid)


#: Elements without an end tag.
VOID = frozenset({"meta", "img", "br", "hr", "input", "link", "col", "source", "wbr"})


class PageReader(HTMLParser):
    """What the tests read off a page: sections, their headings, every attribute, the visible text,
    table cells with their classes; and whether its elements nest (``problems``)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.headings: dict[str, str] = {}
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.text: list[str] = []
        self.cells: list[tuple[str, str, str]] = []  # (section, classes, text)
        self._stack: list[str] = []
        self._section = ""
        self._cell: tuple[str, list[str]] | None = None
        self._h2 = False
        self._skip = 0
        self.open: list[str] = []  # elements not closed yet
        self.ids: set[str] = set()
        self.problems: list[str] = []  # an end tag that does not close the last element opened, an id twice
        self.feed(page)
        self.close()
        if self.open:
            self.problems.append(f"not closed: {self.open}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag not in VOID:
            self.open.append(tag)
        if "id" in a:
            self.problems.extend([f"id {a['id']!r} twice"] if a["id"] in self.ids else [])
            self.ids.add(a["id"])
        self.attrs.extend((tag, k, v) for k, v in a.items())
        if tag == "section":
            self._section = a.get("id", "")
            self.sections.append(self._section)
        elif tag == "h2":
            self._h2 = True
        elif tag in ("td", "th"):
            self._cell = (a.get("class", ""), [])
        elif tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
        else:
            self.open.pop()
        if tag == "h2":
            self._h2 = False
        elif tag in ("td", "th") and self._cell is not None:
            self.cells.append((self._section, self._cell[0], "".join(self._cell[1])))
            self._cell = None
        elif tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._h2:
            self.headings[self._section] = self.headings.get(self._section, "") + data
        if self._cell is not None:
            self._cell[1].append(data)

    def section_cells(self, section: str) -> list[tuple[str, str]]:
        return [(cls, text) for s, cls, text in self.cells if s == section]


# --------------------------------------------------------------------------------------------------
# the example page of `optmm report`, every option given

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = {
    "book": str(ROOT / "scenarios" / "examples" / "book.csv"),
    "market": str(ROOT / "scenarios" / "examples" / "market_next.toml"),
    "market_before": str(ROOT / "scenarios" / "examples" / "market.toml"),
    "limits": str(ROOT / "scenarios" / "limits" / "desk.toml"),
    "history": str(ROOT / "scenarios" / "history" / "spx_vix.csv"),
    "stress": sorted(str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml")),
}
PNL, HIGH_WATER = -12_000.0, 5_000.0


def example_args(out: Path) -> list[str]:
    """``optmm report`` on the example book with every section: the day after the example market,
    the desk's limits, the six stresses, one-day VaR on the S&P 500 / VIX history (SPY by SPX, the
    rest by their betas to SPY) and the explain from the example market."""
    e = EXAMPLE
    return [
        "report", e["book"], "--market", e["market"], "--market-before", e["market_before"],
        "--limits", e["limits"], "--pnl", f"{PNL:g}", "--high-water", f"{HIGH_WATER:g}",
        "--stress", *e["stress"], "--history", e["history"], "--proxy", "SPY=SPX:1", "--out", str(out),
    ]  # fmt: skip


def example_page(out: Path) -> tuple[int, str, str, str]:
    """Run :func:`example_args` in-process: (exit code, stdout, stderr, the page or "")."""
    import contextlib
    import io

    from optmm.cli import main

    err, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        code = main(example_args(out))
    page = out.read_text(encoding="utf-8") if out.exists() else ""
    return code, stdout.getvalue(), err.getvalue(), page
