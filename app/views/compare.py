"""Pre vs post: two models on the same image and the same query."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from analysis import Query, shared_blocks
from analysis.figures import (
    MAX_WIDTH,
    bias_kernel_figure,
    block_comparison_figures,
    column_width,
    comparison_summary_figures,
    drawn_at,
    fused_attention_figure,
    side_by_side_figures,
)
from app import cache, errors, render, session, widgets
from app.cache import ModelKey
from coatnet.weights import DEMO_NAMES, MAXVIT_NAMES

OTHER_DEMO, OTHER_MODE = "the other built-in checkpoint", "the same weights, other normalization"
OTHER_FAMILY = "the built-in of the other family"  # demo-pre (global attention) against demo-maxvit
OTHER_MODEL = "another model"
MAP_KEY = "compare_map"
HEADS_FOLD, KERNELS_FOLD = "compare_heads", "compare_kernels"  # folds made only while open


def other_family(spec: str) -> str | None:
    """The built-in checkpoint of the other attention family: demo-maxvit (block and grid attention at
    every stage) for demo-pre / demo-post, demo-pre (global attention at S3-S4) for demo-maxvit."""
    if spec in DEMO_NAMES:
        return MAXVIT_NAMES[0]
    return DEMO_NAMES[0] if spec in MAXVIT_NAMES else None


def pair(key: ModelKey, mode: str, how: str, other: str = "") -> tuple[ModelKey, ModelKey, tuple[str, str]]:
    """The two models to compare and their short labels (the page's caption says more)."""
    if how == OTHER_DEMO:  # the sidebar's demo first, then the other one
        other_demo = DEMO_NAMES[1 - DEMO_NAMES.index(key.spec)]
        return key, ModelKey(other_demo, device=key.device), (key.spec, other_demo)
    family = other_family(key.spec)
    if how == OTHER_FAMILY and family:
        return key, ModelKey(family, device=key.device), (key.spec, family)
    if how == OTHER_MODEL:
        first, second = short_name(key.spec), short_name(other)
        if first == second:
            first, second = f"{first} (1)", f"{second} (2)"
        return key, ModelKey(other, device=key.device), (first, second)
    return ModelKey(key.spec, "pre", key.device), ModelKey(key.spec, "post", key.device), ("pre", "post")


def describe_key(key: ModelKey) -> str:
    """A model of the comparison in words: its name and the normalization it runs."""
    mode = key.attention or cache.model(key).config.attention
    return f"{short_name(key.spec)}, {mode}-normalization"


def short_name(spec: str) -> str:
    """A model's name in a label: a built-in name or variant as it is, a file by its folder and stem."""
    path = Path(spec)
    if path.suffix:
        return f"{path.parent.name}/{path.stem}" if path.stem in ("last", "model") else path.stem
    return spec


def render_page() -> None:
    chosen = session.selection()
    data, name = chosen.image.data, chosen.image.name
    trained = cache.model(ModelKey(chosen.key.spec, device=chosen.key.device)).config.attention
    options = [OTHER_MODE]
    if chosen.key.spec in DEMO_NAMES:  # demo-pre against demo-post: the two trained the two ways
        options.insert(0, OTHER_DEMO)
    if other_family(chosen.key.spec):  # a built-in CoAtNet beside the built-in MaxViT, at one picture point
        options.append(OTHER_FAMILY)
    options.append(OTHER_MODEL)
    how = st.radio("Compare with", options, key="compare_how", horizontal=True)
    other = ""
    if how == OTHER_MODEL:
        other = st.text_input(
            "The other model", key="compare_other", placeholder="demo-post, a path, coatnet_0...",
            help="A built-in name, a checkpoint or timm weights file, or a variant name (random weights)",
        ).strip()  # fmt: skip
        if not other:
            st.info("Name the model to compare with.", icon=":material/arrow_upward:")
            return
    a, b, labels = pair(chosen.key, trained, how, other)
    whose = " (the sidebar's model)" if a == chosen.key else ""
    st.caption(f"Comparing **{describe_key(a)}**{whose} with **{describe_key(b)}**.")
    if how == OTHER_MODE:
        untrained = "post" if trained == "pre" else "pre"
        st.caption(
            f"One model, trained with {trained}-normalization, run both ways: the {untrained} side uses "
            "weights trained for the other mode (an untrained combination)."
        )
    maps = cache.attention(a, data)
    if not maps.blocks:
        st.info("This model has no attention blocks: there is nothing to compare.")
        return
    picture = cache.prepared(a, data)
    block = maps.block(widgets.block_picker(maps.names))
    query = widgets.query_picker(picture.view, grid=block.grid, stride=block.stride)
    row, col = query.nearest_cell(picture.view, grid=block.grid, stride=block.stride)
    other_maps = cache.attention(b, data)
    if other_maps.blocks and not shared_blocks(maps, other_maps):  # two architectures: side by side
        side_by_side(b, labels, (block, other_maps), picture, query, data, name)
        return
    try:
        if how == OTHER_MODEL:  # two models of any kind: each label says the normalization it runs
            modes = (cache.model(a).config.attention, cache.model(b).config.attention)
            labels = (f"{labels[0]} ({modes[0]})", f"{labels[1]} ({modes[1]})")
        pixel = query.centre(picture.view, grid=block.grid, stride=block.stride)
        comparison = cache.comparison(a, b, data, pixel, labels)
    except ValueError as error:  # two models that cannot be compared: say why, in one line
        st.error(errors.message(error), icon=":material/error:")
        return
    if block.name not in comparison.names:
        st.info(f"{labels[1]} has no block {block.name} on the same grid: choose another block.")
        return
    tops = (cache.predictions(a, data, 1)[0], cache.predictions(b, data, 1)[0])
    agree = "agree" if tops[0].index == tops[1].index else "disagree"
    said = [
        f"{label}: **{top.name}** ({top.probability:.1%})" for label, top in zip(labels, tops, strict=True)
    ]
    st.markdown(" · ".join(said) + f" · the two {agree}")
    compared = comparison.block(block.name)
    if compared.note:
        st.caption(compared.note)
    opacity = widgets.opacity()
    stem = f"{name}-{block.name}-q{row}-{col}"
    pictures = (picture.seen, cache.prepared(b, data).seen)
    two, difference = side_by_side_figures(
        (compared.map_a, compared.map_b), labels, pictures, query=(row, col), stride=compared.stride,
        block=block.name, opacity=opacity,
    )  # fmt: skip
    st.caption("Click a cell of either map to make it the query of both.")
    render.figure(two, f"{stem}-side-by-side", key=MAP_KEY, on_select=lambda: widgets.take_click(MAP_KEY))
    beside(
        difference,
        lambda: comparison_summary_figures(comparison)[1],
        f"{stem}-difference",
        f"{name}-divergence",
    )
    (per_head,) = block_comparison_figures(
        compared, labels, picture.seen, opacity=opacity, parts=("difference",)
    )
    render.figure(per_head, f"{stem}-difference-per-head")
    render.figure(comparison_summary_figures(comparison)[0], f"{name}-distance-both")
    # below the comparison, made when opened: the page opens on what it exists for
    with render.folded("Every head of each model, each on a scale of its own", key=HEADS_FOLD) as shown:
        if shown:  # laid out for the fold's width
            first, second = block_comparison_figures(
                compared, labels, picture.seen, opacity=opacity, parts=("maps",)
            )
            render.figure(first, f"{stem}-{labels[0]}")
            render.figure(second, f"{stem}-{labels[1]}")
    with render.folded(f"Relative-bias kernels of {block.name}", key=KERNELS_FOLD) as shown:
        if shown:
            for model_key, label in zip((a, b), labels, strict=True):
                for kernel in (k for k in cache.kernels(model_key).bias if k.name == block.name):
                    render.figure(bias_kernel_figure(kernel, model=label), f"{label}-{block.name}-kernels")
    with st.expander("Download the results"):
        render.result_downloads(
            comparison, f"{name}-comparison-{labels[0]}-vs-{labels[1]}",
            label=f"{labels[0]} vs {labels[1]}: maps, differences and per-head measures of every block",
            about=session.about(chosen, compared=list(labels)),
        )  # fmt: skip


def beside(left, right, left_name: str, right_name: str) -> None:
    """A map figure and a chart (``right()`` builds it, for the width it gets) side by side where the column
    holds both (the chart at least 300 px wide), else one under the other; the map keeps its size."""
    column, needed = column_width() or MAX_WIDTH, left.layout.width + 24
    if column - needed < 300:
        render.figure(left, left_name)
        render.figure(right(), right_name)
        return
    first, second = st.columns([needed, column - needed])
    with first:
        render.figure(left, left_name)
    with second, drawn_at(column - needed - 16):  # less the gap between the columns
        render.figure(right(), right_name)


def side_by_side(other_key, labels, blocks, picture, query: Query, data: bytes, name: str) -> None:
    """Two architectures (demo-pre's global attention beside a MaxViT's block and grid attention): each
    model's maps at the same picture point (``query``, each model reading it through its own view), each
    with a block of its own; no per-block measures (there are no block pairs)."""
    b, (block, other_maps) = other_key, blocks
    st.caption(
        f"{labels[0]} and {labels[1]} have no attention block in common (names, grids and windows differ): "
        "each model's map at the same picture point, side by side; each model's block is its own."
    )
    opacity = widgets.opacity()
    stem = f"{name}-{labels[0]}-vs-{labels[1]}"
    index = query.index(picture.view, grid=block.grid, stride=block.stride)
    other = other_maps.block(
        widgets.block_picker(other_maps.names, key="compare_other_block", label=f"{labels[1]}'s block")
    )
    seen = cache.prepared(b, data)
    other_index = query.index(seen.view, grid=other.grid, stride=other.stride)  # through its own view
    half = (column_width() or MAX_WIDTH) / 2 - 12
    left, right = st.columns(2) if half >= 300 else (st.container(), st.container())
    with left, drawn_at(half if half >= 300 else 2 * half):
        render.figure(
            fused_attention_figure(block, picture.seen, index, opacity=opacity, model=labels[0]),
            f"{stem}-{labels[0]}-{block.name}", key=MAP_KEY, on_select=lambda: widgets.take_click(MAP_KEY),
        )  # fmt: skip
    with right, drawn_at(half if half >= 300 else 2 * half):
        render.figure(
            fused_attention_figure(
                other, seen.seen, other_index, clickable=False, opacity=opacity, model=labels[1]
            ),
            f"{stem}-{labels[1]}-{other.name}",  # each model's own: two blocks may share a name
        )  # fmt: skip


if __name__ == "__main__":
    render_page()
