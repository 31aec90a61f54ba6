"""The report page: a head with its inline style, a header (what was valued, in which market, when),
a table of contents and one ``<section id=...>`` per section.

The page is self-contained: its style and its one small script are inline, its images ``data:``
URLs, and a Content-Security-Policy forbids loading anything else, so it opens the same with no
network. The script records any JavaScript error into ``<body data-errors>`` and sets
``<body data-ready="1">`` once the page has loaded (what a headless browser test reads).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from optmm.report.html import esc

__all__ = ["CSP", "Section", "render_page"]

#: Nothing but this page's own inline style, inline script and data: images.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_ID = re.compile(r"^[a-z][a-z0-9-]*$")

_STYLE = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce3; --neg: #b42318; --bg: #ffffff; --band: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.5rem 2rem 3rem; color: var(--fg); background: var(--bg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header h1 { margin: 0 0 .4rem; font-size: 1.6rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; margin: .5rem 0 1rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
nav ol { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; padding: 0; margin: 0 0 1rem; list-style: none; }
nav a { color: #1f5fbf; text-decoration: none; }
p.absent { color: var(--muted); margin: 0 0 1rem; }
section { border-top: 2px solid var(--line); padding-top: .6rem; margin-top: 1.4rem; }
section h2 { font-size: 1.25rem; margin: 0 0 .4rem; }
section h3 { font-size: 1.02rem; margin: 1rem 0 .3rem; }
p.note { color: var(--muted); margin: .3rem 0 .6rem; max-width: 70rem; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .3rem 0 .8rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: .3rem; }
th, td { padding: .25rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
thead th { vertical-align: bottom; text-align: right; background: var(--band); font-weight: 600;
  white-space: normal; max-width: 8.5rem; }
thead th:first-child { text-align: left; }
tbody th { text-align: left; font-weight: 600; }
th .label { display: block; }
th .unit { display: block; font-weight: 400; font-size: .8em; color: var(--muted); }
td.num { text-align: right; }
td.neg { color: var(--neg); }
td.missing { color: var(--muted); text-align: center; }
tr.total th, tr.total td { border-top: 2px solid var(--fg); font-weight: 600; }
tr.worst th, tr.worst td { font-weight: 700; }
table.heat td { color: #111; text-align: right; min-width: 4.6rem; }
table.heat td.worst { outline: 3px solid #000; outline-offset: -3px; font-weight: 700; }
span.status { display: inline-block; padding: 0 .5rem; border-radius: .6rem; font-size: .85em; }
.st-ok { background: #dff3e4; } .st-soft { background: #fdeccb; } .st-hard { background: #f9d2cf; }
img { max-width: 100%; height: auto; }
"""

_SCRIPT = """
(function () {
  var errors = [];
  function note(text) {
    errors.push(String(text));
    if (document.body) { document.body.dataset.errors = errors.join("\\n"); }
  }
  window.addEventListener("error", function (e) {
    note(e.message || "error loading " + (e.target && e.target.src));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { note(e.reason); });
  window.addEventListener("load", function () {
    document.body.dataset.sections = String(document.querySelectorAll("section[id]").length);
    document.body.dataset.ready = "1";
  });
})();
"""


@dataclass(frozen=True)
class Section:
    """One section of the page: its id (the anchor, lower case), its title and its HTML body."""

    id: str
    title: str
    body: str

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"section id {self.id!r}: lower-case letters, digits and '-' only")

    def html(self) -> str:
        return f'<section id="{self.id}"><h2>{esc(self.title)}</h2>{self.body}</section>'


def render_page(
    title: str,
    sections: Sequence[Section],
    *,
    meta: Sequence[tuple[str, str]] = (),
    absent: Sequence[str] = (),
) -> str:
    """The whole page as text.

    Parameters
    ----------
    title : str
        The page's title and heading.
    sections : sequence of Section
        In order; their ids must be distinct.
    meta : sequence of (name, value)
        What the report is of (the book, the market and its valuation, ...), shown under the title.
    absent : sequence of str
        Sections left out and why (``"limit utilisation: no --limits given"``), listed under the
        table of contents.
    """
    ids = [s.id for s in sections]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"report: section id {dup[0]!r} is used twice")
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta)
    toc = "".join(f'<li><a href="#{s.id}">{esc(s.title)}</a></li>' for s in sections)
    missing = '<p class="absent">Not in this report: ' + esc("; ".join(absent)) + ".</p>" if absent else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<script>{_SCRIPT}</script>\n"
        f'<header><h1>{esc(title)}</h1><dl class="meta">{dl}</dl>'
        f'<nav aria-label="sections"><ol>{toc}</ol></nav>{missing}</header>\n<main>\n'
        + "\n".join(s.html() for s in sections)
        + "\n</main>\n</body>\n</html>\n"
    )
