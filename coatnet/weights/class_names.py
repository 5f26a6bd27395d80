"""ImageNet class names shipped with the package, for the label spaces of timm's CoAtNet weights.

The files in ``coatnet/data/`` (see its README) hold, per label space, one WordNet synset id and one
readable name per class, in the class-index order of timm's classifiers. A label space is recognized by
its number of classes, as timm does: 1000 is ImageNet-1k, 11821 is timm's ImageNet-12k, 21843 is Google's
ImageNet-21k (the TensorFlow MaxViTs' ``.in21k`` heads).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# number of classes -> (label space name, file stem in coatnet/data)
_LABEL_SPACES = {
    1000: ("imagenet-1k", "imagenet1k"),
    11821: ("imagenet-12k", "imagenet12k"),
    21843: ("imagenet-21k", "imagenet21k"),  # Google's fall11 release, as the MaxViT-B/L/XL 21k heads
}


def label_space_name(num_classes: int) -> str | None:
    """The ImageNet label space a classifier with ``num_classes`` outputs was trained on, if known.

    Args:
        num_classes: the classifier's number of outputs.

    Returns:
        ``"imagenet-1k"`` (1000), ``"imagenet-12k"`` (11821), ``"imagenet-21k"`` (21843), or None for any
        other count.
    """
    space = _LABEL_SPACES.get(num_classes)
    return space[0] if space else None


def imagenet_class_names(num_classes: int) -> tuple[str, ...] | None:
    """Readable class names (WordNet lemmas, e.g. ``"tench, Tinca tinca"``) in timm's class order.

    Args:
        num_classes: 1000 (ImageNet-1k), 11821 (timm's ImageNet-12k) or 21843 (ImageNet-21k).

    Returns:
        One name per class index, or None when ``num_classes`` is not one of those label spaces.
        Names are not unique (two ImageNet-1k classes are "crane"); see :func:`imagenet_synsets`.
    """
    space = _LABEL_SPACES.get(num_classes)
    return _read_lines(f"{space[1]}_classes.txt", num_classes) if space else None


def imagenet_synsets(num_classes: int) -> tuple[str, ...] | None:
    """WordNet synset ids (e.g. ``"n01440764"``), the unique class keys, in timm's class order.

    Args:
        num_classes: 1000 (ImageNet-1k), 11821 (timm's ImageNet-12k) or 21843 (ImageNet-21k).

    Returns:
        One synset id per class index, or None when ``num_classes`` is not one of those label spaces.
    """
    space = _LABEL_SPACES.get(num_classes)
    return _read_lines(f"{space[1]}_synsets.txt", num_classes) if space else None


@cache
def _read_lines(filename: str, expected: int) -> tuple[str, ...]:
    """The lines of a data file in ``coatnet/data``, checked against the expected count."""
    text = (resources.files("coatnet.weights") / "class_name_files" / filename).read_text(encoding="utf-8")
    lines = tuple(text.splitlines())
    if len(lines) != expected:
        raise RuntimeError(f"coatnet/data/{filename} has {len(lines)} lines, expected {expected}: reinstall")
    return lines
