"""The self-contained HTML report of ``coatnet analyze``: Plotly figures with plotly.js inlined once and
each picture once, so the file opens offline, plus the numbers as ``results.npz`` and ``results.json``."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analysis.core.summaries import to_jsonable
from analysis.report.export import result_npz
from coatnet.files import atomic_write, write_text

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


INLINE_ELEMENTS = 4096  # arrays up to this size are written into results.json; larger ones only to the NPZ
# a picture in a figure's JSON, as plotly writes it ("/" may be escaped as \u002f: one character class,
# backslash included, is many times faster on a report's megabytes than an alternation)
_PICTURE = re.compile(r'"(data:image(?:/|\\u002f)(?:png|jpeg);base64,[A-Za-z0-9+=/\\]+)"')
# a long binary array in a figure's JSON (plotly writes numpy arrays as base64 "bdata"): the per-cell hover
# data of a block's maps is the same for every head and part, so it too is stored once
_ARRAY = re.compile(r'"bdata":\s*"([A-Za-z0-9+=/\\]{256,})"')


def write_report(out_dir: str | Path, title: str, sections: list[Section], results: dict[str, Any]) -> Path:
    """Write ``out_dir/report.html`` (self-contained, offline: plotly.js inlined once, and each picture
    and each long binary array once however many figures hold it), ``out_dir/results.npz`` (every
    array, keyed by its path) and ``out_dir/results.json`` (the same, with arrays over
    ``INLINE_ELEMENTS`` values replaced by their shape and NPZ key)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = html_page(title, sections)
    atomic_write(out_dir / "results.npz", lambda tmp: Path(tmp).write_bytes(result_npz(results)))
    summary = _summarised(to_jsonable(results), "")
    write_text(out_dir / "results.json", json.dumps(summary, indent=1) + "\n")
    return write_text(out_dir / "report.html", page)


def html_page(title: str, sections: list[Section]) -> str:
    """One self-contained HTML page of ``sections`` (plotly.js inlined, each picture and each long
    binary array stored once), as ``coatnet analyze`` and ``coatnet study`` write them."""
    counter = iter(range(1_000_000))
    body = "".join(_section(s, 2, counter) for s in sections)
    body, pictures = _shared(body, _PICTURE, "PICTURES")
    body, arrays = _shared(body, _ARRAY, "ARRAYS", '"bdata": ')
    nav = "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script>"
        f"<script>const PICTURES = {json.dumps(pictures)}; const ARRAYS = {json.dumps(arrays)};</script>"
        "</head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>" + body + "</body></html>"
    )
    return _anchor_sections(page, len(sections))


def _shared(body: str, pattern: re.Pattern, name: str, prefix: str = "") -> tuple[str, list[str]]:
    """Each string ``pattern`` finds (group 1: a picture's data URI, a long binary array) stored once in
    the JavaScript array ``name``: figures refer to ``name[i]`` (after ``prefix``)."""
    found: dict[str, int] = {}

    def refer(match: re.Match) -> str:
        index = found.setdefault(match[1].replace("\\u002f", "/"), len(found))
        return f"{prefix}{name}[{index}]"

    return pattern.sub(refer, body), list(found)


def _summarised(value: Any, path: str) -> Any:
    """A JSON value with every list of over ``INLINE_ELEMENTS`` numbers replaced by where it is in the NPZ."""
    if isinstance(value, dict):
        return {k: _summarised(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        size = _numbers(value)
        if size is not None and size > INLINE_ELEMENTS:
            return {"in": "results.npz", "key": path, "shape": list(np.asarray(value).shape)}
        return [_summarised(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    return value


def _numbers(value: list) -> int | None:
    """How many numbers a nested list of numbers holds, or None when it holds anything else."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        return None
    return int(array.size) if array.dtype.kind in "fiub" else None


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
