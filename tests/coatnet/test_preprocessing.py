"""Preprocessing: one frozen value, stored as a JSON object in checkpoints; its defaults by case; a model's
class names and checkpoint_info read one way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import coatnet
from coatnet.data.preprocessing import INTERPOLATIONS
from coatnet.weights.checkpoint import preprocessing_of


@pytest.fixture(scope="module")
def toy() -> coatnet.CoAtNet:
    return coatnet.create_model("coatnet_toy", img_size=32, num_classes=2).eval()


def test_preprocessing_round_trips_through_json_and_a_checkpoint(
    toy: coatnet.CoAtNet, tmp_path: Path
) -> None:
    pre = coatnet.Preprocessing(
        size=(32, 32),
        channels=3,
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        interpolation="lanczos",
        crop=0.9,
    )
    assert coatnet.Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    path = coatnet.save_checkpoint(toy, tmp_path / "m.safetensors", preprocessing=pre)
    assert coatnet.read_checkpoint_info(path).preprocessing == pre
    loaded = coatnet.load_checkpoint(path)
    assert preprocessing_of(loaded) == pre
    again = coatnet.save_checkpoint(loaded, tmp_path / "again.safetensors")  # carried over as it was
    assert coatnet.read_checkpoint_info(again).preprocessing == pre


def test_the_writer_describes_a_silent_model_as_bicubic_and_readers_fall_back_to_bilinear(
    toy: coatnet.CoAtNet, tmp_path: Path
) -> None:
    # a model nobody described: bicubic, mean = std = 0.5, its built size, no crop (written so)
    path = coatnet.save_checkpoint(toy, tmp_path / "silent.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    written = json.loads(header["metadata"])["preprocessing"]
    assert written == {"size": [32, 32], "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
                       "interpolation": "bicubic", "crop": 1.0}  # fmt: skip
    assert preprocessing_of(toy) == coatnet.read_checkpoint_info(path).preprocessing
    # an older file whose description names no resampling and no crop: bilinear, the whole picture
    meta = json.loads(header["metadata"])
    meta["preprocessing"] = {"size": [32, 32], "channels": 3, "mean": [0.2] * 3, "std": [0.3] * 3}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**header, "metadata": json.dumps(meta)})
    read = coatnet.load_checkpoint(old).checkpoint_info.preprocessing
    assert (read.interpolation, read.crop, read.mean) == ("bilinear", 1.0, (0.2,) * 3)


def test_an_unknown_interpolation_is_refused_in_one_line_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interpolation must be one of") as caught:
        coatnet.Preprocessing(size=(8, 8), channels=1, mean=(0.5,), std=(0.5,), interpolation="cubic")
    message = str(caught.value)
    assert "\n" not in message and "'cubic'" in message and all(name in message for name in INTERPOLATIONS)
    with pytest.raises(ValueError, match=r"unknown keys \['resize'\]"):
        coatnet.Preprocessing.from_dict({"size": [8, 8], "channels": 1, "mean": [0], "std": [1], "resize": 8})


def test_class_names_and_checkpoint_info_are_read_one_way(toy: coatnet.CoAtNet) -> None:
    assert coatnet.CoAtNet.checkpoint_info is None and toy.checkpoint_info is None  # declared, not patched on
    assert coatnet.class_names(toy) is None
    assert coatnet.class_names(toy, numbered=True) == ("class 0", "class 1")
    demo = coatnet.load_checkpoint("demo-pre")
    assert coatnet.class_names(demo) == demo.checkpoint_info.class_names
    assert coatnet.class_names(demo, numbered=True)[0] == "T-shirt/top"
