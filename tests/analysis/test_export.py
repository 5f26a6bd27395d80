"""Exports: JSON and NPZ hold every number of a result, HTML opens offline, PNG through Chromium."""

from __future__ import annotations

import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from analysis import attention_maps
from analysis.figures.maps import fused_attention_figure
from analysis.report import export
from tests.support.toys import images, toy


def test_npz_and_json_hold_every_array_of_a_result():
    maps = attention_maps(toy(), images(1))
    arrays = np.load(io.BytesIO(export.result_npz(maps)))
    first = maps.blocks[0]
    np.testing.assert_array_equal(arrays["blocks.0.effective"], first.effective)
    np.testing.assert_array_equal(arrays["logits"], maps.logits)
    assert str(arrays["blocks.0.name"]) == first.name and "blocks.0.bias_softmax" in arrays
    loaded = json.loads(export.result_json(maps))
    assert np.allclose(np.array(loaded["blocks"][0]["effective"]), first.effective)
    assert loaded["image_size"] == list(maps.image_size)


def test_json_and_npz_carry_what_the_result_is_about():
    maps = attention_maps(toy(), images(1))
    about = {
        "model": "coatnet_toy, pre",
        "provenance": {"dataset": "toys"},
        "image": "x.png",
        "query": [1, 2],
    }
    loaded = json.loads(export.result_json(maps, about))
    assert loaded["about"] == about and loaded["result"]["image_size"] == list(maps.image_size)
    arrays = np.load(io.BytesIO(export.result_npz(maps, about)))  # allow_pickle stays False
    assert json.loads(str(arrays["about"])) == about and "blocks.0.effective" in arrays


def test_npz_of_a_tuple_of_results_keys_them_by_position():
    arrays = np.load(io.BytesIO(export.result_npz(({"a": np.ones(2)}, {"a": np.zeros(3)}))))
    assert arrays["0.a"].shape == (2,) and arrays["1.a"].shape == (3,)


def test_html_is_self_contained():
    block = attention_maps(toy(), images(1)).blocks[0]
    page = export.figure_html(fused_attention_figure(block, None, 0))
    assert "<html>" in page[:100] and len(page) > 1_000_000  # plotly.js inside
    assert "<script src=" not in page  # nothing fetched: plotly.js is inlined


def test_png_without_a_browser_says_what_to_install(monkeypatch):
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    block = attention_maps(toy(), images(1)).blocks[0]
    assert not export.browser_available()
    with pytest.raises(export.ExportError, match="apt-get install chromium"):
        export.figure_png(fused_attention_figure(block, None, 0))


@pytest.mark.browser
@pytest.mark.slow
def test_png_through_chromium():
    block = attention_maps(toy(), images(1)).blocks[0]
    figure = fused_attention_figure(block, None, 0)
    png = export.figure_png(figure, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    # a figure of maps has its own size in pixels (analysis.figures.plots): the PNG is drawn at it
    assert Image.open(io.BytesIO(png)).size == (figure.layout.width, figure.layout.height)
    sized = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))  # a chart without a size: 900 x 600
    assert Image.open(io.BytesIO(export.figure_png(sized, scale=1))).size == (900, 600)
