"""The Patching page through AppTest: the recovery matrix, the heads and a block's positions draw for a
corruption or another image; a click on the matrix opens that block; the choices live in the URL."""

from __future__ import annotations

import pytest

from app import gallery
from app.views import patching
from tests.support.apptest import clean, copied, figure_named, fresh, title

OTHER = gallery.samples("fashion-mnist")[-1].name  # another class than the sidebar's first sample


@pytest.fixture(scope="module")
def patching_page(first_run):
    """The Patching page on demo-pre, built once: read-only."""
    at = copied(first_run)
    at.switch_page("views/patching.py").run()
    return clean(at)


@pytest.fixture(scope="module")
def another_image(patching_page):
    """The Patching page with another image as the corrupted input (:data:`OTHER`), built once: read-only."""
    at = copied(patching_page)
    at.radio(key="pt_how").set_value(patching.HOW[1]).run()
    at.selectbox(key="pt_other").set_value(OTHER).run()
    return clean(at)


@pytest.fixture
def page(patching_page):
    """A session of the test's own on the Patching page."""
    return copied(patching_page)


def test_a_corruption_of_the_image_draws_every_figure_or_says_why_not(page):
    assert page.radio(key="pt_how").value == patching.HOW[0]
    assert page.select_slider(key="pt_sigma").value == "1.5"
    matrix = title(figure_named(page, "patching"))
    assert matrix.startswith("Activation patching: recovery per block and component. Denoising")
    assert title(figure_named(page, "head-patching")).startswith("Head patching")
    positions = title(figure_named(page, "position-patching"))
    assert positions.startswith("S3.0: recovery of each position")  # the first attention block


def test_another_image_gives_a_defined_recovery_and_the_output_of_every_block_carries_it(another_image):
    page = copied(another_image)
    assert not page.warning, [w.value for w in page.warning]
    matrix = figure_named(page, "patching")
    assert title(matrix).startswith("Activation patching")
    heat = matrix["data"][0]
    outputs = [row[0] for row in heat["text"]]
    assert outputs[-1] == "1.00" and all(o == "1.00" for o in outputs), outputs  # the residual stream
    bias = heat["x"].index("relative<br>bias")
    assert {row[bias] for row in heat["text"]} == {"", "0.00"}  # the bias depends on no input


def test_noising_and_a_chosen_block(another_image):
    page = copied(another_image)
    page.radio(key="pt_direction").set_value("noising").run()
    page.session_state["pt_block"] = "S1.0"
    page.run()
    clean(page)
    matrix = title(figure_named(page, "patching"))
    assert matrix.startswith("Activation patching") and "Noising (corrupted into clean)" in matrix
    assert title(figure_named(page, "position-patching")).startswith("S1.0: recovery of each position")
    params = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(page.query_params).items()}
    assert params["pt_direction"] == "noising" and params["pt_block"] == "S1.0"
    assert params["pt_how"] == patching.HOW[1]
    again = fresh()  # a link leaves out what the page shows unchosen: a new session on it shows the same
    again.query_params.update(params)
    again.switch_page("views/patching.py").run()
    assert clean(again).selectbox(key="pt_other").value == OTHER
    assert again.radio(key="pt_direction").value == "noising"


def test_a_link_restores_the_patching_choices():
    at = fresh()
    at.query_params.update({"pt_how": patching.HOW[0], "pt_kind": "blur", "pt_sigma": "3",
                            "pt_metric": "logit", "pt_target": "2", "pt_block": "S2.1"})  # fmt: skip
    at.run()
    at.switch_page("views/patching.py").run()
    clean(at)
    assert at.selectbox(key="pt_kind").value == "blur" and at.select_slider(key="pt_sigma").value == "3"
    assert at.selectbox(key="pt_metric").value == "logit" and at.selectbox(key="pt_target").value == 2
    positions = title(figure_named(at, "position-patching"))
    assert positions.startswith("S2.1: recovery of each position") and "class 2" in positions


def test_a_click_on_the_matrix_opens_that_blocks_positions(monkeypatch):
    state = {patching.MATRIX_KEY: {"selection": {"points": [{"customdata": {"0": 2, "1": 0}}]}}}
    monkeypatch.setattr(patching.st, "session_state", state)
    patching.take_block(("S0", "S1.0", "S2.0", "S3.0"))
    assert state["pt_block"] == "S2.0"
