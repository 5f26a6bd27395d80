"""Attention rollout: pooling links with known answers, identity attention rolls out to the identity (or
to the pool's link), rollout composes the fused, residual-mixed matrices, post-normalization is rolled out
as used, and the model is left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis.maps.attention import attention_maps
from analysis.maps.rollout import attention_rollout, pooling_link
from tests.support.threads import in_threads
from tests.support.toys import (
    attentions,
    breaks_mid_way,
    identity_attention,
    images,
    rmlp,
    s4_link,
    state,
    toy,
)


def randomise_bias(model: torch.nn.Module, std: float = 1.0) -> None:
    with torch.no_grad():
        for attn in attentions(model):
            attn.rel_pos.table.normal_(std=std)


def mixed(effective: np.ndarray, how: str = "mean", normalise: bool = True) -> np.ndarray:
    """By hand: 0.5 * fused heads + 0.5 * I, rows normalised."""
    fused = effective.mean(1) if how == "mean" else effective.max(1)
    a = 0.5 * fused.astype(np.float64) + 0.5 * np.eye(fused.shape[-1])
    return a / a.sum(-1, keepdims=True) if normalise else a


def window_link() -> np.ndarray:
    """A 2x2 average pool of a 4x4 grid: output cell (r, c) takes 1/4 of each input (2r + i, 2c + j)."""
    link = np.zeros((4, 16))
    for r in range(2):
        for c in range(2):
            for i in range(2):
                for j in range(2):
                    link[r * 2 + c, (2 * r + i) * 4 + 2 * c + j] = 0.25
    return link


def test_average_pool_link_spreads_uniformly_over_the_window() -> None:
    link = pooling_link(nn.AvgPool2d(2, 2), torch.zeros(3, 5, 4, 4))
    assert link.shape == (3, 4, 16)
    np.testing.assert_array_equal(link[2], window_link())


@pytest.mark.parametrize(
    "pool",
    [
        nn.AvgPool2d(3, 2, 1),  # padded windows, the padding counted
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),  # the padding not counted: each window its own cells
        nn.AvgPool2d((2, 3), (2, 1), ceil_mode=True),  # rectangles, a last window cut short
        nn.AvgPool2d(3, 2, 1, divisor_override=5),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False, divisor_override=5),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True),  # a padded last window cut short
        nn.AvgPool2d(2),  # stride: the kernel
    ],
)
def test_an_average_pool_link_built_per_axis_is_the_pool_itself(pool: nn.AvgPool2d) -> None:
    # the link's row o holds what window o takes of each input cell: pooling one-hot images says it directly
    one_hot = torch.eye(7 * 9, dtype=torch.float64).reshape(63, 1, 7, 9)
    expected = pool(one_hot).flatten(1).T.numpy()
    link = pooling_link(pool, torch.zeros(2, 3, 7, 9))
    assert link.shape == (2, *expected.shape)
    np.testing.assert_allclose(link[1], expected, rtol=1e-12, atol=1e-15)


def test_max_pool_link_follows_where_each_channel_found_its_maximum() -> None:
    """Window 0: each of 4 channels peaks at a different cell (1/4 each). Other windows: every channel
    peaks at the window's bottom-right cell (all of the link)."""
    x = torch.zeros(1, 4, 4, 4)
    x[:, :, 1::2, 1::2] = 1.0  # bottom-right of every window
    for c, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        x[0, c, i, j] = 2.0
    link = pooling_link(nn.MaxPool2d(2, 2), x)[0]
    expected = np.zeros((4, 16))
    expected[0, [0, 1, 4, 5]] = 0.25
    expected[1, 1 * 4 + 3] = expected[2, 3 * 4 + 1] = expected[3, 3 * 4 + 3] = 1.0
    np.testing.assert_array_equal(link, expected)


def test_max3_pool_link_uses_overlapping_padded_windows() -> None:
    """3x3 windows, stride 2, padding 1 on a 4x4 grid: cell (1, 1) lies in all four windows and wins the
    first three; the last window also holds (3, 3), which is larger."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1], x[0, 0, 3, 3] = 5.0, 9.0
    link = pooling_link(nn.MaxPool2d(3, 2, padding=1), x)[0]
    expected = np.zeros((4, 16))
    expected[[0, 1, 2], 5] = 1.0
    expected[3, 15] = 1.0
    np.testing.assert_array_equal(link, expected)
    np.testing.assert_array_equal(pooling_link(nn.Identity(), x)[0], np.eye(16))
    with pytest.raises(TypeError, match="LPPool2d"):
        pooling_link(nn.LPPool2d(2, 2), x)


def test_identity_attention_on_one_grid_rolls_out_to_the_identity() -> None:
    model = toy(strides=(1, 1, 2, 2, 1))  # S3 and S4 both on the 4x4 grid
    identity_attention(model)
    rollout = attention_rollout(model, images())
    assert rollout.blocks == ("S3.0", "S4.0") and rollout.grid_first == rollout.grid_last == (4, 4)
    np.testing.assert_allclose(rollout.matrix, np.broadcast_to(np.eye(16), (2, 16, 16)), atol=1e-6)
    np.testing.assert_allclose(rollout.map, np.full((2, 4, 4), 1 / 16), atol=1e-6)


def test_identity_attention_through_an_average_pool_rolls_out_to_the_window() -> None:
    model = toy(pool="avg")
    identity_attention(model)
    rollout = attention_rollout(model, images(), query=3)
    assert (rollout.grid_first, rollout.grid_last, rollout.stride_first, rollout.stride_last) == (
        (4, 4), (2, 2), 4, 8,
    )  # fmt: skip
    np.testing.assert_allclose(rollout.matrix[1], window_link(), atol=1e-6)
    np.testing.assert_allclose(rollout.map[0], window_link()[3].reshape(4, 4), atol=1e-6)


def test_identity_attention_through_a_max_pool_rolls_out_to_the_selected_positions() -> None:
    """The link of each image: rows sum to 1 and stay inside their window."""
    model = toy()
    identity_attention(model)
    x = images()
    rollout = attention_rollout(model, x)
    link = s4_link(model, x)
    np.testing.assert_allclose(rollout.matrix, link, atol=1e-6)
    np.testing.assert_allclose(link.sum(-1), 1.0, atol=1e-12)
    assert (link[:, window_link() == 0] == 0).all()
    assert not np.allclose(link[0], link[1])  # the link depends on the image


@pytest.mark.parametrize("how", ["mean", "max"])
def test_two_blocks_on_one_grid_compose_as_the_matrix_product(how: str) -> None:
    model = toy(strides=(1, 1, 2, 2, 1))
    randomise_bias(model)
    x = images()
    maps = attention_maps(model, x)
    expected = mixed(maps.blocks[1].effective, how) @ mixed(maps.blocks[0].effective, how)
    rollout = attention_rollout(model, x, head_fusion=how, maps=maps)
    np.testing.assert_allclose(rollout.matrix, expected, atol=1e-6)
    np.testing.assert_allclose(rollout.matrix.sum(-1), 1.0, atol=1e-5)
    assert f"fused by {how}" in rollout.label


def test_rollout_through_a_max_pool_is_last_times_link_times_first() -> None:
    model = toy()
    randomise_bias(model)
    x = images()
    maps = attention_maps(model, x)
    expected = mixed(maps.blocks[1].effective) @ s4_link(model, x) @ mixed(maps.blocks[0].effective)
    for rollout in (attention_rollout(model, x), attention_rollout(model, x, maps=maps)):
        np.testing.assert_allclose(rollout.matrix, expected, atol=1e-6)
        np.testing.assert_allclose(rollout.map, rollout.matrix.mean(1).reshape(2, 4, 4), atol=1e-7)
        np.testing.assert_allclose(rollout.query_map(2), rollout.matrix[:, 2].reshape(2, 4, 4))


def test_post_normalization_is_rolled_out_as_used_or_as_absolute_normalised_weights() -> None:
    model = toy(attention="post")
    randomise_bias(model, std=0.3)
    x = images()
    maps = attention_maps(model, x)
    link = s4_link(model, x)
    first, last = (b.effective for b in maps.blocks)
    as_is = attention_rollout(model, x, maps=maps)
    assert as_is.mode == "post"
    assert as_is.normalization == "post: effective weights as used, not renormalised"
    assert as_is.normalization in as_is.label
    expected = mixed(last, normalise=False) @ link @ mixed(first, normalise=False)
    np.testing.assert_allclose(as_is.matrix, expected, atol=1e-6)
    assert np.abs(as_is.matrix.sum(-1) - 1).max() > 1e-3
    absolute = attention_rollout(model, x, maps=maps, post_handling="abs_normalized")
    expected = mixed(np.abs(last)) @ link @ mixed(np.abs(first))
    np.testing.assert_allclose(absolute.matrix, expected, atol=1e-6)
    np.testing.assert_allclose(absolute.matrix.sum(-1), 1.0, atol=1e-5)
    assert absolute.normalization.startswith("post: absolute")


def test_relative_position_mlp_models_roll_out() -> None:
    model = rmlp()
    rollout = attention_rollout(model, torch.randn(1, 3, 64, 64), query=0)
    assert rollout.blocks == ("S3.0", "S3.1", "S4.0") and rollout.matrix.shape == (1, 4, 16)
    np.testing.assert_allclose(rollout.matrix.sum(-1), 1.0, atol=1e-5)


def test_bad_requests_are_refused_with_a_reason() -> None:
    model = toy()
    x = images()
    with pytest.raises(ValueError, match="outside"):
        attention_rollout(model, x, query=4)
    with pytest.raises(ValueError, match="post_handling"):
        attention_rollout(model, x, post_handling="clip")
    with pytest.raises(ValueError, match="head fusion"):
        attention_rollout(model, x, head_fusion="min")
    with pytest.raises(ValueError, match="every attention block"):
        attention_rollout(model, x, maps=attention_maps(model, x, blocks=["S4.0"]))
    with pytest.raises(ValueError, match="not these"):
        attention_rollout(model, x, maps=attention_maps(model, x[:1]))
    with pytest.raises(ValueError, match="no attention blocks"):
        attention_rollout(toy(layout="C-C-C-C"), x)


def test_the_model_is_left_as_found_also_after_an_error() -> None:
    model = toy().train()
    before = state(model)
    attention_rollout(model, images())
    assert state(model) == before
    with breaks_mid_way(model.stages[3].blocks[0].norm1):
        attention_rollout(model, images())
    assert state(model) == before


def test_two_threads_get_what_each_gets_alone() -> None:
    model = toy()
    randomise_bias(model)
    inputs = [images(2), torch.randn(3, 3, 16, 16)]
    alone = [attention_rollout(model, x).matrix for x in inputs]
    together = in_threads(*(lambda x=x: attention_rollout(model, x).matrix for x in inputs), repeat=5)
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)
