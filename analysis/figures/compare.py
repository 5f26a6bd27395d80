"""Figures of a comparison of two models' attention (:func:`analysis.compare`, Pre vs post): each model's
maps at the query on a scale of its own, their difference, and every block's distances and divergences."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, pair, panels, set_ranges
from analysis.figures.plots import (
    cell_markers,
    distance_scatter,
    head_grid,
    image_trace,
    map_trace,
    query_marker,
    readable_range,
    unseen_trace,
    value_range,
    window_outline,
)
from analysis.figures.style import DIVERGING, SEQUENTIAL

__all__ = [
    "block_comparison_figures",
    "side_by_side_figures",
    "comparison_figures",
    "comparison_summary_figures",
]  # what the face, analysis.figures, hands on


def comparison_figures(comparison, image_a: np.ndarray | None) -> list[go.Figure]:
    """Pre vs post (a :class:`analysis.Comparison`): per block, each model's maps on a scale of
    its own and their difference (b - a) on a diverging one; then the distance scatter of both and the
    per-head divergences.

    Args:
        comparison: :func:`analysis.compare`'s result.
        image_a: the picture (as the first model sees it) to draw under the maps, or None.

    Returns:
        Three figures per block, then the two of :func:`comparison_summary_figures`.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> comparison = analysis.compare(pre, post, torch.randn(1, 1, 28, 28))
        >>> len(figures.comparison_figures(comparison, None))  # 3 blocks x 3, and 2
        11
    """
    figures = []
    for block in comparison.blocks:
        figures += block_comparison_figures(block, comparison.labels, image_a)
    return figures + comparison_summary_figures(comparison)


def comparison_summary_figures(comparison) -> list[go.Figure]:
    """Every block of a comparison at once: mean attention distance per head of both models, and the
    Jensen-Shannon divergence per head (mean over queries, and at the query), each saying which weights
    it measured.

    Args:
        comparison: :func:`analysis.compare`'s result.

    Returns:
        Two figures: the distances, and the divergences.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> comparison = analysis.compare(pre, post, torch.randn(1, 1, 28, 28))
        >>> distances, divergences = figures.comparison_summary_figures(comparison)
        >>> distances.data[0].type
        'scatter'
    """
    label_a, label_b = comparison.labels
    figures = []
    names = [b.name for b in comparison.blocks]
    figures.append(
        distance_scatter(
            {
                label_a: (names, [b.distance_a for b in comparison.blocks]),
                label_b: (names, [b.distance_b for b in comparison.blocks]),
            },
            title=f"Mean attention distance per head, {label_a} vs {label_b} (weights clipped at 0, "
            "renormalised)",
        )
    )
    figures.append(
        distance_scatter(
            {
                "mean over queries": (names, [b.js_mean for b in comparison.blocks]),
                "at the query": (names, [b.js_query for b in comparison.blocks]),
            },
            title=f"Jensen-Shannon divergence per head, {label_a} vs {label_b} (weights clipped at 0, "
            "renormalised)",
            y_label="JS divergence (bits)",
        )
    )
    distances, divergences = figures
    return [named(distances, "comparison-distance"), named(divergences, "comparison-divergence")]


def block_comparison_figures(
    block,
    labels: tuple[str, str],
    image: np.ndarray | None,
    *,
    opacity: float = DEFAULT_OPACITY,
    parts: tuple[str, ...] = ("maps", "difference"),
) -> list[go.Figure]:
    """One block of a comparison: each model's maps at the query on a scale of its own (so that neither
    row vanishes when one model's weights are much smaller; sequential for weights >= 0, diverging for
    signed post-normalization weights, the range in the title), then b - a on its own diverging scale.

    Args:
        block: one of :attr:`analysis.Comparison.blocks`.
        labels: what to call the two models.
        image: the picture to draw under the maps, or None.
        opacity: of the maps over the picture.
        parts: which to make: ``"maps"`` (each model's) and ``"difference"``.

    Returns:
        The figures asked for, in this order: the first model's maps, the second's, and their difference
        (three by default).

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> comparison = analysis.compare(pre, post, torch.randn(1, 1, 28, 28))
        >>> len(figures.block_comparison_figures(comparison.blocks[0], comparison.labels, None))
        3
    """
    row, col = divmod(block.query, block.grid[1])
    heads = block.map_a.shape[0]
    titles = [f"h{h}" for h in range(heads)]
    seen = ~np.isnan(block.map_a[0])  # a windowed query's window (grey outside it); all for global attention
    figures = []
    for label, maps in zip(labels, (block.map_a, block.map_b) if "maps" in parts else (), strict=False):
        signed = bool((maps < 0).any())  # post-normalization weights as used can be negative
        low, high = value_range(maps, signed)
        figures.append(
            head_grid(
                image, maps, stride=block.stride, titles=titles, query=(row, col),
                colorscale=DIVERGING if signed else SEQUENTIAL, symmetric=signed, opacity=opacity,
                what="weight (signed)" if signed else "weight",
                title=f"{block.name}, {label}: where query {pair(row, col)} attends, weights as used "
                f"(scale {readable_range(low, high)})", seen=seen,
            )
        )  # fmt: skip
    if "difference" not in parts:
        return [named(figure, "comparison-maps") for figure in figures]
    label_a, label_b = labels
    low, high = value_range(block.difference, True)
    scale = f"scale {readable_range(low, high)}"
    title = f"{block.name}: {label_b} - {label_a} (red: {label_b} attends more; {scale})"
    difference = head_grid(
        image, block.difference, stride=block.stride, titles=titles, query=(row, col),
        colorscale=DIVERGING, symmetric=True, title=title, what="difference", opacity=opacity, seen=seen,
    )  # fmt: skip
    return [named(figure, "comparison-maps") for figure in figures] + [
        named(difference, "comparison-difference")
    ]


def _heads_mean(maps: np.ndarray) -> np.ndarray:
    """(heads, H, W) -> (H, W): the heads' mean, NaN where no head attends (outside a window)."""
    seen = ~np.isnan(maps).all(axis=0)
    mean = np.where(seen, np.nan_to_num(maps).sum(axis=0) / max(1, maps.shape[0]), np.nan)
    return mean.astype(np.float32)


def side_by_side_figures(
    maps: tuple[np.ndarray, np.ndarray],
    labels: tuple[str, str],
    images: tuple[np.ndarray | None, np.ndarray | None],
    *,
    query: tuple[int, int],
    stride: float,
    block: str,
    opacity: float = DEFAULT_OPACITY,
) -> list[go.Figure]:
    """Two views of one block's attention at one query, heads averaged: the two maps side by side at one
    size on one scale (each panel titled with its view's name first, a click on either picks the query
    both show), and their difference, second minus first, at the same size on a symmetric scale whose
    range the title states.

    Args:
        maps: the two views' (heads, H, W) weights at the query (NaN where a windowed query does not
            attend): two models (:attr:`analysis.BlockComparison.map_a`, ``map_b``), or a model before and
            after an intervention.
        labels: the two views' names (a model's, "before"...), first in each panel's title.
        images: the pictures under each map (each model sees the image its own way), or None.
        query: the query cell (row, col).
        stride: input pixels per grid step.
        block: the block's name, for the titles.
        opacity: of the maps over the pictures.

    Returns:
        The pair (clickable: each cell's ``customdata`` starts with [row, col]) and the difference.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> s3 = analysis.compare(pre, post, torch.randn(1, 1, 28, 28)).blocks[0]
        >>> two, difference = figures.side_by_side_figures(
        ...     (s3.map_a, s3.map_b), ("demo-pre", "demo-post"), (None, None), query=(3, 3), stride=s3.stride,
        ...     block=s3.name)
        >>> [a.text.split("<br>")[0] for a in two.layout.annotations]
        ['demo-pre', 'demo-post']
        >>> two.layout.xaxis.domain[1] - two.layout.xaxis.domain[0] > 0.45  # two panels of one size
        True
    """
    first, second = (_heads_mean(m) for m in maps)
    seen = ~np.isnan(first)
    signed = bool((np.nan_to_num(first) < 0).any() or (np.nan_to_num(second) < 0).any())
    low, high = value_range(np.stack([first, second]), signed)
    height, width = first.shape[0] * stride, first.shape[1] * stride
    where = f"{block}: where query {pair(*query)} attends, heads averaged"
    grid = panels(
        2, cols=2, aspect=height / width, title=f"{where}, one scale for both ({readable_range(low, high)})",
        subtitles=list(labels), colorbar="weight (signed)" if signed else "weight",
    )  # fmt: skip
    cell = grid.cell_px(first.shape)
    traces: list = []
    for n, (values, picture, axes) in enumerate(zip((first, second), images, grid.axes, strict=True)):
        set_ranges(grid.layout, axes, height, width)
        if picture is not None:
            traces.append({**image_trace(picture).to_plotly_json(), "xaxis": axes[0], "yaxis": axes[1]})
        traces.append(map_trace(
            values, stride=stride, colorscale=DIVERGING if signed else SEQUENTIAL, zmin=low, zmax=high,
            opacity=opacity if picture is not None else 1.0, colorbar=grid.colorbar if n == 0 else None,
            origin=query, what="weight", axes=axes,
        ).to_plotly_json())  # fmt: skip
        if not seen.all():
            traces += [unseen_trace(~seen, stride, axes=axes), window_outline(seen, stride, axes=axes)]
        traces.append(cell_markers(values, stride, cell, query, what="weight", axes=axes).to_plotly_json())
        traces.append(query_marker(query, stride, cell, axes=axes).to_plotly_json())
    grid.layout["clickmode"] = "event+select"
    two = grid.figure(traces)
    change = second - first
    d_low, d_high = value_range(change, True)
    one = panels(
        1, cols=1, aspect=height / width, max_panel=grid.panel_px[0], colorbar="difference",
        title=f"Difference, {labels[1]} - {labels[0]}: {block}, query {pair(*query)}, scale "
        f"{readable_range(d_low, d_high)}", subtitles=[f"red: {labels[1]} attends more"],
    )  # fmt: skip
    set_ranges(one.layout, one.axes[0], height, width)
    traces = [] if images[0] is None else [image_trace(images[0]).to_plotly_json()]
    traces.append(map_trace(
        change, stride=stride, colorscale=DIVERGING, zmin=d_low, zmax=d_high,
        opacity=opacity if images[0] is not None else 1.0, colorbar=one.colorbar, origin=query,
        what="difference",
    ).to_plotly_json())  # fmt: skip
    if not seen.all():
        traces += [unseen_trace(~seen, stride), window_outline(seen, stride)]
    traces.append(query_marker(query, stride, one.cell_px(first.shape)).to_plotly_json())
    return [named(two, "comparison-pair"), named(one.figure(traces), "comparison-difference-map")]
