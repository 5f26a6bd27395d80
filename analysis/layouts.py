"""The layout study's figures (``layouts.json`` of :mod:`coatnet.layouts`): test accuracy and training loss
against the training-set size per layout, and the paper's view, training loss against test accuracy.
Shared by ``coatnet study-layouts``'s layouts.html, the docs and the app's Layouts page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.subplots import make_subplots

from analysis._common import as_batch, read_summary
from analysis.attention import attention_maps, fuse_heads, query_index, upsample_to_image
from analysis.attributions import gradcam_stages
from analysis.cka import cka
from analysis.plots import (
    DEFAULT_OPACITY,
    HEAT,
    chart,
    image_trace,
    map_trace,
    matrix_figure,
    panels,
    query_marker,
    set_ranges,
)
from analysis.receptive_field import receptive_fields
from analysis.report import Section
from coatnet.model import CoAtNet

COLOURS = {
    "C-C-C-C": "#4c78a8", "C-C-C-T": "#72b7b2", "C-C-T-T": "#54a24b", "C-T-T-T": "#f58518",
    "ViT_REL": "#e45756",
}  # fmt: skip
SHIPPED = Path(__file__).resolve().parent / "studies" / "layouts" / "layouts.json"


def load_layouts(spec: str | Path | None = None) -> dict:
    """A layout study: the shipped one (None), a folder written by ``coatnet study-layouts`` or its
    layouts.json.

    Raises:
        ValueError: nothing readable there, with what to give instead.
    """
    path = SHIPPED if spec is None else Path(str(spec)).expanduser()
    return read_summary(
        path, "layouts.json", named=str(spec), what="layout study",
        give="a folder written by coatnet study-layouts", keys=("runs",),
    )  # fmt: skip


def _series(study: dict) -> dict[str, list[dict]]:
    by_layout: dict[str, list[dict]] = {}
    for run in study["runs"]:
        by_layout.setdefault(run["layout"], []).append(run)
    return {k: sorted(v, key=lambda r: r["size"]) for k, v in by_layout.items()}


def size_figure(study: dict) -> go.Figure:
    """Test top-1 and the final training loss (clean training subset) against the training-set size, one
    line per layout, log-scaled sizes."""
    figure = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.14,
        subplot_titles=("test top-1 (%)", "training loss, clean training subset"),
    )  # fmt: skip
    for layout, runs in _series(study).items():
        sizes = [r["size"] for r in runs]
        colour = COLOURS.get(layout, "#888")
        for col, key, scale in ((1, "test_top1", 100.0), (2, "train_loss", 1.0)):
            figure.add_trace(
                go.Scatter(
                    x=sizes, y=[r[key] * scale for r in runs], name=layout, mode="lines+markers",
                    line={"color": colour}, legendgroup=layout, showlegend=col == 1,
                    hovertemplate=f"{layout}<br>%{{x}} images: %{{y:.4f}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    sizes = sorted({r["size"] for r in study["runs"]})
    figure.update_xaxes(
        type="log", title_text="training images", tickvals=sizes, ticktext=list(map(_short, sizes))
    )
    figure.update_annotations(font_size=12)
    steps = study["settings"]["steps"]
    legend = {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"}
    return chart(
        figure, f"Layouts: {steps} optimizer steps at every training-set size", height=420, subtitle_lines=1,
        bottom=90, legend=legend,
    )  # fmt: skip


def gap_figure(study: dict) -> go.Figure:
    """The paper's view (its Figure 1): final training loss against test accuracy, one line per layout
    through its sizes (larger markers for more training images: labels would collide where two sizes
    land close); a layout further up and left reaches more accuracy for the same fit."""
    sizes = sorted({r["size"] for r in study["runs"]})
    marker = {size: 7 + 5 * k for k, size in enumerate(sizes)}
    figure = go.Figure()
    for layout, runs in _series(study).items():
        figure.add_trace(
            go.Scatter(
                x=[r["train_loss"] for r in runs], y=[100 * r["test_top1"] for r in runs], name=layout,
                mode="lines+markers", customdata=[_short(r["size"]) for r in runs],
                marker={"size": [marker[r["size"]] for r in runs]},
                line={"color": COLOURS.get(layout, "#888")},
                hovertemplate=f"{layout}<br>%{{customdata}} images<br>loss %{{x:.4f}}, "
                "top-1 %{y:.2f}%<extra></extra>",
            )
        )  # fmt: skip
    legend = {"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"}
    scale = ", ".join(map(_short, sizes))
    return chart(
        figure, f"Training loss against test accuracy (markers grow with the training images: {scale})",
        height=440, bottom=90, xaxis_title="final training loss (clean training subset)",
        yaxis_title="test top-1 (%)", legend=legend,
    )  # fmt: skip


def _short(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


def table(study: dict) -> str:
    """The runs as a markdown table: layout, parameters, MACs, and per size the training loss and the
    test top-1."""
    series = _series(study)
    sizes = sorted({r["size"] for r in study["runs"]})
    head = "| layout | parameters | MACs | " + " | ".join(f"{_short(s)}: loss / top-1" for s in sizes) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(sizes)]
    for layout, runs in series.items():
        by_size = {r["size"]: r for r in runs}
        cells = [
            f"{by_size[s]['train_loss']:.3f} / {100 * by_size[s]['test_top1']:.2f}%" if s in by_size else ""
            for s in sizes
        ]
        first = runs[0]
        lines.append(
            f"| {layout} | {first['parameters'] / 1e3:.0f}k | {first['macs'] / 1e6:.1f}M | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def layout_sections(study: dict) -> list[Section]:
    """The sections of layouts.html."""
    settings = study["settings"]
    return [
        Section(
            "The layout study",
            f"{len(study['runs'])} runs on {settings['data']}: every layout trained for {settings['steps']} "
            f"steps of {settings['batch_size']} images at each size "
            f"({', '.join(map(str, settings['sizes']))}); "
            f"{study.get('wall_s', '?')} s of training in all on {study.get('device', '?')}.",
            figures=[size_figure(study), gap_figure(study)],
        )
    ]


@dataclass(frozen=True)
class LayoutStage:
    """One stage of one layout's model on one image.

    Attributes:
        layout: ``C-C-T-T`` ..; stage: ``S0`` .. ``S4``; kind: ``conv``, ``patch``, ``C`` or ``T``.
        gradcam: (H, W) Grad-CAM of the model's predicted class at this stage's output.
        erf: (H, W) the effective receptive field of the stage's centre unit (sums to 1).
        attention: (H, W) for T stages, the heads' mean attention of the stage's last block from the query
            cell holding ``point``, repeated over each cell's pixels; None for other stages.
        query: that query cell (row, col) on the stage's grid, for T stages; None for others.
        stride: input pixels per cell of the stage's grid.
        prediction: the model's predicted class for the image (the class its Grad-CAM explains), and
            prediction_name its name from the checkpoint (None without one).
    """

    layout: str
    stage: str
    kind: str
    gradcam: np.ndarray
    erf: np.ndarray
    attention: np.ndarray | None
    query: tuple[int, int] | None
    stride: float
    prediction: int
    prediction_name: str | None


def compare_layouts(
    models: dict[str, CoAtNet], image: torch.Tensor | Image.Image, *, point: tuple[float, float] | None = None
) -> dict[str, list[LayoutStage]]:
    """One image through every layout's model, stage by stage (the models must take the same input size).

    Args:
        models: layout name -> model.
        image: one preprocessed (C, H, W) / (1, C, H, W) image, or a PIL image (each model prepares it).
        point: the query's input pixel (y, x) for the attention maps; default the image's centre.
    """
    out = {}
    for layout, model in models.items():
        batch = as_batch(image, model)
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        centre = point if point is not None else ((size[0] - 1) / 2, (size[1] - 1) / 2)
        cams = gradcam_stages(model, batch)
        fields = receptive_fields(model, batch)
        maps = attention_maps(model, batch)
        last = {}
        for block in maps.blocks:  # the last block of each stage
            last[f"S{block.stage}"] = block
        stages = []
        for info, cam, field in zip(model.stage_info(size), cams, fields.stages, strict=True):
            block = last.get(info.name)
            attention = cell = None
            if block is not None:
                query = query_index(block.grid, block.stride, *centre)
                cell = divmod(query, block.grid[1])
                grid = fuse_heads(block.effective[0, :, query].reshape(-1, *block.grid))
                attention = upsample_to_image(grid, size)
            stages.append(
                LayoutStage(
                    layout=layout, stage=info.name, kind=info.kind, gradcam=cam.map, erf=field.effective,
                    attention=attention, query=cell, stride=size[0] / info.grid[0], prediction=cam.target,
                    prediction_name=cam.target_name,
                )
            )  # fmt: skip
        out[layout] = stages
    return out


@dataclass(frozen=True)
class LayoutSimilarity:
    """Linear CKA between the same stage of different layouts over the same images.

    Attributes:
        layouts: the layouts compared, in order; stages: ``S0`` .. ``S4`` and ``pre_logits``.
        matrix: (stages, layouts, layouts), 1 on each diagonal.
        images: how many images.
    """

    layouts: tuple[str, ...]
    stages: tuple[str, ...]
    matrix: np.ndarray
    images: int


def layout_similarity(models: dict[str, CoAtNet], images) -> LayoutSimilarity:
    """:func:`analysis.cka` of every pair of layouts (each model prepares the images itself), the same
    stage of each compared."""
    names = list(models)
    stages: tuple[str, ...] | None = None
    matrix = None
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            found = cka(models[a], images, other=models[names[j]])
            if matrix is None:
                stages = tuple(found.names_a)
                matrix = np.ones((len(stages), len(names), len(names)))
            diagonal = np.diagonal(np.asarray(found.matrix))
            matrix[:, i, j] = matrix[:, j, i] = diagonal
    if matrix is None:
        raise ValueError("give at least two layouts to compare")
    count = len(images) if not isinstance(images, torch.Tensor) else int(images.shape[0])
    return LayoutSimilarity(tuple(names), stages, matrix, count)


WHAT = {
    "gradcam": "Grad-CAM of each layout's predicted class",
    "erf": "effective receptive field of the centre unit",
    "attention": "attention from the query point (T stages)",
}


def layout_stages_figure(
    views: dict[str, list[LayoutStage]], images: dict[str, np.ndarray | None], what: str = "gradcam"
) -> go.Figure:
    """Every layout (a row) stage by stage (a column): ``what`` of each stage over the image as that layout
    saw it; empty panels where a stage has no attention, the query cell outlined where it has. Each row's
    first subtitle names the class that layout predicts (the class its Grad-CAM explains)."""
    if what not in WHAT:
        raise ValueError(f"what must be one of {', '.join(WHAT)}, got {what!r}")
    layouts = list(views)
    stages = len(next(iter(views.values())))
    subtitles = [
        f"{layout} {s.stage} ({s.kind})"
        + (f", predicts {s.prediction_name or s.prediction}" if k == 0 else "")
        for layout in layouts
        for k, s in enumerate(views[layout])
    ]
    first = views[layouts[0]][0]
    height, width = first.gradcam.shape
    grid = panels(len(subtitles), cols=stages, aspect=height / width, title=f"Layouts: {WHAT[what]}",
                  subtitles=subtitles, max_panel=160)  # fmt: skip
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
        traces.append(map_trace(values, colorscale=HEAT, opacity=opacity, axes=axes, what=WHAT[what]))
        if what == "attention" and cell.query is not None:
            cells = (round(height / cell.stride), round(width / cell.stride))
            traces.append(query_marker(cell.query, cell.stride, grid.cell_px(cells), axes=axes))
    return go.Figure({"data": [t.to_plotly_json() for t in traces], "layout": layout})


def layout_similarity_figure(result: LayoutSimilarity) -> go.Figure:
    """One row per pair of layouts, one column per stage: the linear CKA of that stage in the two."""
    pairs = [(i, j) for i in range(len(result.layouts)) for j in range(i + 1, len(result.layouts))]
    rows = [f"{result.layouts[i]} vs {result.layouts[j]}" for i, j in pairs]
    matrix = np.array([[result.matrix[k, i, j] for k in range(len(result.stages))] for i, j in pairs])
    title = f"Linear CKA between the same stage of two layouts ({result.images} images)"
    return matrix_figure(matrix, rows, list(result.stages), title=title, what="CKA")
