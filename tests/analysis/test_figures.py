"""Figures: grid maps sit on the pixels they came from, one click marker per cell, every result draws."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from analysis import figures  # the face: every figure module's names
from analysis.explain.attributions import attributions
from analysis.figures.compare import block_comparison_figures, comparison_figures
from analysis.figures.names import figure_name
from analysis.figures.plots import overlay, readable_range
from analysis.maps.attention import attention_maps
from analysis.maps.cka import cka
from analysis.maps.compare import compare
from analysis.maps.frequency import frequency_profile
from analysis.maps.kernels import relative_bias_kernels
from analysis.maps.receptive_field import receptive_fields
from analysis.maps.rollout import attention_rollout
from analysis.maps.statistics import attention_statistics
from tests.support.toys import images, toy


def test_a_grid_map_covers_exactly_the_pixels_of_its_cells():
    values = np.arange(12.0).reshape(3, 4)
    figure = overlay(np.zeros((12, 16), np.uint8), values, stride=4, query=(1, 2), clickable=True)
    heatmap = next(t for t in figure.data if isinstance(t, go.Heatmap))
    # cell (r, c) is centred on pixel ((r + 0.5) * 4 - 0.5): cell 0 spans pixels 0..3, centre 1.5
    assert heatmap.x0 == 1.5 and heatmap.dx == 4 and heatmap.y0 == 1.5 and heatmap.dy == 4
    cells = next(t for t in figure.data if t.name == "cells")
    assert len(cells.x) == 12 and cells.marker.opacity < 0.05 and figure.layout.clickmode == "event+select"
    assert [list(c[:2]) for c in cells.customdata[:2]] == [[0, 0], [0, 1]]  # what a click reads
    # hovering shows the value, the offset from the query in cells and its distance in input pixels
    np.testing.assert_allclose(cells.customdata[0], [0, 0, -1, -2, np.hypot(1, 2) * 4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        np.array(heatmap.customdata)[2, 3], [2, 3, 1, 1, np.hypot(1, 1) * 4], rtol=1e-6
    )
    assert (
        "%{z" in heatmap.hovertemplate and "offset" in heatmap.hovertemplate and "px" in heatmap.hovertemplate
    )
    assert "%{customdata[5]" in cells.hovertemplate  # the markers over the map hover its value too
    query = next(t for t in figure.data if t.name == "query")
    assert (query.x[0], query.y[0]) == (9.5, 5.5)
    assert query.marker.symbol == "square-open"  # an outline: the query cell's value stays visible
    assert list(figure.layout.yaxis.range) == [11.5, -0.5]  # image orientation: row 0 at the top


@pytest.mark.parametrize("attention", ["pre", "post"])
def test_every_result_draws(attention):
    model, x = toy(attention=attention), images(4)
    picture = np.zeros((16, 16, 3), np.uint8)
    maps = attention_maps(model, x[:1])
    block = maps.block("S3.0")
    drawn = [
        figures.attention_heads_figure(block, picture, 5, part="content"),
        figures.fused_attention_figure(block, picture, 5),
        figures.rollout_figure(attention_rollout(model, x[:1], maps=maps), picture),
        *figures.statistics_figures(attention_statistics(model, x[:1], maps=maps)),
        *figures.kernel_figures(relative_bias_kernels(model)),
        figures.receptive_field_figure(receptive_fields(model, x), picture),
        figures.frequency_figure(frequency_profile(model, x)),
        figures.attribution_figure(attributions(model, x[:1], method="gradcam"), picture),
        figures.cka_figure(cka(model, x)),
        *comparison_figures(compare(model, toy(attention="pre"), x[:1]), picture),
        figures.training_curves([
            {"epoch": 1, "train_loss": 1.0, "test_loss": 0.9, "train_top1": 0.5, "test_top1": 0.6},
            {"epoch": 2, "train_loss": 0.5, "test_loss": 0.6, "train_top1": 0.8, "test_top1": 0.7},
        ]),
    ]  # fmt: skip
    for figure in drawn:
        assert isinstance(figure, go.Figure) and figure.data and figure.layout.title.text
    assert [figure_name(f) for f in drawn[:3]] == ["attention-heads", "fused-attention", "rollout"]
    assert all(figure_name(f) for f in drawn)  # every figure found by its name, never by its title
    heads = figures.attention_heads_figure(block, picture, 5)
    assert sum(isinstance(t, go.Heatmap) for t in heads.data) == block.heads


def test_stage_and_prediction_figures_draw_every_stage():
    from analysis.core.predictions import top_k
    from analysis.maps.features import feature_maps

    model, x = toy(), images(1)
    features = feature_maps(model, x)
    cams = [attributions(model, x, method="gradcam", stage=f"S{s}") for s in range(5)]
    figure = figures.stages_figure(features, np.zeros((16, 16, 3), np.uint8), cams)
    assert sum(isinstance(t, go.Heatmap) for t in figure.data) == 10
    assert sum(isinstance(t, go.Image) for t in figure.data) == 5
    bars = figures.predictions_figure(top_k(np.arange(5.0), list("abcde")))
    assert list(bars.data[0].y) == ["a", "b", "c", "d", "e"]  # most probable (e) drawn on top


def test_the_top_5_axis_runs_to_100_percent_for_every_image_and_long_names_are_cut_with_the_full_name():
    from analysis.core.predictions import Prediction

    long = "great grey owl, great gray owl, Strix nebulosa"
    unsure = [Prediction(i, name, p) for i, (name, p) in enumerate(
        [(long, 0.031), ("tench, Tinca tinca", 0.02), ("a" * 40, 0.01), ("b", 0.005), ("c", 0.001)]
    )]  # fmt: skip
    bars = figures.predictions_figure(unsure)
    sure = figures.predictions_figure([Prediction(0, "x", 0.97), Prediction(1, "y", 0.03)])
    for figure in (bars, sure):  # one rule: the same axis whatever the top probability
        assert list(figure.layout.xaxis.range) == [0, 1] and figure.layout.title.text == "Top-5 predictions"
    assert list(bars.data[0].text)[::-1][0] == "3.1%"  # each probability written beside its bar
    assert list(bars.data[0].y)[::-1][:3] == ["great grey owl", "tench", "a" * 27 + "…"]
    assert list(bars.data[0].customdata)[::-1][0] == long


def test_one_head_or_fused_heads_on_the_clickable_map():
    block = attention_maps(toy(), images(1)).block("S3.0")
    one = figures.fused_attention_figure(block, None, 3, how=1)
    heatmap = next(t for t in one.data if isinstance(t, go.Heatmap))
    np.testing.assert_allclose(np.array(heatmap.z), block.effective[0, 1, 3].reshape(block.grid), rtol=1e-6)
    assert "head 1" in one.layout.title.text and any(t.name == "cells" for t in one.data)


def test_strongest_channels_one_column_per_stage():
    from analysis.maps.features import feature_maps

    features = feature_maps(toy(), images(1), top=2)
    figure = figures.feature_channels_figure(features)
    assert sum(isinstance(t, go.Heatmap) for t in figure.data) == 10
    first = features.blocks[0]
    np.testing.assert_allclose(np.array(figure.data[0].z), first.top[0, 0], rtol=1e-6)
    assert figure.layout.annotations[0].text.split("<br>")[0] == f"S0 ch {first.top_index[0, 0]}"


def test_each_model_of_a_comparison_gets_its_own_scale_and_the_difference_diverges():
    x = images(1)
    comparison = compare(toy(attention="pre"), toy(attention="post"), x, labels=("pre", "post"))
    block = comparison.blocks[0]
    first, second, difference = block_comparison_figures(block, comparison.labels, None)
    for figure, maps in ((first, block.map_a), (second, block.map_b)):
        shown = [t for t in figure.data if isinstance(t, go.Heatmap)]
        assert len(shown) == maps.shape[0] and len({(t.zmin, t.zmax) for t in shown}) == 1
        signed = bool((maps < 0).any())
        low, high = (-np.abs(maps).max(), np.abs(maps).max()) if signed else (maps.min(), maps.max())
        assert shown[0].zmin == pytest.approx(low) and shown[0].zmax == pytest.approx(high)  # never blank
        assert f"(scale {readable_range(low, high)})" in figure.layout.title.text.replace("<br>", " ")
    assert (block.map_b < 0).any() and "post" in second.layout.title.text  # post weights as used: signed
    shown = [t for t in difference.data if isinstance(t, go.Heatmap)]
    assert shown[0].zmin == -shown[0].zmax  # b - a: symmetric around 0
    np.testing.assert_allclose(np.array(shown[0].z), block.difference[0], rtol=1e-6)


def test_head_grids_are_laid_out_in_pixels_with_square_cells_and_a_colour_bar_as_tall_as_the_panels():
    from analysis.figures.panels import MAX_WIDTH, TOOLBAR_PX
    from analysis.figures.plots import head_grid

    maps = np.random.default_rng(0).random((16, 14, 14))
    figure = head_grid(None, maps, titles=[f"head {h}" for h in range(16)], title="S3.0: every head " * 8)
    layout = figure.layout
    assert layout.width <= MAX_WIDTH
    plot_w = layout.width - layout.margin.l - layout.margin.r
    plot_h = layout.height - layout.margin.t - layout.margin.b
    boxes = []
    for n in range(1, 17):
        suffix = "" if n == 1 else str(n)
        x, y = getattr(layout, "xaxis" + suffix), getattr(layout, "yaxis" + suffix)
        width, height = (x.domain[1] - x.domain[0]) * plot_w, (y.domain[1] - y.domain[0]) * plot_h
        assert width == pytest.approx(height, abs=0.01)  # square cells, without scaleanchor
        assert list(y.range) == [13.5, -0.5]  # row 0 on top
        boxes.append((x.domain, y.domain))
    # 16 heads: three rows of six (eight a row would leave 48 px panels, under the 64 px least)
    assert len({round(b[1][0], 6) for b in boxes}) == 3 and len({round(b[0][0], 6) for b in boxes}) == 6
    assert (boxes[0][0][1] - boxes[0][0][0]) * plot_w >= 64
    bar = next(t for t in figure.data if t.showscale).colorbar
    assert bar.y == pytest.approx(boxes[0][1][1]) and bar.y - bar.len == pytest.approx(boxes[-1][1][0])
    one_row = head_grid(None, maps[:8], title="S4.0")  # in one row of 8 the bar would be 48 px: two rows
    assert len({round(one_row.layout[f"yaxis{n}"].domain[0], 6) for n in ("", 2, 3, 4, 5, 6, 7, 8)}) == 2
    title_lines = layout.title.text.count("<br>") + 1
    assert title_lines > 1 and layout.margin.t >= TOOLBAR_PX + 19 * title_lines  # wrapped, under the toolbar
    assert [a.text for a in layout.annotations] == [f"head {h}" for h in range(16)]


def test_a_head_grid_fills_the_width_it_is_given():
    from analysis.figures.plots import head_grid

    maps = np.random.default_rng(0).random((16, 14, 14))

    def panel_and_rows(width: float) -> tuple[float, int, float]:
        layout = head_grid(None, maps, width=width).layout
        plot_w = layout.width - layout.margin.l - layout.margin.r
        rows = len({round(layout[f"yaxis{n or ''}"].domain[0], 6) for n in range(16) if n != 1})
        return (layout.xaxis.domain[1] - layout.xaxis.domain[0]) * plot_w, rows, layout.width

    narrow, wide = panel_and_rows(560), panel_and_rows(1080)
    assert narrow[:2] == (pytest.approx(67, abs=1), 3) and narrow[2] <= 560
    assert wide[:2] == (pytest.approx(113, abs=1), 2) and wide[2] <= 1080  # two rows of eight, 113 px


def test_kernels_outline_their_centre_and_hover_shows_each_taps_offset():
    kernels = np.arange(18.0).reshape(2, 3, 3) - 9
    from analysis.figures.plots import kernel_gallery

    figure = kernel_gallery(kernels, titles=["a", "b"])
    centre = [t for t in figure.data if t.name == "query"]
    assert len(centre) == 2 and all(t.marker.symbol == "square-open" for t in centre)
    heatmap = next(t for t in figure.data if isinstance(t, go.Heatmap))
    np.testing.assert_allclose(np.array(heatmap.customdata)[0, 2][2:4], [-1, 1])  # offset dy, dx
    assert heatmap.zmin == -heatmap.zmax  # signed weights: a diverging scale around 0


def _colour_literals(path) -> list[str]:
    """The string constants of a module that name a colour or a colour scale."""
    import ast
    import re

    import plotly.colors

    scales = {s.lower() for s in plotly.colors.named_colorscales()}
    named = {"white", "black", "red", "green", "blue", "cyan", "lime", "magenta", "grey", "gray", "orange"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip().lower()
            if re.fullmatch(r"#[0-9a-f]{3,8}", text) or text.removesuffix("_r") in scales or text in named:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    return found


def test_every_colour_and_scale_is_named_in_the_style_module_only():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = [*sorted((root / "analysis").rglob("*.py")), *sorted((root / "app").rglob("*.py"))]
    style = root / "analysis" / "figures" / "style.py"
    assert _colour_literals(style)  # the check sees colours where they are
    assert [hit for m in modules if m != style for hit in _colour_literals(m)] == []


def test_legends_sit_under_their_charts_in_one_layout():
    from analysis.figures.studies import stage_figure
    from analysis.figures.style import legend_below
    from analysis.studies.summaries import Study

    study = {
        "model": "toy",
        "stages": [
            {"stage": f"S{k}", "kind": "C", "erf_side_50_px": 3, "mean_abs_activation": {"mean": 1, "std": 0},
             "grid": [4, 4], "frequency_profile": [0.0], "high_frequency_delta": 0.0}
            for k in range(3)
        ],
    }  # fmt: skip
    figure = stage_figure(Study.from_json(study))
    legend, reserved = legend_below()
    assert figure.layout.legend.to_plotly_json() == legend and figure.layout.margin.b == reserved
    assert legend["yref"] == "container" and legend["y"] == 0 and legend["orientation"] == "h"


def _builders() -> dict[str, object]:
    """Every public function of :mod:`analysis.figures` that returns a figure or a list of them."""
    import inspect

    from analysis import figures as face

    return {
        name: obj
        for name in face.__all__
        if inspect.isfunction(obj := getattr(face, name))
        and "Figure" in str(inspect.signature(obj).return_annotation)
    }


def _names_given(builder, builders: dict[str, object]) -> list[str]:
    """The names ``builder`` gives its figures: each ``return`` is ``named(figure, "name")``, a list of
    them, or figures of other builders (a list built of their calls); anything else fails the test."""
    import ast
    import inspect
    import textwrap

    node = ast.parse(textwrap.dedent(inspect.getsource(builder))).body[0]
    made_by_builders = {  # local lists filled only with other builders' figures
        target.id
        for stmt in ast.walk(node)
        if isinstance(stmt, (ast.Assign, ast.AugAssign))
        for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
        if isinstance(target, ast.Name)
        and all(
            isinstance(c.func, ast.Name) and c.func.id in builders
            for c in ast.walk(stmt.value)
            if isinstance(c, ast.Call)
        )
    }

    def names(value: ast.expr) -> list[str] | None:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "named":
            name = value.args[1]
            return [name.value] if isinstance(name, ast.Constant) and isinstance(name.value, str) else None
        if isinstance(value, ast.List):
            found = [names(e) for e in value.elts]
            return None if None in found else [n for f in found for n in f]
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in builders:
            return []
        if isinstance(value, ast.Name) and value.id in made_by_builders:
            return []
        if isinstance(value, (ast.BinOp, ast.ListComp)):
            parts = [value.left, value.right] if isinstance(value, ast.BinOp) else [value.elt]
            found = [names(p) for p in parts]
            return None if None in found else [n for f in found for n in f]
        return None

    given = []
    for ret in (n for n in ast.walk(node) if isinstance(n, ast.Return)):
        found = names(ret.value)
        assert found is not None, f"{builder.__name__} returns {ast.unparse(ret.value)!r}, not a named figure"
        given += found
    return given


def test_every_figure_builder_names_its_figures_and_no_two_builders_share_a_name():
    builders = _builders()
    assert len(builders) > 40  # the check sees every builder
    owner: dict[str, str] = {}
    for name, builder in builders.items():
        for given in _names_given(builder, builders):
            assert owner.setdefault(given, name) == name, f"{given!r}: {owner[given]} and {name}"
    composed = {n for n, b in builders.items() if not _names_given(b, builders)}
    assert composed == {"comparison_figures", "kernel_figures"}  # made of other builders' named figures
    assert len(owner) > 40
