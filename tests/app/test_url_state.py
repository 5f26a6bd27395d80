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
    assert at.selectbox(key="block").value == "S4.0" and at.radio(key="part").value == "content"
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
    assert link["model"] == "demo-post" and link["block"] == "S3.0" and "q" in link
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


def test_a_link_to_an_image_the_gallery_does_not_have_says_so_in_one_line() -> None:
    at = fresh()
    at.query_params.update({"source": "demo", "model": "demo-pre", "image": "no-such-picture"})
    at.run()
    warnings = [w.value for w in at.sidebar.warning]
    assert len(warnings) == 1 and "'no-such-picture'" in warnings[0] and "does not have" in warnings[0]
    assert not at.exception and not at.error


def test_a_link_typed_with_a_model_name_alone_opens_it_and_a_wrong_name_says_so() -> None:
    at = fresh()
    at.query_params.update({"model": "demo-post"})  # no source: the name says it is a demo
    at.run()
    assert at.session_state["demo_name"] == "demo-post" and not at.warning and not at.exception
    assert "(post-normalization)" in title(figure_named(at, "attention-heads"))
    at = fresh()
    at.query_params.update({"model": "demo-poste"})
    at.run()
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "demo-poste" in warnings[0] and "choose the model" in warnings[0], warnings
    assert not at.exception and not at.error
    assert "(pre-normalization)" in title(figure_named(at, "attention-heads"))


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
