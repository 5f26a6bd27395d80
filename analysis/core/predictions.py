"""The classes a model gives an image: the top-k of its logits, named from the checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k list: its index, name (``class 7`` when unnamed) and softmax probability.

    Attributes:
        index: the class index.
        name: its name, or ``class <index>``.
        probability: its softmax probability, in [0, 1].

    Examples:
        >>> import analysis
        >>> analysis.Prediction(4, "Coat", 0.91).name
        'Coat'
    """

    index: int
    name: str
    probability: float


def top_k(logits: np.ndarray, class_names: Sequence[str] | None = None, k: int = 5) -> tuple[Prediction, ...]:
    """The ``k`` most probable classes of one image's logits (C,), most probable first.

    Args:
        logits: (C,) raw scores, e.g. ``attention_maps(...).logits[0]``.
        class_names: C names (``model.checkpoint_info.class_names``), or None.
        k: how many (fewer when there are fewer classes).

    Returns:
        The predictions, most probable first.

    Examples:
        >>> import numpy as np, analysis
        >>> top = analysis.top_k(np.array([0.1, 2.0, 1.0]), ["a", "b", "c"], k=2)
        >>> [(p.name, round(p.probability, 2)) for p in top]
        [('b', 0.66), ('c', 0.24)]
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
