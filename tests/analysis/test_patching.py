"""Activation patching (analysis.causal.patching): issue 26's known answers, batching, both directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import analysis
from analysis import figures
from analysis.causal.patching import COMPONENTS, Corruption, _Row, _run_rows, _Setting
from coatnet import trace
from tests.support.toys import images, toy

HEAD = 5  # the one head of S4.0 that reaches the logits in only_one_head()


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    x = images(2)
    return x[0], x[1]


@pytest.fixture(scope="module", params=["pre", "post"])
def model(request):
    return toy(attention=request.param)


def only_one_head() -> torch.nn.Module:
    """A toy whose S4.0 (8 heads) reaches the logits through head ``HEAD`` alone: its shortcut's projection
    and MLP branch are zero, and the output projection reads that head's channels only."""
    model = toy(dims=(16, 16, 32, 64))
    block = model.stages[3].blocks[0]
    d = block.attn.head_dim
    with torch.no_grad():
        block.shortcut.expand.weight.zero_()
        block.shortcut.expand.bias.zero_()
        block.mlp.fc2.weight.zero_()
        block.mlp.fc2.bias.zero_()
        keep = 50 * block.attn.proj.weight[:, HEAD * d : (HEAD + 1) * d]  # large enough to move the logits
        block.attn.proj.weight.zero_()
        block.attn.proj.weight[:, HEAD * d : (HEAD + 1) * d] = keep
    return model


def test_a_whole_block_output_carries_the_run(model):
    clean, corrupted = pair()
    denoised = analysis.activation_patching(model, clean, corrupted)
    noised = analysis.activation_patching(model, clean, corrupted, direction="noising")
    assert denoised.defined and denoised.target != denoised.foil
    output = COMPONENTS.index("output")
    # the residual stream passes every block: its whole output is the whole run from there on
    np.testing.assert_allclose(denoised.recovery[:, output], 1, atol=1e-5)
    np.testing.assert_allclose(noised.recovery[:, output], 0, atol=1e-5)
    assert denoised.value(denoised.blocks[-1], "output") == pytest.approx(1, abs=1e-6)


def test_the_relative_bias_recovers_exactly_zero(model):
    clean, corrupted = pair()
    for direction in ("denoising", "noising"):
        result = analysis.activation_patching(model, clean, corrupted, direction=direction)
        expected = 0.0 if direction == "denoising" else 1.0
        for block in ("S3.0", "S4.0"):
            assert result.value(block, "attn.bias") == expected, (direction, block)


def test_the_only_path_to_the_logits_recovers_one_and_every_other_head_zero():
    model = only_one_head()
    clean, corrupted = pair()
    result = analysis.activation_patching(model, clean, corrupted, metric="logit", target=0)
    assert result.defined
    heads = result.heads["S4.0"]
    assert heads.shape == (8,)
    np.testing.assert_allclose(heads[HEAD], 1, atol=1e-5)
    np.testing.assert_allclose(np.delete(heads, HEAD), 0, atol=1e-6)
    assert result.value("S4.0", "attn.branch") == pytest.approx(1, abs=1e-5)
    assert result.value("S4.0", "mlp.branch") == pytest.approx(0, abs=1e-6)


def test_patching_an_activation_with_itself_changes_nothing():
    model = toy().eval()
    clean, _ = pair()
    batch = clean[None]
    names = [f"{b}.{leaf}" for b in ("S1.0", "S2.0", "S3.0", "S4.0") for leaf in ("input", "output")]
    cache = trace(model, batch, names=[*names, "*.attn.*", "*.branch", "logits"])
    rows = [_Row(p, f"{b}.output") for p, b in enumerate(("S1.0", "S2.0", "S3.0", "S4.0"))]
    rows += [_Row(2, "S3.0.attn.weights"), _Row(3, "S4.0.attn.heads", head=1), _Row(2, "S3.0.attn.bias"),
             _Row(0, "S1.0.branch", ), _Row(3, "S4.0.output", cells=(0, 0, 1, 1))]  # fmt: skip
    setting = _Setting(batch, batch, "", "denoising", "logit", None, None, 1e-3, 4, 0)
    with torch.inference_mode():
        logits = _run_rows(model, rows, cache, cache, batch, {}, setting, training=False)
    torch.testing.assert_close(logits, cache["logits"].expand_as(logits), rtol=0, atol=1e-5)


def test_batched_rows_match_one_row_per_pass(model):
    clean, corrupted = pair()
    batched = analysis.activation_patching(model, clean, corrupted)
    alone = analysis.activation_patching(model, clean, corrupted, batch_size=1)
    np.testing.assert_allclose(batched.recovery, alone.recovery, atol=1e-5)
    for block in batched.heads:
        np.testing.assert_allclose(batched.heads[block], alone.heads[block], atol=1e-5)


def test_the_inference_build_patches_as_the_model_does(model):
    clean, corrupted = pair()
    fast = analysis.activation_patching(model, clean, corrupted, metric="prob")
    with analysis.plain_model():
        plain = analysis.activation_patching(model, clean, corrupted, metric="prob")
    np.testing.assert_allclose(fast.recovery, plain.recovery, atol=1e-4)


def test_the_table_has_each_blocks_own_components():
    result = analysis.activation_patching(toy(), *pair())
    assert result.blocks == ("S0", "S1.0", "S2.0", "S3.0", "S4.0")
    assert result.kinds == ("stem", "C", "C", "T", "T")
    present = ~np.isnan(result.recovery)
    assert present[0].tolist() == [c == "output" for c in COMPONENTS]
    assert present[1].tolist() == [c in ("output", "branch") for c in COMPONENTS]
    assert present[3].tolist() == [c != "branch" for c in COMPONENTS]
    assert set(result.heads) == {"S3.0", "S4.0"} and result.heads["S3.0"].shape == (4,)
    with pytest.raises(KeyError, match="no component"):
        result.value("S3.0", "attn.q")
    assert analysis.activation_patching(toy(), *pair(), heads=False).heads == {}


def test_the_same_prediction_leaves_the_recovery_undefined():
    model = toy()
    clean, _ = pair()
    result = analysis.activation_patching(model, clean, clean.clone())
    assert not result.defined and result.target == result.foil
    assert np.isnan(result.recovery).all() and all(np.isnan(h).all() for h in result.heads.values())
    assert result.value("S4.0", "output") is None
    positions = analysis.position_patching(model, clean, clean.clone())
    assert not positions.defined and np.isnan(positions.recovery).all()


def test_metrics_and_classes():
    model = toy()
    clean, corrupted = pair()
    result = analysis.activation_patching(model, clean, corrupted, metric="logit", target=3)
    assert result.target == 3 and result.foil is None
    assert result.clean_metric == pytest.approx(float(result.clean_logits[3]))
    prob = analysis.activation_patching(model, clean, corrupted, metric="prob", target=3)
    expected = torch.tensor(prob.corrupted_logits).softmax(-1)[3]
    assert prob.corrupted_metric == pytest.approx(float(expected), rel=1e-5)
    chosen = analysis.activation_patching(model, clean, corrupted, target=1, foil=2)
    assert chosen.clean_metric == pytest.approx(float(chosen.clean_logits[1] - chosen.clean_logits[2]))


def test_positions_tile_the_block_and_the_whole_grid_is_the_whole_output():
    model = toy()
    clean, corrupted = pair()
    result = analysis.position_patching(model, clean, corrupted, block="S3.0")
    assert result.grid == (4, 4) and result.cell == 1 and result.stride == 4
    assert result.recovery.shape == (4, 4) and np.isfinite(result.recovery).all()
    whole = analysis.position_patching(model, clean, corrupted, block="S3.0", cell=4)
    assert whole.recovery.shape == (1, 1)
    assert whole.recovery[0, 0] == pytest.approx(1, abs=1e-5)
    halves = analysis.position_patching(model, clean, corrupted, block="S0", cell=12)
    assert halves.grid == (16, 16) and halves.recovery.shape == (2, 2)
    one = analysis.position_patching(model, clean, corrupted, block="S3.0", batch_size=1)
    np.testing.assert_allclose(one.recovery, result.recovery, atol=1e-5)


def test_a_model_in_training_mode_patches_each_row_with_the_same_draws():
    model = toy(drop_path_rate=0.3, dropout=0.3).train()
    clean, corrupted = pair()
    first = analysis.activation_patching(model, clean, corrupted, metric="logit", target=0)
    again = analysis.activation_patching(model, clean, corrupted, metric="logit", target=0)
    assert first.defined
    np.testing.assert_array_equal(first.recovery, again.recovery)
    assert first.value("S4.0", "attn.bias") == 0.0  # the same draws: the bias row is the corrupted run
    assert first.value("S4.0", "output") == pytest.approx(1, abs=1e-5)


def test_corruptions():
    batch = images(1)
    noisy = Corruption("noise", sigma=0.5, seed=3).apply(batch)
    assert torch.equal(noisy, Corruption("noise", sigma=0.5, seed=3).apply(batch))
    assert (noisy - batch).std().item() == pytest.approx(0.5, rel=0.15)
    blurred = Corruption("blur", sigma=2.0).apply(batch)
    assert blurred.shape == batch.shape and blurred.std() < batch.std()
    masked = Corruption("mask", box=(0.0, 0.0, 0.5, 0.25)).apply(batch)
    assert (masked[..., :8, :4] == 0).all() and torch.equal(masked[..., 8:, :], batch[..., 8:, :])
    assert "sigma 0.5" in Corruption("noise", sigma=0.5).label
    result = analysis.activation_patching(toy(), batch, corruption=Corruption("mask"))
    assert result.corruption.startswith("masked box")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "sideways"}, "direction must be"),
        ({"metric": "rank"}, "metric must be one of"),
        ({"metric": "prob", "foil": 1}, "a foil class is for the logit_diff"),
        ({"target": 99}, "target must be a class index 0..9"),
        ({"epsilon": 0}, "epsilon must be a positive"),
        ({"corruption": Corruption()}, "not both"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        analysis.activation_patching(toy(), *pair(), **kwargs)


def test_bad_inputs_say_what_to_do():
    model = toy()
    clean, _ = pair()
    with pytest.raises(ValueError, match="the clean input must be one image, got a batch of 2"):
        analysis.activation_patching(model, images(2))
    with pytest.raises(ValueError, match="one size"):
        analysis.activation_patching(model, clean, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"no block 'S9\.0'; the blocks are S0"):
        analysis.position_patching(model, clean, block="S9.0")
    with pytest.raises(ValueError, match="cell must be a positive"):
        analysis.position_patching(model, clean, cell=0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        Corruption("blur", sigma=math.nan)
    with pytest.raises(ValueError, match="box"):
        Corruption("mask", box=(0.5, 0.0, 0.2, 1.0))
    with pytest.raises(ValueError, match="kind must be"):
        Corruption("jpeg")


def test_figures_write_every_value_and_say_undefined():
    model = toy()
    clean, corrupted = pair()
    result = analysis.activation_patching(model, clean, corrupted)
    figure = figures.patching_figure(result)
    heat = figure.data[0]
    assert list(heat.y) == ["S0 (stem)", "S1.0 (C)", "S2.0 (C)", "S3.0 (T)", "S4.0 (T)"]
    assert heat.text[0][0] == "1.00" and heat.text[0][1] == ""  # the stem: its output alone
    assert heat.text[3][COMPONENTS.index("attn.bias")] == "0.00"
    assert len(figure.data[1].customdata) == int((~np.isnan(result.recovery)).sum())
    heads = figures.head_patching_figure(result)
    assert list(heads.data[0].y) == ["S3.0", "S4.0"] and np.asarray(heads.data[0].z).shape == (2, 4)
    same = analysis.activation_patching(model, clean, clean.clone())
    undefined = figures.patching_figure(same)
    assert undefined.data[0].text[4][0] == "undefined"
    assert f"predict class {same.target}" in undefined.layout.annotations[-1].text.replace("<br>", " ")
    positions = analysis.position_patching(model, clean, corrupted, block="S3.0")
    drawn = figures.position_patching_figure(positions, np.zeros((16, 16, 3), dtype=np.uint8))
    assert np.asarray(drawn.data[-1].z).shape == (4, 4) and drawn.data[-1].dx == 4
    # squares of 3 cells on S3.0's 4x4 grid: each over its own cells, the last cut at the edge
    squares = analysis.position_patching(model, clean, corrupted, block="S3.0", cell=3)
    cut = np.asarray(figures.position_patching_figure(squares).data[-1].z)
    assert squares.recovery.shape == (2, 2) and cut.shape == (4, 4)
    assert (cut[:3, :3] == squares.recovery[0, 0]).all() and cut[3, 3] == squares.recovery[1, 1]
    # white is the run patched into: 0 for denoising, 1 for noising
    assert heat.zmid == 0
    noised = analysis.activation_patching(model, clean, corrupted, direction="noising")
    assert (
        figures.patching_figure(noised).data[0].zmid == 1
        and figures.head_patching_figure(noised).data[0].zmid == 1
    )
    chosen = analysis.activation_patching(model, clean, corrupted, target=2, foil=2)
    note = figures.patching_figure(chosen).layout.annotations[-1].text.replace("<br>", " ")
    assert "the target and the foil are both class 2" in note


def test_a_maxvit_patches_its_conv_block_and_grid_attention_through_their_windows():
    from coatnet import tracing
    from tests.support.toys import maxvit_toy

    model = maxvit_toy()
    clean, corrupted = images(2)[0], images(2)[1]
    found = analysis.activation_patching(model, clean, corrupted, metric="logit")
    assert found.blocks[:4] == ("S0", "S1.0.conv", "S1.0.block", "S1.0.grid")
    assert found.kinds[:4] == ("stem", "C", "T", "T")
    for block in found.blocks:  # every part's output carries the whole run from there on
        assert found.value(block, "output") == pytest.approx(1.0, abs=1e-4)
    assert found.value("S2.0.grid", "attn.bias") == 0.0
    # batched rows of 16 windows an image, against one direct pass per patch
    names = ["S1.0.grid.attn.weights", "S1.0.block.attn.v", "logits"]
    source = trace(model, clean[None], names=names)
    with torch.no_grad():
        base = model(corrupted[None])[0, found.target]
        full = model(clean[None])[0, found.target]
    for block, component in (("S1.0.grid", "attn.weights"), ("S1.0.block", "attn.v")):
        value = source[f"{block}.{component}"]
        with torch.no_grad(), tracing(patch={f"{block}.{component}": lambda x, v=value: v.clone()}):
            patched = model(corrupted[None])[0, found.target]
        expected = float((patched - base) / (full - base))
        assert found.value(block, component) == pytest.approx(expected, abs=1e-4)
    alone = analysis.activation_patching(model, clean, corrupted, metric="logit", batch_size=1)
    np.testing.assert_allclose(found.heads["S1.0.grid"], alone.heads["S1.0.grid"], atol=1e-5)
    where = analysis.position_patching(model, clean, corrupted, block="S1.0.grid", metric="logit", cell=8)
    assert where.recovery.shape == (1, 1) and where.recovery[0, 0] == pytest.approx(1.0, abs=1e-4)
