"""Receptive fields per stage: the theoretical one, composed from the model's own layers, and the effective
one (Luo et al. 2016): how strongly each input pixel moves the centre unit of a stage's output.

Theoretical: along the main path, every conv or pool of kernel k, stride s, dilation d, padding p grows the
field by ``(k - 1) * d * jump`` and multiplies the jump (input pixels per output step) by s; a residual
block covers the union of its branches; an attention block makes the field the whole input. The global
channel gate of squeeze-excitation is a per-channel scale and is not counted, as is customary.

Windowed attention (MaxViT): block attention lets a unit see its P x P window, which may reach P - 1 cells
to either side of it (windows are fixed, not centred on the unit: the field is the largest any unit has,
as a (2P - 1) x (2P - 1) kernel would give); grid attention lets it see its dilated grid group, spread
over the whole stage, so its field's extent is the whole input (``is_global``), although, after one
block, with gaps where neither its window nor its group reaches; the effective field shows them.

Effective: ``|d sum_c y[c, centre] / d x|`` summed over input channels, averaged over images, normalised
to sum 1, with the sides of the smallest centred squares that hold 20%, 50% and 99% of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch import nn

from analysis.core.inputs import as_batch, preprocessing_of
from analysis.core.running import call_model
from coatnet.model.attention import RelativeAttention
from coatnet.model.blocks import MBConvBlock, Mlp, PartitionBlock, Stem, TransformerBlock
from coatnet.model.convnext import ConvNeXtBlock
from coatnet.model.layers import DropPath, LayerScale, Shortcut, SqueezeExcite
from coatnet.model.network import CoAtNet, Stage

SHARES = (0.2, 0.5, 0.99)

_POINTWISE = (
    nn.Identity, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Dropout, nn.Dropout2d,
    DropPath, LayerScale, SqueezeExcite, Mlp, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish,
)  # fmt: skip
_GLOBAL = (RelativeAttention, nn.MultiheadAttention, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class StageReceptiveField:
    """The receptive fields of one stage's output, in input pixels.

    Attributes:
        name: ``S0`` .. ``S4``.
        kind: the stage kind (``conv``, ``patch``, ``C``, ``T``, ``M``, ``C+T``).
        grid: the stage's output (H, W) grid.
        theoretical: (h, w) of the theoretical field, capped at the image; the whole image once an
            attention block has been passed (``is_global``).
        jump: (y, x) input pixels per step of the output grid.
        is_global: whether an attention block lies on the path.
        effective: (H_img, W_img) float32 map of the centre unit's |gradient|, summing to 1 (all zeros
            when the unit does not depend on the input).
        centre: (y, x) input position, in pixels (may be a half pixel), of the centre unit
            ``(grid_h // 2, grid_w // 2)``: the middle of its theoretical field.
        mass_sides: {share: side}: the side, in pixels, of the smallest square centred on ``centre`` that
            holds that share of ``effective`` (capped at the image's longer side).

    Examples:
        >>> import analysis
        >>> s0 = analysis.receptive_fields(analysis.load_model("demo-pre"), stages=[0], samples=1).stages[0]
        >>> s0.theoretical, s0.jump, s0.is_global, round(float(s0.effective.sum()), 4)  # two 3x3 convs
        ((7, 7), (2, 2), False, 1.0)
    """

    name: str
    kind: str
    grid: tuple[int, int]
    theoretical: tuple[int, int]
    jump: tuple[int, int]
    is_global: bool
    effective: np.ndarray
    centre: tuple[float, float]
    mass_sides: dict[float, int]


@dataclass(frozen=True)
class ReceptiveFields:
    """Receptive fields of the stages asked for, in order (:func:`receptive_fields`).

    Attributes:
        stages: one :class:`StageReceptiveField` per stage asked for.
        image_size: the input (H, W) the fields were measured for.

    Examples:
        >>> import analysis
        >>> fields = analysis.receptive_fields(analysis.load_model("demo-pre"), stages=[0], samples=1)
        >>> [s.name for s in fields.stages], fields.image_size
        (['S0'], (28, 28))
    """

    stages: tuple[StageReceptiveField, ...]
    image_size: tuple[int, int]


def receptive_fields(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image] | None = None,
    *,
    stages: Sequence[int] | None = None,
    samples: int = 4,
    seed: int = 0,
) -> ReceptiveFields:
    """Theoretical and effective receptive fields of stages S0..S4 from one forward pass.

    Gradients flow to the input only (``torch.autograd.grad``); the model keeps its mode, flags and
    ``.grad``; its lock is held throughout.

    Args:
        model: a CoAtNet, analysed in whatever mode it is in.
        images: preprocessed (B, C, H, W) / (C, H, W) tensors or PIL images; default: ``samples`` N(0, 1)
            images of the model's preprocessing size drawn from a generator seeded with ``seed`` (the
            global RNG is not touched).
        stages: stage indices, 0 for S0 .. 4 for S4 (default: all five).
        samples: how many random inputs when ``images`` is None.
        seed: seeds those random inputs.

    Returns:
        :class:`ReceptiveFields`.

    Examples:
        >>> import analysis
        >>> fields = analysis.receptive_fields(analysis.load_model("demo-pre"), stages=[0, 3], samples=2)
        >>> [(s.name, s.theoretical, s.is_global) for s in fields.stages]  # S3 attends: the whole image
        [('S0', (7, 7), False), ('S3', (28, 28), True)]
    """
    wanted = sorted(set(range(5) if stages is None else stages))
    if not wanted or wanted[0] < 0 or wanted[-1] > 4:
        raise ValueError(f"stages are indices 0 (S0) .. 4 (S4), got {stages}")
    batch = _inputs(model, images, samples, seed)
    height, width = batch.shape[-2:]
    with call_model(model, private=True, seed=seed) as own:
        maps = effective_receptive_field(lambda x: own.forward_intermediates(x, indices=wanted)[1], batch)
    infos = model.stage_info((height, width))
    parts = [model.stem, *model.stages]
    results = []
    for s, erf in zip(wanted, maps, strict=True):
        info, geometry = infos[s], _walk(_Field(), parts[: s + 1])
        centre = geometry.centre((info.grid[0] // 2, info.grid[1] // 2))
        results.append(
            StageReceptiveField(
                name=info.name,
                kind=info.kind,
                grid=tuple(info.grid),
                theoretical=_capped(geometry, (height, width)),
                jump=geometry.jump,
                is_global=geometry.is_global,
                effective=erf,
                centre=centre,
                mass_sides=mass_sides(erf, centre),
            )
        )
    return ReceptiveFields(stages=tuple(results), image_size=(int(height), int(width)))


def theoretical_receptive_field(
    layers: Sequence[nn.Module], *, image_size: int | tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The theoretical receptive field of the output of ``layers`` applied in order.

    Knows ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, pointwise layers (identity, norms, activations,
    dropout), ``nn.Sequential`` / ``nn.ModuleList`` (walked in order) and CoAtNet's stem, stages and
    blocks; attention makes the field global. Any other module is refused with a ``TypeError``.

    Args:
        layers: modules in forward order, e.g. ``[model.stem, model.stages[0]]``.
        image_size: the input (H, W) (or one side): the field is capped at it.

    Returns:
        ((h, w) field size in input pixels, (y, x) jump: input pixels per output step).

    Examples:
        >>> import analysis
        >>> from torch import nn
        >>> layers = [nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2)]
        >>> analysis.theoretical_receptive_field(layers, image_size=32)
        ((4, 4), (2, 2))
    """
    geometry = _walk(_Field(), layers)
    return _capped(geometry, _pair(image_size)), geometry.jump


def effective_receptive_field(
    forward_fn: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    inputs: torch.Tensor,
    *,
    centre: tuple[int, int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Effective receptive fields (Luo et al. 2016) of the outputs of ``forward_fn``, from one forward pass.

    For each (B, C, h, w) output: ``|d sum_{b, c} y[b, c, cy, cx] / d x|`` summed over input channels,
    averaged over the batch and normalised to sum 1. Samples stay independent unless the function mixes
    them (batch norm in training mode does). Only the input gets a gradient: parameters' ``.grad`` is
    never touched. Runs with gradients on, even inside ``torch.no_grad`` or ``torch.inference_mode``.

    Args:
        forward_fn: maps the input batch to one feature map or a sequence of them.
        inputs: (B, C, H, W) input batch.
        centre: the output unit (row, column) to explain in every output; default each output's centre
            ``(h // 2, w // 2)``.

    Returns:
        One (H, W) float32 map per output, each summing to 1 (zeros when the unit ignores the input).

    Examples:
        >>> import torch, analysis
        >>> from torch import nn
        >>> conv = nn.Conv2d(1, 1, 3, padding=1)
        >>> (erf,) = analysis.effective_receptive_field(conv, torch.randn(2, 1, 9, 9))
        >>> erf.shape, int((erf > 0).sum()), round(float(erf.sum()), 4)  # a 3x3 conv: 9 pixels
        ((9, 9), 9, 1.0)
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone().requires_grad_(True)
        outputs = forward_fn(x)
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        maps = []
        for i, out in enumerate(outputs):
            cy, cx = centre if centre is not None else (out.shape[-2] // 2, out.shape[-1] // 2)
            (grad,) = torch.autograd.grad(
                out[..., cy, cx].sum(), x, retain_graph=i < len(outputs) - 1, allow_unused=True
            )
            if grad is None:
                maps.append(np.zeros(x.shape[-2:], dtype=np.float32))
                continue
            mass = grad.detach().abs().float().sum(1).mean(0)  # (B, C, H, W) -> (H, W)
            total = mass.sum()
            maps.append((mass / total if total > 0 else mass).cpu().numpy())
    return tuple(maps)


def mass_sides(
    erf: np.ndarray, centre: tuple[float, float], shares: Sequence[float] = SHARES
) -> dict[float, int]:
    """For each share, the side in pixels of the smallest square centred on ``centre`` (y, x) that holds
    that share of the mass of ``erf`` (H, W); capped at the longer image side, 0 for an all-zero map.

    Args:
        erf: an (H, W) effective receptive field.
        centre: the (y, x) the squares are centred on, in pixels.
        shares: the shares of the mass, in (0, 1].

    Returns:
        Share -> side in pixels.

    Examples:
        >>> import numpy as np, analysis
        >>> erf = np.zeros((9, 9))
        >>> erf[3:6, 3:6] = 1 / 9  # a 3x3 field around pixel (4, 4)
        >>> analysis.mass_sides(erf, (4, 4))
        {0.2: 3, 0.5: 3, 0.99: 3}
    """
    height, width = erf.shape
    ys, xs = np.mgrid[0:height, 0:width]
    distance = np.maximum(np.abs(ys - centre[0]), np.abs(xs - centre[1])).ravel()  # Chebyshev, in px
    order = np.argsort(distance, kind="stable")
    mass = np.cumsum(np.asarray(erf, dtype=np.float64).ravel()[order])
    if mass[-1] <= 0:
        return {float(q): 0 for q in shares}
    reach = np.minimum(np.searchsorted(mass, np.asarray(shares) * mass[-1] * (1 - 1e-9)), mass.size - 1)
    sides = np.rint(2 * distance[order][reach] + 1).astype(int)
    return {float(q): int(min(side, max(height, width))) for q, side in zip(shares, sides, strict=True)}


@dataclass(frozen=True)
class _Field:
    """Where output unit (0, 0) looks, per axis (y, x): its first input pixel (may be negative, in the
    padding), the field size and the jump; ``is_global`` once attention has mixed all positions."""

    first: tuple[float, float] = (0.0, 0.0)
    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    is_global: bool = False

    def through(self, kernel, stride, dilation, padding) -> _Field:
        k, s, d, p = (_pair(v) for v in (kernel, stride, dilation, padding))
        return replace(
            self,
            first=tuple(self.first[a] - p[a] * self.jump[a] for a in (0, 1)),
            size=tuple(self.size[a] + (k[a] - 1) * d[a] * self.jump[a] for a in (0, 1)),
            jump=tuple(self.jump[a] * s[a] for a in (0, 1)),
        )

    def union(self, other: _Field) -> _Field:
        """The field of a sum of two branches."""
        if self.jump != other.jump:
            raise ValueError(f"branches with different jumps {self.jump} and {other.jump} cannot be added")
        first = tuple(min(self.first[a], other.first[a]) for a in (0, 1))
        last = tuple(max(f.first[a] + f.size[a] - 1 for f in (self, other)) for a in (0, 1))
        size = tuple(int(last[a] - first[a] + 1) for a in (0, 1))
        return _Field(first, size, self.jump, self.is_global or other.is_global)

    def centre(self, unit: tuple[int, int]) -> tuple[float, float]:
        """The middle of output unit ``unit``'s field, in input pixels."""
        return tuple(float(self.first[a] + unit[a] * self.jump[a] + (self.size[a] - 1) / 2) for a in (0, 1))


def _walk(geometry: _Field, layers: Sequence[nn.Module]) -> _Field:
    for layer in layers:
        geometry = _through(geometry, layer)
    return geometry


def _through(geometry: _Field, layer: nn.Module) -> _Field:
    """The field after ``layer``."""
    if hasattr(layer, "partitions"):  # MaxViT: its conv(s), then block and grid attention (in parallel too)
        return _walk(
            geometry, [*(conv for _, conv in layer.convs()), *(part for _, part, _ in layer.partitions())]
        )
    if isinstance(layer, PartitionBlock):  # x + Attention(window), then the FFN: module docstring
        if layer.kind == "grid":
            return replace(geometry, is_global=True)
        return geometry.through(2 * layer.size - 1, 1, 1, layer.size - 1)
    if isinstance(layer, TransformerBlock):  # Eq. 4: Proj(Pool(x)) + Attention(Pool(Norm(x))), then the FFN
        local = _walk(geometry, [layer.shortcut]).union(_walk(geometry, [layer.norm1, layer.pool]))
        return replace(local, is_global=True)
    if isinstance(layer, ConvNeXtBlock):  # shortcut + LayerScale(MLP(LayerNorm(DepthConv(x))))
        return _walk(geometry, [layer.shortcut]).union(_walk(geometry, [layer.conv_dw]))
    if isinstance(layer, MBConvBlock):  # Eq. 5, squeeze-excitation's channel gate left out
        main = [layer.pre_norm, layer.pre_act, layer.down, layer.conv1_1x1, layer.norm1, layer.act1]
        main += [layer.conv2_kxk, layer.norm2, layer.act2, layer.conv3_1x1]
        return _walk(geometry, [layer.shortcut]).union(_walk(geometry, main))
    if isinstance(layer, Shortcut):
        return _walk(geometry, [layer.pool, layer.expand])
    if isinstance(layer, Stem):
        parts = [layer.proj] if layer.kind == "patch" else [layer.conv1, layer.norm1, layer.act1, layer.conv2]
        return _walk(geometry, parts)
    if isinstance(layer, Stage):
        return _walk(geometry, layer.blocks)
    if isinstance(layer, nn.Sequential | nn.ModuleList):
        return _walk(geometry, list(layer))
    if isinstance(layer, nn.Conv2d):
        return geometry.through(layer.kernel_size, layer.stride, layer.dilation, _conv_padding(layer))
    if isinstance(layer, nn.MaxPool2d):
        return geometry.through(layer.kernel_size, layer.stride, layer.dilation, layer.padding)
    if isinstance(layer, nn.AvgPool2d):
        return geometry.through(layer.kernel_size, layer.stride or layer.kernel_size, 1, layer.padding)
    if isinstance(layer, _GLOBAL):
        return replace(geometry, is_global=True)
    if isinstance(layer, _POINTWISE):
        return geometry
    raise TypeError(
        f"cannot tell how {type(layer).__name__} moves pixels; pass its convs, pools and pointwise "
        "layers (or an nn.Sequential of them) instead"
    )


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":  # PyTorch puts the odd pixel of the total padding on the far side
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation, strict=True))
    return _pair(conv.padding)


def _capped(geometry: _Field, image_size: tuple[int, int]) -> tuple[int, int]:
    if geometry.is_global:
        return (int(image_size[0]), int(image_size[1]))
    return (min(geometry.size[0], int(image_size[0])), min(geometry.size[1], int(image_size[1])))


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _inputs(
    model: CoAtNet, images: torch.Tensor | Image.Image | Sequence[Image.Image] | None, samples: int, seed: int
) -> torch.Tensor:
    """The images as a batch, or ``samples`` N(0, 1) images from a private generator."""
    if images is not None:
        return as_batch(images, model)
    pre = preprocessing_of(model)
    height, width = pre.size
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, pre.channels, height, width, generator=generator)
    parameter = next(model.parameters())
    return noise.to(device=parameter.device, dtype=parameter.dtype)
