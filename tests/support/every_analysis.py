"""Every analysis that runs a model, as one table, for the shared-model tests (issue 11).

Each entry maps (model, images) to a result (the first two are a user's plain and recorded passes, the
other calls the analyses must not disturb); images are a (B, 3, 16, 16) batch of at least 4 for the toys
of :mod:`tests.support.toys`. ``RUNS_THE_MODEL`` names those that run it (each is held inside a forward
pass while the others run).

The face is the registry: every function of ``analysis.__all__`` whose first parameter is a model joins
the table by itself, called as ``name(model, images)`` with its other arguments at their defaults, and
with it every test of tests/analysis/test_shared_model.py, test_cuda.py and test_numerics.py (held inside
a forward pass while every other analysis runs). A line below is needed only for a call with other
arguments (smaller settings, a target, a second model).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any

import numpy as np
import torch

import analysis
import coatnet
from analysis.core.summaries import result_items
from analysis.maps.features import feature_maps
from analysis.studies.study import measure_batch, study_plan
from coatnet import CoAtNet, Intervention, for_inference, record_attention


def _forward(model: CoAtNet, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x).cpu().numpy()


def _recorded_forward(model: CoAtNet, x: torch.Tensor) -> list[np.ndarray]:
    with torch.inference_mode(), record_attention() as records:
        logits = model(x)
    return [logits.cpu().numpy(), *(r.weights.cpu().numpy() for r in records)]


def _intervened(model: CoAtNet, x: torch.Tensor) -> analysis.InterventionEffect:
    items = [Intervention("S3.0", "knockout", heads=(1,)), Intervention("S4.0", "bias_only"),
             Intervention("S1.0", "no_se")]  # fmt: skip
    return analysis.intervention_effect(model, x[:1], items)


def _image_set_study(model: CoAtNet, x: torch.Tensor) -> analysis.SetStudy:
    """``study_image_set`` over the batch's first two pictures, each written as a PNG upload (its values
    spread over 0-255), as a user's set reaches it."""
    import io

    from PIL import Image

    uploads = []  # each in a folder named by a class: labelled
    classes = coatnet.class_names(model) or [str(c) for c in range(model.config.num_classes)]
    for n, picture in enumerate(x[:2]):
        values = picture.detach().float().numpy()
        values = (values - values.min()) / max(float(values.max() - values.min()), 1e-6)
        pixels = (values.transpose(1, 2, 0) * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3]).save(buffer, "PNG")
        folders = [c for c in classes if "/" not in c] or ["0"]  # a class name that is one folder
        uploads.append((f"{folders[n % len(folders)]}/picture-{n}.png", buffer.getvalue()))
    import zipfile

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:  # a zip's folders label its images
        for name, data in uploads:
            archive.writestr(name, data)
    return analysis.study_image_set(model, analysis.read_zip(packed.getvalue(), class_names=classes))


def _study_batch(model: CoAtNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    plan = study_plan(model, tuple(x.shape[-2:]))
    return measure_batch(model, for_inference(model), x, torch.arange(x.shape[0]), plan, max_rows=8)


ANALYSES: dict[str, Callable[[CoAtNet, torch.Tensor], Any]] = {
    "forward": _forward,
    "recorded_forward": _recorded_forward,
    "attention_maps": lambda m, x: analysis.attention_maps(m, x),
    "attention_statistics": lambda m, x: analysis.attention_statistics(m, x),
    "attention_rollout": lambda m, x: analysis.attention_rollout(m, x, query=3),
    "compare": lambda m, x: analysis.compare(m, m, x[:2], pixel=(6.0, 9.0)),
    "feature_maps": lambda m, x: feature_maps(m, x),
    "cka": lambda m, x: analysis.cka(m, x),
    "relative_bias_kernels": lambda m, x: analysis.relative_bias_kernels(m),
    "frequency_profile": lambda m, x: analysis.frequency_profile(m, x),
    "gradcam": lambda m, x: analysis.attributions(m, x[:1], method="gradcam", stage="S3"),
    "integrated_gradients": lambda m, x: analysis.attributions(
        m, x[:1], method="integrated_gradients", n_steps=4, nt_samples=2
    ),
    "occlusion": lambda m, x: analysis.attributions(m, x[:1], method="occlusion", window=4, stride=4),
    "receptive_fields": lambda m, x: analysis.receptive_fields(m, x[:2]),
    "gradcam_stages": lambda m, x: analysis.gradcam_stages(m, x[:1], target=2),
    "intervention_effect": _intervened,
    "head_importance": lambda m, x: analysis.head_importance(m, x[:1], target=2, max_rows=3),
    "study_batch": _study_batch,
    "study_image_set": _image_set_study,
    "class_relevance": lambda m, x: analysis.class_relevance(m, x[:2], target=[1, 2]),
    "grad_rollout": lambda m, x: analysis.class_relevance(m, x[:2], method="grad_rollout"),
    # one map (ROAD's sparse solves make each map cost ~0.2 s): the perturbed passes, the gradient pass
    "faithfulness": lambda m, x: analysis.faithfulness(m, x[:1], rows=[("relevance", None)]),
    # the randomised copies (the head and one block) and the perturbed inputs, with gradients
    "sanity_checks": lambda m, x: analysis.sanity_checks(
        m, x[:1], rows=[("random", None), ("gradcam", "S4")], tests=("independent", "random_logit")
    ),
    "robustness": lambda m, x: analysis.robustness(m, x[:1], rows=[("relevance", None)], n_samples=2),
    # one pair: the first image clean, the second corrupted
    "activation_patching": lambda m, x: analysis.activation_patching(m, x[0], x[1]),
    "position_patching": lambda m, x: analysis.position_patching(m, x[0], x[1], direction="noising"),
}

# functions of the face that take a model but are not analyses of it, or that run the table's analyses
NOT_ANALYSES = {
    "describe": "reads the model's name and settings; runs nothing",
    "preprocessing_of": "reads the model's preprocessing; runs nothing",
    "attributions": "in the table as gradcam, integrated_gradients and occlusion, its three methods",
    "compare_layouts": "runs gradcam_stages, receptive_fields and attention_maps of the table, per model",
    "layout_similarity": "runs cka of the table, per pair of models",
}


def takes_a_model(function: Any) -> bool:
    """Whether ``function``'s first parameter is a model (``model``, or ``models`` for several)."""
    if not inspect.isfunction(function):
        return False
    parameters = list(inspect.signature(function).parameters)
    return bool(parameters) and parameters[0] in ("model", "models")


PUBLIC_ANALYSES = tuple(name for name in analysis.__all__ if takes_a_model(getattr(analysis, name)))
ENROLLED = tuple(name for name in PUBLIC_ANALYSES if name not in ANALYSES and name not in NOT_ANALYSES)


def _plain_call(name: str) -> Callable[[CoAtNet, torch.Tensor], Any]:
    """``analysis.<name>(model, images)``: a new analysis of the face, with its defaults."""
    return lambda model, images: getattr(analysis, name)(model, images)


ANALYSES.update({name: _plain_call(name) for name in ENROLLED})

# what enters the model's block forwards (each is held inside one); the bias kernels read tables alone, and
# LRP walks the model's modules with a forward of its own (no block's forward runs): both run while every
# other one is held
RUNS_THE_MODEL = tuple(name for name in ANALYSES if name not in ("relative_bias_kernels", "lrp"))
# a user's own passes, not analyses: they change a model in training mode, as they should
PLAIN_PASSES = ("forward", "recorded_forward")
# analyses defined for a model in eval mode alone, which refuse one in training mode in one line (LRP's
# rules read BatchNorm's running statistics and no dropout)
EVAL_ONLY = ("lrp",)


def assert_same(a: Any, b: Any, *, rtol: float = 1e-6, path: str = "result") -> None:
    """``a`` equals ``b``: dataclasses field by field, arrays within ``rtol`` (relative), the rest exactly."""
    if is_dataclass(a):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        for (name, x), (_, y) in zip(result_items(a), result_items(b), strict=True):
            assert_same(x, y, rtol=rtol, path=f"{path}.{name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            assert_same(a[key], b[key], rtol=rtol, path=f"{path}[{key!r}]")
    elif isinstance(a, list | tuple) and not (a and isinstance(a[0], str | int)):
        assert len(a) == len(b), f"{path}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, rtol=rtol, path=f"{path}[{i}]")
    elif isinstance(a, np.ndarray | float | torch.Tensor) and not isinstance(a, bool):
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        finite = np.abs(x[np.isfinite(x)])  # a windowed map is NaN where its query cannot see, or all of it
        scale = max(float(finite.max()) if finite.size else 0.0, 1e-12)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale, err_msg=path, equal_nan=True)
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
