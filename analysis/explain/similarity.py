"""How alike two explanation maps are, the measures of the sanity checks (:mod:`analysis.explain.sanity`):
Spearman rank correlation of the signed values (``spearman``) and of the absolute values
(``spearman_abs``), SSIM of the absolute values min-max normalised to [0, 1] (``ssim``, scikit-image,
data range 1), and the Pearson correlation of their HOG features (``hog``, scikit-image, 9 orientations,
cells of an eighth of each side, blocks of 2 x 2 cells). A constant map has no rank and no gradient: its
correlations are 0 and the pair is counted ``constant``; never NaN.

A map compared many times (the trained model's, against every randomised copy's) makes its
:class:`MapFeatures` once (:func:`map_features`); :func:`compare_features` compares two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
HOG_ORIENTATIONS = 9


def similarity(a: np.ndarray, b: np.ndarray, signed_a: np.ndarray | None = None,
               signed_b: np.ndarray | None = None) -> dict:  # fmt: skip
    """How alike two maps (H, W) are: the :data:`MEASURES` (module docstring) and ``constant``, whether
    either map is constant (its correlations then 0).

    Args:
        a: the first map (H, W).
        b: the second map, of the same shape.
        signed_a: ``a`` with its sign, where it has one (else ``a`` itself).
        signed_b: ``b`` with its sign, where it has one.

    Returns:
        ``spearman``, ``spearman_abs``, ``ssim``, ``hog`` and ``constant``.

    Examples:
        >>> import numpy as np, analysis
        >>> ramp = np.arange(16.0).reshape(4, 4)
        >>> analysis.similarity(ramp, ramp)
        {'spearman': 1.0, 'spearman_abs': 1.0, 'ssim': 1.0, 'hog': 1.0, 'constant': False}
    """
    return compare_features(map_features(a, signed_a), map_features(b, signed_b))


@dataclass(frozen=True)
class MapFeatures:
    """What :func:`similarity` needs of one map, made once for a map compared many times."""

    constant: bool
    ranks: np.ndarray
    ranks_abs: np.ndarray
    unit: np.ndarray  # |map| min-max normalised to [0, 1]
    hog: np.ndarray


def map_features(values: np.ndarray, signed: np.ndarray | None = None) -> MapFeatures:
    """The features of one map (``signed``: the map with its sign, where it has one)."""
    signed = np.asarray(values if signed is None else signed, np.float64)
    unit = _unit(np.abs(signed))
    return MapFeatures(
        constant=bool(np.ptp(signed) == 0), ranks=_ranks(signed), ranks_abs=_ranks(np.abs(signed)),
        unit=unit, hog=_hog(unit),
    )  # fmt: skip


def compare_features(a: MapFeatures, b: MapFeatures) -> dict:
    """The :data:`MEASURES` of two maps' features and ``constant`` (as :func:`similarity`)."""
    from skimage.metrics import structural_similarity

    window = _window(a.unit.shape)
    return {
        "spearman": _pearson(a.ranks, b.ranks),
        "spearman_abs": _pearson(a.ranks_abs, b.ranks_abs),
        "ssim": float(structural_similarity(a.unit, b.unit, data_range=1.0, win_size=window)),
        "hog": _pearson(a.hog, b.hog),
        "constant": a.constant or b.constant,
    }


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of the flattened values (ties share their mean rank), as Spearman's rho uses."""
    from scipy.stats import rankdata

    return rankdata(values.ravel())


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation, 0 where either side is constant; exactly 1 for a vector with itself."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0)) if norm > 0 else 0.0


def _unit(values: np.ndarray) -> np.ndarray:
    low, span = values.min(), np.ptp(values)
    return (values - low) / span if span > 0 else np.zeros_like(values)


def _window(shape: tuple[int, ...]) -> int:
    """SSIM's window: 7 px (scikit-image's default), smaller on a map under 7 px a side (odd, >= 3)."""
    side = min(7, min(shape))
    return max(3, side - (1 - side % 2))


def _hog(values: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    cell = (max(2, values.shape[0] // 8), max(2, values.shape[1] // 8))
    return hog(values, orientations=HOG_ORIENTATIONS, pixels_per_cell=cell, cells_per_block=(2, 2),
               feature_vector=True)  # fmt: skip
