"""Plotly building blocks: grid maps over images, head grids, kernel galleries, scatters, matrices.

Maps over a stage's grid are drawn on the input image: grid cell (r, c) covers input pixels
``[r * stride, (r + 1) * stride)`` rows and the same for columns, so a heatmap of the grid sits exactly on
the image it came from. ``clickable=True`` adds one near-transparent marker per cell (``customdata`` =
``[row, col]``), which is what a Plotly click selects (a heatmap alone returns nothing in Streamlit).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

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


def image_trace(image: np.ndarray, *, opacity: float = 1.0) -> go.Image:
    """The picture as a Plotly image trace, PNG-encoded (a data URI is ~10x smaller than the pixel list
    Plotly writes for ``z=``), pixel (r, c) centred at x = c, y = r."""
    buffer = io.BytesIO()
    Image.fromarray(as_rgb(image)).save(buffer, format="PNG")
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return go.Image(source=source, opacity=opacity, hoverinfo="skip")


def _grid_traces(
    values: np.ndarray,
    *,
    stride: float,
    zmin: float | None,
    zmax: float | None,
    colorscale: str,
    opacity: float,
    showscale: bool,
    name: str = "",
) -> go.Heatmap:
    return go.Heatmap(
        z=values,
        x0=stride / 2 - 0.5,
        dx=stride,
        y0=stride / 2 - 0.5,
        dy=stride,
        zmin=zmin,
        zmax=zmax,
        colorscale=colorscale,
        opacity=opacity,
        showscale=showscale,
        name=name,
        hovertemplate="row %{y:.0f} px, col %{x:.0f} px<br>%{z:.4f}<extra></extra>",
    )


def _cell_markers(grid: tuple[int, int], stride: float) -> go.Scatter:
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return go.Scatter(
        x=(cols.ravel() + 0.5) * stride - 0.5,
        y=(rows.ravel() + 0.5) * stride - 0.5,
        mode="markers",
        marker={"size": max(4.0, min(40.0, 300 / max(grid))), "opacity": 0.01, "symbol": "square"},
        customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
        name="cells",
        showlegend=False,
        hovertemplate="query cell (%{customdata[0]}, %{customdata[1]})<extra></extra>",
    )


def _query_marker(query: tuple[int, int], stride: float) -> go.Scatter:
    return go.Scatter(
        x=[(query[1] + 0.5) * stride - 0.5],
        y=[(query[0] + 0.5) * stride - 0.5],
        mode="markers",
        marker={"symbol": "x", "size": 12, "color": "red", "line": {"width": 1, "color": "white"}},
        name="query",
        showlegend=False,
        hoverinfo="skip",
    )


def overlay(
    image: np.ndarray | None,
    values: np.ndarray,
    *,
    stride: float = 1.0,
    title: str = "",
    query: tuple[int, int] | None = None,
    clickable: bool = False,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = SEQUENTIAL,
    opacity: float = 0.6,
) -> go.Figure:
    """A grid map (rows, cols) drawn over ``image`` (H, W[, C]); ``query`` (row, col) marked."""
    figure = go.Figure()
    if image is not None:
        figure.add_trace(image_trace(image))
    figure.add_trace(
        _grid_traces(
            values,
            stride=stride,
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            opacity=opacity if image is not None else 1.0,
            showscale=True,
        )
    )
    if clickable:
        figure.add_trace(_cell_markers(values.shape, stride))
    if query is not None:
        figure.add_trace(_query_marker(query, stride))
    _image_axes(figure, values.shape, stride)
    figure.update_layout(title=title, clickmode="event+select" if clickable else None, dragmode=False)
    return figure


def _image_axes(figure: go.Figure, grid: tuple[int, int], stride: float) -> None:
    """Image orientation (row 0 on top), square pixels, no grid lines, on a one-plot figure."""
    figure.update_layout(_axes_layout(1, grid, stride))
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, plot_bgcolor="white")


def _axes_layout(
    number: int, grid: tuple[int, int], stride: float, *, ticks: bool = True, domain: tuple | None = None
) -> dict:
    """The layout entries of subplot ``number``'s axes (1-based) for a (rows, cols) grid of ``stride``-px
    cells; ``domain`` ((x0, x1), (y0, y1)) places it on the page."""
    suffix = "" if number == 1 else str(number)
    height, width = grid[0] * stride, grid[1] * stride
    common = {"showgrid": False, "zeroline": False, "constrain": "domain", "showticklabels": ticks}
    x = {"range": [-0.5, width - 0.5], "anchor": f"y{suffix}", **common}
    y = {"range": [height - 0.5, -0.5], "scaleanchor": f"x{suffix}", "anchor": f"x{suffix}", **common}
    if domain is not None:
        x["domain"], y["domain"] = domain
    return {f"xaxis{suffix}": x, f"yaxis{suffix}": y}


def _cell_domain(index: int, rows: int, cols: int, hspace: float, vspace: float) -> tuple:
    """Where cell ``index`` (row by row) of a rows x cols grid sits on the page, as make_subplots does."""
    r, c = divmod(index, cols)
    width = (1 - hspace * (cols - 1)) / cols
    height = (1 - vspace * (rows - 1)) / rows
    x0 = c * (width + hspace)
    y1 = 1 - r * (height + vspace)

    def page(value: float) -> float:  # rounding must not leave [0, 1]
        return min(1.0, max(0.0, round(value, 9)))

    return (page(x0), page(x0 + width)), (page(y1 - height), page(y1))


def head_grid(
    image: np.ndarray | None,
    maps: np.ndarray,
    *,
    stride: float = 1.0,
    titles: Sequence[str] | None = None,
    title: str = "",
    query: tuple[int, int] | None = None,
    cols: int = 4,
    shared_scale: bool = True,
    colorscale: str = SEQUENTIAL,
    symmetric: bool = False,
) -> go.Figure:
    """One small overlay per head: ``maps`` (heads, rows, cols)."""
    heads = maps.shape[0]
    cols = min(cols, heads)
    rows = -(-heads // cols)
    titles = list(titles) if titles is not None else [f"head {h}" for h in range(heads)]
    # the grid of subplots is laid out here, not by make_subplots: one Figure built at once is several
    # times faster, and a click on a new query redraws this figure (the app's 300 ms budget)
    hspace, vspace = 0.02, 0.08
    zmin, zmax = value_range(maps, symmetric) if shared_scale else (None, None)
    picture = image_trace(image).to_plotly_json() if image is not None else None
    traces, layout, annotations = [], {}, []
    for h in range(heads):
        suffix = "" if h == 0 else str(h + 1)
        cell = [_grid_traces(
            maps[h], stride=stride, zmin=zmin, zmax=zmax, colorscale=colorscale,
            opacity=0.6 if image is not None else 1.0, showscale=h == 0,
        ).to_plotly_json()]  # fmt: skip
        if picture is not None:
            cell.insert(0, dict(picture))
        if query is not None:
            cell.append(_query_marker(query, stride).to_plotly_json())
        for trace in cell:
            trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        traces += cell
        domain = _cell_domain(h, rows, cols, hspace, vspace)
        layout.update(_axes_layout(h + 1, maps.shape[1:], stride, ticks=False, domain=domain))
        annotations.append({
            "text": titles[h], "x": sum(domain[0]) / 2, "y": domain[1][1], "xref": "paper", "yref": "paper",
            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 16},
        })  # fmt: skip
    layout.update(
        title={"text": title},
        annotations=annotations,
        height=max(260, 230 * rows) + 40,
        dragmode=False,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="white",
    )
    return go.Figure({"data": traces, "layout": layout})


def value_range(values: np.ndarray, symmetric: bool) -> tuple[float, float]:
    """The (low, high) a colour scale spans: the data's, or symmetric around 0."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if symmetric:
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    return low, high


def kernel_gallery(
    kernels: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    title: str = "",
    cols: int = 8,
    symmetric: bool = True,
) -> go.Figure:
    """Kernels (n, kh, kw) as small heatmaps, centre (offset 0, 0) marked, rows = dy, columns = dx."""
    return head_grid(
        None,
        kernels,
        stride=1.0,
        titles=titles,
        title=title,
        cols=cols,
        colorscale=DIVERGING if symmetric else SEQUENTIAL,
        symmetric=symmetric,
        query=(kernels.shape[1] // 2, kernels.shape[2] // 2),
    )


def distance_scatter(
    series: dict[str, tuple[Sequence[str], Sequence[np.ndarray]]],
    *,
    title: str = "Mean attention distance",
    y_label: str = "mean attention distance (input pixels)",
) -> go.Figure:
    """Per block, one dot per head (the ViT paper's Fig. 7). ``series``: label -> (block names, values
    per block (heads,))."""
    figure = go.Figure()
    for offset, (label, (blocks, values)) in zip(
        np.linspace(-0.12, 0.12, len(series)), series.items(), strict=True
    ):
        xs = np.concatenate([np.full(len(v), i + offset) for i, v in enumerate(values)]) if values else []
        heads = np.concatenate([np.arange(len(v)) for v in values]) if values else []
        names = np.concatenate([[b] * len(v) for b, v in zip(blocks, values, strict=True)]) if values else []
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=np.concatenate(values) if values else [],
                mode="markers",
                name=label,
                customdata=np.stack([names, heads], axis=1) if values else None,
                hovertemplate="%{customdata[0]} head %{customdata[1]}: %{y:.2f}<extra>" + label + "</extra>",
            )
        )
        figure.update_xaxes(tickvals=list(range(len(blocks))), ticktext=list(blocks))
    figure.update_layout(title=title, xaxis_title="attention block", yaxis_title=y_label)
    return figure


def matrix_figure(
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str = "",
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorscale: str = "Magma",
) -> go.Figure:
    """A labelled matrix (CKA, divergences...) with its values written in the cells."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(cols),
            y=list(rows),
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            text=np.round(matrix, 2),
            texttemplate="%{text}",
            hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(title=title)
    return figure


def line_figure(
    x: Sequence,
    series: dict[str, Sequence[float]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    markers: bool = True,
) -> go.Figure:
    figure = go.Figure()
    for label, values in series.items():
        figure.add_trace(
            go.Scatter(x=list(x), y=list(values), name=label, mode="lines+markers" if markers else "lines")
        )
    figure.update_layout(title=title, xaxis_title=x_label, yaxis_title=y_label)
    return figure
