"""Checkpoints: one ``.safetensors`` file, weights plus a JSON metadata header. Loading never unpickles.

The header (safetensors ``__metadata__``, string to string) holds:

- ``format``: ``coatnet-lens/1``
- ``config``: the :class:`CoAtNetConfig` as JSON
- ``metadata``: JSON with ``class_names``, ``preprocessing`` (size, channels, mean, std, interpolation,
  crop), ``provenance`` (dataset, command, metrics...), ``trained_attention``, and anything else given.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from coatnet.data.preprocessing import Preprocessing
from coatnet.files import atomic_write
from coatnet.model.attention import resize_table
from coatnet.model.config import CoAtNetConfig
from coatnet.model.network import CoAtNet, build_for_loading
from coatnet.weights.demos import NAMES, demo
from coatnet.weights.names import parse_model_name

FORMAT = "coatnet-lens/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what to do.

    Examples:
        >>> import coatnet
        >>> try:
        ...     coatnet.load_checkpoint("missing.safetensors")
        ... except coatnet.CheckpointError as error:
        ...     print("caught")
        caught
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the path a checkpoint argument names."""


class NotCoatnetCheckpointError(CheckpointError):
    """A file that is no checkpoint of ours (no safetensors, or no CoAtNet Lens metadata): perhaps
    timm's weights."""


# The first bytes of files people hand over by mistake, to say what a file is when it is no checkpoint.
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a zip archive (torch.save's format)"),
    (b"\x80", "a Python pickle (torch.save's old format)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)


def sniff(path: str | os.PathLike) -> str | None:
    """What a file that is not a safetensors file looks like from its first bytes, or None."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty (0 bytes)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        return "an SVG / HTML / XML text file"
    if text[:1] in (b"{", b"[") or all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, besides its weights.

    Attributes:
        config: the architecture.
        preprocessing: how its inputs are prepared (:class:`~coatnet.data.Preprocessing`).
        class_names: one name per output class, or None.
        provenance: where the weights came from (dataset, command, metrics...).
        trained_attention: the normalization the weights were trained with (``pre`` / ``post``).
        extra: any other metadata given to :func:`save_checkpoint`.
        path: the file it was read from, if any.

    Examples:
        >>> import coatnet
        >>> info = coatnet.read_checkpoint_info("demo-pre")
        >>> info.class_names[:2], info.preprocessing.size, info.trained_attention
        (('T-shirt/top', 'Trouser'), (28, 28), 'pre')
    """

    config: CoAtNetConfig
    preprocessing: Preprocessing
    class_names: tuple[str, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    trained_attention: str = "pre"
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def attention_note(self) -> str:
        """E.g. ``post-normalization (weights trained with pre-normalization)`` for a switched model."""
        mode = self.config.attention
        if mode == self.trained_attention:
            return f"{mode}-normalization"
        return f"{mode}-normalization (weights trained with {self.trained_attention}-normalization)"


def _undescribed(config: CoAtNetConfig) -> Preprocessing:
    """The preprocessing of a model built from ``config`` that nobody described
    (:meth:`Preprocessing.undescribed <coatnet.data.Preprocessing.undescribed>` at its built size)."""
    return Preprocessing.undescribed(size=config.img_size, channels=config.in_chans)


def preprocessing_of(model: CoAtNet) -> Preprocessing:
    """The checkpoint's preprocessing, or the default for a model nobody described.

    Args:
        model: a model, loaded from a checkpoint or built.

    Returns:
        How its inputs are prepared: ``size`` (H, W), ``channels``, ``mean``, ``std``, ``interpolation``
        and ``crop`` (:class:`~coatnet.data.Preprocessing`).

    Examples:
        >>> import coatnet
        >>> from coatnet.weights.checkpoint import preprocessing_of
        >>> preprocessing_of(coatnet.load_checkpoint("demo-pre")).mean
        (0.286,)
        >>> preprocessing_of(coatnet.create_model("coatnet_toy")).interpolation  # nobody described it
        'bicubic'
    """
    info = model.checkpoint_info
    return info.preprocessing if info is not None else _undescribed(model.config)


def class_names(model: CoAtNet, *, numbered: bool = False) -> tuple[str, ...] | None:
    """The names of a model's classes, as its checkpoint gives them.

    Args:
        model: a model, loaded from a checkpoint or built.
        numbered: where the checkpoint names none, ``class 0``, ``class 1``, ... instead of None.

    Returns:
        One name per output class, or None (unless ``numbered``) for a model whose classes have no names.

    Examples:
        >>> import coatnet
        >>> coatnet.class_names(coatnet.load_checkpoint("demo-pre"))[:2]
        ('T-shirt/top', 'Trouser')
        >>> toy = coatnet.create_model("coatnet_toy", img_size=32, num_classes=2)
        >>> coatnet.class_names(toy), coatnet.class_names(toy, numbered=True)
        (None, ('class 0', 'class 1'))
    """
    info = model.checkpoint_info
    names = info.class_names if info is not None else None
    if names or not numbered:
        return names
    return tuple(f"class {i}" for i in range(model.config.num_classes))


def save_checkpoint(
    model: CoAtNet,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (a complete file or none at all).

    Metadata not given is carried over from the checkpoint the model was loaded from, if any.

    Args:
        model: the model to save.
        path: the ``.safetensors`` file to write.
        class_names: one per output class.
        preprocessing: how inputs are prepared, or its JSON object (:meth:`Preprocessing.from_dict
            <coatnet.data.Preprocessing.from_dict>`); by default the loaded checkpoint's, else
            :meth:`Preprocessing.undescribed <coatnet.data.Preprocessing.undescribed>` (bicubic).
        provenance: dataset, command, metrics, and anything that says where the weights came from.
        **extra: more JSON-serialisable metadata.

    Returns:
        The path written.

    Examples:
        >>> import coatnet
        >>> model = coatnet.create_model("coatnet_toy", img_size=32, num_classes=2)
        >>> coatnet.save_checkpoint(model, "toy.safetensors", class_names=["cat", "dog"])
        PosixPath('toy.safetensors')
        >>> coatnet.load_checkpoint("toy.safetensors").checkpoint_info.class_names
        ('cat', 'dog')
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoints are .safetensors files; got {path.name!r}: use a .safetensors name"
        )
    previous = model.checkpoint_info
    config = model.config
    if class_names is None and previous is not None:
        class_names = previous.class_names
    if class_names is not None and len(class_names) != config.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a model with {config.num_classes} classes")
    metadata = {
        "class_names": list(class_names) if class_names is not None else None,
        "preprocessing": _preprocessing_to_save(preprocessing, previous, config).to_dict(),
        "provenance": provenance or (previous.provenance if previous else {}),
        "trained_attention": previous.trained_attention if previous else config.attention,
        "extra": {**(previous.extra if previous else {}), **extra},
    }
    header = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "metadata": json.dumps(metadata),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header["sha256"] = tensors_digest(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def _preprocessing_to_save(
    given: Preprocessing | Mapping[str, Any] | None, previous: CheckpointInfo | None, config: CoAtNetConfig
) -> Preprocessing:
    """What :func:`save_checkpoint` writes: the preprocessing given, else the loaded checkpoint's, else
    the default for a model nobody described."""
    if isinstance(given, Preprocessing):
        return given
    if given:
        return Preprocessing.from_dict(given)
    return previous.preprocessing if previous is not None else _undescribed(config)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The file a checkpoint argument names: a path, or a built-in name (``demo-pre``, ``demo-post``)."""
    name = parse_model_name(path)
    if name.kind == "builtin":
        return demo(name.value).checkpoint
    return Path(path).expanduser()


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """The metadata of a checkpoint (a path or a built-in name), without loading its weights.

    Args:
        path: the ``.safetensors`` file, or a built-in name (``demo-pre``).

    Returns:
        What the checkpoint says about itself.

    Raises:
        CheckpointError: the file is missing, is not a checkpoint, or its metadata cannot be read.

    Examples:
        >>> import coatnet
        >>> info = coatnet.read_checkpoint_info("demo-pre")
        >>> info.config.layout, len(info.class_names)
        ('C-C-T-T', 10)
    """
    path = resolve_checkpoint(path)
    header = _read_header(path)
    try:
        config = CoAtNetConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("metadata", "{}"))
        if not isinstance(meta, dict):
            raise TypeError(f"metadata is a JSON {type(meta).__name__}, not an object")
        described = meta.get("preprocessing")
        preprocessing = Preprocessing.from_dict(described) if described else _undescribed(config)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise CheckpointError(
            f"{path}: its coatnet metadata is damaged or describes no model we can build ({error}); "
            "save the model again with coatnet.save_checkpoint"
        ) from error
    names = meta.get("class_names")
    return CheckpointInfo(
        config=config,
        preprocessing=preprocessing,
        class_names=tuple(names) if names is not None else None,
        provenance=meta.get("provenance") or {},
        trained_attention=meta.get("trained_attention", config.attention),
        extra=meta.get("extra") or {},
        path=str(path),
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    attention: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> CoAtNet:
    """Load a checkpoint written by :func:`save_checkpoint`, in eval mode.

    Args:
        path: the ``.safetensors`` file, or a built-in name: ``demo-pre``, ``demo-post``, ``demo-maxvit``.
        attention: build the model with this normalization instead of the saved one (the weights are
            the same; ``model.checkpoint_info.attention_note`` says it was switched).
        img_size: build for another input size; relative-bias tables are resized bilinearly.
        device: where to put the weights.

    Returns:
        The model, with ``model.checkpoint_info`` (:class:`CheckpointInfo`).

    Raises:
        CheckpointError: the file is missing or is not a checkpoint, or its weights do not fit.

    Examples:
        >>> import coatnet
        >>> model = coatnet.load_checkpoint("demo-pre", attention="post")
        >>> model.training, model.config.attention, model.checkpoint_info.trained_attention
        (False, 'post', 'pre')
    """
    path = resolve_checkpoint(path)
    info = read_checkpoint_info(path)
    changes: dict[str, Any] = {}
    if attention is not None:
        changes["attention"] = attention
    if img_size is not None:
        changes["img_size"] = img_size
    config = info.config.replace(**changes) if changes else info.config
    model = build_for_loading(config)
    state, intact = _read_tensors(path)
    load_state_dict_checked(model, resize_bias_tables(state, model), source=str(path))
    if not intact:  # checked after the fit, whose message names the keys that do not fit
        raise _damaged(path)
    model.checkpoint_info = CheckpointInfo(**{**info.__dict__, "config": config})
    return model.to(device).eval()


def with_normalization(model: CoAtNet, attention: str) -> CoAtNet:
    """``model`` run with the other normalization: its weights copied into a model built for ``attention``
    (``"pre"`` or ``"post"``), in eval mode on its device, with ``checkpoint_info`` as
    :func:`load_checkpoint` gives it for ``attention`` (the weights are the same; the info says they were
    trained the other way); ``model`` itself where it already runs ``attention``. What switching a loaded
    model costs without reading its file again (a timm file's conversion included).

    Examples:
        >>> import coatnet, torch
        >>> pre = coatnet.load_checkpoint("demo-pre")
        >>> post = with_normalization(pre, "post")
        >>> post.config.attention, post.checkpoint_info.trained_attention
        ('post', 'pre')
        >>> with_normalization(pre, "pre") is pre
        True
        >>> x = torch.randn(1, 1, 28, 28)
        >>> torch.equal(post(x), coatnet.load_checkpoint("demo-pre", attention="post")(x))
        True
    """
    if attention == model.config.attention:
        return model
    config = model.config.replace(attention=attention)
    switched = build_for_loading(config)
    switched.load_state_dict(model.state_dict())
    if model.checkpoint_info is not None:
        switched.checkpoint_info = CheckpointInfo(**{**model.checkpoint_info.__dict__, "config": config})
    return switched.to(next(model.parameters()).device).eval()


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The tensors of a checkpoint of ours, and whether they match the digest its header holds (True
    when it holds none: checkpoints saved before digests)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            expected = (f.metadata() or {}).get("sha256")
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its tensors cannot be read ({error}); the file is damaged: save or fetch it again"
        ) from error
    return state, expected is None or tensors_digest(state) == expected


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict`` that names every missing, unexpected and mis-shaped key in one clear error."""
    check_fit(model, state, source=source)
    model.load_state_dict(state)


def check_fit(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Raise :class:`CheckpointError` naming every key of ``state`` that is missing, unexpected, or of
    another shape or kind of dtype than ``model``'s (which may live on the meta device)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    shapes += sorted(
        f"{k}: file {state[k].dtype} vs model {own[k].dtype}"
        for k in set(own) & set(state)
        if state[k].dtype.is_floating_point != own[k].dtype.is_floating_point or state[k].dtype == torch.bool
    )
    if missing or unexpected or shapes:
        parts = []
        kinds = (("missing", missing), ("unexpected", unexpected), ("mis-shaped or mis-typed", shapes))
        for title, keys in kinds:
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{len(keys)} {title} key(s): {shown}")
        raise CheckpointError(
            f"{source} does not fit a {getattr(model, 'config', None) and model.config.name} model: "
            + "; ".join(parts)
            + ". Check that the checkpoint and the architecture match."
        )


def verify_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Read a checkpoint whole without building its model (the architecture lives on the meta device):
    its metadata, every tensor against the config's keys and shapes, and the digest saved with them.

    Raises:
        CheckpointError: the one line that says what is wrong, as :func:`load_checkpoint` would.
    """
    path = resolve_checkpoint(path)
    info = read_checkpoint_info(path)
    with torch.device("meta"):
        model = CoAtNet(info.config)
    state, intact = _read_tensors(path)
    check_fit(model, resize_bias_tables(state, model), source=str(path))
    if not intact:
        raise _damaged(path)
    return info


def _damaged(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: its weights do not match the checksum saved with them (the file is damaged, a bit "
        "flipped or a part overwritten): save or fetch it again"
    )


def resize_bias_tables(state: dict[str, torch.Tensor], model: CoAtNet) -> dict[str, torch.Tensor]:
    own = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        target = own.get(key)
        resizable = key.endswith("rel_pos.table") and target is not None and target.shape[0] == value.shape[0]
        if resizable and target.shape != value.shape:
            out[key] = resize_table(value, tuple(target.shape[1:]))
    return out


def _read_header(path: Path) -> dict[str, str]:
    if not path.exists():
        raise CheckpointNotFoundError(
            f"{path} does not exist: check the path (built-in checkpoints: {', '.join(NAMES)})"
        )
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the .safetensors file inside it")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        what = sniff(path)
        if what is not None and ("pickle" in what or "zip" in what):
            raise NotCoatnetCheckpointError(
                f"{path} is a torch.save / pickle file (.pth, .bin), not a safetensors checkpoint. "
                "CoAtNet Lens never unpickles a checkpoint; save models with coatnet.save_checkpoint"
            ) from error
        if what is not None:
            raise NotCoatnetCheckpointError(
                f"{path} is {what}, not a checkpoint: give a .safetensors file saved by coatnet"
            ) from error
        raise NotCoatnetCheckpointError(
            f"{path} is not a readable safetensors file ({error}); if it was downloaded or copied, the "
            "file may be truncated: fetch it again"
        ) from error
    if header.get("format") != FORMAT or "config" not in header:
        raise NotCoatnetCheckpointError(
            f"{path} is a safetensors file without CoAtNet Lens metadata (format {header.get('format')!r}); "
            "save models with coatnet.save_checkpoint"
        )
    return header


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order: a flipped bit changes it."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
