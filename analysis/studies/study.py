"""Dataset-scale studies: what each head, bias and block contributes, measured over many images.

A study runs a model over a dataset in fixed batches and keeps, per image:

- the baseline: the true class's logit, the cross-entropy loss, whether the top-1 is right, from the
  model as ``coatnet eval`` runs it (its inference build, the same batches): the study's top-1 is
  ``coatnet eval``'s on the same images;
- for every intervention of the plan (:func:`study_plan`: every head of every attention block knocked
  out alone; per attention block ``content_only``, ``bias_only``, ``uniform``, ``swap_normalization``;
  per MBConv block ``zero_branch`` and ``no_se``): whether the top-1 is right and the true class's logit
  drop. Each runs from its block on, from the activation entering the block (computed once per batch),
  many interventions stacked in one batch (each on its own copy of the images, ``rows``);
- per head: mean attention distance in input pixels and entropy of the effective weights, of the content
  alone (``softmax(C)``) and of the bias alone (``softmax(w)`` pre, ``1/N + w`` post), and the position
  share, with the convention of :mod:`analysis.maps.statistics` (post-normalization weights clipped at 0 and
  renormalised per query);
- per stage S0..S4: the mean |activation|; and, summed over images, the effective receptive field of the
  centre unit (each image's map normalised to 1 first) and the log-amplitude frequency profile.

:func:`measure_batch` computes one batch; :func:`summarise` turns the per-image arrays of all batches
(concatenated in dataset order) into the study's summary. The command, resuming and torchrun shards are
in :mod:`analysis.cli.study`.

Cost model (N images, K interventions, P_k the share of the model's MACs from intervention k's block to
the end): a baseline pass, a recorded pass and a receptive-field pass (a forward and five input
gradients) per image, plus ``sum_k P_k`` forward passes per image for the interventions, instead of K
full passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from analysis.core.geometry import BlockRef, attention_blocks
from analysis.core.running import call_model
from analysis.core.summaries import read_summary
from analysis.explain.faithfulness import RANDOM_SEEDS, SCORES, explanation_maps, explanation_scores
from analysis.explain.registry import explainer, method_rows
from analysis.maps.attention import recorded_pass
from analysis.maps.frequency import log_amplitude_profile
from analysis.maps.receptive_field import mass_sides, receptive_fields
from analysis.maps.statistics import clipped_renormalised, entropy, mean_distance, position_share
from analysis.studies.summaries import Study
from coatnet.model.interventions import INTERVENTION_KINDS, Intervention, intervene
from coatnet.model.network import CoAtNet

# what a study runs once per block (a knockout runs once per head)
ATTENTION_STUDY_KINDS = tuple(
    k.name for k in INTERVENTION_KINDS if k.acts_on == "attention" and not k.per_head
)
CONV_STUDY_KINDS = tuple(k.name for k in INTERVENTION_KINDS if k.acts_on == "conv" and not k.per_head)
PARTS = ("effective", "content", "bias")
HEAD_METRICS = (
    tuple(f"distance_{p}" for p in PARTS) + tuple(f"entropy_{p}" for p in PARTS) + ("position_share",)
)
STAGES = ("S0", "S1", "S2", "S3", "S4")
# what a study's numbers mean, in words (study.json's ``conventions``)
CONVENTIONS = {
    "accuracy": "fractions in [0, 1], as coatnet eval --json writes them",
    "mean_logit_drop": "the true class's logit without minus with the intervention, averaged",
    "post": "post-normalization weights clipped at 0 and renormalised per query for distances and "
    "entropies; the bias alone is 1/N + w there, softmax(w) under pre-normalization",
    "swap_normalization": "an untrained combination: the weights run in the other normalization",
    "bias_only": "softmax(w) is renormalised over each query's keys: a convolution only away from "
    "the borders",
}


@dataclass(frozen=True)
class StudyPlan:
    """What a study measures on one model at one input size.

    Attributes:
        interventions: in the order of study.json's list; each covers all rows (the study stacks them).
        positions: for each intervention, the index of its block in ``model.block_names()``.
        heads: the attention blocks, in forward order (their heads are the study's heads).
        image_size: the input (H, W).
        faithfulness: the (method, stage) rows whose faithfulness is measured
            (:func:`analysis.explain.registry.method_rows`: every method of :func:`analysis.explainers`, or
            those chosen and the random map), or none.
    """

    interventions: tuple[Intervention, ...]
    positions: tuple[int, ...]
    heads: tuple[BlockRef, ...]
    image_size: tuple[int, int]
    faithfulness: tuple[tuple[str, str | None], ...] = ()

    @property
    def head_names(self) -> list[tuple[str, int]]:
        return [(ref.name, h) for ref in self.heads for h in range(ref.attention.heads)]


def study_plan(
    model: CoAtNet, image_size: tuple[int, int], *, faithfulness: bool = False,
    methods: Sequence[str] | None = None, interventions: bool = True,
) -> StudyPlan:  # fmt: skip
    """The interventions and heads of a study of ``model`` (see the module's docstring), and with
    ``faithfulness`` the explanation methods whose faithfulness it measures: every method of
    :func:`analysis.explainers`, or only ``methods`` and the random map (the floor the others are
    compared with). With ``interventions=False``, none: the heads, the stages and faithfulness alone.
    An unknown method, or one that reads attention on a model without any, raises ValueError."""
    names = model.block_names()
    refs = attention_blocks(model, image_size)
    rows = tuple(method_rows(model)) if faithfulness else ()
    if faithfulness and methods is not None:
        for method in methods:
            if explainer(method).needs_attention and not refs:  # an unknown name raises here
                raise ValueError(f"{method} reads attention, and this model has no attention block")
        rows = tuple(r for r in rows if r[0] in methods or explainer(r[0]).baseline)
    if not interventions:
        return StudyPlan((), (), tuple(refs), (int(image_size[0]), int(image_size[1])), rows)
    items = []
    for name, block in zip(names, (b for stage in model.stages for b in stage.blocks), strict=True):
        convs = (
            block.convs()
        )  # an MBConv or ConvNeXt block, a MaxViT's conv; a parallel block's two take none
        if len(convs) == 1:
            items += [Intervention(name, kind) for kind in CONV_STUDY_KINDS if kind in convs[0][1].conv_kinds]
        for ref in (r for r in refs if r.base == name):  # its attention, or a MaxViT's block and grid
            items += [Intervention(ref.name, "knockout", heads=(h,)) for h in range(ref.attention.heads)]
            items += [Intervention(ref.name, kind) for kind in ATTENTION_STUDY_KINDS]
    positions = tuple(names.index(i.base) for i in items)
    return StudyPlan(tuple(items), positions, tuple(refs), (int(image_size[0]), int(image_size[1])), rows)


@torch.no_grad()
def measure_batch(
    model: CoAtNet, runner: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, plan: StudyPlan, *,
    max_rows: int = 64, autocast=None, slice_images: int = 64, faithfulness_images: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The per-image measurements of one batch (see the module's docstring).

    Args:
        model: the plain model (recorded and gradient passes run through a call of its own).
        runner: what ``coatnet eval`` runs (``coatnet.for_inference(model)``): the baseline and the
            interventions.
        x: the normalised (B, C, H, W) batch on the model's device; labels: (B,).
        plan: :func:`study_plan` of the model.
        max_rows: the most rows of one intervention pass (64 measured fastest per image on a 2-core CPU,
            where per-image cost grows with the batch; a GPU wants thousands).
        autocast: a context factory for the logits passes (bf16 on CUDA, as ``coatnet eval``).
        slice_images: the most images in one recorded or gradient pass (memory).
        faithfulness_images: with ``plan.faithfulness``, how many leading images of the batch have the
            faithfulness of every explanation measured (:mod:`analysis.faithfulness`).
        progress: called with (images done, of) as the faithfulness measurements go.

    Returns:
        Arrays keyed by name: per image ``labels``, ``loss``, ``correct``, ``true_logit``, ``abs_mean``
        (B, 5), ``heads`` (B, heads, 7: :data:`HEAD_METRICS`); per intervention and image
        ``intervention_correct`` and ``intervention_drop`` (K, B); summed over the batch ``erf_S0`` ..
        ``erf_S4`` (H, W) and ``freq_S0`` .. ``freq_S4``; with ``plan.faithfulness``, per measured image
        ``faith_scores`` (F, rows, 4: :data:`analysis.explain.faithfulness.SCORES`, random averaged over its
        seeds) and ``faith_random`` (F, seeds, 4).
    """
    autocast = autocast or nullcontext
    labels = labels.to(x.device)
    out: dict[str, np.ndarray] = {"labels": labels.cpu().numpy()}
    with torch.inference_mode(), autocast():
        logits = runner(x).float()
    true_logit = logits.gather(1, labels[:, None])[:, 0]
    out["loss"] = F.cross_entropy(logits, labels, reduction="none").cpu().numpy()
    out["correct"] = (logits.argmax(1) == labels).cpu().numpy()
    out["true_logit"] = true_logit.cpu().numpy()
    out.update(_interventions(runner, x, labels, true_logit, plan, max_rows, autocast))
    # the recorded and gradient passes keep (B, heads, N, N) maps and a whole autograd graph: in slices
    # of at most ``slice_images`` images, so a batch of 256 at 224 px stays within memory
    pieces = [slice(i, i + slice_images) for i in range(0, x.shape[0], slice_images)]
    out["heads"] = np.concatenate([_head_metrics(model, x[p], plan) for p in pieces])
    stages = [_stage_metrics(model, x[p]) for p in pieces]
    out["abs_mean"] = np.concatenate([s.pop("abs_mean") for s in stages])
    out.update({key: sum(s[key] for s in stages) for key in stages[0]})
    if plan.faithfulness:
        count = min(faithfulness_images, x.shape[0])
        targets = logits[:count].argmax(1).tolist()
        out.update(_faithfulness(model, runner, x[:count], targets, plan, max_rows, autocast, progress))
    return out


def _faithfulness(model, runner, x, targets, plan, max_rows, autocast, progress) -> dict[str, np.ndarray]:
    """(F, rows, 4) scores of every explanation of each image (random: the mean over its seeds) and
    (F, seeds, 4) of the random maps alone."""
    rows = list(plan.faithfulness)
    scores = np.zeros((x.shape[0], len(rows), len(SCORES)), dtype=np.float32)
    random = np.zeros((x.shape[0], len(RANDOM_SEEDS), len(SCORES)), dtype=np.float32)
    for i in range(x.shape[0]):
        # one image at a time, as analysis.faithfulness makes its maps: a batched gradient pass rounds
        # differently, and ROAD's percentile thresholds can turn a difference of 1e-7 into another pixel
        (explanations,) = explanation_maps(model, x[i : i + 1], targets[i : i + 1], rows=rows)
        found = explanation_scores(
            model, x[i], targets[i], explanations, runner=runner, max_rows=max_rows, autocast=autocast
        )
        values = np.array([[f[key] for key in SCORES] for f in found], dtype=np.float32)
        is_random = np.array([explainer(e.method).baseline for e in explanations])
        random[i] = values[is_random]
        others = iter(values[~is_random])
        scores[i] = [random[i].mean(0) if explainer(m).baseline else next(others) for m, _ in rows]
        if progress is not None:
            progress(i + 1, x.shape[0])
    return {"faith_scores": scores, "faith_random": random}


def _interventions(runner, x, labels, true_logit, plan, max_rows, autocast) -> dict[str, np.ndarray]:
    """Every intervention of the plan on every image: per block, the activation entering it once, then
    passes of at most ``max_rows`` rows, each stacking copies of a slice of the images with one
    intervention per copy (on a CPU, per-image cost grows with the batch: small passes run faster)."""
    batch = x.shape[0]
    k = len(plan.interventions)
    correct = np.zeros((k, batch), dtype=bool)
    drop = np.zeros((k, batch), dtype=np.float32)
    piece = min(batch, max_rows)  # images per slice
    per_pass = max(1, max_rows // piece)  # interventions per pass
    by_position: dict[int, list[int]] = {}
    for index, position in enumerate(plan.positions):
        by_position.setdefault(position, []).append(index)
    with torch.inference_mode(), autocast():
        for position, indices in sorted(by_position.items()):
            entering = runner.forward_to(x, position)
            for first in range(0, batch, piece):
                rows = slice(first, min(batch, first + piece))
                part, size = entering[rows], min(batch, first + piece) - first
                for start in range(0, len(indices), per_pass):
                    chosen = indices[start : start + per_pass]
                    items = [
                        replace(plan.interventions[i], rows=(j * size, (j + 1) * size))
                        for j, i in enumerate(chosen)
                    ]
                    with intervene(*items):
                        logits = runner.forward_from(part.repeat(len(chosen), 1, 1, 1), position)
                    logits = logits.float().view(len(chosen), size, -1)
                    for j, i in enumerate(chosen):
                        correct[i, rows] = (logits[j].argmax(1) == labels[rows]).cpu().numpy()
                        drop[i, rows] = (
                            (true_logit[rows] - logits[j].gather(1, labels[rows, None])[:, 0]).cpu().numpy()
                        )
    return {"intervention_correct": correct, "intervention_drop": drop}


def _head_metrics(model: CoAtNet, x: torch.Tensor, plan: StudyPlan) -> np.ndarray:
    """(B, heads, 7) per image: distances and entropies of the effective, content and bias weights, and
    the position share, each averaged over queries (queries where a value is undefined left out)."""
    if not plan.heads:
        return np.zeros((x.shape[0], 0, len(HEAD_METRICS)), dtype=np.float32)
    maps, _ = recorded_pass(model, x.float(), blocks=[ref.name for ref in plan.heads])
    columns = []
    for block in maps.blocks:
        n = block.keys  # the keys a query sees: the grid, or its window
        if block.mode == "pre":
            weights = {
                "effective": block.effective.astype(np.float64),
                "content": block.content.astype(np.float64),
                "bias": np.broadcast_to(block.bias_softmax.astype(np.float64), block.effective.shape),
            }
            share = position_share(block.bias, block.content_logits)
        else:
            weights = {
                "effective": clipped_renormalised(block.effective),
                "content": block.content.astype(np.float64),
                "bias": np.broadcast_to(clipped_renormalised(block.bias + 1.0 / n), block.effective.shape),
            }
            share = position_share(block.bias, block.content)
        values = [mean_distance(weights[p], block.grid, block.stride, block.positions) for p in PARTS]
        values += [entropy(weights[p]) for p in PARTS]
        values.append(share)
        columns.append(np.stack([_query_mean(v, block.windows) for v in values], axis=-1))  # (B, heads, 7)
    return np.concatenate(columns, axis=1).astype(np.float32)


def _query_mean(values: np.ndarray, windows: int = 1) -> np.ndarray:
    """(B * windows, heads, n) -> (B, heads): the mean over the queries of every window where the value is
    defined."""
    values = values.reshape(-1, windows, *values.shape[1:]).swapaxes(1, 2)  # (B, heads, windows, n)
    values = values.reshape(*values.shape[:2], -1)
    defined = ~np.isnan(values)
    count = defined.sum(-1)
    total = np.where(defined, values, 0.0).sum(-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _stage_metrics(model: CoAtNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean |activation| per image and stage; per stage, the sum over images of each image's normalised
    effective receptive field (centre unit) and of its frequency profile."""
    out: dict[str, np.ndarray] = {}
    with call_model(model, private=True) as own, torch.inference_mode(False), torch.enable_grad():
        inputs = x.detach().float().clone().requires_grad_(True)
        _, stages = own.forward_intermediates(inputs)
        out["abs_mean"] = torch.stack([s.detach().abs().mean((1, 2, 3)) for s in stages], 1).cpu().numpy()
        for i, (name, stage) in enumerate(zip(STAGES, stages, strict=True)):
            cy, cx = stage.shape[-2] // 2, stage.shape[-1] // 2
            (grad,) = torch.autograd.grad(
                stage[..., cy, cx].sum(), inputs, retain_graph=i < len(stages) - 1, allow_unused=True
            )
            if grad is None:
                grad = torch.zeros_like(inputs)
            mass = grad.abs().sum(1)  # (B, H, W)
            total = mass.sum((1, 2), keepdim=True)
            out[f"erf_{name}"] = torch.where(total > 0, mass / total, mass).sum(0).cpu().numpy()
            _, profile = log_amplitude_profile(stage.detach())
            out[f"freq_{name}"] = profile * stage.shape[0]
    return out


def summarise(model: CoAtNet, plan: StudyPlan, arrays: dict[str, np.ndarray]) -> dict:
    """The study's summary (study.json's ``baseline``, ``interventions``, ``heads``, ``stages``) from the
    per-image arrays of every batch, concatenated in dataset order (sums for ``erf_*`` and ``freq_*``)."""
    n = int(arrays["labels"].shape[0])
    top1 = float(arrays["correct"].mean()) if n else math.nan
    interventions = []
    for k, item in enumerate(plan.interventions):
        row_top1 = float(arrays["intervention_correct"][k].mean()) if n else math.nan
        interventions.append(
            {
                "block": item.block,
                "heads": list(item.heads) if item.heads is not None else _all_heads(plan, item.block),
                "kind": item.kind,
                "label": item.label,
                "untrained": item.untrained,
                "top1": row_top1,
                "delta_top1": row_top1 - top1,
                "mean_logit_drop": float(arrays["intervention_drop"][k].astype(np.float64).mean()),
            }
        )
    heads = []
    values = arrays["heads"].astype(np.float64)
    for j, (block, head) in enumerate(plan.head_names):
        column = values[:, j]
        entry = {"block": block, "head": head}
        for metric, key in (("distance", "mean_distance_px"), ("entropy", "entropy")):
            entry[key] = {p: _mean_std(column[:, HEAD_METRICS.index(f"{metric}_{p}")]) for p in PARTS}
        entry["position_share"] = _mean_std(column[:, -1])
        heads.append(entry)
    return {
        "baseline": {
            "top1": top1,
            "loss": float(arrays["loss"].astype(np.float64).mean()),
            "n_images": n,
        },
        "interventions": interventions,
        "heads": heads,
        "stages": _stages(model, plan, arrays, n),
        **({"faithfulness": _faithfulness_summary(plan, arrays)} if plan.faithfulness else {}),
    }


def _faithfulness_summary(plan: StudyPlan, arrays: dict[str, np.ndarray]) -> list[dict]:
    """study.json's ``faithfulness``: per (method, stage) the mean of each score over the measured images,
    its standard deviation over them, and for the random map the (min, max) of the means over seeds."""
    scores = arrays["faith_scores"].astype(np.float64)  # (F, rows, 4)
    count = int(scores.shape[0])
    out = []
    for j, (method, stage) in enumerate(plan.faithfulness):
        entry: dict = {"method": method, "stage": stage}
        means = {key: float(scores[:, j, k].mean()) if count else math.nan for k, key in enumerate(SCORES)}
        entry.update(means)
        entry["road"] = (means["road_lerf"] - means["road_morf"]) / 2
        entry["n_images"] = count
        entry["std"] = {
            key: float(scores[:, j, k].std()) if count else math.nan for k, key in enumerate(SCORES)
        }
        if explainer(method).baseline:
            per_seed = arrays["faith_random"].astype(np.float64).mean(0)  # (seeds, 4)
            entry["seeds"] = list(RANDOM_SEEDS)
            columns = {key: per_seed[:, k] for k, key in enumerate(SCORES)}
            columns["road"] = (columns["road_lerf"] - columns["road_morf"]) / 2
            entry["seed_range"] = {
                key: [float(v.min()), float(v.max())] if count else None for key, v in columns.items()
            }
        out.append(entry)
    return out


def _all_heads(plan: StudyPlan, block: str) -> list[int]:
    for ref in plan.heads:
        if ref.name == block:
            return list(range(ref.attention.heads))
    return []


def _mean_std(values: np.ndarray) -> dict[str, float]:
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(defined.mean()), "std": float(defined.std())}


def _stages(model: CoAtNet, plan: StudyPlan, arrays: dict[str, np.ndarray], n: int) -> list[dict]:
    fields = receptive_fields(
        model, torch.zeros(1, model.config.in_chans, *plan.image_size, device=next(model.parameters()).device)
    )
    infos = model.stage_info(plan.image_size)
    stages = []
    for s, name in enumerate(STAGES):
        erf = arrays[f"erf_{name}"] / max(n, 1)
        centre = fields.stages[s].centre
        freq = arrays[f"freq_{name}"] / max(n, 1)
        stages.append(
            {
                "stage": name,
                "kind": infos[s].kind,
                "grid": list(infos[s].grid),
                "mean_abs_activation": _mean_std(arrays["abs_mean"][:, s].astype(np.float64)),
                "erf_side_50_px": mass_sides(erf, centre, (0.5,))[0.5] if n else None,
                "frequency_profile": [float(v) for v in freq],
                "high_frequency_delta": float(freq[-1] - freq[0]),
            }
        )
    return stages


def concatenate(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of several batches as one: per-image arrays joined along the images (axis 1 for the
    (K, B) intervention arrays), the ``erf_*`` / ``freq_*`` sums added, in the order given."""
    out: dict[str, np.ndarray] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key.startswith(("erf_", "freq_")):
            total = np.zeros_like(values[0], dtype=np.float64)
            for v in values:
                total = total + v
            out[key] = total
        elif key.startswith("intervention_"):
            out[key] = np.concatenate(values, axis=1)
        else:
            out[key] = np.concatenate(values, axis=0)
    return out


STUDIES = Path(__file__).resolve().parent / "results"


def shipped_studies() -> list[str]:
    """The names of the studies shipped with the package (``study-demo-pre``, ``study-demo-post``).

    Returns:
        The names.

    Examples:
        >>> import analysis
        >>> "study-demo-pre" in analysis.shipped_studies()
        True
    """
    names = [p.parent.name for p in STUDIES.glob("*/study.json")]
    return sorted(names, key=lambda name: (not name.endswith("-pre"), name))  # the paper's choice first


def load_study(spec: str | Path) -> Study:
    """A study's summary: a shipped study by name, a study folder, or its study.json (a sanity-only
    study, ``coatnet study --sanity-only``, holds ``sanity`` and ``robustness`` but no ``baseline``).

    Args:
        spec: a shipped name (:func:`shipped_studies`), a folder written by ``coatnet study``, or its
            study.json.

    Returns:
        The summary (a :class:`analysis.Study`): the model, the data, the protocol, and each measured part.

    Raises:
        ValueError: nothing readable there, with what to give instead.

    Examples:
        >>> import analysis
        >>> study = analysis.load_study("study-demo-pre")
        >>> study.model, study.baseline is not None, analysis.load_study("sanity-layout-c-c-t-t").baseline
        ('demo-pre', True, None)
    """
    name = str(spec).strip()
    path = STUDIES / name / "study.json" if name in shipped_studies() else Path(name).expanduser()
    give = f"{', '.join(shipped_studies())} or a folder written by coatnet study"
    found = read_summary(path, "study.json", named=name, what="study", give=give, keys=("model",))
    full = "baseline" in found
    keys = ("baseline", "interventions", "heads", "stages") if full else ("sanity", "robustness")
    found = read_summary(path, "study.json", named=name, what="study", give=give, keys=keys)
    return Study.from_json(found, where=str(path))
