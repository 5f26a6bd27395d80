"""Reading user images: limits before decoding, and one clear message per kind of bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from analysis.core.images import ImageError, load_image


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_common_formats_load_fully(fmt):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    loaded = load_image(encoded(image, fmt), name="x")
    assert loaded.size == (30, 20)
    loaded.getpixel((0, 0))  # decoded: no file left open


def test_a_path_works_and_a_missing_one_says_so(tmp_path):
    Image.new("L", (8, 8), 7).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").getpixel((1, 1)) == 7
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty \\(0 bytes\\)"),
        (b"%PDF-1.4 definitely not an image", "not an image Pillow can read"),
        (encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")[:60], "damaged or truncated"),
    ],
)
def test_bad_files_get_one_clear_message(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, name="upload.png")


def test_limits_are_checked_before_decoding():
    big = encoded(Image.new("L", (4000, 3000)), "PNG")  # 12 megapixels, a small file
    with pytest.raises(ImageError, match=r"12 megapixels.*limit is 10 megapixels: downscale"):
        load_image(big, max_pixels=10_000_000)
    with pytest.raises(ImageError, match="the limit is 0 MiB"):
        load_image(big, max_bytes=1000)


def test_beyond_pillows_own_bomb_limit_is_our_message_too():
    import warnings

    huge = encoded(Image.new("1", (20_000, 10_000)), "PNG")  # 200 megapixels: Pillow refuses it at open
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning leaks out
        with pytest.raises(ImageError, match=r"megapixels.*downscale it first"):
            load_image(huge)
        with pytest.raises(ImageError, match="100 megapixels"):
            load_image(encoded(Image.new("1", (10_000, 10_000)), "PNG"))


def test_a_tensor_that_looks_unnormalised_gets_one_warning_and_a_normalised_one_none():
    """Raw pixels in [0, 1] handed to a model that normalises (its mean far from 0) are said in one line;
    the same pixels normalised, or [0, 1] pixels for a model that does not normalise, are not."""
    import warnings

    import torch

    from analysis.core.inputs import as_batch, looks_unnormalised, preprocessing_of
    from coatnet.data.batches import normalize
    from tests.support.toys import toy

    model = toy()
    pixels = torch.rand(2, 3, 16, 16)
    with pytest.warns(UserWarning, match=r"look unnormalised .* mean is 0\.5, 0\.5, 0\.5") as caught:
        batch = as_batch(pixels, model)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert torch.equal(batch, pixels)  # said, not changed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_batch(normalize(pixels, preprocessing_of(model)), model)
    plain = preprocessing_of(model).replace(mean=[0.0] * 3, std=[1.0] * 3)  # no normalisation
    assert not looks_unnormalised(pixels, plain)
