"""A model's attention blocks as analyses name them (``S3.0``), with their grids and strides."""

from __future__ import annotations

from dataclasses import dataclass

from coatnet.model.blocks import TransformerBlock
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class BlockRef:
    """One attention block: its name (``S3.0``), stage and block index, module, and geometry."""

    name: str
    stage: int
    block: int
    module: TransformerBlock
    grid: tuple[int, int]
    stride: int  # input pixels per grid step


WINDOWED = (
    "its attention is windowed (MaxViT: block and grid attention), which the attention analyses do not "
    "map yet (issue 27): use Grad-CAM, Integrated Gradients or occlusion, or coatnet.record_attention and "
    "coatnet.trace, whose records carry each window"
)


def check_global_attention(model: CoAtNet) -> None:
    """Raise a ValueError for a model whose attention the analyses would misread (MaxViT's windows)."""
    if any("M" in stage.block_kinds for stage in model.config.stages):
        raise ValueError(f"{model.config.name}: {WINDOWED}")


def attention_blocks(model: CoAtNet, img_size: tuple[int, int] | None = None) -> list[BlockRef]:
    """Every Transformer block of ``model``, in forward order, with its grid for ``img_size``; a ValueError
    for a MaxViT (:func:`check_global_attention`), whose attention none of these blocks would show."""
    check_global_attention(model)
    infos = model.stage_info(img_size)
    out = []
    for s, stage in enumerate(model.stages, start=1):
        for b, block in enumerate(stage.blocks):
            if isinstance(block, TransformerBlock):
                info = infos[s]
                out.append(BlockRef(f"S{s}.{b}", s, b, block, tuple(info.grid), info.reduction))
    return out


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
