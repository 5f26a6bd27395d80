"""Every page and widget path of the app through Streamlit's AppTest, on the built-in demo checkpoints
(and toy checkpoints of other shapes): the page draws, with no exception and no error."""

from __future__ import annotations

import re

import pytest

from app import pages as app_pages
from app import widgets
from tests.support.apptest import caption, clean, figures, fresh, titles
from tests.support.layout_check import repeated_phrase

PAGES = tuple(page.path for page in app_pages.PAGES)


@pytest.fixture(scope="module")
def app():
    """One session on demo-pre, run once; tests move it on (AppTest keeps the session between runs)."""
    return clean(fresh().run())


def test_the_first_page_is_the_explorer_on_demo_pre(app):
    drawn = titles(app)
    assert drawn[0] == "Top-5 predictions"
    assert "S3.0: effective weights, heads fused by mean, query (3, 3)" in drawn
    assert any(t.startswith("S3.0 (pre-normalization)") for t in drawn)
    assert any(t.startswith("Attention rollout") for t in drawn)
    assert "coatnet_pico, pre-normalization" in caption(app)
    clickable = next(f for f in figures(app) if "heads fused" in f["layout"]["title"]["text"])
    cells = next(t for t in clickable["data"] if t.get("name") == "cells")
    # per cell: [row, col] (what a click reads), its weight, offset (dy, dx) and distance (for hovering)
    assert cells["customdata"]["shape"] == "49, 6"
    assert clickable["layout"]["clickmode"] == "event+select"


def test_the_query_key_moves_every_map(app):
    app.session_state[widgets.QUERY_ROW] = 1
    app.session_state[widgets.QUERY_COL] = 5
    drawn = titles(clean(app.run()))
    assert sum("query (1, 5)" in t for t in drawn) == 3  # the clickable map, the heads, the rollout
    assert app.number_input(key=widgets.QUERY_ROW).value == 1


def test_the_row_and_column_inputs_set_the_query(app):
    app.number_input(key=widgets.QUERY_ROW).set_value(6)
    app.number_input(key=widgets.QUERY_COL).set_value(0).run()
    assert any("query (6, 0)" in t for t in titles(clean(app)))


@pytest.mark.parametrize("part", ["content", "bias", "bias_softmax", "effective"])
def test_each_part_of_the_attention(app, part):
    app.radio(key="part").set_value(part).run()
    names = {"content": "content only", "bias": "bias only, w(key - query)", "bias_softmax": "position alone"}
    assert any(names.get(part, "effective weights") in t for t in titles(clean(app)))


@pytest.mark.parametrize("how, label", [("max", "heads fused by max"), ("2", "head 2"), ("mean", "by mean")])
def test_heads_on_the_map(app, how, label):
    app.selectbox(key="head").set_value(how).run()
    assert any(label in t for t in titles(clean(app)))


def test_another_block_keeps_the_query_in_place(app):
    app.session_state[widgets.QUERY_ROW], app.session_state[widgets.QUERY_COL] = 2, 4
    clean(app.run())
    app.selectbox(key="block").set_value("S4.0").run()
    assert any(t.startswith("S4.0 (pre-normalization)") and "query (2, 4)" in t for t in titles(clean(app)))
    app.selectbox(key="block").set_value("S3.0").run()


def test_rollout_averaged_over_queries(app):
    app.radio(key="rollout_from").set_value("averaged over queries").run()
    assert any("averaged over queries" in t for t in titles(clean(app)))
    app.radio(key="rollout_from").set_value("from this query").run()


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
def test_every_page_on_demo_post(page):
    at = fresh()
    at.run()
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.switch_page(page).run()
    clean(at)
    assert "post-normalization" in caption(at)
    assert figures(at) or page == "views/model.py"


def test_stage_inspector_draws_each_stage():
    at = fresh()
    at.run()
    at.switch_page("views/stages.py").run()
    drawn = titles(clean(at))
    assert [t for t in drawn if t.startswith("What each stage responds to")]
    assert [t for t in drawn if t.startswith("Receptive fields")]
    assert "Mean attention distance per head (pre-normalization)" in drawn
    assert any(t.startswith("Frequency") for t in drawn)
    stages = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("What each stage"))
    assert sum(trace["type"] == "heatmap" for trace in stages["data"]) == 10  # 5 stages, 5 Grad-CAMs
    text = " ".join(m.value for m in at.markdown)
    assert "**S3** · Transformer" in text and "7x7 grid, 128 channels" in text


def test_pre_vs_post_both_ways():
    at = fresh()
    at.run()
    at.switch_page("views/compare.py").run()
    drawn = titles(clean(at))
    assert any("S3.0, demo-pre: where query" in t for t in drawn)
    assert any("S3.0, demo-post: where query" in t for t in drawn)
    assert any("demo-post - demo-pre" in t for t in drawn)
    assert any(t.startswith("Jensen-Shannon divergence per head") for t in drawn)
    at.radio(key="compare_how").set_value("the same weights, other normalization").run()
    drawn = titles(clean(at))
    assert any("S3.0, pre: where query" in t for t in drawn) and any("S3.0, post: where" in t for t in drawn)
    assert "untrained combination" in " ".join(c.value for c in at.main.caption)
    assert any("relative-bias kernels (post)" in t for t in drawn)


def test_pre_vs_post_starts_from_the_sidebars_model_and_says_which_two_it_compares():
    at = fresh()
    at.run()
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.switch_page("views/compare.py").run()
    said = " ".join(c.value for c in clean(at).main.caption)
    assert "Comparing **demo-post, post-normalization** (the sidebar's model) with **demo-pre, pre-" in said
    assert any("demo-pre - demo-post" in t for t in titles(at))  # the second minus the first
    at.switch_page("views/explorer.py").run()
    layout = next(n for n in at.selectbox(key="demo_name").options if n.startswith("layout-"))
    at.selectbox(key="demo_name").set_value(layout).run()
    at.switch_page("views/compare.py").run()
    clean(at)
    assert at.radio(key="compare_how").options[0] == "the same weights, other normalization"
    said = " ".join(c.value for c in at.main.caption)
    assert f"Comparing **{layout}," in said and "demo-pre" not in said


def test_switching_the_normalization_is_labelled():
    at = fresh()
    at.run()
    at.radio(key="attention").set_value("post-normalization").run()
    clean(at)
    assert "post-normalization (weights trained with pre-normalization)" in caption(at)
    assert any(t.startswith("S3.0 (post-normalization)") for t in titles(at))


def test_the_model_page_shows_costs_card_and_curves():
    at = fresh()
    at.run()
    at.switch_page("views/model.py").run()
    clean(at)
    assert [m.value for m in at.metric][:1] == ["1.21 M"]
    assert "Training curves" in titles(at)
    assert any("coatnet train" in m.value for m in at.markdown)


def test_the_query_survives_a_visit_to_another_page():
    at = fresh()
    at.run()
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 5, 1
    at.run()
    at.switch_page("views/kernels.py").run()
    at.switch_page("views/explorer.py").run()
    assert any("query (5, 1)" in t for t in titles(clean(at)))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_with_its_title_and_what_it_shows(page):
    at = fresh()
    at.run()
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


def test_kernels_pick_a_block_and_reach_every_depthwise_channel():
    import coatnet
    from analysis import relative_bias_kernels

    kernels = relative_bias_kernels(coatnet.load_checkpoint("demo-pre"))
    at = fresh()
    at.run()
    at.switch_page("views/kernels.py").run()
    clean(at)
    assert at.selectbox(key="kernel_block").options == [b.name for b in kernels.bias]
    last_bias = kernels.bias[-1].name
    at.selectbox(key="kernel_block").set_value(last_bias).run()
    assert any(t.startswith(f"{last_bias}: relative-bias kernels") for t in titles(at))
    block = kernels.depthwise[-1]
    at.selectbox(key="depthwise_block").set_value(block.name).run()
    count = len(block.kernels)
    pages = at.select_slider(key="depthwise_page")
    assert pages.options[-1].endswith(str(count - 1)) and len(pages.options) == -(-count // 16)
    pages.set_value(pages.options[-1]).run()
    clean(at)
    shown = next(
        f for f in figures(at) if f["layout"]["title"]["text"].startswith(f"{block.name}: depthwise")
    )
    names = [a["text"] for a in shown["layout"]["annotations"] if a["text"].startswith("ch ")]
    assert names[-1] == f"ch {count - 1}" and f"of {count} channels" in shown["layout"]["title"]["text"]
    at.radio(key="depthwise_order").set_value("strongest first").run()
    at.select_slider(key="depthwise_page").set_value(at.select_slider(key="depthwise_page").options[0]).run()
    shown = next(
        f for f in figures(at) if f["layout"]["title"]["text"].startswith(f"{block.name}: depthwise")
    )
    names = [a["text"] for a in shown["layout"]["annotations"] if a["text"].startswith("ch ")]
    assert names[0] == f"ch {int(block.mean_abs.argmax())}"


def test_stage_inspector_explains_any_class_with_grad_cam():
    def cam_figure(at) -> dict:
        return next(
            f
            for f in figures(at)
            if any("Grad-CAM S4" in a["text"] for a in f["layout"].get("annotations", []))
        )

    at = fresh()
    at.run()
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


def test_a_query_clicked_on_a_fine_grid_comes_back_after_a_coarse_one(tmp_path):
    """S3.0 on 14x14, S4.0 on 7x7 (a toy at 56 px): (10, 12) -> (5, 6) -> (10, 12), not (11, 13)."""
    import torch

    import coatnet

    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=56, strides=(1, 1, 2, 2, 2)).eval()
    path = coatnet.save_checkpoint(model, tmp_path / "toy56.safetensors")
    at = fresh()
    at.run()
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    clean(at)
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 10, 12  # as a click writes
    at.run()
    assert any("query (10, 12)" in t for t in titles(clean(at)))
    at.selectbox(key="block").set_value("S4.0").run()
    assert any(t.startswith("S4.0") and "query (5, 6)" in t for t in titles(clean(at)))
    at.selectbox(key="block").set_value("S3.0").run()
    assert any(t.startswith("S3.0") and "query (10, 12)" in t for t in titles(clean(at)))


def test_pre_vs_post_compares_any_two_models_and_refuses_two_that_do_not_fit(tmp_path):
    import torch

    import coatnet

    at = fresh()
    at.run()
    at.switch_page("views/compare.py").run()
    at.radio(key="compare_how").set_value("another model").run()
    assert not at.error and any("Name the model" in i.value for i in at.info)
    at.text_input(key="compare_other").input("demo-post").run()
    drawn = titles(clean(at))
    # each statistic names the normalization its model runs
    assert any("S3.0, demo-pre (pre): where" in t for t in drawn)
    assert any("S3.0, demo-post (post): where" in t for t in drawn)
    assert any(
        t.startswith("Jensen-Shannon divergence per head, demo-pre (pre) vs demo-post (post)") for t in drawn
    )
    torch.manual_seed(0)
    other = coatnet.create_model("coatnet_toy", img_size=32).eval()  # 3 channels, other grids
    path = coatnet.save_checkpoint(other, tmp_path / "toy.safetensors")
    at.text_input(key="compare_other").input(str(path)).run()
    assert not at.exception and len(at.error) == 1 and "\n" not in at.error[0].value


def test_a_click_on_the_compare_map_moves_the_query():
    at = fresh()
    at.run()
    at.switch_page("views/compare.py").run()
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 1, 2  # as a click writes
    at.run()
    assert any("where query (1, 2) attends" in t for t in titles(clean(at)))


def test_stage_inspector_computes_pixel_attributions_when_asked_and_cka_over_the_gallery():
    at = fresh()
    at.run()
    at.switch_page("views/stages.py").run()
    clean(at)
    assert any(t.startswith("Linear CKA (40 images)") for t in titles(at))
    assert not any(t.startswith("integrated_gradients") for t in titles(at))  # not before it is asked
    at.button(key="pixel_go").click().run()
    clean(at)
    target = at.selectbox(key="gradcam_class").value
    drawn = [t for t in titles(at) if t.startswith("integrated_gradients")]
    assert len(drawn) == 1, titles(at)
    at.run()  # kept on screen on later runs, without asking again
    assert any(t.startswith("integrated_gradients") for t in titles(clean(at)))
    at.radio(key="pixel_method").set_value("occlusion").run()
    assert not any(t.startswith("occlusion") for t in titles(clean(at)))
    at.button(key="pixel_go").click().run()
    assert any(t.startswith("occlusion") for t in titles(clean(at)))
    assert at.selectbox(key="gradcam_class").value == target


def test_cka_says_why_it_is_absent_for_a_small_gallery(tmp_path):
    import torch

    import coatnet

    torch.manual_seed(0)
    path = coatnet.save_checkpoint(
        coatnet.create_model("coatnet_toy", img_size=32).eval(), tmp_path / "t.safetensors"
    )
    at = fresh()
    at.run()
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    at.text_input(key="model_path").input(str(path)).run()
    at.switch_page("views/stages.py").run()
    clean(at)
    assert any("CKA needs at least 16 images" in i.value for i in at.info)


def test_the_layouts_page_shows_every_layout_stage_by_stage_their_cka_and_the_study():
    at = fresh()
    at.run()
    at.switch_page("views/layouts.py").run()
    drawn = titles(clean(at))
    assert drawn[0].startswith("Layouts: Grad-CAM of each layout's predicted class; each panel on its own")
    stages = figures(at)[0]
    panels = [a["text"].split("<br>")[0] for a in stages["layout"]["annotations"] if " S" in a["text"]]
    assert len(panels) == 25 and "C-C-T-T S3 (T)" in panels and "C-C-C-C S4 (C)" in panels
    ranges = [a["text"].replace("\xa0", " ").replace("<br>", " ") for a in stages["layout"]["annotations"]]
    assert all(re.search(r" -?[0-9.e-]+ to -?[0-9.e-]+$", r) for r in ranges if " S" in r), ranges  # its own
    assert [r for r in ranges if r.startswith("ViT_REL S0 (patch), predicts ")]  # a class name
    assert sum(t["type"] == "heatmap" for t in stages["data"]) == 25
    assert any(t.startswith("Linear CKA between the same stage of two layouts (40 images)") for t in drawn)
    assert any(t.startswith("Layouts: 600 optimizer steps") for t in drawn)
    assert any(t.startswith("Training loss against test accuracy") for t in drawn)
    probes = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Where each layout"))
    ranked = ["C-C-C-C", "C-C-C-T", "C-C-T-T", "C-T-T-T", "ViT_REL"]  # by the largest size's test top-1
    assert [t["name"].split(" ")[0] for t in probes["data"]] == ranked
    # the query acts on the attention view only: its inputs are not shown on the others
    assert not [n for n in at.number_input if n.key in (widgets.QUERY_ROW, widgets.QUERY_COL)]
    at.radio(key="layout_what").set_value("erf").run()
    assert not [n for n in clean(at).number_input if n.key in (widgets.QUERY_ROW, widgets.QUERY_COL)]
    at.radio(key="layout_what").set_value("attention").run()
    attention = figures(clean(at))[0]
    assert [n.key for n in at.number_input] == [widgets.QUERY_ROW, widgets.QUERY_COL]
    # T stages only: C-C-C-T 1, C-C-T-T 2, C-T-T-T 3, ViT_REL 4
    assert sum(t["type"] == "heatmap" for t in attention["data"]) == 10
    before = [t["z"] for t in attention["data"] if t["type"] == "heatmap"]
    at.number_input(key=widgets.QUERY_ROW).set_value(0).run()
    moved = [t["z"] for t in figures(clean(at))[0]["data"] if t["type"] == "heatmap"]
    assert moved != before  # the query point moved every attention map
    point = at.session_state[widgets.QUERY_POINT]
    at.switch_page("views/explorer.py").run()
    assert at.session_state[widgets.QUERY_POINT] == point  # one query point: the explorer shows the same spot
    at.switch_page("views/layouts.py").run()
    assert at.radio(key="layout_what").value == "attention"
    assert at.number_input(key=widgets.QUERY_ROW).value == 0


def test_pre_vs_post_draws_both_models_maps_at_the_same_large_size():
    at = fresh()
    at.run()
    at.switch_page("views/compare.py").run()
    large = [f for f in figures(clean(at)) if "heads fused by mean" in f["layout"]["title"]["text"]]
    assert [f["layout"]["title"]["text"].split(":")[0] for f in large] == ["demo-pre", "demo-post"]
    assert large[0]["layout"]["width"] == large[1]["layout"]["width"] >= 400
    assert large[0]["layout"]["height"] == large[1]["layout"]["height"]
