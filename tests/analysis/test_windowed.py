"""Windowed attention (MaxViT's block and grid attention) in the analysis layer, with known answers on a
constructed model: a query's map is its window's or its dilated grid group's row, NaN elsewhere; the
partitions are block-sparse operators on the stage's grid, and rollout composes them exactly; distances
and kernels count the grid group's dilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import coatnet
from analysis.core.geometry import AveragedStep, WindowedStep, as_matrix, times, windowed_step
from analysis.explain.relevance import class_relevance
from analysis.maps.attention import attention_maps, query_map
from analysis.maps.kernels import relative_bias_kernels
from analysis.maps.rollout import attention_rollout
from analysis.maps.statistics import attention_statistics, grid_distances
from coatnet.model.blocks import PartitionBlock
from coatnet.model.windows import window_positions
from tests.support.model_state import assert_as_found, snapshot


def uniform_maxvit() -> coatnet.CoAtNet:
    """maxvit_pico (14x14 S1-S2 with 7x7 windows and grid groups dilated by 2, 7x7 S3-S4) whose every
    attention gives each key of its window the same weight: no content, no bias."""
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, PartitionBlock):
                module.attn.qkv.weight.zero_()
                module.attn.qkv.bias.zero_()
                module.attn.rel_pos.table.zero_()
    return model


@pytest.fixture(scope="module")
def model() -> coatnet.CoAtNet:
    return uniform_maxvit()


def same_window(size: int, window: int) -> np.ndarray:
    """(N, N) bool: both positions of a size x size grid in one window x window block window."""
    r, c = np.divmod(np.arange(size * size), size)
    key = (r // window) * size + c // window
    return key[:, None] == key[None, :]


def same_group(size: int, window: int) -> np.ndarray:
    """(N, N) bool: both positions in one dilated grid group (a window x window grid dilated by
    size / window)."""
    step = size // window
    r, c = np.divmod(np.arange(size * size), size)
    key = (r % step) * step + c % step
    return key[:, None] == key[None, :]


def test_a_query_map_is_its_window_or_grid_group_and_nan_where_it_does_not_attend(model):
    maps = attention_maps(model, torch.randn(2, 1, 28, 28))
    assert maps.names[:4] == ("S1.0.block", "S1.0.grid", "S2.0.block", "S2.0.grid")
    query = 3 * 14 + 9  # row 3, column 9
    for name, mask in (("S1.0.block", same_window(14, 7)), ("S1.0.grid", same_group(14, 7))):
        block = maps.block(name)
        assert block.grid == (14, 14) and block.window == (7, 7) and block.windows == 4
        heads = query_map(block, query, image=1)
        assert heads.shape == (2, 14, 14)
        seen = mask[query].reshape(14, 14)
        np.testing.assert_array_equal(block.seen(query), seen)
        assert np.isnan(heads[:, ~seen]).all() and not np.isnan(heads[:, seen]).any()
        np.testing.assert_allclose(heads[:, seen], 1 / 49, rtol=1e-5)  # uniform over the 49 it sees
        dense = block.dense(block.effective)  # (B, heads, N, N), 0 outside the windows
        np.testing.assert_array_equal(dense[1, :, query].reshape(2, 14, 14), np.nan_to_num(heads))
        np.testing.assert_array_equal(dense[0, 0] != 0, mask)
    global_block = maps.block("S3.0.grid")  # 7x7 with 7x7 groups: one group, the whole grid
    assert global_block.windows == 1 and not np.isnan(query_map(global_block, 10)).any()


def test_a_bias_towards_the_right_neighbour_points_two_cells_right_in_grid_attention():
    model = uniform_maxvit()
    attn = model.stages[0].blocks[0].attn_grid.attn
    with torch.no_grad():  # the table is indexed query - key: key - query = (0, +1) is [6, 5]
        attn.rel_pos.table[:, 6, 5] = 30.0
    block = attention_maps(model, torch.randn(1, 1, 28, 28), blocks=["S1.0.grid"]).block("S1.0.grid")
    for row, col in ((0, 0), (5, 3), (12, 11)):
        heads = np.nan_to_num(query_map(block, row * 14 + col), nan=-1)
        assert all(np.unravel_index(h.argmax(), h.shape) == (row, col + 2) for h in heads)  # dilation 2
    kernels = relative_bias_kernels(model)
    grid_kernel = next(k for k in kernels.bias if k.name == "S1.0.grid")
    assert grid_kernel.kernels.shape == (2, 13, 13) and grid_kernel.dilation == (2, 2)
    assert grid_kernel.kernels[0, 6, 7] == 30.0  # offset (0, +1) of the kernel: two stage cells right
    from analysis.figures.kernels import kernel_summary

    peaks, distances = kernel_summary(grid_kernel)
    assert peaks[0] == (0, 1) and distances[0] == pytest.approx(4.0, rel=1e-3)  # 1 step = 2 cells of 2 px
    assert next(k for k in kernels.bias if k.name == "S1.0.block").dilation == (1, 1)
    assert [k.name for k in kernels.depthwise] == [
        "S1.0.conv",
        "S2.0.conv",
        "S3.0.conv",
        "S3.1.conv",
        "S4.0.conv",
    ]


def test_rollout_composes_block_and_grid_partitions_exactly(model):
    x = torch.randn(1, 1, 28, 28)
    before = snapshot(model)
    found = attention_rollout(model, x)
    assert_as_found(before, model)
    assert found.blocks[0] == "S1.0.block" and found.matrix.shape == (1, 49, 196)

    def mixed(mask: np.ndarray) -> np.ndarray:  # 0.5 A + 0.5 I for uniform A over the mask's rows
        return 0.5 * mask / mask.sum(1, keepdims=True) + 0.5 * np.eye(len(mask))

    block14, grid14 = mixed(same_window(14, 7)), mixed(same_group(14, 7))
    whole7 = mixed(np.ones((49, 49), dtype=bool))
    r, c = np.divmod(np.arange(196), 14)
    link = ((r // 2) * 7 + c // 2)[None, :] == np.arange(49)[:, None]  # the MBConv shortcut's 2x2 mean
    expected = grid14 @ block14 @ grid14 @ block14  # S1.0, S2.0: block attention, then grid attention
    expected = np.linalg.matrix_power(whole7, 6) @ (link / 4.0) @ expected  # S3.0, S3.1, S4.0: one window
    np.testing.assert_allclose(found.matrix[0], expected, atol=1e-6)
    assert (grid14 @ block14 > 0).all()  # block then grid attention: every query reaches the whole stage


@pytest.mark.parametrize("kind", ["block", "grid"])
@pytest.mark.parametrize(
    "weight, identity, normalise", [(0.5, 0.5, True), (1.0, 1.0, False), (1.0, 0.0, True)]
)
def test_a_windowed_step_applied_window_by_window_equals_its_block_sparse_matrix(
    kind, weight, identity, normalise
):
    rng = np.random.default_rng(0)
    positions = window_positions((14, 14), (7, 7), kind).numpy()
    values = rng.random((2 * 4, 49, 49))  # two images of four windows
    step = WindowedStep(values, positions, 196, weight, identity, normalise)
    mask = same_window(14, 7) if kind == "block" else same_group(14, 7)
    expected = np.zeros((2, 196, 196))
    for image in range(2):
        for w, places in enumerate(positions):
            expected[image][np.ix_(places, places)] = values[image * 4 + w]
    assert ((expected != 0) <= mask).all()  # entries only where query and key share a window
    expected = weight * expected + identity * np.eye(196)
    if normalise:
        expected = expected / expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(step.dense(), expected, rtol=1e-12)
    matrix = rng.random((2, 5, 196))
    np.testing.assert_allclose(step.after(matrix), matrix @ expected, rtol=1e-10)
    # a parallel block's two attentions: their mean, applied one by one
    other = WindowedStep(values[::-1].copy(), positions, 196, weight, identity, normalise)
    both = AveragedStep((step, other))
    np.testing.assert_allclose(times(matrix, both), matrix @ (expected + other.dense()) / 2, rtol=1e-10)
    np.testing.assert_allclose(as_matrix(both), (expected + other.dense()) / 2, rtol=1e-12)


def test_global_attention_is_one_window_and_its_step_a_plain_matrix():
    positions = window_positions((7, 7), (7, 7), "block").numpy()
    assert positions.shape == (1, 49) and (positions[0] == np.arange(49)).all()
    values = np.random.default_rng(0).random((2, 49, 49))
    step = windowed_step(values, positions, 49, weight=0.5, identity=0.5, normalise=True)
    expected = 0.5 * values + 0.5 * np.eye(49)
    assert isinstance(step, np.ndarray)
    np.testing.assert_array_equal(step, expected / expected.sum(-1, keepdims=True))


def test_statistics_measure_distances_on_the_stage_grid_within_each_window(model):
    stats = attention_statistics(model, torch.randn(1, 1, 28, 28))
    within = grid_distances((7, 7)).mean()  # uniform weights over a 7x7 window, in window steps
    block, grid = stats.block("S1.0.block"), stats.block("S1.0.grid")
    np.testing.assert_allclose(block.distance_px, within * 2, rtol=1e-5)  # stride 2 pixels
    np.testing.assert_allclose(grid.distance_px, within * 2 * 2, rtol=1e-5)  # the group is dilated by 2
    np.testing.assert_allclose(grid.entropy, np.log(49), rtol=1e-5)
    assert block.max_entropy == pytest.approx(np.log(49)) and "7x7 window" in block.note


@pytest.mark.parametrize("method", ["relevance", "grad_rollout"])
def test_class_relevance_runs_through_the_partitions_and_leaves_the_model_as_found(method):
    torch.manual_seed(1)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    before = snapshot(model)
    found = class_relevance(model, x, method=method)
    assert_as_found(before, model)
    assert found.matrix.shape == (2, 49, 196) and found.map.shape == (2, 14, 14)
    assert np.isfinite(found.matrix).all() and found.blocks[-1] == "S4.0.grid"


@pytest.mark.needs("chromium")  # the PNG is drawn by kaleido's Chromium
def test_the_figures_draw_not_attended_grey_and_outline_the_window_as_the_browser_draws_them(model):
    import io

    from PIL import Image

    from analysis.figures import attention_heads_figure, fused_attention_figure
    from analysis.figures.style import UNSEEN_COLOUR, WINDOW_COLOUR

    maps = attention_maps(model, torch.randn(1, 1, 28, 28))
    picture = np.zeros((28, 28), dtype=np.uint8)
    query = 3 * 14 + 9
    block = maps.block("S1.0.block")
    figure = fused_attention_figure(block, picture, query)
    title = figure.layout.title.text.replace("<br>", " ")
    assert "grey: not attended" in title and "7x7 window" in title
    grey = next(t for t in figure.data if t.name == "not attended")
    np.testing.assert_array_equal(~np.isnan(np.asarray(grey.z, dtype=float)), ~block.seen(query))
    assert "not attended" in grey.hovertemplate
    assert any(t.name == "attended window" and t.line.color == WINDOW_COLOUR for t in figure.data)
    heads = attention_heads_figure(maps.block("S1.0.grid"), picture, query)
    assert sum(t.name == "not attended" for t in heads.data) == 2  # one per head
    drawn = np.asarray(Image.open(io.BytesIO(figure.to_image(format="png", width=500, height=500))))[..., :3]
    grey_rgb = tuple(int(v) for v in UNSEEN_COLOUR[4:-1].split(","))

    def near(rgb) -> np.ndarray:  # Chromium's colour management moves a channel by a unit or two
        return (np.abs(drawn.astype(int) - np.array(rgb)) <= 3).all(-1)

    assert 0.25 < near(grey_rgb).mean() < 0.75  # three of the four windows, in a panel of half the picture
    assert near((255, 140, 0)).sum() > 100  # the window's orange outline
    global_maps = attention_maps(coatnet.load_checkpoint("demo-pre"), torch.zeros(1, 1, 28, 28))
    plain = fused_attention_figure(global_maps.block("S3.0"), picture, 3)
    assert not any(t.name == "not attended" for t in plain.data)  # global attention: nothing greyed


def test_a_study_plans_each_partition_and_measures_its_heads_as_the_statistics_do():
    from analysis.studies.study import HEAD_METRICS, measure_batch, study_plan
    from coatnet import for_inference
    from tests.support.toys import maxvit_toy

    model = maxvit_toy()
    plan = study_plan(model, (16, 16))
    labels = [i.label for i in plan.interventions]
    assert labels[:3] == ["zero_branch S1.0", "no_se S1.0", "knockout S1.0.block h0"]
    assert "knockout S1.0.grid h1" in labels and plan.positions[labels.index("uniform S4.0.grid")] == 3
    x = torch.randn(2, 3, 16, 16)
    found = measure_batch(model, for_inference(model), x, torch.arange(2), plan, max_rows=8)
    stats = attention_statistics(model, x[1:])
    distance = HEAD_METRICS.index("distance_effective")
    heads = np.concatenate([b.distance_px for b in stats.blocks])
    np.testing.assert_allclose(found["heads"][1, :, distance], heads, rtol=1e-5)


def test_a_maxxvit_v2_of_convnext_blocks_and_grid_attention_alone_is_analysed_the_same_way():
    import analysis
    from analysis.studies.study import study_plan

    torch.manual_seed(0)
    model = coatnet.create_model(
        "maxvit_pico", in_chans=1, conv_block="convnext", kernel_size=7, conv_layer_scale=1e-6,
        stem_norm="layer", block_attention=False,
    ).eval()  # fmt: skip
    x = torch.randn(1, 1, 28, 28)
    maps = attention_maps(model, x)
    assert maps.names == ("S1.0.grid", "S2.0.grid", "S3.0.grid", "S3.1.grid", "S4.0.grid")
    rollout = attention_rollout(model, x, maps=maps)
    assert rollout.matrix.shape == (1, 49, 196) and np.allclose(rollout.matrix.sum(-1), 1, atol=1e-5)
    kernels = relative_bias_kernels(model)
    assert kernels.depthwise[0].name == "S1.0.conv" and kernels.depthwise[0].kernels.shape[-2:] == (7, 7)
    fields = analysis.receptive_fields(model, x, stages=[1])
    assert fields.stages[0].is_global  # grid attention spreads over the whole stage
    plan = study_plan(model, (28, 28))
    assert [i.label for i in plan.interventions][:2] == ["zero_branch S1.0", "knockout S1.0.grid h0"]
    assert coatnet.intervention_targets(model)["S1.0"][0][-1] == "zero_branch"  # no SE to bypass
    with (
        pytest.raises(ValueError, match="grid attention alone"),
        coatnet.intervene(coatnet.Intervention("S1.0.block", "knockout"), model=model),
    ):
        pass


def test_a_parallel_block_s_two_attentions_are_one_averaged_step_of_rollout():
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1, parallel_partitions=True).eval()
    with torch.no_grad():  # uniform attention in both partitions of every block
        for module in model.modules():
            if isinstance(module, coatnet.model.attention.RelativeAttention):
                module.qkv.weight.zero_()
                module.qkv.bias.zero_()
                module.rel_pos.table.zero_()
    x = torch.randn(1, 1, 28, 28)
    maps = attention_maps(model, x)
    assert maps.names[:2] == ("S1.0.block", "S1.0.grid")
    found = attention_rollout(model, x, maps=maps)

    def mixed(mask: np.ndarray) -> np.ndarray:
        return 0.5 * mask / mask.sum(1, keepdims=True) + 0.5 * np.eye(len(mask))

    side_by_side = 0.5 * (mixed(same_window(14, 7)) + mixed(same_group(14, 7)))  # one step, not two
    whole7 = mixed(np.ones((49, 49), dtype=bool))
    r, c = np.divmod(np.arange(196), 14)
    link = ((r // 2) * 7 + c // 2)[None, :] == np.arange(49)[:, None]
    expected = np.linalg.matrix_power(whole7, 3) @ (link / 4.0) @ side_by_side @ side_by_side
    np.testing.assert_allclose(found.matrix[0], expected, atol=1e-6)
    cache = coatnet.trace(model, x, names=["S1.0.block.attn.weights", "S1.0.parallel.attn.branch"])
    assert cache["S1.0.block.attn.weights"].shape == (4, 2, 49, 49)  # 4 windows, 32 channels / 16: 2 heads
    assert cache["S1.0.parallel.attn.branch"].shape == (1, 32, 14, 14)
    import analysis
    from analysis.studies.study import study_plan

    kernels = relative_bias_kernels(model)
    assert [k.name for k in kernels.bias[:2]] == ["S1.0.block", "S1.0.grid"]
    assert [k.name for k in kernels.depthwise[:2]] == ["S1.0.conv0", "S1.0.conv1"]  # its two MBConvs
    assert analysis.receptive_fields(model, x, stages=[1]).stages[0].is_global
    plan = study_plan(model, (28, 28))  # its convs take no intervention of their own: its attentions do
    assert [i.label for i in plan.interventions][:2] == ["knockout S1.0.block h0", "knockout S1.0.block h1"]
    assert analysis.head_importance(model, x, max_rows=8).drop["S1.0.grid"].shape == (2,)
    targets = coatnet.intervention_targets(model)
    assert targets["S1.0"][1] == 0 and targets["S1.0.grid"][1] == 2  # heads are picked per attention


def test_a_convnext_model_s_widths_must_divide_and_its_explanations_pass_the_sanity_checks():
    import analysis

    with pytest.raises(ValueError, match="widens 32 channels to 16"):
        coatnet.create_model("maxvit_pico", in_chans=1, dims=(16, 16, 32, 32), conv_block="convnext")
    torch.manual_seed(0)
    model = coatnet.create_model(
        "maxvit_pico", img_size=16, in_chans=1, window_size=2, grid_size=2, dims=(32, 32, 64, 64),
        depths=(1, 1, 1, 1), head_dim=8, conv_block="convnext", kernel_size=7, conv_layer_scale=1e-6,
        stem_norm="layer", block_attention=False,
    ).eval()  # fmt: skip
    x = torch.randn(1, 1, 16, 16)
    rows = [("random", None), ("gradcam", "S4"), ("relevance", None)]
    report = analysis.sanity_checks(model, x, rows=rows, tests=("cascading",))
    assert report.parts == ("head", "S4.0", "S3.0", "S2.0", "S1.0", "S0") and len(report.results) == 18
    assert all(np.isfinite(r.spearman) for r in report.results)
