"""Plotly figures of every result, for the app, the report and the docs; the figure language itself lies in
:mod:`analysis.figures.panels` (sizes, panels, titles), :mod:`analysis.figures.style` (colour scales,
palette, legend) and :mod:`analysis.figures.plots` (the traces and plots built with them). Imports the
results' modules; never the report.

This face hands on what each figure module lists in its ``__all__``: a new figure joins the face by its
name in its own module's list. A dataset study's frequency figure is ``study_frequency_figure``
(``frequency_figure`` draws one image's), and the layout study's views (Grad-CAM, receptive field,
attention) are ``LAYOUT_VIEWS``.
"""

from __future__ import annotations

from analysis.figures import causal, compare, explanations, kernels, layouts, maps, sanity, stages, studies
from analysis.figures.causal import *  # noqa: F403
from analysis.figures.compare import *  # noqa: F403
from analysis.figures.explanations import *  # noqa: F403
from analysis.figures.kernels import *  # noqa: F403
from analysis.figures.layouts import *  # noqa: F403
from analysis.figures.maps import *  # noqa: F403
from analysis.figures.panels import DEFAULT_OPACITY as DEFAULT_OPACITY
from analysis.figures.panels import MAX_WIDTH as MAX_WIDTH
from analysis.figures.panels import column_width as column_width
from analysis.figures.panels import drawn_at as drawn_at
from analysis.figures.sanity import *  # noqa: F403
from analysis.figures.stages import *  # noqa: F403
from analysis.figures.studies import *  # noqa: F403

__all__ = sorted(
    [
        "DEFAULT_OPACITY",
        "MAX_WIDTH",
        "column_width",
        "drawn_at",
        *causal.__all__,
        *compare.__all__,
        *explanations.__all__,
        *kernels.__all__,
        *layouts.__all__,
        *maps.__all__,
        *sanity.__all__,
        *stages.__all__,
        *studies.__all__,
    ]
)
