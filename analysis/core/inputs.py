"""Inputs of an analysis: the model's preprocessing, images as a batch on its device, and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from coatnet.data.batches import normalize, prepare_batch
from coatnet.data.datasets import image_to_tensor
from coatnet.weights.checkpoint import default_preprocessing


def preprocessing_of(model: torch.nn.Module) -> dict[str, Any]:
    """The checkpoint's preprocessing, or the default for a model nobody described."""
    info = getattr(model, "checkpoint_info", None)
    return dict(info.preprocessing) if info is not None else default_preprocessing(model.config)


def as_batch(
    images: torch.Tensor | Image.Image | Sequence[Image.Image], model: torch.nn.Module
) -> torch.Tensor:
    """A float batch (B, C, H, W) on the model's device: tensors pass through (a (C, H, W) gets a batch
    axis); PIL images are prepared with the model's own preprocessing."""
    device = next(model.parameters()).device
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
        return batch.to(device)
    pil = [images] if isinstance(images, Image.Image) else list(images)
    pre = preprocessing_of(model)
    size = tuple(pre["size"])
    raw = torch.stack([
        image_to_tensor(im, size, pre["channels"], pre.get("interpolation", "bilinear"), pre.get("crop", 1.0))
        for im in pil
    ])  # fmt: skip
    return normalize(prepare_batch(raw, pre, device=device), pre)


def display_image(image: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """A normalized (C, H, W) input back as the uint8 (H, W, C) picture the model sees."""
    mean = torch.tensor(preprocessing["mean"]).view(-1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()
