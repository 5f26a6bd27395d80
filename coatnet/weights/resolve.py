"""What a model's name loads, for every front end (the command line, ``analysis.load_model``, the app).

:func:`coatnet.weights.names.parse_model_name` says what a name means; this module turns that meaning
into a model (:func:`load_named_model`) or, without reading weights where it can, into the model's config
(:func:`named_config`, what ``coatnet info`` prints).
"""

from __future__ import annotations

import os

from coatnet.model.config import CoAtNetConfig
from coatnet.model.network import CoAtNet
from coatnet.model.variants import build_config, create_model
from coatnet.model.variants_timm import TIMM_VARIANTS
from coatnet.weights.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    NotCoatnetCheckpointError,
    load_checkpoint,
    read_checkpoint_info,
    verify_checkpoint,
)
from coatnet.weights.demos import NAMES
from coatnet.weights.hub import PRETRAINED_TAGS, resolve_tag, split_tag
from coatnet.weights.names import parse_model_name
from coatnet.weights.timm_import import from_timm


class ModelNameError(ValueError):
    """A name that names nothing loadable; the message lists what would work."""


def load_named_model(spec: str | os.PathLike, *, attention: str | None = None) -> CoAtNet:
    """The model ``spec`` names, in eval mode, on the CPU.

    Args:
        spec: a built-in name, a checkpoint of ours, timm's weights file, a timm hub tag (downloaded when
            not cached) or a variant name (random weights); see :mod:`coatnet.weights.names`.
        attention: ``pre`` / ``post`` to switch normalization (the weights stay; the model says so).

    Raises:
        ModelNameError: nothing by that name; :class:`CheckpointError` for a file that does not fit;
        :class:`coatnet.HubUnavailableError` for a hub tag while offline.
    """
    name = parse_model_name(spec)
    path = name.path
    if name.kind == "builtin":
        return load_checkpoint(name.value, attention=attention)
    if path is not None and path.exists():
        try:
            read_checkpoint_info(path)
        except NotCoatnetCheckpointError as ours:  # no safetensors with our metadata: timm's weights?
            try:
                return from_timm(path, attention=attention or "pre")
            except (CheckpointError, ValueError, KeyError) as theirs:
                raise CheckpointError(f"{ours}; nor is it timm CoAtNet weights ({theirs})") from theirs
        return load_checkpoint(path, attention=attention)  # ours: its own errors say what does not fit
    if path is not None:
        raise CheckpointNotFoundError(f"{path} does not exist: check the path")
    if name.kind == "timm_tag":
        split_tag(name.spec)  # a malformed tag gets timm's own explanation
        return from_timm(name.spec, attention=attention or "pre")
    try:
        return create_model(name.spec, attention=attention or "pre").eval()
    except (KeyError, ValueError):
        pass
    raise ModelNameError(
        f"no model {name.spec!r}: give a built-in name ({', '.join(NAMES)}), a .safetensors checkpoint, "
        "timm weights (model.safetensors / pytorch_model.bin), a timm tag such as coatnet_0_rw_224.sw_in1k, "
        "or a variant from `coatnet list`"
    )


def named_config(
    spec: str | os.PathLike, *, attention: str | None = None, layout: str | None = None
) -> tuple[CoAtNetConfig, str]:
    """The config ``spec`` names and a few words on where it came from, reading no more than needed: a
    variant's table entry, a checkpoint's header and tensors (checked whole), a known timm tag's
    architecture (offline; its weights are not read), or else the weights themselves.

    Args:
        spec: any model name (see :func:`load_named_model`).
        attention: ``pre`` / ``post``: the config in that normalization.
        layout: S1..S4 layout (``C-C-C-T``); variant names only.

    Raises:
        ValueError: a layout for a name other than a variant, or an unknown variant (with close names).
    """
    name = parse_model_name(spec)
    if name.kind == "variant":
        return build_config(name.spec, attention=attention or "pre", layout=layout), "variant"
    if layout is not None:
        raise ValueError("--layout applies to variant names, not to checkpoints or timm weights")
    if name.kind == "timm_tag" and (known := _known_timm_config(name.spec)) is not None:
        config = known if attention is None else known.replace(attention=attention)
        return config, f"timm {resolve_tag(name.spec)}: its architecture, the weights not read"
    if name.kind == "builtin" or (name.path is not None and name.path.exists()):
        try:
            info = verify_checkpoint(name.value)  # the whole file: a damaged one is refused here
        except NotCoatnetCheckpointError:
            pass  # timm's weights: read below
        else:
            config = info.config if attention is None else info.config.replace(attention=attention)
            trained = info.trained_attention
            note = "" if trained == config.attention else f", weights trained with {trained}-normalization"
            return config, f"checkpoint {info.path}{note}"
    model = load_named_model(spec, attention=attention)
    source = model.checkpoint_info.provenance.get("file") or name.spec
    return model.config, f"timm weights {source}"


def _known_timm_config(tag: str) -> CoAtNetConfig | None:
    """A published timm tag's config from its architecture and number of classes, or None."""
    try:
        full = resolve_tag(tag)
    except ValueError:
        return None
    arch = split_tag(full)[0]
    if full not in PRETRAINED_TAGS or arch not in TIMM_VARIANTS:
        return None
    return TIMM_VARIANTS[arch].replace(num_classes=PRETRAINED_TAGS[full]["classes"])
