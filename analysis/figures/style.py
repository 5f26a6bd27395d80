"""The colours and the legend of every figure, defined once: the colour scales, the one palette of named
things (layouts, interventions, block kinds, splits), the query's colour and the legend's place.

- :data:`SEQUENTIAL` for maps of values >= 0 from their minimum to their maximum, :data:`HEAT` for
  relevance and gradient mass (>= 0, the hot end the most), :data:`MATRIX` for matrices of values in [0, 1]
  with the values written in their cells, :data:`DIVERGING` centred on 0 only for signed values.
- :data:`PALETTE` (Tableau 10) colours named series; a name keeps its colour in every figure.
- :data:`QUERY_COLOUR` is in none of the scales, so the query's outline shows on any map; so are the
  receptive field's boxes (:data:`THEORY_COLOUR`, :data:`MASS_COLOUR`).
- A legend goes under its chart, left-aligned, in a band the chart reserves (:func:`legend_below`).
"""

from __future__ import annotations

SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
HEAT = "Inferno"
MATRIX = "Magma"
QUERY_COLOUR = "#ff00ff"
THEORY_COLOUR, MASS_COLOUR = "cyan", "lime"  # a receptive field's theoretical box and its 50% mass box

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
