"""Datasets: IDX and CIFAR-10 binary readers, image folders (skipping unreadable images), dataset specs,
batch preparation, and `coatnet eval` on a folder with corrupt images. All data is synthetic, written here."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import coatnet
from coatnet import cli, datasets
from coatnet.batches import iterate_batches, normalize, prepare_batch
from coatnet.datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetError,
    ImageFolder,
    Skipped,
    TensorImages,
    cifar10,
    decode_image,
    fashion_mnist,
    open_dataset,
    read_idx,
)

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- writers of synthetic files


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fashion(root: Path, split: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    prefix = {"train": "train", "test": "t10k"}[split]
    suffix = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def cifar_records(labels: list[int], first_value: int = 0) -> np.ndarray:
    """One record per label: the R plane is all ``v``, G ``v + 1``, B ``v + 2``, with ``v`` counting up
    by 3 from ``first_value``; pixel (0, 1) of R is 200 + the record's index (to tell CHW from HWC)."""
    records = np.zeros((len(labels), 3073), dtype=np.uint8)
    for i, label in enumerate(labels):
        v = first_value + 3 * i
        planes = np.stack([np.full((32, 32), v + c, dtype=np.uint8) for c in range(3)])
        planes[0, 0, 1] = 200 + i
        records[i, 0] = label
        records[i, 1:] = planes.reshape(-1)
    return records


def write_cifar(
    root: Path, *, per_batch: int = 2, meta: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """data_batch_1..5.bin and test_batch.bin; batch ``b`` holds labels ``(b + i) % 10``."""
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for b, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        records = cifar_records([(b + i) % 10 for i in range(per_batch)], first_value=10 * b)
        (root / name).write_bytes(records.tobytes())
        written[name] = records
    if meta is not None:
        (root / "batches.meta.txt").write_text("\n".join(meta) + "\n\n")
    return written


def save_image(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def solid(color: tuple[int, int, int], h: int = 12, w: int = 12) -> np.ndarray:
    return np.broadcast_to(np.array(color, dtype=np.uint8), (h, w, 3)).copy()


def image_folder(root: Path, layout: dict[str, list[tuple[int, int, int]]]) -> Path:
    """``root/<class>/<i>.png`` with one solid-colour image per colour."""
    for name, colors in layout.items():
        for i, color in enumerate(colors):
            save_image(root / name / f"{i}.png", solid(color))
    return root


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trips(tmp_path: Path, suffix: str) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    out = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, array)
    labels = read_idx(write_idx(tmp_path / f"l-idx1-ubyte{suffix}", np.array([3, 1, 4, 1, 5])))
    assert labels.tolist() == [3, 1, 4, 1, 5]


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


def test_real_fashion_mnist_when_installed() -> None:
    if not (REAL_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist is not installed")
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


# ---------------------------------------------------------------- image folders


def test_image_folder_classes_labels_channels_and_size(tmp_path: Path) -> None:
    root = image_folder(
        tmp_path / "data",
        {"zebra": [(200, 100, 50)], "apple": [(255, 0, 0), (0, 255, 0)], "mango": [(0, 0, 255)]},
    )
    (root / ".cache").mkdir()  # hidden folders are no classes
    save_image(root / ".cache" / "x.png", solid((1, 2, 3)))
    (root / "notes.txt").write_text("not a class")
    (root / "apple" / "readme.txt").write_text("not an image")
    save_image(root / "mango" / "deeper" / "1.png", solid((0, 0, 250)))  # found in sub-folders too
    ds = ImageFolder(root, size=(8, 10), channels=3)
    assert ds.class_names == ("apple", "mango", "zebra")
    assert [(Path(p).relative_to(root).as_posix(), label) for p, label in ds.samples] == [
        ("apple/0.png", 0),
        ("apple/1.png", 0),
        ("mango/0.png", 1),
        ("mango/deeper/1.png", 1),
        ("zebra/0.png", 2),
    ]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2] and len(ds) == 5
    image, label = ds[4]
    assert label == 2 and image.shape == (3, 8, 10) and image.dtype == torch.uint8
    assert image[:, 4, 5].tolist() == [200, 100, 50]
    assert ds.mean == datasets.STATS["imagefolder"][0]
    grey = ImageFolder(root, size=(5, 6), channels=1)
    image, _ = grey[4]
    assert image.shape == (1, 5, 6)
    # ITU-R 601-2 luma: 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    assert abs(int(image[0, 2, 3]) - 124) <= 1
    assert grey.mean == (0.5,) and grey.std == (0.5,)
    assert grey.subset(2).labels.tolist() == [0, 0] and len(grey.subset(2)) == 2


def test_image_folder_resizes_by_the_shorter_side_and_crops_the_centre(tmp_path: Path) -> None:
    wide = np.zeros((20, 60, 3), dtype=np.uint8)  # red | green | blue thirds
    wide[:, :20, 0] = wide[:, 20:40, 1] = wide[:, 40:, 2] = 255
    save_image(tmp_path / "wide.png", wide)
    out = decode_image(tmp_path / "wide.png", (10, 10), 3)
    assert out.shape == (3, 10, 10)
    assert out[:, :, 2:8].amin(dim=(1, 2)).tolist() == [0, 255, 0]  # only the green centre is left
    assert out[:, :, 2:8].amax(dim=(1, 2)).tolist() == [0, 255, 0]


def test_decoding_follows_exif_rotation_and_odd_modes(tmp_path: Path) -> None:
    stored = np.zeros((16, 32, 3), dtype=np.uint8)  # stored 32 wide, 16 high: left half dark, right bright
    stored[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save_image(tmp_path / "rotated.jpg", stored, exif=exif, quality=95)
    save_image(tmp_path / "plain.jpg", stored, quality=95)
    shown = decode_image(tmp_path / "rotated.jpg", (32, 16), 1)[0].float()
    assert shown.shape == (32, 16)  # now 16 wide and 32 high: the left half went to the top
    assert shown[:14].mean() < 10 and shown[18:].mean() > 245
    plain = decode_image(tmp_path / "plain.jpg", (16, 32), 1)[0].float()
    assert plain[:, :14].mean() < 10 and plain[:, 18:].mean() > 245
    # RGBA: composited over white (a transparent pixel is white, an opaque one keeps its colour)
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = np.arange(6)[None, :] * 50
    save_image(tmp_path / "rgba.png", rgba)
    decoded = decode_image(tmp_path / "rgba.png", (6, 6), 3)
    assert decoded[:, 3, 0].tolist() == [255, 255, 255]  # alpha 0
    alpha = 150 / 255  # column 3
    expected = [round(c * alpha + 255 * (1 - alpha)) for c in (10, 20, 30)]
    assert all(abs(a - b) <= 1 for a, b in zip(decoded[:, 3, 3].tolist(), expected, strict=True))
    # 16-bit greyscale (PNG, TIFF, PGM): scaled to 8 bits (value >> 8), not clipped at 255
    grey16 = np.full((6, 6), 0x8000, dtype=np.uint16)
    grey16[0, :3] = (0xFFFF, 0x0100, 0x00FF)
    for suffix in (".png", ".tif", ".pgm"):
        save_image(tmp_path / f"grey16{suffix}", grey16)
        out = decode_image(tmp_path / f"grey16{suffix}", (6, 6), 1)[0]
        assert out[0, :4].tolist() == [255, 1, 0, 128], suffix
        assert out[3, 3].item() == 128
        assert decode_image(tmp_path / f"grey16{suffix}", (6, 6), 3)[:, 0, 0].tolist() == [255] * 3
    # palette GIF with several frames: the first frame
    frames = [Image.fromarray(solid(c, 6, 6)).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert decode_image(tmp_path / "anim.gif", (6, 6), 3)[:, 2, 2].tolist() == [255, 0, 0]


def test_image_folder_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no image folder at .*one sub-folder per class"):
        ImageFolder(tmp_path / "missing")
    flat = tmp_path / "flat"
    save_image(flat / "a.png", solid((1, 1, 1)))
    with pytest.raises(
        DatasetError, match=r"has no class sub-folders: put each class's images in root/<class>/"
    ):
        ImageFolder(flat)
    root = image_folder(tmp_path / "data", {"cat": [(1, 2, 3)]})
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError) as caught:
        ImageFolder(root)
    message = str(caught.value)
    assert str(root / "dog") in message and "holds no images" in message and ".png" in message
    assert "add images or remove the folder" in message


def corrupt_folder(root: Path) -> tuple[Path, list[Path]]:
    """Two classes, four good images and three unreadable ones."""
    image_folder(root, {"a": [(255, 0, 0), (250, 0, 0)], "b": [(0, 0, 255), (0, 0, 250)]})
    rng = np.random.default_rng(1)
    noise = root / "a" / "noise.png"
    noise.write_bytes(rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    jpeg = save_image(root / "b" / "cut.jpg", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    empty = root / "b" / "empty.jpeg"
    empty.write_bytes(b"")
    return root, [noise, jpeg, empty]


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_images_are_skipped_and_counted(tmp_path: Path, workers: int) -> None:
    root, bad = corrupt_folder(tmp_path / "data")
    ds = ImageFolder(root, size=(8, 8), channels=3)
    assert len(ds) == 7 and ds.skipped.count == 0
    assert ds[ds.samples.index((str(bad[0]), 0))][0] is None
    batches = list(iterate_batches(ds, torch.arange(len(ds)), 3, workers=workers))
    assert [len(labels) for _, labels in batches] == [2, 2, 0]  # a, a, a/noise | b/0, b/1, b/cut | b/empty
    images = torch.cat([b[0] for b in batches if len(b[1])])
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == [0, 0, 1, 1]
    assert images.shape == (4, 3, 8, 8) and images[:, :, 4, 4].tolist() == [
        [255, 0, 0],
        [250, 0, 0],
        [0, 0, 255],
        [0, 0, 250],
    ]
    assert batches[-1][0].numel() == 0 and batches[-1][1].dtype == torch.int64
    assert ds.skipped.count == 3
    assert [example.split(" (")[0] for example in ds.skipped.examples] == [str(p) for p in bad]
    assert "UnidentifiedImageError" in ds.skipped.examples[0] and "truncated" in ds.skipped.examples[1]
    message = ds.skipped.message()
    assert message.startswith("skipped 3 unreadable image(s): ") and str(bad[1]) in message
    assert not message.endswith(", ...")


def test_skipped_keeps_five_examples() -> None:
    skipped = Skipped()
    for i in range(7):
        skipped.add(f"/x/{i}.png", "broken")
    assert skipped.count == 7 and skipped.examples == [f"/x/{i}.png (broken)" for i in range(5)]
    assert skipped.message() == "skipped 7 unreadable image(s): " + ", ".join(skipped.examples) + ", ..."


def test_tensor_batches_and_subset() -> None:
    images = torch.arange(5 * 2 * 2, dtype=torch.uint8).view(5, 1, 2, 2)
    ds = TensorImages(images, torch.tensor([4, 3, 2, 1, 0]), name="cifar10", class_names=("x",) * 5)
    assert ds.mean == datasets.STATS["cifar10"][0]
    order = torch.tensor([4, 0, 2, 1, 3])
    batches = list(iterate_batches(ds, order, 2))
    assert [b[1].tolist() for b in batches] == [[0, 4], [2, 3], [1]]
    assert torch.equal(batches[0][0], images[[4, 0]])
    assert [b[1].tolist() for b in iterate_batches(ds, order, 2, drop_last=True)] == [[0, 4], [2, 3]]
    assert ds.subset(2).labels.tolist() == [4, 3] and ds.subset(2).name == "cifar10"
    with pytest.raises(DatasetError, match=r"expected \(N, C, H, W\) uint8"):
        TensorImages(images.float(), torch.zeros(5), name="x", class_names=())
    with pytest.raises(DatasetError):
        TensorImages(images, torch.zeros(4), name="x", class_names=())


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


# ---------------------------------------------------------------- batch preparation


def test_prepare_batch_converts_channels_and_resizes() -> None:
    grey = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 1, 4, 3).contiguous()
    rgb_pre = {"size": [4, 3], "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    x = prepare_batch(grey, rgb_pre)
    assert x.shape == (2, 3, 4, 3) and x.dtype == torch.float32
    assert torch.allclose(x[1, :, 2], torch.tensor([0.0, 0.2, 1.0]).expand(3, 3))
    red = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    red[:, 0] = 255
    x = prepare_batch(red, {"size": [4, 4], "channels": 1})
    assert x.shape == (1, 1, 4, 4) and torch.allclose(x, torch.full_like(x, 0.299))
    flat = torch.full((2, 3, 5, 7), 102, dtype=torch.uint8)
    x = prepare_batch(flat, {"size": [10, 3], "channels": 3})
    assert x.shape == (2, 3, 10, 3) and torch.allclose(x, torch.full_like(x, 0.4))
    ramp = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    x = prepare_batch(ramp, {"size": [16, 16], "channels": 1})
    assert x.shape == (1, 1, 16, 16) and (x[0, 0, 0].diff() >= 0).all() and x.max() <= 210 / 255 + 1e-6
    y = normalize(prepare_batch(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), rgb_pre), rgb_pre)
    assert torch.allclose(y, torch.ones_like(y))
    pre = {"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 2.0]}
    y = normalize(torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1), pre)
    assert y.flatten().tolist() == [-1.0, 1.0, 0.5]


# ---------------------------------------------------------------- coatnet eval


@pytest.fixture
def toy_checkpoint(tmp_path: Path) -> Path:
    model = coatnet.create_model("coatnet_toy", img_size=32, in_chans=3, num_classes=2)
    preprocessing = {
        "size": [32, 32],
        "channels": 3,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bilinear",
        "crop": 1.0,
    }
    return coatnet.save_checkpoint(
        model, tmp_path / "toy.safetensors", class_names=["a", "b"], preprocessing=preprocessing
    )


def test_eval_reports_skipped_images(
    tmp_path: Path, toy_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, bad = corrupt_folder(tmp_path / "data")
    json_out = tmp_path / "eval.json"
    argv = ["eval", str(toy_checkpoint), "--data", str(root), "--workers", "0", "--device", "cpu"]
    assert cli.main([*argv, "--quiet", "--batch-size", "3", "--json", str(json_out)]) == 0
    captured = capsys.readouterr()
    assert f"on imagefolder:{root} test:" in captured.out
    assert "(4 images, 3 skipped)" in captured.out
    assert "skipped 3 unreadable image(s): " in captured.err
    assert all(str(p) in captured.err for p in bad)
    result = json.loads(json_out.read_text())
    assert result["count"] == 4 and result["skipped"] == 3 and result["class_names"] == ["a", "b"]
    assert sum(map(sum, result["confusion"])) == 4


def test_eval_missing_data_is_a_one_line_error(
    tmp_path: Path, toy_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    assert cli.main(["eval", str(toy_checkpoint), "--data", str(missing), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("coatnet eval: error: no data at ")
        and str(missing) in lines[0]
    )
    three = image_folder(tmp_path / "three", {"a": [(1, 1, 1)], "b": [(2, 2, 2)], "c": [(3, 3, 3)]})
    assert cli.main(["eval", str(toy_checkpoint), "--data", str(three), "--quiet", "--workers", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "has 3 classes but the model predicts 2" in lines[0]
