"""The sample images shipped with the app, to try a model without uploading anything.

Two kinds live in ``app/gallery/<kind>/``, each with a ``manifest.json`` (regenerate both with
``scripts/make_gallery.py``):

* ``"fashion-mnist"``: 40 Fashion-MNIST test images (28x28 grey, 4 per class), MIT, Zalando SE;
* ``"photos"``: a few public-domain and CC0 colour photos from scikit-image's sample data, for ImageNet
  models.

Pure Python and Pillow: no Streamlit, so the app's pages and the tests share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

GALLERY = Path(__file__).resolve().parent / "gallery"
KINDS = ("fashion-mnist", "photos")
FASHION_MNIST_LICENCE = "MIT, © 2017 Zalando SE (Fashion-MNIST)"


@dataclass(frozen=True)
class Sample:
    """One gallery image.

    Attributes:
        name: the file stem, unique within its kind (e.g. ``"07-sneaker-0009"``, ``"chelsea"``).
        caption: what it shows, for display (``"Sneaker (test #9)"``, ``"a tabby cat (Chelsea)"``).
        path: the image file.
        label: the Fashion-MNIST class index, or None for photos.
        class_name: the Fashion-MNIST class name, or for photos the ImageNet-1k class (as in
            ``coatnet/weights/class_name_files/imagenet1k_classes.txt``) a good model should predict, or
            None when none fits.
        licence: the image's licence and author.
    """

    name: str
    caption: str
    path: Path
    label: int | None
    class_name: str | None
    licence: str

    def read_bytes(self) -> bytes:
        """The encoded file (PNG or JPEG), e.g. for an upload widget or ``st.image``."""
        return self.path.read_bytes()

    def image(self) -> Image.Image:
        """The decoded image: mode ``L`` for Fashion-MNIST, ``RGB`` for photos."""
        with Image.open(self.path) as image:
            return image.convert("L" if self.label is not None else "RGB")


@cache
def samples(kind: str) -> tuple[Sample, ...]:
    """The gallery's images of one kind, in manifest order (Fashion-MNIST: by class, then test index).

    Args:
        kind: ``"fashion-mnist"`` or ``"photos"`` (see :data:`KINDS` and :func:`kind_for`).

    Returns:
        The samples, read once from ``app/gallery/<kind>/manifest.json`` and cached.

    Raises:
        ValueError: for any other kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown gallery kind {kind!r}: choose one of {', '.join(KINDS)}")
    folder = GALLERY / kind
    entries = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if kind == "fashion-mnist":
        return tuple(
            Sample(
                name=Path(e["file"]).stem,
                caption=f"{e['class_name']} (test #{e['test_index']})",
                path=folder / e["file"],
                label=int(e["label"]),
                class_name=e["class_name"],
                licence=FASHION_MNIST_LICENCE,
            )
            for e in entries
        )
    return tuple(
        Sample(
            name=Path(e["file"]).stem,
            caption=e["caption"],
            path=folder / e["file"],
            label=None,
            class_name=e["imagenet_hint"],
            licence=e["licence"],
        )
        for e in entries
    )


def kind_for(num_classes: int, in_chans: int) -> str:
    """The gallery kind that suits a model.

    Fashion-MNIST images suit only what was trained on them: one input channel and 10 classes. Every
    other model gets the photos (a 1-channel model of another dataset sees them converted to grey by the
    usual preprocessing; a CIFAR-10 model sees them downscaled).

    Args:
        num_classes: the classifier's number of outputs.
        in_chans: the model's number of input channels.

    Returns:
        ``"fashion-mnist"`` or ``"photos"``.
    """
    return "fashion-mnist" if in_chans == 1 and num_classes == 10 else "photos"
