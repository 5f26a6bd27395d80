"""How much an explanation moves when the input barely does: max-sensitivity (Yeh et al., "On the
(In)fidelity and Sensitivity of Explanations", NeurIPS 2019) and the local Lipschitz estimate
(Alvarez-Melis and Jaakkola, "On the Robustness of Interpretability Methods", 2018).

The protocol: ``n_samples`` inputs ``x + d``, each ``d`` uniform in [-radius, radius] per value, in the
model's normalized input units, drawn from a generator seeded with ``seed``; every map explains the class
the model predicts for ``x`` (kept for every perturbed input), at the input's size as drawn
(:func:`analysis.explain.faithfulness.explanation_maps`), with its sign where it has one.

- **max-sensitivity** = max over the samples of ||e(x + d) - e(x)||_F / ||e(x)||_F (0 when e(x) is
  zero and so is every e(x + d); a zero e(x) with a moving e(x + d) is infinitely sensitive: recorded
  as the largest float);
- **local Lipschitz** = max over the samples of ||e(x + d) - e(x)||_2 / ||d||_2.

The random map is drawn afresh for each input (seeded by the sample): the baseline of an explanation
that depends on nothing. Lower is more robust for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.explain.faithfulness import Explanation, explanation_maps
from analysis.explain.registry import explainer, method_rows, row_name

RADIUS = 0.1  # normalized input units (a tenth of a standard deviation of the training data)
N_SAMPLES = 8


@dataclass(frozen=True)
class Robustness:
    """One explanation's robustness for one image (:func:`robustness`).

    Attributes:
        method: the name of one of :func:`analysis.explainers`.
        stage: Grad-CAM's stage, else None.
        max_sensitivity: the largest change of the map over the perturbed inputs, relative to the map's
            norm (module docstring; lower: more robust).
        local_lipschitz: the largest change of the map per change of the input (lower: more robust).
        sensitivities: (n_samples,) the sensitivity ratio for each perturbed input.
        lipschitz: (n_samples,) the Lipschitz ratio for each perturbed input.
        radius: the perturbations' radius, in normalized input units.
        n_samples: how many perturbed inputs.
        seed: the perturbations' seed.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> image = torch.randn(1, 28, 28)
        >>> (row,) = analysis.robustness(model, image, rows=[("gradcam", "S3")], n_samples=2)
        >>> row.method, row.sensitivities.shape, row.max_sensitivity >= 0
        ('gradcam', (2,), True)
    """

    method: str
    stage: str | None
    max_sensitivity: float
    local_lipschitz: float
    sensitivities: np.ndarray
    lipschitz: np.ndarray
    radius: float
    n_samples: int
    seed: int

    @property
    def name(self) -> str:
        return row_name(self.method, self.stage)


def noise(shape: Sequence[int], *, radius: float, n_samples: int, seed: int) -> torch.Tensor:
    """The perturbations: (n_samples, *shape), uniform in [-radius, radius], from a generator seeded
    ``seed`` (float64 draws cast to float32, so another library can replay them)."""
    draws = np.random.default_rng(seed).uniform(-radius, radius, size=(n_samples, *shape))
    return torch.from_numpy(draws.astype(np.float32))


def robustness(
    model,
    image: torch.Tensor | Image.Image,
    *,
    rows: Sequence[tuple[str, str | None]] | None = None,
    radius: float = RADIUS,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
    given: Sequence[Explanation] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Robustness]:
    """Max-sensitivity and the local Lipschitz estimate of every explanation of one image (module
    docstring); the model is analysed as it is and left as found.

    Args:
        model: a CoAtNet.
        image: one image: a (1, C, H, W) or (C, H, W) preprocessed tensor, or a PIL image.
        rows: the (method, stage) rows (default :func:`method_rows`).
        radius: the perturbations' radius, in normalized input units.
        n_samples: how many perturbed inputs.
        seed: seeds the perturbations (and the random map).
        given: the maps of the image itself for the predicted class, in the order of ``rows``, where the
            caller has made them already (the study hands over the sanity checks' trained maps): only the
            perturbed inputs' maps are made then. The random row's is always drawn here.
        progress: called with the share of the work done (0 .. 1).

    Returns:
        One :class:`Robustness` per row.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> rows = [("random", None), ("gradcam", "S3")]
        >>> results = analysis.robustness(model, torch.randn(1, 28, 28), rows=rows, n_samples=2)
        >>> [(r.method, r.n_samples) for r in results]
        [('random', 2), ('gradcam', 2)]
    """
    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"robustness is measured one image at a time; got a batch of {batch.shape[0]}")
    rows = list(method_rows(model) if rows is None else rows)
    with call_model(model) as own, torch.inference_mode():
        target = int(own(batch).float().argmax(-1)[0])
    explained = torch.tensor([target], device=batch.device)
    deltas = noise(batch.shape[1:], radius=radius, n_samples=n_samples, seed=seed).to(batch)
    baseline = {m for m, _ in rows if explainer(m).baseline}  # drawn afresh per input, not made here
    others = [r for r in rows if r[0] not in baseline]
    if given is None:
        inputs = torch.cat([batch, batch + deltas])
        maps = explanation_maps(model, inputs, [target] * inputs.shape[0], rows=others, progress=progress)
    else:
        if len(given) != len(rows):
            raise ValueError(f"give one map per row: {len(given)} for {len(rows)} rows")
        made = [(e.method, e.stage) for e in given]
        if made != rows:
            raise ValueError(f"the given maps are of the rows {made}, not {rows}")
        own = [e for e in given if e.method not in baseline]
        maps = [own, *explanation_maps(model, batch + deltas, [target] * n_samples, rows=others,
                                       progress=progress)]  # fmt: skip
    distance = deltas.flatten(1).double().norm(dim=1).cpu().numpy()
    out = []
    for method, stage in rows:
        if method in baseline:
            record = explainer(method)
            each = [record.maps(model, batch, explained, seed=seed + n)[0] for n in range(n_samples + 1)]
        else:
            k = others.index((method, stage))
            each = [per_input[k].signed_map for per_input in maps]
        base = np.asarray(each[0], np.float64)
        moved = np.array([np.linalg.norm(np.asarray(e, np.float64) - base) for e in each[1:]])
        scale = np.linalg.norm(base)
        if scale > 0:
            sensitivities = moved / scale
        else:
            sensitivities = np.where(moved > 0, np.finfo(np.float64).max, 0.0)
        lipschitz = moved / distance
        out.append(Robustness(
            method, stage, float(sensitivities.max()), float(lipschitz.max()), sensitivities, lipschitz,
            radius, n_samples, seed,
        ))  # fmt: skip
    return out
