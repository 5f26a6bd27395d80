"""Toy models whose attention the tests set by hand, shared by the attention, rollout and statistics tests.

``toy()`` is coatnet_toy (C-C-T-T, 4 heads of 8 channels) at 16x16 with strides (1, 1, 2, 2, 2): S3.0 on a
4x4 grid (4 px per step), S4.0 on a 2x2 grid (8 px per step), pooled from S3 with the config's pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import coatnet
from analysis.maps.rollout import pooling_link
from coatnet.model.attention import RelativeAttention
from coatnet.model.blocks import TransformerBlock
from tests.support.model_state import Snapshot, snapshot

SIZE = 16


def toy(
    *, attention: str = "pre", strides: tuple[int, ...] = (1, 1, 2, 2, 2), **overrides
) -> coatnet.CoAtNet:
    """A seeded coatnet_toy at 16x16, in eval mode."""
    return toy_model(img_size=SIZE, strides=strides, attention=attention, **overrides)


def rmlp() -> coatnet.CoAtNet:
    """A slim relative-position-MLP model (timm's rmlp nano, narrowed): S3 4x4, S4 2x2, average pooling."""
    torch.manual_seed(0)
    model = coatnet.create_model(
        "coatnet_rmlp_nano_rw_224", img_size=64, dims=(32, 32, 64, 64), depths=(1, 1, 2, 1)
    )
    return model.eval()


def maxvit_toy(*, attention: str = "pre") -> coatnet.CoAtNet:
    """A slim seeded MaxViT at 16x16 in eval mode: S1-S2 on 8x8 grids in 2x2 windows and 2x2 grid groups
    dilated by 4, S3-S4 on 4x4 (strides 2-1-1-2-1, as maxvit_pico's)."""
    torch.manual_seed(0)
    model = coatnet.create_model(
        "maxvit_pico", img_size=SIZE, window_size=2, grid_size=2, dims=(16, 16, 32, 32),
        depths=(1, 1, 1, 1), head_dim=8, attention=attention,
    )  # fmt: skip
    return model.eval()


def trained_looking(model: coatnet.CoAtNet, seed: int = 0) -> coatnet.CoAtNet:
    """``model`` in eval mode with every BatchNorm's statistics and affine weights drawn far from their
    defaults (a fold that ignores one of them, or folds an identity, would then show); every other weight
    as it was."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
    return model.eval()


def images(batch: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def attentions(model: coatnet.CoAtNet) -> list[RelativeAttention]:
    return [m.attn for m in model.modules() if isinstance(m, TransformerBlock)]


@torch.no_grad()
def zero_qk(attn: RelativeAttention) -> None:
    """q = k = 0 in every head: the qkv output is laid out (s h d) with s = q, k, v."""
    width = attn.qkv.out_features // 3
    attn.qkv.weight[: 2 * width] = 0
    attn.qkv.bias[: 2 * width] = 0


@torch.no_grad()
def set_kernel(attn: RelativeAttention, offsets: dict[tuple[int, int], float], rest: float = 0.0) -> None:
    """Set every head's bias to ``offsets[(dy, dx)]`` at offset key - query = (dy, dx), ``rest`` elsewhere.

    The kernel view's entry [h, H-1+dy, W-1+dx] is the table's [h, H-1-dy, W-1-dx] (flipped on both axes).
    """
    height, width = attn.rel_pos.grid
    table = attn.rel_pos.table
    table.fill_(rest)
    for (dy, dx), value in offsets.items():
        table[:, height - 1 - dy, width - 1 - dx] = value


def state(model: torch.nn.Module) -> Snapshot:
    """What an analysis must leave as it was (:func:`tests.support.model_state.snapshot`): parameters and
    buffers with their identities, flags, grads, modes, every hook registry, the random states."""
    return snapshot(model)


@contextmanager
def breaks_mid_way(module: torch.nn.Module) -> Iterator[None]:
    """``module`` raises ``RuntimeError("mid-way")`` when called inside this context, and the body must
    raise it: for tests that a failed analysis still leaves the model as it was."""

    def broken(*args, **kwargs):
        raise RuntimeError("mid-way")

    module.forward = broken
    try:
        with pytest.raises(RuntimeError, match="mid-way"):
            yield
    finally:
        del module.forward


def identity_attention(model: torch.nn.Module) -> None:
    """q = k = 0 and a huge bias at offset (0, 0): every query attends to itself alone (pre)."""
    for attn in attentions(model):
        zero_qk(attn)
        set_kernel(attn, {(0, 0): 50.0})


def s4_link(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The link of S4.0's pool for these images, from its normalised input."""
    block = model.stages[3].blocks[0]
    with torch.no_grad():
        s3 = model.forward_intermediates(x)[1][3]
        return pooling_link(block.pool, block.norm1(s3))


def toy_checkpoint(path: Path, name: str = "coatnet_toy", *, img_size: int = 32, **overrides) -> Path:
    """A checkpoint of an untrained ``name`` (seeded, eval mode) at ``path``, its dataset called "toys"."""
    torch.manual_seed(0)
    model = coatnet.create_model(name, img_size=img_size, **overrides).eval()
    return coatnet.save_checkpoint(model, path, provenance={"dataset": "toys"})


def fashion_toy_checkpoint(path: Path) -> Path:
    """A seeded untrained 8 px, one-channel toy whose preprocessing reads Fashion-MNIST (resized): a study
    of it (``coatnet study --model PATH``) runs in seconds, its sanity checks too (occlusion's 64 windows,
    not 225 at 16 px). For the plumbing, not the values: S3 is a 2 x 2 grid and S4 a single cell, so
    Grad-CAM S4 is constant (its sanity rows compare 0 with 0 and count as constant)."""
    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=8, in_chans=1, strides=(1, 1, 2, 2, 2)).eval()
    pre = {"size": [8, 8], "channels": 1, "mean": [0.5], "std": [0.5], "interpolation": "bilinear",
           "crop": 1.0}  # fmt: skip
    names = [f"class {i}" for i in range(10)]
    return coatnet.save_checkpoint(model, path, class_names=names, preprocessing=pre)


def toy_model(name: str = "coatnet_toy", *, seed: int | None = 0, **overrides) -> coatnet.CoAtNet:
    """A fresh ``name`` (coatnet_toy unless told) built with ``overrides`` in eval mode, after
    ``torch.manual_seed(seed)`` (``seed=None``: from the random state as the caller left it, for a test whose
    numbers follow its own order of draws). The caller's own: train it, load into it, replace its modules.
    A test that only reads a toy takes the session's (the ``shared_toy`` fixture) instead."""
    if seed is not None:
        torch.manual_seed(seed)
    return coatnet.create_model(name, **overrides).eval()


class SharedToys:
    """``shared_toys(name="coatnet_toy", **overrides)``: the one :func:`toy_model` (seed 0, eval mode) of
    these arguments for the whole session, built on first request without touching the caller's random
    state. Only read it: run it in eval mode, analyse it (analyses leave a model as found); a test that
    changes a model builds its own. :meth:`changed` says which shared toy a test changed."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[coatnet.CoAtNet, Snapshot]] = {}
        self._handed_out: set[str] = set()  # since the last check

    def __call__(self, name: str = "coatnet_toy", **overrides) -> coatnet.CoAtNet:
        key = f"{name}{sorted(overrides.items())}"
        if key not in self._built:
            with torch.random.fork_rng(devices=[]):
                model = toy_model(name, **overrides)
            self._built[key] = model, snapshot(model)
        self._handed_out.add(key)
        return self._built[key][0]

    def changed(self) -> list[str]:
        """What differs, in each shared toy handed out since the last call, from the model as built (its
        weights, buffers, flags, grads, modes and hooks; the process's random state and global hooks are not
        the toy's): empty when nothing."""
        out = []
        for key in sorted(self._handed_out):
            model, built = self._built[key]
            ignored = ("global random state", "global_hooks", "modes")
            found = [d for d in built.differences(snapshot(model)) if not d.startswith(ignored)]
            out += [f"{key}: {d}" for d in found]
        self._handed_out.clear()
        return out
