"""Figures of a dataset study (``coatnet study``'s study.json): per-head distance against depth, the
interventions sorted by what they cost, and the stage curves. Shared by study.html and the app's Dataset
page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.explain.lrp import RULE_LABELS
from analysis.figures.explanations import scores_figure
from analysis.figures.names import named
from analysis.figures.panels import chart
from analysis.figures.plots import distance_scatter
from analysis.figures.style import INTERVENTION_COLOURS, colour
from analysis.studies.summaries import Study

__all__ = [
    "distance_figure",
    "entropy_figure",
    "faithfulness_figure",
    "head_importance_figure",
    "interventions_figure",
    "layouts_ledger_figure",
    "ledger_summary",
    "position_share_figure",
    "stage_figure",
    "study_frequency_figure",
]  # what the face, analysis.figures, hands on

PART_LABELS = {"effective": "effective weights", "content": "content alone", "bias": "bias alone"}


def _head_series(study: Study, key: str) -> dict[str, tuple[list[str], list[np.ndarray]]]:
    heads = study.heads or ()
    blocks = list(dict.fromkeys(h.block for h in heads))
    series = {}
    for part, label in PART_LABELS.items():
        values = [
            np.array([getattr(getattr(h, key), part).mean for h in heads if h.block == b]) for b in blocks
        ]
        series[label] = (blocks, values)
    return series


def distance_figure(study: Study) -> go.Figure:
    """Mean attention distance per head against depth, of the effective weights, the content alone and
    the bias alone: where each head's locality comes from.

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``baseline``.

    Returns:
        The figure: a scatter per part.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.distance_figure(analysis.load_study("study-demo-pre")).data[0].type
        'scatter'
    """
    mode = study.attention or ""
    figure = distance_scatter(
        _head_series(study, "mean_distance_px"),
        title=f"Mean attention distance per head over {study.baseline.n_images} images ({mode})",
    )
    return named(figure, "study-distance")


def entropy_figure(study: Study) -> go.Figure:
    """Attention entropy per head against depth, of the effective weights, the content alone and the bias
    alone (log N is uniform attention over the N keys a query sees).

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``baseline``.

    Returns:
        The figure: a scatter per part.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> len(figures.entropy_figure(analysis.load_study("study-demo-pre")).data)
        3
    """
    figure = distance_scatter(
        _head_series(study, "entropy"),
        title="Attention entropy per head (nats; log N is uniform over the N keys a query sees)",
        y_label="entropy (nats)",
    )
    return named(figure, "study-entropy")


def position_share_figure(study: Study) -> go.Figure:
    """Per head, the share of its logits' variance that comes from position (the bias) rather than
    content, against depth: near 1, a head that attends by where a key is; near 0, by what it holds.

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``heads``.

    Returns:
        The figure: a scatter of the heads.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.position_share_figure(analysis.load_study("study-demo-pre")).layout.yaxis.title.text
        'position share'
    """
    heads = study.heads or ()
    blocks = list(dict.fromkeys(h.block for h in heads))
    values = [np.array([h.position_share.mean for h in heads if h.block == b]) for b in blocks]
    mode = study.attention or ""
    figure = distance_scatter(
        {"position share": (blocks, values)},
        title=f"Share of logit variance from position (bias) vs content per head ({mode}-normalization)",
        y_label="position share",
    )
    return named(figure, "study-position-share")


def interventions_figure(study: Study, *, metric: str = "delta_top1", top: int | None = None) -> go.Figure:
    """Every intervention as a bar, the most harmful first: the change of top-1 (percentage points) or the
    mean drop of the true class's logit.

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``interventions``.
        metric: ``delta_top1``, or the logit drop's key.
        top: draw only this many, the most harmful (None: all).

    Returns:
        The figure: one bar per intervention.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figure = figures.interventions_figure(analysis.load_study("study-demo-pre"), top=5)
        >>> figure.data[0].type, len(figure.data[0].y)
        ('bar', 5)
    """
    sign = 1.0 if metric == "delta_top1" else -1.0  # the most harmful first
    rows = sorted(study.interventions or (), key=lambda r: sign * getattr(r, metric))
    rows = rows[:top] if top else rows
    scale = 100.0 if metric == "delta_top1" else 1.0
    labels = [r.label for r in rows]
    figure = go.Figure(
        go.Bar(
            x=[getattr(r, metric) * scale for r in rows],
            y=labels,
            orientation="h",
            marker_color=[colour(INTERVENTION_COLOURS, r.kind) for r in rows],
            customdata=[[r.kind, 100 * r.top1] for r in rows],
            hovertemplate="%{y}<br>top-1 %{customdata[1]:.2f}%<br>%{x:.3f}<extra>%{customdata[0]}</extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", tickfont={"size": 10})
    what = "change of top-1 (points)" if metric == "delta_top1" else "mean drop of the true class's logit"
    base = 100 * study.baseline.top1
    figure = chart(
        figure, f"Interventions, most harmful first: {what} (baseline top-1 {base:.2f}%)",
        height=120 + 16 * len(rows), xaxis_title=what,
    )  # fmt: skip
    return named(figure, "study-interventions")


def stage_figure(study: Study) -> go.Figure:
    """Per stage: mean |activation|, the effective receptive field's 50% side, and the high-frequency
    change of the log-amplitude profile.

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``stages``.

    Returns:
        The figure.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.stage_figure(analysis.load_study("study-demo-pre")).data[0].type
        'scatter'
    """
    stages = study.stages or ()
    names = [f"{s.stage} ({s.kind})" for s in stages]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=names, y=[s.mean_abs_activation.mean for s in stages], name="mean |activation|",
            error_y={"type": "data", "array": [s.mean_abs_activation.std for s in stages]},
            mode="lines+markers",
        )
    )  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=names, y=[s.erf_side_50_px for s in stages], name="ERF 50% side (px)", yaxis="y2",
            mode="lines+markers",
        )
    )  # fmt: skip
    figure = chart(
        figure, "Stages: activation size and effective receptive field (50% of the mass)", height=360,
        legend_rows=1, yaxis_title="mean |activation|",
        yaxis2={"title": "ERF 50% side (px)", "overlaying": "y", "side": "right"},
    )  # fmt: skip
    return named(figure, "study-stages")


def study_frequency_figure(study: Study) -> go.Figure:
    """A dataset study's frequency view: the log amplitude of each stage's output against frequency,
    averaged over the study's images (:func:`frequency_figure` draws one image's).

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`), with its ``stages``.

    Returns:
        The figure: one line per stage.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> len(figures.study_frequency_figure(analysis.load_study("study-demo-pre")).data)  # S0..S4
        5
    """
    figure = go.Figure()
    for s in study.stages or ():
        profile = list(s.frequency_profile)
        freqs = np.linspace(0, 1, len(profile)) if len(profile) > 1 else [0.0]
        figure.add_trace(go.Scatter(x=freqs, y=profile, name=s.stage, mode="lines+markers"))
    figure = chart(
        figure, "Log amplitude of each stage's output against frequency (averaged over images)", height=340,
        xaxis_title="frequency (x pi)", yaxis_title="log amplitude",
    )  # fmt: skip
    return named(figure, "study-frequency")


def faithfulness_figure(study: Study) -> go.Figure:
    """study.json's ``faithfulness``: deletion AUC, insertion AUC and ROAD per explanation method.

    Args:
        study: a dataset study's summary (:func:`analysis.load_study`).

    Returns:
        The figure: three panels of bars.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.faithfulness_figure(analysis.load_study("study-demo-pre")).data[0].type
        'bar'
    """
    rows = study.faithfulness or ()
    count = rows[0].n_images if rows else 0
    mode = study.attention or ""
    title = f"Faithfulness of each explanation over {count} images ({mode}-normalization)"
    figure = scores_figure(rows, title)
    return named(figure, "study-faithfulness")


def head_importance_figure(importance, *, target_name: str | None = None) -> go.Figure:
    """Per head, the drop of the class's logit when that head alone is knocked out (an
    :class:`analysis.HeadImportance`): one horizontal bar per head, blocks in forward order, a colour each.

    Args:
        importance: :func:`analysis.head_importance`'s result.
        target_name: the class's name for the title, or None.

    Returns:
        The figure: one bar trace per block.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> importance = analysis.head_importance(model, torch.randn(1, 28, 28), target=4)
        >>> len(figures.head_importance_figure(importance, target_name="Coat").data)  # S3.0, S3.1, S4.0
        3
    """
    figure = go.Figure()
    count = 0
    for block in importance.blocks:
        drops = importance.drop[block]
        count += len(drops)
        figure.add_trace(
            go.Bar(
                y=[f"{block} h{h}" for h in range(len(drops))], x=drops, name=block, orientation="h",
                hovertemplate="%{y}: logit drop %{x:.3f}<extra></extra>",
            )
        )  # fmt: skip
    figure.update_yaxes(autorange="reversed", tickfont={"size": 10})
    figure = chart(
        figure, f"Logit drop of {target_name or f'class {importance.target}'} when each head alone is "
        "knocked out "
        f"(logit {importance.logit:.2f})", height=140 + 16 * count, xaxis_title="logit drop",
        showlegend=False,
    )  # fmt: skip
    return named(figure, "head-importance")


LEDGER_SUMMARY = {  # a layout's ledger in a few numbers, in % of the logit: label -> how it is read
    "conv branch, per addition": ("branch", ("mbconv", "convnext"), "mean"),
    "attention branch, per addition": ("branch", ("attention",), "mean"),
    "MLP branch, per addition": ("branch", ("mlp",), "mean"),
    "content q·k, all attention": ("content", ("attention",), "sum"),
    "position bias w, all attention": ("position", ("attention",), "sum"),
}


def ledger_summary(ledger: dict, rule: str = "attnlrp") -> dict[str, float]:
    """A study's ledger (study.json's ``ledger``) in a few shares of the logit: the mean share entering a
    convolution, an attention and an MLP branch at its addition, and what all attention sends to its
    content term and its position bias, then what the softmax rule and the position bias kept. A kind of
    part the model lacks gives 0.

    Args:
        ledger: a study's ``ledger`` (:attr:`analysis.Study.ledger`).
        rule: ``attnlrp`` or ``cp``.

    Returns:
        Label -> share of the logit (a fraction), in :data:`LEDGER_SUMMARY`'s order, then the two kept.

    Examples:
        >>> import analysis
        >>> from analysis.figures import ledger_summary
        >>> found = ledger_summary(analysis.load_study("sanity-layout-c-c-c-c").ledger)
        >>> found["attention branch, per addition"], found["kept by the softmax rule"]  # no attention
        (0.0, 0.0)
    """
    rows = ledger[rule]["rows"]
    out = {}
    for label, (field, kinds, how) in LEDGER_SUMMARY.items():
        values = [row[field]["mean"] for row in rows if row["kind"] in kinds and field in row]
        out[label] = 0.0 if not values else float(np.sum(values) if how == "sum" else np.mean(values))
    absorbed = ledger[rule]["absorbed"]
    out["kept by the softmax rule"] = float(absorbed["softmax"]["mean"])
    out["kept by the position bias"] = float(absorbed["position"]["mean"])
    return out


def layouts_ledger_figure(studies: dict[str, Study], rule: str = "attnlrp") -> go.Figure:
    """Where predictions' relevance flows, study by study (the layouts, the demos): for each study with a
    ledger (``coatnet study --ledger``), :func:`ledger_summary`'s shares of the logit as grouped bars, so
    that layouts compare at a glance.

    Args:
        studies: name -> study; those without a ledger are left out.
        rule: ``attnlrp`` or ``cp``.

    Returns:
        The figure: one bar trace per study.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> studies = {n: analysis.load_study(n) for n in ("sanity-layout-c-c-c-c", "sanity-layout-vit-rel")}
        >>> [t.name for t in figures.layouts_ledger_figure(studies).data]
        ['sanity-layout-c-c-c-c', 'sanity-layout-vit-rel']
    """
    figure = go.Figure()
    images = set()
    for name, study in studies.items():
        if not study.ledger:
            continue
        images.add(study.ledger_images)
        summary = ledger_summary(study.ledger, rule)
        figure.add_trace(
            go.Bar(
                x=[100 * v for v in summary.values()], y=list(summary), orientation="h", name=name,
                hovertemplate="%{y}: %{x:.1f}% of the logit<extra>" + name + "</extra>",
            )
        )  # fmt: skip
    label = RULE_LABELS.get(rule, rule)
    count = ", ".join(str(n) for n in sorted(images)) or "no"
    title = f"Where predictions' relevance flows, study by study ({label}, {count} test images each)"
    figure.update_yaxes(autorange="reversed", tickfont={"size": 10})
    figure = chart(
        figure, title, height=140 + 16 * len(LEDGER_SUMMARY) * max(1, len(figure.data)) // 2,
        legend_rows=-(-len(figure.data) // 3), barmode="group", xaxis={"title": {"text": "% of the logit"}},
    )  # fmt: skip
    return named(figure, "layouts-ledger")
