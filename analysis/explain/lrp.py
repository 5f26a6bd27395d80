"""Layer-wise relevance propagation through convolution and attention: CP-LRP (Ali et al., ICML 2022) and
AttnLRP (Achtibat et al., ICML 2024), with a ledger of where each prediction's relevance flows.

One modified backward pass per batch. Relevance is carried as ``R = x * G``: every tensor ``x`` of the
pass holds its relevance as the product of itself and what the modified backward delivers to it, so that
the rules are gradients with a few changes (LXT's formulation), and the pixels' relevance is the input
times its modified gradient. The rules (docs/explanations.md has them in a table with their references):

- a convolution or linear layer, a BatchNorm (folded into the convolution before it where the model has
  one right before it; otherwise its own per-channel affine layer), a LayerNorm, an average pool and every
  sum (a residual addition, pre-normalization's ``content + bias``, post-normalization's
  ``softmax + bias``): the epsilon rule, each term receiving in proportion to what it contributes. The
  stabiliser is the project's own: ``z + epsilon * sign(z)`` with ``sign(0) = +1``, ``epsilon`` absolute;
  in the gradient form it is a factor ``z / (z + epsilon sign z)`` on the incoming gradient, and what it
  withholds is kept by the stabiliser;
- activations (GELU, SiLU, ReLU, tanh) pass relevance unchanged (the identity rule: the local gradient
  becomes ``f(x) / x``, ``f'(0)`` at 0);
- constants for the propagation, under both rules: the squeeze-excitation gate, LayerScale, LayerNorm's
  division by the standard deviation (its centring is linear, and propagated);
- attention, ``"cp"``: the attention weights are constants (relevance flows through the values only);
  ``"attnlrp"``: ``weights @ values`` and ``q k^T`` each split relevance evenly between their two factors,
  and the softmax follows AttnLRP's Proposition 3.1 (gradient times input at its logits);
- max pooling gives the winner everything; window and grid partitions move relevance with the tokens.

Relevance is never lost: what a bias, the stabiliser, a softmax or the relative-position bias keeps is
accounted per source as it is kept (:attr:`LRP.absorbed`), so that the pixels plus every absorbed source
sum to the explained logit. The ledger has one row per part of the model (:meth:`coatnet.CoAtNet.parts`):
the relevance entering each residual branch and its skip, and inside attention the relevance reaching the
content term ``q k^T`` and the relative-position bias ``w_{i-j}``.

The pass reads the model's parameters and buffers and changes nothing: no module is called with a hook,
no gradient is left on a parameter, BatchNorm runs on its running statistics whatever the module's mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import nn

from analysis.core.inputs import as_batch
from analysis.explain.lrp_rules import (
    SOURCES,
    _act,
    _conv_bn,
    _entering,
    _Epsilon,
    _gate,
    _layer,
    _mlp,
    _norm,
    _Observe,
    _Pass,
    _pool,
    _Product,
    _residual,
    _Row,
    _scaled,
    _shortcut,
    _Softmax,
    _Sum,
)
from coatnet.model.attention import RelativeAttention
from coatnet.model.blocks import MaxViTBlock, MBConvBlock, PartitionBlock, Stem, TransformerBlock
from coatnet.model.convnext import ConvNeXtBlock
from coatnet.model.interventions import active_interventions
from coatnet.model.network import CoAtNet
from coatnet.model.parts import PartName
from coatnet.model.windows import partition, unpartition

RULE_LABELS = {"attnlrp": "AttnLRP", "cp": "CP-LRP"}
"""Each LRP rule and its name in words, rule -> label (``analysis.LRP_RULES``: the pickers and titles).

Examples:
    >>> import analysis
    >>> analysis.LRP_RULES["cp"]
    'CP-LRP'
"""
RULES = tuple(RULE_LABELS)


@dataclass(frozen=True)
class LedgerRow:
    """Where the relevance goes at one part of the model, each a (B,) array.

    Attributes:
        part: the part's name, as the model names it (``S3.0``, ``S3.0.mlp``, ``S1.0.grid``, ``S0``).
        kind: ``stem``, ``mbconv``, ``convnext``, ``attention``, ``mlp`` or ``head``.
        branch: the relevance entering the residual branch at the part's addition (for the stem and the
            head, the relevance entering the part: they have no skip).
        skip: the relevance entering the skip at that addition (0 for the stem and the head).
        content: for attention, the relevance reaching the content logits ``q k^T / sqrt(d)`` (0 under
            ``"cp"``); None for other kinds.
        position: for attention, the relevance reaching the relative-position bias (pre-normalization:
            the bias added to the logits; post: the bias added to the softmax's output); 0 under "cp".
        weights: for attention, the relevance reaching the attention weights (0 under ``"cp"``).
        softmax: for attention, the relevance its softmax rule keeps (0 under ``"cp"``).

    Examples:
        >>> import torch, analysis
        >>> found = analysis.lrp(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28))
        >>> row = found.row("S3.0")
        >>> row.kind, row.branch.shape, row.content is not None
        ('attention', (1,), True)
        >>> found.row("S3.0.mlp").content is None
        True
    """

    part: str
    kind: str
    branch: np.ndarray
    skip: np.ndarray
    content: np.ndarray | None = None
    position: np.ndarray | None = None
    weights: np.ndarray | None = None
    softmax: np.ndarray | None = None


@dataclass(frozen=True)
class LRP:
    """Layer-wise relevance of a batch (:func:`lrp`).

    Attributes:
        rule: ``"attnlrp"`` or ``"cp"``.
        epsilon: the stabiliser's epsilon.
        pixels: (B, C, H, W) signed relevance of each input value.
        map: (B, H, W) the pixels' relevance summed over channels.
        target: (B,) the explained class of each image.
        logit: (B,) its logit.
        absorbed: source (:data:`SOURCES`) -> (B,) relevance kept there on the way.
        stages: ``S0``..``S4`` -> (B, h, w) relevance of each stage's output, summed over channels.
        ledger: one :class:`LedgerRow` per part, in forward order.

    Examples:
        >>> import torch, analysis
        >>> found = analysis.lrp(analysis.load_model("demo-maxvit"), torch.randn(2, 1, 28, 28), rule="cp")
        >>> found.pixels.shape, found.stages["S3"].shape, sorted(found.absorbed)
        ((2, 1, 28, 28), (2, 7, 7), ['bias', 'epsilon', 'position', 'softmax'])
        >>> bool(abs(found.total() - found.logit).max() < 1e-3 * abs(found.logit).max())
        True
    """

    rule: str
    epsilon: float
    pixels: np.ndarray
    map: np.ndarray
    target: np.ndarray
    logit: np.ndarray
    absorbed: dict[str, np.ndarray]
    stages: dict[str, np.ndarray]
    ledger: tuple[LedgerRow, ...]

    def total(self) -> np.ndarray:
        """(B,) the pixels' relevance plus every absorbed source: the logit, up to float rounding."""
        return self.pixels.reshape(len(self.pixels), -1).sum(1) + sum(self.absorbed.values())

    def row(self, part: str) -> LedgerRow:
        """The ledger's row of ``part``."""
        for row in self.ledger:
            if row.part == part:
                return row
        raise KeyError(f"no ledger row {part!r}; rows: {', '.join(r.part for r in self.ledger)}")


def lrp(
    model: nn.Module,
    images: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
    rule: str = "attnlrp",
    epsilon: float = 1e-6,
) -> LRP:
    """Layer-wise relevance of each image's ``target`` logit (module docstring), one modified backward
    pass for the batch.

    Args:
        model: a :class:`coatnet.CoAtNet` (CoAtNet pre or post, the layouts, MaxViT, MaxxViT, CoAtNeXt, a
            timm import); a parallel MaxViT block is refused.
        images: (B, C, H, W) or (C, H, W) normalised as the model expects, or PIL images (prepared
            with the model's own preprocessing).
        target: the class to explain, one for all or a (B,) tensor; None: each image's predicted class.
        rule: ``"attnlrp"`` or ``"cp"``.
        epsilon: the stabiliser (module docstring), >= 0.

    Returns:
        An :class:`LRP`.

    Raises:
        ValueError: an unknown rule, a negative epsilon, a model the rules do not reach or in training
            mode, a target that is not a class of it, a call inside an intervention context
            (:func:`coatnet.intervene`), which the rules would not see.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> found = analysis.lrp(model, torch.randn(2, 1, 28, 28), rule="cp")
        >>> found.map.shape, [r.part for r in found.ledger][:3]
        ((2, 28, 28), ['S0', 'S1.0', 'S2.0'])
        >>> bool(abs(found.total() - found.logit).max() < 1e-3 * abs(found.logit).max())
        True
    """
    if rule not in RULES:
        raise ValueError(f"LRP rule must be one of {RULES}, got {rule!r}")
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    if active_interventions():
        raise ValueError(
            "LRP runs the model's own weights through its rules, not an intervened pass: explain outside "
            "coatnet.intervene (and compare the two models' relevance instead)"
        )
    if not isinstance(model, CoAtNet):
        raise ValueError(
            f"LRP runs on the project's models (a coatnet.CoAtNet), not a {type(model).__name__}"
        )
    if any(module.training for module in model.modules()):
        raise ValueError(
            "LRP explains a model in eval mode (BatchNorm's running statistics, no dropout): call "
            "model.eval() first"
        )
    parameter = next(model.parameters())
    images = as_batch(images, model).to(device=parameter.device, dtype=parameter.dtype)
    state = _Pass(rule, float(epsilon), len(images), images.dtype, images.device)
    with torch.inference_mode(False), torch.enable_grad():  # its own gradients, whatever the caller's mode
        x = images.detach().clone().requires_grad_(True)
        logits = _network(model, x, state)
        if target is None:
            chosen = logits.detach().argmax(1)
        else:
            chosen = torch.as_tensor(target, device=logits.device).long().reshape(-1)
            if chosen.numel() not in (1, len(images)):
                raise ValueError(f"give one target or one per image ({len(images)}), not {chosen.numel()}")
            chosen = chosen.expand(len(images))
            classes = logits.shape[1]
            if chosen.min() < 0 or chosen.max() >= classes:
                raise ValueError(f"target {target!r} is not a class of this model: give 0..{classes - 1}")
        picked = logits.gather(1, chosen[:, None])[:, 0]
        (gradient,) = torch.autograd.grad(picked.sum(), x)
    pixels = _numpy(x.detach() * gradient)
    return LRP(
        rule=rule,
        epsilon=float(epsilon),
        pixels=pixels,
        map=pixels.sum(1),
        target=chosen.cpu().numpy(),
        logit=_numpy(picked),
        absorbed={s: _numpy(state.absorbed[s]) for s in SOURCES},
        stages={s: _numpy(v) for s, v in state.stages.items()},
        ledger=tuple(_ledger_row(row) for row in state.rows),
    )


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A result array: float64 from a float64 pass, else float32."""
    t = t.detach().cpu()
    return (t if t.dtype == torch.float64 else t.float()).numpy()


# -- the pass's bookkeeping ---------------------------------------------------------------------------


def _ledger_row(row: _Row) -> LedgerRow:
    """A ledger row as the result holds it: numpy arrays, zeros for an attention term never reached."""

    def get(name: str) -> np.ndarray | None:
        value = row.values.get(name)
        return None if value is None else _numpy(value)

    attention = row.kind == "attention"
    zeros = np.zeros_like(get("branch"))

    def extra(name: str) -> np.ndarray | None:
        return (get(name) if name in row.values else zeros) if attention else None

    skip = get("skip") if "skip" in row.values else zeros
    return LedgerRow(
        row.part, row.kind, get("branch"), skip, extra("content"), extra("position"), extra("weights"),
        extra("softmax"),
    )  # fmt: skip


# -- attention -----------------------------------------------------------------------------------------


def _attention(attn: RelativeAttention, x: torch.Tensor, row: _Row, state: _Pass) -> torch.Tensor:
    """Relative attention (B, C, H, W) -> (B, C_out, H, W) under the pass's rule."""
    height, width = x.shape[-2:]
    if isinstance(attn.qkv, nn.Conv2d):
        qkv = rearrange(_layer(attn.qkv, x, state), "b (s h d) y x -> s b h (y x) d", s=3, h=attn.heads)
    else:
        qkv = _layer(attn.qkv, x.permute(0, 2, 3, 1), state)
        qkv = rearrange(qkv, "b y x (s h d) -> s b h (y x) d", s=3, h=attn.heads)
    q, k, v = qkv.unbind(0)
    bias = attn.rel_pos.get_bias((height, width)).detach().to(q.dtype)  # a parameter: a sink
    if state.attnlrp:
        content = _Product.apply(q * attn.scale, k.transpose(-2, -1), state, True, False)
        content = _Observe.apply(content, lambda r: row.add("content", state.per_sample(r)))
    else:
        content = (q * attn.scale) @ k.transpose(-2, -1)

    def to_position(to_content: torch.Tensor, to_bias: torch.Tensor) -> None:
        row.add("position", to_bias)
        state.keep("position", to_bias)

    def softmax(logits: torch.Tensor) -> torch.Tensor:
        if not state.attnlrp:
            return torch.softmax(logits, dim=-1)
        return _Softmax.apply(logits, state, lambda kept: row.add("softmax", kept))

    if attn.mode == "pre":
        weights = softmax(_Sum.apply(content, bias, state, to_position))
    else:
        weights = _Sum.apply(softmax(content), bias, state, to_position)
    if state.attnlrp:
        weights = _Observe.apply(weights, lambda r: row.add("weights", state.per_sample(r)))
        out = _Product.apply(weights, v, state, True, True)
    else:
        out = _Product.apply(weights.detach(), v, state, False, True)
    out = rearrange(out, "b h (y x) d -> b y x (h d)", y=height, x=width)
    if isinstance(attn.proj, nn.Conv2d):
        return _layer(attn.proj, out.permute(0, 3, 1, 2), state)
    return _layer(attn.proj, out, state).permute(0, 3, 1, 2)


# -- blocks and the network ----------------------------------------------------------------------------


def _stem(stem: Stem, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    if stem.kind == "patch":
        return _layer(stem.proj, x, state)
    x = _conv_bn(stem.conv1, stem.norm1, stem.pad1(x), state)
    return _layer(stem.conv2, _act(stem.act1, x), state)


def _mbconv(block: MBConvBlock, x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    row = state.row(name, "mbconv")
    shortcut = _shortcut(block.shortcut, x, state)
    normed = _act(block.pre_act, _norm(block.pre_norm, x, state))
    h = _act(block.act1, _conv_bn(block.conv1_1x1, block.norm1, _pool(block.down, normed, state), state))
    h = block.pad_kxk(h)
    if block.se_early:  # the gate between the depthwise convolution and its BatchNorm
        h = _layer(block.conv2_kxk, h, state)
        h = _act(block.act2, _norm(block.norm2, _gate(block.se, h), state))
    else:
        h = _gate(block.se, _act(block.act2, _conv_bn(block.conv2_kxk, block.norm2, h, state)))
    return _residual(shortcut, _layer(block.conv3_1x1, h, state), row, state)


def _convnext(block: ConvNeXtBlock, x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    row = state.row(name, "convnext")
    shortcut = _shortcut(block.shortcut, x, state)
    h = _norm(block.norm, _layer(block.conv_dw, x, state), state)
    return _residual(shortcut, _scaled(block.ls, _mlp(block.mlp, h, state)), row, state)


def _conv_block(block: nn.Module, x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    if isinstance(block, MBConvBlock):
        return _mbconv(block, x, name, state)
    if isinstance(block, ConvNeXtBlock):
        return _convnext(block, x, name, state)
    raise ValueError(f"LRP has no rule for {name}, a {type(block).__name__}")


def _transformer(block: TransformerBlock, x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    row = state.row(name, "attention")
    attended = _attention(block.attn, _pool(block.pool, _norm(block.norm1, x, state), state), row, state)
    x = _residual(_shortcut(block.shortcut, x, state), _scaled(block.ls1, attended), row, state)
    mlp = state.row(f"{name}.mlp", "mlp")
    return _residual(x, _scaled(block.ls2, _mlp(block.mlp, _norm(block.norm2, x, state), state)), mlp, state)


def _partition_block(block: PartitionBlock, x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    row = state.row(name, "attention")
    grid = (x.shape[-2], x.shape[-1])
    windows = partition(_norm(block.norm1, x, state), block.size, block.kind)
    attended = unpartition(_attention(block.attn, windows, row, state), block.size, block.kind, grid)
    x = _residual(x, _scaled(block.ls1, attended), row, state)
    mlp = state.row(f"{name}.mlp", "mlp")
    return _residual(x, _scaled(block.ls2, _mlp(block.mlp, _norm(block.norm2, x, state), state)), mlp, state)


def _block(block: nn.Module, x: torch.Tensor, name: PartName, state: _Pass) -> torch.Tensor:
    if isinstance(block, (MBConvBlock, ConvNeXtBlock)):
        return _conv_block(block, x, name, state)
    if isinstance(block, TransformerBlock):
        return _transformer(block, x, name, state)
    if isinstance(block, MaxViTBlock):
        x = _conv_block(block.conv, x, PartName.of(block.stage, block.block, "conv"), state)
        for part, module, _ in block.partitions():
            x = _partition_block(module, x, PartName.of(block.stage, block.block, part), state)
        return x
    if type(block).__name__ == "ParallelMaxViTBlock":
        raise ValueError(
            f"LRP does not run through {name}, a parallel MaxViT block (its block and grid attention share "
            "one residual, which the ledger cannot split): choose a model with sequential blocks"
        )
    raise ValueError(f"LRP has no rule for {name}, a {type(block).__name__}")


def _stage_relevance(x: torch.Tensor, name: str, state: _Pass) -> torch.Tensor:
    def record(r: torch.Tensor) -> None:
        state.stages[name] = r.sum(1).detach()

    return _Observe.apply(x, record)


def _network(model: CoAtNet, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    model.check_input_size(*x.shape[-2:])
    stem = state.row("S0", "stem")
    x = _entering(_stage_relevance(_stem(model.stem, x, state), "S0", state), stem, state)
    for s, stage in enumerate(model.stages, start=1):
        for b, block in enumerate(stage.blocks):
            x = _block(block, x, PartName.of(s, b), state)
        x = _stage_relevance(x, f"S{s}", state)
    x = _norm(model.norm, x, state)
    head = model.head
    row = state.row("head", "head")
    pooled = _Epsilon.apply(_entering(x, row, state).mean((2, 3)), None, state)
    if head.hidden:
        pooled = _act(head.pre_act, _layer(head.pre_logits, _norm(head.norm, pooled, state), state))
    if isinstance(head.fc, nn.Identity):
        raise ValueError("the model has no classifier (num_classes 0): there is no logit to explain")
    return _layer(head.fc, pooled, state)
