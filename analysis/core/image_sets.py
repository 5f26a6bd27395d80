"""A set of the user's own images, read safely: uploaded files, a zip, or a folder on the server.

Every image is decoded with the checks a single upload gets (:func:`analysis.load_image`: its size and
pixel limits); a file that fails them is skipped, with one line saying why, never raised. The set as a
whole is refused (:class:`ImageSetError`) only when it breaks a limit: more than :data:`MAX_IMAGES` files
or more than :data:`MAX_TOTAL_BYTES` bytes in all. A zip's limits are checked from its directory, the
declared unpacked size and the count of its members, before anything is unpacked; a member named with
``..`` or an absolute path is never read. Nothing is written to disk.

Labels come from folders, as an image folder has them (``root/<class>/<image>``): the first folder of an
image's path that names one of the model's classes gives its label (letters and digits compared, case
ignored: ``t-shirt_top`` names ``T-shirt/top``); an image in no such folder is unlabelled.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from analysis.core.images import MAX_BYTES, ImageError, _check_bytes, load_image
from coatnet.data.datasets import IMAGE_SUFFIXES

MAX_IMAGES = 500  # files in one set (every file given counts, images or not)
MAX_TOTAL_BYTES = 200 * 2**20  # 200 MB in all; a zip counted by its declared unpacked size
IMAGE_SET_LIMITS = (
    f"At most {MAX_IMAGES} images (every file given counts) and {MAX_TOTAL_BYTES // 2**20} MB in all; a "
    "zip's file count and unpacked size are checked before it is unpacked; a file that cannot be read is "
    "listed, skipped and counted."
)
"""A set's limits in one sentence, for the reader of a page that takes one.

Examples:
    >>> import analysis
    >>> analysis.IMAGE_SET_LIMITS.split(";")[0]
    'At most 500 images (every file given counts) and 200 MB in all'
"""
ZIP_SUFFIX = ".zip"
ARCHIVER_FILES = ("__MACOSX/",)  # what archivers add beside the files (read as nobody's images)
# what fetching a file or unpacking a member raises when it cannot be read (encrypted, damaged, gone)
UNREADABLE = (OSError, RuntimeError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


class ImageSetError(ValueError):
    """A set refused as a whole: too many files, too many bytes, or nothing there to read; the message
    says what to do.

    Examples:
        >>> import analysis
        >>> try:
        ...     analysis.read_zip(b"not a zip", name="mine.zip")
        ... except analysis.ImageSetError as error:
        ...     print(error)
        mine.zip is not a zip archive: give a .zip file, or the images themselves
    """


class _NotAZip(ImageSetError):
    """Bytes given as a zip that are not one."""


@dataclass(frozen=True)
class SetImage:
    """One image of a set: the file's bytes (decoded once with :func:`analysis.load_image`'s checks).

    Attributes:
        name: its path in the set (``Coat/0003.png``), unique in the set.
        data: the file's bytes.
        label: the model's class its folder names, by index; None when unlabelled.
        label_name: that class's name.

    Examples:
        >>> import analysis
        >>> analysis.SetImage("Coat/1.png", b"...", 4, "Coat").label_name
        'Coat'
    """

    name: str
    data: bytes = field(repr=False)
    label: int | None = None
    label_name: str | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file of the set that was not read, and why, in one line.

    Attributes:
        name: its path in the set.
        reason: why it was skipped.

    Examples:
        >>> import analysis
        >>> analysis.SkippedFile("notes.txt", "not an image file (.txt)").reason
        'not an image file (.txt)'
    """

    name: str
    reason: str


@dataclass(frozen=True, eq=False)
class ImageSet:
    """The images of a set, the files skipped, and a digest that names the set (for caching).

    Attributes:
        images: the images read, in a fixed order (the files' order, a folder's sorted).
        skipped: the files not read, each with its reason.
        origin: what the set was read from, in words (``3 uploaded files``, ``the folder /data/mine``).
        unnamed_folders: folders holding unlabelled images that name none of the model's classes.
        digest: SHA-256 of every image's name, label and bytes: the same set gives the same digest.

    Examples:
        >>> import analysis
        >>> from PIL import Image
        >>> Image.new("L", (28, 28), 200).save("grey.png")
        >>> found = analysis.read_uploads([("grey.png", open("grey.png", "rb").read()), ("a.txt", b"hi")])
        >>> found.count, [s.name for s in found.skipped], len(found.digest)
        (1, ['a.txt'], 64)
    """

    images: tuple[SetImage, ...]
    skipped: tuple[SkippedFile, ...] = ()
    origin: str = "the set"
    unnamed_folders: tuple[str, ...] = ()
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        for image in self.images:
            digest.update(f"{image.name}\0{image.label}\0".encode())
            digest.update(hashlib.sha256(image.data).digest())
        object.__setattr__(self, "digest", digest.hexdigest())

    @property
    def count(self) -> int:
        """How many images the set holds."""
        return len(self.images)

    @property
    def labelled(self) -> int:
        """How many of its images have a label."""
        return sum(image.label is not None for image in self.images)

    def image(self, name: str) -> SetImage:
        """The image called ``name``; a KeyError names how many the set holds."""
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(f"no image {name!r} in {self.origin} ({self.count} images)")


@dataclass(frozen=True)
class _File:
    """A file still to read: its name in the set, its folders (for its label), its declared size, and
    how to fetch its bytes (None: skipped for ``reason`` without reading)."""

    name: str
    folders: tuple[str, ...]
    size: int
    fetch: Callable[[], bytes] | None
    reason: str = ""


def read_uploads(
    files: Sequence[tuple[str, bytes]], *, class_names: Sequence[str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> ImageSet:  # fmt: skip
    """A set from uploaded files: images, and zips whose members join the set (:func:`read_zip`).

    Args:
        files: (file name, bytes) pairs, as the files were uploaded.
        class_names: the model's classes, for labels from the folders inside a zip (None: unlabelled).
        progress: called with the share of the files read (0 .. 1).

    Returns:
        The set: every image that decodes, every other file skipped with its reason.

    Raises:
        ImageSetError: more than :data:`MAX_IMAGES` files or :data:`MAX_TOTAL_BYTES` bytes in all (a zip's
            members counted, from its directory, before it is unpacked).

    Examples:
        >>> import analysis
        >>> found = analysis.read_uploads([("broken.png", b"\\x89PNG broken")])
        >>> found.count, found.skipped[0].reason
        (0, 'broken.png is not an image Pillow can read: choose a PNG, JPEG, WebP, BMP or GIF file')
    """
    listed: list[_File] = []
    for name, data in files:
        if name.lower().endswith(ZIP_SUFFIX):
            try:
                listed += _zip_files(data, name)
            except _NotAZip:  # one bad file among the uploads: skipped (a zip over the limits is refused)
                listed.append(_File(name, (), len(data), None, "not a zip archive Python can read"))
        else:
            listed.append(_File(name, (), len(data), lambda data=data: data))
    where = f"{len(files)} uploaded file{'s' if len(files) != 1 else ''}"
    return _read(listed, where, class_names, progress)


def read_zip(
    data: bytes, *, name: str = "the zip", class_names: Sequence[str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> ImageSet:  # fmt: skip
    """A set from a zip's bytes, its folders naming the labels (``<class>/<image>``, under one top
    folder or none). The count of its files and their declared unpacked size are checked from the zip's
    directory before any member is unpacked; each member is then unpacked in memory, at most its
    declared size; a member named with ``..`` or an absolute path, a zip inside the zip, and an
    encrypted or damaged member are skipped; archivers' ``__MACOSX/`` copies and hidden files are left
    out.

    Args:
        data: the zip file's bytes.
        name: what to call it in messages.
        class_names: the model's classes, for labels (None: every image unlabelled).
        progress: called with the share of the members read (0 .. 1).

    Returns:
        The set.

    Raises:
        ImageSetError: not a zip, or more than :data:`MAX_IMAGES` files or :data:`MAX_TOTAL_BYTES` bytes
            unpacked, as its directory declares.

    Examples:
        >>> import io, zipfile, analysis
        >>> from PIL import Image
        >>> picture = io.BytesIO()
        >>> Image.new("L", (28, 28), 90).save(picture, format="PNG")
        >>> packed = io.BytesIO()
        >>> with zipfile.ZipFile(packed, "w") as archive:
        ...     archive.writestr("mine/Coat/1.png", picture.getvalue())
        ...     archive.writestr("mine/2.png", picture.getvalue())
        >>> found = analysis.read_zip(packed.getvalue(), class_names=["Shirt", "Coat"])
        >>> [(image.name, image.label_name) for image in found.images], found.unnamed_folders
        ([('mine/Coat/1.png', 'Coat'), ('mine/2.png', None)], ('mine',))
    """
    return _read(_zip_files(data, name), name, class_names, progress)


def read_folder(
    path: str | os.PathLike, *, class_names: Sequence[str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> ImageSet:  # fmt: skip
    """A set from a folder on this machine, as an image folder lays it out: ``root/<class>/<image>``
    labelled by the class its folder names, images directly in ``root`` unlabelled. Hidden files and
    folders are left out; a link that leads outside the folder is not followed.

    Args:
        path: the folder.
        class_names: the model's classes, for labels (None: every image unlabelled).
        progress: called with the share of the files read (0 .. 1).

    Returns:
        The set, its images in sorted order.

    Raises:
        ImageSetError: no folder there, or more than :data:`MAX_IMAGES` files or :data:`MAX_TOTAL_BYTES`
            bytes in it (counted before any file is read).

    Examples:
        >>> import analysis
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> Path("mine/Bag").mkdir(parents=True)
        >>> Image.new("L", (28, 28), 30).save("mine/Bag/1.png")
        >>> Image.new("L", (28, 28), 60).save("mine/2.png")
        >>> found = analysis.read_folder("mine", class_names=["Coat", "Bag"])
        >>> [(image.name, image.label) for image in found.images]
        [('2.png', None), ('Bag/1.png', 1)]
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ImageSetError(f"no folder at {root}: give a folder of images (or of class folders)")
    root = root.resolve()
    return _read(list(_folder_files(root)), f"the folder {root}", class_names, progress)


def _folder_files(root: Path) -> Iterator[_File]:
    """Every file under ``root`` in sorted order (hidden ones left out), at most one over the limit."""
    count = 0
    problems: list[_File] = []

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or root)
        name = where.relative_to(root).as_posix() if where.is_relative_to(root) else str(where)
        problems.append(_File(name, (), 0, None, f"cannot read this folder ({error.strerror})"))

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        for file in sorted(f for f in files if not f.startswith(".")):
            count += 1
            if count > MAX_IMAGES:
                raise _too_many(f"the folder {root}", f"more than {MAX_IMAGES}")
            path = here / file
            name = path.relative_to(root).as_posix()
            folders = path.relative_to(root).parts[:-1]
            target = path.resolve()
            if not target.is_relative_to(root):
                yield _File(name, folders, 0, None, "a link to outside the folder: not followed")
            elif not target.is_file():
                yield _File(name, folders, 0, None, "not a regular file")
            else:
                yield _File(name, folders, target.stat().st_size, _reader(target))
    yield from problems


def _reader(path: Path) -> Callable[[], bytes]:
    """Reads a file, at most one byte past an image's limit (a file that grew after it was counted)."""

    def read() -> bytes:
        with path.open("rb") as file:
            return file.read(MAX_BYTES + 1)

    return read


def _zip_files(data: bytes, name: str) -> list[_File]:
    """The members of a zip as files to read, from its directory alone (nothing unpacked yet)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise _NotAZip(f"{name} is not a zip archive: give a .zip file, or the images themselves") from error
    members = [
        info for info in archive.infolist()
        if not info.is_dir() and not info.filename.startswith(ARCHIVER_FILES)
        and not PurePosixPath(info.filename.replace("\\", "/")).name.startswith(".")
    ]  # fmt: skip
    if len(members) > MAX_IMAGES:
        raise _too_many(name, str(len(members)))
    declared = sum(info.file_size for info in members)
    if declared > MAX_TOTAL_BYTES:
        raise _too_large(name, declared, "unpacked, as its directory declares")
    files = []
    for info in members:
        parts = _member_parts(info.filename)
        if parts is None:
            files.append(
                _File(info.filename, (), 0, None, "a path outside the zip (.. or absolute): not read")
            )
        elif info.filename.lower().endswith(ZIP_SUFFIX):
            files.append(_File(info.filename, (), 0, None, "a zip inside the zip: not opened"))
        else:
            files.append(_File(info.filename, parts[:-1], info.file_size, _unpacker(archive, info)))
    return files


def _member_parts(name: str) -> tuple[str, ...] | None:
    """A member's path as its parts; None for a path that leaves the archive (``..``, absolute, a drive)."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    return None if ".." in parts or not parts else parts


def _unpacker(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    """Unpacks one member in memory, reading at most one byte past its declared size."""

    def unpack() -> bytes:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise ImageError(f"{info.filename} unpacks to more than its declared {info.file_size} bytes")
        return data

    return unpack


def _read(
    files: list[_File],
    where: str,
    class_names: Sequence[str] | None,
    progress: Callable[[float], None] | None,
) -> ImageSet:
    """The set: limits checked over every file first, then each file fetched and decoded."""
    if len(files) > MAX_IMAGES:
        raise _too_many(where, str(len(files)))
    total = sum(f.size for f in files)
    if total > MAX_TOTAL_BYTES:
        raise _too_large(where, total, "in all")
    classes = {_folded(c): (i, c) for i, c in reversed(list(enumerate(class_names or ())))}
    images: list[SetImage] = []
    skipped: list[SkippedFile] = []
    unnamed: dict[str, None] = {}
    taken: set[str] = set()
    for done, file in enumerate(files, 1):
        name = _unique(file.name, taken)
        reason = file.reason or _not_an_image(file.name)
        if not reason:
            try:
                _check_bytes(name, file.size, MAX_BYTES)  # empty or too large: refused before it is read
                data = file.fetch()
                load_image(data, name=name)  # the checks a single upload gets
            except ImageError as error:
                reason = str(error)
            except UNREADABLE as error:
                reason = f"cannot be read ({type(error).__name__}: {error})".splitlines()[0]
        if reason:
            skipped.append(SkippedFile(name, reason))
        else:
            label = next((classes[f] for f in map(_folded, file.folders) if f in classes), None)
            if label is None and file.folders:
                unnamed[file.folders[0]] = None
            images.append(SetImage(name, data, *(label or (None, None))))
        if progress is not None:
            progress(done / len(files))
    return ImageSet(tuple(images), tuple(skipped), where, tuple(unnamed))


def _not_an_image(name: str) -> str:
    """Why a file is not read as an image by its name (its suffix), or ''."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ""
    return f"not an image file ({suffix or 'no suffix'})"


def _folded(name: str) -> str:
    """A class or folder name as compared: letters and digits, case ignored."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``(3)``.. when the set already has it."""
    found, n = name, 1
    while found in taken:
        n += 1
        found = f"{name} ({n})"
    taken.add(found)
    return found


def _too_many(where: str, count: str) -> ImageSetError:
    return ImageSetError(
        f"{where} holds {count} files; a set takes at most {MAX_IMAGES}: choose fewer images"
    )


def _too_large(where: str, size: int, how: str) -> ImageSetError:
    return ImageSetError(
        f"{where} holds {size / 2**20:.0f} MB {how}; a set takes at most {MAX_TOTAL_BYTES / 2**20:.0f} MB: "
        "choose fewer or smaller images"
    )
