"""A model's name, one grammar for every place that takes one (the command line, ``analysis.load_model``,
``load_checkpoint``, the app).

A name is, in this order of precedence:

1. a file that exists (``runs/x/last.safetensors``, timm's ``model.safetensors`` / ``pytorch_model.bin``);
2. a built-in checkpoint (``demo-pre``, ``Layout_C_C_T_T``: case and ``_``/``-`` do not matter), when no
   file of that name exists;
3. a missing file, when the name looks like one (a folder separator, a leading ``~``, ``.`` or ``/``, or a
   weights suffix): loading it says the file does not exist;
4. a timm hub tag (``coatnet_0_rw_224.sw_in1k``, ``timm/coatnet_0_rw_224.sw_in1k``): a dot and no other
   slash;
5. otherwise a variant name (``coatnet_0``, ``coatnet_nano_rw_224``: random weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coatnet.weights.demos import builtin_name

NameKind = Literal["file", "builtin", "timm_tag", "variant"]
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class ModelName:
    """What a model's name means (:func:`parse_model_name`).

    Attributes:
        spec: the name as given (stripped).
        kind: ``file`` (existing or not), ``builtin``, ``timm_tag`` or ``variant``.
        value: the path with ``~`` expanded (files), the built-in's own name (``demo-pre``), the tag, or
            the variant name.

    Examples:
        >>> import coatnet
        >>> coatnet.parse_model_name("runs/x/last.safetensors").path.name
        'last.safetensors'
    """

    spec: str
    kind: NameKind
    value: str

    @property
    def path(self) -> Path | None:
        """The file a ``file`` name names; None for the other kinds."""
        return Path(self.value) if self.kind == "file" else None


def parse_model_name(spec: str | os.PathLike) -> ModelName:
    """What ``spec`` names (see the module docstring for the grammar): an existing file, a built-in
    checkpoint, a missing file, a timm hub tag, or a variant, in this order of precedence.

    Args:
        spec: the name, as typed on the command line, in the app or in Python.

    Returns:
        Its meaning.

    Examples:
        >>> import coatnet
        >>> coatnet.parse_model_name("Demo_Pre")
        ModelName(spec='Demo_Pre', kind='builtin', value='demo-pre')
        >>> [coatnet.parse_model_name(name).kind for name in ("coatnet_0_rw_224.sw_in1k", "coatnet_0")]
        ['timm_tag', 'variant']
    """
    text = str(spec).strip()
    path = Path(text).expanduser()
    if text and path.exists():
        return ModelName(text, "file", str(path))
    if (builtin := builtin_name(text)) is not None:
        return ModelName(text, "builtin", builtin)
    if looks_like_a_path(text):
        return ModelName(text, "file", str(path))
    if "." in text and "/" not in text.removeprefix("timm/"):
        return ModelName(text, "timm_tag", text)
    return ModelName(text, "variant", text)


def looks_like_a_path(spec: str) -> bool:
    """A name meant as a file: a folder separator, a leading ``~``, ``.`` or ``/``, or a weights suffix (a
    hub tag with its organisation, ``timm/<tag>``, is not one)."""
    if spec.startswith("timm/") and spec.count("/") == 1:
        return False
    return spec.startswith(("~", ".", "/")) or os.sep in spec or spec.lower().endswith(WEIGHT_SUFFIXES)
