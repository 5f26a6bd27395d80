"""Frequency content of every block's output (Park & Kim 2022, "How do vision transformers work?").

For a (B, C, H, W) feature map: the 2-D FFT of each channel, its log amplitude ``log(|F| + 1e-6)``
averaged over channels and images, then over square rings of equal frequency radius ``max(|wy|, |wx|)``
from 0 to pi (pi: the Nyquist frequency along an axis, whatever the grid). The single number a block
gets is Park & Kim's relative log amplitude of high frequencies, ``profile(pi) - profile(0)`` (their
Fig. 2 Delta log amplitude). A block whose output has more of it than its input acts as a high-pass
filter, less as a low-pass one (Park & Kim find attention mostly low-pass, convolutions high-pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from coatnet.model.network import CoAtNet

EPS = 1e-6  # added to |F| before the log, as Park & Kim do


@dataclass(frozen=True)
class BlockFrequency:
    """The frequency content of one block's output.

    Attributes:
        name: ``S0`` for the stem, ``S1.0`` .. for blocks.
        kind: ``conv`` / ``patch`` (the stem), ``C`` (MBConv) or ``T`` (Transformer).
        grid: the output (H, W) grid.
        freqs: (R,) ring radii in radians per grid step, 0 .. pi.
        profile: (R,) mean log amplitude of the output on each ring (natural log).
        high_freq_log_amp: ``profile[-1] - profile[0]``: the relative log amplitude at frequency pi.
        delta_vs_input: ``high_freq_log_amp`` minus the same number for the block's input (each on its
            own grid): > 0 the block passes high frequencies (high-pass), < 0 it smooths (low-pass).

    Examples:
        >>> import torch, analysis
        >>> profile = analysis.frequency_profile(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> s0 = profile.blocks[0]
        >>> s0.name, s0.kind, s0.grid, s0.freqs.shape
        ('S0', 'conv', (14, 14), (8,))
    """

    name: str
    kind: str
    grid: tuple[int, int]
    freqs: np.ndarray
    profile: np.ndarray
    high_freq_log_amp: float
    delta_vs_input: float


@dataclass(frozen=True)
class FrequencyProfile:
    """The blocks analysed, in forward order (:func:`frequency_profile`).

    Attributes:
        blocks: one :class:`BlockFrequency` per block, the stem first.

    Examples:
        >>> import torch, analysis
        >>> profile = analysis.frequency_profile(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> [b.name for b in profile.blocks]
        ['S0', 'S1.0', 'S2.0', 'S2.1', 'S3.0', 'S3.1', 'S4.0']
    """

    blocks: tuple[BlockFrequency, ...]


def frequency_profile(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    blocks: Sequence[str] | None = None,
) -> FrequencyProfile:
    """The log-amplitude spectrum of the output of the stem and of every block, with how each block moved
    the high frequencies of its input.

    One forward pass (no gradients) with forward hooks on the blocks of a twin of the model made for this
    call (:func:`analysis.core.running.call_model`): no other call's pass can trigger them.

    Args:
        model: a CoAtNet, analysed in whatever mode it is in.
        images: preprocessed (B, C, H, W) / (C, H, W) tensors or PIL images.
        blocks: names of the blocks to report (``S0``, ``S1.0``, ...); default: all of them.

    Returns:
        :class:`FrequencyProfile`, blocks in forward order.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> profile = analysis.frequency_profile(model, torch.randn(1, 1, 28, 28), blocks=["S0", "S3.0"])
        >>> [(b.name, b.kind) for b in profile.blocks]  # delta_vs_input > 0: a block passes high frequencies
        [('S0', 'conv'), ('S3.0', 'T')]
    """
    batch = as_batch(images, model)
    named = _named_blocks(model, tuple(batch.shape[-2:]))
    wanted = list(named) if blocks is None else list(blocks)
    unknown = [name for name in wanted if name not in named]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; this model has {', '.join(named)}")
    found: dict[str, BlockFrequency] = {}
    with call_model(model, private=True) as own, torch.no_grad():
        own_blocks = _named_blocks(own, tuple(batch.shape[-2:]))
        for name in wanted:  # on this call's twin: the hooks fire for this pass only, and go with the twin
            module, kind = own_blocks[name]
            module.register_forward_hook(_recorder(found, name, kind))
        own.forward_features(batch)
    return FrequencyProfile(blocks=tuple(found[name] for name in named if name in found))


def log_amplitude_profile(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The log amplitude spectrum of a (B, C, H, W) feature map along the frequency radius.

    Frequencies are scaled so that pi is the Nyquist frequency of each axis, and grouped in square rings
    of equal radius ``max(|wy|, |wx|)``: the ring at pi is the border of the spectrum, corner (pi, pi)
    included (the end of Park & Kim's diagonal), so every frequency belongs to one ring.

    Args:
        features: (B, C, H, W) (or (C, H, W)) feature maps.

    Returns:
        (freqs, profile), both (R,) with R = max(H, W) // 2 + 1: ring radii in radians per grid step from
        0 to pi, and the mean of ``log(|FFT| + 1e-6)`` over channels, images and the frequencies of each
        ring.

    Examples:
        >>> import torch, analysis
        >>> freqs, profile = analysis.log_amplitude_profile(torch.randn(2, 4, 8, 8))
        >>> freqs.shape, profile.shape, round(float(freqs[-1]), 4)
        ((5,), (5,), 3.1416)
    """
    x = features.detach().float()
    x = x[None] if x.ndim == 3 else x
    height, width = x.shape[-2:]
    log_amp = (torch.fft.fft2(x).abs() + EPS).log().mean((0, 1))  # (B, C, H, W) -> (H, W)
    fy = torch.fft.fftfreq(height, device=x.device).abs() * 2  # in units of pi, 0 .. 1
    fx = torch.fft.fftfreq(width, device=x.device).abs() * 2
    rings = max(height, width) // 2 + 1
    radius = torch.maximum(fy[:, None], fx[None, :])  # (H, W)
    ring = torch.round(radius * (rings - 1)).long().flatten()
    total = torch.zeros(rings, device=x.device).index_add_(0, ring, log_amp.flatten())
    count = torch.bincount(ring, minlength=rings).clamp_min(1)
    freqs = np.linspace(0.0, math.pi, rings) if rings > 1 else np.zeros(1)
    return freqs, (total / count).cpu().numpy()


def _relative_high(profile: np.ndarray) -> float:
    return float(profile[-1] - profile[0])


def _recorder(found: dict[str, BlockFrequency], name: str, kind: str):
    """A forward hook that turns a block's input and output into its :class:`BlockFrequency`."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        freqs, profile = log_amplitude_profile(output)
        _, profile_in = log_amplitude_profile(args[0])
        high = _relative_high(profile)
        found[name] = BlockFrequency(
            name=name,
            kind=kind,
            grid=(int(output.shape[-2]), int(output.shape[-1])),
            freqs=freqs,
            profile=profile,
            high_freq_log_amp=high,
            delta_vs_input=high - _relative_high(profile_in),
        )

    return hook


def _named_blocks(model: CoAtNet, img_size: tuple[int, int]) -> dict[str, tuple[nn.Module, str]]:
    """``{name: (module, kind)}`` for the stem and every block, in forward order."""
    named = {}
    for part in model.parts(img_size):
        if part.kind == "stem":
            named[part.name] = (part.module, part.block_kind)
        elif part.block is not None:
            named.setdefault(part.name.base, (part.owner, part.block_kind))
    return named
