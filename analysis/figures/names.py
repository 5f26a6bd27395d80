"""Every figure's stable machine name, set and read in one place.

Each figure builder of :mod:`analysis.figures` gives its figure a name (``"attention-heads"``,
``"rollout"``, ``"sanity-cascade"``) with :func:`named`, kept in the figure's ``layout.meta`` as
``{"name": ...}``. Titles are for people and may change with a copy edit; the name is what code (and a
test) finds a figure by, in the figure object, in its JSON spec (as Streamlit or a notebook holds it) and in
the browser (``gd.layout.meta.name``). Plotly draws nothing from ``meta`` unless a text asks for
``%{meta...}``, so a name changes neither the drawing nor the PNG.
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

__all__ = ["figure_name", "named"]


def named(figure: go.Figure, name: str) -> go.Figure:
    """Give ``figure`` its stable machine ``name`` (changed and returned).

    Args:
        figure: the figure a builder made.
        name: lower-case words joined by hyphens, one per kind of figure (``"attention-heads"``).

    Returns:
        ``figure``, its ``layout.meta`` set to ``{"name": name}``.

    Examples:
        >>> import plotly.graph_objects as go
        >>> from analysis.figures.names import named
        >>> named(go.Figure(), "rollout").layout.meta
        {'name': 'rollout'}
    """
    figure.layout.meta = {"name": name}
    return figure


def figure_name(figure: go.Figure | Mapping) -> str | None:
    """The stable name of a figure, or None: of a figure object or of its JSON spec (a dict).

    Args:
        figure: a Plotly figure, or its spec (``{"data": ..., "layout": ...}``).

    Returns:
        The name :func:`named` gave it, or None for a figure without one.

    Examples:
        >>> import plotly.graph_objects as go
        >>> from analysis.figures.names import figure_name, named
        >>> figure_name(named(go.Figure(), "rollout")), figure_name({"layout": {}})
        ('rollout', None)
    """
    meta = figure.get("layout", {}).get("meta") if isinstance(figure, Mapping) else figure.layout.meta
    return meta.get("name") if isinstance(meta, Mapping) else None
