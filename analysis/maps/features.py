"""What each stage computes, as pictures: the output of S0..S4 for one image.

Per stage, the channel mean of the absolute activations (where the stage responds at all) and the few
channels with the most energy (mean squared activation), each on the stage's own grid. One forward pass
(``forward_intermediates``) under ``torch.inference_mode()``; the model is left as found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.geometry import NamedBlocks
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class StageFeatures:
    """The output of one stage for a batch of images.

    Attributes:
        name: ``S0`` .. ``S4``.
        kind: ``conv`` / ``patch`` (stem), ``C``, ``T`` or ``C+T``.
        grid: (H, W) of its output; ``stride``: input pixels per grid step.
        channels: output channels.
        energy: (B, H, W) float32, the mean over channels of |activation|.
        top: (B, k, H, W) float32, the k channels with the largest mean squared activation, per image.
        top_index: (B, k) int64, which channels those are.
    """

    name: str
    kind: str
    grid: tuple[int, int]
    stride: int
    channels: int
    energy: np.ndarray
    top: np.ndarray
    top_index: np.ndarray


@dataclass(frozen=True)
class FeatureMaps(NamedBlocks):
    """:class:`StageFeatures` of S0..S4 (``blocks``, so ``block("S2")`` finds one) and the input size."""

    blocks: tuple[StageFeatures, ...]
    image_size: tuple[int, int]


def feature_maps(
    model: CoAtNet, images: torch.Tensor | Image.Image | Sequence[Image.Image], *, top: int = 4
) -> FeatureMaps:
    """The output of every stage: channel-mean |activation| and the ``top`` strongest channels.

    Args:
        model: a CoAtNet.
        images: a preprocessed (B, C, H, W) batch, a (C, H, W) image, or PIL images.
        top: how many channels to keep per stage (fewer when a stage has fewer).

    Returns:
        :class:`FeatureMaps`, one :class:`StageFeatures` per stage in forward order.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    batch = as_batch(images, model)
    infos = model.stage_info(tuple(batch.shape[-2:]))
    with call_model(model) as own, torch.inference_mode():
        _, outputs = own.forward_intermediates(batch)
    stages = []
    for info, output in zip(infos, outputs, strict=True):
        output = output.float()
        k = min(top, output.shape[1])
        strongest = output.pow(2).mean(dim=(2, 3)).topk(k, dim=1).indices  # (B, k)
        chosen = torch.take_along_dim(output, strongest[:, :, None, None], dim=1)
        stages.append(
            StageFeatures(
                name=info.name,
                kind=info.kind,
                grid=tuple(output.shape[-2:]),
                stride=info.reduction,
                channels=output.shape[1],
                energy=output.abs().mean(dim=1).cpu().numpy(),
                top=chosen.cpu().numpy(),
                top_index=strongest.cpu().numpy(),
            )
        )
    return FeatureMaps(blocks=tuple(stages), image_size=tuple(batch.shape[-2:]))
