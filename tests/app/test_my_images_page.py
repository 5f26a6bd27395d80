"""The My images page through AppTest, by the folder route (AppTest cannot give a file uploader files): a
folder outside the shared ones, or over the limits, is refused in one line; a shared one is read (its
images counted, a file that is no image listed with its reason), studied on request and kept for the
session, and any of its images opens in the explorer as the sidebar's image."""

from __future__ import annotations

import pytest

from analysis.core import image_sets
from analysis.studies import set_study
from app import widgets
from tests.support.apptest import clean, figure_named, figures, one_error, title
from tests.support.data import demo_image_set

PAGE = "views/my_images.py"


@pytest.fixture
def page(explorer, tmp_path, monkeypatch):
    """The My images page of a session on demo-pre; the server shares ``tmp_path`` alone, which holds the
    demo set in ``mine``."""
    demo_image_set(tmp_path / "mine")
    monkeypatch.setenv("COATNET_LENS_ALLOWED_DIRS", str(tmp_path))
    monkeypatch.setattr(set_study, "FAITHFULNESS_IMAGES", 1)  # one image's faithfulness: a second
    explorer.switch_page(PAGE).run()
    return clean(explorer)


def said(at) -> str:
    return " ".join(e.value for kind in ("markdown", "caption") for e in at.main.get(kind))


def test_the_page_says_what_to_give_and_refuses_a_folder_it_does_not_share_or_too_large(
    page, tmp_path, monkeypatch
):
    assert "Upload images, several at once, or a zip" in said(page) and not figures(page)
    assert "At most 500 images (every file given counts) and 200 MB in all" in said(page)
    assert page.radio(key=widgets.IMAGE_SOURCE).options == ["Gallery", "Upload"]  # no set read yet
    page.radio(key=widgets.MY_FROM).set_value("A folder on this server").run()
    assert "Type a folder on this server" in said(clean(page))
    page.text_input(key=widgets.MY_FOLDER).input("/etc").run()
    refused = one_error(page)
    assert refused.startswith("/etc lies outside the folders this server shares") and str(tmp_path) in refused
    assert widgets.MY_IMAGES not in page.session_state
    monkeypatch.setattr(image_sets, "MAX_IMAGES", 3)  # the demo folder holds 5 files
    page.text_input(key=widgets.MY_FOLDER).input(str(tmp_path / "mine")).run()
    assert "holds more than 3 files; a set takes at most 3: choose fewer images" in one_error(page)
    assert not page.get("progress") and widgets.MY_IMAGES not in page.session_state


def test_a_shared_folder_is_counted_studied_kept_and_opened_in_the_explorer(page, tmp_path):
    page.radio(key=widgets.MY_FROM).set_value("A folder on this server").run()
    page.text_input(key=widgets.MY_FOLDER).input(str(tmp_path / "mine")).run()
    assert "**4 images** from the folder" in said(clean(page)) and ", 3 labelled." in said(page)
    assert [e.label for e in page.expander] == ["1 file skipped"]
    assert page.dataframe[0].value.to_dict("records") == [
        {"file": "notes.txt", "why": "not an image file (.txt)"}
    ]
    assert list(page.dataframe[1].value["label"]) == ["", "Bag", "Coat", "T-shirt/top"]
    assert not figures(page)  # studied only when asked
    page.selectbox(key=widgets.MY_METHOD).set_value("rollout").run()
    page.button(key=widgets.MY_STUDY).click().run()
    clean(page)
    distance = title(figure_named(page, "study-distance"))
    assert distance == "Mean attention distance per head over 4 images (pre)"
    for name in ("study-entropy", "study-position-share", "study-stages", "study-frequency"):
        figure_named(page, name)
    bars = figure_named(page, "study-faithfulness")
    assert "over 1 images" in title(bars) and bars["data"][0]["y"] == ["random", "rollout"]
    assert "Top-1 accuracy **100.0%** over the 3 labelled images." in said(page)
    table = page.dataframe[1].value
    assert list(table["predicted"]) == ["Sandal", "Bag", "Coat", "T-shirt/top"]
    assert list(table["right"]) == [None, True, True, True]
    page.run()  # kept for the session: drawn again without asking
    assert figure_named(clean(page), "study-distance")
    assert page.radio(key=widgets.IMAGE_SOURCE).options == ["Gallery", "Upload", widgets.FROM_SET]

    page.selectbox(key=widgets.MY_PICK).set_value("Coat/04-coat-0006.png").run()
    page.button(key=widgets.MY_OPEN).click().run()
    clean(page)
    assert page.title[0].value == "Attention explorer"
    assert page.radio(key=widgets.IMAGE_SOURCE).value == widgets.FROM_SET
    assert page.selectbox(key=widgets.MY_IMAGE).value == "Coat/04-coat-0006.png"
    assert figure_named(page, "fused-attention")
    assert page.session_state["selection"].image.label == "Coat"
