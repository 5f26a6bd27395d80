"""The Plotly building blocks of every figure, made in the figure language of :mod:`analysis.figures.panels`:
a picture as an image trace, a grid map on its pixels with its hover, click markers and the query's outline,
a map over its image, a grid of heads, a kernel gallery, the per-head scatter and a labelled matrix."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from analysis.core.query import cell_centre
from analysis.figures.panels import (
    DEFAULT_OPACITY,
    NBSP,
    chart,
    drawn,
    panels,
    set_ranges,
)
from analysis.figures.style import (
    DIVERGING,
    MATRIX,
    QUERY_COLOUR,
    SEQUENTIAL,
    UNSEEN_COLOUR,
    WINDOW_COLOUR,
    Scale,
)


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


NEARLY_UNIFORM = 0.1  # a map whose values span less than this fraction of their mean is nearly uniform


def nearly_uniform(values: np.ndarray) -> bool:
    """Whether ``values`` (>= 0) vary by less than :data:`NEARLY_UNIFORM` of their mean: stretched from
    their minimum to their maximum, such a map (a class relevance of 0.0204-0.0216, all within 1/49 +- 3%)
    would look like a strong pattern."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    mean = float(np.nanmean(values))
    return low >= 0 and mean > 0 and high - low < NEARLY_UNIFORM * mean


def value_range(values: np.ndarray, symmetric: bool) -> tuple[float, float]:
    """The (low, high) a colour scale spans: the data's, symmetric around 0, or, for a nearly uniform map
    (:func:`nearly_uniform`), from 0, so that it is drawn as the even map it is."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if symmetric:
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    if nearly_uniform(values):
        return 0.0, high
    return low, (high if high > low else low + 1e-12)


def readable(value: float, digits: int = 3) -> str:
    """A number as people read it: ``digits`` significant digits, no exponent between 1e-4 and 1e5."""
    if value == 0 or not np.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if 1e-4 <= magnitude < 1e5:
        decimals = max(0, digits - 1 - int(np.floor(np.log10(magnitude))))
        return f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"
    return f"{value:.{digits - 1}e}"


def readable_apart(values) -> list[str]:
    """Each of ``values`` :func:`readable`, with as few digits (3 to 7) as keep different values apart."""
    distinct = len({float(v) for v in values})
    for digits in range(3, 8):
        text = [readable(float(v), digits) for v in values]
        if len(set(text)) == distinct:
            break
    return text


def readable_range(low: float, high: float) -> str:
    """``low to high``, each :func:`readable`; an end within a thousandth of the span from 0 is written 0
    (a softmax's 2.95e-21 is 0 next to its 0.999)."""
    span = abs(high - low) or max(abs(low), abs(high)) or 1.0
    start, end = readable_apart([0.0 if abs(v) < 1e-3 * span else v for v in (low, high)])
    return f"{start}{NBSP}to{NBSP}{end}"


def uniform_note(values: np.ndarray) -> str:
    """What a title adds for a nearly uniform map: its range; empty for any other."""
    return f" (nearly uniform: {panel_range(values)})" if nearly_uniform(values) else ""


OWN_SCALES = "each panel on its own scale, its range under its name"


def panel_range(values: np.ndarray) -> str:
    """A panel's range for its subtitle, in a figure whose panels each have their own scale."""
    return readable_range(float(np.nanmin(values)), float(np.nanmax(values)))


def colour_ticks(low: float, high: float, count: int) -> dict:
    """A colour bar's ``tickvals`` and ``ticktext``: round values (1, 2, 2.5 or 5 times a power of ten
    apart) inside ``low``..``high``, at least 3 and at most ``count`` (capped at 6), each written with as
    few digits as keep them apart, 0 as "0"."""
    count = max(3, min(6, count))
    span = high - low
    values = np.linspace(low, high, 3)
    if np.isfinite(span) and span > 0:
        magnitude = 10.0 ** np.floor(np.log10(span / (count - 1)))
        steps = [m * magnitude for m in (10, 5, 2.5, 2, 1, 0.5, 0.25, 0.2, 0.1)]
        for step in steps:  # the widest step that still gives three ticks
            ticks = np.arange(np.ceil(low / step - 1e-9) * step, high + 1e-9 * span, step)
            if 3 <= len(ticks) <= count:
                values = np.where(np.abs(ticks) < 1e-9 * span, 0.0, ticks)
                break
    return {"tickvals": [float(v) for v in values], "ticktext": readable_apart(values), "tickmode": "array"}


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
    colorscale: Scale = SEQUENTIAL,
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
    if colorbar is not None:  # ticks at readable values, at least three (Plotly's may leave one, "0")
        low, high = (zmin, zmax) if zmin is not None and zmax is not None else value_range(values, False)
        colorbar = {k: v for k, v in colorbar.items() if k != "nticks"}
        colorbar.update(colour_ticks(low, high, (colorbar.get("len_px") or 0) // 32))
        colorbar.pop("len_px", None)
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


UNSEEN = "not attended: outside the query's window"


def unseen_trace(unseen: np.ndarray, stride: float, *, axes: tuple[str, str] = ("x", "y")) -> dict:
    """The cells a query does not attend to (``unseen``: (rows, cols) bool, outside its window or dilated
    grid group) in one flat grey, drawn over the map, hover saying so: never shown as zero attention."""
    z = np.where(unseen, 1.0, np.nan)
    return go.Heatmap(
        z=z, x0=drawn(stride / 2), dx=stride, y0=drawn(stride / 2), dy=stride, zmin=0, zmax=1,
        colorscale=[[0, UNSEEN_COLOUR], [1, UNSEEN_COLOUR]], showscale=False, name="not attended",
        hovertemplate=f"{UNSEEN}<extra></extra>", xaxis=axes[0], yaxis=axes[1],
    ).to_plotly_json()  # fmt: skip


def window_outline(seen: np.ndarray, stride: float, *, axes: tuple[str, str] = ("x", "y")) -> dict:
    """The boundary of the cells a query attends to (``seen``: (rows, cols) bool): one rectangle around a
    block window, a square around each cell of a dilated grid group; one line trace."""
    padded = np.pad(np.asarray(seen, dtype=bool), 1)
    xs: list[float | None] = []
    ys: list[float | None] = []
    for r, c in zip(*np.nonzero(seen), strict=True):
        top, left, bottom, right = r * stride, c * stride, (r + 1) * stride, (c + 1) * stride
        edges = (
            (not padded[r, c + 1], (left, top), (right, top)),
            (not padded[r + 2, c + 1], (left, bottom), (right, bottom)),
            (not padded[r + 1, c], (left, top), (left, bottom)),
            (not padded[r + 1, c + 2], (right, top), (right, bottom)),
        )
        for outside, a, b in edges:
            if outside:
                xs += [drawn(a[0]), drawn(b[0]), None]
                ys += [drawn(a[1]), drawn(b[1]), None]
    return go.Scatter(
        x=xs, y=ys, mode="lines", line={"color": WINDOW_COLOUR, "width": 2}, name="attended window",
        showlegend=False, hoverinfo="skip", xaxis=axes[0], yaxis=axes[1],
    ).to_plotly_json()  # fmt: skip


WINDOW_NOTES = {
    "block": "; block attention within its {}x{} window (outlined), grey: not attended",
    "grid": "; grid attention within its {}x{} grid group, dilated (outlined), grey: not attended",
}


def window_note(block) -> str:
    """What a title says of windowed attention: which window a query sees, and what grey means."""
    if block.partition == "global":
        return ""
    if block.windows == 1:
        return f"; {block.partition} attention, one window: the whole grid"
    return WINDOW_NOTES[block.partition].format(*block.window)


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
    colorscale: Scale = SEQUENTIAL,
    opacity: float = DEFAULT_OPACITY,
    what: str = "value",
    max_panel: float = 420.0,
    seen: np.ndarray | None = None,
) -> go.Figure:
    """A grid map (rows, cols) drawn over ``image`` (H, W[, C]), one panel with its colour bar (titled
    ``what``); ``query`` (row, col) outlined; for windowed attention the cells outside ``seen`` (the
    query's window) grey, "not attended", and the window outlined."""
    if zmin is None and zmax is None:
        zmin, zmax = value_range(values, False)
    title += uniform_note(values)
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
    if seen is not None and not seen.all():
        traces += [unseen_trace(~seen, stride), window_outline(seen, stride)]
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
    colorscale: Scale = SEQUENTIAL,
    symmetric: bool = False,
    what: str = "value",
    opacity: float = DEFAULT_OPACITY,
    max_panel: float = 200.0,
    min_panel: float = 64.0,
    selected: int | None = None,
    width: float | None = None,
    seen: np.ndarray | None = None,
) -> go.Figure:
    """One small map per head (``maps``: (heads, rows, cols)) on one colour scale, at most ``cols`` a row
    and together as wide as ``width`` px allows (each at most ``max_panel``: in 560 px, 16 heads are three
    rows of six, 67 px each; in 1,080 px, two rows of eight, 113 px each), the query outlined in each; the
    ``selected`` head (the one a larger figure shows) framed and named so; for windowed attention the
    cells outside ``seen`` grey ("not attended") and the window outlined in each."""
    heads = maps.shape[0]
    titles = list(titles) if titles is not None else [f"head {h}" for h in range(heads)]
    title += uniform_note(maps) if not symmetric else ""
    if selected is not None:
        titles[selected] = f"{titles[selected]} (shown above)"
    height, across = maps.shape[1] * stride, maps.shape[2] * stride
    grid = panels(
        heads, cols=cols, aspect=height / across, title=title, subtitles=titles, colorbar=what,
        width=width, max_panel=max_panel, min_panel=min_panel,
    )  # fmt: skip
    zmin, zmax = value_range(maps, symmetric)
    cell = grid.cell_px(maps.shape[1:])
    picture = image_trace(image).to_plotly_json() if image is not None else None
    # built as one dict, not trace by trace through make_subplots: several times faster, and a click on a
    # new query redraws this figure
    traces = []
    for h, axes in enumerate(grid.axes):
        set_ranges(grid.layout, axes, height, across)
        if picture is not None:
            traces.append({**picture, "xaxis": axes[0], "yaxis": axes[1]})
        traces.append(map_trace(
            maps[h], stride=stride, zmin=zmin, zmax=zmax, colorscale=colorscale,
            opacity=opacity if image is not None else 1.0, colorbar=grid.colorbar if h == 0 else None,
            origin=query, what=what, axes=axes,
        ).to_plotly_json())  # fmt: skip
        if seen is not None and not seen.all():
            traces += [unseen_trace(~seen, stride, axes=axes), window_outline(seen, stride, axes=axes)]
        if query is not None:
            traces.append(query_marker(query, stride, cell, axes=axes).to_plotly_json())
    shapes = []
    if selected is not None:  # a frame just outside the selected panel
        x, y = grid.axes[selected]
        shapes.append({
            "type": "rect", "xref": f"{x} domain", "yref": f"{y} domain", "x0": -0.03, "x1": 1.03,
            "y0": -0.03, "y1": 1.03, "line": {"color": QUERY_COLOUR, "width": 2},
        })  # fmt: skip
    return grid.figure(traces, shapes)


def kernel_gallery(
    kernels: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    title: str = "",
    cols: int = 8,
    what: str = "weight",
    symmetric: bool = True,
    max_panel: float = 110.0,
    min_panel: float = 40.0,
) -> go.Figure:
    """Kernels (n, kh, kw) as small heatmaps, rows = dy, columns = dx, the centre (offset 0, 0) outlined;
    hovering a tap shows its offset."""
    return head_grid(
        None, kernels, stride=1.0, titles=titles, title=title, cols=cols,
        colorscale=DIVERGING if symmetric else SEQUENTIAL, symmetric=symmetric, what=what,
        query=(kernels.shape[1] // 2, kernels.shape[2] // 2), max_panel=max_panel, min_panel=min_panel,
    )  # fmt: skip


LABELLED_DOTS = 24  # a head-distance scatter writes each dot's head number up to this many dots a block


def distance_scatter(
    series: dict[str, tuple[Sequence[str], Sequence[np.ndarray]]],
    *,
    title: str = "Mean attention distance",
    y_label: str = "distance (input px)",
) -> go.Figure:
    """Per block, one dot per head (the ViT paper's Fig. 7), each series in a band of its own within the
    block's slot and each head at its own place in it, labelled with its number where they fit (at most
    :data:`LABELLED_DOTS` dots a block; hovering names every one). ``series``: label -> (block names,
    values per block (heads,))."""
    figure = go.Figure()
    blocks: Sequence[str] = []
    band = 0.8 / max(1, len(series))  # of the block's slot, one band per series
    most = max((len(v) for _, values in series.values() for v in values), default=0)
    labelled = most * len(series) <= LABELLED_DOTS
    for k, (label, (blocks, values)) in enumerate(series.items()):
        centre = -0.4 + band * (k + 0.5)
        spread = [
            np.linspace(-0.35 * band, 0.35 * band, len(v)) if len(v) > 1 else np.zeros(1) for v in values
        ]
        xs = np.concatenate([i + centre + s for i, s in enumerate(spread)]) if values else []
        heads = np.concatenate([np.arange(len(v)) for v in values]) if values else []
        names = np.concatenate([[b] * len(v) for b, v in zip(blocks, values, strict=True)]) if values else []
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=np.concatenate(values) if values else [],
                mode="markers+text" if labelled else "markers",
                text=[str(h) for h in heads] if labelled else None,
                textposition="top center",
                textfont={"size": 9},
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
    colorscale: Scale = MATRIX,
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
