"""Kernels as figures: the relative-position bias of every head (the "global static convolution kernel"
$w_{i-j}$ as a 2-D map) and the depthwise kernels of the MBConv blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from analysis.figures.names import named
from analysis.figures.panels import NBSP, pair
from analysis.figures.plots import (
    kernel_gallery,
    readable,
)

__all__ = [
    "bias_kernel_figure",
    "depthwise_kernel_figure",
    "kernel_figures",
]  # what the face, analysis.figures, hands on


def kernel_figures(kernels, *, max_channels: int = 16, cols: int = 8) -> list[go.Figure]:
    """Each attention block's per-head bias kernels, then each MBConv block's depthwise kernels (the
    first ``max_channels`` channels), both oriented offset = key - query with the centre outlined.

    Args:
        kernels: :func:`analysis.relative_bias_kernels`'s result.
        max_channels: depthwise channels drawn per MBConv block.
        cols: panels per row.

    Returns:
        One figure per attention block, then one per MBConv block.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> len(figures.kernel_figures(kernels, max_channels=4))  # 3 attention blocks, 3 MBConv blocks
        6
    """
    return [bias_kernel_figure(block, cols=cols) for block in kernels.bias] + [
        depthwise_kernel_figure(block, channels=range(min(max_channels, len(block.kernels))), cols=cols)
        for block in kernels.depthwise
    ]


def bias_kernel_figure(block, *, cols: int = 8, model: str = "") -> go.Figure:
    """One attention block's relative-bias kernel per head (a :class:`analysis.BiasKernel`), of the model
    named ``model`` (named in the title when given).

    Args:
        block: one of :attr:`analysis.Kernels.bias`.
        cols: panels per row.
        model: the model's name for the title, or ``""``.

    Returns:
        The figure: one heatmap per head.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> figure = figures.bias_kernel_figure(kernels.bias[0], model="demo-pre")
        >>> figure.data[0].type, len(figure.data)  # S3.0's 4 heads (and their centre outlines)
        ('heatmap', 8)
    """
    peaks, distances = kernel_summary(block)
    titles = [
        f"head {h}<br>peak {pair(*peak)}<br>mean {readable(d)}{NBSP}px"
        for h, (peak, d) in enumerate(zip(peaks, distances, strict=True))
    ]
    step = block.stride * block.dilation[0]  # pixels per kernel step: a grid group's keys lie H / G apart
    title = (
        f"{model + ': ' if model else ''}{block.name}: relative-bias kernels ({block.mode}), offset key - "
        f"query, {step}{NBSP}px per step; each head's peak offset and the mean distance of softmax(w)"
    )
    figure = kernel_gallery(
        block.kernels, titles=titles, title=title, cols=min(cols, 4), what="bias w", max_panel=160.0,
        min_panel=96.0,
    )  # fmt: skip
    return named(figure, "bias-kernels")


def kernel_summary(block) -> tuple[list[tuple[int, int]], list[float]]:
    """Per head of a :class:`analysis.BiasKernel`: the offset (dy, dx) = key - query of its largest bias,
    and the mean distance in input pixels of ``softmax(w)`` over every offset (where the bias alone steers
    a query; the figures' reading of the kernel, computed from it)."""
    _, kh, kw = block.kernels.shape
    dy, dx = np.meshgrid(np.arange(kh) - kh // 2, np.arange(kw) - kw // 2, indexing="ij")
    step_y, step_x = (block.stride * d for d in getattr(block, "dilation", (1, 1)))  # grid attention: dilated
    distance = np.hypot(dy * step_y, dx * step_x)
    peaks, means = [], []
    for kernel in block.kernels.astype(np.float64):
        r, c = np.unravel_index(int(np.argmax(kernel)), kernel.shape)
        peaks.append((int(dy[r, c]), int(dx[r, c])))
        weights = np.exp(kernel - kernel.max())
        means.append(float((weights * distance).sum() / weights.sum()))
    return peaks, means


def depthwise_kernel_figure(block, *, channels: Sequence[int], cols: int = 8) -> go.Figure:
    """The depthwise kernels of the chosen ``channels`` (any of them, in the order given) of one MBConv
    block (a :class:`analysis.DepthwiseKernel`).

    Args:
        block: one of :attr:`analysis.Kernels.depthwise`.
        channels: the channels to draw.
        cols: panels per row.

    Returns:
        The figure: one heatmap per channel.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> figure = figures.depthwise_kernel_figure(kernels.depthwise[0], channels=[0, 5])
        >>> figure.data[0].type
        'heatmap'
    """
    channels = list(channels)
    count = len(block.kernels)
    if not channels or not all(0 <= c < count for c in channels):
        raise ValueError(f"{block.name} has channels 0..{count - 1}, not {channels[:4]}...")
    shown = block.kernels[channels]
    titles = [f"ch {c}" for c in channels]
    span = f"{len(channels)} of {count} channels"
    title = f"{block.name}: depthwise {shown.shape[-1]}x{shown.shape[-1]} kernels, {span}"
    figure = kernel_gallery(shown, titles=titles, title=title, cols=cols, what="weight")
    return named(figure, "depthwise-kernels")
