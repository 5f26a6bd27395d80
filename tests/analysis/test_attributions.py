"""Attributions: Integrated Gradients is complete, SmoothGrad is captum's NoiseTunnel, Grad-CAM is the
textbook formula, a model blind to half the image gets no attribution there, and the model is left as
found, even after an error and under concurrent use."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, NoiseTunnel
from PIL import Image

import coatnet
from analysis.core.summaries import to_jsonable
from analysis.explain.attributions import STAGES, Attribution, attributions
from analysis.explain.pixels import occlusion_windows, pixel_maps
from tests.support.toys import toy_model

FAST = {
    "gradcam": {},
    "integrated_gradients": {"nt_samples": 2, "n_steps": 4},
    "occlusion": {"window": 8, "stride": 8},
}
SMALL = {"nt_samples": 3, "n_steps": 8}


@pytest.fixture
def model(shared_toy) -> torch.nn.Module:
    return shared_toy()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[0]


def _hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_integrated_gradients_are_complete(model, image) -> None:
    """Without noise the attributions sum to logit(image) - logit(zero baseline) (Sundararajan et al.)."""
    target = 3
    a = attributions(
        model, image, method="integrated_gradients", target=target, noise_tunnel=False, n_steps=32
    )
    expected = (_logits(model, image) - _logits(model, torch.zeros_like(image)))[target].item()
    assert a.signed_map.sum() == pytest.approx(expected, rel=0.03, abs=1e-3)
    np.testing.assert_array_equal(a.map, np.maximum(a.signed_map, 0))


def test_smoothgrad_is_captums_noise_tunnel(model, image) -> None:
    """The seeded SmoothGrad equals NoiseTunnel(IntegratedGradients) drawing the same noise."""
    a = attributions(model, image, method="integrated_gradients", target=2, seed=7, **SMALL)
    sigma = 0.15 * float(image.max() - image.min())
    torch.manual_seed(7)
    ref = NoiseTunnel(IntegratedGradients(model)).attribute(
        image, nt_type="smoothgrad", stdevs=sigma, baselines=0.0, target=2, **SMALL
    )
    np.testing.assert_allclose(a.signed_map, ref[0].sum(0).detach().numpy(), atol=1e-6)
    again = attributions(model, image, method="integrated_gradients", target=2, seed=7, **SMALL)
    np.testing.assert_array_equal(a.signed_map, again.signed_map)
    other = attributions(model, image, method="integrated_gradients", target=2, seed=8, **SMALL)
    assert not np.allclose(a.signed_map, other.signed_map)


@pytest.mark.parametrize("stage", STAGES)
def test_gradcam_is_the_textbook_formula(model, image, stage) -> None:
    """relu(sum_c mean_hw(d logit / dA_c) A_c) on the stage output, upsampled bilinearly."""
    a = attributions(model, image, method="gradcam", stage=stage, target=4)
    x = model.stem(image)
    outputs = [x]
    for block in model.stages:
        x = block(x)
        outputs.append(x)
    acts = outputs[STAGES.index(stage)]
    logit = model.forward_head(model.norm(x))[0, 4]
    (grad,) = torch.autograd.grad(logit, acts)
    cam = (grad.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True).detach()
    signed = F.interpolate(cam, (32, 32), mode="bilinear")[0, 0].numpy()
    positive = F.interpolate(cam.clamp(min=0), (32, 32), mode="bilinear")[0, 0].numpy()
    np.testing.assert_allclose(a.signed_map, signed, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.map, positive, rtol=1e-4, atol=1e-6)
    assert a.map.shape == (32, 32) and a.map.dtype == np.float32 and (a.map >= 0).all()
    assert a.stage == stage and a.method == "gradcam"


def test_a_model_blind_to_the_right_half_gets_no_attribution_there(image) -> None:
    """With the input's right half zeroed before the stem, Integrated Gradients and every occlusion window
    that misses the left half give exactly 0 there."""
    blind = toy_model()
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 16:] = 0
    blind.stem.register_forward_pre_hook(lambda module, args: (args[0] * mask,))
    ig = attributions(blind, image, method="integrated_gradients", target=1, **FAST["integrated_gradients"])
    assert (ig.signed_map[:, 16:] == 0).all() and np.abs(ig.signed_map[:, :16]).sum() > 0
    occ = attributions(blind, image, method="occlusion", target=1, window=4, stride=4)
    # windows from column 16 on cover only masked pixels (up to float noise of batched forwards)
    np.testing.assert_allclose(occ.signed_map[:, 16:], 0, atol=1e-6)
    assert np.abs(occ.signed_map[:, :16]).sum() > 0
    assert _hook_count(blind) == 1  # the test's own hook stays


def test_occlusion_of_the_whole_image_is_the_logit_drop(model, image) -> None:
    a = attributions(model, image, method="occlusion", target=0, window=32, stride=32)
    drop = (_logits(model, image) - _logits(model, torch.zeros_like(image)))[0].item()
    np.testing.assert_allclose(a.signed_map, np.full((32, 32), drop, np.float32), rtol=1e-5, atol=1e-6)


def test_default_occlusion_window_covers_the_image(model, image) -> None:
    a = attributions(model, image, method="occlusion")
    assert a.signed_map.shape == (32, 32) and np.isfinite(a.signed_map).all()
    assert np.count_nonzero(a.signed_map) > 0.9 * a.signed_map.size


def test_target_predicted_or_chosen_and_class_names(image) -> None:
    model = toy_model()  # its own: it gets class names
    probs = _logits(model, image).softmax(-1)
    predicted = attributions(model, image)
    assert predicted.target == int(probs.argmax()) and predicted.target_name is None
    assert predicted.probability == pytest.approx(probs.max().item(), rel=1e-5)
    other = (predicted.target + 1) % 10
    chosen = attributions(model, image, target=other)
    assert chosen.target == other and chosen.probability == pytest.approx(probs[other].item(), rel=1e-5)
    assert not np.allclose(chosen.signed_map, predicted.signed_map)
    model.checkpoint_info = coatnet.CheckpointInfo(
        model.config,
        coatnet.Preprocessing.undescribed(size=32, channels=3),
        tuple(f"class {i}" for i in range(10)),
    )
    assert attributions(model, image, target=other).target_name == f"class {other}"


def test_pil_image_and_results_are_plain_data(model) -> None:
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    a = attributions(model, pil, method="gradcam", stage="S2")
    assert isinstance(a, Attribution) and a.image_size == (32, 32) and a.map.shape == (32, 32)
    assert pickle.loads(pickle.dumps(a)).target == a.target
    assert to_jsonable(a)["stage"] == "S2"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "saliency"},
        {"stage": "S5"},
        {"target": 10},
        {"target": -1},
        {"method": "occlusion", "window": 40},
    ],
)
def test_bad_arguments_are_refused(model, image, kwargs) -> None:
    with pytest.raises(ValueError):
        attributions(model, image, **kwargs)


def test_one_image_at_a_time(model) -> None:
    with pytest.raises(ValueError, match="one image"):
        attributions(model, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("method", list(FAST))
def test_frozen_model_in_inference_mode(image, method) -> None:
    """Gradients reach the stage and the pixels even with frozen weights and a caller inside inference
    mode; the batched pixel methods make their tensors outside it."""
    frozen = toy_model().requires_grad_(False)
    with torch.inference_mode():
        a = attributions(frozen, image.clone(), method=method, stage="S3", target=0, **FAST[method])
        both = pixel_maps(frozen, image.repeat(2, 1, 1, 1), [0, 1], method=method, **FAST[method]) if (
            method != "gradcam") else None  # fmt: skip
    assert np.abs(a.signed_map).max() > 0
    assert both is None or both.shape == (2, 32, 32)
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("method", list(FAST))
def test_model_left_as_found_even_after_an_error(image, method, monkeypatch) -> None:
    model = toy_model().train()
    model.stages[1].eval()  # a mixed state must survive too
    params = list(model.parameters())
    params[0].requires_grad_(False)
    marker = torch.ones_like(params[1])
    params[1].grad = marker
    modes = [m.training for m in model.modules()]

    def check() -> None:
        assert [m.training for m in model.modules()] == modes
        assert not params[0].requires_grad and all(p.requires_grad for p in params[1:])
        assert params[1].grad is marker and all(p.grad is None for p in params[2:])
        assert _hook_count(model) == 0

    attributions(model, image, method=method, **FAST[method])
    check()

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("stage S4 broke")

    monkeypatch.setattr(model.stages[3], "forward", broken)
    with pytest.raises(RuntimeError, match="S4 broke"):
        attributions(model, image, method=method, **FAST[method])
    check()


def test_two_threads_at_once_match_one_at_a_time(model, image) -> None:
    jobs = [("gradcam", {"stage": "S2"}), ("integrated_gradients", FAST["integrated_gradients"])] * 2
    sequential = [attributions(model, image, method=m, target=1, **kw).signed_map for m, kw in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(attributions, model, image, method=m, target=1, **kw) for m, kw in jobs]
        parallel = [f.result().signed_map for f in futures]
    for seq, par in zip(sequential, parallel, strict=True):
        np.testing.assert_array_equal(seq, par)
    assert _hook_count(model) == 0


@pytest.mark.parametrize("method", list(FAST))
def test_post_normalization_model(image, method, shared_toy) -> None:
    post = shared_toy(attention="post")
    a = attributions(post, image, method=method, target=0, **FAST[method])
    assert a.map.shape == (32, 32) and np.isfinite(a.signed_map).all()


def test_relative_position_mlp_model(shared_toy) -> None:
    model = shared_toy("coatnet_rmlp_nano_rw_224", img_size=32)
    a = attributions(model, torch.randn(1, 3, 32, 32), method="gradcam", stage="S3")
    assert a.map.shape == (32, 32) and (a.map >= 0).all() and np.isfinite(a.map).all()


def test_pixel_methods_report_progress_after_each_forward_pass_and_end_at_one(model) -> None:
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    seen: list[float] = []
    attributions(model, image, method="integrated_gradients", n_steps=4, nt_samples=3,
                 internal_batch_size=4, progress=seen.append)  # fmt: skip
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])  # 12 rows, 4 a pass
    seen.clear()
    attributions(model, image, method="occlusion", window=8, stride=8, perturbations_per_eval=4,
                 progress=seen.append)  # fmt: skip
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # 16 windows, 4 a pass
    seen.clear()
    attributions(model, image, method="gradcam", progress=seen.append)
    assert seen == [1.0]


@pytest.mark.parametrize(
    ("size", "window", "stride"), [((32, 32), 8, 4), ((64, 32), (7, 5), (4, 5)), ((32, 32), None, None)]
)
def test_occlusion_is_captums_occlusion(model, size, window, stride) -> None:
    """Our batched occlusion gives captum's ``Occlusion`` map, also where the stride does not divide the
    rest of the image (64 x 32 with a 7 x 5 window every 4 x 5: captum's last column of windows is clipped
    at the edge)."""
    from captum.attr import Occlusion

    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    ours = attributions(model, image, method="occlusion", target=5, window=window, stride=stride)
    win = window or (size[0] // 7, size[1] // 7)
    win = (win, win) if isinstance(win, int) else win
    step = stride or (win[0] // 2, win[1] // 2)
    step = (step, step) if isinstance(step, int) else step
    ref = Occlusion(model).attribute(
        image, sliding_window_shapes=(3, *win), strides=(3, *step), baselines=0.0, target=5,
        perturbations_per_eval=16,
    )[0, 0].detach()  # fmt: skip
    np.testing.assert_allclose(ours.signed_map, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_occlusion_with_a_stride_past_the_window_leaves_uncovered_pixels_at_zero(model, image) -> None:
    masks = occlusion_windows((32, 32), window=4, stride=8)
    assert masks.shape == (16, 32, 32) and masks.sum() == 16 * 16
    a = attributions(model, image, method="occlusion", target=1, window=4, stride=8)
    covered = masks.sum(0).numpy() > 0
    assert (a.signed_map[~covered] == 0).all() and np.count_nonzero(a.signed_map[covered]) > 0


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batched_pixel_maps_equal_one_image_at_a_time(method, mode) -> None:
    """pixel_maps over a batch (passes mixing images in eval mode, a call per image in training mode,
    stochastic depth drawing for each image what a call for it alone draws) gives each image's own
    map; a class out of range is refused."""
    model = toy_model(drop_path_rate=0.3).train(mode == "train")
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    options = {**FAST[method], "internal_batch_size": 5, "perturbations_per_eval": 5}
    together = pixel_maps(model, batch, [1, 4, 7], method=method, seed=3, **options)
    for i, target in enumerate([1, 4, 7]):
        alone = pixel_maps(model, batch[i : i + 1], [target], method=method, seed=3, **options)[0]
        np.testing.assert_allclose(together[i].numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
    assert together.shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\], got 10"):
        pixel_maps(model, batch[:1], [10], method=method, **options)


@pytest.mark.parametrize("target", [None, 3])
def test_grad_cam_of_every_stage_in_one_pass_equals_captum_stage_by_stage(model, target) -> None:
    from analysis import gradcam_stages

    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    together = gradcam_stages(model, image, target=target)
    assert [a.stage for a in together] == ["S0", "S1", "S2", "S3", "S4"]
    from captum.attr import LayerAttribution, LayerGradCam

    layers = [model.stem, *model.stages]
    for one, layer in zip(together, layers, strict=True):
        alone = attributions(model, image, method="gradcam", stage=one.stage, target=target)
        assert (one.target, one.probability) == (alone.target, pytest.approx(alone.probability))
        np.testing.assert_allclose(one.signed_map, alone.signed_map, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(one.map, alone.map, rtol=1e-4, atol=1e-6)
        x = image.clone().requires_grad_()
        cam = LayerGradCam(model, layer).attribute(x, target=one.target, relu_attributions=False)
        captums = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")[0, 0]
        np.testing.assert_allclose(alone.signed_map, captums.detach().numpy(), rtol=1e-4, atol=1e-6)
