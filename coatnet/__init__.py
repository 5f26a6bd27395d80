"""CoAtNet in PyTorch: the paper's family, the layout study, pre- and post-normalization relative attention.

Public surface:
    create_model, list_models, CoAtNet, CoAtNetConfig: build models.
    Part, PartName: a model's named parts (``model.parts()``) and the one parser of names such as
        ``S3.0``, ``S1.0.grid`` and ``S3.0.attn.weights``.
    record_attention: per-call, thread-safe recording of attention logits, bias and weights.
    trace, tracing, trace_names: a named activation cache of every block's parts (the hook map of
        coatnet.model.tracing, docs/causal.md), and activation patching at the same names; per call,
        thread-safe.
    intervene, Intervention: per-call, thread-safe substitutions in attention and MBConv blocks
        (knockout, content_only, bias_only, uniform, swap_normalization, zero_branch, no_se);
        ATTENTION_KINDS, CONV_KINDS: which kinds apply to which blocks, intervention_targets: which names
        and kinds a model takes (a MaxViT block S1.0, S1.0.block, S1.0.grid); INTERVENTION_DESCRIPTIONS: each
        kind in words.
    private_random: per-call generator for stochastic depth and dropout (the global RNG untouched).
    parse_model_name, ModelName: what a model's name means (a file, a built-in checkpoint, a timm tag, a
        variant): the one grammar every command, analysis and page uses.
    save_checkpoint, load_checkpoint: safetensors checkpoints with a JSON metadata header; class_names: a
        model's class names, as its checkpoint (``model.checkpoint_info``) gives them.
    Preprocessing: how a model's inputs are prepared (size, channels, mean/std, resampling, crop).
    from_timm: timm's CoAtNet weights (hub tag or local file) as our model, with identical outputs.
    count_params, count_macs, stage_costs: model size and multiply-accumulates.
    train, TrainSettings, TrainResult: train a model (one process, or several under torchrun: DDP),
        writing checkpoints, resume state and metrics every epoch.
    available_devices, resolve_device: the devices this machine has, and a device name checked against them.
    atomic_write: a file written whole or not at all.
    for_inference: the model prepared once for plain forward passes (BatchNorm folded, biases gathered,
        channels-last), rebuilt when its weights change; the plain model stays as it is.
"""

from __future__ import annotations

from coatnet.data.preprocessing import Preprocessing
from coatnet.devices import available_devices, resolve_device
from coatnet.files import atomic_write
from coatnet.model.complexity import StageCost, count_macs, count_params, stage_costs
from coatnet.model.config import BlockGroup, CoAtNetConfig, StageConfig
from coatnet.model.inference import for_inference
from coatnet.model.interventions import (
    ATTENTION_KINDS,
    CONV_KINDS,
    Intervention,
    intervene,
    intervention_targets,
)
from coatnet.model.interventions import DESCRIPTIONS as INTERVENTION_DESCRIPTIONS
from coatnet.model.network import CoAtNet, StageInfo
from coatnet.model.parts import Part, PartName
from coatnet.model.randomness import private_random
from coatnet.model.recording import AttentionRecord, record_attention
from coatnet.model.tracing import trace, trace_names, tracing
from coatnet.model.variants import create_model, list_models
from coatnet.training.loop import TrainResult, TrainSettings, train
from coatnet.version import __version__ as __version__
from coatnet.weights.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    class_names,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from coatnet.weights.hub import HubUnavailableError
from coatnet.weights.names import ModelName, parse_model_name
from coatnet.weights.timm_import import from_timm

__all__ = [
    "atomic_write",
    "available_devices",
    "resolve_device",
    "ATTENTION_KINDS",
    "CONV_KINDS",
    "INTERVENTION_DESCRIPTIONS",
    "intervention_targets",
    "AttentionRecord",
    "BlockGroup",
    "CheckpointError",
    "CheckpointInfo",
    "CoAtNet",
    "Part",
    "PartName",
    "CoAtNetConfig",
    "HubUnavailableError",
    "Intervention",
    "ModelName",
    "Preprocessing",
    "StageConfig",
    "StageCost",
    "StageInfo",
    "TrainResult",
    "TrainSettings",
    "class_names",
    "count_macs",
    "count_params",
    "create_model",
    "for_inference",
    "from_timm",
    "intervene",
    "list_models",
    "load_checkpoint",
    "parse_model_name",
    "private_random",
    "trace",
    "trace_names",
    "tracing",
    "read_checkpoint_info",
    "record_attention",
    "save_checkpoint",
    "stage_costs",
    "train",
]
