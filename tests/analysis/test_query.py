"""The query as a point of the picture: through a model's crop and resize to a cell and back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from analysis import (
    PictureView,
    Query,
    attention_maps,
    cell_centre,
    middle_point,
    picture_view,
    pixel_cell,
    query_from_cell,
    query_index,
)
from coatnet.data import Preprocessing
from coatnet.data.datasets import crop_box
from tests.support import toys


def model_input(height: int, width: int, *, crop: float) -> Preprocessing:
    """The preprocessing of a model that takes (height, width) inputs and keeps ``crop`` of the picture."""
    return Preprocessing.undescribed(size=(height, width), channels=3).replace(crop=crop)


def test_the_crop_box_is_pillows_fit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h, size = int(rng.integers(1, 300)), int(rng.integers(1, 300)), (int(rng.integers(4, 40)),) * 2
        crop = float(rng.choice([1.0, 0.875, 0.95]))
        picture = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        fitted = ImageOps.fit(picture, size[::-1], method=Image.Resampling.BILINEAR, bleed=(1 - crop) / 2)
        boxed = picture.resize(size[::-1], Image.Resampling.BILINEAR, box=crop_box(picture.size, size, crop))
        assert np.array_equal(np.asarray(fitted), np.asarray(boxed))


@pytest.mark.parametrize("crop", [1.0, 0.875])
def test_every_cell_round_trips_through_the_picture(crop: float) -> None:
    view = picture_view((480, 640), model_input(224, 224, crop=crop))
    for grid, stride in (((14, 14), 16), ((7, 7), 32), ((28, 28), 8)):
        for row in range(grid[0]):
            for col in range(grid[1]):
                assert Query.at_cell(view, row, col, stride=stride).cell(view, grid=grid, stride=stride) == (
                    row,
                    col,
                )
    assert Query.at_pixel(view, 100.0, 37.5).pixel(view) == pytest.approx((100.0, 37.5))


@pytest.mark.parametrize("crop", [1.0, 0.875])
def test_a_pixel_goes_to_its_cell_and_back_to_a_pixel_of_the_same_cell(crop: float) -> None:
    view = picture_view((480, 640), model_input(224, 224, crop=crop))
    rng = np.random.default_rng(0)
    for y, x in rng.uniform(0, 224, (200, 2)):
        for grid, stride in (((14, 14), 16), ((7, 7), 32)):
            cell = Query.at_pixel(view, y, x).cell(view, grid=grid, stride=stride)
            assert cell == pixel_cell(y, x, grid=grid, stride=stride)
            back = Query.at_cell(view, *cell, stride=stride)
            assert back.pixel(view) == pytest.approx(cell_centre(*cell, stride=stride))
            assert pixel_cell(*back.pixel(view), grid=grid, stride=stride) == cell
            assert back.index(view, grid=grid, stride=stride) == query_index(grid, stride, y, x)
            snapped = Query.at_pixel(view, y, x).snapped(view, grid=grid, stride=stride)
            assert snapped.cell(view, grid=grid, stride=stride) == cell
            assert Query.at_pixel(view, y, x).centre(view, grid=grid, stride=stride) == cell_centre(
                *cell, stride=stride
            )


def test_a_click_on_a_fine_grid_survives_a_coarse_one_and_another_model() -> None:
    view = picture_view((480, 640), model_input(224, 224, crop=1.0))
    point = Query.at_cell(view, 10, 12, stride=16)  # S3.0, 14x14
    assert point.cell(view, grid=(7, 7), stride=32) == (5, 6)  # S4.0
    assert point.index(view, grid=(7, 7), stride=32) == query_from_cell(5, 6, (7, 7))
    assert point.cell(view, grid=(14, 14), stride=16) == (10, 12)  # back: not (11, 13)
    wider = picture_view((480, 640), model_input(384, 384, crop=1.0))  # another model, another size
    # input (168, 200) of 224 is picture (360, 508.6); of 384 input (288, 342.9): cell (18, 21) at stride 16
    assert point.cell(wider, grid=(24, 24), stride=16) == (18, 21)


def test_a_query_reaches_a_maxvits_window_and_grid_views_through_the_maxvits_own_view() -> None:
    """A cell of demo-pre's S3 (28 px, 7x7), read by a MaxViT of another input size (16 px) through its own
    view: on every attention of the MaxViT (block windows and dilated grid groups alike) the query's index
    is the cell that holds the same picture point, and that query attends within the window holding it."""
    picture = (60, 80)  # a 4:3 picture: each model crops and resizes it its own way
    pre_view = picture_view(picture, model_input(28, 28, crop=1.0))
    maxvit_view = picture_view(picture, model_input(toys.SIZE, toys.SIZE, crop=0.875))
    query = Query.at_cell(pre_view, 2, 5, stride=4)  # S3.0 of demo-pre, 7x7 at 4 px a cell
    maps = attention_maps(toys.maxvit_toy(), torch.zeros(1, 3, toys.SIZE, toys.SIZE))
    assert {block.partition for block in maps.blocks} >= {"block", "grid"}
    for block in maps.blocks:
        cell = query.cell(maxvit_view, grid=block.grid, stride=block.stride)
        assert cell == pixel_cell(*query.pixel(maxvit_view), grid=block.grid, stride=block.stride)
        index = query.index(maxvit_view, grid=block.grid, stride=block.stride)
        assert divmod(index, block.grid[1]) == cell
        window, place = block.locate(index)
        assert block.positions[window, place] == index and block.seen(index)[cell]


def test_a_point_outside_a_models_crop_is_said_to_be_outside() -> None:
    whole = picture_view((480, 640), model_input(224, 448, crop=1.0))  # sees the whole width
    square = picture_view((480, 640), model_input(224, 224, crop=0.875))  # a central square
    left_edge = Query.at_cell(whole, 7, 0, stride=16)
    assert left_edge.cell(square, grid=(14, 14), stride=16) is None
    assert left_edge.cell(whole, grid=(14, 28), stride=16) == (7, 0)
    # the one clamp: the nearest cell, its index and its centre
    assert left_edge.nearest_cell(square, grid=(14, 14), stride=16) == (7, 0)
    assert left_edge.index(square, grid=(14, 14), stride=16) == 7 * 14
    assert left_edge.centre(square, grid=(14, 14), stride=16) == (120.0, 8.0)


def test_one_convention_pixel_i_spans_i_to_i_plus_1_and_a_cell_centre_is_r_plus_half_stride() -> None:
    assert cell_centre(0, 0, stride=16) == (8.0, 8.0)
    assert cell_centre(3, 5, stride=32) == (112.0, 176.0)
    for stride in (1, 4, 16, 32):
        for row in range(6):
            y, x = cell_centre(row, 5 - row, stride=stride)
            assert pixel_cell(y, x, grid=(6, 6), stride=stride) == (row, 5 - row)
            # the cell's first pixel and its last (just under the next cell) are in it, the next one is not
            assert pixel_cell(row * stride, 0, grid=(6, 6), stride=stride)[0] == row
            assert pixel_cell((row + 1) * stride - 1e-6, 0, grid=(6, 6), stride=stride)[0] == row
    assert pixel_cell(-3, 100, grid=(4, 4), stride=4) == (0, 3)  # the one clamp
    assert query_index((4, 4), 4, *cell_centre(1, 2, stride=4)) == query_from_cell(1, 2, (4, 4)) == 6
    # the default query pixel lies in the middle cell, the upper left of the middle four on an even side
    for grid, stride, middle in (((14, 14), 16, (6, 6)), ((7, 7), 32, (3, 3)), ((15, 9), 8, (7, 4)),
                                 ((1, 1), 224, (0, 0)), ((2, 6), 4, (0, 2))):  # fmt: skip
        size = (grid[0] * stride, grid[1] * stride)
        assert pixel_cell(*middle_point(size), grid=grid, stride=stride) == middle
        view = PictureView(size, size, (0.0, 0.0, float(size[1]), float(size[0])))  # the input as given
        assert Query.middle(view).cell(view, grid=grid, stride=stride) == middle


def test_the_query_type_holds_every_conversion_and_the_functions_agree() -> None:
    view = picture_view((480, 640), model_input(224, 224, crop=0.875))
    query = Query.at_cell(view, 10, 12, stride=16)
    assert isinstance(query, tuple) and query == Query.at_pixel(view, *cell_centre(10, 12, stride=16))
    assert query.pixel(view) == pytest.approx(cell_centre(10, 12, stride=16))
    assert query.cell(view, grid=(14, 14), stride=16) == pixel_cell(
        *query.pixel(view), grid=(14, 14), stride=16
    )
    assert query.index(view, grid=(14, 14), stride=16) == query_from_cell(10, 12, (14, 14))
    assert Query(*tuple(query)) == query  # a plain (fy, fx) tuple is the same query
    outside = Query(0.5, 0.02)  # the left edge of a 4:3 picture: outside the central crop
    assert outside.cell(view, grid=(14, 14), stride=16) is None
    assert outside.nearest_cell(view, grid=(14, 14), stride=16) == (7, 0)


def test_a_query_goes_into_a_link_and_back() -> None:
    query = Query(0.123456, 0.5)
    assert query.text() == "0.12346,0.50000"
    assert Query.from_text(query.text()) == pytest.approx(query, abs=1e-5)
    assert [Query.from_text(t) for t in ("", "0.5", "a,b", "1.5,0.5", "0.5,-0.1")] == [None] * 5
