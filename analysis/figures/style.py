"""The colours and the legend of every figure, defined once: the colour scales, the one palette of named
things (layouts, interventions, block kinds, splits), the query's colour and the legend's place.

- :data:`SEQUENTIAL` for maps of values >= 0 from their minimum to their maximum, :data:`HEAT` for
  relevance and gradient mass (>= 0, the hot end the most), :data:`MATRIX` for matrices of values in [0, 1]
  with the values written in their cells, :data:`DIVERGING` centred on 0 only for signed values.
- :data:`PALETTE` (Tableau 10) colours named series; a name keeps its colour in every figure.
- :data:`QUERY_COLOUR` is in none of the scales, so the query's outline shows on any map; so are the
  receptive field's boxes (:data:`THEORY_COLOUR`, :data:`MASS_COLOUR`), and for windowed attention the
  grey of the cells a query does not attend to (:data:`UNSEEN_COLOUR`) and the outline of its window or
  grid group (:data:`WINDOW_COLOUR`).
- A legend goes under its chart, left-aligned, in a band the chart reserves (:func:`legend_below`).

Every scale is written out as its stops, each an ``rgb(r, g, b)`` string (:func:`stops`): Streamlit's front
end replaces the colours ``#000001`` to ``#000040`` in every Plotly chart it draws (its theme's
placeholders, with ``theme=None`` too), and ``#000004`` is the first stop of Inferno and Magma, so a scale
named or written in hex drew zero lilac in the app while the exports were right.
"""

from __future__ import annotations

import re

import plotly.colors

# the colours Streamlit's front end rewrites in a Plotly chart's JSON (its theme's placeholders)
# (a plain substring replacement, so "#0000041f" is rewritten too)
STREAMLIT_PLACEHOLDER = re.compile(r"#0000(?:[0-3][0-9]|40)")


Scale = list[list]  # [[position, colour], ...] as Plotly takes a colour scale


def stops(name: str) -> Scale:
    """Plotly's scale ``name`` (``_r`` reversed) as ``[position, "rgb(r, g, b)"]`` stops: the same colours,
    in a form no front end rewrites."""
    scale = plotly.colors.get_colorscale(name)
    rgb = plotly.colors.convert_colors_to_same_type([c for _, c in scale], colortype="rgb")[0]
    return [
        [float(p), "rgb({}, {}, {})".format(*(round(v) for v in plotly.colors.unlabel_rgb(c)))]
        for (p, _), c in zip(scale, rgb, strict=True)
    ]


SEQUENTIAL = stops("Viridis")
DIVERGING = stops("RdBu_r")
HEAT = stops("Inferno")
MATRIX = stops("Magma")
QUERY_COLOUR = "#ff00ff"
THEORY_COLOUR, MASS_COLOUR = "cyan", "lime"  # a receptive field's theoretical box and its 50% mass box
# windowed attention: the cells a query cannot attend to (outside its window or grid group), and the
# outline of those it can; neither is in any scale
UNSEEN_COLOUR, WINDOW_COLOUR = "rgb(190, 190, 190)", "#ff8c00"

PALETTE = (
    "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
    "#bab0ac",
)  # fmt: skip
BLUE, ORANGE, RED, TEAL, GREEN, YELLOW, PURPLE, PINK, BROWN, GREY = PALETTE
OTHER = "#888888"  # a name no mapping below knows
BACKGROUND = "white"  # behind the panels

LAYOUT_COLOURS = {"C-C-C-C": BLUE, "C-C-C-T": TEAL, "C-C-T-T": GREEN, "C-T-T-T": ORANGE, "ViT_REL": RED}
INTERVENTION_COLOURS = {
    "knockout": BLUE, "content_only": ORANGE, "bias_only": GREEN, "uniform": PURPLE,
    "swap_normalization": BROWN, "zero_branch": RED, "no_se": TEAL,
}  # fmt: skip
BLOCK_KIND_COLOURS = {"conv": GREY, "patch": GREY, "C": BLUE, "T": RED}  # MBConv blue, Transformer red
SPLIT_COLOURS = {"train": BLUE, "test": RED}

LEGEND_ROW_PX = 22  # one row of a horizontal legend
AXIS_BELOW_PX = 52  # tick labels and an axis title under a chart's plot area


def colour(mapping: dict[str, str], name: str) -> str:
    """The colour ``mapping`` gives ``name``, or :data:`OTHER`."""
    return mapping.get(name, OTHER)


def legend_below(rows: int = 1) -> tuple[dict, int]:
    """The one legend layout: horizontal, left-aligned, at the bottom of the figure (container
    coordinates, so it never depends on the plot's height), and the bottom margin in pixels that keeps
    ``rows`` legend rows clear of the axis labels above them."""
    legend = {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container", "y": 0, "yanchor": "bottom"}
    return legend, AXIS_BELOW_PX + LEGEND_ROW_PX * rows
