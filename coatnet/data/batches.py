"""Batches: iterating a dataset in batches, and turning uint8 batches into model inputs."""

from __future__ import annotations

import torch

from coatnet.data.datasets import ImageFolder, TensorImages
from coatnet.data.preprocessing import Preprocessing


def iterate_batches(
    dataset: TensorImages | ImageFolder,
    indices: torch.Tensor,
    batch_size: int,
    *,
    workers: int = 0,
    drop_last: bool = False,
):
    """Yield ``(images uint8 (B, C, H, W), labels (B,))`` over ``indices`` in order.

    In-memory datasets are sliced directly; folders decode in ``workers`` processes, and unreadable
    images are dropped from their batch and counted in ``dataset.skipped``.
    """
    if isinstance(dataset, TensorImages):
        stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
        for start in range(0, stop, batch_size):
            chosen = indices[start : start + batch_size]
            yield dataset.images[chosen], dataset.labels[chosen]
        return
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices.tolist()),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate_readable,
        drop_last=drop_last,
        persistent_workers=False,
    )
    for images, labels, failures in loader:
        for failure in failures:
            path, _, reason = failure.partition(": ")
            dataset.skipped.add(path, reason)
        yield images, labels


def _collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    good = [(image, label) for image, label in items if image is not None]
    failures = [reason for image, reason in items if image is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), failures
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), failures


def prepare_batch(
    images: torch.Tensor, preprocessing: Preprocessing, *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C', H', W') in [0, 1], resized to ``preprocessing.size`` and
    converted to its ``channels``, but not normalized (augmentation comes first: :func:`normalize`)."""
    x = images.to(device, non_blocking=True).float().div_(255)
    channels = preprocessing.channels
    if x.shape[1] != channels:
        if channels == 1:  # ITU-R 601-2 luma, as Pillow's "L"
            weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        else:
            x = x.expand(-1, channels, -1, -1)
    size = preprocessing.size
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(
            x, size=size, mode="bilinear", antialias=True, align_corners=False
        )
    return x


def normalize(x: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    mean = torch.tensor(preprocessing.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
