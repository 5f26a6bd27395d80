"""timm's experimental parallel MaxViT block (``maxxvit.py``: ``ParallelMaxxVitBlock``, block type ``PM``;
``maxvit_tiny_pm_256``): two MBConv blocks (the first strides), then one pre-norm residual attention in
which block attention and grid attention run side by side on the same normalised input, each over every
head of the full width and projected to half the channels, their outputs concatenated (block first),
then one pre-norm residual MLP:

    ``x <- x + LayerScale(cat(BlockAttn(LN(x)), GridAttn(LN(x))))``, ``x <- x + LayerScale(MLP(LN(x)))``

Each attention records under its own name (``S1.0.block``, ``S1.0.grid``) and partition, as a MaxViT
block's do; an analysis that composes attention (rollout) must treat the two as one step, not one after
the other (:attr:`ParallelMaxViTBlock.parallel`). Module names are timm's, so its weights load by name.
"""

from __future__ import annotations

import torch
from torch import nn

from coatnet.model.attention import RelativeAttention
from coatnet.model.blocks import conv_block_class
from coatnet.model.config import CoAtNetConfig
from coatnet.model.interventions import CONV_KINDS, Intervention
from coatnet.model.layers import DropPath, LayerScale, Mlp, make_norm2d
from coatnet.model.parts import PartName
from coatnet.model.tracing import active_capture, tap
from coatnet.model.windows import partition, unpartition


class ParallelPartitionBlock(nn.Module):
    """Block and grid attention side by side, then the MLP (module docstring). Takes and gives
    (B, C, H, W)."""

    def __init__(
        self, *, dim: int, size: int, config: CoAtNetConfig, drop_path: float, stage: int, block: int
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"a parallel MaxViT block splits its {dim} channels in two: use an even width")
        self.size, self.stage, self.block = size, stage, block

        def attention(kind: str) -> RelativeAttention:
            return RelativeAttention(
                dim_in=dim, dim_out=dim // 2, dim_attn=dim, head_dim=config.head_dim, grid=(size, size),
                mode=config.attention, rel_pos=config.rel_pos, rel_pos_mlp_hidden=config.rel_pos_mlp_hidden,
                stage=stage, block=block, partition=kind,
            )  # fmt: skip

        def layer_scale() -> nn.Module:
            return LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()

        self.norm1 = make_norm2d("layer", dim, eps=config.ln_eps)
        self.attn_block, self.attn_grid = attention("block"), attention("grid")
        self.ls1 = layer_scale()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = make_norm2d("layer", dim, eps=config.ln_eps)
        self.mlp = Mlp(dim=dim, hidden=int(dim * config.mlp_ratio), act=config.mlp_act)
        self.ls2 = layer_scale()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = tap(capture, self, "input", x)
        grid = (x.shape[-2], x.shape[-1])
        normed = self.norm1(x)
        halves = [
            unpartition(attn(partition(normed, self.size, kind), field=grid), self.size, kind, grid)
            for kind, attn in (("block", self.attn_block), ("grid", self.attn_grid))
        ]
        attended = torch.cat(halves, dim=1)  # (B, C, H, W): block attention's half, then grid's
        x = x + tap(capture, self, "attn.branch", self.drop_path1(self.ls1(attended)))
        mixed = tap(capture, self, "mlp.branch", self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))
        return tap(capture, self, "output", x + mixed)


class ParallelMaxViTBlock(nn.Module):
    """Two conv blocks, then block and grid attention in parallel (module docstring; module names as
    timm's ``ParallelMaxxVitBlock``: ``conv.0``, ``conv.1``, ``attn``)."""

    parallel = True  # its two attentions see the same input: one step of a composition, not two
    part_kind = "maxvit"  # split into its convs and attentions among a model's parts (coatnet.model.parts)

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
        window, grid = config.partition_sizes()
        if window != grid:
            raise ValueError(
                f"a parallel MaxViT block has one partition size, got windows {window}, grids {grid}"
            )
        kind = conv_block_class(config)
        common = dict(config=config, drop_path=drop_path, stage=stage, block=block)
        self.conv = nn.Sequential(
            kind(dim_in=dim_in, dim_out=dim_out, stride=stride, **common),
            kind(dim_in=dim_out, dim_out=dim_out, stride=1, **common),
        )
        self.attn = ParallelPartitionBlock(dim=dim_out, size=window, **common)
        # traced as S{s}.{b}.conv0.*, .conv1.*, .parallel.*, and each attention's .block.attn.* / .grid.attn.*
        for i, conv in enumerate(self.conv):
            conv.trace_prefix = PartName.of(stage, block, f"conv{i}")
        self.attn.trace_prefix = PartName.of(stage, block, "parallel")
        for part, module, _ in self.partitions():
            module.trace_prefix = PartName.of(stage, block, part)

    def convs(self) -> list[tuple[str, nn.Module]]:
        """Its two conv blocks, traced as ``S{s}.{b}.conv0`` and ``.conv1``."""
        return [(f"conv{i}", conv) for i, conv in enumerate(self.conv)]

    def partitions(self) -> list[tuple[str, RelativeAttention, int]]:
        """(``block`` / ``grid``, the attention, its window side), in the order their outputs are
        concatenated."""
        return [
            ("block", self.attn.attn_block, self.attn.size),
            ("grid", self.attn.attn_grid, self.attn.size),
        ]

    @property
    def heads(self) -> int:
        """The heads of each of its attentions."""
        return self.attn.attn_grid.heads

    def check_intervention(self, item: Intervention) -> None:
        """Raise a ValueError if ``item`` (meant for this block) has no place here."""
        if item.kind in CONV_KINDS:
            raise ValueError(
                f"{item.label}: {item.base} holds two conv blocks; the interventions of a parallel MaxViT "
                "block are its attentions'"
            )
        heads = self.heads
        if item.heads is not None and max(item.heads) >= heads:
            raise ValueError(f"{item.label}: {item.block} has heads 0..{heads - 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = tap(capture, self, "input", x)
        return tap(capture, self, "output", self.attn(self.conv(x)))
