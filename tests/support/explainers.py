"""A toy explanation method of a user's own, registered for a test and removed after it:
gradient x input (Shrikumar et al. 2016), the input times the gradient of each image's target logit,
summed over channels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

import analysis
from analysis.explain.registry import _unregister

NAME, LABEL = "gradient_x_input", "Gradient x input"


def gradient_x_input(model, images: torch.Tensor, targets: torch.Tensor, **options) -> np.ndarray:
    """(B, H, W): the input times its gradient of each image's target logit, summed over channels;
    the model's parameters are left without gradients."""
    x = images.detach().clone().requires_grad_()
    logits = model(x)
    (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return (x * gradient).sum(1).detach().cpu().numpy()


@contextmanager
def registered() -> Iterator[analysis.Explainer]:
    """:func:`gradient_x_input` registered as ``gradient_x_input`` for the block, removed after it."""
    record = analysis.register_explainer(NAME, gradient_x_input, label=LABEL, short_label="GxI")
    try:
        yield record
    finally:
        _unregister(NAME)
