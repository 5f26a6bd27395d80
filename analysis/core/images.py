"""Reading user images safely: size and pixel limits checked before decoding, one clear error per problem.

Formats: PNG, JPEG, WebP, BMP, GIF (first frame), TIFF; RGBA, grey, CMYK, 16-bit and EXIF-rotated images
are normalised later by the model's preprocessing (:func:`coatnet.data.datasets.image_to_tensor`).
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_BYTES = 50 * 2**20  # 50 MiB
MAX_PIXELS = 40_000_000  # 40 megapixels
FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO", "PPM"}


class ImageError(ValueError):
    """An image that cannot be used; the message says what was wrong and what to do.

    Examples:
        >>> import analysis
        >>> try:
        ...     analysis.load_image(b"not an image", name="upload.png")
        ... except analysis.ImageError as error:
        ...     print(error)
        upload.png is not an image Pillow can read: choose a PNG, JPEG, WebP, BMP or GIF file
    """


def load_image(
    source: str | os.PathLike | bytes, *, name: str | None = None, max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:  # fmt: skip
    """Decode an image file (a path or its bytes) with limits, fully loaded (the file is closed).

    Args:
        source: a path, or the file's bytes (an upload).
        name: what to call it in messages (default: the path).
        max_bytes: refuse larger files.
        max_pixels: refuse images with more pixels (checked from the header, before decoding).

    Returns:
        The first frame as a loaded PIL image, EXIF orientation still to apply.

    Raises:
        ImageError: empty, too large, not an image, truncated or unsupported; the message says what to do.

    Examples:
        >>> import analysis
        >>> from PIL import Image
        >>> Image.new("RGB", (64, 48), "red").save("red.png")
        >>> analysis.load_image("red.png").size
        (64, 48)
    """
    if isinstance(source, bytes | bytearray):
        data, label = bytes(source), name or "the upload"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise ImageError(f"{label}: no such file; check the path")
        _check_bytes(label, path.stat().st_size, max_bytes)
        data = path.read_bytes()
    _check_bytes(label, len(data), max_bytes)
    try:
        with warnings.catch_warnings():  # the pixel limit is ours, checked below from the header
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ImageError(
            f"{label} is not an image Pillow can read: choose a PNG, JPEG, WebP, BMP or GIF file"
        ) from error
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit: refused at open
        raise ImageError(
            f"{label} has far more than {max_pixels / 1e6:.0f} megapixels ({error}): downscale it first"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:  # a header cut short
        raise ImageError(f"{label} is damaged or truncated ({error}); save or download it again") from error
    if image.format not in FORMATS:
        raise ImageError(f"{label} is a {image.format} image; use PNG, JPEG, WebP, BMP or GIF")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{label} is {width}x{height} ({width * height / 1e6:.0f} megapixels); the limit is "
            f"{max_pixels / 1e6:.0f} megapixels: downscale it first"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{label} has no pixels ({width}x{height})")
    try:
        image.seek(0)
        image.load()  # truncated files raise (ImageFile.LOAD_TRUNCATED_IMAGES is left at False)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as error:
        raise ImageError(f"{label} is damaged or truncated ({error}); save or download it again") from error
    return image


def _check_bytes(label: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise ImageError(f"{label} is empty (0 bytes): choose a PNG, JPEG, WebP, BMP or GIF image")
    if size > max_bytes:
        raise ImageError(
            f"{label} is {size / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB: "
            "use a smaller image"
        )
