"""A whole view as one zip: every figure of a page (HTML, and PNG where Chromium is present), its results
(JSON and NPZ, each with what it is about), and the link that shows the view again.

The files are the ones a page offers one by one (:mod:`analysis.report.export`); ``README.txt`` says what
the view is, where its link leads and what is missing, and ``view.json`` says the same for a program."""

from __future__ import annotations

import io
import json
import re
import socket
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go

from analysis.figures.names import figure_name
from analysis.report.export import (
    ExportError,
    browser_available,
    figure_html,
    figure_png,
    result_json,
    result_npz,
)

NO_PNG = (
    "No PNG files: PNG export needs Chromium on the machine that makes the zip\n"
    "(Debian: `apt-get install chromium`); meanwhile each HTML page's camera button saves its figure."
)


def view_zip(
    figures: Sequence[tuple[str, go.Figure]],
    results: Sequence[tuple[str, Any, dict[str, Any]]],
    *,
    link: str,
    title: str,
    png: bool | None = None,
) -> bytes:
    """One zip of a view: ``figures/<name>.html`` (self-contained: it opens offline) and
    ``figures/<name>.png`` for every figure, ``results/<name>.json`` and ``results/<name>.npz`` for every
    result, ``README.txt`` for a person and ``view.json`` for a program.

    File names are made safe (letters, digits, ``.``, ``_`` and ``-``) and unique (a second ``maps``
    becomes ``maps-2``). The README gives the title, the link, when and on which machine the zip was made,
    and every file (a figure with its stable name, :func:`analysis.figures.names.figure_name`); without
    PNGs it says why and how to get them, and a PNG that failed is named with its reason.

    Args:
        figures: (name, figure) for every figure of the view, in the page's order.
        results: (name, result, about) for every result the view offers: each goes in as
            :func:`~analysis.report.result_json` and :func:`~analysis.report.result_npz` write it, with
            ``about`` (the model, its provenance, the image...).
        link: the link that shows the view again; the app gives it relative to its server
            (``/stages?source=demo&model=demo-pre``): the machine's address goes before it.
        title: what the view is (the page, the model, the image), the README's first line.
        png: draw PNGs; None (the default) draws them where Chromium is present
            (:func:`~analysis.report.browser_available`).

    Returns:
        The zip's bytes.

    Examples:
        >>> import io, zipfile
        >>> import numpy as np
        >>> import plotly.graph_objects as go
        >>> from analysis.report import view_zip
        >>> data = view_zip(
        ...     [("bars", go.Figure(go.Bar(y=[1, 2])))],
        ...     [("counts", {"n": np.arange(3)}, {"image": "shirt.png"})],
        ...     link="/stages?source=demo&model=demo-pre", title="Stage inspector", png=False,
        ... )
        >>> archive = zipfile.ZipFile(io.BytesIO(data))
        >>> sorted(archive.namelist())
        ['README.txt', 'figures/bars.html', 'results/counts.json', 'results/counts.npz', 'view.json']
        >>> print(archive.read("README.txt").decode().splitlines()[2])
        Link: /stages?source=demo&model=demo-pre
    """
    png = browser_available() if png is None else png
    taken: set[str] = set()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        listed, notes = _write_figures(archive, figures, png=png, taken=taken)
        stored = []
        for name, result, about in results:
            stem = _unique(f"results/{_safe(name)}", taken)
            archive.writestr(f"{stem}.json", result_json(result, about))
            archive.writestr(f"{stem}.npz", result_npz(result, about))
            stored.append({"json": f"{stem}.json", "npz": f"{stem}.npz"})
        view = {
            "title": title,
            "link": link,
            "made": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "host": socket.gethostname(),
            "figures": listed,
            "results": stored,
            "notes": notes,
        }
        archive.writestr("view.json", json.dumps(view, indent=1))
        archive.writestr("README.txt", _readme(view))
    return buffer.getvalue()


def _write_figures(
    archive: zipfile.ZipFile, figures: Sequence[tuple[str, go.Figure]], *, png: bool, taken: set[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each figure's HTML (and PNG) into ``archive``; returns what was written, and what is missing why."""
    listed: list[dict[str, Any]] = []
    notes = [] if png or not figures else [NO_PNG]
    for name, figure in figures:
        stem = _unique(f"figures/{_safe(name)}", taken)
        entry = {"name": figure_name(figure), "title": _title(figure), "html": f"{stem}.html", "png": None}
        archive.writestr(entry["html"], figure_html(figure))
        if png:
            try:
                archive.writestr(f"{stem}.png", figure_png(figure))
                entry["png"] = f"{stem}.png"
            except ExportError as error:  # the view is still worth having: the README says which and why
                notes.append(f"No PNG of {stem}: {error}")
        listed.append(entry)
    return listed, notes


def _readme(view: dict[str, Any]) -> str:
    link = view["link"]
    lines = [
        view["title"],
        "",
        f"Link: {link}",
        "  The link is relative to the server that made this zip (a server does not know the address it is",
        f"  reached by): put the app's address before it, e.g. http://localhost:8501{link}, to see this view",
        "  again.",
        f"Made: {view['made']}, by CoAtNet Lens on the machine {view['host']}.",
        "",
        "Figures: each as a self-contained HTML page (it opens offline), and as a PNG where one was made.",
        *view["notes"],
    ]
    for entry in view["figures"]:
        files = ", ".join(f for f in (entry["html"], entry["png"]) if f)
        title = f" ({entry['title']})" if entry["title"] else ""
        lines.append(f"  {files}: {entry['name'] or 'a figure'}{title}")
    if not view["figures"]:
        lines.append("  none on this view")
    lines += ["", "Results: each as JSON and NPZ, both with what it is about (the model, the image...)."]
    lines += [f"  {entry['json']}, {entry['npz']}" for entry in view["results"]] or ["  none on this view"]
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    """A file-name-safe version of ``name``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.").lower() or "file"


def _unique(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... whichever is not yet taken (and take it)."""
    found, count = stem, 1
    while found in taken:
        count += 1
        found = f"{stem}-{count}"
    taken.add(found)
    return found


def _title(figure: go.Figure) -> str:
    """The figure's title as a person reads it, on one line."""
    plain = re.sub(r"<[^>]+>", " ", figure.layout.title.text or "").replace("\u00a0", " ")
    return " ".join(plain.split())
