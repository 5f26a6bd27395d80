"""The view lives in the URL: a reload or a shared link restores model, image, block, part, heads and
query; a path in a link is honoured only inside the folders the server shares; uploads never go in one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app import gallery, widgets
from tests.support.apptest import caption, clean, figure_named, fresh, title
from tests.support.toys import toy_checkpoint

SAMPLE = gallery.samples("fashion-mnist")[7].name


def test_a_link_restores_the_view() -> None:
    at = fresh()
    at.query_params.update(
        {"source": "demo", "model": "demo-post", "image": SAMPLE, "block": "S4.0", "part": "content",
         "head": "2", "q": "0.1,0.9"}
    )  # fmt: skip
    at.run()
    clean(at)
    assert caption(at).startswith("coatnet_pico, post-normalization")
    assert at.selectbox(key="gallery_fashion-mnist").value == SAMPLE
    assert at.selectbox(key="block").value == "S4.0" and at.selectbox(key="part").value == "content"
    assert at.selectbox(key="head").value == "2"
    # (0.1, 0.9) of a 28x28 picture seen whole: pixel (2.8, 25.2), cell (0, 6) of S4.0's 7x7 grid
    clicked = title(figure_named(at, "fused-attention"))
    assert clicked.startswith("S4.0") and "query (0, 6)" in clicked


def test_the_url_follows_the_view_and_a_reload_brings_it_back(explorer) -> None:
    at = explorer
    at.selectbox(key="demo_name").set_value("demo-post").run()
    at.session_state[widgets.QUERY_ROW], at.session_state[widgets.QUERY_COL] = 1, 5
    at.run()
    params = dict(at.query_params)
    assert params["source"] == ["demo"] or params["source"] == "demo"
    link = {k: (v[0] if isinstance(v, list) else v) for k, v in params.items()}
    assert link["model"] == "demo-post" and "q" in link
    assert "block" not in link  # S3.0, what the explorer shows unchosen: a link carries what differs
    again = fresh()  # a reload: a new session on the same link
    again.query_params.update(link)
    again.run()
    assert caption(again).startswith("coatnet_pico, post-normalization")
    assert "query (1, 5)" in title(figure_named(clean(again), "fused-attention"))


def test_a_path_in_a_link_is_honoured_only_inside_the_shared_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toy_checkpoint(tmp_path / "toy.safetensors")
    monkeypatch.setenv("COATNET_LENS_ALLOWED_DIRS", str(tmp_path / "elsewhere"))
    at = fresh()
    at.query_params.update({"source": "path", "model": str(path)})
    at.run()
    assert not at.exception and any("outside the folders this server shares" in w.value for w in at.warning)
    assert caption(at).startswith("coatnet_pico")  # the built-in default, not the file
    monkeypatch.setenv("COATNET_LENS_ALLOWED_DIRS", str(tmp_path))
    at = fresh()
    at.query_params.update({"source": "path", "model": str(path)})
    at.run()
    assert not at.warning and caption(clean(at)).startswith("coatnet_toy")


def test_an_upload_never_goes_in_a_link(tmp_path: Path, explorer) -> None:
    at = explorer
    at.radio(key="model_source").set_value("Upload a checkpoint").run()
    at.file_uploader(key="model_upload").upload(
        "toy.safetensors", toy_checkpoint(tmp_path / "toy.safetensors").read_bytes()
    ).run()
    clean(at)
    assert "model" not in dict(at.query_params) and "source" not in dict(at.query_params)


def test_the_device_is_chosen_in_the_sidebar_kept_in_the_link_and_named_in_every_cache_key(explorer):
    from app import cache
    from coatnet.devices import available_devices

    at = explorer
    picker = at.selectbox(key="device")
    assert list(picker.options) == list(available_devices()) and picker.value == available_devices()[0]
    assert picker.disabled == (len(available_devices()) == 1)  # a CPU-only machine shows where it runs
    assert at.query_params["device"] == available_devices()[0]
    assert cache.ModelKey("demo-pre").device == "cpu" and "device" in cache.ModelKey._fields


def test_a_link_asking_for_a_device_this_machine_lacks_opens_on_one_it_has():

    at = fresh()
    at.query_params["device"] = "cuda"
    at.run()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert at.selectbox(key="device").value == expected and not at.exception and not at.error


def test_a_link_to_an_image_the_gallery_does_not_have_says_so_until_another_is_chosen() -> None:
    at = fresh()
    at.query_params.update({"source": "demo", "model": "demo-pre", "image": "no-such-picture"})
    at.run()
    shown = at.selectbox(key="gallery_fashion-mnist").value
    for _ in range(2):  # the line stays through the reruns a page makes (a column's width, a click)
        (warning,) = [w.value for w in at.warning]
        assert "'no-such-picture'" in warning and f"({shown}) instead" in warning
        assert "does not have" in warning and "\n" not in warning
        at.run()
    clean(at)
    other = at.selectbox(key="gallery_fashion-mnist").options[3]
    at.selectbox(key="gallery_fashion-mnist").set_value(other).run()
    assert not at.warning  # another image chosen: the line has said what it had to


def test_a_link_typed_with_a_model_name_alone_opens_it_and_a_wrong_name_says_so() -> None:
    at = fresh()
    at.query_params.update({"model": "demo-post"})  # no source: the name says it is a demo
    at.run()
    assert at.session_state["demo_name"] == "demo-post" and not at.warning and not at.exception
    assert "(post-normalization)" in title(figure_named(at, "attention-heads"))
    at = fresh()
    at.query_params.update({"model": "demo-poste"})
    at.run()
    at.run()  # the line stays
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "'demo-poste'" in warnings[0], warnings
    assert "showing demo-pre instead" in warnings[0], warnings
    assert "(pre-normalization)" in title(figure_named(clean(at), "attention-heads"))
    at.selectbox(key="demo_name").set_value("demo-post").run()
    assert not at.warning


def test_a_links_query_point_is_the_layouts_pages_query() -> None:
    """The Layouts page reads the one query point, a link's included (it once opened q=(2, 4) as the
    centre cell), and keeps it while its other views are shown."""
    from analysis import Query

    at = fresh()
    at.query_params.update({"source": "demo", "model": "demo-pre", "q": "0.2,0.7"})
    at.run()
    at.switch_page("views/layouts.py").run()
    at.radio(key="layout_what").set_value("attention").run()
    clean(at)
    point = Query(*at.session_state[widgets.QUERY_POINT])
    assert (point.fy, point.fx) == pytest.approx((0.2, 0.7), abs=1e-6)  # the link's, not the centre
    row, col = at.number_input(key=widgets.QUERY_ROW).value, at.number_input(key=widgets.QUERY_COL).value
    assert (row, col) != (3, 3) and row < col  # above the middle and right of it: (0.2, 0.7)


def link(at) -> dict[str, str]:
    """The URL's parameters as a run left them."""
    return {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}


def test_the_link_carries_the_whole_view_and_a_new_session_opens_it(explorer) -> None:
    """The rollout's mode and the class explained (explorer), the interventions applied (Interventions),
    the comparison chosen (Pre vs post): each in the link, each back in a new session on it."""
    at = explorer
    at.radio(key="rollout_from").set_value("averaged over queries").run()
    at.selectbox(key="explain_class").set_value(3).run()
    assert link(at)["rollout_from"] == "averaged over queries" and link(at)["explain_class"] == "3"
    again = fresh()
    again.query_params.update(link(at))
    again.run()
    assert again.radio(key="rollout_from").value == "averaged over queries"
    assert again.selectbox(key="explain_class").value == 3
    at.switch_page("views/interventions.py").run()
    at.selectbox(key="iv_block").set_value("S3.0").run()
    at.selectbox(key="iv_kind").set_value("knockout").run()
    at.multiselect(key="iv_heads").set_value([0, 1]).run()
    at.button(key="iv_add").click().run()
    assert link(clean(at))["iv"] == "knockout:S3.0:0,1"
    again = fresh()
    again.query_params.update(link(at))
    again.switch_page("views/interventions.py").run()
    assert clean(again).multiselect(key="iv_active").value == ["knockout S3.0 h0,1"]
    at.switch_page("views/compare.py").run()
    at.radio(key="compare_how").set_value("another model").run()
    at.text_input(key="compare_other").input("demo-maxvit").run()
    view = link(clean(at))
    assert view["compare_how"] == "another model" and view["compare_other"] == "demo-maxvit"
    again = fresh()
    again.query_params.update(view)
    again.switch_page("views/compare.py").run()
    assert clean(again).text_input(key="compare_other").value == "demo-maxvit"


def test_the_link_leaves_out_what_does_not_apply_and_every_page_opens_on_the_last_block(explorer) -> None:
    """A block chosen in the explorer is the block the Interventions page opens on; a model without
    attention (C-C-C-C) keeps no block, head or query in its link."""
    at = explorer
    at.selectbox(key="block").set_value("S3.1").run()
    at.selectbox(key="head").set_value("2").run()
    at.switch_page("views/interventions.py").run()
    assert clean(at).selectbox(key="iv_block").value == "S3.1"
    at.switch_page("views/explorer.py").run()
    at.selectbox(key="demo_name").set_value("layout-c-c-c-c").run()
    view = link(clean(at))
    assert view["model"] == "layout-c-c-c-c" and not {"block", "head", "part", "q"} & set(view), view
