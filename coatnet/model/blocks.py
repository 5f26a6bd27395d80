"""The stem S0, the MBConv block (C), the relative-attention Transformer block (T) and the MaxViT block (M).

All blocks are pre-activation, ``x <- x + Module(Norm(x))`` (the paper's section 2 and Appendix A.1),
and the first block of a stage down-samples as Eq. 4 (T) or Eq. 5 (C). Module names follow the
checkpoint keys of timm's ``maxxvit.py`` (``shortcut``, ``pre_norm``, ``conv1_1x1``, ``norm1``, ``attn``,
``mlp``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks

from coatnet.model.attention import RelativeAttention
from coatnet.model.config import CoAtNetConfig
from coatnet.model.convnext import ConvNeXtBlock
from coatnet.model.interventions import (
    ATTENTION_KINDS,
    CONV_KINDS,
    Intervention,
    block_interventions,
    row_mask,
)
from coatnet.model.layers import (
    DropPath,
    LayerScale,
    Mlp,
    SamePad,
    Shortcut,
    SqueezeExcite,
    folded_after,
    make_act,
    make_norm2d,
    make_pool,
)
from coatnet.model.parts import PartName
from coatnet.model.tracing import MBCONV_NAMES, Capture, active_capture, tap, traced_name
from coatnet.model.windows import partition, unpartition


class Stem(nn.Module):
    """S0: two 3x3 convs, the first strided (``conv``), or one patch embedding (``patch``, ViT_REL)."""

    def __init__(self, config: CoAtNetConfig) -> None:
        super().__init__()
        self.kind = config.stem_kind
        stride, dim = config.strides[0], config.stem_dim
        width = config.stem_width or dim
        if self.kind == "patch":
            self.proj = nn.Conv2d(config.in_chans, dim, kernel_size=stride, stride=stride)
        else:
            bias = config.stem_bias
            same = config.tf_padding and stride > 1
            self.pad1 = SamePad(3, stride) if same else nn.Identity()
            self.conv1 = nn.Conv2d(
                config.in_chans, width, 3, stride=stride, padding=0 if same else 1, bias=bias
            )
            eps = config.bn_eps if config.stem_norm == "batch" else config.ln_eps
            self.norm1 = make_norm2d(config.stem_norm, width, eps=eps, momentum=config.bn_momentum)
            self.act1 = make_act(config.conv_act)
            self.conv2 = nn.Conv2d(width, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "patch":
            return self.proj(x)
        fresh = not watched(self.conv1, self.norm1, self.act1)
        x = conv_norm(self.conv1, self.norm1, self.pad1(x), fresh)
        return self.conv2(fresh_act(self.act1, x, fresh))


class MBConvBlock(nn.Module):
    """Pre-norm MBConv with squeeze-excitation (Eq. 5):

    ``x <- Proj(Pool(x)) + Conv1x1(SE(DepthConv(Conv1x1(Norm(x), stride))))``, the stride in the first
    1x1 conv (``mbconv_stride="1x1"``), in the depthwise conv (``"dw"``, Table 9), or in a pool of the
    normalised input (``"pool"``).
    """

    residual_in_place = False  # set by the inference build (coatnet.model.inference): input gradients only
    conv_kinds = CONV_KINDS  # the interventions it takes
    trace_leaves = MBCONV_NAMES  # what it traces (coatnet.model.tracing)
    part_kind = "mbconv"  # its kind among a model's parts (coatnet.model.parts)

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
        self.stage, self.block = stage, block  # its name S{stage}.{block}, for interventions
        hidden = int((dim_out if config.mbconv_expand_from == "out" else dim_in) * config.expand_ratio)
        se_base = {"in": dim_in, "out": dim_out, "hidden": hidden}[config.se_from]
        stride_pool = stride if config.mbconv_stride == "pool" else 1
        stride_1x1 = stride if config.mbconv_stride == "1x1" else 1
        stride_dw = stride if config.mbconv_stride == "dw" else 1
        k = config.kernel_size

        def batch_norm(channels: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)

        self.shortcut = Shortcut(
            dim_in=dim_in, dim_out=dim_out, stride=stride, pool=config.pool, bias=config.mbconv_bias
        )
        self.pre_norm = batch_norm(dim_in)
        self.pre_act = make_act(config.conv_act) if config.mbconv_pre_norm_act else nn.Identity()
        self.down = make_pool(config.mbconv_stride_pool, stride_pool)
        self.conv1_1x1 = nn.Conv2d(dim_in, hidden, 1, stride=stride_1x1, bias=False)
        self.norm1 = batch_norm(hidden)
        self.act1 = make_act(config.conv_act)
        same = config.tf_padding and stride_dw > 1
        self.pad_kxk = SamePad(k, stride_dw) if same else nn.Identity()
        self.conv2_kxk = nn.Conv2d(
            hidden, hidden, k, stride=stride_dw, padding=0 if same else k // 2, groups=hidden, bias=False
        )
        self.se_early = config.se_early
        self.norm2 = batch_norm(hidden)
        self.act2 = make_act(config.conv_act)
        self.se = SqueezeExcite(
            channels=hidden, hidden=max(1, int(se_base * config.se_ratio)), act=config.se_act
        )
        self.conv3_1x1 = nn.Conv2d(hidden, dim_out, 1, bias=config.mbconv_bias)
        self.drop_path = DropPath(drop_path)

    def convs(self) -> list[tuple[str, nn.Module]]:
        """Its conv blocks, each with the suffix of its traced name: itself."""
        return [("", self)]

    def check_intervention(self, item: Intervention) -> None:
        """Raise a ValueError if ``item`` (meant for this block) has no place here."""
        if item.kind in ATTENTION_KINDS:
            raise ValueError(f"{item.label}: {item.block} is an MBConv block; {item.kind} is for attention")

    def _gate(
        self, x: torch.Tensor, ungated: torch.Tensor | None, fresh: bool, capture: Capture | None
    ) -> torch.Tensor:
        """Squeeze-excitation of ``x``: in place when ``fresh`` and the module can (``gates_in_place``),
        its gate traced as ``se.gate``; a module put in its place (an identity, another SE) is called with
        ``x`` alone."""
        if getattr(self.se, "gates_in_place", False):
            if capture is None:
                return self.se(x, ungated, fresh=fresh)
            return self.se(x, ungated, fresh=fresh, trace=f"{traced_name(self)}.se.gate")
        return self.se(x, ungated) if ungated is not None else self.se(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edits = block_interventions(
            self.stage, self.block
        )  # coatnet.model.interventions: per call, usually none
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = tap(capture, self, "input", x)
        ungated = row_mask(edits, "no_se", x) if edits else None
        shortcut = self.shortcut(x)
        # unwatched, BatchNorm folds into the convolution before it; unwatched and untraced, each step's
        # output is held by no one but this call (the block's input is the shortcut's): computed in place
        unwatched = not watched(self.pre_norm, self.pre_act, self.down, self.conv1_1x1, self.norm1,
                                self.act1, self.conv2_kxk, self.norm2, self.act2, self.se)  # fmt: skip
        fresh = unwatched and (capture is None or capture.in_place)
        normed = fresh_act(
            self.pre_act, self.pre_norm(x), fresh and isinstance(self.pre_norm, nn.BatchNorm2d)
        )
        x = conv_norm(self.conv1_1x1, self.norm1, self.down(normed), unwatched)
        x = fresh_act(self.act1, x, fresh)
        x = tap(capture, self, "expanded", x)
        x = self.pad_kxk(x)
        if self.se_early:
            x = tap(capture, self, "depthwise", self.conv2_kxk(x))
            x = fresh_act(self.act2, self.norm2(self._gate(x, ungated, fresh, capture)), fresh)
        else:
            x = fresh_act(self.act2, conv_norm(self.conv2_kxk, self.norm2, x, unwatched), fresh)
            x = self._gate(tap(capture, self, "depthwise", x), ungated, fresh, capture)
        x = self.conv3_1x1(x)
        zeroed = row_mask(edits, "zero_branch", x) if edits else None
        if zeroed is not None:
            x = x.masked_fill(zeroed, 0.0)
        # the inference build: the branch's fresh output takes the sum, where no hook has seen it
        if self.residual_in_place and fresh and not watched(self.conv3_1x1, self.drop_path):
            return self.drop_path(x).add_(shortcut)
        return tap(capture, self, "output", shortcut + tap(capture, self, "branch", self.drop_path(x)))


def conv_block_class(config: CoAtNetConfig) -> type[MBConvBlock] | type[ConvNeXtBlock]:
    """The class of ``config``'s conv blocks (``C`` blocks and a MaxViT block's conv)."""
    return ConvNeXtBlock if config.conv_block == "convnext" else MBConvBlock


def watched(*modules: nn.Module) -> bool:
    """Whether a hook (forward or backward, of one of ``modules``, or a global one) may hold a tensor they
    make or must see them called: then nothing is computed in place over their outputs, and no module is
    folded into another (:func:`conv_norm`)."""
    return bool(
        module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_backward_hooks
        or module_hooks._global_backward_pre_hooks
        or any(
            s._forward_hooks or s._forward_pre_hooks or s._backward_hooks or s._backward_pre_hooks
            for m in modules
            for s in m.modules()
        )
    )


def conv_norm(conv: nn.Module, norm: nn.Module, x: torch.Tensor, unwatched: bool) -> torch.Tensor:
    """``norm(conv(x))``. For an ``unwatched`` convolution and BatchNorm in eval mode, one convolution with
    the BatchNorm folded into its weight and bias, computed on the fly (``W' = W g / s``,
    ``b' = (b - m) g / s + beta``, with ``s = sqrt(var + eps)``): the same values within float rounding
    and the same gradients, one pass over the output instead of two (a quarter off a 1x1 convolution and
    its BatchNorm at batch 8 on the CPU). The module's parameters and buffers are not touched."""
    if not (
        unwatched
        and type(conv) is nn.Conv2d
        and type(norm) is nn.BatchNorm2d
        and not norm.training
        and norm.running_var is not None
        and norm.running_var.dtype == conv.weight.dtype
        and conv.padding_mode == "zeros"
    ):
        return norm(conv(x))
    return conv._conv_forward(x, *folded_after(conv, norm))


def fresh_act(act: nn.Module, x: torch.Tensor, fresh: bool) -> torch.Tensor:
    """``act(x)``; for a ``fresh`` ``x`` (the output of a convolution, a BatchNorm or a gating just made,
    which no hook has seen) a SiLU or ReLU writes in place when no gradient flows through it (half the
    time of a SiLU that allocates its output); otherwise the module is called as is."""
    inplace = type(act) in (nn.SiLU, nn.ReLU) and not getattr(act, "inplace", False)
    if not (fresh and inplace) or (torch.is_grad_enabled() and x.requires_grad):
        return act(x)
    return F.silu(x, inplace=True) if type(act) is nn.SiLU else F.relu(x, inplace=True)


class TransformerBlock(nn.Module):
    """Relative attention + FFN, each pre-norm with a residual. A down-sampling block is Eq. 4:
    ``x <- Proj(Pool(x)) + Attention(Pool(Norm(x)))``. Takes and gives (B, C, H, W).

    Args:
        grid: the block's output grid, for its relative-bias table.
        stage, block: its position, named in recorded attention.
    """

    part_kind = "attention"  # with its MLP, among a model's parts (coatnet.model.parts)

    residual_in_place = False  # set by the inference build (coatnet.model.inference): input gradients only

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        stride: int,
        grid: tuple[int, int],
        config: CoAtNetConfig,
        drop_path: float = 0.0,
        stage: int = 0,
        block: int = 0,
    ) -> None:
        super().__init__()
        self.stage, self.block = stage, block  # its name S{stage}.{block}

        def norm(channels: int) -> nn.Module:
            return make_norm2d(config.attn_norm, channels, eps=config.ln_eps, momentum=config.bn_momentum)

        def layer_scale() -> nn.Module:
            return LayerScale(dim_out, config.layer_scale) if config.layer_scale else nn.Identity()

        self.shortcut = Shortcut(
            dim_in=dim_in, dim_out=dim_out, stride=stride, pool=config.pool, bias=config.attn_shortcut_bias
        )
        self.norm1 = norm(dim_in)
        self.pool = make_pool(config.pool, stride)
        self.attn = RelativeAttention(
            dim_in=dim_in,
            dim_out=dim_out,
            dim_attn=dim_out if config.attn_width == "out" else dim_in,
            head_dim=config.head_dim,
            grid=grid,
            mode=config.attention,
            rel_pos=config.rel_pos,
            rel_pos_mlp_hidden=config.rel_pos_mlp_hidden,
            stage=stage,
            block=block,
        )
        self.ls1 = layer_scale()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = norm(dim_out)
        self.mlp = Mlp(dim=dim_out, hidden=int(dim_out * config.mlp_ratio), act=config.mlp_act)
        self.ls2 = layer_scale()
        self.drop_path2 = DropPath(drop_path)

    def convs(self) -> list[tuple[str, nn.Module]]:
        """Its conv blocks: none."""
        return []

    def check_intervention(self, item: Intervention) -> None:
        """Raise a ValueError if ``item`` (meant for this block) has no place here."""
        if item.kind in CONV_KINDS:
            raise ValueError(f"{item.label}: {item.block} is a Transformer block; {item.kind} is for MBConv")
        if item.heads is not None and max(item.heads) >= self.attn.heads:
            raise ValueError(f"{item.label}: {item.block} has heads 0..{self.attn.heads - 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        # the inference build: each branch's fresh output takes the sum, where no hook has seen it
        if (
            self.residual_in_place
            and (capture is None or capture.in_place)
            and not watched(self.attn, self.ls1, self.drop_path1, self.mlp, self.ls2, self.drop_path2)
        ):
            x = self.drop_path1(self.ls1(self.attn(self.pool(self.norm1(x))))).add_(self.shortcut(x))
            return self.drop_path2(self.ls2(self.mlp(self.norm2(x)))).add_(x)
        x = tap(capture, self, "input", x)
        attended = self.drop_path1(self.ls1(self.attn(self.pool(self.norm1(x)))))
        x = self.shortcut(x) + tap(capture, self, "attn.branch", attended)
        mixed = tap(capture, self, "mlp.branch", self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))
        return tap(capture, self, "output", x + mixed)


class PartitionBlock(nn.Module):
    """One of a MaxViT block's two attentions: pre-norm relative attention inside each window
    (``block``) or each dilated grid group (``grid``) of ``size`` x ``size`` positions, one bias table
    shared by all of them, then a pre-norm MLP; both residual. Takes and gives (B, C, H, W)."""

    def __init__(
        self,
        *,
        kind: str,
        dim: int,
        size: int,
        config: CoAtNetConfig,
        drop_path: float,
        stage: int,
        block: int,
    ) -> None:
        super().__init__()
        self.kind, self.size = kind, size
        self.stage, self.block = stage, block

        def layer_scale() -> nn.Module:
            return LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()

        self.norm1 = make_norm2d("layer", dim, eps=config.ln_eps)
        self.attn = RelativeAttention(
            dim_in=dim, dim_out=dim, head_dim=config.head_dim, grid=(size, size), mode=config.attention,
            rel_pos=config.rel_pos, rel_pos_mlp_hidden=config.rel_pos_mlp_hidden, stage=stage, block=block,
            partition=kind,
        )  # fmt: skip
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
        parts = partition(self.norm1(x), self.size, self.kind)
        attended = unpartition(self.attn(parts, field=grid), self.size, self.kind, grid)
        x = x + tap(capture, self, "attn.branch", self.drop_path1(self.ls1(attended)))
        mixed = tap(capture, self, "mlp.branch", self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))
        return tap(capture, self, "output", x + mixed)


class MaxViTBlock(nn.Module):
    """MaxViT's block (Tu et al. 2022): an MBConv (which strides, as the first block of a stage), block
    attention inside windows, then grid attention over a dilated grid (module names as timm's
    ``MaxxVitBlock``: ``conv``, ``attn_block``, ``attn_grid``)."""

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
        common = dict(dim=dim_out, config=config, drop_path=drop_path, stage=stage, block=block)
        conv = conv_block_class(config)  # MaxxViT: a ConvNeXt block
        self.conv = conv(dim_in=dim_in, dim_out=dim_out, stride=stride, config=config, drop_path=drop_path,
                         stage=stage, block=block)  # fmt: skip
        # MaxxViT-V2: grid attention alone
        self.attn_block = (
            PartitionBlock(kind="block", size=window, **common) if config.block_attention else None
        )
        self.attn_grid = PartitionBlock(kind="grid", size=grid, **common)
        # traced as S{s}.{b}.conv.*, .block.*, .grid.* (coatnet.model.tracing), not under one name
        self.conv.trace_prefix = PartName.of(stage, block, "conv")
        for part, module, _ in self.partitions():
            module.trace_prefix = module.attn.trace_prefix = PartName.of(stage, block, part)

    parallel = False  # block attention, then grid attention: one after the other
    part_kind = "maxvit"  # split into its conv and attentions among a model's parts (coatnet.model.parts)

    def convs(self) -> list[tuple[str, nn.Module]]:
        """Its conv block, traced as ``S{s}.{b}.conv``."""
        return [("conv", self.conv)]

    def partitions(self) -> list[tuple[str, PartitionBlock, int]]:
        """(``block`` / ``grid``, the module that attends, its window side) in forward order: both, or
        grid attention alone."""
        found = [("block", self.attn_block), ("grid", self.attn_grid)]
        return [(kind, module, module.size) for kind, module in found if module is not None]

    @property
    def heads(self) -> int:
        """The heads of each of its attentions."""
        return self.attn_grid.attn.heads

    def check_intervention(self, item: Intervention) -> None:
        """Raise a ValueError if ``item`` (meant for this block) has no place here."""
        if item.kind in CONV_KINDS:
            self.conv.check_intervention(item)
        if item.part == "block" and self.attn_block is None:
            raise ValueError(f"{item.label}: {item.base} has grid attention alone (MaxxViT-V2)")
        heads = self.heads
        if item.heads is not None and max(item.heads) >= heads:
            raise ValueError(f"{item.label}: {item.block} has heads 0..{heads - 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        capture = active_capture()  # coatnet.model.tracing: per call, usually none
        x = tap(capture, self, "input", x)
        x = self.conv(x)
        if self.attn_block is not None:
            x = self.attn_block(x)
        return tap(capture, self, "output", self.attn_grid(x))
