"""The query as a point of the user's picture, mapped through a model's preprocessing to a grid cell.

A point is held as fractions (fy, fx) of the upright picture as given (before any resize or crop), so
that it means the same spot for every block, page and model: each maps it through its own crop and
resize (:func:`coatnet.data.datasets.crop_box`, the rule its preprocessing uses) to its input pixels, and on
to the cell of its grid. A cell maps back to the point at its centre, so a round trip returns to the
clicked cell, and a point outside a model's crop is said to be so, not moved.

Examples:
    >>> view = picture_view((480, 640), preprocessing)  # a 640x480 photo, the model's preprocessing
    >>> point = cell_point(view, 10, 12, stride=16)  # the centre of cell (10, 12) of a 14x14 grid
    >>> point_cell(view, point, grid=(14, 14), stride=16)
    (10, 12)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coatnet.data.datasets import crop_box


@dataclass(frozen=True)
class PictureView:
    """How one model sees one picture: the picture's (H, W), the model input's (H, W), and the box of the
    picture (left, top, right, bottom, in its pixels) that becomes the input."""

    picture: tuple[int, int]
    input: tuple[int, int]
    box: tuple[float, float, float, float]


def picture_view(picture_size: tuple[int, int], preprocessing: dict[str, Any]) -> PictureView:
    """The view of a picture of (H, W) pixels through ``preprocessing`` (``size`` and ``crop``)."""
    height, width = (int(v) for v in picture_size)
    size = tuple(int(v) for v in preprocessing["size"])
    box = crop_box((width, height), size, float(preprocessing.get("crop", 1.0)))
    return PictureView((height, width), size, tuple(float(v) for v in box))


def to_input(view: PictureView, point: tuple[float, float]) -> tuple[float, float]:
    """A point (fy, fx) of the picture in the model's input pixels (y, x); outside [0, H) x [0, W) when the
    crop leaves it out."""
    left, top, right, bottom = view.box
    y = point[0] * view.picture[0]
    x = point[1] * view.picture[1]
    return (y - top) * view.input[0] / (bottom - top), (x - left) * view.input[1] / (right - left)


def to_point(view: PictureView, y: float, x: float) -> tuple[float, float]:
    """The picture point (fy, fx) of input pixel (y, x): the inverse of :func:`to_input`."""
    left, top, right, bottom = view.box
    return (
        (top + y * (bottom - top) / view.input[0]) / view.picture[0],
        (left + x * (right - left) / view.input[1]) / view.picture[1],
    )


def point_cell(
    view: PictureView, point: tuple[float, float], *, grid: tuple[int, int], stride: int
) -> tuple[int, int] | None:
    """The cell (row, col) of a ``grid`` (``stride`` input pixels a step) that holds the point, or None when
    the point lies outside what the model sees."""
    y, x = to_input(view, point)
    row, col = int(y // stride), int(x // stride)
    if not (0 <= y < view.input[0] and 0 <= x < view.input[1]) or not (
        0 <= row < grid[0] and 0 <= col < grid[1]
    ):
        return None
    return row, col


def cell_point(view: PictureView, row: int, col: int, *, stride: int) -> tuple[float, float]:
    """The picture point at the centre of cell (row, col)."""
    return to_point(view, (row + 0.5) * stride, (col + 0.5) * stride)
