"""Two models on the same images and the same query: pre- vs post-normalization (or any pair).

Per attention block the two models share (same name and grid), per head: the Jensen-Shannon divergence
between their attention distributions (averaged over queries and images, and at the chosen query), the
mean attention distances and their difference, and both maps at the query with their difference. Post-
normalization weights can be negative and need not sum to one: divergences compare them clipped at zero
and renormalised, and :attr:`BlockComparison.note` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.geometry import NamedBlocks
from analysis.core.inputs import as_batch
from analysis.core.query import middle_point, query_index
from analysis.maps.attention import AttentionMaps, BlockAttention, attention_maps, check_maps_fit, query_map
from analysis.maps.statistics import block_statistics, clipped_renormalised
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class BlockComparison:
    """One attention block in both models (:func:`compare`).

    Attributes:
        name: the block, ``S3.0``.
        grid: its (H, W) grid.
        stride: input pixels per grid step.
        query: the query's index in the grid (row-major).
        js_mean: (heads,) Jensen-Shannon divergence in bits (0 = same, 1 = disjoint), mean over queries
            and images.
        js_query: (heads,) the same at the query, mean over images.
        distance_a: (heads,) mean attention distance in input pixels, first model.
        distance_b: (heads,) the same, second model.
        distance_diff: ``distance_b - distance_a``.
        map_a: (heads, H, W) the first model's effective weights at the query (first image), NaN where
            a windowed query does not attend.
        map_b: (heads, H, W) the second model's.
        difference: ``map_b - map_a``.
        note: how post-normalization weights were compared.

    Examples:
        >>> import torch, analysis
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> s3 = analysis.compare(pre, post, torch.randn(1, 1, 28, 28), pixel=(14, 14)).blocks[0]
        >>> s3.name, s3.query, s3.js_mean.shape, s3.difference.shape
        ('S3.0', 24, (4,), (4, 7, 7))
    """

    name: str
    grid: tuple[int, int]
    stride: int
    query: int
    js_mean: np.ndarray
    js_query: np.ndarray
    distance_a: np.ndarray
    distance_b: np.ndarray
    distance_diff: np.ndarray
    map_a: np.ndarray
    map_b: np.ndarray
    difference: np.ndarray
    note: str


@dataclass(frozen=True)
class Comparison(NamedBlocks):
    """The result of :func:`compare`.

    Attributes:
        labels: what to call the two models (e.g. ``pre``, ``post``).
        pixel: the query as an input pixel (y, x), mapped into each block's grid.
        blocks: one :class:`BlockComparison` per shared attention block.
        predicted_a: (B,) the first model's predicted class per image.
        predicted_b: (B,) the second model's.
        probability_a: (B,) the first model's probability of its own prediction.
        probability_b: (B,) the second model's.
        agreement: (B,) whether the two predictions match.
        agreement_rate: the share of images on which the predictions agree.

    Examples:
        >>> import torch, analysis
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> comparison = analysis.compare(pre, post, torch.randn(2, 1, 28, 28))
        >>> comparison.labels, [b.name for b in comparison.blocks], comparison.agreement.shape
        (('pre', 'post'), ['S3.0', 'S3.1', 'S4.0'], (2,))
    """

    labels: tuple[str, str]
    pixel: tuple[float, float]
    blocks: tuple[BlockComparison, ...]
    predicted_a: np.ndarray
    predicted_b: np.ndarray
    probability_a: np.ndarray
    probability_b: np.ndarray
    agreement: np.ndarray
    agreement_rate: float


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits over the last axis of two distributions (rows summing to 1)."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * (np.log2(a) - np.log2(np.where(b > 0, b, 1))), 0.0)
        return terms.sum(-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def compare(
    model_a: CoAtNet,
    model_b: CoAtNet,
    images: torch.Tensor | Image.Image | list[Image.Image],
    *,
    pixel: tuple[float, float] | None = None,
    labels: tuple[str, str] | None = None,
    maps: tuple[AttentionMaps, AttentionMaps] | None = None,
) -> Comparison:
    """The same images and query through both models, block by block.

    Args:
        model_a: the first model (its preprocessing prepares PIL images).
        model_b: a model with attention blocks of the same names and grids (e.g. ``demo-pre`` and
            ``demo-post``, or one checkpoint loaded both ways).
        images: a preprocessed batch, or PIL images (prepared with ``model_a``'s preprocessing).
        pixel: the query as an input pixel (y, x) (a picture's :class:`analysis.Query` gives it:
            :meth:`analysis.Query.pixel`); default :func:`analysis.core.query.middle_point`.
        labels: names for the two models (default: their attention modes).
        maps: both models' :func:`analysis.attention_maps` of these images, if already computed (the app's
            caches); they must be of the same input size and batch.

    Returns:
        A :class:`Comparison`.

    Examples:
        >>> import torch, analysis
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> comparison = analysis.compare(pre, post, torch.randn(2, 1, 28, 28), pixel=(14, 14))
        >>> comparison.pixel, comparison.blocks[0].query  # pixel (14, 14): cell (3, 3) of S3's 7x7 grid
        ((14, 14), 24)
    """
    batch = as_batch(images, model_a)
    if maps is None:
        maps_a, maps_b = attention_maps(model_a, batch), attention_maps(model_b, batch)
    else:
        maps_a, maps_b = maps
        for given in maps:
            check_maps_fit(given, tuple(batch.shape[-2:]), batch.shape[0])
    height, width = maps_a.image_size
    pixel = pixel if pixel is not None else middle_point((height, width))
    shared = _shared_blocks(maps_a, maps_b)
    blocks = tuple(_compare_block(a, b, pixel) for a, b in shared)
    logits_a, logits_b = (
        torch.tensor(maps_a.logits),
        torch.tensor(maps_b.logits),
    )  # copies: cached maps are read-only
    prob_a, pred_a = logits_a.softmax(-1).max(-1)
    prob_b, pred_b = logits_b.softmax(-1).max(-1)
    agreement = (pred_a == pred_b).numpy()
    return Comparison(
        labels=labels or (model_a.config.attention, model_b.config.attention), pixel=pixel, blocks=blocks,
        predicted_a=pred_a.numpy(), predicted_b=pred_b.numpy(), probability_a=prob_a.numpy(),
        probability_b=prob_b.numpy(), agreement=agreement, agreement_rate=float(agreement.mean()),
    )  # fmt: skip


def shared_blocks(a: AttentionMaps, b: AttentionMaps) -> tuple[str, ...]:
    """The attention blocks two models' maps can be compared on query by query: the same name, grid,
    partition and window (none for two architectures, such as demo-pre and a MaxViT: put their maps side
    by side at one picture point instead).

    Args:
        a: the first model's :func:`attention_maps`.
        b: the second model's, of the same input size.

    Returns:
        The names of the blocks both share, in ``a``'s forward order.

    Examples:
        >>> import torch, analysis
        >>> x = torch.randn(1, 1, 28, 28)
        >>> pre = analysis.attention_maps(analysis.load_model("demo-pre"), x)
        >>> post = analysis.attention_maps(analysis.load_model("demo-post"), x)
        >>> analysis.shared_blocks(pre, post)
        ('S3.0', 'S3.1', 'S4.0')
    """
    return tuple(x.name for x in a.blocks if x.name in b.names and _geometry(b.block(x.name)) == _geometry(x))


def _shared_blocks(a: AttentionMaps, b: AttentionMaps) -> list[tuple[BlockAttention, BlockAttention]]:
    pairs = [(a.block(name), b.block(name)) for name in shared_blocks(a, b)]
    if not pairs:
        raise ValueError(
            f"the two models share no attention block of the same grid ({', '.join(a.names)} vs "
            f"{', '.join(b.names)}): compare two models of one architecture, e.g. demo-pre and demo-post"
        )
    return pairs


def _geometry(block: BlockAttention) -> tuple:
    """What two blocks must share to be compared query by query: grid, partition and window."""
    return block.grid, block.partition, block.window


def _distributions(block: BlockAttention) -> np.ndarray:
    weights = block.effective.astype(np.float64)
    return clipped_renormalised(weights) if block.mode == "post" else weights


def _compare_block(a: BlockAttention, b: BlockAttention, pixel: tuple[float, float]) -> BlockComparison:
    query = query_index(a.grid, a.stride, *pixel)
    window, place = a.locate(query)
    js = js_divergence(_distributions(a), _distributions(b))  # (B * windows, heads, n)
    at_query = js.reshape(-1, a.windows, *js.shape[1:])[:, window, :, place]  # (B, heads)
    stats_a, stats_b = block_statistics(a), block_statistics(b)
    map_a, map_b = query_map(a, query), query_map(b, query)  # NaN outside a windowed query's window
    post = "post" in (a.mode, b.mode)
    return BlockComparison(
        name=a.name, grid=a.grid, stride=a.stride, query=query,
        js_mean=np.nanmean(js, axis=(0, 2)), js_query=np.nanmean(at_query, axis=0),
        distance_a=stats_a.distance_px, distance_b=stats_b.distance_px,
        distance_diff=stats_b.distance_px - stats_a.distance_px, map_a=map_a, map_b=map_b,
        difference=map_b - map_a,
        note=(
            "Maps show the weights as each block used them (post-normalization ones can be negative); the "
            "divergences and distances use post-normalization weights clipped at 0 and renormalised"
        )
        if post
        else "",
    )  # fmt: skip
