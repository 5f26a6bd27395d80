"""How similar two representations are: linear centered kernel alignment (CKA, Kornblith et al. 2019), in
the unbiased minibatch form of Nguyen, Raghu & Kornblith (2021), "Do wide and deep networks learn the same
things?", between the stages of one model or between two models (pre- vs post-normalization).

For features X (n, d1) and Y (n, d2) of the same n images, with linear kernels K = X X^T and L = Y Y^T:

    CKA = sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b) * sum_b HSIC_1(L_b, L_b))

summed over minibatches b, where HSIC_1 is the unbiased estimator of Song et al. (2012), with K~ and L~ the
kernels with their diagonals set to zero:

    HSIC_1(K, L) = [tr(K~ L~) + 1^T K~ 1 * 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) * 1^T K~ L~ 1] / (n (n-3))

CKA is invariant to orthogonal transforms and isotropic scaling of either representation, not to general
invertible linear maps; the unbiased estimator is near 0 for independent features even when n << d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from analysis.core.inputs import as_batch
from analysis.core.running import call_model
from coatnet.model.network import CoAtNet

LAYERS = ("S0", "S1", "S2", "S3", "S4", "pre_logits")


@dataclass(frozen=True)
class CKAResult:
    """Linear CKA between the representations of two models (or of one model with itself).

    Attributes:
        names_a: the representations of the first model, e.g. ``("S0", ..., "S4", "pre_logits")``.
        names_b: those of the second model (the first again when there is one model).
        matrix: (len(names_a), len(names_b)) float64, unitless CKA; 1 on the diagonal for one model;
            NaN where a representation does not vary across the images.
        n_images: the number of images the estimate rests on.

    Examples:
        >>> import torch, analysis
        >>> model = analysis.load_model("demo-pre")
        >>> result = analysis.cka(model, torch.randn(8, 1, 28, 28), layers=("S3", "S4"))
        >>> result.names_a, result.matrix.shape, result.n_images
        (('S3', 'S4'), (2, 2), 8)
    """

    names_a: tuple[str, ...]
    names_b: tuple[str, ...]
    matrix: np.ndarray
    n_images: int


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of two feature matrices of the same n examples, with the unbiased HSIC (one batch).

    Args:
        x: (n, d1) features (further axes are flattened), numpy or torch.
        y: (n, d2) features of the same examples.

    Returns:
        CKA in [-1, 1] up to estimation noise (the unbiased estimator can be slightly negative); NaN if a
        representation does not vary across the examples.

    Examples:
        >>> import numpy as np, analysis
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(100, 20))
        >>> rotation = np.linalg.qr(rng.normal(size=(20, 20)))[0]
        >>> round(analysis.linear_cka(x, x @ rotation), 6)  # invariant to orthogonal transforms
        1.0
    """
    x, y = _as_features(x), _as_features(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples, got {x.shape[0]} and {y.shape[0]} rows")
    grams = _grams([x, y])
    hsic = _hsic(grams, grams)
    return float(_normalize(hsic, hsic.diagonal(), hsic.diagonal())[0, 1])


def cka(
    model: CoAtNet,
    images: torch.Tensor | Sequence[Image.Image],
    *,
    other: CoAtNet | None = None,
    batch_size: int = 32,
    layers: str | Sequence[str] = "stages",
) -> CKAResult:
    """Linear CKA between the stage outputs of one model, or between those of two models, on the same
    images, accumulating the unbiased HSIC over minibatches (Nguyen et al. 2021).

    The representations are the outputs of S0..S4 (``forward_intermediates``), each flattened per image,
    and the pooled pre-logits (``forward_head(..., pre_logits=True)``). Forward passes only, under
    ``torch.inference_mode``, in whatever mode the models are in (no hooks).

    Args:
        model: a CoAtNet.
        images: a (B, C, H, W) preprocessed tensor or PIL images (each model prepares them with its own
            preprocessing); at least 4.
        other: a second CoAtNet (e.g. the post-normalization twin); None compares ``model`` with itself.
        batch_size: images per minibatch (at least 4). The images are split into near-equal minibatches of
            at most this size, so that none has fewer than 4.
        layers: ``"stages"`` for all of ``S0`` .. ``S4`` and ``pre_logits``, or a subset of those names.

    Returns:
        A :class:`CKAResult`, its matrix symmetric with a unit diagonal when ``other`` is None.

    Examples:
        >>> import numpy as np, torch, analysis
        >>> pre, post = analysis.load_model("demo-pre"), analysis.load_model("demo-post")
        >>> images = torch.randn(8, 1, 28, 28)
        >>> alone = analysis.cka(pre, images)
        >>> alone.names_a, np.allclose(np.diag(alone.matrix), 1)
        (('S0', 'S1', 'S2', 'S3', 'S4', 'pre_logits'), True)
        >>> analysis.cka(pre, images, other=post, layers=("S3", "S4")).matrix.shape
        (2, 2)
    """
    names = LAYERS if layers == "stages" else tuple(layers)
    unknown = [name for name in names if name not in LAYERS]
    if unknown or not names:
        raise ValueError(f"unknown layers {unknown or names!r}; choose from {', '.join(LAYERS)} or 'stages'")
    if batch_size < 4:
        raise ValueError(f"batch_size must be at least 4 for the unbiased HSIC, got {batch_size}")
    batch_a = as_batch(images, model)
    batch_b = batch_a if other is None else as_batch(images, other)
    n = batch_a.shape[0]
    if n < 4:
        raise ValueError(f"CKA needs at least 4 images (the unbiased HSIC divides by n - 3), got {n}")
    chunks = min(math.ceil(n / batch_size), n // 4)  # near-equal minibatches of at least 4 images
    hsic_ab, hsic_aa, hsic_bb = 0.0, 0.0, 0.0
    for index in torch.tensor_split(torch.arange(n), chunks):
        grams_a = _grams(_representations(model, batch_a[index], names))
        grams_b = grams_a if other is None else _grams(_representations(other, batch_b[index], names))
        hsic_ab = hsic_ab + _hsic(grams_a, grams_b)
        hsic_aa = hsic_aa + _hsic(grams_a, grams_a).diagonal()
        hsic_bb = hsic_bb + _hsic(grams_b, grams_b).diagonal()
    matrix = _normalize(hsic_ab, hsic_aa, hsic_bb)
    if other is None:
        matrix = (matrix + matrix.T) / 2  # exact symmetry despite the order of float sums
    return CKAResult(names_a=names, names_b=names, matrix=matrix, n_images=int(n))


def _representations(model: CoAtNet, x: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """The named representations of a batch, each (B, features). A model in training mode runs as a twin
    of this call's own (:func:`analysis.core.running.call_model`): its BatchNorm statistics stay as they
    are."""
    with call_model(model) as own, torch.inference_mode():
        features, stages = own.forward_intermediates(x)
        out = {f"S{i}": t.flatten(1) for i, t in enumerate(stages)}
        if "pre_logits" in names:
            out["pre_logits"] = own.forward_head(features, pre_logits=True).flatten(1)
    return [out[name] for name in names]


def _as_features(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach()
    if t.ndim < 2:
        raise ValueError(f"features must be (n, d), got shape {tuple(t.shape)}")
    if t.shape[0] < 4:
        raise ValueError(
            f"the unbiased HSIC needs at least 4 examples (it divides by n - 3), got {t.shape[0]}"
        )
    return t.reshape(t.shape[0], -1)


def _grams(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, n, n) float64 linear kernels K = X X^T with zeroed diagonals (the K~ of HSIC_1)."""
    grams = torch.stack([f.double() @ f.double().T for f in features]).cpu()
    return grams * (1 - torch.eye(grams.shape[-1], dtype=grams.dtype))


def _hsic(k: torch.Tensor, l: torch.Tensor) -> np.ndarray:  # noqa: E741 -- the paper's L
    """(Lk, Ll) unbiased HSIC_1 between every kernel of ``k`` (Lk, n, n) and of ``l`` (Ll, n, n), both with
    zero diagonals and symmetric (Song et al. 2012)."""
    n = k.shape[-1]
    trace = torch.einsum("aij,bij->ab", k, l)  # tr(K~ L~) for symmetric L~
    k_rows, l_rows = k.sum(-1), l.sum(-1)  # K~ 1, L~ 1: (L, n)
    totals = torch.outer(k_rows.sum(-1), l_rows.sum(-1))  # 1^T K~ 1 * 1^T L~ 1
    cross = k_rows @ l_rows.T  # 1^T K~ L~ 1
    hsic = (trace + totals / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (n * (n - 3))
    return hsic.numpy()


def _normalize(hsic_ab: np.ndarray, hsic_aa: np.ndarray, hsic_bb: np.ndarray) -> np.ndarray:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); NaN where a self-HSIC is not positive."""
    scale = np.sqrt(np.outer(np.maximum(hsic_aa, 0), np.maximum(hsic_bb, 0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, hsic_ab / np.where(scale > 0, scale, 1), np.nan).astype(np.float64)
