"""Pre vs post: two models on the same image and the same query."""

from __future__ import annotations

import streamlit as st

from analysis.figures import block_comparison_figures, comparison_summary_figures, kernel_figures
from app import cache, render, session, widgets
from app.cache import ModelKey
from coatnet.demos import builtin_name

OTHER_DEMO, OTHER_MODE = "the other built-in checkpoint", "the same weights, other normalization"


def pair(key: ModelKey, mode: str, how: str) -> tuple[ModelKey, ModelKey, tuple[str, str]]:
    """The two models to compare (pre first) and their labels."""
    if how == OTHER_DEMO:
        return ModelKey("demo-pre"), ModelKey("demo-post"), ("demo-pre", "demo-post")
    return (
        ModelKey(key.spec, "pre"),
        ModelKey(key.spec, "post"),
        (f"pre (trained {mode})", f"post (trained {mode})"),
    )


def render_page() -> None:
    chosen = session.selection()
    data, name = chosen.image.data, chosen.image.name
    trained = cache.model(ModelKey(chosen.key.spec)).config.attention
    options = [OTHER_MODE]
    if builtin_name(chosen.key.spec) is not None:
        options.insert(0, OTHER_DEMO)
    how = st.radio("Compare", options, key="compare_how", horizontal=True)
    a, b, labels = pair(chosen.key, trained, how)
    if how == OTHER_MODE:
        st.caption(
            f"One model, trained with {trained}-normalization, run both ways: the "
            f"{'post' if trained == 'pre' else 'pre'} side uses weights trained for the other mode."
        )
    maps = cache.attention(a, data)
    if not maps.blocks:
        st.info("This model has no attention blocks: there is nothing to compare.")
        return
    picture = cache.prepared(a, data)
    block = maps.block(widgets.block_picker(maps.names))
    row, col = widgets.query_picker(block.grid, block.stride, picture.view)
    point = ((row + 0.5) * block.stride, (col + 0.5) * block.stride)
    comparison = cache.comparison(a, b, data, point, labels)
    tops = (cache.predictions(a, data, 1)[0], cache.predictions(b, data, 1)[0])
    agree = "agree" if tops[0].index == tops[1].index else "disagree"
    said = [
        f"{label}: **{top.name}** ({top.probability:.1%})" for label, top in zip(labels, tops, strict=True)
    ]
    st.markdown(" · ".join(said) + f" · the two {agree}")
    compared = comparison.block(block.name)
    if compared.note:
        st.caption(compared.note)
    both, difference = block_comparison_figures(compared, labels, picture.seen)
    stem = f"{name}-{block.name}-q{row}-{col}"
    render.figure(both, f"{stem}-{labels[0]}-vs-{labels[1]}")
    render.figure(difference, f"{stem}-difference")
    distance, divergence = comparison_summary_figures(comparison)
    left, right = st.columns(2)
    with left:
        render.figure(divergence, f"{name}-divergence")
    with right:
        render.figure(distance, f"{name}-distance-both")
    st.subheader(f"Relative-bias kernels of {block.name}")
    for column, model_key, label in zip(st.columns(2), (a, b), labels, strict=True):
        kernels = cache.kernels(model_key)
        shown = [i for i, k in enumerate(kernels.bias) if k.name == block.name]
        with column:
            st.caption(label)
            for i in shown:
                render.figure(kernel_figures(kernels, cols=4)[i], f"{label}-{block.name}-kernels")
    with st.expander("Download the results"):
        render.result_downloads(
            comparison, f"{name}-comparison-{labels[0]}-vs-{labels[1]}",
            label=f"{labels[0]} vs {labels[1]}: maps, differences and per-head measures of every block",
            about=session.about(chosen, compared=list(labels)),
        )  # fmt: skip


if __name__ == "__main__":
    render_page()
