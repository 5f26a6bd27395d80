"""Figures of activation patching (:mod:`analysis.causal.patching`): the block x component recovery matrix,
the recovery of every head, and one block's positions on the image. Recovery is signed (below 0: the patch
moved the metric away from the clean run; above 1: past it), so it is drawn on the diverging scale with 0
white, and written in every cell; a cell whose recovery is undefined says so instead of a number."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from analysis.figures.panels import chart
from analysis.figures.plots import overlay
from analysis.figures.style import DIVERGING

__all__ = [
    "COMPONENT_LABELS",
    "head_patching_figure",
    "patching_figure",
    "position_patching_figure",
]  # what the face, analysis.figures, hands on

COMPONENT_LABELS = {  # two short lines each: eight columns fit a narrow page
    "output": "block<br>output",
    "branch": "MBConv<br>branch",
    "attn.branch": "attention<br>branch",
    "mlp.branch": "MLP<br>branch",
    "attn.logits": "content<br>q·k",
    "attn.bias": "relative<br>bias",
    "attn.weights": "weights<br>(where)",
    "attn.v": "values<br>(what)",
}
UNDEFINED = "undefined"
COLOUR_BAR = {"thickness": 12, "ypad": 0, "outlinewidth": 0, "title": {"text": "recovery", "side": "right"}}


def _metric_words(result) -> str:
    if result.metric == "logit_diff":
        return f"logit[{result.target}] minus logit[{result.foil}]"
    return f"{'logit' if result.metric == 'logit' else 'probability'} of class {result.target}"


def _subject(result) -> str:
    patched = "clean into corrupted" if result.direction == "denoising" else "corrupted into clean"
    return f"{result.direction.capitalize()} ({patched}), metric {_metric_words(result)}"


def _undefined_note(result) -> str:
    gap = abs(result.clean_metric - result.corrupted_metric)
    why = "the corruption barely moves this metric"
    if result.metric == "logit_diff" and result.target == result.foil:
        why = f"both runs predict class {result.target}"
    return (f"The recovery is undefined: the two runs' metrics differ by {gap:.2g} < {result.epsilon:g} "
            f"({why}). Pick other classes or a stronger corruption.")  # fmt: skip


def _range(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return max(1.0, float(np.abs(finite).max())) if finite.size else 1.0


def _cell_text(value: float, present: bool, defined: bool) -> str:
    if not present:
        return ""
    if not defined or math.isnan(value):
        return UNDEFINED
    return f"{value:.2f}"


def patching_figure(result) -> go.Figure:
    """Rows the blocks (``S0`` the stem), columns the components; a block without a component is blank.
    One transparent marker per cell carries [block, component] for a click (the app opens that block's
    position map)."""
    components = list(result.components)
    present = result.present
    values = np.where(present, result.recovery, np.nan) if result.defined else np.full(present.shape, np.nan)
    text = [[_cell_text(values[i, j], present[i, j], result.defined) for j in range(len(components))]
            for i in range(len(result.blocks))]  # fmt: skip
    labels = [COMPONENT_LABELS.get(c, c) for c in components]
    rows = [f"{b} ({k})" for b, k in zip(result.blocks, result.kinds, strict=True)]
    high = _range(values)
    ii, jj = np.nonzero(present)
    figure = go.Figure([
        go.Heatmap(
            z=values, x=labels, y=rows, zmin=-high, zmax=high, zmid=0, colorscale=DIVERGING, text=text,
            texttemplate="%{text}", hovertemplate="%{y}, %{x}: recovery %{text}<extra></extra>",
            colorbar=COLOUR_BAR,
        ),
        go.Scatter(
            x=[labels[j] for j in jj], y=[rows[i] for i in ii], mode="markers",
            marker={"size": 28, "opacity": 0.01, "symbol": "square"}, showlegend=False,
            customdata=np.stack([ii, jj], axis=-1), name="cells",
            hovertemplate="%{y}, %{x}: click for this block's positions<extra></extra>",
        ),
    ])  # fmt: skip
    # the ranges of the cells themselves: the click markers must not pad the axes past the heatmap
    figure.update_xaxes(range=[-0.5, len(labels) - 0.5])
    figure.update_yaxes(range=[len(rows) - 0.5, -0.5])
    title = f"Activation patching: recovery per block and component. {_subject(result)}"
    note = ("0 = the corrupted run, 1 = the clean run; the relative bias depends on no input, so it "
            "recovers exactly 0 (denoising) or 1 (noising).")  # fmt: skip
    if not result.defined:
        note = _undefined_note(result)
    return chart(figure, title, height=140 + 30 * len(rows), bottom=60, note=note, clickmode="event+select")


def head_patching_figure(result) -> go.Figure:
    """Rows the attention blocks, columns the heads: each head's output patched alone."""
    blocks = list(result.heads)
    if not blocks:
        return chart(go.Figure(), "Head patching: this model has no attention block", height=120)
    width = max(len(result.heads[b]) for b in blocks)
    values = np.full((len(blocks), width), np.nan)
    present = np.zeros((len(blocks), width), dtype=bool)
    for i, block in enumerate(blocks):
        values[i, : len(result.heads[block])] = result.heads[block]
        present[i, : len(result.heads[block])] = True
    if not result.defined:
        values[:] = np.nan
    text = [[_cell_text(values[i, h], present[i, h], result.defined) for h in range(width)]
            for i in range(len(blocks))]  # fmt: skip
    high = _range(values)
    figure = go.Figure(
        go.Heatmap(
            z=values, x=[f"head {h}" for h in range(width)], y=blocks, zmin=-high, zmax=high, zmid=0,
            colorscale=DIVERGING, text=text, texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: recovery %{text}<extra></extra>",
            colorbar=COLOUR_BAR,
        )
    )  # fmt: skip
    figure.update_yaxes(autorange="reversed")
    title = f"Head patching: recovery of each head's output alone. {_subject(result)}"
    note = "" if result.defined else _undefined_note(result)
    return chart(figure, title, height=140 + 30 * len(blocks), bottom=60, note=note)


def position_patching_figure(result, image: np.ndarray | None = None) -> go.Figure:
    """The recovery of each position of one block's output, drawn over ``image`` (H, W[, C]) at the
    positions it covers (a square of ``cell`` x ``cell`` cells is ``cell * stride`` pixels wide)."""
    title = (
        f"{result.block}: recovery of each position ({result.cell}x{result.cell} cells). {_subject(result)}"
    )
    if not result.defined:
        title += ". " + _undefined_note(result)
        return overlay(image, np.zeros_like(result.recovery), stride=result.stride * result.cell,
                       title=title, zmin=-1, zmax=1, colorscale=DIVERGING, what="undefined")  # fmt: skip
    high = _range(result.recovery)
    return overlay(
        image, result.recovery, stride=result.stride * result.cell, title=title, zmin=-high, zmax=high,
        colorscale=DIVERGING, what="recovery",
    )  # fmt: skip
