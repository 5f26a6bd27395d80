"""Receptive fields: composed from layers, measured by gradients, and leaving the model as it was."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch
from torch import nn

import analysis.maps.receptive_field as rf
import coatnet
from analysis.core.summaries import to_jsonable
from analysis.maps.receptive_field import (
    effective_receptive_field,
    mass_sides,
    receptive_fields,
    theoretical_receptive_field,
)
from tests.support.threads import in_threads
from tests.support.toys import state, toy_model


@pytest.fixture
def toy(shared_toy) -> coatnet.CoAtNet:
    """coatnet_toy at 32x32: S0 16x16, S1 8x8, S2 4x4 (MBConv); S3 2x2, S4 1x1 (attention)."""
    return shared_toy()


def test_a_single_3x3_conv_has_a_3x3_theoretical_and_effective_field() -> None:
    """The known answer: one 3x3 conv (random weights, no nonlinearity) sees exactly a 3x3 window."""
    conv = nn.Conv2d(2, 4, 3, padding=1)
    assert theoretical_receptive_field([conv], image_size=9) == ((3, 3), (1, 1))
    (erf,) = effective_receptive_field(conv, torch.randn(3, 2, 9, 9))
    support = np.zeros((9, 9), dtype=bool)
    support[3:6, 3:6] = True
    assert np.array_equal(erf > 0, support)
    assert erf.sum() == pytest.approx(1.0, abs=1e-6)
    assert mass_sides(erf, (4.0, 4.0))[0.99] == 3
    assert all(p.grad is None for p in conv.parameters())


@pytest.mark.parametrize(
    ("layers", "size", "jump"),
    [
        ([nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1)], 7, 2),
        ([nn.Conv2d(1, 1, 3, dilation=2, padding="same")], 5, 1),
        ([nn.Sequential(nn.Conv2d(1, 1, 3), nn.Sequential(nn.BatchNorm2d(1), nn.MaxPool2d(2)))], 4, 2),
        ([nn.AvgPool2d(2), nn.Conv2d(1, 1, (3, 3), stride=2), nn.Identity()], 6, 4),
        ([nn.Conv2d(1, 1, 16, stride=16)], 16, 16),
        ([nn.Conv2d(1, 1, 3)] * 20, 32, 1),  # 41 pixels, capped at the image
    ],
)
def test_theoretical_fields_compose_kernel_stride_dilation(layers: list, size: int, jump: int) -> None:
    assert theoretical_receptive_field(layers, image_size=32) == ((size, size), (jump, jump))


def test_an_unknown_layer_is_refused() -> None:
    with pytest.raises(TypeError, match="Upsample"):
        theoretical_receptive_field([nn.Upsample(scale_factor=2)], image_size=8)


def test_coatnet_stages_theoretical_and_effective(toy: coatnet.CoAtNet) -> None:
    """S0 is the stem's two 3x3 convs, the first with stride 2: 3 + 2 * 2 = 7 pixels, jump 2, and its
    effective field lies inside that 7x7 window; attention stages (S3, S4) see the whole image."""
    fields = receptive_fields(toy)
    assert fields.image_size == (32, 32)
    names = [(s.name, s.kind, s.grid, s.theoretical, s.jump, s.is_global) for s in fields.stages]
    assert names == [
        ("S0", "conv", (16, 16), (7, 7), (2, 2), False),
        # MBConv (1x1 conv with stride 2, 3x3 depthwise) beside a 2x2 max-pool shortcut
        ("S1", "C", (8, 8), (15, 15), (4, 4), False),
        ("S2", "C", (4, 4), (31, 31), (8, 8), False),
        ("S3", "T", (2, 2), (32, 32), (16, 16), True),
        ("S4", "T", (1, 1), (32, 32), (32, 32), True),
    ]
    s0 = fields.stages[0]
    assert s0.centre == (16.0, 16.0)  # unit (8, 8) at stride 2
    window = np.zeros((32, 32), dtype=bool)
    window[13:20, 13:20] = True
    assert s0.effective[~window].sum() == 0 and s0.effective[window].min() > 0
    assert s0.mass_sides[0.99] <= 7
    for stage in fields.stages:
        assert stage.effective.shape == (32, 32) and stage.effective.dtype == np.float32
        assert stage.effective.sum() == pytest.approx(1.0, abs=1e-5)
        assert stage.mass_sides[0.2] <= stage.mass_sides[0.5] <= stage.mass_sides[0.99] <= 32
    # attention reaches every pixel: the far corner moves the S4 unit
    assert fields.stages[4].effective[0, 0] > 0 and fields.stages[4].effective[-1, -1] > 0
    assert pickle.loads(pickle.dumps(fields)).stages[0].name == "S0"
    assert to_jsonable(fields)["stages"][0]["mass_sides"]["0.99"] == s0.mass_sides[0.99]


def test_stride_one_stem_and_a_subset_of_stages(shared_toy) -> None:
    model = shared_toy(img_size=16, strides=(1, 2, 2, 2, 2))
    fields = receptive_fields(model, torch.randn(2, 3, 16, 16), stages=[0, 2])
    assert [(s.name, s.theoretical, s.jump) for s in fields.stages] == [
        ("S0", (5, 5), (1, 1)),
        ("S2", (16, 16), (4, 4)),
    ]
    with pytest.raises(ValueError, match="stages"):
        receptive_fields(model, stages=[5])


@pytest.mark.parametrize("name", ["post", "rmlp"])
def test_post_normalization_and_relative_position_mlp(name: str, shared_toy) -> None:
    if name == "post":
        model = shared_toy(attention="post")
    else:
        # the relative-position MLP variant, slimmed (one block per stage) to keep the test fast
        model = shared_toy("coatnet_rmlp_nano_rw_224", img_size=64, depths=(1, 1, 1, 1))
        assert model.stages[3].blocks[0].attn.rel_pos.mlp is not None
    fields = receptive_fields(model, samples=1, stages=[0, 4])
    assert fields.stages[0].theoretical == (7, 7)
    assert fields.stages[1].is_global and fields.stages[1].effective.sum() == pytest.approx(1.0, abs=1e-5)


def test_mass_sides_of_a_uniform_square() -> None:
    """A uniform 5x5 square: a 3x3 window holds 36% (>= 20%), only the 5x5 one holds 50% and 99%. Around a
    half-pixel centre the windows have even sides."""
    erf = np.zeros((11, 11))
    erf[3:8, 3:8] = 1 / 25
    assert mass_sides(erf, (5.0, 5.0)) == {0.2: 3, 0.5: 5, 0.99: 5}
    assert mass_sides(erf, (5.5, 5.5), shares=(0.01,)) == {0.01: 2}
    assert mass_sides(np.zeros((4, 4)), (2.0, 2.0)) == {0.2: 0, 0.5: 0, 0.99: 0}


def test_model_left_as_found_and_global_rng_untouched(toy: coatnet.CoAtNet) -> None:
    """Training-mode model stays in training mode; existing .grad stays; random inputs come from a private
    generator (same result twice, global RNG state unchanged)."""
    model = toy_model().train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.stem.conv1.weight.requires_grad_(False)
    before, rng = state(model), torch.get_rng_state()
    receptive_fields(model, stages=[0])
    assert state(model) == before
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.all(p.grad == 1) for p in model.parameters())
    a, b = receptive_fields(toy, stages=[1]), receptive_fields(toy, stages=[1])
    np.testing.assert_array_equal(a.stages[0].effective, b.stages[0].effective)


def test_nothing_left_behind_after_an_error(toy: coatnet.CoAtNet, monkeypatch: pytest.MonkeyPatch) -> None:
    before = state(toy)

    def broken(*args, **kwargs):
        raise RuntimeError("backward failed")

    monkeypatch.setattr(rf.torch.autograd, "grad", broken)
    with pytest.raises(RuntimeError, match="backward failed"):
        receptive_fields(toy)
    assert state(toy) == before


def test_two_threads_get_the_results_of_one(toy: coatnet.CoAtNet) -> None:
    images = torch.randn(2, 3, 32, 32)
    alone = receptive_fields(toy, images)
    results = in_threads(lambda: receptive_fields(toy, images), lambda: receptive_fields(toy, images))
    for result in results:
        for a, b in zip(result.stages, alone.stages, strict=True):
            np.testing.assert_allclose(a.effective, b.effective, rtol=1e-5, atol=1e-8)
            assert a.mass_sides == b.mass_sides


def test_all_five_stages_cost_under_15_forward_passes(shared_toy) -> None:
    """One forward pass and one input-gradient per stage: well within 15 plain forward passes (CPU; one
    thread, so that other processes on the machine disturb both timings alike)."""
    model = shared_toy("coatnet_pico", img_size=64)
    images = torch.randn(4, 3, 64, 64)

    def forward() -> None:
        with torch.no_grad():
            model(images)

    def fastest(fn, repeats: int = 3) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fastest(lambda: receptive_fields(model, images)) < 15 * fastest(forward)
    finally:
        torch.set_num_threads(threads)
