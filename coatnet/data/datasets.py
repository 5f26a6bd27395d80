"""Image datasets for training and evaluation: Fashion-MNIST (gzipped IDX), CIFAR-10 (binary), ImageFolder.

Nothing here unpickles: IDX and CIFAR-10's binary version are plain bytes, and folder images decode
with Pillow. Items are ``uint8`` tensors ``(C, H, W)`` with an ``int`` label; scaling, resizing,
augmentation and normalization happen on whole batches (:mod:`coatnet.training.loop`).

A dataset is named by a spec string (:func:`open_dataset`): ``fashion-mnist`` (Debian's
``dataset-fashion-mnist`` files), ``fashion-mnist:DIR``, ``cifar10:DIR``, ``imagefolder:DIR``, or a bare
``DIR`` whose contents say which of the three it is.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from coatnet.data.preprocessing import INTERPOLATION, WHOLE_PICTURE, Preprocessing

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# mean / std per channel of the training images (the usual published values)
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's
}


class DatasetError(ValueError):
    """Data that cannot be used as given; the message says what is wrong and what to do."""


@dataclass
class Skipped:
    """Images that could not be decoded: counted (once each, however many epochs) and reported."""

    paths: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def examples(self) -> list[str]:
        return [f"{path} ({reason})" for path, reason in list(self.paths.items())[:5]]

    def add(self, path: str, reason: str) -> None:
        self.paths.setdefault(path, reason)

    def message(self) -> str:
        more = ", ..." if self.count > 5 else ""
        return f"skipped {self.count} unreadable image(s): " + ", ".join(self.examples) + more


class TensorImages(torch.utils.data.Dataset):
    """A whole dataset in memory: ``images`` (N, C, H, W) uint8 and ``labels`` (N,) int64."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, name: str, class_names: tuple[str, ...]
    ):
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise DatasetError(f"{name}: expected (N, C, H, W) uint8 images and N labels")
        self.images, self.labels = images, labels.long()
        self.name, self.class_names = name, tuple(class_names)
        self.channels, self.size = images.shape[1], (images.shape[2], images.shape[3])
        self.mean, self.std = STATS.get(name.split(":")[0], STATS["imagefolder"])
        self.skipped = Skipped()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, n: int, seed: int | None = None) -> TensorImages:
        """The first ``n`` items (for quick runs and tests), or with ``seed`` ``n`` items drawn at random
        (:func:`sample_indices`), kept in dataset order."""
        index = sample_indices(len(self), n, seed)
        return TensorImages(
            self.images[index], self.labels[index], name=self.name, class_names=self.class_names
        )


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>``: classes are the sorted sub-folder names; images decode with Pillow.

    Every image is converted to ``channels`` (1: grayscale, 3: RGB) and resized to ``size`` (bilinear,
    the shorter side then a centre crop). An unreadable image yields ``None`` (the loader drops it and
    :attr:`skipped` counts it in the main process).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        size: tuple[int, int] = (224, 224),
        channels: int = 3,
        interpolation: str = INTERPOLATION,
        crop: float = WHOLE_PICTURE,
    ):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"no image folder at {root}: give a directory with one sub-folder per class")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DatasetError(f"{root} has no class sub-folders: put each class's images in root/<class>/")
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(classes):
            files = sorted(
                p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not files:
                raise DatasetError(
                    f"class folder {root / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                    "add images or remove the folder"
                )
            self.samples += [(str(p), label) for p in files]
        self.root, self.name, self.class_names = root, f"imagefolder:{root}", tuple(classes)
        self.channels, self.size = channels, size
        self.interpolation, self.crop = interpolation, crop
        self.mean, self.std = STATS["imagefolder"] if channels == 3 else ((0.5,), (0.5,))
        self.labels = torch.tensor([label for _, label in self.samples])
        self.skipped = Skipped()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[None, str]:
        path, label = self.samples[index]
        try:
            return decode_image(path, self.size, self.channels, self.interpolation, self.crop), label
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            return None, f"{path}: {type(error).__name__}: {error}".splitlines()[0]

    def subset(self, n: int, seed: int | None = None) -> ImageFolder:
        """As :meth:`TensorImages.subset`."""
        index = sample_indices(len(self), n, seed)
        out = object.__new__(ImageFolder)
        out.__dict__.update(self.__dict__)
        out.samples = [self.samples[i] for i in index.tolist()]
        out.labels, out.skipped = self.labels[index], Skipped()
        return out


def sample_indices(total: int, n: int, seed: int | None) -> torch.Tensor:
    """The indices of a subset of ``n`` of ``total`` items: the first ``n``, or with ``seed`` a random
    draw without replacement from a generator seeded with it (the same draw on every machine), sorted."""
    n = max(0, min(int(n), total))
    if seed is None:
        return torch.arange(n)
    drawn = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:n]
    return drawn.sort().values


def decode_image(
    path: str | os.PathLike,
    size: tuple[int, int],
    channels: int,
    interpolation: str = INTERPOLATION,
    crop: float = WHOLE_PICTURE,
) -> torch.Tensor:
    """One image file as a (channels, H, W) uint8 tensor (see :func:`image_to_tensor`)."""
    with Image.open(path) as image:
        return image_to_tensor(image, size, channels, interpolation, crop)


def upright_picture(image: Image.Image) -> Image.Image:
    """The first frame, EXIF rotation applied, transparency over white, 16-bit scaled to 8 bits, as an
    8-bit ``L`` (grey) or ``RGB`` picture (CMYK, palette and the rest become RGB)."""
    from PIL import ImageOps

    image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey: convert() would clip at 255
        grey = np.asarray(image).astype(np.int64).clip(0, 65535) >> 8
        image = Image.fromarray(grey.astype(np.uint8))
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def crop_box(
    picture_size: tuple[int, int], size: tuple[int, int], crop: float = WHOLE_PICTURE
) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom), in pixels of a (width, height) picture, that the model's
    preprocessing resizes to its (H, W) input: the central ``crop`` fraction of the picture, then the
    largest centred box of the input's shape inside it (``PIL.ImageOps.fit`` with that bleed)."""
    width, height = picture_size
    bleed_x, bleed_y = (1 - crop) / 2 * width, (1 - crop) / 2 * height
    live_w, live_h = width - 2 * bleed_x, height - 2 * bleed_y
    ratio = size[1] / size[0]
    if live_w / live_h >= ratio:
        box_w, box_h = ratio * live_h, live_h
    else:
        box_w, box_h = live_w, live_w / ratio
    left, top = bleed_x + (live_w - box_w) / 2, bleed_y + (live_h - box_h) / 2
    return left, top, left + box_w, top + box_h


def image_to_tensor(
    image: Image.Image,
    size: tuple[int, int],
    channels: int,
    interpolation: str = INTERPOLATION,
    crop: float = WHOLE_PICTURE,
) -> torch.Tensor:
    """A PIL image as a (channels, H, W) uint8 tensor: first frame, EXIF rotation applied, transparency
    over white, 16-bit values scaled to 8, then the central ``crop`` fraction of the largest box of the
    target's shape, resized with ``interpolation`` (``crop=0.875`` is the usual "resize 256, crop 224")."""
    image = upright_picture(image).convert("L" if channels == 1 else "RGB")
    method = Image.Resampling[interpolation.upper()]
    box = crop_box(image.size, size, crop)
    image = image.resize((size[1], size[0]), method, box=box)
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzipped or not) as a read-only numpy array: magic 0x0000 0x08 ndim, big-endian dims,
    bytes. The last few files read are kept for the process, each under its path, size and modification
    time (a changed file is read again): Fashion-MNIST's training images take 0.2 s to decompress, and a
    study or a test suite opens them once per run."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return _read_idx(path)  # which says what is wrong
    return _kept_idx(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _kept_idx(path: str, size: int, mtime_ns: int) -> np.ndarray:
    return _read_idx(Path(path))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DatasetError(
            f"{path} cannot be read ({error}); the file may be truncated: fetch it again"
        ) from error
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number {data[:4]!r}); "
            "give the *-idx?-ubyte(.gz) files as published, or fetch them again"
        )
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: its IDX header is cut short; the file is truncated: fetch it again")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} but holds {body.size} bytes; fetch the file again")
    return body.reshape(dims)


def fashion_mnist(split: str, root: str | os.PathLike | None = None) -> TensorImages:
    """Fashion-MNIST ``train`` (60,000) or ``test`` (10,000) from its gzipped IDX files."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefix = {"train": "train", "test": "t10k"}[_split(split)]
    paths = [root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"]
    paths = [p if p.exists() or not p.with_suffix("").exists() else p.with_suffix("") for p in paths]
    missing = [str(p) for p in paths if not p.exists()]  # (un-gzipped files are accepted too)
    if missing:
        hint = (
            "install it with `sudo apt-get install dataset-fashion-mnist`"
            if root == FASHION_MNIST_DIR
            else "point to the folder holding the four *-idx?-ubyte.gz files"
        )
        raise DatasetError(f"Fashion-MNIST not found: missing {', '.join(missing)}; {hint}")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{root}: images {images.shape} and labels {labels.shape} do not pair up")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"{paths[1]}: labels up to {labels.max()}, Fashion-MNIST has 10 classes")
    return TensorImages(
        torch.from_numpy(images.copy())[:, None],
        torch.from_numpy(labels.astype(np.int64)),
        name="fashion-mnist",
        class_names=FASHION_MNIST_CLASSES,
    )


def cifar10(split: str, root: str | os.PathLike) -> TensorImages:
    """CIFAR-10 from its binary version (``cifar-10-batches-bin``): records of 1 label byte + 3072 pixels."""
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if _split(split) == "train" else ["test_batch.bin"]
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        pickled = (root / "data_batch_1").exists() or (root / "cifar-10-batches-py").exists()
        hint = (
            "this is CIFAR-10's pickled python version, which we never unpickle: download the binary "
            "version (cifar-10-binary.tar.gz) instead"
            if pickled
            else "download cifar-10-binary.tar.gz and extract it there"
        )
        raise DatasetError(f"CIFAR-10 binary files missing in {root}: {', '.join(missing)}; {hint}")
    records = []
    for name in names:
        data = np.fromfile(root / name, dtype=np.uint8)
        if data.size % 3073:
            raise DatasetError(f"{root / name} is not a whole number of 3073-byte records; fetch it again")
        records.append(data.reshape(-1, 3073))
    data = np.concatenate(records)
    if data.size and data[:, 0].max() >= len(CIFAR10_CLASSES):
        raise DatasetError(
            f"{root}: labels up to {data[:, 0].max()}, CIFAR-10 has 10 classes; is this CIFAR-10's binary "
            "version (not CIFAR-100's)?"
        )
    meta = root / "batches.meta.txt"
    classes = (
        tuple(line.strip() for line in meta.read_text().splitlines() if line.strip()) if meta.exists() else ()
    )
    return TensorImages(
        torch.from_numpy(data[:, 1:].reshape(-1, 3, 32, 32).copy()),
        torch.from_numpy(data[:, 0].astype(np.int64)),
        name="cifar10",
        class_names=classes if len(classes) == 10 else CIFAR10_CLASSES,
    )


def open_dataset(
    spec: str,
    split: str,
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    interpolation: str = INTERPOLATION,
    crop: float = WHOLE_PICTURE,
) -> TensorImages | ImageFolder:
    """The dataset a spec names (see the module docstring), for ``split`` ``train`` or ``test``.

    For an image folder, ``DIR/train`` and ``DIR/val`` (or ``DIR/test``) are used when present, and ``DIR``
    itself otherwise; ``size``, ``channels``, ``interpolation`` and ``crop`` say how to decode (default
    224x224 RGB, bilinear, the whole image).
    """
    kind, _, where = spec.partition(":")
    if not where or (Path(spec).exists() and not Path(where).exists()):
        kind, where = (
            (spec, "") if spec.lower() in {"fashion-mnist", "fashion_mnist", "fmnist"} else ("", spec)
        )
    kind = kind.lower().replace("_", "-")
    if kind in {"fashion-mnist", "fmnist"}:
        return fashion_mnist(split, Path(where).expanduser() if where else None)
    path = Path(where).expanduser()
    if not path.exists():
        raise DatasetError(
            f"no data at {path}: give fashion-mnist[:DIR], cifar10:DIR, imagefolder:DIR, or an existing DIR"
        )
    if not kind:
        kind = _detect(path)
    if kind == "fashion-mnist":
        return fashion_mnist(split, path)
    if kind in {"cifar10", "cifar-10"}:
        return cifar10(split, path)
    if kind == "imagefolder":
        return ImageFolder(_folder_split(path, split), size=size or (224, 224), channels=channels or 3,
                           interpolation=interpolation, crop=crop)  # fmt: skip
    raise DatasetError(
        f"unknown dataset kind {kind!r} in {spec!r}: use fashion-mnist, cifar10 or imagefolder"
    )


def _detect(path: Path) -> str:
    if path.is_dir() and any(path.glob("*-idx3-ubyte*")):
        return "fashion-mnist"
    cifar_files = ("cifar-10-batches-bin", "data_batch_1.bin", "cifar-10-batches-py", "data_batch_1")
    if any((path / name).exists() for name in cifar_files):  # the pickled ones: cifar10() says why not
        return "cifar10"
    return "imagefolder"


def _folder_split(path: Path, split: str) -> Path:
    names = ("train",) if _split(split) == "train" else ("val", "test", "validation")
    for name in names:
        if (path / name).is_dir():
            return path / name
    splits = [path / name for name in ("train", "val", "test", "validation") if (path / name).is_dir()]
    if any(sub.is_dir() for folder in splits for sub in folder.iterdir()):  # split folders, not classes
        wanted = " or ".join(f"{name}/" for name in names)
        raise DatasetError(
            f"{path} is split into sub-folders but has no {wanted} for the {split} split: "
            "add one, or point to a folder of class sub-folders"
        )
    return path


def _split(split: str) -> str:
    if split not in {"train", "test", "val"}:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    return "train" if split == "train" else "test"


def open_for_model(
    spec: str, split: str, model: torch.nn.Module, preprocessing: Preprocessing
) -> TensorImages | ImageFolder:
    """:func:`open_dataset` decoded as ``preprocessing`` says (a checkpoint's), refused with a one-line
    reason when its classes are not the model's."""
    dataset = open_dataset(
        spec, split, size=preprocessing.size, channels=preprocessing.channels,
        interpolation=preprocessing.interpolation, crop=preprocessing.crop,
    )  # fmt: skip
    classes = model.config.num_classes
    if len(dataset.class_names) != classes:
        raise DatasetError(
            f"{spec} has {len(dataset.class_names)} classes but the model predicts {classes}: use it on the "
            "data it was trained for"
        )
    return dataset
