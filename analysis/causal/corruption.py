"""How activation patching's corrupted input is made from the clean one (:mod:`analysis.causal.patching`):
Gaussian noise, a Gaussian blur or a masked box, in the model's normalized input units, seeded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch


@dataclass(frozen=True)
class Corruption:
    """How the corrupted input is made from the clean one, in the model's normalized input units.

    Attributes:
        kind: ``noise`` (Gaussian, standard deviation ``sigma``, drawn from a generator seeded with
            ``seed``), ``blur`` (a Gaussian blur of ``sigma`` input pixels, reflected at the borders) or
            ``mask`` (the box set to 0, the training data's mean).
        sigma: the noise's standard deviation, or the blur's in pixels.
        box: ``mask``: (top, left, bottom, right) as fractions of the input's height and width.
        seed: the noise's seed.

    Examples:
        >>> import torch, analysis
        >>> model, image = analysis.load_model("demo-pre"), torch.randn(1, 28, 28)
        >>> blur = analysis.Corruption("blur", sigma=2)
        >>> patching = analysis.activation_patching(model, image, corruption=blur, heads=False)
        >>> patching.corruption
        'Gaussian blur, sigma 2 px'
    """

    kind: str = "noise"
    sigma: float = 1.0
    box: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("noise", "blur", "mask"):
            raise ValueError(f"corruption kind must be 'noise', 'blur' or 'mask', got {self.kind!r}")
        if self.kind != "mask" and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"the {self.kind}'s sigma must be a positive number, got {self.sigma}")
        top, left, bottom, right = self.box
        if self.kind == "mask" and not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
            raise ValueError(f"the mask's box (top, left, bottom, right) must be fractions in [0, 1] with "
                             f"top < bottom and left < right, got {self.box}")  # fmt: skip

    @property
    def label(self) -> str:
        if self.kind == "noise":
            return f"Gaussian noise, sigma {self.sigma:g} (seed {self.seed})"
        if self.kind == "blur":
            return f"Gaussian blur, sigma {self.sigma:g} px"
        top, left, bottom, right = self.box
        return (
            f"masked box (top, left, bottom, right) = ({top:g}, {left:g}, {bottom:g}, {right:g}) of the input"
        )

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """The corrupted copy of a normalized (B, C, H, W) batch."""
        if self.kind == "noise":
            generator = torch.Generator().manual_seed(self.seed)
            noise = torch.randn(batch.shape, generator=generator, dtype=torch.float32)
            return batch + self.sigma * noise.to(batch)
        if self.kind == "blur":
            size = 2 * math.ceil(3 * self.sigma) + 1
            size = min(size, 2 * (min(batch.shape[-2:]) // 2) - 1)  # reflection needs the kernel inside
            return kornia.filters.gaussian_blur2d(
                batch, (size, size), (self.sigma, self.sigma), border_type="reflect"
            )
        height, width = batch.shape[-2:]
        top, left, bottom, right = self.box
        masked = batch.clone()
        rows = slice(round(top * height), max(round(bottom * height), round(top * height) + 1))
        cols = slice(round(left * width), max(round(right * width), round(left * width) + 1))
        masked[..., rows, cols] = 0
        return masked
