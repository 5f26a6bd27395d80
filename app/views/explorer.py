"""Attention explorer: where one query attends, in every head of one block; click a cell to move it."""

from __future__ import annotations

import streamlit as st

from analysis import explainers
from analysis.figures import (
    attention_heads_figure,
    attribution_figure,
    curves_figure,
    fused_attention_figure,
    relevance_figure,
    rollout_figure,
    scores_figure,
)
from app import cache, render, session, widgets
from app.fragments import rerun_alone

MAP_KEY = "explorer_map"


def render_page() -> None:
    chosen = session.selection()
    key, data = chosen.key, chosen.image.data
    picture = cache.prepared(key, data)
    render.image_header(
        picture, cache.predictions(key, data), name=chosen.image.name,
        label=chosen.image.label,
    )  # fmt: skip
    maps = cache.attention(key, data)
    if not maps.blocks:
        st.info("This model has no attention blocks (C-C-C-C): see the Stage inspector and Kernels pages.")
        return
    query_views(chosen, picture, maps)
    explain_class(chosen, picture.seen, widgets.opacity())


@rerun_alone("query", "The query's views")
def query_views(chosen, picture, maps) -> None:
    """Everything that depends on the query (a click on the map moves it): the block's map and every head,
    attention rollout, and their results; reruns alone when a widget in it changes."""
    # the pickers and the query in one row: the map starts within the first screen at 1280 x 900
    pick_block, pick_part, pick_head, pick_query = st.columns([2, 3, 3, 4])
    with pick_block:
        block = maps.block(widgets.block_picker(maps.names))
    with pick_part:
        part = widgets.part_picker(block.mode)
    with pick_head:
        how = widgets.head_picker(block.effective.shape[1])
    with pick_query:
        query = widgets.query_picker(picture.view, grid=block.grid, stride=block.stride)
    row, col = query.nearest_cell(picture.view, grid=block.grid, stride=block.stride)
    index = query.index(picture.view, grid=block.grid, stride=block.stride)
    name = f"{chosen.image.name}-{block.name}-{part}-q{row}-{col}"
    opacity = widgets.opacity()
    st.caption("Click a cell to make it the query; hover for its weight, offset and distance.")
    render.figure(
        fused_attention_figure(block, picture.seen, index, part=part, how=how, opacity=opacity),
        f"{name}-{how}", key=MAP_KEY, on_select=lambda: widgets.take_click(MAP_KEY),
    )  # fmt: skip
    selected = int(how) if str(how).isdigit() else None  # one head shown large: framed in the overview
    heads = attention_heads_figure(block, picture.seen, index, part=part, opacity=opacity, selected=selected)
    # the figures a click redraws keep their download buttons (a key that changed drew each anew)
    render.figure(heads, f"{name}-heads", key="explorer_heads")

    st.subheader("Attention rollout")
    st.caption(
        "Attention of every block composed with the residual path (0.5 A + 0.5 I), through the pooling "
        "between S3 and S4, down to the first attention block's grid."
    )
    source = st.radio(
        "Rollout", ("from this query", "averaged over queries"), key="rollout_from", horizontal=True
    )
    last = maps.blocks[-1]  # the rollout's query: the same point on the last block's grid
    rollout_query = query.index(picture.view, grid=last.grid, stride=last.stride)
    key, data = chosen.key, chosen.image.data
    rollout = cache.rollout(key, data, rollout_query if source == "from this query" else None)
    render.figure(
        rollout_figure(rollout, picture.seen, opacity=opacity),
        f"{chosen.image.name}-rollout",
        key="explorer_rollout",
    )
    with st.expander("Download the results"):
        origin = f"q{row}-{col}" if rollout.query is not None else "mean"
        render.result_downloads(
            maps, f"{chosen.image.name}-attention-every-block",
            label="Attention of every block: content logits, content, bias, effective weights; the logits",
            about=session.about(chosen, block=block.name, query=[row, col], part=part),
        )  # fmt: skip
        render.result_downloads(
            rollout, f"{chosen.image.name}-rollout-{origin}",
            label=f"Attention rollout ({rollout.label})",
            about=session.about(chosen, block=block.name, query=[row, col]), key="explorer_rollout",
        )  # fmt: skip


def relevance_methods() -> dict[str, str]:
    """The methods of the class picker, name: label: the registry's class-specific methods that read
    attention (relevance and gradient-weighted rollout) and those whose map is one forward and one backward
    pass (layer-wise relevance, :attr:`analysis.Explainer.one_pass`)."""
    return {
        e.name: e.label for e in explainers()
        if e.class_specific and e.stages is None and (e.needs_attention or e.one_pass)
    }  # fmt: skip


ABOUT_RELEVANCE = (
    "Attention weighted by the class logit's gradient, block by block (R <- R + mean over heads of "
    "(grad A * A)+), through the pooling between S3 and S4; the map is the mean over the pooled "
    "output's positions. Rollout above is the same for every class; this is not."
)
ABOUT_LRP = (
    "The class logit's relevance propagated back to each pixel through every layer, convolution and "
    "attention alike, by the rule's table (docs/explanations.md); the Stage inspector draws where it flows."
)


def explain_class(chosen, seen, opacity: float) -> None:
    """Class-specific relevance for a chosen class, and below it, on request, how faithful every
    explanation of the predicted class is (deletion, insertion, ROAD)."""
    key, data = chosen.key, chosen.image.data
    st.subheader("Explain a class")
    about = st.empty()  # what the chosen method does, once chosen below
    pick_class, pick_method = st.columns([2, 1])
    with pick_class:
        target = widgets.class_picker(
            cache.predictions(key, data, k=widgets.ALL_CLASSES), (key, cache.image_id(data)),
            label="Explain class", key="explain_class",
        )  # fmt: skip
    with pick_method:
        methods = relevance_methods()
        method = st.radio("Method", tuple(methods), key="explain_method", format_func=methods.get)
    name = f"{chosen.image.name}-{method}-class-{target}"
    if not next(e for e in explainers() if e.name == method).needs_attention:  # one pass to the pixels
        about.caption(ABOUT_LRP)
        render.figure(attribution_figure(cache.class_attribution(key, data, method, target), seen,
                                         opacity=opacity), name)  # fmt: skip
        faithfulness_curves(chosen)
        return
    about.caption(ABOUT_RELEVANCE)
    found = cache.relevance(key, data, target, method)
    render.figure(relevance_figure(found, seen, opacity=opacity), name)
    with st.expander("Download the relevance"):
        render.result_downloads(
            found, f"{chosen.image.name}-{found.method}-class-{found.targets[0]}",
            label=f"Class-specific {found.label}", about=session.about(chosen),
        )  # fmt: skip
    faithfulness_curves(chosen)


def faithfulness_curves(chosen) -> None:
    """Deletion and insertion curves and ROAD of every explanation method, asked for with a button."""
    key, data = chosen.key, chosen.image.data
    st.subheader("Which explanation to trust")
    report = widgets.on_request(
        cache.faithfulness, key, data, working="Faithfulness", button="Measure faithfulness",
        button_key="faith_go",
        note="Deletes and inserts pixels in the order of each explanation of the predicted class (rollout, "
        "relevance, gradient rollout, Grad-CAM at each stage, Integrated Gradients, occlusion, random) "
        "and measures ROAD: a few seconds at 28 px, minutes at 224 on a CPU. Computed when asked.",
    )  # fmt: skip
    if report is None:
        return
    name = chosen.image.name
    render.figure(curves_figure(report, "deletion"), f"{name}-deletion")
    render.figure(curves_figure(report, "insertion"), f"{name}-insertion")
    render.figure(
        scores_figure(
            report.results, f"Faithfulness of each explanation of {report.target_name or report.target}"
        ),
        f"{name}-faithfulness",
    )
    st.caption(
        "Protocol: docs/explanations.md. The random map is the floor; its spread over 5 seeds is drawn."
    )


if __name__ == "__main__":
    render_page()
