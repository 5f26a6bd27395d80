"""Files written atomically: a reader sees the old file or the new one, never half of one.

A write goes to a temporary file beside the target, is flushed to disk (``fsync``), and is renamed onto
the target (``os.replace``, atomic on POSIX); the folder is synced after. A process killed at any point
leaves the target complete: the old version, or the new one.

For tests of exactly that, ``COATNET_FAULT`` injects a fault into one write, deterministically:
``NAME@K:POINT`` faults the K-th write (from 1) of a file called NAME (each path counted on its own, in
this process), at POINT:
``bytes=N`` (the process is killed with SIGKILL when N bytes of the new file are on disk),
``before-rename`` or ``after-rename`` (killed there), or ``enospc`` (the write fails as on a full disk).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_WRITES: Counter[Path] = Counter()  # writes per path, for COATNET_FAULT


class WriteError(OSError):
    """A file that could not be written (a full disk, a folder that cannot be made); the message says
    what to do. Nothing half-written is left behind."""


def ensure_folder(folder: str | os.PathLike, *, what: str = "the output folder") -> Path:
    """Create ``folder`` (and its parents) or raise :class:`WriteError` saying why it cannot be."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise WriteError(
            f"cannot create {what} {folder}: a part of that path is a file, not a folder; choose another path"
        ) from error
    except OSError as error:
        raise WriteError(f"cannot create {what} {folder} ({error.strerror}); choose another path") from error
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path``: readers see the old file or the new one.

    Args:
        path: the file to write; its folder is made if missing.
        write: writes the whole content to the temporary path it is given (in ``path``'s folder).

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Raises:
        WriteError: the folder cannot be made, or the disk is full or refuses the write; the temporary
            file is removed and ``path`` keeps its old content.

    Examples:
        >>> from pathlib import Path
        >>> import coatnet
        >>> coatnet.atomic_write("notes/a.txt", lambda tmp: Path(tmp).write_text("whole"))
        PosixPath('notes/a.txt')
        >>> Path("notes/a.txt").read_text()
        'whole'
    """
    path = Path(path)
    ensure_folder(path.parent, what="the folder of")
    fault = _fault_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _inject(fault, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); ours are ordinary files
        if fault == "before-rename":
            _kill()
        os.replace(tmp, path)
        _sync_folder(path.parent)
        if fault == "after-rename":
            _kill()
    except OSError as error:
        if isinstance(error, WriteError):
            raise
        reason = error.strerror or str(error)
        raise WriteError(
            f"could not write {path} ({reason}); its previous version, if any, is intact: free some space "
            "or choose another folder, then run again"
        ) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fault_for(path: Path) -> str | None:
    """The fault ``COATNET_FAULT`` asks for on this write of ``path``, or None (and counts the write)."""
    spec = os.environ.get("COATNET_FAULT")
    if not spec:
        return None
    _WRITES[path.absolute()] += 1
    target, _, point = spec.partition(":")
    known = point in ("before-rename", "after-rename", "enospc") or re.fullmatch(r"bytes=\d+", point)
    if not known:
        raise ValueError(
            f"COATNET_FAULT={spec!r}: the point must be bytes=N, before-rename, after-rename or enospc"
        )
    target_name, _, nth = target.partition("@")
    if target_name != path.name or _WRITES[path.absolute()] != int(nth or 1):
        return None
    return point


def _inject(fault: str | None, tmp: str) -> None:
    if fault is None:
        return
    if fault.startswith("bytes="):
        os.truncate(tmp, min(int(fault.removeprefix("bytes=")), os.path.getsize(tmp)))
        _kill()  # killed with only those bytes of the new file written
    if fault == "enospc":
        os.truncate(tmp, os.path.getsize(tmp) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
