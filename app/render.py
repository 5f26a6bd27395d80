"""Drawing figures and offering their downloads: every figure as HTML (and PNG where Chromium is
present), every result as JSON or NPZ. Downloads are made when clicked (Streamlit calls the function
then, on its own thread), so a page pays nothing for them while it draws; a failed PNG export shows
Streamlit's "Failed to generate file for download", never a traceback.

What a run draws is recorded in this session's state (never a global: one server serves many sessions,
each run on its own thread), so that "Download this view" (:func:`view_download`) zips the page whole."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from analysis.figures import MAX_WIDTH, column_width, drawn_at
from analysis.report import browser_available, figure_html, figure_png, result_json, result_npz, view_zip

CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
EXPANDER_PX = 40  # an expander's border and padding, both sides: its content is this much narrower


@contextmanager
def folded(label: str, *, key: str | None = None) -> Iterator[bool]:
    """``st.expander(label)`` whose figures are laid out for its inner width (the column's, less its
    border and padding): a figure as wide as the column would overflow it and be squeezed. Yields whether
    its content is to be made: with a ``key``, only while it is open (opening it reruns the page, and
    ``st.session_state[key]`` says whether it is open), so that a page computes and sends nothing folded
    away; without one, always."""
    expander = st.expander(label, key=key, on_change="rerun") if key else st.expander(label)
    with expander, drawn_at((column_width() or MAX_WIDTH) - EXPANDER_PX):
        yield bool(expander.open) if key else True


DRAWN = "drawn_this_run"  # the session-state key of this run's Drawn
_PART: ContextVar[str | None] = ContextVar("lens_drawing_part", default=None)  # None: the page's own run


@dataclass
class Drawn:
    """What this run of the page drew, per part: the page's run (None) and each part of it that reruns
    alone (:func:`part`), each (file names and figures, file names, results and their about), in order;
    and the parameters of the view's link (``app.main`` sets them; a part that reruns alone updates
    them)."""

    parts: dict[str | None, tuple[list, list]] = field(default_factory=lambda: {None: ([], [])})
    params: dict[str, str] = field(default_factory=dict)

    @property
    def figures(self) -> list[tuple[str, go.Figure]]:
        """(file name, figure) of every part, the page's first."""
        return [drawn for figures, _ in list(self.parts.values()) for drawn in figures]

    @property
    def results(self) -> list[tuple[str, Any, dict[str, Any]]]:
        """(file name, result, about) of every part, the page's first."""
        return [drawn for _, results in list(self.parts.values()) for drawn in results]

    def drawing(self) -> tuple[list, list]:
        """The lists of figures and results of the part drawing now."""
        return self.parts.setdefault(_PART.get(), ([], []))


def start_view() -> None:
    """Begin this run's record of what the page draws (``main`` calls it before the page runs)."""
    st.session_state[DRAWN] = Drawn()


def drawn() -> Drawn:
    """What this run has drawn so far."""
    return st.session_state.setdefault(DRAWN, Drawn())


@contextmanager
def part(name: str) -> Iterator[None]:
    """Record what is drawn inside as the part ``name`` of the view, in place of what it drew before (a
    part that reruns alone, ``st.fragment``, draws again without the rest of the page)."""
    record = drawn()
    record.parts[name] = ([], [])
    token = _PART.set(name)
    try:
        yield
    finally:
        _PART.reset(token)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "figure"


def figure(
    fig: go.Figure, name: str, *, key: str | None = None, on_select: Callable[[], None] | None = None
) -> None:
    """Draw ``fig`` as :mod:`analysis.figures.panels` laid it out (a figure of maps at its own size in pixels,
    a chart across the column; Plotly's own look, as in the report and the downloads), with HTML and PNG
    downloads named after ``name``. With ``on_select``, a click on a point (one cell marker) calls it; the
    chart's state is under ``key``."""
    width = "content" if fig.layout.width else "stretch"
    if on_select is not None:
        st.plotly_chart(
            fig, key=key, on_select=on_select, selection_mode="points", config=CONFIG, width=width, theme=None
        )
    else:
        st.plotly_chart(fig, key=key, config=CONFIG, width=width, theme=None)
    drawn().drawing()[0].append((slug(name), fig))
    downloads(fig, name, key=key)


def downloads(fig: go.Figure, name: str, *, key: str | None = None) -> None:
    """HTML (self-contained) and PNG download buttons for one figure, their files named after ``name``;
    with ``key`` (a figure kept across runs: a click on a map moves its name), the buttons are kept too."""
    buttons = [("HTML", lambda: figure_html(fig), "html", "text/html", ":material/download:")]
    if browser_available():
        buttons.append(("PNG", lambda: figure_png(fig), "png", "image/png", ":material/download:"))
    _buttons(slug(name), buttons, key=key)


def result_downloads(
    result: Any, name: str, *, label: str, about: dict[str, Any], key: str | None = None
) -> None:
    """JSON and NPZ download buttons for one analysis result, under a line saying what it holds; both
    files carry ``about`` (:func:`app.session.about`: the model, its provenance, the image...). With
    ``key``, the buttons are kept across runs that rename the files (:func:`downloads`)."""
    drawn().drawing()[1].append((slug(name), result, about))
    st.caption(label)
    _buttons(
        slug(name),
        [
            (
                "JSON",
                lambda: result_json(result, about),
                "json",
                "application/json",
                ":material/data_object:",
            ),
            (
                "NPZ",
                lambda: result_npz(result, about),
                "npz",
                "application/octet-stream",
                ":material/data_array:",
            ),
        ],
        key=key,
    )


def view_download(link: Callable[[dict[str, str]], str], title: str, *, name: str) -> None:
    """The "Download this view" button: a zip (``<name>-view.zip``) of every figure and result this run drew
    (a part that reran alone since: as it drew), with the view's server-relative link (``link`` of
    :attr:`Drawn.params`) and ``title`` (what the view is), made when clicked
    (:func:`analysis.report.view_zip`)."""
    record = drawn()  # this run's, whatever runs next: a new run records into a new Drawn
    st.download_button(
        "Download this view",
        lambda: view_zip(record.figures, record.results, link=link(dict(record.params)), title=title),
        file_name=f"{slug(name)}-view.zip",
        mime="application/zip",
        key="view-download",
        on_click="ignore",
        icon=":material/folder_zip:",
        width="stretch",
        help="Every figure of this page as HTML (and PNG where Chromium is present), its results as JSON and "
        "NPZ, and the link that shows this view again, in one zip",
    )


def _buttons(
    base: str, buttons: list[tuple[str, Callable[[], Any], str, str, str]], *, key: str | None = None
) -> None:
    """A row of download buttons, each made when clicked: (label, make, file suffix, MIME type, icon); the
    files named ``base``, the buttons' keys made of ``key`` where given (else ``base``)."""
    for column, (label, make, suffix, mime, icon) in zip(st.columns(2, width=260), buttons, strict=False):
        column.download_button(
            label, make, file_name=f"{base}.{suffix}", mime=mime, key=f"{suffix}-{key or base}",
            on_click="ignore", icon=icon,
        )  # fmt: skip


def image_header(picture, predictions, *, name: str, label: str | None) -> None:
    """The image as given and as the model sees it (an ``app.cache.Prepared``), beside the top-5
    predictions and, for a picture the model was not made for, what was done to it and what the model
    knows."""
    from analysis.figures import predictions_figure

    # the pictures fill their columns (no overlap at any width), small: the page's maps come first
    left, middle, right = st.columns([1, 1, 3])
    caption = f"{name} as given" + (f" (true class: {label})" if label else "")
    left.image(picture.original, caption=caption, width="stretch")
    seen = picture.seen
    middle.image(
        seen, caption=f"what the model sees: {seen.shape[1]}x{seen.shape[0]}", width="stretch", clamp=True
    )
    with right:
        chart = predictions_figure(predictions)
        if picture.warning:  # beside the prediction it qualifies
            st.warning(
                picture.warning[0].upper() + picture.warning[1:], icon=":material/photo_size_select_small:"
            )
        st.plotly_chart(chart, config=CONFIG, width="stretch", key="top5", theme=None)
        drawn().drawing()[0].append((slug(f"{name}-top5"), chart))
        if picture.note:
            st.caption(f":material/info: {picture.note}")
