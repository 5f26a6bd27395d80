"""One image stage by stage as figures: each stage's output and Grad-CAM, the strongest channels, the
theoretical and effective receptive fields, and the frequency profile of every block's output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, NBSP, chart, drawn, panels, set_ranges
from analysis.figures.plots import (
    OWN_SCALES,
    image_trace,
    map_trace,
    panel_range,
    value_range,
)
from analysis.figures.style import (
    BLOCK_KIND_COLOURS,
    DIVERGING,
    HEAT,
    MASS_COLOUR,
    THEORY_COLOUR,
    colour,
)

__all__ = [
    "feature_channels_figure",
    "frequency_figure",
    "receptive_field_figure",
    "stages_figure",
]  # what the face, analysis.figures, hands on


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
