"""The app on the built-in MaxViT, demo-maxvit (windowed attention), offline: every page draws; the
explorer shows block and grid attention with the query's window or grid group; the Interventions page
knocks out one partition's heads; Pre vs post puts demo-pre beside demo-maxvit, and beside a MaxViT
checkpoint given by path."""

from __future__ import annotations

import pytest

from app import pages as app_pages
from tests.support.apptest import caption, clean, copied, figure_named, figures, named_titles, title


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    import torch

    import coatnet

    torch.manual_seed(0)
    model = coatnet.create_model("maxvit_pico", in_chans=1).eval()
    path = tmp_path_factory.mktemp("maxvit") / "maxvit_pico.safetensors"
    return str(coatnet.save_checkpoint(model, path, provenance={"dataset": "fashion-mnist"}))


@pytest.fixture(scope="module")
def on_maxvit(first_run):
    """The explorer on demo-maxvit, built once: read-only."""
    at = copied(first_run)
    at.selectbox(key="demo_name").set_value("demo-maxvit").run()
    return clean(at)


@pytest.fixture
def app(on_maxvit):
    """A session of the test's own on demo-maxvit."""
    return copied(on_maxvit)


def test_the_explorer_shows_block_and_grid_attention_in_the_query_s_window(app):
    app.switch_page("views/explorer.py").run()
    assert app.selectbox(key="block").options[:2] == ["S1.0.block", "S1.0.grid"]
    assert "block attention within its 7x7 window" in title(figure_named(clean(app), "fused-attention"))
    app.selectbox(key="block").set_value("S1.0.grid").run()
    clicked = title(figure_named(clean(app), "fused-attention"))
    assert clicked.startswith("S1.0.grid") and "7x7 grid group, dilated" in clicked
    greyed = [t for f in figures(app) for t in f["data"] if t.get("name") == "not attended"]
    assert greyed and all("not attended" in t["hovertemplate"] for t in greyed)
    assert title(figure_named(app, "rollout")).startswith("Attention rollout S1.0.block..S4.0.grid")
    assert "maxvit_pico, pre-normalization" in caption(app)


# every page that draws the sidebar's model (the Layouts page draws the layout study's own five)
@pytest.mark.parametrize("page", [p.path for p in app_pages.PAGES if p.view != "layouts"])
def test_every_page_draws_on_a_maxvit(app, page):
    app.switch_page(page).run()
    clean(app)
    assert figures(app) or page in ("views/model.py", "views/my_images.py")  # the latter: once given images
    if page == "views/patching.py":  # its conv, block and grid attention, patched apart
        assert any("S1.0.grid" in str(f["data"]) for f in figures(app))
    if page == "views/dataset.py":  # its own shipped study, each partition's heads and interventions
        assert app.selectbox(key="study_choice").value == "study-demo-maxvit"
        assert "over 10000 images" in title(figure_named(app, "study-distance"))
        assert any("swap_normalization S1.0.grid" in str(f["data"]) for f in figures(app))


def test_interventions_knock_out_one_partition(app):
    app.switch_page("views/interventions.py").run()
    picker = app.selectbox(key="iv_block")
    assert picker.options[:3] == ["S1.0", "S1.0.block", "S1.0.grid"]
    picker.set_value("S1.0.grid").run()
    app.selectbox(key="iv_kind").set_value("knockout").run()
    app.button(key="iv_add").click().run()
    clean(app)
    assert app.session_state["iv_active"] == ["knockout S1.0.grid"]
    assert app.selectbox(key="iv_map_block").value == "S1.0.grid"  # the first map the knockout changes


def test_pre_vs_post_puts_demo_pre_beside_demo_maxvit_at_one_picture_point(explorer):
    at = explorer
    at.switch_page("views/compare.py").run()
    assert at.radio(key="compare_how").options[-2:] == ["the built-in of the other family", "another model"]
    at.radio(key="compare_how").set_value("the built-in of the other family").run()
    said = " ".join(c.value for c in clean(at).caption)
    assert "Comparing **demo-pre, pre-normalization** (the sidebar's model) with **demo-maxvit, pre-" in said
    assert "no attention block in common" in said
    at.session_state["query_row"], at.session_state["query_col"] = 6, 0  # demo-pre's S3.0: 7x7, 4 px a cell
    at.run()
    assert clean(at).selectbox(key="compare_other_block").value == "S1.0.block"
    at.selectbox(key="compare_other_block").set_value("S2.0.grid").run()
    drawn = named_titles(clean(at), "fused-attention")
    assert drawn[-2].startswith("demo-pre: S3.0") and "query (6, 0)" in drawn[-2]
    # the same picture point, (26, 2) in pixels, on demo-maxvit's 14x14 S2 grid of 2 px cells: cell (13, 1)
    assert drawn[-1].startswith("demo-maxvit: S2.0.grid") and "query (13, 1)" in drawn[-1]


def test_pre_vs_post_puts_demo_pre_beside_a_maxvit_file_at_one_picture_point(checkpoint, explorer):
    at = explorer
    at.switch_page("views/compare.py").run()
    at.radio(key="compare_how").set_value("another model").run()
    at.text_input(key="compare_other").input(checkpoint).run()
    assert any("no attention block in common" in c.value for c in clean(at).caption)
    at.session_state["query_row"], at.session_state["query_col"] = 2, 5  # demo-pre's S3.0: 7x7, 4 px a cell
    at.run()
    at.selectbox(key="compare_other_block").set_value("S1.0.grid").run()
    drawn = named_titles(clean(at), "fused-attention")
    assert drawn[-2].startswith("demo-pre: S3.0") and "query (2, 5)" in drawn[-2]
    # the same picture point, (10, 22) in pixels, on the MaxViT's 14x14 grid of 2 px cells: cell (5, 11)
    assert drawn[-1].startswith("maxvit_pico: S1.0.grid") and "query (5, 11)" in drawn[-1]
