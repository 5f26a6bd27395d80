"""Feature maps per stage and top-k predictions: known answers from the model's own intermediates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.core.predictions import top_k
from analysis.maps.features import feature_maps
from tests.support.toys import breaks_mid_way, images, state, toy


def test_each_stage_is_its_intermediate_output():
    model, x = toy(), images(2)
    with torch.no_grad():
        _, outputs = model.forward_intermediates(x)
    found = feature_maps(model, x, top=3)
    assert found.names == ("S0", "S1", "S2", "S3", "S4")
    for stage, output, info in zip(found.blocks, outputs, model.stage_info(), strict=True):
        assert stage.grid == tuple(output.shape[-2:]) == info.grid and stage.channels == output.shape[1]
        np.testing.assert_allclose(stage.energy, output.abs().mean(1).numpy(), rtol=1e-5, atol=1e-6)
        energy = output.pow(2).mean((2, 3))  # (B, C)
        for b in range(2):
            chosen = stage.top_index[b]
            assert set(chosen) == set(energy[b].topk(3).indices.tolist())
            np.testing.assert_allclose(stage.top[b, 0], output[b, chosen[0]].numpy(), rtol=1e-5, atol=1e-6)
            assert energy[b, chosen[0]] >= energy[b].max() - 1e-6


def test_feature_maps_leave_the_model_as_found_even_after_an_error():
    model = toy().train()
    before = state(model)
    feature_maps(model, images(1))
    with breaks_mid_way(model.stages[2]):
        feature_maps(model, images(1))
    assert state(model) == before


def test_top_k_orders_names_and_normalises():
    logits = np.array([0.0, 3.0, 1.0, 2.0])
    best = top_k(logits, ["a", "b", "c", "d"], k=3)
    assert [p.name for p in best] == ["b", "d", "c"] and [p.index for p in best] == [1, 3, 2]
    expected = np.exp(logits) / np.exp(logits).sum()
    assert best[0].probability == pytest.approx(expected[1])
    assert [p.name for p in top_k(logits, None, k=10)][:1] == ["class 1"] and len(top_k(logits, k=10)) == 4
    with pytest.raises(ValueError, match="3 class names for 4 logits"):
        top_k(logits, ["a", "b", "c"])
