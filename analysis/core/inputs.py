"""Inputs of an analysis: the model's preprocessing, images as a batch on its device, and back."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from coatnet.data.batches import normalize, prepare_batch
from coatnet.data.datasets import image_to_tensor
from coatnet.data.preprocessing import Preprocessing
from coatnet.weights.checkpoint import preprocessing_of


def as_batch(
    images: torch.Tensor | Image.Image | Sequence[Image.Image], model: torch.nn.Module
) -> torch.Tensor:
    """A float batch (B, C, H, W) on the model's device: tensors pass through (a (C, H, W) gets a batch
    axis) and must already be normalised with the model's mean and std; PIL images are prepared with the
    model's own preprocessing. A tensor that looks unnormalised gets a one-line warning
    (:func:`warn_if_unnormalised`).

    Args:
        images: a tensor (B, C, H, W) or (C, H, W), a PIL image, or a sequence of PIL images.
        model: the model whose preprocessing and device apply.

    Returns:
        The batch, float, on the model's device.

    Examples:
        >>> import analysis
        >>> from PIL import Image
        >>> model = analysis.load_model("demo-pre")  # 1 channel, 28x28
        >>> analysis.as_batch(Image.new("RGB", (640, 480), "orange"), model).shape
        torch.Size([1, 1, 28, 28])
    """
    device = next(model.parameters()).device
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
        warn_if_unnormalised(batch, preprocessing_of(model))
        return batch.to(device)
    pil = [images] if isinstance(images, Image.Image) else list(images)
    pre = preprocessing_of(model)
    raw = torch.stack(
        [image_to_tensor(im, pre.size, pre.channels, pre.interpolation, pre.crop) for im in pil]
    )
    return normalize(prepare_batch(raw, pre, device=device), pre)


def looks_unnormalised(images: torch.Tensor, preprocessing: Preprocessing) -> bool:
    """Whether a batch looks like raw pixels in [0, 1] given to a model that normalises them: every value
    lies in [0, 1] while the model's mean is far from 0 (> 0.1 in some channel), so that a normalised image
    of it would hold negative values. A model without normalisation (mean 0, std 1) takes [0, 1] as is."""
    mean = torch.as_tensor(preprocessing.mean, dtype=torch.float32)
    if float(mean.abs().max()) <= 0.1 or images.numel() == 0 or not images.is_floating_point():
        return False
    low, high = float(images.min()), float(images.max())
    return low >= 0.0 and high <= 1.0


def warn_if_unnormalised(images: torch.Tensor, preprocessing: Preprocessing) -> None:
    """One line, as a UserWarning, when :func:`looks_unnormalised` says so."""
    if looks_unnormalised(images, preprocessing):
        mean = ", ".join(f"{m:.3g}" for m in preprocessing.mean)
        warnings.warn(
            f"these images look unnormalised (every value in [0, 1], the model's mean is {mean}): analyses "
            "take tensors normalised with the model's mean and std; pass PIL images to have them prepared",
            UserWarning,
            stacklevel=3,
        )


def display_image(image: torch.Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """A normalized (C, H, W) input back as the uint8 (H, W, C) picture the model sees.

    Args:
        image: one input, normalised with ``preprocessing``'s mean and std.
        preprocessing: the model's (:func:`preprocessing_of`).

    Returns:
        The picture, uint8 (H, W, C), to draw under a map.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> picture = analysis.display_image(torch.zeros(1, 28, 28), analysis.preprocessing_of(model))
        >>> picture.shape, picture.dtype.name, int(picture[0, 0, 0])  # 0 is the mean, 0.286 of white
        ((28, 28, 1), 'uint8', 73)
    """
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()


LISTED_CLASSES = 20  # a model with at most this many classes has them named in full
DATASET_TITLES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}


def preparation_note(
    picture: Image.Image,
    preprocessing: Preprocessing,
    class_names: Sequence[str] | None = None,
    dataset: str | None = None,
) -> str | None:
    """What the model's preprocessing does to ``picture`` and what the model knows, in one sentence, when
    the picture's channels or size differ from the model's input (a colour photo given to a 1-channel
    28 px Fashion-MNIST model); None when the picture is already what the model takes.

    Args:
        picture: the picture as given.
        preprocessing: the model's (:func:`preprocessing_of`): its ``size``, ``channels`` and ``crop`` apply.
        class_names: the model's classes, named in the note when there are few.
        dataset: what the model was trained on (``fashion-mnist``), named in the note.

    Returns:
        The note, or None.

    Examples:
        >>> import analysis, coatnet
        >>> from PIL import Image
        >>> model = analysis.load_model("demo-pre")
        >>> names = coatnet.class_names(model)
        >>> preprocessing = analysis.preprocessing_of(model)
        >>> photo = Image.new("RGB", (640, 480), "orange")
        >>> analysis.preparation_note(photo, preprocessing, names, "fashion-mnist")
        'A 1-channel 28x28 px Fashion-MNIST model: your picture (640x480, colour) was made grey,
        centre-cropped to a square and resized to 28x28 px. It knows only these 10 classes: T-shirt/top, ...'
        >>> analysis.preparation_note(Image.new("L", (28, 28)), preprocessing) is None
        True
    """
    from coatnet.data.datasets import crop_box

    height, width = preprocessing.size
    channels = preprocessing.channels
    one_channel = picture.mode in ("1", "L", "LA", "I", "I;16", "F")
    grey = one_channel or _looks_grey(picture)
    done = []
    if channels == 1 and not grey:
        done.append("made grey")
    elif channels == 3 and one_channel:
        done.append("given its grey in all three channels")
    crop = preprocessing.crop
    left, top, right, bottom = crop_box(picture.size, (height, width), crop)
    box = (right - left, bottom - top)
    if box[0] < picture.width - 0.5 or box[1] < picture.height - 0.5:
        same_shape = abs(picture.width * height - picture.height * width) < 0.5 * max(width, height)
        shape = f"its central {crop:.0%}" if same_shape else ("a square" if height == width else
                                                               f"the {width}:{height} shape")  # fmt: skip
        done.append(f"centre-cropped to {shape}")
    if abs(box[0] - width) > 0.5 or abs(box[1] - height) > 0.5:
        done.append(f"resized to {width}x{height} px")
    if not done:
        return None
    kind = "greyscale" if grey else "colour"
    title = DATASET_TITLES.get(str(dataset).lower(), dataset) if dataset else ""
    what = f"A {channels}-channel {width}x{height} px" + (f" {title}" if title else "") + " model"
    steps = ", ".join(done[:-1]) + (" and " if len(done) > 1 else "") + done[-1]
    sentence = f"{what}: your picture ({picture.width}x{picture.height}, {kind}) was {steps}."
    if class_names:
        names = list(class_names)
        if len(names) <= LISTED_CLASSES:
            sentence += f" It knows only these {len(names)} classes: {', '.join(names)}."
        else:
            sentence += f" It knows {len(names)} classes."
    return sentence


SMALL_SIDE = 0.5  # a picture whose shorter side is under this share of the model's input side is too small
LONG_ASPECT = 4.0  # a picture longer than this many times its width (or the other way) is too long


def size_note(size: tuple[int, int], preprocessing: Preprocessing) -> str | None:
    """One line when a picture is too far from the model's input for its prediction to mean much: its
    shorter side under half the model's input side, or a side more than four times the other.

    Args:
        size: the picture's (height, width) in pixels, as given.
        preprocessing: the model's (:func:`preprocessing_of`): its ``size`` applies.

    Returns:
        The note, or None.

    Examples:
        >>> import analysis
        >>> preprocessing = analysis.preprocessing_of(analysis.load_model("demo-pre"))
        >>> analysis.size_note((5, 5), preprocessing)
        "your picture is 5 x 5 px, far below the model's 28 x 28 px input: the prediction means little"
        >>> analysis.size_note((500, 3000), preprocessing).split(": ")[0]
        "your picture is 3000 x 500 px, 6:1, far from the model's 28 x 28 px input"
        >>> analysis.size_note((28, 30), preprocessing) is None
        True
    """
    height, width = (int(side) for side in size)
    rows, cols = preprocessing.size
    given, wanted = f"{width} x {height} px", f"{cols} x {rows} px"
    if min(height, width) < SMALL_SIDE * min(rows, cols):
        return f"your picture is {given}, far below the model's {wanted} input: the prediction means little"
    aspect = max(height, width) / max(1, min(height, width))
    if aspect > LONG_ASPECT * max(rows, cols) / min(rows, cols):
        return (
            f"your picture is {given}, {aspect:.0f}:1, far from the model's {wanted} input: the prediction "
            "means little"
        )
    return None


def _looks_grey(picture: Image.Image) -> bool:
    """Whether an RGB(A) picture's channels are (nearly) equal: a grey photo saved in colour."""
    if picture.mode not in ("RGB", "RGBA"):
        return False
    small = np.asarray(picture.convert("RGB").resize((64, 64)), dtype=np.int16)
    return int(np.abs(small - small.mean(axis=2, keepdims=True)).max()) <= 3
