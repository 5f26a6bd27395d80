"""Plotly figures of the analysis results, shared by the app and the HTML report.

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
from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, NBSP, chart, drawn, pair, panels, set_ranges
from analysis.figures.plots import (
    OWN_SCALES,
    distance_scatter,
    head_grid,
    image_trace,
    kernel_gallery,
    map_trace,
    matrix_figure,
    overlay,
    panel_range,
    readable,
    value_range,
    window_note,
)
from analysis.figures.style import (
    BLOCK_KIND_COLOURS,
    DIVERGING,
    HEAT,
    MASS_COLOUR,
    SEQUENTIAL,
    SPLIT_COLOURS,
    THEORY_COLOUR,
    colour,
)

__all__ = [
    "attention_change_figure",
    "attention_heads_figure",
    "attribution_figure",
    "bias_kernel_figure",
    "cka_figure",
    "depthwise_kernel_figure",
    "feature_channels_figure",
    "frequency_figure",
    "fused_attention_figure",
    "kernel_figures",
    "predictions_figure",
    "receptive_field_figure",
    "rollout_figure",
    "stages_figure",
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


def kernel_figures(kernels, *, max_channels: int = 16, cols: int = 8) -> list[go.Figure]:
    """Each attention block's per-head bias kernels, then each MBConv block's depthwise kernels (the
    first ``max_channels`` channels), both oriented offset = key - query with the centre outlined.

    Args:
        kernels: :func:`analysis.relative_bias_kernels`'s result.
        max_channels: depthwise channels drawn per MBConv block.
        cols: panels per row.

    Returns:
        One figure per attention block, then one per MBConv block.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> len(figures.kernel_figures(kernels, max_channels=4))  # 3 attention blocks, 3 MBConv blocks
        6
    """
    return [bias_kernel_figure(block, cols=cols) for block in kernels.bias] + [
        depthwise_kernel_figure(block, channels=range(min(max_channels, len(block.kernels))), cols=cols)
        for block in kernels.depthwise
    ]


def bias_kernel_figure(block, *, cols: int = 8, model: str = "") -> go.Figure:
    """One attention block's relative-bias kernel per head (a :class:`analysis.BiasKernel`), of the model
    named ``model`` (named in the title when given).

    Args:
        block: one of :attr:`analysis.Kernels.bias`.
        cols: panels per row.
        model: the model's name for the title, or ``""``.

    Returns:
        The figure: one heatmap per head.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> figure = figures.bias_kernel_figure(kernels.bias[0], model="demo-pre")
        >>> figure.data[0].type, len(figure.data)  # S3.0's 4 heads (and their centre outlines)
        ('heatmap', 8)
    """
    peaks, distances = kernel_summary(block)
    titles = [
        f"head {h}<br>peak {pair(*peak)}<br>mean {readable(d)}{NBSP}px"
        for h, (peak, d) in enumerate(zip(peaks, distances, strict=True))
    ]
    step = block.stride * block.dilation[0]  # pixels per kernel step: a grid group's keys lie H / G apart
    title = (
        f"{model + ': ' if model else ''}{block.name}: relative-bias kernels ({block.mode}), offset key - "
        f"query, {step}{NBSP}px per step; each head's peak offset and the mean distance of softmax(w)"
    )
    figure = kernel_gallery(
        block.kernels, titles=titles, title=title, cols=min(cols, 4), what="bias w", max_panel=160.0,
        min_panel=96.0,
    )  # fmt: skip
    return named(figure, "bias-kernels")


def kernel_summary(block) -> tuple[list[tuple[int, int]], list[float]]:
    """Per head of a :class:`analysis.BiasKernel`: the offset (dy, dx) = key - query of its largest bias,
    and the mean distance in input pixels of ``softmax(w)`` over every offset (where the bias alone steers
    a query; the figures' reading of the kernel, computed from it)."""
    _, kh, kw = block.kernels.shape
    dy, dx = np.meshgrid(np.arange(kh) - kh // 2, np.arange(kw) - kw // 2, indexing="ij")
    step_y, step_x = (block.stride * d for d in getattr(block, "dilation", (1, 1)))  # grid attention: dilated
    distance = np.hypot(dy * step_y, dx * step_x)
    peaks, means = [], []
    for kernel in block.kernels.astype(np.float64):
        r, c = np.unravel_index(int(np.argmax(kernel)), kernel.shape)
        peaks.append((int(dy[r, c]), int(dx[r, c])))
        weights = np.exp(kernel - kernel.max())
        means.append(float((weights * distance).sum() / weights.sum()))
    return peaks, means


def depthwise_kernel_figure(block, *, channels: Sequence[int], cols: int = 8) -> go.Figure:
    """The depthwise kernels of the chosen ``channels`` (any of them, in the order given) of one MBConv
    block (a :class:`analysis.DepthwiseKernel`).

    Args:
        block: one of :attr:`analysis.Kernels.depthwise`.
        channels: the channels to draw.
        cols: panels per row.

    Returns:
        The figure: one heatmap per channel.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> figure = figures.depthwise_kernel_figure(kernels.depthwise[0], channels=[0, 5])
        >>> figure.data[0].type
        'heatmap'
    """
    channels = list(channels)
    count = len(block.kernels)
    if not channels or not all(0 <= c < count for c in channels):
        raise ValueError(f"{block.name} has channels 0..{count - 1}, not {channels[:4]}...")
    shown = block.kernels[channels]
    titles = [f"ch {c}" for c in channels]
    span = f"{len(channels)} of {count} channels"
    title = f"{block.name}: depthwise {shown.shape[-1]}x{shown.shape[-1]} kernels, {span}"
    figure = kernel_gallery(shown, titles=titles, title=title, cols=cols, what="weight")
    return named(figure, "depthwise-kernels")


ERF_CELLS = 112  # an effective receptive field is drawn on at most this many cells a side (the report's size)


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    """Sums over ``block`` x ``block`` squares (the last ones cut by the border): mass stays mass."""
    if block == 1:
        return values
    height, width = values.shape
    padded = np.pad(values, ((0, -height % block), (0, -width % block)))
    return padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block).sum((1, 3))


def receptive_field_figure(fields, image: np.ndarray | None = None) -> go.Figure:
    """The effective receptive field of each stage's centre unit, side by side, with the theoretical field
    and the 50% mass square drawn on it.

    Args:
        fields: :func:`analysis.receptive_fields`'s result.
        image: the picture to draw beside the fields, or None.

    Returns:
        The figure: one heatmap per stage.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> fields = analysis.receptive_fields(model, stages=[0, 3], samples=1)
        >>> len(figures.receptive_field_figure(fields).data)
        2
    """
    stages = fields.stages
    height, width = fields.image_size
    block = max(1, -(-max(height, width) // ERF_CELLS))  # pixels a side per drawn cell
    subtitles = [
        f"{s.name} ({s.kind})<br>theory {_theory(s)}<br>50% in {s.mass_sides.get(0.5, 0)}{NBSP}px"
        f"<br>{panel_range(_block_sums(s.effective, block))}"
        for s in stages
    ]
    grid = panels(
        len(stages), cols=len(stages), aspect=height / width, subtitles=subtitles,
        title=f"Receptive fields: effective (heat; {OWN_SCALES}), theoretical (cyan), 50% of the mass "
        "(green)",
    )  # fmt: skip
    layout, traces, shapes = grid.layout, [], []
    square = f" in this {block}x{block} px square" if block > 1 else ""
    for stage, axes in zip(stages, grid.axes, strict=True):
        set_ranges(layout, axes, height, width)
        if image is not None:
            traces.append(image_trace(image, opacity=0.35).update(xaxis=axes[0], yaxis=axes[1]))
        traces.append(
            go.Heatmap(
                z=_block_sums(stage.effective, block), x0=drawn(block / 2), dx=block, y0=drawn(block / 2),
                dy=block, colorscale=HEAT, showscale=False, opacity=0.85, xaxis=axes[0], yaxis=axes[1],
                hovertemplate=f"%{{z:.4f}} of the gradient mass{square}<extra>{stage.name}</extra>",
            )
        )  # fmt: skip
        cy, cx = stage.centre
        boxes = [((stage.mass_sides.get(0.5, 0),) * 2, (cy, cx), MASS_COLOUR)]
        if stage.is_global:  # the whole image, whatever the centre
            boxes.append(((height, width), (drawn(height / 2), drawn(width / 2)), THEORY_COLOUR))
        else:
            boxes.append((stage.theoretical, (cy, cx), THEORY_COLOUR))
        for (box_h, box_w), (y, x), box_colour in boxes:
            shapes.append({
                "type": "rect", "xref": axes[0], "yref": axes[1], "x0": x - box_w / 2, "x1": x + box_w / 2,
                "y0": y - box_h / 2, "y1": y + box_h / 2, "line": {"color": box_colour, "width": 1},
            })  # fmt: skip
    return named(grid.figure(traces, shapes), "receptive-field")


def _theory(stage) -> str:
    return "global" if stage.is_global else f"{stage.theoretical[0]}x{stage.theoretical[1]}"


def frequency_figure(profile) -> go.Figure:
    """Per block, the relative log amplitude at the highest frequency, and its change over the block's
    input (< 0: low-pass, > 0: high-pass), coloured by block kind.

    Args:
        profile: :func:`analysis.frequency_profile`'s result.

    Returns:
        The figure: bars per block.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> profile = analysis.frequency_profile(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> figures.frequency_figure(profile).data[0].type
        'bar'
    """
    names = [b.name for b in profile.blocks]
    figure = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("log amplitude at frequency pi", "change over the block's input"),
    )
    for col, values in (
        (1, [b.high_freq_log_amp for b in profile.blocks]),
        (2, [b.delta_vs_input for b in profile.blocks]),
    ):
        figure.add_trace(
            go.Bar(
                x=names,
                y=values,
                marker_color=[colour(BLOCK_KIND_COLOURS, b.kind) for b in profile.blocks],
                showlegend=False,
                hovertemplate="%{x}: %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    figure.update_annotations(font_size=12)
    title = "Frequency profile (Park & Kim 2022): MBConv blue, Transformer red"
    return named(chart(figure, title, height=380, subtitle_lines=1), "frequency")


def attribution_figure(
    attribution, image: np.ndarray | None, *, opacity: float = DEFAULT_OPACITY
) -> go.Figure:
    """An attribution map (:class:`analysis.Attribution`) over the image it explains.

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
    title = f"{attribution.method}{where}: {name} (p = {attribution.probability:.2f})"
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


def stages_figure(
    features,
    image: np.ndarray | None,
    cams: Sequence | None = None,
    *,
    index: int = 0,
    opacity: float = DEFAULT_OPACITY,
) -> go.Figure:
    """S0..S4 side by side: each stage's channel-mean |activation| on its own grid (top row) and, when
    given, its Grad-CAM over the image (bottom row; ``cams``: one :class:`analysis.Attribution` per
    stage).

    Args:
        features: :func:`analysis.feature_maps`'s result.
        image: the picture to draw under the Grad-CAMs, or None.
        cams: :func:`analysis.gradcam_stages`'s maps, or None.
        index: the image of the batch.
        opacity: of the Grad-CAMs over the picture.

    Returns:
        The figure.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model, image = analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28)
        >>> cams = analysis.gradcam_stages(model, image)
        >>> figure = figures.stages_figure(analysis.feature_maps(model, image), None, cams)
        >>> figure.data[0].type
        'heatmap'
    """
    stages = features.blocks
    height, width = features.image_size
    subtitles = [
        f"{s.name} ({s.kind})<br>{s.grid[0]}x{s.grid[1]}x{s.channels}, /{s.stride}<br>"
        f"{panel_range(s.energy[index])}"
        for s in stages
    ]
    if cams:
        subtitles += [f"Grad-CAM {c.stage}<br>{panel_range(c.map)}" for c in cams]
    title = (
        "What each stage responds to: mean |activation| per grid cell"
        + (" (top), and Grad-CAM (bottom)" if cams else "")
        + f"; {OWN_SCALES}"
    )
    grid = panels(
        len(stages) * (2 if cams else 1), cols=len(stages), aspect=height / width, title=title,
        subtitles=subtitles, matrix=True,
    )  # fmt: skip
    layout, traces = grid.layout, []
    for stage, axes in zip(stages, grid.axes, strict=False):
        grid_h, grid_w = stage.grid
        set_ranges(layout, axes, grid_h, grid_w)
        traces.append(map_trace(stage.energy[index], what="mean |activation|", axes=axes))
    for cam, axes in zip(cams or (), grid.axes[len(stages) :], strict=False):
        set_ranges(layout, axes, height, width)
        if image is not None:
            traces.append(image_trace(image).update(xaxis=axes[0], yaxis=axes[1]))
        traces.append(map_trace(
            cam.map, colorscale=HEAT, opacity=opacity if image is not None else 1.0, axes=axes,
            what=f"Grad-CAM {cam.stage}",
        ))  # fmt: skip
    return named(grid.figure(traces), "stages")


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


def feature_channels_figure(features, *, index: int = 0) -> go.Figure:
    """The strongest channels of every stage (:class:`analysis.FeatureMaps`): one column per
    stage, one row per channel, each on its own diverging colour scale (channels differ in range).

    Args:
        features: :func:`analysis.feature_maps`'s result.
        index: the image of the batch.

    Returns:
        The figure: one heatmap per stage and channel.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> model = analysis.load_model("demo-pre")
        >>> features = analysis.feature_maps(model, torch.randn(1, 1, 28, 28), top=2)
        >>> len(figures.feature_channels_figure(features).data)  # 5 stages x 2 channels
        10
    """
    stages = features.blocks
    rows = max(s.top.shape[1] for s in stages)
    height, width = features.image_size
    order = [(r, s) for r in range(rows) for s in stages]
    titles = [
        f"{s.name} ch {s.top_index[index, r]}<br>{panel_range(s.top[index, r])}" if r < s.top.shape[1] else ""
        for r, s in order
    ]
    grid = panels(
        len(order), cols=len(stages), aspect=height / width, subtitles=titles, matrix=True,
        title=f"The strongest channels of each stage (most mean squared activation; red > 0 > blue; "
        f"{OWN_SCALES})",
    )  # fmt: skip
    layout, traces = grid.layout, []
    for (r, stage), axes in zip(order, grid.axes, strict=True):
        if r >= stage.top.shape[1]:
            continue
        values = stage.top[index, r]
        low, high = value_range(values, True)
        set_ranges(layout, axes, *stage.grid)
        traces.append(
            map_trace(values, colorscale=DIVERGING, zmin=low, zmax=high, what="activation", axes=axes)
        )
    return named(grid.figure(traces), "feature-channels")
