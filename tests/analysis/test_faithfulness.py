"""Faithfulness: the pinned protocol's curves and areas, ROAD's imputation against a hand-solved system
(and pytorch-grad-cam where it is installed), the random map against explicitly shuffled orders, and a
constructed model that sees one region only: relevance and Grad-CAM single it out, and deleting it first
drops the target's probability at the first step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis.explain.attributions import _stage_cams, gradcam_maps
from analysis.explain.faithfulness import RANDOM_SEEDS, Explanation, faithfulness, measure, method_rows
from analysis.explain.perturbation import (
    NEIGHBOURS,
    PERCENTILES,
    STEPS,
    noisy_linear_imputation,
    perturbed_images,
    pixel_order,
    random_map,
    road_images,
)
from analysis.explain.relevance import class_relevance
from tests.support.timm import ensure_torchvision_ops
from tests.support.toys import attentions, identity_attention, images, set_kernel, state, toy

REGION = (slice(4, 8), slice(8, 12))  # one cell (row 1, column 2) of the 4x4 attention grid: 1/16 of 16x16


def region_model() -> nn.Module:
    """coatnet_toy at 16x16 made pointwise and blind outside REGION: every spatial kernel keeps its centre
    tap only, every bias and BatchNorm mean is 0 (so zero activations stay zero), attention is the identity
    in S3 and S4 (both on the 4x4 grid), and the input is zeroed outside REGION before the stem. The class
    logits then depend on REGION's pixels alone, and every activation outside its cell is exactly 0."""
    model = toy(strides=(1, 1, 2, 2, 1))
    identity_attention(model)
    for attn in attentions(model):
        set_kernel(attn, {(0, 0): 1e4})  # off the diagonal softmax gives exp(-1e4) = 0, exactly
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
                kh, kw = m.kernel_size
                centre = m.weight[..., kh // 2, kw // 2].clone()
                m.weight.zero_()
                m.weight[..., kh // 2, kw // 2] = centre
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., REGION[0], REGION[1]] = 1.0
    model.stem.register_forward_pre_hook(lambda module, args: (args[0] * mask,))
    return model


def test_a_model_that_sees_one_region_is_explained_there_and_loses_its_class_without_it() -> None:
    model = region_model()
    x = images(1)
    with torch.no_grad():
        probabilities = model(x).softmax(-1)[0]
    target = int(probabilities.argmax())
    inside = np.zeros((4, 4), dtype=bool)
    inside[1, 2] = True
    # Grad-CAM's class-activation map (before its ReLU) at every stage on the attention grid: zero outside
    cams, _, _ = _stage_cams(model, x, [target])
    for cam in cams[3:]:
        grid = cam[0, 0].numpy()
        assert np.abs(grid[~inside]).max() == 0.0 and grid[inside].item() != 0.0
    # relevance: the identity's 1/N everywhere, more on the region's cell (the evidence for the class)
    relevance = class_relevance(model, x, target=target)
    values = relevance.map[0]
    assert np.allclose(values[~inside], 1 / 16) and values[inside].item() > 1 / 16
    # deletion by the relevance map removes the region in the first step: the logits drop to the
    # all-zero input's (all biases 0: uniform), and stay there
    (found,) = measure(model, x[0], target, [Explanation("relevance", None, _drawn(values))])
    assert found.deletion[0] == pytest.approx(probabilities[target].item(), rel=1e-5)
    assert found.deletion[1] < found.deletion[0]
    np.testing.assert_allclose(found.deletion[1:], 0.1, atol=1e-6)


def _drawn(grid: np.ndarray) -> np.ndarray:
    """A 4x4 grid map as drawn on the 16x16 input: each cell a 4x4 block of pixels."""
    return np.kron(grid, np.ones((4, 4), dtype=np.float32))


def test_pixel_order_is_by_decreasing_value_with_ties_in_a_seeded_order() -> None:
    values = np.array([[0.0, 2.0], [1.0, 2.0]])
    order = pixel_order(values)
    assert set(order[:2]) == {1, 3} and list(order[2:]) == [2, 0]
    flat = np.zeros((3, 3))
    np.testing.assert_array_equal(pixel_order(flat), np.random.default_rng(0).permutation(9))
    np.testing.assert_array_equal(pixel_order(random_map((3, 3), 7)), np.random.default_rng(7).permutation(9))


def test_deletion_and_insertion_images_follow_the_protocol() -> None:
    image = images(1, 16)[0]
    values = np.arange(256, dtype=np.float32).reshape(16, 16)  # the bottom-right pixel first
    deletion, insertion, road = perturbed_images(image, values)
    assert deletion.shape == insertion.shape == (STEPS + 1, 3, 16, 16)
    assert road.shape == (2 * len(PERCENTILES), 3, 16, 16)
    torch.testing.assert_close(deletion[0], image)
    assert (deletion[-1] == 0).all()
    removed = (deletion[1] == 0).all(0)
    assert removed.sum() == 16 and removed.flatten()[-16:].all()  # the 16 largest values
    torch.testing.assert_close(insertion[-1], image)
    assert not torch.equal(insertion[0], image)  # blurred
    restored = (insertion[1] == image).all(0)
    assert restored.flatten()[-16:].all()


def test_imputation_solves_the_neighbour_mean_system_by_hand() -> None:
    """Every removed pixel equals the weighted mean of its in-image neighbours (ROAD's weights), solved
    densely here with a loop per pixel."""
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 5, 6)).astype(np.float32)
    keep = rng.random((5, 6)) > 0.5
    found = noisy_linear_imputation(image, keep, 0.0, np.random.default_rng(0))
    missing = [(y, x) for y in range(5) for x in range(6) if not keep[y, x]]
    index = {p: i for i, p in enumerate(missing)}
    system = np.zeros((len(missing), len(missing)))
    rhs = np.zeros((len(missing), 2))
    for i, (y, x) in enumerate(missing):
        for dy, dx, weight in NEIGHBOURS:
            ny, nx = y + dy, x + dx
            if not (0 <= ny < 5 and 0 <= nx < 6):
                continue
            system[i, i] += weight
            if (ny, nx) in index:
                system[i, index[(ny, nx)]] -= weight
            else:
                rhs[i] += weight * image[:, ny, nx]
    solved = np.linalg.solve(system, rhs)
    for i, (y, x) in enumerate(missing):
        np.testing.assert_allclose(found[:, y, x], solved[i], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(found[:, keep], image[:, keep])
    noisy = noisy_linear_imputation(image, keep, 0.01, np.random.default_rng(0))
    assert 0.0 < np.abs(noisy - found).max() < 0.06


def test_road_removes_the_top_and_the_bottom_of_the_map_at_each_percentile() -> None:
    image = images(1, 16)[0]
    values = np.arange(256, dtype=np.float32).reshape(16, 16)
    road = road_images(image, values, noise=0.0)
    rank = np.arange(256)
    for k, p in enumerate(PERCENTILES):
        morf_kept = (road[k] == image).all(0).flatten().numpy()
        lerf_kept = (road[len(PERCENTILES) + k] == image).all(0).flatten().numpy()
        # the p-th percentile of 0..255 is 2.55 p (linear interpolation): strictly below it is kept
        np.testing.assert_array_equal(morf_kept, rank < 2.55 * p)  # MoRF keeps the least relevant
        np.testing.assert_array_equal(lerf_kept, 255 - rank < 2.55 * p)  # LeRF keeps the most relevant


def test_the_random_map_is_the_mean_of_explicitly_shuffled_orders() -> None:
    model = toy()
    x = images(1)[0]
    with torch.no_grad():
        probabilities = model(x[None]).softmax(-1)[0]
    target = int(probabilities.argmax())
    maps = [Explanation("random", None, random_map((16, 16), s), s) for s in RANDOM_SEEDS]
    (found,) = measure(model, x, target, maps)
    curves = []
    for seed in RANDOM_SEEDS:
        order = np.random.default_rng(seed).permutation(256)
        removed = np.zeros(256, dtype=bool)
        curve = []
        for k in range(STEPS + 1):
            removed[order[: round(k * 256 / STEPS)]] = True
            with torch.no_grad():
                masked = x * torch.from_numpy(~removed).float().view(1, 16, 16)
                curve.append(model(masked[None]).softmax(-1)[0, target].item())
        curves.append(curve)
    np.testing.assert_allclose(found.deletion, np.mean(curves, axis=0), rtol=1e-5, atol=1e-6)
    aucs = [np.trapezoid(c, np.linspace(0, 1, STEPS + 1)) for c in curves]
    assert found.deletion_auc == pytest.approx(np.mean(aucs), rel=1e-5)
    assert found.spread["deletion_auc"] == pytest.approx((min(aucs), max(aucs)), rel=1e-5)


def test_every_method_is_measured_for_one_image_and_the_model_is_left_as_found() -> None:
    model = toy(attention="post")
    before = state(model)
    shares = []
    report = faithfulness(model, images(1)[0], progress=shares.append)
    assert state(model) == before
    names = [r.name for r in report.results]
    assert names == [f"{m} {s}" if s else m for m, s in method_rows(model)]
    assert shares[-1] == 1.0 and shares == sorted(shares)
    for r in report.results:
        assert 0.0 <= r.deletion_auc <= 1.0 and 0.0 <= r.insertion_auc <= 1.0
        assert r.road == pytest.approx((r.road_lerf - r.road_morf) / 2)
        assert r.deletion[0] == pytest.approx(report.probability, rel=1e-5)
    assert report.protocol["steps"] == STEPS
    no_attention = toy(layout="C-C-C-C")
    assert [m for m, _ in method_rows(no_attention)] == ["random"] + ["gradcam"] * 5 + [
        "integrated_gradients",
        "occlusion",
        "lrp_attnlrp",
        "lrp_cp",
    ]


def test_gradcam_maps_of_a_batch_are_each_images_own() -> None:
    model = toy()
    x = images(3)
    together = gradcam_maps(model, x, [1, 2, 3])
    for i, target in enumerate([1, 2, 3]):
        alone = gradcam_maps(model, x[i : i + 1], [target])
        for stage in range(5):
            np.testing.assert_allclose(together[stage][i], alone[stage][0], rtol=1e-4, atol=1e-6)


def test_pytorch_grad_cam_agrees_on_grad_cam_and_road() -> None:
    """The peer (pytorch-grad-cam, a test-only requirement): its Grad-CAM on our stage outputs equals
    ours (both min-max scaled as it scales), and its ROAD on the same maps matches ours without noise
    exactly and with its noise within the noise's effect."""
    pytest.importorskip("cv2")
    ensure_torchvision_ops()  # pytorch-grad-cam imports torchvision (tests/support/timm.py)
    cams = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    model = toy()
    x = images(1, 16)
    with torch.no_grad():
        target = int(model(x).argmax())
    ours = gradcam_maps(model, x, [target])
    for stage, layer in zip(range(1, 5), model.stages, strict=True):
        with cams.GradCAM(model=model, target_layers=[layer]) as peer:
            theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
        scaled = ours[stage][0] - ours[stage][0].min()
        scaled = scaled / (1e-7 + scaled.max())
        # theirs scales on the grid and then resizes (cv2, bilinear); ours resizes then is scaled here
        np.testing.assert_allclose(scaled, theirs, atol=1e-3)  # measured: at most 2e-4
    model.zero_grad(set_to_none=True)
    values = ours[3][0] / max(float(ours[3][0].max()), 1e-12)
    ours_road = measure(model, x[0], target, [Explanation("gradcam", "S3", values)])[0]
    morf, lerf = [], []
    for p in PERCENTILES:
        for remove, out in ((RemoveMostRelevantFirst, morf), (RemoveLeastRelevantFirst, lerf)):
            metric = PerturbationConfidenceMetric(remove(p, NoisyLinearImputer(noise=0.0)))
            out.append(metric(x, values[None], [ClassifierOutputSoftmaxTarget(target)], model)[0])
    exact = road_images(x[0], values, noise=0.0)
    with torch.no_grad():
        before = model(x).softmax(-1)[0, target].item()
        after = model(exact).softmax(-1)[:, target].numpy() - before
    np.testing.assert_allclose(after[: len(PERCENTILES)], morf, atol=1e-5)
    np.testing.assert_allclose(after[len(PERCENTILES) :], lerf, atol=1e-5)
    torch.manual_seed(0)
    combined = ROADCombined(percentiles=list(PERCENTILES))(
        x, values[None], [ClassifierOutputSoftmaxTarget(target)], model
    )[0]
    assert ours_road.road == pytest.approx(float(combined), abs=1e-3)  # two noise draws: 3e-6 apart
