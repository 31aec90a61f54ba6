"""Tests of the HTML risk report (optmm.report, ``optmm report``): each section against the library's
figures, the page's structure and self-containment, no non-finite figure printed, and the command's
errors (one line, exit code 2, no page written). The page in a real browser: test_report_browser.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, one_name_market, run
from report_pages import (
    EXAMPLE,
    HIGH_WATER,
    PNL,
    SECTION_IDS,
    PageReader,
    example_page,
    explain_result,
    full_page,
    limits_frame,
    small_book,
    small_stress,
    var_result,
)

from optmm.cli.risk import by_underlying_frame
from optmm.cli.scenario import stress_rows_frame
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
from optmm.report.html import Blank, Column, decimals_for, figure, table
from optmm.report.sections import EXPLAIN_COLUMNS
from optmm.risk import exposures, run_stress, scenario_grid

ROOT = Path(__file__).resolve().parents[2]
BOOK = str(ROOT / "scenarios" / "examples" / "book.csv")
MARKET = str(ROOT / "scenarios" / "examples" / "market.toml")
STRESS_FILES = sorted(str(p) for p in (ROOT / "scenarios" / "stress").glob("*.toml"))

#: a non-finite figure as text: nan, inf, infinity in any case (a word on its own)
NON_FINITE = re.compile(r"(?<![A-Za-z])(nan|inf|infinity)(?![A-Za-z])", re.IGNORECASE)


def _num(text: str) -> float:
    """A shown figure back to a number: '+1,234' -> 1234.0, '12.5%' -> 12.5."""
    return float(text.replace(",", "").replace("%", "").replace("+", ""))


# --------------------------------------------------------------------------------------------------
# figures and tables


@pytest.mark.parametrize(
    ("value", "kw", "shown"),
    [
        (1234567.891, {}, "1,234,568"),
        (-1234567.891, {"signed": True}, "-1,234,568"),
        (1234.5, {"signed": True, "decimals": 2}, "+1,234.50"),
        (-0.0004, {"signed": True, "decimals": 2}, "0.00"),
        (0.0, {"signed": True}, "0"),
        (np.float64(-7.5), {"decimals": 1}, "-7.5"),
    ],
)
def test_figure_has_separators_and_signs(value: float, kw: dict, shown: str) -> None:
    assert figure(value, **kw) == shown


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "abc", None])
def test_figure_refuses_what_is_not_a_finite_number(value: object) -> None:
    with pytest.raises(ValueError, match=r"^cell X: "):
        figure(value, where="cell X")


def test_table_names_the_row_and_column_of_a_non_finite_figure() -> None:
    rows = [{"name": "a", "x": 1.0}, {"name": "b", "x": math.inf}]
    with pytest.raises(ValueError, match=r"^things: row 'b', column 'x': inf is not a finite number"):
        table(rows, [Column("name", "name", kind="text"), Column("x", "x")], where="things")
    rows[1]["x"] = math.nan
    with pytest.raises(ValueError, match=r"^things: row 'b', column 'x': missing value"):
        table(rows, [Column("name", "name", kind="text"), Column("x", "x")], where="things")


def test_table_missing_values_where_allowed_show_a_dash_with_their_meaning() -> None:
    rows = [{"name": "a", "soft": math.nan, "x": Blank("does not add")}, {"name": "b", "soft": 5.0, "x": 2.0}]
    html = table(
        rows,
        [Column("name", "name", kind="text"), Column("soft", "soft", kind="level", missing="no soft"),
         Column("x", "x")],
        where="t",
    )  # fmt: skip
    cells = PageReader(html).section_cells("")
    assert ("num missing", "\u2014") in cells
    assert 'title="no soft"' in html and 'title="does not add"' in html
    assert ("num", "5.00") in cells and ("num", "+2.00") in cells
    with pytest.raises(ValueError, match="row 'b', column 'soft': inf is not a finite number"):
        rows[1]["soft"] = math.inf
        table(
            rows, [Column("name", "name", kind="text"), Column("soft", "soft", missing="no soft")], where="t"
        )


def test_table_column_precision_follows_its_magnitude() -> None:
    rows = [
        {"k": "a", "big": 123456.4, "mid": 12.345, "small": 0.012345},
        {"k": "b", "big": -0.4, "mid": 1, "small": 0},
    ]
    cols = [
        Column("k", "k", kind="text"),
        Column("big", "big"),
        Column("mid", "mid"),
        Column("small", "small"),
    ]
    cells = [text for _, text in PageReader(table(rows, cols, where="t")).section_cells("")][4:]
    assert cells == ["a", "+123,456", "+12.35", "+0.0123", "b", "0", "+1.00", "0.0000"]


# --------------------------------------------------------------------------------------------------
# sections against the library


def test_exposures_section_shows_every_figure_of_exposures_with_units() -> None:
    book, market = small_book(), one_name_market()
    exp = exposures(book, market)
    frame = by_underlying_frame(exp).set_index("underlying").drop(index="book")
    page = render_page("t", [exposures_section(frame, exp.total)])
    r = PageReader(page)
    cells = r.section_cells("exposures")
    header = [text for cls, text in cells[:11]]
    assert header[0] == "underlying"
    assert "vegaper vol point" in header and "thetaper calendar day" in header  # label + unit line
    assert "gammadelta currency per 1% move" in header
    assert 'title="gamma_dollars_1pct"' in page  # the column's name, as docs/risk.md defines it
    body = [text for _, text in cells[len(header) :]]
    aaa, book_row = body[: len(header)], body[len(header) :]
    assert aaa[0] == "AAA" and book_row[0] == "book"
    shown = dict(zip(header, aaa, strict=True))
    u = exp.by_underlying.loc["AAA"]
    # figures to the precision shown (whole units above 100, else 2 decimals)
    assert _num(shown["valuecurrency"]) == pytest.approx(u["value"], abs=0.5)
    assert _num(shown["deltashares"]) == pytest.approx(u["delta_shares"], abs=0.5)
    assert _num(shown["vegaper vol point"]) == pytest.approx(u["vega_per_vol_point"], abs=0.5)
    assert _num(shown["thetaper calendar day"]) == pytest.approx(u["theta_per_day"], abs=0.005)
    booked = dict(zip(header, book_row, strict=True))
    assert booked["deltashares"] == "\u2014"  # share counts do not add across underlyings
    assert _num(booked["valuecurrency"]) == pytest.approx(exp.total["value"].iloc[0], abs=0.5)


def test_exposures_section_refuses_an_unknown_column() -> None:
    frame = pd.DataFrame({"value": [1.0], "mystery": [2.0]}, index=pd.Index(["AAA"], name="underlying"))
    with pytest.raises(ValueError, match="exposures: unknown column 'mystery'"):
        exposures_section(frame, pd.Series({"value": 1.0}))


def test_heatmap_section_marks_the_worst_cell_and_says_units_and_valuation() -> None:
    book, market = small_book(), one_name_market()
    grid = scenario_grid(book, market, spot_shocks=[-0.1, 0.0, 0.1], vol_shocks=[-0.05, 0.05], days=2)
    page = render_page("t", [heatmap_section(grid)])
    r = PageReader(page)
    worst = grid.worst()
    cells = r.section_cells("heatmap")
    marked = [text for cls, text in cells if "worst" in cls.split()]
    assert len(marked) == 1
    assert _num(marked[0]) == pytest.approx(worst.pnl, abs=0.5)
    assert float(_num(marked[0])) == min(
        _num(t) for c, t in cells if c in ("", "worst") and re.match(r"^[-+]?[\d,]+$", t)
    )
    text = " ".join(r.text)
    assert "valued 2026-01-02" in text and "2 day(s) forward" in text
    assert "vol points" in text and "currency" in text
    assert f"at spot {round(worst.spot_shock * 100):+d}%" in text
    # every cell is the grid's P&L
    m = grid.matrix().to_numpy()
    shown = [_num(t) for c, t in cells if c in ("", "worst") and re.match(r"^[-+]?[\d,]+$", t)]
    np.testing.assert_allclose(shown, m.ravel(), atol=0.5)


def test_stresses_section_lists_every_leg_and_marks_the_worst() -> None:
    book, market = small_book(), one_name_market()
    res = run_stress(book, market, small_stress())
    legs = stress_rows_frame([res], ["AAA"])
    r = PageReader(render_page("t", [stresses_section(legs, ["AAA"])]))
    text = " ".join(r.text)
    assert (
        "crash *" in text
        and "recovery" in text
        and "recovery *" not in text.replace(res.worst_leg + " *", "")
    )
    assert f"{figure(res.pnl, signed=True)}" in text
    assert "-8%" in text and "+12 pt" in text


def test_limits_section_shows_levels_units_and_status() -> None:
    r = PageReader(render_page("t", [limits_section(limits_frame(), source="desk.toml")]))
    cells = r.section_cells("limits")
    texts = [t for _, t in cells]
    assert "currency of delta_dollars per 1% spot move" in texts  # the metric's unit (optmm.risk.limits)
    assert "-12,500" in texts and "125.0%" in texts and "12.8%" in texts
    assert ("num missing", "\u2014") in cells  # no soft level on the book's vega limit
    assert ("status st-hard", "hard breach") in cells
    assert ("status st-soft", "soft breach") in cells
    assert ("status st-ok", "ok") in cells
    assert "hard" in texts and "soft" in texts and "[underlying.AAA]" in texts  # layer, and where it is set
    assert "1 at or past the hard limit, 1 past the soft level" in " ".join(r.text)


def test_limits_section_refuses_a_frame_without_its_columns() -> None:
    with pytest.raises(ValueError, match="missing column 'used_pct'"):
        limits_section(limits_frame().drop(columns="used_pct"))


def test_var_section_table_histogram_worst_days_and_contributions() -> None:
    res = var_result()
    page = render_page("t", [var_section(res, source="h.csv")])
    r = PageReader(page)
    cells = r.section_cells("var")
    texts = [t for _, t in cells]
    for row in res.table.itertuples():
        assert figure(row.var) in texts and figure(row.es) in texts
    assert "95%" in texts and "99%" in texts
    assert [t for t in texts if re.match(r"^\d{4}-\d\d-\d\d$", t)] == [
        d.date().isoformat() for d in res.worst["date"]
    ]
    assert "AAA" in texts and "BBB" in texts
    imgs = [v for tag, k, v in r.attrs if tag == "img" and k == "src"]
    assert len(imgs) == 1 and imgs[0].startswith("data:image/png;base64,")
    assert "250 historical scenarios, 2025-01-02 to" in " ".join(r.text)


def test_var_section_refuses_a_non_finite_pnl() -> None:
    res = var_result()
    res.pnl.iloc[3] = math.nan
    with pytest.raises(ValueError, match="scenario 3: nan is not a finite number"):
        var_section(res)


def test_explain_section_one_precision_and_the_total_row() -> None:
    ex = explain_result()
    r = PageReader(render_page("t", [explain_section(ex, before="a.toml", after="b.toml")]))
    cells = r.section_cells("explain")
    texts = [t for _, t in cells]
    assert texts[:11] == ["underlying", *[f"{c.replace('_', ' ')}currency" for c in ex.table.columns[:10]]]
    assert texts[11:22] == [
        "AAA", "+1,244", "+1,200", "-310", "+450", "-80", "+12", "-4", "+1", "0", "-26",
    ]  # fmt: skip
    assert texts[22] == "total"
    assert "From a.toml to b.toml" in " ".join(r.text)


# --------------------------------------------------------------------------------------------------
# the page


def test_page_reader_sees_bad_nesting() -> None:
    assert PageReader("<div><p>x</div></p>").problems
    assert PageReader("<section id=a></section><p id=a></p>").problems
    assert PageReader("<div><table><tr><td>x</td></tr></table>").problems  # not closed
    assert not PageReader("<div><img src=x><p>y</p></div>").problems


def test_full_page_structure() -> None:
    page, _ = full_page()
    r = PageReader(page)
    assert r.problems == []
    assert page.startswith("<!DOCTYPE html>")
    assert r.sections == list(SECTION_IDS)
    assert all(r.headings[s] for s in SECTION_IDS)
    toc = [v for tag, k, v in r.attrs if tag == "a" and k == "href"]
    assert toc == [f"#{s}" for s in SECTION_IDS]


def test_full_page_is_self_contained() -> None:
    page, _ = full_page()
    r = PageReader(page)
    refs = [
        (tag, k, v) for tag, k, v in r.attrs if k in ("src", "href", "action", "srcset", "poster", "data")
    ]
    assert refs
    for tag, k, v in refs:
        assert v.startswith(("#", "data:")), (tag, k, v[:80])
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    csp = [v for tag, k, v in r.attrs if tag == "meta" and k == "content" and "default-src" in v]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"]


def test_full_page_prints_no_non_finite_figure() -> None:
    page, _ = full_page()
    text = " ".join(PageReader(page).text)
    assert not NON_FINITE.search(text), NON_FINITE.search(text)
    assert len(text) > 1000


def test_render_page_refuses_duplicated_ids_and_bad_ids() -> None:
    with pytest.raises(ValueError, match="used twice"):
        render_page("t", [Section("a", "A", ""), Section("a", "B", "")])
    with pytest.raises(ValueError, match="lower-case"):
        Section("Bad id", "x", "")


def test_render_page_escapes_text() -> None:
    page = render_page("<b>&", [Section("a", "<i>", "")], meta=[("book", "<script>x</script>")])
    assert "<b>&" not in page and "&lt;b&gt;&amp;" in page
    assert "<script>x</script>" not in page


# --------------------------------------------------------------------------------------------------
# optmm report


@pytest.fixture(scope="module")
def example_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    import contextlib
    import io

    from optmm.cli import main

    err = io.StringIO()
    stdout = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        code = main(["report", BOOK, "--market", MARKET, "--stress", *STRESS_FILES, "--out", str(out)])
    return code, stdout.getvalue(), err.getvalue(), out.read_text(encoding="utf-8") if out.exists() else ""


def test_report_command_writes_the_page(example_report: tuple[int, str, str, str]) -> None:
    code, out, err, page = example_report
    assert (code, out, err) == (0, "", "")
    r = PageReader(page)
    assert r.sections == ["exposures", "heatmap", "stresses"]
    text = " ".join(r.text)
    assert "scenarios/examples/market.toml, valued 2026-11-20" in text
    assert "Not in this report: limit utilisation (no --limits)" in text
    assert not NON_FINITE.search(text)


def test_report_command_figures_are_the_library_s(example_report: tuple[int, str, str, str]) -> None:
    from optmm.book import Book
    from optmm.market import Market

    book, market = Book.load(BOOK), Market.load(MARKET)
    grid = scenario_grid(
        book,
        market,
        spot_shocks=np.round(np.arange(-20, 21, 2) / 100, 10),
        vol_shocks=np.arange(-10, 11, 2) / 100,
    )
    r = PageReader(example_report[3])
    marked = [t for c, t in r.section_cells("heatmap") if "worst" in c.split()]
    assert marked == [figure(grid.worst().pnl, signed=True)]
    assert figure(grid.worst().pnl, signed=True) == "-381,845"  # docs/risk.md: worst at -12%, vol -10 (-382k)
    stress_text = [t for _, t in r.section_cells("stresses")]
    assert "+508,580" in stress_text and "-53,160" in stress_text  # docs/risk.md's stress table
    exp_cells = [t for _, t in r.section_cells("exposures")]
    assert "-356,090" in exp_cells  # SPY's dollar gamma per 1%


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--out", "OUT/r.txt"], ["--out", "name it .html"]),
        (["--out", "OUT/missing/r.html"], ["--out", "no such directory"]),
        (["--out", "OUT/r.html", "--stress", "OUT/nope.toml"], ["nope.toml", "no such file"]),
        (["--out", "OUT/r.html", "--limits", "OUT/nope.toml"], ["nope.toml", "no such file"]),
        (["--out", "OUT/r.html", "--pnl", "-5"], ["--pnl", "--limits"]),
        (["--out", "OUT/r.html", "--proxy", "SPY=SPX:1"], ["--proxy", "--history"]),
        (["--out", "OUT/r.html", "--market-before", "OUT"], ["--market-before", "is a directory"]),
        (["--out", "OUT/r.html", "--spot", "-150:0:10"], ["--spot", "percent"]),
    ],
)
def test_report_command_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], fragments: list[str]
) -> None:
    args = [a.replace("OUT", str(tmp_path)) for a in extra]
    assert_usage_error(run(capsys, "report", BOOK, "--market", MARKET, *args), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_report_command_bad_stress_leaves_the_old_page(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    out.write_text("old page", encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[legs]]\nspot = 5\n', encoding="utf-8")
    assert_usage_error(
        run(capsys, "report", BOOK, "--market", MARKET, "--stress", str(bad), "--out", str(out)), "bad.toml"
    )
    assert out.read_text(encoding="utf-8") == "old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "r.html"]


def test_report_command_bad_market_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    market = tmp_path / "m.toml"
    market.write_text("valuation = 2026-13-01\n", encoding="utf-8")
    out = tmp_path / "r.html"
    assert_usage_error(run(capsys, "report", BOOK, "--market", str(market), "--out", str(out)), "m.toml")
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# optmm report with every section, against the library


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, str]:
    return example_page(tmp_path_factory.mktemp("full") / "report.html")


@pytest.fixture(scope="module")
def example_inputs() -> dict[str, object]:
    from optmm.book import Book
    from optmm.market import Market
    from optmm.risk import LimitSet

    return {
        "book": Book.load(EXAMPLE["book"]),
        "market": Market.load(EXAMPLE["market"]),
        "before": Market.load(EXAMPLE["market_before"]),
        "limits": LimitSet.load(EXAMPLE["limits"]),
    }


def test_full_report_has_every_section(full_report: tuple[int, str, str, str]) -> None:
    code, out, err, page = full_report
    assert (code, out, err) == (0, "", "")
    r = PageReader(page)
    assert r.problems == []
    assert not [v for _, k, v in r.attrs if k in ("src", "href") and not v.startswith(("#", "data:"))]
    assert r.sections == list(SECTION_IDS)
    text = " ".join(r.text)
    assert "Not in this report" not in text
    assert not NON_FINITE.search(text), NON_FINITE.search(text)


def test_full_report_limits_are_limit_utilisation(
    full_report: tuple[int, str, str, str], example_inputs: dict
) -> None:
    from optmm.risk.utilisation import limit_utilisation

    ex = example_inputs
    util = limit_utilisation(ex["book"], ex["market"], ex["limits"], pnl=PNL, high_water=HIGH_WATER)
    cells = [t for _, t in PageReader(full_report[3]).section_cells("limits")]
    n_cols = 10  # scope, metric, unit, measured, soft, hard, used, layer, status, set in
    rows = [cells[i : i + n_cols] for i in range(n_cols, len(cells), n_cols)]
    assert len(rows) == len(util)
    d = decimals_for(util["measured"].abs())
    for row, want in zip(rows, util.itertuples(), strict=True):
        assert row[0] == want.scope and row[1] == want.metric
        assert row[3] == figure(want.measured, decimals=d, signed=True)
        assert row[6] == f"{want.used_pct:.1f}%"
        assert row[7] == want.layer.lower() and row[8] == want.status and row[9] == want.limit


def test_full_report_var_is_historical_var(
    full_report: tuple[int, str, str, str], example_inputs: dict
) -> None:
    from optmm.risk.history import load_history
    from optmm.risk.var import historical_var

    ex = example_inputs
    sc = load_history(EXAMPLE["history"]).scenarios(
        ex["book"].underlyings(), ex["market"], horizon=1, proxies={"SPY": ("SPX", 1.0)}
    )
    res = historical_var(ex["book"], ex["market"], sc)
    r = PageReader(full_report[3])
    texts = [t for _, t in r.section_cells("var")]
    for col in ("var", "es"):
        d = decimals_for(res.table[col])
        for v in res.table[col]:
            assert figure(v, decimals=d) in texts, (col, v)
    dates = [t for t in texts if re.match(r"^\d{4}-\d\d-\d\d$", t)]
    assert dates == [pd.Timestamp(d).date().isoformat() for d in res.worst["date"]]
    assert f"over {len(res.pnl):,} historical scenarios" in " ".join(r.text)


def test_full_report_explain_is_pnl_explain(
    full_report: tuple[int, str, str, str], example_inputs: dict
) -> None:
    from optmm.risk.explain import pnl_explain

    ex = example_inputs
    table = pnl_explain(ex["book"], ex["before"], ex["market"]).table
    cells = [t for _, t in PageReader(full_report[3]).section_cells("explain")]
    n_cols = 11
    rows = {r[0]: r[1:] for r in (cells[i : i + n_cols] for i in range(n_cols, len(cells), n_cols))}
    assert list(rows) == [str(u) for u in table.index]
    values = table.to_numpy(dtype=np.float64)
    d = decimals_for(np.abs(values).ravel())
    for u, want in table.iterrows():
        assert rows[str(u)] == [figure(v, decimals=d, signed=True) for v in want[list(EXPLAIN_COLUMNS)]]
