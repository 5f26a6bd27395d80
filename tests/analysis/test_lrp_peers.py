"""LRP's arithmetic against its peers (test-only, pinned, installed without their dependencies:
requirements-nodeps.txt): LXT 2.1, AttnLRP's own code, through its explicit functional rules composed on
one attention block's tensors; zennit 0.5.1, LRP for CNNs, on a convolutional model where the rules
coincide.

Where a definition differs, it is stated: LXT's stabiliser is ``z + epsilon`` and ours
``z + epsilon sign(z)``; with epsilon 1e-9 against activations of order 0.01 to 1 the two differ far below
the tolerance of 1e-5, which is how ours is set to theirs. LXT's explicit rules carry relevance itself
backwards, where ours carry ``R / x``: the relevance at a tensor is ``x * grad`` for ours, ``grad`` for
theirs."""

from __future__ import annotations

import copy

import pytest
import torch
from einops import rearrange
from torch import nn

import analysis
from analysis.explain.lrp import _attention
from analysis.explain.lrp_rules import _norm, _Pass, _residual, _scaled
from tests.support.timm import ensure_torchvision_ops

EPSILON = 1e-9


def _block_and_input():
    model = copy.deepcopy(analysis.load_model("demo-pre")).double().eval()
    block = model.stages[2].blocks[1]  # S3.1: global attention, pre-normalization, no down-sampling
    assert isinstance(block.shortcut.expand, nn.Identity) and isinstance(block.pool, nn.Identity)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 128, 7, 7, generator=generator, dtype=torch.float64)
    upstream = torch.randn(2, 128, 7, 7, generator=generator, dtype=torch.float64)  # relevance from above
    return block, x, upstream


def ours(block, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """Our AttnLRP relevance at the block's input, for ``upstream`` relevance at its attention residual's
    output (the rules of analysis.lrp on this block alone)."""
    state = _Pass("attnlrp", EPSILON, len(x), x.dtype, x.device)
    row = state.row("S3.1", "attention")
    x = x.clone().requires_grad_(True)
    attended = _attention(block.attn, _norm(block.norm1, x, state), row, state)
    out = _residual(x, _scaled(block.ls1, attended), row, state)
    (grad,) = torch.autograd.grad(out, x, upstream / out.detach())  # relevance R = out * G at the output
    return (x * grad).detach()


def theirs(block, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """LXT's explicit rules composed on the same block: its LayerNorm over the last axis, epsilon-linear
    query, key and value (the query's scale folded into its weights: a constant), the uniform matmul, the
    epsilon sum with the relative bias, its softmax, the uniform matmul with the values, the epsilon-linear
    projection and the epsilon sum with the residual."""
    import lxt.explicit.functional as lf

    attn, norm = block.attn, block.norm1
    width, heads = attn.heads * attn.head_dim, attn.heads
    weight, bias = attn.qkv.weight.detach(), attn.qkv.bias.detach()
    x = x.clone().requires_grad_(True)
    channels_last = x.permute(0, 2, 3, 1)
    normed = lf.layer_norm(channels_last, norm.weight.detach(), norm.bias.detach(), norm.eps)

    def project(part: int, scale: float = 1.0) -> torch.Tensor:
        rows = slice(part * width, (part + 1) * width)
        made = lf.linear_epsilon(normed, weight[rows] * scale, bias[rows] * scale, EPSILON)
        return rearrange(made, "b y x (h d) -> b h (y x) d", h=heads)

    q, k, v = project(0, attn.scale), project(1), project(2)
    content = lf.matmul(q, k.transpose(-2, -1), epsilon=EPSILON)
    logits = lf.add2(content, attn.rel_pos.get_bias((7, 7)).detach(), epsilon=EPSILON)
    weights = lf.softmax(logits, -1)
    mixed = rearrange(lf.matmul(weights, v, epsilon=EPSILON), "b h (y x) d -> b y x (h d)", y=7, x=7)
    projected = lf.linear_epsilon(mixed, attn.proj.weight.detach(), attn.proj.bias.detach(), EPSILON)
    out = lf.add2(x, projected.permute(0, 3, 1, 2), epsilon=EPSILON)
    (relevance,) = torch.autograd.grad(out, x, upstream)
    return relevance.detach()


def test_attnlrp_through_one_attention_block_agrees_with_lxt():
    pytest.importorskip("lxt", reason="LXT (requirements-nodeps.txt) is not installed")
    block, x, upstream = _block_and_input()
    mine, reference = ours(block, x, upstream), theirs(block, x, upstream)
    scale = reference.abs().max()
    assert (mine - reference).abs().max() <= 1e-5 * scale, float((mine - reference).abs().max() / scale)
    assert reference.abs().sum() > 0 and not torch.allclose(mine, upstream)  # the block did something


class _Stem(nn.Module):
    def __init__(self, stem: nn.Module) -> None:
        super().__init__()
        self.pad1, self.conv1, self.norm1, self.act1, self.conv2 = (
            stem.pad1, stem.conv1, stem.norm1, stem.act1, stem.conv2
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act1(self.norm1(self.conv1(self.pad1(x)))))


class _MBConv(nn.Module):
    """An MBConv without squeeze-excitation as zennit expects it: its residual addition a zennit Sum of
    the two terms stacked."""

    def __init__(self, block: nn.Module, sum_layer: type) -> None:
        super().__init__()
        for name in ("shortcut", "pre_norm", "pre_act", "down", "conv1_1x1", "norm1", "act1", "pad_kxk",
                     "conv2_kxk", "norm2", "act2", "conv3_1x1"):  # fmt: skip
            setattr(self, name, getattr(block, name))
        self.sum = sum_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1_1x1(self.down(self.pre_act(self.pre_norm(x))))
        h = self.act2(self.norm2(self.conv2_kxk(self.pad_kxk(self.act1(self.norm1(h))))))
        return self.sum(torch.stack([self.shortcut(x), self.conv3_1x1(h)], dim=-1))


class _Network(nn.Module):
    """The test's own canonizer: the model re-expressed with zennit's Sum and the head's mean as an
    average pool, every module (and parameter) the model's own."""

    def __init__(self, model: nn.Module, sum_layer: type) -> None:
        super().__init__()
        self.stem = _Stem(model.stem)
        self.blocks = nn.Sequential(*(_MBConv(b, sum_layer) for s in model.stages for b in s.blocks))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), model.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def test_cp_and_attnlrp_on_a_convolutional_model_agree_with_zennit():
    """C-C-C-C without squeeze-excitation, where the rules coincide: zennit's epsilon rule on every
    convolution, linear layer and unpaired BatchNorm (the pre-norm one), each convolution followed by its
    BatchNorm merged with it by name (NamedMergeBatchNorm; never SequentialMergeBatchNorm, which would pair
    neighbours that are not a convolution and its norm), its Norm rule on the residual sums and the mean,
    activations passed, max pooling as the gradient takes it. A merged BatchNorm gets no rule of its own:
    zennit keeps it as an identity after the merge, and a rule there would be a second epsilon step at the
    same output (on these weights, 2e-3 of the largest relevance apart, where outputs are near epsilon)."""
    ensure_torchvision_ops()
    pytest.importorskip("zennit", reason="zennit (requirements-nodeps.txt) is not installed")
    import zennit.canonizers as zcan
    import zennit.composites as zcomp
    import zennit.layer as zlayer
    import zennit.rules as zrules
    from zennit.attribution import Gradient

    import coatnet

    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=32, layout="C-C-C-C").double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    for stage in model.stages:
        for block in stage.blocks:
            block.se = nn.Identity()
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    epsilon = 1e-6
    found = {rule: analysis.lrp(model, x, target=4, rule=rule, epsilon=epsilon) for rule in ("cp", "attnlrp")}

    network = _Network(copy.deepcopy(model), zlayer.Sum)
    with torch.no_grad():  # the same norms, their epsilon moved into the variance: zennit leaves a merged
        for module in network.modules():  # BatchNorm computing x / sqrt(1 + eps), not x (5e-6 a layer)
            if isinstance(module, nn.BatchNorm2d):
                module.running_var += module.eps
                module.eps = 0.0
    pairs = [(["stem.conv1"], "stem.norm1")]
    for index in range(len(network.blocks)):
        pairs += [([f"blocks.{index}.conv1_1x1"], f"blocks.{index}.norm1"),
                  ([f"blocks.{index}.conv2_kxk"], f"blocks.{index}.norm2")]  # fmt: skip
    # each rule by name: a BatchNorm merged into its convolution is left without one (given a rule, zennit
    # would apply the epsilon rule again at the merged output, through the norm it keeps as an identity)
    rules = {nn.Conv2d: zrules.Epsilon(epsilon), nn.Linear: zrules.Epsilon(epsilon),
             zlayer.Sum: zrules.Norm(epsilon), nn.AdaptiveAvgPool2d: zrules.Norm(epsilon),
             nn.GELU: zrules.Pass()}  # fmt: skip
    named: dict[int, list[str]] = {}
    for name, module in network.named_modules():
        rule = rules.get(type(module))
        if isinstance(module, nn.BatchNorm2d) and name.endswith("pre_norm"):  # unpaired: its own layer
            rule = zrules.Epsilon(epsilon)
        if rule is not None:
            named.setdefault(id(rule), [rule]).append(name)
    composite = zcomp.NameMapComposite(
        name_map=[(tuple(names), rule) for rule, *names in named.values()],
        canonizers=[zcan.NamedMergeBatchNorm(pairs)],
    )
    with torch.no_grad():
        logits = network(x)
    torch.testing.assert_close(logits[:, 4], torch.as_tensor(found["cp"].logit))
    start = torch.zeros_like(logits)
    start[:, 4] = logits[:, 4]  # the explained logit's own relevance, as ours starts
    with Gradient(model=network, composite=composite) as attributor:
        _, relevance = attributor(x, start)
    reference = relevance.detach()
    scale = reference.abs().max()
    for rule, result in found.items():  # no attention: the two rules are one here
        difference = (torch.as_tensor(result.pixels) - reference).abs().max()
        assert difference <= 1e-5 * scale, (rule, float(difference / scale))
