"""A model's parts and their names: the one place that walks a model and parses a part's name.

Every part of a :class:`coatnet.CoAtNet` has a name that every tool reads (recording, tracing,
interventions, patching, kernels, sanity checks, probes, the app):

=========================  ====================================================================
name                       what it names
=========================  ====================================================================
``S0``                     the stem
``S3.0``                   block 0 of stage S3 (an MBConv, ConvNeXt or Transformer block)
``S1.0.conv``              a MaxViT block's conv block (``conv0``, ``conv1`` in a parallel block)
``S1.0.block``             a MaxViT block's block (window) attention; ``S1.0.grid`` its grid attention
``S3.0.mlp``               a Transformer block's MLP (``S1.0.grid.mlp`` a MaxViT attention's)
``S3.0.attn.weights``      an activation of a part (:mod:`coatnet.model.tracing`'s table)
``S3.output``              a stage's output
``pooled``, ``logits``     the head's pooled features and logits; ``head`` the head itself
=========================  ====================================================================

:class:`PartName` parses and formats these names (one error for a bad one); :func:`model_parts` (a
model's :meth:`~coatnet.CoAtNet.parts`) lists every named part with its kind, stage, block, grid,
channels, stride and module, in forward order, in the spirit of timm's ``feature_info``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

PartKind = Literal["stem", "mbconv", "convnext", "attention", "mlp", "head", "module"]
PART_KINDS: tuple[str, ...] = ("stem", "mbconv", "convnext", "attention", "mlp", "head", "module")
"""Every kind of part; ``module`` is a module put in a block's place that the model does not know (an
identity, say), listed as it is."""
SUBPARTS: tuple[str, ...] = ("conv", "conv0", "conv1", "block", "grid", "parallel")
"""The parts of a MaxViT block that carry their own names: its conv block (two in a parallel block),
its block and grid attention, and a parallel block's shared residual (``parallel``)."""
HEAD_NAMES: tuple[str, ...] = ("head", "pooled", "logits")

_NAME = re.compile(
    r"^S(?P<stage>\d+)"
    r"(?:\.(?P<block>\d+))?"
    r"(?:\.(?P<part>conv\d?|block|grid|parallel)(?=\.|$))?"
    r"(?:\.(?P<leaf>[a-z_]+(?:\.[a-z_]+)*))?$"
)


def _well_formed(found: re.Match) -> bool:
    """A stage names only its output (``S3.output``); a MaxViT part is named after its block."""
    if found["block"] is None:
        return found["part"] is None and found["leaf"] in (None, "output")
    return True


class PartName(str):
    """A part's name, parsed once: ``PartName("S1.0.grid").part == "grid"``. It is the string itself
    (equal to, hashed and serialised as ``"S1.0.grid"``), so every API that takes a name takes one.

    Args:
        name: the text, such as ``S3.0``, ``S1.0.grid`` or ``S3.0.attn.weights`` (or a PartName).

    Attributes:
        stage: 0 for the stem, 1..4 for S1..S4; None for a head name (``head``, ``pooled``, ``logits``).
        block: the block's index in its stage, or None for a stage-level name (``S0``, ``S3.output``).
        part: a MaxViT block's part (:data:`SUBPARTS`), or None.
        leaf: what follows (``output``, ``attn.weights``, ``mlp``), or None; a head name's own word.

    Raises:
        ValueError: a name of none of these forms, saying how names look.

    Examples:
        >>> from coatnet.model.parts import PartName
        >>> name = PartName("S1.0.grid.attn.weights")
        >>> name.stage, name.block, name.part, name.leaf, name.base, name.unit
        (1, 0, 'grid', 'attn.weights', 'S1.0', 'S1.0.grid')
        >>> PartName.of(3, 0) == "S3.0", str(PartName.of(3, 0).child("output"))
        (True, 'S3.0.output')
        >>> PartName("S3.x")
        Traceback (most recent call last):
        ...
        ValueError: a part is named like S3.0 (stage S3, block 0), ... got 'S3.x'
    """

    stage: int | None
    block: int | None
    part: str | None
    leaf: str | None

    def __new__(cls, name: str) -> PartName:
        if isinstance(name, PartName):
            return name
        text = str(name).strip()
        found = _NAME.match(text)
        if text in HEAD_NAMES:
            fields: tuple = (None, None, None, text)
        elif found and _well_formed(found):
            block = found["block"]
            fields = (
                int(found["stage"]),
                None if block is None else int(block),
                found["part"],
                found["leaf"],
            )
        else:
            raise ValueError(
                "a part is named like S3.0 (stage S3, block 0), S1.0.grid (a MaxViT block's grid "
                "attention) or S3.0.attn.weights (an activation; coatnet.trace_names(model) lists "
                f"them), got {str(name)!r}"
            )
        self = super().__new__(cls, text)
        for key, value in zip(("stage", "block", "part", "leaf"), fields, strict=True):
            object.__setattr__(self, key, value)
        return self

    def __init__(self, name: str) -> None:  # parsed in __new__ (a str is made there); this names the argument
        super().__init__()

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("a PartName cannot be changed")

    def __getnewargs__(self) -> tuple[str]:
        return (str(self),)

    def __reduce__(self):
        return (PartName, (str(self),))

    @classmethod
    def of(
        cls, stage: int, block: int | None = None, part: str | None = None, leaf: str | None = None
    ) -> PartName:
        """The name of these fields: ``PartName.of(1, 0, "grid") == "S1.0.grid"``."""
        text = f"S{int(stage)}" + ("" if block is None else f".{int(block)}")
        text += "".join(f".{field}" for field in (part, leaf) if field)
        return cls(text)

    @property
    def base(self) -> PartName:
        """The block it is in (``S1.0`` for ``S1.0.grid.attn.weights``); the stage for a stage-level name,
        the name itself for a head name."""
        if self.stage is None:
            return self
        return PartName.of(self.stage, self.block)

    @property
    def unit(self) -> PartName:
        """The name without its leaf: the block, or a MaxViT block's part (``S1.0.grid``)."""
        if self.stage is None:
            return self
        return PartName.of(self.stage, self.block, self.part)

    @property
    def is_block(self) -> bool:
        """Whether it names a block or a MaxViT block's part, with nothing after (``S3.0``, ``S1.0.grid``)."""
        return self.block is not None and self.leaf is None

    def child(self, leaf: str) -> PartName:
        """``S3.0`` + ``attn.weights`` -> ``S3.0.attn.weights``."""
        return PartName(f"{self}.{leaf}")


@dataclass(frozen=True, eq=False)
class Part:
    """One named part of a model, as :meth:`coatnet.CoAtNet.parts` lists it.

    Attributes:
        name: its :class:`PartName` (``S0``, ``S2.1``, ``S3.0``, ``S3.0.mlp``, ``S1.0.grid``, ``head``).
        kind: ``stem``, ``mbconv``, ``convnext``, ``attention``, ``mlp`` or ``head`` (``module`` for a
            module put in a block's place that the model does not know).
        stage: 0 (stem) .. 4; None for the head.
        block: its block's index in the stage; None for the stem and the head.
        module: the module that computes it. An attention part's is what attends with its residual: a
            Transformer block (whose ``attn`` is the attention), a MaxViT block's partition, or a parallel
            MaxViT block's attention; :attr:`attention` is the attention itself.
        owner: the block it belongs to (itself for a whole block; the stem and the head their own).
        block_kind: its block's kind in the stage's config (``C``, ``T``, ``M``), or the stem's / ``head``.
        channels: the channels it hands on (the head: the pooled features).
        grid: the (H, W) grid of its output for the size asked (the head: (1, 1)).
        stride: input pixels per step of that grid.
        partition: an attention's ``global``, ``block`` or ``grid``; None for other parts.
        window: the (h, w) positions one of an attention's windows holds (the grid for global attention).

    Examples:
        >>> import coatnet
        >>> parts = coatnet.load_checkpoint("demo-pre").parts()
        >>> [(str(p.name), p.kind) for p in parts][:3]
        [('S0', 'stem'), ('S1.0', 'mbconv'), ('S2.0', 'mbconv')]
        >>> s3 = next(p for p in parts if p.name == "S3.0")
        >>> s3.kind, s3.partition, s3.grid, s3.channels, s3.stride
        ('attention', 'global', (7, 7), 128, 4)
    """

    name: PartName
    kind: str
    stage: int | None
    block: int | None
    module: nn.Module
    owner: nn.Module
    block_kind: str
    channels: int
    grid: tuple[int, int]
    stride: int
    partition: str | None = None
    window: tuple[int, int] | None = None

    @property
    def attention(self) -> nn.Module:
        """An attention part's relative attention (a Transformer block's or a partition's ``attn``)."""
        if self.kind != "attention":
            raise ValueError(f"{self.name} is a {self.kind} part, not an attention")
        return getattr(self.module, "attn", self.module)

    @property
    def parallel(self) -> bool:
        """Whether it attends side by side with the other partition of its block (timm's parallel block)."""
        return bool(getattr(self.owner, "parallel", False))


def model_parts(model: nn.Module, img_size: int | tuple[int, int] | None = None) -> list[Part]:
    """Every named part of ``model`` (a :class:`coatnet.CoAtNet` or its inference build) in forward order,
    with grids for ``img_size`` (default: the size it was built for): :meth:`coatnet.CoAtNet.parts`.

    Each block class names its kind (``part_kind``); a MaxViT block says what it holds through ``convs()``
    and ``partitions()``.
    """
    config = model.config
    infos = model.stage_info(img_size)
    stem = infos[0]
    out = [Part(PartName.of(0), "stem", 0, None, model.stem, model.stem, stem.kind, stem.channels,
                tuple(stem.grid), stem.reduction)]  # fmt: skip
    for s, stage in enumerate(model.stages, start=1):
        info, dims = infos[s], [g.dim for g in config.stages[s - 1].groups for _ in range(g.depth)]
        common = dict(stage=s, grid=tuple(info.grid), stride=info.reduction)
        for b, block in enumerate(stage.blocks):
            base, kind = PartName.of(s, b), getattr(type(block), "part_kind", "module")
            here = dict(common, block=b, owner=block, block_kind=info.block_kinds[b], channels=dims[b])
            if kind == "attention":  # a Transformer block: its attention (with the block's pool), then MLP
                out.append(
                    Part(base, "attention", module=block, partition="global", window=info.grid, **here)
                )
                out.append(Part(base.child("mlp"), "mlp", module=block.mlp, **here))
            elif kind == "maxvit":
                out += _maxvit_parts(block, base, here)
            else:  # an MBConv or ConvNeXt block, or a module put in a block's place ("module")
                out.append(Part(base, kind, module=block, **here))
    last = infos[-1]
    out.append(Part(PartName("head"), "head", None, None, model.head, model.head, "head",
                    model.head.num_features, (1, 1), last.reduction * last.grid[0]))  # fmt: skip
    return out


def _maxvit_parts(block: nn.Module, base: PartName, here: dict) -> list[Part]:
    """A MaxViT block's parts: its conv(s), then block (if any) and grid attention, each with its MLP (a
    parallel block's two attentions share one, ``S1.0.parallel.mlp``)."""
    out = [Part(base.child(suffix), conv.part_kind, module=conv, **here) for suffix, conv in block.convs()]
    for partition, module, size in block.partitions():
        out.append(Part(base.child(partition), "attention", module=module, partition=partition,
                        window=(size, size), **here))  # fmt: skip
        if not block.parallel:
            out.append(Part(base.child(f"{partition}.mlp"), "mlp", module=module.mlp, **here))
    if block.parallel:
        out.append(Part(base.child("parallel.mlp"), "mlp", module=block.attn.mlp, **here))
    return out


def block_names(model: nn.Module) -> list[PartName]:
    """The names of the blocks of S1..S4 in forward order (``S1.0`` .. ``S4.1``)."""
    return [
        PartName.of(s, b) for s, stage in enumerate(model.stages, start=1) for b in range(len(stage.blocks))
    ]
