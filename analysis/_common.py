"""What every analysis shares: the model a call runs (the shared model, or a twin of the call's own), the
attention blocks and stage geometry of a model, and input preparation.

Analyses never flip train/eval on a model (a served model may be shared by many threads): a model in
training mode is analysed in training mode. Every call runs through :func:`call_model`, which hands a call
that would change anything on the model (hooks, gradients, BatchNorm statistics, random draws) a twin of
its own: no lock, no restoring afterwards, and no call ever observes another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from coatnet.batches import normalize, prepare_batch
from coatnet.blocks import TransformerBlock
from coatnet.checkpoint import default_preprocessing
from coatnet.datasets import image_to_tensor
from coatnet.model import CoAtNet
from coatnet.randomness import private_random

M = TypeVar("M", bound=nn.Module)


@contextmanager
def call_model(model: M, *, private: bool = False, seed: int = 0) -> Iterator[M]:
    """The model one analysis call runs, so that no call sees or disturbs another's forward pass.

    One model object serves every thread of the app. A forward pass of a model in eval mode, without
    hooks or gradients, changes nothing on it: such a call gets ``model`` itself. A call that registers
    hooks or takes gradients (``private=True``), and any call on a model with a module in training mode
    (its forward passes update BatchNorm statistics), gets :func:`twin` instead: a model of its own that
    shares the parameters' storage, so the hooks it registers fire for this call only, and nothing it does
    (gradients, ``requires_grad``, buffers) reaches the shared model. In training mode stochastic depth
    and dropout draw from a generator seeded with ``seed`` (:func:`coatnet.private_random`): the call
    repeats exactly and the global random state is not touched.

    Args:
        model: the shared model; never changed.
        private: the call registers hooks or takes gradients.
        seed: the stochastic layers' seed, in training mode.

    Examples:
        >>> with call_model(model, private=True) as own:
        ...     handle = own.stem.register_forward_hook(hook)  # fires for this call's passes only
    """
    training = any(m.training for m in model.modules())
    own = twin(model) if private or training else model
    if not training:
        yield own
        return
    device = next(model.parameters()).device
    with private_random(torch.Generator(device=device).manual_seed(seed)):
        yield own


def twin(model: M) -> M:
    """A structural copy of ``model`` for one call: new module objects with hook registries of their own
    (holding the hooks the model's owner registered; a hook registered on the twin stays on it), new
    ``Parameter`` objects viewing the same storage (their own ``requires_grad`` and ``.grad``), the
    buffers of modules in training mode cloned (the others shared: nothing writes them). Other attributes
    are shared. No tensor data is copied but those buffers; a weight updated in place (training in
    another thread) is seen by both."""
    memo: dict[int, Any] = {}

    def copy_parameter(p: nn.Parameter | None) -> nn.Parameter | None:
        if p is None:
            return None
        if id(p) not in memo:  # tied weights stay tied
            memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.requires_grad)
        return memo[id(p)]

    def copy_module(module: nn.Module) -> nn.Module:
        if id(module) in memo:  # a module used twice stays one module
            return memo[id(module)]
        copy = memo[id(module)] = object.__new__(type(module))
        state = dict(module.__dict__)
        for name, value in module.__dict__.items():
            if "hooks" in name and isinstance(value, dict):  # the owner's hooks, in registries of its own
                state[name] = type(value)(value)
        state["_parameters"] = {name: copy_parameter(p) for name, p in module._parameters.items()}
        state["_buffers"] = {
            name: b.clone() if module.training and b is not None else b for name, b in module._buffers.items()
        }
        state["_modules"] = {
            name: None if m is None else copy_module(m) for name, m in module._modules.items()
        }
        copy.__dict__ = state
        return copy

    with torch.inference_mode(False):  # normal tensors, even when called under inference mode
        return copy_module(model)


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


def read_summary(
    path: Path, file_name: str, *, named: str, what: str, give: str, keys: Sequence[str]
) -> dict:
    """A summary a command wrote (study.json, layouts.json): ``path`` is the file or the folder holding
    ``file_name``.

    Raises:
        ValueError: one line: nothing readable there (``give`` says what to give instead), or no ``keys``.
    """
    if path.is_dir():
        path = path / file_name
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"no {what} at {named!r} ({type(error).__name__}): give {give}") from None
    if not isinstance(found, dict) or not set(keys) <= found.keys():
        listed = ", ".join(keys[:-1]) + (" and " if len(keys) > 1 else "") + keys[-1]
        raise ValueError(f"{path} is not a {what} (no {listed})")
    return found


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
