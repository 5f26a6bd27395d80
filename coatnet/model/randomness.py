"""Per-call random numbers for the stochastic layers (stochastic depth, dropout), like the recorder.

A model in training mode draws masks on every forward pass. By default they come from torch's global
generator, as in any training loop. A caller that must not touch the global random state, or that wants
the same masks on every call (an analysis of a shared model in training mode, from any thread), opens
:func:`private_random`: the layers then draw from its generator, in this context only (a
:class:`contextvars.ContextVar`, so other threads and tasks never see it).

Examples:
    >>> with private_random(torch.Generator().manual_seed(0)):
    ...     logits = model.train()(images)  # the global RNG state is untouched
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_GENERATOR: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "coatnet_generator", default=None
)


@contextmanager
def private_random(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Stochastic layers (stochastic depth, dropout) draw from ``generator`` (on the model's device) inside
    this context, in this thread only; torch's global generator is left untouched.

    Args:
        generator: the generator to draw from.

    Yields:
        ``generator``.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.create_model("coatnet_toy", img_size=32, drop_path_rate=0.5).train()
        >>> x = torch.randn(2, 3, 32, 32)
        >>> runs = []
        >>> for _ in range(2):
        ...     with torch.no_grad(), coatnet.private_random(torch.Generator().manual_seed(0)):
        ...         runs.append(model(x))
        >>> torch.equal(runs[0], runs[1])  # the same masks from the same seed
        True
    """
    token = _GENERATOR.set(generator)
    try:
        yield generator
    finally:
        _GENERATOR.reset(token)


def active_generator() -> torch.Generator | None:
    """The generator of the current context, or None: the global one (always None while compiling)."""
    if torch.compiler.is_compiling():
        return None
    return _GENERATOR.get()
