"""Nothing silently wrong: the page links and the opacity slider stay whatever the image's state, the
slider shows the opacity the maps are drawn at, and a picture far from the model's input says so beside
the prediction; a column width remembered by the browser is believed only where a column could have it."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from analysis.figures import MAX_WIDTH
from app import pages, widgets
from tests.support.apptest import MAIN, clean, figure_named


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 200).save(buffer, format="PNG")
    return buffer.getvalue()


def map_opacity(at) -> float:
    """The opacity the clickable map is drawn at over its image (its heatmap trace)."""
    figure = figure_named(at, "fused-attention")
    (heatmap,) = [t for t in figure["data"] if t.get("type") == "heatmap"]
    return heatmap["opacity"]


def test_without_an_image_the_page_links_and_the_opacity_slider_stay(explorer) -> None:
    at = explorer
    at.sidebar.slider(key="map_opacity").set_value(0.3).run()
    assert map_opacity(at) == 0.3
    at.radio(key="image_source").set_value("Upload").run()
    assert len(at.get("page_link")) == len(pages.PAGES)
    assert at.sidebar.slider(key="map_opacity").value == 0.3
    at.file_uploader(key="image_upload").upload("corrupt.png", b"not a picture at all").run()
    assert len(at.error) == 1 and len(at.get("page_link")) == len(pages.PAGES)
    at.file_uploader(key="image_upload").upload("grey.png", png(40, 40)).run()
    clean(at)
    assert at.sidebar.slider(key="map_opacity").value == 0.3 == map_opacity(at)


def test_a_picture_far_below_the_models_input_says_so_beside_the_prediction(explorer) -> None:
    at = explorer
    at.radio(key="image_source").set_value("Upload").run()
    at.file_uploader(key="image_upload").upload("tiny.png", png(5, 5)).run()
    (note,) = [w.value for w in clean(at).warning]
    assert (
        note
        == "Your picture is 5 x 5 px, far below the model's 28 x 28 px input: the prediction means little"
    )
    at.file_uploader(key="image_upload").upload("strip.png", png(300, 50)).run()
    (note,) = [w.value for w in clean(at).warning]
    assert note.startswith("Your picture is 300 x 50 px, 6:1, far from the model's 28 x 28 px input")
    at.file_uploader(key="image_upload").upload("fine.png", png(20, 20)).run()
    assert not clean(at).warning  # 20 px: under the model's 28, not under half of it


COOKIES = [("940", 940), ("1447", 1440), (None, None), ("", None), ("x", None), ("-5", None), ("99", None)]


@pytest.mark.parametrize(("cookie", "width"), [*COOKIES, ("9000", None)])
def test_a_remembered_column_width_is_believed_only_where_a_column_could_have_it(cookie, width) -> None:
    """The width cookie a browser sends lays out a new session's first run (rounded down to the probe's
    steps); one that no column could have (missing, not a number, under 100 or over 8000 px) is ignored,
    and the page waits for the probe's report as a browser with no cookie does."""
    assert widgets.remembered_width(cookie) == width


def test_a_new_session_draws_its_page_once_the_width_is_known_and_never_waits_twice() -> None:
    """A new session with no width remembered draws its first run without the page's figures, saying so in
    one line (the probe's report, at once in a browser, reruns it at the column's width); a run the probe
    has not answered by then (no browser runs it here) draws the page at the default width, not nothing."""
    at = AppTest.from_file(str(MAIN), default_timeout=180).run()
    assert not clean(at).get("plotly_chart")
    assert [c.value for c in at.caption if "Laying the page out" in c.value] == [
        "Laying the page out for this window..."
    ]
    assert [link.proto.label for link in at.get("page_link")] == [p.title for p in pages.PAGES]
    at.run()
    assert figure_named(clean(at), "fused-attention")["layout"]["width"] <= MAX_WIDTH
    assert not [c.value for c in at.caption if "Laying the page out" in c.value]
