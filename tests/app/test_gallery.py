"""The shipped gallery: manifests match the files, Fashion-MNIST samples are the dataset's own pixels and
labels, photos are sized and licensed, and the generating script reproduces the files byte for byte."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.gallery import GALLERY, KINDS, Sample, kind_for, samples
from coatnet.data.datasets import FASHION_MNIST_CLASSES, fashion_mnist
from coatnet.weights.class_names import imagenet_class_names

ROOT = Path(__file__).resolve().parents[2]
needs_fashion_mnist = pytest.mark.needs("fashion-mnist")


@pytest.fixture(scope="module")
def fashion_mnist_test():
    return fashion_mnist("test")


@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_exists_and_decodes(kind: str) -> None:
    found = samples(kind)
    assert found and all(isinstance(s, Sample) for s in found)
    assert len({s.name for s in found}) == len(found)
    for sample in found:
        assert sample.path.is_file() and sample.path.stem == sample.name
        assert sample.caption and sample.licence
        assert sample.read_bytes() == sample.path.read_bytes()
        with Image.open(sample.path) as image:
            image.load()
    assert samples(kind) is found  # cached


def test_fashion_mnist_samples() -> None:
    found = samples("fashion-mnist")
    assert len(found) == 40
    assert Counter(s.label for s in found) == dict.fromkeys(range(10), 4)
    for sample in found:
        assert sample.class_name == FASHION_MNIST_CLASSES[sample.label]
        with Image.open(sample.path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        assert sample.image().mode == "L"


@needs_fashion_mnist
def test_fashion_mnist_samples_are_the_first_four_test_images_of_each_class(fashion_mnist_test) -> None:
    labels = fashion_mnist_test.labels.numpy()
    manifest = json.loads((GALLERY / "fashion-mnist" / "manifest.json").read_text(encoding="utf-8"))
    found = samples("fashion-mnist")
    assert [e["file"] for e in manifest] == [s.path.name for s in found]
    for entry, sample in zip(manifest, found, strict=True):
        index = entry["test_index"]
        assert sample.label == entry["label"] == labels[index]
        assert sample.caption == f"{sample.class_name} (test #{index})"
        with Image.open(sample.path) as image:
            assert np.array_equal(np.asarray(image), fashion_mnist_test.images[index, 0].numpy())
    expected = [int(i) for label in range(10) for i in np.flatnonzero(labels == label)[:4]]
    assert [e["test_index"] for e in manifest] == expected


def test_fashion_mnist_licence() -> None:
    folder = GALLERY / "fashion-mnist"
    text = (folder / "LICENSE").read_text(encoding="utf-8")
    assert "Zalando SE" in text and "MIT" in text and "Permission is hereby granted" in text
    assert "zalandoresearch/fashion-mnist" in (folder / "README.md").read_text(encoding="utf-8")


def test_photos() -> None:
    found = samples("photos")
    assert 6 <= len(found) <= 8
    imagenet = set(imagenet_class_names(1000))
    for sample in found:
        assert sample.label is None and sample.licence.strip()
        assert sample.class_name is None or sample.class_name in imagenet
        with Image.open(sample.path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) == 256
    assert sum(s.path.stat().st_size for s in found) < 400_000
    readme = (GALLERY / "photos" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{s.path.name}`" in readme and s.licence in readme for s in found)


def test_kind_for() -> None:
    assert kind_for(10, 1) == "fashion-mnist"
    assert kind_for(1000, 3) == "photos"
    assert kind_for(10, 3) == "photos"  # CIFAR-10
    assert kind_for(11821, 3) == "photos"


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="fashion-mnist, photos"):
        samples("cifar10")


@needs_fashion_mnist
def test_script_reproduces_the_fashion_mnist_folder(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_gallery", ROOT / "scripts" / "make_gallery.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path)]) == 0
    shipped = GALLERY / "fashion-mnist"
    made = sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir())
    assert made == sorted(p.name for p in shipped.iterdir())
    for name in made:
        assert (tmp_path / "fashion-mnist" / name).read_bytes() == (shipped / name).read_bytes(), name
