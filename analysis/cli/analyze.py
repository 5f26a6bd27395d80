"""``coatnet analyze``: images in, a self-contained ``report.html`` and ``results.json`` out.

Plugged into the ``coatnet`` command line through the ``coatnet.commands`` entry-point group, so the
model library never imports this layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.core.images import ImageError, load_image
from analysis.core.inputs import as_batch, display_image, preprocessing_of
from analysis.core.models import describe, load_model
from analysis.core.query import middle_point, query_index
from analysis.explain.attributions import attributions
from analysis.explain.faithfulness import faithfulness
from analysis.explain.lrp import RULES, lrp
from analysis.explain.registry import explainers
from analysis.explain.relevance import class_relevance
from analysis.explain.sanity import sanity_checks
from analysis.maps.attention import BlockAttention, attention_maps, query_map
from analysis.maps.cka import cka
from analysis.maps.compare import compare
from analysis.maps.frequency import frequency_profile
from analysis.maps.kernels import relative_bias_kernels
from analysis.maps.receptive_field import receptive_fields
from analysis.maps.rollout import attention_rollout
from analysis.maps.statistics import attention_statistics
from analysis.report.html import Section, write_report
from analysis.report.sections import image_section, model_section, models_cka_section
from coatnet.cli.options import (
    add_attention_arg,
    add_command,
    add_compute_args,
    add_model_arg,
    add_renamed,
    hub_answers,
)
from coatnet.devices import resolve_device
from coatnet.weights.checkpoint import class_names

# CKA compares representations across images: with fewer, the unbiased estimate is mostly noise
CKA_MIN_IMAGES = 16


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "analyze", help="images in, an HTML report of how the model sees them out",
        description="Attention, rollout, kernels, receptive fields, attributions... of images with a model "
        "(and optionally compared with a second one); writes OUT/report.html (self-contained, opens "
        "offline), OUT/results.json and results.npz.",
        examples=["coatnet analyze shirt.png --model demo-pre --compare demo-post --out runs/report"],
    )  # fmt: skip
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, WebP, BMP, GIF)")
    add_model_arg(p, default="demo-pre")
    p.add_argument("--compare", metavar="SPEC", help="a second model to compare with (e.g. demo-post)")
    add_attention_arg(p, help="switch --model's normalization (the weights stay; the report says so)")
    p.add_argument("--out", required=True, help="output folder")
    pixel = p.add_argument(
        "--pixel", type=float, nargs=2, metavar=("Y", "X"), help="the query, an input pixel (default: centre)"
    )
    add_renamed(p, "--point", pixel)
    p.add_argument("--stage", default="S3", help="stage for Grad-CAM (S0..S4)")
    p.add_argument(
        "--attributions", nargs="*", choices=[e.name for e in explainers() if e.attribution],
        default=["gradcam"],
        help="pixel attributions per image (default gradcam; integrated_gradients and occlusion cost tens "
        "of seconds an image at 224 on a CPU)",
    )  # fmt: skip
    p.add_argument(
        "--ledger", nargs="*", choices=RULES, default=["attnlrp"], metavar="RULE",
        help="the layer-wise relevance ledger of the explained class per image, under each rule given "
        "(attnlrp, cp; default attnlrp; none with --ledger alone)",
    )  # fmt: skip
    p.add_argument(
        "--explain", metavar="CLASS",
        help="the class whose relevance through the attention blocks is shown (an index or a class name; "
        "default: each image's predicted class)",
    )  # fmt: skip
    p.add_argument(
        "--faithfulness", action="store_true",
        help="also measure how faithful every explanation is per image (deletion, insertion, ROAD; a few "
        "seconds an image at 28 px, minutes at 224 on a CPU)",
    )  # fmt: skip
    p.add_argument(
        "--sanity", action="store_true",
        help="also run the sanity checks per image: every explanation as the model's parts are randomised "
        "(cascading, independent) and for another class (docs/explanations.md; 9 s an image at 28 px)",
    )  # fmt: skip
    add_compute_args(p, device_help="where the models run (default: CUDA when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    for spec in (args.model, args.compare):
        if spec:
            hub_answers(spec)
    model = load_model(args.model, attention=args.attention, device=device)
    other = load_model(args.compare, device=device) if args.compare else None
    pictures, names = [], []
    for path in args.images:
        try:
            pictures.append(load_image(path))
            names.append(Path(path).name)
        except ImageError as error:
            if len(args.images) == 1:  # nothing to skip to: the one line is the image's own
                raise
            print(f"coatnet analyze: skipping {error}", file=sys.stderr)
    if not pictures:
        raise ImageError("none of the images could be read: give PNG, JPEG, WebP, BMP or GIF files")
    args.explain_class = parse_class(args.explain, model)
    batch = as_batch(pictures, model)
    shown = [display_image(x, preprocessing_of(model)) for x in batch]
    pixel = tuple(args.pixel) if args.pixel else None  # --pixel Y X: an input pixel
    sections, results = [], {"model": describe(model), "images": names}
    sections.append(_model_section(model, batch, shown, results))
    bar = tqdm(total=len(pictures), desc="images", unit="img", disable=args.quiet)
    for i, name in enumerate(names):
        sections.append(_image_section(model, other, batch[i : i + 1], shown[i], name, pixel, args, results))
        bar.update()
    bar.close()
    if other is not None and len(pictures) >= CKA_MIN_IMAGES:
        result = cka(model, batch, other=other)
        sections.append(models_cka_section(result))
        results["cka_between_models"] = result
    title = f"coatnet analyze: {describe(model)}" + (f" vs {describe(other)}" if other is not None else "")
    path = write_report(args.out, title, sections, results)
    print(f"wrote {path}, results.json and results.npz in {args.out} ({len(names)} image(s))")
    return 0


def _model_section(model, batch: torch.Tensor, shown: list[np.ndarray], results: dict[str, Any]) -> Section:
    """What belongs to the model rather than one image: kernels, receptive fields, frequency, CKA."""
    kernels = relative_bias_kernels(model)
    fields = receptive_fields(model, batch)
    profile = frequency_profile(model, batch)
    results.update(kernels=kernels, receptive_fields=fields, frequency=profile)
    similarity = cka(model, batch) if len(batch) >= CKA_MIN_IMAGES else None
    if similarity is not None:
        results["cka"] = similarity
    return model_section(
        describe(model), kernels, fields, profile, shown[0], similarity=similarity, images=len(batch),
        cka_min=CKA_MIN_IMAGES,
    )  # fmt: skip


def _image_section(model, other, x, shown, name, pixel, args, results) -> Section:
    maps = attention_maps(model, x)
    stats = attention_statistics(model, x, maps=maps)
    rollout = attention_rollout(model, x, maps=maps)
    names = class_names(model)
    probabilities = torch.from_numpy(maps.logits[0]).softmax(-1)
    top = probabilities.topk(min(5, len(probabilities)))
    predictions = [
        {"class": int(c), "name": names[c] if names else str(int(c)), "probability": float(p)}
        for p, c in zip(top.values, top.indices, strict=True)
    ]
    record: dict[str, Any] = {"predictions": predictions, "statistics": stats, "rollout": rollout}
    queries = {block.name: _query(block, pixel) for block in maps.blocks}
    for block in maps.blocks:
        query = queries[block.name]
        record.setdefault("attention_at_query", {})[block.name] = {  # (heads, H, W): NaN outside a window
            "query": query,
            "effective": query_map(block, query, part="effective"),
            "content": query_map(block, query, part="content"),
        }
    explained = []
    for method in args.attributions:
        explained.append(attributions(model, x, method=method, stage=args.stage))
        record[method] = explained[-1]
    found = []
    target = args.explain_class if args.explain_class is not None else int(probabilities.argmax())
    if maps.blocks:
        relevances = [e.name for e in explainers() if e.needs_attention and e.class_specific]
        found = [class_relevance(model, x, target=target, method=m) for m in relevances]
        record.update({r.method: r for r in found})
    ledgers = [lrp(model, x, target=target, rule=rule) for rule in args.ledger]
    for ledger in ledgers:
        record[f"lrp_{ledger.rule}"] = ledger
    report = faithfulness(model, x) if getattr(args, "faithfulness", False) else None
    if report is not None:
        record["faithfulness"] = report
    checked = sanity_checks(model, x) if getattr(args, "sanity", False) else None
    if checked is not None:
        record["sanity"] = checked
    comparison = compare(model, other, x, pixel=pixel) if other is not None else None
    if comparison is not None:
        record["comparison"] = comparison
    results.setdefault("per_image", {})[name] = record
    return image_section(
        name, shown, predictions=predictions, maps=maps, queries=queries, rollout=rollout, statistics=stats,
        attributions=explained, relevances=found, faithfulness=report, sanity=checked, comparison=comparison,
        ledgers=ledgers,
    )  # fmt: skip


def parse_class(spec: str | None, model) -> int | None:
    """``--explain``: a class index or one of the checkpoint's class names (any case); None for none."""
    if spec is None:
        return None
    classes = model.config.num_classes
    names = list(class_names(model) or [])
    text = spec.strip()
    if text.isdigit() and int(text) < classes:
        return int(text)
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    known = f": one of {', '.join(names)}" if names else ""
    raise ValueError(
        f"--explain {spec!r} is not a class of this model; give an index 0..{classes - 1}{known}"
    )


def _query(block: BlockAttention, pixel: tuple[float, float] | None) -> int:
    size = (block.grid[0] * block.stride, block.grid[1] * block.stride)  # the input the grid tiles
    return query_index(block.grid, block.stride, *(pixel if pixel is not None else middle_point(size)))
