"""MaxViT (issue 27): timm's MaxViTs import with timm's outputs, every registered one fits our modules,
windows and grids partition as timm's do, input sizes that do not split are refused, and the attention is
recorded per partition."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import coatnet
from coatnet.model.variants_timm import COATNEXT, MAXVITS, MAXXVITS, TIMM_VARIANTS
from coatnet.model.windows import partition, unpartition, window_positions
from coatnet.weights.timm_import import convert_state_dict, from_timm, read_state_dict, recognise_arch
from tests.support.timm import import_timm, randomised_timm_model, save_timm

SIZE = 64  # windows and grids of 2 (the input / 32): S1's 16x16 grid holds 64 windows
# one of each kind: TensorFlow's (GELU-tanh, same padding, the tanh head), timm's rw, its rmlp bias,
# LayerScale (rmlp_small), the pre-logits head of an rw MaxViT (rmlp_base)
COMPARED = ("maxvit_tiny_tf_224", "maxvit_nano_rw_256", "maxvit_rmlp_nano_rw_256", "maxvit_rmlp_small_rw_224",
            # ConvNeXt blocks and a LayerNorm stem: MaxxViT, MaxxViT-V2 (grid attention alone); CoAtNeXt
            # (C-C-T-T) is compared with the CoAtNets in tests/coatnet/test_timm_import.py
            "maxxvit_rmlp_nano_rw_256", "maxxvitv2_nano_rw_256",
            # block and grid attention side by side (timm's experimental PM block)
            "maxvit_tiny_pm_256")  # fmt: skip


@pytest.fixture(scope="module")
def timm():
    return import_timm()


def test_every_maxvit_timm_registers_is_ours_and_no_other(timm):
    assert set(timm.list_models("maxvit_*")) == {c.name for c in MAXVITS}
    family = set(timm.list_models("maxxvit*")) | set(timm.list_models("coatnext*"))
    assert family == {c.name for c in MAXXVITS} | {COATNEXT.name}


@pytest.mark.timm
@pytest.mark.parametrize("arch", COMPARED)
def test_imported_maxvit_matches_timm(timm, arch: str, tmp_path: Path) -> None:
    reference = randomised_timm_model(timm, arch, img_size=SIZE)
    path = save_timm(reference, tmp_path / "model.safetensors")
    ours = from_timm(path, arch=arch, img_size=SIZE, progress=False)
    assert ours.config.partition_sizes() == (2, 2)
    assert coatnet.count_params(ours) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        theirs, mine = reference(x), ours(x)
        fast = coatnet.for_inference(ours)(x)
    scale = theirs.abs().max().item()
    assert (mine - theirs).abs().max().item() <= 1e-4 * scale
    assert (fast - theirs).abs().max().item() <= 1e-4 * scale
    if "rmlp" not in arch:  # a bias table names its window, so the architecture: recognised alone
        assert recognise_arch(read_state_dict(path)) == arch


# every family and kind at one size, and the other sizes (which change the bias tables alone) for two
FITTED = sorted({c.name for c in MAXVITS if not c.name.endswith(("_384", "_512", "rw_224"))}
                | {"maxvit_tiny_tf_384", "maxvit_tiny_tf_512", "maxvit_xlarge_tf_512", "maxvit_tiny_rw_224",
                   "maxvit_rmlp_base_rw_224"}
                | {c.name for c in MAXXVITS if not c.name.endswith("_384")} | {COATNEXT.name})  # fmt: skip


@pytest.mark.timm
@pytest.mark.parametrize("arch", FITTED)
def test_every_maxvits_tensors_fit_our_modules(timm, arch: str) -> None:
    with torch.device("meta"):
        reference = timm.create_model(arch, pretrained=False)
        ours = coatnet.CoAtNet(TIMM_VARIANTS[arch])
    converted = convert_state_dict(reference.state_dict(), ours.config)
    own = ours.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert coatnet.count_params(ours) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize(("size", "side"), [(224, 7), (256, 8), (384, 12), (512, 16)])
def test_windows_and_grids_default_to_the_input_over_32(size: int, side: int):
    assert coatnet.create_model("maxvit_tiny_tf_224", img_size=size).config.partition_sizes() == (side, side)


def test_an_input_that_does_not_split_into_windows_is_refused_with_the_sizes_that_do():
    with pytest.raises(ValueError, match=r"multiples of 224 \(224 or 448\)"):
        coatnet.create_model(
            "maxvit_tiny_tf_224", img_size=(224, 224), window_size=7, grid_size=7
        ).config.replace(img_size=(320, 320))
    model = coatnet.create_model("maxvit_nano_rw_256", img_size=64).eval()
    with pytest.raises(ValueError, match="multiples of its total stride times its window and grid sides, 64"):
        model(torch.zeros(1, 3, 96, 96))


def test_partitions_are_timms_and_invert():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    blocks, grids = partition(x, 4, "block"), partition(x, 4, "grid")
    assert blocks.shape == grids.shape == (8, 3, 4, 4)
    # window (p, q) = (0, 1), token (a, b) = (2, 3): position (p * 4 + a, q * 4 + b)
    assert blocks[1, 0, 2, 3] == x[0, 0, 2, 7]
    # grid group (p, q) = (1, 0), token (a, b) = (3, 2): position (a * 8 / 4 + p, b * 8 / 4 + q)
    assert grids[2, 0, 3, 2] == x[0, 0, 7, 4]
    assert torch.equal(unpartition(blocks, 4, "block", (8, 8)), x)
    assert torch.equal(unpartition(grids, 4, "grid", (8, 8)), x)


def test_window_positions_place_every_window_where_partition_takes_it():
    x = torch.randn(2, 3, 12, 8)
    for kind in ("block", "grid"):
        places = window_positions((12, 8), (4, 4), kind)
        windows = partition(x, 4, kind).flatten(2)  # (B * windows, C, 16)
        assert places.shape == (6, 16) and sorted(places.flatten().tolist()) == list(range(96))
        flat = x.flatten(2)
        for w in range(6):
            assert torch.equal(windows[w], flat[0][:, places[w]])  # image 0's windows come first
            assert torch.equal(windows[6 + w], flat[1][:, places[w]])
    block, grid = window_positions((12, 8), (4, 4), "block"), window_positions((12, 8), (4, 4), "grid")
    assert block[1, :5].tolist() == [4, 5, 6, 7, 12]  # window (0, 1): rows 0..3, columns 4..7
    assert grid[0, :5].tolist() == [0, 2, 4, 6, 24]  # group (0, 0): every third row, every second column
    assert torch.equal(window_positions((3, 5), (3, 5), "global"), torch.arange(15)[None])
    with pytest.raises(ValueError, match="partition"):
        partition(x, 4, "diagonal")


def test_attention_is_recorded_per_partition():
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_nano_rw_256", img_size=64).eval()
    with torch.no_grad(), coatnet.record_attention() as records:
        model(torch.randn(1, 3, 64, 64))
    assert [(r.name, r.partition) for r in records[:2]] == [("S1.0.block", "block"), ("S1.0.grid", "grid")]
    first = records[0]
    assert first.grid == (2, 2) and first.weights.shape == (64, 2, 4, 4)  # 16x16 grid: 64 windows, 2 heads
    assert first.field == (16, 16) and first.windows == 64 and first.positions.shape == (64, 4)
    assert len(records) == 2 * sum(model.config.depths)


# (params in millions, MACs in billions): the paper's Tables 1 and 2 (and the authors' README)
PAPER = {("tiny", 224): (31, 5.6), ("small", 224): (69, 11.7), ("base", 224): (119, 24.2),
         ("large", 224): (212, 43.9), ("xlarge", 384): (475, 293.7),
         ("xlarge", 512): (475, 535.2)}  # fmt: skip


@pytest.mark.parametrize(("size", "at"), list(PAPER), ids=lambda v: str(v))
def test_the_family_is_within_3_percent_of_the_papers_params_and_5_of_its_flops(size: str, at: int):
    params, macs = PAPER[(size, at)]
    costs = coatnet.stage_costs(TIMM_VARIANTS[f"maxvit_{size}_tf_{at}"].replace(num_classes=1000))
    assert abs(sum(c.params for c in costs) / 1e6 / params - 1) <= 0.03
    assert abs(sum(c.macs for c in costs) / 1e9 / macs - 1) <= 0.05


def test_the_fashion_mnist_maxvit_has_distinct_block_and_grid_attention_on_its_14x14_stages():
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    assert model.config.partition_sizes() == (7, 7) and model.config.partition_step() == 28
    with torch.no_grad(), coatnet.record_attention() as records:
        logits = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10)
    s1 = [r for r in records if r.stage == 1]
    assert [r.partition for r in s1] == ["block", "grid"]
    assert all(r.grid == (7, 7) and r.weights.shape[0] == 2 * 4 for r in s1)  # 14x14: four windows an image
    s4 = [r for r in records if r.stage == 4]
    assert all(r.weights.shape[0] == 2 for r in s4)  # 7x7: one window, the whole grid


def test_every_activation_of_a_maxvit_is_traced_under_its_own_name():
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    cache = coatnet.trace(model, x, names=["*"])
    assert set(cache) == set(coatnet.trace_names(model))
    assert cache["S1.0.block.attn.weights"].shape == (8, 2, 49, 49)  # 2 images x 4 windows, 2 heads
    assert torch.equal(cache["S1.0.input"], cache["S1.0.conv.input"])
    assert torch.equal(cache["S1.0.conv.output"], cache["S1.0.block.input"])
    assert torch.equal(cache["S1.0.grid.output"], cache["S1.0.output"])
    with torch.no_grad(), coatnet.record_attention() as records:
        logits = model(x)
    torch.testing.assert_close(cache["logits"], logits)
    torch.testing.assert_close(cache["S1.0.grid.attn.weights"], records[1].weights)


def test_patching_refuses_a_parallel_block_in_one_line_and_the_windowed_analyses_and_grad_cam_run():
    import analysis

    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    x = torch.randn(1, 1, 28, 28)
    parallel = coatnet.create_model("maxvit_pico", in_chans=1, parallel_partitions=True).eval()
    with pytest.raises(ValueError, match=r"does not map a parallel MaxViT block"):
        analysis.activation_patching(parallel, x[0], x[0])
    assert analysis.attention_maps(model, x).names[:2] == ("S1.0.block", "S1.0.grid")
    assert analysis.attributions(model, x, method="gradcam", stage="S3").map.shape == (28, 28)


def test_interventions_reach_one_partition_of_one_image_through_its_windows():
    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    grid_h1 = coatnet.Intervention("S1.0.grid", "knockout", heads=(1,), rows=(1, 2))
    with torch.no_grad(), coatnet.record_attention() as records, coatnet.intervene(grid_h1, model=model):
        both = model(x)
    block, grid = records[0], records[1]
    assert (block.name, grid.name) == ("S1.0.block", "S1.0.grid") and grid.windows == 4
    assert (grid.weights[4:, 1] == 0).all() and (grid.weights[:4, 1] != 0).any()  # image 1's windows only
    assert (grid.weights[:, 0] != 0).any(dim=(1, 2)).all() and (block.weights != 0).any(dim=(2, 3)).all()
    with torch.no_grad():
        plain = model(x[:1])
        with coatnet.intervene(coatnet.Intervention("S1.0.grid", "knockout", heads=(1,))):
            alone = model(x[1:])
    torch.testing.assert_close(both[0], plain[0])  # the row without the intervention, as if none
    torch.testing.assert_close(both[1], alone[0])
    with (
        torch.no_grad(),
        coatnet.record_attention() as records,
        coatnet.intervene(
            coatnet.Intervention("S1.0", "uniform"), coatnet.Intervention("S1.0", "no_se"), model=model
        ),
    ):
        model(x)
    assert all(torch.allclose(r.weights, torch.full_like(r.weights, 1 / 49)) for r in records[:2])
    with pytest.raises(ValueError, match="MBConv"):
        coatnet.Intervention("S1.0.grid", "zero_branch")
    with (
        pytest.raises(ValueError, match="not a MaxViT block"),
        coatnet.intervene(
            coatnet.Intervention("S3.0.grid", "knockout"), model=coatnet.create_model("coatnet_toy")
        ),
    ):
        pass
    assert coatnet.Intervention("S1.0.block", "knockout", heads=(0,)).label == "knockout S1.0.block h0"
