"""The learned "global static convolution" next to the local one (the paper's section 2.1): every attention
block's relative-bias kernels and every MBConv block's depthwise kernels, read from the parameters.

Both are oriented the same way, offset = key - query, like a conv kernel:

- a bias kernel entry ``[h, dy + H - 1, dx + W - 1]`` is the bias ``w`` that head ``h`` adds to the logit
  of the key at offset (dy, dx) from its query (:meth:`coatnet.model.attention.RelativePosition.kernel`);
- a depthwise weight ``[c, i, j]`` multiplies the input at offset (i - k // 2, j - k // 2) from the output
  position (PyTorch's ``Conv2d`` is a cross-correlation), so its centre is offset (0, 0) as well.

Nothing here runs the model: no forward pass, no hook, no gradient.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.core.geometry import BlockRef, attention_blocks
from coatnet.model.attention import RelativePosition
from coatnet.model.blocks import MBConvBlock
from coatnet.model.convnext import ConvNeXtBlock
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class BiasKernel:
    """The relative-position bias of one attention block as per-head kernels.

    Attributes:
        name: the block, ``S3.0`` (a MaxViT block's ``S1.0.block`` and ``S1.0.grid``).
        stage: the stage index, 1..4.
        block: the block's index within its stage.
        grid: the (H, W) grid the kernels are sized for: the stage's, or one window's (P, P) for
            windowed attention, whose windows share the one table.
        stride: input pixels per grid step of the stage (one kernel offset in pixels, times ``dilation``).
        mode: ``pre`` or ``post`` normalization of the block.
        kernels: (heads, 2H-1, 2W-1) float32; ``[h, dy + H - 1, dx + W - 1]`` is the bias for the key at
            offset (dy, dx) = key - query, in grid steps.
        mean_abs: (heads,) mean |kernel| of each head.
        centre_of_mass: (heads, 2) the (dy, dx) offset, in grid steps, of the centre of mass of
            ``softmax(kernel)`` over all offsets: where the bias alone steers a query (zero content logits,
            every offset in reach). The softmax is pre-normalization's reading; it is given for post too.
        partition: ``global``, ``block`` (windows) or ``grid`` (dilated grid groups).
        dilation: stage grid steps per kernel offset: (1, 1), or (H / G, W / G) for grid attention, whose
            neighbouring keys lie that far apart on the stage.

    Examples:
        >>> import analysis
        >>> s3 = analysis.relative_bias_kernels(analysis.load_model("demo-pre")).bias[0]
        >>> s3.name, s3.grid, s3.kernels.shape, s3.centre_of_mass.shape  # 7x7 grid: offsets -6..6
        ('S3.0', (7, 7), (4, 13, 13), (4, 2))
    """

    name: str
    stage: int
    block: int
    grid: tuple[int, int]
    stride: int
    mode: str
    kernels: np.ndarray
    mean_abs: np.ndarray
    centre_of_mass: np.ndarray
    partition: str = "global"
    dilation: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class DepthwiseKernel:
    """The depthwise ``conv2_kxk`` of one MBConv block.

    Attributes:
        name: the block, ``S1.0`` (a MaxViT block's MBConv: ``S1.0.conv``).
        stage: the stage index, 1..4.
        block: the block's index within its stage.
        stride: input pixels per step of the grid the kernel slides over.
        kernels: (channels, k, k) float32; ``[c, i, j]`` multiplies the input at offset
            (i - k // 2, j - k // 2) = key - query from the output position.
        mean_abs: (channels,) mean |kernel| of each channel.
        centre_of_mass: (channels, 2) the (dy, dx) offset of the centre of mass of |kernel|.

    Examples:
        >>> import analysis
        >>> s1 = analysis.relative_bias_kernels(analysis.load_model("demo-pre")).depthwise[0]
        >>> s1.name, s1.kernels.shape
        ('S1.0', (128, 3, 3))
    """

    name: str
    stage: int
    block: int
    stride: int
    kernels: np.ndarray
    mean_abs: np.ndarray
    centre_of_mass: np.ndarray


@dataclass(frozen=True)
class Kernels:
    """All kernels of a model, each tuple in forward order (:func:`relative_bias_kernels`).

    Attributes:
        bias: one :class:`BiasKernel` per attention block.
        depthwise: one :class:`DepthwiseKernel` per MBConv block.

    Examples:
        >>> import analysis
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"))
        >>> [k.name for k in kernels.bias], [k.name for k in kernels.depthwise]
        (['S3.0', 'S3.1', 'S4.0'], ['S1.0', 'S2.0', 'S2.1'])
    """

    bias: tuple[BiasKernel, ...]
    depthwise: tuple[DepthwiseKernel, ...]


def relative_bias_kernels(model: CoAtNet, *, img_size: int | tuple[int, int] | None = None) -> Kernels:
    """The relative-bias kernels of every attention block beside the depthwise kernels of every MBConv
    block, read from the parameters.

    Works for learned tables and for the relative-position MLP (``rel_pos="mlp"``); a model in training
    mode is read through an eval-mode copy of the MLP, so its dropout does not blur the kernels.

    Args:
        model: a CoAtNet.
        img_size: the input size whose grids the bias kernels are sized for (tables are resized as the
            model does for that input); default: the size the model was built for.

    Returns:
        :class:`Kernels`, attention blocks and MBConv blocks in forward order.

    Examples:
        >>> import analysis
        >>> kernels = analysis.relative_bias_kernels(analysis.load_model("demo-pre"), img_size=56)
        >>> kernels.bias[0].kernels.shape  # S3.0 on a 14x14 grid: (heads, 2H-1, 2W-1)
        (4, 27, 27)
    """
    size = None if img_size is None else ((img_size, img_size) if isinstance(img_size, int) else img_size)
    with torch.no_grad():
        refs = attention_blocks(model, size)
        bias = tuple(_bias_kernel(ref.attention, ref) for ref in refs)
        convs = [part for part in model.parts(size) if part.kind in ("mbconv", "convnext")]
        depthwise = (
            tuple(  # every conv block, named as traced: S1.0, a MaxViT's S1.0.conv, a parallel's conv0
                _depthwise_kernel(
                    c.module, str(c.name), c.stage, c.block, c.stride // _depthwise(c.module).stride[0]
                )
                for c in convs
            )
        )
    return Kernels(bias=bias, depthwise=depthwise)


def kernel_of(rel_pos: RelativePosition, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """``rel_pos.kernel(grid)`` without dropout: a module in training mode is read through an eval-mode
    copy (the model itself is never switched)."""
    if rel_pos.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in rel_pos.modules()):
        rel_pos = copy.deepcopy(rel_pos).eval()
    return rel_pos.kernel(grid)


def _bias_kernel(attn: nn.Module, ref: BlockRef) -> BiasKernel:
    height, width = ref.window  # the stage's grid, or one window's
    # (heads, 2H-1, 2W-1), copied: a result never aliases a parameter
    kernel = kernel_of(attn.rel_pos, ref.window).detach().to("cpu", torch.float32, copy=True)
    dy = torch.arange(-(height - 1), height, dtype=torch.float32)
    dx = torch.arange(-(width - 1), width, dtype=torch.float32)
    weights = kernel.flatten(1).softmax(-1).view_as(kernel)
    centre = torch.stack([(weights.sum(2) * dy).sum(1), (weights.sum(1) * dx).sum(1)], dim=-1)
    return BiasKernel(
        name=ref.name,
        stage=ref.stage,
        block=ref.block,
        grid=(height, width),
        stride=ref.stride,
        mode=attn.mode,
        kernels=kernel.numpy(),
        mean_abs=kernel.abs().mean((1, 2)).numpy(),
        centre_of_mass=centre.numpy(),
        partition=ref.partition,
        dilation=(ref.grid[0] // height, ref.grid[1] // width) if ref.partition == "grid" else (1, 1),
    )


def _depthwise(block: MBConvBlock | ConvNeXtBlock) -> nn.Conv2d:
    """A conv block's depthwise convolution: MBConv's k x k, ConvNeXt's (7 x 7 in timm's models)."""
    return block.conv_dw if isinstance(block, ConvNeXtBlock) else block.conv2_kxk


def _depthwise_kernel(
    block: MBConvBlock | ConvNeXtBlock, name: str, stage: int, index: int, stride: int
) -> DepthwiseKernel:
    weight = _depthwise(block).weight.detach().to("cpu", torch.float32, copy=True)
    kernel = weight[:, 0]  # (C, 1, k, k) -> (C, k, k)
    k_h, k_w = kernel.shape[-2:]
    dy = torch.arange(k_h, dtype=torch.float32) - k_h // 2
    dx = torch.arange(k_w, dtype=torch.float32) - k_w // 2
    mass = kernel.abs()
    total = mass.sum((1, 2)).clamp_min(torch.finfo(torch.float32).tiny)
    centre = torch.stack([(mass.sum(2) * dy).sum(1), (mass.sum(1) * dx).sum(1)], dim=-1) / total[:, None]
    return DepthwiseKernel(
        name=name,
        stage=stage,
        block=index,
        stride=stride,
        kernels=kernel.numpy(),
        mean_abs=mass.mean((1, 2)).numpy(),
        centre_of_mass=centre.numpy(),
    )
