"""How a model's inputs are prepared: one frozen value, its defaults written here and nowhere else.

A checkpoint stores it as a JSON object (``size``, ``channels``, ``mean``, ``std``, ``interpolation``,
``crop``); :meth:`Preprocessing.to_dict` and :meth:`Preprocessing.from_dict` are the only way between the two.
Two cases differ in how a picture is resampled, and are named here:

- a model nobody described (no preprocessing saved with it): :meth:`Preprocessing.undescribed`, bicubic,
  as timm's weights expect (:data:`UNDESCRIBED_INTERPOLATION`);
- a description that names no resampling (files written before it was recorded, a dataset opened by
  hand) and the training loop's own: bilinear (:data:`INTERPOLATION`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

#: Pillow's resampling filters, by the names a description uses.
INTERPOLATIONS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
#: The resampling of a description that names none, and the training loop's.
INTERPOLATION = "bilinear"
#: The resampling of a model nobody described (:meth:`Preprocessing.undescribed`).
UNDESCRIBED_INTERPOLATION = "bicubic"
#: The share of the picture's short side kept: all of it (the largest centred box of the input's shape).
WHOLE_PICTURE = 1.0
#: Mean and standard deviation of every channel of a model nobody described.
UNDESCRIBED_MEAN = UNDESCRIBED_STD = 0.5


@dataclass(frozen=True)
class Preprocessing:
    """How pictures become a model's input: resized and cropped to ``size``, converted to ``channels``,
    scaled to [0, 1], then normalised with ``mean`` and ``std``.

    Attributes:
        size: the input's (height, width) in pixels.
        channels: 1 (grey) or 3 (RGB).
        mean: per channel (or one value for all), subtracted after scaling to [0, 1].
        std: per channel (or one value for all), divided by after subtracting the mean.
        interpolation: Pillow's resampling filter, one of :data:`INTERPOLATIONS` (default bilinear).
        crop: the central share of the picture kept before resizing, in (0, 1]; 0.875 is the usual
            "resize 256, crop 224" (default 1.0: the whole picture).

    Examples:
        >>> import coatnet
        >>> pre = coatnet.Preprocessing(size=(28, 28), channels=1, mean=(0.286,), std=(0.353,))
        >>> pre.interpolation, pre.crop
        ('bilinear', 1.0)
        >>> coatnet.Preprocessing.from_dict(pre.to_dict()) == pre
        True
        >>> coatnet.Preprocessing.undescribed(size=(32, 32), channels=3).interpolation
        'bicubic'
    """

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = INTERPOLATION
    crop: float = WHOLE_PICTURE

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(int(v) for v in self.size)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop", float(self.crop))
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(
                f"preprocessing size must be (height, width) of at least 1 pixel, got {self.size}"
            )
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"preprocessing channels must be a whole number >= 1, got {self.channels!r}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(
                    f"preprocessing {name} needs 1 or {self.channels} values (one per channel), got {values}"
                )
        if min(self.std) <= 0:
            raise ValueError(f"preprocessing std must be > 0, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {self.interpolation!r}"
            )
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop is the share of the picture kept, in (0, 1]; got {self.crop}")

    @classmethod
    def undescribed(cls, *, size: int | Sequence[int], channels: int) -> Preprocessing:
        """The preprocessing of a model nobody described: its built size, mean = std = 0.5, bicubic, no crop.

        Args:
            size: the model's input (height, width), or one side of a square.
            channels: its input channels.

        Returns:
            The preprocessing a checkpoint saved without one is written and read with.

        Examples:
            >>> import coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=1)
            >>> pre.size, pre.mean, pre.std, pre.interpolation, pre.crop
            ((28, 28), (0.5,), (0.5,), 'bicubic', 1.0)
        """
        return cls(
            size=size,
            channels=channels,
            mean=(UNDESCRIBED_MEAN,) * channels,
            std=(UNDESCRIBED_STD,) * channels,
            interpolation=UNDESCRIBED_INTERPOLATION,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """A preprocessing from its JSON object, as checkpoints store it; ``interpolation`` and ``crop``
        may be absent (older files): bilinear and the whole picture.

        Args:
            data: ``size``, ``channels``, ``mean``, ``std``, and optionally ``interpolation`` and ``crop``.

        Returns:
            The preprocessing.

        Raises:
            ValueError: a key missing or unknown, or a value out of range.

        Examples:
            >>> import coatnet
            >>> saved = {"size": [28, 28], "channels": 1, "mean": [0.5], "std": [0.5]}  # an older file's
            >>> pre = coatnet.Preprocessing.from_dict(saved)
            >>> pre.size, pre.interpolation, pre.crop
            ((28, 28), 'bilinear', 1.0)
        """
        known = [f.name for f in fields(cls)]
        problems = []
        if unknown := sorted(set(data) - set(known)):
            problems.append(f"unknown keys {unknown}")
        if missing := [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]:
            problems.append(f"no {', '.join(missing)}")
        if problems:
            raise ValueError(f"preprocessing has {' and '.join(problems)}: it takes {', '.join(known)}")
        return cls(**{name: data[name] for name in known if name in data})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object a checkpoint stores (lists for tuples), read back by :meth:`from_dict`.

        Returns:
            ``size``, ``channels``, ``mean``, ``std``, ``interpolation`` and ``crop``.

        Examples:
            >>> import coatnet
            >>> coatnet.Preprocessing.undescribed(size=8, channels=1).to_dict()["size"]
            [8, 8]
        """
        return {
            "size": list(self.size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop": self.crop,
        }

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with ``changes`` (checked as a new one is).

        Args:
            **changes: fields and their new values.

        Returns:
            The changed preprocessing.

        Examples:
            >>> import coatnet
            >>> coatnet.Preprocessing.undescribed(size=8, channels=1).replace(crop=0.875).crop
            0.875
        """
        return replace(self, **changes)
