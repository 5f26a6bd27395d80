"""Which explanation to trust: perturbation measures of faithfulness, under one pinned protocol.

The protocol (every parameter is a module constant, recorded in each result's ``protocol``):

- **target**: the softmax probability of the class the model predicts for the unmodified image; every
  map explains that class.
- **order**: pixels by decreasing map value, the map at the input's size as drawn (grid maps of rollout
  and relevance repeated over each cell's pixels, Grad-CAM upsampled bilinearly, pixel methods as they
  are); ties broken by a fixed permutation seeded with :data:`TIE_SEED`.
- **deletion** (Petsiuk, Das and Saenko 2018, RISE): the pixels are removed in that order in
  :data:`STEPS` equal steps, all channels of a removed pixel set to the dataset's per-channel mean (0
  after normalization); **insertion**: from the image blurred by a Gaussian of standard deviation
  ``blur_sigma`` (a sixteenth of the shorter side, reflect padding), the original pixels restored in the
  same order and steps. Each curve has ``STEPS + 1`` points over the removed (restored) fraction
  0, 1/16, .., 1; its area is the trapezoid rule over [0, 1]. Deletion: lower is more faithful;
  insertion: higher is.
  The images are made in :mod:`analysis.explain.perturbation`.
- **ROAD** (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution Methods"),
  as pytorch-grad-cam's ``ROADCombined`` computes it: the map min-max normalised to m in [0, 1]; at each
  percentile p of :data:`PERCENTILES`, most-relevant-first (MoRF) removes the pixels with
  ``m >= percentile(m, p)`` and least-relevant-first (LeRF) those with ``1 - m >= percentile(1 - m, p)``;
  the removed pixels are filled by noisy linear imputation (each the weighted mean of its 8 neighbours,
  1/6 for edge and 1/12 for corner neighbours, solved as one sparse system, plus Gaussian noise of
  standard deviation :data:`ROAD_NOISE` drawn from a generator seeded per call). ``road_morf`` and
  ``road_lerf`` are the mean over percentiles of the target's probability after imputation minus before
  (pytorch-grad-cam's differences), ``road = (road_lerf - road_morf) / 2``: higher is more faithful.
  Where every pixel would be removed (a constant map), the image is filled with the dataset mean plus
  the noise (the system has no known pixel to solve from).
- **methods**: every method of :func:`analysis.explainers` (:func:`method_rows`): effective-attention
  rollout (class-agnostic, averaged over queries), class relevance (Chefer et al. 2021),
  gradient-weighted rollout, Grad-CAM at each stage S0..S4, Integrated Gradients (SmoothGrad,
  :func:`analysis.attributions` defaults), occlusion (its defaults), any registered with
  :func:`analysis.register_explainer`, and a random map: a random order per seed of
  :data:`RANDOM_SEEDS`, the curves averaged over the seeds, with their spread.

Examples:
    >>> report = faithfulness(model, image)
    >>> [(r.method, r.stage, round(r.deletion_auc, 3)) for r in report.results]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.explain.perturbation import (
    PERCENTILES,
    ROAD_NOISE,
    STEPS,
    TIE_SEED,
    perturbed_images,
)
from analysis.explain.registry import explainer, method_rows, row_name
from coatnet.model.network import CoAtNet
from coatnet.weights.checkpoint import class_names

RANDOM_SEEDS = (0, 1, 2, 3, 4)
SCORES = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf")


def protocol() -> dict:
    """The pinned protocol's parameters, as results and study.json record them."""
    return {
        "target": "softmax probability of the class predicted for the unmodified image",
        "order": f"decreasing map value at the input size as drawn; ties by a permutation seeded {TIE_SEED}",
        "steps": STEPS,
        "deletion": "removed pixels set to the per-channel dataset mean (0 after normalization)",
        "insertion": "from the image blurred by a Gaussian, sigma = max(1, shorter side / 16) px, reflect",
        "auc": "trapezoid rule over the removed (restored) fraction in [0, 1]",
        "road_percentiles": list(PERCENTILES),
        "road_noise": ROAD_NOISE,
        "road": "(road_lerf - road_morf) / 2; road_* = mean over percentiles of p(imputed) - p(image)",
        "random_seeds": list(RANDOM_SEEDS),
    }


@dataclass(frozen=True)
class Explanation:
    """One method's map of one image, at the input's size as drawn.

    Attributes:
        method: the name of one of :func:`analysis.explainers`.
        stage: Grad-CAM's stage (``S0`` .. ``S4``), else None.
        map: (H, W) float32; larger means more relevant.
        seed: the random map's seed, else None.
        signed: Integrated Gradients' and occlusion's map before its negative part was dropped (their
            ``signed_map``), else None: the other maps have no sign (:attr:`signed_map` is then ``map``).

    Examples:
        >>> import numpy as np
        >>> from analysis import Explanation
        >>> explanation = Explanation("gradcam", "S3", np.ones((28, 28), np.float32))
        >>> explanation.signed_map is explanation.map  # Grad-CAM has no sign
        True
    """

    method: str
    stage: str | None
    map: np.ndarray
    seed: int | None = None
    signed: np.ndarray | None = None

    @property
    def signed_map(self) -> np.ndarray:
        return self.map if self.signed is None else self.signed

    @property
    def name(self) -> str:
        return row_name(self.method, self.stage)


@dataclass(frozen=True)
class Faithfulness:
    """The faithfulness of one method's explanation of one image (random: the mean over seeds).

    Attributes:
        method: the name of one of :func:`analysis.explainers`.
        stage: Grad-CAM's stage (``S0`` .. ``S4``), else None.
        fractions: (STEPS + 1,) the removed (restored) fraction of the pixels, 0 .. 1.
        deletion: (STEPS + 1,) the target's probability as the most relevant pixels are removed.
        insertion: (STEPS + 1,) the target's probability as they are restored.
        deletion_auc: the area under ``deletion`` (lower: more faithful).
        insertion_auc: the area under ``insertion`` (higher: more faithful).
        road_morf_curve: (len(PERCENTILES),) the probability change after imputing the most relevant
            pixels first.
        road_lerf_curve: (len(PERCENTILES),) the same, least relevant first.
        road_morf: the mean of ``road_morf_curve``.
        road_lerf: the mean of ``road_lerf_curve``.
        road: ``(road_lerf - road_morf) / 2`` (higher: more faithful).
        spread: the random map only: per score, the (min, max) over the seeds; else empty.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the fields
        >>> report = analysis.faithfulness(model, torch.randn(3, 32, 32), rows=[("gradcam", "S3")])
        >>> row = report.results[0]
        >>> (row.method, row.stage), row.fractions.shape, 0 <= row.deletion_auc <= 1
        (('gradcam', 'S3'), (17,), True)
    """

    method: str
    stage: str | None
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    road_morf_curve: np.ndarray
    road_lerf_curve: np.ndarray
    road_morf: float
    road_lerf: float
    road: float
    spread: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return row_name(self.method, self.stage)


@dataclass(frozen=True)
class FaithfulnessReport:
    """Every method's faithfulness for one image (:func:`faithfulness`).

    Attributes:
        target: the predicted class (every map explains it).
        target_name: its name, or None.
        probability: its softmax probability for the unmodified image.
        results: one :class:`Faithfulness` per method (and stage), random first.
        protocol: :func:`protocol`: the steps, orders and ROAD settings used.
        image_size: the input (H, W).

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("coatnet_toy")  # random weights: enough for the fields
        >>> report = analysis.faithfulness(model, torch.randn(3, 32, 32), rows=[("gradcam", "S3")])
        >>> report.image_size, "road" in report.protocol, len(report.results)
        ((32, 32), True, 1)
    """

    target: int
    target_name: str | None
    probability: float
    results: tuple[Faithfulness, ...]
    protocol: dict
    image_size: tuple[int, int]


def explanation_maps(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    targets: Sequence[int],
    *,
    rows: Sequence[tuple[str, str | None]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[list[Explanation]]:
    """Every method's map of every image, for the given class of each, at the input's size as drawn
    (each method's record of :func:`analysis.explainers` makes the batch's maps at once).

    Args:
        model: a CoAtNet (analysed as it is, left as found).
        images: a preprocessed batch, an image or PIL images.
        targets: one class per image.
        rows: the (method, stage) rows to make (default :func:`method_rows`); the random map gives one
            map per seed of :data:`RANDOM_SEEDS`.
        progress: called with the share done (0 .. 1) after each method.

    Returns:
        Per image, the explanations in the order of ``rows`` (random: one per seed).
    """
    batch = as_batch(images, model)
    rows = list(method_rows(model) if rows is None else rows)
    count = batch.shape[0]
    targets = [int(t) for t in targets]
    if len(targets) != count:
        raise ValueError(f"give one target per image: {len(targets)} for {count} images")
    records = {method: explainer(method) for method, _ in rows}  # an unknown method raises here
    chosen = torch.tensor(targets, device=batch.device)
    made: dict[tuple[str, str | None], list[list[Explanation]]] = {}  # per row and image (random: per seed)
    for done, (method, record) in enumerate(records.items()):
        if record.baseline:
            seeded = [(s, record.maps(model, batch, chosen, seed=s)) for s in RANDOM_SEEDS]
            made[(method, None)] = [
                [Explanation(method, None, maps[i], s) for s, maps in seeded] for i in range(count)
            ]
        else:
            stages = [stage for m, stage in rows if m == method]
            found = record.at_stages(model, batch, chosen, stages) if record.stages else [
                record.maps(model, batch, chosen)
            ]  # fmt: skip
            for stage, maps in zip(stages, found, strict=True):
                made[(method, stage)] = [[_explanation(record, stage, maps[i])] for i in range(count)]
        if progress is not None:
            progress((done + 1) / len(records))
    out = [[e for row in rows for e in made[row][i]] for i in range(count)]
    if progress is not None:
        progress(1.0)
    return out


def _explanation(record, stage: str | None, values: np.ndarray) -> Explanation:
    """One map as an :class:`Explanation`: a signed method's positive part, its sign kept beside it."""
    values = np.asarray(values, dtype=np.float32)
    if record.signed:
        return Explanation(record.name, stage, np.maximum(values, 0), signed=values)
    return Explanation(record.name, stage, values)


def explanation_scores(
    model: CoAtNet,
    image: torch.Tensor,
    target: int,
    explanations: Sequence[Explanation],
    *,
    runner: torch.nn.Module | None = None,
    max_rows: int = 64,
    autocast=None,
    progress: Callable[[float], None] | None = None,
) -> list[dict]:
    """The curves and scores of each explanation of one normalised (C, H, W) image for ``target``, in
    order: dicts with ``deletion``, ``insertion`` (STEPS + 1,), ``morf``, ``lerf`` (len(PERCENTILES),) and
    the floats of :data:`SCORES` and ``road``.

    Args:
        runner: what runs the perturbed images (default the model; the study passes its inference
            build); max_rows: the most images per forward pass (64 measured fastest per image on a 2-core
            CPU, 30% faster than 256); autocast: a context factory for them.
    """
    stacks, spans = [], []
    for e in explanations:
        parts = perturbed_images(image, e.map, road_seed=0 if e.seed is None else e.seed)
        spans.append([p.shape[0] for p in parts])
        stacks += list(parts)
    probabilities = _probabilities(
        model, runner, torch.cat([image[None], *stacks]), target, max_rows, autocast
    )
    before, probabilities = probabilities[0], probabilities[1:]
    fractions = np.linspace(0.0, 1.0, STEPS + 1)
    out, at = [], 0
    for n_del, n_ins, n_road in spans:
        road = probabilities[at + n_del + n_ins : at + n_del + n_ins + n_road] - before
        curves = {
            "deletion": probabilities[at : at + n_del],
            "insertion": probabilities[at + n_del : at + n_del + n_ins],
            "morf": road[: len(PERCENTILES)],
            "lerf": road[len(PERCENTILES) :],
        }
        at += n_del + n_ins + n_road
        out.append({**curves, **_scores(curves, fractions)})
    return out


def measure(
    model: CoAtNet,
    image: torch.Tensor,
    target: int,
    explanations: Sequence[Explanation],
    **options,
) -> list[Faithfulness]:
    """:func:`explanation_scores` as one :class:`Faithfulness` per (method, stage): the random maps of
    several seeds averaged into one, with the (min, max) of each score over the seeds."""
    scores = explanation_scores(model, image, target, explanations, **options)
    groups: dict[tuple[str, str | None], list[dict]] = {}
    for e, found in zip(explanations, scores, strict=True):
        groups.setdefault((e.method, e.stage), []).append(found)
    fractions = np.linspace(0.0, 1.0, STEPS + 1)
    results = []
    for (method, stage), each in groups.items():
        curves = {
            key: np.mean([s[key] for s in each], axis=0) for key in ("deletion", "insertion", "morf", "lerf")
        }
        mean = {key: float(np.mean([s[key] for s in each])) for key in (*SCORES, "road")}
        spread = (
            {key: (min(s[key] for s in each), max(s[key] for s in each)) for key in (*SCORES, "road")}
            if len(each) > 1
            else {}
        )
        results.append(
            Faithfulness(
                method=method, stage=stage, fractions=fractions, deletion=curves["deletion"],
                insertion=curves["insertion"], deletion_auc=mean["deletion_auc"],
                insertion_auc=mean["insertion_auc"], road_morf_curve=curves["morf"],
                road_lerf_curve=curves["lerf"], road_morf=mean["road_morf"], road_lerf=mean["road_lerf"],
                road=mean["road"], spread=spread,
            )
        )  # fmt: skip
    return results


def faithfulness(
    model: CoAtNet,
    image: torch.Tensor | Image.Image,
    *,
    rows: Sequence[tuple[str, str | None]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> FaithfulnessReport:
    """Every method's faithfulness for one image under the pinned protocol (module docstring).

    Args:
        model: a CoAtNet (analysed as it is, left as it was found).
        image: one image: a (1, C, H, W) or (C, H, W) preprocessed tensor, or a PIL image.
        rows: the (method, stage) rows (default :func:`method_rows`: every method, Grad-CAM at each
            stage).
        progress: called with the share of the work done (0 .. 1).

    Returns:
        A :class:`FaithfulnessReport`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> rows = [("gradcam", "S3"), ("rollout", None)]
        >>> report = analysis.faithfulness(model, torch.randn(1, 28, 28), rows=rows)
        >>> [(r.method, r.stage) for r in report.results]
        [('gradcam', 'S3'), ('rollout', None)]
    """
    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"faithfulness is measured one image at a time; got a batch of {batch.shape[0]}")
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    with call_model(model) as own, torch.inference_mode():
        probabilities = own(batch).float().softmax(-1)[0]
    target = int(probabilities.argmax())
    first = (lambda share: progress(0.4 * share)) if progress is not None else None
    (maps,) = explanation_maps(model, batch, [target], rows=rows, progress=first)
    then = (lambda share: progress(0.4 + 0.6 * share)) if progress is not None else None
    results = measure(model, batch[0], target, maps, progress=then)
    if progress is not None:
        progress(1.0)
    names = class_names(model)
    return FaithfulnessReport(
        target=target,
        target_name=names[target] if names else None,
        probability=float(probabilities[target]),
        results=tuple(results),
        protocol=protocol(),
        image_size=size,
    )


def _scores(curves: dict, fractions: np.ndarray) -> dict[str, float]:
    morf, lerf = float(np.mean(curves["morf"])), float(np.mean(curves["lerf"]))
    return {
        "deletion_auc": _trapezoid(curves["deletion"], fractions),
        "insertion_auc": _trapezoid(curves["insertion"], fractions),
        "road_morf": morf,
        "road_lerf": lerf,
        "road": (lerf - morf) / 2,
    }


def _trapezoid(values: np.ndarray, fractions: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(fractions)))


def _probabilities(
    model, runner, images: torch.Tensor, target: int, max_rows: int, autocast, progress=None
) -> np.ndarray:
    """The softmax probability of ``target`` for each image, in passes of at most ``max_rows``."""
    out = []
    with call_model(runner if runner is not None else model) as own, torch.inference_mode():
        for start in range(0, images.shape[0], max_rows):
            with autocast() if autocast is not None else nullcontext():
                logits = own(images[start : start + max_rows])
            out.append(logits.float().softmax(-1)[:, target].cpu())
            if progress is not None:
                progress(min(1.0, (start + max_rows) / images.shape[0]))
    return torch.cat(out).double().numpy()
