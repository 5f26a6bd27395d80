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
  :func:`blur_sigma` (a sixteenth of the shorter side, reflect padding), the original pixels restored in
  the same order and steps. Each curve has ``STEPS + 1`` points over the removed (restored) fraction
  0, 1/16, .., 1; its area is the trapezoid rule over [0, 1]. Deletion: lower is more faithful;
  insertion: higher is.
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
- **methods**: effective-attention rollout (class-agnostic, averaged over queries), class relevance
  (Chefer et al. 2021), gradient-weighted rollout, Grad-CAM at each stage S0..S4, Integrated Gradients
  (SmoothGrad, :func:`analysis.attributions` defaults), occlusion (its defaults), and a random map: a
  random order per seed of :data:`RANDOM_SEEDS`, the curves averaged over the seeds, with their spread.

Examples:
    >>> report = faithfulness(model, image)
    >>> [(r.method, r.stage, round(r.deletion_auc, 3)) for r in report.results]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from analysis.core.geometry import attention_blocks
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.explain.attributions import STAGES, attributions, gradcam_maps
from analysis.explain.relevance import class_relevance
from analysis.maps.attention import upsample_to_image
from analysis.maps.rollout import attention_rollout
from coatnet.model.network import CoAtNet

STEPS = 16
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01
TIE_SEED = 0
RANDOM_SEEDS = (0, 1, 2, 3, 4)
METHODS = ("random", "rollout", "relevance", "grad_rollout", "gradcam", "integrated_gradients", "occlusion")
SCORES = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf")
# the 8 neighbours of a pixel and their weights in the imputation, (dy, dx, weight): ROAD's
NEIGHBOURS = (
    (1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
    (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6),
)  # fmt: skip


def row_name(method: str, stage: str | None) -> str:
    """A (method, stage) row as one label: ``gradcam S3``, ``relevance``."""
    return f"{method} {stage}" if stage else method


def blur_sigma(image_size: tuple[int, int]) -> float:
    """Insertion's Gaussian blur: a sixteenth of the shorter side, at least 1 pixel (1.75 px at 28x28,
    14 px at 224x224)."""
    return max(1.0, min(image_size) / 16)


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
        method: one of :data:`METHODS`.
        stage: Grad-CAM's stage (``S0`` .. ``S4``), else None.
        map: (H, W) float32; larger means more relevant.
        seed: the random map's seed, else None.
    """

    method: str
    stage: str | None
    map: np.ndarray
    seed: int | None = None

    @property
    def name(self) -> str:
        return row_name(self.method, self.stage)


@dataclass(frozen=True)
class Faithfulness:
    """The faithfulness of one method's explanation of one image (random: the mean over seeds).

    Attributes:
        method, stage: as :class:`Explanation`.
        fractions: (STEPS + 1,) the removed (restored) fraction of the pixels, 0 .. 1.
        deletion, insertion: (STEPS + 1,) the target's probability along each curve.
        deletion_auc, insertion_auc: the areas under them.
        road_morf_curve, road_lerf_curve: (len(PERCENTILES),) the probability change after imputation.
        road_morf, road_lerf, road: their means and ``(road_lerf - road_morf) / 2``.
        spread: the random map only: per score, the (min, max) over the seeds; else empty.
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
    """Every method's faithfulness for one image.

    Attributes:
        target: the predicted class (every map explains it); target_name: its name, or None.
        probability: its softmax probability for the unmodified image.
        results: one :class:`Faithfulness` per method (and stage), random first.
        protocol: :func:`protocol`.
        image_size: the input (H, W).
    """

    target: int
    target_name: str | None
    probability: float
    results: tuple[Faithfulness, ...]
    protocol: dict
    image_size: tuple[int, int]


def method_rows(model: CoAtNet) -> list[tuple[str, str | None]]:
    """The (method, stage) rows measured for ``model``: the attention methods only where it has attention
    blocks; Grad-CAM once per stage."""
    attention = bool(attention_blocks(model))
    rows: list[tuple[str, str | None]] = [("random", None)]
    if attention:
        rows += [("rollout", None), ("relevance", None), ("grad_rollout", None)]
    rows += [("gradcam", stage) for stage in STAGES]
    rows += [("integrated_gradients", None), ("occlusion", None)]
    return rows


def pixel_order(values: np.ndarray, seed: int = TIE_SEED) -> np.ndarray:
    """Flat pixel indices by decreasing ``values`` (H, W), ties in the order of a permutation seeded with
    ``seed`` (NaN counts as the least relevant)."""
    flat = np.nan_to_num(np.asarray(values, dtype=np.float64).ravel(), nan=-np.inf)
    permutation = np.random.default_rng(seed).permutation(flat.size)
    return permutation[np.argsort(-flat[permutation], kind="stable")]


def random_map(image_size: tuple[int, int], seed: int) -> np.ndarray:
    """The random explanation for ``seed``: a map whose :func:`pixel_order` is
    ``np.random.default_rng(seed).permutation(H * W)`` (distinct values, no ties)."""
    size = image_size[0] * image_size[1]
    order = np.random.default_rng(seed).permutation(size)
    values = np.empty(size, dtype=np.float32)
    values[order] = np.arange(size, 0, -1, dtype=np.float32)
    return (values / size).reshape(image_size)


def explanation_maps(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    targets: Sequence[int],
    *,
    rows: Sequence[tuple[str, str | None]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[list[Explanation]]:
    """Every method's map of every image, for the given class of each, at the input's size as drawn.

    Args:
        model: a CoAtNet (analysed as it is, left as found).
        images: a preprocessed batch, an image or PIL images.
        targets: one class per image.
        rows: the (method, stage) rows to make (default :func:`method_rows`); ``random`` gives one map
            per seed of :data:`RANDOM_SEEDS`.
        progress: called with the share done (0 .. 1) after each map.

    Returns:
        Per image, the explanations in the order of ``rows`` (random: one per seed).
    """
    batch = as_batch(images, model)
    rows = list(method_rows(model) if rows is None else rows)
    count, size = batch.shape[0], (int(batch.shape[-2]), int(batch.shape[-1]))
    targets = [int(t) for t in targets]
    if len(targets) != count:
        raise ValueError(f"give one target per image: {len(targets)} for {count} images")
    methods = {method for method, _ in rows}
    unknown = methods - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    grids: dict[str, np.ndarray] = {}
    if "rollout" in methods:
        rollout = attention_rollout(model, batch)
        grids["rollout"] = upsample_to_image(rollout.map, size)
    for method in ("relevance", "grad_rollout"):
        if method in methods:
            found = class_relevance(model, batch, target=targets, method=method)
            grids[method] = upsample_to_image(found.map, size)
    cams = gradcam_maps(model, batch, targets) if "gradcam" in methods else None
    out: list[list[Explanation]] = []
    for i in range(count):
        maps: list[Explanation] = []
        for r, (method, stage) in enumerate(rows):
            if progress is not None:
                progress((i * len(rows) + r) / (count * len(rows)))
            if method == "random":
                maps += [Explanation("random", None, random_map(size, s), s) for s in RANDOM_SEEDS]
            elif method in grids:
                maps.append(Explanation(method, None, grids[method][i]))
            elif method == "gradcam":
                maps.append(Explanation("gradcam", stage, cams[STAGES.index(stage)][i]))
            else:
                found = attributions(model, batch[i : i + 1], method=method, target=targets[i])
                maps.append(Explanation(method, None, found.map))
        out.append(maps)
    if progress is not None:
        progress(1.0)
    return out


def perturbed_images(
    image: torch.Tensor, values: np.ndarray, *, road_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images a map's faithfulness is measured on: (deletion (STEPS + 1, C, H, W), insertion
    (STEPS + 1, C, H, W), ROAD (2 x len(PERCENTILES), C, H, W): MoRF at each percentile, then LeRF).

    Args:
        image: one normalised (C, H, W) image.
        values: the map (H, W) at the image's size.
        road_seed: seeds the imputation noise.
    """
    height, width = image.shape[-2:]
    if values.shape != (height, width):
        raise ValueError(f"the map is {values.shape}, the image {height}x{width}: upsample it first")
    order = pixel_order(values)
    rank = torch.empty(height * width, dtype=torch.long)
    rank[torch.from_numpy(order)] = torch.arange(height * width)
    rank = rank.view(height, width).to(image.device)
    counts = torch.tensor([round(k * height * width / STEPS) for k in range(STEPS + 1)], device=image.device)
    taken = (rank[None] < counts[:, None, None])[:, None]  # (STEPS + 1, 1, H, W)
    deletion = image[None].masked_fill(taken, 0.0)
    blurred = _blur(image[None])
    insertion = torch.where(taken, image[None], blurred)
    road = road_images(image, values, seed=road_seed)
    return deletion, insertion, road


def road_images(
    image: torch.Tensor, values: np.ndarray, *, seed: int = 0, noise: float = ROAD_NOISE
) -> torch.Tensor:
    """ROAD's imputed images of one (C, H, W) image for a map (H, W): (2 x len(PERCENTILES), C, H, W),
    most-relevant-first at each percentile, then least-relevant-first, with imputation noise of standard
    deviation ``noise`` from a generator seeded with ``seed``."""
    norm = _min_max(values)
    generator = np.random.default_rng(seed)
    pixels = image.detach().float().cpu().numpy()
    out = []
    for flipped in (norm, (np.float32(1.0) - norm).astype(np.float32)):
        for p in PERCENTILES:
            keep = flipped < np.percentile(flipped, p)
            out.append(noisy_linear_imputation(pixels, keep, noise, generator))
    return torch.from_numpy(np.stack(out)).to(image.device)


def noisy_linear_imputation(
    image: np.ndarray, keep: np.ndarray, noise: float, generator: np.random.Generator
) -> np.ndarray:
    """ROAD's noisy linear imputation of one (C, H, W) image: every pixel where ``keep`` (H, W) is False
    becomes the weighted mean of its in-image neighbours (:data:`NEIGHBOURS`, weights of neighbours
    outside the image dropped), solved for all removed pixels at once, plus N(0, noise^2)."""
    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    missing = np.flatnonzero(~keep.ravel())
    n = missing.size
    out = image.reshape(channels, -1).astype(np.float32).copy()
    if n == 0:
        return out.reshape(image.shape)
    if n == height * width:
        solution = np.zeros((n, channels))
    else:
        variable = np.full(height * width, -1)
        variable[missing] = np.arange(n)
        ys, xs = np.divmod(missing, width)
        diagonal = np.ones(n)
        rows, cols, entries = [], [], []
        rhs = np.zeros((n, channels))
        equations = np.arange(n)
        for dy, dx, weight in NEIGHBOURS:
            y, x = ys + dy, xs + dx
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            diagonal[~inside] -= weight
            neighbour = (y * width + x)[inside]
            owner = equations[inside]
            unknown = variable[neighbour] >= 0
            rows.append(owner[unknown])
            cols.append(variable[neighbour[unknown]])
            entries.append(np.full(int(unknown.sum()), weight))
            rhs[owner[~unknown]] -= weight * flat[:, neighbour[~unknown]].T
        rows.append(equations)
        cols.append(equations)
        entries.append(-diagonal)
        system = coo_matrix(
            (np.concatenate(entries), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        ).tocsc()
        solution = np.asarray(spsolve(system, rhs)).reshape(n, channels)
    filled = solution.T.astype(np.float32) + np.float32(noise) * generator.standard_normal(
        (channels, n)
    ).astype(np.float32)
    out[:, missing] = filled
    return out.reshape(image.shape)


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
        rows: the (method, stage) rows (default :func:`method_rows`).
        progress: called with the share of the work done (0 .. 1).

    Returns:
        A :class:`FaithfulnessReport`.
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
    names = getattr(getattr(model, "checkpoint_info", None), "class_names", None)
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


def _blur(images: torch.Tensor) -> torch.Tensor:
    """Insertion's start: (B, C, H, W) blurred by a Gaussian of :func:`blur_sigma`, reflect padding."""
    height, width = images.shape[-2:]
    sigma = blur_sigma((height, width))
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)
    size = 2 * radius + 1
    return gaussian_blur2d(images.float(), (size, size), (sigma, sigma), border_type="reflect").to(
        images.dtype
    )


def _min_max(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros_like(values)
    return ((values - low) / (high - low)).astype(np.float32)
