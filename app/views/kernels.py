"""Kernels: the relative-bias kernel of every head (the "global static convolution") beside the MBConv
depthwise kernels (the local ones)."""

from __future__ import annotations

import streamlit as st

from analysis.figures import kernel_figures
from app import cache, render, session


def render_page() -> None:
    chosen = session.selection()
    kernels = cache.kernels(chosen.key)
    figures = kernel_figures(kernels, cols=4)
    bias, depthwise = figures[: len(kernels.bias)], figures[len(kernels.bias) :]
    st.caption(
        "Entry (dy, dx) of a bias kernel is what a query adds to the logit of the key at offset key - query; "
        "the centre is the query itself. Depthwise kernels are drawn the same way."
    )
    left, right = st.columns(2)
    with left:
        gallery("Relative-bias kernels, per head", kernels.bias, bias, "bias", "No attention blocks")
    with right:
        title = "MBConv depthwise kernels, first 16 channels"
        gallery(title, kernels.depthwise, depthwise, "depthwise", "No MBConv blocks")
    with st.expander("Download the results"):
        render.result_downloads(kernels, "kernels")


def gallery(title: str, kernels: tuple, figures: list, kind: str, none: str) -> None:
    """One column of kernel figures, one per block, or a note when the model has no such blocks."""
    st.subheader(title)
    if not figures:
        st.info(f"{none} in this model.")
    for kernel, figure in zip(kernels, figures, strict=True):
        render.figure(figure, f"{kernel.name}-{kind}-kernels")


if __name__ == "__main__":
    render_page()
