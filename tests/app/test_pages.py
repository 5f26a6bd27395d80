"""Every page and widget path of the app through Streamlit's AppTest, on the built-in demo checkpoints
(and toy checkpoints of other shapes): the page draws, with no exception and no error."""

from __future__ import annotations

import re

import pytest

from app import pages as app_pages
from app import widgets
from tests.support.apptest import (
    caption,
    clean,
    copied,
    figure_named,
    figures,
    figures_named,
    named_titles,
    title,
    titles,
)
from tests.support.layout_check import repeated_phrase

PAGES = tuple(page.path for page in app_pages.PAGES)


@pytest.fixture
def app(explorer):
    """A session of the test's own on demo-pre, as its first run left it."""
    return explorer


def test_a_copied_session_moves_on_alone(first_run):
    """What the AppTest tests start from: a copy of a session runs and changes without the original."""
    at = copied(first_run)
    at.selectbox(key="block").set_value("S4.0").run()
    assert title(figure_named(clean(at), "fused-attention")).startswith("S4.0:")
    assert first_run.selectbox(key="block").value == "S3.0"
    assert title(figure_named(first_run, "fused-attention")).startswith("S3.0:")
    assert first_run.session_state["block"] == "S3.0" and at.session_state["block"] == "S4.0"


def test_the_first_page_is_the_explorer_on_demo_pre(app):
    top5 = figure_named(app, "predictions")
    assert figures(app)[0] == top5 and title(top5) == "Top-5 predictions"
    clicked = "S3.0: effective weights, heads fused by mean, query (3, 3)"
    assert named_titles(app, "fused-attention") == [clicked]
    assert title(figure_named(app, "attention-heads")).startswith("S3.0 (pre-normalization)")
    assert title(figure_named(app, "rollout")).startswith("Attention rollout")
    assert "coatnet_pico, pre-normalization" in caption(app)
    clickable = figure_named(app, "fused-attention")
    cells = next(t for t in clickable["data"] if t.get("name") == "cells")
    # per cell: [row, col] (what a click reads), its weight, offset (dy, dx) and distance (for hovering)
    assert cells["customdata"]["shape"] == "49, 6"
    assert clickable["layout"]["clickmode"] == "event+select"


def test_the_query_key_moves_every_map(app):
    app.session_state[widgets.QUERY_ROW] = 1
    app.session_state[widgets.QUERY_COL] = 5
    clean(app.run())
    drawn = [title(figure_named(app, name)) for name in ("fused-attention", "attention-heads", "rollout")]
    assert sum("query (1, 5)" in t for t in drawn) == 3  # the clickable map, the heads, the rollout
    assert app.number_input(key=widgets.QUERY_ROW).value == 1


def test_the_row_and_column_inputs_set_the_query(app):
    app.number_input(key=widgets.QUERY_ROW).set_value(6)
    app.number_input(key=widgets.QUERY_COL).set_value(0).run()
    assert "query (6, 0)" in title(figure_named(clean(app), "fused-attention"))


@pytest.mark.parametrize("part", ["content", "bias", "bias_softmax", "effective"])
def test_each_part_of_the_attention(app, part):
    app.selectbox(key="part").set_value(part).run()
    names = {"content": "content only", "bias": "bias only, w(key - query)", "bias_softmax": "position alone"}
    assert names.get(part, "effective weights") in title(figure_named(clean(app), "fused-attention"))


@pytest.mark.parametrize("how, label", [("max", "heads fused by max"), ("2", "head 2"), ("mean", "by mean")])
def test_heads_on_the_map(app, how, label):
    app.selectbox(key="head").set_value(how).run()
    assert label in title(figure_named(clean(app), "fused-attention"))


def test_another_block_keeps_the_query_in_place(app):
    app.session_state[widgets.QUERY_ROW], app.session_state[widgets.QUERY_COL] = 2, 4
    clean(app.run())
    app.selectbox(key="block").set_value("S4.0").run()
    heads = title(figure_named(clean(app), "attention-heads"))
    assert heads.startswith("S4.0 (pre-normalization)") and "query (2, 4)" in heads


def test_rollout_averaged_over_queries(app):
    app.radio(key="rollout_from").set_value("averaged over queries").run()
    assert "averaged over queries" in title(figure_named(clean(app), "rollout"))


@pytest.mark.parametrize("cell", [[4, 2], {"0": 4, "1": 2}], ids=["list", "browser"])
def test_a_click_becomes_the_query(cell):
    """A chart's selection cannot be written from a test, so the callback reads a stand-in event (in the
    form a browser sends, too: plotly.js turns the [row, col] pair into a dict)."""

    def page(cell):
        import streamlit as st

        from app import widgets

        st.session_state["chart"] = {"selection": {"points": [{"x": 1}, {"customdata": cell}]}}
        widgets.take_click("chart")
        st.write(st.session_state[widgets.QUERY_ROW], st.session_state[widgets.QUERY_COL])

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(page, kwargs={"cell": cell}).run()
    assert at.markdown[0].value == "`4` `2`"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_demo_post(page, explorer):
    at = explorer
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.switch_page(page).run()
    clean(at)
    assert "post-normalization" in caption(at)
    assert figures(at) or page in ("views/model.py", "views/my_images.py")  # the latter: once given images


def test_stage_inspector_draws_each_stage(explorer):
    at = explorer
    at.switch_page("views/stages.py").run()
    stages = figure_named(clean(at), "stages")
    assert title(stages).startswith("What each stage responds to")
    assert title(figure_named(at, "receptive-field")).startswith("Receptive fields")
    folds = ("stages_channels", "stages_heads", "stages_frequency")
    assert not figures_named(at, "attention-distance") and not figures_named(at, "frequency")  # folded away
    for fold in folds:  # as a click on each opens it
        at.session_state[fold] = True
    at.run()
    distance = title(figure_named(clean(at), "attention-distance"))
    assert distance == "Mean attention distance per head (pre-normalization)"
    assert title(figure_named(at, "frequency")).startswith("Frequency")
    assert sum(trace["type"] == "heatmap" for trace in stages["data"]) == 10  # 5 stages, 5 Grad-CAMs
    text = " ".join(m.value for m in at.markdown)
    assert "**S3** · Transformer" in text and "7x7 grid, 128 channels" in text


def test_the_stage_inspector_draws_the_relevance_ledger_when_its_fold_opens(explorer):
    """Closed, the LRP fold computes nothing; opened, the ledger of the Grad-CAM class under AttnLRP, and
    under CP-LRP when chosen: a row per part, the attention rows' content at zero under CP-LRP."""
    at = explorer
    at.switch_page("views/stages.py").run()
    assert not figures_named(clean(at), "lrp-ledger")
    at.session_state["stages_ledger"] = True
    at.run()
    (ledger,) = figures_named(clean(at), "lrp-ledger")
    assert "AttnLRP" in title(ledger)
    branch, skip, content, position = ledger["data"]
    assert branch["y"][0] == "S0 (stem)" and branch["y"][-1] == "head (head)"
    assert content["y"] == position["y"] == ["S3.0 (attention)", "S3.1 (attention)", "S4.0 (attention)"]
    assert skip["y"] == branch["y"] and any(content["x"]) and any(position["x"])
    at.radio(key="lrp_rule").set_value("cp").run()
    (ledger,) = figures_named(clean(at), "lrp-ledger")
    assert "CP-LRP" in title(ledger) and not any(ledger["data"][2]["x"])


def test_the_stage_inspectors_folds_compute_nothing_until_opened(explorer):
    """Closed, a fold sends no figure and no download; opened (a click reruns the page), the downloads fold
    offers each of the page's five results as JSON and NPZ, each under the line saying what it holds."""
    at = explorer
    at.switch_page("views/stages.py").run()
    said = [c.value for c in clean(at).caption]
    assert not any(line.startswith("Per head: mean attention distance") for line in said)
    at.session_state["stages_downloads"] = True
    at.run()
    said = [c.value for c in clean(at).caption]
    lines = ("Each stage's output", "Grad-CAM of class", "Theoretical and effective receptive field",
             "Per head: mean attention distance", "Frequency profile of every block's output")  # fmt: skip
    for line in lines:
        assert sum(c.startswith(line) for c in said) == 1, (line, said)
    assert not figures_named(at, "frequency")  # its own fold is still closed


def test_pre_vs_post_both_ways(explorer):
    at = explorer
    at.switch_page("views/compare.py").run()
    assert not figures_named(at, "comparison-maps") and not figures_named(at, "bias-kernels")  # folded
    at.session_state["compare_heads"] = at.session_state["compare_kernels"] = True  # opened
    at.run()
    first, second = named_titles(clean(at), "comparison-maps")
    assert "S3.0, demo-pre: where query" in first and "S3.0, demo-post: where query" in second
    assert "demo-post - demo-pre" in title(figure_named(at, "comparison-difference"))
    assert title(figure_named(at, "comparison-divergence")).startswith("Jensen-Shannon divergence per head")
    panels = [a["text"] for a in figure_named(at, "comparison-pair")["layout"]["annotations"]]
    assert panels == ["demo-pre", "demo-post"]  # side by side, each named first
    assert title(figure_named(at, "comparison-difference-map")).startswith("Difference, demo-post - demo-pre")
    at.radio(key="compare_how").set_value("the same weights, other normalization").run()
    first, second = named_titles(clean(at), "comparison-maps")
    assert "S3.0, pre: where query" in first and "S3.0, post: where" in second
    assert "untrained combination" in " ".join(c.value for c in at.main.caption)
    assert any("relative-bias kernels (post)" in t for t in named_titles(at, "bias-kernels"))


def test_pre_vs_post_starts_from_the_sidebars_model_and_says_which_two_it_compares(explorer):
    at = explorer
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.switch_page("views/compare.py").run()
    said = " ".join(c.value for c in clean(at).main.caption)
    assert "Comparing **demo-post, post-normalization** (the sidebar's model) with **demo-pre, pre-" in said
    difference = title(figure_named(at, "comparison-difference"))
    assert "demo-pre - demo-post" in difference  # the second minus the first
    at.switch_page("views/explorer.py").run()
    layout = next(n for n in at.selectbox(key="demo_name").options if n.startswith("layout-"))
    at.selectbox(key="demo_name").set_value(layout).run()
    at.switch_page("views/compare.py").run()
    clean(at)
    assert at.radio(key="compare_how").options[0] == "the same weights, other normalization"
    said = " ".join(c.value for c in at.main.caption)
    assert f"Comparing **{layout}," in said and "demo-pre" not in said


def test_switching_the_normalization_is_labelled(explorer):
    at = explorer
    at.radio(key="attention").set_value("post-normalization").run()
    clean(at)
    assert "post-normalization (weights trained with pre-normalization)" in caption(at)
    assert title(figure_named(at, "attention-heads")).startswith("S3.0 (post-normalization)")


def test_the_model_page_shows_costs_card_and_curves(explorer):
    at = explorer
    at.switch_page("views/model.py").run()
    clean(at)
    assert [m.value for m in at.metric][:1] == ["1.21 M"]
    assert title(figure_named(at, "training-curves")) == "Training curves"
    assert any("coatnet train" in m.value for m in at.markdown)


def test_the_query_survives_a_visit_to_another_page(explorer):
    at = explorer
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 5, 1
    at.run()
    at.switch_page("views/kernels.py").run()
    at.switch_page("views/explorer.py").run()
    assert "query (5, 1)" in title(figure_named(clean(at), "fused-attention"))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_with_its_title_and_what_it_shows(page, explorer):
    at = explorer
    at.switch_page(page).run()
    clean(at)
    shown = app_pages.page_titled(at.title[0].value)
    assert page == shown.path
    assert at.main.caption[0].value == shown.intro and shown.intro.count(". ") == 0  # one sentence
    drawn = [
        *titles(at),
        *(e.value for kind in ("markdown", "subheader", "header", "caption") for e in at.get(kind)),
    ]
    drawn += [e.label for e in at.get("expander")]
    assert any(shown.landmark in text for text in drawn), drawn
    # no title says a thing twice ("Attention rollout (attention rollout ...")
    assert [t for t in titles(at) if repeated_phrase(t)] == [], [repeated_phrase(t) for t in titles(at)]


def test_kernels_pick_a_block_and_reach_every_depthwise_channel(explorer):
    import coatnet
    from analysis import relative_bias_kernels

    kernels = relative_bias_kernels(coatnet.load_checkpoint("demo-pre"))
    at = explorer
    at.switch_page("views/kernels.py").run()
    clean(at)
    assert at.selectbox(key="kernel_block").options == [b.name for b in kernels.bias]
    last_bias = kernels.bias[-1].name
    at.selectbox(key="kernel_block").set_value(last_bias).run()
    assert title(figure_named(at, "bias-kernels")).startswith(f"{last_bias}: relative-bias kernels")
    block = kernels.depthwise[-1]
    at.selectbox(key="depthwise_block").set_value(block.name).run()
    count = len(block.kernels)
    pages = at.select_slider(key="depthwise_page")
    assert pages.options[-1].endswith(str(count - 1)) and len(pages.options) == -(-count // 16)
    pages.set_value(pages.options[-1]).run()
    clean(at)
    shown = figure_named(at, "depthwise-kernels")
    assert title(shown).startswith(f"{block.name}: depthwise")
    names = [a["text"] for a in shown["layout"]["annotations"] if a["text"].startswith("ch ")]
    assert names[-1] == f"ch {count - 1}" and f"of {count} channels" in shown["layout"]["title"]["text"]
    at.radio(key="depthwise_order").set_value("strongest first").run()
    at.select_slider(key="depthwise_page").set_value(at.select_slider(key="depthwise_page").options[0]).run()
    shown = figure_named(at, "depthwise-kernels")
    assert title(shown).startswith(f"{block.name}: depthwise")
    names = [a["text"] for a in shown["layout"]["annotations"] if a["text"].startswith("ch ")]
    assert names[0] == f"ch {int(block.mean_abs.argmax())}"


def test_stage_inspector_explains_any_class_with_grad_cam(explorer):
    def cam_figure(at) -> dict:
        stages = figure_named(at, "stages")
        assert any("Grad-CAM S4" in a["text"] for a in stages["layout"].get("annotations", []))
        return stages

    at = explorer
    at.switch_page("views/stages.py").run()
    clean(at)
    picker = at.selectbox(key="gradcam_class")
    assert len(picker.options) == 10 and "%" in picker.options[0]  # every class, most probable first
    assert picker.index == 0  # the predicted class by default
    before = cam_figure(at)["data"]
    other = (picker.value + 1) % 10
    picker.set_value(other).run()
    clean(at)
    assert at.selectbox(key="gradcam_class").value == other and cam_figure(at)["data"] != before
    gallery = at.selectbox(key="gallery_fashion-mnist")
    gallery.set_value(gallery.options[7]).run()  # another image: back to its predicted class
    clean(at)
    assert at.selectbox(key="gradcam_class").index == 0


def test_a_query_clicked_on_a_fine_grid_comes_back_after_a_coarse_one(tmp_path, explorer):
    """S3.0 on 14x14, S4.0 on 7x7 (a toy at 56 px): (10, 12) -> (5, 6) -> (10, 12), not (11, 13)."""
    import torch

    import coatnet

    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=56, strides=(1, 1, 2, 2, 2)).eval()
    path = coatnet.save_checkpoint(model, tmp_path / "toy56.safetensors")
    at = explorer
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    clean(at)
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 10, 12  # as a click writes
    at.run()
    assert "query (10, 12)" in title(figure_named(clean(at), "fused-attention"))
    at.selectbox(key="block").set_value("S4.0").run()
    clicked = title(figure_named(clean(at), "fused-attention"))
    assert clicked.startswith("S4.0") and "query (5, 6)" in clicked
    at.selectbox(key="block").set_value("S3.0").run()
    clicked = title(figure_named(clean(at), "fused-attention"))
    assert clicked.startswith("S3.0") and "query (10, 12)" in clicked


def test_pre_vs_post_compares_any_two_models_and_refuses_two_that_do_not_fit(tmp_path, explorer):
    import torch

    import coatnet

    at = explorer
    at.session_state["compare_heads"] = True  # every head of each model, opened
    at.switch_page("views/compare.py").run()
    at.radio(key="compare_how").set_value("another model").run()
    assert not at.error and any("Name the model" in i.value for i in at.info)
    at.text_input(key="compare_other").input("demo-post").run()
    first, second = named_titles(clean(at), "comparison-maps")
    # each statistic names the normalization its model runs
    assert "S3.0, demo-pre (pre): where" in first and "S3.0, demo-post (post): where" in second
    assert title(figure_named(at, "comparison-divergence")).startswith(
        "Jensen-Shannon divergence per head, demo-pre (pre) vs demo-post (post)"
    )
    torch.manual_seed(0)
    other = coatnet.create_model("coatnet_toy", img_size=32).eval()  # 3 channels, other grids
    path = coatnet.save_checkpoint(other, tmp_path / "toy.safetensors")
    at.text_input(key="compare_other").input(str(path)).run()  # blocks named alike, on other grids
    assert any("no attention block in common" in c.value for c in clean(at).caption)
    first, second = named_titles(at, "fused-attention")
    assert first.startswith("demo-pre: S3.0") and second.startswith("toy: S3.0"), (first, second)
    at.text_input(key="compare_other").input("layout-c-c-c-c").run()  # no attention at all: refused
    assert not at.exception and len(at.error) == 1 and "\n" not in at.error[0].value
    assert "share no attention block" in at.error[0].value


def test_a_click_on_the_compare_map_moves_the_query(explorer):
    at = explorer
    at.switch_page("views/compare.py").run()
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 1, 2  # as a click writes
    at.session_state["compare_heads"] = True  # every head of each model, opened
    at.run()
    assert any("where query (1, 2) attends" in t for t in named_titles(clean(at), "comparison-maps"))


def test_stage_inspector_computes_pixel_attributions_when_asked_and_cka_over_the_gallery(explorer):
    at = explorer
    at.switch_page("views/stages.py").run()
    clean(at)
    assert title(figure_named(at, "cka")).startswith("Linear CKA (40 images)")
    assert not figures_named(at, "attribution")  # not before it is asked
    at.button(key="pixel_go").click().run()
    clean(at)
    target = at.selectbox(key="gradcam_class").value
    drawn = named_titles(at, "attribution")
    assert len(drawn) == 1 and drawn[0].startswith("Integrated Gradients (SmoothGrad): "), titles(at)
    at.run()  # kept on screen on later runs, without asking again
    assert title(figure_named(clean(at), "attribution")).startswith("Integrated Gradients")
    at.radio(key="pixel_method").set_value("occlusion").run()
    assert not any(t.startswith("Occlusion") for t in named_titles(clean(at), "attribution"))
    at.button(key="pixel_go").click().run()
    assert title(figure_named(clean(at), "attribution")).startswith("Occlusion")
    assert at.selectbox(key="gradcam_class").value == target


def test_cka_says_why_it_is_absent_for_a_small_gallery(tmp_path, explorer):
    import torch

    import coatnet

    torch.manual_seed(0)
    path = coatnet.save_checkpoint(
        coatnet.create_model("coatnet_toy", img_size=32).eval(), tmp_path / "t.safetensors"
    )
    at = explorer
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    at.switch_page("views/stages.py").run()
    clean(at)
    assert any("CKA needs at least 16 images" in i.value for i in at.info)


def test_the_layouts_page_shows_every_layout_stage_by_stage_their_cka_and_the_study(explorer):
    at = explorer
    at.switch_page("views/layouts.py").run()
    stages = figure_named(clean(at), "layout-stages")
    assert figures(at)[0] == stages  # the first figure of the page
    assert title(stages).startswith(
        "Layouts: Grad-CAM of each layout's predicted class; each panel on its own"
    )
    panels = [a["text"].split("<br>")[0] for a in stages["layout"]["annotations"] if " S" in a["text"]]
    assert len(panels) == 25 and "C-C-T-T S3 (T)" in panels and "C-C-C-C S4 (C)" in panels
    ranges = [a["text"].replace("\xa0", " ").replace("<br>", " ") for a in stages["layout"]["annotations"]]
    assert all(re.search(r" -?[0-9.e-]+ to -?[0-9.e-]+$", r) for r in ranges if " S" in r), ranges  # its own
    assert [r for r in ranges if r.startswith("ViT_REL S0 (patch), predicts ")]  # a class name
    assert sum(t["type"] == "heatmap" for t in stages["data"]) == 25
    assert not figures_named(at, "layout-similarity")  # the gallery through every layout: when asked
    at.button(key="layout_cka_go").click().run()
    similarity = title(figure_named(clean(at), "layout-similarity"))
    assert similarity.startswith("Linear CKA between the same stage of two layouts (40 images)")
    at.radio(key="layout_what").set_value("erf").run()  # asked once, kept for the session
    assert figures_named(clean(at), "layout-similarity")
    at.radio(key="layout_what").set_value("gradcam").run()
    assert not figures_named(at, "layout-sizes") and not figures_named(at, "layout-probes")  # folded
    at.session_state["layouts_study"] = at.session_state["layouts_probes"] = True  # opened
    at.run()
    assert title(figure_named(at, "layout-sizes")).startswith("Layouts: 600 optimizer steps")
    assert title(figure_named(at, "layout-gap")).startswith("Training loss against test accuracy")
    probes = figure_named(at, "layout-probes")
    assert title(probes).startswith("Where each layout")
    ranked = ["C-C-C-C", "C-C-C-T", "C-C-T-T", "C-T-T-T", "ViT_REL"]  # by the largest size's test top-1
    assert [t["name"].split(" ")[0] for t in probes["data"]] == ranked
    # the query acts on the attention view only: its inputs are not shown on the others
    assert not [n for n in at.number_input if n.key in (widgets.QUERY_ROW, widgets.QUERY_COL)]
    at.radio(key="layout_what").set_value("erf").run()
    assert not [n for n in clean(at).number_input if n.key in (widgets.QUERY_ROW, widgets.QUERY_COL)]
    at.radio(key="layout_what").set_value("attention").run()
    attention = figure_named(clean(at), "layout-stages")
    assert [n.key for n in at.number_input] == [widgets.QUERY_ROW, widgets.QUERY_COL]
    # T stages only: C-C-C-T 1, C-C-T-T 2, C-T-T-T 3, ViT_REL 4
    assert sum(t["type"] == "heatmap" for t in attention["data"]) == 10
    before = [t["z"] for t in attention["data"] if t["type"] == "heatmap"]
    at.number_input(key=widgets.QUERY_ROW).set_value(0).run()
    moved = [t["z"] for t in figure_named(clean(at), "layout-stages")["data"] if t["type"] == "heatmap"]
    assert moved != before  # the query point moved every attention map
    point = at.session_state[widgets.QUERY_POINT]
    at.switch_page("views/explorer.py").run()
    assert at.session_state[widgets.QUERY_POINT] == point  # one query point: the explorer shows the same spot
    at.switch_page("views/layouts.py").run()
    assert at.radio(key="layout_what").value == "attention"
    assert at.number_input(key=widgets.QUERY_ROW).value == 0


def test_pre_vs_post_draws_both_models_maps_side_by_side_at_one_size(explorer):
    at = explorer
    at.switch_page("views/compare.py").run()
    pair = figure_named(clean(at), "comparison-pair")
    assert "heads averaged" in title(pair)
    layout = pair["layout"]
    widths = [layout[axis]["domain"][1] - layout[axis]["domain"][0] for axis in ("xaxis", "xaxis2")]
    assert (
        widths[0] == pytest.approx(widths[1]) and layout["xaxis2"]["domain"][0] > layout["xaxis"]["domain"][1]
    )
    panel = widths[0] * (layout["width"] - layout["margin"]["l"] - layout["margin"]["r"])
    difference = figure_named(at, "comparison-difference-map")["layout"]
    across = difference["width"] - difference["margin"]["l"] - difference["margin"]["r"]
    assert panel >= 160 and across == pytest.approx(panel, abs=1)  # the difference at the maps' size
