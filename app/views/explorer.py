"""Attention explorer: where one query attends, in every head of one block; click a cell to move it."""

from __future__ import annotations

import streamlit as st

from analysis import query_from_cell, query_index
from analysis.figures import attention_heads_figure, fused_attention_figure, rollout_figure
from app import cache, render, session, widgets

MAP_KEY = "explorer_map"


def render_page() -> None:
    chosen = session.selection()
    key, data = chosen.key, chosen.image.data
    picture = cache.prepared(key, data)
    render.image_header(
        picture.original, picture.seen, cache.predictions(key, data), name=chosen.image.name,
        label=chosen.image.label,
    )  # fmt: skip
    maps = cache.attention(key, data)
    if not maps.blocks:
        st.info("This model has no attention blocks (C-C-C-C): see the Stage inspector and Kernels pages.")
        return
    pick_block, pick_part, pick_head = st.columns([1, 2, 1])
    with pick_block:
        block = maps.block(widgets.block_picker(maps.names))
    with pick_part:
        part = widgets.part_picker(block.mode)
    with pick_head:
        how = widgets.head_picker(block.effective.shape[1])
    row, col = widgets.query_picker(block.grid, block.stride, picture.view)
    query = query_from_cell(row, col, block.grid)
    name = f"{chosen.image.name}-{block.name}-{part}-q{row}-{col}"
    opacity = widgets.opacity()
    st.caption("Click a cell to make it the query; hover for its weight, offset and distance.")
    render.figure(
        fused_attention_figure(block, picture.seen, query, part=part, how=how, opacity=opacity),
        f"{name}-{how}", key=MAP_KEY, on_select=lambda: widgets.take_click(MAP_KEY),
    )  # fmt: skip
    render.figure(
        attention_heads_figure(block, picture.seen, query, part=part, opacity=opacity), f"{name}-heads"
    )

    st.subheader("Attention rollout")
    st.caption(
        "Attention of every block composed with the residual path (0.5 A + 0.5 I), through the pooling "
        "between S3 and S4, down to the first attention block's grid."
    )
    source = st.radio(
        "Rollout", ("from this query", "averaged over queries"), key="rollout_from", horizontal=True
    )
    last = maps.blocks[-1]
    centre = ((row + 0.5) * block.stride, (col + 0.5) * block.stride)
    rollout_query = query_index(last.grid, last.stride, *centre) if source == "from this query" else None
    rollout = cache.rollout(key, data, rollout_query)
    render.figure(rollout_figure(rollout, picture.seen, opacity=opacity), f"{chosen.image.name}-rollout")
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
            about=session.about(chosen, block=block.name, query=[row, col]),
        )  # fmt: skip


if __name__ == "__main__":
    render_page()
