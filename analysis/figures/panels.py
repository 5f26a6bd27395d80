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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import plotly.graph_objects as go

from analysis.figures.style import BACKGROUND, PALETTE, legend_below

MAX_WIDTH = 560  # px: the widest fixed-size figure
"""The widest fixed-size figure, in px.

Examples:
    >>> from analysis import figures
    >>> figures.MAX_WIDTH
    560
"""
TOOLBAR_PX = 34  # the band at the top left free for Plotly's toolbar
EDGE_PX = 8  # the margin left, right and below
GAP_PX = 6  # between panels, across
ROW_GAP_PX = 10  # between rows of panels
COLORBAR_PX = 112  # right of the panels: the bar, its tick labels and its title
TITLE_SIZE, TITLE_LINE_PX, TITLE_CHAR_PX = 14, 19, 8.0  # a title line; a character's width, generously
SUB_SIZE, SUB_LINE_PX, SUB_CHAR_PX = 12, 16, 7.0  # the same for subplot titles
DEFAULT_OPACITY = 0.6  # of a map over its image
"""The opacity of a map drawn over its image, the figures' default.

Examples:
    >>> from analysis import figures
    >>> figures.DEFAULT_OPACITY
    0.6
"""
MIN_PANEL_PX = 160  # in a column (:func:`drawn_at`), no panel of a figure of several is narrower
_COLUMN: ContextVar[float | None] = ContextVar("figure_column", default=None)


@contextmanager
def drawn_at(width: float) -> Iterator[None]:
    """Figures built inside this block are laid out for a column ``width`` px wide (the app's content
    column, as the browser reports it): a figure of several maps fills it, each panel at least
    :data:`MIN_PANEL_PX` wide (fewer a row where needed, a row of a matrix wrapped whole), and a figure of
    one map takes the column up to the map's own largest size. Outside, figures keep their fixed sizes
    (at most :data:`MAX_WIDTH`), as the report and the exports draw them. Per thread and task.

    Args:
        width: the column's width in px.

    Yields:
        Nothing; the context is the setting.

    Examples:
        >>> import numpy as np
        >>> from analysis.figures import drawn_at
        >>> from analysis.figures.plots import head_grid
        >>> maps = np.random.default_rng(0).random((8, 7, 7))
        >>> head_grid(None, maps).layout.width
        560
        >>> with drawn_at(940):  # four a row, about 200 px each, and the colour bar
        ...     head_grid(None, maps).layout.width
        938
    """
    token = _COLUMN.set(float(width))
    try:
        yield
    finally:
        _COLUMN.reset(token)


def column_width() -> float | None:
    """The width of the column figures are being laid out for (:func:`drawn_at`), or None outside one.

    Returns:
        The width in px, or None.

    Examples:
        >>> from analysis.figures import column_width, drawn_at
        >>> column_width() is None
        True
        >>> with drawn_at(980):
        ...     column_width()
        980.0
    """
    return _COLUMN.get()


MIN_BAR_PX = 100  # a colour bar is at least this long: its title and three tick labels fit
TICK_PX = 32  # a colour bar gets a tick label per this many pixels


NBSP = "\u00a0"  # a space no line breaks at: a pair, a range and a number with its unit stay on one line


def pair(a, b) -> str:
    """``(a, b)``, never split across two lines."""
    return f"({a},{NBSP}{b})"


def wrap(text: str, width_px: float, char_px: float = TITLE_CHAR_PX) -> list[str]:
    """``text`` in lines that fit ``width_px`` (existing ``<br>`` breaks kept; words joined by
    :data:`NBSP` stay together while they fit a line, else break there; a word longer than a line is cut
    into pieces)."""
    chars = max(4, int(width_px // char_px))
    lines = []
    for paragraph in text.split("<br>"):
        line = ""
        words = []
        for word in filter(None, paragraph.split(" ")):
            words += word.split(NBSP) if len(word) > chars else [word]
        for word in words:
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
    width_px: float | None = None,
    bottom: int = EDGE_PX,
    legend_rows: int = 0,
    note: str = "",
    **layout,
) -> go.Figure:
    """Lay out a chart that takes the width it is given (``figure``, changed and returned): the title
    (wrapped for ``width_px``, the narrowest it is drawn at) above room for ``subtitle_lines`` lines of
    subplot titles; axes push the margins out as far as their labels need; with ``legend_rows``, the
    legend under the chart (:func:`analysis.figures.style.legend_below`); a ``note`` (a sentence on how to
    read it) in the band at the very bottom, wrapped like the title. The title's and the note's extra
    lines add to ``height``: the plot area keeps its size. ``width_px`` None: the column of
    :func:`drawn_at`, else :data:`MAX_WIDTH`."""
    if width_px is None:
        width_px = _COLUMN.get() or MAX_WIDTH
    if legend_rows:
        layout["legend"], reserved = legend_below(legend_rows)
        bottom = max(bottom, reserved)
    block, top = title_block(title, width_px)
    one_line = TOOLBAR_PX + TITLE_LINE_PX + 6
    extra = top - one_line
    if note:
        lines = wrap(note, width_px - 2 * EDGE_PX, SUB_CHAR_PX)
        band = SUB_LINE_PX * len(lines) + EDGE_PX
        annotations = list(layout.pop("annotations", ()))
        annotations.append({  # under the axis labels (the margin below the plot before the note's band)
            "text": "<br>".join(lines), "xref": "paper", "x": 0, "xanchor": "left", "yref": "paper",
            "y": 0, "yanchor": "top", "yshift": -bottom, "showarrow": False, "align": "left",
            "font": {"size": SUB_SIZE},
        })  # fmt: skip
        bottom, extra = bottom + band, extra + band
        layout["annotations"] = annotations
    figure.update_layout(
        title=block,
        height=height + extra,
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
    width: float | None = None,
    max_panel: float = 420.0,
    min_panel: float = 0.0,
    matrix: bool = False,
) -> Panels:
    """Lay out ``count`` panels, at most ``cols`` a row, each ``aspect`` (height / width) times as tall as
    wide and as large as ``width`` allows (at most ``max_panel`` px wide): the title on top, each panel's
    subtitle (wrapped to the panel's width) in a row above it, and a colour bar titled ``colorbar`` to the
    right, spanning the panels from the first row's top to the last row's bottom.

    Fewer panels go in a row when that keeps each at least ``min_panel`` px wide and the colour bar at
    least :data:`MIN_BAR_PX` long; with ``matrix`` (every ``cols`` panels a row that means something, as
    a layout's stages), each such row is wrapped whole, never run into the next. ``width`` None: the
    column of :func:`drawn_at`, where several panels fill it at :data:`MIN_PANEL_PX` or more each and one
    takes it up to ``max_panel``; else :data:`MAX_WIDTH`."""
    column = _COLUMN.get()
    if width is None:
        width = column or MAX_WIDTH
        if column is not None and count > 1:
            min_panel, max_panel = max(min_panel, MIN_PANEL_PX), max(max_panel, width)
    side = COLORBAR_PX if colorbar else 0
    subtitles = list(subtitles or [])
    group = cols if matrix else count  # panels that start a new row together
    for per_row in range(max(1, min(cols, count)), 0, -1):
        cols = per_row
        panel_w = int(min(max_panel, (width - 2 * EDGE_PX - side - GAP_PX * (cols - 1)) / cols))
        panel_h = round(panel_w * aspect)  # whole pixels: the figure's size is too
        wrapped = [wrap(s, panel_w, SUB_CHAR_PX) if s else [] for s in subtitles]
        sub_h = max((len(lines) for lines in wrapped), default=0) * SUB_LINE_PX
        sub_h += 2 if sub_h else 0
        lines_per_group = -(-min(group, count) // cols)
        rows = -(-count // group) * lines_per_group if matrix else -(-count // cols)
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
        if matrix:  # the n-th panel's own row, wrapped into lines of ``cols``
            g, k = divmod(n, group)
            r, c = g * lines_per_group + k // cols, k % cols
        else:
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
            "outlinewidth": 0, "tickfont": {"size": 11}, "ypad": 0, "xpad": 4, "len_px": bar_px,
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
