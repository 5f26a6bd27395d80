"""One way to name a model, for the report, the app and the command line.

A model spec is any of: a built-in checkpoint (``demo-pre``, ``demo-post``), a checkpoint file of ours
(``.safetensors``), a timm weights file (``model.safetensors`` / ``pytorch_model.bin``), a timm hub tag
(``coatnet_0_rw_224.sw_in1k``; downloaded when online), or a variant name (``coatnet_0``: random weights,
said so in :func:`describe`).
"""

from __future__ import annotations

import torch

from coatnet import CheckpointError, create_model, from_timm, load_checkpoint
from coatnet.devices import resolve_device
from coatnet.model.network import CoAtNet
from coatnet.weights.checkpoint import (
    CheckpointNotFoundError,
    NotCoatnetCheckpointError,
    read_checkpoint_info,
)
from coatnet.weights.demos import NAMES
from coatnet.weights.hub import split_tag
from coatnet.weights.names import parse_model_name


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable; the message lists what would work."""


def load_model(spec: str, *, attention: str | None = None, device: str | torch.device = "cpu") -> CoAtNet:
    """The model ``spec`` names, in eval mode, on ``device`` (see the module docstring). Every analysis
    runs on the device of the model it is given.

    Args:
        spec: what to load.
        attention: ``pre`` / ``post`` to switch normalization (the weights stay; the model says so).
        device: ``cpu`` (the default), ``cuda``, or None for CUDA where present.

    Raises:
        ModelSpecError: nothing by that name; :class:`coatnet.CheckpointError` for a file that does not fit;
        :class:`coatnet.HubUnavailableError` for a hub tag while offline; ValueError for a device this
        machine lacks.
    """
    where = resolve_device(device)
    return _load(spec, attention).to(where)


def _load(spec: str, attention: str | None) -> CoAtNet:
    name = parse_model_name(spec)
    spec, path = name.spec, name.path
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
        split_tag(spec)  # a malformed tag gets timm's own explanation
        return from_timm(spec, attention=attention or "pre")
    try:
        return create_model(spec, attention=attention or "pre").eval()
    except (KeyError, ValueError):
        pass
    raise ModelSpecError(
        f"no model {spec!r}: give a built-in name ({', '.join(NAMES)}), a .safetensors checkpoint, "
        "timm weights (model.safetensors / pytorch_model.bin), a timm tag such as coatnet_0_rw_224.sw_in1k, "
        "or a variant from `coatnet list`"
    )


def describe(model: CoAtNet) -> str:
    """One line: the model, its attention mode (and what it was trained with), and where it came from."""
    info = getattr(model, "checkpoint_info", None)
    if info is None:
        return f"{model.config.name}, {model.config.attention}-normalization, random weights (untrained)"
    source = info.provenance.get("tag") or info.provenance.get("dataset") or info.path or "checkpoint"
    return f"{model.config.name}, {info.attention_note}, from {source}"
