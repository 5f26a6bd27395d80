"""Model-level invariants: every variant builds, sizes, the forward API trio, layouts, overrides, modes."""

from __future__ import annotations

import copy
from unittest.mock import patch

import pytest
import torch

import coatnet
from coatnet.model.blocks import MBConvBlock, TransformerBlock
from coatnet.model.config import stage

META = torch.device("meta")


def build_on_meta(name: str, **overrides: object) -> coatnet.CoAtNet:
    with META:
        return coatnet.create_model(name, **overrides)


def meta_input(batch: int, height: int, width: int, chans: int = 3) -> torch.Tensor:
    return torch.empty(batch, chans, height, width, device=META)


def attention_blocks(model: torch.nn.Module) -> int:
    return sum(isinstance(m, TransformerBlock) for m in model.modules())


# ---------------------------------------------------------------- every variant builds


@pytest.mark.parametrize("name", coatnet.list_models())
def test_every_variant_builds_on_meta_with_logits_of_right_shape(name: str) -> None:
    """Each named variant builds (on the meta device, free) and maps its own img_size to (B, classes)."""
    model = build_on_meta(name)
    height, width = model.config.img_size
    logits = model(meta_input(2, height, width))
    assert logits.shape == (2, model.config.num_classes)
    assert [info.grid for info in model.stage_info()][-1] == (
        height // model.config.total_stride,
        width // model.config.total_stride,
    )


@pytest.mark.parametrize(("name", "overrides"), [("coatnet_toy", {}), ("coatnet_pico", {"img_size": 64})])
def test_small_variants_run_on_cpu(name: str, overrides: dict) -> None:
    """The CPU variants produce finite logits of shape (B, classes) for real."""
    model = coatnet.create_model(name, num_classes=10, **overrides).eval()
    logits = model(torch.randn(2, 3, *model.config.img_size))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_unknown_model_name_suggests_close_names() -> None:
    """A typo gives a ValueError that names the close variants."""
    with pytest.raises(ValueError, match=r"coatnet_0") as info:
        coatnet.create_model("coatnet0")
    assert "Did you mean" in str(info.value)


# ---------------------------------------------------------------- input sizes


def test_model_runs_at_sizes_other_than_built() -> None:
    """coatnet_pico built for 64x64 runs on 96x96 and 64x128 (bias tables resized), with the S4 grid
    following the input."""
    model = coatnet.create_model("coatnet_pico", img_size=64, num_classes=10).eval()
    for size, s4_grid in [((96, 96), (3, 3)), ((64, 128), (2, 4))]:
        x = torch.randn(1, 3, *size)
        logits = model(x)
        assert logits.shape == (1, 10)
        assert torch.isfinite(logits).all()
        _, stages = model.forward_intermediates(x)
        assert tuple(stages[-1].shape[-2:]) == s4_grid
        assert model.stage_info(size)[-1].grid == s4_grid


def test_coatnet_0_built_at_224_takes_384_and_non_square_on_meta() -> None:
    """The paper's fine-tuning at 384 (and a non-square input) needs no rebuild."""
    model = build_on_meta("coatnet_0")
    for height, width in [(384, 384), (224, 320)]:
        assert model(meta_input(1, height, width)).shape == (1, 1000)


@pytest.mark.parametrize("size", [(30, 32), (70, 100)])
def test_bad_input_size_names_stride_and_suggests_sizes(size: tuple[int, int]) -> None:
    """An input whose sides do not divide by the total stride is refused with the stride and two sizes
    that would work (rounded down and up)."""
    model = coatnet.create_model("coatnet_toy")
    height, width = size
    down = f"{max(32, height // 32 * 32)}x{max(32, width // 32 * 32)}"
    up = f"{-(-height // 32) * 32}x{-(-width // 32) * 32}"
    with pytest.raises(ValueError, match="total stride 32") as info:
        model(torch.randn(1, 3, height, width))
    assert down in str(info.value) and up in str(info.value)
    with pytest.raises(ValueError, match="total stride 32"):
        coatnet.create_model("coatnet_toy", img_size=size)


# ---------------------------------------------------------------- forward API


def test_forward_intermediates_match_features_and_stage_info() -> None:
    """``forward_intermediates`` gives S0..S4 whose shapes are ``stage_info``'s and whose last is
    ``forward_features``; ``forward == forward_head(forward_features)``; pre-logits have num_features."""
    model = coatnet.create_model("coatnet_toy", img_size=64).eval()
    x = torch.randn(2, 3, 64, 96)
    final, stages = model.forward_intermediates(x)
    features = model.forward_features(x)
    assert len(stages) == 5
    torch.testing.assert_close(stages[-1], features, atol=0, rtol=0)
    torch.testing.assert_close(final, features, atol=0, rtol=0)
    infos = model.stage_info((64, 96))
    assert [info.name for info in infos] == ["S0", "S1", "S2", "S3", "S4"]
    for out, info in zip(stages, infos, strict=True):
        assert out.shape == (2, info.channels, *info.grid)
    assert [info.reduction for info in infos] == [2, 4, 8, 16, 32]
    _, some = model.forward_intermediates(x, indices=[1, 3])
    torch.testing.assert_close(some[1], stages[3], atol=0, rtol=0)

    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (2, model.num_features)
    torch.testing.assert_close(pre_logits, features.mean((2, 3)))
    torch.testing.assert_close(model(x), model.forward_head(features), atol=0, rtol=0)


def test_forward_to_blocks_and_from_compose_to_the_forward_pass() -> None:
    """Any split of the blocks, entered at one position and left at another, gives the model's logits."""
    model = coatnet.create_model("coatnet_toy").eval()
    x = torch.randn(2, 3, 32, 32)
    count = len(model.block_names())
    with torch.no_grad():
        logits = model(x)
        for start in range(count + 1):
            entering = model.forward_to(x, start)
            for stop in range(start, count + 1):
                middle = model.forward_blocks(entering, start, stop)
                torch.testing.assert_close(model.forward_from(middle, stop), logits, atol=0, rtol=0)
    assert torch.equal(model.forward_blocks(entering, count, count), entering)


# ---------------------------------------------------------------- layouts and stage_info


def test_stage_info_kinds_of_paper_layouts() -> None:
    """CoAtNet-0 is C-C-T-T after a conv stem; the layout argument rewrites S1..S4 kinds (section 2.2)."""
    kinds = [info.kind for info in build_on_meta("coatnet_0").stage_info()]
    assert kinds == ["conv", "C", "C", "T", "T"]
    kinds = [info.kind for info in build_on_meta("coatnet_0", layout="C-T-T-T").stage_info()]
    assert kinds == ["conv", "C", "T", "T", "T"]


@pytest.mark.parametrize(("layout", "attention_count"), [("C-C-C-C", 0), ("C-C-C-T", 1), ("C-T-T-T", 3)])
def test_layout_sets_which_blocks_record_attention(layout: str, attention_count: int) -> None:
    """Only Transformer blocks attend: a C-C-C-C network records nothing, C-T-T-T records S2..S4."""
    model = coatnet.create_model("coatnet_toy", layout=layout).eval()
    with coatnet.record_attention() as records:
        model(torch.randn(1, 3, 32, 32))
    assert len(records) == attention_count == attention_blocks(model)
    assert [r.stage for r in records] == list(range(5 - attention_count, 5))
    assert model.config.layout == layout


@pytest.mark.parametrize("name", ["coatnet_6", "coatnet_7"])
def test_coatnet_6_7_mixed_stage(name: str) -> None:
    """CoAtNet-6/7 S3 holds 8 MBConv blocks, then 42 Transformer blocks (Table 12), in that order."""
    model = build_on_meta(name)
    s3 = model.stage_info()[3]
    assert s3.kind == "C+T"
    assert s3.block_kinds == ("C",) * 8 + ("T",) * 42
    assert s3.blocks == 50
    blocks = list(model.stages[2].blocks)
    assert [type(b) for b in blocks] == [MBConvBlock] * 8 + [TransformerBlock] * 42


def test_vit_rel_is_patch_stem_then_transformers() -> None:
    """ViT_REL: a 16x16 patch stem (stride 16), then only Transformer blocks at stride 16."""
    model = build_on_meta("vit_rel")
    infos = model.stage_info()
    assert (infos[0].kind, infos[0].stride, infos[0].blocks) == ("patch", 16, 1)
    assert all(info.kind == "T" for info in infos[1:])
    assert all(info.reduction == 16 and info.grid == (14, 14) for info in infos)
    assert model.config.layout == "ViT_REL"
    assert model(meta_input(1, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("layout", ["T-C-C-C", "X", "C-C-T"])
def test_invalid_layout_raises(layout: str) -> None:
    """A layout outside the studied ones (or with a T before a C) is refused with a ValueError."""
    with pytest.raises(ValueError, match="layout"):
        coatnet.create_model("coatnet_toy", layout=layout)


def test_transformer_before_mbconv_is_refused_in_explicit_stages() -> None:
    """Stages given directly must also keep every C block before every T block (section 2.2)."""
    stages = (stage("C", 1, 16), stage("T", 1, 16), stage("C", 1, 32), stage("T", 1, 32))
    with pytest.raises(ValueError, match=r"MBConv \(C\) blocks must come before"):
        coatnet.create_model("coatnet_toy", stages=stages)


# ---------------------------------------------------------------- overrides


def test_strides_override_for_small_single_channel_images() -> None:
    """``strides=(1, 1, 2, 2, 1)`` gives a total stride of 4: 28x28 input, 7x7 grid in S3 and S4."""
    model = coatnet.create_model(
        "coatnet_pico", img_size=28, in_chans=1, num_classes=10, strides=(1, 1, 2, 2, 1)
    ).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    _, stages = model.forward_intermediates(x)
    assert [tuple(s.shape[-2:]) for s in stages] == [(28, 28), (28, 28), (14, 14), (7, 7), (7, 7)]
    assert model.stage_info()[3].grid == (7, 7)


@pytest.mark.parametrize(("where", "stride_1x1", "stride_dw"), [("1x1", 2, 1), ("dw", 1, 2)])
def test_mbconv_stride_placement(where: str, stride_1x1: int, stride_dw: int) -> None:
    """``mbconv_stride`` puts a down-sampling MBConv's stride in the first 1x1 (Eq. 5) or the depthwise
    conv (Table 9); non-first blocks never stride. Both give the same grids."""
    model = coatnet.create_model("coatnet_pico", img_size=64, num_classes=10, mbconv_stride=where).eval()
    mbconvs = [m for m in model.modules() if isinstance(m, MBConvBlock)]
    first_blocks = [stage.blocks[0] for stage in model.stages[:2]]
    for block in mbconvs:
        expected = (stride_1x1, stride_dw) if block in first_blocks else (1, 1)
        assert (block.conv1_1x1.stride[0], block.conv2_kxk.stride[0]) == expected
    _, stages = model.forward_intermediates(torch.randn(1, 3, 64, 64))
    assert [tuple(s.shape[-2:]) for s in stages] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("option", ["drop_path_rate", "dropout"])
def test_stochastic_regularizers_act_in_train_mode_only(option: str) -> None:
    """With drop_path_rate (or dropout) > 0, two training-mode passes differ, eval passes are equal; with
    the rate at 0 even training-mode passes are equal (BatchNorm on batch statistics is deterministic)."""
    x = torch.randn(4, 3, 32, 32)
    model = coatnet.create_model("coatnet_toy", **{option: 0.5})
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
    control = coatnet.create_model("coatnet_toy", **{option: 0.0})
    torch.testing.assert_close(control(x), control(x), atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_channels_last_matches_contiguous(mode: str) -> None:
    """A channels_last model and input give the same logits as the contiguous ones."""
    model = coatnet.create_model("coatnet_toy", attention=mode, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model_cl(x_cl), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x_cl), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_torch_compile_fullgraph_matches_eager(mode: str) -> None:
    """The model compiles as one graph (no graph breaks, recording hooks included) and matches eager."""
    torch._dynamo.reset()
    model = coatnet.create_model("coatnet_toy", attention=mode).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_cuda_bf16_channels_last_and_compile() -> None:
    """On CUDA: bf16 autocast with channels_last stays close to fp32, and the compiled model matches."""
    torch._dynamo.reset()
    model = coatnet.create_model("coatnet_pico", img_size=64, num_classes=10).cuda().eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    scale = reference.abs().max()
    assert (low.float() - reference).abs().max() < 0.05 * scale
    torch.testing.assert_close(compiled, reference, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("se_early", [False, True])
@pytest.mark.parametrize("build", ["plain", "inference build"])
def test_a_hook_inside_an_mbconv_block_keeps_what_it_saw(se_early: bool, build: str) -> None:
    """Without gradients the block computes its activations and its gating in place over tensors no one
    holds, with each BatchNorm folded into the convolution before it; a forward hook on any module of the
    branch (or a global one) makes it keep every tensor as computed, and either way the output is the same
    within float rounding."""
    from coatnet.model.inference import for_inference

    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=32, se_early=se_early, conv_act="silu").eval()
    model = for_inference(model) if build == "inference build" else model
    block = model.stages[1].blocks[0]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        transformer = model.stages[2].blocks[0]
        inner = [getattr(block, n) for n in ("conv1_1x1", "norm1", "act1", "conv2_kxk", "norm2", "act2", "se",
                                            "conv3_1x1")]  # fmt: skip
        for module in [*inner, transformer.attn, transformer.attn.proj, transformer.mlp, transformer.mlp.fc2]:
            name, seen = type(module).__name__, []
            handle = module.register_forward_hook(
                lambda m, args, out, seen=seen: seen.append((out, out.clone()))
            )
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
            handle.remove()
            held, copy = seen[0]
            assert torch.equal(held, copy), f"{name}'s output was changed after its hook saw it"
        seen = []
        handle = torch.nn.modules.module.register_module_forward_hook(
            lambda m, args, out: seen.append((out, out.clone())) if m is block.norm2 else None
        )
        model(x)
        handle.remove()
    assert seen and all(torch.equal(a, b) for a, b in seen)


def test_a_module_put_in_place_of_squeeze_excitation_is_called_with_the_tensor_alone() -> None:
    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=32).eval()
    model.stages[0].blocks[0].se = torch.nn.Identity()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.config.num_classes)


def test_a_hook_on_an_activation_fused_into_a_packed_convolution_counts_as_watching_it() -> None:
    """In the build an activation can sit inside a packed convolution, which calls it on oneDNN's
    per-call path (on CUDA, for instance): a hook on it watches the convolution's output, so nothing after
    overwrites that output in place."""
    from coatnet.model.blocks import watched
    from coatnet.model.inference import PackedConv2d, for_inference

    model = for_inference(coatnet.create_model("coatnet_toy", img_size=32, conv_act="silu").eval())
    conv = model.stages[0].blocks[0].conv2_kxk
    assert isinstance(conv, PackedConv2d) and isinstance(conv.act, torch.nn.SiLU)
    assert not watched(conv)
    handle = conv.act.register_forward_hook(lambda *args: None)
    assert watched(conv)
    handle.remove()


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("bias, groups", [(False, 1), (True, 1), (False, 6)])
def test_a_batchnorm_folded_on_the_fly_gives_the_same_values_and_gradients(affine, bias, groups):
    """``conv_norm``: in eval mode, unwatched, the BatchNorm is folded into the convolution for the call;
    values and gradients (input, weights, BatchNorm affine) are those of ``norm(conv(x))``, nothing of
    either module changes, and in training mode (batch statistics) it is not folded."""
    from torch import nn

    from coatnet.model.blocks import conv_norm

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, 3, padding=1, bias=bias, groups=groups)
    norm = nn.BatchNorm2d(12, affine=affine).eval()
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.2, 3.0)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.normal_()
    before = {k: v.clone() for k, v in {**conv.state_dict(), **norm.state_dict()}.items()}
    x = torch.randn(2, 6, 9, 7, requires_grad=True)
    params = [x, *conv.parameters(), *norm.parameters()]
    with patch.object(type(norm), "forward", side_effect=AssertionError("not folded")):
        folded = conv_norm(conv, norm, x, True)  # folded: the BatchNorm module is never called
    reference = norm(conv(x))
    assert conv_norm(conv, norm, x, False).equal(reference)  # watched: the modules, as they are
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(reference)
    for got, want in zip(torch.autograd.grad((folded * weights).sum(), params),
                         torch.autograd.grad((reference * weights).sum(), params), strict=True):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    after = {**conv.state_dict(), **norm.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    twin = copy.deepcopy(norm).train()
    with torch.no_grad():  # batch statistics in training mode: not folded
        torch.testing.assert_close(conv_norm(conv, norm.train(), x, True), twin(conv(x)))
    assert torch.equal(norm.running_mean, twin.running_mean)  # and the running statistics updated


def test_a_backward_hook_inside_an_mbconv_block_fires_in_eval_mode():
    """A BatchNorm folded into its convolution is never called: a backward hook on it (or on the
    convolution) makes the block call both, so the hook fires."""
    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=32).eval()
    block = model.stages[1].blocks[0]
    fired = []
    handle = block.norm1.register_full_backward_hook(lambda m, grad_in, grad_out: fired.append(m))
    try:
        model(torch.randn(1, 3, 32, 32, requires_grad=True)).sum().backward()
    finally:
        handle.remove()
    assert fired == [block.norm1]
