"""Sanity checks (analysis.explain.sanity): model parameter randomisation and the random logit test, with
known answers: an input-only map never changes, a random map is unrelated, a map is itself, and a
randomised block changes a Grad-CAM stage through the gradient only (after it) or through its
activations too (before it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import coatnet
from analysis.explain.sanity import parts, random_seed, randomised, sanity_checks
from analysis.explain.similarity import MEASURES, similarity
from coatnet.model.network import ZERO_INIT_STD, reinitialise
from tests.support.model_state import assert_as_found, snapshot
from tests.support.toys import images, toy, trained_looking

ROWS = [("random", None), ("rollout", None), ("relevance", None), ("gradcam", "S3"), ("gradcam", "S4")]


def sobel(model, batch: torch.Tensor, target: int) -> np.ndarray:
    """An explanation of the input alone: its Sobel edge magnitude (channels summed)."""
    import kornia

    return kornia.filters.sobel(batch).sum(1)[0].numpy()


@pytest.fixture(scope="module")
def model() -> coatnet.CoAtNet:
    return trained_looking(toy())


@pytest.fixture(scope="module")
def report(model):
    before = snapshot(model)
    found = sanity_checks(model, images(1), rows=ROWS, custom={"sobel": sobel}, seed=3)
    assert_as_found(before, model)  # every randomised model was a copy
    return found


def test_reinitialise_draws_every_parameter_afresh_and_resets_batchnorm():
    model = trained_looking(toy())
    block = model.stages[0].blocks[0]  # an MBConv block: convolutions, BatchNorm, squeeze-excitation
    norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.running_mean.fill_(3.0)
    before = {name: p.clone() for name, p in block.named_parameters()}
    reinitialise(block, torch.Generator().manual_seed(0))
    for name, p in block.named_parameters():
        assert not torch.equal(p, before[name]) or (name.endswith("weight") and "norm" in name), name
        if name.endswith("bias"):  # created as zeros: drawn from the stated normal instead
            assert 0 < p.std() < 3 * ZERO_INIT_STD, name
    assert all(torch.equal(n.running_mean, torch.zeros_like(n.running_mean)) for n in norms)
    assert all(torch.equal(n.running_var, torch.ones_like(n.running_var)) for n in norms)
    again = trained_looking(toy()).stages[0].blocks[0]
    reinitialise(again, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(block.parameters(), again.parameters(), strict=True))
    assert torch.isfinite(model(images(2))).all()  # a reset BatchNorm never divides by zero

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(TypeError, match="Odd's parameters \\['scale'\\]"):
        reinitialise(Odd(), torch.Generator())


def test_a_randomised_model_is_a_copy_whose_other_parts_view_the_trained_weights(model):
    before = snapshot(model)
    copy = randomised(model, ["head", "S4.0"], seed=0)
    assert_as_found(before, model)
    assert copy.head.fc.weight.data_ptr() != model.head.fc.weight.data_ptr()
    assert next(copy.stem.parameters()).data_ptr() == next(model.stem.parameters()).data_ptr()  # a view
    assert not torch.equal(copy.head.fc.weight, model.head.fc.weight)
    same = randomised(model, ["head"], seed=0)  # a part is drawn the same at every step and in each test
    assert torch.equal(same.head.fc.weight, copy.head.fc.weight)
    assert parts(model)[0] == "head" and parts(model)[-1] == "S0"
    assert parts(model)[1:-1] == sorted(parts(model)[1:-1], reverse=True)


def test_a_map_is_exactly_itself_and_a_constant_map_counts_as_constant_never_nan():
    values = np.random.default_rng(0).normal(size=(28, 28))
    same = similarity(np.abs(values), np.abs(values), values, values)
    assert [same[m] for m in MEASURES] == [1.0, 1.0, 1.0, 1.0] and not same["constant"]
    flat = similarity(np.abs(values), np.zeros((28, 28)))
    assert flat["constant"] and flat["spearman"] == flat["spearman_abs"] == flat["hog"] == 0.0
    assert all(np.isfinite(flat[m]) for m in MEASURES)


def test_an_input_only_map_passes_unchanged_and_a_random_map_is_unrelated(report):
    cascade = report.select("cascading", "sobel")
    assert [r.randomised for r in cascade] == list(report.parts)
    for r in [*cascade, *report.select("independent", "sobel"), *report.select("random_logit", "sobel")]:
        assert [getattr(r, m) for m in MEASURES] == [1.0, 1.0, 1.0, 1.0], r.randomised
    # the random map: a seed per model copy, none per class (random logit: the same map, similarity 1)
    rho = [r.spearman for r in report.results if r.method == "random" and r.test != "random_logit"]
    assert abs(np.mean(rho)) <= 2 * np.std(rho) / np.sqrt(len(rho)) + 1e-9, rho
    assert [r.spearman for r in report.select("random_logit", "random")] == [1.0]
    assert random_seed(3, ()) != random_seed(3, ("head",))
    assert [r.spearman for r in report.select("random_logit", "rollout")] == [1.0]  # class-agnostic
    assert report.other != report.target


def test_gradcam_changes_through_the_gradient_after_its_stage_and_the_activations_before_it(model, report):
    # the head is the only path from S4 to the logits: randomising it changes Grad-CAM S4 at once
    first = report.select("cascading", "gradcam", "S4")[0]
    assert first.randomised == "head" and first.spearman_abs < 0.95
    x = images(1)

    def s3_features(m) -> torch.Tensor:
        _, stages = m.forward_intermediates(x)
        return stages[3]

    after, before_stage = randomised(model, ["S4.0"], seed=3), randomised(model, ["S2.0"], seed=3)
    with torch.no_grad():
        assert torch.equal(s3_features(after), s3_features(model))  # S3's activations as trained
        assert not torch.allclose(s3_features(before_stage), s3_features(model))
    through_gradient = next(
        r for r in report.select("independent", "gradcam", "S3") if r.randomised == "S4.0"
    )
    trained = next(e.map for e in report.trained if e.method == "gradcam" and e.stage == "S3")
    assert not np.allclose(through_gradient.map, trained, rtol=1e-3)  # moved, through the gradient alone


def test_max_sensitivity_and_local_lipschitz_are_what_their_definitions_say(model):
    from analysis.explain.faithfulness import explanation_maps
    from analysis.explain.robustness import noise, robustness

    x = images(1)
    before = snapshot(model)
    rows = [("random", None), ("gradcam", "S4"), ("relevance", None)]
    found = robustness(model, x, rows=rows, radius=0.2, n_samples=3, seed=5)
    assert_as_found(before, model)
    assert [r.name for r in found] == ["random", "gradcam S4", "relevance"]
    deltas = noise(x.shape[1:], radius=0.2, n_samples=3, seed=5)
    assert deltas.abs().max() <= 0.2 and deltas.shape == (3, *x.shape[1:])
    target = int(model(x).argmax())
    direct = explanation_maps(model, torch.cat([x, x + deltas]), [target] * 4, rows=[("gradcam", "S4")])
    base = direct[0][0].map.astype(np.float64)
    moved = [np.linalg.norm(m[0].map - base) for m in direct[1:]]
    gradcam = found[1]
    np.testing.assert_allclose(gradcam.sensitivities, np.array(moved) / np.linalg.norm(base), rtol=1e-5)
    np.testing.assert_allclose(gradcam.lipschitz, moved / deltas.flatten(1).norm(dim=1).numpy(), rtol=1e-5)
    assert gradcam.max_sensitivity == gradcam.sensitivities.max() and gradcam.radius == 0.2
    again = robustness(model, x, rows=rows, radius=0.2, n_samples=3, seed=5)
    assert [r.max_sensitivity for r in again] == [r.max_sensitivity for r in found]  # seeded
    assert found[0].max_sensitivity > 0.5  # the random map, drawn afresh for each input: the baseline


def test_robustness_given_the_image_own_maps_measures_what_it_makes_itself(model):
    from analysis.explain.faithfulness import explanation_maps
    from analysis.explain.robustness import robustness

    x = images(1)
    rows = [("random", None), ("gradcam", "S4"), ("relevance", None)]
    target = int(model(x).argmax())
    (own,) = explanation_maps(model, x, [target], rows=rows[1:])
    given = [sanity_checks(model, x, rows=rows[:1], tests=()).trained[0], *own]
    made = robustness(model, x, rows=rows, radius=0.2, n_samples=3, seed=5)
    reused = robustness(model, x, rows=rows, radius=0.2, n_samples=3, seed=5, given=given)
    for a, b in zip(made, reused, strict=True):
        np.testing.assert_allclose(b.sensitivities, a.sensitivities, rtol=1e-5)
        np.testing.assert_allclose(b.lipschitz, a.lipschitz, rtol=1e-5)
    with pytest.raises(ValueError, match="rows"):
        robustness(model, x, rows=rows, n_samples=3, given=given[::-1])


def test_the_sanity_figures_draw_every_method_at_every_part(report):
    import plotly.graph_objects as go

    from analysis.figures import random_logit_figure, sanity_cascade_figure, sanity_curves_figure

    cascade = sanity_cascade_figure(report)
    maps = [t for t in cascade.data if isinstance(t, go.Heatmap)]
    assert len(maps) == len(report.trained) * (1 + len(report.parts))
    assert all(np.nanmax(t.z) <= 1.0 and np.nanmin(t.z) >= 0.0 for t in maps)  # |map| over its own max
    subtitles = [a.text for a in cascade.layout.annotations]
    assert subtitles[: 1 + len(report.parts)] == ["none", *report.parts]
    curves = sanity_curves_figure(report, test="independent")
    assert [t.name for t in curves.data] == [e.name for e in report.trained]
    sobel = next(t for t in curves.data if t.name == "sobel")
    assert list(sobel.y) == [1.0] * len(report.parts) and list(sobel.x) == list(report.parts)
    logit = random_logit_figure(report)
    assert list(logit.data[0].y) == [e.name for e in report.trained]
    assert "Lower is better" in logit.layout.annotations[-1].text


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_pixel_methods_shared_across_the_copies_are_each_copys_own(method, monkeypatch):
    """The check runs the trained blocks' forward passes once for every copy, each copy only from its
    earliest randomised part on (Integrated Gradients keeping the trained passes for every copy's
    backward pass): every copy's map is the one the method gives that copy alone, and the random logit
    test's the trained model's for the other class; the model is left as found."""
    import analysis.explain.sanity as sanity
    from analysis.explain.faithfulness import explanation_maps

    calls = []
    real = sanity.SHARED[method]
    monkeypatch.setitem(sanity.SHARED, method, lambda *args: calls.append(1) or real(*args))
    model = trained_looking(toy())
    x = images(1)
    row = [(method, None)]
    before = snapshot(model)
    report = sanity_checks(model, x, rows=row, seed=2)
    assert_as_found(before, model)
    assert calls == [1]  # the shared path made every copy's map
    order = parts(model)
    for test, randomised_parts in (
        ("cascading", [order[: k + 1] for k in range(len(order))]),
        ("independent", [[name] for name in order]),
    ):
        for result, names in zip(report.select(test, method), randomised_parts, strict=True):
            alone = explanation_maps(randomised(model, names, seed=2), x, [report.target], rows=row)[0][0]
            np.testing.assert_allclose(result.map, alone.map, rtol=1e-4, atol=1e-5, err_msg=str(names))
    for cls, found in ((report.target, report.trained[0]), (report.other, report.other_maps[0])):
        alone = explanation_maps(model, x, [cls], rows=row)[0][0]
        np.testing.assert_allclose(found.signed_map, alone.signed_map, rtol=1e-4, atol=1e-5)


def test_one_class_models_other_class_is_the_predicted_one_and_the_copies_share_each_draw():
    """With a single class the random logit test compares a map with itself (1); the copies of one check
    hold each randomised part once, drawn as a copy made alone draws it."""
    model = trained_looking(toy(num_classes=1))
    report = sanity_checks(model, images(1), rows=[("integrated_gradients", None), ("occlusion", None)])
    assert report.other == report.target == 0
    assert all(r.spearman == pytest.approx(1.0) for r in report.results if r.test == "random_logit")
    drawn: dict = {}
    first = randomised(model, ["head", "S4.0"], seed=5, drawn=drawn)
    second = randomised(model, ["head", "S4.0", "S3.0"], seed=5, drawn=drawn)
    assert first.head is second.head and first.stages[3].blocks[0] is second.stages[3].blocks[0]
    alone = randomised(model, ["head", "S4.0", "S3.0"], seed=5)
    for (name, a), b in zip(second.state_dict().items(), alone.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
