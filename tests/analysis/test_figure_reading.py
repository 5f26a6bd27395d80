"""Figures that read true: scales no front end rewrites, colour bars with readable ticks, nearly uniform
maps said to be so and drawn even, panels on their own scales with their ranges, the random baseline on
every faithfulness chart with a sentence, and a picture the model was not made for named."""

from __future__ import annotations

import json

import numpy as np
import plotly.colors
import pytest
from PIL import Image

from analysis.figures import style
from analysis.figures.explanations import no_better_than_random, random_sentence, scores_figure
from analysis.figures.panels import NBSP, pair, wrap
from analysis.figures.plots import (
    OWN_SCALES,
    colour_ticks,
    nearly_uniform,
    overlay,
    readable,
    readable_range,
)


@pytest.mark.parametrize("name, scale", [("Viridis", style.SEQUENTIAL), ("RdBu_r", style.DIVERGING),
                                         ("Inferno", style.HEAT), ("Magma", style.MATRIX)])  # fmt: skip
def test_every_scale_is_its_named_scale_in_colours_streamlit_does_not_rewrite(name, scale):
    """Streamlit's front end replaces #000001-#000040 in a chart's JSON (Inferno's and Magma's zero is
    #000004): the style module's scales hold the same colours as rgb() strings."""
    assert not style.STREAMLIT_PLACEHOLDER.search(json.dumps(scale))
    named = plotly.colors.get_colorscale(name)
    assert [p for p, _ in scale] == [p for p, _ in named]
    for (_, ours), (_, theirs) in zip(scale, named, strict=True):
        theirs = (
            theirs
            if theirs.startswith("rgb")
            else "rgb({}, {}, {})".format(*plotly.colors.hex_to_rgb(theirs))
        )
        assert plotly.colors.unlabel_rgb(ours) == plotly.colors.unlabel_rgb(theirs)
    assert style.STREAMLIT_PLACEHOLDER.search('"#000004"')  # the check sees what the front end rewrites


def test_numbers_and_ranges_read_as_people_read_them():
    assert readable_range(2.95e-21, 0.999) == f"0{NBSP}to{NBSP}0.999"  # one line: never split
    assert readable_range(0.0204, 0.0216) == f"0.0204{NBSP}to{NBSP}0.0216"
    assert readable_range(-0.5, 0.25) == f"-0.5{NBSP}to{NBSP}0.25"
    assert wrap(f"query {pair(3, 3)} of S3.0", 60) == ["query", f"(3,{NBSP}3)", "of S3.0"]
    assert readable(1234.6) == "1235" and readable(0.5) == "0.5" and readable(3.2e-7) == "3.20e-07"


@pytest.mark.parametrize("low, high", [(0.0, 1e-3), (0.0204, 0.0216), (-0.37, 0.37), (0, 1), (5, 5.001)])
def test_colour_bar_ticks_are_at_least_three_distinct_round_values_inside_the_range(low, high):
    for count in (2, 5, 13):
        ticks = colour_ticks(low, high, count)
        values = ticks["tickvals"]
        assert 3 <= len(values) <= max(3, min(6, count)) and len(set(ticks["ticktext"])) == len(values)
        assert all(low - 1e-12 <= v <= high + 1e-12 for v in values)
        step = values[1] - values[0]
        assert np.allclose(np.diff(values), step)
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), (step, values)
        assert all(len(t) <= 9 and "e" not in t for t in ticks["ticktext"]), ticks["ticktext"]
    assert colour_ticks(3.66e-07, 0.773, 3)["ticktext"] == ["0.25", "0.5", "0.75"]  # never "3.66e-07"
    assert colour_ticks(0.00124, 0.242, 13)["ticktext"] == ["0.05", "0.1", "0.15", "0.2"]


def test_a_nearly_uniform_map_says_so_and_is_drawn_even():
    """A class relevance of 0.0204-0.0216 (within 1/49 +- 3%) stretched from its minimum to its maximum
    looks like a strong pattern: its title says it is nearly uniform, with its range, and its scale starts
    at 0 so that it is drawn as the even map it is."""
    values = np.linspace(0.0204, 0.0216, 49).reshape(7, 7)
    assert nearly_uniform(values) and not nearly_uniform(np.linspace(0.0, 1.0, 49).reshape(7, 7))
    figure = overlay(None, values, stride=4, title="relevance", what="relevance")
    heatmap = figure.data[0]
    assert f"nearly uniform: 0.0204{NBSP}to{NBSP}0.0216" in figure.layout.title.text
    assert heatmap.zmin == 0 and heatmap.zmax == pytest.approx(0.0216)
    assert len(heatmap.colorbar.ticktext) >= 3
    patterned = overlay(None, np.linspace(0.5, 1.0, 49).reshape(7, 7), title="relevance")
    assert "nearly uniform" not in patterned.layout.title.text and patterned.data[0].zmin == 0.5
    assert readable_range(1.0, 1.004) == f"1{NBSP}to{NBSP}1.004"  # digits enough to tell the ends apart


def test_maps_drawn_each_on_its_own_scale_say_so_and_give_each_range():
    from analysis.figures.stages import feature_channels_figure, receptive_field_figure, stages_figure
    from analysis.maps.features import feature_maps
    from analysis.maps.receptive_field import receptive_fields
    from tests.support.toys import images, toy

    model = toy()
    x = images(batch=1)
    features = feature_maps(model, x)
    for figure in (stages_figure(features, None), feature_channels_figure(features),
                   receptive_field_figure(receptive_fields(model))):  # fmt: skip
        assert OWN_SCALES in figure.layout.title.text.replace("<br>", " ")
        texts = [a.text.replace(NBSP, " ").replace("<br>", " ") for a in figure.layout.annotations if a.text]
        assert texts and all(" to " in t for t in texts), texts
        assert not any(getattr(t, "showscale", False) for t in figure.data)  # no bar that one panel owns


def _rows() -> list[dict]:
    def row(method: str, deletion: float, insertion: float, road: float, **extra) -> dict:
        return {"method": method, "deletion_auc": deletion, "insertion_auc": insertion, "road": road,
                "n_images": 8, **extra}  # fmt: skip

    return [
        row(
            "random",
            0.30,
            0.40,
            0.00,
            seed_range={"deletion_auc": [0.28, 0.32], "insertion_auc": [0.38, 0.42], "road": [-0.01, 0.01]},
        ),
        row("rollout", 0.31, 0.45, 0.05),  # worse than random's best deletion: no better there
        row("integrated_gradients", 0.10, 0.60, 0.20),
        row("relevance", 0.20, 0.41, 0.005),  # within random's insertion and ROAD ranges
    ]


def test_the_random_baseline_is_drawn_and_the_methods_no_better_than_it_are_named():
    rows = _rows()
    found = no_better_than_random(rows)
    assert found["deletion_auc"] == ["rollout"]
    assert found["insertion_auc"] == ["relevance"] and found["road"] == ["relevance"]
    sentence = random_sentence(rows)
    assert sentence.startswith("No better than a random map") and "rollout on deletion AUC" in sentence
    figure = scores_figure(rows, "Faithfulness")
    lines = [s for s in figure.layout.shapes if s.type == "line"]
    assert [(s.xref, s.x0) for s in lines] == [("x", 0.30), ("x2", 0.40), ("x3", 0.00)]
    assert all(s.line.dash == "dot" for s in lines)
    notes = [a.text.replace("<br>", " ") for a in figure.layout.annotations]
    assert any("rollout on deletion AUC" in n for n in notes), notes
    better = [r for r in rows if r["method"] in ("random", "integrated_gradients")]
    assert random_sentence(better) == "Every method does better than a random map on every score."


def test_a_picture_the_model_was_not_made_for_is_named_with_what_was_done_and_what_it_knows():
    from analysis.core.inputs import preparation_note
    from coatnet import Preprocessing

    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"]  # fmt: skip
    fashion = Preprocessing.undescribed(size=28, channels=1)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    note = preparation_note(photo, fashion, names, "fashion-mnist")
    assert note.startswith(
        "A 1-channel 28x28 px Fashion-MNIST model: your picture (640x480, colour) was made"
    )
    assert "made grey, centre-cropped to a square and resized to 28x28 px" in note
    assert "It knows only these 10 classes: T-shirt/top, Trouser" in note
    assert preparation_note(Image.new("L", (28, 28)), fashion, names, "fashion-mnist") is None
    grey_photo = Image.new("RGB", (56, 56), (90, 90, 90))  # grey content saved as RGB: not "made grey"
    assert preparation_note(grey_photo, fashion, names) == (
        "A 1-channel 28x28 px model: your picture (56x56, greyscale) was resized to 28x28 px. It knows only "
        "these 10 classes: " + ", ".join(names) + "."
    )
    rgb = Preprocessing.undescribed(size=224, channels=3)
    imagenet = preparation_note(photo, rgb.replace(crop=0.875), ["c"] * 1000)
    assert imagenet.endswith("It knows 1000 classes.") and "made grey" not in imagenet
    assert preparation_note(Image.new("RGB", (224, 224), (90, 90, 90)), rgb) is None  # taken as it is
    square = preparation_note(Image.new("RGB", (224, 224)), rgb.replace(crop=0.875))
    assert "centre-cropped to its central 88% and resized to 224x224 px" in square


def test_the_head_overview_frames_the_head_shown_large():
    from analysis.figures.maps import attention_heads_figure
    from analysis.maps.attention import attention_maps
    from tests.support.toys import images, toy

    block = attention_maps(toy(), images(batch=1)).blocks[0]
    plain = attention_heads_figure(block, None, 0)
    assert not plain.layout.shapes
    framed = attention_heads_figure(block, None, 0, selected=1)
    (frame,) = [s for s in framed.layout.shapes if s.type == "rect"]
    assert (frame.xref, frame.yref) == ("x2 domain", "y2 domain")  # the second panel: head 1
    assert [a.text.replace("<br>", " ") for a in framed.layout.annotations][1] == "head 1 (shown above)"


def test_bias_kernels_are_drawn_large_with_each_heads_peak_offset_and_mean_distance():
    """A kernel whose largest bias is one step right of the query (key - query = (0, +1)) names that peak;
    a flat kernel's softmax spreads over every offset: its mean distance is the mean of all distances."""
    from analysis.figures.kernels import bias_kernel_figure
    from analysis.maps.kernels import BiasKernel

    kernels = np.zeros((2, 5, 5), dtype=np.float32)
    kernels[0, 2, 3] = 20.0  # the right neighbour, all but certain
    block = BiasKernel("S3.0", 3, 0, (3, 3), 16, "pre", kernels, np.abs(kernels).mean((1, 2)),
                       np.zeros((2, 2)))  # fmt: skip
    figure = bias_kernel_figure(block)
    texts = [a.text.replace("<br>", " ").replace(NBSP, " ") for a in figure.layout.annotations]
    assert texts[0] == "head 0 peak (0, 1) mean 16 px"  # one step of 16 px
    dy, dx = np.meshgrid(np.arange(5) - 2, np.arange(5) - 2, indexing="ij")
    assert texts[1].endswith(f"mean {readable(float(np.hypot(dy, dx).mean() * 16))} px")
    heatmap = next(t for t in figure.data if t.type == "heatmap")
    assert figure.layout.width >= 2 * 96  # panels of at least 96 px
    assert heatmap.zmin == -heatmap.zmax
