"""Results as JSON, and the JSON summaries commands write (study.json, layouts.json) read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np


def read_summary(
    path: Path, file_name: str, *, named: str, what: str, give: str, keys: Sequence[str]
) -> dict:
    """A summary a command wrote (study.json, layouts.json): ``path`` is the file or the folder holding
    ``file_name``.

    Raises:
        ValueError: one line: nothing readable there (``give`` says what to give instead), or no ``keys``.
    """
    if path.is_dir():
        path = path / file_name
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"no {what} at {named!r} ({type(error).__name__}): give {give}") from None
    if not isinstance(found, dict) or not set(keys) <= found.keys():
        listed = ", ".join(keys[:-1]) + (" and " if len(keys) > 1 else "") + keys[-1]
        raise ValueError(f"{path} is not a {what} (no {listed})")
    return found


def result_items(value: Any) -> list[tuple[str, Any]]:
    """A result dataclass's attributes as (name, value): its fields, or, for a result that computes some
    on first read (``BlockAttention.content``), every name of its ``EXPORTED``, in that order."""
    names = getattr(type(value), "EXPORTED", None) or [f.name for f in fields(value)]
    return [(name, getattr(value, name)) for name in names]


def to_jsonable(value: Any) -> Any:
    """Results (dataclasses of numpy arrays, tuples, dicts) as plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: to_jsonable(item) for name, item in result_items(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
