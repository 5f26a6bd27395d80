"""CoAtNet Lens analysis layer: pure functions from a model and images to small frozen dataclasses of
numpy arrays (DESIGN.md, "The analysis layer"). Each function leaves the model as it found it and is safe
when several threads analyse through one model at once.
"""

from __future__ import annotations

from analysis.attention import (
    AttentionMaps,
    BlockAttention,
    attention_maps,
    fuse_heads,
    query_from_cell,
    query_index,
    query_map,
    upsample_to_image,
)
from analysis.rollout import Rollout, attention_rollout, pooling_link
from analysis.statistics import AttentionStatistics, BlockStatistics, attention_statistics

__all__ = [
    "AttentionMaps",
    "AttentionStatistics",
    "BlockAttention",
    "BlockStatistics",
    "Rollout",
    "attention_maps",
    "attention_rollout",
    "attention_statistics",
    "fuse_heads",
    "pooling_link",
    "query_from_cell",
    "query_index",
    "query_map",
    "upsample_to_image",
]
