"""Pre vs post: the same image and query through two models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.maps.compare import compare, js_divergence
from tests.support.toys import attentions, images, set_kernel, state, toy


def twins(bias: float | None = None):
    """A pre model and a post model with the same weights (bias tables zero unless given)."""
    pre = toy(attention="pre")
    post = toy(attention="post")
    post.load_state_dict(pre.state_dict())
    for model in (pre, post):
        for attn in attentions(model):
            set_kernel(attn, {(0, 1): bias} if bias is not None else {}, rest=0.0)
    return pre, post


def test_js_divergence_known_values():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert np.allclose(js_divergence(p, q), [1.0, 0.0])


def test_pre_and_post_with_a_zero_bias_table_show_no_difference():
    pre, post = twins()
    result = compare(pre, post, images())
    assert result.labels == ("pre", "post") and result.agreement_rate == 1.0
    for block in result.blocks:
        assert np.allclose(block.js_mean, 0, atol=1e-6) and np.allclose(block.js_query, 0, atol=1e-6)
        assert np.allclose(block.distance_diff, 0, atol=1e-4)
        assert np.allclose(block.difference, 0, atol=1e-6)
        assert "clipped at 0" in block.note


def test_a_bias_that_only_pre_turns_into_attention_shows_up_per_head():
    pre, post = twins(bias=8.0)  # pre: softmax(content + 8 at the right neighbour) -> right neighbour
    result = compare(pre, post, images(), pixel=(0.0, 0.0))  # top-left query: has a right neighbour
    s3 = result.block("S3.0")
    assert s3.query == 0 and s3.grid == (4, 4)
    assert s3.map_a[:, 0, 1].min() > 0.99  # pre attends to the right neighbour
    # post adds the 8 after the softmax: renormalised, the neighbour holds ~8/9 of the mass, not all of it
    assert (s3.map_b[:, 0, 1] > 8).all()
    post_rows = np.clip(s3.map_b.reshape(4, -1), 0, None)
    post_rows /= post_rows.sum(-1, keepdims=True)
    expected = js_divergence(s3.map_a.reshape(4, -1).astype(np.float64), post_rows)
    # the maps are the first image's; js_query averages both images, which agree here within 1e-3
    assert np.allclose(s3.js_query, expected, atol=1e-3)
    assert (s3.js_query > 0.01).all() and (s3.js_mean > 0.01).all()
    assert s3.map_b.shape == s3.map_a.shape == (4, 4, 4) and np.allclose(s3.difference, s3.map_b - s3.map_a)


def test_models_with_no_shared_block_are_refused():
    with pytest.raises(ValueError, match="share no attention block"):
        compare(toy(), toy(strides=(1, 1, 1, 2, 2)), images())


def test_compare_leaves_both_models_as_found():
    pre, post = twins(bias=1.0)
    before = (state(pre), state(post))
    compare(pre, post, images())
    assert (state(pre), state(post)) == before
    with torch.no_grad():
        assert pre(images()).shape == (2, 10)


def test_maps_already_computed_give_the_same_comparison_and_others_are_refused():
    from analysis import attention_maps
    from tests.support.every_analysis import assert_same

    pre, post = toy(attention="pre"), toy(attention="post")
    x = images(2)
    fresh = compare(pre, post, x, pixel=(5.0, 9.0))
    reused = compare(pre, post, x, pixel=(5.0, 9.0), maps=(attention_maps(pre, x), attention_maps(post, x)))
    assert_same(reused, fresh)
    with pytest.raises(ValueError, match="maps were computed for 1 images"):
        compare(pre, post, x, maps=(attention_maps(pre, x[:1]), attention_maps(post, x[:1])))
