"""Reading a set of the user's images (analysis.core.image_sets): bad files are skipped with their reason
and counted, never raised; a set over the limits is refused whole, a zip's from its directory before any
member is unpacked; labels come from folders that name the model's classes."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from analysis import ImageError, ImageSet, ImageSetError, load_image, read_folder, read_uploads, read_zip
from analysis.core import image_sets
from tests.support.data import save_image

CLASSES = ("T-shirt/top", "Trouser", "Coat", "Ankle boot")


def png(shade: int = 128) -> bytes:
    """A small grey PNG's bytes."""
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.full((12, 12), shade, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


@pytest.fixture
def unpacked(monkeypatch) -> list[str]:
    """The zip members opened for reading, in order: a refused zip opens none."""
    opened: list[str] = []
    original = zipfile.ZipFile.open

    def open_member(self, name, mode="r", *args, **kwargs):
        if mode == "r":  # not the writes that made the zip
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return original(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)
    return opened


def test_uploads_skip_a_corrupt_image_and_a_text_file_and_count_them():
    good = png()
    found = read_uploads(
        [("a.png", good), ("broken.png", good[:45]), ("notes.txt", b"hello"), ("b.png", good)]
    )
    assert [image.name for image in found.images] == ["a.png", "b.png"]
    assert found.count == 2 and found.images[0].data == good and found.labelled == 0
    reasons = {s.name: s.reason for s in found.skipped}
    assert list(reasons) == ["broken.png", "notes.txt"]
    with pytest.raises(ImageError) as refused:  # the checks a single upload gets, in their own words
        load_image(good[:45], name="broken.png")
    assert reasons["broken.png"] == str(refused.value) and "truncated" in reasons["broken.png"]
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert found.origin == "4 uploaded files"


def test_an_upload_over_the_image_limit_is_skipped_with_load_image_s_reason(monkeypatch):
    monkeypatch.setattr(image_sets, "MAX_BYTES", len(png()) - 1)
    found = read_uploads([("big.png", png()), ("empty.png", b"")])
    assert found.count == 0
    assert found.skipped[0].reason.startswith("big.png is 0 MiB; the limit is 0 MiB")
    assert found.skipped[1].reason.startswith("empty.png is empty (0 bytes)")


def test_two_files_of_one_name_keep_both():
    found = read_uploads([("a.png", png(10)), ("a.png", png(20))])
    assert [image.name for image in found.images] == ["a.png", "a.png (2)"]


def test_a_zip_declaring_more_bytes_than_the_limit_is_refused_before_anything_is_unpacked(
    monkeypatch, unpacked
):
    monkeypatch.setattr(image_sets, "MAX_TOTAL_BYTES", 2**20)
    bomb = zipped({"zeros.png": bytes(3 * 2**20)})  # 3 MB of zeros in a few kB: a small zip bomb
    assert len(bomb) < 2**15
    with pytest.raises(
        ImageSetError, match=r"bomb.zip holds 3 MB unpacked, as its directory declares; .* 1 MB"
    ):
        read_zip(bomb, name="bomb.zip")
    with pytest.raises(ImageSetError, match="3 MB unpacked"):  # inside an upload too
        read_uploads([("a.png", png()), ("bomb.zip", bomb)])
    assert unpacked == []


def test_a_zip_with_too_many_members_is_refused_before_anything_is_unpacked(monkeypatch, unpacked):
    monkeypatch.setattr(image_sets, "MAX_IMAGES", 3)
    data = zipped({f"{i}.png": png(i) for i in range(4)})
    with pytest.raises(ImageSetError, match=r"many\.zip holds 4 files; a set takes at most 3"):
        read_zip(data, name="many.zip")
    assert unpacked == []
    # folders and the archiver's own files are not members of the set
    fine = zipped({"set/": b"", **{f"set/{i}.png": png(i) for i in range(3)}, "__MACOSX/set/._0.png": b"x"})
    assert read_zip(fine).count == 3


def test_a_zip_member_that_leaves_the_archive_is_never_read(unpacked):
    data = zipped({"../evil.png": png(), "/etc/abs.png": png(), "ok/../../up.png": png(), "C:/win.png": png(),
                   "fine.png": png()})  # fmt: skip
    found = read_zip(data)
    assert [image.name for image in found.images] == ["fine.png"]
    assert [s.name for s in found.skipped] == ["../evil.png", "/etc/abs.png", "ok/../../up.png", "C:/win.png"]
    assert all(s.reason == "a path outside the zip (.. or absolute): not read" for s in found.skipped)
    assert unpacked == ["fine.png"]


def test_a_zip_labels_its_images_by_the_folders_that_name_a_class():
    names = ("mine/Coat/1.png", "mine/t-shirt_top/2.png", "mine/ankle BOOT/x/3.png", "mine/4.png")
    data = zipped({**{name: png(i) for i, name in enumerate(names)}, "inner.zip": zipped({"5.png": png()})})
    found = read_zip(data, class_names=CLASSES)
    assert [(i.name, i.label, i.label_name) for i in found.images] == [
        ("mine/Coat/1.png", 2, "Coat"),
        ("mine/t-shirt_top/2.png", 0, "T-shirt/top"),
        ("mine/ankle BOOT/x/3.png", 3, "Ankle boot"),
        ("mine/4.png", None, None),
    ]
    assert found.unnamed_folders == ("mine",) and found.labelled == 3
    assert [(s.name, s.reason) for s in found.skipped] == [("inner.zip", "a zip inside the zip: not opened")]


def test_a_file_that_is_not_a_zip_is_refused_alone_and_skipped_among_uploads():
    with pytest.raises(ImageSetError, match=r"x\.zip is not a zip archive"):
        read_zip(b"plain text", name="x.zip")
    found = read_uploads([("x.zip", b"plain text"), ("a.png", png())])
    assert found.count == 1 and found.skipped[0].reason == "not a zip archive Python can read"


def test_a_folder_labels_class_folders_and_leaves_the_rest_unlabelled(tmp_path: Path):
    root = tmp_path / "mine"
    for name in ("Coat/1.png", "Trouser/2.png", "holiday/3.png", "4.png"):
        save_image(root / name, np.full((8, 8), 9, dtype=np.uint8))
    (root / "readme.md").write_text("my images")
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: left out
    save_image(root / ".cache" / "5.png", np.zeros((8, 8), dtype=np.uint8))
    found = read_folder(root, class_names=CLASSES)
    assert [(i.name, i.label_name) for i in found.images] == [
        ("4.png", None), ("Coat/1.png", "Coat"), ("Trouser/2.png", "Trouser"), ("holiday/3.png", None),
    ]  # fmt: skip
    assert found.unnamed_folders == ("holiday",)
    assert [(s.name, s.reason) for s in found.skipped] == [("readme.md", "not an image file (.md)")]
    assert found.origin == f"the folder {root.resolve()}"
    assert read_folder(root).labelled == 0  # a model that names no class
    with pytest.raises(ImageSetError, match="no folder at"):
        read_folder(tmp_path / "missing")


def test_a_link_out_of_the_folder_is_not_followed(tmp_path: Path):
    outside = save_image(tmp_path / "private.png", np.zeros((8, 8), dtype=np.uint8))
    root = tmp_path / "mine"
    save_image(root / "1.png", np.zeros((8, 8), dtype=np.uint8))
    os.symlink(outside, root / "2.png")
    found = read_folder(root)
    assert [i.name for i in found.images] == ["1.png"]
    assert [(s.name, s.reason) for s in found.skipped] == [
        ("2.png", "a link to outside the folder: not followed")
    ]


def test_the_limits_refuse_a_set_whole_before_a_file_is_read(tmp_path: Path, monkeypatch):
    decoded: list[str] = []
    load = image_sets.load_image
    monkeypatch.setattr(
        image_sets, "load_image", lambda data, name: decoded.append(name) or load(data, name=name)
    )
    root = tmp_path / "mine"
    for i in range(4):
        save_image(root / f"{i}.png", np.full((8, 8), i, dtype=np.uint8))
    monkeypatch.setattr(image_sets, "MAX_IMAGES", 3)
    with pytest.raises(ImageSetError, match="holds more than 3 files; a set takes at most 3: choose fewer"):
        read_folder(root)
    with pytest.raises(ImageSetError, match="4 uploaded files holds 4 files"):
        read_uploads([(f"{i}.png", png(i)) for i in range(4)])
    monkeypatch.setattr(image_sets, "MAX_IMAGES", 500)
    size = sum(p.stat().st_size for p in root.iterdir())
    monkeypatch.setattr(image_sets, "MAX_TOTAL_BYTES", size - 1)
    with pytest.raises(ImageSetError, match=r"holds 0 MB in all; a set takes at most 0 MB"):
        read_folder(root)
    assert decoded == []
    monkeypatch.setattr(image_sets, "MAX_TOTAL_BYTES", size)
    assert read_folder(root).count == 4 and len(decoded) == 4


def test_the_digest_names_the_images_their_labels_and_bytes(tmp_path: Path):
    files = [("a.png", png(1)), ("b.png", png(2))]
    first, again = read_uploads(files), read_uploads([*files, ("c.txt", b"skipped")])
    assert isinstance(first, ImageSet) and first.digest == again.digest
    assert read_uploads([files[0], ("b.png", png(3))]).digest != first.digest
    assert read_uploads(files[::-1]).digest != first.digest
    labelled = read_zip(zipped({"Coat/a.png": png(1)}), class_names=CLASSES)
    assert labelled.digest != read_zip(zipped({"Coat/a.png": png(1)})).digest
    assert first.image("b.png").data == files[1][1]
    with pytest.raises(KeyError, match=r"no image 'z\.png' in 2 uploaded files"):
        first.image("z.png")
