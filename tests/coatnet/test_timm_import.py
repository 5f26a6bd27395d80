"""timm's CoAtNets load into our own modules with timm's outputs (marker ``timm``).

Each test builds a randomly initialised timm model (random BatchNorm statistics, LayerScale and bias
tables large enough to matter), saves it to a file as the hub would serve it, imports it with
``coatnet.from_timm`` and compares logits in fp32 at a reduced input size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import coatnet
from coatnet.cli import commands as cli
from coatnet.model.variants_timm import TIMM_VARIANTS
from coatnet.weights.checkpoint import CheckpointError
from coatnet.weights.timm_import import from_timm
from tests.support.timm import IMG, import_timm, randomised_timm_model, save_timm

pytestmark = pytest.mark.timm
LARGE = {"coatnet_2_rw_224", "coatnet_rmlp_2_rw_224", "coatnet_rmlp_2_rw_384", "coatnet_3_rw_224"}
LARGE |= {"coatnet_2_224", "coatnet_3_224"}


@pytest.fixture(scope="module")
def timm():
    return import_timm()


def assert_same_logits(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    scale = theirs.abs().max().item()
    assert torch.isfinite(ours).all()
    assert (ours - theirs).abs().max().item() <= 1e-4 * scale, (ours - theirs).abs().max().item() / scale


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param(a, marks=pytest.mark.slow) if a in LARGE else a
        for a in sorted(TIMM_VARIANTS)
        if TIMM_VARIANTS[a].layout != "M-M-M-M"
    ],
)  # the MaxViT family (MaxViT, MaxxViT, MaxxViT-V2): tests/coatnet/test_maxvit.py
def test_imported_model_matches_timm(timm, arch: str, tmp_path: Path) -> None:
    reference = randomised_timm_model(timm, arch)
    path = save_timm(reference, tmp_path / "model.safetensors")
    ours = from_timm(path, arch=arch)
    assert coatnet.count_params(ours) == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert_same_logits(ours(x), reference(x))
    # and it recognises the architecture from the tensors alone (the 224 and 384 builds of a
    # relative-position-MLP model share every tensor: the 224 one is named)
    recognised = coatnet.weights.timm_import.recognise_arch(coatnet.weights.timm_import.read_state_dict(path))
    assert recognised == arch.replace("_384", "_224")
    path.unlink()


def test_pytorch_model_bin_is_read_without_unpickling_objects(timm, tmp_path: Path) -> None:
    reference = randomised_timm_model(timm, "coatnet_nano_rw_224")
    path = save_timm(reference, tmp_path / "pytorch_model.bin")
    ours = from_timm(path)  # architecture recognised from the tensors
    assert ours.config.name == "coatnet_nano_rw_224"
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert_same_logits(ours(x), reference(x))


def test_in12k_head_and_metadata(timm, tmp_path: Path) -> None:
    reference = randomised_timm_model(timm, "coatnet_rmlp_nano_rw_224", num_classes=11821)
    ours = from_timm(save_timm(reference, tmp_path / "model.safetensors"))
    info = ours.checkpoint_info
    assert ours.config.num_classes == 11821
    assert info.provenance["label_space"] == "imagenet-12k"
    assert info.class_names is None or len(info.class_names) == 11821
    assert info.preprocessing.mean == (0.5, 0.5, 0.5) and info.preprocessing.crop == 0.9
    assert info.trained_attention == "pre"


def test_switch_to_post_normalization_is_labelled(timm_weights) -> None:
    path = timm_weights("coatnet_0_rw_224")
    pre = from_timm(path)
    post = from_timm(path, attention="post")
    assert post.config.attention == "post"
    assert "trained with pre-normalization" in post.checkpoint_info.attention_note
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert not torch.allclose(pre(x), post(x))  # the bias now enters after the softmax
    for (key, a), b in zip(pre.state_dict().items(), post.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_other_input_size_resizes_tables(timm_weights) -> None:
    path = timm_weights("coatnet_0_rw_224")
    small = from_timm(path)
    big = from_timm(path, img_size=128)
    old = small.stages[3].blocks[0].attn.rel_pos.table  # S4 grid 2x2 -> 3x3 table
    new = big.stages[3].blocks[0].attn.rel_pos.table  # 4x4 -> 7x7
    assert new.shape[-2:] == (7, 7)
    torch.testing.assert_close(new[:, 3, 3], old[:, 1, 1])
    assert big(torch.randn(1, 3, 128, 128)).shape == (1, 1000)


def test_round_trip_through_our_checkpoint(timm, tmp_path: Path) -> None:
    reference = randomised_timm_model(timm, "coatnet_bn_0_rw_224")
    ours = from_timm(save_timm(reference, tmp_path / "model.safetensors"))
    saved = coatnet.save_checkpoint(ours, tmp_path / "ours.safetensors")
    again = coatnet.load_checkpoint(saved)
    assert again.checkpoint_info.provenance["arch"] == "coatnet_bn_0_rw_224"
    assert again.checkpoint_info.preprocessing.mean == (0.485, 0.456, 0.406)
    assert again.checkpoint_info.class_names == ours.checkpoint_info.class_names
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.equal(again(x), ours(x))
        assert_same_logits(again(x), reference(x))


def test_wrong_architecture_names_the_keys(timm_weights) -> None:
    path = timm_weights("coatnet_0_rw_224")
    with pytest.raises(CheckpointError, match=r"does not fit .*stages\.2\.blocks\.[56]"):
        from_timm(path, arch="coatnet_0_224")


def test_foreign_truncated_and_pickled_files(tmp_path: Path) -> None:
    foreign = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}, str(foreign))
    with pytest.raises(CheckpointError, match="fit none of timm's CoAtNets"):
        from_timm(foreign)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(foreign.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="fetch it again"):
        from_timm(truncated)

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    pickled = tmp_path / "pytorch_model.bin"
    torch.save({"weight": Payload()}, pickled)
    with pytest.raises(CheckpointError, match="never unpickle"):
        from_timm(pickled)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(FileNotFoundError, match="no weights file"):
        from_timm(tmp_path / "missing.safetensors")


def test_bare_arch_name_downloads_the_default_tag_and_records_it(
    timm_weights, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = timm_weights("coatnet_nano_rw_224")
    asked = []
    monkeypatch.setattr(
        coatnet.weights.timm_import,
        "download_timm_weights",
        lambda tag, progress=True: asked.append(tag) or path,
    )
    model = from_timm("coatnet_nano_rw_224")
    assert asked == ["coatnet_nano_rw_224.sw_in1k"]
    assert model.checkpoint_info.provenance["pretrained_tag"] == "sw_in1k"
    assert model.checkpoint_info.preprocessing.crop == 0.9


def test_unknown_tag_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown timm CoAtNet 'coatnet_9_rw_224'"):
        from_timm("coatnet_9_rw_224.sw_in1k")


def test_cli_import_timm_writes_our_checkpoint(
    timm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = randomised_timm_model(timm, "coatnet_rmlp_nano_rw_224")
    source = save_timm(reference, tmp_path / "model.safetensors")
    out = tmp_path / "ours.safetensors"
    assert cli.main(["import-timm", str(source), "--out", str(out)]) == 0
    assert "coatnet_rmlp_nano_rw_224" in capsys.readouterr().out
    loaded = coatnet.load_checkpoint(out)
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert_same_logits(loaded(x), reference(x))


def test_cli_import_timm_failure_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(10, 4)}, str(foreign))
    out = tmp_path / "out.safetensors"
    assert cli.main(["import-timm", str(foreign), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fit none of timm's CoAtNets" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.safetensors"]
