"""The query: one point of the user's picture, mapped through a model's preprocessing to a grid cell.

One coordinate convention holds everywhere (the explorer, Pre vs post, Layouts, the CLI and the figures):
coordinates are continuous, pixel i spans [i, i + 1), so cell r of a grid with ``stride`` input pixels a
step spans [r * stride, (r + 1) * stride) and its centre is (r + 0.5) * stride.

A query takes four forms, and this module holds every conversion between them:

- a :class:`Query`: fractions (fy, fx) of the upright picture as given (before any resize or crop), so that
  it means the same spot for every block, page and model; each maps it through its own crop and resize
  (:func:`coatnet.data.datasets.crop_box`, the rule its preprocessing uses, held in a :class:`PictureView`).
  A page keeps a Query and hands it on; every conversion from it is one of its methods;
- an input pixel (y, x) of the model's input (:meth:`Query.pixel`, :meth:`Query.at_pixel`): the form an
  analysis of a preprocessed batch takes (its parameter is named ``pixel``);
- a cell (row, col) of a block's grid (:meth:`Query.cell`, :meth:`Query.at_cell`);
- a flat, row-major query index ``row * W + col`` (:meth:`Query.index`), the form attention maps take.

On one input, with no picture, the same conversions are functions of the grid: :func:`pixel_cell`,
:func:`cell_centre`, :func:`query_index`, :func:`query_from_cell` (the methods use them).

A cell maps back to the point at its centre, so a round trip returns to the clicked cell, and a point
outside a model's crop is said to be so (None), not moved; :meth:`Query.nearest_cell` is the one clamp.

Examples:
    >>> pre = Preprocessing.undescribed(size=224, channels=3)  # a 224 px model's preprocessing
    >>> view = picture_view((480, 640), pre)  # a 640x480 photo
    >>> query = Query.at_cell(view, 10, 12, stride=16)  # the centre of cell (10, 12) of a 14x14 grid
    >>> query.cell(view, grid=(14, 14), stride=16), query.index(view, grid=(14, 14), stride=16)
    ((10, 12), 152)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from coatnet.data.datasets import crop_box
from coatnet.data.preprocessing import Preprocessing


@dataclass(frozen=True)
class PictureView:
    """How one model sees one picture: the picture's (H, W), the model input's (H, W), and the box of the
    picture (left, top, right, bottom, in its pixels) that becomes the input.

    Attributes:
        picture: the picture's (H, W).
        input: the model input's (H, W).
        box: (left, top, right, bottom) of the picture, in its pixels, that becomes the input.

    Examples:
        >>> import analysis, coatnet
        >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
        >>> analysis.picture_view((480, 640), pre)  # the centre square
        PictureView(picture=(480, 640), input=(28, 28), box=(80.0, 0.0, 560.0, 480.0))
    """

    picture: tuple[int, int]
    input: tuple[int, int]
    box: tuple[float, float, float, float]


def picture_view(picture_size: tuple[int, int], preprocessing: Preprocessing) -> PictureView:
    """The view of a picture of (H, W) pixels through ``preprocessing`` (its ``size`` and ``crop``).

    Args:
        picture_size: the picture's (H, W).
        preprocessing: the model's (:func:`preprocessing_of`): its input ``size`` and ``crop`` (the share
            of the picture kept).

    Returns:
        The picture, the input, and the box of the picture that becomes the input.

    Examples:
        >>> import analysis, coatnet
        >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
        >>> analysis.picture_view((480, 640), pre).box
        (80.0, 0.0, 560.0, 480.0)
    """
    height, width = (int(v) for v in picture_size)
    size = preprocessing.size
    box = crop_box((width, height), size, preprocessing.crop)
    return PictureView((height, width), size, tuple(float(v) for v in box))


def cell_centre(row: float, col: float, *, stride: float) -> tuple[float, float]:
    """The input pixel (y, x) at the centre of cell (row, col): ((row + 0.5) * stride, (col + 0.5) *
    stride).

    Args:
        row: the cell's row (fractions allowed).
        col: the cell's column.
        stride: input pixels per grid step.

    Returns:
        The input pixel (y, x).

    Examples:
        >>> import analysis
        >>> analysis.cell_centre(3, 3, stride=4)
        (14.0, 14.0)
    """
    return (row + 0.5) * stride, (col + 0.5) * stride


def pixel_cell(y: float, x: float, *, grid: tuple[int, int], stride: float) -> tuple[int, int]:
    """The cell (row, col) of ``grid`` that holds input pixel (y, x); a pixel off the grid is clamped to
    the nearest cell.

    Args:
        y: the pixel row, continuous (pixel i spans [i, i + 1)).
        x: the pixel column.
        grid: the block's (H, W) grid.
        stride: input pixels per grid step.

    Returns:
        The cell (row, col).

    Examples:
        >>> import analysis
        >>> [analysis.pixel_cell(y, x, grid=(7, 7), stride=4) for y, x in [(14, 14), (99, -5)]]
        [(3, 3), (6, 0)]
    """
    return min(max(int(y // stride), 0), grid[0] - 1), min(max(int(x // stride), 0), grid[1] - 1)


def middle_point(size: tuple[int, int]) -> tuple[float, float]:
    """The default query pixel of the library and the CLI for an input of (H, W): ((H - 1) / 2, (W - 1) / 2),
    half a pixel above and left of the centre, so that on a grid that tiles the input it lies in the middle
    cell, the upper left of the middle four on an even side.

    Args:
        size: the input's (H, W).

    Returns:
        The pixel (y, x).

    Examples:
        >>> import analysis
        >>> analysis.middle_point((28, 28))
        (13.5, 13.5)
    """
    return (size[0] - 1) / 2, (size[1] - 1) / 2


def query_from_cell(row: int, col: int, grid: tuple[int, int]) -> int:
    """The row-major query index of grid cell (row, col).

    Args:
        row: the cell's row.
        col: the cell's column.
        grid: the block's (H, W) grid.

    Returns:
        ``row * W + col``.

    Raises:
        ValueError: the cell is off the grid.

    Examples:
        >>> import analysis
        >>> analysis.query_from_cell(3, 3, (7, 7))
        24
    """
    if not (0 <= row < grid[0] and 0 <= col < grid[1]):
        raise ValueError(f"cell ({row}, {col}) is outside the {grid[0]}x{grid[1]} grid")
    return row * grid[1] + col


def query_index(grid: tuple[int, int], stride: float, y: float, x: float) -> int:
    """The query whose grid cell holds input pixel (y, x); pixels outside the image are clamped to the
    nearest cell.

    Args:
        grid: the block's (H, W) grid.
        stride: input pixels per grid step.
        y: the pixel row, continuous (pixel i spans [i, i + 1)).
        x: the pixel column.

    Returns:
        The row-major query index ``row * W + col``.

    Examples:
        >>> import analysis
        >>> analysis.query_index((7, 7), 4, 14, 14)  # S3 of a 28 px input: cell (3, 3)
        24
    """
    return query_from_cell(*pixel_cell(y, x, grid=grid, stride=stride), grid)


class Query(NamedTuple):
    """The query of a session or an analysis: the point (fy, fx) of the picture, as fractions of its
    height and width (a tuple, so it keeps in session state and compares as one). Every conversion to
    another form is one of its methods, each given the :class:`PictureView` of the model that reads it:
    an input pixel (:meth:`pixel`, :meth:`at_pixel`), a cell of a block's grid (:meth:`cell`,
    :meth:`nearest_cell`, :meth:`at_cell`), its row-major index there (:meth:`index`), the pixel at its
    cell's centre (:meth:`centre`), the query as one grid shows it (:meth:`snapped`), and its text in a
    link (:meth:`text`, :meth:`from_text`). Another block's grid is the same call with that block's
    ``grid`` and ``stride``; another model (another input size or crop, a MaxViT's window and grid views of
    its blocks) is the same call with that model's view.

    Attributes:
        fy: the point's row, as a fraction of the picture's height.
        fx: the point's column, as a fraction of the picture's width.

    Examples:
        >>> import analysis, coatnet
        >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
        >>> view = analysis.picture_view((480, 640), pre)
        >>> query = analysis.Query(0.5, 0.5)
        >>> s3 = {"grid": (7, 7), "stride": 4}  # S3 of a 28 px input
        >>> query.pixel(view), query.cell(view, **s3), query.index(view, **s3)
        ((14.0, 14.0), (3, 3), 24)
        >>> pre = coatnet.Preprocessing.undescribed(size=56, channels=3)
        >>> wider = analysis.picture_view((480, 640), pre)  # another model
        >>> query.cell(wider, grid=(14, 14), stride=4)
        (7, 7)
    """

    fy: float
    fx: float

    @classmethod
    def at_pixel(cls, view: PictureView, y: float, x: float) -> Query:
        """The query at input pixel (y, x): the inverse of :meth:`pixel`.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            y: the input pixel's row, continuous (pixel i spans [i, i + 1)).
            x: the input pixel's column.

        Returns:
            The query.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query.at_pixel(view, 14, 14)
            Query(fy=0.5, fx=0.5)
        """
        left, top, right, bottom = view.box
        return cls(
            (top + y * (bottom - top) / view.input[0]) / view.picture[0],
            (left + x * (right - left) / view.input[1]) / view.picture[1],
        )

    @classmethod
    def at_cell(cls, view: PictureView, row: int, col: int, *, stride: float) -> Query:
        """The query at the centre of cell (row, col) of a grid ``stride`` input pixels a step.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            row: the cell's row.
            col: the cell's column.
            stride: input pixels per grid step.

        Returns:
            The query.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query.at_cell(view, 3, 3, stride=4)
            Query(fy=0.5, fx=0.5)
        """
        return cls.at_pixel(view, *cell_centre(row, col, stride=stride))

    @classmethod
    def middle(cls, view: PictureView) -> Query:
        """The default query: the input's :func:`middle_point`.

        Args:
            view: how the model sees the picture (:func:`picture_view`).

        Returns:
            The query at input pixel ((H - 1) / 2, (W - 1) / 2).

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((28, 28), pre)
            >>> analysis.Query.middle(view).pixel(view)
            (13.5, 13.5)
        """
        return cls.at_pixel(view, *middle_point(view.input))

    @classmethod
    def from_text(cls, text: str) -> Query | None:
        """The query a link gives as ``"fy,fx"`` (:meth:`text`), or None for text that is not two
        fractions in [0, 1].

        Args:
            text: the link's value.

        Returns:
            The query, or None.

        Examples:
            >>> import analysis
            >>> analysis.Query.from_text("0.25000,0.75000"), analysis.Query.from_text("2,0")
            (Query(fy=0.25, fx=0.75), None)
        """
        try:
            fy, fx = (float(v) for v in text.split(","))
        except ValueError:
            return None
        return cls(fy, fx) if 0 <= fy <= 1 and 0 <= fx <= 1 else None

    def text(self) -> str:
        """The query as a link writes it: ``"fy,fx"``, five decimals each.

        Returns:
            The text, read back by :meth:`from_text`.

        Examples:
            >>> import analysis
            >>> analysis.Query(0.25, 0.75).text()
            '0.25000,0.75000'
        """
        return f"{self.fy:.5f},{self.fx:.5f}"

    def pixel(self, view: PictureView) -> tuple[float, float]:
        """The query in the model's input pixels (y, x).

        Args:
            view: how the model sees the picture (:func:`picture_view`).

        Returns:
            The input pixel (y, x); outside [0, H) x [0, W) when the crop leaves the point out.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query(0.5, 0.5).pixel(view)
            (14.0, 14.0)
        """
        left, top, right, bottom = view.box
        y, x = self.fy * view.picture[0], self.fx * view.picture[1]
        return (y - top) * view.input[0] / (bottom - top), (x - left) * view.input[1] / (right - left)

    def cell(self, view: PictureView, *, grid: tuple[int, int], stride: float) -> tuple[int, int] | None:
        """The cell (row, col) of a block's ``grid`` that holds the query, or None when the query lies
        outside what the model sees (never moved: :meth:`nearest_cell` is the one clamp).

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            grid: the block's (H, W) grid.
            stride: input pixels per grid step.

        Returns:
            The cell (row, col), or None.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> [analysis.Query(0.5, fx).cell(view, grid=(7, 7), stride=4) for fx in (0.5, 0.01)]
            [(3, 3), None]
        """
        y, x = self.pixel(view)
        row, col = int(y // stride), int(x // stride)
        if not (0 <= y < view.input[0] and 0 <= x < view.input[1]) or not (
            0 <= row < grid[0] and 0 <= col < grid[1]
        ):
            return None
        return row, col

    def nearest_cell(self, view: PictureView, *, grid: tuple[int, int], stride: float) -> tuple[int, int]:
        """The cell that holds the query, or the nearest one when the query lies outside the grid.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            grid: the block's (H, W) grid.
            stride: input pixels per grid step.

        Returns:
            The cell (row, col).

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query(0.5, 0.01).nearest_cell(view, grid=(7, 7), stride=4)
            (3, 0)
        """
        return pixel_cell(*self.pixel(view), grid=grid, stride=stride)

    def index(self, view: PictureView, *, grid: tuple[int, int], stride: float) -> int:
        """The row-major index ``row * W + col`` of the query's cell (:meth:`nearest_cell`) in a block's
        ``grid``: the query an attention map or a rollout of that block takes.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            grid: the block's (H, W) grid.
            stride: input pixels per grid step.

        Returns:
            The index.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> query = analysis.Query.at_cell(view, 5, 6, stride=4)  # S3's 7x7 grid
            >>> query.index(view, grid=(7, 7), stride=4), query.index(view, grid=(4, 4), stride=7)  # S4's
            (41, 15)
        """
        return query_from_cell(*self.nearest_cell(view, grid=grid, stride=stride), grid)

    def centre(self, view: PictureView, *, grid: tuple[int, int], stride: float) -> tuple[float, float]:
        """The input pixel (y, x) at the centre of the query's cell (:meth:`nearest_cell`) in ``grid``:
        the one pixel that stands for the cell in an analysis that takes a pixel.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            grid: the block's (H, W) grid.
            stride: input pixels per grid step.

        Returns:
            The input pixel (y, x).

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query(0.4, 0.4).centre(view, grid=(7, 7), stride=4)
            (10.0, 10.0)
        """
        return cell_centre(*self.nearest_cell(view, grid=grid, stride=stride), stride=stride)

    def snapped(self, view: PictureView, *, grid: tuple[int, int], stride: float) -> Query:
        """The query as ``grid`` shows it: at the centre of its cell (:meth:`nearest_cell`), so that it
        maps back to that cell on this grid, and to the cell that holds that centre on every other.

        Args:
            view: how the model sees the picture (:func:`picture_view`).
            grid: the block's (H, W) grid.
            stride: input pixels per grid step.

        Returns:
            The query at the cell's centre.

        Examples:
            >>> import analysis, coatnet
            >>> pre = coatnet.Preprocessing.undescribed(size=28, channels=3)
            >>> view = analysis.picture_view((480, 640), pre)
            >>> analysis.Query(0.4, 0.4).snapped(view, grid=(7, 7), stride=4).pixel(view)
            (10.0, 10.0)
        """
        return Query.at_cell(view, *self.nearest_cell(view, grid=grid, stride=stride), stride=stride)
