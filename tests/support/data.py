"""Synthetic dataset files: IDX (Fashion-MNIST's format), CIFAR-10 binary records, image folders; and
where the real Fashion-MNIST lies."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from coatnet.data.datasets import FASHION_MNIST_DIR

FASHION_MNIST = FASHION_MNIST_DIR  # where the real Fashion-MNIST lies: the package's one default, not a copy


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


def make_fashion_like(root: Path, *, n_train: int, n_test: int, size: int = 32, seed: int = 0) -> Path:
    """Fashion-MNIST-shaped IDX files: 10 classes, each a bright block at its own place, plus noise."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, size, size))
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 5)
            images[i, r * 12 + 4 : r * 12 + 12, c * 6 : c * 6 + 6] += 180
        write_fashion(root, split, np.clip(images, 0, 255), labels)
    return root


def pictures(folder, count: int) -> list[str]:
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image{i}.png")
        paths.append(str(folder / f"image{i}.png"))
    return paths


DEMO_GALLERY = Path(__file__).resolve().parents[2] / "app" / "gallery" / "fashion-mnist"


def demo_image_set(root: Path) -> Path:
    """Four Fashion-MNIST test images of the app's gallery as a folder of your own images: a coat, a bag and
    a T-shirt in folders named after their classes (``t-shirt_top`` for ``T-shirt/top``), and a sandal
    directly in ``root`` (unlabelled); with a text file beside them."""
    for folder, sample in (
        ("Coat", "04-coat-0006"),
        ("Bag", "08-bag-0018"),
        ("t-shirt_top", "00-t-shirt-top-0019"),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{sample}.png").write_bytes((DEMO_GALLERY / f"{sample}.png").read_bytes())
    (root / "05-sandal-0008.png").write_bytes((DEMO_GALLERY / "05-sandal-0008.png").read_bytes())
    (root / "notes.txt").write_text("not an image")
    return root
