"""Layer-wise relevance propagation (analysis.lrp): the known answers of issue 44, each against a
computation of its own (conservation with the biases zeroed, CP-LRP as gradient times input of the model
with the rules' constants detached, attention with q = k = 0, a purely linear model), and every family
of models the project builds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import analysis
import coatnet
from coatnet.model.attention import RelativePositionBias
from coatnet.model.layers import LayerNorm2d, SqueezeExcite

DEMOS = ("demo-pre", "demo-post", "demo-maxvit")
ACTIVATIONS = (nn.GELU, nn.SiLU, nn.ReLU, nn.Tanh)


def float64(name: str) -> nn.Module:
    """A float64 copy of a built-in demo (the shared one untouched)."""
    return copy.deepcopy(analysis.load_model(name)).double().eval()


def images(count: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def without_biases(model: nn.Module) -> nn.Module:
    """Every additive bias zeroed: convolution and linear biases, BatchNorm shifts and means, LayerNorm
    shifts, relative-bias tables."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RelativePositionBias):
                module.table.zero_()
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    return model


def replaced(model: nn.Module, swap) -> nn.Module:
    """``model`` with each submodule ``m`` for which ``swap(m)`` gives a module replaced by it."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = swap(child)
            if new is not None:
                setattr(parent, name, new)
    return model


def gradient_x_input(model: nn.Module, x: torch.Tensor, targets: np.ndarray, patch=None) -> np.ndarray:
    x = x.clone().requires_grad_(True)
    with coatnet.tracing(patch=patch or {}):
        logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, torch.as_tensor(targets)[:, None]).sum(), x)
    return (x * grad).detach().numpy()


@pytest.mark.parametrize("name", DEMOS)
def test_cp_conserves_the_logit_exactly_without_biases_and_every_source_is_accounted_with_them(name):
    x = images()
    bare = without_biases(float64(name))
    found = analysis.lrp(bare, x, rule="cp", epsilon=1e-12)
    total = found.pixels.reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(total, found.logit, rtol=1e-6)
    model = float64(name)
    for rule in ("cp", "attnlrp"):
        found = analysis.lrp(model, x, rule=rule)
        assert abs(found.absorbed["bias"]).max() > 1e-3  # kept: the biases matter here
        np.testing.assert_allclose(found.total(), found.logit, rtol=1e-9, atol=1e-12)
        with torch.no_grad():
            logits = model(x)
        np.testing.assert_allclose(found.logit, logits.max(1).values.numpy(), rtol=1e-12)


class _RatioDetached(nn.Module):
    """An activation as CP-LRP reads it: ``x`` times its output/input ratio, detached (``f'(0)`` at 0)."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(x)
        zero = self.act(torch.tensor(1e-6, dtype=x.dtype)) / 1e-6
        ratio = torch.where(x != 0, y / torch.where(x != 0, x, torch.ones_like(x)), zero)
        return x * ratio.detach()


class _StdDetached(LayerNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        centred = x - x.mean(-1, keepdim=True)
        y = centred / (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt().detach()
        return (y * self.weight + self.bias).permute(0, 3, 1, 2)


def _detached_constants(model: nn.Module) -> nn.Module:
    def swap(module: nn.Module) -> nn.Module | None:
        if isinstance(module, SqueezeExcite):
            return None  # its gate is detached by a patch; its own activation never carries relevance
        if isinstance(module, ACTIVATIONS):
            return _RatioDetached(module)
        if type(module) is LayerNorm2d:
            made = _StdDetached(module.normalized_shape, eps=module.eps).double()
            made.load_state_dict(module.state_dict())
            return made
        return None

    return replaced(model, swap)


@pytest.mark.parametrize("name", DEMOS)
def test_cp_with_no_stabiliser_is_gradient_times_input_with_the_rules_constants_detached(name):
    """The model's own forward, its activations replaced by ``x * (f(x) / x).detach()``, LayerNorm's
    deviation detached, and through the tracing patches every SE gate and attention weight detached:
    autograd's gradient times input is CP-LRP with epsilon 0."""
    x = images()
    model = float64(name)
    found = analysis.lrp(model, x, rule="cp", epsilon=0.0)
    direct = _detached_constants(float64(name))
    detach = {n: (lambda t: t.detach()) for n in coatnet.trace_names(direct)
              if n.endswith(("se.gate", "attn.weights"))}  # fmt: skip
    assert detach  # the demos have gates (MBConv) and weights (attention)
    expected = gradient_x_input(direct, x, found.target, patch=detach)
    np.testing.assert_allclose(found.pixels, expected, rtol=1e-9, atol=1e-12)


def _zero_queries_and_keys(model: nn.Module, block) -> None:
    attn = block.attn
    width = attn.heads * attn.head_dim
    with torch.no_grad():
        attn.qkv.weight[: 2 * width].zero_()
        attn.qkv.bias[: 2 * width].zero_()


@pytest.mark.parametrize("name", ("demo-pre", "demo-post"))
def test_attention_with_no_queries_and_keys_gives_the_content_term_nothing(name):
    """q = k = 0 in S3.0 under AttnLRP: the content logits receive nothing; pre-normalization, all that
    reaches the logits goes to the position bias (the weights' relevance less what the softmax keeps);
    post, the weights' relevance splits between the bias and the softmax, which keeps its share (its input,
    the content, being zero)."""
    model = float64(name)
    _zero_queries_and_keys(model, model.stages[2].blocks[0])
    found = analysis.lrp(model, images(), rule="attnlrp", epsilon=1e-12)
    row = found.row("S3.0")
    assert np.all(row.content == 0)
    assert np.abs(row.weights).min() > 1e-6  # relevance does reach the weights
    np.testing.assert_allclose(row.position + row.softmax, row.weights, rtol=1e-9)
    if name == "demo-pre":  # the softmax's input is the bias alone: what passes the softmax is position
        assert np.all(np.sign(row.position) != 0)
    other = found.row("S3.1")
    assert np.abs(other.content).max() > 1e-6  # an untouched block's content does get relevance
    np.testing.assert_allclose(found.total(), found.logit, rtol=1e-9)


def test_a_sum_gives_each_term_its_share_as_the_epsilon_rule_says():
    """The rule at every sum (a residual addition, ``content + bias``, post-normalization's
    ``softmax + bias``), on tensors of its own: each term receives ``term / (sum + eps sign(sum))`` of the
    sum's relevance, and the stabiliser keeps the rest."""
    from analysis.explain.lrp_rules import _Pass, _Sum

    generator = torch.Generator().manual_seed(1)
    s = torch.rand(2, 4, 5, generator=generator, dtype=torch.float64).requires_grad_(True)  # softmax-like
    b = torch.randn(4, 5, generator=generator, dtype=torch.float64)  # a bias shared by the batch
    g = torch.randn(2, 4, 5, generator=generator, dtype=torch.float64)
    state = _Pass("attnlrp", 0.05, 2, torch.float64, "cpu")
    received = {}
    out = _Sum.apply(s, b, state, lambda ra, rb: received.update(s=ra, b=rb))
    (grad,) = torch.autograd.grad(out, s, g)
    total = s.detach() + b
    relevance = total * g  # the sum's relevance, R = out * G
    share = relevance / (total + 0.05 * torch.where(total >= 0, 1.0, -1.0))
    torch.testing.assert_close(s.detach() * grad, s.detach() * share)
    torch.testing.assert_close(received["s"], (s.detach() * share).sum((1, 2)))
    torch.testing.assert_close(received["b"], (b * share).sum((1, 2)))
    kept = relevance.sum((1, 2)) - received["s"] - received["b"]
    torch.testing.assert_close(state.absorbed["epsilon"], kept)


@pytest.mark.parametrize("name", ("demo-pre", "demo-post"))
def test_zero_relative_bias_tables_give_no_position_relevance(name):
    model = float64(name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RelativePositionBias):
                module.table.zero_()
    for rule in ("attnlrp", "cp"):
        found = analysis.lrp(model, images(), rule=rule)
        assert np.all(found.absorbed["position"] == 0)
        assert all(np.all(r.position == 0) for r in found.ledger if r.kind == "attention")


def test_a_purely_linear_model_gives_lrp0_equal_to_gradient_times_input():
    """C-C-C-C with identity activations, no norms and no squeeze-excitation: LRP-0 (epsilon 0) is
    gradient times input, exactly, under both rules."""

    def swap(module: nn.Module) -> nn.Module | None:
        if isinstance(module, (*ACTIVATIONS, nn.BatchNorm2d, nn.LayerNorm, SqueezeExcite)):
            return nn.Identity()
        return None

    model = replaced(float64("layout-c-c-c-c"), swap).eval()
    assert not any(isinstance(m, (*ACTIVATIONS, nn.BatchNorm2d, nn.LayerNorm)) for m in model.modules())
    x = images()
    for rule in ("cp", "attnlrp"):
        found = analysis.lrp(model, x, rule=rule, epsilon=0.0)
        np.testing.assert_allclose(found.pixels, gradient_x_input(model, x, found.target), rtol=1e-10)


FAMILIES = [
    ("coatnet_0_rw_224", dict(img_size=64)),  # timm's CoAtNet: a pre-norm BatchNorm feeding SiLU and a pool
    ("coatnet_rmlp_nano_rw_224", dict(img_size=64)),  # the bias from an MLP
    ("coatnext_nano_rw_224", dict(img_size=64)),  # ConvNeXt blocks
    ("maxxvitv2_nano_rw_256", dict(img_size=64)),  # ConvNeXt blocks, grid attention alone
    ("maxvit_tiny_tf_224", dict(img_size=64)),  # same padding, GELU-tanh, the tanh pre-logits head
    ("maxvit_pico", dict(in_chans=1, layer_scale=0.1)),  # LayerScale
    ("coatnet_toy", dict(img_size=32, se_early=True)),  # the gate between a convolution and its norm
    ("coatnet_toy", dict(img_size=32, attention="post", layout="C-C-C-T")),
]


@pytest.mark.parametrize(("arch", "options"), FAMILIES, ids=[f"{a}-{'-'.join(o)}" for a, o in FAMILIES])
def test_every_family_explains_its_own_logit_and_accounts_for_all_of_it(arch, options):
    torch.manual_seed(0)
    model = coatnet.create_model(arch, **options).eval()
    with torch.no_grad():
        for module in model.modules():  # statistics a trained model would have
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, model.config.in_chans, *model.config.img_size)
    with torch.no_grad():
        logits = model(x)
    for rule in ("attnlrp", "cp"):
        found = analysis.lrp(model, x, rule=rule, target=3)
        np.testing.assert_allclose(found.logit, logits[:, 3].numpy(), rtol=1e-5, atol=1e-5)
        scale = np.abs(found.logit).max()
        np.testing.assert_allclose(found.total(), found.logit, atol=1e-5 * scale)
        assert [r.part for r in found.ledger] == [str(p.name) for p in model.parts()]
        assert set(found.stages) == {"S0", "S1", "S2", "S3", "S4"}


def test_the_model_is_left_as_it_was_and_its_inference_build_is_refused_in_one_line():
    model = analysis.load_model("demo-pre")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analysis.lrp(model, images().float())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"explain the model itself") as refused:
        analysis.lrp(coatnet.for_inference(model), images().float())
    assert "\n" not in str(refused.value)


def test_a_parallel_block_an_intervened_pass_and_a_bad_rule_are_refused_in_one_line():
    parallel = coatnet.create_model("maxvit_pico", in_chans=1, parallel_partitions=True).eval()
    with pytest.raises(ValueError, match=r"parallel MaxViT block") as refused:
        analysis.lrp(parallel, torch.randn(1, 1, 28, 28))
    assert "\n" not in str(refused.value)
    model = analysis.load_model("demo-pre")
    knockout = coatnet.Intervention("S3.0", "knockout", heads=(0,))
    with coatnet.intervene(knockout, model=model), pytest.raises(ValueError, match=r"not an intervened pass"):
        analysis.lrp(model, torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"target 10 is not a class of this model: give 0..9"):
        analysis.lrp(model, torch.randn(1, 1, 28, 28), target=10)
    with pytest.raises(ValueError, match=r"rule must be one of"):
        analysis.lrp(analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28), rule="alpha-beta")
