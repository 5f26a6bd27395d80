"""Checkpoints: safetensors round trips, metadata, resizing on load, and clear errors that never unpickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import coatnet
from coatnet.weights.checkpoint import FORMAT, CheckpointError
from tests.support.toys import toy_model


@pytest.fixture
def model() -> coatnet.CoAtNet:
    m = toy_model(num_classes=3)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they must round-trip too
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return m


def test_round_trip_gives_identical_outputs(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    path = coatnet.save_checkpoint(model, tmp_path / "m.safetensors", class_names=["a", "b", "c"])
    loaded = coatnet.load_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    assert not loaded.training
    assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config
    assert loaded.checkpoint_info.class_names == ("a", "b", "c")


def test_metadata_header_holds_config_and_metadata(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    path = coatnet.save_checkpoint(
        model,
        tmp_path / "m.safetensors",
        preprocessing={"size": [32, 32], "channels": 3, "mean": [0.1] * 3, "std": [0.2] * 3},
        provenance={"dataset": "synthetic", "command": "pytest"},
        note="kept",
    )
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == FORMAT
    assert json.loads(header["config"])["name"] == "coatnet_toy"
    info = coatnet.read_checkpoint_info(path)
    assert info.provenance == {"dataset": "synthetic", "command": "pytest"}
    assert info.preprocessing.mean == (0.1,) * 3
    assert info.extra == {"note": "kept"}
    assert info.trained_attention == "pre"


def test_default_preprocessing_describes_the_model(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    info = coatnet.read_checkpoint_info(coatnet.save_checkpoint(model, tmp_path / "m.safetensors"))
    assert info.preprocessing.size == (32, 32)
    assert info.preprocessing.channels == 3


def test_switching_attention_keeps_weights_and_says_so(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    path = coatnet.save_checkpoint(model, tmp_path / "m.safetensors")
    post = coatnet.load_checkpoint(path, attention="post")
    assert post.config.attention == "post"
    assert post.checkpoint_info.trained_attention == "pre"
    assert "trained with pre-normalization" in post.checkpoint_info.attention_note
    for (k, a), b in zip(model.state_dict().items(), post.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # saving the switched model keeps the record of how it was trained
    again = coatnet.read_checkpoint_info(coatnet.save_checkpoint(post, tmp_path / "post.safetensors"))
    assert again.config.attention == "post" and again.trained_attention == "pre"


def test_loading_at_another_size_resizes_bias_tables(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    path = coatnet.save_checkpoint(model, tmp_path / "m.safetensors")
    big = coatnet.load_checkpoint(path, img_size=96)
    old = model.stages[2].blocks[0].attn.rel_pos.table  # grid 2x2 -> 3x3 table
    new = big.stages[2].blocks[0].attn.rel_pos.table  # grid 6x6 -> 11x11 table
    assert new.shape == (old.shape[0], 11, 11)
    torch.testing.assert_close(new[:, 5, 5], old[:, 1, 1])  # the centre (offset 0) is kept
    assert big(torch.randn(1, 3, 96, 96)).shape == (1, 3)


def test_write_is_atomic_and_leaves_no_temp_files(
    model: coatnet.CoAtNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that dies half way (disk full, kill) leaves the previous file intact and no debris."""
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"old contents")

    def dies_half_way(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(coatnet.weights.checkpoint, "save_file", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        coatnet.save_checkpoint(model, target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_mismatched_architecture_names_the_keys(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    other = coatnet.create_model("coatnet_toy", dims=(16, 16, 32, 64), num_classes=3)
    path = coatnet.save_checkpoint(other, tmp_path / "other.safetensors")
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    with pytest.raises(CheckpointError) as error:
        coatnet.weights.checkpoint.load_state_dict_checked(model, state, source=str(path))
    message = str(error.value)
    assert "stages.3.blocks.0.attn.qkv.weight: file (192, 32) vs model (96, 32)" in message
    assert "unexpected key(s): stages.3.blocks.0.shortcut.expand.bias" in message


def test_missing_keys_are_named(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(CheckpointError, match=r"2 missing key\(s\): head.fc.bias, head.fc.weight"):
        coatnet.weights.checkpoint.load_state_dict_checked(model, state, source="x")


def test_pickle_files_are_refused_without_unpickling(tmp_path: Path) -> None:
    """A .pth made by torch.save, holding an object whose unpickling would run code, is never run."""

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    bad = tmp_path / "evil.safetensors"
    with open(bad, "wb") as f:
        pickle.dump(Boom(), f)
    torch.save({"x": torch.ones(1)}, tmp_path / "weights.pth")
    for path in (bad, tmp_path / "weights.pth"):
        with pytest.raises(CheckpointError, match="never unpickles"):
            coatnet.load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_foreign_files_give_clear_errors(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    good = coatnet.save_checkpoint(model, tmp_path / "m.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="fetch it again"):
        coatnet.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without CoAtNet Lens metadata"):
        coatnet.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        coatnet.load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        coatnet.load_checkpoint(tmp_path)


def test_refuses_other_suffix_and_wrong_class_names(model: coatnet.CoAtNet, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        coatnet.save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="2 class names for a model with 3 classes"):
        coatnet.save_checkpoint(model, tmp_path / "m.safetensors", class_names=["a", "b"])


@pytest.mark.parametrize("name", ["coatnet_toy", "vit_rel"])
def test_config_round_trips_through_json(name: str) -> None:
    config = coatnet.model.variants.build_config(
        name, attention="post", img_size=64 if name == "coatnet_toy" else 224
    )
    assert coatnet.CoAtNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_mixed_stage_config_round_trips() -> None:
    config = coatnet.model.variants.build_config("coatnet_6")
    assert coatnet.CoAtNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "name, kwargs",
    [("coatnet_toy", {}), ("coatnet_toy", {"attention": "post"}), ("coatnet_rmlp_nano_rw_224", {})],
)
def test_a_model_built_for_loading_equals_one_initialised_then_loaded(name: str, kwargs: dict) -> None:
    from coatnet.model.network import build_for_loading

    torch.manual_seed(0)
    reference = coatnet.create_model(name, **kwargs).eval()
    built = build_for_loading(reference.config)
    built.load_state_dict(reference.state_dict())
    built.eval()
    ours, theirs = dict(built.named_buffers()), dict(reference.named_buffers())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)  # the indices
    x = torch.randn(2, 3, *reference.config.img_size)
    with torch.no_grad():
        assert torch.equal(built(x), reference(x))


def test_loading_and_preparing_a_checkpoint_imports_neither_sympy_nor_dynamo():
    """Building on the meta device and the inference build's convolutions allocate their storage
    directly: ``Module.to_empty`` and ``skip_init`` import sympy and torch._dynamo on first use (3 s of
    every command's start). The loaded weights are the checkpoint's, the random state untouched."""
    import sys

    from tests.support import processes

    script = (
        "import sys, torch, coatnet\n"
        "state = torch.random.get_rng_state()\n"
        "model = coatnet.load_checkpoint('demo-pre')\n"
        "coatnet.for_inference(model)(torch.zeros(1, 1, 28, 28))\n"
        "assert torch.equal(state, torch.random.get_rng_state())\n"
        "heavy = ('sympy', 'torch._dynamo')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = processes.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "attention"), [("demo-pre", "post"), ("demo-post", "pre")])
def test_the_other_normalization_of_a_loaded_model_is_the_files_own(name: str, attention: str) -> None:
    """``with_normalization`` (how the app runs a loaded model the other way, without reading its file
    again) gives what ``load_checkpoint(..., attention=...)`` gives: the same logits, config and info."""
    from coatnet.weights import with_normalization

    loaded = coatnet.load_checkpoint(name)
    switched, read = with_normalization(loaded, attention), coatnet.load_checkpoint(name, attention=attention)
    assert switched is not loaded and not switched.training
    assert switched.config == read.config and switched.checkpoint_info == read.checkpoint_info
    seeded = torch.Generator().manual_seed(0)
    x = torch.randn(2, loaded.config.in_chans, *loaded.config.img_size, generator=seeded)
    with torch.no_grad():
        assert torch.equal(switched(x), read(x)) and not torch.equal(switched(x), loaded(x))
    pairs = zip(switched.parameters(), loaded.parameters(), strict=True)
    assert all(p.data_ptr() != q.data_ptr() for p, q in pairs)  # its own copy
    assert with_normalization(loaded, loaded.config.attention) is loaded
