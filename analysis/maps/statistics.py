"""Per-head attention statistics: how far each head looks, how spread its weights are, and how much of
its logits come from position rather than content.

- Mean attention distance (Dosovitskiy et al. 2021, Raghu et al. 2021), in input pixels:
  ``sum_j w_ij * ||pos_i - pos_j|| * stride``, positions at grid cell centres, averaged over queries and
  images. A head that looks one cell to the right has distance = stride.
- Entropy ``-sum_j w_ij log w_ij`` in nats, averaged over queries and images; a uniform head has log N.
- Position share: per query, ``var_j(bias_ij) / (var_j(bias_ij) + var_j(content_ij))``, averaged over
  queries and images: 1 for a head driven by position alone, 0 for content alone.

Every query counts, also at the border: a head whose bias favours the key one cell to the right gives a
query in the last column (which has no right neighbour) whatever the rest of its row gives, uniform
weights if nothing else stands out, and that query's distance enters the mean as it is.

Pre-normalization weights are softmax rows and are used as they are. Post-normalization weights
``softmax(content) + bias`` can be negative and need not sum to 1: distance and entropy use them clipped
at 0 and renormalised per query, and the position share compares the bias with ``softmax(content)``
(both are added as weights there), not with the content logits. Each block's ``note`` says which.

Examples:
    >>> stats = attention_statistics(model, images)
    >>> x, head, y = stats.points("distance_px")  # a ViT-style scatter: block index vs distance per head
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.geometry import NamedBlocks
from analysis.maps.attention import AttentionMaps, BlockAttention, attention_maps
from coatnet.model.network import CoAtNet

METRICS = ("distance_px", "entropy", "position_share")
NOTES = {
    "pre": "pre: distance and entropy of the effective softmax weights; position share of the logit "
    "variance (bias vs content logits q k^T / sqrt(d))",
    "post": "post: distance and entropy of the effective weights softmax(content) + bias clipped at 0 and "
    "renormalised per query; position share of the weight variance (bias vs softmax(content))",
}

PARTITION_NOTES = {  # what a statistic of windowed attention averaged over
    "block": "; block attention: every query and key within the query's {}x{} window, max entropy that "
    "window's",
    "grid": "; grid attention: every query and key within the query's {}x{} dilated grid group, distances "
    "on the stage grid, max entropy that group's",
}


@dataclass(frozen=True)
class BlockStatistics:
    """The statistics of one attention block, one value per head, averaged over queries and images.

    Attributes:
        name: the block, ``S3.0``.
        stage: the stage, 1..4.
        block: the block's index within its stage.
        mode: ``pre`` or ``post`` normalization.
        grid: the (H, W) grid.
        stride: input pixels per grid step.
        distance_px: (heads,) mean attention distance in input pixels.
        entropy: (heads,) mean entropy in nats.
        max_entropy: log n, the entropy of uniform attention over the keys a query sees (the grid, or
            its window).
        position_share: (heads,) share of the variance from position; NaN for a head in which neither
            the bias nor the content varies over the keys of any query.
        note: which weights and normalization these numbers used.

    Examples:
        >>> import torch, analysis
        >>> stats = analysis.attention_statistics(analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28))
        >>> s3 = stats.block("S3.0")
        >>> s3.distance_px.shape, round(s3.max_entropy, 3), bool((s3.entropy <= s3.max_entropy).all())
        ((4,), 3.892, True)
    """

    name: str
    stage: int
    block: int
    mode: str
    grid: tuple[int, int]
    stride: int
    distance_px: np.ndarray
    entropy: np.ndarray
    max_entropy: float
    position_share: np.ndarray
    note: str

    @property
    def heads(self) -> int:
        return len(self.distance_px)


@dataclass(frozen=True)
class AttentionStatistics(NamedBlocks):
    """Statistics of every attention block, in forward order (:func:`attention_statistics`).

    Attributes:
        blocks: one :class:`BlockStatistics` per block; ``block("S3.0")`` finds one by name.

    Examples:
        >>> import torch, analysis
        >>> stats = analysis.attention_statistics(analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28))
        >>> [b.name for b in stats.blocks]
        ['S3.0', 'S3.1', 'S4.0']
    """

    blocks: tuple[BlockStatistics, ...]

    def points(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One point per head of every block, for a scatter of ``metric`` against depth.

        Args:
            metric: ``distance_px``, ``entropy`` or ``position_share``.

        Returns:
            (block_index, head, value), each (total heads,): block_index counts attention blocks from 0
            in forward order (``names[block_index]`` names it).
        """
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if not self.blocks:
            return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0, dtype=np.float32)
        index = np.concatenate([np.full(b.heads, i) for i, b in enumerate(self.blocks)])
        head = np.concatenate([np.arange(b.heads) for b in self.blocks])
        value = np.concatenate([getattr(b, metric) for b in self.blocks])
        return index, head, value


def grid_distances(grid: tuple[int, int]) -> np.ndarray:
    """Euclidean distances between the cell centres of a grid, in grid steps: (N, N), row-major."""
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    return np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])


def window_distances(grid: tuple[int, int], positions: np.ndarray) -> np.ndarray:
    """Euclidean distances on the (H, W) grid, in grid steps, between the positions of one window
    (``positions``: (windows, n) row-major grid indices; every window of a partition is a shifted copy of
    the first, so the first's serve all): (n, n). A dilated grid group's neighbours lie H / G apart."""
    rows, cols = np.divmod(np.asarray(positions)[0], grid[1])
    return np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])


def mean_distance(
    weights: np.ndarray, grid: tuple[int, int], stride: float = 1.0, positions: np.ndarray | None = None
) -> np.ndarray:
    """Each query's weighted mean distance to the keys, ``sum_j w_ij ||pos_i - pos_j|| * stride``.

    Args:
        weights: (..., N, N) weights over keys (rows should sum to 1), or per window (..., n, n).
        grid: the (H, W) grid.
        stride: pixels per grid step (1 gives grid steps).
        positions: for per-window weights, each window's positions on the grid (windows, n).

    Returns:
        (..., N) or (..., n) float64.
    """
    distances = grid_distances(grid) if positions is None else window_distances(grid, positions)
    return (weights * distances).sum(axis=-1) * stride


def entropy(weights: np.ndarray) -> np.ndarray:
    """Each row's entropy ``-sum_j w_ij log w_ij`` in nats, with 0 log 0 = 0: (..., N, N) -> (..., N)."""
    w = np.asarray(weights, dtype=np.float64)
    return -(w * np.log(np.where(w > 0, w, 1.0))).sum(axis=-1)


def clipped_renormalised(weights: np.ndarray) -> np.ndarray:
    """Weights clipped at 0 and divided by their row sums; rows with nothing left are NaN."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    total = w.sum(axis=-1, keepdims=True)
    return np.divide(w, total, out=np.full_like(w, np.nan), where=total > 0)


def position_share(bias: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Per query, ``var_j(bias_ij) / (var_j(bias_ij) + var_j(content_ij))``; NaN where neither varies.

    Args:
        bias: (heads, N, N) or broadcastable to ``content``.
        content: (..., heads, N, N).

    Returns:
        (..., heads, N) float64.
    """
    var_bias = np.broadcast_to(np.asarray(bias, dtype=np.float64).var(axis=-1), content.shape[:-1])
    var_content = np.asarray(content, dtype=np.float64).var(axis=-1)
    total = var_bias + var_content
    return np.divide(var_bias, total, out=np.full_like(total, np.nan), where=total > 0)


def _head_mean(values: np.ndarray) -> np.ndarray:
    """(B, heads, N) -> (heads,): the mean over images and queries of the values that are defined."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=(0, 2))
    total = np.where(defined, values, 0.0).sum(axis=(0, 2))
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0).astype(np.float32)


def block_statistics(block: BlockAttention) -> BlockStatistics:
    """The statistics of one block of :func:`~analysis.maps.attention.attention_maps`."""
    if block.mode == "pre":
        weights = block.effective.astype(np.float64)
        share = position_share(block.bias, block.content_logits)
    else:
        weights = clipped_renormalised(block.effective)
        share = position_share(block.bias, block.content)
    return BlockStatistics(
        name=block.name,
        stage=block.stage,
        block=block.block,
        mode=block.mode,
        grid=block.grid,
        stride=block.stride,
        distance_px=_head_mean(mean_distance(weights, block.grid, block.stride, block.positions)),
        entropy=_head_mean(entropy(weights)),
        max_entropy=float(np.log(block.keys)),
        position_share=_head_mean(share),
        note=NOTES[block.mode] + PARTITION_NOTES.get(block.partition, "").format(*block.window),
    )


def attention_statistics(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    maps: AttentionMaps | None = None,
) -> AttentionStatistics:
    """Mean distance, entropy and position share per head of every attention block.

    Args:
        model: a CoAtNet.
        images: a preprocessed (B, C, H, W) batch, a (C, H, W) image, or PIL images.
        maps: :func:`~analysis.maps.attention.attention_maps` of these images, to save the forward pass; its
            blocks (all or some) are the ones described.

    Returns:
        :class:`AttentionStatistics`, one :class:`BlockStatistics` per block.

    Examples:
        >>> import torch, analysis
        >>> model, x = analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28)
        >>> maps = analysis.attention_maps(model, x, blocks=["S4.0"])
        >>> [b.name for b in analysis.attention_statistics(model, x, maps=maps).blocks]
        ['S4.0']
    """
    if maps is None:
        maps = attention_maps(model, images)
    return AttentionStatistics(blocks=tuple(block_statistics(b) for b in maps.blocks))
