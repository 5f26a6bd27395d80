"""Figures of the sanity checks (an :class:`analysis.SanityReport`): the cascade as a grid of maps (Adebayo
et al. 2018, figure 2, for one image), the similarity to the trained model's map as parts are randomised,
and the random logit test's similarity per method. Shared by the app and ``coatnet analyze``'s report."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.figures.panels import MAX_WIDTH, chart
from analysis.figures.plots import head_grid
from analysis.figures.style import SEQUENTIAL

__all__ = [
    "random_logit_figure",
    "sanity_cascade_figure",
    "sanity_curves_figure",
]  # what the face, analysis.figures, hands on

MEASURE_LABELS = {
    "spearman_abs": "Spearman rank correlation of |map|",
    "spearman": "Spearman rank correlation (signed)",
    "ssim": "SSIM of |map|",
    "hog": "HOG correlation",
}


SHORT = {
    "integrated_gradients": "IG",
    "grad_rollout": "grad roll.",
    "relevance": "relev.",
    "occlusion": "occl.",
}


def short_name(method: str, stage: str | None) -> str:
    """A method's name short enough to head a column of small maps: ``CAM S3``, ``IG``."""
    return f"CAM {stage}" if method == "gradcam" else SHORT.get(method, method)


def sanity_cascade_figure(report, *, width: float = MAX_WIDTH, max_panel: float = 96.0) -> go.Figure:
    """Rows: the methods (named in the first column); columns: the trained model ("none" randomised),
    then the model with the head, the head and S4.0, ... every part randomised (cascading), each named by
    the last part randomised in the first row. Each map
    is its absolute value over its own maximum, so that a map of any unit reads on one scale, 0 to 1."""
    levels = ["trained", *report.parts]
    cascade = {(r.method, r.stage, r.randomised): r.map for r in report.results if r.test == "cascading"}
    panels, titles = [], []
    for row, explanation in enumerate(report.trained):
        for column, level in enumerate(levels):
            key = (explanation.method, explanation.stage, level)
            panels.append(_unit(explanation.map if level == "trained" else cascade[key]))
            named = short_name(explanation.method, explanation.stage) if column == 0 else ""
            titles.append(("none" if column == 0 else level) if row == 0 else named)
    name = report.target_name or f"class {report.target}"
    order = ", ".join(short_name(e.method, e.stage) for e in report.trained)
    return head_grid(
        None, np.stack(panels), titles=titles, cols=len(levels), colorscale=SEQUENTIAL, what="|map| / max",
        title=f"Cascading randomisation: the explanations of {name} as the parts are randomised from the "
        f"head down (rows: {order}; each map over its own maximum)",
        width=width, max_panel=max_panel, min_panel=0.0,
    )  # fmt: skip


def sanity_curves_figure(report, *, measure: str = "spearman_abs", test: str = "cascading") -> go.Figure:
    """Per method, the similarity (``measure``) of its map to the trained model's, at each part of
    ``test`` (cascading: cumulatively from the head down; independent: one part at a time); the random
    map dotted."""
    figure = go.Figure()
    for explanation in report.trained:
        found = report.select(test, explanation.method, explanation.stage)
        dash = "dot" if explanation.method == "random" else None
        figure.add_trace(go.Scatter(
            x=[r.randomised for r in found], y=[getattr(r, measure) for r in found], mode="lines+markers",
            name=explanation.name, line={"dash": dash},
            hovertemplate=f"{explanation.name}<br>%{{x}} randomised: %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    what = "from the head down, cumulatively" if test == "cascading" else "one part at a time"
    return chart(
        figure,
        f"{test.capitalize()} randomisation ({what}): {MEASURE_LABELS[measure]} to the trained model's map",
        note="Lower is better: a map that stays alike when its model's weights are drawn afresh explains the "
        "image, not the model. The random map (dotted) shows what no likeness reads as: about 0.",
        height=380, bottom=60, xaxis_title="part randomised", yaxis_title=measure,
        yaxis={"range": [-1.05, 1.05]}, legend={"font": {"size": 10}},
    )  # fmt: skip


def random_logit_figure(report, *, measure: str = "spearman_abs") -> go.Figure:
    """The random logit test (Sixt et al. 2020): per method, the similarity of its map for the predicted
    class and for another; the class-agnostic methods (rollout, the random map) are 1 by construction and
    drawn so."""
    found = [r for r in report.results if r.test == "random_logit"]
    agnostic = {"random", "rollout"}
    figure = go.Figure(go.Bar(
        x=[getattr(r, measure) for r in found], y=[r.name for r in found], orientation="h",
        marker={"pattern": {"shape": ["/" if r.method in agnostic else "" for r in found]}},
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))  # fmt: skip
    ours = report.target_name or f"class {report.target}"
    other = report.other_name or f"class {report.other}"
    return chart(
        figure,
        f"Random logit: {MEASURE_LABELS[measure]} of the maps for {ours} and for {other}",
        note="Lower is better: a map that does not change with the class does not explain the class. "
        "Rollout and the random map (hatched) do not depend on the class: 1 by construction.",
        height=60 + 24 * len(found), bottom=60, xaxis={"range": [-1.05, 1.05], "title": {"text": measure}},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip


def _unit(values: np.ndarray) -> np.ndarray:
    top = float(np.abs(values).max())
    return np.abs(values) / top if top > 0 else np.zeros_like(values, dtype=np.float64)
