"""Attention maps: the parts of the weights, known answers on hand-set heads, query helpers, overlays, and
that the model is left as found (also after an error and with two threads)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.core.query import query_from_cell, query_index
from analysis.core.summaries import to_jsonable
from analysis.maps.attention import attention_maps, fuse_heads, query_map, upsample_to_image
from analysis.report import result_npz
from coatnet.model.recording import active_recorder
from tests.support.threads import in_threads
from tests.support.toys import (
    attentions,
    breaks_mid_way,
    images,
    rmlp,
    set_kernel,
    state,
    toy,
    zero_qk,
)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_blocks_hold_the_parts_of_the_weights(mode: str) -> None:
    """Every block, in forward order, with its grid and stride; content = softmax(q k^T / sqrt(d)); pre:
    effective = softmax(content logits + bias), bias_softmax = softmax(bias); post: effective =
    content + bias, no bias_softmax. The logits are the model's prediction."""
    model = toy(attention=mode)
    with torch.no_grad():
        for attn in attentions(model):
            attn.rel_pos.table.normal_(std=1.0)
    x = images()
    maps = attention_maps(model, x)
    assert maps.names == ("S3.0", "S4.0")
    assert maps.image_size == (16, 16)
    assert [(b.grid, b.stride, b.heads) for b in maps.blocks] == [((4, 4), 4, 4), ((2, 2), 8, 4)]
    with torch.no_grad():
        np.testing.assert_allclose(maps.logits, model(x).numpy(), atol=1e-5)
    for b in maps.blocks:
        n = b.tokens
        assert b.mode == mode and b.content.shape == b.effective.shape == (2, 4, n, n)
        assert b.bias.shape == (4, n, n)
        assert all(a.dtype == np.float32 for a in (b.content_logits, b.content, b.bias, b.effective))
        np.testing.assert_allclose(b.content, softmax(b.content_logits), atol=1e-6)
        if mode == "pre":
            np.testing.assert_allclose(b.effective, softmax(b.content_logits + b.bias), atol=1e-6)
            np.testing.assert_allclose(b.bias_softmax, softmax(b.bias), atol=1e-6)
            np.testing.assert_allclose(b.effective.sum(-1), 1.0, atol=1e-5)
        else:
            np.testing.assert_allclose(b.effective, b.content + b.bias, atol=1e-6)
            assert b.bias_softmax is None
            assert np.abs(b.effective.sum(-1) - 1.0).max() > 1e-3  # the bias moved the row sums


def test_a_bias_at_offset_0_plus_1_makes_queries_attend_to_their_right_neighbour() -> None:
    """q = k = 0 and a strong bias at (0, +1): content is uniform, and each query's effective and
    bias-softmax maps peak on the cell to its right."""
    model = toy()
    attn = attentions(model)[0]
    zero_qk(attn)
    set_kernel(attn, {(0, 1): 30.0})
    s3 = attention_maps(model, images(), blocks=["S3.0"]).block("S3.0")
    np.testing.assert_allclose(s3.content, 1 / 16, atol=1e-7)
    for row in range(4):
        for col in range(3):
            q = query_from_cell(row, col, s3.grid)
            expected = np.zeros((4, 4, 4), dtype=np.float32)
            expected[:, row, col + 1] = 1.0
            for part in ("effective", "bias_softmax"):
                np.testing.assert_allclose(query_map(s3, q, part=part, image=1), expected, atol=1e-6)
            assert (query_map(s3, q, part="bias")[:, row, col + 1] == 30.0).all()
    np.testing.assert_allclose(query_map(s3, 3)[:, 0, 3], 1 / 16, atol=1e-6)  # last column: uniform


def test_blocks_can_be_named_and_unknown_names_are_refused() -> None:
    model = toy()
    maps = attention_maps(model, images(1), blocks=["S4.0"])
    assert maps.names == ("S4.0",)
    with pytest.raises(KeyError, match=r"S3\.0"):
        maps.block("S3.0")
    with pytest.raises(ValueError, match=r"S3\.0, S4\.0"):
        attention_maps(model, images(1), blocks=["S2.0"])


def test_query_index_picks_the_cell_that_holds_the_pixel() -> None:
    """Grid cell (r, c) covers pixels [r * stride, (r + 1) * stride); pixels outside are clamped."""
    assert query_index((4, 4), 4, 0, 0) == 0
    assert query_index((4, 4), 4, 5, 9) == 1 * 4 + 2
    assert query_index((4, 4), 4, 15.9, 15.9) == 15
    assert query_index((4, 4), 4, -3, 100) == 3
    assert query_index((2, 3), 8, 9, 17) == 1 * 3 + 2
    assert query_from_cell(1, 2, (2, 3)) == 5
    with pytest.raises(ValueError, match="outside"):
        query_from_cell(2, 0, (2, 3))


def test_fuse_heads_over_the_third_axis_from_last() -> None:
    w = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    np.testing.assert_array_equal(fuse_heads(w), w.mean(1))
    np.testing.assert_array_equal(fuse_heads(w, "max"), w[:, 2])
    np.testing.assert_array_equal(fuse_heads(w[0], "max"), w[0, 2])
    with pytest.raises(ValueError, match="mean"):
        fuse_heads(w, "sum")


def test_query_map_refuses_what_a_block_does_not_have() -> None:
    post = attention_maps(toy(attention="post"), images(1)).block("S3.0")
    assert query_map(post, 0, part="content").shape == (4, 4, 4)
    with pytest.raises(ValueError, match="post"):
        query_map(post, 0, part="bias_softmax")
    with pytest.raises(ValueError, match="outside"):
        query_map(post, 16)
    with pytest.raises(ValueError, match="part"):
        query_map(post, 0, part="logits")


def test_upsample_to_image() -> None:
    """Nearest: each cell becomes its stride x stride block of pixels; bilinear keeps a constant map
    constant; leading axes (heads) are kept."""
    grid = np.arange(8, dtype=np.float32).reshape(2, 4)
    up = upsample_to_image(grid, (8, 16))
    assert up.shape == (8, 16) and up.dtype == np.float32
    np.testing.assert_array_equal(up, np.kron(grid, np.ones((4, 4), dtype=np.float32)))
    heads = np.stack([grid, grid * 2])
    np.testing.assert_array_equal(upsample_to_image(heads, (8, 16))[1], up * 2)
    smooth = upsample_to_image(np.full((3, 3), 0.25), (12, 12), mode="bilinear")
    np.testing.assert_allclose(smooth, 0.25, atol=1e-7)
    with pytest.raises(ValueError, match="bilinear"):
        upsample_to_image(grid, (8, 16), mode="bicubic")


def test_relative_position_mlp_models_and_pil_images() -> None:
    """The rmlp variant records like the table variant; PIL images go through the model's preprocessing."""
    model = rmlp()
    maps = attention_maps(model, [Image.new("RGB", (80, 70), (200, 30, 30))] * 2)
    assert maps.names == ("S3.0", "S3.1", "S4.0")
    assert maps.image_size == (64, 64) and maps.logits.shape == (2, 1000)
    for b in maps.blocks:
        np.testing.assert_allclose(b.effective.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(b.bias_softmax.sum(-1), 1.0, atol=1e-5)


def test_results_pickle_and_turn_into_json() -> None:
    maps = attention_maps(toy(), images(1))
    again = pickle.loads(pickle.dumps(maps))
    np.testing.assert_array_equal(again.block("S4.0").effective, maps.block("S4.0").effective)
    np.testing.assert_array_equal(again.block("S4.0").content, maps.block("S4.0").content)
    assert to_jsonable(maps)["blocks"][0]["name"] == "S3.0"


def test_the_softmaxes_are_computed_on_first_read_and_exported_in_their_place() -> None:
    """``content`` and ``bias_softmax`` are computed when first read (once: the same array after), and
    JSON and npz exports hold every part, in the order of the block's attributes."""
    block = attention_maps(toy(), images(1)).block("S3.0")
    assert "content" not in vars(block) and "bias_softmax" not in vars(block)
    assert block.content is block.content and block.bias_softmax is block.bias_softmax
    np.testing.assert_allclose(block.content, softmax(block.content_logits), atol=1e-6)
    fresh = attention_maps(toy(), images(1))
    assert list(to_jsonable(fresh.block("S3.0"))) == [
        "name", "stage", "block", "mode", "grid", "stride", "content_logits", "content", "bias",
        "bias_softmax", "effective", "partition", "window", "positions",
    ]  # fmt: skip
    saved = np.load(io.BytesIO(result_npz(fresh)))
    np.testing.assert_allclose(saved["blocks.0.content"], block.content, atol=1e-6)
    np.testing.assert_allclose(saved["blocks.0.bias_softmax"], softmax(block.bias), atol=1e-6)


def test_the_model_is_left_as_found_also_in_training_mode_and_after_an_error() -> None:
    model = toy().train()
    model.head.fc.weight.requires_grad_(False)
    before = state(model)
    attention_maps(model, images())
    assert state(model) == before
    with breaks_mid_way(model.stages[3].blocks[0].attn):
        attention_maps(model, images())
    assert state(model) == before
    assert active_recorder() is None


def test_two_threads_get_what_each_gets_alone() -> None:
    model = toy()
    inputs = [images(2), torch.randn(3, 3, 16, 16)]
    alone = [attention_maps(model, x) for x in inputs]
    together = in_threads(*(lambda x=x: attention_maps(model, x) for x in inputs), repeat=5)
    for a, b in zip(alone, together, strict=True):
        assert a.names == b.names
        for x, y in zip(a.blocks, b.blocks, strict=True):
            np.testing.assert_array_equal(x.effective, y.effective)
        np.testing.assert_array_equal(a.logits, b.logits)
