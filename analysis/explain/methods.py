"""The built-in explanation methods, registered in order (:mod:`analysis.explain.registry`): each is its
module's batched maps function and one line here. A new method is its module, its line here, its docs
and its tests (docs/development.md, "A new explanation")."""

from __future__ import annotations

import numpy as np
import torch

from analysis.explain.attributions import gradcam_maps
from analysis.explain.lrp import lrp
from analysis.explain.perturbation import random_map
from analysis.explain.pixels import pass_size, pixel_maps
from analysis.explain.registry import STAGES, Explainer, Maps, _built_in
from analysis.explain.relevance import class_relevance
from analysis.maps.attention import upsample_to_image
from analysis.maps.rollout import attention_rollout


def _size(images: torch.Tensor) -> tuple[int, int]:
    return int(images.shape[-2]), int(images.shape[-1])


def _random(model, images, targets, *, seed: int = 0, **options) -> np.ndarray:
    """The random map of ``seed`` (:func:`analysis.explain.perturbation.random_map`), the same for every
    image."""
    return np.stack([random_map(_size(images), seed)] * images.shape[0])


def _rollout(model, images, targets, **options) -> np.ndarray:
    """Effective-attention rollout averaged over queries, each cell repeated over its pixels."""
    return upsample_to_image(attention_rollout(model, images).map, _size(images))


def _relevance(method: str) -> Maps:
    def maps(model, images, targets, **options) -> np.ndarray:
        found = class_relevance(model, images, target=[int(t) for t in targets], method=method)
        return upsample_to_image(found.map, _size(images))

    maps.__doc__ = f"``{method}`` of :func:`analysis.class_relevance`, each cell repeated over its pixels."
    return maps


def _gradcam(model, images, targets, *, stage: str = "S3", **options) -> np.ndarray:
    """Grad-CAM at ``stage``, ReLU'd and upsampled bilinearly (:func:`analysis.attributions`' ``map``)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} for Grad-CAM; choose one of {', '.join(STAGES)}")
    return _gradcam_every_stage(model, images, targets)[STAGES.index(stage)]


def _gradcam_every_stage(model, images, targets, **options) -> list[np.ndarray]:
    return gradcam_maps(model, images, [int(t) for t in targets])


def _pixels(method: str) -> Maps:
    def maps(model, images, targets, **options) -> np.ndarray:
        per_pass = pass_size(_size(images))
        options = {"internal_batch_size": per_pass, "perturbations_per_eval": per_pass} | options
        found = pixel_maps(model, images, [int(t) for t in targets], method=method, **options)
        return found.detach().float().cpu().numpy()

    maps.__doc__ = f"The signed ``{method}`` maps of :func:`analysis.explain.pixels.pixel_maps`."
    return maps


def _lrp(rule: str) -> Maps:
    def maps(model, images, targets, **options) -> np.ndarray:
        return lrp(model, images, target=torch.as_tensor(targets), rule=rule).map

    maps.__doc__ = (
        f"The signed pixel relevance of :func:`analysis.lrp` under ``{rule}``, summed over channels."
    )
    return maps


for _record in (
    Explainer("random", "Random map", "random", _random, class_specific=False, needs_gradients=False,
              baseline=True),
    Explainer("rollout", "Attention rollout", "rollout", _rollout, class_specific=False,
              needs_gradients=False, needs_attention=True),
    Explainer("relevance", "Relevance (Chefer et al. 2021)", "relev.", _relevance("relevance"),
              needs_attention=True),
    Explainer("grad_rollout", "Gradient-weighted rollout", "grad roll.", _relevance("grad_rollout"),
              needs_attention=True),
    Explainer("gradcam", "Grad-CAM", "CAM", _gradcam, stages=STAGES, every_stage=_gradcam_every_stage),
    Explainer("integrated_gradients", "Integrated Gradients (SmoothGrad)", "IG",
              _pixels("integrated_gradients"), signed=True),
    Explainer("occlusion", "Occlusion", "occl.", _pixels("occlusion"), needs_gradients=False, signed=True),
    Explainer("lrp_attnlrp", "LRP (AttnLRP)", "AttnLRP", _lrp("attnlrp"), signed=True, one_pass=True),
    Explainer("lrp_cp", "LRP (CP-LRP)", "CP-LRP", _lrp("cp"), signed=True, one_pass=True),
):  # fmt: skip
    _built_in(_record)
