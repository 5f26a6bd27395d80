"""Layouts: one image through every model of the layout study, stage by stage (C or T, Grad-CAM, effective
receptive field, attention from one query point), how alike the same stage of two layouts is, and the
study's figures."""

from __future__ import annotations

import streamlit as st

from analysis.layouts import WHAT, gap_figure, layout_similarity_figure, layout_stages_figure, size_figure
from app import cache, render, session

QUERY_KEY = "layout_query"


def render_page() -> None:
    names = cache.layout_models()
    if not names:
        st.info(
            "No layout-study checkpoints are installed: train them with `coatnet study-layouts` "
            "(docs/model-family.md).",
            icon=":material/info:",
        )
        return
    chosen = session.selection()
    data, name = chosen.image.data, chosen.image.name
    what = st.radio("Show", tuple(WHAT), key="layout_what", format_func=WHAT.get, horizontal=True)
    row, col = st.columns(2)
    with row:
        y = st.slider("Query row (7x7 grid)", 0, 6, 3, key="layout_row")
    with col:
        x = st.slider("Query column (7x7 grid)", 0, 6, 3, key="layout_col")
    point = (y * 4 + 1.5, x * 4 + 1.5)  # the cell's centre in the 28x28 input (4 pixels a cell)
    views = cache.layout_views(names, data, point)
    seen = {layout: cache.layout_picture(spec, data) for layout, spec in zip(views, names, strict=True)}
    render.figure(layout_stages_figure(views, seen, what), f"{name}-layouts-{what}")
    st.subheader("How alike the same stage of two layouts is (linear CKA)")
    similarity = cache.layout_similarity(names)
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
