"""The sanity checks and robustness of every explanation over a dataset: ``coatnet study --sanity``.

Per image (the first N of the study's images, one at a time, each in the trained model's predicted
class), :func:`analysis.explain.sanity.sanity_checks` (cascading and independent randomisation of every
part, and the random logit test) and :func:`analysis.explain.robustness.robustness` (max-sensitivity and
the local Lipschitz estimate), with the protocol of :func:`sanity_protocol`: the same seed for every
image, so each randomised part is drawn once for the whole study and every image sees the same
randomised models.

Per image the study keeps ``sanity_values`` (entries, rows, 5: :data:`SANITY_FIELDS`), the entries
being :func:`sanity_entries` (test, part), and ``robustness_values`` (rows, 2: :data:`ROBUSTNESS_FIELDS`);
:func:`summarise_sanity` turns them into study.json's ``sanity`` and ``robustness`` lists.

Cost model (R randomised parts, M = the cost of every map of one image on one model copy, mostly
Integrated Gradients' ``4 x 16`` forward and backward passes and occlusion's forward passes): per image
``(2 R - 1) M`` for the two randomisation tests (the head alone is both tests' first copy), ``M`` for
the trained model, about ``M`` for the random logit test's other class, and ``(1 + n_samples) M`` for
robustness: about ``(2 R + 10) M``, less what the pixel methods share across the copies (the trained
blocks' forward passes before each copy's earliest randomised part, about half of their forward passes;
every copy's backward pass still runs through the whole model).
docs/explanations.md gives the measured seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from analysis.explain.registry import method_rows
from analysis.explain.robustness import N_SAMPLES, RADIUS, robustness
from analysis.explain.sanity import TESTS, parts, sanity_checks
from analysis.explain.similarity import MEASURES
from coatnet.model.network import CoAtNet

SANITY_FIELDS = (*MEASURES, "constant")
ROBUSTNESS_FIELDS = ("max_sensitivity", "local_lipschitz")
SEED = 0


def sanity_entries(model: CoAtNet) -> list[tuple[str, str | None]]:
    """The (test, part randomised) pairs measured per image, in study.json's order: cascading over
    :func:`analysis.explain.sanity.parts`, independent over the same, then the random logit test
    (part None)."""
    order = parts(model)
    return [("cascading", p) for p in order] + [("independent", p) for p in order] + [("random_logit", None)]


def sanity_protocol(model: CoAtNet) -> dict:
    """The pinned protocol, as study.json's ``sanity_protocol`` records it."""
    return {
        "parts": parts(model),
        "tests": list(TESTS),
        "randomise": "each part re-initialised as at creation (zeros replaced by N(0, 0.02^2)), BatchNorm "
        "statistics reset to mean 0 and variance 1, from a generator seeded by the seed and the part's name",
        "class": "every map explains the class the trained model predicts; random_logit compares it with "
        "the map of another class drawn with the seed",
        "measures": list(SANITY_FIELDS),
        "constant": "the number of images whose pair had a constant map (its correlations counted as 0)",
        "robustness": f"{N_SAMPLES} inputs x + d, d uniform in [-{RADIUS}, {RADIUS}] in normalized input "
        "units; max-sensitivity = max ||e(x + d) - e(x)|| / ||e(x)||, local Lipschitz = max "
        "||e(x + d) - e(x)|| / ||d||",
        "radius": RADIUS,
        "n_samples": N_SAMPLES,
        "seed": SEED,
    }


def measure_sanity(
    model: CoAtNet, x: torch.Tensor, *, progress: Callable[[float], None] | None = None
) -> dict[str, np.ndarray]:
    """The per-image arrays of the images of ``x`` (B, C, H, W, normalised): ``sanity_values`` (B,
    entries, rows, 5) and ``robustness_values`` (B, rows, 2) in the order of :func:`sanity_entries`
    and :func:`analysis.explain.registry.method_rows`. ``progress``: the share of the images done."""
    rows = method_rows(model)
    entries = sanity_entries(model)
    sanity = np.zeros((x.shape[0], len(entries), len(rows), len(SANITY_FIELDS)), dtype=np.float32)
    robust = np.zeros((x.shape[0], len(rows), len(ROBUSTNESS_FIELDS)), dtype=np.float32)
    where = {(t, p, row): (e, r) for e, (t, p) in enumerate(entries) for r, row in enumerate(rows)}
    for i in range(x.shape[0]):
        share = (lambda s, i=i: progress((i + 0.8 * s) / x.shape[0])) if progress is not None else None
        report = sanity_checks(model, x[i : i + 1], rows=rows, seed=SEED, progress=share)
        for result in report.results:
            e, r = where[(result.test, result.randomised, (result.method, result.stage))]
            sanity[i, e, r] = [getattr(result, key) for key in MEASURES] + [float(result.constant)]
        then = (lambda s, i=i: progress((i + 0.8 + 0.2 * s) / x.shape[0])) if progress is not None else None
        # the image's own maps are the sanity checks' trained ones: only the noisy inputs' are made
        measured = robustness(model, x[i : i + 1], rows=rows, seed=SEED, given=report.trained, progress=then)
        for r, found in enumerate(measured):
            # the largest float stands for "infinitely sensitive": float32 keeps it as inf, summaries say so
            robust[i, r] = [found.max_sensitivity, found.local_lipschitz]
    return {"sanity_values": sanity, "robustness_values": robust}


def summarise_sanity(model: CoAtNet, arrays: dict[str, np.ndarray]) -> tuple[list[dict], list[dict]]:
    """study.json's ``sanity`` and ``robustness`` lists from the per-image arrays (module docstring):
    per entry and row the mean over the images of each measure and its standard deviation over them,
    ``constant`` the number of images whose pair had a constant map."""
    rows = method_rows(model)
    values = arrays["sanity_values"].astype(np.float64)  # (n, entries, rows, 5)
    count = int(values.shape[0])
    sanity = []
    for e, (test, part) in enumerate(sanity_entries(model)):
        for r, (method, stage) in enumerate(rows):
            column = values[:, e, r]
            entry: dict = {"method": method, "stage": stage, "test": test, "randomised": part}
            entry.update({key: _mean(column[:, k]) for k, key in enumerate(MEASURES)})
            entry["constant"] = int(column[:, -1].sum()) if count else 0
            entry["n_images"] = count
            entry["std"] = {key: _std(column[:, k]) for k, key in enumerate(MEASURES)}
            sanity.append(entry)
    robust = arrays["robustness_values"].astype(np.float64)  # (n, rows, 2)
    robustness_rows = []
    for r, (method, stage) in enumerate(rows):
        entry = {"method": method, "stage": stage}
        entry.update({key: _mean(robust[:, r, k]) for k, key in enumerate(ROBUSTNESS_FIELDS)})
        entry.update({"radius": RADIUS, "n_samples": N_SAMPLES, "n_images": count})
        entry["std"] = {key: _std(robust[:, r, k]) for k, key in enumerate(ROBUSTNESS_FIELDS)}
        # a zero map whose neighbours' are not is infinitely sensitive: counted, left out of the means
        entry["infinite"] = int((~np.isfinite(robust[:, r, 0])).sum())
        robustness_rows.append(entry)
    return sanity, robustness_rows


def _mean(values: np.ndarray) -> float | None:
    """The mean over the images where the value is finite; None where there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _std(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.std()) if finite.size else None


def chunks(count: int, size: int) -> list[tuple[int, int]]:
    """The (first image, number of images) of each chunk of the first ``count`` images."""
    return [(start, min(size, count - start)) for start in range(0, count, size)]
