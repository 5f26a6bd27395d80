"""Attention statistics: known answers for a head that looks one cell right, a uniform head, a head of
content alone; pre vs post with no bias; post's clipping; and the model left as found."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from analysis.core.summaries import to_jsonable
from analysis.maps.attention import attention_maps
from analysis.maps.statistics import attention_statistics, entropy, grid_distances, mean_distance
from tests.support.threads import in_threads
from tests.support.toys import attentions, images, rmlp, set_kernel, state, toy, zero_qk


def uniform_distance(grid: tuple[int, int]) -> np.ndarray:
    """By hand: each query's mean distance (grid steps) to all cells of the grid, (N,)."""
    cells = [(r, c) for r in range(grid[0]) for c in range(grid[1])]
    return np.array([np.mean([np.hypot(r - r2, c - c2) for r2, c2 in cells]) for r, c in cells])


def test_grid_distances_entropy_and_mean_distance() -> None:
    d = grid_distances((2, 3))
    assert d[0, 5] == pytest.approx(np.hypot(1, 2)) and d[4, 1] == 1.0 and (np.diag(d) == 0).all()
    np.testing.assert_allclose(entropy(np.full((3, 8), 1 / 8)), np.log(8))
    np.testing.assert_array_equal(entropy(np.eye(4)), 0.0)
    np.testing.assert_allclose(mean_distance(np.eye(6)[[1, 2, 0, 3, 4, 5]], (2, 3), 4.0), [4, 4, 8, 0, 0, 0])


def test_a_head_biased_to_offset_0_plus_1_looks_one_stride_to_the_right() -> None:
    """q = k = 0 and a strong bias at (0, +1) in S3.0 (4x4 grid, stride 4 px): the kernel view peaks at
    (0, +1); every query with a right neighbour puts ~all its weight on it, at a distance of one stride
    (4 px) and entropy ~0. The last column has no right neighbour, so its rows are uniform (all biases
    there are 0): the block's means include those queries as they are. The position share is 1 where
    the bias varies (content is constant) and undefined on the last column, so it is 1."""
    model = toy()
    attn = attentions(model)[0]
    zero_qk(attn)
    set_kernel(attn, {(0, 1): 30.0})
    kernel = attn.rel_pos.kernel().detach()
    assert all(np.unravel_index(int(k.argmax()), k.shape) == (3, 4) for k in kernel)  # [H-1+0, W-1+1]
    maps = attention_maps(model, images(), blocks=["S3.0"])
    s3 = maps.block("S3.0")
    has_right = np.arange(16) % 4 != 3
    queries = np.flatnonzero(has_right)
    np.testing.assert_allclose(s3.effective[:, :, queries, queries + 1], 1.0, atol=1e-6)
    per_query = mean_distance(s3.effective, s3.grid, s3.stride)
    np.testing.assert_allclose(per_query[..., has_right], 4.0, atol=1e-5)
    stats = attention_statistics(model, images(), maps=maps).block("S3.0")
    last_column = uniform_distance((4, 4))[~has_right]
    np.testing.assert_allclose(stats.distance_px, (12 * 4.0 + 4.0 * last_column.sum()) / 16, rtol=1e-5)
    np.testing.assert_allclose(stats.entropy, 4 * np.log(16) / 16, atol=1e-5)
    np.testing.assert_allclose(stats.position_share, 1.0)
    assert stats.stride == 4 and stats.max_entropy == pytest.approx(np.log(16))


def test_a_uniform_head_has_entropy_log_n_and_the_grids_mean_pairwise_distance() -> None:
    """q = k = 0 and no bias: weights 1/N; entropy exactly log N; distance = the mean pairwise distance
    of the grid's cells times the stride; the position share is undefined (NaN): nothing varies."""
    model = toy()
    for attn in attentions(model):
        zero_qk(attn)
        set_kernel(attn, {})
    stats = attention_statistics(model, images())
    assert stats.names == ("S3.0", "S4.0")
    for name, grid, stride in (("S3.0", (4, 4), 4), ("S4.0", (2, 2), 8)):
        b = stats.block(name)
        n = grid[0] * grid[1]
        np.testing.assert_allclose(b.entropy, np.log(n), atol=1e-6)
        assert b.max_entropy == pytest.approx(np.log(n))
        np.testing.assert_allclose(b.distance_px, uniform_distance(grid).mean() * stride, rtol=1e-6)
        assert np.isnan(b.position_share).all()


def test_a_head_without_bias_has_position_share_0_and_one_without_content_1() -> None:
    model = toy()
    first, second = attentions(model)
    set_kernel(first, {})  # content alone
    zero_qk(second)
    with torch.no_grad():
        second.rel_pos.table.normal_()  # position alone
    stats = attention_statistics(model, images())
    np.testing.assert_array_equal(stats.block("S3.0").position_share, 0.0)
    np.testing.assert_array_equal(stats.block("S4.0").position_share, 1.0)


def test_pre_and_post_agree_without_a_bias() -> None:
    """With a zero bias table both modes compute softmax(q k^T / sqrt(d)): same content, same effective
    weights, same statistics; only the note differs."""
    pre = toy()
    for attn in attentions(pre):
        set_kernel(attn, {})
    post = toy(attention="post")
    post.load_state_dict(pre.state_dict())
    x = images()
    maps = {m.attention_mode: attention_maps(m, x) for m in (pre, post)}
    for a, b in zip(maps["pre"].blocks, maps["post"].blocks, strict=True):
        assert (a.mode, b.mode) == ("pre", "post")
        np.testing.assert_allclose(a.content, b.content, atol=1e-6)
        np.testing.assert_allclose(a.effective, b.effective, atol=1e-6)
    stats = {m.attention_mode: attention_statistics(m, x, maps=maps[m.attention_mode]) for m in (pre, post)}
    for a, b in zip(stats["pre"].blocks, stats["post"].blocks, strict=True):
        np.testing.assert_allclose(a.distance_px, b.distance_px, rtol=1e-5)
        np.testing.assert_allclose(a.entropy, b.entropy, rtol=1e-5)
        assert a.note.startswith("pre:") and b.note.startswith("post:")


def test_post_statistics_clip_negative_weights_and_renormalise() -> None:
    """Post, q = k = 0 (content 1/16) and bias +0.5 at (0, +1), -0.1 elsewhere: clipped at 0, each query
    with a right neighbour keeps only that key (distance 1 stride, entropy 0); last-column rows are
    negative everywhere, nothing is left, and they are left out of the means."""
    model = toy(attention="post")
    attn = attentions(model)[0]
    zero_qk(attn)
    set_kernel(attn, {(0, 1): 0.5}, rest=-0.1)
    maps = attention_maps(model, images(), blocks=["S3.0"])
    assert (maps.block("S3.0").effective < 0).any()
    stats = attention_statistics(model, images(), maps=maps).block("S3.0")
    np.testing.assert_allclose(stats.distance_px, 4.0, rtol=1e-6)
    np.testing.assert_allclose(stats.entropy, 0.0, atol=1e-6)
    assert "clipped at 0 and renormalised" in stats.note


def test_points_lay_out_one_per_head_for_a_scatter_and_results_serialise() -> None:
    model = rmlp()
    stats = attention_statistics(model, torch.randn(1, 3, 64, 64))
    heads = [b.heads for b in stats.blocks]
    assert stats.names == ("S3.0", "S3.1", "S4.0") and heads == [1, 2, 2]
    index, head, value = stats.points("distance_px")
    np.testing.assert_array_equal(index, [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(head, [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(value, np.concatenate([b.distance_px for b in stats.blocks]))
    share = stats.points("position_share")[2]
    assert ((share >= 0) & (share <= 1)).all()
    with pytest.raises(ValueError, match="metric"):
        stats.points("distance")
    assert pickle.loads(pickle.dumps(stats)).block("S4.0").heads == 2
    assert to_jsonable(stats)["blocks"][2]["name"] == "S4.0"


def test_the_model_is_left_as_found_and_threads_do_not_mix() -> None:
    model = toy().train()
    before = state(model)
    attention_statistics(model, images())
    assert state(model) == before
    model.eval()
    inputs = [images(2), torch.randn(3, 3, 16, 16)]
    alone = [attention_statistics(model, x) for x in inputs]
    together = in_threads(*(lambda x=x: attention_statistics(model, x) for x in inputs), repeat=5)
    for a, b in zip(alone, together, strict=True):
        for x, y in zip(a.blocks, b.blocks, strict=True):
            np.testing.assert_array_equal(x.distance_px, y.distance_px)
            np.testing.assert_array_equal(x.position_share, y.position_share)
