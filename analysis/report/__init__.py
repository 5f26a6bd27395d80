"""The offline HTML report and exports (JSON, npz, HTML, PNG, a whole view as a zip), and every report section
built from a result.
Imports figures and everything below."""

from __future__ import annotations

from analysis.report.export import (
    ExportError,
    browser_available,
    figure_html,
    figure_png,
    result_json,
    result_npz,
)
from analysis.report.html import Section, html_page, write_report
from analysis.report.sections import faithfulness_section, layout_sections, sanity_section, study_sections
from analysis.report.view import view_zip

__all__ = [
    "ExportError",
    "Section",
    "browser_available",
    "faithfulness_section",
    "figure_html",
    "figure_png",
    "html_page",
    "layout_sections",
    "result_json",
    "result_npz",
    "sanity_section",
    "study_sections",
    "view_zip",
    "write_report",
]
