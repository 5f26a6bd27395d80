"""Hostile and broken files for the reliability battery: checkpoints that must be refused in one line.

Each builder writes one file (or folder) under a folder and returns its path; ``CHECKPOINTS`` maps a case
name to (builder, a fragment the one-line refusal must hold).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import coatnet
from tests.support.toys import toy_checkpoint

MARKER = "PWNED-by-a-checkpoint"  # the file a malicious pickle would create beside itself


class Payload:
    """Unpickling this runs ``open(MARKER, 'w')``: the code a hostile .pth would run."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('x')",))


def _pickle_pth(folder: Path) -> Path:
    path = folder / "evil.pth"
    path.write_bytes(pickle.dumps({"stem.conv1.weight": Payload(folder / MARKER)}, protocol=2))
    return path


def _zip_bin(folder: Path) -> Path:
    """torch.save's zip format with the payload inside data.pkl."""
    path = folder / "pytorch_model.bin"
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": Payload(folder / MARKER)}}, buffer)
    path.write_bytes(buffer.getvalue())
    assert zipfile.is_zipfile(path)
    return path


def _ours(folder: Path) -> Path:
    return toy_checkpoint(folder / "good.safetensors")


def _truncated(folder: Path) -> Path:
    data = _ours(folder).read_bytes()
    path = folder / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    return path


def _header_length(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _flipped_data(folder: Path) -> Path:
    data = bytearray(_ours(folder).read_bytes())
    data[8 + _header_length(data) + 1000] ^= 0x10  # one bit of one weight
    path = folder / "flipped-weights.safetensors"
    path.write_bytes(bytes(data))
    return path


def _flipped_header(folder: Path) -> Path:
    data = bytearray(_ours(folder).read_bytes())
    data[8 + 2] ^= 0x01  # a bit of the JSON header's third byte
    path = folder / "flipped-header.safetensors"
    path.write_bytes(bytes(data))
    return path


def _with_header(folder: Path, name: str, edit: Callable[[dict], None]) -> Path:
    """Our checkpoint with its JSON header edited (offsets, dtypes, shapes, metadata)."""
    data = _ours(folder).read_bytes()
    length = _header_length(data)
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = folder / name
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    return path


def _first_tensor(header: dict) -> dict:
    return header[next(k for k in header if k != "__metadata__")]


def _huge_offsets(folder: Path) -> Path:
    return _with_header(
        folder, "huge-offsets.safetensors", lambda h: _first_tensor(h).update(data_offsets=[0, 10**15])
    )


def _wrong_dtype(folder: Path) -> Path:
    return _with_header(folder, "wrong-dtype.safetensors", lambda h: _first_tensor(h).update(dtype="Q9"))


def _wrong_shape(folder: Path) -> Path:
    return _with_header(
        folder, "wrong-shape.safetensors", lambda h: _first_tensor(h).update(shape=[7, 7, 7, 7])
    )


def _huge_header(folder: Path) -> Path:
    path = folder / "huge-header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}" + b"\0" * 64)
    return path


def _metadata(folder: Path, name: str, **changes: str) -> Path:
    return _with_header(folder, name, lambda h: h["__metadata__"].update(changes))


def _config_json(folder: Path, name: str, edit: Callable[[dict], None]) -> Path:
    config = coatnet.create_model("coatnet_toy", img_size=32).config.to_dict()
    edit(config)
    return _metadata(folder, name, config=json.dumps(config))


def _groups(config: dict) -> list[dict]:
    return [g for s in config["stages"] for g in s["groups"]]


def _wide(width: int) -> Callable[[dict], None]:
    return lambda config: _groups(config)[0].update(dim=width)


def _other_arch(folder: Path) -> Path:
    """Our metadata for coatnet_toy over the weights of a C-C-C-C toy."""
    convs = toy_checkpoint(folder / "convs.safetensors", layout="C-C-C-C")
    with safe_open(str(_ours(folder)), "pt") as f:
        metadata = f.metadata()
    with safe_open(str(convs), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    metadata.pop("sha256")
    path = folder / "other-arch.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def _foreign(folder: Path) -> Path:
    path = folder / "foreign.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, str(path))
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.safetensors"
    path.write_bytes(b"")
    return path


def _folder(folder: Path) -> Path:
    path = folder / "a-folder.safetensors"
    path.mkdir()
    return path


def _missing(folder: Path) -> Path:
    return folder / "no-such-file.safetensors"


def _png(folder: Path, name: str) -> Path:
    path = folder / name
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


CHECKPOINTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "pickle-pth": (_pickle_pth, "unpickle"),
    "zip-bin": (_zip_bin, "unpickle"),
    "truncated": (_truncated, "truncated.safetensors"),
    "flipped-weights": (_flipped_data, "checksum"),
    "flipped-header": (_flipped_header, "flipped-header.safetensors"),
    "huge-offsets": (_huge_offsets, "huge-offsets.safetensors"),
    "wrong-dtype": (_wrong_dtype, "wrong-dtype.safetensors"),
    "wrong-shape": (_wrong_shape, "wrong-shape.safetensors"),
    "huge-header": (_huge_header, "huge-header.safetensors"),
    "metadata-not-json": (lambda f: _metadata(f, "not-json.safetensors", config="{not json"), "damaged"),
    "metadata-a-list": (lambda f: _metadata(f, "a-list.safetensors", metadata="[1, 2]"), "damaged"),
    "width-1e9": (lambda f: _config_json(f, "width-1e9.safetensors", _wide(10**9)), "the limit"),
    "width-1e5": (lambda f: _config_json(f, "width-1e5.safetensors", _wide(10**5)), "the limit"),
    "blocks-1e6": (
        lambda f: _config_json(f, "blocks-1e6.safetensors", lambda c: _groups(c)[0].update(depth=10**6)),
        "the limit",
    ),
    "width-a-string": (lambda f: _config_json(f, "width-str.safetensors", _wide("wide")), "damaged"),
    "other-arch": (_other_arch, "does not fit"),
    "foreign-safetensors": (_foreign, "foreign.safetensors"),
    "empty": (_empty, "empty"),
    "folder": (_folder, "directory"),
    "missing": (_missing, "does not exist"),
    "png-as-safetensors": (lambda f: _png(f, "weights.safetensors"), "PNG image"),
    "png-as-pth": (lambda f: _png(f, "weights.pth"), "PNG image"),
}
