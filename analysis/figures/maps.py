"""Plotly figures of attention and of one image's prediction: a block's maps, every head, rollout, head
statistics, attributions, CKA, training curves and the top classes; shared by the app and the HTML report
(kernels: :mod:`analysis.figures.kernels`; an image stage by stage: :mod:`analysis.figures.stages`).

Each function takes a result of the analysis layer (and the image it came from, as the uint8 picture
the model saw: :func:`analysis.core.inputs.display_image`) and returns a ``plotly.graph_objects.Figure``. The
building blocks they share live in :mod:`analysis.figures.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.core.query import cell_centre, pixel_cell
from analysis.explain.registry import explainers
from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, chart, pair
from analysis.figures.plots import (
    distance_scatter,
    head_grid,
    matrix_figure,
    overlay,
    value_range,
    window_note,
)
from analysis.figures.style import (
    DIVERGING,
    HEAT,
    SEQUENTIAL,
    SPLIT_COLOURS,
)

__all__ = [
    "attention_change_figure",
    "attention_heads_figure",
    "attribution_figure",
    "cka_figure",
    "fused_attention_figure",
    "predictions_figure",
    "rollout_figure",
    "statistics_figures",
    "training_curves",
]  # what the face, analysis.figures, hands on

PART_TITLES = {
    "effective": "effective weights",
    "content": "content only, softmax(q k^T / sqrt(d))",
    "bias": "bias only, w(key - query)",
    "bias_softmax": "bias only, softmax(w): position alone",
}


def _signed(block, part: str) -> bool:
    """Whether a part's values can be negative: the bias itself, and post-normalization weights as used."""
    return part == "bias" or (block.mode == "post" and part == "effective")


def _what(part: str, signed: bool) -> str:
    """A colour bar's title for one part of a block's attention."""
    return "bias w" if part == "bias" else ("weight (signed)" if signed else "weight")


def attention_heads_figure(
    block,
    image: np.ndarray | None,
    query: int,
    *,
    part: str = "effective",
    index: int = 0,
    opacity: float = DEFAULT_OPACITY,
    selected: int | None = None,
    width: float | None = None,
) -> go.Figure:
    """Where ``query`` attends in every head of one block (an :class:`analysis.BlockAttention`): a compact
    overview, at most eight heads a row, laid out to fill ``width`` px, on one colour scale; the
    ``selected`` head framed.

    Args:
        block: one block of :func:`analysis.attention_maps`.
        image: the picture to draw under the maps (:func:`analysis.display_image`), or None.
        query: the row-major query index.
        part: ``effective``, ``content``, ``bias`` or ``bias_softmax`` (:func:`analysis.query_map`).
        index: the image of the batch.
        opacity: of the maps over the picture.
        selected: the head to frame, or None.
        width: the figure's width in px (None: the column of :func:`analysis.figures.drawn_at`, else
            :data:`analysis.figures.MAX_WIDTH`).

    Returns:
        The figure: one panel per head.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model, x = analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28)
        >>> s3 = analysis.attention_maps(model, x).block("S3.0")
        >>> picture = analysis.display_image(x[0], analysis.preprocessing_of(model))
        >>> figure = figures.attention_heads_figure(s3, picture, 24, part="content", selected=1)
        >>> figure.data[0].type
        'image'
    """
    from analysis.maps.attention import query_map

    maps = query_map(block, query, part=part, image=index)
    row, col = divmod(query, block.grid[1])
    signed = _signed(block, part)
    title = f"{block.name} ({block.mode}-normalization), every head: {PART_TITLES[part]}"
    title += f", query {pair(row, col)}{window_note(block)}"
    figure = head_grid(
        image, maps, stride=block.stride, title=title, query=(row, col),
        colorscale=DIVERGING if signed else SEQUENTIAL, symmetric=signed, what=_what(part, signed),
        opacity=opacity, selected=selected, width=width, seen=block.seen(query),
    )  # fmt: skip
    return named(figure, "attention-heads")


def fused_attention_figure(
    block,
    image: np.ndarray | None,
    query: int,
    *,
    part: str = "effective",
    how: str | int = "mean",
    index: int = 0,
    clickable: bool = True,
    opacity: float = DEFAULT_OPACITY,
    model: str = "",
) -> go.Figure:
    """All heads of one block fused (``how`` = ``mean`` or ``max``), or one head (``how`` = its index), at
    ``query``, large; clickable to pick the next query; the title names ``model`` when given.

    Args:
        block: one block of :func:`analysis.attention_maps`.
        image: the picture to draw under the map, or None.
        query: the row-major query index.
        part: ``effective``, ``content``, ``bias`` or ``bias_softmax``.
        how: ``mean`` or ``max`` over heads, or one head's index.
        index: the image of the batch.
        clickable: add a transparent marker per cell, for a click to pick the next query.
        opacity: of the map over the picture.
        model: the model's name for the title, or ``""``.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> s3 = analysis.attention_maps(model, torch.randn(1, 1, 28, 28)).block("S3.0")
        >>> figures.fused_attention_figure(s3, None, 24, how=2).data[0].type  # head 2, no picture under it
        'heatmap'
    """
    from analysis.maps.attention import fuse_heads, query_map

    heads = query_map(block, query, part=part, image=index)
    if isinstance(how, int) or str(how).isdigit():
        values, label = heads[int(how)], f"head {int(how)}"
    else:
        values, label = fuse_heads(heads[None], how)[0], f"heads fused by {how}"
    row, col = divmod(query, block.grid[1])
    signed = _signed(block, part)
    low, high = value_range(values, signed)
    figure = overlay(
        image, values, stride=block.stride, query=(row, col),
        title=f"{model + ': ' if model else ''}{block.name}: {PART_TITLES[part]}, {label}, query "
        f"{pair(row, col)}{window_note(block)}", clickable=clickable,
        colorscale=DIVERGING if signed else SEQUENTIAL, zmin=low, zmax=high,
        what=_what(part, signed), opacity=opacity, seen=block.seen(query),
    )  # fmt: skip
    return named(figure, "fused-attention")


def attention_change_figure(
    before, after, image: np.ndarray | None, query: int, *, index: int = 0, opacity: float = DEFAULT_OPACITY
) -> go.Figure:
    """How an intervention changed where ``query`` attends in one block: the heads' mean effective weights
    after minus before (two :class:`analysis.BlockAttention` of the same block), on a scale centred on 0.

    Args:
        before: the block's attention without the intervention.
        after: the same block's attention with it (:attr:`analysis.InterventionEffect.after`).
        image: the picture to draw under the map (:func:`analysis.display_image`), or None.
        query: the row-major query index.
        index: the image of the batch.
        opacity: of the map over the picture.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> uniform = [analysis.Intervention("S3.0", "uniform")]
        >>> effect = analysis.intervention_effect(model, torch.randn(1, 28, 28), uniform)
        >>> before, after = effect.before.block("S3.0"), effect.after.block("S3.0")
        >>> figure = figures.attention_change_figure(before, after, None, 24)
        >>> figure.data[0].type  # no picture under it: a heatmap alone
        'heatmap'
    """
    from analysis.maps.attention import fuse_heads, query_map

    change = (
        fuse_heads(query_map(after, query, image=index)[None], "mean")[0]
        - fuse_heads(query_map(before, query, image=index)[None], "mean")[0]
    )
    row, col = divmod(query, before.grid[1])
    low, high = value_range(change, True)
    figure = overlay(
        image, change, stride=before.stride, query=(row, col), colorscale=DIVERGING, zmin=low, zmax=high,
        title=f"{before.name}: change of the weights (heads fused by mean), query {pair(row, col)}"
        f"{window_note(before)}", what="change", opacity=opacity, seen=before.seen(query),
    )  # fmt: skip
    return named(figure, "attention-change")


def rollout_figure(
    rollout, image: np.ndarray | None, *, index: int = 0, opacity: float = DEFAULT_OPACITY
) -> go.Figure:
    """Attention rollout (an :class:`analysis.Rollout`) on the first attention block's grid.

    Args:
        rollout: :func:`analysis.attention_rollout`'s result.
        image: the picture to draw under the map, or None.
        index: the image of the batch.
        opacity: of the map over the picture.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> rollout = analysis.attention_rollout(model, torch.randn(1, 1, 28, 28))
        >>> figures.rollout_figure(rollout, None, opacity=0.8).data[0].type  # no picture: a heatmap alone
        'heatmap'
    """
    values = rollout.map[index]
    query = None if rollout.query is None else divmod(rollout.query, rollout.grid_last[1])
    where = "averaged over queries" if query is None else f"from query {pair(*query)} of {rollout.blocks[-1]}"
    scaled_query = None
    if query is not None:  # the query on the first grid's scale
        centre = cell_centre(*query, stride=rollout.stride_last)
        scaled_query = pixel_cell(*centre, grid=rollout.grid_first, stride=rollout.stride_first)
    figure = overlay(
        image, values, stride=rollout.stride_first, query=scaled_query, what="share",
        title=f"{rollout.label[:1].upper()}{rollout.label[1:]}, {where}", opacity=opacity,
    )  # fmt: skip
    return named(figure, "rollout")


def statistics_figures(statistics) -> list[go.Figure]:
    """Mean distance, entropy and position share per head and block (an
    :class:`analysis.AttentionStatistics`).

    Args:
        statistics: :func:`analysis.attention_statistics`'s result.

    Returns:
        Three figures: distance, entropy, position share.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> stats = analysis.attention_statistics(model, torch.randn(2, 1, 28, 28))
        >>> len(figures.statistics_figures(stats))
        3
    """
    names = [b.name for b in statistics.blocks]
    mode = statistics.blocks[0].mode if statistics.blocks else ""
    distance = distance_scatter(
        {mode: (names, [b.distance_px for b in statistics.blocks])},
        title=f"Mean attention distance per head ({mode}-normalization)",
    )
    entropy = distance_scatter(
        {mode: (names, [b.entropy for b in statistics.blocks])},
        title=f"Attention entropy per head ({mode}-normalization; "
        "log N is uniform over the N keys a query sees)",
        y_label="entropy (nats)",
    )
    share = distance_scatter(
        {mode: (names, [b.position_share for b in statistics.blocks])},
        title=f"Share of logit variance from position (bias) vs content ({mode}-normalization)",
        y_label="position share",
    )
    return [
        named(distance, "attention-distance"),
        named(entropy, "attention-entropy"),
        named(share, "position-share"),
    ]


def attribution_figure(
    attribution, image: np.ndarray | None, *, opacity: float = DEFAULT_OPACITY
) -> go.Figure:
    """An attribution map (:class:`analysis.Attribution`) over the image it explains, titled with the
    method's label in words (the registry's, :func:`analysis.explainers`).

    Args:
        attribution: the map (:func:`analysis.attributions`).
        image: the picture to draw under it, or None.
        opacity: of the map over the picture.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> gradcam = analysis.attributions(analysis.load_model("demo-pre"), torch.randn(1, 28, 28))
        >>> figures.attribution_figure(gradcam, None).data[0].type  # no picture under it: a heatmap alone
        'heatmap'
    """
    name = attribution.target_name or f"class {attribution.target}"
    where = f" at {attribution.stage}" if attribution.stage else ""
    method = next((e.label for e in explainers() if e.name == attribution.method), attribution.method)
    title = f"{method}{where}: {name} (p = {attribution.probability:.2f})"
    figure = overlay(
        image, attribution.map, stride=1.0, title=title, colorscale=HEAT, opacity=opacity, what="relevance"
    )
    return named(figure, "attribution")


def cka_figure(result, *, labels: tuple[str, str] = ("", "")) -> go.Figure:
    """A CKA matrix (:class:`analysis.CKAResult`).

    Args:
        result: :func:`analysis.cka`'s result.
        labels: what to call the two models, for the axes (``("", "")``: one model).

    Returns:
        The figure: one heatmap.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> result = analysis.cka(analysis.load_model("demo-pre"), torch.randn(8, 1, 28, 28))
        >>> figures.cka_figure(result).data[0].type
        'heatmap'
    """
    rows = [f"{labels[0]} {n}".strip() for n in result.names_a]
    cols = [f"{labels[1]} {n}".strip() for n in result.names_b]
    title = f"Linear CKA ({result.n_images} images)"
    return named(matrix_figure(result.matrix, rows, cols, title=title, what="CKA"), "cka")


def training_curves(rows: Sequence[dict]) -> go.Figure:
    """Loss and top-1 per epoch from a run's ``metrics.json`` (train and test; epochs the run did not test,
    ``--eval-every``, are gaps).

    Args:
        rows: one dict per epoch, as :attr:`coatnet.TrainResult.metrics` holds them: ``epoch``,
            ``train_loss``, ``train_top1``, ``test_loss``, ``test_top1``.

    Returns:
        The figure: four lines.

    Examples:
        >>> from analysis import figures
        >>> rows = [
        ...     {"epoch": e, "train_loss": 1 / e, "train_top1": 0.5, "test_loss": 1.2 / e, "test_top1": 0.4}
        ...     for e in (1, 2)
        ... ]
        >>> len(figures.training_curves(rows).data)
        4
    """
    epochs = [r["epoch"] for r in rows]
    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=("loss", "top-1 accuracy (%)")
    )
    for key, line_colour in SPLIT_COLOURS.items():
        figure.add_trace(
            go.Scatter(
                x=epochs, y=[r[f"{key}_loss"] for r in rows], name=f"{key} loss", line={"color": line_colour}
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=[None if r[f"{key}_top1"] is None else 100 * r[f"{key}_top1"] for r in rows],
                name=f"{key} top-1",
                line={"color": line_colour, "dash": "dot"},
            ),
            row=1,
            col=2,
        )
    figure.update_annotations(font_size=12)
    figure.update_xaxes(title_text="epoch")
    figure = chart(figure, "Training curves", height=400, subtitle_lines=1, legend_rows=1)
    return named(figure, "training-curves")


def predictions_figure(predictions: Sequence, *, name_chars: int = 28) -> go.Figure:
    """Top-k classes (:class:`analysis.Prediction`) as horizontal bars, most probable on top.

    One rule for every image: the axis runs from 0 to 100% (an axis fitted to each image's top
    probability jumped between 100%, 95% and 70% from one image to the next), each bar's probability
    written beside it; long names (ImageNet's "tench, Tinca tinca") are cut to their first synonym and
    ``name_chars`` characters, the full name on hover.

    Args:
        predictions: :func:`analysis.top_k`'s predictions.
        name_chars: the longest name drawn.

    Returns:
        The figure: one bar trace.

    Examples:
        >>> import numpy as np, analysis
        >>> from analysis import figures
        >>> top = analysis.top_k(np.array([0.1, 2.0, 1.0]), ["tench, Tinca tinca", "goldfish", "shark"])
        >>> list(figures.predictions_figure(top).data[0].y)  # the least probable at the bottom
        ['tench', 'shark', 'goldfish']
    """
    full = [p.name for p in predictions][::-1]
    values = [p.probability for p in predictions][::-1]
    figure = go.Figure(
        go.Bar(
            x=values, y=[_short_name(n, name_chars) for n in full], orientation="h", customdata=full,
            text=[f"{v:.1%}" for v in values], textposition="outside", cliponaxis=False,
            hovertemplate="%{customdata}: %{x:.2%}<extra></extra>",
        )
    )  # fmt: skip
    chart(figure, "Top-5 predictions", height=100, width_px=260, bottom=30)  # beside the pictures
    figure.update_layout(
        xaxis={"range": [0, 1], "tickformat": ".0%", "tickvals": [0, 0.5, 1]},
        height=figure.layout.margin.t + 30 + 26 * len(full),
        margin={"l": 10, "r": 40},
    )
    return named(figure, "predictions")


def _short_name(name: str, chars: int) -> str:
    first = name.split(",")[0].strip() or name
    return first if len(first) <= chars else first[: chars - 1].rstrip() + "…"
