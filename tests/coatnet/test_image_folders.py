"""Image folders (skipping unreadable images), batch preparation, and `coatnet eval` on a folder with
corrupt images. All data is synthetic, written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import coatnet
from coatnet.cli import commands as cli
from coatnet.data import Preprocessing, datasets
from coatnet.data.batches import iterate_batches, normalize, prepare_batch
from coatnet.data.datasets import (
    DatasetError,
    ImageFolder,
    Skipped,
    TensorImages,
    decode_image,
)
from tests.support.data import (
    image_folder,
    save_image,
    solid,
)

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


# ---------------------------------------------------------------- batch preparation


def test_prepare_batch_converts_channels_and_resizes() -> None:
    grey = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 1, 4, 3).contiguous()
    rgb_pre = Preprocessing(size=(4, 3), channels=3, mean=[0.5] * 3, std=[0.5] * 3)
    x = prepare_batch(grey, rgb_pre)
    assert x.shape == (2, 3, 4, 3) and x.dtype == torch.float32
    assert torch.allclose(x[1, :, 2], torch.tensor([0.0, 0.2, 1.0]).expand(3, 3))
    red = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    red[:, 0] = 255
    x = prepare_batch(red, Preprocessing.undescribed(size=(4, 4), channels=1))
    assert x.shape == (1, 1, 4, 4) and torch.allclose(x, torch.full_like(x, 0.299))
    flat = torch.full((2, 3, 5, 7), 102, dtype=torch.uint8)
    x = prepare_batch(flat, Preprocessing.undescribed(size=(10, 3), channels=3))
    assert x.shape == (2, 3, 10, 3) and torch.allclose(x, torch.full_like(x, 0.4))
    ramp = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    x = prepare_batch(ramp, Preprocessing.undescribed(size=(16, 16), channels=1))
    assert x.shape == (1, 1, 16, 16) and (x[0, 0, 0].diff() >= 0).all() and x.max() <= 210 / 255 + 1e-6
    y = normalize(prepare_batch(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), rgb_pre), rgb_pre)
    assert torch.allclose(y, torch.ones_like(y))
    pre = Preprocessing(size=(1, 1), channels=3, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
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
