"""Relative-bias and depthwise kernels: orientation (key - query), read-back of set weights, MLP tables."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import coatnet
from analysis.core.summaries import to_jsonable
from analysis.maps.kernels import relative_bias_kernels
from coatnet.model.blocks import MBConvBlock
from tests.support.threads import in_threads
from tests.support.toys import toy_model


@pytest.fixture
def toy(shared_toy) -> coatnet.CoAtNet:
    """coatnet_toy at 64x64: MBConv in S1, S2 (16x16, 8x8); attention S3.0 (4x4 grid, 4 heads), S4.0 (2x2)."""
    return shared_toy(img_size=64)


@pytest.fixture
def own_toy() -> coatnet.CoAtNet:
    """The same toy, the test's own: for a test that sets its weights."""
    return toy_model(img_size=64)


def test_shapes_names_and_strides_follow_the_model(toy: coatnet.CoAtNet) -> None:
    kernels = relative_bias_kernels(toy)
    assert [(k.name, k.stage, k.block, k.grid, k.stride, k.mode) for k in kernels.bias] == [
        ("S3.0", 3, 0, (4, 4), 16, "pre"),
        ("S4.0", 4, 0, (2, 2), 32, "pre"),
    ]
    assert [k.kernels.shape for k in kernels.bias] == [(4, 7, 7), (4, 3, 3)]
    assert [(k.name, k.kernels.shape, k.stride) for k in kernels.depthwise] == [
        ("S1.0", (64, 3, 3), 4),
        ("S2.0", (64, 3, 3), 8),
    ]
    for k in kernels.bias:
        assert k.kernels.dtype == np.float32 and k.mean_abs.shape == (4,) and k.centre_of_mass.shape == (4, 2)
    assert pickle.loads(pickle.dumps(kernels)).bias[0].name == "S3.0"
    assert to_jsonable(kernels)["bias"][0]["grid"] == [4, 4]


def test_a_bias_peaking_right_of_the_query_peaks_at_offset_zero_plus_one(own_toy: coatnet.CoAtNet) -> None:
    """A table whose kernel view peaks at (dy, dx) = (0, +1) comes back peaking at [H-1, W], and that
    entry is the bias every query gives its right neighbour: ``get_bias()[h, i, i + 1]``."""
    toy = own_toy
    rel_pos = toy.stages[2].blocks[0].attn.rel_pos
    height, width = rel_pos.grid
    original = rel_pos.table.detach().clone()
    try:
        with torch.no_grad():
            rel_pos.table.zero_()
            # the table is indexed query - key: offset key - query = (0, +1) sits at (H-1, W-2)
            rel_pos.table[:, height - 1, width - 2] = torch.tensor([5.0, 6.0, 7.0, 8.0])
        kernel = relative_bias_kernels(toy).bias[0]
        bias = rel_pos.get_bias()
    finally:
        with torch.no_grad():
            rel_pos.table.copy_(original)
    for h, peak in enumerate([5.0, 6.0, 7.0, 8.0]):
        assert np.unravel_index(kernel.kernels[h].argmax(), kernel.kernels[h].shape) == (height - 1, width)
        assert kernel.kernels[h, height - 1, width] == peak
        right_neighbours = [i for i in range(height * width) if i % width < width - 1]
        assert torch.all(bias[h, right_neighbours, [i + 1 for i in right_neighbours]] == peak)
        # the softmax centre of mass leans right (dx > 0), not up or down
        assert kernel.centre_of_mass[h, 0] == pytest.approx(0.0, abs=1e-6)
        assert kernel.centre_of_mass[h, 1] > 0.5
    assert kernel.mean_abs == pytest.approx(np.array([5.0, 6.0, 7.0, 8.0]) / 49)


def test_depthwise_weights_read_back_in_conv_orientation(own_toy: coatnet.CoAtNet) -> None:
    """A depthwise weight set to a known pattern comes back as (C, k, k); weight[c, i, j] multiplies the
    input at offset (i - 1, j - 1), so a one-hot at [c, 1, 2] looks one pixel right: centre of mass (0, 1)."""
    toy = own_toy
    conv = toy.stages[0].blocks[0].conv2_kxk
    original = conv.weight.detach().clone()
    pattern = torch.arange(64 * 9, dtype=torch.float32).view(64, 1, 3, 3)
    try:
        with torch.no_grad():
            conv.weight.copy_(pattern)
            conv.weight[0].zero_()
            conv.weight[0, 0, 1, 2] = -3.0
        kernel = relative_bias_kernels(toy).depthwise[0]
    finally:
        with torch.no_grad():
            conv.weight.copy_(original)
    assert kernel.kernels[1:].tolist() == pattern[1:, 0].tolist()
    assert kernel.centre_of_mass[0].tolist() == [0.0, 1.0]
    assert kernel.mean_abs[0] == pytest.approx(3.0 / 9)
    # the orientation is PyTorch's: the read-back kernel, applied as a conv, takes -3 x the right neighbour
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 3] = 1.0
    out = torch.nn.functional.conv2d(x, torch.from_numpy(kernel.kernels[0])[None, None], padding=1)
    assert out[0, 0, 2, 2] == -3.0 and out.abs().sum() == 3.0


def test_relative_position_mlp_kernels_match_the_module_and_ignore_dropout() -> None:
    """rel_pos="mlp" (coatnet_rmlp_nano_rw_224 at 64x64): kernels equal RelativePosition.kernel(); a model
    in training mode gives the same (dropout-free) kernels twice, and stays in training mode."""
    model = toy_model("coatnet_rmlp_nano_rw_224", img_size=64)  # its own: the test sets its mode
    kernels = relative_bias_kernels(model)
    expected = [ref.kernels for ref in kernels.bias]
    # its first MBConv block strides in the depthwise conv (mbconv_stride="dw"): that kernel steps over the
    # stem's 2-pixel grid, the others over the block's 4-pixel output grid
    assert [k.stride for k in kernels.depthwise[:2]] == [2, 4]
    attn = [m.attn for stage in model.stages for m in stage.blocks if not isinstance(m, MBConvBlock)]
    with torch.no_grad():
        for kernel, block in zip(expected, attn, strict=True):
            np.testing.assert_allclose(kernel, block.rel_pos.kernel().numpy(), rtol=1e-6, atol=1e-7)
    model.train()
    first, second = relative_bias_kernels(model), relative_bias_kernels(model)
    for a, b, e in zip(first.bias, second.bias, expected, strict=True):
        np.testing.assert_allclose(a.kernels, e, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(a.kernels, b.kernels)
    assert all(m.training for m in model.modules())


def test_img_size_resizes_the_tables_as_the_model_does(toy: coatnet.CoAtNet) -> None:
    kernels = relative_bias_kernels(toy, img_size=128)
    assert [k.grid for k in kernels.bias] == [(8, 8), (4, 4)]
    rel_pos = toy.stages[2].blocks[0].attn.rel_pos
    with torch.no_grad():
        np.testing.assert_array_equal(kernels.bias[0].kernels, rel_pos.kernel((8, 8)).numpy())


def test_no_gradients_hooks_or_mode_changes(toy: coatnet.CoAtNet) -> None:
    """Reading kernels creates no autograd graph and no .grad, and leaves mode and hooks alone."""
    flags = [p.requires_grad for p in toy.parameters()]
    kernels = relative_bias_kernels(toy)
    assert all(p.grad is None for p in toy.parameters())
    assert [p.requires_grad for p in toy.parameters()] == flags
    assert not any(m.training for m in toy.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in toy.modules())
    assert isinstance(kernels.bias[0].kernels, np.ndarray)


def test_post_normalization_and_two_threads_agree(toy: coatnet.CoAtNet, shared_toy) -> None:
    post = shared_toy(attention="post", img_size=64)
    assert {k.mode for k in relative_bias_kernels(post).bias} == {"post"}
    alone = relative_bias_kernels(toy)
    results = in_threads(lambda: relative_bias_kernels(toy), lambda: relative_bias_kernels(toy))
    for result in results:
        for a, b in zip(result.bias, alone.bias, strict=True):
            np.testing.assert_array_equal(a.kernels, b.kernels)
