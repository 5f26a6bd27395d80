"""Datasets: the IDX and CIFAR-10 binary readers, and dataset specs. All data is synthetic, written here."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from coatnet.data import datasets
from coatnet.data.datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetError,
    ImageFolder,
    TensorImages,
    cifar10,
    fashion_mnist,
    open_dataset,
    read_idx,
)
from tests.support.data import (
    cifar_records,
    idx_bytes,
    image_folder,
    write_cifar,
    write_fashion,
    write_idx,
)

# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trips(tmp_path: Path, suffix: str) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    out = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, array)
    labels = read_idx(write_idx(tmp_path / f"l-idx1-ubyte{suffix}", np.array([3, 1, 4, 1, 5])))
    assert labels.tolist() == [3, 1, 4, 1, 5]


def test_a_kept_idx_file_is_read_only_and_read_again_when_it_changes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l-idx1-ubyte.gz", np.array([3, 1, 4]))
    first = read_idx(path)
    assert read_idx(path) is first  # kept
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 9  # no caller can change what the next one reads
    write_idx(path, np.array([2, 7, 1, 8]))
    assert read_idx(path).tolist() == [2, 7, 1, 8]


def test_read_idx_rejects_bad_files_with_what_to_do(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8))
    cases = {
        "magic.idx": b"\x00\x00\x0d\x03" + good[4:],  # 0x0D: float data, not unsigned bytes
        "body.idx": good[:-3],
        "header.idx": good[:7],  # the dimensions cut short
        "empty.idx": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetError) as caught:
            read_idx(tmp_path / name)
        message = str(caught.value)
        assert name in message and "fetch" in message, message
    with pytest.raises(DatasetError, match="bad magic number"):
        read_idx(tmp_path / "magic.idx")
    with pytest.raises(DatasetError, match=r"header says \(4, 2, 2\) but holds 13 bytes"):
        read_idx(tmp_path / "body.idx")
    # a gzip stream that stops early, and a .gz that is no gzip at all
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-10])
    (tmp_path / "plain.gz").write_bytes(good)
    for name in ("cut.gz", "plain.gz"):
        with pytest.raises(DatasetError, match="fetch it again"):
            read_idx(tmp_path / name)


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_synthetic_files(tmp_path: Path, gz: bool) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_fashion(tmp_path, "train", train, np.array([0, 1, 2, 3, 4, 5, 9]), gz=gz)
    write_fashion(tmp_path, "test", test, np.array([9, 8, 7]), gz=gz)
    ds = fashion_mnist("train", tmp_path)
    assert isinstance(ds, TensorImages)
    assert ds.images.shape == (7, 1, 28, 28) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), train)
    assert ds.labels.tolist() == [0, 1, 2, 3, 4, 5, 9] and ds.labels.dtype == torch.int64
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.class_names[9] == "Ankle boot"
    assert ds.channels == 1 and ds.size == (28, 28) and ds.mean == (0.2860,)
    image, label = ds[6]
    assert label == 9 and torch.equal(image, torch.from_numpy(train[6])[None])
    for split in ("test", "val"):  # val means test
        ds = fashion_mnist(split, tmp_path)
        assert len(ds) == 3 and ds.labels.tolist() == [9, 8, 7]
        np.testing.assert_array_equal(ds.images[:, 0].numpy(), test)
    with pytest.raises(DatasetError, match="split must be"):
        fashion_mnist("dev", tmp_path)


def test_fashion_mnist_missing_files_name_them_and_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_idx(elsewhere / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28)))
    with pytest.raises(DatasetError) as caught:
        fashion_mnist("train", elsewhere)
    message = str(caught.value)
    assert "train-labels-idx1-ubyte" in message and "train-images" not in message
    assert "apt-get" not in message and "point to the folder" in message
    default = tmp_path / "default"  # stands in for /usr/share/datasets/fashion-mnist
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", default)
    with pytest.raises(DatasetError) as caught:
        fashion_mnist("test")
    message = str(caught.value)
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    with pytest.raises(DatasetError, match="apt-get install"):
        open_dataset("fashion-mnist", "test")  # the bare name means the default directory


def test_fashion_mnist_rejects_bad_labels_and_shapes(tmp_path: Path) -> None:
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    write_fashion(tmp_path / "a", "train", images, np.array([0, 10, 1]))
    with pytest.raises(DatasetError, match="labels up to 10, Fashion-MNIST has 10 classes"):
        fashion_mnist("train", tmp_path / "a")
    write_fashion(tmp_path / "b", "train", images, np.array([0, 1]))
    with pytest.raises(DatasetError, match="do not pair up"):
        fashion_mnist("train", tmp_path / "b")
    write_fashion(tmp_path / "c", "train", np.zeros((0, 28, 28)), np.zeros((0,)))
    assert len(fashion_mnist("train", tmp_path / "c")) == 0  # empty, not numpy's max() error


@pytest.mark.needs("fashion-mnist")
def test_real_fashion_mnist_when_installed() -> None:
    train, test = fashion_mnist("train"), open_dataset("fashion-mnist", "test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_reads_records_exactly(tmp_path: Path) -> None:
    written = write_cifar(tmp_path, per_batch=2)
    train = cifar10("train", tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    # the five batches in order, labels (b + i) % 10
    assert train.labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    # channel-major pixels: R plane, then G, then B
    assert train.images[0, :, 5, 5].tolist() == [0, 1, 2]
    assert train.images[3, :, 31, 0].tolist() == [13, 14, 15]  # batch 2, second record
    assert train.images[3, 0, 0, 1].item() == 201 and train.images[3, 1, 0, 1].item() == 14
    for k, name in enumerate(f"data_batch_{i}.bin" for i in range(1, 6)):
        expected = written[name][:, 1:].reshape(-1, 3, 32, 32)
        np.testing.assert_array_equal(train.images[2 * k : 2 * k + 2].numpy(), expected)
    test = cifar10("test", tmp_path)
    assert test.labels.tolist() == [5, 6] and test.images[1, :, 0, 0].tolist() == [53, 54, 55]
    assert test.class_names == CIFAR10_CLASSES and test.channels == 3 and test.size == (32, 32)


def test_cifar10_accepts_the_extracted_folder_and_its_parent(tmp_path: Path) -> None:
    names = tuple(f"class{i}" for i in range(10))
    write_cifar(tmp_path / "cifar-10-batches-bin", per_batch=1, meta=names)
    for root in (tmp_path, tmp_path / "cifar-10-batches-bin"):
        ds = cifar10("test", root)
        assert ds.labels.tolist() == [5] and ds.class_names == names  # batches.meta.txt, blank lines ignored
    for spec in (f"cifar10:{tmp_path}", f"cifar-10:{tmp_path}", str(tmp_path)):
        ds = open_dataset(spec, "train")
        assert ds.name == "cifar10" and len(ds) == 5


def test_cifar10_rejects_damaged_files(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cut", per_batch=2)
    with (tmp_path / "cut" / "test_batch.bin").open("ab") as f:
        f.write(b"\x00" * 100)
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records; fetch it again"):
        cifar10("test", tmp_path / "cut")
    write_cifar(tmp_path / "labels", per_batch=1)
    (tmp_path / "labels" / "test_batch.bin").write_bytes(cifar_records([42]).tobytes())
    with pytest.raises(DatasetError, match="labels up to 42, CIFAR-10 has 10 classes"):
        cifar10("test", tmp_path / "labels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as caught:
        cifar10("train", tmp_path / "empty")
    message = str(caught.value)
    assert (
        "data_batch_1.bin" in message
        and "data_batch_5.bin" in message
        and "cifar-10-binary.tar.gz" in message
    )
    assert "unpickle" not in message


class _Planted:
    """Unpickling this creates a directory: proof that someone unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_cifar10_refuses_the_pickled_version_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the planted payload really does run when unpickled (so the checks below mean something)
    pickle.loads(pickle.dumps(_Planted(tmp_path / "control")))
    assert (tmp_path / "control").is_dir()

    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled a dataset file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    marker = tmp_path / "unpickled"
    flat = tmp_path / "flat"  # a folder holding the python version's files directly
    nested = tmp_path / "nested"  # the python version's archive extracted: cifar-10-batches-py/
    for folder in (flat, nested / "cifar-10-batches-py"):
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            (folder / name).write_bytes(pickle.dumps(_Planted(marker)))
    for root, how in [(flat, "call"), (nested, "call"), (flat, "spec"), (nested, "spec")]:
        with pytest.raises(DatasetError) as caught:
            cifar10("train", root) if how == "call" else open_dataset(f"cifar10:{root}", "test")
        message = str(caught.value)
        assert "pickled python version" in message and "never unpickle" in message
        assert "binary" in message and "cifar-10-binary.tar.gz" in message
    for root in (flat, nested):
        with pytest.raises(DatasetError, match="never unpickle"):  # a bare DIR is recognised too
            open_dataset(str(root), "train")
    assert not marker.exists()


# ---------------------------------------------------------------- dataset specs


def test_open_dataset_specs_and_detection(tmp_path: Path) -> None:
    fmnist = tmp_path / "fm"
    write_fashion(fmnist, "train", np.zeros((2, 28, 28), dtype=np.uint8), np.array([1, 2]))
    write_fashion(fmnist, "test", np.zeros((1, 28, 28), dtype=np.uint8), np.array([3]))
    cifar = tmp_path / "cifar"
    write_cifar(cifar / "cifar-10-batches-bin", per_batch=1)
    folder = image_folder(tmp_path / "images", {"cat": [(1, 2, 3)], "dog": [(4, 5, 6)]})
    for spec in (f"fashion-mnist:{fmnist}", f"fashion_mnist:{fmnist}", f"fmnist:{fmnist}", str(fmnist)):
        ds = open_dataset(spec, "test")
        assert ds.name == "fashion-mnist" and ds.labels.tolist() == [3], spec
    for spec in (f"cifar10:{cifar}", f"CIFAR10:{cifar}", str(cifar), str(cifar / "cifar-10-batches-bin")):
        ds = open_dataset(spec, "test")
        assert ds.name == "cifar10" and ds.labels.tolist() == [5], spec
    for spec in (f"imagefolder:{folder}", str(folder)):
        ds = open_dataset(spec, "train", size=(4, 6), channels=1)
        assert isinstance(ds, ImageFolder) and ds.name == f"imagefolder:{folder}"
        assert ds.class_names == ("cat", "dog") and ds[0][0].shape == (1, 4, 6)
    assert open_dataset(str(folder), "test")[1][0].shape == (3, 224, 224)  # the default decoding
    colon = image_folder(tmp_path / "run 12:00", {"x": [(9, 9, 9)]})  # a bare DIR with ':' in its name
    assert open_dataset(str(colon), "test").class_names == ("x",)


def test_open_dataset_picks_split_folders(tmp_path: Path) -> None:
    image_folder(tmp_path / "tv" / "train", {"cat": [(1, 1, 1)] * 3, "dog": [(2, 2, 2)]})
    image_folder(tmp_path / "tv" / "val", {"cat": [(1, 1, 1)], "dog": [(2, 2, 2)] * 2})
    train, test = open_dataset(str(tmp_path / "tv"), "train"), open_dataset(str(tmp_path / "tv"), "test")
    assert train.root == tmp_path / "tv" / "train" and train.labels.tolist() == [0, 0, 0, 1]
    assert test.root == tmp_path / "tv" / "val" and test.labels.tolist() == [0, 1, 1]
    assert open_dataset(f"imagefolder:{tmp_path / 'tv'}", "val").root == tmp_path / "tv" / "val"
    image_folder(tmp_path / "tt" / "train", {"a": [(1, 1, 1)]})
    image_folder(tmp_path / "tt" / "test", {"a": [(1, 1, 1)]})
    assert open_dataset(str(tmp_path / "tt"), "test").root == tmp_path / "tt" / "test"
    # a train/ without val/ or test/: the test split is an error, not one class called "train"
    image_folder(tmp_path / "only" / "train", {"a": [(1, 1, 1)], "b": [(2, 2, 2)]})
    with pytest.raises(DatasetError, match=r"no val/ or test/ or validation/ for the test split"):
        open_dataset(str(tmp_path / "only"), "test")
    # a class that happens to be called "train" is still a class
    vehicles = image_folder(tmp_path / "vehicles", {"bus": [(1, 1, 1)], "train": [(2, 2, 2)]})
    assert open_dataset(str(vehicles), "test").class_names == ("bus", "train")


def test_open_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"unknown dataset kind 'mnist'.*fashion-mnist, cifar10 or imagefolder"
    ):
        open_dataset(f"mnist:{tmp_path}", "train")
    for spec in (
        str(tmp_path / "nothing"),
        f"cifar10:{tmp_path / 'nothing'}",
        f"imagefolder:{tmp_path / 'x'}",
    ):
        with pytest.raises(DatasetError, match=r"no data at .*give fashion-mnist"):
            open_dataset(spec, "train")
    with pytest.raises(DatasetError, match="split must be 'train' or 'test', got 'dev'"):
        open_dataset(str(image_folder(tmp_path / "d", {"a": [(1, 1, 1)]})), "dev")
    with pytest.raises(DatasetError, match="has no class sub-folders"):
        open_dataset(str(tmp_path / "d" / "a"), "train")  # a folder of images, not of classes
