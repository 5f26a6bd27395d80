"""The layout study's analyses: one image through several layouts stage by stage, CKA between the same
stage of two layouts, their figures, and the study's figures and table from a layouts.json."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import coatnet
from analysis import cka
from analysis.figures.layouts import gap_figure, layout_similarity_figure, layout_stages_figure, size_figure
from analysis.maps.attention import attention_maps
from analysis.report.sections import layout_sections
from analysis.studies.layouts import compare_layouts, layout_similarity, load_layouts, table
from analysis.studies.summaries import LayoutStudy
from coatnet.training.layouts import LAYOUT_MODELS


@pytest.fixture(scope="module")
def models() -> dict:
    torch.manual_seed(0)
    nets = {}
    for layout in ("C-C-T-T", "ViT_REL"):
        name = LAYOUT_MODELS[layout]
        nets[layout] = coatnet.create_model(name, in_chans=1, num_classes=10).eval()
    return nets


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_one_image_through_every_layout_stage_by_stage(models, image) -> None:
    before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in models.items()}
    pixel = (1 * 4 + 1.5, 5 * 4 + 1.5)  # the centre of cell (1, 5) of the 7x7 grid
    views = compare_layouts(models, image, pixel=pixel)
    assert list(views) == ["C-C-T-T", "ViT_REL"]
    assert [s.kind for s in views["C-C-T-T"]] == ["conv", "C", "C", "T", "T"]
    assert [s.kind for s in views["ViT_REL"]] == ["patch", "T", "T", "T", "T"]
    for layout, stages in views.items():
        model = models[layout]
        with torch.no_grad():
            predicted = int(model(image).argmax())
        maps = attention_maps(model, image)
        last = {f"S{b.stage}": b for b in maps.blocks}
        for stage in stages:
            assert stage.stage in ("S0", "S1", "S2", "S3", "S4") and stage.prediction == predicted
            assert stage.gradcam.shape == stage.erf.shape == (28, 28)
            assert stage.erf.sum() == pytest.approx(1.0, abs=1e-5) and (stage.erf >= 0).all()
            if stage.kind != "T":
                assert stage.attention is None, (layout, stage.stage)
                continue
            block = last[stage.stage]
            cell = 28 // block.grid[0]  # input pixels a cell
            row, col = int(pixel[0] // cell), int(pixel[1] // cell)
            expected = block.effective[0, :, row * block.grid[1] + col].mean(0).reshape(block.grid)
            assert np.allclose(stage.attention[::cell, ::cell], expected, atol=1e-6), (layout, stage.stage)
            assert stage.attention.sum() == pytest.approx(cell * cell, rel=1e-4)  # a row of weights, repeated
            assert stage.query == (row, col) and stage.stride == cell
    for layout, model in models.items():  # the models are left as found
        assert not model.training and all(p.grad is None for p in model.parameters())
        assert all(torch.equal(t, before[layout][n]) for n, t in model.state_dict().items())
        assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    elsewhere = compare_layouts(models, image)  # the default pixel is the image's centre
    t_stage = views["C-C-T-T"][3]
    assert not np.allclose(elsewhere["C-C-T-T"][3].attention, t_stage.attention)
    assert np.allclose(elsewhere["C-C-T-T"][3].gradcam, t_stage.gradcam)


def test_each_view_alone_is_the_full_calls_and_computes_no_other(models, image) -> None:
    """``views`` picks the maps computed: each alone equals the full call's, the others are None, and every
    stage names the same predicted class."""
    full = compare_layouts(models, image, pixel=(9.0, 20.0))
    for what in ("gradcam", "erf", "attention"):
        alone = compare_layouts(models, image, pixel=(9.0, 20.0), views=[what])
        for layout in models:
            for a, b in zip(alone[layout], full[layout], strict=True):
                assert (a.prediction, a.prediction_name, a.query if what == "attention" else None) == (
                    b.prediction,
                    b.prediction_name,
                    b.query if what == "attention" else None,
                )
                for other in {"gradcam", "erf", "attention"} - {what}:
                    assert getattr(a, other) is None, (what, other)
                mine, theirs = getattr(a, what), getattr(b, what)
                assert (mine is None) == (theirs is None)
                if mine is not None:
                    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="views are gradcam, erf and attention, not rollout"):
        compare_layouts(models, image, views=["rollout"])


def test_threads_sharing_the_models_each_get_their_own_images_result(models, image) -> None:
    other = torch.flip(image, dims=(-1,))
    alone = {id(x): compare_layouts(models, x) for x in (image, other)}
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda x: (id(x), compare_layouts(models, x)), [image, other] * 2))
    for key, found in together:
        expected = alone[key]["C-C-T-T"] + alone[key]["ViT_REL"]
        for a, b in zip(expected, found["C-C-T-T"] + found["ViT_REL"], strict=True):
            assert np.allclose(a.gradcam, b.gradcam, atol=1e-5) and np.allclose(a.erf, b.erf, atol=1e-6)
            assert (a.attention is None) == (b.attention is None)
            assert a.attention is None or np.allclose(a.attention, b.attention, atol=1e-6)


def test_the_stages_figure_has_a_panel_per_layout_and_stage(models, image) -> None:
    views = compare_layouts(models, image)
    seen = {layout: np.zeros((28, 28)) for layout in views}
    attention = sum(s.kind == "T" for stages in views.values() for s in stages)
    assert attention == 2 + 4  # C-C-T-T's S3 and S4, ViT_REL's S1..S4
    for what, maps in (("gradcam", 10), ("erf", 10), ("attention", attention)):
        figure = layout_stages_figure(views, seen, what).to_plotly_json()
        heatmaps = [t for t in figure["data"] if t["type"] == "heatmap"]
        assert len(heatmaps) == maps, what
        # each subtitle: the layout, stage and kind (and what it predicts), then the panel's range
        titles = [
            a["text"].replace("<br>", " ").replace("\xa0", " ") for a in figure["layout"]["annotations"]
        ]
        assert any(t.startswith("C-C-T-T S3 (T) ") for t in titles)
        assert any(t.startswith("ViT_REL S4 (T) ") for t in titles)
        predicted = views["ViT_REL"][0].prediction
        named = f"ViT_REL S0 (patch), predicts {predicted}"  # no class names: the index
        assert any(t == named or t.startswith(f"{named} ") for t in titles)
        queries = [t for t in figure["data"] if t.get("name") == "query"]
        assert len(queries) == (attention if what == "attention" else 0)
    with pytest.raises(ValueError, match="what must be one of"):
        layout_stages_figure(views, seen, "saliency")


def test_cka_between_layouts_is_one_for_a_model_and_itself_and_matches_cka(models) -> None:
    images = torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    a, b = models["C-C-T-T"], models["ViT_REL"]
    found = layout_similarity({"a": a, "same": a, "vit": b}, images)
    assert found.layouts == ("a", "same", "vit") and found.images == 12
    assert found.stages[:5] == ("S0", "S1", "S2", "S3", "S4")
    m = found.matrix
    assert np.allclose(m, m.transpose(0, 2, 1)) and np.allclose(m[:, [0, 1, 2], [0, 1, 2]], 1.0)
    assert np.allclose(m[:, 0, 1], 1.0, atol=1e-4)  # a model and itself
    direct = np.diagonal(np.asarray(cka(a, images, other=b).matrix))
    assert np.allclose(m[:, 0, 2], direct, atol=1e-6) and (m[:, 0, 2] < 0.999).any()
    (heatmap,) = layout_similarity_figure(found).data
    assert list(heatmap["y"]) == ["a vs same", "a vs vit", "same vs vit"] and list(heatmap["x"]) == list(
        found.stages
    )
    assert np.allclose(heatmap["z"][1], m[:, 0, 2])
    with pytest.raises(ValueError, match="at least two layouts"):
        layout_similarity({"a": a}, images)


def study() -> LayoutStudy:
    runs = [
        {"layout": layout, "size": size, "parameters": 400_000 + i, "macs": 9_000_000, "train_loss": loss,
         "test_top1": top1, "steps": 600, "wall_s": 10.0, "model": "toy", "epochs": 1, "train_top1": 0.5,
         "train_loss_augmented": loss, "test_loss": loss, "command": None, "study_command": None}
        for i, (layout, base) in enumerate((("C-C-T-T", 0.3), ("ViT_REL", 0.9)))
        for size, loss, top1 in ((2000, base, 0.8 - base / 10), (60000, base + 0.1, 0.9 - base / 10))
    ]  # fmt: skip
    return LayoutStudy.from_json(
        {"settings": {"steps": 600, "batch_size": 100, "data": "fashion-mnist", "sizes": [2000, 60000]},
         "runs": runs, "wall_s": 40.0, "device": "cpu"}
    )  # fmt: skip


def test_the_study_figures_and_table_show_every_run() -> None:
    found = study()
    sizes = size_figure(found).to_plotly_json()["data"]
    assert [t["name"] for t in sizes] == ["C-C-T-T", "C-C-T-T", "ViT_REL", "ViT_REL"]
    assert list(sizes[0]["x"]) == [2000, 60000] and list(sizes[0]["y"]) == pytest.approx([77.0, 87.0])
    assert list(sizes[1]["y"]) == pytest.approx([0.3, 0.4])
    gap = gap_figure(found).to_plotly_json()["data"]
    assert list(gap[1]["x"]) == pytest.approx([0.9, 1.0]) and list(gap[1]["customdata"]) == ["2k", "60k"]
    assert list(gap[1]["marker"]["size"]) == [7, 12]  # more images, larger markers
    lines = table(found).splitlines()
    assert lines[0] == "| layout | parameters | MACs | 2k: loss / top-1 | 60k: loss / top-1 |"
    assert lines[2] == "| C-C-T-T | 400k | 9.0M | 0.300 / 77.00% | 0.400 / 87.00% |"
    assert "4 runs on fashion-mnist" in layout_sections(found)[0].text


def test_a_missing_study_says_what_to_give(tmp_path) -> None:
    with pytest.raises(ValueError, match="give a folder written by coatnet study-layouts"):
        load_layouts(tmp_path / "nowhere")
    (tmp_path / "layouts.json").write_text("[]")
    with pytest.raises(ValueError, match="not a layout study"):
        load_layouts(tmp_path)
