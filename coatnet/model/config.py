"""Typed, frozen configuration of a CoAtNet (the paper's section 2 and Table 3).

A network is a stem S0 followed by four stages S1..S4. Each stage is one or more groups of identical
blocks: ``C`` (MBConv), ``T`` (relative-attention Transformer) or ``M`` (MaxViT: MBConv, then block
attention inside windows, then grid attention over a dilated grid; Tu et al. 2022). Most stages hold a
single group; CoAtNet-6/7 put 8 MBConv blocks and then 42 Transformer blocks in S3 (Table 12).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

BlockKind = Literal["C", "T", "M"]
AttentionMode = Literal["pre", "post"]

ATTENTION_MODES = ("pre", "post")
STEM_KINDS = ("conv", "patch")
MBCONV_STRIDES = ("1x1", "dw", "pool")
POOL_KINDS = ("max", "avg", "max3")
ACTIVATIONS = ("gelu", "gelu_tanh", "silu", "relu")
WIDTH_BASES = ("in", "out", "hidden")
NORMS = ("layer", "batch")
REL_POS_KINDS = ("table", "mlp")
CONV_BLOCK_KINDS = ("mbconv", "convnext")

# Sane limits, checked before any module is built, so that a config from a damaged or hostile checkpoint
# is refused in one line instead of allocating until memory runs out. The paper's largest member,
# CoAtNet-7, has widths up to 3072, 60 blocks, 2.4B parameters and 1,024 tokens per attention block at 512.
MAX_WIDTH = 16_384  # channels of any layer
MAX_BLOCKS = 512  # blocks in all four stages
MAX_TOKENS = 16_384  # positions of an attention block's grid (its bias alone is heads x tokens^2)
MAX_IMAGE_SIDE = 8_192
MAX_CLASSES = 1_000_000
MAX_IN_CHANS = 1_024
MAX_PARAMS = 20e9  # an upper estimate of the parameters (80 GB in float32)


def as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An image or grid size as (height, width)."""
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


@dataclass(frozen=True)
class BlockGroup:
    """``depth`` blocks of one ``kind`` with ``dim`` output channels.

    Attributes:
        kind: ``C`` (MBConv), ``T`` (relative-attention Transformer) or ``M`` (MaxViT).
        depth: how many blocks, at least 1.
        dim: their output channels.

    Examples:
        >>> import coatnet
        >>> coatnet.load_checkpoint("demo-pre").config.stages[0].groups
        (BlockGroup(kind='C', depth=1, dim=32),)
    """

    kind: BlockKind
    depth: int
    dim: int

    def __post_init__(self) -> None:
        if self.kind not in ("C", "T", "M"):
            raise ValueError(
                f"block kind must be 'C' (MBConv), 'T' (Transformer) or 'M' (MaxViT), got {self.kind!r}"
            )
        if not isinstance(self.depth, int) or not isinstance(self.dim, int) or self.depth < 1 or self.dim < 1:
            raise ValueError(f"a block group needs whole numbers depth >= 1 and dim >= 1, got {self}")


@dataclass(frozen=True)
class StageConfig:
    """One stage S1..S4: its block groups; the first block of the stage applies the stride.

    Attributes:
        groups: the stage's :class:`BlockGroup` s, in order (one for every stage of the paper's models).

    Examples:
        >>> import coatnet
        >>> stage = coatnet.StageConfig((coatnet.BlockGroup("T", 2, 128),))
        >>> stage.groups[0].depth
        2
    """

    groups: tuple[BlockGroup, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a stage needs at least one block group")
        object.__setattr__(self, "groups", tuple(self.groups))

    @property
    def kind(self) -> str:
        """``C``, ``T``, or ``C+T`` for a mixed stage."""
        return "+".join(group.kind for group in self.groups)

    @property
    def depth(self) -> int:
        return sum(group.depth for group in self.groups)

    @property
    def dim(self) -> int:
        return self.groups[-1].dim

    @property
    def block_kinds(self) -> tuple[str, ...]:
        return tuple(group.kind for group in self.groups for _ in range(group.depth))


def stage(kind: BlockKind, depth: int, dim: int) -> StageConfig:
    """A single-group stage, the common case: ``stage("C", 2, 96)``."""
    return StageConfig(groups=(BlockGroup(kind, depth, dim),))


@dataclass(frozen=True)
class CoAtNetConfig:
    """Everything that defines a CoAtNet's architecture.

    Args:
        name: the variant name this config came from.
        stem_dim: channels of S0 (both 3x3 convs, or the patch embedding).
        stages: S1..S4.
        strides: the stride of S0..S4. The paper's is 2 everywhere (output strides 2..32); a model for
            small images may use 1 for S0 or S1. A patch stem's stride is its patch size.
        stem_kind: ``conv`` (two 3x3 convs, the first strided) or ``patch`` (one non-overlapping
            patch embedding, ViT_REL).
        head_dim: channels per attention head (32 in the paper; 64 for CoAtNet-5, 128 for 6 and 7).
        attention: ``pre`` adds the relative bias to the logits before the softmax (Eq. 3), ``post``
            adds it to the weights after the softmax.
        mbconv_stride: where a down-sampling MBConv block strides: ``1x1`` (the first 1x1 conv, Eq. 5),
            ``dw`` (the depthwise conv, the Table 9 ablation) or ``pool`` (pooling the normalised input).
        pool: the down-sampling pool of shortcuts, attention inputs and ``mbconv_stride="pool"``:
            ``max`` / ``avg`` (2x2 windows, stride 2) or ``max3`` (3x3 windows, stride 2, padding 1).
        mbconv_stride_pool: the pool that strides the residual branch for ``mbconv_stride="pool"``
            (one of the ``pool`` kinds; timm keeps 2x2 averaging there whatever its shortcuts use).
        expand_ratio: MBConv hidden width as a multiple of ``mbconv_expand_from`` channels.
        mbconv_expand_from: ``out`` (the block's output channels, the paper's reading) or ``in``.
        mlp_ratio: Transformer FFN hidden width as a multiple of the block's channels.
        se_ratio: squeeze-excitation width as a fraction of ``se_from`` channels.
        se_from: ``in`` (the block's input channels), ``out``, or ``hidden`` (the expanded width).
        se_act: the activation inside squeeze-excitation.
        se_early: squeeze-excitation right after the depthwise conv, before its norm and activation.
        kernel_size: the depthwise kernel of the conv blocks (3 for MBConv; timm's ConvNeXt blocks 7).
        conv_block: what a ``C`` block (and a MaxViT block's conv) is: ``mbconv`` (Eq. 5) or ``convnext``
            (a k x k depthwise conv, LayerNorm, a 1x1-conv MLP of ``expand_ratio`` x C_out, LayerScale:
            MaxxViT and CoAtNeXt, :mod:`coatnet.model.convnext`).
        conv_layer_scale: the ConvNeXt block's initial LayerScale (None: none).
        stem_norm: the stem's norm between its two convs: ``batch`` (the paper's), or ``layer`` (timm's
            ConvNeXt-based models).
        block_attention: MaxViT blocks attend in windows before their grid attention; False: grid
            attention alone (timm's MaxxViT-V2).
        parallel_partitions: MaxViT blocks run two conv blocks, then block and grid attention side by
            side, each over every head, projected to half the channels, with one MLP (timm's experimental
            ``PM`` block, :mod:`coatnet.model.parallel`).
        conv_act: the activation of the stem and the MBConv blocks.
        mbconv_pre_norm_act: an activation after the MBConv pre-norm.
        mbconv_bias: a bias on the MBConv's shortcut projection and last 1x1 conv.
        stem_width: channels of the first stem conv (default: ``stem_dim``).
        stem_bias: biases in both stem convs.
        attn_width: q/k/v (and heads) at the block's ``out``put width (the paper's reading) or its ``in``put
            width, then projected to the output width.
        attn_norm: ``layer`` (LayerNorm, the paper) or ``batch`` (BatchNorm) in Transformer blocks, and
            for ``final_norm``.
        attn_shortcut_bias: a bias on the Transformer down-sampling shortcut's projection.
        rel_pos: ``table`` (the paper's learned (2H-1, 2W-1) table) or ``mlp`` (a small MLP of
            log-spaced offsets computes the table, timm's "rmlp").
        rel_pos_mlp_hidden: hidden width of that MLP.
        layer_scale: initial LayerScale on both Transformer branches, or None for none.
        final_norm: a norm (``attn_norm``) on the last feature map, before pooling.
        window_size: MaxViT (``M``) blocks: the side of block attention's windows, one for every stage;
            None: the input size / 32 (timm's default, 224 -> 7).
        grid_size: MaxViT (``M``) blocks: the side of grid attention's dilated grid, one for every
            stage; None: the input size / 32.
        mlp_act: the activation of the Transformer and MaxViT MLPs (``gelu``, or ``gelu_tanh`` as the
            TensorFlow MaxViTs).
        tf_padding: stride-2 convolutions pad as TensorFlow's "same" (0 before, 1 after on even sides),
            as the MaxViT weights released in TensorFlow were trained.
        head_hidden: 0 for pool -> linear; else pool -> LayerNorm -> linear(head_hidden) -> tanh ->
            linear, timm's paper-like head.
        ln_eps: LayerNorm epsilon.
        bn_eps: BatchNorm epsilon.
        bn_momentum: BatchNorm momentum.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over all blocks.
        dropout: dropout before the classifier.
        img_size: the input size the model is built for (relative-bias tables are sized for it); other
            sizes divisible by the total stride also run.
        in_chans: input channels.
        num_classes: output classes (0: no classifier).

    Raises:
        ValueError: a field out of its range, or a combination that cannot be built, naming the variant.

    Examples:
        >>> import coatnet
        >>> config = coatnet.load_checkpoint("demo-pre").config
        >>> config.layout, config.depths, config.dims, config.head_dim
        ('C-C-T-T', (1, 2, 2, 1), (32, 64, 128, 256), 32)
        >>> config.replace(attention="post").attention
        'post'
    """

    name: str = "custom"
    stem_dim: int = 64
    stages: tuple[StageConfig, ...] = ()
    strides: tuple[int, ...] = (2, 2, 2, 2, 2)
    stem_kind: str = "conv"
    head_dim: int = 32
    attention: AttentionMode = "pre"
    mbconv_stride: str = "1x1"
    pool: str = "max"
    expand_ratio: float = 4.0
    mlp_ratio: float = 4.0
    se_ratio: float = 0.25
    kernel_size: int = 3
    conv_block: str = "mbconv"
    conv_layer_scale: float | None = None
    stem_norm: str = "batch"
    block_attention: bool = True
    parallel_partitions: bool = False
    conv_act: str = "gelu"
    mbconv_expand_from: str = "out"
    mbconv_pre_norm_act: bool = False
    mbconv_stride_pool: str = "avg"
    mbconv_bias: bool = True
    se_from: str = "in"
    se_act: str = "gelu"
    se_early: bool = False
    stem_width: int | None = None
    stem_bias: bool = False
    attn_width: str = "out"
    attn_norm: str = "layer"
    attn_shortcut_bias: bool = True
    rel_pos: str = "table"
    rel_pos_mlp_hidden: int = 512
    layer_scale: float | None = None
    final_norm: bool = False
    window_size: int | None = None
    grid_size: int | None = None
    mlp_act: str = "gelu"
    tf_padding: bool = False
    head_hidden: int = 0
    ln_eps: float = 1e-5
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    drop_path_rate: float = 0.0
    dropout: float = 0.0
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", as_hw(self.img_size))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "stages", tuple(self.stages))
        self._validate()

    def _validate(self) -> None:
        def check(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"{self.name}: {message}")

        check(len(self.stages) == 4, f"a CoAtNet has four stages S1..S4, got {len(self.stages)}")
        check(len(self.strides) == 5, f"strides names S0..S4 (five values), got {self.strides}")
        check(all(s >= 1 for s in self.strides), f"strides must be >= 1, got {self.strides}")
        check(self.attention in ATTENTION_MODES, f"attention must be 'pre' or 'post', got {self.attention!r}")
        check(self.stem_kind in STEM_KINDS, f"stem_kind must be one of {STEM_KINDS}, got {self.stem_kind!r}")
        check(self.mbconv_stride in MBCONV_STRIDES, f"mbconv_stride must be one of {MBCONV_STRIDES}")
        check(self.pool in POOL_KINDS, f"pool must be one of {POOL_KINDS}, got {self.pool!r}")
        check(self.mbconv_stride_pool in POOL_KINDS, f"mbconv_stride_pool must be one of {POOL_KINDS}")
        for name, value, allowed in (
            ("conv_act", self.conv_act, ACTIVATIONS),
            ("se_act", self.se_act, ACTIVATIONS),
            ("mbconv_expand_from", self.mbconv_expand_from, ("in", "out")),
            ("se_from", self.se_from, WIDTH_BASES),
            ("attn_width", self.attn_width, ("in", "out")),
            ("attn_norm", self.attn_norm, NORMS),
            ("rel_pos", self.rel_pos, REL_POS_KINDS),
            ("mlp_act", self.mlp_act, ("gelu", "gelu_tanh")),
            ("conv_block", self.conv_block, CONV_BLOCK_KINDS),
            ("stem_norm", self.stem_norm, NORMS),
        ):
            check(value in allowed, f"{name} must be one of {allowed}, got {value!r}")
        check(self.layer_scale is None or self.layer_scale > 0, "layer_scale must be positive or None")
        check(
            self.conv_layer_scale is None or self.conv_layer_scale > 0,
            "conv_layer_scale must be positive or None",
        )
        check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size must be odd and >= 1")
        check(self.head_hidden >= 0, "head_hidden must be >= 0")
        check(self.stem_kind == "patch" or self.strides[0] in (1, 2), "a conv stem strides by 1 or 2")
        check(all(s in (1, 2) for s in self.strides[1:]), "stages S1..S4 stride by 1 or 2")
        check(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate must be in [0, 1)")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check(self.in_chans >= 1 and self.num_classes >= 0, "in_chans >= 1 and num_classes >= 0")
        self._check_limits(check)
        kinds = [kind for s in self.stages for kind in s.block_kinds]
        first_t = kinds.index("T") if "T" in kinds else len(kinds)
        check("C" not in kinds[first_t:], "MBConv (C) blocks must come before Transformer (T) blocks")
        check("M" not in kinds or set(kinds) == {"M"}, "a MaxViT has MaxViT (M) blocks in every stage")
        if "M" in kinds:
            self._check_partitions(check)
        dim_in = self.stem_dim
        for s in self.stages:
            for group in s.groups:
                check(
                    self.conv_block != "convnext" or group.kind == "T" or group.dim % dim_in == 0,
                    f"a ConvNeXt block's depthwise conv widens {dim_in} channels to {group.dim}, not a "
                    f"multiple of them: choose widths that each divide the next (stem_dim and dims)",
                )
                width = dim_in if self.attn_width == "in" else group.dim
                check(
                    group.kind == "C" or (width % self.head_dim == 0 and group.dim % self.head_dim == 0),
                    f"Transformer width {width} is not a multiple of head_dim {self.head_dim}",
                )
                dim_in = group.dim
        height, width = self.img_size
        check(
            height % self.total_stride == 0 and width % self.total_stride == 0,
            f"img_size {height}x{width} is not divisible by the total stride {self.total_stride}; "
            f"use sides that are multiples of {self.total_stride}",
        )

    def partition_sizes(self, img_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """(window, grid) sides of MaxViT blocks: the configured ones, or the built input size / 32."""
        height, width = self.img_size
        default = max(1, min(height, width) // 32)
        return (self.window_size or default, self.grid_size or default)

    def partition_step(self) -> int:
        """The input sides a MaxViT takes are multiples of this: every stage's grid divides into windows
        and grids (total stride x the least common multiple of the two sides)."""
        window, grid = self.partition_sizes()
        return self.total_stride * math.lcm(window, grid)

    def _check_partitions(self, check) -> None:
        window, grid = self.partition_sizes()
        check(window >= 1 and grid >= 1, f"window_size and grid_size must be >= 1, got {window}, {grid}")
        height, width = self.img_size
        step = self.partition_step()
        sizes = sorted({max(step, height // step * step), -(-height // step) * step})
        check(
            height % step == 0 and width % step == 0,
            f"img_size {height}x{width} does not split every stage into {window}x{window} windows and "
            f"{grid}x{grid} grids; use sides that are multiples of {step} ({' or '.join(map(str, sizes))})",
        )

    def _check_limits(self, check) -> None:
        """Refuse sizes no real model has (``MAX_*``), before anything is allocated."""
        widths = [self.stem_dim, self.stem_width or 0, self.head_dim, self.head_hidden]
        widths += [self.rel_pos_mlp_hidden] + [group.dim for s in self.stages for group in s.groups]
        check(all(isinstance(w, int) and w >= 0 for w in widths), f"widths must be whole numbers: {widths}")
        check(max(widths) <= MAX_WIDTH, f"a width of {max(widths)} channels exceeds the limit of {MAX_WIDTH}")
        blocks = sum(group.depth for s in self.stages for group in s.groups)
        check(blocks <= MAX_BLOCKS, f"{blocks} blocks exceed the limit of {MAX_BLOCKS}")
        side = max(self.img_size)
        check(side <= MAX_IMAGE_SIDE, f"img_size {self.img_size} exceeds {MAX_IMAGE_SIDE} pixels a side")
        check(self.num_classes <= MAX_CLASSES, f"{self.num_classes} classes exceed the limit {MAX_CLASSES}")
        check(self.in_chans <= MAX_IN_CHANS, f"{self.in_chans} input channels exceed {MAX_IN_CHANS}")
        for s, (stage, (height, width)) in enumerate(zip(self.stages, self.grids()[1:], strict=True), 1):
            tokens = height * width
            check(
                "T" not in stage.block_kinds or tokens <= MAX_TOKENS,
                f"S{s} would attend over {tokens} positions (limit {MAX_TOKENS}): use a smaller img_size",
            )
        check(
            self.estimated_params() <= MAX_PARAMS,
            f"about {self.estimated_params():.3g} parameters exceed the limit of {MAX_PARAMS:.3g}",
        )

    def estimated_params(self) -> float:
        """An upper estimate of the parameter count from the widths alone (no module is built): 16 d_in
        d_out per block (an MBConv with expansion 4 and its squeeze-excitation, or attention and MLP),
        plus the classifier."""
        total, dim_in = 0.0, float(self.stem_dim)
        for s in self.stages:
            for group in s.groups:
                total += 16.0 * max(dim_in, group.dim) * group.dim * group.depth
                dim_in = float(group.dim)
        return total + (dim_in + 1) * self.num_classes + float(self.head_hidden) * dim_in

    @property
    def total_stride(self) -> int:
        return math.prod(self.strides)

    @property
    def windowed(self) -> bool:
        """Whether it attends in windows: the MaxViT family (MaxViT, MaxxViT, MaxxViT-V2, ``M`` blocks)."""
        return any("M" in s.block_kinds for s in self.stages)

    @property
    def layout(self) -> str:
        """The paper's layout name for S1..S4, e.g. ``C-C-T-T``; ``ViT_REL`` for a patch-stem model."""
        if self.stem_kind == "patch":
            return "ViT_REL"
        return "-".join(s.kind for s in self.stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(s.dim for s in self.stages)

    def reductions(self) -> tuple[int, ...]:
        """Output stride (input pixels per grid step) after S0..S4."""
        out, total = [], 1
        for s in self.strides:
            total *= s
            out.append(total)
        return tuple(out)

    def grids(self, img_size: int | tuple[int, int] | None = None) -> tuple[tuple[int, int], ...]:
        """The (H, W) grid after each of S0..S4 for an input of ``img_size`` (default: the built size)."""
        height, width = as_hw(img_size) if img_size is not None else self.img_size
        return tuple((height // r, width // r) for r in self.reductions())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["img_size"] = list(self.img_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoAtNetConfig:
        data = dict(data)
        data["stages"] = tuple(
            StageConfig(groups=tuple(BlockGroup(**g) for g in s["groups"])) for s in data["stages"]
        )
        data["strides"] = tuple(data["strides"])
        data["img_size"] = tuple(data["img_size"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}: was this saved by a newer coatnet?")
        return cls(**data)

    def replace(self, **changes: Any) -> CoAtNetConfig:
        return replace(self, **changes)
