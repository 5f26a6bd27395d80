"""Figures of the sanity checks (an :class:`analysis.SanityReport`): the cascade as a grid of maps (Adebayo
et al. 2018, figure 2, for one image), the similarity to the trained model's map as parts are randomised,
and the random logit test's similarity per method. Shared by the app and ``coatnet analyze``'s report."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.explain.registry import explainers, row_name, short_name
from analysis.figures.names import named
from analysis.figures.panels import MAX_WIDTH, chart, column_width
from analysis.figures.plots import head_grid
from analysis.figures.style import SEQUENTIAL
from analysis.studies.summaries import Study

__all__ = [
    "MEASURE_LABELS",
    "TEST_LABELS",
    "random_logit_figure",
    "robustness_figure",
    "sanity_cascade_figure",
    "sanity_curves_figure",
    "study_random_logit_figure",
    "study_sanity_figure",
]  # what the face, analysis.figures, hands on

TEST_LABELS = {
    "cascading": "cascading (from the head down)",
    "independent": "independent (one part at a time)",
}
"""The sanity checks' randomisation tests in words.

Examples:
    >>> from analysis import figures
    >>> figures.TEST_LABELS["cascading"]
    'cascading (from the head down)'
"""
MEASURE_LABELS = {
    "spearman_abs": "Spearman rank correlation of |map|",
    "spearman": "Spearman rank correlation (signed)",
    "ssim": "SSIM of |map|",
    "hog": "HOG correlation",
}
"""Each similarity measure of the sanity checks (:func:`analysis.similarity`) in words, for axes and
legends.

Examples:
    >>> from analysis import figures
    >>> figures.MEASURE_LABELS["spearman_abs"]
    'Spearman rank correlation of |map|'
"""


def sanity_cascade_figure(report, *, width: float | None = None, max_panel: float = 96.0) -> go.Figure:
    """Rows: the methods (named in the first column); columns: the trained model ("none" randomised),
    then the model with the head, the head and S4.0, ... every part randomised (cascading), each named by
    the last part randomised in the first row. Each map is its absolute value over its own maximum, so
    that a map of any unit reads on one scale, 0 to 1.

    Args:
        report: :func:`analysis.sanity_checks`'s report, with the ``cascading`` test.
        width: the figure's width in px (None: the column of :func:`analysis.figures.drawn_at`, else
            :data:`analysis.figures.MAX_WIDTH`); a matrix of small maps, its rows and columns kept.
        max_panel: the largest panel's side in px.

    Returns:
        The figure: one heatmap per method and part.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the figure
        >>> image, rows = torch.randn(3, 32, 32), [("gradcam", "S3")]
        >>> report = analysis.sanity_checks(model, image, tests=("cascading",), rows=rows)
        >>> len(figures.sanity_cascade_figure(report).data)  # the model's map, then its 6 parts randomised
        7
    """
    levels = ["trained", *report.parts]
    cascade = {(r.method, r.stage, r.randomised): r.map for r in report.results if r.test == "cascading"}
    panels, titles = [], []
    for row, explanation in enumerate(report.trained):
        for column, level in enumerate(levels):
            key = (explanation.method, explanation.stage, level)
            panels.append(_unit(explanation.map if level == "trained" else cascade[key]))
            heading = short_name(explanation.method, explanation.stage) if column == 0 else ""
            titles.append(("none" if column == 0 else level) if row == 0 else heading)
    name = report.target_name or f"class {report.target}"
    order = ", ".join(short_name(e.method, e.stage) for e in report.trained)
    figure = head_grid(
        None, np.stack(panels), titles=titles, cols=len(levels), colorscale=SEQUENTIAL, what="|map| / max",
        title=f"Cascading randomisation: the explanations of {name} as the parts are randomised from the "
        f"head down (rows: {order}; each map over its own maximum)",
        width=width or column_width() or MAX_WIDTH, max_panel=max_panel, min_panel=0.0,
    )  # fmt: skip
    return named(figure, "sanity-cascade")


def sanity_curves_figure(report, *, measure: str = "spearman_abs", test: str = "cascading") -> go.Figure:
    """Per method, the similarity (``measure``) of its map to the trained model's, at each part of
    ``test`` (cascading: cumulatively from the head down; independent: one part at a time); the random
    map dotted.

    Args:
        report: :func:`analysis.sanity_checks`'s report.
        measure: one of :data:`MEASURE_LABELS`.
        test: ``cascading`` or ``independent`` (:data:`TEST_LABELS`).

    Returns:
        The figure: one line per method.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the figure
        >>> image, rows = torch.randn(3, 32, 32), [("gradcam", "S3")]
        >>> report = analysis.sanity_checks(model, image, tests=("cascading",), rows=rows)
        >>> figures.sanity_curves_figure(report, measure="hog").data[0].type
        'scatter'
    """
    lines = []
    for explanation in report.trained:
        found = report.select(test, explanation.method, explanation.stage)
        lines.append((explanation.method, explanation.name, [r.randomised for r in found],
                      [getattr(r, measure) for r in found], None))  # fmt: skip
    return named(_curves(lines, measure, test, ""), "sanity-curves")


def study_sanity_figure(study: Study, *, measure: str = "spearman_abs", test: str = "cascading") -> go.Figure:
    """study.json's ``sanity`` drawn as :func:`sanity_curves_figure` draws one image's: per method the
    mean similarity over the study's images at each part of ``test``, their standard deviation as bars.

    Args:
        study: a study's summary (:func:`analysis.load_study`), with its ``sanity``.
        measure: one of :data:`MEASURE_LABELS`.
        test: ``cascading`` or ``independent``.

    Returns:
        The figure: one line per method.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figure = figures.study_sanity_figure(analysis.load_study("study-demo-pre"), test="independent")
        >>> figure.data[0].type
        'scatter'
    """
    found = [e for e in study.sanity or () if e.test == test]
    lines, names = [], []
    for entry in found:
        name = row_name(entry.method, entry.stage)
        if name not in names:
            names.append(name)
            lines.append((entry.method, name, [], [], []))
        line = lines[names.index(name)]
        line[2].append(entry.randomised)
        line[3].append(getattr(entry, measure))
        line[4].append(entry.std[measure])
    count = found[0].n_images if found else 0
    figure = _curves(lines, measure, test, f", the mean over {count} images (bars: one standard deviation)")
    return named(figure, "study-sanity")


def _curves(lines, measure: str, test: str, over: str) -> go.Figure:
    """Lines of (method, name, parts, values, standard deviations or None)."""
    figure = go.Figure()
    for method, name, parts, values, spread in lines:
        figure.add_trace(go.Scatter(
            x=parts, y=values, mode="lines+markers", name=name,
            line={"dash": "dot" if method == "random" else None},
            error_y={"type": "data", "array": spread, "visible": spread is not None, "thickness": 1},
            hovertemplate=f"{name}<br>%{{x}} randomised: %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    what = "from the head down, cumulatively" if test == "cascading" else "one part at a time"
    return chart(
        figure,
        f"{test.capitalize()} randomisation ({what}): {MEASURE_LABELS[measure]} to the trained model's "
        f"map{over}",
        note="Lower is better: a map that stays alike when its model's weights are drawn afresh explains the "
        "image, not the model. The random map (dotted) shows what no likeness reads as: about 0.",
        height=380, bottom=60, xaxis_title="part randomised", yaxis_title=measure,
        yaxis={"range": [-1.05, 1.05]}, legend={"font": {"size": 10}},
    )  # fmt: skip


def random_logit_figure(report, *, measure: str = "spearman_abs") -> go.Figure:
    """The random logit test (Sixt et al. 2020): per method, the similarity of its map for the predicted
    class and for another; the class-agnostic methods (rollout, the random map) are 1 by construction and
    drawn so.

    Args:
        report: :func:`analysis.sanity_checks`'s report, with the ``random_logit`` test.
        measure: one of :data:`MEASURE_LABELS`.

    Returns:
        The figure: one bar per method.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> image, rows = torch.randn(1, 28, 28), [("gradcam", "S3")]
        >>> report = analysis.sanity_checks(model, image, tests=("random_logit",), rows=rows)
        >>> figures.random_logit_figure(report, measure="ssim").data[0].type
        'bar'
    """
    found = [r for r in report.results if r.test == "random_logit"]
    ours = report.target_name or f"class {report.target}"
    other = report.other_name or f"class {report.other}"
    bars = [(r.method, r.name, getattr(r, measure), None) for r in found]
    return named(_bars(bars, measure, f"of the maps for {ours} and for {other}"), "random-logit")


def study_random_logit_figure(study: Study, *, measure: str = "spearman_abs") -> go.Figure:
    """study.json's random logit entries: per method the mean similarity over the study's images of its
    maps for the predicted class and for a random other, one standard deviation as error bars.

    Args:
        study: a study's summary (:func:`analysis.load_study`), with its ``sanity``.
        measure: one of :data:`MEASURE_LABELS`.

    Returns:
        The figure: one bar per method.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.study_random_logit_figure(analysis.load_study("study-demo-pre")).data[0].type
        'bar'
    """
    found = [e for e in study.sanity or () if e.test == "random_logit"]
    bars = [(e.method, row_name(e.method, e.stage), getattr(e, measure), e.std[measure]) for e in found]
    count = found[0].n_images if found else 0
    what = f"of the maps for the predicted class and another, the mean over {count} images"
    return named(_bars(bars, measure, what), "study-random-logit")


def _bars(bars, measure: str, what: str) -> go.Figure:
    """Horizontal bars of (method, name, value, standard deviation or None)."""
    agnostic = {e.name for e in explainers() if not e.class_specific}
    spread = [s for *_, s in bars]
    figure = go.Figure(go.Bar(
        x=[v for _, _, v, _ in bars], y=[name for _, name, _, _ in bars], orientation="h",
        marker={"pattern": {"shape": ["/" if method in agnostic else "" for method, *_ in bars]}},
        error_x={"type": "data", "array": spread, "visible": all(s is not None for s in spread)},
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))  # fmt: skip
    return chart(
        figure,
        f"Random logit: {MEASURE_LABELS[measure]} {what}",
        note="Lower is better: a map that does not change with the class does not explain the class. "
        "Rollout and the random map (hatched) do not depend on the class: 1 by construction.",
        height=60 + 24 * len(bars), bottom=60, xaxis={"range": [-1.05, 1.05], "title": {"text": measure}},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip


def robustness_figure(study: Study) -> go.Figure:
    """study.json's ``robustness``: per method the mean max-sensitivity over the study's images (a
    relative change, comparable across methods), one standard deviation as error bars; the local
    Lipschitz estimate (in the map's own units per input unit) in the hover.

    Args:
        study: a study's summary (:func:`analysis.load_study`), with its ``robustness``.

    Returns:
        The figure: one bar per method.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.robustness_figure(analysis.load_study("sanity-layout-c-c-t-t")).data[0].type
        'bar'
    """
    rows = [r for r in study.robustness or () if r.max_sensitivity is not None]
    names = [row_name(r.method, r.stage) for r in rows]
    figure = go.Figure(go.Bar(
        x=[r.max_sensitivity for r in rows], y=names, orientation="h",
        error_x={"type": "data", "array": [r.std["max_sensitivity"] for r in rows]},
        customdata=[[r.local_lipschitz, r.infinite] for r in rows],
        hovertemplate="%{y}: max-sensitivity %{x:.3f}<br>local Lipschitz %{customdata[0]:.3f}"
        "<br>infinite on %{customdata[1]} images<extra></extra>",
    ))  # fmt: skip
    first = study.robustness[0] if study.robustness else None
    radius, samples, images = (first.radius, first.n_samples, first.n_images) if first else ("?", "?", 0)
    figure = chart(
        figure,
        f"Robustness: max-sensitivity of each explanation under uniform noise of radius {radius}, {samples} "
        f"samples, the mean over {images} images",
        note="Lower is more robust: the largest change of the map, relative to the map, when the input moves "
        "by a little noise. The random map is drawn afresh for every input: what a map that follows nothing "
        "scores.",
        height=60 + 24 * len(rows), bottom=60,
        xaxis={"rangemode": "tozero", "title": {"text": "max-sensitivity"}},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip
    return named(figure, "robustness")


def _unit(values: np.ndarray) -> np.ndarray:
    top = float(np.abs(values).max())
    return np.abs(values) / top if top > 0 else np.zeros_like(values, dtype=np.float64)
