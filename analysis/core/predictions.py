"""The classes a model gives an image: the top-k of its logits, named from the checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k list: its index, name (``class 7`` when unnamed) and softmax probability."""

    index: int
    name: str
    probability: float


def top_k(logits: np.ndarray, class_names: Sequence[str] | None = None, k: int = 5) -> tuple[Prediction, ...]:
    """The ``k`` most probable classes of one image's logits (C,), most probable first.

    Args:
        logits: (C,) raw scores, e.g. ``attention_maps(...).logits[0]``.
        class_names: C names (``model.checkpoint_info.class_names``), or None.
        k: how many (fewer when there are fewer classes).
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if class_names is not None and len(class_names) != logits.size:
        raise ValueError(f"{len(class_names)} class names for {logits.size} logits")
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-probabilities, kind="stable")[:k]
    return tuple(
        Prediction(
            int(i), class_names[i] if class_names is not None else f"class {i}", float(probabilities[i])
        )
        for i in order
    )
