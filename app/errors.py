"""Turning what went wrong with the user's input into one line that says what to do."""

from __future__ import annotations

import logging

from analysis import ImageError, ModelSpecError
from coatnet import CheckpointError
from coatnet.weights import HubModelNotFoundError, HubUnavailableError

LOG = logging.getLogger("coatnet_lens.app")

# errors that are about the input, not the app: shown as one line, without a traceback
INPUT_ERRORS = (
    CheckpointError, ModelSpecError, HubUnavailableError, HubModelNotFoundError, ImageError,
    FileNotFoundError, IsADirectoryError, PermissionError, ValueError, KeyError,
)  # fmt: skip


def message(error: BaseException) -> str:
    """One line for the user: what was wrong, and what to do."""
    if isinstance(error, HubUnavailableError):
        return (
            f"Cannot download {error.tag}: no connection to the Hugging Face hub. Fetch {error.url} by other "
            "means, then choose 'Checkpoint or weights file' and give its path."
        )
    if isinstance(error, IsADirectoryError):
        return f"{error.filename} is a folder: give the path of a .safetensors checkpoint or weights file"
    if isinstance(error, PermissionError):
        return f"Cannot read {error.filename}: permission denied; check the file's permissions"
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first


def unexpected(error: BaseException, what: str) -> str:
    """The line shown for a failure that is the app's fault; the traceback goes to the server's log."""
    LOG.exception("%s failed", what)
    return f"{what} failed ({type(error).__name__}: {message(error)}). This is a bug: please report it."
