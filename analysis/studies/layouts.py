"""The layout study's analyses: the shipped study (``layouts.json`` of :mod:`coatnet.training.layouts`)
read back, every layout's model stage by stage on one image (Grad-CAM, effective receptive field,
attention from a query cell), and the CKA of every pair of layouts stage by stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.core.inputs import as_batch
from analysis.core.query import middle_point, query_index
from analysis.core.running import call_model
from analysis.core.summaries import read_summary
from analysis.explain.attributions import gradcam_stages
from analysis.maps.attention import attention_maps, fuse_heads, query_map, upsample_to_image
from analysis.maps.cka import cka
from analysis.maps.receptive_field import receptive_fields
from analysis.studies.summaries import LayoutStudy
from coatnet.model.layouts import find_layout
from coatnet.model.network import CoAtNet
from coatnet.weights.checkpoint import class_names

SHIPPED = Path(__file__).resolve().parent / "results" / "layouts" / "layouts.json"


def load_layouts(spec: str | Path | None = None) -> LayoutStudy:
    """A layout study: the shipped one (None), a folder written by ``coatnet study-layouts`` or its
    layouts.json.

    Args:
        spec: None for the shipped study, or a folder or its layouts.json.

    Returns:
        The study (a :class:`analysis.LayoutStudy`): its settings, command, and one record per run
        (layout and training-set size).

    Raises:
        ValueError: nothing readable there, with what to give instead.

    Examples:
        >>> import analysis
        >>> study = analysis.load_layouts()
        >>> study.sizes, study.runs[0].layout
        ([2000, 10000, 60000], 'C-C-C-C')
    """
    path = SHIPPED if spec is None else Path(str(spec)).expanduser()
    found = read_summary(
        path, "layouts.json", named=str(spec), what="layout study",
        give="a folder written by coatnet study-layouts", keys=("runs",),
    )  # fmt: skip
    return LayoutStudy.from_json(found, where=str(path))


@dataclass(frozen=True)
class LayoutStage:
    """One stage of one layout's model on one image (:func:`compare_layouts`).

    Attributes:
        layout: ``C-C-T-T`` ...
        stage: ``S0`` .. ``S4``.
        kind: ``conv``, ``patch``, ``C`` or ``T``.
        gradcam: (H, W) Grad-CAM of the model's predicted class at this stage's output (None where not
            asked for: :func:`compare_layouts`'s ``views``).
        erf: (H, W) the effective receptive field of the stage's centre unit (sums to 1; None where not
            asked for).
        attention: (H, W) for T stages, the heads' mean attention of the stage's last block from the query
            cell holding ``pixel``, repeated over each cell's pixels; None for other stages (and where not
            asked for).
        query: that query cell (row, col) on the stage's grid, for T stages; None for others.
        stride: input pixels per cell of the stage's grid.
        prediction: the model's predicted class for the image (the class its Grad-CAM explains).
        prediction_name: its name from the checkpoint (None without one).

    Examples:
        >>> import torch, analysis
        >>> models = {"C-C-T-T": analysis.load_model("demo-pre")}
        >>> views = analysis.compare_layouts(models, torch.randn(1, 28, 28))
        >>> s3 = views["C-C-T-T"][3]
        >>> s3.stage, s3.kind, s3.query, s3.gradcam.shape
        ('S3', 'T', (3, 3), (28, 28))
    """

    layout: str
    stage: str
    kind: str
    gradcam: np.ndarray | None
    erf: np.ndarray | None
    attention: np.ndarray | None
    query: tuple[int, int] | None
    stride: float
    prediction: int
    prediction_name: str | None


def compare_layouts(
    models: dict[str, CoAtNet],
    image: torch.Tensor | Image.Image,
    *,
    pixel: tuple[float, float] | None = None,
    views: Iterable[str] = ("gradcam", "erf", "attention"),
) -> dict[str, list[LayoutStage]]:
    """One image through every layout's model, stage by stage (the models must take the same input size).

    Args:
        models: layout name -> model.
        image: one preprocessed (C, H, W) / (1, C, H, W) image, or a PIL image (each model prepares it).
        pixel: the query's input pixel (y, x) for the attention maps (continuous, as
            :mod:`analysis.core.query` states); default :func:`analysis.core.query.middle_point`.
        views: which of each stage's maps to compute (``gradcam``, ``erf``, ``attention``); the others are
            None. Each costs its own passes (a gradient per stage for the receptive fields).

    Returns:
        Layout -> one :class:`LayoutStage` per stage, S0 .. S4.

    Examples:
        >>> import torch, analysis
        >>> models = {"C-C-T-T": analysis.load_model("demo-pre")}
        >>> views = analysis.compare_layouts(models, torch.randn(1, 28, 28), pixel=(5.5, 21.5))
        >>> [(s.stage, s.kind, s.query) for s in views["C-C-T-T"]][2:]  # the query in T stages only
        [('S2', 'C', None), ('S3', 'T', (1, 5)), ('S4', 'T', (1, 5))]
        >>> erf = analysis.compare_layouts(models, torch.randn(1, 28, 28), views=["erf"])["C-C-T-T"][3]
        >>> erf.gradcam is None and erf.attention is None and erf.erf.shape
        (28, 28)
    """
    views = set(views)
    if unknown := views - {"gradcam", "erf", "attention"}:
        raise ValueError(f"views are gradcam, erf and attention, not {', '.join(sorted(unknown))}")
    out = {}
    for layout, model in models.items():
        batch = as_batch(image, model)
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        infos = model.stage_info(size)
        if "gradcam" in views:
            cams = gradcam_stages(model, batch)
            target, target_name = cams[0].target, cams[0].target_name
        else:  # the class each row names: the model's prediction
            cams = [None] * len(infos)
            with call_model(model) as own, torch.inference_mode():
                target = int(own(batch).argmax(-1)[0])
            names = class_names(model)
            target_name = names[target] if names else None
        fields = receptive_fields(model, batch).stages if "erf" in views else [None] * len(infos)
        last = {}
        for block in attention_maps(model, batch).blocks if "attention" in views else ():
            last[f"S{block.stage}"] = block  # the last block of each stage
        stages = []
        for info, cam, field in zip(infos, cams, fields, strict=True):
            block = last.get(info.name)
            attention = cell = None
            if block is not None:
                at = pixel if pixel is not None else middle_point(size)
                query = query_index(block.grid, block.stride, *at)
                cell = divmod(query, block.grid[1])
                grid = fuse_heads(np.nan_to_num(query_map(block, query)))  # a window's: 0 where it cannot see
                attention = upsample_to_image(grid, size)
            stages.append(
                LayoutStage(
                    layout=layout, stage=info.name, kind=info.kind, gradcam=None if cam is None else cam.map,
                    erf=None if field is None else field.effective, attention=attention, query=cell,
                    stride=size[0] / info.grid[0], prediction=target, prediction_name=target_name,
                )
            )  # fmt: skip
        out[layout] = stages
    return out


@dataclass(frozen=True)
class LayoutSimilarity:
    """Linear CKA between the same stage of different layouts over the same images
    (:func:`layout_similarity`).

    Attributes:
        layouts: the layouts compared, in order.
        stages: ``S0`` .. ``S4`` and ``pre_logits``.
        matrix: (stages, layouts, layouts), 1 on each diagonal.
        images: how many images.

    Examples:
        >>> import torch, analysis
        >>> models = {name: analysis.load_model(f"layout-{name.lower()}") for name in ("C-C-T-T", "ViT_REL")}
        >>> alike = analysis.layout_similarity(models, torch.randn(8, 1, 28, 28))
        >>> alike.layouts, alike.stages[-1], alike.matrix.shape
        (('C-C-T-T', 'ViT_REL'), 'pre_logits', (6, 2, 2))
    """

    layouts: tuple[str, ...]
    stages: tuple[str, ...]
    matrix: np.ndarray
    images: int


def layout_similarity(models: dict[str, CoAtNet], images) -> LayoutSimilarity:
    """:func:`analysis.cka` of every pair of layouts (each model prepares the images itself), the same
    stage of each compared.

    Args:
        models: layout name -> model; at least two.
        images: a preprocessed (B, C, H, W) batch or PIL images; at least 4.

    Returns:
        :class:`LayoutSimilarity`.

    Examples:
        >>> import numpy as np, torch, analysis
        >>> models = {"pre": analysis.load_model("demo-pre"), "post": analysis.load_model("demo-post")}
        >>> alike = analysis.layout_similarity(models, torch.randn(8, 1, 28, 28))
        >>> alike.layouts, np.allclose(alike.matrix[:, 0, 0], 1)
        (('pre', 'post'), True)
    """
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


def _short(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


def table(study: LayoutStudy) -> str:
    """The runs as a markdown table: layout, parameters, MACs, and per size the training loss and the
    test top-1."""
    sizes = study.sizes
    head = "| layout | parameters | MACs | " + " | ".join(f"{_short(s)}: loss / top-1" for s in sizes) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(sizes)]
    for layout, runs in study.by_layout().items():
        by_size = {r.size: r for r in runs}
        cells = [
            f"{by_size[s].train_loss:.3f} / {100 * by_size[s].test_top1:.2f}%" if s in by_size else ""
            for s in sizes
        ]
        first = runs[0]
        lines.append(
            f"| {layout} | {first.parameters / 1e3:.0f}k | {first.macs / 1e6:.1f}M | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def layout_label(model: str) -> str:
    """``layout-c-c-t-t`` -> ``C-C-T-T``, ``layout-vit-rel`` -> ``ViT_REL`` (the layout study's names).

    Args:
        model: a model's name, as a study or probes.json records it.

    Returns:
        The layout's name; any other name as it is.

    Examples:
        >>> from analysis import figures
        >>> figures.layout_label("layout-c-c-t-t"), figures.layout_label("layout-vit-rel")
        ('C-C-T-T', 'ViT_REL')
    """
    try:
        return find_layout(model).label
    except ValueError:  # not a layout's model
        return model
