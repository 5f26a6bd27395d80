"""Drawing figures and offering their downloads: every figure as HTML (and PNG where Chromium is
present), every result as JSON or NPZ. Downloads are made when clicked (Streamlit calls the function
then, on its own thread), so a page pays nothing for them while it draws; a failed PNG export shows
Streamlit's "Failed to generate file for download", never a traceback."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from analysis.export import browser_available, figure_html, figure_png, result_json, result_npz

CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "figure"


def figure(
    fig: go.Figure, name: str, *, key: str | None = None, on_select: Callable[[], None] | None = None
) -> None:
    """Draw ``fig`` full width, with HTML and PNG downloads named after ``name``. With ``on_select``, a
    click on a point (one cell marker) calls it; the chart's state is under ``key``."""
    fig.update_layout(title_font_size=14)
    if on_select is not None:
        st.plotly_chart(
            fig, key=key, on_select=on_select, selection_mode="points", config=CONFIG, width="stretch"
        )
    else:
        st.plotly_chart(fig, key=key, config=CONFIG, width="stretch")
    downloads(fig, name)


def downloads(fig: go.Figure, name: str) -> None:
    """HTML (self-contained) and PNG download buttons for one figure."""
    base = slug(name)
    html, png = st.columns(2, width=260)
    html.download_button(
        "HTML", lambda: figure_html(fig), file_name=f"{base}.html", mime="text/html",
        key=f"html-{base}", on_click="ignore", icon=":material/download:",
    )  # fmt: skip
    if browser_available():
        png.download_button(
            "PNG", lambda: figure_png(fig), file_name=f"{base}.png", mime="image/png",
            key=f"png-{base}", on_click="ignore", icon=":material/download:",
        )  # fmt: skip


def result_downloads(result: Any, name: str) -> None:
    """JSON and NPZ download buttons for one analysis result."""
    base = slug(name)
    as_json, as_npz = st.columns(2, width=260)
    as_json.download_button(
        "JSON", lambda: result_json(result), file_name=f"{base}.json", mime="application/json",
        key=f"json-{base}", on_click="ignore", icon=":material/data_object:",
    )  # fmt: skip
    as_npz.download_button(
        "NPZ", lambda: result_npz(result), file_name=f"{base}.npz", mime="application/octet-stream",
        key=f"npz-{base}", on_click="ignore", icon=":material/data_array:",
    )  # fmt: skip


def image_header(original, seen, predictions, *, name: str, label: str | None) -> None:
    """The image as given and as the model sees it, beside the top-5 predictions."""
    from analysis.figures import predictions_figure

    left, middle, right = st.columns([1, 1, 2])
    left.image(original, caption=f"{name} as given" + (f" (true class: {label})" if label else ""), width=200)
    middle.image(seen, caption=f"what the model sees: {seen.shape[1]}x{seen.shape[0]}", width=200, clamp=True)
    with right:
        st.plotly_chart(predictions_figure(predictions), config=CONFIG, width="stretch", key="top5")
