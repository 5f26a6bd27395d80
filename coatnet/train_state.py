"""Resume state and run files: everything written atomically, and nothing read back is ever unpickled.

A resume file is a ``.safetensors`` file: the tensors of every state dict (model, EMA, optimizer, RNG) as
tensors, and the structure around them (nested dicts, lists, numbers: optimizer param groups, step,
epoch, metrics) as JSON in the header, with each tensor replaced by ``{"$t": name}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

RESUME_FORMAT = "coatnet-lens-resume/1"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path``: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_metrics(out_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Per-epoch metrics as ``metrics.json`` (a list of rows) and ``metrics.csv`` (one line per epoch)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "metrics.json", json.dumps(rows, indent=1) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "metrics.csv", buffer.getvalue())


def save_resume(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a nest of dicts, lists, numbers, strings and tensors to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _pack(state, tensors)
    header = {"format": RESUME_FORMAT, "state": json.dumps(structure)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_resume(path: str | os.PathLike) -> dict[str, Any]:
    """Read back what :func:`save_resume` wrote (tensors on the CPU)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no resume state at {path}: --resume continues a run in the --out folder of an earlier "
            "`coatnet train`; leave --resume off to start a new run"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        if header.get("format") != RESUME_FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        return _unpack(json.loads(header["state"]), tensors)
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a readable resume file ({error}); start the run again without --resume"
        ) from error


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {"$t": name}
    if isinstance(obj, dict):
        return {"$d": [[key, _pack(value, tensors)] for key, value in obj.items()]}  # keeps int keys
    if isinstance(obj, list | tuple):
        return [_pack(value, tensors) for value in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a resume file")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "$t" in obj:
        return tensors[obj["$t"]]
    if isinstance(obj, dict):
        return {key: _unpack(value, tensors) for key, value in obj["$d"]}
    if isinstance(obj, list):
        return [_unpack(value, tensors) for value in obj]
    return obj
