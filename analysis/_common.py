"""What every analysis shares: a per-model lock, a guard that leaves the model as it was found, the
attention blocks and stage geometry of a model, and input preparation.

Analyses never flip train/eval on a model (a served model may be shared by many threads): a model in
training mode is analysed in training mode. Methods that need hooks or gradients take the model's lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from PIL import Image

from coatnet.batches import normalize, prepare_batch
from coatnet.blocks import TransformerBlock
from coatnet.checkpoint import default_preprocessing
from coatnet.datasets import image_to_tensor
from coatnet.model import CoAtNet

_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The lock of ``model``: hold it while hooks are registered on it or gradients flow through it."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def preserved(model: torch.nn.Module) -> Iterator[None]:
    """Leave ``model`` as found: train/eval mode, ``requires_grad`` flags, ``.grad`` tensors, buffers
    (a model in training mode updates BatchNorm statistics on every forward), and no hook left behind,
    even when the body raises. Hold :func:`model_lock` around it."""
    training = {m: m.training for m in model.modules()}
    in_training = any(training.values())
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if in_training else []
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    hooks = {
        m: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()
    }
    try:
        yield
    finally:
        for m, mode in training.items():
            m.training = mode
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        for m, (n_fwd, n_pre, n_bwd) in hooks.items():
            for registry, keep in (
                (m._forward_hooks, n_fwd), (m._forward_pre_hooks, n_pre), (m._backward_hooks, n_bwd),
            ):  # fmt: skip
                for key in list(registry)[keep:]:
                    del registry[key]


@dataclass(frozen=True)
class BlockRef:
    """One attention block: its name (``S3.0``), stage and block index, module, and geometry."""

    name: str
    stage: int
    block: int
    module: TransformerBlock
    grid: tuple[int, int]
    stride: int  # input pixels per grid step


def attention_blocks(model: CoAtNet, img_size: tuple[int, int] | None = None) -> list[BlockRef]:
    """Every Transformer block of ``model``, in forward order, with its grid for ``img_size``."""
    infos = model.stage_info(img_size)
    out = []
    for s, stage in enumerate(model.stages, start=1):
        for b, block in enumerate(stage.blocks):
            if isinstance(block, TransformerBlock):
                info = infos[s]
                out.append(BlockRef(f"S{s}.{b}", s, b, block, tuple(info.grid), info.reduction))
    return out


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


def to_jsonable(value: Any) -> Any:
    """Results (dataclasses of numpy arrays, tuples, dicts) as plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def display_image(image: torch.Tensor, preprocessing: dict[str, Any]) -> np.ndarray:
    """A normalized (C, H, W) input back as the uint8 (H, W, C) picture the model sees."""
    mean = torch.tensor(preprocessing["mean"]).view(-1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()


class NamedBlocks:
    """For results holding ``blocks`` (each with a ``name``): ``names`` and ``block(name)``."""

    blocks: tuple

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def block(self, name: str):
        """The block called ``name`` (``S3.0``); a KeyError names the blocks there are."""
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"no block {name!r}; this result holds {', '.join(self.names) or 'none'}")
