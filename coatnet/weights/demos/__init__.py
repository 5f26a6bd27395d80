"""The built-in checkpoints: small CoAtNets and a MaxViT trained by ``coatnet train`` on Fashion-MNIST.

``demo-pre`` and ``demo-post`` are identical but for the attention normalization (the paper's section 2.1);
``demo-maxvit`` is a small MaxViT (block and grid attention at every stage) trained with their recipe;
``layout-c-c-c-c`` .. ``layout-vit-rel``, where shipped, are the layout study's models
(:mod:`coatnet.training.layouts`).
Each lives in its own folder here: ``model.safetensors``, ``metrics.json`` / ``metrics.csv`` (per epoch)
and ``MODEL_CARD.md`` (the exact command, epochs, wall time, machine and test accuracy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coatnet.model.layouts import LAYOUTS

HERE = Path(__file__).resolve().parent
# the layout study's models trained on all 60,000 images (coatnet/training/layouts.py), where shipped
LAYOUT_NAMES = tuple(layout.checkpoint for layout in LAYOUTS)
DEMO_NAMES = ("demo-pre", "demo-post")  # the paper's two normalizations, trained alike
MAXVIT_NAMES = ("demo-maxvit",)  # CoAtNet's successor, windowed attention (CHOICES.md says why this one)
NAMES = (*DEMO_NAMES, *MAXVIT_NAMES, *(n for n in LAYOUT_NAMES if (HERE / n / "model.safetensors").exists()))


@dataclass(frozen=True)
class Demo:
    """The files of one built-in checkpoint."""

    name: str
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def model_card(self) -> str:
        return (self.folder / "MODEL_CARD.md").read_text()

    def metrics(self) -> list[dict[str, Any]]:
        """Per-epoch training metrics (epoch, step, lr, train/test loss and accuracy, images/s...)."""
        return json.loads((self.folder / "metrics.json").read_text())


def builtin_name(name: str) -> str | None:
    """``demo-pre`` for ``demo-pre`` / ``Demo_Pre``...; None when ``name`` is no built-in checkpoint."""
    key = str(name).strip().lower().replace("_", "-")
    return key if key in NAMES else None


def demo(name: str) -> Demo:
    """The built-in checkpoint called ``name`` (one of :data:`NAMES`)."""
    key = builtin_name(name)
    if key is None:
        raise KeyError(f"no built-in checkpoint {name!r}; the built-in ones are {', '.join(NAMES)}")
    return Demo(name=key, folder=HERE / key)
