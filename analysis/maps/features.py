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
    """The output of every stage, S0..S4 (:func:`feature_maps`).

    Attributes:
        blocks: one :class:`StageFeatures` per stage (``name``, ``kind``, ``grid``, ``stride``,
            ``channels``, ``energy``: (B, H, W) channel-mean |activation|, ``top``: (B, k, H, W) the
            strongest channels, ``top_index``: their indices); ``block("S2")`` finds one.
        image_size: the input (H, W) in pixels.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> features = analysis.feature_maps(model, torch.randn(1, 1, 28, 28), top=2)
        >>> s3 = features.block("S3")
        >>> s3.grid, s3.channels, s3.top.shape
        ((7, 7), 128, (1, 2, 7, 7))
    """

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

    Examples:
        >>> import torch, analysis
        >>> features = analysis.feature_maps(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> [(s.name, s.grid) for s in features.blocks]
        [('S0', (14, 14)), ('S1', (14, 14)), ('S2', (14, 14)), ('S3', (7, 7)), ('S4', (7, 7))]
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
