"""Attention weights per block, head and query, split into their content and position parts.

One recorded forward pass (:func:`coatnet.record_attention`, per call and thread-safe) gives, for every
attention block, what the paper's section 2.1 names:

- content: ``softmax_j(q_i k_j / sqrt(d))``, the weights the input alone would give;
- bias: the relative-position bias ``w(key - query)`` as used (the paper's ``w_{i-j}``), and for
  pre-normalization its softmax over the keys, the weights position alone would give;
- effective: the weights the block applied to its values, ``softmax(content + bias)`` (pre) or
  ``softmax(content) + bias`` (post; these can be negative and their rows need not sum to 1).

Queries and keys are the cells of the block's (H, W) grid, flattened row-major.

Windowed attention (MaxViT's block and grid attention) is kept as computed: each of an image's windows
attends within itself, its arrays (B * windows, heads, n, n) for n positions a window, and ``positions``
places each window's positions on the grid (:func:`coatnet.model.windows.window_positions`). A query's
map (:func:`query_map`) is its window's row laid on the whole grid, NaN ("not attended") outside the
window; :meth:`BlockAttention.dense` gives the block-sparse N x N operator. Global attention is the
one-window case: its arrays are (B, heads, N, N) and its maps have no NaN.

Examples:
    >>> maps = attention_maps(model, images)
    >>> s3 = maps.block("S3.0")
    >>> q = query_index(s3.grid, s3.stride, y=100, x=60)  # the cell holding that pixel (analysis.core.query)
    >>> heads = query_map(s3, q)  # (heads, H, W) weights over the keys
    >>> overlay = upsample_to_image(fuse_heads(heads), maps.image_size)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from analysis.core.geometry import NamedBlocks, attention_blocks, dense_windows
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from coatnet.model.network import CoAtNet
from coatnet.model.recording import record_attention
from coatnet.model.windows import window_positions

PARTS = ("effective", "content", "bias", "bias_softmax")
FUSIONS = ("mean", "max")


@dataclass(frozen=True)
class BlockAttention:
    """The attention of one block for a batch of images.

    Attributes:
        name: ``S3.0``: stage and block index.
        stage: the stage, 1..4.
        block: the block's index within its stage.
        mode: ``pre`` or ``post`` normalization.
        grid: the (H, W) query/key grid; N = H * W, positions row-major.
        stride: input pixels per grid step.
        content_logits: ``q k^T / sqrt(d)``, (B, heads, N, N).
        content: ``softmax(content_logits)`` over keys, (B, heads, N, N); computed on first read and kept
            (a softmax over the whole batch, which a caller after the effective weights need not pay).
        bias: the relative-position bias ``w(key - query)`` (the paper's ``w_{i-j}``), (heads, N, N), the
            same for every image.
        bias_softmax: ``softmax(bias)`` over keys, (heads, N, N), for pre-normalization; None for post,
            where the bias is added to the weights, not the logits. Computed on first read and kept.
        effective: the weights the block used, (B, heads, N, N).
        partition: ``global``, or MaxViT's ``block`` (windows) or ``grid`` (dilated grids): then every
            array above is per window, (B * windows, heads, n, n) and (heads, n, n), n = window positions.
        window: the (h, w) positions of one window (``grid`` for global attention).
        positions: (windows, n) each window's positions as row-major indices into ``grid``.

    Examples:
        >>> import numpy as np, torch, analysis
        >>> maps = analysis.attention_maps(analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28))
        >>> s3 = maps.block("S3.0")
        >>> s3.grid, s3.stride, s3.effective.shape, s3.bias.shape
        ((7, 7), 4, (2, 4, 49, 49), (4, 49, 49))
        >>> np.allclose(s3.effective.sum(-1), 1, atol=1e-5)  # pre-normalization: rows sum to 1
        True
    """

    # every attribute, in the order exports write them (analysis.core.summaries.result_items)
    EXPORTED = ("name", "stage", "block", "mode", "grid", "stride", "content_logits", "content", "bias",
                "bias_softmax", "effective", "partition", "window", "positions")  # fmt: skip

    name: str
    stage: int
    block: int
    mode: str
    grid: tuple[int, int]
    stride: int
    content_logits: np.ndarray
    bias: np.ndarray
    effective: np.ndarray
    partition: str = "global"
    window: tuple[int, int] | None = None
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.window is None:
            object.__setattr__(self, "window", tuple(self.grid))
        if self.positions is None:
            if self.partition != "global":
                raise ValueError(f"{self.name}: {self.partition} attention needs its windows' positions")
            object.__setattr__(self, "positions", window_positions(self.grid, self.window, "global").numpy())

    @cached_property
    def content(self) -> np.ndarray:
        return _softmax(self.content_logits)

    @cached_property
    def bias_softmax(self) -> np.ndarray | None:
        return _softmax(self.bias) if self.mode == "pre" else None

    @property
    def heads(self) -> int:
        return self.bias.shape[0]

    @property
    def tokens(self) -> int:
        """N, the positions of the grid."""
        return self.grid[0] * self.grid[1]

    @property
    def keys(self) -> int:
        """n, the keys each query sees: its window's positions (N for global attention)."""
        return self.window[0] * self.window[1]

    @property
    def windows(self) -> int:
        """Windows per image (1 for global attention)."""
        return self.positions.shape[0]

    def locate(self, query: int) -> tuple[int, int]:
        """The window that holds grid position ``query`` and the query's place in it."""
        if not 0 <= query < self.tokens:
            raise ValueError(f"query {query} is outside 0..{self.tokens - 1} of the {self.grid} grid")
        window, place = np.nonzero(self.positions == query)
        return int(window[0]), int(place[0])

    def seen(self, query: int) -> np.ndarray:
        """(H, W) bool: the positions ``query`` attends to (its window; everything for global)."""
        mask = np.zeros(self.tokens, dtype=bool)
        mask[self.positions[self.locate(query)[0]]] = True
        return mask.reshape(self.grid)

    def dense(self, values: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
        """Per-window ``values``, (B * windows, k, n, n) or the bias's (k, n, n), as the block-sparse
        operator on the whole grid, (B, k, N, N) or (k, N, N), ``fill`` outside the windows
        (:func:`analysis.core.geometry.dense_windows`): entry [q, j] is what query q gives key j. For
        global attention ``values`` as they are."""
        if values.ndim == 3:  # the same table in every window
            values = np.broadcast_to(values[None], (self.windows, *values.shape))
            return dense_windows(values, self.positions, self.tokens, fill=fill)[0]
        return dense_windows(values, self.positions, self.tokens, fill=fill)


@dataclass(frozen=True)
class AttentionMaps(NamedBlocks):
    """Every recorded attention block of one forward pass, in forward order (:func:`attention_maps`).

    Attributes:
        blocks: one :class:`BlockAttention` per block; ``block("S3.0")`` finds one by name.
        image_size: the input (H, W) in pixels.
        logits: the model's prediction for the batch, (B, classes).

    Examples:
        >>> import torch, analysis
        >>> maps = analysis.attention_maps(analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28))
        >>> [b.name for b in maps.blocks], maps.image_size, maps.logits.shape
        (['S3.0', 'S3.1', 'S4.0'], (28, 28), (2, 10))
    """

    blocks: tuple[BlockAttention, ...]
    image_size: tuple[int, int]
    logits: np.ndarray


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _softmax(logits: np.ndarray) -> np.ndarray:
    """torch's softmax over the last axis (what the model computes), of a float32 array; read-only when
    ``logits`` is (a result the app shares between sessions stays unwritable)."""
    out = torch.softmax(torch.from_numpy(np.require(logits, requirements="W")), dim=-1).numpy()
    if not logits.flags.writeable:
        out.flags.writeable = False
    return out


def recorded_pass(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    blocks: Sequence[str] | None = None,
    keep_stage_outputs: bool = False,
) -> tuple[AttentionMaps, list[torch.Tensor] | None]:
    """:func:`attention_maps`, optionally with the outputs of stages S0..S4 of the same forward pass
    (analyses that follow positions through the model's pooling need them).

    Returns:
        The maps, and the stage outputs (B, C, H, W) or None.
    """
    batch = as_batch(images, model)
    image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
    refs = {ref.name: ref for ref in attention_blocks(model, image_size)}
    wanted = list(refs) if blocks is None else list(blocks)
    unknown = [name for name in wanted if name not in refs]
    if unknown:
        raise ValueError(
            f"unknown attention block(s) {unknown}; {model.config.name} has {', '.join(refs) or 'none'}"
        )
    with call_model(model) as own, torch.inference_mode(), record_attention() as records:
        features, stage_outputs = own.forward_intermediates(batch)
        logits = own.forward_head(features)
    by_name = {r.name: r for r in records}
    out = []
    for name in wanted:
        record, ref = by_name[name], refs[name]
        out.append(
            BlockAttention(
                name=name,
                stage=ref.stage,
                block=ref.block,
                mode=record.mode,
                grid=tuple(record.field),
                stride=ref.stride,
                content_logits=_numpy(record.content_logits),
                bias=_numpy(record.bias),
                effective=_numpy(record.weights),
                partition=record.partition,
                window=tuple(record.grid),
                positions=record.positions.numpy(),
            )
        )
    maps = AttentionMaps(blocks=tuple(out), image_size=image_size, logits=_numpy(logits))
    return maps, (stage_outputs if keep_stage_outputs else None)


def check_maps_fit(maps: AttentionMaps, image_size: tuple[int, int], batch: int) -> None:
    """Raise ``ValueError`` unless precomputed ``maps`` are of ``batch`` images of ``image_size``."""
    if tuple(maps.image_size) != tuple(image_size) or maps.logits.shape[0] != batch:
        raise ValueError(
            f"maps were computed for {maps.logits.shape[0]} images of {maps.image_size}, "
            f"not these {batch} of {tuple(image_size)}"
        )


def attention_maps(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    blocks: Sequence[str] | None = None,
) -> AttentionMaps:
    """Every head's attention for every query of every attention block (or the named ones), from one
    recorded forward pass under ``torch.inference_mode()``. The model is analysed in the mode it is in.

    Args:
        model: a CoAtNet.
        images: a preprocessed (B, C, H, W) batch, a (C, H, W) image, or PIL images.
        blocks: block names such as ``["S3.0", "S4.1"]``; default all, in forward order.

    Returns:
        :class:`AttentionMaps`: float32 arrays per block, and the logits of the same pass.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> maps = analysis.attention_maps(model, torch.randn(2, 1, 28, 28), blocks=["S4.0"])
        >>> [b.name for b in maps.blocks], maps.block("S4.0").effective.shape
        (['S4.0'], (2, 8, 49, 49))
    """
    return recorded_pass(model, images, blocks=blocks)[0]


def fuse_heads(weights: np.ndarray, how: str = "mean") -> np.ndarray:
    """Fuse the heads of (..., heads, N, N) weights or (heads, H, W) maps: the head axis is the third
    from last.

    Args:
        weights: an array with heads on axis -3.
        how: ``mean`` or ``max`` over heads.

    Returns:
        The array without the head axis.

    Examples:
        >>> import numpy as np, analysis
        >>> heads = np.stack([np.zeros((7, 7)), np.ones((7, 7))])  # 2 heads on a 7x7 grid
        >>> float(analysis.fuse_heads(heads)[0, 0]), float(analysis.fuse_heads(heads, "max")[0, 0])
        (0.5, 1.0)
    """
    if how not in FUSIONS:
        raise ValueError(f"head fusion must be one of {FUSIONS}, got {how!r}")
    return weights.mean(axis=-3) if how == "mean" else weights.max(axis=-3)


def query_map(
    block_attention: BlockAttention, query: int, *, part: str = "effective", image: int = 0
) -> np.ndarray:
    """Each head's weights of one query over the keys, laid out on the grid: for windowed attention the
    query's window (block attention) or dilated grid group (grid attention), NaN where the query does not
    attend (:meth:`BlockAttention.seen`), never 0.

    Args:
        block_attention: one block of :class:`AttentionMaps`.
        query: the row-major query index (:func:`analysis.core.query.query_index`, ``query_from_cell``).
        part: ``effective``, ``content``, ``bias`` (the raw bias) or ``bias_softmax`` (pre only).
        image: the image of the batch (ignored for the bias parts, which are the same for every image).

    Returns:
        (heads, H, W) float32.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> s3 = analysis.attention_maps(model, torch.randn(1, 1, 28, 28)).block("S3.0")
        >>> query = analysis.query_index(s3.grid, s3.stride, 14, 14)  # under input pixel (14, 14)
        >>> analysis.query_map(s3, query, part="content").shape  # where each head looks, by content
        (4, 7, 7)
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    window, place = block_attention.locate(query)
    values = getattr(block_attention, part)
    if values is None:
        raise ValueError(f"{block_attention.name} uses {block_attention.mode}-normalization: no {part}")
    if values.ndim == 3:
        rows = values[:, place]
    else:
        rows = values[image * block_attention.windows + window, :, place]
    if block_attention.partition == "global":
        return rows.reshape(block_attention.heads, *block_attention.grid)
    out = np.full((block_attention.heads, block_attention.tokens), np.nan, dtype=np.float32)
    out[:, block_attention.positions[window]] = rows
    return out.reshape(block_attention.heads, *block_attention.grid)


def upsample_to_image(
    values: np.ndarray, image_size: tuple[int, int], *, mode: str = "nearest"
) -> np.ndarray:
    """A grid map (..., H, W) resized to the image's (..., H_img, W_img) for an overlay.

    Args:
        values: the map(s) on the grid.
        image_size: the image (H, W) in pixels.
        mode: ``nearest`` (each cell becomes a block of pixels) or ``bilinear``.

    Returns:
        float32 array of the same leading shape.

    Examples:
        >>> import numpy as np, analysis
        >>> big = analysis.upsample_to_image(np.arange(4.0).reshape(1, 2, 2), (4, 4))
        >>> big.shape, big[0, :, 0].tolist()
        ((1, 4, 4), [0.0, 0.0, 2.0, 2.0])
    """
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    lead, grid = values.shape[:-2], values.shape[-2:]
    t = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(1, -1, *grid)
    size = (int(image_size[0]), int(image_size[1]))
    if mode == "bilinear":
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    else:  # pixel centres pick their cell, also when the image is not a whole number of cells
        out = F.interpolate(t, size=size, mode="nearest-exact")
    return out.reshape(*lead, *out.shape[-2:]).numpy()
