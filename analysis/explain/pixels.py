"""The pixel methods, batched: Integrated Gradients (Sundararajan et al. 2017) smoothed by SmoothGrad
noise (Smilkov et al. 2017) and Occlusion (Zeiler & Fergus 2014), equal to captum's
``NoiseTunnel(IntegratedGradients)`` and ``Occlusion`` (the tests hold them to it), every image, noisy
copy, step and window of a call run in passes of :func:`pass_size` rows. :func:`pixel_maps` is the entry;
the pieces (:func:`integrated_gradients_rows`, :func:`occlusion_windows` ...) let the sanity checks share
the trained model's passes across randomised copies. The model is analysed as it is and never touched:
input gradients run through :func:`analysis.core.running.input_gradient_model`, forward passes through
:func:`analysis.core.running.call_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from analysis.core.running import call_model, input_gradient_model
from coatnet.model.network import CoAtNet

NT_SAMPLES, NOISE_LEVEL, N_STEPS = 4, 0.15, 16  # Integrated Gradients' SmoothGrad copies, noise and steps


def pixel_maps(
    model: CoAtNet,
    batch: torch.Tensor,
    targets: Sequence[int],
    *,
    method: str,
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
) -> torch.Tensor:
    """The signed Integrated Gradients or Occlusion map of every image of a preprocessed batch
    (B, C, H, W), for one class per image: (B, H, W), each what :func:`attributions` gives as
    ``signed_map`` for that image alone (same arguments), all images' passes batched together.

    ``internal_batch_size`` (Integrated Gradients) and ``perturbations_per_eval`` (Occlusion) are the
    images per forward pass. In eval mode the passes mix images freely. With a module in training mode
    (BatchNorm then mixes the images of a pass, stochastic depth draws from the call's generator) each
    image is a call of its own, its passes never holding another image's rows: one noisy copy's steps
    at a time for Integrated Gradients (as one ``IntegratedGradients`` call per noisy copy batches
    them), captum's passes for Occlusion."""
    if method not in ("integrated_gradients", "occlusion"):
        raise ValueError(f"pixel_maps makes integrated_gradients or occlusion, not {method!r}")
    targets = [int(t) for t in targets]
    if len(targets) != batch.shape[0]:
        raise ValueError(f"give one target per image: {len(targets)} for {batch.shape[0]} images")
    classes = getattr(getattr(model, "config", None), "num_classes", None)
    wrong = [t for t in targets if classes is not None and not 0 <= t < classes]
    if wrong:
        raise ValueError(f"targets must be class indices in [0, {classes - 1}], got {wrong[0]}")
    training = any(m.training for m in model.modules())
    if training and batch.shape[0] > 1:  # each image with the generator a call for it alone would have
        return torch.cat([
            pixel_maps(model, batch[i : i + 1], [t], method=method, noise_tunnel=noise_tunnel,
                       nt_samples=nt_samples, noise_level=noise_level, n_steps=n_steps,
                       internal_batch_size=internal_batch_size, seed=seed, window=window, stride=stride,
                       perturbations_per_eval=perturbations_per_eval,
                       progress=None if progress is None else _share(progress, i, len(targets)))
            for i, t in enumerate(targets)
        ])  # fmt: skip
    with torch.inference_mode(False):  # normal tensors, even if the caller is in inference mode
        x = batch.detach().clone()
        if method == "integrated_gradients":
            return _integrated_gradients(
                model, x, targets, noise_tunnel, nt_samples, noise_level, n_steps, internal_batch_size,
                seed, training, progress,
            )  # fmt: skip
        return _occlusion(model, x, targets, window, stride, perturbations_per_eval, training, seed, progress)


def pass_size(size: tuple[int, int], *, least: int = 8, most: int = 128) -> int:
    """Images per forward pass for inputs of ``size`` (H, W): a 224 x 224 image's worth of pixels, at
    least ``least`` images and at most ``most``. More images per pass stop paying on the CPU well before
    memory runs out: demo-pre's 28 px forward pass costs the same per image at 32 to 128 images, and
    half as much again at 512 (the caches overflow)."""
    return max(least, min(most, 224 * 224 // max(1, size[0] * size[1])))


def _passes(count: int, group: int, per_pass: int, training: bool) -> list[slice]:
    """The slices of ``count`` rows run in one forward pass each: ``per_pass`` rows at a time, never
    across a ``group`` of rows (one image's, as captum runs them) when the model is in training mode."""
    if not training:
        return [slice(a, min(a + per_pass, count)) for a in range(0, count, per_pass)]
    return [
        slice(a, min(a + per_pass, start + group))
        for start in range(0, count, group)
        for a in range(start, start + group, per_pass)
    ]


def _integrated_gradients(
    model: CoAtNet,
    x: torch.Tensor,
    targets: list[int],
    noise_tunnel: bool,
    nt_samples: int,
    noise_level: float,
    n_steps: int,
    per_pass: int,
    seed: int,
    training: bool,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """(B, H, W) Integrated Gradients from a zero baseline, summed over channels, SmoothGrad-averaged:
    captum's ``NoiseTunnel(IntegratedGradients)`` with its Gauss-Legendre steps, every image's noise drawn
    from a generator seeded ``seed`` (as a call for that image alone), all (image, noisy copy, step)
    rows run ``per_pass`` at a time."""
    if per_pass < 1:
        raise ValueError(f"the batch size must be >= 1, got {per_pass}")
    count = x.shape[0]
    samples, alpha, weights = integrated_gradients_rows(
        x, noise_tunnel=noise_tunnel, nt_samples=nt_samples, noise_level=noise_level, n_steps=n_steps,
        seed=seed,
    )  # fmt: skip
    rows = samples.shape[0] * n_steps  # row r: noisy copy r // n_steps at step r % n_steps
    per_image = samples.shape[0] // count
    chosen = torch.tensor(targets, device=x.device).repeat_interleave(per_image * n_steps)
    total = torch.zeros_like(samples)
    passes = _passes(rows, n_steps, per_pass, training)
    with input_gradient_model(model, seed=seed) as own, torch.inference_mode(False), torch.enable_grad():
        for k, rows_of in enumerate(passes):
            index = torch.arange(rows_of.start, rows_of.stop, device=x.device)
            sample, step = index // n_steps, index % n_steps
            scaled = (alpha[step].view(-1, 1, 1, 1) * samples[sample]).requires_grad_()
            logits = own(scaled)
            (gradient,) = torch.autograd.grad(logits.gather(1, chosen[index, None]).sum(), scaled)
            total.index_add_(0, sample, gradient.detach() * weights[step].view(-1, 1, 1, 1))
            if progress is not None:
                progress((k + 1) / (len(passes) + 1))
    return integrated_gradients_map(total, samples, count)


def integrated_gradients_rows(
    x: torch.Tensor, *, noise_tunnel: bool, nt_samples: int, noise_level: float, n_steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What Integrated Gradients integrates over for the images ``x`` (B, C, H, W): the noisy copies
    (B * S, C, H, W; S = ``nt_samples`` with the noise tunnel, else 1), every image's noise drawn from a
    generator seeded ``seed`` (as a call for that image alone) with standard deviation ``noise_level``
    times the image's max - min, and captum's Gauss-Legendre points ``alpha`` and weights (``n_steps``):
    row (copy i, step s) is ``alpha[s] * copies[i]``, its input gradient weighted by ``weights[s]``."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    if n_steps < 1 or nt_samples < 1:
        raise ValueError(f"n_steps and nt_samples must be >= 1, got {n_steps} and {nt_samples}")
    samples = x[:, None]  # (B, S, C, H, W)
    if noise_tunnel:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn((nt_samples, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
        sigma = noise_level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        samples = x[:, None] + sigma.view(-1, 1, 1, 1, 1) * noise[None]
    step_sizes, alphas = approximation_parameters("gausslegendre")
    weights = torch.tensor(step_sizes(n_steps), device=x.device, dtype=x.dtype)
    alpha = torch.tensor(alphas(n_steps), device=x.device, dtype=x.dtype)
    return samples.flatten(0, 1), alpha, weights


def integrated_gradients_map(total: torch.Tensor, samples: torch.Tensor, count: int) -> torch.Tensor:
    """(B, H, W) Integrated Gradients of ``count`` images from the weighted sum of the input gradients
    of each noisy copy ``total`` and the copies ``samples`` (both (B * S, C, H, W),
    :func:`integrated_gradients_rows`): the zero baseline's attributions ``copy * total``, averaged over
    each image's noisy copies and summed over channels."""
    attributions = (total * samples).view(count, samples.shape[0] // count, *samples.shape[1:])
    return attributions.mean(1).sum(1)


def occlusion_windows(
    size: tuple[int, int],
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Occlusion's windows over an (H, W) image as (P, H, W) masks (1 inside the window): captum's
    ``Occlusion`` positions (every shift by the stride, the last one clipped at the edge when the stride
    does not divide the rest), the window a seventh of each side and the stride half the window by
    default. A stride larger than the window leaves pixels no window covers."""
    height, width = size
    win = _pair(window) if window is not None else (max(1, height // 7), max(1, width // 7))
    step = _pair(stride) if stride is not None else (max(1, win[0] // 2), max(1, win[1] // 2))
    if not (0 < win[0] <= height and 0 < win[1] <= width and step[0] > 0 and step[1] > 0):
        raise ValueError(
            f"occlusion window {win} and stride {step} must be positive and fit {height}x{width}"
        )
    # captum's shifts: one more than fit whole when the stride does not divide the rest, clipped at the edge
    tops = range(0, min(height - 1, -(-(height - win[0]) // step[0]) * step[0]) + 1, step[0])
    lefts = range(0, min(width - 1, -(-(width - win[1]) // step[1]) * step[1]) + 1, step[1])
    masks = torch.zeros(len(tops) * len(lefts), height, width)
    for k, (top, left) in enumerate((t, left) for left in lefts for t in tops):  # captum's order
        masks[k, top : top + win[0], left : left + win[1]] = 1
    return masks


def _occlusion(
    model: CoAtNet,
    x: torch.Tensor,
    targets: list[int],
    window: int | Sequence[int] | None,
    stride: int | Sequence[int] | None,
    per_pass: int,
    training: bool,
    seed: int,
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """(B, H, W) Occlusion with a window over all channels set to 0: captum's ``Occlusion`` (the drop
    of the target logit, averaged over the windows covering each pixel; 0 where no window does), every
    (image, window) row run ``per_pass`` at a time."""
    if per_pass < 1:
        raise ValueError(f"perturbations_per_eval must be >= 1, got {per_pass}")
    count = x.shape[0]
    masks = occlusion_windows((int(x.shape[-2]), int(x.shape[-1])), window, stride).to(x)
    windows = masks.shape[0]
    chosen = torch.tensor(targets, device=x.device)
    drops = torch.empty(count * windows, device=x.device, dtype=torch.float32)
    passes = _passes(count * windows, windows, per_pass, training)
    with call_model(model, seed=seed) as own, torch.inference_mode():
        base = torch.cat([
            own(x[a : a + per_pass]).float().gather(1, chosen[a : a + per_pass, None])[:, 0]
            for a in range(0, count, per_pass)
        ])  # fmt: skip
        for k, rows_of in enumerate(passes):
            index = torch.arange(rows_of.start, rows_of.stop, device=x.device)
            image, where = index // windows, index % windows
            occluded = x[image] * (1 - masks[where, None])
            drops[index] = base[image] - own(occluded).float().gather(1, chosen[image, None])[:, 0]
            if progress is not None:
                progress((k + 1) / (len(passes) + 1))
    return occlusion_map(drops.view(count, windows), masks)


def occlusion_map(drops: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) occlusion maps from each image's drop of the target logit (B, P) under each window of
    ``masks`` (P, H, W, :func:`occlusion_windows`): per pixel the mean drop of the windows covering it, 0
    where none does."""
    covered = masks.sum(0)
    summed = torch.einsum("bp,phw->bhw", drops.float(), masks.float())
    return torch.where(covered > 0, summed / covered.clamp(min=1), torch.zeros_like(summed))


def _share(progress: Callable[[float], None], index: int, count: int) -> Callable[[float], None]:
    """``progress`` for the ``index``-th of ``count`` equal parts of the work."""
    return lambda share: progress((index + share) / count)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)
