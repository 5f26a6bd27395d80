"""Quantus 0.6.0 (test-only, installed without its dependencies: requirements-nodeps.txt) checks the
robustness arithmetic: its MaxSensitivity and LocalLipschitzEstimate, given our maps through its
``explain_func`` and our noise through its ``perturb_func``, agree with ours to 1e-5.

Where the definitions differ, the test says so: Quantus's LocalLipschitzEstimate normalises the maps by
default (``normalise=False`` here: ours compares them as they are) and adds 1e-10 to its denominator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.explain.faithfulness import explanation_maps
from analysis.explain.robustness import noise, robustness
from tests.support.timm import ensure_torchvision_ops
from tests.support.toys import images, toy, trained_looking

ensure_torchvision_ops()  # Quantus imports zennit where installed (the LRP peers), zennit torchvision
quantus = pytest.importorskip("quantus", reason="Quantus 0.6.0 is the peer (make installs it)")


@pytest.mark.parametrize("row", [("gradcam", "S4"), ("relevance", None)])
def test_quantus_max_sensitivity_and_local_lipschitz_agree_with_ours(row):
    model = trained_looking(toy())
    x, samples, radius = images(1), 3, 0.2
    ours = robustness(model, x, rows=[row], radius=radius, n_samples=samples, seed=7)[0]
    deltas = noise(x.shape[1:], radius=radius, n_samples=samples, seed=7).numpy()
    target = int(model(x).argmax())

    def explain(model, inputs, targets, **_):
        batch = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        maps = explanation_maps(model, batch, [int(t) for t in targets], rows=[row])
        return np.stack([m[0].signed_map for m in maps])[:, None]

    def replay():  # our noise, one sample per call, in order
        step = iter(range(samples))

        def perturb(arr, indices, **_):
            return arr + deltas[next(step)].reshape(1, -1)

        return perturb

    a = explain(model, x.numpy(), [target])
    common = dict(nr_samples=samples, disable_warnings=True, normalise=False, abs=False)
    sensitivity = quantus.MaxSensitivity(perturb_func=replay(), **common)(
        model, x.numpy(), np.array([target]), a_batch=a, explain_func=explain, device="cpu"
    )
    lipschitz = quantus.LocalLipschitzEstimate(perturb_func=replay(), **common)(
        model, x.numpy(), np.array([target]), a_batch=a, explain_func=explain, device="cpu"
    )
    np.testing.assert_allclose(sensitivity, [ours.max_sensitivity], rtol=1e-5)
    np.testing.assert_allclose(lipschitz, [ours.local_lipschitz], rtol=1e-5)


@pytest.mark.parametrize("measure", ["spearman_abs", "ssim"])
def test_quantus_random_logit_agrees_with_ours_for_the_class_it_draws(measure):
    """Quantus draws the other class its own way (``np.random.seed(seed)``, then ``randint`` over the
    classes but the target); ours draws it with ``default_rng(seed)``. Given Quantus's class
    (``other=``), our measure of the two maps equals Quantus's score with our similarity function."""
    from analysis.explain.sanity import sanity_checks
    from analysis.explain.similarity import similarity

    model = trained_looking(toy())
    x = images(1)
    target, classes = int(model(x).argmax()), model.config.num_classes
    np.random.seed(42)  # Quantus's draw, as RandomLogit.evaluate_batch makes it
    index = np.random.randint(0, classes - 1, 1)[0]
    other = [c for c in range(classes) if c != target][index]
    row = ("gradcam", "S4")
    ours = sanity_checks(model, x, rows=[row], tests=("random_logit",), other=other).results[0]

    def explain(model, inputs, targets, **_):
        batch = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        maps = explanation_maps(model, batch, [int(t) for t in targets], rows=[row])
        return np.stack([m[0].map for m in maps])[:, None]

    def ours_as_quantus(a, b, batched=True, **_):
        side = x.shape[-2:]
        return np.array(
            [similarity(p.reshape(side), q.reshape(side))[measure] for p, q in zip(a, b, strict=True)]
        )

    a = explain(model, x.numpy(), [target])
    score = quantus.RandomLogit(
        num_classes=classes, seed=42, similarity_func=ours_as_quantus, normalise=False, disable_warnings=True
    )(model, x.numpy(), np.array([target]), a_batch=a, explain_func=explain, device="cpu")
    np.testing.assert_allclose(score, [getattr(ours, measure)], rtol=1e-5, atol=1e-7)
    assert ours.randomised is None and ours.test == "random_logit"


def test_where_quantus_mprt_differs_ours_equals_a_direct_computation():
    """Quantus's MPRT randomises one layer at a time (every module with ``reset_parameters``, in
    registration order reversed), with PyTorch's default initialisers under the global seed; ours
    randomises a whole part at a time (the head, each block from the last, the stem), with the model's
    own initialisers, zeros replaced by N(0, 0.02^2), from a generator per part. So ours is checked against
    the definition computed directly: the map of each copy, made by hand, compared with the trained map."""
    from analysis.explain.sanity import parts, randomised, sanity_checks
    from analysis.explain.similarity import similarity

    model = trained_looking(toy())
    x = images(1)
    row = ("relevance", None)
    report = sanity_checks(model, x, rows=[row], tests=("cascading", "independent"), seed=4)
    target = int(model(x).argmax())
    trained = explanation_maps(model, x, [target], rows=[row])[0][0].map
    order = parts(model)
    for test, randomised_parts in (
        ("cascading", [order[: k + 1] for k in range(len(order))]),
        ("independent", [[name] for name in order]),
    ):
        for result, names in zip(report.select(test, "relevance"), randomised_parts, strict=True):
            copy = randomised(model, names, seed=4)
            direct = similarity(trained, explanation_maps(copy, x, [target], rows=[row])[0][0].map)
            assert result.randomised == names[-1]
            assert {k: getattr(result, k) for k in direct} == pytest.approx(direct, abs=1e-9), (test, names)
