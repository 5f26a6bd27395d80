"""Figures of a comparison of two models' attention (:func:`analysis.compare`, Pre vs post): each model's
maps at the query on a scale of its own, their difference, and every block's distances and divergences."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, pair
from analysis.figures.plots import distance_scatter, head_grid, readable_range, value_range
from analysis.figures.style import DIVERGING, SEQUENTIAL

__all__ = [
    "block_comparison_figures",
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
    block, labels: tuple[str, str], image: np.ndarray | None, *, opacity: float = DEFAULT_OPACITY
) -> list[go.Figure]:
    """One block of a comparison: each model's maps at the query on a scale of its own (so that neither
    row vanishes when one model's weights are much smaller; sequential for weights >= 0, diverging for
    signed post-normalization weights, the range in the title), then b - a on its own diverging scale.

    Args:
        block: one of :attr:`analysis.Comparison.blocks`.
        labels: what to call the two models.
        image: the picture to draw under the maps, or None.
        opacity: of the maps over the picture.

    Returns:
        Three figures: the first model's maps, the second's, and their difference.

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
    for label, maps in zip(labels, (block.map_a, block.map_b), strict=True):
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
    label_a, label_b = labels
    low, high = value_range(block.difference, True)
    scale = f"scale {readable_range(low, high)}"
    title = f"{block.name}: {label_b} - {label_a} (red: {label_b} attends more; {scale})"
    figures.append(
        head_grid(
            image, block.difference, stride=block.stride, titles=titles, query=(row, col),
            colorscale=DIVERGING, symmetric=True, title=title, what="difference", opacity=opacity, seen=seen,
        )
    )  # fmt: skip
    first, second, difference = figures
    return [
        named(first, "comparison-maps"),
        named(second, "comparison-maps"),
        named(difference, "comparison-difference"),
    ]
