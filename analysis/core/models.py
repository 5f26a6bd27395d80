"""One way to name a model, for the report, the app and the command line.

A model spec is any of: a built-in checkpoint (``demo-pre``, ``demo-post``), a checkpoint file of ours
(``.safetensors``), a timm weights file (``model.safetensors`` / ``pytorch_model.bin``), a timm hub tag
(``coatnet_0_rw_224.sw_in1k``; downloaded when online), or a variant name (``coatnet_0``: random weights,
said so in :func:`describe`).
"""

from __future__ import annotations

import torch

from coatnet.devices import resolve_device
from coatnet.model.network import CoAtNet
from coatnet.weights.resolve import ModelNameError, load_named_model


class ModelSpecError(ModelNameError):
    """A model spec that names nothing loadable; the message lists what would work.

    Examples:
        >>> import analysis
        >>> try:
        ...     analysis.load_model("no-such-model")
        ... except analysis.ModelSpecError:
        ...     print("caught")
        caught
    """


def load_model(spec: str, *, attention: str | None = None, device: str | torch.device = "cpu") -> CoAtNet:
    """The model ``spec`` names, in eval mode, on ``device`` (see the module docstring). Every analysis
    runs on the device of the model it is given.

    Args:
        spec: what to load: a built-in checkpoint (``demo-pre``), a checkpoint file, timm's weights (a
            file or a hub tag), or a variant name (random weights).
        attention: ``pre`` / ``post`` to switch normalization (the weights stay; the model says so).
        device: ``cpu`` (the default), ``cuda``, or None for CUDA where present.

    Returns:
        The model, in eval mode, with ``checkpoint_info`` where it came from a checkpoint.

    Raises:
        ModelSpecError: nothing by that name.
        coatnet.CheckpointError: a file that does not fit.
        coatnet.HubUnavailableError: a hub tag while offline.
        ValueError: a device this machine lacks.

    Examples:
        >>> import analysis
        >>> model = analysis.load_model("demo-pre", attention="post")
        >>> model.training, model.config.attention, model.checkpoint_info.class_names[4]
        (False, 'post', 'Coat')
    """
    where = resolve_device(device)
    try:
        model = load_named_model(spec, attention=attention)  # the one grammar of names (coatnet.weights)
    except ModelNameError as error:
        raise ModelSpecError(str(error)) from None
    return model.to(where)


def describe(model: CoAtNet) -> str:
    """One line: the model, its attention mode (and what it was trained with), and where it came from.

    Args:
        model: a model, loaded or built.

    Returns:
        The line.

    Examples:
        >>> import analysis
        >>> analysis.describe(analysis.load_model("demo-pre"))
        'coatnet_pico, pre-normalization, from fashion-mnist'
        >>> analysis.describe(analysis.load_model("coatnet_toy"))
        'coatnet_toy, pre-normalization, random weights (untrained)'
    """
    info = model.checkpoint_info
    if info is None:
        return f"{model.config.name}, {model.config.attention}-normalization, random weights (untrained)"
    source = info.provenance.get("tag") or info.provenance.get("dataset") or info.path or "checkpoint"
    return f"{model.config.name}, {info.attention_note}, from {source}"
