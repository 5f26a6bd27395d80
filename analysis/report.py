"""The self-contained HTML report of ``coatnet analyze``: Plotly figures with plotly.js inlined once, so the
file opens offline, plus the numbers as ``results.json``."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analysis._common import to_jsonable
from coatnet.files import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; } p.note { color: #555; max-width: 60rem; }
nav a { margin-right: 1rem; } table { border-collapse: collapse; } td, th { padding: 2px 10px; }
.error { color: #a00; }
"""


@dataclass
class Section:
    """One part of the report: a title, a few sentences, figures and sub-sections."""

    title: str
    text: str = ""
    figures: list[go.Figure] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)


def write_report(out_dir: str | Path, title: str, sections: list[Section], results: dict[str, Any]) -> Path:
    """Write ``out_dir/report.html`` (self-contained, offline) and ``out_dir/results.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1_000_000))
    body = "".join(_section(s, 2, counter) for s in sections)
    nav = "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>" + body + "</body></html>"
    )
    page = _anchor_sections(page, len(sections))
    write_text(out_dir / "results.json", json.dumps(to_jsonable(results), indent=1) + "\n")
    return write_text(out_dir / "report.html", page)


def _section(section: Section, level: int, counter) -> str:
    parts = [f"<h{level} data-top='{int(level == 2)}'>{html.escape(section.title)}</h{level}>"]
    if section.text:
        parts.append(f"<p class='note'>{html.escape(section.text)}</p>")
    for figure in section.figures:
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{next(counter)}"))
    parts += [_section(child, min(level + 1, 4), counter) for child in section.children]
    return "".join(parts)


def _anchor_sections(page: str, count: int) -> str:
    for i in range(count):
        page = page.replace("<h2 data-top='1'>", f"<h2 id='s{i}'>", 1)
    return page
