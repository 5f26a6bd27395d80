"""Class-specific relevance through the attention blocks: Chefer, Gur and Wolf 2021 ("Generic
Attention-model Explainability", ICCV), and gradient-weighted rollout (vit-explain's "grad rollout").

Both take, for every attention block, the effective weights A (B, heads, N, N) the block applied and the
gradient of the chosen class's logit with respect to them, from one forward and one backward pass:

- ``relevance`` (Chefer et al., their Eq. 5-6): ``A_bar = mean over heads of (grad_A * A)^+`` and, from
  the identity, ``R <- R + A_bar R`` per block (no normalisation);
- ``grad_rollout`` (vit-explain): ``G = (mean over heads of grad_A * A)^+``, the ``discard_ratio`` smallest
  entries of each image's G set to 0, then rollout's residual mix ``(G + I) / 2`` with rows normalised,
  ``R <- ((G + I) / 2) R``.

Between S3 and S4 the relevance follows the model's own pooling, as :func:`analysis.attention_rollout`
does (:func:`analysis.maps.rollout.compose`), so R is (N_last, N_first): how much each position of the last
attention block's grid draws, for this class, from each position of the first one's.

CoAtNet has no class token: the logits come from the global average of the last grid (then the head), so
the map for the pooled output is **the mean of R's rows** on the first attention block's grid.

Post-normalization: the weights ``softmax(content) + w`` are used as the block applied them, signed.
``grad_A * A`` keeps the sign of their product, so the positive part keeps the entries where a weight's
contribution raises the class's logit, whichever sign the weight has; nothing is renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.geometry import BlockRef, WindowedStep, attention_blocks, windowed_step
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.explain.attributions import _check_target
from analysis.maps.rollout import compose
from coatnet.model.network import CoAtNet
from coatnet.model.recording import record_attention
from coatnet.weights.checkpoint import class_names

RELEVANCE_METHODS = ("relevance", "grad_rollout")


@dataclass(frozen=True)
class ClassRelevance:
    """The class-specific relevance of a batch (:func:`class_relevance`).

    Attributes:
        method: ``relevance`` (Chefer et al.) or ``grad_rollout``.
        targets: (B,) the explained class of each image.
        target_names: their names from the checkpoint, or None.
        probabilities: (B,) the softmax probability of each image's target.
        matrix: (B, N_last, N_first) float32: the relevance of each position of the first attention
            block's grid for each query of the last block's.
        map: (B, H_first, W_first): the mean of the matrix's rows, the map for the pooled output.
        blocks: the attention blocks, in forward order.
        grid_first: the (H, W) grid of the first attention block.
        grid_last: the (H, W) grid of the last attention block.
        stride_first: input pixels per step of the first grid.
        image_size: the input (H, W).
        mode: ``pre`` or ``post`` normalization.
        label: a one-line description for figure titles.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> relevance = analysis.class_relevance(model, torch.randn(1, 1, 28, 28), target=4)
        >>> relevance.target_names, relevance.matrix.shape, relevance.grid_first
        (('Coat',), (1, 49, 49), (7, 7))
    """

    method: str
    targets: tuple[int, ...]
    target_names: tuple[str, ...] | None
    probabilities: np.ndarray
    matrix: np.ndarray
    map: np.ndarray
    blocks: tuple[str, ...]
    grid_first: tuple[int, int]
    grid_last: tuple[int, int]
    stride_first: int
    image_size: tuple[int, int]
    mode: str
    label: str


def class_relevance(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    target: int | Sequence[int] | None = None,
    method: str = "relevance",
    discard_ratio: float = 0.9,
) -> ClassRelevance:
    """Which positions of the first attention grid the model's logit for a class rests on.

    Args:
        model: a CoAtNet with at least one attention block (analysed as it is, left as it was found).
        images: a preprocessed (B, C, H, W) batch, a (C, H, W) image, or PIL images.
        target: the class to explain, one for the batch or one per image; None explains each image's
            predicted class.
        method: ``relevance`` (Chefer et al. 2021) or ``grad_rollout`` (see the module's docstring).
        discard_ratio: ``grad_rollout`` only: the share of each block's smallest fused entries set to 0
            (vit-explain's default 0.9).

    Returns:
        A :class:`ClassRelevance`.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> relevance = analysis.class_relevance(model, torch.randn(2, 1, 28, 28), target=[4, 0])
        >>> relevance.map.shape, relevance.targets  # the evidence for each class, on S3's grid
        ((2, 7, 7), (4, 0))
    """
    if method not in RELEVANCE_METHODS:
        raise ValueError(f"unknown relevance method {method!r}; choose one of {', '.join(RELEVANCE_METHODS)}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    batch = as_batch(images, model)
    image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
    refs = attention_blocks(model, image_size)
    if not refs:
        raise ValueError(f"{model.config.name} ({model.config.layout}) has no attention blocks to explain")
    with call_model(model, private=True) as own, torch.inference_mode(False):
        x = batch.detach().float().clone()
        # in training mode BatchNorm mixes the images of a batch: explain them one at a time there
        one_by_one = any(m.training for m in own.modules())
        pieces = [slice(i, i + 1) for i in range(x.shape[0])] if one_by_one else [slice(0, x.shape[0])]
        parts = [_weighted_maps(own, x[p], target, p, refs) for p in pieces]
    probabilities = np.concatenate([p[0] for p in parts])
    targets = tuple(t for p in parts for t in p[1])
    blocks = [np.concatenate([p[2][k] for p in parts]) for k in range(len(refs))]
    weights = [np.concatenate([p[3][k] for p in parts]) for k in range(len(refs))]
    stage_inputs = {s: torch.cat([p[4][s] for p in parts]) for s in parts[0][4]}
    grids = [ref.grid for ref in refs]
    updates = [
        _update(g, a, ref, method, discard_ratio) for g, a, ref in zip(blocks, weights, refs, strict=True)
    ]

    def pool_input(ref) -> torch.Tensor:
        with call_model(ref.owner) as own_block, torch.inference_mode():
            return ref.pool_input(stage_inputs[ref.stage - 1], own_block)

    matrix = compose(refs, grids, updates, pool_input).astype(np.float32)
    first, last = refs[0], refs[-1]
    names = class_names(model)
    mode = model.attention_mode
    what = "class relevance (Chefer et al. 2021)" if method == "relevance" else "gradient-weighted rollout"
    span = first.name if len(refs) == 1 else f"{first.name}..{last.name}"
    return ClassRelevance(
        method=method,
        targets=targets,
        target_names=tuple(names[t] for t in targets) if names else None,
        probabilities=probabilities,
        matrix=matrix,
        map=matrix.mean(axis=1).reshape(-1, *first.grid),
        blocks=tuple(ref.name for ref in refs),
        grid_first=first.grid,
        grid_last=last.grid,
        stride_first=first.stride,
        image_size=image_size,
        mode=mode,
        label=f"{what} {span}, {mode}-normalization, mean over the pooled output's positions",
    )


def _weighted_maps(own: CoAtNet, x: torch.Tensor, target, rows: slice, refs) -> tuple:
    """One forward and backward pass of ``x``: the target probabilities and classes, per block the
    gradient of the targets' logits with respect to the effective weights and the weights (float64
    (B, heads, N, N)), and the stage outputs a max pool between attention blocks takes."""
    x = x.requires_grad_()  # so gradients reach the weights even when the parameters are frozen
    with torch.enable_grad(), record_attention(detach=False) as records:
        features, stages = own.forward_intermediates(x)
        logits = own.forward_head(features).float()
    probabilities = logits.detach().softmax(-1)
    targets = _targets(target, probabilities, rows)
    chosen = logits.gather(1, torch.tensor(targets, device=logits.device)[:, None]).sum()
    by_name = {r.name: r for r in records}
    weights = [by_name[ref.name].weights for ref in refs]
    gradients = torch.autograd.grad(chosen, weights)
    picked = probabilities.gather(1, torch.tensor(targets, device=logits.device)[:, None])[:, 0]
    stage_inputs = {ref.stage - 1: stages[ref.stage - 1].detach() for ref in refs[1:]}
    return (
        picked.cpu().numpy(),
        targets,
        [g.detach().double().cpu().numpy() for g in gradients],
        [w.detach().double().cpu().numpy() for w in weights],
        stage_inputs,
    )


def _targets(target, probabilities: torch.Tensor, rows: slice) -> list[int]:
    batch = probabilities.shape[0]
    if target is None or isinstance(target, int | np.integer):
        return [_check_target(target, probabilities[i]) for i in range(batch)]
    chosen = list(target)[rows]
    if len(chosen) != batch:
        raise ValueError(f"give one target per image: {len(list(target))} targets for the batch")
    return [_check_target(t, probabilities[i]) for i, t in enumerate(chosen)]


def _update(
    gradient: np.ndarray, weights: np.ndarray, ref: BlockRef, method: str, discard_ratio: float
) -> np.ndarray | WindowedStep:
    """One block's step U, so that ``R <- U R``: ``I + A_bar`` (relevance) or the normalised
    ``(G + I) / 2`` (grad rollout). ``gradient`` and ``weights`` are as recorded, per window for windowed
    attention (B * windows, heads, n, n): the fused entries are made per window, grad rollout discards
    among the entries the attention computed (an image's windows together), and the result is the
    block-sparse operator on the whole grid, applied window by window
    (:class:`analysis.core.geometry.WindowedStep`); for global attention the (B, N, N) matrix."""
    positions, tokens = ref.positions.numpy(), ref.grid[0] * ref.grid[1]
    if method == "relevance":
        fused = np.clip(gradient * weights, 0.0, None).mean(axis=1)  # (B * windows, n, n)
        return windowed_step(fused, positions, tokens, weight=1.0, identity=1.0)
    fused = np.clip((gradient * weights).mean(axis=1), 0.0, None)  # (B * windows, n, n)
    if discard_ratio > 0:
        flat = fused.reshape(-1, positions.shape[0] * fused.shape[-1] ** 2)  # an image's windows together
        drop = int(flat.shape[1] * discard_ratio)
        lowest = np.argsort(flat, axis=1, kind="stable")[:, :drop]
        np.put_along_axis(flat, lowest, 0.0, axis=1)
        fused = flat.reshape(fused.shape)
    return windowed_step(fused, positions, tokens, weight=0.5, identity=0.5, normalise=True)
