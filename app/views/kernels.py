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
        st.subheader("Relative-bias kernels, per head")
        if not bias:
            st.info("No attention blocks in this model.")
        for kernel, figure in zip(kernels.bias, bias, strict=True):
            render.figure(figure, f"{kernel.name}-bias-kernels")
    with right:
        st.subheader("MBConv depthwise kernels, first 16 channels")
        if not depthwise:
            st.info("No MBConv blocks in this model.")
        for kernel, figure in zip(kernels.depthwise, depthwise, strict=True):
            render.figure(figure, f"{kernel.name}-depthwise-kernels")
    with st.expander("Download the results"):
        render.result_downloads(kernels, "kernels")


if __name__ == "__main__":
    render_page()
