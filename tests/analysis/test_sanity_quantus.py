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
from tests.support.toys import images, toy, trained_looking

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
