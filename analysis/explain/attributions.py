"""Which pixels a prediction rests on: Grad-CAM at any stage (Selvaraju et al. 2017), Integrated
Gradients (Sundararajan et al. 2017) smoothed by SmoothGrad noise (Smilkov et al. 2017), and Occlusion
(Zeiler & Fergus 2014), each equal to captum's ``LayerGradCam``, ``NoiseTunnel(IntegratedGradients)`` and
``Occlusion`` (the tests hold them to it); the pixel methods, batched, live in
:mod:`analysis.explain.pixels`.

All three explain the target class's *logit* (not its probability) in the model's normalized input space.
The model is analysed in whatever train/eval mode it is in, and never touched: Grad-CAM's gradients run
on a twin of the model made for the call (:func:`analysis.core.running.call_model`), Integrated
Gradients' input gradients through the inference build in eval mode (whose parameters need no
gradient; :func:`analysis.core.running.input_gradient_model`), so no other call sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.explain.pixels import N_STEPS, NOISE_LEVEL, NT_SAMPLES
from analysis.explain.registry import STAGES, explainers
from coatnet.model.network import CoAtNet
from coatnet.weights.checkpoint import class_names


@dataclass(frozen=True)
class Attribution:
    """One attribution map of one image for one class.

    Attributes:
        method: ``gradcam``, ``integrated_gradients``, ``occlusion`` or another method of
            :func:`analysis.explainers` (:func:`attributions`).
        target: the explained class index.
        target_name: its name from the checkpoint (``coatnet.class_names(model)``), or None.
        stage: the Grad-CAM layer (``S0`` .. ``S4``); None for the pixel methods.
        map: (H, W) float32, >= 0, the evidence *for* the target at the image's size. Grad-CAM: the
            ReLU'd class-activation map (captum's ``relu_attributions=True``) upsampled bilinearly, in units
            of the stage's activations times logit gradients. Pixel methods: the positive part of
            ``signed_map``.
        signed_map: (H, W) float32, the same before the ReLU: positive values raise the target logit,
            negative ones lower it. Integrated Gradients: the attributions summed over channels, in logit
            units (without noise they sum to ``logit(image) - logit(baseline)``). Occlusion: the drop of
            the target logit when a window covering the pixel is set to the baseline, averaged over the
            windows covering it (equal for every channel, so not summed).
        probability: softmax probability of the target for the image (one forward pass).
        image_size: (H, W) of the model input.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> gradcam = analysis.attributions(model, torch.randn(1, 28, 28), target=4)
        >>> gradcam.method, gradcam.stage, gradcam.target_name, gradcam.map.shape
        ('gradcam', 'S3', 'Coat', (28, 28))
    """

    method: str
    target: int
    target_name: str | None
    stage: str | None
    map: np.ndarray
    signed_map: np.ndarray
    probability: float
    image_size: tuple[int, int]


def attributions(
    model: CoAtNet,
    image: torch.Tensor | Image.Image,
    *,
    method: str = "gradcam",
    target: int | None = None,
    stage: str = "S3",
    noise_tunnel: bool = True,
    nt_samples: int = NT_SAMPLES,
    noise_level: float = NOISE_LEVEL,
    n_steps: int = N_STEPS,
    internal_batch_size: int = 32,
    seed: int = 0,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    perturbations_per_eval: int = 16,
    progress: Callable[[float], None] | None = None,
) -> Attribution:
    """Attribute the model's logit for one class to the pixels of one image.

    Args:
        model: a CoAtNet (any mode: it is analysed as it is, and left as it was found).
        image: one image: a (1, C, H, W) or (C, H, W) preprocessed tensor, or a PIL image (prepared with
            the model's preprocessing).
        method: ``gradcam`` (captum's ``LayerGradCam`` on the output of ``stage``),
            ``integrated_gradients`` (``IntegratedGradients`` from an all-zero baseline in the normalized
            space, i.e. the dataset's mean colour, smoothed by SmoothGrad noise unless
            ``noise_tunnel=False``), ``occlusion`` (``Occlusion`` with a sliding window set to 0, again
            the mean colour), or any other method of :func:`analysis.explainers` but the random map
            (its record's maps, given the options below; a method that does not read attention).
        target: the class to explain; None explains the predicted class (argmax of one forward pass).
        stage: Grad-CAM's layer, ``S0`` (the stem) to ``S4``; ignored by the pixel methods.
        noise_tunnel: Integrated Gradients only: average over ``nt_samples`` noisy copies of the image
            (SmoothGrad, as captum's ``NoiseTunnel(nt_type="smoothgrad")`` computes it) with noise of
            standard deviation ``noise_level * (max - min)`` of the image. The noise comes from a private
            generator seeded with ``seed``: the same call gives the same map, from any thread, and the
            global random state is not touched.
        nt_samples: SmoothGrad's noisy copies.
        noise_level: SmoothGrad's relative noise.
        n_steps: Integrated Gradients' integration steps (Gauss-Legendre).
        internal_batch_size: Integrated Gradients: at most this many images per forward/backward pass.
        seed: seeds SmoothGrad's noise.
        window: Occlusion's window (an int or (h, w)); default a seventh of each side.
        stride: Occlusion's stride; default half the window.
        perturbations_per_eval: Occlusion: occluded images per forward pass.
        progress: called with the share of the work done (0 .. 1) as it goes: after each forward pass
            of the pixel methods, and once at the end for Grad-CAM.

    Returns:
        An :class:`Attribution`.

    Examples:
        >>> import torch, analysis
        >>> model, image = analysis.load_model("demo-pre"), torch.randn(1, 28, 28)
        >>> analysis.attributions(model, image, method="gradcam", stage="S2").map.shape
        (28, 28)
        >>> ig = analysis.attributions(model, image, method="integrated_gradients", n_steps=8, nt_samples=2)
        >>> ig.signed_map.shape, bool((ig.map >= 0).all())
        ((28, 28), True)
    """
    known = {record.name: record for record in explainers() if record.attribution}
    if method not in known:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(known)}")
    record = known[method]
    if record.stages is not None and stage not in record.stages:
        known_stages = ", ".join(record.stages)
        raise ValueError(f"unknown stage {stage!r} for {record.label}; choose one of {known_stages}")
    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"attributions explain one image at a time; got a batch of {batch.shape[0]}")
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    if method == "gradcam":  # one forward pass gives the probabilities and the gradient
        (cam,), probabilities, (target,) = _stage_cams(
            model, batch, None if target is None else [target], stages=[STAGES.index(stage)], seed=seed
        )
        probabilities = probabilities[0]
        signed, positive = (_upsampled(c, size) for c in (cam, F.relu(cam)))
    else:
        signed, positive, probabilities, target = _perturbed(
            model, batch, record, target, seed=seed, noise_tunnel=noise_tunnel, nt_samples=nt_samples,
            noise_level=noise_level, n_steps=n_steps, internal_batch_size=internal_batch_size, window=window,
            stride=stride, perturbations_per_eval=perturbations_per_eval, progress=progress,
            **({"stage": stage} if record.stages is not None else {}),
        )  # fmt: skip
    if progress is not None:
        progress(1.0)
    names = class_names(model)
    return Attribution(
        method=method,
        target=target,
        target_name=names[target] if names else None,
        stage=stage if record.stages is not None else None,
        map=_numpy(positive),
        signed_map=_numpy(signed),
        probability=float(probabilities[target]),
        image_size=size,
    )


def _upsampled(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1, 1, h, w) map bilinearly upsampled to the input: (H, W), as captum's ``interpolate``."""
    from captum.attr import LayerAttribution  # imported when used: captum brings matplotlib

    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")[0, 0]


def _perturbed(
    model, batch, record, target, **options
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """A method other than Grad-CAM through its record's maps (Integrated Gradients, occlusion, yours):
    (signed, positive, probabilities, target); a map without a sign is its own positive part."""
    with call_model(model) as own, torch.inference_mode():
        probabilities = own(batch).float().softmax(-1)[0]
    target = _check_target(target, probabilities)
    chosen = torch.tensor([target], device=batch.device)
    with torch.inference_mode(False), torch.enable_grad():  # as every consumer calls a record's maps
        (signed,) = torch.as_tensor(np.asarray(record.maps(model, batch, chosen, **options), np.float32))
    return signed, signed.clamp(min=0) if record.signed else signed, probabilities, target


def gradcam_stages(
    model: CoAtNet, image: torch.Tensor | Image.Image, *, target: int | None = None
) -> tuple[Attribution, ...]:
    """Grad-CAM at every stage S0..S4 from one forward and one backward pass: the same maps as
    ``attributions(model, image, method="gradcam", stage=s)`` for each stage (captum's LayerGradCam: the
    stage output weighted by the spatial mean of the target logit's gradient, summed over channels),
    five times cheaper than five calls.

    Args:
        model: a CoAtNet (analysed as it is, left as it was found).
        image: one image: a (1, C, H, W) or (C, H, W) tensor, or a PIL image.
        target: the class to explain; None explains the predicted class.

    Returns:
        One :class:`Attribution` per stage, S0 first.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> cams = analysis.gradcam_stages(model, torch.randn(1, 28, 28), target=4)
        >>> [(c.stage, c.map.shape) for c in cams][:2]
        [('S0', (28, 28)), ('S1', (28, 28))]
    """

    batch = as_batch(image, model)
    if batch.shape[0] != 1:
        raise ValueError(f"attributions explain one image at a time; got a batch of {batch.shape[0]}")
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    cams, probabilities, (target,) = _stage_cams(model, batch, None if target is None else [target])
    names = class_names(model)
    out = []
    for index, cam in enumerate(cams):
        signed, positive = _upsampled(cam, size), _upsampled(F.relu(cam), size)
        out.append(
            Attribution(
                method="gradcam", target=target, target_name=names[target] if names else None,
                stage=STAGES[index], map=_numpy(positive), signed_map=_numpy(signed),
                probability=float(probabilities[0, target]), image_size=size,
            )
        )  # fmt: skip
    return tuple(out)


def gradcam_maps(
    model: CoAtNet, images: torch.Tensor | Image.Image | Sequence[Image.Image], targets: Sequence[int]
) -> list[np.ndarray]:
    """Grad-CAM of a batch at every stage, for one class per image, from one forward and one backward
    pass: per stage S0..S4 the (B, H, W) maps :func:`attributions` gives as ``map`` (ReLU'd, bilinearly
    upsampled to the input). The images are explained one at a time when the model has a module in
    training mode (BatchNorm then mixes the images of a batch)."""
    from captum.attr import LayerAttribution  # imported when used: captum brings matplotlib

    batch = as_batch(images, model)
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    targets = [int(t) for t in targets]
    if len(targets) != batch.shape[0]:
        raise ValueError(f"give one target per image: {len(targets)} for {batch.shape[0]} images")
    training = any(m.training for m in model.modules())
    pieces = [slice(i, i + 1) for i in range(batch.shape[0])] if training else [slice(0, batch.shape[0])]
    per_piece = [_stage_cams(model, batch[p], targets[p])[0] for p in pieces]
    return [
        _numpy(
            LayerAttribution.interpolate(F.relu(torch.cat([cams[s] for cams in per_piece])), size,
                                         interpolate_mode="bilinear")[:, 0]
        )
        for s in range(len(STAGES))
    ]  # fmt: skip


def _stage_cams(
    model: CoAtNet,
    batch: torch.Tensor,
    targets: Sequence[int] | None,
    *,
    stages: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[list[torch.Tensor], torch.Tensor, list[int]]:
    """Per stage (``stages``: indices into S0..S4, default all) the signed class-activation map
    (B, 1, h, w) of each image's target (captum's LayerGradCam: the stage output weighted by the spatial
    mean of the target logit's gradient, summed over channels), the probabilities (B, classes) and the
    targets (None: the predicted classes). The backward pass reaches no further than the earliest stage
    asked for, and computes no weight's gradient."""
    with call_model(model, private=True, seed=seed) as own, torch.inference_mode(False), torch.enable_grad():
        x = batch.detach().clone().requires_grad_()
        features, outputs = own.forward_intermediates(x)
        logits = own.forward_head(features).float()
        probabilities = logits.detach().softmax(-1)
        if targets is None:
            targets = [int(probabilities[i].argmax()) for i in range(x.shape[0])]
        targets = [_check_target(t, probabilities[i]) for i, t in enumerate(targets)]
        index = torch.tensor(targets, device=logits.device)[:, None]
        chosen = [outputs[i] for i in (range(len(outputs)) if stages is None else stages)]
        gradients = torch.autograd.grad(logits.gather(1, index).sum(), chosen)
    cams = []
    for activation, gradient in zip(chosen, gradients, strict=True):
        weights = gradient.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        cams.append((weights * activation).sum(dim=1, keepdim=True).detach())
    return cams, probabilities, targets


def _check_target(target: int | None, probabilities: torch.Tensor) -> int:
    classes = probabilities.shape[-1]
    if target is None:
        return int(probabilities.argmax())
    if isinstance(target, bool) or not isinstance(target, int | np.integer) or not 0 <= target < classes:
        raise ValueError(f"target must be a class index in [0, {classes - 1}], got {target!r}")
    return int(target)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float32)
