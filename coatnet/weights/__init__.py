"""Weights: safetensors checkpoints, the hub, timm's weights imported exactly, class names, and the
built-in checkpoints. Imports coatnet.model, coatnet.data (a checkpoint's preprocessing) and coatnet's file
helpers."""

from __future__ import annotations

from coatnet.weights.checkpoint import with_normalization
from coatnet.weights.demos import DEMO_NAMES, LAYOUT_NAMES, MAXVIT_NAMES, NAMES, Demo, demo
from coatnet.weights.hub import (
    PRETRAINED_TAGS,
    HubModelNotFoundError,
    HubUnavailableError,
    cached_timm_weights,
    check_hub,
    download_timm_weights,
)

__all__ = [
    "Demo",
    "HubModelNotFoundError",
    "HubUnavailableError",
    "DEMO_NAMES",
    "LAYOUT_NAMES",
    "MAXVIT_NAMES",
    "NAMES",
    "PRETRAINED_TAGS",
    "cached_timm_weights",
    "check_hub",
    "demo",
    "download_timm_weights",
    "with_normalization",
]
