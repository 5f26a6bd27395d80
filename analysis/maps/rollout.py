"""Attention rollout (Abnar & Zuidema 2020) through every attention block, linked across the model's own
down-sampling.

Per block the heads are fused, ``A = fuse_heads(effective)``, and the residual connection is counted as
rollout counts it, ``A' = 0.5 A + 0.5 I``; for pre-normalization the rows are then normalised to sum to 1.
Where an attention block pools its input (the first block of S4 in C-C-T-T: ``Attention(Pool(Norm(x)))``,
Eq. 4), its positions are linked to the previous grid by a matrix L (N_out, N_in) that follows the pool
the model applies: for max pooling, the input position each window selected for this image (the share
of channels whose maximum came from each position); for average pooling, uniform over the window. Then

    ``R = A'_last @ ... @ L @ ... @ A'_first``  (N_last, N_first)

maps each query of the last block to the positions of the first attention block's grid.

Post-normalization weights ``softmax(content) + bias`` can be negative and their rows need not sum to 1.
By default (``post_handling="as_is"``) they are rolled out as the block used them, not renormalised;
``"abs_normalized"`` takes their absolute values and normalises the rows. The result says which.

Windowed attention (MaxViT) is rolled out as computed: each of a block's block and grid attentions is a
block-sparse N x N operator on the stage's grid (a query's row is its window's; 0 elsewhere), composed
exactly, block attention then grid attention, and linked across stages by the pool of the MBConv's
residual path (its shortcut: the average over each 2 x 2 window for MaxViT). The product is taken from
the last block back, so it costs (N_last x N_k x N_k) per block, never N_first^3.

Examples:
    >>> rollout = attention_rollout(model, images, query=0)
    >>> rollout.map.shape  # (B, H_first, W_first): where the last block's query 0 draws from
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from analysis.core.geometry import (
    AveragedStep,
    BlockRef,
    WindowedStep,
    as_matrix,
    attention_blocks,
    times,
    windowed_step,
)
from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from analysis.maps.attention import AttentionMaps, BlockAttention, check_maps_fit, fuse_heads, recorded_pass
from coatnet.model.network import CoAtNet

POST_HANDLING = ("as_is", "abs_normalized")
NORMALIZATION = {
    "pre": "pre: softmax weights, rows normalised after the residual mix",
    "as_is": "post: effective weights as used, not renormalised",
    "abs_normalized": "post: absolute effective weights, rows renormalised after the residual mix",
}


@dataclass(frozen=True)
class Rollout:
    """Attention rollout of a batch (:func:`attention_rollout`).

    Attributes:
        matrix: (B, N_last, N_first): how much each query of the last attention block draws from each
            position of the first attention block's grid.
        blocks: the attention blocks rolled out, in forward order.
        grid_first: the (H, W) grid of the first attention block.
        grid_last: the (H, W) grid of the last attention block.
        stride_first: input pixels per grid step of the first block.
        stride_last: input pixels per grid step of the last block.
        image_size: the input (H, W) in pixels.
        query: the last-grid query of ``map``, or None for the mean over all queries.
        map: (B, H_first, W_first), the row of ``query`` (or the mean row) on the first grid.
        mode: ``pre`` or ``post`` normalization.
        head_fusion: how heads were fused, ``mean`` or ``max``.
        normalization: which weights were rolled out and how, e.g.
            ``post: effective weights as used, not renormalised``.
        label: a one-line description for figure titles.

    Examples:
        >>> import numpy as np, torch, analysis
        >>> rollout = analysis.attention_rollout(analysis.load_model("demo-pre"), torch.randn(2, 1, 28, 28))
        >>> rollout.blocks, rollout.matrix.shape, np.allclose(rollout.matrix.sum(-1), 1, atol=1e-4)
        (('S3.0', 'S3.1', 'S4.0'), (2, 49, 49), True)
    """

    matrix: np.ndarray
    blocks: tuple[str, ...]
    grid_first: tuple[int, int]
    grid_last: tuple[int, int]
    stride_first: int
    stride_last: int
    image_size: tuple[int, int]
    query: int | None
    map: np.ndarray
    mode: str
    head_fusion: str
    normalization: str
    label: str

    def query_map(self, query: int | None) -> np.ndarray:
        """(B, H_first, W_first): the row of last-grid ``query``, or the mean over queries for None."""
        return _row_map(self.matrix, query, self.grid_first, self.grid_last)


def _row_map(
    matrix: np.ndarray, query: int | None, grid_first: tuple[int, int], grid_last: tuple[int, int]
) -> np.ndarray:
    n = matrix.shape[1]
    if query is None:
        return matrix.mean(axis=1).reshape(-1, *grid_first)
    if not 0 <= query < n:
        raise ValueError(f"query {query} is outside 0..{n - 1} of the last grid {grid_last}")
    return matrix[:, query].reshape(-1, *grid_first)


def pooling_link(pool: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """The link L (B, N_out, N_in) from the positions of a pool's input grid to those of its output grid.

    Args:
        pool: the block's pool: ``nn.MaxPool2d`` (any window, stride, padding), ``nn.AvgPool2d`` or
            ``nn.Identity``.
        inputs: what the pool takes, (B, C, H_in, W_in); only its shape matters for average pooling.

    Returns:
        float64 (B, N_out, N_in), positions row-major. Max pooling: entry [b, o, i] is the share of the
        channels whose maximum in window o came from input position i (rows sum to 1). Average pooling:
        the pool's weights, 1 / window size over each window.

    Examples:
        >>> import torch, analysis
        >>> from torch import nn
        >>> link = analysis.pooling_link(nn.AvgPool2d(2), torch.randn(1, 3, 4, 4))
        >>> link.shape, link[0, 0].reshape(4, 4)[:2, :2].tolist()  # output cell 0 averages a 2x2 window
        ((1, 4, 16), [[0.25, 0.25], [0.25, 0.25]])
    """
    batch, channels, height, width = inputs.shape
    n_in = height * width
    if isinstance(pool, nn.Identity):
        return np.broadcast_to(np.eye(n_in), (batch, n_in, n_in)).copy()
    if isinstance(pool, nn.MaxPool2d):
        _, index = F.max_pool2d(
            inputs.detach().float(), pool.kernel_size, pool.stride, pool.padding, pool.dilation,
            ceil_mode=pool.ceil_mode, return_indices=True,
        )  # fmt: skip
        index = index.flatten(2).transpose(1, 2).cpu()  # (B, C, H_out, W_out) -> (B, N_out, C)
        link = torch.zeros(batch, index.shape[1], n_in, dtype=torch.float64)
        link.scatter_add_(2, index, torch.full(index.shape, 1.0 / channels, dtype=torch.float64))
        return link.numpy()
    if isinstance(pool, nn.AvgPool2d):
        link = _average_link(pool, height, width)
        return np.broadcast_to(link, (batch, *link.shape)).copy()
    raise TypeError(f"no rollout link for pool {type(pool).__name__}")


def _average_link(pool: nn.AvgPool2d, height: int, width: int) -> np.ndarray:
    """An average pool's (N_out, N_in) weights, built per axis: a window is a rectangle and its divisor a
    product (the window's extent, or its cells inside the input, along each axis), so the weight of
    input (i, j) in window (o, p) is the row axis's weight times the column axis's, L = kron(L_rows,
    L_cols), without pooling N_in one-hot images (4096 of 64 x 64 on a MaxViT's S1)."""

    def pair(value: int | tuple[int, int]) -> tuple[int, int]:
        return tuple(value) if isinstance(value, tuple | list) else (value, value)

    kernel, stride, padding = pair(pool.kernel_size), pair(pool.stride), pair(pool.padding)  # stride set

    def axis(size: int, k: int) -> np.ndarray:  # (out, size): the 1D pool's weights
        one_hot = torch.eye(size, dtype=torch.float64)[:, None, :]  # each input position, alone
        pooled = F.avg_pool1d(
            one_hot, kernel[k], stride[k], padding[k], pool.ceil_mode, pool.count_include_pad
        )
        return pooled[:, 0].T.numpy()

    rows, cols = axis(height, 0), axis(width, 1)
    if pool.divisor_override:
        return np.kron(rows > 0, cols > 0) / float(pool.divisor_override)
    return np.kron(rows, cols)


def residual_mixed(
    block: BlockAttention, *, head_fusion: str = "mean", post_handling: str = "as_is"
) -> np.ndarray | WindowedStep:
    """One block's rollout step ``A' = 0.5 fuse_heads(weights) + 0.5 I`` (float64), rows normalised for
    pre-normalization and for ``post_handling="abs_normalized"``: the (B, N, N) matrix for global
    attention; for windowed attention its block-sparse operator on the whole grid, applied window by
    window (:class:`analysis.core.geometry.WindowedStep`; :func:`as_matrix` gives the matrix): exact,
    each query's row its window's."""
    weights = block.effective.astype(np.float64)
    post_abs = block.mode == "post" and post_handling == "abs_normalized"
    if post_abs:
        weights = np.abs(weights)
    # heads fused per window: the mean and the max commute with laying the windows on the grid
    return windowed_step(
        fuse_heads(weights, head_fusion), block.positions, block.tokens,
        weight=0.5, identity=0.5, normalise=block.mode == "pre" or post_abs,
    )  # fmt: skip


def attention_rollout(
    model: CoAtNet,
    images: torch.Tensor | Image.Image | Sequence[Image.Image],
    *,
    query: int | None = None,
    head_fusion: str = "mean",
    post_handling: str = "as_is",
    maps: AttentionMaps | None = None,
) -> Rollout:
    """Roll attention out from the last attention block back to the first one's grid.

    Args:
        model: a CoAtNet with at least one attention block.
        images: a preprocessed (B, C, H, W) batch, a (C, H, W) image, or PIL images.
        query: a query of the last block's grid for ``map``; None averages over all queries.
        head_fusion: ``mean`` or ``max`` over heads.
        post_handling: for post-normalization, ``as_is`` (the effective weights as used) or
            ``abs_normalized`` (absolute weights, rows renormalised). Ignored for pre.
        maps: :func:`attention_maps` of all blocks for the same ``images``, to save the recorded pass.
            With max pooling between attention blocks, the pool's input is still computed again.

    Returns:
        :class:`Rollout`.

    Examples:
        >>> import torch, analysis
        >>> model, x = analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28)
        >>> rollout = analysis.attention_rollout(model, x, query=24, maps=analysis.attention_maps(model, x))
        >>> rollout.map.shape, rollout.query  # S4.0's query 24, drawn back onto S3.0's 7x7 grid
        ((1, 7, 7), 24)
    """
    if post_handling not in POST_HANDLING:
        raise ValueError(f"post_handling must be one of {POST_HANDLING}, got {post_handling!r}")
    fuse_heads(np.zeros((1, 1, 1)), head_fusion)  # validates the name before any work
    batch = as_batch(images, model)
    image_size = (int(batch.shape[-2]), int(batch.shape[-1]))
    refs = attention_blocks(model, image_size)
    if not refs:
        raise ValueError(f"{model.config.name} ({model.config.layout}) has no attention blocks to roll out")
    needs_inputs = any(isinstance(ref.pool, nn.MaxPool2d) for ref in refs[1:])
    stage_outputs = None
    if maps is None:
        maps, stage_outputs = recorded_pass(model, batch, keep_stage_outputs=needs_inputs)
    else:
        _check_maps(maps, [ref.name for ref in refs], image_size, batch.shape[0])
        if needs_inputs:
            with call_model(model) as own, torch.inference_mode():
                stage_outputs = own.forward_intermediates(batch)[1]
    first = maps.blocks[0]

    def pool_input(ref: BlockRef) -> torch.Tensor:  # what the block's pool takes, as its forward makes it
        with call_model(ref.owner) as own, torch.inference_mode():
            return ref.pool_input(stage_outputs[ref.stage - 1], own)

    updates = [residual_mixed(b, head_fusion=head_fusion, post_handling=post_handling) for b in maps.blocks]
    matrix = compose(refs, [b.grid for b in maps.blocks], updates, pool_input)
    last = maps.blocks[-1]
    normalization = NORMALIZATION["pre" if first.mode == "pre" else post_handling]
    span = first.name if len(maps.blocks) == 1 else f"{first.name}..{last.name}"
    matrix = matrix.astype(np.float32)
    return Rollout(
        matrix=matrix,
        blocks=maps.names,
        grid_first=first.grid,
        grid_last=last.grid,
        stride_first=first.stride,
        stride_last=last.stride,
        image_size=image_size,
        query=query,
        map=_row_map(matrix, query, first.grid, last.grid),
        mode=first.mode,
        head_fusion=head_fusion,
        normalization=normalization,
        label=f"attention rollout {span}, heads fused by {head_fusion}, residual 0.5; {normalization}",
    )


def compose(
    refs: Sequence[BlockRef],
    grids: Sequence[tuple[int, int]],
    updates: Sequence[np.ndarray | WindowedStep],
    pool_input: Callable[[BlockRef], torch.Tensor],
) -> np.ndarray:
    """``U_last @ L_last @ ... @ L_2 @ U_first``: per-block matrices (B, N_k, N_k) composed through the
    attention blocks in forward order, with the link L of each pooling block's pool between them
    (:func:`pooling_link`). What rollout, class relevance and gradient rollout share.

    Args:
        refs: the attention blocks, in forward order.
        grids: each block's (H, W) grid.
        updates: each block's step U_k: a float64 (B, N_k, N_k) matrix, or a windowed attention's
            :class:`analysis.core.geometry.WindowedStep`, applied window by window.
        pool_input: for a block that max-pools, the (B, C, H, W) its pool takes (an average pool's link
            needs only the grid).

    Returns:
        float64 (B, N_last, N_first).
    """
    refs, grids, updates = merge_parallel(refs, grids, updates)
    matrix = as_matrix(updates[-1])
    batch = matrix.shape[0]
    # multiplied from the last block back: each product is (N_last, N_k) @ (N_k, N_k), never N_first^3,
    # and a windowed step (N_last, N_k) @ its windows (a MaxViT at 224 px has N_first = 3136 on S1 in
    # 64 windows of 49, and N_last = 49 on S4)
    for k in range(len(refs) - 1, 0, -1):
        ref, previous, grid = refs[k], grids[k - 1], grids[k]
        pool = ref.pool
        if not isinstance(pool, nn.Identity):
            inputs = pool_input(ref) if isinstance(pool, nn.MaxPool2d) else torch.empty(batch, 1, *previous)
            link = pooling_link(pool, inputs)
            if link.shape[1:] != (grid[0] * grid[1], previous[0] * previous[1]):
                raise ValueError(f"{ref.name}: its pool does not link {previous} to {grid}")
            matrix = matrix @ link
        elif grid != previous:
            raise ValueError(f"{ref.name}: grid {grid} follows {previous} without a pool")
        matrix = times(matrix, updates[k - 1])
    return matrix


def merge_parallel(
    refs: Sequence[BlockRef],
    grids: Sequence[tuple[int, int]],
    updates: Sequence[np.ndarray | WindowedStep],
) -> tuple[list[BlockRef], list[tuple[int, int]], list[np.ndarray | WindowedStep | AveragedStep]]:
    """One update per step of the composition: the two attentions of a parallel MaxViT block (block and
    grid attention side by side on one input, each giving half the channels) become their average (an
    :class:`AveragedStep`), a step whose link is the first's; every other block stays as it is."""
    out_refs, out_grids, out_updates = [], [], []
    for ref, grid, update in zip(refs, grids, updates, strict=True):
        if out_refs and ref.parallel and out_refs[-1].parallel and out_refs[-1].base == ref.base:
            out_updates[-1] = AveragedStep((out_updates[-1], update))
            continue
        out_refs.append(ref)
        out_grids.append(grid)
        out_updates.append(update)
    return out_refs, out_grids, out_updates


def _check_maps(maps: AttentionMaps, names: list[str], image_size: tuple[int, int], batch: int) -> None:
    if list(maps.names) != names:
        raise ValueError(f"rollout needs the maps of every attention block {names}, got {list(maps.names)}")
    check_maps_fit(maps, image_size, batch)
