"""Per-call recording of attention internals, safe with one model shared by many threads.

Recording is a view of the named activation cache (:mod:`coatnet.model.tracing`): a recorder is a tracer
that keeps every attention's ``attn.logits``, ``attn.bias`` and ``attn.weights``, and makes one
:class:`AttentionRecord` of each attention's three as the attention finishes. It is opened in the same
per-call capture context as :func:`coatnet.tracing`, a :class:`contextvars.ContextVar`, never on a module:
every thread (and every asyncio task) sees only the recorder it opened itself, so two threads that run
recorded forward passes through one model object each get their own records. While a recorder is open,
attention blocks take their explicit path, which makes the three; nothing else changes (blocks still
compute in place: nothing overwrites what a recorder keeps).

Examples:
    >>> with record_attention() as records:
    ...     logits = model(images)
    >>> records[0].weights.shape  # (B, heads, N, N) of the first attention block
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from coatnet.model.parts import PartName
from coatnet.model.tracing import EXPLICIT_NAMES, Tracer, active_capture, capturing
from coatnet.model.windows import window_positions


@dataclass(frozen=True)
class AttentionRecord:
    """What one attention block computed in one forward pass.

    Attributes:
        stage: stage index (1..4 for S1..S4).
        block: block index within the stage.
        mode: ``pre`` or ``post`` normalization.
        grid: the (H, W) key/query grid; queries and keys are flattened row-major.
        content_logits: ``q k^T / sqrt(d)``, shape (B, heads, N, N).
        bias: the relative-position bias ``w_{i-j}`` as used, shape (heads, N, N).
        weights: the effective weights applied to the values, shape (B, heads, N, N):
            ``softmax(content + bias)`` (pre) or ``softmax(content) + bias`` (post).
        partition: ``global``, or in a MaxViT block ``block`` (windows) or ``grid`` (dilated grids):
            then B counts images x windows (:func:`coatnet.model.windows.partition`'s order) and ``grid``
            is one window's (the window or grid size).
        field: the (H, W) stage grid the windows tile (``grid`` itself for global attention);
            :attr:`positions` places each window on it.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> with torch.no_grad(), coatnet.record_attention() as records:
        ...     _ = model(torch.randn(2, 1, 28, 28))
        >>> r = records[0]
        >>> r.name, r.mode, r.grid, tuple(r.weights.shape)
        ('S3.0', 'pre', (7, 7), (2, 4, 49, 49))
    """

    stage: int
    block: int
    mode: str
    grid: tuple[int, int]
    content_logits: torch.Tensor
    bias: torch.Tensor
    weights: torch.Tensor
    partition: str = "global"
    field: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.field is None:
            object.__setattr__(self, "field", tuple(self.grid))

    @property
    def name(self) -> str:
        """``S3.0``; a MaxViT block's two attentions ``S1.0.block`` and ``S1.0.grid`` (as traced)."""
        return PartName.of(self.stage, self.block, None if self.partition == "global" else self.partition)

    @property
    def windows(self) -> int:
        """Windows per image (1 for global attention)."""
        return (self.field[0] // self.grid[0]) * (self.field[1] // self.grid[1])

    @property
    def positions(self) -> torch.Tensor:
        """(windows, N_window): each window's positions as row-major indices into :attr:`field`."""
        return window_positions(self.field, self.grid, self.partition)


class AttentionRecorder(list):
    """The list of :class:`AttentionRecord` of one recorded call, in forward order; :attr:`tracer` is the
    view of the named activation cache that fills it."""

    def __init__(self, *, detach: bool = True) -> None:
        super().__init__()
        self.detach = detach
        self.tracer = RecordingTracer(self, detach=detach)


class RecordingTracer(Tracer):
    """A tracer keeping each attention's logits, bias and weights (detached unless ``detach`` is False)
    and making of them, when the attention tells it that it is done, the record it appends to
    ``records``; it keeps nothing after that."""

    def __init__(self, records: AttentionRecorder, *, detach: bool) -> None:
        super().__init__([f"*.{leaf}" for leaf in EXPLICIT_NAMES], {}, detach, in_place=True)
        self.records = records

    def attended(self, name: str, attention: nn.Module, grid: tuple[int, int], field: tuple[int, int] | None):
        logits, bias, weights = (self.cache.pop(f"{name}.{leaf}") for leaf in EXPLICIT_NAMES)
        record = AttentionRecord(
            stage=attention.stage, block=attention.block, mode=attention.mode, grid=grid,
            content_logits=logits, bias=bias, weights=weights, partition=attention.partition, field=field,
        )  # fmt: skip
        self.records.append(record)


@contextmanager
def record_attention(*, detach: bool = True) -> Iterator[AttentionRecorder]:
    """Record every attention block of the forward passes run inside this context, in this thread.

    Args:
        detach: store detached tensors (default); ``False`` keeps them in the autograd graph.

    Yields:
        The recorder, a list of :class:`AttentionRecord` filled as blocks run.

    Examples:
        >>> import torch, coatnet
        >>> model = coatnet.load_checkpoint("demo-pre")
        >>> with torch.no_grad(), coatnet.record_attention() as records:
        ...     _ = model(torch.randn(1, 1, 28, 28))
        >>> [r.name for r in records]
        ['S3.0', 'S3.1', 'S4.0']
    """
    recorder = AttentionRecorder(detach=detach)
    with capturing("record", recorder.tracer):
        yield recorder


def active_recorder() -> AttentionRecorder | None:
    """The recorder open in the current context, or None (always None while ``torch.compile`` traces: a
    compiled model runs eagerly when one may be open, :func:`coatnet.model.contexts.needs_eager`)."""
    capture = active_capture()
    tracer = capture.get("record") if capture is not None else None
    return tracer.records if tracer is not None else None
