"""Figures of class-specific explanations and of their faithfulness: the relevance map over the image,
one image's deletion and insertion curves per method, and the scores per method (one image's, or a
study's over a dataset). Shared by the app, ``coatnet analyze``'s report and study.html."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from analysis.explain.faithfulness import row_name
from analysis.explain.lrp import RULE_LABELS
from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, chart
from analysis.figures.plots import overlay
from analysis.figures.style import HEAT, OTHER

__all__ = [
    "curves_figure",
    "ledger_figure",
    "relevance_figure",
    "scores_figure",
]  # what the face, analysis.figures, hands on

SCORE_LABELS = {
    "deletion_auc": "deletion AUC (lower: better)",
    "insertion_auc": "insertion AUC (higher: better)",
    "road": "ROAD (higher: better)",
}


def relevance_figure(
    relevance, image: np.ndarray | None, *, index: int = 0, opacity: float = DEFAULT_OPACITY
):
    """A :class:`analysis.ClassRelevance` map on the first attention block's grid, over the image.

    Args:
        relevance: :func:`analysis.class_relevance`'s result.
        image: the picture to draw under the map, or None.
        index: the image of the batch.
        opacity: of the map over the picture.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> relevance = analysis.class_relevance(model, torch.randn(1, 1, 28, 28), target=4)
        >>> figures.relevance_figure(relevance, None).data[0].type  # no picture under it: a heatmap alone
        'heatmap'
    """
    names = relevance.target_names
    target = relevance.targets[index]
    name = names[index] if names else f"class {target}"
    figure = overlay(
        image, relevance.map[index], stride=relevance.stride_first, colorscale=HEAT, what="relevance",
        title=f"{relevance.label}: {name} (p = {relevance.probabilities[index]:.2f})", opacity=opacity,
    )  # fmt: skip
    return named(figure, "relevance")


BETTER = {"deletion_auc": -1, "insertion_auc": 1, "road": 1}  # the direction in which a score is better


def no_better_than_random(rows: Sequence) -> dict[str, list[str]]:
    """Per score of :data:`SCORE_LABELS`, the methods of ``rows`` (as :func:`scores_figure` takes them)
    that do no better than the random map: not beyond the random map's seed range (or its score, where
    no range is known) in the score's better direction. Empty lists without a random row."""
    entries = [_entry(r) for r in rows]
    random = next((e for e in entries if e["method"] == "random"), None)
    found: dict[str, list[str]] = {key: [] for key in SCORE_LABELS}
    if random is None:
        return found
    for key, sign in BETTER.items():
        bound = random["range"].get(key) or (random[key], random[key])
        best = max(bound) if sign > 0 else min(bound)
        found[key] = [e["name"] for e in entries if e is not random and sign * (e[key] - best) <= 0]
    return found


def random_sentence(rows: Sequence) -> str:
    """One sentence naming the methods that do no better than the random map, score by score."""
    if not any(_entry(r)["method"] == "random" for r in rows):
        return "No random map was measured: nothing to compare with."
    found = {SCORE_LABELS[k].split(" (")[0]: names for k, names in no_better_than_random(rows).items()}
    parts = [f"{', '.join(names)} on {score}" for score, names in found.items() if names]
    if not parts:
        return "Every method does better than a random map on every score."
    return "No better than a random map (dotted line): " + "; ".join(parts) + "."


def curves_figure(report, curve: str = "deletion") -> go.Figure:
    """One image's deletion (or insertion) curve per method (an :class:`analysis.FaithfulnessReport`):
    the target's probability against the share of pixels removed (restored); random with its seeds'
    spread as the area under the curve in the legend.

    Args:
        report: :func:`analysis.faithfulness`'s report.
        curve: ``deletion`` or ``insertion``.

    Returns:
        The figure: one line per method.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the figure
        >>> report = analysis.faithfulness(model, torch.randn(3, 32, 32), rows=[("gradcam", "S3")])
        >>> figures.curves_figure(report, "insertion").data[0].type
        'scatter'
    """
    figure = go.Figure()
    for r in report.results:
        values = getattr(r, curve)
        auc = getattr(r, f"{curve}_auc")
        dash = "dot" if r.method == "random" else None
        figure.add_trace(
            go.Scatter(
                x=r.fractions, y=values, mode="lines", name=f"{r.name} ({auc:.3f})", line={"dash": dash},
                hovertemplate=f"{r.name}<br>%{{x:.3f}} of the pixels: p = %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    name = report.target_name or f"class {report.target}"
    what = "removed, most relevant first" if curve == "deletion" else "restored into the blurred image"
    better = "lower" if curve == "deletion" else "higher"
    key = f"{curve}_auc"
    random = next((r for r in report.results if r.method == "random"), None)
    sentence = "No random map was measured."
    if random is not None:  # no better: not beyond the random map's seed range (as no_better_than_random)
        sign = BETTER[key]
        bound = (random.spread or {}).get(key) or (getattr(random, key),) * 2
        base = max(bound) if sign > 0 else min(bound)
        worse = [r.name for r in report.results if r is not random and sign * (getattr(r, key) - base) <= 0]
        sentence = (
            f"No better than the random map (dotted): {', '.join(worse)}."
            if worse
            else "Every method does better than the random map (dotted)."
        )
    figure = chart(
        figure,
        f"{curve.capitalize()}: p({name}) as pixels are {what} (area in the legend, {better} is better)",
        note=sentence,
        height=420, bottom=60, xaxis_title="share of pixels", yaxis_title="probability",
        legend={"font": {"size": 10}},
    )  # fmt: skip
    return named(figure, "faithfulness-curves")


def scores_figure(rows: Sequence, title: str) -> go.Figure:
    """Deletion AUC, insertion AUC and ROAD per method, as horizontal bars in three panels: ``rows`` are
    :class:`analysis.Faithfulness` results or study.json's ``faithfulness`` entries. A random map's
    seed range, where known, is drawn as an error bar.

    Args:
        rows: the results to draw.
        title: the figure's title.

    Returns:
        The figure: a bar trace per panel.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the figure
        >>> report = analysis.faithfulness(model, torch.randn(3, 32, 32), rows=[("gradcam", "S3")])
        >>> len(figures.scores_figure(report.results, "one image").data)
        3
    """
    entries = [_entry(r) for r in rows]
    labels = [e["name"] for e in entries]
    figure = go.Figure()
    for k, (key, label) in enumerate(SCORE_LABELS.items()):
        error = [e["range"][key][1] - e[key] if e["range"].get(key) is not None else 0.0 for e in entries]
        minus = [e[key] - e["range"][key][0] if e["range"].get(key) is not None else 0.0 for e in entries]
        figure.add_trace(
            go.Bar(
                x=[e[key] for e in entries], y=labels, orientation="h", name=label,
                xaxis="x" if k == 0 else f"x{k + 1}",
                error_x={"type": "data", "array": error, "arrayminus": minus, "visible": any(error)},
                hovertemplate="%{y}: %{x:.4f}<extra>" + label + "</extra>",
            )
        )  # fmt: skip
    layout = {}
    for k, label in enumerate(SCORE_LABELS.values()):
        axis = "xaxis" if k == 0 else f"xaxis{k + 1}"
        layout[axis] = {
            "domain": [k / 3 + 0.02, (k + 1) / 3 - 0.02],
            "title": {"text": label, "font": {"size": 10}},
            "anchor": "y",
        }
    random = next((e for e in entries if e["method"] == "random"), None)
    shapes = []
    if random is not None:  # the random baseline, a dotted line across each panel
        for k, key in enumerate(SCORE_LABELS):
            shapes.append({
                "type": "line", "xref": "x" if k == 0 else f"x{k + 1}", "yref": "paper", "x0": random[key],
                "x1": random[key], "y0": 0, "y1": 1, "line": {"dash": "dot", "width": 1.5, "color": OTHER},
            })  # fmt: skip
    figure.update_yaxes(autorange="reversed", tickfont={"size": 10})
    figure = chart(
        figure, title, height=140 + 22 * len(entries), bottom=70, showlegend=False, shapes=shapes,
        note=random_sentence(rows), **layout,
    )  # fmt: skip
    return named(figure, "faithfulness-scores")


def _entry(row) -> dict:
    if isinstance(row, dict):
        seeds = row.get("seed_range") or {}
        return {
            "name": row_name(row["method"], row.get("stage")), "method": row["method"],
            "deletion_auc": row["deletion_auc"], "insertion_auc": row["insertion_auc"], "road": row["road"],
            "range": {key: seeds.get(key) for key in SCORE_LABELS},
        }  # fmt: skip
    spread = row.spread or {}
    return {
        "name": row.name, "method": row.method, "deletion_auc": row.deletion_auc,
        "insertion_auc": row.insertion_auc, "road": row.road,
        "range": {key: spread.get(key) for key in SCORE_LABELS},
    }  # fmt: skip


LEDGER_TERMS = {  # trace -> (what it shows, colour key)
    "branch": "into the branch",
    "skip": "through the skip",
    "content": "to the content q·k",
    "position": "to the position bias w",
}


def ledger_figure(found, *, image: int = 0, title: str | None = None) -> go.Figure:
    """Where the relevance of a prediction flows (:func:`analysis.lrp`), part by part, as shares of the
    explained logit: on the left, at each residual addition, what enters the branch and what passes the
    skip (stacked: their sum is what reaches the addition); on the right, for each attention, what reaches
    its content term and its relative-position bias. The note gives each stage output's share and what
    the biases, the stabiliser, the softmax rule and the position bias kept on the way.

    Args:
        found: an :class:`analysis.LRP`.
        image: which image of its batch.
        title: the figure's title (default: the rule and the logit explained).

    Returns:
        The figure: four bar traces (branch, skip, content, position).

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> found = analysis.lrp(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> [t.name for t in figures.ledger_figure(found).data]
        ['into the branch', 'through the skip', 'to the content q·k', 'to the position bias w']
    """
    logit = float(found.logit[image])
    scale = logit if abs(logit) > 1e-12 else 1.0
    rows = list(found.ledger)
    labels = [f"{r.part} ({r.kind})" for r in rows]
    attention = [r for r in rows if r.kind == "attention"]

    figure = go.Figure()
    for key, values, axis, names in (
        ("branch", [r.branch for r in rows], "x", labels),
        ("skip", [r.skip for r in rows], "x", labels),
        ("content", [r.content for r in attention], "x2", [f"{r.part} ({r.kind})" for r in attention]),
        ("position", [r.position for r in attention], "x2", [f"{r.part} ({r.kind})" for r in attention]),
    ):
        figure.add_trace(
            go.Bar(
                x=[100 * float(v[image]) / scale for v in values], y=names, orientation="h",
                name=LEDGER_TERMS[key], xaxis=axis,
                hovertemplate="%{y}: %{x:.1f}% of the logit<extra>" + LEDGER_TERMS[key] + "</extra>",
            )
        )  # fmt: skip
    stages = ", ".join(f"{s} {100 * float(v[image].sum()) / scale:.0f}%" for s, v in found.stages.items())
    kept = ", ".join(f"{s} {100 * float(v[image]) / scale:.1f}%" for s, v in found.absorbed.items())
    rule = RULE_LABELS.get(found.rule, found.rule)
    title = title or (
        f"Where the relevance of class {int(found.target[image])}'s logit ({logit:.2f}) flows, {rule}: "
        "each part's share, in % of the logit"
    )
    note = (
        f"Each stage's output holds {stages} of the logit; on the way the rules kept {kept}. Left: at each "
        "residual addition, the relevance entering the branch and passing the skip; right: inside each "
        "attention, what reaches the content term and the relative-position bias (both 0 under CP-LRP)."
    )
    figure.update_yaxes(
        autorange="reversed", tickfont={"size": 10}, categoryorder="array", categoryarray=labels
    )
    legend = {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 10}}
    figure = chart(
        figure, title, height=120 + 20 * len(rows), subtitle_lines=2, note=note, barmode="relative",
        bottom=70, legend=legend,
        xaxis={"domain": [0.0, 0.62], "title": {"text": "% of the logit"}, "anchor": "y",
               "zeroline": True},
        xaxis2={"domain": [0.7, 1.0], "title": {"text": "attention, %"}, "anchor": "y",
                "zeroline": True},
    )  # fmt: skip
    return named(figure, "lrp-ledger")
