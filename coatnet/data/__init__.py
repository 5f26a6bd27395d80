"""Data: datasets (Fashion-MNIST, CIFAR-10 binary, image folders), how a model's inputs are prepared
(:class:`Preprocessing`), and batches prepared for a model.
Imports nothing else of coatnet but its file helpers."""

from __future__ import annotations

from coatnet.data.batches import iterate_batches, normalize, prepare_batch
from coatnet.data.datasets import image_to_tensor, open_dataset, open_for_model, upright_picture
from coatnet.data.preprocessing import Preprocessing

__all__ = [
    "Preprocessing",
    "image_to_tensor",
    "iterate_batches",
    "normalize",
    "open_dataset",
    "open_for_model",
    "prepare_batch",
    "upright_picture",
]
