"""CoAtNet in PyTorch: the paper's family, the layout study, pre- and post-normalization relative attention.

Public surface:
    create_model, list_models, CoAtNet, CoAtNetConfig: build models.
    record_attention: per-call, thread-safe recording of attention logits, bias and weights.
    save_checkpoint, load_checkpoint: safetensors checkpoints with a JSON metadata header.
    count_params, count_macs, stage_costs: model size and multiply-accumulates.
"""

from __future__ import annotations

from coatnet.config import BlockGroup, CoAtNetConfig, StageConfig
from coatnet.model import CoAtNet, StageInfo
from coatnet.recording import AttentionRecord, record_attention
from coatnet.variants import create_model, list_models

__all__ = [
    "AttentionRecord",
    "BlockGroup",
    "CoAtNet",
    "CoAtNetConfig",
    "StageConfig",
    "StageInfo",
    "create_model",
    "list_models",
    "record_attention",
]
__version__ = "0.1.0"
