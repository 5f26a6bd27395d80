"""Plotly figures of the analysis results, shared by the app and the HTML report.

Maps over a stage's grid are drawn on the input image: grid cell (r, c) covers input pixels
``[r * stride, (r + 1) * stride)`` rows and the same for columns, so a heatmap of the grid sits exactly on
the image it came from. ``clickable=True`` adds one near-transparent marker per cell (``customdata`` =
``[row, col]``), which is what a Plotly click selects (a heatmap alone returns nothing in Streamlit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image * (255 if image.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    return image


def _grid_traces(
    values: np.ndarray, *, stride: float, zmin: float | None, zmax: float | None, colorscale: str,
    opacity: float, showscale: bool, name: str = "",
) -> go.Heatmap:  # fmt: skip
    return go.Heatmap(
        z=values, x0=stride / 2 - 0.5, dx=stride, y0=stride / 2 - 0.5, dy=stride, zmin=zmin, zmax=zmax,
        colorscale=colorscale, opacity=opacity, showscale=showscale, name=name,
        hovertemplate="row %{y:.0f} px, col %{x:.0f} px<br>%{z:.4f}<extra></extra>",
    )  # fmt: skip


def _cell_markers(grid: tuple[int, int], stride: float) -> go.Scatter:
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return go.Scatter(
        x=(cols.ravel() + 0.5) * stride - 0.5, y=(rows.ravel() + 0.5) * stride - 0.5, mode="markers",
        marker={"size": max(4.0, min(40.0, 300 / max(grid))), "opacity": 0.01, "symbol": "square"},
        customdata=np.stack([rows.ravel(), cols.ravel()], axis=1), name="cells", showlegend=False,
        hovertemplate="query cell (%{customdata[0]}, %{customdata[1]})<extra></extra>",
    )  # fmt: skip


def _query_marker(query: tuple[int, int], stride: float) -> go.Scatter:
    return go.Scatter(
        x=[(query[1] + 0.5) * stride - 0.5], y=[(query[0] + 0.5) * stride - 0.5], mode="markers",
        marker={"symbol": "x", "size": 12, "color": "red", "line": {"width": 1, "color": "white"}},
        name="query", showlegend=False, hoverinfo="skip",
    )  # fmt: skip


def overlay(
    image: np.ndarray | None, values: np.ndarray, *, stride: float = 1.0, title: str = "",
    query: tuple[int, int] | None = None, clickable: bool = False, zmin: float | None = None,
    zmax: float | None = None, colorscale: str = SEQUENTIAL, opacity: float = 0.6,
) -> go.Figure:  # fmt: skip
    """A grid map (rows, cols) drawn over ``image`` (H, W[, C]); ``query`` (row, col) marked."""
    figure = go.Figure()
    if image is not None:
        figure.add_trace(go.Image(z=as_rgb(image), hoverinfo="skip"))
    figure.add_trace(_grid_traces(values, stride=stride, zmin=zmin, zmax=zmax, colorscale=colorscale,
                                  opacity=opacity if image is not None else 1.0, showscale=True))  # fmt: skip
    if clickable:
        figure.add_trace(_cell_markers(values.shape, stride))
    if query is not None:
        figure.add_trace(_query_marker(query, stride))
    _image_axes(figure, values.shape, stride)
    figure.update_layout(title=title, clickmode="event+select" if clickable else None, dragmode=False)
    return figure


def _image_axes(figure: go.Figure, grid: tuple[int, int], stride: float, **where) -> None:
    height, width = grid[0] * stride, grid[1] * stride
    figure.update_xaxes(
        range=[-0.5, width - 0.5], showgrid=False, zeroline=False, constrain="domain", **where
    )
    figure.update_yaxes(range=[height - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x",
                        constrain="domain", **where)  # fmt: skip
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white")


def head_grid(
    image: np.ndarray | None, maps: np.ndarray, *, stride: float = 1.0, titles: Sequence[str] | None = None,
    title: str = "", query: tuple[int, int] | None = None, cols: int = 4, shared_scale: bool = True,
    colorscale: str = SEQUENTIAL, symmetric: bool = False,
) -> go.Figure:  # fmt: skip
    """One small overlay per head: ``maps`` (heads, rows, cols)."""
    heads = maps.shape[0]
    cols = min(cols, heads)
    rows = -(-heads // cols)
    titles = list(titles) if titles is not None else [f"head {h}" for h in range(heads)]
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                           vertical_spacing=0.08)  # fmt: skip
    zmin, zmax = _range(maps, symmetric) if shared_scale else (None, None)
    for h in range(heads):
        r, c = divmod(h, cols)
        if image is not None:
            figure.add_trace(go.Image(z=as_rgb(image), hoverinfo="skip"), row=r + 1, col=c + 1)
        trace = _grid_traces(maps[h], stride=stride, zmin=zmin, zmax=zmax, colorscale=colorscale,
                             opacity=0.6 if image is not None else 1.0, showscale=h == 0)  # fmt: skip
        figure.add_trace(trace, row=r + 1, col=c + 1)
        if query is not None:
            figure.add_trace(_query_marker(query, stride), row=r + 1, col=c + 1)
    for h in range(heads):
        r, c = divmod(h, cols)
        _image_axes(figure, maps.shape[1:], stride, row=r + 1, col=c + 1)
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(title=title, height=max(260, 230 * rows) + 40, dragmode=False)
    return figure


def _range(values: np.ndarray, symmetric: bool) -> tuple[float, float]:
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if symmetric:
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    return low, high


def kernel_gallery(
    kernels: np.ndarray, *, titles: Sequence[str] | None = None, title: str = "", cols: int = 8,
    symmetric: bool = True,
) -> go.Figure:  # fmt: skip
    """Kernels (n, kh, kw) as small heatmaps, centre (offset 0, 0) marked, rows = dy, columns = dx."""
    return head_grid(None, kernels, stride=1.0, titles=titles, title=title, cols=cols,
                     colorscale=DIVERGING if symmetric else SEQUENTIAL, symmetric=symmetric,
                     query=(kernels.shape[1] // 2, kernels.shape[2] // 2))  # fmt: skip


def distance_scatter(
    series: dict[str, tuple[Sequence[str], Sequence[np.ndarray]]], *, title: str = "Mean attention distance",
    y_label: str = "mean attention distance (input pixels)",
) -> go.Figure:  # fmt: skip
    """Per block, one dot per head (the ViT paper's Fig. 7). ``series``: label -> (block names, values
    per block (heads,))."""
    figure = go.Figure()
    for offset, (label, (blocks, values)) in zip(
        np.linspace(-0.12, 0.12, len(series)), series.items(), strict=True
    ):
        xs = np.concatenate([np.full(len(v), i + offset) for i, v in enumerate(values)]) if values else []
        heads = np.concatenate([np.arange(len(v)) for v in values]) if values else []
        names = np.concatenate([[b] * len(v) for b, v in zip(blocks, values, strict=True)]) if values else []
        figure.add_trace(go.Scatter(
            x=xs, y=np.concatenate(values) if values else [], mode="markers", name=label,
            customdata=np.stack([names, heads], axis=1) if values else None,
            hovertemplate="%{customdata[0]} head %{customdata[1]}: %{y:.2f}<extra>" + label + "</extra>",
        ))  # fmt: skip
        figure.update_xaxes(tickvals=list(range(len(blocks))), ticktext=list(blocks))
    figure.update_layout(title=title, xaxis_title="attention block", yaxis_title=y_label)
    return figure


def matrix_figure(
    matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, title: str = "", zmin: float = 0.0,
    zmax: float = 1.0, colorscale: str = "Magma",
) -> go.Figure:  # fmt: skip
    """A labelled matrix (CKA, divergences...) with its values written in the cells."""
    figure = go.Figure(go.Heatmap(
        z=matrix, x=list(cols), y=list(rows), zmin=zmin, zmax=zmax, colorscale=colorscale,
        text=np.round(matrix, 2), texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>",
    ))  # fmt: skip
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(title=title)
    return figure


def line_figure(
    x: Sequence, series: dict[str, Sequence[float]], *, title: str = "", x_label: str = "",
    y_label: str = "", markers: bool = True,
) -> go.Figure:  # fmt: skip
    figure = go.Figure()
    for label, values in series.items():
        figure.add_trace(go.Scatter(x=list(x), y=list(values), name=label,
                                    mode="lines+markers" if markers else "lines"))  # fmt: skip
    figure.update_layout(title=title, xaxis_title=x_label, yaxis_title=y_label)
    return figure


def training_curves(rows: Sequence[dict]) -> go.Figure:
    """Loss and top-1 per epoch from a run's ``metrics.json`` (train and test)."""
    epochs = [r["epoch"] for r in rows]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss", "top-1 accuracy (%)"))
    for key, colour in (("train", "#1f77b4"), ("test", "#d62728")):
        figure.add_trace(go.Scatter(x=epochs, y=[r[f"{key}_loss"] for r in rows], name=f"{key} loss",
                                    line={"color": colour}), row=1, col=1)  # fmt: skip
        figure.add_trace(go.Scatter(x=epochs, y=[100 * r[f"{key}_top1"] for r in rows], name=f"{key} top-1",
                                    line={"color": colour, "dash": "dot"}), row=1, col=2)  # fmt: skip
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title="Training curves")
    return figure


# --- figures of analysis results -------------------------------------------------------------------------

PART_TITLES = {
    "effective": "effective weights",
    "content": "content only, softmax(q k^T / sqrt(d))",
    "bias": "bias only, w(key - query)",
    "bias_softmax": "bias only, softmax(w): position alone",
}


def attention_heads_figure(
    block, image: np.ndarray | None, query: int, *, part: str = "effective", index: int = 0
) -> go.Figure:
    """Where ``query`` attends in every head of one block (an :class:`analysis.BlockAttention`)."""
    from analysis.attention import query_map

    maps = query_map(block, query, part=part, image=index)
    row, col = divmod(query, block.grid[1])
    signed = part == "bias" or (block.mode == "post" and part == "effective")
    title = f"{block.name} ({block.mode}-normalization): {PART_TITLES[part]}, query ({row}, {col})"
    return head_grid(image, maps, stride=block.stride, title=title, query=(row, col),
                     colorscale=DIVERGING if signed else SEQUENTIAL, symmetric=signed)  # fmt: skip


def fused_attention_figure(
    block, image: np.ndarray | None, query: int, *, part: str = "effective", how: str = "mean",
    index: int = 0, clickable: bool = True,
) -> go.Figure:  # fmt: skip
    """All heads of one block fused (mean or max) at ``query``, clickable to pick the next query."""
    from analysis.attention import fuse_heads, query_map

    fused = fuse_heads(query_map(block, query, part=part, image=index)[None], how)[0]
    row, col = divmod(query, block.grid[1])
    title = f"{block.name}: {PART_TITLES[part]}, heads fused by {how}, query ({row}, {col})"
    return overlay(image, fused, stride=block.stride, title=title, query=(row, col), clickable=clickable)


def rollout_figure(rollout, image: np.ndarray | None, *, index: int = 0) -> go.Figure:
    """Attention rollout (an :class:`analysis.Rollout`) on the first attention block's grid."""
    values = rollout.map[index]
    query = None if rollout.query is None else divmod(rollout.query, rollout.grid_last[1])
    where = "averaged over queries" if query is None else f"query {query} of {rollout.blocks[-1]}"
    scaled_query = None
    if query is not None:  # mark the query on the first grid's scale
        ratio = rollout.stride_last / rollout.stride_first
        scaled_query = (int((query[0] + 0.5) * ratio), int((query[1] + 0.5) * ratio))
    return overlay(image, values, stride=rollout.stride_first, query=scaled_query,
                   title=f"Attention rollout ({rollout.label}), {where}")  # fmt: skip


def statistics_figures(statistics) -> list[go.Figure]:
    """Mean distance, entropy and position share per head and block (an :class:`AttentionStatistics`)."""
    names = [b.name for b in statistics.blocks]
    mode = statistics.blocks[0].mode if statistics.blocks else ""
    return [
        distance_scatter({mode: (names, [b.distance_px for b in statistics.blocks])},
                         title="Mean attention distance per head"),
        distance_scatter({mode: (names, [b.entropy for b in statistics.blocks])},
                         title="Attention entropy per head (log N is uniform)", y_label="entropy (nats)"),
        distance_scatter({mode: (names, [b.position_share for b in statistics.blocks])},
                         title="Share of logit variance from position (bias) vs content",
                         y_label="position share"),
    ]  # fmt: skip


def comparison_figures(comparison, image_a: np.ndarray | None) -> list[go.Figure]:
    """Pre vs post (a :class:`analysis.compare.Comparison`): per block the maps side by side and their
    difference, then per-head divergences and the distance scatter of both."""
    label_a, label_b = comparison.labels
    figures = []
    for block in comparison.blocks:
        row, col = divmod(block.query, block.grid[1])
        heads = block.map_a.shape[0]
        stacked = np.concatenate([block.map_a, block.map_b, block.difference])
        titles = [
            f"{label} h{h}" for label in (label_a, label_b, f"{label_b} - {label_a}") for h in range(heads)
        ]
        title = f"{block.name}: query ({row}, {col}), {label_a} vs {label_b}"
        figure = head_grid(image_a, stacked, stride=block.stride, titles=titles, cols=heads,
                           shared_scale=False, query=(row, col), title=title)  # fmt: skip
        figures.append(figure)
    names = [b.name for b in comparison.blocks]
    figures.append(distance_scatter(
        {label_a: (names, [b.distance_a for b in comparison.blocks]),
         label_b: (names, [b.distance_b for b in comparison.blocks])},
        title=f"Mean attention distance per head, {label_a} vs {label_b}",
    ))  # fmt: skip
    figures.append(distance_scatter(
        {"mean over queries": (names, [b.js_mean for b in comparison.blocks]),
         "at the query": (names, [b.js_query for b in comparison.blocks])},
        title=f"Jensen-Shannon divergence per head, {label_a} vs {label_b}", y_label="JS divergence (bits)",
    ))  # fmt: skip
    return figures
