"""Hostile and unusual images through the API, `coatnet analyze` and the app: each one analysed
correctly (a known answer on what the model sees) or refused in one line; the decompression bomb and the
20000x20 strip run in a subprocess whose address space is capped at 2 GB."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import analysis
import coatnet
from analysis.core.inputs import as_batch
from coatnet.cli.commands import main as coatnet_main
from tests.support import processes
from tests.support.apptest import clean, fresh, one_error


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient() -> Image.Image:
    """A smooth, asymmetric RGB picture (so that a rotation shows)."""
    y, x = np.mgrid[0:48, 0:64]
    return Image.fromarray(np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8))


def _noise() -> Image.Image:
    """A picture that does not compress: a cut file misses pixels."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


RED = Image.new("RGB", (16, 16), (255, 0, 0))


def _animated() -> bytes:
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    return _save(RED, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180 to show upright
    return _save(_gradient().rotate(180), "JPEG", quality=98, exif=exif)


def _sixteen_bit() -> bytes:
    values = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 256).astype(np.uint16)
    return _save(Image.frombytes("I;16", (16, 16), values.astype("<u2").tobytes()), "PNG")


def _rgba() -> bytes:
    return _save(Image.new("RGBA", (16, 16), (255, 0, 0, 128)), "PNG")


def _palette() -> bytes:
    return _save(_gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


# name -> (file bytes, the upright picture the model must see: None when only finiteness is checked)
ACCEPTED: dict[str, tuple[Callable[[], bytes], Callable[[], Image.Image] | None]] = {
    "one-pixel.png": (lambda: _save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
                      lambda: Image.new("RGB", (1, 1), (10, 200, 30))),
    "palette.png": (_palette, lambda: Image.open(io.BytesIO(_palette())).convert("RGB")),
    "cmyk.tiff": (lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"), lambda: RED),
    "sixteen-bit.png": (_sixteen_bit, lambda: Image.fromarray(
        np.arange(256, dtype=np.uint8).reshape(16, 16)).convert("RGB")),
    "rgba.png": (_rgba, lambda: Image.new("RGB", (16, 16), (255, 127, 127))),
    "animated.gif": (_animated, lambda: RED),
    "exif-rotated.jpg": (_exif_rotated, _gradient),
}  # fmt: skip

REFUSED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.png": (lambda: b"", "empty"),
    "truncated.png": (lambda: _save(_noise(), "PNG")[:2000], "truncated"),
    "truncated.jpg": (lambda: _save(_gradient(), "JPEG")[:300], "truncated"),
    "text.png": (lambda: b"just some notes, not a picture\n" * 4, "not an image"),
    "drawing.png": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
                    "not an image"),
    "page.png": (lambda: b"<!DOCTYPE html><html><body><img src=x></body></html>", "not an image"),
}  # fmt: skip


@pytest.fixture
def model(shared_toy) -> coatnet.CoAtNet:
    """A 3-channel toy at 32x32 with mean = std = 0.5."""
    return shared_toy(img_size=32)


@pytest.fixture(scope="module")
def demo() -> coatnet.CoAtNet:
    return coatnet.load_checkpoint("demo-pre")


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_an_unusual_image_is_analysed_as_the_picture_it_shows(
    name: str, model: coatnet.CoAtNet, demo: coatnet.CoAtNet
) -> None:
    data, upright = ACCEPTED[name]
    image = analysis.load_image(data(), name=name)
    seen = as_batch(image, model)
    expected = as_batch(upright(), model)
    tolerance = 0.06 if name.endswith(".jpg") else 1e-6  # JPEG is lossy; normalised units (1/255 = 0.008)
    assert (seen - expected).abs().mean() <= tolerance, name
    maps = analysis.attention_maps(demo, image)
    assert np.isfinite(maps.logits).all()
    assert all(np.isfinite(b.effective).all() for b in maps.blocks)


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_file_that_is_no_usable_image_is_refused_in_one_line(name: str, tmp_path: Path, capsys) -> None:
    data, fragment = REFUSED[name]
    with pytest.raises(analysis.ImageError) as caught:
        analysis.load_image(data(), name=name)
    message = str(caught.value)
    assert message.startswith(name) and fragment in message and "\n" not in message
    path = tmp_path / name
    path.write_bytes(data())
    capsys.readouterr()
    code = coatnet_main(
        ["analyze", str(path), "--model", "demo-pre", "--out", str(tmp_path / "o"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and fragment in err and name in err, err
    assert not (tmp_path / "o" / "report.html").exists()


@pytest.mark.parametrize("name", ["page.png", "truncated.jpg", "one-pixel.png", "exif-rotated.jpg"])
def test_the_app_takes_or_refuses_an_upload_in_one_line(name: str) -> None:
    at = fresh()
    at.run()
    at.radio(key="image_source").set_value("Upload").run()
    data = REFUSED[name][0]() if name in REFUSED else ACCEPTED[name][0]()
    at.file_uploader(key="image_upload").upload(name, data).run()
    if name in REFUSED:
        assert one_error(at).startswith(name)
    else:
        clean(at)


CAPPED = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
    "from coatnet.cli.commands import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.slow
def test_a_bomb_is_refused_and_a_long_strip_analysed_in_2_gb(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_save(Image.new("1", (20_000, 20_000)), "PNG"))
    assert bomb.stat().st_size < 2**20  # a small file
    strip = tmp_path / "strip.png"
    strip.write_bytes(_save(Image.new("RGB", (20_000, 20), (200, 100, 50)), "PNG"))
    for path, code in ((bomb, 2), (strip, 0)):
        argv = ["analyze", str(path), "--model", "demo-pre", "--out", str(tmp_path / path.stem)]
        done = processes.run([sys.executable, "-c", CAPPED, *argv, "--attributions", "gradcam", "--quiet"],
                             timeout=300)  # fmt: skip
        assert done.returncode == code, done.stderr[-2000:]
        if code == 2:
            assert "bomb.png" in done.stderr and "megapixels" in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        else:
            assert (tmp_path / path.stem / "report.html").exists()
