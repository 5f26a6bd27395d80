"""Regenerate the app's shipped image gallery in ``app/gallery/`` (read by ``app/gallery.py``).

Two parts, each optional:

* ``app/gallery/fashion-mnist/``: the first 4 Fashion-MNIST test images of each class (40 in all), as
  28x28 8-bit grey PNGs named ``<label>-<class slug>-<test index>.png``, with ``manifest.json``, the
  dataset's MIT ``LICENSE`` and a ``README.md``. Read with :func:`coatnet.data.datasets.fashion_mnist` from
  ``--fashion-mnist-root`` (default: Debian's ``dataset-fashion-mnist`` folder); skipped with
  ``--no-fashion-mnist``.
* ``app/gallery/photos/``: public-domain and CC0 colour photos that scikit-image ships inside its wheel
  (see :data:`PHOTOS`), shorter side resized to 256 px (Lanczos), converted to sRGB, saved as JPEG
  quality 90, with ``manifest.json`` and a ``README.md``. Made only when ``--skimage-wheel`` names the
  wheel; get it without installing it (scikit-image is not a dependency)::

      pip download scikit-image --no-deps -d /tmp/skimg

Run from the repository root::

    python scripts/make_gallery.py --skimage-wheel /tmp/skimg/scikit_image-*.whl

The output is deterministic: Pillow writes no timestamps in PNG or JPEG files, and no metadata is copied
from the sources, so a rerun with the same inputs (and the same Pillow) gives the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from coatnet.data.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 4
SHORT_SIDE = 256
JPEG_QUALITY = 90

FASHION_MNIST_LICENSE = """\
The MIT License (MIT)

Copyright © 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and \
associated documentation files (the “Software”), to deal in the Software without restriction, including \
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell \
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the \
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial \
portions of the Software.

THE SOFTWARE IS PROVIDED “AS IS”, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT \
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO \
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER \
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE \
USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

# file in the wheel's skimage/data/ -> manifest fields; licences and authors as skimage.data's docstrings
# give them (scikit-image 0.26). Left out: motorcycle_left.png (no licence stated), ihc.png ("no known
# copyright restrictions" only), and the grey, synthetic or pooch-fetched images.
PHOTOS = {
    "astronaut.png": {
        "caption": "astronaut Eileen Collins in her flight suit (NASA portrait)",
        "imagenet_hint": None,
        "source": "scikit-image: skimage.data.astronaut",
        "licence": "public domain, NASA (https://flic.kr/p/r9qvLn)",
    },
    "chelsea.png": {
        "caption": "a tabby cat (Chelsea)",
        "imagenet_hint": "tabby, tabby cat",
        "source": "scikit-image: skimage.data.chelsea",
        "licence": "CC0, Stefan van der Walt",
    },
    "coffee.png": {
        "caption": "an espresso in a red cup on a wooden table",
        "imagenet_hint": "espresso",
        "source": "scikit-image: skimage.data.coffee",
        "licence": "CC0, Rachel Michetti (courtesy of Pikolo Espresso Bar)",
    },
    "rocket.jpg": {
        "caption": "a Falcon 9 rocket on its launch pad at dusk (DSCOVR launch, SpaceX)",
        "imagenet_hint": "missile",
        "source": "scikit-image: skimage.data.rocket",
        "licence": "public domain, SpaceX (https://www.flickr.com/photos/spacexphotos/16511594820/)",
    },
    "hubble_deep_field.jpg": {
        "caption": "galaxies in the Hubble eXtreme Deep Field (no ImageNet class fits)",
        "imagenet_hint": None,
        "source": "scikit-image: skimage.data.hubble_deep_field",
        "licence": "public domain, NASA (HubbleSite, release 2012-37)",
    },
    "retina.jpg": {
        "caption": "a fundus photograph of a human retina (no ImageNet class fits)",
        "imagenet_hint": None,
        "source": "scikit-image: skimage.data.retina",
        "licence": "CC0 1.0, Mikael Häggström (Wikimedia Commons)",
    },
}


def slug(name: str) -> str:
    """``"T-shirt/top"`` -> ``"t-shirt-top"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def clear(folder: Path, pattern: str) -> None:
    """Remove earlier images so that a class or photo dropped from the list does not linger."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(pattern):
        old.unlink()


def make_fashion_mnist(root: Path, out: Path) -> list[dict]:
    """Write the Fashion-MNIST part into ``out``; returns its manifest."""
    test = fashion_mnist("test", root)
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    clear(out, "*.png")
    manifest = []
    for label, class_name in enumerate(FASHION_MNIST_CLASSES):
        for index in np.flatnonzero(labels == label)[:PER_CLASS].tolist():
            file = f"{label:02d}-{slug(class_name)}-{index:04d}.png"
            Image.fromarray(images[index]).save(out / file, optimize=True)  # uint8 (28, 28): mode L
            manifest.append({"file": file, "label": label, "class_name": class_name, "test_index": index})
    write_json(out / "manifest.json", manifest)
    (out / "LICENSE").write_text(FASHION_MNIST_LICENSE, encoding="utf-8")
    indices = "; ".join(
        f"{name} {', '.join(str(e['test_index']) for e in manifest if e['label'] == label)}"
        for label, name in enumerate(FASHION_MNIST_CLASSES)
    )
    (out / "README.md").write_text(
        "# Fashion-MNIST samples\n\n"
        f"These {len(manifest)} images are the first {PER_CLASS} of each class, in test-set order, of the "
        "Fashion-MNIST test split (`t10k-images-idx3-ubyte`), from Han Xiao, Kashif Rasul and Roland "
        'Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms" '
        "(2017), https://github.com/zalandoresearch/fashion-mnist, © 2017 Zalando SE under the MIT licence "
        "(`LICENSE`). Pixels are unchanged (28x28, 8-bit grey). Test indices (0-based) per class: "
        f"{indices}. `manifest.json` lists each file's label, class name and test index; "
        "`scripts/make_gallery.py` regenerates the folder.\n",
        encoding="utf-8",
    )
    return manifest


def to_srgb(image: Image.Image) -> Image.Image:
    """RGB pixels in sRGB: an embedded non-sRGB profile (rocket.jpg is Adobe RGB) is converted."""
    icc = image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image).convert("RGB")
    if icc:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "sRGB" not in ImageCms.getProfileDescription(profile):
            image = ImageCms.profileToProfile(
                image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
    return image


def make_photos(wheel: Path, out: Path) -> list[dict]:
    """Write the photo part into ``out`` from scikit-image's wheel; returns its manifest."""
    clear(out, "*.jpg")
    manifest = []
    with zipfile.ZipFile(wheel) as archive:
        for source, fields in PHOTOS.items():
            with Image.open(io.BytesIO(archive.read(f"skimage/data/{source}"))) as original:
                size = list(original.size)
                image = to_srgb(original)
            scale = SHORT_SIDE / min(size)
            image = image.resize((round(size[0] * scale), round(size[1] * scale)), Image.Resampling.LANCZOS)
            file = Path(source).stem + ".jpg"
            image.save(out / file, quality=JPEG_QUALITY, optimize=True)
            manifest.append({"file": file, **fields, "original_size": size})
    write_json(out / "manifest.json", manifest)
    rows = "\n".join(
        f"| `{e['file']}` | {e['caption']} | `{e['source'].split(': ')[1]}` | {e['licence']} |"
        for e in manifest
    )
    (out / "README.md").write_text(
        "# Photos\n\n"
        "Colour photos for the ImageNet models, taken from the sample images that scikit-image ships inside "
        f"its wheel (`{wheel.name}`, `skimage/data/`). Each was converted to sRGB, resized so that its "
        f"shorter side is {SHORT_SIDE} px (Lanczos) and saved as JPEG quality {JPEG_QUALITY}; "
        "`scripts/make_gallery.py` regenerates the folder. Licences and authors are as scikit-image's "
        "`skimage.data` documentation states them; only public-domain and CC0 images were kept.\n\n"
        "| file | shows | scikit-image | licence, author |\n| --- | --- | --- | --- |\n" + rows + "\n",
        encoding="utf-8",
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-mnist-root", type=Path, default=FASHION_MNIST_DIR)
    parser.add_argument("--no-fashion-mnist", action="store_true", help="leave the Fashion-MNIST part")
    parser.add_argument("--skimage-wheel", type=Path, help="scikit-image wheel; photos are made only with it")
    parser.add_argument("--out", type=Path, default=ROOT / "app" / "gallery", help="gallery folder")
    args = parser.parse_args(argv)
    if not args.no_fashion_mnist:
        made = make_fashion_mnist(args.fashion_mnist_root, args.out / "fashion-mnist")
        print(f"fashion-mnist: {len(made)} images in {args.out / 'fashion-mnist'}")
    if args.skimage_wheel:
        made = make_photos(args.skimage_wheel, args.out / "photos")
        print(f"photos: {len(made)} images in {args.out / 'photos'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
