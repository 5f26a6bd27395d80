"""Layouts: one image through every model of the layout study, stage by stage (C or T, Grad-CAM, effective
receptive field, attention from one query point), how alike the same stage of two layouts is, and the
study's figures."""

from __future__ import annotations

import streamlit as st

from analysis.figures import (
    LAYOUT_VIEWS,
    gap_figure,
    layout_similarity_figure,
    layout_stages_figure,
    size_figure,
)
from app import cache, render, session


def render_page() -> None:
    names = cache.layout_models()
    if not names:
        st.info(
            "No layout-study checkpoints are installed: train them with `coatnet study-layouts` and ship "
            "them with scripts/ship_layouts.py (docs/layouts.md).",
            icon=":material/info:",
        )
        return
    chosen = session.selection()
    data, name, device = chosen.image.data, chosen.image.name, chosen.key.device
    rows, cols, cell = cache.layout_grid(names, device)
    what = st.radio(
        "Show", tuple(LAYOUT_VIEWS), key="layout_what", format_func=LAYOUT_VIEWS.get, horizontal=True
    )
    left, right = st.columns(2)
    with left:
        y = st.slider(f"Query row ({rows}x{cols} grid of S3)", 0, rows - 1, rows // 2, key="layout_row")
    with right:
        x = st.slider(f"Query column ({rows}x{cols} grid of S3)", 0, cols - 1, cols // 2, key="layout_col")
    point = ((y + 0.5) * cell - 0.5, (x + 0.5) * cell - 0.5)  # the cell's centre in input pixels
    views = cache.layout_views(names, data, point, device)
    seen = {
        layout: cache.layout_picture(spec, data, device) for layout, spec in zip(views, names, strict=True)
    }
    render.figure(layout_stages_figure(views, seen, what), f"{name}-layouts-{what}")
    st.subheader("How alike the same stage of two layouts is (linear CKA)")
    similarity = cache.layout_similarity(names, device)
    if similarity is not None:
        render.figure(layout_similarity_figure(similarity), "layouts-cka")
    st.subheader("The layout study")
    study = cache.layout_study()
    if study is None:
        st.caption("The study's results are not installed.")
        return
    render.figure(size_figure(study), "layouts-size")
    render.figure(gap_figure(study), "layouts-gap")


if __name__ == "__main__":
    render_page()
