"""How a map's faithfulness is measured on pixels: the order it ranks them in, the deletion and insertion
images (removed to the dataset mean, restored into a blurred image) and ROAD's noisy linear imputation
(Rong et al. 2022). The protocol's constants live here; :mod:`analysis.explain.faithfulness` states it
whole and scores the model on these images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

STEPS = 16
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01
TIE_SEED = 0
# the 8 neighbours of a pixel and their weights in the imputation, (dy, dx, weight): ROAD's
NEIGHBOURS = (
    (1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
    (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6),
)  # fmt: skip


def blur_sigma(image_size: tuple[int, int]) -> float:
    """Insertion's Gaussian blur: a sixteenth of the shorter side, at least 1 pixel (1.75 px at 28x28,
    14 px at 224x224)."""
    return max(1.0, min(image_size) / 16)


def pixel_order(values: np.ndarray, seed: int = TIE_SEED) -> np.ndarray:
    """Flat pixel indices by decreasing ``values`` (H, W), ties in the order of a permutation seeded with
    ``seed`` (NaN counts as the least relevant)."""
    flat = np.nan_to_num(np.asarray(values, dtype=np.float64).ravel(), nan=-np.inf)
    permutation = np.random.default_rng(seed).permutation(flat.size)
    return permutation[np.argsort(-flat[permutation], kind="stable")]


def random_map(image_size: tuple[int, int], seed: int) -> np.ndarray:
    """The random explanation for ``seed``: a map whose :func:`pixel_order` is
    ``np.random.default_rng(seed).permutation(H * W)`` (distinct values, no ties)."""
    size = image_size[0] * image_size[1]
    order = np.random.default_rng(seed).permutation(size)
    values = np.empty(size, dtype=np.float32)
    values[order] = np.arange(size, 0, -1, dtype=np.float32)
    return (values / size).reshape(image_size)


def perturbed_images(
    image: torch.Tensor, values: np.ndarray, *, road_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The images a map's faithfulness is measured on: (deletion (STEPS + 1, C, H, W), insertion
    (STEPS + 1, C, H, W), ROAD (2 x len(PERCENTILES), C, H, W): MoRF at each percentile, then LeRF).

    Args:
        image: one normalised (C, H, W) image.
        values: the map (H, W) at the image's size.
        road_seed: seeds the imputation noise.
    """
    height, width = image.shape[-2:]
    if values.shape != (height, width):
        raise ValueError(f"the map is {values.shape}, the image {height}x{width}: upsample it first")
    order = pixel_order(values)
    rank = torch.empty(height * width, dtype=torch.long)
    rank[torch.from_numpy(order)] = torch.arange(height * width)
    rank = rank.view(height, width).to(image.device)
    counts = torch.tensor([round(k * height * width / STEPS) for k in range(STEPS + 1)], device=image.device)
    taken = (rank[None] < counts[:, None, None])[:, None]  # (STEPS + 1, 1, H, W)
    deletion = image[None].masked_fill(taken, 0.0)
    blurred = _blur(image[None])
    insertion = torch.where(taken, image[None], blurred)
    road = road_images(image, values, seed=road_seed)
    return deletion, insertion, road


def road_images(
    image: torch.Tensor, values: np.ndarray, *, seed: int = 0, noise: float = ROAD_NOISE
) -> torch.Tensor:
    """ROAD's imputed images of one (C, H, W) image for a map (H, W): (2 x len(PERCENTILES), C, H, W),
    most-relevant-first at each percentile, then least-relevant-first, with imputation noise of standard
    deviation ``noise`` from a generator seeded with ``seed``."""
    norm = _min_max(values)
    generator = np.random.default_rng(seed)
    pixels = image.detach().float().cpu().numpy()
    out = []
    for flipped in (norm, (np.float32(1.0) - norm).astype(np.float32)):
        for p in PERCENTILES:
            keep = flipped < np.percentile(flipped, p)
            out.append(noisy_linear_imputation(pixels, keep, noise, generator))
    return torch.from_numpy(np.stack(out)).to(image.device)


def noisy_linear_imputation(
    image: np.ndarray, keep: np.ndarray, noise: float, generator: np.random.Generator
) -> np.ndarray:
    """ROAD's noisy linear imputation of one (C, H, W) image: every pixel where ``keep`` (H, W) is False
    becomes the weighted mean of its in-image neighbours (:data:`NEIGHBOURS`, weights of neighbours
    outside the image dropped), solved for all removed pixels at once, plus N(0, noise^2)."""
    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    missing = np.flatnonzero(~keep.ravel())
    n = missing.size
    out = image.reshape(channels, -1).astype(np.float32).copy()
    if n == 0:
        return out.reshape(image.shape)
    if n == height * width:
        solution = np.zeros((n, channels))
    else:
        variable = np.full(height * width, -1)
        variable[missing] = np.arange(n)
        ys, xs = np.divmod(missing, width)
        diagonal = np.ones(n)
        rows, cols, entries = [], [], []
        rhs = np.zeros((n, channels))
        equations = np.arange(n)
        for dy, dx, weight in NEIGHBOURS:
            y, x = ys + dy, xs + dx
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            diagonal[~inside] -= weight
            neighbour = (y * width + x)[inside]
            owner = equations[inside]
            unknown = variable[neighbour] >= 0
            rows.append(owner[unknown])
            cols.append(variable[neighbour[unknown]])
            entries.append(np.full(int(unknown.sum()), weight))
            rhs[owner[~unknown]] -= weight * flat[:, neighbour[~unknown]].T
        rows.append(equations)
        cols.append(equations)
        entries.append(-diagonal)
        system = coo_matrix(
            (np.concatenate(entries), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        ).tocsc()
        solution = np.asarray(spsolve(system, rhs)).reshape(n, channels)
    filled = solution.T.astype(np.float32) + np.float32(noise) * generator.standard_normal(
        (channels, n)
    ).astype(np.float32)
    out[:, missing] = filled
    return out.reshape(image.shape)


def _blur(images: torch.Tensor) -> torch.Tensor:
    """Insertion's start: (B, C, H, W) blurred by a Gaussian of :func:`blur_sigma`, reflect padding."""
    height, width = images.shape[-2:]
    sigma = blur_sigma((height, width))
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)
    size = 2 * radius + 1
    from kornia.filters import gaussian_blur2d  # kornia when used

    return gaussian_blur2d(images.float(), (size, size), (sigma, sigma), border_type="reflect").to(
        images.dtype
    )


def _min_max(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros_like(values)
    return ((values - low) / (high - low)).astype(np.float32)
