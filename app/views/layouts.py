"""Layouts: one image through every model of the layout study, stage by stage (C or T, Grad-CAM, effective
receptive field, attention from one query point), how alike the same stage of two layouts is, and the
study's figures."""

from __future__ import annotations

import streamlit as st

from analysis import generalisation_ranking
from analysis.figures import (
    LAYOUT_VIEWS,
    gap_figure,
    layout_probes_figure,
    layout_similarity_figure,
    layout_stages_figure,
    size_figure,
)
from app import cache, render, session, widgets
from app.cache import ModelKey

CKA_ASKED = "layout_cka_asked"  # this session asked for the layouts' CKA: shown from then on
STUDY_FOLD, PROBES_FOLD = "layouts_study", "layouts_probes"  # folds made only while open


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
    rows, cols, stride = cache.layout_grid(names, device)
    what = st.radio(
        "Show", tuple(LAYOUT_VIEWS), key="layout_what", format_func=LAYOUT_VIEWS.get, horizontal=True
    )
    view = cache.prepared(ModelKey(names[0], device=device), data).view  # every layout sees the same input
    if what == "attention":  # the query acts on the attention view only: its inputs are shown there
        st.caption(f"The query: a cell of S3's {rows}x{cols} grid, the same point as on every other page.")
        query = widgets.query_picker(view, grid=(rows, cols), stride=stride)
    else:
        query = widgets.query_kept(view, grid=(rows, cols), stride=stride)
    pixel = query.centre(view, grid=(rows, cols), stride=stride) if what == "attention" else None
    views = cache.layout_views(names, data, what, pixel, device)  # what is drawn, and nothing else
    seen = {
        layout: cache.layout_picture(spec, data, device) for layout, spec in zip(views, names, strict=True)
    }
    render.figure(layout_stages_figure(views, seen, what), f"{name}-layouts-{what}")
    st.subheader("How alike the same stage of two layouts is (linear CKA)")
    # every layout model over the whole gallery (seconds): computed when asked, then shared by every session
    if st.session_state.get(CKA_ASKED) or st.button("Compare the layouts' stages", key="layout_cka_go"):
        st.session_state[CKA_ASKED] = True
        similarity = cache.layout_similarity(names, device)
        if similarity is not None:
            render.figure(layout_similarity_figure(similarity), "layouts-cka")
    else:
        st.caption(
            f"Linear CKA between the same stage of every two of the {len(names)} layouts, over the "
            "Fashion-MNIST gallery: a few seconds, computed when asked."
        )
    study = cache.layout_study()
    # below the stages, made when opened: the study's accuracies and where each layout reads the class
    with render.folded("The layout study", key=STUDY_FOLD) as shown:
        if shown and study is None:
            st.caption("The study's results are not installed.")
        elif shown:
            render.figure(size_figure(study), "layouts-size")
            render.figure(gap_figure(study), "layouts-gap")
    if study is None:
        return
    with render.folded("Where each layout reads the class (linear probes)", key=PROBES_FOLD) as shown:
        probes = cache.layout_probes() if shown else None
        if shown and not probes:
            st.caption("No layout probes are installed: make them with `coatnet probe` (docs/causal.md).")
        elif shown:
            render.figure(layout_probes_figure(probes, generalisation_ranking(study)), "layouts-probes")


if __name__ == "__main__":
    render_page()
