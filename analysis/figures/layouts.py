"""The layout study's figures: test accuracy and training loss against the training-set size per layout, the
paper's view (training loss against test accuracy), every layout stage by stage on one image, and the CKA of
every pair of layouts. Shared by layouts.html, the docs and the app's Layouts page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.names import named
from analysis.figures.panels import DEFAULT_OPACITY, chart, panels, set_ranges
from analysis.figures.plots import (
    OWN_SCALES,
    image_trace,
    map_trace,
    matrix_figure,
    panel_range,
    query_marker,
)
from analysis.figures.style import HEAT, LAYOUT_COLOURS, colour
from analysis.studies.layouts import LayoutSimilarity, LayoutStage, _short
from analysis.studies.summaries import LayoutStudy

__all__ = [
    "LAYOUT_VIEWS",
    "gap_figure",
    "layout_similarity_figure",
    "layout_stages_figure",
    "size_figure",
]  # what the face, analysis.figures, hands on


def size_figure(study: LayoutStudy) -> go.Figure:
    """Test top-1 and the final training loss (clean training subset) against the training-set size, one
    line per layout, log-scaled sizes.

    Args:
        study: a layout study (:func:`analysis.load_layouts`).

    Returns:
        The figure: two lines per layout.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> len(figures.size_figure(analysis.load_layouts()).data)
        10
    """
    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.14,
        subplot_titles=("test top-1 (%)", "training loss, clean training subset"),
    )  # fmt: skip
    for layout, runs in study.by_layout().items():
        sizes = [r.size for r in runs]
        line_colour = colour(LAYOUT_COLOURS, layout)
        for col, key, scale in ((1, "test_top1", 100.0), (2, "train_loss", 1.0)):
            figure.add_trace(
                go.Scatter(
                    x=sizes, y=[getattr(r, key) * scale for r in runs], name=layout, mode="lines+markers",
                    line={"color": line_colour}, legendgroup=layout, showlegend=col == 1,
                    hovertemplate=f"{layout}<br>%{{x}} images: %{{y:.4f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    sizes = study.sizes
    figure.update_xaxes(
        type="log", title_text="training images", tickvals=sizes, ticktext=list(map(_short, sizes))
    )
    figure.update_annotations(font_size=12)
    steps = study.settings["steps"]
    figure = chart(
        figure, f"Layouts: {steps} optimizer steps at every training-set size", height=420, subtitle_lines=1,
        legend_rows=1,
    )  # fmt: skip
    return named(figure, "layout-sizes")


def gap_figure(study: LayoutStudy) -> go.Figure:
    """The paper's view (its Figure 1): final training loss against test accuracy, one line per layout
    through its sizes (larger markers for more training images: labels would collide where two sizes
    land close); a layout further up and left reaches more accuracy for the same fit.

    Args:
        study: a layout study (:func:`analysis.load_layouts`).

    Returns:
        The figure: one line per layout.

    Examples:
        >>> import analysis
        >>> from analysis import figures
        >>> len(figures.gap_figure(analysis.load_layouts()).data)  # five layouts
        5
    """
    sizes = study.sizes
    marker = {size: 7 + 5 * k for k, size in enumerate(sizes)}
    figure = go.Figure()
    for layout, runs in study.by_layout().items():
        figure.add_trace(
            go.Scatter(
                x=[r.train_loss for r in runs], y=[100 * r.test_top1 for r in runs], name=layout,
                mode="lines+markers", customdata=[_short(r.size) for r in runs],
                marker={"size": [marker[r.size] for r in runs]},
                line={"color": colour(LAYOUT_COLOURS, layout)},
                hovertemplate=f"{layout}<br>%{{customdata}} images<br>loss %{{x:.4f}}, "
                "top-1 %{y:.2f}%<extra></extra>",
            )
        )  # fmt: skip
    scale = ", ".join(map(_short, sizes))
    figure = chart(
        figure, f"Training loss against test accuracy (markers grow with the training images: {scale})",
        height=440, legend_rows=1, xaxis_title="final training loss (clean training subset)",
        yaxis_title="test top-1 (%)",
    )  # fmt: skip
    return named(figure, "layout-gap")


LAYOUT_VIEWS = {
    "gradcam": "Grad-CAM of each layout's predicted class",
    "erf": "effective receptive field of the centre unit",
    "attention": "attention from the query point (T stages)",
}
"""What :func:`layout_stages_figure` can draw (its ``what``), each in words for the page's picker.

Examples:
    >>> from analysis import figures
    >>> sorted(figures.LAYOUT_VIEWS)
    ['attention', 'erf', 'gradcam']
"""


def layout_stages_figure(
    views: dict[str, list[LayoutStage]], images: dict[str, np.ndarray | None], what: str = "gradcam"
) -> go.Figure:
    """Every layout (a row) stage by stage (a column): ``what`` of each stage over the image as that layout
    saw it; empty panels where a stage has no attention, the query cell outlined where it has. Each row's
    first subtitle names the class that layout predicts (the class its Grad-CAM explains).

    Args:
        views: :func:`analysis.compare_layouts`'s result.
        images: layout -> the picture as that layout saw it (:func:`analysis.display_image`), or None.
        what: one of :data:`LAYOUT_VIEWS`: ``gradcam``, ``erf`` or ``attention``.

    Returns:
        The figure: one panel per layout and stage.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> models = {"C-C-T-T": analysis.load_model("demo-pre")}
        >>> views = analysis.compare_layouts(models, torch.randn(1, 28, 28))
        >>> figures.layout_stages_figure(views, {"C-C-T-T": None}, what="erf").data[0].type  # no picture
        'heatmap'
    """
    if what not in LAYOUT_VIEWS:
        raise ValueError(f"what must be one of {', '.join(LAYOUT_VIEWS)}, got {what!r}")
    layouts = list(views)
    stages = len(next(iter(views.values())))
    subtitles = [
        f"{layout} {s.stage} ({s.kind})"
        + (f", predicts {s.prediction_name or s.prediction}" if k == 0 else "")
        + (f"<br>{panel_range(getattr(s, what))}" if getattr(s, what) is not None else "")
        for layout in layouts
        for k, s in enumerate(views[layout])
    ]
    drawn = [getattr(s, what) for name in layouts for s in views[name] if getattr(s, what) is not None]
    if not drawn:
        raise ValueError(f"the views hold no {what} maps: compare_layouts(..., views=[{what!r}]) makes them")
    height, width = drawn[0].shape
    title = f"Layouts: {LAYOUT_VIEWS[what]}; {OWN_SCALES}"
    grid = panels(
        len(subtitles),
        cols=stages,
        aspect=height / width,
        title=title,
        subtitles=subtitles,
        max_panel=160,
        matrix=True,
    )
    layout, traces = grid.layout, []
    cells = [s for name in layouts for s in views[name]]
    for cell, axes in zip(cells, grid.axes, strict=True):
        set_ranges(layout, axes, height, width)
        picture = images.get(cell.layout)
        if picture is not None:
            traces.append(image_trace(picture).update(xaxis=axes[0], yaxis=axes[1]))
        values = getattr(cell, what)
        if values is None:
            continue
        opacity = DEFAULT_OPACITY if picture is not None else 1.0
        traces.append(map_trace(values, colorscale=HEAT, opacity=opacity, axes=axes, what=LAYOUT_VIEWS[what]))
        if what == "attention" and cell.query is not None:
            cells = (round(height / cell.stride), round(width / cell.stride))
            traces.append(query_marker(cell.query, cell.stride, grid.cell_px(cells), axes=axes))
    return named(grid.figure(traces), "layout-stages")


def layout_similarity_figure(result: LayoutSimilarity) -> go.Figure:
    """One row per pair of layouts, one column per stage: the linear CKA of that stage in the two.

    Args:
        result: :func:`analysis.layout_similarity`'s result.

    Returns:
        The figure: one heatmap.

    Examples:
        >>> import torch, analysis
        >>> from analysis import figures
        >>> models = {"pre": analysis.load_model("demo-pre"), "post": analysis.load_model("demo-post")}
        >>> alike = analysis.layout_similarity(models, torch.randn(8, 1, 28, 28))
        >>> figures.layout_similarity_figure(alike).data[0].type
        'heatmap'
    """
    pairs = [(i, j) for i in range(len(result.layouts)) for j in range(i + 1, len(result.layouts))]
    rows = [f"{result.layouts[i]} vs {result.layouts[j]}" for i, j in pairs]
    matrix = np.array([[result.matrix[k, i, j] for k in range(len(result.stages))] for i, j in pairs])
    title = f"Linear CKA between the same stage of two layouts ({result.images} images)"
    figure = matrix_figure(matrix, rows, list(result.stages), title=title, what="CKA")
    return named(figure, "layout-similarity")
