"""The ConvNeXt block (Liu et al., "A ConvNet for the 2020s", CVPR 2022) as MaxxViT and CoAtNeXt use it in
place of MBConv (timm's ``maxxvit.py``, ``ConvNeXtBlock`` with a convolutional MLP):

    ``x <- Proj(Pool(x)) + LayerScale(MLP(LayerNorm(DepthConv_kxk(x, stride))))``

a k x k depthwise convolution (7 x 7 in timm's models) that strides for the first block of a stage, a
LayerNorm over the channels, an MLP of 1x1 convolutions (GELU, 4x wide), a learned per-channel scale, and
the shortcut of MBConv (a 2x2 average pool and a 1x1 projection where the shape changes). No
squeeze-excitation, no norm before the block. Module names are timm's (``conv_dw``, ``norm``, ``mlp``,
``ls``, ``shortcut``), so its weights load by name.
"""

from __future__ import annotations

import torch
from torch import nn

from coatnet.model.config import CoAtNetConfig
from coatnet.model.interventions import ATTENTION_KINDS, Intervention, block_interventions, row_mask
from coatnet.model.layers import DropPath, LayerScale, Mlp, Shortcut, make_norm2d
from coatnet.model.tracing import CONVNEXT_NAMES, active_capture, tap


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block (module docstring). Takes and gives (B, C, H, W).

    Interventions: ``zero_branch`` (the scaled MLP branch set to zero); it has no squeeze-excitation, so
    ``no_se`` is refused, as are the attention kinds."""

    conv_kinds = ("zero_branch",)  # the interventions it takes: it has no squeeze-excitation
    trace_leaves = CONVNEXT_NAMES  # what it traces (coatnet.model.tracing)
    part_kind = "convnext"  # its kind among a model's parts (coatnet.model.parts)

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        stride: int,
        config: CoAtNetConfig,
        drop_path: float = 0.0,
        stage: int = 0,
        block: int = 0,
    ) -> None:
        super().__init__()
        self.stage, self.block = stage, block
        k = config.kernel_size
        self.shortcut = Shortcut(dim_in=dim_in, dim_out=dim_out, stride=stride, pool=config.pool, bias=True)
        self.conv_dw = nn.Conv2d(dim_in, dim_out, k, stride=stride, padding=k // 2, groups=dim_in, bias=True)
        self.norm = make_norm2d("layer", dim_out, eps=config.ln_eps)
        self.mlp = Mlp(dim=dim_out, hidden=int(dim_out * config.expand_ratio), act=config.conv_act)
        self.ls = LayerScale(dim_out, config.conv_layer_scale) if config.conv_layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def convs(self) -> list[tuple[str, nn.Module]]:
        """Its conv blocks, each with the suffix of its traced name: itself."""
        return [("", self)]

    def check_intervention(self, item: Intervention) -> None:
        """Raise a ValueError if ``item`` (meant for this block) has no place here."""
        if item.kind in ATTENTION_KINDS:
            raise ValueError(f"{item.label}: {item.block} is a ConvNeXt block; {item.kind} is for attention")
        if item.kind == "no_se":
            raise ValueError(f"{item.label}: a ConvNeXt block has no squeeze-excitation; use zero_branch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edits = block_interventions(self.stage, self.block)  # per call, usually none
        capture = active_capture()  # per call, usually none
        x = tap(capture, self, "input", x)
        shortcut = self.shortcut(x)
        x = tap(capture, self, "depthwise", self.conv_dw(x))
        x = self.ls(self.mlp(self.norm(x)))
        zeroed = row_mask(edits, "zero_branch", x) if edits else None
        if zeroed is not None:
            x = x.masked_fill(zeroed, 0.0)
        return tap(capture, self, "output", shortcut + tap(capture, self, "branch", self.drop_path(x)))
