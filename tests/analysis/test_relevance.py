"""Class-specific relevance (Chefer et al. 2021) and gradient rollout: the textbook formulas on recorded
weights and gradients, identity attention keeps the relevance diagonal, a model that sees one region only
gets relevance there alone, both normalizations, and the model is left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.explain.relevance import class_relevance
from coatnet.model.recording import record_attention
from tests.support.threads import in_threads
from tests.support.toys import attentions, identity_attention, images, s4_link, state, toy


def by_hand(model, x: torch.Tensor, targets: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per block the effective weights and the gradient of the targets' logits with respect to them."""
    x = x.clone().requires_grad_()
    with record_attention(detach=False) as records:
        logits = model(x)
    chosen = logits[torch.arange(x.shape[0]), torch.tensor(targets)].sum()
    grads = torch.autograd.grad(chosen, [r.weights for r in records])
    return [r.weights.detach().double().numpy() for r in records], [g.double().numpy() for g in grads]


@pytest.mark.parametrize("attention", ["pre", "post"])
def test_relevance_is_chefers_rule_through_the_pool(attention) -> None:
    """R = (I + A_bar_S4) L (I + A_bar_S3), A_bar = mean_h (grad_A * A)^+, the map the mean of R's rows."""
    model = toy(attention=attention)
    x = images(2)
    found = class_relevance(model, x, target=[3, 5])
    weights, grads = by_hand(model, x, [3, 5])
    eye3, eye4 = np.eye(weights[0].shape[-1]), np.eye(weights[1].shape[-1])
    a3 = eye3 + np.clip(grads[0] * weights[0], 0, None).mean(1)
    a4 = eye4 + np.clip(grads[1] * weights[1], 0, None).mean(1)
    expected = a4 @ s4_link(model, x) @ a3
    np.testing.assert_allclose(found.matrix, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(found.map, expected.mean(1).reshape(2, 4, 4), rtol=1e-4, atol=1e-6)
    assert found.targets == (3, 5) and found.mode == attention
    assert found.probabilities.shape == (2,)


def test_grad_rollout_is_vit_explains_rule() -> None:
    """G = (mean_h grad_A * A)^+, the smallest discard_ratio of G zeroed, (G + I) / 2 rows normalised."""
    model = toy()
    x = images(1)
    found = class_relevance(model, x, target=2, method="grad_rollout", discard_ratio=0.5)
    weights, grads = by_hand(model, x, [2])
    mats = []
    for w, g in zip(weights, grads, strict=True):
        fused = np.clip((g * w).mean(1), 0, None)[0]
        flat = fused.ravel().copy()
        flat[np.argsort(flat, kind="stable")[: int(flat.size * 0.5)]] = 0
        mixed = 0.5 * (flat.reshape(fused.shape) + np.eye(fused.shape[0]))
        mats.append(mixed / mixed.sum(-1, keepdims=True))
    expected = mats[1] @ s4_link(model, x)[0] @ mats[0]
    np.testing.assert_allclose(found.matrix[0], expected, rtol=1e-4, atol=1e-6)


def test_identity_attention_keeps_the_relevance_diagonal() -> None:
    """Attention that is the identity in every block (on one grid; off the diagonal softmax gives
    exp(-50) ~ 2e-22): R stays diagonal."""
    model = toy(strides=(1, 1, 2, 2, 1))
    identity_attention(model)
    found = class_relevance(model, images(2))
    off_diagonal = found.matrix * (1 - np.eye(found.matrix.shape[-1]))
    assert np.abs(off_diagonal).max() < 1e-15
    assert (np.diagonal(found.matrix, axis1=1, axis2=2) >= 1.0).all()


def test_the_predicted_class_is_explained_by_default() -> None:
    model = toy()
    x = images(3)
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    assert list(class_relevance(model, x).targets) == predicted


def test_bad_requests_are_refused_with_a_reason() -> None:
    model = toy()
    with pytest.raises(ValueError, match="relevance method"):
        class_relevance(model, images(1), method="lrp")
    with pytest.raises(ValueError, match="class index"):
        class_relevance(model, images(1), target=99)
    with pytest.raises(ValueError, match="one target per image"):
        class_relevance(model, images(2), target=[1])
    with pytest.raises(ValueError, match="no attention blocks"):
        class_relevance(toy(layout="C-C-C-C"), images(1))


def test_the_model_is_left_as_found_and_threads_get_what_each_gets_alone() -> None:
    model = toy(attention="post")
    for attn in attentions(model):
        attn.rel_pos.table.requires_grad_(False)  # frozen parameters still get relevance
    before = state(model)
    alone = [class_relevance(model, images(1, 16) + i, target=i).matrix for i in range(4)]
    assert state(model) == before
    together = in_threads(
        *[lambda i=i: class_relevance(model, images(1, 16) + i, target=i).matrix for i in range(4)]
    )
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state(model) == before
