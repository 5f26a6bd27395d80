"""The figure language of CoAtNet Lens: the layout rules every figure of the app, the report and the exports
follows, and the Plotly building blocks made with them. They live here, in one place.

Rules
- Sizes are in pixels. A figure of maps (attention, kernels, attributions, receptive fields, stages) has a
  fixed width, at most :data:`MAX_WIDTH` (the app's main column at a 1024 px window), and a height worked
  out from its panels (:func:`panels`): cells stay square, colour bars are exactly as tall as their panels,
  and nothing depends on the width of the browser. Charts without an aspect to keep (scatters, bars,
  curves, matrices) take the width they are given and a fixed height (:func:`chart`).
- The top :data:`TOOLBAR_PX` of every figure is left to Plotly's toolbar; the title sits under it, wrapped
  to the figure's width, and the margin grows with its lines; subplot titles get rows of their own
  between the title and their panels, wrapped to their panel's width. Nothing overlaps, nothing is cut.
- Colour: the scales and palette of :mod:`analysis.figures.style`: :data:`SEQUENTIAL` for values >= 0
  (from their minimum to their maximum), :data:`DIVERGING` centred on 0 only for signed values
  (post-normalization weights, biases, differences); each colour bar's title says what it shows. A legend
  sits under its chart (``chart(legend_rows=...)``).
- Hovering a map shows its value, the cell, and (around a query or a kernel's centre) the offset in cells
  and the distance in input pixels.
- Markers outline their cell (an open square) and never hide the value under them.

Maps over a stage's grid are drawn on the input image, in the coordinates of :mod:`analysis.core.query`:
grid cell (r, c) covers input pixels ``[r * stride, (r + 1) * stride)`` rows and the same for columns, so
a heatmap of the grid sits exactly on the image it came from. Plotly draws a picture's pixel i centred on
axis value i, so input coordinate u sits at axis value u - 0.5 (:func:`drawn`). ``clickable=True`` adds
one near-transparent marker per cell (``customdata`` = ``[row, col, ...]``), which is what a Plotly click
selects (a heatmap alone returns nothing in Streamlit).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from analysis.core.query import cell_centre
from analysis.figures.style import (
    BACKGROUND,
    DIVERGING,
    MATRIX,
    PALETTE,
    QUERY_COLOUR,
    SEQUENTIAL,
    legend_below,
)

MAX_WIDTH = 560  # px: the widest fixed-size figure
TOOLBAR_PX = 34  # the band at the top left free for Plotly's toolbar
EDGE_PX = 8  # the margin left, right and below
GAP_PX = 6  # between panels, across
ROW_GAP_PX = 10  # between rows of panels
COLORBAR_PX = 112  # right of the panels: the bar, its tick labels and its title
TITLE_SIZE, TITLE_LINE_PX, TITLE_CHAR_PX = 14, 19, 8.0  # a title line; a character's width, generously
SUB_SIZE, SUB_LINE_PX, SUB_CHAR_PX = 12, 16, 7.0  # the same for subplot titles
DEFAULT_OPACITY = 0.6  # of a map over its image
MIN_BAR_PX = 100  # a colour bar is at least this long: its title and three tick labels fit
TICK_PX = 32  # a colour bar gets a tick label per this many pixels


def wrap(text: str, width_px: float, char_px: float = TITLE_CHAR_PX) -> list[str]:
    """``text`` in lines that fit ``width_px`` (existing ``<br>`` breaks kept; a word longer than a line
    is cut into pieces)."""
    chars = max(4, int(width_px // char_px))
    lines = []
    for paragraph in text.split("<br>"):
        line = ""
        for word in paragraph.split():
            while len(word) > chars:
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:chars])
                word = word[chars:]
            candidate = f"{line} {word}" if line else word
            if len(candidate) <= chars:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def title_block(text: str, width_px: float = MAX_WIDTH) -> tuple[dict, int]:
    """The layout's ``title`` (under the toolbar's band, left-aligned, wrapped to ``width_px``) and the
    pixels it needs above the plot area."""
    lines = wrap(text, width_px - 2 * EDGE_PX)
    title = {
        "text": "<br>".join(lines),
        "font": {"size": TITLE_SIZE},
        "x": 0,
        "xref": "container",
        "xanchor": "left",
        "y": 1,
        "yref": "container",
        "yanchor": "top",
        # Plotly lifts a title of n lines by about (n - 1) / 2 lines from where "top" puts one line
        "pad": {"l": EDGE_PX, "t": TOOLBAR_PX + round((len(lines) - 1) * TITLE_LINE_PX / 2)},
    }
    return title, TOOLBAR_PX + TITLE_LINE_PX * len(lines) + 6


def chart(
    figure: go.Figure,
    title: str,
    *,
    height: int,
    subtitle_lines: int = 0,
    width_px: float = MAX_WIDTH,
    bottom: int = EDGE_PX,
    legend_rows: int = 0,
    **layout,
) -> go.Figure:
    """Lay out a chart that takes the width it is given (``figure``, changed and returned): the title
    (wrapped for ``width_px``, the narrowest it is drawn at) above room for ``subtitle_lines`` lines of
    subplot titles; axes push the margins out as far as their labels need; with ``legend_rows``, the
    legend under the chart (:func:`analysis.figures.style.legend_below`)."""
    if legend_rows:
        layout["legend"], reserved = legend_below(legend_rows)
        bottom = max(bottom, reserved)
    block, top = title_block(title, width_px)
    figure.update_layout(
        title=block,
        height=height,
        margin={"t": top + SUB_LINE_PX * subtitle_lines, "l": EDGE_PX, "r": EDGE_PX, "b": bottom},
        font={"size": SUB_SIZE},
        colorway=PALETTE,
        **layout,
    )
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return figure


@dataclass(frozen=True)
class Panels:
    """A grid of equal panels laid out in pixels: the figure's ``layout``, the axes of each panel
    (``"x2"``, ``"y2"``...), a panel's size, and where a colour bar beside them goes (or None)."""

    layout: dict
    axes: list[tuple[str, str]]
    panel_px: tuple[float, float]
    colorbar: dict | None

    def figure(self, traces: Sequence, shapes: Sequence[dict] = ()) -> go.Figure:
        """The figure of these panels: ``traces`` (graph objects or their dicts) and ``shapes`` in the
        panels' layout, built as one dict (several times faster than trace by trace)."""
        data = [t if isinstance(t, dict) else t.to_plotly_json() for t in traces]
        layout = {**self.layout, "shapes": list(shapes)} if shapes else self.layout
        return go.Figure({"data": data, "layout": layout})

    def cell_px(self, grid: tuple[int, int]) -> float:
        """How many pixels one cell of a (rows, cols) grid drawn on a panel takes."""
        return min(self.panel_px[0] / grid[1], self.panel_px[1] / grid[0])


def panels(
    count: int,
    *,
    cols: int,
    aspect: float = 1.0,
    title: str = "",
    subtitles: Sequence[str] | None = None,
    colorbar: str | None = None,
    width: float = MAX_WIDTH,
    max_panel: float = 420.0,
    min_panel: float = 0.0,
) -> Panels:
    """Lay out ``count`` panels, at most ``cols`` a row, each ``aspect`` (height / width) times as tall as
    wide and as large as ``width`` allows (at most ``max_panel`` px wide): the title on top, each panel's
    subtitle (wrapped to the panel's width) in a row above it, and a colour bar titled ``colorbar`` to the
    right, spanning the panels from the first row's top to the last row's bottom.

    Fewer panels go in a row when that keeps each at least ``min_panel`` px wide and the colour bar at
    least :data:`MIN_BAR_PX` long."""
    side = COLORBAR_PX if colorbar else 0
    subtitles = list(subtitles or [])
    for per_row in range(max(1, min(cols, count)), 0, -1):
        cols = per_row
        panel_w = int(min(max_panel, (width - 2 * EDGE_PX - side - GAP_PX * (cols - 1)) / cols))
        panel_h = round(panel_w * aspect)  # whole pixels: the figure's size is too
        wrapped = [wrap(s, panel_w, SUB_CHAR_PX) if s else [] for s in subtitles]
        sub_h = max((len(lines) for lines in wrapped), default=0) * SUB_LINE_PX
        sub_h += 2 if sub_h else 0
        rows = -(-count // cols)
        row_h = sub_h + panel_h
        plot_h = rows * row_h + ROW_GAP_PX * (rows - 1)
        bar_px = plot_h - sub_h
        if panel_w >= min_panel and (not colorbar or bar_px >= MIN_BAR_PX):
            break
    plot_w = cols * panel_w + GAP_PX * (cols - 1)
    fig_w = plot_w + 2 * EDGE_PX + side
    block, top = title_block(title, fig_w) if title else (None, TOOLBAR_PX)
    layout: dict = {
        "width": round(fig_w),
        "height": round(top + plot_h + EDGE_PX),
        "margin": {"t": top, "l": EDGE_PX, "r": EDGE_PX + side, "b": EDGE_PX, "pad": 0, "autoexpand": False},
        "font": {"size": SUB_SIZE},
        "plot_bgcolor": BACKGROUND,
        "dragmode": False,
        "hovermode": "closest",
        "showlegend": False,
        "annotations": [],
    }
    if block:
        layout["title"] = block
    axes = []
    for n in range(count):
        r, c = divmod(n, cols)
        suffix = "" if n == 0 else str(n + 1)
        x0 = c * (panel_w + GAP_PX) / plot_w
        y1 = 1 - (r * (row_h + ROW_GAP_PX) + sub_h) / plot_h
        domain_x = [_fraction(x0), _fraction(x0 + panel_w / plot_w)]
        domain_y = [_fraction(y1 - panel_h / plot_h), _fraction(y1)]
        common = {
            "showgrid": False,
            "zeroline": False,
            "showticklabels": False,
            "ticks": "",
            "fixedrange": True,
        }
        layout[f"xaxis{suffix}"] = {"domain": domain_x, "anchor": f"y{suffix}", **common}
        layout[f"yaxis{suffix}"] = {"domain": domain_y, "anchor": f"x{suffix}", **common}
        axes.append((f"x{suffix}", f"y{suffix}"))
        if n < len(wrapped) and wrapped[n]:
            layout["annotations"].append({
                "text": "<br>".join(wrapped[n]), "x": sum(domain_x) / 2, "y": domain_y[1], "xref": "paper",
                "yref": "paper", "xanchor": "center", "yanchor": "bottom", "yshift": 1, "showarrow": False,
                "font": {"size": SUB_SIZE},
            })  # fmt: skip
    bar = None
    if colorbar:
        top_y = 1 - sub_h / plot_h
        bottom_y = 1 - ((rows - 1) * (row_h + ROW_GAP_PX) + row_h) / plot_h
        bar = {
            "x": 1 + GAP_PX / plot_w, "xanchor": "left", "xref": "paper", "y": top_y, "yanchor": "top",
            "yref": "paper", "len": top_y - bottom_y, "lenmode": "fraction", "thickness": 12,
            "outlinewidth": 0, "tickfont": {"size": 11}, "ypad": 0, "xpad": 4, "tickformat": ".3~g",
            "nticks": max(2, int(bar_px // TICK_PX)),
            "title": {"text": colorbar, "side": "right", "font": {"size": SUB_SIZE}},
        }  # fmt: skip
    return Panels(layout, axes, (panel_w, panel_h), bar)


def _fraction(value: float) -> float:
    """A paper coordinate, rounded and kept in [0, 1] (rounding must not leave it)."""
    return min(1.0, max(0.0, round(value, 9)))


def drawn(u):
    """The axis value at which input coordinate ``u`` (a number or an array) is drawn: pixel i, spanning
    [i, i + 1), is drawn centred on i."""
    return u - 0.5


def set_ranges(layout: dict, axes: tuple[str, str], height: float, width: float) -> None:
    """Show ``height`` x ``width`` pixels (or cells) on a panel, row 0 on top."""
    x, y = axes
    layout["xaxis" + x[1:]]["range"] = [-0.5, width - 0.5]
    layout["yaxis" + y[1:]]["range"] = [height - 0.5, -0.5]


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


def value_range(values: np.ndarray, symmetric: bool) -> tuple[float, float]:
    """The (low, high) a colour scale spans: the data's, or symmetric around 0."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if symmetric:
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    return low, (high if high > low else low + 1e-12)


def _hover(grid: tuple[int, int], stride: float, origin: tuple[int, int] | None, what: str, value: str):
    """Per cell: (customdata, hovertemplate): [row, col] and, around ``origin`` (the query, a kernel's
    centre), the offset in cells and its distance in input pixels; the value is read from ``value`` (the
    heatmap's ``%{z}``). Heads of one block share the same customdata, so the report stores it once."""
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    text = f"{what} {value}<br>cell (%{{customdata[0]}}, %{{customdata[1]}})"
    data = [rows, cols]
    if origin is not None:
        dy, dx = rows - origin[0], cols - origin[1]
        data += [dy, dx, np.hypot(dy, dx) * stride]
        text += "<br>offset (%{customdata[2]}, %{customdata[3]}) cells, %{customdata[4]:.1f} px"
    return np.stack(data, axis=-1).astype(np.float32), text + "<extra></extra>"


def map_trace(
    values: np.ndarray,
    *,
    stride: float = 1.0,
    colorscale: str = SEQUENTIAL,
    zmin: float | None = None,
    zmax: float | None = None,
    opacity: float = 1.0,
    colorbar: dict | None = None,
    origin: tuple[int, int] | None = None,
    what: str = "value",
    axes: tuple[str, str] = ("x", "y"),
) -> go.Heatmap:
    """A (rows, cols) grid of ``stride``-pixel cells as a heatmap on ``axes``; the colour bar shown where
    ``colorbar`` (:attr:`Panels.colorbar`) says. Around an ``origin`` hovering shows each cell's offset
    and distance (per-cell data); a map without one (an attribution of 224x224 pixels) shows its value
    and position without per-cell data, which would weigh megabytes."""
    if origin is not None:
        customdata, hover = _hover(values.shape, stride, origin, what, "%{z:.4g}")
    else:
        customdata = None
        where = "pixel" if stride == 1 else "pixel (centre of the cell)"
        hover = f"{what} %{{z:.4g}}<br>{where} (%{{y:.0f}}, %{{x:.0f}})<extra></extra>"
    return go.Heatmap(
        z=values, x0=drawn(stride / 2), dx=stride, y0=drawn(stride / 2), dy=stride, zmin=zmin, zmax=zmax,
        colorscale=colorscale, opacity=opacity, showscale=colorbar is not None, colorbar=colorbar,
        customdata=customdata, hovertemplate=hover, xaxis=axes[0], yaxis=axes[1],
    )  # fmt: skip


def cell_markers(
    values: np.ndarray,
    stride: float,
    cell_px: float,
    origin: tuple[int, int] | None = None,
    *,
    what: str = "value",
    axes: tuple[str, str] = ("x", "y"),
) -> go.Scatter:
    """One near-transparent square per cell (what a click selects), hovering like the map under it;
    ``customdata`` starts with [row, col] and ends with the value."""
    customdata, hover = _hover(
        values.shape, stride, origin, what, f"%{{customdata[{2 + 3 * (origin is not None)}]:.4g}}"
    )
    customdata = np.concatenate([customdata, values[..., None].astype(np.float32)], axis=-1)
    y, x = cell_centre(customdata[..., 0].ravel(), customdata[..., 1].ravel(), stride=stride)
    return go.Scatter(
        x=drawn(x), y=drawn(y), mode="markers",
        marker={"size": max(4.0, cell_px), "opacity": 0.01, "symbol": "square"},
        customdata=customdata.reshape(-1, customdata.shape[-1]), name="cells", showlegend=False,
        hovertemplate=hover, xaxis=axes[0], yaxis=axes[1],
    )  # fmt: skip


def query_marker(
    query: tuple[float, float], stride: float, cell_px: float, *, axes: tuple[str, str] = ("x", "y")
) -> go.Scatter:
    """The query cell outlined (an open square the size of the cell: its value stays visible)."""
    y, x = cell_centre(*query, stride=stride)
    return go.Scatter(
        x=[drawn(x)], y=[drawn(y)], mode="markers",
        marker={"symbol": "square-open", "size": max(7.0, cell_px - 1), "color": QUERY_COLOUR,
                "line": {"width": 2, "color": QUERY_COLOUR}},
        name="query", showlegend=False, hoverinfo="skip", xaxis=axes[0], yaxis=axes[1],
    )  # fmt: skip


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
    opacity: float = DEFAULT_OPACITY,
    what: str = "value",
    max_panel: float = 420.0,
) -> go.Figure:
    """A grid map (rows, cols) drawn over ``image`` (H, W[, C]), one panel with its colour bar (titled
    ``what``); ``query`` (row, col) outlined."""
    height, width = values.shape[0] * stride, values.shape[1] * stride
    grid = panels(1, cols=1, aspect=height / width, title=title, colorbar=what, max_panel=max_panel)
    layout = grid.layout
    set_ranges(layout, grid.axes[0], height, width)
    cell = grid.cell_px(values.shape)
    traces = [] if image is None else [image_trace(image)]
    traces.append(map_trace(
        values, stride=stride, colorscale=colorscale, zmin=zmin, zmax=zmax,
        opacity=opacity if image is not None else 1.0, colorbar=grid.colorbar, origin=query, what=what,
    ))  # fmt: skip
    if clickable:
        traces.append(cell_markers(values, stride, cell, query, what=what))
        layout["clickmode"] = "event+select"
    if query is not None:
        traces.append(query_marker(query, stride, cell))
    return grid.figure(traces)


def head_grid(
    image: np.ndarray | None,
    maps: np.ndarray,
    *,
    stride: float = 1.0,
    titles: Sequence[str] | None = None,
    title: str = "",
    query: tuple[int, int] | None = None,
    cols: int = 8,
    colorscale: str = SEQUENTIAL,
    symmetric: bool = False,
    what: str = "value",
    opacity: float = DEFAULT_OPACITY,
    max_panel: float = 200.0,
    min_panel: float = 64.0,
) -> go.Figure:
    """One small map per head (``maps``: (heads, rows, cols)) on one colour scale, at most ``cols`` a row
    (a compact overview: 16 heads are three rows of at most six, 67 px each), the query outlined in each."""
    heads = maps.shape[0]
    titles = list(titles) if titles is not None else [f"head {h}" for h in range(heads)]
    height, width = maps.shape[1] * stride, maps.shape[2] * stride
    grid = panels(
        heads, cols=cols, aspect=height / width, title=title, subtitles=titles, colorbar=what,
        max_panel=max_panel, min_panel=min_panel,
    )  # fmt: skip
    zmin, zmax = value_range(maps, symmetric)
    cell = grid.cell_px(maps.shape[1:])
    picture = image_trace(image).to_plotly_json() if image is not None else None
    # built as one dict, not trace by trace through make_subplots: several times faster, and a click on a
    # new query redraws this figure
    traces = []
    for h, axes in enumerate(grid.axes):
        set_ranges(grid.layout, axes, height, width)
        if picture is not None:
            traces.append({**picture, "xaxis": axes[0], "yaxis": axes[1]})
        traces.append(map_trace(
            maps[h], stride=stride, zmin=zmin, zmax=zmax, colorscale=colorscale,
            opacity=opacity if image is not None else 1.0, colorbar=grid.colorbar if h == 0 else None,
            origin=query, what=what, axes=axes,
        ).to_plotly_json())  # fmt: skip
        if query is not None:
            traces.append(query_marker(query, stride, cell, axes=axes).to_plotly_json())
    return grid.figure(traces)


def kernel_gallery(
    kernels: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    title: str = "",
    cols: int = 8,
    what: str = "weight",
    symmetric: bool = True,
) -> go.Figure:
    """Kernels (n, kh, kw) as small heatmaps, rows = dy, columns = dx, the centre (offset 0, 0) outlined;
    hovering a tap shows its offset."""
    return head_grid(
        None, kernels, stride=1.0, titles=titles, title=title, cols=cols,
        colorscale=DIVERGING if symmetric else SEQUENTIAL, symmetric=symmetric, what=what,
        query=(kernels.shape[1] // 2, kernels.shape[2] // 2), max_panel=110.0, min_panel=40.0,
    )  # fmt: skip


def distance_scatter(
    series: dict[str, tuple[Sequence[str], Sequence[np.ndarray]]],
    *,
    title: str = "Mean attention distance",
    y_label: str = "distance (input px)",
) -> go.Figure:
    """Per block, one dot per head (the ViT paper's Fig. 7). ``series``: label -> (block names, values
    per block (heads,))."""
    figure = go.Figure()
    blocks: Sequence[str] = []
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
    # every block named, the first and last too (an automatic range once dropped the last label)
    ticks = list(range(len(blocks)))
    figure.update_xaxes(  # no zero line: x = 0 is the first block, not a value
        tickvals=ticks, ticktext=list(blocks), range=[-0.5, len(blocks) - 0.5], zeroline=False
    )
    return chart(figure, title, height=380, legend_rows=1, xaxis_title="attention block", yaxis_title=y_label)


def matrix_figure(
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str = "",
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorscale: str = MATRIX,
    what: str = "",
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
            colorbar={"thickness": 12, "title": {"text": what, "side": "right"}},
        )
    )
    figure.update_yaxes(autorange="reversed")
    return chart(figure, title, height=120 + 36 * max(len(rows), 3))
