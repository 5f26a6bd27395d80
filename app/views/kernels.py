"""Kernels: the relative-bias kernel of every head (the "global static convolution") beside the MBConv
depthwise kernels (the local ones), one block at a time, every channel reachable."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from analysis.figures import bias_kernel_figure, depthwise_kernel_figure
from app import cache, render, session, widgets

PER_PAGE = 16  # depthwise channels drawn at once
ORDERS = ("channel index", "strongest first")


def render_page() -> None:
    chosen = session.selection()
    kernels = cache.kernels(chosen.key)
    st.caption(
        "Entry (dy, dx) of a bias kernel is what a query adds to the logit of the key at offset key - query; "
        "the centre is the query itself. Depthwise kernels are drawn the same way."
    )
    st.subheader("Relative-bias kernels, per head")
    if not kernels.bias:
        st.info("No attention blocks in this model.")
    else:
        block = pick(kernels.bias, widgets.block_picker(names(kernels.bias), key="kernel_block"))
        render.figure(bias_kernel_figure(block), f"{block.name}-bias-kernels")
    st.subheader("MBConv depthwise kernels")
    if not kernels.depthwise:
        st.info("No MBConv blocks in this model.")
    else:
        depthwise(kernels.depthwise)
    with st.expander("Download the results"):
        render.result_downloads(
            kernels, "kernels-every-block", label="Every relative-bias and depthwise kernel of the model",
            about=session.about(chosen),
        )  # fmt: skip


def depthwise(blocks: tuple) -> None:
    """A block, an order and a page of 16 channels: every channel of every MBConv block is reachable."""
    block = pick(blocks, widgets.block_picker(names(blocks), key="depthwise_block", label="MBConv block"))
    count = len(block.kernels)
    order = st.radio("Channels in", ORDERS, key="depthwise_order", horizontal=True)
    ranked = np.argsort(-block.mean_abs, kind="stable") if order == ORDERS[1] else np.arange(count)
    pages = math.ceil(count / PER_PAGE)
    labels = [f"{p * PER_PAGE}-{min((p + 1) * PER_PAGE, count) - 1}" for p in range(pages)]
    if st.session_state.get("depthwise_page") not in labels:
        st.session_state["depthwise_page"] = labels[0]
    shown = st.select_slider(
        f"Channels ({count} in all, {PER_PAGE} at a time)" if order == ORDERS[0] else
        f"Ranks by mean |kernel| ({count} channels, {PER_PAGE} at a time)",
        labels, key="depthwise_page",
    )  # fmt: skip
    first = labels.index(shown) * PER_PAGE
    channels = [int(c) for c in ranked[first : first + PER_PAGE]]
    render.figure(depthwise_kernel_figure(block, channels=channels), f"{block.name}-depthwise-{shown}")


def names(blocks: tuple) -> tuple[str, ...]:
    return tuple(block.name for block in blocks)


def pick(blocks: tuple, name: str):
    return next(block for block in blocks if block.name == name)


if __name__ == "__main__":
    render_page()
