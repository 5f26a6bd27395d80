"""Frequency profiles: known spectra, identity and smoothing blocks, hooks that never stay behind."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import coatnet
from analysis.core.summaries import to_jsonable
from analysis.maps.frequency import EPS, frequency_profile, log_amplitude_profile
from tests.support.threads import in_threads
from tests.support.toys import toy_model


class Smooth2x2(nn.Module):
    """A circular 2x2 box filter: its frequency response cos(wy / 2) cos(wx / 2) is 0 at pi."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right, down = x.roll(1, -1), x.roll(1, -2)
        return (x + right + down + right.roll(1, -2)) / 4


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def toy(shared_toy) -> coatnet.CoAtNet:
    """coatnet_toy at 64x64: S0 32x32, S1.0 16x16, S2.0 8x8 (MBConv), S3.0 4x4, S4.0 2x2 (attention)."""
    return shared_toy(img_size=64)


def test_a_constant_map_has_no_high_frequency_energy() -> None:
    """Only the zero frequency of a constant map is non-zero: |F(0)| = H * W * value."""
    freqs, profile = log_amplitude_profile(torch.full((2, 4, 8, 8), 3.0))
    assert freqs.tolist() == pytest.approx(np.linspace(0, math.pi, 5).tolist())
    assert profile[0] == pytest.approx(math.log(64 * 3.0 + EPS), rel=1e-6)
    assert np.all(profile[1:] < math.log(EPS) + 1.0)


def test_white_noise_is_flat_and_filters_tilt_it() -> None:
    """White noise has the same expected power at every frequency: a flat profile, relative high-frequency
    log amplitude about 0. The 2x2 box filter zeroes every frequency on the border ring (pi); its complement
    x - box(x) zeroes frequency 0 instead."""
    noise = torch.randn(16, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    freqs, flat = log_amplitude_profile(noise)
    assert freqs.shape == flat.shape == (9,)
    # within the 0.35 by which E log|.| of the real-valued DC term sits below that of complex ones
    assert abs(flat[-1] - flat[0]) < 0.5 and np.ptp(flat[1:]) < 0.2
    _, low = log_amplitude_profile(Smooth2x2()(noise))
    assert low[-1] < math.log(EPS) + 1.0 and low[0] > flat[0] - 0.3
    _, high = log_amplitude_profile(noise - Smooth2x2()(noise))
    assert high[0] < math.log(EPS) + 1.0 and high[-1] > flat[-1] - 0.5


def test_the_border_ring_holds_the_corner_frequency() -> None:
    """A checkerboard (-1)^(y + x) is the single frequency (pi, pi): on the last ring, nothing elsewhere."""
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    _, checker = log_amplitude_profile((-1.0) ** (x + y)[None, None])
    assert np.all(checker[:-1] < math.log(EPS) + 1.0)
    assert checker[-1] == pytest.approx((math.log(64 + EPS) + 14 * math.log(EPS)) / 15, rel=1e-3)


def test_names_kinds_grids_in_forward_order(toy: coatnet.CoAtNet, images: torch.Tensor) -> None:
    profile = frequency_profile(toy, images)
    assert [(b.name, b.kind, b.grid) for b in profile.blocks] == [
        ("S0", "conv", (32, 32)),
        ("S1.0", "C", (16, 16)),
        ("S2.0", "C", (8, 8)),
        ("S3.0", "T", (4, 4)),
        ("S4.0", "T", (2, 2)),
    ]
    for block in profile.blocks:
        rings = block.grid[0] // 2 + 1
        assert block.freqs.shape == block.profile.shape == (rings,)
        assert block.freqs[-1] == pytest.approx(math.pi)
        assert block.high_freq_log_amp == pytest.approx(block.profile[-1] - block.profile[0])
        assert np.isfinite(block.delta_vs_input)
    assert pickle.loads(pickle.dumps(profile)).blocks[0].name == "S0"
    assert to_jsonable(profile)["blocks"][1]["kind"] == "C"


def test_identity_block_has_zero_delta_and_smoothing_block_a_negative_one(images: torch.Tensor) -> None:
    """S2.0 replaced by an identity: its output is its input, delta 0 and the profile of S1.0; S3.0
    followed by a 2x2 box filter: the high frequencies drop (a low-pass block)."""
    model = toy_model(img_size=64)  # its own: the test replaces blocks
    model.stages[1].blocks[0] = nn.Identity()
    model.stages[2].blocks[0] = nn.Sequential(model.stages[2].blocks[0], Smooth2x2())
    profile = {b.name: b for b in frequency_profile(model, images).blocks}
    assert profile["S2.0"].delta_vs_input == 0.0
    np.testing.assert_array_equal(profile["S2.0"].profile, profile["S1.0"].profile)
    assert profile["S3.0"].delta_vs_input < -5.0
    assert profile["S3.0"].high_freq_log_amp < math.log(EPS) - profile["S3.0"].profile[0] + 1.0


def test_a_subset_of_blocks_and_an_unknown_name(images: torch.Tensor, shared_toy) -> None:
    model = shared_toy(attention="post", img_size=64)
    profile = frequency_profile(model, images[:1], blocks=["S4.0", "S0"])
    assert [b.name for b in profile.blocks] == ["S0", "S4.0"]
    full = {b.name: b for b in frequency_profile(model, images[:1]).blocks}
    np.testing.assert_array_equal(profile.blocks[1].profile, full["S4.0"].profile)
    with pytest.raises(ValueError, match=r"S9\.0"):
        frequency_profile(model, images, blocks=["S9.0"])


def test_no_hook_left_and_mode_kept_after_an_error(images: torch.Tensor) -> None:
    model = toy_model(img_size=64).train()  # training mode: must stay so
    model.stages[2].blocks[0].mlp.register_forward_hook(
        lambda *args: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    before = hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        frequency_profile(model, images)
    assert hooks(model) == before == 1
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_two_threads_get_the_results_of_one(toy: coatnet.CoAtNet, images: torch.Tensor) -> None:
    model = toy
    alone = frequency_profile(model, images)
    results = in_threads(lambda: frequency_profile(model, images), lambda: frequency_profile(model, images))
    for result in results:
        for a, b in zip(result.blocks, alone.blocks, strict=True):
            np.testing.assert_allclose(a.profile, b.profile, rtol=1e-5, atol=1e-5)
    assert hooks(model) == 0
