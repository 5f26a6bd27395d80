"""Figures of the causal analyses: activation patching (:mod:`analysis.causal.patching`: the block x
component recovery matrix, the recovery of every head, one block's positions on the image) and the linear
probes (:mod:`analysis.studies.probes`: one model against depth, the layouts on one axis).

Recovery is signed (below 0: the patch moved the metric away from the clean run; above 1: past it), so it
is drawn on the diverging scale with 0 white, and written in every cell; a cell whose recovery is
undefined says so instead of a number."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from analysis.figures.names import named
from analysis.figures.panels import chart
from analysis.figures.plots import overlay
from analysis.figures.style import BLOCK_KIND_COLOURS, BROWN, DIVERGING, GREY, LAYOUT_COLOURS, PURPLE, colour
from analysis.studies.layouts import layout_label
from analysis.studies.summaries import Probes

__all__ = [
    "COMPONENT_LABELS",
    "head_patching_figure",
    "layout_label",
    "layout_probes_figure",
    "patching_figure",
    "position_patching_figure",
    "probes_figure",
    "readable_from",
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
"""The column label of each patched component (:data:`analysis.causal.patching.COMPONENTS`) in
:func:`patching_figure`, two short lines each.

Examples:
    >>> from analysis import figures
    >>> figures.COMPONENT_LABELS["output"]
    'block<br>output'
"""
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
    predicted = int(np.argmax(result.clean_logits)), int(np.argmax(result.corrupted_logits))
    if result.metric == "logit_diff" and result.target == result.foil:
        why = f"the target and the foil are both class {result.target}"
        if predicted[0] == predicted[1] == result.target:
            why = f"both runs predict class {result.target}"
    return (f"The recovery is undefined: the two runs' metrics differ by {gap:.2g} < {result.epsilon:g} "
            f"({why}). Pick other classes or a stronger corruption.")  # fmt: skip


def _scale(result, values: np.ndarray) -> tuple[float, float, float]:
    """(zmin, zmid, zmax): white where the patch changed nothing, the run it patched into (0 for
    denoising, 1 for noising), so that the components that matter are the coloured ones either way."""
    middle = 0.0 if result.direction == "denoising" else 1.0
    finite = values[np.isfinite(values)]
    half = max(1.0, float(np.abs(finite - middle).max())) if finite.size else 1.0
    return middle - half, middle, middle + half


def _cell_text(value: float, present: bool, defined: bool) -> str:
    if not present:
        return ""
    if not defined or math.isnan(value):
        return UNDEFINED
    return f"{value:.2f}"


def patching_figure(result) -> go.Figure:
    """Rows the blocks (``S0`` the stem), columns the components; a block without a component is blank.
    One transparent marker per cell carries [block, component] for a click (the app opens that block's
    position map).

    Args:
        result: :func:`analysis.activation_patching`'s result.

    Returns:
        The figure: a heatmap and its click markers.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> result = analysis.activation_patching(model, torch.randn(1, 28, 28), heads=False)
        >>> figures.patching_figure(result).data[0].type
        'heatmap'
    """
    components = list(result.components)
    present = result.present
    values = np.where(present, result.recovery, np.nan) if result.defined else np.full(present.shape, np.nan)
    text = [[_cell_text(values[i, j], present[i, j], result.defined) for j in range(len(components))]
            for i in range(len(result.blocks))]  # fmt: skip
    labels = [COMPONENT_LABELS.get(c, c) for c in components]
    rows = [f"{b} ({k})" for b, k in zip(result.blocks, result.kinds, strict=True)]
    low, middle, high = _scale(result, values)
    ii, jj = np.nonzero(present)
    figure = go.Figure([
        go.Heatmap(
            z=values, x=labels, y=rows, zmin=low, zmax=high, zmid=middle, colorscale=DIVERGING, text=text,
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
    note = ("0 = the corrupted run, 1 = the clean run (white: the run patched into, unchanged); the relative "
            "bias depends on no input, so it recovers exactly 0 (denoising) or 1 (noising).")  # fmt: skip
    if not result.defined:
        note = _undefined_note(result)
    figure = chart(figure, title, height=140 + 30 * len(rows), bottom=60, note=note, clickmode="event+select")
    return named(figure, "patching")


def head_patching_figure(result) -> go.Figure:
    """Rows the attention blocks, columns the heads: each head's output patched alone.

    Args:
        result: :func:`analysis.activation_patching`'s result, with ``heads=True``.

    Returns:
        The figure: one heatmap.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> result = analysis.activation_patching(model, torch.randn(1, 28, 28), torch.randn(1, 28, 28))
        >>> figures.head_patching_figure(result).data[0].type
        'heatmap'
    """
    blocks = list(result.heads)
    if not blocks:
        figure = chart(go.Figure(), "Head patching: this model has no attention block", height=120)
        return named(figure, "head-patching")
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
    low, middle, high = _scale(result, values)
    figure = go.Figure(
        go.Heatmap(
            z=values, x=[f"head {h}" for h in range(width)], y=blocks, zmin=low, zmax=high, zmid=middle,
            colorscale=DIVERGING, text=text, texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: recovery %{text}<extra></extra>",
            colorbar=COLOUR_BAR,
        )
    )  # fmt: skip
    figure.update_yaxes(autorange="reversed")
    title = f"Head patching: recovery of each head's output alone. {_subject(result)}"
    note = "" if result.defined else _undefined_note(result)
    return named(chart(figure, title, height=140 + 30 * len(blocks), bottom=60, note=note), "head-patching")


def position_patching_figure(result, image: np.ndarray | None = None) -> go.Figure:
    """The recovery of each position of one block's output, drawn over ``image`` (H, W[, C]) at the
    positions it covers: each square of ``cell`` x ``cell`` cells over its own cells (the last row and
    column of squares cut at the grid's edge), a cell ``stride`` pixels wide.

    Args:
        result: :func:`analysis.position_patching`'s result.
        image: the clean picture (:func:`analysis.display_image`), or None.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model, clean = analysis.load_model("demo-pre"), torch.randn(1, 28, 28)
        >>> result = analysis.position_patching(model, clean, block="S3.0")
        >>> picture = analysis.display_image(clean, analysis.preprocessing_of(model))
        >>> figures.position_patching_figure(result, picture).data[0].type
        'image'
    """
    title = (
        f"{result.block}: recovery of each position ({result.cell}x{result.cell} cells). {_subject(result)}"
    )
    cells = np.repeat(np.repeat(result.recovery, result.cell, axis=0), result.cell, axis=1)
    cells = cells[: result.grid[0], : result.grid[1]]
    if not result.defined:
        title += ". " + _undefined_note(result)
        figure = overlay(image, np.zeros_like(cells), stride=result.stride, title=title, zmin=-1, zmax=1,
                       colorscale=DIVERGING, what="undefined")  # fmt: skip
        return named(figure, "position-patching")
    low, _, high = _scale(result, cells)
    figure = overlay(image, cells, stride=result.stride, title=title, zmin=low, zmax=high,
                   colorscale=DIVERGING, what="recovery")  # fmt: skip
    return named(figure, "position-patching")


def _kind_marker(kind: str) -> str:
    return {"stem": "square", "C": "circle", "T": "diamond"}.get(kind, "circle")


def probes_figure(probes: Probes) -> go.Figure:
    """Probe top-1 (test, and train dotted) of every block against depth, each block's marker coloured by
    its kind (the stem, MBConv C, Transformer T); the head lens of the S4 blocks; the model's own top-1
    as a line.

    Args:
        probes: a probes.json summary (:func:`analysis.load_probes`).

    Returns:
        The figure.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> figures.probes_figure(analysis.load_probes("probes-demo-pre")).data[0].type
        'scatter'
    """
    rows = probes.rows
    blocks = [r.block for r in rows]
    colours = [colour(BLOCK_KIND_COLOURS, "conv" if r.kind == "stem" else r.kind) for r in rows]
    hover = "%{x} (%{customdata}): %{y:.3f}<extra>%{fullData.name}</extra>"
    kinds = [r.kind for r in rows]
    figure = go.Figure([
        go.Scatter(
            x=blocks, y=[r.test_top1 for r in rows], mode="lines+markers", name="probe, test",
            line={"color": GREY}, customdata=kinds, hovertemplate=hover,
            marker={"color": colours, "size": 10, "symbol": [_kind_marker(k) for k in kinds]},
        ),
        go.Scatter(
            x=blocks, y=[r.train_top1 for r in rows], mode="lines", name="probe, train",
            line={"color": GREY, "dash": "dot"}, customdata=kinds, hovertemplate=hover,
        ),
    ])  # fmt: skip
    lens = probes.head_lens or ()
    if lens:
        figure.add_trace(go.Scatter(
            x=[r.block for r in lens], y=[r.test_top1 for r in lens], mode="markers",
            name="head lens, test", marker={"color": PURPLE, "size": 12, "symbol": "x"},
            hovertemplate="%{x}: %{y:.3f}<extra>head lens, test</extra>",
        ))  # fmt: skip
    figure.add_trace(go.Scatter(
        x=[blocks[0], blocks[-1]], y=[probes.model_top1] * 2, mode="lines", name="the model's top-1",
        line={"color": BROWN, "dash": "dash"}, hovertemplate="the model's top-1: %{y:.3f}<extra></extra>",
    ))  # fmt: skip
    described = probes.described
    title = (f"Where the class becomes linearly readable: {described}, {probes.n_train} training and "
             f"{probes.n_test} test images (a linear probe on each block's pooled output; square the "
             "stem, blue circles MBConv blocks, red diamonds Transformer blocks)")  # fmt: skip
    figure = chart(
        figure, title, height=380, bottom=60, legend_rows=1, xaxis_title="block (forward order)",
        yaxis={"title": {"text": "top-1"}, "range": [0, 1.02]},
    )  # fmt: skip
    return named(figure, "probes")


def readable_from(probes: Probes, within: float = 0.02) -> tuple[str, float]:
    """The first block whose probe's test top-1 is within ``within`` of the last block's, and its depth
    as a fraction of the blocks (0 the stem, 1 the last block).

    Args:
        probes: a probes.json summary (:func:`analysis.load_probes`).
        within: how close to the last block's top-1, as a fraction.

    Returns:
        (the block, its depth in [0, 1]).

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> block, depth = figures.readable_from(analysis.load_probes("probes-demo-pre"))
        >>> block, round(depth, 2)
        ('S3.0', 0.67)
    """
    rows = probes.rows
    last = rows[-1].test_top1
    for i, row in enumerate(rows):
        if row.test_top1 >= last - within:
            return row.block, i / max(1, len(rows) - 1)
    return rows[-1].block, 1.0


def layout_probes_figure(studies: list[Probes], ranking: dict[str, float] | None = None) -> go.Figure:
    """The probes of every layout on one axis of depth (0 the stem, 1 the last block): per layout its
    probe test top-1, each marker by the block's kind. ``ranking`` (layout -> the layout study's test
    top-1) orders the legend from the best-generalising layout.

    Args:
        studies: one probes.json summary per layout (:func:`analysis.layout_probes`).
        ranking: layout -> test top-1 (:func:`analysis.generalisation_ranking`), or None.

    Returns:
        The figure: one line per layout.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> ranking = analysis.generalisation_ranking(analysis.load_layouts())
        >>> len(figures.layout_probes_figure(analysis.layout_probes(), ranking).data)
        5
    """
    order = sorted(studies, key=lambda p: -(ranking or {}).get(layout_label(p.model), 0.0))
    figure = go.Figure()
    for probes in order:
        rows, label = probes.rows, layout_label(probes.model)
        depth = [i / max(1, len(rows) - 1) for i in range(len(rows))]
        read = f"readable at {readable_from(probes)[0]}"
        name = f"{label} ({read})" if not ranking or label not in ranking else (
            f"{label} (study top-1 {ranking[label]:.3f}, {read})")  # fmt: skip
        figure.add_trace(go.Scatter(
            x=depth, y=[r.test_top1 for r in rows], mode="lines+markers", name=name,
            line={"color": colour(LAYOUT_COLOURS, label)},
            marker={"symbol": [_kind_marker(r.kind) for r in rows], "size": 9},
            customdata=[[r.block, r.kind] for r in rows],
            hovertemplate=f"{label} %{{customdata[0]}} (%{{customdata[1]}}): %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    title = ("Where each layout's class becomes linearly readable: probe test top-1 against relative depth "
             "(squares the stem, circles MBConv blocks, diamonds Transformer blocks)")  # fmt: skip
    figure = chart(
        figure, title, height=420, bottom=60, legend_rows=3,
        xaxis={"title": {"text": "relative depth (0 the stem, 1 the last block)"}, "range": [-0.03, 1.03]},
        yaxis={"title": {"text": "probe top-1, test"}},
    )  # fmt: skip
    return named(figure, "layout-probes")
