"""One self-contained HTML page of a book's risk (``optmm report``): exposures, limit utilisation,
the scenario heatmap, stresses with their legs, historical VaR / ES and P&L explain.

:func:`render_page` assembles :class:`Section` objects, each made by a renderer of
:mod:`optmm.report.sections` from what the library returns; the page needs no network to open
(inline style and script, ``data:`` images, a Content-Security-Policy that loads nothing else).
"""

from optmm.report.page import Section, render_page
from optmm.report.sections import (
    explain_section,
    exposures_section,
    heatmap_section,
    limits_section,
    stresses_section,
    var_section,
)

__all__ = [
    "Section",
    "explain_section",
    "exposures_section",
    "heatmap_section",
    "limits_section",
    "render_page",
    "stresses_section",
    "var_section",
]
